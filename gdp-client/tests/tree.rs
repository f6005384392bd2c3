//! Subscriptions over delivery trees, in a whole GDP in this process
//! (`gdp_client::local`: real routers, a real capsule server, QUIC on
//! loopback): many subscribers on two routers get every record in order,
//! verified, once; a late subscriber reads its backlog by unicast while new
//! records come down the tree; records the tree loses (a subscriber's full
//! queue, a server restart) are read by unicast, with no gap and no
//! duplicate; and the unicast mode still works beside the tree.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gdp_client::local::LocalGdp;
use gdp_client::{
    CapsuleSpec, Client, ClientOptions, Identity, SubscribeMode, Subscription, SubscriptionStats,
};
use gdp_testkit::eventually_ok;

/// Longest wait for any one record.
const WAIT: Duration = Duration::from_secs(30);

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("record {i}"))
}

/// Reads records from `sub` until `until`, checking each is the next one
/// with its payload; returns the seqnos read.
async fn read_until(sub: &mut Subscription, from: u64, until: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut want = from;
    while want <= until {
        let record = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("record {want} in time"))
            .expect("the stream stays open")
            .expect("verified");
        assert_eq!(record.seqno(), want, "in order, no gap, no duplicate");
        assert_eq!(record.payload(), &payload(want));
        seen.push(record.seqno());
        want += 1;
    }
    seen
}

/// A writer client on router 0 with batches of `batch` records, and a
/// capsule it created.
async fn writer(gdp: &LocalGdp, batch: usize) -> (Client, Identity, gdp_client::Capsule) {
    let mut options = ClientOptions::default();
    options.batch_records = batch;
    let (client, me) = gdp
        .client_with(0, "writer", options)
        .await
        .expect("writer attaches");
    let capsule = client
        .create_capsule(gdp.server_name(), me.secret_key(), CapsuleSpec::new("tree"))
        .await
        .expect("created")
        .capsule;
    (client, me, capsule)
}

fn total(stats: &[SubscriptionStats], f: impl Fn(&SubscriptionStats) -> u64) -> u64 {
    stats.iter().map(f).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_subscribers_on_two_routers_get_every_record_once_in_order() {
    const SUBSCRIBERS: usize = 50;
    const RECORDS: u64 = 500;
    let gdp = LocalGdp::start(2).await.expect("local gdp");
    let (client, me, capsule) = writer(&gdp, 10).await;

    let mut readers = Vec::new();
    let mut subs = Vec::new();
    for i in 0..SUBSCRIBERS {
        let (reader, _) = gdp
            .client(i % 2, &format!("reader-{i}"))
            .await
            .expect("reader attaches");
        let sub = reader
            .capsule(capsule.metadata().clone())
            .expect("metadata")
            .subscribe(1);
        readers.push(reader);
        subs.push(sub);
    }
    // Every subscriber has joined (and read the empty tail) before the
    // first record, so each gets all of them live.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut w = capsule
        .writer(me.secret_key().clone())
        .await
        .expect("writer");
    let appending = tokio::spawn(async move {
        w.append_all((1..=RECORDS).map(payload))
            .await
            .expect("appended")
    });
    let reading = subs.into_iter().map(|mut sub| async move {
        let seen = read_until(&mut sub, 1, RECORDS).await;
        (seen, sub)
    });
    let results = futures::future::join_all(reading).await;
    assert_eq!(appending.await.expect("writer task"), RECORDS);
    let mut stats = Vec::new();
    for (seen, sub) in &results {
        assert_eq!(*seen, (1..=RECORDS).collect::<Vec<_>>());
        assert_eq!(sub.next_seqno(), RECORDS + 1);
        let s = sub.stats();
        assert_eq!(s.tree_records + s.unicast_records, RECORDS);
        assert_eq!(s.publishes_rejected, 0);
        stats.push(s);
    }
    // The records came down the tree: the unicast reads are the first
    // tail and what a full queue dropped, not the stream.
    let by_tree = total(&stats, |s| s.tree_records);
    assert!(
        by_tree >= RECORDS * SUBSCRIBERS as u64 * 9 / 10,
        "{by_tree} of {} records came down the tree: {stats:?}",
        RECORDS * SUBSCRIBERS as u64
    );
    drop(results);
    for reader in readers {
        reader.shutdown().await;
    }
    client.shutdown().await;
    gdp.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_and_what_the_tree_drops_are_read_by_unicast() {
    let gdp = LocalGdp::start(2).await.expect("local gdp");
    let (client, me, capsule) = writer(&gdp, 5).await;
    let mut w = capsule
        .writer(me.secret_key().clone())
        .await
        .expect("writer");
    w.append_all((1..=200).map(payload)).await.expect("backlog");

    // A late subscriber whose queue holds one Publish: while it reads, the
    // tree's copies are dropped, and it fills the gaps by unicast.
    let mut options = ClientOptions::default();
    options.publish_queue = 1;
    options.event_queue = 1;
    options.subscription_refresh = Duration::from_millis(500);
    let (reader, _) = gdp
        .client_with(0, "slow", options)
        .await
        .expect("reader attaches");
    let mut sub = reader
        .capsule(capsule.metadata().clone())
        .expect("metadata")
        .subscribe(1);
    let head = read_until(&mut sub, 1, 50).await;
    assert_eq!(head.len(), 50);
    // Live records in twenty appends spread over about 200 ms, so that the
    // reader, which takes about 80 ms to read the backlog, is caught up
    // while most of them are still coming (one append of all 400 could be
    // done before that, leaving nothing for the tree on a slow machine).
    let appending = tokio::spawn(async move {
        let mut last = 0;
        for first in (201..=600).step_by(20) {
            last = w
                .append_all((first..first + 20).map(payload))
                .await
                .expect("appended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        last
    });
    let mut seen = head;
    while seen.len() < 600 {
        let next = seen.len() as u64 + 1;
        seen.extend(read_until(&mut sub, next, next).await);
        if next.is_multiple_of(50) {
            // A slow reader.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(appending.await.expect("writer task"), 600);
    assert_eq!(seen, (1..=600).collect::<Vec<_>>());
    let stats = sub.stats();
    assert_eq!(stats.tree_records + stats.unicast_records, 600);
    assert!(stats.unicast_records >= 200, "the backlog: {stats:?}");
    assert!(stats.reads >= 2, "{stats:?}");
    // The tree delivered, and what it dropped was read again.
    assert!(stats.tree_records > 0, "{stats:?}");
    assert!(reader.dropped_publishes() > 0, "{stats:?}");
    drop(sub);
    reader.shutdown().await;
    client.shutdown().await;
    gdp.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_subscribers_resume_across_a_server_restart_without_gap_or_duplicate() {
    let mut gdp = LocalGdp::start(2).await.expect("local gdp");
    let (client, me, capsule) = writer(&gdp, 10).await;
    let mut options = ClientOptions::default();
    options.subscription_refresh = Duration::from_millis(500);
    let mut subs = Vec::new();
    let mut readers = Vec::new();
    for i in 0..4 {
        let (reader, _) = gdp
            .client_with(i % 2, &format!("reader-{i}"), options.clone())
            .await
            .expect("reader attaches");
        subs.push(
            reader
                .capsule(capsule.metadata().clone())
                .expect("metadata")
                .subscribe(1),
        );
        readers.push(reader);
    }
    let mut w = capsule
        .writer(me.secret_key().clone())
        .await
        .expect("writer");
    w.append_all((1..=100).map(payload)).await.expect("before");
    for sub in &mut subs {
        read_until(sub, 1, 100).await;
    }

    gdp.restart_server().await.expect("server restarts");
    let tail = eventually_ok(WAIT, || async {
        let mut w = capsule.writer(me.secret_key().clone()).await?;
        if w.next_seqno() > 200 {
            // An earlier try landed but its answer was lost.
            return Ok(200);
        }
        let from = w.next_seqno();
        w.append_all((from..=200).map(payload)).await
    })
    .await;
    assert_eq!(tail, 200);
    for sub in &mut subs {
        read_until(sub, 101, 200).await;
        assert_eq!(sub.next_seqno(), 201);
    }
    drop(subs);
    for reader in readers {
        reader.shutdown().await;
    }
    client.shutdown().await;
    gdp.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscriptions_of_one_client_and_a_unicast_one_follow_the_same_capsule() {
    let gdp = LocalGdp::start(2).await.expect("local gdp");
    let (client, me, capsule) = writer(&gdp, 10).await;
    let (reader, _) = gdp.client(0, "two").await.expect("reader attaches");
    let handle = reader
        .capsule(capsule.metadata().clone())
        .expect("metadata");
    let mut first = handle.subscribe(1);
    let mut second = handle.subscribe(1);
    let unicast_options = ClientOptions::default().with_subscribe_mode(SubscribeMode::Unicast);
    let (old, _) = gdp
        .client_with(1, "unicast", unicast_options)
        .await
        .expect("attaches");
    let mut baseline = old
        .capsule(capsule.metadata().clone())
        .expect("metadata")
        .subscribe(1);
    let mut w = capsule
        .writer(me.secret_key().clone())
        .await
        .expect("writer");
    w.append_all((1..=100).map(payload)).await.expect("first");
    read_until(&mut first, 1, 100).await;
    read_until(&mut second, 1, 100).await;
    read_until(&mut baseline, 1, 100).await;
    assert_eq!(baseline.stats().tree_records, 0);
    assert_eq!(baseline.stats().unicast_records, 100);

    // One of the two goes: the other keeps the client in the tree, and
    // the next records still come down it.
    drop(first);
    let before = second.stats().tree_records;
    w.append_all((101..=150).map(payload))
        .await
        .expect("second");
    read_until(&mut second, 101, 150).await;
    assert_eq!(
        second.stats().tree_records - before,
        50,
        "{:?}",
        second.stats()
    );
    read_until(&mut baseline, 101, 150).await;
    drop(second);
    drop(baseline);
    for c in [reader, old, client] {
        c.shutdown().await;
    }
    gdp.shutdown().await.expect("clean shutdown");
}
