//! From an OCI runtime spec to the launch plan the setup helper carries out.
//!
//! Everything that can be decided without touching the system happens here, so it can be
//! unit tested: defaults (Docker's masked and read-only paths when the spec has none), the
//! capability sets, rlimits, the user, whether seccomp applies, and the `--init` wrapping.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxSeccompAction, PosixRlimitType, Spec};
use serde::{Deserialize, Serialize};

use crate::caps::CapSets;
use crate::user::ExecUser;

/// Where the vminitd binary is bind-mounted in a container started with `init`.
pub const INIT_PATH: &str = "/dev/vminitd-init";

/// Errors of spec handling.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid oci spec json")]
    Json(#[source] serde_json::Error),
    #[error("oci spec has no process")]
    NoProcess,
    #[error("oci spec process has no args")]
    NoArgs,
    #[error("oci spec has no root")]
    NoRoot,
    #[error("oci spec root path {0:?} is not absolute")]
    RelativeRoot(PathBuf),
    #[error("mount destination {0:?} is not absolute")]
    RelativeMount(PathBuf),
    #[error("invalid device {0}")]
    Device(String),
}

/// One mount inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    pub destination: String,
    pub fstype: String,
    pub source: String,
    pub options: Vec<String>,
}

/// What only a container's first process does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPlan {
    pub rootfs: PathBuf,
    pub readonly_root: bool,
    pub hostname: Option<String>,
    pub mounts: Vec<MountPlan>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub sysctl: Vec<(String, String)>,
    /// Propagation of the container's root ("rslave" unless the spec says otherwise).
    pub root_propagation: String,
    /// Bind this file (the vminitd binary) at INIT_PATH, for `init`.
    pub bind_init: Option<String>,
    /// Device nodes to create (`--device`), after the default ones.
    pub devices: Vec<DevicePlan>,
    /// A network namespace of its own (the spec names a `network` namespace without a
    /// path), holding only a loopback interface, brought up: `RUN --network=none`.
    #[serde(default)]
    pub own_network: bool,
}

/// One device node of `linux.devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePlan {
    pub path: String,
    /// 'c' (character), 'b' (block) or 'p' (fifo).
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// How the helper joins or creates the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Join {
    /// New mount/pid/uts/ipc/cgroup namespaces, then the container's filesystem.
    Create(Box<ContainerPlan>),
    /// setns into the namespaces of the container whose first process has this pid.
    Exec { init_pid: u32 },
}

/// The launch plan: everything the setup helper needs, sent to it as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    pub join: Join,
    /// The container's cgroup directory, joined before any namespace is entered.
    pub cgroup: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: u32,
    pub caps: CapSets,
    /// (resource, soft, hard)
    pub rlimits: Vec<(u32, u64, u64)>,
    pub no_new_privs: bool,
    pub seccomp: bool,
    pub terminal: bool,
    pub oom_score_adj: Option<i32>,
}

/// Parses a spec from JSON.
pub fn parse(json: &[u8]) -> Result<Spec, SpecError> {
    serde_json::from_slice(json).map_err(SpecError::Json)
}

/// The rootfs path of a container's spec.
pub fn rootfs(spec: &Spec) -> Result<PathBuf, SpecError> {
    let root = spec.root().as_ref().ok_or(SpecError::NoRoot)?;
    if !root.path().is_absolute() {
        return Err(SpecError::RelativeRoot(root.path().clone()));
    }
    Ok(root.path().clone())
}

fn rlimit_number(t: PosixRlimitType) -> u32 {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Inputs besides the spec.
#[derive(Debug, Clone)]
pub struct LaunchInputs<'a> {
    /// None for a container's first process.
    pub exec_of: Option<u32>,
    pub cgroup: Option<PathBuf>,
    pub terminal: bool,
    /// Resolved `user` of the request, if it had one.
    pub user: Option<ExecUser>,
    /// HOME to add when the env has none.
    pub home: String,
    pub init: bool,
    pub hostname_override: Option<&'a str>,
    /// The vminitd binary to bind at INIT_PATH when `init` is set.
    pub init_binary: &'a str,
}

/// Builds the launch plan for `spec`.
pub fn launch(spec: &Spec, inputs: LaunchInputs<'_>) -> Result<Launch, SpecError> {
    let process = spec.process().as_ref().ok_or(SpecError::NoProcess)?;
    let mut args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(SpecError::NoArgs);
    }
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", inputs.home));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let (uid, gid, additional_gids) = match &inputs.user {
        Some(u) => (u.uid, u.gid, u.additional_gids.clone()),
        None => {
            let u = process.user();
            (
                u.uid(),
                u.gid(),
                u.additional_gids().clone().unwrap_or_default(),
            )
        }
    };
    let caps = match process.capabilities() {
        Some(c) => CapSets::from_spec(c),
        None => CapSets::all(),
    };
    let rlimits = process
        .rlimits()
        .iter()
        .flatten()
        .map(|r| (rlimit_number(r.typ()), r.soft(), r.hard()))
        .collect();
    let linux = spec.linux().as_ref();
    // A spec that carries a seccomp section whose default is "allow" asks for no filter
    // (`--security-opt seccomp=unconfined`); anything else gets Docker's default profile.
    let seccomp = !matches!(
        linux
            .and_then(|l| l.seccomp().as_ref())
            .map(|s| s.default_action()),
        Some(LinuxSeccompAction::ScmpActAllow)
    );
    let bind_init =
        (inputs.init && inputs.exec_of.is_none()).then(|| inputs.init_binary.to_string());
    if bind_init.is_some() {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    let join = match inputs.exec_of {
        Some(init_pid) => Join::Exec { init_pid },
        None => {
            let root = spec.root().as_ref().ok_or(SpecError::NoRoot)?;
            let mut mounts = Vec::new();
            for m in spec.mounts().iter().flatten() {
                if !m.destination().is_absolute() {
                    return Err(SpecError::RelativeMount(m.destination().clone()));
                }
                mounts.push(MountPlan {
                    destination: m.destination().display().to_string(),
                    fstype: m.typ().clone().unwrap_or_default(),
                    source: m
                        .source()
                        .as_ref()
                        .map(|s| s.display().to_string())
                        .unwrap_or_default(),
                    options: m.options().clone().unwrap_or_default(),
                });
            }
            let or_default = |v: Option<&Vec<String>>, d: &[&str]| match v {
                Some(v) => v.clone(),
                None => d.iter().map(|s| s.to_string()).collect(),
            };
            let mut devices = Vec::new();
            for d in linux
                .and_then(|l| l.devices().as_ref())
                .into_iter()
                .flatten()
            {
                let kind = match d.typ().as_str() {
                    "c" | "u" => 'c',
                    "b" => 'b',
                    "p" => 'p',
                    other => {
                        return Err(SpecError::Device(format!(
                            "{}: type {other:?}",
                            d.path().display()
                        )));
                    }
                };
                if !d.path().is_absolute() || !d.path().starts_with("/dev") {
                    return Err(SpecError::Device(format!(
                        "{}: not under /dev",
                        d.path().display()
                    )));
                }
                devices.push(DevicePlan {
                    path: d.path().display().to_string(),
                    kind,
                    major: d.major().max(0) as u64,
                    minor: d.minor().max(0) as u64,
                    mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                    uid: d.uid().unwrap_or(0),
                    gid: d.gid().unwrap_or(0),
                });
            }
            let mut sysctl: Vec<(String, String)> = linux
                .and_then(|l| l.sysctl().clone())
                .unwrap_or_default()
                .into_iter()
                .collect();
            sysctl.sort();
            Join::Create(Box::new(ContainerPlan {
                rootfs: rootfs(spec)?,
                readonly_root: root.readonly().unwrap_or(false),
                hostname: inputs
                    .hostname_override
                    .map(String::from)
                    .or_else(|| spec.hostname().clone())
                    .filter(|h| !h.is_empty()),
                mounts,
                masked_paths: or_default(
                    linux.and_then(|l| l.masked_paths().as_ref()),
                    &::spec::sandbox::DOCKER_MASKED_PATHS,
                ),
                readonly_paths: or_default(
                    linux.and_then(|l| l.readonly_paths().as_ref()),
                    &::spec::sandbox::DOCKER_READONLY_PATHS,
                ),
                sysctl,
                root_propagation: linux
                    .and_then(|l| l.rootfs_propagation().clone())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "rslave".into()),
                bind_init,
                own_network: linux
                    .and_then(|l| l.namespaces().as_ref())
                    .is_some_and(|ns| {
                        ns.iter().any(|n| {
                            n.typ() == oci_spec::runtime::LinuxNamespaceType::Network
                                && n.path().is_none()
                        })
                    }),
                devices,
            }))
        }
    };
    let cwd = process.cwd().display().to_string();
    Ok(Launch {
        join,
        cgroup: inputs.cgroup,
        args,
        env,
        cwd: if cwd.is_empty() { "/".into() } else { cwd },
        uid,
        gid,
        additional_gids,
        umask: process.user().umask().unwrap_or(0o022),
        caps,
        rlimits,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        seccomp,
        terminal: inputs.terminal,
        oom_score_adj: process.oom_score_adj(),
    })
}

/// Finds `prog` the way execvp does, with the PATH of `env`, looking under `root`.
pub fn find_program(prog: &str, env: &[String], root: &Path) -> Option<String> {
    if prog.contains('/') {
        return Some(prog.to_string());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{}/{}", dir.trim_end_matches('/'), prog);
        let on_disk = root.join(candidate.trim_start_matches('/'));
        if let Ok(md) = std::fs::metadata(&on_disk) {
            use std::os::unix::fs::PermissionsExt;
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Some(candidate);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERISH: &str = r#"{
      "ociVersion": "1.0.2",
      "process": {
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo hi"],
        "env": ["PATH=/bin:/usr/bin", "FOO=bar"],
        "cwd": "/work",
        "capabilities": {
          "bounding": ["CAP_CHOWN", "CAP_KILL"],
          "effective": ["CAP_CHOWN", "CAP_KILL"],
          "permitted": ["CAP_CHOWN", "CAP_KILL"]
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
        "noNewPrivileges": true
      },
      "root": {"path": "/run/container/c1/rootfs", "readonly": true},
      "hostname": "c1host",
      "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid","noexec","nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid","strictatime","mode=755","size=65536k"]}
      ],
      "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}], "maskedPaths": ["/proc/kcore"],
                "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]}
    }"#;

    fn inputs() -> LaunchInputs<'static> {
        LaunchInputs {
            exec_of: None,
            cgroup: Some("/sys/fs/cgroup/c1".into()),
            terminal: false,
            user: None,
            home: "/root".into(),
            init: false,
            hostname_override: None,
            init_binary: "/init",
        }
    }

    #[test]
    fn container_plan_from_spec() {
        let spec = parse(DOCKERISH.as_bytes()).unwrap();
        let l = launch(&spec, inputs()).unwrap();
        let Join::Create(c) = &l.join else {
            panic!("expected a create")
        };
        assert_eq!(c.rootfs, PathBuf::from("/run/container/c1/rootfs"));
        assert!(c.readonly_root);
        assert_eq!(c.hostname.as_deref(), Some("c1host"));
        assert_eq!(c.mounts.len(), 2);
        assert_eq!(c.mounts[1].options[2], "mode=755");
        assert_eq!(c.masked_paths, vec!["/proc/kcore"]);
        assert_eq!(
            c.readonly_paths.len(),
            ::spec::sandbox::DOCKER_READONLY_PATHS.len()
        );
        assert_eq!(c.root_propagation, "rslave");
        assert_eq!(
            c.devices,
            vec![DevicePlan {
                path: "/dev/fuse".into(),
                kind: 'c',
                major: 10,
                minor: 229,
                mode: 0o666,
                uid: 0,
                gid: 0
            }]
        );
        assert_eq!(l.cwd, "/work");
        assert_eq!(l.caps.bounding, 0b100001);
        assert_eq!(l.caps.ambient, 0);
        assert_eq!(l.rlimits, vec![(libc::RLIMIT_NOFILE, 1024, 4096)]);
        assert!(l.no_new_privs && l.seccomp);
        assert!(l.env.contains(&"HOME=/root".to_string()));
        assert_eq!(l.env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }

    #[test]
    fn user_init_and_exec() {
        let spec = parse(DOCKERISH.as_bytes()).unwrap();
        let mut i = inputs();
        i.user = Some(ExecUser {
            uid: 33,
            gid: 44,
            additional_gids: vec![5],
            home: "/var/www".into(),
        });
        i.init = true;
        i.hostname_override = Some("other");
        let l = launch(&spec, i).unwrap();
        assert_eq!((l.uid, l.gid, l.additional_gids.clone()), (33, 44, vec![5]));
        assert_eq!(
            l.args[..3],
            [INIT_PATH.to_string(), "--".into(), "sh".into()]
        );
        let Join::Create(c) = &l.join else {
            panic!("expected a create")
        };
        assert_eq!(c.bind_init.as_deref(), Some("/init"));
        assert_eq!(c.hostname.as_deref(), Some("other"));

        let mut e = inputs();
        e.exec_of = Some(42);
        e.init = true;
        let l = launch(&spec, e).unwrap();
        assert_eq!(l.join, Join::Exec { init_pid: 42 });
        assert_eq!(l.args[0], "sh", "exec processes are never wrapped");
    }

    #[test]
    fn defaults_and_errors() {
        let spec = parse(br#"{"process":{"user":{"uid":0,"gid":0},"args":["true"],"cwd":""},"root":{"path":"/r"}}"#).unwrap();
        let l = launch(&spec, inputs()).unwrap();
        let Join::Create(c) = &l.join else {
            panic!("expected a create")
        };
        assert_eq!(
            c.masked_paths.len(),
            ::spec::sandbox::DOCKER_MASKED_PATHS.len()
        );
        assert_eq!(l.caps, CapSets::all());
        assert_eq!(l.cwd, "/");
        assert_eq!(l.umask, 0o022);
        assert!(!l.no_new_privs);

        let unconfined = parse(br#"{"process":{"user":{"uid":0,"gid":0},"args":["true"],"cwd":"/"},"root":{"path":"/r"},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}}}"#).unwrap();
        assert!(!launch(&unconfined, inputs()).unwrap().seccomp);

        let noargs = parse(
            br#"{"process":{"user":{"uid":0,"gid":0},"args":[],"cwd":"/"},"root":{"path":"/r"}}"#,
        )
        .unwrap();
        assert!(matches!(launch(&noargs, inputs()), Err(SpecError::NoArgs)));
        let rel = parse(br#"{"process":{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/"},"root":{"path":"rootfs"}}"#).unwrap();
        assert!(matches!(
            launch(&rel, inputs()),
            Err(SpecError::RelativeRoot(_))
        ));
        assert!(matches!(parse(b"{not json"), Err(SpecError::Json(_))));
        let outside = parse(br#"{"process":{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/"},"root":{"path":"/r"},"linux":{"devices":[{"path":"/etc/x","type":"c","major":1,"minor":3}]}}"#).unwrap();
        assert!(matches!(
            launch(&outside, inputs()),
            Err(SpecError::Device(_))
        ));
    }

    #[test]
    fn program_lookup_uses_the_container_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        let prog = dir.path().join("usr/bin/tool");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = vec!["PATH=/bin:/usr/bin".to_string()];
        assert_eq!(
            find_program("tool", &env, dir.path()).as_deref(),
            Some("/usr/bin/tool")
        );
        assert_eq!(find_program("missing", &env, dir.path()), None);
        assert_eq!(
            find_program("./x", &env, dir.path()).as_deref(),
            Some("./x")
        );
    }
}
