//! Metadata: what a name is the hash of.
//!
//! A name is `blake3::derive_key(NAME_CONTEXT, canonical_encoding(metadata))`.
//! Whoever holds the metadata can check that it hashes to a name
//! ([`Metadata::check_name`]), and whoever holds the key inside it can prove
//! control of the name by signing.
//!
//! # Canonical encoding (version 1)
//!
//! ```text
//! u8   version = 1
//! u8   kind            (1 capsule, 2 router, 3 capsule server, 4 client, 5 trust domain)
//! [32] key             (the capsule's owner, or the principal itself)
//! u64  created         (microseconds since the epoch)
//! u8   label length, label bytes (UTF-8, at most 255 bytes)
//! [16] nonce           (random for capsules; free for principals)
//! u8   writer count, [32] each     (capsules: 1..=MAX_WRITERS; others: 0)
//! u8   hosting count,  [32] each   (capsules: servers allowed to host it, empty = any; others: 0)
//! ```
//!
//! # Version 2: encrypted capsules
//!
//! An encrypted capsule's metadata is version 2: the same fields, then
//!
//! ```text
//! u8   scheme          (1 XChaCha20-Poly1305 under epoch keys, 2 the same with convergent record keys)
//! [32] keyring         (the capsule whose records wrap the content keys to readers)
//! ```
//!
//! Only capsules can be version 2, and metadata without encryption is always
//! version 1, so the names of plaintext capsules never change.

use bytes::{BufMut, BytesMut};

use crate::codec::{Decode, DecodeError, Encode, Reader, put};
use crate::{Name, PublicKey, Timestamp};

/// The blake3 derive-key context for names. Fixed forever for version 1.
pub const NAME_CONTEXT: &str = "GDP v1 2026-11-23 name from metadata";

/// Maximum number of writer keys in a capsule's metadata.
pub const MAX_WRITERS: usize = 32;
/// Maximum number of hosting constraints in a capsule's metadata.
pub const MAX_HOSTING: usize = 32;
/// Maximum label length in bytes.
pub const MAX_LABEL_LEN: usize = 255;
/// Maximum encoded size of metadata.
pub const MAX_METADATA_LEN: usize =
    1 + 1 + 32 + 8 + 1 + MAX_LABEL_LEN + 16 + 1 + 32 * MAX_WRITERS + 1 + 32 * MAX_HOSTING + 1 + 32;

/// Metadata without encryption.
const METADATA_VERSION: u8 = 1;
/// Metadata of an encrypted capsule.
const METADATA_VERSION_ENCRYPTED: u8 = 2;

/// How an encrypted capsule's record payloads are sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EncryptionScheme {
    /// XChaCha20-Poly1305 under the epoch's content key, a random nonce per
    /// record.
    Epoch,
    /// Convergent: each record under a key hashed from its plaintext (so
    /// equal records give equal ciphertexts), that key sealed under the
    /// epoch's content key.
    Convergent,
}

impl EncryptionScheme {
    fn code(self) -> u8 {
        match self {
            EncryptionScheme::Epoch => 1,
            EncryptionScheme::Convergent => 2,
        }
    }

    fn from_code(c: u8) -> Result<Self, DecodeError> {
        match c {
            1 => Ok(EncryptionScheme::Epoch),
            2 => Ok(EncryptionScheme::Convergent),
            v => Err(DecodeError::UnknownValue {
                what: "encryption scheme",
                value: v.into(),
            }),
        }
    }
}

/// That a capsule is encrypted, how, and where its readers' keys are: part
/// of the signed metadata, so no server or router can strip or change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encryption {
    /// How records are sealed.
    pub scheme: EncryptionScheme,
    /// The keyring capsule: its records wrap each epoch's content key to
    /// each reader.
    pub keyring: Name,
}

/// What a name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Kind {
    /// A DataCapsule; its key is the owner's.
    Capsule,
    /// A GDP router.
    Router,
    /// A capsule server.
    Server,
    /// A client (application).
    Client,
    /// A trust domain, whose key signs domain certificates for routers.
    TrustDomain,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Capsule => 1,
            Kind::Router => 2,
            Kind::Server => 3,
            Kind::Client => 4,
            Kind::TrustDomain => 5,
        }
    }

    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            1 => Kind::Capsule,
            2 => Kind::Router,
            3 => Kind::Server,
            4 => Kind::Client,
            5 => Kind::TrustDomain,
            v => {
                return Err(DecodeError::UnknownValue {
                    what: "metadata kind",
                    value: v.into(),
                });
            }
        })
    }

    /// True for the kinds that attach to a router as endpoints.
    pub fn is_endpoint(self) -> bool {
        matches!(self, Kind::Server | Kind::Client)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Capsule => "capsule",
            Kind::Router => "router",
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::TrustDomain => "trust-domain",
        })
    }
}

/// Metadata of a capsule or a principal. The name is its hash.
///
/// Construct with [`Metadata::capsule`] or [`Metadata::principal`]; both
/// enforce the invariants that decoding checks, so every value of this type
/// has a canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    kind: Kind,
    key: PublicKey,
    created: Timestamp,
    label: String,
    nonce: [u8; 16],
    writers: Vec<PublicKey>,
    hosting: Vec<Name>,
    encryption: Option<Encryption>,
}

/// Metadata that breaks a rule of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Label longer than [`MAX_LABEL_LEN`] bytes.
    #[error("label is {0} bytes, over the limit of {MAX_LABEL_LEN}")]
    LabelTooLong(usize),
    /// A capsule needs between 1 and [`MAX_WRITERS`] writers.
    #[error("a capsule needs 1 to {MAX_WRITERS} writer keys, got {0}")]
    Writers(usize),
    /// Too many hosting constraints.
    #[error("at most {MAX_HOSTING} hosting constraints, got {0}")]
    Hosting(usize),
    /// Use [`Metadata::capsule`] for capsules.
    #[error("use Metadata::capsule for capsule metadata")]
    NotAPrincipal,
    /// Only a capsule can be encrypted.
    #[error("only a capsule's metadata can say it is encrypted")]
    NotACapsule,
}

impl Metadata {
    /// Metadata for a new capsule owned by `owner`, writable by `writers`,
    /// with a fresh random nonce (so two capsules with equal fields still get
    /// distinct names).
    pub fn capsule(
        owner: PublicKey,
        writers: Vec<PublicKey>,
        label: impl Into<String>,
        created: Timestamp,
        hosting: Vec<Name>,
    ) -> Result<Self, MetadataError> {
        let label = label.into();
        if label.len() > MAX_LABEL_LEN {
            return Err(MetadataError::LabelTooLong(label.len()));
        }
        if writers.is_empty() || writers.len() > MAX_WRITERS {
            return Err(MetadataError::Writers(writers.len()));
        }
        if hosting.len() > MAX_HOSTING {
            return Err(MetadataError::Hosting(hosting.len()));
        }
        Ok(Metadata {
            kind: Kind::Capsule,
            key: owner,
            created,
            label,
            nonce: rand::random(),
            writers,
            hosting,
            encryption: None,
        })
    }

    /// Metadata for a principal (router, server, client, trust domain)
    /// controlled by `key`.
    pub fn principal(
        kind: Kind,
        key: PublicKey,
        label: impl Into<String>,
        created: Timestamp,
    ) -> Result<Self, MetadataError> {
        let label = label.into();
        if kind == Kind::Capsule {
            return Err(MetadataError::NotAPrincipal);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(MetadataError::LabelTooLong(label.len()));
        }
        Ok(Metadata {
            kind,
            key,
            created,
            label,
            nonce: [0; 16],
            writers: Vec::new(),
            hosting: Vec::new(),
            encryption: None,
        })
    }

    /// Marks a capsule's metadata as encrypted (which changes its name).
    pub fn with_encryption(mut self, encryption: Encryption) -> Result<Self, MetadataError> {
        if self.kind != Kind::Capsule {
            return Err(MetadataError::NotACapsule);
        }
        self.encryption = Some(encryption);
        Ok(self)
    }

    /// Replaces the nonce (for deterministic tests and fixtures).
    pub fn with_nonce(mut self, nonce: [u8; 16]) -> Self {
        self.nonce = nonce;
        self
    }

    /// What this names.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The controlling key: a capsule's owner, or the principal's own key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
    /// Creation time.
    pub fn created(&self) -> Timestamp {
        self.created
    }
    /// Human-readable label (not unique, not trusted).
    pub fn label(&self) -> &str {
        &self.label
    }
    /// The nonce.
    pub fn nonce(&self) -> &[u8; 16] {
        &self.nonce
    }
    /// Keys allowed to sign heartbeats (capsules only).
    pub fn writers(&self) -> &[PublicKey] {
        &self.writers
    }
    /// Servers allowed to host the capsule; empty means any.
    pub fn hosting(&self) -> &[Name] {
        &self.hosting
    }
    /// How the capsule's records are encrypted, if they are.
    pub fn encryption(&self) -> Option<&Encryption> {
        self.encryption.as_ref()
    }
    /// True if the capsule's records are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.encryption.is_some()
    }

    /// True if `key` may write this capsule.
    pub fn is_writer(&self, key: &PublicKey) -> bool {
        self.writers.contains(key)
    }

    /// True if server `server` may host this capsule.
    pub fn may_host(&self, server: &Name) -> bool {
        self.hosting.is_empty() || self.hosting.contains(server)
    }

    /// The name this metadata hashes to.
    pub fn name(&self) -> Name {
        let mut h = blake3::Hasher::new_derive_key(NAME_CONTEXT);
        h.update(&self.to_bytes());
        Name::from_bytes(*h.finalize().as_bytes())
    }

    /// Checks that this metadata hashes to `name`.
    pub fn check_name(&self, name: &Name) -> Result<(), crate::Error> {
        let actual = self.name();
        if &actual == name {
            Ok(())
        } else {
            Err(crate::Error::NameMismatch {
                expected: *name,
                actual,
            })
        }
    }
}

impl Encode for Metadata {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(match self.encryption {
            None => METADATA_VERSION,
            Some(_) => METADATA_VERSION_ENCRYPTED,
        });
        buf.put_u8(self.kind.code());
        self.key.encode(buf);
        self.created.encode(buf);
        put::bytes_u8(buf, self.label.as_bytes());
        buf.put_slice(&self.nonce);
        buf.put_u8(self.writers.len() as u8);
        for w in &self.writers {
            w.encode(buf);
        }
        buf.put_u8(self.hosting.len() as u8);
        for h in &self.hosting {
            h.encode(buf);
        }
        if let Some(e) = &self.encryption {
            buf.put_u8(e.scheme.code());
            e.keyring.encode(buf);
        }
    }

    fn encoded_len(&self) -> usize {
        1 + 1
            + 32
            + 8
            + 1
            + self.label.len()
            + 16
            + 1
            + 32 * self.writers.len()
            + 1
            + 32 * self.hosting.len()
            + if self.encryption.is_some() { 1 + 32 } else { 0 }
    }
}

impl Decode for Metadata {
    const WHAT: &'static str = "metadata";

    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let version = r.u8("metadata version")?;
        if version != METADATA_VERSION && version != METADATA_VERSION_ENCRYPTED {
            return Err(DecodeError::UnknownValue {
                what: "metadata version",
                value: version.into(),
            });
        }
        let kind = Kind::from_code(r.u8("metadata kind")?)?;
        let key = PublicKey::decode_from(r)?;
        let created = Timestamp::decode_from(r)?;
        let label = r.string_u8(MAX_LABEL_LEN, "metadata label")?;
        let nonce = r.array("metadata nonce")?;
        let nw = usize::from(r.u8("writer count")?);
        if nw > MAX_WRITERS {
            return Err(DecodeError::TooLong {
                what: "writer count",
                len: nw,
                max: MAX_WRITERS,
            });
        }
        let mut writers = Vec::with_capacity(nw);
        for _ in 0..nw {
            writers.push(PublicKey::decode_from(r)?);
        }
        let nh = usize::from(r.u8("hosting count")?);
        if nh > MAX_HOSTING {
            return Err(DecodeError::TooLong {
                what: "hosting count",
                len: nh,
                max: MAX_HOSTING,
            });
        }
        let mut hosting = Vec::with_capacity(nh);
        for _ in 0..nh {
            hosting.push(Name::decode_from(r)?);
        }
        let encryption = if version == METADATA_VERSION_ENCRYPTED {
            Some(Encryption {
                scheme: EncryptionScheme::from_code(r.u8("encryption scheme")?)?,
                keyring: Name::decode_from(r)?,
            })
        } else {
            None
        };
        let capsule = kind == Kind::Capsule;
        if !capsule && encryption.is_some() {
            return Err(DecodeError::Invalid {
                what: "principal metadata that says it is encrypted",
            });
        }
        if capsule && writers.is_empty() {
            return Err(DecodeError::Invalid {
                what: "capsule metadata without writers",
            });
        }
        if !capsule && (!writers.is_empty() || !hosting.is_empty()) {
            return Err(DecodeError::Invalid {
                what: "principal metadata with writers or hosting constraints",
            });
        }
        Ok(Metadata {
            kind,
            key,
            created,
            label,
            nonce,
            writers,
            hosting,
            encryption,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::SecretKey;
    use proptest::prelude::*;

    pub(crate) fn arb_metadata() -> impl Strategy<Value = Metadata> {
        let key = any::<[u8; 32]>().prop_map(|s| SecretKey::from_seed(&s).public());
        prop_oneof![
            (
                key.clone(),
                proptest::collection::vec(key.clone(), 1..4),
                "[a-z ]{0,20}",
                any::<u64>(),
                any::<[u8; 16]>(),
                proptest::collection::vec(any::<[u8; 32]>().prop_map(Name::from_bytes), 0..3),
            )
                .prop_map(|(o, w, l, c, n, h)| Metadata::capsule(
                    o,
                    w,
                    l,
                    Timestamp(c),
                    h
                )
                .expect("strategy stays within limits")
                .with_nonce(n)),
            (
                key.clone(),
                "[a-z ]{0,20}",
                any::<u64>(),
                any::<bool>(),
                any::<[u8; 32]>().prop_map(Name::from_bytes),
            )
                .prop_map(|(o, l, c, convergent, keyring)| Metadata::capsule(
                    o,
                    vec![o],
                    l,
                    Timestamp(c),
                    vec![]
                )
                .and_then(|m| m.with_encryption(Encryption {
                    scheme: if convergent {
                        EncryptionScheme::Convergent
                    } else {
                        EncryptionScheme::Epoch
                    },
                    keyring,
                }))
                .expect("strategy stays within limits")),
            (
                key,
                prop_oneof![
                    Just(Kind::Router),
                    Just(Kind::Server),
                    Just(Kind::Client),
                    Just(Kind::TrustDomain)
                ],
                "[a-z]{0,10}",
                any::<u64>()
            )
                .prop_map(|(k, kind, l, c)| Metadata::principal(
                    kind,
                    k,
                    l,
                    Timestamp(c)
                )
                .expect("strategy stays within limits")),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(md in arb_metadata()) {
            let bytes = md.to_bytes();
            prop_assert_eq!(bytes.len(), md.encoded_len());
            prop_assert!(bytes.len() <= MAX_METADATA_LEN);
            let back = Metadata::decode(bytes).expect("decodes");
            prop_assert_eq!(back.name(), md.name());
            prop_assert_eq!(back, md);
        }

        #[test]
        fn any_bit_flip_changes_the_name_or_fails_to_decode(md in arb_metadata(), bit in any::<prop::sample::Index>()) {
            let bytes = md.to_bytes().to_vec();
            let mut flipped = bytes.clone();
            let i = bit.index(bytes.len() * 8);
            flipped[i / 8] ^= 1 << (i % 8);
            if let Ok(m) = Metadata::decode(flipped) {
                prop_assert!(m.check_name(&md.name()).is_err());
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Metadata::decode(bytes);
        }
    }

    #[test]
    fn name_mismatch_is_reported() {
        let k = SecretKey::from_seed(&[1; 32]).public();
        let a = Metadata::principal(Kind::Router, k, "a", Timestamp(1)).expect("valid");
        let b = Metadata::principal(Kind::Router, k, "b", Timestamp(1)).expect("valid");
        assert_eq!(a.check_name(&a.name()), Ok(()));
        assert!(matches!(
            a.check_name(&b.name()),
            Err(crate::Error::NameMismatch { .. })
        ));
    }

    #[test]
    fn encryption_is_version_2_and_changes_the_name() {
        let k = SecretKey::from_seed(&[1; 32]).public();
        let plain = Metadata::capsule(k, vec![k], "c", Timestamp(1), vec![])
            .expect("valid")
            .with_nonce([7; 16]);
        assert_eq!(plain.to_bytes()[0], 1);
        assert!(!plain.is_encrypted());
        let sealed = plain
            .clone()
            .with_encryption(Encryption {
                scheme: EncryptionScheme::Epoch,
                keyring: Name::from_bytes([9; 32]),
            })
            .expect("a capsule");
        let bytes = sealed.to_bytes();
        assert_eq!(bytes[0], 2);
        assert_eq!(bytes.len(), plain.encoded_len() + 33);
        assert_ne!(sealed.name(), plain.name());
        let back = Metadata::decode(bytes.clone()).expect("decodes");
        assert_eq!(back.encryption(), sealed.encryption());
        // An unknown scheme is refused, not read as plaintext.
        let mut unknown = bytes.to_vec();
        let at = unknown.len() - 33;
        unknown[at] = 3;
        assert!(matches!(
            Metadata::decode(unknown),
            Err(DecodeError::UnknownValue { .. })
        ));
        // Version 2 without the section, and a principal that says it is
        // encrypted, are both refused.
        let mut short = plain.to_bytes().to_vec();
        short[0] = 2;
        assert!(Metadata::decode(short).is_err());
        let router = Metadata::principal(Kind::Router, k, "r", Timestamp(1)).expect("valid");
        assert_eq!(
            router
                .clone()
                .with_encryption(*sealed.encryption().expect("set")),
            Err(MetadataError::NotACapsule)
        );
        let mut forged = router.to_bytes().to_vec();
        forged[0] = 2;
        forged.push(1);
        forged.extend_from_slice(&[9; 32]);
        assert_eq!(
            Metadata::decode(forged),
            Err(DecodeError::Invalid {
                what: "principal metadata that says it is encrypted"
            })
        );
    }

    #[test]
    fn invariants_enforced_on_decode() {
        let k = SecretKey::from_seed(&[1; 32]).public();
        let cap = Metadata::capsule(k, vec![k], "c", Timestamp(1), vec![]).expect("valid");
        let mut bytes = cap.to_bytes().to_vec();
        // kind byte -> router, keeping the writer list: invalid for a principal
        bytes[1] = 2;
        assert_eq!(
            Metadata::decode(bytes),
            Err(DecodeError::Invalid {
                what: "principal metadata with writers or hosting constraints"
            })
        );
        assert_eq!(
            Metadata::capsule(k, vec![], "c", Timestamp(1), vec![]),
            Err(MetadataError::Writers(0))
        );
    }
}
