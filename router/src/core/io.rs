//! What flows into and out of the core: link identifiers and peers,
//! transmits, actions for the driver, and the errors those carry.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use gdp_certs::cert::CertError;
use gdp_certs::{Kind, Metadata, Name, Timestamp};

/// A link, as numbered by the driver (or the simulation).
///
/// The core never makes up link identifiers: every `LinkId` it uses came in
/// through [`RouterCore::link_up`](super::RouterCore::link_up). The driver must
/// not reuse an identifier while the core still knows the link (that is,
/// before it reported [`RouterCore::link_down`](super::RouterCore::link_down)).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl fmt::Debug for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link#{}", self.0)
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link#{}", self.0)
    }
}

/// Who is at the other end of a new link.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "passed once per link, by value; boxing would only add an allocation"
)]
pub enum LinkPeer {
    /// An endpoint (server or client) that has not proved its name yet: the
    /// core challenges it ([`AttachChallenge`](gdp_proto::control::AttachChallenge))
    /// and accepts nothing else from it until it answers with a valid proof.
    Endpoint,
    /// A router whose key the transport authenticated (TLS in the driver):
    /// `metadata` hashes to its name and holds the key the link proved. The
    /// core exchanges `RouterHello`s and applies its peering policy before it
    /// uses the link.
    Router {
        /// The peer router's metadata, as authenticated by the transport.
        metadata: Metadata,
    },
}

/// PDUs for one link, drained from the core by
/// [`RouterCore::poll_transmit`](super::RouterCore::poll_transmit).
///
/// Every PDU the core queued for `link` with the same reliability since the
/// last poll comes out in one batch, in order, so that the driver can write
/// them with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The link to send on.
    pub link: LinkId,
    /// Encoded PDUs, each one complete. Forwarded PDUs are the bytes that
    /// arrived, with the TTL decremented in place.
    pub pdus: Vec<Bytes>,
    /// `true` for a reliable stream, `false` for unreliable datagrams (the
    /// PDUs carry [`Flags::UNRELIABLE`](gdp_proto::Flags::UNRELIABLE)).
    pub reliable: bool,
}

/// Something the driver must do for the core, drained by
/// [`RouterCore::poll_action`](super::RouterCore::poll_action).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Look `name` up in the directory and hand every record found, as raw
    /// bytes, to [`RouterCore::lookup_result`](super::RouterCore::lookup_result).
    /// The core asks once per name while a lookup is in flight.
    Lookup(Name),
    /// Store `record` (an encoded, signed [`RouteRecord`](gdp_certs::cert::RouteRecord))
    /// in the directory under (`name`, this router), replacing this router's
    /// previous record for `name`, until `expires`.
    Publish {
        /// The name the record routes to.
        name: Name,
        /// The encoded record.
        record: Bytes,
        /// When the directory may drop it (the record's `not_after`).
        expires: Timestamp,
    },
    /// Remove this router's record for `name` from the directory.
    Unpublish {
        /// The name no longer routed here.
        name: Name,
    },
    /// Open a router link to `router` at one of `addresses`, expecting the
    /// peer to prove the name `router`. Report the outcome with
    /// [`RouterCore::link_up`](super::RouterCore::link_up) (a
    /// [`LinkPeer::Router`]) or [`RouterCore::dial_failed`](super::RouterCore::dial_failed).
    Dial {
        /// The router to reach.
        router: Name,
        /// Its metadata when the core knows it (from a verified route record).
        metadata: Option<Box<Metadata>>,
        /// Where it accepts links.
        addresses: Vec<SocketAddr>,
    },
    /// Close `link` once the PDUs already handed out for it are sent; the
    /// core has already forgotten everything it learned from it. The driver
    /// still reports [`RouterCore::link_down`](super::RouterCore::link_down)
    /// when the link is gone (the core ignores it).
    CloseLink {
        /// The link.
        link: LinkId,
        /// Why, for the peer and the logs.
        reason: CloseReason,
    },
}

/// Why the core closed a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer sent too many malformed, oversized or spoofed PDUs.
    #[error("{count} protocol violations")]
    Violations {
        /// Violations counted on the link.
        count: u32,
    },
    /// The endpoint failed to prove its name too many times.
    #[error("attach failed {failures} times")]
    AttachFailed {
        /// Failed attempts.
        failures: u32,
    },
    /// The peer router does not satisfy the peering policy.
    #[error("peering refused: {0}")]
    Peering(#[from] PeeringError),
    /// The link did not prove a name (attach, or a router hello that
    /// passed) within `attach_timeout`.
    #[error("no attach within the deadline")]
    AttachTimeout,
    /// `max_unproven_links` links were unproven already.
    #[error("too many unproven links (limit {limit})")]
    TooManyUnproven {
        /// The limit.
        limit: usize,
    },
    /// The proven name already holds `max_links_per_peer` links.
    #[error("{peer} already holds {limit} links")]
    TooManyLinksPerPeer {
        /// The endpoint or router name.
        peer: Name,
        /// The limit.
        limit: usize,
    },
    /// The router is shutting down.
    #[error("router shutting down")]
    Shutdown,
}

/// Why a router link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeeringError {
    /// The transport authenticated a principal that is not a router.
    #[error("peer is a {kind}, not a router")]
    NotARouter {
        /// The kind in its metadata.
        kind: Kind,
    },
    /// The hello names another router than the one the link authenticated.
    #[error("hello from {found} on a link authenticated as {expected}")]
    NameMismatch {
        /// The name the transport authenticated.
        expected: Name,
        /// The name in the hello.
        found: Name,
    },
    /// The policy requires a trust-domain certificate and the hello has none.
    #[error("no domain certificate, and the peering policy requires one")]
    NoDomainCert,
    /// The hello's domain certificate does not check out against the trusted
    /// domain keys.
    #[error("domain certificate: {0}")]
    DomainCert(CertError),
    /// The peer is not a trusted peer, and the policy
    /// ([`PeeringPolicy::TrustedOnly`](super::PeeringPolicy::TrustedOnly))
    /// accepts no other.
    #[error("not a trusted peer, and the peering policy accepts only those")]
    NotTrusted,
    /// The peer is not trusted, and no verified route record in the
    /// directory names it (its own record is missing, invalid or expired).
    #[error("no verified route record vouches for this router")]
    NotVouched,
}

/// Why a directory lookup produced no records; the driver maps its backend
/// errors onto these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The directory could not be reached or failed.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The directory did not answer in time.
    #[error("directory lookup timed out")]
    Timeout,
}

/// What the core knows about one link, for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkInfo {
    /// What is at the other end.
    pub role: LinkRole,
    /// The peer's proven name: the attached endpoint's or the peer router's
    /// (`None` while an endpoint has not attached).
    pub peer: Option<Name>,
    /// Capsules the attached endpoint advertised.
    pub advertised: usize,
    /// Malformed PDUs received.
    pub malformed: u64,
    /// Oversized PDUs received.
    pub oversized: u64,
    /// PDUs with a source the endpoint did not prove.
    pub bad_source: u64,
    /// Violations so far (malformed, oversized, bad source); the link is
    /// closed when they reach the configured limit.
    pub violations: u32,
}

/// The role of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkRole {
    /// An endpoint that has not proved its name yet.
    Attaching,
    /// An attached endpoint.
    Endpoint,
    /// A router link waiting for the peer's hello.
    RouterPending,
    /// A router link in use.
    Router,
}
