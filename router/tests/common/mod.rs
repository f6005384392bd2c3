//! Helpers of the process tests: router processes, test endpoints, metrics.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "helpers shared by test binaries, each using a part"
)]

pub mod endpoint;
pub mod process;

use std::path::Path;

pub use endpoint::{TestEndpoint, close_code, drain, open_route, raw_peer};
pub use gdp_testkit::TempDir;
pub use process::{RouterProcess, exited_cleanly, run_to_exit};

/// Arguments for a test router: loopback on a free port, metrics on a
/// free port, its data under `dir/label`, the directory `directory`, and
/// short timers so that failures are noticed within a test's time.
pub fn router_args(dir: &Path, label: &str, directory: &str, extra: &[&str]) -> Vec<String> {
    let data = dir.join(label);
    let mut args: Vec<String> = [
        "--data-dir",
        data.to_str().expect("a UTF-8 path"),
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--directory",
        directory,
        "--log",
        "info,gdp_router=debug",
        "--idle-timeout",
        "2s",
        "--keep-alive",
        "300ms",
        "--audit-interval",
        "300ms",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Starts a router named `label` with [`router_args`].
pub fn start_router(dir: &TempDir, label: &str, directory: &str, extra: &[&str]) -> RouterProcess {
    RouterProcess::start(
        label,
        dir.path(),
        &router_args(dir.path(), label, directory, extra),
    )
}
