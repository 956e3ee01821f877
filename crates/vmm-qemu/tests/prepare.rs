//! PrepareContainer in a real VM (QEMU): a container's whole set-up in one batch — an image
//! disk and a writable disk joined by an overlay, a NIC found by its MAC given an address
//! and the default route, the /etc files, and the init process — checked by what the guest
//! then holds and what the process prints; and a failing batch, which stops at its failed
//! step and says which. Skips (saying why) without guest artifacts unless
//! CONTAINER_REQUIRE_VM=1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agent::v1::prepare_step::Step;
use agent::v1::{
    AddressAddRequest, ConfigureDnsRequest, ConfigureHostsRequest, CreateProcessRequest, Empty,
    HostsEntry, LinkSetRequest, MkdirRequest, MountRequest, PrepareContainerRequest, PrepareStep,
    ProcessRef, RouteAddRequest, SetTimeRequest, StatRequest, StdioPorts, WriteFileRequest,
};
use tokio::io::AsyncReadExt;
use vmm::{DiskConfig, VirtualMachine, VmExit};
use vmm_qemu::testing::{self, TestVm, TestVmOptions};

const C: &str = "/run/container";
const MAC: &str = "02:42:ac:11:00:07";
const T: Duration = Duration::from_secs(60);

/// An ext4 image made by mkfs.ext4 from a directory holding busybox and its applets.
fn busybox_image(dir: &Path) -> PathBuf {
    let root = dir.join("image");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in ["sh", "cat", "ip", "echo", "hostname"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(root.join("etc/hosts"), "image's own hosts\n").unwrap();
    image(dir, &root, "rootfs.ext4")
}

fn image(dir: &Path, root: &Path, name: &str) -> PathBuf {
    let image = dir.join(name);
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(root)
        .arg(&image)
        .arg("32M")
        .status()
        .unwrap();
    assert!(status.success(), "mkfs.ext4 failed");
    image
}

fn step(step: Step) -> PrepareStep {
    PrepareStep {
        step: Some(step),
        retry_options: vec![],
    }
}

fn mount(source: &str, target: &str, fstype: &str, options: &[&str]) -> Step {
    Step::Mount(MountRequest {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        create_target: true,
    })
}

fn mkdir(path: &str) -> Step {
    Step::Mkdir(MkdirRequest {
        path: path.into(),
        mode: 0o755,
        parents: true,
        uid: 0,
        gid: 0,
    })
}

/// A spec that runs `script` in the overlay with the batch's /etc files bound in, as the
/// runtime's specs do.
fn spec(script: &str) -> Vec<u8> {
    let bind = |name: &str| {
        format!(
            r#"{{"destination":"/etc/{name}","type":"bind","source":"{C}/etc/{name}","options":["rbind","ro"]}}"#
        )
    };
    format!(
        r#"{{"ociVersion":"1.0.2",
        "process":{{"user":{{"uid":0,"gid":0}},"args":["/bin/sh","-c",{script}],"env":["PATH=/bin"],"cwd":"/"}},
        "root":{{"path":"{C}/rootfs"}},
        "hostname":"box",
        "mounts":[{{"destination":"/proc","type":"proc","source":"proc"}},
          {{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","mode=755"]}},{hosts},{hostname},{resolv}]}}"#,
        script = serde_json_string(script),
        hosts = bind("hosts"),
        hostname = bind("hostname"),
        resolv = bind("resolv.conf"),
    )
    .into_bytes()
}

fn serde_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

async fn boot(test: &str) -> Option<TestVm> {
    let artifacts = testing::guest_artifacts_or_skip(test)?;
    let dir = testing::new_temp_dir();
    let rootfs = busybox_image(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let rw = image(dir.path(), &empty, "rw.ext4");
    let options = TestVmOptions {
        disks: vec![
            DiskConfig {
                id: "rootfs".into(),
                path: rootfs,
                read_only: true,
            },
            DiskConfig {
                id: "rw".into(),
                path: rw,
                read_only: false,
            },
        ],
        nics: vec![vmm::NicConfig {
            mac: MAC.into(),
            attachment: vmm::NicAttachment::User {
                forwards: vec![],
                isolated: true,
            },
        }],
        ..TestVmOptions::default()
    };
    Some(TestVm::boot_in(dir, &artifacts, options).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_mounts_the_overlay_configures_the_network_writes_etc_and_runs_init() {
    let Some(t) =
        boot("one_batch_mounts_the_overlay_configures_the_network_writes_etc_and_runs_init").await
    else {
        return;
    };
    let out_port = 0x1000_0001;
    let mut out_l = t.vm.listen(out_port).await.unwrap();
    let script = "cat /etc/hosts; echo --; cat /etc/hostname; echo --; cat /etc/resolv.conf; \
                  echo --; ip -4 addr show dev eth0 | grep inet; ip route | grep default; \
                  echo written > /written";
    let batch = vec![
        step(Step::SetTime(SetTimeRequest {
            unix_nanos: 1_900_000_000_000_000_000,
        })),
        step(mount(
            "block-serial:rootfs",
            &format!("{C}/lower"),
            "ext4",
            &["ro"],
        )),
        step(mount(
            "block-serial:nope",
            &format!("{C}/nope"),
            "ext4",
            &[],
        )),
    ];
    // A step that fails ends the batch there: nothing after it runs.
    let failed = t
        .agent
        .prepare_container(PrepareContainerRequest {
            steps: batch
                .into_iter()
                .chain([step(mkdir(&format!("{C}/after-the-failure")))])
                .collect(),
        })
        .await
        .unwrap();
    assert_eq!(failed.completed, 2, "{failed:?}");
    // NOT_FOUND, as Mount answers for a disk the guest does not have.
    assert_eq!(failed.failed_code, 5, "{failed:?}");
    assert!(failed.failed_message.contains("nope"), "{failed:?}");
    let after = t
        .agent
        .stat(StatRequest {
            path: format!("{C}/after-the-failure"),
        })
        .await
        .unwrap();
    assert!(!after.exists, "a step after the failed one ran");

    let batch = vec![
        // A mount the kernel refuses (no such ext4 option), with retry options: the retry
        // mounts it.
        PrepareStep {
            step: Some(mount(
                "block-serial:rw",
                &format!("{C}/rw"),
                "ext4",
                &["no_such_option"],
            )),
            retry_options: vec!["rw".into()],
        },
        step(mkdir(&format!("{C}/rw/upper"))),
        step(mkdir(&format!("{C}/rw/work"))),
        step(mount(
            "overlay",
            &format!("{C}/rootfs"),
            "overlay",
            &[&format!(
                "lowerdir={C}/lower,upperdir={C}/rw/upper,workdir={C}/rw/work"
            )],
        )),
        step(Step::LinkSet(LinkSetRequest {
            name: String::new(),
            mac: MAC.into(),
            up: true,
            mtu: 1400,
            rename_to: String::new(),
            set_mac: String::new(),
        })),
        step(Step::AddressAdd(AddressAddRequest {
            link: String::new(),
            link_mac: MAC.into(),
            cidr: "10.0.2.15/24".into(),
        })),
        step(Step::RouteAdd(RouteAddRequest {
            link: String::new(),
            link_mac: MAC.into(),
            destination: String::new(),
            gateway: "10.0.2.2".into(),
        })),
        step(Step::WriteFile(WriteFileRequest {
            path: format!("{C}/etc/hostname"),
            data: b"box\n".to_vec(),
            mode: 0o644,
            append: false,
            create_parents: true,
        })),
        step(Step::ConfigureHosts(ConfigureHostsRequest {
            path: format!("{C}/etc/hosts"),
            entries: vec![HostsEntry {
                ip: "10.0.2.15".into(),
                names: vec!["box".into()],
            }],
        })),
        step(Step::ConfigureDns(ConfigureDnsRequest {
            path: format!("{C}/etc/resolv.conf"),
            nameservers: vec!["10.0.2.3".into()],
            search: vec!["example.test".into()],
            options: vec![],
        })),
        step(Step::CreateProcess(CreateProcessRequest {
            id: "c1".into(),
            container_id: "c1".into(),
            oci_spec: spec(script),
            stdio: Some(StdioPorts {
                stdin_port: 0,
                stdout_port: out_port,
                stderr_port: 0,
            }),
            ..Default::default()
        })),
    ];
    let n = batch.len() as u32;
    let (answer, out) = tokio::join!(
        t.agent
            .prepare_container(PrepareContainerRequest { steps: batch }),
        async { out_l.accept().await.unwrap() }
    );
    let answer = answer.unwrap();
    assert_eq!(answer.completed, n, "{answer:?}");
    assert_eq!(answer.retried, vec![0], "{answer:?}");
    assert_eq!(
        (answer.failed_code, answer.failed_message.as_str()),
        (0, "")
    );

    // The links as the guest reports them: up, with the batch's MTU.
    let links = t.agent.list_links(Empty {}).await.unwrap().links;
    let eth = links.iter().find(|l| l.mac == MAC).unwrap();
    assert_eq!((eth.up, eth.mtu), (true, 1400), "{links:?}");

    t.agent
        .start_process(ProcessRef { id: "c1".into() })
        .await
        .unwrap();
    let mut out = out;
    let mut text = String::new();
    tokio::time::timeout(T, out.read_to_string(&mut text))
        .await
        .expect("stdout not closed in time")
        .unwrap();
    let waited = t
        .agent
        .wait_process(ProcessRef { id: "c1".into() })
        .await
        .unwrap();
    assert_eq!(waited.exit_code, 0, "{text}");
    let sections: Vec<&str> = text.split("--\n").collect();
    assert_eq!(sections.len(), 4, "{text}");
    assert!(
        sections[0].starts_with("127.0.0.1\tlocalhost\n")
            && sections[0].ends_with("10.0.2.15\tbox\n"),
        "hosts: {:?}",
        sections[0]
    );
    assert_eq!(sections[1], "box\n");
    assert_eq!(sections[2], "nameserver 10.0.2.3\nsearch example.test\n");
    assert!(
        sections[3].contains("inet 10.0.2.15/24") && sections[3].contains("default via 10.0.2.2"),
        "network: {:?}",
        sections[3]
    );
    // The process wrote through the overlay into the writable disk's upper.
    let upper = t
        .agent
        .stat(StatRequest {
            path: format!("{C}/rw/upper/written"),
        })
        .await
        .unwrap();
    assert!(upper.exists && upper.size == 8, "{upper:?}");
    let stopped = t.shutdown().await;
    assert_eq!(stopped.exit, VmExit::PoweredOff, "console: {}", t.console());
}
