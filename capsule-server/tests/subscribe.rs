//! Subscriptions: the backlog from the requested seqno, then live records as
//! they become durable, each exactly once and in order, every event with a
//! proof that verifies.

mod common;

use common::*;
use gdp_capsule_server::limits::ServiceConfig;
use gdp_certs::{Metadata, Name};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::proof::VerifiedHeartbeat;
use gdp_proto::record::Record;
use proptest::prelude::*;

/// Checks events as a subscriber does, remembering heartbeats whose
/// signature was already checked (they repeat across events).
#[derive(Default)]
struct Subscriber {
    checked: Vec<VerifiedHeartbeat>,
    seqnos: Vec<u64>,
    subscribed: Option<u64>,
    errors: Vec<ErrorCode>,
}

impl Subscriber {
    fn take(&mut self, h: &mut Harness, id: u64, md: &Metadata) {
        for r in h.take(id) {
            match r {
                CapsuleResponse::Subscribed { tail } => {
                    assert!(self.subscribed.is_none() && self.seqnos.is_empty());
                    self.subscribed = Some(tail);
                }
                CapsuleResponse::Event { records, proof } => {
                    assert!(self.subscribed.is_some(), "events only after Subscribed");
                    let last = records.last().expect("events are not empty");
                    let known = self
                        .checked
                        .iter()
                        .find(|hb| *hb.heartbeat() == proof.heartbeat);
                    match known {
                        Some(hb) => {
                            for p in records.windows(2) {
                                assert_eq!(p[1].seqno(), p[0].seqno() + 1);
                                assert_eq!(*p[1].prev(), p[0].hash());
                            }
                            proof
                                .verify_under(hb, last.seqno(), last.hash())
                                .expect("event proof verifies");
                        }
                        None => {
                            let hb = proof.verify_range(md, &records).expect("event verifies");
                            self.checked.push(hb);
                        }
                    }
                    self.seqnos.extend(records.iter().map(Record::seqno));
                }
                CapsuleResponse::Error { code, .. } => self.errors.push(code),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn peer(i: u8) -> Name {
    Name::from_bytes([i; 32])
}

#[test]
fn backlog_then_live_records_without_gap_or_duplicate() {
    let f = Fixture::new(1);
    // Small responses, so the backlog takes several events.
    let config = ServiceConfig {
        max_record_payload: 200,
        max_response_bytes: 40_000,
        ..unlimited()
    };
    let mut h = Harness::with_config(f.clone(), config);
    assert_eq!(h.call(f.create()), CapsuleResponse::Created);
    let mut a = f.appender();
    h.fill(&mut a, 400, 100, 200);

    let mut s = Subscriber::default();
    let id = h.request_from(peer(1), CapsuleRequest::Subscribe { from: 10 });
    // One output: the Subscribed answer; then one backlog event.
    assert!(h.step());
    assert!(h.step());
    s.take(&mut h, id, &f.md);
    assert_eq!(s.subscribed, Some(400));
    let after_one = s.seqnos.len();
    assert!(
        after_one > 0 && after_one < 391,
        "{after_one} records in the first event"
    );

    // New records become durable while the backlog is still being sent.
    for (records, hb) in batches(&mut a, 3, 7, 200) {
        let tail = hb.seqno;
        let ack = h.request(append(records, hb));
        h.hold = true;
        h.run();
        h.release();
        assert_eq!(h.one(ack), CapsuleResponse::Appended { tail });
        h.hold = false;
        s.take(&mut h, id, &f.md);
    }
    s.take(&mut h, id, &f.md);
    assert_eq!(s.seqnos, (10..=421).collect::<Vec<_>>());
    assert!(s.errors.is_empty());

    // Caught up: the next append arrives live, in one event.
    let (records, hb) = batches(&mut a, 1, 2, 10).remove(0);
    h.call(append(records, hb));
    s.take(&mut h, id, &f.md);
    assert_eq!(s.seqnos.last(), Some(&423));
    assert_eq!(s.seqnos.len(), 414);
}

#[test]
fn subscribing_ahead_of_the_tail_waits_for_that_seqno() {
    let f = Fixture::new(2);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    h.fill(&mut a, 5, 5, 10);
    let mut s = Subscriber::default();
    let id = h.request_from(peer(1), CapsuleRequest::Subscribe { from: 8 });
    h.run();
    s.take(&mut h, id, &f.md);
    assert_eq!(s.subscribed, Some(5));
    h.fill(&mut a, 6, 3, 10);
    s.take(&mut h, id, &f.md);
    assert_eq!(s.seqnos, (8..=11).collect::<Vec<_>>());
}

#[test]
fn unsubscribe_and_a_departed_peer_stop_events() {
    let f = Fixture::new(3);
    let mut h = Harness::created(f.clone());
    let mut a = f.appender();
    let (mut s1, mut s2) = (Subscriber::default(), Subscriber::default());
    let id1 = h.request_from(peer(1), CapsuleRequest::Subscribe { from: 1 });
    let id2 = h.request_from(peer(2), CapsuleRequest::Subscribe { from: 1 });
    h.run();
    h.fill(&mut a, 3, 3, 10);
    s1.take(&mut h, id1, &f.md);
    s2.take(&mut h, id2, &f.md);
    assert_eq!((s1.seqnos.len(), s2.seqnos.len()), (3, 3));

    let u = h.request_from(peer(1), CapsuleRequest::Unsubscribe);
    h.run();
    assert_eq!(h.one(u), CapsuleResponse::Unsubscribed);
    h.service.peer_gone(&peer(2));
    h.fill(&mut a, 3, 3, 10);
    assert!(h.take(id1).is_empty());
    assert!(h.take(id2).is_empty());
}

#[test]
fn subscriptions_are_limited_and_only_for_hosted_capsules() {
    let f = Fixture::new(4);
    let config = ServiceConfig {
        max_subscribers: 2,
        ..unlimited()
    };
    let mut h = Harness::with_config(f.clone(), config);
    let id = h.request_from(peer(1), CapsuleRequest::Subscribe { from: 1 });
    h.run();
    assert_eq!(code(&h.one(id)), ErrorCode::NotHosted);
    assert_eq!(h.call(f.create()), CapsuleResponse::Created);
    for i in 1..=2 {
        let id = h.request_from(peer(i), CapsuleRequest::Subscribe { from: 1 });
        h.run();
        assert_eq!(h.one(id), CapsuleResponse::Subscribed { tail: 0 });
    }
    let id = h.request_from(peer(3), CapsuleRequest::Subscribe { from: 1 });
    h.run();
    assert_eq!(code(&h.one(id)), ErrorCode::RateLimited);
    // An existing subscriber may re-subscribe (it replaces its subscription).
    let id = h.request_from(peer(2), CapsuleRequest::Subscribe { from: 1 });
    h.run();
    assert_eq!(h.one(id), CapsuleResponse::Subscribed { tail: 0 });
}

#[derive(Debug, Clone)]
enum Op {
    /// A writer appends this many records (not yet committed).
    Append(usize),
    /// The committer makes everything held durable.
    Commit,
    /// The driver sends this many outputs.
    Poll(usize),
    /// A new subscriber from this seqno.
    Subscribe(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..6).prop_map(Op::Append),
        2 => Just(Op::Commit),
        3 => (1usize..4).prop_map(Op::Poll),
        1 => (0u64..60).prop_map(Op::Subscribe),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the interleaving of appends, commits, polls and new
    /// subscriptions, every subscriber receives exactly the records from its
    /// seqno to the final tail, once each, in order.
    #[test]
    fn no_gap_and_no_duplicate_under_any_interleaving(
        prefix in 0usize..40,
        ops in proptest::collection::vec(arb_op(), 1..25),
    ) {
        let f = Fixture::new(50);
        let config = ServiceConfig {
            max_record_payload: 600,
            max_response_bytes: 40_000,
            ..unlimited()
        };
        let mut h = Harness::with_config(f.clone(), config);
        prop_assert_eq!(h.call(f.create()), CapsuleResponse::Created);
        let mut a = f.appender();
        if prefix > 0 {
            h.fill(&mut a, prefix, 10, 600);
        }
        h.hold = true;
        let mut subs: Vec<(u64, u64, Subscriber)> = Vec::new();
        let mut next_peer = 1u8;
        for op in ops {
            match op {
                Op::Append(k) => {
                    let (records, hb) = batches(&mut a, 1, k, 600).remove(0);
                    h.request(append(records, hb));
                }
                Op::Commit => {
                    while h.step() {}
                    let held = std::mem::take(&mut h.held);
                    h.commit(held);
                }
                Op::Poll(n) => {
                    for _ in 0..n {
                        h.step();
                    }
                }
                Op::Subscribe(from) => {
                    let id = h.request_from(peer(next_peer), CapsuleRequest::Subscribe { from });
                    next_peer += 1;
                    subs.push((id, from, Subscriber::default()));
                }
            }
            for (id, _, s) in &mut subs {
                s.take(&mut h, *id, &f.md);
            }
        }
        h.hold = false;
        while h.step() {}
        h.release();
        let tail = a.state().tail_seqno();
        prop_assert_eq!(h.service.durable_tail(&f.capsule()), Some(tail));
        for (id, from, s) in &mut subs {
            s.take(&mut h, *id, &f.md);
            let expected: Vec<u64> = ((*from).max(1)..=tail).collect();
            prop_assert_eq!(&s.seqnos, &expected, "subscriber from {}", from);
            prop_assert!(s.errors.is_empty());
        }
    }
}
