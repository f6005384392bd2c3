//! `gdp-deploy run SCENARIO`: a scenario from start to report.
//!
//! 1. Brings the scenario's topology up (or uses the running testbed of
//!    `--state`).
//! 2. Creates each writer's capsule on its server (`workload create`, in
//!    the writer's host), then starts every workload in its host's
//!    namespace (`gdp-deploy workload ...`, see [`crate::workload`]), all
//!    due to start together two seconds later: time zero.
//! 3. Carries each fault out at its time ([`crate::testbed::faults`]),
//!    noting when it happened and what it did.
//! 4. After the duration (and the subscribers' drain), scrapes every
//!    router's `/metrics`, tears the testbed down (unless `--keep`, or it
//!    was already running), and writes the report directory: `report.json`
//!    ([`crate::report`]), `latency.svg` and `deliveries.svg`
//!    ([`crate::chart`]), the workloads' event logs (`workloads/*.jsonl`),
//!    the scraped metrics (`metrics/*.prom`) and the testbed's state and
//!    logs (`state/`, unless `--state` named another directory).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use crate::chart;
use crate::engine::Engine;
use crate::report::{self, FaultRecord, Inputs, Report, WorkloadKind, WorkloadLog};
use crate::scenario::{Scenario, TopologySource};
use crate::state::{HostState, State};
use crate::sys::{self, Spawned};
use crate::testbed::{self, UpOptions, faults};
use crate::workload::{self, Event};

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario file.
    pub scenario: PathBuf,
    /// The report directory (made if missing).
    pub report: PathBuf,
    /// A running testbed's state directory to use, or where to keep the
    /// new one's (default: `<report>/state`).
    pub state: Option<PathBuf>,
    /// Leave the testbed `run` brought up running.
    pub keep: bool,
    /// Where the GDP programs are (see [`UpOptions::bin_dir`]).
    pub bin_dir: Option<PathBuf>,
    /// The testbed's name prefix.
    pub prefix: Option<String>,
    /// Bound on each start (of the testbed, of a restarted process).
    pub timeout: Duration,
    /// Where the daemons of a testbed `run` brings up run.
    pub engine: Engine,
}

/// What `run` did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The report, as written to `report.json`.
    pub report: Report,
    /// The report directory.
    pub dir: PathBuf,
    /// Whether the testbed was taken down.
    pub torn_down: bool,
}

/// Time from starting the workloads to time zero: for clients to attach
/// and subscribe.
const SETTLE: Duration = Duration::from_secs(2);

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A started workload.
struct Running {
    name: String,
    kind: WorkloadKind,
    host: String,
    peer: String,
    log: PathBuf,
    process: Spawned,
}

/// `gdp-deploy workload KIND` in `host`'s namespace, attached to the
/// router that host's clients use.
fn workload_command(exe: &Path, host: &HostState, kind: &str) -> std::process::Command {
    let mut c = sys::in_namespace(Some(&host.namespace), exe);
    c.args(["workload", kind, "--router", &host.gdp_router.to_string()]);
    if let Some(name) = &host.gdp_router_name {
        c.args(["--router-name", name]);
    }
    c
}

fn host<'a>(state: &'a State, name: &str) -> anyhow::Result<&'a HostState> {
    state
        .host(name)
        .with_context(|| format!("the testbed has no host {name:?}"))
}

/// GETs `http://<addr><path>` and returns the body (status 200 only).
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.take(16 << 20).read_to_string(&mut body)?;
    let (head, rest) = body
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP answer from {addr}"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{addr}{path} answered {status:?}");
    }
    Ok(rest.to_owned())
}

/// Each router's metrics, scraped from inside its namespace (`gdp-deploy
/// scrape`), also saved as `<dir>/<host>.prom`.
fn scrape(
    state: &State,
    exe: &Path,
    dir: &Path,
) -> BTreeMap<String, Result<BTreeMap<String, f64>, String>> {
    let _ = std::fs::create_dir_all(dir);
    state
        .hosts
        .iter()
        .filter_map(|h| Some((h, h.router.as_ref()?.admin?)))
        .map(|(h, admin)| {
            let out = sys::in_namespace(Some(&h.namespace), exe)
                .args(["scrape", &admin.to_string()])
                .stdin(std::process::Stdio::null())
                .output();
            let result = match out {
                Ok(o) if o.status.success() => {
                    let text = String::from_utf8_lossy(&o.stdout).into_owned();
                    let _ = std::fs::write(dir.join(format!("{}.prom", h.name)), &text);
                    Ok(report::parse_metrics(&text))
                }
                Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
                Err(e) => Err(e.to_string()),
            };
            (h.name.clone(), result)
        })
        .collect()
}

fn read_events(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs the scenario; `progress` hears each step.
pub fn run(opts: &RunOptions, progress: &mut dyn FnMut(&str)) -> anyhow::Result<RunOutcome> {
    let (scenario, topology_file, _) =
        Scenario::load(&opts.scenario).with_context(|| opts.scenario.display().to_string())?;
    std::fs::create_dir_all(opts.report.join("workloads"))
        .with_context(|| format!("creating {}", opts.report.display()))?;
    let dir = std::fs::canonicalize(&opts.report)?;
    let state_dir = opts.state.clone().unwrap_or_else(|| dir.join("state"));
    let (mut state, ours) = match State::load(&state_dir)? {
        Some(s) if s.complete => {
            progress(&format!(
                "using the running testbed {} in {}",
                s.prefix,
                state_dir.display()
            ));
            (s, false)
        }
        Some(s) => bail!(
            "{} holds testbed {}, which did not come up completely: `gdp-deploy down --state {}` first",
            state_dir.display(),
            s.prefix,
            state_dir.display()
        ),
        None => {
            let topology = match (topology_file, &scenario.topology) {
                (Some(p), _) => p,
                (None, TopologySource::Inline(text)) => {
                    let p = dir.join("topology.toml");
                    std::fs::write(&p, text)?;
                    p
                }
                (None, TopologySource::File(p)) => {
                    bail!("the topology {} was not found", p.display())
                }
            };
            progress(&format!("bringing {} up", topology.display()));
            let s = testbed::up(&UpOptions {
                topology,
                state_dir: state_dir.clone(),
                bin_dir: opts.bin_dir.clone(),
                prefix: opts.prefix.clone(),
                timeout: opts.timeout,
                keep_on_failure: false,
                engine: opts.engine.clone(),
            })?;
            progress(&format!("testbed {} is up", s.prefix));
            (s, true)
        }
    };
    let result = drive(opts, &scenario, &dir, &state_dir, &mut state, progress);
    let torn_down = ours && !opts.keep;
    if torn_down {
        match testbed::down(&state_dir, Duration::from_secs(5)) {
            Ok(_) => progress("testbed down"),
            Err(e) => progress(&format!("taking the testbed down failed: {e:#}")),
        }
    } else {
        progress(&format!(
            "the testbed stays up: `gdp-deploy down --state {}` removes it",
            state_dir.display()
        ));
    }
    let report = result?;
    Ok(RunOutcome {
        report,
        dir,
        torn_down,
    })
}

/// Everything between up and down: workloads, faults, metrics, report.
fn drive(
    opts: &RunOptions,
    scenario: &Scenario,
    dir: &Path,
    state_dir: &Path,
    state: &mut State,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    let exe = testbed::deploy_program(opts.bin_dir.as_deref())?;
    let wl = dir.join("workloads");
    let mut running: Vec<Running> = Vec::new();
    let result = (|| -> anyhow::Result<Report> {
        // Capsules first, then every workload, all due at time zero.
        for w in &scenario.writers {
            let server = host(state, &w.server)?
                .capsule_server
                .as_ref()
                .with_context(|| format!("host {} runs no capsule server", w.server))?
                .name
                .clone();
            let out = workload_command(&exe, host(state, &w.host)?, "create")
                .args(["--server", &server, "--key"])
                .arg(wl.join(format!("{}.key", w.name)))
                .arg("--capsule-out")
                .arg(wl.join(format!("{}.capsule", w.name)))
                .stdin(std::process::Stdio::null())
                .output()
                .context("running workload create")?;
            if !out.status.success() {
                bail!(
                    "creating the capsule of {} on {}'s server failed: {}",
                    w.name,
                    w.server,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            progress(&format!(
                "{}: capsule {} on the server of {}",
                w.name,
                String::from_utf8_lossy(&out.stdout).trim(),
                w.server
            ));
        }
        let start_us = workload::now_us() + us(SETTLE);
        let end_us = start_us + us(scenario.duration);
        let (start, end) = (start_us.to_string(), end_us.to_string());
        let drained = (end_us + us(scenario.drain)).to_string();
        let mut spawn = |name: &str,
                         kind: WorkloadKind,
                         on: &str,
                         peer: &str,
                         command: std::process::Command|
         -> anyhow::Result<()> {
            let log = wl.join(format!("{name}.jsonl"));
            let process = sys::spawn_detached(command, &log, &wl.join(format!("{name}.log")))?;
            running.push(Running {
                name: name.to_owned(),
                kind,
                host: on.to_owned(),
                peer: peer.to_owned(),
                log,
                process,
            });
            Ok(())
        };
        for w in &scenario.writers {
            let mut c = workload_command(&exe, host(state, &w.host)?, "writer");
            c.arg("--key")
                .arg(wl.join(format!("{}.key", w.name)))
                .arg("--capsule")
                .arg(wl.join(format!("{}.capsule", w.name)))
                .args(["--rate", &w.rate.to_string(), "--start-us", &start])
                .args(["--end-us", &end]);
            spawn(&w.name, WorkloadKind::Writer, &w.host, &w.server, c)?;
        }
        for s in &scenario.subscribers {
            let mut c = workload_command(&exe, host(state, &s.host)?, "subscriber");
            c.arg("--capsule")
                .arg(wl.join(format!("{}.capsule", s.writer)))
                .args(["--end-us", &drained]);
            spawn(&s.name, WorkloadKind::Subscriber, &s.host, &s.writer, c)?;
        }
        for p in &scenario.pings {
            let target = host(state, &p.target)?
                .router
                .as_ref()
                .with_context(|| format!("host {} runs no router", p.target))?
                .name
                .clone();
            let mut c = workload_command(&exe, host(state, &p.host)?, "ping");
            c.args(["--target", &target])
                .args(["--interval-us", &us(p.interval).to_string()])
                .args(["--timeout-us", &us(p.timeout).to_string()])
                .args(["--start-us", &start, "--end-us", &end]);
            spawn(&p.name, WorkloadKind::Ping, &p.host, &p.target, c)?;
        }
        for st in &scenario.streams {
            // The sink's key is made here, so the source knows its name.
            let key = wl.join(format!("{}.sink.key", st.name));
            let (sink, _) = gdp_client::Identity::load_or_generate(
                &key,
                gdp_client::Kind::Client,
                "scenario-sink",
            )?;
            let mut c = workload_command(&exe, host(state, &st.to)?, "stream-sink");
            c.arg("--key").arg(&key).args(["--end-us", &drained]);
            spawn(
                &format!("{}-sink", st.name),
                WorkloadKind::Sink,
                &st.to,
                &st.name,
                c,
            )?;
            let mut c = workload_command(&exe, host(state, &st.from)?, "stream-source");
            c.args(["--target", &sink.name().to_string()])
                .args(["--rate", &st.rate.to_string()])
                .args(["--size", &st.size.to_string()])
                .args(["--start-us", &start, "--end-us", &end]);
            if st.unreliable {
                c.arg("--unreliable");
            }
            spawn(&st.name, WorkloadKind::Source, &st.from, &st.to, c)?;
        }
        progress(&format!(
            "{} workload(s) started; running for {:?}",
            running.len(),
            scenario.duration
        ));
        // The faults, on time.
        let mut records: Vec<FaultRecord> = Vec::new();
        for f in &scenario.faults {
            let due = start_us + us(f.at);
            let now = workload::now_us();
            if due > now {
                std::thread::sleep(Duration::from_micros(due - now));
            }
            let t_us = workload::now_us();
            let result = faults::apply(state, state_dir, &f.fault, opts.timeout)
                .map_err(|e| format!("{e:#}"));
            progress(&format!(
                "[{:>7.2} s] {}: {}",
                report::secs(start_us, t_us),
                f.fault,
                match &result {
                    Ok(s) => s.clone(),
                    Err(e) => format!("FAILED: {e}"),
                }
            ));
            records.push(FaultRecord {
                action: f.fault.to_string(),
                planned: f.at,
                t_us,
                result,
                healed_by: None,
            });
        }
        for (i, record) in records.iter_mut().enumerate() {
            record.healed_by = (i + 1..scenario.faults.len())
                .find(|&j| scenario.faults[j].fault.heals(&scenario.faults[i].fault));
        }
        // The end, and the drain.
        let last = end_us + us(scenario.drain);
        let now = workload::now_us();
        if last > now {
            std::thread::sleep(Duration::from_micros(last - now));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while running.iter().any(|r| sys::is_alive(r.process))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        progress("workloads done; scraping the routers' metrics");
        let routers = scrape(state, &exe, &dir.join("metrics"));
        let logs: Vec<WorkloadLog> = running
            .iter()
            .map(|r| WorkloadLog {
                name: r.name.clone(),
                kind: r.kind,
                host: r.host.clone(),
                peer: r.peer.clone(),
                events: read_events(&r.log),
            })
            .collect();
        let inputs = Inputs {
            scenario: opts.scenario.display().to_string(),
            start_us,
            duration: scenario.duration,
            drain: scenario.drain,
            window: scenario.window,
        };
        let report = report::build(&inputs, &logs, &records, routers);
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&report)? + "\n",
        )?;
        let events: Vec<(&report::WorkloadReport, &[Event])> = report
            .workloads
            .iter()
            .zip(&logs)
            .map(|(w, l)| (w, l.events.as_slice()))
            .collect();
        std::fs::write(dir.join("latency.svg"), chart::latency(&report, &events))?;
        std::fs::write(dir.join("deliveries.svg"), chart::deliveries(&report))?;
        Ok(report)
    })();
    // Whatever happened, no workload outlives the run.
    for r in &running {
        if sys::is_alive(r.process) {
            sys::signal(r.process.pid, "KILL");
        }
    }
    result
}

/// The report in a few lines, for the console.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    for w in &report.workloads {
        let lat = w.latency_ms.map_or_else(
            || "-".to_owned(),
            |p| {
                format!(
                    "p50 {:.1} / p90 {:.1} / p99 {:.1} / max {:.1} ms",
                    p.p50, p.p90, p.p99, p.max
                )
            },
        );
        let what = match w.kind {
            WorkloadKind::Writer => format!("{} acknowledged", w.delivered),
            WorkloadKind::Subscriber => format!(
                "{} received, {} lost, {} duplicated, {} out of order",
                w.delivered, w.lost, w.duplicated, w.out_of_order
            ),
            WorkloadKind::Ping => format!("{} answered, {} lost", w.delivered, w.lost),
            WorkloadKind::Source => format!("{} sent", w.delivered),
            WorkloadKind::Sink => format!(
                "{} received, {} lost, {} duplicated, {} out of order",
                w.delivered, w.lost, w.duplicated, w.out_of_order
            ),
        };
        out.push_str(&format!(
            "{:<12} {:<10} on {:<8} {what}; latency {lat}; errors {}\n",
            w.name,
            format!("{:?}", w.kind).to_lowercase(),
            w.host,
            w.errors
        ));
    }
    for f in &report.faults {
        let rec = f.recovered_after_ms.map_or_else(
            || "no recovery seen".to_owned(),
            |ms| format!("recovered {ms:.0} ms after {:.2} s", f.recovery_from_s),
        );
        out.push_str(&format!(
            "fault at {:>6.2} s: {:<28} {}{rec}\n",
            f.at_s,
            f.action,
            if f.ok { "" } else { "(FAILED) " }
        ));
    }
    out.push_str(&report.statement);
    out.push('\n');
    out
}
