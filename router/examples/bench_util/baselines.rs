//! The two baselines as functions, so that `bench_router` can run them in
//! the same process and run as the router figures: a direct connection
//! (what `bench_direct` measures) and the naive byte relay (what
//! `bench_relay` measures).

use bytes::Bytes;
use gdp_certs::tls::{self, PeerPolicy};
use gdp_certs::{Identity, Kind};
use quinn::{RecvStream, SendStream};

use super::{Params, PduReader, Report, dial, endpoint, run_client, serve_echo};

/// Client and echo end on one direct QUIC connection.
pub(crate) async fn direct(params: &Params) -> anyhow::Result<Vec<Report>> {
    let echo_id = Identity::generate(Kind::Server, "echo")?;
    let client_id = Identity::generate(Kind::Client, "client")?;
    let echo_ep = endpoint(&echo_id, Some(PeerPolicy::AnyName))?;
    let echo_addr = echo_ep.local_addr()?;
    let accept = echo_ep.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => serve_echo(conn).await,
                    Err(e) => eprintln!("echo handshake: {e}"),
                }
            });
        }
    });
    let client_ep = endpoint(&client_id, None)?;
    let conn = dial(&client_ep, &client_id, echo_addr, echo_id.name()).await?;
    let (mut send, recv) = conn.open_bi().await?;
    let mut reader = PduReader::new(recv);
    let reports = run_client(
        &mut send,
        &mut reader,
        client_id.name(),
        echo_id.name(),
        params,
        None,
    )
    .await?;
    conn.close(0u32.into(), b"done");
    client_ep.wait_idle().await;
    echo_ep.close(0u32.into(), b"done");
    Ok(reports)
}

/// Copies `from` to `to` until `from` ends.
async fn pipe(mut from: RecvStream, mut to: SendStream) -> anyhow::Result<()> {
    let mut bufs = vec![Bytes::new(); 64];
    while let Some(n) = from.read_chunks(&mut bufs).await? {
        to.write_all_chunks(&mut bufs[..n]).await?;
    }
    to.finish()?;
    Ok(())
}

/// Waits for the echo end (a server identity) and the client, then pipes
/// every stream the client opens to a new stream to the echo end and back.
async fn relay(endpoint: quinn::Endpoint) -> anyhow::Result<()> {
    let mut echo = None;
    let mut client = None;
    while echo.is_none() || client.is_none() {
        let incoming = endpoint
            .accept()
            .await
            .ok_or_else(|| anyhow::anyhow!("relay endpoint closed"))?;
        let conn = incoming.await?;
        match tls::quinn_peer_identity(&conn)?.metadata().kind() {
            Kind::Server => echo = Some(conn),
            Kind::Client => client = Some(conn),
            other => anyhow::bail!("unexpected {other} at the relay"),
        }
    }
    let (echo, client) = (
        echo.ok_or_else(|| anyhow::anyhow!("no echo end"))?,
        client.ok_or_else(|| anyhow::anyhow!("no client"))?,
    );
    while let Ok((to_client, from_client)) = client.accept_bi().await {
        let (to_echo, from_echo) = echo.open_bi().await?;
        tokio::spawn(pipe(from_client, to_echo));
        tokio::spawn(pipe(from_echo, to_client));
    }
    Ok(())
}

/// The name of the threads of the relay's own runtime.
const RELAY_THREADS: &str = "relay";

/// Where the naive relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayRuntime {
    /// On the runtime of the client and echo ends.
    Shared,
    /// On its own two-worker runtime, as each router of `bench_router`
    /// runs: the like-for-like baseline for a router hop.
    Own,
}

/// A relay endpoint and the task serving it.
struct RelayHandle {
    addr: std::net::SocketAddr,
    stop: Box<dyn FnOnce() + Send>,
}

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

/// Client and echo end connected through the naive relay.
pub(crate) async fn naive_relay(
    params: &Params,
    runtime: RelayRuntime,
) -> anyhow::Result<Vec<Report>> {
    let relay_id = Identity::generate(Kind::Router, "relay")?;
    let echo_id = Identity::generate(Kind::Server, "echo")?;
    let client_id = Identity::generate(Kind::Client, "client")?;
    let relay = start_relay(&relay_id, runtime, params.pin)?;
    let echo_ep = endpoint(&echo_id, None)?;
    let echo_conn = dial(&echo_ep, &echo_id, relay.addr, relay_id.name()).await?;
    tokio::spawn(serve_echo(echo_conn.clone()));
    let client_ep = endpoint(&client_id, None)?;
    let conn = dial(&client_ep, &client_id, relay.addr, relay_id.name()).await?;
    let (mut send, recv) = conn.open_bi().await?;
    let mut reader = PduReader::new(recv);
    let reports = run_client(
        &mut send,
        &mut reader,
        client_id.name(),
        echo_id.name(),
        params,
        (runtime == RelayRuntime::Own).then_some(RELAY_THREADS),
    )
    .await?;
    conn.close(0u32.into(), b"done");
    echo_conn.close(0u32.into(), b"done");
    client_ep.wait_idle().await;
    // Joining the relay's thread blocks: do it off the runtime.
    tokio::task::spawn_blocking(relay.stop).await?;
    Ok(reports)
}
