//! The fast path in the simulation: routers' link readers forward what the
//! core's `ReadPlan` forwards, and leave the rest to the core. Each test
//! asserts how many PDUs took the fast path and that nothing else changed:
//! the same deliveries, NAKs and counters as with every PDU through the
//! core.

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Kind, Name};
use gdp_proto::pdu::{DEFAULT_TTL, Pdu, PduHeader};
use gdp_proto::{Flags, PduType};
use gdp_router::core::{PeeringPolicy, Stats};
use gdp_router::sim::{EndpointId, Network, ReceivedNak};

use super::{SECOND, attached, name, overlay, send};

/// Queues `n` Data PDUs from `from` to `to` and sends them as one batch
/// (one read at the router).
fn burst(net: &mut Network, from: EndpointId, to: Name, n: usize) {
    for _ in 0..n {
        net.endpoint_mut(from)
            .send_data(to, Bytes::from_static(b"burst"))
            .expect("small payload");
    }
    net.flush_endpoint(from);
}

#[test]
fn pdus_take_the_fast_path_once_the_route_is_known() {
    let (mut net, routers) = overlay(3, |_| {});
    let (r0, r2) = (routers[0], routers[2]);
    let client = attached(&mut net, Kind::Client, "client", r0);
    let server = attached(&mut net, Kind::Server, "echo", r2);
    net.endpoint_mut(server).set_echo(true);
    let (c, s) = (name(&net, client), name(&net, server));

    // The first PDU waits for a lookup and a dial, in the core, and so does
    // its echo at the server's router.
    send(&mut net, client, s, b"first");
    net.run_for(SECOND);
    assert_eq!(net.endpoint(client).data_from(s).count(), 1);
    // Only its last hops, to endpoints whose routers knew them already.
    assert_eq!(net.fast_forwarded_by(r2), 1);
    assert_eq!(net.fast_forwarded_by(r0), 1);
    let before = [r0, r2].map(|r| net.router(r).stats().clone());

    // Now every route is known and sealed: a burst and its echoes cross
    // both routers on their link readers alone.
    burst(&mut net, client, s, 20);
    net.run_for(SECOND);
    assert_eq!(net.endpoint(server).data_from(c).count(), 21);
    assert_eq!(net.endpoint(client).data_from(s).count(), 21);
    assert!(
        net.endpoint(server)
            .data_from(c)
            .all(|p| p.header.ttl == DEFAULT_TTL - 1)
    );
    // Each router: 20 PDUs out towards the other router, 20 delivered to
    // its endpoint.
    for (i, r) in [r0, r2].into_iter().enumerate() {
        assert_eq!(net.fast_forwarded_by(r), 1 + 40);
        let stats = net.router(r).stats();
        assert_eq!(stats.forwarded, before[i].forwarded + 40);
        assert_eq!(stats.cache_hits, before[i].cache_hits + 40);
        assert_eq!(stats.delivered_local, before[i].delivered_local + 20);
        assert_eq!(stats.lookups, before[i].lookups);
    }
    assert_eq!(net.fast_forwarded_by(routers[1]), 0);
}

#[test]
fn a_read_is_left_to_the_core_from_its_first_spoofed_pdu_on() {
    let (mut net, routers) = overlay(1, |_| {});
    let a = attached(&mut net, Kind::Client, "a", routers[0]);
    let b = attached(&mut net, Kind::Client, "b", routers[0]);
    let (an, bn) = (name(&net, a), name(&net, b));
    // Two honest PDUs, one claiming to come from b, two honest again: one
    // read.
    for (i, src) in [an, an, bn, an, an].into_iter().enumerate() {
        let seq = net.endpoint_mut(a).next_seq();
        let h = PduHeader::new(PduType::Data, bn, src, seq);
        let pdu =
            Pdu::new(h, Bytes::from(vec![u8::try_from(i).expect("small"); 4])).expect("small");
        net.endpoint_mut(a).send_pdu(&pdu);
    }
    net.flush_endpoint(a);
    net.run_for(SECOND);

    // The reader took the two before the spoofed one; the core dropped
    // that one and forwarded the rest, in order.
    assert_eq!(net.fast_forwarded(), 2);
    let stats = net.router(routers[0]).stats();
    assert_eq!(stats.dropped.bad_source, 1);
    assert_eq!(stats.forwarded, 4);
    let got: Vec<u8> = net
        .endpoint(b)
        .data_from(an)
        .map(|p| p.payload[0])
        .collect();
    assert_eq!(got, vec![0, 1, 3, 4]);
}

#[test]
fn readers_see_a_new_route_only_once_the_router_has_flushed() {
    // Routers linked by hand that trust each other: no lookup to vouch.
    let (mut net, routers) = overlay(3, |cfg| {
        cfg.router.peering = PeeringPolicy::InsecureOpen;
    });
    let (r1, r2) = (routers[1], routers[2]);
    let link = net.link_routers(r1, r2);
    let client = attached(&mut net, Kind::Client, "client", r1);
    let server = attached(&mut net, Kind::Server, "server", r2);
    let (c, s) = (name(&net, client), name(&net, server));
    // A static route to the server, written straight into r1's core.
    let until = net.now().saturating_add(Duration::from_secs(60));
    let now = net.now();
    net.router_mut(r1)
        .install_route(now, s, link, until)
        .expect("router link");

    // Not flushed yet: the entry is not sealed, r1's core forwards.
    send(&mut net, client, s, b"one");
    net.run_for(SECOND);
    assert_eq!(net.fast_forwarded_by(r1), 0);
    assert_eq!(net.router(r1).stats().forwarded, 1);
    assert_eq!(net.router(r1).stats().lookups, 0);

    // r1 flushed after that PDU, sealing the entry: its reader forwards.
    send(&mut net, client, s, b"two");
    net.run_for(SECOND);
    assert_eq!(net.fast_forwarded_by(r1), 1);
    assert_eq!(net.router(r1).stats().forwarded, 2);
    assert_eq!(net.endpoint(server).data_from(c).count(), 2);
}

#[test]
fn a_loop_on_the_fast_path_still_ends_by_the_ttl() {
    // Peers that check no sources (between vouched peers, the source check
    // cuts the loop first), in a ring of three (between two, the second
    // router never sends a PDU back where it came from).
    let (mut net, routers) = overlay(3, |cfg| {
        cfg.router.peering = PeeringPolicy::InsecureOpen;
    });
    let ghost = Name::from_bytes([0x66; 32]);
    let client = super::ring_loop(&mut net, &routers, ghost);
    send(&mut net, client, ghost, b"round and round");
    net.run_for(2 * SECOND);

    let stats: Vec<_> = routers.iter().map(|r| net.router(*r).stats()).collect();
    // DEFAULT_TTL router hops, all but the first (from the client's
    // endpoint link, whose source the core checks first) on a link reader;
    // the PDU that arrives with nothing left is the core's to drop.
    let forwarded: u64 = stats.iter().map(|s| s.forwarded).sum();
    assert_eq!(forwarded, u64::from(DEFAULT_TTL));
    assert_eq!(net.fast_forwarded(), u64::from(DEFAULT_TTL));
    assert_eq!(stats.iter().map(|s| s.dropped.ttl).sum::<u64>(), 1);
}

/// What a run leaves behind: every endpoint's deliveries and NAKs, every
/// router's counters.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    received: Vec<Vec<Pdu>>,
    naks: Vec<Vec<ReceivedNak>>,
    stats: Vec<Stats>,
}

/// A busy run over six routers and a gateway chain: streams both ways,
/// echoes, a capsule, its withdrawal, pings, spoofed sources, unreliable
/// PDUs with loss, a router lost mid-run. Returns what it left, and how
/// many PDUs took the fast path.
fn busy(fast_path: bool) -> (Outcome, u64) {
    let (mut net, routers) = overlay(6, |cfg| {
        cfg.seed = 7;
        cfg.loss = 0.1;
        cfg.fast_path = fast_path;
    });
    let gw = net.add_private_router(routers[5]);
    let mut eps: Vec<EndpointId> = routers
        .iter()
        .enumerate()
        .map(|(i, r)| attached(&mut net, Kind::Client, &format!("c{i}"), *r))
        .collect();
    let hidden = attached(&mut net, Kind::Server, "hidden", gw);
    let store = attached(&mut net, Kind::Server, "store", routers[2]);
    net.endpoint_mut(hidden).set_echo(true);
    net.endpoint_mut(store).set_echo(true);
    eps.extend([hidden, store]);
    let cap = net.new_capsule("log");
    let entry = cap.entry(name(&net, store));
    net.endpoint_mut(store)
        .advertise(vec![entry])
        .expect("small");
    net.run_for(SECOND);

    let spoof = name(&net, eps[4]);
    for round in 0..6u64 {
        for (i, &e) in eps[..6].iter().enumerate() {
            let dst = match (i + usize::try_from(round).expect("small")) % 4 {
                0 => name(&net, hidden),
                1 => cap.name(),
                2 => name(&net, eps[(i + 1) % 6]),
                _ => net.router_name(routers[(i + 2) % 6]),
            };
            let ptype = if dst == net.router_name(routers[(i + 2) % 6]) {
                PduType::Ping
            } else {
                PduType::Data
            };
            for k in 0..4u64 {
                let seq = net.endpoint_mut(e).next_seq();
                let src = if i == 1 && k == 2 {
                    spoof
                } else {
                    name(&net, e)
                };
                let flags = if k == 3 && round % 2 == 0 {
                    Flags::UNRELIABLE
                } else {
                    Flags::EMPTY
                };
                let h = PduHeader::new(ptype, dst, src, seq).with_flags(flags);
                let pdu = Pdu::new(h, Bytes::from(vec![u8::try_from(k).expect("small"); 16]))
                    .expect("small");
                net.endpoint_mut(e).send_pdu(&pdu);
            }
            net.flush_endpoint(e);
        }
        net.run_for(Duration::from_millis(300));
        if round == 2 {
            net.endpoint_mut(store)
                .withdraw(&[cap.name()])
                .expect("small");
        }
        if round == 4 {
            net.kill_router(routers[3]);
        }
    }
    net.run_for(10 * SECOND);
    let outcome = Outcome {
        received: eps
            .iter()
            .map(|e| net.endpoint(*e).received().to_vec())
            .collect(),
        naks: eps.iter().map(|e| net.endpoint(*e).naks()).collect(),
        stats: net
            .router_ids()
            .map(|r| net.router(r).stats().clone())
            .collect(),
    };
    (outcome, net.fast_forwarded())
}

#[test]
fn results_are_the_same_with_the_fast_path_on_and_off() {
    let (on, fast) = busy(true);
    let (off, none) = busy(false);
    assert_eq!(none, 0);
    assert!(fast > 100, "{fast} PDUs on the fast path");
    // Something of everything happened.
    let total = |f: fn(&Stats) -> u64| off.stats.iter().map(f).sum::<u64>();
    assert!(total(|s| s.pongs_sent) > 0);
    assert!(total(|s| s.dropped.bad_source) > 0);
    assert!(total(|s| s.naks_sent) > 0);
    assert!(total(|s| s.delivered_local) > fast / 2);
    assert_eq!(on, off);
}
