//! A real VM under Virtualization.framework (macOS only; the self-hosted Mac job of
//! .github/workflows/macos.yml runs it): boots the guest of the Mac's architecture from
//! `CONTAINER_KERNEL` and `CONTAINER_INITRD`, connects the agent over vsock and checks its
//! protocol version, mounts a disk by its serial, then runs the backend-neutral `vmm`
//! conformance checks QEMU passes too. Without the guest it skips, saying why, unless
//! CONTAINER_REQUIRE_VM=1.
//! `cargo xtask check-macos` type-checks this file on Linux too (`--cfg check_macos`).
#![cfg(any(target_os = "macos", check_macos))]

use std::path::PathBuf;
use std::time::Duration;

use agent::client::{AgentClient, ConnectOptions};
use agent::v1::{MountRequest, StatRequest};
use vmm::{Arch, DiskConfig, VirtualMachine, VmConfig};

fn guest() -> Option<(PathBuf, PathBuf)> {
    let kernel = std::env::var_os("CONTAINER_KERNEL").map(PathBuf::from);
    let initrd = std::env::var_os("CONTAINER_INITRD").map(PathBuf::from);
    match (kernel, initrd) {
        (Some(k), Some(i)) if k.is_file() && i.is_file() => Some((k, i)),
        _ => {
            let why =
                "CONTAINER_KERNEL and CONTAINER_INITRD must name the guest's kernel and initramfs";
            assert!(!test_support::required(), "{why}");
            test_support::skip(why);
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vz_guest_answers_the_agent_mounts_a_disk_and_conforms() {
    let Some((kernel, initrd)) = guest() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("data.img");
    ext4::format_empty(&disk, 16 << 20, &ext4::Options::default()).unwrap();
    let console = dir.path().join("console.log");
    let config = VmConfig {
        arch: Arch::host(),
        kernel,
        initrd: Some(initrd),
        cmdline: vec![],
        cpus: 2,
        memory_mib: 512,
        disks: vec![DiskConfig {
            id: "data".into(),
            path: disk,
            read_only: false,
        }],
        nics: vec![],
        shares: vec![],
        console_log: Some(console.clone()),
        runtime_dir: dir.path().join("run"),
        rosetta: false,
    };
    let vm = vmm_vz::Vz::new().unwrap().boot_vm(config).await.unwrap();
    let connector = vm.connector(agent::AGENT_VSOCK_PORT, Duration::from_secs(2));
    let client = AgentClient::connect(
        move || {
            let connector = connector.clone();
            async move { connector.connect().await.map_err(std::io::Error::other) }
        },
        ConnectOptions {
            boot_timeout: Duration::from_secs(30),
            ..ConnectOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "agent: {e}\nconsole:\n{}",
            std::fs::read_to_string(&console).unwrap_or_default()
        )
    });
    let version = client.version(Default::default()).await.unwrap();
    assert_eq!(version.protocol_version, agent::PROTOCOL_VERSION);
    // The disk is found by the serial VZ's block device identifier gives it, and is writable.
    client
        .mount(MountRequest {
            source: "block-serial:data".into(),
            target: "/mnt/data".into(),
            fstype: "ext4".into(),
            create_target: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let lost = client
        .stat(StatRequest {
            path: "/mnt/data/lost+found".into(),
        })
        .await
        .unwrap();
    assert!(
        lost.exists,
        "the disk mounted by serial is not the ext4 image"
    );
    let boot_log = std::fs::read_to_string(&console).unwrap();
    assert!(
        boot_log.contains("Linux version"),
        "the virtio console wrote no boot log: {boot_log:?}"
    );
    drop(client);
    vmm::conformance::run_all(&vm).await;
}
