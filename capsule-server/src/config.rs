//! The capsule server's configuration: a TOML file, command-line
//! overrides (in the binary), and defaults.
//!
//! Only the router's address has no default (a server embedded in a router
//! gets it from the router, see [`ServerConfig::embedded`]). The key file
//! is generated on first start (mode 0600) when it does not exist.
//!
//! ```toml
//! # gdp-capsule-server.toml
//! data_dir = "/var/lib/gdp-capsule-server"  # the store and, by default, the key file
//! key_file = "/etc/gdp/capsule-server.key"  # default: <data_dir>/capsule-server.key
//! label = "store-1"                         # put in the metadata of a new key
//! log = "info"                              # a tracing filter (the binary's)
//! admin = "127.0.0.1:7476"                  # the binary's admin API (metrics, health, JSON), or "off"
//!
//! [router]
//! address = "127.0.0.1:7474"
//! name = "<router name>"      # optional: without it the first router that
//!                             # answers is trusted, then pinned
//! rtcert_validity = "1h"      # the attach certificate; renewed at 2/3
//! attach_timeout = "10s"
//! retry_initial = "100ms"     # reconnect backoff, doubling
//! retry_max = "10s"
//!
//! [service]                   # limits, see ServiceConfig
//! max_subscribers = 4096      # per capsule
//! max_subscriptions_per_peer = 64
//! max_capsules = 65536        # at most what the router takes per server
//! tree_lease = "30s"          # a delivery-tree join of the router lasts this long
//! tree_tip_interval = "5s"    # an idle capsule with a tree republishes its newest record
//! sync_interval = "1s"        # replicas of a capsule ask each other for what they miss
//! sync_timeout = "5s"         # an unanswered sync is sent again after this
//! peer_requests = { per_second = 20000, burst = 40000 }
//! # Who may create capsules (see CreatePolicy); the default:
//! create_policy = { mode = "quota", per_creator = 256, rate = { per_second = 10, burst = 100 } }
//! # or only some owner keys:
//! # create_policy = { mode = "allow-list", creators = ["<public key>"] }
//! # or anyone, up to max_capsules: create_policy = { mode = "open" }
//!
//! [store]                     # see StoreOptions
//! check_integrity = true
//!
//! [committer]                 # group commit, see CommitterConfig
//! max_writes = 4096
//!
//! [host]
//! inbox = 4096                # requests waiting for the service
//! max_batch = 1024            # requests handed to it at once
//! outbox = 1024               # responses waiting for the link
//! ```
//!
//! Durations are a number with a unit (`ms`, `s`, `m`, `h`) or a bare
//! number of seconds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gdp_certs::Name;
use gdp_link::endpoint::{Backoff, EndpointConfig};
use serde::{Deserialize, Serialize};

use crate::committer::CommitterConfig;
use crate::limits::ServiceConfig;
use crate::store::StoreOptions;

/// The key file name in the data directory when none is configured.
pub const DEFAULT_KEY_FILE: &str = "capsule-server.key";
/// The label put in the metadata of a generated server key.
pub const DEFAULT_LABEL: &str = "gdp-capsule-server";
/// The data directory of an embedded server, under the router's.
pub const EMBEDDED_DIR: &str = "capsule-server";
/// The longest config file read.
const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerConfigError {
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
    /// The configuration is not valid TOML for this program.
    #[error("{origin}: {message}")]
    Parse {
        /// Where it came from (a file, or the embedding router's table).
        origin: String,
        /// What the parser said.
        message: String,
    },
    /// A value is missing, out of range or inconsistent with another.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A duration: see [`gdp_certs::parse_duration`].
pub use gdp_certs::parse_duration;

/// Deserializes a duration written as a string with a unit or a number of
/// seconds.
pub(crate) fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Float(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Float(f) => Duration::try_from_secs_f64(f).map_err(serde::de::Error::custom),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// Serializes a duration as [`gdp_certs::format_duration`] writes it,
/// which [`parse_duration`] reads back exactly.
pub(crate) fn duration_text<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&gdp_certs::format_duration(*d))
}

/// How the server reaches its router.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSettings {
    /// The router's UDP address. Required (an embedded server is given its
    /// router's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// The router's name. Without it the first router that answers at
    /// `address` is trusted and then pinned for the life of the process
    /// (trust on first use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// Lifetime of the RtCert issued at each attach; the server attaches
    /// again two thirds into it. Default 1 h.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub rtcert_validity: Duration,
    /// Longest a dial and attach may take. Default 10 s.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub attach_timeout: Duration,
    /// First reconnect delay, doubling after each failure. Default 100 ms.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub retry_initial: Duration,
    /// Longest reconnect delay. Default 10 s.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub retry_max: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            address: None,
            name: None,
            rtcert_validity: gdp_link::endpoint::DEFAULT_RTCERT_VALIDITY,
            attach_timeout: gdp_link::endpoint::DEFAULT_ATTACH_TIMEOUT,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// The queues between the link and the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSettings {
    /// Requests that may wait for the service. Default 4096.
    pub inbox: usize,
    /// Most requests handed to the service at once (their heartbeats are
    /// verified in one batch). Default 1024.
    pub max_batch: usize,
    /// Responses that may wait for the link, and (in a queue of their own)
    /// Publish PDUs for delivery trees. Default 1024.
    pub outbox: usize,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            inbox: 4096,
            max_batch: 1024,
            outbox: 1024,
        }
    }
}

/// Where the admin API of `gdp-capsule-server` listens unless configured.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7476);

/// An `admin` setting: an address to listen on, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    /// No admin API.
    Off,
    /// Listen here.
    At(SocketAddr),
}

impl AdminListen {
    /// The address, unless off.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            AdminListen::Off => None,
            AdminListen::At(a) => Some(a),
        }
    }
}

impl std::str::FromStr for AdminListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" | "none" => Ok(AdminListen::Off),
            _ => s
                .parse()
                .map(AdminListen::At)
                .map_err(|e| format!("{s:?} is neither HOST:PORT nor `off`: {e}")),
        }
    }
}

/// Written as the text [`FromStr`](std::str::FromStr) reads: `off` or
/// `HOST:PORT`.
impl Serialize for AdminListen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AdminListen::Off => s.serialize_str("off"),
            AdminListen::At(addr) => s.collect_str(addr),
        }
    }
}

impl<'de> Deserialize<'de> for AdminListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything a capsule server needs to run. See the [module
/// documentation](self) for the file format.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Holds the store (and the key file by default). Default: the working
    /// directory.
    pub data_dir: PathBuf,
    /// The server's key file, generated if missing. Default:
    /// `<data_dir>/capsule-server.key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Label put in the metadata of a newly generated key.
    pub label: String,
    /// A tracing filter, used by the binary when it sets up logging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Where the binary serves its admin API (`/metrics`, `/healthz`,
    /// `/readyz`, JSON under `/v1`), or `off`. Not given: the binary's
    /// default, [`DEFAULT_ADMIN`] on loopback. Anything beyond loopback
    /// only when configured: the figures say what the server holds.
    /// (`metrics` is its former name.)
    #[serde(alias = "metrics", skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminListen>,
    /// The router.
    pub router: RouterSettings,
    /// The service's limits.
    pub service: ServiceConfig,
    /// How the store is opened.
    pub store: StoreOptions,
    /// Group commit.
    pub committer: CommitterConfig,
    /// Queue sizes.
    pub host: HostSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("."),
            key_file: None,
            label: DEFAULT_LABEL.to_owned(),
            log: None,
            admin: None,
            router: RouterSettings::default(),
            service: ServiceConfig::default(),
            store: StoreOptions::default(),
            committer: CommitterConfig::default(),
            host: HostSettings::default(),
        }
    }
}

impl ServerConfig {
    /// Defaults, with the data in `data_dir` and the router at
    /// `router_addr`.
    pub fn new(data_dir: impl Into<PathBuf>, router_addr: SocketAddr) -> Self {
        let mut config = ServerConfig {
            data_dir: data_dir.into(),
            ..ServerConfig::default()
        };
        config.router.address = Some(router_addr);
        config
    }

    /// Parses a TOML configuration; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ServerConfigError> {
        toml::from_str(text).map_err(|e| ServerConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads and parses the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Self, ServerConfigError> {
        let read = |source| ServerConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_CONFIG_LEN {
            return Err(ServerConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The configuration as a TOML file, every setting written out (what
    /// `gdp-capsule-server --check-config` prints). It holds no secret (a
    /// key file is named, not read) and [`from_toml`](Self::from_toml)
    /// reads it back as the same configuration.
    pub fn to_toml(&self) -> Result<String, ServerConfigError> {
        toml::to_string(self).map_err(|e| ServerConfigError::Invalid {
            key: "(all)",
            reason: format!("cannot be written as TOML: {e}"),
        })
    }

    /// The configuration of a server embedded in a router: the router's
    /// `[capsule_server]` table (`None` when it has none), its data kept
    /// under `<router_data_dir>/capsule-server` unless the table says
    /// otherwise, attached to the router at `router_addr` which must prove
    /// the name `router`.
    pub fn embedded(
        table: Option<toml::Value>,
        router_data_dir: &Path,
        router_addr: SocketAddr,
        router: Name,
    ) -> Result<Self, ServerConfigError> {
        let mut config = Self::from_router_table(table, router_data_dir, router_addr)?;
        config.router.name = Some(router);
        Ok(config)
    }

    /// What [`embedded`](Self::embedded) makes of a router's
    /// `[capsule_server]` table, checked, but without the router's name
    /// (which only the running router knows, from its key): for checking a
    /// router's configuration before it starts.
    pub fn from_router_table(
        table: Option<toml::Value>,
        router_data_dir: &Path,
        router_addr: SocketAddr,
    ) -> Result<Self, ServerConfigError> {
        let has_data_dir = table.as_ref().and_then(|t| t.get("data_dir")).is_some();
        let mut config = match table {
            Some(value) => {
                value
                    .try_into::<ServerConfig>()
                    .map_err(|e| ServerConfigError::Parse {
                        origin: "[capsule_server]".to_owned(),
                        message: e.to_string(),
                    })?
            }
            None => ServerConfig::default(),
        };
        if !has_data_dir {
            config.data_dir = router_data_dir.join(EMBEDDED_DIR);
        }
        if config.admin.is_some() {
            return Err(ServerConfigError::Invalid {
                key: "admin",
                reason: "an embedded capsule server has no admin listener of its own \
                         (the router's admin API lists it among its endpoints, with its capsules)"
                    .into(),
            });
        }
        config.router.address = Some(router_addr);
        config.router.name = None;
        config.validate()?;
        Ok(config)
    }

    /// The key file: the configured one, or `<data_dir>/capsule-server.key`.
    pub fn key_file(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(DEFAULT_KEY_FILE))
    }

    /// The router's address, or an error when none is configured.
    pub fn router_addr(&self) -> Result<SocketAddr, ServerConfigError> {
        self.router
            .address
            .ok_or_else(|| ServerConfigError::Invalid {
                key: "router.address",
                reason: "the router's address is required (--router or [router] address)".into(),
            })
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ServerConfigError> {
        self.router_addr()?;
        let invalid = |key, reason: String| Err(ServerConfigError::Invalid { key, reason });
        if let Err(e) = self.service.check() {
            return invalid("service", e.to_string());
        }
        if self.router.rtcert_validity < Duration::from_secs(1) {
            return invalid(
                "router.rtcert_validity",
                format!(
                    "{:?} is too short: at least 1s",
                    self.router.rtcert_validity
                ),
            );
        }
        if self.router.attach_timeout.is_zero() {
            return invalid("router.attach_timeout", "must not be zero".into());
        }
        if self.router.retry_initial.is_zero() || self.router.retry_max < self.router.retry_initial
        {
            return invalid(
                "router.retry_initial",
                "retry_initial must be non-zero and at most retry_max".into(),
            );
        }
        let host = &self.host;
        for (key, v) in [
            ("host.inbox", host.inbox),
            ("host.max_batch", host.max_batch),
            ("host.outbox", host.outbox),
            ("committer.queue", self.committer.queue),
            ("committer.max_writes", self.committer.max_writes),
        ] {
            if v == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        if self.label.is_empty() {
            return invalid("label", "must not be empty".into());
        }
        Ok(())
    }

    /// The endpoint configuration for the link to the router.
    pub fn endpoint(&self) -> Result<EndpointConfig, ServerConfigError> {
        let mut e = EndpointConfig::new(self.router_addr()?);
        e.router = self.router.name;
        e.rtcert_validity = self.router.rtcert_validity;
        e.attach_timeout = self.router.attach_timeout;
        Ok(e)
    }

    /// The reconnect backoff.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.router.retry_initial, self.router.retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_file_parses() {
        let text = r#"
            data_dir = "/srv/gdp"
            label = "store-1"
            log = "debug"
            [router]
            address = "127.0.0.1:7474"
            rtcert_validity = "2h"
            attach_timeout = 5
            retry_initial = "250ms"
            retry_max = "1m"
            [service]
            max_subscribers = 10
            peer_requests = { per_second = 5, burst = 10 }
            [store]
            check_integrity = false
            [committer]
            max_writes = 64
            [host]
            outbox = 16
        "#;
        let c = ServerConfig::from_toml(text, "test").expect("parses");
        assert_eq!(c.data_dir, PathBuf::from("/srv/gdp"));
        assert_eq!(
            c.key_file(),
            PathBuf::from("/srv/gdp").join(DEFAULT_KEY_FILE)
        );
        assert_eq!(
            c.router.address,
            Some("127.0.0.1:7474".parse().expect("addr"))
        );
        assert_eq!(c.router.rtcert_validity, Duration::from_secs(7200));
        assert_eq!(c.router.attach_timeout, Duration::from_secs(5));
        assert_eq!(c.router.retry_initial, Duration::from_millis(250));
        assert_eq!(c.service.max_subscribers, 10);
        assert!(!c.store.check_integrity);
        assert_eq!(c.committer.max_writes, 64);
        assert_eq!(c.host.outbox, 16);
        assert_eq!(c.host.inbox, 4096);
        assert_eq!(c.validate().map_err(|e| e.to_string()), Ok(()));
        let e = c.endpoint().expect("has a router");
        assert_eq!(e.rtcert_validity, Duration::from_secs(7200));
        assert_eq!(e.router, None);
    }

    #[test]
    fn create_policies_parse() {
        use crate::limits::{CreatePolicy, Rate};
        let key = gdp_certs::SecretKey::from_seed(&[4; 32]).public();
        let text = format!(
            "[router]\naddress = \"127.0.0.1:1\"\n[service]\ncreate_policy = {{ mode = \"allow-list\", creators = [\"{key}\"] }}\n"
        );
        let c = ServerConfig::from_toml(&text, "t").expect("parses");
        assert_eq!(
            c.service.create_policy,
            CreatePolicy::AllowList {
                creators: vec![key]
            }
        );
        assert_eq!(c.validate().map_err(|e| e.to_string()), Ok(()));
        let c = ServerConfig::from_toml("[service]\ncreate_policy = { mode = \"open\" }", "t")
            .expect("parses");
        assert_eq!(c.service.create_policy, CreatePolicy::Open {});
        let c = ServerConfig::from_toml(
            "[service]\ncreate_policy = { mode = \"quota\", per_creator = 3, rate = { per_second = 1, burst = 2 } }",
            "t",
        )
        .expect("parses");
        assert_eq!(
            c.service.create_policy,
            CreatePolicy::Quota {
                per_creator: 3,
                rate: Rate {
                    per_second: 1,
                    burst: 2
                }
            }
        );
        // The defaults when nothing is said.
        let c = ServerConfig::from_toml("", "t").expect("parses");
        assert_eq!(c.service.create_policy, CreatePolicy::default());
        assert_eq!(
            c.service.max_capsules,
            crate::limits::ROUTER_CAPSULES_PER_SERVER
        );
        assert_eq!(c.service.max_subscriptions_per_peer, 64);
        // Keys that are not keys, unknown modes and fields are refused.
        for bad in [
            "create_policy = { mode = \"allow-list\", creators = [\"nope\"] }",
            "create_policy = { mode = \"everyone\" }",
            "create_policy = { mode = \"open\", per_creator = 1 }",
        ] {
            let err =
                ServerConfig::from_toml(&format!("[service]\n{bad}"), "t").expect_err("refused");
            assert!(
                matches!(err, ServerConfigError::Parse { .. }),
                "{bad}: {err}"
            );
        }
        let mut c = ServerConfig::new("/tmp", "127.0.0.1:1".parse().expect("addr"));
        c.service.create_policy = CreatePolicy::Quota {
            per_creator: 0,
            rate: Rate {
                per_second: 1,
                burst: 1,
            },
        };
        assert!(matches!(
            c.validate(),
            Err(ServerConfigError::Invalid { key: "service", .. })
        ));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = ServerConfig::from_toml("colour = \"blue\"", "f").expect_err("unknown key");
        assert!(matches!(err, ServerConfigError::Parse { ref origin, .. } if origin == "f"));
        let err = ServerConfig::from_toml("[router]\nattach_timeout = \"5 parsecs\"", "f")
            .expect_err("bad unit");
        assert!(err.to_string().contains("parsecs"), "{err}");
        let err = ServerConfig::default().validate().expect_err("no router");
        assert!(matches!(
            err,
            ServerConfigError::Invalid {
                key: "router.address",
                ..
            }
        ));
        let mut c = ServerConfig::new("/tmp", "127.0.0.1:1".parse().expect("addr"));
        c.host.outbox = 0;
        assert!(matches!(
            c.validate(),
            Err(ServerConfigError::Invalid {
                key: "host.outbox",
                ..
            })
        ));
        let mut c = ServerConfig::new("/tmp", "127.0.0.1:1".parse().expect("addr"));
        c.router.rtcert_validity = Duration::from_millis(500);
        assert!(matches!(
            c.validate(),
            Err(ServerConfigError::Invalid {
                key: "router.rtcert_validity",
                ..
            })
        ));
    }

    #[test]
    fn embedded_config_lives_under_the_router() {
        let router = Name::from_bytes([8; 32]);
        let addr: SocketAddr = "127.0.0.1:7474".parse().expect("addr");
        let c = ServerConfig::embedded(None, Path::new("/var/lib/r"), addr, router)
            .expect("defaults work");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/r/capsule-server"));
        assert_eq!(c.router.name, Some(router));
        assert_eq!(c.router.address, Some(addr));
        let table: toml::Value =
            toml::from_str("label = \"inside\"\n[host]\ninbox = 8\n").expect("toml");
        let c = ServerConfig::embedded(Some(table), Path::new("/r"), addr, router)
            .expect("valid table");
        assert_eq!(c.label, "inside");
        assert_eq!(c.host.inbox, 8);
        assert_eq!(c.data_dir, PathBuf::from("/r/capsule-server"));
        let table: toml::Value = toml::from_str("data_dir = \"/elsewhere\"").expect("toml");
        let c = ServerConfig::embedded(Some(table), Path::new("/r"), addr, router)
            .expect("valid table");
        assert_eq!(c.data_dir, PathBuf::from("/elsewhere"));
        let table: toml::Value = toml::from_str("nonsense = 1").expect("toml");
        assert!(matches!(
            ServerConfig::embedded(Some(table), Path::new("/r"), addr, router),
            Err(ServerConfigError::Parse { .. })
        ));
        let table: toml::Value = toml::from_str("metrics = \"127.0.0.1:1\"").expect("toml");
        assert!(matches!(
            ServerConfig::embedded(Some(table), Path::new("/r"), addr, router),
            Err(ServerConfigError::Invalid { key: "admin", .. })
        ));
    }

    #[test]
    fn the_written_configuration_reads_back_the_same() {
        let key = gdp_certs::SecretKey::from_seed(&[6; 32]).public();
        for text in [
            String::new(),
            "[router]\naddress = \"127.0.0.1:7474\"\n".to_owned(),
            format!(
                "data_dir = \"/srv\"\nkey_file = \"/k\"\nlog = \"debug\"\nadmin = \"127.0.0.1:9\"\n\
                 [router]\naddress = \"10.0.0.1:7000\"\nname = \"{}\"\nrtcert_validity = \"90m\"\n\
                 [service]\ntree_lease = \"1500ms\"\ncreate_policy = {{ mode = \"allow-list\", creators = [\"{key}\"] }}\n",
                Name::from_bytes([2; 32])
            ),
            "[service]\ncreate_policy = { mode = \"open\" }\n".to_owned(),
            "admin = \"off\"\n".to_owned(),
        ] {
            let c = ServerConfig::from_toml(&text, "t").expect("parses");
            let written = c.to_toml().expect("writes");
            let again = ServerConfig::from_toml(&written, "written").expect("reads back");
            assert_eq!(again, c, "{written}");
        }
        let written = ServerConfig::default().to_toml().expect("writes");
        assert!(written.contains("sync_interval = \"1s\""), "{written}");
        assert!(written.contains("mode = \"quota\""), "{written}");
    }

    proptest! {
        #[test]
        fn durations_round_trip(ms in 0u64..10_000_000) {
            prop_assert_eq!(parse_duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
            prop_assert_eq!(parse_duration(&format!("{ms}")), Ok(Duration::from_secs(ms)));
            prop_assert_eq!(parse_duration(&format!("{ms}m")), Ok(Duration::from_secs(ms * 60)));
        }

        #[test]
        fn duration_parsing_never_panics(text in ".{0,20}") {
            let _ = parse_duration(&text);
        }
    }
}
