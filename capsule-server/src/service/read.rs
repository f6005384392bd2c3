//! Reads with proofs, and subscriptions.

use std::collections::{HashMap, HashSet};

use gdp_certs::codec::Encode;
use gdp_certs::{Name, Timestamp};
use gdp_proto::capsule::{CapsuleResponse, ErrorCode, MAX_RESPONSE_RECORDS};
use gdp_proto::proof::ProofError;
use gdp_proto::proof::{Heartbeat, Proof};
use gdp_proto::record::Record;

use super::{CapsuleService, Output, PendingAppend, Response, Subscriber, Waiter};
use crate::limits::{PROOF_RESERVE, ServiceConfig};
use crate::stats::Refusal;
use crate::store::{Store, StoreError};

/// Encoded bytes of a `Records` or `Event` response around its records and
/// proof: the type byte and the record count.
const FRAMING: usize = 1 + 2;

/// Bytes of records that fit one response beside a proof of `reserve`
/// bytes at most.
pub(super) fn response_room(config: &ServiceConfig, reserve: usize) -> usize {
    (config.max_response_bytes - FRAMING).saturating_sub(reserve)
}

/// Records from `from` (to at most `to`) read from the store, as many as fit
/// one response, with a proof of the last one from `heartbeat`.
///
/// Proofs are sized from seqnos alone ([`Proof::encoded_len_for`]), so the
/// records fill what the proof leaves (a proof from a heartbeat far ahead
/// of `from` is several KiB, one from close by a few hundred bytes), and
/// only the proof that is sent is read from the store.
pub(super) fn pack_stored(
    store: &Store,
    config: &ServiceConfig,
    capsule: &Name,
    heartbeat: &Heartbeat,
    from: u64,
    to: u64,
) -> Result<(Vec<Record>, Proof), StoreError> {
    let budget = config.max_response_bytes - FRAMING;
    let proof_len = |target: u64| {
        Proof::encoded_len_for(heartbeat.seqno, target).ok_or(StoreError::Missing {
            capsule: *capsule,
            seqno: target,
        })
    };
    // The path from the heartbeat to `from` is a guess for the one from
    // the last record read; a longer one costs that record below.
    let mut records = store.records(
        capsule,
        from,
        to,
        MAX_RESPONSE_RECORDS,
        budget.saturating_sub(proof_len(from)?.min(PROOF_RESERVE)),
    )?;
    let mut size: usize = records.iter().map(Encode::encoded_len).sum();
    loop {
        let Some(last) = records.last() else {
            return Err(StoreError::Missing {
                capsule: *capsule,
                seqno: from,
            });
        };
        if size + proof_len(last.seqno())? <= budget || records.len() == 1 {
            let proof = store.proof(heartbeat, last.seqno())?;
            return Ok((records, proof));
        }
        size -= last.encoded_len();
        records.pop();
    }
}

/// `records[start..]` (consecutive, in memory) split into responses, each
/// with a proof of its last record from `heartbeat`, whose record is in
/// `records` too.
pub(super) fn pack_batch(
    config: &ServiceConfig,
    records: &[Record],
    start: usize,
    heartbeat: &Heartbeat,
) -> Result<Vec<(Vec<Record>, Proof)>, ProofError> {
    let budget = (config.max_response_bytes - FRAMING).saturating_sub(PROOF_RESERVE);
    let first = records.first().map_or(0, Record::seqno);
    let lookup = |s: u64| {
        records
            .get(usize::try_from(s.checked_sub(first)?).ok()?)
            .map(Record::header)
    };
    let mut out = Vec::new();
    let mut chunk: Vec<Record> = Vec::new();
    let mut size = 0;
    for r in records.iter().skip(start) {
        let len = r.encoded_len();
        if !chunk.is_empty() && (size + len > budget || chunk.len() >= MAX_RESPONSE_RECORDS) {
            let last = chunk.last().map_or(0, Record::seqno);
            let proof = Proof::build(heartbeat.clone(), last, lookup)?;
            out.push((std::mem::take(&mut chunk), proof));
            size = 0;
        }
        size += len;
        chunk.push(r.clone());
    }
    if let Some(last) = chunk.last() {
        let proof = Proof::build(heartbeat.clone(), last.seqno(), lookup)?;
        out.push((chunk, proof));
    }
    Ok(out)
}

/// Removes `capsule` from the subscriptions `peer` holds.
pub(super) fn forget_subscription(
    subs_by_peer: &mut HashMap<Name, HashSet<Name>>,
    peer: &Name,
    capsule: &Name,
) {
    if let Some(s) = subs_by_peer.get_mut(peer) {
        if s.remove(capsule) {
            crate::metrics::subscriptions_changed(-1.0);
        }
        if s.is_empty() {
            subs_by_peer.remove(peer);
        }
    }
}

impl CapsuleService {
    /// Answers a failed store read.
    pub(super) fn store_failure(&mut self, w: Waiter, capsule: Name, e: StoreError) {
        let m = if e.is_damage() {
            tracing::error!(%capsule, error = %e, "damaged data found while reading");
            format!("not served: {e}")
        } else {
            tracing::error!(%capsule, error = %e, "store read failed");
            format!("this server failed to read the capsule: {e}")
        };
        self.out.error(w, capsule, ErrorCode::Internal, m);
    }

    pub(super) fn read(&mut self, w: Waiter, capsule: Name, from: u64, to: u64) {
        if !self.check_hosted(w, capsule) {
            return;
        }
        let Some(h) = self.capsules.get(&capsule) else {
            return;
        };
        if from > to {
            let m = format!("the range {from}..={to} ends before it starts");
            return self.out.error(w, capsule, ErrorCode::BadRequest, m);
        }
        let from = from.max(1);
        let tail = h.durable.tail_seqno();
        let hb = match &h.heartbeat {
            Some(hb) if from <= tail && from <= to => hb.heartbeat().clone(),
            _ => {
                let m = if tail == 0 {
                    format!("capsule {capsule} has no records yet")
                } else {
                    format!("no record {from}..={to}: the capsule's newest record is {tail}")
                };
                return self.out.error(w, capsule, ErrorCode::NotFound, m);
            }
        };
        match pack_stored(&self.store, &self.config, &capsule, &hb, from, to.min(tail)) {
            Ok((records, proof)) => {
                crate::metrics::read(records.len());
                self.out
                    .respond(w, capsule, CapsuleResponse::Records { records, proof });
            }
            Err(e) => self.store_failure(w, capsule, e),
        }
    }

    pub(super) fn latest(&mut self, w: Waiter, capsule: Name) {
        let tail = self
            .capsules
            .get(&capsule)
            .map_or(0, |h| h.durable.tail_seqno());
        // Seqno 0 answers "no records yet" (or why the capsule is not served).
        self.read(w, capsule, tail, tail);
    }

    pub(super) fn subscribe(&mut self, now: Timestamp, w: Waiter, capsule: Name, from: u64) {
        if !self.check_hosted(w, capsule) {
            return;
        }
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        let replacing = h.subscribers.get(&w.peer);
        if replacing.is_none() {
            let per_capsule = self.config.max_subscribers;
            if h.subscribers.len() >= per_capsule {
                let m = format!(
                    "capsule {} has its limit of {per_capsule} subscribers; retry later",
                    capsule.short(),
                );
                let code = ErrorCode::RateLimited;
                return self.refuse(now, w, capsule, Refusal::CapsuleSubscribers, code, m);
            }
            let per_peer = self.config.max_subscriptions_per_peer;
            let held = self.subs_by_peer.get(&w.peer).map_or(0, HashSet::len);
            if held >= per_peer {
                let m = format!(
                    "peer {} holds its limit of {per_peer} subscriptions on this server; unsubscribe from one first",
                    w.peer.short(),
                );
                let code = ErrorCode::RateLimited;
                return self.refuse(now, w, capsule, Refusal::PeerSubscriptions, code, m);
            }
        }
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        let replacing = h.subscribers.get(&w.peer);
        let next = from.max(1);
        let tail = h.durable.tail_seqno();
        let already_queued = replacing.is_some_and(|s| s.queued);
        let queued = next <= tail;
        h.subscribers.insert(
            w.peer,
            Subscriber {
                request_id: w.request_id,
                next,
                queued: queued || already_queued,
            },
        );
        if queued && !already_queued {
            self.lagging.push_back((capsule, w.peer));
        }
        if self.subs_by_peer.entry(w.peer).or_default().insert(capsule) {
            crate::metrics::subscriptions_changed(1.0);
        }
        self.out
            .respond(w, capsule, CapsuleResponse::Subscribed { tail });
    }

    pub(super) fn unsubscribe(&mut self, w: Waiter, capsule: Name) {
        if let Some(h) = self.capsules.get_mut(&capsule) {
            h.subscribers.remove(&w.peer);
        }
        forget_subscription(&mut self.subs_by_peer, &w.peer, &capsule);
        self.out.respond(w, capsule, CapsuleResponse::Unsubscribed);
    }

    /// Delivers a newly durable append to the subscribers it continues.
    pub(super) fn publish(&mut self, capsule: Name, p: &PendingAppend) {
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        let (first, last) = (p.first(), p.last());
        let mut packed: HashMap<u64, Vec<(Vec<Record>, Proof)>> = HashMap::new();
        for (peer, sub) in &mut h.subscribers {
            if sub.next < first || sub.next > last {
                continue;
            }
            let start = usize::try_from(sub.next - first).unwrap_or(usize::MAX);
            let events = match packed.get(&sub.next) {
                Some(e) => e,
                None => {
                    match pack_batch(&self.config, &p.records, start, p.heartbeat.heartbeat()) {
                        Ok(e) => packed.entry(sub.next).or_insert(e),
                        Err(e) => {
                            // Cannot happen with a checked batch; serve it from
                            // the store instead.
                            tracing::error!(%capsule, error = %e, "packing live events failed");
                            if !sub.queued {
                                sub.queued = true;
                                self.lagging.push_back((capsule, *peer));
                            }
                            continue;
                        }
                    }
                }
            };
            let w = Waiter {
                peer: *peer,
                request_id: sub.request_id,
            };
            for (records, proof) in events {
                self.out.respond(
                    w,
                    capsule,
                    CapsuleResponse::Event {
                        records: records.clone(),
                        proof: proof.clone(),
                    },
                );
            }
            sub.next = last + 1;
        }
    }

    /// One response of backlog for the next subscriber behind the durable
    /// tail, read from the store.
    pub(super) fn next_backlog(&mut self) -> Option<Output> {
        while let Some((capsule, peer)) = self.lagging.pop_front() {
            let Some(h) = self.capsules.get_mut(&capsule) else {
                continue;
            };
            let Some(sub) = h.subscribers.get_mut(&peer) else {
                continue;
            };
            let tail = h.durable.tail_seqno();
            let hb = match &h.heartbeat {
                Some(hb) if sub.next <= tail => hb.heartbeat().clone(),
                _ => {
                    sub.queued = false;
                    continue;
                }
            };
            let w = Waiter {
                peer,
                request_id: sub.request_id,
            };
            let body = match pack_stored(&self.store, &self.config, &capsule, &hb, sub.next, tail) {
                Ok((records, proof)) => {
                    sub.next = records.last().map_or(tail, Record::seqno) + 1;
                    if sub.next <= tail {
                        self.lagging.push_back((capsule, peer));
                    } else {
                        sub.queued = false;
                    }
                    CapsuleResponse::Event { records, proof }
                }
                Err(e) => {
                    // The subscription cannot continue without a gap.
                    tracing::error!(%capsule, error = %e, "subscription backlog read failed");
                    h.subscribers.remove(&peer);
                    forget_subscription(&mut self.subs_by_peer, &peer, &capsule);
                    CapsuleResponse::error(
                        ErrorCode::Internal,
                        format!("subscription ended: this server cannot read the backlog: {e}"),
                    )
                }
            };
            return Some(Output::Respond(Response {
                to: w.peer,
                capsule,
                request_id: w.request_id,
                body,
            }));
        }
        None
    }
}
