//! GDP ends for the benchmarks: routers started in this process, and
//! client and echo ends attached to them over raw QUIC streams.
//!
//! Each router runs on its own multi-threaded tokio runtime with two
//! workers, as the `gdp-router` binary does on a two-core machine, so that
//! it does not share a scheduler with the client and echo ends. An end
//! dials its router, answers the attach challenge on its unidirectional
//! stream, and then speaks plain PDUs on that stream and the router's, so
//! the client and echo code of `bench_util` runs unchanged over GDP links.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gdp_certs::cert::Validity;
use gdp_certs::{Identity, Name, Timestamp};
use gdp_proto::Decode;
use gdp_proto::control::{AttachProof, ControlMessage};
use gdp_proto::frame::FrameEncoder;
use gdp_proto::pdu::{Flags, Pdu, PduHeader, PduType, peek_header};
use gdp_router::config::{DEFAULT_KEY_FILE, RouterSettings};
use gdp_router::driver::{RouterHandle, launch};
use hdrhistogram::Histogram;
use quinn::SendStream;
use tokio::sync::oneshot;

use super::{PduReader, dial, endpoint};

/// The prefix of the names of every router's threads.
pub(crate) const ROUTER_THREADS: &str = "router-";

/// A router running in this process on its own runtime.
pub(crate) struct BenchRouter {
    pub(crate) name: Name,
    pub(crate) addr: SocketAddr,
    /// The name of its runtime's threads.
    pub(crate) threads: String,
    /// A handle for its counters.
    pub(crate) handle: RouterHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BenchRouter {
    /// Starts a router on loopback with `directory`, its key under
    /// `data/label`.
    pub(crate) fn start(
        label: &str,
        directory: &str,
        data: &Path,
        pin: bool,
    ) -> anyhow::Result<BenchRouter> {
        let mut settings = RouterSettings::default();
        settings.data_dir = data.join(label);
        settings.key_file = settings.data_dir.join(DEFAULT_KEY_FILE);
        settings.listen = "127.0.0.1:0".parse()?;
        settings.directory = directory.parse()?;
        let runtime = super::hop_runtime(&format!("{ROUTER_THREADS}{label}"), pin)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                match launch(&settings, None).await {
                    Ok(router) => {
                        let _ = ready_tx.send(Ok((
                            router.name,
                            router.listen,
                            router.handle().clone(),
                        )));
                        let _ = stop_rx.await;
                        let _ = router.shutdown().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        let (name, addr, handle) = ready_rx
            .recv_timeout(Duration::from_secs(10))?
            .map_err(|e| anyhow::anyhow!("router {label}: {e}"))?;
        Ok(BenchRouter {
            name,
            addr,
            threads: format!("{ROUTER_THREADS}{label}"),
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for BenchRouter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An end attached to a router: its QUIC endpoint and connection, the
/// send half of its stream, and a reader on the router's stream.
pub(crate) struct Attached {
    pub(crate) name: Name,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) conn: quinn::Connection,
    pub(crate) send: SendStream,
    pub(crate) reader: PduReader,
}

impl Attached {
    /// Closes the link.
    pub(crate) fn close(&self) {
        self.conn.close(0u32.into(), b"done");
    }
}

/// Dials `router` and attaches `identity` to it.
pub(crate) async fn attach(identity: &Identity, router: &BenchRouter) -> anyhow::Result<Attached> {
    let me = identity.name();
    let endpoint = endpoint(identity, None)?;
    let conn = dial(&endpoint, identity, router.addr, router.name).await?;
    let mut send = conn.open_uni().await?;
    let mut reader = PduReader::new(conn.accept_uni().await?);
    let mut pdus = Vec::new();
    let mut seq = 1;
    loop {
        anyhow::ensure!(reader.read(&mut pdus).await?, "the router closed the link");
        for raw in pdus.drain(..) {
            let pdu = Pdu::decode(raw)?;
            match ControlMessage::from_pdu(&pdu) {
                Ok(ControlMessage::AttachChallenge(challenge)) => {
                    let now = Timestamp::now();
                    let hour = Duration::from_secs(3600);
                    let validity =
                        Validity::new(now.saturating_sub(hour), now.saturating_add(hour));
                    let proof = AttachProof::create(identity, &challenge, validity);
                    let reply = ControlMessage::AttachProof(proof).to_pdu(Name::ZERO, me, seq)?;
                    seq += 1;
                    send.write_all(&gdp_proto::Encode::to_bytes(&reply)).await?;
                }
                Ok(ControlMessage::AttachAccepted { .. }) => {
                    return Ok(Attached {
                        name: me,
                        endpoint,
                        conn,
                        send,
                        reader,
                    });
                }
                Ok(ControlMessage::AttachRejected { reason }) => {
                    anyhow::bail!("attach rejected: {reason}")
                }
                _ => {}
            }
        }
    }
}

/// Starts echoing on `end` (consumed).
pub(crate) fn spawn_echo(end: Attached) -> (quinn::Connection, tokio::task::JoinHandle<()>) {
    let conn = end.conn.clone();
    let task = tokio::spawn(async move {
        let _endpoint = end.endpoint;
        if let Err(e) = super::echo_reader(end.send, end.reader).await
            && !super::closed(&e)
        {
            eprintln!("echo: {e}");
        }
    });
    (conn, task)
}

fn data(me: Name, to: Name, seq: u64, payload: &'static [u8]) -> anyhow::Result<Bytes> {
    let mut enc = FrameEncoder::new();
    enc.push(&Pdu::new(
        PduHeader::new(PduType::Data, to, me, seq),
        Bytes::from_static(payload),
    )?)?;
    Ok(enc.take())
}

/// Waits for the echo of `seq` from `from`, ignoring anything else (NAKs,
/// late echoes); false after `wait`.
async fn await_echo(
    client: &mut Attached,
    from: Name,
    seq: u64,
    wait: Duration,
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pdus = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, client.reader.read(&mut pdus)).await {
            Err(_) => return Ok(false),
            Ok(read) => anyhow::ensure!(read?, "the router closed the link"),
        }
        for p in pdus.drain(..) {
            let h = peek_header(&p)?;
            if h.ptype == PduType::Data
                && h.flags.contains(Flags::RESPONSE)
                && h.src == from
                && h.seq == seq
            {
                return Ok(true);
            }
        }
    }
}

/// Sends PDUs from `client` to `echo` until one comes back (the route is
/// then resolved and cached on every router), then lets stragglers arrive
/// and discards them, so that the measured runs see only their own echoes.
pub(crate) async fn open_route(client: &mut Attached, echo: Name) -> anyhow::Result<()> {
    for attempt in 0..20u64 {
        let seq = u64::MAX - attempt;
        let pdu = data(client.name, echo, seq, b"warm-up")?;
        client.send.write_chunk(pdu).await?;
        if await_echo(client, echo, seq, Duration::from_secs(1)).await? {
            await_echo(client, echo, 0, Duration::from_millis(200)).await?;
            return Ok(());
        }
    }
    anyhow::bail!("no route to the echo end")
}

/// Cold lookups: for each sample a fresh echo end attaches to `far`; once
/// its route record is in the directory, `client` sends it one PDU, which
/// its router must look up, verify and forward; the sample is the time to
/// the echo. Returns the histogram (ns) and the first sample.
pub(crate) async fn cold_lookups(
    client: &mut Attached,
    far: &BenchRouter,
    record_stored: impl Fn(Name) -> bool,
    samples: u64,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut first = Duration::ZERO;
    for i in 0..samples {
        let id = Identity::generate(gdp_certs::Kind::Server, "cold")?;
        let end = attach(&id, far).await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !record_stored(id.name()) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the record never reached the directory"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (conn, task) = spawn_echo(end);
        let seq = i + 1;
        let start = Instant::now();
        client
            .send
            .write_chunk(data(client.name, id.name(), seq, b"cold")?)
            .await?;
        anyhow::ensure!(
            await_echo(client, id.name(), seq, Duration::from_secs(5)).await?,
            "no echo from a new end"
        );
        let took = start.elapsed();
        if i == 0 {
            first = took;
        }
        hist.record(took.as_nanos() as u64)?;
        conn.close(0u32.into(), b"done");
        task.abort();
    }
    Ok((hist, first))
}
