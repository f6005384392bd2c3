//! A request whose PDU is lost on the way (a router drops PDUs to a full
//! queue rather than stall) is sent again after
//! `ClientOptions::retransmit_after`, so it costs a resend, not the whole
//! request timeout. A fake server attached to a real router ignores the
//! first copy of every request and answers the second.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gdp_certs::{Identity, Kind};
use gdp_client::{Client, ClientError, ClientOptions};
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};

use common::{Router, TempDir};

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
    assert_eq!(client.retransmits(), 2);

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
