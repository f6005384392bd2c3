//! The Global Data Plane wire format.
//!
//! A GDP router forwards PDUs by flat destination name. A PDU is a fixed
//! header (version, type, flags, TTL, destination, source, sequence id,
//! payload length) followed by an opaque payload ([`pdu`]). On a QUIC link,
//! PDUs travel back to back on streams or one per datagram ([`frame`]).
//! Routers act on control payloads ([`control`]: attach, advertise,
//! withdraw, no-route, subscription control); capsule servers and clients
//! exchange capsule messages ([`capsule`]) that carry hash-chained
//! [`record`]s, writer heartbeats and [`proof`]s of membership; a
//! subscriber puts the records it gets in order with a [`follow::Follower`].
//! The
//! endpoint side of attach is a sans-IO state machine ([`attach`]) that
//! both the QUIC endpoint and the router's simulation drive.
//!
//! This crate does no I/O and reads no clock. Every decoder reads from `bytes::Bytes` with
//! bounds checks, rejects trailing bytes and enforces named size limits.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub use gdp_certs::codec;
pub use gdp_certs::codec::{Decode, DecodeError, Encode};
pub use pdu::{Flags, Pdu, PduHeader, PduType};

pub mod attach;
pub mod capsule;
pub mod chain;
pub mod control;
pub mod follow;
pub mod fork;
pub mod frame;
pub mod link;
pub mod pdu;
pub mod proof;
pub mod record;
