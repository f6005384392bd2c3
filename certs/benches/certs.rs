//! Throughput of name derivation and certificate verification.
//!
//! Run with `cargo bench -p gdp-certs --bench certs` (add `-- --quick` for a
//! short run). Every benchmark processes one item per iteration, so criterion
//! reports elements per second.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gdp_certs::cert::{AdCert, RouteRecord, RouteTarget, RtCert, Validity};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Kind, Metadata, SecretKey, Timestamp};

struct Setup {
    capsule_md: Metadata,
    adcert: AdCert,
    router: Identity,
    capsule_route: RouteRecord,
    router_route: RouteRecord,
    now: Timestamp,
}

fn setup() -> Setup {
    let now = Timestamp::from_secs(1_800_000_000);
    let validity = Validity::new(
        Timestamp::from_secs(1_799_000_000),
        Timestamp::from_secs(1_801_000_000),
    );
    let principal = |seed: u8, kind, label| {
        Identity::from_key(SecretKey::from_seed(&[seed; 32]), kind, label, now)
            .expect("short labels are within limits")
    };
    let owner = SecretKey::from_seed(&[1; 32]);
    let server = principal(2, Kind::Server, "store-1");
    let router = principal(3, Kind::Router, "edge-1");
    let capsule_md = Metadata::capsule(
        owner.public(),
        vec![owner.public()],
        "sensor readings",
        now,
        vec![],
    )
    .expect("one writer and no hosting constraints are within limits");
    let adcert = AdCert::issue(&owner, capsule_md.name(), server.name(), validity);
    let addresses: Vec<SocketAddr> = vec![
        SocketAddr::from(([192, 0, 2, 1], 4433)),
        "[2001:db8::1]:4433".parse().expect("literal address"),
    ];
    let capsule_route = RouteRecord::sign(
        &router,
        capsule_md.name(),
        RouteTarget::Capsule {
            capsule_md: capsule_md.clone(),
            adcert: adcert.clone(),
            server_md: server.metadata().clone(),
            rtcert: RtCert::issue_by(&server, router.name(), validity),
        },
        addresses.clone(),
        None,
        validity,
    )
    .expect("two addresses are within limits");
    let router_route = RouteRecord::sign(
        &router,
        router.name(),
        RouteTarget::Router,
        addresses,
        None,
        validity,
    )
    .expect("two addresses are within limits");
    Setup {
        capsule_md,
        adcert,
        router,
        capsule_route,
        router_route,
        now,
    }
}

fn names(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("names");
    g.throughput(Throughput::Elements(1));
    g.bench_function("capsule_metadata_name", |b| {
        b.iter(|| black_box(&s.capsule_md).name())
    });
    g.bench_function("router_metadata_name", |b| {
        b.iter(|| black_box(s.router.metadata()).name())
    });
    g.finish();
}

fn adcerts(c: &mut Criterion) {
    let s = setup();
    let bytes = s.adcert.to_bytes();
    let mut g = c.benchmark_group("adcert");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify", |b| {
        b.iter(|| {
            black_box(&s.adcert)
                .verify(black_box(&s.capsule_md), s.now)
                .expect("valid certificate")
        })
    });
    g.bench_function("decode_and_verify", |b| {
        b.iter(|| {
            AdCert::decode(black_box(bytes.clone()))
                .expect("valid encoding")
                .verify(&s.capsule_md, s.now)
                .expect("valid certificate")
        })
    });
    g.finish();
}

fn route_records(c: &mut Criterion) {
    let s = setup();
    let capsule_name = s.capsule_md.name();
    let router_name = s.router.name();
    let bytes = s.capsule_route.to_bytes();
    let mut g = c.benchmark_group("route_record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_capsule_route", |b| {
        b.iter(|| {
            black_box(&s.capsule_route)
                .verify(&capsule_name, s.now)
                .expect("valid record")
        })
    });
    g.bench_function("verify_router_route", |b| {
        b.iter(|| {
            black_box(&s.router_route)
                .verify(&router_name, s.now)
                .expect("valid record")
        })
    });
    g.bench_function("decode_capsule_route", |b| {
        b.iter(|| RouteRecord::decode(black_box(bytes.clone())).expect("valid encoding"))
    });
    g.finish();
}

criterion_group!(benches, names, adcerts, route_records);
criterion_main!(benches);
