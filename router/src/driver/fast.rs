//! The fast path's I/O: link readers run the core's [`ReadPlan`] and queue
//! its stretches on the next hops themselves.
//!
//! Through the driver, a PDU crosses a task hand-off (the link's reader
//! delivers it to the driver, which queues it on the next hop's link) and
//! the core's per-PDU work. For PDUs whose fate the FIB alone decides, the
//! reader queues them on the next hop itself ([`gdp_link::Forwarder`]):
//! whole runs of PDUs as they were read, one queue operation per next hop
//! per read.
//!
//! Which PDUs those are is not decided here: the reader runs a
//! [`ReadPlan`] over the FIB entries the core has sealed, and the plan
//! forwards exactly what [`decide`](crate::core::fast::decide) forwards,
//! the predicate the core itself asks first for every PDU (see
//! [`core::fast`](crate::core::fast)). This module only executes the plan:
//! it tells the plan which links lead to routers, queues each stretch on
//! its next hop ([`Link::try_send_runs`]) while there is room, counts, and
//! keeps the order. Anything the plan or a full queue leaves, and
//! everything after it in the same read, goes to the driver as before,
//! where violations, NAKs, lookups, drops and stalls are handled and
//! counted. While the driver holds PDUs for a link whose queue was full
//! (its overflow), readers queue nothing on that link ([`FastPath::hold`]),
//! so nothing overtakes them.
//!
//! # Order
//!
//! PDUs from one link keep their order: a reader forwards only while none
//! of its earlier PDUs wait for the driver (each read left to the driver
//! counts up [`Slot::slow`]; the driver counts it down once it has handled
//! the read and queued what it produced), and only under sealed FIB entries
//! (the core seals once its released PDUs are queued, see
//! [`RouterCore::seal_fib`](crate::core::RouterCore::seal_fib)).
//!
//! # Cost per read
//!
//! No allocation and no lock per PDU: the plan slices the read's runs and
//! remembers its last FIB lookups; the reader looks a next hop's link up
//! once per change of next hop ([`ReaderView`]), allocates one vector of
//! parts per stretch, and copies the parts of a stretch towards a router
//! (its TTLs change, and the parts share their buffers with the read).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use gdp_certs::{Kind, Name, Timestamp};
use gdp_link::{Forwarder, Link, LinkForwarder};

use super::core_id;
use crate::core::fast::{FibView, Ingress, Peer, ReadPlan, Stretch};
use crate::core::{FibEntry, FibReader, LinkId};

/// A next hop's reliable send queue, as the fast path uses it.
pub(crate) trait RunQueue: Send + Sync + 'static {
    /// Queues `runs` (whole PDUs back to back) if there is room for all of
    /// them now; false if not, or if the link is closing.
    fn try_queue(&self, runs: Vec<Bytes>) -> bool;
}

impl RunQueue for Link {
    fn try_queue(&self, runs: Vec<Bytes>) -> bool {
        self.try_send_runs(runs).is_ok()
    }
}

/// One link as the fast path sees it: where to queue PDUs for it, and how
/// many of its reads wait for the driver.
#[derive(Debug)]
struct Slot<Q> {
    queue: Q,
    /// The peer is a router: PDUs to it have their TTL decremented.
    peer_is_router: bool,
    /// Reads of this link left (in part) to the driver and not yet done.
    slow: AtomicU64,
    /// The driver holds PDUs for this link that its queue had no room
    /// for: readers leave PDUs to it to the driver, behind those.
    held: AtomicBool,
}

/// What the fast path forwarded, for the router's counters.
#[derive(Debug, Default)]
pub(crate) struct FastStats {
    /// PDUs queued on a next hop by a link reader.
    pub(crate) forwarded: AtomicU64,
    /// Of those, to endpoints attached here.
    pub(crate) delivered_local: AtomicU64,
    /// Batches queued by link readers.
    pub(crate) batches: AtomicU64,
}

/// The router's [`Forwarder`]: the links, the FIB, the counters. Shared by
/// the driver and every link reader.
#[derive(Debug)]
pub(crate) struct FastPath<Q = Link> {
    router: Name,
    fib: FibReader,
    links: DashMap<LinkId, Arc<Slot<Q>>>,
    pub(crate) stats: FastStats,
}

impl<Q: RunQueue> FastPath<Q> {
    pub(crate) fn new(router: Name, fib: FibReader) -> Self {
        FastPath {
            router,
            fib,
            links: DashMap::new(),
            stats: FastStats::default(),
        }
    }

    /// `link` is starting, with `peer` at its other end and `queue` its
    /// send queue: it becomes a next hop, and this is its reader's side.
    fn open(self: &Arc<Self>, link: LinkId, peer: Peer, queue: Q) -> LinkReader<Q> {
        let slot = Arc::new(Slot {
            queue,
            peer_is_router: matches!(peer, Peer::Router(_)),
            slow: AtomicU64::new(0),
            held: AtomicBool::new(false),
        });
        self.links.insert(link, slot.clone());
        LinkReader {
            fast: self.clone(),
            at: Ingress {
                router: self.router,
                link,
                peer,
            },
            slot,
        }
    }

    /// The driver has handled one read of `link` that its reader left to
    /// it, and queued everything that read produced.
    pub(crate) fn slow_done(&self, link: LinkId) {
        if let Some(slot) = self.links.get(&link) {
            // Saturating: a read from before the slot existed was not counted.
            let _ = slot
                .slow
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Whether the driver holds PDUs for `link` (its queue was full): while
    /// it does, readers forward nothing to it, so nothing overtakes them.
    /// Set before the reads that produced them are marked done
    /// ([`slow_done`](Self::slow_done)), so a reader that may forward again
    /// sees it.
    pub(crate) fn hold(&self, link: LinkId, held: bool) {
        if let Some(slot) = self.links.get(&link) {
            slot.held.store(held, Ordering::Release);
        }
    }

    /// `link` is down.
    pub(crate) fn remove(&self, link: LinkId) {
        self.links.remove(&link);
    }
}

/// What the transport holds: opens a [`LinkReader`] per link.
#[derive(Debug)]
pub(crate) struct Install(pub(crate) Arc<FastPath>);

impl Forwarder for Install {
    fn open(&self, link: &Link) -> Option<Box<dyn LinkForwarder>> {
        let peer = if link.peer().metadata().kind() == Kind::Router {
            Peer::Router(link.peer().name())
        } else {
            Peer::Endpoint
        };
        Some(Box::new(self.0.open(
            core_id(link.id()),
            peer,
            link.clone(),
        )))
    }
}

/// The last link a [`ReaderView`] looked up, and its slot if it has one.
type LastSlot<Q> = Option<(LinkId, Option<Arc<Slot<Q>>>)>;

/// A link reader's [`FibView`]: the sealed FIB entries at `now`, and the
/// fast path's links, the last one looked up kept at hand (a read's PDUs
/// mostly go to one next hop).
struct ReaderView<'a, Q> {
    fib: &'a FibReader,
    now: Timestamp,
    links: &'a DashMap<LinkId, Arc<Slot<Q>>>,
    last: RefCell<LastSlot<Q>>,
}

impl<Q> ReaderView<'_, Q> {
    /// Runs `f` on the slot of `link` (`None` if it is gone).
    fn with_slot<R>(&self, link: LinkId, f: impl FnOnce(Option<&Slot<Q>>) -> R) -> R {
        let mut last = self.last.borrow_mut();
        if !matches!(&*last, Some((l, _)) if *l == link) {
            *last = Some((link, self.links.get(&link).map(|s| Arc::clone(s.value()))));
        }
        f(last.as_ref().and_then(|(_, slot)| slot.as_deref()))
    }
}

impl<Q> FibView for ReaderView<'_, Q> {
    #[inline]
    fn entry(&self, name: &Name) -> Option<FibEntry> {
        self.fib.lookup_sealed(name, self.now)
    }

    #[inline]
    fn to_router(&self, link: LinkId) -> Option<bool> {
        self.with_slot(link, |slot| slot.map(|s| s.peer_is_router))
    }
}

/// One link's stream reader's side of the fast path.
struct LinkReader<Q> {
    fast: Arc<FastPath<Q>>,
    at: Ingress,
    slot: Arc<Slot<Q>>,
}

impl<Q: RunQueue> LinkReader<Q> {
    /// How many PDUs from the front of `runs` were queued on their next
    /// hops at `now`, and whether that was all of them.
    fn take(&self, runs: &[Bytes], now: Timestamp) -> (usize, bool) {
        if self.slot.slow.load(Ordering::Acquire) > 0 {
            return (0, false);
        }
        let view = ReaderView {
            fib: &self.fast.fib,
            now,
            links: &self.fast.links,
            last: RefCell::new(None),
        };
        let mut plan = ReadPlan::new(view, self.at, runs);
        let mut taken = 0;
        while let Some(stretch) = plan.next_stretch() {
            let n = stretch.pdus();
            let link = stretch.hop().link;
            let sent = plan
                .view()
                .with_slot(link, |slot| slot.is_some_and(|s| self.send(s, stretch)));
            if !sent {
                return (taken, false);
            }
            taken += n;
        }
        (taken, plan.handoff().is_none())
    }

    /// Queues `stretch` on `slot`; false if its queue had no room (or the
    /// link is closing).
    fn send(&self, slot: &Slot<Q>, stretch: Stretch) -> bool {
        let local = !stretch.hop().to_router;
        let n = stretch.pdus() as u64;
        if slot.held.load(Ordering::Acquire) {
            return false;
        }
        let Some(runs) = stretch.into_wire() else {
            return false;
        };
        if !slot.queue.try_queue(runs) {
            return false;
        }
        let stats = &self.fast.stats;
        stats.forwarded.fetch_add(n, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        if local {
            stats.delivered_local.fetch_add(n, Ordering::Relaxed);
        }
        true
    }
}

impl<Q: RunQueue> LinkForwarder for LinkReader<Q> {
    fn forward(&mut self, runs: &[Bytes]) -> usize {
        let (taken, all) = self.take(runs, Timestamp::now());
        if !all {
            // The rest of the read goes to the driver: later reads wait
            // for it.
            self.slot.slow.fetch_add(1, Ordering::AcqRel);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use gdp_certs::codec::Encode;
    use gdp_proto::pdu::{Pdu, PduHeader, PduType, peek_header};

    use super::*;
    use crate::core::{Fib, RouteKind};

    /// A next hop's queue that keeps what it is given, or refuses it all.
    #[derive(Debug, Default)]
    struct Queue {
        batches: Mutex<Vec<Vec<Bytes>>>,
        full: AtomicBool,
    }

    impl RunQueue for Arc<Queue> {
        fn try_queue(&self, runs: Vec<Bytes>) -> bool {
            if self.full.load(Ordering::Relaxed) {
                return false;
            }
            self.batches.lock().expect("not poisoned").push(runs);
            true
        }
    }

    impl Queue {
        /// Every PDU queued so far, in order, as (header, bytes).
        fn pdus(&self) -> Vec<(PduHeader, Bytes)> {
            let batches = self.batches.lock().expect("not poisoned");
            let mut out = Vec::new();
            for run in batches.iter().flatten() {
                let mut at = 0;
                while at < run.len() {
                    let h = peek_header(&run[at..]).expect("whole pdus");
                    out.push((h, run.slice(at..at + h.pdu_len())));
                    at += h.pdu_len();
                }
            }
            out
        }

        fn batches(&self) -> usize {
            self.batches.lock().expect("not poisoned").len()
        }
    }

    const ROUTER: Name = Name::from_bytes([1; 32]);
    const PEER: Name = Name::from_bytes([2; 32]);
    const A: Name = Name::from_bytes([10; 32]);
    const B: Name = Name::from_bytes([11; 32]);
    const C: Name = Name::from_bytes([12; 32]);
    const FAR: Name = Name::from_bytes([20; 32]);
    const NOWHERE: Name = Name::from_bytes([30; 32]);

    /// A fast path with endpoint links 1 (A), 2 (B) and 3 (C) and a router
    /// link 4 (to PEER, through which FAR is cached), every entry sealed.
    struct World {
        fib: Arc<Fib>,
        fast: Arc<FastPath<Arc<Queue>>>,
        readers: Vec<LinkReader<Arc<Queue>>>,
        queues: Vec<Arc<Queue>>,
    }

    fn entry(link: u64, kind: RouteKind) -> FibEntry {
        FibEntry {
            next_hop: LinkId(link),
            kind,
            expires: Timestamp::MAX,
        }
    }

    fn world() -> World {
        let fib = Arc::new(Fib::new([7, 8]));
        let fast = Arc::new(FastPath::new(ROUTER, FibReader(fib.clone())));
        let mut readers = Vec::new();
        let mut queues = Vec::new();
        for (link, peer) in [
            (1, Peer::Endpoint),
            (2, Peer::Endpoint),
            (3, Peer::Endpoint),
            (4, Peer::Router(PEER)),
        ] {
            let queue = Arc::new(Queue::default());
            readers.push(fast.open(LinkId(link), peer, queue.clone()));
            queues.push(queue);
        }
        fib.insert(A, entry(1, RouteKind::Local));
        fib.insert(B, entry(2, RouteKind::Local));
        fib.insert(C, entry(3, RouteKind::Local));
        fib.insert(PEER, entry(4, RouteKind::Neighbor));
        fib.insert(FAR, entry(4, RouteKind::Cached));
        fib.seal();
        World {
            fib,
            fast,
            readers,
            queues,
        }
    }

    impl World {
        /// Offers `runs` to the reader of `link`, as the link's stream
        /// reader does.
        fn read(&mut self, link: u64, runs: &[Bytes]) -> usize {
            let i = usize::try_from(link - 1).expect("small");
            self.readers[i].forward(runs)
        }

        fn queue(&self, link: u64) -> &Queue {
            &self.queues[usize::try_from(link - 1).expect("small")]
        }

        fn slow(&self, link: u64) -> u64 {
            self.readers[usize::try_from(link - 1).expect("small")]
                .slot
                .slow
                .load(Ordering::Acquire)
        }

        fn stats(&self) -> (u64, u64, u64) {
            let s = &self.fast.stats;
            (
                s.forwarded.load(Ordering::Relaxed),
                s.delivered_local.load(Ordering::Relaxed),
                s.batches.load(Ordering::Relaxed),
            )
        }
    }

    fn pdu(src: Name, dst: Name, seq: u64, ttl: u8) -> Bytes {
        let h = PduHeader::new(PduType::Data, dst, src, seq).with_ttl(ttl);
        Pdu::new(h, Bytes::from(vec![seq as u8; 40]))
            .expect("small")
            .to_bytes()
    }

    /// PDUs back to back in one buffer, as a stream reader's run.
    fn run(pdus: &[Bytes]) -> Bytes {
        Bytes::from(pdus.concat())
    }

    #[test]
    fn a_read_between_endpoints_is_queued_whole_on_the_next_hop() {
        let mut w = world();
        let pdus: Vec<Bytes> = (1..=3).map(|s| pdu(A, B, s, 9)).collect();
        let read = [run(&pdus[..2]), run(&pdus[2..])];
        assert_eq!(w.read(1, &read), 3);
        // One queue operation for the read, the bytes as they were read.
        assert_eq!(w.queue(2).batches(), 1);
        let got: Vec<Bytes> = w.queue(2).pdus().into_iter().map(|(_, b)| b).collect();
        assert_eq!(got, pdus);
        assert_eq!(w.stats(), (3, 3, 1));
        assert_eq!(w.slow(1), 0);
    }

    #[test]
    fn towards_a_router_each_ttl_is_decremented_in_a_copy() {
        let mut w = world();
        let read = [run(&[pdu(A, FAR, 1, 5), pdu(A, FAR, 2, 1)])];
        assert_eq!(w.read(1, &read), 2);
        let got = w.queue(4).pdus();
        let ttls: Vec<u8> = got.iter().map(|(h, _)| h.ttl).collect();
        assert_eq!(ttls, vec![4, 0]);
        // The read itself is untouched.
        assert_eq!(peek_header(&read[0]).map(|h| h.ttl), Ok(5));
        assert_eq!(w.stats(), (2, 0, 1));
    }

    #[test]
    fn pdus_from_a_router_link_in_use_are_forwarded_to_endpoints() {
        let mut w = world();
        assert_eq!(
            w.read(4, &[run(&[pdu(FAR, B, 1, 0), pdu(FAR, C, 2, 3)])]),
            2
        );
        // A TTL of zero is no obstacle to a local delivery.
        assert_eq!(w.queue(2).pdus()[0].0.ttl, 0);
        assert_eq!(w.queue(3).pdus()[0].0.ttl, 3);
        // One stretch per next hop.
        assert_eq!(w.stats(), (2, 2, 2));
    }

    #[test]
    fn a_read_stops_at_the_first_pdu_for_the_core_and_later_reads_wait() {
        let mut w = world();
        let read = [run(&[
            pdu(A, B, 1, 9),
            pdu(A, C, 2, 9),
            pdu(A, NOWHERE, 3, 9),
            pdu(A, B, 4, 9),
        ])];
        assert_eq!(w.read(1, &read), 2);
        assert_eq!(w.slow(1), 1);
        // Until the driver has handled that read, nothing more is taken.
        assert_eq!(w.read(1, &[pdu(A, B, 5, 9)]), 0);
        assert_eq!(w.slow(1), 2);
        // Other links are not held up.
        assert_eq!(w.read(2, &[pdu(B, A, 1, 9)]), 1);
        // One of the two reads done: the other still holds the link back.
        w.fast.slow_done(LinkId(1));
        assert_eq!(w.read(1, &[pdu(A, B, 6, 9)]), 0);
        assert_eq!(w.slow(1), 2);
        w.fast.slow_done(LinkId(1));
        w.fast.slow_done(LinkId(1));
        assert_eq!(w.slow(1), 0);
        assert_eq!(w.read(1, &[pdu(A, B, 7, 9)]), 1);
        let seqs: Vec<u64> = w.queue(2).pdus().iter().map(|(h, _)| h.seq).collect();
        assert_eq!(seqs, vec![1, 7]);
    }

    #[test]
    fn a_full_next_hop_leaves_its_stretch_and_the_rest_to_the_core() {
        let mut w = world();
        w.queue(3).full.store(true, Ordering::Relaxed);
        let read = [run(&[pdu(A, B, 1, 9), pdu(A, C, 2, 9), pdu(A, B, 3, 9)])];
        assert_eq!(w.read(1, &read), 1);
        assert_eq!(w.queue(2).pdus().len(), 1);
        assert_eq!(w.slow(1), 1);
        assert_eq!(w.stats(), (1, 1, 1));
    }

    /// In a fresh world changed by `edit`, the reader of `link` leaves
    /// `pdu` to the core.
    fn left_to_core(edit: impl FnOnce(&Fib), link: u64, pdu: Bytes) {
        let mut w = world();
        edit(&w.fib);
        assert_eq!(w.read(link, &[pdu]), 0);
        assert_eq!(w.slow(link), 1);
        assert_eq!(w.stats(), (0, 0, 0));
    }

    #[test]
    fn what_the_core_must_judge_is_left_to_it() {
        // A source not bound to the link it came on.
        left_to_core(|_| {}, 1, pdu(B, C, 1, 9));
        // A destination without an entry.
        left_to_core(|_| {}, 1, pdu(A, NOWHERE, 1, 9));
        // An entry the core wrote but has not sealed.
        left_to_core(
            |fib| {
                fib.insert(NOWHERE, entry(2, RouteKind::Local));
            },
            1,
            pdu(A, NOWHERE, 1, 9),
        );
        // A PDU for this router.
        left_to_core(|_| {}, 2, pdu(B, ROUTER, 1, 9));
        // A router link that is not the one in use for its peer.
        left_to_core(
            |fib| {
                fib.insert(PEER, entry(9, RouteKind::Neighbor));
                fib.seal();
            },
            4,
            pdu(FAR, B, 1, 9),
        );
        // A TTL of zero towards a router.
        left_to_core(|_| {}, 1, pdu(A, FAR, 1, 0));
    }

    #[test]
    fn a_link_that_went_down_is_no_next_hop() {
        let mut w = world();
        w.fast.remove(LinkId(2));
        assert_eq!(w.read(1, &[pdu(A, B, 1, 9), pdu(A, C, 2, 9)]), 0);
        assert_eq!(w.queue(2).batches(), 0);
        assert_eq!(w.slow(1), 1);
    }
}
