//! What a testbed needs from this machine: root, `ip` with network
//! namespaces, and the programs it runs.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};

use crate::daemon;
use crate::sys;

/// The programs a testbed runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `gdp-router`.
    pub router: PathBuf,
    /// `gdp-capsule-server`.
    pub server: PathBuf,
    /// `gdp` (for the readiness pings and for `exec` users).
    pub gdp: PathBuf,
    /// `redis-server`.
    pub redis: PathBuf,
    /// `gdp-deploy` itself (the delay relays).
    pub deploy: PathBuf,
}

impl Binaries {
    /// Finds the programs: the GDP ones in `bin_dir`, or else next to the
    /// running program, or else on `PATH`; `redis-server` on `PATH`.
    pub fn find(bin_dir: Option<&Path>) -> anyhow::Result<Binaries> {
        let here = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let find = |program: &str| -> anyhow::Result<PathBuf> {
            if let Some(dir) = bin_dir {
                let p = dir.join(program);
                if sys::is_executable(&p) {
                    return Ok(std::fs::canonicalize(&p).unwrap_or(p));
                }
                bail!("{program} is not in {} (--bin-dir)", dir.display());
            }
            if let Some(p) = here.as_ref().map(|d| d.join(program))
                && sys::is_executable(&p)
            {
                return Ok(p);
            }
            sys::which(program).ok_or_else(|| {
                anyhow!(
                    "{program} is neither next to this program nor on PATH: build it with \
                     `cargo build --workspace --bins` or pass --bin-dir"
                )
            })
        };
        Ok(Binaries {
            router: find(daemon::ROUTER)?,
            server: find(daemon::CAPSULE_SERVER)?,
            gdp: find(daemon::GDP)?,
            redis: sys::which("redis-server").ok_or_else(|| {
                anyhow!("redis-server is not on PATH (Debian: apt-get install redis-server)")
            })?,
            deploy: deploy_program(bin_dir)?,
        })
    }
}

/// The `gdp-deploy` that runs a testbed's helpers (delay relays,
/// workloads, scrapes): the one in `bin_dir` when it has one, else this
/// program (which is `gdp-deploy` unless a program links the library).
pub fn deploy_program(bin_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = bin_dir.map(|d| d.join("gdp-deploy"))
        && sys::is_executable(&p)
    {
        return Ok(p);
    }
    std::env::current_exe().context("finding this program")
}

/// Checks what `up` needs from the machine: root, `ip` with network
/// namespaces.
pub fn check_machine() -> anyhow::Result<()> {
    if !sys::is_root() {
        bail!("gdp-deploy up needs root (network namespaces and links)");
    }
    if sys::which("ip").is_none() {
        bail!("`ip` is not on PATH (Debian: apt-get install iproute2)");
    }
    sys::namespaces().context("network namespaces are not available")?;
    Ok(())
}
