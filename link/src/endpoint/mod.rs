//! The endpoint side of a link to a router, for capsule servers and clients.
//!
//! An endpoint (a capsule server or a client) reaches the GDP through one
//! router. [`EndpointLink::connect`] binds a dial-only [`Transport`], dials
//! the router and attaches:
//!
//! ```text
//!   endpoint                                   router
//!      | ---- QUIC + TLS, both names proved ---> |
//!      | <---------- AttachChallenge ----------- |  router name, fresh nonce
//!      | ----------- AttachProof --------------> |  metadata, RtCert for the router,
//!      |                                         |  signature over the challenge
//!      | <---------- AttachAccepted ------------ |  (or AttachRejected { reason })
//!      | ----------- Advertise (servers) ------> |  capsules with their AdCerts
//!      | <=========== PDUs both ways ==========> |
//! ```
//!
//! The handshake is a sans-IO state machine of the protocol crate,
//! [`EndpointAttach`], which this module feeds with the link's PDUs and the
//! wall clock (the router's simulation drives the same one): it refuses a
//! challenge naming another router than the one the TLS handshake proved,
//! and an acceptance of another name or before any proof.
//!
//! The RtCert in the proof names the challenging router and is valid from
//! [`EndpointConfig::clock_skew`] before the attach until
//! [`EndpointConfig::rtcert_validity`] after it. The router's route records
//! for this endpoint (and for the capsules a server advertises) never
//! outlive that certificate, so a long-lived endpoint attaches again
//! before it runs out (see [`EndpointLink::renew_at`]); a new attach issues
//! a new certificate.
//!
//! # Which router: expected name or trust on first use
//!
//! With [`EndpointConfig::router`] set, the TLS handshake accepts only a
//! peer that proves that name ([`PeerPolicy::Expect`]). Without it, any
//! principal whose metadata says it is a router is accepted
//! ([`PeerPolicy::Kinds`]`([Router])`): the endpoint trusts whichever router
//! answers at the address the first time (*trust on first use*), as an SSH
//! client does with an unknown host key. [`connect_with_retry`] then pins
//! that name in the configuration, so every later reconnect through the
//! same configuration insists on the same router. Either way the attach
//! challenge must name the router the TLS handshake proved.
//!
//! # Data flow
//!
//! ```text
//!   owner ── send / send_batch / send_unreliable / advertise ──► Link queues ──► router
//!                 (reliable: bounded in bytes, send waits when full)
//!
//!   router ──► link reader ── LinkEvent::Pdus (batches, bounded) ──► EndpointReceiver::recv
//!              (one task)                                            decodes each PDU as it is taken:
//!                                                                    EndpointEvent::Pdu
//!                                                                    EndpointEvent::NakNoRoute
//!                                                                    EndpointEvent::Down (last)
//! ```
//!
//! The receiver reads the transport's events itself, with no task in
//! between, and decodes each PDU only when the owner takes it. A batch
//! holds its share of the transport's queue
//! ([`EndpointConfig::incoming_queue`] batches at most) until the owner has
//! taken all of it, so an owner that falls behind slows the router down
//! through QUIC flow control instead of losing PDUs. PDUs that do not
//! decode, and link-local control PDUs after the attach, are dropped and
//! counted ([`EndpointLink::dropped_incoming`]). An owner that drops its
//! [`EndpointReceiver`] discards what arrives (a task reads the rest until
//! the link is down).
//!
//! # Lifetime, shutdown and reconnecting
//!
//! Each [`EndpointLink::connect`] makes one link on its own transport. When
//! the link goes down for any reason the receiver yields
//! [`EndpointEvent::Down`] and then `None`, and [`EndpointLink::closed`]
//! resolves; the link is never re-dialed by itself. Reconnecting is a loop
//! the owner runs, usually with [`connect_with_retry`] and a [`Backoff`],
//! then advertising again. [`EndpointLink::shutdown`] is the graceful end:
//! it waits (bounded) until what is queued has been acknowledged by the
//! router, then closes the link. Dropping every handle closes it abruptly.
//!
//! # Example
//!
//! ```no_run
//! use gdp_certs::{Identity, Kind};
//! use gdp_link::endpoint::{Backoff, EndpointConfig, EndpointEvent, connect_with_retry};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::generate(Kind::Client, "reader")?;
//! let mut config = EndpointConfig::new("127.0.0.1:7474".parse()?);
//! let mut backoff = Backoff::default();
//! loop {
//!     let (link, mut incoming) = connect_with_retry(&identity, &mut config, &mut backoff).await?;
//!     println!("attached to router {}", link.router_name());
//!     while let Some(event) = incoming.recv().await {
//!         match event {
//!             EndpointEvent::Pdu { pdu, .. } => println!("{} bytes from {}", pdu.payload.len(), pdu.header.src),
//!             EndpointEvent::NakNoRoute(nak) => println!("no route to {}", nak.unreachable),
//!             EndpointEvent::Down(reason) => println!("link down: {reason}"),
//!             _ => {}
//!         }
//!     }
//! }
//! # }
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::RtCert;
use gdp_certs::codec::Encode;
use gdp_certs::tls::PeerPolicy;
use gdp_certs::{Identity, Kind, Name, PublicIdentity, Timestamp};
use gdp_proto::attach::{EndpointAttach, EndpointAttachError, RtCertValidity};
use gdp_proto::control::{AdvertiseEntry, ControlMessage};
use gdp_proto::pdu::{Flags, Pdu, PduError};
use rand::Rng;
use tokio::sync::mpsc;

mod incoming;
mod retry;

pub use incoming::{EndpointEvent, EndpointReceiver, Nak};
pub use retry::{Backoff, connect_with_retry};

use incoming::Dropped;

use crate::{
    CloseCode, DialError, DownReason, Link, LinkEvent, LinkStats, SendError, ShutdownReport,
    Transport, TransportConfig, TransportError, UnreliableOutcome,
};

/// Default lifetime of the RtCert issued at each attach: one hour.
pub const DEFAULT_RTCERT_VALIDITY: Duration = Duration::from_secs(3600);
/// Default backdating of the RtCert, for routers whose clock is behind.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Default bound on dialing and attaching together.
pub const DEFAULT_ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on the incoming channel, in batches of PDUs.
pub const DEFAULT_INCOMING_QUEUE: usize = 256;

/// How an endpoint reaches its router. Change fields on [`EndpointConfig::new`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// The router's UDP address.
    pub router_addr: SocketAddr,
    /// The router's name, if known; `None` trusts the first router that
    /// answers (see the [module documentation](self)).
    pub router: Option<Name>,
    /// The endpoint's transport. [`TransportConfig::accept_incoming`] is
    /// forced off: an endpoint only dials.
    pub transport: TransportConfig,
    /// Lifetime of the RtCert issued at each attach.
    pub rtcert_validity: Duration,
    /// The RtCert starts this long before the attach, so a router whose
    /// clock is somewhat behind still accepts it.
    pub clock_skew: Duration,
    /// Longest dialing and attaching may take together.
    pub attach_timeout: Duration,
    /// Most batches of incoming PDUs waiting for the [`EndpointReceiver`]
    /// (each one read of the link's stream); beyond it the link's reader
    /// waits, and QUIC flow control slows the router.
    pub incoming_queue: usize,
}

impl EndpointConfig {
    /// Defaults for a router at `router_addr`, trusting the first router
    /// that answers there. The transport binds an ephemeral port on the
    /// unspecified address of the router address's family.
    pub fn new(router_addr: SocketAddr) -> Self {
        let bind = match router_addr.ip() {
            IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let mut transport = TransportConfig::new(bind);
        transport.accept_incoming = false;
        EndpointConfig {
            router_addr,
            router: None,
            transport,
            rtcert_validity: DEFAULT_RTCERT_VALIDITY,
            clock_skew: DEFAULT_CLOCK_SKEW,
            attach_timeout: DEFAULT_ATTACH_TIMEOUT,
            incoming_queue: DEFAULT_INCOMING_QUEUE,
        }
    }

    /// The same, expecting the router to prove `router`.
    pub fn with_router(mut self, router: Name) -> Self {
        self.router = Some(router);
        self
    }

    /// The TLS policy for the router.
    pub fn peer_policy(&self) -> PeerPolicy {
        match self.router {
            Some(name) => PeerPolicy::Expect(name),
            None => PeerPolicy::Kinds(vec![Kind::Router]),
        }
    }
}

/// Why an endpoint could not attach to its router.
///
/// [`EndpointError::is_transient`] tells a retry loop which failures may
/// pass (the router is down, restarting, unreachable) from those that will
/// not (wrong router, refused identity, local configuration).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Only servers and clients attach as endpoints.
    #[error("a {kind} identity cannot attach as an endpoint")]
    NotAnEndpoint {
        /// The identity's kind.
        kind: Kind,
    },
    /// The local transport could not be created.
    #[error("endpoint transport: {0}")]
    Transport(#[from] TransportError),
    /// Dialing the router failed (unreachable, handshake failed, or the
    /// peer is not the expected router).
    #[error("dialing the router: {0}")]
    Dial(#[from] DialError),
    /// The router refused this endpoint's TLS identity.
    #[error("the router refused this endpoint's identity: {reason}")]
    Refused {
        /// How the link ended.
        reason: DownReason,
    },
    /// The router refused the attach proof.
    #[error("the router refused to attach this endpoint: {reason}")]
    Rejected {
        /// The router's reason.
        reason: String,
    },
    /// The router broke the attach protocol (a challenge for another
    /// router, an acceptance of another name).
    #[error("the router broke the attach protocol: {reason}")]
    Protocol {
        /// What it did.
        reason: String,
    },
    /// The link went down before the router accepted the endpoint.
    #[error("the link went down while attaching: {reason}")]
    Down {
        /// How it ended.
        reason: DownReason,
    },
    /// The proof could not be sent (the link was closing).
    #[error("sending the attach proof: {0}")]
    Send(#[from] SendError),
    /// Dialing and attaching took longer than
    /// [`EndpointConfig::attach_timeout`].
    #[error("attaching to the router timed out after {after:?}")]
    Timeout {
        /// The timeout.
        after: Duration,
    },
}

impl EndpointError {
    /// True for failures that may pass by themselves: the router is
    /// unreachable, slow, restarting or dropped the link. False for a
    /// wrong router, a refused identity or proof, a protocol violation and
    /// local errors.
    pub fn is_transient(&self) -> bool {
        match self {
            EndpointError::Dial(e) => {
                !e.is_tls_refusal()
                    && !matches!(e, DialError::Tls(_) | DialError::UnexpectedPeer { .. })
            }
            EndpointError::Down { .. } | EndpointError::Send(_) | EndpointError::Timeout { .. } => {
                true
            }
            _ => false,
        }
    }
}

/// Why a control message could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlSendError {
    /// The message does not fit a PDU.
    #[error("control message: {0}")]
    Pdu(#[from] PduError),
    /// The link refused it.
    #[error("control message: {0}")]
    Send(#[from] SendError),
}

struct Shared {
    transport: Transport,
    link: Link,
    name: Name,
    router: PublicIdentity,
    rtcert: RtCert,
    renew_at: Timestamp,
    dropped: Arc<Dropped>,
    next_seq: AtomicU64,
}

/// An attached link to a router. Cloning makes another handle to the same
/// link. See the [module documentation](self).
#[derive(Clone)]
pub struct EndpointLink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EndpointLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointLink")
            .field("name", &self.shared.name)
            .field("router", &self.shared.router.name())
            .field("link", &self.shared.link.id())
            .finish_non_exhaustive()
    }
}

/// What a successful attach hands to the receiver.
struct Attached {
    link: Link,
    router: PublicIdentity,
    rtcert: RtCert,
    /// PDUs that arrived with or before the acceptance.
    early: Vec<Bytes>,
}

fn transport_gone() -> DownReason {
    DownReason::Closed {
        code: CloseCode::Shutdown,
        reason: "the endpoint transport stopped".into(),
    }
}

impl EndpointLink {
    /// Dials the router `config` names and attaches `identity` (a server or
    /// a client) to it, within [`EndpointConfig::attach_timeout`]. Returns
    /// the link and the receiver of its incoming PDUs.
    ///
    /// The RtCert's validity is computed from the wall clock at the call.
    pub async fn connect(
        identity: &Identity,
        config: &EndpointConfig,
    ) -> Result<(EndpointLink, EndpointReceiver), EndpointError> {
        let kind = identity.metadata().kind();
        if !kind.is_endpoint() {
            return Err(EndpointError::NotAnEndpoint { kind });
        }
        let mut transport_config = config.transport.clone();
        transport_config.accept_incoming = false;
        // The receiver reads the transport's events itself: its one link
        // may have as many batches waiting as the receiver's queue holds.
        transport_config.events_per_link = config.incoming_queue.max(1);
        transport_config.event_queue = transport_config
            .event_queue
            .max(transport_config.events_per_link + transport_config.datagram_events_per_link + 2);
        let (transport, mut events) = Transport::bind(identity.clone(), transport_config)?;
        let after = config.attach_timeout;
        let attached =
            match tokio::time::timeout(after, attach(&transport, &mut events, identity, config))
                .await
            {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    abandon(&transport, "attach failed");
                    return Err(e);
                }
                Err(_) => {
                    abandon(&transport, "attach timed out");
                    return Err(EndpointError::Timeout { after });
                }
            };
        let validity = attached.rtcert.validity();
        // Attach again once two thirds of the certificate's life are gone.
        let now = Timestamp::now();
        let renew_at = now.saturating_add(validity.remaining(now) * 2 / 3);
        tracing::info!(endpoint = %identity.name(), router = %attached.router.name(),
            link = %attached.link.id(), not_after = ?validity.not_after, "attached to router");
        let dropped = Arc::new(Dropped::default());
        let incoming =
            EndpointReceiver::new(attached.link.id(), attached.early, events, dropped.clone());
        let link = EndpointLink {
            shared: Arc::new(Shared {
                transport,
                link: attached.link,
                name: identity.name(),
                router: attached.router,
                rtcert: attached.rtcert,
                renew_at,
                dropped,
                // Random, so that the request ids of a reconnected endpoint
                // do not repeat those of its previous link.
                next_seq: AtomicU64::new(rand::thread_rng().gen_range(1..1u64 << 48)),
            }),
        };
        Ok((link, incoming))
    }

    /// This endpoint's name.
    pub fn name(&self) -> Name {
        self.shared.name
    }

    /// The router's name, as its TLS handshake proved it.
    pub fn router_name(&self) -> Name {
        self.shared.router.name()
    }

    /// The router's name and metadata.
    pub fn router(&self) -> &PublicIdentity {
        &self.shared.router
    }

    /// The RtCert this attach issued.
    pub fn rtcert(&self) -> &RtCert {
        &self.shared.rtcert
    }

    /// When the owner should attach again (two thirds into the RtCert's
    /// remaining life at the attach), so that the router's records never
    /// lapse.
    pub fn renew_at(&self) -> Timestamp {
        self.shared.renew_at
    }

    /// The underlying link.
    pub fn link(&self) -> &Link {
        &self.shared.link
    }

    /// The local UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.transport.local_addr()
    }

    /// A fresh sequence number for a PDU from this endpoint. Numbers
    /// start at a random value at each connect, so that a peer answering
    /// by request id does not confuse a reconnected endpoint's requests
    /// with those of its previous link.
    pub fn next_seq(&self) -> u64 {
        self.shared.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `pdu` on the reliable stream, waiting while the queue is full.
    pub async fn send(&self, pdu: &Pdu) -> Result<(), SendError> {
        self.shared.link.send(pdu.to_bytes()).await
    }

    /// Queues `pdu` on the reliable stream if there is room now.
    pub fn try_send(&self, pdu: &Pdu) -> Result<(), SendError> {
        self.shared.link.try_send(pdu.to_bytes())
    }

    /// Queues one encoded PDU on the reliable stream, waiting for room.
    pub async fn send_encoded(&self, pdu: Bytes) -> Result<(), SendError> {
        self.shared.link.send(pdu).await
    }

    /// Queues encoded PDUs on the reliable stream together, in order,
    /// waiting for room: cheaper than one send each.
    pub async fn send_batch(&self, pdus: Vec<Bytes>) -> Result<(), SendError> {
        self.shared.link.send_batch(pdus).await
    }

    /// Sends `pdu` unreliably with the `UNRELIABLE` flag set, so routers
    /// forward it as a datagram too; see [`Link::send_unreliable`].
    pub fn send_unreliable(&self, pdu: &Pdu) -> Result<UnreliableOutcome, SendError> {
        let mut pdu = pdu.clone();
        pdu.header.flags = pdu.header.flags.with(Flags::UNRELIABLE);
        self.shared.link.send_unreliable(pdu.to_bytes())
    }

    /// Sends a control message to the router.
    pub async fn send_control(&self, msg: &ControlMessage) -> Result<(), ControlSendError> {
        let pdu = msg.to_pdu(Name::ZERO, self.shared.name, self.next_seq())?;
        self.send(&pdu).await?;
        Ok(())
    }

    /// Advertises capsules this server serves (in messages of at most
    /// [`MAX_ADVERTISE_ENTRIES`](gdp_proto::control::MAX_ADVERTISE_ENTRIES)).
    /// The router checks each AdCert and ignores (and counts) bad ones.
    pub async fn advertise(&self, entries: Vec<AdvertiseEntry>) -> Result<(), ControlSendError> {
        let mut pdus = Vec::new();
        for msg in ControlMessage::advertise_batches(entries) {
            pdus.push(
                msg.to_pdu(Name::ZERO, self.shared.name, self.next_seq())?
                    .to_bytes(),
            );
        }
        self.send_batch(pdus).await?;
        Ok(())
    }

    /// Withdraws names advertised before.
    pub async fn withdraw(&self, names: &[Name]) -> Result<(), ControlSendError> {
        let mut pdus = Vec::new();
        for msg in ControlMessage::withdraw_batches(names) {
            pdus.push(
                msg.to_pdu(Name::ZERO, self.shared.name, self.next_seq())?
                    .to_bytes(),
            );
        }
        self.send_batch(pdus).await?;
        Ok(())
    }

    /// Resolves when the link is down, with the reason, whether or not
    /// the [`EndpointReceiver`] has handed out everything that arrived
    /// before (it yields [`EndpointEvent::Down`] after that).
    pub async fn closed(&self) -> DownReason {
        self.shared.link.closed().await
    }

    /// True once the link is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.shared.link.is_closed()
    }

    /// Closes the link at once; queued PDUs are discarded.
    pub fn close(&self, reason: &str) {
        self.shared.link.close(reason);
    }

    /// Closes gracefully: waits (bounded by the transport's
    /// [`TransportConfig::shutdown_timeout`]) until what is queued has been
    /// acknowledged by the router, then closes the link.
    pub async fn shutdown(&self, reason: &str) -> ShutdownReport {
        self.shared.transport.shutdown(reason).await
    }

    /// The link's statistics.
    pub fn stats(&self) -> LinkStats {
        self.shared.link.stats()
    }

    /// Incoming PDUs dropped because they did not decode, or were
    /// link-local control PDUs after the attach.
    pub fn dropped_incoming(&self) -> u64 {
        self.shared.dropped.count.load(Ordering::Relaxed)
    }
}

/// Closes the links of a transport whose attach failed, at once (the
/// transport itself closes when dropped). Nothing queued matters any more,
/// and a handshake still in progress would hold a graceful shutdown up.
fn abandon(transport: &Transport, reason: &str) {
    for link in transport.links() {
        link.close(reason);
    }
}

/// Dials and runs the attach handshake; see [`EndpointLink::connect`].
///
/// The handshake itself is [`EndpointAttach`]'s: this feeds it the link's
/// PDUs with the wall-clock time and sends the proofs it returns.
async fn attach(
    transport: &Transport,
    events: &mut mpsc::Receiver<LinkEvent>,
    identity: &Identity,
    config: &EndpointConfig,
) -> Result<Attached, EndpointError> {
    let validity = RtCertValidity::relative(config.clock_skew, config.rtcert_validity);
    let link = transport
        .dial_with_policy(config.router_addr, config.peer_policy())
        .await?;
    let router = link.peer().clone();
    let id = link.id();
    let mut machine = EndpointAttach::new(identity.clone(), router.name(), validity)
        .map_err(|e| EndpointError::NotAnEndpoint { kind: e.kind })?;
    loop {
        let Some(event) = events.recv().await else {
            return Err(EndpointError::Down {
                reason: transport_gone(),
            });
        };
        match event {
            LinkEvent::Pdus { link_id, pdus, .. } if link_id == id => {
                let now = Timestamp::now();
                for pdu in pdus {
                    machine.handle_pdu(now, pdu);
                }
                match machine.poll_outcome() {
                    Some(Err(e)) => return Err(attach_failed(router.name(), machine.ignored(), e)),
                    Some(Ok(accepted)) => {
                        send_proofs(&link, &mut machine).await?;
                        return Ok(Attached {
                            link,
                            router,
                            rtcert: accepted.rtcert,
                            early: accepted.early,
                        });
                    }
                    None => send_proofs(&link, &mut machine).await?,
                }
            }
            LinkEvent::Down { link_id, reason } if link_id == id => {
                return Err(if reason.is_tls_refusal() {
                    EndpointError::Refused { reason }
                } else {
                    EndpointError::Down { reason }
                });
            }
            _ => {}
        }
    }
}

/// Sends the proofs `machine` has for the router.
async fn send_proofs(link: &Link, machine: &mut EndpointAttach) -> Result<(), SendError> {
    while let Some(pdu) = machine.poll_transmit() {
        link.send(pdu.to_bytes()).await?;
    }
    Ok(())
}

/// The [`EndpointError`] for an attach that ended without an acceptance.
fn attach_failed(router: Name, ignored: u64, e: EndpointAttachError) -> EndpointError {
    match e {
        EndpointAttachError::Rejected { reason } => {
            tracing::warn!(%router, %reason, "attach rejected");
            EndpointError::Rejected { reason }
        }
        EndpointAttachError::Protocol(violation) => {
            tracing::warn!(%router, %violation, ignored, "the router broke the attach protocol");
            EndpointError::Protocol {
                reason: violation.to_string(),
            }
        }
        other => EndpointError::Protocol {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_router_means_any_router() {
        let config = EndpointConfig::new("127.0.0.1:1".parse().expect("address"));
        assert_eq!(config.peer_policy(), PeerPolicy::Kinds(vec![Kind::Router]));
        assert!(!config.transport.accept_incoming);
        assert!(config.transport.bind.is_ipv4());
        let name = Name::from_bytes([3; 32]);
        let config = config.with_router(name);
        assert_eq!(config.peer_policy(), PeerPolicy::Expect(name));
        let v6 = EndpointConfig::new("[::1]:1".parse().expect("address"));
        assert!(v6.transport.bind.is_ipv6());
    }

    #[test]
    fn transient_errors_are_told_apart() {
        assert!(
            EndpointError::Timeout {
                after: Duration::ZERO
            }
            .is_transient()
        );
        assert!(
            EndpointError::Down {
                reason: DownReason::TimedOut
            }
            .is_transient()
        );
        assert!(
            !EndpointError::Rejected {
                reason: "no".into()
            }
            .is_transient()
        );
        assert!(
            !EndpointError::Protocol {
                reason: "no".into()
            }
            .is_transient()
        );
        assert!(!EndpointError::NotAnEndpoint { kind: Kind::Router }.is_transient());
    }
}
