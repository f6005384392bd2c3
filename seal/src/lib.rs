//! Confidential DataCapsules for the Global Data Plane.
//!
//! A DataCapsule is an append-only, signed, hash-chained log. Its servers
//! store and serve every record, and anyone can read what they serve. A
//! *confidential* capsule keeps its record payloads secret from everyone but
//! its readers, with no change to the capsule itself: each payload is an
//! [`Envelope`], and the keys that open the envelopes are published, wrapped
//! to each reader, in a second capsule, the *keyring*.
//!
//! # Epochs and content keys
//!
//! A capsule's life is divided into epochs, numbered from 1. Each epoch has a
//! 32-byte [`ContentKey`] that the writers seal its records under
//! ([`seal`]); each envelope names its epoch. The keyring capsule, appended
//! to by the data capsule's writers, holds [`KeyRecord`]s: a record that
//! starts an epoch wraps its new key to the epoch's first readers, and later
//! records for the same epoch wrap it to more readers. Folding the keyring's
//! records in order gives a [`Keyring`], from which a reader unwraps the keys
//! of every epoch it was granted ([`Keyring::keys_for`]).
//!
//! Removing a reader is a rotation ([`Keyring::rotate`]): a new epoch with a
//! fresh key, wrapped only to the readers that remain. A removed reader keeps
//! the keys of earlier epochs (it may have kept their plaintexts anyway) but
//! cannot open records sealed afterwards.
//!
//! # Wrapping keys to readers
//!
//! A reader is named by its ed25519 public key, the same kind of key that
//! names every principal in GDP. A [`Grant`] is an HPKE (RFC 9180) base-mode
//! encryption of the content key to the X25519 form of that key, bound to the
//! capsule, the epoch and the reader. See the [`grant`] module.
//!
//! # Sealing records
//!
//! An envelope is XChaCha20-Poly1305 under the epoch key, bound to the
//! capsule and seqno of the record that carries it, so a server cannot move
//! it to another place in the log unnoticed. A *convergent* envelope seals
//! its body under a key derived from the plaintext, so that equal records
//! have equal bodies and storage can coalesce them, at the price of revealing
//! which records are equal. See the [`envelope`] module for the format and
//! the trade-off.
//!
//! ```
//! use gdp_certs::{Name, SecretKey};
//! use gdp_certs::codec::Decode;
//! use gdp_seal::{Envelope, Keyring, Mode};
//!
//! let capsule = Name::from_bytes([1; 32]);
//! let alice = SecretKey::from_seed(&[2; 32]);
//! let bob = SecretKey::from_seed(&[3; 32]);
//!
//! // The writer starts the keyring and appends its records to the keyring
//! // capsule.
//! let (key, records) = Keyring::start(capsule, &[alice.public(), bob.public()])?;
//! let payload = gdp_seal::seal(&key, 1, Mode::Epoch, &capsule, 1, b"hello");
//!
//! // A reader folds the keyring capsule and opens the record.
//! let mut keyring = Keyring::new(capsule);
//! for record in &records {
//!     keyring.apply(record)?;
//! }
//! let keys = keyring.keys_for(&bob)?;
//! let envelope = Envelope::decode(payload)?;
//! assert_eq!(&keys.open(&capsule, 1, &envelope)?[..], b"hello");
//!
//! // Bob is removed: the next epoch's key is wrapped to Alice alone.
//! let (_key2, records) = keyring.rotate(&[alice.public()])?;
//! for record in &records {
//!     keyring.apply(record)?;
//! }
//! assert_eq!(keyring.keys_for(&bob)?.epochs().collect::<Vec<_>>(), [1]);
//! assert_eq!(keyring.keys_for(&alice)?.epochs().collect::<Vec<_>>(), [1, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Everything here is pure computation: no I/O, no clocks, no async. Keys
//! and salts come from the operating system's random number generator.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod aead;
pub mod envelope;
mod error;
pub mod grant;
mod key;
mod keyring;
pub mod record;

pub use envelope::{
    CONVERGENT_OVERHEAD, EPOCH_OVERHEAD, Envelope, EnvelopeRef, Mode, Opener, Sealer, open,
    open_bytes, open_to, seal,
};
pub use error::{KeyringError, SealError};
pub use grant::Grant;
pub use key::{CONTENT_KEY_LEN, ContentKey};
pub use keyring::{EpochKeys, Keyring};
pub use record::{KeyRecord, MAX_GRANTS};
