//! The router benchmark: messages/s and round-trip latency through one GDP
//! router and through two, next to the two baselines (a direct QUIC
//! connection and the naive byte relay), all in one run; then the latency
//! of a cold lookup, the first PDU to a name its router must resolve
//! through Redis.
//!
//! Run it with a release build (it starts its own `redis-server`, which
//! must be on the `PATH`; `scripts/test.sh` installs it):
//!
//! ```text
//! cargo run --release -p gdp-router --example bench_router
//! cargo run --release -p gdp-router --example bench_router -- --trials 5
//! cargo run --release -p gdp-router --example bench_router -- --trials 5 --pin on
//! cargo run --release -p gdp-router --example bench_router -- --trials 5 --compact off
//! cargo run --release -p gdp-router --example bench_router -- --count 500000 --window 4096 --pings 10000 --lookups 200
//! ```
//!
//! Each path has a near end that sends and two far ends: one counts what
//! arrives (throughput: `--count` messages one way, at most `--window` in
//! flight, written 64 KiB at a time), the other echoes it (latency:
//! `--pings` round trips, one at a time).
//!
//! - **Baselines** (`bench_direct`, `bench_relay`): minimal ends speaking
//!   raw frames, a 4-byte big-endian length and the payload, decoding
//!   nothing beyond that framing. Direct QUIC, then the naive relay, which
//!   copies stream chunks without parsing them: on the runtime of the ends
//!   (as `bench_relay` runs it) with frames of the PDUs' payload, and on
//!   its own two-worker runtime, as each router runs, twice: with frames
//!   of the PDUs' payload (equal payload), and with frames as long as the
//!   PDUs on the wire (equal wire bytes): payload and 17-byte compact
//!   head on links that speak `gdp/2` (the default), payload and 80-byte
//!   header with `--compact off` (every link `gdp/1`).
//! - **Routers**: GDP endpoints attached through `gdp_link`'s
//!   `EndpointLink`, as the SDK's ends are: the client sends encoded PDUs
//!   with `send_batch`, the sink counts the `EndpointEvent::Pdu`s it
//!   receives and the echo end answers each PDU. The client attaches to
//!   the first router, the sink and the echo end to the same router (one
//!   router) or to a second one (two routers), both routers sharing one
//!   Redis directory. Each router runs on its own two-worker runtime in
//!   this process.
//!
//! Every round prints one table per payload size (64 B and 1 KiB): per
//! path its messages/s, p50/p99/max round trips, and the CPU time the
//! hop's own threads (the router's or routers', the relay's on its own
//! runtime) spent per message delivered, from each thread's
//! `/proc/self/task/*/schedstat`, a measure of cost that does not depend
//! on how the cores were shared out. It also prints the share of the PDUs
//! that the first router's link readers forwarded themselves (the fast
//! path).
//!
//! Cold lookups: each sample attaches a new echo end to the second
//! router, waits until its route record is in Redis, and times one PDU
//! from the client to it and back (lookup, record verification, forwarding
//! and the echo).
//!
//! Ratios of messages/s swing by about ±20% from one run to the next on a
//! two-core machine, so `--trials N` measures every path N times, round
//! after round, and ends, per payload size, with the one-router hop set
//! against the relay on its own runtime in each round and as medians:
//! messages/s at equal payload and at equal wire bytes, p50 round trip
//! (equal payload), and CPU per PDU over CPU per frame (equal payload).
//!
//! With `--pin on` the ends run on CPU 0 and each hop (the relay on its
//! own runtime, each router) on one worker thread pinned to CPU 1, so a
//! hop never competes with the ends for a core: what it costs per message
//! then shows without the scheduler's noise.

mod bench_util;

use std::time::Duration;

use bench_util::baselines::{self, RelayRuntime};
use bench_util::gdp::{BenchRouter, GdpEnd, ROUTER_THREADS, cold_lookups, through_routers};
use bench_util::{PAYLOADS, Params, Report, Size, print_table};
use gdp_certs::{Identity, Kind};
use gdp_router::directory::route_key;
use gdp_testkit::{RedisServer, TempDir, median};

/// The paths measured in one round, each with one report per payload size
/// of [`PAYLOADS`].
struct Trial {
    /// Direct QUIC, raw frames of the PDUs' payload.
    direct: Vec<Report>,
    /// The relay on the ends' runtime, raw frames of the PDUs' payload.
    relay_shared: Vec<Report>,
    /// The relay on its own runtime, raw frames of the PDUs' payload.
    relay: Vec<Report>,
    /// The relay on its own runtime, raw frames as long as the PDUs.
    relay_wire: Vec<Report>,
    /// One GDP router.
    one: Vec<Report>,
    /// Two GDP routers.
    two: Vec<Report>,
    /// The share of the PDUs r1 received on the one-router path that its
    /// link readers forwarded themselves.
    fast: f64,
}

impl Trial {
    /// Measures every path once.
    async fn run(params: &Params, r1: &BenchRouter, r2: &BenchRouter) -> anyhow::Result<Trial> {
        let payload = PAYLOADS.map(Size::frame);
        let wire = PAYLOADS.map(|p| Size::frame_as_pdu(p, params.compact));
        let direct = baselines::direct(params, &payload).await?;
        let relay_shared = baselines::naive_relay(params, RelayRuntime::Shared, &payload).await?;
        let relay = baselines::naive_relay(params, RelayRuntime::Own, &payload).await?;
        let relay_wire = baselines::naive_relay(params, RelayRuntime::Own, &wire).await?;
        let (one, fast) = through_routers(params, r1, r1, &r1.threads).await?;
        let (two, _) = through_routers(params, r1, r2, ROUTER_THREADS).await?;
        Ok(Trial {
            direct,
            relay_shared,
            relay,
            relay_wire,
            one,
            two,
            fast,
        })
    }

    /// The paths with their names, in the order of the tables.
    fn paths(&self) -> [(&'static str, &[Report]); 6] {
        [
            ("direct QUIC, raw frames", &self.direct),
            ("naive relay, ends' runtime", &self.relay_shared),
            ("naive relay, equal payload", &self.relay),
            ("naive relay, equal wire bytes", &self.relay_wire),
            ("one GDP router (r1)", &self.one),
            ("two GDP routers (r1, r2)", &self.two),
        ]
    }

    /// One table per payload size.
    fn print(&self, params: &Params) {
        for (i, payload) in PAYLOADS.iter().enumerate() {
            let rows: Vec<(&str, &Report)> = self
                .paths()
                .into_iter()
                .filter_map(|(path, reports)| Some((path, reports.get(i)?)))
                .collect();
            println!();
            print_table(&format!("{payload} B payload"), params, &rows);
        }
        println!(
            "r1's link readers forwarded {:.2}% of the PDUs it received (one router)",
            self.fast * 100.0
        );
    }

    /// The one-router hop against the relay on its own runtime, for
    /// report `i` (a payload size): messages/s at equal payload and at
    /// equal wire bytes, p50 round trip at equal payload, CPU per message
    /// at equal payload.
    fn ratios(&self, i: usize) -> [f64; 4] {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => a / b,
            _ => f64::NAN,
        };
        let of = |r: &[Report], f: fn(&Report) -> Option<f64>| r.get(i).and_then(f);
        let rate = |r: &Report| Some(r.msgs_per_sec);
        let p50 = |r: &Report| Some(r.p50_us);
        let cpu = |r: &Report| r.hop_ns_per_msg;
        [
            ratio(of(&self.one, rate), of(&self.relay, rate)),
            ratio(of(&self.one, rate), of(&self.relay_wire, rate)),
            ratio(of(&self.one, p50), of(&self.relay, p50)),
            ratio(of(&self.one, cpu), of(&self.relay, cpu)),
        ]
    }
}

/// The ratios of every round and their medians, one table per payload.
fn print_ratios(trials: &[Trial]) {
    for (i, payload) in PAYLOADS.iter().enumerate() {
        println!();
        // The targets: msgs/s at equal payload at least 0.6x at 64 B and
        // 0.9x at 1 KiB, p50 round trip at most 1.3x.
        let target = if *payload < 1024 { 0.6 } else { 0.9 };
        println!(
            "{payload} B payload: one GDP router / naive relay on its own runtime, per round \
             (targets: msgs/s eq pay >= {target}x, p50 RTT <= 1.3x)"
        );
        println!(
            "{:<8} {:>16} {:>16} {:>16} {:>16}",
            "round", "msgs/s eq pay", "msgs/s eq wire", "p50 RTT eq pay", "CPU/msg eq pay"
        );
        let line = |label: &str, r: &[f64; 4]| {
            println!(
                "{label:<8} {:>16.2} {:>16.2} {:>16.2} {:>16.2}",
                r[0], r[1], r[2], r[3]
            );
        };
        let rows: Vec<[f64; 4]> = trials.iter().map(|t| t.ratios(i)).collect();
        for (round, r) in rows.iter().enumerate() {
            line(&(round + 1).to_string(), r);
        }
        let medians = std::array::from_fn(|c| median(rows.iter().map(|r| r[c]).collect()));
        line("median", &medians);
    }
}

fn main() -> anyhow::Result<()> {
    let params = Params::from_args()?;
    bench_util::run_ends(params.pin, run(params))?
}

async fn run(params: Params) -> anyhow::Result<()> {
    let redis = RedisServer::try_start()?;
    let data = TempDir::try_new("bench-router")?;
    let r1 = BenchRouter::start("r1", &redis.url(), data.path(), &params)?;
    let r2 = BenchRouter::start("r2", &redis.url(), data.path(), &params)?;

    let mut trials = Vec::new();
    for round in 1..=params.trials {
        println!();
        println!("round {round} of {}", params.trials);
        let trial = Trial::run(&params, &r1, &r2).await?;
        trial.print(&params);
        trials.push(trial);
    }

    let client_id = Identity::generate(Kind::Client, "cold-client")?;
    let mut client = GdpEnd::attach(&client_id, &r1).await?;
    let stored = |name| {
        matches!(
            redis.query(redis::cmd("EXISTS").arg(route_key(&name))),
            Ok(redis::Value::Int(1))
        )
    };
    let (hist, first) = cold_lookups(&mut client, &r2, stored, params.lookups).await?;
    client.link.close("done");
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    println!();
    println!(
        "cold lookup through Redis (client -> r1 lookup -> r2 -> echo, and back), {} samples",
        hist.len()
    );
    println!(
        "{:>10} {:>10} {:>10} {:>14}",
        "p50 us", "p99 us", "max us", "first us"
    );
    println!(
        "{:>10.1} {:>10.1} {:>10.1} {:>14.1}",
        q(0.5),
        q(0.99),
        hist.max() as f64 / 1000.0,
        us(first)
    );

    print_ratios(&trials);
    drop(r1);
    drop(r2);
    Ok(())
}
