//! The writer of a capsule: builds records, closes batches with one
//! heartbeat, and keeps many batches in flight.

use std::collections::VecDeque;

use bytes::Bytes;
use gdp_certs::{SecretKey, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::chain::Appender;
use gdp_proto::pdu::MAX_PAYLOAD_LEN;
use gdp_proto::proof::HEARTBEAT_LEN;
use gdp_proto::record::{MAX_RECORD_LEN, MAX_RECORD_PAYLOAD, Record};

use crate::ClientError;
use crate::capsule::Capsule;
use crate::client::{decode_response, unexpected};
use crate::connection::Call;

/// Bytes of an `Append` request around its records: the type byte, the
/// record count and the heartbeat.
const APPEND_FRAMING: usize = 1 + 2 + HEARTBEAT_LEN;
/// The most an encoded record adds to its payload (fields and skips).
const RECORD_OVERHEAD: usize = MAX_RECORD_LEN - MAX_RECORD_PAYLOAD;

/// A batch sent and not yet acknowledged.
#[derive(Debug)]
struct InFlight {
    call: Call,
    /// Its last seqno.
    last: u64,
}

/// Appends to one capsule: builds records, closes batches with one
/// heartbeat, and keeps many batches in flight.
///
/// A writer holds the capsule's chain state ([`Appender`]), so it builds
/// each record with the right `prev` and skip pointers itself and signs only
/// the last record of each batch: on these machines a signature costs as
/// much as hashing tens of kilobytes, so one heartbeat per batch is what
/// makes appends fast.
///
/// # Pipelining
///
/// [`Writer::submit`] sends batches without waiting for their
/// acknowledgements, up to [`ClientOptions::max_in_flight`] at a time, and
/// waits for the oldest only when that many are out. The server checks each
/// batch against its optimistic tail, so a pipelined writer is limited by
/// the server's group commit rather than by round trips. Acknowledgements
/// come in order ([`Writer::flush`] waits for all of them).
///
/// If a batch fails, the batches sent after it fail too (they chain on it).
/// The writer then forgets what it had in flight and, before its next
/// append, rebuilds its chain state from the server's verified tail
/// ([`Writer::resync`]), so nothing it appends later can fork the capsule.
///
/// [`ClientOptions::max_in_flight`]: crate::ClientOptions::max_in_flight
#[derive(Debug)]
pub struct Writer {
    capsule: Capsule,
    key: SecretKey,
    appender: Appender,
    in_flight: VecDeque<InFlight>,
    acknowledged: u64,
    /// The chain state may be ahead of the server: rebuild it first.
    stale: bool,
}

impl Writer {
    pub(crate) fn new(capsule: Capsule, key: SecretKey, appender: Appender) -> Self {
        let acknowledged = appender.state().tail_seqno();
        Writer {
            capsule,
            key,
            appender,
            in_flight: VecDeque::new(),
            acknowledged,
            stale: false,
        }
    }

    /// The capsule.
    pub fn capsule(&self) -> &Capsule {
        &self.capsule
    }

    /// The seqno the next record will get.
    pub fn next_seqno(&self) -> u64 {
        self.appender.state().tail_seqno().saturating_add(1)
    }

    /// The newest seqno the server has acknowledged as durable.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Batches sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Appends one record closed by its own heartbeat and waits until it
    /// (and everything submitted before it) is durable. Returns its seqno.
    pub async fn append(&mut self, payload: impl Into<Bytes>) -> Result<u64, ClientError> {
        let seqno = self.submit([payload.into()]).await?;
        self.flush().await?;
        Ok(seqno)
    }

    /// Appends `payloads` in batches (each closed by one heartbeat) and
    /// waits until all are durable. Returns the last seqno.
    pub async fn append_all<I>(&mut self, payloads: I) -> Result<u64, ClientError>
    where
        I: IntoIterator<Item = Bytes>,
    {
        let last = self.submit(payloads).await?;
        self.flush().await?;
        Ok(last)
    }

    /// Builds records for `payloads`, closes them in batches of at most
    /// [`ClientOptions::batch_records`](crate::ClientOptions::batch_records)
    /// records and one PDU, and sends each batch without waiting for its
    /// acknowledgement (only for room when
    /// [`ClientOptions::max_in_flight`](crate::ClientOptions::max_in_flight)
    /// batches are out). Returns the seqno of the last record built.
    pub async fn submit<I>(&mut self, payloads: I) -> Result<u64, ClientError>
    where
        I: IntoIterator<Item = Bytes>,
    {
        if self.stale {
            self.resync().await?;
        }
        let max_records = self.capsule.client().options().batch_records;
        let budget = MAX_PAYLOAD_LEN - APPEND_FRAMING;
        let mut batch: Vec<Record> = Vec::new();
        let mut bytes = 0usize;
        let mut any = false;
        for payload in payloads {
            any = true;
            if payload.len() > MAX_RECORD_PAYLOAD {
                self.send_batch(std::mem::take(&mut batch)).await?;
                return Err(ClientError::invalid(format!(
                    "a record payload of {} bytes is over the limit of {MAX_RECORD_PAYLOAD}",
                    payload.len()
                )));
            }
            let size = payload.len() + RECORD_OVERHEAD;
            if !batch.is_empty() && (batch.len() >= max_records || bytes + size > budget) {
                self.send_batch(std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            let record = match self.appender.append(payload, Timestamp::now()) {
                Ok(r) => r,
                Err(e) => {
                    self.send_batch(std::mem::take(&mut batch)).await?;
                    return Err(ClientError::invalid(e.to_string()));
                }
            };
            bytes += size;
            batch.push(record);
        }
        if !any {
            return Err(ClientError::invalid("nothing to append"));
        }
        self.send_batch(batch).await?;
        Ok(self.appender.state().tail_seqno())
    }

    /// Signs and sends one batch (nothing if it is empty), first waiting
    /// for the oldest batch when the window is full.
    async fn send_batch(&mut self, records: Vec<Record>) -> Result<(), ClientError> {
        let Some(last) = records.last().map(Record::seqno) else {
            return Ok(());
        };
        let Some(heartbeat) = self.appender.heartbeat() else {
            return Ok(());
        };
        while self.in_flight.len() >= self.capsule.client().options().max_in_flight {
            self.wait_oldest().await?;
        }
        let client = self.capsule.client();
        let shared = client.shared();
        let request = CapsuleRequest::Append { records, heartbeat };
        let pdu = request
            .to_pdu(self.capsule.name(), shared.name(), shared.next_id())
            .map_err(|e| {
                self.stale = true;
                ClientError::invalid(e.to_string())
            })?;
        match Call::start(shared, pdu, "append").await {
            Ok(call) => {
                self.in_flight.push_back(InFlight { call, last });
                Ok(())
            }
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }

    /// Waits for the oldest batch's acknowledgement.
    async fn wait_oldest(&mut self) -> Result<(), ClientError> {
        let Some(f) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let client = self.capsule.client().clone();
        let result = match f.call.wait(client.shared()).await {
            Ok(pdu) => match decode_response(&pdu) {
                Ok(CapsuleResponse::Appended { tail }) if tail >= f.last => Ok(()),
                Ok(CapsuleResponse::Appended { tail }) => Err(ClientError::protocol(format!(
                    "records up to {} acknowledged with tail {tail}",
                    f.last
                ))),
                Ok(other) => Err(unexpected("Append", &other)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.acknowledged = self.acknowledged.max(f.last);
                Ok(())
            }
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }

    /// Forgets every batch in flight; the next append resyncs first.
    fn abandon(&mut self) {
        let client = self.capsule.client().clone();
        for f in self.in_flight.drain(..) {
            client.shared().unregister(f.call.id());
        }
        self.stale = true;
    }

    /// Waits until every batch sent is durable. Returns the newest
    /// acknowledged seqno.
    pub async fn flush(&mut self) -> Result<u64, ClientError> {
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(self.acknowledged)
    }

    /// Forgets what is in flight and rebuilds the chain state from the
    /// server's verified tail. Returns the tail.
    pub async fn resync(&mut self) -> Result<u64, ClientError> {
        self.abandon();
        let state = self.capsule.chain_state().await?;
        let tail = state.tail_seqno();
        self.appender = Appender::new(self.key.clone(), self.capsule.metadata(), state)
            .map_err(|e| ClientError::invalid(e.to_string()))?;
        self.acknowledged = tail;
        self.stale = false;
        Ok(tail)
    }
}

impl Drop for Writer {
    /// Batches still in flight are left to the server; their answers are
    /// no longer awaited.
    fn drop(&mut self) {
        let client = self.capsule.client();
        for f in self.in_flight.drain(..) {
            client.shared().unregister(f.call.id());
        }
    }
}
