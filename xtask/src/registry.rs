//! `cargo xtask registry start|stop|env`: Debian's `docker-registry` (the distribution v2
//! reference registry) as plain processes on 127.0.0.1, holding the test images.
//!
//! Two instances: `plain` (anonymous) and `auth` (htpasswd basic auth, user `testuser`,
//! password `testpassword`), on ports 5000 and 5001 unless `CONTAINER_TEST_REGISTRY_PORT` /
//! `CONTAINER_TEST_AUTH_REGISTRY_PORT` say otherwise. Storage lives in `<cache>/registry/`,
//! keyed by the images' key, so a restart does not push 400 MB again. `start` writes
//! `<cache>/run/registry.env`, which tests read (see docs/testing.md).

use crate::paths::cache_dir;
use crate::run::{output, run, step};
use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "testuser";
pub const PASSWORD: &str = "testpassword";

#[derive(clap::Subcommand)]
pub enum Action {
    /// Start both registries (if not running) and push the test images into them.
    Start,
    /// Stop the registries started by `start`.
    Stop,
    /// Print the environment tests use to find the registries.
    Env,
}

pub fn command(action: Action) -> Result<()> {
    match action {
        Action::Start => {
            start()?;
            print!("{}", fs::read_to_string(env_file())?);
            Ok(())
        }
        Action::Stop => stop(),
        Action::Env => {
            print!(
                "{}",
                fs::read_to_string(env_file())
                    .context("no registry running: `cargo xtask registry start`")?
            );
            Ok(())
        }
    }
}

struct Instance {
    name: &'static str,
    port: u16,
    auth: bool,
}

fn instances() -> [Instance; 2] {
    let port = |var: &str, default: u16| {
        std::env::var(var)
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(default)
    };
    [
        Instance {
            name: "plain",
            port: port("CONTAINER_TEST_REGISTRY_PORT", 5000),
            auth: false,
        },
        Instance {
            name: "auth",
            port: port("CONTAINER_TEST_AUTH_REGISTRY_PORT", 5001),
            auth: true,
        },
    ]
}

fn run_dir() -> PathBuf {
    cache_dir().join("run")
}

pub fn env_file() -> PathBuf {
    run_dir().join("registry.env")
}

fn pid_file(name: &str) -> PathBuf {
    run_dir().join(format!("registry-{name}.pid"))
}

/// Start what is not running; returns true when this call started anything.
pub fn start() -> Result<bool> {
    let images = crate::images::build()?;
    let key = fs::canonicalize(&images)?
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .context("images dir has no name")?;
    fs::create_dir_all(run_dir())?;
    let mut started = false;
    for instance in instances() {
        if running_pid(instance.name).is_some() {
            continue;
        }
        let storage = cache_dir().join("registry").join(&key).join(instance.name);
        fs::create_dir_all(&storage)?;
        spawn(&instance, &storage)?;
        started = true;
        wait_ready(&instance)?;
        let stamp = storage.join(".pushed");
        if !stamp.exists() {
            push_images(&instance, &images)?;
            fs::write(&stamp, "")?;
        }
    }
    let [plain, auth] = instances();
    fs::write(
        env_file(),
        format!(
            "CONTAINER_TEST_REGISTRY=127.0.0.1:{}\nCONTAINER_TEST_AUTH_REGISTRY=127.0.0.1:{}\n\
             CONTAINER_TEST_AUTH_USER={USER}\nCONTAINER_TEST_AUTH_PASSWORD={PASSWORD}\n\
             CONTAINER_TEST_IMAGES={}\n",
            plain.port,
            auth.port,
            images.display()
        ),
    )?;
    Ok(started)
}

fn spawn(instance: &Instance, storage: &Path) -> Result<()> {
    step(&format!(
        "starting the {} registry on 127.0.0.1:{}",
        instance.name, instance.port
    ));
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
         delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n  secret: container-xtask-local\n",
        storage.display(),
        instance.port
    );
    if instance.auth {
        let htpasswd = run_dir().join("registry.htpasswd");
        let line = output(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]))?;
        fs::write(&htpasswd, line.trim_end())?;
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: container-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    let config_path = run_dir().join(format!("registry-{}.yml", instance.name));
    fs::write(&config_path, config)?;
    let log = fs::File::create(run_dir().join(format!("registry-{}.log", instance.name)))?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: it outlives this command and ignores our terminal's Ctrl-C.
        .process_group(0)
        .spawn()
        .context("cannot start docker-registry: run `cargo xtask deps`")?;
    fs::write(pid_file(instance.name), child.id().to_string())?;
    Ok(())
}

fn wait_ready(instance: &Instance) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("http://127.0.0.1:{}/v2/", instance.port);
    while Instant::now() < deadline {
        // The auth registry answers 401 when it is up; both mean "serving".
        let code = output(Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]))
        .unwrap_or_default();
        if code == "200" || code == "401" {
            return Ok(());
        }
        if running_pid(instance.name).is_none() {
            bail!(
                "the {} registry exited at start; see {}",
                instance.name,
                run_dir()
                    .join(format!("registry-{}.log", instance.name))
                    .display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "the {} registry did not answer on {url} within 20 s",
        instance.name
    )
}

fn push_images(instance: &Instance, images: &Path) -> Result<()> {
    for name in crate::images::NAMES {
        let tags: &[&str] = if *name == "busybox" {
            &["latest", "1.36"]
        } else {
            &["latest"]
        };
        for tag in tags {
            let repo = if *name == "busybox" {
                format!("library/{name}")
            } else {
                format!("test/{name}")
            };
            step(&format!(
                "pushing {name} to the {} registry as {repo}:{tag}",
                instance.name
            ));
            let mut cmd = Command::new("skopeo");
            // `--all`: an index goes up with every platform's manifest, not the host's only.
            cmd.args(["copy", "-q", "--all", "--dest-tls-verify=false"]);
            if instance.auth {
                cmd.arg(format!("--dest-creds={USER}:{PASSWORD}"));
            }
            cmd.arg(format!(
                "oci:{}:latest",
                images.join("oci").join(name).display()
            ))
            .arg(format!("docker://127.0.0.1:{}/{repo}:{tag}", instance.port));
            run(&mut cmd)?;
        }
    }
    Ok(())
}

fn running_pid(name: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file(name))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains("docker-registry")
        .then_some(pid)
}

pub fn stop() -> Result<()> {
    for instance in instances() {
        if let Some(pid) = running_pid(instance.name) {
            step(&format!(
                "stopping the {} registry (pid {pid})",
                instance.name
            ));
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while running_pid(instance.name).is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = fs::remove_file(pid_file(instance.name));
    }
    let _ = fs::remove_file(env_file());
    Ok(())
}
