//! A testbed of 30 or more routers, measured: how long it takes to come
//! up, what a first (cold) lookup costs against a warm round trip, how
//! many datagrams a second cross several routers, how long routes take to
//! converge after a capsule server moves to another router, and the
//! memory each router holds.
//!
//! ```text
//! cargo build --release --workspace --bins --examples
//! target/release/examples/scale                    # 30 routers (needs root)
//! target/release/examples/scale --routers 60 --stream-secs 10
//! target/release/examples/scale --engine podman    # daemons in containers (gdp:latest, redis:7)
//! ```
//!
//! The topology: `G` core routers on one segment (`core`), each the
//! gateway of a segment of edge routers behind it (`lanI`, the edge
//! routers `via` their core router), so a PDU from one group to another
//! crosses edge, core, core, edge. The client host `src` sits on the first
//! group's segment, `dst` on the last one's; a standalone capsule server
//! runs on the first edge router of the first group. It prints a markdown
//! table for `BENCHMARKS.md`:
//!
//! - **bring-up**: `up` from nothing to every router answering a ping
//!   through the first router (namespaces, segments, redis, routers,
//!   server);
//! - **lookups**: from `src`, two pings to every router: the first pays
//!   for the directory lookup (and any dial), the second is a warm round
//!   trip; percentiles of each;
//! - **forwarding**: `src` sends datagrams on the reliable stream to a
//!   client on `dst` (up to 256 in flight) for `--stream-secs`; received
//!   per second, and the routers' CPU per datagram (all routers' user +
//!   system time over the run, from `/proc`);
//! - **server move**: a scenario (`gdp_deploy::run`) on the running
//!   testbed: a writer on `src` appending 20 records a second to the
//!   server's capsule, a subscriber on `dst`, a stream of 100 datagrams a
//!   second from `src` to `dst`; at 5 s the server moves to the second
//!   edge router of its group (`move-server`), and the report's 1 s
//!   windows give each workload's outage (from the move to the first
//!   window from which every window has a success), and
//!   whether every acknowledged record reached the subscriber (the report
//!   directory is kept with `--keep DIR`);
//! - **memory**: each router's resident memory (`VmRSS`) after all that.
//!
//! Everything runs on this machine, so the routers share its cores with
//! the clients and each other: the figures are a testbed's, not a
//! deployment's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use gdp_certs::{Identity, Kind, Name};
use gdp_client::{Client, ClientOptions};
use gdp_deploy::engine::{DEFAULT_IMAGE, DEFAULT_REDIS_IMAGE, Engine, Podman};
use gdp_deploy::report::Percentiles;
use gdp_deploy::state::State;
use gdp_deploy::testbed::{self, UpOptions};

/// Edge routers per core router.
const PER_GROUP: usize = 5;
/// Datagrams the source keeps in flight.
const IN_FLIGHT: usize = 256;
/// Payload of each datagram of the forwarding run.
const PAYLOAD: usize = 64;

struct Args {
    routers: usize,
    stream_secs: u64,
    bin_dir: PathBuf,
    engine: String,
    keep: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let mut argv = std::env::args().skip(1);
    let first = argv.next();
    match first.as_deref() {
        // Run by the orchestrator inside the hosts' namespaces.
        Some("--sink") => return sink(argv.collect()),
        Some("--source") => return source(argv.collect()),
        _ => {}
    }
    let here = std::env::current_exe()?;
    let mut args = Args {
        routers: 30,
        stream_secs: 5,
        // target/release/examples/scale: the programs are in target/release.
        bin_dir: here
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .context("the program's directory")?,
        engine: "namespaces".into(),
        keep: None,
    };
    let mut rest = first.into_iter().chain(argv);
    while let Some(a) = rest.next() {
        let mut value = || rest.next().with_context(|| format!("{a} takes a value"));
        match a.as_str() {
            "--routers" => args.routers = value()?.parse()?,
            "--stream-secs" => args.stream_secs = value()?.parse()?,
            "--bin-dir" => args.bin_dir = value()?.into(),
            "--engine" => args.engine = value()?,
            "--keep" => args.keep = Some(value()?.into()),
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if args.routers < 2 * (PER_GROUP + 1) {
        bail!("--routers must be at least {}", 2 * (PER_GROUP + 1));
    }
    run(&args)
}

/// The topology: `groups` core routers on `core`, each with a segment of
/// edge routers behind it; `src` and `dst` on the first and last group's.
fn topology(routers: usize) -> (String, usize) {
    let groups = routers.div_ceil(PER_GROUP + 1);
    let mut hosts = String::new();
    let mut segments = String::new();
    let mut core = Vec::new();
    let mut made = 0;
    for g in 1..=groups {
        let gw = format!("core{g}");
        hosts.push_str(&format!("[[host]]\nname = \"{gw}\"\nrouter = {{}}\n\n"));
        core.push(format!("\"{gw}\""));
        made += 1;
        let mut lan = vec![format!("\"{gw}\"")];
        for e in 1..=PER_GROUP {
            if made == routers {
                break;
            }
            let name = format!("e{g}-{e}");
            let server = if g == 1 && e == 1 {
                ", capsule_server = \"standalone\""
            } else {
                ""
            };
            hosts.push_str(&format!(
                "[[host]]\nname = \"{name}\"\nrouter = {{ via = \"{gw}\"{server} }}\n\n"
            ));
            lan.push(format!("\"{name}\""));
            made += 1;
        }
        if g == 1 {
            lan.push("\"src\"".into());
        }
        if g == groups {
            lan.push("\"dst\"".into());
        }
        segments.push_str(&format!(
            "[[segment]]\nname = \"lan{g}\"\nhosts = [{}]\n\n",
            lan.join(", ")
        ));
    }
    hosts.push_str("[[host]]\nname = \"src\"\nattach = \"e1-1\"\n\n");
    hosts.push_str(&format!(
        "[[host]]\nname = \"dst\"\nattach = \"e{groups}-1\"\n\n"
    ));
    segments.push_str(&format!(
        "[[segment]]\nname = \"core\"\nhosts = [{}]\n",
        core.join(", ")
    ));
    (
        format!(
            "# {routers} routers in {groups} groups (generated by the scale benchmark)\n\n{hosts}{segments}"
        ),
        groups,
    )
}

fn run(args: &Args) -> anyhow::Result<()> {
    let dir = match &args.keep {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gdp-scale-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let (text, groups) = topology(args.routers);
    let topology_file = dir.join("topology.toml");
    std::fs::write(&topology_file, &text)?;
    let engine = match args.engine.as_str() {
        "namespaces" => Engine::Namespaces,
        "podman" => Engine::Podman(Podman::check(DEFAULT_IMAGE, DEFAULT_REDIS_IMAGE, None)?),
        other => bail!("unknown engine {other}: namespaces or podman"),
    };
    let state_dir = dir.join("state");
    eprintln!(
        "bringing up {} routers in {groups} groups ({})",
        args.routers,
        topology_file.display()
    );
    let started = Instant::now();
    let mut state = testbed::up(&UpOptions {
        topology: topology_file,
        state_dir: state_dir.clone(),
        bin_dir: Some(args.bin_dir.clone()),
        prefix: None,
        timeout: Duration::from_secs(60),
        keep_on_failure: false,
        engine,
    })?;
    let bring_up = started.elapsed();
    eprintln!("up in {bring_up:.1?}");
    let measured = measure(args, &dir, &state_dir, &mut state);
    if args.keep.is_none() {
        testbed::down(&state_dir, Duration::from_secs(5))?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    let m = measured?;
    print_table(args.routers, groups, bring_up, &m);
    Ok(())
}

struct Measured {
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    received: u64,
    stream_secs: f64,
    router_cpu_us_per_datagram: f64,
    moved: MoveReport,
    rss_kib: Vec<u64>,
}

/// The server move of the scenario: from the move to the first 1 s window
/// from which each workload has a success in every window (`None`: not
/// within the scenario).
struct MoveReport {
    writer_ms: Option<f64>,
    subscriber_ms: Option<f64>,
    stream_ms: Option<f64>,
    every_record: bool,
    report: PathBuf,
}

/// How long the server-move scenario runs.
const MOVE_SCENARIO_SECS: u64 = 30;

fn measure(
    args: &Args,
    dir: &Path,
    state_dir: &Path,
    state: &mut State,
) -> anyhow::Result<Measured> {
    let gdp = args.bin_dir.join("gdp");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    // Lookups: two pings to every router from `src`.
    let routers: Vec<String> = state
        .hosts
        .iter()
        .filter_map(|h| h.router.as_ref().map(|r| r.name.clone()))
        .collect();
    let (mut cold_ms, mut warm_ms) = (Vec::new(), Vec::new());
    for name in &routers {
        let out = in_host(state, "src", &gdp, &keys)?
            .args(["--json", "ping", "-c", "2", "--interval", "0ms", name])
            .output()?;
        let rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("rtt_ms").and_then(serde_json::Value::as_f64))
            .collect();
        match rtts.as_slice() {
            [cold, warm] => {
                cold_ms.push(*cold);
                warm_ms.push(*warm);
            }
            _ => bail!(
                "ping {name} from src: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    eprintln!("pinged {} routers", routers.len());

    // Forwarding: src -> dst, through the groups' edges and cores.
    let me = std::env::current_exe()?;
    let sink_out = dir.join("sink.out");
    let secs = args.stream_secs;
    let mut sink = in_host(state, "dst", &me, &keys)?
        .args(["--sink", &(secs + 5).to_string()])
        .stdout(std::fs::File::create(&sink_out)?)
        .spawn()?;
    let sink_name = wait_for_name(&sink_out, Duration::from_secs(20))?;
    let cpu = routers_cpu(state);
    let source = in_host(state, "src", &me, &keys)?
        .args(["--source", &sink_name, &secs.to_string()])
        .output()?;
    if !source.status.success() {
        bail!(
            "the source failed: {}",
            String::from_utf8_lossy(&source.stderr)
        );
    }
    let status = sink.wait()?;
    let router_cpu = routers_cpu(state) - cpu;
    let text = std::fs::read_to_string(&sink_out)?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("received "))
        .ok_or_else(|| anyhow!("the sink ({status}) reported nothing: {text}"))?;
    let mut fields = line.split_whitespace();
    let received: u64 = fields.next().context("a count")?.parse()?;
    let stream_secs: f64 = fields.next().context("a duration")?.parse()?;
    eprintln!("forwarded {received} datagrams in {stream_secs:.2} s");

    // A scenario on the running testbed: a writer on `src` appending to
    // the server's capsule, a subscriber on `dst`, a datagram stream from
    // `src` to `dst`; at 5 s the server moves to the second edge router of
    // its group.
    let scenario = dir.join("move.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"topology = "{}"
duration = "{MOVE_SCENARIO_SECS}s"
drain = "5s"

[[writer]]
host = "src"
server = "e1-1"
rate = 20

[[subscriber]]
host = "dst"

[[stream]]
from = "src"
to = "dst"
rate = 100

[[fault]]
at = "5s"
do = "move-server e1-1 --to e1-2"
"#,
            dir.join("topology.toml").display()
        ),
    )?;
    let outcome = gdp_deploy::run::run(
        &gdp_deploy::run::RunOptions {
            scenario,
            report: dir.join("report"),
            state: Some(state_dir.to_path_buf()),
            keep: true,
            bin_dir: Some(args.bin_dir.clone()),
            prefix: None,
            timeout: Duration::from_secs(60),
            engine: state.engine.clone(),
        },
        &mut |line| eprintln!("{line}"),
    )?;
    eprint!("{}", gdp_deploy::run::summary(&outcome.report));
    *state = State::load(state_dir)?.context("the testbed's state after the scenario")?;
    let moved = outcome
        .report
        .faults
        .first()
        .context("the move in the report")?;
    // An answer already on its way counts as a success just after the
    // move, so the outage is read from the 1 s windows instead: from the
    // move to the start of the first window from which every window has a
    // success.
    let move_s = moved.at_s;
    let outage = |w: &str| -> Option<f64> {
        let windows = &outcome
            .report
            .workloads
            .iter()
            .find(|r| r.name == w)?
            .windows;
        let end_s = MOVE_SCENARIO_SECS as f64;
        let after: Vec<_> = windows
            .iter()
            .filter(|x| x.start_s + 1.0 > move_s && x.start_s < end_s)
            .collect();
        match after.iter().rposition(|x| x.count == 0) {
            None => Some(0.0),
            Some(i) if i + 1 < after.len() => Some((after[i + 1].start_s - move_s).max(0.0) * 1e3),
            Some(_) => None,
        }
    };
    let move_report = MoveReport {
        writer_ms: outage("writer"),
        subscriber_ms: outage("subscriber"),
        stream_ms: outage("stream-sink"),
        every_record: outcome.report.every_acknowledged_record_delivered,
        report: dir.join("report/report.json"),
    };
    let rss_kib = state
        .processes
        .iter()
        .filter(|p| p.program == "gdp-router")
        .filter_map(|p| gdp_testkit::resident_bytes(p.pid))
        .map(|b| b / 1024)
        .collect();
    Ok(Measured {
        cold_ms,
        warm_ms,
        received,
        stream_secs,
        router_cpu_us_per_datagram: router_cpu * 1e6 / received.max(1) as f64,
        moved: move_report,
        rss_kib,
    })
}

/// `program` in `host`'s namespace, with the host's router and a key in
/// `keys` (the host's own).
fn in_host(state: &State, host: &str, program: &Path, keys: &Path) -> anyhow::Result<Command> {
    let h = state
        .host(host)
        .with_context(|| format!("no host {host}"))?;
    let mut c = testbed::in_host(h, program.as_os_str());
    c.env("GDP_KEY", keys.join(format!("{host}.key")));
    Ok(c)
}

/// The name the sink prints first (`name NAME`).
fn wait_for_name(out: &Path, within: Duration) -> anyhow::Result<String> {
    let until = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if let Some(name) = text.lines().find_map(|l| l.strip_prefix("name ")) {
            return Ok(name.to_owned());
        }
        if Instant::now() > until {
            bail!("the sink did not start: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// User + system seconds of every router process.
fn routers_cpu(state: &State) -> f64 {
    state
        .processes
        .iter()
        .filter(|p| p.program == "gdp-router")
        .filter_map(|p| gdp_testkit::cpu_seconds(p.pid))
        .sum()
}

/// A client of the host's router, with the key in `GDP_KEY` (made if
/// missing).
async fn connect() -> anyhow::Result<Client> {
    let router: SocketAddr = std::env::var("GDP_ROUTER")?.parse()?;
    let key = PathBuf::from(std::env::var("GDP_KEY")?);
    let (identity, _) = Identity::load_or_generate(&key, Kind::Client, "scale")?;
    let mut options = ClientOptions::default();
    if let Ok(name) = std::env::var("GDP_ROUTER_NAME") {
        options.router = Some(name.parse()?);
    }
    Ok(Client::connect(router, identity, options).await?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `--sink SECS`: prints `name NAME`, then counts the datagrams that come
/// for up to SECS (stopping 1 s after the last one) and prints `received
/// COUNT SECONDS` (from the first to the last).
fn sink(args: Vec<String>) -> anyhow::Result<()> {
    let secs: u64 = args.first().context("--sink SECS")?.parse()?;
    runtime()?.block_on(async {
        let client = connect().await?;
        println!("name {}", client.name());
        let end = Instant::now() + Duration::from_secs(secs);
        let (mut count, mut first, mut last) = (0u64, None, Instant::now());
        loop {
            let wait = if first.is_some() {
                Duration::from_secs(1)
            } else {
                end.saturating_duration_since(Instant::now())
            };
            match tokio::time::timeout(wait, client.recv()).await {
                Ok(Ok(_)) => {
                    count += 1;
                    last = Instant::now();
                    first.get_or_insert(last);
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
            if Instant::now() > end {
                break;
            }
        }
        let span = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
        println!("received {count} {span:.3}");
        client.shutdown().await;
        Ok(())
    })
}

/// `--source NAME SECS`: sends datagrams of [`PAYLOAD`] bytes to NAME, up
/// to [`IN_FLIGHT`] sends at once, for SECS.
fn source(args: Vec<String>) -> anyhow::Result<()> {
    let dst: Name = args.first().context("--source NAME SECS")?.parse()?;
    let secs: u64 = args.get(1).context("--source NAME SECS")?.parse()?;
    runtime()?.block_on(async {
        let client = std::sync::Arc::new(connect().await?);
        let end = Instant::now() + Duration::from_secs(secs);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let client = client.clone();
            tasks.spawn(async move {
                let payload = bytes::Bytes::from(vec![0x5a; PAYLOAD]);
                let mut sent = 0u64;
                while Instant::now() < end {
                    client.send(dst, payload.clone()).await?;
                    sent += 1;
                }
                Ok::<u64, gdp_client::ClientError>(sent)
            });
        }
        let mut sent = 0;
        while let Some(done) = tasks.join_next().await {
            sent += done??;
        }
        eprintln!("sent {sent}");
        Ok(())
    })
}

fn print_table(routers: usize, groups: usize, bring_up: Duration, m: &Measured) {
    let rss: Vec<f64> = m.rss_kib.iter().map(|k| *k as f64 / 1024.0).collect();
    // p50, p90 and max (nearest rank, as the scenario reports count them).
    let pct = |v: &[f64]| Percentiles::of(v).map_or([f64::NAN; 3], |p| [p.p50, p.p90, p.max]);
    let (cold, warm, rss) = (pct(&m.cold_ms), pct(&m.warm_ms), pct(&rss));
    println!();
    println!(
        "{routers} routers ({groups} core, {} edge)",
        routers - groups
    );
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| bring-up (namespaces, segments, redis, routers, server, overlay answering) | {:.1} s |",
        bring_up.as_secs_f64()
    );
    println!(
        "| first ping to each router from `src` (lookup + dial), p50 / p90 / max | {:.2} / {:.2} / {:.2} ms |",
        cold[0], cold[1], cold[2]
    );
    println!(
        "| second ping (warm), p50 / p90 / max | {:.2} / {:.2} / {:.2} ms |",
        warm[0], warm[1], warm[2]
    );
    println!(
        "| datagrams of {PAYLOAD} B from `src` to `dst` (4 router hops), per second | {:.0} |",
        m.received as f64 / m.stream_secs.max(1e-9)
    );
    println!(
        "| routers' CPU per datagram, all routers together | {:.1} us |",
        m.router_cpu_us_per_datagram
    );
    let secs = |ms: Option<f64>| {
        ms.map_or_else(
            || "not within the scenario".to_owned(),
            |m| format!("{:.0} s", m / 1e3),
        )
    };
    println!(
        "| server moved to another router at 5 s of a {MOVE_SCENARIO_SECS} s scenario: until every 1 s window has a success again, writer (acknowledged appends) / subscriber (records) / stream (datagrams) | {} / {} / {} |",
        secs(m.moved.writer_ms),
        secs(m.moved.subscriber_ms),
        secs(m.moved.stream_ms)
    );
    println!(
        "| every acknowledged record delivered to the subscriber | {} ({}) |",
        if m.moved.every_record { "yes" } else { "no" },
        m.moved.report.display()
    );
    println!(
        "| resident memory per router, p50 / max | {:.1} / {:.1} MiB |",
        rss[0], rss[2]
    );
}
