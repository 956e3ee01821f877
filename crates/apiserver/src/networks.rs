//! Networks: `<app root>/networks/<name>/network.json` (what the user asked for) and
//! `ipam.json` (who holds which address), plus `networks/dns-domains.json`.
//!
//! Two modes, chosen once at daemon start:
//! - **bridge** (Linux with CAP_NET_ADMIN): every network is a host bridge holding its gateway
//!   address, NATed to the outside unless internal; each attached container gets a TAP device
//!   on that bridge, an address from the network's IPAM and an entry in the network's DNS
//!   server, which listens on the gateway address.
//! - **user** (no CAP_NET_ADMIN, or `network.mode` = `user`): QEMU's user-mode networking.
//!   Only `default` exists; containers reach out and publish ports but never see each other,
//!   as with Apple's `container` on macOS 15.
//!
//! An address is held from a container's start to its stop. The daemon releases the
//! addresses of containers that stopped while it was down when it opens the app root.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use api::{ApiError, v1};
use net::{DnsRecords, DnsServer, Ipam, Ipv4Subnet, Ipv6Subnet, MacAddress};
use serde::{Deserialize, Serialize};

/// The network every container joins unless told otherwise.
pub const DEFAULT_NETWORK: &str = "default";

/// The subnet of QEMU's user-mode networking (its slirp defaults).
pub const USER_NET_SUBNET: &str = "10.0.2.0/24";
/// The guest address user-mode networking gives the container (QEMU's slirp defaults).
pub const USER_NET_ADDRESS: &str = "10.0.2.15/24";
/// Its gateway.
pub const USER_NET_GATEWAY: &str = "10.0.2.2";
/// Its DNS forwarder.
pub const USER_NET_DNS: &str = "10.0.2.3";

/// How the daemon connects containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Host bridges, TAP devices, NAT and per-network DNS.
    Bridge,
    /// QEMU user-mode networking.
    User,
}

impl Mode {
    /// `bridge` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::User => "user",
        }
    }

    /// The mode for a `network.mode` setting (`auto`, `bridge`, `user`): `auto` is bridge
    /// when this process may manage host networking, user otherwise.
    pub fn choose(setting: &str) -> Result<Mode, String> {
        match setting {
            "" | "auto" => Ok(match crate::platform::bridge_unavailable() {
                None => Mode::Bridge,
                Some(_) => Mode::User,
            }),
            "bridge" => match crate::platform::bridge_unavailable() {
                None => Ok(Mode::Bridge),
                Some(why) => Err(format!("network mode bridge is unavailable: {why}")),
            },
            "user" => Ok(Mode::User),
            other => Err(format!(
                "unknown network mode {other:?}: expected auto, bridge or user"
            )),
        }
    }
}

/// What a user asked for when creating a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    /// The name.
    pub name: String,
    /// IPv4 subnet.
    pub subnet: Ipv4Subnet,
    /// IPv6 subnet.
    #[serde(default)]
    pub subnet_v6: Option<Ipv6Subnet>,
    /// No route out.
    #[serde(default)]
    pub internal: bool,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Created by the daemon (`default`).
    #[serde(default)]
    pub builtin: bool,
    /// Creation time, ms since the epoch.
    #[serde(default)]
    pub created_ms: i64,
}

/// One container's interface on a network, as the runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The network.
    pub network: String,
    /// MAC address.
    pub mac: MacAddress,
    /// The container's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The gateway, which also serves DNS.
    pub gateway: Ipv4Addr,
    /// The TAP device.
    pub tap: String,
    /// MTU, if set.
    pub mtu: Option<u32>,
}

/// What a container holds on a network besides its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Endpoint {
    mac: MacAddress,
    tap: String,
}

/// A network's `ipam.json`: addresses, and each holder's MAC and TAP device.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Leases {
    ipam: Ipam,
    #[serde(default)]
    endpoints: BTreeMap<String, Endpoint>,
}

struct Net {
    def: NetworkDef,
    ipam: Ipam,
    endpoints: BTreeMap<String, Endpoint>,
    records: DnsRecords,
    dns: Option<DnsServer>,
}

/// The daemon's networks.
pub struct Networks {
    dir: PathBuf,
    mode: Mode,
    host: Option<Arc<dyn net::HostNetwork>>,
    upstreams: Vec<SocketAddr>,
    domain: Option<String>,
    nets: tokio::sync::Mutex<BTreeMap<String, Net>>,
    domains: Mutex<BTreeSet<String>>,
    /// Container ID -> its interfaces as `ls` and `inspect` show them; read without waiting
    /// on the networks' lock.
    shown: Mutex<BTreeMap<String, Vec<v1::NetworkAttachment>>>,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io(path.display(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path.display(), e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    statefs::write_atomic(path, &bytes)
        .map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))
}

/// Checks a network name: Docker's rule (a letter or digit, then letters, digits, `_`, `.`,
/// `-`), at most 64 bytes.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(ApiError::invalid_argument(format!(
            "invalid network name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 characters"
        )));
    }
    if name == "none" || name == "host" {
        return Err(ApiError::invalid_argument(format!(
            "{name:?} is a reserved network name"
        )));
    }
    Ok(())
}

impl Networks {
    /// Opens the networks of an app root, creating `default` when missing (on `subnet`, or
    /// the first free 192.168.N.0/24), and, in bridge mode, brings up every network's bridge
    /// and DNS server. `running` says which containers still run: every other container's
    /// address and TAP device is released.
    pub async fn open(
        app_root: &Path,
        mode: Mode,
        subnet: Option<Ipv4Subnet>,
        domain: Option<String>,
        running: impl Fn(&str) -> bool,
    ) -> Result<Networks, String> {
        let dir = app_root.join("networks");
        crate::fsutil::create_private_dir(&dir).map_err(|e| io(dir.display(), e))?;
        let host: Option<Arc<dyn net::HostNetwork>> = match mode {
            Mode::Bridge => Some(crate::platform::host_network()?),
            Mode::User => None,
        };
        let upstreams = match net::host_resolvers() {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!("no upstream DNS servers: {e}");
                Vec::new()
            }
        };
        let domains: BTreeSet<String> =
            read_json(&dir.join("dns-domains.json"))?.unwrap_or_default();
        let me = Networks {
            dir,
            mode,
            host,
            upstreams,
            domain: domain.filter(|d| !d.is_empty()),
            nets: tokio::sync::Mutex::new(BTreeMap::new()),
            domains: Mutex::new(domains),
            shown: Mutex::new(BTreeMap::new()),
        };
        let mut loaded = BTreeMap::new();
        for entry in std::fs::read_dir(&me.dir).map_err(|e| io(me.dir.display(), e))? {
            let entry = entry.map_err(|e| io(me.dir.display(), e))?;
            if !entry.path().is_dir() {
                continue;
            }
            let Some(def) = read_json::<NetworkDef>(&entry.path().join("network.json"))? else {
                // A create interrupted before its definition was written.
                let _ = std::fs::remove_dir_all(entry.path());
                continue;
            };
            let mut leases =
                read_json::<Leases>(&entry.path().join("ipam.json"))?.unwrap_or(Leases {
                    ipam: Ipam::new(def.subnet),
                    endpoints: BTreeMap::new(),
                });
            let stale: Vec<(String, Option<Endpoint>)> = leases
                .ipam
                .allocations()
                .map(|(owner, _)| owner.to_owned())
                .filter(|owner| !running(owner))
                .map(|owner| {
                    let e = leases.endpoints.get(&owner).cloned();
                    (owner, e)
                })
                .collect();
            for (owner, _) in &stale {
                leases.ipam.release(owner);
                leases.endpoints.remove(owner);
            }
            loaded.insert(def.name.clone(), (def, leases, stale));
        }
        if !loaded.contains_key(DEFAULT_NETWORK) {
            let taken: Vec<Ipv4Subnet> = loaded.values().map(|(d, _, _)| d.subnet).collect();
            let subnet = match subnet {
                Some(s) => s,
                None => net::first_free_subnet(&taken)
                    .ok_or("no free 192.168.N.0/24 subnet for the default network")?,
            };
            let def = NetworkDef {
                name: DEFAULT_NETWORK.into(),
                subnet,
                subnet_v6: None,
                internal: false,
                labels: BTreeMap::new(),
                builtin: true,
                created_ms: crate::fsutil::now_ms(),
            };
            me.persist_def(&def).map_err(|e| e.message)?;
            let leases = Leases {
                ipam: Ipam::new(subnet),
                endpoints: BTreeMap::new(),
            };
            loaded.insert(def.name.clone(), (def, leases, Vec::new()));
        }
        let mut nets = me.nets.lock().await;
        for (name, (def, leases, stale)) in loaded {
            let records = DnsRecords::new();
            for (owner, a) in leases.ipam.allocations() {
                me.add_names(&records, &a.hostname, a.address);
                me.show(
                    owner,
                    v1::NetworkAttachment {
                        network: def.name.clone(),
                        hostname: a.hostname.clone(),
                        ipv4_address: format!("{}/{}", a.address, def.subnet.prefix()),
                        ipv4_gateway: def.subnet.gateway().to_string(),
                        mac_address: leases
                            .endpoints
                            .get(owner)
                            .map(|e| e.mac.to_string())
                            .unwrap_or_default(),
                        ..Default::default()
                    },
                );
            }
            let mut n = Net {
                def,
                ipam: leases.ipam,
                endpoints: leases.endpoints,
                records,
                dns: None,
            };
            if me.mode == Mode::Bridge {
                for (_, endpoint) in &stale {
                    if let (Some(host), Some(e)) = (&me.host, endpoint) {
                        // The TAP of a container that stopped while we were down.
                        let _ = host.delete_tap(&e.tap);
                    }
                }
                if let Err(e) = me.bring_up(&mut n).await {
                    tracing::error!(network = %name, "{e}");
                }
            }
            if !stale.is_empty() {
                me.persist_ipam(&n).map_err(|e| e.message)?;
            }
            nets.insert(name, n);
        }
        drop(nets);
        Ok(me)
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn show(&self, id: &str, a: v1::NetworkAttachment) {
        self.shown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .push(a);
    }

    /// The interfaces a running container holds (bridge mode), as `ls` and `inspect` show
    /// them.
    pub fn shown(&self, id: &str) -> Vec<v1::NetworkAttachment> {
        self.shown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    fn net_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn persist_def(&self, def: &NetworkDef) -> Result<(), ApiError> {
        let dir = self.net_dir(&def.name);
        crate::fsutil::create_private_dir(&dir)
            .map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
        write_json(&dir.join("network.json"), def)
    }

    fn persist_ipam(&self, n: &Net) -> Result<(), ApiError> {
        let leases = Leases {
            ipam: n.ipam.clone(),
            endpoints: n.endpoints.clone(),
        };
        write_json(&self.net_dir(&n.def.name).join("ipam.json"), &leases)
    }

    /// The DNS names of a container called `name`: the name itself, and the name under the
    /// daemon's domain and every `system dns` domain.
    fn add_names(&self, records: &DnsRecords, name: &str, address: Ipv4Addr) {
        if name.is_empty() {
            return;
        }
        records.insert(name, address);
        for d in self.domain_list() {
            records.insert(&format!("{name}.{d}"), address);
        }
    }

    fn remove_names(&self, records: &DnsRecords, name: &str) {
        if name.is_empty() {
            return;
        }
        records.remove(name);
        for d in self.domain_list() {
            records.remove(&format!("{name}.{d}"));
        }
    }

    fn domain_list(&self) -> Vec<String> {
        self.domains
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Creates the bridge of a network and starts its DNS server on the gateway.
    async fn bring_up(&self, n: &mut Net) -> Result<(), String> {
        let Some(host) = &self.host else {
            return Ok(());
        };
        let config = net::bridge::BridgeConfig {
            name: net::bridge::bridge_name(&n.def.name),
            gateway: n.def.subnet.gateway(),
            prefix: n.def.subnet.prefix(),
            internal: n.def.internal,
            mtu: None,
            ipv6: n.def.subnet_v6.map(|s| net::bridge::Ipv6Gateway {
                gateway: s.gateway(),
                prefix: s.prefix(),
            }),
        };
        host.create_bridge(&config)
            .map_err(|e| format!("bringing up network {}: {e}", n.def.name))?;
        if n.dns.is_none() {
            let addr = SocketAddr::from((n.def.subnet.gateway(), 53));
            let server = DnsServer::bind(
                addr,
                self.domain.clone(),
                n.records.clone(),
                self.upstreams.clone(),
            )
            .await
            .map_err(|e| format!("network {}: {e}", n.def.name))?;
            n.dns = Some(server);
        }
        Ok(())
    }

    /// Creates a network.
    pub async fn create(&self, req: v1::NetworkCreateRequest) -> Result<v1::Network, ApiError> {
        check_name(&req.name)?;
        if self.mode == Mode::User {
            return Err(ApiError::failed_precondition(
                "user networks need bridge networking, and this daemon runs in user mode (no CAP_NET_ADMIN, or network.mode is user): only the default network exists",
            ));
        }
        let mut nets = self.nets.lock().await;
        if nets.contains_key(&req.name) {
            return Err(ApiError::already_exists(format!(
                "network {} already exists",
                req.name
            )));
        }
        let taken: Vec<Ipv4Subnet> = nets.values().map(|n| n.def.subnet).collect();
        let subnet = if req.subnet.is_empty() {
            net::first_free_subnet(&taken).ok_or_else(|| {
                ApiError::failed_precondition("no free 192.168.N.0/24 subnet: give --subnet")
            })?
        } else {
            let s: Ipv4Subnet = req
                .subnet
                .parse()
                .map_err(|e: net::SubnetError| ApiError::invalid_argument(e.to_string()))?;
            if let Some(other) = nets.values().find(|n| n.def.subnet.overlaps(&s)) {
                return Err(ApiError::invalid_argument(format!(
                    "subnet {s} overlaps network {} ({})",
                    other.def.name, other.def.subnet
                )));
            }
            s
        };
        let subnet_v6 = if req.subnet_v6.is_empty() {
            None
        } else {
            let s: Ipv6Subnet = req
                .subnet_v6
                .parse()
                .map_err(|e: net::SubnetError| ApiError::invalid_argument(e.to_string()))?;
            if let Some(other) = nets
                .values()
                .find(|n| n.def.subnet_v6.is_some_and(|o| o.overlaps(&s)))
            {
                return Err(ApiError::invalid_argument(format!(
                    "subnet {s} overlaps network {}",
                    other.def.name
                )));
            }
            Some(s)
        };
        let def = NetworkDef {
            name: req.name.clone(),
            subnet,
            subnet_v6,
            internal: req.internal,
            labels: req.labels.into_iter().collect(),
            builtin: false,
            created_ms: crate::fsutil::now_ms(),
        };
        let mut n = Net {
            ipam: Ipam::new(subnet),
            endpoints: BTreeMap::new(),
            records: DnsRecords::new(),
            dns: None,
            def,
        };
        if let Err(e) = self.bring_up(&mut n).await {
            if let Some(host) = &self.host {
                let _ = host.delete_bridge(&net::bridge::bridge_name(&n.def.name));
            }
            return Err(ApiError::failed_precondition(e));
        }
        if let Err(e) = self.persist_def(&n.def) {
            self.tear_down(&mut n).await;
            let _ = std::fs::remove_dir_all(self.net_dir(&n.def.name));
            return Err(e);
        }
        let out = self.describe(&n);
        nets.insert(req.name, n);
        Ok(out)
    }

    async fn tear_down(&self, n: &mut Net) {
        if let Some(dns) = n.dns.take()
            && let Err(e) = dns.shutdown().await
        {
            tracing::warn!(network = %n.def.name, "{e}");
        }
        if let Some(host) = &self.host
            && let Err(e) = host.delete_bridge(&net::bridge::bridge_name(&n.def.name))
        {
            tracing::warn!(network = %n.def.name, "removing the bridge: {e}");
        }
    }

    fn describe(&self, n: &Net) -> v1::Network {
        // In user mode QEMU's user-mode network is what containers really get.
        let (subnet, gateway) = match self.mode {
            Mode::Bridge => (n.def.subnet.to_string(), n.def.subnet.gateway().to_string()),
            Mode::User => (USER_NET_SUBNET.to_owned(), USER_NET_GATEWAY.to_owned()),
        };
        v1::Network {
            name: n.def.name.clone(),
            subnet,
            gateway,
            subnet_v6: n.def.subnet_v6.map(|s| s.to_string()).unwrap_or_default(),
            internal: n.def.internal,
            labels: n.def.labels.clone().into_iter().collect(),
            mode: self.mode.as_str().into(),
            builtin: n.def.builtin,
            endpoints: n
                .ipam
                .allocations()
                .map(|(owner, a)| v1::NetworkEndpoint {
                    container_id: owner.to_owned(),
                    hostname: a.hostname.clone(),
                    ipv4_address: format!("{}/{}", a.address, n.def.subnet.prefix()),
                    mac_address: n
                        .endpoints
                        .get(owner)
                        .map(|e| e.mac.to_string())
                        .unwrap_or_default(),
                })
                .collect(),
            created_ms: n.def.created_ms,
        }
    }

    /// Every network, sorted by name.
    pub async fn list(&self) -> Vec<v1::Network> {
        let nets = self.nets.lock().await;
        nets.values().map(|n| self.describe(n)).collect()
    }

    /// One network.
    pub async fn inspect(&self, name: &str) -> Result<v1::Network, ApiError> {
        let nets = self.nets.lock().await;
        nets.get(name)
            .map(|n| self.describe(n))
            .ok_or_else(|| ApiError::not_found(format!("network {name} not found")))
    }

    /// Whether a network exists.
    pub async fn exists(&self, name: &str) -> bool {
        self.nets.lock().await.contains_key(name)
    }

    /// Deletes networks; `users(name)` names a container referencing it, if any. Checks all
    /// before deleting any.
    pub async fn delete(
        &self,
        names: &[String],
        users: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ApiError> {
        let mut nets = self.nets.lock().await;
        for name in names {
            let Some(n) = nets.get(name) else {
                return Err(ApiError::not_found(format!("network {name} not found")));
            };
            if n.def.builtin {
                return Err(ApiError::failed_precondition(format!(
                    "network {name} is built in and cannot be deleted"
                )));
            }
            if let Some(c) = users(name) {
                return Err(ApiError::failed_precondition(format!(
                    "network {name} is in use by container {c}"
                )));
            }
        }
        let mut deleted = Vec::new();
        for name in names {
            if let Some(mut n) = nets.remove(name) {
                self.tear_down(&mut n).await;
                let dir = self.net_dir(name);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!("removing {}: {e}", dir.display());
                }
                deleted.push(name.clone());
            }
        }
        Ok(deleted)
    }

    /// The names of every network.
    pub async fn names(&self) -> Vec<String> {
        self.nets.lock().await.keys().cloned().collect()
    }

    /// Gives container `id` (called `name`) an interface on each network it asks for, in
    /// order: an address, a MAC, a TAP device on the network's bridge and its DNS names.
    /// Bridge mode only. Nothing is held when it fails.
    pub async fn attach(
        &self,
        id: &str,
        name: &str,
        requests: &[v1::NetworkRequest],
    ) -> Result<Vec<Attachment>, ApiError> {
        let Some(host) = &self.host else {
            return Err(ApiError::internal("attach needs bridge mode"));
        };
        let mut nets = self.nets.lock().await;
        let mut done: Vec<Attachment> = Vec::new();
        let result = async {
            for (i, r) in requests.iter().enumerate() {
                let net_name = if r.name.is_empty() {
                    DEFAULT_NETWORK
                } else {
                    &r.name
                };
                let n = nets
                    .get_mut(net_name)
                    .ok_or_else(|| ApiError::not_found(format!("network {net_name} not found")))?;
                if done.iter().any(|d| d.network == net_name) {
                    return Err(ApiError::invalid_argument(format!(
                        "network {net_name} given twice"
                    )));
                }
                let mac = if r.mac_address.is_empty() {
                    MacAddress::derived(format!("{id}/{net_name}").as_bytes())
                } else {
                    r.mac_address.parse::<MacAddress>().map_err(|e| {
                        ApiError::invalid_argument(format!("--network {net_name}: {e}"))
                    })?
                };
                let address = n.ipam.allocate(id, name).map_err(|e| {
                    ApiError::failed_precondition(format!("network {net_name}: {e}"))
                })?;
                let tap = net::bridge::tap_name(&format!("{id}/{i}"));
                let mtu = (r.mtu > 0).then_some(r.mtu);
                if let Err(e) = host.create_tap(&tap, &net::bridge::bridge_name(net_name), mtu) {
                    n.ipam.release(id);
                    return Err(ApiError::failed_precondition(format!(
                        "creating the network device of network {net_name}: {e}"
                    )));
                }
                n.endpoints.insert(
                    id.to_owned(),
                    Endpoint {
                        mac,
                        tap: tap.clone(),
                    },
                );
                if let Err(e) = self.persist_ipam(n) {
                    n.ipam.release(id);
                    n.endpoints.remove(id);
                    let _ = host.delete_tap(&tap);
                    return Err(e);
                }
                self.add_names(&n.records, name, address);
                done.push(Attachment {
                    network: net_name.to_owned(),
                    mac,
                    address,
                    prefix: n.def.subnet.prefix(),
                    gateway: n.def.subnet.gateway(),
                    tap,
                    mtu,
                });
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                for a in &done {
                    self.show(
                        id,
                        v1::NetworkAttachment {
                            network: a.network.clone(),
                            hostname: name.to_owned(),
                            ipv4_address: format!("{}/{}", a.address, a.prefix),
                            ipv4_gateway: a.gateway.to_string(),
                            mac_address: a.mac.to_string(),
                            mtu: a.mtu.unwrap_or(0),
                            ..Default::default()
                        },
                    );
                }
                Ok(done)
            }
            Err(e) => {
                for a in &done {
                    let _ = host.delete_tap(&a.tap);
                    if let Some(n) = nets.get_mut(&a.network) {
                        n.ipam.release(id);
                        n.endpoints.remove(id);
                        self.remove_names(&n.records, name);
                        let _ = self.persist_ipam(n);
                    }
                }
                Err(e)
            }
        }
    }

    /// Releases everything container `id` holds on every network: its addresses, DNS names
    /// and TAP devices. Nothing to do for a container that holds nothing. Returns the
    /// networks it left.
    pub async fn detach(&self, id: &str) -> Vec<String> {
        let mut released = Vec::new();
        let mut nets = self.nets.lock().await;
        self.shown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        for n in nets.values_mut() {
            let Some(hostname) = n
                .ipam
                .allocations()
                .find(|(owner, _)| *owner == id)
                .map(|(_, a)| a.hostname.clone())
            else {
                continue;
            };
            n.ipam.release(id);
            released.push(n.def.name.clone());
            let endpoint = n.endpoints.remove(id);
            self.remove_names(&n.records, &hostname);
            if let Err(e) = self.persist_ipam(n) {
                tracing::warn!(network = %n.def.name, "{}", e.message);
            }
            if let (Some(host), Some(e)) = (&self.host, endpoint)
                && let Err(err) = host.delete_tap(&e.tap)
            {
                tracing::warn!(tap = %e.tap, "removing: {err}");
            }
        }
        released
    }

    /// The address container `id` holds on `network`, if any.
    pub async fn address_of(&self, id: &str, network: &str) -> Option<Ipv4Addr> {
        self.nets.lock().await.get(network)?.ipam.address_of(id)
    }

    /// Adds a DNS domain.
    pub async fn domain_create(&self, domain: &str) -> Result<Vec<String>, ApiError> {
        let domain = check_domain(domain)?;
        let nets = self.nets.lock().await;
        let mut domains = self.domains.lock().unwrap_or_else(|p| p.into_inner());
        if !domains.insert(domain.clone()) {
            return Err(ApiError::already_exists(format!(
                "DNS domain {domain} already exists"
            )));
        }
        write_json(&self.dir.join("dns-domains.json"), &*domains)?;
        for n in nets.values() {
            for (_, a) in n.ipam.allocations() {
                if !a.hostname.is_empty() {
                    n.records
                        .insert(&format!("{}.{domain}", a.hostname), a.address);
                }
            }
        }
        Ok(domains.iter().cloned().collect())
    }

    /// Removes a DNS domain.
    pub async fn domain_delete(&self, domain: &str) -> Result<Vec<String>, ApiError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let nets = self.nets.lock().await;
        let mut domains = self.domains.lock().unwrap_or_else(|p| p.into_inner());
        if !domains.remove(&domain) {
            return Err(ApiError::not_found(format!(
                "DNS domain {domain} not found"
            )));
        }
        write_json(&self.dir.join("dns-domains.json"), &*domains)?;
        for n in nets.values() {
            for (_, a) in n.ipam.allocations() {
                n.records.remove(&format!("{}.{domain}", a.hostname));
            }
        }
        Ok(domains.iter().cloned().collect())
    }

    /// The DNS domains.
    pub fn domains(&self) -> Vec<String> {
        self.domain_list()
    }

    /// Stops every DNS server (the bridges stay: running containers use them).
    pub async fn close(&self) {
        let mut nets = self.nets.lock().await;
        for n in nets.values_mut() {
            if let Some(dns) = n.dns.take() {
                let _ = dns.shutdown().await;
            }
        }
    }
}

fn check_domain(domain: &str) -> Result<String, ApiError> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(d)
    } else {
        Err(ApiError::invalid_argument(format!(
            "invalid DNS domain {domain:?}"
        )))
    }
}
