//! The directory: where routers publish route records and look them up.
//!
//! A router that can reach a name (a capsule, an endpoint attached to it, or
//! itself) publishes a signed [`RouteRecord`](gdp_certs::cert::RouteRecord)
//! for it; a router that must forward to a name it has no FIB entry for looks
//! the name up and gets every record stored for it (several routers may reach
//! one capsule through its replicas).
//!
//! The directory is **untrusted**. It stores and returns opaque bytes; the
//! router core decodes and verifies every record itself and drops bad ones.
//! A backend only bounds what it hands back: at most
//! [`MAX_RECORDS_PER_NAME`] records per lookup, each at most
//! [`MAX_ROUTE_RECORD_LEN`] bytes. Values over the bounds are skipped and
//! counted in the [`Lookup`], never an error for the whole lookup.
//!
//! # Backends
//!
//! | config string | type | use |
//! | --- | --- | --- |
//! | `memory` | [`MemoryDirectory`] | in-process; the embedded default, and tests |
//! | `redis://host:port` | [`RedisDirectory`] | one Redis server |
//! | `redis-cluster://h1:p1,h2:p2,...` | [`RedisClusterDirectory`] | a Redis Cluster, from seed nodes |
//!
//! [`DirectoryConfig`] parses these strings; [`DirectoryConfig::connect`]
//! builds the backend behind an `Arc<dyn Directory>`.
//!
//! # Redis layout (`gdp:v1`)
//!
//! One hash per name:
//!
//! ```text
//! key    gdp:v1:route:<name in its 52-character base32 text form>
//! field  the publishing router's name, 32 raw bytes
//! value  u64 big-endian expiry (microseconds since the Unix epoch)
//!        followed by the route record's bytes
//! ```
//!
//! Redis 7.0 has no per-field TTL, so each field carries its own expiry and
//! the key's TTL is kept at the latest expiry of any record ever published
//! to it: the key disappears when its last record has expired. Every
//! operation is one command or one small Lua script on one key, so it is
//! atomic, and under Redis Cluster one name is one hash slot.
//!
//! * **publish** (script): refuses a key of another type; drops stale
//!   fields of the hash (bounded scan); `HSET` the field; `PEXPIREAT` the
//!   key to the record's expiry if that is later than the key's current
//!   expiry. A record whose expiry has passed (by the Redis server's clock)
//!   is not stored, and removes the router's previous record instead.
//! * **unpublish**: `HDEL key router`.
//! * **fields** (script, for pruning a full name): scans the hash like
//!   lookup, deletes every field that can never be a router's record (a
//!   field name that is not 32 bytes, a value without the expiry prefix,
//!   expired or over the bound) and returns the rest as field/value pairs;
//!   **remove fields**: `HDEL key router...` of the fields whose record did
//!   not verify.
//! * **lookup** (script): scans the hash (`HSCAN`, at most
//!   [`MAX_FIELDS_SCANNED`] fields), skips fields whose expiry has passed by
//!   the Redis server's clock, and returns at most [`MAX_RECORDS_PER_NAME`]
//!   values no longer than the bound, with counts of what it skipped. The
//!   client checks the shape and every bound again, since the server is not
//!   trusted, and the core checks each record's own validity at its `now`.
//!
//! A name holds at most [`MAX_ROUTERS_PER_NAME`] live records; publishing a
//! new router's record to a full name fails with
//! [`DirectoryError::NameFull`] (replacing an existing router's record
//! always works). Any member can write fields, so a full name may be junk:
//! the publisher then reads the fields ([`Directory::fields`]), verifies
//! each record for the name and its field's router, and removes the ones
//! that fail ([`Directory::remove_fields`]) before publishing again.

mod cluster;
mod config;
mod memory;
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};

pub use self::cluster::RedisClusterDirectory;
pub use self::config::{
    DirectoryConfig, DirectoryConfigError, DirectoryOptions, MAX_SEED_NODES, NodeAddr, masked_url,
};
pub use self::memory::{Clock, MemoryDirectory, SWEEP_EVERY};
pub use self::redis::RedisDirectory;
pub use gdp_certs::cert::MAX_ROUTE_RECORD_LEN;

/// Most records one lookup returns.
pub const MAX_RECORDS_PER_NAME: usize = 64;

/// Most live records the directory keeps for one name, one per router.
pub const MAX_ROUTERS_PER_NAME: usize = 4 * MAX_RECORDS_PER_NAME;

/// Most hash fields a Redis lookup or publish script visits for one name.
pub const MAX_FIELDS_SCANNED: usize = 2 * MAX_ROUTERS_PER_NAME;

/// Length of the expiry that prefixes each record stored in Redis.
pub const EXPIRY_PREFIX_LEN: usize = 8;

/// A boxed, `Send` future: what the object-safe [`Directory`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store of route records, keyed by (name, publishing router).
///
/// Object-safe, so a driver can hold an `Arc<dyn Directory>`. Every method
/// takes its arguments by value; the returned future borrows only `self`.
pub trait Directory: Send + Sync + 'static {
    /// Which backend this is, for logs and metric labels.
    fn backend(&self) -> Backend;

    /// Stores `record` for (`name`, `router`), replacing that router's
    /// previous record for the name, until `expires`.
    ///
    /// Fails with [`DirectoryError::TooLarge`] for a record longer than
    /// [`MAX_ROUTE_RECORD_LEN`] and [`DirectoryError::NameFull`] when the
    /// name already holds [`MAX_ROUTERS_PER_NAME`] other live records. A
    /// record whose expiry has passed is not stored; it removes the
    /// router's previous record.
    fn publish(
        &self,
        name: Name,
        router: Name,
        record: Bytes,
        expires: Timestamp,
    ) -> BoxFuture<'_, Result<(), DirectoryError>>;

    /// Removes the record of `router` for `name`, if any.
    fn unpublish(&self, name: Name, router: Name) -> BoxFuture<'_, Result<(), DirectoryError>>;

    /// Every live record stored for `name`, within the bounds (see
    /// [`Lookup`]). A name without records gives an empty lookup.
    fn lookup(&self, name: Name) -> BoxFuture<'_, Result<Lookup, DirectoryError>>;

    /// Checks that the backend answers; returns the round-trip time.
    fn ping(&self) -> BoxFuture<'_, Result<Duration, DirectoryError>>;

    /// Every live field stored for `name`, as the publishing router and its
    /// record (at most [`MAX_FIELDS_SCANNED`] visited), for a publisher
    /// that found the name full and prunes what does not verify. What can
    /// never be a router's record (a field that is not a 32-byte name, a
    /// value without the expiry prefix, expired or over the length bound)
    /// is removed by the backend itself on the way.
    fn fields(&self, name: Name) -> BoxFuture<'_, Result<Vec<(Name, Bytes)>, DirectoryError>>;

    /// Removes the fields of `routers` for `name` (those that are there);
    /// returns how many were removed.
    fn remove_fields(
        &self,
        name: Name,
        routers: Vec<Name>,
    ) -> BoxFuture<'_, Result<usize, DirectoryError>>;
}

/// The kind of a [`Directory`] backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// [`MemoryDirectory`].
    Memory,
    /// [`RedisDirectory`].
    Redis,
    /// [`RedisClusterDirectory`].
    RedisCluster,
}

impl Backend {
    /// A short lowercase label: `memory`, `redis` or `redis-cluster`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
            Backend::RedisCluster => "redis-cluster",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of a lookup: the raw records, unverified, and what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// The stored records, at most [`MAX_RECORDS_PER_NAME`], each at most
    /// [`MAX_ROUTE_RECORD_LEN`] bytes. Unverified: the caller decodes and
    /// verifies each one.
    pub records: Vec<Bytes>,
    /// Values longer than [`MAX_ROUTE_RECORD_LEN`], skipped.
    pub oversize: usize,
    /// Values that are not records the directory wrote (too short to hold
    /// the expiry prefix), skipped.
    pub malformed: usize,
    /// Records beyond [`MAX_RECORDS_PER_NAME`] (or fields beyond
    /// [`MAX_FIELDS_SCANNED`]), left out.
    pub excess: usize,
}

impl Lookup {
    /// The number of values skipped or left out, for any reason.
    pub fn skipped(&self) -> usize {
        self.oversize + self.malformed + self.excess
    }
}

/// Why a directory operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The backend cannot be reached or did not answer in time. Transient:
    /// the same directory object recovers when the backend comes back.
    #[error("{backend} directory unavailable: {cause}")]
    Unavailable {
        /// The backend that failed.
        backend: Backend,
        /// What happened.
        #[source]
        cause: Unavailable,
    },
    /// The backend answered with something the directory never stores or
    /// never replies: a reply of the wrong shape, or a key of the wrong type.
    #[error("{backend} directory protocol violation: {detail}")]
    Protocol {
        /// The backend that answered.
        backend: Backend,
        /// What was wrong.
        detail: String,
    },
    /// The backend refused the command with an error reply (out of memory,
    /// read-only replica, cluster down, ...).
    #[error("{backend} directory refused the command: {message}")]
    Server {
        /// The backend that refused.
        backend: Backend,
        /// The server's error message.
        message: String,
    },
    /// A record to publish is longer than [`MAX_ROUTE_RECORD_LEN`].
    #[error("route record of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The record's length.
        len: usize,
        /// [`MAX_ROUTE_RECORD_LEN`].
        max: usize,
    },
    /// The name already holds [`MAX_ROUTERS_PER_NAME`] live records from
    /// other routers.
    #[error("name {name} already holds the maximum of {max} route records")]
    NameFull {
        /// The name published to.
        name: Name,
        /// [`MAX_ROUTERS_PER_NAME`].
        max: usize,
    },
    /// The directory configuration is invalid.
    #[error(transparent)]
    Config(#[from] DirectoryConfigError),
}

/// Why a backend is unavailable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// No answer within the per-call timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed (refused, reset, closed).
    #[error("connection failed: {0}")]
    Connection(String),
}

impl DirectoryError {
    /// Whether the error is transient (the backend is unavailable) rather
    /// than a problem with the request or the stored data.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DirectoryError::Unavailable { .. })
    }
}

/// The Redis key holding the records of `name`.
pub fn route_key(name: &Name) -> String {
    format!("gdp:v1:route:{name}")
}

/// Checks a record's length before publishing it.
fn check_record_len(record: &Bytes) -> Result<(), DirectoryError> {
    if record.len() > MAX_ROUTE_RECORD_LEN {
        return Err(DirectoryError::TooLarge {
            len: record.len(),
            max: MAX_ROUTE_RECORD_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_key_is_the_documented_layout() {
        let name = Name::from_bytes([0; 32]);
        let key = route_key(&name);
        assert_eq!(key, format!("gdp:v1:route:{}", "a".repeat(52)));
    }

    #[test]
    fn oversized_records_are_refused() {
        let record = Bytes::from(vec![0u8; MAX_ROUTE_RECORD_LEN + 1]);
        assert!(matches!(
            check_record_len(&record),
            Err(DirectoryError::TooLarge { len, max: MAX_ROUTE_RECORD_LEN })
                if len == MAX_ROUTE_RECORD_LEN + 1
        ));
        let record = Bytes::from(vec![0u8; MAX_ROUTE_RECORD_LEN]);
        assert!(check_record_len(&record).is_ok());
    }

    #[test]
    fn skipped_adds_every_reason() {
        let lookup = Lookup {
            records: Vec::new(),
            oversize: 1,
            malformed: 2,
            excess: 3,
        };
        assert_eq!(lookup.skipped(), 6);
    }

    #[test]
    fn directory_is_object_safe() {
        let dir: std::sync::Arc<dyn Directory> = std::sync::Arc::new(MemoryDirectory::new());
        assert_eq!(dir.backend(), Backend::Memory);
        assert_eq!(Backend::RedisCluster.to_string(), "redis-cluster");
    }
}
