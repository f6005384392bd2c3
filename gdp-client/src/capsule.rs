//! A handle to one capsule: verified reads, writers and subscriptions.
//!
//! Every read is checked against the capsule's metadata before anything is
//! returned (see [`crate::verified`]): a server that changes one byte of a
//! record, drops one, or proves it with a heartbeat no writer signed makes
//! the read fail with [`ClientError::Verification`].
//!
//! # Replicated capsules
//!
//! A handle with a [`Replication`] ([`Capsule::with_replication`]) reads
//! from the replicas themselves rather than from whichever server the
//! routers reach by the capsule's name: [`Capsule::read`],
//! [`Capsule::read_chunk`] (and so [`Capsule::read_range`]),
//! [`Capsule::latest`], [`Capsule::tail`] and [`Capsule::chain_state`] ask
//! R replicas in parallel (`At` requests), verify every answer, and return
//! the freshest verified one. A replica that fails (an error, a timeout, no
//! route, an answer that does not verify) is replaced by the next one in
//! the set, until R answered or the set is exhausted
//! ([`ClientError::Quorum`], naming each replica's outcome). A replica that
//! has not got a record yet (`NotFound`) has answered, but a verified
//! record from another replica wins over it. Subscriptions still follow
//! the capsule by name.

use std::future::Future;
use std::sync::Arc;

use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use gdp_certs::{Metadata, Name, SecretKey};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::{Appender, ChainError, ChainState};
use gdp_proto::fork::ForkEvidence;
use gdp_proto::record::RecordHash;

use crate::client::unexpected;
use crate::replicas::{Replication, gather, rotated};
use crate::subscription::Subscription;
use crate::verified::{VerifiedRecord, verify_answer};
use crate::writer::Writer;
use crate::{Client, ClientError};

/// Answers [`Capsule::read_chunks`] (and so [`Capsule::read_range`])
/// keeps in flight at once.
pub const READ_AHEAD: usize = 4;

/// What a read of several chunks does with each verified chunk, on the
/// task that verified it (decrypting it, for an encrypted capsule's
/// reader), so that the work happens side by side for the chunks in flight
/// and while the data is still in that core's cache.
pub(crate) type ChunkFn<T> = Arc<dyn Fn(Vec<VerifiedRecord>) -> T + Send + Sync>;

/// The state of [`Capsule::read_chunks`].
struct ReadAhead<T> {
    capsule: Capsule,
    to: u64,
    /// The first seqno not asked for yet.
    cursor: Option<u64>,
    /// Records per answer, once the first answer came.
    per: Option<u64>,
    then: ChunkFn<T>,
    spans: FuturesOrdered<SpanTask<T>>,
}

/// One span of [`Capsule::read_chunks`], asked for and verified on a task of
/// its own: on a multi-threaded runtime the answers in flight are verified
/// side by side, and while the caller works on one chunk (printing it) the
/// next ones are checked. Dropping it (the stream was dropped) aborts the
/// task.
struct SpanTask<T>(tokio::task::JoinHandle<Result<T, ClientError>>);

impl<T> Future for SpanTask<T> {
    type Output = Result<T, ClientError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Aborted only when dropped, after which nobody polls it.
                Err(_) => Err(ClientError::Closed),
            })
        })
    }
}

impl<T> Drop for SpanTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where one request for a capsule goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// To the capsule's name: whichever server the routers reach.
    Anycast,
    /// To this replica, as an `At` request.
    Replica(Name),
}

/// A capsule, known by its metadata, reached through a [`Client`].
#[derive(Debug, Clone)]
pub struct Capsule {
    client: Client,
    metadata: Arc<Metadata>,
    name: Name,
    replication: Option<Arc<Replication>>,
}

impl Capsule {
    pub(crate) fn new(client: Client, metadata: Metadata) -> Self {
        let name = metadata.name();
        Capsule {
            client,
            metadata: Arc::new(metadata),
            name,
            replication: None,
        }
    }

    /// This handle, reaching the capsule through the replicas of
    /// `replication`: writes go to every replica and are acknowledged by
    /// W of them; reads ask R of them, replace those that fail, and return
    /// the freshest verified answer (see [`crate::replicas`]). Fails if
    /// the replica set is not this
    /// capsule's, signed by its owner, with servers its metadata allows.
    pub fn with_replication(mut self, replication: Replication) -> Result<Capsule, ClientError> {
        replication.verify(&self.metadata)?;
        self.replication = Some(Arc::new(replication));
        Ok(self)
    }

    /// This handle reaching the capsule by its name again (anycast).
    pub fn without_replication(mut self) -> Capsule {
        self.replication = None;
        self
    }

    /// The replicas this handle reads from and writes to, if it was given
    /// them.
    pub fn replication(&self) -> Option<&Replication> {
        self.replication.as_deref()
    }

    /// Sends `request` about this capsule to `target`.
    pub(crate) async fn ask(
        &self,
        target: Target,
        request: CapsuleRequest,
    ) -> Result<CapsuleResponse, ClientError> {
        match target {
            Target::Anycast => self.client.request(self.name, &request).await,
            Target::Replica(server) => {
                let request = CapsuleRequest::at(self.name, request);
                self.client.request(server, &request).await
            }
        }
    }

    /// Runs `op` on R replicas (all of them with `everyone`), replacing
    /// those that fail, and returns the answers of at least R. With
    /// `everyone`, it also waits for every replica asked (or its timeout),
    /// so that no answer is missed.
    async fn on_replicas<T, F, Fut>(
        &self,
        replication: &Replication,
        what: &'static str,
        everyone: bool,
        op: F,
    ) -> Result<Vec<T>, ClientError>
    where
        F: Fn(Name) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let order = rotated(replication.servers());
        let first = if everyone {
            order.len()
        } else {
            replication.read_quorum()
        };
        let answers = gather(what, order, first, replication.read_quorum(), everyone, op).await?;
        Ok(answers.into_iter().map(|(_, t)| t).collect())
    }

    /// The capsule's name.
    pub fn name(&self) -> Name {
        self.name
    }

    /// The capsule's metadata (it hashes to the name).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The client this handle uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads record `seqno`, verified. With a replication: from R
    /// replicas, any verified answer (a replica without the record does
    /// not win over one that has it).
    pub async fn read(&self, seqno: u64) -> Result<VerifiedRecord, ClientError> {
        if seqno == 0 {
            return Err(ClientError::invalid("seqnos start at 1"));
        }
        let Some(rep) = self.replication.clone() else {
            return self.read_at(Target::Anycast, seqno).await;
        };
        let answers = self
            .on_replicas(&rep, "read", false, |s| {
                not_found_as_none(self.read_at(Target::Replica(s), seqno))
            })
            .await?;
        freshest(answers, VerifiedRecord::seqno).ok_or_else(|| ClientError::Server {
            code: ErrorCode::NotFound,
            message: format!(
                "none of the {} replicas asked has record {seqno}",
                rep.read_quorum()
            ),
        })
    }

    /// Reads record `seqno` from `target`, verified.
    async fn read_at(&self, target: Target, seqno: u64) -> Result<VerifiedRecord, ClientError> {
        let request = CapsuleRequest::Read { seqno };
        match self.ask(target, request).await? {
            CapsuleResponse::Records { records, proof } => {
                let mut out = verify_answer(&self.metadata, records, &proof, seqno, seqno)?;
                out.pop()
                    .ok_or_else(|| ClientError::protocol("an answer without records"))
            }
            other => Err(unexpected("Read", &other)),
        }
    }

    /// Reads as many records from `from` (up to `to`) as the server puts in
    /// one answer, verified; at least one. With a replication: from R
    /// replicas, the verified answer that reaches furthest.
    pub async fn read_chunk(&self, from: u64, to: u64) -> Result<Vec<VerifiedRecord>, ClientError> {
        if from == 0 || from > to {
            return Err(ClientError::invalid(format!(
                "the range {from}..={to} is empty or starts at 0"
            )));
        }
        let Some(rep) = self.replication.clone() else {
            return self.read_chunk_at(Target::Anycast, from, to).await;
        };
        let answers = self
            .on_replicas(&rep, "read range", false, |s| {
                not_found_as_none(self.read_chunk_at(Target::Replica(s), from, to))
            })
            .await?;
        freshest(answers, |c: &Vec<VerifiedRecord>| {
            c.last().map_or(0, VerifiedRecord::seqno)
        })
        .ok_or_else(|| ClientError::Server {
            code: ErrorCode::NotFound,
            message: format!(
                "none of the {} replicas asked has record {from}",
                rep.read_quorum()
            ),
        })
    }

    /// Reads a chunk of `from..=to` from `target`, verified.
    async fn read_chunk_at(
        &self,
        target: Target,
        from: u64,
        to: u64,
    ) -> Result<Vec<VerifiedRecord>, ClientError> {
        let request = CapsuleRequest::ReadRange { from, to };
        match self.ask(target, request).await? {
            CapsuleResponse::Records { records, proof } => {
                verify_answer(&self.metadata, records, &proof, from, to)
            }
            other => Err(unexpected("ReadRange", &other)),
        }
    }

    /// Reads records `from..=to`, verified, in as many requests as needed
    /// (several at once: see [`Capsule::read_chunks`]).
    pub async fn read_range(&self, from: u64, to: u64) -> Result<Vec<VerifiedRecord>, ClientError> {
        if from == 0 || from > to {
            // The same refusal as a single read's.
            return self.read_chunk(from, to).await;
        }
        let mut out = Vec::new();
        let mut chunks = std::pin::pin!(self.read_chunks(from, to));
        while let Some(chunk) = chunks.next().await {
            out.extend(chunk?);
        }
        Ok(out)
    }

    /// Reads records `from..=to`, verified, one answer after another.
    async fn read_span(&self, from: u64, to: u64) -> Result<Vec<VerifiedRecord>, ClientError> {
        let mut out = Vec::new();
        let mut next = from;
        while next <= to {
            let chunk = self.read_chunk(next, to).await?;
            next = chunk
                .last()
                .map_or(to, VerifiedRecord::seqno)
                .saturating_add(1);
            out.extend(chunk);
            if next == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Records `from..=to`, verified, as a stream of chunks in order (for
    /// processing or reporting progress while the rest arrives). The
    /// stream ends after `to`, or after the first error.
    ///
    /// The first answer tells how many records one answer carries; the
    /// rest is asked for in spans of that many, [`READ_AHEAD`] at once, so
    /// a long read costs about one round trip per `READ_AHEAD` answers, and
    /// the spans after the one being handed out are on their way, and
    /// verified on tasks of their own (side by side on a multi-threaded
    /// runtime), while the caller works on it. A span answered short (its records are larger)
    /// is completed before the stream moves past it.
    pub fn read_chunks(
        &self,
        from: u64,
        to: u64,
    ) -> impl Stream<Item = Result<Vec<VerifiedRecord>, ClientError>> + Send + 'static {
        self.read_chunks_then(from, to, Arc::new(|chunk| chunk))
    }

    /// [`Capsule::read_chunks`], with `then` applied to each verified chunk
    /// on the task that read it.
    pub(crate) fn read_chunks_then<T: Send + 'static>(
        &self,
        from: u64,
        to: u64,
        then: ChunkFn<T>,
    ) -> impl Stream<Item = Result<T, ClientError>> + Send + 'static {
        let ahead = ReadAhead {
            capsule: self.clone(),
            to,
            cursor: (from != 0).then_some(from),
            per: None,
            then,
            spans: FuturesOrdered::new(),
        };
        futures::stream::unfold(Some(ahead), |state| async move {
            let mut st = state?;
            let Some(per) = st.per else {
                let start = st.cursor.filter(|c| *c <= st.to)?;
                return match st.capsule.read_chunk(start, st.to).await {
                    Ok(chunk) => {
                        st.per = Some((chunk.len() as u64).max(1));
                        st.cursor = chunk
                            .last()
                            .map_or(st.to, VerifiedRecord::seqno)
                            .checked_add(1);
                        let out = (st.then)(chunk);
                        Some((Ok(out), Some(st)))
                    }
                    Err(e) => Some((Err(e), None)),
                };
            };
            while st.spans.len() < READ_AHEAD
                && let Some(start) = st.cursor.filter(|c| *c <= st.to)
            {
                let end = start.saturating_add(per - 1).min(st.to);
                let (capsule, then) = (st.capsule.clone(), st.then.clone());
                st.spans.push_back(SpanTask(tokio::spawn(async move {
                    capsule.read_span(start, end).await.map(|span| then(span))
                })));
                st.cursor = end.checked_add(1);
            }
            match st.spans.next().await? {
                Ok(span) => Some((Ok(span), Some(st))),
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    /// The newest record, verified, or `None` if the capsule has none yet.
    /// With a replication: the newest verified record among R replicas.
    pub async fn latest(&self) -> Result<Option<VerifiedRecord>, ClientError> {
        let Some(rep) = self.replication.clone() else {
            return self.latest_at(Target::Anycast).await;
        };
        let answers = self
            .on_replicas(&rep, "latest", false, |s| {
                self.latest_at(Target::Replica(s))
            })
            .await?;
        Ok(freshest(answers, VerifiedRecord::seqno))
    }

    /// The newest record at `target`, verified.
    async fn latest_at(&self, target: Target) -> Result<Option<VerifiedRecord>, ClientError> {
        match self.ask(target, CapsuleRequest::Latest).await {
            Ok(CapsuleResponse::Records { records, proof }) => {
                let Some(seqno) = records.last().map(|r| r.seqno()) else {
                    return Err(ClientError::protocol("an answer without records"));
                };
                if records.len() != 1 {
                    return Err(ClientError::protocol(
                        "more than one record in answer to Latest",
                    ));
                }
                // The newest record is the one the newest heartbeat signs.
                if proof.heartbeat.seqno != seqno {
                    return Err(ClientError::protocol(format!(
                        "Latest answered record {seqno}, but the heartbeat is at {}",
                        proof.heartbeat.seqno
                    )));
                }
                let mut out = verify_answer(&self.metadata, records, &proof, seqno, seqno)?;
                Ok(out.pop())
            }
            Ok(other) => Err(unexpected("Latest", &other)),
            Err(ClientError::Server {
                code: ErrorCode::NotFound,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The seqno of the newest record, 0 if there is none. With a
    /// replication: the highest verified one among R replicas.
    pub async fn tail(&self) -> Result<u64, ClientError> {
        Ok(self.latest().await?.map_or(0, |r| r.seqno()))
    }

    /// The chain state at the server's tail, verified: what a writer needs
    /// to continue the capsule. With a replication: the state at the
    /// highest verified tail among R replicas.
    pub async fn chain_state(&self) -> Result<ChainState, ClientError> {
        self.chain_state_of(false).await
    }

    /// The chain state a writer continues from. With a replication, every
    /// replica is asked and awaited (a replica that does not answer delays
    /// this by the request timeout), and the highest verified tail among
    /// them (at least R) wins: a writer that continued from an older tail
    /// than a replica holds would fork the capsule there.
    pub(crate) async fn writer_chain_state(&self) -> Result<ChainState, ClientError> {
        self.chain_state_of(true).await
    }

    async fn chain_state_of(&self, everyone: bool) -> Result<ChainState, ClientError> {
        let Some(rep) = self.replication.clone() else {
            return self.chain_state_at(Target::Anycast).await;
        };
        let answers = self
            .on_replicas(&rep, "chain state", everyone, |s| {
                self.chain_state_at(Target::Replica(s))
            })
            .await?;
        Ok(
            freshest(answers.into_iter().map(Some), ChainState::tail_seqno)
                .unwrap_or_else(|| ChainState::new(self.name)),
        )
    }

    /// The chain state at `target`'s tail, verified.
    async fn chain_state_at(&self, target: Target) -> Result<ChainState, ClientError> {
        let tail = self.latest_at(target).await?.map_or(0, |r| r.seqno());
        if tail == 0 {
            return Ok(ChainState::new(self.name));
        }
        // The proof of the highest power of two not above the tail, from
        // the tail's heartbeat, is the tail path that rebuilds the state.
        let target_seqno = 1u64 << (63 - tail.leading_zeros());
        let request = CapsuleRequest::Read {
            seqno: target_seqno,
        };
        match self.ask(target, request).await? {
            CapsuleResponse::Records { records, proof } => {
                verify_answer(&self.metadata, records, &proof, target_seqno, target_seqno)?;
                let (state, _) =
                    ChainState::from_proof(&self.metadata, &proof).map_err(|e| match e {
                        ChainError::Proof(e) => ClientError::Verification(e),
                        // The proof verified (above), so its path is the
                        // capsule's, but not the tail path that was asked for.
                        other => ClientError::protocol(format!(
                            "the proof of record {target_seqno} is not the tail path: {other}"
                        )),
                    })?;
                Ok(state)
            }
            other => Err(unexpected("Read", &other)),
        }
    }

    /// The fork evidence the servers hold for this capsule: from every
    /// replica with a replication (those that fail are skipped, unless
    /// none answers), else from the server reached by name. Each evidence
    /// is verified against the metadata (what does not verify is dropped),
    /// duplicates (same seqno and record) are merged, and the rest is
    /// sorted by seqno. Empty when no server holds any.
    pub async fn forks(&self) -> Result<Vec<ForkEvidence>, ClientError> {
        let answers = match self.replication.clone() {
            None => vec![self.forks_at(Target::Anycast).await?],
            Some(rep) => {
                let order = rep.servers().to_vec();
                let n = order.len();
                let found = gather("get forks", order, n, 1, true, |s| {
                    self.forks_at(Target::Replica(s))
                })
                .await?;
                found.into_iter().map(|(_, e)| e).collect()
            }
        };
        Ok(merge_forks(&self.metadata, answers))
    }

    async fn forks_at(&self, target: Target) -> Result<Vec<ForkEvidence>, ClientError> {
        match self.ask(target, CapsuleRequest::GetForks).await? {
            CapsuleResponse::Forks { evidence } => Ok(evidence),
            other => Err(unexpected("GetForks", &other)),
        }
    }

    /// A writer signing with `key`, continuing from the server's tail
    /// (with a replication: the highest verified tail of the replicas that
    /// answer, at least R of them).
    ///
    /// An encrypted capsule has no plain writer ([`ClientError::Encrypted`]):
    /// use [`Capsule::sealed_writer`].
    pub async fn writer(&self, key: SecretKey) -> Result<Writer, ClientError> {
        self.check_plaintext()?;
        self.plain_writer(key).await
    }

    /// A writer of the payloads it is given, as they are, for this capsule
    /// whether encrypted or not (the [`SealedWriter`](crate::SealedWriter)
    /// hands it envelopes).
    pub(crate) async fn plain_writer(&self, key: SecretKey) -> Result<Writer, ClientError> {
        self.check_writer(&key)?;
        let state = self.writer_chain_state().await?;
        self.writer_from(key, state)
    }

    /// A writer signing with `key` whose chain is `state` (for a capsule
    /// just created: `ChainState::new(name)`). Refuses an encrypted
    /// capsule, as [`Capsule::writer`] does.
    pub fn writer_at(&self, key: SecretKey, state: ChainState) -> Result<Writer, ClientError> {
        self.check_plaintext()?;
        self.writer_from(key, state)
    }

    fn writer_from(&self, key: SecretKey, state: ChainState) -> Result<Writer, ClientError> {
        self.check_writer(&key)?;
        let appender = Appender::new(key.clone(), &self.metadata, state).map_err(|e| {
            ClientError::invalid(format!("cannot write capsule {}: {e}", self.name))
        })?;
        Ok(Writer::new(self.clone(), key, appender))
    }

    fn check_plaintext(&self) -> Result<(), ClientError> {
        if self.metadata.is_encrypted() {
            Err(ClientError::Encrypted { capsule: self.name })
        } else {
            Ok(())
        }
    }

    fn check_writer(&self, key: &SecretKey) -> Result<(), ClientError> {
        if self.metadata.is_writer(&key.public()) {
            Ok(())
        } else {
            Err(ClientError::NotWriter { capsule: self.name })
        }
    }

    /// Verified records from seqno `from` on: the backlog, then new records
    /// as they are appended. The subscription survives link failures and
    /// server restarts, resuming after the last record delivered.
    pub fn subscribe(&self, from: u64) -> Subscription {
        Subscription::start(self.clone(), from)
    }
}

/// `answer` with a `NotFound` from the server as `None`: the replica does
/// not have it (yet), which is an answer.
async fn not_found_as_none<T>(
    answer: impl Future<Output = Result<T, ClientError>>,
) -> Result<Option<T>, ClientError> {
    match answer.await {
        Ok(t) => Ok(Some(t)),
        Err(ClientError::Server {
            code: ErrorCode::NotFound,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The freshest of verified answers: the one with the highest `key` (the
/// first of equals), ignoring replicas that had nothing.
fn freshest<T>(answers: impl IntoIterator<Item = Option<T>>, key: impl Fn(&T) -> u64) -> Option<T> {
    let mut best: Option<T> = None;
    for t in answers.into_iter().flatten() {
        if best.as_ref().is_none_or(|b| key(&t) > key(b)) {
            best = Some(t);
        }
    }
    best
}

/// The fork evidence of several servers: verified against `md` (the rest
/// dropped), without duplicates (same seqno and record hash), by seqno.
fn merge_forks(md: &Metadata, answers: Vec<Vec<ForkEvidence>>) -> Vec<ForkEvidence> {
    let mut out: Vec<(u64, RecordHash, ForkEvidence)> = Vec::new();
    for evidence in answers.into_iter().flatten() {
        if let Err(e) = evidence.verify(md) {
            tracing::debug!(seqno = evidence.seqno(), error = %e, "fork evidence that does not verify dropped");
            continue;
        }
        let key = (evidence.seqno(), evidence.record.hash());
        if !out.iter().any(|(s, h, _)| (*s, *h) == key) {
            out.push((key.0, key.1, evidence));
        }
    }
    out.sort_by_key(|(s, h, _)| (*s, *h));
    out.into_iter().map(|(_, _, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use gdp_certs::Timestamp;
    use gdp_proto::proof::{Heartbeat, Proof};
    use gdp_proto::record::Record;

    #[test]
    fn the_freshest_answer_wins_and_nothing_loses_to_something() {
        let answers = vec![None, Some((3, "a")), Some((9, "b")), Some((9, "c")), None];
        assert_eq!(freshest(answers, |t| t.0), Some((9, "b")));
        // A replica without the record does not win over one with it.
        assert_eq!(freshest(vec![None, Some(4u64), None], |t| *t), Some(4));
        assert_eq!(freshest(Vec::<Option<u64>>::new(), |t| *t), None);
        assert_eq!(freshest(vec![None::<u64>, None], |t| *t), None);
        // Chunks: the one that reaches furthest.
        let chunks = vec![Some(vec![1u64, 2]), Some(vec![1, 2, 3]), Some(vec![1])];
        let best = freshest(chunks, |c: &Vec<u64>| c.last().copied().unwrap_or(0));
        assert_eq!(best, Some(vec![1, 2, 3]));
    }

    /// Two writers' chains of `n` records on one capsule (the same key
    /// writing two histories), and evidence of record `seqno` of the
    /// second.
    fn fork_at(md: &Metadata, key: &SecretKey, payload: u8, seqno: u64) -> ForkEvidence {
        let mut a = Appender::new(key.clone(), md, ChainState::new(md.name())).expect("writer");
        let records: Vec<Record> = (0..4u8)
            .map(|i| {
                a.append(Bytes::from(vec![i, payload]), Timestamp(1))
                    .expect("append")
            })
            .collect();
        let hb = Heartbeat::sign(key, &records[3]);
        let proof = Proof::build(hb, seqno, |s| {
            records
                .get(usize::try_from(s).ok()? - 1)
                .map(Record::header)
        })
        .expect("headers at hand");
        ForkEvidence {
            record: records[usize::try_from(seqno).expect("small") - 1].clone(),
            proof,
        }
    }

    #[test]
    fn forks_are_verified_deduplicated_and_sorted() {
        let key = SecretKey::from_seed(&[3; 32]);
        let md = Metadata::capsule(key.public(), vec![key.public()], "f", Timestamp(1), vec![])
            .expect("valid");
        let at3 = fork_at(&md, &key, 1, 3);
        let at2 = fork_at(&md, &key, 2, 2);
        let other_at2 = fork_at(&md, &key, 3, 2);
        let mut forged = fork_at(&md, &key, 4, 2);
        forged.record = at3.record.clone();
        let merged = merge_forks(
            &md,
            vec![
                vec![at3.clone(), at2.clone(), forged],
                vec![at2.clone(), other_at2.clone()],
                vec![],
            ],
        );
        assert_eq!(merged.len(), 3, "{merged:?}");
        assert_eq!(
            merged.iter().map(ForkEvidence::seqno).collect::<Vec<_>>(),
            vec![2, 2, 3]
        );
        assert!(merged.contains(&at2) && merged.contains(&other_at2));
        // Evidence for another capsule does not verify here.
        let stranger = SecretKey::from_seed(&[8; 32]);
        let md2 = Metadata::capsule(
            stranger.public(),
            vec![stranger.public()],
            "g",
            Timestamp(1),
            vec![],
        )
        .expect("valid");
        assert!(merge_forks(&md2, vec![vec![at3]]).is_empty());
    }
}
