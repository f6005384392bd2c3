//! The errors of the client SDK.
//!
//! One enum, [`ClientError`], for every operation, because most operations
//! share most failure modes (the router is unreachable, the link went down,
//! a timeout, a NAK). Its variants separate what a peer did wrong
//! ([`ClientError::Verification`], [`ClientError::MetadataMismatch`],
//! [`ClientError::Protocol`], [`ClientError::Server`]) from what the path did
//! ([`ClientError::NoRoute`], [`ClientError::Timeout`],
//! [`ClientError::LinkDown`]) and from local mistakes
//! ([`ClientError::InvalidInput`], [`ClientError::NotWriter`]).

use std::time::Duration;

use gdp_certs::Name;
use gdp_link::DownReason;
use gdp_link::endpoint::{EndpointError, Nak};
use gdp_proto::capsule::ErrorCode;
use gdp_proto::proof::ProofError;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting or attaching to the router failed.
    #[error("cannot attach to the router: {0}")]
    Connect(EndpointError),
    /// No answer within the operation's timeout.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// The operation.
        what: &'static str,
        /// The timeout that ran out.
        after: Duration,
    },
    /// A router found no route to the destination.
    #[error("no route to {}: {:?} (reported by router {})", .0.unreachable, .0.reason, .0.from.short())]
    NoRoute(Nak),
    /// The link to the router went down and the operation could not be
    /// completed on a new one in time.
    #[error("the link to the router is down: {0}")]
    LinkDown(DownReason),
    /// The link went down and attaching again failed in a way that will not
    /// pass by itself (the router at the address now proves another name,
    /// or refuses this identity).
    #[error("cannot reattach to the router: {reason}")]
    Reconnect {
        /// Why.
        reason: String,
    },
    /// A record, heartbeat or proof received does not verify against the
    /// capsule's metadata: the server (or something on the path) sent data
    /// the writer never signed.
    #[error("verification failed: {0}")]
    Verification(ProofError),
    /// Metadata received for a capsule does not hash to its name, or is not
    /// a capsule's.
    #[error("metadata received for {expected} is not that capsule's (it hashes to {actual})")]
    MetadataMismatch {
        /// The capsule asked about.
        expected: Name,
        /// What the metadata received hashes to.
        actual: Name,
    },
    /// The server answered with an error.
    #[error("server error {code:?}: {message}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The peer answered with something that is not an answer to the
    /// request (a wrong response type, records other than those asked
    /// for, an undecodable payload).
    #[error("unexpected answer: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// This client's key is not a writer of the capsule.
    #[error("this key is not a writer of capsule {capsule}")]
    NotWriter {
        /// The capsule.
        capsule: Name,
    },
    /// The caller asked for something that cannot be done (a payload too
    /// large, an empty batch, a range ending before it starts).
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
    /// A request to a replicated capsule did not reach its quorum: too few
    /// replicas answered (or acknowledged an append), after every replica
    /// that could stand in was tried.
    #[error("{what}: {got} of the {needed} replicas needed answered ({})", describe_outcomes(.outcomes))]
    Quorum {
        /// The operation.
        what: &'static str,
        /// Answers (or acknowledgements) needed.
        needed: usize,
        /// Answers (or acknowledgements) received.
        got: usize,
        /// Each replica's outcome, by server name.
        outcomes: Vec<(Name, String)>,
        /// True if every replica that failed failed in a way that may pass
        /// (a timeout, no route, a retryable server error).
        transient: bool,
    },
    /// The client was shut down.
    #[error("the client is shut down")]
    Closed,
    /// A plain writer was asked for an encrypted capsule.
    #[error(
        "capsule {capsule} is encrypted: its records are appended sealed (Capsule::sealed_writer)"
    )]
    Encrypted {
        /// The capsule.
        capsule: Name,
    },
    /// The keyring of an encrypted capsule grants this key no key of the
    /// epoch needed (the reader was never added, or was removed before
    /// the record was appended).
    #[error(
        "not a reader of this capsule ({capsule}): no key of epoch {epoch} is granted to this key"
    )]
    NotReader {
        /// The capsule.
        capsule: Name,
        /// The epoch whose key is missing.
        epoch: u32,
    },
    /// A verified record of an encrypted capsule does not decrypt with
    /// the key of its epoch (its writer sealed it wrongly).
    #[error("record {seqno} of capsule {capsule} does not decrypt: {reason}")]
    Decrypt {
        /// The capsule.
        capsule: Name,
        /// The record.
        seqno: u64,
        /// Why.
        reason: String,
    },
    /// The keyring of an encrypted capsule is unusable.
    #[error("the keyring of capsule {capsule}: {reason}")]
    Keyring {
        /// The data capsule.
        capsule: Name,
        /// Why.
        reason: String,
    },
}

/// Each replica's outcome on one line: `<server>: <outcome>; ...`.
fn describe_outcomes(outcomes: &[(Name, String)]) -> String {
    outcomes
        .iter()
        .map(|(s, o)| format!("{}: {o}", s.short()))
        .collect::<Vec<_>>()
        .join("; ")
}

// Not `#[from]`: the message already holds the cause, and a source would
// repeat it in error chains.
impl From<EndpointError> for ClientError {
    fn from(e: EndpointError) -> Self {
        ClientError::Connect(e)
    }
}

impl ClientError {
    /// True if the same operation may succeed when tried again later: a
    /// timeout, a missing route, a link that went down, or a server error
    /// the server marks as retryable.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Timeout { .. } | ClientError::NoRoute(_) | ClientError::LinkDown(_) => {
                true
            }
            ClientError::Server { code, .. } => code.is_retryable(),
            ClientError::Connect(e) => e.is_transient(),
            ClientError::Quorum { transient, .. } => *transient,
            _ => false,
        }
    }

    /// True if a peer sent data that does not verify (a record, proof or
    /// metadata that is not what the capsule's writer and owner signed).
    pub fn is_verification(&self) -> bool {
        matches!(
            self,
            ClientError::Verification(_) | ClientError::MetadataMismatch { .. }
        )
    }

    pub(crate) fn protocol(reason: impl Into<String>) -> Self {
        ClientError::Protocol {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        ClientError::InvalidInput {
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_proto::control::NakReason;

    #[test]
    fn transient_errors_are_told_apart() {
        let nak = Nak {
            unreachable: Name::from_bytes([1; 32]),
            reason: NakReason::NoRoute,
            seq: 7,
            to: Name::ZERO,
            from: Name::ZERO,
        };
        assert!(ClientError::NoRoute(nak).is_transient());
        assert!(
            ClientError::Timeout {
                what: "read",
                after: Duration::from_secs(1)
            }
            .is_transient()
        );
        assert!(
            ClientError::Server {
                code: ErrorCode::RateLimited,
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !ClientError::Server {
                code: ErrorCode::Fork,
                message: String::new()
            }
            .is_transient()
        );
        let v = ClientError::Verification(ProofError::BadSignature);
        assert!(!v.is_transient());
        assert!(v.is_verification());
        assert!(!ClientError::Closed.is_verification());
    }

    #[test]
    fn messages_name_the_problem() {
        let e = ClientError::Server {
            code: ErrorCode::NotHosted,
            message: "this server does not host it".into(),
        };
        assert_eq!(
            e.to_string(),
            "server error NotHosted: this server does not host it"
        );
        let e = ClientError::Verification(ProofError::BadSignature);
        assert_eq!(
            e.to_string(),
            "verification failed: bad heartbeat signature"
        );
    }
}
