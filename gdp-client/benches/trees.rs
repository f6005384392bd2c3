//! Subscriptions at 1, 10, 100 and 1,000 subscribers: delivery trees in the
//! routers against the capsule server's own fan-out (one subscription per
//! subscriber at the server), in one run.
//!
//! ```text
//! cargo build --release --bins
//! cargo bench -p gdp-client --bench trees                     # 1, 10, 100, 1000 subscribers
//! cargo bench -p gdp-client --bench trees -- --records 200    # records per measurement
//! cargo bench -p gdp-client --bench trees -- --max 100        # up to 100 subscribers
//! ```
//!
//! The overlay: a real `redis-server` directory, a hub `gdp-router` with
//! the `gdp-capsule-server` and the writer attached, and five edge
//! routers with the subscribers spread over them (one SDK client, one QUIC
//! link, per subscriber, all in this process). For each number of
//! subscribers and each mode a fresh capsule is created, every subscriber
//! subscribes from its first record and gets it, then the writer appends
//! `--records` records as fast as it can and the clock runs until every
//! subscriber has the last one.
//!
//! It prints a markdown table: delivered records/s (all subscribers
//! together: subscribers × records / time), and the capsule server's
//! egress per record: the bytes of PDUs the hub router received on the
//! server's link during the appends (`gdp_router_link_received_bytes_total`
//! from the hub's metrics), divided by the records. Everything shares this
//! machine's cores: the subscribers' verification and QUIC receive work,
//! the routers and the server.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use gdp_certs::{Identity, Kind, Name};
use gdp_client::{CapsuleSpec, Client, ClientOptions, SubscribeMode, Subscription};
use gdp_testkit::{RedisServer, TempDir, eventually_ok, scrape_metrics};
use tokio::task::JoinSet;

use common::{Router, Server};

/// Edge routers: 1,000 subscribers from one address stay under a
/// router's default `max_links_per_address` (256) on each.
const EDGES: usize = 5;
/// How long anything may take.
const WAIT: Duration = Duration::from_secs(300);

struct Row {
    subscribers: usize,
    mode: SubscribeMode,
    rate: f64,
    egress_per_record: f64,
    seconds: f64,
}

fn main() {
    let mut records = 500u64;
    let mut max = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => records = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--max" => max = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            _ => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let rows = runtime.block_on(run(records, max));
    print_table(&rows, records);
}

async fn run(records: u64, max: usize) -> Vec<Row> {
    let redis = RedisServer::start();
    let dir = TempDir::new("trees-bench");
    let directory = redis.url();
    let hub = Router::start_with_args(
        dir.path(),
        "hub",
        "127.0.0.1:0",
        &directory,
        &["--metrics", "127.0.0.1:0"],
    );
    let server = Server::start(dir.path(), "server", &hub);
    let edges: Vec<Router> = (0..EDGES)
        .map(|i| {
            Router::start_with_directory(dir.path(), &format!("edge{i}"), "127.0.0.1:0", &directory)
        })
        .collect();
    let owner = Identity::generate(Kind::Client, "owner").expect("identity");
    let writer_client =
        Client::connect(hub.addr, owner.clone(), options(SubscribeMode::Tree, &hub))
            .await
            .expect("the writer attaches");
    let mut rows = Vec::new();
    for subscribers in [1usize, 10, 100, 1000].into_iter().filter(|n| *n <= max) {
        for mode in [SubscribeMode::Unicast, SubscribeMode::Tree] {
            eprintln!("{subscribers} subscribers, {mode:?}");
            let capsule = eventually_ok(WAIT, || {
                writer_client.create_capsule(
                    server.name,
                    owner.secret_key(),
                    CapsuleSpec::new("bench"),
                )
            })
            .await
            .capsule;
            let mut writer = capsule
                .writer(owner.secret_key().clone())
                .await
                .expect("a writer");
            writer
                .append(Bytes::from_static(b"first"))
                .await
                .expect("appends");
            // The subscribers, each with its own link, spread over the edges.
            let mut clients = Vec::new();
            let mut connecting = JoinSet::new();
            for i in 0..subscribers {
                let edge = &edges[i % edges.len()];
                let (addr, opts) = (edge.addr, options(mode, edge));
                connecting.spawn(async move {
                    let id = Identity::generate(Kind::Client, format!("sub-{i}")).expect("id");
                    Client::connect(addr, id, opts)
                        .await
                        .expect("a subscriber attaches")
                });
                if connecting.len() >= 32 {
                    clients.push(connecting.join_next().await.expect("one").expect("task"));
                }
            }
            while let Some(c) = connecting.join_next().await {
                clients.push(c.expect("task"));
            }
            let subs: Vec<Subscription> = clients
                .iter()
                .map(|c| {
                    c.capsule(capsule.metadata().clone())
                        .expect("metadata")
                        .subscribe(1)
                })
                .collect();
            let mut waiting = JoinSet::new();
            for mut sub in subs {
                waiting.spawn(async move {
                    let first = tokio::time::timeout(WAIT, sub.next()).await;
                    assert!(matches!(first, Ok(Some(Ok(_)))), "the first record");
                    sub
                });
            }
            let mut subs = Vec::new();
            while let Some(s) = waiting.join_next().await {
                subs.push(s.expect("task"));
            }
            // Let every tree join settle before the clock starts.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = server_egress(&hub, server.name);
            let last = records + 1;
            let started = Instant::now();
            let mut receiving = JoinSet::new();
            for mut sub in subs {
                receiving.spawn(async move {
                    loop {
                        match tokio::time::timeout(WAIT, sub.next()).await {
                            Ok(Some(Ok(r))) if r.seqno() == last => return,
                            Ok(Some(Ok(_))) => {}
                            other => panic!("a subscriber stopped: {other:?}"),
                        }
                    }
                });
            }
            let tail = writer
                .append_all((2..=last).map(|i| Bytes::from(format!("record {i:08}"))))
                .await
                .expect("appends");
            assert_eq!(tail, last);
            while let Some(done) = receiving.join_next().await {
                done.expect("a subscriber got every record");
            }
            let seconds = started.elapsed().as_secs_f64();
            let egress = server_egress(&hub, server.name) - before;
            rows.push(Row {
                subscribers,
                mode,
                rate: (subscribers as u64 * records) as f64 / seconds,
                egress_per_record: egress / records as f64,
                seconds,
            });
            // Side by side: each waits for its link's close to be
            // acknowledged, and a thousand in turn took minutes.
            let mut closing = JoinSet::new();
            for c in clients {
                closing.spawn(async move { c.shutdown().await });
            }
            while closing.join_next().await.is_some() {}
        }
    }
    writer_client.shutdown().await;
    rows
}

fn options(mode: SubscribeMode, router: &Router) -> ClientOptions {
    let mut o = ClientOptions::default();
    o.subscribe_mode = mode;
    o.with_router(router.name)
}

/// Bytes of PDUs the hub has received from the capsule server so far.
fn server_egress(hub: &Router, server: Name) -> f64 {
    let peer = format!("peer=\"{server}\"");
    scrape_metrics(hub.admin.expect("the hub serves metrics"))
        .iter()
        .filter(|(k, _)| {
            k.starts_with("gdp_router_link_received_bytes_total{") && k.contains(&peer)
        })
        .map(|(_, v)| *v)
        .sum()
}

fn print_table(rows: &[Row], records: u64) {
    println!();
    println!("{records} records per measurement, appended as fast as the writer pipelines them.");
    println!();
    println!(
        "| subscribers | mode | delivered records/s | server egress per record (B) | time (s) | vs unicast: rate | vs 1 subscriber: egress |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let unicast = rows
            .iter()
            .find(|u| u.subscribers == r.subscribers && u.mode == SubscribeMode::Unicast);
        let one = rows.iter().find(|u| u.subscribers == 1 && u.mode == r.mode);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2}x | {:.2}x |",
            r.subscribers,
            if r.mode == SubscribeMode::Tree {
                "tree"
            } else {
                "unicast"
            },
            r.rate,
            r.egress_per_record,
            r.seconds,
            unicast.map_or(f64::NAN, |u| r.rate / u.rate),
            one.map_or(f64::NAN, |o| r.egress_per_record / o.egress_per_record),
        );
    }
}
