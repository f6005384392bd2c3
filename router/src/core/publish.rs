//! Route records this router publishes.
//!
//! Every name served here gets a record signed by this router: the router
//! itself ([`RouteTarget::Router`], published at start), each attached
//! endpoint ([`RouteTarget::Endpoint`]) and each advertised capsule
//! ([`RouteTarget::Capsule`]). A record carries the configured public
//! addresses and the gateway as `via`, starts `clock_skew` before `now`
//! and expires `record_ttl` after it, but never after a certificate of its
//! chain. Records are republished at two thirds of their lifetime; once the
//! chain's certificates cannot be extended (the endpoint's RtCert or the
//! owner's AdCert runs out) the record is left to expire.
//!
//! A record whose name, serving link and certificates have not changed is
//! not signed or published again before its republish time: an endpoint
//! that re-attaches a name or re-advertises a capsule as is costs no
//! signature and no directory write.

use gdp_certs::cert::{RouteRecord, RouteTarget, Validity};
use gdp_certs::codec::Encode;
use gdp_certs::{Name, Timestamp};

use super::io::LinkId;
use super::timers::Timer;
use super::{Action, RouterCore};

/// A record this router keeps published.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// The local link serving the name (`None` for the router itself).
    pub(crate) link: Option<LinkId>,
    /// The certificates behind the record, to sign it again.
    pub(crate) target: RouteTarget,
    /// The current record's expiry.
    pub(crate) expires: Timestamp,
    /// When to publish it again.
    pub(crate) republish_at: Timestamp,
}

impl RouterCore {
    /// Publishes the router's own record.
    pub(crate) fn publish_self(&mut self, now: Timestamp) {
        self.publish(now, self.name, None, RouteTarget::Router);
    }

    /// Signs and publishes a record for `name`, served by `link`.
    pub(crate) fn publish(
        &mut self,
        now: Timestamp,
        name: Name,
        link: Option<LinkId>,
        target: RouteTarget,
    ) {
        if self.shutting_down {
            return;
        }
        let unchanged = self
            .published
            .get(&name)
            .is_some_and(|p| p.link == link && p.target == target && p.republish_at > now);
        if unchanged {
            self.stats.publishes_skipped += 1;
            return;
        }
        let not_after = now
            .saturating_add(self.config.record_ttl)
            .min(target.not_after());
        if not_after <= now {
            return;
        }
        let validity = Validity::new(now.saturating_sub(self.config.clock_skew), not_after);
        let record = match RouteRecord::sign(
            &self.identity,
            name,
            target.clone(),
            self.config.addresses.clone(),
            self.config.gateway.as_ref().map(|g| g.name),
            validity,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(name = %name.short(), error = %e, "route record not signed");
                return;
            }
        };
        let lifetime = not_after.since(now);
        let republish_at = now.saturating_add(lifetime * 2 / 3);
        self.published.insert(
            name,
            Published {
                link,
                target,
                expires: not_after,
                republish_at,
            },
        );
        self.timers.schedule(republish_at, Timer::Republish(name));
        self.stats.records_published += 1;
        self.actions.push_back(Action::Publish {
            name,
            record: record.to_bytes(),
            expires: not_after,
        });
    }

    /// The republish timer for `name` fired.
    pub(crate) fn republish(&mut self, now: Timestamp, name: Name) {
        let Some(p) = self.published.get(&name) else {
            return;
        };
        if p.republish_at > now {
            return;
        }
        let extended = now
            .saturating_add(self.config.record_ttl)
            .min(p.target.not_after());
        if extended <= p.expires {
            // The chain's certificates end here: let the record run out.
            return;
        }
        let (link, target) = (p.link, p.target.clone());
        self.publish(now, name, link, target);
    }
}
