//! Configuration of the forwarding core.

use std::net::SocketAddr;
use std::time::Duration;

use gdp_certs::cert::{DomainCert, MAX_ROUTE_ADDRESSES};
use gdp_certs::{Kind, Name, PublicKey};
use gdp_proto::control::MAX_HELLO_ADDRESSES;

use super::peering::PeeringPolicy;

/// A gateway router: the router that a router without a public address
/// dials at start, and names as `via` in its route records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The gateway's name; the link must prove it.
    pub name: Name,
    /// Where the gateway accepts links (reachable from this router, not
    /// necessarily from anywhere else).
    pub addresses: Vec<SocketAddr>,
}

/// A rate limit: `per_sec` tokens a second, at most `burst` saved up (a
/// token bucket, full at first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added each second.
    pub per_sec: u32,
    /// Most tokens held at once: what may be spent at once after a quiet
    /// period.
    pub burst: u32,
}

impl Rate {
    /// `per_sec` tokens a second, at most `burst` at once.
    pub const fn new(per_sec: u32, burst: u32) -> Self {
        Rate { per_sec, burst }
    }
}

/// Settings of a [`RouterCore`](super::RouterCore).
///
/// [`CoreConfig::default`] has no addresses; set [`CoreConfig::addresses`] or
/// [`CoreConfig::gateway`] (a router needs one to be reachable).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CoreConfig {
    /// Public addresses where this router accepts links; published in its
    /// route records and hellos. May be empty when `gateway` is set.
    pub addresses: Vec<SocketAddr>,
    /// The gateway of a router without a public address (see [`Gateway`]).
    pub gateway: Option<Gateway>,
    /// This router's trust-domain certificate, sent in its hellos.
    pub domain_cert: Option<DomainCert>,
    /// Trust-domain keys: a peer whose hello carries a domain certificate
    /// signed by one of these keys is a trusted peer (see
    /// [`PeeringPolicy`]). Empty by default.
    pub trusted_domains: Vec<PublicKey>,
    /// Routers trusted by name, as the operator configured them: trusted
    /// peers (see [`PeeringPolicy`]). Empty by default.
    pub trusted_peers: Vec<Name>,
    /// Which router links are accepted, and how far their PDUs are
    /// trusted. Default [`PeeringPolicy::Vouched`].
    pub peering: PeeringPolicy,
    /// Most source names whose entitlements (the routers verified records
    /// name for them) are remembered at once. Default 65,536.
    pub max_entitlements: usize,
    /// Most PDUs from directory-vouched peers held for one source while
    /// its entitlement is looked up. Default 64, as `pending_per_name`.
    pub held_per_source: usize,
    /// Most PDUs from one directory-vouched peer's link held while their
    /// sources' entitlements are looked up, so that one peer cannot take
    /// the whole hold. Default 256.
    pub held_per_link: usize,
    /// Most PDUs from directory-vouched peers held in all while their
    /// sources' entitlements are looked up. Default 1,024.
    pub held_total: usize,
    /// Lifetime of the route records this router publishes. Records are
    /// republished at two thirds of their lifetime.
    pub record_ttl: Duration,
    /// Longest time a route learned from the directory stays in the FIB
    /// (never past the record's own expiry).
    pub cache_ttl: Duration,
    /// How long a name for which no valid record was found is answered with
    /// a NAK without asking the directory again.
    pub negative_ttl: Duration,
    /// How long a PDU waits for a route before it is answered with a NAK.
    pub pending_timeout: Duration,
    /// How long a resolution (lookups, dials, gateways) may take in all.
    pub resolve_timeout: Duration,
    /// How long a dial may take before the core gives up on it.
    pub dial_timeout: Duration,
    /// How long to wait before dialing the gateway again after its link
    /// failed.
    pub redial_interval: Duration,
    /// Most PDUs held for one unresolved name.
    pub pending_per_name: usize,
    /// Most PDUs held for all unresolved names together.
    pub pending_total: usize,
    /// Most bytes held in the pending queue (each PDU counted by its length
    /// plus the queue's own overhead per PDU).
    pub pending_bytes: usize,
    /// Most PDUs held for unresolved names from one source name.
    pub pending_per_source: usize,
    /// Most PDUs held for unresolved names that arrived on one link.
    pub pending_per_link: usize,
    /// Most PDUs queued for one link between two `poll_transmit` drains.
    pub link_queue_limit: usize,
    /// Protocol violations (malformed, oversized, spoofed PDUs) after which a
    /// link is closed.
    pub max_violations: u32,
    /// Failed attach proofs after which an endpoint link is closed.
    pub max_attach_failures: u32,
    /// Most gateway (`via`) levels followed to resolve one name.
    pub max_via_depth: u8,
    /// Most records of one lookup that are verified; the rest are ignored.
    pub max_records_per_lookup: usize,
    /// Most names remembered as unreachable at once.
    pub max_negative_entries: usize,
    /// How long a name whose lookup failed on a directory error is answered
    /// with a NAK without asking the directory again (shorter than
    /// `negative_ttl`: the directory may be back soon).
    pub negative_error_ttl: Duration,
    /// Directory lookups one source name may start (FIB misses to names not
    /// being resolved already).
    pub lookup_rate_per_source: Rate,
    /// Directory lookups PDUs arriving on one link may start.
    pub lookup_rate_per_link: Rate,
    /// Most resolutions started by one source name in flight at once.
    pub max_lookups_per_source: usize,
    /// Most resolutions started by PDUs from one link in flight at once.
    pub max_lookups_per_link: usize,
    /// Most sources (and, separately, links) with a lookup budget of their
    /// own; beyond it, new ones share one budget until idle ones are
    /// forgotten.
    pub max_lookup_budgets: usize,
    /// Most capsules one attached server may advertise.
    pub max_capsules_per_server: usize,
    /// Most AdCert signatures verified for one Advertise PDU; further
    /// entries are refused unverified.
    pub max_verifications_per_advertise: usize,
    /// AdCert signatures verified for one server link. The burst covers a
    /// server advertising `max_capsules_per_server` capsules at attach;
    /// entries beyond the budget are refused unverified. Identical
    /// re-advertisements cost nothing.
    pub advertise_verifications: Rate,
    /// Longest an attached endpoint's acceptance waits for the directory
    /// write of its route record. Until the record is there, other routers
    /// can neither route replies to the endpoint nor check that this router
    /// may send for it (a vouched peer's PDUs from an unknown source are
    /// dropped), so the endpoint is told it is attached only once the write
    /// finished, failed, or this long passed. Zero: at once.
    pub publish_wait: Duration,
    /// How long a link may stay unproven (an endpoint that has not attached,
    /// a router whose hello has not passed) before it is closed.
    pub attach_timeout: Duration,
    /// Most unproven links at once; a new link beyond it is closed at once
    /// (links this router dialed are not refused).
    pub max_unproven_links: usize,
    /// Most links one proven name may hold: an endpoint attached, or a
    /// router linked, on more links than this has its newest refused.
    pub max_links_per_peer: usize,
    /// PDUs other than the attach proof tolerated on a link before it
    /// attaches; each one beyond is a protocol violation.
    pub max_unattached_pdus: u32,
    /// How far before `now` published records start to be valid, to allow
    /// for readers whose clocks are behind.
    pub clock_skew: Duration,
    /// Most delivery trees (capsules with subscribers) at once; a Subscribe
    /// that would start one more is refused. Default 65,536.
    pub max_trees: usize,
    /// Most member links of one delivery tree. Default 4,096.
    pub max_tree_members: usize,
    /// Most tree memberships one link may hold. Default 1,024.
    pub max_tree_joins_per_link: usize,
    /// Subscribes (joins and refreshes) accepted from one link. Default
    /// 256 a second, 2,048 at once: a downstream router refreshing
    /// `max_tree_joins_per_link` trees every `tree_refresh` stays well
    /// within it.
    pub subscribe_rate_per_link: Rate,
    /// How long a membership lasts without a refresh. Default 30 s.
    pub tree_lease: Duration,
    /// How often a tree with members refreshes its join upstream; shorter
    /// than `tree_lease`. Default 10 s.
    pub tree_refresh: Duration,
    /// Seed for the core's random numbers (attach nonces, hash keys). `None`
    /// draws one from the operating system; the simulation sets it so runs
    /// repeat exactly.
    pub rng_seed: Option<u64>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            addresses: Vec::new(),
            gateway: None,
            domain_cert: None,
            trusted_domains: Vec::new(),
            trusted_peers: Vec::new(),
            peering: PeeringPolicy::default(),
            max_entitlements: 65_536,
            held_per_source: 64,
            held_per_link: 256,
            held_total: 1024,
            record_ttl: Duration::from_secs(300),
            cache_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(1),
            pending_timeout: Duration::from_secs(2),
            resolve_timeout: Duration::from_secs(2),
            dial_timeout: Duration::from_secs(5),
            redial_interval: Duration::from_secs(5),
            pending_per_name: 64,
            pending_total: 4096,
            pending_bytes: 64 * 1024 * 1024,
            pending_per_source: 256,
            pending_per_link: 1024,
            link_queue_limit: 4096,
            max_violations: 16,
            max_attach_failures: 3,
            max_via_depth: 4,
            max_records_per_lookup: 16,
            max_negative_entries: 65_536,
            negative_error_ttl: Duration::from_millis(250),
            lookup_rate_per_source: Rate::new(100, 1_000),
            lookup_rate_per_link: Rate::new(400, 2_000),
            max_lookups_per_source: 64,
            max_lookups_per_link: 256,
            max_lookup_budgets: 16_384,
            max_capsules_per_server: 65_536,
            max_verifications_per_advertise: 256,
            advertise_verifications: Rate::new(1_024, 65_536),
            attach_timeout: Duration::from_secs(5),
            publish_wait: Duration::from_secs(2),
            max_unproven_links: 1_024,
            max_links_per_peer: 4,
            max_unattached_pdus: 4,
            clock_skew: Duration::from_secs(30),
            max_trees: 65_536,
            max_tree_members: 4_096,
            max_tree_joins_per_link: 1_024,
            subscribe_rate_per_link: Rate::new(256, 2_048),
            tree_lease: Duration::from_secs(30),
            tree_refresh: Duration::from_secs(10),
            rng_seed: None,
        }
    }
}

/// Why a [`CoreConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The identity is not a router's.
    #[error("a router core needs a router identity, got a {0}")]
    NotARouter(Kind),
    /// Neither addresses nor a gateway: nobody could reach this router.
    #[error("a router needs public addresses or a gateway")]
    NoAddress,
    /// More addresses than a route record or hello can carry.
    #[error("at most {max} addresses, got {count}")]
    TooManyAddresses {
        /// Addresses given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The gateway has no address to dial.
    #[error("the gateway needs at least one address")]
    GatewayWithoutAddress,
    /// The gateway is this router.
    #[error("a router cannot be its own gateway")]
    GatewayIsSelf,
    /// The domain certificate admits another router.
    #[error("the domain certificate admits {found}, not this router")]
    DomainCertForAnotherRouter {
        /// The router the certificate names.
        found: Name,
    },
    /// A limit that must be at least one is zero.
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    /// Trees would let their upstream leases run out between refreshes.
    #[error("tree_refresh ({refresh:?}) must be shorter than tree_lease ({lease:?})")]
    TreeRefreshTooLong {
        /// The refresh interval.
        refresh: Duration,
        /// The lease.
        lease: Duration,
    },
}

impl CoreConfig {
    /// Checks the configuration for the router named `router` of kind `kind`.
    pub fn validate(&self, router: Name, kind: Kind) -> Result<(), ConfigError> {
        if kind != Kind::Router {
            return Err(ConfigError::NotARouter(kind));
        }
        let max = MAX_ROUTE_ADDRESSES.min(MAX_HELLO_ADDRESSES);
        if self.addresses.len() > max {
            return Err(ConfigError::TooManyAddresses {
                count: self.addresses.len(),
                max,
            });
        }
        match &self.gateway {
            None if self.addresses.is_empty() => return Err(ConfigError::NoAddress),
            Some(g) if g.addresses.is_empty() => return Err(ConfigError::GatewayWithoutAddress),
            Some(g) if g.name == router => return Err(ConfigError::GatewayIsSelf),
            _ => {}
        }
        if let Some(dc) = &self.domain_cert
            && dc.router() != router
        {
            return Err(ConfigError::DomainCertForAnotherRouter { found: dc.router() });
        }
        for (what, rate) in [
            ("lookup_rate_per_source", self.lookup_rate_per_source),
            ("lookup_rate_per_link", self.lookup_rate_per_link),
            ("subscribe_rate_per_link", self.subscribe_rate_per_link),
        ] {
            if rate.burst == 0 {
                return Err(ConfigError::ZeroLimit(what));
            }
        }
        if self.attach_timeout.is_zero() {
            return Err(ConfigError::ZeroLimit("attach_timeout"));
        }
        if self.tree_refresh.is_zero() {
            return Err(ConfigError::ZeroLimit("tree_refresh"));
        }
        if self.tree_refresh >= self.tree_lease {
            return Err(ConfigError::TreeRefreshTooLong {
                refresh: self.tree_refresh,
                lease: self.tree_lease,
            });
        }
        for (what, v) in [
            ("pending_per_name", self.pending_per_name),
            ("pending_total", self.pending_total),
            ("pending_bytes", self.pending_bytes),
            ("pending_per_source", self.pending_per_source),
            ("pending_per_link", self.pending_per_link),
            ("max_lookups_per_source", self.max_lookups_per_source),
            ("max_lookups_per_link", self.max_lookups_per_link),
            ("max_lookup_budgets", self.max_lookup_budgets),
            ("max_unproven_links", self.max_unproven_links),
            ("max_links_per_peer", self.max_links_per_peer),
            ("link_queue_limit", self.link_queue_limit),
            ("max_records_per_lookup", self.max_records_per_lookup),
            ("max_violations", self.max_violations as usize),
            ("max_attach_failures", self.max_attach_failures as usize),
            ("max_entitlements", self.max_entitlements),
            ("held_per_source", self.held_per_source),
            ("held_per_link", self.held_per_link),
            ("held_total", self.held_total),
            ("max_trees", self.max_trees),
            ("max_tree_members", self.max_tree_members),
            ("max_tree_joins_per_link", self.max_tree_joins_per_link),
        ] {
            if v == 0 {
                return Err(ConfigError::ZeroLimit(what));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_certs::cert::Validity;
    use gdp_certs::{SecretKey, Timestamp};

    fn router() -> Name {
        Name::from_bytes([1; 32])
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn a_router_needs_an_address_or_a_gateway() {
        let mut c = CoreConfig::default();
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::NoAddress)
        );
        c.gateway = Some(Gateway {
            name: Name::from_bytes([2; 32]),
            addresses: vec![],
        });
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::GatewayWithoutAddress)
        );
        c.gateway = Some(Gateway {
            name: router(),
            addresses: vec![addr(1)],
        });
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::GatewayIsSelf)
        );
        c.gateway = None;
        c.addresses = vec![addr(1)];
        assert_eq!(c.validate(router(), Kind::Router), Ok(()));
        assert_eq!(
            c.validate(router(), Kind::Client),
            Err(ConfigError::NotARouter(Kind::Client))
        );
    }

    #[test]
    fn limits_are_checked() {
        let mut c = CoreConfig {
            addresses: (0..9).map(addr).collect(),
            ..CoreConfig::default()
        };
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::TooManyAddresses { count: 9, max: 8 })
        );
        c.addresses.truncate(1);
        c.pending_total = 0;
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::ZeroLimit("pending_total"))
        );
        c.pending_total = 1;
        c.max_links_per_peer = 0;
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::ZeroLimit("max_links_per_peer"))
        );
        c.max_links_per_peer = 1;
        c.lookup_rate_per_source = Rate::new(10, 0);
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::ZeroLimit("lookup_rate_per_source"))
        );
        c.lookup_rate_per_source = Rate::new(0, 1);
        c.attach_timeout = Duration::ZERO;
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::ZeroLimit("attach_timeout"))
        );
        c.attach_timeout = Duration::from_secs(1);
        c.max_tree_members = 0;
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::ZeroLimit("max_tree_members"))
        );
        c.max_tree_members = 1;
        c.tree_refresh = c.tree_lease;
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::TreeRefreshTooLong {
                refresh: c.tree_lease,
                lease: c.tree_lease,
            })
        );
        c.tree_refresh = Duration::from_secs(1);
        assert_eq!(c.validate(router(), Kind::Router), Ok(()));
    }

    #[test]
    fn the_domain_certificate_must_name_this_router() {
        let domain = SecretKey::from_seed(&[3; 32]);
        let other = Name::from_bytes([4; 32]);
        let c = CoreConfig {
            addresses: vec![addr(1)],
            domain_cert: Some(DomainCert::issue(
                &domain,
                other,
                Validity::new(Timestamp::ZERO, Timestamp::MAX),
            )),
            ..CoreConfig::default()
        };
        assert_eq!(
            c.validate(router(), Kind::Router),
            Err(ConfigError::DomainCertForAnotherRouter { found: other })
        );
    }
}
