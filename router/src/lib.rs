//! The GDP router: forwards PDUs by flat destination name over QUIC links,
//! resolving names through an untrusted directory of signed route records.
//!
//! - [`core`]: the sans-IO forwarding core (attachments, FIB, resolution,
//!   publishing), driven by inputs that carry `now`;
//! - [`directory`]: the directory backends (memory, Redis, Redis Cluster);
//! - [`driver`]: the tokio task that runs the core over a
//!   [`gdp_link::Transport`] and a directory, and [`driver::launch`], which
//!   starts a whole router from [`config::RouterSettings`];
//! - [`config`]: the `gdp-router` config file and command line;
//! - [`admin`]: the admin API over HTTP (metrics, health, JSON state);
//! - [`metrics`]: the Prometheus text format of a router's counters;
//! - `sim` (feature): the deterministic multi-router simulation, for tests.
//!
//! Features: `daemon` (default) is what the `gdp-router` binary adds, its
//! command line (`config::Cli`) and its logging; `capsule-server` (default)
//! lets the binary embed a capsule server. The library itself needs neither,
//! so a program that starts routers from [`config::RouterSettings`] depends
//! on `gdp-router` with `default-features = false`.
//!
//! A router on loopback with the in-process directory:
//!
//! ```
//! use gdp_router::config::RouterSettings;
//! use gdp_router::driver::launch;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("gdp-router-doc-{}", std::process::id()));
//! let mut settings = RouterSettings::default();
//! settings.key_file = dir.join("router.key"); // generated on first start
//! settings.listen = "127.0.0.1:0".parse()?;
//! let router = launch(&settings, None).await?;
//! println!("router {} listening on {}", router.name, router.listen);
//! let stats = router.handle().snapshot().await?;
//! assert_eq!(stats.core.records_published, 1); // its own route record
//! router.shutdown().await?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admin;
pub mod config;
pub mod core;
pub mod directory;
pub mod driver;
pub mod metrics;
#[cfg(feature = "sim")]
pub mod sim;
