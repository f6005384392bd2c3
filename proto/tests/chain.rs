//! Chains, heartbeats and proofs, through the public API: what a writer
//! builds, what a server accepts and what a reader can verify.

use bytes::Bytes;
use gdp_certs::codec::{Decode, DecodeError, Encode};
use gdp_certs::{Kind, Metadata, SecretKey, Timestamp};
use gdp_proto::chain::{Appender, ChainError, ChainState};
use gdp_proto::proof::{HEARTBEAT_LEN, Heartbeat, MAX_PROOF_LEN, Proof, ProofError};
use gdp_proto::record::{Record, RecordError, RecordHash, RecordHeader};
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

/// `n` records of a fresh capsule, with the appender that wrote them.
fn chain(md: &Metadata, key: &SecretKey, n: u64) -> (Appender, Vec<Record>) {
    let mut a = Appender::new(key.clone(), md, ChainState::new(md.name())).expect("writer");
    let records = (1..=n)
        .map(|i| {
            a.append(Bytes::from(i.to_be_bytes().to_vec()), Timestamp(i))
                .expect("appends")
        })
        .collect();
    (a, records)
}

fn headers(records: &[Record]) -> Vec<RecordHeader> {
    records.iter().map(Record::header).collect()
}

fn prove(hb: &Heartbeat, headers: &[RecordHeader], target: u64) -> Proof {
    Proof::build(hb.clone(), target, |s| {
        headers
            .get(usize::try_from(s).ok()?.checked_sub(1)?)
            .cloned()
    })
    .expect("builds")
}

/// A copy of `r` with some fields replaced.
fn with(
    r: &Record,
    seqno: u64,
    prev: RecordHash,
    skips: Vec<RecordHash>,
    payload: Bytes,
) -> Record {
    Record::new(*r.capsule(), seqno, r.timestamp(), prev, skips, payload).expect("valid shape")
}

fn flip(h: RecordHash) -> RecordHash {
    let mut b = h.0;
    b[31] ^= 0x80;
    RecordHash(b)
}

/// The bound on proof length the design promises: `2 * log2(n) + 2` headers.
fn log2_bound(n: u64) -> usize {
    (2.0 * (n as f64).log2() + 2.0).floor() as usize
}

// ---------------------------------------------------------------- chains

#[test]
fn server_accepts_what_the_writer_builds() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let (a, records) = chain(&md, &key, 1000);
    let mut server = ChainState::new(md.name());
    for r in &records {
        server.append(r).expect("continues the chain");
    }
    assert_eq!(&server, a.state());
    assert_eq!(server.tail_seqno(), 1000);
    assert_eq!(server.tail_hash(), records[999].hash());
    assert_eq!(*records[0].prev(), RecordHash::anchor(&md.name()));
}

#[test]
fn chain_state_rebuilds_from_the_tail_path() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let (_, records) = chain(&md, &key, 300);
    let hs = headers(&records);
    let mut replay = ChainState::new(md.name());
    for n in 1..=300u64 {
        replay.append(&records[n as usize - 1]).expect("appends");
        let seqnos = ChainState::tail_path_seqnos(n);
        assert_eq!(seqnos.len(), n.count_ones() as usize);
        let path: Vec<RecordHeader> = seqnos.iter().map(|&s| hs[s as usize - 1].clone()).collect();
        let rebuilt = ChainState::from_tail(md.name(), &path).expect("rebuilds");
        assert_eq!(rebuilt, replay, "tail {n}");
    }
    assert_eq!(
        ChainState::from_tail(md.name(), &[]).expect("empty"),
        ChainState::new(md.name())
    );
}

#[test]
fn from_tail_rejects_altered_or_wrong_headers() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let (_, records) = chain(&md, &key, 13);
    let hs = headers(&records);
    // 13 -> 12 -> 8
    let good = [hs[12].clone(), hs[11].clone(), hs[7].clone()];
    assert!(ChainState::from_tail(md.name(), &good).is_ok());

    let mut altered = good.clone();
    let h = &hs[11];
    altered[1] = RecordHeader::new(
        *h.capsule(),
        12,
        Timestamp(999),
        *h.prev(),
        h.skips().to_vec(),
        h.payload_len(),
        *h.payload_hash(),
    )
    .expect("valid shape");
    assert_eq!(
        ChainState::from_tail(md.name(), &altered),
        Err(ChainError::PathHashMismatch {
            index: 1,
            seqno: 12
        })
    );
    let skipped = [hs[12].clone(), hs[7].clone()];
    assert!(matches!(
        ChainState::from_tail(md.name(), &skipped),
        Err(ChainError::NotTailPath { .. })
    ));
    let other = capsule_md(&[&key], 2).name();
    assert!(matches!(
        ChainState::from_tail(other, &good),
        Err(ChainError::WrongCapsule { .. })
    ));
}

#[test]
fn writer_resumes_from_a_proof() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let (mut a, records) = chain(&md, &key, 1234);
    let hb = a.heartbeat().expect("non-empty");
    let target = *ChainState::tail_path_seqnos(1234)
        .last()
        .expect("non-empty");
    assert_eq!(target, 1024);
    let proof = prove(&hb, &headers(&records), target);
    let (state, vhb) = ChainState::from_proof(&md, &proof).expect("resumes");
    assert_eq!(vhb.seqno(), 1234);
    assert_eq!(&state, a.state());
    let mut resumed = Appender::new(key, &md, state).expect("writer");
    let next = a
        .append(Bytes::from_static(b"x"), Timestamp(5))
        .expect("appends");
    let again = resumed
        .append(Bytes::from_static(b"x"), Timestamp(5))
        .expect("appends");
    assert_eq!(next, again);

    // A proof down to another record is not a tail path.
    let proof = prove(&hb, &headers(&records), 1000);
    assert!(matches!(
        ChainState::from_proof(&md, &proof),
        Err(ChainError::NotTailPath { .. })
    ));
}

#[test]
fn check_next_reports_each_kind_of_break() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let (_, records) = chain(&md, &key, 16);
    let mut server = ChainState::new(md.name());
    for r in &records[..11] {
        server.append(r).expect("appends");
    }
    let r12 = &records[11];
    assert_eq!(server.check_next(r12), Ok(()));
    assert_eq!(
        server.check_next(&records[12]),
        Err(ChainError::Gap {
            expected: 12,
            found: 13
        })
    );
    assert_eq!(
        server.check_next(&records[10]),
        Err(ChainError::Stale {
            tail: 11,
            found: 11
        })
    );
    let p = r12.payload().clone();
    let bad_prev = with(r12, 12, flip(*r12.prev()), r12.skips().to_vec(), p.clone());
    assert_eq!(
        server.check_next(&bad_prev),
        Err(ChainError::BadPrev { seqno: 12 })
    );
    let mut skips = r12.skips().to_vec();
    skips[1] = flip(skips[1]);
    let bad_skip = with(r12, 12, *r12.prev(), skips, p.clone());
    assert_eq!(
        server.check_next(&bad_skip),
        Err(ChainError::BadSkip { seqno: 12, k: 2 })
    );
    let other = capsule_md(&[&key], 2);
    let (_, foreign) = chain(&other, &key, 12);
    assert!(matches!(
        server.check_next(&foreign[11]),
        Err(ChainError::WrongCapsule { .. })
    ));
    // Record 1 must point to the anchor.
    let empty = ChainState::new(md.name());
    let r1 = &records[0];
    let bad_anchor = with(r1, 1, flip(*r1.prev()), vec![], r1.payload().clone());
    assert_eq!(
        empty.check_next(&bad_anchor),
        Err(ChainError::BadPrev { seqno: 1 })
    );
}

#[test]
fn batches_are_accepted_only_when_the_heartbeat_covers_them() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let (a, records) = chain(&md, &key, 40);
    let mut server = ChainState::new(md.name());
    for r in &records[..20] {
        server.append(r).expect("appends");
    }
    let hb = a
        .heartbeat()
        .expect("non-empty")
        .verify(&md)
        .expect("valid");
    let batch = &records[20..];
    let next = server.check_batch(batch, &hb).expect("valid batch");
    assert_eq!(&next, a.state());
    assert_eq!(server.tail_seqno(), 20, "the current state is unchanged");

    assert_eq!(
        server.check_batch(&records[20..39], &hb),
        Err(ChainError::Proof(ProofError::NotCovered {
            heartbeat: 40,
            record: 39
        }))
    );
    assert_eq!(server.check_batch(&[], &hb), Err(ChainError::EmptyBatch));
    let mut tampered = batch.to_vec();
    let r = &tampered[5];
    tampered[5] = with(
        r,
        r.seqno(),
        *r.prev(),
        r.skips().to_vec(),
        Bytes::from_static(b"evil"),
    );
    assert_eq!(
        server.check_batch(&tampered, &hb),
        Err(ChainError::BadPrev { seqno: 27 })
    );
}

#[test]
fn appender_refuses_keys_that_are_not_writers() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let stranger = SecretKey::from_seed(&[2; 32]);
    assert!(matches!(
        Appender::new(stranger, &md, ChainState::new(md.name())),
        Err(ChainError::NotWriter { .. })
    ));
    assert!(matches!(
        Appender::new(
            key.clone(),
            &md,
            ChainState::new(capsule_md(&[&key], 2).name())
        ),
        Err(ChainError::WrongCapsule { .. })
    ));
    let principal =
        Metadata::principal(Kind::Client, key.public(), "c", Timestamp(1)).expect("valid");
    assert!(matches!(
        Appender::new(key, &principal, ChainState::new(principal.name())),
        Err(ChainError::NotACapsule)
    ));
}

// ---------------------------------------------------------------- proofs

#[test]
fn proofs_verify_for_every_seqno_of_a_10k_capsule() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let n = 10_000u64;
    let (a, records) = chain(&md, &key, n);
    let hs = headers(&records);
    let hb = a.heartbeat().expect("non-empty");
    let vhb = hb.verify(&md).expect("valid heartbeat");
    let bound = 2.0 * (n as f64).log2() + 2.0;
    let mut longest = 0;
    for target in 1..=n {
        let proof = prove(&hb, &hs, target);
        longest = longest.max(proof.path.len());
        assert!(
            (proof.path.len() as f64) <= bound,
            "target {target}: {} headers",
            proof.path.len()
        );
        let r = &records[target as usize - 1];
        // The signature is checked once (below, for a sample); every path is
        // checked against the verified heartbeat.
        assert_eq!(proof.verify_under(&vhb, r.seqno(), r.hash()), Ok(()));
        if target % 997 == 1 || target == n {
            assert_eq!(proof.verify(&md, r).map(|v| v.seqno()), Ok(n));
        }
    }
    assert!(longest > 14, "paths are not trivially short: {longest}");
}

/// A proof from the heartbeat at 1000 down to 5, and its pieces.
fn proof_fixture() -> (Metadata, Vec<Record>, Proof) {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let (a, records) = chain(&md, &key, 1000);
    let hb = a.heartbeat().expect("non-empty");
    let proof = prove(&hb, &headers(&records), 5);
    (md, records, proof)
}

#[test]
fn proof_that_skips_a_record_is_rejected() {
    let (md, records, proof) = proof_fixture();
    assert!(proof.path.len() > 4);
    assert!(proof.verify(&md, &records[4]).is_ok());
    for i in 1..proof.path.len() - 1 {
        let mut p = proof.clone();
        let removed = p.path.remove(i);
        assert_eq!(
            p.verify(&md, &records[4]),
            Err(ProofError::BadPointer {
                index: i,
                from: proof.path[i - 1].seqno(),
                to: proof.path[i + 1].seqno(),
            }),
            "removed record {}",
            removed.seqno()
        );
    }
    let mut p = proof.clone();
    p.path.remove(0);
    assert_eq!(
        p.verify(&md, &records[4]),
        Err(ProofError::HeartbeatMismatch)
    );
    let mut p = proof.clone();
    p.path.pop();
    assert!(matches!(
        p.verify(&md, &records[4]),
        Err(ProofError::TargetMismatch { expected: 5, .. })
    ));
}

#[test]
fn proof_that_alters_a_record_is_rejected() {
    let (md, records, proof) = proof_fixture();
    for i in 1..proof.path.len() {
        let mut p = proof.clone();
        let h = &p.path[i];
        p.path[i] = RecordHeader::new(
            *h.capsule(),
            h.seqno(),
            Timestamp(h.timestamp().0 + 1),
            *h.prev(),
            h.skips().to_vec(),
            h.payload_len(),
            *h.payload_hash(),
        )
        .expect("valid shape");
        assert_eq!(
            p.verify(&md, &records[4]),
            Err(ProofError::PathHashMismatch {
                index: i,
                seqno: proof.path[i].seqno()
            })
        );
    }
    // The target itself altered: the proof is for the original.
    let r = &records[4];
    let fake = with(
        r,
        5,
        *r.prev(),
        r.skips().to_vec(),
        Bytes::from_static(b"fake"),
    );
    assert_eq!(
        proof.verify(&md, &fake),
        Err(ProofError::TargetMismatch {
            expected: 5,
            found: 5
        })
    );
    // Another record than the one proved.
    assert_eq!(
        proof.verify(&md, &records[5]),
        Err(ProofError::TargetMismatch {
            expected: 6,
            found: 5
        })
    );
}

#[test]
fn proof_for_the_wrong_capsule_or_writer_is_rejected() {
    let (md, records, proof) = proof_fixture();
    let key = writer();
    let other = capsule_md(&[&key], 2);
    assert!(matches!(
        proof.verify(&other, &records[4]),
        Err(ProofError::WrongCapsule { .. })
    ));
    let stranger = SecretKey::from_seed(&[2; 32]);
    let mut p = proof.clone();
    p.heartbeat = Heartbeat::sign(&stranger, &records[999]);
    assert!(matches!(
        p.verify(&md, &records[4]),
        Err(ProofError::NotWriter { .. })
    ));
    let mut p = proof;
    p.heartbeat.signature.0[40] ^= 4;
    assert_eq!(p.verify(&md, &records[4]), Err(ProofError::BadSignature));
}

#[test]
fn proof_build_reports_missing_headers_and_bad_targets() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let (a, records) = chain(&md, &key, 100);
    let hs = headers(&records);
    let hb = a.heartbeat().expect("non-empty");
    assert_eq!(
        Proof::build(hb.clone(), 0, |_| None),
        Err(ProofError::TargetOutOfRange {
            target: 0,
            heartbeat: 100
        })
    );
    assert_eq!(
        Proof::build(hb.clone(), 101, |_| None),
        Err(ProofError::TargetOutOfRange {
            target: 101,
            heartbeat: 100
        })
    );
    assert_eq!(
        Proof::build(hb.clone(), 3, |s| (s != 64)
            .then(|| hs[s as usize - 1].clone())),
        Err(ProofError::MissingHeader { seqno: 64 })
    );
    let own = prove(&hb, &hs, 100);
    assert_eq!(own.path.len(), 1);
    assert!(own.verify(&md, &records[99]).is_ok());
}

#[test]
fn proof_length_is_bounded() {
    let (md, records, proof) = proof_fixture();
    let mut long = proof.clone();
    while long.path.len() <= MAX_PROOF_LEN {
        long.path.push(proof.path[1].clone());
    }
    assert_eq!(
        long.verify(&md, &records[4]),
        Err(ProofError::ProofLength {
            len: MAX_PROOF_LEN + 1
        })
    );
    let mut bytes = proof.to_bytes().to_vec();
    bytes[HEARTBEAT_LEN..HEARTBEAT_LEN + 2]
        .copy_from_slice(&(MAX_PROOF_LEN as u16 + 1).to_be_bytes());
    assert_eq!(
        Proof::decode(bytes.clone()),
        Err(DecodeError::TooLong {
            what: "record header",
            len: MAX_PROOF_LEN + 1,
            max: MAX_PROOF_LEN
        })
    );
    bytes[HEARTBEAT_LEN..HEARTBEAT_LEN + 2].copy_from_slice(&0u16.to_be_bytes());
    bytes.truncate(HEARTBEAT_LEN + 2);
    assert_eq!(
        Proof::decode(bytes),
        Err(DecodeError::Invalid {
            what: "empty proof path"
        })
    );
    let mut empty = proof;
    empty.path.clear();
    assert_eq!(
        empty.verify(&md, &records[4]),
        Err(ProofError::ProofLength { len: 0 })
    );
}

#[test]
fn proof_decoding_rejects_truncated_and_trailing_bytes() {
    let (md, records, proof) = proof_fixture();
    let bytes = proof.to_bytes();
    assert_eq!(bytes.len(), proof.encoded_len());
    let back = Proof::decode(bytes.clone()).expect("decodes");
    assert_eq!(back, proof);
    assert!(back.verify(&md, &records[4]).is_ok());
    for cut in [1, 31, 33, HEARTBEAT_LEN + 1, bytes.len() - 1] {
        assert!(
            matches!(
                Proof::decode(bytes.slice(..cut)),
                Err(DecodeError::Truncated { .. })
            ),
            "cut at {cut}"
        );
    }
    let mut long = bytes.to_vec();
    long.push(7);
    assert_eq!(
        Proof::decode(long),
        Err(DecodeError::TrailingBytes {
            what: "proof",
            count: 1
        })
    );
}

#[test]
fn ranges_verify_with_one_proof_of_their_last_record() {
    let key = writer();
    let md = capsule_md(&[&key], 1);
    let (a, records) = chain(&md, &key, 200);
    let hb = a.heartbeat().expect("non-empty");
    let hs = headers(&records);
    let proof = prove(&hb, &hs, 150);
    let range = &records[99..150];
    assert_eq!(proof.verify_range(&md, range).map(|v| v.seqno()), Ok(200));
    let from_one = prove(&hb, &hs, 10);
    assert!(from_one.verify_range(&md, &records[..10]).is_ok());

    let mut tampered = range.to_vec();
    let r = &tampered[7];
    tampered[7] = with(
        r,
        r.seqno(),
        *r.prev(),
        r.skips().to_vec(),
        Bytes::from_static(b"?"),
    );
    assert_eq!(
        proof.verify_range(&md, &tampered),
        Err(ProofError::BadPrev { seqno: 108 })
    );
    let mut holed = range.to_vec();
    holed.remove(3);
    assert_eq!(
        proof.verify_range(&md, &holed),
        Err(ProofError::Gap {
            expected: 103,
            found: 104
        })
    );
    assert_eq!(proof.verify_range(&md, &[]), Err(ProofError::EmptyBatch));
}

// ------------------------------------------------------ property tests

#[derive(Debug, Clone, Copy)]
enum Tamper {
    Payload,
    Seqno,
    Prev,
    Skip,
    Timestamp,
}

fn arb_tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        Just(Tamper::Payload),
        Just(Tamper::Seqno),
        Just(Tamper::Prev),
        Just(Tamper::Skip),
        Just(Tamper::Timestamp),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any change to a record is caught by the server's chain check and by
    /// proof verification against the writer's heartbeat.
    #[test]
    fn tampering_with_a_record_is_detected(
        n in 2u64..200,
        pick in any::<prop::sample::Index>(),
        tamper in arb_tamper(),
        delta in 1u64..5,
    ) {
        let key = writer();
        let md = capsule_md(&[&key], 1);
        let (a, records) = chain(&md, &key, n);
        let i = pick.index(n as usize);
        let r = &records[i];
        let p = r.payload().clone();
        let tampered = match tamper {
            Tamper::Payload => {
                let mut b = p.to_vec();
                b.push(0);
                Ok(with(r, r.seqno(), *r.prev(), r.skips().to_vec(), Bytes::from(b)))
            }
            Tamper::Seqno => Record::new(
                *r.capsule(), r.seqno() + delta, r.timestamp(), *r.prev(), r.skips().to_vec(), p,
            ),
            Tamper::Prev => Ok(with(r, r.seqno(), flip(*r.prev()), r.skips().to_vec(), p)),
            Tamper::Skip => {
                let mut skips = r.skips().to_vec();
                match skips.first_mut() {
                    Some(s) => *s = flip(*s),
                    None => skips.push(RecordHash([0; 32])),
                }
                Record::new(*r.capsule(), r.seqno(), r.timestamp(), *r.prev(), skips, p)
            }
            Tamper::Timestamp => Record::new(
                *r.capsule(), r.seqno(), Timestamp(r.timestamp().0 ^ delta), *r.prev(),
                r.skips().to_vec(), p,
            ),
        };
        // A record of the wrong shape cannot even be built.
        let Ok(t) = tampered else {
            let shape_error = matches!(tampered, Err(RecordError::SkipCount { .. }));
            prop_assert!(shape_error);
            return Ok(());
        };
        prop_assert_ne!(t.hash(), r.hash());

        // The server's chain check fails at the tampered record or the next.
        let mut replaced = records.clone();
        replaced[i] = t.clone();
        let mut server = ChainState::new(md.name());
        let failed = replaced.iter().position(|x| server.append(x).is_err());
        let hb = a.heartbeat().expect("non-empty");
        match failed {
            Some(j) => prop_assert!(j == i || j == i + 1, "failed at {}, tampered {}", j, i),
            // Only the last record can pass the chain check; the heartbeat
            // then does not cover it.
            None => {
                prop_assert_eq!(i, records.len() - 1);
                let v = hb.verify(&md).expect("valid");
                let not_covered = matches!(v.covers(&t), Err(ProofError::NotCovered { .. }));
                prop_assert!(not_covered);
            }
        }

        // A proof from the writer's heartbeat does not verify the tampered record.
        let target = r.seqno();
        let proof = prove(&hb, &headers(&records), target);
        prop_assert!(proof.verify(&md, &t).is_err());
        prop_assert!(proof.verify(&md, r).is_ok());
    }

    #[test]
    fn greedy_paths_are_logarithmic(from in 1u64..(1 << 62), to_frac in 0.0f64..1.0) {
        let to = ((from as f64 * to_frac) as u64).clamp(1, from);
        let seqnos = Proof::path_seqnos(from, to).expect("in range");
        prop_assert!(seqnos.len() <= log2_bound(from));
        prop_assert!(seqnos.len() <= MAX_PROOF_LEN);
        prop_assert_eq!(seqnos.first(), Some(&from));
        prop_assert_eq!(seqnos.last(), Some(&to));
        prop_assert!(seqnos.windows(2).all(|w| gdp_proto::chain::pointer_between(w[0], w[1]).is_some()));
    }

    #[test]
    fn heartbeat_and_proof_round_trip(n in 1u64..300, pick in any::<prop::sample::Index>()) {
        let key = writer();
        let md = capsule_md(&[&key], 1);
        let (a, records) = chain(&md, &key, n);
        let hb = a.heartbeat().expect("non-empty");
        let hb_bytes = hb.to_bytes();
        prop_assert_eq!(hb_bytes.len(), hb.encoded_len());
        prop_assert_eq!(&Heartbeat::decode(hb_bytes).expect("decodes"), &hb);
        let target = pick.index(n as usize) as u64 + 1;
        let proof = prove(&hb, &headers(&records), target);
        prop_assert!(proof.path.len() <= log2_bound(n));
        let bytes = proof.to_bytes();
        prop_assert_eq!(bytes.len(), proof.encoded_len());
        let back = Proof::decode(bytes).expect("decodes");
        prop_assert_eq!(&back, &proof);
        prop_assert!(back.verify(&md, &records[target as usize - 1]).is_ok());
    }

    /// Flipping any bit of an encoded heartbeat or proof makes it fail to
    /// decode or fail to verify.
    #[test]
    fn bit_flips_in_heartbeats_and_proofs_are_caught(
        target in 1u64..=100,
        bit in any::<prop::sample::Index>(),
    ) {
        let key = writer();
        let md = capsule_md(&[&key], 1);
        let (a, records) = chain(&md, &key, 100);
        let record = &records[target as usize - 1];
        let hb = a.heartbeat().expect("non-empty");
        let mut hb_bytes = hb.to_bytes().to_vec();
        let i = bit.index(hb_bytes.len() * 8);
        hb_bytes[i / 8] ^= 1 << (i % 8);
        if let Ok(h) = Heartbeat::decode(hb_bytes) {
            let v = h.verify(&md);
            prop_assert!(v.is_err() || v.is_ok_and(|v| v.covers(&records[99]).is_err()));
        }

        let proof = prove(&hb, &headers(&records), target);
        let mut bytes = proof.to_bytes().to_vec();
        let i = bit.index(bytes.len() * 8);
        bytes[i / 8] ^= 1 << (i % 8);
        if let Ok(p) = Proof::decode(bytes) {
            prop_assert!(p.verify(&md, record).is_err());
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = Heartbeat::decode(bytes.clone());
        let _ = Proof::decode(bytes.clone());
        let _ = Record::decode(bytes.clone());
        let _ = RecordHeader::decode(bytes);
    }
}

/// Arbitrary bytes rarely get past the first fields; this starts from a
/// valid proof and overwrites a random stretch, to reach the deeper decoders.
#[test]
fn decoding_corrupted_proofs_never_panics() {
    let (_, _, proof) = proof_fixture();
    let bytes = proof.to_bytes().to_vec();
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(
            &(
                0..bytes.len(),
                proptest::collection::vec(any::<u8>(), 1..40),
            ),
            |(at, junk)| {
                let mut b = bytes.clone();
                for (i, x) in junk.iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + i) {
                        *slot = *x;
                    }
                }
                let _ = Proof::decode(b);
                Ok(())
            },
        )
        .expect("never panics");
}
