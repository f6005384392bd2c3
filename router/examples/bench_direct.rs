//! Baseline for the router benchmark: a near and a far end on one direct
//! QUIC connection (quinn alone, with GDP TLS identities and the router
//! transport's QUIC settings), nothing in between.
//!
//! Run it with a release build:
//!
//! ```text
//! cargo run --release -p gdp-router --example bench_direct
//! cargo run --release -p gdp-router --example bench_direct -- --count 500000 --window 4096 --pings 10000
//! ```
//!
//! The ends speak raw frames (a 4-byte big-endian length and the payload)
//! of 64 B and 1 KiB payloads. For each it prints the one-way throughput
//! in frames/s with a window of frames in flight, which the far end counts,
//! and the p50/p99/max round trips of one frame at a time, which the far
//! end echoes. `bench_router` measures the same path next to the routers.

mod bench_util;

use bench_util::{PAYLOADS, Params, Size, baselines, print_table};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let params = Params::from_args()?;
    let reports = baselines::direct(&params, &PAYLOADS.map(Size::frame)).await?;
    let rows: Vec<_> = reports.iter().map(|r| ("direct QUIC", r)).collect();
    print_table("direct (near -> far)", &params, &rows);
    Ok(())
}
