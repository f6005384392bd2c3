//! The client: one identity attached to one router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, ReplicaSet, Validity};
use gdp_certs::codec::Encode;
use gdp_certs::{
    Encryption, EncryptionScheme, Identity, Metadata, Name, PublicKey, SecretKey, Timestamp,
};
use gdp_link::endpoint::{EndpointConfig, EndpointLink};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::chain::ChainState;
use gdp_proto::pdu::{Flags, Pdu, PduHeader, PduType};
use tokio::time::Instant;

use crate::ClientError;
use crate::capsule::Capsule;
use crate::connection::{self, Datagram, LinkState, Shared};
use crate::options::ClientOptions;
use crate::replicas::Replication;
use crate::verified::check_capsule_metadata;

/// Default validity of the AdCert issued when a capsule is created.
pub const DEFAULT_ADCERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a new capsule looks like. [`CapsuleSpec::new`] gives a capsule
/// whose only writer is its owner, hostable anywhere.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CapsuleSpec {
    /// A label for people (at most 255 bytes).
    pub label: String,
    /// Writer keys; empty means the owner alone.
    pub writers: Vec<PublicKey>,
    /// Servers allowed to host it; empty means any.
    pub hosting: Vec<Name>,
    /// How long the server may serve it (the AdCert's lifetime).
    pub adcert_validity: Duration,
    /// Encrypted, and how ([`Client::create_encrypted`]); `None`: plaintext.
    pub encryption: Option<EncryptionScheme>,
    /// Readers of an encrypted capsule besides its owner and writers
    /// (who are always readers: they seal the records).
    pub readers: Vec<PublicKey>,
}

impl CapsuleSpec {
    /// A capsule labelled `label`, written by its owner, hostable anywhere,
    /// served for [`DEFAULT_ADCERT_VALIDITY`].
    pub fn new(label: impl Into<String>) -> Self {
        CapsuleSpec {
            label: label.into(),
            writers: Vec::new(),
            hosting: Vec::new(),
            adcert_validity: DEFAULT_ADCERT_VALIDITY,
            encryption: None,
            readers: Vec::new(),
        }
    }

    /// The same, encrypted with `scheme`.
    pub fn encrypted(mut self, scheme: EncryptionScheme) -> Self {
        self.encryption = Some(scheme);
        self
    }

    /// The same, with `reader` as a reader of the first epoch.
    pub fn with_reader(mut self, reader: PublicKey) -> Self {
        self.readers.push(reader);
        self
    }

    /// The same, with `writer` as an additional writer.
    pub fn with_writer(mut self, writer: PublicKey) -> Self {
        self.writers.push(writer);
        self
    }
}

/// A capsule just created: a handle to it and the AdCert given to its
/// server (keep both: the metadata is what proves the name).
#[derive(Debug, Clone)]
pub struct Created {
    /// The capsule.
    pub capsule: Capsule,
    /// The owner's certificate for the server.
    pub adcert: AdCert,
}

/// An encrypted capsule just created: the capsule and its keyring, each
/// with the AdCert given to the server (keep both capsules' metadata).
#[derive(Debug, Clone)]
pub struct CreatedEncrypted {
    /// The data capsule (its metadata says it is encrypted and names the
    /// keyring).
    pub capsule: Created,
    /// The keyring capsule, holding the first epoch's grants.
    pub keyring: Created,
}

/// An encrypted capsule just placed on several servers, with its keyring
/// on the same servers.
#[derive(Debug, Clone)]
pub struct CreatedEncryptedReplicated {
    /// The data capsule, with majority quorums over its replicas.
    pub capsule: CreatedReplicated,
    /// The keyring capsule, placed on the same servers.
    pub keyring: CreatedReplicated,
}

/// A capsule just placed on several servers
/// ([`Client::create_replicated`]).
#[derive(Debug, Clone)]
pub struct CreatedReplicated {
    /// The capsule, with majority quorums over its replicas
    /// ([`Replication::majority`]); change them with
    /// [`Capsule::with_replication`].
    pub capsule: Capsule,
    /// The owner-signed replica set every replica holds.
    pub set: ReplicaSet,
    /// The AdCert given to each replica, in the order of the set's
    /// (sorted) servers.
    pub adcerts: Vec<AdCert>,
}

/// Stops the supervisor when the last handle goes.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// A GDP client: an identity attached to a router, with requests matched
/// to answers by request id, and a link that is re-established when it
/// drops. Cheap to clone; the link closes when the last clone (and every
/// [`Capsule`], [`Writer`](crate::Writer) and
/// [`Subscription`](crate::Subscription) made from it) is dropped, or at
/// [`Client::shutdown`].
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Handle>,
}

impl Client {
    /// Dials the router at `router_addr`, attaches as `identity` (a client
    /// or a server identity) and starts the client. With
    /// [`ClientOptions::router`] set the router must prove that name;
    /// otherwise the first router that answers is trusted and pinned.
    ///
    /// A router keeps one link per attached name: a second client that
    /// attaches with the same identity (in this process or another) takes
    /// the name's traffic from the first. Give each concurrent client its
    /// own identity; the keys that sign capsules and records are passed to
    /// [`Client::create_capsule`] and [`Capsule::writer`](crate::Capsule::writer) separately, so a
    /// client that only reads, writes or subscribes can attach under a
    /// fresh [`Identity::generate`]d one.
    pub async fn connect(
        router_addr: SocketAddr,
        identity: Identity,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let options = options.sanitized();
        let mut config = EndpointConfig::new(router_addr);
        config.router = options.router;
        config.attach_timeout = options.connect_timeout;
        config.transport.keep_alive = options.keep_alive;
        config.transport.idle_timeout = options.idle_timeout;
        let (link, incoming) = EndpointLink::connect(&identity, &config).await?;
        // Trust on first use: later reconnects insist on this router.
        config.router = Some(link.router_name());
        let (shared, task) = connection::start(identity, options, config, link, incoming);
        Ok(Client {
            inner: Arc::new(Handle {
                shared,
                task: std::sync::Mutex::new(Some(task)),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// This client's name.
    pub fn name(&self) -> Name {
        self.inner.shared.name()
    }

    /// This client's identity.
    pub fn identity(&self) -> &Identity {
        &self.inner.shared.identity
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.shared.options
    }

    /// The router this client is attached to, `None` while it is not.
    pub fn router_name(&self) -> Option<Name> {
        match self.inner.shared.state() {
            LinkState::Up(link) => Some(link.router_name()),
            _ => None,
        }
    }

    /// True while the link to the router is up.
    pub fn is_connected(&self) -> bool {
        matches!(self.inner.shared.state(), LinkState::Up(_))
    }

    /// Sends a capsule request to `dst` (a capsule, or a server for a
    /// `Create`) and returns the answer. An `Error` answer becomes
    /// [`ClientError::Server`]. Nothing in the answer is verified: the
    /// typed methods of [`Capsule`] do that.
    pub async fn request(
        &self,
        dst: Name,
        request: &CapsuleRequest,
    ) -> Result<CapsuleResponse, ClientError> {
        let shared = self.shared();
        let pdu = request
            .to_pdu(dst, shared.name(), shared.next_id())
            .map_err(|e| ClientError::invalid(e.to_string()))?;
        let answer = connection::call(shared, pdu, request_name(request)).await?;
        decode_response(&answer)
    }

    /// Fetches the metadata of capsule `name` and checks that it hashes to
    /// the name.
    pub async fn fetch_metadata(&self, name: Name) -> Result<Metadata, ClientError> {
        match self.request(name, &CapsuleRequest::GetMetadata).await? {
            CapsuleResponse::Metadata { metadata } => {
                check_capsule_metadata(&metadata, &name)?;
                Ok(metadata)
            }
            other => Err(unexpected("GetMetadata", &other)),
        }
    }

    /// A handle to capsule `name`, with its metadata fetched and verified.
    pub async fn open(&self, name: Name) -> Result<Capsule, ClientError> {
        let md = self.fetch_metadata(name).await?;
        Ok(Capsule::new(self.clone(), md))
    }

    /// A handle to capsule `name` that knows its replicas: its metadata
    /// fetched and verified, and the replica set the server reached by the
    /// capsule's name holds, verified against it, with majority quorums
    /// (change them with [`Capsule::with_replication`]). A capsule without
    /// a set gets a plain handle, as from [`Client::open`].
    ///
    /// The set is the one that server holds: owner-signed, but possibly
    /// older than the newest if the owner moved the capsule and that server
    /// was not told; a capsule file keeps the set its owner issued.
    pub async fn open_replicated(&self, name: Name) -> Result<Capsule, ClientError> {
        let capsule = self.open(name).await?;
        match self.current_set(&capsule).await? {
            Some(set) => capsule.with_replication(Replication::majority(set)),
            None => Ok(capsule),
        }
    }

    /// A handle to the capsule described by `metadata` (known locally, so
    /// trusted as far as it hashes to the capsule's name).
    pub fn capsule(&self, metadata: Metadata) -> Result<Capsule, ClientError> {
        check_capsule_metadata(&metadata, &metadata.name())?;
        Ok(Capsule::new(self.clone(), metadata))
    }

    /// Creates a capsule owned by `owner` on the server named `server`:
    /// builds its metadata and an AdCert for the server, and sends `Create`
    /// to the server's name (a new capsule has no route yet). The server
    /// advertises the capsule before it answers, so the capsule is
    /// reachable by name once this returns (routers elsewhere may take a
    /// moment to see it; requests retry "no route" for
    /// [`ClientOptions::no_route_retry`]).
    pub async fn create_capsule(
        &self,
        server: Name,
        owner: &SecretKey,
        spec: CapsuleSpec,
    ) -> Result<Created, ClientError> {
        refuse_encryption(&spec)?;
        let (md, validity) = capsule_metadata(owner, spec)?;
        let adcert = AdCert::issue(owner, md.name(), server, validity);
        self.host_capsule(server, md, adcert).await
    }

    /// Creates an encrypted capsule owned by `owner` on `server`, with its
    /// keyring: first the keyring capsule (same owner; its writers are the
    /// capsule's writers and the owner), then the capsule, whose signed
    /// metadata names the keyring and the scheme (`spec.encryption`,
    /// XChaCha20-Poly1305 under epoch keys when `None`), then the first
    /// epoch: a fresh content key wrapped to the owner, every writer and
    /// `spec.readers`. Write it with [`Capsule::sealed_writer`]; read it
    /// with [`Capsule::decryptor`].
    pub async fn create_encrypted(
        &self,
        server: Name,
        owner: &SecretKey,
        spec: CapsuleSpec,
    ) -> Result<CreatedEncrypted, ClientError> {
        let (keyring_md, md, first, validity) = encrypted_metadata(owner, spec)?;
        let keyring_cert = AdCert::issue(owner, keyring_md.name(), server, validity);
        let keyring = self.host_capsule(server, keyring_md, keyring_cert).await?;
        write_first_epoch(&keyring.capsule, owner, &first).await?;
        let cert = AdCert::issue(owner, md.name(), server, validity);
        let capsule = self.host_capsule(server, md, cert).await?;
        Ok(CreatedEncrypted { capsule, keyring })
    }

    /// Asks `server` to host the capsule `metadata` under `adcert` (an
    /// AdCert the owner issued to that server): how an existing capsule
    /// gets another replica, or a new server after the first one is lost.
    pub async fn host_capsule(
        &self,
        server: Name,
        metadata: Metadata,
        adcert: AdCert,
    ) -> Result<Created, ClientError> {
        if adcert.capsule() != metadata.name() || adcert.server() != server {
            return Err(ClientError::invalid(
                "the AdCert does not name this capsule and server",
            ));
        }
        let request = CapsuleRequest::Create {
            metadata: metadata.clone(),
            adcert: adcert.clone(),
        };
        match self.request(server, &request).await? {
            CapsuleResponse::Created => Ok(Created {
                capsule: Capsule::new(self.clone(), metadata),
                adcert,
            }),
            other => Err(unexpected("Create", &other)),
        }
    }

    /// Creates a capsule owned by `owner` on every server of `servers` (1
    /// to [`MAX_REPLICAS`](gdp_certs::cert::MAX_REPLICAS), duplicates
    /// ignored): builds its metadata once, gives each server an AdCert of
    /// its own and sends it `Create` (addressed to the server's name, as
    /// [`Client::create_capsule`] does), then issues the owner-signed
    /// [`ReplicaSet`] of those servers (its version is the current time in
    /// microseconds) and hands it to each with `SetReplicas`, so that the
    /// replicas know each other.
    ///
    /// Succeeds only when every server created the capsule and kept the
    /// set; otherwise [`ClientError::Quorum`] names each server's answer
    /// (the capsule may then exist on some of them: calling this again
    /// with a new spec makes another capsule, so place it on the missing
    /// servers with [`Client::set_replicas`] instead). The handle returned
    /// writes to every replica and reads from a majority.
    pub async fn create_replicated(
        &self,
        servers: &[Name],
        owner: &SecretKey,
        spec: CapsuleSpec,
    ) -> Result<CreatedReplicated, ClientError> {
        refuse_encryption(&spec)?;
        let (md, validity) = capsule_metadata(owner, spec)?;
        self.place_replicated(servers, owner, md, validity).await
    }

    /// Creates an encrypted capsule owned by `owner` on every server of
    /// `servers`, with its keyring on the same servers: what
    /// [`Client::create_encrypted`] does for one server, placed as
    /// [`Client::create_replicated`] places a capsule. The keyring's
    /// records are written to its replicas with the same majority quorum,
    /// and readers and writers reach it through its replica set.
    pub async fn create_encrypted_replicated(
        &self,
        servers: &[Name],
        owner: &SecretKey,
        spec: CapsuleSpec,
    ) -> Result<CreatedEncryptedReplicated, ClientError> {
        let (keyring_md, md, first, validity) = encrypted_metadata(owner, spec)?;
        let keyring = self
            .place_replicated(servers, owner, keyring_md, validity)
            .await?;
        write_first_epoch(&keyring.capsule, owner, &first).await?;
        let capsule = self.place_replicated(servers, owner, md, validity).await?;
        Ok(CreatedEncryptedReplicated { capsule, keyring })
    }

    /// Creates the capsule `md` on every server of `servers` and hands them
    /// its replica set.
    async fn place_replicated(
        &self,
        servers: &[Name],
        owner: &SecretKey,
        md: Metadata,
        validity: Validity,
    ) -> Result<CreatedReplicated, ClientError> {
        let set = issue_set(owner, &md, Timestamp::now().0, servers.to_vec())?;
        let adcerts: Vec<AdCert> = set
            .servers()
            .iter()
            .map(|s| AdCert::issue(owner, md.name(), *s, validity))
            .collect();
        let created = futures::future::join_all(
            adcerts
                .iter()
                .map(|c| self.host_capsule(c.server(), md.clone(), c.clone())),
        )
        .await;
        every_server("create", set.servers(), created)?;
        self.hand_out_set(&md, &set, set.servers()).await?;
        let capsule =
            Capsule::new(self.clone(), md).with_replication(Replication::majority(set.clone()))?;
        Ok(CreatedReplicated {
            capsule,
            set,
            adcerts,
        })
    }

    /// Moves `capsule` to the replicas `servers`, adding and retiring
    /// servers: creates the capsule on the servers that are new (with an
    /// AdCert valid for [`DEFAULT_ADCERT_VALIDITY`]), issues a set newer
    /// than the current one, signed by `owner` (the capsule's owner), and
    /// hands it to every server of the old set and the new one, so that
    /// retired servers learn they are out. New replicas get the records
    /// from the others by anti-entropy.
    ///
    /// The current set is the handle's [`Capsule::replication`], or the
    /// one the server reached by the capsule's name holds. Succeeds when
    /// every server of the new set created the capsule and kept the set (a
    /// retired server that cannot be reached is only logged); returns the
    /// new set. Give the handle the new set with
    /// [`Capsule::with_replication`].
    pub async fn set_replicas(
        &self,
        capsule: &Capsule,
        owner: &SecretKey,
        servers: &[Name],
    ) -> Result<ReplicaSet, ClientError> {
        let md = capsule.metadata();
        if owner.public() != *md.key() {
            return Err(ClientError::invalid(format!(
                "only the owner of capsule {} may place it",
                capsule.name()
            )));
        }
        let old = match capsule.replication() {
            Some(r) => Some(r.set().clone()),
            None => self.current_set(capsule).await?,
        };
        let version = Timestamp::now()
            .0
            .max(old.as_ref().map_or(0, |s| s.version().saturating_add(1)));
        let set = issue_set(owner, md, version, servers.to_vec())?;
        let added: Vec<Name> = set
            .servers()
            .iter()
            .filter(|s| !old.as_ref().is_some_and(|o| o.contains(s)))
            .copied()
            .collect();
        let now = Timestamp::now();
        let validity = Validity::new(
            now.saturating_sub(Duration::from_secs(300)),
            now.saturating_add(DEFAULT_ADCERT_VALIDITY),
        );
        let created = futures::future::join_all(added.iter().map(|s| {
            let adcert = AdCert::issue(owner, md.name(), *s, validity);
            self.host_capsule(*s, md.clone(), adcert)
        }))
        .await;
        every_server("create", &added, created)?;
        let retired: Vec<Name> = old
            .iter()
            .flat_map(|o| o.servers())
            .filter(|s| !set.contains(s))
            .copied()
            .collect();
        self.hand_out_set(md, &set, set.servers()).await?;
        let told =
            futures::future::join_all(retired.iter().map(|s| self.push_replica_set(md, &set, *s)))
                .await;
        for (server, result) in retired.iter().zip(told) {
            if let Err(e) = result {
                tracing::warn!(%server, error = %e, "a retired replica was not told it is out");
            }
        }
        Ok(set)
    }

    /// The replica set `server` holds for capsule `capsule`, asked with an
    /// `At` request. The set is not verified (that needs the capsule's
    /// metadata: [`ReplicaSet::verify`]); only its capsule is checked.
    pub async fn fetch_replicas(
        &self,
        capsule: Name,
        server: Name,
    ) -> Result<Option<ReplicaSet>, ClientError> {
        let request = CapsuleRequest::at(capsule, CapsuleRequest::GetReplicas);
        match self.request(server, &request).await? {
            CapsuleResponse::Replicas { set: Some(set) } if set.capsule() != capsule => {
                Err(ClientError::protocol(format!(
                    "asked for the replicas of {capsule}, got those of {}",
                    set.capsule()
                )))
            }
            CapsuleResponse::Replicas { set } => Ok(set),
            other => Err(unexpected("GetReplicas", &other)),
        }
    }

    /// The verified replica set the server reached by `capsule`'s name
    /// holds, if any.
    async fn current_set(&self, capsule: &Capsule) -> Result<Option<ReplicaSet>, ClientError> {
        match self
            .request(capsule.name(), &CapsuleRequest::GetReplicas)
            .await
        {
            Ok(CapsuleResponse::Replicas { set: None }) => Ok(None),
            Ok(CapsuleResponse::Replicas { set: Some(set) }) => {
                set.verify(capsule.metadata()).map_err(|e| {
                    ClientError::protocol(format!("the current replica set does not verify: {e}"))
                })?;
                Ok(Some(set))
            }
            Ok(other) => Err(unexpected("GetReplicas", &other)),
            Err(e) => Err(e),
        }
    }

    /// Hands `set` to each of `servers`; every one must keep it.
    async fn hand_out_set(
        &self,
        md: &Metadata,
        set: &ReplicaSet,
        servers: &[Name],
    ) -> Result<(), ClientError> {
        let kept =
            futures::future::join_all(servers.iter().map(|s| self.push_replica_set(md, set, *s)))
                .await;
        every_server("set replicas", servers, kept).map(|_| ())
    }

    /// Hands `set` to `server` (`At{SetReplicas}`) and checks that it kept
    /// it.
    async fn push_replica_set(
        &self,
        md: &Metadata,
        set: &ReplicaSet,
        server: Name,
    ) -> Result<(), ClientError> {
        let request = CapsuleRequest::at(
            set.capsule(),
            CapsuleRequest::SetReplicas { set: set.clone() },
        );
        match self.request(server, &request).await? {
            CapsuleResponse::Replicas { set: Some(kept) } => check_kept(md, set, &kept),
            CapsuleResponse::Replicas { set: None } => {
                Err(ClientError::protocol("the server kept no replica set"))
            }
            other => Err(unexpected("SetReplicas", &other)),
        }
    }

    /// Measures the round trip to `dst` (a router, or an endpoint that
    /// answers pings) across the overlay.
    pub async fn ping(&self, dst: Name) -> Result<Duration, ClientError> {
        let shared = self.shared();
        let id = shared.next_id();
        let header = PduHeader::new(PduType::Ping, dst, shared.name(), id);
        let pdu = Pdu::new(header, Bytes::copy_from_slice(&id.to_be_bytes()))
            .map_err(|e| ClientError::invalid(e.to_string()))?;
        let start = Instant::now();
        let answer = connection::call(shared, pdu, "ping").await?;
        if answer.header.ptype != PduType::Pong || answer.header.src != dst {
            return Err(ClientError::protocol(format!(
                "a {:?} from {} answered a ping to {dst}",
                answer.header.ptype, answer.header.src
            )));
        }
        Ok(start.elapsed())
    }

    /// Sends a datagram to `dst` on the reliable stream (it arrives unless
    /// a link on the path fails). Returns its sequence number.
    pub async fn send(&self, dst: Name, payload: impl Into<Bytes>) -> Result<u64, ClientError> {
        let shared = self.shared();
        let pdu = data_pdu(shared, dst, payload.into(), Flags::EMPTY)?;
        connection::send_only(shared, &pdu, "send").await?;
        Ok(pdu.header.seq)
    }

    /// Sends a datagram to `dst` as a QUIC datagram: cheaper, and dropped
    /// rather than queued under load. Returns its sequence number.
    pub async fn send_unreliable(
        &self,
        dst: Name,
        payload: impl Into<Bytes>,
    ) -> Result<u64, ClientError> {
        let shared = self.shared();
        let pdu = data_pdu(shared, dst, payload.into(), Flags::UNRELIABLE)?;
        let deadline = Instant::now() + shared.options.request_timeout;
        let link = shared.link(deadline, "send").await?;
        if link.send_unreliable(&pdu).is_err() {
            // Refused only by a link that is closing.
            return Err(ClientError::LinkDown(link.closed().await));
        }
        Ok(pdu.header.seq)
    }

    /// The next datagram sent to this client, waiting for one. Only one
    /// caller receives each datagram.
    pub async fn recv(&self) -> Result<Datagram, ClientError> {
        let mut rx = self.shared().datagrams_rx.lock().await;
        rx.recv().await.ok_or(ClientError::Closed)
    }

    /// Datagrams dropped because [`Client::recv`] was not called in time.
    pub fn dropped_datagrams(&self) -> u64 {
        self.shared().dropped_datagrams()
    }

    /// Publish PDUs of delivery trees dropped because a tree subscription's
    /// queue ([`ClientOptions::publish_queue`]) was full. Their records are
    /// read by unicast instead.
    pub fn dropped_publishes(&self) -> u64 {
        self.shared().dropped_publishes()
    }

    /// Requests sent again because no answer came within
    /// [`ClientOptions::retransmit_after`] (a request or its answer lost
    /// on the way).
    pub fn retransmits(&self) -> u64 {
        self.shared().retransmits()
    }

    /// Closes the link gracefully and stops reconnecting. Other handles
    /// fail with [`ClientError::Closed`] from then on.
    pub async fn shutdown(&self) {
        self.shared().stop();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The keyring's metadata, the encrypted capsule's, the first epoch's
/// keyring records and the AdCerts' validity, for `spec`.
fn encrypted_metadata(
    owner: &SecretKey,
    spec: CapsuleSpec,
) -> Result<(Metadata, Metadata, Vec<gdp_seal::KeyRecord>, Validity), ClientError> {
    let scheme = spec.encryption.unwrap_or(EncryptionScheme::Epoch);
    let mut readers = spec.readers.clone();
    let (plain, validity) = capsule_metadata(owner, spec)?;
    let mut keyring_writers = vec![owner.public()];
    keyring_writers.extend(plain.writers().iter().filter(|w| **w != owner.public()));
    let keyring_md = Metadata::capsule(
        owner.public(),
        keyring_writers.clone(),
        keyring_label(plain.label()),
        plain.created(),
        plain.hosting().to_vec(),
    )
    .map_err(|e| ClientError::invalid(e.to_string()))?;
    let md = plain
        .with_encryption(Encryption {
            scheme,
            keyring: keyring_md.name(),
        })
        .map_err(|e| ClientError::invalid(e.to_string()))?;
    readers.extend(keyring_writers);
    readers.sort_unstable_by_key(|k| *k.as_bytes());
    readers.dedup();
    let first = crate::sealed::first_epoch(md.name(), &readers)?;
    Ok((keyring_md, md, first, validity))
}

/// Appends the first epoch's records to a keyring capsule just created.
async fn write_first_epoch(
    keyring: &Capsule,
    owner: &SecretKey,
    first: &[gdp_seal::KeyRecord],
) -> Result<(), ClientError> {
    let mut w = keyring.writer_at(owner.clone(), ChainState::new(keyring.name()))?;
    w.append_all(first.iter().map(Encode::to_bytes)).await?;
    Ok(())
}

/// An encrypted spec given to a creator of plaintext capsules.
fn refuse_encryption(spec: &CapsuleSpec) -> Result<(), ClientError> {
    if spec.encryption.is_some() || !spec.readers.is_empty() {
        return Err(ClientError::invalid(
            "an encrypted capsule (a spec with encryption or readers) is made with Client::create_encrypted",
        ));
    }
    Ok(())
}

/// The metadata of a new capsule owned by `owner` as `spec` describes it,
/// and the validity of its AdCerts.
fn capsule_metadata(
    owner: &SecretKey,
    spec: CapsuleSpec,
) -> Result<(Metadata, Validity), ClientError> {
    let now = Timestamp::now();
    let writers = if spec.writers.is_empty() {
        vec![owner.public()]
    } else {
        spec.writers
    };
    let md = Metadata::capsule(owner.public(), writers, spec.label, now, spec.hosting)
        .map_err(|e| ClientError::invalid(e.to_string()))?;
    // Backdated a little, for servers whose clock is behind.
    let validity = Validity::new(
        now.saturating_sub(Duration::from_secs(300)),
        now.saturating_add(spec.adcert_validity),
    );
    Ok((md, validity))
}

/// The label of the keyring of a capsule labelled `label`, within
/// [`MAX_LABEL_LEN`](gdp_certs::MAX_LABEL_LEN) bytes.
fn keyring_label(label: &str) -> String {
    const PREFIX: &str = "keyring of ";
    let mut end = label.len().min(gdp_certs::MAX_LABEL_LEN - PREFIX.len());
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    format!("{PREFIX}{}", &label[..end])
}

/// The replica set `servers` of the capsule `md`, version `version`,
/// signed by `owner` and checked against the metadata.
fn issue_set(
    owner: &SecretKey,
    md: &Metadata,
    version: u64,
    servers: Vec<Name>,
) -> Result<ReplicaSet, ClientError> {
    let set = ReplicaSet::issue(owner, md.name(), version, servers)
        .map_err(|e| ClientError::invalid(format!("replica set: {e}")))?;
    set.verify(md)
        .map_err(|e| ClientError::invalid(format!("replica set: {e}")))?;
    Ok(set)
}

/// Checks that a server kept `set`: the set it answers with is `set`'s
/// version, and verifies.
fn check_kept(md: &Metadata, set: &ReplicaSet, kept: &ReplicaSet) -> Result<(), ClientError> {
    if kept.verify(md).is_err() {
        return Err(ClientError::protocol(
            "the server answered with a replica set that does not verify",
        ));
    }
    if kept.version() != set.version() {
        return Err(ClientError::protocol(format!(
            "the server kept replica set version {} instead of {}",
            kept.version(),
            set.version()
        )));
    }
    Ok(())
}

/// The results of one request to each of `servers`, all of which must
/// succeed; otherwise [`ClientError::Quorum`] names each server's outcome.
fn every_server<T>(
    what: &'static str,
    servers: &[Name],
    results: Vec<Result<T, ClientError>>,
) -> Result<Vec<T>, ClientError> {
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed == 0 {
        return Ok(results.into_iter().filter_map(Result::ok).collect());
    }
    let transient = results
        .iter()
        .all(|r| r.as_ref().err().is_none_or(ClientError::is_transient));
    let outcomes = servers
        .iter()
        .zip(&results)
        .map(|(s, r)| {
            let outcome = match r {
                Ok(_) => "done".to_owned(),
                Err(e) => e.to_string(),
            };
            (*s, outcome)
        })
        .collect();
    Err(ClientError::Quorum {
        what,
        needed: servers.len(),
        got: servers.len() - failed,
        outcomes,
        transient,
    })
}

/// A Data PDU from this client.
fn data_pdu(shared: &Shared, dst: Name, payload: Bytes, flags: Flags) -> Result<Pdu, ClientError> {
    let header =
        PduHeader::new(PduType::Data, dst, shared.name(), shared.next_id()).with_flags(flags);
    Pdu::new(header, payload).map_err(|e| ClientError::invalid(e.to_string()))
}

/// The name of a request, for errors.
pub(crate) fn request_name(r: &CapsuleRequest) -> &'static str {
    match r {
        CapsuleRequest::Create { .. } => "create",
        CapsuleRequest::Append { .. } => "append",
        CapsuleRequest::Read { .. } => "read",
        CapsuleRequest::ReadRange { .. } => "read range",
        CapsuleRequest::Latest => "latest",
        CapsuleRequest::Subscribe { .. } => "subscribe",
        CapsuleRequest::Unsubscribe => "unsubscribe",
        CapsuleRequest::GetMetadata => "metadata",
        CapsuleRequest::Sync { .. } => "sync",
        CapsuleRequest::GetReplicas => "get replicas",
        CapsuleRequest::SetReplicas { .. } => "set replicas",
        CapsuleRequest::GetForks => "get forks",
        CapsuleRequest::At { request, .. } => request_name(request),
        _ => "capsule request",
    }
}

/// The capsule response in `pdu`; an `Error` answer becomes
/// [`ClientError::Server`].
pub(crate) fn decode_response(pdu: &Pdu) -> Result<CapsuleResponse, ClientError> {
    match CapsuleResponse::from_pdu(pdu) {
        Ok(CapsuleResponse::Error { code, message }) => Err(ClientError::Server { code, message }),
        Ok(r) => Ok(r),
        Err(e) => Err(ClientError::protocol(format!(
            "undecodable answer from {}: {e}",
            pdu.header.src
        ))),
    }
}

/// The error for an answer of the wrong type.
pub(crate) fn unexpected(request: &str, answer: &CapsuleResponse) -> ClientError {
    let kind = match answer {
        CapsuleResponse::Created => "Created",
        CapsuleResponse::Appended { .. } => "Appended",
        CapsuleResponse::Records { .. } => "Records",
        CapsuleResponse::Metadata { .. } => "Metadata",
        CapsuleResponse::Event { .. } => "Event",
        CapsuleResponse::Error { .. } => "Error",
        CapsuleResponse::Subscribed { .. } => "Subscribed",
        CapsuleResponse::Unsubscribed => "Unsubscribed",
        CapsuleResponse::Synced { .. } => "Synced",
        CapsuleResponse::Replicas { .. } => "Replicas",
        CapsuleResponse::Forks { .. } => "Forks",
        _ => "an unknown response",
    };
    ClientError::protocol(format!("{kind} in answer to {request}"))
}
