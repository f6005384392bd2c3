//! A deterministic network of router cores in one process.
//!
//! The N-router version of quinn-proto's `Pair`: [`Network`] holds many
//! [`RouterCore`]s, simulated endpoints ([`SimEndpoint`]) and a simulated
//! directory ([`SimDirectory`]), connected by in-memory links with a fixed
//! latency (and optional loss of unreliable PDUs). There are no sockets and
//! no clock: the network keeps a virtual [`Timestamp`] and jumps it to the
//! next event (a PDU arriving, a directory answer, a link coming up or a
//! router timer). Every random choice comes from one seeded generator and
//! every collection is ordered, so a run repeats exactly.
//!
//! # What the network plays
//!
//! For each router it is the driver: it feeds link events, PDUs, lookup
//! results and dial failures into the core and carries out what the core
//! asks (`poll_transmit`, `poll_action`, `poll_timeout`):
//!
//! - `Transmit` batches travel over the link and arrive `link_latency` later;
//! - `Lookup`, `Publish` and `Unpublish` reach the directory after
//!   `directory_latency` (a lookup is answered with what the directory holds
//!   at that moment);
//! - `Dial` finds the live router listening on one of the addresses; the
//!   link comes up on both sides after one link latency if that router has
//!   the expected name (as TLS would check), otherwise the dial fails;
//! - `CloseLink` takes the link down after what was already sent on it has
//!   arrived, one link latency later.
//!
//! It also plays the routers' link readers: with [`NetConfig::fast_path`]
//! (on by default) each reliable batch arriving at a router is a read that
//! first goes through the core's
//! [`ReadPlan`](crate::core::fast::ReadPlan), as in the driver. The PDUs
//! it forwards leave on their next hops at once, counted in
//! [`Network::fast_forwarded`] and, through
//! [`RouterCore::record_fast_path`], in the core's own counters; the rest
//! of the batch goes to the core. The network seals every router's FIB
//! once it has carried out what the core queued, so the plan sees what a
//! driver's readers would. The core handles the rest of a read before the
//! next event, so no read ever waits behind another.
//!
//! Each router listens on its own private address `10.<n>.0.1:4433`. A
//! public router also publishes that address; a private router publishes
//! only `via` its gateway, which it dials itself.
//!
//! # Why this lives in the library
//!
//! The harness is behind the `sim` cargo feature rather than in `tests/`,
//! so that other crates (the capsule server, the client) can run their
//! sans-IO logic over a simulated overlay in their own tests by enabling
//! the feature in their dev-dependencies. Production builds never compile
//! it.
//!
//! ```
//! use gdp_certs::Kind;
//! use gdp_router::sim::{NetConfig, Network};
//! use std::time::Duration;
//!
//! let mut net = Network::new(NetConfig::default());
//! let r1 = net.add_router();
//! let r2 = net.add_router();
//! let a = net.add_endpoint(Kind::Client, "a");
//! let b = net.add_endpoint(Kind::Client, "b");
//! net.attach(a, r1);
//! net.attach(b, r2);
//! net.run_for(Duration::from_secs(1));
//!
//! let b_name = net.endpoint(b).name();
//! net.endpoint_mut(a).send_data(b_name, "hello")?;
//! net.flush_endpoint(a);
//! net.run_for(Duration::from_secs(1));
//! assert_eq!(net.endpoint(b).data_from(net.endpoint(a).name()).count(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_proto::Flags;
use gdp_proto::pdu::peek_header;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::core::{Action, CoreConfig, Gateway, LinkId, LinkPeer, RouterCore};

mod capsule;
mod directory;
mod endpoint;
mod reader;

pub use capsule::SimCapsule;
pub use directory::SimDirectory;
pub use endpoint::{AttachState, ReceivedNak, SimEndpoint};

/// The virtual time a network starts at.
pub const SIM_START: Timestamp = Timestamp::from_secs(1_800_000_000);

/// A router in a [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouterId(pub usize);

/// An endpoint in a [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub usize);

/// One end of a simulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// A router.
    Router(RouterId),
    /// An endpoint.
    Endpoint(EndpointId),
}

/// Settings of a [`Network`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NetConfig {
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// One-way latency of every link.
    pub link_latency: Duration,
    /// Time for a directory request to be answered or applied.
    pub directory_latency: Duration,
    /// Probability that an unreliable PDU is lost on a link.
    pub loss: f64,
    /// The template of every router's configuration (addresses, gateway and
    /// seed are set per router).
    pub router: CoreConfig,
    /// Routers' link readers forward what the core's
    /// [`ReadPlan`](crate::core::fast::ReadPlan) forwards
    /// before the core sees the rest of each reliable batch, as the
    /// driver's do (see the module documentation). Off, every PDU goes
    /// through the core; either way the results are the same.
    pub fast_path: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            seed: 1,
            link_latency: Duration::from_millis(5),
            directory_latency: Duration::from_millis(2),
            loss: 0.0,
            router: CoreConfig::default(),
            fast_path: true,
        }
    }
}

#[derive(Debug)]
struct SimRouter {
    core: RouterCore,
    /// What the router was started with, to start it again.
    identity: Identity,
    config: CoreConfig,
    listen: SocketAddr,
    alive: bool,
    /// Times it was started again; answers meant for an earlier start are
    /// dropped.
    restarts: u32,
    /// PDUs its link readers forwarded on the fast path.
    fast_forwarded: u64,
}

#[derive(Debug, Clone, Copy)]
struct SimLink {
    a: End,
    b: End,
    up: bool,
}

impl SimLink {
    fn other(&self, end: End) -> End {
        if self.a == end { self.b } else { self.a }
    }
}

#[derive(Debug)]
enum Event {
    Pdus {
        link: LinkId,
        to: End,
        pdus: Vec<Bytes>,
        reliable: bool,
    },
    RouterLinkUp {
        link: LinkId,
        to: RouterId,
        peer: Box<Metadata>,
        dialer: bool,
    },
    LinkDown {
        link: LinkId,
        to: End,
    },
    Close {
        link: LinkId,
    },
    Lookup {
        router: RouterId,
        /// The start of the router that asked.
        start: u32,
        name: Name,
    },
    Publish {
        router: Name,
        /// The publishing router, told when the write is done.
        from: RouterId,
        start: u32,
        name: Name,
        record: Bytes,
        expires: Timestamp,
    },
    Unpublish {
        router: Name,
        name: Name,
    },
    DialFailed {
        router: RouterId,
        /// The start of the router that dialed.
        start: u32,
        target: Name,
    },
}

#[derive(Debug)]
struct Scheduled {
    at: Timestamp,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The simulated network. See the module documentation.
#[derive(Debug)]
pub struct Network {
    config: NetConfig,
    now: Timestamp,
    rng: StdRng,
    routers: Vec<SimRouter>,
    endpoints: Vec<SimEndpoint>,
    links: BTreeMap<LinkId, SimLink>,
    next_link: u64,
    events: BinaryHeap<Reverse<Scheduled>>,
    next_event: u64,
    directory: SimDirectory,
    lost: u64,
}

impl Network {
    /// An empty network at [`SIM_START`].
    pub fn new(config: NetConfig) -> Self {
        Network {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            now: SIM_START,
            routers: Vec::new(),
            endpoints: Vec::new(),
            links: BTreeMap::new(),
            next_link: 1,
            events: BinaryHeap::new(),
            next_event: 0,
            directory: SimDirectory::default(),
            lost: 0,
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Adds a public router with the template configuration.
    pub fn add_router(&mut self) -> RouterId {
        self.add_router_with(|_, _| {})
    }

    /// Adds a router without a public address behind `gateway`.
    pub fn add_private_router(&mut self, gateway: RouterId) -> RouterId {
        let gw = Gateway {
            name: self.router_name(gateway),
            addresses: vec![self.routers[gateway.0].listen],
        };
        self.add_router_with(move |_, cfg| {
            cfg.addresses.clear();
            cfg.gateway = Some(gw);
        })
    }

    /// Adds a router whose configuration `edit` adjusts; it is called with
    /// the router's identity and a configuration whose `addresses` already
    /// hold the router's listening address.
    ///
    /// # Panics
    ///
    /// If the edited configuration is invalid (a test bug).
    pub fn add_router_with(&mut self, edit: impl FnOnce(&Identity, &mut CoreConfig)) -> RouterId {
        let id = RouterId(self.routers.len());
        let identity = self.identity(Kind::Router, &format!("router-{}", id.0));
        let listen = router_address(id);
        let mut cfg = self.config.router.clone();
        cfg.addresses = vec![listen];
        cfg.rng_seed = Some(self.rng.r#gen());
        edit(&identity, &mut cfg);
        let core = RouterCore::new(identity.clone(), cfg.clone())
            .expect("simulated router configuration is valid");
        self.routers.push(SimRouter {
            core,
            identity,
            config: cfg,
            listen,
            alive: true,
            restarts: 0,
            fast_forwarded: 0,
        });
        self.drain_router(id);
        id
    }

    /// A deterministic identity of `kind`.
    pub fn identity(&mut self, kind: Kind, label: &str) -> Identity {
        let key = SecretKey::from_seed(&self.rng.r#gen());
        Identity::from_key(
            key,
            kind,
            label,
            SIM_START.saturating_sub(Duration::from_secs(86_400)),
        )
        .expect("simulated labels are short")
    }

    /// Adds an endpoint of `kind` (server or client), not yet linked.
    pub fn add_endpoint(&mut self, kind: Kind, label: &str) -> EndpointId {
        let identity = self.identity(kind, label);
        self.add_endpoint_with(identity)
    }

    /// Adds an endpoint with a given identity.
    pub fn add_endpoint_with(&mut self, identity: Identity) -> EndpointId {
        self.endpoints.push(SimEndpoint::new(identity));
        EndpointId(self.endpoints.len() - 1)
    }

    /// A capsule owned by a fresh deterministic key.
    pub fn new_capsule(&mut self, label: &str) -> SimCapsule {
        let owner = SecretKey::from_seed(&self.rng.r#gen());
        SimCapsule::new(owner, label, self.rng.r#gen())
    }

    /// Links `endpoint` to `router`; the router challenges it at once.
    pub fn attach(&mut self, endpoint: EndpointId, router: RouterId) -> LinkId {
        let link = self.new_link(End::Endpoint(endpoint), End::Router(router));
        let name = self.router_name(router);
        self.endpoints[endpoint.0].linked(link, name);
        let now = self.now;
        self.routers[router.0]
            .core
            .link_up(now, link, LinkPeer::Endpoint);
        self.drain_router(router);
        link
    }

    /// Links two routers directly, as if `a` had dialed `b`.
    pub fn link_routers(&mut self, a: RouterId, b: RouterId) -> LinkId {
        let link = self.new_link(End::Router(a), End::Router(b));
        let (ma, mb) = (self.router_metadata(a), self.router_metadata(b));
        let now = self.now;
        self.routers[a.0]
            .core
            .link_up(now, link, LinkPeer::Router { metadata: mb });
        self.drain_router(a);
        self.routers[b.0]
            .core
            .link_up(now, link, LinkPeer::Router { metadata: ma });
        self.drain_router(b);
        link
    }

    /// Closes `link` gracefully: what is already in flight still arrives,
    /// then both ends see it go down, one link latency from now.
    pub fn cut_link(&mut self, link: LinkId) {
        if !self.links.get(&link).is_some_and(|l| l.up) {
            return;
        }
        let at = self.now.saturating_add(self.config.link_latency);
        self.schedule(at, Event::Close { link });
    }

    /// Stops `router` for good: its links go down (its peers notice after one
    /// link latency), its timers stop, dials to it fail. Its records stay in
    /// the directory until they expire.
    pub fn kill_router(&mut self, router: RouterId) {
        self.routers[router.0].alive = false;
        let me = End::Router(router);
        let links: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.up && (l.a == me || l.b == me))
            .map(|(id, _)| *id)
            .collect();
        for link in links {
            if let Some(l) = self.links.get_mut(&link) {
                l.up = false;
                let other = l.other(me);
                let at = self.now.saturating_add(self.config.link_latency);
                self.schedule(at, Event::LinkDown { link, to: other });
            }
        }
    }

    /// Starts a killed `router` again, as a process restarted after a
    /// crash: a fresh core with the same identity, configuration and
    /// address, and nothing of the old one's state (links, FIB, trees).
    /// Peers that want it dial it again; a private router dials its
    /// gateway. Answers the old core was waiting for are dropped.
    ///
    /// # Panics
    ///
    /// If the router is alive (a test bug).
    pub fn restart_router(&mut self, router: RouterId) {
        let r = &mut self.routers[router.0];
        assert!(!r.alive, "restart_router: {router:?} is alive");
        let mut config = r.config.clone();
        config.rng_seed = Some(self.rng.r#gen());
        r.core = RouterCore::new(r.identity.clone(), config)
            .expect("the configuration it started with is valid");
        r.alive = true;
        r.restarts += 1;
        self.drain_router(router);
    }

    /// The core of `router`.
    pub fn router(&self, router: RouterId) -> &RouterCore {
        &self.routers[router.0].core
    }

    /// The core of `router`, to call inputs on directly; call
    /// [`Network::flush_router`] afterwards.
    pub fn router_mut(&mut self, router: RouterId) -> &mut RouterCore {
        &mut self.routers[router.0].core
    }

    /// The name of `router`.
    pub fn router_name(&self, router: RouterId) -> Name {
        self.routers[router.0].core.name()
    }

    /// The metadata of `router`.
    pub fn router_metadata(&self, router: RouterId) -> Metadata {
        self.routers[router.0].core.identity().metadata().clone()
    }

    /// Router ids, in order.
    pub fn router_ids(&self) -> impl Iterator<Item = RouterId> {
        (0..self.routers.len()).map(RouterId)
    }

    /// The endpoint `endpoint`.
    pub fn endpoint(&self, endpoint: EndpointId) -> &SimEndpoint {
        &self.endpoints[endpoint.0]
    }

    /// The endpoint `endpoint`, to queue PDUs on; call
    /// [`Network::flush_endpoint`] afterwards.
    pub fn endpoint_mut(&mut self, endpoint: EndpointId) -> &mut SimEndpoint {
        &mut self.endpoints[endpoint.0]
    }

    /// The directory.
    pub fn directory(&self) -> &SimDirectory {
        &self.directory
    }

    /// The directory, to tamper with.
    pub fn directory_mut(&mut self) -> &mut SimDirectory {
        &mut self.directory
    }

    /// Unreliable PDUs lost on links so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// PDUs the routers' link readers forwarded on the fast path so far
    /// (see [`NetConfig::fast_path`]).
    pub fn fast_forwarded(&self) -> u64 {
        self.routers.iter().map(|r| r.fast_forwarded).sum()
    }

    /// PDUs the link readers of `router` forwarded on the fast path so far.
    pub fn fast_forwarded_by(&self, router: RouterId) -> u64 {
        self.routers[router.0].fast_forwarded
    }

    /// Sends what `endpoint` queued: PDUs flagged unreliable as datagrams
    /// (which may be lost), the rest (including unparsable bytes) reliably.
    pub fn flush_endpoint(&mut self, endpoint: EndpointId) {
        let pdus = self.endpoints[endpoint.0].poll_transmit();
        let Some(link) = self.endpoints[endpoint.0].link else {
            return;
        };
        let (unreliable, reliable): (Vec<Bytes>, Vec<Bytes>) = pdus
            .into_iter()
            .partition(|b| peek_header(b).is_ok_and(|h| h.flags.contains(Flags::UNRELIABLE)));
        self.transmit(link, End::Endpoint(endpoint), reliable, true);
        self.transmit(link, End::Endpoint(endpoint), unreliable, false);
    }

    /// Sends `pdus` as they are from `router`'s end of `link`, reliably,
    /// bypassing its core: what a hostile router would send (any source,
    /// any bytes).
    pub fn send_from_router(&mut self, router: RouterId, link: LinkId, pdus: Vec<Bytes>) {
        self.transmit(link, End::Router(router), pdus, true);
    }

    /// Carries out what `router` queued (transmits and actions).
    pub fn flush_router(&mut self, router: RouterId) {
        self.drain_router(router);
    }

    /// Runs the network for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now.saturating_add(d);
        self.run_until(until);
    }

    /// Runs the network until the virtual time `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        for e in 0..self.endpoints.len() {
            self.flush_endpoint(EndpointId(e));
        }
        loop {
            let next_event = self.events.peek().map(|Reverse(s)| s.at);
            let next_timer = self
                .routers
                .iter()
                .filter(|r| r.alive)
                .filter_map(|r| r.core.poll_timeout())
                .min();
            let next = match (next_event, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_event.is_some_and(|t| t <= self.now) {
                if let Some(Reverse(s)) = self.events.pop() {
                    self.deliver(s.event);
                }
                continue;
            }
            for r in 0..self.routers.len() {
                let due = self.routers[r].alive
                    && self.routers[r]
                        .core
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now);
                if due {
                    let now = self.now;
                    self.routers[r].core.handle_timeout(now);
                    self.drain_router(RouterId(r));
                }
            }
        }
        self.now = self.now.max(until);
    }

    fn new_link(&mut self, a: End, b: End) -> LinkId {
        let link = LinkId(self.next_link);
        self.next_link += 1;
        self.links.insert(link, SimLink { a, b, up: true });
        link
    }

    fn schedule(&mut self, at: Timestamp, event: Event) {
        let seq = self.next_event;
        self.next_event += 1;
        self.events.push(Reverse(Scheduled { at, seq, event }));
    }

    /// Puts `pdus` from `from` on `link`, dropping lost unreliable ones.
    fn transmit(&mut self, link: LinkId, from: End, mut pdus: Vec<Bytes>, reliable: bool) {
        let Some(l) = self.links.get(&link).copied() else {
            return;
        };
        if !l.up || pdus.is_empty() {
            return;
        }
        if !reliable && self.config.loss > 0.0 {
            let before = pdus.len();
            let loss = self.config.loss;
            pdus.retain(|_| !self.rng.gen_bool(loss.clamp(0.0, 1.0)));
            self.lost += (before - pdus.len()) as u64;
        }
        let at = self.now.saturating_add(self.config.link_latency);
        let to = l.other(from);
        self.schedule(
            at,
            Event::Pdus {
                link,
                to,
                pdus,
                reliable,
            },
        );
    }

    /// Carries out everything `router` queued.
    fn drain_router(&mut self, router: RouterId) {
        if !self.routers[router.0].alive {
            return;
        }
        while let Some(t) = self.routers[router.0].core.poll_transmit() {
            self.transmit(t.link, End::Router(router), t.pdus, t.reliable);
        }
        // Everything the core queued is on its links: its link readers may
        // use the entries it wrote.
        self.routers[router.0].core.seal_fib();
        let dir_at = self.now.saturating_add(self.config.directory_latency);
        let me = self.router_name(router);
        while let Some(action) = self.routers[router.0].core.poll_action() {
            match action {
                Action::Lookup(name) => {
                    let start = self.routers[router.0].restarts;
                    self.schedule(
                        dir_at,
                        Event::Lookup {
                            router,
                            start,
                            name,
                        },
                    );
                }
                Action::Publish {
                    name,
                    record,
                    expires,
                } => self.schedule(
                    dir_at,
                    Event::Publish {
                        router: me,
                        from: router,
                        start: self.routers[router.0].restarts,
                        name,
                        record,
                        expires,
                    },
                ),
                Action::Unpublish { name } => {
                    self.schedule(dir_at, Event::Unpublish { router: me, name });
                }
                Action::Dial {
                    router: target,
                    addresses,
                    ..
                } => self.dial(router, target, &addresses),
                Action::CloseLink { link, .. } => self.cut_link(link),
            }
        }
    }

    fn dial(&mut self, from: RouterId, target: Name, addresses: &[SocketAddr]) {
        let at = self.now.saturating_add(self.config.link_latency);
        let found = self
            .routers
            .iter()
            .position(|r| r.alive && addresses.contains(&r.listen))
            .map(RouterId);
        match found {
            Some(to) if self.router_name(to) == target && to != from => {
                let link = self.new_link(End::Router(from), End::Router(to));
                let mf = Box::new(self.router_metadata(from));
                let mt = Box::new(self.router_metadata(to));
                self.schedule(
                    at,
                    Event::RouterLinkUp {
                        link,
                        to: from,
                        peer: mt,
                        dialer: true,
                    },
                );
                self.schedule(
                    at,
                    Event::RouterLinkUp {
                        link,
                        to,
                        peer: mf,
                        dialer: false,
                    },
                );
            }
            _ => {
                let start = self.routers[from.0].restarts;
                self.schedule(
                    at,
                    Event::DialFailed {
                        router: from,
                        start,
                        target,
                    },
                );
            }
        }
    }

    fn deliver(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Pdus {
                link,
                to,
                pdus,
                reliable,
            } => {
                if !self.links.get(&link).is_some_and(|l| l.up) {
                    return;
                }
                match to {
                    End::Router(r) if self.routers[r.0].alive => {
                        let taken = if reliable && self.config.fast_path {
                            self.fast_read(r, link, &pdus)
                        } else {
                            0
                        };
                        for pdu in pdus.into_iter().skip(taken) {
                            self.routers[r.0].core.handle_pdu(now, link, pdu);
                        }
                        self.drain_router(r);
                    }
                    End::Router(_) => {}
                    End::Endpoint(e) => {
                        for pdu in pdus {
                            self.endpoints[e.0].handle_pdu(now, pdu);
                        }
                        self.flush_endpoint(e);
                    }
                }
            }
            Event::RouterLinkUp {
                link,
                to,
                peer,
                dialer,
            } => {
                if self.routers[to.0].alive && self.links.get(&link).is_some_and(|l| l.up) {
                    self.routers[to.0].core.link_up(
                        now,
                        link,
                        LinkPeer::Router { metadata: *peer },
                    );
                    self.drain_router(to);
                } else if self.routers[to.0].alive && dialer {
                    let target = peer.name();
                    self.routers[to.0].core.dial_failed(now, target);
                    self.drain_router(to);
                }
            }
            Event::Close { link } => {
                if let Some(l) = self.links.get_mut(&link)
                    && l.up
                {
                    l.up = false;
                    let (a, b) = (l.a, l.b);
                    self.deliver(Event::LinkDown { link, to: a });
                    self.deliver(Event::LinkDown { link, to: b });
                }
            }
            Event::LinkDown { link, to } => match to {
                End::Router(r) if self.routers[r.0].alive => {
                    self.routers[r.0].core.link_down(now, link);
                    self.drain_router(r);
                }
                End::Router(_) => {}
                End::Endpoint(e) => {
                    if self.endpoints[e.0].link == Some(link) {
                        self.endpoints[e.0].unlinked();
                    }
                }
            },
            Event::Lookup {
                router,
                start,
                name,
            } => {
                let r = &self.routers[router.0];
                if r.alive && r.restarts == start {
                    let result = self.directory.lookup(&name, now);
                    self.routers[router.0].core.lookup_result(now, name, result);
                    self.drain_router(router);
                }
            }
            Event::Publish {
                router,
                from,
                start,
                name,
                record,
                expires,
            } => {
                self.directory.publish(name, router, record, expires);
                let r = &self.routers[from.0];
                if r.alive && r.restarts == start {
                    self.routers[from.0].core.publish_done(now, name, true);
                    self.drain_router(from);
                }
            }
            Event::Unpublish { router, name } => self.directory.unpublish(name, router),
            Event::DialFailed {
                router,
                start,
                target,
            } => {
                let r = &self.routers[router.0];
                if r.alive && r.restarts == start {
                    self.routers[router.0].core.dial_failed(now, target);
                    self.drain_router(router);
                }
            }
        }
    }
}

/// The listening address of router `id`.
fn router_address(id: RouterId) -> SocketAddr {
    let n = u8::try_from(id.0 % 250).unwrap_or(0);
    let m = u8::try_from(id.0 / 250).unwrap_or(0);
    SocketAddr::from((Ipv4Addr::new(10, n, m, 1), 4433))
}
