//! The driver's directory calls: lookups, publications, and the audit that
//! repairs a directory which lost this router's records.
//!
//! Every call runs in its own task (at most `concurrency` at once) and
//! reports back to the driver as a [`Completion`], so a slow or dead
//! directory never holds up forwarding.
//!
//! Writes (publish, unpublish) to one name are serialized: while one is in
//! flight, the next waits, and a newer write replaces a waiting one, so the
//! directory ends with the core's last word for every name whatever the
//! order the backend would have run them in.
//!
//! The worker remembers every record the core keeps published. A write that
//! fails marks the directory *dirty*; every `audit_interval` a dirty
//! directory gets every live record again, and a clean one is checked by
//! looking up this router's own name: if its record is missing (Redis
//! restarted empty, a key was deleted) every record is published again. So
//! routers recover from a directory outage without a restart and without
//! waiting for their republish timers.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};
use tokio::sync::{Semaphore, mpsc};

use crate::directory::{Directory, DirectoryError, Lookup};

/// What a spawned task reports to the driver.
#[derive(Debug)]
pub(crate) enum Completion {
    /// A lookup the core asked for finished.
    Lookup {
        name: Name,
        result: Result<Lookup, DirectoryError>,
    },
    /// A publish or unpublish finished.
    Write {
        name: Name,
        unpublish: bool,
        result: Result<(), DirectoryError>,
    },
    /// The audit lookup of the router's own name finished.
    Audit(Result<Lookup, DirectoryError>),
    /// Every address of a dial failed.
    DialFailed { router: Name, error: String },
}

/// Counters of the directory calls, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryStats {
    /// Lookups that failed (directory unavailable or misbehaving).
    pub lookup_failures: u64,
    /// Values a lookup skipped as malformed, oversized or in excess.
    pub skipped_values: u64,
    /// Publications sent to the directory.
    pub publishes: u64,
    /// Publications that failed.
    pub publish_failures: u64,
    /// Withdrawals sent to the directory.
    pub unpublishes: u64,
    /// Withdrawals that failed.
    pub unpublish_failures: u64,
    /// Audits of the router's own record.
    pub audits: u64,
    /// Audits that found the directory unreachable.
    pub audit_failures: u64,
    /// Times every record was published again (after failed writes, or an
    /// audit that found the own record missing).
    pub repairs: u64,
    /// Records published again by repairs.
    pub republished: u64,
}

/// A record the core keeps published.
#[derive(Debug, Clone)]
struct Kept {
    record: Bytes,
    expires: Timestamp,
}

/// A directory write.
#[derive(Debug, Clone)]
enum Write {
    Publish { record: Bytes, expires: Timestamp },
    Unpublish,
}

/// Runs directory calls for the driver. See the module documentation.
pub(crate) struct DirectoryWorker {
    directory: Arc<dyn Directory>,
    router: Name,
    permits: Arc<Semaphore>,
    done: mpsc::Sender<Completion>,
    kept: HashMap<Name, Kept>,
    /// Names with a write in flight, and the write waiting behind it.
    writes: HashMap<Name, Option<Write>>,
    lookups_in_flight: usize,
    dirty: bool,
    audit_in_flight: bool,
    pub(crate) stats: DirectoryStats,
}

impl DirectoryWorker {
    pub(crate) fn new(
        directory: Arc<dyn Directory>,
        router: Name,
        concurrency: usize,
        done: mpsc::Sender<Completion>,
    ) -> Self {
        DirectoryWorker {
            directory,
            router,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            done,
            kept: HashMap::new(),
            writes: HashMap::new(),
            lookups_in_flight: 0,
            dirty: false,
            audit_in_flight: false,
            stats: DirectoryStats::default(),
        }
    }

    /// The backend's label.
    pub(crate) fn backend(&self) -> &'static str {
        self.directory.backend().as_str()
    }

    /// Calls in flight (lookups and writes).
    pub(crate) fn in_flight(&self) -> usize {
        self.lookups_in_flight + self.writes.len() + usize::from(self.audit_in_flight)
    }

    /// Writes in flight.
    pub(crate) fn writes_in_flight(&self) -> usize {
        self.writes.len()
    }

    /// Looks `name` up for the core.
    pub(crate) fn lookup(&mut self, name: Name) {
        self.lookups_in_flight += 1;
        let (directory, permits, done) = self.task_parts();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = directory.lookup(name).await;
            let _ = done.send(Completion::Lookup { name, result }).await;
        });
    }

    /// A lookup finished; returns the raw records for the core, or the
    /// error.
    pub(crate) fn lookup_done(
        &mut self,
        result: Result<Lookup, DirectoryError>,
    ) -> Result<Vec<Bytes>, DirectoryError> {
        self.lookups_in_flight = self.lookups_in_flight.saturating_sub(1);
        match result {
            Ok(lookup) => {
                self.stats.skipped_values += lookup.skipped() as u64;
                Ok(lookup.records)
            }
            Err(e) => {
                self.stats.lookup_failures += 1;
                Err(e)
            }
        }
    }

    /// Publishes `record` for `name` and keeps it for repairs.
    pub(crate) fn publish(&mut self, name: Name, record: Bytes, expires: Timestamp) {
        self.kept.insert(
            name,
            Kept {
                record: record.clone(),
                expires,
            },
        );
        self.write(name, Write::Publish { record, expires });
    }

    /// Withdraws this router's record for `name`.
    pub(crate) fn unpublish(&mut self, name: Name) {
        self.kept.remove(&name);
        self.write(name, Write::Unpublish);
    }

    fn write(&mut self, name: Name, write: Write) {
        if let Some(waiting) = self.writes.get_mut(&name) {
            *waiting = Some(write);
            return;
        }
        self.writes.insert(name, None);
        self.spawn_write(name, write);
    }

    fn spawn_write(&mut self, name: Name, write: Write) {
        let router = self.router;
        let (directory, permits, done) = self.task_parts();
        match &write {
            Write::Publish { .. } => self.stats.publishes += 1,
            Write::Unpublish => self.stats.unpublishes += 1,
        }
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let (unpublish, result) = match write {
                Write::Publish { record, expires } => (
                    false,
                    directory.publish(name, router, record, expires).await,
                ),
                Write::Unpublish => (true, directory.unpublish(name, router).await),
            };
            let _ = done
                .send(Completion::Write {
                    name,
                    unpublish,
                    result,
                })
                .await;
        });
    }

    /// A write finished: count it, start the write waiting behind it.
    pub(crate) fn write_done(
        &mut self,
        name: Name,
        unpublish: bool,
        result: &Result<(), DirectoryError>,
    ) {
        if let Err(e) = result {
            self.dirty = true;
            if unpublish {
                self.stats.unpublish_failures += 1;
            } else {
                self.stats.publish_failures += 1;
            }
            tracing::warn!(name = %name.short(), unpublish, error = %e,
                "directory write failed; retried at the next audit");
        }
        match self.writes.get_mut(&name).and_then(Option::take) {
            Some(next) => self.spawn_write(name, next),
            None => {
                self.writes.remove(&name);
            }
        }
    }

    /// The audit timer fired: repair a dirty directory, or check a clean
    /// one for the router's own record.
    pub(crate) fn audit(&mut self, now: Timestamp) {
        if self.audit_in_flight {
            return;
        }
        if self.dirty {
            self.repair(now);
            return;
        }
        if !self.kept.contains_key(&self.router) {
            // Not published yet, or shutting down.
            return;
        }
        self.audit_in_flight = true;
        self.stats.audits += 1;
        let router = self.router;
        let (directory, permits, done) = self.task_parts();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = directory.lookup(router).await;
            let _ = done.send(Completion::Audit(result)).await;
        });
    }

    /// The audit lookup finished.
    pub(crate) fn audit_done(&mut self, now: Timestamp, result: Result<Lookup, DirectoryError>) {
        self.audit_in_flight = false;
        match result {
            Ok(lookup) => {
                let own = self.kept.get(&self.router).map(|k| &k.record);
                let present = own.is_none_or(|own| lookup.records.iter().any(|r| r == own));
                if !present {
                    tracing::warn!(
                        "the directory lost this router's record; publishing every record again"
                    );
                    self.repair(now);
                }
            }
            Err(e) => {
                self.stats.audit_failures += 1;
                self.dirty = true;
                tracing::debug!(error = %e, "directory audit failed");
            }
        }
    }

    /// Publishes every live record again.
    fn repair(&mut self, now: Timestamp) {
        self.dirty = false;
        self.stats.repairs += 1;
        let live: Vec<(Name, Kept)> = self
            .kept
            .iter()
            .filter(|(_, k)| k.expires > now)
            .map(|(n, k)| (*n, k.clone()))
            .collect();
        self.stats.republished += live.len() as u64;
        for (name, kept) in live {
            self.write(
                name,
                Write::Publish {
                    record: kept.record,
                    expires: kept.expires,
                },
            );
        }
    }

    fn task_parts(&self) -> (Arc<dyn Directory>, Arc<Semaphore>, mpsc::Sender<Completion>) {
        (
            self.directory.clone(),
            self.permits.clone(),
            self.done.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::MemoryDirectory;

    fn name(b: u8) -> Name {
        Name::from_bytes([b; 32])
    }

    async fn next(rx: &mut mpsc::Receiver<Completion>) -> Completion {
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("in time")
            .expect("open")
    }

    #[tokio::test]
    async fn writes_to_one_name_run_one_at_a_time_and_the_last_wins() {
        let dir = Arc::new(MemoryDirectory::new());
        let (tx, mut rx) = mpsc::channel(16);
        let router = name(1);
        let mut w = DirectoryWorker::new(dir.clone(), router, 4, tx);
        let later = Timestamp::now().saturating_add(std::time::Duration::from_secs(60));
        w.publish(name(2), Bytes::from_static(b"one"), later);
        w.publish(name(2), Bytes::from_static(b"two"), later);
        w.unpublish(name(2));
        w.publish(name(2), Bytes::from_static(b"three"), later);
        assert_eq!(w.writes_in_flight(), 1);
        // The first write, then only the last of the three waiting ones.
        for _ in 0..2 {
            match next(&mut rx).await {
                Completion::Write {
                    name: n,
                    unpublish,
                    result,
                } => {
                    assert_eq!(n, name(2));
                    assert!(!unpublish);
                    assert!(result.is_ok());
                    w.write_done(n, unpublish, &result);
                }
                other => panic!("expected a write, got {other:?}"),
            }
        }
        assert_eq!(w.writes_in_flight(), 0);
        assert_eq!(w.stats.publishes, 2);
        let found = dir.lookup(name(2)).await.expect("memory answers");
        assert_eq!(found.records, vec![Bytes::from_static(b"three")]);
    }

    #[tokio::test]
    async fn an_audit_that_misses_the_own_record_publishes_everything_again() {
        let dir = Arc::new(MemoryDirectory::new());
        let (tx, mut rx) = mpsc::channel(16);
        let router = name(1);
        let mut w = DirectoryWorker::new(dir.clone(), router, 4, tx);
        let now = Timestamp::now();
        let later = now.saturating_add(std::time::Duration::from_secs(60));
        w.publish(router, Bytes::from_static(b"me"), later);
        w.publish(name(3), Bytes::from_static(b"endpoint"), later);
        for _ in 0..2 {
            if let Completion::Write {
                name,
                unpublish,
                result,
            } = next(&mut rx).await
            {
                w.write_done(name, unpublish, &result);
            }
        }
        // The directory forgets everything, as a restarted Redis would.
        dir.unpublish(router, router).await.expect("memory answers");
        dir.unpublish(name(3), router)
            .await
            .expect("memory answers");
        w.audit(now);
        match next(&mut rx).await {
            Completion::Audit(result) => w.audit_done(now, result),
            other => panic!("expected the audit, got {other:?}"),
        }
        assert_eq!(w.stats.repairs, 1);
        assert_eq!(w.stats.republished, 2);
        for _ in 0..2 {
            if let Completion::Write {
                name,
                unpublish,
                result,
            } = next(&mut rx).await
            {
                w.write_done(name, unpublish, &result);
            }
        }
        let found = dir.lookup(name(3)).await.expect("memory answers");
        assert_eq!(found.records, vec![Bytes::from_static(b"endpoint")]);
        // A clean directory with the record in place needs no repair.
        w.audit(now);
        match next(&mut rx).await {
            Completion::Audit(result) => w.audit_done(now, result),
            other => panic!("expected the audit, got {other:?}"),
        }
        assert_eq!(w.stats.repairs, 1);
        assert_eq!(w.stats.audits, 2);
    }
}
