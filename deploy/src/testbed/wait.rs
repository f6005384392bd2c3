//! Waiting for the overlay: `gdp ping` from inside the hosts until every
//! router, capsule server and router behind a gateway answers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::Builder;
use crate::state::HostState;
use crate::sys;

impl Builder<'_> {
    /// Pings `name` through the router `via` uses, from `via`'s namespace,
    /// until it answers or the deadline passes.
    fn ping_until(
        &self,
        via: &HostState,
        what: &str,
        name: &str,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        loop {
            let out = sys::in_namespace(Some(&via.namespace), &self.bins.gdp)
                .arg("--router")
                .arg(via.gdp_router.to_string())
                .args(
                    via.gdp_router_name
                        .iter()
                        .flat_map(|n| ["--router-name", n]),
                )
                .args(["--timeout", "2s", "ping", "--count", "1", name])
                .stdin(std::process::Stdio::null())
                .output()
                .context("running gdp ping")?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what} ({name}) did not answer a ping through the router of {} within {:?}: {}",
                    via.name,
                    self.timeout,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the overlay works: each router answers a ping through
    /// itself, then every capsule server (standalone or embedded) and every
    /// router behind a gateway answers a ping through the first router.
    pub(super) fn wait_for_overlay(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let order = self.topology.start_order()?;
        for host in &order {
            let Some(entry) = self.state.host(&host.name) else {
                continue;
            };
            if let Some(r) = &entry.router {
                self.ping_until(
                    entry,
                    &format!("the router on {}", host.name),
                    &r.name,
                    deadline,
                )?;
            }
        }
        let Some(first) = order.first().and_then(|h| self.state.host(&h.name)) else {
            return Ok(());
        };
        for h in &self.state.hosts {
            if let Some(s) = &h.capsule_server {
                let what = format!("the capsule server on {}", h.name);
                self.ping_until(first, &what, &s.name, deadline)?;
            }
            if let Some(r) = h.router.as_ref().filter(|r| r.via.is_some()) {
                let what = format!("the router on {}", h.name);
                self.ping_until(first, &what, &r.name, deadline)?;
            }
        }
        Ok(())
    }
}
