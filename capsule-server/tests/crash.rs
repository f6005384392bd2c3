//! Crash safety with real processes: a `gdp-router` process, a
//! `gdp-capsule-server` process killed with SIGKILL at random moments
//! while a client pipelines appends through the router, and restarted.
//!
//! After every restart: every acknowledged record is present and intact
//! (read back with proofs, each response verified against the capsule's
//! metadata), the whole chain verifies from record 1, and the client goes
//! on appending from the durable tail. At the end the server stops on
//! SIGTERM with exit status 0.
//!
//! The router binary comes from `cargo build --workspace --bins` (run by
//! `scripts/test.sh`): `target/debug/gdp-router`, or the path in
//! `GDP_ROUTER_BIN`. The kill points are drawn from a seeded generator
//! whose seed the test prints; `GDP_TEST_SEED=<seed>` replays them.

mod net;
mod procs;

use std::collections::VecDeque;
use std::time::Duration;

use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::chain::ChainState;
use gdp_proto::record::Record;
use gdp_testkit::{TempDir, Writer, seeded_rng};
use net::{Answer, TestClient, read_verified, server_identity};
use procs::{start_router, start_server};
use rand::Rng;

/// Records appended in all.
const TOTAL: u64 = 20_000;
/// Server kills.
const KILLS: usize = 5;
/// Appends in flight at once.
const WINDOW: usize = 128;
/// Records per append: one, so every append carries its own heartbeat
/// (20,000 pipelined appends, each verified and made durable).
const PER_APPEND: usize = 1;

/// Appends until `stop_at` records were sent (or `TOTAL`), keeping
/// `WINDOW` appends in flight, updating `acked` with every acknowledged
/// tail. Returns the outstanding requests when it stops.
async fn pipeline(
    client: &mut TestClient,
    w: &mut Writer,
    acked: &mut u64,
    stop_at: u64,
) -> VecDeque<(u64, u64)> {
    let mut outstanding: VecDeque<(u64, u64)> = VecDeque::new();
    loop {
        while outstanding.len() < WINDOW && w.tail() < stop_at.min(TOTAL) {
            let n = PER_APPEND.min(usize::try_from(TOTAL - w.tail()).expect("small"));
            let req = w.append(n);
            let id = client.send(w.capsule(), &req).await;
            outstanding.push_back((id, w.tail()));
        }
        if w.tail() >= stop_at.min(TOTAL) {
            return outstanding;
        }
        let Some(&(id, tail)) = outstanding.front() else {
            return outstanding;
        };
        match client.answer_within(id, Duration::from_secs(10)).await {
            Some(Answer::Response { body, .. }) => {
                assert_eq!(*body, CapsuleResponse::Appended { tail }, "append {id}");
                *acked = (*acked).max(tail);
                outstanding.pop_front();
            }
            other => panic!("append {id} (tail {tail}) failed while the server was up: {other:?}"),
        }
    }
}

/// Collects the answers to `outstanding` that still come in `wait` (sent
/// before the kill, or delivered by the router meanwhile).
async fn drain(
    client: &mut TestClient,
    outstanding: VecDeque<(u64, u64)>,
    acked: &mut u64,
    wait: Duration,
) {
    let deadline = tokio::time::Instant::now() + wait;
    for (id, tail) in outstanding {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Some(Answer::Response { body, .. }) = client.answer_within(id, left).await
            && let CapsuleResponse::Appended { tail: t } = *body
        {
            assert_eq!(t, tail);
            *acked = (*acked).max(t);
        }
    }
}

/// Reads the whole capsule back and checks it; returns the durable chain.
async fn check_capsule(client: &mut TestClient, w: &Writer, acked: u64) -> ChainState {
    let (_, body) = client
        .call_when_routed(w.capsule(), &CapsuleRequest::Latest)
        .await;
    let CapsuleResponse::Records { records, proof } = body else {
        panic!("the latest record expected, got {body:?}");
    };
    proof
        .verify_range(&w.md, &records)
        .expect("latest verifies");
    let tail = records.last().map_or(0, Record::seqno);
    assert!(
        tail >= acked,
        "acknowledged up to {acked}, the server has only {tail}"
    );
    assert!(tail <= w.tail(), "the server has records never sent");
    let got = read_verified(client, &w.md, 1, tail).await;
    assert_eq!(got.len() as u64, tail);
    let mut chain = ChainState::new(w.capsule());
    for r in &got {
        // End to end: each record continues the one before it, from the
        // anchor on, and is exactly what the writer appended.
        chain.append(r).expect("the chain verifies");
        assert_eq!(
            r,
            &w.records[(r.seqno() - 1) as usize],
            "record {}",
            r.seqno()
        );
    }
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill() {
    let dir = TempDir::new("crash");
    let router_dir = dir.subdir("router");
    let server_dir = dir.subdir("server");
    let (_router, router_addr, router_name) = start_router(
        &router_dir,
        // A killed server's link is noticed within seconds, not the default 30 s.
        &["--keep-alive", "300ms", "--idle-timeout", "2s"],
    );
    let (id, key) = server_identity(&server_dir);
    let mut server = start_server(&server_dir, &key, router_addr, router_name, 0);

    let mut client = TestClient::connect(router_addr).await;
    let mut w = Writer::new(id.name(), "crash test");
    let (_, body) = client.call_when_routed(id.name(), &w.create()).await;
    assert_eq!(body, CapsuleResponse::Created, "{}", server.log_tail(30));

    let mut rng = seeded_rng();
    let mut acked = 0u64;
    let started = std::time::Instant::now();
    for run in 1..=KILLS {
        // Kill at a random point of this run's share of the records, with
        // a window of appends in flight, after a random extra delay.
        let share = TOTAL / (KILLS as u64 + 1);
        let stop_at = w.tail() + rng.gen_range(share / 2..=share * 3 / 2);
        let outstanding = pipeline(&mut client, &mut w, &mut acked, stop_at).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
        server.kill();
        drain(
            &mut client,
            outstanding,
            &mut acked,
            Duration::from_millis(300),
        )
        .await;
        eprintln!(
            "kill {run}: {} sent, {acked} acknowledged, after {:?}",
            w.tail(),
            started.elapsed()
        );

        server = start_server(&server_dir, &key, router_addr, router_name, run);
        let chain = check_capsule(&mut client, &w, acked).await;
        eprintln!("restart {run}: durable tail {}", chain.tail_seqno());
        acked = chain.tail_seqno();
        w.rewind(chain);
    }
    let outstanding = pipeline(&mut client, &mut w, &mut acked, TOTAL).await;
    drain(
        &mut client,
        outstanding,
        &mut acked,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(acked, TOTAL, "every append acknowledged at the end");
    let chain = check_capsule(&mut client, &w, TOTAL).await;
    assert_eq!(chain.tail_seqno(), TOTAL);
    eprintln!("{TOTAL} records in {:?}", started.elapsed());

    let status = server
        .terminate(Duration::from_secs(20))
        .expect("the server exits on SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        server.log_tail(30)
    );
}
