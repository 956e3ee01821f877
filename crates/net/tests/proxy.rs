//! The `-p` proxies against real TCP and UDP servers on loopback playing the container.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use net::proxy::{PortProxies, ProxyError, ProxyOptions};
use spec::{HostAddr, PortSpec, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(5);

fn random_base(count: u16) -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    20000 + (h.finish() % u64::from(40000 - count)) as u16
}

fn spec(
    host: Option<HostAddr>,
    host_port: Option<u16>,
    container_port: u16,
    count: u16,
    protocol: Protocol,
) -> PortSpec {
    PortSpec {
        host_ip: host,
        host_port,
        container_port,
        count,
        protocol,
    }
}

/// Starts proxies on `count` consecutive free host ports, made into specs by `specs`.
async fn start_on_free_ports(
    count: u16,
    options: ProxyOptions,
    specs: impl Fn(u16) -> Vec<PortSpec>,
) -> (PortProxies, u16) {
    for _ in 0..50 {
        let base = random_base(count);
        match PortProxies::start(&specs(base), LOCALHOST, options.clone()).await {
            Ok(p) => return (p, base),
            Err(ProxyError::Bind { source, .. }) if source.kind() == io::ErrorKind::AddrInUse => {}
            Err(e) => panic!("{}", spec::error_chain(&e)),
        }
    }
    panic!("no {count} free consecutive ports");
}

/// Binds `count` consecutive TCP listeners on 127.0.0.1.
async fn tcp_listeners(count: u16) -> (Vec<TcpListener>, u16) {
    'next: for _ in 0..50 {
        let base = random_base(count);
        let mut listeners = Vec::new();
        for i in 0..count {
            match TcpListener::bind((LOCALHOST, base + i)).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'next,
            }
        }
        return (listeners, base);
    }
    panic!("no {count} free consecutive ports");
}

/// The container's echo server: echoes, and on end-of-file answers `bye from PORT` and
/// closes.
fn serve_echo(listener: TcpListener) {
    tokio::spawn(async move {
        let port = listener.local_addr().unwrap().port();
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => conn.write_all(&buf[..n]).await.unwrap(),
                        Err(_) => return,
                    }
                }
                conn.write_all(format!("bye from {port}\n").as_bytes())
                    .await
                    .unwrap();
                conn.shutdown().await.unwrap();
            });
        }
    });
}

/// Sends `text`, closes the sending half, and reads everything back.
async fn exchange(addr: SocketAddr, text: &str) -> String {
    let mut conn = timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    conn.write_all(text.as_bytes()).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut out = String::new();
    timeout(WAIT, conn.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn a_range_of_three_tcp_ports_reaches_the_matching_container_ports() {
    let (listeners, cport) = tcp_listeners(3).await;
    for l in listeners {
        serve_echo(l);
    }
    let (proxies, hport) = start_on_free_ports(3, ProxyOptions::default(), |base| {
        vec![spec(
            Some(HostAddr::Ip(LOCALHOST)),
            Some(base),
            cport,
            3,
            Protocol::Tcp,
        )]
    })
    .await;
    assert_eq!(proxies.ports().len(), 3);
    for i in 0..3 {
        let bound = proxies.ports()[usize::from(i)];
        assert_eq!(bound.host, SocketAddr::new(LOCALHOST, hport + i));
        assert_eq!(bound.container, SocketAddr::new(LOCALHOST, cport + i));
        assert_eq!(bound.protocol, Protocol::Tcp);
        let out = exchange(bound.host, &format!("hello {i}\n")).await;
        assert_eq!(out, format!("hello {i}\nbye from {}\n", cport + i));
    }
    // Many clients at once on one port.
    let mut clients = Vec::new();
    for n in 0..20 {
        clients.push(tokio::spawn(exchange(
            SocketAddr::new(LOCALHOST, hport),
            format!("client {n}").leak(),
        )));
    }
    for (n, c) in clients.into_iter().enumerate() {
        assert_eq!(c.await.unwrap(), format!("client {n}bye from {cport}\n"));
    }
    proxies.shutdown().await;
}

#[tokio::test]
async fn half_closed_connections_keep_the_other_direction() {
    // Client closes first: the container sees end-of-file and still answers (serve_echo).
    let (mut listeners, cport) = tcp_listeners(1).await;
    serve_echo(listeners.remove(0));
    let (proxies, hport) = start_on_free_ports(1, ProxyOptions::default(), |base| {
        vec![spec(
            Some(HostAddr::Ip(LOCALHOST)),
            Some(base),
            cport,
            1,
            Protocol::Tcp,
        )]
    })
    .await;
    let big = "x".repeat(1 << 20);
    let out = exchange(SocketAddr::new(LOCALHOST, hport), &big).await;
    assert_eq!(out.len(), big.len() + format!("bye from {cport}\n").len());
    assert!(out.ends_with(&format!("bye from {cport}\n")));
    proxies.shutdown().await;

    // Container closes first: the client sees end-of-file and can still send.
    let (mut listeners, cport) = tcp_listeners(1).await;
    let listener = listeners.remove(0);
    let (seen_tx, mut seen_rx) = mpsc::channel::<String>(1);
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        conn.write_all(b"hi").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).await.unwrap();
        seen_tx.send(got).await.unwrap();
    });
    let (proxies, hport) = start_on_free_ports(1, ProxyOptions::default(), |base| {
        vec![spec(
            Some(HostAddr::Ip(LOCALHOST)),
            Some(base),
            cport,
            1,
            Protocol::Tcp,
        )]
    })
    .await;
    let mut conn = TcpStream::connect((LOCALHOST, hport)).await.unwrap();
    let mut greeting = String::new();
    timeout(WAIT, conn.read_to_string(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(greeting, "hi");
    conn.write_all(b"sent after end-of-file").await.unwrap();
    conn.shutdown().await.unwrap();
    let seen = timeout(WAIT, seen_rx.recv()).await.unwrap().unwrap();
    assert_eq!(seen, "sent after end-of-file");
    proxies.shutdown().await;
}

#[tokio::test]
async fn a_bind_conflict_names_the_port_and_leaves_nothing_bound() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let base = loop {
            let base = random_base(4);
            // Everything free, checked by binding it ourselves.
            let free = (0..4).all(|i| match protocol {
                Protocol::Tcp => std::net::TcpListener::bind((LOCALHOST, base + i)).is_ok(),
                Protocol::Udp => std::net::UdpSocket::bind((LOCALHOST, base + i)).is_ok(),
            });
            if free {
                break base;
            }
        };
        // Another program holds the middle port of the range.
        let _holder_tcp;
        let _holder_udp;
        match protocol {
            Protocol::Tcp => {
                _holder_tcp = std::net::TcpListener::bind((LOCALHOST, base + 2)).unwrap()
            }
            Protocol::Udp => {
                _holder_udp = std::net::UdpSocket::bind((LOCALHOST, base + 2)).unwrap()
            }
        }
        let specs = [
            spec(Some(HostAddr::Ip(LOCALHOST)), Some(base), 80, 1, protocol),
            spec(
                Some(HostAddr::Ip(LOCALHOST)),
                Some(base + 1),
                1000,
                3,
                protocol,
            ),
        ];
        let err = PortProxies::start(&specs, LOCALHOST, ProxyOptions::default())
            .await
            .unwrap_err();
        assert_eq!(
            spec::error_chain(&err),
            format!(
                "cannot bind 127.0.0.1:{}/{protocol}: Address already in use (os error 98)",
                base + 2
            )
        );
        // The ports bound before the failure, and after it, are free again.
        for port in [base, base + 1, base + 3] {
            let free = match protocol {
                Protocol::Tcp => std::net::TcpListener::bind((LOCALHOST, port)).map(drop),
                Protocol::Udp => std::net::UdpSocket::bind((LOCALHOST, port)).map(drop),
            };
            free.unwrap_or_else(|e| panic!("port {port}/{protocol} still bound: {e}"));
        }
    }
}

/// The container's UDP server: answers each datagram with `<the peer it saw> <datagram>`,
/// and sends `poke` to any address it is told on `pokes`.
fn serve_udp_echo(socket: UdpSocket) -> mpsc::Sender<SocketAddr> {
    let (tx, mut pokes) = mpsc::channel::<SocketAddr>(4);
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            tokio::select! {
                got = socket.recv_from(&mut buf) => {
                    let (n, peer) = got.unwrap();
                    let reply = format!("{peer} {}", String::from_utf8_lossy(&buf[..n]));
                    socket.send_to(reply.as_bytes(), peer).await.unwrap();
                }
                Some(to) = pokes.recv() => {
                    socket.send_to(b"poke", to).await.unwrap();
                }
            }
        }
    });
    tx
}

async fn ask(client: &UdpSocket, to: SocketAddr, text: &str) -> (SocketAddr, String) {
    client.send_to(text.as_bytes(), to).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, to, "the reply comes from the published port");
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    let (peer, rest) = reply.split_once(' ').unwrap();
    assert_eq!(rest, text);
    (peer.parse().unwrap(), rest.to_owned())
}

async fn nothing_arrives(client: &UdpSocket) {
    let mut buf = [0u8; 64];
    let got = timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await;
    assert!(
        got.is_err(),
        "unexpected datagram {:?}",
        got.map(|r| r.map(|(n, a)| (String::from_utf8_lossy(&buf[..n]).into_owned(), a)))
    );
}

#[tokio::test]
async fn udp_keeps_a_session_per_client_and_drops_idle_ones() {
    let container = 'bind: loop {
        let base = random_base(2);
        let mut sockets = Vec::new();
        for i in 0..2 {
            match UdpSocket::bind((LOCALHOST, base + i)).await {
                Ok(s) => sockets.push(s),
                Err(_) => continue 'bind,
            }
        }
        break (sockets, base);
    };
    let (sockets, cport) = container;
    let pokes: Vec<_> = sockets.into_iter().map(serve_udp_echo).collect();
    let idle = Duration::from_millis(400);
    let options = ProxyOptions {
        udp_idle_timeout: idle,
        ..ProxyOptions::default()
    };
    let (proxies, hport) = start_on_free_ports(2, options, |base| {
        vec![spec(
            Some(HostAddr::Ip(LOCALHOST)),
            Some(base),
            cport,
            2,
            Protocol::Udp,
        )]
    })
    .await;
    let a = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let b = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    for i in 0..2u16 {
        let published = SocketAddr::new(LOCALHOST, hport + i);
        let (peer_a, _) = ask(&a, published, "a1").await;
        let (again, _) = ask(&a, published, "a2").await;
        assert_eq!(peer_a, again, "one client keeps its session");
        let (peer_b, _) = ask(&b, published, "b1").await;
        assert_ne!(
            peer_a, peer_b,
            "two clients look different to the container"
        );
        assert_ne!(peer_a, a.local_addr().unwrap());
        // A datagram the container sends to a session reaches that client only.
        pokes[usize::from(i)].send(peer_a).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = timeout(WAIT, a.recv_from(&mut buf)).await.unwrap().unwrap();
        assert_eq!((&buf[..n], from), (&b"poke"[..], published));
        nothing_arrives(&b).await;
        // Once idle, the session and its socket are gone: the container can no longer
        // reach the client through it.
        tokio::time::sleep(idle * 3).await;
        pokes[usize::from(i)].send(peer_a).await.unwrap();
        nothing_arrives(&a).await;
        // And the client gets a new session.
        ask(&a, published, "a3").await;
    }
    proxies.shutdown().await;
}

#[tokio::test]
async fn localhost_binds_both_loopback_addresses_and_no_address_binds_all() {
    let (mut listeners, cport) = tcp_listeners(1).await;
    serve_echo(listeners.remove(0));
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let (proxies, hport) = start_on_free_ports(1, ProxyOptions::default(), |base| {
        vec![spec(
            Some(HostAddr::Localhost),
            Some(base),
            cport,
            1,
            Protocol::Tcp,
        )]
    })
    .await;
    let hosts: Vec<SocketAddr> = proxies.ports().iter().map(|p| p.host).collect();
    assert_eq!(
        hosts,
        [
            SocketAddr::new(LOCALHOST, hport),
            SocketAddr::new(v6, hport)
        ]
    );
    for host in hosts {
        assert_eq!(exchange(host, "hi").await, format!("hibye from {cport}\n"));
    }
    proxies.shutdown().await;

    let (proxies, hport) = start_on_free_ports(1, ProxyOptions::default(), |base| {
        vec![spec(None, Some(base), cport, 1, Protocol::Tcp)]
    })
    .await;
    let hosts: Vec<SocketAddr> = proxies.ports().iter().map(|p| p.host).collect();
    assert_eq!(
        hosts,
        [
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), hport),
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), hport)
        ]
    );
    for ip in [LOCALHOST, v6] {
        let host = SocketAddr::new(ip, hport);
        assert_eq!(exchange(host, "hi").await, format!("hibye from {cport}\n"));
    }
    proxies.shutdown().await;
}

#[tokio::test]
async fn without_a_host_port_the_system_picks_one_for_every_address() {
    let (mut listeners, cport) = tcp_listeners(1).await;
    serve_echo(listeners.remove(0));
    let proxies = PortProxies::start(
        &[spec(None, None, cport, 1, Protocol::Tcp)],
        LOCALHOST,
        ProxyOptions::default(),
    )
    .await
    .unwrap();
    let ports = proxies.ports();
    assert_eq!(ports.len(), 2);
    let hport = ports[0].host.port();
    assert_ne!(hport, 0);
    assert_eq!(ports[1].host.port(), hport);
    assert_eq!(
        exchange(SocketAddr::new(LOCALHOST, hport), "x").await,
        format!("xbye from {cport}\n")
    );
}

#[tokio::test]
async fn shutdown_closes_listeners_and_open_connections() {
    let (mut listeners, cport) = tcp_listeners(1).await;
    serve_echo(listeners.remove(0));
    let (proxies, hport) = start_on_free_ports(1, ProxyOptions::default(), |base| {
        vec![spec(
            Some(HostAddr::Ip(LOCALHOST)),
            Some(base),
            cport,
            1,
            Protocol::Tcp,
        )]
    })
    .await;
    let mut open = TcpStream::connect((LOCALHOST, hport)).await.unwrap();
    open.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    timeout(WAIT, open.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
    proxies.shutdown().await;
    // The open connection ends (end-of-file or reset), and the port is free.
    let mut rest = Vec::new();
    let _ = timeout(WAIT, open.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    std::net::TcpListener::bind((LOCALHOST, hport)).unwrap();

    // Dropping the handle stops the proxies too.
    let (proxies, hport) = start_on_free_ports(1, ProxyOptions::default(), |base| {
        vec![spec(
            Some(HostAddr::Ip(LOCALHOST)),
            Some(base),
            cport,
            1,
            Protocol::Tcp,
        )]
    })
    .await;
    drop(proxies);
    // The aborted tasks close their sockets when the runtime next gets to them.
    let mut rebound = std::net::TcpListener::bind((LOCALHOST, hport));
    for _ in 0..100 {
        if rebound.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        rebound = std::net::TcpListener::bind((LOCALHOST, hport));
    }
    rebound.unwrap();
}

#[tokio::test]
async fn a_client_of_a_container_port_nobody_listens_on_is_disconnected() {
    let (listeners, cport) = tcp_listeners(1).await;
    drop(listeners);
    let (proxies, hport) = start_on_free_ports(1, ProxyOptions::default(), |base| {
        vec![spec(
            Some(HostAddr::Ip(LOCALHOST)),
            Some(base),
            cport,
            1,
            Protocol::Tcp,
        )]
    })
    .await;
    let mut conn = TcpStream::connect((LOCALHOST, hport)).await.unwrap();
    let mut rest = Vec::new();
    // Closed (end-of-file, or a reset) rather than left hanging.
    let read = timeout(WAIT, conn.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(read.unwrap_or(0), 0);
    proxies.shutdown().await;
}
