//! Names, identities, metadata and certificates for the Global Data Plane.
//!
//! Everything in GDP has a flat 256-bit [`Name`] that is the blake3 hash of
//! its [`Metadata`]; the metadata holds the ed25519 [`PublicKey`] that
//! controls the name. Certificates bind names together (a capsule to the
//! server that hosts it, an endpoint to the router it attaches to, a router to
//! a trust domain) and route records publish those bindings in an untrusted
//! directory. Every structure has one canonical binary encoding
//! ([`codec`]); every verifier takes bytes and a caller-supplied `now` and
//! returns a checked value or a typed error, never panicking and never
//! allocating without a bound.
//!
//! ```
//! use gdp_certs::{Identity, Kind, Metadata, Timestamp};
//!
//! let router = Identity::generate(Kind::Router, "edge-1")?;
//! // The name is the hash of the metadata, so the metadata proves the name.
//! router.metadata().check_name(&router.name())?;
//! let text = router.name().to_string();
//! assert_eq!(text.parse::<gdp_certs::Name>()?, router.name());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `tls`: the `tls` module, the TLS identity of QUIC links
//!   (self-signed X.509 certificates carrying GDP metadata, and rustls
//!   verifiers that check them). Off by default, so that the wire format and
//!   the fuzz targets build without rustls and an X.509 stack.
//! - `quinn` (implies `tls`): quinn client and server configurations built
//!   from an [`Identity`].
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cert;
pub mod codec;
mod identity;
mod key;
mod metadata;
mod name;
mod time;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;

pub use codec::DecodeError;
pub use identity::{Identity, KeyFileError, PublicIdentity};
pub use key::{
    BadSignature, PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN, SecretKey, SigContext, Signature,
};
pub use metadata::{
    Encryption, EncryptionScheme, Kind, MAX_HOSTING, MAX_LABEL_LEN, MAX_METADATA_LEN, MAX_WRITERS,
    Metadata, MetadataError, NAME_CONTEXT,
};
pub use name::{NAME_LEN, NAME_TEXT_LEN, Name, NameParseError};
pub use time::{Timestamp, format_duration, parse_duration};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{PeerPolicy, TlsError};

/// Errors from parsing names and checking names against metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a valid encoding.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The text is not a name.
    #[error(transparent)]
    NameParse(#[from] NameParseError),
    /// Metadata does not hash to the name it was presented for.
    #[error("metadata hashes to {actual}, not to the expected name {expected}")]
    NameMismatch {
        /// The name the metadata was presented for.
        expected: Name,
        /// The name it actually hashes to.
        actual: Name,
    },
    /// A text form is malformed.
    #[error("{0}")]
    Format(String),
}
