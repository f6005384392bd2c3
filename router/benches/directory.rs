//! Directory lookup latency: the memory backend and a local `redis-server`.
//!
//! Run with `cargo bench -p gdp-router --bench directory` (needs
//! `redis-server`, which `scripts/test.sh` installs). Besides criterion's
//! report it prints the p50/p99/p99.9 of 10,000 sequential Redis lookups
//! and publishes measured one by one; the target for a lookup is a p50 of at
//! most 1 ms.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use gdp_certs::{Name, Timestamp};
use gdp_router::directory::{Directory, DirectoryOptions, MemoryDirectory, RedisDirectory};
use gdp_testkit::RedisServer;
use hdrhistogram::Histogram;
use tokio::runtime::Runtime;

/// Routers publishing the benchmarked name (a capsule with replicas).
const REPLICAS: u8 = 3;
/// A typical route record length (router and capsule metadata, certificates).
const RECORD_LEN: usize = 700;
/// Operations measured for the percentile report.
const SAMPLES: usize = 10_000;

fn populate(rt: &Runtime, dir: &dyn Directory, name: Name) {
    let expires = Timestamp::now().saturating_add(Duration::from_secs(3600));
    for i in 0..REPLICAS {
        let record = Bytes::from(vec![i; RECORD_LEN]);
        rt.block_on(dir.publish(name, Name::from_bytes([i; 32]), record, expires))
            .expect("publish");
    }
}

fn percentiles(label: &str, rt: &Runtime, mut op: impl FnMut(&Runtime)) {
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds");
    for _ in 0..SAMPLES / 10 {
        op(rt);
    }
    for _ in 0..SAMPLES {
        let start = Instant::now();
        op(rt);
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        histogram.saturating_record(micros.max(1));
    }
    println!(
        "{label}: p50 {} us, p99 {} us, p99.9 {} us, max {} us ({SAMPLES} samples)",
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
    );
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = RedisServer::start();
    let redis = rt
        .block_on(RedisDirectory::connect(
            &server.url(),
            &DirectoryOptions::default(),
        ))
        .expect("connects to the local redis-server");
    let memory = MemoryDirectory::new();
    let name = Name::from_bytes([0xab; 32]);
    populate(&rt, &redis, name);
    populate(&rt, &memory, name);

    percentiles("redis lookup", &rt, |rt| {
        let lookup = rt.block_on(redis.lookup(name)).expect("lookup");
        assert_eq!(lookup.records.len(), usize::from(REPLICAS));
    });
    let expires = Timestamp::now().saturating_add(Duration::from_secs(3600));
    let record = Bytes::from(vec![9u8; RECORD_LEN]);
    percentiles("redis publish", &rt, |rt| {
        rt.block_on(redis.publish(name, Name::from_bytes([0; 32]), record.clone(), expires))
            .expect("publish");
    });

    let mut group = c.benchmark_group("directory_lookup");
    group.bench_function("memory", |b| {
        b.iter(|| black_box(rt.block_on(memory.lookup(black_box(name)))))
    });
    group.bench_function("redis", |b| {
        b.iter(|| black_box(rt.block_on(redis.lookup(black_box(name)))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
