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
    /// Most capsules one attached server may advertise.
    pub max_capsules_per_server: usize,
    /// How far before `now` published records start to be valid, to allow
    /// for readers whose clocks are behind.
    pub clock_skew: Duration,
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
            link_queue_limit: 4096,
            max_violations: 16,
            max_attach_failures: 3,
            max_via_depth: 4,
            max_records_per_lookup: 16,
            max_negative_entries: 65_536,
            max_capsules_per_server: 65_536,
            clock_skew: Duration::from_secs(30),
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
        for (what, v) in [
            ("pending_per_name", self.pending_per_name),
            ("pending_total", self.pending_total),
            ("link_queue_limit", self.link_queue_limit),
            ("max_records_per_lookup", self.max_records_per_lookup),
            ("max_violations", self.max_violations as usize),
            ("max_attach_failures", self.max_attach_failures as usize),
            ("max_entitlements", self.max_entitlements),
            ("held_per_source", self.held_per_source),
            ("held_per_link", self.held_per_link),
            ("held_total", self.held_total),
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
