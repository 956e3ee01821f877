//! An aarch64 guest under `qemu-system-aarch64 -M virt` (TCG on this x86_64 host): the same
//! backend and devices as the x86_64 guest, chosen by the config's `arch`. Boots the arm64
//! kernel and vminitd of `cargo xtask guest --arch arm64`, pings the agent, mounts a disk by
//! its serial and a virtio-fs share, proves the guest is arm64, then runs the backend-neutral
//! `vmm` conformance checks. Skips (saying why) without the arm64 guest unless
//! CONTAINER_REQUIRE_VM=1.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::PROTOCOL_VERSION;
use agent::v1::{MountRequest, StatRequest, WriteFileRequest};
use vmm::{Arch, DiskConfig, ShareConfig};
use vmm_qemu::Accel;
use vmm_qemu::testing::{self, TestVm, TestVmOptions};

/// An ext4 image holding one marker file.
fn marker_disk(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("disk-root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("marker"), "an arm64 guest read this\n").unwrap();
    let image = dir.join("disk.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&image)
        .arg("16M")
        .status()
        .unwrap();
    assert!(status.success(), "mkfs.ext4 failed");
    image
}

async fn stat(t: &TestVm, path: &str) -> agent::v1::StatResponse {
    t.agent
        .stat(StatRequest { path: path.into() })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arm64_guest_boots_with_a_disk_and_a_share_and_conforms() {
    let Some(artifacts) =
        testing::guest_artifacts_or_skip_for(Arch::Aarch64, "an_arm64_guest_boots")
    else {
        return;
    };
    let dir = testing::new_temp_dir();
    let image = marker_disk(dir.path());
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("from-host"), "1234567").unwrap();
    let options = TestVmOptions {
        disks: vec![DiskConfig {
            id: "data".into(),
            path: image,
            read_only: true,
        }],
        shares: vec![ShareConfig {
            tag: "shared".into(),
            host_path: share.clone(),
            read_only: false,
        }],
        ..TestVmOptions::default()
    };
    let start = Instant::now();
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    eprintln!("arm64 guest answered after {:?}", start.elapsed());

    // The agent answers with the protocol this host speaks.
    let version = t.agent.version(Default::default()).await.unwrap();
    assert_eq!(version.protocol_version, PROTOCOL_VERSION);
    assert!(version.kernel_release.starts_with("6."), "{version:?}");
    // Another architecture's guest never runs under KVM.
    assert_eq!(t.vm.accel().accel, Accel::Tcg, "{:?}", t.vm.accel());
    // The guest kernel is arm64: only arm64 exposes each CPU's MIDR_EL1 in sysfs, and the
    // x86_64 guest's console is ttyS0, not the virt board's PL011.
    assert!(
        stat(
            &t,
            "/sys/devices/system/cpu/cpu0/regs/identification/midr_el1"
        )
        .await
        .exists,
        "no MIDR_EL1: the guest is not arm64"
    );
    assert!(stat(&t, "/sys/class/tty/ttyAMA0").await.exists);

    // A disk, found by its serial.
    t.agent
        .mount(MountRequest {
            source: "block-serial:data".into(),
            target: "/run/data".into(),
            fstype: "ext4".into(),
            options: vec!["ro".into()],
            create_target: true,
        })
        .await
        .unwrap();
    let marker = stat(&t, "/run/data/marker").await;
    assert!(marker.exists);
    assert_eq!(marker.size, "an arm64 guest read this\n".len() as u64);

    // A share, both ways.
    t.agent
        .mount(MountRequest {
            source: "shared".into(),
            target: "/mnt/shared".into(),
            fstype: "virtiofs".into(),
            options: vec![],
            create_target: true,
        })
        .await
        .unwrap();
    assert_eq!(stat(&t, "/mnt/shared/from-host").await.size, 7);
    t.agent
        .write_file(WriteFileRequest {
            path: "/mnt/shared/from-guest".into(),
            data: b"written by aarch64".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest")).unwrap(),
        "written by aarch64"
    );

    // The vsock and lifecycle contract every backend passes; it ends with the VM killed.
    let pids = t.vm.pids().to_vec();
    vmm::conformance::run_all(&t.vm).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !testing::surviving(&pids).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(testing::surviving(&pids), vec![], "processes left behind");
}
