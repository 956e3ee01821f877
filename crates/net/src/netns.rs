//! Network namespaces for tests: anything that creates bridges, TAP devices or firewall
//! rules, or sends traffic to a container's address, runs in a namespace the test creates and
//! removes, never in the host's own.
//!
//! [`TestNetns::new`] creates a uniquely named namespace (`ip netns add`) with `lo` up;
//! dropping it deletes the namespace, which takes every device inside with it (a veth pair
//! goes when either end's namespace goes), also when the test panics. Namespaces left by a
//! test process that was killed are deleted by the next [`TestNetns::new`].
//!
//! Code runs inside three ways: [`TestNetns::command`] (a program under `ip netns exec`),
//! [`TestNetns::ip`] (`ip -n`), and [`TestNetns::run`], which runs a closure on a fresh thread
//! that entered the namespace (`setns` moves only the calling thread). Sockets keep the
//! namespace they were made in, so a listener bound inside `run` can be served from any
//! thread afterwards.
//!
//! Tests call [`TestNetns::new_or_skip`]: without root it prints why and answers `None`,
//! unless `CONTAINER_REQUIRE_NETNS=1` or `CONTAINER_REQUIRE_VM=1`, where it panics.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::CloneFlags;

use crate::host::find_program;

/// Set to `1` to make tests fail instead of skipping when they cannot create namespaces.
pub const REQUIRE_NETNS_ENV: &str = "CONTAINER_REQUIRE_NETNS";

/// Also forbids skipping: CI sets it for every privileged tier.
const REQUIRE_VM_ENV: &str = "CONTAINER_REQUIRE_VM";

/// The start of every test namespace's name.
const MARKER: &str = "ctest-";

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why a test namespace could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A program could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A program failed; `message` is its error output.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output on one line.
        message: String,
    },
    /// The thread could not enter the namespace.
    #[error("cannot enter network namespace {name}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A network namespace owned by a test; deleted on drop.
#[derive(Debug)]
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Creates `ctest-<prefix>-<pid>-<n>` and brings its `lo` up.
    pub fn new(prefix: &str) -> Result<TestNetns, NetnsError> {
        remove_orphans();
        let name = format!(
            "{MARKER}{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_ip(&["netns", "add", &name])?;
        // From here on the namespace exists: dropping the value deletes it on any failure.
        let netns = TestNetns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Creates a namespace, or answers `None` after printing why `test` skips. Panics instead
    /// of skipping when `CONTAINER_REQUIRE_NETNS=1` or `CONTAINER_REQUIRE_VM=1`, and on any
    /// failure once namespaces are possible.
    pub fn new_or_skip(test: &str, prefix: &str) -> Option<TestNetns> {
        if let Some(why) = unavailable() {
            if required() {
                panic!(
                    "{test}: {why}, and {REQUIRE_NETNS_ENV}=1 or {REQUIRE_VM_ENV}=1 forbids skipping"
                );
            }
            eprintln!("skipping {test}: {why}");
            return None;
        }
        match TestNetns::new(prefix) {
            Ok(netns) => Some(netns),
            Err(e) => panic!("{test}: {}", spec::error_chain(&e)),
        }
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command running `program` inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(ip_program());
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `ip -n NAME args…`, answering its standard output.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Runs `f` on a fresh thread inside the namespace and answers what it returns. A panic
    /// in `f` is carried on to the caller.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = PathBuf::from(NETNS_DIR).join(&self.name);
        let enter_err = |source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        };
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| -> Result<T, NetnsError> {
                let file = std::fs::File::open(&path).map_err(enter_err)?;
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|errno| enter_err(errno.into()))?;
                Ok(f())
            });
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Creates a veth pair: `here` in this namespace, `there` in `other`, both up.
    pub fn veth(&self, here: &str, other: &TestNetns, there: &str) -> Result<(), NetnsError> {
        self.ip(&[
            "link",
            "add",
            here,
            "type",
            "veth",
            "peer",
            "name",
            there,
            "netns",
            &other.name,
        ])?;
        self.ip(&["link", "set", here, "up"])?;
        other.ip(&["link", "set", there, "up"])?;
        Ok(())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Processes a failed test left inside (a daemon, a VMM) would keep its devices.
        if let Ok(pids) = run_ip(&["netns", "pids", &self.name]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) with a pid `ip netns pids` listed; no memory involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Err(e) = run_ip(&["netns", "delete", &self.name]) {
            eprintln!(
                "cannot delete network namespace {}: {}",
                self.name,
                spec::error_chain(&e)
            );
        }
    }
}

/// Why namespaces cannot be made here, if they cannot.
pub fn unavailable() -> Option<String> {
    // Root, or anyone holding CAP_SYS_ADMIN (mount the namespace file, setns) and
    // CAP_NET_ADMIN (devices inside).
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    let needed = (1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN);
    if caps & needed != needed {
        return Some("network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)".into());
    }
    if find_program("ip").is_none() {
        return Some("`ip` not found (install iproute2)".into());
    }
    None
}

fn required() -> bool {
    [REQUIRE_NETNS_ENV, REQUIRE_VM_ENV]
        .iter()
        .any(|var| std::env::var(var).as_deref() == Ok("1"))
}

/// Deletes test namespaces whose process is gone (killed before its drop guards ran).
fn remove_orphans() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(MARKER) else {
            continue;
        };
        // ctest-<prefix>-<pid>-<n>: the pid is the second field from the end.
        let Some(pid) = rest.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = run_ip(&["netns", "delete", &name]);
        }
    }
}

fn ip_program() -> PathBuf {
    find_program("ip").unwrap_or_else(|| PathBuf::from("ip"))
}

fn run_ip(args: &[&str]) -> Result<String, NetnsError> {
    let command = format!("ip {}", args.join(" "));
    let output = Command::new(ip_program())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(NetnsError::Command { command, message });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
