//! Envelope format, sealing and opening: round trips, every region
//! authenticated, malformed input refused, nonces never repeated.

use super::*;

fn capsule() -> Name {
    Name::from_bytes([1; 32])
}

fn sealed(mode: Mode, plaintext: &[u8]) -> (ContentKey, Bytes) {
    let key = ContentKey::generate();
    let bytes = seal(&key, 3, mode, &capsule(), 7, plaintext);
    (key, bytes)
}

fn decode(bytes: impl Into<Bytes>) -> Envelope {
    Envelope::decode(bytes).expect("decodes")
}

#[test]
fn round_trip_both_modes() {
    for mode in [Mode::Epoch, Mode::Convergent] {
        for plaintext in [&b""[..], b"x", b"hello, capsule", &[0x5a; 5000]] {
            let (key, bytes) = sealed(mode, plaintext);
            let env = decode(bytes.clone());
            assert_eq!(env.mode(), mode);
            assert_eq!(env.epoch(), 3);
            assert_eq!(env.plaintext_len(), plaintext.len());
            assert_eq!(env.to_bytes(), bytes);
            assert_eq!(env.encoded_len(), bytes.len());
            let opened = open(&key, &capsule(), 7, &env).expect("opens");
            assert_eq!(&opened[..], plaintext);
            let opened = open_bytes(&key, &capsule(), 7, bytes).expect("opens");
            assert_eq!(&opened[..], plaintext);
        }
    }
}

#[test]
fn overhead_constants() {
    assert_eq!(EPOCH_OVERHEAD, 30);
    assert_eq!(CONVERGENT_OVERHEAD, 78);
    for len in [0, 1, 64, 1000] {
        let plaintext = vec![9; len];
        assert_eq!(
            sealed(Mode::Epoch, &plaintext).1.len(),
            len + EPOCH_OVERHEAD
        );
        assert_eq!(
            sealed(Mode::Convergent, &plaintext).1.len(),
            len + CONVERGENT_OVERHEAD
        );
    }
}

#[test]
fn wrong_key_capsule_or_seqno() {
    for mode in [Mode::Epoch, Mode::Convergent] {
        let (key, bytes) = sealed(mode, b"secret");
        let env = decode(bytes);
        assert_eq!(
            open(&ContentKey::generate(), &capsule(), 7, &env),
            Err(SealError::Tampered)
        );
        assert_eq!(
            open(&key, &Name::from_bytes([2; 32]), 7, &env),
            Err(SealError::Tampered)
        );
        assert_eq!(open(&key, &capsule(), 8, &env), Err(SealError::Tampered));
        assert_eq!(open(&key, &capsule(), 6, &env), Err(SealError::Tampered));
    }
}

#[test]
fn wrong_epoch_field() {
    for mode in [Mode::Epoch, Mode::Convergent] {
        let (key, bytes) = sealed(mode, b"secret");
        for epoch in [1u32, 2, 4, u32::MAX] {
            let mut b = bytes.to_vec();
            b[2..6].copy_from_slice(&epoch.to_be_bytes());
            let env = decode(b);
            assert_eq!(env.epoch(), epoch);
            assert_eq!(open(&key, &capsule(), 7, &env), Err(SealError::Tampered));
        }
    }
}

#[test]
fn mode_swap_does_not_open() {
    // A convergent envelope relabelled as epoch mode (and the reverse)
    // decodes, with the regions read differently, but does not open.
    for (mode, other) in [(Mode::Epoch, 2), (Mode::Convergent, 1)] {
        let (key, bytes) = sealed(mode, &[7; 100]);
        let mut b = bytes.to_vec();
        b[1] = other;
        let env = decode(b);
        assert_ne!(env.mode(), mode);
        assert_eq!(open(&key, &capsule(), 7, &env), Err(SealError::Tampered));
    }
}

#[test]
fn every_flipped_bit_is_rejected() {
    for mode in [Mode::Epoch, Mode::Convergent] {
        let (key, bytes) = sealed(mode, b"twenty bytes of text");
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.to_vec();
            b[bit / 8] ^= 1 << (bit % 8);
            let result = open_bytes(&key, &capsule(), 7, b);
            assert!(
                matches!(result, Err(SealError::Tampered | SealError::Malformed(_))),
                "{mode:?}: flipping bit {bit} gave {result:?}"
            );
        }
    }
}

#[test]
fn each_region_is_authenticated() {
    // One flip in each region: version, mode, epoch, salt, wrapped key,
    // body, tag.
    let (key, bytes) = sealed(Mode::Convergent, b"region test");
    let regions = [
        (0, "version"),
        (1, "mode"),
        (5, "epoch"),
        (6, "salt start"),
        (13, "salt end"),
        (14, "wrapped key"),
        (61, "wrapped key tag"),
        (62, "body"),
        (bytes.len() - 1, "body tag"),
    ];
    for (at, region) in regions {
        let mut b = bytes.to_vec();
        b[at] ^= 0x80;
        assert!(
            open_bytes(&key, &capsule(), 7, b).is_err(),
            "{region} is not authenticated"
        );
    }
}

#[test]
fn convergent_bodies_coalesce() {
    let key = ContentKey::generate();
    let other_key = ContentKey::generate();
    let plaintext = b"the same large attachment";
    let a = decode(seal(&key, 1, Mode::Convergent, &capsule(), 1, plaintext));
    let b = decode(seal(&key, 1, Mode::Convergent, &capsule(), 2, plaintext));
    let c = decode(seal(
        &other_key,
        5,
        Mode::Convergent,
        &Name::from_bytes([9; 32]),
        3,
        plaintext,
    ));
    assert_eq!(a.ciphertext(), b.ciphertext());
    assert_eq!(a.ciphertext(), c.ciphertext());
    assert_ne!(a.to_bytes(), b.to_bytes());
    assert_ne!(a.nonce_field(), b.nonce_field());
    assert_ne!(a.wrapped_key(), b.wrapped_key());
    // Each still opens only at its own place.
    assert_eq!(
        &open(&key, &capsule(), 2, &b).expect("opens")[..],
        plaintext
    );
    assert_eq!(open(&key, &capsule(), 1, &b), Err(SealError::Tampered));
    // A different plaintext has a different body.
    let d = decode(seal(&key, 1, Mode::Convergent, &capsule(), 1, b"another"));
    assert_ne!(a.ciphertext(), d.ciphertext());
}

#[test]
fn epoch_mode_never_repeats() {
    let key = ContentKey::generate();
    let a = seal(&key, 1, Mode::Epoch, &capsule(), 1, b"same");
    let b = seal(&key, 1, Mode::Epoch, &capsule(), 1, b"same");
    assert_ne!(a, b);
}

#[test]
fn convergent_key_must_derive_from_plaintext() {
    // An envelope whose record key is not derived from its plaintext:
    // only a holder of the epoch key can make one, and it is refused.
    let key = ContentKey::generate();
    let salt = [4u8; SALT_LEN];
    let kc = [8u8; 32];
    let aad = record_aad(&capsule(), 7, ENVELOPE_VERSION, Mode::Convergent, 1);
    let mut buf = BytesMut::new();
    put_header(&mut buf, Mode::Convergent, 1, &NonceField::Salt(salt));
    buf.put_slice(&kc);
    let subkey = Subkey::derive(key.as_bytes(), &salted_prefix(&salt, &capsule()));
    seal_tail(&subkey, &7u64.to_be_bytes(), &aad, &mut buf, HEADER_LEN);
    let body = buf.len();
    buf.put_slice(b"plaintext");
    let zero = [0; aead::TAIL_LEN];
    seal_tail(
        &convergent_subkey(&kc),
        &zero,
        CONVERGENT_BODY_AAD,
        &mut buf,
        body,
    );
    assert_eq!(
        open_bytes(&key, &capsule(), 7, buf.freeze()),
        Err(SealError::NotConvergent)
    );
}

#[test]
fn malformed_envelopes() {
    let (_, bytes) = sealed(Mode::Epoch, b"");
    let good = bytes.to_vec();
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        Envelope::decode(b)
    };
    for version in [0, 3, 255] {
        assert_eq!(
            with(0, version),
            Err(DecodeError::UnknownValue {
                what: "sealed record version",
                value: version.into()
            })
        );
    }
    // Relabelled as version 1, it is too short for that version's nonce.
    assert_eq!(
        with(0, 1),
        Err(DecodeError::Truncated {
            what: "sealed record ciphertext"
        })
    );
    for mode in [0, 3, 255] {
        assert_eq!(
            with(1, mode),
            Err(DecodeError::UnknownValue {
                what: "sealed record mode",
                value: mode.into()
            })
        );
    }
    let mut zero_epoch = good.clone();
    zero_epoch[2..6].copy_from_slice(&[0; 4]);
    assert_eq!(
        Envelope::decode(zero_epoch),
        Err(DecodeError::Invalid {
            what: "sealed record epoch"
        })
    );
    for len in 0..good.len() {
        assert!(
            matches!(
                Envelope::decode(good[..len].to_vec()),
                Err(DecodeError::Truncated { .. })
            ),
            "{len} bytes"
        );
    }
    // A convergent envelope needs room for its wrapped key as well.
    let mut short = good.clone();
    short[1] = 2;
    assert!(matches!(
        Envelope::decode(short),
        Err(DecodeError::Truncated { .. })
    ));
    assert_eq!(
        open_bytes(&ContentKey::generate(), &capsule(), 7, &b"\x01"[..]),
        Err(SealError::Malformed(DecodeError::Truncated {
            what: "sealed record mode"
        }))
    );
}

#[test]
#[should_panic(expected = "epochs count from 1")]
fn sealing_epoch_zero_panics() {
    seal(&ContentKey::generate(), 0, Mode::Epoch, &capsule(), 1, b"");
}

/// The salt of a version 2 envelope.
fn salt(env: &Envelope) -> [u8; SALT_LEN] {
    match env.nonce_field() {
        NonceField::Salt(salt) => *salt,
        NonceField::Whole(_) => panic!("a version 1 envelope"),
    }
}

#[test]
fn a_sealer_keeps_one_salt_while_seqnos_rise() {
    let key = ContentKey::generate();
    let mut sealer = Sealer::new(&key, 2, Mode::Epoch, capsule());
    let mut other = Sealer::new(&key, 2, Mode::Epoch, capsule());
    let envs: Vec<Envelope> = (1..=3)
        .map(|seqno| decode(sealer.seal(seqno, b"same")))
        .collect();
    for env in &envs {
        assert_eq!(env.version(), ENVELOPE_VERSION);
        assert_eq!(salt(env), salt(&envs[0]), "one salt per sealer");
    }
    assert_ne!(
        salt(&decode(other.seal(1, b"same"))),
        salt(&envs[0]),
        "each sealer draws its own salt"
    );
    // Envelopes appended one after another to one buffer each open.
    let mut buf = BytesMut::from(&b"before"[..]);
    sealer.seal_to(4, b"four", &mut buf);
    let four = buf.len();
    sealer.seal_to(5, b"", &mut buf);
    assert_eq!(&buf[..6], b"before");
    let buf = buf.freeze();
    let opened = open(&key, &capsule(), 4, &decode(buf.slice(6..four))).expect("opens");
    assert_eq!(&opened[..], b"four");
    let five = decode(buf.slice(four..));
    assert_eq!(salt(&five), salt(&envs[0]));
    assert!(open(&key, &capsule(), 5, &five).expect("opens").is_empty());
    // Sealing a seqno again (or a lower one) draws a fresh salt: the
    // nonce of seqno 5 is never used twice, and the new salt holds for
    // the seqnos after it.
    let again = decode(sealer.seal(5, b"other"));
    assert_ne!(salt(&again), salt(&envs[0]));
    assert_eq!(
        &open(&key, &capsule(), 5, &again).expect("opens")[..],
        b"other"
    );
    let lower = decode(sealer.seal(2, b"lower"));
    assert_ne!(salt(&lower), salt(&again));
    let next = decode(sealer.seal(3, b"next"));
    assert_eq!(salt(&next), salt(&lower));
    let top = decode(sealer.seal(u64::MAX, b"top"));
    assert_eq!(salt(&top), salt(&lower));
    let top_again = decode(sealer.seal(u64::MAX, b"top"));
    assert_ne!(salt(&top_again), salt(&top));
    // What a sealer seals opens like any envelope.
    for mode in [Mode::Epoch, Mode::Convergent] {
        let mut sealer = Sealer::new(&key, 2, mode, capsule());
        let env = decode(sealer.seal(7, b"hello"));
        assert_eq!(env.epoch(), 2);
        assert_eq!(env.mode(), mode);
        assert_eq!(
            &open(&key, &capsule(), 7, &env).expect("opens")[..],
            b"hello"
        );
    }
}

/// A version 1 envelope, as the first writers sealed it: the whole
/// nonce in the envelope, the version byte 1 in the associated data.
fn sealed_v1(key: &ContentKey, seqno: u64, nonce: [u8; V1_NONCE_LEN], plaintext: &[u8]) -> Bytes {
    let aad = record_aad(&capsule(), seqno, ENVELOPE_VERSION_1, Mode::Epoch, 1);
    let mut buf = BytesMut::new();
    put_header(&mut buf, Mode::Epoch, 1, &NonceField::Whole(nonce));
    let start = buf.len();
    buf.put_slice(plaintext);
    let tag = aead::seal_in_place(key.as_bytes(), &nonce, &aad, &mut buf[start..]);
    buf.put_slice(&tag);
    buf.freeze()
}

#[test]
fn version_1_envelopes_still_open() {
    let key = ContentKey::generate();
    let bytes = sealed_v1(&key, 7, [3; V1_NONCE_LEN], b"written before");
    assert_eq!(
        bytes.len(),
        1 + 1 + 4 + V1_NONCE_LEN + b"written before".len() + TAG_LEN
    );
    let env = decode(bytes.clone());
    assert_eq!(env.version(), ENVELOPE_VERSION_1);
    assert_eq!(env.nonce_field(), &NonceField::Whole([3; V1_NONCE_LEN]));
    assert_eq!(env.to_bytes(), bytes);
    assert_eq!(env.encoded_len(), bytes.len());
    assert_eq!(
        &open(&key, &capsule(), 7, &env).expect("opens")[..],
        b"written before"
    );
    let mut opener = Opener::new();
    let mut out = BytesMut::new();
    opener
        .open_to(&key, &capsule(), 7, env.view(), &mut out)
        .expect("opens");
    assert_eq!(&out[..], b"written before");
    assert_eq!(open(&key, &capsule(), 8, &env), Err(SealError::Tampered));
    // Relabelled as version 2 (or the reverse), an envelope reads its
    // fields differently and does not open.
    let mut relabelled = bytes.to_vec();
    relabelled[0] = ENVELOPE_VERSION;
    assert_eq!(
        open_bytes(&key, &capsule(), 7, relabelled),
        Err(SealError::Tampered)
    );
    let mut relabelled = seal(&key, 1, Mode::Epoch, &capsule(), 7, &[1; 40]).to_vec();
    relabelled[0] = ENVELOPE_VERSION_1;
    assert_eq!(
        open_bytes(&key, &capsule(), 7, relabelled),
        Err(SealError::Tampered)
    );
}

#[test]
fn the_nonce_is_the_salt_the_capsule_and_the_seqno() {
    // The same salt under the same key, in another capsule or at another
    // seqno, is another nonce: the keystreams differ.
    let key = ContentKey::generate();
    let salt = [5u8; SALT_LEN];
    let body = |capsule: &Name, seqno| {
        let subkey = Subkey::derive(key.as_bytes(), &salted_prefix(&salt, capsule));
        let mut out = BytesMut::new();
        let place = Place {
            capsule,
            seqno,
            mode: Mode::Epoch,
            epoch: 1,
        };
        seal_with(&subkey, salt, &place, &[0; 32], &mut out);
        out.split_off(HEADER_LEN).split_to(32).freeze()
    };
    let other = Name::from_bytes([2; 32]);
    let a = body(&capsule(), 1);
    assert_ne!(a, body(&capsule(), 2));
    assert_ne!(a, body(&other, 1));
    assert_eq!(
        a,
        body(&capsule(), 1),
        "deterministic for one salt and place"
    );
    // Read as XChaCha20-Poly1305 with the 24-byte nonce spelled out, the
    // same bytes come back.
    let mut nonce = [0u8; V1_NONCE_LEN];
    nonce[..8].copy_from_slice(&salt);
    nonce[8..16].copy_from_slice(&capsule().as_bytes()[..8]);
    nonce[16..].copy_from_slice(&1u64.to_be_bytes());
    let mut plain = [0u8; 32];
    let aad = record_aad(&capsule(), 1, ENVELOPE_VERSION, Mode::Epoch, 1);
    aead::seal_in_place(key.as_bytes(), &nonce, &aad, &mut plain);
    assert_eq!(&plain[..], &a[..]);
}

#[test]
fn an_opener_keeps_a_subkey_only_for_its_own_key_and_prefix() {
    let (one, two) = (ContentKey::generate(), ContentKey::generate());
    let mut sealer = Sealer::new(&one, 1, Mode::Epoch, capsule());
    let first = decode(sealer.seal(1, b"first"));
    let second = decode(sealer.seal(2, b"second"));
    let alone = decode(seal(&one, 1, Mode::Epoch, &capsule(), 3, b"third"));
    let mut opener = Opener::new();
    let mut out = BytesMut::new();
    opener
        .open_to(&one, &capsule(), 1, first.view(), &mut out)
        .expect("opens");
    // The same prefix under another key must not reuse the subkey.
    assert_eq!(
        opener.open_to(&two, &capsule(), 2, second.view(), &mut out),
        Err(SealError::Tampered)
    );
    assert_eq!(&out[..], b"first");
    opener
        .open_to(&one, &capsule(), 2, second.view(), &mut out)
        .expect("opens");
    opener
        .open_to(&one, &capsule(), 3, alone.view(), &mut out)
        .expect("opens");
    assert_eq!(&out[..], b"firstsecondthird");
    // A record moved to another seqno fails with the subkey kept.
    assert_eq!(
        opener.open_to(&one, &capsule(), 3, second.view(), &mut out),
        Err(SealError::Tampered)
    );
    assert_eq!(&out[..], b"firstsecondthird");
}
