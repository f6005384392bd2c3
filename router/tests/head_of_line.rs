//! No head-of-line blocking, over real QUIC on loopback: one endpoint stops
//! reading while another floods it through a router, and an unrelated
//! pair keeps exchanging PDUs through the same router (and pinging the
//! router itself, which the driver answers) all along.
//!
//! The router runs from the library in this process (real QUIC links, a
//! memory directory). Its stall timeout is set long (8 s), so a driver
//! that waited for the stuck link's queue would hold every pong for
//! seconds; each round trip here must complete within [`ROUND_TRIP`],
//! several times shorter. The test asserts progress and the counters
//! (PDUs sent to the overflow, dropped at a full overflow, the stuck link
//! closed), not latencies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Name};
use gdp_link::Transport;
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink, EndpointReceiver};
use gdp_proto::Encode;
use gdp_proto::pdu::{Pdu, PduHeader, PduType};
use gdp_router::config::RouterSettings;
use gdp_router::core::RouterCore;
use gdp_router::directory::MemoryDirectory;
use gdp_router::driver::{self, DriverStats, RouterHandle, Running};
use gdp_testkit::eventually;

/// Longest one round trip of the unrelated pair may take: far below the
/// stall timeout.
const ROUND_TRIP: Duration = Duration::from_secs(3);
/// The router's stall timeout in this test.
const STALL: Duration = Duration::from_secs(8);
/// Longest wait for the router to reach a state.
const WAIT: Duration = Duration::from_secs(20);

async fn start_router() -> (Running, Name) {
    let mut settings = RouterSettings::default();
    settings.listen = "127.0.0.1:0".parse().expect("an address");
    settings.stall_timeout = STALL;
    // The test's endpoints go silent for a while; keep the links up.
    settings.idle_timeout = Duration::from_secs(30);
    let identity = Identity::generate(Kind::Router, "hol").expect("an identity");
    let name = identity.name();
    let (transport, events) =
        Transport::bind(identity.clone(), settings.transport_config()).expect("binds");
    let addresses = settings.advertised_addresses(transport.local_addr());
    let core =
        RouterCore::new(identity, settings.core_config(addresses, None)).expect("valid settings");
    let running = driver::spawn(
        core,
        transport,
        events,
        Arc::new(MemoryDirectory::new()),
        settings.driver_config(),
    );
    (running, name)
}

/// An endpoint attached to the router.
struct TestEndpoint {
    identity: Identity,
    link: EndpointLink,
    rx: EndpointReceiver,
}

/// Endpoint settings for the router at `addr` named `router`.
fn endpoint_config(addr: SocketAddr, router: Name) -> EndpointConfig {
    let mut config = EndpointConfig::new(addr).with_router(router);
    config.attach_timeout = Duration::from_secs(5);
    config
}

impl TestEndpoint {
    async fn attach(addr: SocketAddr, router: Name, label: &str) -> TestEndpoint {
        let identity = Identity::generate(Kind::Client, label).expect("identity");
        let (link, rx) = EndpointLink::connect(&identity, &endpoint_config(addr, router))
            .await
            .unwrap_or_else(|e| panic!("{label} attaches: {e}"));
        TestEndpoint { identity, link, rx }
    }

    fn name(&self) -> Name {
        self.identity.name()
    }

    /// An encoded Data PDU from this endpoint to `dst`.
    fn data(&self, dst: Name, seq: u64, payload: impl Into<Bytes>) -> Bytes {
        Pdu::new(
            PduHeader::new(PduType::Data, dst, self.name(), seq),
            payload.into(),
        )
        .expect("within limits")
        .to_bytes()
    }

    async fn send_data(&self, dst: Name, seq: u64, payload: impl Into<Bytes>) {
        self.link
            .send_encoded(self.data(dst, seq, payload))
            .await
            .expect("queued");
    }
}

/// Sends warm-up PDUs from `from` to `to` (a link and its receiver) until
/// one arrives: the route is then resolved and cached.
async fn open_route(from: &TestEndpoint, to: Name, rx: &mut EndpointReceiver) {
    let opened = async {
        loop {
            from.send_data(to, 0, &b"warm-up"[..]).await;
            let quiet = tokio::time::sleep(Duration::from_millis(300));
            tokio::pin!(quiet);
            loop {
                tokio::select! {
                    event = rx.recv() => match event {
                        Some(EndpointEvent::Pdu { pdu, .. }) if pdu.header.ptype == PduType::Data => return,
                        Some(_) => {}
                        None => panic!("the link went down"),
                    },
                    () = &mut quiet => break,
                }
            }
        }
    };
    tokio::time::timeout(WAIT, opened)
        .await
        .expect("a route opens");
}

/// Skips what is already queued on `rx` (late warm-up PDUs).
async fn drain(rx: &mut EndpointReceiver) {
    while tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .is_ok_and(|e| e.is_some())
    {}
}

async fn driver_stats(router: &RouterHandle) -> DriverStats {
    router
        .snapshot()
        .await
        .expect("the router is running")
        .driver
}

/// Waits for the next PDU of type `ptype` with sequence number `seq`.
async fn next_of(ep: &mut TestEndpoint, ptype: PduType, seq: u64) -> Option<Pdu> {
    let deadline = tokio::time::Instant::now() + ROUND_TRIP;
    loop {
        match tokio::time::timeout_at(deadline, ep.rx.recv()).await {
            Ok(Some(EndpointEvent::Pdu { pdu, .. }))
                if pdu.header.ptype == ptype && pdu.header.seq == seq =>
            {
                return Some(pdu);
            }
            Ok(Some(EndpointEvent::Down(_)) | None) | Err(_) => return None,
            Ok(Some(_)) => {}
        }
    }
}

/// One round of the unrelated pair: `a` pings the router (answered by the
/// driver's core), then sends `b` a PDU and `b` answers it.
async fn round(a: &mut TestEndpoint, b: &mut TestEndpoint, router: Name, seq: u64) {
    let ping = Pdu::new(
        PduHeader::new(PduType::Ping, router, a.name(), seq),
        Bytes::from_static(b"ping"),
    )
    .expect("small");
    a.link.send(&ping).await.expect("queued");
    assert!(
        next_of(a, PduType::Pong, seq).await.is_some(),
        "round {seq}: no pong from the router within {ROUND_TRIP:?}"
    );
    a.send_data(b.name(), seq, &b"there"[..]).await;
    assert!(
        next_of(b, PduType::Data, seq).await.is_some(),
        "round {seq}: a's pdu did not reach b within {ROUND_TRIP:?}"
    );
    b.send_data(a.name(), seq, &b"back"[..]).await;
    assert!(
        next_of(a, PduType::Data, seq).await.is_some(),
        "round {seq}: b's answer did not reach a within {ROUND_TRIP:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_stops_reading_holds_up_nobody_else() {
    let (running, router) = start_router().await;
    let handle = running.handle().clone();
    let addr = {
        let mut a = handle.local_addr();
        a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        a
    };

    // The victim reads nothing once the route is open: small windows and
    // a one-batch channel, so its link to the router backs up quickly.
    let victim_id = Identity::generate(Kind::Client, "victim").expect("identity");
    let mut config = endpoint_config(addr, router);
    config.transport.stream_receive_window = 256 * 1024;
    config.transport.connection_receive_window = 512 * 1024;
    config.transport.keep_alive = Duration::from_secs(1);
    config.transport.idle_timeout = Duration::from_secs(30);
    config.incoming_queue = 1;
    let victim_name = victim_id.name();
    let (victim_link, mut victim_rx) = EndpointLink::connect(&victim_id, &config)
        .await
        .expect("the victim attaches");
    let attacker = TestEndpoint::attach(addr, router, "attacker").await;
    open_route(&attacker, victim_name, &mut victim_rx).await;
    let mut a = TestEndpoint::attach(addr, router, "a").await;
    let mut b = TestEndpoint::attach(addr, router, "b").await;
    open_route(&a, b.name(), &mut b.rx).await;
    open_route(&b, a.name(), &mut a.rx).await;
    drain(&mut a.rx).await;
    drain(&mut b.rx).await;
    round(&mut a, &mut b, router, 1).await;

    // From now on the victim reads nothing, and the attacker floods it
    // with 1 KiB PDUs.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        let pdus: Vec<Bytes> = (0..64)
            .map(|i| attacker.data(victim_name, 1000 + i, vec![0x5a; 1024]))
            .collect();
        let link = attacker.link.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if link.send_batch(pdus.clone()).await.is_err() {
                    break;
                }
                sent += pdus.len() as u64;
            }
            sent
        })
    };
    eventually(WAIT, "the victim's queue filled up", || async {
        driver_stats(&handle).await.send_stalls > 0
    })
    .await;

    // While the victim's link is stuck, the pair keeps exchanging PDUs and
    // the router keeps answering pings.
    for seq in 2..40 {
        round(&mut a, &mut b, router, seq).await;
    }
    let during = driver_stats(&handle).await;
    assert!(during.send_stalls > 0);
    assert!(
        during.queue_full > 0,
        "pdus beyond the overflow are dropped and counted: {during:?}"
    );
    assert!(during.overflow_bytes <= 256 * 1024, "{during:?}");

    // The stuck link is closed at the stall timeout; the pair goes on.
    eventually(WAIT, "the stuck link was closed", || async {
        driver_stats(&handle).await.stalled_links_closed >= 1
    })
    .await;
    for seq in 40..50 {
        round(&mut a, &mut b, router, seq).await;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = tokio::time::timeout(WAIT, flood)
        .await
        .expect("the flood stops")
        .expect("the flood task ran");
    assert!(sent > 0);
    drop((victim_link, victim_rx));
    running.shutdown().await.expect("shuts down");
}
