//! GDP paths for the benchmarks: routers started in this process, and
//! ends attached to them as GDP endpoints through `gdp_link`'s
//! [`EndpointLink`], as the SDK's ends are.
//!
//! Each router runs on its own multi-threaded tokio runtime with two
//! workers, as the `gdp-router` binary does on a two-core machine, so that
//! it does not share a scheduler with the ends. A path has three ends: the
//! client, which sends encoded PDUs with [`EndpointLink::send_batch`]; a
//! sink, which counts the Data PDUs its receiver delivers
//! ([`EndpointEvent::Pdu`]); and an echo end, which answers each Data PDU
//! with one back to its source, marked a response.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Name};
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink, EndpointReceiver};
use gdp_proto::Encode;
use gdp_proto::pdu::{Flags, Pdu, PduHeader, PduType};
use gdp_router::config::{DEFAULT_KEY_FILE, RouterSettings};
use gdp_router::driver::{RouterHandle, launch};
use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use super::{NearEnd, PAYLOADS, Params, Report, STALL, Size, measure};

/// The prefix of the names of every router's threads.
pub(crate) const ROUTER_THREADS: &str = "router-";

/// Events a far end takes from its receiver at once.
const EVENTS_PER_TURN: usize = 1024;

/// Payload of the PDUs that open a route before a measured run.
const WARM_UP: &[u8] = b"warm-up";

/// A router running in this process on its own runtime.
pub(crate) struct BenchRouter {
    /// Its name.
    pub(crate) name: Name,
    /// Its UDP address.
    pub(crate) addr: SocketAddr,
    /// The name of its runtime's threads.
    pub(crate) threads: String,
    /// A handle for its counters.
    pub(crate) handle: RouterHandle,
    /// Whether its links (and the ends attached to it) offer `gdp/2`.
    pub(crate) compact: bool,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BenchRouter {
    /// Starts a router on loopback with `directory`, its key under
    /// `data/label`, on a runtime of its own ([`super::hop_runtime`]),
    /// pinned and speaking `gdp/2` as `params` say.
    pub(crate) fn start(
        label: &str,
        directory: &str,
        data: &Path,
        params: &Params,
    ) -> anyhow::Result<BenchRouter> {
        let (pin, compact) = (params.pin, params.compact);
        let mut settings = RouterSettings::default();
        settings.compact_headers = compact;
        settings.data_dir = data.join(label);
        settings.key_file = settings.data_dir.join(DEFAULT_KEY_FILE);
        settings.listen = "127.0.0.1:0".parse()?;
        settings.directory = directory.parse()?;
        let threads = format!("{ROUTER_THREADS}{label}");
        let runtime = super::hop_runtime(&threads, pin)?;
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
            threads,
            handle,
            compact,
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

/// An encoded Data PDU from `from` to `to`.
fn data(from: Name, to: Name, seq: u64, payload: Bytes) -> anyhow::Result<Bytes> {
    Ok(Pdu::new(PduHeader::new(PduType::Data, to, from, seq), payload)?.to_bytes())
}

/// An endpoint attached to a router.
pub(crate) struct GdpEnd {
    /// Its name.
    pub(crate) name: Name,
    /// Its link to the router.
    pub(crate) link: EndpointLink,
    /// What arrives on the link.
    pub(crate) rx: EndpointReceiver,
}

impl GdpEnd {
    /// Attaches `identity` to `router`.
    pub(crate) async fn attach(
        identity: &Identity,
        router: &BenchRouter,
    ) -> anyhow::Result<GdpEnd> {
        let mut config = EndpointConfig::new(router.addr).with_router(router.name);
        config.transport.compact_headers = router.compact;
        let (link, rx) = EndpointLink::connect(identity, &config).await?;
        Ok(GdpEnd {
            name: identity.name(),
            link,
            rx,
        })
    }

    /// Sends one Data PDU to `to`.
    async fn send(&self, to: Name, seq: u64, payload: Bytes) -> anyhow::Result<()> {
        self.link
            .send_encoded(data(self.name, to, seq, payload)?)
            .await?;
        Ok(())
    }

    /// Waits for the echo of `seq` from `from`, skipping anything else
    /// (NAKs, late echoes); false after `wait`.
    async fn await_echo(&mut self, from: Name, seq: u64, wait: Duration) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Ok(false),
                Ok(event) => event,
            };
            match event {
                Some(EndpointEvent::Pdu { pdu, .. })
                    if pdu.header.ptype == PduType::Data
                        && pdu.header.flags.contains(Flags::RESPONSE)
                        && pdu.header.src == from
                        && pdu.header.seq == seq =>
                {
                    return Ok(true);
                }
                Some(EndpointEvent::Down(reason)) => {
                    anyhow::bail!("link to the router down: {reason}")
                }
                None => anyhow::bail!("link to the router down"),
                Some(_) => {}
            }
        }
    }
}

/// A far end (sink or echo) serving in a task of its own.
pub(crate) struct FarEnd {
    /// Its name.
    pub(crate) name: Name,
    link: EndpointLink,
    task: JoinHandle<()>,
}

impl FarEnd {
    /// Closes its link and ends its task.
    pub(crate) fn stop(self) {
        self.link.close("done");
        self.task.abort();
    }

    /// Serves `end` with `serve`, which returns once the link is down.
    fn spawn<F>(end: GdpEnd, serve: impl FnOnce(EndpointLink, EndpointReceiver) -> F) -> FarEnd
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let serving = serve(end.link.clone(), end.rx);
        let task = tokio::spawn(async move {
            if let Err(e) = serving.await {
                eprintln!("far end: {e}");
            }
        });
        FarEnd {
            name: end.name,
            link: end.link,
            task,
        }
    }

    /// The sink: every Data PDU that arrives at `end` is a permit of
    /// `arrivals`.
    pub(crate) fn sink(end: GdpEnd, arrivals: Arc<Semaphore>) -> FarEnd {
        FarEnd::spawn(end, |_link, mut rx| async move {
            let mut events = Vec::with_capacity(EVENTS_PER_TURN);
            while rx.recv_many(&mut events, EVENTS_PER_TURN).await > 0 {
                let pdus = events
                    .drain(..)
                    .filter(|e| {
                        matches!(e, EndpointEvent::Pdu { pdu, .. } if pdu.header.ptype == PduType::Data)
                    })
                    .count();
                arrivals.add_permits(pdus);
            }
            Ok(())
        })
    }

    /// The echo end: every Data PDU that arrives at `end` and is not a
    /// response goes back to its source with the same sequence number and
    /// payload, marked a response; the answers to one turn's events in one
    /// batch.
    pub(crate) fn echo(end: GdpEnd) -> FarEnd {
        let me = end.name;
        FarEnd::spawn(end, move |link, mut rx| async move {
            let mut events = Vec::with_capacity(EVENTS_PER_TURN);
            while rx.recv_many(&mut events, EVENTS_PER_TURN).await > 0 {
                let mut answers = Vec::new();
                for event in events.drain(..) {
                    if let EndpointEvent::Pdu { pdu, .. } = event
                        && pdu.header.ptype == PduType::Data
                        && !pdu.header.flags.contains(Flags::RESPONSE)
                    {
                        let header =
                            PduHeader::new(PduType::Data, pdu.header.src, me, pdu.header.seq)
                                .with_flags(Flags::RESPONSE);
                        answers.push(Pdu::new(header, pdu.payload)?.to_bytes());
                    }
                }
                if !answers.is_empty() && link.send_batch(answers).await.is_err() {
                    break;
                }
            }
            Ok(())
        })
    }
}

/// The near end of a path through routers: the client, sending to the
/// sink and pinging the echo end.
struct GdpNear {
    client: GdpEnd,
    sink: Name,
    echo: Name,
}

impl GdpNear {
    /// Sends warm-up PDUs to the echo end and to the sink until one
    /// arrives at each (the routes are then resolved and cached on every
    /// router of the path), then lets stragglers arrive and discards them,
    /// so that the measured runs see only their own PDUs. `arrivals` has
    /// no permits afterwards.
    async fn open_routes(&mut self, arrivals: &Semaphore) -> anyhow::Result<()> {
        let quiet = Duration::from_millis(200);
        let mut echoed = false;
        for attempt in 0..20u64 {
            let seq = u64::MAX - attempt;
            self.client
                .send(self.echo, seq, Bytes::from_static(WARM_UP))
                .await?;
            if self
                .client
                .await_echo(self.echo, seq, Duration::from_secs(1))
                .await?
            {
                echoed = true;
                break;
            }
        }
        anyhow::ensure!(echoed, "no route to the echo end");
        let mut counted = false;
        for attempt in 0..20u64 {
            self.client
                .send(self.sink, attempt, Bytes::from_static(WARM_UP))
                .await?;
            if let Ok(permit) =
                tokio::time::timeout(Duration::from_secs(1), arrivals.acquire()).await
            {
                permit?.forget();
                counted = true;
                break;
            }
        }
        anyhow::ensure!(counted, "no route to the sink");
        // Stragglers: late echoes (never matched again) and late arrivals.
        self.client.await_echo(self.echo, 0, quiet).await?;
        arrivals.forget_permits(arrivals.available_permits());
        Ok(())
    }
}

impl NearEnd for GdpNear {
    async fn write(&mut self, seq: u64, n: usize, payload: &Bytes) -> anyhow::Result<()> {
        let (me, sink) = (self.client.name, self.sink);
        let pdus = (seq..seq + n as u64)
            .map(|seq| data(me, sink, seq, payload.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.client.link.send_batch(pdus).await?;
        Ok(())
    }

    async fn ping(&mut self, seq: u64, payload: &Bytes) -> anyhow::Result<()> {
        self.client.send(self.echo, seq, payload.clone()).await?;
        anyhow::ensure!(
            self.client.await_echo(self.echo, seq, STALL).await?,
            "no echo of ping {seq} within {STALL:?}"
        );
        Ok(())
    }
}

/// GDP PDUs of each of [`PAYLOADS`] from a client at `near` to a sink and
/// an echo end at `far` (the same router or another); `threads` is the
/// name prefix of the threads whose CPU time is charged to the PDUs. Also
/// returns the share of the PDUs `near` received over the run that its
/// link readers forwarded themselves (the fast path), the rest having gone
/// through its forwarding core.
pub(crate) async fn through_routers(
    params: &Params,
    near: &BenchRouter,
    far: &BenchRouter,
    threads: &str,
) -> anyhow::Result<(Vec<Report>, f64)> {
    let arrivals = Arc::new(Semaphore::new(0));
    let sink_id = Identity::generate(Kind::Server, "sink")?;
    let echo_id = Identity::generate(Kind::Server, "echo")?;
    let client_id = Identity::generate(Kind::Client, "client")?;
    let sink = FarEnd::sink(GdpEnd::attach(&sink_id, far).await?, arrivals.clone());
    let echo = FarEnd::echo(GdpEnd::attach(&echo_id, far).await?);
    let mut client = GdpNear {
        client: GdpEnd::attach(&client_id, near).await?,
        sink: sink.name,
        echo: echo.name,
    };
    client.open_routes(&arrivals).await?;
    let sizes = PAYLOADS.map(|p| Size::pdu(p, near.compact));
    let before = near.handle.snapshot().await?.driver;
    let reports = measure(&mut client, &arrivals, &sizes, params, Some(threads)).await?;
    let after = near.handle.snapshot().await?.driver;
    client.client.link.close("done");
    sink.stop();
    echo.stop();
    let fast = (after.fast_forwarded - before.fast_forwarded) as f64;
    let core = (after.pdus_in - before.pdus_in) as f64;
    Ok((reports, fast / (fast + core).max(1.0)))
}

/// Cold lookups: for each sample a fresh echo end attaches to `far`; once
/// its route record is in the directory (`record_stored`), `client` sends
/// it one PDU, which its router must look up, verify and forward; the
/// sample is the time to the echo. Returns the histogram (ns) and the
/// first sample.
pub(crate) async fn cold_lookups(
    client: &mut GdpEnd,
    far: &BenchRouter,
    record_stored: impl Fn(Name) -> bool,
    samples: u64,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut first = Duration::ZERO;
    for seq in 1..=samples {
        let id = Identity::generate(Kind::Server, "cold")?;
        let end = GdpEnd::attach(&id, far).await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !record_stored(id.name()) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the record never reached the directory"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let echo = FarEnd::echo(end);
        let start = Instant::now();
        client
            .send(echo.name, seq, Bytes::from_static(b"cold"))
            .await?;
        anyhow::ensure!(
            client
                .await_echo(echo.name, seq, Duration::from_secs(5))
                .await?,
            "no echo from a new end"
        );
        let took = start.elapsed();
        if seq == 1 {
            first = took;
        }
        hist.record(took.as_nanos() as u64)?;
        echo.stop();
    }
    Ok((hist, first))
}
