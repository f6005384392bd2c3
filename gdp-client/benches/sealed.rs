//! Encrypted capsules beside plaintext ones: appends/s and verified
//! reads/s for 64-byte and 1 KiB records, in one run.
//!
//! ```text
//! cargo build --release --bins
//! cargo bench -p gdp-client --bench sealed
//! cargo bench -p gdp-client --bench sealed -- --records 100000 --trials 5   # the defaults
//! cargo bench -p gdp-client --bench sealed -- --size 1024 --mode encrypted  # one row, to profile
//! ```
//!
//! The overlay: one `gdp-router` and one `gdp-capsule-server` process
//! (durable redb store), the writer and the reader in this process. Each
//! row is a fresh capsule; rows alternate plaintext and encrypted (which of
//! the two goes first alternates from trial to trial, as the server's store
//! grows with every row), and the whole set is repeated `--trials` times.
//! Printed: the medians of each column, then each trial's own ratios
//! (encrypted against the plaintext row measured just before or after it,
//! which cancels the machine's drift between trials) and their median.
//!
//! Rows are long enough to measure the steady state: at 64 bytes a row of
//! 20,000 records took 70-100 ms to append and 40-50 ms per read pass,
//! much of it filling and draining the writer's 32 batches in flight and
//! the reader's spans, and its ratios moved by a tenth from run to run.
//!
//! - **appends/s**: `--records` records handed to the writer (a
//!   [`Writer`](gdp_client::Writer), or a
//!   [`SealedWriter`](gdp_client::SealedWriter) that seals each one under
//!   the epoch key first) in chunks of 1,000 and flushed; the SDK's
//!   default batching and pipelining.
//! - **reads/s**: the same records read back five times with `read_chunks` (every
//!   chunk verified against the capsule's metadata, several in flight) and,
//!   for the encrypted capsule, each chunk decrypted by a
//!   [`ReaderView`](gdp_client::ReaderView) on the task that verified it.
//!
//! The client, the router and the server share this machine's cores; the
//! CPU time all three used (from `/proc`) is printed per record beside the
//! rates, which is steadier than the rates from run to run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use gdp_client::{CapsuleSpec, Client, EncryptionScheme, Identity, Name};

use common::Net;
use gdp_testkit::{cpu_seconds, median};

/// Records handed to the writer at once.
const CHUNK: usize = 1000;

/// Times the records are read back in each row: one pass of 20,000 small
/// records takes about 50 ms, too short for CPU figures counted in 10 ms
/// ticks.
const READ_PASSES: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Sealed,
}

struct Sample {
    trial: usize,
    size: usize,
    mode: Mode,
    appends: f64,
    reads: f64,
    /// CPU microseconds per record, this process, the router and the
    /// server together: appending, then reading.
    append_cpu: f64,
    read_cpu: f64,
    /// Of `read_cpu`: this process, the router, the server.
    read_cpu_each: Vec<f64>,
}

/// CPU seconds used so far by this process and `pids`, each.
fn cpu_each(pids: &[u32]) -> Vec<f64> {
    std::iter::once(std::process::id())
        .chain(pids.iter().copied())
        .map(|p| cpu_seconds(p).unwrap_or(0.0))
        .collect()
}

/// CPU seconds used so far by this process and `pids` together.
fn cpu_now(pids: &[u32]) -> f64 {
    cpu_each(pids).iter().sum()
}

fn main() {
    let mut records = 100_000usize;
    let mut trials = 5usize;
    let mut sizes = vec![64, 1024];
    let mut modes = vec![Mode::Plain, Mode::Sealed];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => records = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--trials" => trials = args.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--size" => sizes = vec![args.next().and_then(|v| v.parse().ok()).expect("a number")],
            "--mode" => {
                modes = match args.next().as_deref() {
                    Some("plaintext") => vec![Mode::Plain],
                    Some("encrypted") => vec![Mode::Sealed],
                    other => panic!("--mode plaintext|encrypted, not {other:?}"),
                }
            }
            _ => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(records, trials, &sizes, &modes));
}

fn payloads(n: usize, size: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let mut p = format!("record {i} ").into_bytes();
            p.resize(size, b'.');
            Bytes::from(p)
        })
        .collect()
}

async fn run(records: usize, trials: usize, sizes: &[usize], modes: &[Mode]) {
    let net = Net::start("sealed-bench");
    let (client, me) = net.client("bench").await;
    let server = net.server.name;
    let pids: Vec<u32> = [net.router.proc.id(), net.server.proc.id()]
        .into_iter()
        .flatten()
        .collect();
    let mut samples = Vec::new();
    for trial in 0..trials {
        for &size in sizes {
            let mut order = modes.to_vec();
            if trial % 2 == 1 {
                order.reverse();
            }
            for mode in order {
                let mut s = one(&client, &me, server, &pids, records, size, mode).await;
                s.trial = trial;
                eprintln!(
                    "trial {trial}: {size} B {}: {:.0} appends/s ({:.1} us CPU each), {:.0} reads/s ({:.1} us CPU each: {})",
                    label(mode),
                    s.appends,
                    s.append_cpu,
                    s.reads,
                    s.read_cpu,
                    ["client", "router", "server"]
                        .iter()
                        .zip(&s.read_cpu_each)
                        .map(|(who, us)| format!("{who} {us:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                samples.push(s);
            }
        }
    }
    client.shutdown().await;

    println!(
        "| record | plaintext appends/s | encrypted appends/s | ratio | plaintext reads/s | encrypted reads/s | ratio | CPU us per append, plain / encrypted | CPU us per read, plain / encrypted |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for &size in sizes {
        let med = |mode: Mode, f: fn(&Sample) -> f64| {
            median(
                samples
                    .iter()
                    .filter(|s| s.size == size && s.mode == mode)
                    .map(f)
                    .collect(),
            )
        };
        let (pa, sa) = (
            med(Mode::Plain, |s| s.appends),
            med(Mode::Sealed, |s| s.appends),
        );
        let (pr, sr) = (
            med(Mode::Plain, |s| s.reads),
            med(Mode::Sealed, |s| s.reads),
        );
        let (pac, sac) = (
            med(Mode::Plain, |s| s.append_cpu),
            med(Mode::Sealed, |s| s.append_cpu),
        );
        let (prc, src) = (
            med(Mode::Plain, |s| s.read_cpu),
            med(Mode::Sealed, |s| s.read_cpu),
        );
        println!(
            "| {size} B | {pa:.0} | {sa:.0} | {:.2}x | {pr:.0} | {sr:.0} | {:.2}x | {pac:.1} / {sac:.1} | {prc:.1} / {src:.1} |",
            sa / pa,
            sr / pr
        );
    }
    println!(
        "\n{records} records per row, medians of {trials} trials; target: encrypted at least 0.8x plaintext"
    );
    if modes.len() < 2 {
        return;
    }
    println!("\nEach trial's own ratios, encrypted / plaintext (sorted), and their median:\n");
    println!("| record | appends | median | reads | median |");
    println!("| --- | --- | --- | --- | --- |");
    for &size in sizes {
        let ratios = |f: fn(&Sample) -> f64| {
            let mut r: Vec<f64> = (0..trials)
                .filter_map(|t| {
                    let of = |mode| {
                        samples
                            .iter()
                            .find(|s| s.trial == t && s.size == size && s.mode == mode)
                    };
                    Some(f(of(Mode::Sealed)?) / f(of(Mode::Plain)?))
                })
                .collect();
            r.sort_by(f64::total_cmp);
            let shown = r
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" ");
            (shown, median(r))
        };
        let (appends, am) = ratios(|s| s.appends);
        let (reads, rm) = ratios(|s| s.reads);
        println!("| {size} B | {appends} | {am:.2}x | {reads} | {rm:.2}x |");
    }
}

fn label(mode: Mode) -> &'static str {
    match mode {
        Mode::Plain => "plaintext",
        Mode::Sealed => "encrypted",
    }
}

/// One row: a fresh capsule, `records` appends, then every record read back.
async fn one(
    client: &Client,
    me: &Identity,
    server: Name,
    pids: &[u32],
    records: usize,
    size: usize,
    mode: Mode,
) -> Sample {
    let data = payloads(records, size);
    let key = me.secret_key();
    let spec = CapsuleSpec::new(format!("bench {size} {}", label(mode)));
    let capsule = match mode {
        Mode::Plain => client.create_capsule(server, key, spec).await,
        Mode::Sealed => client
            .create_encrypted(server, key, spec.encrypted(EncryptionScheme::Epoch))
            .await
            .map(|c| c.capsule),
    }
    .expect("capsule created")
    .capsule;

    // The writers read the chain's tail (and the sealed one its keyring)
    // before the clock starts.
    let mut plain = None;
    let mut sealed = None;
    match mode {
        Mode::Plain => plain = Some(capsule.writer(key.clone()).await.expect("writer")),
        Mode::Sealed => sealed = Some(capsule.sealed_writer(key.clone()).await.expect("writer")),
    }
    let cpu = cpu_now(pids);
    let start = Instant::now();
    for chunk in data.chunks(CHUNK) {
        match (&mut plain, &mut sealed) {
            (Some(w), _) => w.submit(chunk.to_vec()).await,
            (_, Some(w)) => w.submit(chunk.to_vec()).await,
            _ => unreachable!("one writer"),
        }
        .expect("submitted");
    }
    match (&mut plain, &mut sealed) {
        (Some(w), _) => w.flush().await,
        (_, Some(w)) => w.flush().await,
        _ => unreachable!("one writer"),
    }
    .expect("flushed");
    let appends = records as f64 / start.elapsed().as_secs_f64();
    let append_cpu = (cpu_now(pids) - cpu) * 1e6 / records as f64;

    let mut view = match mode {
        Mode::Plain => None,
        Mode::Sealed => Some(capsule.as_reader(key).await.expect("a reader")),
    };
    let cpu = cpu_each(pids);
    let start = Instant::now();
    let (mut read, mut bytes) = (0usize, 0usize);
    for _ in 0..READ_PASSES {
        // Each chunk handled as it arrives, while the next ones are on
        // their way (what `gdp read` does); an encrypted one decrypted on
        // the task that verified it.
        let to = records as u64;
        match &mut view {
            None => {
                let mut chunks = std::pin::pin!(capsule.read_chunks(1, to));
                while let Some(chunk) = chunks.next().await {
                    for r in &chunk.expect("verified reads") {
                        read += 1;
                        bytes += r.payload().len();
                    }
                }
            }
            Some(view) => {
                let mut chunks = std::pin::pin!(view.read_chunks(1, to));
                while let Some(chunk) = chunks.next().await {
                    for r in &chunk.expect("verified, decrypted reads") {
                        read += 1;
                        bytes += r.plaintext.len();
                    }
                }
            }
        }
    }
    let reads = read as f64 / start.elapsed().as_secs_f64();
    let read_cpu_each: Vec<f64> = cpu_each(pids)
        .iter()
        .zip(&cpu)
        .map(|(now, then)| (now - then) * 1e6 / read as f64)
        .collect();
    let read_cpu = read_cpu_each.iter().sum();
    assert_eq!(read, records * READ_PASSES);
    assert_eq!(bytes, read * size);
    Sample {
        trial: 0,
        size,
        mode,
        appends,
        reads,
        append_cpu,
        read_cpu,
        read_cpu_each,
    }
}
