//! Message flows through the public API: an endpoint attaches to a router
//! over a framed stream, a server advertises a capsule, and a client appends
//! and reads back over datagrams, every message checked on arrival.

use bytes::Bytes;
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::chain::ChainState;
use gdp_proto::control::{AdvertiseEntry, AttachChallenge, AttachProof, ControlMessage};
use gdp_proto::frame::{FrameDecoder, FrameEncoder, FrameError, decode_datagram, encode_datagram};
use gdp_proto::pdu::{DEFAULT_TTL, Flags, HEADER_LEN, MAX_PAYLOAD_LEN, Pdu, PduType};
use gdp_proto::proof::{Heartbeat, Proof};

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

fn validity() -> Validity {
    Validity::new(
        Timestamp::from_secs(1_799_990_000),
        Timestamp::from_secs(1_800_010_000),
    )
}

fn identity(seed: u8, kind: Kind) -> Identity {
    Identity::from_key(
        SecretKey::from_seed(&[seed; 32]),
        kind,
        "it",
        Timestamp::from_secs(1_700_000_000),
    )
    .expect("metadata within limits")
}

/// Sends `pdus` through an encoder and a decoder fed one byte at a time.
fn over_stream(pdus: &[Pdu]) -> Vec<Pdu> {
    let mut enc = FrameEncoder::new();
    for p in pdus {
        enc.push(p).expect("within limits");
    }
    let wire = enc.take();
    let mut dec = FrameDecoder::new();
    let mut out = Vec::new();
    for i in 0..wire.len() {
        dec.push(wire.slice(i..i + 1)).expect("room");
        while let Some(p) = dec.next_pdu().expect("valid stream") {
            out.push(p);
        }
    }
    dec.finish().expect("ends on a pdu boundary");
    out
}

#[test]
fn attach_and_advertise_over_a_stream() {
    let router = identity(1, Kind::Router);
    let server = identity(2, Kind::Server);
    let owner = SecretKey::from_seed(&[3; 32]);
    let capsule = Metadata::capsule(owner.public(), vec![owner.public()], "c", NOW, vec![])
        .expect("within limits");

    // Router -> server: challenge.
    let challenge = AttachChallenge {
        router: router.name(),
        nonce: [42; 32],
    };
    let pdu = ControlMessage::AttachChallenge(challenge.clone())
        .to_pdu(Name::ZERO, router.name(), 1)
        .expect("small");
    let got = over_stream(&[pdu]);
    let Ok(ControlMessage::AttachChallenge(received)) = ControlMessage::from_pdu(&got[0]) else {
        panic!("a challenge arrives");
    };

    // Server -> router: proof, then an advertisement, batched in one write.
    let proof = ControlMessage::AttachProof(AttachProof::create(&server, &received, validity()));
    let adcert = AdCert::issue(&owner, capsule.name(), server.name(), validity());
    let advertise = ControlMessage::Advertise {
        entries: vec![AdvertiseEntry {
            capsule_md: capsule.clone(),
            adcert,
        }],
    };
    let pdus = [
        proof
            .to_pdu(router.name(), server.name(), 2)
            .expect("small"),
        advertise
            .to_pdu(router.name(), server.name(), 3)
            .expect("small"),
    ];
    let got = over_stream(&pdus);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header.ptype, PduType::Advertise);

    let Ok(ControlMessage::AttachProof(p)) = ControlMessage::from_pdu(&got[0]) else {
        panic!("a proof arrives");
    };
    let attached = p.verify(&challenge, NOW).expect("valid proof");
    assert_eq!(attached.endpoint(), server.name());
    assert_eq!(got[0].header.src, attached.endpoint());

    let Ok(ControlMessage::Advertise { entries }) = ControlMessage::from_pdu(&got[1]) else {
        panic!("an advertisement arrives");
    };
    let checked = entries[0]
        .adcert
        .verify(&entries[0].capsule_md, NOW)
        .expect("valid adcert");
    assert_eq!(checked.server(), attached.endpoint());
}

#[test]
fn append_then_read_over_datagrams() {
    let client = identity(4, Kind::Client);
    let writer = SecretKey::from_seed(&[5; 32]);
    let md = Metadata::capsule(writer.public(), vec![writer.public()], "log", NOW, vec![])
        .expect("within limits");
    let mut chain = ChainState::new(md.name());
    let records: Vec<_> = (0..3u8)
        .map(|i| {
            chain
                .next_record(Bytes::from(vec![i; 10]), NOW)
                .expect("within limits")
        })
        .collect();
    let heartbeat = Heartbeat::sign(&writer, &records[2]);

    let append = CapsuleRequest::Append {
        records: records.clone(),
        heartbeat: heartbeat.clone(),
    }
    .to_pdu(md.name(), client.name(), 77)
    .expect("within limits");
    let at_server = decode_datagram(encode_datagram(&append).expect("fits")).expect("valid");
    let CapsuleRequest::Append {
        records: got,
        heartbeat: hb,
    } = CapsuleRequest::from_pdu(&at_server).expect("a request")
    else {
        panic!("an append arrives");
    };
    hb.verify(&md).expect("writer's heartbeat");

    // The server answers a range read with the records and a proof.
    let proof = Proof::build(hb, 3, |s| {
        got.get(usize::try_from(s).ok()? - 1).map(|r| r.header())
    })
    .expect("headers at hand");
    let reply = CapsuleResponse::Records {
        records: got,
        proof,
    }
    .reply_to(&at_server.header)
    .expect("within limits");
    assert!(reply.header.flags.contains(Flags::RESPONSE));
    assert_eq!(reply.header.seq, 77);
    assert_eq!(reply.header.dst, client.name());

    let at_client = decode_datagram(encode_datagram(&reply).expect("fits")).expect("valid");
    let CapsuleResponse::Records { records: r, proof } =
        CapsuleResponse::from_pdu(&at_client).expect("a response")
    else {
        panic!("records arrive");
    };
    let v = proof.verify_range(&md, &r).expect("valid proof");
    assert_eq!(v.seqno(), 3);
    assert_eq!(r, records);
}

#[test]
fn router_forwards_original_bytes() {
    let pdu = CapsuleRequest::Latest
        .to_pdu(Name::from_bytes([9; 32]), Name::from_bytes([8; 32]), 5)
        .expect("small");
    let wire = pdu.to_bytes();
    let mut enc = FrameEncoder::new();
    assert_eq!(enc.push_forward(&wire), Ok(DEFAULT_TTL - 1));
    let hop = enc.take();
    assert_eq!(&hop[..3], &wire[..3]);
    assert_eq!(&hop[4..], &wire[4..]);
    let out = Pdu::decode(hop).expect("still valid");
    assert_eq!(out.header.ttl, DEFAULT_TTL - 1);
    assert_eq!(CapsuleRequest::from_pdu(&out), Ok(CapsuleRequest::Latest));
}

#[test]
fn oversized_announcement_is_refused_before_the_body() {
    let pdu = CapsuleRequest::Latest
        .to_pdu(Name::ZERO, Name::ZERO, 1)
        .expect("small");
    let mut head = pdu.to_bytes()[..HEADER_LEN].to_vec();
    head[76..80].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut dec = FrameDecoder::new();
    dec.extend_from_slice(&head).expect("room");
    assert!(matches!(
        dec.next_pdu(),
        Err(FrameError::Oversized { len, .. }) if len == u32::MAX as usize + HEADER_LEN
    ));
    assert!(MAX_PAYLOAD_LEN < u32::MAX as usize);
}
