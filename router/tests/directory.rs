//! Directory backends against real servers: the same conformance suite on
//! the memory backend, one `redis-server` and a three-master Redis Cluster,
//! then garbage in Redis, a killed server, and a thousand names over a
//! cluster's slots.
//!
//! Needs `redis-server` (installed by `scripts/test.sh`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gdp_certs::cert::{RouteRecord, RouteTarget, Validity};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Kind, Name, Timestamp};
use gdp_router::directory::{
    Backend, Directory, DirectoryConfig, DirectoryError, DirectoryOptions, EXPIRY_PREFIX_LEN,
    MAX_RECORDS_PER_NAME, MAX_ROUTE_RECORD_LEN, MAX_ROUTERS_PER_NAME, RedisDirectory, Unavailable,
    route_key,
};
use gdp_testkit::{ClosedTcpPort, RedisCluster, RedisServer, eventually, eventually_ok};

const LONG: Duration = Duration::from_secs(60);
/// Lifetime of the records the expiry cases wait out.
const SHORT: Duration = Duration::from_millis(400);
/// Longest wait for a short-lived record to be gone (expiry is judged by
/// the wall clock, here and in Redis).
const EXPIRY_WAIT: Duration = Duration::from_secs(5);

fn random_name() -> Name {
    Name::from_bytes(rand::random())
}

fn rec(tag: &str) -> Bytes {
    Bytes::from(format!("record:{tag}"))
}

fn in_(d: Duration) -> Timestamp {
    Timestamp::now().saturating_add(d)
}

async fn records(dir: &dyn Directory, name: Name) -> BTreeSet<Bytes> {
    let lookup = dir.lookup(name).await.expect("lookup succeeds");
    assert_eq!(lookup.skipped(), 0, "nothing skipped for {name:?}");
    lookup.records.into_iter().collect()
}

fn set(items: &[Bytes]) -> BTreeSet<Bytes> {
    items.iter().cloned().collect()
}

async fn connect(config: &str) -> Arc<dyn Directory> {
    let config: DirectoryConfig = config.parse().expect("valid directory config");
    config
        .connect(&DirectoryOptions::default())
        .await
        .expect("directory connects")
}

/// The behaviour every backend shares. Runs in well under two seconds.
async fn conformance(dir: &dyn Directory) {
    let (r1, r2, r3) = (random_name(), random_name(), random_name());

    // Publish and look up.
    let name = random_name();
    dir.publish(name, r1, rec("a1"), in_(LONG))
        .await
        .expect("publish");
    assert_eq!(records(dir, name).await, set(&[rec("a1")]));

    // The same router replaces its own record.
    dir.publish(name, r1, rec("a1-new"), in_(LONG))
        .await
        .expect("replace");
    assert_eq!(records(dir, name).await, set(&[rec("a1-new")]));

    // Several routers for one name: replicas.
    dir.publish(name, r2, rec("a2"), in_(LONG))
        .await
        .expect("publish r2");
    dir.publish(name, r3, rec("a3"), in_(LONG))
        .await
        .expect("publish r3");
    assert_eq!(
        records(dir, name).await,
        set(&[rec("a1-new"), rec("a2"), rec("a3")])
    );

    // Unpublish removes one router's record only; unknown ones are fine.
    dir.unpublish(name, r2).await.expect("unpublish r2");
    dir.unpublish(name, r2).await.expect("unpublish again");
    dir.unpublish(random_name(), r1)
        .await
        .expect("unpublish unknown name");
    assert_eq!(records(dir, name).await, set(&[rec("a1-new"), rec("a3")]));
    dir.unpublish(name, r1).await.expect("unpublish r1");
    dir.unpublish(name, r3).await.expect("unpublish r3");
    assert!(records(dir, name).await.is_empty());

    // An unknown name has no records.
    assert!(records(dir, random_name()).await.is_empty());

    // Oversized records are refused before they reach the backend.
    let err = dir
        .publish(
            name,
            r1,
            Bytes::from(vec![7u8; MAX_ROUTE_RECORD_LEN + 1]),
            in_(LONG),
        )
        .await
        .expect_err("too large");
    assert!(matches!(
        err,
        DirectoryError::TooLarge { max: MAX_ROUTE_RECORD_LEN, len } if len == MAX_ROUTE_RECORD_LEN + 1
    ));
    let largest = Bytes::from(vec![7u8; MAX_ROUTE_RECORD_LEN]);
    dir.publish(name, r1, largest.clone(), in_(LONG))
        .await
        .expect("a record of the maximum length fits");
    assert_eq!(records(dir, name).await, set(&[largest]));
    dir.unpublish(name, r1).await.expect("unpublish");

    // A record that has already expired is not stored, and removes the
    // router's previous record without touching the others'.
    let past = Timestamp::now().saturating_sub(Duration::from_secs(1));
    dir.publish(name, r1, rec("b1"), in_(LONG))
        .await
        .expect("publish");
    dir.publish(name, r2, rec("b2"), in_(LONG))
        .await
        .expect("publish");
    dir.publish(name, r1, rec("b1-old"), past)
        .await
        .expect("an expired publish is not an error");
    assert_eq!(records(dir, name).await, set(&[rec("b2")]));

    // At most MAX_RECORDS_PER_NAME per lookup; the rest are counted.
    let crowded = random_name();
    for i in 0..MAX_RECORDS_PER_NAME + 3 {
        dir.publish(crowded, random_name(), rec(&format!("c{i}")), in_(LONG))
            .await
            .expect("publish");
    }
    let lookup = dir.lookup(crowded).await.expect("lookup");
    assert_eq!(lookup.records.len(), MAX_RECORDS_PER_NAME);
    assert_eq!(lookup.excess, 3);

    // Expiry: short-lived records disappear; a long-lived one next to them
    // stays, even after its router's record was replaced by a short one.
    let short_only = random_name();
    let mixed = random_name();
    let shortened = random_name();
    dir.publish(short_only, r1, rec("s1"), in_(SHORT))
        .await
        .expect("publish");
    dir.publish(short_only, r2, rec("s2"), in_(SHORT))
        .await
        .expect("publish");
    dir.publish(mixed, r1, rec("m-short"), in_(SHORT))
        .await
        .expect("publish");
    dir.publish(mixed, r2, rec("m-long"), in_(LONG))
        .await
        .expect("publish");
    dir.publish(shortened, r1, rec("long"), in_(LONG))
        .await
        .expect("publish");
    dir.publish(shortened, r1, rec("short"), in_(SHORT))
        .await
        .expect("replace with a shorter record");
    assert_eq!(records(dir, short_only).await.len(), 2);
    assert_eq!(records(dir, mixed).await.len(), 2);
    // The short record of `shortened` was published last, so once it has
    // expired every other short-lived record has too.
    eventually(
        EXPIRY_WAIT,
        "the replaced long record is gone and the short one expired",
        || async { records(dir, shortened).await.is_empty() },
    )
    .await;
    assert!(records(dir, short_only).await.is_empty());
    assert_eq!(records(dir, mixed).await, set(&[rec("m-long")]));
    full_names(dir).await;
    fields_for_pruning(dir).await;
}

/// A publisher that found a name full reads its fields and removes the
/// ones it chose, alike on every backend.
async fn fields_for_pruning(dir: &dyn Directory) {
    let name = random_name();
    let routers: Vec<Name> = (0..3).map(|_| random_name()).collect();
    for (i, router) in routers.iter().enumerate() {
        dir.publish(name, *router, rec(&format!("r{i}")), in_(LONG))
            .await
            .expect("publish");
    }
    let mut fields = dir.fields(name).await.expect("fields");
    fields.sort();
    let mut want: Vec<(Name, Bytes)> = routers
        .iter()
        .enumerate()
        .map(|(i, r)| (*r, rec(&format!("r{i}"))))
        .collect();
    want.sort();
    assert_eq!(fields, want);
    let removed = dir
        .remove_fields(name, vec![routers[0], routers[1], random_name()])
        .await
        .expect("remove");
    assert_eq!(removed, 2);
    assert_eq!(records(dir, name).await, set(&[rec("r2")]));
    assert!(dir.fields(random_name()).await.expect("fields").is_empty());
}

/// A name holding the maximum of other routers' live fields (junk any
/// member can write) refuses a new router with `NameFull`, alike on every
/// backend; a router already there still replaces its own field, and a
/// withdrawn field makes room.
async fn full_names(dir: &dyn Directory) {
    let name = random_name();
    let others: Vec<Name> = (0..MAX_ROUTERS_PER_NAME).map(|_| random_name()).collect();
    for (i, other) in others.iter().enumerate() {
        dir.publish(name, *other, rec(&format!("junk-{i}")), in_(LONG))
            .await
            .expect("room for the junk");
    }
    let newcomer = random_name();
    let refused = dir.publish(name, newcomer, rec("mine"), in_(LONG)).await;
    assert!(
        matches!(refused, Err(DirectoryError::NameFull { name: n, max }) if n == name && max == MAX_ROUTERS_PER_NAME),
        "{refused:?}"
    );
    dir.publish(name, others[0], rec("replaced"), in_(LONG))
        .await
        .expect("a router in the name replaces its own field");
    dir.unpublish(name, others[1]).await.expect("unpublish");
    dir.publish(name, newcomer, rec("mine"), in_(LONG))
        .await
        .expect("a withdrawn field makes room");
    let lookup = dir.lookup(name).await.expect("lookup");
    assert_eq!(lookup.records.len(), MAX_RECORDS_PER_NAME);
    assert_eq!(lookup.excess, MAX_ROUTERS_PER_NAME - MAX_RECORDS_PER_NAME);
}

#[tokio::test]
async fn memory_backend_conformance() {
    let dir = connect("memory").await;
    assert_eq!(dir.backend(), Backend::Memory);
    conformance(dir.as_ref()).await;
}

#[tokio::test]
async fn redis_backend_conformance() {
    let server = RedisServer::start();
    let dir = connect(&server.url()).await;
    assert_eq!(dir.backend(), Backend::Redis);
    assert!(dir.ping().await.expect("ping") < Duration::from_secs(1));
    conformance(dir.as_ref()).await;
}

#[tokio::test]
async fn redis_cluster_backend_conformance() {
    let cluster = RedisCluster::start(3);
    let dir = connect(&cluster.config_string()).await;
    assert_eq!(dir.backend(), Backend::RedisCluster);
    dir.ping().await.expect("ping");
    conformance(dir.as_ref()).await;
}

fn integer(server: &RedisServer, cmd: &redis::Cmd) -> i64 {
    match server.query(cmd).expect("command runs") {
        redis::Value::Int(n) => n,
        other => panic!("expected an integer reply, got {other:?}"),
    }
}

#[tokio::test]
async fn redis_drops_keys_at_the_latest_record_expiry() {
    let server = RedisServer::start();
    let dir = connect(&server.url()).await;
    let (name, r1, r2) = (random_name(), random_name(), random_name());
    let key = route_key(&name);

    dir.publish(name, r1, rec("1"), in_(Duration::from_secs(30)))
        .await
        .expect("publish");
    let ttl = integer(&server, redis::cmd("PTTL").arg(&key));
    assert!((29_000..=30_010).contains(&ttl), "PTTL {ttl}");

    // A later record extends the key; a shorter one never shortens it.
    dir.publish(name, r2, rec("2"), in_(Duration::from_secs(90)))
        .await
        .expect("publish");
    dir.publish(name, r2, rec("2"), in_(Duration::from_secs(5)))
        .await
        .expect("publish");
    let ttl = integer(&server, redis::cmd("PTTL").arg(&key));
    assert!((89_000..=90_010).contains(&ttl), "PTTL {ttl}");

    // Short records: Redis itself drops the key at expiry.
    let brief = random_name();
    dir.publish(brief, r1, rec("b"), in_(Duration::from_millis(300)))
        .await
        .expect("publish");
    assert_eq!(
        integer(&server, redis::cmd("EXISTS").arg(route_key(&brief))),
        1
    );
    eventually(EXPIRY_WAIT, "Redis dropped the expired key", || async {
        integer(&server, redis::cmd("EXISTS").arg(route_key(&brief))) == 0
    })
    .await;

    // The stored layout is the documented one.
    let value = match server
        .query(redis::cmd("HGET").arg(&key).arg(r1.as_bytes().as_slice()))
        .expect("HGET")
    {
        redis::Value::BulkString(v) => v,
        other => panic!("expected the stored value, got {other:?}"),
    };
    assert_eq!(&value[EXPIRY_PREFIX_LEN..], b"record:1");
    let expiry = u64::from_be_bytes(value[..EXPIRY_PREFIX_LEN].try_into().expect("8 bytes"));
    assert!(expiry > Timestamp::now().0);
}

#[tokio::test]
async fn redis_values_written_by_hand_are_bounded() {
    let server = RedisServer::start();
    let dir = connect(&server.url()).await;
    let (name, good) = (random_name(), random_name());
    dir.publish(name, good, rec("good"), in_(LONG))
        .await
        .expect("publish");

    let key = route_key(&name);
    let live = in_(LONG).0.to_be_bytes();
    let mut just_over = live.to_vec();
    just_over.resize(EXPIRY_PREFIX_LEN + MAX_ROUTE_RECORD_LEN + 1, 1);
    let mut huge = live.to_vec();
    huge.resize(8 << 20, 2);
    let mut expired = Timestamp::from_secs(1).0.to_be_bytes().to_vec();
    expired.extend_from_slice(b"old");
    server
        .query(
            redis::cmd("HSET")
                .arg(&key)
                .arg("over")
                .arg(just_over)
                .arg("huge")
                .arg(huge)
                .arg("short")
                .arg("abc")
                .arg("expired")
                .arg(expired),
        )
        .expect("HSET by hand");

    let lookup = dir.lookup(name).await.expect("bounded lookup");
    assert_eq!(lookup.records, vec![rec("good")]);
    assert_eq!(lookup.oversize, 2);
    assert_eq!(lookup.malformed, 1);
    assert_eq!(lookup.excess, 0);

    // A hash with far more fields than a lookup visits.
    let crowded = random_name();
    let mut hset = redis::cmd("HSET");
    hset.arg(route_key(&crowded));
    for i in 0..5_000u32 {
        let mut value = live.to_vec();
        value.extend_from_slice(&i.to_be_bytes());
        hset.arg(i).arg(value);
    }
    server.query(&hset).expect("HSET of many fields");
    let started = Instant::now();
    let lookup = dir.lookup(crowded).await.expect("bounded lookup");
    assert_eq!(lookup.records.len(), MAX_RECORDS_PER_NAME);
    assert_eq!(lookup.records.len() + lookup.excess, 5_000);
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn redis_keys_of_the_wrong_type_are_protocol_errors() {
    let server = RedisServer::start();
    let dir = connect(&server.url()).await;
    let (as_string, as_list, router) = (random_name(), random_name(), random_name());
    server
        .query(redis::cmd("SET").arg(route_key(&as_string)).arg("garbage"))
        .expect("SET");
    server
        .query(redis::cmd("RPUSH").arg(route_key(&as_list)).arg("x"))
        .expect("RPUSH");

    for name in [as_string, as_list] {
        let err = dir.lookup(name).await.expect_err("wrong type");
        assert!(
            matches!(
                err,
                DirectoryError::Protocol {
                    backend: Backend::Redis,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = dir
            .publish(name, router, rec("x"), in_(LONG))
            .await
            .expect_err("wrong type");
        assert!(matches!(err, DirectoryError::Protocol { .. }), "{err:?}");
        let err = dir.unpublish(name, router).await.expect_err("wrong type");
        assert!(matches!(err, DirectoryError::Protocol { .. }), "{err:?}");
    }
    // The garbage is left alone, and other names still work.
    assert_eq!(
        server
            .query(redis::cmd("GET").arg(route_key(&as_string)))
            .expect("GET"),
        redis::Value::BulkString(b"garbage".to_vec())
    );
    let name = random_name();
    dir.publish(name, router, rec("fine"), in_(LONG))
        .await
        .expect("publish");
    assert_eq!(records(dir.as_ref(), name).await, set(&[rec("fine")]));
}

/// Runs `op` and checks that it fails with `Unavailable` well under a second.
async fn fails_fast<T: std::fmt::Debug>(
    what: &str,
    op: impl std::future::Future<Output = Result<T, DirectoryError>>,
) {
    let started = Instant::now();
    let result = op.await;
    let took = started.elapsed();
    assert!(
        matches!(
            result,
            Err(DirectoryError::Unavailable {
                backend: Backend::Redis,
                ..
            })
        ),
        "{what}: {result:?}"
    );
    assert!(took < Duration::from_millis(700), "{what} took {took:?}");
}

#[tokio::test]
async fn killed_redis_fails_fast_and_the_same_directory_recovers() {
    let mut server = RedisServer::start();
    let dir = RedisDirectory::connect(&server.url(), &DirectoryOptions::default())
        .await
        .expect("connects");
    let (name, router) = (random_name(), random_name());
    dir.publish(name, router, rec("before"), in_(LONG))
        .await
        .expect("publish");

    server.kill();
    assert!(!server.is_running());
    // The first calls find the connection broken, the later ones find the
    // manager reconnecting to nothing: all fail fast.
    for _ in 0..3 {
        fails_fast(
            "publish",
            dir.publish(name, router, rec("during"), in_(LONG)),
        )
        .await;
        fails_fast("lookup", dir.lookup(name)).await;
        fails_fast("ping", dir.ping()).await;
    }

    server.restart().expect("restarts on the same port");
    let lookup = eventually_ok(Duration::from_secs(5), || async {
        let result = dir.lookup(name).await;
        if let Err(e) = &result {
            assert!(e.is_unavailable(), "{e:?}");
        }
        result
    })
    .await;
    assert!(
        lookup.records.is_empty(),
        "the restarted server kept nothing"
    );
    dir.publish(name, router, rec("after"), in_(LONG))
        .await
        .expect("publish after restart");
    assert_eq!(records(&dir, name).await, set(&[rec("after")]));
}

#[tokio::test]
async fn connecting_to_a_dead_port_fails_fast() {
    let dead = ClosedTcpPort::new();
    let url = format!("redis://{}", dead.addr());
    let options = DirectoryOptions::default().with_connect_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = RedisDirectory::connect(&url, &options)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(
            err,
            DirectoryError::Unavailable {
                cause: Unavailable::Timeout(_) | Unavailable::Connection(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    // A lazily built directory fails per call instead, and fast.
    let lazy = RedisDirectory::lazy(&url, &DirectoryOptions::default()).expect("valid URL");
    fails_fast("lookup", lazy.lookup(random_name())).await;
}

#[tokio::test]
async fn a_thousand_names_spread_over_a_three_master_cluster() {
    let cluster = RedisCluster::start(3);
    let dir = connect(&cluster.config_string()).await;
    let router = random_name();
    let names: Vec<Name> = (0..1_000).map(|_| random_name()).collect();

    let mut tasks = tokio::task::JoinSet::new();
    for chunk in names.chunks(100) {
        let dir = dir.clone();
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            for name in chunk {
                let record = Bytes::from(name.as_bytes().to_vec());
                dir.publish(name, router, record, in_(LONG))
                    .await
                    .expect("publish");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("publisher task");
    }

    for name in &names {
        let lookup = dir.lookup(*name).await.expect("lookup");
        assert_eq!(lookup.records, vec![Bytes::from(name.as_bytes().to_vec())]);
    }

    // Every master holds a share of the names.
    let mut total = 0;
    for node in cluster.nodes() {
        let keys = integer(node, &redis::cmd("DBSIZE"));
        assert!(keys > 200, "node {} holds only {keys} names", node.port());
        total += keys;
    }
    assert_eq!(total, 1_000);
}

#[tokio::test]
async fn signed_route_records_survive_the_round_trip() {
    let server = RedisServer::start();
    let dir = connect(&server.url()).await;
    let router = Identity::generate(Kind::Router, "edge-1").expect("identity");
    let now = Timestamp::now();
    let validity = Validity::starting_at(now, LONG);
    let record = RouteRecord::sign(
        &router,
        router.name(),
        RouteTarget::Router,
        vec!["127.0.0.1:4433".parse().expect("address")],
        None,
        validity,
    )
    .expect("signs");
    dir.publish(
        record.name(),
        router.name(),
        record.to_bytes(),
        record.expires(),
    )
    .await
    .expect("publish");

    let lookup = dir.lookup(router.name()).await.expect("lookup");
    assert_eq!(lookup.records.len(), 1);
    let decoded = RouteRecord::decode(lookup.records[0].clone()).expect("decodes");
    let verified = decoded
        .verify(&router.name(), Timestamp::now())
        .expect("verifies");
    assert_eq!(verified.into_inner(), record);
}

#[tokio::test]
async fn redis_fields_drop_what_can_never_be_a_routers_record() {
    let server = RedisServer::start();
    let dir = connect(&server.url()).await;
    let (name, good) = (random_name(), random_name());
    dir.publish(name, good, rec("good"), in_(LONG))
        .await
        .expect("publish");
    let key = route_key(&name);
    let live = in_(LONG).0.to_be_bytes();
    let mut over = live.to_vec();
    over.resize(EXPIRY_PREFIX_LEN + MAX_ROUTE_RECORD_LEN + 1, 1);
    let mut expired = Timestamp::from_secs(1).0.to_be_bytes().to_vec();
    expired.extend_from_slice(b"old");
    let short_field = [7u8; 31];
    server
        .query(
            redis::cmd("HSET")
                .arg(&key)
                .arg(short_field.as_slice())
                .arg([live.as_slice(), b"x"].concat())
                .arg([9u8; 32].as_slice())
                .arg(over)
                .arg([8u8; 32].as_slice())
                .arg(expired)
                .arg([6u8; 32].as_slice())
                .arg("abc"),
        )
        .expect("HSET by hand");
    let fields = dir.fields(name).await.expect("fields");
    assert_eq!(fields, vec![(good, rec("good"))]);
    assert_eq!(integer(&server, redis::cmd("HLEN").arg(&key)), 1);
}
