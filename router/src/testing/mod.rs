//! Test support: real Redis servers and clusters for tests and benches.
//!
//! Compiled only with the `testing` feature, which this crate's own tests
//! and benches enable through a dev-dependency on itself; another crate's
//! tests enable it the same way:
//!
//! ```toml
//! [dev-dependencies]
//! gdp-router = { workspace = true, features = ["testing"] }
//! ```
//!
//! Production code must never use this module or enable the feature: it
//! spawns processes, picks ports and panics on failure.
//!
//! The servers are the real `redis-server` binary, taken from the
//! `GDP_REDIS_SERVER` environment variable or found on `PATH`. When it is
//! missing, starting one fails with a message saying to run
//! `scripts/test.sh`, which installs it.
//!
//! ```no_run
//! use gdp_router::testing::RedisServer;
//!
//! let server = RedisServer::start();
//! println!("Redis listening at {}", server.url());
//! // Killed and its directory removed when `server` is dropped.
//! ```

mod redis;

pub use self::redis::{REDIS_SERVER_ENV, RedisCluster, RedisServer, RedisServerError};
