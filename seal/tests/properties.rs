//! Property tests: envelopes and keyring records round-trip and decode only
//! canonical bytes, no altered envelope opens, and a keyring folded from any
//! sequence of starts, grants and rotations gives each reader exactly the
//! keys it was granted.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Name, PublicKey, SecretKey};
use gdp_seal::{
    CONVERGENT_OVERHEAD, ContentKey, EPOCH_OVERHEAD, Envelope, EnvelopeRef, Grant, KeyRecord,
    Keyring, Mode, Opener, SealError, Sealer, open, open_bytes, open_to, seal,
};
use proptest::prelude::*;

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Epoch), Just(Mode::Convergent)]
}

fn name() -> impl Strategy<Value = Name> {
    any::<[u8; 32]>().prop_map(Name::from_bytes)
}

fn fixed_key() -> ContentKey {
    ContentKey::from_bytes([0x42; 32])
}

/// Whatever decodes must encode back to exactly the input.
fn assert_canonical<T: Decode + Encode + std::fmt::Debug>(data: &[u8]) -> Option<T> {
    let v = T::decode(Bytes::copy_from_slice(data)).ok()?;
    assert_eq!(v.encoded_len(), data.len());
    assert_eq!(&v.to_bytes()[..], data, "non-canonical {:?} accepted", v);
    Some(v)
}

proptest! {
    #[test]
    fn envelope_round_trip(
        plaintext in proptest::collection::vec(any::<u8>(), 0..4096),
        seqno in any::<u64>(),
        epoch in 1u32..,
        mode in mode(),
        capsule in name(),
        key in any::<[u8; 32]>(),
    ) {
        let key = ContentKey::from_bytes(key);
        let bytes = seal(&key, epoch, mode, &capsule, seqno, &plaintext);
        let overhead = match mode {
            Mode::Epoch => EPOCH_OVERHEAD,
            Mode::Convergent => CONVERGENT_OVERHEAD,
        };
        prop_assert_eq!(bytes.len(), plaintext.len() + overhead);
        let env = Envelope::decode(bytes.clone()).expect("decodes");
        prop_assert_eq!(env.mode(), mode);
        prop_assert_eq!(env.epoch(), epoch);
        prop_assert_eq!(env.to_bytes(), bytes);
        let opened = open(&key, &capsule, seqno, &env).expect("opens");
        prop_assert_eq!(&opened[..], &plaintext[..]);
        prop_assert_eq!(
            open(&key, &capsule, seqno.wrapping_add(1), &env),
            Err(SealError::Tampered)
        );
    }

    #[test]
    fn no_single_bit_flip_opens(
        plaintext in proptest::collection::vec(any::<u8>(), 0..256),
        seqno in any::<u64>(),
        epoch in 1u32..,
        mode in mode(),
        bit in any::<proptest::sample::Index>(),
    ) {
        let capsule = Name::from_bytes([1; 32]);
        let bytes = seal(&fixed_key(), epoch, mode, &capsule, seqno, &plaintext);
        let bit = bit.index(bytes.len() * 8);
        let mut altered = bytes.to_vec();
        altered[bit / 8] ^= 1 << (bit % 8);
        let result = open_bytes(&fixed_key(), &capsule, seqno, altered);
        prop_assert!(
            matches!(result, Err(SealError::Tampered | SealError::Malformed(_))),
            "bit {} gave {:?}", bit, result
        );
    }

    /// Records opened one after another onto one buffer give each its own
    /// plaintext, and one that does not open leaves the buffer as it was.
    #[test]
    fn records_open_onto_one_buffer(
        plaintexts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
        mode in mode(),
        bad in any::<proptest::sample::Index>(),
    ) {
        let capsule = Name::from_bytes([2; 32]);
        let bad = bad.index(plaintexts.len());
        let mut out = BytesMut::new();
        let mut ends = Vec::new();
        for (i, plaintext) in plaintexts.iter().enumerate() {
            let seqno = i as u64 + 1;
            let env = Envelope::decode(seal(&fixed_key(), 1, mode, &capsule, seqno, plaintext))
                .expect("decodes");
            let before = out.clone();
            if i == bad {
                prop_assert_eq!(
                    open_to(&fixed_key(), &capsule, seqno + 1, &env, &mut out),
                    Err(SealError::Tampered)
                );
                prop_assert_eq!(&out, &before);
            }
            open_to(&fixed_key(), &capsule, seqno, &env, &mut out).expect("opens");
            ends.push(out.len());
        }
        let mut start = 0;
        for (plaintext, end) in plaintexts.iter().zip(ends) {
            prop_assert_eq!(&out[start..end], &plaintext[..]);
            start = end;
        }
    }

    /// Records from sealers (several, under several keys, interleaved)
    /// and from `seal`, opened in any order by one opener, give what each
    /// opens to alone; an altered one fails and leaves the buffer as it was.
    #[test]
    fn an_opener_agrees_with_opening_alone(
        records in proptest::collection::vec(
            (0usize..3, proptest::collection::vec(any::<u8>(), 0..100), mode()),
            1..24,
        ),
        bad in any::<proptest::sample::Index>(),
    ) {
        let capsule = Name::from_bytes([3; 32]);
        let keys = [fixed_key(), ContentKey::from_bytes([7; 32]), fixed_key()];
        let mut sealers: Vec<Sealer> =
            keys.iter().map(|k| Sealer::new(k, 1, Mode::Epoch, capsule)).collect();
        let bad = bad.index(records.len());
        let mut opener = Opener::new();
        let mut out = BytesMut::new();
        for (i, (which, plaintext, mode)) in records.iter().enumerate() {
            let seqno = i as u64 + 1;
            let bytes = if *mode == Mode::Convergent {
                seal(&keys[*which], 1, Mode::Convergent, &capsule, seqno, plaintext)
            } else {
                sealers[*which].seal(seqno, plaintext)
            };
            let env = Envelope::decode(bytes).expect("decodes");
            let before = out.clone();
            if i == bad {
                let wrong = &keys[(*which + 1) % 2];
                prop_assert!(opener.open_to(wrong, &capsule, seqno, env.view(), &mut out).is_err());
                prop_assert_eq!(&out, &before);
            }
            opener.open_to(&keys[*which], &capsule, seqno, env.view(), &mut out).expect("opens");
            prop_assert_eq!(&out[before.len()..], &plaintext[..]);
            prop_assert_eq!(
                open(&keys[*which], &capsule, seqno, &env).expect("opens alone"),
                &plaintext[..]
            );
        }
    }

    /// Whatever order a sealer is asked to seal seqnos in (rising, again,
    /// lower), no nonce (salt and seqno, under its one key and capsule)
    /// comes twice, and every envelope opens at its own seqno only.
    #[test]
    fn a_sealer_never_repeats_a_nonce(
        seqnos in proptest::collection::vec(0u64..12, 1..40),
        mode in mode(),
    ) {
        let capsule = Name::from_bytes([5; 32]);
        let key = fixed_key();
        let mut sealer = Sealer::new(&key, 1, mode, capsule);
        let mut nonces = BTreeSet::new();
        for (i, seqno) in seqnos.iter().enumerate() {
            let plaintext = i.to_be_bytes();
            let env = Envelope::decode(sealer.seal(*seqno, &plaintext)).expect("decodes");
            prop_assert_eq!(env.version(), gdp_seal::envelope::ENVELOPE_VERSION);
            let salt = env.nonce_field().as_bytes().to_vec();
            prop_assert!(nonces.insert((salt, *seqno)), "nonce repeated at seqno {}", seqno);
            prop_assert_eq!(open(&key, &capsule, *seqno, &env).expect("opens"), &plaintext[..]);
            prop_assert_eq!(open(&key, &capsule, seqno + 1, &env), Err(SealError::Tampered));
        }
    }

    /// Reading an envelope in place accepts and refuses exactly what
    /// decoding it does, with the same fields and the same error.
    #[test]
    fn envelope_parsed_in_place_agrees_with_decode(
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..128),
            (proptest::collection::vec(any::<u8>(), 0..64), mode(), any::<u8>(), any::<proptest::sample::Index>())
                .prop_map(|(plaintext, mode, byte, at)| {
                    let mut b = seal(&fixed_key(), 1, mode, &Name::ZERO, 1, &plaintext).to_vec();
                    let at = at.index(b.len() + 1);
                    if at < b.len() { b[at] = byte } else { b.truncate(byte as usize % b.len()) }
                    b
                }),
        ],
    ) {
        let decoded = Envelope::decode(Bytes::copy_from_slice(&data));
        let parsed = EnvelopeRef::parse(&data);
        match &decoded {
            Ok(env) => prop_assert_eq!(parsed, Ok(env.view())),
            Err(e) => prop_assert_eq!(parsed, Err(*e)),
        }
    }

    #[test]
    fn envelope_decode_is_canonical(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Some(env) = assert_canonical::<Envelope>(&data) {
            let _ = open(&fixed_key(), &Name::ZERO, 0, &env);
        }
    }

    #[test]
    fn envelope_decode_of_altered_valid_bytes_is_canonical(
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        mode in mode(),
        at in any::<proptest::sample::Index>(),
        value in any::<u8>(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let bytes = seal(&fixed_key(), 1, mode, &Name::ZERO, 0, &plaintext).to_vec();
        let mut altered = bytes.clone();
        altered[at.index(bytes.len())] = value;
        assert_canonical::<Envelope>(&altered);
        assert_canonical::<Envelope>(&bytes[..cut.index(bytes.len())]);
    }
}

/// Real reader keys from seeds.
fn reader(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn key_record() -> impl Strategy<Value = KeyRecord> {
    let grant = (
        any::<u8>(),
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 48),
    )
        .prop_map(|(seed, enc, wrapped)| {
            let wrapped: [u8; 48] = wrapped.try_into().expect("48 bytes");
            Grant::from_parts(reader(seed).public(), enc, wrapped)
        });
    (
        name(),
        1u32..,
        any::<bool>(),
        proptest::collection::vec(grant, 1..16),
    )
        .prop_map(|(capsule, epoch, starts, mut grants)| {
            // One grant per reader.
            let mut seen = BTreeSet::new();
            grants.retain(|g| seen.insert(*g.reader().as_bytes()));
            grants.reverse();
            KeyRecord::new(capsule, epoch, starts, grants).expect("a valid record")
        })
}

proptest! {
    #[test]
    fn key_record_round_trip(record in key_record()) {
        let bytes = record.to_bytes();
        prop_assert_eq!(bytes.len(), record.encoded_len());
        let decoded = KeyRecord::decode(bytes).expect("decodes");
        prop_assert_eq!(decoded, record);
    }

    #[test]
    fn key_record_decode_is_canonical(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        assert_canonical::<KeyRecord>(&data);
    }

    #[test]
    fn key_record_decode_of_altered_valid_bytes_is_canonical(
        record in key_record(),
        at in any::<proptest::sample::Index>(),
        value in any::<u8>(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let bytes = record.to_bytes().to_vec();
        let mut altered = bytes.clone();
        altered[at.index(bytes.len())] = value;
        assert_canonical::<KeyRecord>(&altered);
        assert_canonical::<KeyRecord>(&bytes[..cut.index(bytes.len())]);
    }
}

/// The readers the keyring tests draw from.
const POOL: u8 = 6;

#[derive(Debug, Clone)]
enum Op {
    /// Add these readers (by index into the pool) to the current epoch.
    Grant(Vec<u8>),
    /// Start a new epoch for these readers.
    Rotate(Vec<u8>),
}

fn readers() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1..=POOL, 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        readers().prop_map(Op::Grant),
        readers().prop_map(Op::Rotate)
    ]
}

fn publics(indices: &[u8]) -> Vec<PublicKey> {
    indices.iter().map(|&i| reader(i).public()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn keyring_fold_keeps_invariants(
        first in proptest::collection::vec(1..=POOL, 1..4),
        ops in proptest::collection::vec(op(), 0..6),
    ) {
        let capsule = Name::from_bytes([3; 32]);
        // The model: for each epoch, its key and its readers.
        let mut model: Vec<(ContentKey, BTreeSet<u8>)> = Vec::new();
        let mut keyring = Keyring::new(capsule);

        let (key, records) = Keyring::start(capsule, &publics(&first)).expect("starts");
        for r in &records {
            keyring.apply(r).expect("applies");
        }
        model.push((key, first.iter().copied().collect()));

        for op in ops {
            let (key, readers) = model.last().expect("started").clone();
            let records = match &op {
                Op::Grant(add) => {
                    let records = keyring.grant(&key, &publics(add)).expect("grants");
                    let mut readers = readers.clone();
                    readers.extend(add);
                    prop_assert_eq!(records.is_empty(), readers == model.last().expect("started").1);
                    model.last_mut().expect("started").1 = readers;
                    records
                }
                Op::Rotate(remaining) if remaining.is_empty() => {
                    prop_assert!(keyring.rotate(&[]).is_err());
                    continue;
                }
                Op::Rotate(remaining) => {
                    let (key, records) = keyring.rotate(&publics(remaining)).expect("rotates");
                    model.push((key, remaining.iter().copied().collect()));
                    records
                }
            };
            for r in &records {
                keyring.apply(r).expect("applies");
            }
            // Replaying a record is refused and changes nothing.
            if let Some(last) = records.last() {
                let before = keyring.clone();
                prop_assert!(keyring.apply(last).is_err());
                prop_assert_eq!(&keyring, &before);
            }

            let current = u32::try_from(model.len()).expect("few epochs");
            prop_assert_eq!(keyring.current_epoch(), Some(current));
            let (key, readers) = model.last().expect("started");
            let mut expected = publics(&readers.iter().copied().collect::<Vec<_>>());
            expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            prop_assert_eq!(keyring.readers(), expected);
            for i in 1..=POOL {
                let keys = keyring.keys_for(&reader(i)).expect("unwraps");
                prop_assert_eq!(keyring.is_reader(&reader(i).public()), readers.contains(&i));
                if readers.contains(&i) {
                    prop_assert_eq!(keys.get(current), Some(key));
                } else {
                    prop_assert_eq!(keys.get(current), None);
                }
            }
        }

        // Every reader holds exactly the keys of the epochs it was granted.
        for i in 1..=POOL {
            let keys = keyring.keys_for(&reader(i)).expect("unwraps");
            let held: BTreeMap<u32, &ContentKey> = keys.iter().collect();
            let granted: BTreeMap<u32, &ContentKey> = (1u32..)
                .zip(&model)
                .filter(|(_, (_, readers))| readers.contains(&i))
                .map(|(e, (k, _))| (e, k))
                .collect();
            prop_assert_eq!(held, granted);
        }
    }
}
