//! Attacks on a capsule server through a router: creates beyond the quota
//! (5), appends by a non-writer (6), more subscriptions than a peer may
//! hold (7) and heartbeats signed with a small-order nonce point (12); and
//! [`CapsuleClient`], the request/response client they (and the tests'
//! well-behaved users) speak through.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::{EdwardsPoint, Scalar};
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Identity, Kind, Metadata, Name, PublicKey, SecretKey, Signature, Timestamp};
use gdp_link::endpoint::{EndpointError, EndpointEvent, EndpointLink, EndpointReceiver};
use gdp_proto::Encode;
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::chain::ChainState;
use gdp_proto::proof::Heartbeat;
use gdp_proto::record::Record;
use sha2::{Digest, Sha512};

use super::{ATTACKER_IP, Answers, Stop, attacker_config, identity};
use crate::Writer;

/// Longest a batch of requests waits for its answers.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// What came back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The server's response.
    Response(Box<CapsuleResponse>),
    /// The router could not deliver the request.
    Nak,
}

/// A client attached to a router that sends capsule requests and matches
/// the responses to them by request id. Subscription events are counted,
/// not kept.
pub struct CapsuleClient {
    /// Its identity.
    pub identity: Identity,
    /// Its link.
    pub link: EndpointLink,
    rx: EndpointReceiver,
    answers: HashMap<u64, Reply>,
    /// Subscription events received.
    pub events: u64,
}

impl CapsuleClient {
    /// A fresh client identity labelled `label`, attached from `bind` (an
    /// address of this host) to the router `router` at `addr`.
    ///
    /// # Errors
    ///
    /// When the attach fails.
    pub async fn attach(
        addr: SocketAddr,
        router: Name,
        bind: IpAddr,
        label: &str,
    ) -> Result<CapsuleClient, EndpointError> {
        let identity = identity(Kind::Client, label);
        let mut config = attacker_config(addr, router);
        config.transport.bind = SocketAddr::new(bind, 0);
        let (link, rx) = EndpointLink::connect(&identity, &config).await?;
        Ok(CapsuleClient {
            identity,
            link,
            rx,
            answers: HashMap::new(),
            events: 0,
        })
    }

    /// Its name.
    pub fn name(&self) -> Name {
        self.identity.name()
    }

    /// Sends `request` to `dst` (a capsule, or a server for `Create`);
    /// returns its id, or `None` when the link is gone.
    pub async fn send(&self, dst: Name, request: &CapsuleRequest) -> Option<(u64, u64)> {
        let id = self.link.next_seq();
        let pdu = request
            .to_pdu(dst, self.name(), id)
            .expect("a request within the PDU limits");
        let len = pdu.to_bytes().len() as u64;
        self.link.send(&pdu).await.ok()?;
        Some((id, len))
    }

    fn take(&mut self, event: EndpointEvent) {
        match event {
            EndpointEvent::Pdu { pdu, .. } => {
                let Ok(body) = CapsuleResponse::from_pdu(&pdu) else {
                    return;
                };
                if matches!(body, CapsuleResponse::Event { .. }) {
                    self.events += 1;
                } else {
                    self.answers
                        .insert(pdu.header.seq, Reply::Response(Box::new(body)));
                }
            }
            EndpointEvent::NakNoRoute(nak) => {
                self.answers.insert(nak.seq, Reply::Nak);
            }
            _ => {}
        }
    }

    /// Sends every request, then waits up to `wait` for their answers;
    /// the answers in the order of the requests (`None`: no answer in
    /// time, or the link went down). Also returns the bytes sent.
    pub async fn call_all(
        &mut self,
        requests: &[(Name, CapsuleRequest)],
        wait: Duration,
    ) -> (Vec<Option<Reply>>, u64) {
        let mut ids = Vec::with_capacity(requests.len());
        let mut bytes = 0;
        for (dst, request) in requests {
            let sent = self.send(*dst, request).await;
            bytes += sent.map_or(0, |(_, len)| len);
            ids.push(sent.map(|(id, _)| id));
        }
        let deadline = tokio::time::Instant::now() + wait;
        while ids
            .iter()
            .flatten()
            .any(|id| !self.answers.contains_key(id))
        {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(event)) => self.take(event),
                Ok(None) | Err(_) => break,
            }
        }
        let replies = ids
            .iter()
            .map(|id| id.and_then(|id| self.answers.remove(&id)))
            .collect();
        (replies, bytes)
    }

    /// One request and its answer within `wait`.
    pub async fn call(
        &mut self,
        dst: Name,
        request: CapsuleRequest,
        wait: Duration,
    ) -> Option<Reply> {
        let (mut replies, _) = self.call_all(&[(dst, request)], wait).await;
        replies.pop().flatten()
    }

    /// Sends `request` until the router delivers it (no NAK: the server
    /// has attached, or advertised the capsule) and returns the response.
    ///
    /// # Panics
    ///
    /// When no response came within `within`.
    pub async fn call_when_routed(
        &mut self,
        dst: Name,
        request: CapsuleRequest,
        within: Duration,
    ) -> CapsuleResponse {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(Reply::Response(r)) = self.call(dst, request.clone(), ANSWER_WAIT).await {
                return *r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no response from {dst} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Adds `replies` to `answers`.
fn tally(answers: &mut Answers, replies: Vec<Option<Reply>>) {
    for reply in replies {
        match reply {
            Some(Reply::Response(r)) => match *r {
                CapsuleResponse::Error { code, .. } => {
                    answers.refused += 1;
                    if !answers.codes.contains(&code) {
                        answers.codes.push(code);
                    }
                }
                _ => answers.accepted += 1,
            },
            Some(Reply::Nak) | None => answers.unanswered += 1,
        }
    }
}

/// Sends `requests` from `client` and adds the outcome to `answers`.
async fn round(
    client: &mut CapsuleClient,
    requests: &[(Name, CapsuleRequest)],
    answers: &mut Answers,
    stop: &Stop,
) {
    let wait = ANSWER_WAIT.min(stop.remaining().max(Duration::from_millis(200)));
    let (replies, bytes) = client.call_all(requests, wait).await;
    answers.sent.pdus += requests.len() as u64;
    answers.sent.bytes += bytes;
    tally(answers, replies);
}

/// Attaches an attacker client from [`ATTACKER_IP`].
///
/// # Panics
///
/// When the router refuses it: these attacks are on the server, not on
/// attaching.
async fn attacker(addr: SocketAddr, router: Name, label: &str) -> CapsuleClient {
    CapsuleClient::attach(addr, router, ATTACKER_IP, label)
        .await
        .unwrap_or_else(|e| panic!("the {label} client attaches: {e}"))
}

/// Creates per round of [`create_flood`].
const CREATE_BATCH: usize = 16;

/// Attack 5: one client creates capsules on `server`, each with a fresh
/// owner key, in rounds of 16 requests, until `stop`.
pub async fn create_flood(addr: SocketAddr, router: Name, server: Name, stop: Stop) -> Answers {
    let mut client = attacker(addr, router, "creator").await;
    let mut answers = Answers::default();
    answers.sent.links = 1;
    while !stop.is_over() {
        let requests: Vec<(Name, CapsuleRequest)> = (0..CREATE_BATCH)
            .map(|_| (server, Writer::new(server, "flood").forgetful().create()))
            .collect();
        round(&mut client, &requests, &mut answers, &stop).await;
    }
    answers
}

/// Appends per round of [`foreign_appends`].
const APPEND_BATCH: usize = 16;

/// Attack 6: a client that is not a writer of `capsule` appends to it,
/// until `stop`: record 1 (built on an empty chain) closed by a heartbeat
/// signed with its own key, and the same closed by a heartbeat that claims
/// the capsule's writer `writer` with a signature that is not one.
pub async fn foreign_appends(
    addr: SocketAddr,
    router: Name,
    capsule: Name,
    writer: PublicKey,
    stop: Stop,
) -> Answers {
    let mut client = attacker(addr, router, "non-writer").await;
    let key = SecretKey::generate();
    let mut answers = Answers::default();
    answers.sent.links = 1;
    let mut n = 0u64;
    while !stop.is_over() {
        let requests: Vec<(Name, CapsuleRequest)> = (0..APPEND_BATCH)
            .map(|_| {
                n += 1;
                let record = first_record(capsule, n);
                let heartbeat = if n.is_multiple_of(2) {
                    Heartbeat::sign(&key, &record)
                } else {
                    Heartbeat {
                        capsule,
                        seqno: record.seqno(),
                        record_hash: record.hash(),
                        writer,
                        signature: Signature([0x42; 64]),
                    }
                };
                let append = CapsuleRequest::Append {
                    records: vec![record],
                    heartbeat,
                };
                (capsule, append)
            })
            .collect();
        round(&mut client, &requests, &mut answers, &stop).await;
    }
    answers
}

/// Record 1 of `capsule` with a payload naming `n`.
fn first_record(capsule: Name, n: u64) -> Record {
    ChainState::new(capsule)
        .next_record(Bytes::from(format!("forged {n}")), Timestamp::now())
        .expect("a small payload")
}

/// Attack 7: one client subscribes to every capsule of `capsules` (more
/// than a peer may hold), then holds its subscriptions until `stop`.
pub async fn subscription_hoard(
    addr: SocketAddr,
    router: Name,
    capsules: &[Name],
    stop: Stop,
) -> Answers {
    let mut client = attacker(addr, router, "hoarder").await;
    let mut answers = Answers::default();
    answers.sent.links = 1;
    let requests: Vec<(Name, CapsuleRequest)> = capsules
        .iter()
        .map(|c| (*c, CapsuleRequest::Subscribe { from: 1 }))
        .collect();
    round(&mut client, &requests, &mut answers, &stop).await;
    stop.wait().await;
    answers.sent.received = client.events;
    client.link.close("done");
    answers
}

/// Appends per round of [`small_order_heartbeats`].
const EDGE_BATCH: usize = 8;

/// Attack 12: creates a capsule on `server` whose writer key `A = [a]B`
/// was made by hand, then appends record 1 to it until `stop`, each closed
/// by a heartbeat whose nonce point `R` is of small order and whose
/// scalar is `s = k·a`. Such a signature passes the cofactored equation
/// that batch verification checks (`[8][s]B = [8]R + [8][k]A`, since
/// `[8]R` is the identity) and is refused by strict verification, which
/// rejects a small-order `R`: a server must refuse it (the edge case
/// `SmallOrderR` of `gdp-certs`' signature tests).
///
/// # Panics
///
/// When the server does not answer the create with `Created`.
pub async fn small_order_heartbeats(
    addr: SocketAddr,
    router: Name,
    server: Name,
    stop: Stop,
) -> Answers {
    let mut client = attacker(addr, router, "edge").await;
    let owner = SecretKey::generate();
    let a = random_scalar();
    let a_bytes = EdwardsPoint::mul_base(&a).compress().to_bytes();
    let writer = PublicKey::from_bytes(&a_bytes).expect("a point of the prime-order subgroup");
    let now = Timestamp::now();
    let md = Metadata::capsule(owner.public(), vec![writer], "edge", now, vec![])
        .expect("a short label and one writer");
    let validity = Validity::new(
        now.saturating_sub(Duration::from_secs(60)),
        now.saturating_add(Duration::from_secs(86_400)),
    );
    let adcert = AdCert::issue(&owner, md.name(), server, validity);
    let capsule = md.name();
    let create = CapsuleRequest::Create {
        metadata: md,
        adcert,
    };
    let created = client
        .call_when_routed(server, create, Duration::from_secs(10))
        .await;
    assert_eq!(created, CapsuleResponse::Created, "the edge capsule");

    let mut answers = Answers::default();
    answers.sent.links = 1;
    let mut n = 0u64;
    while !stop.is_over() {
        let requests: Vec<(Name, CapsuleRequest)> = (0..EDGE_BATCH)
            .map(|_| {
                n += 1;
                let record = first_record(capsule, n);
                let torsion = EIGHT_TORSION[usize::try_from(n % 7 + 1).expect("below 8")];
                let heartbeat = small_order_r(capsule, &record, writer, &a_bytes, a, torsion);
                let append = CapsuleRequest::Append {
                    records: vec![record],
                    heartbeat,
                };
                (capsule, append)
            })
            .collect();
        round(&mut client, &requests, &mut answers, &stop).await;
    }
    answers
}

/// A uniformly random scalar.
fn random_scalar() -> Scalar {
    let seed: [u8; 32] = rand::random();
    Scalar::from_bytes_mod_order_wide(&Sha512::digest(seed).into())
}

/// A heartbeat over `record` by the key `[a]B` (encoded `a_bytes`) with
/// nonce point `torsion` (of small order) and `s = k·a`.
fn small_order_r(
    capsule: Name,
    record: &Record,
    writer: PublicKey,
    a_bytes: &[u8; 32],
    a: Scalar,
    torsion: EdwardsPoint,
) -> Heartbeat {
    let (seqno, record_hash) = (record.seqno(), record.hash());
    // The signed message: the context tag, then capsule || seqno ||
    // record hash (`gdp_proto::proof`).
    let mut message = b"gdp-v1/heartbeat\0".to_vec();
    message.extend_from_slice(capsule.as_bytes());
    message.extend_from_slice(&seqno.to_be_bytes());
    message.extend_from_slice(record_hash.as_bytes());
    let r_bytes = torsion.compress().to_bytes();
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(a_bytes);
    h.update(&message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r_bytes);
    signature[32..].copy_from_slice((k * a).as_bytes());
    Heartbeat {
        capsule,
        seqno,
        record_hash,
        writer,
        signature: Signature(signature),
    }
}
