//! Hostile peers against real processes: one test per attack of the
//! router's threat model (`SECURITY.md`), each against a
//! `gdp-router` process on loopback with a real `redis-server` as its
//! directory (and a `gdp-capsule-server` process for the attacks on
//! capsules), over real QUIC.
//!
//! Each test starts the router, then the unrelated pair (two endpoints
//! pinging each other through the same router every 10 ms, from
//! 127.0.0.1), runs one attack from `gdp_testkit::hostile` (from
//! 127.0.0.2) for a few seconds, and asserts two things: the attacker was
//! cut off or limited, as the router's counter for it (scraped from its
//! metrics endpoint) or the capsule server's refusal shows; and the pair
//! kept exchanging PDUs throughout, every ping answered and never more
//! than a second without an answer.
//!
//! The tests run one at a time (they share two cores, and each measures
//! what its own attack does to the pair). The capsule server is the
//! `gdp-capsule-server` binary that `cargo build --workspace --bins`
//! leaves next to the test (`scripts/test.sh` builds it).

#[allow(
    unused_imports,
    reason = "the helpers of every process test, this one using a part"
)]
mod common;
#[path = "hostile/scene.rs"]
mod scene;

use std::future::ready;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Name};
use gdp_link::endpoint::{EndpointEvent, EndpointLink};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::pdu::{Pdu, PduHeader, PduType};
use gdp_router::directory::route_key;
use gdp_testkit::eventually;
use gdp_testkit::hostile::capsule::{self, Reply};
use gdp_testkit::hostile::flood::{FLOOD_PAYLOAD, SMALL_PAYLOAD};
use gdp_testkit::hostile::{Stop, attacker_config, directory, flood, links};
use tokio::sync::{Mutex, MutexGuard};

use scene::{LOCAL, MAX_RSS, Scene, StaleScene, WAIT, assert_pair_held};

/// How long the attacks that stop by themselves run.
const ATTACK: Duration = Duration::from_secs(3);
/// The longest an attack that is stopped once its counter moves may run.
const ATTACK_AT_MOST: Duration = Duration::from_secs(12);

/// One test at a time (a failed test leaves the lock free: tokio's mutex
/// is not poisoned).
async fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}

/// Whether `key` has a record signed by `signer` in the directory now.
fn present(redis: &mut redis::Connection, key: &str, signer: Name) -> bool {
    directory::read_field(redis, key, signer)
        .expect("redis answers")
        .is_some()
}

/// Waits until the router's `metric` is above 0.
async fn counted(scene: &Scene, metric: &str) {
    eventually(WAIT, &format!("{metric} > 0"), || async {
        scene.metric(metric) > 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_that_never_attach_are_closed_at_the_attach_deadline() {
    let _serial = serial().await;
    let scene = Scene::start("unproven", false).await;
    let pair = scene.pair().await;

    let stop = Stop::after(ATTACK_AT_MOST);
    let attack = tokio::spawn(links::unproven_links(
        scene.addr(),
        scene.name(),
        200,
        stop.clone(),
    ));
    counted(&scene, "gdp_router_attach_timeouts_total").await;
    stop.cancel();
    let sent = attack.await.expect("the attack ends");
    eprintln!("attacker: {sent:?}");

    assert!(sent.links > 0, "no link completed TLS: {sent:?}");
    assert!(
        sent.links_closed > 0,
        "no unproven link was closed: {sent:?}"
    );
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_declared_router_cannot_make_a_server_answer_a_victim() {
    let _serial = serial().await;
    let scene = Scene::start("rogue", true).await;
    let pair = scene.pair().await;
    // A capsule with a backlog worth amplifying, and a victim.
    let mut owner = scene.client("owner").await;
    let mut writers = scene.create_capsules(&mut owner, 1).await;
    let w = &mut writers[0];
    let payloads = (0..64).map(|_| Bytes::from(vec![7u8; 1024]));
    let append = w.append_payloads(payloads);
    let appended = owner.call(w.capsule(), append, WAIT).await;
    assert!(
        matches!(&appended, Some(Reply::Response(r)) if matches!(**r, CapsuleResponse::Appended { .. })),
        "{appended:?}"
    );
    let victim = Identity::generate(Kind::Client, "victim").expect("identity");
    let mut victim_config = attacker_config(scene.addr(), scene.name());
    victim_config.transport.bind = SocketAddr::new(LOCAL, 0);
    let (victim_link, mut victim_rx) = EndpointLink::connect(&victim, &victim_config)
        .await
        .expect("the victim attaches");

    let sent = links::rogue_router(
        scene.addr(),
        scene.name(),
        victim.name(),
        w.capsule(),
        Stop::after(ATTACK),
    )
    .await;
    eprintln!("attacker: {sent:?}");
    counted(&scene, "gdp_router_peers_refused_total").await;
    if sent.links > sent.links_closed {
        // A link stayed up: its forged PDUs were dropped.
        counted(&scene, "gdp_router_dropped_total{reason=\"bad_source\"}").await;
    }

    // The victim got nothing from the server: a marker sent to it now
    // arrives first.
    let marker = Pdu::new(
        PduHeader::new(PduType::Data, victim.name(), owner.name(), 1),
        Bytes::from_static(b"marker"),
    )
    .expect("small");
    owner.link.send(&marker).await.expect("queued");
    let mut capsule_pdus = 0;
    loop {
        match tokio::time::timeout(WAIT, victim_rx.recv()).await {
            Ok(Some(EndpointEvent::Pdu { pdu, .. })) if pdu.header.ptype == PduType::Data => break,
            Ok(Some(EndpointEvent::Pdu { .. })) => capsule_pdus += 1,
            Ok(Some(_)) => {}
            other => panic!("the marker never reached the victim: {other:?}"),
        }
    }
    assert_eq!(capsule_pdus, 0, "the server answered the forged requests");
    victim_link.close("done");
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_stops_reading_does_not_stall_the_router() {
    let _serial = serial().await;
    let scene = Scene::start("stalled", false).await;
    let pair = scene.pair().await;

    let stop = Stop::after(ATTACK_AT_MOST);
    let attack = tokio::spawn(flood::stalled_receiver(
        scene.addr(),
        scene.name(),
        FLOOD_PAYLOAD,
        stop.clone(),
    ));
    eventually(
        WAIT,
        "the stalled link is closed or its queue sheds",
        || async {
            scene.metric("gdp_router_stalled_links_closed_total") > 0.0
                || scene.metric("gdp_router_dropped_total{reason=\"queue_full\"}") > 0.0
        },
    )
    .await;
    stop.cancel();
    let sent = attack.await.expect("the attack ends");
    eprintln!("attacker: {sent:?}");
    assert!(sent.pdus > 0, "{sent:?}");
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertise_floods_with_forged_adcerts_are_cut_off() {
    let _serial = serial().await;
    let scene = Scene::start("advertise", false).await;
    let pair = scene.pair().await;

    let sent =
        flood::advertise_flood(scene.addr(), scene.name(), Stop::after(ATTACK_AT_MOST)).await;
    eprintln!("attacker: {sent:?}");
    // Refused after verification, or before it once the link's
    // verification budget is spent.
    eventually(WAIT, "forged AdCerts are counted as refused", || async {
        scene.metric("gdp_router_adcerts_rejected_total") > 0.0
            || scene.metric("gdp_router_adcerts_throttled_total") > 0.0
    })
    .await;
    assert_eq!(
        sent.links_closed, 1,
        "the advertiser is still linked: {sent:?}"
    );
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_beyond_the_quota_are_refused() {
    let _serial = serial().await;
    let scene = Scene::start("creates", true).await;
    let pair = scene.pair().await;

    let answers = capsule::create_flood(
        scene.addr(),
        scene.name(),
        scene.server(),
        Stop::after(ATTACK),
    )
    .await;
    eprintln!("attacker: {answers:?}");
    assert!(answers.refused > 0, "no create was refused: {answers:?}");
    assert!(
        answers.codes.contains(&ErrorCode::RateLimited),
        "{answers:?}"
    );
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_writer_cannot_append_nor_drain_the_writers_budget() {
    let _serial = serial().await;
    let scene = Scene::start("nonwriter", true).await;
    let pair = scene.pair().await;
    let mut owner = scene.client("owner").await;
    let mut writers = scene.create_capsules(&mut owner, 1).await;
    let w = &mut writers[0];

    let answers = capsule::foreign_appends(
        scene.addr(),
        scene.name(),
        w.capsule(),
        w.owner.public(),
        Stop::after(ATTACK),
    )
    .await;
    eprintln!("attacker: {answers:?}");
    assert_eq!(answers.accepted, 0, "{answers:?}");
    assert!(answers.refused > 0, "{answers:?}");

    // The writer still appends at once.
    let append = w.append(4);
    let reply = owner.call(w.capsule(), append, WAIT).await;
    assert!(
        matches!(&reply, Some(Reply::Response(r)) if **r == CapsuleResponse::Appended { tail: 4 }),
        "{reply:?}"
    );
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_hold_more_than_its_share_of_subscriptions() {
    const PER_PEER: u64 = 64;
    let _serial = serial().await;
    let scene = Scene::start("subscriptions", true).await;
    let pair = scene.pair().await;
    let mut owner = scene.client("owner").await;
    let writers = scene.create_capsules(&mut owner, 72).await;
    let capsules: Vec<_> = writers.iter().map(|w| w.capsule()).collect();

    let answers = capsule::subscription_hoard(
        scene.addr(),
        scene.name(),
        &capsules,
        Stop::after(Duration::from_secs(1)),
    )
    .await;
    eprintln!("attacker: {answers:?}");
    assert!(answers.accepted <= PER_PEER, "{answers:?}");
    assert_eq!(
        answers.accepted + answers.refused,
        capsules.len() as u64,
        "{answers:?}"
    );
    // Another peer still subscribes.
    let reply = owner
        .call(capsules[0], CapsuleRequest::Subscribe { from: 1 }, WAIT)
        .await;
    assert!(
        matches!(&reply, Some(Reply::Response(r)) if matches!(**r, CapsuleResponse::Subscribed { .. })),
        "{reply:?}"
    );
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_pdus_to_a_stalled_receiver_stay_within_the_memory_target() {
    let _serial = serial().await;
    let scene = Scene::start("memory", false).await;
    let pair = scene.pair().await;

    let stop = Stop::after(ATTACK_AT_MOST);
    let attack = tokio::spawn(flood::stalled_receiver(
        scene.addr(),
        scene.name(),
        SMALL_PAYLOAD,
        stop.clone(),
    ));
    // Once the receiver's queue is full, the flooder's batches are dropped
    // and its link's reads paused.
    counted(&scene, "gdp_router_drop_penalties_total").await;
    tokio::time::timeout(Duration::from_secs(2), stop.wait())
        .await
        .unwrap_or_default();
    stop.cancel();
    let sent = attack.await.expect("the attack ends");
    let stats = scene.router_stats();
    eprintln!("attacker: {sent:?}; router: {stats:?}");
    assert!(sent.pdus > 0, "{sent:?}");
    assert!(
        stats.peak_rss <= MAX_RSS,
        "the router peaked at {} MiB",
        stats.peak_rss >> 20
    );
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_storm_is_limited_per_source() {
    let _serial = serial().await;
    let scene = Scene::start("lookups", false).await;
    let pair = scene.pair().await;

    let stop = Stop::after(ATTACK_AT_MOST);
    let attack = tokio::spawn(flood::lookup_storm(
        scene.addr(),
        scene.name(),
        100_000,
        stop.clone(),
    ));
    counted(&scene, "gdp_router_lookups_limited_total").await;
    // Its batches, mostly dropped, pause its link's reads.
    counted(&scene, "gdp_router_drop_penalties_total").await;
    // The storm goes on a little once limited: the pair must not notice.
    tokio::time::timeout(ATTACK, stop.wait())
        .await
        .unwrap_or_default();
    stop.cancel();
    let sent = attack.await.expect("the attack ends");
    eprintln!("attacker: {sent:?}");
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_vandalism_is_repaired_and_dial_storms_are_bounded() {
    let _serial = serial().await;
    let scene = Scene::start("vandal", false).await;
    let pair = scene.pair().await;
    let mut redis = scene.redis.connection().expect("redis");
    let (router, key) = (scene.name(), route_key(&scene.name()));
    eventually(WAIT, "the router published its record", || {
        ready(present(&mut redis, &key, router))
    })
    .await;

    // Junk under its name, then its record altered: it notices and repairs
    // it, the junk notwithstanding.
    directory::junk_fields(&mut redis, &key, 256).expect("redis");
    assert!(directory::alter_field(&mut redis, &key, router).expect("redis"));
    let altered = directory::read_field(&mut redis, &key, router).expect("redis");
    counted(&scene, "gdp_router_records_repaired_total").await;
    eventually(WAIT, "the altered record was replaced", || {
        let now = directory::read_field(&mut redis, &key, router).expect("redis");
        ready(now.is_some() && now != altered)
    })
    .await;
    // Deleted: published again.
    let repaired = scene.metric("gdp_router_records_repaired_total");
    assert!(directory::delete_key(&mut redis, &key).expect("redis"));
    eventually(WAIT, "the deleted record was published again", || {
        ready(present(&mut redis, &key, router))
    })
    .await;
    assert!(scene.metric("gdp_router_records_repaired_total") > repaired);

    // Throwaway names whose valid records list unreachable addresses, then
    // PDUs to them from two sources (one alone is held to 64 names resolving
    // at once by its lookup budget): twice as many names as the router dials
    // at once (64 by default), so its dials are refused past its limit.
    let (names, _) = directory::dial_storm_records(&mut redis, route_key, 128).expect("redis");
    let stop = Stop::after(ATTACK_AT_MOST);
    let attacks: Vec<_> = names
        .chunks(64)
        .map(|names| {
            tokio::spawn(flood::send_to_names(
                scene.addr(),
                scene.name(),
                names.to_vec(),
                stop.clone(),
            ))
        })
        .collect();
    counted(&scene, "gdp_router_dials_refused_total{reason=\"limit\"}").await;
    stop.cancel();
    for attack in attacks {
        let sent = attack.await.expect("the attack ends");
        eprintln!("attacker: {sent:?}");
    }
    assert!(scene.metric("gdp_router_dials_running") <= 64.0);
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_record_replayed_next_to_a_fresh_one_loses() {
    let _serial = serial().await;
    let scene = Scene::start("stale", false).await;
    let pair = scene.pair().await;
    let StaleScene {
        b,
        mut b_rx,
        routers: _routers,
    } = StaleScene::start(&scene).await;

    // One PDU from a (on the scene's router) to b: the router picks the
    // fresh record, so that one PDU arrives.
    let a = scene.client("a").await;
    let pdu = Pdu::new(
        PduHeader::new(PduType::Data, b.name(), a.name(), 1),
        Bytes::from_static(b"to the fresh b"),
    )
    .expect("small");
    a.link.send(&pdu).await.expect("queued");
    loop {
        match tokio::time::timeout(WAIT, b_rx.recv()).await {
            Ok(Some(EndpointEvent::Pdu { pdu, .. })) if pdu.header.ptype == PduType::Data => {
                assert_eq!(pdu.header.src, a.name());
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("the PDU went to the stale address: {other:?}"),
        }
    }
    assert_pair_held(&pair.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_order_heartbeats_are_refused_by_the_server() {
    let _serial = serial().await;
    let scene = Scene::start("edge", true).await;
    let pair = scene.pair().await;

    let answers = capsule::small_order_heartbeats(
        scene.addr(),
        scene.name(),
        scene.server(),
        Stop::after(Duration::from_secs(1)),
    )
    .await;
    eprintln!("attacker: {answers:?}");
    assert_eq!(answers.accepted, 0, "{answers:?}");
    assert!(answers.refused > 0, "{answers:?}");
    assert_eq!(answers.codes, vec![ErrorCode::BadHeartbeat], "{answers:?}");
    assert_pair_held(&pair.finish().await);
}
