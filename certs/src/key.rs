//! Ed25519 keys and signatures.
//!
//! Every signature in GDP is made over a domain-separated message:
//! `"gdp-v1/" || context || 0x00 || body`, where the context names the kind of
//! structure being signed (see [`SigContext`]). A signature made for one kind
//! of structure can therefore never be replayed as another.

use std::fmt;
use std::sync::LazyLock;

use bytes::{BufMut, BytesMut};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::codec::{Decode, DecodeError, Encode, Reader};

/// Length of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// What a signature is for. Part of every signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigContext {
    /// An advertisement certificate (capsule owner -> server).
    AdCert,
    /// A router certificate (endpoint -> router).
    RtCert,
    /// A route record (router -> directory).
    RouteRecord,
    /// A domain certificate (trust-domain key -> router).
    DomainCert,
    /// A heartbeat over a capsule record (writer).
    Heartbeat,
    /// Proof of a name when attaching to a router.
    Attach,
    /// A capsule's replica set (owner).
    ReplicaSet,
}

impl SigContext {
    fn tag(self) -> &'static [u8] {
        match self {
            SigContext::AdCert => b"adcert",
            SigContext::RtCert => b"rtcert",
            SigContext::RouteRecord => b"route-record",
            SigContext::DomainCert => b"domain-cert",
            SigContext::Heartbeat => b"heartbeat",
            SigContext::Attach => b"attach",
            SigContext::ReplicaSet => b"replica-set",
        }
    }

    fn message(self, body: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let mut m = Vec::with_capacity(7 + tag.len() + 1 + body.len());
        m.extend_from_slice(b"gdp-v1/");
        m.extend_from_slice(tag);
        m.push(0);
        m.extend_from_slice(body);
        m
    }
}

/// A signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad signature")]
pub struct BadSignature;

/// The y coordinates of the eight points of small order (the 8-torsion
/// subgroup), encoded as in a compressed point with the sign bit clear. A
/// point is of small order exactly when its y is one of these: the point
/// with the same y and the other sign of x is its negation, of small order
/// too.
static SMALL_ORDER_Y: LazyLock<[[u8; PUBLIC_KEY_LEN]; 8]> = LazyLock::new(|| {
    curve25519_dalek::constants::EIGHT_TORSION.map(|p| {
        let mut y = p.compress().to_bytes();
        y[31] &= 0x7f;
        y
    })
});

/// True if `point` (a compressed Edwards point: y, and the sign of x in the
/// top bit) is a canonical encoding (`y < p = 2^255 - 19`) and not the
/// encoding of a point of small order. Whether it decodes at all is left to
/// the verification itself.
///
/// Every non-canonical encoding that decodes is caught here: `y >= p` by the
/// comparison, and the other kind (x = 0 with the sign bit set) exists only
/// for y = 1 and y = -1, which are of small order.
fn acceptable_point(point: &[u8; PUBLIC_KEY_LEN]) -> bool {
    let mut y = *point;
    y[31] &= 0x7f;
    // y >= p only if bits 8..=254 are all ones and the low byte is >= 0xed.
    let at_least_p = y[0] >= 0xed && y[1..31].iter().all(|&b| b == 0xff) && y[31] == 0x7f;
    !at_least_p && !SMALL_ORDER_Y.contains(&y)
}

/// The checks that both [`PublicKey::verify`] and
/// [`PublicKey::verify_batch`] make before the verification equation: the
/// key and the signature's `R` are canonical encodings of points that are
/// not of small order, and `s` is a canonical scalar (`s < l`).
fn precheck(key: &PublicKey, sig: &Signature) -> Result<ed25519_zebra::Signature, BadSignature> {
    let (r, s) = sig.0.split_at(32);
    let r: &[u8; 32] = r.try_into().map_err(|_| BadSignature)?;
    let s: [u8; 32] = s.try_into().map_err(|_| BadSignature)?;
    let canonical_s: bool = curve25519_dalek::Scalar::from_canonical_bytes(s)
        .is_some()
        .into();
    if !acceptable_point(key.as_bytes()) || !acceptable_point(r) || !canonical_s {
        return Err(BadSignature);
    }
    Ok(ed25519_zebra::Signature::from_bytes(&sig.0))
}

/// An ed25519 public key (a verifying key).
///
/// # Verification semantics
///
/// [`PublicKey::verify`] (one signature) and [`PublicKey::verify_batch`]
/// (many at once) accept exactly the same signatures, by construction:
///
/// 1. Both make the same explicit checks first: the key `A` and the
///    signature's `R` must be canonical encodings of points that are not of
///    small order, and the scalar `s` must be canonical (`s < l`).
/// 2. Both then check the same equation, the *cofactored* one of ZIP-215,
///    `[8][s]B = [8]R + [8][k]A` with `k = SHA-512(R || A || message)`, with
///    `ed25519-zebra`: for one signature directly, for a batch as a random
///    linear combination that is multiplied by the cofactor too. A batch of
///    valid signatures therefore always passes, and a batch holding an
///    invalid one fails except with probability about 2^-128.
///
/// The cofactorless equation `[s]B = R + [k]A` (ed25519-dalek's
/// `verify_strict`) and a batch equation disagree on signatures whose `R` or
/// `A` has a torsion component, which a signer can make on purpose: such a
/// signature would pass or fail depending on the path, or even on the
/// batch's random coefficients. Under one cofactored equation it is valid
/// everywhere. Honest signers never make one, and nobody but the key's
/// holder can: `k` covers the bytes of `R` and `A`, so changing either breaks
/// the signature.
///
/// A signature is therefore not unique to its message: the holder of a key
/// can make many valid signatures over one message (as with any ed25519
/// key, by choosing another nonce). Nothing in GDP uses signature bytes as
/// an identifier: heartbeats, certificates and route records are told apart
/// by what they sign (capsule, seqno and record hash; names and validity),
/// never by their signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        self.0.as_bytes()
    }

    /// Parses 32 bytes; fails if they are not a valid curve point.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, DecodeError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| DecodeError::Invalid {
                what: "ed25519 public key",
            })
    }

    /// Verifies `sig` over `body` in `context`. Accepts exactly what
    /// [`PublicKey::verify_batch`] accepts (see [the semantics](PublicKey#verification-semantics)):
    /// weak (small-order) keys, small-order `R`, non-canonical encodings and
    /// non-canonical `s` are rejected.
    pub fn verify(
        &self,
        context: SigContext,
        body: &[u8],
        sig: &Signature,
    ) -> Result<(), BadSignature> {
        let sig = precheck(self, sig)?;
        let key =
            ed25519_zebra::VerificationKey::try_from(*self.as_bytes()).map_err(|_| BadSignature)?;
        key.verify(&sig, &context.message(body))
            .map_err(|_| BadSignature)
    }

    /// Verifies many signatures in `context` in one batch, which is about
    /// twice as fast as one at a time (more when many share a key). Succeeds
    /// only if every signature would pass [`PublicKey::verify`] (see [the
    /// semantics](PublicKey#verification-semantics)); an empty batch passes.
    pub fn verify_batch(
        context: SigContext,
        items: &[(&PublicKey, &[u8], &Signature)],
    ) -> Result<(), BadSignature> {
        let mut batch = ed25519_zebra::batch::Verifier::new();
        for (key, body, sig) in items {
            let sig = precheck(key, sig)?;
            let key = ed25519_zebra::VerificationKeyBytes::from(*key.as_bytes());
            batch.queue((key, sig, &context.message(body)));
        }
        // The coefficients must be unpredictable to whoever made the
        // signatures: a thread-local CSPRNG seeded from the OS.
        batch.verify(rand::thread_rng()).map_err(|_| BadSignature)
    }

    /// The underlying dalek key.
    pub fn as_dalek(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({})",
            crate::Name::from_bytes(*self.as_bytes())
        )
    }
}

impl fmt::Display for PublicKey {
    /// Same lowercase base32 text form as a [`Name`](crate::Name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&crate::Name::from_bytes(*self.as_bytes()), f)
    }
}

impl std::str::FromStr for PublicKey {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw: crate::Name = s.parse()?;
        Ok(PublicKey::from_bytes(raw.as_bytes())?)
    }
}

impl Encode for PublicKey {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(self.as_bytes());
    }
    fn encoded_len(&self) -> usize {
        PUBLIC_KEY_LEN
    }
}

impl Decode for PublicKey {
    const WHAT: &'static str = "public key";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        PublicKey::from_bytes(&r.array("public key")?)
    }
}

/// An ed25519 signature (64 bytes, not yet checked against anything).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signature({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

impl Encode for Signature {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.0);
    }
    fn encoded_len(&self) -> usize {
        SIGNATURE_LEN
    }
}

impl Decode for Signature {
    const WHAT: &'static str = "signature";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Signature(r.array("signature")?))
    }
}

/// An ed25519 secret key. Zeroed on drop; never printed.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        SecretKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from a 32-byte seed. Deterministic: for tests and key files.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed. Handle with care.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `body` in `context`.
    pub fn sign(&self, context: SigContext, body: &[u8]) -> Signature {
        Signature(self.0.sign(&context.message(body)).to_bytes())
    }

    /// The underlying dalek key (for TLS identity).
    pub fn as_dalek(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_separate_signatures() {
        let k = SecretKey::generate();
        let s = k.sign(SigContext::AdCert, b"body");
        assert_eq!(k.public().verify(SigContext::AdCert, b"body", &s), Ok(()));
        assert_eq!(
            k.public().verify(SigContext::RtCert, b"body", &s),
            Err(BadSignature)
        );
        assert_eq!(
            k.public().verify(SigContext::AdCert, b"bodY", &s),
            Err(BadSignature)
        );
    }

    #[test]
    fn batch_agrees_with_single() {
        let keys: Vec<SecretKey> = (0..8u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let pubs: Vec<PublicKey> = keys.iter().map(SecretKey::public).collect();
        let bodies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 40]).collect();
        let mut sigs: Vec<Signature> = keys
            .iter()
            .zip(&bodies)
            .map(|(k, b)| k.sign(SigContext::Heartbeat, b))
            .collect();
        let items = |sigs: &[Signature]| -> Result<(), BadSignature> {
            let v: Vec<(&PublicKey, &[u8], &Signature)> = pubs
                .iter()
                .zip(&bodies)
                .zip(sigs)
                .map(|((k, b), s)| (k, b.as_slice(), s))
                .collect();
            PublicKey::verify_batch(SigContext::Heartbeat, &v)
        };
        assert_eq!(items(&sigs), Ok(()));
        sigs[5].0[10] ^= 1;
        assert_eq!(items(&sigs), Err(BadSignature));
        assert_eq!(PublicKey::verify_batch(SigContext::Heartbeat, &[]), Ok(()));
    }

    /// Signatures built by hand on the curve, after the edge cases of
    /// "Taming the many EdDSAs" (ed25519-speccheck).
    mod edge {
        use super::*;
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::edwards::CompressedEdwardsY;
        use curve25519_dalek::{EdwardsPoint, Scalar};
        use proptest::prelude::*;
        use sha2::{Digest, Sha512};

        const CONTEXT: SigContext = SigContext::Heartbeat;

        /// l, the order of the base point, little-endian.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];

        /// One kind of signature, with whether it must verify.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum Case {
            /// An ordinary signature.
            Valid,
            /// Small-order key and small-order R with s = 0: every message
            /// passes the cofactored equation.
            SmallOrderKeyAndR,
            /// Small-order R, s = k·a: passes the cofactored equation.
            SmallOrderR,
            /// R = [r]B + T (T of order 8): valid under the cofactored
            /// equation, not under the cofactorless one.
            MixedOrderR,
            /// A = [a]B + T: the same for the key.
            MixedOrderKey,
            /// A valid signature with s + l in place of s.
            NonCanonicalS,
            /// R is the identity spelt with y = p + 1, with a small-order key
            /// and s = 0.
            NonCanonicalR,
            /// The key is the identity spelt with y = p + 1.
            NonCanonicalKey,
            /// R is the identity spelt with the sign bit set (x = 0).
            NegativeZeroR,
        }

        impl Case {
            pub(super) const ALL: [Case; 9] = [
                Case::Valid,
                Case::SmallOrderKeyAndR,
                Case::SmallOrderR,
                Case::MixedOrderR,
                Case::MixedOrderKey,
                Case::NonCanonicalS,
                Case::NonCanonicalR,
                Case::NonCanonicalKey,
                Case::NegativeZeroR,
            ];

            /// Whether the one verification semantics accepts it.
            fn valid(self) -> bool {
                matches!(self, Case::Valid | Case::MixedOrderR | Case::MixedOrderKey)
            }
        }

        /// A scalar from `seed`.
        fn scalar(seed: u64, salt: u8) -> Scalar {
            let mut wide = [0u8; 64];
            wide[..8].copy_from_slice(&seed.to_le_bytes());
            wide[8] = salt;
            Scalar::from_bytes_mod_order_wide(&Sha512::digest(wide).into())
        }

        /// k = SHA-512(R || A || message) for `body` in [`CONTEXT`].
        fn challenge(r: &[u8; 32], a: &[u8; 32], body: &[u8]) -> Scalar {
            let mut h = Sha512::new();
            h.update(r);
            h.update(a);
            h.update(CONTEXT.message(body));
            Scalar::from_bytes_mod_order_wide(&h.finalize().into())
        }

        /// The identity spelt with y = p + 1 (not canonical).
        fn identity_non_canonical() -> [u8; 32] {
            let mut b = [0xff; 32];
            b[0] = 0xee;
            b[31] = 0x7f;
            b
        }

        fn key(bytes: [u8; 32]) -> PublicKey {
            PublicKey::from_bytes(&bytes).expect("the test key decodes")
        }

        fn sig(r: [u8; 32], s: [u8; 32]) -> Signature {
            let mut b = [0u8; 64];
            b[..32].copy_from_slice(&r);
            b[32..].copy_from_slice(&s);
            Signature(b)
        }

        /// `a` signs `body` with nonce point `big_r` (whose discrete log
        /// minus torsion is `r`): s = r + k·a.
        fn sign_with(
            a: Scalar,
            key_bytes: [u8; 32],
            r: Scalar,
            big_r: EdwardsPoint,
            body: &[u8],
        ) -> Signature {
            let r_bytes = big_r.compress().to_bytes();
            let k = challenge(&r_bytes, &key_bytes, body);
            sig(r_bytes, (r + k * a).to_bytes())
        }

        /// A signature of kind `case` over `body`, from randomness `seed`.
        pub(super) fn build(case: Case, seed: u64, body: &[u8]) -> (PublicKey, Signature) {
            let a = scalar(seed, 1);
            let r = scalar(seed, 2);
            let big_a = EdwardsPoint::mul_base(&a);
            let a_bytes = big_a.compress().to_bytes();
            let torsion = EIGHT_TORSION[usize::try_from(seed % 7 + 1).expect("small")];
            let small = EIGHT_TORSION[usize::try_from(seed % 8).expect("small")];
            match case {
                Case::Valid => {
                    let k = SecretKey::from_seed(&a.to_bytes());
                    (k.public(), k.sign(CONTEXT, body))
                }
                Case::SmallOrderKeyAndR => (
                    key(small.compress().to_bytes()),
                    sig(torsion.compress().to_bytes(), [0; 32]),
                ),
                Case::SmallOrderR => {
                    let r_bytes = torsion.compress().to_bytes();
                    let k = challenge(&r_bytes, &a_bytes, body);
                    (key(a_bytes), sig(r_bytes, (k * a).to_bytes()))
                }
                Case::MixedOrderR => (
                    key(a_bytes),
                    sign_with(a, a_bytes, r, EdwardsPoint::mul_base(&r) + torsion, body),
                ),
                Case::MixedOrderKey => {
                    let mixed = (big_a + torsion).compress().to_bytes();
                    (
                        key(mixed),
                        sign_with(a, mixed, r, EdwardsPoint::mul_base(&r), body),
                    )
                }
                Case::NonCanonicalS => {
                    let k = SecretKey::from_seed(&a.to_bytes());
                    let mut sig = k.sign(CONTEXT, body);
                    let mut carry = 0u16;
                    for (byte, l) in sig.0[32..].iter_mut().zip(L) {
                        let sum = u16::from(*byte) + u16::from(l) + carry;
                        *byte = sum.to_le_bytes()[0];
                        carry = sum >> 8;
                    }
                    assert_eq!(carry, 0, "s + l fits in 32 bytes");
                    (k.public(), sig)
                }
                Case::NonCanonicalR => (
                    key(small.compress().to_bytes()),
                    sig(identity_non_canonical(), [0; 32]),
                ),
                Case::NonCanonicalKey => (
                    key(identity_non_canonical()),
                    sig(torsion.compress().to_bytes(), [0; 32]),
                ),
                Case::NegativeZeroR => {
                    let mut r_bytes = EdwardsPoint::default().compress().to_bytes();
                    r_bytes[31] |= 0x80;
                    (key(small.compress().to_bytes()), sig(r_bytes, [0; 32]))
                }
            }
        }

        fn batch(items: &[(PublicKey, Vec<u8>, Signature)]) -> Result<(), BadSignature> {
            let refs: Vec<(&PublicKey, &[u8], &Signature)> =
                items.iter().map(|(k, b, s)| (k, b.as_slice(), s)).collect();
            PublicKey::verify_batch(CONTEXT, &refs)
        }

        #[test]
        fn the_cases_are_what_they_claim() {
            let body = b"edge".as_slice();
            for seed in 0..8 {
                // The ones built to pass the cofactored equation do, as
                // ed25519-zebra sees them without the pre-checks.
                for case in [
                    Case::SmallOrderKeyAndR,
                    Case::SmallOrderR,
                    Case::MixedOrderR,
                    Case::MixedOrderKey,
                    Case::NonCanonicalR,
                    Case::NonCanonicalKey,
                    Case::NegativeZeroR,
                ] {
                    let (k, s) = build(case, seed, body);
                    let zebra =
                        ed25519_zebra::VerificationKey::try_from(*k.as_bytes()).and_then(|vk| {
                            vk.verify(
                                &ed25519_zebra::Signature::from_bytes(&s.0),
                                &CONTEXT.message(body),
                            )
                        });
                    assert_eq!(zebra, Ok(()), "{case:?} seed {seed}");
                }
                // Mixed order fails the cofactorless equation (dalek's
                // verify_strict), which is why it is not used.
                let (k, s) = build(Case::MixedOrderR, seed, body);
                let strict = k.0.verify_strict(
                    &CONTEXT.message(body),
                    &ed25519_dalek::Signature::from_bytes(&s.0),
                );
                assert!(strict.is_err(), "seed {seed}");
                // s + l is s again modulo l: only its encoding is wrong.
                let (k, s) = build(Case::NonCanonicalS, seed, body);
                let s_bytes: [u8; 32] = s.0[32..].try_into().expect("32 bytes");
                assert!(bool::from(Scalar::from_canonical_bytes(s_bytes).is_none()));
                assert_ne!(k.verify(CONTEXT, body, &s), Ok(()));
            }
            let (_, s) = build(Case::NonCanonicalR, 0, body);
            let r: [u8; 32] = s.0[..32].try_into().expect("32 bytes");
            let identity = CompressedEdwardsY(r).decompress().expect("decodes");
            assert_eq!(identity, EdwardsPoint::default());
            assert_ne!(identity.compress().to_bytes(), r);
        }

        #[test]
        fn single_and_batch_give_the_same_answer_on_every_edge_case() {
            let body = b"edge".to_vec();
            for case in Case::ALL {
                for seed in 0..16 {
                    let (k, s) = build(case, seed, &body);
                    let expected = if case.valid() {
                        Ok(())
                    } else {
                        Err(BadSignature)
                    };
                    assert_eq!(
                        k.verify(CONTEXT, &body, &s),
                        expected,
                        "{case:?} seed {seed}"
                    );
                    // Alone, and among valid signatures at every position;
                    // again and again, since batch coefficients are random.
                    assert_eq!(batch(&[(k, body.clone(), s)]), expected, "{case:?} alone");
                    for at in 0..4 {
                        let mut items: Vec<(PublicKey, Vec<u8>, Signature)> = (0..3)
                            .map(|i| {
                                let b = vec![i; 20];
                                let (k, s) = build(Case::Valid, seed * 10 + u64::from(i), &b);
                                (k, b, s)
                            })
                            .collect();
                        items.insert(at, (k, body.clone(), s));
                        for _ in 0..4 {
                            assert_eq!(batch(&items), expected, "{case:?} seed {seed} at {at}");
                        }
                    }
                }
            }
        }

        #[test]
        fn acceptable_points_are_exactly_the_canonical_ones_not_of_small_order() {
            for p in EIGHT_TORSION {
                let canonical = p.compress().to_bytes();
                assert!(!acceptable_point(&canonical));
                let mut flipped = canonical;
                flipped[31] ^= 0x80;
                assert!(!acceptable_point(&flipped));
            }
            // Every y >= p, whatever the sign bit: 2^255 - 19 + i.
            for i in 0..19u8 {
                let mut y = [0xff; 32];
                y[0] = 0xed + i;
                y[31] = 0x7f;
                assert!(!acceptable_point(&y), "p + {i}");
                y[31] = 0xff;
                assert!(!acceptable_point(&y), "p + {i}, sign set");
            }
            for seed in 0..64 {
                let p = EdwardsPoint::mul_base(&scalar(seed, 3));
                assert!(acceptable_point(&p.compress().to_bytes()));
                assert!(acceptable_point(&(-p).compress().to_bytes()));
            }
            assert!(acceptable_point(
                &ED25519_BASEPOINT_POINT.compress().to_bytes()
            ));
        }

        fn arb_case() -> impl Strategy<Value = Case> {
            prop_oneof![
                6 => Just(Case::Valid),
                1 => proptest::sample::select(Case::ALL.to_vec()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

            /// Any mixture of valid signatures and edge cases: the batch
            /// passes exactly when every signature passes on its own.
            #[test]
            fn batch_passes_exactly_when_every_single_passes(
                cases in proptest::collection::vec((arb_case(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40)), 1..12),
            ) {
                let items: Vec<(PublicKey, Vec<u8>, Signature)> = cases
                    .iter()
                    .map(|(case, seed, body)| {
                        let (k, s) = build(*case, *seed, body);
                        (k, body.clone(), s)
                    })
                    .collect();
                let singles: Vec<bool> = items
                    .iter()
                    .map(|(k, b, s)| k.verify(CONTEXT, b, s).is_ok())
                    .collect();
                for ((case, _, _), ok) in cases.iter().zip(&singles) {
                    prop_assert_eq!(case.valid(), *ok, "{:?}", case);
                }
                let all = singles.iter().all(|ok| *ok);
                prop_assert_eq!(batch(&items).is_ok(), all);
            }
        }
    }

    #[test]
    fn public_key_text_round_trips() {
        let p = SecretKey::from_seed(&[3; 32]).public();
        assert_eq!(p.to_string().parse::<PublicKey>().ok(), Some(p));
    }
}
