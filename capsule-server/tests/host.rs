//! The host task with a real committer: pipelined appends from one writer
//! are group-committed and acknowledged in order, subscriptions follow, and
//! shutdown finishes what is in flight.

mod common;

use std::collections::HashMap;

use common::*;
use gdp_capsule_server::committer::{Committer, CommitterConfig};
use gdp_capsule_server::host::{Host, HostConfig};
use gdp_capsule_server::service::{CapsuleService, Request, Response};
use gdp_certs::Name;
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::record::Record;
use tokio::sync::mpsc;

struct Server {
    host: Host,
    committer: Committer,
    responses: mpsc::Receiver<Response>,
    _dir: TempDir,
}

fn start(f: &Fixture) -> Server {
    let dir = TempDir::new("host");
    let (store, report) = open(dir.path());
    let committer = Committer::spawn(store.clone(), CommitterConfig::default()).expect("spawns");
    let service =
        CapsuleService::new(unlimited(), f.server.name(), store, report).expect("valid config");
    let (tx, responses) = mpsc::channel(1024);
    let config = HostConfig {
        clock: std::sync::Arc::new(|| NOW),
        ..HostConfig::default()
    };
    let host = Host::spawn(service, committer.handle(), tx, config);
    Server {
        host,
        committer,
        responses,
        _dir: dir,
    }
}

fn req(f: &Fixture, from: Name, request_id: u64, body: CapsuleRequest) -> Request {
    Request {
        capsule: f.capsule(),
        from,
        request_id,
        body,
    }
}

#[tokio::test]
async fn a_pipelining_writer_is_acknowledged_in_order_through_group_commits() {
    let f = Fixture::new(1);
    let mut s = start(&f);
    let handle = s.host.handle();
    handle
        .request(req(&f, f.client, 0, f.create()))
        .await
        .expect("host runs");
    assert_eq!(
        s.responses.recv().await.map(|r| r.body),
        Some(CapsuleResponse::Created)
    );

    // 400 appends of one record each, up to 64 in flight.
    let mut a = f.appender();
    let appends = batches(&mut a, 400, 1, 100);
    let mut acked = Vec::new();
    let mut sent = 0;
    while acked.len() < appends.len() {
        while sent < appends.len() && sent - acked.len() < 64 {
            let (records, hb) = appends[sent].clone();
            sent += 1;
            handle
                .request(req(&f, f.client, sent as u64, append(records, hb)))
                .await
                .expect("host runs");
        }
        let r = s.responses.recv().await.expect("host runs");
        acked.push((r.request_id, r.body));
    }
    for (i, (id, body)) in acked.iter().enumerate() {
        assert_eq!(*id, i as u64 + 1, "acknowledged in order");
        assert_eq!(*body, CapsuleResponse::Appended { tail: i as u64 + 1 });
    }
    let stats = s.committer.stats();
    assert_eq!(stats.writes, 401);
    assert!(
        stats.transactions < stats.writes,
        "appends were grouped: {stats:?}"
    );

    let service = s.host.shutdown().await.expect("clean shutdown");
    assert_eq!(service.durable_tail(&f.capsule()), Some(400));
    drop(service);
    s.committer.shutdown();
}

#[tokio::test]
async fn shutdown_finishes_the_appends_in_flight() {
    let f = Fixture::new(2);
    let mut s = start(&f);
    let handle = s.host.handle();
    handle
        .request(req(&f, f.client, 0, f.create()))
        .await
        .expect("host runs");
    let mut a = f.appender();
    for (i, (records, hb)) in batches(&mut a, 50, 2, 10).into_iter().enumerate() {
        handle
            .request(req(&f, f.client, i as u64 + 1, append(records, hb)))
            .await
            .expect("host runs");
    }
    drop(handle);
    let service = s.host.shutdown().await.expect("clean shutdown");
    assert_eq!(service.durable_tail(&f.capsule()), Some(100));
    let mut bodies = Vec::new();
    while let Ok(r) = s.responses.try_recv() {
        bodies.push(r.body);
    }
    assert_eq!(bodies.len(), 51, "every request was answered");
    assert_eq!(
        bodies.last(),
        Some(&CapsuleResponse::Appended { tail: 100 })
    );
    drop(service);
    s.committer.shutdown();
}

#[tokio::test]
async fn a_subscriber_follows_appends_through_the_host() {
    let f = Fixture::new(3);
    let mut s = start(&f);
    let handle = s.host.handle();
    handle
        .request(req(&f, f.client, 0, f.create()))
        .await
        .expect("host runs");
    let mut a = f.appender();
    let b = batches(&mut a, 20, 5, 10);
    for (i, (records, hb)) in b[..10].iter().cloned().enumerate() {
        handle
            .request(req(&f, f.client, i as u64 + 1, append(records, hb)))
            .await
            .expect("host runs");
    }
    let reader = Name::from_bytes([9; 32]);
    handle
        .request(req(&f, reader, 1000, CapsuleRequest::Subscribe { from: 1 }))
        .await
        .expect("host runs");
    for (i, (records, hb)) in b[10..].iter().cloned().enumerate() {
        handle
            .request(req(&f, f.client, i as u64 + 11, append(records, hb)))
            .await
            .expect("host runs");
    }
    let mut seen: Vec<u64> = Vec::new();
    let mut others: HashMap<u64, usize> = HashMap::new();
    while seen.len() < 100 {
        let r = s.responses.recv().await.expect("host runs");
        if r.to != reader {
            *others.entry(r.request_id).or_default() += 1;
            continue;
        }
        match r.body {
            CapsuleResponse::Subscribed { .. } => {}
            CapsuleResponse::Event { records, proof } => {
                proof.verify_range(&f.md, &records).expect("verifies");
                seen.extend(records.iter().map(Record::seqno));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, (1..=100).collect::<Vec<_>>());
    drop(handle);
    let service = s.host.shutdown().await.expect("clean shutdown");
    drop(service);
    s.committer.shutdown();
}
