//! The SDK against real `gdp-router` and `gdp-capsule-server` processes:
//! create, append (single and pipelined), read with proofs, resume a
//! writer, subscribe across a server restart, datagrams, pings, and the
//! typed errors of a missing route and of a timeout.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gdp_certs::{Identity, Name};
use gdp_client::{Capsule, CapsuleSpec, Client, ClientError, ClientOptions, ErrorCode, Writer};

use common::{Net, Server};
use gdp_testkit::eventually_ok;

const WAIT: Duration = Duration::from_secs(20);

/// A fresh capsule labelled `label` on the net's server, owned by `me`,
/// and a writer for it.
async fn capsule_and_writer(
    net: &Net,
    client: &Client,
    me: &Identity,
    label: &str,
) -> (Capsule, Writer) {
    let capsule = eventually_ok(WAIT, || {
        client.create_capsule(net.server.name, me.secret_key(), CapsuleSpec::new(label))
    })
    .await
    .capsule;
    let writer = capsule
        .writer(me.secret_key().clone())
        .await
        .expect("writer");
    (capsule, writer)
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("record {i}"))
}

/// `read_range` asks for spans as long as the first answer, several at
/// once: records that grow make later spans come back short, and each is
/// completed, in order, before the records after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_reads_come_back_whole_and_in_order() {
    let net = Net::start("read-ahead");
    let (client, me) = net.client("writer").await;
    let (capsule, mut writer) = capsule_and_writer(&net, &client, &me, "growing").await;
    let grown = |i: u64| Bytes::from(vec![(i % 251) as u8; (i * 12) as usize]);
    writer
        .append_all((1..=600).map(grown))
        .await
        .expect("appended");
    let range = capsule.read_range(1, 600).await.expect("read range");
    assert_eq!(range.len(), 600);
    for (i, r) in range.iter().enumerate() {
        let seqno = i as u64 + 1;
        assert_eq!(r.seqno(), seqno);
        assert_eq!(r.payload(), &grown(seqno));
    }
    // A middle stretch, and one record.
    let middle = capsule.read_range(250, 420).await.expect("middle");
    assert_eq!(
        middle.iter().map(|r| r.seqno()).collect::<Vec<_>>(),
        (250..=420).collect::<Vec<_>>()
    );
    assert_eq!(capsule.read_range(7, 7).await.expect("one").len(), 1);
    client.shutdown().await;
}

/// A writer keeps at most `max_in_flight_bytes` of records in flight: with
/// room for two batches of eight 1,000-byte records, a third waits for the
/// oldest acknowledgement, and everything still lands in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_keeps_its_bytes_in_flight_within_the_bound() {
    let net = Net::start("inflight");
    let mut options = ClientOptions::default();
    options.batch_records = 8;
    options.max_in_flight_bytes = 20_000;
    let (client, me) = net.client_with("writer", options).await;
    let (capsule, mut writer) = capsule_and_writer(&net, &client, &me, "bytes").await;
    let big = |i: u64| Bytes::from(vec![i as u8; 1000]);
    for chunk in 0..10u64 {
        writer
            .submit((chunk * 8 + 1..=chunk * 8 + 8).map(big))
            .await
            .expect("submitted");
        assert!(
            writer.in_flight() <= 2,
            "{} batches out",
            writer.in_flight()
        );
    }
    assert_eq!(writer.flush().await.expect("durable"), 80);
    let back = capsule.read_range(1, 80).await.expect("read back");
    assert!(
        back.iter()
            .zip(1..)
            .all(|(r, i)| r.seqno() == i && r.payload() == &big(i))
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_append_read_and_resume() {
    let net = Net::start("roundtrip");
    let (client, me) = net.client("writer").await;
    let created = eventually_ok(WAIT, || {
        client.create_capsule(net.server.name, me.secret_key(), CapsuleSpec::new("rt"))
    })
    .await;
    let capsule = created.capsule;
    assert_eq!(created.adcert.server(), net.server.name);
    assert_eq!(capsule.latest().await.expect("latest of empty"), None);
    assert_eq!(capsule.tail().await.expect("tail"), 0);

    // The capsule server answers pings to its own name and to the capsules
    // it hosts.
    client.ping(net.server.name).await.expect("server pong");
    client.ping(capsule.name()).await.expect("capsule pong");

    // Metadata fetched by name verifies against the name.
    let md = client
        .fetch_metadata(capsule.name())
        .await
        .expect("metadata");
    assert_eq!(md, *capsule.metadata());

    let mut writer = capsule
        .writer(me.secret_key().clone())
        .await
        .expect("writer");
    assert_eq!(writer.append(payload(1)).await.expect("append"), 1);
    assert_eq!(writer.append(payload(2)).await.expect("append"), 2);
    // 1000 more, pipelined in batches.
    let last = writer
        .append_all((3..=1002).map(payload))
        .await
        .expect("pipelined appends");
    assert_eq!(last, 1002);
    assert_eq!(writer.acknowledged(), 1002);
    assert_eq!(writer.in_flight(), 0);

    let r = capsule.read(500).await.expect("read");
    assert_eq!(r.seqno(), 500);
    assert_eq!(r.payload(), &payload(500));
    assert_eq!(r.heartbeat().seqno(), 1002);
    let range = capsule.read_range(1, 1002).await.expect("read range");
    assert_eq!(range.len(), 1002);
    assert!(
        range
            .iter()
            .enumerate()
            .all(|(i, r)| r.seqno() == i as u64 + 1 && r.payload() == &payload(i as u64 + 1))
    );
    let latest = capsule.latest().await.expect("latest").expect("records");
    assert_eq!(latest.seqno(), 1002);

    // A second writer handle resumes from the server's verified tail.
    drop(writer);
    let mut resumed = capsule
        .writer(me.secret_key().clone())
        .await
        .expect("resume");
    assert_eq!(resumed.next_seqno(), 1003);
    assert_eq!(resumed.append(payload(1003)).await.expect("append"), 1003);
    assert_eq!(
        capsule.read(1003).await.expect("read").payload(),
        &payload(1003)
    );

    // A reader that knows only the name.
    let (reader, _) = net.client("reader").await;
    let opened = reader.open(capsule.name()).await.expect("open by name");
    assert_eq!(opened.read(7).await.expect("read").payload(), &payload(7));

    // Errors are typed.
    assert!(matches!(
        opened.read(5000).await,
        Err(ClientError::Server {
            code: ErrorCode::NotFound,
            ..
        })
    ));
    let stranger = gdp_certs::SecretKey::generate();
    assert!(matches!(
        opened.writer(stranger).await,
        Err(ClientError::NotWriter { .. })
    ));
    client.shutdown().await;
    reader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_survives_a_server_restart_without_gap_or_duplicate() {
    let mut net = Net::start("subscribe");
    // Short requests, so that a request lost with the killed server is
    // retried soon.
    let quick = ClientOptions::default().with_request_timeout(Duration::from_secs(2));
    let (client, me) = net.client_with("writer", quick).await;
    let (capsule, mut writer) = capsule_and_writer(&net, &client, &me, "sub").await;
    writer
        .append_all((1..=50).map(payload))
        .await
        .expect("backlog");

    let mut options = ClientOptions::default();
    options.subscription_refresh = Duration::from_millis(500);
    let (reader, _) = net.client_with("reader", options).await;
    let mut sub = reader
        .open(capsule.name())
        .await
        .expect("open")
        .subscribe(1);
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let r = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("backlog in time");
        seen.push(r.expect("open").expect("verified").seqno());
    }
    writer
        .append_all((51..=60).map(payload))
        .await
        .expect("live");
    while seen.len() < 60 {
        let r = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("live in time");
        seen.push(r.expect("open").expect("verified").seqno());
    }

    // Kill the server outright and start it again on the same store.
    net.server.proc.kill();
    let server = Server::start(net.dir.path(), "server", &net.router);
    net.server = server;
    let mut writer = eventually_ok(WAIT, || capsule.writer(me.secret_key().clone())).await;
    assert_eq!(writer.next_seqno(), 61);
    writer
        .append_all((61..=80).map(payload))
        .await
        .expect("after restart");
    while seen.len() < 80 {
        let r = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("resumed in time");
        seen.push(r.expect("open").expect("verified").seqno());
    }
    assert_eq!(seen, (1..=80).collect::<Vec<u64>>(), "no gap, no duplicate");
    assert_eq!(sub.next_seqno(), 81);
    drop(sub);
    client.shutdown().await;
    reader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_pings_and_no_route() {
    let net = Net::start("datagrams");
    let (a, _) = net.client("a").await;
    let (b, _) = net.client("b").await;
    a.send(b.name(), "hello b").await.expect("send");
    let d = tokio::time::timeout(WAIT, b.recv())
        .await
        .expect("in time")
        .expect("datagram");
    assert_eq!(
        (d.src, d.payload.clone(), d.reliable),
        (a.name(), Bytes::from("hello b"), true)
    );

    // The router answers pings; so does a client of this SDK.
    let rtt = a.ping(net.router.name).await.expect("router pong");
    assert!(rtt < WAIT);
    b.ping(a.name()).await.expect("client pong");

    // A name nobody advertised: a typed NAK, after the retry window.
    let mut options = ClientOptions::default();
    options.no_route_retry = Duration::from_millis(300);
    let (c, _) = net.client_with("c", options).await;
    let nobody = Name::from_bytes([42; 32]);
    let err = c.ping(nobody).await.expect_err("no route");
    assert!(
        matches!(err, ClientError::NoRoute(nak) if nak.unreachable == nobody),
        "{err:?}"
    );
    let err = c.open(nobody).await.expect_err("no route");
    assert!(matches!(err, ClientError::NoRoute(_)), "{err:?}");
    for c in [a, b, c] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_nobody_answers_times_out() {
    let net = Net::start("timeout");
    let options = ClientOptions::default().with_request_timeout(Duration::from_millis(400));
    let (a, _) = net.client_with("a", options.clone()).await;
    let (b, _) = net.client_with("b", options).await;
    // A capsule request to a client: routed, never answered.
    let err = a
        .request(b.name(), &gdp_proto::capsule::CapsuleRequest::Latest)
        .await
        .expect_err("no answer");
    assert!(
        matches!(err, ClientError::Timeout { what: "latest", after } if after == Duration::from_millis(400)),
        "{err:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_router_is_a_connect_error() {
    let id = gdp_certs::Identity::generate(gdp_certs::Kind::Client, "lonely").expect("identity");
    let options = ClientOptions::default().with_connect_timeout(Duration::from_millis(500));
    // Held and never read: nobody answers there.
    let silent = gdp_testkit::udp_socket();
    let addr = silent.local_addr().expect("bound");
    let err = gdp_client::Client::connect(addr, id, options)
        .await
        .expect_err("nobody there");
    assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reattach_after_a_router_restart_and_subscriptions_resume() {
    let mut net = Net::start("router-restart");
    let mut options = ClientOptions::default();
    options.subscription_refresh = Duration::from_millis(500);
    options.reconnect_max = Duration::from_millis(500);
    options.request_timeout = Duration::from_secs(5);
    options.keep_alive = Duration::from_millis(300);
    options.idle_timeout = Duration::from_secs(2);
    let (client, me) = net.client_with("writer", options.clone()).await;
    let capsule = eventually_ok(WAIT, || {
        client.create_capsule(
            net.server.name,
            me.secret_key(),
            CapsuleSpec::new("restart"),
        )
    })
    .await
    .capsule;
    let mut writer = capsule
        .writer(me.secret_key().clone())
        .await
        .expect("writer");
    writer
        .append_all((1..=10).map(payload))
        .await
        .expect("before");
    let (reader, _) = net.client_with("reader", options).await;
    let mut sub = reader
        .capsule(capsule.metadata().clone())
        .expect("md")
        .subscribe(1);
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let r = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("in time");
        seen.push(r.expect("open").expect("verified").seqno());
    }

    // The router dies and comes back on the same address with the same key.
    let addr = net.router.addr.to_string();
    net.router.proc.kill();
    let router = common::Router::start(net.dir.path(), "router", &addr);
    assert_eq!(router.name, net.router.name);
    net.router = router;

    // Appends go through once the client and the server are back.
    let tail = eventually_ok(WAIT, || async {
        let mut w = capsule.writer(me.secret_key().clone()).await?;
        if w.next_seqno() > 20 {
            // An earlier try landed but its answer was lost.
            return Ok(20);
        }
        w.append_all((11..=20).map(payload)).await
    })
    .await;
    assert_eq!(tail, 20);
    while seen.len() < 20 {
        let r = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("resumed in time");
        seen.push(r.expect("open").expect("verified").seqno());
    }
    assert_eq!(seen, (1..=20).collect::<Vec<u64>>());
    assert!(client.is_connected());
    client.shutdown().await;
    reader.shutdown().await;
}
