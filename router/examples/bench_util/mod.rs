//! The two ends shared by the router benchmarks (`bench_direct`,
//! `bench_relay`, and any later variant through GDP routers).
//!
//! The client sends encoded GDP PDUs back to back on one QUIC stream and
//! reads the echoes from another; the echo end swaps each PDU's source and
//! destination, marks it a response and sends it back. Both ends see only a
//! send stream and a receive stream, so they run unchanged over a direct
//! connection, through a byte relay, or over GDP links through routers.
//!
//! Two measurements per payload size:
//! - **throughput**: `count` PDUs with at most `window` in flight; PDUs/s
//!   from the first send to the last echo;
//! - **latency**: `pings` round trips one at a time; p50/p99/max.

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
use gdp_proto::frame::{DEFAULT_MAX_BUFFERED, FrameDecoder, FrameEncoder};
use gdp_proto::pdu::{Flags, HEADER_LEN, MAX_PDU_LEN, Pdu, PduHeader, PduType};
use hdrhistogram::Histogram;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::Semaphore;

/// Payload sizes measured.
pub(crate) const PAYLOADS: [usize; 2] = [64, 1024];

/// Chunks read at once.
const READ_CHUNKS: usize = 64;
/// Most bytes pushed into a decoder at once: one piece fits next to an
/// incomplete PDU in the decoder's bound.
const PIECE: usize = DEFAULT_MAX_BUFFERED - MAX_PDU_LEN;
/// Most PDUs the client encodes into one write.
const WRITE_BATCH: usize = 256;

/// Benchmark parameters, from `--count N --window W --pings P --lookups L
/// --trials T`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// PDUs per throughput run.
    pub(crate) count: u64,
    /// PDUs in flight at most during a throughput run.
    pub(crate) window: usize,
    /// Round trips per latency run.
    pub(crate) pings: u64,
    /// Cold lookups measured (`bench_router` only).
    pub(crate) lookups: u64,
    /// Rounds of every path, for medians (`bench_router` only).
    pub(crate) trials: u64,
    /// Pin the client and echo ends to CPU 0 and each hop (relay, router)
    /// to CPU 1 on a runtime of one worker (`bench_router` only), so that
    /// a hop's PDUs/s is what one core of it carries.
    pub(crate) pin: bool,
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
                "--pin" => {
                    p.pin = match value.as_str() {
                        "on" => true,
                        "off" => false,
                        _ => anyhow::bail!("--pin takes on or off"),
                    }
                }
                _ => anyhow::bail!(
                    "unknown argument {flag}; use --count, --window, --pings, --lookups, --trials, --pin"
                ),
            }
        }
        anyhow::ensure!(
            p.count > 0 && p.window > 0 && p.pings > 0 && p.lookups > 0 && p.trials > 0,
            "values must be > 0"
        );
        Ok(p)
    }
}

/// The figures of one payload size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Report {
    /// Payload bytes per PDU.
    pub(crate) payload: usize,
    /// PDUs per second, one way.
    pub(crate) pdus_per_sec: f64,
    /// Payload megabytes (10^6) per second, one way.
    pub(crate) payload_mb_per_sec: f64,
    /// Round-trip latency percentiles, in microseconds.
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// Maximum.
    pub(crate) max_us: f64,
    /// CPU time of the hop's threads (the relay's or the routers') per PDU
    /// it passed on during the throughput run, in nanoseconds; `None` when
    /// the hop has no threads of its own.
    pub(crate) hop_ns_per_pdu: Option<f64>,
}

/// Prints reports as a table.
pub(crate) fn print_reports(title: &str, params: &Params, reports: &[Report]) {
    println!(
        "{title}: {} PDUs per throughput run, window {}, {} pings",
        params.count, params.window, params.pings
    );
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "payload", "PDUs/s", "MB/s", "p50 us", "p99 us", "max us", "hop ns/PDU"
    );
    for r in reports {
        let hop = r
            .hop_ns_per_pdu
            .map_or_else(|| String::from("-"), |ns| format!("{ns:.0}"));
        println!(
            "{:>8} {:>12.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>12}",
            r.payload, r.pdus_per_sec, r.payload_mb_per_sec, r.p50_us, r.p99_us, r.max_us, hop
        );
    }
}

/// QUIC settings of the benchmark ends: the router transport's, with room
/// for a few streams of either kind.
pub(crate) fn quic_config() -> anyhow::Result<Arc<quinn::TransportConfig>> {
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

/// Reads PDUs off a stream.
pub(crate) struct PduReader {
    recv: RecvStream,
    decoder: FrameDecoder,
    bufs: Vec<Bytes>,
}

impl PduReader {
    /// Reads `recv`.
    pub(crate) fn new(recv: RecvStream) -> Self {
        PduReader {
            recv,
            decoder: FrameDecoder::new(),
            bufs: vec![Bytes::new(); READ_CHUNKS],
        }
    }

    /// Waits for at least one complete PDU and appends all complete PDUs
    /// to `out`; false once the stream has ended.
    pub(crate) async fn read(&mut self, out: &mut Vec<Bytes>) -> anyhow::Result<bool> {
        let before = out.len();
        while out.len() == before {
            let Some(n) = self.recv.read_chunks(&mut self.bufs).await? else {
                self.decoder.finish()?;
                return Ok(false);
            };
            for chunk in &mut self.bufs[..n] {
                // QUIC may hand out merged chunks of several MiB; feed the
                // decoder pieces that fit its bound.
                let mut chunk = std::mem::take(chunk);
                while !chunk.is_empty() {
                    let piece = chunk.split_to(chunk.len().min(PIECE));
                    self.decoder.push(piece)?;
                    while let Some(frame) = self.decoder.next_frame()? {
                        out.push(frame.bytes);
                    }
                }
            }
        }
        Ok(true)
    }
}

/// The echo end on one stream pair: every PDU comes back with source and
/// destination swapped and the `RESPONSE` flag set, all PDUs of one read in
/// one write. Returns when the client finishes its stream.
pub(crate) async fn echo(send: SendStream, recv: RecvStream) -> anyhow::Result<()> {
    echo_reader(send, PduReader::new(recv)).await
}

/// [`echo`] on a reader already in use. Only Data PDUs that are not
/// themselves responses are echoed (anything else a router may send is
/// ignored).
pub(crate) async fn echo_reader(mut send: SendStream, mut reader: PduReader) -> anyhow::Result<()> {
    let mut pdus = Vec::new();
    let mut enc = FrameEncoder::new();
    while reader.read(&mut pdus).await? {
        for p in pdus.drain(..) {
            let mut header = gdp_proto::pdu::peek_header(&p)?;
            if header.ptype != PduType::Data || header.flags.contains(Flags::RESPONSE) {
                continue;
            }
            std::mem::swap(&mut header.dst, &mut header.src);
            header.flags = header.flags | Flags::RESPONSE;
            enc.push(&Pdu::new(header, p.slice(HEADER_LEN..))?)?;
        }
        let chunk = enc.take();
        if !chunk.is_empty() {
            send.write_chunk(chunk).await?;
        }
    }
    send.finish()?;
    Ok(())
}

/// True if `e` only says the connection was closed, which is how every run
/// ends.
pub(crate) fn closed(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<quinn::ReadError>(),
        Some(quinn::ReadError::ConnectionLost(_))
    ) || matches!(
        e.downcast_ref::<quinn::WriteError>(),
        Some(quinn::WriteError::ConnectionLost(_))
    )
}

/// Accepts bidirectional streams on `conn` and echoes each.
pub(crate) async fn serve_echo(conn: quinn::Connection) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            if let Err(e) = echo(send, recv).await
                && !closed(&e)
            {
                eprintln!("echo stream: {e}");
            }
        });
    }
}

/// The client on one stream pair: for each payload size, a throughput run
/// and a latency run. PDUs go from `me` to `echo`.
pub(crate) async fn run_client(
    send: &mut SendStream,
    reader: &mut PduReader,
    me: Name,
    echo: Name,
    params: &Params,
    hop_threads: Option<&str>,
) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    let mut seq = 0u64;
    for payload in PAYLOADS {
        let body = Bytes::from(vec![0x5a; payload]);
        let cpu_before = hop_threads.map(threads_cpu_ns);
        let pdus_per_sec = throughput(send, reader, me, echo, &body, params, &mut seq).await?;
        // Every PDU crosses the hop twice: to the echo end and back.
        let hop_ns_per_pdu = hop_threads.zip(cpu_before).map(|(prefix, before)| {
            threads_cpu_ns(prefix).saturating_sub(before) as f64 / (2 * params.count) as f64
        });
        let hist = latency(send, reader, me, echo, &body, params, &mut seq).await?;
        let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        reports.push(Report {
            payload,
            pdus_per_sec,
            payload_mb_per_sec: pdus_per_sec * payload as f64 / 1e6,
            p50_us: us(0.5),
            p99_us: us(0.99),
            max_us: hist.max() as f64 / 1000.0,
            hop_ns_per_pdu,
        });
    }
    Ok(reports)
}

/// The CPU the client and echo ends run on under `--pin on`.
pub(crate) const ENDS_CPU: usize = 0;
/// The CPU each hop runs on under `--pin on`.
pub(crate) const HOP_CPU: usize = 1;

/// Binds the calling thread to `cpu`.
pub(crate) fn pin_thread(cpu: usize) {
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

/// The runtime of the client and echo ends: the default, or under
/// `--pin on` every thread on [`ENDS_CPU`].
pub(crate) fn ends_runtime(pin: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if pin {
        builder.on_thread_start(|| pin_thread(ENDS_CPU));
    }
    builder.build()
}

/// CPU time, in nanoseconds, run so far by this process's threads whose
/// name starts with `prefix` (the first field of each thread's
/// `/proc/self/task/*/schedstat`; threads that ended are not counted, and
/// without `/proc` it is 0).
pub(crate) fn threads_cpu_ns(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(prefix))
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn encode(
    me: Name,
    echo: Name,
    seq: u64,
    body: &Bytes,
    enc: &mut FrameEncoder,
) -> anyhow::Result<()> {
    let header = PduHeader::new(PduType::Data, echo, me, seq);
    enc.push(&Pdu::new(header, body.clone())?)?;
    Ok(())
}

async fn throughput(
    send: &mut SendStream,
    reader: &mut PduReader,
    me: Name,
    echo: Name,
    body: &Bytes,
    params: &Params,
    seq: &mut u64,
) -> anyhow::Result<f64> {
    let window = Arc::new(Semaphore::new(params.window));
    let count = params.count;
    let first = *seq;
    *seq += count;
    let start = Instant::now();
    let writer = async {
        let mut enc = FrameEncoder::new();
        let mut sent = 0u64;
        while sent < count {
            window.acquire().await?.forget();
            let mut batch = 1u64;
            while batch < WRITE_BATCH as u64
                && sent + batch < count
                && let Ok(p) = window.try_acquire()
            {
                p.forget();
                batch += 1;
            }
            for i in 0..batch {
                encode(me, echo, first + sent + i, body, &mut enc)?;
            }
            send.write_chunk(enc.take()).await?;
            sent += batch;
        }
        anyhow::Ok(())
    };
    let echoes = async {
        let mut got = 0u64;
        let mut pdus = Vec::new();
        while got < count {
            anyhow::ensure!(reader.read(&mut pdus).await?, "echo stream ended early");
            got += pdus.len() as u64;
            window.add_permits(pdus.len());
            pdus.clear();
        }
        anyhow::Ok(())
    };
    let (w, r) = tokio::join!(writer, echoes);
    w?;
    r?;
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

async fn latency(
    send: &mut SendStream,
    reader: &mut PduReader,
    me: Name,
    echo: Name,
    body: &Bytes,
    params: &Params,
    seq: &mut u64,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, Duration::from_secs(60).as_nanos() as u64, 3)?;
    let mut enc = FrameEncoder::new();
    let mut pdus = Vec::new();
    for _ in 0..params.pings {
        encode(me, echo, *seq, body, &mut enc)?;
        *seq += 1;
        let start = Instant::now();
        send.write_chunk(enc.take()).await?;
        anyhow::ensure!(reader.read(&mut pdus).await?, "echo stream ended early");
        hist.record(start.elapsed().as_nanos() as u64)?;
        anyhow::ensure!(pdus.len() == 1, "one echo per ping");
        pdus.clear();
    }
    Ok(hist)
}
