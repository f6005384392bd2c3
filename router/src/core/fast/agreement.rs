//! The core's side of the fast path: its view of the FIB, and why a
//! `Forward` verdict is always one the core would reach on its own.
//!
//! [`decide`](super::decide) judges a PDU by FIB entries; the core's slow
//! path judges it by its link table: an endpoint link may send as its
//! attached name and the capsules it advertised, a router link once its
//! hello passed. They agree because of how the core writes the FIB:
//!
//! - a local entry for a name points at a link only while the endpoint
//!   attached there is that name or advertised it (attach and advertise
//!   install it; withdraw, relocation and teardown remove or move it);
//! - a neighbour entry for a router points at a link only while that link
//!   is a ready link to that router (the hello installs it; teardown
//!   removes it, and another ready link to the same router takes over),
//!   and its kind says the link's trust: [`RouteKind::Neighbor`](crate::core::RouteKind::Neighbor) for a
//!   trusted peer, [`RouteKind::Vouched`](crate::core::RouteKind::Vouched) for one whose sources are
//!   checked. The core's check of such a source accepts, before anything
//!   else, the peer's own name and any source whose entry leads through
//!   the link: exactly what `decide` accepts;
//! - every entry's next hop is a link the core knows, because a link's
//!   teardown removes every entry through it;
//! - neither forwards a delivery tree's PDUs (subscribe, unsubscribe,
//!   publish) by the FIB: the core acts on them.
//!
//! So whenever `decide` forwards, the slow path would forward to the same
//! hop. The slow path may forward more (a capsule served by two links, a
//! second link to a router, unreliable PDUs): those PDUs reach it because
//! `decide` leaves them to the core. [`RouterCore::slow_path_hop`] states
//! the slow path's answer; debug builds check every `Forward` against it,
//! and the property tests check it on arbitrary states.

use std::collections::BTreeMap;

use gdp_certs::{Name, Timestamp};
use gdp_proto::{PduHeader, PduType};

use super::{FibView, Hop, Peer};
use crate::core::RouterCore;
use crate::core::attach::{LinkKind, LinkState};
use crate::core::fib::{Fib, FibEntry};
use crate::core::io::LinkId;

/// The core's [`FibView`]: every entry it wrote, valid at `now`, and its
/// own link table for what the links lead to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreView<'a> {
    pub(crate) fib: &'a Fib,
    pub(crate) links: &'a BTreeMap<LinkId, LinkState>,
    pub(crate) now: Timestamp,
}

impl FibView for CoreView<'_> {
    #[inline]
    fn entry(&self, name: &Name) -> Option<FibEntry> {
        self.fib.lookup(name, self.now)
    }

    #[inline]
    fn to_router(&self, link: LinkId) -> Option<bool> {
        self.links.get(&link).map(LinkState::is_router)
    }
}

impl LinkState {
    /// The link's peer as [`decide`](super::decide) sees it: a router link
    /// (ready or not) names its router; anything else is an endpoint link.
    pub(crate) fn fast_peer(&self) -> Peer {
        match &self.kind {
            LinkKind::Router { name, .. } => Peer::Router(*name),
            LinkKind::Attaching { .. } | LinkKind::Endpoint(_) => Peer::Endpoint,
        }
    }
}

impl RouterCore {
    /// The hop the slow path would forward a PDU with `header`, arriving on
    /// `link` at `now`, to, judged by the link table rather than by the
    /// FIB entries of its source or peer; `None` if it would not forward it
    /// (it handles, drops, parks or answers it instead).
    pub(crate) fn slow_path_hop(
        &self,
        now: Timestamp,
        link: LinkId,
        header: &PduHeader,
    ) -> Option<Hop> {
        let link_local = matches!(
            header.ptype,
            PduType::Control | PduType::Advertise | PduType::Withdraw
        );
        if crate::core::tree::is_tree_type(header.ptype) {
            // The core acts on a tree's PDUs; it forwards none by the FIB.
            return None;
        }
        let admitted = match &self.links.get(&link)?.kind {
            LinkKind::Attaching { .. } => false,
            LinkKind::Endpoint(att) => !link_local && att.sends_as(&header.src),
            LinkKind::Router { name, ready, .. } => {
                !link_local && *ready && self.admits_from_router(now, link, *name, header.src)
            }
        };
        if !admitted || header.dst == self.name {
            return None;
        }
        let entry = self.fib.lookup(&header.dst, now)?;
        let to_router = self.links.get(&entry.next_hop)?.is_router();
        if to_router && header.ttl == 0 {
            return None;
        }
        Some(Hop {
            link: entry.next_hop,
            to_router,
        })
    }

    /// Debug builds: `hop`, the verdict of [`decide`](super::decide) for a
    /// PDU with `header` on `link`, is the slow path's own answer.
    #[inline]
    pub(crate) fn debug_check_agreement(
        &self,
        now: Timestamp,
        link: LinkId,
        header: &PduHeader,
        hop: Hop,
    ) {
        debug_assert_eq!(
            self.slow_path_hop(now, link, header),
            Some(hop),
            "the fast path forwards only what the core would: {header:?} on {link}"
        );
    }
}
