//! `gdp-deploy`: local GDP overlay testbeds in network namespaces, and
//! compose files for container hosts, from one topology file.
//!
//! ```text
//! gdp-deploy up deploy/examples/three-routers.toml --state /tmp/tb
//! gdp-deploy status --state /tmp/tb
//! gdp-deploy exec --state /tmp/tb client -- gdp ping "$(gdp-deploy name --state /tmp/tb r2)"
//! gdp-deploy down --state /tmp/tb
//! gdp-deploy run deploy/examples/partition.toml --report /tmp/partition
//! gdp-deploy compose deploy/examples/three-routers.toml > compose.yaml
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gdp_deploy::engine::{self, Engine, Podman};
use gdp_deploy::network::Impairment;
use gdp_deploy::state::State;
use gdp_deploy::testbed::faults::{self, Fault, Process};
use gdp_deploy::testbed::{self, UpOptions};
use gdp_deploy::topology::Topology;
use gdp_deploy::{compose, daemon, measure, relay, sys};

/// Local GDP overlay testbeds (network namespaces) and compose files from
/// one topology file.
#[derive(Debug, Parser)]
#[command(name = "gdp-deploy", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a testbed's daemons run (part of [`Launch`]).
#[derive(Debug, clap::Args)]
struct EngineArgs {
    /// Where the daemons run: `namespaces` (host processes) or `podman`
    /// (containers of --image, joined to the same namespaces).
    #[arg(long, value_enum, default_value_t = EngineArg::Namespaces)]
    engine: EngineArg,
    /// With `--engine podman`: the GDP image (deploy/image/build.sh).
    #[arg(long, default_value = engine::DEFAULT_IMAGE)]
    image: String,
    /// With `--engine podman`: the directory's image (deploy/image/redis.sh).
    #[arg(long, default_value = engine::DEFAULT_REDIS_IMAGE)]
    redis_image: String,
    /// With `--engine podman`: a containers.conf for podman, unless
    /// CONTAINERS_CONF names one (deploy/image/containers.conf selects
    /// runc and cgroupfs, for hosts where podman's defaults fail).
    #[arg(long, value_name = "FILE")]
    containers_conf: Option<PathBuf>,
}

impl EngineArgs {
    /// The engine, checked: podman installed and its images there.
    fn engine(&self) -> anyhow::Result<Engine> {
        Ok(match self.engine {
            EngineArg::Namespaces => Engine::Namespaces,
            EngineArg::Podman => Engine::Podman(Podman::check(
                &self.image,
                &self.redis_image,
                self.containers_conf.as_deref(),
            )?),
        })
    }
}

/// Where a testbed's daemons run (see `gdp_deploy::engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EngineArg {
    /// Host processes inside the hosts' namespaces.
    Namespaces,
    /// Podman containers joined to the hosts' namespaces.
    Podman,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring a testbed up: namespaces, bridge, redis, routers, servers
    /// (needs root).
    Up {
        /// The topology file.
        topology: PathBuf,
        /// Directory for the state file, keys, data and logs.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[command(flatten)]
        launch: Launch,
        /// Print the state as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// On failure, leave what was started running for a look (`down`
        /// removes it).
        #[arg(long)]
        keep_on_failure: bool,
    },
    /// Stop every process and delete the namespaces and links (idempotent).
    Down {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 5)]
        grace: u64,
    },
    /// Show the hosts and whether each process still runs.
    Status {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Print the state file as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a host's namespace, with GDP_ROUTER set to the
    /// router that host uses.
    Exec {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// The host.
        host: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print the GDP name of a host's router (or, with --server, of its
    /// capsule server), for scripts.
    Name {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// The host.
        host: String,
        /// The capsule server's name instead of the router's.
        #[arg(long)]
        server: bool,
    },
    /// Print a compose file for container hosts.
    Compose {
        /// The topology file.
        topology: PathBuf,
        /// The compose project name.
        #[arg(long, default_value = "gdp")]
        project: String,
        /// Make every key beforehand in DIR/<host>/ (kept if there), mount
        /// them and write the names into the file.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// Check a topology file and print the hosts it describes.
    Check {
        /// The topology file.
        topology: PathBuf,
    },
    /// Cut a segment or link (every member's port), or one member's port
    /// with NETWORK:HOST.
    Cut {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// NETWORK or NETWORK:HOST.
        target: String,
    },
    /// Heal what `cut` cut.
    Heal {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// NETWORK or NETWORK:HOST.
        target: String,
    },
    /// Change a segment's or link's impairment: it becomes exactly what
    /// the flags say (no flag: none).
    Impair {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// The segment or link.
        network: String,
        /// Each member's sending rate, such as 10mbit.
        #[arg(long)]
        rate: Option<String>,
        /// Added to each packet a member sends, such as 20ms.
        #[arg(long)]
        delay: Option<String>,
        /// Percent of a member's packets dropped.
        #[arg(long)]
        loss: Option<f64>,
    },
    /// Kill a host's router (or capsule server) with SIGKILL.
    Kill(ProcessArgs),
    /// Stop a host's router (or capsule server) with SIGSTOP.
    Stop(ProcessArgs),
    /// Continue a stopped router (or capsule server) with SIGCONT.
    Cont(ProcessArgs),
    /// Start a host's router (or capsule server) again with the same
    /// command line, keys and data (stopping it first if it runs).
    Restart {
        #[command(flatten)]
        process: ProcessArgs,
        /// Seconds it may take to start.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// Stop or start the directory's redis-server.
    Directory {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// `stop` or `start`.
        #[arg(value_parser = ["stop", "start"])]
        action: String,
        /// Seconds redis may take to start.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// Restart a host's standalone capsule server attached to another
    /// host's router.
    MoveServer {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// The capsule server's host.
        host: String,
        /// The host whose router it attaches to.
        #[arg(long, value_name = "HOST")]
        to: String,
        /// Seconds the server may take to start.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// Measure delay, loss and rate from one host to another over a network
    /// they share, with UDP probes and a flood.
    Measure {
        /// The state directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// The sending host.
        from: String,
        /// The echoing host.
        to: String,
        /// Round-trip probes.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// Milliseconds between probes.
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
        /// Seconds of flood (0: none).
        #[arg(long, default_value_t = 2.0)]
        flood_secs: f64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario: bring its topology up (or use a running testbed),
    /// run its workloads and faults, and write a report with charts.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// The report directory (report.json, latency.svg,
        /// deliveries.svg, the workloads' logs, the testbed's state).
        #[arg(long, value_name = "DIR")]
        report: PathBuf,
        /// Use the running testbed in DIR instead of bringing one up (it
        /// stays up); or, if DIR holds none, keep the new one's state there.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Leave the testbed up afterwards.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        launch: Launch,
    },
    /// A scenario workload (run by `run` inside a host's namespace).
    #[command(hide = true)]
    Workload {
        /// The router's address.
        #[arg(long, global = true)]
        router: Option<std::net::SocketAddr>,
        /// The router's name.
        #[arg(long, global = true)]
        router_name: Option<String>,
        #[command(subcommand)]
        kind: WorkloadCommand,
    },
    /// Print a router's Prometheus metrics (run by `run` inside its
    /// namespace).
    #[command(hide = true)]
    Scrape {
        /// The admin API's address.
        admin: std::net::SocketAddr,
    },
    /// The echo end of `measure` (runs in the echoing host's namespace).
    #[command(hide = true)]
    UdpEcho {
        /// The address to answer on.
        #[arg(long)]
        bind: std::net::SocketAddr,
    },
    /// The probing end of `measure` (runs in the sending host's namespace);
    /// prints the report as JSON.
    #[command(hide = true)]
    UdpProbe {
        /// The echo's address.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Round-trip probes.
        #[arg(long)]
        count: usize,
        /// Milliseconds between probes.
        #[arg(long)]
        interval_ms: u64,
        /// Seconds of flood.
        #[arg(long)]
        flood_secs: f64,
    },
    /// The user-space delay of one port (started by `up` and `impair` in
    /// the links namespace).
    #[command(hide = true)]
    DelayRelay {
        /// The port the member's frames arrive on.
        #[arg(long)]
        input: String,
        /// The interface towards the network's bridge.
        #[arg(long)]
        output: String,
        /// The member's MAC address: only its frames are relayed.
        #[arg(long)]
        source_mac: pnet_datalink::MacAddr,
        /// The delay, in microseconds.
        #[arg(long)]
        delay_us: u64,
    },
}

/// How `up` and `run` start a testbed.
#[derive(Debug, clap::Args)]
struct Launch {
    /// Where gdp-router, gdp-capsule-server and gdp are (default: next
    /// to this program, else PATH).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Prefix of every namespace and link name (default: random).
    #[arg(long)]
    prefix: Option<String>,
    /// Seconds each process may take to start, and the overlay to answer.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    #[command(flatten)]
    engine: EngineArgs,
}

/// The workloads of `run`.
#[derive(Debug, Subcommand)]
enum WorkloadCommand {
    /// Create a capsule and write its metadata to a file.
    Create {
        /// The capsule server's name.
        #[arg(long)]
        server: String,
        /// The owner's key file (made if missing).
        #[arg(long)]
        key: PathBuf,
        /// Where the metadata goes.
        #[arg(long)]
        capsule_out: PathBuf,
    },
    /// Append at a rate.
    Writer {
        /// The owner's key file.
        #[arg(long)]
        key: PathBuf,
        /// The capsule's metadata file.
        #[arg(long)]
        capsule: PathBuf,
        /// Records a second.
        #[arg(long)]
        rate: f64,
        /// Start, in µs since the Unix epoch.
        #[arg(long)]
        start_us: u64,
        /// End, in µs since the Unix epoch.
        #[arg(long)]
        end_us: u64,
    },
    /// Follow a capsule.
    Subscriber {
        /// The capsule's metadata file.
        #[arg(long)]
        capsule: PathBuf,
        /// End, in µs since the Unix epoch.
        #[arg(long)]
        end_us: u64,
    },
    /// Ping a name.
    Ping {
        /// The name.
        #[arg(long)]
        target: String,
        /// Between pings, in µs.
        #[arg(long)]
        interval_us: u64,
        /// A ping unanswered this long (µs) is lost.
        #[arg(long)]
        timeout_us: u64,
        /// Start, in µs since the Unix epoch.
        #[arg(long)]
        start_us: u64,
        /// End, in µs since the Unix epoch.
        #[arg(long)]
        end_us: u64,
    },
    /// Receive a stream's datagrams.
    StreamSink {
        /// The sink's key file (made if missing).
        #[arg(long)]
        key: PathBuf,
        /// End, in µs since the Unix epoch.
        #[arg(long)]
        end_us: u64,
    },
    /// Send datagrams at a rate.
    StreamSource {
        /// The sink's name.
        #[arg(long)]
        target: String,
        /// Datagrams a second.
        #[arg(long)]
        rate: f64,
        /// Payload bytes.
        #[arg(long)]
        size: usize,
        /// As QUIC datagrams.
        #[arg(long)]
        unreliable: bool,
        /// Start, in µs since the Unix epoch.
        #[arg(long)]
        start_us: u64,
        /// End, in µs since the Unix epoch.
        #[arg(long)]
        end_us: u64,
    },
}

/// Runs one workload.
fn workload(
    router: Option<std::net::SocketAddr>,
    router_name: Option<String>,
    kind: WorkloadCommand,
) -> anyhow::Result<()> {
    let name = |text: &str| -> anyhow::Result<gdp_client::Name> {
        text.parse()
            .map_err(|e| anyhow::anyhow!("bad name {text:?}: {e}"))
    };
    let attach = gdp_deploy::workload::Attach {
        router: router.context("--router is needed")?,
        router_name: router_name.as_deref().map(name).transpose()?,
    };
    use gdp_deploy::workload as w;
    match kind {
        WorkloadCommand::Create {
            server,
            key,
            capsule_out,
        } => w::create(&attach, name(&server)?, &key, &capsule_out),
        WorkloadCommand::Writer {
            key,
            capsule,
            rate,
            start_us,
            end_us,
        } => w::writer(&attach, &key, &capsule, rate, start_us, end_us),
        WorkloadCommand::Subscriber { capsule, end_us } => w::subscriber(&attach, &capsule, end_us),
        WorkloadCommand::Ping {
            target,
            interval_us,
            timeout_us,
            start_us,
            end_us,
        } => w::ping(
            &attach,
            name(&target)?,
            Duration::from_micros(interval_us),
            Duration::from_micros(timeout_us),
            start_us,
            end_us,
        ),
        WorkloadCommand::StreamSink { key, end_us } => w::stream_sink(&attach, &key, end_us),
        WorkloadCommand::StreamSource {
            target,
            rate,
            size,
            unreliable,
            start_us,
            end_us,
        } => w::stream_source(
            &attach,
            name(&target)?,
            rate,
            size,
            unreliable,
            start_us,
            end_us,
        ),
    }
}

/// A host's process, for `kill`, `stop`, `cont` and `restart`.
#[derive(Debug, clap::Args)]
struct ProcessArgs {
    /// The state directory given to `up`.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// The host.
    host: String,
    /// Its router (default) or its standalone capsule server.
    #[arg(value_enum, default_value_t = Which::Router)]
    process: Which,
}

/// `router` or `server` on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Which {
    /// The host's router.
    Router,
    /// The host's standalone capsule server.
    Server,
}

impl ProcessArgs {
    fn process(&self) -> Process {
        match self.process {
            Which::Router => Process::Router,
            Which::Server => Process::Server,
        }
    }
}

/// Carries `fault` out on the testbed in `dir` and prints what was done.
fn fault(dir: &std::path::Path, fault: &Fault, timeout: u64) -> anyhow::Result<()> {
    let mut s = loaded(dir)?;
    println!(
        "{}",
        faults::apply(&mut s, dir, fault, Duration::from_secs(timeout))?
    );
    Ok(())
}

fn load_topology(path: &PathBuf) -> anyhow::Result<Topology> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Topology::parse(&text).with_context(|| path.display().to_string())
}

fn loaded(dir: &std::path::Path) -> anyhow::Result<State> {
    State::load(dir)?.with_context(|| format!("no testbed state in {}", dir.display()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up {
            topology,
            state,
            launch,
            json,
            keep_on_failure,
        } => {
            let engine = launch.engine.engine()?;
            let s = testbed::up(&UpOptions {
                topology,
                state_dir: state.clone(),
                bin_dir: launch.bin_dir,
                prefix: launch.prefix,
                timeout: Duration::from_secs(launch.timeout),
                keep_on_failure,
                engine,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "testbed {} is up: network {}, directory {}, state {}",
                    s.prefix,
                    s.subnet,
                    s.directory.as_ref().map_or("-", |d| d.url.as_str()),
                    state.display()
                );
                print!("{}", testbed::table(&s));
            }
        }
        Command::Down { state, grace } => {
            match testbed::down(&state, Duration::from_secs(grace))? {
                None => println!("no testbed in {}: nothing to do", state.display()),
                Some(r) => println!(
                    "down: processes stopped: {} (killed: {}); namespaces deleted: {}; links deleted: {}; containers removed: {}",
                    r.terminated + r.killed,
                    r.killed,
                    r.namespaces,
                    r.links,
                    r.containers
                ),
            }
        }
        Command::Status { state, json } => {
            let s = loaded(&state)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(ExitCode::SUCCESS);
            }
            let existing = sys::namespaces().unwrap_or_default();
            let missing: Vec<&String> = s
                .namespaces
                .iter()
                .filter(|ns| !existing.contains(ns))
                .collect();
            println!(
                "testbed {} ({}): network {}, {} namespaces{}",
                s.prefix,
                if s.complete { "up" } else { "incomplete" },
                s.subnet,
                s.namespaces.len(),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(", missing: {missing:?}")
                }
            );
            print!("{}", testbed::table(&s));
            println!();
            let procs = testbed::status(&s);
            let mut all_alive = true;
            for p in &procs {
                all_alive &= p.alive;
                println!(
                    "{:<20} {:<10} pid {:<8} {:<8} log {}",
                    p.process.program,
                    p.process.host,
                    p.process.pid,
                    if p.alive { "running" } else { "exited" },
                    p.process.log.display()
                );
            }
            if !all_alive || !missing.is_empty() {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Exec {
            state,
            host,
            command,
        } => {
            let s = loaded(&state)?;
            let status = testbed::exec(&s, &host, &command)?;
            return Ok(match status.code() {
                Some(0) => ExitCode::SUCCESS,
                Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
                None => ExitCode::FAILURE,
            });
        }
        Command::Name {
            state,
            host,
            server,
        } => {
            let s = loaded(&state)?;
            let h = s
                .host(&host)
                .with_context(|| format!("no host {host:?} in this testbed"))?;
            let name = if server {
                h.capsule_server.as_ref().map(|c| c.name.clone())
            } else {
                h.router.as_ref().map(|r| r.name.clone())
            };
            let what = if server { "capsule server" } else { "router" };
            println!(
                "{}",
                name.with_context(|| format!("host {host} runs no {what}"))?
            );
        }
        Command::Compose {
            topology,
            project,
            keys,
        } => {
            let t = load_topology(&topology)?;
            compose::check(&t).map_err(|e| anyhow::anyhow!("{}: {e}", topology.display()))?;
            let keys = keys
                .map(|dir| daemon::Keys::load_or_generate(&t, &dir))
                .transpose()?;
            print!("{}", compose::render(&t, &project, keys.as_ref()));
        }
        Command::Cut { state, target } => fault(&state, &Fault::Cut { target }, 0)?,
        Command::Heal { state, target } => fault(&state, &Fault::Heal { target }, 0)?,
        Command::Impair {
            state,
            network,
            rate,
            delay,
            loss,
        } => {
            let impairment = Impairment::parse(rate.as_deref(), delay.as_deref(), loss)
                .map_err(|(what, text, reason)| anyhow::anyhow!("bad {what} {text:?}: {reason}"))?;
            fault(
                &state,
                &Fault::Impair {
                    network,
                    impairment,
                },
                0,
            )?;
        }
        Command::Kill(a) => fault(
            &a.state,
            &Fault::Kill {
                host: a.host.clone(),
                process: a.process(),
            },
            0,
        )?,
        Command::Stop(a) => fault(
            &a.state,
            &Fault::Stop {
                host: a.host.clone(),
                process: a.process(),
            },
            0,
        )?,
        Command::Cont(a) => fault(
            &a.state,
            &Fault::Cont {
                host: a.host.clone(),
                process: a.process(),
            },
            0,
        )?,
        Command::Restart {
            process: a,
            timeout,
        } => fault(
            &a.state,
            &Fault::Restart {
                host: a.host.clone(),
                process: a.process(),
            },
            timeout,
        )?,
        Command::Directory {
            state,
            action,
            timeout,
        } => {
            let f = if action == "stop" {
                Fault::DirectoryStop
            } else {
                Fault::DirectoryStart
            };
            fault(&state, &f, timeout)?;
        }
        Command::MoveServer {
            state,
            host,
            to,
            timeout,
        } => fault(&state, &Fault::MoveServer { host, to }, timeout)?,
        Command::Measure {
            state,
            from,
            to,
            count,
            interval_ms,
            flood_secs,
            json,
        } => {
            let s = loaded(&state)?;
            let r = testbed::measure(&s, &from, &to, count, interval_ms, flood_secs)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{from} -> {to}: {}/{} answered (round-trip loss {:.2}%, one way {:.2}%), \
                     rtt min/median/p90/max = {:.3}/{:.3}/{:.3}/{:.3} ms, \
                     flood {} of {} arrived at {:.3} Mbit/s",
                    r.answered,
                    r.sent,
                    r.round_trip_loss_percent,
                    r.one_way_loss_percent,
                    r.rtt_ms[0],
                    r.rtt_ms[1],
                    r.rtt_ms[2],
                    r.rtt_ms[3],
                    r.flood_received,
                    r.flood_sent,
                    r.flood_rate_bps / 1e6
                );
            }
        }
        Command::Run {
            scenario,
            report,
            state,
            keep,
            launch,
        } => {
            let outcome = gdp_deploy::run::run(
                &gdp_deploy::run::RunOptions {
                    scenario,
                    report,
                    state,
                    keep,
                    bin_dir: launch.bin_dir,
                    prefix: launch.prefix,
                    timeout: Duration::from_secs(launch.timeout),
                    engine: launch.engine.engine()?,
                },
                &mut |line| println!("{line}"),
            )?;
            print!("{}", gdp_deploy::run::summary(&outcome.report));
            println!(
                "report: {}/report.json, charts: latency.svg, deliveries.svg",
                outcome.dir.display()
            );
        }
        Command::Workload {
            router,
            router_name,
            kind,
        } => workload(router, router_name, kind)?,
        Command::Scrape { admin } => {
            print!("{}", gdp_deploy::run::http_get(admin, "/metrics")?);
        }
        Command::UdpEcho { bind } => measure::echo(bind)?,
        Command::UdpProbe {
            to,
            count,
            interval_ms,
            flood_secs,
        } => {
            let r = measure::probe(
                to,
                count,
                Duration::from_millis(interval_ms),
                Duration::from_secs_f64(flood_secs.max(0.0)),
            )?;
            println!("{}", serde_json::to_string(&r)?);
        }
        Command::DelayRelay {
            input,
            output,
            source_mac,
            delay_us,
        } => {
            relay::run(&input, &output, source_mac, Duration::from_micros(delay_us))?;
        }
        Command::Check { topology } => {
            let t = load_topology(&topology)?;
            println!(
                "{}: network {}, directory {}",
                topology.display(),
                t.subnet,
                t.directory.url()
            );
            for h in &t.hosts {
                let what = match h.router() {
                    Some(r) => {
                        let mut s = format!("router :{}", r.port);
                        if let Some(via) = &r.via {
                            s.push_str(&format!(" via {via}"));
                        }
                        if let Some(m) = r.capsule_server {
                            s.push_str(&format!(", {m} capsule server"));
                        }
                        s
                    }
                    None => "client".to_owned(),
                };
                println!("  {:<12} {:<15} {what}", h.name, h.address);
            }
            for n in &t.networks {
                let members: Vec<String> = n
                    .members
                    .iter()
                    .map(|m| format!("{} {}", m.host, m.address))
                    .collect();
                println!(
                    "  {} {} {}: {}; impairment: {}",
                    n.kind,
                    n.name,
                    n.subnet,
                    members.join(", "),
                    n.impairment
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gdp-deploy: {e:#}");
            ExitCode::FAILURE
        }
    }
}
