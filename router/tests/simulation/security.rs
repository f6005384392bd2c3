//! Hostile inputs: forged, foreign and expired certificates, bad directory
//! records, spoofed sources, malformed and oversized PDUs, peering policy,
//! directory outages. Each test asserts the counter the defence moves.

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, DomainCert, RouteRecord, RouteTarget, RtCert, Validity};
use gdp_certs::codec::Encode;
use gdp_certs::{Identity, Kind, Name, SecretKey};
use gdp_proto::PduType;
use gdp_proto::attach::{AttachViolation, EndpointAttachError};
use gdp_proto::control::{AttachChallenge, ControlMessage, NakReason};
use gdp_proto::pdu::{HEADER_LEN, MAX_PAYLOAD_LEN, Pdu, PduHeader};
use gdp_router::core::{CoreConfig, PeeringPolicy, RouteKind};
use gdp_router::sim::{AttachState, NetConfig, Network};

use super::{SECOND, attached, name, overlay, send};

#[test]
fn expired_records_from_a_directory_that_keeps_them_are_counted_bad() {
    let (mut net, routers) = overlay(10, |cfg| {
        cfg.router.record_ttl = Duration::from_secs(30);
    });
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let server = attached(&mut net, Kind::Server, "store", routers[6]);
    let s = name(&net, server);
    net.kill_router(routers[6]);
    net.directory_mut().set_honour_expiry(false);
    net.run_for(Duration::from_secs(31));

    send(&mut net, client, s, b"hello?");
    net.run_for(3 * SECOND);
    let r0 = net.router(routers[0]).stats();
    assert_eq!(r0.bad_records, 1);
    assert_eq!(r0.lookup_failures, 1);
    assert_eq!(net.endpoint(client).naks().len(), 1);
}

#[test]
fn forged_adcerts_and_adcerts_for_other_servers_are_refused() {
    let (mut net, routers) = overlay(10, |_| {});
    let server = attached(&mut net, Kind::Server, "store", routers[4]);
    let other = net.add_endpoint(Kind::Server, "elsewhere");
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let year = Duration::from_secs(365 * 86_400);
    let validity = Validity::new(
        net.now().saturating_sub(year),
        net.now().saturating_add(year),
    );

    let forged = {
        let cap = net.new_capsule("forged");
        let mut e = cap.entry(name(&net, server));
        // Signed by someone who does not own the capsule.
        e.adcert = AdCert::issue(
            &SecretKey::from_seed(&[9; 32]),
            cap.name(),
            name(&net, server),
            validity,
        );
        e
    };
    let for_other = net.new_capsule("not yours").entry(name(&net, other));
    let good = net.new_capsule("fine");
    let good_entry = good.entry(name(&net, server));
    let forged_name = forged.adcert.capsule();
    let other_name = for_other.adcert.capsule();
    net.endpoint_mut(server)
        .advertise(vec![forged, for_other, good_entry])
        .expect("small");
    net.run_for(SECOND);

    let st = net.router(routers[4]).stats();
    assert_eq!(st.adcerts_rejected, 2);
    assert_eq!(st.capsules_advertised, 1);
    let now = net.now();
    assert!(net.directory().records(&forged_name, now).is_empty());
    assert!(net.directory().records(&other_name, now).is_empty());
    assert_eq!(net.directory().records(&good.name(), now).len(), 1);

    send(&mut net, client, forged_name, b"hello?");
    net.run_for(3 * SECOND);
    assert_eq!(net.endpoint(client).naks().len(), 1);
    assert_eq!(net.router(routers[0]).stats().lookup_failures, 1);
}

#[test]
fn expired_certificates_are_refused() {
    let (mut net, routers) = overlay(10, |_| {});
    let now = net.now();
    let long_ago = Validity::new(
        now.saturating_sub(Duration::from_secs(7200)),
        now.saturating_sub(Duration::from_secs(3600)),
    );

    // An expired AdCert.
    let server = attached(&mut net, Kind::Server, "store", routers[2]);
    let cap = net.new_capsule("old");
    let entry = cap.entry_for(name(&net, server), long_ago);
    net.endpoint_mut(server)
        .advertise(vec![entry])
        .expect("small");
    net.run_for(SECOND);
    assert_eq!(net.router(routers[2]).stats().adcerts_rejected, 1);
    assert_eq!(net.router(routers[2]).stats().capsules_advertised, 0);

    // An endpoint whose RtCert is expired never attaches; after three tries
    // the router closes the link.
    let late = net.add_endpoint(Kind::Client, "late");
    net.endpoint_mut(late).set_rtcert_validity(Some(long_ago));
    net.attach(late, routers[3]);
    net.run_for(SECOND);
    let st = net.router(routers[3]).stats();
    assert_eq!(st.attaches, 0);
    assert_eq!(st.attach_failures, 3);
    assert_eq!(st.links_closed, 1);
    assert_eq!(net.endpoint(late).rejections().len(), 3);
    assert!(net.endpoint(late).rejections()[0].contains("expired"));
    assert_eq!(net.endpoint(late).state(), AttachState::Detached);
    assert!(matches!(
        net.endpoint(late).attach_error(),
        Some(EndpointAttachError::Rejected { reason }) if reason.contains("expired")
    ));
    assert!(
        net.directory()
            .records(&name(&net, late), net.now())
            .is_empty()
    );
}

#[test]
fn a_record_from_a_router_without_an_rtcert_for_the_name_is_bad() {
    let (mut net, routers) = overlay(10, |_| {});
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let victim = net.add_endpoint(Kind::Server, "victim");
    let victim_id = net.endpoint(victim).identity().clone();
    let rogue = net.identity(Kind::Router, "rogue");
    let now = net.now();
    let validity = Validity::new(now, now.saturating_add(Duration::from_secs(300)));
    // The victim's RtCert names router 5, not the rogue that publishes.
    let wrong_router = RouteRecord::sign(
        &rogue,
        victim_id.name(),
        RouteTarget::Endpoint {
            endpoint_md: victim_id.metadata().clone(),
            rtcert: RtCert::issue_by(&victim_id, net.router_name(routers[5]), validity),
        },
        vec!["192.0.2.66:4433".parse().expect("literal")],
        None,
        validity,
    )
    .expect("signs");
    // An RtCert naming the rogue, but signed by the rogue, not the victim.
    let forged_rtcert = RouteRecord::sign(
        &rogue,
        victim_id.name(),
        RouteTarget::Endpoint {
            endpoint_md: victim_id.metadata().clone(),
            rtcert: RtCert::issue(rogue.secret_key(), victim_id.name(), rogue.name(), validity),
        },
        vec!["192.0.2.66:4433".parse().expect("literal")],
        None,
        validity,
    )
    .expect("signs");
    let expires = validity.not_after;
    net.directory_mut().insert_raw(
        victim_id.name(),
        rogue.name(),
        wrong_router.to_bytes(),
        expires,
    );
    net.directory_mut().insert_raw(
        victim_id.name(),
        Name::from_bytes([1; 32]),
        forged_rtcert.to_bytes(),
        expires,
    );

    send(&mut net, client, victim_id.name(), b"to the victim");
    net.run_for(3 * SECOND);
    let st = net.router(routers[0]).stats();
    assert_eq!(st.bad_records, 2);
    assert_eq!(st.dials, 0);
    assert_eq!(st.lookup_failures, 1);
    assert_eq!(net.endpoint(client).naks().len(), 1);
}

#[test]
fn garbage_and_wrong_name_records_fall_back_to_nak() {
    let (mut net, routers) = overlay(10, |cfg| cfg.router.negative_ttl = 10 * SECOND);
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let real = attached(&mut net, Kind::Server, "real", routers[3]);
    let target = Name::from_bytes([0x42; 32]);
    let now = net.now();
    let expires = now.saturating_add(Duration::from_secs(300));
    let real_record = net.directory().records(&name(&net, real), now)[0].clone();
    let dir = net.directory_mut();
    dir.insert_raw(
        target,
        Name::from_bytes([1; 32]),
        Bytes::from_static(b"garbage"),
        expires,
    );
    dir.insert_raw(target, Name::from_bytes([2; 32]), Bytes::new(), expires);
    // A perfectly valid record, for another name.
    dir.insert_raw(target, Name::from_bytes([3; 32]), real_record, expires);

    let seq = send(&mut net, client, target, b"?");
    net.run_for(3 * SECOND);
    let st = net.router(routers[0]).stats();
    assert_eq!(st.bad_records, 3);
    assert_eq!(st.lookup_failures, 1);
    assert_eq!(st.dropped.no_route, 1);
    let naks = net.endpoint(client).naks();
    assert_eq!(naks.len(), 1);
    assert_eq!(
        (naks[0].unreachable, naks[0].reason, naks[0].seq),
        (target, NakReason::NoRoute, seq)
    );

    // Within the negative-cache time the name is answered without a lookup.
    send(&mut net, client, target, b"?");
    net.run_for(Duration::from_millis(100));
    let st = net.router(routers[0]).stats();
    assert_eq!(st.lookups, 1);
    assert_eq!(net.endpoint(client).naks().len(), 2);
}

#[test]
fn spoofed_sources_are_dropped_and_the_spoofer_disconnected() {
    let (mut net, routers) = overlay(10, |cfg| cfg.router.max_violations = 4);
    let spoofer = attached(&mut net, Kind::Client, "spoofer", routers[1]);
    let honest = attached(&mut net, Kind::Client, "honest", routers[1]);
    let victim = attached(&mut net, Kind::Client, "victim", routers[2]);
    let v = name(&net, victim);
    let link = net.endpoint(spoofer).link().expect("linked");

    let spoof = |net: &mut Network| {
        let h = PduHeader::new(PduType::Data, v, name(net, honest), 7);
        let pdu = Pdu::new(h, Bytes::from_static(b"it was me")).expect("small");
        net.endpoint_mut(spoofer).send_pdu(&pdu);
        net.flush_endpoint(spoofer);
    };
    spoof(&mut net);
    net.run_for(SECOND);
    let st = net.router(routers[1]).stats();
    assert_eq!(st.dropped.bad_source, 1);
    assert_eq!(
        net.router(routers[1]).link_info(link).map(|i| i.bad_source),
        Some(1)
    );
    assert_eq!(net.endpoint(victim).received().len(), 2); // challenge + accepted only

    for _ in 0..3 {
        spoof(&mut net);
    }
    net.run_for(SECOND);
    let st = net.router(routers[1]).stats();
    assert_eq!(st.dropped.bad_source, 4);
    assert_eq!(st.links_closed, 1);
    assert!(net.router(routers[1]).link_info(link).is_none());
    assert_eq!(net.endpoint(spoofer).state(), AttachState::Detached);
    // Its name is withdrawn with it.
    assert!(
        net.directory()
            .records(&name(&net, spoofer), net.now())
            .is_empty()
    );

    // The honest neighbour carries on.
    send(&mut net, honest, v, b"really me");
    net.run_for(SECOND);
    assert_eq!(
        net.endpoint(victim).data_from(name(&net, honest)).count(),
        1
    );
}

#[test]
fn malformed_and_oversized_pdus_disconnect_the_sender_only() {
    let (mut net, routers) = overlay(10, |cfg| cfg.router.max_violations = 5);
    let bad = attached(&mut net, Kind::Client, "bad", routers[1]);
    let good = attached(&mut net, Kind::Client, "good", routers[1]);
    let peer = attached(&mut net, Kind::Client, "peer", routers[4]);
    let p = name(&net, peer);
    let link = net.endpoint(bad).link().expect("linked");

    let valid = Pdu::new(
        PduHeader::new(PduType::Data, p, name(&net, bad), 1),
        Bytes::from_static(b"x"),
    )
    .expect("small")
    .to_bytes();
    // A header announcing more than the largest payload.
    let mut oversized = valid.to_vec();
    oversized[76..80].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes());
    // A frame longer than the header says.
    let mut trailing = valid.to_vec();
    trailing.push(0);
    let frames = [
        Bytes::from_static(b"not a pdu"),
        valid.slice(..HEADER_LEN - 1),
        Bytes::from(trailing),
        Bytes::from(oversized),
    ];
    for f in frames {
        net.endpoint_mut(bad).send_raw(f);
    }
    net.flush_endpoint(bad);
    net.run_for(SECOND);
    let info = net
        .router(routers[1])
        .link_info(link)
        .expect("still linked");
    assert_eq!((info.malformed, info.oversized, info.violations), (3, 1, 4));
    let st = net.router(routers[1]).stats();
    assert_eq!((st.dropped.malformed, st.dropped.oversized), (3, 1));
    assert_eq!(st.links_closed, 0);

    // A frame larger than any PDU is the fifth violation.
    net.endpoint_mut(bad)
        .send_raw(Bytes::from(vec![0u8; HEADER_LEN + MAX_PAYLOAD_LEN + 1]));
    net.flush_endpoint(bad);
    net.run_for(SECOND);
    let st = net.router(routers[1]).stats();
    assert_eq!(st.dropped.oversized, 2);
    assert_eq!(st.links_closed, 1);
    assert_eq!(net.endpoint(bad).state(), AttachState::Detached);
    assert_eq!(net.endpoint(peer).received().len(), 2);

    send(&mut net, good, p, b"fine");
    net.run_for(SECOND);
    assert_eq!(net.endpoint(peer).data_from(name(&net, good)).count(), 1);
}

#[test]
fn pdus_before_attach_are_dropped() {
    let (mut net, routers) = overlay(10, |_| {});
    let target = attached(&mut net, Kind::Client, "target", routers[0]);
    let eager = net.add_endpoint(Kind::Client, "eager");
    net.attach(eager, routers[0]);
    // Sent before the challenge even arrives.
    let t = name(&net, target);
    send(&mut net, eager, t, b"too soon");
    net.run_for(SECOND);
    let st = net.router(routers[0]).stats();
    assert_eq!(st.dropped.not_attached, 1);
    assert_eq!(st.attaches, 2);
    assert_eq!(net.endpoint(target).data_from(name(&net, eager)).count(), 0);
}

#[test]
fn peering_policy_refuses_routers_outside_the_trust_domain() {
    let domain = SecretKey::from_seed(&[0xd0; 32]);
    let mut net = Network::new(NetConfig::default());
    let year = Duration::from_secs(365 * 86_400);
    let validity = Validity::new(
        net.now().saturating_sub(year),
        net.now().saturating_add(year),
    );
    let member = |id: &Identity, cfg: &mut CoreConfig| {
        cfg.peering = PeeringPolicy::TrustedOnly;
        cfg.trusted_domains = vec![domain.public()];
        cfg.domain_cert = Some(DomainCert::issue(&domain, id.name(), validity));
    };
    let strict = net.add_router_with(member);
    let fellow = net.add_router_with(member);
    let outsider = net.add_router();

    let ok = net.link_routers(strict, fellow);
    let refused = net.link_routers(strict, outsider);
    net.run_for(SECOND);
    let st = net.router(strict).stats();
    assert_eq!(st.peers_refused, 1);
    assert_eq!(st.links_closed, 1);
    assert_eq!(
        net.router(strict).router_link(&net.router_name(fellow)),
        Some(ok)
    );
    assert!(
        net.router(strict)
            .router_link(&net.router_name(outsider))
            .is_none()
    );
    assert!(net.router(strict).link_info(refused).is_none());
    // The outsider saw the link go down.
    assert!(net.router(outsider).link_info(refused).is_none());
}

#[test]
fn a_directory_outage_is_answered_with_directory_unavailable() {
    let (mut net, routers) = overlay(10, |_| {});
    let client = attached(&mut net, Kind::Client, "client", routers[0]);
    let server = attached(&mut net, Kind::Server, "store", routers[3]);
    net.directory_mut().set_available(false);
    let s = name(&net, server);
    send(&mut net, client, s, b"?");
    net.run_for(SECOND);
    let naks = net.endpoint(client).naks();
    assert_eq!(naks.len(), 1);
    assert_eq!(naks[0].reason, NakReason::DirectoryUnavailable);
    // Outages are not remembered: once the directory is back, it works.
    net.directory_mut().set_available(true);
    send(&mut net, client, s, b"!");
    net.run_for(SECOND);
    assert_eq!(
        net.endpoint(server).data_from(name(&net, client)).count(),
        1
    );
}

/// A Control PDU from `from` carrying `msg`, as a router would send it.
fn control_pdu(msg: ControlMessage, from: Name) -> Bytes {
    msg.to_pdu(Name::ZERO, from, 1)
        .expect("a small control message")
        .to_bytes()
}

#[test]
fn an_endpoint_refuses_a_challenge_naming_another_router() {
    let (mut net, routers) = overlay(3, |_| {});
    let r0 = net.router_name(routers[0]);
    let r1 = net.router_name(routers[1]);
    let careful = net.add_endpoint(Kind::Client, "careful");
    net.attach(careful, routers[0]);
    assert_eq!(net.endpoint(careful).router(), Some(r0));
    // Before router 0's own challenge arrives, a challenge for router 1
    // comes down the link: answering it would issue an RtCert for a router
    // this endpoint is not linked to.
    let forged = ControlMessage::AttachChallenge(AttachChallenge {
        router: r1,
        nonce: [7; 32],
    });
    let now = net.now();
    net.endpoint_mut(careful)
        .inject(now, control_pdu(forged, r1));
    net.run_for(SECOND);

    let ep = net.endpoint(careful);
    assert_eq!(ep.state(), AttachState::Failed);
    assert_eq!(
        ep.attach_error(),
        Some(&EndpointAttachError::Protocol(
            AttachViolation::WrongRouter {
                challenged: r1,
                linked: r0,
            }
        ))
    );
    assert!(ep.rtcert().is_none());
    // No proof ever left: router 0 saw neither an attach nor a failed one,
    // and nothing is published for the endpoint.
    let st = net.router(routers[0]).stats();
    assert_eq!((st.attaches, st.attach_failures), (0, 0));
    assert!(
        net.directory()
            .records(&name(&net, careful), net.now())
            .is_empty()
    );

    // An honest endpoint of the same router attaches with an RtCert for it.
    let honest = attached(&mut net, Kind::Client, "honest", routers[0]);
    assert_eq!(net.endpoint(honest).rtcert().map(RtCert::router), Some(r0));
    assert_eq!(net.endpoint(honest).attach_error(), None);
}

#[test]
fn an_endpoint_refuses_an_acceptance_before_its_proof() {
    let (mut net, routers) = overlay(2, |_| {});
    let r0 = net.router_name(routers[0]);
    let e = net.add_endpoint(Kind::Server, "wary");
    net.attach(e, routers[0]);
    let early = ControlMessage::AttachAccepted {
        endpoint: name(&net, e),
    };
    let now = net.now();
    net.endpoint_mut(e).inject(now, control_pdu(early, r0));
    net.run_for(SECOND);
    assert_eq!(net.endpoint(e).state(), AttachState::Failed);
    assert_eq!(
        net.endpoint(e).attach_error(),
        Some(&EndpointAttachError::Protocol(
            AttachViolation::AcceptedBeforeProof
        ))
    );
    assert_eq!(net.router(routers[0]).stats().attaches, 0);
}

/// A Data PDU from `src` to `dst`, as a router would pass it on.
fn forged(src: Name, dst: Name, seq: u64) -> Bytes {
    let header = PduHeader::new(PduType::Data, dst, src, seq);
    Pdu::new(header, Bytes::from_static(b"read this to the victim"))
        .expect("small")
        .to_bytes()
}

#[test]
fn a_router_no_verified_record_names_is_refused_by_default() {
    let (mut net, routers) = overlay(3, |_| {});
    let victim = routers[0];
    let (known, outsider) = (routers[1], routers[2]);
    net.run_for(SECOND);
    // The outsider's own record is gone from the directory: nothing
    // vouches for its key.
    let o = net.router_name(outsider);
    net.directory_mut().unpublish(o, o);
    assert!(net.directory().records(&o, net.now()).is_empty());

    let vouched = net.link_routers(known, victim);
    let refused = net.link_routers(outsider, victim);
    net.run_for(SECOND);
    let st = net.router(victim).stats();
    assert_eq!(st.peers_refused, 1);
    assert!(net.router(victim).link_info(refused).is_none());
    assert!(net.router(victim).router_link(&o).is_none());
    // The known router's own record vouched for it; its neighbour entry
    // says its sources are checked.
    let k = net.router_name(known);
    assert_eq!(net.router(victim).router_link(&k), Some(vouched));
    assert_eq!(
        net.router(victim)
            .fib()
            .lookup(&k, net.now())
            .map(|e| e.kind),
        Some(RouteKind::Vouched)
    );
}

#[test]
fn a_vouched_peer_that_forges_sources_is_cut_off_and_nothing_reaches_the_server() {
    let (mut net, routers) = overlay(3, |_| {});
    let (victim, home, hostile) = (routers[0], routers[1], routers[2]);
    let server = attached(&mut net, Kind::Server, "store", victim);
    net.endpoint_mut(server).set_echo(true);
    let target = attached(&mut net, Kind::Client, "target", home);
    let own = attached(&mut net, Kind::Client, "own", hostile);
    let (s, t, o) = (name(&net, server), name(&net, target), name(&net, own));
    let link = net.link_routers(hostile, victim);
    net.run_for(SECOND);
    assert!(
        net.router(victim)
            .router_link(&net.router_name(hostile))
            .is_some()
    );

    // The hostile router's own endpoint is its to send for: its first PDU
    // waits for the endpoint's record, which names the hostile router.
    send(&mut net, own, s, b"mine");
    net.run_for(SECOND);
    assert_eq!(net.endpoint(server).data_from(o).count(), 1);
    assert_eq!(net.endpoint(own).data_from(s).count(), 1);
    let st = net.router(victim).stats();
    assert_eq!(st.entitlement_misses, 1);
    assert_eq!(st.dropped.bad_source, 0);

    // Requests in the target's name: its record names another router.
    let max = net.router(victim).config().max_violations;
    for seq in 0..u64::from(max) {
        net.send_from_router(hostile, link, vec![forged(t, s, seq)]);
        net.run_for(SECOND / 10);
    }
    net.run_for(SECOND);
    let st = net.router(victim).stats();
    assert_eq!(st.dropped.bad_source, u64::from(max));
    assert_eq!(net.endpoint(server).data_from(t).count(), 0);
    assert_eq!(net.endpoint(target).data_from(s).count(), 0);
    // The last violation closed the link.
    assert!(net.router(victim).link_info(link).is_none());
    assert!(st.links_closed >= 1);
}

#[test]
fn a_vouched_peer_cannot_send_in_the_name_of_a_source_nobody_publishes() {
    let (mut net, routers) = overlay(2, |_| {});
    let (victim, hostile) = (routers[0], routers[1]);
    let server = attached(&mut net, Kind::Server, "store", victim);
    let s = name(&net, server);
    let link = net.link_routers(hostile, victim);
    net.run_for(SECOND);
    let ghost = Name::from_bytes([0x77; 32]);
    net.send_from_router(hostile, link, vec![forged(ghost, s, 1)]);
    net.run_for(SECOND);
    let st = net.router(victim).stats();
    assert_eq!(st.entitlement_misses, 1);
    assert_eq!(st.dropped.bad_source, 1);
    assert_eq!(net.endpoint(server).data_from(ghost).count(), 0);
    // The ghost is remembered as unreachable: the next one is refused at
    // once, without another lookup.
    let lookups = st.lookups;
    net.send_from_router(hostile, link, vec![forged(ghost, s, 2)]);
    net.run_for(SECOND / 10);
    let st = net.router(victim).stats();
    assert_eq!(st.dropped.bad_source, 2);
    assert_eq!(st.lookups, lookups);
}

#[test]
fn a_trusted_domain_peer_is_not_checked_per_pdu() {
    let domain = SecretKey::from_seed(&[0xd1; 32]);
    let mut net = Network::new(NetConfig::default());
    let year = Duration::from_secs(365 * 86_400);
    let validity = Validity::new(
        net.now().saturating_sub(year),
        net.now().saturating_add(year),
    );
    let member = |id: &Identity, cfg: &mut CoreConfig| {
        cfg.trusted_domains = vec![domain.public()];
        cfg.domain_cert = Some(DomainCert::issue(&domain, id.name(), validity));
    };
    let a = net.add_router_with(member);
    let b = net.add_router_with(member);
    let elsewhere = net.add_router();
    let server = attached(&mut net, Kind::Server, "store", a);
    let far = attached(&mut net, Kind::Client, "far", elsewhere);
    let (s, f) = (name(&net, server), name(&net, far));
    let link = net.link_routers(b, a);
    net.run_for(SECOND);
    let bn = net.router_name(b);
    assert_eq!(net.router(a).router_link(&bn), Some(link));
    assert_eq!(
        net.router(a).fib().lookup(&bn, net.now()).map(|e| e.kind),
        Some(RouteKind::Neighbor)
    );
    let lookups = net.router(a).stats().lookups;

    // A member of the domain is trusted to have checked its sources: a
    // source whose record names another router passes, unresolved.
    net.send_from_router(b, link, vec![forged(f, s, 1)]);
    net.run_for(SECOND / 10);
    assert_eq!(net.endpoint(server).data_from(f).count(), 1);
    let st = net.router(a).stats();
    assert_eq!(st.entitlement_misses, 0);
    assert_eq!(st.dropped.bad_source, 0);
    assert_eq!(st.lookups, lookups);
}

#[test]
fn a_router_behind_a_gateway_peers_with_it_under_the_default_policy() {
    let (mut net, routers) = overlay(2, |_| {});
    let gateway = routers[0];
    let private = net.add_private_router(gateway);
    let client = attached(&mut net, Kind::Client, "client", routers[1]);
    let server = attached(&mut net, Kind::Server, "hidden", private);
    net.endpoint_mut(server).set_echo(true);
    let (c, s) = (name(&net, client), name(&net, server));
    send(&mut net, client, s, b"through the gateway");
    net.run_for(2 * SECOND);
    assert_eq!(net.endpoint(server).data_from(c).count(), 1);
    assert_eq!(net.endpoint(client).data_from(s).count(), 1);
    // The private router trusts its configured gateway; the gateway found
    // the private router's own record in the directory, and checks the
    // sources it sends for.
    let (g, p) = (net.router_name(gateway), net.router_name(private));
    let now = net.now();
    assert_eq!(
        net.router(private).fib().lookup(&g, now).map(|e| e.kind),
        Some(RouteKind::Neighbor)
    );
    assert_eq!(
        net.router(gateway).fib().lookup(&p, now).map(|e| e.kind),
        Some(RouteKind::Vouched)
    );
    for r in [gateway, private, routers[1]] {
        assert_eq!(net.router(r).stats().dropped.bad_source, 0);
        assert_eq!(net.router(r).stats().peers_refused, 0);
    }
}

#[test]
fn trusted_only_refuses_a_vouched_router_and_insecure_open_checks_nothing() {
    let mut net = Network::new(NetConfig::default());
    let strict = net.add_router_with(|_, cfg| cfg.peering = PeeringPolicy::TrustedOnly);
    let open = net.add_router_with(|_, cfg| cfg.peering = PeeringPolicy::InsecureOpen);
    let other = net.add_router();
    let server = attached(&mut net, Kind::Server, "store", open);
    let s = name(&net, server);
    let refused = net.link_routers(other, strict);
    let link = net.link_routers(other, open);
    net.run_for(SECOND);
    assert_eq!(net.router(strict).stats().peers_refused, 1);
    assert!(net.router(strict).link_info(refused).is_none());
    // The open router forwards a source nobody publishes.
    let ghost = Name::from_bytes([0x78; 32]);
    net.send_from_router(other, link, vec![forged(ghost, s, 1)]);
    net.run_for(SECOND / 10);
    assert_eq!(net.endpoint(server).data_from(ghost).count(), 1);
    assert_eq!(net.router(open).stats().dropped.bad_source, 0);
}

#[test]
fn a_stale_loop_between_vouched_peers_is_cut_by_the_source_check() {
    let (mut net, routers) = overlay(3, |_| {});
    let ghost = Name::from_bytes([0x66; 32]);
    let client = super::ring_loop(&mut net, &routers, ghost);
    send(&mut net, client, ghost, b"round and round");
    net.run_for(2 * SECOND);
    // The second router passes it on (the client's record names the
    // first, its peer); the third, which knows nothing of the client yet,
    // holds it while it looks the client up and finds that the second is
    // not entitled to send as it.
    let stats: Vec<_> = routers.iter().map(|r| net.router(*r).stats()).collect();
    assert_eq!(stats.iter().map(|s| s.forwarded).sum::<u64>(), 2);
    assert_eq!(stats[2].entitlement_misses, 1);
    assert_eq!(stats[2].dropped.bad_source, 1);
    assert_eq!(stats.iter().map(|s| s.dropped.ttl).sum::<u64>(), 0);
}

#[test]
fn pdus_right_behind_a_hello_wait_while_the_directory_vouches_for_the_peer() {
    let (mut net, routers) = overlay(2, |_| {});
    let (victim, peer) = (routers[0], routers[1]);
    let server = attached(&mut net, Kind::Server, "store", victim);
    let own = attached(&mut net, Kind::Client, "own", peer);
    let (s, o) = (name(&net, server), name(&net, own));
    // The peer's hello and its endpoint's PDUs leave together, before the
    // victim has looked the peer up.
    let link = net.link_routers(peer, victim);
    net.send_from_router(peer, link, vec![forged(o, s, 1), forged(o, s, 2)]);
    net.run_for(SECOND);
    let got: Vec<u64> = net
        .endpoint(server)
        .data_from(o)
        .map(|p| p.header.seq)
        .collect();
    assert_eq!(got, vec![1, 2]);
    let st = net.router(victim).stats();
    // Held behind the peer's name, then behind the endpoint's.
    assert_eq!(st.entitlement_misses, 4);
    assert_eq!(st.dropped.total(), 0);
}
