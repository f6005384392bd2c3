//! Names that moved: correcting other routers' stale routes.
//!
//! Routers cache the routes they resolve (`cache_ttl`), so when an endpoint
//! or a capsule's server leaves this router and attaches to another, the
//! routers that talked to it still send its PDUs here. This router, which
//! unpublished the name's record when its last local server left, must not
//! look the name up and send those PDUs on: they carry a source this router
//! does not serve, and the router it would hand them to checks sources
//! (see the `entitle` module) and would count a violation against this
//! router, then close the link. So:
//!
//! 1. When the last local server of a name leaves (a capsule server's own
//!    name, or a capsule it advertised, withdrew or took with it), the name
//!    is remembered as *departed* until `cache_ttl` has passed (as long as
//!    anyone's cached route to here can last), in a table of at most
//!    [`MAX_DEPARTED`] names. A client's name is not: clients reconnect
//!    all the time, and PDUs for one that comes back to this router are
//!    looked up and held as before.
//! 2. A PDU for a departed name that arrives from a router link, and that
//!    this router has no route for, is answered with a `NakNoRoute` to its
//!    source (reason `Moved`) instead of being looked up and sent on.
//!    PDUs from this router's own endpoints are resolved as usual.
//! 3. Every router that passes a `NakNoRoute` with reason `Moved` back
//!    towards its source (a plain `NoRoute`, say for a client that went
//!    away, leaves routes alone), and whose cached route for the name
//!    leads to the link the NAK came from, drops that route: its next PDU
//!    for the name is looked up afresh and finds the new record. A NAK can
//!    only drop routes through the link of the router that sent it, which
//!    that router could blackhole anyway.
//!
//! 4. No PDU from a router link is sent back on that link: the peer routed
//!    it here and this router would route it back, so one of the two
//!    routes is stale ([`RouterCore::hairpin`]). This is what happens when
//!    the old router resolved the moved name itself (for its own
//!    endpoints) through the router whose cached route still leads to it.
//!
//! The source side has its own repair: a reply from the moved name reaches
//! routers whose entitlement grants still name the old router; a source
//! not entitled is looked up once more before it counts as a violation
//! (`entitle` module).

use std::collections::HashMap;

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};
use gdp_proto::control::{ControlMessage, NakReason};
use gdp_proto::pdu::HEADER_LEN;
use gdp_proto::{PduHeader, PduType};

use super::io::LinkId;
use super::{FibEntry, NameHasherBuilder, RouteKind, RouterCore};

/// Most departed names remembered. Names enter only when a capsule
/// server attached here, or a capsule it advertised with a verified
/// AdCert, leaves; when the table is full the expired ones are swept, then an
/// arbitrary one (by keyed hash) is forgotten, and PDUs for it are merely
/// looked up again as before this table existed.
pub(crate) const MAX_DEPARTED: usize = 4096;

/// Departed names, until when.
#[derive(Debug)]
pub(crate) struct Departed {
    names: HashMap<Name, Timestamp, NameHasherBuilder>,
}

impl Departed {
    pub(crate) fn new(key: [u64; 2]) -> Self {
        Departed {
            names: HashMap::with_hasher(NameHasherBuilder::new(key)),
        }
    }

    /// `name` has no local server any more; remember it until `until`.
    fn left(&mut self, now: Timestamp, name: Name, until: Timestamp) {
        if self.names.len() >= MAX_DEPARTED && !self.names.contains_key(&name) {
            self.names.retain(|_, u| *u >= now);
            if self.names.len() >= MAX_DEPARTED
                && let Some(victim) = self.names.keys().next().copied()
            {
                self.names.remove(&victim);
            }
        }
        self.names.insert(name, until);
    }

    /// `name` is served here again.
    fn returned(&mut self, name: &Name) {
        self.names.remove(name);
    }

    /// True if `name` left this router and its stale routes may still live.
    fn contains(&self, now: Timestamp, name: &Name) -> bool {
        self.names.get(name).is_some_and(|u| now <= *u)
    }

    /// Names remembered now (expired ones included until swept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.names.len()
    }
}

impl RouterCore {
    /// The last local server of `name` left.
    pub(crate) fn departed(&mut self, now: Timestamp, name: Name) {
        let until = now.saturating_add(self.config.cache_ttl);
        self.departed.left(now, name, until);
    }

    /// `name` is served by a local link again.
    pub(crate) fn returned(&mut self, name: &Name) {
        self.departed.returned(name);
    }

    /// Answers `header` with a NAK instead of resolving it if it came from
    /// a router link for a name that left this router: the sender's route
    /// is stale. Returns true if it did.
    pub(crate) fn refuse_departed(&mut self, now: Timestamp, header: &PduHeader) -> bool {
        let from_router = self
            .ingress
            .and_then(|l| self.links.get(&l))
            .is_some_and(|s| s.is_router());
        if !from_router || !self.departed.contains(now, &header.dst) {
            return false;
        }
        tracing::debug!(
            name = %header.dst.short(),
            source = %header.src.short(),
            "a PDU for a name that left this router: NAK, so that stale routes are dropped"
        );
        self.stats.departed_naks += 1;
        self.stats.dropped.count(super::DropReason::NoRoute);
        self.nak(now, header, NakReason::Moved);
        true
    }

    /// A `NakNoRoute` PDU from the router link `link`, passing through (or
    /// addressed here): if it says its name moved (reason `Moved`) and this
    /// router's cached route for that name leads to `link`, the route is
    /// dropped. A plain `NoRoute` (a client that went away, say) leaves
    /// routes alone: the name may come back where it was.
    pub(crate) fn learn_from_nak(&mut self, link: LinkId, header: &PduHeader, bytes: &Bytes) {
        if header.ptype != PduType::NakNoRoute {
            return;
        }
        let Ok(ControlMessage::NakNoRoute {
            dst,
            reason: NakReason::Moved,
        }) = ControlMessage::from_payload(PduType::NakNoRoute, bytes.slice(HEADER_LEN..))
        else {
            return;
        };
        let dropped = self
            .fib
            .remove_if(&dst, |e| e.kind == RouteKind::Cached && e.next_hop == link);
        if dropped {
            tracing::debug!(name = %dst.short(), %link, "cached route dropped: its next hop has no route");
            self.stats.routes_dropped_by_nak += 1;
        }
    }
}

impl RouterCore {
    /// A PDU from the router link `link` whose destination's entry, `entry`,
    /// leads back to `link`: the peer routed it here and this router would
    /// route it back, so one of the two routes is stale. A cached entry
    /// here is dropped and the name looked up afresh (the PDU waits as on
    /// any miss); if the fresh route, or an entry that is not a cache,
    /// still leads back, the PDU is answered with a NAK, which drops the
    /// peer's stale route as it passes (see [`RouterCore::learn_from_nak`]).
    pub(crate) fn hairpin(
        &mut self,
        now: Timestamp,
        link: LinkId,
        entry: FibEntry,
        header: PduHeader,
        bytes: Bytes,
    ) {
        self.stats.hairpins += 1;
        if entry.kind == RouteKind::Cached
            && self.fib.remove_if(&header.dst, |e| {
                e.kind == RouteKind::Cached && e.next_hop == link
            })
        {
            tracing::debug!(
                name = %header.dst.short(),
                %link,
                "cached route leads back to the router that sent the PDU: looking the name up afresh"
            );
            // Charged to, and never sent back on, the link it came by (a
            // held PDU released later is handled outside its link's turn).
            let outer = self.ingress.replace(link);
            self.on_miss(now, header, bytes);
            self.ingress = outer;
            return;
        }
        self.refuse_hairpin(now, &header);
    }

    /// Answers a PDU that would go back to the router it came from.
    pub(crate) fn refuse_hairpin(&mut self, now: Timestamp, header: &PduHeader) {
        tracing::debug!(
            name = %header.dst.short(),
            source = %header.src.short(),
            "the route leads back to the router that sent the PDU: NAK"
        );
        self.stats.dropped.count(super::DropReason::NoRoute);
        self.nak(now, header, NakReason::Moved);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn name(i: u32) -> Name {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_le_bytes());
        Name::from_bytes(b)
    }

    #[test]
    fn a_departed_name_is_remembered_until_it_returns_or_expires() {
        let mut d = Departed::new([1, 2]);
        let now = Timestamp::from_secs(1_000);
        let until = now.saturating_add(Duration::from_secs(60));
        d.left(now, name(1), until);
        assert!(d.contains(now, &name(1)));
        assert!(d.contains(until, &name(1)));
        assert!(!d.contains(until.saturating_add(Duration::from_secs(1)), &name(1)));
        d.returned(&name(1));
        assert!(!d.contains(now, &name(1)));
    }

    #[test]
    fn the_table_stays_within_its_bound() {
        let mut d = Departed::new([3, 4]);
        let now = Timestamp::from_secs(1_000);
        let until = now.saturating_add(Duration::from_secs(60));
        for i in 0..(MAX_DEPARTED as u32 + 100) {
            d.left(now, name(i), until);
        }
        assert_eq!(d.len(), MAX_DEPARTED);
        // Expired names make room first.
        let later = until.saturating_add(Duration::from_secs(1));
        d.left(
            later,
            name(u32::MAX),
            later.saturating_add(Duration::from_secs(60)),
        );
        assert_eq!(d.len(), 1);
        assert!(d.contains(later, &name(u32::MAX)));
    }
}
