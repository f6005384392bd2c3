//! The router's driver: the tokio task that runs a [`RouterCore`] over a
//! QUIC [`Transport`] and a [`Directory`].
//!
//! One task owns the core; nothing else touches it, so the core needs no
//! lock. Everything slow (directory calls, dials, graceful link closes)
//! runs in tasks of its own and reports back through a bounded channel.
//!
//! # Data flow
//!
//! ```text
//!   link readers ──runs the FIB alone decides──▶ next hop's link queue
//!   (the fast path, `fast` module; the rest of each read, as events:)
//!   Transport ──LinkEvent (bounded: event_queue)──▶ ┌───────────────┐
//!     Up { peer }        ─▶ core.link_up (Router{metadata} / Endpoint)
//!     Pdus { batch }     ─▶ core.handle_pdus, the whole batch
//!     Malformed (stream) ─▶ close the link (its stream is out of sync)
//!     Down               ─▶ core.link_down                │
//!                                                         │  driver task
//!   directory / dial tasks ──Completion (bounded)───────▶ │  (owns the
//!     lookup done        ─▶ core.lookup_result            │   RouterCore)
//!     dial failed        ─▶ core.dial_failed, backoff     │
//!   core.poll_timeout ──▶ one tokio sleep ──────────────▶ │
//!   audit_interval tick ─▶ directory audit / repair ────▶ │
//!   RouterHandle ──Command (bounded)────────────────────▶ └───────────────┘
//!                                                            │        │
//!        core.poll_transmit: one batch per link ─────────────┘        │
//!          ─▶ Link::try_send_batch / send_unreliable (never waits;    │
//!             a full queue: the link's overflow, then drop)           │
//!        core.poll_action ────────────────────────────────────────────┘
//!          Lookup / Publish / Unpublish ─▶ directory tasks
//!          Dial ─▶ dial task (tracked per router, bounded, backed off;
//!                  Transport::dial, PeerPolicy::Expect(router))
//!          CloseLink ─▶ close task (lets queued PDUs leave, then closes)
//! ```
//!
//! Each turn starts with the completions already waiting (up to
//! [`COMPLETIONS_PER_TURN`]): lookups, dials and directory writes finish
//! however busy the links are.
//!
//! The hot path is batched: the driver handles every PDU of an event (and
//! of up to [`EVENTS_PER_TURN`] events already waiting), then drains the
//! core's transmits once, so each link gets one queue operation per turn
//! however many PDUs it carries. It drains earlier every
//! [`FLUSH_EVERY`] PDUs, so the core's per-link outbox never fills. After
//! each full drain it seals the FIB's epoch and tells the fast path which
//! links' reads it has handled, so their readers may forward again.
//!
//! # Bounded queues and back-pressure
//!
//! | queue | bound | when full |
//! | --- | --- | --- |
//! | link events | `TransportConfig::event_queue` | link readers wait; QUIC flow control slows the peers |
//! | one link's batches among the link events | `TransportConfig::events_per_link` (2) | that link's reader waits (datagram batches beyond `datagram_events_per_link`, 16, are dropped and counted): a flooding link slows itself, and every other link's PDUs wait behind at most two of its batches |
//! | link send queue | `TransportConfig::link_queue_bytes` (memory really held) | never waited on: the link's PDUs wait in its overflow, and readers stop forwarding to it |
//! | per-link overflow | [`DriverConfig::link_overflow_bytes`] | PDUs for that link are dropped and counted (`queue_full`); a link whose queue took nothing for [`DriverConfig::stall_timeout`] is closed (`stalled_links_closed`) |
//! | dials | [`DriverConfig::max_dials`] running, one per router, backoff after failure | refused and counted (`dials_refused`), reported to the core as failed |
//! | completions | [`COMPLETION_QUEUE`] | the reporting task waits |
//! | commands | [`COMMAND_QUEUE`] | the caller waits |
//! | directory lookups | [`DriverConfig::directory_concurrency`] in flight | further lookups wait for a permit |
//! | directory writes and audits | [`DriverConfig::publish_concurrency`] in flight | further writes wait for a permit |
//!
//! No link can hold the driver up: a full send queue never makes it wait.
//! The PDUs the core sends to such a link wait in a small per-link
//! overflow (copied out of the reader blocks they share when small), which
//! the driver retries every [`OVERFLOW_RETRY`] and before any newer PDU for
//! that link; while it is not empty the link readers leave PDUs for that
//! link to the driver, so order is kept. What does not fit the overflow is
//! dropped and counted.
//!
//! # Shutdown
//!
//! [`Running::shutdown`] (or dropping every [`RouterHandle`]) ends the loop:
//! every dial is cancelled, the core withdraws everything ([`RouterCore::shutdown`]); its Unpublish
//! actions run against the directory and are awaited (up to
//! [`DriverConfig::shutdown_timeout`]); then [`Transport::shutdown`] flushes
//! every link's queue and closes the links, while the driver keeps reading
//! (and discarding) link events so no link task is left waiting on it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Kind, Name, Timestamp};
use gdp_link::{Direction, Link, LinkEvent, SendError, Transport, UnreliableOutcome};
use gdp_proto::frame::FrameError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::core::{Action, CloseReason, LinkId, LinkPeer, LookupError, RouterCore, Transmit};
use crate::directory::{Directory, DirectoryError, Unavailable};

mod dial;
mod directory;
mod embed;
mod fast;
mod launch;
mod snapshot;

use dial::{Dials, Refused, Started};
use directory::{Completion, DirectoryWorker};
pub use directory::{DirectoryStats, NAME_FULL_RETRY, NAME_FULL_RETRY_MAX};
pub use embed::{EMBED_SHUTDOWN_TIMEOUT, EmbedContext, EmbedFuture, EmbedHook};
use fast::FastPath;
pub use launch::{LaunchError, Launched, launch};
pub use snapshot::{DriverStats, LinkSnapshot, Snapshot};

/// Most link events handled in one turn before the core's output is
/// drained.
pub const EVENTS_PER_TURN: usize = 64;
/// Most PDUs handed to the core before its transmits are drained (well
/// under the core's per-link outbox limit).
pub const FLUSH_EVERY: usize = 1024;
/// Bound of the channel from directory and dial tasks to the driver.
pub const COMPLETION_QUEUE: usize = 1024;
/// Most completions (lookups, writes, audits, dials) handled at the start
/// of each turn, before the link events, so a flood of events cannot
/// starve them.
pub const COMPLETIONS_PER_TURN: usize = 256;
/// Bound of the channel from [`RouterHandle`]s to the driver.
pub const COMMAND_QUEUE: usize = 16;
/// How long a link closed by the core gets for what is queued on it to
/// leave before the close.
const CLOSE_GRACE: Duration = Duration::from_millis(250);
/// A sleep standing for "no timer".
const NO_TIMER: Duration = Duration::from_secs(3600);
/// The router's default for `TransportConfig::unproven_pdu_limit`: the
/// largest PDU an endpoint link's reader assembles before the endpoint has
/// attached (attach messages are a few hundred bytes). The driver lifts the
/// bound once the core has the endpoint attached, and at once for router
/// links.
pub const UNPROVEN_PDU_LIMIT: usize = 64 * 1024;
/// How often PDUs waiting in a link's overflow are offered to its queue
/// again.
pub const OVERFLOW_RETRY: Duration = Duration::from_millis(5);
/// The first pause of an endpoint link's reads after a batch of which at
/// least half was dropped. The driver keeps that batch's credit for the
/// pause, so the link's reader (which may have
/// [`events_per_link`](gdp_link::TransportConfig::events_per_link) batches
/// waiting) stops reading and QUIC flow control stops the peer. Each
/// further such batch makes the pause four times as long, up to
/// [`DriverConfig::drop_penalty_max`]; a batch dropped less than half
/// halves it.
pub const DROP_PENALTY_START: Duration = Duration::from_millis(4);
/// PDUs of a batch the driver handles from a link that pays the longest
/// penalty ([`DriverConfig::drop_penalty_max`]); the rest of the batch is
/// dropped unread (counted in [`DriverStats::penalty_unread`]). The
/// sample decides whether the penalty goes on: a mostly delivered one
/// halves it, and the link's next batch is handled whole.
pub const PENALTY_SAMPLE: usize = 64;
/// PDUs shorter than this are copied into a link's overflow rather than
/// kept as slices of the reader block they came in.
const OVERFLOW_COPY_BELOW: usize = 16 * 1024;

/// Settings of the driver (the core and the transport have their own).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverConfig {
    /// How often the directory is checked for this router's own record, and
    /// every record published again after failed writes.
    pub audit_interval: Duration,
    /// A link whose send queue takes nothing from its overflow for this
    /// long is closed as stuck (the driver itself never waits for it).
    pub stall_timeout: Duration,
    /// Bytes (of memory held) of PDUs the driver keeps for one link whose
    /// send queue is full; beyond it they are dropped and counted.
    pub link_overflow_bytes: usize,
    /// Most directory lookups in flight at once.
    pub directory_concurrency: usize,
    /// Most directory writes (publish, unpublish) and audit lookups in
    /// flight at once, apart from lookups, so that a lookup storm cannot
    /// hold up this router's own publications.
    pub publish_concurrency: usize,
    /// Most of this router's own records checked against the directory per
    /// audit (besides its own router record, checked every audit).
    pub audit_batch: usize,
    /// Most dials to other routers running at once.
    pub max_dials: usize,
    /// How long a router whose dial failed is not dialed again; doubles
    /// after each further failure.
    pub dial_backoff: Duration,
    /// The longest that backoff grows.
    pub dial_backoff_max: Duration,
    /// Longest a shutdown waits for the directory to take the withdrawals.
    pub shutdown_timeout: Duration,
    /// Longest the driver keeps an endpoint link's batch credit after a
    /// batch of which at least half was dropped (see [`DROP_PENALTY_START`]);
    /// zero turns the penalty off.
    pub drop_penalty_max: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            audit_interval: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(2),
            link_overflow_bytes: 256 * 1024,
            directory_concurrency: 64,
            publish_concurrency: 16,
            audit_batch: 256,
            max_dials: 64,
            dial_backoff: Duration::from_secs(1),
            dial_backoff_max: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(3),
            drop_penalty_max: Duration::from_millis(250),
        }
    }
}

/// A look at the core, run on the driver task.
type Inspection = Box<dyn FnOnce(&RouterCore) + Send>;

/// A request to the driver task.
enum Command {
    Snapshot(oneshot::Sender<Snapshot>),
    Inspect(Inspection),
    Shutdown,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Snapshot(_) => "Snapshot",
            Command::Inspect(_) => "Inspect",
            Command::Shutdown => "Shutdown",
        })
    }
}

/// The router task has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the router has stopped")]
pub struct RouterStopped;

/// A cloneable handle to a running router.
#[derive(Debug, Clone)]
pub struct RouterHandle {
    name: Name,
    local_addr: SocketAddr,
    commands: mpsc::Sender<Command>,
}

impl RouterHandle {
    /// The router's name.
    pub fn name(&self) -> Name {
        self.name
    }

    /// The UDP address the router's transport is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The router's counters and links now.
    pub async fn snapshot(&self) -> Result<Snapshot, RouterStopped> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Snapshot(tx))
            .await
            .map_err(|_| RouterStopped)?;
        rx.await.map_err(|_| RouterStopped)
    }

    /// Runs `look` on the router's core, between two of its events, and
    /// returns what it returns: how the admin API lists the FIB, endpoints,
    /// capsules and lookups. `look` must be quick: the router waits for it.
    pub async fn inspect<T: Send + 'static>(
        &self,
        look: impl FnOnce(&RouterCore) -> T + Send + 'static,
    ) -> Result<T, RouterStopped> {
        let (tx, rx) = oneshot::channel();
        let run: Inspection = Box::new(move |core| {
            let _ = tx.send(look(core));
        });
        self.commands
            .send(Command::Inspect(run))
            .await
            .map_err(|_| RouterStopped)?;
        rx.await.map_err(|_| RouterStopped)
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSummary {
    /// Records withdrawn from the directory.
    pub withdrawn: u64,
    /// Withdrawals that failed or did not finish in time.
    pub withdraw_failures: u64,
    /// What the transport's shutdown did.
    pub transport: gdp_link::ShutdownReport,
}

/// A running router task.
#[derive(Debug)]
pub struct Running {
    handle: RouterHandle,
    task: JoinHandle<ShutdownSummary>,
}

impl Running {
    /// A handle to the router.
    pub fn handle(&self) -> &RouterHandle {
        &self.handle
    }

    /// Shuts the router down (see the module documentation) and waits until
    /// it has stopped.
    pub async fn shutdown(self) -> Result<ShutdownSummary, RouterStopped> {
        // If the task is already gone the send fails and the join below
        // tells what happened.
        let _ = self.handle.commands.send(Command::Shutdown).await;
        self.task.await.map_err(|_| RouterStopped)
    }
}

/// Starts the driver task for `core` over `transport` (whose event receiver
/// is `events`) and `directory`.
///
/// Must be called inside a tokio runtime.
pub fn spawn(
    core: RouterCore,
    transport: Transport,
    events: mpsc::Receiver<LinkEvent>,
    directory: Arc<dyn Directory>,
    config: DriverConfig,
) -> Running {
    let name = core.name();
    let fast = Arc::new(FastPath::new(name, core.fib()));
    if transport
        .set_forwarder(Arc::new(fast::Install(fast.clone())))
        .is_err()
    {
        tracing::warn!("the transport already has a forwarder; every pdu goes through the driver");
    }
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (completions_tx, completions) = mpsc::channel(COMPLETION_QUEUE);
    let handle = RouterHandle {
        name,
        local_addr: transport.local_addr(),
        commands: commands_tx,
    };
    let driver = Driver {
        directory: DirectoryWorker::new(directory, name, &config, completions_tx.clone()),
        dials: Dials::new(&config),
        core,
        name,
        fast,
        slow_reads: Vec::new(),
        transport,
        events,
        commands,
        completions,
        completions_tx,
        links: HashMap::new(),
        overflowing: Vec::new(),
        config,
        stats: DriverStats::default(),
        since_flush: 0,
        shutting_down: false,
    };
    let task = tokio::spawn(driver.run());
    Running { handle, task }
}

/// A link the transport reported up.
struct LinkEntry {
    link: Link,
    kind: Kind,
    /// PDUs waiting for room in the link's queue, oldest first.
    overflow: Overflow,
    /// The reader's bound on an incomplete PDU is still in place (the
    /// endpoint has not attached yet).
    pdu_bounded: bool,
    /// The pause its next mostly dropped batch costs it, before doubling
    /// (zero while its batches go through).
    penalty: Duration,
}

/// PDUs the core sent to a link whose queue was full.
#[derive(Default)]
struct Overflow {
    pdus: VecDeque<Bytes>,
    /// Memory they hold (see [`overflow_copy`]).
    bytes: usize,
    /// Since when the link's queue has taken nothing (set while `pdus` is
    /// not empty).
    stuck_since: Option<Instant>,
}

/// A PDU as the overflow keeps it, and the memory it holds: a small one
/// copied out of its reader block, a larger one kept as it is and counted
/// as the block it may share.
fn overflow_copy(pdu: Bytes) -> (Bytes, usize) {
    let held = overflow_copy_len(pdu.len());
    if pdu.len() < OVERFLOW_COPY_BELOW {
        (Bytes::copy_from_slice(&pdu), held)
    } else {
        (pdu, held)
    }
}

/// The memory [`overflow_copy`] counts for a PDU of `len` bytes.
fn overflow_copy_len(len: usize) -> usize {
    if len < OVERFLOW_COPY_BELOW {
        len
    } else {
        len.max(gdp_link::SHARED_BLOCK)
    }
}

/// The driver task's state. See the module documentation.
struct Driver {
    core: RouterCore,
    name: Name,
    /// What the link readers forward themselves (see the `fast` module).
    fast: Arc<FastPath>,
    /// Links with reads left to the driver that it has handled since the
    /// last full flush, one entry per read.
    slow_reads: Vec<LinkId>,
    transport: Transport,
    events: mpsc::Receiver<LinkEvent>,
    commands: mpsc::Receiver<Command>,
    completions: mpsc::Receiver<Completion>,
    completions_tx: mpsc::Sender<Completion>,
    directory: DirectoryWorker,
    dials: Dials,
    links: HashMap<LinkId, LinkEntry>,
    /// Links with PDUs in their overflow.
    overflowing: Vec<LinkId>,
    config: DriverConfig,
    stats: DriverStats,
    since_flush: usize,
    shutting_down: bool,
}

/// The core's number for a transport link (transport ids are never reused).
fn core_id(id: gdp_link::LinkId) -> LinkId {
    LinkId(id.get())
}

impl Driver {
    async fn run(mut self) -> ShutdownSummary {
        let mut audit = tokio::time::interval_at(
            Instant::now() + self.config.audit_interval,
            self.config.audit_interval,
        );
        audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(router = %self.name, addr = %self.transport.local_addr(), "router running");
        loop {
            // The router's own calls finish first: a flood of link events
            // never leaves lookups, dials and writes waiting for a turn.
            self.drain_completions();
            let wake = self.run_timers();
            // What the timers produced (the first start's own record and
            // gateway dial among it) leaves now, not after the next event.
            self.flush();
            let overflowing = !self.overflowing.is_empty();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Snapshot(reply)) => {
                        let _ = reply.send(self.snapshot());
                    }
                    Some(Command::Inspect(look)) => look(&self.core),
                    Some(Command::Shutdown) | None => break,
                },
                event = self.events.recv() => match event {
                    Some(event) => self.on_events(event),
                    None => {
                        tracing::warn!("the transport stopped; the router stops");
                        break;
                    }
                },
                Some(done) = self.completions.recv() => self.on_completion(done),
                () = tokio::time::sleep_until(wake) => {}
                () = tokio::time::sleep(OVERFLOW_RETRY), if overflowing => self.retry_overflows(),
                _ = audit.tick() => self.directory.audit(Timestamp::now()),
            }
        }
        self.shutdown().await
    }

    /// Handles up to [`COMPLETIONS_PER_TURN`] completions already waiting.
    fn drain_completions(&mut self) {
        for _ in 0..COMPLETIONS_PER_TURN {
            match self.completions.try_recv() {
                Ok(done) => self.on_completion(done),
                Err(_) => break,
            }
        }
    }

    /// Runs the core's due timers; returns when to wake for the next.
    fn run_timers(&mut self) -> Instant {
        let now = Timestamp::now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        match self.core.poll_timeout() {
            Some(t) => Instant::now() + t.since(now),
            None => Instant::now() + NO_TIMER,
        }
    }

    /// Handles `first` and the events already waiting behind it.
    fn on_events(&mut self, first: LinkEvent) {
        self.on_event(first);
        for _ in 1..EVENTS_PER_TURN {
            match self.events.try_recv() {
                Ok(event) => self.on_event(event),
                Err(_) => break,
            }
        }
    }

    fn on_event(&mut self, event: LinkEvent) {
        self.stats.events += 1;
        let now = Timestamp::now();
        match event {
            LinkEvent::Up {
                link_id,
                peer,
                link,
                direction,
                ..
            } => {
                let id = core_id(link_id);
                let kind = peer.metadata().kind();
                if kind == Kind::Router
                    && direction == Direction::Inbound
                    && self.dials.linked(peer.name())
                {
                    tracing::debug!(router = %peer.name().short(),
                        "the router linked to us; our dial is cancelled");
                    self.stats.dials_cancelled += 1;
                }
                let role = if kind == Kind::Router {
                    LinkPeer::Router {
                        metadata: peer.metadata().clone(),
                    }
                } else {
                    LinkPeer::Endpoint
                };
                if kind == Kind::Router {
                    // The peering policy judges router links; their PDUs
                    // may be large from the start.
                    link.lift_pdu_limit();
                }
                self.links.insert(
                    id,
                    LinkEntry {
                        link,
                        kind,
                        overflow: Overflow::default(),
                        pdu_bounded: kind != Kind::Router,
                        penalty: Duration::ZERO,
                    },
                );
                self.core.link_up(now, id, role);
            }
            // The batch's credit goes back to its link once it is handled
            // (the end of this arm): a busy link never has more than its
            // share of batches waiting ahead of other links'.
            LinkEvent::Pdus {
                link_id,
                pdus,
                reliable,
                credit,
            } => {
                let id = core_id(link_id);
                if reliable {
                    self.slow_reads.push(id);
                }
                let mut pdus = pdus;
                self.stats.pdus_in += pdus.len() as u64;
                if pdus.len() > PENALTY_SAMPLE && self.at_max_penalty(id) {
                    // Its last batches went nowhere: a sample of this one
                    // tells whether that still holds; the rest is dropped
                    // unread.
                    let unread = pdus.len() - PENALTY_SAMPLE;
                    pdus.truncate(PENALTY_SAMPLE);
                    self.stats.penalty_unread += unread as u64;
                }
                let count = pdus.len();
                let dropped_before = self.dropped();
                let mut pdus = pdus.into_iter();
                while pdus.len() > 0 {
                    let room = FLUSH_EVERY.saturating_sub(self.since_flush).max(1);
                    let take = room.min(pdus.len());
                    self.core.handle_pdus(now, id, pdus.by_ref().take(take));
                    self.since_flush += take;
                    if self.since_flush >= FLUSH_EVERY {
                        self.flush_transmits();
                    }
                }
                self.lift_when_attached(id);
                if !self.overflowing.is_empty() {
                    // Some next hop is full: what this batch adds to it is
                    // refused now, so the refusals count against this link.
                    self.flush_transmits();
                }
                let dropped = self.dropped() - dropped_before;
                self.charge(id, count, dropped, credit);
            }
            LinkEvent::Malformed {
                link_id,
                error,
                reliable,
                total,
            } => {
                if matches!(error, FrameError::Oversized { .. }) {
                    self.stats.oversized += 1;
                }
                if reliable {
                    self.stats.malformed_stream += 1;
                    tracing::info!(link = %link_id, %error, "malformed stream; closing the link");
                    self.transport.close(link_id, "malformed pdu stream");
                } else {
                    self.stats.malformed_datagram += 1;
                    tracing::debug!(link = %link_id, %error, total, "malformed datagram");
                }
            }
            LinkEvent::Down { link_id, reason } => {
                let id = core_id(link_id);
                tracing::debug!(link = %link_id, %reason, "link down");
                if let Some(entry) = self.links.remove(&id) {
                    self.stats.send_dropped += entry.overflow.pdus.len() as u64;
                }
                self.fast.remove(id);
                self.core.link_down(now, id);
            }
            other => tracing::debug!(link = %other.link_id(), "unknown link event ignored"),
        }
    }

    /// Lifts the reader's bound on large PDUs of `link` once the core has
    /// its endpoint attached (before the acceptance leaves, so the endpoint
    /// never sends a large PDU under the bound).
    fn lift_when_attached(&mut self, link: LinkId) {
        let Some(entry) = self.links.get_mut(&link) else {
            return;
        };
        if entry.pdu_bounded
            && self
                .core
                .link_info(link)
                .is_some_and(|info| info.role == crate::core::LinkRole::Endpoint)
        {
            entry.link.lift_pdu_limit();
            entry.pdu_bounded = false;
        }
    }

    fn on_completion(&mut self, done: Completion) {
        let now = Timestamp::now();
        match done {
            Completion::Lookup { name, result } => {
                let result = self.directory.lookup_done(result).map_err(lookup_error);
                self.core.lookup_result(now, name, result);
            }
            Completion::Write {
                name,
                unpublish,
                result,
            } => {
                self.directory.write_done(name, unpublish, &result);
                if !unpublish {
                    self.core.publish_done(now, name, result.is_ok());
                }
            }
            Completion::Audit { name, result } => self.directory.audit_done(now, name, result),
            Completion::Pruned { name, result } => self.directory.prune_done(name, result),
            Completion::DialFailed { router, error } => {
                self.stats.dials_failed += 1;
                self.dials.failed(router);
                tracing::info!(router = %router.short(), %error, "dial failed");
                self.core.dial_failed(now, router);
            }
            Completion::Dialed { router } => self.dials.succeeded(router),
        }
    }

    /// Drains the core: transmits first, then actions (so a link closed by
    /// an action has its last PDUs queued before the close). Then, with
    /// everything the core produced on its links, lets the link readers see
    /// the new FIB entries and forward again after the reads they left here.
    fn flush(&mut self) {
        self.retry_overflows();
        self.flush_transmits();
        while let Some(action) = self.core.poll_action() {
            self.on_action(action);
        }
        // Actions queue nothing on links, so the transmits above are all.
        self.core.seal_fib();
        for link in self.slow_reads.drain(..) {
            self.fast.slow_done(link);
        }
    }

    /// Whether link `id` pays the longest penalty now.
    fn at_max_penalty(&self, id: LinkId) -> bool {
        let max = self.config.drop_penalty_max;
        !max.is_zero() && self.links.get(&id).is_some_and(|e| e.penalty >= max)
    }

    /// PDUs dropped so far, by the core and for full link queues.
    fn dropped(&self) -> u64 {
        self.core.stats().dropped.total() + self.stats.queue_full
    }

    /// Charges an endpoint link for a batch of `count` PDUs of which
    /// `dropped` went nowhere: a batch at least half dropped keeps its
    /// `credit` for the link's penalty, which then grows fourfold; a batch
    /// mostly delivered halves it. Router links are not charged: what they carry
    /// is many sources' traffic, which one of them must not slow.
    fn charge(&mut self, id: LinkId, count: usize, dropped: u64, credit: gdp_link::Credit) {
        let max = self.config.drop_penalty_max;
        let Some(entry) = self.links.get_mut(&id) else {
            return;
        };
        if max.is_zero() || entry.kind == Kind::Router {
            return;
        }
        if dropped == 0 || dropped * 2 < count as u64 {
            entry.penalty /= 2;
            return;
        }
        let hold = entry.penalty.max(DROP_PENALTY_START).min(max);
        entry.penalty = hold.saturating_mul(4).min(max);
        self.stats.drop_penalties += 1;
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            drop(credit);
        });
    }

    fn flush_transmits(&mut self) {
        self.since_flush = 0;
        while let Some(transmit) = self.core.poll_transmit() {
            self.transmit(transmit);
        }
    }

    /// Queues one batch on its link, never waiting: a reliable batch that
    /// finds the queue full, or PDUs of the link already waiting, goes to
    /// the link's overflow.
    fn transmit(&mut self, t: Transmit) {
        let count = t.pdus.len() as u64;
        let Some(entry) = self.links.get_mut(&t.link) else {
            self.stats.send_dropped += count;
            return;
        };
        if !t.reliable {
            for pdu in t.pdus {
                match entry.link.send_unreliable(pdu) {
                    Ok(UnreliableOutcome::Dropped) => self.stats.unreliable_dropped += 1,
                    Ok(_) => self.stats.pdus_out += 1,
                    Err(_) => self.stats.send_dropped += 1,
                }
            }
            return;
        }
        let mut pdus = t.pdus;
        if entry.overflow.pdus.is_empty() {
            match entry.link.try_send_batch_from(&mut pdus) {
                Ok(()) => {
                    self.stats.pdus_out += count;
                    self.stats.batches_out += 1;
                    return;
                }
                Err(SendError::Full(_)) => {
                    // The link's later PDUs, from readers too, wait behind
                    // these.
                    self.stats.send_stalls += 1;
                    self.fast.hold(t.link, true);
                    if entry.overflow.stuck_since.is_none() {
                        entry.overflow.stuck_since = Some(Instant::now());
                        self.overflowing.push(t.link);
                    }
                }
                Err(e) => {
                    tracing::debug!(link = %t.link, error = %e, "batch not queued");
                    self.stats.send_dropped += count;
                    return;
                }
            }
        }
        let limit = self.config.link_overflow_bytes;
        let overflow = &mut entry.overflow;
        let mut refused = 0u64;
        for pdu in pdus {
            let (pdu, held) = overflow_copy(pdu);
            if overflow.bytes + held > limit {
                refused += 1;
                continue;
            }
            overflow.bytes += held;
            overflow.pdus.push_back(pdu);
        }
        if refused > 0 {
            self.stats.queue_full += refused;
            tracing::debug!(link = %t.link, refused, "link queue and overflow full; pdus dropped");
        }
    }

    /// Offers the PDUs waiting in each overflow to their link's queue, in
    /// order, as far as there is room; closes links whose queue has taken
    /// nothing for the stall timeout.
    fn retry_overflows(&mut self) {
        if self.overflowing.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut still = Vec::with_capacity(self.overflowing.len());
        for id in std::mem::take(&mut self.overflowing) {
            let Some(entry) = self.links.get_mut(&id) else {
                continue;
            };
            let overflow = &mut entry.overflow;
            let mut moved = false;
            while !overflow.pdus.is_empty() {
                // A few PDUs per queue operation, oldest first.
                let mut take = Vec::new();
                let mut held = 0usize;
                while let Some(len) = overflow.pdus.front().map(Bytes::len) {
                    if !take.is_empty() && held + len > gdp_link::SHARED_BLOCK {
                        break;
                    }
                    let Some(pdu) = overflow.pdus.pop_front() else {
                        break;
                    };
                    held += overflow_copy_len(len);
                    take.push(pdu);
                }
                let n = take.len() as u64;
                match entry.link.try_send_batch_from(&mut take) {
                    Ok(()) => {
                        overflow.bytes = overflow.bytes.saturating_sub(held);
                        self.stats.pdus_out += n;
                        self.stats.batches_out += 1;
                        moved = true;
                    }
                    Err(SendError::Full(_)) => {
                        for pdu in take.into_iter().rev() {
                            overflow.pdus.push_front(pdu);
                        }
                        break;
                    }
                    Err(_) => {
                        self.stats.send_dropped += n + overflow.pdus.len() as u64;
                        overflow.pdus.clear();
                        overflow.bytes = 0;
                    }
                }
            }
            if overflow.pdus.is_empty() {
                overflow.bytes = 0;
                overflow.stuck_since = None;
                self.fast.hold(id, false);
                continue;
            }
            if moved {
                overflow.stuck_since = Some(now);
            }
            let stuck = overflow
                .stuck_since
                .is_some_and(|t| now.duration_since(t) >= self.config.stall_timeout);
            if stuck {
                tracing::warn!(link = %id, peer = %entry.link.peer().name().short(),
                    "send queue full for the stall timeout; closing the link");
                self.stats.stalled_links_closed += 1;
                self.stats.send_dropped += overflow.pdus.len() as u64;
                overflow.pdus.clear();
                overflow.bytes = 0;
                overflow.stuck_since = None;
                entry.link.close("send queue stuck");
                continue;
            }
            still.push(id);
        }
        self.overflowing = still;
    }

    fn on_action(&mut self, action: Action) {
        match action {
            Action::Lookup(name) => self.directory.lookup(name),
            Action::Publish {
                name,
                record,
                expires,
            } => self.directory.publish(name, record, expires),
            Action::Unpublish { name } => self.directory.unpublish(name),
            Action::Dial {
                router, addresses, ..
            } => self.dial(router, addresses),
            Action::CloseLink { link, reason } => self.close_link(link, &reason),
        }
    }

    /// Dials `router` at each address in turn (see the `dial` module); only
    /// a failure on all of them is reported (a success arrives as the
    /// link's `Up`). A refused dial is reported to the core as failed now.
    fn dial(&mut self, router: Name, addresses: Vec<SocketAddr>) {
        if self.shutting_down {
            return;
        }
        match self
            .dials
            .start(router, addresses, &self.transport, &self.completions_tx)
        {
            Started::Dialing | Started::Already => {}
            Started::Refused(why) => {
                match why {
                    Refused::Limit => self.stats.dials_refused_limit += 1,
                    Refused::Backoff => self.stats.dials_refused_backoff += 1,
                }
                tracing::debug!(router = %router.short(), ?why, "dial refused");
                self.core.dial_failed(Timestamp::now(), router);
            }
        }
    }

    /// Closes `link` once what is queued on it has left (or
    /// [`CLOSE_GRACE`] has passed).
    fn close_link(&mut self, link: LinkId, reason: &CloseReason) {
        if self.shutting_down {
            // The transport's shutdown closes every link gracefully.
            return;
        }
        let Some(link) = self.links.get(&link).map(|e| e.link.clone()) else {
            return;
        };
        let reason = reason.to_string();
        tracing::debug!(link = %link.id(), peer = %link.peer().name().short(), %reason, "closing link");
        tokio::spawn(async move {
            let deadline = Instant::now() + CLOSE_GRACE;
            while link.stats().queued_pdus > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            link.close(&reason);
        });
    }

    fn snapshot(&self) -> Snapshot {
        let links = self
            .links
            .iter()
            .map(|(id, entry)| LinkSnapshot {
                id: id.0,
                peer: entry.link.peer().name(),
                kind: entry.kind,
                role: self.core.link_info(*id).map(|info| info.role),
                direction: entry.link.direction(),
                remote_addr: entry.link.remote_addr(),
                stats: entry.link.stats(),
            })
            .collect();
        let mut driver = self.stats.clone();
        driver.directory = self.directory.stats.clone();
        let fast = &self.fast.stats;
        driver.fast_forwarded = fast.forwarded.load(Ordering::Relaxed);
        driver.fast_batches = fast.batches.load(Ordering::Relaxed);
        driver.dials_running = self.dials.running() as u64;
        driver.dials_backed_off = self.dials.backed_off() as u64;
        driver.overflow_bytes = self.links.values().map(|e| e.overflow.bytes as u64).sum();
        driver.transport = self.transport.transport_stats();
        // The readers' forwarding is the core's decision taken early: count
        // it where the core counts its own.
        let mut core = self.core.stats().clone();
        core.add_fast_path(
            driver.fast_forwarded,
            fast.delivered_local.load(Ordering::Relaxed),
        );
        Snapshot {
            name: self.name,
            backend: self.directory.backend(),
            core,
            driver,
            event_queue: self.events.len(),
            directory_in_flight: self.directory.in_flight(),
            links,
        }
    }

    async fn shutdown(mut self) -> ShutdownSummary {
        tracing::info!(router = %self.name, "router shutting down");
        self.shutting_down = true;
        self.dials.cancel_all();
        let now = Timestamp::now();
        self.core.shutdown(now);
        let before = (
            self.directory.stats.unpublishes,
            self.directory.stats.unpublish_failures,
        );
        self.flush();
        // Let the withdrawals reach the directory.
        let deadline = Instant::now() + self.config.shutdown_timeout;
        while self.directory.writes_in_flight() > 0 {
            match tokio::time::timeout_at(deadline, self.completions.recv()).await {
                Ok(Some(Completion::Write {
                    name,
                    unpublish,
                    result,
                })) => self.directory.write_done(name, unpublish, &result),
                Ok(Some(Completion::Lookup { result, .. })) => {
                    let _ = self.directory.lookup_done(result);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let withdrawn = self.directory.stats.unpublishes - before.0;
        let withdraw_failures = self.directory.stats.unpublish_failures - before.1
            + self.directory.writes_in_flight() as u64;
        // Keep reading link events while the transport flushes and closes,
        // so no link task waits on a full channel.
        let transport = self.transport.clone();
        let closing = transport.shutdown("router shutting down");
        tokio::pin!(closing);
        let mut events_open = true;
        let report = loop {
            tokio::select! {
                report = &mut closing => break report,
                event = self.events.recv(), if events_open => events_open = event.is_some(),
            }
        };
        tracing::info!(router = %self.name, withdrawn, withdraw_failures,
            links = report.links, flushed = report.flushed, "router stopped");
        ShutdownSummary {
            withdrawn,
            withdraw_failures,
            transport: report,
        }
    }
}

/// The core's view of a failed directory lookup.
fn lookup_error(e: DirectoryError) -> LookupError {
    match e {
        DirectoryError::Unavailable {
            cause: Unavailable::Timeout(_),
            ..
        } => LookupError::Timeout,
        e => LookupError::Unavailable(e.to_string()),
    }
}
