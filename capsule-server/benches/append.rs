//! Durable append and verified read throughput of the capsule server.
//!
//! Run with `cargo bench -p gdp-capsule-server --bench append` (add
//! `-- --quick` for a short run). Criterion reports throughput in records
//! per second; a summary of the same figures, measured once more in plain
//! timed runs, is printed at the end.
//!
//! - `append/service/*`: one writer pipelining appends of 1 KiB records
//!   through the host (service + committer + store), every heartbeat
//!   verified, every append acknowledged only once durable. `hb_per_record`
//!   signs every record; `batch_16` and `batch_256` close batches of 16 and
//!   256 records with one heartbeat.
//! - `append/raw_redb/*`: the storage engine alone: durable redb commits of
//!   1, 16 and 256 records of the same size, one transaction after another,
//!   each commit's records in one row (as the store keeps an append's).
//! - `read/*`: `ReadRange` answers from a 65,536-record capsule:
//!   `serve_range` is the server's side (read, check hashes, build the
//!   proof); `verified_range` adds the wire round trip and the client's
//!   check of the records and proof against the capsule's metadata.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gdp_capsule_server::committer::{Committer, CommitterConfig};
use gdp_capsule_server::host::{Host, HostConfig};
use gdp_capsule_server::limits::ServiceConfig;
use gdp_capsule_server::service::{CapsuleService, Output, Request, Response};
use gdp_capsule_server::store::{Store, StoreOptions};
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::chain::{Appender, ChainState};
use gdp_proto::proof::Heartbeat;
use gdp_proto::record::Record;
use gdp_testkit::TempDir;
use redb::{Database, Durability, TableDefinition};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const RECORD_LEN: usize = 1024;
/// Records a writer keeps in flight.
const WINDOW_RECORDS: usize = 4096;
const READ_CAPSULE_LEN: u64 = 65_536;

fn now() -> Timestamp {
    Timestamp::from_secs(1_800_000_000)
}

/// A server with a host and committer on one store.
struct Server {
    rt: Runtime,
    host: Option<Host>,
    committer: Option<Committer>,
    responses: mpsc::Receiver<Response>,
    server: Identity,
    writer: SecretKey,
    /// The store's directory, removed when the server is dropped.
    _dir: TempDir,
    next_nonce: AtomicU8,
    next_id: u64,
}

impl Server {
    fn start(tag: &str) -> Server {
        let dir = TempDir::new(&format!("bench-{tag}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server =
            Identity::from_key(SecretKey::from_seed(&[9; 32]), Kind::Server, "bench", now())
                .expect("valid");
        let (store, report) = Store::open(dir.path(), &StoreOptions::default()).expect("opens");
        let committer =
            Committer::spawn(store.clone(), CommitterConfig::default()).expect("spawns");
        let config = ServiceConfig {
            peer_requests: None,
            capsule_records: None,
            ..ServiceConfig::default()
        };
        let service = CapsuleService::new(config, server.name(), store, report).expect("valid");
        let (tx, responses) = mpsc::channel(16 * 1024);
        let host = rt.block_on(async {
            Host::spawn(
                service,
                committer.handle(),
                tx,
                HostConfig {
                    clock: Arc::new(now),
                    ..HostConfig::default()
                },
            )
        });
        Server {
            rt,
            host: Some(host),
            committer: Some(committer),
            responses,
            server,
            writer: SecretKey::from_seed(&[1; 32]),
            _dir: dir,
            next_nonce: AtomicU8::new(0),
            next_id: 0,
        }
    }

    /// Creates a fresh capsule and returns its metadata.
    fn create(&mut self) -> Metadata {
        let n = self.next_nonce.fetch_add(1, Ordering::Relaxed);
        let md = Metadata::capsule(
            self.writer.public(),
            vec![self.writer.public()],
            "bench",
            now(),
            vec![],
        )
        .expect("valid")
        .with_nonce([n; 16]);
        let adcert = AdCert::issue(
            &self.writer,
            md.name(),
            self.server.name(),
            Validity::new(Timestamp::ZERO, Timestamp::MAX),
        );
        let body = CapsuleRequest::Create {
            metadata: md.clone(),
            adcert,
        };
        let r = self.run(&md, vec![body], 1);
        assert_eq!(r, 1);
        md
    }

    /// Sends `bodies` keeping at most `window` in flight; returns how many
    /// were acknowledged (`Created` or `Appended`).
    fn run(&mut self, md: &Metadata, bodies: Vec<CapsuleRequest>, window: usize) -> usize {
        let handle = self.host.as_ref().expect("running").handle();
        let capsule = md.name();
        let mut next_id = self.next_id;
        let responses = &mut self.responses;
        let total = bodies.len();
        let acked = self.rt.block_on(async move {
            let mut bodies = bodies.into_iter();
            let (mut sent, mut done, mut acked) = (0, 0, 0);
            while done < total {
                while sent - done < window {
                    let Some(body) = bodies.next() else { break };
                    next_id += 1;
                    let req = Request {
                        capsule,
                        from: Name::from_bytes([7; 32]),
                        request_id: next_id,
                        body,
                    };
                    handle.request(req).await.expect("host runs");
                    sent += 1;
                }
                let r = responses.recv().await.expect("host runs");
                done += 1;
                if matches!(
                    r.body,
                    CapsuleResponse::Appended { .. } | CapsuleResponse::Created
                ) {
                    acked += 1;
                } else {
                    panic!("unexpected response {:?}", r.body);
                }
            }
            acked
        });
        self.next_id += total as u64;
        acked
    }

    fn stop(mut self) -> CapsuleService {
        let host = self.host.take().expect("running");
        let service = self.rt.block_on(host.shutdown()).expect("clean");
        if let Some(c) = self.committer.take() {
            c.shutdown();
        }
        service
    }
}

/// `records` records of a fresh chain in appends of `per_append`, signed.
fn signed_appends(
    md: &Metadata,
    writer: &SecretKey,
    records: usize,
    per_append: usize,
) -> Vec<CapsuleRequest> {
    let mut a = Appender::new(writer.clone(), md, ChainState::new(md.name())).expect("writer");
    let payload = Bytes::from((0..RECORD_LEN).map(|i| i as u8).collect::<Vec<u8>>());
    (0..records / per_append)
        .map(|_| {
            let records: Vec<Record> = (0..per_append)
                .map(|_| a.append(payload.clone(), now()).expect("ok"))
                .collect();
            let heartbeat: Heartbeat = a.heartbeat().expect("appended");
            CapsuleRequest::Append { records, heartbeat }
        })
        .collect()
}

/// Records per measured run for `per_append`.
fn run_len(per_append: usize) -> usize {
    match per_append {
        1 => 8192,
        16 => 16_384,
        _ => 32_768,
    }
}

/// One timed run of appends through the service; records per second.
fn service_rate(s: &mut Server, per_append: usize) -> (Duration, usize) {
    let md = s.create();
    let n = run_len(per_append);
    let bodies = signed_appends(&md, &s.writer, n, per_append);
    let window = (WINDOW_RECORDS / per_append).max(1);
    let start = Instant::now();
    let acked = s.run(&md, bodies, window);
    let elapsed = start.elapsed();
    assert_eq!(acked * per_append, n);
    (elapsed, n)
}

const RAW: TableDefinition<(&[u8; 32], u64), &[u8]> = TableDefinition::new("records");

/// One timed run of raw durable redb commits of `per_commit` records.
fn raw_rate(db: &Database, key: u8, per_commit: usize) -> (Duration, usize) {
    let n = run_len(per_commit) / if per_commit == 1 { 4 } else { 1 };
    // The records of one commit as one row, as the store keeps an append's
    // records (a run).
    let value = vec![0x5a; per_commit * (RECORD_LEN + 36 + 120)];
    let name = [key; 32];
    let start = Instant::now();
    let mut seqno = 0u64;
    for _ in 0..n / per_commit {
        let mut txn = db.begin_write().expect("txn");
        txn.set_durability(Durability::Immediate).expect("durable");
        {
            let mut t = txn.open_table(RAW).expect("table");
            seqno += per_commit as u64;
            t.insert((&name, seqno), value.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    (start.elapsed(), n)
}

fn per_sec(d: Duration, n: usize) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn mode_name(per: usize) -> String {
    if per == 1 {
        "hb_per_record".into()
    } else {
        format!("batch_{per}")
    }
}

fn appends(c: &mut Criterion) {
    let mut s = Server::start("append");
    let mut g = c.benchmark_group("append/service");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for per in [1usize, 16, 256] {
        g.throughput(Throughput::Elements(run_len(per) as u64));
        g.bench_function(mode_name(per), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| service_rate(&mut s, per).0).sum())
        });
    }
    g.finish();
    drop(s.stop());

    let dir = TempDir::new("bench-raw");
    let db = Database::create(dir.path().join("raw.redb")).expect("creates");
    let key = AtomicU8::new(0);
    let mut g = c.benchmark_group("append/raw_redb");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for per in [1usize, 16, 256] {
        let n = run_len(per) / if per == 1 { 4 } else { 1 };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("commit_{per}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| raw_rate(&db, key.fetch_add(1, Ordering::Relaxed), per).0)
                    .sum()
            })
        });
    }
    g.finish();
    drop(db);
}

/// A service over a store holding one capsule of `READ_CAPSULE_LEN` records.
fn read_fixture() -> (CapsuleService, Metadata, Server) {
    let mut s = Server::start("read");
    let md = s.create();
    let bodies = signed_appends(&md, &s.writer, READ_CAPSULE_LEN as usize, 256);
    s.run(&md, bodies, 16);
    let host = s.host.take().expect("running");
    let service = s.rt.block_on(host.shutdown()).expect("clean");
    (service, md, s)
}

/// The response to a `ReadRange` from `from`, answered by the service.
fn serve(service: &mut CapsuleService, md: &Metadata, from: u64) -> CapsuleResponse {
    service.handle(
        now(),
        Request {
            capsule: md.name(),
            from: Name::from_bytes([7; 32]),
            request_id: from,
            body: CapsuleRequest::ReadRange {
                from,
                to: READ_CAPSULE_LEN,
            },
        },
    );
    match service.poll_output() {
        Some(Output::Respond(r)) => r.body,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// Reads a range, sends it over the wire and checks it as a client; returns
/// the number of records verified.
fn verified_read(service: &mut CapsuleService, md: &Metadata, from: u64) -> usize {
    let wire = serve(service, md, from).to_bytes();
    let CapsuleResponse::Records { records, proof } =
        CapsuleResponse::decode(wire).expect("decodes")
    else {
        panic!("records expected");
    };
    proof.verify_range(md, &records).expect("verifies");
    records.len()
}

fn reads(c: &mut Criterion) {
    let (mut service, md, server) = read_fixture();
    let per_response = verified_read(&mut service, &md, 1);
    let mut g = c.benchmark_group("read");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(per_response as u64));
    let mut from = 1u64;
    let mut next_from = move || {
        from = (from + 7919) % (READ_CAPSULE_LEN - per_response as u64) + 1;
        from
    };
    g.bench_function("serve_range", |b| {
        b.iter(|| serve(&mut service, &md, next_from()))
    });
    g.bench_function("verified_range", |b| {
        b.iter(|| verified_read(&mut service, &md, next_from()))
    });
    g.finish();

    summary(&mut service, &md, per_response);
    drop(service);
    let mut server = server;
    if let Some(c) = server.committer.take() {
        c.shutdown();
    }
}

/// Plain timed runs of every figure, printed as a table.
fn summary(service: &mut CapsuleService, md: &Metadata, per_response: usize) {
    println!();
    println!("capsule server figures ({RECORD_LEN}-byte records, durable, heartbeats verified)");
    let mut s = Server::start("summary");
    let dir = TempDir::new("bench-raw-summary");
    let db = Database::create(dir.path().join("raw.redb")).expect("creates");
    for (i, per) in [1usize, 16, 256].into_iter().enumerate() {
        let (d, n) = service_rate(&mut s, per);
        let service_rps = per_sec(d, n);
        let (d, n) = raw_rate(&db, 100 + i as u8, per);
        let raw_rps = per_sec(d, n);
        println!(
            "  append {:>14}: {:>9.0} records/s through the service; raw redb at {per}/commit {:>9.0} records/s; ratio {:.2}",
            mode_name(per),
            service_rps,
            raw_rps,
            service_rps / raw_rps
        );
    }
    drop(s.stop());
    drop(db);
    drop(dir);

    let start = Instant::now();
    let mut n = 0usize;
    let mut from = 1;
    while start.elapsed() < Duration::from_secs(2) {
        n += verified_read(service, md, from);
        from = (from + 7919) % (READ_CAPSULE_LEN - per_response as u64) + 1;
    }
    println!(
        "  read  verified_range: {:>9.0} records/s ({per_response} records per response, served, sent and checked)",
        per_sec(start.elapsed(), n)
    );
}

criterion_group!(benches, appends, reads);
criterion_main!(benches);
