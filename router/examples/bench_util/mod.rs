//! What the router benchmarks (`bench_direct`, `bench_relay`,
//! `bench_router`) share: the command line, the measurement driver, the
//! tables, the QUIC settings of the ends, and the runtimes and thread
//! accounting of the hops.
//!
//! Every path has a near end, which sends, and two far ends behind the
//! path: one that counts what arrives and one that echoes it. A near end
//! is a [`NearEnd`]: raw length-prefixed frames on QUIC streams for the
//! baselines ([`baselines`]), GDP PDUs on an `EndpointLink` through routers
//! ([`gdp`]). [`measure`] drives any of them the same way, for each
//! message size:
//! - **throughput**: `count` messages one way to the counting end, at most
//!   `window` of them in flight, written `WRITE_BYTES` at a time;
//!   messages/s from the first write until the last message has arrived.
//!   The counting end runs in this process and hands each arrival back to
//!   the sender as a permit of the window (a [`Semaphore`]), so nothing but
//!   the measured messages crosses the hop.
//! - **latency**: `pings` round trips through the echo end, one at a time;
//!   p50/p99/max.

#![allow(dead_code)]

pub(crate) mod baselines;
pub(crate) mod gdp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gdp_certs::tls::{self, PeerPolicy};
use gdp_certs::{Identity, Name};
use gdp_link::{TransportConfig, udp_socket};
use gdp_proto::frame::labels::LABELLED_HEAD_LEN;
use gdp_proto::pdu::HEADER_LEN;
use hdrhistogram::Histogram;
use quinn::VarInt;
use tokio::sync::Semaphore;

/// Payload sizes of the GDP PDUs measured.
pub(crate) const PAYLOADS: [usize; 2] = [64, 1024];

/// Bytes the sender writes at once during a throughput run (fewer when the
/// window is short of room).
const WRITE_BYTES: usize = 64 * 1024;

/// Longest wait for the window to move before a throughput run gives up
/// (a message lost on the path would otherwise hang it).
pub(crate) const STALL: Duration = Duration::from_secs(10);

/// Benchmark parameters, from `--count N --window W --pings P --lookups L
/// --trials T --pin on|off`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// Messages per throughput run.
    pub(crate) count: u64,
    /// Messages in flight at most during a throughput run.
    pub(crate) window: usize,
    /// Round trips per latency run.
    pub(crate) pings: u64,
    /// Cold lookups measured (`bench_router` only).
    pub(crate) lookups: u64,
    /// Rounds of every path, for medians (`bench_router` only).
    pub(crate) trials: u64,
    /// Pin the client and echo ends to CPU 0 and each hop (relay, router)
    /// to CPU 1 on a runtime of one worker (`bench_router` only), so that
    /// a hop's rate is what one core of it carries.
    pub(crate) pin: bool,
    /// Let the GDP links speak `gdp/2`, compact stream frames (`--compact
    /// on`, the default), or only `gdp/1`, whole 80-byte headers.
    pub(crate) compact: bool,
}

impl Params {
    /// Parses the command line; unknown arguments are an error.
    pub(crate) fn from_args() -> anyhow::Result<Params> {
        let mut p = Params {
            count: 200_000,
            window: 1024,
            pings: 5_000,
            lookups: 100,
            trials: 1,
            pin: false,
            compact: true,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
            match flag.as_str() {
                "--count" => p.count = value.parse()?,
                "--window" => p.window = value.parse()?,
                "--pings" => p.pings = value.parse()?,
                "--lookups" => p.lookups = value.parse()?,
                "--trials" => p.trials = value.parse()?,
                "--pin" => p.pin = on_off(&flag, &value)?,
                "--compact" => p.compact = on_off(&flag, &value)?,
                _ => anyhow::bail!(
                    "unknown argument {flag}; use --count, --window, --pings, --lookups, --trials, --pin, --compact"
                ),
            }
        }
        anyhow::ensure!(
            p.count > 0 && p.window > 0 && p.pings > 0 && p.lookups > 0 && p.trials > 0,
            "values must be > 0"
        );
        anyhow::ensure!(
            p.window <= Semaphore::MAX_PERMITS && u32::try_from(p.window).is_ok(),
            "--window is too large"
        );
        Ok(p)
    }
}

/// The value of a flag that takes `on` or `off`.
fn on_off(flag: &str, value: &str) -> anyhow::Result<bool> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => anyhow::bail!("{flag} takes on or off"),
    }
}

/// The size of the messages of one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Size {
    /// Payload bytes per message (what the near end puts in it).
    pub(crate) payload: usize,
    /// Bytes per message on the stream: the payload and its framing (the
    /// 4-byte length of a raw frame, the header of a GDP PDU).
    pub(crate) wire: usize,
}

impl Size {
    /// A GDP PDU with `payload` bytes of payload, on a link that speaks
    /// `gdp/2` (`compact`: its names a label, after the first PDU of the
    /// pair) or `gdp/1` (the whole header).
    pub(crate) const fn pdu(payload: usize, compact: bool) -> Size {
        Size {
            payload,
            wire: payload
                + if compact {
                    LABELLED_HEAD_LEN
                } else {
                    HEADER_LEN
                },
        }
    }

    /// A raw frame with `payload` bytes after its length.
    pub(crate) const fn frame(payload: usize) -> Size {
        Size {
            payload,
            wire: payload + baselines::LEN_PREFIX,
        }
    }

    /// A raw frame as long on the wire as a GDP PDU of `payload` bytes
    /// ([`Size::pdu`]).
    pub(crate) const fn frame_as_pdu(payload: usize, compact: bool) -> Size {
        Size::frame(Size::pdu(payload, compact).wire - baselines::LEN_PREFIX)
    }
}

/// The figures of one message size on one path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Report {
    /// The messages measured.
    pub(crate) size: Size,
    /// Messages per second, one way.
    pub(crate) msgs_per_sec: f64,
    /// Round-trip latency percentiles, in microseconds: the median.
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// Maximum.
    pub(crate) max_us: f64,
    /// CPU time of the hop's threads (the relay's or the routers') per
    /// message delivered during the throughput run, in nanoseconds; `None`
    /// when the hop has no threads of its own.
    pub(crate) hop_ns_per_msg: Option<f64>,
    /// CPU time of every other thread of this process (the ends: sender,
    /// counting end, their QUIC endpoints) per message, in nanoseconds.
    pub(crate) ends_ns_per_msg: f64,
}

/// The near end of a path: it sends messages to the path's counting end
/// and pings its echo end.
pub(crate) trait NearEnd {
    /// Sends messages `seq..seq + n`, each with `payload`, to the counting
    /// end in one write.
    async fn write(&mut self, seq: u64, n: usize, payload: &Bytes) -> anyhow::Result<()>;

    /// Sends message `seq` with `payload` to the echo end and waits for it
    /// to come back.
    async fn ping(&mut self, seq: u64, payload: &Bytes) -> anyhow::Result<()>;
}

/// Measures `near` for each of `sizes`: a throughput run, then a latency
/// run. `arrivals` gains a permit for each message the counting end
/// receives and must have none to start with; `hop_threads` is the name
/// prefix of the hop's threads, whose CPU time is charged to the messages.
pub(crate) async fn measure(
    near: &mut impl NearEnd,
    arrivals: &Semaphore,
    sizes: &[Size],
    params: &Params,
    hop_threads: Option<&str>,
) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    let mut seq = 0u64;
    for &size in sizes {
        let payload = Bytes::from(vec![0x5a; size.payload]);
        let cpu_before = hop_threads.map(threads_cpu_ns);
        let ends_before = ends_cpu_ns();
        let msgs_per_sec = throughput(near, arrivals, size, &payload, params, seq).await?;
        seq += params.count;
        let per_msg = |ns: u64| ns as f64 / params.count as f64;
        let ends_ns_per_msg = per_msg(ends_cpu_ns().saturating_sub(ends_before));
        let hop_ns_per_msg = hop_threads
            .zip(cpu_before)
            .map(|(prefix, before)| per_msg(threads_cpu_ns(prefix).saturating_sub(before)));
        let hist = latency(near, &payload, params, seq).await?;
        seq += params.pings;
        let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        reports.push(Report {
            size,
            msgs_per_sec,
            p50_us: us(0.5),
            p99_us: us(0.99),
            max_us: hist.max() as f64 / 1000.0,
            hop_ns_per_msg,
            ends_ns_per_msg,
        });
    }
    Ok(reports)
}

/// Takes one permit of `arrivals` for good, waiting at most [`STALL`].
async fn take_one(arrivals: &Semaphore) -> anyhow::Result<()> {
    tokio::time::timeout(STALL, arrivals.acquire())
        .await
        .map_err(|_| anyhow::anyhow!("no message arrived for {STALL:?}"))??
        .forget();
    Ok(())
}

/// One throughput run; messages per second.
async fn throughput(
    near: &mut impl NearEnd,
    arrivals: &Semaphore,
    size: Size,
    payload: &Bytes,
    params: &Params,
    first: u64,
) -> anyhow::Result<f64> {
    let per_write = (WRITE_BYTES / size.wire).max(1) as u64;
    let count = params.count;
    arrivals.add_permits(params.window);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        take_one(arrivals).await?;
        let mut n = 1u64;
        while n < per_write
            && sent + n < count
            && let Ok(p) = arrivals.try_acquire()
        {
            p.forget();
            n += 1;
        }
        near.write(first + sent, n as usize, payload).await?;
        sent += n;
    }
    // Every message has arrived once the whole window is back.
    let window = u32::try_from(params.window)?;
    tokio::time::timeout(STALL, arrivals.acquire_many(window))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{} of {count} messages never arrived",
                params.window - arrivals.available_permits()
            )
        })??
        .forget();
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// One latency run: a histogram of round trips in nanoseconds.
async fn latency(
    near: &mut impl NearEnd,
    payload: &Bytes,
    params: &Params,
    first: u64,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, Duration::from_secs(60).as_nanos() as u64, 3)?;
    for seq in first..first + params.pings {
        let start = Instant::now();
        near.ping(seq, payload).await?;
        hist.record(start.elapsed().as_nanos() as u64)?;
    }
    Ok(hist)
}

/// Prints `rows` (a path and one of its reports each) as a table under
/// `title`.
pub(crate) fn print_table(title: &str, params: &Params, rows: &[(&str, &Report)]) {
    println!(
        "{title}: {} messages per throughput run, window {}, {} pings",
        params.count, params.window, params.pings
    );
    let width = rows.iter().map(|(path, _)| path.len()).max().unwrap_or(0);
    println!(
        "{:<width$} {:>7} {:>6} {:>11} {:>9} {:>8} {:>8} {:>8} {:>11} {:>12}",
        "path",
        "payload",
        "wire",
        "msgs/s",
        "wire MB/s",
        "p50 us",
        "p99 us",
        "max us",
        "hop ns/msg",
        "ends ns/msg"
    );
    for (path, r) in rows {
        let hop = r
            .hop_ns_per_msg
            .map_or_else(|| String::from("-"), |ns| format!("{ns:.0}"));
        println!(
            "{path:<width$} {:>7} {:>6} {:>11.0} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {hop:>11} {:>12.0}",
            r.size.payload,
            r.size.wire,
            r.msgs_per_sec,
            r.msgs_per_sec * r.size.wire as f64 / 1e6,
            r.p50_us,
            r.p99_us,
            r.max_us,
            r.ends_ns_per_msg,
        );
    }
}

/// QUIC settings of the raw ends and the relay: the router transport's,
/// with room for a few streams of either kind.
fn quic_config() -> anyhow::Result<Arc<quinn::TransportConfig>> {
    let mut t = TransportConfig::default().quinn_transport_config()?;
    t.max_concurrent_bidi_streams(VarInt::from_u32(16))
        .max_concurrent_uni_streams(VarInt::from_u32(16));
    Ok(Arc::new(t))
}

/// A quinn endpoint on loopback with the transport's socket buffers,
/// accepting peers under `accept` if given.
pub(crate) fn endpoint(
    identity: &Identity,
    accept: Option<PeerPolicy>,
) -> anyhow::Result<quinn::Endpoint> {
    let defaults = TransportConfig::default();
    let (socket, _) = udp_socket(
        "127.0.0.1:0".parse()?,
        defaults.socket_send_buffer,
        defaults.socket_recv_buffer,
    )?;
    let server = match accept {
        Some(policy) => {
            let mut server = tls::quinn_server_config(identity, policy)?;
            server.transport_config(quic_config()?);
            Some(server)
        }
        None => None,
    };
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// Dials `addr`, which must prove `expected`.
pub(crate) async fn dial(
    endpoint: &quinn::Endpoint,
    identity: &Identity,
    addr: SocketAddr,
    expected: Name,
) -> anyhow::Result<quinn::Connection> {
    let mut config = tls::quinn_client_config(identity, PeerPolicy::Expect(expected))?;
    config.transport_config(quic_config()?);
    Ok(endpoint
        .connect_with(config, addr, tls::SERVER_NAME)?
        .await?)
}

/// The CPU the client and echo ends run on under `--pin on`.
pub(crate) const ENDS_CPU: usize = 0;
/// The CPU each hop runs on under `--pin on`.
pub(crate) const HOP_CPU: usize = 1;

/// Binds the calling thread to `cpu`.
fn pin_thread(cpu: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        eprintln!("could not pin a thread to cpu {cpu}");
    }
}

/// The runtime of one hop (the relay, or one router), its threads named
/// `name`: two workers, or under `--pin on` one worker on [`HOP_CPU`].
pub(crate) fn hop_runtime(name: &str, pin: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.thread_name(name).enable_all();
    if pin {
        builder
            .worker_threads(1)
            .on_thread_start(|| pin_thread(HOP_CPU));
    } else {
        builder.worker_threads(2);
    }
    builder.build()
}

/// Runs `ends` (the future that drives the ends) to completion on a
/// runtime of the default size; under `--pin on` the calling thread, which
/// polls `ends` itself, and every thread of the runtime on [`ENDS_CPU`].
pub(crate) fn run_ends<F: Future>(pin: bool, ends: F) -> std::io::Result<F::Output> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if pin {
        pin_thread(ENDS_CPU);
        builder.on_thread_start(|| pin_thread(ENDS_CPU));
    }
    Ok(builder.build()?.block_on(ends))
}

/// CPU time, in nanoseconds, run so far by this process's threads whose
/// name starts with `prefix` (the first field of each thread's
/// `/proc/self/task/*/schedstat`; threads that ended are not counted, and
/// without `/proc` it is 0).
pub(crate) fn threads_cpu_ns(prefix: &str) -> u64 {
    cpu_ns_of(|name| name.starts_with(prefix))
}

/// [`threads_cpu_ns`] of the threads that are not a hop's (a relay's or a
/// router's): the ends'.
fn ends_cpu_ns() -> u64 {
    cpu_ns_of(|name| {
        !name.starts_with(gdp::ROUTER_THREADS) && !name.starts_with(baselines::RELAY_THREADS)
    })
}

/// CPU time, in nanoseconds, of the threads whose name `pick` picks.
fn cpu_ns_of(pick: impl Fn(&str) -> bool) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| pick(comm.trim_end()))
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
