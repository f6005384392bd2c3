//! Throughput of record hashing, heartbeat verification and proofs.
//!
//! Run with `cargo bench -p gdp-proto --bench records` (add `-- --quick` for a
//! short run). Throughput is counted in elements (records, heartbeats or
//! proofs), so criterion reports them per second.
//!
//! The proof benchmarks build the headers of a 1,000,000-record capsule in
//! memory once (a few seconds) and prove record 1 from the heartbeat at
//! 1,000,000.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Metadata, SecretKey, Timestamp};
use gdp_proto::chain::{Appender, ChainState};
use gdp_proto::proof::{Heartbeat, Proof, verify_heartbeats};
use gdp_proto::record::{Record, RecordHash, RecordHeader};

const BATCH: usize = 64;
const CHAIN_LEN: u64 = 1_000_000;

fn capsule() -> (SecretKey, Metadata) {
    let writer = SecretKey::from_seed(&[1; 32]);
    let md = Metadata::capsule(
        SecretKey::from_seed(&[2; 32]).public(),
        vec![writer.public()],
        "bench capsule",
        Timestamp::from_secs(1_800_000_000),
        vec![],
    )
    .expect("one writer and a short label are within limits");
    (writer, md)
}

fn heartbeats(c: &mut Criterion) {
    let (writer, md) = capsule();
    let mut appender =
        Appender::new(writer, &md, ChainState::new(md.name())).expect("the key is a writer");
    let signed: Vec<Heartbeat> = (0..BATCH as u64)
        .map(|i| {
            appender
                .append_signed(Bytes::from(vec![0; 64]), Timestamp(i))
                .expect("small payloads are within limits")
                .1
        })
        .collect();

    let mut g = c.benchmark_group("heartbeat");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify", |b| {
        b.iter(|| black_box(&signed[0]).verify(black_box(&md)))
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    let items: Vec<(&Metadata, &Heartbeat)> = signed.iter().map(|hb| (&md, hb)).collect();
    g.bench_function("verify_batch_64", |b| {
        b.iter(|| verify_heartbeats(black_box(&items)))
    });
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let name = capsule().1.name();
    let payload = Bytes::from(vec![0xa5; 1024]);
    let skips = vec![RecordHash([3; 32]); 2];
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hash_1KiB", |b| {
        b.iter(|| {
            Record::new(
                name,
                black_box(12),
                Timestamp(1),
                RecordHash([4; 32]),
                skips.clone(),
                black_box(payload.clone()),
            )
            .map(|r| r.hash())
        })
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let (writer, md) = capsule();
    let mut appender =
        Appender::new(writer, &md, ChainState::new(md.name())).expect("the key is a writer");
    let headers: Vec<RecordHeader> = (1..=CHAIN_LEN)
        .map(|i| {
            appender
                .append(Bytes::new(), Timestamp(i))
                .expect("empty payloads are within limits")
                .into_header()
        })
        .collect();
    let hb = appender.heartbeat().expect("the chain is not empty");
    let lookup = |s: u64| {
        headers
            .get(usize::try_from(s).ok()?.checked_sub(1)?)
            .cloned()
    };
    let proof = Proof::build(hb.clone(), 1, lookup).expect("every header is present");
    let target = &headers[0];
    let verified = proof
        .verify_header(&md, target)
        .expect("the proof is valid");

    let mut g = c.benchmark_group("proof_1M");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify", |b| {
        b.iter(|| black_box(&proof).verify_header(black_box(&md), target))
    });
    g.bench_function("verify_under_verified_heartbeat", |b| {
        b.iter(|| black_box(&proof).verify_under(&verified, 1, target.hash()))
    });
    // Decoding hashes every header, so this is the cost of checking the
    // path of a proof received from the network, without the signature.
    let bytes = proof.to_bytes();
    g.bench_function("decode_and_verify_path", |b| {
        b.iter(|| {
            Proof::decode(black_box(bytes.clone()))
                .map(|p| p.verify_under(&verified, 1, target.hash()))
        })
    });
    g.bench_function("build", |b| {
        b.iter(|| Proof::build(hb.clone(), black_box(1), lookup))
    });
    g.finish();
    println!(
        "proof of record 1 from {CHAIN_LEN}: {} headers",
        proof.path.len()
    );
}

criterion_group!(benches, heartbeats, hashing, proofs);
criterion_main!(benches);
