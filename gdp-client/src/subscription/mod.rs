//! Subscriptions: a capsule's records from a seqno on, as a stream of
//! verified records that survives link failures and server restarts.
//!
//! Two ways to get them, chosen by
//! [`ClientOptions::subscribe_mode`](crate::ClientOptions::subscribe_mode):
//! the capsule's delivery tree in the routers (`tree`, the default), or a
//! subscription of this client's own at the capsule's server (unicast,
//! below). The stream is the same either way.

mod tree;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use gdp_link::endpoint::Backoff;
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ClientError;
use crate::capsule::Capsule;
use crate::client::decode_response;
use crate::connection::{Reply, Route, send_only};
use crate::options::SubscribeMode;
use crate::verified::{VerifiedRecord, verify_answer};

/// Bound of the route between the supervisor and the subscription task, in
/// answers. An overflow drops events; the task then resubscribes.
const ROUTE_QUEUE: usize = 256;

/// A stream of a capsule's verified records, from a seqno on, that
/// survives link failures and server restarts.
///
/// In [`SubscribeMode::Tree`] (the default) the subscription joins the
/// capsule's delivery tree at its router (`Subscribe` at start, every
/// [`ClientOptions::tree_refresh`](crate::ClientOptions::tree_refresh) and
/// after the link comes back; `Unsubscribe` when dropped), takes the new
/// records that come down the tree, and reads by unicast the tail at start,
/// the backlog from its start seqno and whatever the tree lost. Everything
/// is verified against the capsule's metadata and comes out in order, once;
/// a Publish that does not verify is dropped and counted
/// ([`Subscription::stats`]), never delivered. Several subscriptions of one
/// client may follow one capsule. What follows describes
/// [`SubscribeMode::Unicast`].
///
/// # Data flow (unicast)
///
/// ```text
/// server ── Event{records, proof} (request id of the Subscribe) ──► supervisor
/// ──► route (bounded) ──► subscription task: verify, drop seqnos < next,
/// detect gaps, next = last + 1
/// ──► items (bounded: ClientOptions::event_queue) ──► Subscription (Stream)
/// ```
///
/// The task keeps `next`, the first seqno not yet delivered. Whenever the
/// subscription may have been lost (the link went down, the route's queue
/// overflowed and an event was dropped, a gap appears, the server answers a
/// retryable error, or nothing was heard for
/// [`ClientOptions::subscription_refresh`](crate::ClientOptions::subscription_refresh))
/// it subscribes again from `next` under a new request id. Records before
/// `next` that arrive again are dropped, so the stream has no gap and no
/// duplicate.
///
/// The stream yields an error and ends when a record fails verification,
/// when the server refuses the subscription for good, or when no router
/// knows the capsule before the first `Subscribed` (for
/// [`ClientOptions::no_route_retry`](crate::ClientOptions::no_route_retry)).
/// Dropping the [`Subscription`] ends the task, which tells the server.
///
/// In unicast mode a capsule server keeps one subscription per capsule
/// and subscriber name, so one [`Client`](crate::Client) should hold at
/// most one unicast subscription per capsule at a time (a second one
/// replaces the first at the server; use another client, or share the
/// stream).
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Result<VerifiedRecord, ClientError>>,
    next: Arc<AtomicU64>,
    counters: Arc<Counters>,
}

/// What a [`Subscription`] received and did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Records handed to the stream that came down the delivery tree.
    pub tree_records: u64,
    /// Records handed to the stream that came by unicast (reads of the
    /// backlog and of gaps, or the events of a unicast subscription).
    pub unicast_records: u64,
    /// Publish PDUs received from the tree.
    pub publishes: u64,
    /// Publish PDUs dropped because they did not decode or verify (a
    /// router on the way is not trusted with them).
    pub publishes_rejected: u64,
    /// Unicast reads sent (the tail, the backlog, gaps).
    pub reads: u64,
    /// Tree joins sent (at start, on every refresh, after the link came
    /// back).
    pub joins: u64,
}

/// The live counters behind [`SubscriptionStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    tree_records: AtomicU64,
    unicast_records: AtomicU64,
    publishes: AtomicU64,
    publishes_rejected: AtomicU64,
    reads: AtomicU64,
    joins: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> SubscriptionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SubscriptionStats {
            tree_records: get(&self.tree_records),
            unicast_records: get(&self.unicast_records),
            publishes: get(&self.publishes),
            publishes_rejected: get(&self.publishes_rejected),
            reads: get(&self.reads),
            joins: get(&self.joins),
        }
    }
}

impl Subscription {
    pub(crate) fn start(capsule: Capsule, from: u64) -> Self {
        let (tx, rx) = mpsc::channel(capsule.client().options().event_queue);
        let next = Arc::new(AtomicU64::new(from.max(1)));
        let counters = Arc::new(Counters::default());
        // The task ends by itself once the receiver is dropped.
        match capsule.client().options().subscribe_mode {
            SubscribeMode::Tree => {
                tokio::spawn(tree::run(capsule, tx, next.clone(), counters.clone()));
            }
            SubscribeMode::Unicast => {
                tokio::spawn(run(capsule, tx, next.clone(), counters.clone()));
            }
        }
        Subscription { rx, next, counters }
    }

    /// The first seqno not yet handed to the stream (records before it
    /// were read or wait in the stream's queue).
    pub fn next_seqno(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// What this subscription received and did so far.
    pub fn stats(&self) -> SubscriptionStats {
        self.counters.snapshot()
    }

    /// The next verified record, `None` once the subscription has ended.
    pub async fn next_record(&mut self) -> Option<Result<VerifiedRecord, ClientError>> {
        self.rx.recv().await
    }
}

impl Stream for Subscription {
    type Item = Result<VerifiedRecord, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// How one subscription attempt ended.
enum Attempt {
    /// Subscribe again (after `delay`).
    Again(Duration),
    /// The reader is gone or the stream ended with an error.
    Stop,
}

type Items = mpsc::Sender<Result<VerifiedRecord, ClientError>>;

async fn run(capsule: Capsule, tx: Items, next: Arc<AtomicU64>, counters: Arc<Counters>) {
    let options = capsule.client().options().clone();
    let mut backoff = Backoff::new(options.reconnect_initial, options.reconnect_max);
    let started = Instant::now();
    let mut confirmed_once = false;
    loop {
        let attempt = tokio::select! {
            () = tx.closed() => Attempt::Stop,
            a = attempt(&capsule, &tx, &next, &counters, &mut confirmed_once, started, &mut backoff) => a,
        };
        match attempt {
            Attempt::Stop => break,
            Attempt::Again(delay) => {
                if !delay.is_zero() {
                    tokio::select! {
                        () = tx.closed() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
    // Best effort: tell the server, so it stops sending.
    if !capsule.client().shared().is_stopped() {
        let shared = capsule.client().shared();
        if let Ok(pdu) =
            CapsuleRequest::Unsubscribe.to_pdu(capsule.name(), shared.name(), shared.next_id())
        {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                send_only(shared, &pdu, "unsubscribe"),
            )
            .await;
        }
    }
}

/// One `Subscribe` and the events that follow it.
async fn attempt(
    capsule: &Capsule,
    tx: &Items,
    next: &AtomicU64,
    counters: &Counters,
    confirmed_once: &mut bool,
    started: Instant,
    backoff: &mut Backoff,
) -> Attempt {
    let client = capsule.client();
    let shared = client.shared();
    let options = client.options();
    if shared.is_stopped() {
        let _ = tx.send(Err(ClientError::Closed)).await;
        return Attempt::Stop;
    }
    let from = next.load(Ordering::Relaxed);
    let id = shared.next_id();
    let pdu = match (CapsuleRequest::Subscribe { from }).to_pdu(capsule.name(), shared.name(), id) {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Err(ClientError::invalid(e.to_string()))).await;
            return Attempt::Stop;
        }
    };
    let (route_tx, mut route) = mpsc::channel(ROUTE_QUEUE);
    shared.register(id, Route::Stream(route_tx));
    let _guard = Unregister { capsule, id };
    match send_only(shared, &pdu, "subscribe").await {
        Ok(()) => {}
        Err(ClientError::Closed) => {
            let _ = tx.send(Err(ClientError::Closed)).await;
            return Attempt::Stop;
        }
        Err(ClientError::Reconnect { reason }) => {
            let _ = tx.send(Err(ClientError::Reconnect { reason })).await;
            return Attempt::Stop;
        }
        Err(ClientError::LinkDown(reason)) if !options.reconnect => {
            let _ = tx.send(Err(ClientError::LinkDown(reason))).await;
            return Attempt::Stop;
        }
        Err(e) => {
            tracing::debug!(error = %e, "subscribe not sent; retrying");
            return Attempt::Again(retry(backoff, options.reconnect_max));
        }
    }
    let mut confirmed = false;
    loop {
        // Until confirmed, the request timeout; then the refresh interval.
        let quiet = if confirmed {
            options.subscription_refresh
        } else {
            options.request_timeout
        };
        let reply = match tokio::time::timeout(quiet, route.recv()).await {
            Err(_) => {
                tracing::debug!(capsule = %capsule.name(), from = next.load(Ordering::Relaxed),
                    "subscription quiet; subscribing again");
                return Attempt::Again(Duration::ZERO);
            }
            Ok(None) => return Attempt::Again(retry(backoff, options.reconnect_max)),
            Ok(Some(reply)) => reply,
        };
        let pdu = match reply {
            Reply::Pdu(pdu) => pdu,
            Reply::Down(_) => return Attempt::Again(Duration::ZERO),
            Reply::Closed => {
                let _ = tx.send(Err(ClientError::Closed)).await;
                return Attempt::Stop;
            }
            Reply::Nak(nak) => {
                let give_up = !*confirmed_once && started.elapsed() >= options.no_route_retry;
                if give_up {
                    let _ = tx.send(Err(ClientError::NoRoute(nak))).await;
                    return Attempt::Stop;
                }
                return Attempt::Again(
                    retry(backoff, options.reconnect_max).min(Duration::from_millis(500)),
                );
            }
        };
        match decode_response(&pdu) {
            Ok(CapsuleResponse::Subscribed { .. }) => {
                confirmed = true;
                *confirmed_once = true;
                backoff.reset();
            }
            Ok(CapsuleResponse::Event { records, proof }) => {
                let want = next.load(Ordering::Relaxed);
                let (Some(first), Some(last)) = (
                    records.first().map(|r| r.seqno()),
                    records.last().map(|r| r.seqno()),
                ) else {
                    continue;
                };
                let verified = match verify_answer(capsule.metadata(), records, &proof, first, last)
                {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return Attempt::Stop;
                    }
                };
                if last < want {
                    continue;
                }
                if first > want {
                    tracing::debug!(want, first, "gap in subscription events; subscribing again");
                    return Attempt::Again(Duration::ZERO);
                }
                confirmed = true;
                for record in verified.into_iter().filter(|r| r.seqno() >= want) {
                    next.store(record.seqno() + 1, Ordering::Relaxed);
                    Counters::add(&counters.unicast_records);
                    if tx.send(Ok(record)).await.is_err() {
                        return Attempt::Stop;
                    }
                }
            }
            Ok(CapsuleResponse::Unsubscribed) => {
                return Attempt::Again(retry(backoff, options.reconnect_max));
            }
            Ok(other) => {
                tracing::debug!(?other, "unexpected answer on a subscription ignored");
            }
            Err(ClientError::Server { code, message }) if code.is_retryable() => {
                tracing::debug!(?code, %message, "subscription refused for now; retrying");
                return Attempt::Again(retry(backoff, options.reconnect_max));
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return Attempt::Stop;
            }
        }
    }
}

/// Removes a subscription's route when its attempt ends.
struct Unregister<'a> {
    capsule: &'a Capsule,
    id: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.capsule.client().shared().unregister(self.id);
    }
}

/// The next backoff delay.
fn retry(backoff: &mut Backoff, max: Duration) -> Duration {
    backoff.next_delay().unwrap_or(max)
}
