//! The embedded DNS server over real sockets on 127.0.0.1: a client built with hickory-proto
//! asks the server; forwarded names go to a real upstream on another loopback port (a small
//! scripted responder, or a second `DnsServer`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NS};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use net::{DnsError, DnsRecords, DnsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The per-upstream timeout the servers under test use.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(1);

fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind(LOOPBACK).await.unwrap();
    socket.connect(server).await.unwrap();
    let id = 0x5a5a;
    socket.send(&query_bytes(id, name, qtype)).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(CLIENT_TIMEOUT, socket.recv(&mut buf))
        .await
        .expect("no UDP answer")
        .unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, id, "answer carries the client's id");
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    answer
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let id = 0x7b7b;
    let query = query_bytes(id, name, qtype);
    stream
        .write_all(&(query.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&query).await.unwrap();
    let answer = tokio::time::timeout(CLIENT_TIMEOUT, async {
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    })
    .await
    .expect("no TCP answer");
    let answer = Message::from_vec(&answer).unwrap();
    assert_eq!(answer.metadata.id, id);
    answer
}

fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

/// A scripted upstream resolver on UDP and TCP of one loopback port. It knows:
/// `outside.example.` (a CNAME to `real.example.` plus its A record, TTL 1234, an NS in the
/// authority section), `nx.example.` (NXDOMAIN), `big.example.` (truncated over UDP, 60 A
/// records over TCP). It records the ids and transports it saw.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(u16, &'static str)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn upstream_answer(query: &[u8], over: &'static str) -> Vec<u8> {
    let request = Message::from_vec(query).unwrap();
    let question = request.queries[0].clone();
    let mut reply = Message::response(request.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    let qname = question.name().to_ascii().to_ascii_lowercase();
    match qname.as_str() {
        "outside.example." => {
            reply.add_answer(Record::from_rdata(
                question.name().clone(),
                1234,
                RData::CNAME(CNAME(name("real.example."))),
            ));
            reply.add_answer(Record::from_rdata(
                name("real.example."),
                1234,
                RData::A(A(Ipv4Addr::new(203, 0, 113, 7))),
            ));
            reply.add_authority(Record::from_rdata(
                name("example."),
                4321,
                RData::NS(NS(name("ns1.example."))),
            ));
        }
        "big.example." if over == "udp" => reply.metadata.truncation = true,
        "big.example." => {
            for i in 0..60u8 {
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(198, 51, 100, i))),
                ));
            }
        }
        _ => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply.to_vec().unwrap()
}

impl Upstream {
    async fn start() -> Upstream {
        let udp = UdpSocket::bind(LOOPBACK).await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_udp = seen.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                seen_udp.lock().unwrap().push((id, "udp"));
                let _ = udp.send_to(&upstream_answer(&buf[..n], "udp"), from).await;
            }
        });
        let seen_tcp = seen.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                let len = stream.read_u16().await.unwrap();
                let mut query = vec![0u8; usize::from(len)];
                stream.read_exact(&mut query).await.unwrap();
                seen_tcp
                    .lock()
                    .unwrap()
                    .push((u16::from_be_bytes([query[0], query[1]]), "tcp"));
                let answer = upstream_answer(&query, "tcp");
                stream
                    .write_all(&(answer.len() as u16).to_be_bytes())
                    .await
                    .unwrap();
                stream.write_all(&answer).await.unwrap();
            }
        });
        Upstream {
            addr,
            seen,
            tasks: vec![udp_task, tcp_task],
        }
    }

    fn seen(&self) -> Vec<(u16, &'static str)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn server_with(records: &DnsRecords, upstreams: Vec<SocketAddr>) -> DnsServer {
    DnsServer::bind_with_timeout(
        LOOPBACK,
        Some("Test.".into()),
        records.clone(),
        upstreams,
        UPSTREAM_TIMEOUT,
    )
    .await
    .unwrap()
}

fn web_records() -> DnsRecords {
    let records = DnsRecords::new();
    records.insert("web", Ipv4Addr::new(192, 168, 64, 2));
    records
}

#[tokio::test]
async fn answers_container_names_bare_and_under_the_domain() {
    let records = web_records();
    let server = server_with(&records, vec![]).await;
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    for qname in ["web.", "web.test.", "WEB.Test."] {
        let answer = ask_udp(addr, qname, RecordType::A).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NoError,
            "{qname}"
        );
        assert!(answer.metadata.authoritative);
        assert_eq!(
            a_records(&answer),
            [Ipv4Addr::new(192, 168, 64, 2)],
            "{qname}"
        );
        assert_eq!(answer.answers[0].name, name(qname));
        assert_eq!(answer.answers[0].ttl, net::dns::RECORD_TTL);
    }
    let answer = ask_tcp(addr, "web.test.", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 168, 64, 2)]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn other_types_for_a_known_name_are_nodata_and_unknown_names_nxdomain() {
    let records = web_records();
    let server = server_with(&records, vec![]).await;
    let addr = server.local_addr();
    for (qname, qtype) in [
        ("web.", RecordType::AAAA),
        ("web.test.", RecordType::AAAA),
        ("web.test.", RecordType::MX),
        ("test.", RecordType::A),
    ] {
        let answer = ask_udp(addr, qname, qtype).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NoError,
            "{qname} {qtype}"
        );
        assert!(answer.answers.is_empty(), "{qname} {qtype}");
    }
    let answer = ask_udp(addr, "ghost.test.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert!(answer.metadata.authoritative);
    let answer = ask_udp(addr, "ghost.test.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn the_table_is_live() {
    let records = DnsRecords::new();
    let server = server_with(&records, vec![]).await;
    let addr = server.local_addr();
    let answer = ask_udp(addr, "db.test.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    records.insert("DB", Ipv4Addr::new(192, 168, 64, 9));
    let answer = ask_udp(addr, "db.test.", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 168, 64, 9)]);
    records.insert("db", Ipv4Addr::new(192, 168, 64, 10));
    let answer = ask_udp(addr, "db.", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 168, 64, 10)]);
    records.remove("db");
    let answer = ask_udp(addr, "db.test.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn other_names_are_relayed_from_the_upstream() {
    let upstream = Upstream::start().await;
    let server = server_with(&web_records(), vec![upstream.addr]).await;
    let addr = server.local_addr();

    let answer = ask_udp(addr, "outside.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.recursion_available);
    assert!(!answer.metadata.authoritative);
    assert_eq!(answer.queries[0].name(), &name("outside.example."));
    assert_eq!(answer.answers.len(), 2);
    assert_eq!(
        answer.answers[0].data,
        RData::CNAME(CNAME(name("real.example.")))
    );
    assert_eq!(answer.answers[0].ttl, 1234);
    assert_eq!(answer.answers[1].name, name("real.example."));
    assert_eq!(a_records(&answer), [Ipv4Addr::new(203, 0, 113, 7)]);
    assert_eq!(answer.authorities.len(), 1);
    assert_eq!(answer.authorities[0].ttl, 4321);

    let answer = ask_udp(addr, "nx.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);

    // The upstream saw two UDP queries, under ids of the server's choosing: one of two
    // ids equal to the client's by chance is possible, both is a bug (1 in 2^32).
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|(_, over)| *over == "udp"));
    assert!(seen.iter().any(|(id, _)| *id != 0x5a5a), "{seen:?}");
}

#[tokio::test]
async fn a_second_dns_server_can_be_the_upstream() {
    let corp = DnsRecords::new();
    corp.insert("db", Ipv4Addr::new(10, 20, 0, 5));
    let upstream = DnsServer::bind(LOOPBACK, Some("corp".into()), corp, vec![])
        .await
        .unwrap();
    let server = server_with(&web_records(), vec![upstream.local_addr()]).await;
    let answer = ask_udp(server.local_addr(), "db.corp.", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(10, 20, 0, 5)]);
    // The upstream's own verdicts travel back unchanged.
    let answer = ask_udp(server.local_addr(), "nope.corp.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        answer.metadata.authoritative,
        "the upstream's AA flag is kept"
    );
    let answer = ask_udp(server.local_addr(), "db.corp.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
}

#[tokio::test]
async fn a_silent_upstream_gives_servfail_within_the_timeout() {
    // Bound but never read: queries to it vanish.
    let silent = UdpSocket::bind(LOOPBACK).await.unwrap();
    let server = server_with(&web_records(), vec![silent.local_addr().unwrap()]).await;
    let started = Instant::now();
    let answer = ask_udp(server.local_addr(), "outside.example.", RecordType::A).await;
    let took = started.elapsed();
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took >= UPSTREAM_TIMEOUT && took < UPSTREAM_TIMEOUT * 4,
        "SERVFAIL after {took:?}"
    );
    // Local names still answer at once.
    let answer = ask_udp(server.local_addr(), "web.", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 168, 64, 2)]);
}

#[tokio::test]
async fn upstreams_are_tried_in_order() {
    let silent = UdpSocket::bind(LOOPBACK).await.unwrap();
    let upstream = Upstream::start().await;
    let server = server_with(
        &web_records(),
        vec![silent.local_addr().unwrap(), upstream.addr],
    )
    .await;
    let started = Instant::now();
    let answer = ask_udp(server.local_addr(), "outside.example.", RecordType::A).await;
    assert!(started.elapsed() >= UPSTREAM_TIMEOUT);
    assert_eq!(a_records(&answer), [Ipv4Addr::new(203, 0, 113, 7)]);
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn no_upstream_means_servfail_at_once() {
    let server = server_with(&web_records(), vec![]).await;
    let started = Instant::now();
    let answer = ask_udp(server.local_addr(), "outside.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < UPSTREAM_TIMEOUT);
}

#[tokio::test]
async fn tcp_clients_get_what_the_upstream_only_sends_over_tcp() {
    let upstream = Upstream::start().await;
    let server = server_with(&web_records(), vec![upstream.addr]).await;
    let addr = server.local_addr();
    // Over UDP the truncation is relayed, so the client knows to retry over TCP.
    let answer = ask_udp(addr, "big.example.", RecordType::A).await;
    assert!(answer.metadata.truncation);
    // Over TCP the server fetches the whole answer over TCP.
    let answer = ask_tcp(addr, "big.example.", RecordType::A).await;
    assert!(!answer.metadata.truncation);
    assert_eq!(a_records(&answer).len(), 60);
    let transports: Vec<_> = upstream.seen().into_iter().map(|(_, t)| t).collect();
    assert_eq!(transports, ["udp", "udp", "tcp"]);
    // A plain forwarded name over TCP.
    let answer = ask_tcp(addr, "outside.example.", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(203, 0, 113, 7)]);
}

#[tokio::test]
async fn malformed_and_unsupported_requests_get_error_codes() {
    let server = server_with(&web_records(), vec![]).await;
    let socket = UdpSocket::bind(LOOPBACK).await.unwrap();
    socket.connect(server.local_addr()).await.unwrap();
    let mut buf = vec![0u8; 4096];

    let mut two = Message::query();
    two.metadata.id = 9;
    two.add_query(Query::query(name("web."), RecordType::A));
    two.add_query(Query::query(name("web.test."), RecordType::A));
    socket.send(&two.to_vec().unwrap()).await.unwrap();
    let n = tokio::time::timeout(CLIENT_TIMEOUT, socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, 9);
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    let mut notify = Message::query();
    notify.metadata.id = 10;
    notify.metadata.op_code = OpCode::Notify;
    notify.add_query(Query::query(name("test."), RecordType::SOA));
    socket.send(&notify.to_vec().unwrap()).await.unwrap();
    let n = tokio::time::timeout(CLIENT_TIMEOUT, socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, 10);
    assert_eq!(answer.metadata.response_code, ResponseCode::NotImp);

    // Garbage does not stop the server.
    socket.send(b"\x00\x01garbage").await.unwrap();
    let answer = ask_udp(server.local_addr(), "web.", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 168, 64, 2)]);
}

/// Whether both the UDP and the TCP port of `addr` can be bound again.
async fn port_is_free(addr: SocketAddr) -> bool {
    UdpSocket::bind(addr).await.is_ok() && TcpListener::bind(addr).await.is_ok()
}

#[tokio::test]
async fn shutdown_and_drop_release_the_port() {
    let server = server_with(&web_records(), vec![]).await;
    let addr = server.local_addr();
    assert!(!port_is_free(addr).await);
    server.shutdown().await.unwrap();
    assert!(port_is_free(addr).await, "port still bound after shutdown");

    // Rebinding the same fixed port works, and dropping releases it too (the listener tasks
    // are aborted, which completes within a few scheduler turns).
    let server = DnsServer::bind(addr, None, web_records(), vec![])
        .await
        .unwrap();
    assert_eq!(server.local_addr(), addr);
    let answer = ask_udp(addr, "web.", RecordType::A).await;
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 168, 64, 2)]);
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !port_is_free(addr).await {
        assert!(Instant::now() < deadline, "port still bound after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn bind_errors_name_the_address() {
    let taken = UdpSocket::bind(LOOPBACK).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let e = DnsServer::bind(addr, None, DnsRecords::new(), vec![])
        .await
        .unwrap_err();
    assert!(matches!(e, DnsError::Bind { .. }));
    assert_eq!(
        e.to_string(),
        format!("cannot bind the DNS server to udp {addr}")
    );
    let e = DnsServer::bind(
        LOOPBACK,
        Some("bad domain".into()),
        DnsRecords::new(),
        vec![],
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), r#"invalid DNS domain "bad domain""#);
}

#[tokio::test]
async fn edns_queries_get_edns_answers() {
    let server = server_with(&web_records(), vec![]).await;
    let socket = UdpSocket::bind(LOOPBACK).await.unwrap();
    socket.connect(server.local_addr()).await.unwrap();
    let mut query = Message::query();
    query.metadata.id = 11;
    query.add_query(Query::query(name("web.test."), RecordType::A));
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(4096);
    query.set_edns(edns);
    socket.send(&query.to_vec().unwrap()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(CLIENT_TIMEOUT, socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 168, 64, 2)]);
    let edns = answer.edns.expect("an EDNS query gets an OPT record back");
    assert_eq!(edns.max_payload(), 1232);
}
