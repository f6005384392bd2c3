//! What a running router reports about itself: the core's counters, the
//! driver's own, and every link's, taken together at one moment.

use std::net::SocketAddr;

use gdp_certs::{Kind, Name};
use gdp_link::{Direction, LinkStats, TransportStats};

use super::DirectoryStats;
use crate::core::{LinkRole, Stats};

/// Counters the driver keeps (the core's are in [`Stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Link events handled.
    pub events: u64,
    /// PDUs handed to the core.
    pub pdus_in: u64,
    /// PDUs the link readers forwarded themselves, without the core (the
    /// core's `forwarded`, `cache_hits` and `delivered_local` in a
    /// [`Snapshot`] include them).
    pub fast_forwarded: u64,
    /// Batches the link readers queued on next hops.
    pub fast_batches: u64,
    /// PDUs the core sent that were queued on a link.
    pub pdus_out: u64,
    /// Batches (transmits) queued on links.
    pub batches_out: u64,
    /// Malformed PDUs the transport reported on links' streams (each one
    /// ends the link: the stream cannot be read past it).
    pub malformed_stream: u64,
    /// Malformed datagrams the transport reported (dropped; the transport
    /// cuts a link at the violation limit).
    pub malformed_datagram: u64,
    /// Of the malformed PDUs, those whose header announced more than the
    /// largest PDU.
    pub oversized: u64,
    /// Times a full next-hop queue sent PDUs to the link's overflow (the
    /// driver never waits for a queue).
    pub send_stalls: u64,
    /// Reliable PDUs dropped because their link's queue and overflow were
    /// both full.
    pub queue_full: u64,
    /// Bytes (of memory held) of PDUs waiting in links' overflows now.
    pub overflow_bytes: u64,
    /// Links closed because their queue took nothing for the stall timeout.
    pub stalled_links_closed: u64,
    /// Batches from endpoint links that were at least half dropped, whose
    /// credit the driver kept for the link's penalty (see
    /// [`DROP_PENALTY_START`](super::DROP_PENALTY_START)).
    pub drop_penalties: u64,
    /// PDUs dropped unread from batches of links paying the longest
    /// penalty, beyond the [`PENALTY_SAMPLE`](super::PENALTY_SAMPLE) handled.
    pub penalty_unread: u64,
    /// PDUs the core sent that could not be queued: the link was gone or
    /// stayed full.
    pub send_dropped: u64,
    /// Unreliable PDUs dropped because the link's datagram queue was full.
    pub unreliable_dropped: u64,
    /// Dials that failed on every address.
    pub dials_failed: u64,
    /// Dials refused because `max_dials` were running.
    pub dials_refused_limit: u64,
    /// Dials refused because the router's last dial failed recently.
    pub dials_refused_backoff: u64,
    /// Dials cancelled because the router linked to this one first.
    pub dials_cancelled: u64,
    /// Dials running now.
    pub dials_running: u64,
    /// Routers backed off after a failed dial now.
    pub dials_backed_off: u64,
    /// The transport's refusals (links per address, links, handshakes).
    pub transport: TransportStats,
    /// Directory calls.
    pub directory: DirectoryStats,
}

/// One link, as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkSnapshot {
    /// The link's number.
    pub id: u64,
    /// The name the peer proved in the TLS handshake.
    pub peer: Name,
    /// The kind in the peer's metadata.
    pub kind: Kind,
    /// The core's view of the link (`None` once the core closed it).
    pub role: Option<LinkRole>,
    /// Who dialed.
    pub direction: Direction,
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// The transport's counters and RTT.
    pub stats: LinkStats,
}

/// A running router's state at one moment, for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The router's name.
    pub name: Name,
    /// The directory backend (`memory`, `redis`, `redis-cluster`).
    pub backend: &'static str,
    /// The core's counters and gauges.
    pub core: Stats,
    /// The driver's counters.
    pub driver: DriverStats,
    /// Link events waiting for the driver.
    pub event_queue: usize,
    /// Directory calls in flight.
    pub directory_in_flight: usize,
    /// Every link up.
    pub links: Vec<LinkSnapshot>,
}

impl Snapshot {
    /// Bytes waiting in every link's reliable queue together.
    pub fn queued_bytes(&self) -> u64 {
        self.links.iter().map(|l| l.stats.queued_bytes).sum()
    }
}
