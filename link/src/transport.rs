//! The transport: one quinn endpoint on one UDP socket, holding GDP links.
//!
//! A [`Transport`] binds its socket with sized buffers, accepts links from
//! peers that prove a GDP name in the TLS handshake (at most
//! [`TransportConfig::max_pending_handshakes`] handshakes at once, at most
//! [`TransportConfig::max_links`] links), dials peers expected to prove a
//! name, and keeps the table of its links. For each new link it sends the
//! owner [`LinkEvent::Up`] and then starts the link's tasks (see
//! `tasks`), which deliver the rest of the link's events. The graceful end
//! is [`Transport::shutdown`]; dropping the last handle closes everything
//! at once. See the [crate documentation](crate) for the data flow and the
//! bounded queues.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use gdp_certs::tls::{self, PeerPolicy};
use gdp_certs::{Identity, Name, TlsError};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{HANDSHAKE_WAIT_MAX, MAX_PACED_ADDRESSES};
use crate::event::is_crypto;
use crate::link::LinkShared;
use crate::pace::{HandshakePacer, Pace};
use crate::tasks::{self, LinkIo};
use crate::{
    CloseCode, Direction, Forwarder, Link, LinkEvent, LinkId, LinkStats, SocketBuffers,
    TransportConfig, queue, size_udp_socket, udp_socket,
};

/// Why a transport could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The settings are inconsistent.
    #[error("invalid transport configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The identity cannot be used for TLS.
    #[error("tls identity: {0}")]
    Tls(#[from] TlsError),
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// [`Transport::bind`] was called outside a tokio runtime.
    #[error("a transport must be created inside a tokio runtime")]
    NoRuntime,
}

/// Why a dial did not produce a link.
///
/// `Handshake` and `Timeout` are about the peer or the path; the rest are
/// local.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The transport is shutting down.
    #[error("the transport is shutting down")]
    ShuttingDown,
    /// The transport already holds [`TransportConfig::max_links`] links.
    #[error("the transport already holds its maximum of {max} links")]
    TooManyLinks {
        /// The limit.
        max: usize,
    },
    /// The local TLS identity could not be prepared.
    #[error("tls identity: {0}")]
    Tls(#[from] TlsError),
    /// quinn refused to start the connection (for example an unroutable
    /// address).
    #[error("cannot dial {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// quinn's reason.
        #[source]
        source: quinn::ConnectError,
    },
    /// The handshake failed: the peer is not the expected name, refused this
    /// side, or spoke something else. A name mismatch arrives as a QUIC
    /// crypto error whose text is the [`TlsError`].
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        /// The address dialed.
        addr: SocketAddr,
        /// quinn's reason.
        #[source]
        source: quinn::ConnectionError,
    },
    /// No handshake completed within [`TransportConfig::handshake_timeout`].
    #[error("handshake with {addr} timed out after {after:?}")]
    Timeout {
        /// The address dialed.
        addr: SocketAddr,
        /// The timeout.
        after: Duration,
    },
    /// The handshake completed but the peer's certificate does not read
    /// back as the expected identity (the TLS verifier should already have
    /// refused it).
    #[error("the peer at {addr} did not prove {expected}: {reason}")]
    UnexpectedPeer {
        /// The address dialed.
        addr: SocketAddr,
        /// The name expected ([`Name::ZERO`] when the policy named none).
        expected: Name,
        /// What was found instead.
        reason: String,
    },
}

impl DialError {
    /// True if the TLS handshake itself failed (a QUIC crypto error): the
    /// peer did not prove the expected name, or refused ours. (A listener
    /// that refuses the dialer's identity may instead let the dial succeed
    /// and close the link at once; see [`DownReason::is_tls_refusal`](crate::DownReason::is_tls_refusal).)
    pub fn is_tls_refusal(&self) -> bool {
        let DialError::Handshake { source, .. } = self else {
            return false;
        };
        let code = match source {
            quinn::ConnectionError::TransportError(e) => e.code,
            quinn::ConnectionError::ConnectionClosed(close) => close.error_code,
            _ => return false,
        };
        is_crypto(code)
    }
}

/// What [`Transport::shutdown`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Links open when the shutdown began.
    pub links: usize,
    /// Of those, links whose queued PDUs were all acknowledged in time.
    pub flushed: usize,
    /// Whether every connection finished closing in time.
    pub idle: bool,
}

/// Links the transport refused, by reason, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// Inbound connections refused because their source address already
    /// held [`TransportConfig::max_links_per_address`] links.
    pub links_refused_per_address: u64,
    /// Connections refused (or dials failed) because the transport held
    /// [`TransportConfig::max_links`] links.
    pub links_refused_max: u64,
    /// Inbound connections refused because
    /// [`TransportConfig::max_pending_handshakes`] handshakes were in
    /// progress.
    pub handshakes_refused: u64,
    /// Inbound connections refused because their source address's turn
    /// under [`TransportConfig::handshakes_per_address`] was more than
    /// [`HANDSHAKE_WAIT_MAX`](crate::HANDSHAKE_WAIT_MAX) off.
    pub handshakes_refused_rate: u64,
    /// Inbound handshakes that waited for their turn under
    /// [`TransportConfig::handshakes_per_address`].
    pub handshakes_paced: u64,
    /// Inbound links up now, summed over every source address.
    pub inbound_links: u64,
    /// Source addresses with at least one inbound link now.
    pub inbound_addresses: u64,
}

/// The refusal counters behind [`TransportStats`].
#[derive(Debug, Default)]
struct Refusals {
    per_address: AtomicU64,
    max_links: AtomicU64,
    handshakes: AtomicU64,
    handshake_rate: AtomicU64,
    /// Not a refusal: handshakes that waited for their turn.
    paced: AtomicU64,
}

/// The source address a per-address limit counts: IPv4-mapped IPv6
/// addresses count as their IPv4 address.
fn source_ip(addr: SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

/// State shared by the transport's handles and tasks.
struct Inner {
    endpoint: quinn::Endpoint,
    identity: Identity,
    config: TransportConfig,
    quic: Arc<quinn::TransportConfig>,
    buffers: SocketBuffers,
    local_addr: SocketAddr,
    /// The owner's channel; taken at shutdown so that it ends once every
    /// link task is done.
    events: Mutex<Option<mpsc::Sender<LinkEvent>>>,
    links: Mutex<HashMap<LinkId, Link>>,
    /// Inbound links up per source address (locked after `links`).
    per_address: Mutex<HashMap<IpAddr, usize>>,
    refusals: Refusals,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    stop_accepting: watch::Sender<bool>,
    /// Offered each read of every link started after it was set.
    forwarder: OnceLock<Arc<dyn Forwarder>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Closes everything when the last [`Transport`] handle goes.
struct Owner {
    inner: Arc<Inner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.stop();
        self.inner
            .endpoint
            .close(CloseCode::Shutdown.varint(), b"transport dropped");
    }
}

/// A QUIC endpoint holding GDP links. Cloning makes another handle to the
/// same transport. See the [crate documentation](crate) for the data flow.
#[derive(Clone)]
pub struct Transport {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("name", &self.name())
            .field("local_addr", &self.local_addr())
            .field("links", &self.link_count())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds a transport for `identity` as `config` says and starts
    /// accepting links (unless [`TransportConfig::accept_incoming`] is
    /// off). Returns the transport and the receiver of its events, which the
    /// owner must keep reading: when it is full, links stall.
    ///
    /// Must be called inside a tokio runtime.
    pub fn bind(
        identity: Identity,
        config: TransportConfig,
    ) -> Result<(Transport, mpsc::Receiver<LinkEvent>), TransportError> {
        Self::start(identity, config, None)
    }

    /// Like [`bind`](Self::bind), on `socket`, a UDP socket the caller has
    /// bound already ([`TransportConfig::bind`] is not used): its buffers
    /// are sized as `config` says and it is made non-blocking. For a caller
    /// that must hold the address before the transport exists, such as a
    /// test that reserves the port of a peer which starts later.
    ///
    /// Must be called inside a tokio runtime.
    pub fn bind_socket(
        identity: Identity,
        config: TransportConfig,
        socket: std::net::UdpSocket,
    ) -> Result<(Transport, mpsc::Receiver<LinkEvent>), TransportError> {
        Self::start(identity, config, Some(socket))
    }

    /// [`bind`](Self::bind) on a new socket, or
    /// [`bind_socket`](Self::bind_socket) on `socket`.
    fn start(
        identity: Identity,
        config: TransportConfig,
        socket: Option<std::net::UdpSocket>,
    ) -> Result<(Transport, mpsc::Receiver<LinkEvent>), TransportError> {
        tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let quic = Arc::new(config.quinn_transport_config()?);
        // Fails early for an identity that cannot hold links.
        tls::client_config(&identity, PeerPolicy::AnyName)?;
        let server = if config.accept_incoming {
            let mut server = tls::quinn_server_config_offering(
                &identity,
                config.accept_policy.clone(),
                config.protocols(),
            )?;
            server.transport_config(quic.clone());
            Some(server)
        } else {
            None
        };
        let (socket, buffers) = match socket {
            None => udp_socket(
                config.bind,
                config.socket_send_buffer,
                config.socket_recv_buffer,
            )
            .map_err(|source| TransportError::Io {
                what: "binding the udp socket",
                source,
            })?,
            Some(socket) => {
                let buffers = size_udp_socket(
                    &socket,
                    config.socket_send_buffer,
                    config.socket_recv_buffer,
                )
                .map_err(|source| TransportError::Io {
                    what: "sizing the udp socket",
                    source,
                })?;
                (socket, buffers)
            }
        };
        // Stateless resets keyed from the identity: peers of a restarted
        // process drop its old links at once (see `reset`).
        let mut endpoint_config =
            quinn::EndpointConfig::new(Arc::new(crate::reset::ResetKey::of(&identity)));
        let cid_key = crate::reset::cid_key(&identity);
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            server,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Io {
            what: "starting the quic endpoint",
            source,
        })?;
        let local_addr = endpoint.local_addr().map_err(|source| TransportError::Io {
            what: "reading the bound address",
            source,
        })?;
        let (events_tx, events_rx) = mpsc::channel(config.event_queue);
        let (stop_accepting, stop_rx) = watch::channel(false);
        let accept = config.accept_incoming;
        tracing::info!(name = %identity.name(), %local_addr, accept, "transport bound");
        let inner = Arc::new(Inner {
            endpoint,
            identity,
            config,
            quic,
            buffers,
            local_addr,
            events: Mutex::new(Some(events_tx)),
            links: Mutex::new(HashMap::new()),
            per_address: Mutex::new(HashMap::new()),
            refusals: Refusals::default(),
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            stop_accepting,
            forwarder: OnceLock::new(),
        });
        if accept {
            tokio::spawn(accept_loop(inner.clone(), stop_rx));
        }
        Ok((
            Transport {
                owner: Arc::new(Owner { inner }),
            },
            events_rx,
        ))
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.owner.inner
    }

    /// The name this transport proves to its peers.
    pub fn name(&self) -> Name {
        self.inner().identity.name()
    }

    /// The UDP address the transport is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner().local_addr
    }

    /// Sets the [`Forwarder`] that the stream reader of every link started
    /// from now on offers its PDUs to before delivering them as events.
    /// Set it before the first link comes up (right after [`Transport::bind`]):
    /// links already up keep delivering everything as events. A forwarder
    /// is set once; a second one is handed back.
    pub fn set_forwarder(&self, forwarder: Arc<dyn Forwarder>) -> Result<(), Arc<dyn Forwarder>> {
        self.inner().forwarder.set(forwarder)
    }

    /// The socket buffer sizes the kernel granted.
    pub fn socket_buffers(&self) -> SocketBuffers {
        self.inner().buffers
    }

    /// Dials a link to `addr`, which must prove the name `expected`. On
    /// success the owner also receives [`LinkEvent::Up`] for the link (before
    /// this returns).
    ///
    /// A peer that does not prove `expected` fails the dial. A peer that
    /// refuses *this* side's name may do so only after the dial has
    /// succeeded (under TLS 1.3 the listener checks the dialer's
    /// certificate last): the link then goes down at once with a reason for
    /// which [`DownReason::is_tls_refusal`](crate::DownReason::is_tls_refusal) holds.
    pub async fn dial(&self, addr: SocketAddr, expected: Name) -> Result<Link, DialError> {
        self.dial_with_policy(addr, PeerPolicy::Expect(expected))
            .await
    }

    /// Dials a link to `addr` whose peer must satisfy `policy`, as
    /// [`Transport::dial`] does for [`PeerPolicy::Expect`]. Under
    /// [`PeerPolicy::AnyName`] or [`PeerPolicy::Kinds`] the caller learns
    /// which name the peer proved from [`Link::peer`] and decides whether
    /// to trust it.
    pub async fn dial_with_policy(
        &self,
        addr: SocketAddr,
        policy: PeerPolicy,
    ) -> Result<Link, DialError> {
        let inner = self.inner();
        if inner.is_shutting_down() {
            return Err(DialError::ShuttingDown);
        }
        if inner.link_count() >= inner.config.max_links {
            inner.refusals.max_links.fetch_add(1, Ordering::Relaxed);
            return Err(DialError::TooManyLinks {
                max: inner.config.max_links,
            });
        }
        let mut client = tls::quinn_client_config_offering(
            &inner.identity,
            policy.clone(),
            inner.config.protocols(),
        )?;
        client.transport_config(inner.quic.clone());
        let connecting = inner
            .endpoint
            .connect_with(client, addr, tls::SERVER_NAME)
            .map_err(|source| DialError::Connect { addr, source })?;
        let after = inner.config.handshake_timeout;
        let conn = match tokio::time::timeout(after, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(source)) => return Err(DialError::Handshake { addr, source }),
            Err(_) => return Err(DialError::Timeout { addr, after }),
        };
        let peer = match tls::quinn_peer_identity(&conn) {
            Ok(peer) => match policy.check(&peer) {
                Ok(()) => peer,
                Err(e) => {
                    conn.close(CloseCode::ProtocolViolation.varint(), b"unexpected name");
                    let expected = match policy {
                        PeerPolicy::Expect(name) => name,
                        _ => Name::ZERO,
                    };
                    return Err(DialError::UnexpectedPeer {
                        addr,
                        expected,
                        reason: e.to_string(),
                    });
                }
            },
            Err(e) => {
                conn.close(CloseCode::ProtocolViolation.varint(), b"no identity");
                return Err(DialError::UnexpectedPeer {
                    addr,
                    expected: match policy {
                        PeerPolicy::Expect(name) => name,
                        _ => Name::ZERO,
                    },
                    reason: e.to_string(),
                });
            }
        };
        // Registered in a task of its own, so that a caller that drops the
        // dial once the link is made never leaves it half-registered (in
        // the table and announced, with no tasks).
        let inner = inner.clone();
        tokio::spawn(async move { inner.register(conn, peer, Direction::Outbound).await })
            .await
            .unwrap_or(Err(DialError::ShuttingDown))
    }

    /// The link with this id, if it is up.
    pub fn link(&self, id: LinkId) -> Option<Link> {
        lock(&self.inner().links).get(&id).cloned()
    }

    /// Every link that is up.
    pub fn links(&self) -> Vec<Link> {
        lock(&self.inner().links).values().cloned().collect()
    }

    /// How many links are up.
    pub fn link_count(&self) -> usize {
        self.inner().link_count()
    }

    /// Closes the link `id` at once with `reason` (see [`Link::close`]);
    /// false if no such link is up.
    pub fn close(&self, id: LinkId, reason: &str) -> bool {
        match self.link(id) {
            Some(link) => {
                link.close(reason);
                true
            }
            None => false,
        }
    }

    /// The transport's refusal counters and inbound address gauges.
    pub fn transport_stats(&self) -> TransportStats {
        let inner = self.inner();
        let (inbound_links, inbound_addresses) = {
            let per = lock(&inner.per_address);
            (per.values().sum::<usize>() as u64, per.len() as u64)
        };
        let r = &inner.refusals;
        TransportStats {
            links_refused_per_address: r.per_address.load(Ordering::Relaxed),
            links_refused_max: r.max_links.load(Ordering::Relaxed),
            handshakes_refused: r.handshakes.load(Ordering::Relaxed),
            handshakes_refused_rate: r.handshake_rate.load(Ordering::Relaxed),
            handshakes_paced: r.paced.load(Ordering::Relaxed),
            inbound_links,
            inbound_addresses,
        }
    }

    /// The statistics of link `id`, if it is up.
    pub fn stats(&self, id: LinkId) -> Option<LinkStats> {
        self.link(id).map(|l| l.stats())
    }

    /// Shuts the transport down gracefully: stops accepting links and
    /// refuses new sends, waits up to [`TransportConfig::shutdown_timeout`]
    /// for every link's queued PDUs to be written and acknowledged, closes
    /// every link with [`CloseCode::Shutdown`] and `reason`, then waits up
    /// to `shutdown_timeout` again for the peers to acknowledge the closes.
    /// Every link's `Down` follows, then the event channel ends.
    pub async fn shutdown(&self, reason: &str) -> ShutdownReport {
        let inner = self.inner();
        inner.stop();
        let links = self.links();
        let timeout = inner.config.shutdown_timeout;
        let mut flushes = JoinSet::new();
        for link in &links {
            let link = link.clone();
            flushes.spawn(async move { link.flush().await });
        }
        let mut flushed = 0;
        let deadline = Instant::now() + timeout;
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, flushes.join_next()).await {
            if matches!(done, Ok(true)) {
                flushed += 1;
            }
        }
        flushes.abort_all();
        for link in &links {
            link.shared.close(CloseCode::Shutdown, reason);
        }
        inner
            .endpoint
            .close(CloseCode::Shutdown.varint(), reason.as_bytes());
        let idle = tokio::time::timeout(timeout, inner.endpoint.wait_idle())
            .await
            .is_ok();
        tracing::info!(links = links.len(), flushed, idle, "transport shut down");
        ShutdownReport {
            links: links.len(),
            flushed,
            idle,
        }
    }
}

impl Inner {
    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    fn link_count(&self) -> usize {
        lock(&self.links).len()
    }

    /// Inbound links up from `ip` now.
    fn links_from(&self, ip: IpAddr) -> usize {
        lock(&self.per_address).get(&ip).copied().unwrap_or(0)
    }

    /// An inbound link from `ip` is gone.
    fn inbound_gone(&self, ip: IpAddr) {
        let mut per = lock(&self.per_address);
        if let Some(n) = per.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&ip);
            }
        }
    }

    fn events(&self) -> Option<mpsc::Sender<LinkEvent>> {
        lock(&self.events).clone()
    }

    /// Stops accepting links and new registrations; releases the owner's
    /// channel so it ends once the link tasks are done.
    fn stop(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.stop_accepting.send(true);
        self.endpoint.set_server_config(None);
        lock(&self.events).take();
    }

    /// Completes the handshake of an incoming connection and registers it.
    async fn accept_one(self: Arc<Self>, incoming: quinn::Incoming) {
        let remote = incoming.remote_address();
        let connecting = match incoming.accept() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "incoming connection failed");
                return;
            }
        };
        let conn = match tokio::time::timeout(self.config.handshake_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::info!(%remote, error = %e, "inbound handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(%remote, "inbound handshake timed out");
                return;
            }
        };
        let peer = match tls::quinn_peer_identity(&conn) {
            Ok(peer) => peer,
            Err(e) => {
                tracing::info!(%remote, error = %e, "inbound peer has no readable identity");
                conn.close(CloseCode::ProtocolViolation.varint(), b"no identity");
                return;
            }
        };
        // A refusal here is logged by `register`; nobody else is waiting.
        let _ = self.register(conn, peer, Direction::Inbound).await;
    }

    /// Makes a link of an established connection: enters it in the table,
    /// tells the owner, starts its tasks.
    async fn register(
        self: &Arc<Self>,
        conn: quinn::Connection,
        peer: gdp_certs::PublicIdentity,
        direction: Direction,
    ) -> Result<Link, DialError> {
        let events = match self.events() {
            Some(events) if !self.is_shutting_down() => events,
            _ => {
                conn.close(CloseCode::Shutdown.varint(), b"shutting down");
                return Err(DialError::ShuttingDown);
            }
        };
        let id = LinkId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (queue_tx, queue_rx) = queue::queue(self.config.link_queue_bytes);
        let (datagram_tx, datagram_rx) = mpsc::channel(self.config.datagram_queue);
        let shared = Arc::new(LinkShared::new(
            id,
            peer.clone(),
            conn,
            direction,
            queue_tx,
            datagram_tx,
            &self.config,
        ));
        let inbound = (direction == Direction::Inbound).then(|| source_ip(shared.remote_addr));
        let link = Link {
            shared: shared.clone(),
        };
        {
            let mut links = lock(&self.links);
            if links.len() >= self.config.max_links {
                drop(links);
                self.refusals.max_links.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.name(), max = self.config.max_links, "link refused: too many links");
                shared.close(CloseCode::Normal, "too many links");
                return Err(DialError::TooManyLinks {
                    max: self.config.max_links,
                });
            }
            if let Some(ip) = inbound {
                let mut per = lock(&self.per_address);
                let n = per.entry(ip).or_insert(0);
                if *n >= self.config.max_links_per_address {
                    drop(per);
                    drop(links);
                    self.refusals.per_address.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %peer.name(), %ip, max = self.config.max_links_per_address,
                        "link refused: too many links from its address");
                    shared.close(CloseCode::Normal, "too many links from this address");
                    return Err(DialError::TooManyLinks {
                        max: self.config.max_links_per_address,
                    });
                }
                *n += 1;
            }
            links.insert(id, link.clone());
        }
        // A shutdown that began after the check above may have missed this
        // link in its snapshot; close it here instead.
        if self.is_shutting_down() {
            shared.close(CloseCode::Shutdown, "shutting down");
        }
        let remote_addr = shared.remote_addr;
        tracing::info!(link = %id, peer = %peer.name(), kind = %peer.metadata().kind(),
            %remote_addr, ?direction, "link up");
        let up = LinkEvent::Up {
            link_id: id,
            peer: Box::new(peer),
            remote_addr,
            direction,
            link: link.clone(),
        };
        if events.send(up).await.is_err() {
            lock(&self.links).remove(&id);
            if let Some(ip) = inbound {
                self.inbound_gone(ip);
            }
            shared.close(CloseCode::Shutdown, "transport owner gone");
            return Err(DialError::ShuttingDown);
        }
        let io = LinkIo {
            queue: queue_rx,
            datagrams: datagram_rx,
            events,
            malformed_limit: self.config.malformed_limit,
            forwarder: self.forwarder.get().and_then(|f| f.open(&link)),
        };
        let this = self.clone();
        tasks::spawn_link(shared, io, move |id| {
            lock(&this.links).remove(&id);
            if let Some(ip) = inbound {
                this.inbound_gone(ip);
            }
        });
        Ok(link)
    }
}

/// Accepts incoming connections until the transport stops, handshaking each
/// in its own task (at most `max_pending_handshakes` at once, each source
/// address paced by `handshakes_per_address`).
async fn accept_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let handshakes = Arc::new(Semaphore::new(inner.config.max_pending_handshakes));
    let mut pacer = HandshakePacer::new(
        inner.config.handshakes_per_address,
        inner.config.handshake_burst_per_address,
        HANDSHAKE_WAIT_MAX,
        MAX_PACED_ADDRESSES,
    );
    loop {
        let incoming = tokio::select! {
            _ = stop.changed() => return,
            incoming = inner.endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
        };
        let remote = incoming.remote_address();
        if inner.link_count() >= inner.config.max_links {
            inner.refusals.max_links.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%remote, "refused: too many links");
            incoming.refuse();
            continue;
        }
        // Checked again when the link registers (handshakes from one
        // address may be in progress together).
        if inner.links_from(source_ip(remote)) >= inner.config.max_links_per_address {
            inner.refusals.per_address.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, "refused: too many links from this address");
            incoming.refuse();
            continue;
        }
        let wait = match pacer.admit(source_ip(remote), Instant::now()) {
            Pace::Now => None,
            Pace::After(wait) => {
                inner.refusals.paced.fetch_add(1, Ordering::Relaxed);
                Some(wait)
            }
            Pace::Refuse => {
                inner
                    .refusals
                    .handshake_rate
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, "refused: handshakes from this address come too fast");
                incoming.refuse();
                continue;
            }
        };
        let (inner, handshakes, mut stop) = (inner.clone(), handshakes.clone(), stop.clone());
        tokio::spawn(async move {
            // A handshake whose turn comes later waits for it (its Initial
            // packet held, at most HANDSHAKE_WAIT_MAX), then takes a
            // handshake slot like any other.
            if let Some(wait) = wait {
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            let Ok(permit) = handshakes.try_acquire_owned() else {
                inner.refusals.handshakes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%remote, "refused: too many handshakes");
                incoming.refuse();
                return;
            };
            inner.accept_one(incoming).await;
            drop(permit);
        });
    }
}
