//! Baseline for the router benchmark: the naive relay. The simplest
//! program that sits between two QUIC connections and copies bytes from
//! one stream to another (reading up to 64 chunks and writing all of a
//! read at once, no parsing), with the near and far ends of `bench_direct`
//! connected through it.
//!
//! Run it with a release build:
//!
//! ```text
//! cargo run --release -p gdp-router --example bench_relay
//! cargo run --release -p gdp-router --example bench_relay -- --count 500000 --window 4096 --pings 10000
//! ```
//!
//! The relay runs on the same runtime as the ends. It is measured with
//! raw frames of 64 B and 1 KiB payloads (as the PDUs through a router
//! carry), and with frames as long as those PDUs on the wire (payload and
//! 80-byte header). The figures are what a router has to beat (or come
//! near): one extra QUIC hop with no per-message work. `bench_router`
//! measures the relay next to the routers, also on a runtime of its own.

mod bench_util;

use bench_util::baselines::{self, RelayRuntime};
use bench_util::{PAYLOADS, Params, Size, print_table};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let params = Params::from_args()?;
    let sizes = [
        PAYLOADS.map(Size::frame),
        PAYLOADS.map(|p| Size::frame_as_pdu(p, params.compact)),
    ]
    .concat();
    let reports = baselines::naive_relay(&params, RelayRuntime::Shared, &sizes).await?;
    let rows: Vec<_> = reports.iter().map(|r| ("naive relay", r)).collect();
    print_table("naive relay (near -> relay -> far)", &params, &rows);
    Ok(())
}
