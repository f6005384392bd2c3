//! Throughput of sealing and opening record payloads (epoch mode).
//!
//! Run with `cargo bench -p gdp-seal --bench seal` (add `-- --quick` for a
//! short run). Throughput is counted in plaintext bytes; opening includes
//! decoding the envelope. `seal` and `open` derive the XChaCha20 subkey
//! for every record; `sealer` and `opener` keep it for a run of records
//! from one `Sealer`, as a writer and a reader of many records do.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gdp_certs::Name;
use gdp_seal::{ContentKey, EnvelopeRef, Mode, Opener, Sealer, open_bytes, seal};

fn envelopes(c: &mut Criterion) {
    let key = ContentKey::from_bytes([7; 32]);
    let capsule = Name::from_bytes([1; 32]);
    let mut group = c.benchmark_group("envelope");
    for (label, len) in [("64B", 64usize), ("1KiB", 1024)] {
        let plaintext = vec![0x5a; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("seal/{label}"), |b| {
            b.iter(|| seal(&key, 1, Mode::Epoch, &capsule, black_box(42), &plaintext))
        });
        let sealed = seal(&key, 1, Mode::Epoch, &capsule, 42, &plaintext);
        group.bench_function(format!("open/{label}"), |b| {
            b.iter(|| {
                open_bytes(&key, &capsule, 42, black_box(sealed.clone()))
                    .expect("the envelope opens")
            })
        });
        let mut sealer = Sealer::new(&key, 1, Mode::Epoch, capsule);
        group.bench_function(format!("sealer/{label}"), |b| {
            b.iter(|| sealer.seal(black_box(42), &plaintext))
        });
        let sealed = sealer.seal(42, &plaintext);
        let mut opener = Opener::new();
        let mut out = BytesMut::with_capacity(len);
        group.bench_function(format!("opener/{label}"), |b| {
            b.iter(|| {
                out.clear();
                let env = EnvelopeRef::parse(black_box(&sealed)).expect("decodes");
                opener
                    .open_to(&key, &capsule, 42, env, &mut out)
                    .expect("the envelope opens")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, envelopes);
criterion_main!(benches);
