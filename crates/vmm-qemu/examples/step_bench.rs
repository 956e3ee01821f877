//! Step benchmark: what one RUN step of a build costs in the guest, apart from the step's
//! own command. In one booted VM (2 vCPUs, as the builder), each round does what the
//! builder runtime does for a step: one PrepareContainer batch that mounts the step's root
//! (MountStepRoot: an overlay above the image's read-only root with a fresh upper on the
//! scratch disk, the /etc mount points in a stub lower) and creates a process with the
//! builder's spec (Docker's default mounts, capabilities and seccomp profile, the /etc files
//! bound in, its own pid/mount/ipc/uts/cgroup namespaces) whose stdout and stderr the guest
//! dials on host vsock ports; then the process is started, waited for and deleted, and the
//! root unmounted. The command is `/bin/sh -c 'echo step N'`, and its output is checked.
//!
//! Prints the medians as `prepare_ms=A start_ms=B wait_ms=C delete_ms=D total_ms=E`; each
//! round's figures go to stderr.
//!
//! Run: `cargo run -p vmm-qemu --features testing --example step_bench -- [ROUNDS]`
//! (guest artifacts as for the VM tests: $CONTAINER_KERNEL / $CONTAINER_INITRD or
//! target/guest/).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::client::AgentClient;
use agent::v1::prepare_step::Step;
use agent::v1::{
    CreateProcessRequest, MountRequest, PrepareContainerRequest, PrepareStep, ProcessRef,
    StdioPorts, StepMountPoint, StepRootRequest, UmountRequest, WriteFileRequest,
};
use tokio::io::AsyncReadExt;
use vmm::{DiskConfig, VirtualMachine};
use vmm_qemu::testing::{self, TestVm, TestVmOptions};

type Error = Box<dyn std::error::Error>;

/// Docker's default capabilities, as the builder gives every step.
const CAPS: &str = r#"["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]"#;
/// The first host vsock port of the steps' streams.
const PORTS: u32 = 0x2000_0000;

fn mkfs(
    dir: &Path,
    name: &str,
    root: Option<&Path>,
    size: &str,
) -> Result<std::path::PathBuf, Error> {
    let image = dir.join(name);
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F"]);
    if let Some(root) = root {
        cmd.arg("-d").arg(root);
    }
    if !cmd.arg(&image).arg(size).status()?.success() {
        return Err("mkfs.ext4 failed".into());
    }
    Ok(image)
}

/// A busybox root with what a `FROM busybox` step finds: /bin/sh, /etc/passwd, and the
/// directories the default mounts use.
fn rootfs(dir: &Path) -> Result<std::path::PathBuf, Error> {
    let root = dir.join("rootfs.d");
    for d in ["bin", "etc", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    for applet in ["sh", "echo", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    mkfs(dir, "rootfs.ext4", Some(&root), "64M")
}

fn spec(root: &str, i: usize) -> String {
    let bind = |f: &str| {
        format!(
            r#"{{"destination":"/etc/{f}","type":"bind","source":"/scratch/etc/{f}","options":["rbind","rprivate","ro"]}}"#
        )
    };
    format!(
        r#"{{"ociVersion":"1.0.2",
"process":{{"args":["/bin/sh","-c","echo step {i}"],"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"cwd":"/","user":{{"uid":0,"gid":0}},
 "capabilities":{{"bounding":{CAPS},"effective":{CAPS},"permitted":{CAPS}}}}},
"root":{{"path":"{root}","readonly":false}},"hostname":"buildkitsandbox",
"mounts":[
 {{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]}},
 {{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}},
 {{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]}},
 {{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]}},
 {{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro","nosuid","noexec","nodev"]}},
 {{"destination":"/dev/mqueue","type":"mqueue","source":"mqueue","options":["nosuid","noexec","nodev"]}},
 {{"destination":"/dev/shm","type":"tmpfs","source":"shm","options":["nosuid","noexec","nodev","mode=1777","size=67108864"]}},
 {},{},{}],
"linux":{{"namespaces":[{{"type":"pid"}},{{"type":"mount"}},{{"type":"ipc"}},{{"type":"uts"}},{{"type":"cgroup"}}]}}}}"#,
        bind("hosts"),
        bind("hostname"),
        bind("resolv.conf"),
    )
}

async fn mount(
    agent: &AgentClient,
    source: &str,
    target: &str,
    fstype: &str,
    options: Vec<String>,
) -> Result<(), Error> {
    agent
        .mount(MountRequest {
            source: source.into(),
            target: target.into(),
            fstype: fstype.into(),
            options,
            create_target: true,
        })
        .await?;
    Ok(())
}

/// Each phase of one round.
#[derive(Default)]
struct Round {
    prepare: Duration,
    start: Duration,
    wait: Duration,
    delete: Duration,
    total: Duration,
}

async fn read_all(mut s: vmm::VsockStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    out
}

async fn round(t: &TestVm, i: usize) -> Result<Round, Error> {
    let agent = &t.agent;
    let dir = format!("/scratch/steps/{i}");
    let root = format!("{dir}/root");
    let mut r = Round::default();
    let begin = Instant::now();
    let (out_port, err_port) = (PORTS + 2 * i as u32, PORTS + 2 * i as u32 + 1);
    let mut out_l = t.vm.listen(out_port).await?;
    let mut err_l = t.vm.listen(err_port).await?;
    let id = format!("step-{i}");
    let create = CreateProcessRequest {
        id: id.clone(),
        container_id: id.clone(),
        oci_spec: spec(&root, i).into_bytes(),
        stdio: Some(StdioPorts {
            stdin_port: 0,
            stdout_port: out_port,
            stderr_port: err_port,
        }),
        ..Default::default()
    };
    let mount_points = ["hosts", "hostname", "resolv.conf"]
        .map(|f| StepMountPoint {
            path: format!("/etc/{f}"),
            file: true,
        })
        .to_vec();
    let steps = [
        Step::StepRoot(StepRootRequest {
            dir: dir.clone(),
            lowers: vec!["/lower".into()],
            mount_points,
        }),
        Step::CreateProcess(create),
    ]
    .map(|step| PrepareStep {
        step: Some(step),
        retry_options: vec![],
    })
    .to_vec();
    let t0 = Instant::now();
    let (prepared, out, err) = tokio::join!(
        agent.prepare_container(PrepareContainerRequest { steps }),
        out_l.accept(),
        err_l.accept()
    );
    let prepared = prepared?;
    if prepared.completed != 2 {
        return Err(format!("round {i}: {}", prepared.failed_message).into());
    }
    let (out, err) = (out?, err?);
    r.prepare = t0.elapsed();
    let t0 = Instant::now();
    agent.start_process(ProcessRef { id: id.clone() }).await?;
    r.start = t0.elapsed();
    let t0 = Instant::now();
    let (stdout, stderr, exit) = tokio::join!(
        read_all(out),
        read_all(err),
        agent.wait_process(ProcessRef { id: id.clone() })
    );
    let exit = exit?;
    r.wait = t0.elapsed();
    let t0 = Instant::now();
    agent.delete_process(ProcessRef { id }).await?;
    agent
        .umount(UmountRequest {
            target: root,
            lazy: false,
        })
        .await?;
    r.delete = t0.elapsed();
    r.total = begin.elapsed();
    let want = format!("step {i}\n");
    if exit.exit_code != 0 || stdout != want.as_bytes() || !stderr.is_empty() {
        return Err(format!(
            "round {i}: exit {}, stdout {:?}, stderr {:?}",
            exit.exit_code,
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )
        .into());
    }
    Ok(r)
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5)
        .max(1);
    let artifacts = testing::guest_artifacts().map_err(|why| format!("guest artifacts: {why}"))?;
    let dir = testing::new_temp_dir();
    let rootfs = rootfs(dir.path())?;
    let scratch = mkfs(dir.path(), "scratch.ext4", None, "256M")?;
    let options = TestVmOptions {
        disks: vec![
            DiskConfig {
                id: "rootfs".into(),
                path: rootfs,
                read_only: true,
            },
            DiskConfig {
                id: "scratch".into(),
                path: scratch,
                read_only: false,
            },
        ],
        cpus: 2,
        memory_mib: 1024,
        // Userspace lines in the console log (phase marks) are not rate-limited.
        cmdline: if std::env::var_os("STEP_BENCH_CONSOLE").is_some() {
            vec!["printk.devkmsg=on".into()]
        } else {
            vec![]
        },
        ..TestVmOptions::default()
    };
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    mount(
        &t.agent,
        "block-serial:rootfs",
        "/lower",
        "ext4",
        vec!["ro".into()],
    )
    .await?;
    mount(&t.agent, "block-serial:scratch", "/scratch", "ext4", vec![]).await?;
    for f in ["hosts", "hostname", "resolv.conf"] {
        t.agent
            .write_file(WriteFileRequest {
                path: format!("/scratch/etc/{f}"),
                data: b"# step bench\n".to_vec(),
                mode: 0o644,
                append: false,
                create_parents: true,
            })
            .await?;
    }
    let mut all = Vec::new();
    // Round 0 warms the guest's caches (the first exec of busybox, the first helper).
    for i in 0..=rounds {
        let r = round(&t, i).await?;
        eprintln!(
            "  round {i}: prepare {:?} start {:?} wait {:?} delete {:?} total {:?}",
            r.prepare, r.start, r.wait, r.delete, r.total
        );
        if i > 0 {
            all.push(r);
        }
    }
    let m = |f: fn(&Round) -> Duration| median_ms(all.iter().map(f).collect());
    println!(
        "prepare_ms={:.1} start_ms={:.1} wait_ms={:.1} delete_ms={:.1} total_ms={:.1}",
        m(|r| r.prepare),
        m(|r| r.start),
        m(|r| r.wait),
        m(|r| r.delete),
        m(|r| r.total)
    );
    if std::env::var_os("STEP_BENCH_CONSOLE").is_some() {
        eprintln!("{}", t.console());
    }
    let _ = t.vm.kill().await;
    Ok(())
}
