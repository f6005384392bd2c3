//! The GDP workspace's test kit: what the tests and benchmarks of every
//! crate need around the code under test, written once.
//!
//! This crate is dev-only. It is never published and only ever appears
//! under `[dev-dependencies]`; its helpers panic with a message saying what
//! went wrong instead of returning errors wherever a test could do nothing
//! but panic itself. It depends on nothing above `gdp-proto`, so every
//! crate of the workspace, the router and the capsule server included, can
//! use it without a dependency cycle.
//!
//! - [`dir`]: [`TempDir`], a fresh directory removed on drop;
//! - [`process`]: [`ChildGuard`], a child process killed on drop, and
//!   [`spawn_with_start_line`] for programs that announce themselves on
//!   their first line of output;
//! - [`bin`]: [`workspace_bin`], the path of a binary of the workspace that
//!   `cargo build --workspace --bins` made;
//! - [`net`]: [`udp_socket`], a socket that is already bound, so no test
//!   finds a free port and binds it later, and [`ClosedTcpPort`], a port
//!   that refuses every connection;
//! - [`wait`]: [`eventually`] and its variants, which poll a condition
//!   instead of sleeping a fixed time and hoping;
//! - [`rng`]: [`seeded_rng`], a random generator whose seed is printed
//!   and can be replayed with `GDP_TEST_SEED`;
//! - [`capsule`]: [`Writer`], a capsule with its owner's key that builds
//!   append requests and remembers what it appended;
//! - `redis` (feature `redis`): `RedisServer` and `RedisCluster`, real
//!   `redis-server` processes on loopback, killed on drop;
//! - `hostile` (feature `hostile`): the attacks of the router's
//!   hostile-peer tests and attack benchmark, one function per attack, and
//!   the pinging pair that measures what they do to everyone else.
//!
//! ```
//! use std::time::Duration;
//! use gdp_testkit::{TempDir, eventually_blocking};
//!
//! let dir = TempDir::new("doc");
//! let file = dir.path().join("hello.txt");
//! std::fs::write(&file, "hello").expect("the directory is writable");
//! eventually_blocking(Duration::from_secs(1), "the file exists", || file.exists());
//! let path = dir.path().to_owned();
//! drop(dir);
//! assert!(!path.exists());
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bin;
pub mod capsule;
pub mod dir;
#[cfg(feature = "hostile")]
pub mod hostile;
pub mod net;
pub mod process;
#[cfg(feature = "redis")]
pub mod redis;
pub mod rng;
pub mod stats;
pub mod wait;

pub use bin::{workspace_bin, workspace_bin_dir};
pub use capsule::Writer;
pub use dir::TempDir;
pub use net::{ClosedTcpPort, scrape_metrics, udp_socket};
pub use process::{
    ChildGuard, cpu_seconds, resident_bytes, spawn_with_start_line, start_line_field,
};
#[cfg(feature = "redis")]
pub use redis::{RedisCluster, RedisServer, RedisServerError};
pub use rng::{SEED_ENV, seeded_rng, test_seed};
pub use stats::median;
pub use wait::{eventually, eventually_blocking, eventually_ok};
