//! The GDP daemons as both ways of running a topology start them: their
//! programs, key files and command lines.
//!
//! The local testbed ([`crate::testbed`]) runs these command lines inside
//! network namespaces and the compose file ([`crate::compose`]) writes them
//! into its services, each with its own paths; the flags, their order and
//! the embedded capsule server's config are decided here once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use gdp_certs::{Identity, Kind};

use crate::topology::Topology;

/// The router program.
pub const ROUTER: &str = "gdp-router";
/// The standalone capsule server program.
pub const CAPSULE_SERVER: &str = "gdp-capsule-server";
/// The `gdp` command (the testbed's readiness pings, and users).
pub const GDP: &str = "gdp";

/// The port of a testbed router's admin API (`/metrics`), on its host's
/// management address.
pub const ADMIN_PORT: u16 = 7475;

/// The key file of a host's router, in that host's key directory.
pub const ROUTER_KEY: &str = "router.key";
/// The key file of a host's capsule server, in that host's key directory.
pub const CAPSULE_SERVER_KEY: &str = "capsule-server.key";

/// Key files made ahead of time, one directory per host
/// (`<dir>/<host>/router.key`, `<dir>/<host>/capsule-server.key`), and the
/// names they hold. Made before anything starts, so that every name is
/// known up front (the gateway of a `via` router, the embedded server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The directory (absolute).
    pub dir: PathBuf,
    /// Router names by host.
    pub routers: BTreeMap<String, String>,
    /// Capsule server names by host.
    pub servers: BTreeMap<String, String>,
}

impl Keys {
    /// Loads the key files of `topology` under `dir`, generating (mode
    /// 0600) those that do not exist yet.
    pub fn load_or_generate(topology: &Topology, dir: &Path) -> anyhow::Result<Keys> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = std::fs::canonicalize(dir)?;
        let mut keys = Keys {
            dir: dir.clone(),
            routers: BTreeMap::new(),
            servers: BTreeMap::new(),
        };
        for host in &topology.hosts {
            let Some(r) = host.router() else { continue };
            let path = keys.host_dir(&host.name).join(ROUTER_KEY);
            let (id, _) = Identity::load_or_generate(&path, Kind::Router, &host.name)
                .with_context(|| format!("the router key of {}", host.name))?;
            keys.routers
                .insert(host.name.clone(), id.name().to_string());
            if r.capsule_server.is_some() {
                let path = keys.host_dir(&host.name).join(CAPSULE_SERVER_KEY);
                let label = format!("{}-capsule-server", host.name);
                let (id, _) = Identity::load_or_generate(&path, Kind::Server, &label)
                    .with_context(|| format!("the capsule server key of {}", host.name))?;
                keys.servers
                    .insert(host.name.clone(), id.name().to_string());
            }
        }
        Ok(keys)
    }

    /// The key directory of `host`.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join(host)
    }
}

/// The command line of a `gdp-router`, without the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterArgs {
    /// `--data-dir`.
    pub data_dir: String,
    /// `--listen`.
    pub listen: SocketAddr,
    /// `--directory`: the directory's URL.
    pub directory: String,
    /// `--log`: a tracing filter.
    pub log: String,
    /// `--advertise`: the addresses published in route records; empty:
    /// the router's default (its listen address, or none behind a gateway).
    pub advertise: Vec<SocketAddr>,
    /// `--via NAME@ADDRESS`: the gateway's name and address.
    pub via: Option<(String, String)>,
    /// `--key-file`; `None`: the router makes its key in its data directory.
    pub key_file: Option<String>,
    /// `--config`: a config file, which holds the embedded capsule server's
    /// table ([`embedded_config`]).
    pub config: Option<String>,
    /// `--admin`: where the admin API (`/metrics`) listens; `None`: the
    /// router's default (loopback).
    pub admin: Option<SocketAddr>,
}

impl RouterArgs {
    /// The arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            self.data_dir.clone(),
            "--listen".into(),
            self.listen.to_string(),
            "--directory".into(),
            self.directory.clone(),
            "--log".into(),
            self.log.clone(),
        ];
        if !self.advertise.is_empty() {
            let list: Vec<String> = self.advertise.iter().map(ToString::to_string).collect();
            args.push("--advertise".into());
            args.push(list.join(","));
        }
        if let Some((name, address)) = &self.via {
            args.push("--via".into());
            args.push(format!("{name}@{address}"));
        }
        if let Some(key_file) = &self.key_file {
            args.push("--key-file".into());
            args.push(key_file.clone());
        }
        if let Some(config) = &self.config {
            args.push("--config".into());
            args.push(config.clone());
        }
        if let Some(admin) = self.admin {
            args.push("--admin".into());
            args.push(admin.to_string());
        }
        args
    }
}

/// The command line of a standalone `gdp-capsule-server`, without the
/// program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerArgs {
    /// `--data-dir`.
    pub data_dir: String,
    /// `--router`: its router's address.
    pub router: SocketAddr,
    /// `--log`: a tracing filter.
    pub log: String,
    /// `--key-file`; `None`: the server makes its key in its data
    /// directory.
    pub key_file: Option<String>,
    /// `--router-name`; `None`: the first router that answers is trusted.
    pub router_name: Option<String>,
}

impl ServerArgs {
    /// The arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            self.data_dir.clone(),
            "--router".into(),
            self.router.to_string(),
            "--log".into(),
            self.log.clone(),
        ];
        if let Some(key_file) = &self.key_file {
            args.push("--key-file".into());
            args.push(key_file.clone());
        }
        if let Some(name) = &self.router_name {
            args.push("--router-name".into());
            args.push(name.clone());
        }
        args
    }
}

/// The config file of a router that embeds a capsule server: a
/// `[capsule_server]` table, with the server's key file if given.
pub fn embedded_config(key_file: Option<&str>) -> String {
    let mut table = toml::Table::new();
    if let Some(key_file) = key_file {
        table.insert("key_file".into(), key_file.into());
    }
    let mut file = toml::Table::new();
    file.insert("capsule_server".into(), table.into());
    toml::to_string(&file).expect("a table of tables and strings always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_config_is_a_capsule_server_table() {
        assert_eq!(embedded_config(None), "[capsule_server]\n");
        assert_eq!(
            embedded_config(Some("/k/capsule-server.key")),
            "[capsule_server]\nkey_file = \"/k/capsule-server.key\"\n"
        );
        let odd = embedded_config(Some("/a \"quoted\" \\ path"));
        let parsed: toml::Table = toml::from_str(&odd).expect("valid TOML");
        assert_eq!(
            parsed["capsule_server"]["key_file"].as_str(),
            Some("/a \"quoted\" \\ path")
        );
    }

    #[test]
    fn flags_come_in_one_order() {
        let router = RouterArgs {
            data_dir: "/d".into(),
            listen: "10.0.0.1:7474".parse().expect("addr"),
            directory: "redis://10.0.0.2:6379".into(),
            log: "info".into(),
            advertise: Vec::new(),
            via: Some(("gw".into(), "10.0.0.3:7474".into())),
            key_file: Some("/k".into()),
            config: Some("/c".into()),
            admin: Some("10.77.0.10:7475".parse().expect("addr")),
        };
        assert_eq!(
            router.to_args().join(" "),
            "--data-dir /d --listen 10.0.0.1:7474 --directory redis://10.0.0.2:6379 \
             --log info --via gw@10.0.0.3:7474 --key-file /k --config /c --admin 10.77.0.10:7475"
        );
        let server = ServerArgs {
            data_dir: "/d".into(),
            router: "10.0.0.1:7474".parse().expect("addr"),
            log: "warn".into(),
            key_file: None,
            router_name: Some("r".into()),
        };
        assert_eq!(
            server.to_args().join(" "),
            "--data-dir /d --router 10.0.0.1:7474 --log warn --router-name r"
        );
    }
}
