//! The endpoint side of a router link, against a minimal fake router made of
//! a `Transport` and the attach control messages, on real QUIC over
//! loopback.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_link::endpoint::{
    Backoff, EndpointConfig, EndpointError, EndpointEvent, EndpointLink, EndpointReceiver,
    connect_with_retry,
};
use gdp_link::{DownReason, Link, LinkEvent, Transport, TransportConfig};
use gdp_proto::control::{AdvertiseEntry, AttachChallenge, ControlMessage, NakReason};
use gdp_proto::pdu::{Flags, Pdu, PduHeader, PduType};
use gdp_proto::{Decode, Encode};
use gdp_testkit::udp_socket;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// How the fake router treats attach proofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Challenge, verify, accept.
    Accept,
    /// Challenge, then reject every proof.
    Reject,
    /// Never challenge.
    Silent,
    /// Challenge in the name of another router.
    WrongRouter,
}

/// What the fake router saw.
#[derive(Debug)]
enum Seen {
    Attached { endpoint: Name, validity: Validity },
    Advertise(Vec<AdvertiseEntry>),
}

/// A router reduced to the attach handshake and an echo: Data PDUs come
/// back to their source with the `RESPONSE` flag; a payload of `nak` is
/// answered with a NakNoRoute instead, and `close` closes the link.
struct FakeRouter {
    transport: Transport,
    seen: mpsc::Receiver<Seen>,
}

impl FakeRouter {
    fn start(mode: Mode) -> FakeRouter {
        Self::start_on(udp_socket(), mode, Kind::Router)
    }

    /// A fake router of `kind` on `socket`, which is bound already.
    fn start_on(socket: UdpSocket, mode: Mode, kind: Kind) -> FakeRouter {
        let identity = Identity::generate(kind, "fake-router").expect("identity");
        let name = identity.name();
        let addr = socket.local_addr().expect("bound");
        let (transport, events) =
            Transport::bind_socket(identity, TransportConfig::new(addr), socket).expect("binds");
        let (seen_tx, seen) = mpsc::channel(64);
        tokio::spawn(serve(name, mode, events, seen_tx));
        FakeRouter { transport, seen }
    }

    fn addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    fn name(&self) -> Name {
        self.transport.name()
    }

    async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("the router saw something in time")
            .expect("the router is running")
    }
}

fn control(msg: ControlMessage, dst: Name, src: Name) -> Bytes {
    msg.to_pdu(dst, src, 1).expect("small").to_bytes()
}

async fn serve(
    name: Name,
    mode: Mode,
    mut events: mpsc::Receiver<LinkEvent>,
    seen: mpsc::Sender<Seen>,
) {
    let mut links: std::collections::HashMap<_, (Link, AttachChallenge)> = Default::default();
    while let Some(event) = events.recv().await {
        match event {
            LinkEvent::Up { link_id, link, .. } => {
                let router = if mode == Mode::WrongRouter {
                    Name::from_bytes([9; 32])
                } else {
                    name
                };
                let challenge = AttachChallenge {
                    router,
                    nonce: rand::random(),
                };
                if mode != Mode::Silent {
                    let msg = ControlMessage::AttachChallenge(challenge.clone());
                    let _ = link.send(control(msg, Name::ZERO, name)).await;
                }
                links.insert(link_id, (link, challenge));
            }
            LinkEvent::Pdus { link_id, pdus, .. } => {
                let Some((link, challenge)) = links.get(&link_id).cloned() else {
                    continue;
                };
                for bytes in pdus {
                    let pdu = Pdu::decode(bytes).expect("the endpoint sends valid pdus");
                    match pdu.header.ptype {
                        PduType::Control => {
                            let Ok(ControlMessage::AttachProof(proof)) =
                                ControlMessage::from_pdu(&pdu)
                            else {
                                continue;
                            };
                            let verified = proof
                                .verify(&challenge, Timestamp::now())
                                .expect("the endpoint's proof verifies");
                            let reply = if mode == Mode::Reject {
                                ControlMessage::rejected("not welcome here")
                            } else {
                                let _ = seen
                                    .send(Seen::Attached {
                                        endpoint: verified.endpoint(),
                                        validity: verified.rtcert().validity(),
                                    })
                                    .await;
                                ControlMessage::AttachAccepted {
                                    endpoint: verified.endpoint(),
                                }
                            };
                            let _ = link.send(control(reply, verified.endpoint(), name)).await;
                        }
                        PduType::Advertise => {
                            if let Ok(ControlMessage::Advertise { entries }) =
                                ControlMessage::from_pdu(&pdu)
                            {
                                let _ = seen.send(Seen::Advertise(entries)).await;
                            }
                        }
                        PduType::Data => {
                            let h = pdu.header;
                            if pdu.payload.as_ref() == b"close" {
                                link.close("asked to");
                            } else if pdu.payload.as_ref() == b"nak" {
                                let nak = ControlMessage::NakNoRoute {
                                    dst: h.dst,
                                    reason: NakReason::NoRoute,
                                };
                                let pdu = nak.to_pdu(h.src, name, h.seq).expect("small");
                                let _ = link.send(pdu.to_bytes()).await;
                            } else {
                                let reply = PduHeader::new(PduType::Data, h.src, h.dst, h.seq)
                                    .with_flags(Flags::RESPONSE);
                                let pdu = Pdu::new(reply, pdu.payload).expect("same size");
                                let _ = link.send(pdu.to_bytes()).await;
                            }
                        }
                        _ => {}
                    }
                }
            }
            LinkEvent::Down { link_id, .. } => {
                links.remove(&link_id);
            }
            _ => {}
        }
    }
}

fn client() -> Identity {
    Identity::generate(Kind::Client, "test-client").expect("identity")
}

async fn next_event(rx: &mut EndpointReceiver) -> EndpointEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("the link is up")
}

fn data(src: Name, seq: u64, payload: &'static [u8]) -> Pdu {
    let header = PduHeader::new(PduType::Data, Name::from_bytes([5; 32]), src, seq);
    Pdu::new(header, Bytes::from_static(payload)).expect("small")
}

#[tokio::test]
async fn attaches_with_a_fresh_rtcert_and_exchanges_pdus() {
    let mut router = FakeRouter::start(Mode::Accept);
    let id = client();
    let config = EndpointConfig::new(router.addr()).with_router(router.name());
    let (link, mut rx) = EndpointLink::connect(&id, &config).await.expect("attaches");
    assert_eq!(link.router_name(), router.name());
    assert_eq!(link.name(), id.name());
    assert_eq!(link.rtcert().router(), router.name());
    assert_eq!(link.rtcert().endpoint(), id.name());
    let Seen::Attached { endpoint, validity } = router.next_seen().await else {
        panic!("attach expected first");
    };
    assert_eq!(endpoint, id.name());
    assert_eq!(validity, link.rtcert().validity());
    let now = Timestamp::now();
    let lifetime = validity.not_after.since(now);
    assert!(
        lifetime > Duration::from_secs(3500) && lifetime <= Duration::from_secs(3600),
        "{lifetime:?}"
    );
    assert!(validity.not_before < now);
    assert!(link.renew_at() > now && link.renew_at() < validity.not_after);

    for seq in 1..=1000 {
        link.send(&data(id.name(), seq, b"ping"))
            .await
            .expect("sent");
    }
    for seq in 1..=1000 {
        match next_event(&mut rx).await {
            EndpointEvent::Pdu { pdu, reliable } => {
                assert!(reliable);
                assert_eq!(pdu.header.seq, seq);
                assert_eq!(pdu.header.dst, id.name());
                assert!(pdu.header.flags.contains(Flags::RESPONSE));
                assert_eq!(pdu.payload.as_ref(), b"ping");
            }
            other => panic!("expected a pdu, got {other:?}"),
        }
    }
    assert_eq!(link.dropped_incoming(), 0);
    assert!(!link.is_closed());
    link.shutdown("done").await;
}

#[tokio::test]
async fn nak_no_route_is_a_typed_event() {
    let router = FakeRouter::start(Mode::Accept);
    let id = client();
    let config = EndpointConfig::new(router.addr());
    let (link, mut rx) = EndpointLink::connect(&id, &config).await.expect("attaches");
    link.send(&data(id.name(), 42, b"nak")).await.expect("sent");
    match next_event(&mut rx).await {
        EndpointEvent::NakNoRoute(nak) => {
            assert_eq!(nak.unreachable, Name::from_bytes([5; 32]));
            assert_eq!(nak.reason, NakReason::NoRoute);
            assert_eq!(nak.seq, 42);
            assert_eq!(nak.to, id.name());
            assert_eq!(nak.from, router.name());
        }
        other => panic!("expected a nak, got {other:?}"),
    }
}

#[tokio::test]
async fn several_pdus_are_received_at_once() {
    let router = FakeRouter::start(Mode::Accept);
    let id = client();
    let (link, mut rx) = EndpointLink::connect(&id, &EndpointConfig::new(router.addr()))
        .await
        .expect("attaches");
    let batch = (1..=100)
        .map(|seq| data(id.name(), seq, b"x").to_bytes())
        .collect();
    link.send_batch(batch).await.expect("sent");
    let mut got = Vec::new();
    while got.len() < 100 {
        let n = tokio::time::timeout(WAIT, rx.recv_many(&mut got, 64))
            .await
            .expect("in time");
        assert!((1..=64).contains(&n), "{n}");
    }
    let seqs: Vec<u64> = got
        .iter()
        .map(|e| match e {
            EndpointEvent::Pdu { pdu, .. } => pdu.header.seq,
            other => panic!("expected pdus, got {other:?}"),
        })
        .collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    assert!(rx.try_recv().is_none());
}

#[tokio::test]
async fn rejected_attach_is_a_typed_error() {
    let router = FakeRouter::start(Mode::Reject);
    let err = EndpointLink::connect(&client(), &EndpointConfig::new(router.addr()))
        .await
        .expect_err("rejected");
    match &err {
        EndpointError::Rejected { reason } => assert_eq!(reason, "not welcome here"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!err.is_transient());
}

#[tokio::test]
async fn silent_router_times_out() {
    let router = FakeRouter::start(Mode::Silent);
    let mut config = EndpointConfig::new(router.addr());
    config.attach_timeout = Duration::from_millis(300);
    let err = EndpointLink::connect(&client(), &config)
        .await
        .expect_err("no challenge comes");
    assert!(matches!(err, EndpointError::Timeout { after } if after == Duration::from_millis(300)));
    assert!(err.is_transient());
}

#[tokio::test]
async fn challenge_for_another_router_is_refused() {
    let router = FakeRouter::start(Mode::WrongRouter);
    let err = EndpointLink::connect(&client(), &EndpointConfig::new(router.addr()))
        .await
        .expect_err("the challenge names another router");
    assert!(matches!(err, EndpointError::Protocol { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn unexpected_router_name_fails_the_dial() {
    let router = FakeRouter::start(Mode::Accept);
    let config = EndpointConfig::new(router.addr()).with_router(Name::from_bytes([4; 32]));
    let err = EndpointLink::connect(&client(), &config)
        .await
        .expect_err("another name is expected");
    assert!(matches!(err, EndpointError::Dial(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn unknown_router_name_still_requires_a_router() {
    // A server listening where a router was expected is not trusted, even
    // on first use.
    let impostor = FakeRouter::start_on(udp_socket(), Mode::Accept, Kind::Server);
    let err = EndpointLink::connect(&client(), &EndpointConfig::new(impostor.addr()))
        .await
        .expect_err("a server is not a router");
    assert!(matches!(err, EndpointError::Dial(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn only_servers_and_clients_attach() {
    let router = FakeRouter::start(Mode::Accept);
    let id = Identity::generate(Kind::Router, "not-an-endpoint").expect("identity");
    let err = EndpointLink::connect(&id, &EndpointConfig::new(router.addr()))
        .await
        .expect_err("a router is no endpoint");
    assert!(matches!(
        err,
        EndpointError::NotAnEndpoint { kind: Kind::Router }
    ));
}

#[tokio::test]
async fn advertise_reaches_the_router() {
    let mut router = FakeRouter::start(Mode::Accept);
    let server = Identity::generate(Kind::Server, "store").expect("identity");
    let (link, _rx) = EndpointLink::connect(&server, &EndpointConfig::new(router.addr()))
        .await
        .expect("attaches");
    assert!(matches!(router.next_seen().await, Seen::Attached { .. }));
    let owner = SecretKey::generate();
    let now = Timestamp::now();
    let entries: Vec<AdvertiseEntry> = (0..300u16)
        .map(|i| {
            let md = Metadata::capsule(
                owner.public(),
                vec![owner.public()],
                format!("capsule {i}"),
                now,
                vec![],
            )
            .expect("valid metadata");
            let validity = Validity::new(now, now.saturating_add(Duration::from_secs(60)));
            AdvertiseEntry {
                adcert: AdCert::issue(&owner, md.name(), server.name(), validity),
                capsule_md: md,
            }
        })
        .collect();
    link.advertise(entries.clone()).await.expect("sent");
    // More entries than fit one message: two messages, in order.
    let Seen::Advertise(first) = router.next_seen().await else {
        panic!("advertise expected");
    };
    let Seen::Advertise(second) = router.next_seen().await else {
        panic!("advertise expected");
    };
    assert_eq!(first.len(), 256);
    assert_eq!([first, second].concat(), entries);
    for e in &entries {
        let v = e.adcert.verify(&e.capsule_md, now).expect("valid adcert");
        assert_eq!(v.server(), server.name());
    }
}

#[tokio::test]
async fn link_closed_by_the_router_ends_the_receiver() {
    let router = FakeRouter::start(Mode::Accept);
    let id = client();
    let (link, mut rx) = EndpointLink::connect(&id, &EndpointConfig::new(router.addr()))
        .await
        .expect("attaches");
    link.send(&data(id.name(), 1, b"close"))
        .await
        .expect("sent");
    match next_event(&mut rx).await {
        EndpointEvent::Down(DownReason::ClosedByPeer { reason, .. }) => {
            assert_eq!(reason, "asked to")
        }
        other => panic!("expected down, got {other:?}"),
    }
    assert!(rx.recv().await.is_none());
    let reason = tokio::time::timeout(WAIT, link.closed())
        .await
        .expect("in time");
    assert!(matches!(reason, DownReason::ClosedByPeer { .. }));
    assert!(link.is_closed());
    assert!(link.send(&data(id.name(), 2, b"late")).await.is_err());
}

#[tokio::test]
async fn a_dropped_receiver_discards_what_arrives_and_the_link_still_reports_down() {
    let router = FakeRouter::start(Mode::Accept);
    let id = client();
    let (link, rx) = EndpointLink::connect(&id, &EndpointConfig::new(router.addr()))
        .await
        .expect("attaches");
    drop(rx);
    // More than the receiver's queue holds: nothing waits for an owner.
    for chunk in 0..10u64 {
        let batch = (0..100)
            .map(|i| data(id.name(), chunk * 100 + i, &[7; 512]).to_bytes())
            .collect();
        link.send_batch(batch).await.expect("sent");
    }
    link.send(&data(id.name(), 5000, b"close"))
        .await
        .expect("sent");
    let reason = tokio::time::timeout(WAIT, link.closed())
        .await
        .expect("the link reports down without an owner reading");
    // The router's CONNECTION_CLOSE travels in a UDP datagram like any
    // other: on a loaded machine the socket's receive buffer, full of the
    // thousand echoes, may drop it, and the router's endpoint then answers
    // the link's next packet with a stateless reset. Either way the link
    // is down and says the peer ended it.
    assert!(
        matches!(
            reason,
            DownReason::ClosedByPeer { .. } | DownReason::Lost(quinn::ConnectionError::Reset)
        ),
        "{reason:?}"
    );
}

#[tokio::test]
async fn closed_resolves_while_the_owner_is_not_reading() {
    let router = FakeRouter::start(Mode::Accept);
    let id = client();
    let (link, mut rx) = EndpointLink::connect(&id, &EndpointConfig::new(router.addr()))
        .await
        .expect("attaches");
    for seq in 1..=50 {
        link.send(&data(id.name(), seq, b"echo me"))
            .await
            .expect("sent");
    }
    link.send(&data(id.name(), 51, b"close"))
        .await
        .expect("sent");
    let reason = tokio::time::timeout(WAIT, link.closed())
        .await
        .expect("down without the receiver being read");
    assert!(
        matches!(reason, DownReason::ClosedByPeer { .. }),
        "{reason:?}"
    );
    // What arrived before is still there, then the same Down.
    let mut echoed = 0;
    loop {
        match next_event(&mut rx).await {
            EndpointEvent::Pdu { .. } => echoed += 1,
            EndpointEvent::Down(down) => {
                assert_eq!(down.to_string(), reason.to_string());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(echoed <= 50);
    assert!(rx.recv().await.is_none());
}

/// Reads the QUIC packets that arrive on `socket`, unanswered, until they
/// show `attempts` connection attempts: each attempt's Initial packets carry
/// a destination connection id of its own. Returns the socket.
async fn after_attempts(socket: UdpSocket, attempts: usize) -> UdpSocket {
    socket.set_nonblocking(true).expect("non-blocking");
    let socket = tokio::net::UdpSocket::from_std(socket).expect("in a runtime");
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; 65_536];
    while seen.len() < attempts {
        let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
            .await
            .expect("the client keeps trying")
            .expect("receives");
        // A long header (0x80) of type Initial (0x00 in bits 0x30):
        // flags, version (4 bytes), id length, destination connection id.
        let packet = &buf[..n];
        if n > 6 && packet[0] & 0xb0 == 0x80 {
            let len = usize::from(packet[5]);
            if let Some(dcid) = packet.get(6..6 + len) {
                seen.insert(dcid.to_vec());
            }
        }
    }
    socket.into_std().expect("back to a std socket")
}

#[tokio::test]
async fn retry_waits_for_the_router_and_pins_its_name() {
    // The router's port is held from the start but nobody answers on it, so
    // the first attempts time out; the router starts on that very socket
    // once the client has given up on one attempt and begun the next.
    let socket = udp_socket();
    let addr = socket.local_addr().expect("bound");
    let id = client();
    let mut config = EndpointConfig::new(addr);
    config.transport.handshake_timeout = Duration::from_millis(200);
    config.attach_timeout = Duration::from_millis(500);
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(200));
    let attempt = tokio::spawn(async move {
        let result = connect_with_retry(&id, &mut config, &mut backoff).await;
        (result, config, backoff)
    });
    let socket = after_attempts(socket, 2).await;
    let router = FakeRouter::start_on(socket, Mode::Accept, Kind::Router);
    let (result, config, backoff) = tokio::time::timeout(WAIT, attempt)
        .await
        .expect("in time")
        .expect("the task ran");
    let (link, _rx) = result.expect("attached once the router is up");
    assert_eq!(link.router_name(), router.name());
    assert_eq!(config.router, Some(router.name()));
    assert_eq!(backoff.attempts(), 0);
}

#[tokio::test]
async fn retry_gives_up_on_a_rejection() {
    let router = FakeRouter::start(Mode::Reject);
    let mut config = EndpointConfig::new(router.addr());
    let mut backoff = Backoff::default();
    let err = connect_with_retry(&client(), &mut config, &mut backoff)
        .await
        .expect_err("rejections are final");
    assert!(matches!(err, EndpointError::Rejected { .. }));
    assert_eq!(config.router, None);
}

#[tokio::test]
async fn retry_gives_up_after_max_attempts() {
    // Held and never read: nobody answers there.
    let silent = udp_socket();
    let mut config = EndpointConfig::new(silent.local_addr().expect("bound"));
    config.transport.handshake_timeout = Duration::from_millis(100);
    let mut backoff =
        Backoff::new(Duration::from_millis(10), Duration::from_millis(20)).with_max_attempts(2);
    let err = connect_with_retry(&client(), &mut config, &mut backoff)
        .await
        .expect_err("nobody listens");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(backoff.attempts(), 2);
}
