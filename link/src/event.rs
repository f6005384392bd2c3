//! What a transport tells its owner: links coming up, batches of PDUs,
//! malformed input, links going down.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use gdp_certs::PublicIdentity;
use gdp_proto::frame::FrameError;
use quinn::{ConnectionError, VarInt};

use super::Link;

/// Identifies one link (one QUIC connection) for the lifetime of its
/// transport. Ids are never reused, so a late event about a link that is
/// gone cannot be mistaken for one about its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub(crate) u64);

impl LinkId {
    /// The id as a number (for logs and metrics labels).
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link#{}", self.0)
    }
}

/// Which side opened a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The peer dialed this transport.
    Inbound,
    /// This transport dialed the peer.
    Outbound,
}

/// Why a link was closed, carried as the QUIC application error code of the
/// close so the peer learns it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// The owner closed the link (code 0).
    Normal,
    /// The transport is shutting down (code 1).
    Shutdown,
    /// The peer sent too many malformed or oversized PDUs (code 2).
    Malformed,
    /// The peer broke the link protocol, for example by stopping the
    /// reliable stream (code 3).
    ProtocolViolation,
    /// A code this version does not know.
    Other(u64),
}

impl CloseCode {
    /// The wire code.
    pub const fn code(self) -> u64 {
        match self {
            CloseCode::Normal => 0,
            CloseCode::Shutdown => 1,
            CloseCode::Malformed => 2,
            CloseCode::ProtocolViolation => 3,
            CloseCode::Other(c) => c,
        }
    }

    /// The close code with wire code `code`.
    pub const fn from_code(code: u64) -> Self {
        match code {
            0 => CloseCode::Normal,
            1 => CloseCode::Shutdown,
            2 => CloseCode::Malformed,
            3 => CloseCode::ProtocolViolation,
            c => CloseCode::Other(c),
        }
    }

    pub(crate) fn varint(self) -> VarInt {
        // Codes this side sends are the small named ones or ones it
        // received, which were VarInts on the wire.
        VarInt::from_u64(self.code()).unwrap_or(VarInt::MAX)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCode::Normal => f.write_str("normal"),
            CloseCode::Shutdown => f.write_str("shutdown"),
            CloseCode::Malformed => f.write_str("malformed"),
            CloseCode::ProtocolViolation => f.write_str("protocol violation"),
            CloseCode::Other(c) => write!(f, "code {c}"),
        }
    }
}

/// Why a link went down.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// This side closed it: the owner, a shutdown, or the transport itself
    /// (malformed limit, protocol violation).
    Closed {
        /// Why.
        code: CloseCode,
        /// The text sent to the peer.
        reason: String,
    },
    /// The peer closed it.
    ClosedByPeer {
        /// The peer's code.
        code: CloseCode,
        /// The peer's text (lossily decoded).
        reason: String,
    },
    /// Nothing was heard from the peer for the idle timeout.
    TimedOut,
    /// The connection failed otherwise (reset, QUIC protocol error).
    Lost(ConnectionError),
}

/// True for QUIC's crypto error range (TLS alerts).
pub(crate) fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

impl DownReason {
    /// True if the peer refused this side's TLS identity. Under TLS 1.3 a
    /// dialer finishes its side of the handshake before the listener has
    /// checked the dialer's certificate, so a listener's refusal reaches
    /// the dialer as a link that comes up and goes down at once with this
    /// reason.
    pub fn is_tls_refusal(&self) -> bool {
        let DownReason::Lost(err) = self else {
            return false;
        };
        match err {
            ConnectionError::TransportError(e) => is_crypto(e.code),
            ConnectionError::ConnectionClosed(close) => is_crypto(close.error_code),
            _ => false,
        }
    }

    pub(crate) fn from_error(err: ConnectionError, local: Option<(CloseCode, String)>) -> Self {
        match err {
            ConnectionError::LocallyClosed => {
                let (code, reason) = local.unwrap_or((CloseCode::Normal, String::new()));
                DownReason::Closed { code, reason }
            }
            ConnectionError::ApplicationClosed(close) => DownReason::ClosedByPeer {
                code: CloseCode::from_code(close.error_code.into_inner()),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            ConnectionError::TimedOut => DownReason::TimedOut,
            other => DownReason::Lost(other),
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::Closed { code, reason } => write!(f, "closed here ({code}): {reason}"),
            DownReason::ClosedByPeer { code, reason } => {
                write!(f, "closed by the peer ({code}): {reason}")
            }
            DownReason::TimedOut => f.write_str("timed out"),
            DownReason::Lost(e) => write!(f, "lost: {e}"),
        }
    }
}

/// An event from a [`Transport`](super::Transport) to its owner.
///
/// For each link the owner sees exactly one `Up`, then any number of `Pdus`
/// and `Malformed`, then exactly one `Down`, in that order.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum LinkEvent {
    /// A link completed its handshake; the peer proved its name.
    Up {
        /// The link.
        link_id: LinkId,
        /// The name and metadata the peer proved in the TLS handshake (boxed:
        /// metadata is large next to the other events).
        peer: Box<PublicIdentity>,
        /// The peer's UDP address.
        remote_addr: SocketAddr,
        /// Who dialed.
        direction: Direction,
        /// A handle to send on the link (the same as
        /// [`Transport::link`](super::Transport::link) returns).
        link: Link,
    },
    /// PDUs arrived. Each is exactly one encoded PDU whose header has been
    /// checked (version, type, flags, payload length), a zero-copy slice of
    /// what QUIC received.
    Pdus {
        /// The link.
        link_id: LinkId,
        /// The PDUs, in the order they were sent on the stream (reliable) or
        /// received (unreliable).
        pdus: Vec<Bytes>,
        /// Whether they came on the reliable stream or as datagrams.
        reliable: bool,
        /// The link's share of the owner's channel this batch holds:
        /// dropping the event (once the PDUs are handled) lets the link
        /// hand over its next batch (see
        /// [`events_per_link`](super::TransportConfig::events_per_link)).
        credit: Credit,
    },
    /// The peer sent something that is not a valid PDU. A malformed
    /// datagram is dropped; a framing error on the reliable stream leaves it
    /// out of sync, so the transport stops reading it, and the owner should
    /// close the link. A link that reaches
    /// [`malformed_limit`](super::TransportConfig::malformed_limit) is
    /// closed by the transport.
    Malformed {
        /// The link.
        link_id: LinkId,
        /// What was wrong.
        error: FrameError,
        /// Whether it came on the reliable stream (then the stream is no
        /// longer read).
        reliable: bool,
        /// Malformed PDUs from this link so far, this one included.
        total: u64,
    },
    /// The link is gone; its id will not appear again.
    Down {
        /// The link.
        link_id: LinkId,
        /// Why.
        reason: DownReason,
    },
}

/// One of a link's permits to have a batch of PDUs waiting for the owner;
/// given back once it and its clones are dropped. See
/// [`events_per_link`](super::TransportConfig::events_per_link).
#[derive(Debug, Clone)]
pub struct Credit {
    _permit: Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>,
}

impl Credit {
    /// A credit that holds nothing (for events made outside a transport,
    /// as in tests).
    pub fn none() -> Self {
        Credit { _permit: None }
    }

    pub(crate) fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Credit {
            _permit: Some(std::sync::Arc::new(permit)),
        }
    }
}

impl LinkEvent {
    /// The link the event is about.
    pub fn link_id(&self) -> LinkId {
        match self {
            LinkEvent::Up { link_id, .. }
            | LinkEvent::Pdus { link_id, .. }
            | LinkEvent::Malformed { link_id, .. }
            | LinkEvent::Down { link_id, .. } => *link_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_round_trip() {
        for code in [
            CloseCode::Normal,
            CloseCode::Shutdown,
            CloseCode::Malformed,
            CloseCode::ProtocolViolation,
            CloseCode::Other(77),
        ] {
            assert_eq!(CloseCode::from_code(code.code()), code);
            assert_eq!(code.varint().into_inner(), code.code());
        }
    }

    #[test]
    fn local_close_keeps_its_reason() {
        let r = DownReason::from_error(
            ConnectionError::LocallyClosed,
            Some((CloseCode::Shutdown, "bye".into())),
        );
        assert_eq!(
            r,
            DownReason::Closed {
                code: CloseCode::Shutdown,
                reason: "bye".into()
            }
        );
        assert_eq!(
            DownReason::from_error(ConnectionError::TimedOut, None),
            DownReason::TimedOut
        );
    }
}
