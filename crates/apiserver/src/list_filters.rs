//! Docker's list filters (`--filter key=value`, the Engine API's `filters`), applied in one
//! place: the daemon's ListContainers and ListVolumes take them, so `container ls --filter`
//! and `GET /containers/json?filters=` (likewise `volume ls` and `GET /volumes`) keep the
//! same items and refuse the same keys and values in the same words.
//!
//! Values of one key are alternatives; different keys must all hold (Docker's rule). No I/O
//! here: callers hand in what they listed.

use std::collections::HashMap;

use api::v1;

pub use spec::filter::{FilterError, Filters, pairs};

/// A refused filter as the API's error: invalid argument, in the filter's own words.
pub fn invalid(e: FilterError) -> api::ApiError {
    api::ApiError::invalid_argument(e.to_string())
}

// ---- containers ---------------------------------------------------------------------------

/// The keys containers are filtered by.
pub const CONTAINER_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "ancestor", "network", "exited", "health",
];

/// The `status` values there are (Docker's).
const STATUSES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

/// The state in Docker's words for `State.Status`, where a paused container is `running`.
pub fn state_name(info: &v1::ContainerInfo) -> &'static str {
    match info.state() {
        v1::ContainerState::Running | v1::ContainerState::Stopping => "running",
        v1::ContainerState::Created => "created",
        v1::ContainerState::Stopped if info.started_ms == 0 => "created",
        v1::ContainerState::Stopped => "exited",
        v1::ContainerState::Unknown => "dead",
    }
}

/// Docker's state word, which says `paused` for a paused running container (the `status`
/// filter's and `docker ps`'s `State`).
pub fn docker_state(info: &v1::ContainerInfo) -> &'static str {
    match state_name(info) {
        "running" if info.paused => "paused",
        s => s,
    }
}

/// `docker.io/library/busybox` as users write it: `busybox`.
fn familiar(reference: &str) -> &str {
    reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference)
}

/// A reference with its tag made explicit (`busybox` → `busybox:latest`).
fn tagged(reference: &str) -> String {
    let r = familiar(reference);
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || r.contains('@') {
        r.to_owned()
    } else {
        format!("{r}:latest")
    }
}

/// `ancestor`: the image as named (tag `latest` implied) or an image ID (prefix).
fn ancestor_matches(c: &v1::ContainerInfo, want: &str) -> bool {
    let image = c.config.as_ref().map(|k| k.image.as_str()).unwrap_or("");
    let hex = want.trim_start_matches("sha256:");
    tagged(image) == tagged(want)
        || (!hex.is_empty()
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && c.image_digest
                .trim_start_matches("sha256:")
                .starts_with(hex))
}

/// `network`: a network the container is attached to or was created on; one created
/// without `--network` is on the default network, which Docker's clients call `bridge`.
fn network_matches(c: &v1::ContainerInfo, want: &str) -> bool {
    let configured = c
        .config
        .as_ref()
        .map(|k| k.networks.as_slice())
        .unwrap_or(&[]);
    c.networks.iter().any(|n| n.network == want)
        || configured.iter().any(|n| n.name == want)
        || (configured.is_empty() && c.networks.is_empty() && matches!(want, "bridge" | "default"))
}

/// A container's health word: `none` without a healthcheck.
fn health_word(c: &v1::ContainerInfo) -> &str {
    match c.health.as_ref().map(|h| h.status.as_str()) {
        Some(s) if !s.is_empty() => s,
        _ => "none",
    }
}

/// Container filters, checked: keys and values a container list takes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ContainerFilters(Filters);

impl ContainerFilters {
    /// Parses and checks `key=value` pairs.
    pub fn parse(pairs: &[String]) -> Result<ContainerFilters, FilterError> {
        let f = Filters::parse(pairs, "containers", CONTAINER_FILTERS)?;
        for s in f.get("status") {
            if !STATUSES.contains(&s.as_str()) {
                return Err(FilterError::BadValue {
                    key: "status".into(),
                    value: s.clone(),
                    why: "expected created, restarting, running, removing, paused, exited or dead",
                });
            }
        }
        for code in f.get("exited") {
            if code.parse::<i32>().is_err() {
                return Err(FilterError::BadValue {
                    key: "exited".into(),
                    value: code.clone(),
                    why: "expected an exit code",
                });
            }
        }
        Ok(ContainerFilters(f))
    }

    /// Whether the filters ask for containers a list without `all` hides (a status other
    /// than running, an exit code), as Docker's do.
    pub fn wants_stopped(&self) -> bool {
        self.0.get("status").iter().any(|s| s != "running") || !self.0.get("exited").is_empty()
    }

    /// Whether `c` passes every filter.
    pub fn matches(&self, c: &v1::ContainerInfo) -> bool {
        let f = &self.0;
        if f.is_empty() {
            return true;
        }
        let labels: HashMap<&str, &str> = c
            .config
            .as_ref()
            .map(|k| {
                k.labels
                    .iter()
                    .map(|l| (l.key.as_str(), l.value.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        f.labels(|k| labels.get(k).copied())
            && f.any("id", |p| c.id.starts_with(p))
            && f.any("name", |n| c.name.contains(n.trim_start_matches('/')))
            && f.any("status", |s| s == docker_state(c))
            && f.any("health", |h| h == health_word(c))
            && f.any("ancestor", |a| ancestor_matches(c, a))
            && f.any("network", |n| network_matches(c, n))
            && f.any("exited", |e| {
                state_name(c) == "exited" && e.parse::<i32>().is_ok_and(|e| e == c.exit_code)
            })
    }
}

// ---- volumes ------------------------------------------------------------------------------

/// The keys volumes are filtered by.
pub const VOLUME_FILTERS: &[&str] = &["name", "label", "dangling", "driver"];

/// Volume filters, checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VolumeFilters {
    filters: Filters,
    dangling: Option<bool>,
}

impl VolumeFilters {
    /// Parses and checks `key=value` pairs.
    pub fn parse(pairs: &[String]) -> Result<VolumeFilters, FilterError> {
        let filters = Filters::parse(pairs, "volumes", VOLUME_FILTERS)?;
        let dangling = filters.boolean("dangling")?;
        Ok(VolumeFilters { filters, dangling })
    }

    /// Whether `v` passes every filter: `name` (substring), `label`, `dangling` (used by no
    /// container), `driver` (`local` is ours).
    pub fn matches(&self, v: &v1::VolumeInfo) -> bool {
        let f = &self.filters;
        f.labels(|k| {
            v.labels
                .iter()
                .find(|l| l.key == k)
                .map(|l| l.value.as_str())
        }) && f.any("name", |x| v.name.contains(x))
            && f.any("driver", |d| {
                d == v.driver || (d == "local" && v.driver.is_empty())
            })
            && self.dangling.is_none_or(|d| d == v.containers.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs_of(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| (*s).to_owned()).collect()
    }

    fn container(
        name: &str,
        state: v1::ContainerState,
        image: &str,
        labels: &[(&str, &str)],
        exit_code: i32,
    ) -> v1::ContainerInfo {
        v1::ContainerInfo {
            id: format!("{:0<64}", name.len()),
            name: name.into(),
            state: state as i32,
            started_ms: if state == v1::ContainerState::Created {
                0
            } else {
                1
            },
            exit_code,
            image_digest: "sha256:abcdef0123".into(),
            config: Some(v1::ContainerConfig {
                image: image.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| v1::Label {
                        key: (*k).into(),
                        value: (*v).into(),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sample() -> Vec<v1::ContainerInfo> {
        use v1::ContainerState as S;
        let mut paused = container("frozen", S::Running, "busybox", &[], 0);
        paused.paused = true;
        paused.id = format!("{:f<64}", "");
        paused.networks = vec![v1::NetworkAttachment {
            network: "backend".into(),
            ..Default::default()
        }];
        vec![
            container("web", S::Running, "busybox", &[("tier", "front")], 0),
            container(
                "db",
                S::Running,
                "docker.io/library/busybox:1.36",
                &[("tier", "back")],
                0,
            ),
            container("job", S::Stopped, "alpine", &[("tier", "back")], 3),
            container("new", S::Created, "busybox", &[], 0),
            paused,
        ]
    }

    fn names(f: &[&str]) -> Vec<String> {
        let f = ContainerFilters::parse(&pairs_of(f)).unwrap();
        sample()
            .into_iter()
            .filter(|c| f.matches(c))
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn keys_and_their_values_combine_as_dockers() {
        assert_eq!(names(&[]).len(), 5);
        assert_eq!(names(&["label=tier=back"]), ["db", "job"]);
        assert_eq!(names(&["label=tier"]), ["web", "db", "job"]);
        assert_eq!(names(&["label=tier=back", "status=exited"]), ["job"]);
        assert_eq!(
            names(&["status=running", "status=created"]),
            ["web", "db", "new"]
        );
        assert_eq!(names(&["status=paused"]), ["frozen"]);
        assert_eq!(names(&["ancestor=busybox"]), ["web", "new", "frozen"]);
        assert_eq!(names(&["ancestor=busybox:1.36"]), ["db"]);
        assert_eq!(names(&["ancestor=abcdef"]).len(), 5);
        assert_eq!(names(&["exited=3"]), ["job"]);
        assert_eq!(names(&["exited=0"]), Vec::<String>::new());
        assert_eq!(names(&["name=e"]), ["web", "new", "frozen"]);
        assert_eq!(names(&["name=/web"]), ["web"]);
        assert_eq!(names(&["health=none"]).len(), 5);
        assert_eq!(names(&["network=bridge"]), ["web", "db", "job", "new"]);
        assert_eq!(names(&["network=backend"]), ["frozen"]);
        assert_eq!(names(&["id=fff"]), ["frozen"]);
    }

    #[test]
    fn stopped_states_and_exit_codes_want_all() {
        let f = |p: &[&str]| ContainerFilters::parse(&pairs_of(p)).unwrap();
        assert!(!f(&["status=running"]).wants_stopped());
        assert!(f(&["status=exited"]).wants_stopped());
        assert!(f(&["exited=0"]).wants_stopped());
        assert!(!f(&["label=a"]).wants_stopped());
    }

    #[test]
    fn bad_filters_are_refused_in_one_line() {
        let e = |p: &[&str]| {
            ContainerFilters::parse(&pairs_of(p))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e(&["colour=red"]),
            "invalid filter 'colour' (valid for containers: id, name, label, status, ancestor, network, exited, health)"
        );
        assert_eq!(
            e(&["status"]),
            "bad format of filter \"status\" (expected name=value)"
        );
        assert!(e(&["status=sleeping"]).starts_with("invalid filter 'status=sleeping': expected"));
        assert_eq!(
            e(&["exited=x"]),
            "invalid filter 'exited=x': expected an exit code"
        );
        let status = invalid(FilterError::Malformed("x".into()));
        assert_eq!(status.kind, api::ErrorKind::InvalidArgument);
    }

    #[test]
    fn volume_filters() {
        let vols = [
            v1::VolumeInfo {
                name: "data".into(),
                driver: "local".into(),
                labels: vec![v1::Label {
                    key: "proj".into(),
                    value: "data".into(),
                }],
                containers: vec!["web".into()],
                ..Default::default()
            },
            v1::VolumeInfo {
                name: "cache".into(),
                ..Default::default()
            },
        ];
        let names = |p: &[&str]| {
            let f = VolumeFilters::parse(&pairs_of(p)).unwrap();
            vols.iter()
                .filter(|v| f.matches(v))
                .map(|v| v.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&["dangling=true"]), ["cache"]);
        assert_eq!(names(&["dangling=0"]), ["data"]);
        assert_eq!(names(&["label=proj=data"]), ["data"]);
        assert_eq!(names(&["label=proj"]), ["data"]);
        assert_eq!(names(&["driver=local"]), ["data", "cache"]);
        assert_eq!(names(&["name=ach", "name=dat"]), ["data", "cache"]);
        assert_eq!(
            VolumeFilters::parse(&pairs_of(&["dangling=maybe"]))
                .unwrap_err()
                .to_string(),
            "invalid filter 'dangling=maybe': expected true or false"
        );
        assert_eq!(
            VolumeFilters::parse(&pairs_of(&["colour=red"]))
                .unwrap_err()
                .to_string(),
            "invalid filter 'colour' (valid for volumes: name, label, dangling, driver)"
        );
    }
}
