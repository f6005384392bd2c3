//! Attacks by attached endpoints: flooding a receiver that stopped reading
//! (3, 8), Advertise PDUs with forged AdCerts (4), and PDUs to names
//! nobody has (9, and the dial storm of 10).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_link::endpoint::EndpointLink;
use gdp_proto::Encode;
use gdp_proto::control::{AdvertiseEntry, ControlMessage, MAX_ADVERTISE_ENTRIES};
use gdp_proto::pdu::{Pdu, PduHeader, PduType};

use super::{Sent, Stop, attach_attacker, drain_incoming, random_name, total_len};

/// Payload of each PDU of attack 3.
pub const FLOOD_PAYLOAD: usize = 1024;
/// Payload of each PDU of attack 8.
pub const SMALL_PAYLOAD: usize = 16;
/// PDUs per batch of a flood.
const FLOOD_BATCH: usize = 64;

/// Sends `batch` on `link` unless `stop` comes first; adds it to `sent`
/// when it was queued. False when the link is gone or the stop came.
async fn send_counted(
    link: &EndpointLink,
    batch: Vec<Bytes>,
    sent: &mut Sent,
    stop: &Stop,
) -> bool {
    let (n, bytes) = (batch.len() as u64, total_len(&batch));
    match stop.run(link.send_batch(batch)).await {
        Some(Ok(())) => {
            sent.pdus += n;
            sent.bytes += bytes;
            true
        }
        Some(Err(_)) | None => false,
    }
}

/// A Data PDU from `src` to `dst` with `len` bytes of payload.
fn data(src: Name, dst: Name, seq: u64, len: usize) -> Bytes {
    Pdu::new(
        PduHeader::new(PduType::Data, dst, src, seq),
        Bytes::from(vec![0x5a; len]),
    )
    .expect("a payload within the PDU limit")
    .to_bytes()
}

/// Attacks 3 and 8: one attacker endpoint attaches and never reads what
/// the router sends it (its QUIC receive window fills, and then the
/// router's send queue toward it); a second attacker endpoint sends it
/// Data PDUs of `payload` bytes as fast as its link takes them, until
/// `stop`. Use [`FLOOD_PAYLOAD`] for attack 3 and [`SMALL_PAYLOAD`] for 8.
///
/// Returns what the flooder sent, `links` 2 and `links_closed` for those
/// the router closed (the stalled receiver is the one it should close),
/// and `refused` for attaches refused.
pub async fn stalled_receiver(addr: SocketAddr, router: Name, payload: usize, stop: Stop) -> Sent {
    let mut sent = Sent::default();
    let Ok((_, stalled, stalled_rx)) = attach_attacker(addr, router, Kind::Client, "stalled").await
    else {
        sent.refused += 1;
        return sent;
    };
    let Ok((flooder_id, flooder, flooder_rx)) =
        attach_attacker(addr, router, Kind::Client, "flooder").await
    else {
        sent.refused += 1;
        return sent;
    };
    sent.links = 2;
    let counter = drain_incoming(flooder_rx);
    let (src, dst) = (flooder_id.name(), stalled.name());
    let mut seq = 0u64;
    while !stop.is_over() && !flooder.is_closed() {
        let batch = (0..FLOOD_BATCH)
            .map(|_| {
                seq += 1;
                data(src, dst, seq, payload)
            })
            .collect();
        if !send_counted(&flooder, batch, &mut sent, &stop).await {
            break;
        }
    }
    sent.links_closed = u64::from(stalled.is_closed()) + u64::from(flooder.is_closed());
    // Held until here, unread.
    drop(stalled_rx);
    stalled.close("done");
    flooder.close("done");
    sent.received = counter.await.unwrap_or(0);
    sent
}

/// Attack 4: a fresh key whose metadata says server attaches and sends,
/// until `stop` or until the router closes its link, Advertise PDUs of
/// [`MAX_ADVERTISE_ENTRIES`] entries each: fresh capsule metadata with an
/// AdCert signed by a key that is not the capsule's owner (so each entry
/// fails its signature check).
///
/// Returns the Advertise PDUs and bytes sent, and `links_closed` 1 when the
/// router closed the link.
pub async fn advertise_flood(addr: SocketAddr, router: Name, stop: Stop) -> Sent {
    let mut sent = Sent::default();
    let Ok((id, link, rx)) = attach_attacker(addr, router, Kind::Server, "advertiser").await else {
        sent.refused += 1;
        return sent;
    };
    sent.links = 1;
    let counter = drain_incoming(rx);
    let forger = SecretKey::generate();
    let server = id.name();
    while !stop.is_over() && !link.is_closed() {
        let now = Timestamp::now();
        let validity = Validity::new(
            now.saturating_sub(Duration::from_secs(60)),
            now.saturating_add(Duration::from_secs(86_400)),
        );
        let entries: Vec<AdvertiseEntry> = (0..MAX_ADVERTISE_ENTRIES)
            .map(|i| {
                let owner = SecretKey::generate().public();
                let capsule_md =
                    Metadata::capsule(owner, vec![owner], format!("forged {i}"), now, vec![])
                        .expect("a short label and one writer");
                let adcert = AdCert::issue(&forger, capsule_md.name(), server, validity);
                AdvertiseEntry { capsule_md, adcert }
            })
            .collect();
        let pdus = ControlMessage::advertise_batches(entries)
            .iter()
            .map(|msg| {
                msg.to_pdu(Name::ZERO, server, link.next_seq())
                    .expect("an advertise batch is within limits")
                    .to_bytes()
            })
            .collect();
        if !send_counted(&link, pdus, &mut sent, &stop).await {
            break;
        }
    }
    sent.links_closed = u64::from(link.is_closed());
    link.close("done");
    sent.received = counter.await.unwrap_or(0);
    sent
}

/// Attack 9: an attached endpoint sends small Data PDUs to `names` random
/// names (each a name nobody has, so each is a FIB miss and a directory
/// lookup), cycling through them, until `stop`.
pub async fn lookup_storm(addr: SocketAddr, router: Name, names: usize, stop: Stop) -> Sent {
    let names: Vec<Name> = (0..names.max(1)).map(|_| random_name()).collect();
    send_to_names(addr, router, names, stop).await
}

/// An attached endpoint sends small Data PDUs to each of `names` in turn,
/// cycling, until `stop` (the lookup storm of attack 9, and the traffic
/// that makes a router look up the throwaway names of the dial storm,
/// attack 10). `received` counts what came back (NAKs).
pub async fn send_to_names(addr: SocketAddr, router: Name, names: Vec<Name>, stop: Stop) -> Sent {
    let mut sent = Sent::default();
    let Ok((id, link, rx)) = attach_attacker(addr, router, Kind::Client, "storm").await else {
        sent.refused += 1;
        return sent;
    };
    sent.links = 1;
    let counter = drain_incoming(rx);
    let src = id.name();
    let mut seq = 0u64;
    let mut next = names.iter().cycle();
    while !stop.is_over() && !link.is_closed() {
        let batch = (0..FLOOD_BATCH)
            .filter_map(|_| {
                seq += 1;
                next.next().map(|dst| data(src, *dst, seq, SMALL_PAYLOAD))
            })
            .collect();
        if !send_counted(&link, batch, &mut sent, &stop).await {
            break;
        }
        // Other tasks (the pair) share the runtime.
        tokio::task::yield_now().await;
    }
    sent.links_closed = u64::from(link.is_closed());
    link.close("done");
    sent.received = counter.await.unwrap_or(0);
    sent
}
