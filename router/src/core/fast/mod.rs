//! The fast path's forwarding decision, in one place.
//!
//! A router forwards most PDUs without looking at anything but its FIB:
//! the PDU came from where its source lives, its destination has an entry,
//! and the next hop is there. [`decide`] is that predicate, a pure function
//! of a PDU's header, the link it arrived on ([`Ingress`]) and a
//! [`FibView`]. Both paths run it:
//!
//! - the core, first, for every PDU it handles
//!   ([`RouterCore::handle_pdus`](super::RouterCore::handle_pdus)): on
//!   [`Verdict::Forward`] it queues the PDU on the hop and does nothing
//!   else; on [`Verdict::Core`] it does its own, slower work (violations,
//!   control messages, NAKs, lookups, drops);
//! - a link reader, through a [`ReadPlan`], over the FIB entries the core
//!   has sealed: it forwards the PDUs from the front of a read that `decide`
//!   forwards, and leaves the rest of the read to the core.
//!
//! So the two cannot disagree: whatever a link reader forwards, the core
//! would have forwarded to the same hop with the same bytes (the
//! `agreement` module says why, and checks it in debug builds), and
//! whatever `decide` leaves to the core, the core decides alone.
//!
//! # What `decide` checks
//!
//! In this order, cheapest first, and only through the view:
//!
//! 1. the PDU is not link-local (control, advertise, withdraw), not one of
//!    a delivery tree's (subscribe, unsubscribe, publish: the core acts on
//!    those and copies publishes per member link), not flagged
//!    unreliable (a link reader passes on a stream, which such a PDU need
//!    not take), and not addressed to this router;
//! 2. the link is one the core forwards from without a second look: for an
//!    endpoint, the source's own entry is a local one through this link
//!    (the core installs one for the attached name and each capsule it
//!    advertised); for a router, the peer's entry is the neighbour entry
//!    through this link (the core installs it once the peering policy
//!    accepted the peer), and if that entry says the peer is only
//!    directory-vouched ([`RouteKind::Vouched`]), the source is the peer or
//!    the source's own entry leads back through this link (the route the
//!    core resolved from a verified record naming the peer): one more
//!    lookup, and the core's entitlement check agrees with it;
//! 3. the destination has an entry, and the view knows its next hop;
//! 4. towards a router, the TTL is not zero (it is decremented on the way).
//!
//! A view answers for "now" and for what its reader may see: the core's
//! view is the whole FIB, a link reader's only the sealed entries (see
//! "Sealing" in the [`Fib`](super::Fib) documentation). A sealed view
//! returns the same entry as the whole FIB, or none, so a reader's
//! `Forward` is always the core's `Forward`.

use gdp_certs::Name;
use gdp_proto::{Flags, PduHeader, PduType};

use super::fib::{FibEntry, RouteKind};
use super::io::LinkId;

mod agreement;
mod plan;
#[cfg(test)]
mod tests;

pub(crate) use agreement::CoreView;
pub use plan::{Handoff, ReadPlan, Stretch};

/// The facts [`decide`] needs: FIB entries, and what the links they point
/// at lead to.
pub trait FibView {
    /// The entry for `name` this view may use: valid now and, for a link
    /// reader, sealed.
    fn entry(&self, name: &Name) -> Option<FibEntry>;

    /// Whether `link` leads to a router (`true`) or an endpoint (`false`);
    /// `None` if the view does not know the link (it is gone).
    fn to_router(&self, link: LinkId) -> Option<bool>;
}

/// Who is at the other end of the link a PDU arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// An endpoint, attached or not: each PDU's source is checked.
    Endpoint,
    /// The router with this (authenticated) name.
    Router(Name),
}

/// Where PDUs arrive: this router, the link, and its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingress {
    /// This router's name: PDUs addressed to it are the core's.
    pub router: Name,
    /// The link the PDUs arrived on.
    pub link: LinkId,
    /// Who is at its other end.
    pub peer: Peer,
}

/// Where a forwarded PDU goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The next hop's link.
    pub link: LinkId,
    /// The link leads to a router: the PDU's TTL is decremented on the way.
    pub to_router: bool,
}

/// Why [`decide`] leaves a PDU to the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Control, Advertise or Withdraw: the core handles them itself.
    LinkLocal,
    /// Subscribe, Unsubscribe or Publish: a delivery tree's, which the
    /// core acts on (joins, leaves, copies per member) and never forwards
    /// by the FIB.
    Tree,
    /// Flagged unreliable: the core sends it as a datagram.
    Unreliable,
    /// Addressed to this router.
    ForThisRouter,
    /// A NakNoRoute from a router: the core reads it, since it may say
    /// that a cached route through that router went stale.
    NakFromRouter,
    /// From a router, with a destination whose entry leads back to that
    /// router: one of the two routes is stale (each router thinks the name
    /// is on the other's side), and the core sorts it out instead of
    /// sending the PDU back.
    Hairpin,
    /// From an endpoint, with a source whose FIB entry is not a local entry
    /// through this link (not attached, spoofed, or served by another
    /// link).
    SourceNotBound,
    /// From a router whose FIB entry is not the neighbour entry through
    /// this link (its hello has not passed, or another link to it is the
    /// one in use).
    RouterLinkNotInUse,
    /// From a directory-vouched router, with a source whose FIB entry does
    /// not lead back through this link (the core checks the source's
    /// entitlement, and holds or drops the PDU).
    SourceNotEntitled,
    /// No usable FIB entry for the destination (the core looks it up).
    NoRoute,
    /// The destination's next hop is a link the view does not know.
    NextHopUnknown,
    /// Towards a router with a TTL of zero (the core drops it).
    TtlExpired,
}

/// What [`decide`] says about one PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Queue the PDU's bytes on this hop, with the TTL decremented towards a
    /// router, and nothing else.
    Forward(Hop),
    /// The core decides.
    Core(Reason),
}

/// The fast path's forwarding predicate. See the [module
/// documentation](self).
#[inline]
pub fn decide<V: FibView + ?Sized>(fib: &V, at: &Ingress, header: &PduHeader) -> Verdict {
    if matches!(
        header.ptype,
        PduType::Control | PduType::Advertise | PduType::Withdraw
    ) {
        return Verdict::Core(Reason::LinkLocal);
    }
    if matches!(
        header.ptype,
        PduType::Subscribe | PduType::Unsubscribe | PduType::Publish
    ) {
        return Verdict::Core(Reason::Tree);
    }
    if header.flags.contains(Flags::UNRELIABLE) {
        return Verdict::Core(Reason::Unreliable);
    }
    if header.dst == at.router {
        return Verdict::Core(Reason::ForThisRouter);
    }
    if header.ptype == PduType::NakNoRoute && matches!(at.peer, Peer::Router(_)) {
        return Verdict::Core(Reason::NakFromRouter);
    }
    match at.peer {
        Peer::Endpoint => {
            let bound = fib
                .entry(&header.src)
                .is_some_and(|e| e.kind == RouteKind::Local && e.next_hop == at.link);
            if !bound {
                return Verdict::Core(Reason::SourceNotBound);
            }
        }
        Peer::Router(name) => {
            let Some(peer) = fib.entry(&name).filter(|e| e.next_hop == at.link) else {
                return Verdict::Core(Reason::RouterLinkNotInUse);
            };
            match peer.kind {
                RouteKind::Neighbor => {}
                RouteKind::Vouched => {
                    // The route back to the source leads to this peer.
                    let entitled = header.src == name
                        || fib
                            .entry(&header.src)
                            .is_some_and(|e| e.next_hop == at.link);
                    if !entitled {
                        return Verdict::Core(Reason::SourceNotEntitled);
                    }
                }
                _ => return Verdict::Core(Reason::RouterLinkNotInUse),
            }
        }
    }
    let Some(entry) = fib.entry(&header.dst) else {
        return Verdict::Core(Reason::NoRoute);
    };
    if entry.next_hop == at.link && matches!(at.peer, Peer::Router(_)) {
        return Verdict::Core(Reason::Hairpin);
    }
    let Some(to_router) = fib.to_router(entry.next_hop) else {
        return Verdict::Core(Reason::NextHopUnknown);
    };
    if to_router && header.ttl == 0 {
        return Verdict::Core(Reason::TtlExpired);
    }
    Verdict::Forward(Hop {
        link: entry.next_hop,
        to_router,
    })
}
