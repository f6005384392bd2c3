//! A scenario's report, from the workloads' event logs and the faults'
//! times: what each writer had acknowledged, what each subscriber received
//! (lost, duplicated, out of order), ping round trips and losses, latency
//! percentiles overall and per time window, and for each fault the time to
//! recover. Pure functions of their inputs, so they are tested without a
//! testbed; `crate::run` gathers the inputs and writes the result.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::workload::{Event, EventKind};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many samples.
    pub count: usize,
    /// The smallest.
    pub min: f64,
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (ms); `None` when empty.
    pub fn of(samples: &[f64]) -> Option<Percentiles> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            // Nearest rank: ceil(p * n), 1-based.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let r = (p * s.len() as f64).ceil() as usize;
            s[r.clamp(1, s.len()) - 1]
        };
        Some(Percentiles {
            count: s.len(),
            min: s[0],
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: s[s.len() - 1],
        })
    }
}

/// One time window of a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Its start, in seconds from the start of the scenario.
    pub start_s: f64,
    /// Successes in it (acknowledged appends, records received, pongs).
    pub count: usize,
    /// Pings lost in it (pings only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost: usize,
    /// The latencies of its successes.
    pub latency_ms: Option<Percentiles>,
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's signature")]
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What kind of workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// Appends to a capsule.
    Writer,
    /// Follows a writer's capsule.
    Subscriber,
    /// Pings a router.
    Ping,
    /// Sends a stream's datagrams.
    Source,
    /// Receives a stream's datagrams (its peer: the stream's name).
    Sink,
}

/// One workload's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadReport {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: WorkloadKind,
    /// Its host.
    pub host: String,
    /// Writer: the capsule server's host; subscriber: the writer; ping:
    /// the pinged router's host.
    pub peer: String,
    /// Writer: appends acknowledged; subscriber: distinct records
    /// received; ping: pongs.
    pub delivered: usize,
    /// Subscriber: acknowledged records never received; ping: pings lost.
    pub lost: usize,
    /// Subscriber: records received more than once (counting each extra
    /// copy).
    pub duplicated: usize,
    /// Subscriber: records received after a higher seqno.
    pub out_of_order: usize,
    /// Errors the workload logged (failed appends, subscription errors,
    /// connection attempts).
    pub errors: usize,
    /// Subscriber: the acknowledged seqnos it never received.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u64>,
    /// Overall latency: ack (writer), from the writer's send (subscriber),
    /// round trip (ping).
    pub latency_ms: Option<Percentiles>,
    /// Per window.
    pub windows: Vec<Window>,
}

/// A fault and the recovery after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    /// The command.
    pub action: String,
    /// When it was due, in seconds from the start.
    pub planned_s: f64,
    /// When it was carried out.
    pub at_s: f64,
    /// What `gdp-deploy` said, or why it failed.
    pub result: String,
    /// Whether it was carried out.
    pub ok: bool,
    /// The later fault that undid it (restart, cont, heal, directory
    /// start, a new impairment), by index in the list.
    pub healed_by: Option<usize>,
    /// Recovery is measured from here: the heal's time, else the fault's.
    pub recovery_from_s: f64,
    /// Per workload: from `recovery_from_s` to its first success after it
    /// (`null`: none came).
    pub recovery_ms: BTreeMap<String, Option<f64>>,
    /// The longest of those: every workload works again after this long
    /// (`null`: one never did).
    pub recovered_after_ms: Option<f64>,
}

/// What a fault did, as `crate::run` recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRecord {
    /// The command.
    pub action: String,
    /// When it was due.
    pub planned: Duration,
    /// When it was carried out, in µs since the Unix epoch.
    pub t_us: u64,
    /// Whether it worked, and what was said.
    pub result: Result<String, String>,
    /// The later fault that undid it, by index.
    pub healed_by: Option<usize>,
}

/// A workload's events, with what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadLog {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: WorkloadKind,
    /// Its host.
    pub host: String,
    /// See [`WorkloadReport::peer`].
    pub peer: String,
    /// Its events, in the order written.
    pub events: Vec<Event>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The scenario file.
    pub scenario: String,
    /// The start of the workloads, in µs since the Unix epoch.
    pub start_unix_us: u64,
    /// How long the workloads ran, in seconds.
    pub duration_s: f64,
    /// The window length, in seconds.
    pub window_s: f64,
    /// Whether every acknowledged record reached every subscriber.
    pub every_acknowledged_record_delivered: bool,
    /// The same, in words, with the missing seqnos when not.
    pub statement: String,
    /// The workloads.
    pub workloads: Vec<WorkloadReport>,
    /// The faults, in time order.
    pub faults: Vec<FaultReport>,
    /// Each router's metrics at the end (Prometheus samples by name and
    /// labels), or why they could not be read.
    pub routers: BTreeMap<String, Result<BTreeMap<String, f64>, String>>,
}

/// Seconds from `start_us` to `t_us` (negative before it).
pub fn secs(start_us: u64, t_us: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    if t_us >= start_us {
        (t_us - start_us) as f64 / 1e6
    } else {
        -((start_us - t_us) as f64 / 1e6)
    }
}

fn ms(us: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let v = us as f64 / 1e3;
    v
}

/// Whether an event is a success of its workload.
pub fn is_success(e: &Event) -> bool {
    matches!(
        e.kind,
        EventKind::Ack
            | EventKind::Record
            | EventKind::Pong
            | EventKind::Sent
            | EventKind::Datagram
    )
}

fn windows(events: &[Event], start_us: u64, span: Duration, window: Duration) -> Vec<Window> {
    let w = window.as_secs_f64();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (span.as_secs_f64() / w).ceil().max(1.0) as usize;
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut lost = vec![0usize; n];
    for e in events {
        let t = secs(start_us, e.t_us);
        if t < 0.0 {
            continue;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((t / w).floor() as usize).min(n - 1);
        match e.kind {
            EventKind::Lost => lost[i] += 1,
            _ if is_success(e) => latencies[i].push(e.latency_us.map_or(f64::NAN, ms)),
            _ => {}
        }
    }
    latencies
        .iter()
        .zip(lost)
        .enumerate()
        .map(|(i, (l, lost))| Window {
            #[allow(clippy::cast_precision_loss)]
            start_s: i as f64 * w,
            count: l.len(),
            lost,
            latency_ms: Percentiles::of(l),
        })
        .collect()
}

/// The seqnos each writer had acknowledged, and each stream's source
/// sent, by writer or stream name.
fn acknowledged(logs: &[WorkloadLog]) -> BTreeMap<&str, BTreeSet<u64>> {
    logs.iter()
        .filter(|l| matches!(l.kind, WorkloadKind::Writer | WorkloadKind::Source))
        .map(|l| {
            let acked = l
                .events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Ack | EventKind::Sent))
                .filter_map(|e| e.seqno)
                .collect();
            (l.name.as_str(), acked)
        })
        .collect()
}

/// The figures of one workload; `acked` are its writer's acknowledged
/// seqnos for a subscriber.
fn workload(
    log: &WorkloadLog,
    acked: Option<&BTreeSet<u64>>,
    start_us: u64,
    span: Duration,
    window: Duration,
) -> WorkloadReport {
    let successes: Vec<&Event> = log.events.iter().filter(|e| is_success(e)).collect();
    let latencies: Vec<f64> = successes
        .iter()
        .filter_map(|e| e.latency_us.map(ms))
        .collect();
    let errors = log
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Error)
        .count();
    let mut report = WorkloadReport {
        name: log.name.clone(),
        kind: log.kind,
        host: log.host.clone(),
        peer: log.peer.clone(),
        delivered: successes.len(),
        lost: 0,
        duplicated: 0,
        out_of_order: 0,
        errors,
        missing: Vec::new(),
        latency_ms: Percentiles::of(&latencies),
        windows: windows(&log.events, start_us, span, window),
    };
    match log.kind {
        WorkloadKind::Subscriber | WorkloadKind::Sink => {
            let mut seen = BTreeSet::new();
            let mut highest = 0;
            for s in successes.iter().filter_map(|e| e.seqno) {
                if !seen.insert(s) {
                    report.duplicated += 1;
                }
                if s < highest {
                    report.out_of_order += 1;
                }
                highest = highest.max(s);
            }
            report.delivered = seen.len();
            report.missing =
                acked.map_or_else(Vec::new, |a| a.difference(&seen).copied().collect());
            report.lost = report.missing.len();
        }
        WorkloadKind::Ping => {
            report.lost = log
                .events
                .iter()
                .filter(|e| e.kind == EventKind::Lost)
                .count();
        }
        WorkloadKind::Writer | WorkloadKind::Source => {}
    }
    report
}

/// Recovery after each fault: from its heal (or itself) to each
/// workload's first success at or after that time.
fn faults(records: &[FaultRecord], logs: &[WorkloadLog], start_us: u64) -> Vec<FaultReport> {
    records
        .iter()
        .map(|f| {
            let from_us = f
                .healed_by
                .and_then(|h| records.get(h))
                .map_or(f.t_us, |h| h.t_us);
            let recovery_ms: BTreeMap<String, Option<f64>> = logs
                .iter()
                .map(|l| {
                    let first = l
                        .events
                        .iter()
                        .filter(|e| is_success(e) && e.t_us >= from_us)
                        .map(|e| e.t_us)
                        .min();
                    (l.name.clone(), first.map(|t| ms(t - from_us)))
                })
                .collect();
            let recovered_after_ms = recovery_ms
                .values()
                .try_fold(0.0f64, |acc, r| r.map(|r| acc.max(r)));
            FaultReport {
                action: f.action.clone(),
                planned_s: f.planned.as_secs_f64(),
                at_s: secs(start_us, f.t_us),
                result: match &f.result {
                    Ok(s) | Err(s) => s.clone(),
                },
                ok: f.result.is_ok(),
                healed_by: f.healed_by,
                recovery_from_s: secs(start_us, from_us),
                recovery_ms,
                recovered_after_ms,
            }
        })
        .collect()
}

/// The statement about delivery, for the report and the console.
fn statement(workloads: &[WorkloadReport]) -> (bool, String) {
    let subscribers: Vec<&WorkloadReport> = workloads
        .iter()
        .filter(|w| w.kind == WorkloadKind::Subscriber)
        .collect();
    if subscribers.is_empty() {
        return (
            true,
            "every acknowledged record delivered to every subscriber: yes (there are no subscribers)"
                .to_owned(),
        );
    }
    let short: Vec<String> = subscribers
        .iter()
        .filter(|s| !s.missing.is_empty())
        .map(|s| format!("{} missed {}", s.name, seqno_ranges(&s.missing)))
        .collect();
    if short.is_empty() {
        (
            true,
            "every acknowledged record delivered to every subscriber: yes".to_owned(),
        )
    } else {
        (
            false,
            format!(
                "every acknowledged record delivered to every subscriber: no ({})",
                short.join("; ")
            ),
        )
    }
}

/// `1-3, 7, 9-10` for sorted seqnos.
pub fn seqno_ranges(seqnos: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < seqnos.len() {
        let mut j = i;
        while j + 1 < seqnos.len() && seqnos[j + 1] == seqnos[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            seqnos[i].to_string()
        } else {
            format!("{}-{}", seqnos[i], seqnos[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// Parses Prometheus text: each sample line's `name{labels}` and value.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.trim().to_owned(), value.trim().parse::<f64>().ok()?))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// What [`build`] needs besides the logs.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The scenario file.
    pub scenario: String,
    /// The start, in µs since the Unix epoch.
    pub start_us: u64,
    /// How long the workloads ran.
    pub duration: Duration,
    /// Plus how long subscribers listened after.
    pub drain: Duration,
    /// The window length.
    pub window: Duration,
}

/// The report.
pub fn build(
    inputs: &Inputs,
    logs: &[WorkloadLog],
    fault_records: &[FaultRecord],
    routers: BTreeMap<String, Result<BTreeMap<String, f64>, String>>,
) -> Report {
    let acked = acknowledged(logs);
    let span = inputs.duration + inputs.drain;
    let workloads: Vec<WorkloadReport> = logs
        .iter()
        .map(|l| {
            let a = matches!(l.kind, WorkloadKind::Subscriber | WorkloadKind::Sink)
                .then(|| acked.get(l.peer.as_str()))
                .flatten();
            workload(l, a, inputs.start_us, span, inputs.window)
        })
        .collect();
    let (every, statement) = statement(&workloads);
    Report {
        scenario: inputs.scenario.clone(),
        start_unix_us: inputs.start_us,
        duration_s: inputs.duration.as_secs_f64(),
        window_s: inputs.window.as_secs_f64(),
        every_acknowledged_record_delivered: every,
        statement,
        workloads,
        faults: faults(fault_records, logs, inputs.start_us),
        routers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000_000;

    fn ev(t_ms: u64, kind: EventKind, seqno: Option<u64>, latency_ms: Option<u64>) -> Event {
        Event {
            t_us: T0 + t_ms * 1000,
            kind,
            seqno,
            latency_us: latency_ms.map(|l| l * 1000),
            message: None,
        }
    }

    fn log(name: &str, kind: WorkloadKind, peer: &str, events: Vec<Event>) -> WorkloadLog {
        WorkloadLog {
            name: name.into(),
            kind,
            host: "h".into(),
            peer: peer.into(),
            events,
        }
    }

    fn inputs() -> Inputs {
        Inputs {
            scenario: "s.toml".into(),
            start_us: T0,
            duration: Duration::from_secs(3),
            drain: Duration::from_secs(1),
            window: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_sink_counts_what_its_source_sent_and_never_arrived() {
        let source = log(
            "s",
            WorkloadKind::Source,
            "b",
            (1..=4)
                .map(|n| ev(n * 10, EventKind::Sent, Some(n), None))
                .collect(),
        );
        let sink = log(
            "s-sink",
            WorkloadKind::Sink,
            "s",
            vec![
                ev(12, EventKind::Datagram, Some(1), Some(2)),
                ev(33, EventKind::Datagram, Some(3), Some(3)),
                ev(34, EventKind::Datagram, Some(3), Some(4)),
                ev(35, EventKind::Datagram, Some(2), Some(15)),
            ],
        );
        let r = build(&inputs(), &[source, sink], &[], BTreeMap::new());
        let sink = &r.workloads[1];
        assert_eq!(sink.delivered, 3);
        assert_eq!(sink.missing, vec![4]);
        assert_eq!(sink.lost, 1);
        assert_eq!(sink.duplicated, 1);
        assert_eq!(sink.out_of_order, 1);
        assert_eq!(r.workloads[0].delivered, 4);
        // Datagrams are not records: the statement is about subscribers.
        assert!(r.every_acknowledged_record_delivered);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = Percentiles::of(&(1..=100).map(f64::from).collect::<Vec<_>>()).expect("some");
        assert_eq!(
            (p.min, p.p50, p.p90, p.p99, p.max),
            (1.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(p.count, 100);
        assert_eq!(Percentiles::of(&[]), None);
        assert_eq!(Percentiles::of(&[7.0]).map(|p| p.p99), Some(7.0));
    }

    #[test]
    fn subscribers_count_lost_duplicated_and_out_of_order_records() {
        use EventKind::{Ack, Error, Record};
        let writer = log(
            "w",
            WorkloadKind::Writer,
            "r1",
            (1..=5)
                .map(|s| ev(s * 100, Ack, Some(s), Some(3)))
                .collect(),
        );
        let sub = log(
            "s",
            WorkloadKind::Subscriber,
            "w",
            vec![
                ev(110, Record, Some(1), Some(10)),
                ev(310, Record, Some(3), Some(10)),
                ev(320, Record, Some(2), Some(20)),
                ev(330, Record, Some(3), Some(30)),
                ev(400, Error, None, None),
                // Received, never acknowledged (its append failed): fine.
                ev(2_600, Record, Some(6), Some(40)),
            ],
        );
        let r = build(&inputs(), &[writer, sub], &[], BTreeMap::new());
        let s = &r.workloads[1];
        assert_eq!(s.delivered, 4);
        assert_eq!(s.duplicated, 1);
        assert_eq!(s.out_of_order, 1);
        assert_eq!(s.missing, vec![4, 5]);
        assert_eq!(s.lost, 2);
        assert_eq!(s.errors, 1);
        assert!(!r.every_acknowledged_record_delivered);
        assert_eq!(
            r.statement,
            "every acknowledged record delivered to every subscriber: no (s missed 4-5)"
        );
        // Windows of 1 s over duration + drain.
        assert_eq!(s.windows.len(), 4);
        assert_eq!(s.windows[0].count, 4);
        assert_eq!(s.windows[2].count, 1);
        assert_eq!(s.windows[2].latency_ms.map(|p| p.max), Some(40.0));
        assert_eq!(r.workloads[0].delivered, 5);
        assert_eq!(r.workloads[0].latency_ms.map(|p| p.p50), Some(3.0));
    }

    #[test]
    fn recovery_is_measured_from_the_heal_to_the_first_success_after_it() {
        use EventKind::{Lost, Pong};
        let ping = log(
            "p",
            WorkloadKind::Ping,
            "r2",
            vec![
                ev(100, Pong, Some(1), Some(1)),
                ev(1_100, Lost, Some(2), None),
                ev(2_100, Lost, Some(3), None),
                ev(2_450, Pong, Some(4), Some(2)),
            ],
        );
        let idle = log(
            "q",
            WorkloadKind::Ping,
            "r3",
            vec![ev(100, Pong, Some(1), Some(1))],
        );
        let records = vec![
            FaultRecord {
                action: "cut lan".into(),
                planned: Duration::from_secs(1),
                t_us: T0 + 1_000_000,
                result: Ok("cut lan: 3 port(s) went down".into()),
                healed_by: Some(1),
            },
            FaultRecord {
                action: "heal lan".into(),
                planned: Duration::from_secs(2),
                t_us: T0 + 2_000_000,
                result: Ok("healed".into()),
                healed_by: None,
            },
        ];
        let r = build(
            &inputs(),
            std::slice::from_ref(&ping),
            &records,
            BTreeMap::new(),
        );
        assert_eq!(r.faults[0].recovery_from_s, 2.0);
        assert_eq!(r.faults[0].recovery_ms["p"], Some(450.0));
        assert_eq!(r.faults[0].recovered_after_ms, Some(450.0));
        assert_eq!(r.faults[1].recovery_ms["p"], Some(450.0));
        assert_eq!(r.workloads[0].lost, 2);
        assert_eq!(r.workloads[0].windows[1].lost, 1);
        assert!(r.every_acknowledged_record_delivered, "no subscribers");
        // A workload that never succeeds again: no recovery.
        let r = build(&inputs(), &[ping, idle], &records, BTreeMap::new());
        assert_eq!(r.faults[0].recovery_ms["q"], None);
        assert_eq!(r.faults[0].recovered_after_ms, None);
    }

    #[test]
    fn seqno_ranges_and_metrics_parse() {
        assert_eq!(seqno_ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
        assert_eq!(seqno_ranges(&[]), "");
        let m = parse_metrics(
            "# HELP a x\n# TYPE a counter\na 3\nb{reason=\"ttl\"} 1.5\nbroken\nc NaN-ish\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m["a"], 3.0);
        assert_eq!(m["b{reason=\"ttl\"}"], 1.5);
    }
}
