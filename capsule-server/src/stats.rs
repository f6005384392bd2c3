//! What the capsule service refused and why: counters, and logging of
//! refusals that a flood cannot turn into a flood of log lines.
//!
//! Every refusal of a limit or a policy is counted in [`ServiceStats`] by
//! [`Refusal`], whatever the peer. Each is logged at `debug` with its
//! details; at `warn`, at most one line per reason per [`LOG_INTERVAL`]
//! says how many refusals of that reason there were since the last line,
//! with the latest one as an example. The interval is measured on the `now`
//! the service is given, like its rate limits.

use std::time::Duration;

use gdp_certs::{Name, Timestamp};

/// Shortest time between two `warn` lines about one reason of refusal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why the service refused what a peer asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// A request over its peer's request rate (`peer_requests`).
    PeerRate,
    /// An append over its capsule's record rate (`capsule_records`).
    CapsuleRate,
    /// An append while too many bytes of its capsule wait to become
    /// durable (`max_pending_bytes`).
    PendingBytes,
    /// An append whose heartbeat does not verify (a bad signature, a key
    /// that is not a writer's, a heartbeat for another capsule). Its records
    /// are charged to the sending peer's request budget.
    BadHeartbeat,
    /// A create by an owner key the allow list does not name
    /// (`create_policy`).
    CreatorNotAllowed,
    /// A create by an owner key that has its quota of capsules here
    /// (`create_policy`).
    CreatorQuota,
    /// A create over the server-wide create rate (`create_policy`).
    CreateRate,
    /// A create while the server hosts `max_capsules`.
    ServerFull,
    /// A subscription to a capsule that has `max_subscribers`.
    CapsuleSubscribers,
    /// A subscription of a peer that holds `max_subscriptions_per_peer`.
    PeerSubscriptions,
}

impl Refusal {
    /// Every reason, in the order of [`Refusals`]' fields.
    pub const ALL: [Refusal; 10] = [
        Refusal::PeerRate,
        Refusal::CapsuleRate,
        Refusal::PendingBytes,
        Refusal::BadHeartbeat,
        Refusal::CreatorNotAllowed,
        Refusal::CreatorQuota,
        Refusal::CreateRate,
        Refusal::ServerFull,
        Refusal::CapsuleSubscribers,
        Refusal::PeerSubscriptions,
    ];

    /// A short label, for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Refusal::PeerRate => "peer_rate",
            Refusal::CapsuleRate => "capsule_rate",
            Refusal::PendingBytes => "pending_bytes",
            Refusal::BadHeartbeat => "bad_heartbeat",
            Refusal::CreatorNotAllowed => "creator_not_allowed",
            Refusal::CreatorQuota => "creator_quota",
            Refusal::CreateRate => "create_rate",
            Refusal::ServerFull => "server_full",
            Refusal::CapsuleSubscribers => "capsule_subscribers",
            Refusal::PeerSubscriptions => "peer_subscriptions",
        }
    }

    fn index(self) -> usize {
        match self {
            Refusal::PeerRate => 0,
            Refusal::CapsuleRate => 1,
            Refusal::PendingBytes => 2,
            Refusal::BadHeartbeat => 3,
            Refusal::CreatorNotAllowed => 4,
            Refusal::CreatorQuota => 5,
            Refusal::CreateRate => 6,
            Refusal::ServerFull => 7,
            Refusal::CapsuleSubscribers => 8,
            Refusal::PeerSubscriptions => 9,
        }
    }
}

/// Refusals, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals([u64; Refusal::ALL.len()]);

impl Refusals {
    /// The counter for `reason`.
    pub fn get(&self, reason: Refusal) -> u64 {
        self.0[reason.index()]
    }

    /// All refusals together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn count(&mut self, reason: Refusal) {
        let c = &mut self.0[reason.index()];
        *c = c.saturating_add(1);
    }
}

/// Counters of a [`CapsuleService`](crate::service::CapsuleService). They
/// only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceStats {
    /// Requests refused by a limit or a policy, by reason.
    pub refused: Refusals,
    /// Capsules created (stored and answered `Created`).
    pub created: u64,
    /// Peers forgotten because they went away
    /// ([`CapsuleService::peer_gone`](crate::service::CapsuleService::peer_gone)).
    pub peers_gone: u64,
    /// Subscriptions ended because their peer went away.
    pub subscriptions_dropped: u64,
    /// Publish PDUs emitted for delivery trees (new records and tips).
    pub publishes: u64,
    /// Records carried by those Publish PDUs.
    pub published_records: u64,
    /// Encoded bytes of those Publish PDUs' payloads.
    pub published_bytes: u64,
    /// Tree leases taken (a router's first `Subscribe` for a capsule, or
    /// one after the lease ended).
    pub tree_leases_taken: u64,
    /// Tree leases that ran out without a refresh.
    pub tree_leases_expired: u64,
    /// Tree joins and leaves ignored, by reason.
    pub tree_ignored: TreeIgnoredCounts,
    /// `Sync` requests sent to other replicas.
    pub sync_requests: u64,
    /// `Sync` requests that got no answer within `sync_timeout`.
    pub sync_timeouts: u64,
    /// Records fetched from other replicas and accepted here.
    pub synced_records: u64,
    /// Forks found by anti-entropy (evidence kept).
    pub forks_found: u64,
}

/// Why a delivery-tree `Subscribe` or `Unsubscribe` was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TreeIgnored {
    /// It did not come from the router this server is attached to: only
    /// that router joins a capsule's tree here (an endpoint's own
    /// `Subscribe` is the router's business).
    NotRouter,
    /// It names a capsule this server does not serve.
    NotHosted,
}

impl TreeIgnored {
    /// Every reason, in the order of [`TreeIgnoredCounts`]' fields.
    pub const ALL: [TreeIgnored; 2] = [TreeIgnored::NotRouter, TreeIgnored::NotHosted];

    /// A short label, for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            TreeIgnored::NotRouter => "not_router",
            TreeIgnored::NotHosted => "not_hosted",
        }
    }

    fn index(self) -> usize {
        match self {
            TreeIgnored::NotRouter => 0,
            TreeIgnored::NotHosted => 1,
        }
    }
}

/// Ignored tree joins and leaves, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeIgnoredCounts([u64; TreeIgnored::ALL.len()]);

impl TreeIgnoredCounts {
    /// The counter for `reason`.
    pub fn get(&self, reason: TreeIgnored) -> u64 {
        self.0[reason.index()]
    }

    /// All of them together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn count(&mut self, reason: TreeIgnored) {
        let c = &mut self.0[reason.index()];
        *c = c.saturating_add(1);
    }
}

/// The `warn` line state of one reason.
#[derive(Debug, Clone, Copy, Default)]
struct Line {
    /// When the last `warn` line was written.
    last: Option<Timestamp>,
    /// Refusals since then.
    since: u64,
}

/// Counts refusals and logs them without flooding. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    lines: [Line; Refusal::ALL.len()],
}

impl RefusalLog {
    /// Counts a refusal of `reason` at `now` of `peer`'s request about
    /// `capsule`, and logs it.
    pub(crate) fn refused(
        &mut self,
        stats: &mut ServiceStats,
        now: Timestamp,
        reason: Refusal,
        peer: Name,
        capsule: Name,
        message: &str,
    ) {
        stats.refused.count(reason);
        crate::metrics::refused(reason);
        let reason_label = reason.label();
        tracing::debug!(reason = reason_label, peer = %peer.short(), capsule = %capsule.short(),
            message, "request refused");
        let line = &mut self.lines[reason.index()];
        line.since += 1;
        let due = line
            .last
            .is_none_or(|last| now.since(last) >= LOG_INTERVAL || now < last);
        if due {
            let window = line.last.map(|last| now.since(last));
            tracing::warn!(reason = reason_label, refused = line.since, ?window,
                latest_peer = %peer.short(), latest_capsule = %capsule.short(), latest = message,
                "requests refused (at most one line per reason every {}s)", LOG_INTERVAL.as_secs());
            line.last = Some(now);
            line.since = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_counted_and_warn_lines_are_spaced() {
        let mut stats = ServiceStats::default();
        let mut log = RefusalLog::default();
        let t0 = Timestamp::from_secs(1_000);
        let peer = Name::from_bytes([1; 32]);
        for i in 0..100u64 {
            let now = t0.saturating_add(Duration::from_millis(i * 100));
            log.refused(&mut stats, now, Refusal::PeerRate, peer, peer, "x");
        }
        log.refused(&mut stats, t0, Refusal::CreateRate, peer, peer, "y");
        assert_eq!(stats.refused.get(Refusal::PeerRate), 100);
        assert_eq!(stats.refused.get(Refusal::CreateRate), 1);
        assert_eq!(stats.refused.total(), 101);
        // 10 s of refusals every 100 ms: a line at 0 s and at 10 s would be
        // due; the last one was at 9.9 s, so one line, and 99 since.
        let line = log.lines[Refusal::PeerRate.index()];
        assert_eq!(line.last, Some(t0));
        assert_eq!(line.since, 99);
        let later = t0.saturating_add(LOG_INTERVAL);
        log.refused(&mut stats, later, Refusal::PeerRate, peer, peer, "x");
        let line = log.lines[Refusal::PeerRate.index()];
        assert_eq!((line.last, line.since), (Some(later), 0));
    }

    #[test]
    fn labels_and_indices_are_distinct() {
        for (i, r) in Refusal::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            for other in &Refusal::ALL[..i] {
                assert_ne!(r.label(), other.label());
            }
        }
    }
}
