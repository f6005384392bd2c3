//! Replicated capsules with real processes: three `gdp-capsule-server`
//! replicas on a `gdp-router` with a real `redis-server` directory, a
//! writer appending 10,000 records with W = 2 while pipelining, and one
//! replica killed with SIGKILL in the middle of the stream and started
//! again later on the same store. The restarted replica must converge to
//! the others' tail by anti-entropy, and every acknowledged record must
//! read back verified from every replica, each asked directly. And a writer
//! that signs two different records at one seqno, one for each replica, is
//! caught by anti-entropy and reported by the SDK.
//!
//! Run with `bash scripts/test.sh` (it builds the binaries first), or
//! `cargo build --bins && cargo test -p gdp-client --test replication`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Metadata, Name, Timestamp};
use gdp_client::{CapsuleSpec, Client, ClientOptions, Replication};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::chain::Appender;
use gdp_testkit::eventually_ok;

use common::{Replicas, tail_at};

/// Records in the stream.
const RECORDS: u64 = 10_000;
/// Records handed to the writer at once (it pipelines them in batches).
const CHUNK: u64 = 250;
/// Longest wait for anything in this test.
const WAIT: Duration = Duration::from_secs(120);

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("record {i}"))
}

/// Options that notice a dead replica within seconds.
fn options() -> ClientOptions {
    let mut o = ClientOptions::default();
    o.reconnect_max = Duration::from_millis(500);
    o.request_timeout = Duration::from_secs(3);
    o
}

/// Reads records `1..=RECORDS` from `server` alone, verifying each answer,
/// and checks their payloads.
async fn read_back(client: &Client, md: &Metadata, server: Name) {
    let mut next = 1;
    while next <= RECORDS {
        let request = CapsuleRequest::at(
            md.name(),
            CapsuleRequest::ReadRange {
                from: next,
                to: RECORDS,
            },
        );
        let answer = eventually_ok(WAIT, || client.request(server, &request)).await;
        let CapsuleResponse::Records { records, proof } = answer else {
            panic!("replica {server}: unexpected answer {answer:?}");
        };
        proof
            .verify_range(md, &records)
            .unwrap_or_else(|e| panic!("replica {server}: records from {next} do not verify: {e}"));
        for r in &records {
            assert_eq!(r.seqno(), next, "replica {server}: records in order");
            assert_eq!(
                r.payload(),
                &payload(next),
                "replica {server}: payload {next}"
            );
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_appends_converges_and_serves_every_acknowledged_record() {
    let mut net = Replicas::start("replication", 3, &[]);
    let names = net.names.clone();
    let owner = Identity::generate(Kind::Client, "owner").expect("identity");
    let client = net.client(&owner, options()).await;
    let created = eventually_ok(WAIT, || {
        client.create_replicated(&names, owner.secret_key(), CapsuleSpec::new("replicated"))
    })
    .await;
    let replication = Replication::new(created.set.clone(), 2, 2).expect("W = 2, R = 2 of 3");
    let capsule = created
        .capsule
        .with_replication(replication)
        .expect("the set is the capsule's");
    let md = capsule.metadata().clone();

    let mut writer = capsule
        .writer(owner.secret_key().clone())
        .await
        .expect("writer");
    let victim = 2;
    let mut next = 1;
    while next <= RECORDS {
        let last = (next + CHUNK - 1).min(RECORDS);
        if next == 3_001 {
            // Killed with batches in flight to it.
            net.servers[victim].proc.kill();
        }
        if next == 7_001 {
            net.restart(victim);
        }
        let built = writer
            .submit((next..=last).map(payload))
            .await
            .expect("appends are taken while two replicas answer");
        assert_eq!(built, last);
        next = last + 1;
    }
    let acknowledged = writer
        .flush()
        .await
        .expect("every batch acknowledged by two");
    assert_eq!(acknowledged, RECORDS);

    // The restarted replica catches up by anti-entropy.
    let behind = tail_at(&client, &md, names[victim]).await;
    let started = std::time::Instant::now();
    for &server in &names {
        let tail = eventually_ok(WAIT, || async {
            match tail_at(&client, &md, server).await? {
                RECORDS => Ok(RECORDS),
                t => Err(format!("replica {server} is at {t}")),
            }
        })
        .await;
        assert_eq!(tail, RECORDS);
    }
    eprintln!(
        "restarted replica at {behind:?} when the writer finished; all at {RECORDS} {:?} later",
        started.elapsed()
    );
    // Every acknowledged record, verified, from every replica.
    for &server in &names {
        read_back(&client, &md, server).await;
    }
    // The quorum read agrees.
    let latest = capsule.latest().await.expect("quorum read");
    assert_eq!(latest.map(|r| r.seqno()), Some(RECORDS));
    assert!(capsule.forks().await.expect("forks asked").is_empty());
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_forks_two_replicas_is_caught_by_anti_entropy_and_reported() {
    let net = Replicas::start("replication-fork", 2, &[]);
    let names = net.names.clone();
    let owner = Identity::generate(Kind::Client, "owner").expect("identity");
    let client = net.client(&owner, options()).await;
    let capsule = eventually_ok(WAIT, || {
        client.create_replicated(&names, owner.secret_key(), CapsuleSpec::new("forked"))
    })
    .await
    .capsule;
    let md = capsule.metadata().clone();
    let mut writer = capsule
        .writer(owner.secret_key().clone())
        .await
        .expect("writer");
    writer
        .append_all((1..=10).map(payload))
        .await
        .expect("both replicas take the first ten");

    // The writer signs two different records 11, one for each replica.
    let state = capsule.chain_state().await.expect("the chain so far");
    let mut sent = Vec::new();
    for (i, &server) in names.iter().enumerate() {
        let mut branch = Appender::new(owner.secret_key().clone(), &md, state.clone())
            .expect("the owner writes");
        let record = branch
            .append(Bytes::from(format!("branch {i}")), Timestamp::now())
            .expect("appends");
        let heartbeat = branch.heartbeat().expect("appended");
        sent.push(record.hash());
        let append = CapsuleRequest::Append {
            records: vec![record],
            heartbeat,
        };
        let answer = client
            .request(server, &CapsuleRequest::at(md.name(), append))
            .await
            .expect("each replica takes its branch");
        assert_eq!(answer, CapsuleResponse::Appended { tail: 11 });
    }
    assert_ne!(sent[0], sent[1]);

    // Anti-entropy finds the fork; the SDK reports it, verified.
    let forks = eventually_ok(WAIT, || async {
        match capsule.forks().await {
            Ok(f) if f.len() == 2 => Ok(f),
            Ok(f) => Err(format!("{} fork evidences so far", f.len())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    for ev in &forks {
        assert_eq!(ev.seqno(), 11);
        ev.verify(&md)
            .expect("the writer's heartbeat commits to it");
        assert!(sent.contains(&ev.record.hash()));
    }
    // Each replica still serves its own record 11 as the chain, never the
    // other's.
    for (i, &server) in names.iter().enumerate() {
        let read = CapsuleRequest::at(md.name(), CapsuleRequest::Read { seqno: 11 });
        let CapsuleResponse::Records { records, proof } =
            client.request(server, &read).await.expect("read")
        else {
            panic!("replica {server}: no record 11");
        };
        proof.verify_range(&md, &records).expect("verifies");
        assert_eq!(records.last().map(|r| r.hash()), Some(sent[i]));
    }
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_a_subscription_fail_over_while_each_replica_in_turn_is_down() {
    const STREAM: u64 = 3_000;
    let mut net = Replicas::start("replication-failover", 3, &[]);
    let names = net.names.clone();
    let owner = Identity::generate(Kind::Client, "owner").expect("identity");
    let client = net.client(&owner, options()).await;
    let capsule = eventually_ok(WAIT, || {
        client.create_replicated(&names, owner.secret_key(), CapsuleSpec::new("failover"))
    })
    .await
    .capsule;

    // A reader on its own link follows the capsule by its name, whichever
    // replica the router reaches.
    let reader_id = Identity::generate(Kind::Client, "reader").expect("identity");
    let reader = net.client(&reader_id, options()).await;
    // Knowing only the name, it learns the replicas from the capsule's
    // server (owner-signed, verified).
    let found = reader
        .open_replicated(capsule.name())
        .await
        .expect("the capsule and its replicas");
    assert_eq!(
        found.replication().map(|r| r.set()),
        capsule.replication().map(|r| r.set())
    );
    let follower = reader
        .capsule(capsule.metadata().clone())
        .expect("metadata")
        .subscribe(1);
    let followed = tokio::spawn(async move {
        let mut follower = follower;
        let mut seen = Vec::with_capacity(STREAM as usize);
        while (seen.len() as u64) < STREAM {
            match tokio::time::timeout(WAIT, futures::StreamExt::next(&mut follower)).await {
                Ok(Some(Ok(record))) => seen.push(record.seqno()),
                Ok(Some(Err(e))) => panic!("the subscription failed: {e}"),
                Ok(None) => panic!("the subscription ended"),
                Err(_) => panic!("the subscription stalled at {}", seen.len()),
            }
        }
        seen
    });

    let mut writer = capsule
        .writer(owner.secret_key().clone())
        .await
        .expect("writer");
    let mut next = 1;
    while next <= STREAM {
        let last = (next + 99).min(STREAM);
        // Each replica in turn is killed and, 500 records later, restarted,
        // so whichever one the router picked for the capsule goes down once.
        let turn = (next - 1) / 1_000;
        let down = usize::try_from(turn).expect("small");
        if (next - 1) % 1_000 == 0 && down < net.servers.len() {
            // The one restarted before may still be catching up: the
            // writer sends it each batch again until it takes it.
            net.servers[down].proc.kill();
            // A quorum read still answers, from the two that are up.
            let tail = capsule.tail().await.expect("two of three answer");
            assert_eq!(tail, next - 1);
        }
        if (next - 1) % 1_000 == 500 && down < net.servers.len() {
            net.restart(down);
        }
        writer
            .append_all((next..=last).map(payload))
            .await
            .expect("two replicas answer");
        next = last + 1;
    }
    let seen = tokio::time::timeout(WAIT, followed)
        .await
        .expect("the reader finishes")
        .expect("the reader task");
    assert!(
        seen == (1..=STREAM).collect::<Vec<_>>(),
        "every record once, in order"
    );
    assert_eq!(capsule.tail().await.expect("quorum read"), STREAM);
    reader.shutdown().await;
    client.shutdown().await;
}
