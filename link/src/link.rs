//! The handle to one link: sending PDUs, closing, statistics.

use std::cmp::Ordering as CmpOrdering;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gdp_certs::{DecodeError, PublicIdentity, tls};
use gdp_proto::frame::FrameError;
use gdp_proto::pdu::peek_pdu_len;
use tokio::sync::mpsc;

use super::queue::{Batch, QueueError, QueueSender};
use super::{CloseCode, Direction, DownReason, LinkId};

/// Why a PDU was not queued on a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The link is closed or closing.
    #[error("{0} is closed")]
    Closed(LinkId),
    /// The reliable queue has no room now (only from the `try_` methods;
    /// the others wait).
    #[error("the queue of {0} is full")]
    Full(LinkId),
    /// The bytes are not exactly one well-formed encoded PDU (or, for
    /// [`Link::try_send_runs`], whole ones back to back), so writing them
    /// would break the peer's framing.
    #[error("not one well-formed pdu: {0}")]
    InvalidPdu(#[from] FrameError),
}

/// What became of a PDU given to [`Link::send_unreliable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnreliableOutcome {
    /// Queued to go as one QUIC datagram.
    Datagram,
    /// Too large for a datagram on this link (or the peer takes none), so
    /// queued on the reliable stream instead; counted in
    /// [`LinkStats::datagram_fallbacks`].
    Stream,
    /// The queue was full: dropped and counted in
    /// [`LinkStats::dropped_unreliable_out`].
    Dropped,
}

/// Counters of one link, updated by its tasks and senders.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent_pdus: AtomicU64,
    pub(crate) sent_bytes: AtomicU64,
    pub(crate) sent_datagrams: AtomicU64,
    pub(crate) sent_datagram_bytes: AtomicU64,
    pub(crate) sent_stream_bytes: AtomicU64,
    pub(crate) received_pdus: AtomicU64,
    pub(crate) received_bytes: AtomicU64,
    pub(crate) received_datagrams: AtomicU64,
    pub(crate) received_datagram_bytes: AtomicU64,
    pub(crate) queued_datagrams: AtomicU64,
    pub(crate) dropped_unreliable_out: AtomicU64,
    pub(crate) dropped_unreliable_in: AtomicU64,
    pub(crate) datagram_fallbacks: AtomicU64,
    pub(crate) malformed: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A snapshot of one link's statistics, for metrics.
///
/// "Sent" counts what QUIC has accepted from the link's queues; "received"
/// what was delivered to the owner. Stream and datagram traffic are counted
/// apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// QUIC's current round-trip time estimate.
    pub rtt: Duration,
    /// PDUs written to the reliable stream.
    pub sent_pdus: u64,
    /// Bytes of those PDUs.
    pub sent_bytes: u64,
    /// Bytes written to the reliable stream for those PDUs: fewer than
    /// `sent_bytes` on a link with compact headers.
    pub sent_stream_bytes: u64,
    /// Whether the link speaks link protocol `gdp/2`, whose streams carry
    /// compact frames ([`TransportConfig::compact_headers`](super::TransportConfig::compact_headers)).
    pub compact_headers: bool,
    /// PDUs sent as datagrams.
    pub sent_datagrams: u64,
    /// Bytes of those datagrams.
    pub sent_datagram_bytes: u64,
    /// PDUs received on the reliable stream.
    pub received_pdus: u64,
    /// Bytes of those PDUs.
    pub received_bytes: u64,
    /// PDUs received as datagrams (malformed ones excluded).
    pub received_datagrams: u64,
    /// Bytes of those datagrams.
    pub received_datagram_bytes: u64,
    /// Bytes of memory the PDUs waiting in the reliable queue hold (their
    /// own length when copied, at least [`SHARED_BLOCK`] for a buffer
    /// queued as it is).
    pub queued_bytes: u64,
    /// PDUs waiting in the reliable queue.
    pub queued_pdus: u64,
    /// Datagrams waiting in the unreliable queue.
    pub queued_datagrams: u64,
    /// Unreliable PDUs dropped before sending: queue full, or refused by
    /// QUIC.
    pub dropped_unreliable_out: u64,
    /// Received datagrams dropped because the owner's event channel was
    /// full.
    pub dropped_unreliable_in: u64,
    /// Unreliable PDUs sent on the stream because they did not fit in a
    /// datagram.
    pub datagram_fallbacks: u64,
    /// Malformed or oversized PDUs received.
    pub malformed: u64,
    /// Packets QUIC declared lost.
    pub lost_packets: u64,
}

/// State shared by a link's handles and tasks.
pub(crate) struct LinkShared {
    pub(crate) id: LinkId,
    pub(crate) peer: PublicIdentity,
    pub(crate) remote_addr: SocketAddr,
    pub(crate) direction: Direction,
    pub(crate) conn: quinn::Connection,
    pub(crate) queue: QueueSender,
    pub(crate) datagrams: mpsc::Sender<Bytes>,
    pub(crate) counters: Counters,
    /// Buffers shorter than this are copied when queued (see [`held`]).
    pub(crate) copy_below: usize,
    /// Whether the link speaks `gdp/2`: compact frames on its streams.
    pub(crate) compact: bool,
    /// Most bytes of an incomplete PDU the stream reader holds now.
    pub(crate) pdu_limit: AtomicUsize,
    /// The link's share of the owner's event channel
    /// ([`events_per_link`](super::TransportConfig::events_per_link)
    /// permits): each batch of PDUs from the stream handed to the owner
    /// holds one.
    pub(crate) credit: Arc<tokio::sync::Semaphore>,
    /// The same for batches of datagrams
    /// ([`datagram_events_per_link`](super::TransportConfig::datagram_events_per_link)).
    pub(crate) datagram_credit: Arc<tokio::sync::Semaphore>,
    /// Set once the link refuses new PDUs (closing, flushing, down).
    closing: AtomicBool,
    /// The code and text of a close made on this side, for the `Down`.
    local_close: Mutex<Option<(CloseCode, String)>>,
    /// Why the link is down, set when it is (just before its `Down` event
    /// is sent).
    pub(crate) down: tokio::sync::watch::Sender<Option<DownReason>>,
}

/// A cloneable handle to one link: a QUIC connection to a peer that proved
/// its name.
///
/// Reliable PDUs go through a queue bounded in bytes to the link's writer
/// task, which hands everything queued to QUIC in one write; [`send`]
/// waits for room, [`try_send`] fails with [`SendError::Full`]. Unreliable
/// PDUs go through a queue bounded in datagrams and are dropped (and
/// counted) when it is full. PDUs are raw encoded PDUs; each send checks
/// that its bytes are exactly one well-formed PDU.
///
/// A handle stays usable after the link is down: sends then fail with
/// [`SendError::Closed`].
///
/// [`send`]: Link::send
/// [`try_send`]: Link::try_send
#[derive(Clone)]
pub struct Link {
    pub(crate) shared: Arc<LinkShared>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.shared.id)
            .field("peer", &self.shared.peer.name())
            .field("remote_addr", &self.shared.remote_addr)
            .field("direction", &self.shared.direction)
            .finish_non_exhaustive()
    }
}

/// The most memory a queued buffer of at least
/// [`TransportConfig::copy_below`](super::TransportConfig::copy_below)
/// bytes is counted for: the largest block a link reader allocates for
/// whole small PDUs (64 KiB), which such a buffer may share with PDUs
/// already gone. A buffer longer than this is counted by its length.
pub const SHARED_BLOCK: usize = 64 * 1024;

/// What queueing `buf` really holds: a buffer shorter than `copy_below` is
/// copied out of the block it may share and counted by its length; a
/// longer one is kept as it is and counted as at least [`SHARED_BLOCK`].
/// Returns the buffer to queue and the bytes to charge.
pub(crate) fn held(buf: Bytes, copy_below: usize) -> (Bytes, usize) {
    let len = buf.len();
    if len < copy_below {
        (Bytes::copy_from_slice(&buf), len)
    } else {
        (buf, charge(len, copy_below))
    }
}

/// [`held`] for a batch of checked PDUs, with one allocation per run
/// rather than one per PDU: each stretch of PDUs shorter than
/// `copy_below` is copied into runs of at most [`HELD_RUN`] bytes
/// (whole PDUs back to back, as on the stream), longer PDUs are kept as
/// they are. Returns the batch and the bytes to charge, which are at
/// most what [`held`] would charge for each PDU.
pub(crate) fn hold_batch(pdus: Vec<Bytes>, copy_below: usize) -> (Batch, usize) {
    let count = pdus.len();
    let mut small_left: usize = pdus
        .iter()
        .filter(|p| p.len() < copy_below)
        .map(Bytes::len)
        .sum();
    let mut bufs = Vec::new();
    let mut run = BytesMut::new();
    let mut charged = 0usize;
    for pdu in pdus {
        if pdu.len() >= copy_below {
            if !run.is_empty() {
                bufs.push(std::mem::take(&mut run).freeze());
            }
            charged = charged.saturating_add(charge(pdu.len(), copy_below));
            bufs.push(pdu);
            continue;
        }
        if run.len() + pdu.len() > run.capacity() {
            if !run.is_empty() {
                bufs.push(std::mem::take(&mut run).freeze());
            }
            // Exactly what is left to copy, up to a run: each run is an
            // allocation of its own, charged for its length.
            run.reserve(small_left.clamp(pdu.len(), HELD_RUN.max(pdu.len())));
        }
        run.extend_from_slice(&pdu);
        small_left -= pdu.len();
        charged = charged.saturating_add(pdu.len());
    }
    if !run.is_empty() {
        bufs.push(run.freeze());
    }
    (Batch::Runs(bufs, count), charged)
}

/// The bytes [`held`] charges for a buffer of `len` bytes.
pub(crate) fn charge(len: usize, copy_below: usize) -> usize {
    if len < copy_below {
        len
    } else {
        len.max(SHARED_BLOCK)
    }
}

/// Most bytes of one run that [`Link::send_batch`] copies small PDUs into.
const HELD_RUN: usize = 64 * 1024;

/// Checks that `pdu` is exactly one encoded PDU with a valid header.
pub(crate) fn check_pdu(pdu: &[u8]) -> Result<(), FrameError> {
    let want = peek_pdu_len(pdu).map_err(FrameError::from_header)?;
    match pdu.len().cmp(&want) {
        CmpOrdering::Equal => Ok(()),
        CmpOrdering::Less => Err(FrameError::Malformed(DecodeError::Truncated {
            what: "pdu payload",
        })),
        CmpOrdering::Greater => Err(FrameError::Malformed(DecodeError::TrailingBytes {
            what: "pdu",
            count: pdu.len() - want,
        })),
    }
}

/// Checks that `run` is whole encoded PDUs back to back; returns how many.
pub(crate) fn check_run(run: &[u8]) -> Result<usize, FrameError> {
    let mut rest = run;
    let mut count = 0;
    while !rest.is_empty() {
        let len = peek_pdu_len(rest).map_err(FrameError::from_header)?;
        if len > rest.len() {
            return Err(FrameError::Malformed(DecodeError::Truncated {
                what: "pdu payload",
            }));
        }
        rest = &rest[len..];
        count += 1;
    }
    Ok(count)
}

impl LinkShared {
    pub(crate) fn new(
        id: LinkId,
        peer: PublicIdentity,
        conn: quinn::Connection,
        direction: Direction,
        queue: QueueSender,
        datagrams: mpsc::Sender<Bytes>,
        config: &super::TransportConfig,
    ) -> Self {
        let compact = tls::quinn_protocol(&conn).as_deref() == Some(tls::ALPN_COMPACT);
        LinkShared {
            id,
            peer,
            remote_addr: conn.remote_address(),
            compact,
            direction,
            conn,
            queue,
            datagrams,
            counters: Counters::default(),
            copy_below: config.copy_below,
            pdu_limit: AtomicUsize::new(config.unproven_pdu_limit),
            credit: Arc::new(tokio::sync::Semaphore::new(config.events_per_link)),
            datagram_credit: Arc::new(tokio::sync::Semaphore::new(config.datagram_events_per_link)),
            closing: AtomicBool::new(false),
            local_close: Mutex::new(None),
            down: tokio::sync::watch::Sender::new(None),
        }
    }

    /// Stops accepting new PDUs; what is queued is still written.
    pub(crate) fn refuse_new(&self) {
        self.closing.store(true, Ordering::Release);
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Closes the connection with `code` and `reason` (the first close
    /// wins) and wakes waiting senders.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        self.refuse_new();
        {
            let mut local = self
                .local_close
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if local.is_some() || self.conn.close_reason().is_some() {
                return;
            }
            *local = Some((code, reason.to_owned()));
        }
        self.queue.close();
        self.conn.close(code.varint(), reason.as_bytes());
    }

    /// Marks the link down: every later send fails.
    pub(crate) fn mark_down(&self) {
        self.refuse_new();
        self.queue.close();
    }

    /// The close made on this side, if any.
    pub(crate) fn local_close(&self) -> Option<(CloseCode, String)> {
        self.local_close
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Link {
    /// The link's id.
    pub fn id(&self) -> LinkId {
        self.shared.id
    }

    /// The name and metadata the peer proved.
    pub fn peer(&self) -> &PublicIdentity {
        &self.shared.peer
    }

    /// The peer's UDP address at the handshake.
    pub fn remote_addr(&self) -> SocketAddr {
        self.shared.remote_addr
    }

    /// Who dialed.
    pub fn direction(&self) -> Direction {
        self.shared.direction
    }

    /// The largest PDU that goes as one datagram now, or `None` if the peer
    /// takes no datagrams. It follows the path MTU and may change.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.shared.conn.max_datagram_size()
    }

    /// Lifts the bound on an incomplete PDU the link's reader holds
    /// ([`TransportConfig::unproven_pdu_limit`](super::TransportConfig::unproven_pdu_limit)):
    /// call it once the peer has proved what it is.
    pub fn lift_pdu_limit(&self) {
        self.shared.pdu_limit.store(usize::MAX, Ordering::Relaxed);
    }

    /// The bound on an incomplete PDU the link's reader holds now.
    pub fn pdu_limit(&self) -> usize {
        self.shared.pdu_limit.load(Ordering::Relaxed)
    }

    /// True once the link is closed or closing; sends then fail.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closing() || self.shared.conn.close_reason().is_some()
    }

    /// Resolves once the link is down (its connection closed and its
    /// readers done), with the reason its [`LinkEvent::Down`](super::LinkEvent::Down)
    /// carries, whether or not the owner has read its events.
    pub async fn closed(&self) -> DownReason {
        let mut down = self.shared.down.subscribe();
        // `self` holds the sender, so waiting cannot fail.
        let reason = down
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|r| r.clone());
        reason.unwrap_or_else(|| DownReason::Closed {
            code: CloseCode::Shutdown,
            reason: "the link's transport stopped".into(),
        })
    }

    fn open(&self) -> Result<(), SendError> {
        if self.shared.is_closing() {
            Err(SendError::Closed(self.shared.id))
        } else {
            Ok(())
        }
    }

    fn map_queue_error(&self, e: QueueError) -> SendError {
        match e {
            QueueError::Full => SendError::Full(self.shared.id),
            QueueError::Closed => SendError::Closed(self.shared.id),
        }
    }

    /// Queues one encoded PDU on the reliable stream, waiting while the
    /// queue is full (back-pressure). PDUs are written in the order they
    /// were queued.
    pub async fn send(&self, pdu: Bytes) -> Result<(), SendError> {
        check_pdu(&pdu)?;
        self.open()?;
        let (pdu, charge) = held(pdu, self.shared.copy_below);
        self.shared
            .queue
            .push(Batch::One(pdu), charge)
            .await
            .map_err(|e| self.map_queue_error(e))
    }

    /// Queues one encoded PDU on the reliable stream if there is room now;
    /// [`SendError::Full`] otherwise.
    pub fn try_send(&self, pdu: Bytes) -> Result<(), SendError> {
        check_pdu(&pdu)?;
        self.open()?;
        let (pdu, charge) = held(pdu, self.shared.copy_below);
        self.shared
            .queue
            .try_push(Batch::One(pdu), charge)
            .map_err(|e| self.map_queue_error(e))
    }

    /// Queues several encoded PDUs on the reliable stream, in order and
    /// together (all or none), waiting for room. Cheaper than one
    /// [`send`](Link::send) each.
    pub async fn send_batch(&self, pdus: Vec<Bytes>) -> Result<(), SendError> {
        Self::check_batch(&pdus)?;
        self.open()?;
        if pdus.is_empty() {
            return Ok(());
        }
        let (batch, charge) = hold_batch(pdus, self.shared.copy_below);
        self.shared
            .queue
            .push(batch, charge)
            .await
            .map_err(|e| self.map_queue_error(e))
    }

    /// Queues several encoded PDUs on the reliable stream if there is room
    /// for all of them now.
    pub fn try_send_batch(&self, pdus: Vec<Bytes>) -> Result<(), SendError> {
        Self::check_batch(&pdus)?;
        self.open()?;
        if pdus.is_empty() {
            return Ok(());
        }
        let (batch, charge) = hold_batch(pdus, self.shared.copy_below);
        self.shared
            .queue
            .try_push(batch, charge)
            .map_err(|e| self.map_queue_error(e))
    }

    /// [`try_send_batch`](Link::try_send_batch) that takes the PDUs out of
    /// `pdus` only when they are queued: on any error `pdus` is left as it
    /// was, so a caller can keep them for later without a copy.
    pub fn try_send_batch_from(&self, pdus: &mut Vec<Bytes>) -> Result<(), SendError> {
        Self::check_batch(pdus)?;
        self.open()?;
        if pdus.is_empty() {
            return Ok(());
        }
        let copy_below = self.shared.copy_below;
        let total = pdus
            .iter()
            .fold(0usize, |t, p| t.saturating_add(charge(p.len(), copy_below)));
        let permits = self
            .shared
            .queue
            .try_reserve(total)
            .map_err(|e| self.map_queue_error(e))?;
        let (batch, charged) = hold_batch(std::mem::take(pdus), copy_below);
        self.shared
            .queue
            .enqueue(batch, charged, permits)
            .map_err(|e| self.map_queue_error(e))
    }

    /// Queues `runs`, each whole encoded PDUs back to back (as they travel
    /// on a stream), on the reliable stream, in order and together, if
    /// there is room for all of them now. The cheapest way to pass on PDUs
    /// read from another link: no allocation or reference count per PDU.
    pub fn try_send_runs(&self, runs: Vec<Bytes>) -> Result<(), SendError> {
        let mut count = 0;
        for run in &runs {
            count += check_run(run)?;
        }
        self.open()?;
        if count == 0 {
            return Ok(());
        }
        let (runs, charge) = self.hold_all(runs);
        self.shared
            .queue
            .try_push(Batch::Runs(runs, count), charge)
            .map_err(|e| self.map_queue_error(e))
    }

    fn check_batch(pdus: &[Bytes]) -> Result<(), SendError> {
        for p in pdus {
            check_pdu(p)?;
        }
        Ok(())
    }

    /// [`held`] for each buffer; returns them and the bytes to charge.
    fn hold_all(&self, bufs: Vec<Bytes>) -> (Vec<Bytes>, usize) {
        let mut charge = 0usize;
        let bufs = bufs
            .into_iter()
            .map(|b| {
                let (b, c) = held(b, self.shared.copy_below);
                charge = charge.saturating_add(c);
                b
            })
            .collect();
        (bufs, charge)
    }

    /// Sends one encoded PDU unreliably, never waiting.
    ///
    /// It goes as one QUIC datagram if it fits
    /// [`max_datagram_size`](Link::max_datagram_size). A larger one goes on
    /// the reliable stream instead (if the reliable queue has room), so
    /// large unreliable PDUs still arrive, in a `reliable` batch; the PDU's
    /// own `UNRELIABLE` flag is untouched. When the queue it needs is full
    /// the PDU is dropped and counted. Datagrams may be lost or reordered.
    pub fn send_unreliable(&self, pdu: Bytes) -> Result<UnreliableOutcome, SendError> {
        check_pdu(&pdu)?;
        self.open()?;
        let counters = &self.shared.counters;
        let fits = self
            .shared
            .conn
            .max_datagram_size()
            .is_some_and(|max| pdu.len() <= max);
        if !fits {
            let (pdu, charge) = held(pdu, self.shared.copy_below);
            return match self.shared.queue.try_push(Batch::One(pdu), charge) {
                Ok(()) => {
                    bump(&counters.datagram_fallbacks, 1);
                    Ok(UnreliableOutcome::Stream)
                }
                Err(QueueError::Full) => {
                    bump(&counters.dropped_unreliable_out, 1);
                    Ok(UnreliableOutcome::Dropped)
                }
                Err(QueueError::Closed) => Err(SendError::Closed(self.shared.id)),
            };
        }
        // A datagram is small: copied, so it keeps no reader's block alive.
        let (pdu, _) = held(pdu, usize::MAX);
        match self.shared.datagrams.try_send(pdu) {
            Ok(()) => {
                bump(&counters.queued_datagrams, 1);
                Ok(UnreliableOutcome::Datagram)
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&counters.dropped_unreliable_out, 1);
                Ok(UnreliableOutcome::Dropped)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed(self.shared.id)),
        }
    }

    /// Closes the link at once with `reason`, which the peer receives.
    /// PDUs still queued are discarded (a graceful close of everything is
    /// [`Transport::shutdown`](super::Transport::shutdown)). The owner
    /// still receives [`LinkEvent::Down`](super::LinkEvent::Down).
    pub fn close(&self, reason: &str) {
        self.shared.close(CloseCode::Normal, reason);
    }

    /// Closes the link at once with `code` and `reason`.
    pub fn close_with(&self, code: CloseCode, reason: &str) {
        self.shared.close(code, reason);
    }

    /// The link's statistics now.
    pub fn stats(&self) -> LinkStats {
        let c = &self.shared.counters;
        let depth = self.shared.queue.depth();
        let quic = self.shared.conn.stats();
        LinkStats {
            rtt: self.shared.conn.rtt(),
            sent_pdus: get(&c.sent_pdus),
            sent_bytes: get(&c.sent_bytes),
            sent_stream_bytes: get(&c.sent_stream_bytes),
            compact_headers: self.shared.compact,
            sent_datagrams: get(&c.sent_datagrams),
            sent_datagram_bytes: get(&c.sent_datagram_bytes),
            received_pdus: get(&c.received_pdus),
            received_bytes: get(&c.received_bytes),
            received_datagrams: get(&c.received_datagrams),
            received_datagram_bytes: get(&c.received_datagram_bytes),
            queued_bytes: depth.bytes(),
            queued_pdus: depth.pdus(),
            queued_datagrams: get(&c.queued_datagrams),
            dropped_unreliable_out: get(&c.dropped_unreliable_out),
            dropped_unreliable_in: get(&c.dropped_unreliable_in),
            datagram_fallbacks: get(&c.datagram_fallbacks),
            malformed: get(&c.malformed),
            lost_packets: quic.path.lost_packets,
        }
    }

    /// Refuses new PDUs, then waits until everything queued has been
    /// written and acknowledged by the peer. False if the link went down
    /// first.
    pub(crate) async fn flush(&self) -> bool {
        self.shared.refuse_new();
        match self.shared.queue.finish() {
            Some(done) => done.await.is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_certs::Name;
    use gdp_proto::Encode;
    use gdp_proto::pdu::{MAX_PAYLOAD_LEN, Pdu, PduHeader, PduType};

    fn pdu(len: usize) -> Bytes {
        let h = PduHeader::new(PduType::Data, Name::from_bytes([1; 32]), Name::ZERO, 1);
        Pdu::new(h, Bytes::from(vec![7; len]))
            .expect("within limits")
            .to_bytes()
    }

    #[test]
    fn a_batch_is_held_in_runs_of_its_small_pdus_and_its_large_ones_as_they_are() {
        let copy_below = 16 * 1024;
        let mut pdus: Vec<Bytes> = (0..1000).map(|i| pdu(i % 200)).collect();
        pdus.insert(500, pdu(20_000));
        let expected: Vec<u8> = pdus.concat();
        let small: usize = pdus
            .iter()
            .filter(|p| p.len() < copy_below)
            .map(Bytes::len)
            .sum();
        let (batch, charged) = hold_batch(pdus.clone(), copy_below);
        let Batch::Runs(bufs, count) = batch else {
            panic!("a batch is held as runs");
        };
        assert_eq!(count, 1001);
        assert_eq!(bufs.concat(), expected, "same bytes, same order");
        assert_eq!(
            charged,
            small + SHARED_BLOCK,
            "small ones charged as copied"
        );
        // The large PDU is its own buffer (not copied); the small ones are
        // runs of at most HELD_RUN bytes, each a whole number of PDUs.
        assert!(bufs.iter().any(|b| b.as_ptr() == pdus[500].as_ptr()));
        for run in bufs.iter().filter(|b| b.as_ptr() != pdus[500].as_ptr()) {
            assert!(run.len() <= HELD_RUN);
            assert!(check_run(run).is_ok());
        }
        assert!(bufs.len() < 10, "{} buffers", bufs.len());
    }

    #[test]
    fn check_pdu_wants_exactly_one_pdu() {
        assert_eq!(check_pdu(&pdu(10)), Ok(()));
        let two = [pdu(1), pdu(1)].concat();
        assert!(matches!(
            check_pdu(&two),
            Err(FrameError::Malformed(DecodeError::TrailingBytes { .. }))
        ));
        let p = pdu(10);
        assert!(matches!(
            check_pdu(&p[..p.len() - 1]),
            Err(FrameError::Malformed(DecodeError::Truncated { .. }))
        ));
        assert!(matches!(
            check_pdu(&p[..10]),
            Err(FrameError::Malformed(DecodeError::Truncated { .. }))
        ));
        let mut big = p.to_vec();
        big[76..80].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes());
        assert!(matches!(check_pdu(&big), Err(FrameError::Oversized { .. })));
    }
}
