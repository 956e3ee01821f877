//! A container's options as the daemon keeps them in `container.json`: its own strict serde
//! types, readable and versioned with the daemon, not the API's wire messages.
//!
//! They hold exactly what the create request's `ContainerConfig` held; [`ContainerOptions`]
//! converts from and to it without loss (a test checks every field). A field the API gains
//! is added here too, with `#[serde(default)]`, so older records still load.

use api::v1;
use serde::{Deserialize, Serialize};

/// The user's options for one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerOptions {
    /// The ID the user asked for (empty: the daemon chose).
    pub id: String,
    /// The image as the user wrote it.
    pub image: String,
    /// The platform asked for (`linux/amd64`), empty for the host's.
    pub platform: String,
    /// The process overrides.
    pub process: Option<ProcessOptions>,
    /// CPU and memory limits.
    pub resources: Option<ResourceOptions>,
    /// Mounts (`-v`, `--mount`, `--tmpfs`).
    pub mounts: Vec<MountOption>,
    /// Published ports (`-p`).
    pub ports: Vec<PortOption>,
    /// Networks to join.
    pub networks: Vec<NetworkOption>,
    /// DNS settings.
    pub dns: Option<DnsOptions>,
    /// Labels, in the order given.
    pub labels: Vec<LabelOption>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--init`.
    pub init: bool,
    /// `--kernel`.
    pub kernel: String,
    /// Extra kernel arguments.
    pub kernel_args: Vec<String>,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--restart`.
    pub restart_policy: Option<RestartOption>,
    /// `--stop-signal` (0: the image's or SIGTERM).
    pub stop_signal: i32,
    /// `--stop-timeout`.
    pub stop_timeout_seconds: Option<u32>,
    /// `--hostname`.
    pub hostname: String,
    /// `--publish-socket`.
    pub published_sockets: Vec<PublishedSocketOption>,
    /// `--health-*`, `--no-healthcheck` (none: the image's).
    pub healthcheck: Option<HealthcheckOption>,
    /// `--add-host` entries as NAME:IP (IP may be `host-gateway`).
    pub extra_hosts: Vec<String>,
    /// `-P`: publish every exposed port on a free host port (already resolved into `ports`
    /// at create).
    pub publish_all: bool,
    /// `--expose` entries.
    pub expose: Vec<String>,
    /// `--rosetta`.
    pub rosetta: bool,
}

/// The user's healthcheck fields (empty test and zero values inherit the image's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthcheckOption {
    /// `["CMD-SHELL", cmd]`, `["CMD", ...]`, `["NONE"]` or empty.
    pub test: Vec<String>,
    /// `--health-interval`, ms.
    pub interval_ms: u64,
    /// `--health-timeout`, ms.
    pub timeout_ms: u64,
    /// `--health-start-period`, ms.
    pub start_period_ms: u64,
    /// `--health-retries`.
    pub retries: u32,
}

/// Overrides of the image's process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessOptions {
    /// `--entrypoint` (`Some("")` clears the image's).
    pub entrypoint: Option<String>,
    /// The command after the image.
    pub command: Vec<String>,
    /// `-e` / `--env-file`, `KEY=VALUE`.
    pub env: Vec<String>,
    /// `-w`.
    pub working_dir: String,
    /// `-u`.
    pub user: String,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub stdin_open: bool,
    /// `--ulimit`.
    pub ulimits: Vec<UlimitOption>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
}

/// One `--ulimit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UlimitOption {
    /// `nofile`, `nproc`, …
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// CPU and memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceOptions {
    /// Thousandths of a CPU (0: the default).
    pub cpus_millis: u32,
    /// Memory in bytes (0: the default).
    pub memory_bytes: u64,
    /// `/dev/shm` size in bytes (0: the default).
    pub shm_size_bytes: u64,
}

/// One mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MountOption {
    /// Where in the container.
    pub target: String,
    /// Read-only.
    pub readonly: bool,
    /// What is mounted (none: the request named nothing).
    pub kind: Option<MountKind>,
}

/// What a mount mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase", tag = "type")]
pub enum MountKind {
    /// A host path.
    Bind {
        /// The host path.
        source: String,
    },
    /// A named or anonymous volume.
    Volume {
        /// The volume's name.
        name: String,
    },
    /// A tmpfs.
    Tmpfs {
        /// Size in bytes (0: the default).
        size_bytes: u64,
        /// Mode bits (0: the default).
        mode: u32,
        /// Further mount options.
        options: Vec<String>,
    },
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// One `-p` range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortOption {
    /// The host address (empty: all).
    pub host_ip: String,
    /// The first host port (0: chosen by the system).
    pub host_port: u32,
    /// The first container port.
    pub container_port: u32,
    /// How many consecutive ports.
    pub count: u32,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A network to join.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkOption {
    /// The network's name.
    pub name: String,
    /// A fixed MAC address (empty: derived).
    pub mac_address: String,
    /// MTU (0: the network's).
    pub mtu: u32,
}

/// DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsOptions {
    /// `--no-dns`.
    pub disabled: bool,
    /// `--dns`.
    pub nameservers: Vec<String>,
    /// `--dns-domain`.
    pub domain: String,
    /// `--dns-search`.
    pub search: Vec<String>,
    /// `--dns-option`.
    pub options: Vec<String>,
}

/// One label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelOption {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// When a container is restarted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartKind {
    /// Never.
    #[default]
    No,
    /// Always.
    Always,
    /// When it exits with a non-zero code.
    OnFailure,
    /// Always, unless the user stopped it.
    UnlessStopped,
}

/// `--restart`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartOption {
    /// The policy.
    pub kind: RestartKind,
    /// For on-failure: the most restarts (0: unlimited).
    pub max_retries: u32,
}

/// One `--publish-socket`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedSocketOption {
    /// The socket on the host.
    pub host_path: String,
    /// The socket in the container.
    pub container_path: String,
}

impl From<&v1::ContainerConfig> for ContainerOptions {
    fn from(c: &v1::ContainerConfig) -> Self {
        ContainerOptions {
            id: c.id.clone(),
            image: c.image.clone(),
            platform: c.platform.clone(),
            process: c.process.as_ref().map(|p| ProcessOptions {
                entrypoint: p.entrypoint.clone(),
                command: p.command.clone(),
                env: p.env.clone(),
                working_dir: p.working_dir.clone(),
                user: p.user.clone(),
                tty: p.tty,
                stdin_open: p.stdin_open,
                ulimits: p
                    .ulimits
                    .iter()
                    .map(|u| UlimitOption {
                        name: u.name.clone(),
                        soft: u.soft,
                        hard: u.hard,
                    })
                    .collect(),
                cap_add: p.cap_add.clone(),
                cap_drop: p.cap_drop.clone(),
            }),
            resources: c.resources.as_ref().map(|r| ResourceOptions {
                cpus_millis: r.cpus_millis,
                memory_bytes: r.memory_bytes,
                shm_size_bytes: r.shm_size_bytes,
            }),
            mounts: c
                .mounts
                .iter()
                .map(|m| MountOption {
                    target: m.target.clone(),
                    readonly: m.readonly,
                    kind: m.kind.as_ref().map(|k| match k {
                        v1::mount::Kind::Bind(b) => MountKind::Bind {
                            source: b.source.clone(),
                        },
                        v1::mount::Kind::Volume(v) => MountKind::Volume {
                            name: v.name.clone(),
                        },
                        v1::mount::Kind::Tmpfs(t) => MountKind::Tmpfs {
                            size_bytes: t.size_bytes,
                            mode: t.mode,
                            options: t.options.clone(),
                        },
                    }),
                })
                .collect(),
            ports: c
                .ports
                .iter()
                .map(|p| PortOption {
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port,
                    container_port: p.container_port,
                    count: p.count,
                    protocol: match v1::Protocol::try_from(p.protocol) {
                        Ok(v1::Protocol::Udp) => Protocol::Udp,
                        _ => Protocol::Tcp,
                    },
                })
                .collect(),
            networks: c
                .networks
                .iter()
                .map(|n| NetworkOption {
                    name: n.name.clone(),
                    mac_address: n.mac_address.clone(),
                    mtu: n.mtu,
                })
                .collect(),
            dns: c.dns.as_ref().map(|d| DnsOptions {
                disabled: d.disabled,
                nameservers: d.nameservers.clone(),
                domain: d.domain.clone(),
                search: d.search.clone(),
                options: d.options.clone(),
            }),
            labels: c
                .labels
                .iter()
                .map(|l| LabelOption {
                    key: l.key.clone(),
                    value: l.value.clone(),
                })
                .collect(),
            read_only: c.read_only,
            init: c.init,
            kernel: c.kernel.clone(),
            kernel_args: c.kernel_args.clone(),
            auto_remove: c.auto_remove,
            restart_policy: c.restart_policy.as_ref().map(|r| {
                use v1::restart_policy::Kind;
                RestartOption {
                    kind: match Kind::try_from(r.kind) {
                        Ok(Kind::Always) => RestartKind::Always,
                        Ok(Kind::OnFailure) => RestartKind::OnFailure,
                        Ok(Kind::UnlessStopped) => RestartKind::UnlessStopped,
                        Ok(Kind::No) | Err(_) => RestartKind::No,
                    },
                    max_retries: r.max_retries,
                }
            }),
            stop_signal: c.stop_signal,
            stop_timeout_seconds: c.stop_timeout_seconds,
            hostname: c.hostname.clone(),
            published_sockets: c
                .published_sockets
                .iter()
                .map(|s| PublishedSocketOption {
                    host_path: s.host_path.clone(),
                    container_path: s.container_path.clone(),
                })
                .collect(),
            healthcheck: c.healthcheck.as_ref().map(|h| HealthcheckOption {
                test: h.test.clone(),
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                start_period_ms: h.start_period_ms,
                retries: h.retries,
            }),
            extra_hosts: c.extra_hosts.clone(),
            publish_all: c.publish_all,
            expose: c.expose.clone(),
            rosetta: c.rosetta,
        }
    }
}

impl From<&ContainerOptions> for v1::ContainerConfig {
    fn from(o: &ContainerOptions) -> Self {
        v1::ContainerConfig {
            id: o.id.clone(),
            image: o.image.clone(),
            platform: o.platform.clone(),
            process: o.process.as_ref().map(|p| v1::ProcessConfig {
                entrypoint: p.entrypoint.clone(),
                command: p.command.clone(),
                env: p.env.clone(),
                working_dir: p.working_dir.clone(),
                user: p.user.clone(),
                tty: p.tty,
                stdin_open: p.stdin_open,
                ulimits: p
                    .ulimits
                    .iter()
                    .map(|u| v1::Ulimit {
                        name: u.name.clone(),
                        soft: u.soft,
                        hard: u.hard,
                    })
                    .collect(),
                cap_add: p.cap_add.clone(),
                cap_drop: p.cap_drop.clone(),
            }),
            resources: o.resources.as_ref().map(|r| v1::Resources {
                cpus_millis: r.cpus_millis,
                memory_bytes: r.memory_bytes,
                shm_size_bytes: r.shm_size_bytes,
            }),
            mounts: o
                .mounts
                .iter()
                .map(|m| v1::Mount {
                    target: m.target.clone(),
                    readonly: m.readonly,
                    kind: m.kind.as_ref().map(|k| match k {
                        MountKind::Bind { source } => v1::mount::Kind::Bind(v1::BindMount {
                            source: source.clone(),
                        }),
                        MountKind::Volume { name } => {
                            v1::mount::Kind::Volume(v1::VolumeMount { name: name.clone() })
                        }
                        MountKind::Tmpfs {
                            size_bytes,
                            mode,
                            options,
                        } => v1::mount::Kind::Tmpfs(v1::TmpfsMount {
                            size_bytes: *size_bytes,
                            mode: *mode,
                            options: options.clone(),
                        }),
                    }),
                })
                .collect(),
            ports: o
                .ports
                .iter()
                .map(|p| v1::PortMapping {
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port,
                    container_port: p.container_port,
                    count: p.count,
                    protocol: match p.protocol {
                        Protocol::Tcp => v1::Protocol::Tcp,
                        Protocol::Udp => v1::Protocol::Udp,
                    } as i32,
                })
                .collect(),
            networks: o
                .networks
                .iter()
                .map(|n| v1::NetworkRequest {
                    name: n.name.clone(),
                    mac_address: n.mac_address.clone(),
                    mtu: n.mtu,
                })
                .collect(),
            dns: o.dns.as_ref().map(|d| v1::DnsConfig {
                disabled: d.disabled,
                nameservers: d.nameservers.clone(),
                domain: d.domain.clone(),
                search: d.search.clone(),
                options: d.options.clone(),
            }),
            labels: o
                .labels
                .iter()
                .map(|l| v1::Label {
                    key: l.key.clone(),
                    value: l.value.clone(),
                })
                .collect(),
            read_only: o.read_only,
            init: o.init,
            kernel: o.kernel.clone(),
            kernel_args: o.kernel_args.clone(),
            auto_remove: o.auto_remove,
            restart_policy: o.restart_policy.as_ref().map(|r| {
                use v1::restart_policy::Kind;
                v1::RestartPolicy {
                    kind: match r.kind {
                        RestartKind::No => Kind::No,
                        RestartKind::Always => Kind::Always,
                        RestartKind::OnFailure => Kind::OnFailure,
                        RestartKind::UnlessStopped => Kind::UnlessStopped,
                    } as i32,
                    max_retries: r.max_retries,
                }
            }),
            stop_signal: o.stop_signal,
            stop_timeout_seconds: o.stop_timeout_seconds,
            hostname: o.hostname.clone(),
            published_sockets: o
                .published_sockets
                .iter()
                .map(|s| v1::PublishedSocket {
                    host_path: s.host_path.clone(),
                    container_path: s.container_path.clone(),
                })
                .collect(),
            healthcheck: o.healthcheck.as_ref().map(|h| v1::Healthcheck {
                test: h.test.clone(),
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                start_period_ms: h.start_period_ms,
                retries: h.retries,
            }),
            extra_hosts: o.extra_hosts.clone(),
            publish_all: o.publish_all,
            expose: o.expose.clone(),
            rosetta: o.rosetta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with every field set to something other than its default.
    fn full_config() -> v1::ContainerConfig {
        let mount = |target: &str, kind| v1::Mount {
            target: target.into(),
            readonly: true,
            kind: Some(kind),
        };
        v1::ContainerConfig {
            id: "abc".into(),
            image: "busybox".into(),
            platform: "linux/arm64".into(),
            process: Some(v1::ProcessConfig {
                entrypoint: Some(String::new()),
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                env: vec!["A=1".into()],
                working_dir: "/work".into(),
                user: "1000:1000".into(),
                tty: true,
                stdin_open: true,
                ulimits: vec![v1::Ulimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: 2048,
                }],
                cap_add: vec!["NET_ADMIN".into()],
                cap_drop: vec!["CHOWN".into()],
            }),
            resources: Some(v1::Resources {
                cpus_millis: 1500,
                memory_bytes: 1 << 30,
                shm_size_bytes: 64 << 20,
            }),
            mounts: vec![
                mount(
                    "/src",
                    v1::mount::Kind::Bind(v1::BindMount {
                        source: "/home/me/src".into(),
                    }),
                ),
                mount(
                    "/data",
                    v1::mount::Kind::Volume(v1::VolumeMount {
                        name: "data".into(),
                    }),
                ),
                mount(
                    "/tmp",
                    v1::mount::Kind::Tmpfs(v1::TmpfsMount {
                        size_bytes: 1 << 20,
                        mode: 0o1777,
                        options: vec!["noexec".into()],
                    }),
                ),
                v1::Mount {
                    target: "/none".into(),
                    readonly: false,
                    kind: None,
                },
            ],
            ports: vec![v1::PortMapping {
                host_ip: "127.0.0.1".into(),
                host_port: 8080,
                container_port: 80,
                count: 2,
                protocol: v1::Protocol::Udp as i32,
            }],
            networks: vec![v1::NetworkRequest {
                name: "backend".into(),
                mac_address: "02:42:ac:11:00:02".into(),
                mtu: 1400,
            }],
            dns: Some(v1::DnsConfig {
                disabled: true,
                nameservers: vec!["1.1.1.1".into()],
                domain: "example.test".into(),
                search: vec!["svc.test".into()],
                options: vec!["ndots:2".into()],
            }),
            labels: vec![v1::Label {
                key: "team".into(),
                value: "db".into(),
            }],
            read_only: true,
            init: true,
            kernel: "/k/vmlinux".into(),
            kernel_args: vec!["quiet".into()],
            auto_remove: true,
            restart_policy: Some(v1::RestartPolicy {
                kind: v1::restart_policy::Kind::OnFailure as i32,
                max_retries: 3,
            }),
            stop_signal: 15,
            stop_timeout_seconds: Some(7),
            hostname: "web".into(),
            published_sockets: vec![v1::PublishedSocket {
                host_path: "/run/a.sock".into(),
                container_path: "/run/b.sock".into(),
            }],
            healthcheck: Some(v1::Healthcheck {
                test: vec!["CMD-SHELL".into(), "test -f /tmp/ok".into()],
                interval_ms: 1000,
                timeout_ms: 2000,
                start_period_ms: 3000,
                retries: 2,
            }),
            extra_hosts: vec![
                "db:10.0.0.5".into(),
                "host.docker.internal:host-gateway".into(),
            ],
            publish_all: true,
            expose: vec!["8080/tcp".into()],
            rosetta: true,
        }
    }

    #[test]
    fn every_field_survives_the_record() {
        let config = full_config();
        let stored = ContainerOptions::from(&config);
        let json = serde_json::to_string(&stored).unwrap();
        let back: ContainerOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back, stored);
        assert_eq!(v1::ContainerConfig::from(&back), config);
        // And an empty request stays empty.
        let empty = v1::ContainerConfig::default();
        assert_eq!(
            v1::ContainerConfig::from(&ContainerOptions::from(&empty)),
            empty
        );
    }

    #[test]
    fn the_record_reads_as_the_daemon_wrote_it() {
        let json = serde_json::to_value(ContainerOptions::from(&full_config())).unwrap();
        assert_eq!(json["mounts"][0]["kind"]["type"], "bind");
        assert_eq!(json["mounts"][2]["kind"]["mode"], 0o1777);
        assert_eq!(json["ports"][0]["protocol"], "udp");
        assert_eq!(json["restart_policy"]["kind"], "on-failure");
        assert_eq!(json["process"]["command"][2], "echo hi");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<ContainerOptions>(r#"{"image":"x","bogus":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
    }
}
