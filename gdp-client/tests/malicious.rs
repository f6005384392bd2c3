//! A deliberately malicious capsule server, attached to a real router,
//! answers with tampered records and proofs: every lie must surface as a
//! typed error of the client, never as data.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gdp_certs::{Identity, Kind, Metadata, SecretKey, Timestamp};
use gdp_client::{ClientError, ProofError};
use gdp_link::endpoint::{EndpointEvent, EndpointLink};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::chain::{Appender, ChainState};
use gdp_proto::proof::{Heartbeat, Proof};
use gdp_proto::record::Record;

use common::{Router, TempDir, fake_server};

const RECORDS: u64 = 16;
const WAIT: Duration = Duration::from_secs(20);

/// A genuine chain, which the fake server serves with lies mixed in.
struct Chain {
    md: Metadata,
    records: Vec<Record>,
    heartbeat: Heartbeat,
}

impl Chain {
    fn new(owner: &SecretKey) -> Chain {
        let md = Metadata::capsule(
            owner.public(),
            vec![owner.public()],
            "honest-looking",
            Timestamp::now(),
            vec![],
        )
        .expect("metadata");
        let mut w = Appender::new(owner.clone(), &md, ChainState::new(md.name())).expect("writer");
        let records = (1..=RECORDS)
            .map(|i| {
                w.append(Bytes::from(format!("true {i}")), Timestamp(i))
                    .expect("append")
            })
            .collect();
        let heartbeat = w.heartbeat().expect("records");
        Chain {
            md,
            records,
            heartbeat,
        }
    }

    fn record(&self, seqno: u64) -> Record {
        self.records[(seqno - 1) as usize].clone()
    }

    fn proof(&self, target: u64) -> Proof {
        Proof::build(self.heartbeat.clone(), target, |s| {
            self.records
                .get(usize::try_from(s).ok()? - 1)
                .map(Record::header)
        })
        .expect("headers at hand")
    }

    /// Record `seqno` with another payload (same pointers).
    fn forged(&self, seqno: u64) -> Record {
        let r = self.record(seqno);
        Record::new(
            *r.capsule(),
            r.seqno(),
            r.timestamp(),
            *r.prev(),
            r.skips().to_vec(),
            Bytes::from_static(b"forged"),
        )
        .expect("shape")
    }
}

/// What the fake server answers to each request.
fn lie(chain: &Chain, other_md: &Metadata, request: &CapsuleRequest) -> Vec<CapsuleResponse> {
    let records =
        |from: u64, to: u64| -> Vec<Record> { (from..=to).map(|s| chain.record(s)).collect() };
    match request {
        CapsuleRequest::GetMetadata => vec![CapsuleResponse::Metadata {
            metadata: other_md.clone(),
        }],
        // The honest answer, so that the client is seen to accept the truth.
        CapsuleRequest::Latest => vec![CapsuleResponse::Records {
            records: vec![chain.record(RECORDS)],
            proof: chain.proof(RECORDS),
        }],
        // A record whose payload was changed.
        CapsuleRequest::Read { seqno: 5 } => vec![CapsuleResponse::Records {
            records: vec![chain.forged(5)],
            proof: chain.proof(5),
        }],
        // A genuine record under a heartbeat signed by a key that is not a
        // writer.
        CapsuleRequest::Read { seqno: 6 } => {
            let mallory = SecretKey::from_seed(&[66; 32]);
            let mut proof = chain.proof(6);
            proof.heartbeat = Heartbeat::sign_hash(
                &mallory,
                chain.md.name(),
                chain.heartbeat.seqno,
                chain.heartbeat.record_hash,
            );
            vec![CapsuleResponse::Records {
                records: vec![chain.record(6)],
                proof,
            }]
        }
        // A genuine heartbeat whose signature was damaged.
        CapsuleRequest::Read { seqno: 7 } => {
            let mut proof = chain.proof(7);
            proof.heartbeat.signature.0[0] ^= 1;
            vec![CapsuleResponse::Records {
                records: vec![chain.record(7)],
                proof,
            }]
        }
        // Another record than the one asked for.
        CapsuleRequest::Read { seqno: 8 } => vec![CapsuleResponse::Records {
            records: vec![chain.record(9)],
            proof: chain.proof(9),
        }],
        CapsuleRequest::Read { seqno } => vec![CapsuleResponse::Records {
            records: vec![chain.record(*seqno)],
            proof: chain.proof(*seqno),
        }],
        // A range with a record left out.
        CapsuleRequest::ReadRange { from, to } => {
            let mut rs = records(*from, (*to).min(RECORDS));
            if rs.len() > 3 {
                rs.remove(2);
            }
            let last = rs.last().map_or(1, Record::seqno);
            vec![CapsuleResponse::Records {
                records: rs,
                proof: chain.proof(last),
            }]
        }
        // Three true records, then a forged one.
        CapsuleRequest::Subscribe { .. } => vec![
            CapsuleResponse::Subscribed { tail: RECORDS },
            CapsuleResponse::Event {
                records: records(1, 3),
                proof: chain.proof(3),
            },
            CapsuleResponse::Event {
                records: vec![chain.forged(4)],
                proof: chain.proof(4),
            },
        ],
        _ => vec![CapsuleResponse::Unsubscribed],
    }
}

/// Runs the fake server on `link` until the link goes down.
async fn serve(
    link: EndpointLink,
    mut incoming: gdp_link::endpoint::EndpointReceiver,
    chain: Chain,
    other_md: Metadata,
) {
    while let Some(event) = incoming.recv().await {
        let EndpointEvent::Pdu { pdu, .. } = event else {
            continue;
        };
        let Ok(request) = CapsuleRequest::from_pdu(&pdu) else {
            continue;
        };
        for response in lie(&chain, &other_md, &request) {
            let reply = response.reply_to(&pdu.header).expect("fits a pdu");
            if link.send(&reply).await.is_err() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lie_is_a_typed_error() {
    let dir = TempDir::new("malicious");
    let router = Router::start(dir.path(), "router", "127.0.0.1:0");

    let owner = SecretKey::generate();
    let chain = Chain::new(&owner);
    let other_md = Chain::new(&owner).md;
    let capsule_md = chain.md.clone();
    let name = capsule_md.name();

    // The fake server attaches like a real one and advertises the capsule
    // with a genuine AdCert: the router has no way to know it lies.
    let (_fake, link, incoming) = fake_server(&router, "mallory", &owner, &capsule_md).await;
    let server = tokio::spawn(serve(link.clone(), incoming, chain, other_md.clone()));

    let id = Identity::generate(Kind::Client, "victim").expect("identity");
    // The server-side subscription of the unicast mode, whose events this
    // server forges; the tree mode is checked at the end.
    let options = gdp_client::ClientOptions::default()
        .with_router(router.name)
        .with_request_timeout(Duration::from_secs(5))
        .with_subscribe_mode(gdp_client::SubscribeMode::Unicast);
    let client = gdp_client::Client::connect(router.addr, id, options.clone())
        .await
        .expect("client attaches");

    // Metadata that does not hash to the name.
    let err = client.open(name).await.expect_err("wrong metadata");
    assert!(
        matches!(err, ClientError::MetadataMismatch { expected, actual } if expected == name && actual == other_md.name()),
        "{err:?}"
    );

    // With the true metadata known locally, the truth verifies...
    let capsule = client.capsule(capsule_md).expect("capsule metadata");
    let latest = capsule
        .latest()
        .await
        .expect("honest answer")
        .expect("records");
    assert_eq!(latest.seqno(), RECORDS);
    assert_eq!(
        capsule.read(3).await.expect("honest read").payload(),
        &Bytes::from("true 3")
    );

    // ...and every lie is caught.
    let err = capsule.read(5).await.expect_err("forged payload");
    assert!(
        matches!(
            err,
            ClientError::Verification(
                ProofError::PathHashMismatch { .. } | ProofError::TargetMismatch { .. }
            )
        ),
        "{err:?}"
    );
    assert!(err.is_verification());
    let err = capsule
        .read(6)
        .await
        .expect_err("heartbeat by a non-writer");
    assert!(
        matches!(err, ClientError::Verification(ProofError::NotWriter { .. })),
        "{err:?}"
    );
    let err = capsule.read(7).await.expect_err("damaged signature");
    assert!(
        matches!(err, ClientError::Verification(ProofError::BadSignature)),
        "{err:?}"
    );
    let err = capsule.read(8).await.expect_err("another record");
    assert!(matches!(err, ClientError::Protocol { .. }), "{err:?}");
    let err = capsule
        .read_range(1, 10)
        .await
        .expect_err("a record left out");
    assert!(
        matches!(
            err,
            ClientError::Verification(ProofError::Gap {
                expected: 3,
                found: 4
            })
        ),
        "{err:?}"
    );

    // A subscription delivers the true records, then ends on the lie.
    let mut sub = capsule.subscribe(1);
    for want in 1..=3 {
        let r = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("true record");
        assert_eq!(r.seqno(), want);
    }
    let err = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("in time")
        .expect("an error item")
        .expect_err("forged record");
    assert!(err.is_verification(), "{err:?}");
    assert!(
        tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("in time")
            .is_none()
    );

    // A tree subscription reads its backlog by unicast: the range with a
    // record left out ends it, and nothing unverified was delivered.
    let id = Identity::generate(Kind::Client, "tree-victim").expect("identity");
    let tree_options = options.with_subscribe_mode(gdp_client::SubscribeMode::Tree);
    let tree_client = gdp_client::Client::connect(router.addr, id, tree_options)
        .await
        .expect("client attaches");
    let mut sub = tree_client
        .capsule(capsule.metadata().clone())
        .expect("capsule metadata")
        .subscribe(1);
    let err = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("in time")
        .expect("an error item")
        .expect_err("a record left out");
    assert!(err.is_verification(), "{err:?}");
    assert!(
        tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("in time")
            .is_none()
    );
    assert_eq!(sub.stats().unicast_records, 0);

    tree_client.shutdown().await;
    client.shutdown().await;
    link.close("done");
    server.abort();
}
