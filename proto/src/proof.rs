//! Writer heartbeats and proofs of membership.
//!
//! A [`Heartbeat`] is a writer's signature ([`SigContext::Heartbeat`]) over
//! `{capsule, seqno, record hash}`. It commits to that record and, through
//! the hash chain, to every record before it: a writer may sign every record,
//! or append a batch of records closed by one heartbeat over the last one.
//! [`Heartbeat::verify`] checks it against the capsule's metadata and returns
//! a [`VerifiedHeartbeat`]; [`verify_heartbeats`] checks many at once with
//! ed25519 batch verification, for servers taking many small appends.
//!
//! A [`Proof`] is a heartbeat and a path of [`RecordHeader`]s from the
//! heartbeat's record down to an older target, each header reached from the
//! one before by one of its pointers (`prev` or a skip). [`Proof::build`]
//! takes the greedy path (always the farthest pointer that does not pass the
//! target), which is at most about `2 * log2(n)` headers long.
//!
//! Whatever does not verify, or cannot be built, is a [`ProofError`].
//!
//! # Encodings
//!
//! ```text
//! Heartbeat: [32] capsule, u64 seqno (>= 1), [32] record hash, [32] writer key, [64] signature
//! signed:    [32] capsule || u64 seqno || [32] record hash
//! Proof:     Heartbeat, u16 header count (1..=MAX_PROOF_LEN), each RecordHeader
//! ```

use bytes::{BufMut, BytesMut};
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader, put};
use gdp_certs::{Kind, Metadata, Name, PublicKey, SecretKey, SigContext, Signature};

use crate::chain::{pointer_between, skip_count};
use crate::record::{
    HEADER_FIXED_LEN, MAX_HEADER_LEN, RECORD_HASH_LEN, Record, RecordHash, RecordHeader,
};

/// Longest proof path, in headers. Greedy paths between `u64` seqnos below
/// `2^63` need at most 127.
pub const MAX_PROOF_LEN: usize = 128;

/// Encoded length of a heartbeat.
pub const HEARTBEAT_LEN: usize = 32 + 8 + 32 + 32 + 64;

/// Largest encoded proof, for bounding the messages that carry one.
pub const MAX_PROOF_ENCODED_LEN: usize = HEARTBEAT_LEN + 2 + MAX_PROOF_LEN * MAX_HEADER_LEN;

/// Length of the message a heartbeat signs.
const SIGNED_LEN: usize = 32 + 8 + 32;

/// Why a heartbeat or a proof does not verify, or a proof cannot be built.
///
/// Every variant but [`ProofError::MissingHeader`] (a store that lacks
/// data) describes something the writer or the peer that sent the data got
/// wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The metadata given is not a capsule's.
    #[error("the metadata is not a capsule's")]
    NotACapsule,
    /// Something names another capsule than the one expected.
    #[error("expected capsule {expected}, got {found}")]
    WrongCapsule {
        /// The capsule being checked against.
        expected: Name,
        /// The capsule found.
        found: Name,
    },
    /// A heartbeat over seqno 0: seqnos start at 1.
    #[error("record seqno 0: seqnos start at 1")]
    SeqnoZero,
    /// The heartbeat's signer is not among the capsule's writers.
    #[error("heartbeat signed by {writer}, which is not a writer of the capsule")]
    NotWriter {
        /// The key that signed (boxed: a parsed key is large).
        writer: Box<PublicKey>,
    },
    /// The heartbeat's signature does not verify.
    #[error("bad heartbeat signature")]
    BadSignature,
    /// A heartbeat does not cover the record it was presented for.
    #[error("heartbeat for record {heartbeat} does not cover record {record}")]
    NotCovered {
        /// The heartbeat's seqno.
        heartbeat: u64,
        /// The record's seqno.
        record: u64,
    },
    /// A proof was asked for a record newer than its heartbeat, or seqno 0.
    #[error("cannot prove record {target} from the heartbeat at {heartbeat}")]
    TargetOutOfRange {
        /// The target seqno.
        target: u64,
        /// The heartbeat's seqno.
        heartbeat: u64,
    },
    /// The store had no header for a seqno a proof needs.
    #[error("no header for record {seqno}")]
    MissingHeader {
        /// The seqno looked up.
        seqno: u64,
    },
    /// A proof path is empty or longer than [`MAX_PROOF_LEN`].
    #[error("proof path of {len} headers is outside 1..={MAX_PROOF_LEN}")]
    ProofLength {
        /// The path length.
        len: usize,
    },
    /// The first header of a proof is not the heartbeat's record.
    #[error("the proof's first header is not the heartbeat's record")]
    HeartbeatMismatch,
    /// Consecutive headers of a proof are not linked by any pointer.
    #[error("proof header {index} (record {to}) is not reachable by a pointer of record {from}")]
    BadPointer {
        /// Index in the path of the header that cannot be reached.
        index: usize,
        /// Seqno of the header before it.
        from: u64,
        /// Its seqno.
        to: u64,
    },
    /// A proof header does not hash to the pointer that leads to it: the
    /// record was altered.
    #[error("proof header {index} (record {seqno}) does not match the pointer to it")]
    PathHashMismatch {
        /// Index in the path.
        index: usize,
        /// The header's seqno.
        seqno: u64,
    },
    /// A proof does not end at the record it is presented for.
    #[error("the proof ends at record {found}, not at the target {expected}")]
    TargetMismatch {
        /// The target's seqno.
        expected: u64,
        /// The seqno the path ends at (or the same seqno if only the hash differs).
        found: u64,
    },
    /// A record's `prev` is not the hash of the record before it (or the
    /// chain anchor for record 1).
    #[error("record {seqno}: prev does not match the previous record")]
    BadPrev {
        /// The record's seqno.
        seqno: u64,
    },
    /// The records of a range are not consecutive: seqnos leave a hole.
    #[error("gap: expected seqno {expected}, got {found}")]
    Gap {
        /// The seqno that should come next.
        expected: u64,
        /// The record's seqno.
        found: u64,
    },
    /// A range of records is empty.
    #[error("empty batch of records")]
    EmptyBatch,
}

/// A writer's signed commitment to one record of a capsule, and through the
/// chain to all records before it. Not checked until [`Heartbeat::verify`].
///
/// A heartbeat is identified by what it signs (capsule, seqno, record
/// hash), never by its signature bytes: a writer can sign one record many
/// times with different valid signatures (as with any ed25519 key), so
/// servers and readers compare records by hash and seqno, and
/// [`Proof::verify_under`] compares whole heartbeats only to refuse a proof
/// made under another heartbeat than the one already verified. Nobody but
/// the writer can make a second valid signature (see
/// [`PublicKey`]'s verification semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The capsule.
    pub capsule: Name,
    /// The record's seqno.
    pub seqno: u64,
    /// The record's hash.
    pub record_hash: RecordHash,
    /// The writer's key (must be one of the capsule's writers).
    pub writer: PublicKey,
    /// The writer's signature over `capsule || seqno || record_hash`.
    pub signature: Signature,
}

impl Heartbeat {
    /// Signs `record` with the writer key `key`.
    pub fn sign(key: &SecretKey, record: &Record) -> Self {
        Self::sign_hash(key, *record.capsule(), record.seqno(), record.hash())
    }

    /// Signs the record of `capsule` at `seqno` whose hash is `record_hash`.
    pub fn sign_hash(key: &SecretKey, capsule: Name, seqno: u64, record_hash: RecordHash) -> Self {
        let signature = key.sign(
            SigContext::Heartbeat,
            &signed_body(&capsule, seqno, &record_hash),
        );
        Heartbeat {
            capsule,
            seqno,
            record_hash,
            writer: key.public(),
            signature,
        }
    }

    /// The bytes the signature covers.
    fn body(&self) -> [u8; SIGNED_LEN] {
        signed_body(&self.capsule, self.seqno, &self.record_hash)
    }

    /// Everything but the signature: `md` is a capsule named `capsule`, the
    /// seqno is valid and the writer is one of the capsule's writers.
    fn check_claims(&self, md: &Metadata, name: &Name) -> Result<(), ProofError> {
        if md.kind() != Kind::Capsule {
            return Err(ProofError::NotACapsule);
        }
        if *name != self.capsule {
            return Err(ProofError::WrongCapsule {
                expected: *name,
                found: self.capsule,
            });
        }
        if self.seqno == 0 {
            return Err(ProofError::SeqnoZero);
        }
        if !md.is_writer(&self.writer) {
            return Err(ProofError::NotWriter {
                writer: Box::new(self.writer),
            });
        }
        Ok(())
    }

    /// Checks that `md` is the metadata of this heartbeat's capsule, that the
    /// signer is one of its writers, and the signature.
    pub fn verify(&self, md: &Metadata) -> Result<VerifiedHeartbeat, ProofError> {
        self.check_claims(md, &md.name())?;
        self.writer
            .verify(SigContext::Heartbeat, &self.body(), &self.signature)
            .map_err(|_| ProofError::BadSignature)?;
        Ok(VerifiedHeartbeat(self.clone()))
    }
}

fn signed_body(capsule: &Name, seqno: u64, record_hash: &RecordHash) -> [u8; SIGNED_LEN] {
    let mut b = [0u8; SIGNED_LEN];
    b[..32].copy_from_slice(capsule.as_bytes());
    b[32..40].copy_from_slice(&seqno.to_be_bytes());
    b[40..].copy_from_slice(record_hash.as_bytes());
    b
}

/// Verifies many heartbeats, each against its capsule's metadata, with
/// ed25519 batch verification.
///
/// Returns one result per item, in order, the same as [`Heartbeat::verify`]
/// of each item alone: single and batch verification accept the same
/// signatures ([`PublicKey::verify_batch`]). The claims (capsule, seqno,
/// writer) are checked first, without any signature. If the batch of the
/// remaining signatures fails, it is split in halves and each half checked
/// again, recursively, so `k` bad heartbeats among `n` cost
/// `O(k log n)` batch verifications rather than `n` single ones, and a
/// single bad heartbeat does not fail the others.
pub fn verify_heartbeats(
    items: &[(&Metadata, &Heartbeat)],
) -> Vec<Result<VerifiedHeartbeat, ProofError>> {
    let mut results: Vec<Result<(), ProofError>> = Vec::with_capacity(items.len());
    // Consecutive items often share metadata; hash it once per run.
    let mut last: Option<(&Metadata, Name)> = None;
    for &(md, hb) in items {
        let name = match last {
            Some((prev, n)) if std::ptr::eq(prev, md) => n,
            _ => {
                let n = md.name();
                last = Some((md, n));
                n
            }
        };
        results.push(hb.check_claims(md, &name));
    }

    let bodies: Vec<[u8; SIGNED_LEN]> = items.iter().map(|(_, hb)| hb.body()).collect();
    let candidates: Vec<usize> = (0..items.len())
        .filter(|&i| results.get(i).is_some_and(Result::is_ok))
        .collect();
    let signature_of = |i: usize| {
        let (_, hb) = items[i];
        (&hb.writer, bodies[i].as_slice(), &hb.signature)
    };
    let bad = bisect(&candidates, |group| match group {
        [i] => {
            let (key, body, sig) = signature_of(*i);
            key.verify(SigContext::Heartbeat, body, sig).is_ok()
        }
        _ => {
            let batch: Vec<_> = group.iter().map(|&i| signature_of(i)).collect();
            PublicKey::verify_batch(SigContext::Heartbeat, &batch).is_ok()
        }
    });
    for i in bad {
        if let Some(r) = results.get_mut(i) {
            *r = Err(ProofError::BadSignature);
        }
    }

    items
        .iter()
        .zip(results)
        .map(|((_, hb), claims)| claims.map(|()| VerifiedHeartbeat((*hb).clone())))
        .collect()
}

/// The items of `group` that fail `verify`, found by bisection.
///
/// `verify` checks a group of items at once (for one item, that item
/// alone) and must be sound: a group passes only if each of its items
/// passes alone. The whole group is checked once; a failing group of more
/// than one item is split in halves and each half checked, recursively. A
/// failing group whose first half passes holds its bad items in its second
/// half, which is then split at once without being checked whole. So `k`
/// bad items among `n` cost at most about `2k log2(n) + 1` calls, and no bad
/// item means one call.
fn bisect<T: Copy>(group: &[T], mut verify: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let mut bad = Vec::new();
    if !group.is_empty() && !verify(group) {
        split(group, &mut verify, &mut bad);
    }
    bad
}

/// `group` failed `verify`: finds its bad items.
fn split<T: Copy>(group: &[T], verify: &mut impl FnMut(&[T]) -> bool, bad: &mut Vec<T>) {
    if let [one] = group {
        bad.push(*one);
        return;
    }
    let (left, right) = group.split_at(group.len() / 2);
    if verify(left) {
        // The failure is in the right half.
        split(right, verify, bad);
    } else {
        split(left, verify, bad);
        if !right.is_empty() && !verify(right) {
            split(right, verify, bad);
        }
    }
}

impl Encode for Heartbeat {
    fn encode(&self, buf: &mut BytesMut) {
        self.capsule.encode(buf);
        buf.put_u64(self.seqno);
        self.record_hash.encode(buf);
        self.writer.encode(buf);
        self.signature.encode(buf);
    }

    fn encoded_len(&self) -> usize {
        HEARTBEAT_LEN
    }
}

impl Decode for Heartbeat {
    const WHAT: &'static str = "heartbeat";

    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let capsule = Name::decode_from(r)?;
        let seqno = r.u64("heartbeat seqno")?;
        if seqno == 0 {
            return Err(DecodeError::Invalid {
                what: "heartbeat seqno 0",
            });
        }
        Ok(Heartbeat {
            capsule,
            seqno,
            record_hash: RecordHash::decode_from(r)?,
            writer: PublicKey::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// A heartbeat whose signature, writer and capsule have been checked against
/// the capsule's metadata. Only this crate's verifiers make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHeartbeat(Heartbeat);

impl VerifiedHeartbeat {
    /// The capsule.
    pub fn capsule(&self) -> &Name {
        &self.0.capsule
    }
    /// The seqno of the record it commits to.
    pub fn seqno(&self) -> u64 {
        self.0.seqno
    }
    /// The hash of the record it commits to.
    pub fn record_hash(&self) -> RecordHash {
        self.0.record_hash
    }
    /// The writer that signed it.
    pub fn writer(&self) -> &PublicKey {
        &self.0.writer
    }
    /// The heartbeat itself (to store or forward).
    pub fn heartbeat(&self) -> &Heartbeat {
        &self.0
    }
    /// The heartbeat itself, by value.
    pub fn into_inner(self) -> Heartbeat {
        self.0
    }

    /// Succeeds if this heartbeat is over exactly `record`.
    pub fn covers(&self, record: &Record) -> Result<(), ProofError> {
        if record.capsule() != self.capsule() {
            return Err(ProofError::WrongCapsule {
                expected: *self.capsule(),
                found: *record.capsule(),
            });
        }
        if record.seqno() != self.seqno() || record.hash() != self.record_hash() {
            return Err(ProofError::NotCovered {
                heartbeat: self.seqno(),
                record: record.seqno(),
            });
        }
        Ok(())
    }
}

/// A proof that a record belongs to a capsule: a heartbeat and the headers
/// from its record down to the target. Not checked until verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The writer's heartbeat over the newest record of the path.
    pub heartbeat: Heartbeat,
    /// Headers from the heartbeat's record (first) down to the target (last),
    /// each reached from the one before by a pointer.
    pub path: Vec<RecordHeader>,
}

impl Proof {
    /// The seqnos of the greedy path from `from` down to `to` (both included),
    /// or `None` if `to` is not in `1..=from`.
    pub fn path_seqnos(from: u64, to: u64) -> Option<Vec<u64>> {
        if to == 0 || to > from {
            return None;
        }
        let mut out = Vec::with_capacity(2 * (64 - from.leading_zeros() as usize) + 1);
        let mut c = from;
        out.push(c);
        while c != to {
            let d = c - to;
            // Largest k with 2^k <= d that record c has a pointer for.
            let k = (63 - d.leading_zeros()).min(skip_count(c) as u32);
            c -= 1 << k;
            out.push(c);
        }
        Some(out)
    }

    /// The encoded length of the proof of record `target` from a heartbeat
    /// over record `from`, known from the two seqnos alone (a header holds
    /// exactly [`skip_count`] pointers), or `None` if `target` is not in
    /// `1..=from`. A server packing an answer sizes its proof with it
    /// before reading a header.
    pub fn encoded_len_for(from: u64, target: u64) -> Option<usize> {
        let headers: usize = Self::path_seqnos(from, target)?
            .into_iter()
            .map(|s| HEADER_FIXED_LEN + RECORD_HASH_LEN * skip_count(s))
            .sum();
        Some(HEARTBEAT_LEN + 2 + headers)
    }

    /// Builds the proof of record `target` from `heartbeat`, fetching headers
    /// by seqno from `lookup` (the server's store).
    ///
    /// The heartbeat is not verified here, and the headers are not checked
    /// against each other: that is the reader's job.
    pub fn build(
        heartbeat: Heartbeat,
        target: u64,
        mut lookup: impl FnMut(u64) -> Option<RecordHeader>,
    ) -> Result<Proof, ProofError> {
        let seqnos =
            Self::path_seqnos(heartbeat.seqno, target).ok_or(ProofError::TargetOutOfRange {
                target,
                heartbeat: heartbeat.seqno,
            })?;
        if seqnos.len() > MAX_PROOF_LEN {
            return Err(ProofError::ProofLength { len: seqnos.len() });
        }
        let path = seqnos
            .into_iter()
            .map(|s| match lookup(s) {
                Some(h) if h.seqno() == s => Ok(h),
                _ => Err(ProofError::MissingHeader { seqno: s }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Proof { heartbeat, path })
    }

    /// The seqno the path ends at, if the path is not empty.
    pub fn target_seqno(&self) -> Option<u64> {
        self.path.last().map(RecordHeader::seqno)
    }

    /// Verifies that `target` is a record of the capsule described by `md`,
    /// committed to by a writer's heartbeat.
    pub fn verify(&self, md: &Metadata, target: &Record) -> Result<VerifiedHeartbeat, ProofError> {
        self.verify_hash(md, target.seqno(), target.hash())
    }

    /// Like [`Proof::verify`], for a record's header.
    pub fn verify_header(
        &self,
        md: &Metadata,
        target: &RecordHeader,
    ) -> Result<VerifiedHeartbeat, ProofError> {
        self.verify_hash(md, target.seqno(), target.hash())
    }

    /// Like [`Proof::verify`], for the record at `seqno` whose hash is `hash`.
    ///
    /// Cheap checks come first; the signature is checked last.
    pub fn verify_hash(
        &self,
        md: &Metadata,
        seqno: u64,
        hash: RecordHash,
    ) -> Result<VerifiedHeartbeat, ProofError> {
        let hb = &self.heartbeat;
        hb.check_claims(md, &md.name())?;
        self.check_path(seqno, hash)?;
        hb.writer
            .verify(SigContext::Heartbeat, &hb.body(), &hb.signature)
            .map_err(|_| ProofError::BadSignature)?;
        Ok(VerifiedHeartbeat(hb.clone()))
    }

    /// Verifies the path of this proof against a heartbeat already verified
    /// (for example by an earlier proof, or for each record of a read
    /// answered under one heartbeat), without checking the signature again.
    /// The proof's heartbeat must be that one.
    pub fn verify_under(
        &self,
        heartbeat: &VerifiedHeartbeat,
        seqno: u64,
        hash: RecordHash,
    ) -> Result<(), ProofError> {
        if self.heartbeat != heartbeat.0 {
            return Err(ProofError::HeartbeatMismatch);
        }
        self.check_path(seqno, hash)
    }

    /// Everything but the heartbeat: the path starts at the heartbeat's
    /// record, links by pointers and ends at the target.
    fn check_path(&self, seqno: u64, hash: RecordHash) -> Result<(), ProofError> {
        let hb = &self.heartbeat;
        let (Some(first), Some(last)) = (self.path.first(), self.path.last()) else {
            return Err(ProofError::ProofLength { len: 0 });
        };
        if self.path.len() > MAX_PROOF_LEN {
            return Err(ProofError::ProofLength {
                len: self.path.len(),
            });
        }
        if first.hash() != hb.record_hash || first.seqno() != hb.seqno {
            return Err(ProofError::HeartbeatMismatch);
        }
        for (i, pair) in self.path.windows(2).enumerate() {
            let (from, to) = (&pair[0], &pair[1]);
            let index = i + 1;
            let pointer = pointer_between(from.seqno(), to.seqno())
                .and_then(|k| from.pointer(k))
                .ok_or(ProofError::BadPointer {
                    index,
                    from: from.seqno(),
                    to: to.seqno(),
                })?;
            if *pointer != to.hash() {
                return Err(ProofError::PathHashMismatch {
                    index,
                    seqno: to.seqno(),
                });
            }
        }
        // Every header is now committed to by the heartbeat; the capsule
        // field of each is checked for clarity of errors.
        if let Some(h) = self.path.iter().find(|h| *h.capsule() != hb.capsule) {
            return Err(ProofError::WrongCapsule {
                expected: hb.capsule,
                found: *h.capsule(),
            });
        }
        if last.seqno() != seqno || last.hash() != hash {
            return Err(ProofError::TargetMismatch {
                expected: seqno,
                found: last.seqno(),
            });
        }
        if last.seqno() == 1 && *last.prev() != RecordHash::anchor(&hb.capsule) {
            return Err(ProofError::BadPrev { seqno: 1 });
        }
        Ok(())
    }

    /// Verifies a contiguous range of records `a..=b` with this proof of `b`
    /// (the last record); the others are authenticated by their `prev`
    /// hashes, as servers answer range reads.
    pub fn verify_range(
        &self,
        md: &Metadata,
        records: &[Record],
    ) -> Result<VerifiedHeartbeat, ProofError> {
        let last = records.last().ok_or(ProofError::EmptyBatch)?;
        check_contiguous(records)?;
        self.verify(md, last)
    }
}

/// Checks that `records` are consecutive records of one capsule, each
/// `prev` being the hash of the record before (record 1's being the anchor).
pub(crate) fn check_contiguous(records: &[Record]) -> Result<(), ProofError> {
    if let Some(first) = records.first()
        && first.seqno() == 1
        && *first.prev() != RecordHash::anchor(first.capsule())
    {
        return Err(ProofError::BadPrev { seqno: 1 });
    }
    for pair in records.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.capsule() != a.capsule() {
            return Err(ProofError::WrongCapsule {
                expected: *a.capsule(),
                found: *b.capsule(),
            });
        }
        if b.seqno() != a.seqno().wrapping_add(1) {
            return Err(ProofError::Gap {
                expected: a.seqno().wrapping_add(1),
                found: b.seqno(),
            });
        }
        if *b.prev() != a.hash() {
            return Err(ProofError::BadPrev { seqno: b.seqno() });
        }
    }
    Ok(())
}

impl Encode for Proof {
    fn encode(&self, buf: &mut BytesMut) {
        self.heartbeat.encode(buf);
        put::vec_u16(buf, &self.path);
    }

    fn encoded_len(&self) -> usize {
        HEARTBEAT_LEN + put::vec_len(2, &self.path)
    }
}

impl Decode for Proof {
    const WHAT: &'static str = "proof";

    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let heartbeat = Heartbeat::decode_from(r)?;
        let path: Vec<RecordHeader> = r.vec_u16(MAX_PROOF_LEN)?;
        if path.is_empty() {
            return Err(DecodeError::Invalid {
                what: "empty proof path",
            });
        }
        Ok(Proof { heartbeat, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Appender, ChainState};
    use bytes::Bytes;
    use gdp_certs::Timestamp;
    use proptest::prelude::*;

    fn writer() -> SecretKey {
        SecretKey::from_seed(&[1; 32])
    }

    fn capsule_md(writers: &[&SecretKey], nonce: u8) -> Metadata {
        Metadata::capsule(
            SecretKey::from_seed(&[9; 32]).public(),
            writers.iter().map(|k| k.public()).collect(),
            "test capsule",
            Timestamp(1),
            vec![],
        )
        .expect("valid metadata")
        .with_nonce([nonce; 16])
    }

    fn chain(md: &Metadata, key: &SecretKey, n: u64) -> (Appender, Vec<Record>) {
        let mut a = Appender::new(key.clone(), md, ChainState::new(md.name())).expect("writer");
        let records = (1..=n)
            .map(|i| a.append(Bytes::new(), Timestamp(i)).expect("appends"))
            .collect();
        (a, records)
    }

    #[test]
    fn greedy_paths_stay_within_twice_log2_for_every_pair_up_to_1024() {
        for from in 1..=1024u64 {
            let bound = 2.0 * (from as f64).log2() + 2.0;
            for to in 1..=from {
                let path = Proof::path_seqnos(from, to).expect("in range");
                assert!(path.len() as f64 <= bound, "{from} -> {to}: {path:?}");
            }
        }
        assert_eq!(Proof::path_seqnos(5, 6), None);
        assert_eq!(Proof::path_seqnos(5, 0), None);
        assert_eq!(Proof::path_seqnos(13, 8), Some(vec![13, 12, 8]));
        assert_eq!(Proof::path_seqnos(8, 1), Some(vec![8, 4, 2, 1]));
    }

    #[test]
    fn a_proof_is_as_long_as_its_seqnos_say() {
        let key = writer();
        let md = capsule_md(&[&key], 1);
        let (_, records) = chain(&md, &key, 300);
        let header = |s: u64| records.get(s as usize - 1).map(Record::header);
        for from in (1..=300u64).step_by(7).chain([256, 299, 300]) {
            let hb = Heartbeat::sign(&key, &records[from as usize - 1]);
            for target in 1..=from {
                let proof = Proof::build(hb.clone(), target, header).expect("builds");
                assert_eq!(
                    Proof::encoded_len_for(from, target),
                    Some(proof.encoded_len()),
                    "{from} -> {target}"
                );
            }
        }
        assert_eq!(Proof::encoded_len_for(5, 6), None);
        assert_eq!(Proof::encoded_len_for(5, 0), None);
    }

    #[test]
    fn heartbeat_from_a_non_writer_is_rejected() {
        let key = writer();
        let md = capsule_md(&[&key], 1);
        let (_, records) = chain(&md, &key, 3);
        let stranger = SecretKey::from_seed(&[2; 32]);
        let hb = Heartbeat::sign(&stranger, &records[2]);
        assert!(matches!(
            hb.verify(&md),
            Err(ProofError::NotWriter { writer }) if *writer == stranger.public()
        ));
        // Claiming to be the writer does not help without its key.
        let mut forged = hb;
        forged.writer = key.public();
        assert_eq!(forged.verify(&md), Err(ProofError::BadSignature));
    }

    #[test]
    fn heartbeat_checks_capsule_and_metadata_kind() {
        let key = writer();
        let md = capsule_md(&[&key], 1);
        let other = capsule_md(&[&key], 2);
        let (_, records) = chain(&md, &key, 2);
        let hb = Heartbeat::sign(&key, &records[1]);
        let v = hb.verify(&md).expect("valid");
        assert_eq!(v.covers(&records[1]), Ok(()));
        assert_eq!(
            v.covers(&records[0]),
            Err(ProofError::NotCovered {
                heartbeat: 2,
                record: 1
            })
        );
        assert!(matches!(
            hb.verify(&other),
            Err(ProofError::WrongCapsule { .. })
        ));
        let principal =
            Metadata::principal(Kind::Router, key.public(), "r", Timestamp(1)).expect("valid");
        assert_eq!(hb.verify(&principal), Err(ProofError::NotACapsule));
    }

    #[test]
    fn batch_verification_singles_out_bad_heartbeats() {
        let key = writer();
        let second = SecretKey::from_seed(&[3; 32]);
        let md = capsule_md(&[&key, &second], 1);
        let other = capsule_md(&[&key], 2);
        let (_, records) = chain(&md, &key, 64);
        let mut hbs: Vec<Heartbeat> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Heartbeat::sign(if i % 2 == 0 { &key } else { &second }, r))
            .collect();
        let all_good: Vec<(&Metadata, &Heartbeat)> = hbs.iter().map(|h| (&md, h)).collect();
        assert!(verify_heartbeats(&all_good).iter().all(Result::is_ok));

        hbs[10].signature.0[3] ^= 1;
        hbs[20] = Heartbeat::sign(&SecretKey::from_seed(&[4; 32]), &records[20]);
        let mut items: Vec<(&Metadata, &Heartbeat)> = hbs.iter().map(|h| (&md, h)).collect();
        items[30].0 = &other;
        let results = verify_heartbeats(&items);
        assert_eq!(results.len(), 64);
        assert_eq!(results[10], Err(ProofError::BadSignature));
        assert!(matches!(results[20], Err(ProofError::NotWriter { .. })));
        assert!(matches!(results[30], Err(ProofError::WrongCapsule { .. })));
        for (i, r) in results.iter().enumerate() {
            if ![10, 20, 30].contains(&i) {
                assert_eq!(r.as_ref().map(|v| v.seqno()), Ok(i as u64 + 1));
            }
        }
        assert!(verify_heartbeats(&[]).is_empty());
    }

    #[test]
    fn bisection_costs_a_few_calls_per_bad_item() {
        for n in [1usize, 2, 3, 7, 64, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let log = (n as f64).log2().ceil() as usize;
            for mut bad_set in [
                vec![],
                vec![0],
                vec![n - 1],
                vec![n / 2, n - 1],
                (0..n).step_by(7).collect::<Vec<_>>(),
            ] {
                bad_set.dedup();
                let mut calls = 0;
                let found = bisect(&items, |g| {
                    calls += 1;
                    !g.iter().any(|i| bad_set.contains(i))
                });
                assert_eq!(found, bad_set, "n {n}");
                let k = bad_set.len();
                assert!(calls <= 2 * k * log + 1, "n {n}, {k} bad: {calls} calls");
                if k == 0 {
                    assert_eq!(calls, 1);
                }
            }
        }
        assert!(bisect::<usize>(&[], |_| unreachable!("nothing to check")).is_empty());
    }

    /// How a heartbeat of the property test below is spoilt.
    #[derive(Debug, Clone, Copy)]
    enum Spoil {
        None,
        FlipSignature(usize),
        Stranger,
        WrongCapsule,
        SmallOrderR,
    }

    fn arb_spoil() -> impl Strategy<Value = Spoil> {
        prop_oneof![
            8 => Just(Spoil::None),
            2 => (0usize..64).prop_map(Spoil::FlipSignature),
            1 => Just(Spoil::Stranger),
            1 => Just(Spoil::WrongCapsule),
            1 => Just(Spoil::SmallOrderR),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Batch verification with bisection gives, for every item, what
        /// verifying that heartbeat alone gives.
        #[test]
        fn verify_heartbeats_equals_verifying_each_alone(
            spoils in proptest::collection::vec(arb_spoil(), 1..40),
        ) {
            let key = writer();
            let md = capsule_md(&[&key], 1);
            let other = capsule_md(&[&key], 2);
            let (_, records) = chain(&md, &key, spoils.len() as u64);
            let mut mds: Vec<&Metadata> = Vec::new();
            let hbs: Vec<Heartbeat> = records
                .iter()
                .zip(&spoils)
                .map(|(r, spoil)| {
                    let mut hb = Heartbeat::sign(&key, r);
                    mds.push(&md);
                    match *spoil {
                        Spoil::None => {}
                        Spoil::FlipSignature(i) => hb.signature.0[i] ^= 1,
                        Spoil::Stranger => hb = Heartbeat::sign(&SecretKey::from_seed(&[5; 32]), r),
                        Spoil::WrongCapsule => {
                            mds.pop();
                            mds.push(&other);
                        }
                        Spoil::SmallOrderR => {
                            // The identity as R: of small order, refused by both paths.
                            hb.signature.0[..32].fill(0);
                            hb.signature.0[0] = 1;
                        }
                    }
                    hb
                })
                .collect();
            let items: Vec<(&Metadata, &Heartbeat)> = mds.iter().copied().zip(&hbs).collect();
            let batch = verify_heartbeats(&items);
            let alone: Vec<_> = items.iter().map(|(md, hb)| hb.verify(md)).collect();
            prop_assert_eq!(batch, alone);
        }
    }

    #[test]
    fn heartbeat_decoding_rejects_bad_input() {
        let key = writer();
        let md = capsule_md(&[&key], 1);
        let (_, records) = chain(&md, &key, 1);
        let hb = Heartbeat::sign(&key, &records[0]);
        let bytes = hb.to_bytes();
        assert_eq!(bytes.len(), HEARTBEAT_LEN);
        assert_eq!(
            Heartbeat::decode(bytes.slice(..HEARTBEAT_LEN - 1)),
            Err(DecodeError::Truncated { what: "signature" })
        );
        let mut long = bytes.to_vec();
        long.extend_from_slice(&[0, 0]);
        assert_eq!(
            Heartbeat::decode(long),
            Err(DecodeError::TrailingBytes {
                what: "heartbeat",
                count: 2
            })
        );
        let mut zero = bytes.to_vec();
        zero[32..40].fill(0);
        assert_eq!(
            Heartbeat::decode(zero),
            Err(DecodeError::Invalid {
                what: "heartbeat seqno 0"
            })
        );
    }
}
