//! Network fixtures of the driver tests: a real router in this process
//! (the `gdp_router` driver over QUIC on loopback, with a memory
//! directory), and a test client on `EndpointLink`.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gdp_certs::{Identity, Kind, Metadata, Name};
use gdp_link::Transport;
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink, EndpointReceiver};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::record::Record;
use gdp_router::config::RouterSettings;
use gdp_router::core::{LinkRole, RouterCore, Stats};
use gdp_router::directory::MemoryDirectory;
use gdp_router::driver::{self, Running};

pub const WAIT: Duration = Duration::from_secs(20);

/// A `gdp-router` in this process: its forwarding core and driver over a
/// QUIC transport on a free loopback port, with an in-process directory.
/// The tests read what it did from its counters.
pub struct TestRouter {
    running: Running,
    /// Another handle to the router's transport, to cut links from the
    /// outside.
    transport: Transport,
}

impl TestRouter {
    /// Starts a router with the default settings. Must be called inside a
    /// tokio runtime.
    pub fn start() -> TestRouter {
        let mut settings = RouterSettings::default();
        settings.listen = "127.0.0.1:0".parse().expect("an address");
        let identity = Identity::generate(Kind::Router, "test-router").expect("identity");
        let (transport, events) =
            Transport::bind(identity.clone(), settings.transport_config()).expect("binds");
        let addresses = settings.advertised_addresses(transport.local_addr());
        let core = RouterCore::new(identity, settings.core_config(addresses, None))
            .expect("the default settings are valid");
        let running = driver::spawn(
            core,
            transport.clone(),
            events,
            Arc::new(MemoryDirectory::new()),
            settings.driver_config(),
        );
        TestRouter { running, transport }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.handle().local_addr()
    }

    pub fn name(&self) -> Name {
        self.running.handle().name()
    }

    /// The forwarding core's counters now.
    pub async fn stats(&self) -> Stats {
        self.running
            .handle()
            .snapshot()
            .await
            .expect("the router is running")
            .core
    }

    /// The links of attached endpoints named `name` now.
    pub async fn endpoint_links(&self, name: Name) -> usize {
        let snapshot = self
            .running
            .handle()
            .snapshot()
            .await
            .expect("the router is running");
        snapshot
            .links
            .iter()
            .filter(|l| l.peer == name && l.role == Some(LinkRole::Endpoint))
            .count()
    }

    /// Closes every link of the endpoint `name`, as a lost connection
    /// would; false if it had none.
    pub fn drop_endpoint(&self, name: Name) -> bool {
        let mut found = false;
        for link in self.transport.links() {
            if link.peer().name() == name {
                link.close("dropped by the test");
                found = true;
            }
        }
        found
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
