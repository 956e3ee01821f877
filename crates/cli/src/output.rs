//! Rendering for people (tables like `docker ps`) and for programs (JSON, keys sorted).

use std::io::Write;

use api::v1;
use serde_json::{Value, json};

/// Renders rows under headers as aligned columns, the way the docker CLI does (Go's
/// text/tabwriter with minimum width 10 and padding 3, no trailing spaces).
pub fn table<S: AsRef<str>>(headers: &[&str], rows: &[Vec<S>]) -> String {
    // Go counts the padding inside the minimum width, this crate adds it on top: 7 + 3
    // gives Go's columns of at least 10.
    let mut tw = tabwriter::TabWriter::new(Vec::new()).minwidth(7).padding(3);
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.map(|c| c.trim_end_matches('\n')).collect();
        // Cells never hold tabs or newlines: they would break the columns.
        let cells: Vec<String> = cells.iter().map(|c| c.replace(['\t', '\n'], " ")).collect();
        // Writing into a Vec cannot fail.
        let _ = writeln!(tw, "{}", cells.join("\t"));
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(AsRef::as_ref));
    }
    let bytes = tw.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a prune removed, one ID a line, and the space it gave back (Apple's wording for
/// nothing).
pub fn pruned(p: &v1::PruneResponse) -> String {
    let mut s: String = p.deleted.iter().map(|id| format!("{id}\n")).collect();
    if p.reclaimed_bytes == 0 {
        s.push_str("Reclaimed Zero KB in disk space\n");
    } else {
        s.push_str(&format!(
            "Reclaimed {} in disk space\n",
            spec::human_bytes(p.reclaimed_bytes)
        ));
    }
    s
}

/// Milliseconds since the epoch as ISO 8601 UTC (`2026-11-23T16:31:36Z`); empty for 0.
pub fn iso8601(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    spec::format_time(ms.saturating_mul(1_000_000), true)
}

/// An RFC 3339 UTC time with nanoseconds, as Docker prints event times.
pub fn rfc3339_nanos(nanos: i64) -> String {
    spec::format_time(nanos, false)
}

/// One event as `docker events` prints it: time, type, action, actor, then the attributes
/// sorted by key.
pub fn event_line(e: &v1::Event) -> String {
    let mut attrs: Vec<(&String, &String)> = e.attributes.iter().collect();
    attrs.sort();
    let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut line = format!(
        "{} {} {} {}",
        rfc3339_nanos(e.time_nano),
        e.r#type,
        e.action,
        e.actor_id
    );
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

/// One event in the Docker Engine API's JSON shape.
pub fn event_json(e: &v1::Event) -> Value {
    let attributes: serde_json::Map<String, Value> = e
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "Type": e.r#type,
        "Action": e.action,
        "Actor": {"ID": e.actor_id, "Attributes": attributes},
        "scope": e.scope,
        "time": e.time,
        "timeNano": e.time_nano,
    })
}

/// Compact JSON (keys are sorted: serde_json's map is ordered).
pub fn json_line(value: &Value) -> String {
    value.to_string()
}

fn labels(labels: &[v1::Label]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|l| (l.key.clone(), Value::String(l.value.clone())))
            .collect(),
    )
}

fn platform_parts(platform: &str) -> (String, String) {
    let mut parts = platform.split('/');
    let os = parts.next().unwrap_or_default().to_owned();
    let arch = parts.collect::<Vec<_>>().join("/");
    (os, arch)
}

/// The first IPv4 address of a container, without its prefix length.
fn first_ip(c: &v1::ContainerInfo) -> String {
    c.networks
        .first()
        .map(|n| {
            n.ipv4_address
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

fn cpus_text(millis: u32) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{}.{:03}", millis / 1000, millis % 1000)
            .trim_end_matches('0')
            .to_owned()
    }
}

/// An ID as tables show it: a 64-hex-digit ID shortened to 12 digits, as Docker does;
/// anything else (a name used as the ID) as it is.
pub fn short_id(id: &str) -> String {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id[..12].to_owned()
    } else {
        id.to_owned()
    }
}

/// How tables name a container: its name when it has one, else its short ID.
pub fn display_id(c: &v1::ContainerInfo) -> String {
    if c.name.is_empty() {
        short_id(&c.id)
    } else {
        c.name.clone()
    }
}

/// Column headers of `container list` (Apple's).
pub const CONTAINER_HEADERS: [&str; 9] = [
    "ID", "IMAGE", "OS", "ARCH", "STATE", "IP", "CPUS", "MEMORY", "STARTED",
];

/// One `container list` row.
pub fn container_row(c: &v1::ContainerInfo) -> Vec<String> {
    let (os, arch) = platform_parts(&c.platform);
    let resources = c.resources.unwrap_or_default();
    let image = c
        .config
        .as_ref()
        .map(|k| k.image.clone())
        .unwrap_or_default();
    vec![
        display_id(c),
        image,
        os,
        arch,
        state_text(c),
        first_ip(c),
        cpus_text(resources.cpus_millis),
        format!("{} MB", resources.memory_bytes >> 20),
        iso8601(c.started_ms),
    ]
}

/// The state as `list` shows it: with the health of a running container that has a
/// healthcheck, as `docker ps` does (`running (healthy)`, `running (health: starting)`).
pub fn state_text(c: &v1::ContainerInfo) -> String {
    let state = state_word(c);
    match &c.health {
        Some(h) if c.state_enum() == v1::ContainerState::Running => match h.status.as_str() {
            "starting" => format!("{state} (health: starting)"),
            other => format!("{state} ({other})"),
        },
        _ => state.to_owned(),
    }
}

/// The state's one word: `paused` for a running container whose processes are frozen.
pub fn state_word(c: &v1::ContainerInfo) -> &'static str {
    if c.paused && c.state_enum() == v1::ContainerState::Running {
        "paused"
    } else {
        c.state_enum().user_name()
    }
}

fn health_json(c: &v1::ContainerInfo) -> Value {
    match &c.health {
        None => Value::Null,
        Some(h) => json!({
            "status": h.status,
            "failingStreak": h.failing_streak,
            "log": h.log.iter().map(|p| json!({
                "start": iso8601_ms(p.start_ms),
                "end": iso8601_ms(p.end_ms),
                "exitCode": p.exit_code,
                "output": p.output,
            })).collect::<Vec<_>>(),
        }),
    }
}

fn iso8601_ms(ms: i64) -> String {
    rfc3339_nanos(ms.saturating_mul(1_000_000))
}

fn mount_json(m: &v1::Mount) -> Value {
    let (kind, source, extra) = match &m.kind {
        Some(v1::mount::Kind::Bind(b)) => ("bind", b.source.clone(), json!({})),
        Some(v1::mount::Kind::Volume(v)) => ("volume", v.name.clone(), json!({})),
        Some(v1::mount::Kind::Tmpfs(t)) => (
            "tmpfs",
            String::new(),
            json!({"sizeBytes": t.size_bytes, "mode": format!("{:o}", t.mode), "options": t.options}),
        ),
        None => ("unknown", String::new(), json!({})),
    };
    json!({"type": kind, "source": source, "destination": m.target, "readonly": m.readonly, "options": extra})
}

fn port_json(p: &v1::PortMapping) -> Value {
    json!({
        "hostAddress": p.host_ip,
        "hostPort": p.host_port,
        "containerPort": p.container_port,
        "count": p.count,
        "proto": if p.protocol == v1::Protocol::Udp as i32 { "udp" } else { "tcp" },
    })
}

/// A container as JSON: `{id, configuration, status}` like Apple's.
pub fn container_json(c: &v1::ContainerInfo) -> Value {
    let config = c.config.clone().unwrap_or_default();
    let process = config.process.clone().unwrap_or_default();
    let resources = c.resources.unwrap_or_default();
    let dns = config.dns.clone().unwrap_or_default();
    let networks: Vec<Value> = c
        .networks
        .iter()
        .map(|n| {
            json!({
                "network": n.network,
                "hostname": n.hostname,
                "ipv4Address": n.ipv4_address,
                "ipv4Gateway": n.ipv4_gateway,
                "ipv6Address": n.ipv6_address,
                "macAddress": n.mac_address,
                "mtu": n.mtu,
            })
        })
        .collect();
    let rlimits: Vec<Value> = process
        .ulimits
        .iter()
        .map(|u| json!({"limit": format!("RLIMIT_{}", u.name.to_ascii_uppercase()), "soft": u.soft, "hard": u.hard}))
        .collect();
    json!({
        "id": c.id,
        "name": c.name,
        "configuration": {
            "id": c.id,
            "image": {"reference": config.image, "digest": c.image_digest},
            "platform": c.platform,
            "hostname": if config.hostname.is_empty() { c.id.clone() } else { config.hostname.clone() },
            "extraHosts": config.extra_hosts,
            "stopSignal": config.stop_signal,
            "stopTimeoutSeconds": config.stop_timeout_seconds,
            "labels": labels(&config.labels),
            "mounts": config.mounts.iter().map(mount_json).collect::<Vec<_>>(),
            "publishedPorts": config.ports.iter().map(port_json).collect::<Vec<_>>(),
            "networks": config.networks.iter().map(|n| json!({"network": n.name, "macAddress": n.mac_address, "mtu": n.mtu})).collect::<Vec<_>>(),
            "dns": {"disabled": dns.disabled, "nameservers": dns.nameservers, "domain": dns.domain, "searchDomains": dns.search, "options": dns.options},
            "initProcess": {
                "executable": c.args.first().cloned().unwrap_or_default(),
                "arguments": c.args.iter().skip(1).cloned().collect::<Vec<_>>(),
                "environment": process.env,
                "workingDirectory": process.working_dir,
                "user": process.user,
                "terminal": process.tty,
                "rlimits": rlimits,
            },
            "resources": {"cpus": cpus_text(resources.cpus_millis), "memoryInBytes": resources.memory_bytes},
            "capAdd": process.cap_add,
            "capDrop": process.cap_drop,
            "readOnly": config.read_only,
            "autoRemove": config.auto_remove,
            "kernelArgs": config.kernel_args,
            "healthcheck": c.healthcheck.as_ref().map_or(Value::Null, |h| json!({
                "test": h.test,
                "intervalMs": h.interval_ms,
                "timeoutMs": h.timeout_ms,
                "startPeriodMs": h.start_period_ms,
                "retries": h.retries,
            })),
        },
        "status": {
            "state": state_word(c),
            "paused": c.paused,
            "networks": networks,
            "createdDate": iso8601(c.created_ms),
            "startedDate": iso8601(c.started_ms),
            "finishedDate": iso8601(c.finished_ms),
            "exitCode": c.exit_code,
            "error": c.error,
            "health": health_json(c),
        },
    })
}

/// `sha256:0123456789abcdef...` as its first 12 hex digits.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// Column headers of `container image list`.
pub const IMAGE_HEADERS: [&str; 3] = ["NAME", "TAG", "DIGEST"];

/// Column headers of `container image list -v`.
pub const IMAGE_VERBOSE_HEADERS: [&str; 9] = [
    "NAME",
    "TAG",
    "INDEX DIGEST",
    "OS",
    "ARCH",
    "VARIANT",
    "FULL SIZE",
    "CREATED",
    "MANIFEST DIGEST",
];

/// What names an image on the command line: its reference, or the digest of an image
/// without a name.
pub fn image_handle(i: &v1::ImageInfo) -> String {
    if i.reference.is_empty() {
        i.digest.clone()
    } else {
        i.reference.clone()
    }
}

/// Docker's `<none>` for the name and tag of an image without a name.
fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_owned()
    }
}

/// The one line `image load` prints for an image it stored without a name (Docker prints
/// "Loaded image ID: sha256:...").
pub fn untagged_load_line(u: &v1::UntaggedImage) -> String {
    let why = if u.archive_tag.is_empty() {
        "the archive gives it no name".to_owned()
    } else {
        format!(
            "the archive tags it {:?} but names no repository",
            u.archive_tag
        )
    };
    format!(
        "Loaded image ID: {} (untagged: {why}; use it by digest or name it with `container image tag`)",
        u.digest
    )
}

/// One `image list` row.
pub fn image_row(i: &v1::ImageInfo) -> Vec<String> {
    vec![or_none(&i.name), tag_cell(i), short_digest(&i.digest)]
}

/// The TAG cell: the tag, `<none>` without a name (an image by digest only keeps a blank).
fn tag_cell(i: &v1::ImageInfo) -> String {
    if i.reference.is_empty() {
        "<none>".into()
    } else {
        i.tag.clone()
    }
}

/// The `image list -v` rows of one image: one per platform.
pub fn image_verbose_rows(i: &v1::ImageInfo) -> Vec<Vec<String>> {
    i.variants
        .iter()
        .map(|v| {
            let mut parts = v.platform.split('/');
            let os = parts.next().unwrap_or_default().to_owned();
            let arch = parts.next().unwrap_or_default().to_owned();
            let variant = parts.next().unwrap_or_default().to_owned();
            vec![
                or_none(&i.name),
                tag_cell(i),
                short_digest(&i.digest),
                os,
                arch,
                variant,
                spec::human_bytes(v.size),
                iso8601(v.created_ms),
                short_digest(&v.manifest_digest),
            ]
        })
        .collect()
}

/// An image as JSON.
pub fn image_json(i: &v1::ImageInfo) -> Value {
    let variants: Vec<Value> = i
        .variants
        .iter()
        .map(|v| {
            let config = serde_json::from_slice::<Value>(&v.config_json).unwrap_or(Value::Null);
            json!({
                "platform": v.platform,
                "manifestDigest": v.manifest_digest,
                "size": v.size,
                "created": iso8601(v.created_ms),
                "unpacked": v.unpacked,
                "config": config,
            })
        })
        .collect();
    json!({
        "reference": i.reference,
        "name": i.name,
        "tag": i.tag,
        "digest": i.digest,
        "mediaType": i.media_type,
        "variants": variants,
    })
}

/// Column headers of `container stats`.
pub const STATS_HEADERS: [&str; 6] = [
    "Container ID",
    "Cpu %",
    "Memory Usage",
    "Net Rx/Tx",
    "Block I/O",
    "Pids",
];

/// CPU use between two samples, in percent of one CPU.
pub fn cpu_percent(
    previous: Option<&v1::ContainerStats>,
    current: &v1::ContainerStats,
) -> Option<f64> {
    let previous = previous?;
    let elapsed_ms = current.timestamp_ms.checked_sub(previous.timestamp_ms)?;
    if elapsed_ms <= 0 {
        return None;
    }
    let used = usage(current)
        .cpu_usage_usec
        .checked_sub(usage(previous).cpu_usage_usec)? as f64;
    Some(used / (elapsed_ms as f64 * 1000.0) * 100.0)
}

/// One `stats` row; the CPU column is `--` until two samples exist.
pub fn stats_row(previous: Option<&v1::ContainerStats>, s: &v1::ContainerStats) -> Vec<String> {
    let cpu = cpu_percent(previous, s).map_or_else(|| "--".to_owned(), |p| format!("{p:.2}%"));
    let u = usage(s);
    vec![
        short_id(&s.id),
        cpu,
        format!(
            "{} / {}",
            spec::human_bytes(u.memory_usage_bytes),
            spec::human_bytes(u.memory_limit_bytes)
        ),
        format!(
            "{} / {}",
            spec::human_bytes(u.network_rx_bytes()),
            spec::human_bytes(u.network_tx_bytes())
        ),
        format!(
            "{} / {}",
            spec::human_bytes(u.block_read_bytes),
            spec::human_bytes(u.block_write_bytes)
        ),
        u.pids.to_string(),
    ]
}

/// A sample's counters; all zero when the daemon sent none.
fn usage(s: &v1::ContainerStats) -> &wire::v1::ContainerStats {
    static NONE: wire::v1::ContainerStats = wire::v1::ContainerStats {
        cpu_usage_usec: 0,
        memory_usage_bytes: 0,
        memory_limit_bytes: 0,
        pids: 0,
        block_read_bytes: 0,
        block_write_bytes: 0,
        networks: Vec::new(),
        online_cpus: 0,
        guest_memory_bytes: 0,
    };
    s.usage.as_ref().unwrap_or(&NONE)
}

/// A stats sample as JSON (Apple's field names).
pub fn stats_json(s: &v1::ContainerStats) -> Value {
    let u = usage(s);
    json!({
        "id": s.id,
        "memoryUsageBytes": u.memory_usage_bytes,
        "memoryLimitBytes": u.memory_limit_bytes,
        "cpuUsageUsec": u.cpu_usage_usec,
        "networkRxBytes": u.network_rx_bytes(),
        "networkTxBytes": u.network_tx_bytes(),
        "blockReadBytes": u.block_read_bytes,
        "blockWriteBytes": u.block_write_bytes,
        "numProcesses": u.pids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, state: v1::ContainerState, ip: &str) -> v1::ContainerInfo {
        v1::ContainerInfo {
            id: id.into(),
            config: Some(v1::ContainerConfig {
                image: "docker.io/library/alpine:3.20".into(),
                ..Default::default()
            }),
            state: state as i32,
            platform: "linux/arm64".into(),
            exit_code: -1,
            created_ms: 1_763_900_000_000,
            started_ms: if state == v1::ContainerState::Running {
                1_763_915_496_000
            } else {
                0
            },
            networks: if ip.is_empty() {
                vec![]
            } else {
                vec![v1::NetworkAttachment {
                    network: "default".into(),
                    ipv4_address: ip.into(),
                    ..Default::default()
                }]
            },
            resources: Some(v1::Resources {
                cpus_millis: 4000,
                memory_bytes: 1 << 30,
                shm_size_bytes: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn prune_report_names_each_removed_id_then_the_space() {
        let none = v1::PruneResponse::default();
        assert_eq!(pruned(&none), "Reclaimed Zero KB in disk space\n");
        let some = v1::PruneResponse {
            deleted: vec!["a1".into(), "b2".into()],
            reclaimed_bytes: 2048,
        };
        assert_eq!(
            pruned(&some),
            format!(
                "a1\nb2\nReclaimed {} in disk space\n",
                spec::human_bytes(2048)
            )
        );
    }

    #[test]
    fn container_table() {
        let rows = vec![
            container_row(&container(
                "web",
                v1::ContainerState::Running,
                "192.168.64.3/24",
            )),
            container_row(&container(
                "4c0e2f8a-7b1d-4f7e-9a57-2d1f0c3b9e11",
                v1::ContainerState::Stopped,
                "",
            )),
        ];
        insta::assert_snapshot!(table(&CONTAINER_HEADERS, &rows));
    }

    #[test]
    fn image_tables() {
        let image = v1::ImageInfo {
            reference: "docker.io/library/alpine:3.20".into(),
            name: "docker.io/library/alpine".into(),
            tag: "3.20".into(),
            digest: "sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d"
                .into(),
            variants: vec![v1::ImageVariant {
                platform: "linux/arm64/v8".into(),
                manifest_digest:
                    "sha256:9cee2b382fe2412cd77d5d437d15a93da8de373813621f2e4d04b3f3bd4d2cb4".into(),
                size: 4_090_000,
                created_ms: 1_720_000_000_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            table(&IMAGE_HEADERS, &[image_row(&image)]),
            "NAME                       TAG       DIGEST\n\
             docker.io/library/alpine   3.20      beefdbd8a1da\n"
        );
        assert_eq!(
            table(&IMAGE_VERBOSE_HEADERS, &image_verbose_rows(&image)),
            "NAME                       TAG       INDEX DIGEST   OS        ARCH      VARIANT   FULL SIZE   CREATED                MANIFEST DIGEST\n\
             docker.io/library/alpine   3.20      beefdbd8a1da   linux     arm64     v8        3.9 MiB     2024-07-03T09:46:40Z   9cee2b382fe2\n"
        );
    }

    #[test]
    fn images_without_a_name_show_none_and_their_digest() {
        let image = v1::ImageInfo {
            digest: "sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d"
                .into(),
            ..Default::default()
        };
        assert_eq!(
            table(&IMAGE_HEADERS, &[image_row(&image)]),
            "NAME      TAG       DIGEST\n\
             <none>    <none>    beefdbd8a1da\n"
        );
        assert_eq!(image_handle(&image), image.digest);
        assert_eq!(
            untagged_load_line(&v1::UntaggedImage {
                digest: "sha256:beef".into(),
                archive_tag: "latest".into(),
            }),
            "Loaded image ID: sha256:beef (untagged: the archive tags it \"latest\" but names no repository; use it by digest or name it with `container image tag`)"
        );
    }

    #[test]
    fn tables_name_containers_by_name_or_short_id() {
        let mut c = container(
            "b56c624c01f6b042556c5a0e9a38e6a4ee3bca06b8a4b313216525aff2d780b9",
            v1::ContainerState::Running,
            "",
        );
        assert_eq!(display_id(&c), "b56c624c01f6");
        c.name = "eager_turing".into();
        assert_eq!(display_id(&c), "eager_turing");
        assert_eq!(short_id("web"), "web");
    }

    #[test]
    fn dates_are_iso8601_utc() {
        assert_eq!(iso8601(0), "");
        assert_eq!(iso8601(1_000), "1970-01-01T00:00:01Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_763_915_496_789), "2025-11-23T16:31:36Z");
    }

    #[test]
    fn events_print_like_docker() {
        let e = v1::Event {
            r#type: "container".into(),
            action: "die".into(),
            actor_id: "abc".into(),
            attributes: [("name", "web"), ("exitCode", "3"), ("image", "busybox")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            scope: "local".into(),
            time: 1_764_867_600,
            time_nano: 1_764_867_600_000_000_042,
        };
        assert_eq!(
            event_line(&e),
            "2025-12-04T17:00:00.000000042Z container die abc (exitCode=3, image=busybox, name=web)"
        );
        let json = json_line(&event_json(&e));
        assert!(
            json.contains(r#""Actor":{"Attributes":{"exitCode":"3""#),
            "{json}"
        );
        assert!(json.contains(r#""timeNano":1764867600000000042"#), "{json}");
    }

    #[test]
    fn list_shows_the_health_of_running_containers() {
        let mut c = container("a", v1::ContainerState::Running, "");
        assert_eq!(state_text(&c), "running");
        for (status, shown) in [
            ("starting", "running (health: starting)"),
            ("healthy", "running (healthy)"),
            ("unhealthy", "running (unhealthy)"),
        ] {
            c.health = Some(v1::ContainerHealth {
                status: status.into(),
                ..Default::default()
            });
            assert_eq!(state_text(&c), shown);
        }
        c.state = v1::ContainerState::Stopped as i32;
        assert_eq!(state_text(&c), "stopped");
    }

    #[test]
    fn json_has_sorted_keys_and_apple_shape() {
        let text = json_line(&container_json(&container(
            "web",
            v1::ContainerState::Running,
            "192.168.64.3/24",
        )));
        assert!(
            text.starts_with(r#"{"configuration":{"autoRemove":false,"#),
            "{text}"
        );
        assert!(
            text.contains(r#""status":{"createdDate":"2025-11-23T12:13:20Z","#),
            "{text}"
        );
        assert!(text.contains(r#""state":"running""#), "{text}");
    }

    #[test]
    fn stats_need_two_samples_for_cpu() {
        let usage = wire::v1::ContainerStats {
            cpu_usage_usec: 1_000_000,
            memory_usage_bytes: 50 << 20,
            memory_limit_bytes: 1 << 30,
            pids: 3,
            networks: vec![
                wire::v1::NetworkStats {
                    link: "eth0".into(),
                    rx_bytes: 1 << 20,
                    tx_bytes: 2048,
                    ..Default::default()
                },
                wire::v1::NetworkStats {
                    link: "eth1".into(),
                    rx_bytes: 1 << 20,
                    tx_bytes: 2048,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let a = v1::ContainerStats {
            id: "web".into(),
            timestamp_ms: 10_000,
            usage: Some(usage.clone()),
        };
        let b = v1::ContainerStats {
            timestamp_ms: 12_000,
            usage: Some(wire::v1::ContainerStats {
                cpu_usage_usec: 2_000_000,
                ..usage
            }),
            ..a.clone()
        };
        assert_eq!(stats_row(None, &a)[1], "--");
        assert_eq!(stats_row(Some(&a), &b)[1], "50.00%");
        assert_eq!(stats_row(Some(&a), &b)[2], "50.0 MiB / 1.0 GiB");
        // Every link counts.
        assert_eq!(stats_row(Some(&a), &b)[3], "2.0 MiB / 4.0 KiB");
        assert_eq!(stats_row(Some(&a), &b)[5], "3");
        let json = stats_json(&b);
        assert_eq!(json["networkRxBytes"], 2 << 20);
        assert_eq!(json["cpuUsageUsec"], 2_000_000);
    }
}
