//! The embedded DNS server each network runs on its gateway address.
//!
//! It answers the names of the containers on its network, bare (`web`) and under the
//! network's domain (`web.<domain>`), with their IPv4 address. Other record types for a known
//! name get an empty NOERROR answer (NODATA), so a resolver asking AAAA then A does not give
//! up on the name. Unknown names under the domain are NXDOMAIN: we own that zone. Everything
//! else goes to the upstream resolvers (the host's), tried in order over UDP with a timeout
//! each; the first usable answer is relayed with the client's id, and SERVFAIL comes back when
//! none answers.
//!
//! Built on hickory-server (pinned, no TLS/DNSSEC/resolver features) with our own
//! [`RequestHandler`]: it brings the UDP and TCP listeners, message parsing, EDNS-aware
//! truncation of UDP answers, and graceful shutdown, which is most of the code a DNS server
//! needs. Its zone handlers (in-memory authority, forwarder) do not fit: the forwarder pulls
//! in hickory-resolver with its caches and system configuration, and the record table here
//! changes with every container start, so a lookup in our own table is simpler than keeping
//! an authority in sync. Upstream answers are decoded and re-encoded record for record
//! (hickory-server only sends messages it encodes itself); every section, flag and the
//! response code are kept.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// How long one upstream gets to answer before the next is tried.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// TTL of the answers for container names: short, since a re-created container may get
/// another address.
pub const RECORD_TTL: u32 = 10;
/// How long a TCP client may stay idle between queries.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 16;
/// The UDP payload size we advertise in EDNS answers (the common safe size, RFC 9715).
const EDNS_PAYLOAD: u16 = 1232;

/// Why the DNS server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The UDP or TCP socket could not be bound.
    #[error("cannot bind the DNS server to {protocol} {addr}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The domain is not a valid DNS name.
    #[error("invalid DNS domain {0:?}")]
    InvalidDomain(String),
    /// A listener ended with an error while shutting down.
    #[error("the DNS server on {addr} stopped with an error: {message}")]
    Stopped { addr: SocketAddr, message: String },
}

/// The container names of one network and their addresses. Cheap to clone: clones share one
/// table, so the daemon keeps a clone and the server sees its inserts and removals at once.
/// Names are case-insensitive and a trailing dot is ignored.
#[derive(Debug, Clone, Default)]
pub struct DnsRecords {
    inner: Arc<RwLock<HashMap<String, Ipv4Addr>>>,
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsRecords {
    /// An empty table.
    pub fn new() -> DnsRecords {
        DnsRecords::default()
    }

    /// Points `name` at `address`, returning the address it had before.
    pub fn insert(&self, name: &str, address: Ipv4Addr) -> Option<Ipv4Addr> {
        self.write().insert(normalise(name), address)
    }

    /// Forgets `name`, returning its address.
    pub fn remove(&self, name: &str) -> Option<Ipv4Addr> {
        self.write().remove(&normalise(name))
    }

    /// The address of `name`.
    pub fn get(&self, name: &str) -> Option<Ipv4Addr> {
        self.read().get(&normalise(name)).copied()
    }

    /// How many names the table holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    // A panic while holding the lock cannot leave the map half-updated (each operation is a
    // single HashMap call), so a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Ipv4Addr>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Ipv4Addr>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running DNS server, listening on UDP and TCP on one address. Stops on
/// [`DnsServer::shutdown`] or when dropped (inside the tokio runtime that started it).
pub struct DnsServer {
    local_addr: SocketAddr,
    server: Server<Handler>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Starts a server on `addr` (UDP and TCP, same port; port 0 picks a free one) answering
    /// from `records`, under `domain` if given, forwarding other names to `upstreams` with
    /// [`UPSTREAM_TIMEOUT`] each. Must be called inside a tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        domain: Option<String>,
        records: DnsRecords,
        upstreams: Vec<SocketAddr>,
    ) -> Result<DnsServer, DnsError> {
        DnsServer::bind_with_timeout(addr, domain, records, upstreams, UPSTREAM_TIMEOUT).await
    }

    /// [`DnsServer::bind`] with another per-upstream timeout.
    pub async fn bind_with_timeout(
        addr: SocketAddr,
        domain: Option<String>,
        records: DnsRecords,
        upstreams: Vec<SocketAddr>,
        upstream_timeout: Duration,
    ) -> Result<DnsServer, DnsError> {
        let domain = match domain.as_deref().map(normalise) {
            None => None,
            Some(d) if d.is_empty() => None,
            Some(d) => {
                let valid = Name::from_ascii(&d).is_ok()
                    && d.split('.').all(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                if !valid {
                    return Err(DnsError::InvalidDomain(domain.unwrap_or_default()));
                }
                Some(d)
            }
        };
        let (udp, tcp) = bind_pair(addr).await?;
        let local_addr = udp.local_addr().map_err(|source| DnsError::Bind {
            protocol: "udp",
            addr,
            source,
        })?;
        // Never forward to ourselves: a loop would only end in timeouts.
        let upstreams = upstreams.into_iter().filter(|u| *u != local_addr).collect();
        let handler = Handler {
            domain,
            records,
            upstreams,
            upstream_timeout,
        };
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::debug!(%local_addr, "dns server started");
        Ok(DnsServer { local_addr, server })
    }

    /// The address the server listens on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops listening and waits until both listeners are closed.
    pub async fn shutdown(mut self) -> Result<(), DnsError> {
        let addr = self.local_addr;
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|e| DnsError::Stopped {
                addr,
                message: e.to_string(),
            })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Dropping the hickory server aborts its tasks; cancelling first lets the listeners
        // that are polled right now leave their loops on their own.
        self.server.shutdown_token().cancel();
    }
}

/// Binds UDP and TCP on the same address. With port 0 the kernel picks the UDP port; if TCP
/// happens to have that port taken, try again with another.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind {
                protocol: "udp",
                addr,
                source,
            })?;
        let bound = udp.local_addr().map_err(|source| DnsError::Bind {
            protocol: "udp",
            addr,
            source,
        })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                last = Some(DnsError::Bind {
                    protocol: "tcp",
                    addr: bound,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or(DnsError::Bind {
        protocol: "tcp",
        addr,
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    }))
}

struct Handler {
    /// Lower case, no trailing dot.
    domain: Option<String>,
    records: DnsRecords,
    upstreams: Vec<SocketAddr>,
    upstream_timeout: Duration,
}

/// What a local lookup decided.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// A container of that name: its address.
    Known(Ipv4Addr),
    /// A name we own that has no records of its own (the domain itself).
    Empty,
    /// Under our domain but no such container.
    NoSuchName,
    /// Not ours: ask upstream.
    Forward,
}

impl Handler {
    fn lookup(&self, name: &str) -> Lookup {
        if let Some(address) = self.records.get(name) {
            return Lookup::Known(address);
        }
        let Some(domain) = &self.domain else {
            return Lookup::Forward;
        };
        if name == domain {
            return Lookup::Empty;
        }
        match name
            .strip_suffix(domain.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
        {
            Some(short) => match self.records.get(short) {
                Some(address) => Lookup::Known(address),
                None => Lookup::NoSuchName,
            },
            None => Lookup::Forward,
        }
    }

    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> Result<ResponseInfo, String> {
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            edns
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        if request.metadata.op_code != OpCode::Query
            || request.metadata.message_type != MessageType::Query
        {
            let reply = builder.error_msg(&request.metadata, ResponseCode::NotImp);
            return response
                .send_response(reply)
                .await
                .map_err(|e| e.to_string());
        }
        let query = match request.request_info() {
            Ok(info) => info.query,
            Err(_) => {
                let reply = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return response
                    .send_response(reply)
                    .await
                    .map_err(|e| e.to_string());
            }
        };
        let name = normalise(&query.name().to_ascii());
        let lookup = self.lookup(&name);
        tracing::trace!(%name, qtype = %query.query_type(), ?lookup, "dns query");

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let mut answers = Vec::new();
        match lookup {
            Lookup::Known(address) => {
                metadata.authoritative = true;
                if matches!(query.query_type(), RecordType::A | RecordType::ANY) {
                    answers.push(Record::from_rdata(
                        query.original().name().clone(),
                        RECORD_TTL,
                        RData::A(A(address)),
                    ));
                }
            }
            Lookup::Empty => metadata.authoritative = true,
            Lookup::NoSuchName => {
                metadata.authoritative = true;
                metadata.response_code = ResponseCode::NXDomain;
            }
            Lookup::Forward => {
                return match self.forward(request).await {
                    Some(upstream) => {
                        let mut metadata = upstream.metadata;
                        metadata.id = request.metadata.id;
                        let mut builder = MessageResponseBuilder::from_message_request(request);
                        if let Some(edns) = &upstream.edns {
                            builder.edns(edns);
                        }
                        let reply = builder.build(
                            metadata,
                            upstream.answers.iter(),
                            upstream.authorities.iter(),
                            std::iter::empty(),
                            upstream.additionals.iter(),
                        );
                        response
                            .send_response(reply)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    None => {
                        let reply = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                        response
                            .send_response(reply)
                            .await
                            .map_err(|e| e.to_string())
                    }
                };
            }
        }
        let reply = builder.build(
            metadata,
            answers.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        response
            .send_response(reply)
            .await
            .map_err(|e| e.to_string())
    }

    /// The first usable upstream answer: each upstream in order, over UDP, then over TCP
    /// from the same upstream when its UDP answer was truncated and the client asked over
    /// TCP (a UDP client gets the truncated answer and retries over TCP itself).
    async fn forward(&self, request: &Request) -> Option<Message> {
        let raw = request.as_slice();
        let question = request.request_info().ok()?.query.original().clone();
        for upstream in &self.upstreams {
            let id = fresh_id();
            let mut answer = match exchange_udp(*upstream, raw, id, self.upstream_timeout).await {
                Ok(bytes) => bytes,
                Err(why) => {
                    tracing::debug!(%upstream, %why, "upstream dns failed");
                    continue;
                }
            };
            if request.protocol() == Protocol::Tcp && answer.get(2).is_some_and(|b| b & 0x02 != 0) {
                match exchange_tcp(*upstream, raw, id, self.upstream_timeout).await {
                    Ok(bytes) => answer = bytes,
                    Err(why) => tracing::debug!(%upstream, %why, "upstream dns over tcp failed"),
                }
            }
            let message = match Message::from_vec(&answer) {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(%upstream, error = %e, "upstream dns answer does not parse");
                    continue;
                }
            };
            let same_question = message.queries.len() == 1
                && message.queries[0].name() == question.name()
                && message.queries[0].query_type() == question.query_type()
                && message.queries[0].query_class() == question.query_class();
            if !same_question {
                tracing::debug!(%upstream, "upstream dns answered another question");
                continue;
            }
            if matches!(
                message.metadata.response_code,
                ResponseCode::ServFail | ResponseCode::Refused
            ) {
                tracing::debug!(%upstream, code = %message.metadata.response_code, "upstream dns refused");
                continue;
            }
            return Some(message);
        }
        None
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        match self.respond(request, response_handle).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(src = %request.src(), %error, "dns answer not sent");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// A query id for upstream queries that an off-path attacker cannot guess from the client's.
fn fresh_id() -> u16 {
    // RandomState is seeded randomly per instance; hashing the time mixes in more.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    RandomState::new().hash_one(nanos) as u16
}

/// The query with its id replaced.
fn with_id(raw: &[u8], id: u16) -> Vec<u8> {
    let mut query = raw.to_vec();
    if query.len() >= 2 {
        query[..2].copy_from_slice(&id.to_be_bytes());
    }
    query
}

/// Whether `bytes` is a response to the query with `id`.
fn answers_id(bytes: &[u8], id: u16) -> bool {
    bytes.len() >= 12 && bytes[..2] == id.to_be_bytes() && bytes[2] & 0x80 != 0
}

async fn exchange_udp(
    upstream: SocketAddr,
    raw: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).into(),
        SocketAddr::V6(_) => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(upstream).await.map_err(|e| e.to_string())?;
    socket
        .send(&with_id(raw, id))
        .await
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let mut buf = vec![0u8; 65535];
        loop {
            // A connected socket only delivers datagrams from the upstream; stale or forged
            // ones with another id are skipped.
            let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
            if answers_id(&buf[..n], id) {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

async fn exchange_tcp(
    upstream: SocketAddr,
    raw: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream)
            .await
            .map_err(|e| e.to_string())?;
        let query = with_id(raw, id);
        let len = u16::try_from(query.len()).map_err(|_| "query too long".to_owned())?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&query);
        stream.write_all(&framed).await.map_err(|e| e.to_string())?;
        loop {
            let len = stream.read_u16().await.map_err(|e| e.to_string())?;
            let mut answer = vec![0u8; usize::from(len)];
            stream
                .read_exact(&mut answer)
                .await
                .map_err(|e| e.to_string())?;
            if answers_id(&answer, id) {
                return Ok(answer);
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(domain: Option<&str>) -> Handler {
        let records = DnsRecords::new();
        records.insert("Web", Ipv4Addr::new(192, 168, 64, 2));
        records.insert("my.app.", Ipv4Addr::new(192, 168, 64, 3));
        Handler {
            domain: domain.map(str::to_owned),
            records,
            upstreams: Vec::new(),
            upstream_timeout: UPSTREAM_TIMEOUT,
        }
    }

    #[test]
    fn records_are_shared_and_case_insensitive() {
        let a = DnsRecords::new();
        let b = a.clone();
        assert_eq!(a.insert("DB.", Ipv4Addr::new(10, 0, 0, 2)), None);
        assert_eq!(b.get("db"), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(
            b.insert("db", Ipv4Addr::new(10, 0, 0, 3)),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a.remove("Db"), Some(Ipv4Addr::new(10, 0, 0, 3)));
        assert!(b.is_empty());
    }

    #[test]
    fn lookup_decides_what_is_ours() {
        let h = handler(Some("test"));
        let web = Lookup::Known(Ipv4Addr::new(192, 168, 64, 2));
        assert_eq!(h.lookup("web"), web);
        assert_eq!(h.lookup("web.test"), web);
        assert_eq!(
            h.lookup("my.app.test"),
            Lookup::Known(Ipv4Addr::new(192, 168, 64, 3))
        );
        assert_eq!(h.lookup("test"), Lookup::Empty);
        assert_eq!(h.lookup("nope.test"), Lookup::NoSuchName);
        assert_eq!(h.lookup("web.test.example"), Lookup::Forward);
        assert_eq!(h.lookup("webtest"), Lookup::Forward);
        assert_eq!(h.lookup("example.com"), Lookup::Forward);
        let h = handler(None);
        assert_eq!(h.lookup("web"), web);
        assert_eq!(h.lookup("web.test"), Lookup::Forward);
    }

    #[test]
    fn upstream_ids_vary_and_replace_the_clients() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| fresh_id()).collect();
        assert!(ids.len() > 32, "ids barely vary: {ids:?}");
        assert_eq!(with_id(&[0x12, 0x34, 1, 0], 0xabcd), [0xab, 0xcd, 1, 0]);
        let mut reply = [0u8; 12];
        reply[..2].copy_from_slice(&7u16.to_be_bytes());
        assert!(!answers_id(&reply, 7), "a query is not an answer");
        reply[2] = 0x80;
        assert!(answers_id(&reply, 7));
        assert!(!answers_id(&reply, 8));
        assert!(!answers_id(&reply[..11], 7));
    }
}
