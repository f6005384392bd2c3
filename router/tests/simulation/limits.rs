//! Per-peer limits under hostile peers: unproven links, links per peer,
//! forged advertisements, lookup storms, directory errors and stale claims.
//! Each test asserts the counter the limit moves, and that an unrelated
//! pair of endpoints keeps exchanging PDUs.

use std::time::Duration;

use gdp_certs::cert::{AdCert, RouteRecord, RouteTarget, RtCert, Validity};
use gdp_certs::codec::Encode;
use gdp_certs::{Kind, Name, SecretKey};
use gdp_proto::control::NakReason;
use gdp_router::core::{CoreConfig, LinkRole};
use gdp_router::sim::{AttachState, EndpointId, Network, RouterId};

use super::{SECOND, attached, name, overlay, send};

/// An unrelated pair: a client and an echoing server on one router.
struct Pair {
    client: EndpointId,
    server: EndpointId,
}

impl Pair {
    fn new(net: &mut Network, router: RouterId) -> Self {
        let server = attached(net, Kind::Server, "echo", router);
        net.endpoint_mut(server).set_echo(true);
        let client = attached(net, Kind::Client, "pinger", router);
        Pair { client, server }
    }

    fn echoes(&self, net: &Network) -> usize {
        net.endpoint(self.client)
            .data_from(name(net, self.server))
            .count()
    }

    /// Sends one PDU, runs `d`, and checks that its echo came back.
    fn ping(&self, net: &mut Network, d: Duration) {
        let before = self.echoes(net);
        let s = name(net, self.server);
        send(net, self.client, s, b"ping");
        net.run_for(d);
        assert_eq!(
            self.echoes(net),
            before + 1,
            "the unrelated pair is cut off"
        );
    }
}

/// A linked endpoint that never answers the challenge (a router identity
/// does not attach as an endpoint).
fn silent(net: &mut Network, router: RouterId) -> EndpointId {
    let e = net.add_endpoint(Kind::Router, "silent");
    net.attach(e, router);
    e
}

#[test]
fn an_unproven_link_is_closed_after_the_deadline_while_an_attached_pair_keeps_working() {
    let (mut net, routers) = overlay(1, |_| {});
    let pair = Pair::new(&mut net, routers[0]);
    let quiet = silent(&mut net, routers[0]);
    let link = net.endpoint(quiet).link().expect("linked");
    assert_eq!(
        net.router(routers[0]).link_info(link).map(|i| i.role),
        Some(LinkRole::Attaching)
    );
    for _ in 0..4 {
        pair.ping(&mut net, SECOND);
    }
    assert_eq!(net.endpoint(quiet).link(), Some(link));
    for _ in 0..3 {
        pair.ping(&mut net, SECOND);
    }
    // 5 s after it came up, the silent link is gone; the pair is not.
    assert_eq!(net.endpoint(quiet).link(), None);
    let st = net.router(routers[0]).stats();
    assert_eq!(st.attach_timeouts, 1);
    assert_eq!(net.router(routers[0]).link_info(link), None);
    assert_eq!(net.endpoint(pair.client).state(), AttachState::Attached);
}

#[test]
fn unproven_links_beyond_the_cap_are_refused_at_once() {
    let (mut net, routers) = overlay(1, |cfg| cfg.router.max_unproven_links = 10);
    let pair = Pair::new(&mut net, routers[0]);
    let flood: Vec<EndpointId> = (0..15).map(|_| silent(&mut net, routers[0])).collect();
    pair.ping(&mut net, SECOND);
    let st = net.router(routers[0]).stats();
    assert_eq!(st.links_refused.unproven, 5);
    let open = flood
        .iter()
        .filter(|e| net.endpoint(**e).link().is_some())
        .count();
    assert_eq!(open, 10);

    // While the cap is full a new endpoint is refused too; once the
    // deadline cleared the flood, it attaches.
    let late = net.add_endpoint(Kind::Client, "late");
    net.attach(late, routers[0]);
    net.run_for(SECOND);
    assert_eq!(net.endpoint(late).link(), None);
    assert_eq!(net.router(routers[0]).stats().links_refused.unproven, 6);
    net.run_for(5 * SECOND);
    assert_eq!(net.router(routers[0]).stats().attach_timeouts, 10);
    let late = attached(&mut net, Kind::Client, "later", routers[0]);
    assert_eq!(net.endpoint(late).state(), AttachState::Attached);
    pair.ping(&mut net, SECOND);
}

#[test]
fn an_endpoint_name_holds_at_most_max_links_per_peer() {
    let (mut net, routers) = overlay(1, |_| {});
    let pair = Pair::new(&mut net, routers[0]);
    let id = net.identity(Kind::Client, "greedy");
    let copies: Vec<EndpointId> = (0..5).map(|_| net.add_endpoint_with(id.clone())).collect();
    for e in &copies {
        net.attach(*e, routers[0]);
        net.run_for(SECOND);
    }
    pair.ping(&mut net, SECOND);
    let limit = CoreConfig::default().max_links_per_peer;
    let attached_copies = copies
        .iter()
        .filter(|e| net.endpoint(**e).state() == AttachState::Attached)
        .count();
    assert_eq!(attached_copies, limit);
    assert_eq!(net.endpoint(copies[4]).link(), None);
    assert_eq!(net.router(routers[0]).stats().links_refused.per_peer, 1);
}

#[test]
fn an_advertise_of_forged_entries_closes_the_link_after_few_verifications() {
    let (mut net, routers) = overlay(1, |_| {});
    let pair = Pair::new(&mut net, routers[0]);
    let server = attached(&mut net, Kind::Server, "forger", routers[0]);
    let s = name(&net, server);
    let year = Duration::from_secs(365 * 86_400);
    let validity = Validity::new(
        net.now().saturating_sub(year),
        net.now().saturating_add(year),
    );
    let forger = SecretKey::from_seed(&[9; 32]);
    let entries = (0..256)
        .map(|i| {
            let cap = net.new_capsule(&format!("victim-{i}"));
            let mut e = cap.entry(s);
            e.adcert = AdCert::issue(&forger, cap.name(), s, validity);
            e
        })
        .collect();
    net.endpoint_mut(server)
        .advertise(entries)
        .expect("fits one PDU");
    pair.ping(&mut net, SECOND);

    let st = net.router(routers[0]).stats();
    let max = u64::from(CoreConfig::default().max_violations);
    assert_eq!(st.adcert_verifications, max);
    assert_eq!(st.capsules_advertised, 0);
    assert_eq!(net.endpoint(server).link(), None);
    pair.ping(&mut net, SECOND);
}

#[test]
fn a_source_cycling_through_random_names_is_limited_while_another_resolves() {
    let (mut net, routers) = overlay(2, |_| {});
    let attacker = attached(&mut net, Kind::Client, "storm", routers[0]);
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let far: Vec<EndpointId> = (0..20)
        .map(|i| {
            let e = attached(&mut net, Kind::Server, &format!("far-{i}"), routers[1]);
            net.endpoint_mut(e).set_echo(true);
            e
        })
        .collect();
    let lookups_before = net.router(routers[0]).stats().lookups;

    // 100,000 random names over 10 s, 1,000 every 100 ms; meanwhile the
    // other client reaches a new far server (a new lookup) every 500 ms.
    let mut next = 0u32;
    for step in 0..100 {
        for _ in 0..1_000 {
            let mut b = [0x5A; 32];
            b[..4].copy_from_slice(&next.to_be_bytes());
            next += 1;
            let _ = net
                .endpoint_mut(attacker)
                .send_data(Name::from_bytes(b), &b"x"[..]);
        }
        net.flush_endpoint(attacker);
        if step % 5 == 0 {
            let target = name(&net, far[step / 5]);
            send(&mut net, client, target, b"hello");
        }
        net.run_for(Duration::from_millis(100));
    }
    net.run_for(SECOND);

    for e in &far {
        let n = name(&net, *e);
        assert_eq!(
            net.endpoint(client).data_from(n).count(),
            1,
            "the other source's lookups go through"
        );
    }
    let st = net.router(routers[0]).stats();
    let cfg = CoreConfig::default();
    let rate = &cfg.lookup_rate_per_source;
    // The burst, then the rate for 11 s, and the other client's 20.
    let bound = u64::from(rate.burst) + 11 * u64::from(rate.per_sec) + 20;
    let lookups = st.lookups - lookups_before;
    assert!(lookups <= bound, "{lookups} lookups");
    assert!(st.lookups_limited >= 100_000 - bound);
    assert_eq!(st.dropped.lookup_limit, st.lookups_limited);
    let naks = net.endpoint(attacker).naks();
    assert!(
        naks.iter()
            .filter(|n| n.reason == NakReason::DirectoryUnavailable)
            .count() as u64
            >= st.lookups_limited
    );
}

#[test]
fn directory_errors_are_negatively_cached() {
    let (mut net, routers) = overlay(2, |_| {});
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let server = attached(&mut net, Kind::Server, "store", routers[1]);
    let s = name(&net, server);
    net.directory_mut().set_available(false);
    let before = net.directory().lookups();

    send(&mut net, client, s, b"one");
    net.run_for(Duration::from_millis(50));
    send(&mut net, client, s, b"two");
    net.run_for(Duration::from_millis(50));
    assert_eq!(net.directory().lookups() - before, 1);
    let naks = net.endpoint(client).naks();
    assert_eq!(naks.len(), 2);
    assert!(
        naks.iter()
            .all(|n| n.reason == NakReason::DirectoryUnavailable)
    );
    assert_eq!(net.router(routers[0]).stats().negative_hits, 1);

    // Once the entry ran out and the directory is back, the name resolves.
    net.directory_mut().set_available(true);
    net.run_for(SECOND);
    send(&mut net, client, s, b"three");
    net.run_for(SECOND);
    assert_eq!(
        net.endpoint(server).data_from(name(&net, client)).count(),
        1
    );
}

#[test]
fn the_freshest_record_is_chosen_over_a_stale_one() {
    let (mut net, routers) = overlay(2, |_| {});
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let server = attached(&mut net, Kind::Server, "store", routers[1]);
    let s = name(&net, server);

    // A record from a router the server left long ago, still valid,
    // naming an address nobody listens on, stored where a directory lists
    // it first.
    let old_router = net.identity(Kind::Router, "old");
    let day = Duration::from_secs(86_400);
    let validity = Validity::new(
        net.now().saturating_sub(2 * day),
        net.now().saturating_add(Duration::from_secs(3600)),
    );
    let identity = net.endpoint(server).identity().clone();
    let stale = RouteRecord::sign(
        &old_router,
        s,
        RouteTarget::Endpoint {
            endpoint_md: identity.metadata().clone(),
            rtcert: RtCert::issue_by(&identity, old_router.name(), validity),
        },
        vec!["192.0.2.99:4433".parse().expect("address")],
        None,
        validity,
    )
    .expect("signs");
    let expires = validity.not_after;
    net.directory_mut()
        .insert_raw(s, Name::ZERO, stale.to_bytes(), expires);
    assert_eq!(net.directory().records(&s, net.now()).len(), 2);

    send(&mut net, client, s, b"hello");
    net.run_for(SECOND);
    assert_eq!(
        net.endpoint(server).data_from(name(&net, client)).count(),
        1
    );
    let st = net.router(routers[0]).stats();
    assert_eq!(st.dial_failures, 0, "the stale record was tried first");
    assert_eq!(st.bad_records, 0);
}
