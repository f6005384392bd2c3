//! A request whose PDU is lost on the way (a router drops PDUs to a full
//! queue rather than stall) is sent again after
//! `ClientOptions::retransmit_after`, so it costs a resend, not the whole
//! request timeout; and a writer whose later batches meet `Gap` while an
//! earlier one is being resent sends them again until the server takes
//! them. Fake servers attached to a real router lose the first copies.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Metadata, Timestamp};
use gdp_client::{Client, ClientError, ClientOptions};
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::ChainState;

use common::{Router, TempDir, fake_server};

/// Answers every request with `Unsubscribed`, but only from its `copies`th
/// copy on (copies counted per request id).
async fn lossy_server(
    link: EndpointLink,
    mut incoming: gdp_link::endpoint::EndpointReceiver,
    copies: u32,
) {
    let mut seen: HashMap<u64, u32> = HashMap::new();
    while let Some(event) = incoming.recv().await {
        let EndpointEvent::Pdu { pdu, .. } = event else {
            continue;
        };
        if CapsuleRequest::from_pdu(&pdu).is_err() {
            continue;
        }
        let n = seen.entry(pdu.header.seq).or_default();
        *n += 1;
        if *n < copies {
            continue;
        }
        let reply = CapsuleResponse::Unsubscribed
            .reply_to(&pdu.header)
            .expect("fits a pdu");
        if link.send(&reply).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_request_is_sent_again() {
    let dir = TempDir::new("retransmit");
    let router = Router::start(dir.path(), "router", "127.0.0.1:0");
    let server = Identity::generate(Kind::Server, "lossy").expect("identity");
    let config = EndpointConfig::new(router.addr).with_router(router.name);
    let (link, incoming) = EndpointLink::connect(&server, &config)
        .await
        .expect("attach");
    let serving = tokio::spawn(lossy_server(link, incoming, 3));

    let id = Identity::generate(Kind::Client, "patient").expect("identity");
    let mut options = ClientOptions::default().with_router(router.name);
    options.retransmit_after = Duration::from_millis(200);
    let client = Client::connect(router.addr, id, options)
        .await
        .expect("client attaches");
    let start = Instant::now();
    let answer = client
        .request(server.name(), &CapsuleRequest::Latest)
        .await
        .expect("answered after two resends");
    assert_eq!(answer, CapsuleResponse::Unsubscribed);
    // Sent at 0, 200 ms and 600 ms (the pause doubles).
    assert!(start.elapsed() >= Duration::from_millis(600));
    assert!(start.elapsed() < Duration::from_secs(5));
    // Two resends at least (a slow machine may need a third).
    assert!(client.retransmits() >= 2);

    // Without resends the same loss is a timeout.
    let id = Identity::generate(Kind::Client, "stubborn").expect("identity");
    let mut options = ClientOptions::default()
        .with_router(router.name)
        .with_request_timeout(Duration::from_millis(800));
    options.retransmit_after = Duration::ZERO;
    let stubborn = Client::connect(router.addr, id, options)
        .await
        .expect("client attaches");
    assert!(matches!(
        stubborn
            .request(server.name(), &CapsuleRequest::Latest)
            .await,
        Err(ClientError::Timeout { .. })
    ));
    assert_eq!(stubborn.retransmits(), 0);
    client.shutdown().await;
    stubborn.shutdown().await;
    serving.abort();
}

/// What the fake append server saw.
#[derive(Default)]
struct AppendLog {
    /// Copies of the batch that starts at seqno 1.
    first_batch_copies: AtomicU64,
    /// `Gap` answers given.
    gaps: AtomicU64,
}

/// Takes appends in order like a capsule server (answering `Gap` to a
/// batch that does not follow its tail, and the tail to one it already
/// has), but loses the first copy of the first batch.
async fn lossy_appends(
    link: EndpointLink,
    mut incoming: gdp_link::endpoint::EndpointReceiver,
    log: Arc<AppendLog>,
) {
    let mut tail = 0u64;
    while let Some(event) = incoming.recv().await {
        let EndpointEvent::Pdu { pdu, .. } = event else {
            continue;
        };
        let Ok(CapsuleRequest::Append { records, .. }) = CapsuleRequest::from_pdu(&pdu) else {
            continue;
        };
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            continue;
        };
        let (first, last) = (first.seqno(), last.seqno());
        if first == 1 && log.first_batch_copies.fetch_add(1, Ordering::Relaxed) == 0 {
            continue;
        }
        let answer = if first > tail + 1 {
            log.gaps.fetch_add(1, Ordering::Relaxed);
            CapsuleResponse::error(
                ErrorCode::Gap,
                format!("expected seqno {}, got {first}", tail + 1),
            )
        } else {
            tail = tail.max(last);
            CapsuleResponse::Appended { tail }
        };
        let reply = answer.reply_to(&pdu.header).expect("fits a pdu");
        if link.send(&reply).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_that_meet_gap_behind_a_lost_one_are_sent_again() {
    let dir = TempDir::new("retransmit-gap");
    let router = Router::start(dir.path(), "router", "127.0.0.1:0");
    let owner = Identity::generate(Kind::Client, "owner").expect("identity");
    let md = Metadata::capsule(
        owner.public_key(),
        vec![owner.public_key()],
        "lossy",
        Timestamp::now(),
        vec![],
    )
    .expect("metadata");
    let (_server, link, incoming) =
        fake_server(&router, "lossy-appends", owner.secret_key(), &md).await;
    let log = Arc::new(AppendLog::default());
    let serving = tokio::spawn(lossy_appends(link, incoming, log.clone()));

    let mut options = ClientOptions::default().with_router(router.name);
    options.retransmit_after = Duration::from_millis(300);
    options.batch_records = 4;
    let client = Client::connect(router.addr, owner.clone(), options)
        .await
        .expect("client attaches");
    let capsule = client.capsule(md.clone()).expect("capsule");
    let mut writer = capsule
        .writer_at(owner.secret_key().clone(), ChainState::new(md.name()))
        .expect("writer");
    let last = writer
        .append_all((1..=12u64).map(|i| Bytes::from(format!("record {i}"))))
        .await
        .expect("every batch acknowledged");
    assert_eq!(last, 12);
    assert_eq!(writer.acknowledged(), 12);
    // The first batch was lost once and resent; the two behind it met
    // `Gap` at least once each and were sent again.
    assert!(log.first_batch_copies.load(Ordering::Relaxed) >= 2);
    assert!(log.gaps.load(Ordering::Relaxed) >= 2);
    assert!(client.retransmits() >= 1);
    client.shutdown().await;
    serving.abort();
}
