//! The client: one identity attached to one router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Identity, Metadata, Name, PublicKey, SecretKey, Timestamp};
use gdp_link::endpoint::{EndpointConfig, EndpointLink};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::pdu::{Flags, Pdu, PduHeader, PduType};
use tokio::time::Instant;

use crate::ClientError;
use crate::capsule::Capsule;
use crate::connection::{self, Datagram, LinkState, Shared};
use crate::options::ClientOptions;
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
        }
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
        let adcert = AdCert::issue(owner, md.name(), server, validity);
        self.host_capsule(server, md, adcert).await
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
