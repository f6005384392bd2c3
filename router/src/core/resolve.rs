//! Name resolution: from a FIB miss to a next-hop link, or to a NAK.
//!
//! A resolution starts with one `Lookup` action per name (however many PDUs
//! wait for it). The directory is untrusted: every record that comes back is
//! decoded and verified for the looked-up name at `now`; records that fail
//! are counted as bad and ignored, records this router published itself are
//! stale and ignored. The usable ones become candidates, tried freshest
//! first: by the start of the certificate that places the name at the
//! router (the endpoint's or server's RtCert), then by the record's own
//! start, so that a record left behind by a router the name has since left
//! loses to the newer one. Among equally fresh records, those of routers
//! already linked come first, then records with addresses, then records
//! through a gateway.
//!
//! For a candidate published by router R:
//!
//! - a link to R exists: the name is cached in the FIB towards that link
//!   until `min(record chain expiry, now + cache_ttl)`;
//! - R has addresses: R is dialed (once, however many names wait for it)
//!   and the name waits for R's link;
//! - R names a gateway G (`via`): the name waits for a route to G, which is
//!   resolved the same way, up to `max_via_depth` levels. A chain R3 via G2
//!   via G1 thus becomes: dial G1, and the FIB sends R3's names to G1, which
//!   resolves them further itself.
//!
//! A dial that fails, or a gateway that cannot be resolved, moves on to the
//! next candidate. When none is left but a verified record was found, and
//! this router has a gateway of its own whose link is up, the name goes to
//! that gateway: a router behind a gateway (on a stub network, behind NAT)
//! cannot dial every address, and its gateway forwards for it, as a default
//! route would. The PDUs go on the trusted gateway link with their TTL
//! decremented like any other hop, and the gateway checks their sources
//! against this router's records as usual. When no such fallback exists,
//! or the resolution outlives
//! `resolve_timeout`, the waiting PDUs are answered with NakNoRoute and the
//! name is remembered as unreachable for `negative_ttl` (for
//! `negative_error_ttl` when the directory failed).
//!
//! # Budgets
//!
//! A miss to a name nobody is resolving yet starts a directory lookup only
//! if the PDU's source and link have budget left ([`LookupLimits`]); its
//! place in the pending queue is bounded per name, source, link, in all and
//! in bytes. A PDU refused by a source's or link's budget is dropped as
//! [`DropReason::LookupLimit`], counted in `lookups_limited`, and answered
//! with a NAK (`DirectoryUnavailable`: the directory was not asked for it).
//! Since the budget is checked before the directory is asked, one source
//! adds at most its own rate of entries to the negative cache, and cannot
//! flush it for everyone.
//!
//! [`LookupLimits`]: super::limits::LookupLimits

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{CertError, RouteRecord, RouteTarget, Verified};
use gdp_certs::codec::Decode;
use gdp_certs::{Metadata, Name, Timestamp};
use gdp_proto::PduHeader;
use gdp_proto::control::NakReason;

use super::io::{LinkId, LookupError};
use super::limits::Origin;
use super::pending::{PendingPdu, QueueFull};
use super::timers::Timer;
use super::{Action, DropReason, FibEntry, RouteKind, RouterCore};

/// Where a resolution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the directory.
    Lookup,
    /// Waiting for a link to this router.
    Dial(Name),
    /// Waiting for a route to this gateway.
    Via(Name),
}

/// One name being resolved.
#[derive(Debug, Clone)]
pub(crate) struct Resolve {
    /// Gateway levels above the name that started it.
    depth: u8,
    phase: Phase,
    /// Verified records not tried yet.
    candidates: VecDeque<Verified<RouteRecord>>,
    /// Expiry of a route from the candidate being tried.
    cap: Timestamp,
    /// Expiry of a route through this router's own gateway, once a
    /// verified candidate could not be reached directly.
    fallback: Option<Timestamp>,
    /// Names that wait for this one (it is their gateway).
    waiters: BTreeSet<Name>,
    deadline: Timestamp,
    /// The reason the NAKs give if this fails.
    failure: NakReason,
    /// Whose lookup budget it is charged to (resolutions of gateways are
    /// charged to the name that needed them).
    origin: Option<Origin>,
}

impl Resolve {
    /// What the resolution waits for.
    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// When it gives up.
    pub(crate) fn deadline(&self) -> Timestamp {
        self.deadline
    }
}

/// A name remembered as unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negative {
    /// Until when.
    pub(crate) until: Timestamp,
    /// What the NAKs say meanwhile.
    pub(crate) reason: NakReason,
}

/// A dial in progress.
#[derive(Debug, Clone)]
pub(crate) struct Dialing {
    waiters: BTreeSet<Name>,
    deadline: Timestamp,
}

impl RouterCore {
    /// `header.dst` has no FIB entry: answer from the negative cache, or park
    /// the PDU and resolve the name, within the budgets of its source and of
    /// the link it arrived on.
    pub(crate) fn on_miss(&mut self, now: Timestamp, header: PduHeader, bytes: Bytes) {
        let dst = header.dst;
        if self.refuse_departed(now, &header) {
            return;
        }
        if let Some(neg) = self.negative.get(&dst).filter(|n| now <= n.until) {
            let reason = neg.reason;
            self.stats.negative_hits += 1;
            self.stats.dropped.count(DropReason::NoRoute);
            return self.nak(now, &header, reason);
        }
        let origin = Origin {
            source: header.src,
            link: self.ingress,
        };
        let starts = !self.resolving.contains_key(&dst);
        if starts && let Err(limited) = self.lookup_limits.check(&self.config, origin, now) {
            tracing::debug!(
                name = %dst.short(),
                source = %header.src.short(),
                link = ?self.ingress,
                ?limited,
                "lookup refused: budget spent"
            );
            return self.lookup_limited(now, &header);
        }
        let deadline = now.saturating_add(self.config.pending_timeout);
        let pdu = PendingPdu {
            bytes,
            header,
            deadline,
            link: self.ingress,
        };
        match self.pending.push(dst, pdu) {
            Ok(first) => {
                if first {
                    self.timers.schedule(deadline, Timer::Pending(dst));
                }
                if starts {
                    self.lookup_limits.start(&self.config, origin, now);
                    self.resolve(now, dst, 0, None);
                    if let Some(r) = self.resolving.get_mut(&dst) {
                        r.origin = Some(origin);
                    }
                }
            }
            Err(QueueFull::Source | QueueFull::Link) => {
                tracing::debug!(
                    name = %dst.short(),
                    source = %header.src.short(),
                    "pending place refused: budget spent"
                );
                self.lookup_limited(now, &header);
            }
            Err(QueueFull::Name | QueueFull::Total | QueueFull::Bytes) => {
                self.stats.dropped.count(DropReason::QueueFull);
            }
        }
    }

    /// Refuses a PDU whose source or link spent its lookup budget.
    fn lookup_limited(&mut self, now: Timestamp, header: &PduHeader) {
        self.stats.lookups_limited += 1;
        self.stats.dropped.count(DropReason::LookupLimit);
        self.nak(now, header, NakReason::DirectoryUnavailable);
    }

    /// Removes the negative entry for `name` if it has run out.
    pub(crate) fn expire_negative(&mut self, now: Timestamp, name: Name) {
        if self.negative.get(&name).is_some_and(|n| n.until < now) {
            self.negative.remove(&name);
        }
    }

    /// Starts resolving `name` (unless it already is), with `waiter`
    /// waiting for it.
    pub(crate) fn resolve(&mut self, now: Timestamp, name: Name, depth: u8, waiter: Option<Name>) {
        if let Some(r) = self.resolving.get_mut(&name) {
            r.waiters.extend(waiter);
            return;
        }
        let deadline = now.saturating_add(self.config.resolve_timeout);
        self.resolving.insert(
            name,
            Resolve {
                depth,
                phase: Phase::Lookup,
                candidates: VecDeque::new(),
                cap: Timestamp::MAX,
                fallback: None,
                waiters: waiter.into_iter().collect(),
                deadline,
                failure: NakReason::NoRoute,
                origin: None,
            },
        );
        self.timers.schedule(deadline, Timer::Resolve(name));
        self.stats.lookups += 1;
        self.actions.push_back(Action::Lookup(name));
    }

    /// The directory answered the lookup of `name` with raw records (or
    /// failed). Answers for names the core is not looking up are ignored.
    pub fn lookup_result(
        &mut self,
        now: Timestamp,
        name: Name,
        result: Result<Vec<Bytes>, LookupError>,
    ) {
        self.start(now);
        self.vouch_result(now, name, &result);
        let answered = self
            .resolving
            .get(&name)
            .is_some_and(|r| r.phase == Phase::Lookup);
        self.on_lookup_result(now, name, result);
        if answered {
            self.entitlement_settled(now, name, None);
        }
        self.refresh_gauges();
    }

    fn on_lookup_result(
        &mut self,
        now: Timestamp,
        name: Name,
        result: Result<Vec<Bytes>, LookupError>,
    ) {
        if !self
            .resolving
            .get(&name)
            .is_some_and(|r| r.phase == Phase::Lookup)
        {
            return;
        }
        let records = match result {
            Ok(records) => records,
            Err(e) => {
                tracing::debug!(name = %name.short(), error = %e, "lookup failed");
                if let Some(r) = self.resolving.get_mut(&name) {
                    r.failure = NakReason::DirectoryUnavailable;
                }
                return self.fail(now, name);
            }
        };
        let mut candidates = Vec::new();
        for (i, raw) in records.into_iter().enumerate() {
            if i >= self.config.max_records_per_lookup {
                self.stats.records_skipped += 1;
                continue;
            }
            let checked = RouteRecord::decode(raw)
                .map_err(CertError::from)
                .and_then(|r| r.verify(&name, now));
            match checked {
                Ok(v) if v.router_name() == self.name => self.stats.stale_records += 1,
                Ok(v) => {
                    self.learn_record(now, name, &v);
                    candidates.push(v);
                }
                Err(e) => {
                    self.stats.bad_records += 1;
                    tracing::debug!(name = %name.short(), error = %e, "bad route record");
                }
            }
        }
        // Freshest first; among equals, linked routers, then addresses, then
        // gateways (a stable sort keeps the directory's order last).
        candidates.sort_by_cached_key(|c| {
            let rank = if self.routers.contains_key(&c.router_name()) {
                0u8
            } else if !c.addresses().is_empty() {
                1
            } else {
                2
            };
            (std::cmp::Reverse(freshness(c)), rank)
        });
        if let Some(r) = self.resolving.get_mut(&name) {
            r.candidates = candidates.into();
        }
        self.try_next(now, name);
    }

    /// Tries the next candidate record for `name`, or fails it.
    fn try_next(&mut self, now: Timestamp, name: Name) {
        loop {
            let Some(r) = self.resolving.get_mut(&name) else {
                return;
            };
            let Some(c) = r.candidates.pop_front() else {
                return match r.fallback.zip(self.gateway_link(name)) {
                    Some((cap, link)) => {
                        self.stats.gateway_fallbacks += 1;
                        tracing::debug!(name = %name.short(), "unreachable directly: via the gateway");
                        self.complete(now, name, link, cap)
                    }
                    None => self.fail(now, name),
                };
            };
            let depth = r.depth;
            let cap = c
                .chain_not_after()
                .min(now.saturating_add(self.config.cache_ttl));
            let router = c.router_name();
            if let Some(&link) = self.routers.get(&router) {
                return self.complete(now, name, link, cap);
            }
            if !c.addresses().is_empty() {
                r.phase = Phase::Dial(router);
                r.cap = cap;
                r.fallback = Some(r.fallback.map_or(cap, |f| f.max(cap)));
                let md = c.router_md().clone();
                let addresses = c.addresses().to_vec();
                return self.dial(now, router, md, addresses, name);
            }
            let Some(gateway) = c.via() else { continue };
            if gateway == self.name || gateway == router || gateway == name {
                // This router is the gateway but has no link to the router
                // behind it, or the record points at itself.
                continue;
            }
            if let Some(e) = self.fib.lookup(&gateway, now) {
                return self.complete(now, name, e.next_hop, cap.min(e.expires));
            }
            if depth >= self.config.max_via_depth {
                continue;
            }
            r.phase = Phase::Via(gateway);
            r.cap = cap;
            r.fallback = Some(r.fallback.map_or(cap, |f| f.max(cap)));
            return self.resolve(now, gateway, depth + 1, Some(name));
        }
    }

    /// The link to this router's own gateway, if it is up and is not what
    /// `name` is (a name cannot fall back to the router that failed it).
    fn gateway_link(&self, name: Name) -> Option<LinkId> {
        let gateway = self.config.gateway.as_ref()?.name;
        if gateway == name {
            return None;
        }
        self.routers.get(&gateway).copied()
    }

    /// `name` resolved to `link` until `cap`: cache it, release its PDUs,
    /// and resolve the names waiting for it.
    fn complete(&mut self, now: Timestamp, name: Name, link: LinkId, cap: Timestamp) {
        let Some(r) = self.resolving.remove(&name) else {
            return;
        };
        if let Some(origin) = r.origin {
            self.lookup_limits.finish(origin);
        }
        self.install_cached(name, link, cap);
        self.entitlement_settled(now, name, None);
        // The entry actually used: a local or neighbour entry beats the cache.
        let entry = self.fib.lookup(&name, now).unwrap_or(FibEntry {
            next_hop: link,
            kind: RouteKind::Cached,
            expires: cap,
        });
        self.flush_pending(now, name);
        for w in r.waiters {
            let Some(wr) = self.resolving.get(&w) else {
                continue;
            };
            if wr.phase == Phase::Via(name) {
                let wcap = wr.cap.min(entry.expires);
                self.complete(now, w, entry.next_hop, wcap);
            }
        }
    }

    /// Caches `name` -> `link` until `cap`, unless a better entry exists.
    fn install_cached(&mut self, name: Name, link: LinkId, cap: Timestamp) {
        let keep = self.fib.get(&name).is_some_and(|e| {
            matches!(
                e.kind,
                RouteKind::Local | RouteKind::Neighbor | RouteKind::Vouched | RouteKind::Static
            ) && e.expires >= cap
        });
        if keep {
            return;
        }
        self.fib.insert(
            name,
            FibEntry {
                next_hop: link,
                kind: RouteKind::Cached,
                expires: cap,
            },
        );
        self.timers
            .schedule(Timestamp(cap.0.saturating_add(1)), Timer::FibExpiry(name));
    }

    /// `name` cannot be resolved: NAK its PDUs, remember it, and let the
    /// names waiting for it try their next candidate.
    fn fail(&mut self, now: Timestamp, name: Name) {
        let Some(r) = self.resolving.remove(&name) else {
            return;
        };
        self.stats.lookup_failures += 1;
        if let Some(origin) = r.origin {
            self.lookup_limits.finish(origin);
        }
        if let Phase::Dial(router) = r.phase
            && let Some(d) = self.dialing.get_mut(&router)
        {
            d.waiters.remove(&name);
        }
        let ttl = match r.failure {
            NakReason::DirectoryUnavailable => self.config.negative_error_ttl,
            _ => self.config.negative_ttl,
        };
        self.remember_unreachable(now, name, ttl, r.failure);
        for p in self.pending.take(&name) {
            self.stats.dropped.count(DropReason::NoRoute);
            self.nak(now, &p.header, r.failure);
        }
        self.entitlement_settled(now, name, Some(r.failure));
        for w in r.waiters {
            if self
                .resolving
                .get(&w)
                .is_some_and(|wr| wr.phase == Phase::Via(name))
            {
                self.try_next(now, w);
            }
        }
    }

    /// Answers `name` with `reason` for `ttl` without asking the directory,
    /// while the negative cache has room.
    fn remember_unreachable(
        &mut self,
        now: Timestamp,
        name: Name,
        ttl: Duration,
        reason: NakReason,
    ) {
        if ttl.is_zero() || self.negative.len() >= self.config.max_negative_entries {
            return;
        }
        let until = now.saturating_add(ttl);
        self.negative.insert(name, Negative { until, reason });
        self.timers
            .schedule(Timestamp(until.0.saturating_add(1)), Timer::Negative(name));
    }

    /// A route to `name` appeared (local attach, neighbour, static route):
    /// forget that it was unreachable and finish its resolution.
    pub(crate) fn route_available(&mut self, now: Timestamp, name: Name) {
        self.negative.remove(&name);
        match self.fib.lookup(&name, now) {
            Some(e) if self.resolving.contains_key(&name) => {
                self.complete(now, name, e.next_hop, e.expires);
            }
            _ => self.flush_pending(now, name),
        }
    }

    /// Sends every PDU waiting for `name` along its FIB entry.
    fn flush_pending(&mut self, now: Timestamp, name: Name) {
        let waiting = self.pending.take(&name);
        for p in waiting {
            match self.fib.lookup(&name, now) {
                // Never back to the router it came from (see `moved`); a
                // PDU originated here (a NAK, a pong) came from nowhere.
                Some(entry)
                    if p.link == Some(entry.next_hop)
                        && p.header.src != self.name
                        && self
                            .links
                            .get(&entry.next_hop)
                            .is_some_and(|l| l.is_router()) =>
                {
                    self.refuse_hairpin(now, &p.header);
                }
                Some(entry) => self.send_via(entry, &p.header, p.bytes),
                None => {
                    self.stats.dropped.count(DropReason::NoRoute);
                    self.nak(now, &p.header, NakReason::NoRoute);
                }
            }
        }
    }

    /// Asks the driver for a link to `router`, with `waiter` waiting for it.
    fn dial(
        &mut self,
        now: Timestamp,
        router: Name,
        metadata: Metadata,
        addresses: Vec<SocketAddr>,
        waiter: Name,
    ) {
        if let Some(d) = self.dialing.get_mut(&router) {
            d.waiters.insert(waiter);
            return;
        }
        let deadline = now.saturating_add(self.config.dial_timeout);
        self.dialing.insert(
            router,
            Dialing {
                waiters: BTreeSet::from([waiter]),
                deadline,
            },
        );
        self.timers.schedule(deadline, Timer::Dial(router));
        let connecting = self.links.values().any(
            |s| matches!(&s.kind, super::attach::LinkKind::Router { name, .. } if *name == router),
        );
        if !connecting {
            self.stats.dials += 1;
            self.actions.push_back(Action::Dial {
                router,
                metadata: Some(Box::new(metadata)),
                addresses,
            });
        }
    }

    /// The driver could not open a link to `router`.
    pub fn dial_failed(&mut self, now: Timestamp, router: Name) {
        self.start(now);
        self.stats.dial_failures += 1;
        self.fail_dial(now, router);
        self.gateway_lost(now, router);
        self.refresh_gauges();
    }

    /// Names waiting for a link to `router` try their next candidate.
    pub(crate) fn fail_dial(&mut self, now: Timestamp, router: Name) {
        let Some(d) = self.dialing.remove(&router) else {
            return;
        };
        for w in d.waiters {
            if self
                .resolving
                .get(&w)
                .is_some_and(|r| r.phase == Phase::Dial(router))
            {
                self.try_next(now, w);
            }
        }
    }

    /// A link to `router` is ready: names waiting for it resolve to it.
    pub(crate) fn dial_succeeded(&mut self, now: Timestamp, router: Name, link: LinkId) {
        let Some(d) = self.dialing.remove(&router) else {
            return;
        };
        for w in d.waiters {
            let Some(cap) = self
                .resolving
                .get(&w)
                .filter(|r| r.phase == Phase::Dial(router))
                .map(|r| r.cap)
            else {
                continue;
            };
            self.complete(now, w, link, cap);
        }
    }

    pub(crate) fn dial_deadline(&mut self, now: Timestamp, router: Name) {
        if self.dialing.get(&router).is_some_and(|d| d.deadline <= now) {
            self.stats.dial_failures += 1;
            self.fail_dial(now, router);
        }
    }

    pub(crate) fn resolve_deadline(&mut self, now: Timestamp, name: Name) {
        if self.resolving.get(&name).is_some_and(|r| r.deadline <= now) {
            self.fail(now, name);
        }
    }

    /// PDUs waiting for `name` past their deadline get a NAK.
    pub(crate) fn expire_pending(&mut self, now: Timestamp, name: Name) {
        for p in self.pending.expire(&name, now) {
            self.stats.dropped.count(DropReason::NoRoute);
            self.nak(now, &p.header, NakReason::NoRoute);
        }
        if let Some(next) = self.pending.next_deadline(&name) {
            self.timers.schedule(next, Timer::Pending(name));
        }
    }

    /// Removes the cached or static entry for `name` if it has expired.
    pub(crate) fn expire_fib(&mut self, now: Timestamp, name: Name) {
        self.fib.remove_if(&name, |e| {
            matches!(e.kind, RouteKind::Cached | RouteKind::Static) && e.expires < now
        });
    }
}

/// How fresh a record's claim is: when the certificate placing the name at
/// the router began (the endpoint's or server's RtCert; none for a router's
/// own record), then when the record itself began.
fn freshness(record: &RouteRecord) -> (Timestamp, Timestamp) {
    let placed = match record.target() {
        RouteTarget::Router => Timestamp::ZERO,
        RouteTarget::Endpoint { rtcert, .. } | RouteTarget::Capsule { rtcert, .. } => {
            rtcert.validity().not_before
        }
    };
    (placed, record.validity().not_before)
}
