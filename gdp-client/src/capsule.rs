//! A handle to one capsule: verified reads, writers and subscriptions.
//!
//! Every read is checked against the capsule's metadata before anything is
//! returned (see [`crate::verified`]): a server that changes one byte of a
//! record, drops one, or proves it with a heartbeat no writer signed makes
//! the read fail with [`ClientError::Verification`].

use std::sync::Arc;

use futures::Stream;
use gdp_certs::{Metadata, Name, SecretKey};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::{Appender, ChainError, ChainState};

use crate::client::unexpected;
use crate::subscription::Subscription;
use crate::verified::{VerifiedRecord, verify_answer};
use crate::writer::Writer;
use crate::{Client, ClientError};

/// A capsule, known by its metadata, reached through a [`Client`].
#[derive(Debug, Clone)]
pub struct Capsule {
    client: Client,
    metadata: Arc<Metadata>,
    name: Name,
}

impl Capsule {
    pub(crate) fn new(client: Client, metadata: Metadata) -> Self {
        let name = metadata.name();
        Capsule {
            client,
            metadata: Arc::new(metadata),
            name,
        }
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

    /// Reads record `seqno`, verified.
    pub async fn read(&self, seqno: u64) -> Result<VerifiedRecord, ClientError> {
        if seqno == 0 {
            return Err(ClientError::invalid("seqnos start at 1"));
        }
        let request = CapsuleRequest::Read { seqno };
        match self.client.request(self.name, &request).await? {
            CapsuleResponse::Records { records, proof } => {
                let mut out = verify_answer(&self.metadata, records, &proof, seqno, seqno)?;
                out.pop()
                    .ok_or_else(|| ClientError::protocol("an answer without records"))
            }
            other => Err(unexpected("Read", &other)),
        }
    }

    /// Reads as many records from `from` (up to `to`) as the server puts in
    /// one answer, verified; at least one.
    pub async fn read_chunk(&self, from: u64, to: u64) -> Result<Vec<VerifiedRecord>, ClientError> {
        if from == 0 || from > to {
            return Err(ClientError::invalid(format!(
                "the range {from}..={to} is empty or starts at 0"
            )));
        }
        let request = CapsuleRequest::ReadRange { from, to };
        match self.client.request(self.name, &request).await? {
            CapsuleResponse::Records { records, proof } => {
                verify_answer(&self.metadata, records, &proof, from, to)
            }
            other => Err(unexpected("ReadRange", &other)),
        }
    }

    /// Reads records `from..=to`, verified, in as many requests as needed.
    pub async fn read_range(&self, from: u64, to: u64) -> Result<Vec<VerifiedRecord>, ClientError> {
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

    /// Records `from..=to`, verified, as a stream of the chunks the server
    /// answers with (for progress reporting on long reads). The stream ends
    /// after `to`, or after the first error.
    pub fn read_chunks(
        &self,
        from: u64,
        to: u64,
    ) -> impl Stream<Item = Result<Vec<VerifiedRecord>, ClientError>> + Send + 'static {
        let capsule = self.clone();
        futures::stream::unfold(Some(from), move |next| {
            let capsule = capsule.clone();
            async move {
                let next = next?;
                if next > to || next == 0 {
                    return None;
                }
                match capsule.read_chunk(next, to).await {
                    Ok(chunk) => {
                        let after = chunk
                            .last()
                            .map_or(to, VerifiedRecord::seqno)
                            .checked_add(1);
                        Some((Ok(chunk), after))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
    }

    /// The newest record, verified, or `None` if the capsule has none yet.
    pub async fn latest(&self) -> Result<Option<VerifiedRecord>, ClientError> {
        match self
            .client
            .request(self.name, &CapsuleRequest::Latest)
            .await
        {
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

    /// The seqno of the newest record, 0 if there is none.
    pub async fn tail(&self) -> Result<u64, ClientError> {
        Ok(self.latest().await?.map_or(0, |r| r.seqno()))
    }

    /// The chain state at the server's tail, verified: what a writer needs
    /// to continue the capsule.
    pub async fn chain_state(&self) -> Result<ChainState, ClientError> {
        let tail = self.tail().await?;
        if tail == 0 {
            return Ok(ChainState::new(self.name));
        }
        // The proof of the highest power of two not above the tail, from
        // the tail's heartbeat, is the tail path that rebuilds the state.
        let target = 1u64 << (63 - tail.leading_zeros());
        let request = CapsuleRequest::Read { seqno: target };
        match self.client.request(self.name, &request).await? {
            CapsuleResponse::Records { records, proof } => {
                verify_answer(&self.metadata, records, &proof, target, target)?;
                let (state, _) =
                    ChainState::from_proof(&self.metadata, &proof).map_err(|e| match e {
                        ChainError::Proof(e) => ClientError::Verification(e),
                        // The proof verified (above), so its path is the
                        // capsule's, but not the tail path that was asked for.
                        other => ClientError::protocol(format!(
                            "the proof of record {target} is not the tail path: {other}"
                        )),
                    })?;
                Ok(state)
            }
            other => Err(unexpected("Read", &other)),
        }
    }

    /// A writer signing with `key`, continuing from the server's tail.
    pub async fn writer(&self, key: SecretKey) -> Result<Writer, ClientError> {
        self.check_writer(&key)?;
        let state = self.chain_state().await?;
        self.writer_at(key, state)
    }

    /// A writer signing with `key` whose chain is `state` (for a capsule
    /// just created: `ChainState::new(name)`).
    pub fn writer_at(&self, key: SecretKey, state: ChainState) -> Result<Writer, ClientError> {
        self.check_writer(&key)?;
        let appender = Appender::new(key.clone(), &self.metadata, state).map_err(|e| {
            ClientError::invalid(format!("cannot write capsule {}: {e}", self.name))
        })?;
        Ok(Writer::new(self.clone(), key, appender))
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
