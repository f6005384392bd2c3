//! Dials to other routers are bounded, over real QUIC on loopback: route
//! records for throwaway router names (valid, and listing an address where
//! nothing answers) make the router dial, but at most `max_dials` at once,
//! each router at most once per backoff, and the refusals are counted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{RouteRecord, RouteTarget, Validity};
use gdp_certs::codec::Encode;
use gdp_certs::{Identity, Kind, Name, Timestamp};
use gdp_link::Transport;
use gdp_link::endpoint::{EndpointConfig, EndpointLink};
use gdp_proto::pdu::{Pdu, PduHeader, PduType};
use gdp_router::config::RouterSettings;
use gdp_router::core::RouterCore;
use gdp_router::directory::{Directory, MemoryDirectory};
use gdp_router::driver::{self, DriverStats, RouterHandle};
use gdp_testkit::eventually;

const WAIT: Duration = Duration::from_secs(20);
/// Throwaway routers in the directory.
const ROUTERS: usize = 6;

async fn stats(router: &RouterHandle) -> DriverStats {
    router.snapshot().await.expect("running").driver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_entries_cannot_make_the_router_dial_without_bound() {
    // Where the records point: a socket that never answers, so every
    // handshake runs to its timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("binds");
    let nowhere = silent.local_addr().expect("an address");
    let directory = MemoryDirectory::new();
    let validity = Validity::starting_at(Timestamp::now(), Duration::from_secs(600));
    let mut routers = Vec::new();
    for i in 0..ROUTERS {
        let id = Identity::generate(Kind::Router, format!("throwaway-{i}")).expect("identity");
        let record = RouteRecord::sign(
            &id,
            id.name(),
            RouteTarget::Router,
            vec![nowhere],
            None,
            validity,
        )
        .expect("signs");
        directory
            .publish(id.name(), id.name(), record.to_bytes(), record.expires())
            .await
            .expect("publish");
        routers.push(id.name());
    }

    let mut settings = RouterSettings::default();
    settings.listen = "127.0.0.1:0".parse().expect("an address");
    settings.dial_timeout = Duration::from_millis(500);
    settings.max_dials = 2;
    let mut driver_config = settings.driver_config();
    driver_config.dial_backoff = Duration::from_secs(60);
    let identity = Identity::generate(Kind::Router, "dialer").expect("an identity");
    let (transport, events) =
        Transport::bind(identity.clone(), settings.transport_config()).expect("binds");
    let addresses = settings.advertised_addresses(transport.local_addr());
    let core =
        RouterCore::new(identity, settings.core_config(addresses, None)).expect("valid settings");
    let running = driver::spawn(
        core,
        transport,
        events,
        Arc::new(directory.clone()),
        driver_config,
    );
    let router = running.handle().clone();
    let mut addr = router.local_addr();
    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    let client = Identity::generate(Kind::Client, "sender").expect("identity");
    let (link, _rx) = EndpointLink::connect(
        &client,
        &EndpointConfig::new(addr).with_router(router.name()),
    )
    .await
    .expect("attaches");
    let send_to = |dst: Name, seq: u64| {
        let pdu = Pdu::new(
            PduHeader::new(PduType::Data, dst, client.name(), seq),
            Bytes::from_static(b"hello"),
        )
        .expect("small");
        let link = link.clone();
        async move { link.send(&pdu).await.expect("queued") }
    };

    // PDUs to every throwaway router: two dials at once, the others
    // refused at the limit.
    for (i, &r) in routers.iter().enumerate() {
        send_to(r, i as u64).await;
    }
    eventually(WAIT, "dials refused at the limit", || async {
        let s = stats(&router).await;
        assert!(s.dials_running <= 2, "{s:?}");
        s.dials_refused_limit > 0
    })
    .await;
    eventually(WAIT, "the running dials failed", || async {
        stats(&router).await.dials_failed >= 2
    })
    .await;

    // Sending on: every router is dialed at most once within its backoff,
    // and further requests are refused.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seq = 100;
    loop {
        for &r in &routers {
            send_to(r, seq).await;
            seq += 1;
        }
        let s = stats(&router).await;
        assert!(s.dials_running <= 2, "{s:?}");
        assert!(
            s.dials_failed <= ROUTERS as u64,
            "a router was dialed twice within its backoff: {s:?}"
        );
        if s.dials_refused_backoff > 0 && s.dials_backed_off >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dial refused for its backoff: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(silent);
    running.shutdown().await.expect("shuts down");
}
