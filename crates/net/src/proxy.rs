//! The userspace proxies behind `-p`: each container's runtime helper binds the published
//! host ports and forwards what arrives to the container's address.
//!
//! Every host port of every spec is bound before any is served, so a container whose ports
//! cannot all be bound fails to start with nothing left listening. A spec without a host
//! address binds `0.0.0.0` and `[::]` (IPv6-only, so the two never clash); `localhost` binds
//! `127.0.0.1` and `::1` (Apple's #1180: a client resolving `localhost` to `::1` must reach
//! the container too). The IPv6 half of such a pair is skipped when the host has no IPv6.
//!
//! TCP: each accepted connection gets its own connection to the container and bytes flow both
//! ways; when one side closes its sending half, the other side sees end-of-file while the
//! opposite direction keeps flowing. UDP: each client address gets a session, a socket
//! connected to the container, so the container can tell clients apart and its replies are
//! sent back to the right client from the published port. Sessions idle for
//! [`ProxyOptions::udp_idle_timeout`] are dropped.
//!
//! The container sees connections coming from the host's address on the bridge (or from
//! loopback), not from the original client: a userspace proxy cannot keep the source
//! address, as Docker's `userland-proxy` cannot.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use spec::{PortSpec, Protocol};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// Why the proxies of a container could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A host port could not be bound (already in use, not an address of this host, a
    /// privileged port without the right).
    #[error("cannot bind {addr}/{protocol}")]
    Bind {
        /// The host address and port.
        addr: SocketAddr,
        /// TCP or UDP.
        protocol: Protocol,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A spec whose ports run past 65535 or whose count is 0 (the parser never makes one).
    #[error("port spec {spec} is out of range")]
    Range {
        /// The spec as text.
        spec: String,
    },
}

/// Tunables of the proxies; the defaults suit a container.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// How long a UDP client may stay silent (in both directions) before its session and its
    /// socket towards the container are dropped.
    pub udp_idle_timeout: Duration,
    /// The most UDP sessions one published port keeps; a new client beyond it evicts the
    /// least recently active one.
    pub max_udp_sessions: usize,
    /// How long connecting to the container may take before the client is disconnected.
    pub connect_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> ProxyOptions {
        ProxyOptions {
            udp_idle_timeout: Duration::from_secs(60),
            max_udp_sessions: 1024,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// One bound host port and where it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BoundPort {
    /// The bound host address and port.
    pub host: SocketAddr,
    /// The container address and port it forwards to.
    pub container: SocketAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// The running proxies of one container. Dropping it stops them (the sockets close as soon
/// as the runtime gets to the aborted tasks); [`PortProxies::shutdown`] stops them and
/// returns once every socket is closed.
#[derive(Debug)]
pub struct PortProxies {
    ports: Vec<BoundPort>,
    tasks: Vec<JoinHandle<()>>,
}

impl PortProxies {
    /// Binds every host port of `specs`, then serves them, forwarding to `container`.
    ///
    /// A spec without a host port gets a free port from the system per container port.
    /// Nothing is left bound when any port fails. Must be called within a tokio runtime.
    pub async fn start(
        specs: &[PortSpec],
        container: IpAddr,
        options: ProxyOptions,
    ) -> Result<PortProxies, ProxyError> {
        let mut bound = Vec::new();
        for spec in specs {
            bind_spec(spec, container, &mut bound)?;
        }
        // Registered with the runtime before any is served, so a failure here too leaves
        // nothing listening.
        let mut registered = Vec::with_capacity(bound.len());
        for (port, socket) in bound {
            let bind_err = |source| ProxyError::Bind {
                addr: port.host,
                protocol: port.protocol,
                source,
            };
            let socket = match port.protocol {
                Protocol::Tcp => {
                    Registered::Tcp(TcpListener::from_std(socket.into()).map_err(bind_err)?)
                }
                Protocol::Udp => {
                    Registered::Udp(UdpSocket::from_std(socket.into()).map_err(bind_err)?)
                }
            };
            registered.push((port, socket));
        }
        let mut ports = Vec::with_capacity(registered.len());
        let mut tasks = Vec::with_capacity(registered.len());
        for (port, socket) in registered {
            tracing::debug!(host = %port.host, container = %port.container, protocol = %port.protocol, "publishing");
            tasks.push(match socket {
                Registered::Tcp(listener) => {
                    tokio::spawn(serve_tcp(listener, port.container, options.clone()))
                }
                Registered::Udp(socket) => {
                    tokio::spawn(serve_udp(Arc::new(socket), port.container, options.clone()))
                }
            });
            ports.push(port);
        }
        Ok(PortProxies { ports, tasks })
    }

    /// Every bound host port, in the order of the specs.
    pub fn ports(&self) -> &[BoundPort] {
        &self.ports
    }

    /// Stops every proxy and waits until their sockets, and every connection and session
    /// they held, are closed.
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // An aborted task ends with a cancellation error: that is the point.
            let _ = task.await;
        }
    }
}

impl Drop for PortProxies {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A bound socket handed to the runtime.
enum Registered {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds the host ports of one spec, appending them to `bound` (which the caller drops on
/// error, closing everything bound so far).
fn bind_spec(
    spec: &PortSpec,
    container: IpAddr,
    bound: &mut Vec<(BoundPort, Socket)>,
) -> Result<(), ProxyError> {
    let range = || ProxyError::Range {
        spec: spec.to_string(),
    };
    let last = |start: u16| start.checked_add(spec.count.checked_sub(1)?);
    if spec.count == 0
        || last(spec.container_port).is_none()
        || spec.host_port.is_some_and(|p| p == 0 || last(p).is_none())
    {
        return Err(range());
    }
    // (address, whether failing to bind it for want of IPv6 is fine)
    let addresses: Vec<(IpAddr, bool)> = match spec.host_ip {
        None => vec![
            (Ipv4Addr::UNSPECIFIED.into(), false),
            (Ipv6Addr::UNSPECIFIED.into(), true),
        ],
        Some(host) => {
            let all = host.addresses();
            let several = all.len() > 1;
            all.into_iter()
                .map(|ip| (ip, several && ip.is_ipv6()))
                .collect()
        }
    };
    for i in 0..spec.count {
        let container = SocketAddr::new(container, spec.container_port + i);
        match spec.host_port {
            Some(first) => {
                for &(ip, optional) in &addresses {
                    let host = SocketAddr::new(ip, first + i);
                    if let Some(socket) = bind_optional(host, spec.protocol, optional)? {
                        bound.push((port(host, container, spec.protocol), socket));
                    }
                }
            }
            None => bind_ephemeral(&addresses, container, spec.protocol, bound)?,
        }
    }
    Ok(())
}

fn port(host: SocketAddr, container: SocketAddr, protocol: Protocol) -> BoundPort {
    BoundPort {
        host,
        container,
        protocol,
    }
}

/// Binds one port the system picks on every address: the first address picks it, the others
/// take the same number. When another program holds that number on a later address, a new
/// number is tried.
fn bind_ephemeral(
    addresses: &[(IpAddr, bool)],
    container: SocketAddr,
    protocol: Protocol,
    bound: &mut Vec<(BoundPort, Socket)>,
) -> Result<(), ProxyError> {
    const ATTEMPTS: usize = 16;
    let Some((&(first_ip, _), rest)) = addresses.split_first() else {
        return Ok(());
    };
    let mut attempt = 0;
    'retry: loop {
        attempt += 1;
        let socket = bind(SocketAddr::new(first_ip, 0), protocol)?;
        let host = local_addr(&socket, SocketAddr::new(first_ip, 0), protocol)?;
        let mut here = vec![(port(host, container, protocol), socket)];
        for &(ip, optional) in rest {
            let addr = SocketAddr::new(ip, host.port());
            match bind_optional(addr, protocol, optional) {
                Ok(Some(socket)) => here.push((port(addr, container, protocol), socket)),
                Ok(None) => {}
                Err(ProxyError::Bind { source, .. })
                    if source.kind() == io::ErrorKind::AddrInUse && attempt < ATTEMPTS =>
                {
                    continue 'retry;
                }
                Err(e) => return Err(e),
            }
        }
        bound.extend(here);
        return Ok(());
    }
}

/// Binds `addr`; when `optional` and the host has no IPv6 (no IPv6 stack, or no `::1`),
/// answers `None` instead of failing.
fn bind_optional(
    addr: SocketAddr,
    protocol: Protocol,
    optional: bool,
) -> Result<Option<Socket>, ProxyError> {
    match bind(addr, protocol) {
        Ok(socket) => Ok(Some(socket)),
        Err(ProxyError::Bind { source, .. }) if optional && no_ipv6(&source) => {
            tracing::debug!(%addr, %protocol, error = %source, "skipping IPv6 address");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn no_ipv6(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::AddrNotAvailable
        || error.raw_os_error() == Some(nix::errno::Errno::EAFNOSUPPORT as i32)
}

fn bind(addr: SocketAddr, protocol: Protocol) -> Result<Socket, ProxyError> {
    bind_socket(addr, protocol).map_err(|source| ProxyError::Bind {
        addr,
        protocol,
        source,
    })
}

fn bind_socket(addr: SocketAddr, protocol: Protocol) -> io::Result<Socket> {
    let kind = match protocol {
        Protocol::Tcp => Type::STREAM,
        Protocol::Udp => Type::DGRAM,
    };
    let socket = Socket::new(Domain::for_address(addr), kind, None)?;
    if addr.is_ipv6() {
        // `[::]` must not also take IPv4: `0.0.0.0` is bound on its own.
        socket.set_only_v6(true)?;
    }
    if protocol == Protocol::Tcp {
        // Lets a restarted container take its ports back while old connections linger in
        // TIME_WAIT. Two listeners on one TCP port still conflict; for UDP this flag would
        // let two sockets share a port, so UDP goes without.
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if protocol == Protocol::Tcp {
        socket.listen(1024)?;
    }
    Ok(socket)
}

fn local_addr(
    socket: &Socket,
    addr: SocketAddr,
    protocol: Protocol,
) -> Result<SocketAddr, ProxyError> {
    socket
        .local_addr()
        .and_then(|a| {
            a.as_socket()
                .ok_or_else(|| io::Error::other("bound socket has no IP address"))
        })
        .map_err(|source| ProxyError::Bind {
            addr,
            protocol,
            source,
        })
}

/// Accepts clients until aborted; aborting drops the connection set, which ends every
/// connection of this port.
async fn serve_tcp(listener: TcpListener, container: SocketAddr, options: ProxyOptions) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    connections.spawn(proxy_tcp(client, peer, container, options.connect_timeout));
                }
                Err(e) => {
                    // Out of file descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection to a published port");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn proxy_tcp(
    mut client: TcpStream,
    peer: SocketAddr,
    container: SocketAddr,
    connect_timeout: Duration,
) {
    let upstream = tokio::time::timeout(connect_timeout, TcpStream::connect(container)).await;
    let mut upstream = match upstream {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%peer, %container, error = %e, "connecting to the container");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, %container, "connecting to the container timed out");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // Each direction ends with a shutdown of the other side's sending half, and the copy
    // goes on until both directions ended: half-closed connections keep working.
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%peer, %container, error = %e, "proxied connection ended");
    }
}

/// A UDP client's session: its own socket towards the container and the task sending the
/// container's replies back. Dropping it ends both.
struct Session {
    upstream: Arc<UdpSocket>,
    last_active: Arc<Mutex<Instant>>,
    replies: JoinHandle<()>,
}

impl Session {
    fn touch(&self) {
        touch(&self.last_active);
    }

    fn idle_since(&self) -> Instant {
        *self
            .last_active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

fn touch(last_active: &Mutex<Instant>) {
    *last_active
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
}

const DATAGRAM_MAX: usize = 65536;

async fn serve_udp(socket: Arc<UdpSocket>, container: SocketAddr, options: ProxyOptions) {
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    let idle = options.udp_idle_timeout;
    let mut sweep = tokio::time::interval((idle / 4).max(Duration::from_millis(10)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, client) = match received {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "receiving on a published UDP port");
                        continue;
                    }
                };
                if !sessions.contains_key(&client) && sessions.len() >= options.max_udp_sessions.max(1) {
                    let oldest = sessions.iter().min_by_key(|(_, s)| s.idle_since()).map(|(a, _)| *a);
                    if let Some(oldest) = oldest {
                        sessions.remove(&oldest);
                    }
                }
                let session = match sessions.entry(client) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => match open_session(&socket, client, container).await {
                        Ok(session) => e.insert(session),
                        Err(err) => {
                            tracing::warn!(%client, %container, error = %err, "opening a UDP session");
                            continue;
                        }
                    },
                };
                session.touch();
                // A refused earlier datagram (no listener yet) surfaces here as an error:
                // UDP gives no promise, so the datagram is just lost.
                if let Err(e) = session.upstream.send(&buf[..len]).await {
                    tracing::debug!(%client, %container, error = %e, "forwarding a datagram");
                }
            }
            _ = sweep.tick() => {
                sessions.retain(|_, s| s.idle_since().elapsed() < idle);
            }
        }
    }
}

async fn open_session(
    published: &Arc<UdpSocket>,
    client: SocketAddr,
    container: SocketAddr,
) -> io::Result<Session> {
    let local: SocketAddr = match container {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let upstream = UdpSocket::bind(local).await?;
    upstream.connect(container).await?;
    let upstream = Arc::new(upstream);
    let last_active = Arc::new(Mutex::new(Instant::now()));
    let replies = tokio::spawn(relay_replies(
        upstream.clone(),
        published.clone(),
        client,
        last_active.clone(),
    ));
    Ok(Session {
        upstream,
        last_active,
        replies,
    })
}

async fn relay_replies(
    upstream: Arc<UdpSocket>,
    published: Arc<UdpSocket>,
    client: SocketAddr,
    last_active: Arc<Mutex<Instant>>,
) {
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        match upstream.recv(&mut buf).await {
            Ok(len) => {
                touch(&last_active);
                if let Err(e) = published.send_to(&buf[..len], client).await {
                    tracing::debug!(%client, error = %e, "sending a reply to a UDP client");
                }
            }
            // The container had no listener for an earlier datagram: keep the session.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                tracing::debug!(%client, error = %e, "receiving from the container");
                return;
            }
        }
    }
}
