//! Conversions between what users type (crate `spec`) and the wire types, and names of
//! wire enums as users see them.

use crate::v1;

impl From<&spec::PortSpec> for v1::PortMapping {
    fn from(p: &spec::PortSpec) -> v1::PortMapping {
        v1::PortMapping {
            host_ip: p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            host_port: p.host_port.map_or(0, u32::from),
            container_port: u32::from(p.container_port),
            count: u32::from(p.count),
            protocol: match p.protocol {
                spec::Protocol::Tcp => v1::Protocol::Tcp as i32,
                spec::Protocol::Udp => v1::Protocol::Udp as i32,
            },
        }
    }
}

/// Why a wire value could not be turned back into a `spec` type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A port mapping with ports out of range or a bad address.
    #[error("invalid port mapping from the daemon: {0}")]
    PortMapping(String),
}

impl TryFrom<&v1::PortMapping> for spec::PortSpec {
    type Error = ConvertError;

    fn try_from(p: &v1::PortMapping) -> Result<spec::PortSpec, ConvertError> {
        let bad = || ConvertError::PortMapping(format!("{p:?}"));
        let port = |n: u32| u16::try_from(n).ok().filter(|n| *n != 0);
        let host_ip = if p.host_ip.is_empty() {
            None
        } else {
            Some(p.host_ip.parse::<spec::HostAddr>().map_err(|_| bad())?)
        };
        let count = port(p.count).ok_or_else(bad)?;
        let container_port = port(p.container_port).ok_or_else(bad)?;
        let host_port = match p.host_port {
            0 => None,
            n => Some(port(n).ok_or_else(bad)?),
        };
        let fits = |start: u16| u32::from(start) + u32::from(count) - 1 <= 65535;
        if !fits(container_port) || host_port.is_some_and(|h| !fits(h)) {
            return Err(bad());
        }
        Ok(spec::PortSpec {
            host_ip,
            host_port,
            container_port,
            count,
            protocol: if p.protocol == v1::Protocol::Udp as i32 {
                spec::Protocol::Udp
            } else {
                spec::Protocol::Tcp
            },
        })
    }
}

impl From<&spec::Mount> for v1::Mount {
    fn from(m: &spec::Mount) -> v1::Mount {
        let kind = match m {
            spec::Mount::Bind { source, .. } => v1::mount::Kind::Bind(v1::BindMount {
                source: source.clone(),
            }),
            spec::Mount::Volume { name, .. } => v1::mount::Kind::Volume(v1::VolumeMount {
                name: name.clone().unwrap_or_default(),
            }),
            spec::Mount::Tmpfs {
                size,
                mode,
                options,
                ..
            } => v1::mount::Kind::Tmpfs(v1::TmpfsMount {
                size_bytes: size.map_or(0, |s| s.bytes()),
                mode: mode.unwrap_or(0),
                options: options.iter().filter(|o| *o != "ro").cloned().collect(),
            }),
        };
        v1::Mount {
            target: m.target().to_owned(),
            readonly: m.readonly(),
            kind: Some(kind),
        }
    }
}

impl From<&spec::Ulimit> for v1::Ulimit {
    fn from(u: &spec::Ulimit) -> v1::Ulimit {
        v1::Ulimit {
            name: u.name.clone(),
            soft: u.soft.as_raw(),
            hard: u.hard.as_raw(),
        }
    }
}

impl From<spec::RestartPolicy> for v1::RestartPolicy {
    fn from(p: spec::RestartPolicy) -> v1::RestartPolicy {
        use v1::restart_policy::Kind;
        let (kind, max_retries) = match p {
            spec::RestartPolicy::No => (Kind::No, 0),
            spec::RestartPolicy::Always => (Kind::Always, 0),
            spec::RestartPolicy::UnlessStopped => (Kind::UnlessStopped, 0),
            spec::RestartPolicy::OnFailure { max_retries } => {
                (Kind::OnFailure, max_retries.unwrap_or(0))
            }
        };
        v1::RestartPolicy {
            kind: kind as i32,
            max_retries,
        }
    }
}

impl From<&spec::Label> for v1::Label {
    fn from(l: &spec::Label) -> v1::Label {
        v1::Label {
            key: l.key.clone(),
            value: l.value.clone(),
        }
    }
}

impl From<&spec::NetworkSpec> for v1::NetworkRequest {
    fn from(n: &spec::NetworkSpec) -> v1::NetworkRequest {
        v1::NetworkRequest {
            name: n.name.clone(),
            mac_address: n.mac.clone().unwrap_or_default(),
            mtu: n.mtu.unwrap_or(0),
        }
    }
}

impl v1::ContainerState {
    /// The state as users read it: `created`, `running`, `stopping`, `stopped`, `unknown`.
    pub fn user_name(self) -> &'static str {
        match self {
            v1::ContainerState::Unknown => "unknown",
            v1::ContainerState::Created => "created",
            v1::ContainerState::Running => "running",
            v1::ContainerState::Stopping => "stopping",
            v1::ContainerState::Stopped => "stopped",
        }
    }
}

impl v1::ContainerInfo {
    /// The state, `Unknown` for a value this build does not know.
    pub fn state_enum(&self) -> v1::ContainerState {
        v1::ContainerState::try_from(self.state).unwrap_or(v1::ContainerState::Unknown)
    }
}

impl v1::PortMapping {
    /// Docker's `docker ps` rendering: `0.0.0.0:8080->80/tcp`, `127.0.0.1:8000-8001->80-81/udp`.
    pub fn display_published(&self) -> String {
        let proto = if self.protocol == v1::Protocol::Udp as i32 {
            "udp"
        } else {
            "tcp"
        };
        let range = |start: u32| {
            if self.count <= 1 {
                start.to_string()
            } else {
                format!("{start}-{}", start + self.count - 1)
            }
        };
        let host_ip = match self.host_ip.as_str() {
            "" => "0.0.0.0".to_owned(),
            ip if ip.contains(':') => format!("[{ip}]"),
            ip => ip.to_owned(),
        };
        let host = if self.host_port == 0 {
            String::new()
        } else {
            range(self.host_port)
        };
        format!("{host_ip}:{host}->{}/{proto}", range(self.container_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_survive_the_wire() {
        for text in [
            "8080:80",
            "127.0.0.1:8000-8002:9000-9002/udp",
            "[::1]::53/udp",
            "localhost:8080:80",
            "80",
        ] {
            let spec: spec::PortSpec = text.parse().unwrap();
            let wire = v1::PortMapping::from(&spec);
            assert_eq!(spec::PortSpec::try_from(&wire).unwrap(), spec, "{text}");
        }
        let bad = v1::PortMapping {
            container_port: 65535,
            count: 2,
            ..Default::default()
        };
        assert!(spec::PortSpec::try_from(&bad).is_err());
    }

    #[test]
    fn published_ports_render_like_docker_ps() {
        let p = |t: &str| v1::PortMapping::from(&t.parse::<spec::PortSpec>().unwrap());
        assert_eq!(p("8080:80").display_published(), "0.0.0.0:8080->80/tcp");
        assert_eq!(
            p("127.0.0.1:8000-8001:80-81/udp").display_published(),
            "127.0.0.1:8000-8001->80-81/udp"
        );
        assert_eq!(p("[::1]:53:53/udp").display_published(), "[::1]:53->53/udp");
        assert_eq!(
            p("localhost:8080:80").display_published(),
            "localhost:8080->80/tcp"
        );
    }

    #[test]
    fn mounts_keep_their_kind_and_flags() {
        let m = v1::Mount::from(&spec::parse_volume("data:/var/lib/db:ro").unwrap());
        assert_eq!(m.target, "/var/lib/db");
        assert!(m.readonly);
        assert_eq!(
            m.kind,
            Some(v1::mount::Kind::Volume(v1::VolumeMount {
                name: "data".into()
            }))
        );
        let m = v1::Mount::from(&spec::parse_tmpfs("/run:ro,noexec,size=64m").unwrap());
        assert!(m.readonly);
        assert_eq!(
            m.kind,
            Some(v1::mount::Kind::Tmpfs(v1::TmpfsMount {
                size_bytes: 64 << 20,
                mode: 0,
                options: vec!["noexec".into()]
            }))
        );
    }
}
