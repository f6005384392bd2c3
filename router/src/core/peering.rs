//! Router links: hellos, the peering policy, and the gateway link.
//!
//! The transport authenticated the peer router's key before
//! [`RouterCore::link_up`]; each side then sends a [`RouterHello`] with its
//! metadata, optional trust-domain certificate and public addresses. The
//! hello must name the authenticated router; then the [`PeeringPolicy`]
//! decides whether the link is used and how far the peer is trusted:
//!
//! - a *trusted* peer (its domain certificate verifies against one of
//!   `trusted_domains`, it is named in `trusted_peers`, or it is this
//!   router's gateway) is trusted to have checked the sources of what it
//!   sends, as this router checks its own endpoints';
//! - any other peer must be *vouched for* by the directory: this router
//!   dialled it because a verified record named it, or a verified record of
//!   the peer's own name, which every router publishes, turns up when this
//!   router looks it up (the hello waits for that lookup). Its PDUs pass
//!   the source entitlement check of the `entitle` module.
//!
//! Until the policy accepts the link, it carries nothing but control
//! messages; once it does, the peer's name points at the link in the FIB
//! (as a [`RouteKind::Neighbor`] entry for a trusted peer, a
//! [`RouteKind::Vouched`] one otherwise, which is how the fast path tells
//! them apart) and every resolution waiting for that router continues.
//!
//! A router configured with a gateway dials it at start and again
//! `redial_interval` after its link fails.

use bytes::Bytes;
use gdp_certs::{Metadata, Name, Timestamp};
use gdp_proto::control::{ControlMessage, RouterHello};
use gdp_proto::pdu::HEADER_LEN;
use gdp_proto::{PduHeader, PduType};

use super::attach::LinkKind;
use super::entitle::Trust;
use super::io::{CloseReason, LinkId, PeeringError};
use super::timers::Timer;
use super::{Action, DropReason, FibEntry, RouteKind, RouterCore};

/// Which router links a router accepts, and how far it trusts them.
///
/// Whatever the policy, the transport has authenticated the peer's key and
/// its hello must name that key's router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PeeringPolicy {
    /// The default. Trusted peers (a domain certificate from one of
    /// `trusted_domains`, a name in `trusted_peers`, the gateway) are
    /// accepted and not checked per PDU. Any other router is accepted only
    /// if the directory vouches for it (this router dialled it after a
    /// verified lookup named it, or a verified record of its own name
    /// exists), and each PDU it sends must come from a source it is
    /// entitled to: one whose verified route record names it, as the
    /// source's router or on that router's gateway chain.
    #[default]
    Vouched,
    /// Only trusted peers are accepted; every other router link is refused.
    TrustedOnly,
    /// Every router is accepted and trusted: no vouching, no source check.
    /// Any host with a router key can then inject PDUs with any source.
    /// Only for closed test networks, as an explicit choice.
    InsecureOpen,
}

impl PeeringPolicy {
    /// The policy's name in configuration: `vouched`, `trusted-only` or
    /// `insecure-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeeringPolicy::Vouched => "vouched",
            PeeringPolicy::TrustedOnly => "trusted-only",
            PeeringPolicy::InsecureOpen => "insecure-open",
        }
    }
}

impl std::fmt::Display for PeeringPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PeeringPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vouched" => Ok(PeeringPolicy::Vouched),
            "trusted-only" => Ok(PeeringPolicy::TrustedOnly),
            "insecure-open" => Ok(PeeringPolicy::InsecureOpen),
            other => Err(format!(
                "unknown peering policy {other:?}: use vouched, trusted-only or insecure-open"
            )),
        }
    }
}

/// What the policy says about a peer whose hello passed.
enum Verdict {
    /// Use the link, with this trust.
    Accept(Trust),
    /// Ask the directory first.
    LookUp,
}

impl RouterCore {
    /// Sends this router's hello on `link` (to the router `peer`).
    pub(crate) fn send_hello(&mut self, link: LinkId, peer: Name) {
        match RouterHello::new(
            self.identity.metadata().clone(),
            self.config.domain_cert.clone(),
            self.config.addresses.clone(),
        ) {
            Ok(hello) => self.send_control(link, peer, ControlMessage::RouterHello(hello)),
            Err(e) => tracing::warn!(%link, error = %e, "hello over limits not sent"),
        }
    }

    /// A Control PDU on a router link.
    pub(crate) fn on_router_control(
        &mut self,
        now: Timestamp,
        link: LinkId,
        header: &PduHeader,
        bytes: Bytes,
    ) {
        debug_assert_eq!(header.ptype, PduType::Control);
        let hello = match ControlMessage::from_payload(PduType::Control, bytes.slice(HEADER_LEN..))
        {
            Ok(ControlMessage::RouterHello(hello)) => hello,
            Ok(_) => return self.stats.dropped.count(DropReason::Policy),
            Err(_) => return self.violation(now, link, DropReason::Malformed),
        };
        let Some(LinkKind::Router {
            name,
            metadata,
            ready,
        }) = self.links.get(&link).map(|l| &l.kind)
        else {
            return;
        };
        if *ready {
            // A repeated hello changes nothing.
            return;
        }
        let name = *name;
        if hello.name() != name {
            return self.refuse_peer(
                now,
                link,
                name,
                PeeringError::NameMismatch {
                    expected: name,
                    found: hello.name(),
                },
            );
        }
        if self.entitle.is_awaiting(link) {
            // A repeated hello while the directory is asked changes nothing.
            return;
        }
        match self.peering_verdict(now, name, metadata, &hello) {
            Ok(Verdict::Accept(trust)) => self.peer_accepted(now, link, name, trust),
            Ok(Verdict::LookUp) => self.await_vouching(link, name),
            Err(e) => self.refuse_peer(now, link, name, e),
        }
    }

    /// What the peering policy says about the router `name` (authenticated
    /// as `metadata`) whose hello is `hello`.
    fn peering_verdict(
        &self,
        now: Timestamp,
        name: Name,
        metadata: &Metadata,
        hello: &RouterHello,
    ) -> Result<Verdict, PeeringError> {
        let policy = self.config.peering;
        if policy == PeeringPolicy::InsecureOpen {
            return Ok(Verdict::Accept(Trust::Trusted));
        }
        if self.config.trusted_peers.contains(&name)
            || self.config.gateway.as_ref().is_some_and(|g| g.name == name)
        {
            return Ok(Verdict::Accept(Trust::Trusted));
        }
        let domain = if self.config.trusted_domains.is_empty() {
            Err(PeeringError::NotTrusted)
        } else {
            match hello.domain_cert() {
                None => Err(PeeringError::NoDomainCert),
                Some(cert) => cert
                    .verify(metadata, &self.config.trusted_domains, now)
                    .map(|_| ())
                    .map_err(PeeringError::DomainCert),
            }
        };
        match domain {
            Ok(()) => return Ok(Verdict::Accept(Trust::Trusted)),
            Err(e) if policy == PeeringPolicy::TrustedOnly => return Err(e),
            Err(e) => {
                tracing::debug!(router = %name.short(), reason = %e, "peer not trusted; vouching");
            }
        }
        if self.dialing.contains_key(&name) || self.is_vouched(now, name) {
            Ok(Verdict::Accept(Trust::Vouched))
        } else {
            Ok(Verdict::LookUp)
        }
    }

    /// The policy accepted the router link `link` to `name`, with `trust`.
    pub(crate) fn peer_accepted(&mut self, now: Timestamp, link: LinkId, name: Name, trust: Trust) {
        if let Some(LinkKind::Router { ready, .. }) = self.links.get_mut(&link).map(|l| &mut l.kind)
        {
            *ready = true;
        } else {
            return;
        }
        self.entitle.set_trust(link, trust);
        tracing::debug!(%link, router = %name.short(), ?trust, "router link ready");
        self.router_ready(now, name, link);
    }

    /// The router link `link` to `name` passed its hello.
    fn router_ready(&mut self, now: Timestamp, name: Name, link: LinkId) {
        let link = *self.routers.entry(name).or_insert(link);
        let kind = self
            .entitle
            .trust(link)
            .map_or(RouteKind::Vouched, Trust::route_kind);
        self.fib.insert(
            name,
            FibEntry {
                next_hop: link,
                kind,
                expires: Timestamp::MAX,
            },
        );
        self.dial_succeeded(now, name, link);
        self.route_available(now, name);
    }

    /// Refuses the router link `link` (claimed by `name`): count, fail any
    /// dial waiting for it, close.
    pub(crate) fn refuse_peer(
        &mut self,
        now: Timestamp,
        link: LinkId,
        name: Name,
        error: PeeringError,
    ) {
        tracing::debug!(%link, router = %name.short(), %error, "peer refused");
        self.stats.peers_refused += 1;
        self.stats.dropped.count(DropReason::Policy);
        self.close_link(now, link, CloseReason::Peering(error));
    }

    /// The router link `link` to `name` is gone.
    pub(crate) fn router_gone(&mut self, now: Timestamp, name: Name, link: LinkId, ready: bool) {
        self.entitle.forget_link(link);
        if self.routers.get(&name) == Some(&link) {
            self.routers.remove(&name);
            // Another ready link to the same router takes over.
            let other = self.links.iter().find_map(|(l, s)| match &s.kind {
                LinkKind::Router {
                    name: n,
                    ready: true,
                    ..
                } if *n == name => Some(*l),
                _ => None,
            });
            if let Some(other) = other {
                self.router_ready(now, name, other);
            }
        }
        if !ready {
            // The link never became usable: dials waiting for it failed.
            self.fail_dial(now, name);
        }
        if !self.routers.contains_key(&name) {
            self.gateway_lost(now, name);
        }
    }

    /// If `router` is the gateway, dial it again after `redial_interval`.
    pub(crate) fn gateway_lost(&mut self, now: Timestamp, router: Name) {
        if self.shutting_down
            || self
                .config
                .gateway
                .as_ref()
                .is_none_or(|g| g.name != router)
        {
            return;
        }
        let at = now.saturating_add(self.config.redial_interval);
        self.gateway_retry_at = at;
        self.timers.schedule(at, Timer::Redial);
    }

    /// Dials the configured gateway unless a link to it exists.
    pub(crate) fn redial_gateway(&mut self, now: Timestamp) {
        let Some(gateway) = self.config.gateway.clone() else {
            return;
        };
        if self.shutting_down
            || now < self.gateway_retry_at
            || self.routers.contains_key(&gateway.name)
        {
            return;
        }
        let connecting = self
            .links
            .values()
            .any(|s| matches!(&s.kind, LinkKind::Router { name, .. } if *name == gateway.name));
        if connecting || self.dialing.contains_key(&gateway.name) {
            return;
        }
        self.stats.dials += 1;
        self.actions.push_back(Action::Dial {
            router: gateway.name,
            metadata: None,
            addresses: gateway.addresses,
        });
        // Retried if the driver reports neither success nor failure.
        let at = now.saturating_add(self.config.dial_timeout);
        self.gateway_retry_at = at;
        self.timers.schedule(at, Timer::Redial);
    }
}
