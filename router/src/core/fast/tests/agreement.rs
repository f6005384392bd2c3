//! The property that the fast path and the core decide the same: on any
//! state the core can reach (endpoints attaching, attached, advertising and
//! withdrawing capsules, router links ready or not, trusted or vouched for
//! by the directory, sources of vouched peers entitled or not, static and
//! cached routes, some expired, links gone, the FIB sealed or not), a read handled
//! by a link reader's [`ReadPlan`] and then the core leaves exactly what
//! the core alone leaves: the same PDUs on the same links in the same
//! order, the same counters, the same actions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, RouteRecord, RouteTarget, RtCert, Validity};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_proto::control::{AdvertiseEntry, AttachProof, ControlMessage, RouterHello};
use gdp_proto::pdu::{Pdu, peek_header};
use gdp_proto::{Flags, PduHeader, PduType};
use proptest::prelude::*;

use super::run;
use crate::core::attach::{LinkKind, LinkState};
use crate::core::fast::{CoreView, FibView, Ingress, Peer, ReadPlan, Verdict, decide};
use crate::core::{Action, CoreConfig, Fib, FibEntry, LinkId, LinkPeer, RouteKind, RouterCore};

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

fn identity(seed: u8, kind: Kind) -> Identity {
    Identity::from_key(
        SecretKey::from_seed(&[seed; 32]),
        kind,
        "fast",
        Timestamp::from_secs(1_700_000_000),
    )
    .expect("short label")
}

/// Who and what the generated states are made of. Router 0 is a trusted
/// peer (named in `trusted_peers`); router 1 is vouched for by the
/// directory. The far endpoints are attached elsewhere: their records name
/// one router or the other.
struct Cast {
    endpoints: Vec<Identity>,
    routers: Vec<Identity>,
    far: Vec<Identity>,
    owner: SecretKey,
    capsules: Vec<Metadata>,
}

impl Cast {
    fn new() -> Self {
        let owner = SecretKey::from_seed(&[40; 32]);
        let capsules = (0..2)
            .map(|i| {
                Metadata::capsule(
                    owner.public(),
                    vec![owner.public()],
                    format!("c{i}"),
                    NOW,
                    vec![],
                )
                .expect("valid capsule")
            })
            .collect();
        Cast {
            endpoints: vec![
                identity(20, Kind::Client),
                identity(21, Kind::Server),
                identity(22, Kind::Server),
                identity(23, Kind::Client),
            ],
            routers: vec![identity(30, Kind::Router), identity(31, Kind::Router)],
            far: vec![identity(50, Kind::Client), identity(51, Kind::Client)],
            owner,
            capsules,
        }
    }

    /// Every name a header may carry: the router's own, the endpoints',
    /// the peers', the capsules', the far endpoints', one nobody serves and
    /// zero.
    fn names(&self, me: Name) -> Vec<Name> {
        let mut names = vec![me, Name::from_bytes([0x66; 32]), Name::ZERO];
        names.extend(self.endpoints.iter().map(Identity::name));
        names.extend(self.routers.iter().map(Identity::name));
        names.extend(self.capsules.iter().map(Metadata::name));
        names.extend(self.far.iter().map(Identity::name));
        names
    }

    /// A valid route record for `name` published by router `r`: the
    /// router's own record, or a far endpoint's.
    fn record(&self, name: Name, r: usize) -> Option<Bytes> {
        let router = &self.routers[r];
        let validity = Validity::starting_at(NOW, Duration::from_secs(3600));
        let target = if name == router.name() {
            RouteTarget::Router
        } else {
            let far = self.far.iter().find(|f| f.name() == name)?;
            RouteTarget::Endpoint {
                endpoint_md: far.metadata().clone(),
                rtcert: RtCert::issue_by(far, router.name(), validity),
            }
        };
        let addr = SocketAddr::from(([192, 0, 2, 9], 4433));
        RouteRecord::sign(router, name, target, vec![addr], None, validity)
            .ok()
            .map(|r| r.to_bytes())
    }
}

/// One input that shapes the state, on links 1 to 5.
#[derive(Debug, Clone)]
enum Op {
    /// `Attaching(link)`: an endpoint link that never attaches.
    Attaching(u64),
    /// `Attach(link, endpoint)`: the endpoint attaches on the link.
    Attach(u64, usize),
    /// `Advertise(link, capsule)`: the endpoint on the link advertises the
    /// capsule (refused unless it is a server).
    Advertise(u64, usize),
    /// `Withdraw(link, capsule)`: the endpoint on the link withdraws it.
    Withdraw(u64, usize),
    /// `RouterUp(link, router, hello)`: the router links on the link and,
    /// if `hello`, sends its hello: router 0 is trusted at once; router 1
    /// is looked up, and the directory answers with its own record.
    RouterUp(u64, usize, bool),
    /// `Far(link, far, router)`: a PDU from far endpoint `far` arrives on
    /// the link, and lookups of its name are answered with a record naming
    /// `router` (so a vouched peer's source is learned, entitled or not).
    Far(u64, usize, usize),
    /// `Route(name, link, secs)`: a static route (refused unless the link
    /// is a ready router link and the name is not local).
    Route(usize, u64, u64),
    /// `Cache(name, link, secs)`: a cached route, as resolution installs
    /// them: through an attached endpoint or a ready router, never over a
    /// local, neighbour or static entry.
    Cache(usize, u64, u64),
    /// `Down(link)`: the link goes down.
    Down(u64),
    /// The FIB is sealed.
    Seal,
}

fn arb_op() -> impl Strategy<Value = Op> {
    let link = 1u64..6;
    prop_oneof![
        1 => link.clone().prop_map(Op::Attaching),
        3 => (link.clone(), 0..4usize).prop_map(|(l, e)| Op::Attach(l, e)),
        2 => (link.clone(), 0..2usize).prop_map(|(l, c)| Op::Advertise(l, c)),
        1 => (link.clone(), 0..2usize).prop_map(|(l, c)| Op::Withdraw(l, c)),
        3 => (link.clone(), 0..2usize, prop::bool::weighted(0.8))
            .prop_map(|(l, r, h)| Op::RouterUp(l, r, h)),
        2 => (link.clone(), 0..2usize, 0..2usize).prop_map(|(l, f, r)| Op::Far(l, f, r)),
        1 => (0..13usize, link.clone(), 0..4u64).prop_map(|(n, l, s)| Op::Route(n, l, s)),
        1 => (0..13usize, link.clone(), 0..4u64).prop_map(|(n, l, s)| Op::Cache(n, l, s)),
        1 => link.prop_map(Op::Down),
        3 => Just(Op::Seal),
    ]
}

/// A router core in the state `ops` lead to, and its links as a driver
/// sees them (the peer each link's transport authenticated, and the
/// endpoint on it).
struct World {
    core: RouterCore,
    roles: BTreeMap<LinkId, Peer>,
    on_link: BTreeMap<LinkId, usize>,
}

fn world(cast: &Cast, ops: &[Op]) -> World {
    let cfg = CoreConfig {
        addresses: vec![SocketAddr::from(([192, 0, 2, 1], 4433))],
        rng_seed: Some(3),
        trusted_peers: vec![cast.routers[0].name()],
        ..CoreConfig::default()
    };
    let core = RouterCore::new(identity(1, Kind::Router), cfg).expect("valid configuration");
    let mut w = World {
        core,
        roles: BTreeMap::new(),
        on_link: BTreeMap::new(),
    };
    let names = cast.names(w.core.name());
    let validity = Validity::starting_at(NOW, Duration::from_secs(3600));
    for op in ops {
        match *op {
            Op::Attaching(l) => {
                w.core.link_up(NOW, LinkId(l), LinkPeer::Endpoint);
                w.roles.insert(LinkId(l), Peer::Endpoint);
                w.on_link.remove(&LinkId(l));
            }
            Op::Attach(l, e) => {
                let link = LinkId(l);
                w.core.link_up(NOW, link, LinkPeer::Endpoint);
                w.roles.insert(link, Peer::Endpoint);
                w.on_link.insert(link, e);
                let challenge = drain(&mut w.core)
                    .remove(&(link, true))
                    .unwrap_or_default()
                    .iter()
                    .find_map(|b| match ControlMessage::from_pdu(&decode(b)) {
                        Ok(ControlMessage::AttachChallenge(c)) => Some(c),
                        _ => None,
                    })
                    .expect("a challenge");
                let me = &cast.endpoints[e];
                let proof = AttachProof::create(me, &challenge, validity);
                let pdu = ControlMessage::AttachProof(proof)
                    .to_pdu(challenge.router, me.name(), 1)
                    .expect("small");
                w.core.handle_pdu(NOW, link, pdu.to_bytes());
            }
            Op::Advertise(l, c) | Op::Withdraw(l, c) => {
                let Some(&e) = w.on_link.get(&LinkId(l)) else {
                    continue;
                };
                let server = cast.endpoints[e].name();
                let capsule = &cast.capsules[c];
                let msg = if matches!(op, Op::Advertise(..)) {
                    let adcert = AdCert::issue(&cast.owner, capsule.name(), server, validity);
                    ControlMessage::Advertise {
                        entries: vec![AdvertiseEntry {
                            capsule_md: capsule.clone(),
                            adcert,
                        }],
                    }
                } else {
                    ControlMessage::Withdraw {
                        names: vec![capsule.name()],
                    }
                };
                let pdu = msg.to_pdu(w.core.name(), server, 2).expect("small");
                w.core.handle_pdu(NOW, LinkId(l), pdu.to_bytes());
            }
            Op::RouterUp(l, r, hello) => {
                let peer = &cast.routers[r];
                let link = LinkId(l);
                w.core.link_up(
                    NOW,
                    link,
                    LinkPeer::Router {
                        metadata: peer.metadata().clone(),
                    },
                );
                w.roles.insert(link, Peer::Router(peer.name()));
                w.on_link.remove(&link);
                if hello {
                    let hello = RouterHello::new(peer.metadata().clone(), None, vec![])
                        .expect("no addresses");
                    let pdu = ControlMessage::RouterHello(hello)
                        .to_pdu(w.core.name(), peer.name(), 1)
                        .expect("small");
                    w.core.handle_pdu(NOW, link, pdu.to_bytes());
                    answer_lookups(&mut w.core, cast, r);
                }
            }
            Op::Far(l, f, r) => {
                let Some(dst) = w.on_link.values().next().map(|&e| cast.endpoints[e].name()) else {
                    continue;
                };
                let header = PduHeader::new(PduType::Data, dst, cast.far[f].name(), 7).with_ttl(3);
                let pdu = Pdu::new(header, Bytes::from_static(b"far")).expect("small");
                w.core.handle_pdu(NOW, LinkId(l), pdu.to_bytes());
                answer_lookups(&mut w.core, cast, r);
            }
            Op::Route(n, l, secs) => {
                let until = NOW.saturating_add(Duration::from_secs(secs));
                let _ = w.core.install_route(NOW, names[n], LinkId(l), until);
            }
            Op::Cache(n, l, secs) => {
                let usable = w.core.links.get(&LinkId(l)).is_some_and(|s| {
                    matches!(
                        s.kind,
                        LinkKind::Endpoint(_) | LinkKind::Router { ready: true, .. }
                    )
                });
                let replaceable = w
                    .core
                    .fib
                    .get(&names[n])
                    .is_none_or(|e| e.kind == RouteKind::Cached);
                if usable && replaceable {
                    w.core.fib.insert(
                        names[n],
                        FibEntry {
                            next_hop: LinkId(l),
                            kind: RouteKind::Cached,
                            expires: NOW.saturating_add(Duration::from_secs(secs)),
                        },
                    );
                }
            }
            Op::Down(l) => {
                w.core.link_down(NOW, LinkId(l));
                w.roles.remove(&LinkId(l));
                w.on_link.remove(&LinkId(l));
            }
            Op::Seal => w.core.seal_fib(),
        }
    }
    drain(&mut w.core);
    while w.core.poll_action().is_some() {}
    w
}

/// Answers the core's lookups of names the cast has records for with a
/// record published by router `r` (a router's own name: its own record);
/// other actions are left out.
fn answer_lookups(core: &mut RouterCore, cast: &Cast, r: usize) {
    while let Some(action) = core.poll_action() {
        if let Action::Lookup(name) = action {
            let own = cast.routers.iter().position(|x| x.name() == name);
            let record = cast.record(name, own.unwrap_or(r));
            core.lookup_result(NOW, name, Ok(record.into_iter().collect()));
        }
    }
}

fn decode(bytes: &Bytes) -> Pdu {
    Pdu::decode(bytes.clone()).expect("the core sends whole pdus")
}

/// Everything the core queued, per link and reliability, in order.
fn drain(core: &mut RouterCore) -> BTreeMap<(LinkId, bool), Vec<Bytes>> {
    let mut out: BTreeMap<(LinkId, bool), Vec<Bytes>> = BTreeMap::new();
    while let Some(t) = core.poll_transmit() {
        out.entry((t.link, t.reliable)).or_default().extend(t.pdus);
    }
    out
}

/// What a driver's link reader sees: the sealed FIB, and the links the
/// transport has up.
struct DriverView<'a> {
    fib: &'a Fib,
    now: Timestamp,
    roles: &'a BTreeMap<LinkId, Peer>,
}

impl FibView for DriverView<'_> {
    fn entry(&self, name: &Name) -> Option<FibEntry> {
        self.fib.lookup_sealed(name, self.now)
    }

    fn to_router(&self, link: LinkId) -> Option<bool> {
        self.roles.get(&link).map(|p| matches!(p, Peer::Router(_)))
    }
}

/// The PDUs of a run, one buffer each.
fn split(run: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < run.len() {
        let len = peek_header(&run[at..]).expect("whole pdus").pdu_len();
        out.push(run.slice(at..at + len));
        at += len;
    }
    out
}

/// A generated read, PDU by PDU: the type (an index into
/// [`PduType::ALL`]), whether flagged unreliable, the source (an index into
/// the cast's names, or `None` for the name of the endpoint on the link),
/// the destination, the TTL and the payload's length.
type ReadSpec = Vec<(usize, bool, Option<usize>, usize, u8, usize)>;

fn arb_read() -> impl Strategy<Value = ReadSpec> {
    prop::collection::vec(
        (
            prop_oneof![6 => Just(0), 1 => 0..PduType::ALL.len()],
            prop::bool::weighted(0.05),
            prop_oneof![3 => Just(None), 1 => (0..13usize).prop_map(Some)],
            // Mostly names that may have entries: endpoints, capsules,
            // peers.
            prop_oneof![1 => 0..11usize, 3 => 3..7usize, 2 => 9..11usize, 1 => 7..9usize],
            0u8..3,
            0..24usize,
        ),
        1..10,
    )
}

/// Checks one read on link `pick` (an index into the links up) of the
/// state `ops` lead to, at `secs` seconds past the state's time.
fn check_read(
    cast: &Cast,
    ops: &[Op],
    pick: usize,
    secs: u64,
    read: &ReadSpec,
    cuts: &[bool],
) -> Result<usize, TestCaseError> {
    // Two cores in the same state: one handles the read alone, the other
    // after the fast path.
    let mut alone = world(cast, ops);
    let mut fast = world(cast, ops);
    let Some((&link, &peer)) = alone.roles.iter().nth(pick % alone.roles.len().max(1)) else {
        return Ok(0);
    };
    let now = NOW.saturating_add(Duration::from_secs(secs));
    let me = alone.core.name();
    let names = cast.names(me);
    let headers: Vec<PduHeader> = read
        .iter()
        .zip(1..)
        .map(|(&(t, unreliable, src, dst, ttl, _), seq)| {
            let src = match src {
                Some(n) => names[n],
                None => alone
                    .on_link
                    .get(&link)
                    .map_or(Name::ZERO, |&e| cast.endpoints[e].name()),
            };
            let h = PduHeader::new(PduType::ALL[t], names[dst], src, seq).with_ttl(ttl);
            if unreliable {
                h.with_flags(Flags::UNRELIABLE)
            } else {
                h
            }
        })
        .collect();
    let pdus: Vec<Bytes> = headers
        .iter()
        .zip(read)
        .map(|(h, r)| {
            Pdu::new(*h, Bytes::from(vec![0xab; r.5]))
                .expect("small")
                .to_bytes()
        })
        .collect();
    let at = Ingress {
        router: me,
        link,
        peer,
    };
    let driver = DriverView {
        fib: &fast.core.fib,
        now,
        roles: &fast.roles,
    };

    // PDU by PDU: what a reader forwards, the core's `decide` forwards the
    // same way, and so would its slow path.
    for h in &headers {
        if let Verdict::Forward(hop) = decide(&driver, &at, h) {
            let view = CoreView {
                fib: &alone.core.fib,
                links: &alone.core.links,
                now,
            };
            // The core knows the link, with the peer the transport
            // authenticated.
            let state = alone.core.links.get(&link);
            prop_assert_eq!(state.map(LinkState::fast_peer), Some(peer));
            prop_assert_eq!(decide(&view, &at, h), Verdict::Forward(hop));
            prop_assert_eq!(alone.core.slow_path_hop(now, link, h), Some(hop));
        }
    }

    // The read as runs, cut at PDU boundaries.
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 0..pdus.len() {
        if cuts.get(i).copied().unwrap_or(false) || i + 1 == pdus.len() {
            runs.push(run(&pdus[start..=i]));
            start = i + 1;
        }
    }
    let mut plan = ReadPlan::new(driver, at, &runs);
    let mut sent: BTreeMap<(LinkId, bool), Vec<Bytes>> = BTreeMap::new();
    let (mut taken, mut local) = (0, 0);
    while let Some(stretch) = plan.next_stretch() {
        let (hop, n) = (stretch.hop(), stretch.pdus());
        let wire = stretch.into_wire().expect("whole pdus with a ttl left");
        sent.entry((hop.link, true))
            .or_default()
            .extend(wire.iter().flat_map(split));
        taken += n;
        if !hop.to_router {
            local += n;
        }
    }
    fast.core
        .handle_pdus(now, link, pdus[taken..].iter().cloned());
    fast.core.record_fast_path(taken as u64, local as u64);
    for (key, pdus) in drain(&mut fast.core) {
        sent.entry(key).or_default().extend(pdus);
    }

    alone.core.handle_pdus(now, link, pdus.iter().cloned());
    prop_assert_eq!(drain(&mut alone.core), sent);
    prop_assert_eq!(alone.core.stats(), fast.core.stats());
    let actions = |c: &mut RouterCore| std::iter::from_fn(|| c.poll_action()).collect::<Vec<_>>();
    prop_assert_eq!(actions(&mut alone.core), actions(&mut fast.core));
    Ok(taken)
}

/// A state the fast path has work in: two endpoints attached (the second
/// a server with a capsule), a trusted router link, a vouched one, a far
/// source entitled from the vouched router and one that is not.
const BUSY: [Op; 7] = [
    Op::Attach(1, 0),
    Op::Attach(2, 1),
    Op::Advertise(2, 0),
    Op::RouterUp(3, 0, true),
    Op::RouterUp(4, 1, true),
    Op::Far(4, 0, 1),
    Op::Far(3, 1, 0),
];

proptest! {
    #[test]
    fn the_fast_path_and_the_core_decide_the_same(
        busy in prop::bool::weighted(0.7),
        more in prop::collection::vec(arb_op(), 0..10),
        sealed in prop::bool::weighted(0.8),
        pick in any::<usize>(),
        secs in 0u64..5,
        read in arb_read(),
        cuts in prop::collection::vec(any::<bool>(), 10),
    ) {
        let mut ops = if busy { BUSY.to_vec() } else { Vec::new() };
        ops.extend(more);
        if sealed {
            ops.push(Op::Seal);
        }
        let cast = Cast::new();
        check_read(&cast, &ops, pick, secs, &read, &cuts)?;
    }
}

#[test]
fn the_property_reaches_reads_the_fast_path_takes() {
    // The state the generated ones are made like: two endpoints attached,
    // a capsule advertised, a ready router link, a sealed FIB.
    let cast = Cast::new();
    let ops = [
        Op::Attach(1, 0),
        Op::Attach(2, 1),
        Op::Advertise(2, 0),
        Op::RouterUp(3, 0, true),
        Op::Route(1, 3, 4),
        Op::Seal,
    ];
    // Endpoint 0 (link 1) to the capsule, to endpoint 1, then to the
    // name routed through the router, then one for the router itself.
    let read: ReadSpec = vec![
        (0, false, None, 9, 2, 8),
        (0, false, Some(3), 4, 2, 8),
        (1, false, None, 1, 2, 8),
        (6, false, None, 0, 2, 8),
        (0, false, None, 4, 2, 8),
    ];
    let taken = check_read(&cast, &ops, 0, 0, &read, &[false, true]).expect("agreement");
    assert_eq!(taken, 3);
}

#[test]
fn the_property_reaches_entitled_and_unentitled_sources_of_a_vouched_peer() {
    let cast = Cast::new();
    let ops = [BUSY.to_vec(), vec![Op::Seal]].concat();
    let w = world(&cast, &ops);
    let vouched = cast.routers[1].name();
    let link = w.core.router_link(&vouched).expect("the directory vouched");
    assert_eq!(link, LinkId(4));
    assert_eq!(
        w.core.fib.get(&vouched).map(|e| e.kind),
        Some(RouteKind::Vouched)
    );
    assert_eq!(
        w.core.fib.get(&cast.routers[0].name()).map(|e| e.kind),
        Some(RouteKind::Neighbor)
    );
    // Far endpoint 0's first PDU on link 4 waited for its record.
    assert_eq!(w.core.stats().entitlement_misses, 1);
    assert_eq!(w.core.stats().dropped.bad_source, 0);
    // On link 4 (the fourth link up): far endpoint 0, whose record names
    // router 1, to endpoint 0 and endpoint 1; then far endpoint 1, whose
    // record names router 0, which stops the fast path.
    let read: ReadSpec = vec![
        (0, false, Some(11), 3, 2, 8),
        (0, false, Some(11), 4, 2, 8),
        (0, false, Some(12), 3, 2, 8),
        (0, false, Some(11), 3, 2, 8),
    ];
    let taken = check_read(&cast, &ops, 3, 0, &read, &[true]).expect("agreement");
    assert_eq!(taken, 2);
}
