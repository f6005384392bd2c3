//! Router links: hellos, the peering policy, and the gateway link.
//!
//! The transport authenticated the peer router's key before
//! [`RouterCore::link_up`]; each side then sends a [`RouterHello`] with its
//! metadata, optional trust-domain certificate and public addresses. The
//! hello must name the authenticated router, and when the policy lists
//! trusted domain keys its domain certificate must verify against one of
//! them. Until the hello passes, the link carries nothing but control
//! messages; once it passes, the peer's name points at the link in the FIB
//! and every resolution waiting for that router continues.
//!
//! A router configured with a gateway dials it at start and again
//! `redial_interval` after its link fails.

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};
use gdp_proto::control::{ControlMessage, RouterHello};
use gdp_proto::pdu::HEADER_LEN;
use gdp_proto::{PduHeader, PduType};

use super::attach::LinkKind;
use super::io::{CloseReason, LinkId, PeeringError};
use super::timers::Timer;
use super::{Action, DropReason, FibEntry, RouteKind, RouterCore};

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
        if !self.config.trusted_domains.is_empty() {
            let checked = match hello.domain_cert() {
                None => Err(PeeringError::NoDomainCert),
                Some(cert) => cert
                    .verify(metadata, &self.config.trusted_domains, now)
                    .map(|_| ())
                    .map_err(PeeringError::DomainCert),
            };
            if let Err(e) = checked {
                return self.refuse_peer(now, link, name, e);
            }
        }
        if let Some(LinkKind::Router { ready, .. }) = self.links.get_mut(&link).map(|l| &mut l.kind)
        {
            *ready = true;
        }
        tracing::debug!(%link, router = %name.short(), "router link ready");
        self.router_ready(now, name, link);
    }

    /// The router link `link` to `name` passed its hello.
    fn router_ready(&mut self, now: Timestamp, name: Name, link: LinkId) {
        let link = *self.routers.entry(name).or_insert(link);
        self.fib.insert(
            name,
            FibEntry {
                next_hop: link,
                kind: RouteKind::Neighbor,
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
