//! Baseline for the router benchmark: a client and an echo end on one
//! direct QUIC connection (quinn alone, with GDP TLS identities and the
//! router transport's QUIC settings), nothing in between.
//!
//! Run it with a release build:
//!
//! ```text
//! cargo run --release -p gdp-router --example bench_direct
//! cargo run --release -p gdp-router --example bench_direct -- --count 500000 --window 4096 --pings 10000
//! ```
//!
//! For each payload size (64 B and 1 KiB) it prints the one-way throughput
//! in PDUs/s with a pipelined window of PDUs in flight, and the p50/p99/max
//! round-trip latency of one PDU at a time.

mod bench_util;

use bench_util::{Params, PduReader, dial, endpoint, print_reports, run_client, serve_echo};
use gdp_certs::tls::PeerPolicy;
use gdp_certs::{Identity, Kind};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let params = Params::from_args()?;
    let echo_id = Identity::generate(Kind::Server, "echo")?;
    let client_id = Identity::generate(Kind::Client, "client")?;

    let echo_ep = endpoint(&echo_id, Some(PeerPolicy::AnyName))?;
    let echo_addr = echo_ep.local_addr()?;
    tokio::spawn(async move {
        while let Some(incoming) = echo_ep.accept().await {
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
        &params,
        None,
    )
    .await?;
    print_reports("direct (client -> echo)", &params, &reports);
    conn.close(0u32.into(), b"done");
    client_ep.wait_idle().await;
    Ok(())
}
