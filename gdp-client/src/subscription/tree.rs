//! A subscription that follows a capsule through its delivery tree.
//!
//! # Data flow
//!
//! ```text
//!   router ── Publish (dst = capsule) ──► supervisor ──► tree route (bounded:
//!                                          ClientOptions::publish_queue; full: dropped)
//!                                                              │
//!   server ◄── Latest / ReadRange (unicast) ───┐               ▼
//!          ──► Records{records, proof} ────────┴──► subscription task: verify, Follower
//!                                                   (in order, no gap, no duplicate)
//!                                                              │ pop()
//!                                                              ▼
//!                                   items (bounded: ClientOptions::event_queue) ──► stream
//! ```
//!
//! The task sends `Subscribe` (dst = the capsule, src = this client) to its
//! router when it starts, every [`ClientOptions::tree_refresh`], and right
//! after the link comes back: the router keeps the membership as a lease
//! and joins upstream toward the capsule's server once for all its
//! subscribers. New records come down the tree as Publish PDUs; the server
//! also republishes its newest record (the tip) while the capsule is idle.
//! Nothing that arrives is trusted: each batch is verified against the
//! capsule's metadata, and one that fails is dropped and counted, never
//! delivered (a router on the path is not trusted with integrity).
//!
//! What the tree cannot give is read by unicast, one request at a time: the
//! tail (`Latest`) at start, after the link came back, and after
//! [`ClientOptions::subscription_refresh`] without a Publish; and whatever
//! range the [`Follower`] wants (the backlog from the start seqno, records
//! a Publish that was lost or dropped held). Records come out in order, each
//! once, whichever way they came first.
//!
//! The stream yields an error and ends when an answer read by unicast fails
//! verification or shows a fork, when the server refuses the capsule for
//! good, or when no router knows the capsule before the first answer (for
//! [`ClientOptions::no_route_retry`]). Dropping the [`Subscription`] ends the
//! task, which leaves the tree (`Unsubscribe`) unless another subscription
//! of the client follows the same capsule.
//!
//! [`ClientOptions::tree_refresh`]: crate::ClientOptions::tree_refresh
//! [`ClientOptions::subscription_refresh`]: crate::ClientOptions::subscription_refresh
//! [`ClientOptions::no_route_retry`]: crate::ClientOptions::no_route_retry
//! [`Subscription`]: super::Subscription

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gdp_certs::{Metadata, Name};
use gdp_link::endpoint::Backoff;
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode, decode_publish};
use gdp_proto::control::ControlMessage;
use gdp_proto::follow::{FollowError, Follower};
use gdp_proto::pdu::Pdu;
use gdp_proto::proof::{Proof, VerifiedHeartbeat};
use gdp_proto::record::{Record, RecordHash};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Counters, Items};
use crate::capsule::Capsule;
use crate::connection::{LinkState, Shared, send_only};
use crate::verified::VerifiedRecord;
use crate::{Client, ClientError};

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Tree,
    Unicast,
}

/// Why a batch was not taken.
#[derive(Debug)]
enum Refused {
    /// It does not verify against the metadata.
    Unverified(gdp_proto::proof::ProofError),
    /// It contradicts verified records (a fork).
    Fork(FollowError),
}

impl Refused {
    fn into_error(self) -> ClientError {
        match self {
            Refused::Unverified(e) => ClientError::Verification(e),
            Refused::Fork(e) => ClientError::protocol(e.to_string()),
        }
    }
}

/// A [`Follower`] that also keeps, for each record waiting in it, the
/// verified heartbeat of the batch it came in and where it came from, so a
/// popped record becomes a [`VerifiedRecord`]. The side table makes the
/// same choices as the follower (records at or after `next`, the first
/// copy kept, at most `max_ahead`, the lowest seqnos kept), so the two hold
/// the same seqnos.
#[derive(Debug)]
struct Tracked {
    follower: Follower,
    held: BTreeMap<u64, (RecordHash, VerifiedHeartbeat, Source)>,
    max_ahead: usize,
}

impl Tracked {
    fn new(metadata: Metadata, from: u64, max_ahead: usize) -> Self {
        let max_ahead = max_ahead.max(1);
        Tracked {
            follower: Follower::new(metadata, from, max_ahead),
            held: BTreeMap::new(),
            max_ahead,
        }
    }

    /// Verifies and takes a batch.
    fn offer(&mut self, records: Vec<Record>, proof: &Proof, from: Source) -> Result<(), Refused> {
        let keys: Vec<(u64, RecordHash)> = records.iter().map(|r| (r.seqno(), r.hash())).collect();
        let next = self.follower.next();
        // The follower verifies the batch once; its heartbeat goes out with
        // each record.
        let heartbeat = self.follower.offer(records, proof).map_err(|e| match e {
            FollowError::Unverified(e) => Refused::Unverified(e),
            other => Refused::Fork(other),
        })?;
        for (seqno, hash) in keys {
            if seqno < next || self.held.contains_key(&seqno) {
                continue;
            }
            if self.held.len() >= self.max_ahead {
                match self.held.last_key_value() {
                    Some((&highest, _)) if highest > seqno => {
                        self.held.remove(&highest);
                    }
                    _ => continue,
                }
            }
            self.held.insert(seqno, (hash, heartbeat.clone(), from));
        }
        Ok(())
    }

    /// The next record in order, verified, if it is here.
    fn pop(&mut self) -> Result<Option<(VerifiedRecord, Source)>, ClientError> {
        let Some(record) = self
            .follower
            .pop()
            .map_err(|e| ClientError::protocol(e.to_string()))?
        else {
            return Ok(None);
        };
        let seqno = record.seqno();
        // Everything below is behind the follower now.
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() >= seqno {
                break;
            }
            entry.remove();
        }
        match self.held.remove(&seqno) {
            Some((hash, heartbeat, from)) if hash == record.hash() => {
                Ok(Some((VerifiedRecord::new(record, heartbeat), from)))
            }
            _ => Err(ClientError::protocol(format!(
                "record {seqno} was delivered without the proof it came with"
            ))),
        }
    }
}

/// A unicast read in flight.
type Read = Pin<Box<dyn Future<Output = (bool, Result<CapsuleResponse, ClientError>)> + Send>>;

/// Starts a read: the tail when `tail`, else `range`.
fn read(client: &Client, capsule: Name, tail: bool, from: u64, to: u64) -> Read {
    let client = client.clone();
    Box::pin(async move {
        let request = if tail {
            CapsuleRequest::Latest
        } else {
            CapsuleRequest::ReadRange { from, to }
        };
        (tail, client.request(capsule, &request).await)
    })
}

/// Queues a tree join or leave for `capsule` on the link, if it is up.
fn tree_message(shared: &Shared, capsule: Name, join: bool) -> bool {
    let msg = if join {
        ControlMessage::Subscribe { capsule }
    } else {
        ControlMessage::Unsubscribe { capsule }
    };
    match msg.to_pdu(capsule, shared.name(), shared.next_id()) {
        Ok(pdu) => shared.try_send_now(&pdu),
        Err(e) => {
            tracing::error!(error = %e, "tree message not built");
            false
        }
    }
}

/// Waits for the read in flight, or forever without one.
async fn poll_read(reading: &mut Option<Read>) -> (bool, Result<CapsuleResponse, ClientError>) {
    match reading {
        Some(read) => read.await,
        None => std::future::pending().await,
    }
}

/// Waits until `at`, or forever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs a tree subscription until its stream is dropped or ends.
pub(super) async fn run(
    capsule: Capsule,
    tx: Items,
    next: Arc<AtomicU64>,
    counters: Arc<Counters>,
) {
    let shared = capsule.client().shared().clone();
    let name = capsule.name();
    let id = shared.next_id();
    let (publish_tx, publishes) = mpsc::channel(capsule.client().options().publish_queue);
    shared.register_tree(name, id, publish_tx);
    follow(&capsule, &tx, &next, &counters, publishes).await;
    // Leave the tree unless another subscription of this client follows
    // the capsule.
    if shared.unregister_tree(&name, id) && !shared.is_stopped() {
        let leave = ControlMessage::Unsubscribe { capsule: name };
        if let Ok(pdu) = leave.to_pdu(name, shared.name(), shared.next_id()) {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                send_only(&shared, &pdu, "unsubscribe"),
            )
            .await;
        }
    }
}

/// Hands `item` to the stream; false if nobody reads it any more.
async fn emit(tx: &Items, item: Result<VerifiedRecord, ClientError>) -> bool {
    tx.send(item).await.is_ok()
}

/// The subscription's loop. See the module docs.
async fn follow(
    capsule: &Capsule,
    tx: &Items,
    next: &AtomicU64,
    counters: &Counters,
    mut publishes: mpsc::Receiver<Pdu>,
) {
    let client = capsule.client();
    let shared = client.shared();
    let options = client.options().clone();
    let name = capsule.name();
    let mut tracked = Tracked::new(
        capsule.metadata().clone(),
        next.load(Ordering::Relaxed),
        options.max_ahead,
    );
    let mut backoff = Backoff::new(options.reconnect_initial, options.reconnect_max);
    let mut refresh = tokio::time::interval(options.tree_refresh);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = shared.watch_state();
    let mut up = matches!(*state.borrow_and_update(), LinkState::Up(_));
    let started = Instant::now();
    let mut answered = false;
    let mut need_tail = true;
    let mut reading: Option<Read> = None;
    let mut retry_at: Option<Instant> = None;
    let mut quiet_at = Instant::now() + options.subscription_refresh;
    loop {
        loop {
            match tracked.pop() {
                Ok(Some((record, from))) => {
                    next.store(record.seqno() + 1, Ordering::Relaxed);
                    Counters::add(match from {
                        Source::Tree => &counters.tree_records,
                        Source::Unicast => &counters.unicast_records,
                    });
                    if !emit(tx, Ok(record)).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = emit(tx, Err(e)).await;
                    return;
                }
            }
        }
        if shared.is_stopped() {
            let _ = emit(tx, Err(ClientError::Closed)).await;
            return;
        }
        if reading.is_none() && retry_at.is_none() {
            if need_tail {
                reading = Some(read(client, name, true, 0, 0));
            } else if let Some(range) = tracked.follower.want() {
                reading = Some(read(client, name, false, *range.start(), *range.end()));
            }
            if reading.is_some() {
                Counters::add(&counters.reads);
            }
        }
        tokio::select! {
            () = tx.closed() => return,
            _ = refresh.tick() => {
                if tree_message(shared, name, true) {
                    Counters::add(&counters.joins);
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    let _ = emit(tx, Err(ClientError::Closed)).await;
                    return;
                }
                let now_up = matches!(*state.borrow_and_update(), LinkState::Up(_));
                if now_up && !up {
                    // Back on a link: join again at once, and learn what
                    // was missed while down.
                    if tree_message(shared, name, true) {
                        Counters::add(&counters.joins);
                    }
                    need_tail = true;
                }
                up = now_up;
            }
            pdu = publishes.recv() => {
                let Some(pdu) = pdu else { return };
                Counters::add(&counters.publishes);
                quiet_at = Instant::now() + options.subscription_refresh;
                let taken = decode_publish(&pdu)
                    .map_err(|e| e.to_string())
                    .and_then(|(records, proof)| {
                        tracked.offer(records, &proof, Source::Tree).map_err(|e| format!("{e:?}"))
                    });
                if let Err(why) = taken {
                    Counters::add(&counters.publishes_rejected);
                    tracing::debug!(capsule = %name, %why, "publish dropped");
                }
            }
            () = tokio::time::sleep_until(quiet_at) => {
                tracing::debug!(capsule = %name, "no publish for a while; reading the tail");
                need_tail = true;
                quiet_at = Instant::now() + options.subscription_refresh;
            }
            () = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
            (tail, result) = poll_read(&mut reading), if reading.is_some() => {
                reading = None;
                match result {
                    Ok(CapsuleResponse::Records { records, proof }) => {
                        answered = true;
                        backoff.reset();
                        if tail {
                            need_tail = false;
                        }
                        if let Err(e) = tracked.offer(records, &proof, Source::Unicast) {
                            let _ = emit(tx, Err(e.into_error())).await;
                            return;
                        }
                    }
                    Ok(other) => {
                        tracing::debug!(?other, "unexpected answer to a read; reading again");
                        retry_at = Some(Instant::now() + retry(&mut backoff, options.reconnect_max));
                    }
                    Err(ClientError::Server { code: ErrorCode::NotFound, .. }) if tail => {
                        // No records yet: the tree tells when there are.
                        answered = true;
                        need_tail = false;
                    }
                    Err(ClientError::Server { code, message }) if code.is_retryable() || code == ErrorCode::NotFound => {
                        tracing::debug!(?code, %message, "read refused for now; retrying");
                        need_tail |= code == ErrorCode::NotFound;
                        retry_at = Some(Instant::now() + retry(&mut backoff, options.reconnect_max));
                    }
                    Err(ClientError::NoRoute(nak)) => {
                        if !answered && started.elapsed() >= options.no_route_retry {
                            let _ = emit(tx, Err(ClientError::NoRoute(nak))).await;
                            return;
                        }
                        let delay = retry(&mut backoff, options.reconnect_max)
                            .min(Duration::from_millis(500));
                        retry_at = Some(Instant::now() + delay);
                    }
                    Err(e @ (ClientError::Closed | ClientError::Reconnect { .. })) => {
                        let _ = emit(tx, Err(e)).await;
                        return;
                    }
                    Err(ClientError::LinkDown(reason)) if !options.reconnect => {
                        let _ = emit(tx, Err(ClientError::LinkDown(reason))).await;
                        return;
                    }
                    Err(e @ (ClientError::Timeout { .. } | ClientError::LinkDown(_))) => {
                        tracing::debug!(error = %e, "read failed; retrying");
                        retry_at = Some(Instant::now() + retry(&mut backoff, options.reconnect_max));
                    }
                    Err(e) => {
                        let _ = emit(tx, Err(e)).await;
                        return;
                    }
                }
            }
        }
    }
}

/// The next backoff delay.
fn retry(backoff: &mut Backoff, max: Duration) -> Duration {
    backoff.next_delay().unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use gdp_certs::{SecretKey, Timestamp};
    use gdp_proto::chain::{Appender, ChainState};
    use gdp_proto::proof::Heartbeat;

    use super::*;

    /// A capsule of `n` records with one heartbeat over the last.
    struct Chain {
        md: Metadata,
        records: Vec<Record>,
        heartbeat: Heartbeat,
    }

    fn chain(n: u64) -> Chain {
        let key = SecretKey::from_seed(&[9; 32]);
        let md = Metadata::capsule(
            key.public(),
            vec![key.public()],
            "t",
            Timestamp::from_secs(1),
            vec![],
        )
        .expect("valid");
        let mut w = Appender::new(key, &md, ChainState::new(md.name())).expect("writer");
        let records = (1..=n)
            .map(|i| {
                w.append(Bytes::from(format!("r{i}")), Timestamp(i))
                    .expect("append")
            })
            .collect();
        let heartbeat = w.heartbeat().expect("records");
        Chain {
            md,
            records,
            heartbeat,
        }
    }

    /// Records `from..=to` with a proof of `to`.
    fn batch(c: &Chain, from: u64, to: u64) -> (Vec<Record>, Proof) {
        let proof = Proof::build(c.heartbeat.clone(), to, |s| {
            c.records
                .get(usize::try_from(s).ok()?.checked_sub(1)?)
                .map(Record::header)
        })
        .expect("headers at hand");
        let records = c.records[(from - 1) as usize..to as usize].to_vec();
        (records, proof)
    }

    fn pop_all(t: &mut Tracked) -> Vec<(u64, Source)> {
        let mut out = Vec::new();
        while let Some((r, from)) = t.pop().expect("in order") {
            assert_eq!(r.heartbeat().seqno(), 20, "the batch's heartbeat");
            out.push((r.seqno(), from));
        }
        out
    }

    #[test]
    fn tree_and_unicast_batches_come_out_in_order_once_with_their_source() {
        let c = chain(20);
        let mut t = Tracked::new(c.md.clone(), 1, 64);
        // Live records arrive first, ahead of the backlog.
        let (r, p) = batch(&c, 11, 15);
        t.offer(r, &p, Source::Tree).expect("verifies");
        assert!(pop_all(&mut t).is_empty());
        assert_eq!(t.follower.want(), Some(1..=10));
        let (r, p) = batch(&c, 1, 12);
        t.offer(r, &p, Source::Unicast).expect("verifies");
        let out = pop_all(&mut t);
        assert_eq!(out.len(), 15);
        assert!(out.iter().map(|(s, _)| *s).eq(1..=15));
        // The first copy of 11 and 12 (the tree's) is the one kept.
        assert!(out[..10].iter().all(|(_, f)| *f == Source::Unicast));
        assert!(out[10..].iter().all(|(_, f)| *f == Source::Tree));
        // A duplicate of what was delivered is dropped.
        let (r, p) = batch(&c, 14, 20);
        t.offer(r, &p, Source::Tree).expect("verifies");
        let out = pop_all(&mut t);
        assert!(out.iter().map(|(s, _)| *s).eq(16..=20));
        assert!(t.held.is_empty());
    }

    #[test]
    fn a_tampered_batch_is_refused_and_changes_nothing() {
        let c = chain(20);
        let mut t = Tracked::new(c.md.clone(), 1, 64);
        let (mut r, p) = batch(&c, 1, 5);
        let x = &r[2];
        r[2] = Record::new(
            *x.capsule(),
            x.seqno(),
            x.timestamp(),
            *x.prev(),
            x.skips().to_vec(),
            Bytes::from_static(b"forged"),
        )
        .expect("shape");
        assert!(matches!(
            t.offer(r, &p, Source::Tree),
            Err(Refused::Unverified(_))
        ));
        assert!(t.held.is_empty());
        assert_eq!(t.follower.waiting(), 0);
        // Another capsule's records do not verify either.
        let other = chain(3);
        let mut t2 = Tracked::new(other.md.clone(), 1, 64);
        let (r, p) = batch(&c, 1, 3);
        assert!(t2.offer(r, &p, Source::Unicast).is_err());
    }

    #[test]
    fn records_ahead_are_bounded_like_the_follower() {
        let c = chain(20);
        let mut t = Tracked::new(c.md.clone(), 1, 4);
        let (r, p) = batch(&c, 5, 12);
        t.offer(r, &p, Source::Tree).expect("verifies");
        assert_eq!(t.held.len(), 4);
        assert_eq!(t.follower.waiting(), 4);
        assert_eq!(t.follower.want(), Some(1..=4));
        let (r, p) = batch(&c, 1, 4);
        t.offer(r, &p, Source::Unicast).expect("verifies");
        // 1..=4 displace the highest waiting ones; 5.. are read again.
        let out = pop_all(&mut t);
        assert!(out.iter().map(|(s, _)| *s).eq(1..=4));
        assert_eq!(t.follower.want(), Some(5..=12));
        let (r, p) = batch(&c, 5, 12);
        t.offer(r, &p, Source::Unicast).expect("verifies");
        let out = pop_all(&mut t);
        assert!(out.iter().map(|(s, _)| *s).eq(5..=8));
    }
}
