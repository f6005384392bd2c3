//! Helpers of the integration tests: real `gdp-router` and
//! `gdp-capsule-server` processes and a client attached to a router.
//!
//! The router and capsule-server binaries are not built by `cargo test -p
//! gdp-client`; `scripts/test.sh` builds them first (`cargo build
//! --workspace --bins`). The test kit finds them next to the test
//! executable.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "helpers shared by test binaries, each using a part"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gdp_certs::{Identity, Kind, Name};
use gdp_client::{Client, ClientOptions};
pub use gdp_testkit::TempDir;
use gdp_testkit::{ChildGuard, spawn_with_start_line, start_line_field, workspace_bin};

/// How long a router may take to print its start line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `gdp-router` process on loopback with the memory directory.
pub struct Router {
    pub proc: ChildGuard,
    pub name: Name,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Where its metrics are served, if they are.
    pub metrics: Option<SocketAddr>,
}

impl Router {
    /// Starts a router with its data under `dir/label`, listening on
    /// `listen` (a free port with `127.0.0.1:0`).
    pub fn start(dir: &Path, label: &str, listen: &str) -> Router {
        Router::start_with_directory(dir, label, listen, "memory")
    }

    /// [`Router::start`] with the directory `directory` (`memory`, or a
    /// Redis URL that routers share).
    pub fn start_with_directory(dir: &Path, label: &str, listen: &str, directory: &str) -> Router {
        Router::start_with_args(dir, label, listen, directory, &[])
    }

    /// [`Router::start_with_directory`] with more command-line arguments.
    pub fn start_with_args(
        dir: &Path,
        label: &str,
        listen: &str,
        directory: &str,
        extra: &[&str],
    ) -> Router {
        let data_dir = dir.join(label);
        let (proc, line) = spawn_with_start_line(
            Command::new(workspace_bin("gdp-router"))
                .args(extra)
                .args([
                    "--data-dir",
                    data_dir.to_str().expect("utf-8 path"),
                    "--listen",
                    listen,
                    "--directory",
                    directory,
                    "--log",
                    "warn",
                    "--idle-timeout",
                    "3s",
                    "--keep-alive",
                    "500ms",
                ])
                .stderr(Stdio::inherit()),
            label,
            None,
            START_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let field = |key: &str| {
            start_line_field(&line, key)
                .unwrap_or_else(|| panic!("no {key}= in the router's start line {line:?}"))
        };
        let name: Name = field("name").parse().expect("router name");
        let addr: SocketAddr = field("listen").parse().expect("router address");
        let metrics = start_line_field(&line, "metrics").and_then(|m| m.parse().ok());
        Router {
            proc,
            name,
            addr,
            data_dir,
            metrics,
        }
    }
}

/// A `gdp-capsule-server` process attached to a router.
pub struct Server {
    pub proc: ChildGuard,
    pub name: Name,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts a server with its data in `dir/label`; its key is made here
    /// so that its name is known.
    pub fn start(dir: &Path, label: &str, router: &Router) -> Server {
        let data_dir = dir.join(label);
        std::fs::create_dir_all(&data_dir).expect("server dir");
        let key = data_dir.join("capsule-server.key");
        let name = match Identity::load(&key) {
            Ok(id) => id.name(),
            Err(_) => {
                let id = Identity::generate(Kind::Server, label).expect("server identity");
                id.save(&key).expect("server key saved");
                id.name()
            }
        };
        let child = Command::new(workspace_bin("gdp-capsule-server"))
            .args([
                "--data-dir",
                data_dir.to_str().expect("utf-8 path"),
                "--router",
                &router.addr.to_string(),
                "--router-name",
                &router.name.to_string(),
                "--log",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gdp-capsule-server starts");
        Server {
            proc: ChildGuard::new(label, child),
            name,
            data_dir,
        }
    }
}

/// A router and a capsule server attached to it.
pub struct Net {
    pub dir: TempDir,
    pub router: Router,
    pub server: Server,
}

impl Net {
    pub fn start(tag: &str) -> Net {
        let dir = TempDir::new(tag);
        let router = Router::start(dir.path(), "router", "127.0.0.1:0");
        let server = Server::start(dir.path(), "server", &router);
        Net {
            dir,
            router,
            server,
        }
    }

    /// A new client identity attached to the router.
    pub async fn client(&self, label: &str) -> (Client, Identity) {
        self.client_with(label, ClientOptions::default()).await
    }

    pub async fn client_with(&self, label: &str, options: ClientOptions) -> (Client, Identity) {
        let id = Identity::generate(Kind::Client, label).expect("client identity");
        let client = Client::connect(
            self.router.addr,
            id.clone(),
            options.with_router(self.router.name),
        )
        .await
        .expect("client attaches");
        (client, id)
    }
}
