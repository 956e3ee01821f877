//! Properties: a small typed set of settings with defaults, kept in `properties.json`
//! (only the keys the user set).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use api::v1;

/// Errors of the property store.
#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    /// No such key.
    #[error("unknown property {0:?} (see `container system property list`)")]
    Unknown(String),
    /// The value does not fit the property's type.
    #[error("invalid value {value:?} for {key} ({kind}): {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// The property's type.
        kind: &'static str,
        /// Why it does not fit.
        reason: String,
    },
    /// properties.json could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl From<PropertyError> for api::ApiError {
    fn from(e: PropertyError) -> api::ApiError {
        match e {
            PropertyError::Unknown(_) => api::ApiError::not_found(e.to_string()),
            PropertyError::Invalid { .. } => api::ApiError::invalid_argument(e.to_string()),
            PropertyError::Io { .. } => api::ApiError::internal(e.to_string()),
        }
    }
}

/// One known property.
struct Def {
    key: &'static str,
    kind: &'static str,
    default: &'static str,
    description: &'static str,
}

/// Every property the daemon knows, sorted by key.
const DEFS: &[Def] = &[
    Def {
        key: "build.rosetta",
        kind: "bool",
        default: "true",
        description: "on Apple silicon with Rosetta, amd64 images (build steps included) run in the arm64 guest through Rosetta; false runs them in an emulated x86_64 VM instead (QEMU only). No effect on other hosts",
    },
    Def {
        key: "container.cpus",
        kind: "integer",
        default: "auto",
        description: "vCPUs of a container that does not ask for a number (auto: 4, or the host's CPU count when it has fewer, so a VM never has more vCPUs than the host can run)",
    },
    Def {
        key: "container.memory",
        kind: "size",
        default: "1g",
        description: "memory of a container that does not ask for an amount",
    },
    Def {
        key: "container.pool.size",
        kind: "count",
        default: "1",
        description: "pre-booted guests the daemon keeps ready for containers shaped like the last one started (cpus, memory, user-mode network, no volumes); each holds its VM's memory, see system status; 0 disables the pool; $CONTAINER_POOL_SIZE overrides it at daemon start",
    },
    Def {
        key: "dns.domain",
        kind: "domain",
        default: "",
        description: "the local DNS domain containers are named under",
    },
    Def {
        key: "docker.socket",
        kind: "string",
        default: "",
        description: "where the daemon serves the Docker Engine API (empty: docker.sock in the app root; none: not at all); read at daemon start, $CONTAINER_DOCKER_SOCKET (system start --docker-socket) overrides it",
    },
    Def {
        key: "network.mode",
        kind: "network mode",
        default: "auto",
        description: "how containers are networked: bridge (host bridge, TAP, NAT; needs CAP_NET_ADMIN), user (QEMU user-mode: published ports only) or auto (bridge when allowed); read at daemon start, $CONTAINER_NETWORK_MODE overrides it",
    },
    Def {
        key: "network.subnet",
        kind: "cidr",
        default: "",
        description: "the default network's IPv4 subnet when it is first created (empty: the first free 192.168.N.0/24)",
    },
    Def {
        key: "registry.domain",
        kind: "registry",
        default: "docker.io",
        description: "the registry (host[:port]) of image names that do not name one, for pull, run, create, tag and push; only docker.io puts one-word names under library/",
    },
    Def {
        key: "registry.insecure",
        kind: "registry list",
        default: "",
        description: "comma-separated registries (host for any port, or host:port) that --scheme auto reaches over plain HTTP; otherwise only loopback does",
    },
    Def {
        key: "registry.mirror",
        kind: "string",
        default: "",
        description: "a host[:port] that serves Docker Hub's images instead of docker.io ($CONTAINER_REGISTRY_MIRROR when unset)",
    },
    Def {
        key: "volume.size",
        kind: "size",
        default: DEFAULT_VOLUME_SIZE,
        description: "the file system size of a volume created without a size (sparse: it takes what is written)",
    },
];

/// The default of `volume.size`.
pub const DEFAULT_VOLUME_SIZE: &str = "64g";

fn def(key: &str) -> Result<&'static Def, PropertyError> {
    DEFS.iter()
        .find(|d| d.key == key)
        .ok_or_else(|| PropertyError::Unknown(key.to_owned()))
}

/// Whether `v` is a registry `host[:port]` as an image reference would name it.
fn is_registry_host(v: &str) -> bool {
    oci::ImageRef::parse(&format!("{v}/x")).map(|r| r.registry().to_owned()) == Ok(v.to_owned())
}

/// Checks `value` against a property's type; returns it normalised.
fn check(d: &Def, value: &str) -> Result<String, PropertyError> {
    let bad = |reason: &str| PropertyError::Invalid {
        key: d.key.to_owned(),
        value: value.to_owned(),
        kind: d.kind,
        reason: reason.to_owned(),
    };
    let v = value.trim();
    match d.kind {
        "bool" => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok("true".into()),
            "false" | "0" | "no" | "off" => Ok("false".into()),
            _ => Err(bad("expected true or false")),
        },
        "count" => match v.parse::<u32>() {
            Ok(n) if n <= 64 => Ok(n.to_string()),
            _ => Err(bad("expected a whole number from 0 to 64")),
        },
        "integer" => match v.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n.to_string()),
            _ => Err(bad("expected a whole number of at least 1")),
        },
        "size" if d.key == "volume.size" => match v.parse::<spec::ByteSize>() {
            Ok(s) => spec::check_volume_size(v, s)
                .map(|_| v.to_owned())
                .map_err(|e| bad(&e.to_string())),
            Err(e) => Err(bad(&e.to_string())),
        },
        "size" => match v.parse::<spec::ByteSize>() {
            Ok(s) if s.bytes() >= 200 << 20 => Ok(v.to_owned()),
            Ok(_) => Err(bad("must be at least 200 MiB")),
            Err(e) => Err(bad(&e.to_string())),
        },
        "cidr" => {
            if v.is_empty() {
                return Ok(String::new());
            }
            parse_subnet(v)
                .map(|s| s.to_string())
                .map_err(|e| bad(&e.to_string()))
        }
        "network mode" => match v {
            "auto" | "bridge" | "user" => Ok(v.to_owned()),
            _ => Err(bad("expected auto, bridge or user")),
        },
        "domain" => {
            let ok = v.is_empty()
                || (v.len() <= 253
                    && v.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    }));
            if ok {
                Ok(v.to_ascii_lowercase())
            } else {
                Err(bad("expected a DNS domain"))
            }
        }
        "registry" => {
            let v = v.to_ascii_lowercase();
            let v = if v == "index.docker.io" {
                "docker.io".into()
            } else {
                v
            };
            if is_registry_host(&v) {
                Ok(v)
            } else {
                Err(bad("expected a registry host[:port] such as myreg:5000"))
            }
        }
        "registry list" => {
            let mut hosts = Vec::new();
            for h in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                if !is_registry_host(h) {
                    return Err(bad(&format!(
                        "{h:?} is not a registry host or host:port such as 10.0.0.5:5000"
                    )));
                }
                hosts.push(h.to_owned());
            }
            Ok(hosts.join(","))
        }
        _ => {
            if d.key == "registry.mirror" && !v.is_empty() && !is_registry_host(v) {
                return Err(bad(
                    "expected a registry host[:port] such as 127.0.0.1:5000",
                ));
            }
            Ok(v.to_owned())
        }
    }
}

/// Parses an IPv4 subnet, accepting the gateway form (`192.168.64.1/24`) too.
fn parse_subnet(text: &str) -> Result<net::Ipv4Subnet, net::SubnetError> {
    if let Ok(s) = text.parse() {
        return Ok(s);
    }
    if let Some((ip, len)) = text.split_once('/')
        && let (Ok(ip), Ok(len)) = (ip.parse::<std::net::Ipv4Addr>(), len.parse::<u8>())
        && len <= 32
    {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        let network = std::net::Ipv4Addr::from(u32::from(ip) & mask);
        return net::Ipv4Subnet::new(network, len);
    }
    text.parse()
}

/// The property store of one app root.
#[derive(Debug)]
pub struct Properties {
    path: PathBuf,
    set: Mutex<BTreeMap<String, String>>,
}

impl Properties {
    /// Reads `<app root>/properties.json` (absent means nothing set). Unknown keys in the file
    /// are kept but ignored, so an older daemon does not destroy a newer one's settings.
    pub fn open(app_root: &Path) -> Result<Properties, PropertyError> {
        let path = app_root.join("properties.json");
        let set = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PropertyError::Io {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(PropertyError::Io {
                    path,
                    message: e.to_string(),
                });
            }
        };
        Ok(Properties {
            path,
            set: Mutex::new(set),
        })
    }

    fn entry(&self, d: &Def) -> v1::Property {
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let value = set.get(d.key);
        v1::Property {
            key: d.key.into(),
            value: value.cloned().unwrap_or_else(|| d.default.into()),
            default_value: d.default.into(),
            is_set: value.is_some(),
            description: d.description.into(),
            r#type: d.kind.into(),
        }
    }

    /// Every property, sorted by key.
    pub fn list(&self) -> Vec<v1::Property> {
        DEFS.iter().map(|d| self.entry(d)).collect()
    }

    /// One property.
    pub fn get(&self, key: &str) -> Result<v1::Property, PropertyError> {
        Ok(self.entry(def(key)?))
    }

    /// The value in effect of a known key.
    pub fn value(&self, key: &str) -> String {
        // Without building the whole entry: `ls` asks for defaults once per container.
        let Ok(d) = def(key) else {
            return String::new();
        };
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        set.get(d.key).cloned().unwrap_or_else(|| d.default.into())
    }

    /// Sets a property (checked against its type) and persists the set.
    pub fn set(&self, key: &str, value: &str) -> Result<v1::Property, PropertyError> {
        let d = def(key)?;
        let value = check(d, value)?;
        self.update(|set| {
            set.insert(key.to_owned(), value);
        })?;
        Ok(self.entry(d))
    }

    /// Resets a property to its default.
    pub fn clear(&self, key: &str) -> Result<v1::Property, PropertyError> {
        let d = def(key)?;
        self.update(|set| {
            set.remove(key);
        })?;
        Ok(self.entry(d))
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<String, String>)) -> Result<(), PropertyError> {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = set.clone();
        f(&mut next);
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| PropertyError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        statefs::write_atomic(&self.path, &bytes).map_err(|e| PropertyError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        *set = next;
        Ok(())
    }

    /// The Docker Hub mirror in effect: the property, else `$CONTAINER_REGISTRY_MIRROR`.
    pub fn registry_mirror(&self) -> Option<String> {
        let p = self.value("registry.mirror");
        if !p.is_empty() {
            return Some(p);
        }
        std::env::var("CONTAINER_REGISTRY_MIRROR")
            .ok()
            .filter(|v| !v.is_empty())
    }

    /// The registry of names that do not name one (`registry.domain`).
    pub fn registry_domain(&self) -> String {
        let v = self.value("registry.domain");
        if v.is_empty() { "docker.io".into() } else { v }
    }

    /// Registries `--scheme auto` reaches over plain HTTP besides loopback
    /// (`registry.insecure`).
    pub fn insecure_registries(&self) -> Vec<String> {
        self.value("registry.insecure")
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The default network's subnet, if the user chose one.
    pub fn default_subnet(&self) -> Result<Option<net::Ipv4Subnet>, net::SubnetError> {
        let v = self.value("network.subnet");
        if v.is_empty() {
            return Ok(None);
        }
        parse_subnet(&v).map(Some)
    }

    /// The default vCPUs of a container: the property, else 4 capped at the host's CPUs.
    pub fn default_cpus(&self) -> u32 {
        self.value("container.cpus").parse().unwrap_or_else(|_| {
            // Asked once: the answer reads the cgroup's CPU quota from /proc and /sys (five
            // file operations), and every container without --cpus needs it in every
            // `ls` and `inspect`.
            static HOST: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
            let host =
                *HOST.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            u32::try_from(host.min(4)).unwrap_or(4)
        })
    }

    /// How many pre-booted guests the pool keeps: `$CONTAINER_POOL_SIZE` when set, else the
    /// property.
    pub fn pool_size(&self) -> u32 {
        std::env::var("CONTAINER_POOL_SIZE")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| self.value("container.pool.size").parse().unwrap_or(1))
    }

    /// The size of a volume created without one, bytes.
    pub fn default_volume_size(&self) -> u64 {
        self.value("volume.size")
            .parse::<spec::ByteSize>()
            .map(|s| s.bytes())
            .unwrap_or(64 << 30)
    }

    /// `build.rosetta`: amd64 images run through Rosetta where the host has it
    /// ([`crate::guest::choose`]).
    pub fn build_rosetta(&self) -> bool {
        self.value("build.rosetta") != "false"
    }

    /// The default memory of a container, bytes.
    pub fn default_memory(&self) -> u64 {
        self.value("container.memory")
            .parse::<spec::ByteSize>()
            .map(|s| s.bytes())
            .unwrap_or(1 << 30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_clear_persist_and_type_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = Properties::open(dir.path()).unwrap();
        assert_eq!(p.get("container.cpus").unwrap().value, "auto");
        let host = std::thread::available_parallelism().unwrap().get();
        assert_eq!(p.default_cpus() as usize, host.min(4));
        assert!(!p.get("container.cpus").unwrap().is_set);
        p.set("container.cpus", "2").unwrap();
        p.set("registry.mirror", "127.0.0.1:5000").unwrap();
        let again = Properties::open(dir.path()).unwrap();
        assert_eq!(again.default_cpus(), 2);
        assert_eq!(again.registry_mirror().as_deref(), Some("127.0.0.1:5000"));
        assert!(again.get("container.cpus").unwrap().is_set);
        again.clear("container.cpus").unwrap();
        assert_eq!(
            Properties::open(dir.path()).unwrap().default_cpus() as usize,
            host.min(4)
        );

        let err = p.set("container.cpus", "many").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid value \"many\" for container.cpus (integer): expected a whole number of at least 1"
        );
        assert!(matches!(
            p.set("container.memory", "100m").unwrap_err(),
            PropertyError::Invalid { .. }
        ));
        assert!(matches!(
            p.set("registry.mirror", "http://x/y").unwrap_err(),
            PropertyError::Invalid { .. }
        ));
        assert_eq!(p.default_volume_size(), 64 << 30);
        p.set("volume.size", "1g").unwrap();
        assert_eq!(p.default_volume_size(), 1 << 30);
        let err = p.set("volume.size", "1m").unwrap_err().to_string();
        assert!(err.contains("below the minimum volume size"), "{err}");
        assert!(matches!(
            p.get("nope").unwrap_err(),
            PropertyError::Unknown(_)
        ));
        // Registries: the default registry and the insecure list take host[:port].
        assert_eq!(p.registry_domain(), "docker.io");
        p.set("registry.domain", "MyReg:5000").unwrap();
        assert_eq!(p.registry_domain(), "myreg:5000");
        p.set("registry.domain", "index.docker.io").unwrap();
        assert_eq!(p.registry_domain(), "docker.io");
        let err = p
            .set("registry.domain", "http://myreg")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid value \"http://myreg\" for registry.domain (registry): expected a registry host[:port] such as myreg:5000"
        );
        assert!(p.insecure_registries().is_empty());
        p.set("registry.insecure", " 10.0.0.5, myreg:5000 ,")
            .unwrap();
        assert_eq!(p.insecure_registries(), ["10.0.0.5", "myreg:5000"]);
        assert_eq!(
            Properties::open(dir.path()).unwrap().insecure_registries(),
            ["10.0.0.5", "myreg:5000"]
        );
        let err = p
            .set("registry.insecure", "10.0.0.5,a b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"a b\" is not a registry host"), "{err}");
        // build.rosetta is a bool, on by default; off sends amd64 images to the x86_64 VM.
        assert!(p.build_rosetta());
        p.set("build.rosetta", "false").unwrap();
        assert!(!p.build_rosetta());
        assert!(!Properties::open(dir.path()).unwrap().build_rosetta());
        assert!(p.set("build.rosetta", "maybe").is_err());
        p.clear("build.rosetta").unwrap();
        assert!(p.build_rosetta());

        let keys: Vec<String> = p.list().into_iter().map(|p| p.key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}
