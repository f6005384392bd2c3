//! Replicas: the replica set of a capsule and anti-entropy between its
//! servers.
//!
//! A capsule may live on several servers. Its owner signs a [`ReplicaSet`]
//! (the servers, with a version) and hands it to each of them with
//! `SetReplicas`; a server keeps a set only if it verifies against the
//! capsule's metadata and is newer than the one it has, so replaying an old
//! set cannot bring back a retired server. It answers once the set is
//! durable, so a set it acknowledged survives a crash. A server that is in the set it
//! holds syncs with every other server of the set; one that is not (it was
//! retired) stops syncing and keeps what it has.
//!
//! # A sync round
//!
//! Every `sync_interval` (and at once when a set arrives, when another
//! replica shows it is ahead, and after each piece while catching up), a server
//! sends each peer `At{capsule, Sync{tail, hash}}`: its optimistic tail and
//! the hash of the record there. The peer answers from its durable state:
//!
//! ```text
//! asker's tail > peer's tail          Synced{peer tail}   (the peer then pulls from the asker)
//! peer's record at tail differs       Forks{[its record there, with a proof]}
//! same record, same tail              Synced{tail}
//! same record, peer has more          Records{tail+1 ..= e, proof}  where an append ended at e
//! ```
//!
//! The records of a `Records` answer end where one of the peer's appends
//! ended, so the heartbeat stored with that append covers the last one and
//! the asker applies them as an ordinary append: the heartbeat is verified,
//! the chain checked, a different record at a seqno the asker has is a fork,
//! and the commit is durable before the records are served. The asker then
//! asks again at once, until `Synced`, when it is catching up: no writer
//! appended to it since the round began, or one did and was refused with
//! `Gap` (this replica missed records). While a writer streams to every
//! replica without gaps, what a peer has beyond the asker's tail is already
//! on its way to the asker, so chasing it would only fetch each record
//! twice: the next round fetches whatever did not come. A round between replicas in sync is
//! one small request and answer per peer, and catching up costs in
//! proportion to what is missing: the capsule's length never matters.
//!
//! # Forks
//!
//! When the peer's record at the asker's tail differs, each side learns it:
//! the asker from the `Forks` answer, the peer by reading the asker's record
//! at that seqno (a `ReadRange` of one record, whose proof makes it
//! evidence). Evidence is kept only if the writer's heartbeat commits to the
//! record, the record differs from the one held here and no evidence is kept
//! at that seqno yet (a known fork is not fetched, counted or reported again
//! at every round); it is served with
//! `GetForks`, never as part of the chain, and the replicas stop converging
//! past the fork: which branch is the capsule is for its owner to decide.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use gdp_certs::cert::ReplicaSet;
use gdp_certs::codec::Encode;
use gdp_certs::{Name, Timestamp};
use gdp_proto::capsule::{
    CapsuleRequest, CapsuleResponse, ErrorCode, MAX_APPEND_RECORDS, MAX_FORKS_PER_RESPONSE,
};
use gdp_proto::fork::ForkEvidence;
use gdp_proto::pdu::{Pdu, PduError};
use gdp_proto::proof::Heartbeat;
use gdp_proto::record::{Record, RecordHash};

use super::append::{hash_at, precheck};
use super::read::response_room;
use super::{CapsuleService, Output, Ticket, TicketKind, Waiter};
use crate::store::{StoreError, Write};

/// Room left beside the records of a sync piece for its proof: a heartbeat
/// and the header of the last record (at most 64 skip hashes). An append
/// that came closer than this to the PDU limit is sent if its proof fits
/// (checked exactly), else refused with an error naming `ReadRange`.
const PIECE_PROOF_RESERVE: usize = 4096;

/// A request this server sends to another server (a peer replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRequest {
    /// The server it goes to.
    pub to: Name,
    /// The request id, echoed in the answer.
    pub request_id: u64,
    /// The request (directed: an `At`).
    pub body: CapsuleRequest,
}

impl PeerRequest {
    /// The request as a Capsule PDU from `server` (this server's name).
    pub fn to_pdu(&self, server: Name) -> Result<Pdu, PduError> {
        self.body.to_pdu(self.to, server, self.request_id)
    }
}

/// An answer to one of this server's [`PeerRequest`]s, as the driver
/// received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerResponse {
    /// The PDU's source (the peer, or the capsule it answers for).
    pub from: Name,
    /// The PDU's request id.
    pub request_id: u64,
    /// The answer.
    pub body: CapsuleResponse,
}

/// What a call to a peer asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CallKind {
    /// A `Sync`.
    Sync,
    /// The peer's record at a seqno where the records differ.
    Evidence,
}

/// A request to a peer waiting for its answer.
#[derive(Debug)]
pub(super) struct Call {
    capsule: Name,
    peer: Name,
    kind: CallKind,
    sent: Timestamp,
}

/// An answer to `SetReplicas` waiting for a replica set's write to be
/// durable.
#[derive(Debug)]
pub(super) struct SetWaiter {
    /// The write of `set`.
    ticket: Ticket,
    /// The set in force once that write is durable.
    set: ReplicaSet,
    waiter: Waiter,
}

/// Replication state of one hosted capsule.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// The newest verified replica set.
    pub(super) set: Option<ReplicaSet>,
    /// When the next round is due (only the timer entry at this time
    /// counts).
    pub(super) due: Option<Timestamp>,
    /// The call of each kind in flight to each peer: its request id. A new
    /// call replaces the one before, so at most two per peer are held.
    calls: HashMap<(Name, CallKind), u64>,
    /// Answers to `SetReplicas` waiting for their write, oldest first.
    set_waiters: Vec<SetWaiter>,
    /// Seqnos where fork evidence was kept since the capsule was loaded
    /// (the store has the rest), so a fork is counted and reported once,
    /// not again at every round.
    pub(super) forks: HashSet<u64>,
    /// A writer's append took new records here since the round began.
    pub(super) fed: bool,
    /// A writer's append did not continue the tail here (`Gap`) since the
    /// round began: records are missing.
    pub(super) gap_seen: bool,
}

impl CapsuleService {
    /// The replica set this server holds for `capsule`.
    pub fn replicas(&self, capsule: &Name) -> Option<&ReplicaSet> {
        self.capsules.get(capsule)?.sync.set.as_ref()
    }

    /// The servers this one syncs `capsule` with: the others of its set, if
    /// this server is in it.
    fn sync_peers(&self, capsule: &Name) -> Vec<Name> {
        match self.replicas(capsule) {
            Some(set) if set.contains(&self.server) => set
                .servers()
                .iter()
                .filter(|s| **s != self.server)
                .copied()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Makes a sync round of `capsule` due at `at` (unless one is due
    /// sooner).
    pub(super) fn schedule_sync(&mut self, capsule: Name, at: Timestamp) {
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        if h.sync.due.is_some_and(|due| due <= at) {
            return;
        }
        h.sync.due = Some(at);
        self.sync_timers.push(Reverse((at, capsule)));
    }

    /// When the next sync round is due.
    pub(super) fn next_sync(&self) -> Option<Timestamp> {
        self.sync_timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs the sync rounds due at `now`.
    pub(super) fn sync_due(&mut self, now: Timestamp) {
        while let Some(Reverse((at, capsule))) = self.sync_timers.peek().copied() {
            if at > now {
                break;
            }
            self.sync_timers.pop();
            let Some(h) = self.capsules.get_mut(&capsule) else {
                continue;
            };
            if h.sync.due != Some(at) {
                continue;
            }
            h.sync.due = None;
            h.sync.fed = false;
            h.sync.gap_seen = false;
            let peers = self.sync_peers(&capsule);
            if peers.is_empty() {
                continue;
            }
            for peer in peers {
                self.sync_with(now, capsule, peer);
            }
            let next = now.saturating_add(self.config.sync_interval);
            self.schedule_sync(capsule, next);
        }
    }

    /// Sends `peer` a `Sync` for `capsule`, unless one is in flight and not
    /// yet timed out.
    fn sync_with(&mut self, now: Timestamp, capsule: Name, peer: Name) {
        let timeout = self.config.sync_timeout;
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        if h.recovering {
            return;
        }
        if let Some(id) = h.sync.calls.get(&(peer, CallKind::Sync))
            && let Some(call) = self.calls.get(id)
        {
            if call.sent.saturating_add(timeout) > now {
                return;
            }
            self.stats.sync_timeouts += 1;
        }
        let body = CapsuleRequest::Sync {
            tail: h.optimistic.tail_seqno(),
            hash: h.optimistic.tail_hash(),
        };
        self.call(now, capsule, peer, CallKind::Sync, body);
        self.stats.sync_requests += 1;
    }

    /// Sends `peer` a request about `capsule` and remembers the call, in
    /// place of an earlier call of the same kind to the same peer (whose
    /// answer is then ignored).
    fn call(
        &mut self,
        now: Timestamp,
        capsule: Name,
        peer: Name,
        kind: CallKind,
        body: CapsuleRequest,
    ) {
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        let id = self.next_call;
        self.next_call = self.next_call.wrapping_add(1);
        if let Some(old) = h.sync.calls.insert((peer, kind), id) {
            self.calls.remove(&old);
        }
        self.calls.insert(
            id,
            Call {
                capsule,
                peer,
                kind,
                sent: now,
            },
        );
        self.out.outputs.push_back(Output::Request(PeerRequest {
            to: peer,
            request_id: id,
            body: CapsuleRequest::at(capsule, body),
        }));
    }

    /// Forgets the calls about `capsule` (no longer hosted).
    pub(super) fn forget_calls(&mut self, capsule: &Name) {
        self.calls.retain(|_, call| call.capsule != *capsule);
    }

    /// Answers a `Sync` from a peer (see the [module docs](self)).
    pub(super) fn answer_sync(
        &mut self,
        now: Timestamp,
        w: Waiter,
        capsule: Name,
        tail: u64,
        hash: RecordHash,
    ) {
        if !self.check_hosted(w, capsule) {
            return;
        }
        let Some(h) = self.capsules.get(&capsule) else {
            return;
        };
        let mine = h.durable.tail_seqno();
        let heartbeat = h.heartbeat.as_ref().map(|hb| hb.heartbeat().clone());
        if tail > mine {
            self.out
                .respond(w, capsule, CapsuleResponse::Synced { tail: mine });
            if self.sync_peers(&capsule).contains(&w.peer) {
                self.sync_with(now, capsule, w.peer);
            }
            return;
        }
        let here = if tail == 0 {
            Ok(Some(RecordHash::anchor(&capsule)))
        } else {
            self.store
                .record(&capsule, tail)
                .map(|r| r.map(|r| r.hash()))
        };
        let here = match here {
            Ok(Some(here)) => here,
            Ok(None) => {
                let m = format!("record {tail} is missing on this server");
                return self.out.error(w, capsule, ErrorCode::Internal, m);
            }
            Err(e) => return self.store_failure(w, capsule, e),
        };
        if here != hash {
            return self.answer_fork(now, w, capsule, tail, heartbeat);
        }
        if tail == mine {
            return self
                .out
                .respond(w, capsule, CapsuleResponse::Synced { tail: mine });
        }
        let Some(heartbeat) = heartbeat else {
            return;
        };
        match self.piece(&capsule, tail, mine, heartbeat) {
            Ok(Some(body)) => self.out.respond(w, capsule, body),
            Ok(None) => {
                let m = format!(
                    "no append ends within {MAX_APPEND_RECORDS} records after {tail}; read them with ReadRange"
                );
                self.out.error(w, capsule, ErrorCode::Internal, m);
            }
            Err(e) => self.store_failure(w, capsule, e),
        }
    }

    /// The records after `tail` up to where one of the appends stored here
    /// ended (at most [`MAX_APPEND_RECORDS`], within one response), with a
    /// proof from that append's heartbeat. `durable` is the newest
    /// heartbeat, used when the per-append heartbeats are missing (a
    /// capsule stored before they were kept).
    fn piece(
        &self,
        capsule: &Name,
        tail: u64,
        mine: u64,
        durable: Heartbeat,
    ) -> Result<Option<CapsuleResponse>, StoreError> {
        // The proof is one heartbeat and one header: far less than a read's
        // reserve, so that any append a writer could send fits one piece.
        let budget = response_room(&self.config, PIECE_PROOF_RESERVE);
        let mut records =
            self.store
                .records(capsule, tail + 1, mine, MAX_APPEND_RECORDS, budget)?;
        let Some(last) = records.last().map(Record::seqno) else {
            return Ok(None);
        };
        let heartbeat = match self.store.heartbeat_closing(capsule, tail + 1, last)? {
            Some(hb) => hb,
            None if last == mine => durable,
            None => return Ok(None),
        };
        records.truncate(usize::try_from(heartbeat.seqno - tail).unwrap_or(usize::MAX));
        let proof = self.store.proof(&heartbeat, heartbeat.seqno)?;
        let answer = CapsuleResponse::Records { records, proof };
        Ok((answer.encoded_len() <= self.config.max_response_bytes).then_some(answer))
    }

    /// Answers a `Sync` whose tail record differs from ours: our record
    /// there, with a proof, and a request for theirs (so both sides keep
    /// evidence).
    fn answer_fork(
        &mut self,
        now: Timestamp,
        w: Waiter,
        capsule: Name,
        seqno: u64,
        heartbeat: Option<Heartbeat>,
    ) {
        let (Some(heartbeat), true) = (heartbeat, seqno > 0) else {
            let m = "the hash for seqno 0 must be the capsule's anchor";
            return self.out.error(w, capsule, ErrorCode::BadRequest, m);
        };
        let evidence = self.store.record(&capsule, seqno).and_then(|r| {
            let record = r.ok_or(StoreError::Missing { capsule, seqno })?;
            let proof = self.store.proof(&heartbeat, seqno)?;
            Ok(ForkEvidence { record, proof })
        });
        match evidence {
            Ok(ev) => {
                // Once the peer's record there is kept as evidence, the
                // fork is known: answer, but fetch and report it no more.
                let known = self.fork_known(&capsule, seqno);
                if known {
                    tracing::debug!(%capsule, seqno, peer = %w.peer.short(), "replicas differ at a known fork");
                } else {
                    tracing::warn!(%capsule, seqno, peer = %w.peer.short(), "replicas differ: fork");
                }
                self.out
                    .respond(w, capsule, CapsuleResponse::Forks { evidence: vec![ev] });
                if !known && self.sync_peers(&capsule).contains(&w.peer) {
                    let read = CapsuleRequest::ReadRange {
                        from: seqno,
                        to: seqno,
                    };
                    self.call(now, capsule, w.peer, CallKind::Evidence, read);
                }
            }
            Err(e) => self.store_failure(w, capsule, e),
        }
    }

    /// Handles the answer of a peer to one of our calls.
    pub fn on_peer_response(&mut self, now: Timestamp, response: PeerResponse) {
        let Some(call) = self.calls.remove(&response.request_id) else {
            tracing::debug!(from = %response.from.short(), id = response.request_id,
                "answer to no call in flight ignored");
            return;
        };
        let capsule = call.capsule;
        if let Some(h) = self.capsules.get_mut(&capsule)
            && h.sync.calls.get(&(call.peer, call.kind)) == Some(&response.request_id)
        {
            h.sync.calls.remove(&(call.peer, call.kind));
        }
        if response.from != call.peer && response.from != capsule {
            tracing::debug!(from = %response.from.short(), "answer from an unexpected source ignored");
            return;
        }
        match (call.kind, response.body) {
            (CallKind::Sync, CapsuleResponse::Records { records, proof }) => {
                let advanced = self.apply_piece(now, capsule, records, proof.heartbeat);
                // Maybe more: ask again at once, from the new tail, unless a
                // writer is streaming to this replica without a gap: then
                // what the peer has beyond is in flight here already, and
                // the next round fetches whatever did not come.
                let chase = self
                    .capsules
                    .get(&capsule)
                    .is_some_and(|h| h.sync.gap_seen || !h.sync.fed);
                if advanced && chase {
                    self.sync_with(now, capsule, call.peer);
                }
            }
            (CallKind::Sync, CapsuleResponse::Synced { .. }) => {}
            (_, CapsuleResponse::Forks { evidence }) => self.take_evidence(capsule, evidence),
            (CallKind::Evidence, CapsuleResponse::Records { mut records, proof }) => {
                if let Some(record) = records.pop() {
                    self.take_evidence(capsule, vec![ForkEvidence { record, proof }]);
                }
            }
            (_, CapsuleResponse::Error { code, message }) => {
                tracing::debug!(%capsule, peer = %call.peer.short(), ?code, %message, "peer refused a sync request");
            }
            (_, other) => {
                tracing::debug!(%capsule, peer = %call.peer.short(), answer = ?other, "unexpected answer to a sync request");
            }
        }
    }

    /// Applies records a peer sent as an append of this server's own (its
    /// answers go nowhere: see [`CapsuleService::poll_output`]); true if
    /// the capsule's tail moved.
    fn apply_piece(
        &mut self,
        now: Timestamp,
        capsule: Name,
        records: Vec<Record>,
        heartbeat: Heartbeat,
    ) -> bool {
        if let Err(r) = precheck(&self.config, &capsule, &records, &heartbeat) {
            tracing::debug!(%capsule, error = %r.message, "records from a peer refused");
            return false;
        }
        let n = records.len() as u64;
        let w = Waiter {
            peer: self.server,
            request_id: 0,
        };
        let before = self
            .capsules
            .get(&capsule)
            .map(|h| h.optimistic.tail_seqno());
        self.append_records(now, w, capsule, records, heartbeat, None, false);
        let after = self
            .capsules
            .get(&capsule)
            .map(|h| h.optimistic.tail_seqno());
        let advanced = after > before;
        if advanced {
            self.stats.synced_records += n;
            crate::metrics::synced(n);
        }
        advanced
    }

    /// True if evidence of a fork of `capsule` at `seqno` is kept here
    /// already (or on its way to the store).
    fn fork_known(&self, capsule: &Name, seqno: u64) -> bool {
        let Some(h) = self.capsules.get(capsule) else {
            return false;
        };
        if h.sync.forks.contains(&seqno) {
            return true;
        }
        match self.store.forks(capsule) {
            Ok(kept) => kept.iter().any(|ev| ev.seqno() == seqno),
            Err(e) => {
                tracing::warn!(%capsule, error = %e, "reading the fork evidence kept failed");
                false
            }
        }
    }

    /// Keeps the evidence that verifies, differs from the record held here
    /// and is at a seqno with no evidence kept yet.
    fn take_evidence(&mut self, capsule: Name, evidence: Vec<ForkEvidence>) {
        let Some(h) = self.capsules.get(&capsule) else {
            return;
        };
        let mut keep: Vec<ForkEvidence> = Vec::new();
        for ev in evidence.into_iter().take(MAX_FORKS_PER_RESPONSE) {
            if keep.iter().any(|k| k.seqno() == ev.seqno()) || self.fork_known(&capsule, ev.seqno())
            {
                continue;
            }
            if ev.record.capsule() != &capsule || ev.verify(&h.metadata).is_err() {
                tracing::debug!(%capsule, seqno = ev.seqno(), "fork evidence that does not verify ignored");
                continue;
            }
            match hash_at(&self.store, &capsule, h, ev.seqno()) {
                Ok(Some(ours)) if ours != ev.record.hash() => keep.push(ev),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%capsule, error = %e, "reading a record to compare failed")
                }
            }
        }
        for evidence in keep {
            tracing::warn!(%capsule, seqno = evidence.seqno(), "fork found by anti-entropy; evidence kept");
            self.stats.forks_found += 1;
            if let Some(h) = self.capsules.get_mut(&capsule) {
                h.sync.forks.insert(evidence.seqno());
                self.out.commit(
                    h,
                    capsule,
                    TicketKind::Fork,
                    Write::Fork { capsule, evidence },
                );
            }
        }
    }

    /// Answers `GetReplicas`.
    pub(super) fn get_replicas(&mut self, w: Waiter, capsule: Name) {
        if !self.check_hosted(w, capsule) {
            return;
        }
        let set = self.replicas(&capsule).cloned();
        self.out
            .respond(w, capsule, CapsuleResponse::Replicas { set });
    }

    /// Answers `SetReplicas`: keeps `set` if it verifies and is newer than
    /// the one held, then answers with the set in force once it is durable
    /// (a set acknowledged and lost in a crash would leave this server out
    /// of replication until the owner sent it again).
    pub(super) fn set_replicas(
        &mut self,
        now: Timestamp,
        w: Waiter,
        capsule: Name,
        set: ReplicaSet,
    ) {
        if !self.check_hosted(w, capsule) {
            return;
        }
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        if set.capsule() != capsule {
            let m = format!(
                "the replica set is for capsule {}, not {capsule}",
                set.capsule()
            );
            return self.out.error(w, capsule, ErrorCode::BadRequest, m);
        }
        if let Err(e) = set.verify(&h.metadata) {
            let m = format!("the replica set does not verify: {e}");
            return self.out.error(w, capsule, ErrorCode::BadCert, m);
        }
        let newer = h
            .sync
            .set
            .as_ref()
            .is_none_or(|old| set.version() > old.version());
        if newer {
            tracing::info!(%capsule, version = set.version(), servers = set.servers().len(),
                member = set.contains(&self.server), "replica set updated");
            h.sync.set = Some(set.clone());
            let write = Write::SetReplicas {
                capsule,
                set: set.clone(),
            };
            let ticket = self.out.commit(h, capsule, TicketKind::Replicas, write);
            h.sync.set_waiters.push(SetWaiter {
                ticket,
                set,
                waiter: w,
            });
            self.schedule_sync(capsule, now);
            return;
        }
        // The set in force may still be on its way to the store.
        if let Some(last) = h.sync.set_waiters.last() {
            let (ticket, set) = (last.ticket, last.set.clone());
            h.sync.set_waiters.push(SetWaiter {
                ticket,
                set,
                waiter: w,
            });
            return;
        }
        let set = h.sync.set.clone();
        self.out
            .respond(w, capsule, CapsuleResponse::Replicas { set });
    }

    /// Reports the result of the replica set write `ticket`: answers the
    /// `SetReplicas` waiting for it (writes are durable in order, so also
    /// those waiting for earlier ones). If it failed, the set held goes back
    /// to the stored one, unless a newer write is still on its way.
    pub(super) fn replicas_stored(
        &mut self,
        capsule: Name,
        ticket: Ticket,
        result: Result<(), StoreError>,
    ) {
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        let n = h
            .sync
            .set_waiters
            .iter()
            .take_while(|s| s.ticket <= ticket)
            .count();
        let done: Vec<SetWaiter> = h.sync.set_waiters.drain(..n).collect();
        match result {
            Ok(()) => {
                for s in done {
                    let body = CapsuleResponse::Replicas { set: Some(s.set) };
                    self.out.respond(s.waiter, capsule, body);
                }
            }
            Err(e) => {
                tracing::error!(%capsule, error = %e, "storing a replica set failed");
                if h.sync.set_waiters.is_empty() {
                    match self.store.replicas(&capsule) {
                        Ok(stored) => h.sync.set = stored,
                        Err(e) => {
                            tracing::error!(%capsule, error = %e, "reading the stored replica set failed")
                        }
                    }
                }
                let m = format!("storing the replica set failed ({e}); retry");
                for s in done {
                    self.out
                        .error(s.waiter, capsule, ErrorCode::Internal, m.clone());
                }
            }
        }
    }

    /// Answers `GetForks` with the evidence kept for `capsule`.
    pub(super) fn get_forks(&mut self, w: Waiter, capsule: Name) {
        if !self.check_hosted(w, capsule) {
            return;
        }
        match self.store.forks(&capsule) {
            Ok(mut evidence) => {
                evidence.truncate(MAX_FORKS_PER_RESPONSE);
                self.out
                    .respond(w, capsule, CapsuleResponse::Forks { evidence });
            }
            Err(e) => self.store_failure(w, capsule, e),
        }
    }
}
