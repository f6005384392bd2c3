//! The tables of the capsule store and the encodings of their rows.
//!
//! One redb database holds seven tables. Names are the 32 raw bytes of a
//! [`Name`]; every value is one of the canonical encodings of
//! [`gdp_certs::codec`], so a row decodes with the same bounds checks as a
//! message from the network.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | `&str` | `u64` (`schema` = [`SCHEMA_VERSION`]) |
//! | `capsules` | capsule | `CapsuleRow`: metadata, AdCert |
//! | `records` | (capsule, seqno) | `[32] record hash` then the encoded [`Record`] |
//! | `tails` | capsule | `TailRow`: tail seqno, tail hash, latest heartbeat |
//! | `forks` | (capsule, seqno) | encoded [`ForkEvidence`] |
//! | `heartbeats` | (capsule, seqno) | the [`Heartbeat`] that closed the append ending at seqno |
//! | `replicas` | capsule | the newest owner-signed [`ReplicaSet`](gdp_certs::cert::ReplicaSet) |
//!
//! `heartbeats` lets a replica hand another the records after its tail in
//! pieces that each end at a signed heartbeat (see the service's sync).
//! Both tables came after the first layout; they are created at open when
//! missing, and a capsule stored before them syncs from its tail heartbeat.
//!
//! A record is stored beside its hash so that a damaged value is caught on
//! read: `decode_record_value` re-hashes the record and compares, and a
//! mismatch is [`StoreError::Corrupt`], never a record.

use bytes::{BufMut, Bytes, BytesMut};
use gdp_certs::cert::AdCert;
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader};
use gdp_certs::{Metadata, Name};
use gdp_proto::proof::{HEARTBEAT_LEN, Heartbeat};
use gdp_proto::record::{RECORD_HASH_LEN, Record, RecordHash};
use redb::TableDefinition;

use super::StoreError;
use crate::fork::ForkEvidence;

/// Version of the table layout. A store written with another version is
/// refused at open.
pub const SCHEMA_VERSION: u64 = 1;

/// Key of the schema version in the `meta` table.
pub(crate) const SCHEMA_KEY: &str = "schema";

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const CAPSULES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("capsules");
pub(crate) const RECORDS: TableDefinition<(&[u8; 32], u64), &[u8]> =
    TableDefinition::new("records");
pub(crate) const TAILS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("tails");
pub(crate) const FORKS: TableDefinition<(&[u8; 32], u64), &[u8]> = TableDefinition::new("forks");
pub(crate) const HEARTBEATS: TableDefinition<(&[u8; 32], u64), &[u8]> =
    TableDefinition::new("heartbeats");
pub(crate) const REPLICAS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("replicas");

/// A row of the `capsules` table: what a `Create` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CapsuleRow {
    pub(crate) metadata: Metadata,
    pub(crate) adcert: AdCert,
}

impl Encode for CapsuleRow {
    fn encode(&self, buf: &mut BytesMut) {
        self.metadata.encode(buf);
        self.adcert.encode(buf);
    }
    fn encoded_len(&self) -> usize {
        self.metadata.encoded_len() + self.adcert.encoded_len()
    }
}

impl Decode for CapsuleRow {
    const WHAT: &'static str = "capsule row";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CapsuleRow {
            metadata: Metadata::decode_from(r)?,
            adcert: AdCert::decode_from(r)?,
        })
    }
}

/// A capsule's durable tail: the newest record and the newest heartbeat,
/// which covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Seqno of the newest record (at least 1: a capsule without records has
    /// no tail row).
    pub seqno: u64,
    /// Hash of the newest record.
    pub hash: RecordHash,
    /// The writer's heartbeat over the newest record, as stored (checked
    /// against the metadata when the store is opened).
    pub heartbeat: Heartbeat,
}

impl Encode for Tail {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64(self.seqno);
        self.hash.encode(buf);
        self.heartbeat.encode(buf);
    }
    fn encoded_len(&self) -> usize {
        8 + RECORD_HASH_LEN + HEARTBEAT_LEN
    }
}

impl Decode for Tail {
    const WHAT: &'static str = "tail row";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let seqno = r.u64("tail seqno")?;
        if seqno == 0 {
            return Err(DecodeError::Invalid {
                what: "tail seqno 0",
            });
        }
        Ok(Tail {
            seqno,
            hash: RecordHash::decode_from(r)?,
            heartbeat: Heartbeat::decode_from(r)?,
        })
    }
}

/// Appends the `records` value of `record` to `buf`: its hash, then its
/// encoding.
pub(crate) fn encode_record_value(record: &Record, buf: &mut BytesMut) {
    buf.put_slice(record.hash().as_bytes());
    record.encode(buf);
}

/// Decodes a `records` value stored under `(capsule, seqno)`, checking that
/// the record decodes, hashes to the stored hash and sits under the right
/// key. Anything else is [`StoreError::Corrupt`].
pub(crate) fn decode_record_value(
    capsule: &Name,
    seqno: u64,
    value: &[u8],
) -> Result<Record, StoreError> {
    let corrupt = || StoreError::Corrupt {
        capsule: *capsule,
        seqno,
    };
    if value.len() < RECORD_HASH_LEN {
        return Err(corrupt());
    }
    let (stored_hash, encoded) = value.split_at(RECORD_HASH_LEN);
    let record = Record::decode(Bytes::copy_from_slice(encoded)).map_err(|_| corrupt())?;
    if record.hash().as_bytes() != stored_hash
        || record.capsule() != capsule
        || record.seqno() != seqno
    {
        return Err(corrupt());
    }
    Ok(record)
}

/// Decodes a row of `table` for `capsule`; a failure is
/// [`StoreError::CorruptRow`].
pub(crate) fn decode_row<T: Decode>(
    table: &'static str,
    capsule: &Name,
    value: &[u8],
) -> Result<T, StoreError> {
    T::decode(Bytes::copy_from_slice(value)).map_err(|_| StoreError::CorruptRow {
        table,
        capsule: *capsule,
    })
}

/// Decodes a `forks` value.
pub(crate) fn decode_fork(
    capsule: &Name,
    seqno: u64,
    value: &[u8],
) -> Result<ForkEvidence, StoreError> {
    let evidence: ForkEvidence = decode_row("forks", capsule, value)?;
    if evidence.seqno() != seqno || evidence.record.capsule() != capsule {
        return Err(StoreError::CorruptRow {
            table: "forks",
            capsule: *capsule,
        });
    }
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_certs::cert::Validity;
    use gdp_certs::{SecretKey, Timestamp};
    use gdp_proto::chain::ChainState;
    use proptest::prelude::*;

    fn record() -> Record {
        let mut state = ChainState::new(Name::from_bytes([3; 32]));
        state
            .next_record(Bytes::from_static(b"some payload"), Timestamp(5))
            .expect("small payload")
    }

    #[test]
    fn record_values_round_trip_and_catch_damage() {
        let r = record();
        let mut buf = BytesMut::new();
        encode_record_value(&r, &mut buf);
        let capsule = *r.capsule();
        assert_eq!(
            decode_record_value(&capsule, 1, &buf).expect("intact value decodes"),
            r
        );

        // Every single-byte change is caught.
        for i in 0..buf.len() {
            let mut bad = buf.to_vec();
            bad[i] ^= 0x20;
            assert!(
                matches!(
                    decode_record_value(&capsule, 1, &bad),
                    Err(StoreError::Corrupt { capsule: c, seqno: 1 }) if c == capsule
                ),
                "byte {i}"
            );
        }
        // Under the wrong key.
        assert!(matches!(
            decode_record_value(&capsule, 2, &buf),
            Err(StoreError::Corrupt { seqno: 2, .. })
        ));
        let other = Name::from_bytes([4; 32]);
        assert!(matches!(
            decode_record_value(&other, 1, &buf),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_record_value(&capsule, 1, &buf[..10]),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn tail_rows_round_trip_and_reject_seqno_zero() {
        let r = record();
        let key = SecretKey::from_seed(&[1; 32]);
        let tail = Tail {
            seqno: 1,
            hash: r.hash(),
            heartbeat: Heartbeat::sign(&key, &r),
        };
        let bytes = tail.to_bytes();
        assert_eq!(bytes.len(), tail.encoded_len());
        assert_eq!(Tail::decode(bytes.clone()), Ok(tail));
        let mut zero = bytes.to_vec();
        zero[..8].fill(0);
        assert_eq!(
            Tail::decode(zero),
            Err(DecodeError::Invalid {
                what: "tail seqno 0"
            })
        );
        let capsule = Name::from_bytes([3; 32]);
        assert!(matches!(
            decode_row::<Tail>("tails", &capsule, &bytes[..20]),
            Err(StoreError::CorruptRow { table: "tails", capsule: c }) if c == capsule
        ));
    }

    #[test]
    fn capsule_rows_round_trip() {
        let owner = SecretKey::from_seed(&[2; 32]);
        let metadata = Metadata::capsule(
            owner.public(),
            vec![owner.public()],
            "row",
            Timestamp(1),
            vec![Name::from_bytes([8; 32])],
        )
        .expect("valid");
        let adcert = AdCert::issue(
            &owner,
            metadata.name(),
            Name::from_bytes([8; 32]),
            Validity::new(Timestamp(0), Timestamp(10)),
        );
        let row = CapsuleRow { metadata, adcert };
        let bytes = row.to_bytes();
        assert_eq!(bytes.len(), row.encoded_len());
        assert_eq!(CapsuleRow::decode(bytes.clone()), Ok(row));
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(matches!(
            CapsuleRow::decode(long),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }

    proptest! {
        #[test]
        fn row_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            let c = Name::from_bytes([3; 32]);
            let _ = decode_row::<Tail>("tails", &c, &bytes);
            let _ = decode_row::<CapsuleRow>("capsules", &c, &bytes);
            let _ = decode_record_value(&c, 1, &bytes);
            let _ = decode_fork(&c, 1, &bytes);
        }

        #[test]
        fn any_flipped_bit_of_a_record_value_is_corrupt(
            payload in proptest::collection::vec(any::<u8>(), 0..400),
            steps in 1u64..20,
            bit in any::<prop::sample::Index>(),
        ) {
            let capsule = Name::from_bytes([5; 32]);
            let mut state = ChainState::new(capsule);
            let mut r = None;
            for _ in 0..steps {
                r = Some(state.next_record(Bytes::from(payload.clone()), Timestamp(1)).expect("ok"));
            }
            let r = r.expect("steps >= 1");
            let mut buf = BytesMut::new();
            encode_record_value(&r, &mut buf);
            let mut bad = buf.to_vec();
            let i = bit.index(bad.len() * 8);
            bad[i / 8] ^= 1 << (i % 8);
            let seqno = r.seqno();
            prop_assert!(
                matches!(
                    decode_record_value(&capsule, seqno, &bad),
                    Err(StoreError::Corrupt { seqno: s, .. }) if s == seqno
                ),
                "flipped bit {} undetected", i
            );
        }
    }
}
