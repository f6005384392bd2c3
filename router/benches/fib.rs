//! FIB benchmarks: lookup time with 1,000,000 names, and memory per entry.
//!
//! Run with `cargo bench -p gdp-router --bench fib` (add `-- --quick` for a
//! short run). Before the criterion runs it prints the memory the FIB takes
//! for 1,000,000 entries, measured as the growth of the process's resident
//! set while the entries are inserted, and the table's slot count, and how
//! long the link-down scan (`Fib::remove_link`) takes over the full table.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gdp_certs::{Name, Timestamp};
use gdp_router::core::{Fib, FibEntry, LinkId, RouteKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Names in the FIB.
const ENTRIES: usize = 1_000_000;
/// Names each lookup benchmark iteration cycles through.
const PROBES: usize = 4096;

/// The resident set size of this process in bytes (Linux), if readable.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn names(rng: &mut StdRng, n: usize) -> Vec<Name> {
    (0..n).map(|_| Name::from_bytes(rng.r#gen())).collect()
}

fn entry(i: usize) -> FibEntry {
    FibEntry {
        next_hop: LinkId((i % 64) as u64),
        kind: RouteKind::Cached,
        expires: Timestamp::MAX,
    }
}

/// Fills a FIB with `names` and reports the memory it took.
fn build(names: &[Name]) -> Fib {
    let before = resident_bytes();
    let fib = Fib::new([0x5eed, 0xfeed]);
    for (i, n) in names.iter().enumerate() {
        fib.insert(*n, entry(i));
    }
    let after = resident_bytes();
    let slot = Fib::SLOT_BYTES;
    println!(
        "fib: {} entries, {} table slots of {slot} bytes (+1 control byte) = {:.1} bytes/entry by table size",
        fib.len(),
        fib.capacity(),
        (fib.capacity() * (slot + 1)) as f64 / fib.len() as f64,
    );
    // A link-down scan over the whole table (no entry uses this link).
    let start = std::time::Instant::now();
    let removed = fib.remove_link(LinkId(u64::MAX));
    println!(
        "fib: remove_link scan of {} entries took {:.1} ms ({removed} removed)",
        fib.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "fib: resident set grew by {:.1} MiB = {:.1} bytes/entry",
            a.saturating_sub(b) as f64 / (1024.0 * 1024.0),
            a.saturating_sub(b) as f64 / fib.len() as f64,
        );
    }
    fib
}

fn lookups(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let present = names(&mut rng, ENTRIES);
    let absent = names(&mut rng, PROBES);
    let fib = build(&present);
    let probes: Vec<Name> = (0..PROBES)
        .map(|_| present[rng.gen_range(0..present.len())])
        .collect();
    let now = Timestamp::from_secs(1_800_000_000);

    let mut g = c.benchmark_group("fib_1m");
    g.throughput(Throughput::Elements(1));
    g.bench_function("lookup_hit", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(fib.lookup(black_box(&probes[i]), now))
        })
    });
    g.bench_function("lookup_miss", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(fib.lookup(black_box(&absent[i]), now))
        })
    });
    g.bench_function("insert_replace", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(fib.insert(probes[i], entry(i)))
        })
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
