//! Baseline for the router benchmark: the naive relay. The simplest
//! program that sits between two QUIC connections and copies bytes from
//! one stream to the other (reading up to 64 chunks and writing all of a
//! read at once, no parsing), with the same client and echo ends as
//! `bench_direct` connected through it.
//!
//! Run it with a release build:
//!
//! ```text
//! cargo run --release -p gdp-router --example bench_relay
//! cargo run --release -p gdp-router --example bench_relay -- --count 500000 --window 4096 --pings 10000
//! ```
//!
//! The figures are what a router has to beat (or come near): one extra
//! QUIC hop with no per-PDU work.

mod bench_util;

use bench_util::{Params, PduReader, dial, endpoint, print_reports, run_client, serve_echo};
use bytes::Bytes;
use gdp_certs::tls::{self, PeerPolicy};
use gdp_certs::{Identity, Kind};
use quinn::{RecvStream, SendStream};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let params = Params::from_args()?;
    let relay_id = Identity::generate(Kind::Router, "relay")?;
    let echo_id = Identity::generate(Kind::Server, "echo")?;
    let client_id = Identity::generate(Kind::Client, "client")?;

    let relay_ep = endpoint(&relay_id, Some(PeerPolicy::AnyName))?;
    let relay_addr = relay_ep.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = relay(relay_ep).await {
            eprintln!("relay: {e}");
        }
    });

    // The echo end dials the relay and answers the streams it opens.
    let echo_ep = endpoint(&echo_id, None)?;
    let echo_conn = dial(&echo_ep, &echo_id, relay_addr, relay_id.name()).await?;
    tokio::spawn(serve_echo(echo_conn));

    let client_ep = endpoint(&client_id, None)?;
    let conn = dial(&client_ep, &client_id, relay_addr, relay_id.name()).await?;
    let (mut send, recv) = conn.open_bi().await?;
    let mut reader = PduReader::new(recv);
    let reports = run_client(
        &mut send,
        &mut reader,
        client_id.name(),
        echo_id.name(),
        &params,
        None,
    )
    .await?;
    print_reports("naive relay (client -> relay -> echo)", &params, &reports);
    conn.close(0u32.into(), b"done");
    client_ep.wait_idle().await;
    Ok(())
}
