//! Source entitlement: which sources a directory-vouched peer may send for.
//!
//! A trusted peer (see [`PeeringPolicy`](super::PeeringPolicy)) is trusted
//! to have checked the sources of the PDUs it forwards, as this router
//! checks its own endpoints'. A peer the directory merely vouched for is
//! not: a PDU from it with source `S` is forwarded only if a verified route
//! record for `S` names that peer, as the router `S` is attached to or as
//! the gateway (`via`) of that router, at any depth of the gateway chain.
//! Otherwise anyone who can publish a router record could make capsule
//! servers answer (reads, subscription backlogs) towards a victim.
//!
//! # The check, and what it costs
//!
//! The router resolves the sources it hears from anyway (it needs their
//! routes for the replies), and every record it verifies for a name leaves
//! a *grant* here: the record's router and gateway, until the record's
//! chain expires (and no later than `cache_ttl`). A PDU with source `S`
//! from peer `R` on link `L` is entitled when, in this order:
//!
//! 1. `S` is `R` itself (a router sends as itself);
//! 2. the FIB entry for `S` leads through `L` (the route the router would
//!    take back to `S` came from a verified record naming `R`, or from the
//!    operator): the one hash lookup the fast path does too;
//! 3. a grant for `S` names `R`, or names a gateway `G` for which a grant
//!    names `R`, down to `max_via_depth` levels: one hash lookup per level,
//!    one in the common case.
//!
//! When nothing is known of `S` (no grant, or grants of a gateway on the
//! way expired), the PDU is *held*, at most `held_per_source` per source,
//! `held_per_link` per link and `held_total` in all, while `S` is resolved; the resolution's end
//! (its lookup answered, completed or failed, within `resolve_timeout`)
//! settles every PDU held for it: forwarded if entitled now, otherwise a
//! [`DropReason::BadSource`] violation on its link (the link is closed at
//! `max_violations`). A source that is not entitled is such a violation at
//! once, as is a source remembered as having no valid record, and this
//! router's own name. A name served here is entitled only as any other is,
//! by a record naming the peer (a capsule's replica behind it).
//!
//! # Vouching for a peer
//!
//! The same grants decide whether an untrusted peer is accepted at all: a
//! router publishes a record for its own name, so a verified record for
//! `R` whose router is `R` vouches for `R`. A peer this router dialled (its
//! own verified lookup named it) is vouched for already; for any other, the
//! hello waits while `R` is looked up (one directory lookup, not a
//! resolution: nothing is dialled), and the link is refused if no such
//! record turns up.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use gdp_certs::cert::{CertError, RouteRecord, Verified};
use gdp_certs::codec::Decode;
use gdp_certs::{Name, Timestamp};
use gdp_proto::PduHeader;
use gdp_proto::control::NakReason;

use super::io::{LinkId, LookupError, PeeringError};
use super::{Action, DropReason, NameHasherBuilder, RouteKind, RouterCore};

/// How far a ready router link is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Its PDUs are forwarded whatever their source.
    Trusted,
    /// Its PDUs are forwarded only for sources it is entitled to.
    Vouched,
}

impl Trust {
    /// The kind of the peer's neighbour entry in the FIB, which is how the
    /// fast path tells the two apart.
    pub(crate) fn route_kind(self) -> RouteKind {
        match self {
            Trust::Trusted => RouteKind::Neighbor,
            Trust::Vouched => RouteKind::Vouched,
        }
    }
}

/// What a verified record for a name says about who may send for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grant {
    /// The router the name is attached to (or the router itself).
    router: Name,
    /// That router's gateway, if it has one.
    via: Option<Name>,
    /// When the record's chain (or `cache_ttl`) runs out.
    expires: Timestamp,
}

/// The answer of an entitlement check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// The peer may send for the source.
    Entitled,
    /// Verified records are known, and none names the peer.
    NotEntitled,
    /// Nothing valid is known about this name (the source, or a gateway on
    /// its way): it must be resolved first.
    Unknown(Name),
}

/// A PDU from a vouched peer, held while its source is resolved.
#[derive(Debug, Clone)]
struct HeldPdu {
    link: LinkId,
    header: PduHeader,
    bytes: Bytes,
    /// Resolutions it already waited for (a gateway chain takes several).
    waits: u8,
}

/// The bounds of an [`Entitlements`] table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldBounds {
    /// Most names with grants.
    pub(crate) max_names: usize,
    /// Most grants per name.
    pub(crate) max_grants_per_name: usize,
    /// Most PDUs held for one name.
    pub(crate) held_per_source: usize,
    /// Most PDUs held from one link.
    pub(crate) held_per_link: usize,
    /// Most PDUs held in all.
    pub(crate) held_total: usize,
}

/// Grants, held PDUs, and the trust of each router link.
#[derive(Debug)]
pub(crate) struct Entitlements {
    grants: HashMap<Name, Vec<Grant>, NameHasherBuilder>,
    max_names: usize,
    max_grants_per_name: usize,
    /// Expired grants are swept at most once a second, when the table is full.
    sweep_after: Timestamp,
    held: BTreeMap<Name, Vec<HeldPdu>>,
    held_len: usize,
    /// PDUs held per link they arrived on.
    held_by_link: BTreeMap<LinkId, usize>,
    held_per_source: usize,
    held_per_link: usize,
    held_total: usize,
    /// Ready router links, and how far each is trusted.
    trust: BTreeMap<LinkId, Trust>,
    /// Router links whose hello passed, waiting for the directory to vouch
    /// for the peer.
    awaiting: BTreeMap<LinkId, Name>,
    /// Sources looked up again because their grants named other routers,
    /// and when: at most once per [`RECHECK_INTERVAL`] each.
    rechecked: HashMap<Name, Timestamp, NameHasherBuilder>,
}

/// How often a source whose grants name other routers than the sending
/// peer is looked up again before a PDU of it counts as a violation: its
/// grants may predate a move (the source attached elsewhere since, and its
/// replies now come another way).
pub(crate) const RECHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Entitlements {
    /// An empty table with the configured bounds, hashing names with `key`.
    pub(crate) fn new(key: [u64; 2], bounds: HoldBounds) -> Self {
        let HoldBounds {
            max_names,
            max_grants_per_name,
            held_per_source,
            held_per_link,
            held_total,
        } = bounds;
        Entitlements {
            rechecked: HashMap::with_hasher(NameHasherBuilder::new([key[1], key[0]])),
            grants: HashMap::with_hasher(NameHasherBuilder::new(key)),
            max_names,
            max_grants_per_name: max_grants_per_name.max(1),
            sweep_after: Timestamp::ZERO,
            held: BTreeMap::new(),
            held_len: 0,
            held_by_link: BTreeMap::new(),
            held_per_source,
            held_per_link,
            held_total,
            trust: BTreeMap::new(),
            awaiting: BTreeMap::new(),
        }
    }

    /// Remembers `grant` for `name`, refreshing an equal one.
    fn insert(&mut self, now: Timestamp, name: Name, grant: Grant) {
        if !self.grants.contains_key(&name) && self.grants.len() >= self.max_names {
            if now >= self.sweep_after {
                self.sweep_after = now.saturating_add(std::time::Duration::from_secs(1));
                self.grants.retain(|_, gs| {
                    gs.retain(|g| g.expires >= now);
                    !gs.is_empty()
                });
            }
            if self.grants.len() >= self.max_names {
                // Full of live grants: forget one name (which one depends on
                // the keyed hash, so nobody can pick it). Its next PDU is
                // held while it is resolved again.
                let victim = self.grants.keys().next().copied();
                if let Some(victim) = victim {
                    self.grants.remove(&victim);
                }
            }
        }
        let max = self.max_grants_per_name;
        let gs = self.grants.entry(name).or_default();
        gs.retain(|g| g.expires >= now);
        if let Some(g) = gs
            .iter_mut()
            .find(|g| g.router == grant.router && g.via == grant.via)
        {
            g.expires = g.expires.max(grant.expires);
            return;
        }
        if gs.len() >= max {
            // Replace the grant that runs out first.
            if let Some(first) = gs.iter_mut().min_by_key(|g| g.expires) {
                *first = grant;
            }
            return;
        }
        gs.push(grant);
    }

    /// Whether `peer` may send for `src` by the grants alone, looking
    /// `depth` gateway levels further.
    fn check(&self, now: Timestamp, src: Name, peer: Name, depth: u8) -> Check {
        if src == peer {
            return Check::Entitled;
        }
        let Some(gs) = self.grants.get(&src) else {
            return Check::Unknown(src);
        };
        let mut live = false;
        for g in gs.iter().filter(|g| g.expires >= now) {
            live = true;
            if g.router == peer || g.via == Some(peer) {
                return Check::Entitled;
            }
        }
        if !live {
            return Check::Unknown(src);
        }
        let mut unknown = None;
        if depth > 0 {
            for via in gs.iter().filter(|g| g.expires >= now).filter_map(|g| g.via) {
                match self.check(now, via, peer, depth - 1) {
                    Check::Entitled => return Check::Entitled,
                    Check::Unknown(n) => unknown = unknown.or(Some(n)),
                    Check::NotEntitled => {}
                }
            }
        }
        unknown.map_or(Check::NotEntitled, Check::Unknown)
    }

    /// True if `src`, refused by its grants, may be looked up once more now
    /// (and notes that it is): not within [`RECHECK_INTERVAL`] of its last
    /// recheck, and room in the table (at most `max_names` entries).
    fn recheck_due(&mut self, now: Timestamp, src: Name) -> bool {
        let fresh = |at: &Timestamp| now < at.saturating_add(RECHECK_INTERVAL);
        if self.rechecked.get(&src).is_some_and(fresh) {
            return false;
        }
        if !self.rechecked.contains_key(&src) && self.rechecked.len() >= self.max_names {
            self.rechecked.retain(|_, at| fresh(at));
            if self.rechecked.len() >= self.max_names {
                return false;
            }
        }
        self.rechecked.insert(src, now);
        true
    }

    /// True if a valid record for `router`'s own name, published by
    /// `router`, was verified.
    fn vouched(&self, now: Timestamp, router: Name) -> bool {
        self.grants
            .get(&router)
            .is_some_and(|gs| gs.iter().any(|g| g.router == router && g.expires >= now))
    }

    /// Holds `pdu` until `name` is resolved; false if a bound is reached.
    fn hold(&mut self, name: Name, pdu: HeldPdu) -> bool {
        if self.held_len >= self.held_total {
            return false;
        }
        let by_link = self.held_by_link.get(&pdu.link).copied().unwrap_or(0);
        if by_link >= self.held_per_link {
            return false;
        }
        let q = self.held.entry(name).or_default();
        if q.len() >= self.held_per_source {
            return false;
        }
        self.held_by_link.insert(pdu.link, by_link + 1);
        q.push(pdu);
        self.held_len += 1;
        true
    }

    fn take_held(&mut self, name: &Name) -> Vec<HeldPdu> {
        let q = self.held.remove(name).unwrap_or_default();
        self.held_len -= q.len();
        for pdu in &q {
            if let Some(n) = self.held_by_link.get_mut(&pdu.link) {
                *n -= 1;
                if *n == 0 {
                    self.held_by_link.remove(&pdu.link);
                }
            }
        }
        q
    }

    /// How far the ready router link `link` is trusted (`None` if it is not
    /// one).
    pub(crate) fn trust(&self, link: LinkId) -> Option<Trust> {
        self.trust.get(&link).copied()
    }

    /// The router link `link` is ready, trusted as far as `trust`.
    pub(crate) fn set_trust(&mut self, link: LinkId, trust: Trust) {
        self.awaiting.remove(&link);
        self.trust.insert(link, trust);
    }

    /// True while `link`'s peer waits for the directory to vouch for it.
    pub(crate) fn is_awaiting(&self, link: LinkId) -> bool {
        self.awaiting.contains_key(&link)
    }

    /// Forgets everything about the link `link`.
    pub(crate) fn forget_link(&mut self, link: LinkId) {
        self.trust.remove(&link);
        self.awaiting.remove(&link);
    }

    /// Names with grants now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.grants.len()
    }

    /// PDUs held now.
    #[cfg(test)]
    fn held_len(&self) -> usize {
        self.held_len
    }
}

impl RouterCore {
    /// A verified record for `name` was read from the directory: remember
    /// whom it entitles to send as `name`.
    pub(crate) fn learn_record(
        &mut self,
        now: Timestamp,
        name: Name,
        record: &Verified<RouteRecord>,
    ) {
        let expires = record
            .chain_not_after()
            .min(now.saturating_add(self.config.cache_ttl));
        let grant = Grant {
            router: record.router_name(),
            via: record.via(),
            expires,
        };
        self.entitle.insert(now, name, grant);
    }

    /// Whether the router `peer`, on `link`, may send PDUs with source
    /// `src` (see the module documentation for the order of the checks).
    pub(crate) fn check_source(
        &self,
        now: Timestamp,
        link: LinkId,
        peer: Name,
        src: Name,
    ) -> Check {
        if src == peer {
            return Check::Entitled;
        }
        if src == self.name {
            return Check::NotEntitled;
        }
        if self
            .fib
            .lookup(&src, now)
            .is_some_and(|e| e.next_hop == link)
        {
            return Check::Entitled;
        }
        // A name served here may be served elsewhere too (a capsule's
        // replica behind the peer): the grants decide.
        self.entitle
            .check(now, src, peer, self.config.max_via_depth)
    }

    /// True if the slow path forwards a PDU with source `src` from the ready
    /// router link `link` to `peer` without holding or dropping it.
    pub(crate) fn admits_from_router(
        &self,
        now: Timestamp,
        link: LinkId,
        peer: Name,
        src: Name,
    ) -> bool {
        match self.entitle.trust(link) {
            Some(Trust::Trusted) => true,
            Some(Trust::Vouched) => self.check_source(now, link, peer, src) == Check::Entitled,
            None => false,
        }
    }

    /// A PDU (not link-local) on the ready router link `link` to `peer`:
    /// forwarded if the peer is trusted or entitled to its source, held
    /// while the source is resolved, or a violation.
    pub(crate) fn on_router_pdu(
        &mut self,
        now: Timestamp,
        link: LinkId,
        peer: Name,
        header: PduHeader,
        bytes: Bytes,
    ) {
        if self.entitle.trust(link) != Some(Trust::Vouched) {
            return self.forward_from_router(now, link, header, bytes);
        }
        let check = self.check_source(now, link, peer, header.src);
        if check == Check::Entitled {
            return self.forward_from_router(now, link, header, bytes);
        }
        let pdu = HeldPdu {
            link,
            header,
            bytes,
            waits: 0,
        };
        match check {
            Check::Unknown(name) => self.hold_for(now, name, pdu),
            _ => self.not_entitled(now, peer, pdu),
        }
    }

    /// A PDU (not link-local) on a router link the policy has not accepted
    /// yet: held if the directory is being asked to vouch for the peer
    /// (its PDUs can arrive before that answer, right behind its hello),
    /// dropped otherwise.
    pub(crate) fn on_unready_router_pdu(
        &mut self,
        link: LinkId,
        peer: Name,
        header: PduHeader,
        bytes: Bytes,
    ) {
        if !self.entitle.is_awaiting(link) {
            self.stats.dropped.count(DropReason::Policy);
            return;
        }
        self.stats.entitlement_misses += 1;
        let pdu = HeldPdu {
            link,
            header,
            bytes,
            waits: 0,
        };
        if !self.entitle.hold(peer, pdu) {
            self.stats.dropped.count(DropReason::QueueFull);
        }
    }

    /// A PDU from `peer` whose source's grants name other routers: held
    /// while the source is looked up once more (its grants may predate a
    /// move), at most once per [`RECHECK_INTERVAL`] per source; otherwise
    /// a violation.
    fn not_entitled(&mut self, now: Timestamp, peer: Name, pdu: HeldPdu) {
        let src = pdu.header.src;
        if self.may_recheck(now, src) {
            self.stats.entitlement_rechecks += 1;
            self.hold_for(now, src, pdu);
        } else {
            self.bad_source(now, pdu.link, peer, &pdu.header);
        }
    }

    /// True if a source refused by its grants is looked up once more (see
    /// [`RECHECK_INTERVAL`]); never for a name attached here, which no peer
    /// may send as.
    fn may_recheck(&mut self, now: Timestamp, src: Name) -> bool {
        let local = self
            .fib
            .get(&src)
            .is_some_and(|e| e.kind == RouteKind::Local);
        !local && self.entitle.recheck_due(now, src)
    }

    fn bad_source(&mut self, now: Timestamp, link: LinkId, peer: Name, header: &PduHeader) {
        tracing::debug!(
            %link,
            router = %peer.short(),
            src = %header.src.short(),
            "source not entitled from this peer"
        );
        self.violation(now, link, DropReason::BadSource);
    }

    /// Holds `pdu` while `name` is resolved (or answers it at once when the
    /// name is known to have no valid record).
    fn hold_for(&mut self, now: Timestamp, name: Name, pdu: HeldPdu) {
        self.stats.entitlement_misses += 1;
        if let Some(neg) = self.negative.get(&name).filter(|n| now <= n.until) {
            if neg.reason == NakReason::DirectoryUnavailable {
                // The directory failed to answer: no proof of forgery, but
                // nothing to check the source against either.
                self.stats.dropped.count(DropReason::NoRoute);
                return;
            }
            tracing::debug!(link = %pdu.link, src = %pdu.header.src.short(), "source has no valid record");
            return self.violation(now, pdu.link, DropReason::BadSource);
        }
        if !self.entitle.hold(name, pdu) {
            self.stats.dropped.count(DropReason::QueueFull);
            return;
        }
        self.resolve(now, name, 0, None);
    }

    /// The resolution of `name` answered (its records are verified and
    /// learned), completed or failed (`failure` says why): the PDUs held
    /// for it are settled.
    pub(crate) fn entitlement_settled(
        &mut self,
        now: Timestamp,
        name: Name,
        failure: Option<NakReason>,
    ) {
        for pdu in self.entitle.take_held(&name) {
            let Some(peer) = self.router_peer(pdu.link) else {
                // The link went away meanwhile.
                self.stats.dropped.count(DropReason::Policy);
                continue;
            };
            match self.check_source(now, pdu.link, peer, pdu.header.src) {
                Check::Entitled => self.release_held(now, pdu.link, pdu.header, pdu.bytes),
                // Its source's grants were just looked up: nothing newer to
                // learn.
                Check::NotEntitled if pdu.header.src == name => {
                    self.bad_source(now, pdu.link, peer, &pdu.header);
                }
                // Held for another name (the peer's vouching, a gateway):
                // the source's own grants may be stale.
                Check::NotEntitled => self.not_entitled(now, peer, pdu),
                Check::Unknown(next) if next != name && pdu.waits < self.config.max_via_depth => {
                    // A gateway on the source's way is not known yet.
                    let pdu = HeldPdu {
                        waits: pdu.waits + 1,
                        ..pdu
                    };
                    self.hold_for(now, next, pdu);
                }
                Check::Unknown(_) if failure == Some(NakReason::DirectoryUnavailable) => {
                    // Not the peer's fault: the directory could not tell.
                    self.stats.dropped.count(DropReason::NoRoute);
                }
                Check::Unknown(_) => self.bad_source(now, pdu.link, peer, &pdu.header),
            }
        }
    }

    /// The peer of the ready router link `link`.
    fn router_peer(&self, link: LinkId) -> Option<Name> {
        match self.links.get(&link).map(|l| &l.kind) {
            Some(super::attach::LinkKind::Router {
                name, ready: true, ..
            }) => Some(*name),
            _ => None,
        }
    }

    /// The peer `name` on `link` waits for the directory to vouch for it:
    /// its own record is looked up (once for all links waiting for it).
    /// The lookup is not a resolution: it dials nothing and leaves no
    /// negative entry; only its verified records count.
    pub(crate) fn await_vouching(&mut self, link: LinkId, name: Name) {
        tracing::debug!(%link, router = %name.short(), "looking up the peer's own record");
        let asked = self.entitle.awaiting.values().any(|n| *n == name);
        self.entitle.awaiting.insert(link, name);
        if !asked {
            self.stats.lookups += 1;
            self.actions.push_back(Action::Lookup(name));
        }
    }

    /// A lookup of `name` answered: if peers named `name` wait to be
    /// vouched for, its verified records are learned and the links are
    /// accepted (a record of `name` published by `name` itself vouches) or
    /// refused.
    pub(crate) fn vouch_result(
        &mut self,
        now: Timestamp,
        name: Name,
        result: &Result<Vec<Bytes>, LookupError>,
    ) {
        let waiting: Vec<LinkId> = self
            .entitle
            .awaiting
            .iter()
            .filter(|(_, n)| **n == name)
            .map(|(l, _)| *l)
            .collect();
        if waiting.is_empty() {
            return;
        }
        if let Ok(records) = result {
            for raw in records.iter().take(self.config.max_records_per_lookup) {
                match RouteRecord::decode(raw.clone())
                    .map_err(CertError::from)
                    .and_then(|r| r.verify(&name, now))
                {
                    Ok(v) if v.router_name() == name => self.learn_record(now, name, &v),
                    Ok(_) => {}
                    Err(e) => {
                        self.stats.bad_records += 1;
                        tracing::debug!(name = %name.short(), error = %e, "bad route record");
                    }
                }
            }
        }
        for link in waiting {
            self.entitle.awaiting.remove(&link);
            if !self.links.contains_key(&link) {
                continue;
            }
            // Vouched by its own record, or by a record that named it
            // since (this router wants to dial it).
            if self.entitle.vouched(now, name) || self.dialing.contains_key(&name) {
                self.peer_accepted(now, link, name, Trust::Vouched);
            } else {
                self.refuse_peer(now, link, name, PeeringError::NotVouched);
            }
        }
        // What the peers sent meanwhile (held under their name).
        let failure = result.is_err().then_some(NakReason::DirectoryUnavailable);
        self.entitlement_settled(now, name, failure);
    }

    /// True if a verified record vouches for the router `name` now.
    pub(crate) fn is_vouched(&self, now: Timestamp, name: Name) -> bool {
        self.entitle.vouched(now, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Name = Name::from_bytes([1; 32]);
    const G: Name = Name::from_bytes([2; 32]);
    const G1: Name = Name::from_bytes([3; 32]);
    const S: Name = Name::from_bytes([4; 32]);
    const X: Name = Name::from_bytes([5; 32]);

    fn grant(router: Name, via: Option<Name>, expires: u64) -> Grant {
        Grant {
            router,
            via,
            expires: Timestamp(expires),
        }
    }

    fn table() -> Entitlements {
        Entitlements::new(
            [7, 9],
            HoldBounds {
                max_names: 4,
                max_grants_per_name: 2,
                held_per_source: 2,
                held_per_link: 3,
                held_total: 4,
            },
        )
    }

    #[test]
    fn a_grant_entitles_its_router_and_gateway_chain() {
        let mut t = table();
        let now = Timestamp(10);
        assert_eq!(t.check(now, S, R, 4), Check::Unknown(S));
        // S is attached to R, behind gateway G; G is behind G1.
        t.insert(now, S, grant(R, Some(G), 100));
        assert_eq!(t.check(now, S, R, 4), Check::Entitled);
        assert_eq!(t.check(now, S, G, 4), Check::Entitled);
        assert_eq!(t.check(now, S, G1, 4), Check::Unknown(G));
        t.insert(now, G, grant(G, Some(G1), 100));
        assert_eq!(t.check(now, S, G1, 4), Check::Entitled);
        assert_eq!(t.check(now, S, G1, 0), Check::NotEntitled);
        assert_eq!(t.check(now, S, X, 4), Check::Unknown(G1));
        t.insert(now, G1, grant(G1, None, 100));
        assert_eq!(t.check(now, S, X, 4), Check::NotEntitled);
        // A router is entitled to its own name; its own record vouches.
        assert_eq!(t.check(now, X, X, 4), Check::Entitled);
        assert!(t.vouched(now, G) && !t.vouched(now, S));
        // Expired grants are nothing known.
        assert_eq!(t.check(Timestamp(101), S, R, 4), Check::Unknown(S));
    }

    #[test]
    fn the_table_and_the_held_pdus_are_bounded() {
        let mut t = table();
        let now = Timestamp(10);
        for (i, router) in [R, G, G1].into_iter().enumerate() {
            t.insert(now, S, grant(router, None, 50 + i as u64));
        }
        // Two grants per name: the first to expire was replaced.
        assert_eq!(t.check(now, S, R, 0), Check::NotEntitled);
        assert_eq!(t.check(now, S, G1, 0), Check::Entitled);
        for b in 10..20u8 {
            t.insert(now, Name::from_bytes([b; 32]), grant(R, None, 50));
        }
        assert_eq!(t.len(), 4);
        let pdu = HeldPdu {
            link: LinkId(1),
            header: PduHeader::new(gdp_proto::PduType::Data, X, S, 1),
            bytes: Bytes::new(),
            waits: 0,
        };
        let other = HeldPdu {
            link: LinkId(2),
            ..pdu.clone()
        };
        assert!(t.hold(S, pdu.clone()));
        assert!(t.hold(S, pdu.clone()));
        assert!(!t.hold(S, pdu.clone()), "per source");
        assert!(t.hold(X, pdu.clone()));
        assert!(!t.hold(G, pdu.clone()), "per link");
        assert!(t.hold(G, other.clone()));
        assert!(!t.hold(G1, other), "in all");
        assert_eq!(t.take_held(&S).len(), 2);
        assert_eq!(t.held_len(), 2);
        assert!(t.hold(G1, pdu), "the link's share came back");
    }
}
