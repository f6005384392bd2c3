//! Unit and property tests of the core on its own, without the simulation.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::Validity;
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Kind, Name, SecretKey, Timestamp};
use gdp_proto::control::{AttachProof, ControlMessage};
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

/// Attaches `endpoint` on `link` by answering the challenge.
fn attach(core: &mut RouterCore, link: LinkId, endpoint: &Identity) {
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
    sent_on(core, link);
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
