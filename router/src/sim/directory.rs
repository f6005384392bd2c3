//! The simulated directory: an in-memory map of route records.
//!
//! Records are stored per (name, publishing router), as the real directory
//! stores them, and dropped from lookups once past their expiry. It is as
//! untrusted as the real one: tests write garbage, foreign and expired
//! records into it with [`SimDirectory::insert_raw`], make it keep expired
//! records ([`SimDirectory::set_honour_expiry`]) or fail outright
//! ([`SimDirectory::set_available`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};

use crate::core::LookupError;

#[derive(Debug, Clone)]
struct Stored {
    record: Bytes,
    expires: Timestamp,
}

/// The simulated directory. See the module documentation.
#[derive(Debug)]
pub struct SimDirectory {
    records: BTreeMap<Name, BTreeMap<Name, Stored>>,
    available: bool,
    honour_expiry: bool,
    lookups: u64,
    publishes: u64,
}

impl Default for SimDirectory {
    fn default() -> Self {
        SimDirectory {
            records: BTreeMap::new(),
            available: true,
            honour_expiry: true,
            lookups: 0,
            publishes: 0,
        }
    }
}

impl SimDirectory {
    /// Stores `record` for (`name`, `router`) until `expires`, replacing
    /// that router's previous record.
    pub fn publish(&mut self, name: Name, router: Name, record: Bytes, expires: Timestamp) {
        self.publishes += 1;
        self.records
            .entry(name)
            .or_default()
            .insert(router, Stored { record, expires });
    }

    /// Removes the record of `router` for `name`.
    pub fn unpublish(&mut self, name: Name, router: Name) {
        if let Some(m) = self.records.get_mut(&name) {
            m.remove(&router);
            if m.is_empty() {
                self.records.remove(&name);
            }
        }
    }

    /// Stores arbitrary bytes under (`name`, `key`): what a hostile writer
    /// could put in a real directory.
    pub fn insert_raw(&mut self, name: Name, key: Name, bytes: Bytes, expires: Timestamp) {
        self.records.entry(name).or_default().insert(
            key,
            Stored {
                record: bytes,
                expires,
            },
        );
    }

    /// The records for `name` at `now`, or the failure a down directory
    /// gives.
    pub fn lookup(&mut self, name: &Name, now: Timestamp) -> Result<Vec<Bytes>, LookupError> {
        self.lookups += 1;
        if !self.available {
            return Err(LookupError::Unavailable("simulated outage".into()));
        }
        Ok(self.records(name, now))
    }

    /// The records for `name` that a lookup at `now` returns.
    pub fn records(&self, name: &Name, now: Timestamp) -> Vec<Bytes> {
        self.records
            .get(name)
            .map(|m| {
                m.values()
                    .filter(|s| !self.honour_expiry || now <= s.expires)
                    .map(|s| s.record.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True if `router` has a live record for `name` at `now`.
    pub fn has_record(&self, name: &Name, router: &Name, now: Timestamp) -> bool {
        self.records
            .get(name)
            .and_then(|m| m.get(router))
            .is_some_and(|s| now <= s.expires)
    }

    /// Makes lookups fail (`false`) or work again.
    pub fn set_available(&mut self, available: bool) {
        self.available = available;
    }

    /// With `false`, lookups also return expired records (a directory that
    /// does not clean up).
    pub fn set_honour_expiry(&mut self, honour: bool) {
        self.honour_expiry = honour;
    }

    /// Lookups served.
    pub fn lookups(&self) -> u64 {
        self.lookups
    }

    /// Publications received.
    pub fn publishes(&self) -> u64 {
        self.publishes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_replacement() {
        let mut d = SimDirectory::default();
        let (n, r1, r2) = (
            Name::from_bytes([1; 32]),
            Name::from_bytes([2; 32]),
            Name::from_bytes([3; 32]),
        );
        d.publish(n, r1, Bytes::from_static(b"a"), Timestamp(10));
        d.publish(n, r1, Bytes::from_static(b"b"), Timestamp(20));
        d.publish(n, r2, Bytes::from_static(b"c"), Timestamp(5));
        assert_eq!(d.records(&n, Timestamp(4)).len(), 2);
        assert_eq!(d.records(&n, Timestamp(15)), vec![Bytes::from_static(b"b")]);
        d.set_honour_expiry(false);
        assert_eq!(d.records(&n, Timestamp(30)).len(), 2);
        d.unpublish(n, r1);
        d.unpublish(n, r2);
        assert!(d.records(&n, Timestamp(0)).is_empty());
        d.set_available(false);
        assert!(matches!(
            d.lookup(&n, Timestamp(0)),
            Err(LookupError::Unavailable(_))
        ));
    }
}
