//! The state file: everything `up` created, so that `down`, `status` and
//! `exec` can find it. `up` rewrites it after every step, so even an `up`
//! that was killed half way leaves enough for `down` to clean up.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::network::{Impairment, NetworkKind};
use crate::sys::Spawned;
use crate::topology::ServerMode;

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "testbed.json";

/// A process `up` started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    /// `redis-server`, `gdp-router` or `gdp-capsule-server`.
    pub program: String,
    /// The host it runs on (`directory` for redis).
    pub host: String,
    /// Its namespace; none for the root namespace.
    pub namespace: Option<String>,
    /// Its pid.
    pub pid: u32,
    /// Its kernel start time, to tell it from a later process with the
    /// same pid.
    pub start_time: u64,
    /// Its GDP name, if it has one.
    pub name: Option<String>,
    /// Its standard output.
    pub stdout: PathBuf,
    /// Its standard error (its log).
    pub log: PathBuf,
    /// The program it runs (for `restart`).
    #[serde(default)]
    pub binary: Option<PathBuf>,
    /// Its arguments (for `restart`).
    #[serde(default)]
    pub args: Vec<String>,
}

impl ProcessState {
    /// The pid and start time.
    pub fn spawned(&self) -> Spawned {
        Spawned {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

/// A host's router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterState {
    /// Its GDP name.
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its gateway host, if any.
    pub via: Option<String>,
    /// Its admin API (`/metrics`), on the management network.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
}

/// A host's capsule server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    /// Its GDP name.
    pub name: String,
    /// Embedded in the router, or a process of its own.
    pub mode: ServerMode,
}

/// One host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// The host's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its address on the testbed network.
    pub address: Ipv4Addr,
    /// The host whose router clients on this host use (this host itself
    /// when it runs a router).
    pub gdp_router_host: String,
    /// That router's address (`GDP_ROUTER` in `exec`).
    pub gdp_router: SocketAddr,
    /// That router's name (`GDP_ROUTER_NAME` in `exec`), once known.
    pub gdp_router_name: Option<String>,
    /// Its router, if it runs one.
    pub router: Option<RouterState>,
    /// Its capsule server, if it runs one.
    pub capsule_server: Option<ServerState>,
}

/// The directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryState {
    /// Its namespace; none for the root namespace.
    pub namespace: Option<String>,
    /// The `--directory` spec the routers use.
    pub url: String,
}

/// One member's port on a data network: an interface in the member's
/// namespace (named after the network) and its peer in the links namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortState {
    /// The member host.
    pub host: String,
    /// Its namespace.
    pub namespace: String,
    /// The interface in that namespace.
    pub interface: String,
    /// Its MAC address.
    pub mac: String,
    /// Its address on the network.
    pub address: Ipv4Addr,
    /// The peer interface in the links namespace (a bridge port, or the
    /// delay relay's input).
    pub port: String,
    /// With a delay relay: the links namespace's interface the relay writes
    /// to (its veth peer is the bridge port).
    pub relay_output: Option<String>,
    /// Whether the port is up (not cut).
    pub up: bool,
}

/// A segment or link of the testbed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// Its name.
    pub name: String,
    /// Segment or link.
    pub kind: NetworkKind,
    /// Its subnet.
    pub subnet: String,
    /// Its bridge in the links namespace.
    pub bridge: String,
    /// Its impairment now.
    pub impairment: Impairment,
    /// Its members' ports.
    pub ports: Vec<PortState>,
}

impl NetworkState {
    /// The port of `host`, if it is a member.
    pub fn port(&self, host: &str) -> Option<&PortState> {
        self.ports.iter().find(|p| p.host == host)
    }
}

/// Everything one testbed is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The prefix of every namespace and link name.
    pub prefix: String,
    /// The topology file it was made from.
    pub topology: PathBuf,
    /// The testbed network.
    pub subnet: String,
    /// Whether `up` finished.
    pub complete: bool,
    /// Namespaces created, in creation order.
    pub namespaces: Vec<String>,
    /// Links created in the root namespace.
    pub root_links: Vec<String>,
    /// Processes started, in start order.
    pub processes: Vec<ProcessState>,
    /// The directory.
    pub directory: Option<DirectoryState>,
    /// The hosts.
    pub hosts: Vec<HostState>,
    /// The namespace of the data networks' bridges and delay relays (only
    /// with segments or links).
    #[serde(default)]
    pub links_namespace: Option<String>,
    /// Whether the kernel has netem (checked by `up`): then it delays and
    /// drops; else a delay relay delays and nftables drops.
    #[serde(default)]
    pub netem: bool,
    /// The segments and links.
    #[serde(default)]
    pub networks: Vec<NetworkState>,
    /// Where the daemons run: host processes in the namespaces, or
    /// containers joined to them.
    #[serde(default)]
    pub engine: Engine,
}

impl State {
    /// The state file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads the state in `dir`; `None` when there is no state file.
    pub fn load(dir: &Path) -> anyhow::Result<Option<State>> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let state =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Some(state))
    }

    /// Writes the state to `dir` atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).context("encoding the state")?;
        std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&HostState> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The segment or link called `name`.
    pub fn network(&self, name: &str) -> Option<&NetworkState> {
        self.networks.iter().find(|n| n.name == name)
    }
}
