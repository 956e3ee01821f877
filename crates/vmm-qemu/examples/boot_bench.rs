//! Boot benchmark: how much does the whole stack add to a bare QEMU boot?
//!
//! Measures, interleaved over several iterations:
//! (a) `container`'s path: create the VM (helpers, QEMU), connect the agent, mount a busybox
//!     rootfs disk by serial, create + start + wait a container process running `true`;
//!     stopped when WaitProcess answers.
//! (b) bare QEMU: the same kernel, `-M microvm`, same memory and cmdline, with an initramfs
//!     whose `/init` is a busybox script that powers off at once; stopped when QEMU exits.
//! and prints the medians and their ratio (goal: a / b <= 1.25).
//!
//! Run: `cargo run --release -p vmm-qemu --example boot_bench -- [ITERATIONS]`
//! (guest artifacts as for the VM tests: $CONTAINER_KERNEL / $CONTAINER_INITRD or
//! target/guest/).
//!
//! `boot_bench --agent-boot ARCH [N]` (ARCH `x86_64` or `aarch64`) measures only the boot of
//! that architecture's guest to its agent's first answer (no disk, no process) and prints
//! `agent_boot_median_seconds=X`: the figure docs/multiarch.md compares across architectures.
//!
//! Diagnostics: `BOOT_BENCH_PHASES=1` prints where (a) spends its time (QEMU up, vminitd's
//! "serving" console line, agent connected, mount, create, start + wait) and keeps each
//! console log in $TMPDIR/boot_bench-consoles/; `BOOT_BENCH_DIAL=1` also times a bare vsock
//! dial before the agent connects; `BOOT_BENCH_CMDLINE="..."` appends kernel command line words (e.g. `loglevel=7`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::v1::{CreateProcessRequest, MountRequest, ProcessRef, ShutdownRequest};
use vmm::{DiskConfig, VirtualMachine, VmConfig, VmExit};
use vmm_qemu::testing::{self, GuestArtifacts};
use vmm_qemu::{Qemu, QemuOptions, cmdline, host_tsc_khz};

const MEMORY_MIB: u64 = 256;

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    // `boot_bench [N]` compares (a) and (b); `boot_bench --bare N` measures only (b) and
    // prints `bare_median_seconds=X` for `cargo xtask bench daemon`, which compares it with
    // a whole `container run`.
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--agent-boot") {
        return agent_boot(&args[1..]).await;
    }
    let bare_only = args.first().is_some_and(|a| a == "--bare");
    if bare_only {
        args.remove(0);
    }
    let iterations: usize = match args.first() {
        Some(n) => n
            .parse()
            .map_err(|_| format!("iterations {n:?} is not a number"))?,
        None => 5,
    };
    let artifacts = testing::guest_artifacts().map_err(|why| format!("guest artifacts: {why}"))?;
    let work = testing::new_temp_dir();
    let rootfs = busybox_rootfs(work.path())?;
    let trivial_initrd = trivial_initramfs(work.path())?;
    let qemu = Qemu::new(QemuOptions::default())?;
    if bare_only {
        bare_qemu(qemu.qemu_path(), &artifacts.kernel, &trivial_initrd)?;
        let mut bare = Vec::new();
        for _ in 0..iterations.max(1) {
            bare.push(bare_qemu(
                qemu.qemu_path(),
                &artifacts.kernel,
                &trivial_initrd,
            )?);
        }
        println!("bare_median_seconds={:.4}", median(&mut bare).as_secs_f64());
        return Ok(());
    }

    // One untimed round of each warms the page cache.
    full_stack(&qemu, &artifacts, &rootfs, work.path(), 0).await?;
    bare_qemu(qemu.qemu_path(), &artifacts.kernel, &trivial_initrd)?;

    let mut full = Vec::new();
    let mut bare = Vec::new();
    println!("iter  full-stack(a)  bare-qemu(b)");
    for i in 1..=iterations {
        let a = full_stack(&qemu, &artifacts, &rootfs, work.path(), i).await?;
        let b = bare_qemu(qemu.qemu_path(), &artifacts.kernel, &trivial_initrd)?;
        println!(
            "{i:>4}  {:>11.3} s  {:>10.3} s",
            a.as_secs_f64(),
            b.as_secs_f64()
        );
        full.push(a);
        bare.push(b);
    }
    let (a, b) = (median(&mut full), median(&mut bare));
    println!(
        "median  {:.3} s  {:.3} s   ratio a/b = {:.3} (goal <= 1.25)",
        a.as_secs_f64(),
        b.as_secs_f64(),
        a.as_secs_f64() / b.as_secs_f64()
    );
    Ok(())
}

/// Boot to the agent's first answer, for the guest of the architecture in `args[0]`.
async fn agent_boot(args: &[String]) -> Result<(), Error> {
    let arch = match args.first().map(String::as_str) {
        Some("x86_64") => vmm::Arch::X86_64,
        Some("aarch64") => vmm::Arch::Aarch64,
        other => return Err(format!("--agent-boot wants x86_64 or aarch64, not {other:?}").into()),
    };
    let iterations: usize = match args.get(1) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("iterations {n:?} is not a number"))?,
        None => 5,
    };
    let artifacts =
        testing::guest_artifacts_for(arch).map_err(|why| format!("guest artifacts: {why}"))?;
    let mut samples = Vec::new();
    // One untimed boot warms the page cache.
    for i in 0..=iterations {
        let start = Instant::now();
        let t = testing::TestVm::boot_in(
            testing::new_temp_dir(),
            &artifacts,
            testing::TestVmOptions {
                memory_mib: MEMORY_MIB,
                ..Default::default()
            },
        )
        .await;
        let elapsed = start.elapsed();
        t.vm.kill().await;
        if i > 0 {
            println!("{i:>4}  {:.3} s", elapsed.as_secs_f64());
            samples.push(elapsed);
        }
    }
    println!(
        "agent_boot_median_seconds={:.4} ({arch}, {})",
        median(&mut samples).as_secs_f64(),
        artifacts.kernel.display()
    );
    Ok(())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// (a): create the VM → `true` exited, through the agent.
async fn full_stack(
    qemu: &Qemu,
    artifacts: &GuestArtifacts,
    rootfs: &Path,
    work: &Path,
    i: usize,
) -> Result<Duration, Error> {
    let dir = work.join(format!("vm{i}"));
    let config = VmConfig {
        arch: vmm::Arch::host(),
        kernel: artifacts.kernel.clone(),
        initrd: Some(artifacts.initrd.clone()),
        // Diagnostics: e.g. BOOT_BENCH_CMDLINE="loglevel=7 printk.time=1" and a look at the
        // console log (kept when BOOT_BENCH_PHASES is set).
        cmdline: std::env::var("BOOT_BENCH_CMDLINE")
            .map(|c| c.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        cpus: 1,
        memory_mib: MEMORY_MIB,
        disks: vec![DiskConfig {
            id: "rootfs".into(),
            path: rootfs.to_owned(),
            read_only: true,
        }],
        nics: vec![],
        shares: vec![],
        console_log: Some(dir.join("console.log")),
        runtime_dir: dir.join("run"),
        rosetta: false,
    };
    let start = Instant::now();
    // Diagnostics: when vminitd announces on the console that it serves.
    let console = dir.join("console.log");
    let serving = tokio::spawn(async move {
        loop {
            let text = std::fs::read_to_string(&console).unwrap_or_default();
            if text.contains("serving protocol") {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let vm = qemu.boot_vm(config).await?;
    let t_boot = start.elapsed();
    if std::env::var_os("BOOT_BENCH_DIAL").is_some() {
        let s = vm.dial(1024, Duration::from_secs(60)).await?;
        eprintln!("      first vsock dial ok at {:?}", start.elapsed());
        drop(s);
    }
    let agent = match testing::connect_agent(&vm, Duration::from_secs(60)).await {
        Ok(agent) => agent,
        Err(e) => {
            let console = testing::console_tail(&dir.join("console.log"));
            return Err(format!("{e}; console:\n{console}").into());
        }
    };
    let t_agent = start.elapsed();
    agent
        .mount(MountRequest {
            source: "block-serial:rootfs".into(),
            target: "/run/c1/rootfs".into(),
            fstype: "ext4".into(),
            options: vec!["ro".into()],
            create_target: true,
        })
        .await?;
    let spec = r#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"args":["/bin/busybox","true"],"env":["PATH=/bin"],"cwd":"/"},"root":{"path":"/run/c1/rootfs","readonly":true},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"ipc"},{"type":"uts"}]}}"#;
    let t_mount = start.elapsed();
    agent
        .create_process(CreateProcessRequest {
            id: "c1".into(),
            container_id: "c1".into(),
            oci_spec: spec.as_bytes().to_vec(),
            ..Default::default()
        })
        .await?;
    let t_create = start.elapsed();
    agent.start_process(ProcessRef { id: "c1".into() }).await?;
    let exit = agent.wait_process(ProcessRef { id: "c1".into() }).await?;
    let elapsed = start.elapsed();
    let serving = if serving.is_finished() {
        serving.await.ok()
    } else {
        serving.abort();
        None
    };
    if std::env::var_os("BOOT_BENCH_PHASES").is_some() {
        eprintln!("      vminitd said it serves at {serving:?}");
        eprintln!(
            "      phases: qemu up {:?}, agent {:?}, mount {:?}, create {:?}, start+wait {:?}",
            t_boot,
            t_agent - t_boot,
            t_mount - t_agent,
            t_create - t_mount,
            elapsed - t_create
        );
    }
    if exit.exit_code != 0 {
        return Err(format!("`true` exited with {}", exit.exit_code).into());
    }
    let graceful = Box::pin(async move {
        let _ = agent.shutdown(ShutdownRequest { grace_seconds: 1 }).await;
    });
    let stopped = vm.stop(graceful, Duration::from_secs(20)).await;
    if stopped.exit != VmExit::PoweredOff {
        return Err(format!("vm ended with {}", stopped.exit).into());
    }
    if std::env::var_os("BOOT_BENCH_PHASES").is_some() {
        let kept_dir = std::env::temp_dir().join("boot_bench-consoles");
        let _ = std::fs::create_dir_all(&kept_dir);
        let kept = kept_dir.join(format!("console{i}.log"));
        let _ = std::fs::copy(dir.join("console.log"), &kept);
        eprintln!("      console: {}", kept.display());
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(elapsed)
}

/// (b): bare QEMU from spawn to exit, the guest powering off from a trivial init.
fn bare_qemu(qemu: &Path, kernel: &Path, initrd: &Path) -> Result<Duration, Error> {
    let mut append = cmdline::base_cmdline(&vmm_qemu::machine::X86_64).join(" ");
    if let Some(khz) = host_tsc_khz() {
        append.push_str(&format!(" tsc_early_khz={khz}"));
    }
    let mem = format!("{MEMORY_MIB}M");
    let start = Instant::now();
    let status = Command::new(qemu)
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-M", "microvm,memory-backend=mem"])
        .arg("-object")
        .arg(format!("memory-backend-memfd,id=mem,size={mem},share=on"))
        .args(["-m", &mem, "-accel", "tcg", "-cpu", "max", "-smp", "1"])
        .args(["-serial", "null", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .status()?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!("bare qemu exited with {status}").into());
    }
    Ok(elapsed)
}

/// A read-only ext4 rootfs holding busybox.
fn busybox_rootfs(work: &Path) -> Result<PathBuf, Error> {
    let root = work.join("rootfs");
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    let image = work.join("rootfs.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&image)
        .arg("32M")
        .status()?;
    if !status.success() {
        return Err("mkfs.ext4 failed".into());
    }
    Ok(image)
}

/// An initramfs whose `/init` powers the VM off at once.
fn trivial_initramfs(work: &Path) -> Result<PathBuf, Error> {
    let root = work.join("trivial");
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    let init = root.join("init");
    std::fs::write(&init, "#!/bin/busybox sh\n/bin/busybox poweroff -f\n")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    let cpio = work.join("trivial.cpio");
    let list = "init\nbin\nbin/busybox\n";
    let mut child = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&cpio)?)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(list.as_bytes())?;
    }
    if !child.wait()?.success() {
        return Err("cpio failed".into());
    }
    Ok(cpio)
}
