//! Real `redis-server` processes on loopback: one server, or a cluster.
//!
//! [`RedisServer`] spawns `redis-server` on a free loopback port with no
//! persistence (`--save "" --appendonly no`) in a fresh temporary directory,
//! waits until it answers `PING`, and kills it (SIGKILL) and removes the
//! directory on drop. [`RedisServer::kill`] and [`RedisServer::restart`]
//! (same port, same directory) are for resilience tests.
//!
//! [`RedisCluster`] starts cluster-enabled masters, gives each an even share
//! of the 16384 hash slots (`CLUSTER ADDSLOTSRANGE`), joins them
//! (`CLUSTER MEET`) and waits until every node reports `cluster_state:ok`.
//!
//! The servers are the real `redis-server` binary, taken from the
//! `GDP_REDIS_SERVER` environment variable or found on `PATH`. When it is
//! missing, starting one fails with a message saying to run
//! `scripts/test.sh`, which installs it.
//!
//! `redis-server` binds its port itself, so this is the one place in the
//! kit that picks a free port and lets another process bind it: a server
//! that then fails to start is retried on another port.
//!
//! ```no_run
//! use gdp_testkit::RedisServer;
//!
//! let server = RedisServer::start();
//! println!("Redis listening at {}", server.url());
//! // Killed and its directory removed when `server` is dropped.
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dir::TempDir;
use crate::process::ChildGuard;

/// Environment variable naming the `redis-server` binary to use.
pub const REDIS_SERVER_ENV: &str = "GDP_REDIS_SERVER";

/// How long a server may take to answer its first `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cluster may take to reach `cluster_state:ok`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);
/// Number of hash slots in a Redis Cluster.
const CLUSTER_SLOTS: u32 = 16384;
/// Attempts at finding a free port before giving up.
const PORT_ATTEMPTS: usize = 5;

/// Why a Redis server or cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisServerError {
    /// No `redis-server` binary was found.
    #[error(
        "redis-server not found ({0}): run scripts/test.sh, which installs it, \
         or set {REDIS_SERVER_ENV} to the binary's path"
    )]
    NotInstalled(String),
    /// Spawning the process or preparing its directory failed.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited or never answered `PING`.
    #[error("redis-server on port {port} did not come up: {reason}; its output:\n{log}")]
    NotReady {
        /// The port it was started on.
        port: u16,
        /// What went wrong.
        reason: String,
        /// The end of its output.
        log: String,
    },
    /// A command sent to a server failed.
    #[error("redis command on port {port} failed: {message}")]
    Command {
        /// The server's port.
        port: u16,
        /// The client's error.
        message: String,
    },
    /// The cluster did not become healthy in time.
    #[error("redis cluster not ready after {0:?}: {1}")]
    ClusterNotReady(Duration, String),
}

/// A `redis-server` process on a loopback port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    extra_args: Vec<String>,
    child: Option<ChildGuard>,
}

impl RedisServer {
    /// Starts a standalone server.
    ///
    /// # Panics
    ///
    /// When the server cannot be started, with a message saying why (for a
    /// missing binary: run `scripts/test.sh`).
    pub fn start() -> RedisServer {
        match Self::try_start() {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a standalone server, or says why it could not.
    pub fn try_start() -> Result<RedisServer, RedisServerError> {
        Self::start_with(Vec::new())
    }

    /// Starts a server with extra `redis-server` arguments (each option and
    /// value as separate items, e.g. `["--maxmemory", "10mb"]`).
    pub fn start_with(extra_args: Vec<String>) -> Result<RedisServer, RedisServerError> {
        let binary = find_binary()?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port().map_err(|source| RedisServerError::Spawn {
                binary: binary.clone(),
                source,
            })?;
            let dir = TempDir::try_new(&format!("redis-{port}")).map_err(|source| {
                RedisServerError::Spawn {
                    binary: binary.clone(),
                    source,
                }
            })?;
            let mut server = RedisServer {
                binary: binary.clone(),
                port,
                dir,
                extra_args: extra_args.clone(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                // Most likely the port was taken between probing and binding.
                Err(e @ RedisServerError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RedisServerError::NotInstalled("no attempt made".into())))
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's working directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Kills the server with SIGKILL and waits for it to exit. Its port
    /// and directory are kept for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        // The guard kills and reaps the process when dropped.
        self.child = None;
    }

    /// Kills the server if running and starts it again on the same port,
    /// with the same arguments; returns once it answers `PING`.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.kill();
        self.spawn()
    }

    /// A synchronous client connection, for commands a test writes by hand.
    pub fn connection(&self) -> Result<::redis::Connection, RedisServerError> {
        let err = |e: ::redis::RedisError| RedisServerError::Command {
            port: self.port,
            message: e.to_string(),
        };
        ::redis::Client::open(self.url())
            .map_err(err)?
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(err)
    }

    /// Runs one command on a fresh connection and returns its reply.
    pub fn query(&self, cmd: &::redis::Cmd) -> Result<::redis::Value, RedisServerError> {
        let mut conn = self.connection()?;
        cmd.query(&mut conn).map_err(|e| RedisServerError::Command {
            port: self.port,
            message: e.to_string(),
        })
    }

    fn spawn(&mut self) -> Result<(), RedisServerError> {
        let spawn_err = |source| RedisServerError::Spawn {
            binary: self.binary.clone(),
            source,
        };
        let log_path = self.dir.path().join("redis.log");
        let log = File::create(&log_path).map_err(spawn_err)?;
        let log_err = log.try_clone().map_err(spawn_err)?;
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(spawn_err)?;
        self.child = Some(ChildGuard::new("redis-server", child));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.wait_timeout(Duration::ZERO))
            {
                self.child = None;
                return Err(self.not_ready(format!("exited with {status}")));
            }
            if ping(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(self.not_ready(format!("no PONG within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn not_ready(&self, reason: String) -> RedisServerError {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        RedisServerError::NotReady {
            port: self.port,
            reason,
            log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Its directory goes with the `TempDir` once the process is dead.
        self.kill();
    }
}

/// A Redis Cluster of masters on loopback, killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts a cluster of `masters` nodes (at least 1) sharing all slots.
    ///
    /// # Panics
    ///
    /// When the cluster cannot be started, with a message saying why.
    pub fn start(masters: usize) -> RedisCluster {
        match Self::try_start(masters) {
            Ok(cluster) => cluster,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a cluster of `masters` nodes, or says why it could not.
    pub fn try_start(masters: usize) -> Result<RedisCluster, RedisServerError> {
        let masters = masters.max(1);
        let mut nodes = Vec::with_capacity(masters);
        let mut buses = Vec::with_capacity(masters);
        for _ in 0..masters {
            let bus = free_port().map_err(|source| RedisServerError::Spawn {
                binary: PathBuf::from("redis-server"),
                source,
            })?;
            let node = RedisServer::start_with(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &bus.to_string(),
                ]
                .map(String::from)
                .to_vec(),
            )?;
            nodes.push(node);
            buses.push(bus);
        }
        let cluster = RedisCluster { nodes };
        let per_node = CLUSTER_SLOTS.div_ceil(masters as u32);
        for (i, node) in cluster.nodes.iter().enumerate() {
            let first = i as u32 * per_node;
            let last = ((i as u32 + 1) * per_node).min(CLUSTER_SLOTS) - 1;
            node.query(::redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1))?;
            node.query(
                ::redis::cmd("CLUSTER")
                    .arg("ADDSLOTSRANGE")
                    .arg(first)
                    .arg(last),
            )?;
        }
        let first = &cluster.nodes[0];
        for (node, bus) in cluster.nodes.iter().zip(&buses).skip(1) {
            first.query(
                ::redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(node.port())
                    .arg(*bus),
            )?;
        }
        cluster.wait_ok(masters)?;
        Ok(cluster)
    }

    fn wait_ok(&self, masters: usize) -> Result<(), RedisServerError> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let known = format!("cluster_known_nodes:{masters}");
        loop {
            let mut last = String::new();
            let mut all_ok = true;
            for node in &self.nodes {
                let info = match node.query(::redis::cmd("CLUSTER").arg("INFO")) {
                    Ok(::redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                    Ok(::redis::Value::VerbatimString { text, .. }) => text,
                    Ok(other) => format!("{other:?}"),
                    Err(e) => e.to_string(),
                };
                if !(info.contains("cluster_state:ok") && info.contains(&known)) {
                    all_ok = false;
                    last = format!("port {}: {}", node.port(), info.replace("\r\n", " "));
                    break;
                }
            }
            if all_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RedisServerError::ClusterNotReady(CLUSTER_TIMEOUT, last));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The nodes, in slot order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, mutably (to kill or restart one).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// The directory configuration string:
    /// `redis-cluster://127.0.0.1:p1,127.0.0.1:p2,...`.
    pub fn config_string(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }
}

fn find_binary() -> Result<PathBuf, RedisServerError> {
    if let Some(path) = std::env::var_os(REDIS_SERVER_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(RedisServerError::NotInstalled(format!(
                "{REDIS_SERVER_ENV}={} is not a file",
                path.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| RedisServerError::NotInstalled("not on PATH".into()))
}

/// A port that was free a moment ago (see the module docs).
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether a server answers `PING` on `port` right now.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_answers_is_killed_and_restarts_on_its_port() {
        let mut server = RedisServer::start();
        let dir = server.dir().to_owned();
        assert!(dir.is_dir());
        assert!(server.is_running());
        let set = ::redis::cmd("SET").arg("k").arg("v").clone();
        assert_eq!(server.query(&set).expect("SET"), ::redis::Value::Okay);
        let port = server.port();
        server.kill();
        assert!(!server.is_running());
        assert!(!ping(port));
        server.restart().expect("restarts");
        assert_eq!(server.port(), port);
        // No persistence: the restarted server is empty.
        let get = ::redis::cmd("GET").arg("k").clone();
        assert_eq!(server.query(&get).expect("GET"), ::redis::Value::Nil);
        drop(server);
        assert!(!dir.exists(), "the directory goes with the server");
    }
}
