//! GDP links over QUIC, shared by routers, capsule servers and clients.
//!
//! A [`Transport`] owns one quinn endpoint on one UDP socket (buffers sized
//! on purpose, see [`udp_socket`]). It accepts links from any peer that
//! proves a GDP name in the TLS handshake ([`TransportConfig::accept_policy`],
//! [`PeerPolicy::AnyName`](gdp_certs::tls::PeerPolicy::AnyName) by default) and dials links to an address with
//! an expected name ([`PeerPolicy::Expect`](gdp_certs::tls::PeerPolicy::Expect)). Each link is one QUIC
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
//!   link's [`Forwarder`] first). A link whose both sides offer link
//!   protocol `gdp/2` ([`TransportConfig::compact_headers`]) carries
//!   compact frames on its streams ([`gdp_proto::frame::labels`]): the
//!   writer replaces each PDU's names by a label bound on the stream and
//!   the reader expands them back, so the owner sees whole PDUs either way.
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
//! | one incomplete PDU in a stream reader | [`TransportConfig::unproven_pdu_limit`] until [`Link::lift_pdu_limit`], then the protocol's 1 MiB | the stream is reported as oversized (the owner closes the link) |
//! | inbound links per source address | [`TransportConfig::max_links_per_address`] | new connections from it refused, counted in [`TransportStats::links_refused_per_address`] |
//! | inbound handshakes started per source address | [`TransportConfig::handshakes_per_address`] a second after a burst of [`TransportConfig::handshake_burst_per_address`] | the rest wait their turn, at most [`HANDSHAKE_WAIT_MAX`] ([`TransportStats::handshakes_paced`]); later turns are refused ([`TransportStats::handshakes_refused_rate`]) |
//!
//! A reliable send queue counts the memory its PDUs keep alive, not only
//! their length: a PDU or run shorter than [`TransportConfig::copy_below`]
//! is copied out of the reader's block it shares, and a longer buffer is
//! counted as at least [`SHARED_BLOCK`], so a stalled queue of small PDUs
//! cannot pin many times its bound in reader blocks.
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

mod config;
pub mod endpoint;
mod event;
mod forward;
mod link;
mod pace;
mod queue;
mod reset;
mod socket;
mod tasks;
mod transport;

pub use config::{HANDSHAKE_WAIT_MAX, MAX_PACED_ADDRESSES, TransportConfig};
pub use event::{CloseCode, Credit, Direction, DownReason, LinkEvent, LinkId};
pub use forward::{Forwarder, LinkForwarder};
pub use link::{Link, LinkStats, SHARED_BLOCK, SendError, UnreliableOutcome};
pub use socket::{SocketBuffers, size_udp_socket, udp_socket};
pub use transport::{DialError, ShutdownReport, Transport, TransportError, TransportStats};
