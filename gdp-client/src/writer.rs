//! The writer of a capsule: builds records, closes batches with one
//! heartbeat, and keeps many batches in flight.
//!
//! # Replicated capsules
//!
//! When the capsule handle has a [`Replication`](crate::Replication), the
//! writer sends each batch itself to every replica in the set, as an `At`
//! request addressed to the server's name. A batch is acknowledged once W
//! replicas answered `Appended` with a tail at or past its last record.
//! Sending to the replicas directly, rather than to one server that
//! forwards, costs no extra hop on the path of an append, lets the writer
//! see each replica's answer (so it knows which disks hold a batch, and
//! the quorum is counted where the records come from), and leaves the
//! servers without forwarding state to keep or lose; the price is that the
//! writer uploads each batch N times.
//!
//! A replica that fails a batch (it does not host the capsule, it times
//! out, or it missed an earlier batch and still answers `Gap` after the
//! batch was sent to it again, with a growing pause, until
//! `request_timeout`) only counts as a missing acknowledgement: it catches
//! up with the others by anti-entropy, and later batches are still sent to
//! it. The batch fails
//! only when W acknowledgements are no longer possible
//! ([`ClientError::Quorum`], naming each replica's answer). Answers that
//! come after the quorum are still read, by a task per batch that lives
//! until every replica answered or timed out, so no request is left
//! waiting in the client.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gdp_certs::codec::Encode;
use gdp_certs::{Name, SecretKey, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::Appender;
use gdp_proto::pdu::{MAX_PAYLOAD_LEN, Pdu, PduHeader, PduType};
use gdp_proto::proof::{HEARTBEAT_LEN, Heartbeat};
use gdp_proto::record::{MAX_RECORD_LEN, MAX_RECORD_PAYLOAD, Record};
use tokio::sync::mpsc;

use crate::ClientError;
use crate::capsule::Capsule;
use crate::client::{decode_response, unexpected};
use crate::connection::{Call, Shared};

/// Bytes of an `Append` request around its records: the type byte, the
/// record count and the heartbeat.
const APPEND_FRAMING: usize = 1 + 2 + HEARTBEAT_LEN;
/// Bytes an `At` adds around the request it directs: the type byte and the
/// capsule's name.
const AT_FRAMING: usize = 1 + 32;
/// The most an encoded record adds to its payload (fields and skips).
const RECORD_OVERHEAD: usize = MAX_RECORD_LEN - MAX_RECORD_PAYLOAD;

/// One replica's answer to an append.
type ReplicaAnswer = (Name, Result<CapsuleResponse, ClientError>);

/// A batch sent and not yet acknowledged.
#[derive(Debug)]
struct InFlight {
    acks: Acks,
    /// Its last seqno.
    last: u64,
    /// Its records' bytes.
    bytes: usize,
}

/// Where the acknowledgement of a batch comes from.
#[derive(Debug)]
enum Acks {
    /// The one server reached by the capsule's name.
    One(Call),
    /// Every replica: their answers as they come, from the batch's task.
    Replicas {
        /// The replicas the batch was sent to.
        servers: Vec<Name>,
        /// Acknowledgements needed (W).
        needed: usize,
        answers: mpsc::Receiver<ReplicaAnswer>,
    },
}

/// The count of a replicated batch's acknowledgements.
#[derive(Debug)]
struct AckTally {
    needed: usize,
    last: u64,
    /// Replicas that have not answered yet.
    waiting: Vec<Name>,
    acks: usize,
    /// Each answer so far, for the error.
    outcomes: Vec<(Name, String)>,
    /// Every failure so far may pass.
    transient: bool,
}

/// What a replicated batch's answers add up to.
#[derive(Debug)]
enum Verdict {
    /// W replicas acknowledged it.
    Acknowledged,
    /// W acknowledgements are no longer possible.
    Failed(ClientError),
    /// More answers are needed.
    Waiting,
}

impl AckTally {
    fn new(servers: Vec<Name>, needed: usize, last: u64) -> Self {
        AckTally {
            needed,
            last,
            waiting: servers,
            acks: 0,
            outcomes: Vec::new(),
            transient: true,
        }
    }

    /// Counts `server`'s answer (one per replica: later ones are ignored).
    fn on_answer(&mut self, server: Name, answer: Result<CapsuleResponse, ClientError>) -> Verdict {
        let Some(i) = self.waiting.iter().position(|s| *s == server) else {
            return self.verdict();
        };
        self.waiting.swap_remove(i);
        let outcome = match answer {
            Ok(CapsuleResponse::Appended { tail }) if tail >= self.last => {
                self.acks += 1;
                format!("acknowledged (tail {tail})")
            }
            Ok(CapsuleResponse::Appended { tail }) => {
                self.transient = false;
                format!("records up to {} acknowledged with tail {tail}", self.last)
            }
            Ok(other) => {
                self.transient = false;
                unexpected("Append", &other).to_string()
            }
            Err(e) => {
                self.transient &= e.is_transient();
                e.to_string()
            }
        };
        self.outcomes.push((server, outcome));
        self.verdict()
    }

    /// The verdict on the answers so far; once every replica's task is
    /// gone, the ones that did not answer count as failed.
    fn verdict(&mut self) -> Verdict {
        if self.acks >= self.needed {
            return Verdict::Acknowledged;
        }
        if self.acks + self.waiting.len() >= self.needed {
            return Verdict::Waiting;
        }
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.extend(
            self.waiting
                .iter()
                .map(|s| (*s, "no answer yet".to_owned())),
        );
        Verdict::Failed(ClientError::Quorum {
            what: "append",
            needed: self.needed,
            got: self.acks,
            outcomes,
            transient: self.transient,
        })
    }

    /// Every replica still waited for is gone without an answer.
    fn on_answers_lost(&mut self) -> Verdict {
        self.transient = false;
        for s in std::mem::take(&mut self.waiting) {
            self.outcomes.push((s, "its answer was lost".to_owned()));
        }
        self.verdict()
    }
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
/// acknowledgements, up to [`ClientOptions::max_in_flight`] at a time and
/// [`ClientOptions::max_in_flight_bytes`] of records, and waits for the
/// oldest only when that many are out (the byte bound keeps a writer that
/// is ahead of its server from filling the router's queue toward it, where
/// batches would be dropped and sent again later). The server checks each
/// batch against its optimistic tail, so a pipelined writer is limited by
/// the server's group commit rather than by round trips. Acknowledgements
/// come in order ([`Writer::flush`] waits for all of them).
///
/// With a replication ([`Capsule::with_replication`]), the writer sends
/// each batch itself to every replica (an `At` request to each server:
/// no extra hop, each replica's answer seen, no forwarding state in the
/// servers, at the cost of uploading each batch N times), and a batch is
/// acknowledged once W replicas answered `Appended` at or past its last
/// record. A replica that fails a batch (`Gap`, `NotHosted`, a timeout)
/// only counts as a missing acknowledgement; the batch fails with
/// [`ClientError::Quorum`] once W acknowledgements are out of reach.
/// Answers that come after the quorum are still read, by a task per
/// batch.
///
/// If a batch fails, the batches sent after it fail too (they chain on it).
/// The writer then forgets what it had in flight and, before its next
/// append, rebuilds its chain state from the server's verified tail
/// ([`Writer::resync`]), so nothing it appends later can fork the capsule.
///
/// [`ClientOptions::max_in_flight`]: crate::ClientOptions::max_in_flight
/// [`ClientOptions::max_in_flight_bytes`]: crate::ClientOptions::max_in_flight_bytes
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

    /// True if the chain state must be rebuilt from the server before the
    /// next submit (which would do it).
    pub(crate) fn is_stale(&self) -> bool {
        self.stale
    }

    /// The seqno the next record will get.
    pub fn next_seqno(&self) -> u64 {
        self.appender.state().tail_seqno().saturating_add(1)
    }

    /// The newest seqno the server has acknowledged as durable (with a
    /// replication: W replicas).
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Batches sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The records' bytes of the batches in flight.
    fn in_flight_bytes(&self) -> usize {
        self.in_flight.iter().map(|f| f.bytes).sum()
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
        let budget = if self.capsule.replication().is_some() {
            MAX_PAYLOAD_LEN - APPEND_FRAMING - AT_FRAMING
        } else {
            MAX_PAYLOAD_LEN - APPEND_FRAMING
        };
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
        let bytes: usize = records.iter().map(Encode::encoded_len).sum();
        let options = self.capsule.client().options();
        let (max_batches, max_bytes) = (options.max_in_flight, options.max_in_flight_bytes);
        while !self.in_flight.is_empty()
            && (self.in_flight.len() >= max_batches || self.in_flight_bytes() + bytes > max_bytes)
        {
            self.wait_oldest().await?;
        }
        if let Some(rep) = self.capsule.replication() {
            let servers = rep.servers().to_vec();
            let needed = rep.write_quorum();
            return self
                .send_to_replicas(records, heartbeat, servers, needed, last, bytes)
                .await;
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
                self.in_flight.push_back(InFlight {
                    acks: Acks::One(call),
                    last,
                    bytes,
                });
                Ok(())
            }
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }

    /// Sends one batch to every replica in `servers` (W = `needed`), and
    /// starts the task that collects their answers.
    async fn send_to_replicas(
        &mut self,
        records: Vec<Record>,
        heartbeat: Heartbeat,
        servers: Vec<Name>,
        needed: usize,
        last: u64,
        bytes: usize,
    ) -> Result<(), ClientError> {
        let shared = self.capsule.client().shared().clone();
        let request = CapsuleRequest::at(
            self.capsule.name(),
            CapsuleRequest::Append { records, heartbeat },
        );
        if let Err(e) = request.check_limits() {
            self.stale = true;
            return Err(ClientError::invalid(e.to_string()));
        }
        // Encoded once; each replica's PDU differs only in its header.
        let payload = request.to_bytes();
        let mut calls = Vec::with_capacity(servers.len());
        for &server in &servers {
            let header = PduHeader::new(PduType::Capsule, server, shared.name(), shared.next_id());
            let pdu = match Pdu::new(header, payload.clone()) {
                Ok(pdu) => pdu,
                Err(e) => {
                    self.stale = true;
                    return Err(ClientError::invalid(e.to_string()));
                }
            };
            // A replica that cannot be sent to only misses its
            // acknowledgement.
            calls.push((server, Call::start(&shared, pdu, "append").await));
        }
        let answers = collect_answers(shared, calls);
        self.in_flight.push_back(InFlight {
            acks: Acks::Replicas {
                servers,
                needed,
                answers,
            },
            last,
            bytes,
        });
        Ok(())
    }

    /// Waits for the oldest batch's acknowledgement.
    async fn wait_oldest(&mut self) -> Result<(), ClientError> {
        let Some(f) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let client = self.capsule.client().clone();
        let result = match f.acks {
            Acks::One(call) => {
                let give_up = call.deadline();
                match wait_past_gaps(client.shared(), call, give_up, || true).await {
                    Ok(CapsuleResponse::Appended { tail }) if tail >= f.last => Ok(()),
                    Ok(CapsuleResponse::Appended { tail }) => Err(ClientError::protocol(format!(
                        "records up to {} acknowledged with tail {tail}",
                        f.last
                    ))),
                    Ok(other) => Err(unexpected("Append", &other)),
                    Err(e) => Err(e),
                }
            }
            Acks::Replicas {
                servers,
                needed,
                mut answers,
            } => wait_quorum(AckTally::new(servers, needed, f.last), &mut answers).await,
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
        forget(self.capsule.client().shared(), self.in_flight.drain(..));
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
    /// server's verified tail (with a replication: the highest verified
    /// tail of the replicas that answer, at least R). Returns the tail.
    pub async fn resync(&mut self) -> Result<u64, ClientError> {
        self.abandon();
        let state = self.capsule.writer_chain_state().await?;
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
        forget(self.capsule.client().shared(), self.in_flight.drain(..));
    }
}

/// Stops waiting for `batches`: their requests to one server are
/// unregistered; the tasks of replicated batches go on reading the
/// replicas' answers until each came or timed out.
fn forget(shared: &Shared, batches: impl Iterator<Item = InFlight>) {
    for f in batches {
        if let Acks::One(call) = f.acks {
            shared.unregister(call.id());
        }
    }
}

/// First wait before a batch a replica answered with `Gap` is sent to it
/// again; it doubles up to [`GAP_RETRY_MAX`].
const GAP_RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest wait between two resends after `Gap`.
const GAP_RETRY_MAX: Duration = Duration::from_millis(800);

/// The answer to the append `call` to one server. A `Gap` means an earlier
/// batch has not reached the server yet (lost on the way and being sent
/// again, overtaken, or the server is a replica still catching up): while
/// `wanted` says the answer still matters, the batch is sent again, with a
/// growing pause, until the server takes it or `give_up` has passed; only
/// then is `Gap` the answer.
async fn wait_past_gaps(
    shared: &Shared,
    call: Call,
    give_up: tokio::time::Instant,
    wanted: impl Fn() -> bool,
) -> Result<CapsuleResponse, ClientError> {
    let request = call.pdu().clone();
    let mut call = call;
    let mut pause = GAP_RETRY_FIRST;
    loop {
        let answer = call
            .wait(shared)
            .await
            .and_then(|pdu| decode_response(&pdu));
        let behind = matches!(
            answer,
            Err(ClientError::Server {
                code: ErrorCode::Gap,
                ..
            })
        );
        if !behind || !wanted() || tokio::time::Instant::now() + pause >= give_up {
            return answer;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(GAP_RETRY_MAX);
        let header = PduHeader::new(
            PduType::Capsule,
            request.header.dst,
            shared.name(),
            shared.next_id(),
        );
        let pdu = Pdu::new(header, request.payload.clone())
            .map_err(|e| ClientError::invalid(e.to_string()))?;
        call = Call::start(shared, pdu, "append").await?;
    }
}

/// Starts the task that waits for each replica's answer to one batch and
/// hands the answers over as they come. Answers that come after the
/// writer stopped listening (it had its quorum, or gave up) are read and
/// dropped, so every request is either answered or timed out.
///
/// A replica that answers `Gap` is behind (it was down, and its peers are
/// handing it what it missed): while the writer still waits for the
/// batch's quorum, the batch is sent to it again, with a growing pause,
/// until it takes it or `request_timeout` from the first send has passed;
/// only then is `Gap` its answer. So a replica catching up counts towards
/// the quorum as soon as it has caught up, and a batch already
/// acknowledged is never resent.
fn collect_answers(
    shared: Arc<Shared>,
    calls: Vec<(Name, Result<Call, ClientError>)>,
) -> mpsc::Receiver<ReplicaAnswer> {
    let (tx, rx) = mpsc::channel(calls.len().max(1));
    let give_up = tokio::time::Instant::now() + shared.options.request_timeout;
    tokio::spawn(async move {
        let mut waits: FuturesUnordered<_> = calls
            .into_iter()
            .map(|(server, call)| {
                let (shared, listener) = (shared.clone(), tx.clone());
                async move {
                    // Resent only while the writer still waits for this
                    // batch's quorum: once it has it (or gave up), the
                    // replica gets the records by anti-entropy.
                    let answer = match call {
                        Ok(call) => {
                            wait_past_gaps(&shared, call, give_up, || !listener.is_closed()).await
                        }
                        Err(e) => Err(e),
                    };
                    (server, answer)
                }
            })
            .collect();
        while let Some((server, answer)) = waits.next().await {
            if let Err(mpsc::error::TrySendError::Closed((server, answer))) =
                tx.try_send((server, answer))
            {
                tracing::debug!(%server, ?answer, "a replica answered an append after its quorum");
            }
        }
    });
    rx
}

/// Waits until `tally` has W acknowledgements from `answers`, or they are
/// no longer possible.
async fn wait_quorum(
    mut tally: AckTally,
    answers: &mut mpsc::Receiver<ReplicaAnswer>,
) -> Result<(), ClientError> {
    let mut verdict = tally.verdict();
    loop {
        match verdict {
            Verdict::Acknowledged => return Ok(()),
            Verdict::Failed(e) => return Err(e),
            Verdict::Waiting => {}
        }
        verdict = match answers.recv().await {
            Some((server, answer)) => tally.on_answer(server, answer),
            None => tally.on_answers_lost(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_proto::capsule::ErrorCode;

    fn names(n: u8) -> Vec<Name> {
        (1..=n).map(|i| Name::from_bytes([i; 32])).collect()
    }

    fn appended(tail: u64) -> Result<CapsuleResponse, ClientError> {
        Ok(CapsuleResponse::Appended { tail })
    }

    fn gap() -> Result<CapsuleResponse, ClientError> {
        Err(ClientError::Server {
            code: ErrorCode::Gap,
            message: "missed a batch".into(),
        })
    }

    #[test]
    fn w_acknowledgements_acknowledge_the_batch() {
        let s = names(3);
        let mut t = AckTally::new(s.clone(), 2, 10);
        assert!(matches!(t.on_answer(s[0], gap()), Verdict::Waiting));
        assert!(matches!(t.on_answer(s[1], appended(10)), Verdict::Waiting));
        // A second answer from the same replica does not count twice.
        assert!(matches!(t.on_answer(s[1], appended(12)), Verdict::Waiting));
        assert!(matches!(
            t.on_answer(s[2], appended(11)),
            Verdict::Acknowledged
        ));
    }

    #[test]
    fn a_tail_short_of_the_batch_is_no_acknowledgement() {
        let s = names(2);
        let mut t = AckTally::new(s.clone(), 2, 10);
        assert!(matches!(t.on_answer(s[0], appended(10)), Verdict::Waiting));
        let Verdict::Failed(e) = t.on_answer(s[1], appended(9)) else {
            panic!("a short tail acknowledged the batch");
        };
        assert!(e.to_string().contains("tail 9"), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn the_batch_fails_once_the_quorum_is_out_of_reach() {
        let s = names(3);
        let mut t = AckTally::new(s.clone(), 2, 5);
        assert!(matches!(t.on_answer(s[2], gap()), Verdict::Waiting));
        let timeout = Err(ClientError::Timeout {
            what: "append",
            after: std::time::Duration::from_secs(1),
        });
        let Verdict::Failed(e) = t.on_answer(s[0], timeout) else {
            panic!("two failures of three left a quorum of two");
        };
        let text = e.to_string();
        assert!(
            text.starts_with("append: 0 of the 2 replicas needed"),
            "{text}"
        );
        assert!(text.contains("Gap") && text.contains("timed out"), "{text}");
        assert!(text.contains("no answer yet"), "{text}");
        for n in &s {
            assert!(text.contains(&n.short()), "{text}");
        }
    }

    #[test]
    fn lost_answers_count_as_failures() {
        let s = names(3);
        let mut t = AckTally::new(s.clone(), 2, 5);
        assert!(matches!(t.on_answer(s[0], appended(5)), Verdict::Waiting));
        assert!(matches!(t.on_answers_lost(), Verdict::Failed(_)));
        let mut t = AckTally::new(s.clone(), 1, 5);
        assert!(matches!(
            t.on_answer(s[0], appended(5)),
            Verdict::Acknowledged
        ));
    }

    #[tokio::test]
    async fn waiting_reads_answers_until_the_quorum() {
        let s = names(3);
        let (tx, mut rx) = mpsc::channel(3);
        tx.try_send((s[0], gap())).expect("room");
        tx.try_send((s[1], appended(7))).expect("room");
        tx.try_send((s[2], appended(7))).expect("room");
        let tally = AckTally::new(s.clone(), 2, 7);
        assert!(wait_quorum(tally, &mut rx).await.is_ok());
        drop(tx);
        let tally = AckTally::new(s.clone(), 2, 7);
        let err = wait_quorum(tally, &mut rx).await.expect_err("no answers");
        assert!(matches!(err, ClientError::Quorum { got: 0, .. }), "{err}");
    }
}
