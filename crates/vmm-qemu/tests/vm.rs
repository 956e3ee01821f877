//! Real VMs under QEMU (TCG here): boot the project's kernel and vminitd, talk to the agent,
//! attach disks, move bytes over vsock both ways, and check that stopping or killing a VM
//! leaves no process behind. Skips (saying why) without guest artifacts unless
//! CONTAINER_REQUIRE_VM=1.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::PROTOCOL_VERSION;
use agent::v1::{
    AddressAddRequest, CreateProcessRequest, Empty, LinkSetRequest, MountRequest, ProcessRef,
    StatRequest, StdioPorts, WriteFileRequest,
};
use tokio::io::AsyncReadExt;
use vmm::{DiskConfig, ShareConfig, VirtualMachine, VmExit};
use vmm_qemu::testing::{self, TestVm, TestVmOptions};
use vmm_qemu::{Accel, accel};

/// Waits (briefly) until none of `pids` exists any more, then asserts so.
async fn assert_all_reaped(pids: &[(String, u32)]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !testing::surviving(pids).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(testing::surviving(pids), vec![], "processes left behind");
}

/// An ext4 image holding busybox and a marker file, made by mkfs.ext4 from a directory.
fn busybox_disk(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("marker"), "disk with a serial\n").unwrap();
    let image = dir.join("rootfs.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&image)
        .arg("32M")
        .status()
        .unwrap();
    assert!(status.success(), "mkfs.ext4 failed");
    image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_answers_version_and_shuts_down_cleanly() {
    let Some(t) = TestVm::boot(TestVmOptions::default()).await else {
        return;
    };
    let version = t.agent.guest_version();
    assert_eq!(version.protocol_version, PROTOCOL_VERSION);
    assert!(version.kernel_release.starts_with("6."), "{version:?}");
    // Asked again over the live connection, not the cached answer.
    let again = t.agent.version(Default::default()).await.unwrap();
    assert_eq!(&again, version);
    assert_eq!(t.vm.accel().accel, Accel::Tcg, "{:?}", t.vm.accel());

    let pids = t.vm.pids().to_vec();
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["qemu", "vhost-device-vsock"]);
    let stopped = t.shutdown().await;
    assert_eq!(stopped.exit, VmExit::PoweredOff, "console: {}", t.console());
    assert!(!stopped.forced);
    assert_all_reaped(&pids).await;
    // The sockets are gone; the logs stay.
    let run = t.dir.path().join("run");
    assert!(!run.join("vsock").exists());
    assert!(!run.join("vsock.sock").exists());
    assert!(run.join("qemu.log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_kill_reaps_everything_and_later_calls_fail_clearly() {
    let Some(t) = TestVm::boot(TestVmOptions::default()).await else {
        return;
    };
    let pids = t.vm.pids().to_vec();
    let start = Instant::now();
    assert_eq!(t.vm.kill().await, VmExit::Killed);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_all_reaped(&pids).await;
    assert_eq!(t.vm.exit(), Some(VmExit::Killed));
    let err = t.vm.dial(1024, Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(err.to_string(), "the vm has exited (killed)");
    let err = t.vm.listen(5000).await.unwrap_err();
    assert_eq!(err.to_string(), "the vm has exited (killed)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_vm_reaps_everything() {
    let Some(t) = TestVm::boot(TestVmOptions::default()).await else {
        return;
    };
    let pids = t.vm.pids().to_vec();
    drop(t);
    assert_all_reaped(&pids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_is_visible_by_its_serial() {
    let Some(artifacts) = testing::guest_artifacts_or_skip("a_disk_is_visible_by_its_serial")
    else {
        return;
    };
    let dir = testing::new_temp_dir();
    let image = busybox_disk(dir.path());
    let options = TestVmOptions {
        disks: vec![DiskConfig {
            id: "rootfs".into(),
            path: image,
            read_only: true,
        }],
        ..TestVmOptions::default()
    };
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    t.agent
        .mount(MountRequest {
            source: "block-serial:rootfs".into(),
            target: "/run/rootfs".into(),
            fstype: "ext4".into(),
            options: vec!["ro".into()],
            create_target: true,
        })
        .await
        .unwrap();
    let marker = t
        .agent
        .stat(StatRequest {
            path: "/run/rootfs/marker".into(),
        })
        .await
        .unwrap();
    assert!(marker.exists);
    assert_eq!(marker.size, "disk with a serial\n".len() as u64);
    let missing = t
        .agent
        .stat(StatRequest {
            path: "/run/rootfs/not-there".into(),
        })
        .await
        .unwrap();
    assert!(!missing.exists);
    let pids = t.vm.pids().to_vec();
    assert_eq!(t.shutdown().await.exit, VmExit::PoweredOff);
    assert_all_reaped(&pids).await;
}

// Host dials the agent (vsock dial); the guest dials the host's stdout port (vsock listen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsock_listen_receives_a_guest_process_output() {
    let Some(artifacts) =
        testing::guest_artifacts_or_skip("vsock_listen_receives_a_guest_process_output")
    else {
        return;
    };
    let dir = testing::new_temp_dir();
    let image = busybox_disk(dir.path());
    let options = TestVmOptions {
        disks: vec![DiskConfig {
            id: "rootfs".into(),
            path: image,
            read_only: false,
        }],
        ..TestVmOptions::default()
    };
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    t.agent
        .mount(MountRequest {
            source: "block-serial:rootfs".into(),
            target: "/run/rootfs".into(),
            fstype: "ext4".into(),
            options: vec![],
            create_target: true,
        })
        .await
        .unwrap();

    let stdout_port = 0x1000_0000;
    let mut listener = t.vm.listen(stdout_port).await.unwrap();
    assert_eq!(
        t.vm.listen(stdout_port).await.unwrap_err().to_string(),
        format!("vsock port {stdout_port} is already being listened on")
    );
    let spec = serde_json_spec(&["/bin/busybox", "echo", "hello over vsock"]);
    t.agent
        .create_process(CreateProcessRequest {
            id: "c1".into(),
            container_id: "c1".into(),
            oci_spec: spec.into_bytes(),
            stdio: Some(StdioPorts {
                stdin_port: 0,
                stdout_port,
                stderr_port: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stream = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .expect("the guest never dialed the stdout port")
        .unwrap();
    t.agent
        .start_process(ProcessRef { id: "c1".into() })
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "hello over vsock\n");
    let waited = t
        .agent
        .wait_process(ProcessRef { id: "c1".into() })
        .await
        .unwrap();
    assert_eq!(waited.exit_code, 0);
    drop(listener);
    // Dropping the listener releases the port and its socket file.
    let again = t.vm.listen(stdout_port).await.unwrap();
    drop(again);
    let pids = t.vm.pids().to_vec();
    assert_eq!(t.shutdown().await.exit, VmExit::PoweredOff);
    assert_all_reaped(&pids).await;
}

fn serde_json_spec(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"{{"ociVersion":"1.0.2","process":{{"user":{{"uid":0,"gid":0}},"args":[{}],"env":["PATH=/bin"],"cwd":"/"}},"root":{{"path":"/run/rootfs"}},"linux":{{"namespaces":[{{"type":"pid"}},{{"type":"mount"}},{{"type":"ipc"}},{{"type":"uts"}}]}}}}"#,
        args.join(",")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_forward_port_fails_boot_with_qemus_reason_and_leaves_nothing() {
    let Some(artifacts) = testing::guest_artifacts_or_skip("a_taken_forward_port_fails_boot")
    else {
        return;
    };
    let dir = testing::new_temp_dir();
    // Someone else already listens on the host port the VM wants to forward.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = vmm::VmConfig {
        arch: vmm::Arch::host(),
        kernel: artifacts.kernel,
        initrd: Some(artifacts.initrd),
        cmdline: vec![],
        cpus: 1,
        memory_mib: 128,
        disks: vec![],
        nics: vec![vmm::NicConfig {
            mac: "02:00:00:00:00:01".into(),
            attachment: vmm::NicAttachment::User {
                forwards: vec![vmm::PortForward {
                    protocol: vmm::Protocol::Tcp,
                    host_addr: "127.0.0.1".parse().unwrap(),
                    host_port: port,
                    guest_port: 80,
                }],
                isolated: true,
            },
        }],
        shares: vec![],
        console_log: None,
        runtime_dir: dir.path().join("run"),
        rosetta: false,
    };
    let qemu = vmm_qemu::Qemu::new(Default::default()).unwrap();
    let err = qemu.boot_vm(config).await.unwrap_err().to_string();
    assert!(err.starts_with("qemu did not start: exited"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(helper_pids_using(dir.path()), Vec::<u32>::new());
}

/// Processes whose command line mentions `dir` (our helpers all name their sockets there).
fn helper_pids_using(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(&needle)
        {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvm_detection_falls_back_to_tcg_here_without_leaking_the_probe() {
    let Some(artifacts) = testing::guest_artifacts_or_skip("kvm_detection_falls_back") else {
        return;
    };
    let dir = testing::new_temp_dir();
    // A private copy of the kernel, so the probe's QEMU is recognisable by its command line.
    let kernel = dir.path().join("probe-vmlinux");
    std::fs::copy(&artifacts.kernel, &kernel).unwrap();
    let qemu = vmm_qemu::tools::find(vmm_qemu::tools::QEMU).unwrap();

    let machine = vmm_qemu::machine::for_arch(vmm::Arch::host());
    let choice =
        accel::detect_with_cache(machine, &qemu, &kernel, Some(&dir.path().join("cache"))).await;
    assert_eq!(choice.accel, Accel::Tcg, "{choice:?}");

    // The probe boot itself, forced: KVM guests do not work here, so it must time out or
    // fail, and its QEMU must be gone when it returns.
    let start = Instant::now();
    let probe = accel::probe_kvm(machine, &qemu, &kernel, Duration::from_secs(3)).await;
    assert!(!probe.works, "{probe:?}");
    assert!(start.elapsed() < Duration::from_secs(5), "{probe:?}");
    assert_eq!(
        helper_pids_using(dir.path()),
        Vec::<u32>::new(),
        "{probe:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_directories_are_mounted_with_their_access_mode() {
    let Some(artifacts) = testing::guest_artifacts_or_skip("shared_directories") else {
        return;
    };
    let dir = testing::new_temp_dir();
    let ro = dir.path().join("ro");
    let rw = dir.path().join("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("from-host"), "12345").unwrap();
    let options = TestVmOptions {
        shares: vec![
            ShareConfig {
                tag: "ro-share".into(),
                host_path: ro.clone(),
                read_only: true,
            },
            ShareConfig {
                tag: "rw-share".into(),
                host_path: rw.clone(),
                read_only: false,
            },
        ],
        ..TestVmOptions::default()
    };
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    let names: Vec<&str> = t.vm.pids().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "qemu",
            "vhost-device-vsock",
            "virtiofsd for share \"ro-share\"",
            "virtiofsd for share \"rw-share\""
        ]
    );
    for tag in ["ro-share", "rw-share"] {
        t.agent
            .mount(MountRequest {
                source: tag.into(),
                target: format!("/mnt/{tag}"),
                fstype: "virtiofs".into(),
                options: vec![],
                create_target: true,
            })
            .await
            .unwrap();
    }
    let seen = t
        .agent
        .stat(StatRequest {
            path: "/mnt/ro-share/from-host".into(),
        })
        .await
        .unwrap();
    assert!(seen.exists);
    assert_eq!(seen.size, 5);
    t.agent
        .write_file(WriteFileRequest {
            path: "/mnt/rw-share/from-guest".into(),
            data: b"written in the guest".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(rw.join("from-guest")).unwrap(),
        "written in the guest"
    );
    let refused = t
        .agent
        .write_file(WriteFileRequest {
            path: "/mnt/ro-share/from-guest".into(),
            data: b"x".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(refused.is_err(), "a read-only share took a write");
    assert!(!ro.join("from-guest").exists());
    let pids = t.vm.pids().to_vec();
    assert_eq!(t.shutdown().await.exit, VmExit::PoweredOff);
    assert_all_reaped(&pids).await;
}

// vhost-device-vsock 0.3 panics (and the VM's vsock dies) when the guest accepts a connection
// whose host end has already gone. Dials that give up mid-handshake must not cause that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_dials_do_not_break_vsock() {
    let Some(t) = TestVm::boot(TestVmOptions::default()).await else {
        return;
    };
    for _ in 0..20 {
        let _ =
            t.vm.dial(agent::AGENT_VSOCK_PORT, Duration::from_micros(200))
                .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let version = t.agent.version(Default::default()).await;
    let fresh = testing::connect_agent(&t.vm, Duration::from_secs(10)).await;
    assert!(
        version.is_ok() && fresh.is_ok(),
        "vsock broke after abandoned dials: {version:?} {:?}; daemon log: {}",
        fresh.err(),
        std::fs::read_to_string(t.dir.path().join("run/vhost-device-vsock.log"))
            .unwrap_or_default()
    );
    assert_eq!(t.shutdown().await.exit, VmExit::PoweredOff);
}

const ABORT_CHILD_ENV: &str = "VMM_QEMU_TEST_ABORT_CHILD";

// Only does something when run by `helpers_die_with_the_host_process`, in a child process:
// boots a VM, prints the pids and its temp dir, and dies without any cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_boots_a_vm_then_aborts() {
    if std::env::var_os(ABORT_CHILD_ENV).is_none() {
        return;
    }
    let Some(t) = TestVm::boot(TestVmOptions::default()).await else {
        return;
    };
    println!("DIR {}", t.dir.path().display());
    for (name, pid) in t.vm.pids() {
        println!("PID {pid} {name}");
    }
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::process::abort();
}

#[test]
fn helpers_die_with_the_host_process() {
    if testing::guest_artifacts_or_skip("helpers_die_with_the_host_process").is_none() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_boots_a_vm_then_aborts", "--exact", "--nocapture"])
        .env(ABORT_CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the child did not abort: {stdout}");
    let pids: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PID "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{stdout}");
    // Orphans are reaped by whoever is PID 1, not us: a zombie counts as dead here.
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(") ")
                .next()
                .is_some_and(|rest| !rest.starts_with('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<u32> = pids.iter().copied().filter(alive).collect();
    for pid in &left {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    if let Some(dir) = stdout.lines().find_map(|l| l.strip_prefix("DIR ")) {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert_eq!(left, Vec::<u32>::new(), "helpers outlived the host process");
}

// User-mode networking: a host port forwarded into the guest reaches a server in a container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_networking_forwards_a_host_port_into_the_guest() {
    let Some(artifacts) = testing::guest_artifacts_or_skip("user_networking_forwards") else {
        return;
    };
    let dir = testing::new_temp_dir();
    let image = busybox_disk(dir.path());
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mac = "02:00:00:00:aa:01";
    let options = TestVmOptions {
        disks: vec![DiskConfig {
            id: "rootfs".into(),
            path: image,
            read_only: true,
        }],
        nics: vec![vmm::NicConfig {
            mac: mac.into(),
            attachment: vmm::NicAttachment::User {
                forwards: vec![vmm::PortForward {
                    protocol: vmm::Protocol::Tcp,
                    host_addr: "127.0.0.1".parse().unwrap(),
                    host_port: port,
                    guest_port: 8080,
                }],
                isolated: true,
            },
        }],
        ..TestVmOptions::default()
    };
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    let links = t.agent.list_links(Empty {}).await.unwrap().links;
    let link = links
        .iter()
        .find(|l| l.mac == mac)
        .unwrap_or_else(|| panic!("no link with mac {mac}: {links:?}"))
        .name
        .clone();
    t.agent
        .link_set(LinkSetRequest {
            name: link.clone(),
            up: true,
            ..Default::default()
        })
        .await
        .unwrap();
    // QEMU's user network hands out 10.0.2.15 and forwards to it.
    t.agent
        .address_add(AddressAddRequest {
            link,
            link_mac: String::new(),
            cidr: "10.0.2.15/24".into(),
        })
        .await
        .unwrap();
    t.agent
        .mount(MountRequest {
            source: "block-serial:rootfs".into(),
            target: "/run/rootfs".into(),
            fstype: "ext4".into(),
            options: vec!["ro".into()],
            create_target: true,
        })
        .await
        .unwrap();
    let spec = serde_json_spec(&[
        "/bin/busybox",
        "sh",
        "-c",
        "echo hello through the forward | /bin/busybox nc -l -p 8080",
    ]);
    t.agent
        .create_process(CreateProcessRequest {
            id: "srv".into(),
            container_id: "srv".into(),
            oci_spec: spec.into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap();
    if let Err(e) = t.agent.start_process(ProcessRef { id: "srv".into() }).await {
        panic!("{e}; console: {}", t.console());
    }
    // QEMU accepts on the host port at once and drops the connection while nothing listens
    // in the guest yet, so retry until the server's line arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    let received = loop {
        if let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut text = String::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), conn.read_to_string(&mut text)).await;
            if !text.is_empty() {
                break text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing came through the forward"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(received, "hello through the forward\n");
    let waited = t
        .agent
        .wait_process(ProcessRef { id: "srv".into() })
        .await
        .unwrap();
    assert_eq!(waited.exit_code, 0);
    assert_eq!(t.shutdown().await.exit, VmExit::PoweredOff);
}

fn kill_9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_dying_on_its_own_is_a_failure_and_reaps_the_helpers() {
    let Some(t) = TestVm::boot(TestVmOptions::default()).await else {
        return;
    };
    let pids = t.vm.pids().to_vec();
    kill_9(pids[0].1);
    let exit = tokio::time::timeout(Duration::from_secs(10), t.vm.wait())
        .await
        .unwrap();
    let VmExit::Failed { detail } = exit else {
        panic!("expected a failure, got {exit:?}");
    };
    assert!(detail.starts_with("qemu exited (signal: 9"), "{detail}");
    assert_all_reaped(&pids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_helper_takes_the_vm_down() {
    let Some(t) = TestVm::boot(TestVmOptions::default()).await else {
        return;
    };
    let pids = t.vm.pids().to_vec();
    let (name, pid) = &pids[1];
    assert_eq!(name, "vhost-device-vsock");
    kill_9(*pid);
    let exit = tokio::time::timeout(Duration::from_secs(10), t.vm.wait())
        .await
        .unwrap();
    let VmExit::Failed { detail } = exit else {
        panic!("expected a failure, got {exit:?}");
    };
    assert!(
        detail.starts_with("vhost-device-vsock exited (signal: 9"),
        "{detail}"
    );
    assert_all_reaped(&pids).await;
}

// The backend-neutral contract of vmm::VirtualMachine, as every backend must pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_to_the_vmm_contract() {
    let Some(t) = TestVm::boot(TestVmOptions::default()).await else {
        return;
    };
    let pids = t.vm.pids().to_vec();
    vmm::conformance::run_all(&t.vm).await;
    assert_all_reaped(&pids).await;
}

// A read-write disk keeps what the guest synced even when the VM is then killed outright.
// (What QEMU does with the flush when the *host* crashes cannot be shown here: a killed QEMU
// leaves its writes in the host page cache either way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_writes_to_a_disk_survive_a_hard_kill() {
    let Some(artifacts) = testing::guest_artifacts_or_skip("synced_writes_survive") else {
        return;
    };
    let dir = testing::new_temp_dir();
    let image = dir.path().join("data.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .arg("16M")
        .status()
        .unwrap();
    assert!(status.success());
    let options = TestVmOptions {
        disks: vec![DiskConfig {
            id: "data".into(),
            path: image.clone(),
            read_only: false,
        }],
        ..TestVmOptions::default()
    };
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    t.agent
        .mount(MountRequest {
            source: "block-serial:data".into(),
            target: "/data".into(),
            fstype: "ext4".into(),
            options: vec![],
            create_target: true,
        })
        .await
        .unwrap();
    t.agent
        .write_file(WriteFileRequest {
            path: "/data/kept".into(),
            data: b"synced before the kill\n".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    t.agent.sync(Empty {}).await.unwrap();
    assert_eq!(t.vm.kill().await, VmExit::Killed);

    // Replay the journal the kill left behind, then read the file back on the host.
    let fsck = Command::new("e2fsck")
        .arg("-fy")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        matches!(fsck.status.code(), Some(0 | 1)),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let cat = Command::new("debugfs")
        .args(["-R", "cat /kept"])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        "synced before the kill\n"
    );
}
