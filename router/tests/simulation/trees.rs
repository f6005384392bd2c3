//! Delivery trees in the routers: joins aggregated per link, one copy of
//! each Publish per member link, leases, failures, limits and forged
//! senders. The records here are opaque bytes: routers never decode a
//! Publish (subscribers verify records themselves).

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::codec::Encode;
use gdp_certs::{Kind, Name};
use gdp_proto::PduType;
use gdp_proto::control::ControlMessage;
use gdp_proto::pdu::{Pdu, PduHeader};
use gdp_router::core::{LinkId, Rate};
use gdp_router::sim::{EndpointId, Network, RouterId, SimCapsule};

use super::{SECOND, attached, name, overlay};

/// A Publish PDU for `capsule` numbered `n`, from the capsule to itself.
fn publish(capsule: Name, n: u64) -> Pdu {
    let header = PduHeader::new(PduType::Publish, capsule, capsule, n);
    Pdu::new(header, Bytes::from(format!("record {n}"))).expect("small")
}

/// The `seq` of every Publish `e` received, in order.
fn publishes(net: &Network, e: EndpointId) -> Vec<u64> {
    net.endpoint(e)
        .received_of(PduType::Publish)
        .map(|p| p.header.seq)
        .collect()
}

/// The (`src`, type) of every Subscribe and Unsubscribe `e` received.
fn joins(net: &Network, e: EndpointId) -> Vec<(Name, PduType)> {
    net.endpoint(e)
        .received()
        .iter()
        .filter(|p| matches!(p.header.ptype, PduType::Subscribe | PduType::Unsubscribe))
        .map(|p| (p.header.src, p.header.ptype))
        .collect()
}

/// Sends Publish PDUs `from..=to` from `server`.
fn send_publishes(net: &mut Network, server: EndpointId, capsule: Name, from: u64, to: u64) {
    for n in from..=to {
        net.endpoint_mut(server).send_pdu(&publish(capsule, n));
    }
    net.flush_endpoint(server);
}

fn subscribe(net: &mut Network, e: EndpointId, capsule: Name) {
    net.endpoint_mut(e).subscribe(capsule).expect("small");
    net.flush_endpoint(e);
}

/// A capsule server attached to `router` advertising a fresh capsule.
fn server_on(net: &mut Network, router: RouterId) -> (EndpointId, SimCapsule) {
    let server = attached(net, Kind::Server, "store", router);
    let cap = net.new_capsule("stream");
    let entry = cap.entry(name(net, server));
    net.endpoint_mut(server)
        .advertise(vec![entry])
        .expect("small advertise");
    net.run_for(SECOND);
    (server, cap)
}

/// Pins `capsule` at `router` to the router link `link` for a day.
fn pin(net: &mut Network, router: RouterId, capsule: Name, link: LinkId) {
    let now = net.now();
    let day = now.saturating_add(Duration::from_secs(86_400));
    net.router_mut(router)
        .install_route(now, capsule, link, day)
        .expect("a ready router link");
    net.flush_router(router);
}

/// Three levels: router 0 holds the capsule's server; routers 1..=9 hang
/// off router 0 and routers 10..100 off them (ten each), each with a
/// static route for the capsule toward its parent; ten subscribers on
/// every router. The server sees one Subscribe, every record reaches every
/// subscriber once, in order, and every router sends one copy of each per
/// member link.
#[test]
fn a_thousand_subscribers_on_a_hundred_routers_get_each_record_once() {
    let (mut net, routers) = overlay(100, |_| {});
    let root = routers[0];
    let (server, cap) = server_on(&mut net, root);
    let capsule = cap.name();
    let parent = |i: usize| if i < 10 { 0 } else { 1 + (i - 10) % 9 };
    let uplinks: Vec<Option<LinkId>> = (0..100)
        .map(|i| (i > 0).then(|| net.link_routers(routers[i], routers[parent(i)])))
        .collect();
    net.run_for(SECOND);
    for i in 1..100 {
        let link = uplinks[i].expect("a parent");
        pin(&mut net, routers[i], capsule, link);
    }
    let subscribers: Vec<EndpointId> = (0..1_000)
        .map(|k| {
            let e = net.add_endpoint(Kind::Client, &format!("sub-{k}"));
            net.attach(e, routers[k % 100]);
            e
        })
        .collect();
    net.run_for(SECOND);
    for e in &subscribers {
        subscribe(&mut net, *e, capsule);
    }
    net.run_for(SECOND);

    // One join reached the server: its own router's.
    assert_eq!(
        joins(&net, server),
        vec![(net.router_name(root), PduType::Subscribe)]
    );
    let server_link = net.endpoint(server).link().expect("linked");
    for (i, r) in routers.iter().enumerate() {
        let tree = net.router(*r).tree(&capsule).expect("a tree");
        let children = match i {
            0 => 9,
            1..10 => 10,
            _ => 0,
        };
        assert_eq!(tree.members.len(), 10 + children, "router {i}");
        let upstream = if i == 0 {
            server_link
        } else {
            uplinks[i].expect("parent")
        };
        assert_eq!(tree.upstream, Some(upstream), "router {i}");
        let t = &net.router(*r).stats().trees;
        assert_eq!((t.trees, t.memberships), (1, 10 + children));
        assert_eq!(t.upstream_joins, 1, "router {i}");
        assert_eq!(t.refused(), 0);
    }

    const N: u64 = 50;
    send_publishes(&mut net, server, capsule, 1, N);
    net.run_for(SECOND);
    let all: Vec<u64> = (1..=N).collect();
    for e in &subscribers {
        assert_eq!(publishes(&net, *e), all);
    }
    for (i, r) in routers.iter().enumerate() {
        let t = &net.router(*r).stats().trees;
        let members = net.router(*r).tree(&capsule).map_or(0, |t| t.members.len());
        assert_eq!(t.publishes, N, "router {i}");
        assert_eq!(t.copies, N * members as u64, "router {i}");
        assert_eq!(
            (
                t.copies_queue_full,
                t.publish_no_tree,
                t.publish_not_upstream
            ),
            (0, 0, 0)
        );
    }
    // Three router hops at most: the TTL went down on the way.
    let leaf_sub = subscribers[10];
    let ttl = net
        .endpoint(leaf_sub)
        .received_of(PduType::Publish)
        .map(|p| p.header.ttl)
        .next();
    assert_eq!(ttl, Some(gdp_proto::pdu::DEFAULT_TTL - 2));
    assert!(
        net.router_ids()
            .all(|r| net.router(r).stats().dropped.total() == 0)
    );
}

/// Two routers: the server's (A) and B, pinned toward A; subscribers on B.
struct Line {
    net: Network,
    a: RouterId,
    b: RouterId,
    ab: LinkId,
    server: EndpointId,
    capsule: Name,
}

fn line() -> Line {
    let (mut net, routers) = overlay(2, |_| {});
    let (a, b) = (routers[0], routers[1]);
    let (server, cap) = server_on(&mut net, a);
    let ab = net.link_routers(b, a);
    net.run_for(SECOND);
    pin(&mut net, b, cap.name(), ab);
    Line {
        net,
        a,
        b,
        ab,
        server,
        capsule: cap.name(),
    }
}

#[test]
fn leases_run_out_without_refreshes_and_the_tree_leaves_upstream() {
    let Line {
        mut net,
        a,
        b,
        server,
        capsule,
        ..
    } = line();
    let keeps = attached(&mut net, Kind::Client, "keeps", b);
    let quits = attached(&mut net, Kind::Client, "quits", b);
    subscribe(&mut net, keeps, capsule);
    subscribe(&mut net, quits, capsule);
    net.run_for(SECOND);
    let start = net.now();

    // `keeps` refreshes every 10 s; `quits` never does. Meanwhile B and A
    // refresh upstream on their own.
    for _ in 0..3 {
        net.run_for(Duration::from_secs(10));
        subscribe(&mut net, keeps, capsule);
    }
    net.run_for(Duration::from_secs(2));
    assert!(net.now() > start.saturating_add(Duration::from_secs(30)));
    let tb = &net.router(b).stats().trees;
    assert_eq!(tb.pruned_lease, 1);
    assert_eq!(
        net.router(b).tree(&capsule).map(|t| t.members.len()),
        Some(1)
    );
    // A's membership for B stayed alive through B's refreshes.
    assert_eq!(net.router(a).stats().trees.pruned_lease, 0);
    let subs = joins(&net, server);
    assert!(subs.len() >= 3, "{subs:?}");
    assert!(
        subs.iter()
            .all(|j| *j == (net.router_name(a), PduType::Subscribe))
    );

    // `keeps` stops too: its lease runs out, B leaves A, A leaves the server.
    net.run_for(Duration::from_secs(31));
    assert_eq!(net.router(b).stats().trees.pruned_lease, 2);
    assert!(net.router(b).tree(&capsule).is_none());
    assert_eq!(net.router(a).stats().trees.pruned_unsubscribe, 1);
    assert!(net.router(a).tree(&capsule).is_none());
    assert_eq!(
        joins(&net, server).last(),
        Some(&(net.router_name(a), PduType::Unsubscribe))
    );
    for r in [a, b] {
        let t = &net.router(r).stats().trees;
        assert_eq!((t.trees, t.memberships), (0, 0));
        assert_eq!(t.upstream_leaves, 1);
    }
    // Nothing is sent down a tree that is gone.
    send_publishes(&mut net, server, capsule, 1, 1);
    net.run_for(SECOND);
    assert_eq!(net.router(a).stats().trees.publish_no_tree, 1);
    assert!(publishes(&net, keeps).is_empty());
}

#[test]
fn an_unsubscribe_prunes_at_once() {
    let Line {
        mut net,
        a,
        b,
        server,
        capsule,
        ..
    } = line();
    let sub = attached(&mut net, Kind::Client, "sub", b);
    subscribe(&mut net, sub, capsule);
    net.run_for(SECOND);
    send_publishes(&mut net, server, capsule, 1, 3);
    net.run_for(SECOND);
    net.endpoint_mut(sub).unsubscribe(capsule).expect("small");
    net.flush_endpoint(sub);
    net.run_for(SECOND);
    assert_eq!(net.router(b).stats().trees.pruned_unsubscribe, 1);
    assert_eq!(net.router(a).stats().trees.pruned_unsubscribe, 1);
    assert_eq!(
        joins(&net, server),
        vec![
            (net.router_name(a), PduType::Subscribe),
            (net.router_name(a), PduType::Unsubscribe)
        ]
    );
    send_publishes(&mut net, server, capsule, 4, 5);
    net.run_for(SECOND);
    assert_eq!(publishes(&net, sub), vec![1, 2, 3]);
}

/// Router 0 holds the server; M is pinned to it, and L (with the
/// subscribers) is pinned to M. Killing M, or cutting L's link to M, makes
/// L join again through the directory's route (a link straight to router
/// 0), and the records published after that flow again.
fn mid_tree(kill: bool) {
    let (mut net, routers) = overlay(3, |_| {});
    let (root, m, l) = (routers[0], routers[1], routers[2]);
    let (server, cap) = server_on(&mut net, root);
    let capsule = cap.name();
    let m_root = net.link_routers(m, root);
    let l_m = net.link_routers(l, m);
    net.run_for(SECOND);
    pin(&mut net, m, capsule, m_root);
    pin(&mut net, l, capsule, l_m);
    let subs: Vec<EndpointId> = (0..5)
        .map(|k| attached(&mut net, Kind::Client, &format!("sub-{k}"), l))
        .collect();
    for s in &subs {
        subscribe(&mut net, *s, capsule);
    }
    net.run_for(SECOND);
    send_publishes(&mut net, server, capsule, 1, 10);
    net.run_for(SECOND);
    assert_eq!(net.router(m).stats().trees.copies, 10);

    if kill {
        net.kill_router(m);
    } else {
        net.cut_link(l_m);
    }
    net.run_for(2 * SECOND);
    let tl = &net.router(l).stats().trees;
    assert_eq!(tl.rejoins, 1);
    let direct = net.router(l).router_link(&net.router_name(root));
    assert!(direct.is_some());
    assert_eq!(
        net.router(l).tree(&capsule).and_then(|t| t.upstream),
        direct
    );
    let tree = net.router(root).tree(&capsule).expect("a tree");
    assert_eq!(
        tree.members,
        vec![direct.expect("linked")],
        "only L's link is a member now"
    );
    if !kill {
        // M lost its only member and left the root's tree.
        assert_eq!(net.router(m).stats().trees.pruned_link_down, 1);
        assert!(net.router(m).tree(&capsule).is_none());
    }

    send_publishes(&mut net, server, capsule, 11, 20);
    net.run_for(SECOND);
    let all: Vec<u64> = (1..=20).collect();
    for s in &subs {
        assert_eq!(publishes(&net, *s), all);
    }
    assert_eq!(net.router(l).stats().trees.copies, 20 * 5);
    assert_eq!(
        net.router(l).tree(&capsule).and_then(|t| t.upstream),
        direct
    );
}

#[test]
fn a_killed_mid_tree_router_is_routed_around() {
    mid_tree(true);
}

#[test]
fn a_cut_link_is_routed_around() {
    mid_tree(false);
}

#[test]
fn tree_limits_refuse_and_count() {
    let (mut net, _) = overlay(0, |_| {});
    let r = net.add_router_with(|_, cfg| {
        cfg.max_trees = 3;
        cfg.max_tree_members = 2;
        cfg.max_tree_joins_per_link = 2;
        cfg.subscribe_rate_per_link = Rate::new(1, 5);
    });
    let server = attached(&mut net, Kind::Server, "store", r);
    let caps: Vec<SimCapsule> = (0..4).map(|i| net.new_capsule(&format!("c{i}"))).collect();
    let entries = caps.iter().map(|c| c.entry(name(&net, server))).collect();
    net.endpoint_mut(server).advertise(entries).expect("small");
    let c: Vec<Name> = caps.iter().map(SimCapsule::name).collect();
    let subs: Vec<EndpointId> = (0..5)
        .map(|k| attached(&mut net, Kind::Client, &format!("sub-{k}"), r))
        .collect();
    let t = |net: &Network| net.router(r).stats().trees.clone();

    // Memberships per link: the third is refused.
    for cap in &c[..3] {
        subscribe(&mut net, subs[0], *cap);
    }
    net.run_for(SECOND);
    assert_eq!(t(&net).refused_link, 1);
    // Members per tree: c0 has two already after the second.
    subscribe(&mut net, subs[1], c[0]);
    subscribe(&mut net, subs[2], c[0]);
    net.run_for(SECOND);
    assert_eq!(t(&net).refused_members, 1);
    // Trees: c0, c1, c2 exist; c3 would be a fourth.
    subscribe(&mut net, subs[3], c[2]);
    subscribe(&mut net, subs[3], c[3]);
    net.run_for(SECOND);
    assert_eq!(t(&net).refused_trees, 1);
    // Rate: a burst of five Subscribes, then refusals (no time passes).
    for _ in 0..9 {
        net.endpoint_mut(subs[4]).subscribe(c[1]).expect("small");
    }
    net.flush_endpoint(subs[4]);
    net.run_for(Duration::from_millis(10));
    let t = t(&net);
    assert_eq!(t.refused_rate, 4);
    assert_eq!((t.trees, t.memberships), (3, 5));
    assert_eq!(t.refused(), 7);
    assert_eq!(t.joins, 4 + 5);
    // Refusals are not violations: every link is still up.
    let link = net.endpoint(subs[4]).link().expect("linked");
    assert_eq!(net.router(r).link_info(link).map(|i| i.violations), Some(0));
    // A refused subscriber gets nothing of the capsule.
    send_publishes(&mut net, server, c[0], 1, 2);
    send_publishes(&mut net, server, c[3], 1, 2);
    net.run_for(SECOND);
    assert_eq!(publishes(&net, subs[0]), vec![1, 2]);
    assert_eq!(publishes(&net, subs[1]), vec![1, 2]);
    assert!(publishes(&net, subs[2]).is_empty());
    assert!(publishes(&net, subs[3]).is_empty());
    assert_eq!(net.router(r).stats().trees.publish_no_tree, 2);
}

/// A Publish from a router link that is not the tree's upstream, or one
/// for a capsule without a tree, is dropped; a Subscribe with a source the
/// sender did not prove is a violation and adds nobody; nothing reaches a
/// link or endpoint that did not subscribe itself.
#[test]
fn only_upstream_publishes_and_only_subscribers_get_copies() {
    let Line {
        mut net,
        a,
        b,
        ab,
        server,
        capsule,
    } = line();
    let c = net.add_router();
    let bc = net.link_routers(c, b);
    let sub = attached(&mut net, Kind::Client, "sub", b);
    let bystander = attached(&mut net, Kind::Client, "bystander", b);
    let forger = attached(&mut net, Kind::Client, "forger", b);
    net.run_for(SECOND);
    subscribe(&mut net, sub, capsule);
    // The forger subscribes in the bystander's name, and in the name of
    // router C: both violations, neither a member.
    for victim in [name(&net, bystander), net.router_name(c)] {
        let pdu = ControlMessage::Subscribe { capsule }
            .to_pdu(capsule, victim, 1)
            .expect("small");
        net.endpoint_mut(forger).send_pdu(&pdu);
    }
    net.flush_endpoint(forger);
    net.run_for(SECOND);
    let forger_link = net.endpoint(forger).link().expect("linked");
    let info = net.router(b).link_info(forger_link).expect("known");
    assert_eq!((info.bad_source, info.violations), (2, 2));
    let tree = net.router(b).tree(&capsule).expect("a tree");
    assert_eq!(
        tree.members,
        vec![net.endpoint(sub).link().expect("linked")]
    );
    assert_eq!(tree.upstream, Some(ab));

    // Router C, which is not B's upstream, sends a Publish for the capsule,
    // and one for a capsule B has no tree for.
    let other = net.new_capsule("other").name();
    net.send_from_router(
        c,
        bc,
        vec![
            publish(capsule, 100).to_bytes(),
            publish(other, 1).to_bytes(),
        ],
    );
    // The forger sends a Publish in the capsule's name (it serves nothing).
    net.endpoint_mut(forger).send_pdu(&publish(capsule, 101));
    net.flush_endpoint(forger);
    net.run_for(SECOND);
    let tb = &net.router(b).stats().trees;
    assert_eq!((tb.publish_not_upstream, tb.publish_no_tree), (1, 1));
    assert_eq!(tb.copies, 0);
    assert_eq!(
        net.router(b).link_info(forger_link).map(|i| i.bad_source),
        Some(3)
    );

    // The server's records reach the subscriber only.
    send_publishes(&mut net, server, capsule, 1, 5);
    net.run_for(SECOND);
    assert_eq!(publishes(&net, sub), vec![1, 2, 3, 4, 5]);
    for e in [bystander, forger] {
        assert!(publishes(&net, e).is_empty());
    }
    assert_eq!(net.router(b).stats().trees.copies, 5);
    // C never subscribed: no copy went its way (it would have counted a
    // Publish without a tree).
    assert_eq!(net.router(c).stats().trees.publish_no_tree, 0);
    assert_eq!(net.router(c).stats().trees.publishes, 0);
    assert_eq!(net.router(a).stats().trees.copies, 5);
}
