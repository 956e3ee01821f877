//! What the list commands (`ls`, `image ls`, `network ls`, `volume ls`) share with the docker
//! CLI: `--filter key=value` with Docker's keys, `--format` (`table`, `json` or a Go
//! template, crate::template) and the fields a template names, worded as `docker ps`,
//! `docker images`, `docker network ls` and `docker volume ls` word them. Containers and
//! volumes are filtered by the daemon (its ListContainers and ListVolumes take the flags, as
//! the Docker API's lists do); images and networks here, on what the daemon listed.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::v1;

use crate::output;
use crate::template::{Fields, Template, TemplateError};

/// `--format` of a list command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ListFormat {
    /// The command's own table.
    #[default]
    Table,
    /// The command's JSON array (Apple's shapes).
    Json,
    /// A Go template, `table …` or one line per item.
    Template(String),
}

impl FromStr for ListFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<ListFormat, String> {
        Ok(match s.trim() {
            "" | "table" => ListFormat::Table,
            "json" => ListFormat::Json,
            _ => ListFormat::Template(s.to_owned()),
        })
    }
}

impl std::fmt::Display for ListFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListFormat::Table => f.write_str("table"),
            ListFormat::Json => f.write_str("json"),
            ListFormat::Template(t) => f.write_str(t),
        }
    }
}

impl ListFormat {
    /// The template, parsed for items of type `T` (None for the built-in formats).
    pub fn template<T: Fields>(&self) -> Result<Option<Template>, TemplateError> {
        match self {
            ListFormat::Template(t) => Template::parse::<T>(t).map(Some),
            _ => Ok(None),
        }
    }
}

pub use spec::filter::{FilterError, Filters};

// ---- containers ---------------------------------------------------------------------------

/// The state in Docker's words: created, running, exited, dead.
pub fn docker_state(c: &v1::ContainerInfo) -> &'static str {
    match c.state_enum() {
        v1::ContainerState::Running | v1::ContainerState::Stopping => "running",
        v1::ContainerState::Created => "created",
        v1::ContainerState::Stopped if c.started_ms == 0 => "created",
        v1::ContainerState::Stopped => "exited",
        v1::ContainerState::Unknown => "dead",
    }
}

fn container_labels(c: &v1::ContainerInfo) -> BTreeMap<String, String> {
    c.config
        .as_ref()
        .map(|k| {
            k.labels
                .iter()
                .map(|l| (l.key.clone(), l.value.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// `docker.io/library/busybox` as users write it: `busybox`.
fn familiar(reference: &str) -> &str {
    reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ago(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    let d = Duration::from_millis((now_ms() - ms).max(0) as u64);
    format!("{} ago", spec::human_duration(d))
}

/// Go's time.Time printed as the docker CLI prints `CreatedAt`.
fn created_at(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    let t = output::iso8601(ms);
    // 2026-12-04T20:03:05Z → 2026-12-04 20:03:05 +0000 UTC
    format!(
        "{} +0000 UTC",
        t.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A container as templates see it.
pub struct ContainerFields<'a> {
    /// The container.
    pub c: &'a v1::ContainerInfo,
    /// `--no-trunc`.
    pub no_trunc: bool,
}

impl Fields for ContainerFields<'_> {
    fn known() -> &'static [(&'static str, &'static str)] {
        &[
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Command", "COMMAND"),
            ("CreatedAt", "CREATED AT"),
            ("RunningFor", "CREATED"),
            ("Ports", "PORTS"),
            ("State", "STATE"),
            ("Status", "STATUS"),
            ("Names", "NAMES"),
            ("Labels", "LABELS"),
            ("Mounts", "MOUNTS"),
            ("Networks", "NETWORKS"),
            ("Platform", "PLATFORM"),
            ("IPAddress", "IP"),
        ]
    }

    fn field(&self, name: &str) -> String {
        let c = self.c;
        let config = c.config.clone().unwrap_or_default();
        match name {
            "ID" if self.no_trunc => c.id.clone(),
            "ID" => output::short_id(&c.id),
            "Image" => familiar(&config.image).to_owned(),
            "Command" => {
                let cmd = c.args.join(" ");
                let cmd = if self.no_trunc {
                    cmd
                } else {
                    truncate(&cmd, 20)
                };
                format!("\"{cmd}\"")
            }
            "CreatedAt" => created_at(c.created_ms),
            "RunningFor" => ago(c.created_ms),
            "Ports" => {
                let running = docker_state(c) == "running";
                config
                    .ports
                    .iter()
                    .map(|p| {
                        let proto = if p.protocol == v1::Protocol::Udp as i32 {
                            "udp"
                        } else {
                            "tcp"
                        };
                        let range = |base: u32| {
                            if p.count > 1 {
                                format!("{base}-{}", base + p.count - 1)
                            } else {
                                base.to_string()
                            }
                        };
                        if running && p.host_port != 0 {
                            let ip = if p.host_ip.is_empty() {
                                "0.0.0.0"
                            } else {
                                &p.host_ip
                            };
                            format!(
                                "{ip}:{}->{}/{proto}",
                                range(p.host_port),
                                range(p.container_port)
                            )
                        } else {
                            format!("{}/{proto}", range(p.container_port))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            "State" => docker_state(c).to_owned(),
            "Status" => match docker_state(c) {
                "running" => {
                    let up = format!("Up {}", spec::human_duration(since(c.started_ms)));
                    match c.health.as_ref().map(|h| h.status.as_str()) {
                        Some("starting") => format!("{up} (health: starting)"),
                        Some(s) if !s.is_empty() => format!("{up} ({s})"),
                        _ => up,
                    }
                }
                "exited" => format!(
                    "Exited ({}) {}",
                    c.exit_code.max(0),
                    ago(c.finished_ms.max(1))
                ),
                "created" => "Created".into(),
                _ => "Dead".into(),
            },
            "Names" => output::display_id(c),
            "Labels" => labels_text(&container_labels(c)),
            "Mounts" => config
                .mounts
                .iter()
                .map(|m| match &m.kind {
                    Some(v1::mount::Kind::Volume(v)) => v.name.clone(),
                    Some(v1::mount::Kind::Bind(b)) => b.source.clone(),
                    _ => m.target.clone(),
                })
                .collect::<Vec<_>>()
                .join(","),
            "Networks" => c
                .networks
                .iter()
                .map(|n| n.network.clone())
                .collect::<Vec<_>>()
                .join(","),
            "Platform" => c.platform.clone(),
            "IPAddress" => c
                .networks
                .first()
                .and_then(|n| n.ipv4_address.split('/').next())
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        }
    }

    fn label(&self, key: &str) -> String {
        container_labels(self.c).remove(key).unwrap_or_default()
    }
}

fn since(ms: i64) -> Duration {
    Duration::from_millis((now_ms() - ms).max(0) as u64)
}

// ---- images -------------------------------------------------------------------------------

/// The keys `image ls --filter` takes.
pub const IMAGE_FILTERS: &[&str] = &["reference", "label", "dangling"];

fn image_labels(i: &v1::ImageInfo) -> BTreeMap<String, String> {
    let Some(v) = i.variants.first() else {
        return BTreeMap::new();
    };
    let config: serde_json::Value =
        serde_json::from_slice(&v.config_json).unwrap_or(serde_json::Value::Null);
    config["config"]["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Go's `path.Match` with `*` and `?` (no classes), which Docker's `reference` filter uses.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != '/')
                .any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => t.first().is_some_and(|c| *c != '/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

fn reference_matches(i: &v1::ImageInfo, pattern: &str) -> bool {
    if i.reference.is_empty() {
        return false;
    }
    let name = familiar(&i.name);
    let full = format!("{name}:{}", i.tag);
    glob(pattern, name) || glob(pattern, &full) || glob(pattern, &i.reference)
}

/// Keeps the images every filter lets through.
pub fn filter_images(
    f: &Filters,
    list: Vec<v1::ImageInfo>,
) -> Result<Vec<v1::ImageInfo>, FilterError> {
    let dangling = f.boolean("dangling")?;
    Ok(list
        .into_iter()
        .filter(|i| {
            let labels = image_labels(i);
            f.labels(|k| labels.get(k).map(String::as_str))
                && f.any("reference", |r| reference_matches(i, r))
                && dangling.is_none_or(|d| d == i.reference.is_empty())
        })
        .collect())
}

/// An image as templates see it.
pub struct ImageFields<'a> {
    /// The image.
    pub i: &'a v1::ImageInfo,
    /// `--no-trunc`.
    pub no_trunc: bool,
}

impl Fields for ImageFields<'_> {
    fn known() -> &'static [(&'static str, &'static str)] {
        &[
            ("ID", "IMAGE ID"),
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Digest", "DIGEST"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("Size", "SIZE"),
            ("Platform", "PLATFORM"),
            ("Labels", "LABELS"),
        ]
    }

    fn field(&self, name: &str) -> String {
        let i = self.i;
        let none = |s: &str| {
            if s.is_empty() || i.reference.is_empty() {
                "<none>".to_owned()
            } else {
                s.to_owned()
            }
        };
        let first = i.variants.first();
        match name {
            "ID" if self.no_trunc => i.digest.clone(),
            "ID" => output::short_digest(&i.digest),
            "Repository" => none(familiar(&i.name)),
            "Tag" => none(&i.tag),
            "Digest" => i.digest.clone(),
            "CreatedSince" => ago(first.map_or(0, |v| v.created_ms)),
            "CreatedAt" => created_at(first.map_or(0, |v| v.created_ms)),
            "Size" => spec::human_bytes(i.variants.iter().map(|v| v.size).sum()),
            "Platform" => i
                .variants
                .iter()
                .map(|v| v.platform.clone())
                .collect::<Vec<_>>()
                .join(","),
            "Labels" => labels_text(&image_labels(i)),
            _ => String::new(),
        }
    }

    fn label(&self, key: &str) -> String {
        image_labels(self.i).remove(key).unwrap_or_default()
    }
}

// ---- networks -----------------------------------------------------------------------------

/// The keys `network ls --filter` takes.
pub const NETWORK_FILTERS: &[&str] = &["name", "id", "label", "driver"];

/// The driver Docker names for our networks: each is a bridge (or the VMM's NAT, which
/// Docker clients know as `bridge` too).
fn network_driver(_n: &v1::Network) -> &'static str {
    "bridge"
}

/// Keeps the networks every filter lets through.
pub fn filter_networks(f: &Filters, list: Vec<v1::Network>) -> Vec<v1::Network> {
    list.into_iter()
        .filter(|n| {
            f.labels(|k| n.labels.get(k).map(String::as_str))
                && f.any("name", |x| n.name.contains(x))
                && f.any("id", |x| n.name.starts_with(x))
                && f.any("driver", |d| d == network_driver(n) || d == n.mode)
        })
        .collect()
}

/// A network as templates see it.
pub struct NetworkFields<'a> {
    /// The network.
    pub n: &'a v1::Network,
}

impl Fields for NetworkFields<'_> {
    fn known() -> &'static [(&'static str, &'static str)] {
        &[
            ("ID", "NETWORK ID"),
            ("Name", "NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
            ("IPv6", "IPV6"),
            ("Internal", "INTERNAL"),
            ("Labels", "LABELS"),
            ("CreatedAt", "CREATED AT"),
            ("Subnet", "SUBNET"),
            ("Gateway", "GATEWAY"),
            ("Mode", "MODE"),
        ]
    }

    fn field(&self, name: &str) -> String {
        let n = self.n;
        match name {
            "ID" | "Name" => n.name.clone(),
            "Driver" => network_driver(n).to_owned(),
            "Scope" => "local".into(),
            "IPv6" => (!n.subnet_v6.is_empty()).to_string(),
            "Internal" => n.internal.to_string(),
            "Labels" => labels_text(&n.labels.clone().into_iter().collect()),
            "CreatedAt" => created_at(n.created_ms),
            "Subnet" => n.subnet.clone(),
            "Gateway" => n.gateway.clone(),
            "Mode" => n.mode.clone(),
            _ => String::new(),
        }
    }

    fn label(&self, key: &str) -> String {
        self.n.labels.get(key).cloned().unwrap_or_default()
    }
}

// ---- volumes ------------------------------------------------------------------------------

fn volume_labels(v: &v1::VolumeInfo) -> BTreeMap<String, String> {
    v.labels
        .iter()
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect()
}

/// A volume as templates see it.
pub struct VolumeFields<'a> {
    /// The volume.
    pub v: &'a v1::VolumeInfo,
}

impl Fields for VolumeFields<'_> {
    fn known() -> &'static [(&'static str, &'static str)] {
        &[
            ("Name", "VOLUME NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
            ("Mountpoint", "MOUNTPOINT"),
            ("Labels", "LABELS"),
            ("Size", "SIZE"),
            ("CreatedAt", "CREATED AT"),
        ]
    }

    fn field(&self, name: &str) -> String {
        let v = self.v;
        match name {
            "Name" => v.name.clone(),
            "Driver" if v.driver.is_empty() => "local".into(),
            "Driver" => v.driver.clone(),
            "Scope" => "local".into(),
            "Mountpoint" => v.source.clone(),
            "Labels" => labels_text(&volume_labels(v)),
            "Size" => spec::human_bytes(v.size_bytes),
            "CreatedAt" => created_at(v.created_ms),
            _ => String::new(),
        }
    }

    fn label(&self, key: &str) -> String {
        volume_labels(self.v).remove(key).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| (*s).to_owned()).collect()
    }

    fn container(
        id: &str,
        name: &str,
        state: v1::ContainerState,
        labels: &[(&str, &str)],
    ) -> v1::ContainerInfo {
        v1::ContainerInfo {
            id: id.into(),
            name: name.into(),
            state: state as i32,
            started_ms: if state == v1::ContainerState::Created {
                0
            } else {
                1
            },
            exit_code: 3,
            image_digest: "sha256:beefcafe".into(),
            args: vec![
                "sh".into(),
                "-c".into(),
                "echo a long command line here".into(),
            ],
            config: Some(v1::ContainerConfig {
                image: "docker.io/library/busybox:latest".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| v1::Label {
                        key: (*k).into(),
                        value: (*v).into(),
                    })
                    .collect(),
                ..Default::default()
            }),
            networks: vec![v1::NetworkAttachment {
                network: "default".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn sample() -> Vec<v1::ContainerInfo> {
        vec![
            container(
                "aaa111",
                "web",
                v1::ContainerState::Running,
                &[("tier", "front")],
            ),
            container(
                "bbb222",
                "job",
                v1::ContainerState::Stopped,
                &[("tier", "back")],
            ),
            container("ccc333", "fresh", v1::ContainerState::Created, &[]),
        ]
    }

    #[test]
    fn bad_filters_are_refused_in_docker_words() {
        let e = Filters::parse(&flags(&["colour=red"]), "networks", NETWORK_FILTERS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid filter 'colour' (valid for networks: name, id, label, driver)"
        );
        let e = Filters::parse(&flags(&["dangling"]), "images", IMAGE_FILTERS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad format of filter \"dangling\" (expected name=value)"
        );
        let f = Filters::parse(&flags(&["dangling=maybe"]), "images", IMAGE_FILTERS).unwrap();
        assert!(filter_images(&f, vec![]).is_err());
    }

    #[test]
    fn container_fields_read_like_docker_ps() {
        let list = sample();
        let fields: Vec<ContainerFields> = list
            .iter()
            .map(|c| ContainerFields { c, no_trunc: false })
            .collect();
        let t = Template::parse::<ContainerFields>(
            "{{.ID}}|{{.Names}}|{{.Image}}|{{.Command}}|{{.State}}|{{.Label \"tier\"}}",
        )
        .unwrap();
        assert_eq!(
            t.render(&fields),
            "aaa111|web|busybox:latest|\"sh -c echo a long c…\"|running|front\n\
             bbb222|job|busybox:latest|\"sh -c echo a long c…\"|exited|back\n\
             ccc333|fresh|busybox:latest|\"sh -c echo a long c…\"|created|\n"
        );
        let full = ContainerFields {
            c: &list[0],
            no_trunc: true,
        };
        assert_eq!(
            full.field("Command"),
            "\"sh -c echo a long command line here\""
        );
        assert!(
            full.field("Status").starts_with("Up "),
            "{}",
            full.field("Status")
        );
        assert!(
            ContainerFields {
                c: &list[1],
                no_trunc: false
            }
            .field("Status")
            .starts_with("Exited (3) "),
        );
        let json = Template::parse::<ContainerFields>("{{json .}}")
            .unwrap()
            .render(&fields[..1]);
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["Names"], "web");
        assert_eq!(v["Labels"], "tier=front");
        assert_eq!(v["Networks"], "default");
    }

    #[test]
    fn image_reference_globs_and_dangling() {
        let img = |reference: &str, name: &str, tag: &str| v1::ImageInfo {
            reference: reference.into(),
            name: name.into(),
            tag: tag.into(),
            digest: "sha256:0123456789abcdef0123".into(),
            ..Default::default()
        };
        let list = vec![
            img(
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox",
                "latest",
            ),
            img(
                "localhost:5000/team/app:v1",
                "localhost:5000/team/app",
                "v1",
            ),
            img("", "", ""),
        ];
        let run = |f: &[&str]| {
            let f = Filters::parse(&flags(f), "images", IMAGE_FILTERS).unwrap();
            filter_images(&f, list.clone())
                .unwrap()
                .iter()
                .map(|i| i.reference.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            run(&["reference=busybox"]),
            ["docker.io/library/busybox:latest"]
        );
        assert_eq!(
            run(&["reference=busy*:latest"]),
            ["docker.io/library/busybox:latest"]
        );
        assert_eq!(
            run(&["reference=localhost:5000/*/app"]),
            ["localhost:5000/team/app:v1"]
        );
        assert_eq!(run(&["reference=*"]), ["docker.io/library/busybox:latest"]);
        assert_eq!(run(&["dangling=true"]), [""]);
        assert_eq!(run(&["dangling=false"]).len(), 2);
        let t = Template::parse::<ImageFields>("table {{.Repository}}\\t{{.Tag}}").unwrap();
        let fields: Vec<ImageFields> = list
            .iter()
            .map(|i| ImageFields { i, no_trunc: false })
            .collect();
        assert_eq!(
            t.render(&fields),
            "REPOSITORY                TAG\n\
             busybox                   latest\n\
             localhost:5000/team/app   v1\n\
             <none>                    <none>\n"
        );
    }

    #[test]
    fn volume_and_network_filters() {
        let vol = |name: &str, used: bool| v1::VolumeInfo {
            name: name.into(),
            driver: "local".into(),
            containers: if used { vec!["c".into()] } else { vec![] },
            labels: vec![v1::Label {
                key: "proj".into(),
                value: name.into(),
            }],
            ..Default::default()
        };
        let vols = [vol("data", true), vol("cache", false)];
        let fields: Vec<VolumeFields> = vols.iter().map(|v| VolumeFields { v }).collect();
        assert_eq!(
            Template::parse::<VolumeFields>("{{.Name}} {{.Driver}}")
                .unwrap()
                .render(&fields),
            "data local\ncache local\n"
        );
        let nets = vec![
            v1::Network {
                name: "default".into(),
                ..Default::default()
            },
            v1::Network {
                name: "backend".into(),
                labels: [("env".to_owned(), "test".to_owned())].into(),
                ..Default::default()
            },
        ];
        let f = Filters::parse(&flags(&["label=env=test"]), "networks", NETWORK_FILTERS).unwrap();
        assert_eq!(filter_networks(&f, nets.clone())[0].name, "backend");
        let f = Filters::parse(&flags(&["name=def"]), "networks", NETWORK_FILTERS).unwrap();
        assert_eq!(filter_networks(&f, nets.clone())[0].name, "default");
        let f = Filters::parse(&flags(&["driver=overlay"]), "networks", NETWORK_FILTERS).unwrap();
        assert!(filter_networks(&f, nets).is_empty());
    }

    #[test]
    fn formats_parse() {
        assert_eq!("table".parse::<ListFormat>().unwrap(), ListFormat::Table);
        assert_eq!("json".parse::<ListFormat>().unwrap(), ListFormat::Json);
        assert_eq!(
            "{{.ID}}".parse::<ListFormat>().unwrap(),
            ListFormat::Template("{{.ID}}".into())
        );
    }
}
