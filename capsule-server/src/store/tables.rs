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
//! | `record_runs` | (capsule, last seqno of the run) | a run: the records of one append, each beside its hash |
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
//! read: each record read is re-hashed and compared, and a mismatch is
//! [`StoreError::Corrupt`], never a record.
//!
//! # Runs
//!
//! Records are stored a run per row: the records of one append (at most
//! [`MAX_APPEND_RECORDS`](gdp_proto::capsule::MAX_APPEND_RECORDS) of them),
//! keyed by the capsule and the run's last seqno, so that the row holding
//! seqno `s` is the first at or after `(capsule, s)`:
//!
//! ```text
//! u64   first seqno
//! u32   for each record, in seqno order: where its entry ends, counted
//!       from the start of the entries (the index)
//! then, for each record in seqno order, its entry:
//!   [32]  the record's hash
//!   ..    the encoded [`Record`]
//! ```
//!
//! The number of records follows from the key and the first seqno, and the
//! last end must be the length of the entries.
//!
//! So an append costs one B-tree insert instead of one per record (with a
//! row per record, the inserts took about 60% of the committer thread's
//! time), and a range read walks a few rows instead of one per record. The
//! index takes a reader straight to the records it wants, and it decodes
//! only those.
//!
//! Schema version 1 kept one `records` row per record (`[32] hash` then the
//! encoded record). [`Store::open`](super::Store::open) converts such a
//! store in place, moving its rows into runs a bounded batch per
//! transaction, so a conversion cut short resumes where it stopped; the
//! stored bytes of each record, damaged or not, move unchanged.

use bytes::{BufMut, Bytes, BytesMut};
use gdp_certs::cert::AdCert;
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader};
use gdp_certs::{Metadata, Name};
use gdp_proto::proof::{HEARTBEAT_LEN, Heartbeat};
use gdp_proto::record::{RECORD_HASH_LEN, Record, RecordHash};
use redb::TableDefinition;

use super::StoreError;
use crate::fork::ForkEvidence;

/// Version of the table layout. A store of [`SCHEMA_V1`] is converted at
/// open; any other version is refused.
pub const SCHEMA_VERSION: u64 = 2;

/// The first table layout: one `records` row per record.
pub const SCHEMA_V1: u64 = 1;

/// Key of the schema version in the `meta` table.
pub(crate) const SCHEMA_KEY: &str = "schema";

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const CAPSULES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("capsules");
pub(crate) const RUNS: TableDefinition<(&[u8; 32], u64), &[u8]> =
    TableDefinition::new("record_runs");
/// Schema version 1's records, one row per record; read only to convert
/// them into runs.
pub(crate) const RECORDS_V1: TableDefinition<(&[u8; 32], u64), &[u8]> =
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

/// Bytes of a run's header: its first seqno.
const RUN_HEADER_LEN: usize = 8;
/// Bytes of a run's index per record: where its entry ends.
const INDEX_LEN: usize = 4;

/// Bytes [`encode_run`] writes for `records`.
pub(crate) fn run_len(records: &[Record]) -> usize {
    RUN_HEADER_LEN
        + records
            .iter()
            .map(|r| INDEX_LEN + RECORD_HASH_LEN + r.encoded_len())
            .sum::<usize>()
}

/// Appends the run of `records` (consecutive, at least one) to `buf`, to be
/// stored under the last one's seqno.
pub(crate) fn encode_run(records: &[Record], buf: &mut BytesMut) {
    buf.reserve(run_len(records));
    buf.put_u64(records.first().map_or(0, Record::seqno));
    let mut end = 0usize;
    for r in records {
        end += RECORD_HASH_LEN + r.encoded_len();
        buf.put_u32(u32::try_from(end).expect("an append is far shorter than 4 GiB"));
    }
    for r in records {
        buf.put_slice(r.hash().as_bytes());
        r.encode(buf);
    }
}

/// A run rebuilt from schema version 1 `records` values while a store is
/// converted.
#[derive(Debug, Default)]
pub(crate) struct RunBuilder {
    /// The capsule, and the first and last seqno so far.
    at: Option<(Name, u64, u64)>,
    ends: Vec<u32>,
    entries: BytesMut,
}

impl RunBuilder {
    /// Whether the row `(capsule, seqno)` extends this run (or it is
    /// empty) and the run has room for it.
    pub(crate) fn continues(&self, capsule: &Name, seqno: u64) -> bool {
        match self.at {
            None => true,
            Some((c, first, last)) => {
                c == *capsule
                    && last.checked_add(1) == Some(seqno)
                    && seqno - first < gdp_proto::capsule::MAX_APPEND_RECORDS as u64
            }
        }
    }

    /// Adds the version 1 `records` value stored under `(capsule, seqno)`,
    /// `[32] hash` then the encoded record, unchanged: damage in it stays
    /// damage, found on read.
    pub(crate) fn push(&mut self, capsule: Name, seqno: u64, value: &[u8]) {
        match &mut self.at {
            Some((_, _, last)) => *last = seqno,
            None => self.at = Some((capsule, seqno, seqno)),
        }
        if value.len() < RECORD_HASH_LEN {
            // Too short to hold a hash: stored so that it reads as corrupt.
            self.entries.put_bytes(0, RECORD_HASH_LEN);
        }
        self.entries.put_slice(value);
        self.ends
            .push(u32::try_from(self.entries.len()).unwrap_or(u32::MAX));
    }

    /// The run's key and value, if it holds any row; empties the builder.
    pub(crate) fn take(&mut self) -> Option<((Name, u64), BytesMut)> {
        let (capsule, first, last) = self.at.take()?;
        let mut value = BytesMut::with_capacity(
            RUN_HEADER_LEN + INDEX_LEN * self.ends.len() + self.entries.len(),
        );
        value.put_u64(first);
        for end in self.ends.drain(..) {
            value.put_u32(end);
        }
        value.put_slice(&self.entries);
        self.entries.clear();
        Some(((capsule, last), value))
    }
}

/// The value a store keeps for `records`, the records of one append
/// (consecutive, at least one), stored under the last one's seqno.
pub fn run_value(records: &[Record]) -> Bytes {
    let mut buf = BytesMut::new();
    encode_run(records, &mut buf);
    buf.freeze()
}

/// Decodes and checks every record of the run stored under
/// `(capsule, last)`, as a read of the whole run does: each record must
/// decode, match the hash stored beside it and carry its seqno. For the
/// fuzz target, and for tools that look inside a store.
pub fn read_run(capsule: &Name, last: u64, value: &[u8]) -> Result<Vec<Record>, StoreError> {
    let run = Run::parse(capsule, last, value)?;
    run.records_from(run.first()).collect()
}

/// A stored run: the records from its first seqno to `last`, the seqno it
/// is stored under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run<'a> {
    capsule: &'a Name,
    first: u64,
    last: u64,
    /// Where each record's entry ends in `entries`.
    index: &'a [u8],
    entries: &'a [u8],
}

impl<'a> Run<'a> {
    /// The run stored under `(capsule, last)`. Its header and the end of
    /// its index are checked here, each entry when it is read; a damaged
    /// header is [`StoreError::Corrupt`] at `last`.
    pub(crate) fn parse(
        capsule: &'a Name,
        last: u64,
        value: &'a [u8],
    ) -> Result<Run<'a>, StoreError> {
        let corrupt = StoreError::Corrupt {
            capsule: *capsule,
            seqno: last,
        };
        let Some((first, rest)) = value.split_first_chunk::<RUN_HEADER_LEN>() else {
            return Err(corrupt);
        };
        let first = u64::from_be_bytes(*first);
        if first == 0 || first > last || last - first >= MAX_RUN_RECORDS {
            return Err(corrupt);
        }
        let count = (last - first + 1) as usize;
        if rest.len() < INDEX_LEN * count {
            return Err(corrupt);
        }
        let (index, entries) = rest.split_at(INDEX_LEN * count);
        let run = Run {
            capsule,
            first,
            last,
            index,
            entries,
        };
        if run.end(count - 1) != entries.len() {
            return Err(corrupt);
        }
        Ok(run)
    }

    /// The run's first seqno.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Where entry `i` ends (`i` within the run).
    fn end(&self, i: usize) -> usize {
        let at = i * INDEX_LEN;
        u32::from_be_bytes(
            self.index[at..at + INDEX_LEN]
                .try_into()
                .expect("four bytes"),
        ) as usize
    }

    /// The stored entry of `seqno` (within the run): the record's hash,
    /// then its encoding, unchecked; [`StoreError::Corrupt`] if the index
    /// does not place it.
    fn entry(&self, seqno: u64) -> Result<&'a [u8], StoreError> {
        let i = (seqno - self.first) as usize;
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        let end = self.end(i);
        match self.entries.get(start..end) {
            Some(entry) if entry.len() >= RECORD_HASH_LEN => Ok(entry),
            _ => Err(StoreError::Corrupt {
                capsule: *self.capsule,
                seqno,
            }),
        }
    }

    /// The stored entries from `from` (at least the run's first) to the
    /// run's last: each seqno with its entry (see [`Run::entry`]).
    pub(crate) fn entries_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, &'a [u8]), StoreError>> + use<'a> {
        let run = *self;
        (from.max(run.first)..=run.last).map(move |seqno| Ok((seqno, run.entry(seqno)?)))
    }

    /// The records from `from` to the run's last, each checked as it comes
    /// (see [`decode_record_value`]).
    pub(crate) fn records_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + use<'a> {
        let capsule = self.capsule;
        self.entries_from(from)
            .map(move |e| e.and_then(|(seqno, entry)| decode_record_value(capsule, seqno, entry)))
    }

    /// Record `seqno` of the run (which must lie in it).
    pub(crate) fn get(&self, seqno: u64) -> Result<Record, StoreError> {
        decode_record_value(self.capsule, seqno, self.entry(seqno)?)
    }
}

/// Most records a run may hold: more than any append carries, so a run
/// header claiming more is damage.
const MAX_RUN_RECORDS: u64 = 1 << 16;

/// Decodes the records of `entries` (each a seqno and its stored entry,
/// all slices of one run's value `run`), checked as by
/// [`decode_record_value`], with their bytes copied out of the store once
/// for all of them: the records share one buffer, so a record kept keeps
/// the others' bytes too.
pub(crate) fn decode_entries(
    capsule: &Name,
    run: &[u8],
    entries: &[(u64, &[u8])],
) -> Result<Vec<Record>, StoreError> {
    let (Some((_, first)), Some((_, last))) = (entries.first(), entries.last()) else {
        return Ok(Vec::new());
    };
    let offset = |entry: &[u8]| entry.as_ptr() as usize - run.as_ptr() as usize;
    let start = offset(first);
    let shared = Bytes::copy_from_slice(&run[start..offset(last) + last.len()]);
    entries
        .iter()
        .map(|&(seqno, entry)| {
            let at = offset(entry) - start;
            decode_stored(capsule, seqno, shared.slice(at..at + entry.len()))
        })
        .collect()
}

/// Decodes a record stored under `(capsule, seqno)` from `value`, its hash
/// then its encoding (a run's entry, or a schema version 1 `records`
/// value), checking that the record decodes, hashes to the stored hash and
/// sits under the right key. Anything else is [`StoreError::Corrupt`].
pub(crate) fn decode_record_value(
    capsule: &Name,
    seqno: u64,
    value: &[u8],
) -> Result<Record, StoreError> {
    decode_stored(capsule, seqno, Bytes::copy_from_slice(value))
}

/// [`decode_record_value`] of `value` already copied out of the store.
fn decode_stored(capsule: &Name, seqno: u64, value: Bytes) -> Result<Record, StoreError> {
    let corrupt = || StoreError::Corrupt {
        capsule: *capsule,
        seqno,
    };
    if value.len() < RECORD_HASH_LEN {
        return Err(corrupt());
    }
    let record = Record::decode(value.slice(RECORD_HASH_LEN..)).map_err(|_| corrupt())?;
    if record.hash().as_bytes() != &value[..RECORD_HASH_LEN]
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

    /// A record's stored value without its length: hash, then encoding.
    fn encode_record_value(r: &Record, buf: &mut BytesMut) {
        buf.put_slice(r.hash().as_bytes());
        r.encode(buf);
    }

    /// `n` consecutive records of `capsule` after `skip` others, with
    /// payloads of varying length.
    fn chain(capsule: Name, skip: usize, n: usize) -> Vec<Record> {
        let mut state = ChainState::new(capsule);
        (0..skip + n)
            .map(|i| {
                let payload = Bytes::from(vec![i as u8; i % 7 * 13]);
                state
                    .next_record(payload, Timestamp(i as u64))
                    .expect("small")
            })
            .skip(skip)
            .collect()
    }

    fn read_run_from(
        capsule: &Name,
        last: u64,
        value: &[u8],
        from: u64,
    ) -> Result<Vec<Record>, StoreError> {
        Run::parse(capsule, last, value)?
            .records_from(from)
            .collect()
    }

    #[test]
    fn runs_round_trip_from_any_seqno() {
        let capsule = Name::from_bytes([3; 32]);
        let records = chain(capsule, 4, 9);
        let mut buf = BytesMut::new();
        encode_run(&records, &mut buf);
        assert_eq!(buf.len(), run_len(&records));
        let run = Run::parse(&capsule, 13, &buf).expect("intact");
        assert_eq!(run.first(), 5);
        for from in 5..=13u64 {
            let read = read_run_from(&capsule, 13, &buf, from).expect("intact");
            assert_eq!(read, records[(from - 5) as usize..], "from {from}");
            assert_eq!(run.get(from).expect("intact"), records[(from - 5) as usize]);
            // The same records, decoded from one copy of their bytes.
            let entries: Vec<(u64, &[u8])> = run
                .entries_from(from)
                .collect::<Result<_, _>>()
                .expect("intact");
            assert_eq!(
                decode_entries(&capsule, &buf, &entries).expect("intact"),
                read
            );
            // A damaged one among them fails them all.
            let mut bad = buf.to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            let run = Run::parse(&capsule, 13, &bad).expect("the header is intact");
            let entries: Vec<(u64, &[u8])> = run
                .entries_from(from)
                .collect::<Result<_, _>>()
                .expect("the lengths are intact");
            assert!(matches!(
                decode_entries(&capsule, &bad, &entries),
                Err(StoreError::Corrupt { seqno: 13, .. })
            ));
        }
        // Under another key, or another capsule's.
        assert!(Run::parse(&capsule, 4, &buf).is_err());
        assert!(read_run_from(&capsule, 14, &buf, 5).is_err());
        assert!(read_run_from(&capsule, 12, &buf, 5).is_err());
        assert!(read_run_from(&Name::from_bytes([4; 32]), 13, &buf, 5).is_err());
    }

    #[test]
    fn version_1_values_move_into_runs_unchanged() {
        let capsule = Name::from_bytes([3; 32]);
        let records = chain(capsule, 0, 5);
        let mut builder = RunBuilder::default();
        for r in &records {
            assert!(builder.continues(&capsule, r.seqno()));
            let mut value = BytesMut::new();
            encode_record_value(r, &mut value);
            builder.push(capsule, r.seqno(), &value);
        }
        assert!(!builder.continues(&capsule, 7), "not the next seqno");
        assert!(!builder.continues(&Name::from_bytes([4; 32]), 6));
        let ((c, last), value) = builder.take().expect("a run");
        assert_eq!((c, last), (capsule, 5));
        let mut direct = BytesMut::new();
        encode_run(&records, &mut direct);
        assert_eq!(value, direct);
        assert!(builder.take().is_none(), "emptied");

        // A value too short for a hash still makes a run, which reads as
        // corrupt at that record.
        builder.push(capsule, 1, &[1, 2, 3]);
        let (_, short) = builder.take().expect("a run");
        assert!(matches!(
            read_run_from(&capsule, 1, &short, 1),
            Err(StoreError::Corrupt { seqno: 1, .. })
        ));
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
            for last in [1, 2, 300, u64::MAX] {
                let _ = read_run_from(&c, last, &bytes, 1);
            }
        }

        #[test]
        fn any_flipped_bit_of_a_run_is_caught(
            skip in 0usize..30,
            n in 1usize..12,
            bit in any::<prop::sample::Index>(),
        ) {
            let capsule = Name::from_bytes([5; 32]);
            let records = chain(capsule, skip, n);
            let last = records.last().expect("n >= 1").seqno();
            let mut buf = BytesMut::new();
            encode_run(&records, &mut buf);
            let mut bad = buf.to_vec();
            let i = bit.index(bad.len() * 8);
            bad[i / 8] ^= 1 << (i % 8);
            let first = records[0].seqno();
            prop_assert!(
                read_run_from(&capsule, last, &bad, first).is_err(),
                "flipped bit {} undetected", i
            );
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
