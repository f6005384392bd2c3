//! Unit and property tests of [`decide`] and [`ReadPlan`]; the property
//! that the fast path and the core decide the same is in `agreement`.

use std::cell::Cell;
use std::collections::BTreeMap;

use bytes::Bytes;
use gdp_certs::codec::Encode;
use gdp_certs::{Name, Timestamp};
use gdp_proto::pdu::{Pdu, peek_header};
use gdp_proto::{Flags, PduHeader, PduType};
use proptest::prelude::*;

use super::*;

mod agreement;

const ME: Name = Name::from_bytes([1; 32]);
const PEER: Name = Name::from_bytes([2; 32]);
const A: Name = Name::from_bytes([10; 32]);
const B: Name = Name::from_bytes([11; 32]);
const FAR: Name = Name::from_bytes([20; 32]);

/// A view over a plain map, counting its entry lookups.
#[derive(Debug, Default)]
struct Map {
    entries: BTreeMap<Name, FibEntry>,
    routers: BTreeMap<LinkId, bool>,
    lookups: Cell<usize>,
}

impl FibView for Map {
    fn entry(&self, name: &Name) -> Option<FibEntry> {
        self.lookups.set(self.lookups.get() + 1);
        self.entries.get(name).copied()
    }

    fn to_router(&self, link: LinkId) -> Option<bool> {
        self.routers.get(&link).copied()
    }
}

impl FibView for &Map {
    fn entry(&self, name: &Name) -> Option<FibEntry> {
        (**self).entry(name)
    }

    fn to_router(&self, link: LinkId) -> Option<bool> {
        (**self).to_router(link)
    }
}

fn entry(link: u64, kind: RouteKind) -> FibEntry {
    FibEntry {
        next_hop: LinkId(link),
        kind,
        expires: Timestamp::MAX,
    }
}

/// A on endpoint link 1, B on endpoint link 2, PEER on router link 3,
/// FAR cached through PEER.
fn map() -> Map {
    let mut m = Map::default();
    m.entries.insert(A, entry(1, RouteKind::Local));
    m.entries.insert(B, entry(2, RouteKind::Local));
    m.entries.insert(PEER, entry(3, RouteKind::Neighbor));
    m.entries.insert(FAR, entry(3, RouteKind::Cached));
    m.routers.insert(LinkId(1), false);
    m.routers.insert(LinkId(2), false);
    m.routers.insert(LinkId(3), true);
    m
}

fn from_endpoint(link: u64) -> Ingress {
    Ingress {
        router: ME,
        link: LinkId(link),
        peer: Peer::Endpoint,
    }
}

fn from_peer() -> Ingress {
    Ingress {
        router: ME,
        link: LinkId(3),
        peer: Peer::Router(PEER),
    }
}

fn header(src: Name, dst: Name) -> PduHeader {
    PduHeader::new(PduType::Data, dst, src, 1).with_ttl(4)
}

fn with_seq(mut h: PduHeader, seq: u64) -> PduHeader {
    h.seq = seq;
    h
}

fn to_endpoint(link: u64) -> Verdict {
    Verdict::Forward(Hop {
        link: LinkId(link),
        to_router: false,
    })
}

fn to_router(link: u64) -> Verdict {
    Verdict::Forward(Hop {
        link: LinkId(link),
        to_router: true,
    })
}

#[test]
fn decide_forwards_what_the_fib_alone_decides() {
    let m = map();
    assert_eq!(decide(&m, &from_endpoint(1), &header(A, B)), to_endpoint(2));
    assert_eq!(decide(&m, &from_endpoint(1), &header(A, FAR)), to_router(3));
    assert_eq!(decide(&m, &from_peer(), &header(FAR, A)), to_endpoint(1));
    // A local delivery leaves the TTL alone, so zero is no obstacle.
    assert_eq!(
        decide(&m, &from_peer(), &header(FAR, A).with_ttl(0)),
        to_endpoint(1)
    );
    for ptype in [
        PduType::Capsule,
        PduType::Ping,
        PduType::Pong,
        PduType::NakNoRoute,
    ] {
        let mut h = header(A, B);
        h.ptype = ptype;
        assert_eq!(
            decide(&m, &from_endpoint(1), &h),
            to_endpoint(2),
            "{ptype:?}"
        );
    }
}

#[test]
fn decide_leaves_the_rest_to_the_core_and_says_why() {
    let m = map();
    let core = |at: Ingress, h: PduHeader| match decide(&m, &at, &h) {
        Verdict::Core(reason) => reason,
        v @ Verdict::Forward(_) => panic!("{h:?} forwarded: {v:?}"),
    };
    for ptype in [PduType::Control, PduType::Advertise, PduType::Withdraw] {
        let mut h = header(A, B);
        h.ptype = ptype;
        assert_eq!(core(from_endpoint(1), h), Reason::LinkLocal);
        assert_eq!(core(from_peer(), h), Reason::LinkLocal);
    }
    // A delivery tree's PDUs, even with a FIB entry for the capsule and a
    // source bound to the link: never forwarded by the FIB.
    for ptype in [PduType::Subscribe, PduType::Unsubscribe, PduType::Publish] {
        let mut h = header(A, B);
        h.ptype = ptype;
        assert_eq!(core(from_endpoint(1), h), Reason::Tree, "{ptype:?}");
        let mut h = header(FAR, A);
        h.ptype = ptype;
        assert_eq!(core(from_peer(), h), Reason::Tree, "{ptype:?}");
    }
    assert_eq!(
        core(from_endpoint(1), header(A, B).with_flags(Flags::UNRELIABLE)),
        Reason::Unreliable
    );
    assert_eq!(core(from_endpoint(1), header(A, ME)), Reason::ForThisRouter);
    // Sources: another endpoint's name, a name with no entry, a name that
    // is not local.
    assert_eq!(core(from_endpoint(2), header(A, B)), Reason::SourceNotBound);
    assert_eq!(
        core(from_endpoint(1), header(ME, B)),
        Reason::SourceNotBound
    );
    assert_eq!(
        core(from_endpoint(3), header(PEER, A)),
        Reason::SourceNotBound
    );
    // A router link that is not the neighbour entry's.
    let other = Ingress {
        link: LinkId(4),
        ..from_peer()
    };
    assert_eq!(core(other, header(FAR, A)), Reason::RouterLinkNotInUse);
    let stranger = Ingress {
        peer: Peer::Router(FAR),
        ..from_peer()
    };
    assert_eq!(core(stranger, header(FAR, A)), Reason::RouterLinkNotInUse);
    assert_eq!(
        core(from_endpoint(1), header(A, Name::from_bytes([99; 32]))),
        Reason::NoRoute
    );
    assert_eq!(
        core(from_endpoint(1), header(A, FAR).with_ttl(0)),
        Reason::TtlExpired
    );
    let mut gone = map();
    gone.routers.remove(&LinkId(2));
    assert_eq!(
        decide(&gone, &from_endpoint(1), &header(A, B)),
        Verdict::Core(Reason::NextHopUnknown)
    );
}

const VOUCHED: Name = Name::from_bytes([3; 32]);
const BEHIND: Name = Name::from_bytes([21; 32]);

/// [`map`], with a directory-vouched router VOUCHED on router link 5 and
/// BEHIND, a name whose route leads through it.
fn vouched_map() -> Map {
    let mut m = map();
    m.entries.insert(VOUCHED, entry(5, RouteKind::Vouched));
    m.entries.insert(BEHIND, entry(5, RouteKind::Cached));
    m.routers.insert(LinkId(5), true);
    m
}

fn from_vouched() -> Ingress {
    Ingress {
        router: ME,
        link: LinkId(5),
        peer: Peer::Router(VOUCHED),
    }
}

#[test]
fn decide_forwards_from_a_vouched_peer_only_the_sources_routed_back_through_it() {
    let m = vouched_map();
    // The peer itself, and a name whose route leads back through it.
    assert_eq!(
        decide(&m, &from_vouched(), &header(VOUCHED, A)),
        to_endpoint(1)
    );
    assert_eq!(
        decide(&m, &from_vouched(), &header(BEHIND, A)),
        to_endpoint(1)
    );
    // A source routed through another peer, a local one, an unknown one.
    for src in [FAR, B, Name::from_bytes([99; 32])] {
        assert_eq!(
            decide(&m, &from_vouched(), &header(src, A)),
            Verdict::Core(Reason::SourceNotEntitled),
            "{src}"
        );
    }
    // A trusted peer is not asked.
    assert_eq!(decide(&m, &from_peer(), &header(BEHIND, A)), to_endpoint(1));
}

#[test]
fn a_plan_from_a_vouched_peer_looks_each_name_up_once_per_read() {
    let m = vouched_map();
    let runs: Vec<Bytes> = (0..20)
        .map(|i| run(&[pdu(BEHIND, A, 2 * i), pdu(BEHIND, A, 2 * i + 1)]))
        .collect();
    let mut plan = ReadPlan::new(&m, from_vouched(), &runs);
    let (stretches, handoff) = plan_all(&mut plan);
    assert_eq!((stretches.len(), handoff), (1, None));
    assert_eq!(stretches[0].pdus(), 40);
    // The peer, the source and the destination, once each.
    assert_eq!(m.lookups.get(), 3);
}

fn pdu(src: Name, dst: Name, seq: u64) -> Bytes {
    Pdu::new(with_seq(header(src, dst), seq), Bytes::from(vec![7; 24]))
        .expect("small")
        .to_bytes()
}

fn run(pdus: &[Bytes]) -> Bytes {
    Bytes::from(pdus.concat())
}

/// Every stretch of a plan, and why it stopped.
fn plan_all<V: FibView>(plan: &mut ReadPlan<'_, V>) -> (Vec<Stretch>, Option<Handoff>) {
    let mut out = Vec::new();
    while let Some(s) = plan.next_stretch() {
        out.push(s);
    }
    (out, plan.handoff())
}

#[test]
fn a_plan_cuts_a_read_into_stretches_per_next_hop_across_runs() {
    let m = map();
    let p: Vec<Bytes> = (0..5)
        .map(|i| pdu(A, if i == 2 { FAR } else { B }, i))
        .collect();
    // Runs [p0 p1] [p2 p3 p4]: B, B | FAR | B, B.
    let runs = [run(&p[..2]), run(&p[2..])];
    let mut plan = ReadPlan::new(&m, from_endpoint(1), &runs);
    let (stretches, handoff) = plan_all(&mut plan);
    assert_eq!(handoff, None);
    let hops: Vec<Verdict> = stretches
        .iter()
        .map(|s| Verdict::Forward(s.hop()))
        .collect();
    assert_eq!(hops, vec![to_endpoint(2), to_router(3), to_endpoint(2)]);
    assert_eq!(
        stretches.iter().map(Stretch::pdus).collect::<Vec<_>>(),
        vec![2, 1, 2]
    );
    // Slices of the runs, not copies.
    assert_eq!(stretches[0].parts(), &[runs[0].clone()]);
    assert_eq!(stretches[0].parts()[0].as_ptr(), runs[0].as_ptr());
    assert_eq!(stretches[2].parts(), &[run(&p[3..])]);
    // Towards the router, the TTL is decremented in a copy.
    let wire = stretches[1].clone().into_wire().expect("whole pdus");
    assert_eq!(peek_header(&wire[0]).map(|h| (h.ttl, h.seq)), Ok((3, 2)));
    assert_eq!(peek_header(&runs[1]).map(|h| h.ttl), Ok(4));
    let same = stretches[0].clone().into_wire().expect("whole pdus");
    assert_eq!(same[0].as_ptr(), runs[0].as_ptr());
}

#[test]
fn a_plan_stops_at_the_first_pdu_for_the_core() {
    let m = map();
    let runs = [run(&[pdu(A, B, 1), pdu(A, ME, 2), pdu(A, B, 3)])];
    let mut plan = ReadPlan::new(&m, from_endpoint(1), &runs);
    let (stretches, handoff) = plan_all(&mut plan);
    assert_eq!(stretches.len(), 1);
    assert_eq!(stretches[0].pdus(), 1);
    assert_eq!(handoff, Some(Handoff::Core(Reason::ForThisRouter)));

    // The first PDU for the core leaves the whole read.
    let runs = [run(&[pdu(B, A, 1), pdu(A, B, 2)])];
    let mut plan = ReadPlan::new(&m, from_endpoint(1), &runs);
    assert_eq!(
        plan_all(&mut plan),
        (vec![], Some(Handoff::Core(Reason::SourceNotBound)))
    );

    // Bytes that are not a whole PDU.
    let mut cut = run(&[pdu(A, B, 1), pdu(A, B, 2)]).to_vec();
    cut.truncate(cut.len() - 1);
    let runs = [Bytes::from(cut)];
    let mut plan = ReadPlan::new(&m, from_endpoint(1), &runs);
    let (stretches, handoff) = plan_all(&mut plan);
    assert_eq!(stretches.iter().map(Stretch::pdus).sum::<usize>(), 1);
    assert_eq!(handoff, Some(Handoff::Unreadable));
}

#[test]
fn a_plan_looks_each_name_up_once_per_read() {
    let m = map();
    let runs: Vec<Bytes> = (0..50)
        .map(|i| run(&[pdu(A, B, 2 * i), pdu(A, B, 2 * i + 1)]))
        .collect();
    let mut plan = ReadPlan::new(&m, from_endpoint(1), &runs);
    let (stretches, handoff) = plan_all(&mut plan);
    assert_eq!((stretches.len(), handoff), (1, None));
    assert_eq!((stretches[0].pdus(), stretches[0].parts().len()), (100, 50));
    // The source and the destination, once each.
    assert_eq!(m.lookups.get(), 2);
}

// ---------------------------------------------------------------------
// Property: a plan forwards exactly the front of a read that `decide`
// forwards, cut where the hop changes, however the read is cut into runs.

fn arb_header(names: &'static [Name]) -> impl Strategy<Value = PduHeader> {
    (
        0..PduType::ALL.len(),
        prop::bool::weighted(0.1),
        prop::sample::select(names),
        prop::sample::select(names),
        0u8..3,
    )
        .prop_map(|(t, unreliable, src, dst, ttl)| {
            let mut h = PduHeader::new(PduType::ALL[t], dst, src, 0).with_ttl(ttl);
            if unreliable {
                h = h.with_flags(Flags::UNRELIABLE);
            }
            h
        })
}

static NAMES: [Name; 6] = [ME, PEER, A, B, FAR, Name::from_bytes([40; 32])];

fn arb_map() -> impl Strategy<Value = Map> {
    let kinds = prop::sample::select(vec![
        RouteKind::Local,
        RouteKind::Neighbor,
        RouteKind::Vouched,
        RouteKind::Cached,
        RouteKind::Static,
    ]);
    (
        prop::collection::vec(prop::option::of((kinds, 1u64..5)), NAMES.len()),
        prop::collection::vec(prop::option::of(any::<bool>()), 4),
    )
        .prop_map(|(entries, routers)| {
            let mut m = Map::default();
            for (name, e) in NAMES.iter().zip(entries) {
                if let Some((kind, link)) = e {
                    m.entries.insert(*name, entry(link, kind));
                }
            }
            for (link, r) in (1..).zip(routers) {
                if let Some(r) = r {
                    m.routers.insert(LinkId(link), r);
                }
            }
            m
        })
}

proptest! {
    #[test]
    fn a_plan_forwards_the_front_that_decide_forwards(
        m in arb_map(),
        link in 1u64..5,
        peer in prop::option::of(prop::sample::select(&NAMES[..])),
        headers in prop::collection::vec(arb_header(&NAMES), 1..12),
        cuts in prop::collection::vec(any::<bool>(), 12),
    ) {
        let at = Ingress {
            router: ME,
            link: LinkId(link),
            peer: peer.map_or(Peer::Endpoint, Peer::Router),
        };
        let pdus: Vec<Bytes> = headers
            .iter()
            .zip(0..)
            .map(|(h, i)| Pdu::new(with_seq(*h, i), Bytes::from(vec![1; 3])).expect("small").to_bytes())
            .collect();
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 0..pdus.len() {
            if cuts[i] || i + 1 == pdus.len() {
                runs.push(run(&pdus[start..=i]));
                start = i + 1;
            }
        }
        // What decide says, PDU by PDU.
        let mut expected = Vec::new();
        let mut stop = None;
        for h in &headers {
            match decide(&m, &at, h) {
                Verdict::Forward(hop) => expected.push(hop),
                Verdict::Core(r) => {
                    stop = Some(Handoff::Core(r));
                    break;
                }
            }
        }
        let mut plan = ReadPlan::new(&m, at, &runs);
        let (stretches, handoff) = plan_all(&mut plan);
        prop_assert_eq!(handoff, stop);
        let mut got = Vec::new();
        let mut bytes = Vec::new();
        for (i, s) in stretches.iter().enumerate() {
            if i > 0 {
                prop_assert_ne!(stretches[i - 1].hop(), s.hop());
            }
            got.extend(std::iter::repeat_n(s.hop(), s.pdus()));
            bytes.extend(s.parts().iter().flat_map(|p| p.to_vec()));
        }
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(bytes, pdus[..expected.len()].concat());
    }
}
