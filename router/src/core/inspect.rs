//! What an operator can see of the core: FIB pages, attached endpoints,
//! advertised capsules, names being resolved, trust and readiness. Every
//! view is a plain copy taken at one moment, for the admin API
//! (`crate::admin`) and for tests; none of it changes the core.

use std::collections::BinaryHeap;

use gdp_certs::{Name, PublicKey, Timestamp};

use super::attach::LinkKind;
use super::entitle::Trust;
use super::io::LinkId;
use super::resolve::Phase;
use super::{FibEntry, PeeringPolicy, RouterCore};

/// The most FIB entries one page holds.
pub const MAX_FIB_PAGE: usize = 1000;

/// One page of the FIB, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FibPage {
    /// Entries whose names follow the page's `after`, at most the limit.
    pub entries: Vec<(Name, FibEntry)>,
    /// The name to ask the next page after; `None` on the last page.
    pub next: Option<Name>,
    /// Entries in the whole FIB now.
    pub total: usize,
}

/// An attached endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointView {
    /// The name it proved.
    pub name: Name,
    /// The kind in its metadata (client, server).
    pub kind: gdp_certs::Kind,
    /// The link it is attached on.
    pub link: LinkId,
    /// Capsules it advertised.
    pub capsules: usize,
    /// When its RtCert (the delegation to this router) expires.
    pub not_after: Timestamp,
    /// Whether it was told it is attached (see `CoreConfig::publish_wait`).
    pub accepted: bool,
}

/// A capsule an attached server advertised.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CapsuleView {
    /// The capsule.
    pub capsule: Name,
    /// The server that advertised it.
    pub server: Name,
    /// The server's link.
    pub link: LinkId,
    /// When the owner's AdCert for this server expires.
    pub not_after: Timestamp,
}

/// A name being resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LookupView {
    /// The name.
    pub name: Name,
    /// What it waits for: `lookup` (the directory), `dial` (a link to the
    /// named router), `via` (a route to the named gateway).
    pub phase: &'static str,
    /// The router or gateway of a `dial` or `via` phase.
    pub waiting_for: Option<Name>,
    /// When the resolution gives up.
    pub deadline: Timestamp,
    /// PDUs waiting for it.
    pub pending_pdus: usize,
}

/// How far the router trusts whom.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustView {
    /// The peering policy.
    pub peering: PeeringPolicy,
    /// Trust-domain keys whose routers are trusted peers.
    pub trusted_domains: Vec<PublicKey>,
    /// Routers trusted by name.
    pub trusted_peers: Vec<Name>,
    /// This router's own domain certificate: its domain key and expiry.
    pub domain: Option<(PublicKey, Timestamp)>,
    /// Ready router links: link, peer, and `true` if trusted (its PDUs'
    /// sources are not checked), `false` if vouched for by the directory.
    pub router_links: Vec<(LinkId, Name, bool)>,
}

impl RouterCore {
    /// The FIB entries whose names follow `after` (from the first if
    /// `None`), at most `limit` (capped at [`MAX_FIB_PAGE`]), in name order.
    /// Costs one pass over the FIB.
    pub fn fib_page(&self, after: Option<Name>, limit: usize) -> FibPage {
        let limit = limit.clamp(1, MAX_FIB_PAGE);
        // The `limit + 1` smallest names after `after`: one more than the
        // page tells whether another page follows.
        let mut heap: BinaryHeap<Name> = BinaryHeap::with_capacity(limit + 2);
        let mut total = 0;
        self.fib.for_each(|name, _| {
            total += 1;
            if after.is_some_and(|a| *name <= a) {
                return;
            }
            heap.push(*name);
            if heap.len() > limit + 1 {
                heap.pop();
            }
        });
        // Only the core writes the FIB, so every name is still there.
        let mut entries: Vec<(Name, FibEntry)> = heap
            .into_sorted_vec()
            .into_iter()
            .filter_map(|name| self.fib.get(&name).map(|e| (name, e)))
            .collect();
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|(n, _)| *n)
        } else {
            None
        };
        FibPage {
            entries,
            next,
            total,
        }
    }

    /// Every attached endpoint, by link.
    pub fn endpoints(&self) -> Vec<EndpointView> {
        self.links
            .iter()
            .filter_map(|(link, state)| match &state.kind {
                LinkKind::Endpoint(att) => Some(EndpointView {
                    name: att.name,
                    kind: att.metadata.kind(),
                    link: *link,
                    capsules: att.advertised.len(),
                    not_after: att.rtcert.validity().not_after,
                    accepted: !self
                        .awaiting_publish
                        .get(&att.name)
                        .is_some_and(|w| w.contains(link)),
                }),
                _ => None,
            })
            .collect()
    }

    /// Every capsule advertised by an attached server, by link.
    pub fn capsules(&self) -> Vec<CapsuleView> {
        let mut out = Vec::new();
        for (link, state) in &self.links {
            if let LinkKind::Endpoint(att) = &state.kind {
                for (capsule, entry) in &att.advertised {
                    out.push(CapsuleView {
                        capsule: *capsule,
                        server: att.name,
                        link: *link,
                        not_after: entry.adcert.validity().not_after,
                    });
                }
            }
        }
        out
    }

    /// Every name being resolved, by name.
    pub fn lookups(&self) -> Vec<LookupView> {
        self.resolving
            .iter()
            .map(|(name, r)| {
                let (phase, waiting_for) = match r.phase() {
                    Phase::Lookup => ("lookup", None),
                    Phase::Dial(router) => ("dial", Some(*router)),
                    Phase::Via(gateway) => ("via", Some(*gateway)),
                };
                LookupView {
                    name: *name,
                    phase,
                    waiting_for,
                    deadline: r.deadline(),
                    pending_pdus: self.pending.len_for(name),
                }
            })
            .collect()
    }

    /// The trust settings and each ready router link's trust.
    pub fn trust(&self) -> TrustView {
        let router_links = self
            .links
            .iter()
            .filter_map(|(link, state)| match &state.kind {
                LinkKind::Router {
                    name, ready: true, ..
                } => Some((
                    *link,
                    *name,
                    self.entitle.trust(*link) == Some(Trust::Trusted),
                )),
                _ => None,
            })
            .collect();
        TrustView {
            peering: self.config.peering,
            trusted_domains: self.config.trusted_domains.clone(),
            trusted_peers: self.config.trusted_peers.clone(),
            domain: self
                .config
                .domain_cert
                .as_ref()
                .map(|dc| (*dc.domain(), dc.validity().not_after)),
            router_links,
        }
    }

    /// Whether the router serves as it should, and if not, why: its own
    /// route record must have been written to the directory (so others can
    /// find it), and a router behind a gateway must be linked to it.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.self_published {
            return Err("this router's own route record is not in the directory yet".into());
        }
        if let Some(gateway) = &self.config.gateway
            && !self.routers.contains_key(&gateway.name)
        {
            return Err(format!("no link to the gateway {}", gateway.name.short()));
        }
        Ok(())
    }
}
