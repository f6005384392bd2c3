//! The client's connection actor: one link to a router, kept up, and the
//! table that matches answers to requests.
//!
//! # Data flow
//!
//! ```text
//!   Client / Writer / Subscription
//!      │ Call::start: register request id ─► routes (id -> Once | Stream)
//!      │ EndpointLink::send (bounded queue) ─────────────────────────────► router
//!      ▼
//!   Call::wait ◄── oneshot ◄─┐
//!   Subscription ◄── mpsc ◄──┤ (bounded; full: dropped, the subscription
//!                            │  sees the gap and subscribes again)
//!   supervisor task ─────────┘ reads EndpointReceiver:
//!      Capsule responses and Pongs ─► the route of their `seq`
//!      Publish (a delivery tree)    ─► every tree route of their `dst` capsule
//!                                     (bounded each; full: dropped, the
//!                                     subscription reads what it missed)
//!      NakNoRoute                   ─► the route of the undelivered `seq`
//!      Data                         ─► datagram queue (bounded; full: dropped, counted)
//!      Ping to this client          ─► answered with a Pong at once
//!      Down                         ─► every route fails with the reason; reconnect
//! ```
//!
//! The supervisor owns the link. When the link goes down it fails every
//! waiting request (callers re-send them on the new link while their
//! deadline allows: every capsule request is idempotent), then reconnects
//! with exponential backoff, trusting only the router it first attached
//! to. [`Shared::link`] waits for the link to be up, bounded by the caller's
//! deadline.
//!
//! # Shutdown
//!
//! [`Shared::stop`] ends the supervisor: it fails every waiting request with
//! [`ClientError::Closed`] and closes the link gracefully (bounded by the
//! transport's shutdown timeout).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Name};
use gdp_link::DownReason;
use gdp_link::endpoint::{
    Backoff, EndpointConfig, EndpointEvent, EndpointLink, EndpointReceiver, Nak, connect_with_retry,
};
use gdp_proto::control::NakReason;
use gdp_proto::pdu::{Flags, Pdu, PduHeader, PduType};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::ClientError;
use crate::options::ClientOptions;

/// Most events taken from the link per turn of the supervisor.
const EVENTS_PER_TURN: usize = 64;
/// Delay between retries of a request answered by a NAK "no route".
const NO_ROUTE_RETRY_DELAY: Duration = Duration::from_millis(200);

/// What arrives for a request id.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A response PDU (a capsule response or a Pong).
    Pdu(Pdu),
    /// A router could not deliver the request.
    Nak(Nak),
    /// The link went down before an answer came.
    Down(DownReason),
    /// The client is shutting down.
    Closed,
}

/// Where answers to one request id go.
#[derive(Debug)]
pub(crate) enum Route {
    /// One answer, then the route is removed.
    Once(oneshot::Sender<Reply>),
    /// Any number of answers (a subscription), until removed.
    Stream(mpsc::Sender<Reply>),
}

/// A datagram received from another endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Who sent it (as its router checked).
    pub src: Name,
    /// The name it was sent to (this client).
    pub dst: Name,
    /// The sender's sequence number.
    pub seq: u64,
    /// The payload.
    pub payload: Bytes,
    /// True if it came on the reliable stream, false as a QUIC datagram.
    pub reliable: bool,
}

/// The state of the link, as [`Shared::link`] sees it.
#[derive(Debug, Clone)]
pub(crate) enum LinkState {
    /// Attached.
    Up(EndpointLink),
    /// Down; a reconnect is under way.
    Reconnecting,
    /// Down for good: reconnecting is off.
    Down(DownReason),
    /// Reconnecting failed in a way that will not pass.
    Failed(String),
    /// The client was shut down.
    Closed,
}

/// Where the Publish PDUs of each capsule go: the queue of every tree
/// subscription of this client to it, by subscription id.
type TreeRoutes = HashMap<Name, Vec<(u64, mpsc::Sender<Pdu>)>>;

/// State shared by the client's handles and its supervisor task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) identity: Identity,
    pub(crate) options: ClientOptions,
    routes: Mutex<HashMap<u64, Route>>,
    /// The tree subscriptions of each capsule, by id: where its Publish
    /// PDUs go.
    trees: Mutex<TreeRoutes>,
    /// Publish PDUs dropped because a subscription's queue was full.
    dropped_publishes: AtomicU64,
    next_id: AtomicU64,
    state: watch::Sender<LinkState>,
    datagrams_tx: mpsc::Sender<Datagram>,
    pub(crate) datagrams_rx: tokio::sync::Mutex<mpsc::Receiver<Datagram>>,
    dropped_datagrams: AtomicU64,
    /// Requests sent again for want of an answer.
    retransmits: AtomicU64,
    stop: watch::Sender<bool>,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, HashMap<u64, Route>> {
        // A panic while holding the lock leaves the map itself consistent.
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh request id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// This client's name.
    pub(crate) fn name(&self) -> Name {
        self.identity.name()
    }

    /// Sends answers to `id` to `route`.
    pub(crate) fn register(&self, id: u64, route: Route) {
        self.routes().insert(id, route);
    }

    /// Forgets the route of `id`.
    pub(crate) fn unregister(&self, id: u64) {
        self.routes().remove(&id);
    }

    fn trees(&self) -> MutexGuard<'_, TreeRoutes> {
        self.trees.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the Publish PDUs of `capsule` to `tx` too, under `id`.
    pub(crate) fn register_tree(&self, capsule: Name, id: u64, tx: mpsc::Sender<Pdu>) {
        self.trees().entry(capsule).or_default().push((id, tx));
    }

    /// Forgets the tree route `id` of `capsule`; true if no other
    /// subscription of this client follows `capsule` (the client may leave
    /// the capsule's tree).
    pub(crate) fn unregister_tree(&self, capsule: &Name, id: u64) -> bool {
        let mut trees = self.trees();
        let Some(routes) = trees.get_mut(capsule) else {
            return true;
        };
        routes.retain(|(i, _)| *i != id);
        if routes.is_empty() {
            trees.remove(capsule);
            true
        } else {
            false
        }
    }

    /// Hands a Publish PDU to every subscription of its capsule.
    fn publish(&self, pdu: Pdu) {
        let trees = self.trees();
        let Some(routes) = trees.get(&pdu.header.dst) else {
            tracing::trace!(capsule = %pdu.header.dst, "publish for no subscription dropped");
            return;
        };
        for (id, tx) in routes {
            if tx.try_send(pdu.clone()).is_err() {
                self.dropped_publishes.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(id, "tree subscription queue full; publish dropped");
            }
        }
    }

    /// Publish PDUs dropped because a subscription's queue was full.
    pub(crate) fn dropped_publishes(&self) -> u64 {
        self.dropped_publishes.load(Ordering::Relaxed)
    }

    /// Follows the link state.
    pub(crate) fn watch_state(&self) -> watch::Receiver<LinkState> {
        self.state.subscribe()
    }

    /// Queues `pdu` on the link if it is up and has room; never waits.
    pub(crate) fn try_send_now(&self, pdu: &Pdu) -> bool {
        match &*self.state.borrow() {
            LinkState::Up(link) => link.try_send(pdu).is_ok(),
            _ => false,
        }
    }

    /// Counts a request sent again.
    fn count_retransmit(&self) {
        self.retransmits.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests sent again for want of an answer.
    pub(crate) fn retransmits(&self) -> u64 {
        self.retransmits.load(Ordering::Relaxed)
    }

    /// Datagrams dropped because nobody read them in time.
    pub(crate) fn dropped_datagrams(&self) -> u64 {
        self.dropped_datagrams.load(Ordering::Relaxed)
    }

    /// The current link state.
    pub(crate) fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// Asks the supervisor to stop.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// True once [`Shared::stop`] was called.
    pub(crate) fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// The link, waiting (until `deadline`) while a reconnect is under way.
    pub(crate) async fn link(
        &self,
        deadline: Instant,
        what: &'static str,
    ) -> Result<EndpointLink, ClientError> {
        let mut rx = self.state.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                LinkState::Up(link) => return Ok(link.clone()),
                LinkState::Reconnecting => {}
                LinkState::Down(reason) => return Err(ClientError::LinkDown(reason.clone())),
                LinkState::Failed(reason) => {
                    return Err(ClientError::Reconnect {
                        reason: reason.clone(),
                    });
                }
                LinkState::Closed => return Err(ClientError::Closed),
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ClientError::Closed),
                Err(_) => {
                    return Err(ClientError::Timeout {
                        what,
                        after: self.options.request_timeout,
                    });
                }
            }
        }
    }

    /// Fails every route with `reply()`.
    fn fail_routes(&self, reply: impl Fn() -> Reply) {
        let routes: Vec<Route> = self.routes().drain().map(|(_, r)| r).collect();
        for route in routes {
            match route {
                Route::Once(tx) => {
                    let _ = tx.send(reply());
                }
                Route::Stream(tx) => {
                    let _ = tx.try_send(reply());
                }
            }
        }
    }

    /// Hands `reply` to the route of `id`.
    fn deliver(&self, id: u64, reply: Reply) {
        let mut routes = self.routes();
        match routes.get(&id) {
            Some(Route::Once(_)) => {
                if let Some(Route::Once(tx)) = routes.remove(&id) {
                    let _ = tx.send(reply);
                }
            }
            Some(Route::Stream(tx)) => {
                if tx.try_send(reply).is_err() {
                    tracing::debug!(id, "subscription queue full; event dropped");
                }
            }
            None => tracing::trace!(id, "answer to no waiting request dropped"),
        }
    }

    /// Sorts one PDU from the router.
    fn on_pdu(&self, link: &EndpointLink, pdu: Pdu, reliable: bool) {
        let h = pdu.header;
        match h.ptype {
            PduType::Capsule if h.flags.contains(Flags::RESPONSE) => {
                self.deliver(h.seq, Reply::Pdu(pdu));
            }
            PduType::Pong => self.deliver(h.seq, Reply::Pdu(pdu)),
            PduType::Publish => self.publish(pdu),
            PduType::Ping if h.dst == self.name() => {
                let reply = PduHeader::new(PduType::Pong, h.src, self.name(), h.seq)
                    .with_flags(Flags::RESPONSE);
                match Pdu::new(reply, pdu.payload) {
                    Ok(pong) => {
                        if link.try_send(&pong).is_err() {
                            tracing::debug!(to = %h.src, "pong not sent: the link queue is full");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "pong not built"),
                }
            }
            PduType::Data => {
                let d = Datagram {
                    src: h.src,
                    dst: h.dst,
                    seq: h.seq,
                    payload: pdu.payload,
                    reliable,
                };
                if self.datagrams_tx.try_send(d).is_err() {
                    self.dropped_datagrams.fetch_add(1, Ordering::Relaxed);
                }
            }
            other => tracing::debug!(?other, src = %h.src, "pdu not for a client dropped"),
        }
    }
}

/// Builds the shared state of a client attached through `link`, and starts
/// the supervisor task.
pub(crate) fn start(
    identity: Identity,
    options: ClientOptions,
    config: EndpointConfig,
    link: EndpointLink,
    incoming: EndpointReceiver,
) -> (Arc<Shared>, tokio::task::JoinHandle<()>) {
    let (datagrams_tx, datagrams_rx) = mpsc::channel(options.datagram_queue);
    let (state, _) = watch::channel(LinkState::Up(link.clone()));
    let (stop, _) = watch::channel(false);
    // Ids start at a random point so that answers meant for an earlier
    // client process of the same identity are not taken for ours.
    let first_id = (rand::random::<u64>() >> 2).max(1);
    let shared = Arc::new(Shared {
        identity,
        options,
        routes: Mutex::new(HashMap::new()),
        trees: Mutex::new(HashMap::new()),
        dropped_publishes: AtomicU64::new(0),
        next_id: AtomicU64::new(first_id),
        state,
        datagrams_tx,
        datagrams_rx: tokio::sync::Mutex::new(datagrams_rx),
        dropped_datagrams: AtomicU64::new(0),
        retransmits: AtomicU64::new(0),
        stop,
    });
    let task = tokio::spawn(supervise(shared.clone(), config, link, incoming));
    (shared, task)
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// How a link's dispatch loop ended.
enum Ended {
    Down(DownReason),
    Stopped,
}

/// Reads the link's events until it is down or the client stops.
async fn dispatch(shared: &Shared, link: &EndpointLink, rx: &mut EndpointReceiver) -> Ended {
    let mut stop = shared.stop.subscribe();
    let mut batch = Vec::with_capacity(EVENTS_PER_TURN);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return Ended::Stopped,
            n = rx.recv_many(&mut batch, EVENTS_PER_TURN) => {
                if n == 0 {
                    return Ended::Down(link.closed().await);
                }
                for event in batch.drain(..) {
                    match event {
                        EndpointEvent::Pdu { pdu, reliable } => shared.on_pdu(link, pdu, reliable),
                        EndpointEvent::NakNoRoute(nak) => shared.deliver(nak.seq, Reply::Nak(nak)),
                        EndpointEvent::Down(reason) => return Ended::Down(reason),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The supervisor: dispatches the link's events and reconnects.
async fn supervise(
    shared: Arc<Shared>,
    mut config: EndpointConfig,
    mut link: EndpointLink,
    mut incoming: EndpointReceiver,
) {
    let mut backoff = Backoff::new(
        shared.options.reconnect_initial,
        shared.options.reconnect_max,
    );
    loop {
        shared.state.send_replace(LinkState::Up(link.clone()));
        match dispatch(&shared, &link, &mut incoming).await {
            Ended::Stopped => {
                shared.state.send_replace(LinkState::Closed);
                shared.fail_routes(|| Reply::Closed);
                link.shutdown("client closed").await;
                return;
            }
            Ended::Down(reason) => {
                tracing::info!(%reason, "link to the router down");
                shared.fail_routes(|| Reply::Down(reason.clone()));
                if !shared.options.reconnect {
                    shared.state.send_replace(LinkState::Down(reason));
                    return;
                }
                shared.state.send_replace(LinkState::Reconnecting);
            }
        }
        let mut stop = shared.stop.subscribe();
        let identity = shared.identity.clone();
        tokio::select! {
            () = stopped(&mut stop) => {
                shared.state.send_replace(LinkState::Closed);
                shared.fail_routes(|| Reply::Closed);
                return;
            }
            result = connect_with_retry(&identity, &mut config, &mut backoff) => match result {
                Ok((l, rx)) => {
                    tracing::info!(router = %l.router_name(), "reattached to the router");
                    link = l;
                    incoming = rx;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reattach to the router");
                    shared.state.send_replace(LinkState::Failed(e.to_string()));
                    shared.fail_routes(|| Reply::Closed);
                    return;
                }
            }
        }
    }
}

/// One request on its way: re-sent after a NAK (within the no-route window)
/// or after a reconnect, until its deadline.
#[derive(Debug)]
pub(crate) struct Call {
    id: u64,
    pdu: Pdu,
    what: &'static str,
    deadline: Instant,
    no_route_until: Instant,
    rx: oneshot::Receiver<Reply>,
}

impl Call {
    /// Registers `pdu` (whose `seq` is its request id) and sends it.
    pub(crate) async fn start(
        shared: &Shared,
        pdu: Pdu,
        what: &'static str,
    ) -> Result<Call, ClientError> {
        let now = Instant::now();
        let deadline = now + shared.options.request_timeout;
        let no_route_until = now + shared.options.no_route_retry;
        let id = pdu.header.seq;
        let (tx, rx) = oneshot::channel();
        shared.register(id, Route::Once(tx));
        let call = Call {
            id,
            pdu,
            what,
            deadline,
            no_route_until,
            rx,
        };
        if let Err(e) = call.send(shared).await {
            shared.unregister(id);
            return Err(e);
        }
        Ok(call)
    }

    /// The request id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The request PDU.
    pub(crate) fn pdu(&self) -> &Pdu {
        &self.pdu
    }

    /// When the request gives up.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    async fn send(&self, shared: &Shared) -> Result<(), ClientError> {
        let link = shared.link(self.deadline, self.what).await?;
        let timeout = ClientError::Timeout {
            what: self.what,
            after: shared.options.request_timeout,
        };
        match tokio::time::timeout_at(self.deadline, link.send(&self.pdu)).await {
            Ok(Ok(())) => Ok(()),
            // The link is closing: the supervisor fails the route, and
            // `wait` sends again on the next link.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "send failed; waiting for the link to come back");
                Ok(())
            }
            Err(_) => Err(timeout),
        }
    }

    /// Waits for the answer PDU.
    pub(crate) async fn wait(mut self, shared: &Shared) -> Result<Pdu, ClientError> {
        let result = self.wait_inner(shared).await;
        if result.is_err() {
            shared.unregister(self.id);
        }
        result
    }

    async fn wait_inner(&mut self, shared: &Shared) -> Result<Pdu, ClientError> {
        let first = shared.options.retransmit_after;
        let mut rto = first;
        loop {
            let resend_at = if rto.is_zero() {
                self.deadline
            } else {
                (Instant::now() + rto).min(self.deadline)
            };
            let reply = match tokio::time::timeout_at(resend_at, &mut self.rx).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(_)) => Reply::Closed,
                Err(_) if resend_at < self.deadline => {
                    // No answer yet: the request or its answer may have
                    // been dropped on the way (a router drops PDUs to a
                    // full queue). Capsule requests are idempotent and the
                    // id stays registered, so the same PDU goes again; a
                    // late answer to either copy completes the call.
                    tracing::debug!(what = self.what, id = self.id, after = ?rto, "no answer yet; sending the request again");
                    shared.count_retransmit();
                    rto = (rto * 2).min(first * 8);
                    self.send(shared).await?;
                    continue;
                }
                Err(_) => {
                    return Err(ClientError::Timeout {
                        what: self.what,
                        after: shared.options.request_timeout,
                    });
                }
            };
            match reply {
                Reply::Pdu(pdu) => return Ok(pdu),
                Reply::Nak(nak) => {
                    let retry_at = Instant::now() + NO_ROUTE_RETRY_DELAY;
                    let retryable = matches!(
                        nak.reason,
                        NakReason::NoRoute | NakReason::DirectoryUnavailable | NakReason::Moved
                    );
                    if !retryable || retry_at > self.no_route_until || retry_at > self.deadline {
                        return Err(ClientError::NoRoute(nak));
                    }
                    tokio::time::sleep_until(retry_at).await;
                }
                Reply::Down(reason) => {
                    if !shared.options.reconnect {
                        return Err(ClientError::LinkDown(reason));
                    }
                }
                Reply::Closed => {
                    if shared.is_stopped() {
                        return Err(ClientError::Closed);
                    }
                    if let LinkState::Failed(reason) = shared.state() {
                        return Err(ClientError::Reconnect { reason });
                    }
                }
            }
            let (tx, rx) = oneshot::channel();
            self.rx = rx;
            shared.register(self.id, Route::Once(tx));
            self.send(shared).await?;
        }
    }
}

/// Sends one request PDU and waits for its answer.
pub(crate) async fn call(
    shared: &Shared,
    pdu: Pdu,
    what: &'static str,
) -> Result<Pdu, ClientError> {
    Call::start(shared, pdu, what).await?.wait(shared).await
}

/// Sends `pdu` without waiting for any answer.
pub(crate) async fn send_only(
    shared: &Shared,
    pdu: &Pdu,
    what: &'static str,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + shared.options.request_timeout;
    let link = shared.link(deadline, what).await?;
    match tokio::time::timeout_at(deadline, link.send(pdu)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(ClientError::LinkDown(link.closed().await)),
        Err(_) => Err(ClientError::Timeout {
            what,
            after: shared.options.request_timeout,
        }),
    }
}
