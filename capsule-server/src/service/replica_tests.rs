//! Replication on a simulated network: replica sets, anti-entropy, forks,
//! and three replicas converging under partitions and crashes.
//!
//! The harness ([`Sim`]) runs several services, each over its own store in
//! a temporary directory, on virtual time. Every message (between the
//! client and the servers, and between servers) is delivered after a random
//! small delay, so messages are reordered. A commit takes a small virtual
//! time before it is durable; a crash loses the commits still pending (their
//! acknowledgements were never sent), and a restart opens the same store
//! again with a new service. A server cut off from the others loses every
//! message to or from it. Everything random comes from one seeded
//! [`Rng`], so a run is repeatable.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gdp_certs::cert::{AdCert, ReplicaSet, Validity};
use gdp_certs::codec::Encode;
use gdp_certs::{Metadata, Name, SecretKey, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::{Appender, ChainState};
use gdp_proto::record::{Record, RecordHash};

use super::tests::{NOW, capsule};
use super::{CapsuleService, Output, PeerResponse, Request, Response, Ticket};
use crate::limits::ServiceConfig;
use crate::store::{Store, StoreOptions, Write};

/// The client (writer and reader) of every test.
const CLIENT: Name = Name::from_bytes([1; 32]);

/// A deterministic pseudo-random generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// An index below `n`.
    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below a usize")
    }
}

/// `t` plus `micros` microseconds.
fn after(t: Timestamp, micros: u64) -> Timestamp {
    t.saturating_add(Duration::from_micros(micros))
}

/// A sender or receiver of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Client,
    Server(usize),
}

/// What a message carries.
#[derive(Debug)]
enum Payload {
    /// A request to a server (from the client or another server).
    Request(Request),
    /// The answer to a server's own request to another server.
    Answer(PeerResponse),
    /// An answer to the client.
    ToClient(Response),
}

#[derive(Debug)]
struct Msg {
    from: Endpoint,
    to: Endpoint,
    payload: Payload,
}

/// A server that is up: its service, its store, and the writes it output
/// that are not durable yet (with the time each becomes durable).
struct Running {
    service: CapsuleService,
    store: Store,
    writes: VecDeque<(Timestamp, Ticket, Write)>,
}

/// Counters summed over the lives of a server (a crash drops the service
/// and its stats).
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    sync_requests: u64,
    synced_records: u64,
    forks_found: u64,
}

impl Counters {
    fn add(&mut self, s: &crate::stats::ServiceStats) {
        self.sync_requests += s.sync_requests;
        self.synced_records += s.synced_records;
        self.forks_found += s.forks_found;
    }
}

struct Node {
    name: Name,
    dir: PathBuf,
    up: Option<Running>,
    /// The counters of the services that crashed.
    past: Counters,
    /// Cut off from everyone: every message to or from it is lost.
    cut: bool,
}

/// A fault in progress.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Cut(usize),
    Down(usize),
}

/// Random faults, one at a time: a server cut off or crashed for a random
/// time, then a quiet gap.
struct Chaos {
    next: Timestamp,
    active: Option<Fault>,
    partitions: u64,
    crashes: u64,
    /// Lengths of faults and of the gaps between them, in microseconds.
    fault_len: (u64, u64),
    gap_len: (u64, u64),
}

/// Several servers on a simulated network, on virtual time.
struct Sim {
    now: Timestamp,
    rng: Rng,
    config: ServiceConfig,
    nodes: Vec<Node>,
    /// Messages in flight, by delivery time (and sending order).
    net: BTreeMap<(Timestamp, u64), Msg>,
    next_msg: u64,
    /// Delivery delay of a message, microseconds.
    net_delay: (u64, u64),
    /// Time for a write to become durable, microseconds.
    commit_delay: (u64, u64),
    /// Answers that reached the client: from which server.
    inbox: VecDeque<(usize, Response)>,
    next_request: u64,
    /// `Sync` requests sent by each server, and sent to each server.
    syncs_from: Vec<u64>,
    syncs_to: Vec<u64>,
    chaos: Option<Chaos>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.up = None;
            let _ = std::fs::remove_dir_all(&node.dir);
        }
    }
}

impl Sim {
    /// `n` servers with empty stores.
    fn new(label: &str, n: usize, config: ServiceConfig, seed: u64) -> Self {
        let tag = rand::random::<u64>();
        let nodes = (0..n)
            .map(|i| {
                let dir = std::env::temp_dir().join(format!(
                    "gdp-replica-{label}-{}-{tag}-{i}",
                    std::process::id()
                ));
                let index = u8::try_from(i).expect("few servers");
                Node {
                    name: Name::from_bytes([200 + index; 32]),
                    dir,
                    up: None,
                    past: Counters::default(),
                    cut: false,
                }
            })
            .collect();
        let mut sim = Sim {
            now: NOW,
            rng: Rng::new(seed),
            config,
            nodes,
            net: BTreeMap::new(),
            next_msg: 0,
            net_delay: (200, 3_000),
            commit_delay: (300, 2_000),
            inbox: VecDeque::new(),
            next_request: 0,
            syncs_from: vec![0; n],
            syncs_to: vec![0; n],
            chaos: None,
        };
        for i in 0..n {
            sim.start(i);
        }
        sim
    }

    fn name(&self, i: usize) -> Name {
        self.nodes[i].name
    }

    fn index(&self, name: &Name) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == *name)
    }

    fn running(&self, i: usize) -> &Running {
        self.nodes[i].up.as_ref().expect("the server is up")
    }

    fn service(&self, i: usize) -> &CapsuleService {
        &self.running(i).service
    }

    fn store(&self, i: usize) -> &Store {
        &self.running(i).store
    }

    /// The server's counters over all its lives so far.
    fn counters(&self, i: usize) -> Counters {
        let node = &self.nodes[i];
        let mut c = node.past;
        if let Some(r) = &node.up {
            c.add(r.service.stats());
        }
        c
    }

    /// Opens server `i`'s store (again) and starts a new service over it.
    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.up.is_none(), "server {i} is already up");
        let (store, report) =
            Store::open(&node.dir, &StoreOptions::default()).expect("the store opens");
        assert!(report.damaged.is_empty(), "damaged: {:?}", report.damaged);
        let service = CapsuleService::new(self.config.clone(), node.name, store.clone(), report)
            .expect("a valid config");
        node.up = Some(Running {
            service,
            store,
            writes: VecDeque::new(),
        });
    }

    /// Crashes server `i`: its service and the writes not yet durable are
    /// gone.
    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let running = node.up.take().expect("the server is up");
        node.past.add(running.service.stats());
    }

    /// True if messages to or from `e` are lost.
    fn blocked(&self, e: Endpoint) -> bool {
        match e {
            Endpoint::Client => false,
            Endpoint::Server(i) => self.nodes[i].cut || self.nodes[i].up.is_none(),
        }
    }

    /// Puts a message on the network, unless an end is cut off or down.
    fn send(&mut self, from: Endpoint, to: Endpoint, payload: Payload) {
        if self.blocked(from) || self.blocked(to) {
            return;
        }
        let delay = self.rng.between(self.net_delay.0, self.net_delay.1);
        let at = after(self.now, delay);
        self.next_msg += 1;
        self.net
            .insert((at, self.next_msg), Msg { from, to, payload });
    }

    /// A fresh request id of the client.
    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// Sends `body` from the client to server `i`.
    fn client_request(&mut self, i: usize, capsule: Name, request_id: u64, body: CapsuleRequest) {
        let request = Request {
            capsule,
            from: CLIENT,
            request_id,
            body,
        };
        self.send(
            Endpoint::Client,
            Endpoint::Server(i),
            Payload::Request(request),
        );
    }

    /// Takes every output of server `i`: messages onto the network, writes
    /// into its commit queue.
    fn pump(&mut self, i: usize) {
        loop {
            let Some(running) = self.nodes[i].up.as_mut() else {
                return;
            };
            let Some(out) = running.service.poll_output() else {
                return;
            };
            match out {
                Output::Respond(r) if r.to == CLIENT => {
                    self.send(Endpoint::Server(i), Endpoint::Client, Payload::ToClient(r))
                }
                Output::Respond(r) => {
                    let Some(j) = self.index(&r.to) else {
                        continue;
                    };
                    // The PDU of an answer comes from the capsule's name.
                    let answer = PeerResponse {
                        from: r.capsule,
                        request_id: r.request_id,
                        body: r.body,
                    };
                    self.send(
                        Endpoint::Server(i),
                        Endpoint::Server(j),
                        Payload::Answer(answer),
                    );
                }
                Output::Request(req) => {
                    let Some(j) = self.index(&req.to) else {
                        continue;
                    };
                    if let CapsuleRequest::At { request, .. } = &req.body
                        && matches!(**request, CapsuleRequest::Sync { .. })
                    {
                        self.syncs_from[i] += 1;
                        self.syncs_to[j] += 1;
                    }
                    let request = Request {
                        capsule: req.to,
                        from: self.nodes[i].name,
                        request_id: req.request_id,
                        body: req.body,
                    };
                    self.send(
                        Endpoint::Server(i),
                        Endpoint::Server(j),
                        Payload::Request(request),
                    );
                }
                Output::Commit { ticket, write } => {
                    let delay = self.rng.between(self.commit_delay.0, self.commit_delay.1);
                    let running = self.nodes[i].up.as_mut().expect("polled just now");
                    // Writes become durable in the order they were output.
                    let at = running
                        .writes
                        .back()
                        .map_or(self.now, |(t, _, _)| *t)
                        .max(after(self.now, delay));
                    running.writes.push_back((at, ticket, write));
                }
                Output::Publish(_) => {}
            }
        }
    }

    /// Delivers `msg`, unless an end is cut off or the receiver is down.
    fn deliver(&mut self, msg: Msg) {
        let from_cut = matches!(msg.from, Endpoint::Server(i) if self.nodes[i].cut);
        if from_cut || self.blocked(msg.to) {
            return;
        }
        let now = self.now;
        match (msg.to, msg.payload) {
            (Endpoint::Client, Payload::ToClient(r)) => {
                let Endpoint::Server(i) = msg.from else {
                    return;
                };
                self.inbox.push_back((i, r));
            }
            (Endpoint::Server(i), Payload::Request(req)) => {
                let running = self.nodes[i].up.as_mut().expect("not blocked: up");
                running.service.handle(now, req);
                self.pump(i);
            }
            (Endpoint::Server(i), Payload::Answer(answer)) => {
                let running = self.nodes[i].up.as_mut().expect("not blocked: up");
                running.service.on_peer_response(now, answer);
                self.pump(i);
            }
            (to, payload) => panic!("{payload:?} cannot go to {to:?}"),
        }
    }

    /// Makes the writes of server `i` that are due durable, in one commit.
    fn commit_due(&mut self, i: usize) {
        let now = self.now;
        let Some(running) = self.nodes[i].up.as_mut() else {
            return;
        };
        let due = running
            .writes
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .count();
        if due == 0 {
            return;
        }
        let writes: Vec<(Timestamp, Ticket, Write)> = running.writes.drain(..due).collect();
        let results = running.store.commit(writes.iter().map(|(_, _, w)| w));
        for ((_, ticket, _), result) in writes.into_iter().zip(results) {
            running.service.on_commit(now, ticket, result);
        }
        self.pump(i);
    }

    /// Runs server `i`'s timers that are due.
    fn timers_due(&mut self, i: usize) {
        let now = self.now;
        let Some(running) = self.nodes[i].up.as_mut() else {
            return;
        };
        if running.service.next_timeout().is_some_and(|t| t <= now) {
            running.service.handle_timeout(now);
            self.pump(i);
        }
    }

    /// Starts or ends a fault, when one is due.
    fn chaos_due(&mut self) {
        let Some(chaos) = self.chaos.as_mut() else {
            return;
        };
        if chaos.next > self.now {
            return;
        }
        match chaos.active.take() {
            Some(fault) => {
                let gap = chaos.gap_len;
                self.heal(fault);
                let len = self.rng.between(gap.0, gap.1);
                let chaos = self.chaos.as_mut().expect("checked above");
                chaos.next = after(self.now, len);
            }
            None => {
                let len = chaos.fault_len;
                let i = self.rng.index(self.nodes.len());
                let fault = if self.rng.next().is_multiple_of(2) {
                    self.nodes[i].cut = true;
                    Fault::Cut(i)
                } else {
                    self.crash(i);
                    Fault::Down(i)
                };
                let len = self.rng.between(len.0, len.1);
                let now = self.now;
                let chaos = self.chaos.as_mut().expect("checked above");
                match fault {
                    Fault::Cut(_) => chaos.partitions += 1,
                    Fault::Down(_) => chaos.crashes += 1,
                }
                chaos.active = Some(fault);
                chaos.next = after(now, len);
            }
        }
    }

    /// Ends `fault`: reconnects or restarts the server.
    fn heal(&mut self, fault: Fault) {
        match fault {
            Fault::Cut(i) => self.nodes[i].cut = false,
            Fault::Down(i) => {
                self.start(i);
                self.pump(i);
            }
        }
    }

    /// Cuts server `i` off until [`Sim::heal_all`], ending the fault in
    /// progress first.
    fn cut_until_healed(&mut self, i: usize) {
        if let Some(fault) = self.chaos.as_mut().and_then(|c| c.active.take()) {
            self.heal(fault);
        }
        self.nodes[i].cut = true;
        let chaos = self.chaos.as_mut().expect("chaos is on");
        chaos.partitions += 1;
        chaos.active = Some(Fault::Cut(i));
        chaos.next = Timestamp::MAX;
    }

    /// Ends the fault in progress and stops making new ones.
    fn heal_all(&mut self) {
        if let Some(fault) = self.chaos.as_mut().and_then(|c| c.active.take()) {
            self.heal(fault);
        }
        if let Some(chaos) = self.chaos.as_mut() {
            chaos.next = Timestamp::MAX;
        }
    }

    /// When the next thing happens.
    fn next_event(&self) -> Option<Timestamp> {
        let mut next = self.net.keys().next().map(|(t, _)| *t);
        let mut consider = |t: Option<Timestamp>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for node in &self.nodes {
            if let Some(r) = &node.up {
                consider(r.writes.front().map(|(t, _, _)| *t));
                consider(r.service.next_timeout());
            }
        }
        consider(
            self.chaos
                .as_ref()
                .map(|c| c.next)
                .filter(|t| *t != Timestamp::MAX),
        );
        next.map(|t| t.max(self.now))
    }

    /// Runs everything due at `now`.
    fn run_due(&mut self) {
        while let Some(entry) = self.net.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let msg = entry.remove();
            self.deliver(msg);
        }
        for i in 0..self.nodes.len() {
            self.commit_due(i);
            self.timers_due(i);
        }
        self.chaos_due();
    }

    /// Runs until `stop` holds (true) or `deadline` is reached (false).
    fn run_until(&mut self, deadline: Timestamp, stop: impl Fn(&Sim) -> bool) -> bool {
        let mut spins = 0u32;
        loop {
            if stop(self) {
                return true;
            }
            match self.next_event() {
                Some(t) if t <= deadline => {
                    spins = if t == self.now { spins + 1 } else { 0 };
                    assert!(spins < 100_000, "no progress at {:?}", self.now);
                    self.now = t;
                    self.run_due();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return stop(self);
                }
            }
        }
    }

    /// Runs for `d` of virtual time.
    fn run_for(&mut self, d: Duration) {
        let deadline = self.now.saturating_add(d);
        self.run_until(deadline, |_| false);
    }

    /// Sends `body` from the client to server `i` and returns its answer
    /// (other answers reaching the client meanwhile are dropped).
    fn ask(&mut self, i: usize, capsule: Name, body: CapsuleRequest) -> CapsuleResponse {
        let id = self.request_id();
        self.client_request(i, capsule, id, body);
        let deadline = self.now.saturating_add(Duration::from_secs(10));
        loop {
            self.run_until(deadline, |s| !s.inbox.is_empty());
            while let Some((from, r)) = self.inbox.pop_front() {
                if from == i && r.request_id == id {
                    return r.body;
                }
            }
            assert!(self.now < deadline, "server {i} did not answer");
        }
    }

    /// Creates the capsule `md` of `owner` on every server (each with its
    /// own AdCert).
    fn create_everywhere(&mut self, owner: &SecretKey, md: &Metadata) {
        let validity = Validity::new(Timestamp::from_secs(1), Timestamp::from_secs(1_900_000_000));
        for i in 0..self.nodes.len() {
            let adcert = AdCert::issue(owner, md.name(), self.name(i), validity);
            let create = CapsuleRequest::Create {
                metadata: md.clone(),
                adcert,
            };
            assert_eq!(
                self.ask(i, md.name(), create),
                CapsuleResponse::Created,
                "create on server {i}"
            );
        }
    }

    /// Hands `set` to server `i`; returns the set it then holds.
    fn set_replicas(&mut self, i: usize, set: &ReplicaSet) -> Option<ReplicaSet> {
        let body = CapsuleRequest::SetReplicas { set: set.clone() };
        match self.ask(i, set.capsule(), body) {
            CapsuleResponse::Replicas { set } => set,
            other => panic!("SetReplicas on server {i}: {other:?}"),
        }
    }

    /// The hashes of server `i`'s records `1..=tail`, read from its store.
    fn stored_hashes(&self, i: usize, capsule: &Name, tail: u64) -> Vec<RecordHash> {
        let store = self.store(i);
        let mut hashes = Vec::new();
        while (hashes.len() as u64) < tail {
            let from = hashes.len() as u64 + 1;
            let records = store
                .records(capsule, from, tail, 4096, usize::MAX)
                .expect("the store reads");
            assert!(!records.is_empty(), "server {i} misses record {from}");
            hashes.extend(records.iter().map(Record::hash));
        }
        hashes
    }

    /// Checks that server `i` holds exactly `hashes` (records `1..`) for
    /// `capsule`, durably, and that its store scrubs clean.
    fn assert_holds(&self, i: usize, capsule: &Name, hashes: &[RecordHash]) {
        let tail = hashes.len() as u64;
        assert_eq!(
            self.service(i).durable_tail(capsule),
            Some(tail),
            "durable tail of server {i}"
        );
        let stored = self.stored_hashes(i, capsule, tail);
        if let Some(s) = (0..hashes.len()).find(|&s| stored[s] != hashes[s]) {
            panic!("server {i} has another record {}", s + 1);
        }
        assert_eq!(
            self.store(i).record(capsule, tail + 1).expect("reads"),
            None,
            "server {i} has records past {tail}"
        );
        assert_eq!(
            self.store(i)
                .scrub(capsule)
                .expect("the store scrubs clean"),
            tail,
            "records scrubbed on server {i}"
        );
    }
}

/// The owner (and only writer) of the test capsule, and its metadata.
fn owner_and_capsule(nonce: u8) -> (SecretKey, Metadata) {
    let owner = SecretKey::from_seed(&[7; 32]);
    let (md, _) = capsule(&owner, nonce);
    (owner, md)
}

/// The writer's next `n` records, closed by a heartbeat, as an `Append`;
/// their hashes are added to `hashes`.
fn next_batch(w: &mut Appender, n: usize, hashes: &mut Vec<RecordHash>) -> (u64, CapsuleRequest) {
    next_batch_of(w, "record", n, hashes)
}

/// Like [`next_batch`], with payloads starting with `tag`.
fn next_batch_of(
    w: &mut Appender,
    tag: &str,
    n: usize,
    hashes: &mut Vec<RecordHash>,
) -> (u64, CapsuleRequest) {
    let records: Vec<Record> = (0..n)
        .map(|_| {
            let seqno = w.state().tail_seqno() + 1;
            let payload = Bytes::from(format!("{tag} {seqno}"));
            w.append(payload, NOW).expect("appends")
        })
        .collect();
    hashes.extend(records.iter().map(Record::hash));
    let heartbeat = w.heartbeat().expect("appended");
    let last = heartbeat.seqno;
    (last, CapsuleRequest::Append { records, heartbeat })
}

fn writer(owner: &SecretKey, md: &Metadata) -> Appender {
    Appender::new(owner.clone(), md, ChainState::new(md.name())).expect("the owner writes")
}

#[test]
fn a_new_replica_catches_up_with_few_syncs() {
    let mut sim = Sim::new("catchup", 2, ServiceConfig::default(), 1);
    let (owner, md) = owner_and_capsule(1);
    let capsule = md.name();
    sim.create_everywhere(&owner, &md);
    let mut w = writer(&owner, &md);
    let mut hashes = Vec::new();
    let mut rng = Rng::new(11);
    while hashes.len() < 1_000 {
        let n = usize::try_from(rng.between(1, 8))
            .expect("small")
            .min(1_000 - hashes.len());
        let (last, append) = next_batch(&mut w, n, &mut hashes);
        assert_eq!(
            sim.ask(0, capsule, append),
            CapsuleResponse::Appended { tail: last }
        );
    }
    assert_eq!(sim.service(1).durable_tail(&capsule), Some(0));

    let set =
        ReplicaSet::issue(&owner, capsule, 1, vec![sim.name(0), sim.name(1)]).expect("a valid set");
    for i in 0..2 {
        assert_eq!(sim.set_replicas(i, &set), Some(set.clone()));
    }
    let start = sim.now;
    let deadline = sim.now.saturating_add(Duration::from_secs(30));
    let done = sim.run_until(deadline, |s| {
        s.service(1).durable_tail(&capsule) == Some(1_000)
            && s.running(1).writes.is_empty()
            && s.service(1).pending_appends(&capsule) == 0
    });
    assert!(done, "the new replica did not catch up");
    let took = sim.now.since(start);
    let syncs = sim.counters(0).sync_requests + sim.counters(1).sync_requests;
    let fetched = sim.counters(1).synced_records;
    println!(
        "catch-up of 1,000 records: {syncs} Sync requests ({} by the new replica), {fetched} records fetched, {took:?} virtual",
        sim.counters(1).sync_requests
    );
    sim.assert_holds(0, &capsule, &hashes);
    sim.assert_holds(1, &capsule, &hashes);
    assert_eq!(fetched, 1_000, "every record fetched once");
    // Pieces end where an append ended, at most 256 records each: 1,000
    // records take at least 4, and a round or two more say "in sync".
    assert!(syncs <= 10, "{syncs} Sync requests for 1,000 records");

    // In sync, a round is one request per peer.
    let before = sim.counters(0).sync_requests + sim.counters(1).sync_requests;
    sim.run_for(Duration::from_secs(10));
    let rounds = sim.counters(0).sync_requests + sim.counters(1).sync_requests - before;
    assert!(
        (18..=22).contains(&rounds),
        "{rounds} Sync requests in 10 rounds of 2 replicas"
    );
    assert_eq!(sim.counters(1).synced_records, 1_000);
}

#[test]
fn an_append_that_nearly_fills_a_pdu_syncs_in_one_piece() {
    let mut sim = Sim::new("big", 2, ServiceConfig::default(), 3);
    let (owner, md) = owner_and_capsule(4);
    let capsule = md.name();
    sim.create_everywhere(&owner, &md);
    let mut w = writer(&owner, &md);
    // Four records of 250 KiB and one of 3 KiB: about 20 KiB under the
    // PDU limit, so within the reserve a read leaves for its proof.
    let sizes = [250 * 1024, 250 * 1024, 250 * 1024, 250 * 1024, 3 * 1024];
    let records: Vec<Record> = sizes
        .iter()
        .map(|&n| w.append(Bytes::from(vec![7u8; n]), NOW).expect("appends"))
        .collect();
    let hashes: Vec<RecordHash> = records.iter().map(Record::hash).collect();
    let heartbeat = w.heartbeat().expect("appended");
    let append = CapsuleRequest::Append { records, heartbeat };
    assert!(
        append.to_bytes().len() > gdp_proto::pdu::MAX_PAYLOAD_LEN - crate::limits::PROOF_RESERVE,
        "the append must be within a read's proof reserve of the limit"
    );
    assert_eq!(
        sim.ask(0, capsule, append),
        CapsuleResponse::Appended { tail: 5 }
    );
    let set =
        ReplicaSet::issue(&owner, capsule, 1, vec![sim.name(0), sim.name(1)]).expect("a valid set");
    for i in 0..2 {
        assert_eq!(sim.set_replicas(i, &set), Some(set.clone()));
    }
    let deadline = sim.now.saturating_add(Duration::from_secs(10));
    let done = sim.run_until(deadline, |s| {
        s.service(1).durable_tail(&capsule) == Some(5) && s.running(1).writes.is_empty()
    });
    assert!(done, "the large append did not sync");
    sim.assert_holds(1, &capsule, &hashes);
}

#[test]
fn a_fork_leaves_evidence_on_both_replicas() {
    let mut sim = Sim::new("fork", 2, ServiceConfig::default(), 2);
    let (owner, md) = owner_and_capsule(2);
    let capsule = md.name();
    sim.create_everywhere(&owner, &md);
    let set =
        ReplicaSet::issue(&owner, capsule, 1, vec![sim.name(0), sim.name(1)]).expect("a valid set");
    for i in 0..2 {
        assert_eq!(sim.set_replicas(i, &set), Some(set.clone()));
    }
    let mut w = writer(&owner, &md);
    let mut hashes = Vec::new();
    let (_, common) = next_batch(&mut w, 5, &mut hashes);
    for i in 0..2 {
        assert_eq!(
            sim.ask(i, capsule, common.clone()),
            CapsuleResponse::Appended { tail: 5 }
        );
    }
    // The writer signs two different records 6: one to each server.
    let mut other = w.clone();
    let mut theirs = Vec::new();
    let (_, to_a) = next_batch(&mut w, 1, &mut hashes);
    let (_, to_b) = next_batch_of(&mut other, "other", 1, &mut theirs);
    let (record_a, record_b) = (hashes[5], theirs[0]);
    assert_ne!(record_a, record_b);
    assert_eq!(
        sim.ask(0, capsule, to_a),
        CapsuleResponse::Appended { tail: 6 }
    );
    assert_eq!(
        sim.ask(1, capsule, to_b),
        CapsuleResponse::Appended { tail: 6 }
    );

    sim.run_for(Duration::from_secs(5));
    for (i, mine, conflicting) in [(0, record_a, record_b), (1, record_b, record_a)] {
        let evidence = match sim.ask(i, capsule, CapsuleRequest::GetForks) {
            CapsuleResponse::Forks { evidence } => evidence,
            other => panic!("GetForks on server {i}: {other:?}"),
        };
        assert!(!evidence.is_empty(), "server {i} has no fork evidence");
        for ev in &evidence {
            ev.verify(&md).expect("the evidence verifies");
            assert_eq!(ev.seqno(), 6);
            assert_eq!(
                ev.record.hash(),
                conflicting,
                "server {i} keeps the other record"
            );
        }
        // Its chain is still its own record.
        match sim.ask(i, capsule, CapsuleRequest::Read { seqno: 6 }) {
            CapsuleResponse::Records { records, proof } => {
                proof
                    .verify_range(&md, &records)
                    .expect("the read verifies");
                assert_eq!(records.last().map(Record::hash), Some(mine));
            }
            other => panic!("Read on server {i}: {other:?}"),
        }
        assert_eq!(sim.service(i).durable_tail(&capsule), Some(6));
        // Found once, not again at every round.
        assert_eq!(sim.counters(i).forks_found, 1, "forks found by server {i}");
        sim.store(i)
            .scrub(&capsule)
            .expect("the store scrubs clean");
    }
    // Neither took the other's records past the fork.
    assert_eq!(sim.counters(0).synced_records, 0);
    assert_eq!(sim.counters(1).synced_records, 0);
}

#[test]
fn a_retired_replica_stops_syncing_and_old_sets_are_ignored() {
    let mut sim = Sim::new("retire", 3, ServiceConfig::default(), 3);
    let (owner, md) = owner_and_capsule(3);
    let capsule = md.name();
    sim.create_everywhere(&owner, &md);
    let all: Vec<Name> = (0..3).map(|i| sim.name(i)).collect();
    let v1 = ReplicaSet::issue(&owner, capsule, 1, all.clone()).expect("a valid set");
    let v2 = ReplicaSet::issue(&owner, capsule, 2, vec![all[0], all[2]]).expect("a valid set");
    for i in 0..3 {
        assert_eq!(sim.set_replicas(i, &v1), Some(v1.clone()));
    }
    let mut w = writer(&owner, &md);
    let mut hashes = Vec::new();
    let (_, append) = next_batch(&mut w, 20, &mut hashes);
    assert_eq!(
        sim.ask(0, capsule, append),
        CapsuleResponse::Appended { tail: 20 }
    );
    sim.run_for(Duration::from_secs(3));
    for i in 0..3 {
        sim.assert_holds(i, &capsule, &hashes);
    }
    assert!(sim.syncs_from[1] > 0 && sim.syncs_to[1] > 0);

    // Server 1 is retired.
    for i in 0..3 {
        assert_eq!(sim.set_replicas(i, &v2), Some(v2.clone()));
    }
    // Calls already on their way may still arrive.
    sim.run_for(Duration::from_secs(1));
    let (from_1, to_1) = (sim.syncs_from[1], sim.syncs_to[1]);
    let others = sim.syncs_from[0] + sim.syncs_from[2];
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.syncs_from[1], from_1, "the retired server still syncs");
    assert_eq!(sim.syncs_to[1], to_1, "the others still sync with it");
    assert!(sim.syncs_from[0] + sim.syncs_from[2] >= others + 18);

    // Replaying the old set changes nothing.
    for i in 0..3 {
        assert_eq!(sim.set_replicas(i, &v1), Some(v2.clone()));
        assert_eq!(sim.service(i).replicas(&capsule), Some(&v2));
    }
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.syncs_from[1], from_1, "an old set revived the server");
    assert_eq!(sim.syncs_to[1], to_1, "an old set revived the server");

    // The remaining replicas still converge; the retired one keeps what it
    // had.
    let mut more = hashes.clone();
    let (_, append) = next_batch(&mut w, 10, &mut more);
    assert_eq!(
        sim.ask(2, capsule, append),
        CapsuleResponse::Appended { tail: 30 }
    );
    sim.run_for(Duration::from_secs(3));
    sim.assert_holds(0, &capsule, &more);
    sim.assert_holds(2, &capsule, &more);
    sim.assert_holds(1, &capsule, &hashes);

    // And a set kept survives a restart.
    sim.crash(1);
    sim.start(1);
    assert_eq!(sim.service(1).replicas(&capsule), Some(&v2));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(
        sim.syncs_from[1], from_1,
        "restarted, the retired server syncs"
    );
}

#[test]
fn a_replica_set_is_acknowledged_only_once_durable() {
    let mut sim = Sim::new("setdurable", 2, ServiceConfig::default(), 4);
    let (owner, md) = owner_and_capsule(5);
    let capsule = md.name();
    sim.create_everywhere(&owner, &md);
    // Writes take far longer than messages.
    sim.commit_delay = (50_000, 50_000);
    let set =
        ReplicaSet::issue(&owner, capsule, 1, vec![sim.name(0), sim.name(1)]).expect("a valid set");
    assert_eq!(sim.set_replicas(1, &set), Some(set.clone()));
    // A crash right after the answer loses nothing that was answered.
    sim.crash(1);
    sim.start(1);
    assert_eq!(sim.service(1).replicas(&capsule), Some(&set));
    // A replay while the set is being written waits for it too.
    sim.commit_delay = (50_000, 50_000);
    assert_eq!(sim.set_replicas(0, &set), Some(set.clone()));
    assert_eq!(sim.set_replicas(0, &set), Some(set.clone()));
    sim.crash(0);
    sim.start(0);
    assert_eq!(sim.service(0).replicas(&capsule), Some(&set));
}

/// Records the writer appends in the acceptance simulation.
const TOTAL: u64 = 10_000;

/// The seed of the simulation; `GDP_REPLICA_SEED` replaces it (to explore
/// other runs, or to repeat one).
const SEED: u64 = 0x5eed_f9d9;

/// The last records of the simulation, written while one server is cut off.
const FINAL_CUT: u64 = 1_000;

/// The servers' answers the client is waiting for: by request id, which
/// server was asked.
type Asked = HashMap<u64, usize>;

/// Sends `body` to each server of `to`, noting the request ids in `asked`.
fn send_all(
    sim: &mut Sim,
    capsule: Name,
    to: impl IntoIterator<Item = usize>,
    body: &CapsuleRequest,
    asked: &mut Asked,
) {
    for i in to {
        let id = sim.request_id();
        asked.insert(id, i);
        sim.client_request(i, capsule, id, body.clone());
    }
}

/// What the client counted.
#[derive(Debug, Default)]
struct ClientStats {
    resends: u64,
    append_errors: HashMap<ErrorCode, u64>,
    read_retries: u64,
    reads_not_found: u64,
}

#[test]
fn three_replicas_converge_under_partitions_and_crashes() {
    const N: usize = 3;
    const W: usize = 2;
    const R: usize = 2;
    let started = Instant::now();
    let seed = std::env::var("GDP_REPLICA_SEED")
        .ok()
        .map_or(SEED, |s| s.parse().expect("GDP_REPLICA_SEED is a number"));
    let mut sim = Sim::new("converge", N, ServiceConfig::default(), seed);
    let (owner, md) = owner_and_capsule(4);
    let capsule = md.name();
    sim.create_everywhere(&owner, &md);
    let servers: Vec<Name> = (0..N).map(|i| sim.name(i)).collect();
    let set = ReplicaSet::issue(&owner, capsule, 1, servers).expect("a valid set");
    for i in 0..N {
        assert_eq!(sim.set_replicas(i, &set), Some(set.clone()));
    }
    sim.chaos = Some(Chaos {
        next: after(sim.now, 500_000),
        active: None,
        partitions: 0,
        crashes: 0,
        fault_len: (50_000, 3_000_000),
        gap_len: (100_000, 2_000_000),
    });

    let resend_after = Duration::from_millis(200);
    let mut w = writer(&owner, &md);
    let mut hashes: Vec<RecordHash> = Vec::new();
    let mut client = ClientStats::default();
    let mut rng = Rng::new(seed.rotate_left(32) ^ 0xc11e);
    let mut final_cut = false;
    while (hashes.len() as u64) < TOTAL {
        if !final_cut && hashes.len() as u64 >= TOTAL - FINAL_CUT {
            final_cut = true;
            // The last records are written while a server is cut off, so it
            // has them to catch up with after healing.
            let i = rng.index(N);
            sim.cut_until_healed(i);
        }
        let n = rng.between(1, 8).min(TOTAL - hashes.len() as u64);
        let n = usize::try_from(n).expect("small");
        let (last, append) = next_batch(&mut w, n, &mut hashes);

        // A write quorum: W servers answered Appended at or past `last`.
        let mut asked = Asked::new();
        let mut acked: HashSet<usize> = HashSet::new();
        send_all(&mut sim, capsule, 0..N, &append, &mut asked);
        let mut deadline = sim.now.saturating_add(resend_after);
        while acked.len() < W {
            sim.run_until(deadline, |s| !s.inbox.is_empty());
            while let Some((from, r)) = sim.inbox.pop_front() {
                if asked.get(&r.request_id) != Some(&from) {
                    continue;
                }
                match r.body {
                    CapsuleResponse::Appended { tail } => {
                        assert!(tail >= last, "server {from} acknowledged {tail} for {last}");
                        acked.insert(from);
                    }
                    CapsuleResponse::Error { code, .. } => {
                        *client.append_errors.entry(code).or_default() += 1;
                    }
                    other => panic!("answer to an append: {other:?}"),
                }
            }
            if acked.len() < W && sim.now >= deadline {
                let missing: Vec<usize> = (0..N).filter(|i| !acked.contains(i)).collect();
                send_all(&mut sim, capsule, missing, &append, &mut asked);
                client.resends += 1;
                deadline = sim.now.saturating_add(resend_after);
            }
        }

        // A read quorum: R servers answered; one of them has `last`.
        let mut asked = Asked::new();
        let mut answered: HashMap<usize, bool> = HashMap::new();
        let first = rng.index(N);
        let second = (first + 1 + rng.index(N - 1)) % N;
        let read = CapsuleRequest::Read { seqno: last };
        send_all(&mut sim, capsule, [first, second], &read, &mut asked);
        let mut deadline = sim.now.saturating_add(resend_after);
        while answered.len() < R {
            sim.run_until(deadline, |s| !s.inbox.is_empty());
            while let Some((from, r)) = sim.inbox.pop_front() {
                if asked.get(&r.request_id) != Some(&from) {
                    continue;
                }
                let found = match r.body {
                    CapsuleResponse::Records { records, proof } => {
                        proof
                            .verify_range(&md, &records)
                            .expect("the records of a read verify");
                        for rec in &records {
                            let s = usize::try_from(rec.seqno()).expect("small") - 1;
                            assert_eq!(rec.hash(), hashes[s], "server {from}: record {s}");
                        }
                        records.last().map(Record::seqno) == Some(last)
                    }
                    CapsuleResponse::Error {
                        code: ErrorCode::NotFound,
                        ..
                    } => {
                        client.reads_not_found += 1;
                        false
                    }
                    other => panic!("answer to a read: {other:?}"),
                };
                answered.insert(from, found);
            }
            if answered.len() < R && sim.now >= deadline {
                let missing: Vec<usize> = (0..N).filter(|i| !answered.contains_key(i)).collect();
                send_all(&mut sim, capsule, missing, &read, &mut asked);
                client.read_retries += 1;
                deadline = sim.now.saturating_add(resend_after);
            }
        }
        assert!(
            answered.values().any(|found| *found),
            "no server of the read quorum {answered:?} has acknowledged record {last}"
        );
    }
    let written = sim.now;

    // Heal everything and wait for the replicas to converge.
    sim.heal_all();
    let healed = sim.now;
    let deadline = sim.now.saturating_add(Duration::from_secs(120));
    let converged = sim.run_until(deadline, |s| {
        (0..N).all(|i| {
            s.nodes[i].up.as_ref().is_some_and(|r| {
                r.writes.is_empty()
                    && r.service.durable_tail(&capsule) == Some(TOTAL)
                    && r.service.pending_appends(&capsule) == 0
            })
        })
    });
    let to_converge = sim.now.since(healed);
    assert!(converged, "the replicas did not converge within 120 s");
    // Then a few quiet rounds: nothing changes any more.
    sim.run_for(Duration::from_secs(3));

    for i in 0..N {
        sim.assert_holds(i, &capsule, &hashes);
        match sim.ask(i, capsule, CapsuleRequest::GetForks) {
            CapsuleResponse::Forks { evidence } => assert!(evidence.is_empty()),
            other => panic!("GetForks: {other:?}"),
        }
    }
    let chaos = sim.chaos.as_ref().expect("set above");
    let counters: Vec<Counters> = (0..N).map(|i| sim.counters(i)).collect();
    let sync_requests: u64 = counters.iter().map(|c| c.sync_requests).sum();
    let synced_records: u64 = counters.iter().map(|c| c.synced_records).sum();
    println!(
        "seed {seed}: {TOTAL} records in {} virtual: {} partitions, {} crashes; {sync_requests} Sync requests sent, {synced_records} records fetched by sync (per server {:?}); converged {to_converge:?} after healing; client: {} append resends, append errors {:?}, {} read retries, {} reads not found; {:.1} s real",
        {
            let d = written.since(NOW);
            format!("{:.1} s", d.as_secs_f64())
        },
        chaos.partitions,
        chaos.crashes,
        counters
            .iter()
            .map(|c| (c.sync_requests, c.synced_records))
            .collect::<Vec<_>>(),
        client.resends,
        client.append_errors,
        client.read_retries,
        client.reads_not_found,
        started.elapsed().as_secs_f64(),
    );
    assert!(chaos.partitions > 0 && chaos.crashes > 0);
}
