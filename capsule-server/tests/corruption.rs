//! Corruption: a byte flipped inside a record in the database file is
//! detected (at open by redb's checksums, or on read by the record's hash)
//! and the record is never served.

mod common;

use std::path::Path;

use common::*;
use gdp_capsule_server::store::{DATABASE_FILE, Store, StoreError, StoreOptions};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};

const N: u64 = 300;
const LEN: usize = 300;

/// A store with `N` records written in 30 commits, closed cleanly.
fn filled(f: &Fixture) -> TempDir {
    let dir = TempDir::new("corrupt");
    fill_store(f, dir.path(), N as usize, 10, LEN);
    dir
}

/// Flips one byte of record `seqno`'s payload wherever the file holds a
/// copy of it. Returns how many copies were changed.
fn flip_payload_byte(dir: &Path, seqno: u64) -> usize {
    let path = dir.join(DATABASE_FILE);
    let mut bytes = std::fs::read(&path).expect("the database file exists");
    let marker = format!("<record {seqno:08} payload>").into_bytes();
    let mut hits = 0;
    let mut i = 0;
    while let Some(pos) = bytes[i..]
        .windows(marker.len())
        .position(|w| w == marker.as_slice())
    {
        let at = i + pos + marker.len() + 10;
        bytes[at] ^= 0x01;
        hits += 1;
        i = at;
    }
    std::fs::write(&path, bytes).expect("writable");
    hits
}

fn unchecked() -> StoreOptions {
    StoreOptions {
        check_integrity: false,
        ..StoreOptions::default()
    }
}

#[test]
fn a_damaged_record_is_reported_as_corrupt_and_never_served() {
    let f = Fixture::new(1);
    let dir = filled(&f);
    assert!(flip_payload_byte(dir.path(), 42) >= 1);

    // With redb's integrity check (the default), the open fails.
    let err = Store::open(dir.path(), &StoreOptions::default()).expect_err("damage is detected");
    assert!(matches!(err, StoreError::Integrity { .. }), "{err:?}");
    assert!(err.is_damage());

    // Without it, the record's own hash catches the damage on read.
    let (store, report) = Store::open(dir.path(), &unchecked()).expect("opens");
    assert!(report.damaged.is_empty(), "the tail is intact");
    let capsule = f.capsule();
    let err = store.record(&capsule, 42).expect_err("damaged");
    assert!(
        matches!(err, StoreError::Corrupt { capsule: c, seqno: 42 } if c == capsule),
        "{err:?}"
    );
    assert!(store.record(&capsule, 41).expect("reads").is_some());
    assert!(matches!(
        store.scrub(&capsule),
        Err(StoreError::Corrupt { seqno: 42, .. })
    ));

    // The service answers errors, never the record.
    let mut h = Harness::from_store(f.clone(), unlimited(), dir, store, report);
    for body in [
        CapsuleRequest::Read { seqno: 42 },
        CapsuleRequest::ReadRange { from: 40, to: 45 },
    ] {
        let r = h.call(body);
        assert_eq!(code(&r), ErrorCode::Internal);
        let CapsuleResponse::Error { message, .. } = r else {
            unreachable!("checked above");
        };
        assert!(message.contains("damaged"), "{message}");
    }
    let CapsuleResponse::Records { records, proof } = h.call(CapsuleRequest::Read { seqno: 43 })
    else {
        panic!("undamaged records are still served");
    };
    proof.verify(&f.md, &records[0]).expect("verifies");

    // A subscriber gets the records before the damage, then an error.
    let id = h.request(CapsuleRequest::Subscribe { from: 1 });
    h.run();
    let mut seen = Vec::new();
    let mut errors = 0;
    for r in h.take(id) {
        match r {
            CapsuleResponse::Subscribed { .. } => {}
            CapsuleResponse::Event { records, .. } => {
                seen.extend(records.iter().map(|r| r.seqno()));
            }
            CapsuleResponse::Error { code, .. } => {
                assert_eq!(code, ErrorCode::Internal);
                errors += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(errors, 1);
    assert!(!seen.contains(&42) && seen.iter().all(|&s| s < 42));
}

#[test]
fn a_damaged_tail_is_reported_at_open_and_the_capsule_is_not_served() {
    let f = Fixture::new(2);
    let dir = filled(&f);
    assert!(flip_payload_byte(dir.path(), N) >= 1);
    let (store, report) = Store::open(dir.path(), &unchecked()).expect("opens");
    assert!(report.capsules.is_empty());
    assert_eq!(report.damaged.len(), 1);
    let d = &report.damaged[0];
    assert_eq!(d.capsule, f.capsule());
    assert!(
        matches!(d.error, StoreError::Corrupt { seqno: N, .. }),
        "{:?}",
        d.error
    );

    let mut h = Harness::from_store(f.clone(), unlimited(), dir, store, report);
    for body in [
        CapsuleRequest::Latest,
        CapsuleRequest::Read { seqno: 1 },
        CapsuleRequest::GetMetadata,
        CapsuleRequest::Subscribe { from: 1 },
        f.create(),
    ] {
        assert_eq!(code(&h.call(body)), ErrorCode::Internal);
    }
    assert!(h.service.damage(&f.capsule()).is_some());
}
