//! End to end through three real `gdp-router` processes sharing a real
//! Redis directory: the capsule server attaches to router A, the writer to
//! router B, the subscriber to router C. Every record reaches the
//! subscriber in order, verified, with no gap, also when the subscriber
//! leaves midway and comes back, under the same name, from its last seqno.

mod net;
mod procs;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gdp_certs::{Identity, Kind};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_testkit::{RedisServer, TempDir, Writer, eventually};
use net::{Answer, TestClient, read_verified, server_identity};
use procs::{start_router, start_server};

/// Records appended.
const TOTAL: u64 = 10_000;
/// Records per append (one heartbeat each).
const PER_APPEND: usize = 4;
/// Appends in flight.
const WINDOW: usize = 64;
/// The subscriber leaves once it has this many records.
const LEAVE_AT: u64 = 4_000;
/// Records acknowledged while the subscriber is away.
const WHILE_AWAY: u64 = 1_000;

/// Appends `TOTAL` records, pipelined, checking every acknowledgement;
/// `acked` follows the acknowledged tail.
async fn write_all(
    mut client: TestClient,
    mut w: Writer,
    acked: Arc<AtomicU64>,
) -> (TestClient, Writer) {
    let mut outstanding = std::collections::VecDeque::new();
    while w.tail() < TOTAL || !outstanding.is_empty() {
        while outstanding.len() < WINDOW && w.tail() < TOTAL {
            let req = w.append(PER_APPEND);
            let id = client.send(w.capsule(), &req).await;
            outstanding.push_back((id, w.tail()));
        }
        let Some((id, tail)) = outstanding.pop_front() else {
            break;
        };
        match client.answer(id).await {
            Answer::Response { src, body } => {
                assert_eq!(src, w.capsule());
                assert_eq!(*body, CapsuleResponse::Appended { tail });
                acked.store(tail, Ordering::Relaxed);
            }
            Answer::Nak => panic!("append {id} was not routed"),
        }
    }
    (client, w)
}

/// Takes events until seqno `until` has arrived, checking order and proofs
/// against the capsule's metadata; returns the next seqno wanted and the
/// records' hashes in order.
async fn follow(
    reader: &mut TestClient,
    md: &gdp_certs::Metadata,
    mut next: u64,
    until: u64,
    hashes: &mut Vec<gdp_proto::record::RecordHash>,
) -> u64 {
    while next <= until {
        let (_, src, body) = reader.next_event().await;
        assert_eq!(src, md.name());
        let CapsuleResponse::Event { records, proof } = body else {
            panic!("an event expected, got {body:?}");
        };
        proof
            .verify_range(md, &records)
            .expect("every event verifies");
        for r in &records {
            assert_eq!(r.seqno(), next, "in order, no gap, no repeat");
            if let Some(prev) = hashes.last() {
                assert_eq!(r.prev(), prev, "record {} continues the chain", r.seqno());
            }
            hashes.push(r.hash());
            next += 1;
        }
    }
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_a_subscriber_on_another_router_in_order() {
    let dir = TempDir::new("e2e");
    let redis = RedisServer::start();
    let directory = redis.url();
    let args = ["--directory", directory.as_str()];
    let (_a, a_addr, a_name) = start_router(&dir.subdir("router-a"), &args);
    let (_b, b_addr, _) = start_router(&dir.subdir("router-b"), &args);
    let (_c, c_addr, _) = start_router(&dir.subdir("router-c"), &args);
    let server_dir = dir.subdir("server");
    let (id, key) = server_identity(&server_dir);
    let mut server = start_server(&server_dir, &key, a_addr, a_name, 0);

    let mut writer = TestClient::connect(b_addr).await;
    let w = Writer::new(id.name(), "end to end");
    let (_, body) = writer.call_when_routed(id.name(), &w.create()).await;
    assert_eq!(body, CapsuleResponse::Created, "{}", server.log_tail(30));

    let reader_id = Identity::generate(Kind::Client, "subscriber").expect("identity");
    let mut reader = TestClient::connect_as(&reader_id, c_addr).await;
    let (_, body) = reader
        .call_when_routed(w.capsule(), &CapsuleRequest::Subscribe { from: 1 })
        .await;
    assert!(
        matches!(body, CapsuleResponse::Subscribed { .. }),
        "{body:?}"
    );

    let md = w.md.clone();
    let acked = Arc::new(AtomicU64::new(0));
    let writing = tokio::spawn(write_all(writer, w, acked.clone()));
    let mut hashes = Vec::new();
    let started = std::time::Instant::now();
    let next = follow(&mut reader, &md, 1, LEAVE_AT, &mut hashes).await;

    // The subscriber leaves while records keep coming, then resumes.
    reader.link.shutdown("leaving for a while").await;
    drop(reader);
    let away_from = acked.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(60),
        "records were appended while the subscriber was away",
        || async {
            let now = acked.load(Ordering::Relaxed);
            now >= (away_from + WHILE_AWAY).min(TOTAL)
        },
    )
    .await;
    let mut reader = TestClient::connect_as(&reader_id, c_addr).await;
    let (_, body) = reader
        .call_when_routed(md.name(), &CapsuleRequest::Subscribe { from: next })
        .await;
    assert!(
        matches!(body, CapsuleResponse::Subscribed { .. }),
        "{body:?}"
    );
    assert_eq!(
        follow(&mut reader, &md, next, TOTAL, &mut hashes).await,
        TOTAL + 1
    );
    eprintln!(
        "{TOTAL} records to the subscriber in {:?}",
        started.elapsed()
    );

    let (mut writer, w) = writing.await.expect("the writer finished");
    for (i, r) in w.records.iter().enumerate() {
        assert_eq!(hashes[i], r.hash(), "the subscriber got what was written");
    }
    // A reader elsewhere gets the same records with proofs.
    let some = read_verified(&mut writer, &md, TOTAL - 99, TOTAL).await;
    assert_eq!(some.len(), 100);
    let status = server
        .terminate(Duration::from_secs(20))
        .expect("the server exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}
