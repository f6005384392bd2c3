//! The capsule service: sans-IO logic of a capsule server.
//!
//! [`CapsuleService`] answers [`CapsuleRequest`]s for the capsules this
//! server hosts. It opens no socket and reads no clock: the driver passes
//! requests and `now` in, and takes [`Output`]s out:
//!
//! ```text
//!            handle_batch(now, requests)          on_commit(now, ticket, result)
//!                       │                                    ▲
//!                       ▼                                    │
//!   ┌─────────────────────────────────────┐     ┌────────────┴───────────┐
//!   │ CapsuleService                      │     │ Committer (store write)│
//!   │  per capsule: durable + optimistic  │────►│  Output::Commit        │
//!   │  chain state, pending appends,      │     └────────────────────────┘
//!   │  subscribers                        │
//!   └─────────────────────────────────────┘
//!                       │ poll_output()
//!                       ▼
//!       Output::Respond(Response) ──► the requesting peer (or a subscriber)
//! ```
//!
//! Reads go to the [`Store`] directly (they are short, local and need no
//! ordering with anything). Writes leave as [`Output::Commit`]; the driver
//! hands each to the committer and reports its result with
//! [`CapsuleService::on_commit`].
//!
//! # Appends: optimistic tail, pipelining, rollback
//!
//! Each capsule has two chain states. The *durable* one is what the store
//! holds; reads, proofs and subscriptions only ever see it. The *optimistic*
//! one also includes appends that passed every check and wait to become
//! durable. A new append is checked against the optimistic tail, so a writer
//! can pipeline: append `n + 1` is accepted while `n` is still being
//! written, and both usually land in the same group commit. An append is
//! acknowledged ([`CapsuleResponse::Appended`]) only when its commit is
//! durable, and the durable state advances in order.
//!
//! If a commit fails, that append and every later pending append of the
//! capsule (they chain on it) fail with [`ErrorCode::Internal`], the
//! optimistic state is dropped, and once no write of the capsule is left in
//! flight, the capsule's state is reloaded from the store. The store itself
//! refuses appends that do not continue its tail, so nothing after a failed
//! commit can land out of order. Meanwhile appends get a retryable error.
//!
//! # Heartbeats
//!
//! Requests handed in together with [`CapsuleService::handle_batch`] have
//! their heartbeats checked in one ed25519 batch verification
//! ([`verify_heartbeats`]). A record is acknowledged only when a valid
//! heartbeat of a writer covers it (directly, or through the hash chain from
//! the record it signs).
//!
//! # Limits and refusals
//!
//! Every request first passes its peer's request bucket; appends are then
//! checked as [`append`](self#appends-optimistic-tail-pipelining-rollback)
//! describes, charging the capsule's record bucket only once the heartbeat
//! verified (a bad append is charged to its sender); creates follow the
//! server's [`CreatePolicy`](crate::limits::CreatePolicy); subscriptions are
//! bounded per capsule and per peer. Every refusal is counted in
//! [`ServiceStats`] and logged without flooding ([`crate::stats`]).
//!
//! # Subscriptions
//!
//! A subscriber has a `next` seqno: everything before it was delivered.
//! When an append becomes durable, subscribers whose `next` falls in it get
//! the new records at once (from memory, with a proof from the append's own
//! heartbeat). Subscribers further behind are queued and served from the
//! store, one response at a time, as the driver polls
//! ([`CapsuleService::poll_output`]), until they catch up. `next` only moves
//! forward past what was emitted, so a subscriber sees every record once,
//! in order, with no gap. Each of these subscriptions costs the server one
//! copy of every record: this is the unicast fan-out.
//!
//! # Delivery trees
//!
//! The scalable way to follow a capsule: routers aggregate subscribers into
//! a tree per capsule, and the server's router joins it here with a lease
//! ([`CapsuleService::tree`]). Each append that becomes durable then
//! leaves once as an [`Output::Publish`], whatever the number of
//! subscribers; a leased capsule that published nothing for
//! `tree_tip_interval` publishes its newest record again
//! ([`CapsuleService::handle_timeout`]). See the [`tree`] module.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use gdp_certs::cert::AdCert;
use gdp_certs::{DecodeError, Metadata, Name, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::{ChainError, ChainState};
use gdp_proto::pdu::{Pdu, PduError};
use gdp_proto::proof::{Heartbeat, ProofError, VerifiedHeartbeat, verify_heartbeats};
use gdp_proto::record::{Record, RecordError};

use crate::limits::{ConfigError, PeerLimiter, ServiceConfig, TokenBucket, describe_wait};
use crate::stats::{Refusal, RefusalLog, ServiceStats};
use crate::store::{LoadedCapsule, OpenReport, Store, StoreError, Write};

mod append;
mod create;
mod read;
#[cfg(test)]
mod replica_tests;
pub mod sync;
#[cfg(test)]
mod tests;
pub mod tree;
#[cfg(test)]
mod tree_tests;

pub use sync::{PeerRequest, PeerResponse};
pub use tree::{Publish, TreeOp, TreeRequest};

/// A request for a capsule, as the driver received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The capsule (the PDU's destination).
    pub capsule: Name,
    /// The requesting peer (the PDU's source), where answers go.
    pub from: Name,
    /// The request id (the PDU's sequence id), echoed in answers.
    pub request_id: u64,
    /// The request.
    pub body: CapsuleRequest,
}

impl Request {
    /// The request carried by a Capsule request PDU: to its destination,
    /// from its source, with its sequence id. A directed request
    /// ([`CapsuleRequest::At`]) is about the capsule it names.
    pub fn from_pdu(pdu: &Pdu) -> Result<Self, DecodeError> {
        Ok(Request {
            capsule: pdu.header.dst,
            from: pdu.header.src,
            request_id: pdu.header.seq,
            body: CapsuleRequest::from_pdu(pdu)?,
        }
        .undirected())
    }

    /// The request with a directed body (`At{capsule, request}`) replaced by
    /// `request` for `capsule`.
    pub fn undirected(self) -> Self {
        match self.body {
            CapsuleRequest::At { capsule, request } => Request {
                capsule,
                body: *request,
                ..self
            },
            _ => self,
        }
    }
}

/// A response for a peer: an answer to a request, or a subscription event
/// (which carries the id of the `Subscribe` request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The peer it goes to.
    pub to: Name,
    /// The capsule it comes from.
    pub capsule: Name,
    /// The request id it answers.
    pub request_id: u64,
    /// The response.
    pub body: CapsuleResponse,
}

impl Response {
    /// The response as a Capsule PDU from the capsule to the peer.
    pub fn to_pdu(&self) -> Result<Pdu, PduError> {
        self.body.to_pdu(self.to, self.capsule, self.request_id)
    }
}

/// Identifies a write handed to the driver, to report its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// What the service asks its driver to do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Output {
    /// Send this response.
    Respond(Response),
    /// Make this write durable (through the committer), then report the
    /// result with [`CapsuleService::on_commit`]. Writes must be submitted in
    /// the order they are output.
    Commit {
        /// Identifies the write.
        ticket: Ticket,
        /// The write.
        write: Write,
    },
    /// Send these records to the capsule's delivery tree, as a `Publish`
    /// PDU to the router (see [`tree`](self#delivery-trees)).
    Publish(Publish),
    /// Send this request to another server (a replica of the capsule; see
    /// [`sync`]); its answer comes back through
    /// [`CapsuleService::on_peer_response`].
    Request(PeerRequest),
}

/// A request refused before it reached the capsule logic.
#[derive(Debug)]
struct Rejection {
    code: ErrorCode,
    message: String,
    /// The limit that refused it, if one did (a malformed request is not
    /// counted as a refusal).
    refusal: Option<Refusal>,
}

/// Who is waiting for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiter {
    peer: Name,
    request_id: u64,
}

#[derive(Debug)]
enum Creation {
    Durable,
    Pending(Vec<Waiter>),
}

/// An append that passed its checks and waits to be durable.
#[derive(Debug)]
struct PendingAppend {
    ticket: Ticket,
    records: Vec<Record>,
    heartbeat: VerifiedHeartbeat,
    /// The chain state once it is durable.
    after: ChainState,
    bytes: usize,
    waiters: Vec<Waiter>,
    result: Option<Result<(), StoreError>>,
}

impl PendingAppend {
    fn first(&self) -> u64 {
        self.records.first().map_or(0, Record::seqno)
    }
    fn last(&self) -> u64 {
        self.after.tail_seqno()
    }
}

#[derive(Debug)]
struct Subscriber {
    request_id: u64,
    /// The next seqno to deliver.
    next: u64,
    /// In the service's backlog queue.
    queued: bool,
}

/// A hosted capsule.
#[derive(Debug)]
struct Hosted {
    metadata: Metadata,
    adcert: AdCert,
    creation: Creation,
    durable: ChainState,
    /// The newest durable heartbeat; `None` while there are no records.
    heartbeat: Option<VerifiedHeartbeat>,
    optimistic: ChainState,
    pending: VecDeque<PendingAppend>,
    pending_bytes: usize,
    /// Writes output and not yet reported back.
    in_flight: usize,
    /// A commit failed; appends wait until the state is reloaded.
    recovering: bool,
    subscribers: HashMap<Name, Subscriber>,
    records_bucket: Option<TokenBucket>,
    /// The router's lease on the capsule's delivery tree.
    tree: Option<tree::Lease>,
    /// Replica set and anti-entropy state.
    sync: sync::SyncState,
}

impl Hosted {
    fn new(
        metadata: Metadata,
        adcert: AdCert,
        creation: Creation,
        chain: ChainState,
        heartbeat: Option<VerifiedHeartbeat>,
    ) -> Self {
        Hosted {
            metadata,
            adcert,
            creation,
            optimistic: chain.clone(),
            durable: chain,
            heartbeat,
            pending: VecDeque::new(),
            pending_bytes: 0,
            in_flight: 0,
            recovering: false,
            subscribers: HashMap::new(),
            records_bucket: None,
            tree: None,
            sync: sync::SyncState::default(),
        }
    }

    fn from_loaded(c: LoadedCapsule) -> Self {
        let mut h = Self::new(
            c.metadata,
            c.adcert,
            Creation::Durable,
            c.chain,
            c.heartbeat,
        );
        h.sync.set = c.replicas;
        h
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TicketKind {
    Create,
    Append,
    Fork,
    AdCert,
    Replicas,
}

#[derive(Debug)]
struct TicketEntry {
    capsule: Name,
    kind: TicketKind,
    /// The write's outcome no longer matters (an earlier append failed).
    cancelled: bool,
}

/// Outputs and the tickets of writes in flight.
#[derive(Debug, Default)]
struct Outbox {
    outputs: VecDeque<Output>,
    tickets: HashMap<Ticket, TicketEntry>,
    next_ticket: u64,
}

impl Outbox {
    fn respond(&mut self, to: Waiter, capsule: Name, body: CapsuleResponse) {
        self.outputs.push_back(Output::Respond(Response {
            to: to.peer,
            capsule,
            request_id: to.request_id,
            body,
        }));
    }

    fn error(&mut self, to: Waiter, capsule: Name, code: ErrorCode, message: impl Into<String>) {
        self.respond(to, capsule, CapsuleResponse::error(code, message));
    }

    /// Outputs `write` for the driver to commit.
    fn commit(&mut self, h: &mut Hosted, capsule: Name, kind: TicketKind, write: Write) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.tickets.insert(
            ticket,
            TicketEntry {
                capsule,
                kind,
                cancelled: false,
            },
        );
        h.in_flight += 1;
        self.outputs.push_back(Output::Commit { ticket, write });
        ticket
    }

    /// Fails every pending append of `h` (and a pending creation) with a
    /// retryable error, drops its optimistic state and marks it recovering.
    fn fail_pending(&mut self, h: &mut Hosted, capsule: Name, why: &str) {
        let message = format!(
            "the write failed ({why}); nothing after seqno {} is acknowledged; retry (resending is safe)",
            h.durable.tail_seqno()
        );
        if let Creation::Pending(waiters) = &mut h.creation {
            for w in waiters.drain(..) {
                self.error(w, capsule, ErrorCode::Internal, message.clone());
            }
        }
        for p in h.pending.drain(..) {
            if let Some(t) = self.tickets.get_mut(&p.ticket) {
                t.cancelled = true;
            }
            for w in p.waiters {
                self.error(w, capsule, ErrorCode::Internal, message.clone());
            }
        }
        h.pending_bytes = 0;
        h.optimistic = h.durable.clone();
        h.recovering = true;
    }
}

/// The capsule logic of a server. See the [module docs](self).
#[derive(Debug)]
pub struct CapsuleService {
    config: ServiceConfig,
    server: Name,
    store: Store,
    capsules: HashMap<Name, Hosted>,
    damaged: HashMap<Name, StoreError>,
    out: Outbox,
    peers: PeerLimiter,
    /// Subscribers behind the durable tail: (capsule, peer).
    lagging: VecDeque<(Name, Name)>,
    subs_by_peer: HashMap<Name, HashSet<Name>>,
    creators: create::Creators,
    stats: ServiceStats,
    log: RefusalLog,
    /// Tree lease deadlines (tips due, leases ending), earliest first;
    /// entries of replaced leases are skipped when they come up.
    tree_timers: BinaryHeap<Reverse<(Timestamp, Name)>>,
    /// Capsules with a tree lease.
    leases: usize,
    /// Requests to other replicas waiting for their answer, by request id.
    calls: HashMap<u64, sync::Call>,
    /// The request id of the next call.
    next_call: u64,
    /// Sync rounds due, earliest first; entries no longer due are skipped.
    sync_timers: BinaryHeap<Reverse<(Timestamp, Name)>>,
}

/// The error code for a heartbeat or proof error.
pub(crate) fn code_for_proof(e: &ProofError) -> ErrorCode {
    match e {
        ProofError::NotWriter { .. } => ErrorCode::NotWriter,
        ProofError::BadSignature
        | ProofError::NotCovered { .. }
        | ProofError::HeartbeatMismatch => ErrorCode::BadHeartbeat,
        ProofError::Gap { .. } => ErrorCode::Gap,
        ProofError::BadPrev { .. }
        | ProofError::BadPointer { .. }
        | ProofError::PathHashMismatch { .. } => ErrorCode::BadChain,
        _ => ErrorCode::BadRequest,
    }
}

/// The error code for a chain error (records that do not continue the
/// capsule's chain, or the heartbeat that closes them).
pub(crate) fn code_for_chain(e: &ChainError) -> ErrorCode {
    match e {
        ChainError::Proof(e) => code_for_proof(e),
        ChainError::NotWriter { .. } => ErrorCode::NotWriter,
        ChainError::Gap { .. } => ErrorCode::Gap,
        ChainError::BadPrev { .. }
        | ChainError::BadSkip { .. }
        | ChainError::PathHashMismatch { .. } => ErrorCode::BadChain,
        ChainError::Record(RecordError::PayloadTooLarge { .. }) => ErrorCode::TooLarge,
        _ => ErrorCode::BadRequest,
    }
}

impl CapsuleService {
    /// A service for server `server` over `store`, hosting the capsules the
    /// store loaded in `report`. Damaged capsules are refused with
    /// [`ErrorCode::Internal`].
    pub fn new(
        config: ServiceConfig,
        server: Name,
        store: Store,
        report: OpenReport,
    ) -> Result<Self, ConfigError> {
        config.check()?;
        let creators = create::Creators::new(report.capsules.iter().map(|c| c.metadata.key()));
        let capsules: HashMap<Name, Hosted> = report
            .capsules
            .into_iter()
            .map(|c| (c.metadata.name(), Hosted::from_loaded(c)))
            .collect();
        // Replicated capsules sync at once after a restart.
        let sync_timers = capsules
            .iter()
            .filter(|(_, h)| h.sync.set.is_some())
            .map(|(name, _)| Reverse((Timestamp(0), *name)))
            .collect();
        let damaged = report
            .damaged
            .into_iter()
            .map(|d| (d.capsule, d.error))
            .collect();
        Ok(CapsuleService {
            config,
            server,
            store,
            capsules,
            damaged,
            out: Outbox::default(),
            peers: PeerLimiter::default(),
            lagging: VecDeque::new(),
            subs_by_peer: HashMap::new(),
            creators,
            stats: ServiceStats::default(),
            log: RefusalLog::default(),
            tree_timers: BinaryHeap::new(),
            leases: 0,
            calls: HashMap::new(),
            // Not from 1: answers to calls made before a restart must not
            // match the calls made after it.
            next_call: rand::random::<u64>() >> 1,
            sync_timers,
        })
        .map(|mut service| {
            let names: Vec<Name> = service
                .sync_timers
                .iter()
                .map(|Reverse((_, n))| *n)
                .collect();
            for name in names {
                if let Some(h) = service.capsules.get_mut(&name) {
                    h.sync.due = Some(Timestamp(0));
                }
            }
            service
        })
    }

    /// What the service counted so far: refusals by reason, creates,
    /// departed peers.
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// Answers `w` with an error for a refusal of `reason`, counting and
    /// logging it.
    fn refuse(
        &mut self,
        now: Timestamp,
        w: Waiter,
        capsule: Name,
        reason: Refusal,
        code: ErrorCode,
        message: String,
    ) {
        self.log
            .refused(&mut self.stats, now, reason, w.peer, capsule, &message);
        self.out.error(w, capsule, code, message);
    }

    /// This server's name.
    pub fn server(&self) -> Name {
        self.server
    }

    /// The limits in force.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The hosted capsules with their AdCerts (what the driver advertises).
    pub fn hosted(&self) -> impl Iterator<Item = (&Metadata, &AdCert)> {
        self.capsules.values().map(|h| (&h.metadata, &h.adcert))
    }

    /// Hosted capsules whose newest replica set leaves this server out
    /// (it was retired): they are not advertised.
    pub fn retired(&self) -> impl Iterator<Item = Name> + '_ {
        self.capsules.iter().filter_map(|(name, h)| {
            let set = h.sync.set.as_ref()?;
            (!set.contains(&self.server)).then_some(*name)
        })
    }

    /// The durable tail of `capsule`, if it is hosted.
    pub fn durable_tail(&self, capsule: &Name) -> Option<u64> {
        self.capsules.get(capsule).map(|h| h.durable.tail_seqno())
    }

    /// Appends of `capsule` waiting to become durable.
    pub fn pending_appends(&self, capsule: &Name) -> usize {
        self.capsules.get(capsule).map_or(0, |h| h.pending.len())
    }

    /// Why `capsule` is not served, if the store found it damaged.
    pub fn damage(&self, capsule: &Name) -> Option<&StoreError> {
        self.damaged.get(capsule)
    }

    /// Handles one request. See [`CapsuleService::handle_batch`].
    pub fn handle(&mut self, now: Timestamp, request: Request) {
        self.handle_batch(now, [request]);
    }

    /// Handles requests in order, verifying the heartbeats of all their
    /// appends in one batch. Answers and writes are queued for
    /// [`CapsuleService::poll_output`].
    pub fn handle_batch(&mut self, now: Timestamp, requests: impl IntoIterator<Item = Request>) {
        let mut admitted = Vec::new();
        for req in requests {
            let req = req.undirected();
            match self.admit(now, &req) {
                Ok(()) => admitted.push(req),
                Err(Rejection {
                    code,
                    message,
                    refusal: Some(reason),
                }) => self.refuse(now, waiter(&req), req.capsule, reason, code, message),
                Err(r) => self.out.error(waiter(&req), req.capsule, r.code, r.message),
            }
        }
        let verdicts = self.verify_appends(&admitted);
        for (req, verdict) in admitted.into_iter().zip(verdicts) {
            self.dispatch(now, req, verdict);
        }
    }

    /// Rate limits and the checks that need no state. The capsule's record
    /// bucket is only looked at here: it is charged once the heartbeat
    /// verified.
    fn admit(&mut self, now: Timestamp, req: &Request) -> Result<(), Rejection> {
        if let Some(rate) = self.config.peer_requests
            && let Err(wait) = self
                .peers
                .admit(rate, self.config.max_tracked_peers, req.from, now)
        {
            return Err(Rejection {
                code: ErrorCode::RateLimited,
                message: format!(
                    "rate limited: peer {} is over its limit of {} requests/s (burst {}); retry in {}",
                    req.from.short(),
                    rate.per_second,
                    rate.burst,
                    describe_wait(wait)
                ),
                refusal: Some(Refusal::PeerRate),
            });
        }
        let CapsuleRequest::Append { records, heartbeat } = &req.body else {
            return Ok(());
        };
        append::precheck(&self.config, &req.capsule, records, heartbeat)?;
        let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
        self.check_capsule_rate(now, &req.capsule, n)
    }

    /// Verifies the heartbeats of the appends to hosted capsules in one batch.
    fn verify_appends(
        &self,
        requests: &[Request],
    ) -> Vec<Option<Result<VerifiedHeartbeat, ProofError>>> {
        let mut index = Vec::new();
        let mut items: Vec<(&Metadata, &Heartbeat)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            if let CapsuleRequest::Append { heartbeat, .. } = &r.body
                && let Some(h) = self.capsules.get(&r.capsule)
                && !h.recovering
            {
                index.push(i);
                items.push((&h.metadata, heartbeat));
            }
        }
        let results = match items.as_slice() {
            [] => Vec::new(),
            [(md, hb)] => vec![hb.verify(md)],
            _ => verify_heartbeats(&items),
        };
        let mut out = vec![None; requests.len()];
        for (i, r) in index.into_iter().zip(results) {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(r);
            }
        }
        out
    }

    fn dispatch(
        &mut self,
        now: Timestamp,
        req: Request,
        verdict: Option<Result<VerifiedHeartbeat, ProofError>>,
    ) {
        let w = waiter(&req);
        let capsule = req.capsule;
        match req.body {
            CapsuleRequest::Create { metadata, adcert } => {
                self.create(now, w, capsule, metadata, adcert)
            }
            CapsuleRequest::Append { records, heartbeat } => {
                self.append(now, w, capsule, records, heartbeat, verdict)
            }
            CapsuleRequest::Read { seqno } => self.read(w, capsule, seqno, seqno),
            CapsuleRequest::ReadRange { from, to } => self.read(w, capsule, from, to),
            CapsuleRequest::Latest => self.latest(w, capsule),
            CapsuleRequest::Subscribe { from } => self.subscribe(now, w, capsule, from),
            CapsuleRequest::Unsubscribe => self.unsubscribe(w, capsule),
            CapsuleRequest::Sync { tail, hash } => self.answer_sync(now, w, capsule, tail, hash),
            CapsuleRequest::GetReplicas => self.get_replicas(w, capsule),
            CapsuleRequest::SetReplicas { set } => self.set_replicas(now, w, capsule, set),
            CapsuleRequest::GetForks => self.get_forks(w, capsule),
            CapsuleRequest::GetMetadata => {
                if self.check_hosted(w, capsule)
                    && let Some(h) = self.capsules.get(&capsule)
                {
                    let metadata = h.metadata.clone();
                    self.out
                        .respond(w, capsule, CapsuleResponse::Metadata { metadata });
                }
            }
            _ => self.out.error(
                w,
                capsule,
                ErrorCode::BadRequest,
                "this server does not support that request",
            ),
        }
    }

    /// True if `capsule` is hosted and served; otherwise answers why not.
    fn check_hosted(&mut self, w: Waiter, capsule: Name) -> bool {
        if let Some(e) = self.damaged.get(&capsule) {
            let message = format!(
                "capsule {capsule} is damaged in this server's store and is not served: {e}"
            );
            self.out.error(w, capsule, ErrorCode::Internal, message);
            return false;
        }
        if !self.capsules.contains_key(&capsule) {
            self.out.error(
                w,
                capsule,
                ErrorCode::NotHosted,
                format!("this server does not host capsule {capsule}"),
            );
            return false;
        }
        true
    }

    /// Reports the result of the write `ticket`.
    pub fn on_commit(&mut self, now: Timestamp, ticket: Ticket, result: Result<(), StoreError>) {
        let Some(entry) = self.out.tickets.remove(&ticket) else {
            tracing::warn!(ticket = ticket.0, "result for an unknown write");
            return;
        };
        let capsule = entry.capsule;
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        h.in_flight = h.in_flight.saturating_sub(1);
        if !entry.cancelled {
            match (entry.kind, result) {
                (TicketKind::Create, Ok(())) => {
                    if let Creation::Pending(waiters) =
                        std::mem::replace(&mut h.creation, Creation::Durable)
                    {
                        self.stats.created += 1;
                        crate::metrics::created();
                        for w in waiters {
                            self.out.respond(w, capsule, CapsuleResponse::Created);
                        }
                    }
                }
                (TicketKind::Create, Err(e)) => {
                    tracing::error!(%capsule, error = %e, "storing a new capsule failed");
                    self.out.fail_pending(h, capsule, &e.to_string());
                }
                (TicketKind::Append, result) => {
                    if let Some(p) = h.pending.iter_mut().find(|p| p.ticket == ticket) {
                        p.result = Some(result);
                    }
                    self.settle(now, capsule);
                }
                (TicketKind::Fork, Err(e)) => {
                    tracing::error!(%capsule, error = %e, "storing fork evidence failed");
                }
                (TicketKind::AdCert, Err(e)) => {
                    tracing::error!(%capsule, error = %e, "storing a renewed AdCert failed");
                }
                (TicketKind::Replicas, result) => self.replicas_stored(capsule, ticket, result),
                (TicketKind::Fork | TicketKind::AdCert, Ok(())) => {}
            }
        }
        if let Some(h) = self.capsules.get(&capsule)
            && h.recovering
            && h.in_flight == 0
        {
            self.recover(capsule);
        }
    }

    /// Moves the durable state forward over every settled pending append at
    /// the front, in order.
    fn settle(&mut self, now: Timestamp, capsule: Name) {
        loop {
            let Some(h) = self.capsules.get_mut(&capsule) else {
                return;
            };
            match h.pending.front().and_then(|p| p.result.as_ref()) {
                None => return,
                Some(Err(e)) => {
                    let why = e.to_string();
                    tracing::error!(%capsule, error = %why, "append commit failed");
                    self.out.fail_pending(h, capsule, &why);
                    return;
                }
                Some(Ok(())) => {}
            }
            let Some(p) = h.pending.pop_front() else {
                return;
            };
            h.pending_bytes = h.pending_bytes.saturating_sub(p.bytes);
            h.durable = p.after.clone();
            h.heartbeat = Some(p.heartbeat.clone());
            let tail = p.last();
            crate::metrics::appended(tail - p.first() + 1);
            for w in &p.waiters {
                self.out
                    .respond(*w, capsule, CapsuleResponse::Appended { tail });
            }
            self.publish(capsule, &p);
            self.publish_append(now, capsule, &p);
        }
    }

    /// Reloads a capsule from the store after a failed write, once nothing
    /// of it is in flight.
    fn recover(&mut self, capsule: Name) {
        match self.store.load_capsule(&capsule) {
            Ok(Some(loaded)) => {
                let Some(h) = self.capsules.get_mut(&capsule) else {
                    return;
                };
                tracing::info!(%capsule, tail = loaded.chain.tail_seqno(), "capsule state reloaded");
                h.durable = loaded.chain.clone();
                h.optimistic = loaded.chain;
                h.heartbeat = loaded.heartbeat;
                h.adcert = loaded.adcert;
                h.creation = Creation::Durable;
                h.recovering = false;
                let tail = h.durable.tail_seqno();
                for (peer, sub) in &mut h.subscribers {
                    if sub.next <= tail && !sub.queued {
                        sub.queued = true;
                        self.lagging.push_back((capsule, *peer));
                    }
                }
            }
            Ok(None) => {
                self.drop_capsule(capsule, ErrorCode::NotFound, "the capsule was not stored")
            }
            Err(e) => {
                tracing::error!(%capsule, error = %e, "capsule cannot be reloaded; no longer served");
                let why = format!("the capsule is damaged in this server's store: {e}");
                self.damaged.insert(capsule, e);
                self.drop_capsule(capsule, ErrorCode::Internal, &why);
            }
        }
    }

    /// Stops hosting `capsule`, ending its subscriptions with an error.
    fn drop_capsule(&mut self, capsule: Name, code: ErrorCode, why: &str) {
        let Some(h) = self.capsules.remove(&capsule) else {
            return;
        };
        self.drop_lease(h.tree.is_some());
        self.forget_calls(&capsule);
        self.creators.remove(h.metadata.key());
        for (peer, sub) in h.subscribers {
            read::forget_subscription(&mut self.subs_by_peer, &peer, &capsule);
            let w = Waiter {
                peer,
                request_id: sub.request_id,
            };
            self.out
                .error(w, capsule, code, format!("subscription ended: {why}"));
        }
    }

    /// Forgets everything about `peer`, which went away (the router has no
    /// route to it any more): its subscriptions and rate-limit state.
    pub fn peer_gone(&mut self, peer: &Name) {
        self.peers.forget(peer);
        let subscriptions = self.subs_by_peer.remove(peer).unwrap_or_default();
        crate::metrics::subscriptions_changed(-(subscriptions.len() as f64));
        let mut dropped = 0;
        for capsule in subscriptions {
            if let Some(h) = self.capsules.get_mut(&capsule)
                && h.subscribers.remove(peer).is_some()
            {
                dropped += 1;
            }
        }
        self.stats.peers_gone += 1;
        self.stats.subscriptions_dropped += dropped;
        crate::metrics::peer_gone(dropped);
        tracing::debug!(peer = %peer.short(), subscriptions = dropped, "peer gone; forgotten");
    }

    /// The next thing for the driver to do. Subscription backlog is read
    /// from the store lazily, one response per call once everything else is
    /// out, so send each output before polling the next.
    ///
    /// Answers addressed to this server itself (to the appends it makes
    /// with records fetched from other replicas) are not output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.poll_output_with(true)
    }

    /// [`CapsuleService::poll_output`], leaving the subscription backlog
    /// in the store unless `backlog`: a host whose responses still wait to
    /// leave reads no more backlog, so that one subscriber catching up
    /// holds a few responses in memory rather than its whole backlog, and
    /// the answers to everyone else do not queue behind it.
    pub fn poll_output_with(&mut self, backlog: bool) -> Option<Output> {
        loop {
            let next = self
                .out
                .outputs
                .pop_front()
                .or_else(|| backlog.then(|| self.next_backlog()).flatten())?;
            match next {
                Output::Respond(r) if r.to == self.server => {
                    if let CapsuleResponse::Error { code, message } = &r.body {
                        tracing::debug!(capsule = %r.capsule, ?code, %message,
                            "records from another replica not applied");
                    }
                }
                other => return Some(other),
            }
        }
    }

    /// True if [`CapsuleService::poll_output`] may have something.
    pub fn has_output(&self) -> bool {
        self.has_output_with(true)
    }

    /// True if [`CapsuleService::poll_output_with`] may have something.
    pub fn has_output_with(&self, backlog: bool) -> bool {
        !self.out.outputs.is_empty() || (backlog && !self.lagging.is_empty())
    }
}

fn waiter(req: &Request) -> Waiter {
    Waiter {
        peer: req.from,
        request_id: req.request_id,
    }
}
