//! Service limits: sizes, in-flight bounds, token-bucket rate limits and
//! who may create capsules.
//!
//! Rate limits are token buckets driven by the `now` the caller passes in,
//! so they behave the same under a virtual clock. Three are applied:
//!
//! - per peer (the source name of the requests): one token per request, and
//!   one per record of an append whose heartbeat does not verify (the
//!   sender pays for its bad appends, not the capsule's writer);
//! - per capsule: one token per record appended, taken only once the
//!   append's heartbeat verified, so nobody but a writer spends a capsule's
//!   budget;
//! - per server, under the [`CreatePolicy::Quota`] policy: one token per
//!   capsule created.
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`. A request
//! needing `n` tokens passes when the bucket holds `min(n, burst)`, and then
//! takes all `n` (the bucket may go below zero), so a batch larger than the
//! burst still passes on a full bucket while the long-run rate holds.

use std::collections::HashMap;
use std::time::Duration;

use gdp_certs::{Name, PublicKey, Timestamp};
use gdp_proto::pdu::MAX_PAYLOAD_LEN;
use gdp_proto::record::MAX_RECORD_PAYLOAD;

/// Space kept free in a response for its proof and framing when packing
/// records: a proof of a capsule of a billion records is about 8 KiB.
pub const PROOF_RESERVE: usize = 32 * 1024;

/// A token-bucket rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: u32,
    /// Most tokens the bucket holds.
    pub burst: u32,
}

/// The most capsules a router accepts from one server link by default
/// (`max_capsules_per_server` of a router's core configuration); the default
/// of [`ServiceConfig::max_capsules`], so that a capsule this server answers
/// `Created` for is one its router routes.
pub const ROUTER_CAPSULES_PER_SERVER: usize = 65_536;

/// Who may create capsules on a server, in the `[service]` table of the
/// configuration as `create_policy = { mode = "...", ... }`.
///
/// The creator of a capsule is its owner: the key in the capsule's metadata
/// that signs the AdCert of the `Create`. That signature is what authorises
/// hosting (the requesting peer's name is not: the `gdp` command attaches
/// under a fresh name for each command), so policies are about that key,
/// and they are applied only once the AdCert verified.
///
/// The default is [`CreatePolicy::Quota`] with [`DEFAULT_CREATES_PER_CREATOR`]
/// capsules per creator and [`DEFAULT_CREATE_RATE`] creates server-wide: it
/// keeps the demo, the `gdp` command and the tests working with no
/// configuration (anyone may create a few capsules), and bounds how fast and
/// how far any number of creators fill the server. Keys are free to make,
/// so the per-creator count alone stops only a careless creator; the
/// server-wide rate bounds a hostile one (filling
/// [`ROUTER_CAPSULES_PER_SERVER`] capsules takes about two hours at the
/// default rate). A server exposed to untrusted peers whose users are known
/// should use [`CreatePolicy::AllowList`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum CreatePolicy {
    /// Anyone may create capsules, up to [`ServiceConfig::max_capsules`]
    /// in all: `{ mode = "open" }`.
    Open {},
    /// Only the listed creator keys may create capsules:
    /// `{ mode = "allow-list", creators = ["<public key>", ...] }`, each key
    /// in the text form of a name (the `public_key` of a `gdp` key file's
    /// public half).
    AllowList {
        /// The creator keys allowed.
        #[serde(deserialize_with = "public_keys", serialize_with = "public_key_texts")]
        creators: Vec<PublicKey>,
    },
    /// Anyone may create capsules, at most `per_creator` each, and at most
    /// `rate` creates per second server-wide:
    /// `{ mode = "quota", per_creator = 256, rate = { per_second = 10, burst = 100 } }`.
    Quota {
        /// Capsules one creator key may have on this server.
        per_creator: usize,
        /// New capsules per second on this server, from all creators.
        rate: Rate,
    },
}

/// The default [`CreatePolicy::Quota`]'s capsules per creator.
pub const DEFAULT_CREATES_PER_CREATOR: usize = 256;

/// The default [`CreatePolicy::Quota`]'s server-wide create rate.
pub const DEFAULT_CREATE_RATE: Rate = Rate {
    per_second: 10,
    burst: 100,
};

impl Default for CreatePolicy {
    fn default() -> Self {
        CreatePolicy::Quota {
            per_creator: DEFAULT_CREATES_PER_CREATOR,
            rate: DEFAULT_CREATE_RATE,
        }
    }
}

/// Deserializes public keys written in the text form of names.
fn public_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PublicKey>, D::Error> {
    let texts = <Vec<String> as serde::Deserialize>::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            t.parse::<PublicKey>()
                .map_err(|e| serde::de::Error::custom(format!("creator key {t:?}: {e}")))
        })
        .collect()
}

/// Serializes public keys in the text form [`public_keys`] reads.
fn public_key_texts<S: serde::Serializer>(keys: &[PublicKey], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(keys.iter().map(ToString::to_string))
}

/// Limits of a [`CapsuleService`](crate::service::CapsuleService).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Largest record payload accepted, at most [`MAX_RECORD_PAYLOAD`].
    /// Default: [`MAX_RECORD_PAYLOAD`].
    pub max_record_payload: usize,
    /// Largest encoded response (records and proof), at most the PDU
    /// payload limit. Default: [`MAX_PAYLOAD_LEN`].
    pub max_response_bytes: usize,
    /// Requests per peer (source name). `None`: unlimited.
    /// Default: 20,000/s, burst 40,000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_requests: Option<Rate>,
    /// Records appended per capsule. `None`: unlimited.
    /// Default: 200,000/s, burst 400,000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capsule_records: Option<Rate>,
    /// Bytes of appended records per capsule that may wait to become
    /// durable. Default: 64 MiB.
    pub max_pending_bytes: usize,
    /// Subscribers per capsule. Default: 4096.
    pub max_subscribers: usize,
    /// Subscriptions one peer holds at once, across all capsules.
    /// Default: 64.
    pub max_subscriptions_per_peer: usize,
    /// Capsules this server hosts at most. Default:
    /// [`ROUTER_CAPSULES_PER_SERVER`], what a router accepts from one
    /// server; above the router's limit, a capsule answered `Created` might
    /// not be routed.
    pub max_capsules: usize,
    /// Who may create capsules. Default: [`CreatePolicy::Quota`], see there.
    pub create_policy: CreatePolicy,
    /// Peers whose rate-limit state is tracked before idle ones are
    /// forgotten. Default: 65,536.
    pub max_tracked_peers: usize,
    /// How long a delivery-tree join of the router lasts: a capsule whose
    /// router sent no `Subscribe` for this long gets no more `Publish`
    /// PDUs. The router refreshes its joins well within it. Default:
    /// [`DEFAULT_TREE_LEASE`] (30 s).
    #[serde(
        deserialize_with = "crate::config::duration",
        serialize_with = "crate::config::duration_text"
    )]
    pub tree_lease: Duration,
    /// How often a capsule with a tree lease and no new records publishes
    /// its newest record again (the tip), so subscribers that lost records
    /// learn the tail and fetch what they miss. Default:
    /// [`DEFAULT_TREE_TIP_INTERVAL`] (5 s).
    #[serde(
        deserialize_with = "crate::config::duration",
        serialize_with = "crate::config::duration_text"
    )]
    pub tree_tip_interval: Duration,
    /// How often a replica of a capsule asks each other replica for what
    /// it misses (one small request per peer when they are in sync).
    /// Default: [`DEFAULT_SYNC_INTERVAL`] (1 s).
    #[serde(
        deserialize_with = "crate::config::duration",
        serialize_with = "crate::config::duration_text"
    )]
    pub sync_interval: Duration,
    /// How long a `Sync` to another replica may go unanswered before the
    /// next round sends a new one. Default: [`DEFAULT_SYNC_TIMEOUT`] (5 s).
    #[serde(
        deserialize_with = "crate::config::duration",
        serialize_with = "crate::config::duration_text"
    )]
    pub sync_timeout: Duration,
}

/// The default [`ServiceConfig::sync_interval`].
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The default [`ServiceConfig::sync_timeout`].
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// The default [`ServiceConfig::tree_lease`].
pub const DEFAULT_TREE_LEASE: Duration = Duration::from_secs(30);

/// The default [`ServiceConfig::tree_tip_interval`].
pub const DEFAULT_TREE_TIP_INTERVAL: Duration = Duration::from_secs(5);

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_record_payload: MAX_RECORD_PAYLOAD,
            max_response_bytes: MAX_PAYLOAD_LEN,
            peer_requests: Some(Rate {
                per_second: 20_000,
                burst: 40_000,
            }),
            capsule_records: Some(Rate {
                per_second: 200_000,
                burst: 400_000,
            }),
            max_pending_bytes: 64 * 1024 * 1024,
            max_subscribers: 4096,
            max_subscriptions_per_peer: 64,
            max_capsules: ROUTER_CAPSULES_PER_SERVER,
            create_policy: CreatePolicy::default(),
            max_tracked_peers: 65_536,
            tree_lease: DEFAULT_TREE_LEASE,
            tree_tip_interval: DEFAULT_TREE_TIP_INTERVAL,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
        }
    }
}

/// A [`ServiceConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The record size limit is above the protocol's.
    #[error("max_record_payload {0} is over the protocol limit of {MAX_RECORD_PAYLOAD}")]
    RecordPayload(usize),
    /// Responses could not hold the largest record with a proof, or would
    /// not fit a PDU.
    #[error(
        "max_response_bytes {found} must be between {min} (the largest record and a proof) and {MAX_PAYLOAD_LEN}"
    )]
    ResponseBytes {
        /// The configured value.
        found: usize,
        /// The least that works with `max_record_payload`.
        min: usize,
    },
    /// A rate with zero tokens per second or a zero burst.
    #[error("{0}: per_second and burst must be at least 1")]
    ZeroRate(&'static str),
    /// A limit that must be at least 1 is 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A duration is below the least that works.
    #[error("{0} must be at least {1:?}")]
    TooShort(&'static str, Duration),
}

/// The shortest [`ServiceConfig::tree_lease`] and
/// [`ServiceConfig::tree_tip_interval`] accepted: shorter ones would turn
/// the timers into a busy loop.
pub const MIN_TREE_INTERVAL: Duration = Duration::from_millis(10);

impl ServiceConfig {
    /// Checks that the limits are consistent.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_record_payload > MAX_RECORD_PAYLOAD {
            return Err(ConfigError::RecordPayload(self.max_record_payload));
        }
        let min = self.max_record_payload + gdp_proto::record::MAX_RECORD_LEN - MAX_RECORD_PAYLOAD
            + PROOF_RESERVE;
        if self.max_response_bytes < min || self.max_response_bytes > MAX_PAYLOAD_LEN {
            return Err(ConfigError::ResponseBytes {
                found: self.max_response_bytes,
                min,
            });
        }
        let create_rate = match &self.create_policy {
            CreatePolicy::Quota { rate, .. } => Some(*rate),
            _ => None,
        };
        for (what, rate) in [
            ("peer_requests", self.peer_requests),
            ("capsule_records", self.capsule_records),
            ("create_policy.rate", create_rate),
        ] {
            if let Some(r) = rate
                && (r.per_second == 0 || r.burst == 0)
            {
                return Err(ConfigError::ZeroRate(what));
            }
        }
        for (what, v) in [
            ("max_pending_bytes", self.max_pending_bytes),
            ("max_subscribers", self.max_subscribers),
            (
                "max_subscriptions_per_peer",
                self.max_subscriptions_per_peer,
            ),
            ("max_capsules", self.max_capsules),
            ("max_tracked_peers", self.max_tracked_peers),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(what));
            }
        }
        if let CreatePolicy::Quota { per_creator: 0, .. } = self.create_policy {
            return Err(ConfigError::Zero("create_policy.per_creator"));
        }
        for (what, d) in [
            ("tree_lease", self.tree_lease),
            ("tree_tip_interval", self.tree_tip_interval),
            ("sync_interval", self.sync_interval),
            ("sync_timeout", self.sync_timeout),
        ] {
            if d < MIN_TREE_INTERVAL {
                return Err(ConfigError::TooShort(what, MIN_TREE_INTERVAL));
            }
        }
        Ok(())
    }
}

/// A token bucket. Starts full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Timestamp,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn full(rate: Rate, now: Timestamp) -> Self {
        TokenBucket {
            tokens: f64::from(rate.burst),
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Timestamp) {
        // A clock that goes back adds nothing.
        let elapsed = now.since(self.last).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(rate.per_second)).min(f64::from(rate.burst));
        self.last = self.last.max(now);
    }

    /// Takes `n` tokens at `now`, or returns how long until the bucket holds
    /// enough.
    pub(crate) fn take(&mut self, rate: Rate, now: Timestamp, n: u32) -> Result<(), Duration> {
        self.refill(rate, now);
        let need = f64::from(n.min(rate.burst));
        if self.tokens >= need {
            self.tokens -= f64::from(n);
            Ok(())
        } else {
            let secs = (need - self.tokens) / f64::from(rate.per_second.max(1));
            Err(Duration::from_secs_f64(secs.max(1e-6)))
        }
    }

    /// Takes `n` tokens at `now` whatever the bucket holds (it may go into
    /// debt, which later requests pay off): a charge for something done.
    pub(crate) fn charge(&mut self, rate: Rate, now: Timestamp, n: u32) {
        self.refill(rate, now);
        self.tokens -= f64::from(n);
    }

    /// True if the bucket would be full at `now` (so forgetting it changes
    /// nothing).
    pub(crate) fn is_full_at(&self, rate: Rate, now: Timestamp) -> bool {
        let mut b = *self;
        b.refill(rate, now);
        b.tokens >= f64::from(rate.burst)
    }
}

/// Per-peer request buckets, bounded in number.
#[derive(Debug, Default)]
pub(crate) struct PeerLimiter {
    buckets: HashMap<Name, TokenBucket>,
}

impl PeerLimiter {
    /// Admits one request from `peer`, or says how long to wait.
    pub(crate) fn admit(
        &mut self,
        rate: Rate,
        max_tracked: usize,
        peer: Name,
        now: Timestamp,
    ) -> Result<(), Duration> {
        self.bucket(rate, max_tracked, peer, now).take(rate, now, 1)
    }

    /// Charges `peer` `n` tokens at `now` (its bucket may go into debt).
    pub(crate) fn charge(
        &mut self,
        rate: Rate,
        max_tracked: usize,
        peer: Name,
        now: Timestamp,
        n: u32,
    ) {
        self.bucket(rate, max_tracked, peer, now)
            .charge(rate, now, n);
    }

    /// The bucket of `peer`, made full if it is not tracked, forgetting
    /// idle (full) buckets, or an arbitrary one, to stay within
    /// `max_tracked`.
    fn bucket(
        &mut self,
        rate: Rate,
        max_tracked: usize,
        peer: Name,
        now: Timestamp,
    ) -> &mut TokenBucket {
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= max_tracked {
            self.buckets.retain(|_, b| !b.is_full_at(rate, now));
            if self.buckets.len() >= max_tracked {
                // Everyone is busy: forget an arbitrary peer rather than grow.
                if let Some(k) = self.buckets.keys().next().copied() {
                    self.buckets.remove(&k);
                }
            }
        }
        self.buckets
            .entry(peer)
            .or_insert_with(|| TokenBucket::full(rate, now))
    }

    /// Forgets `peer`.
    pub(crate) fn forget(&mut self, peer: &Name) {
        self.buckets.remove(peer);
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Describes a wait for people.
pub(crate) fn describe_wait(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} us", d.as_micros().max(1))
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_second: 10,
        burst: 5,
    };

    #[test]
    fn bucket_allows_the_burst_then_refills_at_the_rate() {
        let t0 = Timestamp::from_secs(100);
        let mut b = TokenBucket::full(RATE, t0);
        for _ in 0..5 {
            assert_eq!(b.take(RATE, t0, 1), Ok(()));
        }
        let wait = b.take(RATE, t0, 1).expect_err("empty");
        assert_eq!(wait, Duration::from_millis(100));
        // 100 ms later one token is back.
        let t1 = t0.saturating_add(Duration::from_millis(100));
        assert_eq!(b.take(RATE, t1, 1), Ok(()));
        assert!(b.take(RATE, t1, 1).is_err());
        // Never more than the burst.
        let t2 = t1.saturating_add(Duration::from_secs(60));
        assert!(b.is_full_at(RATE, t2));
        for _ in 0..5 {
            assert_eq!(b.take(RATE, t2, 1), Ok(()));
        }
        assert!(b.take(RATE, t2, 1).is_err());
    }

    #[test]
    fn a_batch_over_the_burst_passes_on_a_full_bucket_and_pays_its_debt() {
        let t0 = Timestamp::from_secs(100);
        let mut b = TokenBucket::full(RATE, t0);
        assert_eq!(b.take(RATE, t0, 25), Ok(()));
        // 20 tokens of debt plus 1 needed: 2.1 s at 10/s.
        assert_eq!(b.take(RATE, t0, 1), Err(Duration::from_millis(2100)));
    }

    #[test]
    fn a_clock_going_back_adds_nothing() {
        let t0 = Timestamp::from_secs(100);
        let mut b = TokenBucket::full(RATE, t0);
        assert_eq!(b.take(RATE, t0, 5), Ok(()));
        assert!(b.take(RATE, Timestamp::from_secs(50), 1).is_err());
        assert!(b.take(RATE, t0, 1).is_err());
    }

    #[test]
    fn peer_limiter_stays_bounded() {
        let t0 = Timestamp::from_secs(100);
        let mut l = PeerLimiter::default();
        for i in 0..10u8 {
            l.admit(RATE, 4, Name::from_bytes([i; 32]), t0)
                .expect("fresh peers pass");
            assert!(l.tracked() <= 4);
        }
        l.forget(&Name::from_bytes([9; 32]));
        assert!(l.tracked() <= 3);
    }

    #[test]
    fn config_checks() {
        assert_eq!(ServiceConfig::default().check(), Ok(()));
        let c = ServiceConfig {
            max_record_payload: MAX_RECORD_PAYLOAD + 1,
            ..ServiceConfig::default()
        };
        assert_eq!(
            c.check(),
            Err(ConfigError::RecordPayload(MAX_RECORD_PAYLOAD + 1))
        );
        let c = ServiceConfig {
            max_response_bytes: 1000,
            ..ServiceConfig::default()
        };
        assert!(matches!(
            c.check(),
            Err(ConfigError::ResponseBytes { found: 1000, .. })
        ));
        let c = ServiceConfig {
            peer_requests: Some(Rate {
                per_second: 0,
                burst: 1,
            }),
            ..ServiceConfig::default()
        };
        assert_eq!(c.check(), Err(ConfigError::ZeroRate("peer_requests")));
        let parsed: ServiceConfig = toml::from_str(
            "max_record_payload = 1024\npeer_requests = { per_second = 5, burst = 10 }\n",
        )
        .expect("parses");
        assert_eq!(parsed.max_record_payload, 1024);
        assert_eq!(
            parsed.peer_requests,
            Some(Rate {
                per_second: 5,
                burst: 10
            })
        );
        assert_eq!(parsed.max_subscribers, 4096);
    }
}
