//! Replicated capsules against real `gdp-router` and `gdp-capsule-server`
//! processes: one router, three servers. Placement, quorum writes and
//! reads, losing replicas one at a time, moving the capsule to other
//! servers, and fork evidence.
//!
//! Run with `bash scripts/test.sh` (it builds the binaries first), or
//! `cargo build --bins && cargo test -p gdp-client --test replicas`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::Name;
use gdp_client::{CapsuleSpec, ClientError, ClientOptions, Replication};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};

use common::{Router, Server, TempDir};
use gdp_testkit::eventually_ok;

const WAIT: Duration = Duration::from_secs(20);

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("replicated {i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_writes_and_reads_survive_a_minority() {
    let dir = TempDir::new("replicas");
    let router = Router::start(dir.path(), "router", "127.0.0.1:0");
    let mut servers: Vec<Option<Server>> = (0..4)
        .map(|i| Some(Server::start(dir.path(), &format!("server{i}"), &router)))
        .collect();
    let names: Vec<Name> = servers.iter().flatten().map(|s| s.name).collect();
    let id = gdp_certs::Identity::generate(gdp_certs::Kind::Client, "writer").expect("identity");
    let options = ClientOptions::default()
        .with_router(router.name)
        .with_request_timeout(Duration::from_secs(3));
    let client = gdp_client::Client::connect(router.addr, id.clone(), options)
        .await
        .expect("attaches");

    // Placement: every replica creates the capsule and holds the set.
    // Each placement makes a new capsule, so it is tried once, after the
    // servers answer pings.
    for s in &names {
        eventually_ok(WAIT, || client.ping(*s)).await;
    }
    let placed = &names[..3];
    let created = client
        .create_replicated(placed, id.secret_key(), CapsuleSpec::new("replicated"))
        .await
        .expect("placed on three servers");
    let mut sorted = placed.to_vec();
    sorted.sort();
    assert_eq!(created.set.servers(), sorted.as_slice());
    assert_eq!(created.adcerts.len(), 3);
    for s in placed {
        let held = client
            .fetch_replicas(created.capsule.name(), *s)
            .await
            .expect("asked")
            .expect("a set");
        assert_eq!(held, created.set);
    }
    let capsule = created.capsule;
    let r = capsule.replication().expect("replicated");
    assert_eq!((r.write_quorum(), r.read_quorum()), (2, 2));

    // Pipelined writes acknowledged by two replicas, read back verified.
    let mut writer = capsule
        .writer(id.secret_key().clone())
        .await
        .expect("writer");
    let last = writer
        .append_all((1..=500).map(payload))
        .await
        .expect("appended");
    assert_eq!(last, 500);
    assert_eq!(capsule.tail().await.expect("tail"), 500);
    let records = capsule.read_range(1, 500).await.expect("read");
    assert_eq!(records.len(), 500);
    assert_eq!(records[41].payload(), &payload(42));

    // Every replica has every record once they synced.
    for s in placed {
        let request = CapsuleRequest::at(capsule.name(), CapsuleRequest::Latest);
        eventually_ok(WAIT, || async {
            match client.request(*s, &request).await {
                Ok(CapsuleResponse::Records { records, .. })
                    if records.last().map(|r| r.seqno()) == Some(500) =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    // One replica down: W = 2 and R = 2 are still met.
    let down = servers
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| s.name == placed[0]))
        .expect("placed on a started server");
    servers[down] = None;
    writer.append(payload(501)).await.expect("two of three");
    assert_eq!(
        capsule.read(501).await.expect("read").payload(),
        &payload(501)
    );
    assert_eq!(capsule.tail().await.expect("tail"), 501);

    // Two down: no quorum, and the error names every replica.
    let down = servers
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| s.name == placed[1]))
        .expect("placed on a started server");
    servers[down] = None;
    let err = writer.append(payload(502)).await.expect_err("one of three");
    assert!(
        matches!(
            err,
            ClientError::Quorum {
                got: 1,
                needed: 2,
                ..
            }
        ),
        "{err}"
    );
    for s in placed {
        assert!(err.to_string().contains(&s.short()), "{err}");
    }

    // Move the capsule to the live replica and the fourth server.
    let moved = [placed[2], names[3]];
    let set = client
        .set_replicas(&capsule, id.secret_key(), &moved)
        .await
        .expect("moved");
    assert!(set.version() > created.set.version());
    let capsule = capsule
        .with_replication(Replication::majority(set.clone()))
        .expect("new set");
    assert_eq!(
        client
            .fetch_replicas(capsule.name(), names[3])
            .await
            .expect("asked"),
        Some(set)
    );
    // The new replica catches up by anti-entropy. The append that missed
    // its quorum reached the one live replica and is durable there (as a
    // failed quorum write may be): it is part of the chain now.
    let tail = eventually_ok(WAIT, || async {
        match capsule.tail().await {
            Ok(502) => Ok(502),
            Ok(t) => Err(format!("tail {t}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert_eq!(tail, 502);
    assert_eq!(
        capsule.read(502).await.expect("read").payload(),
        &payload(502)
    );
    let mut writer = capsule
        .writer(id.secret_key().clone())
        .await
        .expect("writer");
    assert_eq!(writer.append(payload(503)).await.expect("two of two"), 503);

    // No writer forked it.
    assert!(capsule.forks().await.expect("asked").is_empty());
    client.shutdown().await;
}
