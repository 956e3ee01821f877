//! End to end, networking: a real daemon in bridge mode, with real VMs on real bridges, TAP
//! devices and nftables rules. Everything runs inside network namespaces each test creates
//! and removes: the daemon (and the runtimes and VMMs it spawns) in one, an "outside" host in
//! another when a test needs one. The CLI stays in the host's namespace: it only talks to the
//! daemon's Unix socket. Traffic goes to loopback and container addresses inside those
//! namespaces only.

use container_tests::daemon::Daemon;
use net::TestNetns;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A daemon in bridge mode inside a namespace of its own.
struct NetDaemon {
    // Dropped first: the daemon removes its containers and networks, then the namespace goes.
    d: Daemon,
    ns: TestNetns,
}

impl std::ops::Deref for NetDaemon {
    type Target = Daemon;

    fn deref(&self) -> &Daemon {
        &self.d
    }
}

impl NetDaemon {
    fn start(test: &str) -> Option<NetDaemon> {
        let ns = TestNetns::new_or_skip(test, test)?;
        let d = Daemon::start_in(test, Some(ns.name()))?;
        Some(NetDaemon { d, ns })
    }

    /// What a command prints inside the daemon's namespace.
    fn in_ns(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .ns
            .command(program)
            .args(args)
            .output()
            .expect("runs in the namespace");
        assert!(out.status.success(), "{program} {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Our devices in the namespace whose names start with `prefix` (`ctap-`, `cbr-`).
    fn devices(&self, prefix: &str) -> Vec<String> {
        self.in_ns("ip", &["-br", "link"])
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    /// Our nftables tables in the namespace.
    fn tables(&self) -> Vec<String> {
        self.in_ns("nft", &["list", "tables"])
            .lines()
            .filter(|l| l.contains("container-"))
            .map(str::to_owned)
            .collect()
    }

    /// UDP listeners on port 53 in the namespace (the networks' DNS servers).
    fn dns_listeners(&self) -> usize {
        self.in_ns("ss", &["-H", "-lun"])
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|a| a.ends_with(":53"))
            })
            .count()
    }

    /// The IPv4 address of a running container on its first network.
    fn address(&self, name: &str) -> Ipv4Addr {
        let json: serde_json::Value =
            serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect JSON");
        let cidr = json[0]["status"]["networks"][0]["ipv4Address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in {json}"));
        cidr.split('/').next().unwrap().parse().expect("an address")
    }
}

/// `GET /` over plain HTTP/1.0; the body, or the error.
fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .ok_or_else(|| format!("no HTTP reply: {reply:?}"))
}

/// Retries `f` until it succeeds or 60 s pass (the container may still be booting).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// A shell command serving `/www/index.html` = `body` on ports 80 (foreground), 81 and 82.
fn web(body: &str) -> String {
    format!(
        "mkdir -p /www && echo {body} > /www/index.html && httpd -p 81 -h /www && httpd -p 82 -h /www && exec httpd -f -p 80 -h /www"
    )
}

/// A static UDP echo server (busybox has none), built once per test run.
fn udp_echo_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnet-udp-echo-{}", std::process::id()));
    let bin = dir.join("udp_echo");
    if !bin.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let src = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
        )
        .join("fixtures/udp_echo.rs");
        let out = Command::new("rustc")
            .args(["-O", "--target", "x86_64-unknown-linux-gnu"])
            .args(["-C", "target-feature=+crt-static", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("rustc runs");
        assert!(
            out.status.success(),
            "building udp_echo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

#[test]
fn published_ports_and_container_names() {
    let Some(d) = NetDaemon::start("ports") else {
        return;
    };
    let list = d.ok(&["network", "ls"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("default") && l.contains("bridge") && l.contains("/24")),
        "{list}"
    );

    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1:18080:80",
        "-p",
        "127.0.0.1:18081-18082:81-82",
        "busybox",
        "sh",
        "-c",
        &web("web"),
    ]);
    for port in [18080, 18081, 18082] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let body =
            d.ns.run(move || eventually("published port", || http_get(addr)))
                .unwrap();
        assert_eq!(body.trim(), "web", "port {port}");
    }
    // The host reaches the container's own address on the bridge.
    let ip = d.address("web");
    let body =
        d.ns.run(move || http_get(SocketAddr::from((ip, 80))))
            .unwrap();
    assert_eq!(body.unwrap().trim(), "web");
    let ls = d.ok(&["ls"]);
    assert!(ls.contains(&ip.to_string()), "{ls}");

    // Another container finds it by name through the network's DNS server.
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "timeout",
        "10",
        "wget",
        "-q",
        "-O",
        "-",
        "http://web/",
    ]);
    assert_eq!(out.trim(), "web");

    // UDP publish: a datagram comes back.
    let dir = udp_echo_dir();
    let mount = format!("{}:/t:ro", dir.display());
    d.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "-p",
        "127.0.0.1:15353:7/udp",
        "-v",
        &mount,
        "busybox",
        "/t/udp_echo",
        "7",
    ]);
    let reply =
        d.ns.run(|| {
            eventually("UDP echo", || {
                let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(1)))
                    .map_err(|e| e.to_string())?;
                s.send_to(b"ping", "127.0.0.1:15353")
                    .map_err(|e| e.to_string())?;
                let mut buf = [0u8; 16];
                let n = s.recv(&mut buf).map_err(|e| e.to_string())?;
                Ok(buf[..n].to_vec())
            })
        })
        .unwrap();
    assert_eq!(reply, b"ping");

    // A port already taken: the container stays stopped, with a clear error.
    let err = d.fails(
        &[
            "run",
            "-d",
            "--name",
            "clash",
            "-p",
            "127.0.0.1:18080:80",
            "busybox",
            "sleep",
            "60",
        ],
        125,
    );
    assert!(err.contains("18080"), "{err}");
    let ls = d.ok(&["ls", "-a"]);
    let clash = ls.lines().find(|l| l.contains("clash")).unwrap_or_default();
    assert!(!clash.contains("running"), "{ls}");
    // Nothing half-made: only the two running containers hold TAP devices.
    assert_eq!(d.devices("ctap-").len(), 2, "{:?}", d.devices("ctap-"));
    // A malformed -p creates nothing at all.
    let before = d.ok(&["ls", "-a", "-q"]);
    let err = d.fails(&["run", "-d", "-p", "99999:80", "busybox", "true"], 125);
    assert!(err.contains("99999"), "{err}");
    assert_eq!(d.ok(&["ls", "-a", "-q"]), before);
}

#[test]
fn user_networks_isolate_and_resolve() {
    let Some(d) = NetDaemon::start("nets") else {
        return;
    };
    d.ok(&["network", "create", "front"]);
    d.ok(&["network", "create", "--subnet", "10.89.0.0/24", "back"]);
    let err = d.fails(
        &["network", "create", "--subnet", "10.89.0.128/25", "x"],
        125,
    );
    assert!(err.contains("overlaps"), "{err}");
    let err = d.fails(&["network", "create", "a/b"], 125);
    assert!(err.contains("invalid network name"), "{err}");

    d.ok(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "front",
        "busybox",
        "sh",
        "-c",
        &web("api"),
    ]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "timeout",
        "10",
        "wget",
        "-q",
        "-O",
        "-",
        "http://api/",
    ]);
    assert_eq!(out.trim(), "api");
    let api = d.address("api");
    // By address too, from the same network.
    let url = format!("http://{api}/");
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "timeout",
        "10",
        "wget",
        "-q",
        "-O",
        "-",
        &url,
    ]);
    assert_eq!(out.trim(), "api");

    // From another network: neither the name nor the address is reachable.
    let out = d.run(&[
        "run", "--rm", "--network", "back", "busybox", "sh", "-c",
        &format!("ip -4 -o addr show eth0; timeout 3 wget -q -O - http://api/ || echo no-name; timeout 3 wget -q -O - http://{api}/ || echo no-route"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10.89.0."), "{text}");
    assert!(text.contains("no-name"), "{text}");
    assert!(text.contains("no-route"), "{text}");

    // --network none: loopback only, as Docker shows it (no sit0: the kernel has no
    // IPv6-in-IPv4 tunnels).
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"], "{out}");

    // In use: refused; after the container is gone: deleted.
    let err = d.fails(&["network", "rm", "front"], 125);
    assert!(err.contains("in use"), "{err}");
    d.ok(&["rm", "-f", "api"]);
    d.ok(&["network", "rm", "front"]);
    let list = d.ok(&["network", "ls", "-q"]);
    assert_eq!(
        list.split_whitespace().collect::<Vec<_>>(),
        ["back", "default"]
    );
    // What is left of ours: the bridges, tables and DNS servers of `back` and `default`, and
    // no TAP device.
    assert_eq!(d.devices("ctap-"), Vec::<String>::new());
    assert_eq!(d.devices("cbr-").len(), 2, "{:?}", d.devices("cbr-"));
    assert_eq!(d.tables().len(), 2, "{:?}", d.tables());
    assert_eq!(d.dns_listeners(), 2);
    let err = d.fails(&["network", "rm", "default"], 125);
    assert!(err.contains("built in"), "{err}");

    // The events of `front`: its creation, each container joining and leaving (api and the
    // two --rm runs), its removal.
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1
    );
    let events = d.ok(&["events", "--until", &until, "-f", "network=front"]);
    let actions: Vec<&str> = events
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap_or_default())
        .collect();
    assert_eq!(actions.first(), Some(&"create"), "{events}");
    assert_eq!(actions.last(), Some(&"destroy"), "{events}");
    assert_eq!(
        actions.iter().filter(|a| **a == "connect").count(),
        3,
        "{events}"
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "disconnect").count(),
        3,
        "{events}"
    );
    assert!(
        events
            .lines()
            .filter(|l| l.contains(" connect "))
            .all(|l| l.contains("container=") && l.contains("name=front")),
        "{events}"
    );
}

#[test]
fn outbound_traffic_is_masqueraded_unless_internal() {
    let Some(d) = NetDaemon::start("nat") else {
        return;
    };
    // An "outside" host in a second namespace, joined to the daemon's by a veth pair.
    let outside = TestNetns::new("out").expect("outside namespace");
    let (here, there) = (
        format!("vo{}a", std::process::id() % 100000),
        format!("vo{}b", std::process::id() % 100000),
    );
    d.ns.veth(&here, &outside, &there).expect("veth pair");
    d.ns.ip(&["addr", "add", "10.200.0.1/30", "dev", &here])
        .expect("address here");
    outside
        .ip(&["addr", "add", "10.200.0.2/30", "dev", &there])
        .expect("address there");

    // It answers every request with the address it saw the request come from.
    let listener = outside
        .run(|| TcpListener::bind("10.200.0.2:8000").expect("bind outside"))
        .unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let peer = s
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{peer}",
                peer.len()
            );
        }
    });

    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "timeout",
        "10",
        "wget",
        "-q",
        "-O",
        "-",
        "http://10.200.0.2:8000/",
    ]);
    assert_eq!(
        out.trim(),
        "10.200.0.1",
        "the outside saw the host's address"
    );

    d.ok(&["network", "create", "--internal", "sealed"]);
    // --init: busybox's timeout execs wget, which would be PID 1 and ignore SIGTERM.
    let out = d.run(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "sealed",
        "busybox",
        "timeout",
        "5",
        "wget",
        "-q",
        "-O",
        "-",
        "http://10.200.0.2:8000/",
    ]);
    assert!(
        !out.status.success(),
        "an internal network reached the outside"
    );
    drop(outside);
}
