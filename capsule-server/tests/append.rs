//! Creating capsules and appending through the service: certificates,
//! chain checks with their error codes, forks, idempotent resends,
//! pipelining, commit failures and limits.

mod common;

use bytes::Bytes;
use common::*;
use gdp_capsule_server::limits::{Rate, ServiceConfig};
use gdp_capsule_server::store::StoreError;
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::Appender;
use gdp_proto::proof::Heartbeat;
use gdp_proto::record::{Record, RecordHash};
use proptest::prelude::*;

#[test]
fn create_is_idempotent_and_checks_the_adcert() {
    let f = Fixture::new(1);
    let mut h = Harness::new(f.clone());
    assert_eq!(h.call(f.create()), CapsuleResponse::Created);
    assert_eq!(h.call(f.create()), CapsuleResponse::Created);
    assert_eq!(
        h.call(CapsuleRequest::GetMetadata),
        CapsuleResponse::Metadata {
            metadata: f.md.clone()
        }
    );

    // An AdCert for another server.
    let f2 = Fixture::new(2);
    let other_server = Name::from_bytes([5; 32]);
    let mut h2 = Harness::new(f2.clone());
    let wrong = AdCert::issue(&f2.writer, f2.capsule(), other_server, validity());
    let r = h2.call(CapsuleRequest::Create {
        metadata: f2.md.clone(),
        adcert: wrong,
    });
    assert_eq!(code(&r), ErrorCode::BadCert);

    // Expired.
    h2.now = Timestamp(validity().not_after.0 + 1);
    assert_eq!(code(&h2.call(f2.create())), ErrorCode::BadCert);
    h2.now = NOW;

    // Signed by someone who does not own the capsule.
    let mallory = SecretKey::from_seed(&[66; 32]);
    let forged = AdCert::issue(&mallory, f2.capsule(), f2.server.name(), validity());
    let r = h2.call(CapsuleRequest::Create {
        metadata: f2.md.clone(),
        adcert: forged,
    });
    assert_eq!(code(&r), ErrorCode::BadCert);

    // Metadata of another capsule than the one addressed.
    let r = h2.call(CapsuleRequest::Create {
        metadata: f.md.clone(),
        adcert: f.adcert.clone(),
    });
    assert_eq!(code(&r), ErrorCode::BadRequest);

    // Nothing was hosted by any of that.
    assert_eq!(
        code(&h2.call(CapsuleRequest::GetMetadata)),
        ErrorCode::NotHosted
    );
    assert_eq!(code(&h2.call(CapsuleRequest::Latest)), ErrorCode::NotHosted);
}

#[test]
fn hosting_constraints_and_metadata_kind_are_enforced() {
    let f = Fixture::new(3);
    // The capsule may only live on another server.
    let md = capsule_md(&f.writer, 3, vec![Name::from_bytes([9; 32])]);
    let adcert = AdCert::issue(&f.writer, md.name(), f.server.name(), validity());
    let fx = Fixture {
        md: md.clone(),
        adcert: adcert.clone(),
        ..f.clone()
    };
    let mut h = Harness::new(fx);
    let r = h.call(CapsuleRequest::Create {
        metadata: md,
        adcert,
    });
    assert_eq!(code(&r), ErrorCode::BadCert);

    // A principal's metadata is not a capsule.
    let principal = Metadata::principal(Kind::Client, f.writer.public(), "me", NOW).expect("valid");
    let adcert = AdCert::issue(&f.writer, principal.name(), f.server.name(), validity());
    let fx = Fixture {
        md: principal.clone(),
        adcert: adcert.clone(),
        ..f
    };
    let mut h = Harness::new(fx);
    let r = h.call(CapsuleRequest::Create {
        metadata: principal,
        adcert,
    });
    assert_eq!(code(&r), ErrorCode::BadCert);
}

#[test]
fn a_later_adcert_renews_the_stored_one() {
    let f = Fixture::new(4);
    let mut h = Harness::created(f.clone());
    let later = Validity::new(NOW, Timestamp::from_secs(1_900_000_000));
    let renewed = AdCert::issue(&f.writer, f.capsule(), f.server.name(), later);
    let r = h.call(CapsuleRequest::Create {
        metadata: f.md.clone(),
        adcert: renewed.clone(),
    });
    assert_eq!(r, CapsuleResponse::Created);
    let loaded = h
        .store
        .load_capsule(&f.capsule())
        .expect("reads")
        .expect("stored");
    assert_eq!(loaded.adcert, renewed);
}

#[test]
fn appends_are_acknowledged_only_once_durable() {
    let f = Fixture::new(5);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    let (records, hb) = batches(&mut a, 1, 3, 100).remove(0);
    h.hold = true;
    let id = h.request(append(records.clone(), hb));
    h.run();
    assert!(
        h.take(id).is_empty(),
        "nothing acknowledged before the commit"
    );
    assert_eq!(h.held.len(), 1);
    assert_eq!(h.service.durable_tail(&f.capsule()), Some(0));
    // Not readable yet either.
    assert_eq!(
        code(&h.call(CapsuleRequest::Read { seqno: 1 })),
        ErrorCode::NotFound
    );

    h.release();
    assert_eq!(h.one(id), CapsuleResponse::Appended { tail: 3 });
    assert_eq!(h.service.durable_tail(&f.capsule()), Some(3));
    for r in &records {
        assert_eq!(
            h.store
                .record(&f.capsule(), r.seqno())
                .expect("reads")
                .as_ref(),
            Some(r)
        );
    }
    let tail = h
        .store
        .tail(&f.capsule())
        .expect("reads")
        .expect("has a tail");
    assert_eq!((tail.seqno, tail.hash), (3, records[2].hash()));
}

#[test]
fn pipelined_appends_are_in_flight_together_and_acknowledged_in_order() {
    let f = Fixture::new(6);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    h.hold = true;
    let ids: Vec<u64> = batches(&mut a, 5, 4, 50)
        .into_iter()
        .map(|(records, hb)| h.request(append(records, hb)))
        .collect();
    h.run();
    assert_eq!(
        h.held.len(),
        5,
        "all five appends are waiting for one commit"
    );
    assert_eq!(h.service.pending_appends(&f.capsule()), 5);
    h.release();
    let tails: Vec<CapsuleResponse> = ids.iter().map(|&id| h.one(id)).collect();
    assert_eq!(
        tails,
        (1..=5)
            .map(|i| CapsuleResponse::Appended { tail: 4 * i })
            .collect::<Vec<_>>()
    );
    assert_eq!(h.store.scrub(&f.capsule()).expect("intact"), 20);
}

#[test]
fn heartbeats_of_a_batch_of_requests_are_verified_together_and_singled_out() {
    let f = Fixture::new(7);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    let mut b = batches(&mut a, 3, 2, 10);
    b[1].1.signature.0[5] ^= 1;
    let reqs = b.into_iter().map(|(r, hb)| append(r, hb)).collect();
    let ids = h.request_batch(reqs);
    h.run();
    assert_eq!(h.one(ids[0]), CapsuleResponse::Appended { tail: 2 });
    assert_eq!(code(&h.one(ids[1])), ErrorCode::BadHeartbeat);
    // The third builds on the rejected second.
    assert_eq!(code(&h.one(ids[2])), ErrorCode::Gap);
    assert_eq!(h.service.durable_tail(&f.capsule()), Some(2));
}

#[test]
fn identical_resends_are_idempotent_durable_or_pending() {
    let f = Fixture::new(8);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    let b = batches(&mut a, 3, 3, 20);
    let (r1, hb1) = b[0].clone();
    assert_eq!(
        h.call(append(r1.clone(), hb1.clone())),
        CapsuleResponse::Appended { tail: 3 }
    );
    // Durable resend: acknowledged at once with the current tail.
    assert_eq!(
        h.call(append(r1.clone(), hb1.clone())),
        CapsuleResponse::Appended { tail: 3 }
    );

    // A resend of a pending append is acknowledged with it.
    h.hold = true;
    let (r2, hb2) = b[1].clone();
    let first = h.request(append(r2.clone(), hb2.clone()));
    let again = h.request(append(r2.clone(), hb2.clone()));
    h.run();
    assert_eq!(h.held.len(), 1, "the resend adds no write");
    assert!(h.take(again).is_empty());
    h.release();
    assert_eq!(h.one(first), CapsuleResponse::Appended { tail: 6 });
    assert_eq!(h.one(again), CapsuleResponse::Appended { tail: 6 });
    h.hold = false;

    // A batch that overlaps the tail and continues it is accepted.
    let (r3, hb3) = b[2].clone();
    let mut overlap = r2[1..].to_vec();
    overlap.extend(r3);
    assert_eq!(
        h.call(append(overlap, hb3)),
        CapsuleResponse::Appended { tail: 9 }
    );
    assert_eq!(h.store.scrub(&f.capsule()).expect("intact"), 9);
    assert!(h.store.forks(&f.capsule()).expect("reads").is_empty());
}

#[test]
fn a_fork_is_rejected_recorded_and_never_served() {
    let f = Fixture::new(9);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    h.fill(&mut a, 5, 5, 30);

    // The same writer signs a different history from record 3 on.
    let mut other = f.appender();
    for s in 1..=2 {
        other.append(payload(s, 30), NOW).expect("ok");
    }
    let forked: Vec<Record> = (0..3)
        .map(|i| {
            other
                .append(Bytes::from(format!("other {i}")), NOW)
                .expect("ok")
        })
        .collect();
    let hb = other.heartbeat().expect("appended");
    let r = h.call(append(forked.clone(), hb));
    assert_eq!(code(&r), ErrorCode::Fork);
    let CapsuleResponse::Error { message, .. } = &r else {
        unreachable!("checked above");
    };
    assert!(message.contains("record 3"), "{message}");

    let forks = h.store.forks(&f.capsule()).expect("reads");
    assert_eq!(forks.len(), 1);
    assert_eq!(forks[0].seqno(), 3);
    assert_eq!(forks[0].record, forked[0]);
    assert_eq!(forks[0].verify(&f.md).map(|hb| hb.seqno()), Ok(5));

    // The stored record is the original one.
    let CapsuleResponse::Records { records, proof } = h.call(CapsuleRequest::Read { seqno: 3 })
    else {
        panic!("record 3 is served");
    };
    assert_eq!(records[0].payload(), &payload(3, 30));
    proof.verify(&f.md, &records[0]).expect("verifies");
    assert_eq!(h.service.durable_tail(&f.capsule()), Some(5));
}

#[test]
fn a_fork_against_pending_records_is_detected_too() {
    let f = Fixture::new(10);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    h.hold = true;
    let (records, hb) = batches(&mut a, 1, 4, 10).remove(0);
    let ok = h.request(append(records, hb));
    let mut other = f.appender();
    let alt = other.append(Bytes::from_static(b"x"), NOW).expect("ok");
    let fork = h.request(append(vec![alt], other.heartbeat().expect("appended")));
    h.run();
    assert_eq!(code(&h.one(fork)), ErrorCode::Fork);
    h.release();
    assert_eq!(h.one(ok), CapsuleResponse::Appended { tail: 4 });
    assert_eq!(h.store.forks(&f.capsule()).expect("reads").len(), 1);
}

#[test]
fn a_failed_commit_fails_the_appends_built_on_it_and_the_state_is_reloaded() {
    let f = Fixture::new(11);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    h.fill(&mut a, 2, 2, 10);
    let b = batches(&mut a, 2, 3, 10);
    h.hold = true;
    let ids: Vec<u64> = b
        .iter()
        .map(|(r, hb)| h.request(append(r.clone(), hb.clone())))
        .collect();
    h.run();
    assert_eq!(h.held.len(), 2);
    h.fail_held(StoreError::Closed);
    for id in &ids {
        let r = h.one(*id);
        assert_eq!(code(&r), ErrorCode::Internal);
        assert!(ErrorCode::Internal.is_retryable());
    }
    assert_eq!(h.service.durable_tail(&f.capsule()), Some(2));
    assert_eq!(h.service.pending_appends(&f.capsule()), 0);

    // The writer retries, and it works.
    h.hold = false;
    for (records, hb) in b {
        let tail = hb.seqno;
        assert_eq!(
            h.call(append(records, hb)),
            CapsuleResponse::Appended { tail }
        );
    }
    assert_eq!(h.store.scrub(&f.capsule()).expect("intact"), 8);
}

#[test]
fn the_store_refuses_an_append_whose_predecessor_did_not_land() {
    let f = Fixture::new(12);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    h.fill(&mut a, 2, 2, 10);
    let b = batches(&mut a, 2, 2, 10);
    h.hold = true;
    for (r, hb) in &b {
        h.request(append(r.clone(), hb.clone()));
    }
    h.run();
    let mut held = std::mem::take(&mut h.held);
    // Only the second write reaches the store.
    let (second_ticket, second) = held.pop().expect("two held");
    let results = h.store.commit([&second]);
    assert!(matches!(
        results[0],
        Err(StoreError::NotContinuing {
            tail: 2,
            seqno: 5,
            ..
        })
    ));
    let (first_ticket, _) = held.pop().expect("two held");
    h.service
        .on_commit(NOW, first_ticket, Err(StoreError::Closed));
    h.service.on_commit(NOW, second_ticket, results[0].clone());
    h.run();
    assert_eq!(h.service.durable_tail(&f.capsule()), Some(2));
    assert_eq!(h.store.scrub(&f.capsule()).expect("no hole"), 2);
}

#[test]
fn a_failed_create_fails_its_waiters_and_hosts_nothing() {
    let f = Fixture::new(13);
    let mut h = Harness::new(f.clone());
    h.hold = true;
    let id = h.request(f.create());
    let again = h.request(f.create());
    h.run();
    h.fail_held(StoreError::Closed);
    assert_eq!(code(&h.one(id)), ErrorCode::Internal);
    assert_eq!(code(&h.one(again)), ErrorCode::Internal);
    h.hold = false;
    assert_eq!(
        code(&h.call(CapsuleRequest::GetMetadata)),
        ErrorCode::NotHosted
    );
    assert_eq!(h.call(f.create()), CapsuleResponse::Created);
}

#[test]
fn limits_answer_with_their_codes_and_clear_messages() {
    let f = Fixture::new(14);
    let config = ServiceConfig {
        peer_requests: Some(Rate {
            per_second: 10,
            burst: 3,
        }),
        capsule_records: Some(Rate {
            per_second: 100,
            burst: 4,
        }),
        max_record_payload: 100,
        ..ServiceConfig::default()
    };
    let mut h = Harness::with_config(f.clone(), config);
    assert_eq!(h.call(f.create()), CapsuleResponse::Created);
    let mut a = f.appender();

    // Too large a record.
    let big = a
        .append(Bytes::from(vec![0; 101]), NOW)
        .expect("within the protocol limit");
    let r = h.call(append(vec![big], a.heartbeat().expect("appended")));
    assert_eq!(code(&r), ErrorCode::TooLarge);
    let CapsuleResponse::Error { message, .. } = r else {
        unreachable!("checked above");
    };
    assert!(message.contains("at most 100"), "{message}");

    // The peer has used its burst of 3 (create and the append above, and
    // this one is the third).
    let mut a = f.appender();
    assert_eq!(code(&h.call(CapsuleRequest::Latest)), ErrorCode::NotFound);
    let r = h.call(CapsuleRequest::Latest);
    assert_eq!(code(&r), ErrorCode::RateLimited);
    let CapsuleResponse::Error { message, .. } = r else {
        unreachable!("checked above");
    };
    assert!(message.contains("10 requests/s"), "{message}");
    assert!(message.contains("retry in 100 ms"), "{message}");

    // A second later the peer may go on; the capsule's record rate
    // admits a batch of 4 and then needs time.
    h.now = NOW.saturating_add(std::time::Duration::from_secs(1));
    let (records, hb) = batches(&mut a, 1, 4, 10).remove(0);
    assert_eq!(
        h.call(append(records, hb)),
        CapsuleResponse::Appended { tail: 4 }
    );
    let (records, hb) = batches(&mut a, 1, 1, 10).remove(0);
    let r = h.call(append(records, hb));
    assert_eq!(code(&r), ErrorCode::RateLimited);
    let CapsuleResponse::Error { message, .. } = r else {
        unreachable!("checked above");
    };
    assert!(message.contains("appended records/s"), "{message}");
}

#[test]
fn appends_to_unknown_capsules_and_with_wrong_records_are_refused() {
    let f = Fixture::new(15);
    let mut h = Harness::new(f.clone());
    let mut a = f.appender();
    let (records, hb) = batches(&mut a, 1, 2, 10).remove(0);
    assert_eq!(code(&h.call(append(records, hb))), ErrorCode::NotHosted);

    let mut h = Harness::created(f.clone());
    // A record of another capsule.
    let g = Fixture::new(16);
    let mut other = g.appender();
    let (records, hb) = batches(&mut other, 1, 1, 10).remove(0);
    assert_eq!(code(&h.call(append(records, hb))), ErrorCode::BadRequest);
    // An empty append.
    let mut a = f.appender();
    let (_, hb) = batches(&mut a, 1, 1, 10).remove(0);
    assert_eq!(code(&h.call(append(vec![], hb))), ErrorCode::BadRequest);
}

/// How a batch is spoiled.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// A payload changed in transit (the heartbeat is not re-signed).
    Payload,
    /// The writer skipped a seqno (re-signed).
    SkipSeqno,
    /// Seqnos within the batch are not consecutive.
    Shuffle,
    /// `prev` of the first record is wrong (re-signed).
    Prev,
    /// A skip pointer is wrong (re-signed).
    Skip,
    /// A bit of the heartbeat signature flipped.
    Signature,
    /// The heartbeat is signed by a key that is not a writer.
    NotWriter,
    /// The heartbeat covers an earlier record than the last.
    NotCovering,
}

fn rebuild(r: &Record, prev: RecordHash, skips: Vec<RecordHash>, payload: Bytes) -> Record {
    Record::new(*r.capsule(), r.seqno(), r.timestamp(), prev, skips, payload).expect("same shape")
}

fn tamper(
    f: &Fixture,
    records: &mut Vec<Record>,
    hb: &mut Heartbeat,
    how: Tamper,
    at: usize,
) -> ErrorCode {
    let resign =
        |records: &Vec<Record>| Heartbeat::sign(&f.writer, records.last().expect("non-empty"));
    let at = at % records.len();
    match how {
        Tamper::Payload => {
            let r = &records[at];
            records[at] = rebuild(
                r,
                *r.prev(),
                r.skips().to_vec(),
                Bytes::from_static(b"evil"),
            );
            if at + 1 == records.len() {
                ErrorCode::BadHeartbeat
            } else {
                ErrorCode::BadChain
            }
        }
        Tamper::SkipSeqno => {
            records.remove(0);
            if records.is_empty() {
                return ErrorCode::BadRequest;
            }
            *hb = resign(records);
            ErrorCode::Gap
        }
        Tamper::Shuffle => {
            if records.len() < 2 {
                return tamper(f, records, hb, Tamper::Signature, at);
            }
            records.swap(0, 1);
            ErrorCode::BadChain
        }
        Tamper::Prev => {
            let r = &records[0];
            records[0] = rebuild(
                r,
                RecordHash([0xee; 32]),
                r.skips().to_vec(),
                r.payload().clone(),
            );
            *hb = resign(records);
            ErrorCode::BadChain
        }
        Tamper::Skip => {
            let Some(i) = records.iter().position(|r| !r.skips().is_empty()) else {
                return tamper(f, records, hb, Tamper::Prev, at);
            };
            let r = &records[i];
            let mut skips = r.skips().to_vec();
            skips[0] = RecordHash([0xdd; 32]);
            records[i] = rebuild(r, *r.prev(), skips, r.payload().clone());
            // Later records point to the original; cut them off.
            records.truncate(i + 1);
            *hb = resign(records);
            ErrorCode::BadChain
        }
        Tamper::Signature => {
            hb.signature.0[at % 64] ^= 0x10;
            ErrorCode::BadHeartbeat
        }
        Tamper::NotWriter => {
            let stranger = SecretKey::from_seed(&[123; 32]);
            *hb = Heartbeat::sign(&stranger, records.last().expect("non-empty"));
            ErrorCode::NotWriter
        }
        Tamper::NotCovering => {
            if records.len() < 2 {
                return tamper(f, records, hb, Tamper::NotWriter, at);
            }
            *hb = Heartbeat::sign(&f.writer, &records[0]);
            ErrorCode::BadHeartbeat
        }
    }
}

fn arb_tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        Just(Tamper::Payload),
        Just(Tamper::SkipSeqno),
        Just(Tamper::Shuffle),
        Just(Tamper::Prev),
        Just(Tamper::Skip),
        Just(Tamper::Signature),
        Just(Tamper::NotWriter),
        Just(Tamper::NotCovering),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any spoiled batch is rejected with the code for what was spoiled,
    /// changes nothing, and the unspoiled batch is accepted afterwards.
    #[test]
    fn spoiled_appends_are_rejected_with_their_code(
        prefix in 0usize..14,
        len in 1usize..6,
        how in arb_tamper(),
        at in 0usize..64,
    ) {
        let f = Fixture::new(100);
        let mut h = Harness::created(f.clone());
        let mut a: Appender = f.appender();
        if prefix > 0 {
            h.fill(&mut a, prefix, prefix, 16);
        }
        let (good, good_hb) = batches(&mut a, 1, len, 16).remove(0);
        let (mut records, mut hb) = (good.clone(), good_hb.clone());
        let expected = tamper(&f, &mut records, &mut hb, how, at);
        let r = h.call(append(records, hb));
        prop_assert_eq!(code(&r), expected, "{:?}: {:?}", how, r);
        prop_assert_eq!(h.service.durable_tail(&f.capsule()), Some(prefix as u64));
        prop_assert_eq!(h.service.pending_appends(&f.capsule()), 0);
        prop_assert!(h.store.forks(&f.capsule()).expect("reads").is_empty());

        let tail = (prefix + len) as u64;
        prop_assert_eq!(h.call(append(good, good_hb)), CapsuleResponse::Appended { tail });
        prop_assert_eq!(h.store.scrub(&f.capsule()).expect("intact"), tail);
    }
}
