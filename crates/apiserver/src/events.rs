//! The daemon's event stream: one bus for container, image, network and volume events.
//!
//! Every event is kept in a bounded in-memory history ring (the oldest drop out) and sent to
//! live subscribers through a `tokio::sync::broadcast` channel. A subscription takes the
//! history it asked for and its live receiver under the same lock, so a subscriber sees each
//! event exactly once, in order. Events are shaped as the Docker Engine API's
//! `events.Message` (type, action, actor ID and attributes, scope `local`, time and
//! timeNano), so the gRPC `Events` call and Docker's `/events` serve them as they are.
//! Nothing is written to disk: like Docker, the history starts empty at each daemon start.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Events kept for replay (`--since`).
pub const HISTORY: usize = 1024;
/// Live events a slow subscriber may lag behind before it misses some.
const LIVE_BUFFER: usize = 1024;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A container.
    Container,
    /// An image.
    Image,
    /// A network.
    Network,
    /// A volume.
    Volume,
}

impl EventType {
    /// Docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Container => "container",
            EventType::Image => "image",
            EventType::Network => "network",
            EventType::Volume => "volume",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What it is about.
    pub kind: EventType,
    /// What happened (`start`, `die`, `health_status: healthy`, `pull`, ...).
    pub action: String,
    /// The object's ID.
    pub actor_id: String,
    /// Details: `name`, `image`, `exitCode`, labels, ...
    pub attributes: BTreeMap<String, String>,
    /// When, nanoseconds since the epoch.
    pub time_nano: i64,
}

impl Event {
    /// An event that happens now.
    pub fn now(
        kind: EventType,
        action: impl Into<String>,
        actor_id: impl Into<String>,
        attributes: BTreeMap<String, String>,
    ) -> Event {
        Event {
            kind,
            action: action.into(),
            actor_id: actor_id.into(),
            attributes,
            time_nano: now_nanos(),
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> api::v1::Event {
        api::v1::Event {
            r#type: self.kind.as_str().into(),
            action: self.action.clone(),
            actor_id: self.actor_id.clone(),
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            scope: "local".into(),
            time: self.time_nano.div_euclid(1_000_000_000),
            time_nano: self.time_nano,
        }
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A key Docker's events do not filter on.
    #[error(
        "invalid filter {0:?}: events filter on type, event, container, image, network, volume and label"
    )]
    UnknownKey(String),
    /// A type that no event has.
    #[error("invalid filter type={0:?}: types are container, image, network and volume")]
    UnknownType(String),
}

/// Docker's event filters: values of one key are alternatives, keys must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    by_key: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    /// Builds a filter from `KEY=VALUE` pairs.
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<EventFilter, FilterError> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in pairs {
            match key {
                "type" => {
                    if !["container", "image", "network", "volume"].contains(&value) {
                        return Err(FilterError::UnknownType(value.to_owned()));
                    }
                }
                "event" | "container" | "image" | "network" | "volume" | "label" => {}
                other => return Err(FilterError::UnknownKey(other.to_owned())),
            }
            by_key
                .entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
        Ok(EventFilter { by_key })
    }

    fn any(&self, key: &str, f: impl Fn(&str) -> bool) -> bool {
        self.by_key
            .get(key)
            .is_none_or(|values| values.iter().any(|v| f(v)))
    }

    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or("");
        let is = |t: EventType| e.kind == t;
        self.any("type", |v| v == e.kind.as_str())
            // `health_status`, `exec_create` and `exec_start` also match their detailed
            // forms (`health_status: healthy`), as Docker's.
            && self.any("event", |v| {
                e.action == v
                    || e.action
                        .strip_prefix(v)
                        .is_some_and(|rest| rest.starts_with(':'))
            })
            && self.any("container", |v| {
                is(EventType::Container)
                    && (attr("name") == v || (!v.is_empty() && e.actor_id.starts_with(v)))
            })
            && self.any("image", |v| {
                let image = if is(EventType::Image) {
                    e.actor_id.as_str()
                } else {
                    attr("image")
                };
                same_image(image, v) || (is(EventType::Image) && same_image(attr("name"), v))
            })
            && self.any("network", |v| {
                is(EventType::Network) && (e.actor_id == v || attr("name") == v)
            })
            && self.any("volume", |v| is(EventType::Volume) && e.actor_id == v)
            && self.any("label", |v| match v.split_once('=') {
                Some((k, val)) => e.attributes.get(k).is_some_and(|x| x == val),
                None => e.attributes.contains_key(v),
            })
    }
}

/// Whether two image references name the same image, Docker-style: `busybox` is
/// `busybox:latest` and `docker.io/library/busybox:latest`.
fn same_image(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> String {
        let s = s
            .strip_prefix("docker.io/library/")
            .or_else(|| s.strip_prefix("docker.io/"))
            .unwrap_or(s);
        let last = s.rsplit('/').next().unwrap_or(s);
        if last.contains(':') || last.contains('@') {
            s.to_owned()
        } else {
            format!("{s}:latest")
        }
    }
    !a.is_empty() && !b.is_empty() && (a == b || norm(a) == norm(b))
}

struct Ring {
    events: VecDeque<Event>,
    capacity: usize,
}

/// The bus: history and live subscribers.
pub struct EventBus {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Event>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").finish_non_exhaustive()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(HISTORY)
    }
}

impl EventBus {
    /// A bus keeping the last `capacity` events.
    pub fn new(capacity: usize) -> EventBus {
        EventBus {
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity.min(HISTORY)),
                capacity: capacity.max(1),
            }),
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }

    /// Records an event and hands it to every live subscriber. Its time is kept monotonic
    /// (never before the previous event's), so replays by time never reorder.
    pub fn publish(&self, mut event: Event) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = ring.events.back()
            && event.time_nano < last.time_nano
        {
            event.time_nano = last.time_nano;
        }
        tracing::debug!(
            kind = event.kind.as_str(),
            action = %event.action,
            actor = %event.actor_id,
            "event"
        );
        if ring.events.len() >= ring.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.live.send(event);
    }

    /// The recorded events in `[since, until]` (either end open), and a receiver of every
    /// event published after them.
    pub fn subscribe(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let history = if since.is_none() && until.is_none() {
            Vec::new()
        } else {
            ring.events
                .iter()
                .filter(|e| since.is_none_or(|s| e.time_nano >= s))
                .filter(|e| until.is_none_or(|u| e.time_nano <= u))
                .cloned()
                .collect()
        };
        (history, self.live.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventType, action: &str, id: &str, attrs: &[(&str, &str)], t: i64) -> Event {
        Event {
            kind,
            action: action.into(),
            actor_id: id.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            time_nano: t,
        }
    }

    fn filter(pairs: &[(&str, &str)]) -> EventFilter {
        EventFilter::new(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn ring_keeps_the_newest_and_replays_a_time_window() {
        let bus = EventBus::new(3);
        for t in 1..=5 {
            bus.publish(ev(EventType::Container, "start", "a", &[], t * 10));
        }
        let (all, _) = bus.subscribe(Some(0), None);
        let times: Vec<i64> = all.iter().map(|e| e.time_nano).collect();
        assert_eq!(times, [30, 40, 50], "the two oldest dropped out");
        let (window, _) = bus.subscribe(Some(35), Some(45));
        assert_eq!(window.len(), 1);
        assert_eq!(window[0].time_nano, 40);
        let (until_only, _) = bus.subscribe(None, Some(40));
        assert_eq!(
            until_only.len(),
            2,
            "until alone replays from the oldest kept"
        );
        let (live_only, _) = bus.subscribe(None, None);
        assert!(live_only.is_empty(), "no since, no until: live events only");
    }

    #[tokio::test]
    async fn a_subscriber_gets_history_then_live_events_once_each() {
        let bus = EventBus::new(10);
        bus.publish(ev(EventType::Container, "create", "a", &[], 1));
        let (history, mut live) = bus.subscribe(Some(0), None);
        bus.publish(ev(EventType::Container, "start", "a", &[], 2));
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].action, "create");
        let next = live.recv().await.unwrap();
        assert_eq!(next.action, "start");
        assert!(live.try_recv().is_err(), "nothing else was published");
    }

    #[test]
    fn times_never_go_backwards() {
        let bus = EventBus::new(10);
        bus.publish(ev(EventType::Image, "pull", "x", &[], 100));
        bus.publish(ev(EventType::Image, "tag", "x", &[], 50));
        let (all, _) = bus.subscribe(Some(0), None);
        assert_eq!(all[1].time_nano, 100);
    }

    #[test]
    fn filters_follow_dockers_rules() {
        let c = ev(
            EventType::Container,
            "health_status: healthy",
            "0123456789abcdef",
            &[("name", "web"), ("image", "busybox"), ("tier", "front")],
            1,
        );
        assert!(filter(&[]).matches(&c));
        assert!(filter(&[("type", "container")]).matches(&c));
        assert!(!filter(&[("type", "image")]).matches(&c));
        assert!(filter(&[("type", "image"), ("type", "container")]).matches(&c));
        assert!(filter(&[("event", "health_status")]).matches(&c));
        assert!(filter(&[("event", "health_status: healthy")]).matches(&c));
        assert!(
            !filter(&[("event", "health")]).matches(&c),
            "not a bare prefix"
        );
        assert!(filter(&[("container", "web")]).matches(&c));
        assert!(filter(&[("container", "0123")]).matches(&c));
        assert!(!filter(&[("container", "db")]).matches(&c));
        assert!(filter(&[("image", "busybox:latest")]).matches(&c));
        assert!(filter(&[("image", "docker.io/library/busybox")]).matches(&c));
        assert!(!filter(&[("image", "alpine")]).matches(&c));
        assert!(filter(&[("label", "tier")]).matches(&c));
        assert!(filter(&[("label", "tier=front")]).matches(&c));
        assert!(!filter(&[("label", "tier=back")]).matches(&c));
        // Different keys must all match.
        assert!(!filter(&[("container", "web"), ("event", "die")]).matches(&c));
        assert!(!filter(&[("network", "web")]).matches(&c));

        let n = ev(EventType::Network, "create", "n1", &[("name", "n1")], 1);
        assert!(filter(&[("network", "n1")]).matches(&n));
        assert!(!filter(&[("container", "n1")]).matches(&n));
        let v = ev(EventType::Volume, "destroy", "data", &[], 1);
        assert!(filter(&[("volume", "data"), ("event", "destroy")]).matches(&v));
        let i = ev(
            EventType::Image,
            "tag",
            "sha256:ab",
            &[("name", "app:1")],
            1,
        );
        assert!(filter(&[("image", "app:1")]).matches(&i));
    }

    #[test]
    fn unknown_filters_are_refused() {
        assert_eq!(
            EventFilter::new([("colour", "red")]),
            Err(FilterError::UnknownKey("colour".into()))
        );
        assert_eq!(
            EventFilter::new([("type", "plugin")]),
            Err(FilterError::UnknownType("plugin".into()))
        );
    }

    #[test]
    fn wire_form_has_seconds_and_nanoseconds() {
        let e = ev(
            EventType::Volume,
            "create",
            "v",
            &[("driver", "local")],
            1_500_000_000_123,
        );
        let w = e.to_wire();
        assert_eq!(w.r#type, "volume");
        assert_eq!(w.scope, "local");
        assert_eq!(w.time, 1500);
        assert_eq!(w.time_nano, 1_500_000_000_123);
        assert_eq!(
            w.attributes.get("driver").map(String::as_str),
            Some("local")
        );
    }
}
