//! The two baselines, with minimal ends: a direct QUIC connection (what
//! `bench_direct` measures) and the naive byte relay (what `bench_relay`
//! measures).
//!
//! The ends speak raw frames, a 4-byte big-endian length and the payload,
//! and decode nothing beyond that framing. The near end writes the frames
//! of a throughput run on one unidirectional stream, which the far end
//! only counts, and each ping as one frame on a bidirectional stream,
//! which the far end copies back as it reads it. The relay copies every
//! stream the near end opens, unparsed, to a new stream of the same kind
//! to the far end (and, for a bidirectional one, back).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use gdp_certs::tls::{self, PeerPolicy};
use gdp_certs::{Identity, Kind};
use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;

use super::{NearEnd, Params, Report, Size, dial, endpoint, measure};

/// Bytes of the length before each frame's payload.
pub(crate) const LEN_PREFIX: usize = 4;

/// Chunks read at once.
const READ_CHUNKS: usize = 64;

/// The name of the threads of the relay's own runtime.
pub(crate) const RELAY_THREADS: &str = "relay";

/// Counts the length-prefixed frames of a byte stream, however the stream
/// is cut into chunks.
#[derive(Debug, Default)]
struct FrameCounter {
    /// The length of the next frame, as far as it has arrived.
    len: [u8; LEN_PREFIX],
    /// Bytes of `len` that have arrived.
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: usize,
}

impl FrameCounter {
    /// Takes in `chunk`; returns how many frames it completed.
    fn push(&mut self, mut chunk: &[u8]) -> u64 {
        let mut done = 0;
        while !chunk.is_empty() {
            if self.left > 0 {
                let n = self.left.min(chunk.len());
                self.left -= n;
                chunk = &chunk[n..];
                done += u64::from(self.left == 0);
                continue;
            }
            let n = (LEN_PREFIX - self.have).min(chunk.len());
            self.len[self.have..self.have + n].copy_from_slice(&chunk[..n]);
            self.have += n;
            chunk = &chunk[n..];
            if self.have == LEN_PREFIX {
                self.have = 0;
                self.left = u32::from_be_bytes(self.len) as usize;
                done += u64::from(self.left == 0);
            }
        }
        done
    }
}

/// Reads `recv` and counts its frames: each is a permit of `arrivals`.
async fn count(mut recv: RecvStream, arrivals: Arc<Semaphore>) -> anyhow::Result<()> {
    let mut frames = FrameCounter::default();
    let mut bufs = vec![Bytes::new(); READ_CHUNKS];
    while let Some(n) = recv.read_chunks(&mut bufs).await? {
        let done: u64 = bufs[..n].iter().map(|chunk| frames.push(chunk)).sum();
        arrivals.add_permits(done as usize);
    }
    Ok(())
}

/// Copies `from` to `to` until `from` ends: the relay's pipe, and on the
/// two halves of one bidirectional stream the echo.
async fn pipe(mut from: RecvStream, mut to: SendStream) -> anyhow::Result<()> {
    let mut bufs = vec![Bytes::new(); READ_CHUNKS];
    while let Some(n) = from.read_chunks(&mut bufs).await? {
        to.write_all_chunks(&mut bufs[..n]).await?;
    }
    to.finish()?;
    Ok(())
}

/// The far end on `conn`: counts the frames of every unidirectional
/// stream into `arrivals`, echoes every bidirectional one.
async fn serve_far(conn: quinn::Connection, arrivals: Arc<Semaphore>) {
    loop {
        tokio::select! {
            uni = conn.accept_uni() => {
                let Ok(recv) = uni else { return };
                tokio::spawn(count(recv, arrivals.clone()));
            }
            bi = conn.accept_bi() => {
                let Ok((send, recv)) = bi else { return };
                tokio::spawn(pipe(recv, send));
            }
        }
    }
}

/// The near end on one connection: a unidirectional stream for
/// throughput, a bidirectional one for pings.
struct RawNear {
    data: SendStream,
    ping_send: SendStream,
    ping_recv: RecvStream,
    bufs: Vec<Bytes>,
}

impl RawNear {
    /// Opens the near end's streams on `conn`.
    async fn open(conn: &quinn::Connection) -> anyhow::Result<RawNear> {
        let data = conn.open_uni().await?;
        let (ping_send, ping_recv) = conn.open_bi().await?;
        Ok(RawNear {
            data,
            ping_send,
            ping_recv,
            bufs: vec![Bytes::new(); READ_CHUNKS],
        })
    }
}

/// `n` frames of `payload`.
fn frames(n: usize, payload: &[u8]) -> anyhow::Result<Bytes> {
    let len = u32::try_from(payload.len())?;
    let mut buf = BytesMut::with_capacity(n * (LEN_PREFIX + payload.len()));
    for _ in 0..n {
        buf.put_u32(len);
        buf.put_slice(payload);
    }
    Ok(buf.freeze())
}

impl NearEnd for RawNear {
    async fn write(&mut self, _seq: u64, n: usize, payload: &Bytes) -> anyhow::Result<()> {
        self.data.write_chunk(frames(n, payload)?).await?;
        Ok(())
    }

    async fn ping(&mut self, _seq: u64, payload: &Bytes) -> anyhow::Result<()> {
        self.ping_send.write_chunk(frames(1, payload)?).await?;
        let mut echo = FrameCounter::default();
        let mut got = 0;
        while got == 0 {
            let n = self
                .ping_recv
                .read_chunks(&mut self.bufs)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the echo stream ended"))?;
            got += self.bufs[..n].iter().map(|c| echo.push(c)).sum::<u64>();
        }
        anyhow::ensure!(got == 1, "one echo per ping");
        Ok(())
    }
}

/// Measures `sizes` from a near end on `conn` whose far end counts into
/// `arrivals`, then closes `conn` and waits until `ep` is idle.
async fn measure_raw(
    ep: &quinn::Endpoint,
    conn: &quinn::Connection,
    arrivals: &Semaphore,
    sizes: &[Size],
    params: &Params,
    hop_threads: Option<&str>,
) -> anyhow::Result<Vec<Report>> {
    let mut near = RawNear::open(conn).await?;
    let reports = measure(&mut near, arrivals, sizes, params, hop_threads).await?;
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    Ok(reports)
}

/// Near and far end on one direct QUIC connection.
pub(crate) async fn direct(params: &Params, sizes: &[Size]) -> anyhow::Result<Vec<Report>> {
    let far_id = Identity::generate(Kind::Server, "far")?;
    let near_id = Identity::generate(Kind::Client, "near")?;
    let arrivals = Arc::new(Semaphore::new(0));
    let far_ep = endpoint(&far_id, Some(PeerPolicy::AnyName))?;
    let far_addr = far_ep.local_addr()?;
    let accept = far_ep.clone();
    let far_arrivals = arrivals.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            let arrivals = far_arrivals.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => serve_far(conn, arrivals).await,
                    Err(e) => eprintln!("far end handshake: {e}"),
                }
            });
        }
    });
    let near_ep = endpoint(&near_id, None)?;
    let conn = dial(&near_ep, &near_id, far_addr, far_id.name()).await?;
    let reports = measure_raw(&near_ep, &conn, &arrivals, sizes, params, None).await;
    far_ep.close(0u32.into(), b"done");
    reports
}

/// Waits for the far end (a server identity) and the near end (a client),
/// then copies every stream the near end opens to a new stream of the same
/// kind to the far end, both ways for a bidirectional one.
async fn relay(endpoint: quinn::Endpoint) -> anyhow::Result<()> {
    let mut far = None;
    let mut near = None;
    while far.is_none() || near.is_none() {
        let incoming = endpoint
            .accept()
            .await
            .ok_or_else(|| anyhow::anyhow!("relay endpoint closed"))?;
        let conn = incoming.await?;
        match tls::quinn_peer_identity(&conn)?.metadata().kind() {
            Kind::Server => far = Some(conn),
            Kind::Client => near = Some(conn),
            other => anyhow::bail!("unexpected {other} at the relay"),
        }
    }
    let (far, near) = (
        far.ok_or_else(|| anyhow::anyhow!("no far end"))?,
        near.ok_or_else(|| anyhow::anyhow!("no near end"))?,
    );
    loop {
        tokio::select! {
            uni = near.accept_uni() => {
                let Ok(from_near) = uni else { return Ok(()) };
                tokio::spawn(pipe(from_near, far.open_uni().await?));
            }
            bi = near.accept_bi() => {
                let Ok((to_near, from_near)) = bi else { return Ok(()) };
                let (to_far, from_far) = far.open_bi().await?;
                tokio::spawn(pipe(from_near, to_far));
                tokio::spawn(pipe(from_far, to_near));
            }
        }
    }
}

/// Where the naive relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayRuntime {
    /// On the runtime of the near and far ends.
    Shared,
    /// On its own two-worker runtime (one pinned worker under `--pin on`),
    /// as each router of `bench_router` runs: the like-for-like baseline
    /// for a router hop, and the one whose threads' CPU time is measured.
    Own,
}

/// A running relay: its address and how to stop it.
struct RelayHandle {
    addr: std::net::SocketAddr,
    stop: Box<dyn FnOnce() + Send>,
}

/// Starts a relay with `relay_id` where `runtime` says.
fn start_relay(
    relay_id: &Identity,
    runtime: RelayRuntime,
    pin: bool,
) -> anyhow::Result<RelayHandle> {
    match runtime {
        RelayRuntime::Shared => {
            let relay_ep = endpoint(relay_id, Some(PeerPolicy::AnyName))?;
            let addr = relay_ep.local_addr()?;
            let task = tokio::spawn(async move {
                if let Err(e) = relay(relay_ep).await {
                    eprintln!("relay: {e}");
                }
            });
            Ok(RelayHandle {
                addr,
                stop: Box::new(move || task.abort()),
            })
        }
        RelayRuntime::Own => {
            let runtime = super::hop_runtime(RELAY_THREADS, pin)?;
            let relay_id = relay_id.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                runtime.block_on(async move {
                    let relay_ep = match endpoint(&relay_id, Some(PeerPolicy::AnyName)) {
                        Ok(ep) => ep,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(relay_ep.local_addr().map_err(Into::into));
                    tokio::select! {
                        result = relay(relay_ep) => if let Err(e) = result {
                            eprintln!("relay: {e}");
                        },
                        _ = stop_rx => {}
                    }
                });
            });
            let addr = ready_rx.recv()??;
            Ok(RelayHandle {
                addr,
                stop: Box::new(move || {
                    let _ = stop_tx.send(());
                    let _ = thread.join();
                }),
            })
        }
    }
}

/// Near and far end connected through the naive relay.
pub(crate) async fn naive_relay(
    params: &Params,
    runtime: RelayRuntime,
    sizes: &[Size],
) -> anyhow::Result<Vec<Report>> {
    let relay_id = Identity::generate(Kind::Router, "relay")?;
    let far_id = Identity::generate(Kind::Server, "far")?;
    let near_id = Identity::generate(Kind::Client, "near")?;
    let arrivals = Arc::new(Semaphore::new(0));
    let relay = start_relay(&relay_id, runtime, params.pin)?;
    let far_ep = endpoint(&far_id, None)?;
    let far_conn = dial(&far_ep, &far_id, relay.addr, relay_id.name()).await?;
    tokio::spawn(serve_far(far_conn.clone(), arrivals.clone()));
    let near_ep = endpoint(&near_id, None)?;
    let conn = dial(&near_ep, &near_id, relay.addr, relay_id.name()).await?;
    let hop_threads = (runtime == RelayRuntime::Own).then_some(RELAY_THREADS);
    let reports = measure_raw(&near_ep, &conn, &arrivals, sizes, params, hop_threads).await;
    far_conn.close(0u32.into(), b"done");
    // Joining the relay's thread blocks: do it off the runtime.
    tokio::task::spawn_blocking(relay.stop).await?;
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_across_any_cut() -> anyhow::Result<()> {
        let stream = [frames(3, b"abc")?, frames(2, b"")?, frames(1, &[7; 300])?].concat();
        for cut in 1..stream.len() {
            let mut counter = FrameCounter::default();
            let total: u64 = stream.chunks(cut).map(|c| counter.push(c)).sum();
            assert_eq!(total, 6, "cut every {cut} bytes");
        }
        Ok(())
    }
}
