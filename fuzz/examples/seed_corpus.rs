//! Writes valid seed inputs for every fuzz target into `fuzz/corpus/<target>/`.
//!
//! Run with: `cargo run -p gdp-fuzz --example seed_corpus`
//!
//! Seeds are deterministic (fixed keys, nonces and times), so running this
//! again rewrites the same files. Fuzzing grows the corpus from these; the
//! test suite replays whatever is committed.

use std::path::Path;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, DomainCert, RouteRecord, RouteTarget, RtCert, Validity};
use gdp_certs::codec::Encode;
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::ChainState;
use gdp_proto::control::{AttachChallenge, AttachProof, ControlMessage, NakReason};
use gdp_proto::frame::{LabelEncoder, encode_batch};
use gdp_proto::pdu::{Pdu, PduHeader, PduType};
use gdp_proto::proof::{Heartbeat, Proof};
use gdp_proto::record::Record;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let t0 = Timestamp::from_secs(1_800_000_000);
    let validity = Validity::new(t0, Timestamp::from_secs(1_900_000_000));
    let id = |seed: u8, kind: Kind| {
        Identity::from_key(SecretKey::from_seed(&[seed; 32]), kind, "seed", t0)
    };
    let router = id(1, Kind::Router)?;
    let server = id(2, Kind::Server)?;
    let client = id(3, Kind::Client)?;
    let owner = SecretKey::from_seed(&[4; 32]);
    let capsule_md = Metadata::capsule(owner.public(), vec![owner.public()], "log", t0, vec![])?
        .with_nonce([9; 16]);
    let capsule = capsule_md.name();

    // Certificates, each prefixed by the selector byte the `certs` target reads.
    let adcert = AdCert::issue(&owner, capsule, server.name(), validity);
    let rtcert = RtCert::issue_by(&server, router.name(), validity);
    let domain = DomainCert::issue(&SecretKey::from_seed(&[5; 32]), router.name(), validity);
    let route = RouteRecord::sign(
        &router,
        capsule,
        RouteTarget::Capsule {
            capsule_md: capsule_md.clone(),
            adcert: adcert.clone(),
            server_md: server.metadata().clone(),
            rtcert: rtcert.clone(),
        },
        vec!["127.0.0.1:7070".parse()?, "[::1]:7070".parse()?],
        None,
        validity,
    )?;
    let router_route = RouteRecord::sign(
        &router,
        router.name(),
        RouteTarget::Router,
        vec![],
        Some(Name::from_bytes([8; 32])),
        validity,
    )?;
    let encrypted_md = capsule_md.clone().with_encryption(gdp_certs::Encryption {
        scheme: gdp_certs::EncryptionScheme::Epoch,
        keyring: Name::from_bytes([7; 32]),
    })?;
    let tagged = |tag: u8, b: Bytes| [&[tag][..], &b[..]].concat();
    let certs = vec![
        tagged(0, capsule_md.to_bytes()),
        tagged(0, encrypted_md.to_bytes()),
        tagged(0, router.metadata().to_bytes()),
        tagged(1, adcert.to_bytes()),
        tagged(2, rtcert.to_bytes()),
        tagged(3, route.to_bytes()),
        tagged(3, router_route.to_bytes()),
        tagged(4, domain.to_bytes()),
    ];

    // A short chain with heartbeats and a proof.
    let mut chain = ChainState::new(capsule);
    let mut records: Vec<Record> = Vec::new();
    for i in 0..9u64 {
        let payload = Bytes::from(format!("record {i}"));
        records.push(chain.next_record(payload, Timestamp(t0.0 + i))?);
    }
    let last = records.last().ok_or("chain is empty")?;
    let heartbeat = Heartbeat::sign(&owner, last);
    let proof = Proof::build(heartbeat.clone(), 1, |s| {
        records
            .get(usize::try_from(s).ok()? - 1)
            .map(Record::header)
    })?;
    let mut record_seeds: Vec<Bytes> = records.iter().take(3).map(Encode::to_bytes).collect();
    record_seeds.push(records[7].to_bytes());
    record_seeds.push(records[7].header().to_bytes());
    record_seeds.push(heartbeat.to_bytes());

    // Messages.
    let challenge = AttachChallenge {
        router: router.name(),
        nonce: [6; 32],
    };
    let control = [
        ControlMessage::AttachChallenge(challenge.clone()),
        ControlMessage::AttachProof(AttachProof::create(&client, &challenge, validity)),
        ControlMessage::NakNoRoute {
            dst: capsule,
            reason: NakReason::NoRoute,
        },
        ControlMessage::Withdraw {
            names: vec![capsule, router.name()],
        },
    ];
    let requests = [
        CapsuleRequest::Create {
            metadata: capsule_md.clone(),
            adcert: adcert.clone(),
        },
        CapsuleRequest::Append {
            records: records[..3].to_vec(),
            heartbeat: Heartbeat::sign(&owner, &records[2]),
        },
        CapsuleRequest::ReadRange { from: 2, to: 5 },
        CapsuleRequest::Latest,
    ];
    let responses = [
        CapsuleResponse::Appended { tail: 9 },
        CapsuleResponse::Records {
            records: vec![records[0].clone()],
            proof: proof.clone(),
        },
        CapsuleResponse::Error {
            code: ErrorCode::Fork,
            message: "seqno 3 already holds another record".into(),
        },
    ];

    // PDUs.
    let data = Pdu::new(
        PduHeader::new(PduType::Data, capsule, client.name(), 42),
        Bytes::from_static(b"hello"),
    )?;
    let ping = Pdu::new(
        PduHeader::new(PduType::Ping, router.name(), client.name(), 1),
        Bytes::new(),
    )?;
    let ctl = control[0].to_pdu(client.name(), router.name(), 0)?;
    let frames = encode_batch(&[data.clone(), ping.clone(), ctl.clone()])?;
    // The same, twice over, in compact frames: binds, then labels.
    let mut labelled = bytes::BytesMut::new();
    let mut labels = LabelEncoder::with_keys([1, 2]);
    for _ in 0..2 {
        labels.push_pdus(&frames, &mut labelled);
    }

    let write = |target: &str, items: Vec<Vec<u8>>| -> std::io::Result<()> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, item) in items.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), item)?;
        }
        println!("{target}: {} seeds", items.len());
        Ok(())
    };
    let v = |b: Bytes| b.to_vec();
    write(
        "pdu",
        vec![v(data.to_bytes()), v(ping.to_bytes()), v(ctl.to_bytes())],
    )?;
    write(
        "frames",
        vec![
            [&[1u8][..], &frames[..]].concat(),
            [&[7u8][..], &frames[..]].concat(),
            [&[200u8][..], &frames[..]].concat(),
        ],
    )?;
    write(
        "labels",
        vec![
            [&[1u8][..], &labelled[..]].concat(),
            [&[13u8][..], &labelled[..]].concat(),
            // Six PDUs described by (dst, src, payload length) triples.
            vec![5, 1, 2, 0, 1, 2, 64, 1, 2, 3, 3, 4, 1, 1, 2, 9, 2, 1, 200],
        ],
    )?;
    write("control", control.iter().map(|m| v(m.to_bytes())).collect())?;
    write(
        "capsule",
        requests
            .iter()
            .map(|m| v(m.to_bytes()))
            .chain(responses.iter().map(|m| v(m.to_bytes())))
            .collect(),
    )?;
    write("certs", certs)?;
    write("records", record_seeds.into_iter().map(v).collect())?;
    write("proof", vec![v(proof.to_bytes())])?;
    // Stored runs: capsule, the seqno the row is stored under, the value.
    let run = |rs: &[Record]| -> Vec<u8> {
        let last = rs.last().map_or(0, Record::seqno);
        [
            capsule.as_bytes().as_slice(),
            &last.to_be_bytes(),
            &gdp_capsule_server::store::tables::run_value(rs),
        ]
        .concat()
    };
    write(
        "store",
        vec![run(&records[..1]), run(&records[..3]), run(&records[3..])],
    )?;
    Ok(())
}
