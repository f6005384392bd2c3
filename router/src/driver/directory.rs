//! The driver's directory calls: lookups, publications, and the audit that
//! notices and repairs this router's records when the directory lost or
//! altered them.
//!
//! Every call runs in its own task and reports back to the driver as a
//! [`Completion`], so a slow or dead directory never holds up forwarding.
//! Lookups for the core and this router's own writes (and audits) take
//! permits from two separate pools ([`DriverConfig::directory_concurrency`]
//! and [`DriverConfig::publish_concurrency`]), so a storm of lookups cannot
//! hold up this router's publications.
//!
//! Writes (publish, unpublish) to one name are serialized: while one is in
//! flight, the next waits, and a newer write replaces a waiting one, so the
//! directory ends with the core's last word for every name whatever the
//! order the backend would have run them in.
//!
//! # Audit and repair
//!
//! The worker remembers every record the core keeps published. Every
//! `audit_interval`:
//!
//! - names whose last write failed (the directory was unreachable) are
//!   written again, and only those;
//! - the router's own name is looked up: if its record is altered it is
//!   published again alone; if nothing at all is left under the name (Redis
//!   flushed or restarted empty, which loses the others too) every record
//!   is published again; either way the own record counts in
//!   [`DirectoryStats::records_repaired`];
//! - up to [`DriverConfig::audit_batch`] other names, taken round-robin,
//!   are looked up and compared with what this router published: each one
//!   whose record is missing or altered (deleted or replaced by hand) is
//!   published again, and counted in [`DirectoryStats::records_repaired`].
//!   A full pass over `n` names takes `n / audit_batch` audits.
//!
//! A name that holds [`MAX_ROUTERS_PER_NAME`](crate::directory::MAX_ROUTERS_PER_NAME)
//! other live fields refuses the publish with `NameFull` (junk written by
//! other members, which readers ignore since nothing in it verifies). The
//! worker then prunes the name: it reads every field
//! ([`Directory::fields`]), verifies each record for the name and for its
//! field's router (off the async workers), removes the ones that fail
//! ([`Directory::remove_fields`], counted in
//! [`DirectoryStats::fields_pruned`]) and, if any went, publishes again. A
//! name still full is not retried at every audit: it is backed off from
//! [`NAME_FULL_RETRY`], doubling up to [`NAME_FULL_RETRY_MAX`], pruned at
//! most once per backoff, counted in [`DirectoryStats::name_full`], and its
//! missing record never makes the audit republish anything else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{CertError, RouteRecord};
use gdp_certs::codec::Decode;
use gdp_certs::{Name, Timestamp};
use tokio::sync::{Semaphore, mpsc};

use super::DriverConfig;
use crate::directory::{Directory, DirectoryError, Lookup};

/// How long after a `NameFull` refusal a name is published again.
pub const NAME_FULL_RETRY: Duration = Duration::from_secs(60);
/// The longest that wait grows (it doubles after each refusal).
pub const NAME_FULL_RETRY_MAX: Duration = Duration::from_secs(3600);

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
    /// An audit lookup of one of this router's names finished.
    Audit {
        name: Name,
        result: Result<Lookup, DirectoryError>,
    },
    /// The pruning of a full name finished: how many fields went.
    Pruned {
        name: Name,
        result: Result<usize, DirectoryError>,
    },
    /// Every address of a dial failed.
    DialFailed { router: Name, error: String },
    /// A dial made its link (its `Up` came first).
    Dialed { router: Name },
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
    /// Audit lookups (the router's own name and the batches of others).
    pub audits: u64,
    /// Audit lookups that found the directory unreachable.
    pub audit_failures: u64,
    /// Times every record was published again (an audit found the own
    /// record missing).
    pub repairs: u64,
    /// Records published again by repairs, retries of failed writes and
    /// single-record repairs.
    pub republished: u64,
    /// Records an audit found missing or altered and published again alone.
    pub records_repaired: u64,
    /// Publications refused because the name held the maximum of other
    /// routers' fields (then pruned or backed off).
    pub name_full: u64,
    /// Fields of full names removed because their record did not verify
    /// for the name and their router.
    pub fields_pruned: u64,
    /// Prunings of full names that failed (directory unavailable).
    pub prune_failures: u64,
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

/// When a name refused as full is tried again.
#[derive(Debug, Clone, Copy)]
struct FullBackoff {
    retry_at: Timestamp,
    delay: Duration,
    /// When the name was last pruned.
    pruned_at: Option<Timestamp>,
}

/// Runs directory calls for the driver. See the module documentation.
pub(crate) struct DirectoryWorker {
    directory: Arc<dyn Directory>,
    router: Name,
    lookup_permits: Arc<Semaphore>,
    write_permits: Arc<Semaphore>,
    done: mpsc::Sender<Completion>,
    kept: HashMap<Name, Kept>,
    /// Names with a write in flight, and the write waiting behind it.
    writes: HashMap<Name, Option<Write>>,
    /// Names whose last write failed on an unavailable (or misbehaving)
    /// directory: written again at the next audit.
    failed: HashMap<Name, ()>,
    /// Names refused as full, and when to try them again.
    full: HashMap<Name, FullBackoff>,
    /// Full names being pruned.
    pruning: HashSet<Name>,
    /// The names left to audit in this pass, round-robin.
    audit_order: VecDeque<Name>,
    audit_batch: usize,
    lookups_in_flight: usize,
    audits_in_flight: usize,
    pub(crate) stats: DirectoryStats,
}

impl DirectoryWorker {
    pub(crate) fn new(
        directory: Arc<dyn Directory>,
        router: Name,
        config: &DriverConfig,
        done: mpsc::Sender<Completion>,
    ) -> Self {
        DirectoryWorker {
            directory,
            router,
            lookup_permits: Arc::new(Semaphore::new(config.directory_concurrency.max(1))),
            write_permits: Arc::new(Semaphore::new(config.publish_concurrency.max(1))),
            done,
            kept: HashMap::new(),
            writes: HashMap::new(),
            failed: HashMap::new(),
            full: HashMap::new(),
            pruning: HashSet::new(),
            audit_order: VecDeque::new(),
            audit_batch: config.audit_batch,
            lookups_in_flight: 0,
            audits_in_flight: 0,
            stats: DirectoryStats::default(),
        }
    }

    /// The backend's label.
    pub(crate) fn backend(&self) -> &'static str {
        self.directory.backend().as_str()
    }

    /// Calls in flight (lookups, writes and audits).
    pub(crate) fn in_flight(&self) -> usize {
        self.lookups_in_flight + self.writes.len() + self.audits_in_flight + self.pruning.len()
    }

    /// Writes in flight.
    pub(crate) fn writes_in_flight(&self) -> usize {
        self.writes.len()
    }

    /// Looks `name` up for the core.
    pub(crate) fn lookup(&mut self, name: Name) {
        self.lookups_in_flight += 1;
        let (directory, permits, done) = self.task_parts(&self.lookup_permits);
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
        self.full.remove(&name);
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
        let (directory, permits, done) = self.task_parts(&self.write_permits);
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

    /// A write finished: count it, remember a failure for the next audit
    /// (a full name for its backoff), start the write waiting behind it.
    pub(crate) fn write_done(
        &mut self,
        name: Name,
        unpublish: bool,
        result: &Result<(), DirectoryError>,
    ) {
        match result {
            Ok(()) => {
                self.failed.remove(&name);
                if !unpublish {
                    self.full.remove(&name);
                }
            }
            Err(DirectoryError::NameFull { .. }) => {
                self.stats.publish_failures += 1;
                self.stats.name_full += 1;
                let now = Timestamp::now();
                let delay = self.full.get(&name).map_or(NAME_FULL_RETRY, |b| {
                    b.delay.saturating_mul(2).min(NAME_FULL_RETRY_MAX)
                });
                let last_prune = self.full.get(&name).and_then(|b| b.pruned_at);
                // Pruned at most once per backoff, so junk written back as
                // fast as it is removed makes no loop.
                let prune = last_prune.is_none_or(|t| now >= t.saturating_add(delay))
                    && !self.pruning.contains(&name);
                if self.full.contains_key(&name) {
                    tracing::debug!(name = %name.short(), retry = ?delay, prune, "name still full");
                } else {
                    tracing::warn!(name = %name.short(), retry = ?delay,
                        "the directory holds the maximum of other records for this name; pruning what does not verify");
                }
                self.full.insert(
                    name,
                    FullBackoff {
                        retry_at: now.saturating_add(delay),
                        delay,
                        pruned_at: if prune { Some(now) } else { last_prune },
                    },
                );
                self.failed.remove(&name);
                if prune {
                    self.prune(name, now);
                }
            }
            Err(e) => {
                if unpublish {
                    self.stats.unpublish_failures += 1;
                } else {
                    self.stats.publish_failures += 1;
                }
                self.failed.insert(name, ());
                tracing::warn!(name = %name.short(), unpublish, error = %e,
                    "directory write failed; retried at the next audit");
            }
        }
        match self.writes.get_mut(&name).and_then(Option::take) {
            Some(next) => self.spawn_write(name, next),
            None => {
                self.writes.remove(&name);
            }
        }
    }

    /// Removes the fields of the full `name` whose record does not verify
    /// for it and for its field's router (this router's own field is kept:
    /// the next publish replaces it).
    fn prune(&mut self, name: Name, now: Timestamp) {
        self.pruning.insert(name);
        let own = self.router;
        let (directory, permits, done) = self.task_parts(&self.write_permits);
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = async {
                let fields = directory.fields(name).await?;
                // Hundreds of signature checks: off the async workers.
                let bad = tokio::task::spawn_blocking(move || {
                    fields
                        .into_iter()
                        .filter(|(router, record)| {
                            *router != own && !verifies(name, *router, record, now)
                        })
                        .map(|(router, _)| router)
                        .collect::<Vec<Name>>()
                })
                .await
                .unwrap_or_default();
                directory.remove_fields(name, bad).await
            }
            .await;
            let _ = done.send(Completion::Pruned { name, result }).await;
        });
    }

    /// The pruning of `name` finished: publish again if room was made.
    pub(crate) fn prune_done(&mut self, name: Name, result: Result<usize, DirectoryError>) {
        self.pruning.remove(&name);
        let removed = match result {
            Ok(removed) => removed,
            Err(e) => {
                self.stats.prune_failures += 1;
                tracing::debug!(name = %name.short(), error = %e, "pruning a full name failed");
                return;
            }
        };
        self.stats.fields_pruned += removed as u64;
        if removed == 0 {
            tracing::debug!(name = %name.short(), "a full name holds only valid records; backed off");
            return;
        }
        tracing::info!(name = %name.short(), removed, "pruned fields that do not verify from a full name");
        let now = Timestamp::now();
        if let Some(k) = self.kept.get(&name).filter(|k| k.expires > now) {
            let write = Write::Publish {
                record: k.record.clone(),
                expires: k.expires,
            };
            self.stats.republished += 1;
            self.write(name, write);
        }
    }

    /// The audit timer fired: write again what failed, and check the own
    /// record and a batch of the others (see the module documentation).
    pub(crate) fn audit(&mut self, now: Timestamp) {
        if self.audits_in_flight > 0 {
            return;
        }
        self.retry_failed(now);
        self.retry_full(now);
        if !self.kept.contains_key(&self.router) {
            // Not published yet, or shutting down.
            return;
        }
        self.audit_lookup(self.router);
        if self.audit_order.is_empty() {
            self.audit_order.extend(self.kept.keys().copied());
        }
        let mut checked = 0;
        while checked < self.audit_batch {
            let Some(name) = self.audit_order.pop_front() else {
                break;
            };
            if name == self.router
                || self.writes.contains_key(&name)
                || self.full.contains_key(&name)
                || self.kept.get(&name).is_none_or(|k| k.expires <= now)
            {
                continue;
            }
            self.audit_lookup(name);
            checked += 1;
        }
    }

    /// Writes again what failed on an unavailable directory.
    fn retry_failed(&mut self, now: Timestamp) {
        let names: Vec<Name> = self.failed.drain().map(|(n, ())| n).collect();
        for name in names {
            if self.writes.contains_key(&name) {
                continue;
            }
            match self.kept.get(&name) {
                Some(k) if k.expires > now => {
                    let write = Write::Publish {
                        record: k.record.clone(),
                        expires: k.expires,
                    };
                    self.stats.republished += 1;
                    self.write(name, write);
                }
                Some(_) => {}
                None => self.write(name, Write::Unpublish),
            }
        }
    }

    /// Publishes again the full names whose backoff has passed.
    fn retry_full(&mut self, now: Timestamp) {
        let due: Vec<Name> = self
            .full
            .iter()
            .filter(|(_, b)| b.retry_at <= now)
            .map(|(n, _)| *n)
            .collect();
        for name in due {
            if let Some(k) = self.kept.get(&name).filter(|k| k.expires > now) {
                let write = Write::Publish {
                    record: k.record.clone(),
                    expires: k.expires,
                };
                // Pushed past the retry while it runs; the answer sets the
                // next one.
                if let Some(b) = self.full.get_mut(&name) {
                    b.retry_at = now.saturating_add(b.delay);
                }
                self.write(name, write);
            } else {
                self.full.remove(&name);
            }
        }
    }

    fn audit_lookup(&mut self, name: Name) {
        self.audits_in_flight += 1;
        self.stats.audits += 1;
        let (directory, permits, done) = self.task_parts(&self.write_permits);
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = directory.lookup(name).await;
            let _ = done.send(Completion::Audit { name, result }).await;
        });
    }

    /// An audit lookup of `name` finished.
    pub(crate) fn audit_done(
        &mut self,
        now: Timestamp,
        name: Name,
        result: Result<Lookup, DirectoryError>,
    ) {
        self.audits_in_flight = self.audits_in_flight.saturating_sub(1);
        let lookup = match result {
            Ok(lookup) => lookup,
            Err(e) => {
                self.stats.audit_failures += 1;
                tracing::debug!(name = %name.short(), error = %e, "directory audit failed");
                return;
            }
        };
        let Some(kept) = self.kept.get(&name) else {
            // Withdrawn meanwhile.
            return;
        };
        if kept.expires <= now
            || self.writes.contains_key(&name)
            || self.full.contains_key(&name)
            || lookup.records.contains(&kept.record)
        {
            return;
        }
        // Lost or altered: published again, alone or with the others.
        self.stats.records_repaired += 1;
        if name == self.router && lookup.records.is_empty() {
            // Nothing at all under the router's own name: the directory was
            // most likely flushed or restarted empty, and lost the others
            // too. Checking them one batch per audit would leave them out
            // for minutes.
            tracing::warn!(
                "the directory lost this router's record; publishing every record again"
            );
            self.repair_all(now);
        } else {
            tracing::debug!(name = %name.short(),
                "the directory lost or altered this router's record; publishing it again");
            let write = Write::Publish {
                record: kept.record.clone(),
                expires: kept.expires,
            };
            self.stats.republished += 1;
            self.write(name, write);
        }
    }

    /// Publishes every live record again (the names backed off as full
    /// excepted).
    fn repair_all(&mut self, now: Timestamp) {
        self.stats.repairs += 1;
        let live: Vec<(Name, Kept)> = self
            .kept
            .iter()
            .filter(|(n, k)| k.expires > now && !self.full.contains_key(n))
            .map(|(n, k)| (*n, k.clone()))
            .collect();
        self.stats.republished += live.len() as u64;
        for (name, kept) in live {
            self.failed.remove(&name);
            self.write(
                name,
                Write::Publish {
                    record: kept.record,
                    expires: kept.expires,
                },
            );
        }
    }

    fn task_parts(
        &self,
        permits: &Arc<Semaphore>,
    ) -> (Arc<dyn Directory>, Arc<Semaphore>, mpsc::Sender<Completion>) {
        (self.directory.clone(), permits.clone(), self.done.clone())
    }
}

/// Whether `record` is a valid route record for `name` at `now`, signed by
/// `router` (the field it was found under).
fn verifies(name: Name, router: Name, record: &Bytes, now: Timestamp) -> bool {
    RouteRecord::decode(record.clone())
        .map_err(CertError::from)
        .and_then(|r| r.verify(&name, now))
        .is_ok_and(|v| v.router_name() == router)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::MemoryDirectory;

    fn name(b: u8) -> Name {
        Name::from_bytes([b; 32])
    }

    fn config() -> DriverConfig {
        DriverConfig {
            directory_concurrency: 4,
            publish_concurrency: 4,
            ..DriverConfig::default()
        }
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
        let mut w = DirectoryWorker::new(dir.clone(), router, &config(), tx);
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

    /// Handles every completion until none arrives for a while.
    async fn settle(w: &mut DirectoryWorker, rx: &mut mpsc::Receiver<Completion>, now: Timestamp) {
        while let Ok(Some(done)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), rx.recv()).await
        {
            match done {
                Completion::Write {
                    name,
                    unpublish,
                    result,
                } => w.write_done(name, unpublish, &result),
                Completion::Audit { name, result } => w.audit_done(now, name, result),
                Completion::Pruned { name, result } => w.prune_done(name, result),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn records(dir: &MemoryDirectory, n: Name) -> Vec<Bytes> {
        dir.lookup(n).await.expect("memory answers").records
    }

    #[tokio::test]
    async fn an_audit_that_misses_the_own_record_publishes_everything_again() {
        let dir = Arc::new(MemoryDirectory::new());
        let (tx, mut rx) = mpsc::channel(16);
        let router = name(1);
        let mut w = DirectoryWorker::new(dir.clone(), router, &config(), tx);
        let now = Timestamp::now();
        let later = now.saturating_add(std::time::Duration::from_secs(60));
        w.publish(router, Bytes::from_static(b"me"), later);
        w.publish(name(3), Bytes::from_static(b"endpoint"), later);
        settle(&mut w, &mut rx, now).await;
        // The directory forgets everything, as a restarted Redis would.
        dir.unpublish(router, router).await.expect("memory answers");
        dir.unpublish(name(3), router)
            .await
            .expect("memory answers");
        w.audit(now);
        settle(&mut w, &mut rx, now).await;
        assert_eq!(w.stats.repairs, 1);
        assert_eq!(w.stats.republished, 2);
        assert_eq!(
            records(&dir, name(3)).await,
            vec![Bytes::from_static(b"endpoint")]
        );
        // A directory with every record in place needs no repair.
        w.audit(now);
        settle(&mut w, &mut rx, now).await;
        assert_eq!(w.stats.repairs, 1);
        assert_eq!(w.stats.records_repaired, 1, "the own record, lost");
        assert_eq!(w.stats.audits, 4, "the own name and one other, twice");
    }

    /// A worker for router `name(1)` that published its own record and ten
    /// others (`name(10)..name(20)`) into a memory directory, settled.
    async fn published_ten() -> (
        Arc<MemoryDirectory>,
        DirectoryWorker,
        mpsc::Receiver<Completion>,
        Timestamp,
        Timestamp,
    ) {
        let dir = Arc::new(MemoryDirectory::new());
        let (tx, mut rx) = mpsc::channel(64);
        let router = name(1);
        let mut w = DirectoryWorker::new(dir.clone(), router, &config(), tx);
        let now = Timestamp::now();
        let later = now.saturating_add(std::time::Duration::from_secs(60));
        w.publish(router, Bytes::from_static(b"me"), later);
        for b in 10..20 {
            w.publish(name(b), Bytes::from(vec![b; 8]), later);
        }
        settle(&mut w, &mut rx, now).await;
        (dir, w, rx, now, later)
    }

    #[tokio::test]
    async fn the_own_record_altered_is_published_again_alone() {
        let (dir, mut w, mut rx, now, later) = published_ten().await;
        let router = name(1);
        let published = w.stats.publishes;
        dir.publish(router, router, Bytes::from_static(b"forged"), later)
            .await
            .expect("memory answers");
        w.audit(now);
        settle(&mut w, &mut rx, now).await;
        assert_eq!(w.stats.repairs, 0, "nothing else is published again");
        assert_eq!(w.stats.records_repaired, 1);
        assert_eq!(w.stats.publishes, published + 1);
        assert_eq!(records(&dir, router).await, vec![Bytes::from_static(b"me")]);
    }

    #[tokio::test]
    async fn an_audit_repairs_only_the_records_altered_or_deleted() {
        let (dir, mut w, mut rx, now, later) = published_ten().await;
        let router = name(1);
        let published = w.stats.publishes;
        // One record replaced by hand under this router's field, one deleted.
        dir.publish(name(12), router, Bytes::from_static(b"forged"), later)
            .await
            .expect("memory answers");
        dir.unpublish(name(15), router)
            .await
            .expect("memory answers");
        w.audit(now);
        settle(&mut w, &mut rx, now).await;
        assert_eq!(w.stats.records_repaired, 2);
        assert_eq!(w.stats.repairs, 0, "nothing else is published again");
        assert_eq!(w.stats.publishes, published + 2);
        assert_eq!(
            records(&dir, name(12)).await,
            vec![Bytes::from(vec![12u8; 8])]
        );
        assert_eq!(
            records(&dir, name(15)).await,
            vec![Bytes::from(vec![15u8; 8])]
        );
    }

    #[tokio::test]
    async fn the_audit_checks_a_bounded_batch_round_robin() {
        let dir = Arc::new(MemoryDirectory::new());
        let (tx, mut rx) = mpsc::channel(64);
        let router = name(1);
        let config = DriverConfig {
            audit_batch: 3,
            ..config()
        };
        let mut w = DirectoryWorker::new(dir.clone(), router, &config, tx);
        let now = Timestamp::now();
        let later = now.saturating_add(std::time::Duration::from_secs(60));
        w.publish(router, Bytes::from_static(b"me"), later);
        for b in 10..19 {
            w.publish(name(b), Bytes::from(vec![b; 8]), later);
        }
        settle(&mut w, &mut rx, now).await;
        for b in 10..19 {
            dir.unpublish(name(b), router)
                .await
                .expect("memory answers");
        }
        // Nine names, three per audit: each audit repairs three more.
        for pass in 1..=3u64 {
            w.audit(now);
            settle(&mut w, &mut rx, now).await;
            assert_eq!(w.stats.records_repaired, 3 * pass);
            assert_eq!(w.stats.audits, 4 * pass);
        }
        for b in 10..19 {
            assert_eq!(records(&dir, name(b)).await.len(), 1);
        }
    }

    /// Fills `name` with junk fields of as many other "routers" as a name
    /// holds.
    async fn fill_with_junk(dir: &MemoryDirectory, name: Name, expires: Timestamp) {
        for i in 0..crate::directory::MAX_ROUTERS_PER_NAME as u32 {
            let mut junk = [0xaa; 32];
            junk[..4].copy_from_slice(&i.to_be_bytes());
            dir.publish(
                name,
                Name::from_bytes(junk),
                Bytes::from_static(b"junk"),
                expires,
            )
            .await
            .expect("room for junk");
        }
    }

    #[tokio::test]
    async fn a_name_full_of_junk_is_pruned_and_published() {
        let dir = Arc::new(MemoryDirectory::new());
        let (tx, mut rx) = mpsc::channel(64);
        let router = name(1);
        let mut w = DirectoryWorker::new(dir.clone(), router, &config(), tx);
        let now = Timestamp::now();
        let later = now.saturating_add(std::time::Duration::from_secs(3600));
        fill_with_junk(&dir, name(3), later).await;
        w.publish(router, Bytes::from_static(b"me"), later);
        w.publish(name(3), Bytes::from_static(b"endpoint"), later);
        settle(&mut w, &mut rx, now).await;
        assert_eq!(w.stats.name_full, 1);
        assert_eq!(
            w.stats.fields_pruned,
            crate::directory::MAX_ROUTERS_PER_NAME as u64
        );
        assert_eq!(
            records(&dir, name(3)).await,
            vec![Bytes::from_static(b"endpoint")]
        );
        assert!(w.full.is_empty());
        assert_eq!(w.stats.repairs, 0);
    }

    /// A memory directory that does not let fields be removed.
    struct NoPruning {
        inner: MemoryDirectory,
        prunes: std::sync::atomic::AtomicUsize,
    }

    impl Directory for NoPruning {
        fn backend(&self) -> crate::directory::Backend {
            self.inner.backend()
        }
        fn publish(
            &self,
            name: Name,
            router: Name,
            record: Bytes,
            expires: Timestamp,
        ) -> crate::directory::BoxFuture<'_, Result<(), DirectoryError>> {
            self.inner.publish(name, router, record, expires)
        }
        fn unpublish(
            &self,
            name: Name,
            router: Name,
        ) -> crate::directory::BoxFuture<'_, Result<(), DirectoryError>> {
            self.inner.unpublish(name, router)
        }
        fn lookup(
            &self,
            name: Name,
        ) -> crate::directory::BoxFuture<'_, Result<Lookup, DirectoryError>> {
            self.inner.lookup(name)
        }
        fn ping(
            &self,
        ) -> crate::directory::BoxFuture<'_, Result<std::time::Duration, DirectoryError>> {
            self.inner.ping()
        }
        fn fields(
            &self,
            name: Name,
        ) -> crate::directory::BoxFuture<'_, Result<Vec<(Name, Bytes)>, DirectoryError>> {
            self.inner.fields(name)
        }
        fn remove_fields(
            &self,
            _: Name,
            _: Vec<Name>,
        ) -> crate::directory::BoxFuture<'_, Result<usize, DirectoryError>> {
            self.prunes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async { Ok(0) })
        }
    }

    #[tokio::test]
    async fn a_name_that_stays_full_is_backed_off_and_never_republishes_everything() {
        let memory = MemoryDirectory::new();
        let dir = Arc::new(NoPruning {
            inner: memory.clone(),
            prunes: Default::default(),
        });
        let (tx, mut rx) = mpsc::channel(64);
        let router = name(1);
        let mut w = DirectoryWorker::new(dir.clone(), router, &config(), tx);
        let now = Timestamp::now();
        let later = now.saturating_add(std::time::Duration::from_secs(3600));
        // Junk under the router's own name.
        fill_with_junk(&memory, router, later).await;
        w.publish(router, Bytes::from_static(b"me"), later);
        w.publish(name(3), Bytes::from_static(b"endpoint"), later);
        settle(&mut w, &mut rx, now).await;
        assert_eq!(w.stats.name_full, 1);
        assert_eq!(dir.prunes.load(std::sync::atomic::Ordering::Relaxed), 1);
        let published = w.stats.publishes;
        for _ in 0..5 {
            w.audit(now);
            settle(&mut w, &mut rx, now).await;
        }
        assert_eq!(w.stats.publishes, published, "no republish loop");
        assert_eq!(w.stats.repairs, 0);
        assert_eq!(w.stats.name_full, 1);
        // Once the backoff has passed, one more attempt, then a longer
        // wait; no second pruning within it.
        let retry = Timestamp::now().saturating_add(NAME_FULL_RETRY);
        w.audit(retry);
        settle(&mut w, &mut rx, retry).await;
        assert_eq!(w.stats.publishes, published + 1);
        assert_eq!(w.stats.name_full, 2);
        assert_eq!(w.full[&router].delay, NAME_FULL_RETRY * 2);
        assert_eq!(dir.prunes.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
