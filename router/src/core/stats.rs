//! Counters the core keeps, for metrics and tests.

/// Why a PDU was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Its TTL ran out before the next router hop.
    Ttl,
    /// No route: nothing valid was found, or it waited too long.
    NoRoute,
    /// It came from an endpoint with a source name the endpoint did not
    /// prove, or from a directory-vouched router with a source no verified
    /// route record entitles that router to.
    BadSource,
    /// It could not be parsed, or its length disagrees with its header.
    Malformed,
    /// It is larger than the largest PDU.
    Oversized,
    /// A bounded queue (pending or per link) was full.
    QueueFull,
    /// It is not allowed where it arrived (for example an Advertise from a
    /// router, or any PDU on a router link before its hello).
    Policy,
    /// It arrived on an endpoint link before the endpoint attached.
    NotAttached,
    /// It was addressed to this router, which has no service for its type.
    Unhandled,
    /// Its destination needed a directory lookup, or a place in the
    /// pending queue, beyond what its source or its link may use now (see
    /// [`Stats::lookups_limited`]).
    LookupLimit,
}

/// Dropped PDUs, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drops {
    /// See [`DropReason::Ttl`].
    pub ttl: u64,
    /// See [`DropReason::NoRoute`].
    pub no_route: u64,
    /// See [`DropReason::BadSource`].
    pub bad_source: u64,
    /// See [`DropReason::Malformed`].
    pub malformed: u64,
    /// See [`DropReason::Oversized`].
    pub oversized: u64,
    /// See [`DropReason::QueueFull`].
    pub queue_full: u64,
    /// See [`DropReason::Policy`].
    pub policy: u64,
    /// See [`DropReason::NotAttached`].
    pub not_attached: u64,
    /// See [`DropReason::Unhandled`].
    pub unhandled: u64,
    /// See [`DropReason::LookupLimit`].
    pub lookup_limit: u64,
}

impl Drops {
    /// The counter for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Ttl => self.ttl,
            DropReason::NoRoute => self.no_route,
            DropReason::BadSource => self.bad_source,
            DropReason::Malformed => self.malformed,
            DropReason::Oversized => self.oversized,
            DropReason::QueueFull => self.queue_full,
            DropReason::Policy => self.policy,
            DropReason::NotAttached => self.not_attached,
            DropReason::Unhandled => self.unhandled,
            DropReason::LookupLimit => self.lookup_limit,
        }
    }

    /// All drops together.
    pub fn total(&self) -> u64 {
        self.ttl
            + self.no_route
            + self.bad_source
            + self.malformed
            + self.oversized
            + self.queue_full
            + self.policy
            + self.not_attached
            + self.unhandled
            + self.lookup_limit
    }

    pub(crate) fn count(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Ttl => &mut self.ttl,
            DropReason::NoRoute => &mut self.no_route,
            DropReason::BadSource => &mut self.bad_source,
            DropReason::Malformed => &mut self.malformed,
            DropReason::Oversized => &mut self.oversized,
            DropReason::QueueFull => &mut self.queue_full,
            DropReason::Policy => &mut self.policy,
            DropReason::NotAttached => &mut self.not_attached,
            DropReason::Unhandled => &mut self.unhandled,
            DropReason::LookupLimit => &mut self.lookup_limit,
        };
        *c += 1;
    }
}

/// Links refused at once, by the limit they hit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinksRefused {
    /// `max_unproven_links` unproven links were open already.
    pub unproven: u64,
    /// The proven name already held `max_links_per_peer` links.
    pub per_peer: u64,
}

impl LinksRefused {
    /// All refusals together.
    pub fn total(&self) -> u64 {
        self.unproven + self.per_peer
    }
}

/// What the delivery trees did and refused (see the `tree` module of the
/// core).
///
/// `trees` and `memberships` are gauges; the rest are counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeStats {
    /// Trees now (capsules with at least one member link).
    pub trees: usize,
    /// Memberships (capsule, link) in all trees now.
    pub memberships: usize,
    /// Subscribes that added or refreshed a membership.
    pub joins: u64,
    /// Subscribes this router sent toward a capsule: new trees' joins,
    /// refreshes and re-joins.
    pub upstream_joins: u64,
    /// Unsubscribes this router sent upstream (a tree left without
    /// members, or an upstream replaced by another).
    pub upstream_leaves: u64,
    /// Trees whose upstream link went down and that joined again.
    pub rejoins: u64,
    /// Publish PDUs accepted from upstream.
    pub publishes: u64,
    /// Copies of accepted Publish PDUs queued on member links.
    pub copies: u64,
    /// Copies not queued because the member link's queue was full (also
    /// counted as [`DropReason::QueueFull`]).
    pub copies_queue_full: u64,
    /// Publish PDUs dropped: no tree for their capsule here.
    pub publish_no_tree: u64,
    /// Publish PDUs dropped: they came on neither the tree's upstream nor
    /// the FIB's next hop for the capsule.
    pub publish_not_upstream: u64,
    /// Subscribes refused: `max_trees` trees exist.
    pub refused_trees: u64,
    /// Subscribes refused: the tree has `max_tree_members` members.
    pub refused_members: u64,
    /// Subscribes refused: the link holds `max_tree_joins_per_link`
    /// memberships.
    pub refused_link: u64,
    /// Subscribes refused: the link spent its `subscribe_rate_per_link`.
    pub refused_rate: u64,
    /// Memberships ended by an Unsubscribe.
    pub pruned_unsubscribe: u64,
    /// Memberships ended by their link going down.
    pub pruned_link_down: u64,
    /// Memberships ended by their lease running out.
    pub pruned_lease: u64,
}

impl TreeStats {
    /// Subscribes refused, whatever the limit.
    pub fn refused(&self) -> u64 {
        self.refused_trees + self.refused_members + self.refused_link + self.refused_rate
    }
}

/// Counters and gauges of one [`RouterCore`](super::RouterCore).
///
/// Counters only grow; `pending`, `pending_bytes`, `links`,
/// `fib_entries`, `trees.trees` and `trees.memberships` are gauges of the
/// current state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// PDUs sent on to a next hop (a router or a local endpoint).
    pub forwarded: u64,
    /// Of those, PDUs delivered to locally attached endpoints.
    pub delivered_local: u64,
    /// Dropped PDUs, by reason.
    pub dropped: Drops,
    /// NakNoRoute PDUs this router originated.
    pub naks_sent: u64,
    /// PDUs from router links for a name that left this router, answered
    /// with a NAK (the sender's route was stale) instead of being looked
    /// up and sent on (also counted as `no_route` drops).
    pub departed_naks: u64,
    /// Cached routes dropped because a NAK saying the name has no route
    /// came back from the route's next hop.
    pub routes_dropped_by_nak: u64,
    /// PDUs from router links whose destination's route led back to the
    /// router that sent them: the cached route was dropped and the name
    /// looked up afresh, or the PDU answered with a NAK.
    pub hairpins: u64,
    /// Pings this router answered.
    pub pongs_sent: u64,
    /// FIB hits on the forwarding path.
    pub cache_hits: u64,
    /// FIB misses on the forwarding path (the PDU waits for a lookup, or is
    /// answered from the negative cache).
    pub cache_misses: u64,
    /// Lookups asked of the directory.
    pub lookups: u64,
    /// Resolutions that ended without a usable route.
    pub lookup_failures: u64,
    /// Records from the directory that did not decode or verify.
    pub bad_records: u64,
    /// Valid records published by this router itself (left over from an
    /// earlier attachment) and so ignored.
    pub stale_records: u64,
    /// Records beyond `max_records_per_lookup`, not looked at.
    pub records_skipped: u64,
    /// Route records published (first publications and republications).
    pub records_published: u64,
    /// Publications skipped because the record would not have changed.
    pub publishes_skipped: u64,
    /// Endpoints that attached.
    pub attaches: u64,
    /// Attach proofs refused.
    pub attach_failures: u64,
    /// Advertise entries refused (AdCert bad, expired, for another server).
    pub adcerts_rejected: u64,
    /// Capsules installed from advertisements.
    pub capsules_advertised: u64,
    /// AdCert signatures verified (identical re-advertisements and entries
    /// refused by the cheap checks cost none).
    pub adcert_verifications: u64,
    /// Advertise entries refused unverified because the link's (or the
    /// PDU's) verification budget was spent; also counted in
    /// `adcerts_rejected`.
    pub adcerts_throttled: u64,
    /// Dials requested.
    pub dials: u64,
    /// Dials that failed or timed out.
    pub dial_failures: u64,
    /// Names sent to this router's own gateway because no verified record's
    /// router could be reached directly.
    pub gateway_fallbacks: u64,
    /// Router links refused by the peering policy.
    pub peers_refused: u64,
    /// PDUs from directory-vouched peers whose source's entitlement was not
    /// known yet: held while the source is resolved, or dropped when the
    /// hold is full or the source is known to have no valid record.
    pub entitlement_misses: u64,
    /// PDUs from directory-vouched peers whose source's grants named other
    /// routers, held while the source was looked up once more (at most once
    /// a second per source) before they counted as violations.
    pub entitlement_rechecks: u64,
    /// Links this router closed.
    pub links_closed: u64,
    /// Unproven links closed at their `attach_timeout`.
    pub attach_timeouts: u64,
    /// New links closed at once by a link limit (also in `links_closed`).
    pub links_refused: LinksRefused,
    /// PDUs refused because their source or link had spent its lookup or
    /// pending budget (each also a [`DropReason::LookupLimit`] drop).
    pub lookups_limited: u64,
    /// Resolutions answered from the negative cache instead of the
    /// directory.
    pub negative_hits: u64,
    /// PDUs waiting for a route now.
    pub pending: usize,
    /// Bytes counted for the PDUs waiting for a route now.
    pub pending_bytes: usize,
    /// Links known now.
    pub links: usize,
    /// FIB entries now.
    pub fib_entries: usize,
    /// Delivery trees: gauges, copies, drops, refusals and prunes.
    pub trees: TreeStats,
}

impl Stats {
    /// Counts PDUs that link readers forwarded on the fast path
    /// ([`fast`](super::fast)) where the core counts the ones it forwards
    /// itself: `forwarded` of them sent on (each one a FIB hit), of which
    /// `delivered_local` to endpoints attached here. The readers decided
    /// them with the core's own predicate, so the counters read as if the
    /// core had forwarded them.
    pub fn add_fast_path(&mut self, forwarded: u64, delivered_local: u64) {
        self.forwarded += forwarded;
        self.cache_hits += forwarded;
        self.delivered_local += delivered_local;
    }
}
