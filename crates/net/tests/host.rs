//! The host side of a user network (bridge, TAPs, forwarding, nftables), for real, inside
//! network namespaces these tests create. They need root: without it they print why and
//! skip, unless CONTAINER_REQUIRE_NETNS=1 or CONTAINER_REQUIRE_VM=1.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use net::host::{BridgeConfig, HostError, HostNetwork, Ipv6Gateway, LinuxBridge};
use net::netns::TestNetns;
use serde_json::Value;

fn config(name: &str, gateway: [u8; 4], internal: bool) -> BridgeConfig {
    BridgeConfig {
        name: name.into(),
        gateway: Ipv4Addr::from(gateway),
        prefix: 24,
        internal,
        mtu: None,
        ipv6: None,
    }
}

fn host_forwarding() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
}

/// Runs `f` with a `LinuxBridge` in `ns`.
fn in_ns<T: Send>(ns: &TestNetns, f: impl FnOnce(&LinuxBridge) -> T + Send) -> T {
    ns.run(|| f(&LinuxBridge::new().unwrap())).unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every link of `ns` by name, as `ip -d -j link show` describes it.
fn links(ns: &TestNetns) -> Vec<Value> {
    json(&ns.ip(&["-d", "-j", "link", "show"]).unwrap())
        .as_array()
        .unwrap()
        .clone()
}

fn link(ns: &TestNetns, name: &str) -> Value {
    links(ns)
        .into_iter()
        .find(|l| l["ifname"] == name)
        .unwrap_or_else(|| panic!("no link {name} in {}", ns.name()))
}

fn link_names(ns: &TestNetns) -> Vec<String> {
    links(ns)
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

/// The global addresses of `dev` as `a/n`.
fn addresses(ns: &TestNetns, dev: &str) -> Vec<String> {
    json(&ns.ip(&["-j", "addr", "show", "dev", dev]).unwrap())[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn nft(ns: &TestNetns, args: &[&str]) -> Result<String, String> {
    let out = ns.command("nft").args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The rules of a network's table as JSON expression lists, by chain.
fn rules(ns: &TestNetns, bridge: &str) -> Vec<(String, Value)> {
    let table = format!("container-{bridge}");
    let listing = json(&nft(ns, &["-j", "list", "table", "inet", &table]).unwrap());
    listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("rule"))
        .map(|r| (r["chain"].as_str().unwrap().to_owned(), r["expr"].clone()))
        .collect()
}

fn has_masquerade_of(rules: &[(String, Value)], subnet: &str, len: u64) -> bool {
    rules.iter().any(|(chain, expr)| {
        let expr = expr.as_array().unwrap();
        chain == "postrouting"
            && expr.iter().any(|e| e.get("masquerade").is_some())
            && expr.iter().any(|e| {
                e["match"]["right"]["prefix"]["addr"] == subnet
                    && e["match"]["right"]["prefix"]["len"] == len
            })
    })
}

fn sysctl_in(ns: &TestNetns, path: &str) -> String {
    let out = ns.command("cat").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn bridge_and_taps_are_created_idempotently_and_removed() {
    let Some(ns) = TestNetns::new_or_skip(
        "bridge_and_taps_are_created_idempotently_and_removed",
        "bridge",
    ) else {
        return;
    };
    let before = host_forwarding();
    let mut cfg = config("cbr-test", [192, 168, 70, 1], false);
    cfg.mtu = Some(1400);
    cfg.ipv6 = Some(Ipv6Gateway {
        gateway: "fd00:70::1".parse().unwrap(),
        prefix: 64,
    });
    in_ns(&ns, |host| {
        host.create_bridge(&cfg).unwrap();
        host.create_tap("ctap-one", "cbr-test", Some(1400)).unwrap();
        host.create_tap("ctap-two", "cbr-test", None).unwrap();
    });

    let check = |ns: &TestNetns| {
        let br = link(ns, "cbr-test");
        assert_eq!(br["linkinfo"]["info_kind"], "bridge");
        assert!(flags(&br).contains(&"UP".to_owned()), "{br}");
        assert_eq!(br["mtu"], 1400);
        assert_eq!(
            addresses(ns, "cbr-test"),
            ["192.168.70.1/24", "fd00:70::1/64"]
        );
        for (tap, mtu) in [("ctap-one", 1400), ("ctap-two", 1500)] {
            let l = link(ns, tap);
            assert_eq!(l["linkinfo"]["info_kind"], "tun", "{l}");
            assert_eq!(l["linkinfo"]["info_data"]["type"], "tap", "{l}");
            assert_eq!(l["linkinfo"]["info_data"]["persist"], true, "{l}");
            assert_eq!(l["master"], "cbr-test", "{l}");
            assert!(flags(&l).contains(&"UP".to_owned()), "{l}");
            assert_eq!(l["mtu"], mtu, "{l}");
        }
        let r = rules(ns, "cbr-test");
        assert!(has_masquerade_of(&r, "192.168.70.0", 24), "{r:?}");
        assert!(has_masquerade_of(&r, "fd00:70::", 64), "{r:?}");
        assert_eq!(sysctl_in(ns, "/proc/sys/net/ipv4/ip_forward"), "1");
        assert_eq!(sysctl_in(ns, "/proc/sys/net/ipv6/conf/all/forwarding"), "1");
    };
    check(&ns);
    assert_eq!(
        host_forwarding(),
        before,
        "the host's own forwarding setting changed"
    );

    // Again with the same settings: nothing changes, a leftover TAP is replaced.
    let tap_index = link(&ns, "ctap-one")["ifindex"].clone();
    in_ns(&ns, |host| {
        host.create_bridge(&cfg).unwrap();
        host.create_tap("ctap-one", "cbr-test", Some(1400)).unwrap();
        host.create_tap("ctap-two", "cbr-test", None).unwrap();
    });
    check(&ns);
    assert_ne!(
        link(&ns, "ctap-one")["ifindex"],
        tap_index,
        "stale tap not replaced"
    );
    assert_eq!(
        nft(&ns, &["list", "tables"]).unwrap().trim(),
        "table inet container-cbr-test"
    );

    // New settings for the same bridge: the old address and rules go.
    let internal = config("cbr-test", [10, 9, 0, 1], true);
    in_ns(&ns, |host| host.create_bridge(&internal).unwrap());
    assert_eq!(addresses(&ns, "cbr-test"), ["10.9.0.1/24"]);
    let r = rules(&ns, "cbr-test");
    assert!(
        !r.iter().any(|(chain, _)| chain == "postrouting"),
        "an internal network masquerades: {r:?}"
    );
    assert_eq!(r.len(), 2, "{r:?}");

    // Removal leaves nothing, and removing again is fine.
    in_ns(&ns, |host| {
        host.delete_tap("ctap-one").unwrap();
        host.delete_tap("ctap-two").unwrap();
        host.delete_bridge("cbr-test").unwrap();
        host.delete_tap("ctap-one").unwrap();
        host.delete_bridge("cbr-test").unwrap();
    });
    assert_eq!(link_names(&ns), ["lo"]);
    assert_eq!(nft(&ns, &["list", "ruleset"]).unwrap().trim(), "");
}

#[test]
fn devices_that_are_not_ours_are_refused_and_left_alone() {
    let Some(ns) = TestNetns::new_or_skip(
        "devices_that_are_not_ours_are_refused_and_left_alone",
        "kinds",
    ) else {
        return;
    };
    ns.ip(&[
        "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
    ])
    .unwrap();
    in_ns(&ns, |host| {
        let err = host
            .create_bridge(&config("veth-a", [192, 168, 71, 1], false))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "device veth-a exists and is a veth, not a bridge"
        );
        host.create_bridge(&config("cbr-k", [192, 168, 71, 1], false))
            .unwrap();
        let err = host.create_tap("veth-b", "cbr-k", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "device veth-b exists and is a veth, not a tap"
        );
        assert!(matches!(
            host.delete_tap("veth-b"),
            Err(HostError::WrongKind { .. })
        ));
        assert!(matches!(
            host.delete_bridge("veth-a"),
            Err(HostError::WrongKind { .. })
        ));
        let err = host.create_tap("ctap-x", "cbr-none", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`attach ctap-x to cbr-none` failed: bridge cbr-none does not exist"
        );
        let err = host.create_tap("bad name", "cbr-k", None).unwrap_err();
        assert!(matches!(err, HostError::InvalidName { .. }), "{err}");
    });
    let names = link_names(&ns);
    for name in ["veth-a", "veth-b", "cbr-k"] {
        assert!(names.contains(&name.to_owned()), "{names:?}");
    }
    assert!(!names.contains(&"ctap-x".to_owned()), "{names:?}");
}

/// QEMU opens the persistent TAP the way the VMM does; while it holds it, the TAP is not
/// replaced under it.
#[test]
fn qemu_opens_the_tap_and_a_held_tap_is_not_replaced() {
    let Some(ns) =
        TestNetns::new_or_skip("qemu_opens_the_tap_and_a_held_tap_is_not_replaced", "qemu")
    else {
        return;
    };
    let qemu = "qemu-system-x86_64";
    if net::host::LinuxBridge::new().is_err() || which(qemu).is_none() {
        panic!("{qemu}, ip and nft are needed (cargo xtask deps installs them)");
    }
    in_ns(&ns, |host| {
        host.create_bridge(&config("cbr-q", [192, 168, 72, 1], false))
            .unwrap();
        host.create_tap("ctap-q", "cbr-q", None).unwrap();
    });
    let mut vm = KillOnDrop(
        ns.command(qemu)
            .args([
                "-machine",
                "none",
                "-nodefaults",
                "-display",
                "none",
                "-S",
                "-netdev",
                "tap,id=n0,ifname=ctap-q,script=no,downscript=no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Carrier comes up once QEMU attached to the device.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flags(&link(&ns, "ctap-q")).contains(&"LOWER_UP".to_owned()) {
        if let Some(status) = vm.0.try_wait().unwrap() {
            let mut err = String::new();
            vm.0.stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("qemu exited with {status}: {err}");
        }
        assert!(Instant::now() < deadline, "qemu never attached to the tap");
        std::thread::sleep(Duration::from_millis(50));
    }
    let index = link(&ns, "ctap-q")["ifindex"].clone();
    let err = in_ns(&ns, |host| host.create_tap("ctap-q", "cbr-q", None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tap device ctap-q is in use by a running process"
    );
    assert_eq!(link(&ns, "ctap-q")["ifindex"], index);
    drop(vm);
    // Once QEMU is gone, the TAP is stale and is replaced.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match in_ns(&ns, |host| host.create_tap("ctap-q", "cbr-q", None)) {
            Ok(()) => break,
            Err(HostError::TapInUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_ne!(link(&ns, "ctap-q")["ifindex"], index);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Three namespaces: H plays the host (bridge through LinuxBridge), C a container on the
/// bridge (a veth in place of a TAP), O the outside world behind H (a veth pair).
struct Topology {
    host: TestNetns,
    container: TestNetns,
    outside: TestNetns,
}

const OUTSIDE_H: &str = "10.77.0.1";
const OUTSIDE_O: &str = "10.77.0.2";
const CONTAINER_IP: &str = "192.168.77.2";

fn topology(test: &str, internal: bool) -> Option<Topology> {
    let host = TestNetns::new_or_skip(test, "nat-h")?;
    let container = TestNetns::new("nat-c").unwrap();
    let outside = TestNetns::new("nat-o").unwrap();
    host.veth("to-o", &outside, "to-h").unwrap();
    host.ip(&["addr", "add", &format!("{OUTSIDE_H}/30"), "dev", "to-o"])
        .unwrap();
    outside
        .ip(&["addr", "add", &format!("{OUTSIDE_O}/30"), "dev", "to-h"])
        .unwrap();
    in_ns(&host, |h| {
        h.create_bridge(&config("cbr-nat", [192, 168, 77, 1], internal))
            .unwrap()
    });
    container.veth("eth0", &host, "to-c").unwrap();
    host.ip(&["link", "set", "to-c", "master", "cbr-nat"])
        .unwrap();
    container
        .ip(&["addr", "add", &format!("{CONTAINER_IP}/24"), "dev", "eth0"])
        .unwrap();
    container
        .ip(&["route", "add", "default", "via", "192.168.77.1"])
        .unwrap();
    Some(Topology {
        host,
        container,
        outside,
    })
}

/// A TCP server in `ns` answering each connection with the peer address it saw.
fn serve_peer_address(ns: &TestNetns, ip: &str) -> SocketAddr {
    let listener = ns
        .run(|| TcpListener::bind((ip.parse::<Ipv4Addr>().unwrap(), 0)))
        .unwrap()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let peer = conn.peer_addr().unwrap().ip().to_string();
            let _ = conn.write_all(peer.as_bytes());
        }
    });
    addr
}

/// Connects from `ns` and reads the answer, or says why it could not.
fn connect_from(ns: &TestNetns, to: SocketAddr) -> Result<String, String> {
    ns.run(|| {
        let mut conn =
            TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer)
            .map_err(|e| e.to_string())?;
        Ok(answer)
    })
    .unwrap()
}

#[test]
fn a_container_reaches_the_outside_through_nat_and_the_outside_cannot_reach_in() {
    let before = host_forwarding();
    let Some(t) = topology(
        "a_container_reaches_the_outside_through_nat_and_the_outside_cannot_reach_in",
        false,
    ) else {
        return;
    };
    let server = serve_peer_address(&t.outside, OUTSIDE_O);
    // O sees H's outside address: the container's address was masqueraded (O has no route
    // back to the container's subnet, so nothing else could have answered).
    assert_eq!(connect_from(&t.container, server).as_deref(), Ok(OUTSIDE_H));

    // A new connection from outside into the bridge is dropped, even with a route to it.
    t.outside
        .ip(&["route", "add", "192.168.77.0/24", "via", OUTSIDE_H])
        .unwrap();
    let inside = serve_peer_address(&t.container, CONTAINER_IP);
    let err = connect_from(&t.outside, inside).unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    // The host itself still reaches the container (how published ports get there).
    assert_eq!(connect_from(&t.host, inside).as_deref(), Ok("192.168.77.1"));

    // Once the network is deleted the container is cut off.
    in_ns(&t.host, |h| h.delete_bridge("cbr-nat").unwrap());
    assert!(connect_from(&t.container, server).is_err());
    assert_eq!(host_forwarding(), before);
}

#[test]
fn a_container_on_an_internal_network_cannot_reach_the_outside() {
    let Some(t) = topology(
        "a_container_on_an_internal_network_cannot_reach_the_outside",
        true,
    ) else {
        return;
    };
    let server = serve_peer_address(&t.outside, OUTSIDE_O);
    let err = connect_from(&t.container, server).unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    // The gateway, where the network's DNS server listens, stays reachable.
    let gateway = serve_peer_address(&t.host, "192.168.77.1");
    assert_eq!(
        connect_from(&t.container, gateway).as_deref(),
        Ok(CONTAINER_IP)
    );
    // Made non-internal in place, the same container gets out.
    in_ns(&t.host, |h| {
        h.create_bridge(&config("cbr-nat", [192, 168, 77, 1], false))
            .unwrap()
    });
    assert_eq!(connect_from(&t.container, server).as_deref(), Ok(OUTSIDE_H));
}
