//! A capsule's stream through delivery trees, end to end: a simulated
//! capsule server with a real signed chain, a hundred routers, a thousand
//! subscribers that verify every record with the same
//! [`Follower`](gdp_proto::follow::Follower) the client SDK uses, and faults
//! in the middle of the tree.
//!
//! The topology: the server sits on a private router behind a public
//! gateway (so the tree is three routers deep: server's router, gateway,
//! subscribers' routers), nine other public routers each front about ten
//! private ones, and every router has ten subscribers.

use std::collections::BTreeMap;

use bytes::Bytes;
use gdp_certs::{Kind, Name, SecretKey, Timestamp};
use gdp_proto::capsule::{
    CapsuleRequest, CapsuleResponse, MAX_RESPONSE_RECORDS, decode_publish, publish_pdu,
};
use gdp_proto::chain::ChainState;
use gdp_proto::control::ControlMessage;
use gdp_proto::follow::Follower;
use gdp_proto::proof::{Heartbeat, Proof};
use gdp_proto::record::Record;
use gdp_proto::{Pdu, PduType};
use gdp_router::sim::{AttachState, EndpointId, NetConfig, Network, RouterId, SimCapsule};

use super::SECOND;

/// Records in the stream.
const RECORDS: u64 = 1_000;
/// Records per append (a writer pipelines; each append is one Publish).
const BATCH: u64 = 10;
/// Virtual time between appends.
const APPEND_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
/// Subscribers per router.
const PER_ROUTER: usize = 10;
/// How long a subscriber waits for a read's answer before asking again.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// How often a subscriber refreshes its membership.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(10);
/// A tree lease at the server.
const LEASE: std::time::Duration = std::time::Duration::from_secs(30);
/// How often the server publishes its tip while a leased capsule is idle.
const TIP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The capsule server, played by the test: it holds the chain, takes the
/// lease of its router's tree, publishes each append once and answers reads.
struct Server {
    endpoint: EndpointId,
    router: Name,
    capsule: Name,
    writer: SecretKey,
    chain: ChainState,
    records: Vec<Record>,
    lease: Option<Timestamp>,
    last_publish: Timestamp,
    /// Publish PDUs sent, and how many of them carried new records.
    publishes: u64,
    appends_published: u64,
    /// Subscribe PDUs taken (joins and refreshes), and from whom else.
    joins: u64,
    foreign_joins: u64,
    reads: u64,
}

impl Server {
    fn proof_of(&self, seqno: u64) -> Proof {
        let last = &self.records[(seqno - 1) as usize];
        Proof::build(Heartbeat::sign(&self.writer, last), seqno, |s| {
            self.records
                .get(usize::try_from(s).ok()? - 1)
                .map(Record::header)
        })
        .expect("every header is at hand")
    }

    fn leased(&self, now: Timestamp) -> bool {
        self.lease.is_some_and(|until| until > now)
    }

    fn publish(&mut self, net: &mut Network, from: u64, to: u64) {
        let part = self.records[(from - 1) as usize..to as usize].to_vec();
        let pdu = publish_pdu(self.capsule, part, self.proof_of(to)).expect("fits a pdu");
        net.endpoint_mut(self.endpoint).send_pdu(&pdu);
        self.publishes += 1;
        self.last_publish = net.now();
    }

    /// Appends the next batch, publishing it down the tree if one is leased.
    fn append(&mut self, net: &mut Network) {
        let from = self.records.len() as u64 + 1;
        for seqno in from..from + BATCH {
            let record = self
                .chain
                .next_record(Bytes::from(seqno.to_be_bytes().to_vec()), net.now())
                .expect("small record");
            self.records.push(record);
        }
        if self.leased(net.now()) {
            self.publish(net, from, from + BATCH - 1);
            self.appends_published += 1;
        }
        net.flush_endpoint(self.endpoint);
    }

    /// What reached the server since the last call.
    fn serve(&mut self, net: &mut Network) {
        let now = net.now();
        let received: Vec<Pdu> = net.endpoint(self.endpoint).received().to_vec();
        net.endpoint_mut(self.endpoint).clear_received();
        for pdu in received {
            match pdu.header.ptype {
                PduType::Subscribe | PduType::Unsubscribe => {
                    if pdu.header.src != self.router {
                        self.foreign_joins += 1;
                        continue;
                    }
                    match ControlMessage::from_pdu(&pdu) {
                        Ok(ControlMessage::Subscribe { capsule }) if capsule == self.capsule => {
                            self.joins += 1;
                            let fresh = !self.leased(now);
                            self.lease = Some(now.saturating_add(LEASE));
                            if fresh && !self.records.is_empty() {
                                let tail = self.records.len() as u64;
                                self.publish(net, tail, tail);
                            }
                        }
                        Ok(ControlMessage::Unsubscribe { capsule }) if capsule == self.capsule => {
                            self.lease = None;
                        }
                        other => panic!("unexpected subscription control: {other:?}"),
                    }
                }
                PduType::Capsule => {
                    let request = CapsuleRequest::from_pdu(&pdu).expect("a capsule request");
                    let tail = self.records.len() as u64;
                    let (from, to) = match request {
                        CapsuleRequest::ReadRange { from, to } => (from, to.min(tail)),
                        CapsuleRequest::Latest => (tail, tail),
                        other => panic!("unexpected request {other:?}"),
                    };
                    self.reads += 1;
                    if from == 0 || from > to {
                        continue;
                    }
                    let to = to.min(from + MAX_RESPONSE_RECORDS as u64 - 1);
                    let answer = CapsuleResponse::Records {
                        records: self.records[(from - 1) as usize..to as usize].to_vec(),
                        proof: self.proof_of(to),
                    };
                    let reply = answer.reply_to(&pdu.header).expect("fits a pdu");
                    net.endpoint_mut(self.endpoint).send_pdu(&reply);
                }
                _ => {}
            }
        }
        if self.leased(now) && !self.records.is_empty() && now.since(self.last_publish) >= TIP_EVERY
        {
            let tail = self.records.len() as u64;
            self.publish(net, tail, tail);
        }
        net.flush_endpoint(self.endpoint);
    }
}

/// A subscriber, played by the test with the SDK's rules: join the tree,
/// put what comes in order with a follower, read what it says is missing.
struct Subscriber {
    endpoint: EndpointId,
    router: RouterId,
    follower: Follower,
    /// Every seqno handed out, in the order handed out.
    delivered: Vec<u64>,
    /// The read in flight: its request id and when it was sent.
    reading: Option<(u64, Timestamp)>,
    joined: Option<Timestamp>,
}

impl Subscriber {
    fn join(&mut self, net: &mut Network, capsule: Name) {
        let me = net.endpoint(self.endpoint).name();
        let seq = net.endpoint_mut(self.endpoint).next_seq();
        let pdu = ControlMessage::Subscribe { capsule }
            .to_pdu(capsule, me, seq)
            .expect("small");
        net.endpoint_mut(self.endpoint).send_pdu(&pdu);
        self.joined = Some(net.now());
    }

    fn step(&mut self, net: &mut Network, capsule: Name) {
        let now = net.now();
        if net.endpoint(self.endpoint).state() != AttachState::Attached {
            net.endpoint_mut(self.endpoint).clear_received();
            self.joined = None;
            self.reading = None;
            return;
        }
        let received: Vec<Pdu> = net.endpoint(self.endpoint).received().to_vec();
        net.endpoint_mut(self.endpoint).clear_received();
        for pdu in received {
            let (records, proof) = match pdu.header.ptype {
                PduType::Publish => decode_publish(&pdu).expect("a publish decodes"),
                PduType::Capsule => match CapsuleResponse::from_pdu(&pdu) {
                    Ok(CapsuleResponse::Records { records, proof }) => {
                        if self.reading.is_some_and(|(id, _)| id == pdu.header.seq) {
                            self.reading = None;
                        }
                        (records, proof)
                    }
                    other => panic!("unexpected answer {other:?}"),
                },
                _ => continue,
            };
            self.follower
                .offer(records, &proof)
                .expect("every record verifies against the capsule's metadata");
            while let Some(record) = self.follower.pop().expect("one chain") {
                self.delivered.push(record.seqno());
            }
        }
        if self.joined.is_none_or(|at| now.since(at) >= REFRESH) {
            self.join(net, capsule);
        }
        let stale = self
            .reading
            .is_some_and(|(_, at)| now.since(at) >= READ_TIMEOUT);
        if (self.reading.is_none() || stale)
            && let Some(range) = self.follower.want()
        {
            let me = net.endpoint(self.endpoint).name();
            let id = net.endpoint_mut(self.endpoint).next_seq();
            let read = CapsuleRequest::ReadRange {
                from: *range.start(),
                to: *range.end(),
            }
            .to_pdu(capsule, me, id)
            .expect("small");
            net.endpoint_mut(self.endpoint).send_pdu(&read);
            self.reading = Some((id, now));
        }
        net.flush_endpoint(self.endpoint);
    }
}

/// The overlay, the server and the subscribers.
struct Stream {
    net: Network,
    gateway: RouterId,
    server_router: RouterId,
    routers: Vec<RouterId>,
    server: Server,
    subscribers: Vec<Subscriber>,
}

impl Stream {
    fn new() -> Self {
        let mut net = Network::new(NetConfig::default());
        let gateway = net.add_router();
        let server_router = net.add_private_router(gateway);
        let mut routers = vec![gateway, server_router];
        let fronts: Vec<RouterId> = (0..9).map(|_| net.add_router()).collect();
        routers.extend(&fronts);
        let mut i = 0;
        while routers.len() < 100 {
            routers.push(net.add_private_router(fronts[i % fronts.len()]));
            i += 1;
        }
        net.run_for(SECOND);

        let capsule: SimCapsule = net.new_capsule("stream");
        let endpoint = net.add_endpoint(Kind::Server, "store");
        net.attach(endpoint, server_router);
        net.run_for(SECOND);
        assert_eq!(net.endpoint(endpoint).state(), AttachState::Attached);
        let entry = capsule.entry(net.endpoint(endpoint).name());
        net.endpoint_mut(endpoint)
            .advertise(vec![entry])
            .expect("small");
        net.flush_endpoint(endpoint);
        net.run_for(SECOND);
        let server = Server {
            endpoint,
            router: net.router_name(server_router),
            capsule: capsule.name(),
            writer: capsule.owner().clone(),
            chain: ChainState::new(capsule.name()),
            records: Vec::new(),
            lease: None,
            last_publish: net.now(),
            publishes: 0,
            appends_published: 0,
            joins: 0,
            foreign_joins: 0,
            reads: 0,
        };

        let mut subscribers = Vec::new();
        for (r, router) in routers.iter().enumerate() {
            for s in 0..PER_ROUTER {
                let e = net.add_endpoint(Kind::Client, &format!("sub-{r}-{s}"));
                net.attach(e, *router);
                subscribers.push(Subscriber {
                    endpoint: e,
                    router: *router,
                    follower: Follower::new(capsule.metadata().clone(), 1, 4 * BATCH as usize),
                    delivered: Vec::new(),
                    reading: None,
                    joined: None,
                });
            }
        }
        net.run_for(SECOND);
        for s in &subscribers {
            assert_eq!(net.endpoint(s.endpoint).state(), AttachState::Attached);
        }
        Stream {
            net,
            gateway,
            server_router,
            routers,
            server,
            subscribers,
        }
    }

    /// One turn: the server and every subscriber handle what reached them,
    /// then the network runs for `d`.
    fn turn(&mut self, d: std::time::Duration) {
        self.server.serve(&mut self.net);
        let capsule = self.server.capsule;
        for s in &mut self.subscribers {
            s.step(&mut self.net, capsule);
        }
        self.net.run_for(d);
    }

    /// Turns until every subscriber has joined and the server holds a lease.
    fn settle(&mut self) {
        for _ in 0..200 {
            self.turn(std::time::Duration::from_millis(10));
        }
        assert!(
            self.server.leased(self.net.now()),
            "the tree reached the server"
        );
    }

    /// Turns until every subscriber has every record, or `limit` turns.
    fn finish(&mut self, limit: usize) {
        for _ in 0..limit {
            if self.subscribers.iter().all(|s| s.follower.next() > RECORDS) {
                return;
            }
            self.turn(std::time::Duration::from_millis(10));
        }
    }

    fn assert_everyone_has_everything(&self) {
        let want: Vec<u64> = (1..=RECORDS).collect();
        for s in &self.subscribers {
            assert_eq!(
                s.delivered, want,
                "subscriber on {:?} has every record once, in order",
                s.router
            );
        }
    }
}

#[test]
fn a_thousand_subscribers_on_a_hundred_routers_get_every_record_once() {
    let mut st = Stream::new();
    st.settle();
    // One join reached the server: its own router's.
    let joins_before = st.server.joins;
    assert!(joins_before >= 1);
    assert_eq!(st.server.foreign_joins, 0);
    let before: BTreeMap<RouterId, (u64, u64)> = st
        .routers
        .iter()
        .map(|r| {
            let t = &st.net.router(*r).stats().trees;
            (*r, (t.publishes, t.copies))
        })
        .collect();
    let publishes_before = st.server.publishes;
    for _ in 0..RECORDS / BATCH {
        st.server.append(&mut st.net);
        st.turn(APPEND_EVERY);
    }
    st.finish(500);
    st.assert_everyone_has_everything();
    // Without faults, nothing was read: the tree carried every record.
    assert_eq!(st.server.reads, 0, "no subscriber had to read");
    // The server sent each append once, whatever the number of subscribers.
    let appends = RECORDS / BATCH;
    assert_eq!(st.server.appends_published, appends);
    let publishes = st.server.publishes - publishes_before;
    assert!(
        publishes <= appends + 1,
        "one publish per append (and at most one tip): {publishes}"
    );
    // Each router received each publish once and copied it once per member
    // link.
    for r in &st.routers {
        let core = st.net.router(*r);
        let t = &core.stats().trees;
        let (received, copies) = before[r];
        let received = t.publishes - received;
        let copies = t.copies - copies;
        let members = core
            .tree(&st.server.capsule)
            .map_or(0, |tree| tree.members.len()) as u64;
        assert_eq!(received, publishes, "{r:?} received each publish once");
        assert_eq!(
            copies,
            publishes * members,
            "{r:?} copied each publish once per member link ({members})"
        );
    }
}

#[test]
fn a_killed_mid_tree_router_and_a_cut_link_lose_nothing() {
    let mut st = Stream::new();
    st.settle();
    let appends = RECORDS / BATCH;
    for i in 0..appends {
        if i == appends / 4 {
            // One branch's link up the tree is cut.
            let capsule = st.server.capsule;
            let (gateway, server_router) = (st.gateway, st.server_router);
            let link = st
                .routers
                .iter()
                .filter(|r| **r != gateway && **r != server_router)
                .find_map(|r| st.net.router(*r).tree(&capsule)?.upstream)
                .expect("the branches have joined");
            st.net.cut_link(link);
        }
        if i == appends / 2 {
            // The gateway every branch goes through crashes and restarts.
            st.net.kill_router(st.gateway);
        }
        if i == appends / 2 + 5 {
            st.net.restart_router(st.gateway);
            let gateway = st.gateway;
            for s in st.subscribers.iter().filter(|s| s.router == gateway) {
                st.net.attach(s.endpoint, gateway);
            }
        }
        st.server.append(&mut st.net);
        st.turn(APPEND_EVERY);
    }
    st.finish(3_000);
    st.assert_everyone_has_everything();
    assert!(st.server.reads > 0, "what the faults lost was read back");
}
