//! The durable capsule store: one redb database file in one data directory.
//!
//! The store keeps, per capsule, its metadata and AdCert, its records (a
//! row per append, keyed by its last seqno), its tail (newest seqno, newest
//! hash, newest heartbeat) and any fork evidence (see [`tables`] for the
//! layout). It is shared by cloning
//! [`Store`]: reads run on any thread in their own read transaction; writes
//! go through [`Store::commit`], which the
//! [`Committer`](crate::committer::Committer) thread calls with everything
//! waiting, so that many appends share one durable transaction.
//!
//! # Trust
//!
//! Nothing read back is trusted blindly. Every record is stored beside its
//! hash and re-hashed on read: a damaged record is
//! [`StoreError::Corrupt`] and is never returned as a record. At
//! [`Store::open`] the store runs redb's own integrity check (page checksums;
//! [`StoreOptions::check_integrity`]), then checks every capsule's tail: the
//! stored heartbeat must verify against the capsule's metadata and cover the
//! tail record, and the headers of the tail path must link up
//! ([`ChainState::from_tail`]). A capsule that fails is reported in
//! [`OpenReport::damaged`] and is not loaded. [`Store::scrub`] re-checks a
//! whole capsule, record by record.
//!
//! # Invariants kept by writes
//!
//! An append is accepted only if its records continue the stored tail
//! (next seqno, `prev` = tail hash, consecutive, heartbeat over the last), so
//! the stored chain never has a hole, even when an earlier commit failed and
//! later appends that were built on it arrive anyway.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gdp_certs::cert::{AdCert, ReplicaSet};
use gdp_certs::{Metadata, Name};
use gdp_proto::chain::{ChainError, ChainState};
use gdp_proto::proof::{Heartbeat, Proof, ProofError, VerifiedHeartbeat, verify_heartbeats};
use gdp_proto::record::{RECORD_HASH_LEN, Record, RecordHeader};
use redb::{
    Database, DatabaseError, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
};

pub mod tables;
mod write;

pub use tables::{SCHEMA_V1, SCHEMA_VERSION, Tail};
pub use write::Write;

use tables::{
    CAPSULES, CapsuleRow, FORKS, HEARTBEATS, META, RECORDS_V1, REPLICAS, RUNS, Run, RunBuilder,
    SCHEMA_KEY, TAILS, decode_entries, decode_fork, decode_row,
};

use crate::fork::ForkEvidence;

/// A capsule's row and tail row, as read at open.
type StoredRows = (CapsuleRow, Option<Tail>);

/// Name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "capsules.redb";

/// Why a store operation failed.
///
/// [`StoreError::Corrupt`], [`StoreError::CorruptRow`],
/// [`StoreError::Missing`], [`StoreError::BadTail`] and
/// [`StoreError::Integrity`] mean the data on disk is damaged
/// ([`StoreError::is_damage`]); the write rejections
/// ([`StoreError::UnknownCapsule`], [`StoreError::NotContinuing`],
/// [`StoreError::InvalidWrite`]) mean a write did not fit the stored state
/// and changed nothing; the rest are local failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A stored record does not decode, does not match its stored hash or
    /// sits under the wrong key. It is never served.
    #[error("record {seqno} of capsule {capsule} is damaged in the store")]
    Corrupt {
        /// The capsule.
        capsule: Name,
        /// The record's seqno.
        seqno: u64,
    },
    /// A metadata, tail or fork row does not decode.
    #[error("the {table} row of capsule {capsule} is damaged in the store")]
    CorruptRow {
        /// The table.
        table: &'static str,
        /// The capsule.
        capsule: Name,
    },
    /// A record that the capsule's tail implies is not in the store.
    #[error("record {seqno} of capsule {capsule} is missing from the store")]
    Missing {
        /// The capsule.
        capsule: Name,
        /// The missing seqno.
        seqno: u64,
    },
    /// The stored tail does not check: its heartbeat does not verify or does
    /// not cover the tail record, or the tail path does not link up.
    #[error("the stored tail of capsule {capsule} does not check: {source}")]
    BadTail {
        /// The capsule.
        capsule: Name,
        /// What failed.
        #[source]
        source: ChainError,
    },
    /// The database file failed redb's integrity check and could not be
    /// repaired.
    #[error("the database file failed its integrity check: {detail}")]
    Integrity {
        /// What the storage engine reported.
        detail: String,
    },
    /// Another process has the database open.
    #[error("the store {path} is already open in another process")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The store was written with another table layout.
    #[error("the store has schema version {found}; this server reads version {SCHEMA_VERSION}")]
    Schema {
        /// The version found.
        found: u64,
    },
    /// A write names a capsule the store does not hold.
    #[error("capsule {capsule} is not in the store")]
    UnknownCapsule {
        /// The capsule.
        capsule: Name,
    },
    /// An append does not continue the stored tail: its first seqno is not
    /// `tail + 1` or its `prev` is not the tail's hash.
    #[error(
        "append at seqno {seqno} does not continue the stored tail {tail} of capsule {capsule}"
    )]
    NotContinuing {
        /// The capsule.
        capsule: Name,
        /// The stored tail seqno.
        tail: u64,
        /// The append's first seqno.
        seqno: u64,
    },
    /// A write is malformed (empty append, records not consecutive,
    /// heartbeat not over the last record, names that do not match).
    #[error("invalid write for capsule {capsule}: {reason}")]
    InvalidWrite {
        /// The capsule.
        capsule: Name,
        /// What is wrong.
        reason: &'static str,
    },
    /// Creating the data directory failed.
    #[error("cannot create the data directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The storage engine failed.
    #[error("storage engine error: {0}")]
    Engine(#[source] Arc<redb::Error>),
    /// The committer has stopped; the write was not made.
    #[error("the committer has stopped")]
    Closed,
}

impl StoreError {
    /// True if the error reports damaged data on disk.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. }
                | StoreError::CorruptRow { .. }
                | StoreError::Missing { .. }
                | StoreError::BadTail { .. }
                | StoreError::Integrity { .. }
        )
    }
}

/// Wraps any redb error.
pub(crate) fn engine(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::Corrupted(detail) => StoreError::Integrity { detail },
        e => StoreError::Engine(Arc::new(e)),
    }
}

/// How to open a store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// Verify every page checksum of the database file at open (redb's
    /// integrity check). Reads the whole file, so it takes time on large
    /// stores, but a file damaged outside redb is then reported as
    /// [`StoreError::Integrity`] instead of being trusted. If only the newest
    /// commit is damaged, redb falls back to the one before it. Default: on.
    pub check_integrity: bool,
    /// Bytes of memory redb may use to cache pages. Default: 256 MiB.
    pub cache_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            check_integrity: true,
            cache_size: 256 * 1024 * 1024,
        }
    }
}

/// Whether the file passed redb's integrity check at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Integrity {
    /// The check was turned off ([`StoreOptions::check_integrity`]).
    NotChecked,
    /// Every page checksum verified.
    Verified,
}

/// A capsule as loaded from the store, its tail checked.
#[derive(Debug, Clone)]
pub struct LoadedCapsule {
    /// The capsule's metadata.
    pub metadata: Metadata,
    /// The AdCert that lets this server host it.
    pub adcert: AdCert,
    /// The chain state after the stored tail.
    pub chain: ChainState,
    /// The newest heartbeat, verified against the metadata; `None` if the
    /// capsule has no records.
    pub heartbeat: Option<VerifiedHeartbeat>,
    /// The newest replica set stored, verified against the metadata (one
    /// that does not verify is dropped with a warning).
    pub replicas: Option<ReplicaSet>,
}

/// A capsule the store could not load.
#[derive(Debug, Clone)]
pub struct Damage {
    /// The capsule.
    pub capsule: Name,
    /// What is wrong.
    pub error: StoreError,
}

/// What [`Store::open`] found.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// The result of redb's integrity check.
    pub integrity: Integrity,
    /// Every capsule whose tail checked.
    pub capsules: Vec<LoadedCapsule>,
    /// Every capsule that failed its check; none of its records should be
    /// served.
    pub damaged: Vec<Damage>,
}

/// A handle to the store. Cheap to clone; all clones share the database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store in directory `dir`, checks it, and loads
    /// every capsule's tail.
    ///
    /// Fails if the database cannot be opened at all (locked by another
    /// process, failed integrity check, another schema). Capsules that fail
    /// their own check are listed in [`OpenReport::damaged`].
    pub fn open(
        dir: impl AsRef<Path>,
        options: &StoreOptions,
    ) -> Result<(Store, OpenReport), StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            path: dir.to_path_buf(),
            source: Arc::new(e),
        })?;
        let path = dir.join(DATABASE_FILE);
        let mut builder = Database::builder();
        builder
            .set_cache_size(options.cache_size)
            .set_check_integrity_on_open(options.check_integrity);
        // The engine promises errors, not panics, for damaged files only when
        // it checks integrity; a panic is turned into the same error anyway.
        let db = match catch_unwind(AssertUnwindSafe(|| builder.create(&path))) {
            Ok(Ok(db)) => db,
            Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => return Err(StoreError::Locked { path }),
            Ok(Err(e)) => return Err(engine(e)),
            Err(_) => {
                return Err(StoreError::Integrity {
                    detail: "the storage engine failed while opening the file".into(),
                });
            }
        };
        let store = Store {
            db: Arc::new(db),
            path,
        };
        store.init_schema()?;
        let (capsules, damaged) = store.load_all()?;
        let integrity = if options.check_integrity {
            Integrity::Verified
        } else {
            Integrity::NotChecked
        };
        for d in &damaged {
            tracing::error!(capsule = %d.capsule, error = %d.error, "damaged capsule in the store");
        }
        Ok((
            store,
            OpenReport {
                integrity,
                capsules,
                damaged,
            },
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the tables and checks the schema version, converting a
    /// store of [`SCHEMA_V1`] first.
    fn init_schema(&self) -> Result<(), StoreError> {
        let found = {
            let txn = self.read()?;
            match txn.open_table(META) {
                Ok(meta) => meta.get(SCHEMA_KEY).map_err(engine)?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(engine(e)),
            }
        };
        match found {
            None | Some(SCHEMA_VERSION) => {}
            Some(SCHEMA_V1) => self.convert_v1()?,
            Some(found) => return Err(StoreError::Schema { found }),
        }
        let txn = self.db.begin_write().map_err(engine)?;
        {
            let mut meta = txn.open_table(META).map_err(engine)?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(engine)?;
            txn.open_table(CAPSULES).map_err(engine)?;
            txn.open_table(RUNS).map_err(engine)?;
            txn.open_table(TAILS).map_err(engine)?;
            txn.open_table(FORKS).map_err(engine)?;
            txn.open_table(HEARTBEATS).map_err(engine)?;
            txn.open_table(REPLICAS).map_err(engine)?;
        }
        txn.commit().map_err(engine)
    }

    /// Moves schema version 1's `records` rows into runs (see [`tables`]),
    /// at most [`CONVERT_BATCH`] records per durable transaction, then drops
    /// the old table. Each transaction moves its rows atomically, so a
    /// conversion cut short (the schema still says version 1) resumes with
    /// the rows not yet moved.
    fn convert_v1(&self) -> Result<(), StoreError> {
        let mut moved = 0u64;
        loop {
            let txn = self.db.begin_write().map_err(engine)?;
            let taken = {
                let mut old = txn.open_table(RECORDS_V1).map_err(engine)?;
                let mut runs = txn.open_table(RUNS).map_err(engine)?;
                let mut run = RunBuilder::default();
                let mut taken = 0usize;
                while taken < CONVERT_BATCH {
                    let Some((k, v)) = old.pop_first().map_err(engine)? else {
                        break;
                    };
                    let (capsule, seqno) = (Name::from_bytes(*k.value().0), k.value().1);
                    if !run.continues(&capsule, seqno) {
                        store_run(&mut runs, &mut run)?;
                    }
                    run.push(capsule, seqno, v.value());
                    taken += 1;
                }
                store_run(&mut runs, &mut run)?;
                taken
            };
            txn.commit().map_err(engine)?;
            if taken == 0 {
                break;
            }
            moved += taken as u64;
            tracing::info!(records = moved, "converting the store to record runs");
        }
        let txn = self.db.begin_write().map_err(engine)?;
        txn.delete_table(RECORDS_V1).map_err(engine)?;
        txn.open_table(META)
            .map_err(engine)?
            .insert(SCHEMA_KEY, SCHEMA_VERSION)
            .map_err(engine)?;
        txn.commit().map_err(engine)?;
        tracing::info!(
            records = moved,
            from = SCHEMA_V1,
            to = SCHEMA_VERSION,
            "store converted"
        );
        Ok(())
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(engine)
    }

    /// Names of every stored capsule.
    pub fn capsule_names(&self) -> Result<Vec<Name>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(CAPSULES).map_err(engine)?;
        table
            .iter()
            .map_err(engine)?
            .map(|e| e.map(|(k, _)| Name::from_bytes(*k.value())).map_err(engine))
            .collect()
    }

    /// Loads every capsule, checking tails (heartbeats in one batch).
    fn load_all(&self) -> Result<(Vec<LoadedCapsule>, Vec<Damage>), StoreError> {
        let txn = self.read()?;
        let capsules = txn.open_table(CAPSULES).map_err(engine)?;
        let tails = txn.open_table(TAILS).map_err(engine)?;
        let mut rows: Vec<(Name, Result<StoredRows, StoreError>)> = Vec::new();
        for entry in capsules.iter().map_err(engine)? {
            let (k, v) = entry.map_err(engine)?;
            let name = Name::from_bytes(*k.value());
            let row = decode_row::<CapsuleRow>("capsules", &name, v.value()).and_then(|row| {
                let tail = match tails.get(name.as_bytes()).map_err(engine)? {
                    Some(t) => Some(decode_row::<Tail>("tails", &name, t.value())?),
                    None => None,
                };
                Ok((row, tail))
            });
            rows.push((name, row));
        }
        let items: Vec<(&Metadata, &Heartbeat)> = rows
            .iter()
            .filter_map(|(_, r)| match r {
                Ok((row, Some(tail))) => Some((&row.metadata, &tail.heartbeat)),
                _ => None,
            })
            .collect();
        let mut verified = verify_heartbeats(&items).into_iter();
        let mut loaded = Vec::with_capacity(rows.len());
        let mut damaged = Vec::new();
        for (name, row) in rows {
            let result = row.and_then(|(row, tail)| {
                let hb = match &tail {
                    Some(_) => Some(verified.next().ok_or(StoreError::BadTail {
                        capsule: name,
                        source: ProofError::BadSignature.into(),
                    })?),
                    None => None,
                };
                self.check_capsule(&txn, name, row, tail, hb)
            });
            match result {
                Ok(c) => loaded.push(c),
                Err(error) => damaged.push(Damage {
                    capsule: name,
                    error,
                }),
            }
        }
        Ok((loaded, damaged))
    }

    /// Loads one capsule, checking its tail; `None` if it is not stored.
    pub fn load_capsule(&self, name: &Name) -> Result<Option<LoadedCapsule>, StoreError> {
        let txn = self.read()?;
        let capsules = txn.open_table(CAPSULES).map_err(engine)?;
        let Some(row) = capsules.get(name.as_bytes()).map_err(engine)? else {
            return Ok(None);
        };
        let row: CapsuleRow = decode_row("capsules", name, row.value())?;
        let tail = self.tail_in(&txn, name)?;
        let hb = tail.as_ref().map(|t| t.heartbeat.verify(&row.metadata));
        self.check_capsule(&txn, *name, row, tail, hb).map(Some)
    }

    /// Checks a capsule's tail and rebuilds its chain state.
    fn check_capsule(
        &self,
        txn: &ReadTransaction,
        name: Name,
        row: CapsuleRow,
        tail: Option<Tail>,
        heartbeat: Option<Result<VerifiedHeartbeat, ProofError>>,
    ) -> Result<LoadedCapsule, StoreError> {
        let bad_tail = |source: ChainError| StoreError::BadTail {
            capsule: name,
            source,
        };
        if row.metadata.name() != name || row.adcert.capsule() != name {
            return Err(StoreError::CorruptRow {
                table: "capsules",
                capsule: name,
            });
        }
        let (chain, heartbeat) = match (tail, heartbeat) {
            (Some(tail), Some(hb)) => {
                let hb = hb.map_err(|e| bad_tail(e.into()))?;
                let seqnos = ChainState::tail_path_seqnos(tail.seqno);
                let path = self.headers_in(txn, &name, &seqnos)?;
                if let Some(first) = path.first()
                    && first.hash() != tail.hash
                {
                    return Err(StoreError::Corrupt {
                        capsule: name,
                        seqno: tail.seqno,
                    });
                }
                if hb.seqno() != tail.seqno || hb.record_hash() != tail.hash {
                    return Err(bad_tail(
                        ProofError::NotCovered {
                            heartbeat: hb.seqno(),
                            record: tail.seqno,
                        }
                        .into(),
                    ));
                }
                let chain = ChainState::from_tail(name, &path).map_err(bad_tail)?;
                (chain, Some(hb))
            }
            _ => (ChainState::new(name), None),
        };
        let replicas = self.replicas_in(txn, &name)?.and_then(|set| {
            match set.verify(&row.metadata) {
                Ok(v) => Some(v.into_inner()),
                Err(e) => {
                    tracing::warn!(capsule = %name, error = %e, "stored replica set does not verify; ignored");
                    None
                }
            }
        });
        Ok(LoadedCapsule {
            metadata: row.metadata,
            adcert: row.adcert,
            chain,
            heartbeat,
            replicas,
        })
    }

    fn tail_in(&self, txn: &ReadTransaction, capsule: &Name) -> Result<Option<Tail>, StoreError> {
        let tails = txn.open_table(TAILS).map_err(engine)?;
        let v = tails.get(capsule.as_bytes()).map_err(engine)?;
        v.map(|v| decode_row("tails", capsule, v.value()))
            .transpose()
    }

    /// The capsule's stored tail, `None` if it has no records (or is not stored).
    pub fn tail(&self, capsule: &Name) -> Result<Option<Tail>, StoreError> {
        let txn = self.read()?;
        self.tail_in(&txn, capsule)
    }

    /// The record at `seqno`, checked against its stored hash; `None` if the
    /// store has no such record.
    pub fn record(&self, capsule: &Name, seqno: u64) -> Result<Option<Record>, StoreError> {
        let txn = self.read()?;
        let runs = txn.open_table(RUNS).map_err(engine)?;
        record_in(&runs, capsule, seqno)
    }

    fn headers_in(
        &self,
        txn: &ReadTransaction,
        capsule: &Name,
        seqnos: &[u64],
    ) -> Result<Vec<RecordHeader>, StoreError> {
        let runs = txn.open_table(RUNS).map_err(engine)?;
        seqnos
            .iter()
            .map(|&seqno| {
                record_in(&runs, capsule, seqno)?
                    .map(Record::into_header)
                    .ok_or(StoreError::Missing {
                        capsule: *capsule,
                        seqno,
                    })
            })
            .collect()
    }

    /// The headers of the records at `seqnos`, in that order, each checked
    /// against its stored hash. A missing one is [`StoreError::Missing`].
    pub fn headers(&self, capsule: &Name, seqnos: &[u64]) -> Result<Vec<RecordHeader>, StoreError> {
        let txn = self.read()?;
        self.headers_in(&txn, capsule, seqnos)
    }

    /// The proof of record `target` from `heartbeat` (which must be a
    /// heartbeat over a stored record of the same capsule), with headers
    /// read from the store.
    pub fn proof(&self, heartbeat: &Heartbeat, target: u64) -> Result<Proof, StoreError> {
        let capsule = heartbeat.capsule;
        let seqnos = Proof::path_seqnos(heartbeat.seqno, target).ok_or(StoreError::Missing {
            capsule,
            seqno: target,
        })?;
        let headers = self.headers(&capsule, &seqnos)?;
        Proof::build(heartbeat.clone(), target, |s| {
            seqnos
                .iter()
                .position(|&x| x == s)
                .and_then(|i| headers.get(i).cloned())
        })
        .map_err(|_| StoreError::Missing {
            capsule,
            seqno: target,
        })
    }

    /// Consecutive records from `from` to at most `to`, checked against their
    /// stored hashes: at most `max_count`, and no more than fit in
    /// `max_bytes` of encoding (but always the first one, if it exists).
    /// Empty if `from` is not stored. A hole before `to` is
    /// [`StoreError::Missing`].
    pub fn records(
        &self,
        capsule: &Name,
        from: u64,
        to: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(RUNS).map_err(engine)?;
        let key = capsule.as_bytes();
        let mut out: Vec<Record> = Vec::new();
        let mut bytes = 0usize;
        let mut expected = from;
        // The runs whose last seqno is `from` or later, in order: the first
        // holds `from` if it is stored.
        'runs: for entry in table.range((key, from)..=(key, u64::MAX)).map_err(engine)? {
            if expected > to || out.len() >= max_count {
                break;
            }
            let (k, v) = entry.map_err(engine)?;
            let value = v.value();
            let run = Run::parse(capsule, k.value().1, value)?;
            if run.first() > expected {
                if out.is_empty() {
                    return Ok(out);
                }
                return Err(StoreError::Missing {
                    capsule: *capsule,
                    seqno: expected,
                });
            }
            // Which of the run's records fit, by their stored lengths, then
            // all of them decoded from one copy.
            let mut taken = Vec::new();
            let mut full = false;
            for e in run.entries_from(expected) {
                if expected > to || out.len() + taken.len() >= max_count {
                    full = true;
                    break;
                }
                let (seqno, entry) = e?;
                bytes += entry.len() - RECORD_HASH_LEN;
                if bytes > max_bytes && !(out.is_empty() && taken.is_empty()) {
                    full = true;
                    break;
                }
                taken.push((seqno, entry));
                expected = expected.saturating_add(1);
            }
            out.extend(decode_entries(capsule, value, &taken)?);
            if full {
                break 'runs;
            }
        }
        Ok(out)
    }

    fn replicas_in(
        &self,
        txn: &ReadTransaction,
        capsule: &Name,
    ) -> Result<Option<ReplicaSet>, StoreError> {
        let table = txn.open_table(REPLICAS).map_err(engine)?;
        let v = table.get(capsule.as_bytes()).map_err(engine)?;
        v.map(|v| decode_row("replicas", capsule, v.value()))
            .transpose()
    }

    /// The replica set stored for `capsule` (not verified here).
    pub fn replicas(&self, capsule: &Name) -> Result<Option<ReplicaSet>, StoreError> {
        let txn = self.read()?;
        self.replicas_in(&txn, capsule)
    }

    /// The stored heartbeat with the highest seqno in `from..=to`: one that
    /// closed an append ending there, so the records up to it can be handed
    /// on as one verified piece. `None` if no append ended in that range
    /// (or it was stored before heartbeats were kept per append).
    pub fn heartbeat_closing(
        &self,
        capsule: &Name,
        from: u64,
        to: u64,
    ) -> Result<Option<Heartbeat>, StoreError> {
        if from > to {
            return Ok(None);
        }
        let txn = self.read()?;
        let table = txn.open_table(HEARTBEATS).map_err(engine)?;
        let key = capsule.as_bytes();
        let last = table
            .range((key, from)..=(key, to))
            .map_err(engine)?
            .next_back();
        match last {
            Some(entry) => {
                let (k, v) = entry.map_err(engine)?;
                let hb: Heartbeat = decode_row("heartbeats", capsule, v.value())?;
                if hb.seqno != k.value().1 || hb.capsule != *capsule {
                    return Err(StoreError::CorruptRow {
                        table: "heartbeats",
                        capsule: *capsule,
                    });
                }
                Ok(Some(hb))
            }
            None => Ok(None),
        }
    }

    /// Every fork evidence kept for `capsule`, by seqno.
    pub fn forks(&self, capsule: &Name) -> Result<Vec<ForkEvidence>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(FORKS).map_err(engine)?;
        let key = capsule.as_bytes();
        table
            .range((key, 0)..=(key, u64::MAX))
            .map_err(engine)?
            .map(|e| {
                let (k, v) = e.map_err(engine)?;
                decode_fork(capsule, k.value().1, v.value())
            })
            .collect()
    }

    /// Checks every record of `capsule`: each decodes, matches its stored
    /// hash and links to the ones before it (prev and skips), seqnos have no
    /// hole, and the last one is the stored tail. Returns the number of
    /// records checked, or the first damage found.
    pub fn scrub(&self, capsule: &Name) -> Result<u64, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(RUNS).map_err(engine)?;
        let key = capsule.as_bytes();
        let mut chain = ChainState::new(*capsule);
        for entry in table.range((key, 0)..=(key, u64::MAX)).map_err(engine)? {
            let (k, v) = entry.map_err(engine)?;
            let run = Run::parse(capsule, k.value().1, v.value())?;
            let expected = chain.tail_seqno() + 1;
            if run.first() != expected {
                return Err(StoreError::Missing {
                    capsule: *capsule,
                    seqno: expected,
                });
            }
            for record in run.records_from(expected) {
                let record = record?;
                chain.append(&record).map_err(|_| StoreError::Corrupt {
                    capsule: *capsule,
                    seqno: record.seqno(),
                })?;
            }
        }
        let tail = self.tail_in(&txn, capsule)?;
        match tail {
            Some(t) if t.seqno != chain.tail_seqno() || t.hash != chain.tail_hash() => {
                Err(StoreError::Corrupt {
                    capsule: *capsule,
                    seqno: t.seqno,
                })
            }
            None if chain.tail_seqno() != 0 => Err(StoreError::CorruptRow {
                table: "tails",
                capsule: *capsule,
            }),
            _ => Ok(chain.tail_seqno()),
        }
    }
}

/// Records of schema version 1 moved into runs per transaction while a
/// store is converted.
const CONVERT_BATCH: usize = 65_536;

/// Record `seqno` of `capsule` from `runs`, checked against its stored
/// hash; `None` if no run holds it.
fn record_in(
    runs: &ReadOnlyTable<(&'static [u8; 32], u64), &'static [u8]>,
    capsule: &Name,
    seqno: u64,
) -> Result<Option<Record>, StoreError> {
    let key = capsule.as_bytes();
    let Some(entry) = runs
        .range((key, seqno)..=(key, u64::MAX))
        .map_err(engine)?
        .next()
    else {
        return Ok(None);
    };
    let (k, v) = entry.map_err(engine)?;
    let run = Run::parse(capsule, k.value().1, v.value())?;
    if run.first() > seqno {
        return Ok(None);
    }
    run.get(seqno).map(Some)
}

/// Stores the run `run` holds, if any, and empties it.
fn store_run(
    runs: &mut redb::Table<'_, (&'static [u8; 32], u64), &'static [u8]>,
    run: &mut RunBuilder,
) -> Result<(), StoreError> {
    if let Some(((capsule, last), value)) = run.take() {
        runs.insert((capsule.as_bytes(), last), &value[..])
            .map_err(engine)?;
    }
    Ok(())
}
