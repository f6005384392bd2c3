//! Writes to the store, and committing many of them in one durable
//! transaction.

use bytes::BytesMut;
use gdp_certs::cert::{AdCert, ReplicaSet};
use gdp_certs::codec::Encode;
use gdp_certs::{Metadata, Name};
use gdp_proto::proof::VerifiedHeartbeat;
use gdp_proto::record::{Record, RecordHash};
use redb::{Durability, ReadableTable, Table};

use super::tables::{
    CAPSULES, CapsuleRow, FORKS, HEARTBEATS, REPLICAS, RUNS, TAILS, Tail, decode_row, encode_run,
    run_len,
};
use super::{Store, StoreError, engine};
use crate::fork::ForkEvidence;

/// One change to the store. [`Store::commit`] applies many at once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Write {
    /// Store a new capsule (or, for a capsule already stored with the same
    /// metadata, replace its AdCert).
    Create {
        /// The capsule's metadata.
        metadata: Metadata,
        /// The AdCert letting this server host it (already verified).
        adcert: AdCert,
    },
    /// Replace a stored capsule's AdCert (a renewal).
    SetAdCert {
        /// The capsule.
        capsule: Name,
        /// The new certificate (already verified).
        adcert: AdCert,
    },
    /// Append records that continue the stored tail, closed by a heartbeat
    /// over the last one.
    Append {
        /// The capsule.
        capsule: Name,
        /// Consecutive records, oldest first; the first continues the tail.
        records: Vec<Record>,
        /// The writer's heartbeat over the last record.
        heartbeat: VerifiedHeartbeat,
    },
    /// Keep evidence of a fork. The first evidence at a seqno is kept; later
    /// ones are ignored.
    Fork {
        /// The capsule.
        capsule: Name,
        /// The evidence.
        evidence: ForkEvidence,
    },
    /// Keep a replica set (already verified, and newer than the stored
    /// one; an older or equal version is ignored).
    SetReplicas {
        /// The capsule.
        capsule: Name,
        /// The owner-signed set.
        set: ReplicaSet,
    },
}

impl Write {
    /// The capsule the write is about.
    pub fn capsule(&self) -> Name {
        match self {
            Write::Create { metadata, .. } => metadata.name(),
            Write::SetAdCert { capsule, .. }
            | Write::Append { capsule, .. }
            | Write::Fork { capsule, .. }
            | Write::SetReplicas { capsule, .. } => *capsule,
        }
    }

    /// Roughly how many bytes the write adds, for bounding transactions.
    pub fn size_hint(&self) -> usize {
        match self {
            Write::Create { metadata, adcert } => metadata.encoded_len() + adcert.encoded_len(),
            Write::SetAdCert { adcert, .. } => adcert.encoded_len(),
            Write::Append { records, .. } => run_len(records),
            Write::Fork { evidence, .. } => evidence.encoded_len(),
            Write::SetReplicas { set, .. } => set.encoded_len(),
        }
    }
}

/// The tables a commit writes, opened once per transaction.
struct Tables<'txn> {
    capsules: Table<'txn, &'static [u8; 32], &'static [u8]>,
    records: Table<'txn, (&'static [u8; 32], u64), &'static [u8]>,
    tails: Table<'txn, &'static [u8; 32], &'static [u8]>,
    forks: Table<'txn, (&'static [u8; 32], u64), &'static [u8]>,
    heartbeats: Table<'txn, (&'static [u8; 32], u64), &'static [u8]>,
    replicas: Table<'txn, &'static [u8; 32], &'static [u8]>,
    buf: BytesMut,
}

/// Outcome of applying one write: the outer error aborts the whole
/// transaction (the engine failed); the inner one rejects this write only.
type Applied = Result<Result<(), StoreError>, StoreError>;

impl Tables<'_> {
    fn apply(&mut self, write: &Write) -> Applied {
        match write {
            Write::Create { metadata, adcert } => self.create(metadata, adcert),
            Write::SetAdCert { capsule, adcert } => self.set_adcert(capsule, adcert),
            Write::Append {
                capsule,
                records,
                heartbeat,
            } => self.append(capsule, records, heartbeat),
            Write::Fork { capsule, evidence } => self.fork(capsule, evidence),
            Write::SetReplicas { capsule, set } => self.set_replicas(capsule, set),
        }
    }

    fn set_replicas(&mut self, capsule: &Name, set: &ReplicaSet) -> Applied {
        if set.capsule() != *capsule {
            return Ok(Err(StoreError::InvalidWrite {
                capsule: *capsule,
                reason: "the replica set is for another capsule",
            }));
        }
        if self
            .capsules
            .get(capsule.as_bytes())
            .map_err(engine)?
            .is_none()
        {
            return Ok(Err(StoreError::UnknownCapsule { capsule: *capsule }));
        }
        let newer = match self.replicas.get(capsule.as_bytes()).map_err(engine)? {
            Some(v) => match decode_row::<ReplicaSet>("replicas", capsule, v.value()) {
                Ok(old) => set.version() > old.version(),
                Err(_) => true,
            },
            None => true,
        };
        if newer {
            self.buf.clear();
            set.encode(&mut self.buf);
            self.replicas
                .insert(capsule.as_bytes(), &self.buf[..])
                .map_err(engine)?;
        }
        Ok(Ok(()))
    }

    fn row(&self, capsule: &Name) -> Result<Option<Result<CapsuleRow, StoreError>>, StoreError> {
        Ok(self
            .capsules
            .get(capsule.as_bytes())
            .map_err(engine)?
            .map(|v| decode_row::<CapsuleRow>("capsules", capsule, v.value())))
    }

    fn put_row(&mut self, capsule: &Name, row: &CapsuleRow) -> Result<(), StoreError> {
        self.buf.clear();
        row.encode(&mut self.buf);
        self.capsules
            .insert(capsule.as_bytes(), &self.buf[..])
            .map_err(engine)?;
        Ok(())
    }

    fn create(&mut self, metadata: &Metadata, adcert: &AdCert) -> Applied {
        let capsule = metadata.name();
        let invalid = |reason| Ok(Err(StoreError::InvalidWrite { capsule, reason }));
        if adcert.capsule() != capsule {
            return invalid("the AdCert is for another capsule");
        }
        match self.row(&capsule)? {
            Some(Ok(row)) if row.metadata != *metadata => {
                return invalid("other metadata is stored under this name");
            }
            Some(Err(e)) => return Ok(Err(e)),
            _ => {}
        }
        let row = CapsuleRow {
            metadata: metadata.clone(),
            adcert: adcert.clone(),
        };
        self.put_row(&capsule, &row)?;
        Ok(Ok(()))
    }

    fn set_adcert(&mut self, capsule: &Name, adcert: &AdCert) -> Applied {
        if adcert.capsule() != *capsule {
            return Ok(Err(StoreError::InvalidWrite {
                capsule: *capsule,
                reason: "the AdCert is for another capsule",
            }));
        }
        let mut row = match self.row(capsule)? {
            Some(Ok(row)) => row,
            Some(Err(e)) => return Ok(Err(e)),
            None => return Ok(Err(StoreError::UnknownCapsule { capsule: *capsule })),
        };
        row.adcert = adcert.clone();
        self.put_row(capsule, &row)?;
        Ok(Ok(()))
    }

    fn append(
        &mut self,
        capsule: &Name,
        records: &[Record],
        heartbeat: &VerifiedHeartbeat,
    ) -> Applied {
        let key = capsule.as_bytes();
        let invalid = |reason| {
            Ok(Err(StoreError::InvalidWrite {
                capsule: *capsule,
                reason,
            }))
        };
        if self.capsules.get(key).map_err(engine)?.is_none() {
            return Ok(Err(StoreError::UnknownCapsule { capsule: *capsule }));
        }
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return invalid("an append without records");
        };
        if records.iter().any(|r| r.capsule() != capsule) || heartbeat.capsule() != capsule {
            return invalid("a record or the heartbeat is for another capsule");
        }
        if records
            .windows(2)
            .any(|p| p[1].seqno() != p[0].seqno().wrapping_add(1) || *p[1].prev() != p[0].hash())
        {
            return invalid("the records are not consecutive");
        }
        if heartbeat.covers(last).is_err() {
            return invalid("the heartbeat is not over the last record");
        }
        let (tail, tail_hash) = match self.tails.get(key).map_err(engine)? {
            Some(v) => match decode_row::<Tail>("tails", capsule, v.value()) {
                Ok(t) => (t.seqno, t.hash),
                Err(e) => return Ok(Err(e)),
            },
            None => (0, RecordHash::anchor(capsule)),
        };
        if first.seqno() != tail.wrapping_add(1) || *first.prev() != tail_hash {
            return Ok(Err(StoreError::NotContinuing {
                capsule: *capsule,
                tail,
                seqno: first.seqno(),
            }));
        }
        // One row for the whole append (see `tables`, Runs).
        self.buf.clear();
        encode_run(records, &mut self.buf);
        self.records
            .insert((key, last.seqno()), &self.buf[..])
            .map_err(engine)?;
        let row = Tail {
            seqno: last.seqno(),
            hash: last.hash(),
            heartbeat: heartbeat.heartbeat().clone(),
        };
        self.buf.clear();
        row.encode(&mut self.buf);
        self.tails.insert(key, &self.buf[..]).map_err(engine)?;
        self.buf.clear();
        heartbeat.heartbeat().encode(&mut self.buf);
        self.heartbeats
            .insert((key, last.seqno()), &self.buf[..])
            .map_err(engine)?;
        Ok(Ok(()))
    }

    fn fork(&mut self, capsule: &Name, evidence: &ForkEvidence) -> Applied {
        if evidence.record.capsule() != capsule {
            return Ok(Err(StoreError::InvalidWrite {
                capsule: *capsule,
                reason: "the fork evidence is for another capsule",
            }));
        }
        let key = (capsule.as_bytes(), evidence.seqno());
        if self.forks.get(key).map_err(engine)?.is_none() {
            self.buf.clear();
            evidence.encode(&mut self.buf);
            self.forks.insert(key, &self.buf[..]).map_err(engine)?;
        }
        Ok(Ok(()))
    }
}

impl Store {
    /// Applies `writes` in order in one durable transaction
    /// ([`Durability::Immediate`]: the data is on disk when this returns).
    ///
    /// Returns one result per write. A write that does not fit the stored
    /// state (see [`Write`]) is rejected and changes nothing, and the others
    /// still apply; later writes see the effect of earlier ones. If the
    /// engine fails, nothing is written and every result is that error.
    pub fn commit<'a>(
        &self,
        writes: impl IntoIterator<Item = &'a Write>,
    ) -> Vec<Result<(), StoreError>> {
        let writes: Vec<&Write> = writes.into_iter().collect();
        match self.commit_inner(&writes) {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(error = %e, writes = writes.len(), "commit failed");
                vec![Err(e); writes.len()]
            }
        }
    }

    fn commit_inner(&self, writes: &[&Write]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut txn = self.db.begin_write().map_err(engine)?;
        txn.set_durability(Durability::Immediate).map_err(engine)?;
        let mut results = Vec::with_capacity(writes.len());
        {
            let mut tables = Tables {
                capsules: txn.open_table(CAPSULES).map_err(engine)?,
                records: txn.open_table(RUNS).map_err(engine)?,
                tails: txn.open_table(TAILS).map_err(engine)?,
                forks: txn.open_table(FORKS).map_err(engine)?,
                heartbeats: txn.open_table(HEARTBEATS).map_err(engine)?,
                replicas: txn.open_table(REPLICAS).map_err(engine)?,
                buf: BytesMut::with_capacity(4096),
            };
            for w in writes {
                results.push(tables.apply(w)?);
            }
        }
        if results.iter().any(Result::is_ok) {
            txn.commit().map_err(engine)?;
        } else {
            txn.abort().map_err(engine)?;
        }
        Ok(results)
    }
}
