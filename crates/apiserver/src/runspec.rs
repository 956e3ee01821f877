//! From what the user asked (`ContainerConfig`) and what the image says (`ImageConfig`) to
//! what the runtime runs (`RuntimeConfig` with an OCI runtime spec). Pure: no I/O, so every
//! Docker rule here has a unit test.
//!
//! Docker's rules applied: `--entrypoint` replaces the image's ENTRYPOINT and also drops its
//! CMD; arguments after the image replace CMD; `-e` overrides the image's ENV by name, PATH
//! gets Docker's default when neither sets it, HOSTNAME is the container's hostname and
//! TERM=xterm with a terminal; `-w` else WORKDIR else `/`; `-u` else USER else root; the stop
//! signal is `--stop-signal` else StopSignal else SIGTERM. The spec carries Docker's default
//! capabilities (with `--cap-add`/`--cap-drop`, `ALL` included), rlimits (with `--ulimit`),
//! masked and read-only paths; the runtime adds Docker's default mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use api::v1;
use serde_json::json;

use crate::networks::{USER_NET_ADDRESS, USER_NET_DNS, USER_NET_GATEWAY};

/// Why a container's configuration cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunSpecError {
    /// Neither the image nor the user gave a command.
    #[error("no command specified: the image has no ENTRYPOINT or CMD and none was given")]
    NoCommand,
    /// A value is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The option.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The option is understood but this daemon cannot carry it out yet.
    #[error("{0} is not supported by this daemon yet")]
    Unsupported(&'static str),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> RunSpecError {
    RunSpecError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Docker's default PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &spec::capability::DOCKER_DEFAULT_CAPABILITIES;

/// Every capability Linux knows (for `--cap-add ALL`).
const ALL_CAPS: &[&str] = &spec::capability::CAPABILITIES;

/// Docker's default open-files limit.
pub const DEFAULT_NOFILE: u64 = 1_048_576;

/// The init process after merging the user's options with the image's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Program and arguments.
    pub args: Vec<String>,
    /// KEY=VALUE, image first, overrides in place.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// The user as name|uid[:group|gid]; empty means root.
    pub user: String,
    /// The stop signal's number.
    pub stop_signal: u32,
}

/// Merges the user's process options with the image's config, as Docker does.
pub fn merge_process(
    config: &v1::ContainerConfig,
    image: &oci::ImageConfig,
    hostname: &str,
) -> Result<Process, RunSpecError> {
    let default = v1::ProcessConfig::default();
    let p = config.process.as_ref().unwrap_or(&default);
    let (entrypoint, cmd) = match &p.entrypoint {
        Some(e) => {
            let entry = if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            };
            (entry, p.command.clone())
        }
        None => {
            let cmd = if p.command.is_empty() {
                image.cmd.clone()
            } else {
                p.command.clone()
            };
            (image.entrypoint.clone(), cmd)
        }
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(RunSpecError::NoCommand);
    }

    let mut env: Vec<(String, String)> = Vec::new();
    let mut put = |kv: &str| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match env.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => env.push((k.to_owned(), v.to_owned())),
        }
    };
    put(&format!("PATH={DEFAULT_PATH}"));
    put(&format!("HOSTNAME={hostname}"));
    if p.tty {
        put("TERM=xterm");
    }
    for kv in &image.env {
        put(kv);
    }
    for kv in &p.env {
        if kv.is_empty() || kv.starts_with('=') {
            return Err(invalid("env", format!("{kv:?} has no variable name")));
        }
        put(kv);
    }
    let env = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();

    let cwd = if !p.working_dir.is_empty() {
        p.working_dir.clone()
    } else {
        image
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    if !cwd.starts_with('/') {
        return Err(invalid(
            "working directory",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    let user = if !p.user.is_empty() {
        p.user.clone()
    } else {
        image.user.clone().unwrap_or_default()
    };
    let stop_signal = if config.stop_signal != 0 {
        u32::try_from(config.stop_signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| {
                invalid(
                    "stop signal",
                    format!("{} is not a signal", config.stop_signal),
                )
            })?
    } else if let Some(s) = image.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        s.parse::<spec::Signal>()
            .map(|s| s.number() as u32)
            .map_err(|e| invalid("image StopSignal", e.to_string()))?
    } else {
        libc::SIGTERM as u32
    };
    Ok(Process {
        args,
        env,
        cwd,
        user,
        stop_signal,
    })
}

/// The capability set after `--cap-add` and `--cap-drop` (Docker: drops apply first, except
/// that an explicit add of a dropped capability wins).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>, RunSpecError> {
    let norm = |c: &str| -> Result<String, RunSpecError> {
        spec::parse_capability(c).map_err(|e| invalid("capability", e.to_string()))
    };
    let add: Vec<String> = add.iter().map(|c| norm(c)).collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop.iter().map(|c| norm(c)).collect::<Result<_, _>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        vec![]
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        caps = ALL_CAPS.iter().map(|c| c.to_string()).collect();
    } else {
        for c in add {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    Ok(caps)
}

/// The rlimits: Docker's NOFILE default, replaced or extended by `--ulimit`.
pub fn rlimits(ulimits: &[v1::Ulimit]) -> Result<Vec<serde_json::Value>, RunSpecError> {
    let mut limits: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    limits.insert("RLIMIT_NOFILE".into(), (DEFAULT_NOFILE, DEFAULT_NOFILE));
    for u in ulimits {
        let name = u.name.trim().to_ascii_uppercase();
        const KNOWN: &[&str] = &[
            "AS",
            "CORE",
            "CPU",
            "DATA",
            "FSIZE",
            "LOCKS",
            "MEMLOCK",
            "MSGQUEUE",
            "NICE",
            "NOFILE",
            "NPROC",
            "RSS",
            "RTPRIO",
            "RTTIME",
            "SIGPENDING",
            "STACK",
        ];
        if !KNOWN.contains(&name.as_str()) {
            return Err(invalid("ulimit", format!("unknown resource {:?}", u.name)));
        }
        if u.soft > u.hard {
            return Err(invalid(
                "ulimit",
                format!(
                    "{}: soft limit {} exceeds hard limit {}",
                    u.name, u.soft, u.hard
                ),
            ));
        }
        limits.insert(format!("RLIMIT_{name}"), (u.soft, u.hard));
    }
    Ok(limits
        .into_iter()
        .map(|(t, (soft, hard))| json!({"type": t, "soft": soft, "hard": hard}))
        .collect())
}

/// The OCI runtime spec of the init process (root, hostname and mounts are the runtime's).
pub fn oci_spec(
    process: &Process,
    config: &v1::ContainerConfig,
    cpus_millis: u32,
) -> Result<oci_spec::runtime::Spec, RunSpecError> {
    let default = v1::ProcessConfig::default();
    let p = config.process.as_ref().unwrap_or(&default);
    let caps = capabilities(&p.cap_add, &p.cap_drop)?;
    let mut resources = json!({});
    if cpus_millis > 0 {
        resources["cpu"] = json!({"quota": i64::from(cpus_millis) * 100, "period": 100_000u64});
    }
    let value = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": p.tty,
            "user": {"uid": 0, "gid": 0},
            "args": process.args,
            "env": process.env,
            "cwd": process.cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": rlimits(&p.ulimits)?,
            "noNewPrivileges": false,
        },
        "linux": {
            "resources": resources,
            "maskedPaths": spec::sandbox::DOCKER_MASKED_PATHS,
            "readonlyPaths": spec::sandbox::DOCKER_READONLY_PATHS,
        },
    });
    serde_json::from_value(value).map_err(|e| invalid("runtime spec", e.to_string()))
}

/// Host-side paths and defaults a runtime config needs besides the container's options.
#[derive(Debug, Clone)]
pub struct Host {
    /// The container's bundle directory.
    pub bundle: PathBuf,
    /// The image's rootfs snapshot.
    pub rootfs: PathBuf,
    /// The kernel to boot.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The guest's architecture: the image's ([`crate::kernel::guest_arch`]).
    pub arch: vmm::Arch,
    /// Run x86_64 programs through Rosetta (`--rosetta`; Apple silicon only).
    pub rosetta: bool,
    /// Default vCPUs.
    pub default_cpus: u32,
    /// Default memory, bytes.
    pub default_memory: u64,
    /// `<app root>/volumes`.
    pub volumes: PathBuf,
    /// `<app root>/templates`: formatted empty writable layers the runtime clones.
    pub layer_templates: PathBuf,
    /// How the container is networked.
    pub network: NetworkPlan,
}

/// How a container's interfaces reach the host.
#[derive(Debug, Clone, Default)]
pub enum NetworkPlan {
    /// QEMU user-mode networking on `default`: published ports are QEMU forwards.
    #[default]
    User,
    /// TAP devices on host bridges, one per network the container joined, in order:
    /// published ports are proxied by the runtime to the first one's address.
    Bridge(Vec<crate::networks::Attachment>),
}

/// Size of a new writable layer (sparse: it costs what is written).
pub const WRITABLE_LAYER_BYTES: u64 = 16 << 30;

/// The runtime's config of a container.
pub fn runtime_config(
    id: &str,
    config: &v1::ContainerConfig,
    image: &oci::ImageConfig,
    host: &Host,
) -> Result<runtime_api::RuntimeConfig, RunSpecError> {
    let hostname = if config.hostname.is_empty() {
        id[..12.min(id.len())].to_owned()
    } else {
        config.hostname.clone()
    };
    let process = merge_process(config, image, &hostname)?;
    let res = config.resources.unwrap_or_default();
    let cpus = if res.cpus_millis == 0 {
        host.default_cpus
    } else {
        res.cpus_millis.div_ceil(1000)
    };
    let memory_bytes = if res.memory_bytes == 0 {
        host.default_memory
    } else {
        res.memory_bytes
    };
    if memory_bytes < runtime_api::config::MIN_MEMORY_BYTES {
        return Err(invalid(
            "memory",
            format!("{memory_bytes} bytes is less than the minimum of 200 MiB"),
        ));
    }
    let spec = oci_spec(&process, config, res.cpus_millis)?;
    let mut tmpfs = Vec::new();
    let mut volumes = Vec::new();
    for m in &config.mounts {
        match &m.kind {
            Some(v1::mount::Kind::Tmpfs(t)) => {
                if !m.target.starts_with('/') {
                    return Err(invalid(
                        "tmpfs",
                        format!("{:?} is not an absolute path", m.target),
                    ));
                }
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                options.extend(t.options.iter().cloned());
                if t.size_bytes > 0 {
                    options.push(format!("size={}", t.size_bytes));
                }
                options.push(format!(
                    "mode={:o}",
                    if t.mode == 0 { 0o1777 } else { t.mode }
                ));
                if m.readonly {
                    options.push("ro".into());
                }
                tmpfs.push(runtime_api::config::TmpfsMount {
                    destination: m.target.clone(),
                    options,
                });
            }
            Some(v1::mount::Kind::Bind(b)) => {
                if !m.target.starts_with('/') || !b.source.starts_with('/') {
                    return Err(invalid(
                        "bind mount",
                        format!("{}:{} needs absolute paths", b.source, m.target),
                    ));
                }
                volumes.push(runtime_api::config::VolumeMount {
                    path: PathBuf::from(&b.source),
                    destination: m.target.clone(),
                    read_only: m.readonly,
                    kind: bind_kind(&b.source)?,
                });
            }
            Some(v1::mount::Kind::Volume(v)) => {
                if !m.target.starts_with('/') {
                    return Err(invalid(
                        "volume",
                        format!("{:?} is not an absolute path", m.target),
                    ));
                }
                if v.name.is_empty() {
                    return Err(invalid("volume", "an anonymous volume was not named"));
                }
                volumes.push(runtime_api::config::VolumeMount {
                    path: crate::volumes::image_path(&host.volumes, &v.name),
                    destination: m.target.clone(),
                    read_only: m.readonly,
                    kind: runtime_api::config::VolumeKind::Block,
                });
            }
            None => return Err(invalid("mount", format!("{:?} has no kind", m.target))),
        }
    }
    let no_network = config.networks.len() == 1 && config.networks[0].name == "none";
    let mut published = Vec::new();
    let (networks, gateway) = match &host.network {
        NetworkPlan::Bridge(attachments) if !no_network => {
            for p in &config.ports {
                let spec =
                    spec::PortSpec::try_from(p).map_err(|e| invalid("port", e.to_string()))?;
                published.push(spec.to_string());
            }
            let networks: Vec<_> = attachments
                .iter()
                .map(|a| runtime_api::config::NetworkAttachment {
                    mac: a.mac.to_string(),
                    attachment: vmm::NicAttachment::Tap {
                        name: a.tap.clone(),
                    },
                    address: Some(format!("{}/{}", a.address, a.prefix)),
                    gateway: Some(a.gateway.to_string()),
                    mtu: a.mtu,
                })
                .collect();
            let gateway = attachments.first().map(|a| a.gateway.to_string());
            (networks, gateway)
        }
        _ => user_networks(id, config, no_network)?,
    };
    let dns_in = config.dns.clone().unwrap_or_default();
    let mut search = Vec::new();
    if !dns_in.domain.is_empty() {
        search.push(dns_in.domain.clone());
    }
    search.extend(dns_in.search.iter().cloned());
    let dns = runtime_api::config::Dns {
        disabled: dns_in.disabled,
        nameservers: if dns_in.nameservers.is_empty() && !no_network {
            gateway.into_iter().collect()
        } else {
            dns_in.nameservers.clone()
        },
        search,
        options: dns_in.options.clone(),
    };
    let user = (!process.user.is_empty()).then(|| process.user.clone());
    Ok(runtime_api::RuntimeConfig {
        id: id.to_owned(),
        hostname,
        rootfs: host.rootfs.clone(),
        writable_layer: runtime_api::config::WritableLayer {
            path: host.bundle.join("rw.ext4"),
            size_bytes: WRITABLE_LAYER_BYTES,
            template_dir: Some(host.layer_templates.clone()),
        },
        spec,
        user,
        init: config.init,
        terminal: config.process.as_ref().is_some_and(|p| p.tty),
        stdin_open: config.process.as_ref().is_some_and(|p| p.stdin_open),
        cpus,
        memory_bytes,
        kernel: if config.kernel.is_empty() {
            host.kernel.clone()
        } else {
            PathBuf::from(&config.kernel)
        },
        initramfs: host.initramfs.clone(),
        arch: host.arch,
        rosetta: host.rosetta,
        kernel_args: config.kernel_args.clone(),
        read_only: config.read_only,
        tmpfs,
        shm_size_bytes: Some(res.shm_size_bytes).filter(|s| *s > 0),
        stop_signal: Some(process.stop_signal),
        stop_timeout_secs: config
            .stop_timeout_seconds
            .unwrap_or(runtime_api::config::DEFAULT_STOP_TIMEOUT_SECS),
        dns,
        extra_hosts: extra_hosts(config, &networks, no_network)?,
        networks,
        published_ports: published,
        discard_on_exit: config.auto_remove && volumes.is_empty(),
        volumes,
        labels: config
            .labels
            .iter()
            .map(|l| (l.key.clone(), l.value.clone()))
            .collect(),
        published_sockets: published_sockets(config)?,
    })
}

/// The `--add-host` entries, `host-gateway` resolved to the first network's gateway: the
/// host's address on a bridge, QEMU's alias of the host (10.0.2.2) on user-mode networking.
/// While create checks a bridge-mode configuration no network is attached yet, and the
/// entry waits for the start.
fn extra_hosts(
    config: &v1::ContainerConfig,
    networks: &[runtime_api::config::NetworkAttachment],
    no_network: bool,
) -> Result<Vec<runtime_api::config::HostEntry>, RunSpecError> {
    let gateway = networks.first().and_then(|n| n.gateway.clone());
    let mut entries = Vec::new();
    for text in &config.extra_hosts {
        let host = text
            .parse::<spec::ExtraHost>()
            .map_err(|e| invalid("extra host", e.to_string()))?;
        let ip = match host.ip {
            spec::HostIp::Ip(ip) => ip.to_string(),
            spec::HostIp::HostGateway => match &gateway {
                Some(g) => g.clone(),
                None if no_network => {
                    return Err(invalid(
                        "extra host",
                        format!("{text}: host-gateway needs a network, and the container has none"),
                    ));
                }
                None => continue,
            },
        };
        entries.push(runtime_api::config::HostEntry {
            ip,
            names: vec![host.name],
        });
    }
    Ok(entries)
}

/// The interfaces of a container on QEMU user-mode networking (`default` or `none` only),
/// with its published ports as QEMU forwards, and the address of its DNS server.
fn user_networks(
    id: &str,
    config: &v1::ContainerConfig,
    no_network: bool,
) -> Result<(Vec<runtime_api::config::NetworkAttachment>, Option<String>), RunSpecError> {
    if config
        .networks
        .iter()
        .any(|n| n.name != "default" && n.name != "none")
        || config.networks.len() > 1
    {
        return Err(RunSpecError::Unsupported(
            "networks other than default and none",
        ));
    }
    let mut forwards = Vec::new();
    for p in &config.ports {
        let count = p.count.max(1);
        for i in 0..count {
            let guest = u16::try_from(p.container_port + i).map_err(|_| {
                invalid("port", format!("{} is out of range", p.container_port + i))
            })?;
            let host_port = if p.host_port == 0 {
                guest
            } else {
                u16::try_from(p.host_port + i)
                    .map_err(|_| invalid("port", format!("{} is out of range", p.host_port + i)))?
            };
            let host_addr = if p.host_ip.is_empty() {
                std::net::IpAddr::from([0, 0, 0, 0])
            } else {
                match p.host_ip.parse::<spec::HostAddr>() {
                    Ok(spec::HostAddr::Ip(ip)) => ip,
                    // QEMU's user-mode forwards (7.2) take IPv4 host addresses only.
                    Ok(spec::HostAddr::Localhost) => std::net::Ipv4Addr::LOCALHOST.into(),
                    Err(_) => {
                        return Err(invalid(
                            "port",
                            format!("{:?} is not an IP address", p.host_ip),
                        ));
                    }
                }
            };
            forwards.push(vmm::config::PortForward {
                protocol: if p.protocol == v1::Protocol::Udp as i32 {
                    vmm::config::Protocol::Udp
                } else {
                    vmm::config::Protocol::Tcp
                },
                host_addr,
                host_port,
                guest_port: guest,
            });
        }
    }
    if no_network && !forwards.is_empty() {
        return Err(invalid(
            "port",
            "ports cannot be published on a container without a network",
        ));
    }
    let networks = if no_network {
        vec![]
    } else {
        let mac = config
            .networks
            .first()
            .map(|n| n.mac_address.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| mac_for(id));
        vec![runtime_api::config::NetworkAttachment {
            mac,
            attachment: vmm::NicAttachment::User {
                forwards,
                isolated: false,
            },
            address: Some(USER_NET_ADDRESS.into()),
            gateway: Some(USER_NET_GATEWAY.into()),
            mtu: config.networks.first().map(|n| n.mtu).filter(|m| *m > 0),
        }]
    };
    Ok((networks, (!no_network).then(|| USER_NET_DNS.to_owned())))
}

/// How a bind mount's host path reaches the guest: a directory is shared, a single file is
/// shared through its parent, a Unix socket is relayed.
fn bind_kind(source: &str) -> Result<runtime_api::config::VolumeKind, RunSpecError> {
    use runtime_api::config::VolumeKind;
    use std::os::unix::fs::FileTypeExt;
    let md = std::fs::metadata(source)
        .map_err(|e| invalid("bind mount", format!("source {source}: {e}")))?;
    let t = md.file_type();
    if t.is_dir() {
        Ok(VolumeKind::Directory)
    } else if t.is_file() {
        Ok(VolumeKind::File)
    } else if t.is_socket() {
        Ok(VolumeKind::Socket)
    } else {
        Err(invalid(
            "bind mount",
            format!("source {source} is not a directory, a regular file or a Unix socket"),
        ))
    }
}

/// `--publish-socket`s: absolute paths on both sides, each host path once.
fn published_sockets(
    config: &v1::ContainerConfig,
) -> Result<Vec<runtime_api::config::PublishedSocket>, RunSpecError> {
    let mut out: Vec<runtime_api::config::PublishedSocket> = Vec::new();
    for p in &config.published_sockets {
        if !p.host_path.starts_with('/') || !p.container_path.starts_with('/') {
            return Err(invalid(
                "published socket",
                format!("{}:{} needs absolute paths", p.host_path, p.container_path),
            ));
        }
        if out.iter().any(|o| o.host_path == Path::new(&p.host_path)) {
            return Err(invalid(
                "published socket",
                format!("{} is published twice", p.host_path),
            ));
        }
        out.push(runtime_api::config::PublishedSocket {
            host_path: PathBuf::from(&p.host_path),
            container_path: p.container_path.clone(),
        });
    }
    Ok(out)
}

/// A stable, locally administered MAC address derived from the container's ID.
fn mac_for(id: &str) -> String {
    let b = id.as_bytes();
    let byte = |i: usize| -> u8 {
        let pair = b.get(i * 2..i * 2 + 2).unwrap_or(b"00");
        u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("00"), 16).unwrap_or(0)
    };
    format!(
        "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
        byte(0),
        byte(1),
        byte(2),
        byte(3)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> oci::ImageConfig {
        let json = br#"{"architecture":"amd64","os":"linux","config":{
            "Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],
            "Env":["PATH=/usr/bin:/bin","NGINX_VERSION=1.25"],"WorkingDir":"/srv",
            "User":"www","StopSignal":"SIGQUIT"},
            "rootfs":{"type":"layers","diff_ids":[]}}"#;
        oci::manifest::parse_config(json).unwrap()
    }

    fn config(process: v1::ProcessConfig) -> v1::ContainerConfig {
        v1::ContainerConfig {
            image: "nginx".into(),
            process: Some(process),
            ..Default::default()
        }
    }

    #[test]
    fn image_defaults_apply_without_overrides() {
        let p = merge_process(&config(Default::default()), &image(), "h").unwrap();
        assert_eq!(
            p.args,
            ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
        );
        assert_eq!(p.cwd, "/srv");
        assert_eq!(p.user, "www");
        assert_eq!(p.stop_signal, 3);
        assert_eq!(
            p.env,
            ["PATH=/usr/bin:/bin", "HOSTNAME=h", "NGINX_VERSION=1.25"]
        );
    }

    #[test]
    fn overrides_follow_docker() {
        // Arguments replace CMD but keep ENTRYPOINT.
        let p = merge_process(
            &config(v1::ProcessConfig {
                command: vec!["echo".into(), "hi".into()],
                env: vec!["NGINX_VERSION=2".into(), "X=1".into()],
                working_dir: "/tmp".into(),
                user: "0:0".into(),
                tty: true,
                ..Default::default()
            }),
            &image(),
            "h",
        )
        .unwrap();
        assert_eq!(p.args, ["/docker-entrypoint.sh", "echo", "hi"]);
        assert_eq!(p.cwd, "/tmp");
        assert_eq!(p.user, "0:0");
        assert_eq!(
            p.env,
            [
                "PATH=/usr/bin:/bin",
                "HOSTNAME=h",
                "TERM=xterm",
                "NGINX_VERSION=2",
                "X=1"
            ]
        );
        // --entrypoint drops the image's CMD too.
        let p = merge_process(
            &config(v1::ProcessConfig {
                entrypoint: Some("/bin/sh".into()),
                ..Default::default()
            }),
            &image(),
            "h",
        )
        .unwrap();
        assert_eq!(p.args, ["/bin/sh"]);
        // An empty --entrypoint clears it; arguments then are the whole command.
        let p = merge_process(
            &config(v1::ProcessConfig {
                entrypoint: Some(String::new()),
                command: vec!["ls".into()],
                ..Default::default()
            }),
            &image(),
            "h",
        )
        .unwrap();
        assert_eq!(p.args, ["ls"]);
        let err = merge_process(
            &config(v1::ProcessConfig {
                entrypoint: Some(String::new()),
                ..Default::default()
            }),
            &image(),
            "h",
        )
        .unwrap_err();
        assert_eq!(err, RunSpecError::NoCommand);
        // An explicit --stop-signal wins over the image's.
        let mut c = config(Default::default());
        c.stop_signal = 9;
        assert_eq!(merge_process(&c, &image(), "h").unwrap().stop_signal, 9);
    }

    #[test]
    fn path_defaults_and_workdir_defaults_to_root() {
        let bare = oci::manifest::parse_config(
            br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let p = merge_process(&config(Default::default()), &bare, "abc").unwrap();
        assert_eq!(
            p.env,
            [format!("PATH={DEFAULT_PATH}"), "HOSTNAME=abc".into()]
        );
        assert_eq!(p.cwd, "/");
        assert_eq!(p.user, "");
        assert_eq!(p.stop_signal, 15);
    }

    #[test]
    fn capabilities_add_drop_and_all() {
        let caps = capabilities(&["NET_ADMIN".into()], &["CAP_CHOWN".into()]).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        let none = capabilities(&[], &["ALL".into()]).unwrap();
        assert!(none.is_empty());
        let only = capabilities(&["CAP_KILL".into()], &["ALL".into()]).unwrap();
        assert_eq!(only, ["CAP_KILL"]);
        let all = capabilities(&["ALL".into()], &[]).unwrap();
        assert!(all.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn rlimits_default_and_override() {
        let r = rlimits(&[]).unwrap();
        assert_eq!(
            r,
            [json!({"type": "RLIMIT_NOFILE", "soft": DEFAULT_NOFILE, "hard": DEFAULT_NOFILE})]
        );
        let r = rlimits(&[
            v1::Ulimit {
                name: "nofile".into(),
                soft: 10,
                hard: 20,
            },
            v1::Ulimit {
                name: "nproc".into(),
                soft: 5,
                hard: 5,
            },
        ])
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["soft"], 10);
        assert!(
            rlimits(&[v1::Ulimit {
                name: "bogus".into(),
                soft: 1,
                hard: 1
            }])
            .is_err()
        );
    }

    #[test]
    fn runtime_config_validates_in_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["rootfs.ext4", "vmlinux", "initramfs.cpio"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let host = Host {
            bundle: dir.path().to_path_buf(),
            rootfs: dir.path().join("rootfs.ext4"),
            kernel: dir.path().join("vmlinux"),
            initramfs: dir.path().join("initramfs.cpio"),
            arch: vmm::Arch::host(),
            rosetta: false,
            default_cpus: 2,
            default_memory: 512 << 20,
            volumes: dir.path().join("volumes"),
            layer_templates: dir.path().join("templates"),
            network: NetworkPlan::User,
        };
        let id = "ab".repeat(32);
        let mut c = config(v1::ProcessConfig {
            cap_add: vec!["SYS_ADMIN".into()],
            ..Default::default()
        });
        c.resources = Some(v1::Resources {
            cpus_millis: 1500,
            memory_bytes: 0,
            shm_size_bytes: 0,
        });
        c.mounts = vec![v1::Mount {
            target: "/scratch".into(),
            readonly: false,
            kind: Some(v1::mount::Kind::Tmpfs(v1::TmpfsMount {
                size_bytes: 1 << 20,
                mode: 0,
                options: vec!["noexec".into()],
            })),
        }];
        c.ports = vec![v1::PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            container_port: 80,
            count: 1,
            protocol: 0,
        }];
        c.auto_remove = true;
        c.mounts.push(v1::Mount {
            target: "/data".into(),
            readonly: false,
            kind: Some(v1::mount::Kind::Volume(v1::VolumeMount {
                name: "data".into(),
            })),
        });
        // A volume must be flushed and unmounted cleanly even under --rm.
        assert!(
            !runtime_config(&id, &c, &image(), &host)
                .unwrap()
                .discard_on_exit
        );
        c.mounts.pop();
        c.auto_remove = false;
        let rc = runtime_config(&id, &c, &image(), &host).unwrap();
        rc.validate().unwrap();
        assert!(!rc.discard_on_exit);
        assert_eq!(rc.cpus, 2);
        assert_eq!(rc.memory_bytes, 512 << 20);
        assert_eq!(rc.hostname, "abababababab");
        assert_eq!(rc.stop_signal, Some(3));
        assert_eq!(rc.user.as_deref(), Some("www"));
        assert_eq!(
            rc.tmpfs[0].options,
            ["nosuid", "nodev", "noexec", "size=1048576", "mode=1777"]
        );
        let spec = serde_json::to_value(&rc.spec).unwrap();
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .contains(&json!("CAP_SYS_ADMIN"))
        );
        assert_eq!(spec["linux"]["maskedPaths"][0], "/proc/asound");
        let vmm::NicAttachment::User { forwards, .. } = &rc.networks[0].attachment else {
            panic!("not user networking");
        };
        assert_eq!(forwards[0].host_port, 8080);
        assert_eq!(forwards[0].guest_port, 80);
        // Too little memory is refused naming the option.
        c.resources.as_mut().unwrap().memory_bytes = 100 << 20;
        let err = runtime_config(&id, &c, &image(), &host).unwrap_err();
        assert!(err.to_string().starts_with("invalid memory:"), "{err}");
        // --network none gives loopback only.
        c.resources.as_mut().unwrap().memory_bytes = 0;
        c.ports.clear();
        c.networks = vec![v1::NetworkRequest {
            name: "none".into(),
            ..Default::default()
        }];
        assert!(
            runtime_config(&id, &c, &image(), &host)
                .unwrap()
                .networks
                .is_empty()
        );
    }

    #[test]
    fn bridge_networking_gives_taps_addresses_and_proxied_ports() {
        let dir = tempfile::tempdir().unwrap();
        let attachment = |network: &str, tap: &str, last: u8| crate::networks::Attachment {
            network: network.into(),
            mac: "02:00:00:00:00:01".parse().unwrap(),
            address: std::net::Ipv4Addr::new(192, 168, 70, last),
            prefix: 24,
            gateway: std::net::Ipv4Addr::new(192, 168, 70, 1),
            tap: tap.into(),
            mtu: Some(1400),
        };
        let host = Host {
            bundle: dir.path().to_path_buf(),
            rootfs: dir.path().join("rootfs.ext4"),
            kernel: dir.path().join("vmlinux"),
            initramfs: dir.path().join("initramfs.cpio"),
            arch: vmm::Arch::host(),
            rosetta: false,
            default_cpus: 1,
            default_memory: 512 << 20,
            volumes: dir.path().join("volumes"),
            layer_templates: dir.path().join("templates"),
            network: NetworkPlan::Bridge(vec![
                attachment("front", "ctap-aaaa", 5),
                attachment("back", "ctap-bbbb", 6),
            ]),
        };
        let mut c = config(v1::ProcessConfig::default());
        c.ports = vec![v1::PortMapping {
            host_ip: "localhost".into(),
            host_port: 8080,
            container_port: 80,
            count: 2,
            protocol: v1::Protocol::Udp as i32,
        }];
        c.auto_remove = true;
        let rc = runtime_config(&"cd".repeat(32), &c, &image(), &host).unwrap();
        // --rm without volumes: the VM is discarded at the end, not shut down.
        assert!(rc.discard_on_exit);
        assert_eq!(rc.networks.len(), 2);
        assert_eq!(
            rc.networks[0].attachment,
            vmm::NicAttachment::Tap {
                name: "ctap-aaaa".into()
            }
        );
        assert_eq!(rc.networks[0].address.as_deref(), Some("192.168.70.5/24"));
        assert_eq!(rc.networks[1].address.as_deref(), Some("192.168.70.6/24"));
        assert_eq!(rc.networks[0].mtu, Some(1400));
        // Ports are the runtime's proxies, not QEMU forwards; DNS is the gateway.
        assert_eq!(rc.published_ports, ["localhost:8080-8081:80-81/udp"]);
        assert_eq!(rc.dns.nameservers, ["192.168.70.1"]);
    }
}
