//! Test endpoints: clients attached to a router process through
//! `gdp_link::endpoint`, and bare QUIC peers that misbehave.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gdp_certs::tls::{self, PeerPolicy};
use gdp_certs::{Identity, Kind, Name};
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink, EndpointReceiver, Nak};
use gdp_proto::Encode;
use gdp_proto::pdu::{Pdu, PduHeader, PduType};
use gdp_testkit::eventually_ok;

/// Payload of the PDUs that open a route before a measured exchange.
pub const WARMUP: &[u8] = b"warm-up";

/// A client attached to a router.
pub struct TestEndpoint {
    /// Its identity.
    pub identity: Identity,
    /// The attached link.
    pub link: EndpointLink,
    /// What arrives on it.
    pub rx: EndpointReceiver,
    config: EndpointConfig,
}

/// Endpoint settings for a router at `addr` named `router`: a short idle
/// timeout, so that a router killed without a word is noticed in about a
/// second.
pub fn endpoint_config(addr: SocketAddr, router: Name) -> EndpointConfig {
    let mut config = EndpointConfig::new(addr).with_router(router);
    config.transport.keep_alive = Duration::from_millis(300);
    config.transport.idle_timeout = Duration::from_millis(1500);
    config.attach_timeout = Duration::from_secs(5);
    config
}

impl TestEndpoint {
    /// A new client identity attached to the router at `addr` named `router`.
    pub async fn attach(addr: SocketAddr, router: Name, label: &str) -> TestEndpoint {
        let identity = Identity::generate(Kind::Client, label).expect("identity");
        let config = endpoint_config(addr, router);
        let (link, rx) = EndpointLink::connect(&identity, &config)
            .await
            .unwrap_or_else(|e| panic!("{label} attaches: {e}"));
        TestEndpoint {
            identity,
            link,
            rx,
            config,
        }
    }

    /// Its name.
    pub fn name(&self) -> Name {
        self.identity.name()
    }

    /// Attaches again (after the router restarted), retrying for up to
    /// `within`.
    pub async fn reattach(&mut self, within: Duration) {
        let (link, rx) = eventually_ok(within, || {
            EndpointLink::connect(&self.identity, &self.config)
        })
        .await;
        self.link = link;
        self.rx = rx;
    }

    /// An encoded Data PDU from this endpoint to `dst`.
    pub fn data(&self, dst: Name, seq: u64, payload: impl Into<Bytes>) -> Bytes {
        Pdu::new(
            PduHeader::new(PduType::Data, dst, self.name(), seq),
            payload.into(),
        )
        .expect("within limits")
        .to_bytes()
    }

    /// Sends one Data PDU to `dst`.
    pub async fn send_data(&self, dst: Name, seq: u64, payload: impl Into<Bytes>) {
        self.link
            .send_encoded(self.data(dst, seq, payload))
            .await
            .expect("queued");
    }

    /// The next event, or `None` after `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<EndpointEvent> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next Data PDU (skipping other events), or `None` after `wait`.
    pub async fn next_data(&mut self, wait: Duration) -> Option<Pdu> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(EndpointEvent::Pdu { pdu, .. })) if pdu.header.ptype == PduType::Data => {
                    return Some(pdu);
                }
                Ok(Some(EndpointEvent::Down(_)) | None) | Err(_) => return None,
                Ok(Some(_)) => {}
            }
        }
    }

    /// The next NAK (skipping other events), or `None` after `wait`.
    pub async fn next_nak(&mut self, wait: Duration) -> Option<Nak> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(EndpointEvent::NakNoRoute(nak))) => return Some(nak),
                Ok(Some(EndpointEvent::Down(_)) | None) | Err(_) => return None,
                Ok(Some(_)) => {}
            }
        }
    }

    /// Waits until the link is down; false if it is still up after `wait`.
    pub async fn wait_down(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.link.closed()).await.is_ok()
    }
}

/// Sends warm-up PDUs from `from` to `to` until one arrives (the route is
/// then resolved and cached on every router of the path); the PDUs that
/// arrive late are skipped by [`TestEndpoint::next_data`] readers that
/// check for [`WARMUP`].
pub async fn open_route(from: &TestEndpoint, to: &mut TestEndpoint, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        from.send_data(to.name(), 0, WARMUP).await;
        if let Some(pdu) = to.next_data(Duration::from_millis(300)).await {
            assert_eq!(pdu.header.src, from.name());
            return;
        }
    }
    panic!(
        "no route from {} to {} within {within:?}",
        from.name(),
        to.name()
    );
}

/// Skips what is already queued for `ep` (late warm-up PDUs, NAKs).
pub async fn drain(ep: &mut TestEndpoint, quiet: Duration) {
    while ep.next_event(quiet).await.is_some() {}
}

/// A note in the test output (the tests do not install a subscriber).
pub fn note(msg: &str) {
    eprintln!("note: {msg}");
}

/// A bare QUIC connection to the router at `addr` with a fresh client
/// identity and no attach, to send what no well-behaved endpoint sends.
pub async fn raw_peer(addr: SocketAddr, router: Name) -> (quinn::Endpoint, quinn::Connection) {
    let me = Identity::generate(Kind::Client, "raw").expect("identity");
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("binds");
    let config = tls::quinn_client_config(&me, PeerPolicy::Expect(router)).expect("client config");
    let conn = endpoint
        .connect_with(config, addr, tls::SERVER_NAME)
        .expect("connects")
        .await
        .expect("handshakes");
    (endpoint, conn)
}

/// The application close code `conn` was closed with, waiting up to `wait`.
pub async fn close_code(conn: &quinn::Connection, wait: Duration) -> Option<u64> {
    match tokio::time::timeout(wait, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => Some(close.error_code.into_inner()),
        _ => None,
    }
}
