//! The topology file: hosts, their routers and capsule servers, the shared
//! network and the directory.
//!
//! ```toml
//! [network]
//! subnet = "10.77.0.0/24"   # a /24: .1 is the root namespace's, .2 the directory's,
//!                           # hosts get .10, .11, ... in file order unless they say
//! bridge = "namespace"      # where the bridge lives: "namespace" (its own) or "root"
//!
//! [directory]
//! placement = "namespace"   # where redis-server runs: "namespace" (its own) or "root"
//! port = 6379
//!
//! [[host]]
//! name = "r1"
//! router = { port = 7474, capsule_server = "standalone" }
//!
//! [[host]]
//! name = "r2"
//! router = { via = "r1" }   # no public address: reached through r1
//!
//! [[host]]
//! name = "client"           # no router: a client-only host
//! attach = "r2"             # whose router `gdp-deploy exec` points GDP_ROUTER at
//! address = "10.77.0.50"    # optional fixed address
//! ```
//!
//! [`Topology::parse`] checks everything it can without touching the
//! machine and reports the first problem as a [`TopologyError`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;

use serde::Deserialize;

use crate::network::{self, MAX_NETWORK_NAME_LEN, Network, RawLink, RawSegment};

/// The longest topology text accepted, in bytes.
pub const MAX_TOPOLOGY_LEN: usize = 1 << 20;
/// The last octet of the root namespace's address on the testbed network.
pub const ROOT_OCTET: u8 = 1;
/// The last octet of the directory's address.
pub const DIRECTORY_OCTET: u8 = 2;
/// The last octet of the first automatically addressed host.
pub const FIRST_HOST_OCTET: u8 = 10;
/// The most hosts a topology may have: one per address from
/// [`FIRST_HOST_OCTET`] to .254.
pub const MAX_HOSTS: usize = 254 - FIRST_HOST_OCTET as usize + 1;
/// The longest host name.
pub const MAX_HOST_NAME_LEN: usize = 32;
/// The router port used when a host does not give one.
pub const DEFAULT_ROUTER_PORT: u16 = 7474;
/// The directory port used when the topology does not give one.
pub const DEFAULT_DIRECTORY_PORT: u16 = 6379;
/// The subnet used when the topology does not give one.
pub const DEFAULT_SUBNET: &str = "10.77.0.0/24";

/// Why a topology cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The text is larger than [`MAX_TOPOLOGY_LEN`].
    #[error("the topology is larger than {MAX_TOPOLOGY_LEN} bytes")]
    TooLarge,
    /// The text is not TOML of the expected shape.
    #[error("{0}")]
    Parse(String),
    /// The subnet is not an IPv4 /24 network address.
    #[error("bad subnet {text:?}: {reason}")]
    BadSubnet {
        /// The subnet as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// There is no host with a router.
    #[error("the topology has no router: give at least one host a `router` table")]
    NoRouter,
    /// More hosts than addresses.
    #[error("{count} hosts is too many: at most {MAX_HOSTS} fit in a /24 (addresses .10 to .254)")]
    TooManyHosts {
        /// How many hosts the topology has.
        count: usize,
    },
    /// A host name that cannot name a namespace and a service.
    #[error(
        "bad host name {name:?}: use 1 to {MAX_HOST_NAME_LEN} lowercase letters, digits and \
         '-', starting with a letter"
    )]
    BadHostName {
        /// The name as written.
        name: String,
    },
    /// Two hosts with the same name.
    #[error("duplicate host name {name:?}")]
    DuplicateHost {
        /// The name.
        name: String,
    },
    /// A host address that is not usable.
    #[error("host {host:?}: address {address} {reason}")]
    BadAddress {
        /// The host.
        host: String,
        /// The address as written.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A port of 0.
    #[error("{what}: port 0 is not a port")]
    BadPort {
        /// Which port.
        what: String,
    },
    /// `via` names a host that does not exist.
    #[error("host {host:?}: unknown host {via:?} in `via`")]
    UnknownVia {
        /// The host with the `via`.
        host: String,
        /// The unknown name.
        via: String,
    },
    /// `via` names a host without a router, or the host itself.
    #[error("host {host:?}: `via = {via:?}` must name another host with a router")]
    ViaNotRouter {
        /// The host with the `via`.
        host: String,
        /// The gateway named.
        via: String,
    },
    /// Gateways that lead back to where they started.
    #[error("`via` gateways form a loop: {}", .hosts.join(" -> "))]
    ViaLoop {
        /// The hosts on the loop, the first repeated at the end.
        hosts: Vec<String>,
    },
    /// `attach` names a host that does not exist or has no router.
    #[error("host {host:?}: `attach = {attach:?}` must name a host with a router")]
    BadAttach {
        /// The client host.
        host: String,
        /// The name given.
        attach: String,
    },
    /// `attach` on a host that has its own router.
    #[error("host {host:?} has a router, so `attach` means nothing there")]
    AttachOnRouter {
        /// The host.
        host: String,
    },
    /// A link whose automatic name (`<a>-<b>`) is too long for an
    /// interface.
    #[error(
        "the link between {:?} and {:?} needs a `name` (at most {MAX_NETWORK_NAME_LEN} \
         characters): \"<a>-<b>\" is too long", .ends[0], .ends[1]
    )]
    LinkNeedsName {
        /// The two ends.
        ends: [String; 2],
    },
    /// A segment or link name that cannot name an interface.
    #[error(
        "bad segment or link name {name:?}: use 1 to {MAX_NETWORK_NAME_LEN} lowercase letters, \
         digits and '-', starting with a letter (and not eth0)"
    )]
    BadNetworkName {
        /// The name as written.
        name: String,
    },
    /// Two segments or links with one name.
    #[error("duplicate segment or link name {name:?}")]
    DuplicateNetwork {
        /// The name.
        name: String,
    },
    /// Two networks with one subnet.
    #[error("subnet {subnet} is used twice ({first} and {second})")]
    OverlappingSubnets {
        /// The subnet.
        subnet: String,
        /// The first network using it.
        first: String,
        /// The second.
        second: String,
    },
    /// No /24 left in 10.0.0.0/8 for a network without a subnet.
    #[error("no free subnet left for {network:?}: give it a `subnet`")]
    NoFreeSubnet {
        /// The network.
        network: String,
    },
    /// A segment without hosts.
    #[error("segment {network:?} has no hosts")]
    EmptyNetwork {
        /// The network.
        network: String,
    },
    /// A segment with more hosts than a /24 holds.
    #[error("segment {network:?} has more than 254 hosts")]
    TooManyMembers {
        /// The network.
        network: String,
    },
    /// A segment or link naming a host that does not exist.
    #[error("{network:?}: unknown host {host:?}")]
    UnknownMember {
        /// The network.
        network: String,
        /// The unknown name.
        host: String,
    },
    /// A host named twice by one segment or link.
    #[error("{network:?} names host {host:?} twice")]
    DuplicateMember {
        /// The network.
        network: String,
        /// The host.
        host: String,
    },
    /// A rate, delay or loss that cannot be used.
    #[error("{network:?}: bad {what} {text:?}: {reason}")]
    BadImpairment {
        /// The network.
        network: String,
        /// `rate`, `delay` or `loss`.
        what: &'static str,
        /// The value as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host on no segment or link, in a topology that has them.
    #[error("host {host:?} is on no segment or link: with segments or links, every host needs one")]
    OffNetwork {
        /// The host.
        host: String,
    },
    /// A router whose `via` gateway shares no segment or link with it.
    #[error("host {host:?}: its gateway {via:?} shares no segment or link with it")]
    ViaUnreachable {
        /// The host with the `via`.
        host: String,
        /// The gateway.
        via: String,
    },
    /// A client host that shares no segment or link with its router.
    #[error("host {host:?}: its router {attach:?} shares no segment or link with it")]
    AttachUnreachable {
        /// The client host.
        host: String,
        /// Its router's host.
        attach: String,
    },
    /// The same address given to two hosts, or to the testbed's own.
    #[error("address {address} is used twice ({first} and {second})")]
    DuplicateAddress {
        /// The address.
        address: Ipv4Addr,
        /// The first user.
        first: String,
        /// The second user.
        second: String,
    },
}

/// An IPv4 /24 network, such as `10.77.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    base: [u8; 3],
}

impl Subnet {
    /// The /24 whose first three octets are `base`.
    pub fn from_base(base: [u8; 3]) -> Subnet {
        Subnet { base }
    }

    /// The address with last octet `octet` in this network.
    pub fn host(&self, octet: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.base[0], self.base[1], self.base[2], octet)
    }

    /// The last octet of `addr` when it is in this network.
    pub fn octet_of(&self, addr: Ipv4Addr) -> Option<u8> {
        let o = addr.octets();
        (o[..3] == self.base).then_some(o[3])
    }

    /// The prefix length (always 24).
    pub fn prefix_len(&self) -> u8 {
        24
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/24", self.host(0))
    }
}

impl FromStr for Subnet {
    type Err = TopologyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| TopologyError::BadSubnet {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| bad("write it as a.b.c.0/24"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("not an IPv4 address before the '/'"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| bad("not a prefix length after the '/'"))?;
        if len != 24 {
            return Err(bad("only /24 networks are supported"));
        }
        let o = addr.octets();
        if o[3] != 0 {
            return Err(bad("host bits are set: the network address ends in .0"));
        }
        if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() || o[0] >= 240 {
            return Err(bad("not a unicast network"));
        }
        Ok(Subnet {
            base: [o[0], o[1], o[2]],
        })
    }
}

/// Where a shared piece of the testbed (the bridge, the directory) lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// A network namespace of its own (the default: nothing in the root
    /// namespace changes, so parallel testbeds never meet).
    #[default]
    Namespace,
    /// The root namespace, which then gets `.1` on the testbed network.
    Root,
}

/// How a host runs a capsule server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerMode {
    /// Inside the router process (a `[capsule_server]` table in its config).
    Embedded,
    /// A separate `gdp-capsule-server` process in the host's namespace.
    Standalone,
}

impl fmt::Display for ServerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerMode::Embedded => "embedded",
            ServerMode::Standalone => "standalone",
        })
    }
}

/// The directory (a `redis-server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorySpec {
    /// Where it runs.
    pub placement: Placement,
    /// Its TCP port.
    pub port: u16,
    /// Its address on the testbed network.
    pub address: Ipv4Addr,
}

impl DirectorySpec {
    /// The `redis-server` arguments of the directory, listening on `bind`:
    /// no snapshots, no append-only file (a testbed's directory is rebuilt
    /// by the routers' republishing), no protected mode (its clients are
    /// on the testbed network).
    pub fn redis_args(&self, bind: &str) -> Vec<String> {
        let port = self.port.to_string();
        [
            "--bind",
            bind,
            "--port",
            &port,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    /// The `--directory` spec routers are given.
    pub fn url(&self) -> String {
        format!("redis://{}:{}", self.address, self.port)
    }
}

/// A host's router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSpec {
    /// Its UDP port.
    pub port: u16,
    /// The host whose router is this router's gateway.
    pub via: Option<String>,
    /// The capsule server on this host, if any.
    pub capsule_server: Option<ServerMode>,
    /// The log filter passed to the router (and server).
    pub log: String,
}

/// What a host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A router (and maybe a capsule server).
    Router(RouterSpec),
    /// Nothing: a place to run clients, pointed at another host's router.
    Client {
        /// The host whose router clients here use.
        attach: String,
    },
}

/// One host: a network namespace with an address on the testbed network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name (also its namespace's suffix and its compose service's
    /// prefix).
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// What it runs.
    pub role: Role,
}

impl Host {
    /// The router, if this host runs one.
    pub fn router(&self) -> Option<&RouterSpec> {
        match &self.role {
            Role::Router(r) => Some(r),
            Role::Client { .. } => None,
        }
    }

    /// Where this host's router listens, if it runs one.
    pub fn router_address(&self) -> Option<SocketAddr> {
        self.router()
            .map(|r| SocketAddr::from((self.address, r.port)))
    }
}

/// A checked topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The testbed network.
    pub subnet: Subnet,
    /// Where the bridge lives.
    pub bridge: Placement,
    /// The directory.
    pub directory: DirectorySpec,
    /// The hosts, in file order.
    pub hosts: Vec<Host>,
    /// The segments, then the links, in file order; empty: the management
    /// network carries everything.
    pub networks: Vec<Network>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    directory: RawDirectory,
    #[serde(default)]
    host: Vec<RawHost>,
    #[serde(default)]
    segment: Vec<RawSegment>,
    #[serde(default)]
    link: Vec<RawLink>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    subnet: Option<String>,
    #[serde(default)]
    bridge: Placement,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    #[serde(default)]
    placement: Placement,
    port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    address: Option<String>,
    router: Option<RawRouter>,
    attach: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    port: Option<u16>,
    via: Option<String>,
    capsule_server: Option<ServerMode>,
    log: Option<String>,
}

fn valid_host_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_HOST_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Topology {
    /// Parses and checks topology text.
    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        if text.len() > MAX_TOPOLOGY_LEN {
            return Err(TopologyError::TooLarge);
        }
        let raw: RawFile = toml::from_str(text).map_err(|e| TopologyError::Parse(e.to_string()))?;
        Self::check(raw)
    }

    fn check(raw: RawFile) -> Result<Topology, TopologyError> {
        let subnet: Subnet = raw
            .network
            .subnet
            .as_deref()
            .unwrap_or(DEFAULT_SUBNET)
            .parse()?;
        let directory_port = raw.directory.port.unwrap_or(DEFAULT_DIRECTORY_PORT);
        if directory_port == 0 {
            return Err(TopologyError::BadPort {
                what: "directory".into(),
            });
        }
        if raw.host.len() > MAX_HOSTS {
            return Err(TopologyError::TooManyHosts {
                count: raw.host.len(),
            });
        }
        // Names first, so later errors can trust them.
        let mut seen: HashSet<String> = HashSet::new();
        for h in &raw.host {
            if !valid_host_name(&h.name) {
                return Err(TopologyError::BadHostName {
                    name: h.name.clone(),
                });
            }
            if !seen.insert(h.name.clone()) {
                return Err(TopologyError::DuplicateHost {
                    name: h.name.clone(),
                });
            }
        }
        let host_names: Vec<String> = raw.host.iter().map(|h| h.name.clone()).collect();
        let networks = network::check(raw.segment, raw.link, &host_names, subnet)?;
        let routers: HashSet<String> = raw
            .host
            .iter()
            .filter(|h| h.router.is_some())
            .map(|h| h.name.clone())
            .collect();
        let Some(first_router) = raw
            .host
            .iter()
            .find(|h| h.router.is_some())
            .map(|h| h.name.clone())
        else {
            return Err(TopologyError::NoRouter);
        };

        // Fixed addresses, then the rest in order.
        let mut used: HashMap<u8, String> = HashMap::new();
        used.insert(ROOT_OCTET, "the root namespace".into());
        used.insert(DIRECTORY_OCTET, "the directory".into());
        let mut fixed: Vec<Option<u8>> = Vec::with_capacity(raw.host.len());
        for h in &raw.host {
            let Some(text) = &h.address else {
                fixed.push(None);
                continue;
            };
            let bad = |reason: &str| TopologyError::BadAddress {
                host: h.name.clone(),
                address: text.clone(),
                reason: reason.to_owned(),
            };
            let addr: Ipv4Addr = text.parse().map_err(|_| bad("is not an IPv4 address"))?;
            let octet = subnet
                .octet_of(addr)
                .ok_or_else(|| bad(&format!("is outside the subnet {subnet}")))?;
            if octet == 0 || octet == 255 {
                return Err(bad("is the network or broadcast address"));
            }
            if let Some(first) = used.insert(octet, h.name.clone()) {
                return Err(TopologyError::DuplicateAddress {
                    address: addr,
                    first,
                    second: h.name.clone(),
                });
            }
            fixed.push(Some(octet));
        }
        let mut next = FIRST_HOST_OCTET;
        let mut hosts = Vec::with_capacity(raw.host.len());
        for (h, fixed) in raw.host.into_iter().zip(fixed) {
            let octet = match fixed {
                Some(o) => o,
                None => {
                    while used.contains_key(&next) {
                        next = next
                            .checked_add(1)
                            .ok_or(TopologyError::TooManyHosts { count: seen.len() })?;
                    }
                    if next == 255 {
                        return Err(TopologyError::TooManyHosts { count: seen.len() });
                    }
                    used.insert(next, h.name.clone());
                    next
                }
            };
            let role = match h.router {
                Some(r) => {
                    if h.attach.is_some() {
                        return Err(TopologyError::AttachOnRouter { host: h.name });
                    }
                    let port = r.port.unwrap_or(DEFAULT_ROUTER_PORT);
                    if port == 0 {
                        return Err(TopologyError::BadPort {
                            what: format!("router of host {:?}", h.name),
                        });
                    }
                    if let Some(via) = &r.via {
                        if !seen.contains(via) {
                            return Err(TopologyError::UnknownVia {
                                host: h.name,
                                via: via.clone(),
                            });
                        }
                        if !routers.contains(via) || *via == h.name {
                            return Err(TopologyError::ViaNotRouter {
                                host: h.name,
                                via: via.clone(),
                            });
                        }
                    }
                    Role::Router(RouterSpec {
                        port,
                        via: r.via,
                        capsule_server: r.capsule_server,
                        log: r.log.unwrap_or_else(|| "info".to_owned()),
                    })
                }
                None => {
                    let attach = h.attach.unwrap_or_else(|| first_router.clone());
                    if !routers.contains(&attach) {
                        return Err(TopologyError::BadAttach {
                            host: h.name,
                            attach,
                        });
                    }
                    Role::Client { attach }
                }
            };
            hosts.push(Host {
                name: h.name,
                address: subnet.host(octet),
                role,
            });
        }
        let topology = Topology {
            subnet,
            bridge: raw.network.bridge,
            directory: DirectorySpec {
                placement: raw.directory.placement,
                port: directory_port,
                address: match raw.directory.placement {
                    Placement::Namespace => subnet.host(DIRECTORY_OCTET),
                    Placement::Root => subnet.host(ROOT_OCTET),
                },
            },
            hosts,
            networks,
        };
        topology.check_reachable()?;
        topology.start_order()?;
        Ok(topology)
    }

    /// With data networks, every router shares one with its `via` gateway
    /// and every client host one with its router.
    fn check_reachable(&self) -> Result<(), TopologyError> {
        if self.networks.is_empty() {
            return Ok(());
        }
        for h in &self.hosts {
            match &h.role {
                Role::Router(r) => {
                    if let Some(via) = &r.via
                        && network::shared_address(&self.networks, &h.name, via).is_none()
                    {
                        return Err(TopologyError::ViaUnreachable {
                            host: h.name.clone(),
                            via: via.clone(),
                        });
                    }
                }
                Role::Client { attach } => {
                    if network::shared_address(&self.networks, &h.name, attach).is_none() {
                        return Err(TopologyError::AttachUnreachable {
                            host: h.name.clone(),
                            attach: attach.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Where clients and routers on host `from` reach the router on host
    /// `router`: without data networks, its address on the one flat
    /// network; with them, its address on the first network the two share
    /// (or its first data address when `from` is `router`).
    pub fn router_address_from(&self, from: &str, router: &str) -> Option<SocketAddr> {
        let r = self.host(router)?.router()?;
        if self.networks.is_empty() {
            return self.router_address(router);
        }
        let ip = if from == router {
            network::addresses_of(&self.networks, router)
                .first()
                .copied()
        } else {
            network::shared_address(&self.networks, from, router)
        }?;
        Some(SocketAddr::from((ip, r.port)))
    }

    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Where the router of the host called `name` listens, if that host
    /// exists and runs one.
    pub fn router_address(&self, name: &str) -> Option<SocketAddr> {
        self.host(name).and_then(Host::router_address)
    }

    /// Whether the root namespace joins the testbed network (with `.1`).
    pub fn root_joins(&self) -> bool {
        self.bridge == Placement::Root || self.directory.placement == Placement::Root
    }

    /// The router hosts in an order where every gateway comes before the
    /// routers that use it.
    pub fn start_order(&self) -> Result<Vec<&Host>, TopologyError> {
        let mut order: Vec<&Host> = Vec::new();
        let mut placed: HashSet<&str> = HashSet::new();
        for host in self.hosts.iter().filter(|h| h.router().is_some()) {
            // Walk up the gateway chain, then place it top down.
            let mut chain = vec![host];
            let mut current = host;
            while let Some(via) = current.router().and_then(|r| r.via.as_deref()) {
                if placed.contains(via) {
                    break;
                }
                let next = self.host(via).ok_or_else(|| TopologyError::UnknownVia {
                    host: current.name.clone(),
                    via: via.to_owned(),
                })?;
                if let Some(pos) = chain.iter().position(|h| h.name == next.name) {
                    let mut hosts: Vec<String> =
                        chain[pos..].iter().map(|h| h.name.clone()).collect();
                    hosts.push(next.name.clone());
                    return Err(TopologyError::ViaLoop { hosts });
                }
                chain.push(next);
                current = next;
            }
            for h in chain.into_iter().rev() {
                if placed.insert(h.name.as_str()) {
                    order.push(h);
                }
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(text: &str) -> TopologyError {
        Topology::parse(text).expect_err("invalid")
    }

    #[test]
    fn the_examples_parse() {
        for file in [
            "three-routers.toml",
            "gateway-chain.toml",
            "impaired-links.toml",
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(file);
            let text = std::fs::read_to_string(&path).expect("example exists");
            let t = Topology::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(t.hosts.len() >= 4, "{file}");
        }
    }

    #[test]
    fn defaults_and_addresses() {
        let t = Topology::parse(
            r#"
            [[host]]
            name = "a"
            router = {}
            [[host]]
            name = "b"
            address = "10.77.0.10"
            router = { via = "a", capsule_server = "embedded", port = 9000 }
            [[host]]
            name = "c"
            "#,
        )
        .expect("valid");
        assert_eq!(t.subnet.to_string(), "10.77.0.0/24");
        assert_eq!(t.directory.url(), "redis://10.77.0.2:6379");
        assert_eq!(t.bridge, Placement::Namespace);
        assert!(!t.root_joins());
        // b took .10, so a gets the next free one.
        assert_eq!(t.hosts[0].address, Ipv4Addr::new(10, 77, 0, 11));
        assert_eq!(t.hosts[1].address, Ipv4Addr::new(10, 77, 0, 10));
        assert_eq!(t.hosts[2].address, Ipv4Addr::new(10, 77, 0, 12));
        let b = t.hosts[1].router().expect("router");
        assert_eq!(b.port, 9000);
        assert_eq!(b.capsule_server, Some(ServerMode::Embedded));
        assert_eq!(t.hosts[2].role, Role::Client { attach: "a".into() });
        let root = Topology::parse(
            "[directory]\nplacement = \"root\"\nport = 7000\n[[host]]\nname = \"a\"\nrouter = {}\n",
        )
        .expect("valid");
        assert!(root.root_joins());
        assert_eq!(root.directory.url(), "redis://10.77.0.1:7000");
    }

    #[test]
    fn gateways_start_first() {
        let t = Topology::parse(
            r#"
            [[host]]
            name = "leaf"
            router = { via = "mid" }
            [[host]]
            name = "mid"
            router = { via = "top" }
            [[host]]
            name = "top"
            router = {}
            [[host]]
            name = "other"
            router = {}
            "#,
        )
        .expect("valid");
        let order: Vec<&str> = t
            .start_order()
            .expect("no loop")
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(order, ["top", "mid", "leaf", "other"]);
    }

    #[test]
    fn clear_errors() {
        let router = "[[host]]\nname = \"a\"\nrouter = {}\n";
        assert_eq!(
            err(&format!(
                "{router}[[host]]\nname = \"b\"\nrouter = {{ via = \"nope\" }}\n"
            )),
            TopologyError::UnknownVia {
                host: "b".into(),
                via: "nope".into()
            }
        );
        assert!(
            err(&format!(
                "{router}[[host]]\nname = \"b\"\nrouter = {{ via = \"nope\" }}\n"
            ))
            .to_string()
            .contains("unknown host \"nope\" in `via`")
        );
        assert_eq!(
            err(&format!("{router}{router}")),
            TopologyError::DuplicateHost { name: "a".into() }
        );
        assert!(matches!(
            err(&format!("[network]\nsubnet = \"10.0.0.0/16\"\n{router}")),
            TopologyError::BadSubnet { .. }
        ));
        assert!(matches!(
            err(&format!("[network]\nsubnet = \"10.0.0.5/24\"\n{router}")),
            TopologyError::BadSubnet { .. }
        ));
        assert!(matches!(
            err(&format!("[network]\nsubnet = \"banana\"\n{router}")),
            TopologyError::BadSubnet { .. }
        ));
        let many: String = (0..=MAX_HOSTS)
            .map(|i| format!("[[host]]\nname = \"h{i}\"\nrouter = {{}}\n"))
            .collect();
        assert_eq!(
            err(&many),
            TopologyError::TooManyHosts {
                count: MAX_HOSTS + 1
            }
        );
        let exactly: String = (0..MAX_HOSTS)
            .map(|i| format!("[[host]]\nname = \"h{i}\"\nrouter = {{}}\n"))
            .collect();
        Topology::parse(&exactly).expect("the most hosts fit");
        // Fixed addresses below .10 leave the automatic range alone.
        let low = format!(
            "{}[[host]]\nname = \"x\"\naddress = \"10.77.0.5\"\n",
            (0..MAX_HOSTS - 1)
                .map(|i| format!("[[host]]\nname = \"h{i}\"\nrouter = {{}}\n"))
                .collect::<String>()
        );
        let t = Topology::parse(&low)
            .map_err(|e| e.to_string())
            .expect("fits");
        assert_eq!(
            t.hosts.last().map(|h| h.address),
            Some(Ipv4Addr::new(10, 77, 0, 5))
        );
        assert_eq!(err(""), TopologyError::NoRouter);
        assert_eq!(err("[[host]]\nname = \"c\"\n"), TopologyError::NoRouter);
        assert!(matches!(
            err("[[host]]\nname = \"Bad_Name\"\nrouter = {}\n"),
            TopologyError::BadHostName { .. }
        ));
        assert!(matches!(
            err(&format!(
                "{router}[[host]]\nname = \"c\"\naddress = \"10.1.0.9\"\n"
            )),
            TopologyError::BadAddress { .. }
        ));
        assert!(matches!(
            err(&format!(
                "{router}[[host]]\nname = \"c\"\naddress = \"10.77.0.2\"\n"
            )),
            TopologyError::DuplicateAddress { .. }
        ));
        assert!(matches!(
            err(&format!(
                "{router}[[host]]\nname = \"c\"\nattach = \"zz\"\n"
            )),
            TopologyError::BadAttach { .. }
        ));
        assert!(matches!(
            err("[[host]]\nname = \"a\"\nrouter = { via = \"a\" }\n"),
            TopologyError::ViaNotRouter { .. }
        ));
        assert!(matches!(
            err("[[host]]\nname = \"a\"\nrouter = { port = 0 }\n"),
            TopologyError::BadPort { .. }
        ));
        assert!(matches!(
            err(&format!(
                "{router}[[host]]\nname = \"c\"\nrouter = {{ capsule_server = \"maybe\" }}\n"
            )),
            TopologyError::Parse(_)
        ));
        assert!(matches!(
            err(&format!("{router}unknown = 1\n")),
            TopologyError::Parse(_)
        ));
        let looped = "[[host]]\nname = \"a\"\nrouter = { via = \"b\" }\n\
                      [[host]]\nname = \"b\"\nrouter = { via = \"a\" }\n";
        assert_eq!(
            err(looped),
            TopologyError::ViaLoop {
                hosts: vec!["a".into(), "b".into(), "a".into()]
            }
        );
    }

    #[test]
    fn segments_and_links() {
        let hosts = "[[host]]\nname = \"a\"\nrouter = {}\n\
                     [[host]]\nname = \"b\"\nrouter = {}\n\
                     [[host]]\nname = \"c\"\nrouter = { via = \"b\" }\n\
                     [[host]]\nname = \"d\"\nattach = \"a\"\n";
        let good = format!(
            "{hosts}[[segment]]\nname = \"lan\"\nhosts = [\"a\", \"b\", \"d\"]\nloss = 0.5\n\
             [[link]]\nends = [\"b\", \"c\"]\nsubnet = \"10.78.0.0/24\"\ndelay = \"20ms\"\nrate = \"10mbit\"\n"
        );
        let t = Topology::parse(&good).expect("valid");
        assert_eq!(t.networks.len(), 2);
        // The link took 10.78.0.0/24, so the segment got the next one.
        assert_eq!(t.networks[0].subnet.to_string(), "10.78.1.0/24");
        assert_eq!(t.networks[1].name, "b-c");
        assert_eq!(
            t.networks[1].members[1].address,
            Ipv4Addr::new(10, 78, 0, 2)
        );
        assert_eq!(t.networks[0].impairment.loss, Some(50));
        assert_eq!(
            t.router_address_from("c", "b"),
            Some("10.78.0.1:7474".parse().expect("addr"))
        );
        assert_eq!(
            t.router_address_from("d", "a"),
            Some("10.78.1.1:7474".parse().expect("addr"))
        );
        let seg = |hosts: &str, extra: &str| {
            format!(
                "{hosts}[[segment]]\nname = \"lan\"\nhosts = [\"a\", \"b\", \"c\", \"d\"]\n{extra}"
            )
        };
        type Case = (String, fn(&TopologyError) -> bool);
        let cases: Vec<Case> = vec![
            (seg(hosts, "[[link]]\nends = [\"a\", \"zz\"]\n"), |e| {
                matches!(e, TopologyError::UnknownMember { .. })
            }),
            (seg(hosts, "[[link]]\nends = [\"a\", \"a\"]\n"), |e| {
                matches!(e, TopologyError::DuplicateMember { .. })
            }),
            (
                seg(hosts, "[[segment]]\nname = \"lan\"\nhosts = [\"a\"]\n"),
                |e| matches!(e, TopologyError::DuplicateNetwork { .. }),
            ),
            (seg(hosts, "subnet = \"10.77.0.0/24\"\n"), |e| {
                matches!(e, TopologyError::OverlappingSubnets { .. })
            }),
            (seg(hosts, "rate = \"fast\"\n"), |e| {
                matches!(e, TopologyError::BadImpairment { what: "rate", .. })
            }),
            (seg(hosts, "delay = \"later\"\n"), |e| {
                matches!(e, TopologyError::BadImpairment { what: "delay", .. })
            }),
            (seg(hosts, "loss = 101.0\n"), |e| {
                matches!(e, TopologyError::BadImpairment { what: "loss", .. })
            }),
            (seg(hosts, "bogus = 1\n"), |e| {
                matches!(e, TopologyError::Parse(_))
            }),
            (
                format!("{hosts}[[segment]]\nname = \"Lan\"\nhosts = [\"a\"]\n"),
                |e| matches!(e, TopologyError::BadNetworkName { .. }),
            ),
            (
                format!("{hosts}[[segment]]\nname = \"eth0\"\nhosts = [\"a\"]\n"),
                |e| matches!(e, TopologyError::BadNetworkName { .. }),
            ),
            (
                format!("{hosts}[[segment]]\nname = \"lan\"\nhosts = []\n"),
                |e| matches!(e, TopologyError::EmptyNetwork { .. }),
            ),
            (
                format!("{hosts}[[segment]]\nname = \"lan\"\nhosts = [\"a\", \"b\", \"c\"]\n"),
                |e| matches!(e, TopologyError::OffNetwork { .. }),
            ),
            (
                format!(
                    "{hosts}[[segment]]\nname = \"lan\"\nhosts = [\"a\", \"b\", \"d\"]\n[[link]]\nends = [\"a\", \"c\"]\n"
                ),
                |e| matches!(e, TopologyError::ViaUnreachable { .. }),
            ),
            (
                format!(
                    "{hosts}[[segment]]\nname = \"lan\"\nhosts = [\"a\", \"b\", \"c\"]\n[[link]]\nends = [\"b\", \"d\"]\n"
                ),
                |e| matches!(e, TopologyError::AttachUnreachable { .. }),
            ),
            (
                format!(
                    "[[host]]\nname = \"{0}\"\nrouter = {{}}\n[[host]]\nname = \"{1}\"\nrouter = {{}}\n[[link]]\nends = [\"{0}\", \"{1}\"]\n",
                    "a".repeat(8),
                    "b".repeat(8)
                ),
                |e| matches!(e, TopologyError::LinkNeedsName { .. }),
            ),
        ];
        for (text, expected) in cases {
            let e = err(&text);
            assert!(expected(&e), "{text}\n=> {e}");
            assert!(!e.to_string().is_empty());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = Topology::parse(&text);
        }

        #[test]
        fn toml_like_text_never_panics(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("[[host]]".to_owned()),
                    Just("[network]".to_owned()),
                    Just("[directory]".to_owned()),
                    "name = \"[a-c]{1,2}\"",
                    "router = \\{ via = \"[a-c]{1,2}\" \\}",
                    Just("router = {}".to_owned()),
                    "address = \"10\\.77\\.0\\.[0-9]{1,3}\"",
                    "subnet = \"[0-9]{1,3}\\.[0-9]\\.0\\.[0-9]/[0-9]{1,2}\"",
                    "attach = \"[a-c]{1,2}\"",
                    "port = [0-9]{1,6}",
                    Just("[[segment]]".to_owned()),
                    Just("[[link]]".to_owned()),
                    "hosts = \\[\"[a-c]{1,2}\", \"[a-c]{1,2}\"\\]",
                    "ends = \\[\"[a-c]{1,2}\", \"[a-c]{1,2}\"\\]",
                    "rate = \"[0-9]{1,4}[kmg]?bit\"",
                    "delay = \"[0-9]{1,3}(ms|us|s|x)\"",
                    "loss = -?[0-9]{1,3}\\.[0-9]",
                ],
                0..24,
            )
        ) {
            let _ = Topology::parse(&lines.join("\n"));
        }
    }
}
