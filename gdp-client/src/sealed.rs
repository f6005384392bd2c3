//! Confidential capsules: records encrypted under keys the owner chooses,
//! readable by the readers the owner names.
//!
//! An encrypted capsule says so in its signed metadata
//! ([`Metadata::encryption`](gdp_certs::Metadata::encryption)): how records are sealed and which capsule is
//! its *keyring*. Each record's payload is an envelope of
//! [`gdp_seal`]: an XChaCha20-Poly1305 ciphertext under the content key of
//! an *epoch*, bound to the capsule's name and the record's seqno. The
//! envelope is what is hashed, chained, signed, stored, replicated and
//! proved, so servers, routers, proofs and subscriptions work on it
//! unchanged and never see a key.
//!
//! The keyring is an ordinary (plaintext) capsule with the same owner,
//! written by the data capsule's writers. Its records
//! ([`gdp_seal::KeyRecord`]) wrap each epoch's content key to each reader
//! with HPKE (RFC 9180), to the X25519 form of the reader's ed25519 key.
//! A reader's SDK reads the keyring through the GDP, verified like any
//! capsule, finds the grants to its key and unwraps them
//! ([`Capsule::decryptor`]); [`Capsule::as_reader`] wraps that into reads
//! and subscriptions that hand out plaintext. A writer seals under the
//! newest epoch ([`Capsule::sealed_writer`]).
//!
//! Adding readers ([`Capsule::add_readers`]) wraps the current key to
//! them. Removing one ([`Capsule::remove_readers`]) starts a new epoch: a
//! fresh key wrapped to every remaining reader, used by every record
//! appended after it. A removed reader keeps the keys it had, so it can
//! still read what it could read before; only later records are closed to
//! it. Re-encrypting the history into a new capsule is
//! [`Capsule::reencrypt_into`].
//!
//! [`Capsule::writer`] refuses an encrypted capsule, so plaintext cannot be
//! appended to one by accident: the only writer of an encrypted capsule is
//! a [`SealedWriter`].

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Encryption, EncryptionScheme, Name, PublicKey, SecretKey};
use gdp_seal::{EnvelopeRef, EpochKeys, KeyRecord, Keyring, Mode, Opener, Sealer};

use crate::ClientError;
use crate::capsule::{Capsule, ChunkFn};
use crate::verified::VerifiedRecord;
use crate::writer::Writer;

/// The envelope mode of a scheme.
fn mode_of(scheme: EncryptionScheme) -> Mode {
    match scheme {
        EncryptionScheme::Convergent => Mode::Convergent,
        _ => Mode::Epoch,
    }
}

/// The encryption of `capsule`, or the error that it has none.
pub(crate) fn encryption_of(capsule: &Capsule) -> Result<Encryption, ClientError> {
    capsule
        .metadata()
        .encryption()
        .copied()
        .ok_or_else(|| ClientError::invalid(format!("capsule {} is not encrypted", capsule.name())))
}

/// [`ClientError::Keyring`] for the data capsule `capsule`.
fn keyring_error(capsule: Name, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Keyring {
        capsule,
        reason: reason.to_string(),
    }
}

/// A keyring capsule's records, verified and folded, read as far as
/// `read_to`.
#[derive(Debug)]
struct KeyringView {
    /// The data capsule.
    capsule: Name,
    /// The keyring capsule.
    keyring: Capsule,
    state: Keyring,
    read_to: u64,
}

impl KeyringView {
    /// Opens the keyring of `capsule` and reads it to its tail.
    async fn load(capsule: &Capsule) -> Result<KeyringView, ClientError> {
        let enc = encryption_of(capsule)?;
        // A replicated capsule's keyring lives on replicas too: reach it
        // through its own (owner-signed) replica set, with the same
        // quorums.
        let keyring = match capsule.replication() {
            None => capsule.client().open(enc.keyring).await?,
            Some(rep) => {
                let keyring = capsule.client().open_replicated(enc.keyring).await?;
                match keyring.replication().cloned() {
                    Some(set) => keyring.with_replication(
                        set.with_quorums(rep.write_quorum(), rep.read_quorum())?,
                    )?,
                    None => keyring,
                }
            }
        };
        // The keyring speaks for the capsule only if the capsule's owner
        // made it.
        if keyring.metadata().key() != capsule.metadata().key() {
            return Err(keyring_error(
                capsule.name(),
                "the keyring capsule has another owner",
            ));
        }
        let mut view = KeyringView {
            capsule: capsule.name(),
            keyring,
            state: Keyring::new(capsule.name()),
            read_to: 0,
        };
        view.refresh().await?;
        Ok(view)
    }

    /// Reads and folds the keyring records appended since the last read.
    /// Returns true if there were any.
    async fn refresh(&mut self) -> Result<bool, ClientError> {
        let tail = self.keyring.tail().await?;
        if tail <= self.read_to {
            return Ok(false);
        }
        for record in self.keyring.read_range(self.read_to + 1, tail).await? {
            let parsed = KeyRecord::decode(record.payload().clone()).map_err(|e| {
                keyring_error(
                    self.capsule,
                    format!("keyring record {} does not decode: {e}", record.seqno()),
                )
            })?;
            self.state.apply(&parsed).map_err(|e| {
                keyring_error(
                    self.capsule,
                    format!("keyring record {}: {e}", record.seqno()),
                )
            })?;
            self.read_to = record.seqno();
        }
        Ok(true)
    }

    /// Appends `records` to the keyring, signed with `key` (a writer of
    /// the keyring), and folds them in.
    async fn append(
        &mut self,
        key: &SecretKey,
        records: Vec<KeyRecord>,
    ) -> Result<(), ClientError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut writer = self.keyring.writer(key.clone()).await?;
        if writer.next_seqno() != self.read_to + 1 {
            // Someone else changed the keyring meanwhile: read it again
            // and let the caller decide on the newest state.
            self.refresh().await?;
            return Err(keyring_error(
                self.capsule,
                "the keyring changed while it was being updated; try again",
            ));
        }
        let payloads: Vec<Bytes> = records.iter().map(|r| r.to_bytes()).collect();
        writer.append_all(payloads).await?;
        for r in &records {
            self.state
                .apply(r)
                .map_err(|e| keyring_error(self.capsule, e))?;
        }
        self.read_to = writer.acknowledged();
        Ok(())
    }
}

/// What one reader of an encrypted capsule can decrypt: the content keys
/// of every epoch the keyring grants to its key. Opening a record of an
/// epoch it has not seen reads the keyring again first, so a
/// subscription keeps decrypting across a new epoch.
#[derive(Debug)]
pub struct Decryptor {
    view: KeyringView,
    reader: SecretKey,
    keys: EpochKeys,
}

impl Decryptor {
    async fn load(capsule: &Capsule, reader: SecretKey) -> Result<Decryptor, ClientError> {
        let view = KeyringView::load(capsule).await?;
        let mut d = Decryptor {
            view,
            reader,
            keys: EpochKeys::default(),
        };
        d.unwrap_keys()?;
        if d.keys.is_empty() {
            return Err(ClientError::NotReader {
                capsule: capsule.name(),
                epoch: d.view.state.current_epoch().unwrap_or(0),
            });
        }
        Ok(d)
    }

    fn unwrap_keys(&mut self) -> Result<(), ClientError> {
        let keys = self
            .view
            .state
            .keys_for(&self.reader)
            .map_err(|e| keyring_error(self.view.capsule, e))?;
        self.keys = keys;
        Ok(())
    }

    /// The capsule this decrypts.
    pub fn capsule(&self) -> Name {
        self.view.capsule
    }

    /// The epochs whose keys this reader holds, oldest first.
    pub fn epochs(&self) -> Vec<u32> {
        self.keys.epochs().collect()
    }

    /// The newest epoch of the keyring as last read.
    pub fn current_epoch(&self) -> Option<u32> {
        self.view.state.current_epoch()
    }

    /// Reads the keyring's new records, if any, and unwraps what they
    /// grant to this reader.
    pub async fn refresh(&mut self) -> Result<(), ClientError> {
        if self.view.refresh().await? {
            self.unwrap_keys()?;
        }
        Ok(())
    }

    /// `capsule`, the capsule this decrypts, as its reader sees it (what
    /// [`Capsule::as_reader`] gives, without reading the keyring again).
    pub fn into_reader(self, capsule: &Capsule) -> Result<ReaderView, ClientError> {
        if capsule.name() != self.view.capsule {
            return Err(ClientError::invalid(format!(
                "the decryptor of {} given capsule {}",
                self.view.capsule,
                capsule.name()
            )));
        }
        Ok(ReaderView {
            capsule: capsule.clone(),
            keys: self,
        })
    }

    /// The plaintext of `record` with the keys held now (no keyring read).
    pub fn open_known(&self, record: &VerifiedRecord) -> Result<Bytes, ClientError> {
        open_known(&self.keys, self.view.capsule, record)
    }

    /// The plaintext of `record`. A record of an epoch not yet known makes
    /// it read the keyring again; [`ClientError::NotReader`] if the
    /// keyring still grants that epoch's key to someone else only (a
    /// reader removed before the record was appended).
    pub async fn open(&mut self, record: &VerifiedRecord) -> Result<Bytes, ClientError> {
        let envelope = envelope_of(self.view.capsule, record)?;
        if self.keys.get(envelope.epoch()).is_none()
            && self
                .view
                .state
                .current_epoch()
                .is_none_or(|e| envelope.epoch() > e)
        {
            self.refresh().await?;
        }
        self.open_known(record)
    }
}

/// The envelope of `record`, a record of `capsule`.
fn envelope_of(capsule: Name, record: &VerifiedRecord) -> Result<EnvelopeRef<'_>, ClientError> {
    if record.capsule() != &capsule {
        return Err(ClientError::invalid(format!(
            "record of capsule {} given to the decryptor of {capsule}",
            record.capsule(),
        )));
    }
    EnvelopeRef::parse(record.payload()).map_err(|e| ClientError::Decrypt {
        capsule,
        seqno: record.seqno(),
        reason: format!("not a sealed record: {e}"),
    })
}

/// The plaintext of `record`, a record of `capsule`, with `keys`;
/// [`ClientError::NotReader`] if they lack its epoch's key.
fn open_known(
    keys: &EpochKeys,
    capsule: Name,
    record: &VerifiedRecord,
) -> Result<Bytes, ClientError> {
    let mut out = BytesMut::new();
    open_known_to(&mut Opener::new(), keys, capsule, record, &mut out)?;
    Ok(out.freeze())
}

/// [`open_known`], with the plaintext appended to `out` by `opener`.
fn open_known_to(
    opener: &mut Opener,
    keys: &EpochKeys,
    capsule: Name,
    record: &VerifiedRecord,
    out: &mut BytesMut,
) -> Result<(), ClientError> {
    let envelope = envelope_of(capsule, record)?;
    let key = keys.get(envelope.epoch()).ok_or(ClientError::NotReader {
        capsule,
        epoch: envelope.epoch(),
    })?;
    opener
        .open_to(key, &capsule, record.seqno(), envelope, out)
        .map_err(|e| ClientError::Decrypt {
            capsule,
            seqno: record.seqno(),
            reason: e.to_string(),
        })
}

/// The records of `chunk`, each with its plaintext opened with `keys`, all
/// plaintexts in one buffer (one allocation per chunk, not per record; a
/// plaintext kept keeps its chunk's buffer). A record whose epoch `keys`
/// lack gets an empty plaintext for now and its index in the second list,
/// for a decryptor that reads the keyring again; any other failure fails
/// the chunk.
fn open_chunk(
    keys: &EpochKeys,
    capsule: Name,
    chunk: Vec<VerifiedRecord>,
) -> Result<OpenedChunk, ClientError> {
    let room = chunk.iter().map(|r| r.payload().len()).sum();
    let mut buf = BytesMut::with_capacity(room);
    let mut opened = Vec::with_capacity(chunk.len());
    let mut unopened = Vec::new();
    let mut opener = Opener::new();
    for record in chunk {
        match open_known_to(&mut opener, keys, capsule, &record, &mut buf) {
            Ok(()) => {}
            Err(ClientError::NotReader { .. }) => unopened.push(opened.len()),
            Err(e) => return Err(e),
        }
        // What was just opened, sharing the buffer's allocation.
        let plaintext = buf.split().freeze();
        opened.push(OpenedRecord { record, plaintext });
    }
    Ok((opened, unopened))
}

/// Bytes of the blocks a [`SealedWriter`] seals envelopes into.
const SEAL_BLOCK: usize = 64 * 1024;

/// The writer of an encrypted capsule: seals every payload under the
/// newest epoch's key (bound to the capsule and the record's seqno)
/// before it is chained and signed. It has no way to append plaintext.
#[derive(Debug)]
pub struct SealedWriter {
    writer: Writer,
    keys: Decryptor,
    mode: Mode,
    /// Seals under the newest epoch's key (set by `use_newest_epoch`).
    sealer: Option<Sealer>,
}

impl SealedWriter {
    async fn new(capsule: &Capsule, key: SecretKey) -> Result<SealedWriter, ClientError> {
        let enc = encryption_of(capsule)?;
        let keys = Decryptor::load(capsule, key.clone()).await?;
        let writer = capsule.plain_writer(key).await?;
        let mut w = SealedWriter {
            writer,
            keys,
            mode: mode_of(enc.scheme),
            sealer: None,
        };
        w.use_newest_epoch()?;
        Ok(w)
    }

    fn use_newest_epoch(&mut self) -> Result<(), ClientError> {
        let current = self.keys.current_epoch().unwrap_or(0);
        let Some(key) = self.keys.keys.get(current) else {
            return Err(ClientError::NotReader {
                capsule: self.keys.capsule(),
                epoch: current,
            });
        };
        if self.sealer.as_ref().map(Sealer::epoch) != Some(current) {
            let capsule = self.writer.capsule().name();
            self.sealer = Some(Sealer::new(key, current, self.mode, capsule));
        }
        Ok(())
    }

    /// The capsule.
    pub fn capsule(&self) -> &Capsule {
        self.writer.capsule()
    }

    /// The epoch whose key seals the records appended now.
    pub fn epoch(&self) -> u32 {
        self.sealer.as_ref().map_or(0, Sealer::epoch)
    }

    /// The seqno the next record will get.
    pub fn next_seqno(&self) -> u64 {
        self.writer.next_seqno()
    }

    /// The newest seqno acknowledged as durable.
    pub fn acknowledged(&self) -> u64 {
        self.writer.acknowledged()
    }

    /// Reads the keyring again and seals later records under its newest
    /// epoch (after another process removed a reader). Returns the epoch.
    pub async fn refresh_keys(&mut self) -> Result<u32, ClientError> {
        self.keys.refresh().await?;
        self.use_newest_epoch()?;
        Ok(self.epoch())
    }

    /// Seals `plaintexts` and hands them to the writer (see
    /// [`Writer::submit`]). Returns the seqno of the last record.
    pub async fn submit<I>(&mut self, plaintexts: I) -> Result<u64, ClientError>
    where
        I: IntoIterator<Item = Bytes>,
    {
        // Seqnos are bound into the ciphertexts: the chain must be where
        // the writer will put them.
        if self.writer.is_stale() {
            self.writer.resync().await?;
        }
        let capsule = self.keys.capsule();
        let sealer = self.sealer.as_mut().ok_or(ClientError::NotReader {
            capsule,
            epoch: self.keys.current_epoch().unwrap_or(0),
        })?;
        let first = self.writer.next_seqno();
        // Envelopes are sealed into shared blocks and split off them: one
        // allocation per block, not per record.
        let mut block = BytesMut::new();
        let sealed: Vec<Bytes> = plaintexts
            .into_iter()
            .zip(first..)
            .map(|(p, seqno)| {
                let len = p.len() + gdp_seal::CONVERGENT_OVERHEAD;
                if block.capacity() < len {
                    block = BytesMut::with_capacity(len.max(SEAL_BLOCK));
                }
                sealer.seal_to(seqno, &p, &mut block);
                block.split().freeze()
            })
            .collect();
        if sealed.is_empty() {
            return Ok(first - 1);
        }
        self.writer.submit(sealed).await
    }

    /// Seals and appends one record; waits until it is durable.
    pub async fn append(&mut self, plaintext: impl Into<Bytes>) -> Result<u64, ClientError> {
        let seqno = self.submit([plaintext.into()]).await?;
        self.writer.flush().await?;
        Ok(seqno)
    }

    /// Seals and appends `plaintexts`; waits until all are durable.
    pub async fn append_all<I>(&mut self, plaintexts: I) -> Result<u64, ClientError>
    where
        I: IntoIterator<Item = Bytes>,
    {
        let last = self.submit(plaintexts).await?;
        self.writer.flush().await?;
        Ok(last)
    }

    /// Waits until everything submitted is durable.
    pub async fn flush(&mut self) -> Result<u64, ClientError> {
        self.writer.flush().await
    }

    /// Removes `readers` (see [`Capsule::remove_readers`]) and seals the
    /// records appended after it under the new epoch.
    pub async fn remove_readers(&mut self, readers: &[PublicKey]) -> Result<u32, ClientError> {
        let key = self.writer_key().clone();
        let epoch = remove_from(&mut self.keys.view, &key, readers).await?;
        self.keys.unwrap_keys()?;
        self.use_newest_epoch()?;
        debug_assert_eq!(self.epoch(), epoch);
        Ok(epoch)
    }

    fn writer_key(&self) -> &SecretKey {
        &self.keys.reader
    }
}

/// Starts a new epoch in `view` without `readers`; returns it.
async fn remove_from(
    view: &mut KeyringView,
    key: &SecretKey,
    readers: &[PublicKey],
) -> Result<u32, ClientError> {
    let current = view.state.readers();
    let remaining: Vec<PublicKey> = current
        .iter()
        .filter(|r| !readers.contains(r))
        .copied()
        .collect();
    if remaining.len() == current.len() {
        return Err(ClientError::invalid("none of those keys is a reader now"));
    }
    if !remaining.contains(&key.public()) {
        return Err(ClientError::invalid(
            "the key that removes readers must stay a reader (it seals the records that follow)",
        ));
    }
    let (_key, records) = view
        .state
        .rotate(&remaining)
        .map_err(|e| keyring_error(view.capsule, e))?;
    view.append(key, records).await?;
    Ok(view.state.current_epoch().unwrap_or(0))
}

impl Capsule {
    /// What `reader` can decrypt of this encrypted capsule: reads its
    /// keyring, verified, and unwraps the keys granted to `reader`.
    /// [`ClientError::NotReader`] if none is.
    pub async fn decryptor(&self, reader: &SecretKey) -> Result<Decryptor, ClientError> {
        Decryptor::load(self, reader.clone()).await
    }

    /// The writer of this encrypted capsule signing with `key` (which must
    /// be a writer and a reader): it seals every record under the newest
    /// epoch's key.
    pub async fn sealed_writer(&self, key: SecretKey) -> Result<SealedWriter, ClientError> {
        SealedWriter::new(self, key).await
    }

    /// The readers of the newest epoch (anyone can list them: grants name
    /// readers by their public keys).
    pub async fn readers(&self) -> Result<Vec<PublicKey>, ClientError> {
        Ok(KeyringView::load(self).await?.state.readers())
    }

    /// The newest epoch of this encrypted capsule's keyring.
    pub async fn epoch(&self) -> Result<u32, ClientError> {
        Ok(KeyringView::load(self)
            .await?
            .state
            .current_epoch()
            .unwrap_or(0))
    }

    /// Grants `readers` the current epoch's key, signing the keyring
    /// records with `key` (a writer of the keyring and a reader itself).
    /// Readers already granted are skipped. Returns how many were added.
    pub async fn add_readers(
        &self,
        key: &SecretKey,
        readers: &[PublicKey],
    ) -> Result<usize, ClientError> {
        let d = Decryptor::load(self, key.clone()).await?;
        let mut view = d.view;
        let epoch = view.state.current_epoch().unwrap_or(0);
        let current = d.keys.get(epoch).ok_or(ClientError::NotReader {
            capsule: self.name(),
            epoch,
        })?;
        let before = view.state.readers().len();
        let records = view
            .state
            .grant(current, readers)
            .map_err(|e| keyring_error(self.name(), e))?;
        view.append(key, records).await?;
        Ok(view.state.readers().len() - before)
    }

    /// Removes `readers`: starts a new epoch whose fresh key is wrapped to
    /// every remaining reader, signing with `key` (a writer of the keyring
    /// that stays a reader). Records appended after this are sealed under
    /// the new key by every [`SealedWriter`] opened (or refreshed) after
    /// it; the removed readers keep the keys of the epochs they had.
    /// Returns the new epoch.
    pub async fn remove_readers(
        &self,
        key: &SecretKey,
        readers: &[PublicKey],
    ) -> Result<u32, ClientError> {
        let mut view = KeyringView::load(self).await?;
        remove_from(&mut view, key, readers).await
    }

    /// Copies every record of this encrypted capsule, decrypted with
    /// `key`'s keys, into `target` (another encrypted capsule, which
    /// `key` writes), sealed under `target`'s newest epoch: for an owner
    /// who needs removed readers shut out of the history too. Returns the
    /// number of records copied.
    pub async fn reencrypt_into(
        &self,
        key: &SecretKey,
        target: &Capsule,
    ) -> Result<u64, ClientError> {
        let mut from = self.decryptor(key).await?;
        let mut to = target.sealed_writer(key.clone()).await?;
        let tail = self.tail().await?;
        let mut copied = 0u64;
        let mut next = 1u64;
        while next <= tail {
            let chunk = self.read_chunk(next, tail).await?;
            let mut plain = Vec::with_capacity(chunk.len());
            for r in &chunk {
                plain.push(from.open(r).await?);
            }
            next = chunk.last().map_or(tail, |r| r.seqno()) + 1;
            copied += plain.len() as u64;
            to.submit(plain).await?;
        }
        to.flush().await?;
        Ok(copied)
    }
}

/// Everything an encrypted capsule needs before its first record: the
/// keyring metadata's writers and the first epoch's records.
pub(crate) fn first_epoch(
    capsule: Name,
    readers: &[PublicKey],
) -> Result<Vec<KeyRecord>, ClientError> {
    let (_key, records) =
        Keyring::start(capsule, readers).map_err(|e| keyring_error(capsule, e))?;
    Ok(records)
}

/// A chunk's records with their plaintexts, and the indices of those whose
/// epoch's key was not held (their plaintexts are empty).
type OpenedChunk = (Vec<OpenedRecord>, Vec<usize>);

/// A verified record of an encrypted capsule and its plaintext.
#[derive(Debug, Clone)]
pub struct OpenedRecord {
    /// The record as stored and verified (its payload is the envelope).
    pub record: VerifiedRecord,
    /// What its writer sealed.
    pub plaintext: Bytes,
}

/// An encrypted capsule as one reader sees it ([`Capsule::as_reader`]):
/// reads and subscriptions verify every record, as on any capsule, and
/// hand out its plaintext.
#[derive(Debug)]
pub struct ReaderView {
    capsule: Capsule,
    keys: Decryptor,
}

impl ReaderView {
    /// The capsule.
    pub fn capsule(&self) -> &Capsule {
        &self.capsule
    }

    /// The keys this reader holds.
    pub fn decryptor(&mut self) -> &mut Decryptor {
        &mut self.keys
    }

    async fn opened(&mut self, record: VerifiedRecord) -> Result<OpenedRecord, ClientError> {
        let plaintext = self.keys.open(&record).await?;
        Ok(OpenedRecord { record, plaintext })
    }

    /// Record `seqno`, verified and decrypted.
    pub async fn read(&mut self, seqno: u64) -> Result<OpenedRecord, ClientError> {
        let record = self.capsule.read(seqno).await?;
        self.opened(record).await
    }

    /// Records `from..=to`, verified and decrypted.
    pub async fn read_range(
        &mut self,
        from: u64,
        to: u64,
    ) -> Result<Vec<OpenedRecord>, ClientError> {
        let mut out = Vec::new();
        let mut chunks = std::pin::pin!(self.read_chunks(from, to));
        while let Some(chunk) = chunks.next().await {
            out.extend(chunk?);
        }
        Ok(out)
    }

    /// Records `from..=to`, verified and decrypted, as a stream of chunks
    /// in order: [`Capsule::read_chunks`], with each chunk decrypted on the
    /// task that read and verified it (side by side for the chunks in
    /// flight, with the keys held when the stream started). A record of an
    /// epoch those keys lack is opened as [`Decryptor::open`] does, reading
    /// the keyring again. The stream ends after `to`, or after the first
    /// error.
    pub fn read_chunks(
        &mut self,
        from: u64,
        to: u64,
    ) -> impl Stream<Item = Result<Vec<OpenedRecord>, ClientError>> + Send + '_ {
        let (keys, capsule) = (Arc::new(self.keys.keys.clone()), self.capsule.name());
        let open: ChunkFn<Result<OpenedChunk, ClientError>> =
            Arc::new(move |chunk| open_chunk(&keys, capsule, chunk));
        let chunks = Box::pin(self.capsule.read_chunks_then(from, to, open));
        futures::stream::unfold(Some((chunks, &mut self.keys)), |state| async move {
            let (mut chunks, keys) = state?;
            let (mut opened, unopened) = match chunks.next().await? {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) | Err(e) => return Some((Err(e), None)),
            };
            for i in unopened {
                let slot = &mut opened[i];
                match keys.open(&slot.record).await {
                    Ok(plaintext) => slot.plaintext = plaintext,
                    Err(e) => return Some((Err(e), None)),
                }
            }
            Some((Ok(opened), Some((chunks, keys))))
        })
    }

    /// The newest record, verified and decrypted, or `None`.
    pub async fn latest(&mut self) -> Result<Option<OpenedRecord>, ClientError> {
        match self.capsule.latest().await? {
            Some(record) => Ok(Some(self.opened(record).await?)),
            None => Ok(None),
        }
    }

    /// Verified, decrypted records from seqno `from` on, as
    /// [`Capsule::subscribe`] delivers them; a record of a new epoch makes
    /// the keyring be read again first. The stream ends after the first
    /// error.
    pub fn subscribe(
        self,
        from: u64,
    ) -> impl futures::Stream<Item = Result<OpenedRecord, ClientError>> + Send + 'static {
        use futures::StreamExt;
        let subscription = self.capsule.subscribe(from);
        futures::stream::unfold(Some((subscription, self)), |state| async move {
            let (mut subscription, mut view) = state?;
            let item = match subscription.next().await? {
                Ok(record) => view.opened(record).await,
                Err(e) => Err(e),
            };
            let next = item.is_ok().then_some((subscription, view));
            Some((item, next))
        })
    }
}

impl Capsule {
    /// This encrypted capsule as `reader` sees it: reads and subscriptions
    /// that hand out plaintext ([`ClientError::NotReader`] if the keyring
    /// grants `reader` nothing).
    pub async fn as_reader(&self, reader: &SecretKey) -> Result<ReaderView, ClientError> {
        Ok(ReaderView {
            capsule: self.clone(),
            keys: self.decryptor(reader).await?,
        })
    }
}
