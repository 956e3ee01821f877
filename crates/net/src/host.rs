//! The host side of a user network on Linux: a bridge holding the network's gateway address,
//! one persistent TAP device per container VM attached to it, IP forwarding, and the
//! network's nftables rules (masquerade out of the host, or no way out for an `--internal`
//! network).
//!
//! [`HostNetwork`] is the boundary; [`LinuxBridge`] is the real implementation, driving the
//! `ip` (iproute2) and `nft` (nftables) programs: their behaviour across kernels is what users
//! debug with anyway, and `nft -f` applies a network's rules in one transaction. Everything
//! acts on the network namespace of the calling thread, so tests run it inside namespaces of
//! their own (see `crate::netns`, feature `testing`).
//!
//! Each network owns one nftables table, `inet container-<bridge>`, so creating or deleting a
//! network never touches another's rules:
//!
//! ```text
//! table inet container-<bridge> {
//!   chain forward {            # filter hook forward
//!     # not internal: new connections into the bridge from elsewhere (another network, the
//!     # outside) are dropped; replies to the containers' own connections pass
//!     oifname "<bridge>" iifname != "<bridge>" ct state != { established, related } drop
//!     # internal: nothing crosses between the bridge and any other interface
//!     iifname "<bridge>" oifname != "<bridge>" drop
//!     oifname "<bridge>" iifname != "<bridge>" drop
//!   }
//!   chain postrouting {        # nat hook postrouting, not internal only
//!     ip saddr <subnet> oifname != "<bridge>" masquerade
//!   }
//! }
//! ```
//!
//! Published ports do not need forwarding: the runtime's proxies ([`crate::proxy`]) run on the
//! host and reach the container as local traffic, and the network's DNS server listens on the
//! gateway address, which is the host's own.
//!
//! Every call is idempotent: creating what exists with the same settings succeeds (a bridge is
//! brought to the asked settings, a leftover TAP from a crash is replaced), deleting what is
//! gone succeeds. A call that fails removes what it created.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::bridge::check_name;
pub use crate::bridge::{
    BRIDGE_PREFIX, BridgeConfig, HostError, HostNetwork, IFNAME_MAX, Ipv6Gateway, TABLE_PREFIX,
    TAP_PREFIX, bridge_name, tap_name,
};

/// Whether this process can run [`LinuxBridge`]: it has CAP_NET_ADMIN, `/dev/net/tun`
/// exists, and `ip` and `nft` are installed. When not, the daemon falls back to QEMU's
/// user-mode networking.
pub fn can_manage_host_network() -> bool {
    has_net_admin() && Path::new("/dev/net/tun").exists() && LinuxBridge::new().is_ok()
}

/// CAP_NET_ADMIN in the effective set, read from `/proc/self/status`.
fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Finds a program on `PATH`, then in the sbin directories a non-root `PATH` often lacks.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A link as `ip -details -json link show` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    /// `info_kind`: `bridge`, `tun`, `veth`, or empty for a plain device.
    kind: String,
    /// The bridge it is attached to.
    master: Option<String>,
    /// Administratively up.
    up: bool,
    /// Carrier present: for a TAP, a process holds it open.
    lower_up: bool,
    mtu: u32,
}

/// The real [`HostNetwork`]: `ip` and `nft` acting on the calling thread's network namespace.
#[derive(Debug, Clone)]
pub struct LinuxBridge {
    ip: PathBuf,
    nft: PathBuf,
}

impl LinuxBridge {
    /// Finds `ip` and `nft`.
    pub fn new() -> Result<LinuxBridge, HostError> {
        let ip = find_program("ip").ok_or(HostError::MissingProgram {
            program: "ip",
            package: "iproute2",
        })?;
        let nft = find_program("nft").ok_or(HostError::MissingProgram {
            program: "nft",
            package: "nftables",
        })?;
        Ok(LinuxBridge { ip, nft })
    }

    fn ip(&self, args: &[&str]) -> Result<String, HostError> {
        run(&self.ip, args, None)
    }

    /// The link called `name`, if any.
    fn link(&self, name: &str) -> Result<Option<Link>, HostError> {
        // Listing every link avoids telling "no such device" apart from other failures by
        // the wording of iproute2's message.
        let args = ["-details", "-json", "link", "show"];
        let out = self.ip(&args)?;
        let bad = |reason: String| HostError::Output {
            command: command_line(&self.ip, &args),
            reason,
        };
        let links: Value = serde_json::from_str(&out).map_err(|e| bad(e.to_string()))?;
        let links = links
            .as_array()
            .ok_or_else(|| bad("not a JSON array".into()))?;
        let Some(link) = links.iter().find(|l| l["ifname"] == name) else {
            return Ok(None);
        };
        let flags: Vec<&str> = link["flags"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        Ok(Some(Link {
            kind: link["linkinfo"]["info_kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            master: link["master"].as_str().map(str::to_owned),
            up: flags.contains(&"UP"),
            lower_up: flags.contains(&"LOWER_UP"),
            mtu: link["mtu"]
                .as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .ok_or_else(|| bad(format!("link {name} has no mtu")))?,
        }))
    }

    /// The global addresses on `name` as `(address, prefix)`.
    fn addresses(&self, name: &str) -> Result<Vec<(IpAddr, u8)>, HostError> {
        let args = ["-json", "address", "show", "dev", name];
        let out = self.ip(&args)?;
        let bad = |reason: String| HostError::Output {
            command: command_line(&self.ip, &args),
            reason,
        };
        let links: Value = serde_json::from_str(&out).map_err(|e| bad(e.to_string()))?;
        let mut found = Vec::new();
        for link in links.as_array().into_iter().flatten() {
            for addr in link["addr_info"].as_array().into_iter().flatten() {
                if addr["scope"] != "global" {
                    continue;
                }
                let ip = addr["local"]
                    .as_str()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .ok_or_else(|| bad(format!("address without a local IP on {name}")))?;
                let prefix = addr["prefixlen"]
                    .as_u64()
                    .and_then(|p| u8::try_from(p).ok())
                    .ok_or_else(|| bad(format!("address {ip} on {name} has no prefix")))?;
                found.push((ip, prefix));
            }
        }
        Ok(found)
    }

    fn set_mtu(&self, name: &str, mtu: Option<u32>) -> Result<(), HostError> {
        if let Some(mtu) = mtu {
            self.ip(&["link", "set", "dev", name, "mtu", &mtu.to_string()])?;
        }
        Ok(())
    }

    /// Everything of `create_bridge` after the link exists.
    fn configure_bridge(&self, config: &BridgeConfig) -> Result<(), HostError> {
        let name = config.name.as_str();
        self.set_mtu(name, config.mtu)?;
        let mut wanted = vec![(IpAddr::V4(config.gateway), config.prefix)];
        if let Some(v6) = config.ipv6 {
            wanted.push((IpAddr::V6(v6.gateway), v6.prefix));
        }
        let present = self.addresses(name)?;
        // Addresses of an earlier configuration of this network go: the bridge is ours.
        for (ip, prefix) in &present {
            if !wanted.contains(&(*ip, *prefix)) {
                self.ip(&["address", "del", &format!("{ip}/{prefix}"), "dev", name])?;
            }
        }
        for (ip, prefix) in &wanted {
            if !present.contains(&(*ip, *prefix)) {
                let mut args = vec!["address", "add", "dev", name];
                let cidr = format!("{ip}/{prefix}");
                args.push(&cidr);
                if ip.is_ipv6() {
                    // The gateway must answer at once, not after duplicate address detection.
                    args.push("nodad");
                }
                self.ip(&args)?;
            }
        }
        self.ip(&["link", "set", "dev", name, "up"])?;
        enable_forwarding("/proc/sys/net/ipv4/ip_forward")?;
        if config.ipv6.is_some() {
            enable_forwarding("/proc/sys/net/ipv6/conf/all/forwarding")?;
        }
        run(&self.nft, &["-f", "-"], Some(&nft_rules(config)))?;
        Ok(())
    }

    fn delete_table(&self, bridge: &str) -> Result<(), HostError> {
        // `table` then `delete table` in one transaction: deleting works whether or not the
        // table existed.
        let table = format!("{TABLE_PREFIX}{bridge}");
        let script = format!("table inet {table}\ndelete table inet {table}\n");
        run(&self.nft, &["-f", "-"], Some(&script)).map(drop)
    }
}

/// The nft script replacing the table of a network, in one transaction.
fn nft_rules(config: &BridgeConfig) -> String {
    let bridge = &config.name;
    let table = format!("{TABLE_PREFIX}{bridge}");
    let mut s = String::new();
    // Declaring the table first makes the delete succeed when there was none.
    let _ = writeln!(s, "table inet {table}");
    let _ = writeln!(s, "delete table inet {table}");
    let _ = writeln!(s, "table inet {table} {{");
    let _ = writeln!(s, "  chain forward {{");
    let _ = writeln!(
        s,
        "    type filter hook forward priority filter; policy accept;"
    );
    if config.internal {
        let _ = writeln!(s, "    iifname \"{bridge}\" oifname != \"{bridge}\" drop");
        let _ = writeln!(s, "    oifname \"{bridge}\" iifname != \"{bridge}\" drop");
    } else {
        let _ = writeln!(
            s,
            "    oifname \"{bridge}\" iifname != \"{bridge}\" ct state != {{ established, related }} drop"
        );
    }
    let _ = writeln!(s, "  }}");
    if !config.internal {
        let _ = writeln!(s, "  chain postrouting {{");
        let _ = writeln!(
            s,
            "    type nat hook postrouting priority srcnat; policy accept;"
        );
        let _ = writeln!(
            s,
            "    ip saddr {} oifname != \"{bridge}\" masquerade",
            config.subnet()
        );
        if let Some(subnet) = config.subnet_v6() {
            let _ = writeln!(
                s,
                "    ip6 saddr {subnet} oifname != \"{bridge}\" masquerade"
            );
        }
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "}}");
    s
}

/// Writes `1` to a forwarding sysctl unless it already is (the file is per network
/// namespace: the calling thread's).
fn enable_forwarding(path: &'static str) -> Result<(), HostError> {
    let err = |source| HostError::Sysctl { path, source };
    if std::fs::read_to_string(path).map_err(err)?.trim() == "1" {
        return Ok(());
    }
    std::fs::write(path, "1\n").map_err(err)
}

impl HostNetwork for LinuxBridge {
    fn create_bridge(&self, config: &BridgeConfig) -> Result<(), HostError> {
        config.validate()?;
        let name = config.name.as_str();
        let created = match self.link(name)? {
            Some(link) if link.kind == "bridge" => false,
            Some(link) => return Err(wrong_kind(name, &link, "bridge")),
            None => {
                self.ip(&["link", "add", "name", name, "type", "bridge"])?;
                true
            }
        };
        let configured = self.configure_bridge(config);
        if configured.is_err()
            && created
            && let Err(e) = self.delete_bridge(name)
        {
            tracing::warn!(bridge = name, error = %e, "removing a half-created bridge");
        }
        configured
    }

    fn delete_bridge(&self, name: &str) -> Result<(), HostError> {
        check_name(name)?;
        match self.link(name)? {
            Some(link) if link.kind == "bridge" => {
                self.ip(&["link", "del", "dev", name])?;
            }
            Some(link) => return Err(wrong_kind(name, &link, "bridge")),
            None => {}
        }
        self.delete_table(name)
    }

    fn create_tap(&self, name: &str, bridge: &str, mtu: Option<u32>) -> Result<(), HostError> {
        check_name(name)?;
        check_name(bridge)?;
        match self.link(bridge)? {
            Some(link) if link.kind == "bridge" => {}
            Some(link) => return Err(wrong_kind(bridge, &link, "bridge")),
            None => {
                return Err(HostError::Command {
                    command: format!("attach {name} to {bridge}"),
                    message: format!("bridge {bridge} does not exist"),
                });
            }
        }
        match self.link(name)? {
            // Left by a runtime that crashed: start afresh so no stale setting survives.
            Some(link) if link.kind == "tun" && !(link.up && link.lower_up) => {
                self.ip(&["link", "del", "dev", name])?;
            }
            Some(link) if link.kind == "tun" => {
                return Err(HostError::TapInUse {
                    name: name.to_owned(),
                });
            }
            Some(link) => return Err(wrong_kind(name, &link, "tap")),
            None => {}
        }
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap"])?;
        let attached = self
            .set_mtu(name, mtu)
            .and_then(|()| self.ip(&["link", "set", "dev", name, "master", bridge]))
            .and_then(|_| self.ip(&["link", "set", "dev", name, "up"]));
        if let Err(e) = attached {
            if let Err(cleanup) = self.ip(&["link", "del", "dev", name]) {
                tracing::warn!(tap = name, error = %cleanup, "removing a half-created tap");
            }
            return Err(e);
        }
        Ok(())
    }

    fn delete_tap(&self, name: &str) -> Result<(), HostError> {
        check_name(name)?;
        match self.link(name)? {
            Some(link) if link.kind == "tun" => self.ip(&["link", "del", "dev", name]).map(drop),
            Some(link) => Err(wrong_kind(name, &link, "tap")),
            None => Ok(()),
        }
    }
}

fn wrong_kind(name: &str, link: &Link, wanted: &'static str) -> HostError {
    HostError::WrongKind {
        name: name.to_owned(),
        found: if link.kind.is_empty() {
            "device".to_owned()
        } else {
            link.kind.clone()
        },
        wanted,
    }
}

fn command_line(program: &Path, args: &[&str]) -> String {
    let name = program
        .file_name()
        .map_or_else(|| program.to_string_lossy(), |n| n.to_string_lossy());
    std::iter::once(name.as_ref())
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program args`, feeding `stdin`; answers its standard output, or an error holding
/// its error output on one line.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, HostError> {
    let command = command_line(program, args);
    let spawn_err = |source| HostError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A failed write shows up as the program's own error below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().map_err(spawn_err)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(HostError::Command {
            command,
            message: if message.is_empty() {
                output.status.to_string()
            } else {
                message
            },
        });
    }
    String::from_utf8(output.stdout).map_err(|e| HostError::Output {
        command,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn config() -> BridgeConfig {
        BridgeConfig {
            name: "cbr-test".into(),
            gateway: Ipv4Addr::new(192, 168, 64, 1),
            prefix: 24,
            internal: false,
            mtu: None,
            ipv6: None,
        }
    }

    #[test]
    fn names_fit_linux_and_are_stable() {
        for key in [
            "",
            "default",
            "a-network-name-far-longer-than-fifteen-characters",
        ] {
            let b = bridge_name(key);
            let t = tap_name(key);
            assert_eq!(b.len(), IFNAME_MAX, "{b}");
            assert_eq!(t.len(), IFNAME_MAX, "{t}");
            check_name(&b).unwrap();
            check_name(&t).unwrap();
        }
        // FNV-1a of "default": the name must never change across releases.
        assert_eq!(bridge_name("default"), "cbr-ebada516862");
        assert_ne!(tap_name("abc"), tap_name("abd"));
        assert!(tap_name("abc").starts_with(TAP_PREFIX));
    }

    #[test]
    fn bad_names_and_configs_are_refused() {
        assert!(check_name("eth0; rm").is_err());
        assert!(check_name("0abc").is_err());
        assert!(check_name("abcdefghijklmnop").is_err());
        assert!(check_name("a\"b").is_err());
        let mut c = config();
        c.prefix = 31;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid bridge configuration for cbr-test: IPv4 prefix /31 is not between /1 and /30"
        );
        let mut c = config();
        c.gateway = Ipv4Addr::new(192, 168, 64, 255);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid bridge configuration for cbr-test: gateway 192.168.64.255 is the network or broadcast address of 192.168.64.0/24"
        );
        config().validate().unwrap();
    }

    #[test]
    fn rules_masquerade_or_isolate() {
        let mut c = config();
        c.gateway = Ipv4Addr::new(10, 1, 2, 129);
        c.prefix = 25;
        c.ipv6 = Some(Ipv6Gateway {
            gateway: "fd00:1::1".parse().unwrap(),
            prefix: 64,
        });
        let rules = nft_rules(&c);
        assert!(rules.contains("ip saddr 10.1.2.128/25 oifname != \"cbr-test\" masquerade"));
        assert!(rules.contains("ip6 saddr fd00:1::/64 oifname != \"cbr-test\" masquerade"));
        assert!(
            rules.starts_with(
                "table inet container-cbr-test\ndelete table inet container-cbr-test\n"
            )
        );
        c.internal = true;
        let rules = nft_rules(&c);
        assert!(!rules.contains("masquerade"));
        assert!(rules.contains("iifname \"cbr-test\" oifname != \"cbr-test\" drop"));
    }
}
