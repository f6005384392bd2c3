//! The router benchmark: PDUs/s and round-trip latency through one GDP
//! router and through two, next to the two baselines (a direct QUIC
//! connection and the naive byte relay), all in one run; then the latency
//! of a cold lookup, the first PDU to a name its router must resolve
//! through Redis.
//!
//! Run it with a release build (it starts its own `redis-server`, which
//! `scripts/test.sh` installs):
//!
//! ```text
//! cargo run --release -p gdp-router --example bench_router
//! cargo run --release -p gdp-router --example bench_router -- --trials 5
//! cargo run --release -p gdp-router --example bench_router -- --trials 5 --pin on
//! cargo run --release -p gdp-router --example bench_router -- --count 500000 --window 4096 --pings 10000 --lookups 200
//! ```
//!
//! The client and echo ends are those of `bench_direct` and `bench_relay`
//! (one stream of PDUs each way, the echo end swapping source and
//! destination). Through routers they attach as GDP endpoints: the client
//! to the first router, the echo end to the same router (one router) or to
//! a second one (two routers), both routers sharing one Redis directory.
//! Each router runs on its own two-worker runtime in this process. The
//! naive relay is measured twice: on the runtime of the client and echo
//! ends (as `bench_relay` runs it), and on its own two-worker runtime like
//! a router, which is the like-for-like baseline for one router hop.
//!
//! For each payload size (64 B and 1 KiB): one-way throughput with a
//! window of PDUs in flight, and p50/p99/max round trips of one PDU at a
//! time. Cold lookups: each sample attaches a new echo end to the second
//! router, waits until its route record is in Redis, and times one PDU
//! from the client to it and back (lookup, record verification, forwarding
//! and the echo).
//!
//! Ratios of PDUs/s swing by about ±20% from one run to the next on a
//! two-core machine, so `--trials N` measures every path N times, round
//! after round, and ends with the router-to-relay ratio of each round and
//! their medians. It also prints, per round, the CPU time the hop's own
//! threads spent per PDU they passed on (the router's, and the relay's on
//! its own runtime: a measure of cost that does not depend on how the
//! cores were shared out), and the share of the PDUs that the first
//! router's link readers forwarded themselves (the fast path).
//!
//! With `--pin on` the client and echo ends run on CPU 0 and each hop (the
//! relay on its own runtime, each router) on one worker thread pinned to
//! CPU 1, so a hop never competes with the ends for a core: what it costs
//! per PDU then shows without the scheduler's noise.

mod bench_util;

use std::time::Duration;

use bench_util::baselines::RelayRuntime;
use bench_util::gdp::{BenchRouter, ROUTER_THREADS, attach, cold_lookups, open_route, spawn_echo};
use bench_util::{Params, Report, baselines, print_reports, run_client};
use gdp_certs::{Identity, Kind};
use gdp_router::directory::route_key;
use gdp_testkit::{RedisServer, TempDir};

/// Client at `near`, echo end at `far` (the same router or another).
/// Also returns the share of the PDUs `near` received over the run that
/// its link readers forwarded themselves (the fast path), the rest having
/// gone through its forwarding core.
async fn through_routers(
    params: &Params,
    near: &BenchRouter,
    far: &BenchRouter,
    threads: &str,
) -> anyhow::Result<(Vec<Report>, f64)> {
    let echo_id = Identity::generate(Kind::Server, "echo")?;
    let client_id = Identity::generate(Kind::Client, "client")?;
    let (echo_conn, echo_task) = spawn_echo(attach(&echo_id, far).await?);
    let mut client = attach(&client_id, near).await?;
    open_route(&mut client, echo_id.name()).await?;
    let before = near.handle.snapshot().await?.driver;
    let reports = run_client(
        &mut client.send,
        &mut client.reader,
        client_id.name(),
        echo_id.name(),
        params,
        Some(threads),
    )
    .await?;
    let after = near.handle.snapshot().await?.driver;
    client.close();
    echo_conn.close(0u32.into(), b"done");
    client.endpoint.wait_idle().await;
    echo_task.abort();
    let fast = (after.fast_forwarded - before.fast_forwarded) as f64;
    let core = (after.pdus_in - before.pdus_in) as f64;
    Ok((reports, fast / (fast + core).max(1.0)))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn summary(rows: &[(&str, &[Report])]) {
    println!();
    println!("summary: PDUs/s one way; round trip p50/p99 in us");
    println!(
        "{:<18} {:>12} {:>16} {:>12} {:>16}",
        "", "64 B PDUs/s", "64 B p50/p99", "1 KiB PDUs/s", "1 KiB p50/p99"
    );
    for (title, reports) in rows {
        let cell = |i: usize| {
            reports.get(i).map_or_else(
                || (String::from("-"), String::from("-")),
                |r| {
                    (
                        format!("{:.0}", r.pdus_per_sec),
                        format!("{:.0}/{:.0}", r.p50_us, r.p99_us),
                    )
                },
            )
        };
        let (a, b) = cell(0);
        let (c, d) = cell(1);
        println!("{title:<18} {a:>12} {b:>16} {c:>12} {d:>16}");
    }
}

/// The five paths measured in one round.
struct Trial {
    direct: Vec<Report>,
    relay: Vec<Report>,
    relay_own: Vec<Report>,
    one: Vec<Report>,
    two: Vec<Report>,
}

impl Trial {
    async fn run(params: &Params, r1: &BenchRouter, r2: &BenchRouter) -> anyhow::Result<Trial> {
        let direct = baselines::direct(params).await?;
        print_reports("direct (client -> echo)", params, &direct);
        let relay = baselines::naive_relay(params, RelayRuntime::Shared).await?;
        print_reports("naive relay (client -> relay -> echo)", params, &relay);
        let relay_own = baselines::naive_relay(params, RelayRuntime::Own).await?;
        print_reports(
            "naive relay on its own runtime (client -> relay -> echo)",
            params,
            &relay_own,
        );
        let (one, fast) = through_routers(params, r1, r1, &r1.threads).await?;
        print_reports("one GDP router (client -> r1 -> echo)", params, &one);
        println!(
            "  r1's link readers forwarded {:.2}% of the PDUs it received",
            fast * 100.0
        );
        let (two, _) = through_routers(params, r1, r2, ROUTER_THREADS).await?;
        print_reports("two GDP routers (client -> r1 -> r2 -> echo)", params, &two);
        Ok(Trial {
            direct,
            relay,
            relay_own,
            one,
            two,
        })
    }

    fn summary(&self) {
        summary(&[
            ("direct", &self.direct),
            ("naive relay", &self.relay),
            ("relay, own rt", &self.relay_own),
            ("one GDP router", &self.one),
            ("two GDP routers", &self.two),
        ]);
    }

    /// One router's PDUs/s over a baseline's, for report `i` (a payload
    /// size), within this round.
    fn ratio(&self, baseline: &[Report], i: usize) -> f64 {
        match (self.one.get(i), baseline.get(i)) {
            (Some(r), Some(b)) if b.pdus_per_sec > 0.0 => r.pdus_per_sec / b.pdus_per_sec,
            _ => f64::NAN,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The router-to-relay throughput ratios of every round, and their medians.
fn ratios(trials: &[Trial]) {
    println!();
    println!("one GDP router / naive relay, PDUs/s within each round (target 0.9x)");
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12}",
        "round", "64 B own rt", "64 B shared", "1 KiB own rt", "1 KiB shared"
    );
    let row = |t: &Trial| {
        [
            t.ratio(&t.relay_own, 0),
            t.ratio(&t.relay, 0),
            t.ratio(&t.relay_own, 1),
            t.ratio(&t.relay, 1),
        ]
    };
    let rows: Vec<[f64; 4]> = trials.iter().map(row).collect();
    for (i, r) in rows.iter().enumerate() {
        println!(
            "{:<8} {:>12.2} {:>12.2} {:>12.2} {:>12.2}",
            i + 1,
            r[0],
            r[1],
            r[2],
            r[3]
        );
    }
    let col = |c: usize| median(rows.iter().map(|r| r[c]).collect());
    println!(
        "{:<8} {:>12.2} {:>12.2} {:>12.2} {:>12.2}",
        "median",
        col(0),
        col(1),
        col(2),
        col(3)
    );

    // CPU per PDU passed on depends far less on how the two cores were
    // shared out in a round than PDUs/s does.
    println!();
    println!(
        "CPU time of the hop's threads per PDU passed on, ns (one GDP router, relay on its own runtime)"
    );
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "round", "64 B router", "64 B relay", "ratio", "1 KiB router", "1 KiB relay", "ratio"
    );
    let ns = |r: &[Report], i: usize| r.get(i).and_then(|r| r.hop_ns_per_pdu).unwrap_or(f64::NAN);
    let cpu: Vec<[f64; 6]> = trials
        .iter()
        .map(|t| {
            let (a, b) = (ns(&t.one, 0), ns(&t.relay_own, 0));
            let (c, d) = (ns(&t.one, 1), ns(&t.relay_own, 1));
            [a, b, a / b, c, d, c / d]
        })
        .collect();
    let line = |label: &str, r: &[f64; 6]| {
        println!(
            "{label:<8} {:>12.0} {:>12.0} {:>12.2} {:>12.0} {:>12.0} {:>12.2}",
            r[0], r[1], r[2], r[3], r[4], r[5]
        );
    };
    for (i, r) in cpu.iter().enumerate() {
        line(&(i + 1).to_string(), r);
    }
    let medians: [f64; 6] = std::array::from_fn(|c| median(cpu.iter().map(|r| r[c]).collect()));
    line("median", &medians);
}

fn main() -> anyhow::Result<()> {
    let params = Params::from_args()?;
    bench_util::ends_runtime(params.pin)?.block_on(run(params))
}

async fn run(params: Params) -> anyhow::Result<()> {
    let redis = RedisServer::try_start()?;
    let data = TempDir::try_new("bench-router")?;
    let r1 = BenchRouter::start("r1", &redis.url(), data.path(), params.pin)?;
    let r2 = BenchRouter::start("r2", &redis.url(), data.path(), params.pin)?;

    let mut trials = Vec::new();
    for round in 1..=params.trials {
        if params.trials > 1 {
            println!("round {round} of {}", params.trials);
        }
        let trial = Trial::run(&params, &r1, &r2).await?;
        if params.trials > 1 {
            trial.summary();
            println!();
        }
        trials.push(trial);
    }

    let client_id = Identity::generate(Kind::Client, "cold-client")?;
    let mut client = attach(&client_id, &r1).await?;
    let stored = |name| {
        matches!(
            redis.query(redis::cmd("EXISTS").arg(route_key(&name))),
            Ok(redis::Value::Int(1))
        )
    };
    let (hist, first) = cold_lookups(&mut client, &r2, stored, params.lookups).await?;
    client.close();
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

    if let Some(last) = trials.last() {
        last.summary();
    }
    ratios(&trials);
    drop(r1);
    drop(r2);
    Ok(())
}
