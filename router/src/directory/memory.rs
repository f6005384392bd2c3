//! The in-process directory: a concurrent map, the router's embedded default.
//!
//! Records live in a [`DashMap`] from name to (router -> record, expiry).
//! Expiry is judged by a [`Clock`]: the system clock by default, or one the
//! caller supplies (virtual time in tests and simulations). Expired records
//! are never returned; they are dropped when their name is looked up or
//! published to, and by a sweep of the whole map every
//! [`SWEEP_EVERY`] publishes (or on demand with
//! [`MemoryDirectory::purge_expired`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use gdp_certs::{Name, Timestamp};

use super::{
    Backend, BoxFuture, Directory, DirectoryError, Lookup, MAX_RECORDS_PER_NAME,
    MAX_ROUTERS_PER_NAME, check_record_len,
};

/// A source of the current time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Publishes between two sweeps of the whole map for expired records.
pub const SWEEP_EVERY: u64 = 1024;

#[derive(Debug, Clone)]
struct Stored {
    record: Bytes,
    expires: Timestamp,
}

/// An in-process [`Directory`]. Cheap to clone: clones share the records.
#[derive(Clone)]
pub struct MemoryDirectory {
    names: Arc<DashMap<Name, HashMap<Name, Stored>>>,
    clock: Clock,
    publishes: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemoryDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDirectory")
            .field("names", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDirectory {
    /// An empty directory judging expiry by the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(Timestamp::now))
    }

    /// An empty directory judging expiry by `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        MemoryDirectory {
            names: Arc::new(DashMap::new()),
            clock,
            publishes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Number of names holding at least one record (expired ones included
    /// until they are purged).
    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    /// Drops every expired record, and names left without records.
    pub fn purge_expired(&self) {
        let now = (self.clock)();
        self.names.retain(|_, routers| {
            routers.retain(|_, stored| stored.expires > now);
            !routers.is_empty()
        });
    }

    /// The synchronous core of [`Directory::publish`].
    pub fn publish_now(
        &self,
        name: Name,
        router: Name,
        record: Bytes,
        expires: Timestamp,
    ) -> Result<(), DirectoryError> {
        check_record_len(&record)?;
        let now = (self.clock)();
        if self.publishes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.purge_expired();
        }
        let mut routers = self.names.entry(name).or_default();
        routers.retain(|_, stored| stored.expires > now);
        if expires <= now {
            routers.remove(&router);
        } else if !routers.contains_key(&router) && routers.len() >= MAX_ROUTERS_PER_NAME {
            return Err(DirectoryError::NameFull {
                name,
                max: MAX_ROUTERS_PER_NAME,
            });
        } else {
            routers.insert(router, Stored { record, expires });
        }
        let empty = routers.is_empty();
        drop(routers);
        if empty {
            self.names.remove_if(&name, |_, routers| routers.is_empty());
        }
        Ok(())
    }

    /// The synchronous core of [`Directory::unpublish`].
    pub fn unpublish_now(&self, name: Name, router: Name) {
        if let Some(mut routers) = self.names.get_mut(&name) {
            routers.remove(&router);
        }
        self.names.remove_if(&name, |_, routers| routers.is_empty());
    }

    /// The synchronous core of [`Directory::fields`].
    pub fn fields_now(&self, name: Name) -> Vec<(Name, Bytes)> {
        let now = (self.clock)();
        let Some(mut routers) = self.names.get_mut(&name) else {
            return Vec::new();
        };
        routers.retain(|_, stored| stored.expires > now);
        routers
            .iter()
            .take(super::MAX_FIELDS_SCANNED)
            .map(|(router, stored)| (*router, stored.record.clone()))
            .collect()
    }

    /// The synchronous core of [`Directory::remove_fields`].
    pub fn remove_fields_now(&self, name: Name, routers: &[Name]) -> usize {
        let mut removed = 0;
        if let Some(mut stored) = self.names.get_mut(&name) {
            for router in routers {
                removed += usize::from(stored.remove(router).is_some());
            }
        }
        self.names.remove_if(&name, |_, stored| stored.is_empty());
        removed
    }

    /// The synchronous core of [`Directory::lookup`].
    pub fn lookup_now(&self, name: Name) -> Lookup {
        let now = (self.clock)();
        let mut lookup = Lookup::default();
        let Some(mut routers) = self.names.get_mut(&name) else {
            return lookup;
        };
        routers.retain(|_, stored| stored.expires > now);
        for stored in routers.values() {
            if lookup.records.len() < MAX_RECORDS_PER_NAME {
                lookup.records.push(stored.record.clone());
            } else {
                lookup.excess += 1;
            }
        }
        let empty = routers.is_empty();
        drop(routers);
        if empty {
            self.names.remove_if(&name, |_, routers| routers.is_empty());
        }
        lookup
    }
}

impl Directory for MemoryDirectory {
    fn backend(&self) -> Backend {
        Backend::Memory
    }

    fn publish(
        &self,
        name: Name,
        router: Name,
        record: Bytes,
        expires: Timestamp,
    ) -> BoxFuture<'_, Result<(), DirectoryError>> {
        let result = self.publish_now(name, router, record, expires);
        Box::pin(async move { result })
    }

    fn unpublish(&self, name: Name, router: Name) -> BoxFuture<'_, Result<(), DirectoryError>> {
        self.unpublish_now(name, router);
        Box::pin(async { Ok(()) })
    }

    fn lookup(&self, name: Name) -> BoxFuture<'_, Result<Lookup, DirectoryError>> {
        let lookup = self.lookup_now(name);
        Box::pin(async move { Ok(lookup) })
    }

    fn fields(&self, name: Name) -> BoxFuture<'_, Result<Vec<(Name, Bytes)>, DirectoryError>> {
        let fields = self.fields_now(name);
        Box::pin(async move { Ok(fields) })
    }

    fn remove_fields(
        &self,
        name: Name,
        routers: Vec<Name>,
    ) -> BoxFuture<'_, Result<usize, DirectoryError>> {
        let removed = self.remove_fields_now(name, &routers);
        Box::pin(async move { Ok(removed) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, DirectoryError>> {
        let start = Instant::now();
        Box::pin(async move { Ok(start.elapsed()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual_clock() -> (Arc<AtomicU64>, Clock) {
        let t = Arc::new(AtomicU64::new(1_000_000_000));
        let t2 = t.clone();
        (t, Arc::new(move || Timestamp(t2.load(Ordering::SeqCst))))
    }

    fn n(i: u8) -> Name {
        Name::from_bytes([i; 32])
    }

    #[test]
    fn expiry_follows_the_supplied_clock() {
        let (t, clock) = manual_clock();
        let dir = MemoryDirectory::with_clock(clock);
        let now = Timestamp(t.load(Ordering::SeqCst));
        dir.publish_now(
            n(1),
            n(2),
            Bytes::from_static(b"r"),
            now.saturating_add(Duration::from_secs(10)),
        )
        .expect("publish");
        assert_eq!(dir.lookup_now(n(1)).records, vec![Bytes::from_static(b"r")]);
        t.fetch_add(10_000_000, Ordering::SeqCst);
        assert!(dir.lookup_now(n(1)).records.is_empty());
        assert_eq!(dir.name_count(), 0, "an empty name is dropped");
    }

    #[test]
    fn a_full_name_refuses_new_routers_but_accepts_replacements() {
        let (t, clock) = manual_clock();
        let dir = MemoryDirectory::with_clock(clock);
        let expires = Timestamp(t.load(Ordering::SeqCst) + 1_000_000);
        for i in 0..MAX_ROUTERS_PER_NAME {
            let mut router = [0u8; 32];
            router[..8].copy_from_slice(&(i as u64).to_be_bytes());
            dir.publish_now(n(1), Name::from_bytes(router), Bytes::new(), expires)
                .expect("room left");
        }
        let err = dir
            .publish_now(n(1), n(0xff), Bytes::new(), expires)
            .expect_err("full");
        assert!(matches!(
            err,
            DirectoryError::NameFull {
                max: MAX_ROUTERS_PER_NAME,
                ..
            }
        ));
        dir.publish_now(
            n(1),
            Name::from_bytes([0; 32]),
            Bytes::from_static(b"x"),
            expires,
        )
        .expect("replacing an existing router's record");
        let lookup = dir.lookup_now(n(1));
        assert_eq!(lookup.records.len(), MAX_RECORDS_PER_NAME);
        assert_eq!(lookup.excess, MAX_ROUTERS_PER_NAME - MAX_RECORDS_PER_NAME);
    }

    #[test]
    fn purge_drops_expired_names() {
        let (t, clock) = manual_clock();
        let dir = MemoryDirectory::with_clock(clock);
        let now = t.load(Ordering::SeqCst);
        dir.publish_now(n(1), n(9), Bytes::new(), Timestamp(now + 5))
            .expect("publish");
        dir.publish_now(n(2), n(9), Bytes::new(), Timestamp(now + 50))
            .expect("publish");
        t.store(now + 10, Ordering::SeqCst);
        dir.purge_expired();
        assert_eq!(dir.name_count(), 1);
        assert_eq!(dir.lookup_now(n(2)).records.len(), 1);
    }
}
