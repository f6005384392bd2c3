//! Replicated capsules: the append rate and latency of one writer for
//! N = 1 and for N = 3 with W = 1, 2 and 3, and the time and bytes a replica
//! that missed 100,000 records takes to catch up, in one run.
//!
//! ```text
//! cargo build --release --bins
//! cargo bench -p gdp-client --bench replicas
//! cargo bench -p gdp-client --bench replicas -- --records 20000 --trials 5 --catch-up 100000
//! ```
//!
//! The overlay: a real `redis-server` directory, one `gdp-router` (with
//! metrics) and three `gdp-capsule-server` processes attached to it, and
//! the writer in this process. Every row uses a fresh capsule, records of
//! 128 bytes of payload and the SDK's default batching (one heartbeat per
//! batch of `batch_records` records, `max_in_flight` batches in flight).
//!
//! - **records/s**: `--records` records handed to the writer in chunks of
//!   1,000 and flushed; the writer pipelines them. Each of `--trials`
//!   trials measures every row once, in turn, on fresh capsules, so the
//!   rows share whatever the machine does meanwhile; the table gives each
//!   row's median, and *vs N=1* is the median of the trials' own ratios
//!   (one line per trial on standard error).
//! - **latency**: 300 appends of one batch of 16 records per trial, one at
//!   a time, from hand-over to acknowledgement (W replicas durable); the
//!   percentiles are over all trials' appends.
//! - **catch-up**: on a capsule with N = 3 and W = 2, one replica is
//!   stopped, `--catch-up` records are appended to the other two, and the
//!   replica is started again; the clock runs from its start until it
//!   serves the last record. Bytes are everything the three servers sent
//!   the router meanwhile (`gdp_router_link_received_bytes_total` of their
//!   links): the sync requests and the records they carry.
//!
//! Everything shares this machine's cores: the writer, the router and the
//! three servers (each verifying every heartbeat and committing durably).
//! The CPU time each used during the pipelined phase (from `/proc`) is
//! printed per record beside the rates.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Name};
use gdp_client::{Capsule, CapsuleSpec, Client, ClientOptions, Replication};
use gdp_testkit::{cpu_seconds, eventually_ok, median, scrape_metrics};

use common::{Replicas, Router, tail_at};

/// How long anything may take.
const WAIT: Duration = Duration::from_secs(600);
/// Payload bytes per record.
const PAYLOAD: usize = 128;
/// Appends measured one at a time, for latency.
const LATENCY_SAMPLES: usize = 300;
/// Records per append in the latency measurement.
const LATENCY_BATCH: usize = 16;

struct Row {
    label: String,
    rate: f64,
    /// Each one-at-a-time append, hand-over to acknowledgement.
    latencies: Vec<Duration>,
    /// CPU microseconds per record during the pipelined phase: this
    /// process (the writer), the router, the three servers together.
    cpu: [f64; 3],
}

/// The processes whose CPU time is counted: this one, the router, the
/// servers.
struct Pids {
    router: u32,
    servers: Vec<u32>,
}

impl Pids {
    /// CPU seconds so far: writer, router, servers.
    fn cpu(&self) -> [f64; 3] {
        let of = |pid: u32| cpu_seconds(pid).unwrap_or(0.0);
        [
            of(std::process::id()),
            of(self.router),
            self.servers.iter().map(|p| of(*p)).sum(),
        ]
    }
}

fn main() {
    let mut records = 20_000u64;
    let mut trials = 5usize;
    let mut catch_up = 100_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => records = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--trials" => trials = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--catch-up" => catch_up = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            _ => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(records, trials.max(1), catch_up));
}

fn payload(i: u64) -> Bytes {
    let mut p = format!("record {i} ").into_bytes();
    p.resize(PAYLOAD, b'.');
    Bytes::from(p)
}

async fn run(records: u64, trials: usize, catch_up: u64) {
    let mut net = Replicas::start("replicas-bench", 3, &["--metrics", "127.0.0.1:0"]);
    let names = net.names.clone();
    let owner = Identity::generate(Kind::Client, "owner").expect("identity");
    let mut options = ClientOptions::default();
    options.request_timeout = Duration::from_secs(10);
    let client = net.client(&owner, options).await;

    let pids = Pids {
        router: net.router.proc.id().expect("the router runs"),
        servers: net
            .servers
            .iter()
            .map(|s| s.proc.id().expect("the server runs"))
            .collect(),
    };
    let labels = ["N=1", "N=3, W=1", "N=3, W=2", "N=3, W=3"];
    let mut trial_rows: Vec<Vec<Row>> = labels.iter().map(|_| Vec::new()).collect();
    for trial in 0..trials {
        for (i, label) in labels.iter().enumerate() {
            let capsule = if i == 0 {
                eventually_ok(WAIT, || {
                    client.create_capsule(names[0], owner.secret_key(), CapsuleSpec::new("n1"))
                })
                .await
                .capsule
            } else {
                replicated(&client, &owner, &names, i).await
            };
            let row = measure(label, &capsule, &owner, records, &pids).await;
            trial_rows[i].push(row);
        }
        let base = trial_rows[0][trial].rate;
        let line: Vec<String> = labels
            .iter()
            .zip(&trial_rows)
            .map(|(label, rows)| {
                let r = &rows[trial];
                format!("{label} {:.0}/s ({:.2}x)", r.rate, r.rate / base)
            })
            .collect();
        eprintln!("trial {trial}: {}", line.join(", "));
    }
    print_table(&trial_rows, records, trials);

    // Catch-up: one replica misses `catch_up` records.
    let capsule = replicated(&client, &owner, &names, 2).await;
    let md = capsule.metadata().clone();
    let lagging = 2;
    net.servers[lagging].proc.kill();
    let mut writer = capsule
        .writer(owner.secret_key().clone())
        .await
        .expect("a writer");
    let mut next = 1;
    while next <= catch_up {
        let last = (next + 999).min(catch_up);
        writer
            .submit((next..=last).map(payload))
            .await
            .expect("appends to two replicas");
        next = last + 1;
    }
    writer.flush().await.expect("durable on two replicas");
    let before = servers_egress(&net.router, &names);
    let started = Instant::now();
    net.restart(lagging);
    loop {
        if tail_at(&client, &md, names[lagging]).await == Ok(catch_up) {
            break;
        }
        assert!(started.elapsed() < WAIT, "the replica did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let bytes = servers_egress(&net.router, &names) - before;
    println!();
    println!(
        "catch-up of {catch_up} records ({PAYLOAD} B payload each) by a restarted replica: \
         {:.2} s from its start (process start and attach included), {:.0} records/s, \
         {:.1} MB sent by the servers ({:.0} B per record)",
        took.as_secs_f64(),
        catch_up as f64 / took.as_secs_f64(),
        bytes / 1e6,
        bytes / catch_up as f64
    );
    client.shutdown().await;
}

/// A fresh capsule on all three servers with write quorum `w`.
async fn replicated(client: &Client, owner: &Identity, names: &[Name], w: usize) -> Capsule {
    let created = eventually_ok(WAIT, || {
        client.create_replicated(names, owner.secret_key(), CapsuleSpec::new("n3"))
    })
    .await;
    let replication = Replication::new(created.set, w, 3 - w + 1).expect("quorums of 3");
    created
        .capsule
        .with_replication(replication)
        .expect("the capsule's own set")
}

/// Pipelined rate, then one-at-a-time latency, on `capsule`.
async fn measure(
    label: &str,
    capsule: &Capsule,
    owner: &Identity,
    records: u64,
    pids: &Pids,
) -> Row {
    let mut writer = capsule
        .writer(owner.secret_key().clone())
        .await
        .expect("a writer");
    let cpu_before = pids.cpu();
    let started = Instant::now();
    let mut next = 1;
    while next <= records {
        let last = (next + 999).min(records);
        writer
            .submit((next..=last).map(payload))
            .await
            .expect("appends");
        next = last + 1;
    }
    let tail = writer.flush().await.expect("durable");
    let rate = records as f64 / started.elapsed().as_secs_f64();
    let cpu_after = pids.cpu();
    let cpu = [0, 1, 2].map(|i| (cpu_after[i] - cpu_before[i]) * 1e6 / records as f64);
    assert_eq!(tail, records);
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let first = writer.next_seqno();
        let at = Instant::now();
        writer
            .append_all((first..first + LATENCY_BATCH as u64).map(payload))
            .await
            .expect("appends");
        latencies.push(at.elapsed());
    }
    Row {
        label: label.to_owned(),
        rate,
        latencies,
        cpu,
    }
}

/// Bytes of PDUs the router has received from the servers so far.
fn servers_egress(router: &Router, servers: &[Name]) -> f64 {
    let peers: Vec<String> = servers.iter().map(|s| format!("peer=\"{s}\"")).collect();
    scrape_metrics(router.admin.expect("the router serves metrics"))
        .iter()
        .filter(|(k, _)| {
            k.starts_with("gdp_router_link_received_bytes_total{")
                && peers.iter().any(|p| k.contains(p))
        })
        .map(|(_, v)| *v)
        .sum()
}

fn print_table(trial_rows: &[Vec<Row>], records: u64, trials: usize) {
    println!();
    println!(
        "{records} records of {PAYLOAD} B per row, pipelined, {trials} trials (medians); latency: {LATENCY_SAMPLES} appends of {LATENCY_BATCH} records per trial, one at a time."
    );
    println!();
    println!(
        "| replicas | appended records/s | vs N=1 | p50 latency | p99 latency | CPU us/record: writer, router, servers |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let base = &trial_rows[0];
    for rows in trial_rows {
        let rate = median(rows.iter().map(|r| r.rate).collect());
        let ratio = median(
            rows.iter()
                .zip(base)
                .map(|(r, b)| r.rate / b.rate)
                .collect(),
        );
        let mut latencies: Vec<Duration> = rows
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        latencies.sort();
        let cpu = [0, 1, 2].map(|i| median(rows.iter().map(|r| r.cpu[i]).collect()));
        println!(
            "| {} | {:.0} | {:.2}x | {:.2} ms | {:.2} ms | {:.1}, {:.1}, {:.1} |",
            rows[0].label,
            rate,
            ratio,
            latencies[latencies.len() / 2].as_secs_f64() * 1e3,
            latencies[latencies.len() * 99 / 100].as_secs_f64() * 1e3,
            cpu[0],
            cpu[1],
            cpu[2]
        );
    }
}
