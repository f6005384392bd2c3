//! The network driver: a capsule server attached to its router.
//!
//! [`run`] opens the store, starts the committer and the [`Host`] (the
//! service's task), attaches to the router as an endpoint
//! ([`gdp_link::endpoint`]), advertises every hosted capsule, and then
//! serves Capsule PDUs until it is told to stop.
//!
//! # Data flow
//!
//! ```text
//!            router
//!              │ EndpointReceiver (bounded)            ▲ EndpointLink::send_batch
//!              ▼                                       │
//!   session task: Capsule request PDU ──► Request ──► Host inbox (bounded) ──► CapsuleService
//!     NakNoRoute ──► peer gone / end a subscription                              │ writes ▼
//!     renewal and reconnect                                      committer thread (group commit)
//!                                                                                │ acks
//!                                                    Host outbox (bounded) ◄─────┘ responses, events
//!                                                          │
//!                                            responder task: Book::reply, advertise created
//!                                            capsules first, then the responses ──► router
//! ```
//!
//! - **Requests** are Capsule PDUs addressed to a capsule (`dst`), decoded
//!   with [`Request::from_pdu`]. A `Create` may also be addressed to the
//!   server's own name, since a new capsule has no route yet; the answer
//!   then comes from the server's name. So may a directed request
//!   (`At{capsule, request}`), with which a writer reaches each replica of
//!   a capsule and replicas sync with each other. Requests that do not
//!   decode are answered with a `BadRequest` error.
//! - **Answers to this server's requests** (Capsule responses addressed to
//!   the server's name: the other replicas answering its `Sync`s) go to the
//!   service as [`PeerResponse`]s; its requests leave through the responder
//!   from the server's name.
//! - **Responses** leave from the capsule's name (`src`) to the requester
//!   (`dst`) with the request id, when the capsule is advertised on the
//!   link; otherwise (a capsule not hosted here, a failed create) from the
//!   server's name, because a router drops PDUs whose source the link has
//!   not proved. A capsule just created is advertised before its `Created`
//!   answer, on the same stream.
//! - **Delivery trees**: `Subscribe` and `Unsubscribe` PDUs (from the
//!   router, joining or leaving a capsule's tree for the subscribers behind
//!   it) go to the service as [`TreeRequest`]s with the name of the link's
//!   router, the only sender it obeys. The [`Publish`](crate::service::Publish)es
//!   they cause leave through the responder as Publish PDUs from the
//!   capsule's name, one per durable append (and a tip now and then).
//! - **Subscriptions** (unicast): events are responses like any other. A NakNoRoute
//!   for an event (a response to the subscriber's current `Subscribe`
//!   request id) means the subscriber missed records. If the reason is that
//!   no route to the subscriber exists, the subscriber is gone: the driver
//!   tells the service ([`HostHandle::peer_gone`]), which ends all its
//!   subscriptions and forgets its rate-limit state. For any other reason
//!   the driver ends that one subscription with an `Unsubscribe` on the
//!   subscriber's behalf. Either way a subscriber that is still there
//!   subscribes again from its last seqno. NAKs for other responses, or for
//!   a subscription since replaced, change nothing (see `subscribers`).
//!
//! # Link loss, renewal and reconnecting
//!
//! When the link goes down the session reconnects with backoff
//! ([`connect_with_retry`]) and advertises every hosted capsule again.
//! Meanwhile the responder takes nothing from the host, so the service
//! waits instead of dropping responses; what was in flight when the link
//! failed is resent on the next one. The RtCert issued at each attach is
//! renewed by attaching again at [`EndpointLink::renew_at`]: the new link is
//! made and advertised before the old one is closed gracefully, so the
//! router always has a route.
//!
//! # Shutdown
//!
//! When the `shutdown` future completes: the session stops reading from the
//! link (no new requests), [`Host::shutdown`] lets the requests already
//! queued run and waits until every write in flight is durable, the
//! responder sends the last responses, the link is shut down gracefully
//! (the router withdraws the capsules), and the committer commits what is
//! left and stops. Then [`run`] returns.
//!
//! # Example
//!
//! ```no_run
//! use gdp_capsule_server::config::ServerConfig;
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig::new("/var/lib/gdp-capsules", "127.0.0.1:7474".parse()?);
//! gdp_capsule_server::run(config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! # Embedding
//!
//! A router embeds a capsule server by calling [`run`] in its own process
//! with [`ServerConfig::embedded`]: the server attaches to that router over
//! loopback QUIC, exactly as a standalone server does. With the router's
//! embedding hook, which hands over the `[capsule_server]` table, the
//! router's data directory, its loopback address and name, and a shutdown
//! flag (`EmbedHook` and `EmbedContext` are gdp-router's types, so this
//! example is not compiled here):
//!
//! ```ignore
//! let hook: EmbedHook = Box::new(|mut ctx: EmbedContext| Box::pin(async move {
//!     let config = ServerConfig::embedded(Some(ctx.config), &ctx.data_dir, ctx.router_addr, ctx.router)?;
//!     gdp_capsule_server::run(config, async move {
//!         let _ = ctx.shutdown.wait_for(|stop| *stop).await;
//!     })
//!     .await?;
//!     Ok(())
//! }));
//! ```

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gdp_certs::{Identity, KeyFileError, Kind, Name, Timestamp};
use gdp_link::endpoint::{
    Backoff, ControlSendError, EndpointConfig, EndpointError, EndpointEvent, EndpointLink,
    EndpointReceiver, connect_with_retry,
};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::control::{AdvertiseEntry, ControlMessage};
use gdp_proto::pdu::{Flags, Pdu, PduType};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::committer::Committer;
use crate::config::{ServerConfig, ServerConfigError};
use crate::host::{Host, HostClosed, HostConfig, HostHandle};
use crate::observe::Observer;
use crate::service::{CapsuleService, PeerResponse, Request, Response, TreeOp, TreeRequest};
use crate::store::{Store, StoreError};

mod book;
mod responder;
mod subscribers;

use book::Book;
use responder::{Target, lock};
use subscribers::{Subscribers, Verdict};

/// Most incoming events handled per turn of the session loop.
const EVENT_BATCH: usize = 256;
/// How long after a failed renewal the session tries again.
const RENEW_RETRY: Duration = Duration::from_secs(30);
/// How long a renewed link's predecessor is still read before it is closed:
/// PDUs the router forwarded before it learned of the new link arrive on
/// the old one meanwhile.
const RETIRE_GRACE: Duration = Duration::from_secs(2);

/// Why the capsule server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ServerConfigError),
    /// The key file cannot be read or created.
    #[error("server key: {0}")]
    Key(#[from] KeyFileError),
    /// The store cannot be opened.
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// The service limits are inconsistent.
    #[error("service limits: {0}")]
    Service(#[from] crate::limits::ConfigError),
    /// The committer thread could not start.
    #[error("starting the committer: {0}")]
    Committer(#[source] std::io::Error),
    /// The router cannot be attached to, and waiting will not help (a
    /// wrong router, a refused identity or proof, a local error).
    #[error("attaching to the router: {0}")]
    Link(#[from] EndpointError),
    /// A task of the server failed.
    #[error("a capsule server task failed: {0}")]
    Task(String),
}

/// Runs a capsule server as `config` says until `shutdown` completes, then
/// stops gracefully (see the [module documentation](self)). Returns `Ok`
/// after a requested shutdown; an error if the server could not start or
/// its router cannot be attached to for a reason that waiting will not fix.
/// A router that is down or unreachable is waited for, with backoff.
///
/// Must run inside a multi-threaded tokio runtime (the store is opened
/// on a blocking thread; the committer has its own thread).
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    run_observed(config, shutdown, Arc::new(Observer::new())).await
}

/// [`run`], showing the server's state in `observer` as it goes (for an
/// admin API: see [`Observer`]).
pub async fn run_observed(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
    observer: Arc<Observer>,
) -> Result<(), ServerError> {
    config.validate()?;
    let limits = &config.service;
    if limits.max_capsules > crate::limits::ROUTER_CAPSULES_PER_SERVER {
        tracing::warn!(
            max_capsules = limits.max_capsules,
            router_default = crate::limits::ROUTER_CAPSULES_PER_SERVER,
            "max_capsules is above what a router accepts from one server by default: \
             unless the router's limit is raised too, capsules beyond it are created but not routed"
        );
    }
    tracing::info!(create_policy = ?limits.create_policy, max_capsules = limits.max_capsules,
        max_subscriptions_per_peer = limits.max_subscriptions_per_peer, "service limits");
    let key_file = config.key_file();
    let (identity, generated) = Identity::load_or_generate(&key_file, Kind::Server, &config.label)?;
    let name = identity.name();
    observer.set_name(name);
    tracing::info!(%name, key_file = %key_file.display(), generated, "capsule server identity");
    let (dir, options) = (config.data_dir.clone(), config.store.clone());
    let (store, report) = tokio::task::spawn_blocking(move || Store::open(&dir, &options))
        .await
        .map_err(|e| ServerError::Task(e.to_string()))??;
    tracing::info!(data_dir = %config.data_dir.display(), capsules = report.capsules.len(),
        damaged = report.damaged.len(), "store opened");
    observer.set_store(store.clone());
    let committer =
        Committer::spawn(store.clone(), config.committer).map_err(ServerError::Committer)?;
    let service = CapsuleService::new(config.service.clone(), name, store, report)?;
    crate::metrics::hosted(service.hosted().count());
    let book = Arc::new(Mutex::new(
        Book::new(name, service.hosted()).with_retired(service.retired()),
    ));
    tracing::info!(hosted = lock(&book).hosted_count(), "capsules to advertise");
    let (out_tx, out_rx) = mpsc::channel(config.host.outbox);
    let (publish_tx, publish_rx) = mpsc::channel(config.host.outbox);
    let host = Host::spawn_networked(
        service,
        committer.handle(),
        out_tx.clone(),
        publish_tx,
        HostConfig {
            inbox: config.host.inbox,
            max_batch: config.host.max_batch,
            ..HostConfig::default()
        },
    );
    observer.set_host(host.handle());
    let (target_tx, target_rx) = watch::channel(Target::Wait);
    let responder = tokio::spawn(responder::respond(
        out_rx,
        publish_rx,
        target_rx,
        book.clone(),
        name,
    ));
    let mut session = Session {
        identity,
        endpoint: config.endpoint()?,
        backoff: config.backoff(),
        host: host.handle(),
        replies: out_tx,
        book,
        target: target_tx,
        subscribers: Subscribers::default(),
        router: None,
        observer,
    };
    let (last_link, outcome) = session.run(shutdown).await;

    tracing::info!(%name, "capsule server stopping");
    session
        .target
        .send_replace(Target::Final(last_link.clone()));
    // The host and the responder end once every handle on them is gone.
    drop(session);
    let mut failure = None;
    match host.shutdown().await {
        Ok(service) => {
            let stats = service.stats();
            tracing::info!(
                created = stats.created,
                refused = stats.refused.total(),
                peers_gone = stats.peers_gone,
                subscriptions_dropped = stats.subscriptions_dropped,
                publishes = stats.publishes,
                published_records = stats.published_records,
                tree_leases_taken = stats.tree_leases_taken,
                tree_ignored = stats.tree_ignored.total(),
                "capsule service counters"
            );
            for reason in crate::stats::Refusal::ALL {
                let count = stats.refused.get(reason);
                if count > 0 {
                    tracing::info!(reason = reason.label(), count, "refusals");
                }
            }
        }
        Err(HostClosed) => failure = Some("the host task failed".to_owned()),
    }
    if let Err(e) = responder.await {
        failure = Some(format!("the responder failed: {e}"));
    }
    if let Some(link) = last_link {
        let report = link.shutdown("capsule server shutting down").await;
        tracing::debug!(?report, "link closed");
    }
    if tokio::task::spawn_blocking(move || committer.shutdown())
        .await
        .is_err()
    {
        failure = Some("the committer failed".to_owned());
    }
    tracing::info!(%name, "capsule server stopped");
    outcome?;
    match failure {
        Some(f) => Err(ServerError::Task(f)),
        None => Ok(()),
    }
}

/// How a session with one link ended.
enum Exit {
    /// Shutdown requested; the link is still up.
    Shutdown(EndpointLink),
    /// The link went down.
    Down,
}

/// The session task's state: everything needed to attach, serve and
/// reattach.
struct Session {
    identity: Identity,
    endpoint: EndpointConfig,
    backoff: Backoff,
    host: HostHandle,
    /// Into the responder, for answers the service never sees.
    replies: mpsc::Sender<Response>,
    book: Arc<Mutex<Book>>,
    target: watch::Sender<Target>,
    /// The current `Subscribe` request id of each (subscriber, capsule).
    subscribers: Subscribers,
    /// The router of the current link: the only sender of tree joins
    /// obeyed.
    router: Option<Name>,
    observer: Arc<Observer>,
}

/// Waits for the next events of an optional receiver; pending without one.
async fn recv_opt(rx: &mut Option<EndpointReceiver>, out: &mut Vec<EndpointEvent>) -> usize {
    match rx {
        Some(rx) => rx.recv_many(out, EVENT_BATCH).await,
        None => std::future::pending().await,
    }
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<(EndpointLink, EndpointReceiver), EndpointError>> + Send>>;

/// Waits for an optional connection attempt; pending without one.
async fn connecting(
    attempt: &mut Option<Connecting>,
) -> Result<(EndpointLink, EndpointReceiver), EndpointError> {
    match attempt {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The instant of wall-clock time `at`.
fn instant_at(at: Timestamp) -> Instant {
    Instant::now() + at.since(Timestamp::now())
}

impl Session {
    fn name(&self) -> Name {
        self.identity.name()
    }

    /// Attaches, serves, reattaches, until `shutdown`. Returns the link
    /// that was up at the end, if any, and whether the router could be
    /// attached to.
    async fn run(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> (Option<EndpointLink>, Result<(), EndpointError>) {
        let mut shutdown = pin!(shutdown);
        loop {
            let attempt = tokio::select! {
                biased;
                () = &mut shutdown => return (None, Ok(())),
                r = connect_with_retry(&self.identity, &mut self.endpoint, &mut self.backoff) => r,
            };
            let (link, rx) = match attempt {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot attach to the router");
                    return (None, Err(e));
                }
            };
            if let Err(e) = self.attached(&link).await {
                tracing::warn!(error = %e, "advertising failed; reconnecting");
                continue;
            }
            match self.serve(link, rx, &mut shutdown).await {
                Exit::Shutdown(link) => return (Some(link), Ok(())),
                Exit::Down => {
                    self.target.send_replace(Target::Wait);
                    self.observer.set_router(None);
                    tracing::warn!("router link lost; reconnecting");
                }
            }
        }
    }

    /// A new link is attached: advertise every hosted capsule, then let
    /// the responder use it.
    async fn attached(&mut self, link: &EndpointLink) -> Result<(), ControlSendError> {
        let entries: Vec<AdvertiseEntry> = lock(&self.book).attach_entries(Timestamp::now());
        let count = entries.len();
        if count > 0 {
            link.advertise(entries).await?;
        }
        tracing::info!(router = %link.router_name(), advertised = count, "serving capsules");
        self.router = Some(link.router_name());
        self.observer.set_router(self.router);
        self.target.send_replace(Target::Link(link.clone()));
        Ok(())
    }

    /// Serves one link until it goes down or `shutdown` completes,
    /// renewing the attach when its RtCert is two thirds through.
    async fn serve(
        &mut self,
        mut link: EndpointLink,
        mut rx: EndpointReceiver,
        shutdown: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> Exit {
        let mut events = Vec::with_capacity(EVENT_BATCH);
        let mut old_events = Vec::new();
        let mut retiring: Option<EndpointReceiver> = None;
        let mut renewal: Option<Connecting> = None;
        let mut renew_at = instant_at(link.renew_at());
        loop {
            // Not biased: a busy link must not starve the retiring link, the
            // renewal timer or the renewal's own handshake.
            tokio::select! {
                () = shutdown.as_mut() => return Exit::Shutdown(link),
                n = rx.recv_many(&mut events, EVENT_BATCH) => {
                    if n == 0 || self.handle(&mut events).await {
                        return Exit::Down;
                    }
                }
                n = recv_opt(&mut retiring, &mut old_events), if retiring.is_some() => {
                    if n == 0 || self.handle(&mut old_events).await {
                        retiring = None;
                    }
                }
                () = tokio::time::sleep_until(renew_at), if renewal.is_none() => {
                    tracing::info!("renewing the attach before the RtCert runs out");
                    let (identity, endpoint) = (self.identity.clone(), self.endpoint.clone());
                    renewal = Some(Box::pin(async move {
                        EndpointLink::connect(&identity, &endpoint).await
                    }));
                }
                result = connecting(&mut renewal) => {
                    renewal = None;
                    let renewed = match result {
                        Ok((new_link, new_rx)) => match self.attached(&new_link).await {
                            Ok(()) => Some((new_link, new_rx)),
                            Err(e) => {
                                tracing::warn!(error = %e, "advertising on the renewed link failed");
                                None
                            }
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "renewing the attach failed");
                            None
                        }
                    };
                    match renewed {
                        Some((new_link, new_rx)) => {
                            let old = std::mem::replace(&mut link, new_link);
                            retiring = Some(std::mem::replace(&mut rx, new_rx));
                            old_events.clear();
                            tokio::spawn(async move {
                                tokio::time::sleep(RETIRE_GRACE).await;
                                old.shutdown("attach renewed").await
                            });
                            renew_at = instant_at(link.renew_at());
                        }
                        None => renew_at = Instant::now() + RENEW_RETRY,
                    }
                }
            }
        }
    }

    /// Handles a batch of events; true if the link went down.
    async fn handle(&mut self, events: &mut Vec<EndpointEvent>) -> bool {
        let mut down = false;
        for event in events.drain(..) {
            match event {
                EndpointEvent::Pdu { pdu, .. } => self.on_pdu(pdu).await,
                EndpointEvent::NakNoRoute(nak) => {
                    let verdict =
                        self.subscribers
                            .on_nak(nak.unreachable, nak.to, nak.seq, nak.reason);
                    let sent = match verdict {
                        Verdict::Ignore => continue,
                        Verdict::PeerGone(peer) => {
                            tracing::debug!(peer = %peer, capsule = %nak.to,
                                "no route to a subscriber: it is gone");
                            self.host.peer_gone(peer).await
                        }
                        Verdict::EndSubscription {
                            peer,
                            capsule,
                            request_id,
                        } => {
                            tracing::debug!(%peer, %capsule, reason = ?nak.reason,
                                "a subscriber missed an event; ending its subscription");
                            let end = Request {
                                capsule,
                                from: peer,
                                request_id,
                                body: CapsuleRequest::Unsubscribe,
                            };
                            self.host.request(end).await
                        }
                    };
                    if sent.is_err() {
                        return true;
                    }
                }
                EndpointEvent::Down(reason) => {
                    tracing::info!(%reason, "router link down");
                    down = true;
                }
                _ => {}
            }
        }
        down
    }

    /// One PDU from the router.
    async fn on_pdu(&mut self, pdu: Pdu) {
        let h = pdu.header;
        if h.ptype == PduType::Ping && !h.flags.contains(Flags::RESPONSE) {
            return self.pong(pdu);
        }
        if matches!(h.ptype, PduType::Subscribe | PduType::Unsubscribe) {
            return self.on_tree(&pdu).await;
        }
        let to_server = h.dst == self.name();
        if h.ptype == PduType::Capsule && h.flags.contains(Flags::RESPONSE) && to_server {
            return self.on_peer_response(&pdu).await;
        }
        if h.ptype != PduType::Capsule || h.flags.contains(Flags::RESPONSE) {
            tracing::trace!(ptype = ?h.ptype, src = %h.src, "pdu ignored");
            return;
        }
        let body = match CapsuleRequest::from_pdu(&pdu) {
            Ok(body) => body,
            Err(e) => {
                let m = format!("the request does not decode: {e}");
                return self
                    .answer(h.src, h.dst, h.seq, ErrorCode::BadRequest, m)
                    .await;
            }
        };
        let (capsule, body) = match (body, to_server) {
            (CapsuleRequest::At { capsule, request }, true) => (capsule, *request),
            (CapsuleRequest::Create { metadata, adcert }, true) => {
                (metadata.name(), CapsuleRequest::Create { metadata, adcert })
            }
            (_, true) => {
                let m = "only Create and directed requests (At) may be addressed to the server; send other requests to the capsule's name";
                return self
                    .answer(h.src, h.dst, h.seq, ErrorCode::BadRequest, m)
                    .await;
            }
            (CapsuleRequest::At { .. }, false) => {
                let m = "a directed request (At) is addressed to a server's name, not to a capsule";
                return self
                    .answer(h.src, h.dst, h.seq, ErrorCode::BadRequest, m)
                    .await;
            }
            (body, false) => (h.dst, body),
        };
        if let CapsuleRequest::Create { metadata, adcert } = &body {
            let entry = AdvertiseEntry {
                capsule_md: metadata.clone(),
                adcert: adcert.clone(),
            };
            if !lock(&self.book).note_create(h.src, h.seq, entry, to_server) {
                let m = "too many creates in flight; retry";
                return self
                    .answer(h.src, h.dst, h.seq, ErrorCode::RateLimited, m)
                    .await;
            }
        }
        match &body {
            CapsuleRequest::Subscribe { .. } => self.subscribers.subscribed(h.src, capsule, h.seq),
            CapsuleRequest::Unsubscribe => self.subscribers.unsubscribed(&h.src, &capsule),
            _ => {}
        }
        let request = Request {
            capsule,
            from: h.src,
            request_id: h.seq,
            body,
        };
        if self.host.request(request).await.is_err() {
            tracing::error!("the capsule host stopped; request dropped");
        }
    }

    /// An answer to one of the service's requests to another server.
    async fn on_peer_response(&mut self, pdu: &Pdu) {
        let h = pdu.header;
        let body = match CapsuleResponse::from_pdu(pdu) {
            Ok(body) => body,
            Err(e) => {
                return tracing::debug!(src = %h.src, error = %e, "undecodable answer ignored");
            }
        };
        let response = PeerResponse {
            from: h.src,
            request_id: h.seq,
            body,
        };
        if self.host.peer_response(response).await.is_err() {
            tracing::error!("the capsule host stopped; answer dropped");
        }
    }

    /// A delivery-tree join or leave: handed to the service, which obeys
    /// only the router this server is attached to.
    async fn on_tree(&mut self, pdu: &Pdu) {
        let h = pdu.header;
        let op = match ControlMessage::from_pdu(pdu) {
            Ok(ControlMessage::Subscribe { .. }) => TreeOp::Join,
            Ok(ControlMessage::Unsubscribe { .. }) => TreeOp::Leave,
            Ok(_) | Err(_) => {
                tracing::debug!(ptype = ?h.ptype, src = %h.src, "undecodable tree message ignored");
                return;
            }
        };
        let Some(router) = self.router else {
            return;
        };
        let request = TreeRequest {
            capsule: h.dst,
            from: h.src,
            router,
            op,
        };
        if self.host.tree(request).await.is_err() {
            tracing::error!("the capsule host stopped; tree message dropped");
        }
    }

    /// Answers a ping to the server or to one of its capsules (the router
    /// delivers nothing else here) with a pong from that name, echoing the
    /// payload, so `gdp ping` reaches capsules and their servers.
    fn pong(&self, ping: Pdu) {
        let h = ping.header;
        let pong = match Pdu::new(h.pong(h.dst), ping.payload) {
            Ok(pong) => pong,
            Err(e) => return tracing::debug!(error = %e, "pong not built"),
        };
        let link = match &*self.target.borrow() {
            Target::Link(link) => link.clone(),
            _ => return,
        };
        if link.try_send(&pong).is_err() {
            tracing::debug!(to = %h.src, "pong not sent: the link queue is full");
        }
    }

    /// Answers a request the service never saw with an error.
    async fn answer(
        &mut self,
        to: Name,
        capsule: Name,
        request_id: u64,
        code: ErrorCode,
        message: impl Into<String>,
    ) {
        let response = Response {
            to,
            capsule,
            request_id,
            body: CapsuleResponse::error(code, message),
        };
        if self.replies.send(response).await.is_err() {
            tracing::debug!("responder gone; error answer dropped");
        }
    }
}
