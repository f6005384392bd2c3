//! The `gdp-router` command line: one flag for every setting that matters
//! in operation, each overriding the config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gdp_certs::{Name, PublicKey};

use super::parse_duration;
use crate::core::PeeringPolicy;
use crate::directory::DirectoryConfig;

/// A `--via` value: `NAME@HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaArg {
    /// The gateway's name.
    pub name: Name,
    /// Its address.
    pub address: SocketAddr,
}

impl std::str::FromStr for ViaArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, addr) = s
            .split_once('@')
            .ok_or_else(|| format!("{s:?} is not NAME@HOST:PORT"))?;
        Ok(ViaArg {
            name: name.parse().map_err(|e| format!("gateway name: {e}"))?,
            address: addr.parse().map_err(|e| format!("gateway address: {e}"))?,
        })
    }
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// The command line of `gdp-router`. Every flag overrides the same setting
/// of the config file.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "gdp-router", version, about = "The GDP router daemon")]
#[non_exhaustive]
pub struct Cli {
    /// TOML config file.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory; holds the key file unless --key-file says otherwise.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The router's key file, generated (mode 0600) if missing.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Label for a newly generated key.
    #[arg(long)]
    pub label: Option<String>,
    /// UDP address to listen on (default 0.0.0.0:7474).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Public address published in route records; repeat for several.
    /// Default: the listen address (127.0.0.1 if it is unspecified), or
    /// none when --via is set.
    #[arg(long, value_name = "ADDR")]
    pub advertise: Vec<SocketAddr>,
    /// Directory: memory, redis://host:port or redis-cluster://h1:p1,h2:p2.
    #[arg(long, value_name = "SPEC")]
    pub directory: Option<DirectoryConfig>,
    /// Longest one directory call may take (e.g. 300ms).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub directory_timeout: Option<Duration>,
    /// Gateway router for a router without a public address.
    #[arg(long, value_name = "NAME@HOST:PORT")]
    pub via: Option<ViaArg>,
    /// This router's trust-domain certificate file.
    #[arg(long, value_name = "FILE")]
    pub domain_cert: Option<PathBuf>,
    /// A trusted trust-domain key; repeat for several. Routers with a
    /// certificate from one of them are trusted peers (their PDUs' sources
    /// are not checked).
    #[arg(long, value_name = "KEY")]
    pub trusted_domain: Vec<PublicKey>,
    /// A router trusted by name; repeat for several.
    #[arg(long, value_name = "NAME")]
    pub trusted_peer: Vec<Name>,
    /// Which router links are accepted: vouched (default: trusted peers,
    /// and routers the directory vouches for, whose sources are checked),
    /// trusted-only, or insecure-open (any router, no source check).
    #[arg(long, value_name = "POLICY")]
    pub peering: Option<PeeringPolicy>,
    /// SO_SNDBUF requested for the UDP socket, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub socket_send_buffer: Option<usize>,
    /// SO_RCVBUF requested for the UDP socket, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub socket_recv_buffer: Option<usize>,
    /// Serve the admin API (/metrics, /healthz, /readyz, JSON under /v1)
    /// at ADDR, or `off`. Default 127.0.0.1:7475: loopback only.
    #[arg(long, visible_alias = "metrics", value_name = "ADDR|off")]
    pub admin: Option<super::AdminAddr>,
    /// Log filter, e.g. info or gdp_router=debug.
    #[arg(long, value_name = "FILTER", env = "RUST_LOG")]
    pub log: Option<String>,
    /// Lifetime of published route records.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub record_ttl: Option<Duration>,
    /// Longest a looked-up route is cached.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub cache_ttl: Option<Duration>,
    /// QUIC keep-alive interval of idle links.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub keep_alive: Option<Duration>,
    /// A link silent for this long is down.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub idle_timeout: Option<Duration>,
    /// How often the directory is checked for records it lost.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub audit_interval: Option<Duration>,
    /// Protocol violations after which a link is cut.
    #[arg(long, value_name = "N")]
    pub max_violations: Option<u32>,
}
