//! Shared fixtures of the integration tests: deterministic identities and
//! capsules, and a harness that drives a `CapsuleService` with the store
//! directly (commits run synchronously, or are held back to test
//! pipelining and failures). Temporary directories come from the test kit.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use bytes::Bytes;
use gdp_capsule_server::limits::ServiceConfig;
use gdp_capsule_server::service::{CapsuleService, Output, Request, Response, Ticket};
use gdp_capsule_server::store::{OpenReport, Store, StoreError, StoreOptions, Write};
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::{Appender, ChainState};
use gdp_proto::proof::Heartbeat;
use gdp_proto::record::Record;
pub use gdp_testkit::TempDir;

/// The fixtures' "now", inside every fixture certificate's validity.
pub const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

/// The server, a capsule owned and written by `writer`, and a client.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub server: Identity,
    pub writer: SecretKey,
    pub md: Metadata,
    pub adcert: AdCert,
    pub client: Name,
}

pub fn validity() -> Validity {
    Validity::new(
        Timestamp::from_secs(1_799_000_000),
        Timestamp::from_secs(1_801_000_000),
    )
}

impl Fixture {
    /// A fixture whose capsule nonce is `seed` (different seeds: different
    /// capsules on the same server).
    pub fn new(seed: u8) -> Self {
        let server = Identity::from_key(
            SecretKey::from_seed(&[200; 32]),
            Kind::Server,
            "store-1",
            Timestamp::from_secs(1_700_000_000),
        )
        .expect("fixture metadata is within limits");
        let writer = SecretKey::from_seed(&[1; 32]);
        let md = capsule_md(&writer, seed, vec![]);
        let adcert = AdCert::issue(&writer, md.name(), server.name(), validity());
        Fixture {
            server,
            writer,
            md,
            adcert,
            client: Name::from_bytes([77; 32]),
        }
    }

    pub fn capsule(&self) -> Name {
        self.md.name()
    }

    pub fn appender(&self) -> Appender {
        Appender::new(
            self.writer.clone(),
            &self.md,
            ChainState::new(self.md.name()),
        )
        .expect("the fixture writer writes the fixture capsule")
    }

    pub fn create(&self) -> CapsuleRequest {
        CapsuleRequest::Create {
            metadata: self.md.clone(),
            adcert: self.adcert.clone(),
        }
    }
}

/// Capsule metadata owned and written by `owner`.
pub fn capsule_md(owner: &SecretKey, seed: u8, hosting: Vec<Name>) -> Metadata {
    Metadata::capsule(
        owner.public(),
        vec![owner.public()],
        "test capsule",
        Timestamp::from_secs(1_700_000_000),
        hosting,
    )
    .expect("fixture metadata is within limits")
    .with_nonce([seed; 16])
}

/// A payload that names its record, so it can be found in the database file.
pub fn payload(seqno: u64, len: usize) -> Bytes {
    let mut p = format!("<record {seqno:08} payload>").into_bytes();
    while p.len() < len {
        p.push(b'a' + (p.len() % 26) as u8);
    }
    p.truncate(len.max(24));
    Bytes::from(p)
}

/// `n` batches of `per_batch` records, each closed by a heartbeat.
pub fn batches(
    a: &mut Appender,
    n: usize,
    per_batch: usize,
    len: usize,
) -> Vec<(Vec<Record>, Heartbeat)> {
    (0..n)
        .map(|_| {
            let records: Vec<Record> = (0..per_batch)
                .map(|_| {
                    let seqno = a.state().tail_seqno() + 1;
                    a.append(payload(seqno, len), NOW).expect("within limits")
                })
                .collect();
            (records, a.heartbeat().expect("records were appended"))
        })
        .collect()
}

pub fn append(records: Vec<Record>, heartbeat: Heartbeat) -> CapsuleRequest {
    CapsuleRequest::Append { records, heartbeat }
}

/// The error code of a response, or a panic if it is not an error.
pub fn code(r: &CapsuleResponse) -> ErrorCode {
    match r {
        CapsuleResponse::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A service with a store, commits run by the test.
pub struct Harness {
    pub service: CapsuleService,
    pub store: Store,
    pub fixture: Fixture,
    pub now: Timestamp,
    /// Hold commits back instead of running them.
    pub hold: bool,
    pub held: Vec<(Ticket, Write)>,
    pub responses: Vec<Response>,
    next_id: u64,
    pub dir: TempDir,
}

/// A config without rate limits, so tests measure nothing by accident.
pub fn unlimited() -> ServiceConfig {
    ServiceConfig {
        peer_requests: None,
        capsule_records: None,
        ..ServiceConfig::default()
    }
}

pub fn open(dir: &Path) -> (Store, OpenReport) {
    Store::open(dir, &StoreOptions::default()).expect("store opens")
}

/// Opens the store in `dir`, creates `f`'s capsule in it and appends `n`
/// records of `len` bytes in batches of `per_batch`, then closes it.
pub fn fill_store(f: &Fixture, dir: &Path, n: usize, per_batch: usize, len: usize) {
    let (store, report) = open(dir);
    let mut h = Harness::from_store(
        f.clone(),
        unlimited(),
        TempDir::new("unused"),
        store,
        report,
    );
    assert_eq!(h.call(f.create()), CapsuleResponse::Created);
    let mut a = f.appender();
    h.fill(&mut a, n, per_batch, len);
}

impl Harness {
    pub fn new(fixture: Fixture) -> Self {
        Self::with_config(fixture, unlimited())
    }

    pub fn with_config(fixture: Fixture, config: ServiceConfig) -> Self {
        let dir = TempDir::new("harness");
        let (store, report) = open(dir.path());
        Self::from_store(fixture, config, dir, store, report)
    }

    pub fn from_store(
        fixture: Fixture,
        config: ServiceConfig,
        dir: TempDir,
        store: Store,
        report: OpenReport,
    ) -> Self {
        let service = CapsuleService::new(config, fixture.server.name(), store.clone(), report)
            .expect("valid config");
        Harness {
            service,
            store,
            fixture,
            now: NOW,
            hold: false,
            held: Vec::new(),
            responses: Vec::new(),
            next_id: 1,
            dir,
        }
    }

    /// A harness whose capsule is created.
    pub fn created(fixture: Fixture) -> Self {
        let mut h = Self::new(fixture);
        let create = h.fixture.create();
        assert_eq!(h.call(create), CapsuleResponse::Created);
        h
    }

    pub fn request_from(&mut self, from: Name, body: CapsuleRequest) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.service.handle(
            self.now,
            Request {
                capsule: self.fixture.capsule(),
                from,
                request_id: id,
                body,
            },
        );
        id
    }

    pub fn request(&mut self, body: CapsuleRequest) -> u64 {
        self.request_from(self.fixture.client, body)
    }

    /// Hands several requests in at once (one heartbeat batch).
    pub fn request_batch(&mut self, bodies: Vec<CapsuleRequest>) -> Vec<u64> {
        let mut ids = Vec::new();
        let reqs: Vec<Request> = bodies
            .into_iter()
            .map(|body| {
                let id = self.next_id;
                self.next_id += 1;
                ids.push(id);
                Request {
                    capsule: self.fixture.capsule(),
                    from: self.fixture.client,
                    request_id: id,
                    body,
                }
            })
            .collect();
        self.service.handle_batch(self.now, reqs);
        ids
    }

    /// Drains outputs: commits consecutive writes together in one
    /// transaction (like the committer), or holds them.
    pub fn run(&mut self) {
        loop {
            let mut writes = Vec::new();
            while let Some(o) = self.service.poll_output() {
                match o {
                    Output::Respond(r) => self.responses.push(r),
                    Output::Commit { ticket, write } => writes.push((ticket, write)),
                    other => panic!("unexpected output {other:?}"),
                }
            }
            if writes.is_empty() {
                return;
            }
            if self.hold {
                self.held.extend(writes);
                return;
            }
            self.commit(writes);
        }
    }

    /// Takes one output: a response is kept, a write held (whatever
    /// `hold` says). False if there was nothing.
    pub fn step(&mut self) -> bool {
        match self.service.poll_output() {
            Some(Output::Respond(r)) => self.responses.push(r),
            Some(Output::Commit { ticket, write }) => self.held.push((ticket, write)),
            Some(other) => panic!("unexpected output {other:?}"),
            None => return false,
        }
        true
    }

    /// Commits `writes` in one transaction and reports the results.
    pub fn commit(&mut self, writes: Vec<(Ticket, Write)>) {
        let results = self.store.commit(writes.iter().map(|(_, w)| w));
        for ((ticket, _), r) in writes.into_iter().zip(results) {
            self.service.on_commit(self.now, ticket, r);
        }
    }

    /// Commits everything held, then runs.
    pub fn release(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.commit(held);
        self.run();
    }

    /// Reports every held write as failed with `error`, then runs.
    pub fn fail_held(&mut self, error: StoreError) {
        for (ticket, _) in std::mem::take(&mut self.held) {
            self.service.on_commit(self.now, ticket, Err(error.clone()));
        }
        self.run();
    }

    /// Every response so far to request `id`, taken out.
    pub fn take(&mut self, id: u64) -> Vec<CapsuleResponse> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.responses)
            .into_iter()
            .partition(|r| r.request_id == id);
        self.responses = rest;
        mine.into_iter().map(|r| r.body).collect()
    }

    /// The one response to request `id`.
    pub fn one(&mut self, id: u64) -> CapsuleResponse {
        let mut v = self.take(id);
        assert_eq!(v.len(), 1, "exactly one response to request {id}: {v:?}");
        v.remove(0)
    }

    /// Sends a request, runs, and returns its one response.
    pub fn call(&mut self, body: CapsuleRequest) -> CapsuleResponse {
        let id = self.request(body);
        self.run();
        self.one(id)
    }

    /// Appends `n` records in batches of `per_batch` with `a`, asserting each
    /// is acknowledged.
    pub fn fill(&mut self, a: &mut Appender, n: usize, per_batch: usize, len: usize) {
        let mut left = n;
        while left > 0 {
            let k = left.min(per_batch);
            let (records, hb) = batches(a, 1, k, len).remove(0);
            let tail = hb.seqno;
            assert_eq!(
                self.call(append(records, hb)),
                CapsuleResponse::Appended { tail }
            );
            left -= k;
        }
    }
}
