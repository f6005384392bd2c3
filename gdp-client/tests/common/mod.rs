//! Helpers of the integration tests: real `gdp-router` and
//! `gdp-capsule-server` processes, temporary directories, and a client
//! attached to a router.
//!
//! The router and capsule-server binaries are not built by `cargo test -p
//! gdp-client`; `scripts/test.sh` builds them first (`cargo build
//! --workspace --bins`). They are looked up next to the test executable.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "helpers shared by test binaries, each using a part"
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gdp_certs::{Identity, Kind, Name};
use gdp_client::{Client, ClientOptions};

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "gdp-client-{tag}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The path of a workspace binary, next to the test executable's directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub label: String,
}

impl Proc {
    /// Sends SIGKILL and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (up to 10 s) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `gdp-router` process on loopback with the memory directory.
pub struct Router {
    pub proc: Proc,
    pub name: Name,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Router {
    /// Starts a router with its data under `dir/label`, listening on
    /// `listen` (a free port with `127.0.0.1:0`).
    pub fn start(dir: &Path, label: &str, listen: &str) -> Router {
        let data_dir = dir.join(label);
        let mut child = Command::new(workspace_bin("gdp-router"))
            .args([
                "--data-dir",
                data_dir.to_str().expect("utf-8 path"),
                "--listen",
                listen,
                "--directory",
                "memory",
                "--log",
                "warn",
                "--idle-timeout",
                "3s",
                "--keep-alive",
                "500ms",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gdp-router starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the router prints its start line");
        let field = |key: &str| -> String {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
                .unwrap_or_else(|| panic!("no {key}= in the router's start line {line:?}"))
        };
        let name: Name = field("name").parse().expect("router name");
        let addr: SocketAddr = field("listen").parse().expect("router address");
        Router {
            proc: Proc {
                child,
                label: label.to_owned(),
            },
            name,
            addr,
            data_dir,
        }
    }
}

/// A `gdp-capsule-server` process attached to a router.
pub struct Server {
    pub proc: Proc,
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
            proc: Proc {
                child,
                label: label.to_owned(),
            },
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

/// Retries `f` until it succeeds or `within` passes (for a server that is
/// still attaching).
pub async fn eventually<T, E: std::fmt::Debug, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing after {within:?}: {e:?}"),
        }
    }
}
