//! Durability: a server process appending as fast as it can is killed with
//! SIGKILL; reopening the store finds every record it had acknowledged.
//!
//! The test binary runs itself as the server: the `appending_server` test
//! does nothing unless `GDP_DURABILITY_DIR` is set, and then appends until
//! it is killed, printing `acked <tail>` for each acknowledgement.

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gdp_capsule_server::committer::{Committer, CommitterConfig};
use gdp_capsule_server::host::{Host, HostConfig};
use gdp_capsule_server::service::{CapsuleService, Request};
use gdp_capsule_server::store::StoreOptions;
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_testkit::ChildGuard;
use tokio::sync::mpsc;

const DIR_VAR: &str = "GDP_DURABILITY_DIR";
const RECORD_LEN: usize = 200;

/// The server side: only runs in the child process.
#[test]
fn appending_server() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let f = Fixture::new(1);
        let (store, report) = open(std::path::Path::new(&dir));
        let committer =
            Committer::spawn(store.clone(), CommitterConfig::default()).expect("spawns");
        let service =
            CapsuleService::new(unlimited(), f.server.name(), store, report).expect("valid");
        let (tx, mut responses) = mpsc::channel(1024);
        let config = HostConfig {
            clock: std::sync::Arc::new(|| NOW),
            ..HostConfig::default()
        };
        let host = Host::spawn(service, committer.handle(), tx, config);
        let handle = host.handle();
        let req = |request_id, body| Request {
            capsule: f.capsule(),
            from: f.client,
            request_id,
            body,
        };
        handle.request(req(0, f.create())).await.expect("runs");
        assert_eq!(
            responses.recv().await.map(|r| r.body),
            Some(CapsuleResponse::Created)
        );
        let mut a = f.appender();
        let mut out = std::io::stdout();
        let mut in_flight = 0;
        let mut id = 0;
        loop {
            while in_flight < 32 {
                let (records, hb) = batches(&mut a, 1, 3, RECORD_LEN).remove(0);
                id += 1;
                handle
                    .request(req(id, append(records, hb)))
                    .await
                    .expect("runs");
                in_flight += 1;
            }
            let r = responses.recv().await.expect("runs");
            in_flight -= 1;
            let CapsuleResponse::Appended { tail } = r.body else {
                panic!("unexpected {:?}", r.body);
            };
            writeln!(out, "acked {tail}").expect("stdout");
            out.flush().expect("stdout");
        }
    });
}

#[test]
fn every_acknowledged_record_survives_a_killed_server() {
    let dir = TempDir::new("durability");
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "appending_server",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary runs");
    let stdout = child.stdout.take().expect("piped");
    // Killed if the test fails before it is killed on purpose.
    let mut child = ChildGuard::new("appending server", child);
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = 0u64;
    let start = Instant::now();
    // Kill it mid-stream, after a good number of acknowledgements.
    while acked < 1500 && start.elapsed() < Duration::from_secs(120) {
        let Some(Ok(line)) = lines.next() else {
            break;
        };
        if let Some(t) = line.strip_prefix("acked ") {
            acked = acked.max(t.parse().expect("a seqno"));
        }
    }
    // SIGKILL, then reaped.
    child.kill();
    // Acknowledgements printed before the kill count too.
    for line in lines.map_while(Result::ok) {
        if let Some(t) = line.strip_prefix("acked ") {
            acked = acked.max(t.parse().expect("a seqno"));
        }
    }
    eprintln!("the server was killed after acknowledging {acked} records");
    assert!(
        acked >= 300,
        "the server acknowledged {acked} records before being killed"
    );

    let f = Fixture::new(1);
    let options = StoreOptions::default();
    let (store, report) = gdp_capsule_server::store::Store::open(dir.path(), &options)
        .expect("reopens after a crash");
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    assert_eq!(report.capsules.len(), 1);
    let tail = report.capsules[0].chain.tail_seqno();
    assert!(tail >= acked, "tail {tail} < acknowledged {acked}");
    assert_eq!(
        store.scrub(&f.capsule()).expect("the chain is intact"),
        tail
    );
    let records = store
        .records(&f.capsule(), 1, acked, usize::MAX, usize::MAX)
        .expect("reads");
    assert_eq!(records.len() as u64, acked);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.payload(), &payload(i as u64 + 1, RECORD_LEN));
    }

    // And the service picks up where it stopped.
    let mut h = Harness::from_store(f.clone(), unlimited(), dir, store, report);
    let CapsuleResponse::Records { records, proof } = h.call(CapsuleRequest::Latest) else {
        panic!("the newest record is served");
    };
    proof.verify(&f.md, &records[0]).expect("verifies");
    assert_eq!(records[0].seqno(), tail);
}
