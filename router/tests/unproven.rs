//! The reader's bound on large PDUs before an endpoint attaches, over real
//! QUIC on loopback: a link that has not attached cannot make the router
//! assemble a 1 MiB PDU (it is cut off as oversized), while an attached
//! endpoint sends and receives PDUs of the largest size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Name};
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink};
use gdp_link::{LinkEvent, Transport, TransportConfig};
use gdp_proto::Encode;
use gdp_proto::pdu::{MAX_PAYLOAD_LEN, Pdu, PduHeader, PduType};
use gdp_router::config::RouterSettings;
use gdp_router::core::RouterCore;
use gdp_router::directory::MemoryDirectory;
use gdp_router::driver::{self, RouterHandle, Running};
use gdp_testkit::eventually;

const WAIT: Duration = Duration::from_secs(20);

fn start_router() -> Running {
    let mut settings = RouterSettings::default();
    settings.listen = "127.0.0.1:0".parse().expect("an address");
    assert_eq!(settings.unproven_pdu_limit, 64 * 1024, "the default");
    let identity = Identity::generate(Kind::Router, "bounded").expect("an identity");
    let (transport, events) =
        Transport::bind(identity.clone(), settings.transport_config()).expect("binds");
    let addresses = settings.advertised_addresses(transport.local_addr());
    let core =
        RouterCore::new(identity, settings.core_config(addresses, None)).expect("valid settings");
    driver::spawn(
        core,
        transport,
        events,
        Arc::new(MemoryDirectory::new()),
        settings.driver_config(),
    )
}

fn loopback(router: &RouterHandle) -> std::net::SocketAddr {
    let mut addr = router.local_addr();
    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    addr
}

fn largest(dst: Name, src: Name) -> Bytes {
    Pdu::new(
        PduHeader::new(PduType::Data, dst, src, 7),
        Bytes::from(vec![0x42; MAX_PAYLOAD_LEN]),
    )
    .expect("the largest pdu")
    .to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unattached_link_cannot_make_the_router_hold_a_large_pdu() {
    let running = start_router();
    let router = running.handle().clone();

    // A bare link that never answers the attach challenge sends the
    // largest PDU.
    let (raw, mut raw_events) = Transport::bind(
        Identity::generate(Kind::Client, "unproven").expect("identity"),
        TransportConfig::new("127.0.0.1:0".parse().expect("address")),
    )
    .expect("binds");
    let link = raw
        .dial(loopback(&router), router.name())
        .await
        .expect("links");
    let _ = link.send(largest(router.name(), raw.name())).await;
    let down = tokio::time::timeout(WAIT, async {
        loop {
            match raw_events.recv().await {
                Some(LinkEvent::Down { .. }) | None => return,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(down.is_ok(), "the router cut the link off");
    let snapshot = router.snapshot().await.expect("running");
    assert_eq!(snapshot.driver.oversized, 1);
    assert_eq!(snapshot.driver.malformed_stream, 1);

    // Attached endpoints exchange PDUs of the largest size.
    let config = EndpointConfig::new(loopback(&router)).with_router(router.name());
    let a_id = Identity::generate(Kind::Client, "a").expect("identity");
    let b_id = Identity::generate(Kind::Client, "b").expect("identity");
    let (a, _a_rx) = EndpointLink::connect(&a_id, &config)
        .await
        .expect("a attaches");
    let (_b, mut b_rx) = EndpointLink::connect(&b_id, &config)
        .await
        .expect("b attaches");
    let got = tokio::time::timeout(WAIT, async {
        loop {
            a.send_encoded(largest(b_id.name(), a_id.name()))
                .await
                .expect("queued");
            let wait = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    event = b_rx.recv() => match event {
                        Some(EndpointEvent::Pdu { pdu, .. }) if pdu.header.ptype == PduType::Data => {
                            return pdu.payload.len();
                        }
                        Some(_) => {}
                        None => panic!("b's link went down"),
                    },
                    () = &mut wait => break,
                }
            }
        }
    })
    .await
    .expect("a large pdu reached b");
    assert_eq!(got, MAX_PAYLOAD_LEN);
    eventually(WAIT, "nothing more was cut off", || async {
        router.snapshot().await.expect("running").driver.oversized == 1
    })
    .await;
    raw.shutdown("done").await;
    running.shutdown().await.expect("shuts down");
}
