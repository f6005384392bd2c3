//! `gdp-router` as real processes on loopback: forwarding across routers
//! over Redis and Redis Cluster, the zero-configuration start, hostile
//! peers, bad directory records, a Redis outage and a router crash.
//!
//! Each test spawns the built binary, talks to it through
//! `gdp_link::endpoint` clients (or bare QUIC peers that misbehave) and
//! reads its counters from its metrics endpoint. Every process is killed
//! when its handle drops, so a failing test leaves nothing running; a
//! failing test prints the end of each router's log.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gdp_certs::cert::{RouteRecord, RouteTarget, Validity};
use gdp_certs::{Identity, Kind, Name, Timestamp};
use gdp_link::endpoint::{EndpointEvent, EndpointLink};
use gdp_proto::Encode;
use gdp_proto::control::NakReason;
use gdp_proto::pdu::{MAX_PAYLOAD_LEN, Pdu, PduHeader, PduType};
use gdp_router::config::{DEFAULT_ADMIN, DEFAULT_PORT};
use gdp_router::directory::route_key;
use gdp_testkit::{RedisCluster, RedisServer, eventually};

use common::endpoint::WARMUP;
use common::process::scrape;
use common::{
    RouterProcess, TempDir, TestEndpoint, close_code, drain, exited_cleanly, open_route, raw_peer,
    run_to_exit, start_router,
};

/// PDUs each way in the bulk exchanges.
const BULK: u64 = 10_000;
/// Payload bytes of each bulk PDU.
const BULK_PAYLOAD: usize = 64;
/// PDUs per `send_batch` call.
const BATCH: u64 = 500;
/// Longest wait for anything a test expects.
const WAIT: Duration = Duration::from_secs(10);

/// The payload of bulk PDU `seq`: the number, then filler derived from it.
fn bulk_payload(seq: u64) -> Bytes {
    let mut v = seq.to_be_bytes().to_vec();
    v.resize(BULK_PAYLOAD, (seq % 251) as u8);
    Bytes::from(v)
}

/// Bulk PDUs `seqs` from `src` to `dst`, encoded.
fn bulk_batch(src: Name, dst: Name, seqs: std::ops::Range<u64>) -> Vec<Bytes> {
    seqs.map(|s| {
        Pdu::new(PduHeader::new(PduType::Data, dst, src, s), bulk_payload(s))
            .expect("within limits")
            .to_bytes()
    })
    .collect()
}

/// Sends PDUs 1..=BULK from `src` to `dst` in batches.
async fn send_bulk(link: EndpointLink, src: Name, dst: Name) {
    let mut seq = 1;
    while seq <= BULK {
        let end = (seq + BATCH).min(BULK + 1);
        link.send_batch(bulk_batch(src, dst, seq..end))
            .await
            .expect("queued");
        seq = end;
    }
}

/// Receives PDUs 1..=BULK from `src`, checking each arrives once, in order
/// and intact.
async fn receive_bulk(ep: &mut TestEndpoint, src: Name) {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut next = 1;
    while next <= BULK {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(pdu) = ep.next_data(left).await else {
            panic!("{} of {BULK} PDUs arrived", next - 1);
        };
        if pdu.payload == WARMUP {
            continue;
        }
        assert_eq!(pdu.header.src, src);
        assert_eq!(pdu.header.seq, next, "a PDU was lost or reordered");
        assert_eq!(pdu.payload, bulk_payload(next), "PDU {next} was altered");
        next += 1;
    }
}

/// Both directions at once: `a` and `b` each send and receive BULK PDUs.
async fn exchange(a: &mut TestEndpoint, b: &mut TestEndpoint) {
    open_route(a, b, WAIT).await;
    open_route(b, a, WAIT).await;
    let (a_name, b_name) = (a.name(), b.name());
    let (a_link, b_link) = (a.link.clone(), b.link.clone());
    let started = Instant::now();
    tokio::join!(
        send_bulk(a_link, a_name, b_name),
        send_bulk(b_link, b_name, a_name),
        receive_bulk(b, a_name),
        receive_bulk(a, b_name),
    );
    eprintln!("{} PDUs each way in {:?}", BULK, started.elapsed());
}

/// Receives Data PDUs 1..=count from `src`, in order, skipping late
/// warm-ups.
async fn expect_seqs(ep: &mut TestEndpoint, src: Name, count: u64) {
    let mut next = 1;
    while next <= count {
        let Some(pdu) = ep.next_data(WAIT).await else {
            panic!("{} of {count} PDUs arrived", next - 1);
        };
        if pdu.payload == WARMUP {
            continue;
        }
        assert_eq!((pdu.header.src, pdu.header.seq), (src, next));
        next += 1;
    }
}

/// Number of keys `name` has in the directory's Redis (0 or 1).
fn route_key_exists(redis: &RedisServer, name: Name) -> i64 {
    match redis
        .query(redis::cmd("EXISTS").arg(route_key(&name)))
        .expect("redis answers")
    {
        redis::Value::Int(n) => n,
        other => panic!("EXISTS answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_routers_over_redis_carry_ten_thousand_pdus_each_way() {
    let redis = RedisServer::start();
    let dir = TempDir::new("redis3");
    let mut r1 = start_router(&dir, "r1", &redis.url(), &[]);
    let mut r2 = start_router(&dir, "r2", &redis.url(), &[]);
    // r3 has no public address: it is reached through its gateway r2.
    let via = format!("{}@{}", r2.name(), r2.addr());
    let mut r3 = start_router(&dir, "r3", &redis.url(), &["--via", &via]);
    let mut a = TestEndpoint::attach(r1.addr(), r1.name(), "a").await;
    let mut b = TestEndpoint::attach(r3.addr(), r3.name(), "b").await;

    exchange(&mut a, &mut b).await;

    // a -> b went through the gateway (b -> a may go straight to r1, which
    // has a public address), and nothing was dropped anywhere.
    assert!(r2.metric("gdp_router_forwarded_total") >= BULK as f64);
    for r in [&r1, &r2, &r3] {
        let m = r.metrics();
        // The link readers forwarded most of it themselves; what they left
        // to the forwarding core still arrived in order (checked above).
        let (fast, all) = (
            m["gdp_router_fast_forwarded_total"],
            m["gdp_router_forwarded_total"],
        );
        eprintln!("{fast} of {all} PDUs forwarded by link readers");
        assert!(fast > 0.0 && fast <= all);
        assert_eq!(m["gdp_router_dropped_total{reason=\"queue_full\"}"], 0.0);
        assert_eq!(m["gdp_router_send_dropped_total"], 0.0);
    }

    // A graceful stop withdraws the router's records and exits with 0.
    assert_eq!(route_key_exists(&redis, b.name()), 1);
    assert_eq!(route_key_exists(&redis, r3.name()), 1);
    assert!(exited_cleanly(r3.terminate()));
    assert_eq!(route_key_exists(&redis, b.name()), 0);
    assert_eq!(route_key_exists(&redis, r3.name()), 0);
    assert!(b.wait_down(WAIT).await);
    assert!(exited_cleanly(r1.terminate()));
    assert!(exited_cleanly(r2.terminate()));
    assert_eq!(route_key_exists(&redis, a.name()), 0);
}

/// Waits until `name` has a record in the directory.
async fn published_within(redis: &RedisServer, name: Name, within: Duration, what: &str) {
    eventually(within, what, || async {
        route_key_exists(redis, name) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_routers_publish_their_records_at_start() {
    let redis = RedisServer::start();
    let dir = TempDir::new("idle");
    let r1 = start_router(&dir, "r1", &redis.url(), &[]);
    // Nothing attaches, nothing is sent and no router dials it: a router
    // alone still publishes its own record, well before the directory
    // audit (10 s) would repair a missing one.
    let within = Duration::from_secs(5);
    published_within(&redis, r1.name(), within, "r1 published its record").await;
    // A router behind a gateway publishes a record through it and dials it.
    let via = format!("{}@{}", r1.name(), r1.addr());
    let r2 = start_router(&dir, "r2", &redis.url(), &["--via", &via]);
    published_within(&redis, r2.name(), within, "r2 published its record").await;
    eventually(within, "r2 dialed its gateway", || async {
        r2.metric("gdp_router_links") >= 1.0
    })
    .await;
}

/// No warm-up: a stream of PDUs starts towards a name r1 has never looked
/// up. The first ones wait for the lookup in the forwarding core (those
/// beyond its pending bound are dropped and counted), later ones are taken
/// by the link reader once the route is in the FIB. The sender goes on, in
/// paced batches, until r1's link readers have taken some, so the stream
/// crosses from one path to the other mid-flow however long the lookup
/// takes. Whatever arrives must arrive in order, the first PDU (which
/// started the lookup) through the core, and every PDU is either delivered
/// or counted as dropped (by r1 while it looks b up, or by r2 while it
/// checks, with one lookup of r1 and one of a, that r1 may send for a).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdus_sent_before_a_lookup_ends_keep_their_order_through_the_fast_path() {
    let redis = RedisServer::start();
    let dir = TempDir::new("order");
    let r1 = start_router(&dir, "r1", &redis.url(), &[]);
    let r2 = start_router(&dir, "r2", &redis.url(), &[]);
    let a = TestEndpoint::attach(r1.addr(), r1.name(), "a").await;
    let mut b = TestEndpoint::attach(r2.addr(), r2.name(), "b").await;
    published_within(&redis, b.name(), WAIT, "b's route record appeared").await;

    let metrics = r1.start.metrics.expect("r1 serves metrics");
    let mut sender = tokio::spawn(send_until_fast(a.link.clone(), a.name(), b.name(), metrics));
    let mut sent = None;
    let (mut first, mut last, mut received) = (0, 0, 0u64);
    let deadline = Instant::now() + Duration::from_secs(40);
    while sent.is_none_or(|n| last < n) {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            n = &mut sender, if sent.is_none() => sent = Some(n.expect("the sender ends")),
            pdu = b.next_data(left) => {
                let Some(pdu) = pdu else {
                    panic!("{received} PDUs arrived, the last {last}, of {sent:?} sent");
                };
                assert_eq!(pdu.header.src, a.name());
                assert!(pdu.header.seq > last, "PDU {} after {last}", pdu.header.seq);
                assert_eq!(pdu.payload, bulk_payload(pdu.header.seq));
                if first == 0 {
                    first = pdu.header.seq;
                }
                last = pdu.header.seq;
                received += 1;
            }
        }
    }
    let sent = sent.expect("the loop ends once the sender has");
    let m = r1.metrics();
    // Dropped while r1 looked b up, and while r2 looked a up to check that
    // r1 may send in a's name (r1 is no trusted peer of r2).
    // A sender whose batches were mostly dropped meanwhile may have had
    // its reads paused and, at the longest pause, batches read only in
    // part (`penalty`).
    let full = "gdp_router_dropped_total{reason=\"queue_full\"}";
    let penalty = "gdp_router_dropped_total{reason=\"penalty\"}";
    let dropped = m[full] + m[penalty] + r2.metrics()[full];
    let fast = m["gdp_router_fast_forwarded_total"];
    eprintln!(
        "{received} of {sent} delivered, {dropped} dropped while the lookups ran, {fast} forwarded by r1's link readers"
    );
    assert_eq!(received as f64 + dropped, sent as f64);
    assert_eq!(first, 1, "the PDU that started the lookup is delivered");
    // Some through r1's core, the rest through its link readers (r2 may
    // have dropped some of either while it looked a up).
    assert!(fast > 0.0 && fast < sent as f64);
}

/// Sends PDUs numbered from 1 from `src` to `dst`, in batches with a pause
/// after each, until at least [`BULK`] are sent and the router whose
/// metrics are at `metrics` has forwarded some of them through its link
/// readers; returns how many it sent.
async fn send_until_fast(link: EndpointLink, src: Name, dst: Name, metrics: SocketAddr) -> u64 {
    const PACED_BATCH: u64 = 100;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seq = 1;
    loop {
        link.send_batch(bulk_batch(src, dst, seq..seq + PACED_BATCH))
            .await
            .expect("queued");
        seq += PACED_BATCH;
        tokio::time::sleep(Duration::from_millis(1)).await;
        if seq > BULK {
            let m = tokio::task::spawn_blocking(move || scrape(metrics))
                .await
                .expect("scraped");
            if m["gdp_router_fast_forwarded_total"] > 0.0 {
                return seq - 1;
            }
            assert!(
                Instant::now() < deadline,
                "r1's link readers never took over"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_routers_over_a_redis_cluster_carry_ten_thousand_pdus_each_way() {
    let cluster = RedisCluster::start(3);
    let spec = cluster.config_string();
    let dir = TempDir::new("cluster3");
    let r1 = start_router(&dir, "r1", &spec, &[]);
    let r2 = start_router(&dir, "r2", &spec, &[]);
    let r3 = start_router(&dir, "r3", &spec, &[]);
    let mut a = TestEndpoint::attach(r1.addr(), r1.name(), "a").await;
    let mut b = TestEndpoint::attach(r3.addr(), r3.name(), "b").await;
    let mut c = TestEndpoint::attach(r2.addr(), r2.name(), "c").await;

    exchange(&mut a, &mut b).await;
    // The third router is reachable too.
    open_route(&c, &mut a, WAIT).await;
    open_route(&a, &mut c, WAIT).await;

    for r in [&r1, &r2, &r3] {
        let m = r.metrics();
        let info = format!(
            "gdp_router_info{{name=\"{}\",backend=\"redis-cluster\"}}",
            r.name()
        );
        assert_eq!(m[&info], 1.0);
        assert_eq!(m["gdp_router_directory_errors_total{op=\"publish\"}"], 0.0);
        assert_eq!(m["gdp_router_dropped_total{reason=\"queue_full\"}"], 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_configuration_the_router_makes_its_key_and_serves() {
    let dir = TempDir::new("defaults");
    let data = dir.path().join("data");
    let mut args = vec!["--data-dir".to_owned(), data.display().to_string()];
    // The documented default port, unless something else holds it.
    let default_free = std::net::UdpSocket::bind(("0.0.0.0", DEFAULT_PORT)).is_ok();
    // The admin API on loopback, unless another router here holds it.
    let admin_free = std::net::TcpListener::bind(DEFAULT_ADMIN).is_ok();
    if !default_free {
        common::endpoint::note("port 7474 is taken; the default-port check is skipped");
        args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
    }
    let mut r = RouterProcess::start("defaults", dir.path(), &args);

    let key = data.join("gdp-router.key");
    assert_eq!(r.start.key, key);
    assert!(r.start.key_created);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("key file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(Identity::load(&key).expect("loads").name(), r.name());
    if admin_free {
        assert_eq!(r.start.metrics, Some(DEFAULT_ADMIN));
    } else {
        // Taken by another router on this host: a warning, no admin API,
        // and the router serves all the same.
        assert!(matches!(r.start.metrics, None | Some(DEFAULT_ADMIN)));
    }
    if default_free {
        assert_eq!(r.start.listen.port(), DEFAULT_PORT);
    }

    // It serves: a client attaches and the router answers its ping.
    let mut addr = r.addr();
    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    let mut e = TestEndpoint::attach(addr, r.name(), "e").await;
    let ping = Pdu::new(
        PduHeader::new(PduType::Ping, r.name(), e.name(), 9),
        Bytes::from_static(b"ping"),
    )
    .expect("small");
    e.link.send(&ping).await.expect("queued");
    match e.next_event(WAIT).await {
        Some(EndpointEvent::Pdu { pdu, .. }) => {
            assert_eq!(pdu.header.ptype, PduType::Pong);
            assert_eq!((pdu.header.src, pdu.header.seq), (r.name(), 9));
            assert_eq!(&pdu.payload[..], b"ping");
        }
        other => panic!("expected a pong, got {other:?}"),
    }
    assert!(exited_cleanly(r.terminate()));

    // Started again, it keeps its key and name.
    r.restart();
    assert!(!r.start.key_created);
    assert_eq!(Identity::load(&key).expect("loads").name(), r.name());
    assert!(exited_cleanly(r.terminate()));
}

#[test]
fn bad_settings_stop_the_router_with_a_clear_message() {
    let (status, err) = run_to_exit(&["--directory", "nonsense"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("unknown directory"), "{err}");

    let dir = TempDir::new("badconfig");
    std::fs::write(dir.path().join("typo.toml"), "listn = \"127.0.0.1:0\"\n").expect("writes");
    let typo = dir.path().join("typo.toml").display().to_string();
    let (status, err) = run_to_exit(&["--config", &typo]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("listn"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capsule_server_table_embeds_a_server_that_attaches() {
    let dir = TempDir::new("embedded");
    let config = dir.path().join("router.toml");
    std::fs::write(&config, "[capsule_server]\nlabel = \"embedded\"\n").expect("writes");
    let config = config.display().to_string();
    let mut r = start_router(&dir, "r", "memory", &["--config", &config]);

    // The server attaches over loopback as an endpoint of kind server.
    eventually(WAIT, "the embedded server attached", || async {
        r.metrics().keys().any(|k| {
            k.starts_with("gdp_router_link_rtt_seconds{")
                && k.contains("kind=\"server\",role=\"endpoint\"")
        })
    })
    .await;
    assert!(dir.path().join("r").join("capsule-server").is_dir());
    assert_eq!(r.metric("gdp_router_attaches_total"), 1.0);
    // It stops with the router, which still exits cleanly.
    assert!(exited_cleanly(r.terminate()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_counted_and_cut_off_while_others_carry_on() {
    let dir = TempDir::new("hostile");
    let r = start_router(&dir, "r", "memory", &["--max-violations", "8"]);
    let mut a = TestEndpoint::attach(r.addr(), r.name(), "a").await;
    let mut b = TestEndpoint::attach(r.addr(), r.name(), "b").await;
    open_route(&a, &mut b, WAIT).await;

    // An attached client claiming to be `a`: dropped and counted.
    let mut s = TestEndpoint::attach(r.addr(), r.name(), "spoofer").await;
    let (a_name, b_name) = (a.name(), b.name());
    let spoofed = |seq| {
        Pdu::new(
            PduHeader::new(PduType::Data, b_name, a_name, seq),
            Bytes::from_static(b"spoofed"),
        )
        .expect("small")
        .to_bytes()
    };
    for seq in 1..=3 {
        s.link.send_encoded(spoofed(seq)).await.expect("queued");
    }
    s.send_data(b.name(), 4, "legit").await;
    // Same stream, so had the spoofed ones passed they would come first.
    let pdu = b.next_data(WAIT).await.expect("the legit PDU arrives");
    assert_eq!(
        (pdu.header.src, &pdu.payload[..]),
        (s.name(), &b"legit"[..])
    );
    assert_eq!(
        r.metric("gdp_router_dropped_total{reason=\"bad_source\"}"),
        3.0
    );
    // More of them: the link is cut at the limit.
    for seq in 5..=12 {
        s.link.send_encoded(spoofed(seq)).await.expect("queued");
    }
    assert!(s.wait_down(WAIT).await, "the spoofer is still attached");

    // Datagrams that are not PDUs: the transport cuts the peer off.
    let (_m_endpoint, m) = raw_peer(r.addr(), r.name()).await;
    for _ in 0..10 {
        let _ = m.send_datagram(Bytes::from_static(b"not a pdu at all"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(close_code(&m, WAIT).await, Some(2), "closed as malformed");

    // A header announcing more than the largest PDU: the stream cannot be
    // read past it, so the link is closed at once.
    let (_o_endpoint, o) = raw_peer(r.addr(), r.name()).await;
    let mut header = PduHeader::new(PduType::Data, b.name(), Name::ZERO, 1).to_array();
    header[76..80].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes());
    let mut stream = o.open_uni().await.expect("opens a stream");
    stream.write_all(&header).await.expect("writes");
    assert!(
        close_code(&o, WAIT).await.is_some(),
        "the oversized sender is cut off"
    );

    // Control messages that do not decode, from an attached client.
    let mut c = TestEndpoint::attach(r.addr(), r.name(), "garbage").await;
    for seq in 1..=8 {
        let junk = Pdu::new(
            PduHeader::new(PduType::Advertise, Name::ZERO, c.name(), seq),
            Bytes::from_static(&[0xee; 40]),
        )
        .expect("small");
        c.link.send(&junk).await.expect("queued");
    }
    assert!(
        c.wait_down(WAIT).await,
        "the garbage sender is still attached"
    );

    let m = r.metrics();
    // 3, then 5 more reached the limit of 8; the rest came after the close.
    assert_eq!(m["gdp_router_dropped_total{reason=\"bad_source\"}"], 8.0);
    assert_eq!(m["gdp_router_dropped_total{reason=\"malformed\"}"], 8.0);
    assert!(m["gdp_router_malformed_total{where=\"datagram\"}"] >= 8.0);
    assert_eq!(m["gdp_router_malformed_total{where=\"stream\"}"], 1.0);
    assert_eq!(m["gdp_router_oversized_total"], 1.0);
    assert!(m["gdp_router_links_closed_total"] >= 2.0);

    // Through all of it, a and b carry on.
    drain(&mut b, Duration::from_millis(100)).await;
    for seq in 1..=100 {
        a.send_data(b.name(), seq, "after").await;
        b.send_data(a.name(), seq, "after").await;
    }
    expect_seqs(&mut b, a_name, 100).await;
    expect_seqs(&mut a, b_name, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_forged_in_redis_are_counted_as_bad_and_end_in_a_nak() {
    let redis = RedisServer::start();
    let dir = TempDir::new("forged");
    let r = start_router(&dir, "r", &redis.url(), &[]);
    let mut a = TestEndpoint::attach(r.addr(), r.name(), "a").await;

    // Under the key of `x`: garbage, and a genuinely signed record of
    // another name (a router's own record) moved there by hand.
    let x = Identity::generate(Kind::Client, "x")
        .expect("identity")
        .name();
    let now = Timestamp::now();
    let hour = Duration::from_secs(3600);
    let expiry = now.saturating_add(hour).0.to_be_bytes();
    let other = Identity::generate(Kind::Router, "other").expect("identity");
    let record = RouteRecord::sign(
        &other,
        other.name(),
        RouteTarget::Router,
        vec!["127.0.0.1:9".parse().expect("address")],
        None,
        Validity::new(now.saturating_sub(hour), now.saturating_add(hour)),
    )
    .expect("signs")
    .to_bytes();
    let garbage = [&expiry[..], b"not a route record"].concat();
    let moved = [&expiry[..], &record[..]].concat();
    redis
        .query(
            redis::cmd("HSET")
                .arg(route_key(&x))
                .arg(&[1u8; 32][..])
                .arg(garbage)
                .arg(&other.name().as_bytes()[..])
                .arg(moved),
        )
        .expect("writes");

    a.send_data(x, 7, "to x").await;
    let nak = a.next_nak(WAIT).await.expect("a NAK");
    assert_eq!(
        (nak.unreachable, nak.reason, nak.seq),
        (x, NakReason::NoRoute, 7)
    );
    let m = r.metrics();
    assert_eq!(m["gdp_router_bad_records_total"], 2.0);
    assert_eq!(m["gdp_router_lookup_failures_total"], 1.0);
    assert_eq!(m["gdp_router_dropped_total{reason=\"no_route\"}"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_keeps_cached_routes_and_heals_without_restarts() {
    let mut redis = RedisServer::start();
    let dir = TempDir::new("outage");
    let r1 = start_router(&dir, "r1", &redis.url(), &[]);
    let r2 = start_router(&dir, "r2", &redis.url(), &[]);
    let mut a = TestEndpoint::attach(r1.addr(), r1.name(), "a").await;
    let mut b = TestEndpoint::attach(r2.addr(), r2.name(), "b").await;
    let mut c = TestEndpoint::attach(r2.addr(), r2.name(), "c").await;
    open_route(&a, &mut b, WAIT).await;
    open_route(&b, &mut a, WAIT).await;

    // Redis dies while a streams to b: the cached route carries every PDU.
    let forwarded = r1.metric("gdp_router_forwarded_total");
    let (a_name, b_name, a_link) = (a.name(), b.name(), a.link.clone());
    let stream = tokio::spawn(async move {
        for seq in 1..=400 {
            let pdu = Pdu::new(
                PduHeader::new(PduType::Data, b_name, a_name, seq),
                Bytes::from_static(b"cached"),
            )
            .expect("small");
            a_link.send(&pdu).await.expect("queued");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    eventually(WAIT, "the stream to b is flowing through r1", || async {
        r1.metric("gdp_router_forwarded_total") >= forwarded + 50.0
    })
    .await;
    redis.kill();
    expect_seqs(&mut b, a_name, 400).await;
    stream.await.expect("the sender finished");
    // A new lookup fails cleanly.
    a.send_data(c.name(), 1, "new").await;
    let nak = a.next_nak(WAIT).await.expect("a NAK");
    assert_eq!(nak.unreachable, c.name());
    assert_eq!(nak.reason, NakReason::DirectoryUnavailable);
    assert!(r1.metric("gdp_router_directory_errors_total{op=\"lookup\"}") >= 1.0);

    // Redis comes back empty; the routers publish again by themselves.
    redis.restart().expect("redis restarts");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seq = 2;
    loop {
        a.send_data(c.name(), seq, "healed").await;
        if let Some(pdu) = c.next_data(Duration::from_millis(300)).await {
            assert_eq!(pdu.header.src, a.name());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no route to c after Redis came back"
        );
        seq += 1;
    }
    // The batch of other records may have brought c's back first; the
    // router's own record, gone too, is republished with everything else.
    eventually(WAIT, "r2 repaired its records", || async {
        r2.metric("gdp_router_directory_repairs_total") >= 1.0
            && route_key_exists(&redis, r2.name()) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_killed_and_restarted_gets_its_endpoints_and_traffic_back() {
    let redis = RedisServer::start();
    let dir = TempDir::new("crash");
    let r1 = start_router(&dir, "r1", &redis.url(), &[]);
    let mut r2 = start_router(&dir, "r2", &redis.url(), &[]);
    let name = r2.name();
    let mut a = TestEndpoint::attach(r1.addr(), r1.name(), "a").await;
    let mut b = TestEndpoint::attach(r2.addr(), r2.name(), "b").await;
    open_route(&a, &mut b, WAIT).await;
    open_route(&b, &mut a, WAIT).await;

    r2.kill();
    assert!(b.wait_down(WAIT).await, "b did not notice its router died");
    r2.restart();
    assert_eq!(r2.name(), name);
    assert!(!r2.start.key_created);
    b.reattach(WAIT).await;

    // Traffic resumes both ways once the stale link has timed out.
    drain(&mut a, Duration::from_millis(50)).await;
    open_route(&a, &mut b, Duration::from_secs(15)).await;
    open_route(&b, &mut a, Duration::from_secs(15)).await;
    for seq in 1..=100 {
        a.send_data(b.name(), seq, "resumed").await;
    }
    let a_name = a.name();
    expect_seqs(&mut b, a_name, 100).await;
}
