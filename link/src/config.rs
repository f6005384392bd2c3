//! Transport settings: the UDP socket, the QUIC transport parameters and
//! the bounds of every queue.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gdp_certs::{PeerPolicy, tls};
use quinn::{IdleTimeout, VarInt};
use tokio::sync::Semaphore;

use super::TransportError;

/// One mebibyte.
const MIB: usize = 1 << 20;

/// The longest an inbound handshake waits for its turn under
/// [`TransportConfig::handshakes_per_address`]; one whose turn is further
/// off is refused.
pub const HANDSHAKE_WAIT_MAX: Duration = Duration::from_secs(1);

/// Source addresses whose handshake schedules a transport tracks at most;
/// when that many are paced at once, handshakes from others are refused
/// until some schedules have caught up.
pub const MAX_PACED_ADDRESSES: usize = 65_536;

/// Settings of a [`Transport`](super::Transport).
///
/// The defaults suit a router on a fast network: 4 MiB socket buffers,
/// stream windows of several MiB so one link can fill a gigabit path at
/// tens of milliseconds of RTT, and queues that hold a few MiB per link.
/// Change fields on a default value:
///
/// ```
/// use gdp_link::TransportConfig;
///
/// let mut config = TransportConfig::new("127.0.0.1:0".parse()?);
/// config.link_queue_bytes = 1 << 20;
/// config.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TransportConfig {
    /// The UDP address to bind; port 0 picks a free port.
    pub bind: SocketAddr,
    /// `SO_SNDBUF` requested for the UDP socket. The kernel may grant less
    /// (Linux caps it at `net.core.wmem_max`); the granted size is logged
    /// and reported by [`Transport::socket_buffers`](super::Transport::socket_buffers).
    pub socket_send_buffer: usize,
    /// `SO_RCVBUF` requested for the UDP socket (capped by
    /// `net.core.rmem_max`). A receive buffer of the OS default (about
    /// 208 KiB on Linux) drops around 1% of packets on loopback at high
    /// rates; 4 MiB does not.
    pub socket_recv_buffer: usize,
    /// How often an idle link sends a keep-alive, so that it neither times
    /// out nor loses its NAT binding.
    pub keep_alive: Duration,
    /// A link with no traffic (keep-alives included) for this long is down.
    /// Must be longer than `keep_alive`.
    pub idle_timeout: Duration,
    /// Longest a handshake (dialed or accepted) may take.
    pub handshake_timeout: Duration,
    /// Bytes the peer may send on the reliable stream beyond what this side
    /// has read.
    pub stream_receive_window: u32,
    /// Bytes the peer may send on the whole link beyond what this side has
    /// read.
    pub connection_receive_window: u32,
    /// Bytes this side keeps in flight (sent and not yet acknowledged) on
    /// one link.
    pub send_window: u64,
    /// Bytes of received datagrams QUIC holds before the link's reader
    /// takes them; beyond it the oldest are dropped.
    pub datagram_receive_buffer: usize,
    /// Bytes of datagrams QUIC holds while congestion control lets none
    /// out.
    pub datagram_send_buffer: usize,
    /// Bound on the reliable queue of one link, in bytes of PDUs queued and
    /// not yet handed to QUIC. A full queue makes
    /// [`Link::send`](super::Link::send) wait and
    /// [`Link::try_send`](super::Link::try_send) fail with `Full`.
    ///
    /// The queue counts the memory its PDUs really keep alive: a PDU (or a
    /// run of PDUs) shorter than [`copy_below`](Self::copy_below) is copied
    /// out of the buffer it shares (a reader's block) and counted by its
    /// length; a longer one is queued as it is and counted as at least
    /// [`SHARED_BLOCK`](super::SHARED_BLOCK), the largest block a link
    /// reader allocates for whole small PDUs.
    pub link_queue_bytes: u32,
    /// PDUs and runs shorter than this are copied out of their buffer when
    /// queued on a link (see [`link_queue_bytes`](Self::link_queue_bytes)),
    /// so a stalled queue of small PDUs keeps only their own bytes alive.
    pub copy_below: usize,
    /// Bound on the unreliable queue of one link, in datagrams. A full queue
    /// drops (and counts) what
    /// [`Link::send_unreliable`](super::Link::send_unreliable) is given.
    pub datagram_queue: usize,
    /// Bound on the owner's event channel, in events (each event may carry a
    /// batch of PDUs). When it is full, reliable readers wait (and QUIC flow
    /// control slows the peers down) and unreliable batches are dropped and
    /// counted.
    pub event_queue: usize,
    /// Most batches of one link waiting in the owner's event channel (or
    /// being handled). A link's reliable reader waits for its earlier
    /// batches to be handled before it hands over another (QUIC flow
    /// control then slows that peer alone), and its unreliable batches are
    /// dropped and counted; so one busy link never fills the channel ahead
    /// of the others, and what it holds there is bounded.
    pub events_per_link: usize,
    /// The same bound for one link's batches of datagrams (each at most
    /// 64 datagrams), larger because datagrams are never waited for: a
    /// batch beyond it is dropped and counted, so the bound absorbs a
    /// burst while the owner is busy.
    pub datagram_events_per_link: usize,
    /// Most links at once; further incoming connections are refused and
    /// further dials fail.
    pub max_links: usize,
    /// Most inbound links from one source IP address at once; further
    /// incoming connections from it are refused (and counted in
    /// [`TransportStats::links_refused_per_address`](super::TransportStats::links_refused_per_address)),
    /// so one host cannot take every slot of `max_links`. Links this side
    /// dials are not counted.
    pub max_links_per_address: usize,
    /// Most inbound handshakes in progress at once; further incoming
    /// connections are refused until one completes.
    pub max_pending_handshakes: usize,
    /// Inbound handshakes one source IP address may start per second
    /// (0: no limit). Up to
    /// [`handshake_burst_per_address`](Self::handshake_burst_per_address)
    /// start at once; the ones beyond wait for their turn (at most
    /// [`HANDSHAKE_WAIT_MAX`]) and are refused if their turn is further
    /// off (counted in
    /// [`TransportStats::handshakes_refused_rate`](super::TransportStats::handshakes_refused_rate)),
    /// so that one host opening hundreds of links spreads their key setup
    /// and signatures out instead of landing them on everyone's traffic
    /// at once.
    pub handshakes_per_address: u32,
    /// Handshakes one source address may start at once before
    /// [`handshakes_per_address`](Self::handshakes_per_address) paces it.
    pub handshake_burst_per_address: u32,
    /// A link whose peer has sent this many malformed or oversized PDUs is
    /// closed by the transport.
    pub malformed_limit: u64,
    /// Most bytes of one incomplete PDU the stream reader of a new link
    /// holds until the owner lifts the bound with
    /// [`Link::lift_pdu_limit`](super::Link::lift_pdu_limit) (a router does
    /// once the peer has proved what it is): beyond it the stream is
    /// reported as [`FrameError::Oversized`](gdp_proto::frame::FrameError::Oversized)
    /// like any oversized PDU. So a peer that has not attached cannot make
    /// the reader assemble a 1 MiB PDU. `usize::MAX` (the default) sets no
    /// bound beyond the protocol's.
    pub unproven_pdu_limit: usize,
    /// Whether to accept incoming links at all; a client-only transport
    /// dials and never listens.
    pub accept_incoming: bool,
    /// Whether to offer link protocol `gdp/2` (before `gdp/1`) when
    /// dialing and accepting: compact stream frames, in which a PDU's two
    /// names travel as a one-byte label bound on the stream
    /// ([`gdp_proto::frame::labels`]). A link speaks it when both sides
    /// offer it ([`LinkStats::compact_headers`](super::LinkStats::compact_headers)).
    /// On by default; off, every link speaks `gdp/1`.
    pub compact_headers: bool,
    /// Which peers may open links to this transport. Under
    /// [`PeerPolicy::AnyName`] any principal that proves a name is accepted
    /// and the owner learns which name from [`LinkEvent::Up`](super::LinkEvent::Up).
    pub accept_policy: PeerPolicy,
    /// Longest [`Transport::shutdown`](super::Transport::shutdown) waits,
    /// first for queued PDUs to be acknowledged, then for the peers to
    /// acknowledge the close.
    pub shutdown_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            socket_send_buffer: 4 * MIB,
            socket_recv_buffer: 4 * MIB,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            stream_receive_window: 8 * MIB as u32,
            connection_receive_window: 16 * MIB as u32,
            send_window: 16 * MIB as u64,
            datagram_receive_buffer: MIB,
            datagram_send_buffer: MIB,
            link_queue_bytes: 4 * MIB as u32,
            copy_below: 16 * 1024,
            datagram_queue: 1024,
            event_queue: 1024,
            events_per_link: 2,
            datagram_events_per_link: 16,
            max_links: 10_000,
            max_links_per_address: 256,
            max_pending_handshakes: 64,
            handshakes_per_address: 128,
            handshake_burst_per_address: 16,
            malformed_limit: 64,
            unproven_pdu_limit: usize::MAX,
            accept_incoming: true,
            compact_headers: true,
            accept_policy: PeerPolicy::AnyName,
            shutdown_timeout: Duration::from_secs(3),
        }
    }
}

impl TransportConfig {
    /// The defaults, bound to `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        TransportConfig {
            bind,
            ..TransportConfig::default()
        }
    }

    /// The link protocols (ALPN names) this transport offers, most
    /// preferred first.
    pub(crate) fn protocols(&self) -> &'static [&'static [u8]] {
        if self.compact_headers {
            &[tls::ALPN_COMPACT, tls::ALPN]
        } else {
            &[tls::ALPN]
        }
    }

    /// Checks that the settings are usable together.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |reason: String| Err(TransportError::Config { reason });
        if self.link_queue_bytes == 0 {
            return bad("link_queue_bytes must be at least 1".into());
        }
        if self.link_queue_bytes as usize > Semaphore::MAX_PERMITS {
            return bad(format!(
                "link_queue_bytes must be at most {}",
                Semaphore::MAX_PERMITS
            ));
        }
        if self.datagram_queue == 0
            || self.event_queue == 0
            || self.events_per_link == 0
            || self.datagram_events_per_link == 0
        {
            return bad("datagram_queue, event_queue, events_per_link and \
                 datagram_events_per_link must be at least 1"
                .into());
        }
        if self.max_links_per_address == 0 {
            return bad("max_links_per_address must be at least 1".into());
        }
        if self.max_pending_handshakes == 0 {
            return bad("max_pending_handshakes must be at least 1".into());
        }
        if self.handshake_burst_per_address == 0 {
            return bad("handshake_burst_per_address must be at least 1".into());
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad(format!(
                "keep_alive ({:?}) must be non-zero and shorter than idle_timeout ({:?})",
                self.keep_alive, self.idle_timeout
            ));
        }
        if self.stream_receive_window == 0 || self.connection_receive_window == 0 {
            return bad("receive windows must be non-zero".into());
        }
        IdleTimeout::try_from(self.idle_timeout).map_err(|_| TransportError::Config {
            reason: format!("idle_timeout {:?} is too long", self.idle_timeout),
        })?;
        Ok(())
    }

    /// The QUIC transport parameters these settings give, for both the
    /// accepting and the dialing side.
    ///
    /// A link uses one unidirectional stream per direction for reliable
    /// PDUs, so a peer may open one such stream at a time and no
    /// bidirectional stream.
    pub fn quinn_transport_config(&self) -> Result<quinn::TransportConfig, TransportError> {
        self.validate()?;
        let idle =
            IdleTimeout::try_from(self.idle_timeout).map_err(|_| TransportError::Config {
                reason: format!("idle_timeout {:?} is too long", self.idle_timeout),
            })?;
        let mut t = quinn::TransportConfig::default();
        t.keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(idle))
            .max_concurrent_uni_streams(VarInt::from_u32(1))
            .max_concurrent_bidi_streams(VarInt::from_u32(0))
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window))
            .receive_window(VarInt::from_u32(self.connection_receive_window))
            .send_window(self.send_window)
            .datagram_receive_buffer_size(Some(self.datagram_receive_buffer))
            .datagram_send_buffer_size(self.datagram_send_buffer);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = TransportConfig::default();
        assert_eq!(c.validate().map_err(|e| e.to_string()), Ok(()));
        assert_eq!(c.socket_recv_buffer, 4 * MIB);
        assert!(c.quinn_transport_config().is_ok());
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let mut c = TransportConfig::default();
        c.keep_alive = c.idle_timeout;
        assert!(matches!(c.validate(), Err(TransportError::Config { .. })));
        let c = TransportConfig {
            link_queue_bytes: 0,
            ..TransportConfig::default()
        };
        assert!(matches!(c.validate(), Err(TransportError::Config { .. })));
        let c = TransportConfig {
            event_queue: 0,
            ..TransportConfig::default()
        };
        assert!(matches!(
            c.quinn_transport_config(),
            Err(TransportError::Config { .. })
        ));
    }
}
