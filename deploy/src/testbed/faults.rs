//! Faults on command, against a running testbed: processes killed,
//! stopped, continued, restarted; the directory stopped and started; a
//! standalone capsule server moved to another router; segments and links
//! cut, healed and impaired.
//!
//! A [`Fault`] is parsed from the words of a command (`kill r1`, `restart
//! r1 server`, `cut lan:r2`, `impair r2-r3 --delay 5ms`), which is how the
//! `gdp-deploy` subcommands and scenario files (`crate::scenario`) both
//! name them, and [`apply`] carries it out and says what it did. A restart
//! runs the process's recorded command line again in its namespace, with
//! the same state directory (keys, data), after moving its old logs aside
//! (`<host>.<program>.<n>.out` and `.log`), and waits for its start line.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

use crate::daemon;
use crate::network::Impairment;
use crate::state::State;
use crate::sys::{self, Spawned};

/// The directory's program.
const REDIS: &str = "redis-server";
/// The directory's host in the state file.
const DIRECTORY_HOST: &str = "directory";
/// How long a process may take to die after SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Which of a host's processes a fault is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Process {
    /// Its router (the default).
    #[default]
    Router,
    /// Its standalone capsule server.
    Server,
}

impl Process {
    fn program(self) -> &'static str {
        match self {
            Process::Router => daemon::ROUTER,
            Process::Server => daemon::CAPSULE_SERVER,
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Process::Router => "router",
            Process::Server => "server",
        })
    }
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL.
    Kill {
        /// The host.
        host: String,
        /// Its router or its capsule server.
        process: Process,
    },
    /// SIGSTOP.
    Stop {
        /// The host.
        host: String,
        /// Its router or its capsule server.
        process: Process,
    },
    /// SIGCONT.
    Cont {
        /// The host.
        host: String,
        /// Its router or its capsule server.
        process: Process,
    },
    /// Started again with the same command line (stopped first if it
    /// still runs).
    Restart {
        /// The host.
        host: String,
        /// Its router or its capsule server.
        process: Process,
    },
    /// The directory's redis-server stopped (SIGTERM).
    DirectoryStop,
    /// The directory's redis-server started again.
    DirectoryStart,
    /// A standalone capsule server restarted, attached to another router.
    MoveServer {
        /// The server's host.
        host: String,
        /// The host whose router it attaches to.
        to: String,
    },
    /// Every member's port of a network, or one (`NETWORK:HOST`), down.
    Cut {
        /// `NETWORK` or `NETWORK:HOST`.
        target: String,
    },
    /// What `Cut` took down, up again.
    Heal {
        /// `NETWORK` or `NETWORK:HOST`.
        target: String,
    },
    /// A network's impairment set to exactly this.
    Impair {
        /// The segment or link.
        network: String,
        /// The new impairment.
        impairment: Impairment,
    },
}

const USAGE: &str = "kill|stop|cont|restart HOST [router|server], directory stop|start, \
                     move-server HOST --to HOST, cut|heal NETWORK[:HOST], \
                     impair NETWORK [--rate R] [--delay D] [--loss L]";

impl Fault {
    /// Parses a fault from the words of its command, such as `kill r1`,
    /// `restart r1 server` or `impair r2-r3 --delay 5ms --loss 1`.
    pub fn parse(text: &str) -> Result<Fault, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let Some((&verb, rest)) = words.split_first() else {
            return Err(format!("an empty fault: use one of {USAGE}"));
        };
        let process = |rest: &[&str]| -> Result<(String, Process), String> {
            match rest {
                [host] => Ok(((*host).to_owned(), Process::Router)),
                [host, "router"] => Ok(((*host).to_owned(), Process::Router)),
                [host, "server"] => Ok(((*host).to_owned(), Process::Server)),
                [_, other] => Err(format!(
                    "`{verb}`: {other:?} is neither `router` nor `server`"
                )),
                _ => Err(format!("`{verb}` takes HOST [router|server]")),
            }
        };
        let one = |rest: &[&str], what: &str| -> Result<String, String> {
            match rest {
                [x] => Ok((*x).to_owned()),
                _ => Err(format!("`{verb}` takes one {what}")),
            }
        };
        Ok(match verb {
            "kill" | "stop" | "cont" | "restart" => {
                let (host, process) = process(rest)?;
                match verb {
                    "kill" => Fault::Kill { host, process },
                    "stop" => Fault::Stop { host, process },
                    "cont" => Fault::Cont { host, process },
                    _ => Fault::Restart { host, process },
                }
            }
            "directory" => match rest {
                ["stop"] => Fault::DirectoryStop,
                ["start"] => Fault::DirectoryStart,
                _ => return Err("`directory` takes `stop` or `start`".to_owned()),
            },
            "move-server" => match rest {
                [host, "--to", to] => Fault::MoveServer {
                    host: (*host).to_owned(),
                    to: (*to).to_owned(),
                },
                _ => return Err("`move-server` takes HOST --to HOST".to_owned()),
            },
            "cut" => Fault::Cut {
                target: one(rest, "NETWORK[:HOST]")?,
            },
            "heal" => Fault::Heal {
                target: one(rest, "NETWORK[:HOST]")?,
            },
            "impair" => {
                let Some((&network, mut flags)) = rest.split_first() else {
                    return Err("`impair` takes NETWORK [--rate R] [--delay D] [--loss L]".into());
                };
                let (mut rate, mut delay, mut loss) = (None, None, None);
                while let [flag, value, more @ ..] = flags {
                    match *flag {
                        "--rate" => rate = Some(*value),
                        "--delay" => delay = Some(*value),
                        "--loss" => {
                            loss = Some(value.parse::<f64>().map_err(|_| {
                                format!("`impair`: --loss {value:?} is not a number")
                            })?);
                        }
                        other => return Err(format!("`impair`: unknown flag {other:?}")),
                    }
                    flags = more;
                }
                if !flags.is_empty() {
                    return Err(format!("`impair`: {:?} needs a value", flags[0]));
                }
                let impairment = Impairment::parse(rate, delay, loss)
                    .map_err(|(what, text, why)| format!("`impair`: bad {what} {text:?}: {why}"))?;
                Fault::Impair {
                    network: network.to_owned(),
                    impairment,
                }
            }
            other => return Err(format!("unknown fault {other:?}: use one of {USAGE}")),
        })
    }

    /// Whether this fault undoes `earlier`: a restart or continue of the
    /// same process, a heal of the same network (or of the whole network a
    /// port was cut from), the directory started after it stopped, a new
    /// impairment of the same network.
    pub fn heals(&self, earlier: &Fault) -> bool {
        match (self, earlier) {
            (
                Fault::Restart { host, process },
                Fault::Kill {
                    host: h,
                    process: p,
                }
                | Fault::Stop {
                    host: h,
                    process: p,
                },
            )
            | (
                Fault::Cont { host, process },
                Fault::Stop {
                    host: h,
                    process: p,
                },
            ) => host == h && process == p,
            (Fault::Heal { target }, Fault::Cut { target: t }) => {
                target == t || t.split_once(':').is_some_and(|(net, _)| net == target)
            }
            (Fault::DirectoryStart, Fault::DirectoryStop) => true,
            (Fault::Impair { network, .. }, Fault::Impair { network: n, .. }) => network == n,
            _ => false,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { host, process } => write!(f, "kill {host} {process}"),
            Fault::Stop { host, process } => write!(f, "stop {host} {process}"),
            Fault::Cont { host, process } => write!(f, "cont {host} {process}"),
            Fault::Restart { host, process } => write!(f, "restart {host} {process}"),
            Fault::DirectoryStop => f.write_str("directory stop"),
            Fault::DirectoryStart => f.write_str("directory start"),
            Fault::MoveServer { host, to } => write!(f, "move-server {host} --to {to}"),
            Fault::Cut { target } => write!(f, "cut {target}"),
            Fault::Heal { target } => write!(f, "heal {target}"),
            Fault::Impair {
                network,
                impairment,
            } => write!(f, "impair {network} ({impairment})"),
        }
    }
}

/// The index in `state.processes` of `host`'s `process`.
fn find(state: &State, host: &str, process: Process) -> anyhow::Result<usize> {
    let Some(h) = state.host(host) else {
        let known: Vec<&str> = state.hosts.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "no host {host:?} in this testbed (hosts: {})",
            known.join(", ")
        );
    };
    match process {
        Process::Router if h.router.is_none() => bail!("host {host} runs no router"),
        Process::Server => match &h.capsule_server {
            None => bail!("host {host} runs no capsule server"),
            Some(s) if s.mode == crate::topology::ServerMode::Embedded => bail!(
                "the capsule server of {host} is embedded in its router: name the router instead"
            ),
            Some(_) => {}
        },
        Process::Router => {}
    }
    program_index(state, host, process.program())
}

fn program_index(state: &State, host: &str, program: &str) -> anyhow::Result<usize> {
    state
        .processes
        .iter()
        .rposition(|p| p.host == host && p.program == program)
        .ok_or_else(|| anyhow!("no {program} of {host} in the state file"))
}

fn wait_dead(p: Spawned, grace: Duration) -> bool {
    let until = Instant::now() + grace;
    while sys::is_alive(p) {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Sends `signal` to process `i`, which must run; for KILL and TERM, waits
/// until it is gone (TERM: SIGKILL after [`GRACE`]).
fn signal(state: &State, i: usize, signal: &str) -> anyhow::Result<String> {
    let p = &state.processes[i];
    let what = format!("{} on {} (pid {})", p.program, p.host, p.pid);
    if !sys::is_alive(p.spawned()) {
        bail!("{what} is not running");
    }
    sys::signal(p.pid, signal);
    match signal {
        "KILL" if !wait_dead(p.spawned(), Duration::from_secs(2)) => {
            bail!("{what} is still there after SIGKILL");
        }
        "TERM" if !wait_dead(p.spawned(), GRACE) => {
            sys::signal(p.pid, "KILL");
            wait_dead(p.spawned(), Duration::from_secs(2));
            return Ok(format!("{what}, which needed SIGKILL after {GRACE:?}"));
        }
        _ => {}
    }
    Ok(what)
}

/// The next free `<stem>.<n>` for a process's old logs.
fn rotate_logs(stdout: &Path, log: &Path) {
    for n in 1.. {
        let aside = |p: &Path| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            let ext = p.extension().map(|s| s.to_string_lossy().into_owned());
            p.with_file_name(format!(
                "{}.{n}.{}",
                stem.unwrap_or_default(),
                ext.unwrap_or_default()
            ))
        };
        let (out, err) = (aside(stdout), aside(log));
        if !out.exists() && !err.exists() {
            let _ = std::fs::rename(stdout, out);
            let _ = std::fs::rename(log, err);
            return;
        }
    }
}

/// The line a program prints when it is ready, and whether it is a prefix
/// (else anywhere in a line).
fn ready_line(program: &str) -> (&'static str, bool) {
    match program {
        REDIS => ("Ready to accept connections", false),
        daemon::ROUTER => ("gdp-router ", true),
        daemon::CAPSULE_SERVER => ("gdp-capsule-server ", true),
        _ => ("", false),
    }
}

/// Starts process `i` again with its recorded command line (which must
/// not run any more) and waits for its start line.
fn respawn(state: &mut State, i: usize, timeout: Duration) -> anyhow::Result<Spawned> {
    let p = &state.processes[i];
    let binary = p.binary.clone().ok_or_else(|| {
        anyhow!(
            "the state file does not record how {} on {} was started (made by an older gdp-deploy): \
             bring the testbed up again",
            p.program,
            p.host
        )
    })?;
    rotate_logs(&p.stdout, &p.log);
    let spawned = state.engine.launch(
        &state.prefix,
        &p.host,
        &p.program,
        p.namespace.as_deref(),
        &binary,
        &p.args,
        &p.stdout,
        &p.log,
    )?;
    let (needle, prefix) = ready_line(&p.program);
    let ready = sys::wait_for_line(&p.stdout, needle, !prefix, spawned, timeout);
    let p = &mut state.processes[i];
    p.pid = spawned.pid;
    p.start_time = spawned.start_time;
    ready.map_err(|e| {
        anyhow!(
            "{} on {} did not start again: {e}\n--- {} ---\n{}",
            p.program,
            p.host,
            p.log.display(),
            sys::tail(&p.log, 20)
        )
    })?;
    Ok(spawned)
}

/// The address of `to`'s router as `from` reaches it: on a data network
/// they share, or on the one flat network.
fn router_address_from(state: &State, from: &str, to: &str) -> anyhow::Result<SocketAddr> {
    let router = state
        .host(to)
        .with_context(|| format!("no host {to:?} in this testbed"))?
        .router
        .as_ref()
        .with_context(|| format!("host {to} runs no router"))?;
    if state.networks.is_empty() {
        return Ok(router.listen);
    }
    let (_, address) = super::links::shared(state, from, to)
        .with_context(|| format!("{from} and {to} share no segment or link"))?;
    Ok(SocketAddr::from((address, router.listen.port())))
}

/// Replaces the value after `flag` in `args` (adding both when missing).
fn set_flag(args: &mut Vec<String>, flag: &str, value: String) {
    match args.iter().position(|a| a == flag) {
        Some(i) if i + 1 < args.len() => args[i + 1] = value,
        _ => {
            args.push(flag.to_owned());
            args.push(value);
        }
    }
}

/// Carries `fault` out on the testbed whose state (in `dir`) is `state`,
/// saves the state, and says what it did. `timeout` bounds waiting for a
/// restarted process's start line.
pub fn apply(
    state: &mut State,
    dir: &Path,
    fault: &Fault,
    timeout: Duration,
) -> anyhow::Result<String> {
    let done = match fault {
        Fault::Kill { host, process } => {
            let i = find(state, host, *process)?;
            format!("killed {} with SIGKILL", signal(state, i, "KILL")?)
        }
        Fault::Stop { host, process } => {
            let i = find(state, host, *process)?;
            format!("stopped {} with SIGSTOP", signal(state, i, "STOP")?)
        }
        Fault::Cont { host, process } => {
            let i = find(state, host, *process)?;
            format!("continued {} with SIGCONT", signal(state, i, "CONT")?)
        }
        Fault::Restart { host, process } => {
            let i = find(state, host, *process)?;
            let old = state.processes[i].pid;
            let was = if sys::is_alive(state.processes[i].spawned()) {
                // A stopped process cannot act on SIGTERM until continued.
                sys::signal(old, "CONT");
                format!("after SIGTERM to {}", signal(state, i, "TERM")?)
            } else {
                format!("pid {old} had exited")
            };
            let started = Instant::now();
            let new = respawn(state, i, timeout)?;
            format!(
                "restarted {} on {host}: pid {} ({was}); start line after {} ms",
                state.processes[i].program,
                new.pid,
                started.elapsed().as_millis()
            )
        }
        Fault::DirectoryStop => {
            let i = program_index(state, DIRECTORY_HOST, REDIS)?;
            format!("stopped the directory: {}", signal(state, i, "TERM")?)
        }
        Fault::DirectoryStart => {
            let i = program_index(state, DIRECTORY_HOST, REDIS)?;
            if sys::is_alive(state.processes[i].spawned()) {
                bail!(
                    "the directory is running (pid {}): nothing to start",
                    state.processes[i].pid
                );
            }
            let new = respawn(state, i, timeout)?;
            format!("started the directory: {REDIS} pid {}", new.pid)
        }
        Fault::MoveServer { host, to } => {
            let i = find(state, host, Process::Server)?;
            let address = router_address_from(state, host, to)?;
            let name = state
                .host(to)
                .and_then(|h| h.router.as_ref())
                .map(|r| r.name.clone())
                .with_context(|| format!("host {to} runs no router"))?;
            if sys::is_alive(state.processes[i].spawned()) {
                sys::signal(state.processes[i].pid, "CONT");
                signal(state, i, "TERM")?;
            }
            let args = &mut state.processes[i].args;
            set_flag(args, "--router", address.to_string());
            set_flag(args, "--router-name", name);
            let new = respawn(state, i, timeout)?;
            format!(
                "moved the capsule server of {host} to the router on {to} ({address}): pid {}",
                new.pid
            )
        }
        Fault::Cut { target } => {
            let n = super::links::set_ports(state, target, false)?;
            format!("cut {target}: {n} port(s) went down")
        }
        Fault::Heal { target } => {
            let n = super::links::set_ports(state, target, true)?;
            format!("healed {target}: {n} port(s) came up")
        }
        Fault::Impair {
            network,
            impairment,
        } => {
            let (net, _) = super::links::ports_of(state, network)?;
            let exe = std::env::current_exe()?;
            let result = super::links::apply(state, dir, &exe, net, *impairment);
            state.save(dir)?;
            result?;
            format!("{network}: {impairment}")
        }
    };
    state.save(dir)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_their_commands() {
        let kill = |host: &str, process| Fault::Kill {
            host: host.into(),
            process,
        };
        assert_eq!(Fault::parse("kill r1"), Ok(kill("r1", Process::Router)));
        assert_eq!(
            Fault::parse("  kill   r1  server "),
            Ok(kill("r1", Process::Server))
        );
        assert_eq!(
            Fault::parse("restart r1 router"),
            Ok(Fault::Restart {
                host: "r1".into(),
                process: Process::Router
            })
        );
        assert_eq!(Fault::parse("directory stop"), Ok(Fault::DirectoryStop));
        assert_eq!(
            Fault::parse("move-server r1 --to r2"),
            Ok(Fault::MoveServer {
                host: "r1".into(),
                to: "r2".into()
            })
        );
        assert_eq!(
            Fault::parse("cut lan:r2"),
            Ok(Fault::Cut {
                target: "lan:r2".into()
            })
        );
        let Ok(Fault::Impair {
            network,
            impairment,
        }) = Fault::parse("impair r2-r3 --delay 5ms --loss 1.5")
        else {
            panic!("an impairment");
        };
        assert_eq!(network, "r2-r3");
        assert_eq!(impairment.delay_us, Some(5_000));
        assert_eq!(impairment.loss, Some(150));
        assert!(Fault::parse("impair lan").is_ok_and(|f| f.to_string() == "impair lan (none)"));
    }

    #[test]
    fn bad_faults_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty fault"),
            ("explode r1", "unknown fault \"explode\""),
            ("kill", "takes HOST"),
            ("kill r1 redis", "neither `router` nor `server`"),
            ("kill r1 router now", "takes HOST"),
            ("directory pause", "`stop` or `start`"),
            ("move-server r1 r2", "HOST --to HOST"),
            ("cut", "takes one"),
            ("heal a b", "takes one"),
            ("impair", "takes NETWORK"),
            ("impair lan --delay", "needs a value"),
            ("impair lan --jitter 5ms", "unknown flag"),
            ("impair lan --loss much", "not a number"),
            ("impair lan --loss 120", "bad loss"),
            ("impair lan --rate fast", "bad rate"),
        ] {
            let e = Fault::parse(text).expect_err(text);
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn heals_pair_a_fault_with_what_undoes_it() {
        let f = |t: &str| Fault::parse(t).expect("valid");
        assert!(f("restart r1").heals(&f("kill r1")));
        assert!(f("restart r1").heals(&f("stop r1")));
        assert!(f("cont r1 server").heals(&f("stop r1 server")));
        assert!(!f("cont r1").heals(&f("stop r1 server")));
        assert!(!f("restart r2").heals(&f("kill r1")));
        assert!(f("heal lan").heals(&f("cut lan")));
        assert!(f("heal lan").heals(&f("cut lan:r2")));
        assert!(!f("heal lan:r1").heals(&f("cut lan:r2")));
        assert!(f("directory start").heals(&f("directory stop")));
        assert!(f("impair lan").heals(&f("impair lan --loss 5")));
        assert!(!f("heal lan").heals(&f("kill r1")));
    }

    #[test]
    fn set_flag_replaces_or_adds() {
        let mut args = vec!["--router".to_owned(), "a".to_owned(), "--log".to_owned()];
        set_flag(&mut args, "--router", "b".into());
        set_flag(&mut args, "--router-name", "n".into());
        assert_eq!(args, ["--router", "b", "--log", "--router-name", "n"]);
    }
}
