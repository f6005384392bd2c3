//! The committer: the one writer of the store, committing in groups.
//!
//! # Data flow
//!
//! ```text
//!  CommitHandle::submit(write) ──► bounded queue ──► committer thread
//!        ▲                                               │ takes everything waiting
//!        │ oneshot: Ok(()) once durable, or the error    │ (up to a bound), applies it
//!        └───────────────────────────────────────────────┘ in ONE durable transaction
//! ```
//!
//! A durable redb commit costs a disk flush (about 1.9k per second on the
//! reference machine), so one commit per append would cap the server there.
//! The committer instead takes every write waiting in its queue and commits
//! them together with [`Store::commit`], then answers each write's oneshot.
//! A write is acknowledged only after the transaction holding it is durable.
//! Writes are applied in the order they were submitted, and the batches of
//! one capsule commit in order, so an append never lands before the one it
//! builds on (and if that one failed, the store rejects it: see
//! [`Store`]).
//!
//! The committer runs on its own OS thread, because a commit blocks on the
//! disk. The queue is bounded: [`CommitHandle::submit`] waits while it is
//! full, which pushes back on whoever produces appends.
//!
//! # Shutdown
//!
//! The thread ends when every [`CommitHandle`] (and the [`Committer`]) is
//! dropped, after committing everything already queued.
//! [`Committer::shutdown`] drops its own handle and waits for that.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError, Write};

/// The acknowledgement of one submitted write.
pub type Ack = oneshot::Receiver<Result<(), StoreError>>;

/// Limits of the committer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommitterConfig {
    /// Writes that may wait in the queue. Default 4096.
    pub queue: usize,
    /// Most writes in one transaction. Default 4096.
    pub max_writes: usize,
    /// Most bytes (as [`Write::size_hint`]) in one transaction; a single
    /// larger write still commits alone. Default 64 MiB.
    pub max_bytes: usize,
}

impl Default for CommitterConfig {
    fn default() -> Self {
        CommitterConfig {
            queue: 4096,
            max_writes: 4096,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

struct Job {
    write: Write,
    ack: oneshot::Sender<Result<(), StoreError>>,
}

/// Submits writes to the committer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CommitHandle {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("capsule", &self.write.capsule())
            .finish()
    }
}

impl CommitHandle {
    /// Queues `write`, waiting while the queue is full. The returned
    /// receiver resolves once the write is durable (or failed).
    pub async fn submit(&self, write: Write) -> Result<Ack, StoreError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Job { write, ack })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Like [`CommitHandle::submit`], for threads outside the async runtime.
    pub fn blocking_submit(&self, write: Write) -> Result<Ack, StoreError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .blocking_send(Job { write, ack })
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }
}

/// Counts of what the committer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Durable transactions committed (or attempted).
    pub transactions: u64,
    /// Writes applied in them.
    pub writes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    transactions: AtomicU64,
    writes: AtomicU64,
}

/// The committer thread and a handle to it.
#[derive(Debug)]
pub struct Committer {
    handle: CommitHandle,
    thread: JoinHandle<()>,
    counters: Arc<Counters>,
}

impl Committer {
    /// Starts the committer for `store`.
    pub fn spawn(store: Store, config: CommitterConfig) -> std::io::Result<Committer> {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("gdp-committer".into())
            .spawn(move || run(store, rx, config, &c))?;
        Ok(Committer {
            handle: CommitHandle { tx },
            thread,
            counters,
        })
    }

    /// A handle to submit writes.
    pub fn handle(&self) -> CommitHandle {
        self.handle.clone()
    }

    /// What the committer did so far.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting writes from this handle and waits until the thread
    /// has committed everything queued. Other handles keep the thread alive
    /// until they are dropped too, so drop them first.
    pub fn shutdown(self) {
        let Committer { handle, thread, .. } = self;
        drop(handle);
        if thread.join().is_err() {
            tracing::error!("the committer thread panicked");
        }
    }
}

fn run(store: Store, mut rx: mpsc::Receiver<Job>, config: CommitterConfig, counters: &Counters) {
    let mut jobs: Vec<Job> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.write.size_hint();
        jobs.push(first);
        while jobs.len() < config.max_writes && bytes < config.max_bytes {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.write.size_hint();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let results = store.commit(jobs.iter().map(|j| &j.write));
        let took = started.elapsed();
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        counters
            .writes
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        crate::metrics::committed(jobs.len() as u64, took);
        for (job, result) in jobs.drain(..).zip(results) {
            // The submitter may have gone away; the write is durable anyway.
            let _ = job.ack.send(result);
        }
    }
    tracing::debug!(
        transactions = counters.transactions.load(Ordering::Relaxed),
        writes = counters.writes.load(Ordering::Relaxed),
        "committer stopped"
    );
}
