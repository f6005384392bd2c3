//! Appending to capsules.
//!
//! An append is checked in this order: the checks that need no state
//! ([`precheck`], before any signature), whether the capsule's record
//! bucket could take the records (without taking them), the heartbeat's
//! signature (in a batch with the other appends handed in together), and
//! only then is the capsule's record bucket charged. An append whose
//! heartbeat does not verify is charged to the sending peer's request
//! bucket instead, one token per record: a peer that is not a writer cannot
//! spend a capsule's budget, and pays for the verification it caused.

use gdp_certs::codec::Encode;
use gdp_certs::{Name, Timestamp};
use gdp_proto::capsule::{CapsuleResponse, ErrorCode, MAX_APPEND_RECORDS};
use gdp_proto::proof::{Heartbeat, Proof, ProofError, VerifiedHeartbeat};
use gdp_proto::record::{Record, RecordHash};

use super::{
    CapsuleService, Hosted, PendingAppend, Rejection, TicketKind, Waiter, code_for_chain,
    code_for_proof,
};
use crate::fork::ForkEvidence;
use crate::limits::{ServiceConfig, TokenBucket, describe_wait};
use crate::stats::Refusal;
use crate::store::{Store, StoreError, Write};

/// The checks of an append that need no capsule state, done before any
/// signature is verified.
pub(super) fn precheck(
    config: &ServiceConfig,
    capsule: &Name,
    records: &[Record],
    heartbeat: &Heartbeat,
) -> Result<(), Rejection> {
    let fail = |code, message: String| {
        Err(Rejection {
            code,
            message,
            refusal: None,
        })
    };
    let Some(last) = records.last() else {
        return fail(
            ErrorCode::BadRequest,
            "an append needs at least one record".into(),
        );
    };
    if records.len() > MAX_APPEND_RECORDS {
        return fail(
            ErrorCode::TooLarge,
            format!(
                "an append carries at most {MAX_APPEND_RECORDS} records, this one {}",
                records.len()
            ),
        );
    }
    for r in records {
        if r.payload().len() > config.max_record_payload {
            return fail(
                ErrorCode::TooLarge,
                format!(
                    "record {} has a payload of {} bytes; this server accepts at most {}",
                    r.seqno(),
                    r.payload().len(),
                    config.max_record_payload
                ),
            );
        }
        if r.capsule() != capsule {
            return fail(
                ErrorCode::BadRequest,
                format!(
                    "record {} belongs to capsule {}, not to {capsule}",
                    r.seqno(),
                    r.capsule()
                ),
            );
        }
    }
    if let Some(p) = records
        .windows(2)
        .find(|p| p[1].seqno() != p[0].seqno().wrapping_add(1))
    {
        return fail(
            ErrorCode::BadChain,
            format!(
                "the records of an append must have consecutive seqnos: {} is followed by {}",
                p[0].seqno(),
                p[1].seqno()
            ),
        );
    }
    if heartbeat.capsule != *capsule {
        return fail(
            ErrorCode::BadHeartbeat,
            format!(
                "the heartbeat is for capsule {}, not {capsule}",
                heartbeat.capsule
            ),
        );
    }
    if heartbeat.seqno != last.seqno() || heartbeat.record_hash != last.hash() {
        return fail(
            ErrorCode::BadHeartbeat,
            format!(
                "the heartbeat (over record {}) does not cover the last record of the append (record {})",
                heartbeat.seqno,
                last.seqno()
            ),
        );
    }
    Ok(())
}

/// The answer to an append over `capsule`'s record rate.
fn capsule_rate_rejection(
    capsule: &Name,
    rate: crate::limits::Rate,
    wait: std::time::Duration,
) -> Rejection {
    Rejection {
        code: ErrorCode::RateLimited,
        message: format!(
            "rate limited: capsule {} is over its limit of {} appended records/s (burst {}); retry in {}",
            capsule.short(),
            rate.per_second,
            rate.burst,
            describe_wait(wait)
        ),
        refusal: Some(Refusal::CapsuleRate),
    }
}

/// Encoded bytes of records, for the pending bound.
fn size_of(records: &[Record]) -> usize {
    records.iter().map(Encode::encoded_len).sum()
}

/// The hash of record `seqno` as this capsule has it: durable (from the
/// store) or pending (from memory).
pub(super) fn hash_at(
    store: &Store,
    capsule: &Name,
    h: &Hosted,
    seqno: u64,
) -> Result<Option<RecordHash>, StoreError> {
    if seqno <= h.durable.tail_seqno() {
        return Ok(store.record(capsule, seqno)?.map(|r| r.hash()));
    }
    Ok(h.pending.iter().find_map(|p| {
        let i = usize::try_from(seqno.checked_sub(p.first())?).ok()?;
        p.records.get(i).map(Record::hash)
    }))
}

impl CapsuleService {
    /// The rejection of an append of `n` records to `capsule` whose record
    /// bucket could not take them at `now`; takes nothing.
    pub(super) fn check_capsule_rate(
        &self,
        now: Timestamp,
        capsule: &Name,
        n: u32,
    ) -> Result<(), Rejection> {
        let (Some(rate), Some(h)) = (self.config.capsule_records, self.capsules.get(capsule))
        else {
            return Ok(());
        };
        // On a copy: the bucket is charged only once the heartbeat verified.
        if let Some(mut bucket) = h.records_bucket
            && let Err(wait) = bucket.take(rate, now, n)
        {
            return Err(capsule_rate_rejection(capsule, rate, wait));
        }
        Ok(())
    }

    pub(super) fn append(
        &mut self,
        now: Timestamp,
        w: Waiter,
        capsule: Name,
        records: Vec<Record>,
        heartbeat: Heartbeat,
        verdict: Option<Result<VerifiedHeartbeat, ProofError>>,
    ) {
        self.append_records(now, w, capsule, records, heartbeat, verdict, true);
    }

    /// An append; `charge` says whether it spends the capsule's record
    /// budget (records fetched from another replica do not: the writer paid
    /// for them there).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn append_records(
        &mut self,
        now: Timestamp,
        w: Waiter,
        capsule: Name,
        mut records: Vec<Record>,
        heartbeat: Heartbeat,
        verdict: Option<Result<VerifiedHeartbeat, ProofError>>,
        charge: bool,
    ) {
        if !self.check_hosted(w, capsule) {
            return;
        }
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return;
        };
        if h.recovering {
            let m = "the capsule is recovering from a failed write; retry";
            return self.out.error(w, capsule, ErrorCode::Internal, m);
        }
        let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
        let verdict = verdict.unwrap_or_else(|| heartbeat.verify(&h.metadata));
        let hb = match verdict {
            Ok(hb) => hb,
            Err(e) => {
                // The sender pays for its bad append, not the capsule.
                if let Some(rate) = self.config.peer_requests {
                    let max = self.config.max_tracked_peers;
                    self.peers.charge(rate, max, w.peer, now, n);
                }
                let m = format!("heartbeat rejected: {e}");
                let code = code_for_proof(&e);
                return self.refuse(now, w, capsule, Refusal::BadHeartbeat, code, m);
            }
        };
        // Only a writer's verified append spends the capsule's budget.
        if let Some(rate) = self.config.capsule_records.filter(|_| charge) {
            let bucket = h
                .records_bucket
                .get_or_insert_with(|| TokenBucket::full(rate, now));
            if let Err(wait) = bucket.take(rate, now, n) {
                let r = capsule_rate_rejection(&capsule, rate, wait);
                return self.refuse(now, w, capsule, Refusal::CapsuleRate, r.code, r.message);
            }
        }

        // Records at or below the tail must be exactly what the capsule has:
        // an identical resend is fine, anything else is a fork.
        let tail = h.optimistic.tail_seqno();
        let split = records
            .iter()
            .position(|r| r.seqno() > tail)
            .unwrap_or(records.len());
        for (i, r) in records.iter().enumerate().take(split) {
            match hash_at(&self.store, &capsule, h, r.seqno()) {
                Ok(Some(hash)) if hash == r.hash() => {}
                Ok(Some(_)) => return self.fork(w, capsule, &records, i, &hb),
                Ok(None) => {
                    let m = format!("record {} is missing on this server", r.seqno());
                    return self.out.error(w, capsule, ErrorCode::Internal, m);
                }
                Err(e) => {
                    tracing::error!(%capsule, error = %e, "reading a record to compare failed");
                    let m = format!("this server cannot read record {}: {e}", r.seqno());
                    return self.out.error(w, capsule, ErrorCode::Internal, m);
                }
            }
        }
        let fresh = records.split_off(split);
        if fresh.is_empty() {
            // Everything was there already: answer once it is all durable.
            let last = hb.seqno();
            if last <= h.durable.tail_seqno() {
                let tail = h.durable.tail_seqno();
                return self
                    .out
                    .respond(w, capsule, CapsuleResponse::Appended { tail });
            }
            match h
                .pending
                .iter_mut()
                .find(|p| (p.first()..=p.last()).contains(&last))
            {
                Some(p) => p.waiters.push(w),
                None => {
                    // Every seqno above the durable tail is in a pending append.
                    tracing::error!(%capsule, seqno = last, "no pending append holds a record below the tail");
                    let m = format!("record {last} is not stored yet; retry");
                    self.out.error(w, capsule, ErrorCode::Internal, m);
                }
            }
            return;
        }

        let after = match h.optimistic.check_batch(&fresh, &hb) {
            Ok(after) => after,
            Err(e) => {
                let code = code_for_chain(&e);
                if code == ErrorCode::Gap && w.peer != self.server {
                    // A writer is ahead of this replica: it missed records.
                    h.sync.gap_seen = true;
                }
                let m = format!("append rejected: {e}");
                return self.out.error(w, capsule, code, m);
            }
        };
        let bytes = size_of(&fresh);
        if h.pending_bytes + bytes > self.config.max_pending_bytes && !h.pending.is_empty() {
            let m = format!(
                "rate limited: {} bytes of appends to capsule {} are waiting to be stored (limit {}); retry once they are acknowledged",
                h.pending_bytes,
                capsule.short(),
                self.config.max_pending_bytes
            );
            let code = ErrorCode::RateLimited;
            return self.refuse(now, w, capsule, Refusal::PendingBytes, code, m);
        }
        let ticket = self.out.commit(
            h,
            capsule,
            TicketKind::Append,
            Write::Append {
                capsule,
                records: fresh.clone(),
                heartbeat: hb.clone(),
            },
        );
        h.pending_bytes += bytes;
        h.optimistic = after.clone();
        if w.peer != self.server {
            h.sync.fed = true;
        }
        h.pending.push_back(PendingAppend {
            ticket,
            records: fresh,
            heartbeat: hb,
            after,
            bytes,
            waiters: vec![w],
            result: None,
        });
    }

    /// `records[index]` differs from the record the capsule has at its
    /// seqno. If the heartbeat commits to it through the batch, that is a
    /// fork: keep the evidence and refuse.
    fn fork(
        &mut self,
        w: Waiter,
        capsule: Name,
        records: &[Record],
        index: usize,
        hb: &VerifiedHeartbeat,
    ) {
        let Some(record) = records.get(index) else {
            return;
        };
        let seqno = record.seqno();
        let first = records.first().map_or(0, Record::seqno);
        let proof = Proof::build(hb.heartbeat().clone(), seqno, |s| {
            records
                .get(usize::try_from(s.checked_sub(first)?).ok()?)
                .map(Record::header)
        })
        .and_then(|p| p.verify_under(hb, seqno, record.hash()).map(|()| p));
        let proof = match proof {
            Ok(p) => p,
            Err(e) => {
                let m = format!(
                    "record {seqno} is not linked to the heartbeat over record {}: {e}",
                    hb.seqno()
                );
                return self.out.error(w, capsule, ErrorCode::BadChain, m);
            }
        };
        tracing::warn!(%capsule, seqno, writer = %hb.writer(), "fork rejected; evidence kept");
        if let Some(h) = self.capsules.get_mut(&capsule) {
            h.sync.forks.insert(seqno);
            let evidence = ForkEvidence {
                record: record.clone(),
                proof,
            };
            self.out.commit(
                h,
                capsule,
                TicketKind::Fork,
                Write::Fork { capsule, evidence },
            );
        }
        let m = format!(
            "fork: record {seqno} differs from the record this server already stores at seqno {seqno}; the append is rejected and the conflicting record kept as evidence"
        );
        self.out.error(w, capsule, ErrorCode::Fork, m);
    }
}
