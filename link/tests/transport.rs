//! The QUIC link layer on real sockets over loopback.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::tls::{self, PeerPolicy};
use gdp_certs::{Identity, Kind, Name};
use gdp_link::{
    CloseCode, DialError, Direction, DownReason, Link, LinkEvent, LinkId, SendError, Transport,
    TransportConfig, UnreliableOutcome,
};
use gdp_proto::Encode;
use gdp_proto::frame::FrameError;
use gdp_proto::pdu::{Flags, HEADER_LEN, MAX_PAYLOAD_LEN, Pdu, PduHeader, PduType, peek_header};
use gdp_testkit::eventually;
use proptest::prelude::*;
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);

fn config() -> TransportConfig {
    TransportConfig::new("127.0.0.1:0".parse().expect("address"))
}

fn identity(kind: Kind, label: &str) -> Identity {
    Identity::generate(kind, label).expect("valid identity")
}

fn bind(kind: Kind, label: &str, config: TransportConfig) -> (Transport, Receiver<LinkEvent>) {
    Transport::bind(identity(kind, label), config).expect("binds")
}

/// An encoded Data PDU with sequence number `seq` and a payload of `len`
/// bytes derived from `seq`.
fn pdu(seq: u64, len: usize) -> Bytes {
    let header = PduHeader::new(
        PduType::Data,
        Name::from_bytes([1; 32]),
        Name::from_bytes([2; 32]),
        seq,
    );
    let payload: Vec<u8> = (0..len).map(|i| (seq as usize + i) as u8).collect();
    Pdu::new(header, Bytes::from(payload))
        .expect("within limits")
        .to_bytes()
}

fn seq_of(pdu: &[u8]) -> u64 {
    peek_header(pdu).expect("valid header").seq
}

async fn next_event(rx: &mut Receiver<LinkEvent>) -> LinkEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("the channel is open")
}

/// The next event that is not a batch of PDUs.
async fn next_non_pdu_event(rx: &mut Receiver<LinkEvent>) -> LinkEvent {
    loop {
        match next_event(rx).await {
            LinkEvent::Pdus { .. } => continue,
            other => return other,
        }
    }
}

/// No event arrives within `wait`.
async fn assert_quiet(rx: &mut Receiver<LinkEvent>, wait: Duration) {
    if let Ok(Some(event)) = tokio::time::timeout(wait, rx.recv()).await {
        panic!("unexpected event {event:?}");
    }
}

async fn expect_up(rx: &mut Receiver<LinkEvent>) -> (LinkId, Link) {
    match next_event(rx).await {
        LinkEvent::Up { link_id, link, .. } => (link_id, link),
        other => panic!("expected Up, got {other:?}"),
    }
}

/// Receives PDU batches on `rx` until `count` PDUs have arrived.
async fn collect(rx: &mut Receiver<LinkEvent>, count: usize, reliable: bool) -> Vec<Bytes> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match next_event(rx).await {
            LinkEvent::Pdus {
                pdus, reliable: r, ..
            } => {
                assert_eq!(r, reliable);
                got.extend(pdus);
            }
            other => panic!("expected Pdus, got {other:?}"),
        }
    }
    got
}

struct Pair {
    a: Transport,
    a_events: Receiver<LinkEvent>,
    b: Transport,
    b_events: Receiver<LinkEvent>,
    /// A's handle of the link, A -> B.
    a_link: Link,
    /// B's id of the same link.
    b_link: LinkId,
}

async fn pair_with(a_config: TransportConfig, b_config: TransportConfig) -> Pair {
    let (a, mut a_events) = bind(Kind::Router, "a", a_config);
    let (b, mut b_events) = bind(Kind::Router, "b", b_config);
    let a_link = a.dial(b.local_addr(), b.name()).await.expect("dials");
    let (a_id, _) = expect_up(&mut a_events).await;
    assert_eq!(a_id, a_link.id());
    let (b_link, _) = expect_up(&mut b_events).await;
    Pair {
        a,
        a_events,
        b,
        b_events,
        a_link,
        b_link,
    }
}

async fn pair() -> Pair {
    pair_with(config(), config()).await
}

#[tokio::test]
async fn two_transports_link_up_and_learn_each_others_names() {
    let (a, mut a_events) = bind(Kind::Router, "a", config());
    let (b, mut b_events) = bind(Kind::Router, "b", config());
    assert!(a.socket_buffers().recv > 0);

    let link = a.dial(b.local_addr(), b.name()).await.expect("dials");
    assert_eq!(link.peer().name(), b.name());
    assert_eq!(link.direction(), Direction::Outbound);
    assert_eq!(link.remote_addr(), b.local_addr());

    match next_event(&mut a_events).await {
        LinkEvent::Up {
            link_id,
            peer,
            remote_addr,
            direction,
            ..
        } => {
            assert_eq!(link_id, link.id());
            assert_eq!(peer.name(), b.name());
            assert_eq!(peer.metadata().kind(), Kind::Router);
            assert_eq!(remote_addr, b.local_addr());
            assert_eq!(direction, Direction::Outbound);
        }
        other => panic!("expected Up, got {other:?}"),
    }
    match next_event(&mut b_events).await {
        LinkEvent::Up {
            link_id,
            peer,
            remote_addr,
            direction,
            link,
        } => {
            assert_eq!(peer.name(), a.name());
            assert_eq!(remote_addr, a.local_addr());
            assert_eq!(direction, Direction::Inbound);
            assert_eq!(link.id(), link_id);
            assert_eq!(b.link(link_id).map(|l| l.peer().name()), Some(a.name()));
        }
        other => panic!("expected Up, got {other:?}"),
    }
    assert_eq!(a.link_count(), 1);
    assert_eq!(b.link_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_reliable_pdus_arrive_complete_and_in_order() {
    let mut p = pair().await;
    const N: u64 = 10_000;
    let link = p.a_link.clone();
    let sender = tokio::spawn(async move {
        let mut seq = 0;
        while seq < N {
            // Mix single sends and batches, and sizes from empty to 3 KiB.
            if seq % 100 == 0 && seq + 10 <= N {
                let batch = (seq..seq + 10)
                    .map(|s| pdu(s, (s % 3000) as usize))
                    .collect();
                link.send_batch(batch).await.expect("sends");
                seq += 10;
            } else {
                link.send(pdu(seq, (seq * 7 % 3000) as usize))
                    .await
                    .expect("sends");
                seq += 1;
            }
        }
    });
    let got = collect(&mut p.b_events, N as usize, true).await;
    sender.await.expect("sender finishes");
    assert_eq!(got.len(), N as usize);
    let mut seq = 0;
    while seq < N {
        if seq % 100 == 0 && seq + 10 <= N {
            for s in seq..seq + 10 {
                assert_eq!(got[s as usize], pdu(s, (s % 3000) as usize), "pdu {s}");
            }
            seq += 10;
        } else {
            assert_eq!(got[seq as usize], pdu(seq, (seq * 7 % 3000) as usize));
            seq += 1;
        }
    }
    let sent = p.a_link.stats();
    assert_eq!(sent.sent_pdus, N);
    assert_eq!(sent.queued_pdus, 0);
    assert_eq!(sent.queued_bytes, 0);
    let received = p.b.stats(p.b_link).expect("link is up");
    assert_eq!(received.received_pdus, N);
    assert_eq!(received.received_bytes, sent.sent_bytes);
    assert_eq!(received.malformed, 0);
    assert!(received.rtt > Duration::ZERO);
}

/// Sends `pdus` from A to B, checks that B gets exactly them, and returns
/// the bytes A wrote to the stream.
async fn exchange(p: &mut Pair, pdus: Vec<Bytes>) -> u64 {
    let before = p.a_link.stats().sent_stream_bytes;
    for chunk in pdus.chunks(100) {
        p.a_link.send_batch(chunk.to_vec()).await.expect("sends");
    }
    let got = collect(&mut p.b_events, pdus.len(), true).await;
    assert!(got == pdus, "the pdus arrive as sent");
    p.a_link.stats().sent_stream_bytes - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_carry_compact_frames_when_both_sides_offer_them() {
    let mut p = pair().await;
    assert!(p.a_link.stats().compact_headers);
    assert!(p.b.stats(p.b_link).expect("up").compact_headers);
    // One pair of names: the first PDU binds a label (2 bytes more), each
    // later one costs 17 bytes of header instead of 80.
    let same: Vec<Bytes> = (0..1000).map(|s| pdu(s, 64)).collect();
    assert_eq!(exchange(&mut p, same).await, 146 + 999 * 81);
    // Other names, sizes from empty to past the zero-copy threshold: all
    // arrive as they were sent.
    let mixed: Vec<Bytes> = (0..300u64)
        .map(|s| {
            let header = PduHeader::new(
                PduType::Data,
                Name::from_bytes([(s % 7) as u8; 32]),
                Name::from_bytes([(s % 5) as u8; 32]),
                s,
            );
            let payload = vec![s as u8; (s as usize * 97) % 40_000];
            Pdu::new(header, Bytes::from(payload))
                .expect("within limits")
                .to_bytes()
        })
        .collect();
    let full: u64 = mixed.iter().map(|p| p.len() as u64).sum();
    assert!(exchange(&mut p, mixed).await < full);

    // Either side without them: gdp/1, whole PDUs.
    for (a, b) in [(false, true), (true, false)] {
        let (mut a_config, mut b_config) = (config(), config());
        a_config.compact_headers = a;
        b_config.compact_headers = b;
        let mut p = pair_with(a_config, b_config).await;
        assert!(!p.a_link.stats().compact_headers);
        assert!(!p.b.stats(p.b_link).expect("up").compact_headers);
        let same: Vec<Bytes> = (0..100).map(|s| pdu(s, 64)).collect();
        assert_eq!(exchange(&mut p, same).await, 100 * 144);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_owner_gets_everything_once_it_reads_again() {
    // While the owner does not read, QUIC buffers up to the stream window
    // and may merge what it buffered into chunks of several MiB; the reader
    // must cut those to its decoder's bound.
    let mut slow = config();
    slow.event_queue = 1;
    let mut p = pair_with(config(), slow).await;
    const N: u64 = 40_000;
    /// Bytes written but not yet read that show QUIC is buffering (the
    /// stream window is 8 MiB; the PDUs are about 9 MiB in all).
    const HELD: u64 = 4 << 20;
    let link = p.a_link.clone();
    let sender = tokio::spawn(async move {
        for seq in 0..N {
            link.send(pdu(seq, (seq % 300) as usize))
                .await
                .expect("sends");
        }
    });
    eventually(
        WAIT,
        "QUIC holds a few MiB the owner has not read",
        || async {
            let read = p.b.stats(p.b_link).map_or(0, |s| s.received_bytes);
            let held = p.a_link.stats().sent_bytes.saturating_sub(read);
            held >= HELD || sender.is_finished()
        },
    )
    .await;
    let got = collect(&mut p.b_events, N as usize, true).await;
    sender.await.expect("sender finishes");
    for (seq, d) in got.iter().enumerate() {
        assert_eq!(*d, pdu(seq as u64, seq % 300));
    }
    assert_eq!(p.b.stats(p.b_link).expect("up").malformed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_link_waits_behind_its_share_of_the_owners_queue() {
    // B's owner does not read while A floods: A's reader hands over
    // `events_per_link` batches and then waits, so C's PDU, sent after
    // the flood, is at most that many batches behind.
    let owner = config();
    assert_eq!(owner.events_per_link, 2);
    let mut p = pair_with(config(), owner).await;
    let (c, _c_events) = bind(Kind::Router, "c", config());
    let c_link = c.dial(p.b.local_addr(), p.b.name()).await.expect("dials");
    let c_id = match next_non_pdu_event(&mut p.b_events).await {
        LinkEvent::Up { link_id, .. } => link_id,
        other => panic!("expected C's link up, got {other:?}"),
    };
    const N: u64 = 20_000;
    let link = p.a_link.clone();
    let flood = tokio::spawn(async move {
        for seq in 0..N {
            link.send(pdu(seq, 200)).await.expect("sends");
        }
    });
    // A's reader has handed over its share and stopped reading.
    eventually(WAIT, "A's reader waits for the owner", || async {
        let before = p.b.stats(p.b_link).map_or(0, |s| s.received_pdus);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = p.b.stats(p.b_link).map_or(0, |s| s.received_pdus);
        after > 0 && after == before
    })
    .await;
    c_link.send(pdu(7, 10)).await.expect("sends");
    eventually(WAIT, "C's PDU is read", || async {
        p.b.stats(c_id).is_some_and(|s| s.received_pdus == 1)
    })
    .await;
    let mut flood_batches_first = 0;
    let mut got = Vec::new();
    loop {
        match next_event(&mut p.b_events).await {
            LinkEvent::Pdus { link_id, pdus, .. } if link_id == c_id => {
                assert_eq!(pdus, vec![pdu(7, 10)]);
                break;
            }
            LinkEvent::Pdus { link_id, pdus, .. } if link_id == p.b_link => {
                flood_batches_first += 1;
                got.extend(pdus);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        flood_batches_first <= 2,
        "C's PDU waited behind {flood_batches_first} of A's batches"
    );
    // Nothing of the flood is lost for the wait.
    let rest = collect(&mut p.b_events, N as usize - got.len(), true).await;
    got.extend(rest);
    flood.await.expect("the flood is sent");
    for (seq, d) in got.iter().enumerate() {
        assert_eq!(*d, pdu(seq as u64, 200));
    }
}

#[tokio::test]
async fn unreliable_pdus_arrive_as_datagrams() {
    let mut p = pair().await;
    let max = p.a_link.max_datagram_size().expect("datagrams are on");
    assert!(max >= 1000, "max datagram size {max}");
    const N: u64 = 500;
    // The owner reads while they are sent (a link's datagrams waiting for
    // a busy owner beyond `datagram_events_per_link` batches are dropped).
    let link = p.a_link.clone();
    let sender = tokio::spawn(async move {
        for seq in 0..N {
            let outcome = link.send_unreliable(pdu(seq, 100)).expect("open");
            assert_eq!(outcome, UnreliableOutcome::Datagram);
            if seq % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    // Datagrams may be lost, so take what arrives within a deadline.
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while (got.len() as u64) < N {
        match tokio::time::timeout_at(deadline, p.b_events.recv()).await {
            Ok(Some(LinkEvent::Pdus { pdus, reliable, .. })) => {
                assert!(!reliable);
                got.extend(pdus);
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    assert!(got.len() as u64 >= N * 9 / 10, "only {} arrived", got.len());
    for d in &got {
        let seq = seq_of(d);
        assert_eq!(*d, pdu(seq, 100));
    }
    sender.await.expect("sent");
    let stats = p.a_link.stats();
    assert_eq!(stats.sent_datagrams, N);
    assert_eq!(stats.dropped_unreliable_out, 0);
    let b = p.b.stats(p.b_link).expect("up");
    assert_eq!(
        b.received_datagrams,
        got.len() as u64 + b.dropped_unreliable_in
    );
}

#[tokio::test]
async fn a_full_unreliable_queue_drops_and_counts() {
    let mut small = config();
    small.datagram_queue = 8;
    let p = pair_with(small, config()).await;
    // On this single-threaded runtime the link's writer cannot run during
    // the loop, so exactly the queue's capacity is accepted.
    let mut queued = 0;
    let mut dropped = 0;
    for seq in 0..1000 {
        match p.a_link.send_unreliable(pdu(seq, 50)).expect("open") {
            UnreliableOutcome::Datagram => queued += 1,
            UnreliableOutcome::Dropped => dropped += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(queued, 8);
    assert_eq!(dropped, 992);
    let stats = p.a_link.stats();
    assert_eq!(stats.dropped_unreliable_out, 992);
    assert_eq!(stats.queued_datagrams, 8);
}

#[tokio::test]
async fn an_unreliable_pdu_too_big_for_a_datagram_goes_on_the_stream() {
    let mut p = pair().await;
    let big = pdu(7, 5000);
    assert!(big.len() > p.a_link.max_datagram_size().expect("datagrams on"));
    assert_eq!(
        p.a_link.send_unreliable(big.clone()),
        Ok(UnreliableOutcome::Stream)
    );
    assert_eq!(collect(&mut p.b_events, 1, true).await, vec![big]);
    assert_eq!(p.a_link.stats().datagram_fallbacks, 1);
}

#[tokio::test]
async fn a_full_reliable_queue_pushes_back() {
    let mut small = config();
    small.link_queue_bytes = 1000;
    let mut p = pair_with(small, config()).await;
    let one = pdu(0, 100); // 180 bytes
    let mut accepted = 0u64;
    loop {
        match p.a_link.try_send(pdu(accepted, 100)) {
            Ok(()) => accepted += 1,
            Err(SendError::Full(id)) => {
                assert_eq!(id, p.a_link.id());
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(accepted, 1000 / one.len() as u64);
    assert_eq!(p.a_link.stats().queued_bytes, accepted * one.len() as u64);
    // The awaiting send waits for the writer to make room, then goes.
    tokio::time::timeout(WAIT, p.a_link.send(pdu(accepted, 100)))
        .await
        .expect("room in time")
        .expect("sends");
    let got = collect(&mut p.b_events, accepted as usize + 1, true).await;
    let seqs: Vec<u64> = got.iter().map(|d| seq_of(d)).collect();
    assert_eq!(seqs, (0..=accepted).collect::<Vec<_>>());
}

#[tokio::test]
async fn bytes_that_are_not_one_pdu_are_refused_before_queueing() {
    let p = pair().await;
    let two = Bytes::from([pdu(1, 3), pdu(2, 3)].concat());
    assert!(matches!(
        p.a_link.try_send(two),
        Err(SendError::InvalidPdu(FrameError::Malformed(_)))
    ));
    assert!(matches!(
        p.a_link.send_unreliable(Bytes::from_static(b"short")),
        Err(SendError::InvalidPdu(_))
    ));
    assert_eq!(p.a_link.stats().queued_bytes, 0);
}

#[tokio::test]
async fn dialing_a_peer_that_proves_another_name_fails_cleanly() {
    let (a, mut a_events) = bind(Kind::Router, "a", config());
    let (b, mut b_events) = bind(Kind::Router, "b", config());
    let stranger = identity(Kind::Router, "c").name();

    let err = a
        .dial(b.local_addr(), stranger)
        .await
        .expect_err("b is not c");
    assert!(matches!(err, DialError::Handshake { .. }), "{err}");
    assert!(err.is_tls_refusal(), "{err}");
    assert!(err.to_string().contains(&stranger.to_string()), "{err}");
    assert_eq!(a.link_count(), 0);
    assert_quiet(&mut a_events, Duration::from_millis(200)).await;
    assert_quiet(&mut b_events, Duration::from_millis(50)).await;
    assert_eq!(b.link_count(), 0);

    // Both transports carry on.
    let link = a.dial(b.local_addr(), b.name()).await.expect("dials");
    assert_eq!(link.peer().name(), b.name());
    expect_up(&mut b_events).await;
}

#[tokio::test]
async fn a_listener_policy_refuses_peers_of_other_kinds() {
    let mut routers_only = config();
    routers_only.accept_policy = PeerPolicy::Kinds(vec![Kind::Router]);
    let (b, mut b_events) = bind(Kind::Router, "b", routers_only);
    let (client, mut client_events) = bind(Kind::Client, "c", config());
    match client.dial(b.local_addr(), b.name()).await {
        Err(err) => assert!(err.is_tls_refusal(), "{err}"),
        // TLS 1.3 completes the dialer's side before the listener checks the
        // dialer's certificate, so the refusal may arrive as a close.
        Ok(link) => {
            expect_up(&mut client_events).await;
            match next_event(&mut client_events).await {
                LinkEvent::Down { link_id, reason } => {
                    assert_eq!(link_id, link.id());
                    assert!(reason.is_tls_refusal(), "{reason}");
                }
                other => panic!("expected Down, got {other:?}"),
            }
        }
    }
    assert_quiet(&mut b_events, Duration::from_millis(200)).await;
    assert_eq!(b.link_count(), 0);
}

/// A bare quinn connection to `to` with a GDP client identity, to play a
/// misbehaving peer.
async fn raw_peer(to: &Transport) -> (quinn::Endpoint, quinn::Connection) {
    raw_peer_to(to.local_addr(), to.name()).await
}

async fn raw_peer_to(addr: SocketAddr, name: Name) -> (quinn::Endpoint, quinn::Connection) {
    let me = identity(Kind::Client, "raw");
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("binds");
    let config = tls::quinn_client_config(&me, PeerPolicy::Expect(name)).expect("client config");
    let conn = endpoint
        .connect_with(config, addr, tls::SERVER_NAME)
        .expect("connects")
        .await
        .expect("handshakes");
    (endpoint, conn)
}

async fn closed_by(conn: &quinn::Connection) -> quinn::ApplicationClose {
    match tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("closed in time")
    {
        quinn::ConnectionError::ApplicationClosed(close) => close,
        other => panic!("expected an application close, got {other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_stream_frame_is_reported_and_the_owner_can_close_the_link() {
    let mut p = pair().await;
    let (_endpoint, raw) = raw_peer(&p.b).await;
    let (raw_id, _) = expect_up(&mut p.b_events).await;

    // One good PDU, then a header announcing a payload over the limit.
    let mut send = raw.open_uni().await.expect("opens");
    let mut bad = PduHeader::new(PduType::Data, Name::ZERO, Name::ZERO, 2).to_array();
    bad[76..80].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes());
    let mut wire = pdu(1, 10).to_vec();
    wire.extend_from_slice(&bad);
    send.write_all(&wire).await.expect("writes");

    assert_eq!(collect(&mut p.b_events, 1, true).await, vec![pdu(1, 10)]);
    match next_event(&mut p.b_events).await {
        LinkEvent::Malformed {
            link_id,
            error,
            reliable,
            total,
        } => {
            assert_eq!(link_id, raw_id);
            assert!(matches!(error, FrameError::Oversized { .. }), "{error}");
            assert!(reliable);
            assert_eq!(total, 1);
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert_eq!(p.b.stats(raw_id).expect("still up").malformed, 1);

    // The owner closes the offending link; the other one carries on.
    assert!(p.b.close(raw_id, "malformed stream"));
    let close = closed_by(&raw).await;
    assert_eq!(close.error_code.into_inner(), CloseCode::Normal.code());
    assert_eq!(&close.reason[..], b"malformed stream");
    match next_event(&mut p.b_events).await {
        LinkEvent::Down { link_id, reason } => {
            assert_eq!(link_id, raw_id);
            assert_eq!(
                reason,
                DownReason::Closed {
                    code: CloseCode::Normal,
                    reason: "malformed stream".into()
                }
            );
        }
        other => panic!("expected Down, got {other:?}"),
    }
    assert!(!p.b.close(raw_id, "again"));
    p.a_link.send(pdu(3, 30)).await.expect("other link is up");
    assert_eq!(collect(&mut p.b_events, 1, true).await, vec![pdu(3, 30)]);
    assert_eq!(p.b.link_count(), 1);
}

#[tokio::test]
async fn malformed_datagrams_are_dropped_counted_and_a_persistent_sender_is_cut_off() {
    let mut strict = config();
    strict.malformed_limit = 3;
    let (b, mut b_events) = bind(Kind::Router, "b", strict);
    let (_endpoint, raw) = raw_peer(&b).await;
    let (raw_id, _) = expect_up(&mut b_events).await;

    // A good datagram, then one with trailing bytes: the link stays up.
    raw.send_datagram(pdu(1, 5)).expect("sends");
    assert_eq!(collect(&mut b_events, 1, false).await, vec![pdu(1, 5)]);
    let mut trailing = pdu(2, 5).to_vec();
    trailing.push(0);
    raw.send_datagram(Bytes::from(trailing)).expect("sends");
    match next_event(&mut b_events).await {
        LinkEvent::Malformed {
            error,
            reliable,
            total,
            ..
        } => {
            assert!(matches!(error, FrameError::Malformed(_)), "{error}");
            assert!(!reliable);
            assert_eq!(total, 1);
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert!(b.link(raw_id).is_some());

    // Two more reach the limit: the transport closes the link.
    raw.send_datagram(Bytes::from_static(&[0xff; HEADER_LEN]))
        .expect("sends");
    raw.send_datagram(Bytes::from_static(b"tiny"))
        .expect("sends");
    let close = closed_by(&raw).await;
    assert_eq!(close.error_code.into_inner(), CloseCode::Malformed.code());
    match next_non_pdu_event(&mut b_events).await {
        LinkEvent::Malformed { total: 2, .. } => {}
        other => panic!("expected the second Malformed, got {other:?}"),
    }
    match next_non_pdu_event(&mut b_events).await {
        LinkEvent::Malformed { total: 3, .. } => {}
        other => panic!("expected the third Malformed, got {other:?}"),
    }
    match next_non_pdu_event(&mut b_events).await {
        LinkEvent::Down {
            link_id,
            reason: DownReason::Closed { code, .. },
        } => {
            assert_eq!(link_id, raw_id);
            assert_eq!(code, CloseCode::Malformed);
        }
        other => panic!("expected Down, got {other:?}"),
    }
}

#[tokio::test]
async fn closing_one_side_reports_down_on_the_other() {
    let mut p = pair().await;
    p.a_link.close("bye");
    match next_event(&mut p.b_events).await {
        LinkEvent::Down { link_id, reason } => {
            assert_eq!(link_id, p.b_link);
            assert_eq!(
                reason,
                DownReason::ClosedByPeer {
                    code: CloseCode::Normal,
                    reason: "bye".into()
                }
            );
        }
        other => panic!("expected Down, got {other:?}"),
    }
    match next_event(&mut p.a_events).await {
        LinkEvent::Down { link_id, reason } => {
            assert_eq!(link_id, p.a_link.id());
            assert!(matches!(
                reason,
                DownReason::Closed {
                    code: CloseCode::Normal,
                    ..
                }
            ));
        }
        other => panic!("expected Down, got {other:?}"),
    }
    assert!(p.a_link.is_closed());
    assert_eq!(
        p.a_link.send(pdu(1, 1)).await,
        Err(SendError::Closed(p.a_link.id()))
    );
    assert_eq!(p.a.link_count(), 0);
    assert_eq!(p.b.link_count(), 0);
}

#[tokio::test]
async fn an_idle_peer_that_vanishes_times_out() {
    let mut quick = config();
    quick.keep_alive = Duration::from_millis(100);
    quick.idle_timeout = Duration::from_millis(500);
    let (b, mut b_events) = bind(Kind::Router, "b", quick);
    // The raw peer runs on a runtime of its own, which is then dropped
    // without closing anything: the peer falls silent.
    let (addr, name) = (b.local_addr(), b.name());
    tokio::task::spawn_blocking(move || {
        let rt = runtime();
        rt.block_on(async {
            let (endpoint, conn) = raw_peer_to(addr, name).await;
            std::mem::forget(conn);
            std::mem::forget(endpoint);
        });
    })
    .await
    .expect("the raw peer connects");
    expect_up(&mut b_events).await;
    match next_event(&mut b_events).await {
        LinkEvent::Down { reason, .. } => assert_eq!(reason, DownReason::TimedOut),
        other => panic!("expected Down, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_flushes_queued_pdus_then_closes_every_link() {
    let mut p = pair().await;
    const N: u64 = 2000;
    for seq in 0..N {
        p.a_link.send(pdu(seq, 500)).await.expect("sends");
    }
    let report = p.a.shutdown("maintenance").await;
    assert_eq!(report.links, 1);
    assert_eq!(report.flushed, 1);
    assert!(report.idle);

    let got = collect(&mut p.b_events, N as usize, true).await;
    assert_eq!(got.len() as u64, N);
    assert_eq!(seq_of(&got[N as usize - 1]), N - 1);
    match next_event(&mut p.b_events).await {
        LinkEvent::Down { reason, .. } => assert_eq!(
            reason,
            DownReason::ClosedByPeer {
                code: CloseCode::Shutdown,
                reason: "maintenance".into()
            }
        ),
        other => panic!("expected Down, got {other:?}"),
    }
    match next_event(&mut p.a_events).await {
        LinkEvent::Down {
            reason: DownReason::Closed { code, .. },
            ..
        } => assert_eq!(code, CloseCode::Shutdown),
        other => panic!("expected Down, got {other:?}"),
    }
    // After the last Down the channel ends, and nothing new is accepted.
    assert!(
        tokio::time::timeout(WAIT, p.a_events.recv())
            .await
            .expect("ends in time")
            .is_none()
    );
    assert!(matches!(
        p.a.dial(p.b.local_addr(), p.b.name()).await,
        Err(DialError::ShuttingDown)
    ));
    assert!(matches!(
        p.a_link.try_send(pdu(0, 1)),
        Err(SendError::Closed(_))
    ));
}

#[tokio::test]
async fn unreliable_flagged_pdus_keep_their_flag_on_the_stream() {
    let mut p = pair().await;
    let header =
        PduHeader::new(PduType::Data, Name::ZERO, Name::ZERO, 9).with_flags(Flags::UNRELIABLE);
    let big = Pdu::new(header, Bytes::from(vec![1u8; 4000]))
        .expect("within limits")
        .to_bytes();
    assert_eq!(
        p.a_link.send_unreliable(big.clone()),
        Ok(UnreliableOutcome::Stream)
    );
    let got = collect(&mut p.b_events, 1, true).await;
    assert!(
        peek_header(&got[0])
            .expect("valid")
            .flags
            .contains(Flags::UNRELIABLE)
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Whatever the sizes and grouping of the PDUs sent, the peer receives
    /// the same bytes in the same order.
    #[test]
    fn reliable_pdus_round_trip_whatever_the_batching(
        sizes in proptest::collection::vec(0usize..20_000, 1..60),
        groups in proptest::collection::vec(1usize..8, 1..20),
    ) {
        let rt = runtime();
        let (sent, got) = rt.block_on(async {
            let mut p = pair().await;
            let sent: Vec<Bytes> =
                sizes.iter().enumerate().map(|(i, &n)| pdu(i as u64, n)).collect();
            let mut rest = &sent[..];
            let mut g = groups.iter().cycle();
            while !rest.is_empty() {
                let take = (*g.next().unwrap_or(&1)).min(rest.len());
                let (now, later) = rest.split_at(take);
                if take == 1 {
                    p.a_link.send(now[0].clone()).await.expect("sends");
                } else {
                    p.a_link.send_batch(now.to_vec()).await.expect("sends");
                }
                rest = later;
            }
            let got = collect(&mut p.b_events, sent.len(), true).await;
            (sent, got)
        });
        prop_assert_eq!(got, sent);
    }
}
