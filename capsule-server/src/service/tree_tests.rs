//! Delivery-tree leases and the Publish outputs they cause: one Publish per
//! durable append whatever the number of subscribers, tips on a new lease
//! and while idle, leases that end, and joins that are not obeyed.

use std::time::Duration;

use gdp_certs::{Metadata, Name, SecretKey};
use gdp_proto::capsule::CapsuleRequest;
use gdp_proto::chain::{Appender, ChainState};

use super::tests::{Harness, NOW, capsule, peer, records};
use super::{Publish, TreeOp, TreeRequest};
use crate::limits::ServiceConfig;
use crate::stats::TreeIgnored;

/// The router the server is attached to in these tests.
fn router() -> Name {
    Name::from_bytes([150; 32])
}

fn join(capsule: Name) -> TreeRequest {
    TreeRequest {
        capsule,
        from: router(),
        router: router(),
        op: TreeOp::Join,
    }
}

/// A harness with one capsule and its writer.
fn setup(name: &str) -> (Harness, Metadata, Appender) {
    let mut h = Harness::new(name, ServiceConfig::default());
    let owner = SecretKey::from_seed(&[1; 32]);
    let (md, create) = capsule(&owner, 0);
    h.call(peer(1), md.name(), create);
    let a = Appender::new(owner, &md, ChainState::new(md.name())).expect("writer");
    (h, md, a)
}

/// Appends `n` records as the writer.
fn append(h: &mut Harness, md: &Metadata, a: &mut Appender, n: usize) {
    let (records, heartbeat) = records(a, n);
    h.call(
        peer(1),
        md.name(),
        CapsuleRequest::Append { records, heartbeat },
    );
}

/// The seqnos of a Publish, after checking it verifies.
fn seqnos(md: &Metadata, p: &Publish) -> Vec<u64> {
    assert_eq!(p.capsule, md.name());
    p.proof
        .verify_range(md, &p.records)
        .expect("a publish verifies against the metadata");
    p.records.iter().map(|r| r.seqno()).collect()
}

#[test]
fn each_durable_append_is_published_once_whatever_the_subscribers() {
    let (mut h, md, mut a) = setup("tree-once");
    append(&mut h, &md, &mut a, 3);
    assert!(h.publishes.is_empty(), "no lease, no publish");

    // Unicast subscribers change nothing to the tree's copies.
    for i in 10..20 {
        h.call(peer(i), md.name(), CapsuleRequest::Subscribe { from: 4 });
    }
    h.service.tree(NOW, join(md.name()));
    assert_eq!(h.service.tree_leases(), 1);
    assert!(h.service.has_tree_lease(&md.name()));
    h.drain();
    // A new lease publishes the tip at once.
    assert_eq!(h.publishes.len(), 1);
    assert_eq!(seqnos(&md, &h.publishes[0]), vec![3]);

    append(&mut h, &md, &mut a, 2);
    append(&mut h, &md, &mut a, 1);
    assert_eq!(h.publishes.len(), 3);
    assert_eq!(seqnos(&md, &h.publishes[1]), vec![4, 5]);
    assert_eq!(seqnos(&md, &h.publishes[2]), vec![6]);
    // A refresh takes no second lease and publishes no tip.
    h.service.tree(NOW, join(md.name()));
    h.drain();
    assert_eq!(h.publishes.len(), 3);

    let stats = h.service.stats();
    assert_eq!(stats.publishes, 3);
    assert_eq!(stats.published_records, 4);
    assert!(stats.published_bytes > 0);
    assert_eq!(stats.tree_leases_taken, 1);
    assert_eq!(h.service.tree_leases(), 1);
}

#[test]
fn joins_not_from_the_router_or_for_other_capsules_are_ignored_and_counted() {
    let (mut h, md, mut a) = setup("tree-ignored");
    // An endpoint's own Subscribe reached the server: not obeyed.
    h.service.tree(
        NOW,
        TreeRequest {
            from: peer(9),
            ..join(md.name())
        },
    );
    h.service.tree(NOW, join(Name::from_bytes([77; 32])));
    assert_eq!(h.service.tree_leases(), 0);
    append(&mut h, &md, &mut a, 2);
    assert!(h.publishes.is_empty());
    // Nor may a stranger end the router's lease.
    h.service.tree(NOW, join(md.name()));
    h.service.tree(
        NOW,
        TreeRequest {
            from: peer(9),
            op: TreeOp::Leave,
            ..join(md.name())
        },
    );
    assert_eq!(h.service.tree_leases(), 1);
    let ignored = &h.service.stats().tree_ignored;
    assert_eq!(ignored.get(TreeIgnored::NotRouter), 2);
    assert_eq!(ignored.get(TreeIgnored::NotHosted), 1);
    assert_eq!(ignored.total(), 3);
}

#[test]
fn an_idle_capsule_publishes_its_tip_and_an_unrefreshed_lease_ends() {
    let (mut h, md, mut a) = setup("tree-timers");
    let tip = ServiceConfig::default().tree_tip_interval;
    let lease = ServiceConfig::default().tree_lease;
    assert_eq!(h.service.next_timeout(), None);
    // A lease on a capsule without records publishes nothing yet.
    h.service.tree(NOW, join(md.name()));
    h.drain();
    assert!(h.publishes.is_empty());
    assert_eq!(h.service.next_timeout(), Some(NOW.saturating_add(tip)));

    let at = |secs: u64| NOW.saturating_add(Duration::from_secs(secs));
    h.now = at(2);
    append(&mut h, &md, &mut a, 1);
    assert_eq!(h.publishes.len(), 1);
    // At 5 s the capsule published 3 s ago: not idle; the tip is due at 7 s.
    h.service.handle_timeout(at(5));
    h.drain();
    assert_eq!(h.publishes.len(), 1);
    assert_eq!(h.service.next_timeout(), Some(at(7)));
    h.service.handle_timeout(at(7));
    h.drain();
    assert_eq!(h.publishes.len(), 2);
    assert_eq!(seqnos(&md, &h.publishes[1]), vec![1]);
    // Refreshed at 20 s, the lease lasts until 50 s; tips every 5 s.
    h.service.tree(at(20), join(md.name()));
    let mut t = 7;
    while let Some(next) = h.service.next_timeout() {
        assert!(next > at(t), "timers move forward");
        t = next.since(NOW).as_secs();
        h.service.handle_timeout(next);
        h.drain();
    }
    assert_eq!(t, 20 + lease.as_secs(), "the lease ended unrefreshed");
    // Tips at 12, 17, ..., 47 s: eight of them.
    assert_eq!(h.publishes.len(), 2 + 8);
    assert_eq!(h.service.tree_leases(), 0);
    assert_eq!(h.service.stats().tree_leases_expired, 1);
    h.now = at(60);
    append(&mut h, &md, &mut a, 1);
    assert_eq!(h.publishes.len(), 10, "no lease, no publish");
}

#[test]
fn the_router_leaving_ends_the_lease_at_once() {
    let (mut h, md, mut a) = setup("tree-leave");
    append(&mut h, &md, &mut a, 1);
    h.service.tree(NOW, join(md.name()));
    h.drain();
    assert_eq!(h.publishes.len(), 1);
    h.service.tree(
        NOW,
        TreeRequest {
            op: TreeOp::Leave,
            ..join(md.name())
        },
    );
    assert_eq!(h.service.tree_leases(), 0);
    append(&mut h, &md, &mut a, 1);
    assert_eq!(h.publishes.len(), 1);
    // The old lease's timer fires into nothing.
    h.service
        .handle_timeout(NOW.saturating_add(Duration::from_secs(60)));
    h.drain();
    assert_eq!(h.publishes.len(), 1);
    assert_eq!(h.service.next_timeout(), None);
    // A new join is a new lease, with its tip.
    h.service.tree(NOW, join(md.name()));
    h.drain();
    assert_eq!(h.publishes.len(), 2);
    assert_eq!(seqnos(&md, &h.publishes[1]), vec![2]);
    assert_eq!(h.service.stats().tree_leases_taken, 2);
    // A join after the lease ran out, before its timer came up, is a new
    // lease too: the tip again.
    let late = NOW.saturating_add(ServiceConfig::default().tree_lease);
    h.service.tree(late, join(md.name()));
    h.drain();
    assert_eq!(h.publishes.len(), 3);
    assert_eq!(h.service.tree_leases(), 1);
    let stats = h.service.stats();
    assert_eq!((stats.tree_leases_taken, stats.tree_leases_expired), (3, 1));
}
