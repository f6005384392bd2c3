//! Links: endpoint attachment, advertisements, withdrawals, teardown.
//!
//! An endpoint link starts `Attaching`: the core sends an
//! [`AttachChallenge`] and accepts only an [`AttachProof`] for it. A valid
//! proof binds the link to the endpoint's name: the FIB points the name at
//! the link, the endpoint gets `AttachAccepted`, and a route record is
//! published. A bad proof gets `AttachRejected` and a fresh challenge (a
//! nonce is never reused); after `max_attach_failures` the link is closed.
//!
//! A server then sends Advertise PDUs: each entry's AdCert must verify for
//! the capsule and name this server; valid capsules are installed and
//! published. Withdraw (or the link going down) removes them again, and a
//! name still served by another local link moves there instead of
//! disappearing.
//!
//! # Limits
//!
//! - An unproven link (an endpoint that has not attached, a router link
//!   whose hello has not passed) is closed after `attach_timeout`; at most
//!   `max_unproven_links` are open at once (links this router dialed
//!   excepted), and a new one beyond is closed at once. Past
//!   `max_unattached_pdus`, every PDU other than the proof on an unattached
//!   link is a violation.
//! - A proven name holds at most `max_links_per_peer` links: the newest is
//!   refused.
//! - Advertise entries pass the cheap checks first (the per-server capsule
//!   limit, the AdCert names this server, the metadata hashes to the
//!   capsule, no duplicate, not already advertised as is); only then is the
//!   AdCert's signature verified, within a budget per PDU and per link. An
//!   entry that fails is a violation, so a link sending forged AdCerts is
//!   closed after `max_violations` of them.
//! - Closing a link costs time linear in the names it served: the `local`
//!   index gives each name's other local servers directly.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use gdp_certs::cert::{RouteTarget, RtCert};
use gdp_certs::codec::Encode;
use gdp_certs::{Kind, Metadata, Name, Timestamp};
use gdp_proto::control::{
    AdvertiseEntry, AttachChallenge, AttachProof, ControlMessage, VerifiedAttach,
};
use gdp_proto::pdu::HEADER_LEN;
use gdp_proto::{PduHeader, PduType};

use super::io::{CloseReason, LinkId, LinkInfo, LinkPeer, LinkRole, PeeringError};
use super::limits::TokenBucket;
use super::timers::Timer;
use super::{Action, DropReason, FibEntry, RouteKind, RouterCore};

/// An endpoint that proved its name on a link.
#[derive(Debug, Clone)]
pub(crate) struct Attached {
    pub(crate) name: Name,
    pub(crate) metadata: Metadata,
    pub(crate) rtcert: RtCert,
    /// Capsules it advertised, with the entries that prove them.
    pub(crate) advertised: BTreeMap<Name, AdvertiseEntry>,
    /// AdCert verifications this link may still spend.
    pub(crate) verify_budget: TokenBucket,
}

impl Attached {
    /// True if the endpoint may send as `name`: its own name, or a capsule
    /// it advertised.
    pub(crate) fn sends_as(&self, name: &Name) -> bool {
        self.name == *name || self.advertised.contains_key(name)
    }
}

/// What a link is.
#[derive(Debug, Clone)]
pub(crate) enum LinkKind {
    /// An endpoint that has not proved its name.
    Attaching {
        challenge: AttachChallenge,
        failures: u32,
    },
    /// An attached endpoint.
    Endpoint(Box<Attached>),
    /// A router; `ready` once its hello passed the peering policy.
    Router {
        name: Name,
        metadata: Box<Metadata>,
        ready: bool,
    },
}

/// One link's state and counters.
#[derive(Debug, Clone)]
pub(crate) struct LinkState {
    pub(crate) kind: LinkKind,
    pub(crate) violations: u32,
    pub(crate) malformed: u64,
    pub(crate) oversized: u64,
    pub(crate) bad_source: u64,
    /// When the link is closed if it is still unproven.
    pub(crate) proof_deadline: Timestamp,
    /// PDUs other than the proof received before the endpoint attached.
    pub(crate) unattached_pdus: u32,
}

impl LinkState {
    fn new(kind: LinkKind, proof_deadline: Timestamp) -> Self {
        LinkState {
            kind,
            violations: 0,
            malformed: 0,
            oversized: 0,
            bad_source: 0,
            proof_deadline,
            unattached_pdus: 0,
        }
    }

    /// An endpoint that has not attached, or a router whose hello has not
    /// passed.
    pub(crate) fn is_unproven(&self) -> bool {
        matches!(
            self.kind,
            LinkKind::Attaching { .. } | LinkKind::Router { ready: false, .. }
        )
    }

    pub(crate) fn is_ready_router(&self) -> bool {
        matches!(self.kind, LinkKind::Router { ready: true, .. })
    }

    pub(crate) fn is_router(&self) -> bool {
        matches!(self.kind, LinkKind::Router { .. })
    }

    pub(crate) fn info(&self) -> LinkInfo {
        let (role, peer, advertised) = match &self.kind {
            LinkKind::Attaching { .. } => (LinkRole::Attaching, None, 0),
            LinkKind::Endpoint(a) => (LinkRole::Endpoint, Some(a.name), a.advertised.len()),
            LinkKind::Router { name, ready, .. } => (
                if *ready {
                    LinkRole::Router
                } else {
                    LinkRole::RouterPending
                },
                Some(*name),
                0,
            ),
        };
        LinkInfo {
            role,
            peer,
            advertised,
            malformed: self.malformed,
            oversized: self.oversized,
            bad_source: self.bad_source,
            violations: self.violations,
        }
    }
}

impl RouterCore {
    /// A new link is up. See [`LinkPeer`] for what happens next.
    ///
    /// The link must prove a name within `attach_timeout`. It is closed at
    /// once if `max_unproven_links` links are unproven already (unless this
    /// router dialed it), or if it is a router link to a router that
    /// already holds `max_links_per_peer` links.
    pub fn link_up(&mut self, now: Timestamp, link: LinkId, peer: LinkPeer) {
        self.start(now);
        if self.links.contains_key(&link) {
            // The driver reused an identifier: forget the old link first.
            self.teardown(now, link);
            self.outbox.drop_link(link);
        }
        let dialed = match &peer {
            LinkPeer::Router { metadata } => {
                let name = metadata.name();
                self.dialing.contains_key(&name)
                    || self.config.gateway.as_ref().is_some_and(|g| g.name == name)
            }
            LinkPeer::Endpoint => false,
        };
        if !dialed && self.unproven_full() {
            let limit = self.config.max_unproven_links;
            self.stats.links_refused.unproven += 1;
            return self.refuse_link(link, CloseReason::TooManyUnproven { limit });
        }
        let deadline = now.saturating_add(self.config.attach_timeout);
        match peer {
            LinkPeer::Endpoint => {
                let challenge = AttachChallenge {
                    router: self.name,
                    nonce: self.nonce(),
                };
                self.links.insert(
                    link,
                    LinkState::new(
                        LinkKind::Attaching {
                            challenge: challenge.clone(),
                            failures: 0,
                        },
                        deadline,
                    ),
                );
                self.send_control(link, Name::ZERO, ControlMessage::AttachChallenge(challenge));
            }
            LinkPeer::Router { metadata } => {
                let kind = metadata.kind();
                let name = metadata.name();
                let held = self.peer_links.get(&name).map_or(0, BTreeSet::len);
                if held >= self.config.max_links_per_peer {
                    let limit = self.config.max_links_per_peer;
                    self.stats.links_refused.per_peer += 1;
                    return self
                        .refuse_link(link, CloseReason::TooManyLinksPerPeer { peer: name, limit });
                }
                self.links.insert(
                    link,
                    LinkState::new(
                        LinkKind::Router {
                            name,
                            metadata: Box::new(metadata),
                            ready: false,
                        },
                        deadline,
                    ),
                );
                self.peer_links.entry(name).or_default().insert(link);
                if kind != Kind::Router {
                    self.refuse_peer(now, link, name, PeeringError::NotARouter { kind });
                } else {
                    self.send_hello(link, name);
                }
            }
        }
        if self.links.contains_key(&link) {
            self.unproven.insert(link);
            self.timers.schedule(deadline, Timer::Attach(link));
        }
        self.refresh_gauges();
    }

    /// True if `max_unproven_links` links are unproven. The set is pruned of
    /// links that have proved a name only when it looks full, so the check
    /// is cheap until then.
    fn unproven_full(&mut self) -> bool {
        if self.unproven.len() >= self.config.max_unproven_links {
            let links = &self.links;
            self.unproven
                .retain(|l| links.get(l).is_some_and(LinkState::is_unproven));
        }
        self.unproven.len() >= self.config.max_unproven_links
    }

    /// Closes a link the core does not keep: counted, and closed at once.
    fn refuse_link(&mut self, link: LinkId, reason: CloseReason) {
        tracing::debug!(%link, %reason, "link refused");
        self.stats.links_closed += 1;
        self.actions.push_back(Action::CloseLink { link, reason });
        self.refresh_gauges();
    }

    /// The attach deadline of `link` passed: close it if it is still
    /// unproven.
    pub(crate) fn attach_deadline(&mut self, now: Timestamp, link: LinkId) {
        let due = self
            .links
            .get(&link)
            .is_some_and(|s| s.is_unproven() && s.proof_deadline <= now);
        if due {
            self.stats.attach_timeouts += 1;
            tracing::debug!(%link, "closing a link that did not prove a name in time");
            self.close_link(now, link, CloseReason::AttachTimeout);
        } else if self.links.get(&link).is_some_and(|s| !s.is_unproven()) {
            self.unproven.remove(&link);
        }
    }

    /// A link is gone: everything learned from it is withdrawn (FIB entries
    /// through it; the attached endpoint's name and capsules, whose records
    /// are unpublished unless another local link serves them).
    pub fn link_down(&mut self, now: Timestamp, link: LinkId) {
        self.start(now);
        self.teardown(now, link);
        self.outbox.drop_link(link);
        self.refresh_gauges();
    }

    /// Closes `link` for `reason`: teardown now, and a `CloseLink` action.
    /// What is already queued for the link (such as a last `AttachRejected`)
    /// is still handed out by `poll_transmit`, before the action.
    pub(crate) fn close_link(&mut self, now: Timestamp, link: LinkId, reason: CloseReason) {
        if self.teardown(now, link) {
            self.stats.links_closed += 1;
            self.actions.push_back(Action::CloseLink { link, reason });
        }
    }

    /// Forgets `link`. Returns false if it was not known.
    fn teardown(&mut self, now: Timestamp, link: LinkId) -> bool {
        let Some(state) = self.links.remove(&link) else {
            return false;
        };
        self.unproven.remove(&link);
        self.lookup_limits.forget_link(link);
        if !state.is_unproven() {
            // Only proven links have FIB entries through them: a link that
            // never proved a name costs no pass over the FIB.
            self.fib.remove_link(link);
        }
        match state.kind {
            LinkKind::Attaching { .. } => {}
            LinkKind::Endpoint(att) => {
                if let Some(waiting) = self.awaiting_publish.get_mut(&att.name) {
                    waiting.remove(&link);
                    if waiting.is_empty() {
                        self.awaiting_publish.remove(&att.name);
                    }
                }
                self.forget_peer_link(att.name, link);
                self.unindex_local(att.name, link);
                // A server's name and its capsules are remembered as
                // departed once no local link serves them (see `moved`);
                // a client's name is not: clients reconnect all the time,
                // and PDUs for one that does should not meet NAKs.
                let server = att.metadata.kind() == Kind::Server;
                if self.relocate(now, att.name) && server {
                    self.departed(now, att.name);
                }
                for capsule in att.advertised.keys() {
                    self.unindex_local(*capsule, link);
                    if self.relocate(now, *capsule) {
                        self.departed(now, *capsule);
                    }
                }
            }
            LinkKind::Router { name, ready, .. } => {
                self.forget_peer_link(name, link);
                self.router_gone(now, name, link, ready);
            }
        }
        // Its tree memberships end; trees it led to join again elsewhere.
        self.trees_link_down(now, link);
        true
    }

    /// A PDU on a link that is still attaching: only the proof counts.
    pub(crate) fn on_attaching_pdu(
        &mut self,
        now: Timestamp,
        link: LinkId,
        header: &PduHeader,
        bytes: Bytes,
    ) {
        if header.ptype != PduType::Control {
            return self.not_attached(now, link);
        }
        match ControlMessage::from_payload(PduType::Control, bytes.slice(HEADER_LEN..)) {
            Ok(ControlMessage::AttachProof(proof)) => self.check_proof(now, link, &proof),
            Ok(_) => self.not_attached(now, link),
            Err(_) => self.violation(now, link, DropReason::Malformed),
        }
    }

    /// A PDU other than the proof before the endpoint attached: dropped, and
    /// a violation once `max_unattached_pdus` were tolerated.
    fn not_attached(&mut self, now: Timestamp, link: LinkId) {
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        state.unattached_pdus = state.unattached_pdus.saturating_add(1);
        if state.unattached_pdus > self.config.max_unattached_pdus {
            self.violation(now, link, DropReason::NotAttached);
        } else {
            self.stats.dropped.count(DropReason::NotAttached);
        }
    }

    fn check_proof(&mut self, now: Timestamp, link: LinkId, proof: &AttachProof) {
        let Some(LinkKind::Attaching {
            challenge,
            failures,
        }) = self.links.get(&link).map(|l| &l.kind)
        else {
            return;
        };
        match proof.verify(challenge, now) {
            Ok(verified) => self.attach(now, link, verified),
            Err(e) => {
                let failures = failures + 1;
                self.stats.attach_failures += 1;
                tracing::debug!(%link, error = %e, failures, "attach proof refused");
                self.send_control(link, Name::ZERO, ControlMessage::rejected(e.to_string()));
                if failures >= self.config.max_attach_failures {
                    self.close_link(now, link, CloseReason::AttachFailed { failures });
                    return;
                }
                let challenge = AttachChallenge {
                    router: self.name,
                    nonce: self.nonce(),
                };
                if let Some(state) = self.links.get_mut(&link) {
                    state.kind = LinkKind::Attaching {
                        challenge: challenge.clone(),
                        failures,
                    };
                }
                self.send_control(link, Name::ZERO, ControlMessage::AttachChallenge(challenge));
            }
        }
    }

    fn attach(&mut self, now: Timestamp, link: LinkId, verified: VerifiedAttach) {
        let (name, metadata, rtcert) = verified.into_parts();
        let held = self.peer_links.get(&name).map_or(0, BTreeSet::len);
        if held >= self.config.max_links_per_peer {
            let limit = self.config.max_links_per_peer;
            self.stats.links_refused.per_peer += 1;
            tracing::debug!(%link, endpoint = %name.short(), limit, "attach refused: links per peer");
            let reason = CloseReason::TooManyLinksPerPeer { peer: name, limit };
            self.send_control(
                link,
                Name::ZERO,
                ControlMessage::rejected(reason.to_string()),
            );
            return self.close_link(now, link, reason);
        }
        let rtcert = rtcert.into_inner();
        let target = RouteTarget::Endpoint {
            endpoint_md: metadata.clone(),
            rtcert: rtcert.clone(),
        };
        let verify_budget = TokenBucket::full(self.config.advertise_verifications, now);
        if let Some(state) = self.links.get_mut(&link) {
            state.kind = LinkKind::Endpoint(Box::new(Attached {
                name,
                metadata,
                rtcert,
                advertised: BTreeMap::new(),
                verify_budget,
            }));
        }
        self.unproven.remove(&link);
        self.peer_links.entry(name).or_default().insert(link);
        self.local.entry(name).or_default().insert(link);
        self.stats.attaches += 1;
        tracing::debug!(%link, endpoint = %name.short(), "endpoint attached");
        let published = self.stats.records_published;
        self.install_local(now, name, link, target);
        if self.stats.records_published == published || self.config.publish_wait.is_zero() {
            // Nothing new to write (or no wait asked for).
            return self.accept(link, name);
        }
        self.awaiting_publish.entry(name).or_default().insert(link);
        self.timers.schedule(
            now.saturating_add(self.config.publish_wait),
            Timer::Accept(link),
        );
    }

    /// Tells the endpoint on `link` it is attached as `name`, if it still is.
    fn accept(&mut self, link: LinkId, name: Name) {
        let attached = matches!(
            self.links.get(&link).map(|l| &l.kind),
            Some(LinkKind::Endpoint(att)) if att.name == name
        );
        if attached {
            self.send_control(
                link,
                name,
                ControlMessage::AttachAccepted { endpoint: name },
            );
        }
    }

    /// The directory write of this router's record for `name` finished
    /// (`ok`: it succeeded). Endpoints attached as `name` and waiting for
    /// their record are accepted now; after a failure too, since the name
    /// is served here whatever the directory holds (the record is written
    /// again by the next audit or republish).
    pub fn publish_done(&mut self, now: Timestamp, name: Name, ok: bool) {
        self.start(now);
        if ok && name == self.name {
            self.self_published = true;
        }
        let Some(links) = self.awaiting_publish.remove(&name) else {
            return;
        };
        if !ok {
            tracing::debug!(endpoint = %name.short(), "route record not written; accepting anyway");
        }
        for link in links {
            self.accept(link, name);
        }
    }

    /// The wait for `link`'s record ran out: accept it now.
    pub(crate) fn accept_deadline(&mut self, link: LinkId) {
        let Some(LinkKind::Endpoint(att)) = self.links.get(&link).map(|l| &l.kind) else {
            return;
        };
        let name = att.name;
        let Some(waiting) = self.awaiting_publish.get_mut(&name) else {
            return;
        };
        if waiting.remove(&link) {
            if waiting.is_empty() {
                self.awaiting_publish.remove(&name);
            }
            tracing::debug!(%link, endpoint = %name.short(), "directory write slow; accepting");
            self.accept(link, name);
        }
    }

    /// Points `name` at the local `link` and publishes its record.
    fn install_local(&mut self, now: Timestamp, name: Name, link: LinkId, target: RouteTarget) {
        self.fib.insert(
            name,
            FibEntry {
                next_hop: link,
                kind: RouteKind::Local,
                expires: Timestamp::MAX,
            },
        );
        self.returned(&name);
        self.publish(now, name, Some(link), target);
        self.route_available(now, name);
    }

    /// An Advertise from an attached endpoint. Cheap checks come before
    /// any signature work; see "Limits" in the module documentation.
    pub(crate) fn on_advertise(&mut self, now: Timestamp, link: LinkId, payload: Bytes) {
        let entries = match ControlMessage::from_payload(PduType::Advertise, payload) {
            Ok(ControlMessage::Advertise { entries }) => entries,
            _ => return self.violation(now, link, DropReason::Malformed),
        };
        let Some(LinkKind::Endpoint(att)) = self.links.get(&link).map(|l| &l.kind) else {
            return;
        };
        if att.metadata.kind() != Kind::Server {
            // Only servers host capsules (a capsule route names a server).
            self.stats.adcerts_rejected += entries.len() as u64;
            self.stats.dropped.count(DropReason::Policy);
            return;
        }
        let (server, server_md, rtcert) = (att.name, att.metadata.clone(), att.rtcert.clone());
        let mut seen = BTreeSet::new();
        let mut verified_here = 0usize;
        for entry in entries {
            let capsule = entry.adcert.capsule();
            let Some(LinkKind::Endpoint(att)) = self.links.get_mut(&link).map(|l| &mut l.kind)
            else {
                // Closed for violations while handling this PDU.
                return;
            };
            if !seen.insert(capsule) || att.advertised.get(&capsule) == Some(&entry) {
                // A duplicate in this PDU, or already advertised as is: no
                // signature work and nothing to publish again.
                continue;
            }
            if att.advertised.len() >= self.config.max_capsules_per_server
                && !att.advertised.contains_key(&capsule)
            {
                self.stats.adcerts_rejected += 1;
                self.stats.dropped.count(DropReason::Policy);
                continue;
            }
            if entry.adcert.server() != server || entry.capsule_md.name() != capsule {
                // A server never sends these: an AdCert for someone else,
                // or metadata that is not the capsule's.
                tracing::debug!(%link, capsule = %capsule.short(), "advertise entry not for this server");
                self.stats.adcerts_rejected += 1;
                if self.strike(now, link) {
                    return;
                }
                continue;
            }
            let budget = verified_here < self.config.max_verifications_per_advertise
                && att
                    .verify_budget
                    .try_take(self.config.advertise_verifications, now, 1);
            if !budget {
                self.stats.adcerts_rejected += 1;
                self.stats.adcerts_throttled += 1;
                tracing::debug!(%link, capsule = %capsule.short(), "advertise entry refused: verification budget spent");
                continue;
            }
            verified_here += 1;
            self.stats.adcert_verifications += 1;
            if let Err(e) = entry.adcert.verify(&entry.capsule_md, now) {
                tracing::debug!(%link, capsule = %capsule.short(), error = %e, "adcert refused");
                self.stats.adcerts_rejected += 1;
                if self.strike(now, link) {
                    return;
                }
                continue;
            }
            let target = RouteTarget::Capsule {
                capsule_md: entry.capsule_md.clone(),
                adcert: entry.adcert.clone(),
                server_md: server_md.clone(),
                rtcert: rtcert.clone(),
            };
            if let Some(LinkKind::Endpoint(att)) = self.links.get_mut(&link).map(|l| &mut l.kind) {
                att.advertised.insert(capsule, entry);
            }
            self.local.entry(capsule).or_default().insert(link);
            self.stats.capsules_advertised += 1;
            // Another local server may already serve this capsule; keep its
            // route unless it is this link's own (a refreshed AdCert) or the
            // same server's older link. A server that re-attaches (after a
            // crash the router has not noticed yet, or to renew its RtCert)
            // takes its capsules along at once.
            let served_elsewhere = self.fib.get(&capsule).is_some_and(|e| {
                e.kind == RouteKind::Local
                    && e.next_hop != link
                    && self.endpoint_name(e.next_hop) != Some(server)
            });
            if !served_elsewhere {
                self.install_local(now, capsule, link, target);
            }
        }
    }

    /// A Withdraw from an attached endpoint: names it advertised go away.
    pub(crate) fn on_withdraw(&mut self, now: Timestamp, link: LinkId, payload: Bytes) {
        let names = match ControlMessage::from_payload(PduType::Withdraw, payload) {
            Ok(ControlMessage::Withdraw { names }) => names,
            _ => return self.violation(now, link, DropReason::Malformed),
        };
        for name in names {
            let removed = match self.links.get_mut(&link).map(|l| &mut l.kind) {
                Some(LinkKind::Endpoint(att)) => att.advertised.remove(&name).is_some(),
                _ => false,
            };
            if removed {
                self.unindex_local(name, link);
                self.fib
                    .remove_if(&name, |e| e.kind == RouteKind::Local && e.next_hop == link);
                if self.relocate(now, name) {
                    self.departed(now, name);
                }
            }
        }
    }

    /// `name` lost a local server: move it to another local link serving it,
    /// or unpublish it. Returns true if it was unpublished (no local link
    /// serves it any more, and its record here is withdrawn).
    pub(crate) fn relocate(&mut self, now: Timestamp, name: Name) -> bool {
        // A route to a live local link that serves the name stays as it is
        // (for example a server's newer link, after its older one closed).
        let current = self.fib.get(&name).filter(|e| e.kind == RouteKind::Local);
        if !self.shutting_down && current.is_some_and(|e| self.serves(e.next_hop, &name)) {
            return false;
        }
        let other = if self.shutting_down {
            None
        } else {
            self.find_local_server(name)
        };
        match other {
            Some((link, target)) => {
                let current = self.fib.get(&name);
                let same =
                    current.is_some_and(|e| e.kind == RouteKind::Local && e.next_hop == link);
                if !same {
                    self.install_local(now, name, link, target);
                }
                false
            }
            None => {
                self.fib.remove_if(&name, |e| e.kind == RouteKind::Local);
                let published = self.published.remove(&name).is_some();
                if published {
                    self.actions.push_back(Action::Unpublish { name });
                }
                published
            }
        }
    }

    /// True if the endpoint attached on `link` is `name` or advertised it.
    fn serves(&self, link: LinkId, name: &Name) -> bool {
        match self.links.get(&link).map(|l| &l.kind) {
            Some(LinkKind::Endpoint(att)) => &att.name == name || att.advertised.contains_key(name),
            _ => false,
        }
    }

    /// The endpoint attached on `link`, if it is an attached endpoint link.
    fn endpoint_name(&self, link: LinkId) -> Option<Name> {
        match self.links.get(&link).map(|l| &l.kind) {
            Some(LinkKind::Endpoint(att)) => Some(att.name),
            _ => None,
        }
    }

    /// An attached link serving `name`, and the certificates proving it:
    /// the lowest-numbered one in the `local` index.
    fn find_local_server(&self, name: Name) -> Option<(LinkId, RouteTarget)> {
        self.local.get(&name)?.iter().find_map(|link| {
            let Some(LinkKind::Endpoint(att)) = self.links.get(link).map(|s| &s.kind) else {
                return None;
            };
            if att.name == name {
                return Some((
                    *link,
                    RouteTarget::Endpoint {
                        endpoint_md: att.metadata.clone(),
                        rtcert: att.rtcert.clone(),
                    },
                ));
            }
            att.advertised.get(&name).map(|entry| {
                (
                    *link,
                    RouteTarget::Capsule {
                        capsule_md: entry.capsule_md.clone(),
                        adcert: entry.adcert.clone(),
                        server_md: att.metadata.clone(),
                        rtcert: att.rtcert.clone(),
                    },
                )
            })
        })
    }

    /// `link` no longer serves `name`.
    fn unindex_local(&mut self, name: Name, link: LinkId) {
        if let Some(links) = self.local.get_mut(&name) {
            links.remove(&link);
            if links.is_empty() {
                self.local.remove(&name);
            }
        }
    }

    /// `link` no longer belongs to the peer `name`.
    fn forget_peer_link(&mut self, name: Name, link: LinkId) {
        if let Some(links) = self.peer_links.get_mut(&name) {
            links.remove(&link);
            if links.is_empty() {
                self.peer_links.remove(&name);
            }
        }
    }

    /// Counts a protocol violation on `link` and closes it at the limit.
    pub(crate) fn violation(&mut self, now: Timestamp, link: LinkId, reason: DropReason) {
        self.stats.dropped.count(reason);
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        match reason {
            DropReason::Malformed => state.malformed += 1,
            DropReason::Oversized => state.oversized += 1,
            DropReason::BadSource => state.bad_source += 1,
            _ => {}
        }
        self.strike(now, link);
    }

    /// Counts one violation on `link` and closes it at the limit. Returns
    /// true if the link is gone.
    pub(crate) fn strike(&mut self, now: Timestamp, link: LinkId) -> bool {
        let Some(state) = self.links.get_mut(&link) else {
            return true;
        };
        state.violations += 1;
        let count = state.violations;
        if count >= self.config.max_violations {
            tracing::debug!(%link, count, "closing link after repeated violations");
            self.close_link(now, link, CloseReason::Violations { count });
            return true;
        }
        false
    }

    /// Sends a control message on `link`, addressed to `dst`.
    pub(crate) fn send_control(&mut self, link: LinkId, dst: Name, msg: ControlMessage) {
        let seq = self.next_seq();
        match msg.to_pdu(dst, self.name, seq) {
            Ok(pdu) => self.send_on(link, pdu.to_bytes()),
            Err(e) => tracing::warn!(%link, error = %e, "control message over limits not sent"),
        }
    }
}
