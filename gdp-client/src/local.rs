//! A whole GDP in one process: routers sharing an in-memory directory and
//! one capsule server, all on loopback, for demos, examples and tests.
//!
//! ```text
//!   R1 ── R2 ── ... ── Rn        (QUIC links on 127.0.0.1, dialed on demand)
//!         │
//!   capsule server (store in a temporary directory, removed at shutdown)
//!   shared MemoryDirectory: every router publishes and looks up there
//! ```
//!
//! Nothing here is a shortcut: the routers are the `gdp-router` driver and
//! core, the server is `gdp_capsule_server::run`, and clients attach over
//! QUIC exactly as they would to remote routers.
//!
//! ```no_run
//! use gdp_client::local::LocalGdp;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let gdp = LocalGdp::start(3).await?;
//! let (client, me) = gdp.client(0, "writer").await?;
//! let created = client
//!     .create_capsule(gdp.server_name(), me.secret_key(), gdp_client::CapsuleSpec::new("log"))
//!     .await?;
//! println!("capsule {} on {}", created.capsule.name(), gdp.server_name());
//! gdp.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gdp_capsule_server::config::ServerConfig;
use gdp_certs::{Identity, Kind, Name};
use gdp_link::Transport;
use gdp_router::config::RouterSettings;
use gdp_router::core::RouterCore;
use gdp_router::directory::{Directory, MemoryDirectory};
use gdp_router::driver::Running;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Client, ClientError, ClientOptions};

/// How long [`LocalGdp::start`] waits for the capsule server to attach.
const ATTACH_WAIT: Duration = Duration::from_secs(15);

/// Why a local GDP could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// An identity could not be made or saved.
    #[error("identity: {0}")]
    Identity(String),
    /// A router could not start.
    #[error("router {label}: {reason}")]
    Router {
        /// The router's label.
        label: String,
        /// Why.
        reason: String,
    },
    /// The capsule server failed or did not attach in time.
    #[error("capsule server: {0}")]
    Server(String),
    /// The temporary directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A client could not attach.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// One router of a [`LocalGdp`].
#[derive(Debug)]
struct LocalRouter {
    running: Running,
    addr: SocketAddr,
}

/// A running local GDP. See the [module documentation](self).
#[derive(Debug)]
pub struct LocalGdp {
    routers: Vec<LocalRouter>,
    server: Name,
    server_router: usize,
    /// How the server runs (to start it again).
    server_config: ServerConfig,
    stop_server: Option<oneshot::Sender<()>>,
    server_task: Option<JoinHandle<Result<(), gdp_capsule_server::ServerError>>>,
    dir: PathBuf,
}

/// Starts one router on a loopback port over `directory`.
fn start_router(label: &str, directory: Arc<dyn Directory>) -> Result<LocalRouter, LocalError> {
    let err = |reason: String| LocalError::Router {
        label: label.to_owned(),
        reason,
    };
    let mut settings = RouterSettings::default();
    settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.label = label.to_owned();
    let identity = Identity::generate(Kind::Router, label).map_err(|e| err(e.to_string()))?;
    let (transport, events) = Transport::bind(identity.clone(), settings.transport_config())
        .map_err(|e| err(e.to_string()))?;
    let addr = transport.local_addr();
    let advertised = settings.advertised_addresses(addr);
    let core = RouterCore::new(identity, settings.core_config(advertised, None))
        .map_err(|e| err(e.to_string()))?;
    let running =
        gdp_router::driver::spawn(core, transport, events, directory, settings.driver_config());
    Ok(LocalRouter { running, addr })
}

impl LocalGdp {
    /// Starts `routers` routers (at least one) and a capsule server attached
    /// to the second router (the first when there is only one), and waits
    /// until the server is attached.
    pub async fn start(routers: usize) -> Result<LocalGdp, LocalError> {
        let dir = std::env::temp_dir().join(format!(
            "gdp-local-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).map_err(|source| LocalError::Io {
            path: dir.clone(),
            source,
        })?;
        match Self::start_in(routers.max(1), dir.clone()).await {
            Ok(gdp) => Ok(gdp),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    async fn start_in(n: usize, dir: PathBuf) -> Result<LocalGdp, LocalError> {
        let directory: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
        let mut routers = Vec::with_capacity(n);
        for i in 1..=n {
            routers.push(start_router(&format!("local-r{i}"), directory.clone())?);
        }
        let server_router = usize::from(n > 1);
        let server_id = Identity::generate(Kind::Server, "local-server")
            .map_err(|e| LocalError::Identity(e.to_string()))?;
        let router = &routers[server_router];
        let mut config = ServerConfig::new(dir.join("server"), router.addr);
        config.router.name = Some(router.running.handle().name());
        std::fs::create_dir_all(&config.data_dir).map_err(|source| LocalError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        server_id
            .save(&config.key_file())
            .map_err(|e| LocalError::Identity(e.to_string()))?;
        let mut gdp = LocalGdp {
            routers,
            server: server_id.name(),
            server_router,
            server_config: config,
            stop_server: None,
            server_task: None,
            dir,
        };
        gdp.spawn_server();
        if let Err(e) = gdp.wait_for_server().await {
            let _ = gdp.stop().await;
            return Err(e);
        }
        Ok(gdp)
    }

    /// Starts the capsule server's task.
    fn spawn_server(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gdp_capsule_server::run(self.server_config.clone(), async {
            let _ = stopped.await;
        }));
        self.stop_server = Some(stop);
        self.server_task = Some(task);
    }

    /// Stops the capsule server's task, waiting for it.
    async fn stop_server(&mut self) -> Result<(), LocalError> {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.server_task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(LocalError::Server(e.to_string())),
            Ok(Err(e)) => Err(LocalError::Server(format!("task failed: {e}"))),
            Err(_) => Err(LocalError::Server("did not stop in time".into())),
        }
    }

    /// Stops the capsule server (its link to the router goes down and its
    /// capsules are withdrawn), starts it again on the same store and key,
    /// and waits until it is attached again: what subscribers see when a
    /// server restarts.
    pub async fn restart_server(&mut self) -> Result<(), LocalError> {
        self.stop_server().await?;
        self.spawn_server();
        self.wait_for_server().await
    }

    /// Waits until the server's link to its router is up.
    async fn wait_for_server(&mut self) -> Result<(), LocalError> {
        let handle = self.routers[self.server_router].running.handle().clone();
        let deadline = tokio::time::Instant::now() + ATTACH_WAIT;
        loop {
            if let Some(task) = &self.server_task
                && task.is_finished()
            {
                return Err(LocalError::Server("stopped while starting".into()));
            }
            let snapshot = handle
                .snapshot()
                .await
                .map_err(|e| LocalError::Server(e.to_string()))?;
            if snapshot.links.iter().any(|l| l.peer == self.server) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LocalError::Server(format!(
                    "not attached after {ATTACH_WAIT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many routers there are.
    pub fn router_count(&self) -> usize {
        self.routers.len()
    }

    /// The UDP address of router `i` (from 0).
    pub fn router_addr(&self, i: usize) -> Option<SocketAddr> {
        self.routers.get(i).map(|r| r.addr)
    }

    /// The name of router `i` (from 0).
    pub fn router_name(&self, i: usize) -> Option<Name> {
        self.routers.get(i).map(|r| r.running.handle().name())
    }

    /// The capsule server's name.
    pub fn server_name(&self) -> Name {
        self.server
    }

    /// The index of the router the capsule server is attached to.
    pub fn server_router(&self) -> usize {
        self.server_router
    }

    /// The temporary directory holding the server's store.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// A new client identity labelled `label`, attached to router `i`
    /// (which must prove its name).
    pub async fn client(&self, i: usize, label: &str) -> Result<(Client, Identity), LocalError> {
        self.client_with(i, label, ClientOptions::default()).await
    }

    /// The same as [`LocalGdp::client`], with `options` (the router's name
    /// is set here).
    pub async fn client_with(
        &self,
        i: usize,
        label: &str,
        options: ClientOptions,
    ) -> Result<(Client, Identity), LocalError> {
        let router = self.routers.get(i).ok_or_else(|| LocalError::Router {
            label: format!("#{i}"),
            reason: format!("there are only {} routers", self.routers.len()),
        })?;
        let identity = Identity::generate(Kind::Client, label)
            .map_err(|e| LocalError::Identity(e.to_string()))?;
        let options = options.with_router(router.running.handle().name());
        let client = Client::connect(router.addr, identity.clone(), options).await?;
        Ok((client, identity))
    }

    async fn stop(&mut self) -> Result<(), LocalError> {
        let result = self.stop_server().await;
        for r in self.routers.drain(..) {
            let _ = r.running.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }

    /// Stops the capsule server (every write made durable first), then the
    /// routers, and removes the temporary directory.
    pub async fn shutdown(mut self) -> Result<(), LocalError> {
        self.stop().await
    }
}

impl Drop for LocalGdp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if self.server_task.is_some() {
            // Not shut down: the store may still be open; leave the files.
            tracing::debug!(dir = %self.dir.display(), "local GDP dropped without shutdown");
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
