//! Network fixtures of the driver tests: a minimal router (the attach
//! handshake, advertisements checked against AdCerts, forwarding by name,
//! NakNoRoute on a miss), a test client on `EndpointLink`, and a capsule
//! writer that keeps what it appended.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink, EndpointReceiver};
use gdp_link::{Link, LinkEvent, LinkId, Transport, TransportConfig};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::chain::{Appender, ChainState};
use gdp_proto::control::{AttachChallenge, ControlMessage, NakReason};
use gdp_proto::pdu::{Pdu, PduType};
use gdp_proto::proof::Heartbeat;
use gdp_proto::record::{Record, RecordHash};
use gdp_proto::{Decode, Encode};
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(20);

/// What the mini router did, for assertions.
#[derive(Debug, Default)]
pub struct RouterLog {
    /// Endpoints attached, in order.
    pub attaches: Vec<Name>,
    /// Capsules advertised (valid AdCerts), in order.
    pub advertised: Vec<Name>,
    /// PDUs dropped for a source the link did not prove.
    pub bad_source: u64,
    /// NAKs sent.
    pub naks: u64,
}

/// Every link, and the endpoint attached on it (once it is).
type Links = Arc<Mutex<HashMap<LinkId, (Link, Option<Attached>)>>>;

#[derive(Clone)]
struct Attached {
    name: Name,
    kind: Kind,
    advertised: HashSet<Name>,
}

/// A router reduced to what endpoints need.
pub struct MiniRouter {
    transport: Transport,
    log: Arc<Mutex<RouterLog>>,
    links: Links,
}

impl MiniRouter {
    pub fn start() -> MiniRouter {
        let identity = Identity::generate(Kind::Router, "mini-router").expect("identity");
        let name = identity.name();
        let (transport, events) = Transport::bind(
            identity,
            TransportConfig::new("127.0.0.1:0".parse().expect("address")),
        )
        .expect("binds");
        let log = Arc::new(Mutex::new(RouterLog::default()));
        let links = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(route(name, events, log.clone(), links.clone()));
        MiniRouter {
            transport,
            log,
            links,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    pub fn name(&self) -> Name {
        self.transport.name()
    }

    pub fn log<T>(&self, f: impl FnOnce(&RouterLog) -> T) -> T {
        f(&self.log.lock().expect("log lock"))
    }

    /// Closes the link of the endpoint `name`.
    pub fn drop_endpoint(&self, name: Name) -> bool {
        let links = self.links.lock().expect("links lock");
        let mut found = false;
        for (link, att) in links.values() {
            if att.as_ref().is_some_and(|a| a.name == name) {
                link.close("dropped by the test");
                found = true;
            }
        }
        found
    }
}

fn send_control(link: &Link, msg: ControlMessage, dst: Name, src: Name) {
    let pdu = msg.to_pdu(dst, src, 0).expect("small").to_bytes();
    let _ = link.try_send(pdu);
}

async fn route(
    name: Name,
    mut events: mpsc::Receiver<LinkEvent>,
    log: Arc<Mutex<RouterLog>>,
    links: Links,
) {
    let mut challenges: HashMap<LinkId, AttachChallenge> = HashMap::new();
    // Name -> link, newest attach or advertisement wins.
    let mut fib: HashMap<Name, LinkId> = HashMap::new();
    while let Some(event) = events.recv().await {
        match event {
            LinkEvent::Up { link_id, link, .. } => {
                let challenge = AttachChallenge {
                    router: name,
                    nonce: rand::random(),
                };
                send_control(
                    &link,
                    ControlMessage::AttachChallenge(challenge.clone()),
                    Name::ZERO,
                    name,
                );
                challenges.insert(link_id, challenge);
                links.lock().expect("lock").insert(link_id, (link, None));
            }
            LinkEvent::Down { link_id, .. } => {
                links.lock().expect("lock").remove(&link_id);
                challenges.remove(&link_id);
                fib.retain(|_, l| *l != link_id);
            }
            LinkEvent::Pdus { link_id, pdus, .. } => {
                for bytes in pdus {
                    let Ok(pdu) = Pdu::decode(bytes.clone()) else {
                        continue;
                    };
                    let entry = links.lock().expect("lock").get(&link_id).cloned();
                    let Some((link, att)) = entry else { continue };
                    let Some(att) = att else {
                        // Attaching: only the proof counts.
                        let Ok(ControlMessage::AttachProof(proof)) = ControlMessage::from_pdu(&pdu)
                        else {
                            continue;
                        };
                        let Some(challenge) = challenges.get(&link_id) else {
                            continue;
                        };
                        match proof.verify(challenge, Timestamp::now()) {
                            Ok(v) => {
                                let endpoint = v.endpoint();
                                fib.insert(endpoint, link_id);
                                log.lock().expect("lock").attaches.push(endpoint);
                                if let Some(e) = links.lock().expect("lock").get_mut(&link_id) {
                                    e.1 = Some(Attached {
                                        name: endpoint,
                                        kind: v.metadata().kind(),
                                        advertised: HashSet::new(),
                                    });
                                }
                                send_control(
                                    &link,
                                    ControlMessage::AttachAccepted { endpoint },
                                    endpoint,
                                    name,
                                );
                            }
                            Err(e) => send_control(
                                &link,
                                ControlMessage::rejected(e.to_string()),
                                Name::ZERO,
                                name,
                            ),
                        }
                        continue;
                    };
                    let h = pdu.header;
                    match h.ptype {
                        PduType::Control => {}
                        PduType::Advertise => {
                            let Ok(ControlMessage::Advertise { entries }) =
                                ControlMessage::from_pdu(&pdu)
                            else {
                                continue;
                            };
                            for e in entries {
                                let ok = att.kind == Kind::Server
                                    && e.adcert
                                        .verify(&e.capsule_md, Timestamp::now())
                                        .is_ok_and(|v| v.server() == att.name);
                                if !ok {
                                    continue;
                                }
                                let capsule = e.adcert.capsule();
                                fib.insert(capsule, link_id);
                                log.lock().expect("lock").advertised.push(capsule);
                                if let Some((_, Some(a))) =
                                    links.lock().expect("lock").get_mut(&link_id)
                                {
                                    a.advertised.insert(capsule);
                                }
                            }
                        }
                        _ => {
                            if h.src != att.name && !att.advertised.contains(&h.src) {
                                log.lock().expect("lock").bad_source += 1;
                                continue;
                            }
                            let next = fib
                                .get(&h.dst)
                                .and_then(|l| links.lock().expect("lock").get(l).cloned());
                            match next {
                                Some((next, _)) => {
                                    let _ = next.send(bytes).await;
                                }
                                None if matches!(h.ptype, PduType::Capsule | PduType::Data) => {
                                    log.lock().expect("lock").naks += 1;
                                    let nak = ControlMessage::NakNoRoute {
                                        dst: h.dst,
                                        reason: NakReason::NoRoute,
                                    };
                                    let pdu = nak.to_pdu(h.src, name, h.seq).expect("small");
                                    let _ = link.send(pdu.to_bytes()).await;
                                }
                                None => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// What a client received for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A response, from `src`.
    Response {
        /// Who answered.
        src: Name,
        /// The answer.
        body: Box<CapsuleResponse>,
    },
    /// The router could not deliver the request.
    Nak,
}

/// A client on an `EndpointLink` that matches responses to requests by id
/// and keeps subscription events apart.
pub struct TestClient {
    pub link: EndpointLink,
    rx: EndpointReceiver,
    answers: HashMap<u64, Answer>,
    /// Subscription events (and other responses to ids nobody waits for),
    /// in arrival order.
    pub events: VecDeque<(u64, Name, CapsuleResponse)>,
    waiting: HashSet<u64>,
}

impl TestClient {
    pub async fn connect(router: SocketAddr) -> TestClient {
        let id = Identity::generate(Kind::Client, "test-client").expect("identity");
        Self::connect_as(&id, router).await
    }

    pub async fn connect_as(id: &Identity, router: SocketAddr) -> TestClient {
        let (link, rx) = EndpointLink::connect(id, &EndpointConfig::new(router))
            .await
            .expect("the client attaches");
        TestClient {
            link,
            rx,
            answers: HashMap::new(),
            events: VecDeque::new(),
            waiting: HashSet::new(),
        }
    }

    pub fn name(&self) -> Name {
        self.link.name()
    }

    /// Sends `body` to `dst`; returns the request id.
    pub async fn send(&mut self, dst: Name, body: &CapsuleRequest) -> u64 {
        let id = self.link.next_seq();
        let pdu = body.to_pdu(dst, self.name(), id).expect("within limits");
        self.link.send(&pdu).await.expect("the link is up");
        self.waiting.insert(id);
        id
    }

    fn take(&mut self, event: EndpointEvent) {
        match event {
            EndpointEvent::Pdu { pdu, .. } => {
                let Ok(body) = CapsuleResponse::from_pdu(&pdu) else {
                    return;
                };
                let id = pdu.header.seq;
                let is_event = matches!(body, CapsuleResponse::Event { .. });
                if self.waiting.contains(&id) && !is_event {
                    self.waiting.remove(&id);
                    self.answers.insert(
                        id,
                        Answer::Response {
                            src: pdu.header.src,
                            body: Box::new(body),
                        },
                    );
                } else {
                    self.events.push_back((id, pdu.header.src, body));
                }
            }
            EndpointEvent::NakNoRoute(nak) if self.waiting.remove(&nak.seq) => {
                self.answers.insert(nak.seq, Answer::Nak);
            }
            EndpointEvent::Down(reason) => panic!("the client's link went down: {reason}"),
            _ => {}
        }
    }

    /// Receives until `id` is answered (or `wait` passes: `None`).
    pub async fn answer_within(&mut self, id: u64, wait: Duration) -> Option<Answer> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(a) = self.answers.remove(&id) {
                return Some(a);
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(event)) => self.take(event),
                Ok(None) => panic!("the client's link is gone"),
                Err(_) => {
                    self.waiting.remove(&id);
                    return None;
                }
            }
        }
    }

    pub async fn answer(&mut self, id: u64) -> Answer {
        self.answer_within(id, WAIT)
            .await
            .unwrap_or_else(|| panic!("request {id} unanswered"))
    }

    /// Sends and waits for the response; panics on a NAK.
    pub async fn call(&mut self, dst: Name, body: &CapsuleRequest) -> (Name, CapsuleResponse) {
        let id = self.send(dst, body).await;
        match self.answer(id).await {
            Answer::Response { src, body } => (src, *body),
            Answer::Nak => panic!("no route to {dst}"),
        }
    }

    /// Sends until the router has a route and the answer is not `retry`;
    /// for servers that are (re)attaching.
    pub async fn call_when_routed(
        &mut self,
        dst: Name,
        body: &CapsuleRequest,
    ) -> (Name, CapsuleResponse) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let id = self.send(dst, body).await;
            if let Some(Answer::Response { src, body }) =
                self.answer_within(id, Duration::from_secs(2)).await
            {
                return (src, *body);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{dst} never became reachable"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next subscription event (or stray response), waiting for one.
    pub async fn next_event(&mut self) -> (u64, Name, CapsuleResponse) {
        loop {
            if let Some(e) = self.events.pop_front() {
                return e;
            }
            let event = tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("an event in time")
                .expect("the link is up");
            self.take(event);
        }
    }
}

/// A capsule owned by a fresh key, hosted by `server`, and its writer.
pub struct Writer {
    pub owner: SecretKey,
    pub md: Metadata,
    pub adcert: AdCert,
    appender: Appender,
    /// Every record appended, by seqno - 1.
    pub records: Vec<Record>,
}

impl Writer {
    pub fn new(server: Name, label: &str) -> Writer {
        let owner = SecretKey::generate();
        let now = Timestamp::now();
        let md = Metadata::capsule(owner.public(), vec![owner.public()], label, now, vec![])
            .expect("valid metadata");
        let validity = Validity::new(
            now.saturating_sub(Duration::from_secs(60)),
            now.saturating_add(Duration::from_secs(86_400)),
        );
        let adcert = AdCert::issue(&owner, md.name(), server, validity);
        let appender = Appender::new(owner.clone(), &md, ChainState::new(md.name()))
            .expect("the owner writes");
        Writer {
            owner,
            md,
            adcert,
            appender,
            records: Vec::new(),
        }
    }

    pub fn capsule(&self) -> Name {
        self.md.name()
    }

    pub fn create(&self) -> CapsuleRequest {
        CapsuleRequest::Create {
            metadata: self.md.clone(),
            adcert: self.adcert.clone(),
        }
    }

    /// The next `n` records as one append closed by one heartbeat.
    pub fn append(&mut self, n: usize) -> CapsuleRequest {
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            let seqno = self.appender.state().tail_seqno() + 1;
            let payload = Bytes::from(format!("record {seqno} of {}", self.md.name().short()));
            let r = self
                .appender
                .append(payload, Timestamp::now())
                .expect("appends");
            records.push(r.clone());
            self.records.push(r);
        }
        let heartbeat: Heartbeat = self.appender.heartbeat().expect("records appended");
        CapsuleRequest::Append { records, heartbeat }
    }

    pub fn tail(&self) -> u64 {
        self.appender.state().tail_seqno()
    }

    /// Goes back to the durable `state` (from the server's proof), dropping
    /// the records appended after it.
    pub fn rewind(&mut self, state: ChainState) {
        let tail = state.tail_seqno();
        self.records.truncate(usize::try_from(tail).expect("small"));
        self.appender =
            Appender::new(self.owner.clone(), &self.md, state).expect("the owner writes");
    }

    /// The hash of record `seqno` as appended here.
    pub fn hash_of(&self, seqno: u64) -> RecordHash {
        self.records[usize::try_from(seqno - 1).expect("small")].hash()
    }
}

/// Reads `from..=to` of `capsule` with proofs, verifying each response
/// against `md`; returns the records.
pub async fn read_verified(
    client: &mut TestClient,
    md: &Metadata,
    from: u64,
    to: u64,
) -> Vec<Record> {
    let mut out = Vec::new();
    let mut next = from;
    while next <= to {
        let (_, body) = client
            .call(md.name(), &CapsuleRequest::ReadRange { from: next, to })
            .await;
        let CapsuleResponse::Records { records, proof } = body else {
            panic!("records expected, got {body:?}");
        };
        proof
            .verify_range(md, &records)
            .expect("the proof verifies against the metadata");
        assert_eq!(records.first().map(Record::seqno), Some(next), "contiguous");
        next = records.last().map_or(next, |r| r.seqno() + 1);
        out.extend(records);
    }
    out
}

/// A unique temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("gdp-capsule-net-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server identity saved in `dir`, as the server would generate it.
pub fn server_identity(dir: &std::path::Path) -> (Identity, std::path::PathBuf) {
    let id = Identity::generate(Kind::Server, "test-server").expect("identity");
    let path = dir.join("server.key");
    id.save(&path).expect("key file written");
    (id, path)
}

/// True if `body` is an error.
pub fn is_error(body: &CapsuleResponse) -> bool {
    matches!(body, CapsuleResponse::Error { .. })
}
