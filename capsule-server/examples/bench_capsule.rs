//! Capsule server throughput measured through one router, beside the raw
//! figures of the storage engine and of ed25519 in the same run.
//!
//! ```text
//! cargo build --release --bins && cargo run --release -p gdp-capsule-server --example bench_capsule
//! cargo run --release -p gdp-capsule-server --example bench_capsule -- --help
//! ```
//!
//! The run starts a real `gdp-router` process (`target/release/gdp-router`,
//! beside this example, or the path in `GDP_ROUTER_BIN`) on a free loopback port with a temporary
//! data directory and a `[capsule_server]` table in its config, so the
//! capsule server runs embedded in the router and attaches to it over
//! loopback QUIC like any endpoint. This process attaches as a client with
//! an `EndpointLink`, so every request and every answer crosses the router.
//!
//! - **append**: a fresh capsule per mode; one writer pipelines appends of
//!   1 KiB records with a window of records in flight (`--window-records`).
//!   `hb_per_record` closes every record with its own heartbeat, `batch_16`
//!   and `batch_256` close 16 and 256 records with one heartbeat. The
//!   server verifies every heartbeat and answers only once the records are
//!   durable; the figure is acknowledged records per second. Appends are
//!   signed and encoded before the clock starts, so the client's signing
//!   does not share the two cores with the server during the measurement.
//! - **read**: the `batch_256` capsule is read back with `ReadRange`
//!   requests of as many records as one response holds, pipelined; every
//!   answer is decoded and checked with `Proof::verify_range` against the
//!   capsule's metadata, and must start at the seqno asked for.
//! - **raw redb**: durable (`Durability::Immediate`) commits of 1, 16 and
//!   256 records of the same size into a redb database in a temporary
//!   directory, one transaction after another, each commit's records in one
//!   row (as the store keeps an append's records: a run).
//! - **ed25519**: single `PublicKey::verify` of a heartbeat-sized body.
//!
//! The server's per-peer and per-capsule rate limits are raised in the
//! `[capsule_server.service]` table so that the figures measure the server,
//! not its limiter (`--default-limits` keeps the defaults: 20,000
//! requests/s per peer, 200,000 records/s per capsule).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, SigContext};
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink, EndpointReceiver};
use gdp_proto::Encode;
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::record::Record;
use gdp_testkit::bin::find_workspace_bin;
use gdp_testkit::{ChildGuard, TempDir, Writer, spawn_with_start_line, start_line_field};
use redb::{Database, Durability, TableDefinition};
use tokio::sync::Semaphore;

/// Payload bytes of every record.
const RECORD_LEN: usize = 1024;
/// Longest wait for any single answer.
const WAIT: Duration = Duration::from_secs(30);

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "Capsule server throughput through one router")]
struct Args {
    /// Records appended with a heartbeat per record.
    #[arg(long, default_value_t = 32_768)]
    records_hb: usize,
    /// Records appended in batches of 16.
    #[arg(long, default_value_t = 65_536)]
    records_batch16: usize,
    /// Records appended in batches of 256 (this capsule is also read back).
    #[arg(long, default_value_t = 65_536)]
    records_batch256: usize,
    /// Records in flight (unacknowledged) per writer.
    #[arg(long, default_value_t = 4096)]
    window_records: usize,
    /// Most append requests in flight, whatever their size.
    #[arg(long, default_value_t = 1024)]
    max_window: usize,
    /// ReadRange requests in flight.
    #[arg(long, default_value_t = 8)]
    read_window: usize,
    /// Seconds of verified reads (whole passes over the capsule).
    #[arg(long, default_value_t = 3.0)]
    read_secs: f64,
    /// Seconds of raw redb commits per batch size.
    #[arg(long, default_value_t = 2.0)]
    raw_secs: f64,
    /// Seconds of ed25519 verification.
    #[arg(long, default_value_t = 1.0)]
    verify_secs: f64,
    /// Keep the server's default rate limits.
    #[arg(long)]
    default_limits: bool,
}

/// The router's config: the embedded capsule server with a known key.
fn router_config(dir: &Path, key_file: &Path, default_limits: bool) -> anyhow::Result<String> {
    let mut server = toml::Table::new();
    server.insert("label".into(), "bench-server".into());
    let key = key_file.to_str().context("a UTF-8 temp path")?;
    server.insert("key_file".into(), key.into());
    let data = dir.join("capsules");
    let data = data.to_str().context("a UTF-8 temp path")?;
    server.insert("data_dir".into(), data.into());
    if !default_limits {
        let rate = |n: i64| {
            let mut t = toml::Table::new();
            t.insert("per_second".into(), n.into());
            t.insert("burst".into(), n.into());
            toml::Value::Table(t)
        };
        let mut service = toml::Table::new();
        service.insert("peer_requests".into(), rate(1_000_000_000));
        service.insert("capsule_records".into(), rate(1_000_000_000));
        server.insert("service".into(), toml::Value::Table(service));
    }
    let mut root = toml::Table::new();
    root.insert("capsule_server".into(), toml::Value::Table(server));
    Ok(toml::to_string(&root)?)
}

/// Starts the router with the embedded server; returns it, its address and
/// its name, from the line it prints at start.
fn start_router(dir: &Path, config: &Path) -> anyhow::Result<(ChildGuard, SocketAddr, Name)> {
    let log = dir.join("router.log");
    let binary = find_workspace_bin("gdp-router").map_err(|e| anyhow!(e))?;
    let (router, line) = spawn_with_start_line(
        Command::new(binary)
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--log", "warn", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log)?),
        "gdp-router",
        Some(&log),
        Duration::from_secs(20),
    )?;
    let field =
        |key: &str| start_line_field(&line, key).ok_or_else(|| anyhow!("no {key} in {line:?}"));
    let addr: SocketAddr = field("listen")?.parse()?;
    let name: Name = field("name")?.parse()?;
    Ok((router, addr, name))
}

/// `records` records of [`RECORD_LEN`] bytes in appends of `per_append`,
/// each closed by one heartbeat, encoded as request PDUs with ids from
/// `link`.
fn append_pdus(
    w: &mut Writer,
    link: &EndpointLink,
    records: usize,
    per_append: usize,
) -> anyhow::Result<Vec<Bytes>> {
    let payload = Bytes::from((0..RECORD_LEN).map(|i| i as u8).collect::<Vec<u8>>());
    let mut out = Vec::with_capacity(records / per_append);
    for _ in 0..records / per_append {
        let body = w.append_payloads(std::iter::repeat_n(payload.clone(), per_append));
        let pdu = body.to_pdu(w.capsule(), link.name(), link.next_seq())?;
        out.push(pdu.to_bytes());
    }
    Ok(out)
}

/// Sends one request and waits for its answer, skipping anything else;
/// `None` on a NAK (no route yet) or after `wait`.
async fn call(
    link: &EndpointLink,
    rx: &mut EndpointReceiver,
    dst: Name,
    body: &CapsuleRequest,
    wait: Duration,
) -> anyhow::Result<Option<CapsuleResponse>> {
    let id = link.next_seq();
    link.send(&body.to_pdu(dst, link.name(), id)?).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => bail!("the client's link is down"),
            Err(_) => return Ok(None),
        };
        match event {
            EndpointEvent::Pdu { pdu, .. } if pdu.header.seq == id => {
                return Ok(Some(CapsuleResponse::from_pdu(&pdu)?));
            }
            EndpointEvent::NakNoRoute(nak) if nak.seq == id => return Ok(None),
            EndpointEvent::Down(reason) => bail!("the client's link went down: {reason}"),
            _ => {}
        }
    }
}

/// Creates the writer's capsule, addressed to the server (the capsule has
/// no route yet), retrying until the server has attached.
async fn create(
    link: &EndpointLink,
    rx: &mut EndpointReceiver,
    server: Name,
    w: &Writer,
) -> anyhow::Result<()> {
    let body = w.create();
    let deadline = Instant::now() + WAIT;
    loop {
        match call(link, rx, server, &body, Duration::from_secs(2)).await? {
            Some(CapsuleResponse::Created) => return Ok(()),
            Some(other) => bail!("create answered {other:?}"),
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => bail!("the embedded capsule server never became reachable"),
        }
    }
}

/// Sends `pdus` with at most `window` unanswered; every answer must be
/// `Appended`. Returns the elapsed time from the first send to the last
/// answer.
async fn pipeline_appends(
    link: &EndpointLink,
    rx: &mut EndpointReceiver,
    pdus: Vec<Bytes>,
    window: usize,
) -> anyhow::Result<Duration> {
    let total = pdus.len();
    let permits = Arc::new(Semaphore::new(window));
    let start = Instant::now();
    let sender = {
        let link = link.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            for pdu in pdus {
                permits.acquire().await?.forget();
                link.send_encoded(pdu).await?;
            }
            anyhow::Ok(())
        })
    };
    let mut events = Vec::new();
    let mut done = 0;
    while done < total {
        events.clear();
        let got = tokio::time::timeout(WAIT, rx.recv_many(&mut events, 1024))
            .await
            .context("an append unanswered")?;
        ensure!(got > 0, "the client's link is down");
        for event in events.drain(..) {
            match event {
                EndpointEvent::Pdu { pdu, .. } => match CapsuleResponse::from_pdu(&pdu)? {
                    CapsuleResponse::Appended { .. } => {
                        done += 1;
                        permits.add_permits(1);
                    }
                    other => bail!("append answered {other:?}"),
                },
                EndpointEvent::NakNoRoute(nak) => bail!("append not delivered: {nak:?}"),
                EndpointEvent::Down(reason) => bail!("the client's link went down: {reason}"),
                _ => {}
            }
        }
    }
    let elapsed = start.elapsed();
    sender.await??;
    Ok(elapsed)
}

/// Reads `1..=tail` of the capsule over and over for at least `secs`,
/// pipelining `window` ReadRange requests of `chunk` records, verifying
/// every answer. Returns (records verified, elapsed).
async fn pipeline_reads(
    link: &EndpointLink,
    rx: &mut EndpointReceiver,
    md: &Metadata,
    tail: u64,
    chunk: u64,
    window: usize,
    secs: f64,
) -> anyhow::Result<(u64, Duration)> {
    let capsule = md.name();
    let start = Instant::now();
    let mut verified = 0u64;
    let mut events = Vec::new();
    // Request id -> the first seqno asked for.
    let mut in_flight = std::collections::HashMap::new();
    let mut next = 1u64;
    loop {
        let stop = start.elapsed().as_secs_f64() >= secs && next == 1;
        if stop && in_flight.is_empty() {
            break;
        }
        let mut batch = Vec::new();
        while !stop && in_flight.len() + batch.len() < window {
            let to = (next + chunk - 1).min(tail);
            let id = link.next_seq();
            let body = CapsuleRequest::ReadRange { from: next, to };
            batch.push(body.to_pdu(capsule, link.name(), id)?.to_bytes());
            in_flight.insert(id, next);
            next = if to == tail { 1 } else { to + 1 };
            if next == 1 && start.elapsed().as_secs_f64() >= secs {
                break;
            }
        }
        if !batch.is_empty() {
            link.send_batch(batch).await?;
        }
        if in_flight.is_empty() {
            continue;
        }
        events.clear();
        let got = tokio::time::timeout(WAIT, rx.recv_many(&mut events, 64))
            .await
            .context("a read unanswered")?;
        ensure!(got > 0, "the client's link is down");
        for event in events.drain(..) {
            let pdu = match event {
                EndpointEvent::Pdu { pdu, .. } => pdu,
                EndpointEvent::NakNoRoute(nak) => bail!("read not delivered: {nak:?}"),
                EndpointEvent::Down(reason) => bail!("the client's link went down: {reason}"),
                _ => continue,
            };
            let from = in_flight
                .remove(&pdu.header.seq)
                .context("an answer to no read")?;
            let CapsuleResponse::Records { records, proof } = CapsuleResponse::from_pdu(&pdu)?
            else {
                bail!("records expected");
            };
            proof.verify_range(md, &records)?;
            ensure!(
                records.first().map(Record::seqno) == Some(from),
                "the answer does not start at {from}"
            );
            verified += records.len() as u64;
        }
    }
    Ok((verified, start.elapsed()))
}

const RAW: TableDefinition<(&[u8; 32], u64), &[u8]> = TableDefinition::new("records");

/// Durable redb commits of `per_commit` records for `secs`; (records/s,
/// commits/s).
fn raw_rate(db: &Database, key: u8, per_commit: usize, secs: f64) -> anyhow::Result<(u64, u64)> {
    // Stored records (payload, hash link and heartbeat-sized overhead), a
    // commit's records in one row, as the store keeps an append's (a run).
    let value = vec![0x5a; per_commit * (RECORD_LEN + 36 + 120)];
    let name = [key; 32];
    let start = Instant::now();
    let mut seqno = 0u64;
    let mut commits = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = txn.open_table(RAW)?;
            seqno += per_commit as u64;
            t.insert((&name, seqno), value.as_slice())?;
        }
        txn.commit()?;
        commits += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((
        (seqno as f64 / elapsed) as u64,
        (commits as f64 / elapsed) as u64,
    ))
}

/// Single ed25519 verifications per second of a heartbeat-sized body.
fn verify_rate(secs: f64) -> anyhow::Result<u64> {
    let key = SecretKey::generate();
    let public = key.public();
    let body = [7u8; 112];
    let sig = key.sign(SigContext::Heartbeat, &body);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..256 {
            public.verify(SigContext::Heartbeat, std::hint::black_box(&body), &sig)?;
        }
        n += 256;
    }
    Ok((n as f64 / start.elapsed().as_secs_f64()) as u64)
}

/// One append mode's figures.
struct AppendFigures {
    per: usize,
    records_per_sec: u64,
    raw_records_per_sec: u64,
    raw_commits_per_sec: u64,
}

fn mode_name(per: usize) -> String {
    if per == 1 {
        "hb_per_record".into()
    } else {
        format!("batch_{per}")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = TempDir::try_new("bench-capsule")?;
    let id = Identity::generate(Kind::Server, "bench-server")?;
    let key_file = dir.path().join("server.key");
    id.save(&key_file)?;
    let server = id.name();
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        router_config(dir.path(), &key_file, args.default_limits)?,
    )?;
    let (mut router, addr, router_name) = start_router(dir.path(), &config)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run_through_router(&args, addr, router_name, server));
    // SIGTERM, a bounded wait, then SIGKILL.
    router.terminate(Duration::from_secs(10));
    let (appends, read) = result?;

    // The engine and the crypto alone, after the router has stopped.
    let raw_dir = TempDir::try_new("bench-raw-redb")?;
    let db = Database::create(raw_dir.path().join("raw.redb"))?;
    let mut figures = Vec::new();
    for (i, (per, rps)) in appends.into_iter().enumerate() {
        let (rows, commits) = raw_rate(&db, i as u8, per, args.raw_secs)?;
        figures.push(AppendFigures {
            per,
            records_per_sec: rps,
            raw_records_per_sec: rows,
            raw_commits_per_sec: commits,
        });
    }
    drop(db);
    let verifies = verify_rate(args.verify_secs)?;
    print_table(&figures, read, verifies);
    Ok(())
}

/// The appends and reads through the router: ((per append, records/s) per
/// mode, (verified records/s, records per response)).
async fn run_through_router(
    args: &Args,
    addr: SocketAddr,
    router: Name,
    server: Name,
) -> anyhow::Result<(Vec<(usize, u64)>, (u64, u64))> {
    let client = Identity::generate(Kind::Client, "bench-client")?;
    let (link, mut rx) =
        EndpointLink::connect(&client, &EndpointConfig::new(addr).with_router(router)).await?;
    let mut out = Vec::new();
    let mut read_capsule = None;
    for (per, records) in [
        (1, args.records_hb),
        (16, args.records_batch16),
        (256, args.records_batch256),
    ] {
        // Forgetful: the records are not kept for a later comparison.
        let mut w = Writer::new(server, &mode_name(per)).forgetful();
        create(&link, &mut rx, server, &w).await?;
        let pdus = append_pdus(&mut w, &link, records, per)?;
        let n = pdus.len() * per;
        let window = (args.window_records / per).clamp(1, args.max_window.max(1));
        let elapsed = pipeline_appends(&link, &mut rx, pdus, window).await?;
        let rps = (n as f64 / elapsed.as_secs_f64()) as u64;
        eprintln!(
            "append {:>13}: {n} records in {:.2} s, window {window} appends",
            mode_name(per),
            elapsed.as_secs_f64()
        );
        out.push((per, rps));
        if per == 256 {
            read_capsule = Some((w.md, n as u64));
        }
    }
    let (md, tail) = read_capsule.context("a capsule to read")?;
    ensure!(tail > 0, "nothing to read");
    // One read to learn how many records a response holds.
    let first = call(
        &link,
        &mut rx,
        md.name(),
        &CapsuleRequest::ReadRange { from: 1, to: tail },
        WAIT,
    )
    .await?;
    let Some(CapsuleResponse::Records { records, proof }) = first else {
        bail!("records expected, got {first:?}");
    };
    proof.verify_range(&md, &records)?;
    let chunk = records.len() as u64;
    let (verified, elapsed) = pipeline_reads(
        &link,
        &mut rx,
        &md,
        tail,
        chunk,
        args.read_window.max(1),
        args.read_secs,
    )
    .await?;
    eprintln!(
        "read: {verified} records verified in {:.2} s, {chunk} per response",
        elapsed.as_secs_f64()
    );
    link.shutdown("benchmark done").await;
    let rps = (verified as f64 / elapsed.as_secs_f64()) as u64;
    Ok((out, (rps, chunk)))
}

fn print_table(appends: &[AppendFigures], (read_rps, chunk): (u64, u64), verifies: u64) {
    println!();
    println!(
        "capsule server through one router ({RECORD_LEN}-byte records, durable, heartbeats verified)"
    );
    println!(
        "{:<28} {:>14} {:>16} {:>14} {:>7}  target",
        "figure", "records/s", "raw redb records/s", "raw commits/s", "ratio"
    );
    for f in appends {
        let ratio = f.records_per_sec as f64 / f.raw_records_per_sec.max(1) as f64;
        let mut target = format!(">= 0.5x raw: {}", verdict(ratio >= 0.5));
        if f.per > 1 {
            target.push_str(&format!(
                "; >= 20,000/s: {}",
                verdict(f.records_per_sec >= 20_000)
            ));
        }
        println!(
            "{:<28} {:>14} {:>16} {:>14} {:>6.2}x  {target}",
            format!("append {}", mode_name(f.per)),
            f.records_per_sec,
            f.raw_records_per_sec,
            f.raw_commits_per_sec,
            ratio
        );
    }
    println!(
        "{:<28} {:>14} {:>16} {:>14} {:>7}  >= 100,000/s: {}",
        format!("read verified ({chunk}/resp)"),
        read_rps,
        "",
        "",
        "",
        verdict(read_rps >= 100_000)
    );
    println!(
        "{:<28} {:>14} {:>16} {:>14} {:>7}  (single verifications/s, one core)",
        "ed25519 verify", verifies, "", "", ""
    );
}
