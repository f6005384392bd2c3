//! The capsule server's metrics, recorded through the [`metrics`] facade.
//!
//! The library only records: without a recorder installed (a server
//! embedded in a program that exports nothing) every call is a no-op. The
//! `gdp-capsule-server` binary installs a Prometheus recorder and serves it
//! at `/metrics` of its admin API (`crate::admin`, `--admin ADDR`, on
//! loopback by default).
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `gdp_capsule_refused_total{reason}` | counter | requests refused by a limit or a policy; `reason` is a [`Refusal`] label (`peer_rate`, `capsule_rate`, `pending_bytes`, `bad_heartbeat`, `creator_not_allowed`, `creator_quota`, `create_rate`, `server_full`, `capsule_subscribers`, `peer_subscriptions`) |
//! | `gdp_capsule_created_total` | counter | capsules created (durable and answered) |
//! | `gdp_capsule_hosted` | gauge | capsules hosted |
//! | `gdp_capsule_appended_records_total` | counter | records made durable and acknowledged |
//! | `gdp_capsule_peers_gone_total` | counter | peers forgotten because the router said they left |
//! | `gdp_capsule_subscriptions_dropped_total` | counter | subscriptions ended because their peer left |
//! | `gdp_capsule_commits_total` | counter | durable transactions of the committer |
//! | `gdp_capsule_committed_writes_total` | counter | writes (records, creates) in those transactions |
//! | `gdp_capsule_publishes_total` | counter | Publish PDUs emitted for delivery trees (new records and tips) |
//! | `gdp_capsule_published_records_total` | counter | records in those Publish PDUs |
//! | `gdp_capsule_published_bytes_total` | counter | payload bytes of those Publish PDUs |
//! | `gdp_capsule_synced_records_total` | counter | records fetched from other replicas by anti-entropy and made durable here |
//! | `gdp_capsule_tree_leases` | gauge | capsules with a live delivery-tree lease of the router |
//! | `gdp_capsule_tree_leases_taken_total` | counter | tree leases taken |
//! | `gdp_capsule_tree_leases_expired_total` | counter | tree leases that ran out unrefreshed |
//! | `gdp_capsule_reads_total` | counter | reads (`Read`, `Latest`) answered with records |
//! | `gdp_capsule_read_records_total` | counter | records in those answers |
//! | `gdp_capsule_subscriptions` | gauge | subscriptions held now (all capsules, all peers) |
//! | `gdp_capsule_commit_seconds` | histogram | time of one durable transaction of the committer, fsync included |
//! | `gdp_capsule_store_bytes` | gauge | size of the store's database file, as of the scrape (set by the daemon's admin API) |
//! | `gdp_capsule_tree_ignored_total{reason}` | counter | tree joins and leaves ignored; `reason` is a [`TreeIgnored`] label (`not_router`, `not_hosted`) |

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::stats::{Refusal, TreeIgnored};

/// See the module table.
pub const REFUSED: &str = "gdp_capsule_refused_total";
/// See the module table.
pub const CREATED: &str = "gdp_capsule_created_total";
/// See the module table.
pub const HOSTED: &str = "gdp_capsule_hosted";
/// See the module table.
pub const APPENDED: &str = "gdp_capsule_appended_records_total";
/// See the module table.
pub const PEERS_GONE: &str = "gdp_capsule_peers_gone_total";
/// See the module table.
pub const SUBSCRIPTIONS_DROPPED: &str = "gdp_capsule_subscriptions_dropped_total";
/// See the module table.
pub const COMMITS: &str = "gdp_capsule_commits_total";
/// See the module table.
pub const COMMITTED_WRITES: &str = "gdp_capsule_committed_writes_total";
/// See the module table.
pub const PUBLISHES: &str = "gdp_capsule_publishes_total";
/// See the module table.
pub const PUBLISHED_RECORDS: &str = "gdp_capsule_published_records_total";
/// See the module table.
pub const PUBLISHED_BYTES: &str = "gdp_capsule_published_bytes_total";
/// See the module table.
pub const SYNCED_RECORDS: &str = "gdp_capsule_synced_records_total";
/// See the module table.
pub const TREE_LEASES: &str = "gdp_capsule_tree_leases";
/// See the module table.
pub const TREE_LEASES_TAKEN: &str = "gdp_capsule_tree_leases_taken_total";
/// See the module table.
pub const TREE_LEASES_EXPIRED: &str = "gdp_capsule_tree_leases_expired_total";
/// See the module table.
pub const TREE_IGNORED: &str = "gdp_capsule_tree_ignored_total";

/// See the module table.
pub const READS: &str = "gdp_capsule_reads_total";
/// See the module table.
pub const READ_RECORDS: &str = "gdp_capsule_read_records_total";
/// See the module table.
pub const SUBSCRIPTIONS: &str = "gdp_capsule_subscriptions";
/// See the module table.
pub const COMMIT_SECONDS: &str = "gdp_capsule_commit_seconds";
/// See the module table.
pub const STORE_BYTES: &str = "gdp_capsule_store_bytes";

/// Registers the help text of every metric with the installed recorder,
/// and zeroes the refusal and delivery-tree figures so that they show up in
/// a scrape before anything happens.
pub fn describe() {
    describe_counter!(
        REFUSED,
        "Requests refused by a limit or a policy, by reason"
    );
    describe_counter!(CREATED, "Capsules created");
    describe_gauge!(HOSTED, "Capsules hosted");
    describe_counter!(APPENDED, "Records made durable and acknowledged");
    describe_counter!(PEERS_GONE, "Peers forgotten because they left");
    describe_counter!(
        SUBSCRIPTIONS_DROPPED,
        "Subscriptions ended because their peer left"
    );
    describe_counter!(COMMITS, "Durable transactions of the committer");
    describe_counter!(COMMITTED_WRITES, "Writes in the committer's transactions");
    for reason in Refusal::ALL {
        counter!(REFUSED, "reason" => reason.label()).absolute(0);
    }
    describe_counter!(PUBLISHES, "Publish PDUs emitted for delivery trees");
    describe_counter!(PUBLISHED_RECORDS, "Records in Publish PDUs");
    describe_counter!(PUBLISHED_BYTES, "Payload bytes of Publish PDUs");
    describe_gauge!(TREE_LEASES, "Capsules with a live delivery-tree lease");
    describe_counter!(
        SYNCED_RECORDS,
        "Records fetched from other replicas by anti-entropy and made durable here"
    );
    describe_counter!(TREE_LEASES_TAKEN, "Delivery-tree leases taken");
    describe_counter!(TREE_LEASES_EXPIRED, "Delivery-tree leases that ran out");
    describe_counter!(
        TREE_IGNORED,
        "Delivery-tree joins and leaves ignored, by reason"
    );
    describe_counter!(READS, "Reads answered with records");
    describe_counter!(READ_RECORDS, "Records in read answers");
    describe_gauge!(SUBSCRIPTIONS, "Subscriptions held now");
    describe_histogram!(
        COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Time of one durable transaction, fsync included"
    );
    describe_gauge!(
        STORE_BYTES,
        metrics::Unit::Bytes,
        "Size of the store's database file"
    );
    gauge!(SUBSCRIPTIONS).set(0.0);
    for name in [
        PUBLISHES,
        PUBLISHED_RECORDS,
        PUBLISHED_BYTES,
        READS,
        READ_RECORDS,
    ] {
        counter!(name).absolute(0);
    }
    gauge!(TREE_LEASES).set(0.0);
    for reason in TreeIgnored::ALL {
        counter!(TREE_IGNORED, "reason" => reason.label()).absolute(0);
    }
}

pub(crate) fn refused(reason: Refusal) {
    counter!(REFUSED, "reason" => reason.label()).increment(1);
}

pub(crate) fn created() {
    counter!(CREATED).increment(1);
    gauge!(HOSTED).increment(1.0);
}

pub(crate) fn hosted(count: usize) {
    gauge!(HOSTED).set(count as f64);
}

pub(crate) fn appended(records: u64) {
    counter!(APPENDED).increment(records);
}

pub(crate) fn synced(records: u64) {
    counter!(SYNCED_RECORDS).increment(records);
}

pub(crate) fn peer_gone(subscriptions: u64) {
    counter!(PEERS_GONE).increment(1);
    counter!(SUBSCRIPTIONS_DROPPED).increment(subscriptions);
}

pub(crate) fn read(records: usize) {
    counter!(READS).increment(1);
    counter!(READ_RECORDS).increment(records as u64);
}

pub(crate) fn subscriptions_changed(delta: f64) {
    gauge!(SUBSCRIPTIONS).increment(delta);
}

/// The store's file size now (see [`STORE_BYTES`]).
pub fn store_bytes(bytes: u64) {
    gauge!(STORE_BYTES).set(bytes as f64);
}

pub(crate) fn committed(writes: u64, took: std::time::Duration) {
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
    counter!(COMMITS).increment(1);
    counter!(COMMITTED_WRITES).increment(writes);
}

pub(crate) fn published(records: u64, bytes: u64) {
    counter!(PUBLISHES).increment(1);
    counter!(PUBLISHED_RECORDS).increment(records);
    counter!(PUBLISHED_BYTES).increment(bytes);
}

pub(crate) fn tree_leases(live: usize) {
    gauge!(TREE_LEASES).set(live as f64);
}

pub(crate) fn tree_lease_taken() {
    counter!(TREE_LEASES_TAKEN).increment(1);
}

pub(crate) fn tree_lease_expired() {
    counter!(TREE_LEASES_EXPIRED).increment(1);
}

pub(crate) fn tree_ignored(reason: TreeIgnored) {
    counter!(TREE_IGNORED, "reason" => reason.label()).increment(1);
}
