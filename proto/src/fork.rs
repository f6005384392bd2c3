//! Evidence that a writer forked a capsule.
//!
//! A fork is a second, different record at a seqno a server already
//! stores, committed to by a valid writer heartbeat. A capsule server
//! rejects it (the writer gets [`ErrorCode::Fork`](crate::capsule::ErrorCode::Fork)),
//! or finds it while syncing with another replica, and keeps a
//! [`ForkEvidence`]; the conflicting record is never served as part of the
//! capsule. Readers ask for the evidence with `GetForks`.
//!
//! The evidence stands on its own: the conflicting record and a [`Proof`]
//! from the writer's heartbeat down to it, through the headers of the batch
//! that carried it. Anyone holding the capsule's metadata can check it with
//! [`ForkEvidence::verify`] and compare it with the record the server serves
//! at that seqno.
//!
//! ```text
//! ForkEvidence: Record (the conflicting record), Proof (heartbeat, headers down to it)
//! ```

use crate::proof::{Proof, ProofError, VerifiedHeartbeat};
use crate::record::Record;
use bytes::BytesMut;
use gdp_certs::Metadata;
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader};

/// A conflicting record and the writer's signed commitment to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkEvidence {
    /// The record that conflicts with the stored record at its seqno.
    pub record: Record,
    /// The proof of `record` from the heartbeat that closed its batch.
    pub proof: Proof,
}

impl ForkEvidence {
    /// The seqno both records claim.
    pub fn seqno(&self) -> u64 {
        self.record.seqno()
    }

    /// Checks that the capsule's writer committed to the conflicting record:
    /// the proof leads from a valid heartbeat of `md`'s capsule to it.
    pub fn verify(&self, md: &Metadata) -> Result<VerifiedHeartbeat, ProofError> {
        self.proof.verify(md, &self.record)
    }
}

impl Encode for ForkEvidence {
    fn encode(&self, buf: &mut BytesMut) {
        self.record.encode(buf);
        self.proof.encode(buf);
    }
    fn encoded_len(&self) -> usize {
        self.record.encoded_len() + self.proof.encoded_len()
    }
}

impl Decode for ForkEvidence {
    const WHAT: &'static str = "fork evidence";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ForkEvidence {
            record: Record::decode_from(r)?,
            proof: Proof::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Appender, ChainState};
    use crate::proof::Heartbeat;
    use bytes::Bytes;
    use gdp_certs::{SecretKey, Timestamp};

    #[test]
    fn evidence_round_trips_and_verifies_only_for_its_capsule() {
        let key = SecretKey::from_seed(&[1; 32]);
        let md = Metadata::capsule(
            key.public(),
            vec![key.public()],
            "forked",
            Timestamp(1),
            vec![],
        )
        .expect("valid")
        .with_nonce([1; 16]);
        let mut a = Appender::new(key.clone(), &md, ChainState::new(md.name())).expect("writer");
        let records: Vec<Record> = (0..5u8)
            .map(|i| a.append(Bytes::from(vec![i]), Timestamp(1)).expect("ok"))
            .collect();
        let hb = Heartbeat::sign(&key, &records[4]);
        let proof = Proof::build(hb, 2, |s| {
            records
                .get(usize::try_from(s).ok()? - 1)
                .map(Record::header)
        })
        .expect("headers at hand");
        let ev = ForkEvidence {
            record: records[1].clone(),
            proof,
        };
        let back = ForkEvidence::decode(ev.to_bytes()).expect("round trips");
        assert_eq!(back, ev);
        assert_eq!(back.seqno(), 2);
        assert_eq!(back.verify(&md).map(|h| h.seqno()), Ok(5));

        let other = md.clone().with_nonce([2; 16]);
        assert!(matches!(
            back.verify(&other),
            Err(ProofError::WrongCapsule { .. })
        ));
        let mut tampered = back;
        tampered.record = records[2].clone();
        assert!(matches!(
            tampered.verify(&md),
            Err(ProofError::TargetMismatch { .. })
        ));
    }
}
