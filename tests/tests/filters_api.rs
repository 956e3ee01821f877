//! End to end: container and volume filters live in one place, the daemon. `container ls
//! --filter` and the Docker API's `GET /containers/json?filters=` (likewise `volume ls` and
//! `GET /volumes`) keep the same items and refuse the same mistakes in the same words, with a
//! real daemon whose containers run in real VMs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use container_tests::daemon::Daemon;

/// `GET path` on the daemon's Docker socket: the status code and the body.
fn docker_get(d: &Daemon, path: &str) -> (u16, String) {
    let mut conn = UnixStream::connect(d.root.join("docker.sock")).expect("docker.sock");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("the reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// Docker's `filters` query value for `key=value` flags (the list form), percent-encoded.
fn filters_query(flags: &[&str]) -> String {
    let mut map = serde_json::Map::new();
    for flag in flags {
        let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
        map.entry(k)
            .or_insert_with(|| serde_json::Value::Array(vec![]))
            .as_array_mut()
            .unwrap()
            .push(v.into());
    }
    let json = serde_json::Value::Object(map).to_string();
    json.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The names `container ls -a` keeps with `flags`.
fn cli_names(d: &Daemon, flags: &[&str]) -> Vec<String> {
    let mut args = vec!["ls", "-a", "--format", "{{.Names}}"];
    for f in flags {
        args.extend(["--filter", f]);
    }
    sorted(d.ok(&args).lines().map(str::to_owned).collect())
}

/// The names `GET /containers/json?all=1` keeps with the same filters.
fn api_names(d: &Daemon, flags: &[&str]) -> Vec<String> {
    let (status, body) = docker_get(
        d,
        &format!("/containers/json?all=1&filters={}", filters_query(flags)),
    );
    assert_eq!(status, 200, "{body}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).expect("a JSON list");
    sorted(
        list.iter()
            .map(|c| {
                c["Names"][0]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .to_owned()
            })
            .collect(),
    )
}

#[test]
fn cli_and_docker_api_filter_containers_and_volumes_alike() {
    let Some(d) = Daemon::start("filters") else {
        return;
    };
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "tier=front",
        "busybox",
        "sleep",
        "600",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "cold",
        "--label",
        "tier=back",
        "busybox",
        "sleep",
        "600",
    ]);
    d.ok(&["pause", "cold"]);
    let job = d.run(&[
        "run",
        "--name",
        "job",
        "--label",
        "tier=back",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(job.status.code(), Some(3), "{job:?}");
    d.ok(&["create", "--name", "fresh", "busybox", "true"]);

    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["cold", "fresh", "job", "web"]),
        (&["label=tier=back"], &["cold", "job"]),
        (&["label=tier"], &["cold", "job", "web"]),
        (&["status=running"], &["web"]),
        (&["status=paused"], &["cold"]),
        (&["status=exited", "status=created"], &["fresh", "job"]),
        (&["exited=3"], &["job"]),
        (&["name=e", "label=tier=back"], &[]),
        (&["name=o"], &["cold", "job"]),
        (&["ancestor=busybox"], &["cold", "fresh", "job", "web"]),
        (&["health=none", "status=running"], &["web"]),
    ];
    for (flags, want) in cases {
        let cli = cli_names(&d, flags);
        assert_eq!(cli, *want, "container ls with {flags:?}");
        assert_eq!(
            api_names(&d, flags),
            cli,
            "GET /containers/json with {flags:?}"
        );
    }
    // A status filter sees stopped containers without all, on both.
    assert_eq!(
        d.ok(&["ls", "--filter", "exited=3", "--format", "{{.Names}}"]),
        "job\n"
    );
    let (_, body) = docker_get(
        &d,
        &format!("/containers/json?filters={}", filters_query(&["exited=3"])),
    );
    assert!(body.contains("\"/job\""), "{body}");

    // The same mistakes, the same one line: exit 125 and a 400 whose message is that line.
    for bad in ["colour=red", "status=sleeping", "exited=x"] {
        let cli = d.fails(&["ls", "--filter", bad], 125);
        let (status, body) = docker_get(
            &d,
            &format!("/containers/json?filters={}", filters_query(&[bad])),
        );
        assert_eq!(status, 400, "{body}");
        let message: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        let message = message["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("invalid filter '"), "{message}");
        assert_eq!(cli, format!("container: {message}"), "{bad}");
    }

    // Volumes: the same through both, the daemon deciding what is dangling.
    d.ok(&["volume", "create", "--label", "keep=yes", "kept"]);
    d.ok(&["volume", "create", "loose"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "-v",
        "kept:/data",
        "busybox",
        "sleep",
        "600",
    ]);
    for (flags, want) in [
        (&["dangling=true"][..], &["loose"][..]),
        (&["dangling=false"][..], &["kept"][..]),
        (&["label=keep=yes"][..], &["kept"][..]),
        (&["name=oo", "driver=local"][..], &["loose"][..]),
    ] {
        let mut args = vec!["volume", "ls", "--format", "{{.Name}}"];
        for f in flags {
            args.extend(["--filter", f]);
        }
        let cli = sorted(d.ok(&args).lines().map(str::to_owned).collect());
        assert_eq!(cli, want, "volume ls with {flags:?}");
        let (status, body) = docker_get(&d, &format!("/volumes?filters={}", filters_query(flags)));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let api = sorted(
            v["Volumes"]
                .as_array()
                .expect("Volumes")
                .iter()
                .map(|x| x["Name"].as_str().unwrap_or("").to_owned())
                .collect(),
        );
        assert_eq!(api, cli, "GET /volumes with {flags:?}");
    }
    let cli = d.fails(&["volume", "ls", "--filter", "dangling=maybe"], 125);
    let (status, body) = docker_get(
        &d,
        &format!("/volumes?filters={}", filters_query(&["dangling=maybe"])),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("invalid filter 'dangling=maybe': expected true or false"),
        "{body}"
    );
    assert_eq!(
        cli,
        "container: invalid filter 'dangling=maybe': expected true or false"
    );

    d.ok(&["stop", "-t", "1", "web", "cold", "user"]);
}
