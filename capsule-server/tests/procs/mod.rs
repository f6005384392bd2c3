//! Real processes for the process-level tests: the `gdp-router` binary
//! (from `cargo build --workspace --bins`, or `GDP_ROUTER_BIN`) and the
//! `gdp-capsule-server` binary of this package.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gdp_certs::Name;
use gdp_testkit::{ChildGuard, spawn_with_start_line, start_line_field, workspace_bin};

/// How long a router may take to print its start line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts a router on a free loopback port; returns it, its address and
/// its name (from the line it prints at start).
pub fn start_router(dir: &Path, extra: &[&str]) -> (ChildGuard, SocketAddr, Name) {
    let log = dir.join("router.log");
    let (proc, line) = spawn_with_start_line(
        Command::new(workspace_bin("gdp-router"))
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--log", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("router log")),
        "router",
        Some(&log),
        START_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let field =
        |key: &str| start_line_field(&line, key).unwrap_or_else(|| panic!("no {key} in {line:?}"));
    let addr: SocketAddr = field("listen").parse().expect("listen address");
    let name: Name = field("name").parse().expect("router name");
    (proc, addr, name)
}

pub fn start_server(
    dir: &Path,
    key: &Path,
    router: SocketAddr,
    router_name: Name,
    run: usize,
) -> ChildGuard {
    let log = dir.join(format!("server-{run}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_gdp-capsule-server"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--key-file")
        .arg(key)
        .arg("--router")
        .arg(router.to_string())
        .arg("--router-name")
        .arg(router_name.to_string())
        .args(["--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("server log"))
        .spawn()
        .expect("the capsule server starts");
    ChildGuard::new(format!("capsule server (run {run})"), child).with_log(log)
}
