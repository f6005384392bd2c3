//! Delivery trees with real processes: 300 subscribers spread over three
//! `gdp-router` processes sharing a real `redis-server` directory, a writer
//! and the `gdp-capsule-server` on a fourth router, a 10,000-record stream,
//! and one subscribers' router killed with SIGKILL and started again in the
//! middle of it. Every subscriber must get every record, verified, in
//! order, once.
//!
//! Run with `bash scripts/test.sh` (it builds the binaries first), or
//! `cargo build --bins && cargo test -p gdp-client --test trees`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gdp_client::{CapsuleSpec, Client, ClientOptions};
use gdp_testkit::{RedisServer, TempDir, eventually_ok};
use tokio::task::JoinSet;

use common::{Router, Server};

/// Records in the stream.
const RECORDS: u64 = 10_000;
/// Records the writer hands over at once (it pipelines them in batches).
const CHUNK: u64 = 500;
/// Subscribers on each of the three routers.
const PER_ROUTER: usize = 100;
/// Longest wait for anything in this test.
const WAIT: Duration = Duration::from_secs(120);

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("r{i}"))
}

/// Options that notice a dead router within seconds.
fn options() -> ClientOptions {
    let mut o = ClientOptions::default();
    o.reconnect_max = Duration::from_millis(500);
    o.request_timeout = Duration::from_secs(5);
    o.keep_alive = Duration::from_millis(300);
    o.idle_timeout = Duration::from_secs(2);
    o
}

async fn client(router: &Router, label: &str) -> Client {
    let id = gdp_certs::Identity::generate(gdp_certs::Kind::Client, label).expect("identity");
    Client::connect(router.addr, id, options().with_router(router.name))
        .await
        .expect("client attaches")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_subscribers_get_every_record_across_a_router_restart() {
    let redis = RedisServer::start();
    let dir = TempDir::new("trees");
    let directory = redis.url();
    let hub = Router::start_with_directory(dir.path(), "hub", "127.0.0.1:0", &directory);
    let server = Server::start(dir.path(), "server", &hub);
    let mut edges: Vec<Router> = (0..3)
        .map(|i| {
            Router::start_with_directory(dir.path(), &format!("edge{i}"), "127.0.0.1:0", &directory)
        })
        .collect();

    let owner = gdp_certs::Identity::generate(gdp_certs::Kind::Client, "owner").expect("identity");
    let writer_client = Client::connect(hub.addr, owner.clone(), options().with_router(hub.name))
        .await
        .expect("writer attaches");
    let capsule = eventually_ok(WAIT, || {
        writer_client.create_capsule(server.name, owner.secret_key(), CapsuleSpec::new("tree"))
    })
    .await
    .capsule;
    let metadata = capsule.metadata().clone();

    // 300 subscribers, each on its own link, each collecting what it gets.
    let mut subscribers = JoinSet::new();
    for (r, edge) in edges.iter().enumerate() {
        for s in 0..PER_ROUTER {
            let c = client(edge, &format!("sub-{r}-{s}")).await;
            let md = metadata.clone();
            subscribers.spawn(async move {
                let mut sub = c.capsule(md).expect("metadata").subscribe(1);
                let mut seen = Vec::with_capacity(RECORDS as usize);
                while (seen.len() as u64) < RECORDS {
                    match tokio::time::timeout(WAIT, sub.next()).await {
                        Ok(Some(Ok(record))) => seen.push(record.seqno()),
                        Ok(Some(Err(e))) => panic!("sub-{r}-{s}: {e}"),
                        Ok(None) => panic!("sub-{r}-{s}: the subscription ended"),
                        Err(_) => panic!("sub-{r}-{s}: stalled at {} records", seen.len()),
                    }
                }
                let stats = sub.stats();
                drop(sub);
                c.shutdown().await;
                (r, s, seen, stats)
            });
        }
    }

    let mut writer = capsule
        .writer(owner.secret_key().clone())
        .await
        .expect("writer");
    let mut next = 1;
    while next <= RECORDS {
        let last = (next + CHUNK - 1).min(RECORDS);
        if next == 4 * CHUNK + 1 {
            // One subscribers' router crashes mid-stream and comes back on
            // its address with its key; its hundred subscribers reattach
            // and resume from their last record.
            let addr = edges[0].addr.to_string();
            edges[0].proc.kill();
            let again = Router::start_with_directory(dir.path(), "edge0", &addr, &directory);
            assert_eq!(again.name, edges[0].name);
            edges[0] = again;
        }
        let tail = writer
            .append_all((next..=last).map(payload))
            .await
            .expect("appends");
        assert_eq!(tail, last);
        next = last + 1;
    }

    let want: Vec<u64> = (1..=RECORDS).collect();
    let mut done = 0;
    let (mut by_tree, mut by_unicast) = (0, 0);
    while let Some(joined) = tokio::time::timeout(WAIT, subscribers.join_next())
        .await
        .expect("every subscriber finishes in time")
    {
        let (r, s, seen, stats) = joined.expect("a subscriber task");
        assert!(seen == want, "sub-{r}-{s}: every record once, in order");
        assert_eq!(stats.tree_records + stats.unicast_records, RECORDS);
        by_tree += stats.tree_records;
        by_unicast += stats.unicast_records;
        done += 1;
    }
    assert_eq!(done, 3 * PER_ROUTER);
    // The tree carried the stream; reads filled the start, the gap of the
    // restart and whatever else was lost.
    assert!(
        by_tree > 2 * by_unicast,
        "by tree {by_tree}, by unicast {by_unicast}"
    );
    eprintln!("records by tree {by_tree}, by unicast {by_unicast}");
    writer_client.shutdown().await;
}
