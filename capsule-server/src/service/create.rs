//! Creating capsules, under the server's create policy.
//!
//! A `Create` carries the capsule's metadata and an AdCert signed by the
//! key in that metadata, the owner: that signature is what lets this server
//! host the capsule, so the owner is the *creator* the policy is about
//! ([`CreatePolicy`]). A create of a capsule already hosted (a resend, or a
//! renewal with a later AdCert) is always answered; the policy and the
//! limits apply to new capsules only, in this order:
//!
//! 1. under [`CreatePolicy::AllowList`], the owner key must be listed
//!    (checked before the AdCert's signature, which it does not need);
//! 2. the AdCert must verify for this server;
//! 3. the server hosts fewer than `max_capsules`;
//! 4. under [`CreatePolicy::Quota`], the owner has fewer than `per_creator`
//!    capsules here, and then the server-wide create bucket has a token.
//!
//! The bucket is charged last, so creates refused for any other reason do
//! not spend the server's create budget.

use std::collections::HashMap;

use gdp_certs::cert::AdCert;
use gdp_certs::{Kind, Metadata, Name, PUBLIC_KEY_LEN, PublicKey, Timestamp};
use gdp_proto::capsule::{CapsuleResponse, ErrorCode};
use gdp_proto::chain::ChainState;

use super::{CapsuleService, Creation, Hosted, TicketKind, Waiter};
use crate::limits::{CreatePolicy, TokenBucket, describe_wait};
use crate::stats::Refusal;
use crate::store::Write;

/// The state the create policy needs: capsules per creator and the
/// server-wide create bucket.
#[derive(Debug, Default)]
pub(super) struct Creators {
    /// Hosted capsules (pending creates included) per owner key.
    hosted: HashMap<[u8; PUBLIC_KEY_LEN], usize>,
    bucket: Option<TokenBucket>,
}

impl Creators {
    /// Counts the capsules of `owners`.
    pub(super) fn new<'a>(owners: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        let mut c = Creators::default();
        for owner in owners {
            c.add(owner);
        }
        c
    }

    /// Capsules `owner` has here.
    pub(super) fn count(&self, owner: &PublicKey) -> usize {
        self.hosted.get(owner.as_bytes()).copied().unwrap_or(0)
    }

    /// `owner` has one more capsule.
    pub(super) fn add(&mut self, owner: &PublicKey) {
        *self.hosted.entry(*owner.as_bytes()).or_default() += 1;
    }

    /// `owner` has one capsule less.
    pub(super) fn remove(&mut self, owner: &PublicKey) {
        if let Some(n) = self.hosted.get_mut(owner.as_bytes()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.hosted.remove(owner.as_bytes());
            }
        }
    }
}

/// A create refused by the policy or a limit.
struct Refused {
    reason: Refusal,
    code: ErrorCode,
    message: String,
}

impl CapsuleService {
    pub(super) fn create(
        &mut self,
        now: Timestamp,
        w: Waiter,
        capsule: Name,
        metadata: Metadata,
        adcert: AdCert,
    ) {
        if metadata.kind() != Kind::Capsule {
            let m = format!("the metadata is a {:?}'s, not a capsule's", metadata.kind());
            return self.out.error(w, capsule, ErrorCode::BadCert, m);
        }
        let name = metadata.name();
        if name != capsule {
            let m = format!(
                "the metadata hashes to {name}, not to the capsule {capsule} the request was sent to"
            );
            return self.out.error(w, capsule, ErrorCode::BadRequest, m);
        }
        let new = !self.capsules.contains_key(&capsule);
        if new && let Err(r) = self.allowed(metadata.key()) {
            return self.refuse(now, w, capsule, r.reason, r.code, r.message);
        }
        if adcert.server() != self.server {
            let m = format!(
                "the AdCert lets server {} host the capsule, not this server {}",
                adcert.server(),
                self.server
            );
            return self.out.error(w, capsule, ErrorCode::BadCert, m);
        }
        if let Err(e) = adcert.verify(&metadata, now) {
            return self.out.error(
                w,
                capsule,
                ErrorCode::BadCert,
                format!("the AdCert does not verify: {e}"),
            );
        }
        if let Some(e) = self.damaged.get(&capsule) {
            let m = format!("capsule {capsule} is damaged in this server's store: {e}");
            return self.out.error(w, capsule, ErrorCode::Internal, m);
        }
        let out = &mut self.out;
        if let Some(h) = self.capsules.get_mut(&capsule) {
            // Same name, so the same metadata. A later AdCert is a renewal.
            if adcert.validity().not_after > h.adcert.validity().not_after {
                h.adcert = adcert.clone();
                out.commit(
                    h,
                    capsule,
                    TicketKind::AdCert,
                    Write::SetAdCert { capsule, adcert },
                );
            }
            match &mut h.creation {
                Creation::Durable => out.respond(w, capsule, CapsuleResponse::Created),
                Creation::Pending(waiters) => waiters.push(w),
            }
            return;
        }
        if let Err(r) = self.admit_new(now, metadata.key()) {
            return self.refuse(now, w, capsule, r.reason, r.code, r.message);
        }
        self.creators.add(metadata.key());
        let h = self.capsules.entry(capsule).or_insert(Hosted::new(
            metadata.clone(),
            adcert.clone(),
            Creation::Pending(vec![w]),
            ChainState::new(capsule),
            None,
        ));
        self.out.commit(
            h,
            capsule,
            TicketKind::Create,
            Write::Create { metadata, adcert },
        );
        tracing::info!(%capsule, "hosting a new capsule");
    }

    /// Whether the policy lets `owner` create capsules at all.
    fn allowed(&self, owner: &PublicKey) -> Result<(), Refused> {
        match &self.config.create_policy {
            CreatePolicy::AllowList { creators } if !creators.contains(owner) => Err(Refused {
                reason: Refusal::CreatorNotAllowed,
                code: ErrorCode::BadRequest,
                message: format!(
                    "not allowed: this server creates capsules only for the owner keys on its allow list, and {owner} is not on it"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The limits on a new capsule of `owner` (whose AdCert verified);
    /// takes a token of the create bucket when it passes.
    fn admit_new(&mut self, now: Timestamp, owner: &PublicKey) -> Result<(), Refused> {
        if self.capsules.len() >= self.config.max_capsules {
            return Err(Refused {
                reason: Refusal::ServerFull,
                code: ErrorCode::TooLarge,
                message: format!(
                    "this server hosts its limit of {} capsules",
                    self.config.max_capsules
                ),
            });
        }
        let CreatePolicy::Quota { per_creator, rate } = self.config.create_policy else {
            return Ok(());
        };
        let have = self.creators.count(owner);
        if have >= per_creator {
            return Err(Refused {
                reason: Refusal::CreatorQuota,
                code: ErrorCode::TooLarge,
                message: format!(
                    "owner {owner} has {have} capsules on this server, its limit of {per_creator}"
                ),
            });
        }
        let bucket = self
            .creators
            .bucket
            .get_or_insert_with(|| TokenBucket::full(rate, now));
        bucket.take(rate, now, 1).map_err(|wait| Refused {
            reason: Refusal::CreateRate,
            code: ErrorCode::RateLimited,
            message: format!(
                "rate limited: this server creates at most {} capsules/s (burst {}); retry in {}",
                rate.per_second,
                rate.burst,
                describe_wait(wait)
            ),
        })
    }
}
