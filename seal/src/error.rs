//! The errors of sealing, opening and keyrings.

use gdp_certs::codec::DecodeError;
use gdp_certs::{Name, PublicKey};

/// Why a record could not be sealed or opened, or a content key not wrapped
/// or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The bytes are not a well-formed envelope (or grant).
    #[error("malformed sealed record: {0}")]
    Malformed(#[from] DecodeError),
    /// The envelope does not authenticate: the key is not the one it was
    /// sealed under, it belongs to another capsule or seqno, or some of its
    /// bytes were altered.
    #[error(
        "sealed record does not authenticate: wrong content key, capsule or seqno, or altered bytes"
    )]
    Tampered,
    /// A convergent record decrypted, but its key is not the one its
    /// plaintext derives, so identical plaintexts would not coalesce.
    #[error("convergent record's key is not derived from its plaintext")]
    NotConvergent,
    /// No content key is known for the envelope's epoch.
    #[error("no content key for epoch {epoch}")]
    NoKey {
        /// The epoch the envelope names.
        epoch: u32,
    },
    /// A grant was offered a secret key other than its reader's.
    #[error("grant is for reader {grant_for}, not for {key}")]
    NotRecipient {
        /// The reader the grant is for.
        grant_for: Box<PublicKey>,
        /// The public key of the secret key offered.
        key: Box<PublicKey>,
    },
    /// A grant does not open for its reader: it was made for another
    /// capsule or epoch, or its bytes were altered.
    #[error("content key grant does not open: wrong capsule or epoch, or altered bytes")]
    GrantTampered,
    /// The reader's key cannot receive a grant (its X25519 form is a point
    /// of small order, so key agreement yields no secret).
    #[error("reader key {reader} cannot receive a content key")]
    UnusableReaderKey {
        /// The reader.
        reader: Box<PublicKey>,
    },
}

/// Why a keyring record could not be built or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The record is for another data capsule.
    #[error("keyring record is for capsule {found}, not {expected}")]
    WrongCapsule {
        /// The keyring's capsule.
        expected: Name,
        /// The capsule the record names.
        found: Name,
    },
    /// The first record of a keyring must start epoch 1.
    #[error(
        "the first keyring record must start epoch 1; found {} epoch {epoch}",
        if *starts_epoch { "a record starting" } else { "grants for" }
    )]
    FirstNotEpochOne {
        /// The record's epoch.
        epoch: u32,
        /// Whether the record starts its epoch.
        starts_epoch: bool,
    },
    /// A record starts an epoch other than the next one.
    #[error("keyring record starts epoch {found} during epoch {current}; only epoch {} may start next", u64::from(*current) + 1)]
    EpochNotNext {
        /// The current epoch.
        current: u32,
        /// The epoch the record starts.
        found: u32,
    },
    /// A record adds readers to an epoch other than the current one.
    #[error(
        "keyring record grants epoch {found} during epoch {current}; grants may only add readers to the current epoch"
    )]
    EpochNotCurrent {
        /// The current epoch.
        current: u32,
        /// The epoch the record grants.
        found: u32,
    },
    /// A record grants a reader that already holds the epoch's key.
    #[error("reader {reader} already holds the key of epoch {epoch}")]
    AlreadyGranted {
        /// The reader.
        reader: Box<PublicKey>,
        /// The epoch.
        epoch: u32,
    },
    /// A record lists a reader twice.
    #[error("keyring record lists reader {reader} twice")]
    DuplicateReader {
        /// The reader.
        reader: Box<PublicKey>,
    },
    /// A record or an epoch would have no readers.
    #[error("a keyring record must grant at least one reader")]
    NoReaders,
    /// A record would hold more grants than a record may.
    #[error("a keyring record holds at most {max} grants, not {count}")]
    TooManyGrants {
        /// The number of grants.
        count: usize,
        /// The limit, [`MAX_GRANTS`](crate::MAX_GRANTS).
        max: usize,
    },
    /// Epoch 0 does not exist; epochs count from 1.
    #[error("epoch 0 does not exist; epochs count from 1")]
    ZeroEpoch,
    /// The keyring has no epoch yet, so there is nothing to grant or rotate.
    #[error("the keyring has no epoch yet")]
    NotStarted,
    /// The current epoch is the last one a `u32` counts.
    #[error("the keyring is at the last epoch, {current}")]
    EpochsExhausted {
        /// The current epoch.
        current: u32,
    },
    /// A content key could not be wrapped to a reader.
    #[error(transparent)]
    Seal(#[from] SealError),
}
