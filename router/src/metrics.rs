//! Metrics in the Prometheus text format.
//!
//! [`render`] turns a [`Snapshot`] into the text exposition format
//! (version 0.0.4), which the admin API ([`crate::admin`]) serves at
//! `GET /metrics`; every scrape asks the router task for a fresh snapshot,
//! so figures are as of the scrape (the core's gauges, the transport's
//! per-link statistics and RTTs are read at that moment).
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `gdp_router_info{name,backend}` | gauge | always 1 |
//! | `gdp_router_forwarded_total` | counter | PDUs sent on to a next hop |
//! | `gdp_router_delivered_local_total` | counter | of those, to attached endpoints |
//! | `gdp_router_fast_forwarded_total` | counter | of those, forwarded by link readers without the forwarding core (the fast path) |
//! | `gdp_router_dropped_total{reason}` | counter | dropped PDUs by reason (`ttl`, `no_route`, `bad_source`, `malformed`, `oversized`, `queue_full`, `policy`, `not_attached`, `unhandled`, `lookup_limit`; `penalty`: dropped unread from batches of an endpoint link paying the longest drop penalty, beyond a sample of 64) |
//! | `gdp_router_lookups_total`, `gdp_router_lookup_failures_total` | counter | directory resolutions |
//! | `gdp_router_cache_hits_total`, `gdp_router_cache_misses_total` | counter | FIB hits and misses |
//! | `gdp_router_bad_records_total` | counter | directory records that failed to decode or verify |
//! | `gdp_router_peers_refused_total` | counter | router links the peering policy refused (not a router, not trusted under `trusted-only`, not vouched for by the directory) |
//! | `gdp_router_entitlement_misses_total` | counter | PDUs from directory-vouched routers held (or dropped) because their source's entitlement was not known yet; failed checks count as `gdp_router_dropped_total{reason="bad_source"}` |
//! | `gdp_router_entitlement_rechecks_total` | counter | PDUs from directory-vouched routers whose source's grants named other routers, held while the source was looked up once more (at most once a second per source: it may have moved) |
//! | `gdp_router_departed_naks_total` | counter | PDUs from router links for a name that left this router, answered with a NakNoRoute so that the sender's stale route is dropped |
//! | `gdp_router_routes_dropped_by_nak_total` | counter | cached routes dropped because their next hop sent back a NakNoRoute for the name |
//! | `gdp_router_hairpins_total` | counter | PDUs from router links whose destination's route led back to the router that sent them: the cached route is dropped and the name looked up afresh, or the PDU is answered with a NAK |
//! | `gdp_router_pending_pdus`, `gdp_router_pending_bytes`, `gdp_router_links`, `gdp_router_fib_entries` | gauge | current state |
//! | `gdp_router_attach_timeouts_total` | counter | unproven links closed at `attach_timeout` |
//! | `gdp_router_links_refused_total{reason}` | counter | new links closed at once: `unproven` (`max_unproven_links`), `per_peer` (`max_links_per_peer`) |
//! | `gdp_router_lookups_limited_total` | counter | PDUs refused because their source or link spent its lookup or pending budget |
//! | `gdp_router_negative_hits_total` | counter | misses answered from the negative cache |
//! | `gdp_router_adcert_verifications_total` | counter | AdCert signatures verified |
//! | `gdp_router_adcerts_throttled_total` | counter | Advertise entries refused unverified (verification budget spent) |
//! | `gdp_router_publishes_skipped_total` | counter | publications skipped: the record would not have changed |
//! | `gdp_router_malformed_total{where}` | counter | undecodable PDUs the transport saw (`stream`, `datagram`) |
//! | `gdp_router_directory_errors_total{op}` | counter | failed directory calls |
//! | `gdp_router_queue_depth{queue}` | gauge | `events` (link events waiting), `link_bytes` (all send queues) |
//! | `gdp_router_link_rtt_seconds{link,peer,kind,role}` | gauge | QUIC RTT estimate per link |
//! | `gdp_router_link_queued_bytes{...}` | gauge | memory held by the PDUs waiting in one link's send queue |
//! | `gdp_router_link_received_bytes_total{...}` | counter | bytes of PDUs received on one link (what the peer sent this router) |
//! | `gdp_router_link_datagrams_dropped_in_total{...}` | counter | datagrams received on one link and dropped before the driver: the link already had its share (`events_per_link`) of batches waiting, or the event channel was full |
//! | `gdp_router_send_stalls_total` | counter | times a full link queue sent PDUs to the link's overflow in the driver (which never waits) |
//! | `gdp_router_dropped_total{reason="queue_full"}` | counter | includes reliable PDUs dropped because their link's queue and overflow were full |
//! | `gdp_router_stalled_links_closed_total` | counter | links closed because their queue took nothing for `stall_timeout` |
//! | `gdp_router_drop_penalties_total` | counter | batches from endpoint links at least half dropped, each pausing that link's reads (4 ms, four times as long for each further one, up to `drop_penalty_max`) |
//! | `gdp_router_dials_refused_total{reason}` | counter | dials to routers refused: `limit` (`max_dials` running), `backoff` (the router's last dial failed recently) |
//! | `gdp_router_dials_cancelled_total` | counter | dials cancelled because the router linked to this one first |
//! | `gdp_router_dials_running`, `gdp_router_dials_backed_off` | gauge | dial tasks running; routers in backoff |
//! | `gdp_router_records_repaired_total` | counter | own records an audit found missing or altered in the directory and published again alone |
//! | `gdp_router_directory_name_full_total` | counter | publications refused because the name held the maximum of other fields (then pruned, or backed off) |
//! | `gdp_router_directory_fields_pruned_total` | counter | fields of full names removed because their record did not verify for the name and its router |
//! | `gdp_router_transport_links_refused_total{reason}` | counter | connections the transport refused: `per_address` (`max_links_per_address`), `max_links`, `handshakes` (`max_pending_handshakes`), `handshake_rate` (their address's turn under `handshakes_per_address` more than a second off) |
//! | `gdp_router_transport_handshakes_paced_total` | counter | inbound handshakes that waited for their address's turn under `handshakes_per_address` |
//! | `gdp_router_inbound_addresses` | gauge | source addresses with at least one inbound link |
//! | `gdp_router_trees`, `gdp_router_tree_memberships` | gauge | delivery trees (capsules with subscribers) and their memberships (capsule, link) now |
//! | `gdp_router_tree_joins_total` | counter | Subscribes that added or refreshed a membership |
//! | `gdp_router_tree_upstream_joins_total`, `gdp_router_tree_upstream_leaves_total` | counter | Subscribes (joins, refreshes, re-joins) and Unsubscribes this router sent toward capsules |
//! | `gdp_router_tree_rejoins_total` | counter | trees whose upstream link went down and that joined again |
//! | `gdp_router_tree_publishes_total` | counter | Publish PDUs accepted from a tree's upstream |
//! | `gdp_router_tree_publish_copies_total` | counter | copies of those queued on member links (one per member link but the one it came on) |
//! | `gdp_router_tree_publish_dropped_total{reason}` | counter | Publish PDUs or copies dropped: `no_tree`, `not_upstream` (neither the tree's upstream nor the FIB's next hop for the capsule), `queue_full` (a member link's queue, per copy) |
//! | `gdp_router_tree_joins_refused_total{reason}` | counter | Subscribes refused: `max_trees`, `max_tree_members`, `per_link` (`max_tree_joins_per_link`), `rate` (`subscribe_rate_per_link`) |
//! | `gdp_router_tree_pruned_total{reason}` | counter | memberships ended: `unsubscribe`, `link_down`, `lease` |
//!
//! and a few more counters, each with its `# HELP` line.

use crate::core::{DropReason, LinkRole, TreeStats};
use crate::driver::Snapshot;
use std::fmt::Write as _;

/// Every drop reason with its label.
const DROP_REASONS: [(&str, DropReason); 10] = [
    ("ttl", DropReason::Ttl),
    ("no_route", DropReason::NoRoute),
    ("bad_source", DropReason::BadSource),
    ("malformed", DropReason::Malformed),
    ("oversized", DropReason::Oversized),
    ("queue_full", DropReason::QueueFull),
    ("policy", DropReason::Policy),
    ("not_attached", DropReason::NotAttached),
    ("unhandled", DropReason::Unhandled),
    ("lookup_limit", DropReason::LookupLimit),
];

/// Builds the exposition text.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn role_label(role: Option<LinkRole>) -> &'static str {
    match role {
        Some(LinkRole::Attaching) => "attaching",
        Some(LinkRole::Endpoint) => "endpoint",
        Some(LinkRole::RouterPending) => "router_pending",
        Some(LinkRole::Router) => "router",
        None => "closing",
    }
}

/// The Prometheus text exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut e = Exposition {
        out: String::with_capacity(8 * 1024),
    };
    let c = &s.core;
    let d = &s.driver;
    let dir = &d.directory;
    e.family(
        "gdp_router_info",
        "gauge",
        "The router's name and directory backend.",
    );
    let name = s.name.to_string();
    e.sample(
        "gdp_router_info",
        &[("name", &name), ("backend", s.backend)],
        1,
    );
    e.counter(
        "gdp_router_forwarded_total",
        "PDUs sent on to a next hop (a router or a local endpoint).",
        c.forwarded,
    );
    e.counter(
        "gdp_router_delivered_local_total",
        "PDUs delivered to endpoints attached here.",
        c.delivered_local,
    );
    e.family(
        "gdp_router_dropped_total",
        "counter",
        "Dropped PDUs, by reason.",
    );
    for (label, reason) in DROP_REASONS {
        // The driver drops at full link queues too (overflow full).
        let driver = if reason == DropReason::QueueFull {
            d.queue_full
        } else {
            0
        };
        e.sample(
            "gdp_router_dropped_total",
            &[("reason", label)],
            c.dropped.get(reason) + driver,
        );
    }
    // PDUs of a link paying the longest drop penalty, beyond the sample
    // the driver handles.
    e.sample(
        "gdp_router_dropped_total",
        &[("reason", "penalty")],
        d.penalty_unread,
    );
    for (name, help, value) in [
        (
            "gdp_router_naks_sent_total",
            "NakNoRoute PDUs this router originated.",
            c.naks_sent,
        ),
        (
            "gdp_router_departed_naks_total",
            "PDUs from router links for a name that left this router, answered with a NAK.",
            c.departed_naks,
        ),
        (
            "gdp_router_routes_dropped_by_nak_total",
            "Cached routes dropped because their next hop answered that the name has no route.",
            c.routes_dropped_by_nak,
        ),
        (
            "gdp_router_hairpins_total",
            "PDUs from router links whose route led back to the sending router (a stale route on one side).",
            c.hairpins,
        ),
        (
            "gdp_router_pongs_sent_total",
            "Pings this router answered.",
            c.pongs_sent,
        ),
        (
            "gdp_router_cache_hits_total",
            "FIB hits on the forwarding path.",
            c.cache_hits,
        ),
        (
            "gdp_router_cache_misses_total",
            "FIB misses on the forwarding path.",
            c.cache_misses,
        ),
        (
            "gdp_router_lookups_total",
            "Directory lookups asked for.",
            c.lookups,
        ),
        (
            "gdp_router_lookup_failures_total",
            "Resolutions that found no usable route.",
            c.lookup_failures,
        ),
        (
            "gdp_router_bad_records_total",
            "Directory records that did not decode or verify.",
            c.bad_records,
        ),
        (
            "gdp_router_stale_records_total",
            "Directory records of this router itself, ignored.",
            c.stale_records,
        ),
        (
            "gdp_router_records_skipped_total",
            "Directory records beyond the per-lookup limit.",
            c.records_skipped,
        ),
        (
            "gdp_router_records_published_total",
            "Route records published (and republished).",
            c.records_published,
        ),
        (
            "gdp_router_attaches_total",
            "Endpoints that attached.",
            c.attaches,
        ),
        (
            "gdp_router_attach_failures_total",
            "Attach proofs refused.",
            c.attach_failures,
        ),
        (
            "gdp_router_adcerts_rejected_total",
            "Advertised capsules refused.",
            c.adcerts_rejected,
        ),
        (
            "gdp_router_capsules_advertised_total",
            "Capsules installed from advertisements.",
            c.capsules_advertised,
        ),
        ("gdp_router_dials_total", "Router links dialed.", c.dials),
        (
            "gdp_router_dial_failures_total",
            "Dials that failed or timed out.",
            c.dial_failures,
        ),
        (
            "gdp_router_gateway_fallbacks_total",
            "Names sent to this router's gateway because their router could not be reached directly.",
            c.gateway_fallbacks,
        ),
        (
            "gdp_router_peers_refused_total",
            "Router links refused by the peering policy.",
            c.peers_refused,
        ),
        (
            "gdp_router_entitlement_misses_total",
            "PDUs from directory-vouched routers held or dropped because their source's entitlement was not known yet.",
            c.entitlement_misses,
        ),
        (
            "gdp_router_entitlement_rechecks_total",
            "PDUs from directory-vouched routers held while their source, refused by its grants, was looked up once more.",
            c.entitlement_rechecks,
        ),
        (
            "gdp_router_links_closed_total",
            "Links this router closed.",
            c.links_closed,
        ),
        (
            "gdp_router_attach_timeouts_total",
            "Unproven links closed at their attach deadline.",
            c.attach_timeouts,
        ),
        (
            "gdp_router_lookups_limited_total",
            "PDUs refused because their source or link spent its lookup or pending budget.",
            c.lookups_limited,
        ),
        (
            "gdp_router_negative_hits_total",
            "FIB misses answered from the negative cache.",
            c.negative_hits,
        ),
        (
            "gdp_router_adcert_verifications_total",
            "AdCert signatures verified.",
            c.adcert_verifications,
        ),
        (
            "gdp_router_adcerts_throttled_total",
            "Advertise entries refused unverified: verification budget spent.",
            c.adcerts_throttled,
        ),
        (
            "gdp_router_publishes_skipped_total",
            "Publications skipped because the record would not have changed.",
            c.publishes_skipped,
        ),
        (
            "gdp_router_pdus_received_total",
            "PDUs received on all links.",
            d.pdus_in + d.fast_forwarded,
        ),
        (
            "gdp_router_pdus_sent_total",
            "PDUs queued on links.",
            d.pdus_out + d.fast_forwarded,
        ),
        (
            "gdp_router_fast_forwarded_total",
            "Of the PDUs queued on links, those the link readers forwarded without the forwarding core.",
            d.fast_forwarded,
        ),
        (
            "gdp_router_transmit_batches_total",
            "Batches of PDUs queued on links.",
            d.batches_out + d.fast_batches,
        ),
        (
            "gdp_router_oversized_total",
            "PDUs whose header announced more than the largest PDU.",
            d.oversized,
        ),
        (
            "gdp_router_send_stalls_total",
            "Times a full link queue sent PDUs to the link's overflow (the driver never waits).",
            d.send_stalls,
        ),
        (
            "gdp_router_stalled_links_closed_total",
            "Links closed because their send queue took nothing for the stall timeout.",
            d.stalled_links_closed,
        ),
        (
            "gdp_router_drop_penalties_total",
            "Batches from endpoint links at least half dropped, whose link paused its reads for it.",
            d.drop_penalties,
        ),
        (
            "gdp_router_send_dropped_total",
            "PDUs not queued: link gone or stuck.",
            d.send_dropped,
        ),
        (
            "gdp_router_unreliable_dropped_total",
            "Unreliable PDUs dropped at a full datagram queue.",
            d.unreliable_dropped,
        ),
        (
            "gdp_router_directory_skipped_values_total",
            "Directory values skipped as malformed, oversized or in excess.",
            dir.skipped_values,
        ),
        (
            "gdp_router_directory_repairs_total",
            "Times every record was published again.",
            dir.repairs,
        ),
        (
            "gdp_router_directory_republished_total",
            "Records published again by repairs and retries.",
            dir.republished,
        ),
        (
            "gdp_router_records_repaired_total",
            "Own records an audit found missing or altered and published again alone.",
            dir.records_repaired,
        ),
        (
            "gdp_router_directory_name_full_total",
            "Publications refused because the name held the maximum of other fields.",
            dir.name_full,
        ),
        (
            "gdp_router_directory_fields_pruned_total",
            "Fields of full names removed because their record did not verify.",
            dir.fields_pruned,
        ),
        (
            "gdp_router_dials_cancelled_total",
            "Dials cancelled because the router linked to this one first.",
            d.dials_cancelled,
        ),
    ] {
        e.counter(name, help, value);
    }
    e.family(
        "gdp_router_links_refused_total",
        "counter",
        "New links closed at once by a link limit, by limit.",
    );
    for (label, value) in [
        ("unproven", c.links_refused.unproven),
        ("per_peer", c.links_refused.per_peer),
    ] {
        e.sample(
            "gdp_router_links_refused_total",
            &[("reason", label)],
            value,
        );
    }
    e.family(
        "gdp_router_malformed_total",
        "counter",
        "Undecodable PDUs the transport reported, by where they came.",
    );
    e.sample(
        "gdp_router_malformed_total",
        &[("where", "stream")],
        d.malformed_stream,
    );
    e.sample(
        "gdp_router_malformed_total",
        &[("where", "datagram")],
        d.malformed_datagram,
    );
    e.family(
        "gdp_router_directory_errors_total",
        "counter",
        "Failed directory calls, by operation.",
    );
    for (op, value) in [
        ("lookup", dir.lookup_failures),
        ("publish", dir.publish_failures),
        ("unpublish", dir.unpublish_failures),
        ("audit", dir.audit_failures),
        ("prune", dir.prune_failures),
    ] {
        e.sample("gdp_router_directory_errors_total", &[("op", op)], value);
    }
    e.family(
        "gdp_router_dials_refused_total",
        "counter",
        "Dials to routers refused, by reason.",
    );
    for (reason, value) in [
        ("limit", d.dials_refused_limit),
        ("backoff", d.dials_refused_backoff),
    ] {
        e.sample(
            "gdp_router_dials_refused_total",
            &[("reason", reason)],
            value,
        );
    }
    e.family(
        "gdp_router_transport_links_refused_total",
        "counter",
        "Connections the transport refused, by reason.",
    );
    let t = &d.transport;
    for (reason, value) in [
        ("per_address", t.links_refused_per_address),
        ("max_links", t.links_refused_max),
        ("handshakes", t.handshakes_refused),
        ("handshake_rate", t.handshakes_refused_rate),
    ] {
        e.sample(
            "gdp_router_transport_links_refused_total",
            &[("reason", reason)],
            value,
        );
    }
    e.counter(
        "gdp_router_transport_handshakes_paced_total",
        "Inbound handshakes that waited for their source address's turn.",
        t.handshakes_paced,
    );
    tree_metrics(&mut e, &c.trees);
    e.gauge(
        "gdp_router_inbound_addresses",
        "Source addresses with at least one inbound link.",
        t.inbound_addresses,
    );
    e.gauge(
        "gdp_router_dials_running",
        "Dials running.",
        d.dials_running,
    );
    e.gauge(
        "gdp_router_dials_backed_off",
        "Routers not dialed again yet after a failed dial.",
        d.dials_backed_off,
    );
    e.gauge(
        "gdp_router_pending_pdus",
        "PDUs waiting for a route.",
        c.pending,
    );
    e.gauge(
        "gdp_router_pending_bytes",
        "Bytes counted for the PDUs waiting for a route.",
        c.pending_bytes,
    );
    e.gauge("gdp_router_links", "Links known to the core.", c.links);
    e.gauge("gdp_router_fib_entries", "FIB entries.", c.fib_entries);
    e.gauge(
        "gdp_router_directory_in_flight",
        "Directory calls in flight.",
        s.directory_in_flight,
    );
    e.family(
        "gdp_router_queue_depth",
        "gauge",
        "Depth of the router's queues.",
    );
    e.sample(
        "gdp_router_queue_depth",
        &[("queue", "events")],
        s.event_queue,
    );
    e.sample(
        "gdp_router_queue_depth",
        &[("queue", "link_bytes")],
        s.queued_bytes(),
    );
    e.sample(
        "gdp_router_queue_depth",
        &[("queue", "overflow_bytes")],
        d.overflow_bytes,
    );
    link_metrics(&mut e, s);
    e.out
}

/// A counter family's name, help, and value per `reason` label.
type LabelledFamily<'a> = (&'a str, &'a str, &'a [(&'a str, u64)]);

fn tree_metrics(e: &mut Exposition, t: &TreeStats) {
    e.gauge(
        "gdp_router_trees",
        "Delivery trees (capsules with subscribers) now.",
        t.trees,
    );
    e.gauge(
        "gdp_router_tree_memberships",
        "Memberships (capsule, link) in all delivery trees now.",
        t.memberships,
    );
    for (name, help, value) in [
        (
            "gdp_router_tree_joins_total",
            "Subscribes that added or refreshed a tree membership.",
            t.joins,
        ),
        (
            "gdp_router_tree_upstream_joins_total",
            "Subscribes this router sent toward capsules (joins, refreshes, re-joins).",
            t.upstream_joins,
        ),
        (
            "gdp_router_tree_upstream_leaves_total",
            "Unsubscribes this router sent upstream.",
            t.upstream_leaves,
        ),
        (
            "gdp_router_tree_rejoins_total",
            "Trees whose upstream link went down and that joined again.",
            t.rejoins,
        ),
        (
            "gdp_router_tree_publishes_total",
            "Publish PDUs accepted from a tree's upstream.",
            t.publishes,
        ),
        (
            "gdp_router_tree_publish_copies_total",
            "Copies of accepted Publish PDUs queued on member links.",
            t.copies,
        ),
    ] {
        e.counter(name, help, value);
    }
    let labelled: [LabelledFamily<'_>; 3] = [
        (
            "gdp_router_tree_publish_dropped_total",
            "Publish PDUs (or copies) dropped, by reason.",
            &[
                ("no_tree", t.publish_no_tree),
                ("not_upstream", t.publish_not_upstream),
                ("queue_full", t.copies_queue_full),
            ],
        ),
        (
            "gdp_router_tree_joins_refused_total",
            "Subscribes refused, by limit.",
            &[
                ("max_trees", t.refused_trees),
                ("max_tree_members", t.refused_members),
                ("per_link", t.refused_link),
                ("rate", t.refused_rate),
            ],
        ),
        (
            "gdp_router_tree_pruned_total",
            "Tree memberships ended, by reason.",
            &[
                ("unsubscribe", t.pruned_unsubscribe),
                ("link_down", t.pruned_link_down),
                ("lease", t.pruned_lease),
            ],
        ),
    ];
    for (name, help, values) in labelled {
        e.family(name, "counter", help);
        for (reason, value) in values {
            e.sample(name, &[("reason", reason)], value);
        }
    }
}

fn link_metrics(e: &mut Exposition, s: &Snapshot) {
    let labels: Vec<[String; 4]> = s
        .links
        .iter()
        .map(|l| {
            [
                l.id.to_string(),
                l.peer.to_string(),
                l.kind.to_string(),
                role_label(l.role).to_owned(),
            ]
        })
        .collect();
    let per_link = |e: &mut Exposition,
                    name: &str,
                    kind: &str,
                    help: &str,
                    value: &dyn Fn(usize) -> String| {
        e.family(name, kind, help);
        for (i, l) in labels.iter().enumerate() {
            e.sample(
                name,
                &[
                    ("link", &l[0]),
                    ("peer", &l[1]),
                    ("kind", &l[2]),
                    ("role", &l[3]),
                ],
                value(i),
            );
        }
    };
    per_link(
        e,
        "gdp_router_link_rtt_seconds",
        "gauge",
        "QUIC round-trip time estimate of the link.",
        &|i| format!("{:.6}", s.links[i].stats.rtt.as_secs_f64()),
    );
    per_link(
        e,
        "gdp_router_link_queued_bytes",
        "gauge",
        "Bytes waiting in the link's send queue.",
        &|i| s.links[i].stats.queued_bytes.to_string(),
    );
    per_link(
        e,
        "gdp_router_link_datagrams_dropped_in_total",
        "counter",
        "Datagrams received on the link and dropped before the driver: its batches waiting were at their bound, or the event channel was full.",
        &|i| s.links[i].stats.dropped_unreliable_in.to_string(),
    );
    per_link(
        e,
        "gdp_router_link_sent_pdus_total",
        "counter",
        "PDUs sent on the link (stream and datagrams).",
        &|i| {
            let st = &s.links[i].stats;
            (st.sent_pdus + st.sent_datagrams).to_string()
        },
    );
    per_link(
        e,
        "gdp_router_link_received_bytes_total",
        "counter",
        "Bytes of PDUs received on the link (stream and datagrams).",
        &|i| {
            let st = &s.links[i].stats;
            (st.received_bytes + st.received_datagram_bytes).to_string()
        },
    );
    per_link(
        e,
        "gdp_router_link_received_pdus_total",
        "counter",
        "PDUs received on the link (stream and datagrams).",
        &|i| {
            let st = &s.links[i].stats;
            (st.received_pdus + st.received_datagrams).to_string()
        },
    );
    per_link(
        e,
        "gdp_router_link_lost_packets_total",
        "counter",
        "Packets QUIC declared lost on the link.",
        &|i| s.links[i].stats.lost_packets.to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
