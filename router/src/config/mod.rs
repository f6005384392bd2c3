//! The `gdp-router` configuration: a TOML file, command-line overrides,
//! and embedded defaults.
//!
//! Every setting has a default, so `gdp-router` with no file and no flag
//! starts: a key file `gdp-router.key` is generated in the data directory
//! (the working directory unless `--data-dir` says otherwise) on first
//! start, the directory is the in-process `memory` backend, and the router
//! listens on UDP port [`DEFAULT_PORT`] of every interface. A flag wins
//! over its environment variable (`GDP_ROUTER_LISTEN` for `--listen`, see
//! [`Cli`] with the `daemon` feature), which wins over
//! the file, which wins over the default. `gdp-router --check-config`
//! prints the settings in force in this same format (see
//! [`RouterSettings::to_masked_toml`]).
//!
//! ```toml
//! # gdp-router.toml: every key is optional.
//! data_dir = "/var/lib/gdp-router"      # key file and embedded services live here
//! key_file = "/etc/gdp/router.key"      # default: <data_dir>/gdp-router.key
//! label = "edge-1"                      # put in the metadata of a new key
//! listen = "0.0.0.0:7474"
//! advertise = ["203.0.113.7:7474"]      # published in route records
//! directory = "redis://10.0.0.5:6379"   # or "memory", "redis-cluster://h1:p1,h2:p2"
//! directory_timeout = "300ms"
//! admin = "127.0.0.1:7475"              # the admin API (metrics, health, JSON); "off" disables
//! log = "info"                          # a tracing filter
//!
//! [via]                                 # a router without a public address
//! name = "<gateway router name>"
//! addresses = ["10.0.0.1:7474"]
//!
//! [trust]
//! peering = "vouched"                   # or "trusted-only", "insecure-open"
//! domain_cert = "/etc/gdp/domain.cert"  # this router's membership (binary DomainCert)
//! trusted_domains = ["<trust-domain public key>"]
//! trusted_peers = ["<router name>"]     # routers trusted by name
//!
//! [socket]
//! send_buffer = 4194304
//! recv_buffer = 4194304
//! compact_headers = true   # offer gdp/2: compact frames on link streams
//!
//! [timing]
//! record_ttl = "5m"        # lifetime of published records (republished at 2/3)
//! cache_ttl = "60s"        # longest a looked-up route is cached
//! negative_ttl = "1s"      # how long "no route" is remembered
//! pending_timeout = "2s"   # how long a PDU waits for a lookup
//! resolve_timeout = "2s"
//! dial_timeout = "5s"
//! redial_interval = "5s"   # gateway redials
//! keep_alive = "5s"        # QUIC keep-alive on idle links
//! idle_timeout = "30s"     # a silent link is down after this
//! audit_interval = "10s"   # how often the directory is checked for lost records
//! stall_timeout = "2s"     # a link whose full queue takes nothing this long is closed
//! drop_penalty_max = "250ms" # longest an endpoint link's reads wait after batches mostly dropped ("0s": off)
//! attach_timeout = "5s"    # a new link must prove a name (attach, hello) within this
//! tree_lease = "30s"      # a delivery-tree membership lasts this long unrefreshed
//! tree_refresh = "10s"    # how often a tree refreshes its join upstream (< tree_lease)
//!
//! [limits]
//! max_links = 10000
//! max_links_per_address = 256  # inbound links from one source IP
//! handshakes_per_address = 128  # inbound handshakes one source IP starts a second (0: no limit)
//! handshake_burst_per_address = 16  # ... and at once; the rest wait their turn, up to 1 s
//! max_dials = 64           # dials to other routers running at once
//! unproven_pdu_limit = 65536  # largest PDU read from an endpoint before it attaches
//! max_violations = 16      # malformed, oversized or spoofed PDUs before a link is cut
//! pending_per_name = 64
//! pending_total = 4096
//! max_entitlements = 65536 # source names whose entitling records are remembered
//! held_per_source = 64     # PDUs from vouched peers held while their source is checked
//! held_per_link = 256
//! held_total = 1024
//! max_unproven_links = 1024  # links at once that have not proved a name
//! max_links_per_peer = 4   # links of one endpoint or router name
//! pending_bytes = 67108864 # bytes of PDUs waiting for routes, in all
//! pending_per_source = 256 # PDUs of one source waiting for routes
//! max_lookups_per_source = 64  # resolutions in flight for one source
//! max_trees = 65536       # delivery trees (capsules with subscribers) at once
//! max_tree_members = 4096 # member links of one tree
//! max_tree_joins_per_link = 1024  # tree memberships of one link
//! subscribe_rate = 256     # Subscribes (joins and refreshes) from one link per second
//! subscribe_burst = 2048   # ... and at once after a quiet period
//!
//! [capsule_server]         # handed as it is to the embedded capsule server
//! ```
//!
//! Durations are written as a number with a unit (`ms`, `s`, `m`, `h`), or
//! as a bare number of seconds.

#[cfg(feature = "daemon")]
mod cli;
mod file;
mod show;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use gdp_certs::{Name, PublicKey};

#[cfg(feature = "daemon")]
pub use cli::{Cli, ENV_PREFIX, ViaArg};
pub use file::{
    ConfigDuration, FileConfig, LimitsConfig, SocketConfig, TimingConfig, TrustConfig, ViaConfig,
};

use crate::core::PeeringPolicy;
use crate::directory::{DirectoryConfig, DirectoryOptions};

/// The UDP port a router listens on when nothing else is configured.
pub const DEFAULT_PORT: u16 = 7474;

/// Where the admin API listens unless told otherwise: loopback only.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7475);

/// An `admin` setting: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminAddr(pub Option<SocketAddr>);

impl std::str::FromStr for AdminAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" | "none" => Ok(AdminAddr(None)),
            _ => s
                .parse()
                .map(|a| AdminAddr(Some(a)))
                .map_err(|e| format!("{s:?} is neither HOST:PORT nor `off`: {e}")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for AdminAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The key file name in the data directory when none is configured.
pub const DEFAULT_KEY_FILE: &str = "gdp-router.key";

/// The label put in the metadata of a generated router key.
pub const DEFAULT_LABEL: &str = "gdp-router";

/// The longest config file read.
pub(crate) const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is larger than any sensible configuration.
    #[error("{path} is larger than {MAX_CONFIG_LEN} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The config file is not valid TOML for this program.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}
/// A duration as [`parse_duration`] reads it back: see
/// [`gdp_certs::format_duration`].
pub use gdp_certs::format_duration;
/// A duration: see [`gdp_certs::parse_duration`].
pub use gdp_certs::parse_duration;
/// Everything a router needs to start, resolved from the file, the
/// command line and the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouterSettings {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The key file.
    pub key_file: PathBuf,
    /// The label of a generated key.
    pub label: String,
    /// The UDP address to bind.
    pub listen: SocketAddr,
    /// Public addresses; `None` derives them from the bound address (or
    /// none when a gateway is set).
    pub advertise: Option<Vec<SocketAddr>>,
    /// The directory backend.
    pub directory: DirectoryConfig,
    /// Directory call timeouts.
    pub directory_options: DirectoryOptions,
    /// Where the admin API (`crate::admin`: metrics, health, JSON state)
    /// listens; `None`: nowhere. Default [`DEFAULT_ADMIN`], on loopback.
    pub admin: Option<SocketAddr>,
    /// Whether `admin` was configured (flag, environment or file) rather
    /// than defaulted: a configured address that cannot be bound stops the
    /// start; the default one, taken by another router on the same host,
    /// only leaves this router without an admin API (with a warning).
    pub admin_configured: bool,
    /// The log filter, which the `gdp-router` binary installs (checked by
    /// [`validate`](Self::validate) with the `daemon` feature).
    pub log: String,
    /// The gateway.
    pub via: Option<ViaConfig>,
    /// This router's domain certificate file.
    pub domain_cert: Option<PathBuf>,
    /// Trusted trust-domain keys.
    pub trusted_domains: Vec<PublicKey>,
    /// Routers trusted by name.
    pub trusted_peers: Vec<Name>,
    /// The peering policy.
    pub peering: PeeringPolicy,
    /// Requested `SO_SNDBUF`.
    pub socket_send_buffer: usize,
    /// Requested `SO_RCVBUF`.
    pub socket_recv_buffer: usize,
    /// Whether links offer `gdp/2`, compact stream frames
    /// ([`gdp_link::TransportConfig::compact_headers`]).
    pub compact_headers: bool,
    /// Lifetime of published records.
    pub record_ttl: Duration,
    /// Longest a looked-up route is cached.
    pub cache_ttl: Duration,
    /// How long "no route" is remembered.
    pub negative_ttl: Duration,
    /// How long a PDU waits for a route.
    pub pending_timeout: Duration,
    /// How long a resolution may take.
    pub resolve_timeout: Duration,
    /// How long a dial may take.
    pub dial_timeout: Duration,
    /// Wait between gateway redials.
    pub redial_interval: Duration,
    /// QUIC keep-alive interval.
    pub keep_alive: Duration,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// Directory audit interval.
    pub audit_interval: Duration,
    /// A link whose full send queue takes nothing for this long is closed.
    pub stall_timeout: Duration,
    /// Longest pause of an endpoint link's reads after batches it sent were
    /// mostly dropped; zero turns the penalty off.
    pub drop_penalty_max: Duration,
    /// How long a new link may take to prove a name.
    pub attach_timeout: Duration,
    /// Most links.
    pub max_links: usize,
    /// Most inbound links from one source IP address.
    pub max_links_per_address: usize,
    /// Inbound handshakes one source IP address may start per second (0:
    /// no limit); see [`gdp_link::TransportConfig::handshakes_per_address`].
    pub handshakes_per_address: u32,
    /// Inbound handshakes one source IP address may start at once.
    pub handshake_burst_per_address: u32,
    /// Most dials to other routers running at once.
    pub max_dials: usize,
    /// Most bytes of one PDU read from an endpoint link before the endpoint
    /// has attached (router links are not bound).
    pub unproven_pdu_limit: usize,
    /// Violations before a link is cut.
    pub max_violations: u32,
    /// Pending PDUs per name.
    pub pending_per_name: usize,
    /// Pending PDUs in all.
    pub pending_total: usize,
    /// Source names whose entitlements are remembered.
    pub max_entitlements: usize,
    /// PDUs from vouched peers held per source while it is checked.
    pub held_per_source: usize,
    /// PDUs held from one vouched peer's link.
    pub held_per_link: usize,
    /// PDUs from vouched peers held in all.
    pub held_total: usize,
    /// Links at once that have not proved a name.
    pub max_unproven_links: usize,
    /// Links of one proven name.
    pub max_links_per_peer: usize,
    /// Bytes of PDUs waiting for routes, in all.
    pub pending_bytes: usize,
    /// PDUs of one source waiting for routes.
    pub pending_per_source: usize,
    /// Resolutions in flight for one source.
    pub max_lookups_per_source: usize,
    /// How long a delivery-tree membership lasts without a refresh.
    pub tree_lease: Duration,
    /// How often a delivery tree refreshes its join upstream.
    pub tree_refresh: Duration,
    /// Delivery trees at once.
    pub max_trees: usize,
    /// Member links of one delivery tree.
    pub max_tree_members: usize,
    /// Tree memberships of one link.
    pub max_tree_joins_per_link: usize,
    /// Subscribes accepted from one link.
    pub subscribe_rate_per_link: crate::core::Rate,
    /// The `[capsule_server]` table, if present.
    pub capsule_server: Option<toml::Value>,
}

impl Default for RouterSettings {
    fn default() -> Self {
        let core = crate::core::CoreConfig::default();
        let transport = gdp_link::TransportConfig::default();
        let driver = crate::driver::DriverConfig::default();
        RouterSettings {
            data_dir: PathBuf::from("."),
            key_file: PathBuf::from(".").join(DEFAULT_KEY_FILE),
            label: DEFAULT_LABEL.to_owned(),
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            advertise: None,
            directory: DirectoryConfig::Memory,
            directory_options: DirectoryOptions::default(),
            admin: Some(DEFAULT_ADMIN),
            admin_configured: false,
            log: "info".to_owned(),
            via: None,
            domain_cert: None,
            trusted_domains: Vec::new(),
            trusted_peers: core.trusted_peers.clone(),
            peering: core.peering,
            socket_send_buffer: transport.socket_send_buffer,
            socket_recv_buffer: transport.socket_recv_buffer,
            compact_headers: transport.compact_headers,
            record_ttl: core.record_ttl,
            cache_ttl: core.cache_ttl,
            negative_ttl: core.negative_ttl,
            pending_timeout: core.pending_timeout,
            resolve_timeout: core.resolve_timeout,
            dial_timeout: core.dial_timeout,
            redial_interval: core.redial_interval,
            keep_alive: transport.keep_alive,
            idle_timeout: transport.idle_timeout,
            audit_interval: driver.audit_interval,
            stall_timeout: driver.stall_timeout,
            drop_penalty_max: driver.drop_penalty_max,
            attach_timeout: core.attach_timeout,
            max_links: transport.max_links,
            max_links_per_address: transport.max_links_per_address,
            handshakes_per_address: transport.handshakes_per_address,
            handshake_burst_per_address: transport.handshake_burst_per_address,
            max_dials: driver.max_dials,
            unproven_pdu_limit: crate::driver::UNPROVEN_PDU_LIMIT,
            max_violations: core.max_violations,
            pending_per_name: core.pending_per_name,
            pending_total: core.pending_total,
            max_entitlements: core.max_entitlements,
            held_per_source: core.held_per_source,
            held_per_link: core.held_per_link,
            held_total: core.held_total,
            max_unproven_links: core.max_unproven_links,
            max_links_per_peer: core.max_links_per_peer,
            pending_bytes: core.pending_bytes,
            pending_per_source: core.pending_per_source,
            max_lookups_per_source: core.max_lookups_per_source,
            tree_lease: core.tree_lease,
            tree_refresh: core.tree_refresh,
            max_trees: core.max_trees,
            max_tree_members: core.max_tree_members,
            max_tree_joins_per_link: core.max_tree_joins_per_link,
            subscribe_rate_per_link: core.subscribe_rate_per_link,
            capsule_server: None,
        }
    }
}

/// `cli` if set, else `file`, else `default`.
#[cfg(feature = "daemon")]
fn pick<T>(cli: Option<T>, file: Option<T>, default: T) -> T {
    cli.or(file).unwrap_or(default)
}

#[cfg(feature = "daemon")]
fn pick_duration(
    cli: Option<Duration>,
    file: Option<ConfigDuration>,
    default: Duration,
) -> Duration {
    pick(cli, file.map(|d| d.0), default)
}

impl RouterSettings {
    /// Loads the file named by `--config` (if any) and applies the command
    /// line over it.
    #[cfg(feature = "daemon")]
    pub fn from_cli(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::resolve(file, cli)
    }

    /// Applies `cli` over `file` over the defaults, and checks the result.
    #[cfg(feature = "daemon")]
    pub fn resolve(file: FileConfig, cli: &Cli) -> Result<Self, ConfigError> {
        let d = RouterSettings::default();
        let data_dir = pick(cli.data_dir.clone(), file.data_dir, d.data_dir);
        let key_file = pick(
            cli.key_file.clone(),
            file.key_file,
            data_dir.join(DEFAULT_KEY_FILE),
        );
        let via = match &cli.via {
            Some(v) => Some(ViaConfig {
                name: v.name,
                addresses: vec![v.address],
            }),
            None => file.via,
        };
        let advertise = if cli.advertise.is_empty() {
            file.advertise
        } else {
            Some(cli.advertise.clone())
        };
        let trusted_domains = if cli.trusted_domain.is_empty() {
            file.trust.trusted_domains
        } else {
            cli.trusted_domain.clone()
        };
        let trusted_peers = if cli.trusted_peer.is_empty() {
            file.trust.trusted_peers
        } else {
            cli.trusted_peer.clone()
        };
        let peering = pick(cli.peering, file.trust.peering, d.peering);
        let t = file.timing;
        let directory_options = DirectoryOptions::default().with_timeout(pick_duration(
            cli.directory_timeout,
            file.directory_timeout,
            d.directory_options.timeout,
        ));
        let settings = RouterSettings {
            key_file,
            label: pick(cli.label.clone(), file.label, d.label),
            listen: pick(cli.listen, file.listen, d.listen),
            advertise,
            directory: pick(cli.directory.clone(), file.directory, d.directory),
            directory_options,
            admin: cli.admin.or(file.admin).map_or(d.admin, |a| a.0),
            admin_configured: cli.admin.is_some() || file.admin.is_some(),
            log: pick(cli.log.clone(), file.log, d.log),
            via,
            domain_cert: cli.domain_cert.clone().or(file.trust.domain_cert),
            trusted_domains,
            trusted_peers,
            peering,
            socket_send_buffer: pick(
                cli.socket_send_buffer,
                file.socket.send_buffer,
                d.socket_send_buffer,
            ),
            socket_recv_buffer: pick(
                cli.socket_recv_buffer,
                file.socket.recv_buffer,
                d.socket_recv_buffer,
            ),
            compact_headers: pick(
                cli.compact_headers,
                file.socket.compact_headers,
                d.compact_headers,
            ),
            record_ttl: pick_duration(cli.record_ttl, t.record_ttl, d.record_ttl),
            cache_ttl: pick_duration(cli.cache_ttl, t.cache_ttl, d.cache_ttl),
            negative_ttl: pick_duration(None, t.negative_ttl, d.negative_ttl),
            pending_timeout: pick_duration(None, t.pending_timeout, d.pending_timeout),
            resolve_timeout: pick_duration(None, t.resolve_timeout, d.resolve_timeout),
            dial_timeout: pick_duration(None, t.dial_timeout, d.dial_timeout),
            redial_interval: pick_duration(None, t.redial_interval, d.redial_interval),
            keep_alive: pick_duration(cli.keep_alive, t.keep_alive, d.keep_alive),
            idle_timeout: pick_duration(cli.idle_timeout, t.idle_timeout, d.idle_timeout),
            audit_interval: pick_duration(cli.audit_interval, t.audit_interval, d.audit_interval),
            stall_timeout: pick_duration(None, t.stall_timeout, d.stall_timeout),
            drop_penalty_max: pick_duration(None, t.drop_penalty_max, d.drop_penalty_max),
            attach_timeout: pick_duration(None, t.attach_timeout, d.attach_timeout),
            max_links: pick(None, file.limits.max_links, d.max_links),
            max_links_per_address: pick(
                None,
                file.limits.max_links_per_address,
                d.max_links_per_address,
            ),
            handshakes_per_address: pick(
                None,
                file.limits.handshakes_per_address,
                d.handshakes_per_address,
            ),
            handshake_burst_per_address: pick(
                None,
                file.limits.handshake_burst_per_address,
                d.handshake_burst_per_address,
            ),
            max_dials: pick(None, file.limits.max_dials, d.max_dials),
            unproven_pdu_limit: pick(None, file.limits.unproven_pdu_limit, d.unproven_pdu_limit),
            max_violations: pick(
                cli.max_violations,
                file.limits.max_violations,
                d.max_violations,
            ),
            pending_per_name: pick(None, file.limits.pending_per_name, d.pending_per_name),
            pending_total: pick(None, file.limits.pending_total, d.pending_total),
            max_entitlements: pick(None, file.limits.max_entitlements, d.max_entitlements),
            held_per_source: pick(None, file.limits.held_per_source, d.held_per_source),
            held_per_link: pick(None, file.limits.held_per_link, d.held_per_link),
            held_total: pick(None, file.limits.held_total, d.held_total),
            max_unproven_links: pick(None, file.limits.max_unproven_links, d.max_unproven_links),
            max_links_per_peer: pick(None, file.limits.max_links_per_peer, d.max_links_per_peer),
            pending_bytes: pick(None, file.limits.pending_bytes, d.pending_bytes),
            pending_per_source: pick(None, file.limits.pending_per_source, d.pending_per_source),
            max_lookups_per_source: pick(
                None,
                file.limits.max_lookups_per_source,
                d.max_lookups_per_source,
            ),
            tree_lease: pick_duration(None, t.tree_lease, d.tree_lease),
            tree_refresh: pick_duration(None, t.tree_refresh, d.tree_refresh),
            max_trees: pick(None, file.limits.max_trees, d.max_trees),
            max_tree_members: pick(None, file.limits.max_tree_members, d.max_tree_members),
            max_tree_joins_per_link: pick(
                None,
                file.limits.max_tree_joins_per_link,
                d.max_tree_joins_per_link,
            ),
            subscribe_rate_per_link: crate::core::Rate::new(
                pick(
                    None,
                    file.limits.subscribe_rate,
                    d.subscribe_rate_per_link.per_sec,
                ),
                pick(
                    None,
                    file.limits.subscribe_burst,
                    d.subscribe_rate_per_link.burst,
                ),
            ),
            capsule_server: file.capsule_server,
            data_dir,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that the parts would refuse later with a less clear
    /// message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad(
                "timing.keep_alive",
                format!(
                    "must be non-zero and shorter than idle_timeout ({:?})",
                    self.idle_timeout
                ),
            );
        }
        for (key, value) in [
            ("timing.record_ttl", self.record_ttl),
            ("timing.audit_interval", self.audit_interval),
            ("timing.stall_timeout", self.stall_timeout),
            ("timing.dial_timeout", self.dial_timeout),
            ("directory_timeout", self.directory_options.timeout),
        ] {
            if value.is_zero() {
                return bad(key, "must be longer than zero".into());
            }
        }
        if self.max_violations == 0 || self.max_links == 0 {
            return bad(
                "limits",
                "max_violations and max_links must be at least 1".into(),
            );
        }
        if self.max_links_per_address == 0
            || self.max_dials == 0
            || self.handshake_burst_per_address == 0
        {
            return bad(
                "limits",
                "max_links_per_address, max_dials and handshake_burst_per_address must be at least 1"
                    .into(),
            );
        }
        if [
            self.max_entitlements,
            self.held_per_source,
            self.held_per_link,
            self.held_total,
        ]
        .contains(&0)
        {
            return bad(
                "limits",
                "max_entitlements, held_per_source, held_per_link and held_total must be at least 1"
                    .into(),
            );
        }
        if [
            self.max_trees,
            self.max_tree_members,
            self.max_tree_joins_per_link,
            self.subscribe_rate_per_link.burst as usize,
        ]
        .contains(&0)
        {
            return bad(
                "limits",
                "max_trees, max_tree_members, max_tree_joins_per_link and subscribe_burst must be at least 1"
                    .into(),
            );
        }
        if self.tree_refresh.is_zero() || self.tree_refresh >= self.tree_lease {
            return bad(
                "timing.tree_refresh",
                format!(
                    "must be non-zero and shorter than tree_lease ({:?})",
                    self.tree_lease
                ),
            );
        }
        if let Some(via) = &self.via
            && via.addresses.is_empty()
        {
            return bad("via.addresses", "the gateway needs an address".into());
        }
        if self.advertise.as_ref().is_some_and(Vec::is_empty) && self.via.is_none() {
            return bad(
                "advertise",
                "a router with no public address needs a `via` gateway".into(),
            );
        }
        // Only the binary installs the filter, and only it can check it.
        #[cfg(feature = "daemon")]
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return bad("log", e.to_string());
        }
        Ok(())
    }

    /// The public addresses to publish once the socket is bound to `bound`:
    /// the configured ones, else none behind a gateway, else the bound
    /// address with an unspecified IP replaced by loopback.
    pub fn advertised_addresses(&self, bound: SocketAddr) -> Vec<SocketAddr> {
        match &self.advertise {
            Some(list) => list.clone(),
            None if self.via.is_some() => Vec::new(),
            None => {
                let mut addr = bound;
                if addr.ip().is_unspecified() {
                    addr.set_ip(Ipv4Addr::LOCALHOST.into());
                }
                vec![addr]
            }
        }
    }

    /// What is wrong with publishing `advertised` (the result of
    /// [`advertised_addresses`](Self::advertised_addresses)), if anything:
    /// a loopback address in a directory other routers share (Redis) tells
    /// them to dial themselves. `None` with the memory directory, which
    /// only this process reads.
    pub fn advertise_warning(&self, advertised: &[SocketAddr]) -> Option<String> {
        if matches!(self.directory, DirectoryConfig::Memory) {
            return None;
        }
        let loopback: Vec<String> = advertised
            .iter()
            .filter(|a| a.ip().is_loopback())
            .map(ToString::to_string)
            .collect();
        (!loopback.is_empty()).then(|| {
            format!(
                "publishing the loopback address {} into the shared directory {}: routers on \
                 other hosts cannot reach this one there; give --advertise the address they can \
                 reach",
                loopback.join(","),
                self.directory
            )
        })
    }

    /// The core's settings for a router publishing `addresses`.
    pub fn core_config(
        &self,
        addresses: Vec<SocketAddr>,
        domain_cert: Option<gdp_certs::cert::DomainCert>,
    ) -> crate::core::CoreConfig {
        crate::core::CoreConfig {
            addresses,
            gateway: self.via.as_ref().map(|v| crate::core::Gateway {
                name: v.name,
                addresses: v.addresses.clone(),
            }),
            domain_cert,
            trusted_domains: self.trusted_domains.clone(),
            trusted_peers: self.trusted_peers.clone(),
            peering: self.peering,
            record_ttl: self.record_ttl,
            cache_ttl: self.cache_ttl,
            negative_ttl: self.negative_ttl,
            pending_timeout: self.pending_timeout,
            resolve_timeout: self.resolve_timeout,
            dial_timeout: self.dial_timeout,
            redial_interval: self.redial_interval,
            max_violations: self.max_violations,
            pending_per_name: self.pending_per_name,
            pending_total: self.pending_total,
            max_entitlements: self.max_entitlements,
            held_per_source: self.held_per_source,
            held_per_link: self.held_per_link,
            held_total: self.held_total,
            attach_timeout: self.attach_timeout,
            max_unproven_links: self.max_unproven_links,
            max_links_per_peer: self.max_links_per_peer,
            pending_bytes: self.pending_bytes,
            pending_per_source: self.pending_per_source,
            max_lookups_per_source: self.max_lookups_per_source,
            tree_lease: self.tree_lease,
            tree_refresh: self.tree_refresh,
            max_trees: self.max_trees,
            max_tree_members: self.max_tree_members,
            max_tree_joins_per_link: self.max_tree_joins_per_link,
            subscribe_rate_per_link: self.subscribe_rate_per_link,
            ..crate::core::CoreConfig::default()
        }
    }

    /// The transport's settings.
    pub fn transport_config(&self) -> gdp_link::TransportConfig {
        let mut t = gdp_link::TransportConfig::new(self.listen);
        t.socket_send_buffer = self.socket_send_buffer;
        t.socket_recv_buffer = self.socket_recv_buffer;
        t.compact_headers = self.compact_headers;
        t.keep_alive = self.keep_alive;
        t.idle_timeout = self.idle_timeout;
        t.handshake_timeout = self.dial_timeout;
        t.max_links = self.max_links;
        t.max_links_per_address = self.max_links_per_address;
        t.handshakes_per_address = self.handshakes_per_address;
        t.handshake_burst_per_address = self.handshake_burst_per_address;
        t.unproven_pdu_limit = self.unproven_pdu_limit;
        // A peer that keeps sending undecodable PDUs is cut off at the same
        // count as one whose PDUs decode but break the rules.
        t.malformed_limit = u64::from(self.max_violations);
        t
    }

    /// The driver's settings.
    pub fn driver_config(&self) -> crate::driver::DriverConfig {
        crate::driver::DriverConfig {
            audit_interval: self.audit_interval,
            stall_timeout: self.stall_timeout,
            drop_penalty_max: self.drop_penalty_max,
            max_dials: self.max_dials,
            ..crate::driver::DriverConfig::default()
        }
    }

    /// The settings as JSON, for the admin API's `/v1/config` (what
    /// `--check-config` prints is the config-file form,
    /// [`to_masked_table`](Self::to_masked_table)): durations in human form (`1m 30s`), the
    /// directory's password masked, the `[capsule_server]` table as given
    /// (it holds no secrets: keys live in files).
    pub fn to_json(&self) -> serde_json::Value {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let strings = |v: &[SocketAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        serde_json::json!({
            "data_dir": self.data_dir.display().to_string(),
            "key_file": self.key_file.display().to_string(),
            "label": self.label,
            "listen": self.listen.to_string(),
            "advertise": self.advertise.as_deref().map(strings),
            "directory": self.directory.to_string(),
            "directory_timeout": d(self.directory_options.timeout),
            "directory_connect_timeout": d(self.directory_options.connect_timeout),
            "admin": self.admin.map(|a| a.to_string()),
            "log": self.log,
            "via": self.via.as_ref().map(|v| serde_json::json!({
                "name": v.name.to_string(),
                "addresses": strings(&v.addresses),
            })),
            "trust": {
                "domain_cert": self.domain_cert.as_ref().map(|p| p.display().to_string()),
                "trusted_domains": self.trusted_domains.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "trusted_peers": self.trusted_peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "peering": self.peering.to_string(),
            },
            "socket": {
                "send_buffer": self.socket_send_buffer,
                "recv_buffer": self.socket_recv_buffer,
                "compact_headers": self.compact_headers,
            },
            "timing": {
                "record_ttl": d(self.record_ttl),
                "cache_ttl": d(self.cache_ttl),
                "negative_ttl": d(self.negative_ttl),
                "pending_timeout": d(self.pending_timeout),
                "resolve_timeout": d(self.resolve_timeout),
                "dial_timeout": d(self.dial_timeout),
                "redial_interval": d(self.redial_interval),
                "keep_alive": d(self.keep_alive),
                "idle_timeout": d(self.idle_timeout),
                "audit_interval": d(self.audit_interval),
                "stall_timeout": d(self.stall_timeout),
                "drop_penalty_max": d(self.drop_penalty_max),
                "attach_timeout": d(self.attach_timeout),
                "tree_lease": d(self.tree_lease),
                "tree_refresh": d(self.tree_refresh),
            },
            "limits": {
                "max_links": self.max_links,
                "max_links_per_address": self.max_links_per_address,
                "handshakes_per_address": self.handshakes_per_address,
                "handshake_burst_per_address": self.handshake_burst_per_address,
                "max_dials": self.max_dials,
                "unproven_pdu_limit": self.unproven_pdu_limit,
                "max_violations": self.max_violations,
                "pending_per_name": self.pending_per_name,
                "pending_total": self.pending_total,
                "pending_bytes": self.pending_bytes,
                "pending_per_source": self.pending_per_source,
                "max_lookups_per_source": self.max_lookups_per_source,
                "max_entitlements": self.max_entitlements,
                "held_per_source": self.held_per_source,
                "held_per_link": self.held_per_link,
                "held_total": self.held_total,
                "max_unproven_links": self.max_unproven_links,
                "max_links_per_peer": self.max_links_per_peer,
                "max_trees": self.max_trees,
                "max_tree_members": self.max_tree_members,
                "max_tree_joins_per_link": self.max_tree_joins_per_link,
                "subscribe_rate_per_link": {
                    "per_sec": self.subscribe_rate_per_link.per_sec,
                    "burst": self.subscribe_rate_per_link.burst,
                },
            },
            "capsule_server": self.capsule_server.as_ref().map(|t| {
                serde_json::to_value(t).unwrap_or(serde_json::Value::Null)
            }),
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "daemon")]
    use clap::Parser;
    #[cfg(feature = "daemon")]
    use std::path::Path;

    // The tests of `resolve` need the command line, which is the daemon's.
    #[cfg(feature = "daemon")]
    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("gdp-router").chain(args.iter().copied()))
            .expect("valid command line")
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn nothing_given_means_the_embedded_defaults() {
        let s = RouterSettings::resolve(FileConfig::default(), &cli(&[])).expect("valid");
        assert_eq!(s.listen, SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)));
        assert_eq!(s.key_file, Path::new(".").join(DEFAULT_KEY_FILE));
        assert_eq!(s.directory, DirectoryConfig::Memory);
        assert_eq!(s.admin, Some(DEFAULT_ADMIN));
        assert!(!s.admin_configured);
        let s = RouterSettings::resolve(FileConfig::default(), &cli(&["--admin", "off"]))
            .expect("valid");
        assert_eq!((s.admin, s.admin_configured), (None, true));
        // The flag's former name still works.
        let s = RouterSettings::resolve(FileConfig::default(), &cli(&["--metrics", "127.0.0.1:0"]))
            .expect("valid");
        assert_eq!(s.admin, Some(SocketAddr::from(([127, 0, 0, 1], 0))));
        assert_eq!(
            s.advertised_addresses(SocketAddr::from(([0, 0, 0, 0], 7474))),
            vec![SocketAddr::from(([127, 0, 0, 1], 7474))]
        );
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn the_data_dir_holds_the_default_key_file() {
        let s = RouterSettings::resolve(FileConfig::default(), &cli(&["--data-dir", "/d"]))
            .expect("valid");
        assert_eq!(s.key_file, Path::new("/d").join(DEFAULT_KEY_FILE));
        let s = RouterSettings::resolve(
            FileConfig::default(),
            &cli(&["--data-dir", "/d", "--key-file", "/k/r.key"]),
        )
        .expect("valid");
        assert_eq!(s.key_file, Path::new("/k/r.key"));
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn the_command_line_wins_over_the_file() {
        let file = FileConfig::parse(
            r#"
            listen = "127.0.0.1:9000"
            directory = "redis://127.0.0.1:6379"
            metrics = "127.0.0.1:9100"
            [timing]
            record_ttl = "10s"
            idle_timeout = 4
            keep_alive = "500ms"
            [limits]
            max_violations = 5
            "#,
            Path::new("t.toml"),
        )
        .expect("valid file");
        let s = RouterSettings::resolve(
            file,
            &cli(&["--listen", "127.0.0.1:9001", "--record-ttl", "1m"]),
        )
        .expect("valid");
        assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 9001)));
        assert_eq!(s.record_ttl, Duration::from_secs(60));
        assert_eq!(s.idle_timeout, Duration::from_secs(4));
        assert_eq!(s.keep_alive, Duration::from_millis(500));
        assert_eq!(s.max_violations, 5);
        assert_eq!(s.transport_config().malformed_limit, 5);
        assert_eq!(s.admin, Some(SocketAddr::from(([127, 0, 0, 1], 9100))));
        assert!(s.admin_configured);
        assert!(matches!(s.directory, DirectoryConfig::Redis { .. }));
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn a_loopback_address_in_a_shared_directory_is_warned_about() {
        let any: SocketAddr = "0.0.0.0:7474".parse().expect("addr");
        let s = RouterSettings::resolve(FileConfig::default(), &cli(&[])).expect("valid");
        assert_eq!(s.advertise_warning(&s.advertised_addresses(any)), None);
        let s = RouterSettings::resolve(
            FileConfig::default(),
            &cli(&["--directory", "redis://:pw@10.0.0.2:6379"]),
        )
        .expect("valid");
        let warning = s
            .advertise_warning(&s.advertised_addresses(any))
            .expect("a warning");
        assert!(warning.contains("127.0.0.1:7474"), "{warning}");
        assert!(!warning.contains("pw@"), "{warning}");
        let s = RouterSettings::resolve(
            FileConfig::default(),
            &cli(&[
                "--directory",
                "redis://10.0.0.2:6379",
                "--advertise",
                "203.0.113.7:7474",
            ]),
        )
        .expect("valid");
        assert_eq!(s.advertise_warning(&s.advertised_addresses(any)), None);
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn a_router_behind_a_gateway_advertises_nothing_by_default() {
        let gw = Name::from_bytes([9; 32]);
        let s = RouterSettings::resolve(
            FileConfig::default(),
            &cli(&["--via", &format!("{gw}@127.0.0.1:7000")]),
        )
        .expect("valid");
        let via = s.via.clone().expect("gateway set");
        assert_eq!(via.name, gw);
        assert_eq!(
            via.addresses,
            vec![SocketAddr::from(([127, 0, 0, 1], 7000))]
        );
        assert!(
            s.advertised_addresses("127.0.0.1:1".parse().expect("addr"))
                .is_empty()
        );
        let core = s.core_config(Vec::new(), None);
        assert_eq!(core.gateway.map(|g| g.name), Some(gw));
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(matches!(
            FileConfig::parse("listn = \"1.2.3.4:5\"", Path::new("t.toml")),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            FileConfig::parse("[timing]\nrecord_ttl = \"5 parsecs\"", Path::new("t.toml")),
            Err(ConfigError::Parse { .. })
        ));
        let file = FileConfig::parse("advertise = []", Path::new("t.toml")).expect("parses");
        assert!(matches!(
            RouterSettings::resolve(file, &cli(&[])),
            Err(ConfigError::Invalid {
                key: "advertise",
                ..
            })
        ));
        let file = FileConfig::parse("[timing]\nkeep_alive = \"1m\"", Path::new("t.toml"))
            .expect("parses");
        assert!(matches!(
            RouterSettings::resolve(file, &cli(&[])),
            Err(ConfigError::Invalid {
                key: "timing.keep_alive",
                ..
            })
        ));
        assert!(Cli::try_parse_from(["gdp-router", "--via", "nonsense"]).is_err());
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn the_peering_policy_and_trusted_peers_come_from_the_file_or_the_command_line() {
        let s = RouterSettings::resolve(FileConfig::default(), &cli(&[])).expect("valid");
        assert_eq!(s.peering, PeeringPolicy::Vouched);
        assert!(s.trusted_peers.is_empty());
        let (a, b) = (Name::from_bytes([1; 32]), Name::from_bytes([2; 32]));
        let file = FileConfig::parse(
            &format!("[trust]\npeering = \"trusted-only\"\ntrusted_peers = [\"{a}\"]\n"),
            Path::new("t.toml"),
        )
        .expect("parses");
        let s = RouterSettings::resolve(file.clone(), &cli(&[])).expect("valid");
        assert_eq!(s.peering, PeeringPolicy::TrustedOnly);
        assert_eq!(s.trusted_peers, vec![a]);
        let core = s.core_config(vec![], None);
        assert_eq!(core.peering, PeeringPolicy::TrustedOnly);
        assert_eq!(core.trusted_peers, vec![a]);
        assert_eq!(core.held_per_source, 64);
        let limits = FileConfig::parse(
            "[limits]\nmax_entitlements = 10\nheld_per_source = 2\nheld_total = 5\n",
            Path::new("t.toml"),
        )
        .expect("parses");
        let core = RouterSettings::resolve(limits, &cli(&[]))
            .expect("valid")
            .core_config(vec![], None);
        assert_eq!(
            (core.max_entitlements, core.held_per_source, core.held_total),
            (10, 2, 5)
        );
        let s = RouterSettings::resolve(
            file,
            &cli(&[
                "--peering",
                "insecure-open",
                "--trusted-peer",
                &b.to_string(),
            ]),
        )
        .expect("valid");
        assert_eq!(s.peering, PeeringPolicy::InsecureOpen);
        assert_eq!(s.trusted_peers, vec![b]);
        assert!(FileConfig::parse("[trust]\npeering = \"anyone\"", Path::new("t.toml")).is_err());
        assert!(Cli::try_parse_from(["gdp-router", "--peering", "open"]).is_err());
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn the_per_peer_limits_come_from_the_file() {
        let file = FileConfig::parse(
            "[timing]\nattach_timeout = \"2s\"\n[limits]\nmax_unproven_links = 10\n\
             max_links_per_peer = 2\npending_bytes = 1000000\npending_per_source = 8\n\
             max_lookups_per_source = 3\n",
            Path::new("t.toml"),
        )
        .expect("parses");
        let core = RouterSettings::resolve(file, &cli(&[]))
            .expect("valid")
            .core_config(vec![], None);
        assert_eq!(core.attach_timeout, Duration::from_secs(2));
        assert_eq!(
            (
                core.max_unproven_links,
                core.max_links_per_peer,
                core.pending_bytes,
                core.pending_per_source,
                core.max_lookups_per_source
            ),
            (10, 2, 1_000_000, 8, 3)
        );
        let defaults = RouterSettings::resolve(FileConfig::default(), &cli(&[]))
            .expect("valid")
            .core_config(vec![], None);
        let core_defaults = crate::core::CoreConfig::default();
        assert_eq!(defaults.attach_timeout, core_defaults.attach_timeout);
        assert_eq!(defaults.pending_bytes, core_defaults.pending_bytes);
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn the_tree_limits_come_from_the_file() {
        let file = FileConfig::parse(
            "[timing]\ntree_lease = \"12s\"\ntree_refresh = \"4s\"\n[limits]\nmax_trees = 10\n\
             max_tree_members = 20\nmax_tree_joins_per_link = 5\nsubscribe_rate = 7\n\
             subscribe_burst = 70\n",
            Path::new("t.toml"),
        )
        .expect("parses");
        let core = RouterSettings::resolve(file, &cli(&[]))
            .expect("valid")
            .core_config(vec![], None);
        assert_eq!(
            (core.tree_lease, core.tree_refresh),
            (Duration::from_secs(12), Duration::from_secs(4))
        );
        assert_eq!(
            (
                core.max_trees,
                core.max_tree_members,
                core.max_tree_joins_per_link,
                core.subscribe_rate_per_link
            ),
            (10, 20, 5, crate::core::Rate::new(7, 70))
        );
        let defaults = RouterSettings::resolve(FileConfig::default(), &cli(&[]))
            .expect("valid")
            .core_config(vec![], None);
        let core_defaults = crate::core::CoreConfig::default();
        assert_eq!(defaults.max_trees, core_defaults.max_trees);
        assert_eq!(defaults.tree_lease, core_defaults.tree_lease);
        assert_eq!(
            defaults.subscribe_rate_per_link,
            core_defaults.subscribe_rate_per_link
        );
        // A refresh that is not shorter than the lease is refused.
        let file = FileConfig::parse(
            "[timing]\ntree_lease = \"5s\"\ntree_refresh = \"5s\"\n",
            Path::new("t.toml"),
        )
        .expect("parses");
        assert!(matches!(
            RouterSettings::resolve(file, &cli(&[])),
            Err(ConfigError::Invalid {
                key: "timing.tree_refresh",
                ..
            })
        ));
    }

    #[test]
    #[cfg(feature = "daemon")]
    fn the_capsule_server_table_is_kept_as_it_is() {
        let file = FileConfig::parse(
            "[capsule_server]\nstore = \"capsules\"\nmax = 3\n",
            Path::new("t.toml"),
        )
        .expect("parses");
        let s = RouterSettings::resolve(file, &cli(&[])).expect("valid");
        let table = s.capsule_server.expect("kept");
        assert_eq!(
            table.get("store").and_then(|v| v.as_str()),
            Some("capsules")
        );
        assert_eq!(table.get("max").and_then(|v| v.as_integer()), Some(3));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(432_000)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    proptest::proptest! {
        #[test]
        fn millisecond_durations_round_trip(ms in 0u64..10_000_000) {
            proptest::prop_assert_eq!(parse_duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,20}") {
            let _ = parse_duration(&s);
        }
    }
}
