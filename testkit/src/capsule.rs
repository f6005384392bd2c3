//! A capsule writer for tests and benchmarks that speak the capsule
//! protocol themselves (rather than through the SDK's `Writer`).

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Metadata, Name, SecretKey, Timestamp};
use gdp_proto::capsule::CapsuleRequest;
use gdp_proto::chain::{Appender, ChainState};
use gdp_proto::record::{Record, RecordHash};

/// How long before now a fixture AdCert becomes valid (clock skew).
const ADCERT_BACKDATE: Duration = Duration::from_secs(60);
/// How long a fixture AdCert stays valid.
const ADCERT_LIFETIME: Duration = Duration::from_secs(86_400);

/// A capsule owned and written by a fresh key, hosted by one server: the
/// `Create` request that makes it, and the `Append` requests that extend
/// its chain, each closed by one heartbeat.
///
/// By default it keeps every record it appended (for tests that compare
/// what they read with what they wrote); [`forgetful`](Self::forgetful)
/// turns that off for long benchmark runs.
pub struct Writer {
    /// The owner's (and only writer's) key.
    pub owner: SecretKey,
    /// The capsule's metadata.
    pub md: Metadata,
    /// The owner's AdCert for the hosting server, valid for a day.
    pub adcert: AdCert,
    appender: Appender,
    /// Every record appended, record `n` at index `n - 1` (empty when
    /// forgetful).
    pub records: Vec<Record>,
    keep: bool,
}

impl Writer {
    /// A new capsule labelled `label`, hosted by `server`.
    pub fn new(server: Name, label: &str) -> Writer {
        let owner = SecretKey::generate();
        let now = Timestamp::now();
        let md = Metadata::capsule(owner.public(), vec![owner.public()], label, now, vec![])
            .expect("a fixture label and one writer are within the metadata limits");
        let validity = Validity::new(
            now.saturating_sub(ADCERT_BACKDATE),
            now.saturating_add(ADCERT_LIFETIME),
        );
        let adcert = AdCert::issue(&owner, md.name(), server, validity);
        let appender = Appender::new(owner.clone(), &md, ChainState::new(md.name()))
            .expect("the owner is the capsule's writer");
        Writer {
            owner,
            md,
            adcert,
            appender,
            records: Vec::new(),
            keep: true,
        }
    }

    /// Stops keeping the records appended from now on.
    pub fn forgetful(mut self) -> Writer {
        self.keep = false;
        self
    }

    /// The capsule's name.
    pub fn capsule(&self) -> Name {
        self.md.name()
    }

    /// The request that creates the capsule on its server.
    pub fn create(&self) -> CapsuleRequest {
        CapsuleRequest::Create {
            metadata: self.md.clone(),
            adcert: self.adcert.clone(),
        }
    }

    /// The next `n` records, each with a payload naming its seqno, as one
    /// append closed by one heartbeat.
    ///
    /// # Panics
    ///
    /// When `n` is 0.
    pub fn append(&mut self, n: usize) -> CapsuleRequest {
        let first = self.tail() + 1;
        let short = self.md.name().short();
        let payloads = (first..first + n as u64)
            .map(|seqno| Bytes::from(format!("record {seqno} of {short}")))
            .collect::<Vec<_>>();
        self.append_payloads(payloads)
    }

    /// One record per payload, as one append closed by one heartbeat.
    ///
    /// # Panics
    ///
    /// When there are no payloads, or one is over the record size limit.
    pub fn append_payloads(&mut self, payloads: impl IntoIterator<Item = Bytes>) -> CapsuleRequest {
        let mut records = Vec::new();
        for payload in payloads {
            let record = self
                .appender
                .append(payload, Timestamp::now())
                .expect("a test payload is within the record limits");
            if self.keep {
                self.records.push(record.clone());
            }
            records.push(record);
        }
        let heartbeat = self
            .appender
            .heartbeat()
            .expect("an append carries at least one record");
        CapsuleRequest::Append { records, heartbeat }
    }

    /// The seqno of the last record appended (0 before the first).
    pub fn tail(&self) -> u64 {
        self.appender.state().tail_seqno()
    }

    /// Goes back to the durable `state` (from the server's proof),
    /// forgetting the records appended after it.
    pub fn rewind(&mut self, state: ChainState) {
        let tail = usize::try_from(state.tail_seqno()).expect("a test chain fits in memory");
        self.records.truncate(tail);
        self.appender = Appender::new(self.owner.clone(), &self.md, state)
            .expect("the owner is the capsule's writer");
    }

    /// The hash of record `seqno` as appended here.
    ///
    /// # Panics
    ///
    /// When that record was not appended, or not kept.
    pub fn hash_of(&self, seqno: u64) -> RecordHash {
        let index = usize::try_from(seqno - 1).expect("a test chain fits in memory");
        self.records[index].hash()
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("capsule", &self.capsule())
            .field("tail", &self.tail())
            .field("kept", &self.records.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_extend_one_verified_chain() {
        let server = Name::from_bytes([7; 32]);
        let mut w = Writer::new(server, "unit");
        let CapsuleRequest::Create { metadata, adcert } = w.create() else {
            panic!("a create request");
        };
        assert_eq!(metadata.name(), w.capsule());
        let v = adcert
            .verify(&metadata, Timestamp::now())
            .expect("the AdCert verifies now");
        assert_eq!(v.server(), server);

        let CapsuleRequest::Append { records, heartbeat } = w.append(3) else {
            panic!("an append request");
        };
        assert_eq!((records.len(), heartbeat.seqno, w.tail()), (3, 3, 3));
        w.append_payloads([Bytes::from_static(b"four")]);
        let mut chain = ChainState::new(w.capsule());
        for r in &w.records {
            chain.append(r).expect("each record continues the chain");
        }
        assert_eq!(w.hash_of(4), w.records[3].hash());
        assert_eq!(&w.records[3].payload()[..], b"four");

        w.rewind(ChainState::new(w.capsule()));
        assert_eq!((w.tail(), w.records.len()), (0, 0));
        let mut w = w.forgetful();
        w.append(2);
        assert_eq!((w.tail(), w.records.len()), (2, 0));
    }
}
