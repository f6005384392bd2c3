//! The transport's per-address link limit and the memory its send queues
//! account, over real QUIC links on loopback.

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Name};
use gdp_link::{LinkEvent, SHARED_BLOCK, Transport, TransportConfig};
use gdp_proto::Encode;
use gdp_proto::pdu::{Pdu, PduHeader, PduType};
use gdp_testkit::eventually;
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);

fn bind(kind: Kind, label: &str, config: TransportConfig) -> (Transport, Receiver<LinkEvent>) {
    let identity = Identity::generate(kind, label).expect("valid identity");
    Transport::bind(identity, config).expect("binds")
}

fn pdu(seq: u64, len: usize) -> Bytes {
    let header = PduHeader::new(
        PduType::Data,
        Name::from_bytes([1; 32]),
        Name::from_bytes([2; 32]),
        seq,
    );
    Pdu::new(header, Bytes::from(vec![seq as u8; len]))
        .expect("within limits")
        .to_bytes()
}

/// Reads and drops every event, so no link task waits on the channel.
fn discard(mut rx: Receiver<LinkEvent>) {
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
}

#[tokio::test]
async fn inbound_links_from_one_address_are_bounded() {
    let mut config = TransportConfig::new("127.0.0.1:0".parse().expect("address"));
    config.max_links_per_address = 3;
    let (server, server_rx) = bind(Kind::Router, "server", config);
    discard(server_rx);
    let (client, client_rx) = bind(
        Kind::Client,
        "client",
        TransportConfig::new("127.0.0.1:0".parse().expect("address")),
    );
    discard(client_rx);
    let mut kept = Vec::new();
    for _ in 0..5 {
        // A refused dial either fails or is closed by the server at once.
        if let Ok(link) = client.dial(server.local_addr(), server.name()).await {
            kept.push(link);
        }
    }
    eventually(WAIT, "two links refused for their address", || async {
        server.transport_stats().links_refused_per_address == 2
    })
    .await;
    eventually(WAIT, "three links from 127.0.0.1 up", || async {
        server.link_count() == 3
    })
    .await;
    let stats = server.transport_stats();
    assert_eq!((stats.inbound_links, stats.inbound_addresses), (3, 1));

    // Another address is not held back by the first one's links.
    let (other, other_rx) = bind(
        Kind::Client,
        "other",
        TransportConfig::new("127.0.0.2:0".parse().expect("address")),
    );
    discard(other_rx);
    other
        .dial(server.local_addr(), server.name())
        .await
        .expect("another address links");
    eventually(WAIT, "the fourth link is up", || async {
        server.link_count() == 4
    })
    .await;

    // A link that goes frees its address's slot.
    kept[0].close("done");
    eventually(WAIT, "a slot was freed", || async {
        server.transport_stats().inbound_links == 3
    })
    .await;
    client
        .dial(server.local_addr(), server.name())
        .await
        .expect("room again");
    eventually(WAIT, "the slot is used again", || async {
        server.transport_stats().inbound_links == 4
    })
    .await;
    assert_eq!(server.transport_stats().links_refused_per_address, 2);
}

#[tokio::test]
async fn a_stalled_queue_counts_the_memory_its_pdus_hold() {
    // The receiver reads nothing: one event at a time and small windows,
    // so the sender's queue stops draining.
    let mut recv_config = TransportConfig::new("127.0.0.1:0".parse().expect("address"));
    recv_config.event_queue = 1;
    recv_config.stream_receive_window = 16 * 1024;
    recv_config.connection_receive_window = 32 * 1024;
    let (receiver, _receiver_rx) = bind(Kind::Router, "receiver", recv_config);
    let (sender, sender_rx) = bind(
        Kind::Client,
        "sender",
        TransportConfig::new("127.0.0.1:0".parse().expect("address")),
    );
    discard(sender_rx);
    let link = sender
        .dial(receiver.local_addr(), receiver.name())
        .await
        .expect("links");
    // Fill the receiver's windows and the writer's write until the queue
    // stops draining.
    let filler = pdu(0, 8 * 1024);
    eventually(WAIT, "the queue stopped draining", || async {
        let _ = link.try_send(filler.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        link.stats().queued_pdus > 8
    })
    .await;
    let before = link.stats().queued_bytes;

    // A reader's 64 KiB block holding 200 small PDUs, each queued alone:
    // each is copied out and counted by its own length, and the queue keeps
    // no reference to the block.
    let one = pdu(7, 100);
    let block = Bytes::from(one.repeat(200));
    for i in 0..200 {
        let slice = block.slice(i * one.len()..(i + 1) * one.len());
        link.try_send(slice).expect("room");
    }
    assert_eq!(
        link.stats().queued_bytes - before,
        200 * one.len() as u64,
        "small pdus are counted by their length"
    );
    assert!(
        block.is_unique(),
        "the queued pdus keep the reader's block alive"
    );

    // A large slice is queued as it is and counted as the block it shares.
    let big = pdu(9, 20 * 1024);
    let big_block = Bytes::from([big.to_vec(), vec![0; 40 * 1024]].concat());
    let before = link.stats().queued_bytes;
    link.try_send(big_block.slice(..big.len())).expect("room");
    assert_eq!(link.stats().queued_bytes - before, SHARED_BLOCK as u64);
    assert!(!big_block.is_unique());
}
