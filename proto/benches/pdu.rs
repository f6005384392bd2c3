//! PDU codec benchmarks: header encode+decode, and link framing throughput.
//!
//! Run with `cargo bench -p gdp-proto --bench pdu` (add `-- --quick` for a
//! short run).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gdp_certs::Name;
use gdp_certs::codec::{Decode, Encode, Reader};
use gdp_proto::frame::{FrameDecoder, FrameEncoder, encode_batch};
use gdp_proto::pdu::{HEADER_LEN, Pdu, PduHeader, PduType, decrement_ttl, peek_header};

/// Size of the stream chunks the chunked decoder benchmark pushes, about
/// what a QUIC stream read returns.
const CHUNK: usize = 16 * 1024;
/// Bytes of PDUs in each framing benchmark buffer.
const BUFFER: usize = 1 << 20;

fn pdu(payload_len: usize, seq: u64) -> Pdu {
    let header = PduHeader::new(
        PduType::Data,
        Name::from_bytes([1; 32]),
        Name::from_bytes([2; 32]),
        seq,
    );
    Pdu::new(header, Bytes::from(vec![0x5a; payload_len])).expect("payload within limits")
}

fn header(c: &mut Criterion) {
    let h = pdu(1000, 42).wire_header();
    let mut g = c.benchmark_group("pdu_header");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_decode", |b| {
        let mut buf = BytesMut::with_capacity(HEADER_LEN);
        b.iter(|| {
            buf.clear();
            black_box(&h).encode(&mut buf);
            black_box(peek_header(black_box(&buf)).expect("valid header"))
        })
    });
    g.bench_function("encode_decode_reader", |b| {
        b.iter(|| {
            let bytes = black_box(&h).to_bytes();
            let mut r = Reader::new(bytes);
            black_box(PduHeader::decode_from(&mut r).expect("valid header"))
        })
    });
    g.bench_function("peek_decrement_ttl", |b| {
        let mut wire = pdu(0, 1).to_bytes().to_vec();
        b.iter(|| {
            wire[3] = 32;
            let h = peek_header(black_box(&wire)).expect("valid header");
            black_box((h.dst, decrement_ttl(black_box(&mut wire))))
        })
    });
    g.finish();
}

fn framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_decoder");
    for payload in [64usize, 1024] {
        let count = BUFFER / (HEADER_LEN + payload);
        let pdus: Vec<Pdu> = (0..count as u64).map(|i| pdu(payload, i)).collect();
        let wire = encode_batch(&pdus).expect("within limits");
        g.throughput(Throughput::Elements(count as u64));
        g.bench_with_input(BenchmarkId::new("one_buffer", payload), &wire, |b, wire| {
            b.iter(|| {
                let mut dec = FrameDecoder::new();
                dec.push(wire.clone()).expect("room");
                let mut n = 0usize;
                while let Some(p) = dec.next_pdu().expect("valid stream") {
                    black_box(&p);
                    n += 1;
                }
                assert_eq!(n, count);
            })
        });
        g.bench_with_input(BenchmarkId::new("16k_chunks", payload), &wire, |b, wire| {
            b.iter(|| {
                let mut dec = FrameDecoder::new();
                let mut n = 0usize;
                let mut at = 0;
                while at < wire.len() {
                    let end = (at + CHUNK).min(wire.len());
                    dec.push(wire.slice(at..end)).expect("room");
                    at = end;
                    while let Some(p) = dec.next_pdu().expect("valid stream") {
                        black_box(&p);
                        n += 1;
                    }
                }
                assert_eq!(n, count);
            })
        });
        g.bench_with_input(
            BenchmarkId::new("encode_batch", payload),
            &pdus,
            |b, pdus| {
                let mut enc = FrameEncoder::with_capacity(BUFFER);
                b.iter(|| {
                    for p in pdus {
                        enc.push(p).expect("within limits");
                    }
                    black_box(enc.take())
                })
            },
        );
    }
    g.finish();
}

fn datagram(c: &mut Criterion) {
    let wire = pdu(1024, 7).to_bytes();
    let mut g = c.benchmark_group("pdu_datagram");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_1k", |b| {
        b.iter(|| black_box(Pdu::decode(black_box(wire.clone())).expect("valid")))
    });
    g.finish();
}

criterion_group!(benches, header, framing, datagram);
criterion_main!(benches);
