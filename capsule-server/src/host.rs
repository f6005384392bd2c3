//! The host: an async task that runs a [`CapsuleService`] with a
//! [`Committer`](crate::committer::Committer), without any network.
//!
//! # Data flow
//!
//! ```text
//!  HostHandle::request ──► inbox (bounded) ──► host task ──► outbox (bounded) ──► responses
//!                                              │    ▲
//!                         Output::Commit ──────┘    │ acknowledgements, in order
//!                                ▼                  │
//!                          CommitHandle ──► committer thread
//! ```
//!
//! The task takes every request waiting in the inbox (up to
//! [`HostConfig::max_batch`]) and hands them to the service together, so their
//! heartbeats are verified in one batch. Writes go to the committer in the
//! order the service emits them, and their acknowledgements come back in
//! that order (the committer is first in, first out). Responses go to the
//! outbox; a full outbox pushes back on the task, and so on the inbox.
//!
//! A network driver (QUIC links, a router attachment) feeds the inbox from
//! decoded PDUs and turns [`Response`]s into PDUs with
//! [`Response::to_pdu`]. Delivery-tree joins and leaves of the router go in
//! through [`HostHandle::tree`]; the [`Publish`]es they cause, and the
//! requests the service sends other replicas, come out on a channel of
//! their own as [`Outgoing`] ([`Host::spawn_networked`]; a host started
//! with [`Host::spawn`] has no network and drops them). Answers to those
//! requests go in through [`HostHandle::peer_response`].
//! The task also runs the service's timers (tips of idle capsules, leases
//! that run out) at [`CapsuleService::next_timeout`].
//!
//! The service's counters ([`ServiceStats`]) are published at every turn
//! of the task, before the responses of that turn go out;
//! [`HostHandle::stats`] reads the latest.
//!
//! # Shutdown
//!
//! [`Host::shutdown`] stops taking requests, lets the requests already in
//! the inbox run, waits until every write in flight is acknowledged and its
//! responses are in the outbox, and returns the service.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gdp_certs::{Name, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::committer::{Ack, CommitHandle};
use crate::service::{
    CapsuleService, Output, PeerRequest, PeerResponse, Publish, Request, Response, Ticket,
    TreeRequest,
};
use crate::stats::ServiceStats;
use crate::store::StoreError;

/// Where the host reads the time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The host's queue sizes and clock.
#[derive(Clone)]
pub struct HostConfig {
    /// Requests that may wait in the inbox. Default 4096.
    pub inbox: usize,
    /// Most requests handed to the service at once. Default 1024.
    pub max_batch: usize,
    /// The clock. Default: the system clock.
    pub clock: Clock,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            inbox: 4096,
            max_batch: 1024,
            clock: Arc::new(Timestamp::now),
        }
    }
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("inbox", &self.inbox)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// The host is gone (shut down, or its task ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the capsule host has stopped")]
pub struct HostClosed;

/// What the inbox carries (nearly always requests, so their size is the
/// slot size anyway).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Input {
    Request(Request),
    PeerGone(Name),
    Tree(TreeRequest),
    PeerResponse(PeerResponse),
}

/// What the service sends to the network besides responses.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outgoing {
    /// Records for a capsule's delivery tree.
    Publish(Publish),
    /// A request to another server (anti-entropy between replicas).
    Request(PeerRequest),
}

/// Sends requests to a host and reads its counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HostHandle {
    inbox: mpsc::Sender<Input>,
    stats: watch::Receiver<ServiceStats>,
}

impl HostHandle {
    /// Queues a request, waiting while the inbox is full.
    pub async fn request(&self, request: Request) -> Result<(), HostClosed> {
        self.inbox
            .send(Input::Request(request))
            .await
            .map_err(|_| HostClosed)
    }

    /// Tells the host that `peer` went away (ends its subscriptions and
    /// forgets its rate-limit state).
    pub async fn peer_gone(&self, peer: Name) -> Result<(), HostClosed> {
        self.inbox
            .send(Input::PeerGone(peer))
            .await
            .map_err(|_| HostClosed)
    }

    /// Hands the service a delivery-tree join or leave (see
    /// [`CapsuleService::tree`]).
    pub async fn tree(&self, request: TreeRequest) -> Result<(), HostClosed> {
        self.inbox
            .send(Input::Tree(request))
            .await
            .map_err(|_| HostClosed)
    }

    /// Hands the service an answer to one of its requests to another
    /// server (see [`CapsuleService::on_peer_response`]).
    pub async fn peer_response(&self, response: PeerResponse) -> Result<(), HostClosed> {
        self.inbox
            .send(Input::PeerResponse(response))
            .await
            .map_err(|_| HostClosed)
    }

    /// The service's counters as of the host task's last turn.
    pub fn stats(&self) -> ServiceStats {
        self.stats.borrow().clone()
    }
}

/// A running host task.
#[derive(Debug)]
pub struct Host {
    handle: HostHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<CapsuleService>,
}

impl Host {
    /// Starts the host task on the current tokio runtime. Responses go to
    /// `outbox`; [`Publish`]es and requests to other servers are dropped
    /// (see [`Host::spawn_networked`]).
    pub fn spawn(
        service: CapsuleService,
        committer: CommitHandle,
        outbox: mpsc::Sender<Response>,
        config: HostConfig,
    ) -> Host {
        Self::start(service, committer, outbox, None, config)
    }

    /// Starts the host task on the current tokio runtime. Responses go to
    /// `outbox`; the records for delivery trees and the requests to other
    /// servers to `network`.
    pub fn spawn_networked(
        service: CapsuleService,
        committer: CommitHandle,
        outbox: mpsc::Sender<Response>,
        network: mpsc::Sender<Outgoing>,
        config: HostConfig,
    ) -> Host {
        Self::start(service, committer, outbox, Some(network), config)
    }

    fn start(
        service: CapsuleService,
        committer: CommitHandle,
        outbox: mpsc::Sender<Response>,
        publishes: Option<mpsc::Sender<Outgoing>>,
        config: HostConfig,
    ) -> Host {
        let (tx, rx) = mpsc::channel(config.inbox.max(1));
        let (stop, stop_rx) = oneshot::channel();
        let (stats_tx, stats) = watch::channel(service.stats().clone());
        let io = Io {
            inbox: rx,
            stop: stop_rx,
            outbox,
            publishes,
            stats: stats_tx,
        };
        let task = tokio::spawn(run(service, committer, io, config));
        Host {
            handle: HostHandle { inbox: tx, stats },
            stop,
            task,
        }
    }

    /// A handle to send requests.
    pub fn handle(&self) -> HostHandle {
        self.handle.clone()
    }

    /// Stops taking requests, finishes what is queued and in flight, and
    /// returns the service. Fails only if the task panicked.
    pub async fn shutdown(self) -> Result<CapsuleService, HostClosed> {
        let Host { handle, stop, task } = self;
        drop(handle);
        let _ = stop.send(());
        task.await.map_err(|_| HostClosed)
    }
}

/// Waits for the oldest write in flight; pending forever if there is none.
async fn next_ack(acks: &mut VecDeque<(Ticket, Ack)>) -> (Ticket, Result<(), StoreError>) {
    match acks.front_mut() {
        Some((ticket, ack)) => {
            let ticket = *ticket;
            let result = ack.await.unwrap_or(Err(StoreError::Closed));
            acks.pop_front();
            (ticket, result)
        }
        None => std::future::pending().await,
    }
}

/// The host task's channels.
struct Io {
    inbox: mpsc::Receiver<Input>,
    stop: oneshot::Receiver<()>,
    outbox: mpsc::Sender<Response>,
    publishes: Option<mpsc::Sender<Outgoing>>,
    stats: watch::Sender<ServiceStats>,
}

/// Sleeps until the service's next timer, read on `clock`; pending forever
/// without one.
async fn timer(at: Option<Timestamp>, clock: &Clock) {
    match at {
        Some(at) => tokio::time::sleep(at.since(clock())).await,
        None => std::future::pending().await,
    }
}

/// Outputs the host takes from the service at most before it looks at its
/// inputs again.
const OUTPUTS_PER_TURN: usize = 1024;

/// Responses that may wait in the outbox when the host reads one more
/// response of subscription backlog from the store. Each is up to the
/// response limit (1 MiB), so subscribers catching up hold about this many
/// MiB of the server's memory together, and an answer to anyone else
/// waits behind at most that much backlog.
const BACKLOG_AHEAD: usize = 2;

/// How often a host with backlog to send looks at its outbox again while
/// the outbox holds [`BACKLOG_AHEAD`] responses or more.
const BACKLOG_POLL: Duration = Duration::from_millis(1);

/// Whether the outbox has room for more subscription backlog.
fn backlog_fits(outbox: &mpsc::Sender<Response>) -> bool {
    outbox.max_capacity() - outbox.capacity() < BACKLOG_AHEAD
}

async fn run(
    mut service: CapsuleService,
    committer: CommitHandle,
    io: Io,
    config: HostConfig,
) -> CapsuleService {
    let Io {
        mut inbox,
        mut stop,
        outbox,
        publishes,
        stats,
    } = io;
    let mut acks: VecDeque<(Ticket, Ack)> = VecDeque::new();
    let mut open = true;
    let mut stopping = false;
    let mut batch = Vec::with_capacity(config.max_batch);
    loop {
        // The counters first, so that they cover every response about to go.
        stats.send_if_modified(|s| {
            let changed = s != service.stats();
            if changed {
                s.clone_from(service.stats());
            }
            changed
        });
        // Outputs next, a bounded number per turn so that inputs and
        // acknowledgements are not starved by a long backlog, and backlog
        // only while the outbox is nearly empty.
        for _ in 0..OUTPUTS_PER_TURN {
            match service.poll_output_with(backlog_fits(&outbox)) {
                Some(Output::Respond(r)) => {
                    if outbox.send(r).await.is_err() {
                        tracing::debug!("outbox closed; response dropped");
                    }
                }
                Some(Output::Commit { ticket, write }) => match committer.submit(write).await {
                    Ok(ack) => acks.push_back((ticket, ack)),
                    Err(e) => service.on_commit((config.clock)(), ticket, Err(e)),
                },
                Some(Output::Publish(p)) => {
                    if let Some(tx) = &publishes
                        && tx.send(Outgoing::Publish(p)).await.is_err()
                    {
                        tracing::debug!("network channel closed; publish dropped");
                    }
                }
                Some(Output::Request(r)) => {
                    if let Some(tx) = &publishes
                        && tx.send(Outgoing::Request(r)).await.is_err()
                    {
                        tracing::debug!("network channel closed; request dropped");
                    }
                }
                None => break,
            }
        }
        if !open && acks.is_empty() && !service.has_output() {
            return service;
        }
        tokio::select! {
            biased;
            (ticket, result) = next_ack(&mut acks) => {
                let now = (config.clock)();
                service.on_commit(now, ticket, result);
                // Everything else already acknowledged, without waiting.
                while let Some((ticket, ack)) = acks.front_mut() {
                    let ticket = *ticket;
                    match ack.try_recv() {
                        Ok(result) => {
                            acks.pop_front();
                            service.on_commit(now, ticket, result);
                        }
                        Err(oneshot::error::TryRecvError::Empty) => break,
                        Err(oneshot::error::TryRecvError::Closed) => {
                            acks.pop_front();
                            service.on_commit(now, ticket, Err(StoreError::Closed));
                        }
                    }
                }
            }
            _ = &mut stop, if !stopping => {
                stopping = true;
                inbox.close();
            }
            input = inbox.recv(), if open => match input {
                None => open = false,
                Some(first) => {
                    let mut next = Some(first);
                    let mut taken = 0;
                    while let Some(input) = next.take() {
                        taken += 1;
                        match input {
                            Input::Request(r) => batch.push(r),
                            Input::PeerGone(p) => {
                                // Keep the order: requests before it first.
                                service.handle_batch((config.clock)(), batch.drain(..));
                                service.peer_gone(&p);
                            }
                            Input::Tree(t) => {
                                service.handle_batch((config.clock)(), batch.drain(..));
                                service.tree((config.clock)(), t);
                            }
                            Input::PeerResponse(r) => {
                                service.handle_batch((config.clock)(), batch.drain(..));
                                service.on_peer_response((config.clock)(), r);
                            }
                        }
                        if taken < config.max_batch {
                            next = inbox.try_recv().ok();
                        }
                    }
                    service.handle_batch((config.clock)(), batch.drain(..));
                }
            },
            () = timer(service.next_timeout(), &config.clock), if open => {
                service.handle_timeout((config.clock)());
            }
            () = std::future::ready(()), if service.has_output_with(backlog_fits(&outbox)) => {}
            () = tokio::time::sleep(BACKLOG_POLL), if service.has_output() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::committer::{Committer, CommitterConfig};
    use crate::limits::{Rate, ServiceConfig};
    use crate::stats::Refusal;
    use crate::store::{Store, StoreOptions};
    use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
    use std::path::PathBuf;

    /// The server the tests' services run as.
    const SERVER: Name = Name::from_bytes([200; 32]);

    /// A service with `config` over a fresh store in a temporary
    /// directory (which the test removes), and the store's committer.
    fn service_on_disk(label: &str, config: ServiceConfig) -> (CapsuleService, Committer, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "gdp-host-{label}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let (store, report) = Store::open(&dir, &StoreOptions::default()).expect("opens");
        let committer =
            Committer::spawn(store.clone(), CommitterConfig::default()).expect("spawns");
        let service = CapsuleService::new(config, SERVER, store, report).expect("valid");
        (service, committer, dir)
    }

    #[tokio::test]
    async fn the_counters_cover_every_response_received() {
        let config = ServiceConfig {
            peer_requests: Some(Rate {
                per_second: 1,
                burst: 1,
            }),
            ..ServiceConfig::default()
        };
        let (service, committer, dir) = service_on_disk("stats", config);
        let (tx, mut rx) = mpsc::channel(16);
        let clock: Clock = Arc::new(|| Timestamp::from_secs(1_800_000_000));
        let host = Host::spawn(
            service,
            committer.handle(),
            tx,
            HostConfig {
                clock,
                ..HostConfig::default()
            },
        );
        let handle = host.handle();
        assert_eq!(handle.stats(), ServiceStats::default());
        for id in 1..=3 {
            let request = Request {
                capsule: Name::from_bytes([1; 32]),
                from: Name::from_bytes([7; 32]),
                request_id: id,
                body: CapsuleRequest::Latest,
            };
            handle.request(request).await.expect("host runs");
            let answer = rx.recv().await.expect("an answer");
            let expected = if id == 1 {
                ErrorCode::NotHosted
            } else {
                ErrorCode::RateLimited
            };
            assert!(
                matches!(answer.body, CapsuleResponse::Error { code, .. } if code == expected),
                "{answer:?}"
            );
            // Published before the answer left.
            assert_eq!(handle.stats().refused.get(Refusal::PeerRate), id - 1);
        }
        drop(handle);
        let service = host.shutdown().await.expect("clean");
        assert_eq!(service.stats().refused.total(), 2);
        committer.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A subscriber catching up on a long backlog: the host reads it from
    /// the store only as the outbox empties, and another peer's answer
    /// waits behind at most what is already queued.
    #[tokio::test]
    async fn subscription_backlog_is_read_as_the_outbox_empties() {
        const APPENDS: u64 = 6;
        const PER_APPEND: u64 = 30;
        let (service, committer, dir) = service_on_disk("backlog", ServiceConfig::default());
        let (tx, mut rx) = mpsc::channel(64);
        let host = Host::spawn(service, committer.handle(), tx, HostConfig::default());
        let handle = host.handle();
        let (owner, subscriber, other) = (
            Name::from_bytes([7; 32]),
            Name::from_bytes([8; 32]),
            Name::from_bytes([9; 32]),
        );
        let mut writer = gdp_testkit::capsule::Writer::new(SERVER, "backlog");
        let capsule = writer.capsule();
        let mut id = 0;
        let mut ask = |from: Name, body: CapsuleRequest| {
            id += 1;
            Request {
                capsule,
                from,
                request_id: id,
                body,
            }
        };
        handle
            .request(ask(owner, writer.create()))
            .await
            .expect("host runs");
        assert_eq!(
            rx.recv().await.expect("an answer").body,
            CapsuleResponse::Created
        );
        // About 5.6 MiB of records: six responses of up to 1 MiB.
        for _ in 0..APPENDS {
            let payloads = (0..PER_APPEND).map(|_| bytes::Bytes::from(vec![5u8; 32 << 10]));
            let append = ask(owner, writer.append_payloads(payloads));
            handle.request(append).await.expect("host runs");
            let answer = rx.recv().await.expect("an answer").body;
            assert!(
                matches!(answer, CapsuleResponse::Appended { .. }),
                "{answer:?}"
            );
        }

        handle
            .request(ask(subscriber, CapsuleRequest::Subscribe { from: 1 }))
            .await
            .expect("host runs");
        // Time for the host to queue all it would.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            rx.len(),
            BACKLOG_AHEAD,
            "the answer and one response of backlog"
        );
        handle
            .request(ask(other, CapsuleRequest::Latest))
            .await
            .expect("host runs");

        let (mut next, mut other_at) = (1, None);
        for at in 0.. {
            let r = rx.recv().await.expect("a response");
            if r.to == other {
                other_at = Some(at);
                continue;
            }
            assert_eq!(r.to, subscriber);
            match r.body {
                CapsuleResponse::Subscribed { tail } => assert_eq!(tail, APPENDS * PER_APPEND),
                CapsuleResponse::Event { records, .. } => {
                    for record in records {
                        assert_eq!(record.seqno(), next);
                        next += 1;
                    }
                }
                other => panic!("{other:?}"),
            }
            if next > APPENDS * PER_APPEND && other_at.is_some() {
                break;
            }
        }
        let other_at = other_at.expect("the other peer answered");
        assert!(
            other_at <= BACKLOG_AHEAD + 1,
            "answered after {other_at} responses"
        );
        drop(handle);
        host.shutdown().await.expect("clean");
        committer.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
