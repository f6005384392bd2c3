//! The `gdp-router` command line: one flag for every setting that matters
//! in operation, each overriding the config file.
//!
//! Every setting flag can also come from the environment: `--listen` from
//! `GDP_ROUTER_LISTEN`, `--data-dir` from `GDP_ROUTER_DATA_DIR`, and so on
//! ([`ENV_PREFIX`] and the flag's name in capitals, `-` as `_`), except the
//! log filter, which comes from `RUST_LOG`. A repeatable flag takes a
//! comma-separated list from its variable (`GDP_ROUTER_ADVERTISE=a:1,b:2`).
//! A flag wins over its variable, which wins over the config file, which
//! wins over the default. `--check-config` is an action, not a setting, and
//! has no variable.

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

/// The prefix of the environment variables that stand for the flags.
pub const ENV_PREFIX: &str = "GDP_ROUTER_";

/// The command line of `gdp-router`. Every flag overrides the same setting
/// of the config file.
///
/// Every setting flag can also come from the environment: `--listen` from
/// `GDP_ROUTER_LISTEN`, `--data-dir` from `GDP_ROUTER_DATA_DIR`, and so on
/// ([`ENV_PREFIX`] and the flag's name in capitals, `-` as `_`), except the
/// log filter, which comes from `RUST_LOG`. A repeatable flag takes a
/// comma-separated list from its variable (`GDP_ROUTER_ADVERTISE=a:1,b:2`).
/// A flag wins over its variable, which wins over the config file, which
/// wins over the default. `--check-config` is an action, not a setting, and
/// has no variable.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "gdp-router", version, about = "The GDP router daemon")]
#[non_exhaustive]
pub struct Cli {
    /// TOML config file.
    #[arg(short, long, value_name = "FILE", env = "GDP_ROUTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory; holds the key file unless --key-file says otherwise.
    #[arg(long, value_name = "DIR", env = "GDP_ROUTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The router's key file, generated (mode 0600) if missing.
    #[arg(long, value_name = "FILE", env = "GDP_ROUTER_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Label for a newly generated key.
    #[arg(long, env = "GDP_ROUTER_LABEL")]
    pub label: Option<String>,
    /// UDP address to listen on (default 0.0.0.0:7474).
    #[arg(long, value_name = "ADDR", env = "GDP_ROUTER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Public address published in route records; repeat for several.
    /// Default: the listen address (127.0.0.1 if it is unspecified), or
    /// none when --via is set.
    #[arg(
        long,
        value_name = "ADDR",
        env = "GDP_ROUTER_ADVERTISE",
        value_delimiter = ','
    )]
    pub advertise: Vec<SocketAddr>,
    /// Directory: memory, redis://host:port or redis-cluster://h1:p1,h2:p2.
    #[arg(
        long,
        value_name = "SPEC",
        env = "GDP_ROUTER_DIRECTORY",
        hide_env_values = true
    )]
    pub directory: Option<DirectoryConfig>,
    /// Longest one directory call may take (e.g. 300ms).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, env = "GDP_ROUTER_DIRECTORY_TIMEOUT")]
    pub directory_timeout: Option<Duration>,
    /// Gateway router for a router without a public address.
    #[arg(long, value_name = "NAME@HOST:PORT", env = "GDP_ROUTER_VIA")]
    pub via: Option<ViaArg>,
    /// This router's trust-domain certificate file.
    #[arg(long, value_name = "FILE", env = "GDP_ROUTER_DOMAIN_CERT")]
    pub domain_cert: Option<PathBuf>,
    /// A trusted trust-domain key; repeat for several. Routers with a
    /// certificate from one of them are trusted peers (their PDUs' sources
    /// are not checked).
    #[arg(
        long,
        value_name = "KEY",
        env = "GDP_ROUTER_TRUSTED_DOMAIN",
        value_delimiter = ','
    )]
    pub trusted_domain: Vec<PublicKey>,
    /// A router trusted by name; repeat for several.
    #[arg(
        long,
        value_name = "NAME",
        env = "GDP_ROUTER_TRUSTED_PEER",
        value_delimiter = ','
    )]
    pub trusted_peer: Vec<Name>,
    /// Which router links are accepted: vouched (default: trusted peers,
    /// and routers the directory vouches for, whose sources are checked),
    /// trusted-only, or insecure-open (any router, no source check).
    #[arg(long, value_name = "POLICY", env = "GDP_ROUTER_PEERING")]
    pub peering: Option<PeeringPolicy>,
    /// SO_SNDBUF requested for the UDP socket, in bytes.
    #[arg(long, value_name = "BYTES", env = "GDP_ROUTER_SOCKET_SEND_BUFFER")]
    pub socket_send_buffer: Option<usize>,
    /// SO_RCVBUF requested for the UDP socket, in bytes.
    #[arg(long, value_name = "BYTES", env = "GDP_ROUTER_SOCKET_RECV_BUFFER")]
    pub socket_recv_buffer: Option<usize>,
    /// Offer link protocol gdp/2, whose streams carry compact frames (a
    /// PDU's two names as a one-byte label between neighbours): true
    /// (default) or false (every link speaks gdp/1).
    #[arg(long, value_name = "BOOL", env = "GDP_ROUTER_COMPACT_HEADERS")]
    pub compact_headers: Option<bool>,
    /// Serve the admin API (/metrics, /healthz, /readyz, JSON under /v1)
    /// at ADDR, or `off`. Default 127.0.0.1:7475: loopback only.
    #[arg(
        long,
        visible_alias = "metrics",
        value_name = "ADDR|off",
        env = "GDP_ROUTER_ADMIN"
    )]
    pub admin: Option<super::AdminAddr>,
    /// Log filter, e.g. info or gdp_router=debug (environment: RUST_LOG).
    #[arg(long, value_name = "FILTER", env = "RUST_LOG")]
    pub log: Option<String>,
    /// Lifetime of published route records.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, env = "GDP_ROUTER_RECORD_TTL")]
    pub record_ttl: Option<Duration>,
    /// Longest a looked-up route is cached.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, env = "GDP_ROUTER_CACHE_TTL")]
    pub cache_ttl: Option<Duration>,
    /// QUIC keep-alive interval of idle links.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, env = "GDP_ROUTER_KEEP_ALIVE")]
    pub keep_alive: Option<Duration>,
    /// A link silent for this long is down.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, env = "GDP_ROUTER_IDLE_TIMEOUT")]
    pub idle_timeout: Option<Duration>,
    /// How often the directory is checked for records it lost.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, env = "GDP_ROUTER_AUDIT_INTERVAL")]
    pub audit_interval: Option<Duration>,
    /// Protocol violations after which a link is cut.
    #[arg(long, value_name = "N", env = "GDP_ROUTER_MAX_VIOLATIONS")]
    pub max_violations: Option<u32>,
    /// Load and check the configuration (file, environment and flags),
    /// print the settings in force with secrets masked, and exit: 0 when
    /// it is valid, 2 when it is not. Starts nothing and writes nothing.
    #[arg(long)]
    pub check_config: bool,
}

impl Cli {
    /// The names of the variables in this process's environment that stand
    /// for flags (`RUST_LOG` included), sorted; not their values, which
    /// may be secret.
    pub fn environment_in_use() -> Vec<String> {
        use clap::CommandFactory as _;
        let mut names: Vec<String> = Cli::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .filter(|name| std::env::var_os(name).is_some())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// The variable of every setting flag follows the documented rule, so
    /// an operator can derive it from `--help`.
    #[test]
    fn every_setting_flag_has_its_environment_variable() {
        let command = Cli::command();
        let mut seen = 0;
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version" | "check_config") {
                assert_eq!(arg.get_env(), None, "{id} is an action");
                continue;
            }
            let expected = if id == "log" {
                "RUST_LOG".to_owned()
            } else {
                format!("{ENV_PREFIX}{}", id.to_uppercase())
            };
            let env = arg.get_env().and_then(|e| e.to_str());
            assert_eq!(env, Some(expected.as_str()), "--{id}");
            seen += 1;
        }
        assert!(seen >= 23, "only {seen} setting flags");
    }

    /// The directory spec may hold a password: `--help` must not print the
    /// variable's value.
    #[test]
    fn the_directory_variable_is_not_shown_in_help() {
        let command = Cli::command();
        let directory = command
            .get_arguments()
            .find(|a| a.get_id() == "directory")
            .expect("--directory");
        assert!(directory.is_hide_env_values_set());
    }
}
