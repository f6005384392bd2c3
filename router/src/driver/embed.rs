//! The extension point for a service embedded in the router process: the
//! capsule server.
//!
//! The `gdp-router` library does not use `gdp-capsule-server` (only its
//! binary does, with the `capsule-server` feature); a binary that embeds a
//! service passes an [`EmbedHook`] to [`launch`](super::launch). Once the
//! router is up, the hook is called with the `[capsule_server]` table of the
//! config file, as it was written, and where to reach the router. The
//! embedded service attaches to the router like any other endpoint (a QUIC
//! link on loopback, so it proves its name the same way) and runs until
//! [`EmbedContext::shutdown`] turns true; the router waits for it (up to
//! [`EMBED_SHUTDOWN_TIMEOUT`]) before it withdraws its own records and
//! closes its links, so the service can withdraw its capsules first.
//!
//! ```
//! use gdp_router::driver::{EmbedContext, EmbedHook};
//!
//! let hook: EmbedHook = Box::new(|mut ctx: EmbedContext| {
//!     Box::pin(async move {
//!         let _table = ctx.config.clone();
//!         // ... dial ctx.router_addr expecting ctx.router, serve ...
//!         let _ = ctx.shutdown.wait_for(|stop| *stop).await;
//!         Ok(())
//!     })
//! });
//! # drop(hook);
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use gdp_certs::Name;
use tokio::sync::watch;

/// Longest the router waits for an embedded service to stop.
pub const EMBED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What an embedded service is told about the router it runs in.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EmbedContext {
    /// The service's config table (`[capsule_server]`), as written.
    pub config: toml::Value,
    /// The router's name; the link to it must prove it.
    pub router: Name,
    /// Where to dial the router (loopback when it listens on every
    /// interface).
    pub router_addr: SocketAddr,
    /// The router's data directory; the service keeps its own data beneath.
    pub data_dir: PathBuf,
    /// Turns true when the router shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// The future of an embedded service: it runs until the shutdown signal and
/// returns once the service has stopped.
pub type EmbedFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Starts an embedded service. See the module documentation.
pub type EmbedHook = Box<dyn FnOnce(EmbedContext) -> EmbedFuture + Send>;
