//! Set-up benchmark: a container's guest set-up as separate agent calls (how the runtime
//! made it before PrepareContainer: the clock, the mount chain, the network chain and the
//! /etc chain sent together, then CreateProcess) against the same steps in one
//! PrepareContainer batch. Both run in one booted VM, interleaved, each round for a new
//! container (its own mount points, address and route), timed from the first call to the
//! init process created; medians are printed as `separate_ms=X batch_ms=Y`.
//!
//! Run: `cargo run -p vmm-qemu --features testing --example prepare_bench -- [ROUNDS]`
//! (guest artifacts as for the VM tests: $CONTAINER_KERNEL / $CONTAINER_INITRD or
//! target/guest/).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::client::AgentClient;
use agent::v1::prepare_step::Step;
use agent::v1::{
    AddressAddRequest, ConfigureDnsRequest, ConfigureHostsRequest, CreateProcessRequest, Empty,
    HostsEntry, LinkSetRequest, MkdirRequest, MountRequest, PrepareContainerRequest, PrepareStep,
    ProcessRef, RouteAddRequest, SetTimeRequest, WriteFileRequest,
};
use vmm::{DiskConfig, VirtualMachine};
use vmm_qemu::testing::{self, TestVm, TestVmOptions};

type Error = Box<dyn std::error::Error>;

const MAC: &str = "02:42:ac:11:00:07";

fn image(dir: &Path, name: &str, busybox: bool) -> Result<std::path::PathBuf, Error> {
    let root = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(root.join("bin"))?;
    for d in ["etc", "proc", "dev"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    if busybox {
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
        std::os::unix::fs::symlink("busybox", root.join("bin/true"))?;
    }
    let image = dir.join(name);
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&image)
        .arg("64M")
        .status()?
        .success();
    if !ok {
        return Err("mkfs.ext4 failed".into());
    }
    Ok(image)
}

/// Round `i`'s steps, in the runtime's order; CreateProcess last.
fn steps(i: usize) -> Vec<Step> {
    let c = format!("/run/c{i}");
    let spec = format!(
        r#"{{"ociVersion":"1.0.2","process":{{"user":{{"uid":0,"gid":0}},"args":["/bin/true"],"env":["PATH=/bin"],"cwd":"/"}},"root":{{"path":"{c}/rootfs"}},"mounts":[{{"destination":"/proc","type":"proc","source":"proc"}},{{"destination":"/dev","type":"tmpfs","source":"tmpfs"}}]}}"#
    );
    let mount = |source: &str, target: String, fstype: &str, options: Vec<String>| {
        Step::Mount(MountRequest {
            source: source.into(),
            target,
            fstype: fstype.into(),
            options,
            create_target: true,
        })
    };
    let mkdir = |path: String| {
        Step::Mkdir(MkdirRequest {
            path,
            mode: 0o755,
            parents: true,
            uid: 0,
            gid: 0,
        })
    };
    vec![
        Step::SetTime(SetTimeRequest {
            unix_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(1),
        }),
        mount(
            "block-serial:rootfs",
            format!("{c}/lower"),
            "ext4",
            vec!["ro".into()],
        ),
        mount("block-serial:rw", format!("{c}/rw"), "ext4", vec![]),
        mkdir(format!("{c}/rw/{i}/upper")),
        mkdir(format!("{c}/rw/{i}/work")),
        mount(
            "overlay",
            format!("{c}/rootfs"),
            "overlay",
            vec![format!(
                "lowerdir={c}/lower,upperdir={c}/rw/{i}/upper,workdir={c}/rw/{i}/work"
            )],
        ),
        Step::LinkSet(LinkSetRequest {
            mac: MAC.into(),
            up: true,
            ..Default::default()
        }),
        Step::AddressAdd(AddressAddRequest {
            link: String::new(),
            link_mac: MAC.into(),
            cidr: format!("10.0.{}.15/24", 10 + i),
        }),
        Step::RouteAdd(RouteAddRequest {
            link: String::new(),
            link_mac: MAC.into(),
            destination: format!("10.{}.0.0/16", 100 + i),
            gateway: format!("10.0.{}.2", 10 + i),
        }),
        Step::WriteFile(WriteFileRequest {
            path: format!("{c}/etc/hostname"),
            data: b"box\n".to_vec(),
            mode: 0o644,
            append: false,
            create_parents: true,
        }),
        Step::ConfigureHosts(ConfigureHostsRequest {
            path: format!("{c}/etc/hosts"),
            entries: vec![HostsEntry {
                ip: format!("10.0.{}.15", 10 + i),
                names: vec!["box".into()],
            }],
        }),
        Step::ConfigureDns(ConfigureDnsRequest {
            path: format!("{c}/etc/resolv.conf"),
            nameservers: vec!["10.0.2.3".into()],
            search: vec![],
            options: vec![],
        }),
        Step::CreateProcess(CreateProcessRequest {
            id: format!("c{i}"),
            container_id: format!("c{i}"),
            oci_spec: spec.into_bytes(),
            ..Default::default()
        }),
    ]
}

async fn call(agent: &AgentClient, step: Step) -> Result<(), Error> {
    match step {
        Step::SetTime(r) => {
            agent.set_time(r).await?;
        }
        Step::Mount(r) => {
            agent.mount(r).await?;
        }
        Step::Mkdir(r) => {
            agent.mkdir(r).await?;
        }
        Step::WriteFile(r) => {
            agent.write_file(r).await?;
        }
        Step::LinkSet(mut r) => {
            // As the runtime did: the link's name first, by its MAC.
            let links = agent.list_links(Empty {}).await?.links;
            r.name = links
                .iter()
                .find(|l| l.mac == r.mac)
                .map(|l| l.name.clone())
                .ok_or("no link with the mac")?;
            r.mac.clear();
            agent.link_set(r).await?;
        }
        Step::AddressAdd(r) => {
            agent.address_add(r).await?;
        }
        Step::RouteAdd(r) => {
            agent.route_add(r).await?;
        }
        Step::ConfigureDns(r) => {
            agent.configure_dns(r).await?;
        }
        Step::ConfigureHosts(r) => {
            agent.configure_hosts(r).await?;
        }
        Step::RegisterBinfmt(r) => {
            agent.register_binfmt(r).await?;
        }
        Step::CreateProcess(r) => {
            agent.create_process(r).await?;
        }
        Step::StepRoot(r) => {
            agent.mount_step_root(r).await?;
        }
    }
    Ok(())
}

/// The steps as the runtime sent them before the batch: four independent chains together
/// (clock; mounts; network; /etc files), the mounts' own independent parts together too,
/// then CreateProcess.
async fn separate(agent: &AgentClient, i: usize) -> Result<Duration, Error> {
    let mut s = steps(i).into_iter();
    let mut next = || s.next().ok_or("missing step");
    let (clock, lower, rw, upper, work, overlay) =
        (next()?, next()?, next()?, next()?, next()?, next()?);
    let (link, addr, route, hostname, hosts, dns, create) = (
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
    );
    let start = Instant::now();
    let mounts = async {
        let writable = async {
            call(agent, rw).await?;
            tokio::try_join!(call(agent, upper), call(agent, work))?;
            Ok::<_, Error>(())
        };
        tokio::try_join!(call(agent, lower), writable)?;
        call(agent, overlay).await
    };
    let network = async {
        call(agent, link).await?;
        call(agent, addr).await?;
        call(agent, route).await
    };
    let etc = async {
        call(agent, hostname).await?;
        call(agent, hosts).await?;
        call(agent, dns).await
    };
    tokio::try_join!(call(agent, clock), mounts, network, etc)?;
    call(agent, create).await?;
    Ok(start.elapsed())
}

async fn batch(agent: &AgentClient, i: usize) -> Result<Duration, Error> {
    let steps: Vec<PrepareStep> = steps(i)
        .into_iter()
        .map(|s| PrepareStep {
            step: Some(s),
            retry_options: vec![],
        })
        .collect();
    let n = steps.len() as u32;
    let start = Instant::now();
    let answer = agent
        .prepare_container(PrepareContainerRequest { steps })
        .await?;
    let elapsed = start.elapsed();
    if answer.completed != n {
        return Err(format!(
            "batch stopped at step {}: {}",
            answer.completed, answer.failed_message
        )
        .into());
    }
    Ok(elapsed)
}

async fn run_and_delete(agent: &AgentClient, i: usize) -> Result<(), Error> {
    let id = ProcessRef {
        id: format!("c{i}"),
    };
    agent.start_process(id.clone()).await?;
    let exit = agent.wait_process(id.clone()).await?;
    if exit.exit_code != 0 {
        return Err(format!("round {i}: true exited with {}", exit.exit_code).into());
    }
    agent.delete_process(id).await?;
    Ok(())
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5);
    let artifacts = testing::guest_artifacts().map_err(|why| format!("guest artifacts: {why}"))?;
    let dir = testing::new_temp_dir();
    let rootfs = image(dir.path(), "rootfs.ext4", true)?;
    let rw = image(dir.path(), "rw.ext4", false)?;
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
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    let (mut separates, mut batches) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let i = 2 * round;
        let s = separate(&t.agent, i).await?;
        run_and_delete(&t.agent, i).await?;
        let b = batch(&t.agent, i + 1).await?;
        run_and_delete(&t.agent, i + 1).await?;
        eprintln!("  round {round}: separate calls {s:?}, one batch {b:?}");
        separates.push(s);
        batches.push(b);
    }
    let (s, b) = (median_ms(&mut separates), median_ms(&mut batches));
    println!("separate_ms={s:.1} batch_ms={b:.1} ratio={:.2}", b / s);
    let _ = t.vm.kill().await;
    Ok(())
}
