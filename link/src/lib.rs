//! GDP links over QUIC, shared by routers, capsule servers and clients.
//!
//! A [`Transport`] owns one quinn endpoint on one UDP socket (buffers sized
//! on purpose, see [`udp_socket`]). It accepts links from any peer that
//! proves a GDP name in the TLS handshake ([`TransportConfig::accept_policy`],
//! [`PeerPolicy::AnyName`] by default) and dials links to an address with
//! an expected name ([`PeerPolicy::Expect`]). Each link is one QUIC
//! connection, reached through a cloneable [`Link`] handle.
//!
//! # Data flow
//!
//! ```text
//!                 owner (router driver)
//!   Link::send / try_send /        ^  mpsc::Receiver<LinkEvent>
//!   send_batch / send_unreliable   |  (bounded: event_queue)
//!            |                     |  Up, Pdus{batch}, Malformed, Down
//!            v                     |
//!   reliable queue  datagram queue |
//!   (bounded bytes) (bounded count)|
//!            |            |        |
//!      stream writer  datagram   stream reader   datagram reader   supervisor
//!      one write per  writer     RunDecoder      one PDU per       conn.closed()
//!      wake-up            |      batch per read  datagram            -> Down
//!            v            v            ^              ^
//!        uni stream   datagrams    uni stream     datagrams
//!         (ours)                   (the peer's)
//!                   one QUIC connection per link
//! ```
//!
//! - **Reliable PDUs** travel on one long-lived unidirectional stream per
//!   direction, back to back as encoded PDUs (the framing of
//!   [`gdp_proto::frame`]). The writer takes *everything* queued at each
//!   wake-up and hands it to QUIC in one call; one write per PDU is several
//!   times slower. The reader reads up to 64 chunks at once, copies them
//!   into its [`RunDecoder`](gdp_proto::frame::RunDecoder)'s block (one
//!   copy per byte; a PDU cut by a chunk boundary needs no other), and
//!   delivers every complete PDU of that read as one [`LinkEvent::Pdus`]
//!   batch of `Bytes` sharing that block (or offers the read to the
//!   link's [`Forwarder`] first).
//! - **Unreliable PDUs** go one per QUIC datagram. One that does not fit
//!   the link's datagram size goes on the reliable stream instead (see
//!   [`Link::send_unreliable`]).
//!
//! # Bounded queues
//!
//! Every queue has a bound, and what happens at the bound is fixed:
//!
//! | queue | bound | when full |
//! | --- | --- | --- |
//! | reliable send, per link | [`TransportConfig::link_queue_bytes`] | [`Link::send`] waits, [`Link::try_send`] returns [`SendError::Full`] |
//! | unreliable send, per link | [`TransportConfig::datagram_queue`] | dropped, counted in [`LinkStats::dropped_unreliable_out`] |
//! | events to the owner | [`TransportConfig::event_queue`] | reliable readers wait (QUIC flow control then slows the peer); unreliable batches dropped, counted in [`LinkStats::dropped_unreliable_in`] |
//! | QUIC receive, per link | [`TransportConfig::stream_receive_window`], [`TransportConfig::datagram_receive_buffer`] | flow control; oldest datagrams dropped |
//! | inbound handshakes | [`TransportConfig::max_pending_handshakes`] | new connections refused |
//! | links | [`TransportConfig::max_links`] | new connections refused, dials fail |
//!
//! # Malformed input
//!
//! A datagram that is not exactly one valid PDU is dropped and reported as
//! [`LinkEvent::Malformed`]. A framing error on the reliable stream (bad
//! header, oversized length) leaves the stream out of sync: it is reported,
//! the stream is stopped and read no more, and the owner should close the
//! link. At [`TransportConfig::malformed_limit`] malformed PDUs the
//! transport closes the link itself.
//!
//! # Link lifetime and shutdown
//!
//! For each link the owner receives one `Up` (before any of its PDUs), then
//! `Pdus` and `Malformed`, then one `Down` when the connection is gone for
//! any reason: closed by either side, idle timeout, failure. The transport
//! never re-dials; reconnecting is the owner's decision.
//! [`Link::close`] closes one link at once (queued PDUs are discarded).
//! [`Transport::shutdown`] is the graceful path: it stops accepting,
//! refuses new sends, waits (bounded) until every link's queued PDUs are
//! written and acknowledged, closes every link with
//! [`CloseCode::Shutdown`], and waits (bounded) for the endpoint to go
//! idle. Once every link's `Down` has been delivered after a shutdown, the
//! event channel ends. Dropping every `Transport` handle without a
//! shutdown closes all links abruptly.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use gdp_certs::{Identity, Kind, Name};
//! use gdp_proto::Encode;
//! use gdp_proto::pdu::{Pdu, PduHeader, PduType};
//! use gdp_link::{LinkEvent, Transport, TransportConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = TransportConfig::new("127.0.0.1:0".parse()?);
//! let router_id = Identity::generate(Kind::Router, "r1")?;
//! let router_name = router_id.name();
//! let (router, mut router_events) = Transport::bind(router_id, config.clone())?;
//! let (client, _client_events) =
//!     Transport::bind(Identity::generate(Kind::Client, "c1")?, config)?;
//!
//! // The client dials the router by address and expected name.
//! let link = client.dial(router.local_addr(), router_name).await?;
//! let header = PduHeader::new(PduType::Data, router_name, client.name(), 1);
//! link.send(Pdu::new(header, Bytes::from_static(b"hello"))?.to_bytes()).await?;
//!
//! // The router learns who connected, then receives the PDU.
//! match router_events.recv().await {
//!     Some(LinkEvent::Up { peer, .. }) => assert_eq!(peer.name(), client.name()),
//!     other => panic!("expected Up, got {other:?}"),
//! }
//! match router_events.recv().await {
//!     Some(LinkEvent::Pdus { pdus, reliable: true, .. }) => assert_eq!(pdus.len(), 1),
//!     other => panic!("expected Pdus, got {other:?}"),
//! }
//! client.shutdown("done").await;
//! router.shutdown("done").await;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use gdp_certs::tls::{self, PeerPolicy};
use gdp_certs::{Identity, Name, TlsError};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

mod config;
pub mod endpoint;
mod event;
mod forward;
mod link;
mod queue;
mod socket;
mod tasks;

pub use config::TransportConfig;
pub use event::{CloseCode, Direction, DownReason, LinkEvent, LinkId};
pub use forward::{Forwarder, LinkForwarder};

use event::is_crypto;
pub use link::{Link, LinkStats, SendError, UnreliableOutcome};
pub use socket::{SocketBuffers, udp_socket};

use link::LinkShared;
use tasks::LinkIo;

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
    /// and close the link at once; see [`DownReason::is_tls_refusal`].)
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
/// same transport. See the [module documentation](self) for the data flow.
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
        tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let quic = Arc::new(config.quinn_transport_config()?);
        // Fails early for an identity that cannot hold links.
        tls::client_config(&identity, PeerPolicy::AnyName)?;
        let server = if config.accept_incoming {
            let mut server = tls::quinn_server_config(&identity, config.accept_policy.clone())?;
            server.transport_config(quic.clone());
            Some(server)
        } else {
            None
        };
        let (socket, buffers) = udp_socket(
            config.bind,
            config.socket_send_buffer,
            config.socket_recv_buffer,
        )
        .map_err(|source| TransportError::Io {
            what: "binding the udp socket",
            source,
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
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
    /// which [`DownReason::is_tls_refusal`] holds.
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
            return Err(DialError::TooManyLinks {
                max: inner.config.max_links,
            });
        }
        let mut client = tls::quinn_client_config(&inner.identity, policy.clone())?;
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
        inner.register(conn, peer, Direction::Outbound).await
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
        ));
        let link = Link {
            shared: shared.clone(),
        };
        {
            let mut links = lock(&self.links);
            if links.len() >= self.config.max_links {
                drop(links);
                tracing::warn!(peer = %peer.name(), max = self.config.max_links, "link refused: too many links");
                shared.close(CloseCode::Normal, "too many links");
                return Err(DialError::TooManyLinks {
                    max: self.config.max_links,
                });
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
        });
        Ok(link)
    }
}

/// Accepts incoming connections until the transport stops, handshaking each
/// in its own task (at most `max_pending_handshakes` at once).
async fn accept_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let handshakes = Arc::new(Semaphore::new(inner.config.max_pending_handshakes));
    loop {
        let incoming = tokio::select! {
            _ = stop.changed() => return,
            incoming = inner.endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
        };
        if inner.link_count() >= inner.config.max_links {
            tracing::warn!(remote = %incoming.remote_address(), "refused: too many links");
            incoming.refuse();
            continue;
        }
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(remote = %incoming.remote_address(), "refused: too many handshakes");
            incoming.refuse();
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            inner.accept_one(incoming).await;
            drop(permit);
        });
    }
}
