//! Scenario files: a topology, a duration, workloads and timed faults,
//! run by `gdp-deploy run` (see `crate::run`).
//!
//! ```toml
//! topology = "three-routers.toml"  # a file, relative to this one; or an
//!                                  # inline [topology] table
//! duration = "20s"                 # workloads run this long
//! drain = "3s"                     # subscribers listen this much longer (default 3s)
//! window = "1s"                    # the report's time windows (default 1s)
//!
//! [[writer]]
//! name = "w"                       # default writer, writer2, ...
//! host = "client"                  # where the client runs
//! server = "r1"                    # the host whose capsule server stores the capsule
//! rate = 50                        # records a second (default 20)
//!
//! [[subscriber]]
//! host = "r3"
//! writer = "w"                     # optional with one writer
//!
//! [[ping]]
//! host = "client"
//! target = "r2"                    # that host's router
//! interval = "200ms"               # default 200ms
//! timeout = "1s"                   # default 1s
//!
//! [[stream]]                       # datagrams between clients on two hosts
//! from = "client"
//! to = "r3"
//! rate = 100                       # datagrams a second (default 100)
//! size = 64                        # payload bytes (default 64, at least 16)
//! unreliable = false               # QUIC datagrams instead of the stream
//!
//! [[fault]]
//! at = "5s"
//! do = "kill r1"                   # any fault command (crate::testbed::faults)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::testbed::faults::{Fault, Process};
use crate::topology::{ServerMode, Topology};

/// What is wrong with a scenario.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// Not TOML, a missing key, an unknown key or a value of the wrong type.
    #[error("{0}")]
    Toml(String),
    /// A value that cannot be used.
    #[error("{field}: {reason}")]
    Invalid {
        /// Where (`duration`, `writer[0].rate`, `fault[2].do`, ...).
        field: String,
        /// Why.
        reason: String,
    },
    /// The topology file could not be read, or is itself wrong.
    #[error("the topology {path}: {reason}")]
    Topology {
        /// The file (or `inline`).
        path: String,
        /// Why.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    topology: toml::Value,
    duration: String,
    drain: Option<String>,
    window: Option<String>,
    #[serde(default)]
    writer: Vec<RawWriter>,
    #[serde(default)]
    subscriber: Vec<RawSubscriber>,
    #[serde(default)]
    ping: Vec<RawPing>,
    #[serde(default)]
    stream: Vec<RawStream>,
    #[serde(default)]
    fault: Vec<RawFault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: Option<String>,
    from: String,
    to: String,
    rate: Option<f64>,
    size: Option<usize>,
    unreliable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWriter {
    name: Option<String>,
    host: String,
    server: String,
    rate: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscriber {
    name: Option<String>,
    host: String,
    writer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPing {
    name: Option<String>,
    host: String,
    target: String,
    interval: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: String,
    #[serde(rename = "do")]
    action: String,
}

/// Where the topology comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologySource {
    /// A file (relative paths are relative to the scenario file).
    File(PathBuf),
    /// A `[topology]` table in the scenario, as topology-file text.
    Inline(String),
}

/// A writer: appends to a capsule it creates.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterSpec {
    /// Its name in the report.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// The host whose capsule server stores its capsule.
    pub server: String,
    /// Records a second.
    pub rate: f64,
}

/// A subscriber to a writer's capsule.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberSpec {
    /// Its name in the report.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// The writer whose capsule it follows.
    pub writer: String,
}

/// Pings of a host's router.
#[derive(Debug, Clone, PartialEq)]
pub struct PingSpec {
    /// Its name in the report.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// The host whose router is pinged.
    pub target: String,
    /// Between pings.
    pub interval: Duration,
    /// A ping not answered within this is lost.
    pub timeout: Duration,
}

/// Datagrams from a client on one host to a client on another.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// Its name in the report.
    pub name: String,
    /// The sending host.
    pub from: String,
    /// The receiving host.
    pub to: String,
    /// Datagrams a second.
    pub rate: f64,
    /// Payload bytes of each (at least [`MIN_STREAM_SIZE`]: its number and
    /// send time).
    pub size: usize,
    /// Sent as QUIC datagrams (dropped rather than queued under load)
    /// instead of on the reliable stream.
    pub unreliable: bool,
}

/// The smallest stream payload: a datagram's number and its send time.
pub const MIN_STREAM_SIZE: usize = 16;
/// The largest stream payload.
pub const MAX_STREAM_SIZE: usize = 60 * 1024;

/// A fault at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedFault {
    /// From the start of the workloads.
    pub at: Duration,
    /// What.
    pub fault: Fault,
}

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The topology.
    pub topology: TopologySource,
    /// How long the workloads run.
    pub duration: Duration,
    /// How much longer subscribers listen.
    pub drain: Duration,
    /// The report's time windows.
    pub window: Duration,
    /// The writers.
    pub writers: Vec<WriterSpec>,
    /// The subscribers.
    pub subscribers: Vec<SubscriberSpec>,
    /// The pings.
    pub pings: Vec<PingSpec>,
    /// The datagram streams.
    pub streams: Vec<StreamSpec>,
    /// The faults, in time order.
    pub faults: Vec<TimedFault>,
}

/// The longest scenario: a day.
const MAX_DURATION: Duration = Duration::from_secs(86_400);

fn parse_duration(field: &str, text: &str) -> Result<Duration, ScenarioError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(
            field,
            format!("{text:?}: {e}: write it like 20s, 500ms or 1m"),
        )
    })?;
    if d > MAX_DURATION {
        return Err(invalid(field, "at most a day"));
    }
    Ok(d)
}

fn duration_or(
    field: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ScenarioError> {
    text.map_or(Ok(default), |t| parse_duration(field, t))
}

/// Names each workload: its own, or `<kind>`, `<kind>2`, ...; all unique.
fn name_of(
    names: &mut BTreeSet<String>,
    field: &str,
    given: Option<String>,
    kind: &str,
    i: usize,
) -> Result<String, ScenarioError> {
    let name = given.unwrap_or_else(|| {
        if i == 0 {
            kind.to_owned()
        } else {
            format!("{kind}{}", i + 1)
        }
    });
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(invalid(
            format!("{field}.name"),
            format!("{name:?} must be 1-32 of a-z, A-Z, 0-9, '-', '_'"),
        ));
    }
    if !names.insert(name.clone()) {
        return Err(invalid(
            format!("{field}.name"),
            format!("{name:?} names two workloads"),
        ));
    }
    Ok(name)
}

impl Scenario {
    /// Parses and checks a scenario's text (its topology is checked by
    /// [`Scenario::check`] once known).
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario =
            toml::from_str(text).map_err(|e| ScenarioError::Toml(e.message().to_owned()))?;
        let topology = match raw.topology {
            toml::Value::String(path) if !path.is_empty() => {
                TopologySource::File(PathBuf::from(path))
            }
            toml::Value::Table(table) => TopologySource::Inline(
                toml::to_string(&table).map_err(|e| invalid("topology", e.to_string()))?,
            ),
            _ => {
                return Err(invalid(
                    "topology",
                    "a topology file's path, or a [topology] table",
                ));
            }
        };
        let duration = parse_duration("duration", &raw.duration)?;
        if duration.is_zero() {
            return Err(invalid("duration", "must be above zero"));
        }
        let drain = duration_or("drain", raw.drain.as_deref(), Duration::from_secs(3))?;
        let window = duration_or("window", raw.window.as_deref(), Duration::from_secs(1))?;
        if window < Duration::from_millis(10) {
            return Err(invalid("window", "at least 10ms"));
        }
        let mut names = BTreeSet::new();
        let mut writers = Vec::new();
        for (i, w) in raw.writer.into_iter().enumerate() {
            let field = format!("writer[{i}]");
            let rate = w.rate.unwrap_or(20.0);
            if !(rate.is_finite() && rate > 0.0 && rate <= 10_000.0) {
                return Err(invalid(
                    format!("{field}.rate"),
                    "records a second, above 0 and at most 10000",
                ));
            }
            writers.push(WriterSpec {
                name: name_of(&mut names, &field, w.name, "writer", i)?,
                host: w.host,
                server: w.server,
                rate,
            });
        }
        let mut subscribers = Vec::new();
        for (i, s) in raw.subscriber.into_iter().enumerate() {
            let field = format!("subscriber[{i}]");
            let writer = match (s.writer, writers.as_slice()) {
                (Some(w), _) if writers.iter().any(|x| x.name == w) => w,
                (Some(w), _) => {
                    return Err(invalid(
                        format!("{field}.writer"),
                        format!("no writer {w:?}"),
                    ));
                }
                (None, [only]) => only.name.clone(),
                (None, []) => {
                    return Err(invalid(&field, "a subscriber needs a writer to follow"));
                }
                (None, _) => {
                    return Err(invalid(
                        format!("{field}.writer"),
                        "several writers: say which one",
                    ));
                }
            };
            subscribers.push(SubscriberSpec {
                name: name_of(&mut names, &field, s.name, "subscriber", i)?,
                host: s.host,
                writer,
            });
        }
        let mut pings = Vec::new();
        for (i, p) in raw.ping.into_iter().enumerate() {
            let field = format!("ping[{i}]");
            let interval = duration_or(
                &format!("{field}.interval"),
                p.interval.as_deref(),
                Duration::from_millis(200),
            )?;
            let timeout = duration_or(
                &format!("{field}.timeout"),
                p.timeout.as_deref(),
                Duration::from_secs(1),
            )?;
            if interval < Duration::from_millis(1) || timeout < Duration::from_millis(1) {
                return Err(invalid(&field, "interval and timeout must be at least 1ms"));
            }
            pings.push(PingSpec {
                name: name_of(&mut names, &field, p.name, "ping", i)?,
                host: p.host,
                target: p.target,
                interval,
                timeout,
            });
        }
        let mut streams = Vec::new();
        for (i, st) in raw.stream.into_iter().enumerate() {
            let field = format!("stream[{i}]");
            let rate = st.rate.unwrap_or(100.0);
            if !(rate.is_finite() && rate > 0.0 && rate <= 100_000.0) {
                return Err(invalid(
                    format!("{field}.rate"),
                    "datagrams a second, above 0 and at most 100000",
                ));
            }
            let size = st.size.unwrap_or(64);
            if !(MIN_STREAM_SIZE..=MAX_STREAM_SIZE).contains(&size) {
                return Err(invalid(
                    format!("{field}.size"),
                    format!("payload bytes, {MIN_STREAM_SIZE} to {MAX_STREAM_SIZE}"),
                ));
            }
            if st.from == st.to {
                return Err(invalid(&field, "from and to are the same host"));
            }
            streams.push(StreamSpec {
                name: name_of(&mut names, &field, st.name, "stream", i)?,
                from: st.from,
                to: st.to,
                rate,
                size,
                unreliable: st.unreliable.unwrap_or(false),
            });
        }
        if writers.is_empty() && pings.is_empty() && streams.is_empty() {
            return Err(invalid(
                "scenario",
                "no workload: add a [[writer]], a [[ping]] or a [[stream]]",
            ));
        }
        let mut faults = Vec::new();
        for (i, f) in raw.fault.into_iter().enumerate() {
            let at = parse_duration(&format!("fault[{i}].at"), &f.at)?;
            if at > duration {
                return Err(invalid(
                    format!("fault[{i}].at"),
                    format!("{} is after the end of the scenario", f.at),
                ));
            }
            let fault =
                Fault::parse(&f.action).map_err(|e| invalid(format!("fault[{i}].do"), e))?;
            faults.push(TimedFault { at, fault });
        }
        faults.sort_by_key(|f| f.at);
        Ok(Scenario {
            topology,
            duration,
            drain,
            window,
            writers,
            subscribers,
            pings,
            streams,
            faults,
        })
    }

    /// Reads a scenario file and its topology; a relative topology path is
    /// taken from the scenario's directory. Returns the topology's path
    /// (`None` when inline) and the topology.
    pub fn load(path: &Path) -> Result<(Scenario, Option<PathBuf>, Topology), ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::Toml(format!("reading {}: {e}", path.display())))?;
        let scenario = Scenario::parse(&text)?;
        let (file, text) = match &scenario.topology {
            TopologySource::File(p) => {
                let full = path.parent().unwrap_or(Path::new(".")).join(p);
                let text = std::fs::read_to_string(&full).map_err(|e| ScenarioError::Topology {
                    path: full.display().to_string(),
                    reason: e.to_string(),
                })?;
                (Some(full), text)
            }
            TopologySource::Inline(text) => (None, text.clone()),
        };
        let topology = Topology::parse(&text).map_err(|e| ScenarioError::Topology {
            path: file
                .as_ref()
                .map_or_else(|| "inline".to_owned(), |p| p.display().to_string()),
            reason: e.to_string(),
        })?;
        scenario.check(&topology)?;
        Ok((scenario, file, topology))
    }

    /// Checks the hosts, servers, routers and networks the scenario names
    /// against `topology`.
    pub fn check(&self, topology: &Topology) -> Result<(), ScenarioError> {
        let host = |field: String, name: &str| {
            topology
                .host(name)
                .ok_or_else(|| invalid(field, format!("no host {name:?} in the topology")))
        };
        let router = |field: String, name: &str| {
            host(field.clone(), name)?
                .router()
                .ok_or_else(|| invalid(field, format!("host {name} runs no router")))
        };
        for (i, w) in self.writers.iter().enumerate() {
            host(format!("writer[{i}].host"), &w.host)?;
            if router(format!("writer[{i}].server"), &w.server)?
                .capsule_server
                .is_none()
            {
                return Err(invalid(
                    format!("writer[{i}].server"),
                    format!("host {} runs no capsule server", w.server),
                ));
            }
        }
        for (i, s) in self.subscribers.iter().enumerate() {
            host(format!("subscriber[{i}].host"), &s.host)?;
        }
        for (i, p) in self.pings.iter().enumerate() {
            host(format!("ping[{i}].host"), &p.host)?;
            router(format!("ping[{i}].target"), &p.target)?;
        }
        for (i, st) in self.streams.iter().enumerate() {
            host(format!("stream[{i}].from"), &st.from)?;
            host(format!("stream[{i}].to"), &st.to)?;
        }
        for (i, f) in self.faults.iter().enumerate() {
            let field = format!("fault[{i}].do");
            match &f.fault {
                Fault::Kill { host: h, process }
                | Fault::Stop { host: h, process }
                | Fault::Cont { host: h, process }
                | Fault::Restart { host: h, process } => {
                    let r = router(field.clone(), h)?;
                    if *process == Process::Server
                        && r.capsule_server != Some(ServerMode::Standalone)
                    {
                        return Err(invalid(
                            field,
                            format!("host {h} runs no standalone capsule server"),
                        ));
                    }
                }
                Fault::MoveServer { host: h, to } => {
                    if router(field.clone(), h)?.capsule_server != Some(ServerMode::Standalone) {
                        return Err(invalid(
                            field,
                            format!("host {h} runs no standalone capsule server"),
                        ));
                    }
                    router(field, to)?;
                }
                Fault::Cut { target } | Fault::Heal { target } => {
                    let (net, member) = match target.split_once(':') {
                        Some((n, m)) => (n, Some(m)),
                        None => (target.as_str(), None),
                    };
                    let Some(n) = topology.network(net) else {
                        return Err(invalid(field, format!("no segment or link {net:?}")));
                    };
                    if let Some(m) = member.filter(|m| n.member(m).is_none()) {
                        return Err(invalid(field, format!("host {m:?} is not on {net}")));
                    }
                }
                Fault::Impair { network, .. } => {
                    if topology.network(network).is_none() {
                        return Err(invalid(field, format!("no segment or link {network:?}")));
                    }
                }
                Fault::DirectoryStop | Fault::DirectoryStart => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GOOD: &str = r#"
topology = "t.toml"
duration = "10s"

[[writer]]
host = "c"
server = "r1"
rate = 50

[[subscriber]]
host = "r2"

[[ping]]
host = "c"
target = "r2"
interval = "100ms"

[[fault]]
at = "6s"
do = "restart r1"

[[fault]]
at = "3s"
do = "kill r1"
"#;

    const TOPOLOGY: &str = r#"
[[host]]
name = "r1"
router = { capsule_server = "standalone" }
[[host]]
name = "r2"
router = {}
[[host]]
name = "c"
attach = "r1"
[[segment]]
name = "lan"
hosts = ["r1", "r2", "c"]
"#;

    #[test]
    fn a_scenario_parses_with_its_defaults() {
        let s = Scenario::parse(GOOD).expect("valid");
        assert_eq!(s.topology, TopologySource::File("t.toml".into()));
        assert_eq!(s.duration, Duration::from_secs(10));
        assert_eq!(s.drain, Duration::from_secs(3));
        assert_eq!(s.window, Duration::from_secs(1));
        assert_eq!(s.writers[0].name, "writer");
        assert_eq!(s.writers[0].rate, 50.0);
        assert_eq!(s.subscribers[0].writer, "writer");
        assert_eq!(s.subscribers[0].name, "subscriber");
        assert_eq!(s.pings[0].interval, Duration::from_millis(100));
        assert_eq!(s.pings[0].timeout, Duration::from_secs(1));
        // In time order.
        assert_eq!(s.faults[0].at, Duration::from_secs(3));
        assert_eq!(s.faults[0].fault.to_string(), "kill r1 router");
        let topology = Topology::parse(TOPOLOGY).expect("valid topology");
        s.check(&topology).expect("consistent");
    }

    #[test]
    fn an_inline_topology_is_kept_as_text() {
        let text = format!(
            "duration = \"5s\"\n[[ping]]\nhost = \"c\"\ntarget = \"r2\"\n[topology]\n{}",
            TOPOLOGY
                .replace("[[host]]", "[[topology.host]]")
                .replace("[[segment]]", "[[topology.segment]]")
        );
        let s = Scenario::parse(&text).expect("valid");
        let TopologySource::Inline(inline) = &s.topology else {
            panic!("inline");
        };
        let t = Topology::parse(inline).expect("the inline table is a topology");
        assert_eq!(t.hosts.len(), 3);
        s.check(&t).expect("consistent");
    }

    #[test]
    fn bad_scenarios_say_what_is_wrong() {
        let with = |from: &str, to: &str| GOOD.replacen(from, to, 1);
        for (text, says) in [
            ("duration = \"1s\"".to_owned(), "missing field `topology`"),
            (with("duration = \"10s\"", ""), "missing field `duration`"),
            (with("duration = \"10s\"", "duration = \"soon\""), "duration"),
            (with("duration = \"10s\"", "duration = \"0s\""), "above zero"),
            (with("duration = \"10s\"", "duration = \"1000days\""), "at most a day"),
            (with("topology = \"t.toml\"", "topology = 3"), "topology"),
            (with("rate = 50", "rate = 0"), "writer[0].rate"),
            (with("rate = 50", "rate = -1"), "writer[0].rate"),
            (with("rate = 50", "rate = 50\ncolour = 1"), "unknown field `colour`"),
            (with("host = \"r2\"\n", "host = \"r2\"\nwriter = \"x\"\n"), "no writer \"x\""),
            (with("interval = \"100ms\"", "interval = \"0ms\""), "at least 1ms"),
            (with("do = \"kill r1\"", "do = \"explode r1\""), "fault[1].do"),
            (with("at = \"3s\"", "at = \"30s\""), "after the end"),
            (with("host = \"c\"\nserver", "name = \"a b\"\nhost = \"c\"\nserver"), "must be 1-32"),
            (format!("{GOOD}\n[[writer]]\nhost = \"c\"\nserver = \"r1\"\n"), "say which one"),
            (format!("{GOOD}\n[[ping]]\nname = \"writer\"\nhost = \"c\"\ntarget = \"r1\"\n"), "names two"),
            ("topology = \"t\"\nduration = \"1s\"\n".to_owned(), "no workload"),
            (
                "topology = \"t\"\nduration = \"1s\"\n[[stream]]\nfrom = \"a\"\nto = \"a\"\n"
                    .to_owned(),
                "the same host",
            ),
            (
                "topology = \"t\"\nduration = \"1s\"\n[[stream]]\nfrom = \"a\"\nto = \"b\"\nsize = 8\n"
                    .to_owned(),
                "stream[0].size",
            ),
            ("topology = \"t\"\nduration = \"1s\"\n[[subscriber]]\nhost = \"c\"\n[[ping]]\nhost = \"c\"\ntarget = \"r\"\n".to_owned(), "needs a writer"),
            ("not toml at all =".to_owned(), ""),
        ] {
            let e = Scenario::parse(&text).expect_err(&text).to_string();
            assert!(e.contains(says), "{text}\n=> {e}");
        }
    }

    #[test]
    fn scenarios_are_checked_against_their_topology() {
        let topology = Topology::parse(TOPOLOGY).expect("valid topology");
        for (from, to, says) in [
            (
                "host = \"c\"\nserver",
                "host = \"x\"\nserver",
                "writer[0].host: no host \"x\"",
            ),
            (
                "server = \"r1\"",
                "server = \"r2\"",
                "host r2 runs no capsule server",
            ),
            ("server = \"r1\"", "server = \"c\"", "host c runs no router"),
            (
                "target = \"r2\"",
                "target = \"c\"",
                "ping[0].target: host c runs no router",
            ),
            (
                "do = \"kill r1\"",
                "do = \"kill r2 server\"",
                "no standalone capsule server",
            ),
            (
                "do = \"kill r1\"",
                "do = \"cut wan\"",
                "no segment or link \"wan\"",
            ),
            (
                "do = \"kill r1\"",
                "do = \"cut lan:zz\"",
                "\"zz\" is not on lan",
            ),
            (
                "do = \"kill r1\"",
                "do = \"impair wan --loss 1\"",
                "no segment or link",
            ),
            (
                "do = \"kill r1\"",
                "do = \"move-server r1 --to c\"",
                "host c runs no router",
            ),
        ] {
            let s = Scenario::parse(&GOOD.replacen(from, to, 1)).expect("parses");
            let e = s.check(&topology).expect_err(to).to_string();
            assert!(e.contains(says), "{to}\n=> {e}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,400}") {
            let _ = Scenario::parse(&text);
        }

        #[test]
        fn parsing_mangled_scenarios_never_panics(cut in 0usize..400, junk in "[\\[\\]=\"a-z0-9 .\\n]{0,40}") {
            let mut text = GOOD.to_owned();
            let at = cut.min(text.len());
            if text.is_char_boundary(at) {
                text.insert_str(at, &junk);
            }
            let _ = Scenario::parse(&text);
        }
    }
}
