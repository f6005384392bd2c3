//! Hostile peers of a router and of a capsule server, for the router's
//! hostile-peer tests (`router/tests/hostile.rs`) and its attack benchmark
//! (`router/benches/attacks.rs`).
//!
//! Each attack is one function that takes the router's address and name
//! (and what else it needs), runs until its [`Stop`] (a deadline, or an
//! earlier [`Stop::cancel`]) and returns what it sent ([`Sent`]: bytes,
//! PDUs, links) with, for the capsule attacks, what the server answered
//! ([`Answers`]). The attacks are the ones the router and the capsule
//! server must withstand (`SECURITY.md`), numbered as in the hostile-peer
//! tests:
//!
//! | # | attack | function |
//! | --- | --- | --- |
//! | 1 | links that complete TLS and never answer the attach challenge | [`links::unproven_links`] |
//! | 2 | a self-declared router injecting PDUs with a victim's source | [`links::rogue_router`] |
//! | 3 | an endpoint that stops reading, flooded with 1 KiB PDUs | [`flood::stalled_receiver`] |
//! | 4 | 256-entry Advertise PDUs with forged AdCerts | [`flood::advertise_flood`] |
//! | 5 | capsule creation beyond the quota | [`capsule::create_flood`] |
//! | 6 | a non-writer appending to a capsule | [`capsule::foreign_appends`] |
//! | 7 | more subscriptions than a peer may hold | [`capsule::subscription_hoard`] |
//! | 8 | many small PDUs to a stalled receiver | [`flood::stalled_receiver`] |
//! | 9 | PDUs to many random names | [`flood::lookup_storm`] |
//! | 10 | junk, altered and dial-storm records in the directory | [`directory`] |
//! | 11 | a stale valid record replayed next to a fresh one | [`directory::replay_field`] |
//! | 12 | a heartbeat that batch and strict verification disagreed on | [`capsule::small_order_heartbeats`] |
//!
//! Attackers bind [`ATTACKER_IP`] (127.0.0.2), so that limits per source
//! address hit them and not the measuring [`PingPair`], which binds
//! 127.0.0.1. Every loop is bounded by its [`Stop`] and every address an
//! attack sends to is on loopback.
//!
//! [`pair`] measures the effect: two endpoints attached to the router ping
//! each other through it for as long as the attack runs. [`procfs`] reads
//! a process's memory and CPU time.

pub mod capsule;
pub mod directory;
pub mod flood;
pub mod links;
pub mod pair;
pub mod procfs;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Name};
use gdp_link::endpoint::{EndpointConfig, EndpointLink, EndpointReceiver};
use tokio::sync::watch;
use tokio::time::Instant;

pub use pair::{PingLog, PingPair, PingSample};

/// The address attackers bind (loopback, not 127.0.0.1).
pub const ATTACKER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// When an attack ends: at a deadline, or earlier when cancelled. Clones
/// share the cancellation.
#[derive(Debug, Clone)]
pub struct Stop {
    deadline: Instant,
    cancelled: Arc<watch::Sender<bool>>,
}

impl Stop {
    /// Ends `within` from now (tokio's clock).
    pub fn after(within: Duration) -> Stop {
        Stop {
            deadline: Instant::now() + within,
            cancelled: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Ends now, for every clone.
    pub fn cancel(&self) {
        self.cancelled.send_replace(true);
    }

    /// True once the deadline has passed or it was cancelled.
    pub fn is_over(&self) -> bool {
        *self.cancelled.borrow() || Instant::now() >= self.deadline
    }

    /// The time left (zero once over).
    pub fn remaining(&self) -> Duration {
        if *self.cancelled.borrow() {
            return Duration::ZERO;
        }
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Waits until it is over.
    pub async fn wait(&self) {
        let mut rx = self.cancelled.subscribe();
        tokio::select! {
            _ = tokio::time::sleep_until(self.deadline) => {}
            _ = rx.wait_for(|c| *c) => {}
        }
    }

    /// Runs `fut` until it ends or the stop comes, whichever is first;
    /// `None` when the stop came first.
    pub async fn run<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            v = fut => Some(v),
            () = self.wait() => None,
        }
    }
}

/// What an attack sent, and what became of its links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Bytes sent: encoded PDUs, or UDP payload bytes for attacks below
    /// the PDU layer.
    pub bytes: u64,
    /// PDUs (or requests, or directory entries) sent.
    pub pdus: u64,
    /// Links (QUIC connections) that completed their handshake.
    pub links: u64,
    /// Of those, the ones the peer closed (or that failed) before the
    /// attack ended.
    pub links_closed: u64,
    /// Links or attaches the router refused outright.
    pub refused: u64,
    /// PDUs the attacker received.
    pub received: u64,
}

impl Sent {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: Sent) {
        self.bytes += other.bytes;
        self.pdus += other.pdus;
        self.links += other.links;
        self.links_closed += other.links_closed;
        self.refused += other.refused;
        self.received += other.received;
    }
}

/// What a capsule server answered to an attack's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    /// What the attack sent.
    pub sent: Sent,
    /// Requests the server carried out (Created, Appended, Subscribed).
    pub accepted: u64,
    /// Requests the server refused with an error response.
    pub refused: u64,
    /// The error codes of the refusals, in order of first appearance.
    pub codes: Vec<gdp_proto::capsule::ErrorCode>,
    /// Requests with no answer before the attack ended (or a NAK).
    pub unanswered: u64,
}

/// Endpoint settings for an attacker: bound to [`ATTACKER_IP`], expecting
/// the router `router`, with short timers.
pub fn attacker_config(addr: SocketAddr, router: Name) -> EndpointConfig {
    let mut config = EndpointConfig::new(addr).with_router(router);
    config.transport.bind = SocketAddr::new(ATTACKER_IP, 0);
    config.transport.keep_alive = Duration::from_millis(300);
    config.transport.idle_timeout = Duration::from_secs(5);
    config.attach_timeout = Duration::from_secs(5);
    config
}

/// A fresh identity of `kind` labelled `label`.
///
/// # Panics
///
/// Never for the short labels used here (metadata limits).
pub fn identity(kind: Kind, label: &str) -> Identity {
    Identity::generate(kind, label).expect("a short label is within the metadata limits")
}

/// A fresh identity of `kind` attached from [`ATTACKER_IP`] to the router.
///
/// # Errors
///
/// When the router refuses the attach or does not answer in time.
pub async fn attach_attacker(
    addr: SocketAddr,
    router: Name,
    kind: Kind,
    label: &str,
) -> Result<(Identity, EndpointLink, EndpointReceiver), gdp_link::endpoint::EndpointError> {
    let id = identity(kind, label);
    let (link, rx) = EndpointLink::connect(&id, &attacker_config(addr, router)).await?;
    Ok((id, link, rx))
}

/// Counts what arrives on `rx` until it ends, in the background; the
/// returned handle yields the count.
pub fn drain_incoming(mut rx: EndpointReceiver) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    })
}

/// The total length of `pdus`.
fn total_len(pdus: &[Bytes]) -> u64 {
    pdus.iter().map(|p| p.len() as u64).sum()
}

/// A random name (of nothing that exists).
pub fn random_name() -> Name {
    Name::from_bytes(rand::random())
}
