//! Deterministic multi-router simulations of the forwarding core.
//!
//! Every test builds an overlay of router cores with `gdp_router::sim`
//! (virtual time, in-memory links and directory, one seed) and asserts the
//! specific counters the behaviour under test must move. Routing behaviour
//! is tested here; hostile inputs (bad certificates and records, spoofing,
//! malformed PDUs, peering policy) in [`security`]; per-peer limits under
//! hostile peers (unproven links, links per peer, forged advertisements,
//! lookup storms) in [`limits`]; the routers' link readers forwarding on
//! their own (the fast path, on by default) in [`fast_path`]; the routers'
//! delivery trees (joins, one copy per member link, leases, re-joins,
//! limits, forged senders) with opaque records in [`trees`]; a capsule's
//! records through delivery trees to a thousand verifying subscribers, with
//! faults mid-tree, in [`stream`].

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{RouteRecord, RouteTarget};
use gdp_certs::codec::Decode;
use gdp_certs::{Kind, Name, Timestamp};
use gdp_proto::control::NakReason;
use gdp_proto::pdu::{DEFAULT_TTL, Pdu, PduHeader};
use gdp_proto::{Flags, PduType};
use gdp_router::core::{LinkRole, PeeringPolicy, RouteKind};
use gdp_router::sim::{AttachState, EndpointId, NetConfig, Network, RouterId};

#[path = "simulation/fast_path.rs"]
mod fast_path;
#[path = "simulation/limits.rs"]
mod limits;
#[path = "simulation/security.rs"]
mod security;
#[path = "simulation/stream.rs"]
mod stream;
#[path = "simulation/trees.rs"]
mod trees;

const SECOND: Duration = Duration::from_secs(1);

/// A network of `n` public routers with the default simulation settings,
/// adjusted by `edit`.
fn overlay(n: usize, edit: impl FnOnce(&mut NetConfig)) -> (Network, Vec<RouterId>) {
    let mut cfg = NetConfig::default();
    edit(&mut cfg);
    let mut net = Network::new(cfg);
    let routers = (0..n).map(|_| net.add_router()).collect();
    (net, routers)
}

/// Adds an endpoint of `kind` attached to `router` and lets it attach.
fn attached(net: &mut Network, kind: Kind, label: &str, router: RouterId) -> EndpointId {
    let e = net.add_endpoint(kind, label);
    net.attach(e, router);
    net.run_for(SECOND);
    assert_eq!(net.endpoint(e).state(), AttachState::Attached);
    e
}

/// Queues a Data PDU from `from` to `to` and sends it.
fn send(net: &mut Network, from: EndpointId, to: Name, payload: &'static [u8]) -> u64 {
    let seq = net
        .endpoint_mut(from)
        .send_data(to, payload)
        .expect("small payload");
    net.flush_endpoint(from);
    seq
}

fn name(net: &Network, e: EndpointId) -> Name {
    net.endpoint(e).name()
}

#[test]
fn endpoints_attach_and_their_records_are_published() {
    let (mut net, routers) = overlay(10, |_| {});
    let eps: Vec<EndpointId> = routers
        .iter()
        .enumerate()
        .map(|(i, r)| attached(&mut net, Kind::Client, &format!("client-{i}"), *r))
        .collect();
    for (r, e) in routers.iter().zip(&eps) {
        let core = net.router(*r);
        assert_eq!(core.stats().attaches, 1);
        assert_eq!(core.stats().attach_failures, 0);
        let link = net.endpoint(*e).link().expect("linked");
        let info = core.link_info(link).expect("known link");
        assert_eq!(info.role, LinkRole::Endpoint);
        assert_eq!(info.peer, Some(name(&net, *e)));
        assert_eq!(
            core.fib()
                .lookup(&name(&net, *e), net.now())
                .map(|f| f.kind),
            Some(RouteKind::Local)
        );
        // The router's own record and the endpoint's, each verifiable.
        let now = net.now();
        for n in [net.router_name(*r), name(&net, *e)] {
            let raw = net.directory().records(&n, now);
            assert_eq!(raw.len(), 1);
            let rec = RouteRecord::decode(raw[0].clone()).expect("decodes");
            let v = rec.verify(&n, now).expect("verifies");
            assert_eq!(v.router_name(), net.router_name(*r));
        }
        assert_eq!(core.stats().records_published, 2);
    }
}

#[test]
fn servers_advertise_capsules_with_verified_adcerts() {
    let (mut net, routers) = overlay(10, |_| {});
    let server = attached(&mut net, Kind::Server, "store", routers[3]);
    let caps = [net.new_capsule("a"), net.new_capsule("b")];
    let entries = caps.iter().map(|c| c.entry(name(&net, server))).collect();
    net.endpoint_mut(server)
        .advertise(entries)
        .expect("small advertise");
    net.run_for(SECOND);

    let core = net.router(routers[3]);
    assert_eq!(core.stats().capsules_advertised, 2);
    assert_eq!(core.stats().adcerts_rejected, 0);
    let link = net.endpoint(server).link().expect("linked");
    assert_eq!(core.link_info(link).map(|i| i.advertised), Some(2));
    let now = net.now();
    for c in &caps {
        let raw = net.directory().records(&c.name(), now);
        assert_eq!(raw.len(), 1);
        let v = RouteRecord::decode(raw[0].clone())
            .expect("decodes")
            .verify(&c.name(), now)
            .expect("verifies");
        assert!(matches!(v.target(), RouteTarget::Capsule { .. }));
        assert_eq!(
            core.fib().lookup(&c.name(), now).map(|e| e.next_hop),
            Some(link)
        );
    }
}

#[test]
fn pdus_cross_the_overlay_and_replies_come_back() {
    let (mut net, routers) = overlay(10, |_| {});
    let client = attached(&mut net, Kind::Client, "client", routers[1]);
    let server = attached(&mut net, Kind::Server, "echo", routers[9]);
    net.endpoint_mut(server).set_echo(true);
    let (c, s) = (name(&net, client), name(&net, server));

    let seqs: Vec<u64> = (0..5).map(|_| send(&mut net, client, s, b"ping")).collect();
    net.run_for(SECOND);

    let got: Vec<u64> = net
        .endpoint(server)
        .data_from(c)
        .map(|p| p.header.seq)
        .collect();
    assert_eq!(got, seqs);
    // One router hop: router 1 decremented the TTL once.
    assert!(
        net.endpoint(server)
            .data_from(c)
            .all(|p| p.header.ttl == DEFAULT_TTL - 1)
    );
    let replies: Vec<&Pdu> = net.endpoint(client).data_from(s).collect();
    assert_eq!(replies.len(), 5);
    assert!(
        replies
            .iter()
            .all(|p| p.header.flags.contains(Flags::RESPONSE))
    );

    let r1 = net.router(routers[1]).stats().clone();
    // Five PDUs waited for one lookup and one dial.
    assert_eq!(r1.lookups, 1);
    assert_eq!(r1.dials, 1);
    assert_eq!(r1.cache_misses, 5);
    assert_eq!(r1.bad_records, 0);
    assert_eq!(net.router(routers[9]).stats().delivered_local, 5);

    // The route is cached now: the next PDU neither looks up nor waits.
    send(&mut net, client, s, b"again");
    net.run_for(SECOND);
    let r1b = net.router(routers[1]).stats();
    assert_eq!(r1b.lookups, 1);
    assert_eq!(r1b.cache_misses, r1.cache_misses);
    // The PDU out, and the echo back to the local client.
    assert_eq!(r1b.cache_hits, r1.cache_hits + 2);
    assert_eq!(net.endpoint(server).data_from(c).count(), 6);
}

#[test]
fn a_gateway_chain_of_three_router_hops() {
    let (mut net, routers) = overlay(10, |_| {});
    // G1 is public; G2 sits behind G1; R3 sits behind G2.
    let g1 = routers[5];
    let g2 = net.add_private_router(g1);
    let r3 = net.add_private_router(g2);
    let client = attached(&mut net, Kind::Client, "client", routers[1]);
    let server = attached(&mut net, Kind::Server, "hidden", r3);
    net.endpoint_mut(server).set_echo(true);
    let (c, s) = (name(&net, client), name(&net, server));

    // R3's record names no address, only its gateway.
    let now = net.now();
    let rec = RouteRecord::decode(net.directory().records(&s, now)[0].clone())
        .expect("decodes")
        .verify(&s, now)
        .expect("verifies");
    assert!(rec.addresses().is_empty());
    assert_eq!(rec.via(), Some(net.router_name(g2)));

    send(&mut net, client, s, b"through the gateways");
    net.run_for(2 * SECOND);

    let got: Vec<&Pdu> = net.endpoint(server).data_from(c).collect();
    assert_eq!(got.len(), 1);
    // Router 1 -> G1 -> G2 -> R3: three router hops.
    assert_eq!(got[0].header.ttl, DEFAULT_TTL - 3);
    assert_eq!(net.endpoint(client).data_from(s).count(), 1);
    for hop in [g1, g2, r3] {
        assert!(net.router(hop).stats().forwarded >= 1);
    }
    // Router 1 resolved the chain: the server's name, G2's and G1's; and
    // looked up R3's own record when R3 dialled it to answer (R3 is no
    // trusted peer of router 1: the directory vouches for it).
    assert_eq!(net.router(routers[1]).stats().lookups, 4);
    assert_eq!(net.router(routers[1]).stats().lookup_failures, 0);
}

#[test]
fn a_withdrawn_capsule_becomes_unreachable() {
    let (mut net, routers) = overlay(10, |_| {});
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let server = attached(&mut net, Kind::Server, "store", routers[9]);
    let cap = net.new_capsule("log");
    let entry = cap.entry(name(&net, server));
    net.endpoint_mut(server)
        .advertise(vec![entry])
        .expect("small");
    net.run_for(SECOND);

    send(&mut net, client, cap.name(), b"first");
    net.run_for(SECOND);
    assert_eq!(
        net.endpoint(server)
            .received()
            .iter()
            .filter(|p| p.header.dst == cap.name())
            .count(),
        1
    );

    net.endpoint_mut(server)
        .withdraw(&[cap.name()])
        .expect("small");
    net.run_for(SECOND);
    let now = net.now();
    assert!(
        !net.directory()
            .has_record(&cap.name(), &net.router_name(routers[9]), now)
    );
    assert_eq!(
        net.router(routers[9])
            .link_info(net.endpoint(server).link().expect("linked"))
            .map(|i| i.advertised),
        Some(0)
    );

    let before = net.router(routers[9]).stats().clone();
    let seq = send(&mut net, client, cap.name(), b"second");
    net.run_for(3 * SECOND);
    let naks = net.endpoint(client).naks();
    assert_eq!(naks.len(), 1);
    assert_eq!(naks[0].unreachable, cap.name());
    assert_eq!(naks[0].reason, NakReason::Moved);
    assert_eq!(naks[0].seq, seq);
    let after = net.router(routers[9]).stats();
    // Router 0 still had the capsule cached towards router 9, which knows
    // the capsule left it and answered at once, without a lookup (the
    // route to the client was known: router 9 resolved it when the first
    // PDU's source was checked).
    assert_eq!(after.lookups, before.lookups);
    assert_eq!(after.departed_naks, before.departed_naks + 1);
    assert_eq!(after.dropped.no_route, before.dropped.no_route + 1);
    assert_eq!(after.naks_sent, before.naks_sent + 1);
    assert_eq!(naks[0].from, net.router_name(routers[9]));
    // Router 0 dropped its stale route as the NAK passed: the next PDU is
    // looked up afresh, fails, and is answered by router 0 itself.
    assert_eq!(net.router(routers[0]).stats().routes_dropped_by_nak, 1);
    send(&mut net, client, cap.name(), b"third");
    net.run_for(3 * SECOND);
    let naks = net.endpoint(client).naks();
    assert_eq!(naks.len(), 2);
    assert_eq!(naks[1].from, net.router_name(routers[0]));
}

#[test]
fn republishing_keeps_records_alive_and_unrepublished_ones_expire() {
    let record_ttl = Duration::from_secs(30);
    let (mut net, routers) = overlay(10, |cfg| {
        cfg.router.record_ttl = record_ttl;
        cfg.router.cache_ttl = Duration::from_secs(10);
    });
    let client = attached(&mut net, Kind::Client, "client", routers[2]);
    let server = attached(&mut net, Kind::Server, "store", routers[8]);
    let s = name(&net, server);
    let r8 = net.router_name(routers[8]);

    // Ten record lifetimes; the client keeps reaching the server, whose
    // record is always there.
    for round in 0..20u64 {
        net.run_for(Duration::from_secs(15));
        let now = net.now();
        assert!(net.directory().has_record(&s, &r8, now), "round {round}");
        send(&mut net, client, s, b"still there?");
    }
    net.run_for(SECOND);
    assert_eq!(
        net.endpoint(server).data_from(name(&net, client)).count(),
        20
    );
    assert!(net.endpoint(client).naks().is_empty());
    // Republished every 20 s over 300 s, plus the first publication.
    let published = net.router(routers[8]).stats().records_published;
    assert!(published >= 2 * 15, "published {published}");
    // The client's router had to look the server up again as its cache
    // expired, and every lookup succeeded.
    let r2 = net.router(routers[2]).stats();
    assert!(r2.lookups >= 10, "lookups {}", r2.lookups);
    assert_eq!(r2.lookup_failures, 0);

    // Router 8 dies: nobody republishes, and after one lifetime the
    // directory has nothing left for the server.
    net.kill_router(routers[8]);
    net.run_for(record_ttl + SECOND);
    let now = net.now();
    assert!(net.directory().records(&s, now).is_empty());
    let before = net.router(routers[2]).stats().clone();
    let seq = send(&mut net, client, s, b"gone?");
    net.run_for(3 * SECOND);
    let after = net.router(routers[2]).stats();
    assert_eq!(after.lookups, before.lookups + 1);
    assert_eq!(after.lookup_failures, before.lookup_failures + 1);
    assert_eq!(after.bad_records, before.bad_records);
    let naks = net.endpoint(client).naks();
    assert_eq!(naks.len(), 1);
    assert_eq!((naks[0].unreachable, naks[0].seq), (s, seq));
}

#[test]
fn a_router_lost_mid_stream_reroutes_to_a_replica_then_naks() {
    let (mut net, routers) = overlay(10, |_| {});
    let client = attached(&mut net, Kind::Client, "client", routers[1]);
    let a = attached(&mut net, Kind::Server, "replica-a", routers[5]);
    let b = attached(&mut net, Kind::Server, "replica-b", routers[7]);
    let cap = net.new_capsule("replicated");
    for s in [a, b] {
        let entry = cap.entry(name(&net, s));
        net.endpoint_mut(s).advertise(vec![entry]).expect("small");
    }
    net.run_for(SECOND);
    let delivered = |net: &Network, e: EndpointId| {
        net.endpoint(e)
            .received()
            .iter()
            .filter(|p| p.header.dst == cap.name())
            .count()
    };

    // Stream for a while: one replica gets everything.
    for _ in 0..10 {
        send(&mut net, client, cap.name(), b"tick");
        net.run_for(Duration::from_millis(100));
    }
    let (first, first_router, second, second_router) = if delivered(&net, a) > 0 {
        (a, routers[5], b, routers[7])
    } else {
        (b, routers[7], a, routers[5])
    };
    assert_eq!(delivered(&net, first), 10);
    assert_eq!(delivered(&net, second), 0);

    // Its router dies mid-stream: traffic through it stops, and after a
    // failed dial to the dead router the stream resumes at the other replica.
    net.kill_router(first_router);
    for _ in 0..10 {
        send(&mut net, client, cap.name(), b"tock");
        net.run_for(Duration::from_millis(100));
    }
    net.run_for(SECOND);
    assert_eq!(delivered(&net, first), 10);
    assert!(
        delivered(&net, second) >= 8,
        "got {}",
        delivered(&net, second)
    );
    let r1 = net.router(routers[1]).stats();
    assert!(r1.dial_failures >= 1);
    assert_eq!(r1.lookup_failures, 0);

    // With both replicas gone there is no path left: NAKs.
    net.kill_router(second_router);
    net.run_for(SECOND);
    let before = net.endpoint(client).naks().len();
    let seq = send(&mut net, client, cap.name(), b"anyone?");
    net.run_for(6 * SECOND);
    let naks = net.endpoint(client).naks();
    assert_eq!(naks.len(), before + 1);
    assert_eq!(
        naks.last().map(|n| (n.unreachable, n.seq)),
        Some((cap.name(), seq))
    );
    assert!(net.router(routers[1]).stats().lookup_failures >= 1);
}

#[test]
fn losing_a_gateway_cuts_the_chain_with_naks() {
    let (mut net, routers) = overlay(10, |_| {});
    let g1 = routers[4];
    let g2 = net.add_private_router(g1);
    let r3 = net.add_private_router(g2);
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let server = attached(&mut net, Kind::Server, "hidden", r3);
    let s = name(&net, server);
    send(&mut net, client, s, b"one");
    net.run_for(2 * SECOND);
    assert_eq!(
        net.endpoint(server).data_from(name(&net, client)).count(),
        1
    );

    // G2 dies. G1 drops what it learned through G2, and nothing else leads
    // to R3: the next PDU is answered with a NAK from G1.
    net.kill_router(g2);
    net.run_for(SECOND);
    let seq = send(&mut net, client, s, b"two");
    net.run_for(3 * SECOND);
    assert_eq!(
        net.endpoint(server).data_from(name(&net, client)).count(),
        1
    );
    let naks = net.endpoint(client).naks();
    assert_eq!(naks.len(), 1);
    assert_eq!((naks[0].unreachable, naks[0].seq), (s, seq));
    assert_eq!(naks[0].from, net.router_name(g1));
    // G1 failed to resolve the server's name and its gateway G2 (whose
    // record names G1 itself as the way in).
    assert_eq!(net.router(g1).stats().lookup_failures, 2);
}

#[test]
fn a_restarted_gateway_carries_the_chain_again() {
    let (mut net, routers) = overlay(10, |_| {});
    let g1 = routers[4];
    let g2 = net.add_private_router(g1);
    let r3 = net.add_private_router(g2);
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let server = attached(&mut net, Kind::Server, "hidden", r3);
    let s = name(&net, server);
    send(&mut net, client, s, b"one");
    net.run_for(2 * SECOND);

    // G2 crashes and comes back as a fresh process: R3 dials its gateway
    // again and republishes, G1 and the client's router learn the way
    // anew, and the chain carries PDUs again.
    net.kill_router(g2);
    net.run_for(SECOND);
    net.restart_router(g2);
    assert_eq!(
        net.router(g2).stats().attaches,
        0,
        "nothing survives a restart"
    );
    net.run_for(30 * SECOND);
    send(&mut net, client, s, b"two");
    net.run_for(3 * SECOND);
    let got: Vec<&[u8]> = net
        .endpoint(server)
        .data_from(name(&net, client))
        .map(|p| &p.payload[..])
        .collect();
    assert_eq!(got, [&b"one"[..], &b"two"[..]]);
    assert!(net.router(g2).router_link(&net.router_name(r3)).is_some());
}

/// Three routers linked in a ring, each with a static route for `ghost`
/// to the next (a loop no single router can see), and a client on the
/// first.
fn ring_loop(net: &mut Network, routers: &[RouterId], ghost: Name) -> EndpointId {
    let links: Vec<_> = (0..routers.len())
        .map(|i| net.link_routers(routers[i], routers[(i + 1) % routers.len()]))
        .collect();
    let client = attached(net, Kind::Client, "client", routers[0]);
    let until = net.now().saturating_add(Duration::from_secs(60));
    for (r, link) in routers.iter().zip(links) {
        let now = net.now();
        net.router_mut(*r)
            .install_route(now, ghost, link, until)
            .expect("router link");
        net.flush_router(*r);
    }
    client
}

#[test]
fn a_forwarding_loop_is_ended_by_the_ttl() {
    // Peers that check no sources: between vouched peers the loop is cut
    // sooner, by the source check (see security.rs).
    let (mut net, routers) = overlay(3, |cfg| {
        cfg.router.peering = PeeringPolicy::InsecureOpen;
    });
    let ghost = Name::from_bytes([0x66; 32]);
    let client = ring_loop(&mut net, &routers, ghost);
    send(&mut net, client, ghost, b"round and round");
    net.run_for(2 * SECOND);

    let stats: Vec<_> = routers.iter().map(|r| net.router(*r).stats()).collect();
    // The PDU took DEFAULT_TTL router hops, then died.
    let forwarded: u64 = stats.iter().map(|s| s.forwarded).sum();
    assert_eq!(forwarded, u64::from(DEFAULT_TTL));
    assert_eq!(stats.iter().map(|s| s.dropped.ttl).sum::<u64>(), 1);
    assert_eq!(stats.iter().map(|s| s.lookups).sum::<u64>(), 0);
    assert!(net.endpoint(client).naks().is_empty());
}

#[test]
fn a_route_back_to_the_sending_router_is_not_taken() {
    // Two routers whose stale routes point at each other: the second one
    // does not send the PDU back, and answers it instead.
    let (mut net, routers) = overlay(3, |cfg| {
        cfg.router.peering = PeeringPolicy::InsecureOpen;
    });
    let (r1, r2) = (routers[1], routers[2]);
    let link = net.link_routers(r1, r2);
    let client = attached(&mut net, Kind::Client, "client", r1);
    let ghost = Name::from_bytes([0x66; 32]);
    let until = net.now().saturating_add(Duration::from_secs(60));
    for r in [r1, r2] {
        let now = net.now();
        net.router_mut(r)
            .install_route(now, ghost, link, until)
            .expect("router link");
        net.flush_router(r);
    }
    let seq = send(&mut net, client, ghost, b"round and round");
    net.run_for(2 * SECOND);

    let (s1, s2) = (net.router(r1).stats(), net.router(r2).stats());
    assert_eq!(s2.hairpins, 1);
    assert_eq!(s1.dropped.ttl + s2.dropped.ttl, 0);
    let naks = net.endpoint(client).naks();
    assert_eq!(naks.len(), 1);
    assert_eq!((naks[0].unreachable, naks[0].seq), (ghost, seq));
    assert_eq!(naks[0].from, net.router_name(r2));
    // A static route is the operator's: the NAK did not remove it.
    assert_eq!(s1.routes_dropped_by_nak, 0);
}

#[test]
fn routers_answer_pings() {
    let (mut net, routers) = overlay(10, |_| {});
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let r7 = net.router_name(routers[7]);
    let seq = net
        .endpoint_mut(client)
        .send(PduType::Ping, r7, Bytes::from_static(b"echo me"))
        .expect("small");
    net.flush_endpoint(client);
    net.run_for(SECOND);
    let pong: Vec<&Pdu> = net
        .endpoint(client)
        .received()
        .iter()
        .filter(|p| p.header.ptype == PduType::Pong)
        .collect();
    assert_eq!(pong.len(), 1);
    assert_eq!((pong[0].header.src, pong[0].header.seq), (r7, seq));
    assert_eq!(&pong[0].payload[..], b"echo me");
    assert_eq!(net.router(routers[7]).stats().pongs_sent, 1);
}

/// Runs one busy scenario and returns every router's counters.
fn scenario(seed: u64) -> Vec<gdp_router::core::Stats> {
    let (mut net, routers) = overlay(10, |cfg| {
        cfg.seed = seed;
        cfg.loss = 0.2;
    });
    let clients: Vec<EndpointId> = routers
        .iter()
        .map(|r| attached(&mut net, Kind::Client, "c", *r))
        .collect();
    for (i, c) in clients.iter().enumerate() {
        let dst = name(&net, clients[(i + 3) % clients.len()]);
        for _ in 0..5 {
            let seq = net.endpoint_mut(*c).next_seq();
            let h = PduHeader::new(PduType::Data, dst, name(&net, *c), seq)
                .with_flags(Flags::UNRELIABLE);
            let pdu = Pdu::new(h, Bytes::from_static(b"maybe")).expect("small");
            net.endpoint_mut(*c).send_pdu(&pdu);
        }
        net.flush_endpoint(*c);
    }
    net.run_for(5 * SECOND);
    assert!(net.lost() > 0);
    routers
        .iter()
        .map(|r| net.router(*r).stats().clone())
        .collect()
}

#[test]
fn runs_repeat_exactly() {
    assert_eq!(scenario(11), scenario(11));
    assert_ne!(scenario(11), scenario(12));
}

#[test]
fn shutdown_unpublishes_everything() {
    let (mut net, routers) = overlay(10, |_| {});
    let server = attached(&mut net, Kind::Server, "store", routers[3]);
    let cap = net.new_capsule("c");
    let entry = cap.entry(name(&net, server));
    net.endpoint_mut(server)
        .advertise(vec![entry])
        .expect("small");
    net.run_for(SECOND);
    let now = net.now();
    net.router_mut(routers[3]).shutdown(now);
    net.flush_router(routers[3]);
    net.run_for(SECOND);
    let now = net.now();
    let r3 = net.router_name(routers[3]);
    for n in [r3, name(&net, server), cap.name()] {
        assert!(!net.directory().has_record(&n, &r3, now));
    }
    assert_eq!(net.endpoint(server).state(), AttachState::Detached);
    assert_eq!(net.router(routers[3]).stats().links_closed, 1);
}

#[test]
fn a_fresh_core_asks_to_start_then_sleeps_until_its_republish() {
    let (mut net, routers) = overlay(1, |_| {});
    assert_eq!(net.router(routers[0]).poll_timeout(), Some(Timestamp::ZERO));
    net.run_for(Duration::from_millis(1));
    let t = net
        .router(routers[0])
        .poll_timeout()
        .expect("a republish is due");
    // Two thirds of the default 300 s record lifetime after the start.
    assert_eq!(
        t,
        gdp_router::sim::SIM_START.saturating_add(Duration::from_secs(200))
    );
    assert_eq!(net.router(routers[0]).stats().records_published, 1);
}

/// The server `server` leaves its link `link` and attaches to `to`; the
/// client keeps sending to it every 250 ms for `secs` seconds. Returns
/// how many of those sends were echoed and the time from the move to the
/// first echo.
fn move_and_probe(
    net: &mut Network,
    client: EndpointId,
    server: EndpointId,
    link: gdp_router::core::LinkId,
    to: RouterId,
    secs: u64,
) -> (usize, Duration) {
    let s = name(net, server);
    let before = net.endpoint(client).data_from(s).count();
    let moved = net.now();
    move_server(net, server, link, to);
    let mut first = None;
    for _ in 0..secs * 4 {
        send(net, client, s, b"where are you");
        net.run_for(SECOND / 4);
        if first.is_none() && net.endpoint(client).data_from(s).count() > before {
            first = Some(net.now().since(moved));
        }
    }
    let echoed = net.endpoint(client).data_from(s).count() - before;
    (echoed, first.unwrap_or(Duration::MAX))
}

/// The server `server` leaves its link `link` and attaches to `to`.
fn move_server(
    net: &mut Network,
    server: EndpointId,
    link: gdp_router::core::LinkId,
    to: RouterId,
) {
    net.cut_link(link);
    net.run_for(SECOND / 10);
    net.attach(server, to);
    net.run_for(SECOND / 2);
    assert_eq!(net.endpoint(server).state(), AttachState::Attached);
}

/// No router on the way counted a violation or closed a router link.
fn assert_no_violations(net: &Network, routers: &[RouterId]) {
    for r in routers {
        let st = net.router(*r).stats();
        assert_eq!(st.dropped.bad_source, 0, "router {r:?} counted bad sources");
        assert_eq!(st.links_closed, 0, "router {r:?} closed a link");
    }
}

/// An echoing server attached to `from`, and the client's first exchange
/// with it (which leaves routes and grants to be outdated by a move).
fn echo_server_at(
    net: &mut Network,
    client: EndpointId,
    from: RouterId,
) -> (EndpointId, gdp_router::core::LinkId) {
    let server = net.add_endpoint(Kind::Server, "mover");
    let link = net.attach(server, from);
    net.run_for(SECOND);
    net.endpoint_mut(server).set_echo(true);
    let s = name(net, server);
    send(net, client, s, b"here");
    net.run_for(SECOND);
    assert_eq!(net.endpoint(client).data_from(s).count(), 1);
    (server, link)
}

#[test]
fn a_server_that_moves_behind_the_same_gateway_is_found_again_at_once() {
    let (mut net, routers) = overlay(2, |_| {});
    let g = routers[0];
    let (e1, e2, e3) = (
        net.add_private_router(g),
        net.add_private_router(g),
        net.add_private_router(g),
    );
    let client = attached(&mut net, Kind::Client, "client", e3);
    let (server, link) = echo_server_at(&mut net, client, e1);
    let (echoed, first) = move_and_probe(&mut net, client, server, link, e2, 10);
    assert!(first <= 3 * SECOND, "first echo {first:?} after the move");
    assert!(echoed >= 36, "{echoed} of 40 echoed");
    assert_no_violations(&net, &[g, e1, e2, e3]);
}

#[test]
fn a_server_that_moves_between_public_routers_is_found_again_at_once() {
    let (mut net, routers) = overlay(3, |_| {});
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let (server, link) = echo_server_at(&mut net, client, routers[1]);
    let (echoed, first) = move_and_probe(&mut net, client, server, link, routers[2], 10);
    assert!(first <= 3 * SECOND, "first echo {first:?} after the move");
    assert!(echoed >= 36, "{echoed} of 40 echoed");
    assert_no_violations(&net, &routers);
    // One NAK from the old router dropped the client's router's route.
    assert_eq!(net.router(routers[1]).stats().departed_naks, 1);
    assert_eq!(net.router(routers[0]).stats().routes_dropped_by_nak, 1);
}

#[test]
fn a_moved_server_that_speaks_first_is_not_taken_for_a_forger() {
    let (mut net, routers) = overlay(3, |_| {});
    let (r0, r2) = (routers[0], routers[2]);
    let client = attached(&mut net, Kind::Client, "client", r0);
    // The client's router learns where the server is (and whom that
    // entitles to send as it) from a first exchange.
    let (server, link) = echo_server_at(&mut net, client, routers[1]);
    let (c, s) = (name(&net, client), name(&net, server));

    // The server moves and pushes to the client before the client says
    // anything: its PDUs reach the client's router from a router its
    // grants do not name.
    move_server(&mut net, server, link, r2);
    for _ in 0..20 {
        send(&mut net, server, c, b"news");
        net.run_for(SECOND / 4);
    }
    let got = net.endpoint(client).data_from(s).count() - 1;
    assert_eq!(got, 20, "{got} of 20 pushes arrived");
    let st = net.router(r0).stats();
    assert_eq!(st.entitlement_rechecks, 1);
    assert_no_violations(&net, &routers);
}

#[test]
fn a_server_that_moves_away_from_its_clients_router_is_found_again_by_all() {
    // Core routers G1 and G2; E1 and E2 behind G1. The server starts on
    // E1, where one client is attached too; another client sits behind
    // G2. Both talk to the server, so G1 caches its route towards E1 and
    // E1 itself resolves it once the server has left.
    let (mut net, routers) = overlay(2, |_| {});
    let (g1, g2) = (routers[0], routers[1]);
    let (e1, e2) = (net.add_private_router(g1), net.add_private_router(g1));
    let e3 = net.add_private_router(g2);
    let near = attached(&mut net, Kind::Client, "near", e1);
    let far = attached(&mut net, Kind::Client, "far", e3);

    let (server, link) = echo_server_at(&mut net, near, e1);
    let s = name(&net, server);
    send(&mut net, far, s, b"here");
    net.run_for(SECOND);
    assert_eq!(net.endpoint(far).data_from(s).count(), 1);

    move_server(&mut net, server, link, e2);
    for _ in 0..40 {
        send(&mut net, near, s, b"near");
        send(&mut net, far, s, b"far");
        net.run_for(SECOND / 4);
    }
    for (who, label) in [(near, "near"), (far, "far")] {
        let echoed = net.endpoint(who).data_from(s).count() - 1;
        assert!(echoed >= 36, "{label}: {echoed} of 40 echoed");
    }
    assert_no_violations(&net, &[g1, g2, e1, e2, e3]);
    // G1's cached route led back to E1, which had resolved the server's
    // new place through G1: G1 looked the name up again.
    assert!(net.router(g1).stats().hairpins >= 1);
}
