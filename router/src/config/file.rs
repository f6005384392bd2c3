//! The config file as written: TOML tables whose keys are all optional.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gdp_certs::{Name, PublicKey};
use serde::Deserialize;

use super::{ConfigError, MAX_CONFIG_LEN, parse_duration};
use crate::core::PeeringPolicy;
use crate::directory::DirectoryConfig;

/// A duration in the config file: a string with a unit or a number of
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(ConfigDuration(Duration::from_secs(s))),
            Raw::Text(t) => parse_duration(&t)
                .map(ConfigDuration)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The `[via]` table: the gateway of a router without a public address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViaConfig {
    /// The gateway router's name.
    pub name: Name,
    /// Where to dial it.
    pub addresses: Vec<SocketAddr>,
}

/// Public keys in their text form.
fn public_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PublicKey>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|k| k.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// A peering policy in its text form.
fn peering_policy<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<PeeringPolicy>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|p| p.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// The `[trust]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// This router's domain certificate (the binary encoding).
    pub domain_cert: Option<PathBuf>,
    /// Trust-domain keys: routers with a certificate from one of them are
    /// trusted peers.
    #[serde(deserialize_with = "public_keys")]
    pub trusted_domains: Vec<PublicKey>,
    /// Routers trusted by name.
    pub trusted_peers: Vec<Name>,
    /// `vouched` (the default), `trusted-only` or `insecure-open`.
    #[serde(deserialize_with = "peering_policy")]
    pub peering: Option<PeeringPolicy>,
}

/// The `[socket]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    /// `SO_SNDBUF` requested, in bytes.
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF` requested, in bytes.
    pub recv_buffer: Option<usize>,
    /// Offer link protocol `gdp/2` (compact stream frames).
    pub compact_headers: Option<bool>,
}

/// The `[timing]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingConfig {
    /// Lifetime of published route records (republished at two thirds).
    pub record_ttl: Option<ConfigDuration>,
    /// Longest a looked-up route is cached.
    pub cache_ttl: Option<ConfigDuration>,
    /// How long "no route" is remembered for a name.
    pub negative_ttl: Option<ConfigDuration>,
    /// How long a PDU waits for a lookup.
    pub pending_timeout: Option<ConfigDuration>,
    /// How long a resolution (lookups, dials, gateways) may take.
    pub resolve_timeout: Option<ConfigDuration>,
    /// How long a dial (and any QUIC handshake) may take.
    pub dial_timeout: Option<ConfigDuration>,
    /// Wait between redials of the gateway.
    pub redial_interval: Option<ConfigDuration>,
    /// QUIC keep-alive interval of idle links.
    pub keep_alive: Option<ConfigDuration>,
    /// A link silent for this long is down.
    pub idle_timeout: Option<ConfigDuration>,
    /// How often the directory is checked for lost records.
    pub audit_interval: Option<ConfigDuration>,
    /// A link whose full send queue takes nothing for this long is closed.
    pub stall_timeout: Option<ConfigDuration>,
    /// Longest pause of an endpoint link's reads after batches it sent were
    /// mostly dropped ("0s" turns the penalty off).
    pub drop_penalty_max: Option<ConfigDuration>,
    /// How long a new link may take to prove a name (attach, or a router's
    /// hello) before it is closed.
    pub attach_timeout: Option<ConfigDuration>,
    /// How long a delivery-tree membership lasts without a refresh.
    pub tree_lease: Option<ConfigDuration>,
    /// How often a delivery tree refreshes its join upstream.
    pub tree_refresh: Option<ConfigDuration>,
}

/// The `[limits]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most links at once.
    pub max_links: Option<usize>,
    /// Most inbound links from one source IP address at once.
    pub max_links_per_address: Option<usize>,
    /// Inbound handshakes one source IP address may start per second (0:
    /// no limit).
    pub handshakes_per_address: Option<u32>,
    /// Inbound handshakes one source IP address may start at once.
    pub handshake_burst_per_address: Option<u32>,
    /// Most dials to other routers running at once.
    pub max_dials: Option<usize>,
    /// Most bytes of one PDU read from an endpoint before it attaches.
    pub unproven_pdu_limit: Option<usize>,
    /// Protocol violations after which a link is cut.
    pub max_violations: Option<u32>,
    /// Most PDUs waiting for one unresolved name.
    pub pending_per_name: Option<usize>,
    /// Most PDUs waiting for all unresolved names.
    pub pending_total: Option<usize>,
    /// Most source names whose entitlements are remembered.
    pub max_entitlements: Option<usize>,
    /// Most PDUs from vouched peers held for one source being checked.
    pub held_per_source: Option<usize>,
    /// Most PDUs held from one vouched peer's link.
    pub held_per_link: Option<usize>,
    /// Most PDUs from vouched peers held in all.
    pub held_total: Option<usize>,
    /// Most links at once that have not proved a name.
    pub max_unproven_links: Option<usize>,
    /// Most links of one proven name (an endpoint or a router).
    pub max_links_per_peer: Option<usize>,
    /// Most bytes of PDUs waiting for routes, in all.
    pub pending_bytes: Option<usize>,
    /// Most PDUs of one source waiting for routes.
    pub pending_per_source: Option<usize>,
    /// Most resolutions in flight for one source.
    pub max_lookups_per_source: Option<usize>,
    /// Most delivery trees (capsules with subscribers) at once.
    pub max_trees: Option<usize>,
    /// Most member links of one delivery tree.
    pub max_tree_members: Option<usize>,
    /// Most tree memberships one link may hold.
    pub max_tree_joins_per_link: Option<usize>,
    /// Subscribes accepted from one link, per second.
    pub subscribe_rate: Option<u32>,
    /// Subscribes accepted from one link at once after a quiet period.
    pub subscribe_burst: Option<u32>,
}

/// The config file as written: every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FileConfig {
    /// Where the key file (by default) and embedded services' data live.
    pub data_dir: Option<PathBuf>,
    /// The router's key file.
    pub key_file: Option<PathBuf>,
    /// The label of a generated key.
    pub label: Option<String>,
    /// The UDP address to listen on.
    pub listen: Option<SocketAddr>,
    /// Public addresses published in route records.
    pub advertise: Option<Vec<SocketAddr>>,
    /// The directory backend.
    pub directory: Option<DirectoryConfig>,
    /// Longest one directory call may take.
    pub directory_timeout: Option<ConfigDuration>,
    /// Where the admin API listens, or `off` (`metrics` is its former
    /// name).
    #[serde(alias = "metrics")]
    pub admin: Option<super::AdminAddr>,
    /// The log filter.
    pub log: Option<String>,
    /// The gateway.
    pub via: Option<ViaConfig>,
    /// Trust domains.
    pub trust: TrustConfig,
    /// Socket buffers.
    pub socket: SocketConfig,
    /// Timers.
    pub timing: TimingConfig,
    /// Limits.
    pub limits: LimitsConfig,
    /// The embedded capsule server's table, passed as it is to the
    /// capsule-server hook (see [`crate::driver::EmbedHook`]).
    pub capsule_server: Option<toml::Value>,
}

impl FileConfig {
    /// Parses config text; `path` is only for error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads and parses the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text, path)
    }
}
