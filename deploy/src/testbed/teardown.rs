//! Taking a testbed apart: its processes stopped in order, then its
//! namespaces and links deleted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};

use crate::daemon;
use crate::engine::Engine;
use crate::state::{ProcessState, State};
use crate::sys::{self, Spawned};

/// What `down` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Processes that exited after SIGTERM.
    pub terminated: usize,
    /// Processes that needed SIGKILL (including strays found in the
    /// namespaces).
    pub killed: usize,
    /// Namespaces deleted.
    pub namespaces: usize,
    /// Root-namespace links deleted.
    pub links: usize,
    /// Containers removed that outlived their daemons (podman engine).
    pub containers: usize,
}

fn wait_dead(procs: &[Spawned], until: Instant) -> bool {
    loop {
        if procs.iter().all(|p| !sys::is_alive(*p)) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Stops every process of `state` (SIGTERM, then SIGKILL after `grace`)
/// and deletes its namespaces and links. Anything already gone is skipped.
pub fn teardown(state: &State, grace: Duration) -> anyhow::Result<DownReport> {
    let mut report = DownReport::default();
    // Capsule servers and delay relays, then routers (which withdraw their records from the
    // directory on the way out), then redis.
    let stages: [&[&str]; 3] = [
        &[daemon::CAPSULE_SERVER, super::links::DELAY_RELAY],
        &[daemon::ROUTER],
        &["redis-server"],
    ];
    for programs in stages {
        let procs: Vec<Spawned> = state
            .processes
            .iter()
            .filter(|p| programs.contains(&p.program.as_str()))
            .map(ProcessState::spawned)
            .filter(|p| sys::is_alive(*p))
            .collect();
        for p in &procs {
            sys::signal(p.pid, "TERM");
        }
        wait_dead(&procs, Instant::now() + grace);
        for p in &procs {
            if sys::is_alive(*p) {
                sys::signal(p.pid, "KILL");
                report.killed += 1;
            } else {
                report.terminated += 1;
            }
        }
        wait_dead(&procs, Instant::now() + Duration::from_secs(2));
    }
    let mut failures = Vec::new();
    if let Engine::Podman(podman) = &state.engine {
        // Their daemons are gone; so are the containers (`--rm`), unless
        // podman could not clean up after one.
        let prefix = format!("{}-", state.prefix);
        match podman.remove_all(&prefix) {
            Ok(n) => report.containers += n,
            Err(e) => failures.push(format!("{e:#}")),
        }
        // Each `podman run` client exits once its container is gone.
        for pid in crate::engine::Podman::wait_for_clients(&prefix, Duration::from_secs(10)) {
            sys::signal(pid, "KILL");
            report.killed += 1;
        }
    }
    let existing = sys::namespaces()?;
    for ns in state.namespaces.iter().rev() {
        if !existing.contains(ns) {
            continue;
        }
        // Anything else still in there (commands run with `exec`).
        for pid in sys::namespace_pids(ns) {
            sys::signal(pid, "KILL");
            report.killed += 1;
        }
        match sys::ip(["netns", "del", ns]) {
            Ok(()) => report.namespaces += 1,
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    for link in state.root_links.iter().rev() {
        if !sys::link_exists(link) {
            continue;
        }
        match sys::ip(["link", "del", link]) {
            Ok(()) => report.links += 1,
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// Tears down the testbed whose state is in `dir` and removes its state
/// file. Without a state file there is nothing to do.
pub fn down(dir: &Path, grace: Duration) -> anyhow::Result<Option<DownReport>> {
    let Some(state) = State::load(dir)? else {
        return Ok(None);
    };
    let report = teardown(&state, grace)?;
    std::fs::remove_file(State::path(dir))
        .with_context(|| format!("removing {}", State::path(dir).display()))?;
    Ok(Some(report))
}
