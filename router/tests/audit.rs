//! The driver's directory audit: a router started from the library over a
//! directory that the test can reach into.
//!
//! The audit runs on a tokio interval (10 s by default), so under paused
//! time the test moves the clock to each tick instead of waiting for it:
//! a first audit finds the router's own record and leaves it alone; after
//! the directory loses every record, nothing happens until the next tick,
//! which publishes them all again.
//!
//! Over a real `redis-server` (real time, a short audit interval): records
//! of attached endpoints altered or deleted by hand are published again one
//! by one, without republishing the rest, and a name filled with junk
//! fields is pruned of what does not verify and published again once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Name, Timestamp};
use gdp_link::Transport;
use gdp_link::endpoint::{EndpointConfig, EndpointLink, EndpointReceiver};
use gdp_router::config::RouterSettings;
use gdp_router::core::RouterCore;
use gdp_router::directory::{
    Directory, DirectoryOptions, MAX_ROUTERS_PER_NAME, MemoryDirectory, RedisDirectory, route_key,
};
use gdp_router::driver::{self, DirectoryStats, RouterHandle, Running};
use gdp_testkit::{RedisServer, eventually};
use tokio::time::Instant;

/// Longest (virtual) wait for the driver to act on a tick.
const WAIT: Duration = Duration::from_secs(5);

async fn stats(router: &RouterHandle) -> DirectoryStats {
    router
        .snapshot()
        .await
        .expect("the router is running")
        .driver
        .directory
}

async fn has_record(directory: &MemoryDirectory, name: Name) -> bool {
    let lookup = directory.lookup(name).await.expect("memory answers");
    !lookup.records.is_empty()
}

#[tokio::test(start_paused = true)]
async fn an_audit_republishes_what_the_directory_lost_at_its_next_tick() {
    let directory = MemoryDirectory::new();
    let mut settings = RouterSettings::default();
    settings.listen = "127.0.0.1:0".parse().expect("an address");
    let audit = settings.audit_interval;
    assert_eq!(audit, Duration::from_secs(10), "the default interval");

    let identity = Identity::generate(Kind::Router, "audited").expect("an identity");
    let name = identity.name();
    let (transport, events) =
        Transport::bind(identity.clone(), settings.transport_config()).expect("binds");
    let addresses = settings.advertised_addresses(transport.local_addr());
    let core =
        RouterCore::new(identity, settings.core_config(addresses, None)).expect("valid settings");
    // The driver's audit interval starts when its task first runs, which is
    // before the clock moves: ticks fall at `start + k * audit`.
    let start = Instant::now();
    let router = driver::spawn(
        core,
        transport,
        events,
        Arc::new(directory.clone()),
        settings.driver_config(),
    );
    let handle = router.handle().clone();
    eventually(WAIT, "the router published its own record", || {
        has_record(&directory, name)
    })
    .await;

    // The first audit finds the record and repairs nothing.
    tokio::time::sleep_until(start + audit).await;
    eventually(WAIT, "the first audit ran", || async {
        stats(&handle).await.audits == 1
    })
    .await;
    assert_eq!(stats(&handle).await.repairs, 0);

    // The directory forgets everything, as a Redis restarted empty would.
    directory
        .unpublish(name, name)
        .await
        .expect("memory answers");
    // Until the next tick nobody notices.
    tokio::time::sleep_until(start + 2 * audit - Duration::from_millis(1)).await;
    assert!(!has_record(&directory, name).await);
    let before = stats(&handle).await;
    assert_eq!((before.audits, before.repairs), (1, 0));

    // The next tick finds the record missing and publishes it again.
    eventually(WAIT, "the second audit republished the record", || {
        has_record(&directory, name)
    })
    .await;
    let after = stats(&handle).await;
    assert_eq!((after.audits, after.repairs, after.republished), (2, 1, 1));
    assert!(
        start.elapsed() < 2 * audit + WAIT,
        "{:?} of virtual time",
        start.elapsed()
    );
    router.shutdown().await.expect("the router stops");
}

/// A router from the library over `directory`, auditing every `audit`.
fn spawn_router(directory: Arc<dyn Directory>, audit: Duration) -> Running {
    let mut settings = RouterSettings::default();
    settings.listen = "127.0.0.1:0".parse().expect("an address");
    settings.audit_interval = audit;
    let identity = Identity::generate(Kind::Router, "audited").expect("an identity");
    let (transport, events) =
        Transport::bind(identity.clone(), settings.transport_config()).expect("binds");
    let addresses = settings.advertised_addresses(transport.local_addr());
    let core =
        RouterCore::new(identity, settings.core_config(addresses, None)).expect("valid settings");
    driver::spawn(core, transport, events, directory, settings.driver_config())
}

/// A client attached to `router`; the router publishes a record for it.
async fn attach(router: &RouterHandle, label: &str) -> (Name, EndpointLink, EndpointReceiver) {
    let identity = Identity::generate(Kind::Client, label).expect("an identity");
    let mut addr = router.local_addr();
    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    let config = EndpointConfig::new(addr).with_router(router.name());
    let (link, rx) = EndpointLink::connect(&identity, &config)
        .await
        .expect("attaches");
    (identity.name(), link, rx)
}

/// A value as the Redis layout stores it: an expiry an hour away, then
/// `bytes`.
fn stored(bytes: &[u8]) -> Vec<u8> {
    let expires = Timestamp::now().saturating_add(Duration::from_secs(3600));
    [expires.0.to_be_bytes().as_slice(), bytes].concat()
}

async fn records(directory: &RedisDirectory, name: Name) -> Vec<Bytes> {
    directory.lookup(name).await.expect("redis answers").records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_altered_or_deleted_in_redis_are_repaired_one_by_one() {
    let server = RedisServer::start();
    let directory = RedisDirectory::connect(&server.url(), &DirectoryOptions::default())
        .await
        .expect("connects");
    let audit = Duration::from_millis(300);
    let router = spawn_router(Arc::new(directory.clone()), audit);
    let handle = router.handle().clone();
    let field = handle.name();
    let mut endpoints = Vec::new();
    for label in ["e1", "e2", "e3", "e4"] {
        endpoints.push(attach(&handle, label).await);
    }
    let names: Vec<Name> = endpoints.iter().map(|(n, _, _)| *n).collect();
    let mut originals = Vec::new();
    for &name in &names {
        eventually(WAIT, "the endpoint's record is published", || async {
            !records(&directory, name).await.is_empty()
        })
        .await;
        originals.push(records(&directory, name).await);
    }
    let before = stats(&handle).await;

    // One record replaced by hand under the router's field, one deleted.
    server
        .query(
            redis::cmd("HSET")
                .arg(route_key(&names[0]))
                .arg(field.as_bytes().as_slice())
                .arg(stored(b"forged")),
        )
        .expect("HSET by hand");
    server
        .query(
            redis::cmd("HDEL")
                .arg(route_key(&names[1]))
                .arg(field.as_bytes().as_slice()),
        )
        .expect("HDEL by hand");
    eventually(WAIT, "both records are repaired", || async {
        records(&directory, names[0]).await == originals[0]
            && records(&directory, names[1]).await == originals[1]
    })
    .await;
    let after = stats(&handle).await;
    assert_eq!(after.records_repaired - before.records_repaired, 2);
    assert_eq!(after.repairs, before.repairs, "nothing else republished");
    assert_eq!(after.publishes - before.publishes, 2);

    // A name filled with junk fields of other "routers" (any member can
    // write them) has no room for the router's record: the router prunes
    // every field whose record does not verify, publishes again, and
    // republishes nothing else.
    let key = route_key(&names[2]);
    let mut hset = redis::cmd("HSET");
    hset.arg(&key);
    for i in 0..MAX_ROUTERS_PER_NAME as u32 {
        let mut junk = [0xee; 32];
        junk[..4].copy_from_slice(&i.to_be_bytes());
        hset.arg(junk.as_slice()).arg(stored(b"junk"));
    }
    // And junk that cannot be a router's field at all.
    hset.arg("not a router name").arg(stored(b"junk"));
    server.query(&hset).expect("HSET junk by hand");
    server
        .query(
            redis::cmd("HDEL")
                .arg(&key)
                .arg(field.as_bytes().as_slice()),
        )
        .expect("HDEL by hand");
    eventually(WAIT, "the full name was pruned and published", || async {
        records(&directory, names[2]).await == originals[2]
    })
    .await;
    let pruned = stats(&handle).await;
    assert_eq!(pruned.name_full, 1);
    assert_eq!(pruned.fields_pruned, MAX_ROUTERS_PER_NAME as u64);
    assert_eq!(pruned.repairs, before.repairs);
    match server.query(redis::cmd("HLEN").arg(&key)).expect("HLEN") {
        redis::Value::Int(n) => assert_eq!(n, 1, "only the router's own field is left"),
        other => panic!("HLEN answered {other:?}"),
    }
    // Audits go on without any republish.
    tokio::time::sleep(audit * 5).await;
    let later = stats(&handle).await;
    assert!(later.audits > pruned.audits, "{later:?}");
    assert_eq!(later.publishes, pruned.publishes, "no republish loop");
    // The other records are still in place.
    assert_eq!(records(&directory, names[3]).await, originals[3]);
    drop(endpoints);
    router.shutdown().await.expect("the router stops");
}
