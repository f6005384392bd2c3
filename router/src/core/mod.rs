//! The router's forwarding core: a sans-IO state machine.
//!
//! [`RouterCore`] holds everything a GDP router decides (attachments, the
//! FIB, pending PDUs, name resolution, published records) and does no I/O:
//! no sockets, no clock, no tasks. Like `quinn-proto`, it is driven from
//! outside. A driver (QUIC and the directory in production, the `sim`
//! harness, behind the `sim` feature, in tests) feeds it inputs and drains
//! its outputs, and every input carries the wall-clock time `now` as a
//! [`Timestamp`] (certificates are checked against wall-clock time, so one
//! kind of time is used throughout).
//!
//! # Data flow
//!
//! ```text
//!                 link_up / link_down / handle_pdu      lookup_result / dial_failed
//!   transport ───────────────────────────────┐       ┌──────────────────── directory, dialer
//!                                            ▼       ▼
//!                                      ┌─────────────────┐  handle_timeout(now)
//!                                      │   RouterCore    │◀─────────────────── timer
//!                                      └─────────────────┘
//!   transport ◀── poll_transmit ─────────┘   │      └──── poll_timeout ──▶ timer
//!   (Transmit: batch of PDUs per link)       │
//!                      poll_action ──────────┘
//!   (Lookup, Publish, Unpublish ──▶ directory;  Dial, CloseLink ──▶ transport)
//! ```
//!
//! After each input the driver drains [`RouterCore::poll_transmit`] and
//! [`RouterCore::poll_action`] until they return `None`, then sleeps until
//! [`RouterCore::poll_timeout`] (or the next input) and calls
//! [`RouterCore::handle_timeout`]. Nothing blocks and every queue inside is
//! bounded: pending PDUs per name, source, link, in all and in bytes;
//! lookups per source and link; transmits per link; negative cache
//! entries; unproven links and links per peer.
//!
//! # Inside
//!
//! - **Attach** (`attach` module): an endpoint link is challenged; a valid
//!   [`AttachProof`](gdp_proto::control::AttachProof) binds the link to the
//!   endpoint's name, installs a local FIB entry and publishes a route record.
//!   Capsule servers then advertise capsules with AdCerts, each checked for
//!   this server.
//! - **Peering** (`peering` module): router links exchange hellos; the
//!   [`PeeringPolicy`] accepts trusted peers (trust-domain certificate,
//!   explicit list, gateway) and peers the directory vouches for, whose
//!   PDUs must come from sources they are entitled to (`entitle` module).
//! - **Forwarding** (`forward` module): parse the header without copying
//!   and ask [`fast::decide`] first, the same predicate a link reader runs
//!   on the FIB alone: when it forwards, decrement the TTL in place and
//!   queue the same bytes for the next hop. Otherwise check the source on
//!   endpoint links and look the destination up in the [`Fib`]; a miss
//!   parks the PDU in the pending queue and starts a resolution.
//! - **Resolution** (`resolve` module): a lookup's raw records are decoded
//!   and verified one by one; a usable record leads to a FIB entry (a linked
//!   router), a dial (a router with addresses) or the resolution of its
//!   gateway (`via`), recursively. Failure answers the waiting PDUs with
//!   NakNoRoute.
//! - **Delivery trees** (`tree` module): Subscribe and Unsubscribe from
//!   a link add and remove its lease-bound membership in a capsule's tree;
//!   a new tree joins upstream toward the capsule, and each Publish from
//!   upstream is copied once per member link.
//! - **Publishing** (`publish` module): records for local names are signed,
//!   published, republished at two thirds of their lifetime and unpublished
//!   when the name leaves.
//!
//! # Shutdown
//!
//! [`RouterCore::shutdown`] unpublishes every record and closes every link;
//! the driver drains the resulting actions before it stops.
#![allow(
    clippy::module_name_repetitions,
    reason = "the public types are re-exported at the crate's `core` path"
)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use gdp_certs::{Identity, Name, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod attach;
mod config;
mod entitle;
pub mod fast;
mod fib;
mod forward;
mod inspect;
mod io;
mod limits;
mod moved;
mod outbox;
mod peering;
mod pending;
mod publish;
mod resolve;
mod stats;
#[cfg(test)]
mod tests;
mod timers;
mod tree;

pub use config::{ConfigError, CoreConfig, Gateway, Rate};
pub use fib::{Fib, FibEntry, FibReader, NameHasher, NameHasherBuilder, RouteKind};
pub use inspect::{CapsuleView, EndpointView, FibPage, LookupView, MAX_FIB_PAGE, TrustView};
pub use io::{
    Action, CloseReason, LinkId, LinkInfo, LinkPeer, LinkRole, LookupError, PeeringError, Transmit,
};
pub use peering::PeeringPolicy;
pub use stats::{DropReason, Drops, LinksRefused, Stats, TreeStats};
pub use tree::TreeInfo;

use attach::LinkState;
use limits::LookupLimits;
use outbox::Outbox;
use pending::{PendingLimits, PendingQueue};
use publish::Published;
use resolve::{Dialing, Negative, Resolve};
use timers::{Timer, Timers};

/// Why [`RouterCore::install_route`] refused a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The link is not a router link in use.
    #[error("{0} is not a router link in use")]
    NotARouterLink(LinkId),
    /// The name is served by an endpoint attached here.
    #[error("{0} is attached locally")]
    LocalName(Name),
}

/// The sans-IO forwarding core of a GDP router. See the [module
/// documentation](self) for the data flow.
#[derive(Debug)]
pub struct RouterCore {
    identity: Identity,
    name: Name,
    config: CoreConfig,
    rng: StdRng,
    fib: Arc<Fib>,
    links: BTreeMap<LinkId, LinkState>,
    /// Links that may still be unproven (attaching endpoints, router links
    /// before their hello); pruned of proven ones when the cap is reached.
    unproven: BTreeSet<LinkId>,
    /// Links by the proven name at their other end (attached endpoints and
    /// peer routers), for `max_links_per_peer`.
    peer_links: BTreeMap<Name, BTreeSet<LinkId>>,
    /// Local links serving a name (an attached endpoint's own name or a
    /// capsule it advertised), so that a closing link finds each name's
    /// other servers without scanning the links.
    local: BTreeMap<Name, BTreeSet<LinkId>>,
    /// Router links in use, by peer name (the first one when there are several).
    routers: BTreeMap<Name, LinkId>,
    published: BTreeMap<Name, Published>,
    /// Attached endpoints not yet accepted, by name: their acceptance
    /// waits for the write of their route record (see
    /// [`RouterCore::publish_done`]).
    awaiting_publish: BTreeMap<Name, BTreeSet<LinkId>>,
    /// Whether the router's own record was written to the directory once.
    self_published: bool,
    pending: PendingQueue,
    resolving: BTreeMap<Name, Resolve>,
    dialing: BTreeMap<Name, Dialing>,
    /// Names with no valid record (or whose lookup failed), until when.
    negative: BTreeMap<Name, Negative>,
    /// Lookup budgets by source name and link.
    lookup_limits: LookupLimits,
    /// The link whose PDUs are being handled, to charge lookups to.
    ingress: Option<LinkId>,
    timers: Timers,
    outbox: Outbox,
    actions: VecDeque<Action>,
    stats: Stats,
    started: bool,
    shutting_down: bool,
    /// The gateway is not dialed again before this time.
    gateway_retry_at: Timestamp,
    next_seq: u64,
    /// Source entitlements of vouched peers, and each router link's trust.
    entitle: entitle::Entitlements,
    /// Delivery trees, by capsule.
    trees: tree::Trees,
    /// Names whose last local server left recently (see `moved`).
    departed: moved::Departed,
}

impl RouterCore {
    /// A core for the router `identity`.
    ///
    /// Nothing happens until the first input: the first call (any input, or
    /// [`RouterCore::handle_timeout`], which [`RouterCore::poll_timeout`]
    /// asks for at once) publishes the router's own route record and dials
    /// the configured gateway.
    pub fn new(identity: Identity, config: CoreConfig) -> Result<Self, ConfigError> {
        config.validate(identity.name(), identity.metadata().kind())?;
        let mut rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let fib = Arc::new(Fib::new([rng.r#gen(), rng.r#gen()]));
        let departed = moved::Departed::new([rng.r#gen(), rng.r#gen()]);
        let entitle = entitle::Entitlements::new(
            [rng.r#gen(), rng.r#gen()],
            entitle::HoldBounds {
                max_names: config.max_entitlements,
                max_grants_per_name: config.max_records_per_lookup,
                held_per_source: config.held_per_source,
                held_per_link: config.held_per_link,
                held_total: config.held_total,
            },
        );
        Ok(RouterCore {
            name: identity.name(),
            identity,
            rng,
            fib,
            links: BTreeMap::new(),
            unproven: BTreeSet::new(),
            peer_links: BTreeMap::new(),
            local: BTreeMap::new(),
            routers: BTreeMap::new(),
            published: BTreeMap::new(),
            awaiting_publish: BTreeMap::new(),
            self_published: false,
            pending: PendingQueue::new(PendingLimits::from_config(&config)),
            resolving: BTreeMap::new(),
            dialing: BTreeMap::new(),
            negative: BTreeMap::new(),
            lookup_limits: LookupLimits::new(&config),
            ingress: None,
            timers: Timers::default(),
            outbox: Outbox::new(config.link_queue_limit),
            actions: VecDeque::new(),
            stats: Stats::default(),
            started: false,
            shutting_down: false,
            gateway_retry_at: Timestamp::ZERO,
            next_seq: 1,
            entitle,
            trees: tree::Trees::default(),
            departed,
            config,
        })
    }

    /// This router's name.
    pub fn name(&self) -> Name {
        self.name
    }

    /// This router's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The configuration in use.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// A read-only handle on the FIB, for lookups from other threads.
    pub fn fib(&self) -> FibReader {
        FibReader(Arc::clone(&self.fib))
    }

    /// Makes the FIB entries written so far visible to
    /// [`FibReader::lookup_sealed`]. A driver whose link readers forward on
    /// their own calls this once everything [`poll_transmit`] returned is
    /// queued on its links, so that no reader overtakes PDUs the core
    /// released under a new entry (see "Sealing" in [`Fib`]'s module).
    ///
    /// [`poll_transmit`]: RouterCore::poll_transmit
    pub fn seal_fib(&self) {
        self.fib.seal();
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A driver whose link readers forwarded PDUs on the fast path reports
    /// them, so that [`stats`](RouterCore::stats) counts them as the core's
    /// own (see [`Stats::add_fast_path`]). A driver whose readers run
    /// concurrently with the core may instead add their counts to a copy of
    /// the stats when it reports them.
    pub fn record_fast_path(&mut self, forwarded: u64, delivered_local: u64) {
        self.stats.add_fast_path(forwarded, delivered_local);
    }

    /// What the core knows about `link`.
    pub fn link_info(&self, link: LinkId) -> Option<LinkInfo> {
        self.links.get(&link).map(LinkState::info)
    }

    /// Links known to the core.
    pub fn links(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links.keys().copied()
    }

    /// The ready router link to `router`, if any.
    pub fn router_link(&self, router: &Name) -> Option<LinkId> {
        self.routers.get(router).copied()
    }

    /// The next batch of PDUs to send, or `None` when nothing is queued.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop()
    }

    /// The next action for the driver, or `None`.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`RouterCore::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.started {
            self.timers.next()
        } else {
            Some(Timestamp::ZERO)
        }
    }

    /// Runs every timer due at `now`: republishing, cache and pending expiry,
    /// resolution, dial and attach deadlines, gateway redials, tree leases
    /// and refreshes.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.start(now);
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Republish(name) => self.republish(now, name),
                Timer::FibExpiry(name) => self.expire_fib(now, name),
                Timer::Pending(name) => self.expire_pending(now, name),
                Timer::Resolve(name) => self.resolve_deadline(now, name),
                Timer::Dial(router) => self.dial_deadline(now, router),
                Timer::Negative(name) => self.expire_negative(now, name),
                Timer::Redial => self.redial_gateway(now),
                Timer::Attach(link) => self.attach_deadline(now, link),
                Timer::Tree(capsule) => self.tree_timer(now, capsule),
                Timer::Accept(link) => self.accept_deadline(link),
            }
        }
        self.refresh_gauges();
    }

    /// Pins `name` to the router link `link` until `expires` (a static route;
    /// also how tests build stale routes). Directory lookups do not replace
    /// it while it is valid.
    pub fn install_route(
        &mut self,
        now: Timestamp,
        name: Name,
        link: LinkId,
        expires: Timestamp,
    ) -> Result<(), RouteError> {
        self.start(now);
        if !self
            .links
            .get(&link)
            .is_some_and(LinkState::is_ready_router)
        {
            return Err(RouteError::NotARouterLink(link));
        }
        if self
            .fib
            .get(&name)
            .is_some_and(|e| e.kind == RouteKind::Local)
        {
            return Err(RouteError::LocalName(name));
        }
        self.fib.insert(
            name,
            FibEntry {
                next_hop: link,
                kind: RouteKind::Static,
                expires,
            },
        );
        self.timers.schedule(
            Timestamp(expires.0.saturating_add(1)),
            Timer::FibExpiry(name),
        );
        self.route_available(now, name);
        self.refresh_gauges();
        Ok(())
    }

    /// Withdraws everything: unpublishes every record this router
    /// published and closes every link. Inputs after this are still
    /// handled, but nothing is published again.
    pub fn shutdown(&mut self, now: Timestamp) {
        self.start(now);
        self.shutting_down = true;
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.close_link(now, link, CloseReason::Shutdown);
        }
        let names: Vec<Name> = self.published.keys().copied().collect();
        for name in names {
            self.published.remove(&name);
            self.actions.push_back(Action::Unpublish { name });
        }
        self.refresh_gauges();
    }

    /// Publishes the router's own record and dials the gateway, once.
    fn start(&mut self, now: Timestamp) {
        if self.started {
            return;
        }
        self.started = true;
        self.publish_self(now);
        self.redial_gateway(now);
    }

    /// A fresh sequence number for PDUs this router originates.
    fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    /// A fresh random nonce.
    fn nonce(&mut self) -> [u8; 32] {
        self.rng.r#gen()
    }

    fn refresh_gauges(&mut self) {
        self.stats.pending = self.pending.len();
        self.stats.pending_bytes = self.pending.bytes();
        self.stats.links = self.links.len();
        self.stats.fib_entries = self.fib.len();
        self.stats.trees.trees = self.trees.len();
        self.stats.trees.memberships = self.trees.memberships();
    }

    /// Queues `pdu` on `link` without touching it (control messages this
    /// router originates on that link).
    fn send_on(&mut self, link: LinkId, pdu: Bytes) {
        if self.outbox.push(link, true, pdu).is_err() {
            self.stats.dropped.count(DropReason::QueueFull);
        }
    }
}
