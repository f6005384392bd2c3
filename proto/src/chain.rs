//! The state of a capsule's hash chain: what a writer needs to build the next
//! record and what a server needs to check that records continue its tail.
//!
//! Record `n` points to records `n - 2^k` for `k = 0..=skip_count(n)`; every
//! such record is the latest one (up to `n - 1`) whose seqno is a multiple of
//! `2^k`. So the whole state is one hash per level `k`: the hash of the
//! latest record whose seqno is a multiple of `2^k`, at most 64 hashes.
//!
//! # Rebuilding the state
//!
//! The records that state refers to are the tail `n` and `n` with its lowest
//! set bits cleared one by one, down to the highest power of two not above
//! `n` ([`ChainState::tail_path_seqnos`]). Each is reached from the one
//! before by its pointer `k = trailing_zeros(seqno)`, so their headers form a
//! chain anchored at the tail: [`ChainState::from_tail`] rebuilds the state
//! from them (a server does this at start from its store) and checks every
//! link. They are also exactly the greedy proof path from the tail down to
//! that power of two, so a writer resuming from a server asks for that proof
//! and calls [`ChainState::from_proof`], trusting nothing but its capsule's
//! metadata.
//!
//! # Checking appends
//!
//! A server keeps a [`ChainState`] per capsule. For each batch of records
//! closed by a verified heartbeat it calls [`ChainState::check_batch`], which
//! returns the state after the batch without changing the current one; the
//! server makes the batch durable, then replaces its state. Timestamps are the
//! writer's and are not checked for order.
//!
//! Records that do not continue the chain, and states that cannot be
//! rebuilt, are [`ChainError`]s; one whose proof or heartbeat does not hold
//! carries the [`ProofError`].

use bytes::Bytes;
use gdp_certs::{Metadata, Name, PublicKey, SecretKey, Timestamp};

use crate::proof::{Heartbeat, Proof, ProofError, VerifiedHeartbeat};
use crate::record::{MAX_RECORD_PAYLOAD, Record, RecordError, RecordHash, RecordHeader};

/// Why records do not continue a chain, or a chain state or appender
/// cannot be made.
///
/// Most variants describe something the writer or the peer that sent the
/// records got wrong. [`ChainError::SeqnoExhausted`] is local, and so is
/// [`ChainError::Record`] when building the next record (a payload too
/// large). Rebuilding a state from a proof, or checking a batch against its
/// heartbeat, fails with [`ChainError::Proof`] when the proof or the
/// heartbeat does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// Something names another capsule than the one expected.
    #[error("expected capsule {expected}, got {found}")]
    WrongCapsule {
        /// The capsule being checked against.
        expected: Name,
        /// The capsule found.
        found: Name,
    },
    /// The metadata given is not a capsule's.
    #[error("the metadata is not a capsule's")]
    NotACapsule,
    /// The appender's key is not among the capsule's writers.
    #[error("heartbeat signed by {writer}, which is not a writer of the capsule")]
    NotWriter {
        /// The key (boxed: a parsed key is large).
        writer: Box<PublicKey>,
    },
    /// A record is at or before the tail; the caller decides between an
    /// idempotent re-send and a fork by comparing with what it stored.
    #[error("record {found} is at or before the tail {tail}")]
    Stale {
        /// The chain's tail seqno.
        tail: u64,
        /// The record's seqno.
        found: u64,
    },
    /// A record does not continue the tail: seqnos would leave a hole.
    #[error("gap: expected seqno {expected}, got {found}")]
    Gap {
        /// The next seqno of the chain.
        expected: u64,
        /// The record's seqno.
        found: u64,
    },
    /// A record's `prev` is not the hash of the record before it (or the
    /// chain anchor for record 1).
    #[error("record {seqno}: prev does not match the previous record")]
    BadPrev {
        /// The record's seqno.
        seqno: u64,
    },
    /// A record's skip pointer `k` is not the hash of record `seqno - 2^k`.
    #[error("record {seqno}: skip pointer {k} does not match record seqno - 2^{k}")]
    BadSkip {
        /// The record's seqno.
        seqno: u64,
        /// Which pointer (1-based: `skips[k - 1]` points to `seqno - 2^k`).
        k: u32,
    },
    /// The chain's tail is at `u64::MAX`: no seqno is left.
    #[error("the capsule has used every seqno")]
    SeqnoExhausted,
    /// A batch of records is empty.
    #[error("empty batch of records")]
    EmptyBatch,
    /// Headers do not form the tail path of a chain (see
    /// [`ChainState::from_tail`]).
    #[error("headers do not form the tail path of a chain at index {index}")]
    NotTailPath {
        /// Index of the first header that does not fit.
        index: usize,
    },
    /// A header of a tail path does not hash to the pointer that leads to
    /// it: the record was altered.
    #[error("proof header {index} (record {seqno}) does not match the pointer to it")]
    PathHashMismatch {
        /// Index in the path.
        index: usize,
        /// The header's seqno.
        seqno: u64,
    },
    /// The next record cannot be built.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A proof or a heartbeat the chain relies on does not hold.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// Number of skip pointers record `seqno` carries: the `k` in
/// `1..=trailing_zeros(seqno)` with `seqno - 2^k >= 1`. Zero for seqno 0.
pub const fn skip_count(seqno: u64) -> usize {
    if seqno == 0 {
        return 0;
    }
    let tz = seqno.trailing_zeros();
    // For a power of two, the pointer k = tz would reach seqno 0.
    let n = if seqno.is_power_of_two() {
        tz.saturating_sub(1)
    } else {
        tz
    };
    n as usize
}

/// The seqno pointer `k` of record `seqno` points to (`seqno - 2^k`), or
/// `None` if the record has no such pointer. Pointer 0 is `prev` and exists
/// for every seqno `>= 2`; record 1's `prev` is the chain anchor, not a record.
pub const fn pointer_target(seqno: u64, k: u32) -> Option<u64> {
    if seqno < 2 || k >= 64 || (k > 0 && k as usize > skip_count(seqno)) {
        return None;
    }
    Some(seqno - (1u64 << k))
}

/// The pointer `k` leading from record `from` to record `to`, if there is one.
pub const fn pointer_between(from: u64, to: u64) -> Option<u32> {
    if to == 0 || to >= from {
        return None;
    }
    let d = from - to;
    if !d.is_power_of_two() {
        return None;
    }
    let k = d.trailing_zeros();
    match pointer_target(from, k) {
        Some(_) => Some(k),
        None => None,
    }
}

/// The hashes a capsule's next record must point to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    capsule: Name,
    tail: u64,
    /// `levels[k]`: hash of the latest record whose seqno is a multiple of
    /// `2^k`. Holds `bit_length(tail)` entries.
    levels: Vec<RecordHash>,
}

impl ChainState {
    /// The state of `capsule` before its first record.
    pub fn new(capsule: Name) -> Self {
        ChainState {
            capsule,
            tail: 0,
            levels: Vec::new(),
        }
    }

    /// The capsule.
    pub fn capsule(&self) -> &Name {
        &self.capsule
    }

    /// Seqno of the last record, 0 if there is none.
    pub fn tail_seqno(&self) -> u64 {
        self.tail
    }

    /// Hash of the last record, or the chain anchor if there is none.
    pub fn tail_hash(&self) -> RecordHash {
        self.levels
            .first()
            .copied()
            .unwrap_or_else(|| RecordHash::anchor(&self.capsule))
    }

    /// The seqnos whose headers [`ChainState::from_tail`] needs for a chain
    /// whose tail is `tail`, newest first: `tail`, then `tail` with its lowest
    /// set bit cleared, and so on down to the highest power of two. Empty for 0.
    pub fn tail_path_seqnos(tail: u64) -> Vec<u64> {
        let mut out = Vec::with_capacity(tail.count_ones() as usize);
        let mut c = tail;
        while c != 0 {
            out.push(c);
            c &= c - 1;
        }
        out
    }

    /// Rebuilds the state of `capsule` from the headers of
    /// [`ChainState::tail_path_seqnos`], newest first. Each header must hash to
    /// the pointer that leads to it from the one before, so the result is as
    /// trustworthy as the first header (the tail). No headers means an empty
    /// capsule.
    pub fn from_tail(capsule: Name, path: &[RecordHeader]) -> Result<Self, ChainError> {
        let Some(tail) = path.first() else {
            return Ok(ChainState::new(capsule));
        };
        let expected = Self::tail_path_seqnos(tail.seqno());
        if expected.len() != path.len() {
            return Err(ChainError::NotTailPath {
                index: expected.len().min(path.len()),
            });
        }
        for (index, (h, &seqno)) in path.iter().zip(&expected).enumerate() {
            if *h.capsule() != capsule {
                return Err(ChainError::WrongCapsule {
                    expected: capsule,
                    found: *h.capsule(),
                });
            }
            if h.seqno() != seqno {
                return Err(ChainError::NotTailPath { index });
            }
            if index > 0 {
                let from = &path[index - 1];
                let k = from.seqno().trailing_zeros();
                if from.pointer(k) != Some(&h.hash()) {
                    return Err(ChainError::PathHashMismatch { index, seqno });
                }
            }
        }
        if let Some(last) = path.last()
            && last.seqno() == 1
            && *last.prev() != RecordHash::anchor(&capsule)
        {
            return Err(ChainError::BadPrev { seqno: 1 });
        }
        // Level k holds the latest multiple of 2^k not above the tail: the
        // tail with its k lowest bits cleared, which is on the path.
        let bits = 64 - tail.seqno().leading_zeros();
        let levels = (0..bits)
            .map(|k| {
                let m = tail.seqno() & !((1u64 << k) - 1);
                expected
                    .iter()
                    .position(|&s| s == m)
                    .and_then(|i| path.get(i))
                    .map(RecordHeader::hash)
                    .ok_or(ChainError::NotTailPath { index: 0 })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChainState {
            capsule,
            tail: tail.seqno(),
            levels,
        })
    }

    /// Rebuilds the state from a proof whose path is the tail path of its
    /// heartbeat's record (what a server returns for the heartbeat at `n`
    /// and the target [`ChainState::tail_path_seqnos`]`(n).last()`), checking
    /// the proof against the capsule's metadata.
    pub fn from_proof(
        md: &Metadata,
        proof: &Proof,
    ) -> Result<(Self, VerifiedHeartbeat), ChainError> {
        let last = proof
            .path
            .last()
            .ok_or(ProofError::ProofLength { len: 0 })?;
        let hb = proof.verify_header(md, last)?;
        let state = Self::from_tail(*hb.capsule(), &proof.path)?;
        Ok((state, hb))
    }

    /// The hash record `seqno = tail + 1` must carry as pointer `k`.
    fn expected_pointer(&self, k: u32) -> RecordHash {
        if self.tail == 0 {
            RecordHash::anchor(&self.capsule)
        } else {
            // Level k exists: the caller only asks for k <= skip_count(tail + 1),
            // and then 2^k <= tail.
            self.levels
                .get(k as usize)
                .copied()
                .unwrap_or_else(|| RecordHash::anchor(&self.capsule))
        }
    }

    /// The next seqno, or an error if the capsule has used them all.
    fn next_seqno(&self) -> Result<u64, ChainError> {
        self.tail.checked_add(1).ok_or(ChainError::SeqnoExhausted)
    }

    /// Builds the next record with `payload` and advances the state.
    pub fn next_record(
        &mut self,
        payload: Bytes,
        timestamp: Timestamp,
    ) -> Result<Record, ChainError> {
        if payload.len() > MAX_RECORD_PAYLOAD {
            return Err(RecordError::PayloadTooLarge { len: payload.len() }.into());
        }
        let seqno = self.next_seqno()?;
        let prev = self.expected_pointer(0);
        let skips = (1..=skip_count(seqno) as u32)
            .map(|k| self.expected_pointer(k))
            .collect();
        let record = Record::new(self.capsule, seqno, timestamp, prev, skips, payload)?;
        self.advance(seqno, record.hash());
        Ok(record)
    }

    fn advance(&mut self, seqno: u64, hash: RecordHash) {
        let top = seqno.trailing_zeros() as usize;
        for k in 0..=top {
            match self.levels.get_mut(k) {
                Some(slot) => *slot = hash,
                None => self.levels.push(hash),
            }
        }
        self.tail = seqno;
    }

    /// Checks that `record` is the next record of this chain: same capsule,
    /// seqno `tail + 1`, `prev` and every skip pointing to the right records.
    pub fn check_next(&self, record: &Record) -> Result<(), ChainError> {
        if *record.capsule() != self.capsule {
            return Err(ChainError::WrongCapsule {
                expected: self.capsule,
                found: *record.capsule(),
            });
        }
        let seqno = record.seqno();
        if seqno <= self.tail {
            return Err(ChainError::Stale {
                tail: self.tail,
                found: seqno,
            });
        }
        let expected = self.next_seqno()?;
        if seqno != expected {
            return Err(ChainError::Gap {
                expected,
                found: seqno,
            });
        }
        if *record.prev() != self.expected_pointer(0) {
            return Err(ChainError::BadPrev { seqno });
        }
        for (i, skip) in record.skips().iter().enumerate() {
            let k = i as u32 + 1;
            if *skip != self.expected_pointer(k) {
                return Err(ChainError::BadSkip { seqno, k });
            }
        }
        Ok(())
    }

    /// Checks `record` with [`ChainState::check_next`] and appends it.
    pub fn append(&mut self, record: &Record) -> Result<(), ChainError> {
        self.check_next(record)?;
        self.advance(record.seqno(), record.hash());
        Ok(())
    }

    /// Checks a batch of records closed by `heartbeat`: the records continue
    /// this chain one after the other and the heartbeat covers the last one.
    /// Returns the state after the batch; `self` is unchanged, so the caller
    /// can commit the new state once the batch is durable.
    pub fn check_batch(
        &self,
        records: &[Record],
        heartbeat: &VerifiedHeartbeat,
    ) -> Result<ChainState, ChainError> {
        let last = records.last().ok_or(ChainError::EmptyBatch)?;
        if *heartbeat.capsule() != self.capsule {
            return Err(ChainError::WrongCapsule {
                expected: self.capsule,
                found: *heartbeat.capsule(),
            });
        }
        heartbeat.covers(last)?;
        let mut next = self.clone();
        for r in records {
            next.append(r)?;
        }
        Ok(next)
    }
}

/// A writer: a chain state and a writer key, producing records and the
/// heartbeats that close them.
#[derive(Debug, Clone)]
pub struct Appender {
    key: SecretKey,
    state: ChainState,
}

impl Appender {
    /// An appender for the capsule described by `md` whose chain is `state`.
    /// Fails if `key` is not one of the capsule's writers or `state` is
    /// another capsule's.
    pub fn new(key: SecretKey, md: &Metadata, state: ChainState) -> Result<Self, ChainError> {
        if md.kind() != gdp_certs::Kind::Capsule {
            return Err(ChainError::NotACapsule);
        }
        let name = md.name();
        if name != state.capsule {
            return Err(ChainError::WrongCapsule {
                expected: name,
                found: state.capsule,
            });
        }
        if !md.is_writer(&key.public()) {
            return Err(ChainError::NotWriter {
                writer: Box::new(key.public()),
            });
        }
        Ok(Appender { key, state })
    }

    /// The chain state.
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// Appends a record with `payload`; close a batch with
    /// [`Appender::heartbeat`].
    pub fn append(&mut self, payload: Bytes, timestamp: Timestamp) -> Result<Record, ChainError> {
        self.state.next_record(payload, timestamp)
    }

    /// Appends a record and signs it: the one-record-per-heartbeat mode.
    pub fn append_signed(
        &mut self,
        payload: Bytes,
        timestamp: Timestamp,
    ) -> Result<(Record, Heartbeat), ChainError> {
        let record = self.append(payload, timestamp)?;
        let hb = Heartbeat::sign(&self.key, &record);
        Ok((record, hb))
    }

    /// A heartbeat over the last record, or `None` before the first.
    pub fn heartbeat(&self) -> Option<Heartbeat> {
        (self.state.tail != 0).then(|| {
            Heartbeat::sign_hash(
                &self.key,
                self.state.capsule,
                self.state.tail,
                self.state.tail_hash(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::MAX_SKIPS;

    #[test]
    fn skip_count_follows_the_definition() {
        for n in 1..=5000u64 {
            let brute = (1..64u32)
                .take_while(|&k| n % (1u64 << k) == 0)
                .filter(|&k| n > (1u64 << k))
                .count();
            assert_eq!(skip_count(n), brute, "seqno {n}");
        }
        assert_eq!(skip_count(0), 0);
        assert_eq!(skip_count(1), 0);
        assert_eq!(skip_count(2), 0);
        assert_eq!(skip_count(4), 1);
        assert_eq!(skip_count(12), 2);
        assert_eq!(skip_count(1 << 63), 62);
        assert_eq!(skip_count(3 << 62), 62);
        assert!((1..200u64).all(|n| skip_count(n.wrapping_mul(0x9e37_79b9)) <= MAX_SKIPS));
    }

    #[test]
    fn wrapped_errors_read_as_their_cause() {
        let e = ChainError::from(ProofError::BadSignature);
        assert_eq!(e.to_string(), "bad heartbeat signature");
        let e = ChainError::from(RecordError::PayloadTooLarge { len: 1 << 20 });
        assert_eq!(
            e.to_string(),
            format!(
                "record payload is {} bytes, over the limit of {MAX_RECORD_PAYLOAD}",
                1 << 20
            )
        );
        assert_eq!(
            ProofError::ProofLength { len: 0 }.to_string(),
            "proof path of 0 headers is outside 1..=128"
        );
    }

    #[test]
    fn pointers_reach_the_right_seqnos() {
        assert_eq!(pointer_target(1, 0), None);
        assert_eq!(pointer_target(2, 0), Some(1));
        assert_eq!(pointer_target(2, 1), None);
        assert_eq!(pointer_target(12, 2), Some(8));
        assert_eq!(pointer_target(12, 3), None);
        assert_eq!(pointer_between(12, 8), Some(2));
        assert_eq!(pointer_between(12, 10), Some(1));
        assert_eq!(pointer_between(12, 9), None);
        assert_eq!(pointer_between(16, 8), Some(3));
        assert_eq!(pointer_between(16, 0), None);
        assert_eq!(pointer_between(5, 5), None);
    }
}
