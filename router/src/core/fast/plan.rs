//! What a link reader does with one read: a [`ReadPlan`], cutting the
//! PDUs [`decide`] forwards into [`Stretch`]es, one per next hop.

use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use gdp_certs::Name;
use gdp_proto::pdu::{decrement_ttl, peek_header};

use super::{FibView, Hop, Ingress, Reason, Verdict, decide};
use crate::core::fib::FibEntry;
use crate::core::io::LinkId;

/// Consecutive PDUs of one read that go to one next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stretch {
    hop: Hop,
    parts: Vec<Bytes>,
    pdus: usize,
}

impl Stretch {
    /// Where the PDUs go.
    pub fn hop(&self) -> Hop {
        self.hop
    }

    /// How many PDUs the stretch holds.
    pub fn pdus(&self) -> usize {
        self.pdus
    }

    /// The PDUs as they were read: slices of the read's runs, each one or
    /// more whole PDUs back to back.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The bytes to queue on the next hop, as runs of whole PDUs: the parts
    /// as they were read towards an endpoint; towards a router, a copy of
    /// each part with every PDU's TTL decremented (the parts share their
    /// buffers with the read). `None` if a PDU cannot be re-read or its TTL
    /// is zero, which [`decide`] rules out for the stretches of a plan.
    pub fn into_wire(self) -> Option<Vec<Bytes>> {
        if !self.hop.to_router {
            return Some(self.parts);
        }
        let mut out = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let mut buf = BytesMut::from(&part[..]);
            let mut at = 0;
            while at < buf.len() {
                let len = peek_header(&buf[at..]).ok()?.pdu_len();
                decrement_ttl(&mut buf[at..]).ok()?;
                at += len;
            }
            out.push(buf.freeze());
        }
        Some(out)
    }
}

/// Why a plan left the rest of its read to the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Handoff {
    /// [`decide`] left the PDU there to the core.
    Core(Reason),
    /// The bytes there are not a whole PDU (the core counts the violation).
    Unreadable,
}

/// One remembered lookup: a name and what the view said about it.
type Remembered = Option<(Name, Option<FibEntry>)>;

/// Lookups a [`Recent`] view remembers: a PDU from a directory-vouched
/// router needs three (the peer, the source, the destination).
const REMEMBERED: usize = 3;

/// A view that remembers its last [`REMEMBERED`] entry lookups (see
/// [`ReadPlan`]): a hit costs a few name comparisons, a miss replaces the
/// one used least recently.
#[derive(Debug)]
struct Recent<V> {
    view: V,
    /// Most recently used first.
    slots: [Cell<Remembered>; REMEMBERED],
}

impl<V> Recent<V> {
    fn new(view: V) -> Self {
        Recent {
            view,
            slots: [Cell::new(None), Cell::new(None), Cell::new(None)],
        }
    }

    /// Moves slot `i` to the front, holding `value`.
    #[inline]
    fn promote(&self, i: usize, value: Remembered) {
        for j in (1..=i).rev() {
            self.slots[j].set(self.slots[j - 1].get());
        }
        self.slots[0].set(value);
    }
}

impl<V: FibView> FibView for Recent<V> {
    #[inline]
    fn entry(&self, name: &Name) -> Option<FibEntry> {
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some((n, e)) = slot.get()
                && n == *name
            {
                if i > 0 {
                    self.promote(i, Some((n, e)));
                }
                return e;
            }
        }
        let e = self.view.entry(name);
        self.promote(REMEMBERED - 1, Some((*name, e)));
        e
    }

    #[inline]
    fn to_router(&self, link: LinkId) -> Option<bool> {
        self.view.to_router(link)
    }
}

/// What a link reader does with one read.
///
/// A read from a link's stream is a few *runs*, each one or more whole PDUs
/// back to back in one buffer. The plan walks them in order, runs
/// [`decide`] on each PDU's header, and cuts the PDUs it forwards into
/// [`Stretch`]es: consecutive PDUs for one next hop, as slices of the runs
/// (no copy, no allocation per PDU). It stops at the first PDU `decide`
/// leaves to the core; that PDU and everything after it in the read go to
/// the core, so the PDUs of one link keep their order.
///
/// The plan does no I/O. Whoever runs it (the driver's link readers, the
/// simulation's) takes the stretches one at a time with
/// [`ReadPlan::next_stretch`] and queues each on its next hop
/// ([`Stretch::into_wire`] gives the bytes); if a next hop has no room, it
/// stops there, and the PDUs of that stretch go to the core with the rest.
/// Stretches come lazily, so nothing is decided past the point where the
/// reader stops.
///
/// Within one read the plan asks the view about each name once in a row:
/// it remembers the last three entries it looked up, which on a read from
/// one source to one destination are the source's, the destination's and,
/// from a router, the peer router's.
#[derive(Debug)]
pub struct ReadPlan<'r, V> {
    fib: Recent<V>,
    at: Ingress,
    runs: &'r [Bytes],
    /// The run being walked, and the offset of the next PDU in it.
    run: usize,
    pos: usize,
    handoff: Option<Handoff>,
}

impl<'r, V: FibView> ReadPlan<'r, V> {
    /// A plan for the read `runs` (each one or more whole PDUs back to
    /// back, in the order read) that arrived at `at`, decided over `fib`.
    pub fn new(fib: V, at: Ingress, runs: &'r [Bytes]) -> Self {
        ReadPlan {
            fib: Recent::new(fib),
            at,
            runs,
            run: 0,
            pos: 0,
            handoff: None,
        }
    }

    /// The view the plan decides over.
    pub fn view(&self) -> &V {
        &self.fib.view
    }

    /// The next stretch to forward, or `None` once the read is planned: all
    /// of it forwarded, or the rest left to the core
    /// ([`handoff`](ReadPlan::handoff) says why).
    pub fn next_stretch(&mut self) -> Option<Stretch> {
        let mut stretch: Option<Stretch> = None;
        while self.handoff.is_none() && self.run < self.runs.len() {
            let run = &self.runs[self.run];
            let start = self.pos;
            let mut cut = false;
            while self.pos < run.len() {
                let header = match peek_header(&run[self.pos..]) {
                    Ok(h) if h.pdu_len() <= run.len() - self.pos => h,
                    _ => {
                        self.handoff = Some(Handoff::Unreadable);
                        break;
                    }
                };
                let hop = match decide(&self.fib, &self.at, &header) {
                    Verdict::Forward(hop) => hop,
                    Verdict::Core(reason) => {
                        self.handoff = Some(Handoff::Core(reason));
                        break;
                    }
                };
                match &mut stretch {
                    Some(s) if s.hop != hop => {
                        // This PDU starts the next stretch (decided again
                        // then, from the remembered entries).
                        cut = true;
                        break;
                    }
                    Some(s) => s.pdus += 1,
                    None => {
                        stretch = Some(Stretch {
                            hop,
                            parts: Vec::new(),
                            pdus: 1,
                        });
                    }
                }
                self.pos += header.pdu_len();
            }
            if let Some(s) = stretch.as_mut()
                && self.pos > start
            {
                s.parts.push(run.slice(start..self.pos));
            }
            if cut || self.handoff.is_some() {
                break;
            }
            self.run += 1;
            self.pos = 0;
        }
        stretch
    }

    /// Why the rest of the read goes to the core; `None` while the plan
    /// has not stopped (once [`next_stretch`](ReadPlan::next_stretch)
    /// returned `None`: the whole read was forwarded).
    pub fn handoff(&self) -> Option<Handoff> {
        self.handoff
    }
}
