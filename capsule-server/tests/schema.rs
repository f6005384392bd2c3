//! Schema conversion: a store written with the first table layout (one
//! `records` row per record) opens as a store of record runs, whole or
//! after a conversion cut short, with every record, every damage and the
//! chain as they were.

mod common;

use std::path::Path;

use common::*;
use gdp_capsule_server::store::{
    DATABASE_FILE, SCHEMA_V1, SCHEMA_VERSION, Store, StoreError, StoreOptions,
};
use gdp_proto::chain::Appender;
use gdp_proto::record::Record;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RUNS: TableDefinition<(&[u8; 32], u64), &[u8]> = TableDefinition::new("record_runs");
const RECORDS_V1: TableDefinition<(&[u8; 32], u64), &[u8]> = TableDefinition::new("records");

/// Records in the test store, appended in batches of `PER_BATCH`.
const N: u64 = 500;
const PER_BATCH: usize = 7;

/// A store of `N` records of one capsule, closed, and its records as read
/// back.
fn filled(f: &Fixture) -> (TempDir, Vec<Record>) {
    let dir = TempDir::new("schema");
    fill_store(f, dir.path(), N as usize, PER_BATCH, 100);
    let (store, _) = open(dir.path());
    let records = store
        .records(&f.capsule(), 1, N, usize::MAX, usize::MAX)
        .expect("reads");
    assert_eq!(records.len() as u64, N);
    (dir, records)
}

/// The entries of a stored run (first seqno, an index of where each entry
/// ends, then the entries): (seqno, hash and encoded record).
fn entries(last: u64, value: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let first = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
    let count = (last - first + 1) as usize;
    let (index, stored) = value[8..].split_at(4 * count);
    let mut start = 0;
    (0..count)
        .map(|i| {
            let end = u32::from_be_bytes(index[4 * i..4 * i + 4].try_into().expect("4 bytes"));
            let entry = stored[start..end as usize].to_vec();
            start = end as usize;
            (first + i as u64, entry)
        })
        .collect()
}

/// A run as read: (capsule, last seqno) and its value.
type StoredRun = ((Vec<u8>, u64), Vec<u8>);

/// Rewrites the runs whose last seqno is above `keep` as schema version 1
/// rows, one per record, and marks the store version 1: with `keep` 0 a
/// store as the first layout wrote it, otherwise one whose conversion
/// stopped after the runs up to `keep`.
fn downgrade(dir: &Path, keep: u64) {
    let db = Database::create(dir.join(DATABASE_FILE)).expect("opens");
    let txn = db.begin_write().expect("txn");
    {
        let mut runs = txn.open_table(RUNS).expect("runs");
        let mut old = txn.open_table(RECORDS_V1).expect("records");
        let moved: Vec<StoredRun> = runs
            .iter()
            .expect("iterates")
            .map(|e| {
                let (k, v) = e.expect("reads");
                let (c, last) = k.value();
                ((c.to_vec(), last), v.value().to_vec())
            })
            .filter(|((_, last), _)| *last > keep)
            .collect();
        for ((capsule, last), value) in moved {
            let capsule: [u8; 32] = capsule.try_into().expect("32 bytes");
            runs.remove((&capsule, last)).expect("removes");
            for (seqno, stored) in entries(last, &value) {
                old.insert((&capsule, seqno), stored.as_slice())
                    .expect("inserts");
            }
        }
        txn.open_table(META)
            .expect("meta")
            .insert("schema", SCHEMA_V1)
            .expect("inserts");
    }
    txn.commit().expect("commits");
}

/// The schema version and whether the version 1 table is still there.
fn layout(dir: &Path) -> (u64, bool) {
    let db = Database::create(dir.join(DATABASE_FILE)).expect("opens");
    let txn = db.begin_read().expect("txn");
    let schema = txn
        .open_table(META)
        .expect("meta")
        .get("schema")
        .expect("reads")
        .expect("set")
        .value();
    let old = txn.open_table(RECORDS_V1).is_ok();
    (schema, old)
}

fn converts(keep: u64) {
    let f = Fixture::new(3);
    let (dir, before) = filled(&f);
    downgrade(dir.path(), keep);
    assert_eq!(layout(dir.path()), (SCHEMA_V1, true));

    let (store, report) = open(dir.path());
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    assert_eq!(report.capsules.len(), 1);
    assert_eq!(report.capsules[0].chain.tail_seqno(), N);
    let capsule = f.capsule();
    let after = store
        .records(&capsule, 1, N, usize::MAX, usize::MAX)
        .expect("reads");
    assert_eq!(after, before);
    assert_eq!(store.scrub(&capsule).expect("intact"), N);
    for seqno in [1, 2, 7, 8, 250, N] {
        assert_eq!(
            store.record(&capsule, seqno).expect("reads").as_ref(),
            Some(&before[seqno as usize - 1])
        );
    }
    drop(store);
    assert_eq!(layout(dir.path()), (SCHEMA_VERSION, false));

    // The converted store keeps taking appends where it stopped.
    let (store, report) = open(dir.path());
    let chain = report.capsules[0].chain.clone();
    let mut h = Harness::from_store(
        f.clone(),
        unlimited(),
        TempDir::new("unused"),
        store,
        report,
    );
    let mut a = Appender::new(f.writer.clone(), &f.md, chain).expect("the writer");
    h.fill(&mut a, 20, 5, 100);
    assert_eq!(
        h.store
            .records(&capsule, N + 1, N + 20, usize::MAX, usize::MAX)
            .expect("reads")
            .len(),
        20
    );
}

#[test]
fn a_version_1_store_is_converted_at_open() {
    converts(0);
}

#[test]
fn a_conversion_cut_short_resumes() {
    converts(N / 2);
}

#[test]
fn a_damaged_version_1_record_stays_damaged_and_is_never_served() {
    let f = Fixture::new(4);
    let (dir, before) = filled(&f);
    downgrade(dir.path(), 0);
    {
        let db = Database::create(dir.path().join(DATABASE_FILE)).expect("opens");
        let txn = db.begin_write().expect("txn");
        {
            let mut old = txn.open_table(RECORDS_V1).expect("records");
            let key = f.capsule();
            let mut value = old
                .get((key.as_bytes(), 42))
                .expect("reads")
                .expect("stored")
                .value()
                .to_vec();
            let last = value.len() - 1;
            value[last] ^= 0x01;
            old.insert((key.as_bytes(), 42), value.as_slice())
                .expect("inserts");
        }
        txn.commit().expect("commits");
    }
    let (store, report) =
        Store::open(dir.path(), &StoreOptions::default()).expect("opens and converts");
    assert!(report.damaged.is_empty(), "the tail is intact");
    let capsule = f.capsule();
    assert!(matches!(
        store.record(&capsule, 42),
        Err(StoreError::Corrupt { seqno: 42, .. })
    ));
    assert_eq!(
        store.record(&capsule, 41).expect("reads").as_ref(),
        Some(&before[40])
    );
    assert_eq!(
        store.record(&capsule, 43).expect("reads").as_ref(),
        Some(&before[42])
    );
    assert!(matches!(
        store.scrub(&capsule),
        Err(StoreError::Corrupt { seqno: 42, .. })
    ));
}

#[test]
fn a_store_of_an_unknown_schema_is_refused() {
    let dir = TempDir::new("schema");
    drop(open(dir.path()));
    {
        let db = Database::create(dir.path().join(DATABASE_FILE)).expect("opens");
        let txn = db.begin_write().expect("txn");
        txn.open_table(META)
            .expect("meta")
            .insert("schema", SCHEMA_VERSION + 1)
            .expect("inserts");
        txn.commit().expect("commits");
    }
    let err = Store::open(dir.path(), &StoreOptions::default()).expect_err("refused");
    assert!(
        matches!(err, StoreError::Schema { found } if found == SCHEMA_VERSION + 1),
        "{err:?}"
    );
}
