//! Unit and property tests of the core on its own, without the simulation.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::Validity;
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Kind, Name, SecretKey, Timestamp};
use gdp_proto::control::{AttachProof, ControlMessage, NakReason};
use gdp_proto::{Pdu, PduHeader, PduType};
use proptest::prelude::*;

use super::*;

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

fn identity(seed: u8, kind: Kind) -> Identity {
    Identity::from_key(
        SecretKey::from_seed(&[seed; 32]),
        kind,
        "test",
        Timestamp::from_secs(1_700_000_000),
    )
    .expect("short label")
}

fn core(edit: impl FnOnce(&mut CoreConfig)) -> RouterCore {
    let mut cfg = CoreConfig {
        addresses: vec![SocketAddr::from(([192, 0, 2, 1], 4433))],
        rng_seed: Some(3),
        ..CoreConfig::default()
    };
    edit(&mut cfg);
    RouterCore::new(identity(1, Kind::Router), cfg).expect("valid configuration")
}

/// Every PDU queued for `link` so far, decoded.
fn sent_on(core: &mut RouterCore, link: LinkId) -> Vec<Pdu> {
    let mut out = Vec::new();
    while let Some(t) = core.poll_transmit() {
        if t.link == link {
            out.extend(t.pdus.into_iter().filter_map(|b| Pdu::decode(b).ok()));
        }
    }
    out
}

/// Attaches `endpoint` on `link` by answering the challenge; what the
/// router sent on the link is drained.
fn attach(core: &mut RouterCore, link: LinkId, endpoint: &Identity) {
    prove(core, link, endpoint);
    sent_on(core, link);
}

/// [`attach`], leaving what the router sent after the proof queued.
fn prove(core: &mut RouterCore, link: LinkId, endpoint: &Identity) {
    core.link_up(NOW, link, LinkPeer::Endpoint);
    let challenge = sent_on(core, link)
        .iter()
        .find_map(|p| match ControlMessage::from_pdu(p) {
            Ok(ControlMessage::AttachChallenge(c)) => Some(c),
            _ => None,
        })
        .expect("a challenge");
    let validity = Validity::starting_at(NOW, Duration::from_secs(3600));
    let proof = AttachProof::create(endpoint, &challenge, validity);
    let pdu = ControlMessage::AttachProof(proof)
        .to_pdu(challenge.router, endpoint.name(), 1)
        .expect("small");
    core.handle_pdu(NOW, link, pdu.to_bytes());
    assert_eq!(
        core.link_info(link).map(|i| i.role),
        Some(LinkRole::Endpoint)
    );
}

#[test]
fn attach_publishes_and_detach_unpublishes() {
    let mut c = core(|_| {});
    let client = identity(2, Kind::Client);
    attach(&mut c, LinkId(1), &client);
    let mut actions = Vec::new();
    while let Some(a) = c.poll_action() {
        actions.push(a);
    }
    let published: Vec<Name> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish { name, .. } => Some(*name),
            _ => None,
        })
        .collect();
    assert_eq!(published, vec![c.name(), client.name()]);
    c.link_down(NOW, LinkId(1));
    assert_eq!(
        c.poll_action(),
        Some(Action::Unpublish {
            name: client.name()
        })
    );
    assert!(c.fib().lookup(&client.name(), NOW).is_none());
    assert_eq!(c.stats().links, 0);
}

/// Whether an `AttachAccepted` was queued for `link`.
fn accepted(core: &mut RouterCore, link: LinkId) -> bool {
    sent_on(core, link).iter().any(|p| {
        matches!(
            ControlMessage::from_pdu(p),
            Ok(ControlMessage::AttachAccepted { .. })
        )
    })
}

#[test]
fn an_endpoint_is_accepted_once_its_record_is_written() {
    let mut c = core(|_| {});
    let client = identity(2, Kind::Client);
    // `attach` drains what was sent: the acceptance is not among it yet.
    attach(&mut c, LinkId(1), &client);
    assert!(!accepted(&mut c, LinkId(1)));
    // The router's own record finishing does not accept the endpoint.
    c.publish_done(NOW, c.name(), true);
    assert!(!accepted(&mut c, LinkId(1)));
    c.publish_done(NOW, client.name(), true);
    assert!(accepted(&mut c, LinkId(1)));
    // Told once.
    c.handle_timeout(NOW.saturating_add(Duration::from_secs(10)));
    assert!(!accepted(&mut c, LinkId(1)));

    // A failed write accepts too: the name is served here regardless.
    let other = identity(3, Kind::Client);
    attach(&mut c, LinkId(2), &other);
    c.publish_done(NOW, other.name(), false);
    assert!(accepted(&mut c, LinkId(2)));
}

#[test]
fn a_slow_directory_delays_acceptance_by_publish_wait_at_most() {
    let mut c = core(|cfg| cfg.publish_wait = Duration::from_millis(500));
    let client = identity(2, Kind::Client);
    attach(&mut c, LinkId(1), &client);
    c.handle_timeout(NOW.saturating_add(Duration::from_millis(499)));
    assert!(!accepted(&mut c, LinkId(1)));
    c.handle_timeout(NOW.saturating_add(Duration::from_millis(500)));
    assert!(accepted(&mut c, LinkId(1)));
    // The late completion changes nothing.
    c.publish_done(
        NOW.saturating_add(Duration::from_secs(1)),
        client.name(),
        true,
    );
    assert!(!accepted(&mut c, LinkId(1)));

    // Without a wait, at once.
    let mut c = core(|cfg| cfg.publish_wait = Duration::ZERO);
    prove(&mut c, LinkId(1), &client);
    assert!(accepted(&mut c, LinkId(1)));
}

/// Advertises `capsule_md` (owned by `owner`) from the server on `link`.
fn advertise(
    core: &mut RouterCore,
    link: LinkId,
    server: &Identity,
    owner: &SecretKey,
    capsule_md: &gdp_certs::Metadata,
) {
    let adcert = gdp_certs::cert::AdCert::issue(
        owner,
        capsule_md.name(),
        server.name(),
        Validity::starting_at(NOW, Duration::from_secs(3600)),
    );
    let entries = vec![gdp_proto::control::AdvertiseEntry {
        capsule_md: capsule_md.clone(),
        adcert,
    }];
    let pdu = ControlMessage::Advertise { entries }
        .to_pdu(core.name(), server.name(), 2)
        .expect("small");
    core.handle_pdu(NOW, link, pdu.to_bytes());
}

#[test]
fn a_server_that_reattaches_takes_its_capsules_to_the_new_link() {
    let mut c = core(|_| {});
    let server = identity(4, Kind::Server);
    let other = identity(5, Kind::Server);
    let owner = SecretKey::from_seed(&[6; 32]);
    let md = gdp_certs::Metadata::capsule(owner.public(), vec![owner.public()], "c", NOW, vec![])
        .expect("valid");
    let next_hop = |c: &RouterCore| c.fib().lookup(&md.name(), NOW).map(|e| e.next_hop);

    attach(&mut c, LinkId(1), &server);
    advertise(&mut c, LinkId(1), &server, &owner, &md);
    assert_eq!(next_hop(&c), Some(LinkId(1)));

    // Another server hosting the same capsule does not take the route over.
    attach(&mut c, LinkId(2), &other);
    advertise(&mut c, LinkId(2), &other, &owner, &md);
    assert_eq!(next_hop(&c), Some(LinkId(1)));

    // The same server on a new link (restarted, or renewing its RtCert while
    // the old link is still up) moves the capsule at once.
    attach(&mut c, LinkId(3), &server);
    advertise(&mut c, LinkId(3), &server, &owner, &md);
    assert_eq!(next_hop(&c), Some(LinkId(3)));
    assert_eq!(
        c.fib().lookup(&server.name(), NOW).map(|e| e.next_hop),
        Some(LinkId(3))
    );

    // The old link going away later leaves the new route alone.
    c.link_down(NOW, LinkId(1));
    assert_eq!(next_hop(&c), Some(LinkId(3)));
}

#[test]
fn static_routes_need_a_router_link() {
    let mut c = core(|_| {});
    let client = identity(2, Kind::Client);
    attach(&mut c, LinkId(1), &client);
    assert_eq!(
        c.install_route(NOW, Name::ZERO, LinkId(1), Timestamp::MAX),
        Err(RouteError::NotARouterLink(LinkId(1)))
    );
    let peer = identity(3, Kind::Router);
    c.link_up(
        NOW,
        LinkId(2),
        LinkPeer::Router {
            metadata: peer.metadata().clone(),
        },
    );
    // Not ready before its hello.
    assert_eq!(
        c.install_route(NOW, Name::ZERO, LinkId(2), Timestamp::MAX),
        Err(RouteError::NotARouterLink(LinkId(2)))
    );
}

#[test]
fn a_client_link_claiming_to_be_a_router_is_refused() {
    let mut c = core(|_| {});
    let client = identity(2, Kind::Client);
    c.link_up(
        NOW,
        LinkId(5),
        LinkPeer::Router {
            metadata: client.metadata().clone(),
        },
    );
    assert_eq!(c.stats().peers_refused, 1);
    let closes: Vec<Action> = std::iter::from_fn(|| c.poll_action())
        .filter(|a| matches!(a, Action::CloseLink { .. }))
        .collect();
    assert_eq!(
        closes,
        vec![Action::CloseLink {
            link: LinkId(5),
            reason: CloseReason::Peering(PeeringError::NotARouter { kind: Kind::Client }),
        }]
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_are_counted(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..40),
        attached in any::<bool>(),
    ) {
        let mut c = core(|cfg| cfg.max_violations = u32::MAX);
        if attached {
            attach(&mut c, LinkId(1), &identity(2, Kind::Client));
        } else {
            c.link_up(NOW, LinkId(1), LinkPeer::Endpoint);
        }
        let before = c.stats().dropped.total();
        let n = frames.len() as u64;
        for f in frames {
            c.handle_pdu(NOW, LinkId(1), Bytes::from(f));
        }
        // Random bytes are never a valid PDU of the right length in practice;
        // each one is counted as a drop of some kind.
        let s = c.stats();
        prop_assert_eq!(s.dropped.total() - before + s.forwarded + s.pending as u64, n);
    }

    #[test]
    fn every_pdu_from_an_endpoint_is_accounted_for(
        pdus in proptest::collection::vec((0u8..4, any::<bool>(), 0u8..3, proptest::collection::vec(any::<u8>(), 0..64)), 1..60),
    ) {
        let mut c = core(|cfg| {
            cfg.pending_per_name = 3;
            cfg.pending_total = 8;
            cfg.max_violations = u32::MAX;
        });
        let me = identity(2, Kind::Client);
        let peer = identity(4, Kind::Client);
        attach(&mut c, LinkId(1), &me);
        attach(&mut c, LinkId(2), &peer);
        let base = c.stats().clone();
        let n = pdus.len() as u64;
        for (dst, honest, ttl, payload) in pdus {
            let dst = match dst {
                0 => peer.name(),
                1 => c.name(),
                d => Name::from_bytes([d; 32]),
            };
            let src = if honest { me.name() } else { Name::from_bytes([7; 32]) };
            let h = PduHeader::new(PduType::Data, dst, src, 1).with_ttl(ttl);
            let pdu = Pdu::new(h, Bytes::from(payload)).expect("small");
            c.handle_pdu(NOW, LinkId(1), pdu.to_bytes());
        }
        let s = c.stats();
        // Forwarded, dropped for a counted reason, or waiting: nothing else.
        let accounted = (s.forwarded - base.forwarded)
            + (s.dropped.total() - base.dropped.total())
            + s.pending as u64;
        prop_assert_eq!(accounted, n);
        prop_assert!(s.pending <= 8);
    }
}

/// Every action queued so far.
fn actions(core: &mut RouterCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

/// The reasons of the links closed among `actions`.
fn closes(actions: &[Action]) -> Vec<(LinkId, CloseReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CloseLink { link, reason } => Some((*link, reason.clone())),
            _ => None,
        })
        .collect()
}

fn at(secs: f64) -> Timestamp {
    NOW.saturating_add(Duration::from_secs_f64(secs))
}

#[test]
fn an_unproven_link_is_closed_at_its_deadline_and_an_attached_one_is_not() {
    let mut c = core(|_| {});
    attach(&mut c, LinkId(1), &identity(2, Kind::Client));
    c.link_up(NOW, LinkId(2), LinkPeer::Endpoint);
    let peer = identity(3, Kind::Router);
    c.link_up(
        NOW,
        LinkId(3),
        LinkPeer::Router {
            metadata: peer.metadata().clone(),
        },
    );
    actions(&mut c);
    c.handle_timeout(at(4.9));
    assert!(closes(&actions(&mut c)).is_empty());
    c.handle_timeout(at(5.0));
    assert_eq!(
        closes(&actions(&mut c)),
        vec![
            (LinkId(2), CloseReason::AttachTimeout),
            (LinkId(3), CloseReason::AttachTimeout)
        ]
    );
    assert_eq!(c.stats().attach_timeouts, 2);
    assert_eq!(c.links().collect::<Vec<_>>(), vec![LinkId(1)]);
}

#[test]
fn unproven_links_are_capped_and_a_proven_one_frees_its_place() {
    let mut c = core(|cfg| cfg.max_unproven_links = 3);
    for l in 1..=3 {
        c.link_up(NOW, LinkId(l), LinkPeer::Endpoint);
    }
    c.link_up(NOW, LinkId(4), LinkPeer::Endpoint);
    assert_eq!(
        closes(&actions(&mut c)),
        vec![(LinkId(4), CloseReason::TooManyUnproven { limit: 3 })]
    );
    assert_eq!(c.stats().links_refused.unproven, 1);
    assert_eq!(c.link_info(LinkId(4)), None);
    // A PDU on the refused link is ignored; its link_down too.
    c.handle_pdu(NOW, LinkId(4), Bytes::from_static(b"junk"));
    c.link_down(NOW, LinkId(4));
    assert_eq!(c.stats().dropped.total(), 0);

    // Link 1 attaches: it is no longer unproven, so a new link fits.
    c.link_down(NOW, LinkId(1));
    attach(&mut c, LinkId(1), &identity(2, Kind::Client));
    c.link_up(NOW, LinkId(5), LinkPeer::Endpoint);
    assert!(closes(&actions(&mut c)).is_empty());
    c.link_up(NOW, LinkId(6), LinkPeer::Endpoint);
    assert_eq!(c.stats().links_refused.unproven, 2);
}

#[test]
fn a_name_holds_at_most_max_links_per_peer() {
    let mut c = core(|cfg| cfg.max_links_per_peer = 2);
    let client = identity(2, Kind::Client);
    attach(&mut c, LinkId(1), &client);
    attach(&mut c, LinkId(2), &client);
    c.link_up(NOW, LinkId(3), LinkPeer::Endpoint);
    let challenge = sent_on(&mut c, LinkId(3))
        .iter()
        .find_map(|p| match ControlMessage::from_pdu(p) {
            Ok(ControlMessage::AttachChallenge(ch)) => Some(ch),
            _ => None,
        })
        .expect("a challenge");
    let proof = AttachProof::create(
        &client,
        &challenge,
        Validity::starting_at(NOW, Duration::from_secs(3600)),
    );
    let pdu = ControlMessage::AttachProof(proof)
        .to_pdu(c.name(), client.name(), 1)
        .expect("small");
    c.handle_pdu(NOW, LinkId(3), pdu.to_bytes());
    let limit = CloseReason::TooManyLinksPerPeer {
        peer: client.name(),
        limit: 2,
    };
    assert_eq!(closes(&actions(&mut c)), vec![(LinkId(3), limit)]);
    assert_eq!(c.stats().links_refused.per_peer, 1);
    // The name stays where it was (on its newest accepted link).
    assert_eq!(
        c.fib().lookup(&client.name(), NOW).map(|e| e.next_hop),
        Some(LinkId(2))
    );

    // Router links count by the authenticated name the same way.
    let peer = identity(3, Kind::Router);
    for l in 10..13 {
        c.link_up(
            NOW,
            LinkId(l),
            LinkPeer::Router {
                metadata: peer.metadata().clone(),
            },
        );
    }
    assert_eq!(c.stats().links_refused.per_peer, 2);
    assert_eq!(c.link_info(LinkId(12)), None);
}

#[test]
fn pdus_before_attach_become_violations_after_a_few() {
    let mut c = core(|cfg| {
        cfg.max_unattached_pdus = 2;
        cfg.max_violations = 3;
    });
    c.link_up(NOW, LinkId(1), LinkPeer::Endpoint);
    actions(&mut c);
    let h = PduHeader::new(PduType::Data, Name::ZERO, Name::from_bytes([7; 32]), 1);
    let pdu = Pdu::new(h, Bytes::from_static(b"x")).expect("small");
    for _ in 0..4 {
        c.handle_pdu(NOW, LinkId(1), pdu.to_bytes());
    }
    assert_eq!(c.link_info(LinkId(1)).map(|i| i.violations), Some(2));
    c.handle_pdu(NOW, LinkId(1), pdu.to_bytes());
    assert_eq!(
        closes(&actions(&mut c)),
        vec![(LinkId(1), CloseReason::Violations { count: 3 })]
    );
    assert_eq!(c.stats().dropped.not_attached, 5);
}

/// A capsule owned by `owner`, told apart by `i`.
fn capsule_md(owner: &SecretKey, i: u32) -> gdp_certs::Metadata {
    gdp_certs::Metadata::capsule(
        owner.public(),
        vec![owner.public()],
        format!("c{i}"),
        NOW,
        vec![],
    )
    .expect("valid")
}

fn entry(
    owner: &SecretKey,
    md: &gdp_certs::Metadata,
    server: Name,
) -> gdp_proto::control::AdvertiseEntry {
    gdp_proto::control::AdvertiseEntry {
        capsule_md: md.clone(),
        adcert: gdp_certs::cert::AdCert::issue(
            owner,
            md.name(),
            server,
            Validity::starting_at(NOW, Duration::from_secs(3600)),
        ),
    }
}

fn send_advertise(
    core: &mut RouterCore,
    link: LinkId,
    server: &Identity,
    entries: Vec<gdp_proto::control::AdvertiseEntry>,
) {
    for chunk in entries.chunks(gdp_proto::control::MAX_ADVERTISE_ENTRIES) {
        let pdu = ControlMessage::Advertise {
            entries: chunk.to_vec(),
        }
        .to_pdu(core.name(), server.name(), 2)
        .expect("fits");
        core.handle_pdu(NOW, link, pdu.to_bytes());
    }
}

#[test]
fn forged_adcerts_close_the_link_after_few_verifications() {
    let mut c = core(|cfg| cfg.max_violations = 4);
    let server = identity(4, Kind::Server);
    attach(&mut c, LinkId(1), &server);
    let owner = SecretKey::from_seed(&[6; 32]);
    let forger = SecretKey::from_seed(&[9; 32]);
    // Right server, right metadata, signed by someone who is not the owner.
    let forged: Vec<_> = (0..256)
        .map(|i| entry(&forger, &capsule_md(&owner, i), server.name()))
        .collect();
    send_advertise(&mut c, LinkId(1), &server, forged);
    let st = c.stats();
    assert_eq!(st.adcert_verifications, 4);
    assert_eq!(st.adcerts_rejected, 4);
    assert_eq!(st.capsules_advertised, 0);
    assert_eq!(
        closes(&actions(&mut c)),
        vec![(LinkId(1), CloseReason::Violations { count: 4 })]
    );
}

#[test]
fn advertise_entries_are_checked_cheaply_before_any_signature() {
    let mut c = core(|_| {});
    let server = identity(4, Kind::Server);
    let other = identity(5, Kind::Server);
    attach(&mut c, LinkId(1), &server);
    let owner = SecretKey::from_seed(&[6; 32]);
    let (a, b) = (capsule_md(&owner, 1), capsule_md(&owner, 2));
    let mut wrong_md = entry(&owner, &b, server.name());
    wrong_md.capsule_md = a.clone();
    send_advertise(
        &mut c,
        LinkId(1),
        &server,
        vec![entry(&owner, &a, other.name()), wrong_md],
    );
    assert_eq!(c.stats().adcert_verifications, 0);
    assert_eq!(c.stats().adcerts_rejected, 2);
    assert_eq!(c.link_info(LinkId(1)).map(|i| i.violations), Some(2));

    // A good entry, twice in one PDU and again later: verified and
    // published once.
    actions(&mut c);
    let good = entry(&owner, &a, server.name());
    send_advertise(&mut c, LinkId(1), &server, vec![good.clone(), good.clone()]);
    send_advertise(&mut c, LinkId(1), &server, vec![good]);
    assert_eq!(c.stats().adcert_verifications, 1);
    assert_eq!(c.stats().capsules_advertised, 1);
    let publishes = actions(&mut c)
        .iter()
        .filter(|a| matches!(a, Action::Publish { .. }))
        .count();
    assert_eq!(publishes, 1);
}

#[test]
fn the_verification_budget_of_a_link_throttles_advertise_entries() {
    let mut c = core(|cfg| {
        cfg.advertise_verifications = Rate::new(1, 3);
        cfg.max_verifications_per_advertise = 2;
    });
    let server = identity(4, Kind::Server);
    attach(&mut c, LinkId(1), &server);
    let owner = SecretKey::from_seed(&[6; 32]);
    let entries = |from: u32| -> Vec<_> {
        (from..from + 3)
            .map(|i| entry(&owner, &capsule_md(&owner, i), server.name()))
            .collect()
    };
    // Two per PDU, three in the bucket.
    send_advertise(&mut c, LinkId(1), &server, entries(0));
    assert_eq!(c.stats().adcert_verifications, 2);
    send_advertise(&mut c, LinkId(1), &server, entries(10));
    assert_eq!(c.stats().adcert_verifications, 3);
    assert_eq!(c.stats().adcerts_throttled, 3);
    assert_eq!(c.stats().capsules_advertised, 3);
    // Throttled entries are no violation.
    assert_eq!(c.link_info(LinkId(1)).map(|i| i.violations), Some(0));
}

#[test]
fn closing_a_server_link_with_many_capsules_moves_each_to_its_other_server() {
    const CAPSULES: u32 = 8_192;
    let mut c = core(|_| {});
    let (a, b) = (identity(4, Kind::Server), identity(5, Kind::Server));
    let owner = SecretKey::from_seed(&[6; 32]);
    let mds: Vec<_> = (0..CAPSULES).map(|i| capsule_md(&owner, i)).collect();
    attach(&mut c, LinkId(1), &a);
    attach(&mut c, LinkId(2), &b);
    for l in 3..300 {
        // 200 clients, some on two links.
        attach(
            &mut c,
            LinkId(l),
            &identity((l % 200) as u8 + 10, Kind::Client),
        );
    }
    for (link, server) in [(LinkId(1), &a), (LinkId(2), &b)] {
        let entries = mds
            .iter()
            .map(|md| entry(&owner, md, server.name()))
            .collect();
        send_advertise(&mut c, link, server, entries);
    }
    assert_eq!(c.stats().capsules_advertised, 2 * u64::from(CAPSULES));
    actions(&mut c);

    c.link_down(NOW, LinkId(1));
    let after = actions(&mut c);
    let published: BTreeSet<Name> = after
        .iter()
        .filter_map(|a| match a {
            Action::Publish { name, .. } => Some(*name),
            _ => None,
        })
        .collect();
    assert_eq!(published.len(), CAPSULES as usize);
    for md in &mds {
        assert_eq!(
            c.fib().lookup(&md.name(), NOW).map(|e| e.next_hop),
            Some(LinkId(2))
        );
    }
    // Only the server's own name went away.
    assert_eq!(
        after
            .iter()
            .filter(|a| matches!(a, Action::Unpublish { .. }))
            .collect::<Vec<_>>(),
        vec![&Action::Unpublish { name: a.name() }]
    );
    c.link_down(NOW, LinkId(2));
    let unpublished = actions(&mut c)
        .iter()
        .filter(|a| matches!(a, Action::Unpublish { .. }))
        .count();
    assert_eq!(unpublished, CAPSULES as usize + 1);
    // The index forgot both servers' capsules.
    assert!(mds.iter().all(|md| !c.local.contains_key(&md.name())));
    assert_eq!(c.local.len(), 200);
}

/// Sends a Data PDU from the endpoint `src` on `link` to `dst`.
fn data(core: &mut RouterCore, at: Timestamp, link: LinkId, src: Name, dst: Name) {
    let h = PduHeader::new(PduType::Data, dst, src, 1);
    let pdu = Pdu::new(h, Bytes::from_static(b"x")).expect("small");
    core.handle_pdu(at, link, pdu.to_bytes());
}

/// The names looked up among `actions`.
fn lookups(actions: &[Action]) -> Vec<Name> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Lookup(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// The NAKs queued for `link`, with their reasons.
fn naks(core: &mut RouterCore, link: LinkId) -> Vec<(Name, NakReason)> {
    sent_on(core, link)
        .iter()
        .filter_map(|p| match ControlMessage::from_pdu(p) {
            Ok(ControlMessage::NakNoRoute { dst, reason }) => Some((dst, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_source_cycling_names_is_limited_while_another_still_resolves() {
    let mut c = core(|_| {});
    let (me, other) = (identity(2, Kind::Client), identity(3, Kind::Client));
    attach(&mut c, LinkId(1), &me);
    attach(&mut c, LinkId(2), &other);
    actions(&mut c);
    let random = |i: u32| {
        let mut b = [0xAB; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        Name::from_bytes(b)
    };
    for i in 0..2_000 {
        data(&mut c, NOW, LinkId(1), me.name(), random(i));
    }
    let max = c.config().max_lookups_per_source;
    assert_eq!(lookups(&actions(&mut c)).len(), max);
    assert_eq!(c.stats().lookups_limited, 2_000 - max as u64);
    assert_eq!(c.stats().dropped.lookup_limit, c.stats().lookups_limited);
    assert_eq!(c.lookup_limits.in_flight(&me.name()), max);
    let refused = naks(&mut c, LinkId(1));
    assert_eq!(refused.len(), 2_000 - max);
    assert!(
        refused
            .iter()
            .all(|(_, r)| *r == NakReason::DirectoryUnavailable)
    );

    // The other client's lookup goes out at once.
    let wanted = Name::from_bytes([0xCD; 32]);
    data(&mut c, NOW, LinkId(2), other.name(), wanted);
    assert_eq!(lookups(&actions(&mut c)), vec![wanted]);

    // Answers free the first source's places; its rate still holds it.
    for i in 0..max as u32 {
        c.lookup_result(NOW, random(i), Ok(vec![]));
    }
    assert_eq!(c.lookup_limits.in_flight(&me.name()), 0);
    let mut started = 0;
    for i in 10_000..20_000u32 {
        let t = at(f64::from(i - 10_000) / 1_000.0);
        data(&mut c, t, LinkId(1), me.name(), random(i));
        for n in lookups(&actions(&mut c)) {
            started += 1;
            c.lookup_result(t, n, Ok(vec![]));
        }
    }
    // 10 s at 100/s plus what was left of the burst of 1,000.
    let burst = 1_000 - max as u64;
    assert!(started <= burst + 10 * 100 + 1, "{started} lookups");
}

#[test]
fn pending_places_are_bounded_per_source() {
    let mut c = core(|cfg| cfg.pending_per_source = 2);
    let me = identity(2, Kind::Client);
    attach(&mut c, LinkId(1), &me);
    actions(&mut c);
    let dst = Name::from_bytes([0xAB; 32]);
    for _ in 0..3 {
        data(&mut c, NOW, LinkId(1), me.name(), dst);
    }
    assert_eq!(c.stats().pending, 2);
    assert_eq!(c.stats().lookups_limited, 1);
    assert_eq!(lookups(&actions(&mut c)), vec![dst]);
    assert!(c.stats().pending_bytes > 0);
}

#[test]
fn directory_errors_are_negatively_cached_for_a_shorter_time() {
    let mut c = core(|_| {});
    let me = identity(2, Kind::Client);
    attach(&mut c, LinkId(1), &me);
    actions(&mut c);
    let dst = Name::from_bytes([0xAB; 32]);
    data(&mut c, NOW, LinkId(1), me.name(), dst);
    assert_eq!(lookups(&actions(&mut c)), vec![dst]);
    c.lookup_result(NOW, dst, Err(LookupError::Timeout));
    assert_eq!(
        naks(&mut c, LinkId(1)),
        vec![(dst, NakReason::DirectoryUnavailable)]
    );
    // Within negative_error_ttl: answered at once, the directory not asked.
    data(&mut c, at(0.2), LinkId(1), me.name(), dst);
    assert!(lookups(&actions(&mut c)).is_empty());
    assert_eq!(c.stats().negative_hits, 1);
    assert_eq!(
        naks(&mut c, LinkId(1)),
        vec![(dst, NakReason::DirectoryUnavailable)]
    );
    // After it: asked again.
    c.handle_timeout(at(0.3));
    data(&mut c, at(0.3), LinkId(1), me.name(), dst);
    assert_eq!(lookups(&actions(&mut c)), vec![dst]);
}

#[test]
fn the_freshest_of_several_valid_records_is_tried_first() {
    let mut c = core(|_| {});
    let client = identity(2, Kind::Client);
    attach(&mut c, LinkId(1), &client);
    actions(&mut c);
    let endpoint = identity(3, Kind::Server);
    let (old_router, new_router) = (identity(20, Kind::Router), identity(21, Kind::Router));
    let record = |router: &Identity, start, port| endpoint_record(router, &endpoint, start, port);
    // The stale claim comes first, as a directory may order it.
    let stale = record(&old_router, NOW.saturating_sub(Duration::from_secs(600)), 1);
    let fresh = record(&new_router, NOW.saturating_sub(Duration::from_secs(60)), 2);
    data(&mut c, NOW, LinkId(1), client.name(), endpoint.name());
    actions(&mut c);
    c.lookup_result(NOW, endpoint.name(), Ok(vec![stale, fresh]));
    let dials: Vec<_> = actions(&mut c)
        .into_iter()
        .filter_map(|a| match a {
            Action::Dial {
                router, addresses, ..
            } => Some((router, addresses)),
            _ => None,
        })
        .collect();
    assert_eq!(
        dials,
        vec![(
            new_router.name(),
            vec![SocketAddr::from(([198, 51, 100, 1], 2))]
        )]
    );
}

/// A core behind the gateway `gateway`, with its link up (hellos passed)
/// on `link`.
fn core_behind(gateway: &Identity, link: LinkId) -> RouterCore {
    let gw = gateway.name();
    let mut c = core(|cfg| {
        cfg.addresses.clear();
        cfg.gateway = Some(Gateway {
            name: gw,
            addresses: vec![SocketAddr::from(([192, 0, 2, 9], 4433))],
        });
    });
    c.link_up(
        NOW,
        link,
        LinkPeer::Router {
            metadata: gateway.metadata().clone(),
        },
    );
    let hello = gdp_proto::control::RouterHello::new(gateway.metadata().clone(), None, vec![])
        .expect("small hello");
    let pdu = ControlMessage::RouterHello(hello)
        .to_pdu(c.name(), gw, 1)
        .expect("small");
    c.handle_pdu(NOW, link, pdu.to_bytes());
    assert_eq!(c.fib().lookup(&gw, NOW).map(|e| e.next_hop), Some(link));
    sent_on(&mut c, link);
    c
}

/// A record of `router` (at `port` on a documentation address) for the
/// endpoint `endpoint`, valid from `start` to an hour after `NOW`.
fn endpoint_record(router: &Identity, endpoint: &Identity, start: Timestamp, port: u16) -> Bytes {
    let validity = Validity::new(start, NOW.saturating_add(Duration::from_secs(3600)));
    let rtcert = gdp_certs::cert::RtCert::issue_by(endpoint, router.name(), validity);
    gdp_certs::cert::RouteRecord::sign(
        router,
        endpoint.name(),
        gdp_certs::cert::RouteTarget::Endpoint {
            endpoint_md: endpoint.metadata().clone(),
            rtcert,
        },
        vec![SocketAddr::from(([198, 51, 100, 1], port))],
        None,
        validity,
    )
    .expect("signs")
    .to_bytes()
}

#[test]
fn a_router_behind_a_gateway_forwards_what_it_cannot_dial_through_the_gateway() {
    let gateway = identity(30, Kind::Router);
    let far = identity(31, Kind::Router);
    let endpoint = identity(32, Kind::Client);
    let client = identity(2, Kind::Client);
    let (client_link, gw_link) = (LinkId(1), LinkId(9));
    let mut c = core_behind(&gateway, gw_link);
    attach(&mut c, client_link, &client);
    actions(&mut c);

    data(&mut c, NOW, client_link, client.name(), endpoint.name());
    assert_eq!(lookups(&actions(&mut c)), vec![endpoint.name()]);
    c.lookup_result(
        NOW,
        endpoint.name(),
        Ok(vec![endpoint_record(&far, &endpoint, NOW, 1)]),
    );
    let dialed: Vec<Name> = actions(&mut c)
        .into_iter()
        .filter_map(|a| match a {
            Action::Dial { router, .. } => Some(router),
            _ => None,
        })
        .collect();
    assert_eq!(
        dialed,
        vec![far.name()],
        "the record's router is tried first"
    );
    // Its address cannot be reached from here.
    c.dial_failed(NOW, far.name());

    let mut sent = Vec::new();
    while let Some(t) = c.poll_transmit() {
        sent.extend(
            t.pdus
                .into_iter()
                .filter_map(|b| Pdu::decode(b).ok())
                .map(|p| (t.link, p)),
        );
    }
    let forwarded: Vec<(LinkId, PduHeader)> = sent
        .iter()
        .filter(|(_, p)| p.header.ptype == PduType::Data)
        .map(|(l, p)| (*l, p.header))
        .collect();
    assert!(
        sent.iter().all(|(l, _)| *l != client_link),
        "no NAK to the client"
    );
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    let (link, header) = forwarded[0];
    assert_eq!(link, gw_link);
    assert_eq!((header.src, header.dst), (client.name(), endpoint.name()));
    assert_eq!(
        header.ttl,
        gdp_proto::pdu::DEFAULT_TTL - 1,
        "a hop like any other"
    );
    assert_eq!(c.stats().gateway_fallbacks, 1);
    assert!(!c.negative.contains_key(&endpoint.name()));

    // Cached: the next PDU goes to the gateway without a lookup or a dial.
    data(&mut c, NOW, client_link, client.name(), endpoint.name());
    assert!(actions(&mut c).is_empty());
    assert_eq!(sent_on(&mut c, gw_link).len(), 1);

    // A name without any valid record is not sent to the gateway: NAKed.
    let nobody = identity(33, Kind::Client);
    data(&mut c, NOW, client_link, client.name(), nobody.name());
    actions(&mut c);
    c.lookup_result(NOW, nobody.name(), Ok(vec![]));
    assert_eq!(
        naks(&mut c, client_link),
        vec![(nobody.name(), NakReason::NoRoute)]
    );
    assert_eq!(c.stats().gateway_fallbacks, 1);
}

/// The client on link 1 sends to `endpoint`, whose one record names
/// `far`, and the dial of `far` fails: what is NAKed to the client.
fn nak_after_failed_dial(
    c: &mut RouterCore,
    client: &Identity,
    endpoint: &Identity,
    far: &Identity,
) -> Vec<(Name, NakReason)> {
    attach(c, LinkId(1), client);
    actions(c);
    data(c, NOW, LinkId(1), client.name(), endpoint.name());
    actions(c);
    c.lookup_result(
        NOW,
        endpoint.name(),
        Ok(vec![endpoint_record(far, endpoint, NOW, 1)]),
    );
    actions(c);
    c.dial_failed(NOW, far.name());
    naks(c, LinkId(1))
}

#[test]
fn without_a_gateway_link_an_unreachable_router_is_a_nak() {
    let (far, endpoint, client) = (
        identity(31, Kind::Router),
        identity(32, Kind::Client),
        identity(2, Kind::Client),
    );
    let unreachable = vec![(endpoint.name(), NakReason::NoRoute)];
    // No gateway configured.
    let mut c = core(|_| {});
    assert_eq!(
        nak_after_failed_dial(&mut c, &client, &endpoint, &far),
        unreachable
    );

    // A gateway configured but its link down: the same.
    let gateway = identity(30, Kind::Router);
    let mut c = core_behind(&gateway, LinkId(9));
    c.link_down(NOW, LinkId(9));
    assert_eq!(
        nak_after_failed_dial(&mut c, &client, &endpoint, &far),
        unreachable
    );
    assert_eq!(c.stats().gateway_fallbacks, 0);
}
