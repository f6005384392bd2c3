//! Reads through the service: every answer carries a proof that the reader
//! checks against the capsule's metadata alone.

mod common;

use common::*;
use gdp_capsule_server::limits::ServiceConfig;
use gdp_capsule_server::service::CapsuleService;
use gdp_certs::codec::{Decode, Encode};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode, MAX_RESPONSE_RECORDS};
use gdp_proto::record::Record;

/// The records and proof of a `Records` response, decoded from its wire
/// form as a client would see it.
fn records(r: CapsuleResponse) -> (Vec<Record>, gdp_proto::proof::Proof) {
    let r = CapsuleResponse::decode(r.to_bytes()).expect("responses decode");
    match r {
        CapsuleResponse::Records { records, proof } => (records, proof),
        other => panic!("expected records, got {other:?}"),
    }
}

/// Every read of a 10,000-record capsule comes with a proof that verifies.
///
/// Each proof is checked completely: its path from the heartbeat's record
/// down to the record read, hash by hash, and the heartbeat's signature
/// against the capsule's metadata. All the answers carry the same (newest)
/// heartbeat, so, as a client does, the signature of that heartbeat is
/// checked with `Proof::verify` on a spread of reads (every power of two,
/// every 61st seqno, both ends), and the other reads are checked with
/// `Proof::verify_under` that already verified heartbeat: the same path
/// checks, with the signature check replaced by equality with the verified
/// heartbeat. (An ed25519 check costs about 13 ms in a debug build.)
#[test]
fn every_record_of_a_10000_record_capsule_reads_with_a_verifying_proof() {
    const N: u64 = 10_000;
    let f = Fixture::new(1);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    h.fill(&mut a, N as usize, 250, 16);

    let mut verified = None;
    let mut full_checks = 0;
    for seqno in 1..=N {
        let (rs, proof) = records(h.call(CapsuleRequest::Read { seqno }));
        assert_eq!(rs.len(), 1);
        let r = &rs[0];
        assert_eq!((r.seqno(), r.payload()), (seqno, &payload(seqno, 16)));
        assert!(proof.path.len() <= 2 * 14 + 2, "O(log n) path");
        let spot_check = seqno.is_power_of_two() || seqno % 61 == 0 || seqno == N;
        match &verified {
            Some(hb) if !spot_check => {
                proof
                    .verify_under(hb, r.seqno(), r.hash())
                    .expect("the proof verifies under the checked heartbeat");
            }
            _ => {
                let hb = proof.verify(&f.md, r).expect("the proof verifies");
                assert_eq!(hb.seqno(), N, "proved from the newest heartbeat");
                verified = Some(hb);
                full_checks += 1;
            }
        }
    }
    assert!(full_checks > 150);

    // The same records in ranges, each range proved by one proof.
    let mut from = 1;
    let mut ranges = 0;
    while from <= N {
        let (rs, proof) = records(h.call(CapsuleRequest::ReadRange { from, to: N }));
        assert!(rs.len() <= MAX_RESPONSE_RECORDS);
        assert_eq!(rs[0].seqno(), from);
        proof.verify_range(&f.md, &rs).expect("the range verifies");
        from = rs.last().expect("non-empty").seqno() + 1;
        ranges += 1;
    }
    assert_eq!(ranges, N.div_ceil(MAX_RESPONSE_RECORDS as u64));
}

#[test]
fn ranges_fit_the_response_size_limit() {
    let f = Fixture::new(2);
    let config = ServiceConfig {
        max_record_payload: 1000,
        max_response_bytes: 40_000,
        ..unlimited()
    };
    let mut h = Harness::with_config(f.clone(), config);
    assert_eq!(h.call(f.create()), CapsuleResponse::Created);
    let mut a = f.appender();
    h.fill(&mut a, 100, 50, 1000);
    let r = h.call(CapsuleRequest::ReadRange { from: 5, to: 100 });
    let size = r.encoded_len();
    let (rs, proof) = records(r);
    assert!(size <= 40_000, "response of {size} bytes");
    assert!(rs.len() > 1 && rs.len() < 96, "{} records", rs.len());
    assert_eq!(rs[0].seqno(), 5);
    proof.verify_range(&f.md, &rs).expect("verifies");

    // A range past the tail is cut at the tail.
    let (rs, proof) = records(h.call(CapsuleRequest::ReadRange { from: 99, to: 500 }));
    assert_eq!(
        rs.iter().map(Record::seqno).collect::<Vec<_>>(),
        vec![99, 100]
    );
    proof.verify_range(&f.md, &rs).expect("verifies");
}

#[test]
fn latest_and_missing_records() {
    let f = Fixture::new(3);
    let mut h = Harness::created(f.clone());
    assert_eq!(code(&h.call(CapsuleRequest::Latest)), ErrorCode::NotFound);
    assert_eq!(
        code(&h.call(CapsuleRequest::Read { seqno: 1 })),
        ErrorCode::NotFound
    );

    let mut a = f.appender();
    h.fill(&mut a, 37, 10, 8);
    let (rs, proof) = records(h.call(CapsuleRequest::Latest));
    assert_eq!(rs[0].seqno(), 37);
    assert_eq!(
        proof.path.len(),
        1,
        "the newest heartbeat is over the newest record"
    );
    proof.verify(&f.md, &rs[0]).expect("verifies");

    assert_eq!(
        code(&h.call(CapsuleRequest::Read { seqno: 0 })),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(&h.call(CapsuleRequest::Read { seqno: 38 })),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(&h.call(CapsuleRequest::ReadRange { from: 9, to: 3 })),
        ErrorCode::BadRequest
    );
    let (rs, _) = records(h.call(CapsuleRequest::ReadRange { from: 0, to: 2 }));
    assert_eq!(rs.iter().map(Record::seqno).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn a_reopened_store_serves_what_was_stored() {
    let f = Fixture::new(4);
    let dir = TempDir::new("reopen");
    fill_store(&f, dir.path(), 21, 4, 8);
    let (store, report) = open(dir.path());
    assert_eq!(report.capsules.len(), 1);
    assert!(report.damaged.is_empty());
    assert_eq!(report.capsules[0].chain.tail_seqno(), 21);
    let service = CapsuleService::new(unlimited(), f.server.name(), store.clone(), report.clone())
        .expect("valid config");
    assert_eq!(service.durable_tail(&f.capsule()), Some(21));
    drop(service);
    let mut h = Harness::from_store(f.clone(), unlimited(), dir, store, report);
    let (rs, proof) = records(h.call(CapsuleRequest::ReadRange { from: 1, to: 21 }));
    assert_eq!(rs.len(), 21);
    proof.verify_range(&f.md, &rs).expect("verifies");

    // The writer resumes from a proof of the tail path, trusting only the
    // metadata, and appends.
    let tail_path_end = *gdp_proto::chain::ChainState::tail_path_seqnos(21)
        .last()
        .expect("non-empty");
    let (_, proof) = records(h.call(CapsuleRequest::ReadRange {
        from: tail_path_end,
        to: tail_path_end,
    }));
    // The proof of the oldest tail-path record from the newest heartbeat is
    // the tail path itself.
    let (state, _) = gdp_proto::chain::ChainState::from_proof(&f.md, &proof).expect("resumes");
    let mut a = gdp_proto::chain::Appender::new(f.writer.clone(), &f.md, state).expect("writer");
    let r = a.append(payload(22, 8), NOW).expect("ok");
    let hb = a.heartbeat().expect("appended");
    assert_eq!(
        h.call(append(vec![r], hb)),
        CapsuleResponse::Appended { tail: 22 }
    );
}
