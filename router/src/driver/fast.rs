//! The fast path: link readers forward the common case themselves.
//!
//! Through the driver, a PDU crosses a task hand-off (the link's reader
//! delivers it to the driver, which queues it on the next hop's link) and
//! the core's per-PDU work. For PDUs whose fate the FIB alone decides, the
//! reader queues them on the next hop itself ([`gdp_link::Forwarder`]):
//! whole runs of PDUs as they were read, one queue operation per next hop
//! per read. It takes a PDU only when the core would do exactly the same
//! with it:
//!
//! - the link is ready: an endpoint link is checked per PDU, by the source
//!   name's own FIB entry (a local entry whose next hop is this link, which
//!   the core installs for the attached name and each advertised one); a
//!   router link must be the FIB's neighbour entry for its peer;
//! - the PDU is well formed, not too long, not control, advertise or
//!   withdraw, and not addressed to this router;
//! - its destination has a sealed, unexpired FIB entry whose link is up;
//! - towards a router, its TTL is not zero (it is decremented in place);
//! - the next hop's queue has room now.
//!
//! Anything else, and everything after it in the same read, goes to the
//! driver as before, where violations, NAKs, lookups, drops and stalls are
//! handled and counted. The fast path is a subset of the core's decisions,
//! never a second opinion.
//!
//! # Order
//!
//! PDUs from one link keep their order: a reader forwards only while none
//! of its earlier PDUs wait for the driver (each read left to the driver
//! counts up [`Slot::slow`]; the driver counts it down once it has handled
//! the read and queued what it produced), and only under sealed FIB entries
//! (the core seals once its released PDUs are queued, see
//! [`RouterCore::seal_fib`](crate::core::RouterCore::seal_fib)).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use gdp_certs::{Kind, Name, Timestamp};
use gdp_link::{Forwarder, Link, LinkForwarder};
use gdp_proto::pdu::{decrement_ttl, peek_header};
use gdp_proto::{Flags, PduHeader, PduType};

use super::core_id;
use crate::core::{FibEntry, FibReader, LinkId, RouteKind};

/// One link as the fast path sees it: where to queue PDUs for it, and how
/// many of its reads wait for the driver.
#[derive(Debug)]
struct Slot {
    link: Link,
    /// The peer is a router: PDUs from it need no source check, PDUs to it
    /// have their TTL decremented.
    peer_is_router: bool,
    /// Reads of this link left (in part) to the driver and not yet done.
    slow: AtomicU64,
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
pub(crate) struct FastPath {
    router: Name,
    fib: FibReader,
    links: DashMap<LinkId, Arc<Slot>>,
    pub(crate) stats: FastStats,
}

impl FastPath {
    pub(crate) fn new(router: Name, fib: FibReader) -> Self {
        FastPath {
            router,
            fib,
            links: DashMap::new(),
            stats: FastStats::default(),
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
        let id = core_id(link.id());
        let slot = Arc::new(Slot {
            link: link.clone(),
            peer_is_router: link.peer().metadata().kind() == Kind::Router,
            slow: AtomicU64::new(0),
        });
        self.0.links.insert(id, slot.clone());
        Some(Box::new(LinkReader {
            fast: self.0.clone(),
            id,
            peer: link.peer().name(),
            slot,
        }))
    }
}

/// One link's stream reader's side of the fast path.
struct LinkReader {
    fast: Arc<FastPath>,
    id: LinkId,
    peer: Name,
    slot: Arc<Slot>,
}

/// PDUs of a read bound for one next hop: slices of the read's runs.
struct Stretch {
    next_hop: LinkId,
    slot: Arc<Slot>,
    parts: Vec<Bytes>,
    pdus: usize,
}

impl LinkReader {
    /// True if the core would forward PDUs from this link without looking
    /// at it again: an endpoint link is judged per PDU (by source), a router
    /// link must be the ready link to its peer.
    fn router_link_ready(&self, now: Timestamp) -> bool {
        self.fast
            .fib
            .lookup_sealed(&self.peer, now)
            .is_some_and(|e| e.kind == RouteKind::Neighbor && e.next_hop == self.id)
    }

    /// True if `src` may send on this endpoint link: its own FIB entry is
    /// a local one through this link.
    fn source_ok(&self, src: &Name, now: Timestamp) -> bool {
        self.fast
            .fib
            .lookup_sealed(src, now)
            .is_some_and(|e| e.kind == RouteKind::Local && e.next_hop == self.id)
    }

    /// True if the fast path may take a PDU with `header` at all, whatever
    /// its route. (Its length needs no check: `peek_header` refuses a
    /// header announcing more than the largest PDU, and the reader cut the
    /// PDU at the length the header gives.)
    fn eligible(&self, header: &PduHeader) -> bool {
        !matches!(
            header.ptype,
            PduType::Control | PduType::Advertise | PduType::Withdraw
        ) && !header.flags.contains(Flags::UNRELIABLE)
            && header.dst != self.fast.router
            && (!self.slot.peer_is_router || header.ttl > 0)
    }

    /// Queues `stretch` on its next hop; false if its queue had no room
    /// (or the link is closing).
    fn send(&self, stretch: Stretch) -> bool {
        let Stretch {
            slot, parts, pdus, ..
        } = stretch;
        let parts = if slot.peer_is_router {
            // The TTLs change, and the runs share their buffers with the
            // read: one copy per part.
            let mut out = Vec::with_capacity(parts.len());
            for part in &parts {
                let mut buf = BytesMut::from(&part[..]);
                let mut at = 0;
                while at < buf.len() {
                    let Ok(header) = peek_header(&buf[at..]) else {
                        return false;
                    };
                    if decrement_ttl(&mut buf[at..]).is_err() {
                        return false;
                    }
                    at += header.pdu_len();
                }
                out.push(buf.freeze());
            }
            out
        } else {
            parts
        };
        if slot.link.try_send_runs(parts).is_err() {
            return false;
        }
        let (stats, n) = (&self.fast.stats, pdus as u64);
        stats.forwarded.fetch_add(n, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        if !slot.peer_is_router {
            stats.delivered_local.fetch_add(n, Ordering::Relaxed);
        }
        true
    }

    /// How many PDUs from the front of `runs` were queued on their next
    /// hops, and whether that was all of them.
    fn take(&self, runs: &[Bytes]) -> (usize, bool) {
        if self.slot.slow.load(Ordering::Acquire) > 0 {
            return (0, false);
        }
        let now = Timestamp::now();
        if self.slot.peer_is_router && !self.router_link_ready(now) {
            return (0, false);
        }
        let mut checked_src: Option<Name> = None;
        let mut last_dst: Option<(Name, FibEntry)> = None;
        let mut stretch: Option<Stretch> = None;
        let mut sent = 0;
        for run in runs {
            // The part of this run in the current stretch starts here.
            let mut part_start = 0;
            let mut at = 0;
            while at < run.len() {
                let Ok(header) = peek_header(&run[at..]) else {
                    return self.end(stretch, run, part_start, at, sent);
                };
                let len = header.pdu_len();
                if len > run.len() - at || !self.eligible(&header) {
                    return self.end(stretch, run, part_start, at, sent);
                }
                if !self.slot.peer_is_router && checked_src != Some(header.src) {
                    if !self.source_ok(&header.src, now) {
                        return self.end(stretch, run, part_start, at, sent);
                    }
                    checked_src = Some(header.src);
                }
                let entry = match last_dst {
                    Some((dst, entry)) if dst == header.dst => entry,
                    _ => match self.fast.fib.lookup_sealed(&header.dst, now) {
                        Some(entry) => {
                            last_dst = Some((header.dst, entry));
                            entry
                        }
                        None => return self.end(stretch, run, part_start, at, sent),
                    },
                };
                if stretch
                    .as_ref()
                    .is_none_or(|s| s.next_hop != entry.next_hop)
                {
                    if let Some(done) = stretch.take() {
                        match self.close(done, run, part_start, at) {
                            Some(n) => sent += n,
                            None => return (sent, false),
                        }
                    }
                    part_start = at;
                    let Some(slot) = self.fast.links.get(&entry.next_hop).map(|s| s.clone()) else {
                        return (sent, false);
                    };
                    stretch = Some(Stretch {
                        next_hop: entry.next_hop,
                        slot,
                        parts: Vec::new(),
                        pdus: 0,
                    });
                }
                if let Some(s) = stretch.as_mut() {
                    s.pdus += 1;
                }
                at += len;
            }
            if let Some(s) = stretch.as_mut()
                && at > part_start
            {
                s.parts.push(run.slice(part_start..at));
            }
        }
        // The last stretch already holds its parts.
        match stretch {
            Some(done) => {
                let n = done.pdus;
                if self.send(done) {
                    (sent + n, true)
                } else {
                    (sent, false)
                }
            }
            None => (sent, true),
        }
    }

    /// Stops at byte `at` of `run`: sends the stretch so far and reports
    /// what was taken.
    fn end(
        &self,
        stretch: Option<Stretch>,
        run: &Bytes,
        part_start: usize,
        at: usize,
        sent: usize,
    ) -> (usize, bool) {
        let closed = stretch.and_then(|done| self.close(done, run, part_start, at));
        (sent + closed.unwrap_or(0), false)
    }

    /// Adds bytes `part_start..at` of `run` to `stretch` and sends it;
    /// the PDUs sent, or `None` if its next hop had no room.
    fn close(
        &self,
        mut stretch: Stretch,
        run: &Bytes,
        part_start: usize,
        at: usize,
    ) -> Option<usize> {
        if at > part_start {
            stretch.parts.push(run.slice(part_start..at));
        }
        let n = stretch.pdus;
        self.send(stretch).then_some(n)
    }
}

impl LinkForwarder for LinkReader {
    fn forward(&mut self, runs: &[Bytes]) -> usize {
        let (taken, all) = self.take(runs);
        if !all {
            // The rest of the read goes to the driver: later reads wait
            // for it.
            self.slot.slow.fetch_add(1, Ordering::AcqRel);
        }
        taken
    }
}
