//! The routers' simulated link readers: the fast path, as the driver's
//! link readers run it.
//!
//! A reliable batch arriving at a router is one read. Its reader runs the
//! core's [`ReadPlan`] over the router's sealed FIB entries and the links
//! that are up, puts each stretch it forwards on its next hop at once, and
//! leaves the rest of the batch to the core (see
//! [`NetConfig::fast_path`](super::NetConfig::fast_path)). Simulated links
//! have no queue limit, so a stretch is never refused; a next hop that is
//! down is one the plan does not know.

use std::collections::BTreeMap;

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};
use gdp_proto::pdu::peek_header;

use super::{End, Network, RouterId, SimLink};
use crate::core::fast::{FibView, Ingress, Peer, ReadPlan};
use crate::core::{FibEntry, FibReader, LinkId};

impl Network {
    /// The link reader of `router` on `link` offers the reliable batch
    /// `pdus` to the fast path, as the driver's readers do: the PDUs from
    /// the front that the core's [`ReadPlan`] forwards leave on their next
    /// hops now. Returns how many; the rest are the core's.
    pub(super) fn fast_read(&mut self, router: RouterId, link: LinkId, pdus: &[Bytes]) -> usize {
        // A stream reader hands over whole PDUs only; anything else in the
        // batch (the simulation lets endpoints send raw bytes), and what
        // follows it, is the core's to judge.
        let whole = pdus
            .iter()
            .take_while(|b| peek_header(b).is_ok_and(|h| h.pdu_len() == b.len()))
            .count();
        let me = End::Router(router);
        let Some(l) = self.links.get(&link).filter(|_| whole > 0) else {
            return 0;
        };
        let peer = match l.other(me) {
            End::Router(r) => Peer::Router(self.router_name(r)),
            End::Endpoint(_) => Peer::Endpoint,
        };
        let at = Ingress {
            router: self.router_name(router),
            link,
            peer,
        };
        let fib = self.routers[router.0].core.fib();
        let view = SimView {
            fib: &fib,
            now: self.now,
            links: &self.links,
            me,
        };
        let mut plan = ReadPlan::new(view, at, &pdus[..whole]);
        let mut sends = Vec::new();
        let (mut taken, mut local) = (0, 0);
        while let Some(stretch) = plan.next_stretch() {
            let (hop, n) = (stretch.hop(), stretch.pdus());
            let Some(runs) = stretch.into_wire() else {
                break;
            };
            sends.push((hop.link, runs.iter().flat_map(split_run).collect()));
            taken += n;
            if !hop.to_router {
                local += n;
            }
        }
        for (next, pdus) in sends {
            self.transmit(next, me, pdus, true);
        }
        let r = &mut self.routers[router.0];
        r.core.record_fast_path(taken as u64, local as u64);
        r.fast_forwarded += taken as u64;
        taken
    }
}

/// A simulated link reader's [`FibView`]: the router's sealed FIB entries
/// at `now`, and the links that are up, seen from `me`.
struct SimView<'a> {
    fib: &'a FibReader,
    now: Timestamp,
    links: &'a BTreeMap<LinkId, SimLink>,
    me: End,
}

impl FibView for SimView<'_> {
    fn entry(&self, name: &Name) -> Option<FibEntry> {
        self.fib.lookup_sealed(name, self.now)
    }

    fn to_router(&self, link: LinkId) -> Option<bool> {
        let l = self.links.get(&link).filter(|l| l.up)?;
        Some(matches!(l.other(self.me), End::Router(_)))
    }
}

/// The PDUs of `run` (whole PDUs back to back), one buffer each, as the
/// simulated links carry them.
fn split_run(run: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(h) = peek_header(&run[at..]) {
        let end = at + h.pdu_len();
        if end > run.len() {
            break;
        }
        out.push(run.slice(at..end));
        at = end;
    }
    out
}
