//! The service's limits against hostile peers: creates under each policy,
//! the append budget of a capsule, subscriptions per peer, and the counters
//! of every refusal. The harness is shared with `tree_tests`.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Metadata, Name, SecretKey, Timestamp};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse, ErrorCode};
use gdp_proto::chain::{Appender, ChainState};
use gdp_proto::proof::Heartbeat;
use gdp_proto::record::Record;

use super::{CapsuleService, Output, Publish, Request};
use crate::limits::{CreatePolicy, Rate, ServiceConfig};
use crate::stats::Refusal;
use crate::store::{Store, StoreOptions};

pub(super) const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
pub(super) const SERVER: Name = Name::from_bytes([200; 32]);

pub(super) fn peer(i: u8) -> Name {
    Name::from_bytes([i; 32])
}

/// A service over a store in a temporary directory; the test runs the
/// commits itself, at once.
pub(super) struct Harness {
    pub(super) service: CapsuleService,
    store: Store,
    pub(super) now: Timestamp,
    next_id: u64,
    dir: PathBuf,
    /// Every Publish output so far.
    pub(super) publishes: Vec<Publish>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness {
    pub(super) fn new(name: &str, config: ServiceConfig) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gdp-service-{name}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let (store, report) = Store::open(&dir, &StoreOptions::default()).expect("store opens");
        let service = CapsuleService::new(config, SERVER, store.clone(), report).expect("valid");
        Harness {
            service,
            store,
            now: NOW,
            next_id: 0,
            dir,
            publishes: Vec::new(),
        }
    }

    /// Runs every output: commits at once, publishes kept.
    pub(super) fn drain(&mut self) {
        while let Some(out) = self.service.poll_output() {
            match out {
                Output::Respond(_) => {}
                Output::Publish(p) => self.publishes.push(p),
                Output::Request(_) => {}
                Output::Commit { ticket, write } => {
                    let result = self.store.commit([&write]).remove(0);
                    self.service.on_commit(self.now, ticket, result);
                }
            }
        }
    }

    /// Sends `body` to `capsule` from `from`, runs every commit, and
    /// returns the answer to it.
    pub(super) fn call(
        &mut self,
        from: Name,
        capsule: Name,
        body: CapsuleRequest,
    ) -> CapsuleResponse {
        self.next_id += 1;
        let id = self.next_id;
        self.service.handle(
            self.now,
            Request {
                capsule,
                from,
                request_id: id,
                body,
            },
        );
        let mut answer = None;
        while let Some(out) = self.service.poll_output() {
            match out {
                Output::Respond(r) if r.request_id == id && r.to == from => answer = Some(r.body),
                Output::Respond(_) => {}
                Output::Publish(p) => self.publishes.push(p),
                Output::Request(_) => {}
                Output::Commit { ticket, write } => {
                    let result = self.store.commit([&write]).remove(0);
                    self.service.on_commit(self.now, ticket, result);
                }
            }
        }
        answer.expect("the request was answered")
    }
}

/// A capsule of `owner` (its only writer), distinguished by `nonce`, with
/// its `Create`.
pub(super) fn capsule(owner: &SecretKey, nonce: u8) -> (Metadata, CapsuleRequest) {
    let md = Metadata::capsule(
        owner.public(),
        vec![owner.public()],
        "t",
        Timestamp::from_secs(1_700_000_000),
        vec![],
    )
    .expect("valid")
    .with_nonce([nonce; 16]);
    let validity = Validity::new(Timestamp::from_secs(1), Timestamp::from_secs(1_900_000_000));
    let adcert = AdCert::issue(owner, md.name(), SERVER, validity);
    (
        md.clone(),
        CapsuleRequest::Create {
            metadata: md,
            adcert,
        },
    )
}

fn code(r: &CapsuleResponse) -> ErrorCode {
    match r {
        CapsuleResponse::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn message(r: &CapsuleResponse) -> &str {
    match r {
        CapsuleResponse::Error { message, .. } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn quota(per_creator: usize, per_second: u32, burst: u32) -> CreatePolicy {
    CreatePolicy::Quota {
        per_creator,
        rate: Rate { per_second, burst },
    }
}

fn config(create_policy: CreatePolicy) -> ServiceConfig {
    ServiceConfig {
        create_policy,
        ..ServiceConfig::default()
    }
}

#[test]
fn the_allow_list_admits_listed_owners_only() {
    let allowed = SecretKey::from_seed(&[1; 32]);
    let stranger = SecretKey::from_seed(&[2; 32]);
    let policy = CreatePolicy::AllowList {
        creators: vec![allowed.public()],
    };
    let mut h = Harness::new("allow", config(policy));
    let (md, create) = capsule(&allowed, 1);
    assert_eq!(
        h.call(peer(1), md.name(), create.clone()),
        CapsuleResponse::Created
    );
    let (md2, create2) = capsule(&stranger, 1);
    let r = h.call(peer(1), md2.name(), create2);
    assert_eq!(code(&r), ErrorCode::BadRequest);
    assert!(message(&r).contains("allow list"), "{}", message(&r));
    assert_eq!(h.service.durable_tail(&md2.name()), None);
    // A resend of a hosted capsule is answered whatever the policy.
    assert_eq!(h.call(peer(2), md.name(), create), CapsuleResponse::Created);
    let stats = h.service.stats();
    assert_eq!(stats.refused.get(Refusal::CreatorNotAllowed), 1);
    assert_eq!(stats.refused.total(), 1);
    assert_eq!(stats.created, 1);
}

#[test]
fn the_quota_bounds_capsules_per_owner_and_creates_per_second() {
    let mut h = Harness::new("quota", config(quota(2, 1, 3)));
    let a = SecretKey::from_seed(&[1; 32]);
    let b = SecretKey::from_seed(&[2; 32]);
    for nonce in 0..2 {
        let (md, create) = capsule(&a, nonce);
        assert_eq!(h.call(peer(1), md.name(), create), CapsuleResponse::Created);
    }
    // The third of one owner, whoever sends it.
    let (md, create) = capsule(&a, 2);
    let r = h.call(peer(9), md.name(), create.clone());
    assert_eq!(code(&r), ErrorCode::TooLarge);
    assert!(message(&r).contains("limit of 2"), "{}", message(&r));
    // Refused for the quota: the server's bucket (burst 3) still has one.
    let (md_b, create_b) = capsule(&b, 0);
    assert_eq!(
        h.call(peer(1), md_b.name(), create_b),
        CapsuleResponse::Created
    );
    let (md_b1, create_b1) = capsule(&b, 1);
    let r = h.call(peer(1), md_b1.name(), create_b1.clone());
    assert_eq!(code(&r), ErrorCode::RateLimited);
    assert!(message(&r).contains("retry in 1000 ms"), "{}", message(&r));
    // A second later the server takes one more.
    h.now = NOW.saturating_add(Duration::from_secs(1));
    assert_eq!(
        h.call(peer(1), md_b1.name(), create_b1),
        CapsuleResponse::Created
    );
    let stats = h.service.stats();
    assert_eq!(stats.refused.get(Refusal::CreatorQuota), 1);
    assert_eq!(stats.refused.get(Refusal::CreateRate), 1);
    assert_eq!(stats.created, 4);
}

#[test]
fn creates_that_fail_their_checks_spend_no_create_budget() {
    let mut h = Harness::new("budget", config(quota(10, 1, 1)));
    let owner = SecretKey::from_seed(&[1; 32]);
    let (md, _) = capsule(&owner, 0);
    // An AdCert signed by someone else does not verify.
    let forged = AdCert::issue(
        &SecretKey::from_seed(&[3; 32]),
        md.name(),
        SERVER,
        Validity::new(Timestamp::from_secs(1), Timestamp::from_secs(1_900_000_000)),
    );
    for _ in 0..5 {
        let r = h.call(
            peer(6),
            md.name(),
            CapsuleRequest::Create {
                metadata: md.clone(),
                adcert: forged.clone(),
            },
        );
        assert_eq!(code(&r), ErrorCode::BadCert);
    }
    let (md, create) = capsule(&owner, 0);
    assert_eq!(h.call(peer(1), md.name(), create), CapsuleResponse::Created);
}

#[test]
fn a_full_server_refuses_new_capsules_and_counts_it() {
    let config = ServiceConfig {
        max_capsules: 1,
        create_policy: CreatePolicy::Open {},
        ..ServiceConfig::default()
    };
    let mut h = Harness::new("full", config);
    let owner = SecretKey::from_seed(&[1; 32]);
    let (md, create) = capsule(&owner, 0);
    assert_eq!(h.call(peer(1), md.name(), create), CapsuleResponse::Created);
    let (md, create) = capsule(&owner, 1);
    assert_eq!(
        code(&h.call(peer(1), md.name(), create)),
        ErrorCode::TooLarge
    );
    assert_eq!(h.service.stats().refused.get(Refusal::ServerFull), 1);
}

#[test]
fn the_default_policy_and_capsule_limit_match_what_a_router_accepts() {
    let c = ServiceConfig::default();
    assert_eq!(c.max_capsules, crate::limits::ROUTER_CAPSULES_PER_SERVER);
    assert!(matches!(c.create_policy, CreatePolicy::Quota { .. }));
    assert_eq!(c.check(), Ok(()));
}

/// `n` records appended by `writer` to `md`, closed by one heartbeat.
pub(super) fn records(a: &mut Appender, n: usize) -> (Vec<Record>, Heartbeat) {
    let records = (0..n)
        .map(|_| a.append(Bytes::from_static(b"r"), NOW).expect("appends"))
        .collect();
    (records, a.heartbeat().expect("appended"))
}

#[test]
fn bad_appends_spend_their_sender_budget_not_the_capsule_one() {
    let config = ServiceConfig {
        capsule_records: Some(Rate {
            per_second: 1,
            burst: 8,
        }),
        peer_requests: Some(Rate {
            per_second: 1,
            burst: 17,
        }),
        ..ServiceConfig::default()
    };
    let mut h = Harness::new("drain", config);
    let owner = SecretKey::from_seed(&[1; 32]);
    let (md, create) = capsule(&owner, 0);
    assert_eq!(h.call(peer(1), md.name(), create), CapsuleResponse::Created);

    // A stranger sends the writer's records with its own heartbeat, and
    // forged ones: 8 records each, the capsule's whole burst.
    let mut a = Appender::new(owner.clone(), &md, ChainState::new(md.name())).expect("writer");
    let (batch, good) = records(&mut a, 8);
    let stranger = SecretKey::from_seed(&[5; 32]);
    let theirs = Heartbeat::sign_hash(&stranger, md.name(), good.seqno, good.record_hash);
    let mut forged = good.clone();
    forged.signature.0[7] ^= 1;
    for hb in [theirs, forged] {
        let r = h.call(
            peer(66),
            md.name(),
            CapsuleRequest::Append {
                records: batch.clone(),
                heartbeat: hb,
            },
        );
        assert!(
            matches!(code(&r), ErrorCode::NotWriter | ErrorCode::BadHeartbeat),
            "{r:?}"
        );
    }
    // The stranger paid 1 + 8 per append out of its burst of 17: it is
    // now rate limited itself.
    let r = h.call(peer(66), md.name(), CapsuleRequest::Latest);
    assert_eq!(code(&r), ErrorCode::RateLimited);
    assert!(message(&r).contains("peer"), "{}", message(&r));

    // The writer still has its capsule's whole burst.
    let r = h.call(
        peer(1),
        md.name(),
        CapsuleRequest::Append {
            records: batch,
            heartbeat: good,
        },
    );
    assert_eq!(r, CapsuleResponse::Appended { tail: 8 });
    // And now it has spent it.
    let (more, hb) = records(&mut a, 1);
    let r = h.call(
        peer(1),
        md.name(),
        CapsuleRequest::Append {
            records: more,
            heartbeat: hb,
        },
    );
    assert_eq!(code(&r), ErrorCode::RateLimited);
    assert!(
        message(&r).contains("appended records/s"),
        "{}",
        message(&r)
    );

    let stats = h.service.stats();
    assert_eq!(stats.refused.get(Refusal::BadHeartbeat), 2);
    assert_eq!(stats.refused.get(Refusal::PeerRate), 1);
    assert_eq!(stats.refused.get(Refusal::CapsuleRate), 1);
}

#[test]
fn subscriptions_are_bounded_per_peer_and_freed_when_the_peer_is_gone() {
    let config = ServiceConfig {
        max_subscriptions_per_peer: 3,
        ..ServiceConfig::default()
    };
    let mut h = Harness::new("subs", config);
    let owner = SecretKey::from_seed(&[1; 32]);
    let capsules: Vec<Name> = (0..5)
        .map(|nonce| {
            let (md, create) = capsule(&owner, nonce);
            assert_eq!(h.call(peer(1), md.name(), create), CapsuleResponse::Created);
            md.name()
        })
        .collect();
    let subscribe = CapsuleRequest::Subscribe { from: 1 };
    for c in &capsules[..3] {
        let r = h.call(peer(7), *c, subscribe.clone());
        assert_eq!(r, CapsuleResponse::Subscribed { tail: 0 });
    }
    let r = h.call(peer(7), capsules[3], subscribe.clone());
    assert_eq!(code(&r), ErrorCode::RateLimited);
    assert!(
        message(&r).contains("limit of 3 subscriptions"),
        "{}",
        message(&r)
    );
    // Replacing one it holds is not a new one.
    let r = h.call(peer(7), capsules[0], CapsuleRequest::Subscribe { from: 5 });
    assert_eq!(r, CapsuleResponse::Subscribed { tail: 0 });
    // Another peer has its own allowance.
    let r = h.call(peer(8), capsules[3], subscribe.clone());
    assert_eq!(r, CapsuleResponse::Subscribed { tail: 0 });
    // Unsubscribing frees a slot.
    let r = h.call(peer(7), capsules[1], CapsuleRequest::Unsubscribe);
    assert_eq!(r, CapsuleResponse::Unsubscribed);
    let r = h.call(peer(7), capsules[4], subscribe.clone());
    assert_eq!(r, CapsuleResponse::Subscribed { tail: 0 });

    h.service.peer_gone(&peer(7));
    let stats = h.service.stats().clone();
    assert_eq!(stats.peers_gone, 1);
    assert_eq!(stats.subscriptions_dropped, 3);
    assert_eq!(stats.refused.get(Refusal::PeerSubscriptions), 1);
    // Its slots are free again.
    for c in &capsules[..3] {
        let r = h.call(peer(7), *c, subscribe.clone());
        assert_eq!(r, CapsuleResponse::Subscribed { tail: 0 });
    }
}

#[test]
fn subscribers_per_capsule_are_counted_when_refused() {
    let config = ServiceConfig {
        max_subscribers: 1,
        ..ServiceConfig::default()
    };
    let mut h = Harness::new("capsubs", config);
    let owner = SecretKey::from_seed(&[1; 32]);
    let (md, create) = capsule(&owner, 0);
    assert_eq!(h.call(peer(1), md.name(), create), CapsuleResponse::Created);
    let subscribe = CapsuleRequest::Subscribe { from: 1 };
    assert_eq!(
        h.call(peer(2), md.name(), subscribe.clone()),
        CapsuleResponse::Subscribed { tail: 0 }
    );
    assert_eq!(
        code(&h.call(peer(3), md.name(), subscribe)),
        ErrorCode::RateLimited
    );
    assert_eq!(
        h.service.stats().refused.get(Refusal::CapsuleSubscribers),
        1
    );
}
