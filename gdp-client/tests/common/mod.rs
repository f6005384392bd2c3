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

use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use gdp_client::{Client, ClientOptions};
use gdp_link::endpoint::{EndpointConfig, EndpointLink, EndpointReceiver};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::control::AdvertiseEntry;
pub use gdp_testkit::TempDir;
use gdp_testkit::{
    ChildGuard, RedisServer, spawn_with_start_line, start_line_field, workspace_bin,
};

/// How long a router may take to print its start line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `gdp-router` process on loopback with the memory directory.
pub struct Router {
    pub proc: ChildGuard,
    pub name: Name,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Where its admin API (metrics included) is served, if it is.
    pub admin: Option<SocketAddr>,
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
        let admin = start_line_field(&line, "admin").and_then(|m| m.parse().ok());
        Router {
            proc,
            name,
            addr,
            data_dir,
            admin,
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

/// Capsule servers meant as the replicas of capsules: `n` of them attached
/// to one router on a real `redis-server` directory. Fields drop in order:
/// the servers and the router stop before their directory goes.
pub struct Replicas {
    pub servers: Vec<Server>,
    pub names: Vec<Name>,
    pub router: Router,
    pub dir: TempDir,
    pub redis: RedisServer,
}

impl Replicas {
    /// A router (with `router_args` added to its command line) and `n`
    /// servers, `replica0`, `replica1`, ...
    pub fn start(tag: &str, n: usize, router_args: &[&str]) -> Replicas {
        let redis = RedisServer::start();
        let dir = TempDir::new(tag);
        let router =
            Router::start_with_args(dir.path(), "hub", "127.0.0.1:0", &redis.url(), router_args);
        let servers: Vec<Server> = (0..n)
            .map(|i| Server::start(dir.path(), &format!("replica{i}"), &router))
            .collect();
        let names = servers.iter().map(|s| s.name).collect();
        Replicas {
            servers,
            names,
            router,
            dir,
            redis,
        }
    }

    /// Starts server `i` again on its store (after it was killed).
    pub fn restart(&mut self, i: usize) {
        let again = Server::start(self.dir.path(), &format!("replica{i}"), &self.router);
        assert_eq!(again.name, self.names[i], "the same key, the same name");
        self.servers[i] = again;
    }

    /// `identity` attached to the router with `options`.
    pub async fn client(&self, identity: &Identity, options: ClientOptions) -> Client {
        Client::connect(
            self.router.addr,
            identity.clone(),
            options.with_router(self.router.name),
        )
        .await
        .expect("the client attaches")
    }
}

/// A fake capsule server named `label`, attached to `router` like a real
/// one and advertising the capsule `md` with a genuine AdCert from `owner`
/// (valid from a minute ago for an hour): the router routes the
/// capsule's name to it, and the test answers its PDUs.
pub async fn fake_server(
    router: &Router,
    label: &str,
    owner: &SecretKey,
    md: &Metadata,
) -> (Identity, EndpointLink, EndpointReceiver) {
    let fake = Identity::generate(Kind::Server, label).expect("identity");
    let config = EndpointConfig::new(router.addr).with_router(router.name);
    let (link, incoming) = EndpointLink::connect(&fake, &config).await.expect("attach");
    let now = Timestamp::now();
    let adcert = AdCert::issue(
        owner,
        md.name(),
        fake.name(),
        Validity::new(
            now.saturating_sub(Duration::from_secs(60)),
            now.saturating_add(Duration::from_secs(3600)),
        ),
    );
    link.advertise(vec![AdvertiseEntry {
        capsule_md: md.clone(),
        adcert,
    }])
    .await
    .expect("advertise");
    (fake, link, incoming)
}

/// The tail of the capsule of `md` as server `server` alone serves it,
/// verified against `md`.
pub async fn tail_at(client: &Client, md: &Metadata, server: Name) -> Result<u64, String> {
    let request = CapsuleRequest::at(md.name(), CapsuleRequest::Latest);
    match client.request(server, &request).await {
        Ok(CapsuleResponse::Records { records, proof }) => {
            proof
                .verify_range(md, &records)
                .map_err(|e| format!("latest does not verify: {e}"))?;
            Ok(records.last().map_or(0, |r| r.seqno()))
        }
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}
