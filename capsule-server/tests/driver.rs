//! The capsule server's network driver in process, attached to a real
//! router (also in process) over QUIC on loopback, with clients on
//! `EndpointLink`.

mod net;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use gdp_capsule_server::config::{DEFAULT_KEY_FILE, ServerConfig};
use gdp_capsule_server::{ServerError, run};
use gdp_certs::{Identity, Name};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::pdu::{Pdu, PduHeader, PduType};
use gdp_proto::record::Record;
use gdp_testkit::{TempDir, Writer, eventually};
use net::{Answer, TestClient, TestRouter, read_verified, server_identity};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct RunningServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    fn start(config: ServerConfig) -> RunningServer {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(config, async move {
            let _ = stopped.await;
        }));
        RunningServer { stop, task }
    }

    async fn stop(self) -> Result<(), ServerError> {
        let _ = self.stop.send(());
        tokio::time::timeout(net::WAIT, self.task)
            .await
            .expect("the server stops in time")
            .expect("the server task did not panic")
    }
}

fn config(dir: &Path, router: SocketAddr, key: &Path) -> ServerConfig {
    let mut c = ServerConfig::new(dir, router);
    c.key_file = Some(key.to_path_buf());
    c.router.retry_initial = Duration::from_millis(20);
    c.router.retry_max = Duration::from_millis(200);
    c
}

/// Sends `count` appends of `per` records each, pipelined, then checks
/// every answer: from the capsule, acknowledging the right tail.
async fn append_pipelined(client: &mut TestClient, w: &mut Writer, count: usize, per: usize) {
    let mut sent = Vec::with_capacity(count);
    for _ in 0..count {
        let req = w.append(per);
        let id = client.send(w.capsule(), &req).await;
        sent.push((id, w.tail()));
    }
    for (id, tail) in sent {
        match client.answer(id).await {
            Answer::Response { src, body } => {
                assert_eq!(src, w.capsule());
                assert_eq!(*body, CapsuleResponse::Appended { tail });
            }
            Answer::Nak => panic!("append {id} not delivered"),
        }
    }
}

fn same_records(got: &[Record], w: &Writer) {
    assert_eq!(got.len(), w.records.len());
    for (a, b) in got.iter().zip(&w.records) {
        assert_eq!(a, b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_append_and_read_through_a_router() {
    let router = TestRouter::start();
    let dir = TempDir::new("basic");
    let (id, key) = server_identity(dir.path());
    let server = RunningServer::start(config(dir.path(), router.addr(), &key));
    let mut client = TestClient::connect(router.addr()).await;
    let mut w = Writer::new(id.name(), "basic");

    // A new capsule has no route: its Create goes to the server's name and
    // is answered from it.
    let (src, body) = client.call_when_routed(id.name(), &w.create()).await;
    assert_eq!(body, CapsuleResponse::Created);
    assert_eq!(src, id.name());
    // The capsule was advertised before the answer left: the router routes
    // to it at once (`call` panics on a NAK).
    assert_eq!(router.stats().await.capsules_advertised, 1);
    client.call(w.capsule(), &CapsuleRequest::Latest).await;

    append_pipelined(&mut client, &mut w, 50, 4).await;
    let got = read_verified(&mut client, &w.md, 1, 200).await;
    same_records(&got, &w);

    let (src, body) = client.call(w.capsule(), &CapsuleRequest::Latest).await;
    assert_eq!(src, w.capsule());
    let CapsuleResponse::Records { records, proof } = body else {
        panic!("records expected, got {body:?}");
    };
    assert_eq!(records.last().map(Record::seqno), Some(200));
    proof.verify_range(&w.md, &records).expect("verifies");

    // Creating again is idempotent and answered from the capsule.
    let (src, body) = client.call(w.capsule(), &w.create()).await;
    assert_eq!((src, body), (w.capsule(), CapsuleResponse::Created));

    assert_eq!(router.stats().await.dropped.bad_source, 0);
    server.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_misaddressed_requests_are_answered_with_errors() {
    let router = TestRouter::start();
    let dir = TempDir::new("errors");
    let (id, key) = server_identity(dir.path());
    let server = RunningServer::start(config(dir.path(), router.addr(), &key));
    let mut client = TestClient::connect(router.addr()).await;
    let w = Writer::new(id.name(), "errors");
    client.call_when_routed(id.name(), &w.create()).await;

    // Only Create may go to the server's name.
    let (src, body) = client.call(id.name(), &CapsuleRequest::Latest).await;
    assert_eq!(src, id.name());
    assert!(
        matches!(
            body,
            CapsuleResponse::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{body:?}"
    );

    // A capsule request that does not decode.
    let rid = client.link.next_seq();
    let header = PduHeader::new(PduType::Capsule, w.capsule(), client.name(), rid);
    let pdu = Pdu::new(header, Bytes::from_static(&[0x7f, 1, 2])).expect("small");
    client.link.send(&pdu).await.expect("sent");
    // (`answer` only matches ids sent through `send`; read the stray event.)
    let (eid, src, body) = client.next_event().await;
    assert_eq!((eid, src), (rid, w.capsule()));
    assert!(
        matches!(
            body,
            CapsuleResponse::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{body:?}"
    );

    // A create whose AdCert names another server fails, from the server.
    let other = Writer::new(Name::from_bytes([1; 32]), "not ours");
    let (src, body) = client.call(id.name(), &other.create()).await;
    assert_eq!(src, id.name());
    assert!(
        matches!(
            body,
            CapsuleResponse::Error {
                code: ErrorCode::BadCert,
                ..
            }
        ),
        "{body:?}"
    );
    // It was never advertised, so the router has no route to it.
    let rid = client.send(other.capsule(), &CapsuleRequest::Latest).await;
    assert_eq!(client.answer(rid).await, Answer::Nak);
    let stats = router.stats().await;
    assert_eq!((stats.capsules_advertised, stats.adcerts_rejected), (1, 0));
    assert_eq!(stats.dropped.bad_source, 0);
    server.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_backlog_then_live_records_in_order() {
    let router = TestRouter::start();
    let dir = TempDir::new("subscribe");
    let (id, key) = server_identity(dir.path());
    let server = RunningServer::start(config(dir.path(), router.addr(), &key));
    let mut writer = TestClient::connect(router.addr()).await;
    let mut w = Writer::new(id.name(), "subscribe");
    writer.call_when_routed(id.name(), &w.create()).await;
    append_pipelined(&mut writer, &mut w, 10, 1).await;

    let mut reader = TestClient::connect(router.addr()).await;
    let (_, body) = reader
        .call(w.capsule(), &CapsuleRequest::Subscribe { from: 1 })
        .await;
    assert_eq!(body, CapsuleResponse::Subscribed { tail: 10 });
    append_pipelined(&mut writer, &mut w, 30, 10).await;

    assert_eq!(follow(&mut reader, &w, 1, 310).await, 311);
    server.stop().await.expect("a clean stop");
}

/// Receives events until `until`, checking each against the writer's
/// records and that they continue `next`; returns the next seqno wanted.
async fn follow(reader: &mut TestClient, w: &Writer, mut next: u64, until: u64) -> u64 {
    while next <= until {
        let (_, src, body) = reader.next_event().await;
        assert_eq!(src, w.capsule());
        let CapsuleResponse::Event { records, proof } = body else {
            panic!("event expected, got {body:?}");
        };
        proof.verify_range(&w.md, &records).expect("events verify");
        for r in &records {
            assert_eq!(r.seqno(), next, "in order, no gap, no repeat");
            assert_eq!(r, &w.records[(next - 1) as usize]);
            next += 1;
        }
    }
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_left_resumes_from_its_last_seqno() {
    let router = TestRouter::start();
    let dir = TempDir::new("resume");
    let (id, key) = server_identity(dir.path());
    let server = RunningServer::start(config(dir.path(), router.addr(), &key));
    let mut writer = TestClient::connect(router.addr()).await;
    let mut w = Writer::new(id.name(), "resume");
    writer.call_when_routed(id.name(), &w.create()).await;

    let reader_id = Identity::generate(gdp_certs::Kind::Client, "reader").expect("identity");
    let mut reader = TestClient::connect_as(&reader_id, router.addr()).await;
    let (_, body) = reader
        .call(w.capsule(), &CapsuleRequest::Subscribe { from: 1 })
        .await;
    assert_eq!(body, CapsuleResponse::Subscribed { tail: 0 });
    append_pipelined(&mut writer, &mut w, 20, 5).await;
    let next = follow(&mut reader, &w, 1, 100).await;

    // The reader leaves; events for it are NAKed and its subscription ends.
    reader.link.shutdown("leaving").await;
    drop(reader);
    append_pipelined(&mut writer, &mut w, 20, 5).await;
    eventually(net::WAIT, "an event for the reader was NAKed", || async {
        router.stats().await.naks_sent > 0
    })
    .await;

    // Back under the same name, from where it stopped.
    let mut reader = TestClient::connect_as(&reader_id, router.addr()).await;
    let (_, body) = reader
        .call(w.capsule(), &CapsuleRequest::Subscribe { from: next })
        .await;
    assert_eq!(body, CapsuleResponse::Subscribed { tail: 200 });
    append_pipelined(&mut writer, &mut w, 20, 5).await;
    assert_eq!(follow(&mut reader, &w, next, 300).await, 301);
    server.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_is_reattached_and_capsules_advertised_again() {
    let router = TestRouter::start();
    let dir = TempDir::new("reattach");
    let (id, key) = server_identity(dir.path());
    let server = RunningServer::start(config(dir.path(), router.addr(), &key));
    let mut client = TestClient::connect(router.addr()).await;
    let mut w = Writer::new(id.name(), "reattach");
    client.call_when_routed(id.name(), &w.create()).await;
    append_pipelined(&mut client, &mut w, 5, 2).await;

    assert!(router.drop_endpoint(id.name()));
    let (_, body) = client
        .call_when_routed(w.capsule(), &CapsuleRequest::Latest)
        .await;
    let CapsuleResponse::Records { records, .. } = body else {
        panic!("records expected, got {body:?}");
    };
    assert_eq!(records.last().map(Record::seqno), Some(10));
    // The client attached once, the server twice and advertised twice.
    let stats = router.stats().await;
    assert_eq!((stats.attaches, stats.capsules_advertised), (3, 2));
    assert_eq!(router.endpoint_links(id.name()).await, 1);
    append_pipelined(&mut client, &mut w, 5, 2).await;
    same_records(&read_verified(&mut client, &w.md, 1, 20).await, &w);
    server.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attach_is_renewed_without_losing_a_request() {
    let router = TestRouter::start();
    let dir = TempDir::new("renew");
    let (id, key) = server_identity(dir.path());
    let mut c = config(dir.path(), router.addr(), &key);
    // Renewed two thirds in: every 2 s.
    c.router.rtcert_validity = Duration::from_secs(3);
    let server = RunningServer::start(c);
    let mut client = TestClient::connect(router.addr()).await;
    let mut w = Writer::new(id.name(), "renew");
    client.call_when_routed(id.name(), &w.create()).await;
    // Appends go on while the server renews its attach twice: each is
    // answered (`answer` panics on a NAK or when nothing comes). The client
    // attached once, the server at start and at each renewal.
    let deadline = tokio::time::Instant::now() + net::WAIT;
    while router.stats().await.attaches < 1 + 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not renew its attach twice"
        );
        append_pipelined(&mut client, &mut w, 4, 1).await;
    }
    same_records(&read_verified(&mut client, &w.md, 1, w.tail()).await, &w);
    server.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_capsule_and_record() {
    let router = TestRouter::start();
    let dir = TempDir::new("restart");
    let (id, key) = server_identity(dir.path());
    let server = RunningServer::start(config(dir.path(), router.addr(), &key));
    let mut client = TestClient::connect(router.addr()).await;
    let mut w = Writer::new(id.name(), "restart");
    client.call_when_routed(id.name(), &w.create()).await;
    append_pipelined(&mut client, &mut w, 20, 5).await;
    server.stop().await.expect("a clean stop");

    let server = RunningServer::start(config(dir.path(), router.addr(), &key));
    let (src, body) = client
        .call_when_routed(w.capsule(), &CapsuleRequest::Latest)
        .await;
    assert_eq!(src, w.capsule());
    assert!(matches!(body, CapsuleResponse::Records { ref records, .. }
        if records.last().map(Record::seqno) == Some(100)));
    same_records(&read_verified(&mut client, &w.md, 1, 100).await, &w);
    append_pipelined(&mut client, &mut w, 2, 5).await;
    server.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_generated_on_first_start_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let router = TestRouter::start();
    let dir = TempDir::new("keygen");
    let mut c = ServerConfig::new(dir.path(), router.addr());
    c.label = "generated".into();
    let server = RunningServer::start(c);
    let key: PathBuf = dir.path().join(DEFAULT_KEY_FILE);
    eventually(net::WAIT, "the server attached", || async {
        router.stats().await.attaches > 0
    })
    .await;
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let id = Identity::load(&key).expect("a valid key file");
    assert_eq!(id.metadata().label(), "generated");
    assert_eq!(router.stats().await.attaches, 1);
    assert_eq!(router.endpoint_links(id.name()).await, 1);
    server.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_with_another_name_is_fatal() {
    let router = TestRouter::start();
    let dir = TempDir::new("wrong-router");
    let (_, key) = server_identity(dir.path());
    let mut c = config(dir.path(), router.addr(), &key);
    c.router.name = Some(Name::from_bytes([42; 32]));
    let (_stop, stopped) = oneshot::channel::<()>();
    let result = tokio::time::timeout(
        net::WAIT,
        run(c, async move {
            let _ = stopped.await;
        }),
    )
    .await
    .expect("gives up at once");
    assert!(matches!(result, Err(ServerError::Link(_))), "{result:?}");
    assert_eq!(router.stats().await.attaches, 0);
}
