//! A running testbed from outside: which processes still run, the table
//! of its hosts, and commands run inside a host.

use anyhow::{Context as _, bail};

use crate::state::{ProcessState, State};
use crate::sys;

/// One process's state as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStatus {
    /// What `up` recorded.
    pub process: ProcessState,
    /// Whether it still runs.
    pub alive: bool,
}

/// The processes of `state` and whether each still runs.
pub fn status(state: &State) -> Vec<ProcessStatus> {
    state
        .processes
        .iter()
        .map(|p| ProcessStatus {
            process: p.clone(),
            alive: sys::is_alive(p.spawned()),
        })
        .collect()
}

/// Runs `command` in `host`'s namespace with `GDP_ROUTER` (and
/// `GDP_ROUTER_NAME`) set to that host's router, with this process's
/// standard streams; returns its exit status.
pub fn exec(
    state: &State,
    host: &str,
    command: &[String],
) -> anyhow::Result<std::process::ExitStatus> {
    let Some(h) = state.host(host) else {
        let known: Vec<&str> = state.hosts.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "no host {host:?} in this testbed (hosts: {})",
            known.join(", ")
        );
    };
    let Some((program, args)) = command.split_first() else {
        bail!("no command given");
    };
    let mut c = in_host(h, program.as_ref());
    c.args(args);
    c.status()
        .with_context(|| format!("running {program} on {host}"))
}

/// `program` in host `h`'s namespace, with `GDP_ROUTER` (and
/// `GDP_ROUTER_NAME`) set to the router that host's clients use.
pub fn in_host(h: &crate::state::HostState, program: &std::ffi::OsStr) -> std::process::Command {
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", &h.namespace])
        .arg(program)
        .env("GDP_ROUTER", h.gdp_router.to_string());
    if let Some(name) = &h.gdp_router_name {
        c.env("GDP_ROUTER_NAME", name);
    }
    c
}

/// A table of the hosts: namespace, address, router and capsule server.
pub fn table(state: &State) -> String {
    let mut rows = vec![[
        "HOST".to_owned(),
        "NAMESPACE".to_owned(),
        "ADDRESS".to_owned(),
        "ROUTER".to_owned(),
        "CAPSULE SERVER".to_owned(),
    ]];
    for h in &state.hosts {
        let router = match &h.router {
            Some(r) => match &r.via {
                Some(via) => format!("{} :{} via {via}", r.name, r.listen.port()),
                None => format!("{} :{}", r.name, r.listen.port()),
            },
            None => format!("- (clients use {}, {})", h.gdp_router_host, h.gdp_router),
        };
        let server = h
            .capsule_server
            .as_ref()
            .map_or_else(|| "-".to_owned(), |s| format!("{} ({})", s.name, s.mode));
        rows.push([
            h.name.clone(),
            h.namespace.clone(),
            h.address.to_string(),
            router,
            server,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Measures the network `from` and `to` share: an echo in `to`'s
/// namespace, [`crate::measure::probe`] in `from`'s, both run by this
/// program.
pub fn measure(
    state: &State,
    from: &str,
    to: &str,
    count: usize,
    interval_ms: u64,
    flood_secs: f64,
) -> anyhow::Result<crate::measure::Report> {
    let (Some(f), Some(t)) = (state.host(from), state.host(to)) else {
        bail!("no host {from:?} or {to:?} in this testbed");
    };
    let (_, address) = super::links::shared(state, from, to)
        .with_context(|| format!("{from} and {to} share no segment or link"))?;
    let exe = std::env::current_exe()?;
    let echo_addr = std::net::SocketAddr::from((address, 47_999));
    let mut echo = std::process::Command::new("ip")
        .args(["netns", "exec", &t.namespace])
        .arg(&exe)
        .args(["udp-echo", "--bind", &echo_addr.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the echo")?;
    let ready = echo.stdout.take().map(|out| {
        use std::io::BufRead as _;
        std::io::BufReader::new(out).lines().next()
    });
    let result = match ready {
        Some(Some(Ok(line))) if line.starts_with("udp-echo ready") => {
            std::process::Command::new("ip")
                .args(["netns", "exec", &f.namespace])
                .arg(&exe)
                .args(["udp-probe", "--to", &echo_addr.to_string()])
                .args(["--count", &count.to_string()])
                .args(["--interval-ms", &interval_ms.to_string()])
                .args(["--flood-secs", &flood_secs.to_string()])
                .stdin(std::process::Stdio::null())
                .output()
                .context("running the probe")
        }
        _ => Err(anyhow::anyhow!("the echo on {to} did not start")),
    };
    let _ = echo.kill();
    let _ = echo.wait();
    let out = result?;
    if !out.status.success() {
        bail!(
            "the probe failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading the probe's report")
}
