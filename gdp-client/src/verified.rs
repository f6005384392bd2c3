//! Records the client has verified, and the checks that make them.
//!
//! A server answers a read with consecutive records and a proof of the last
//! one: a writer's heartbeat and the hash path from the heartbeat's record
//! down to it. [`verify_answer`] checks that the records are the ones asked
//! for, that each is linked to the next by its `prev` hash, and that the
//! proof verifies against the capsule's metadata (the heartbeat's signer is
//! one of its writers). Only then does it hand out [`VerifiedRecord`]s,
//! which code outside this crate cannot build.

use std::sync::Arc;

use bytes::Bytes;
use gdp_certs::{Metadata, Name, Timestamp};
use gdp_proto::proof::{Proof, VerifiedHeartbeat};
use gdp_proto::record::{Record, RecordHash};

use crate::ClientError;

/// A record whose membership in its capsule was verified against the
/// capsule's metadata: a writer's heartbeat commits to it through the hash
/// chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecord {
    record: Record,
    /// Shared by the records of one answer (and small to move: a read
    /// moves each record several times on its way to the caller).
    heartbeat: Arc<VerifiedHeartbeat>,
}

impl VerifiedRecord {
    /// `record`, which `heartbeat` was checked to commit to (the caller
    /// verified the proof that links them).
    pub(crate) fn new(record: Record, heartbeat: VerifiedHeartbeat) -> Self {
        VerifiedRecord {
            record,
            heartbeat: Arc::new(heartbeat),
        }
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The record, forgetting that it was verified.
    pub fn into_record(self) -> Record {
        self.record
    }

    /// The heartbeat that commits to it (over this record or a newer one).
    pub fn heartbeat(&self) -> &VerifiedHeartbeat {
        &self.heartbeat
    }

    /// The capsule.
    pub fn capsule(&self) -> &Name {
        self.record.capsule()
    }

    /// The seqno.
    pub fn seqno(&self) -> u64 {
        self.record.seqno()
    }

    /// The writer's timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.record.timestamp()
    }

    /// The payload. It shares the buffer the record arrived in, along with
    /// the other PDUs of the same read (a block of up to 64 KiB): to keep
    /// many small payloads for long, keep copies
    /// (`Bytes::copy_from_slice(record.payload())`) so that the blocks can
    /// be freed.
    pub fn payload(&self) -> &Bytes {
        self.record.payload()
    }

    /// The record's hash.
    pub fn hash(&self) -> RecordHash {
        self.record.hash()
    }
}

/// Checks a server's answer of `records` with `proof` to a read of the
/// capsule described by `md`: the first record is `first`, none is after
/// `last`, they are consecutive and chained, and the proof of the last one
/// verifies.
pub(crate) fn verify_answer(
    md: &Metadata,
    records: Vec<Record>,
    proof: &Proof,
    first: u64,
    last: u64,
) -> Result<Vec<VerifiedRecord>, ClientError> {
    let (Some(a), Some(b)) = (records.first(), records.last()) else {
        return Err(ClientError::protocol("an answer without records"));
    };
    if a.seqno() != first {
        return Err(ClientError::protocol(format!(
            "asked for records from {first}, got records from {}",
            a.seqno()
        )));
    }
    if b.seqno() > last {
        return Err(ClientError::protocol(format!(
            "asked for records up to {last}, got record {}",
            b.seqno()
        )));
    }
    let heartbeat = Arc::new(
        proof
            .verify_range(md, &records)
            .map_err(ClientError::Verification)?,
    );
    Ok(records
        .into_iter()
        .map(|record| VerifiedRecord {
            record,
            heartbeat: heartbeat.clone(),
        })
        .collect())
}

/// Checks that `md` is the metadata of capsule `name`.
pub(crate) fn check_capsule_metadata(md: &Metadata, name: &Name) -> Result<(), ClientError> {
    let actual = md.name();
    if actual != *name || md.kind() != gdp_certs::Kind::Capsule {
        return Err(ClientError::MetadataMismatch {
            expected: *name,
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_certs::SecretKey;
    use gdp_proto::chain::{Appender, ChainState};
    use gdp_proto::proof::Heartbeat;
    use gdp_proto::proof::ProofError;
    use proptest::prelude::*;

    struct Chain {
        md: Metadata,
        records: Vec<Record>,
        heartbeat: Heartbeat,
    }

    fn chain(n: u64) -> Chain {
        let key = SecretKey::from_seed(&[5; 32]);
        let md = Metadata::capsule(
            key.public(),
            vec![key.public()],
            "t",
            Timestamp::from_secs(1),
            vec![],
        )
        .expect("valid");
        let mut w = Appender::new(key, &md, ChainState::new(md.name())).expect("writer");
        let records: Vec<Record> = (0..n)
            .map(|i| {
                w.append(Bytes::from(format!("r{i}")), Timestamp(i))
                    .expect("append")
            })
            .collect();
        let heartbeat = w.heartbeat().expect("records");
        Chain {
            md,
            records,
            heartbeat,
        }
    }

    fn proof(c: &Chain, target: u64) -> Proof {
        Proof::build(c.heartbeat.clone(), target, |s| {
            c.records
                .get(usize::try_from(s).ok()? - 1)
                .map(Record::header)
        })
        .expect("headers at hand")
    }

    fn slice(c: &Chain, from: u64, to: u64) -> Vec<Record> {
        c.records[(from - 1) as usize..to as usize].to_vec()
    }

    #[test]
    fn a_true_answer_verifies() {
        let c = chain(20);
        let out = verify_answer(&c.md, slice(&c, 3, 9), &proof(&c, 9), 3, 9).expect("verifies");
        assert_eq!(out.len(), 7);
        assert_eq!(out[0].seqno(), 3);
        assert_eq!(out[6].payload(), &Bytes::from("r8"));
        assert_eq!(out[0].heartbeat().seqno(), 20);
    }

    #[test]
    fn a_tampered_payload_fails_verification() {
        let c = chain(8);
        let mut records = slice(&c, 1, 8);
        let r = &records[4];
        records[4] = Record::new(
            *r.capsule(),
            r.seqno(),
            r.timestamp(),
            *r.prev(),
            r.skips().to_vec(),
            Bytes::from_static(b"forged"),
        )
        .expect("shape");
        let err = verify_answer(&c.md, records, &proof(&c, 8), 1, 8).expect_err("tampered");
        assert!(matches!(
            err,
            ClientError::Verification(ProofError::BadPrev { seqno: 6 })
        ));
    }

    #[test]
    fn records_other_than_asked_are_refused() {
        let c = chain(8);
        let err = verify_answer(&c.md, slice(&c, 2, 4), &proof(&c, 4), 1, 4).expect_err("wrong");
        assert!(matches!(err, ClientError::Protocol { .. }));
        let err = verify_answer(&c.md, slice(&c, 2, 6), &proof(&c, 6), 2, 5).expect_err("long");
        assert!(matches!(err, ClientError::Protocol { .. }));
    }

    #[test]
    fn a_proof_for_another_capsule_fails() {
        let c = chain(4);
        let other = chain(4);
        let err =
            verify_answer(&other.md, slice(&c, 1, 4), &proof(&c, 4), 1, 4).expect_err("other");
        assert!(matches!(err, ClientError::Verification(_)));
    }

    #[test]
    fn metadata_must_hash_to_the_name() {
        let c = chain(1);
        assert!(check_capsule_metadata(&c.md, &c.md.name()).is_ok());
        let err = check_capsule_metadata(&c.md, &Name::from_bytes([1; 32])).expect_err("wrong");
        assert!(matches!(err, ClientError::MetadataMismatch { .. }));
    }

    proptest! {
        #[test]
        fn any_bit_flip_in_a_payload_is_caught(n in 2u64..24, pick in any::<prop::sample::Index>(), bit in 0usize..8) {
            let c = chain(n);
            let mut records = c.records.clone();
            let i = pick.index(records.len());
            let r = &records[i];
            let mut payload = r.payload().to_vec();
            payload[0] ^= 1 << bit;
            records[i] = Record::new(*r.capsule(), r.seqno(), r.timestamp(), *r.prev(),
                r.skips().to_vec(), Bytes::from(payload)).expect("shape");
            let result = verify_answer(&c.md, records, &proof(&c, n), 1, n);
            prop_assert!(matches!(result, Err(ClientError::Verification(_))));
        }
    }
}
