//! What each attack of the router's threat model costs everyone else: for
//! each, a `gdp-router` process (with a real `redis-server`, and a
//! `gdp-capsule-server` for the attacks on capsules) and the unrelated
//! pair pinging through it every 10 ms; a baseline of T seconds with the
//! pair alone, T seconds of the attack (from `gdp_testkit::hostile`), and
//! T seconds after it.
//!
//! ```text
//! cargo build --release --bins
//! cargo bench -p gdp-router --bench attacks                  # every attack, T = 10 s
//! cargo bench -p gdp-router --bench attacks -- lookups       # attacks whose name contains "lookups"
//! cargo bench -p gdp-router --bench attacks -- --secs 3      # T = 3 s
//! ATTACK_TRACE=1 cargo bench -p gdp-router --bench attacks -- memory
//! ```
//!
//! With `ATTACK_TRACE` set it also prints, for each attack, the router's
//! drop and limit counters after the attack and every ping of the attack
//! phase slower than 2 ms, with its time into the phase.
//!
//! The attacks: `unproven` (1), `rogue` (2), `stalled` (3), `advertise`
//! (4), `creates` (5), `nonwriter` (6), `subscriptions` (7), `memory` (8),
//! `lookups` (9), `directory` (10), `stale` (11), `edge` (12). The capsule
//! server attacks are skipped, with a note, when `gdp-capsule-server` is
//! not built in the same profile.
//!
//! The pair runs on a tokio runtime of its own, on its own thread, as it
//! would on another host: its pings never wait behind the attacker's tasks
//! for a worker of the bench's runtime. It still shares the machine's two
//! cores with the attacker, the router and the other processes.
//!
//! It prints a markdown table (for `BENCHMARKS.md`): the pair's ping
//! p50/p99 before, during and after the attack and the pings it lost; the
//! router's peak RSS (`VmHWM`); the attacker's bytes sent against the
//! router's CPU seconds (utime + stime) during the attack; and whether the
//! targets hold: p99 during the attack at most twice the baseline's, peak
//! RSS at most 256 MiB.

#[allow(
    unused_imports,
    reason = "the helpers of the process tests, this benchmark using a part"
)]
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/hostile/scene.rs"]
mod scene;

use std::time::Duration;

use bytes::Bytes;
use gdp_router::directory::route_key;
use gdp_testkit::bin::find_workspace_bin;
use gdp_testkit::hostile::flood::{FLOOD_PAYLOAD, SMALL_PAYLOAD};
use gdp_testkit::hostile::{
    PingLog, PingPair, Sent, Stop, capsule, directory, drain_incoming, flood, links,
};
use hdrhistogram::Histogram;

use scene::{MAX_RSS, PING_INTERVAL, Scene, StaleScene};

/// The default length of each phase, in seconds.
const DEFAULT_SECS: u64 = 10;

/// The attacks, by name, with whether they need a capsule server.
const ATTACKS: [(&str, bool); 12] = [
    ("unproven", false),
    ("rogue", true),
    ("stalled", false),
    ("advertise", false),
    ("creates", true),
    ("nonwriter", true),
    ("subscriptions", true),
    ("memory", false),
    ("lookups", false),
    ("directory", false),
    ("stale", false),
    ("edge", true),
];

/// One attack's figures.
struct Row {
    name: &'static str,
    before: PingLog,
    during: PingLog,
    after: PingLog,
    peak_rss: u64,
    sent: Sent,
    cpu: f64,
}

fn main() {
    let mut filter = None;
    let mut secs = DEFAULT_SECS;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // What `cargo bench` passes to every bench.
            "--bench" => {}
            "--secs" => {
                secs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--secs takes a number of seconds");
            }
            a if a.starts_with('-') => {}
            a => filter = Some(a.to_owned()),
        }
    }
    let phase = Duration::from_secs(secs);
    let server_built = find_workspace_bin("gdp-capsule-server").is_ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let pair_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pair")
        .enable_all()
        .build()
        .expect("a runtime for the pair");
    let mut rows = Vec::new();
    for (name, needs_server) in ATTACKS {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        if needs_server && !server_built {
            eprintln!(
                "{name}: skipped, gdp-capsule-server is not built (cargo build --release --bins)"
            );
            continue;
        }
        eprintln!("{name}: {secs} s before, during and after");
        let pair = pair_runtime.handle().clone();
        rows.push(runtime.block_on(run(name, needs_server, phase, pair)));
    }
    print_table(&rows, secs);
}

/// Runs attack `name` between a baseline and an after phase, with the
/// unrelated pair on `pair_runtime`.
async fn run(
    name: &'static str,
    needs_server: bool,
    phase: Duration,
    pair_runtime: tokio::runtime::Handle,
) -> Row {
    let scene = Scene::start(name, needs_server).await;
    let prepared = prepare(name, &scene).await;
    let pair = pair_runtime
        .spawn(PingPair::start(scene.addr(), scene.name(), PING_INTERVAL))
        .await
        .expect("the pair starts");
    let t0 = pair.elapsed();
    tokio::time::sleep(phase).await;
    let t1 = pair.elapsed();
    let cpu_before = scene.router_stats().cpu_seconds;
    let sent = attack(name, &scene, prepared, Stop::after(phase)).await;
    let cpu = scene.router_stats().cpu_seconds - cpu_before;
    let trace = std::env::var_os("ATTACK_TRACE").is_some();
    if trace {
        let mut counters: Vec<_> = scene
            .router
            .metrics()
            .into_iter()
            .filter(|(k, v)| {
                *v > 0.0
                    && ["dropped", "penalt", "limited"]
                        .iter()
                        .any(|w| k.contains(w))
            })
            .collect();
        counters.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in counters {
            eprintln!("  {k} = {v}");
        }
    }
    let t2 = pair.elapsed();
    tokio::time::sleep(phase).await;
    let t3 = pair.elapsed();
    let peak_rss = scene.router_stats().peak_rss;
    let log = pair.finish().await;
    if trace {
        for s in &log.samples {
            if let Some(rtt) = s.rtt
                && rtt > Duration::from_millis(2)
                && s.at >= t1
                && s.at < t2
            {
                eprintln!("  slow ping at +{:?}: {:?}", s.at - t1, rtt);
            }
        }
    }
    Row {
        name,
        before: log.between(t0, t1),
        during: log.between(t1, t2),
        after: log.between(t2, t3),
        peak_rss,
        sent,
        cpu,
    }
}

/// What an attack needs set up before the baseline.
enum Prepared {
    Nothing,
    Capsules(Vec<gdp_testkit::Writer>, Box<capsule::CapsuleClient>),
    Stale(Box<StaleScene>),
}

async fn prepare(name: &str, scene: &Scene) -> Prepared {
    match name {
        "rogue" | "nonwriter" | "subscriptions" => {
            let mut owner = scene.client("owner").await;
            let count = if name == "subscriptions" { 72 } else { 1 };
            let mut writers = scene.create_capsules(&mut owner, count).await;
            if name == "rogue" {
                let w = &mut writers[0];
                let append = w.append_payloads((0..64).map(|_| Bytes::from(vec![7u8; 1024])));
                owner.call(w.capsule(), append, scene::WAIT).await;
            }
            Prepared::Capsules(writers, Box::new(owner))
        }
        "stale" => Prepared::Stale(Box::new(StaleScene::start(scene).await)),
        _ => Prepared::Nothing,
    }
}

/// Runs attack `name` until `stop`; what the attacker sent.
async fn attack(name: &str, scene: &Scene, prepared: Prepared, stop: Stop) -> Sent {
    let (addr, router) = (scene.addr(), scene.name());
    match (name, prepared) {
        ("unproven", _) => links::unproven_links(addr, router, 1_000, stop).await,
        ("rogue", Prepared::Capsules(writers, owner)) => {
            let victim = scene.client("victim").await;
            let sent =
                links::rogue_router(addr, router, victim.name(), writers[0].capsule(), stop).await;
            drop(owner);
            sent
        }
        ("stalled", _) => flood::stalled_receiver(addr, router, FLOOD_PAYLOAD, stop).await,
        ("advertise", _) => flood::advertise_flood(addr, router, stop).await,
        ("creates", _) => {
            capsule::create_flood(addr, router, scene.server(), stop)
                .await
                .sent
        }
        ("nonwriter", Prepared::Capsules(writers, _owner)) => {
            let w = &writers[0];
            capsule::foreign_appends(addr, router, w.capsule(), w.owner.public(), stop)
                .await
                .sent
        }
        ("subscriptions", Prepared::Capsules(writers, _owner)) => {
            let capsules: Vec<_> = writers.iter().map(|w| w.capsule()).collect();
            capsule::subscription_hoard(addr, router, &capsules, stop)
                .await
                .sent
        }
        ("memory", _) => flood::stalled_receiver(addr, router, SMALL_PAYLOAD, stop).await,
        ("lookups", _) => flood::lookup_storm(addr, router, 100_000, stop).await,
        ("directory", _) => directory_attack(scene, stop).await,
        ("stale", Prepared::Stale(stale)) => {
            // PDUs to b for the whole phase, resolved against the stale
            // and the fresh record; b reads them.
            let StaleScene { b, b_rx, routers } = *stale;
            let reader = drain_incoming(b_rx);
            let sent = flood::send_to_names(addr, router, vec![b.name()], stop).await;
            drop(routers);
            reader.abort();
            sent
        }
        ("edge", _) => {
            capsule::small_order_heartbeats(addr, router, scene.server(), stop)
                .await
                .sent
        }
        (other, _) => panic!("no attack {other}"),
    }
}

/// Attack 10: junk under the router's name, its record altered, then
/// deleted, then a dial storm through throwaway records for the rest of
/// the phase.
async fn directory_attack(scene: &Scene, stop: Stop) -> Sent {
    let mut redis = scene.redis.connection().expect("redis");
    let key = route_key(&scene.name());
    let mut sent = directory::junk_fields(&mut redis, &key, 256).expect("redis");
    directory::alter_field(&mut redis, &key, scene.name()).expect("redis");
    directory::delete_key(&mut redis, &key).expect("redis");
    let (names, written) = directory::dial_storm_records(&mut redis, route_key, 64).expect("redis");
    sent.add(written);
    sent.add(flood::send_to_names(scene.addr(), scene.name(), names, stop).await);
    sent
}

/// p50 and p99 of a phase's round trips, in milliseconds.
fn percentiles(log: &PingLog) -> (f64, f64) {
    // Microseconds, up to a minute (far beyond the pings' timeout).
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for rtt in log.rtts() {
        h.saturating_record(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
    }
    if h.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let ms = |q| h.value_at_quantile(q) as f64 / 1000.0;
    (ms(0.5), ms(0.99))
}

fn print_table(rows: &[Row], secs: u64) {
    println!();
    println!("Each phase {secs} s; pings every 10 ms; p50/p99 in ms.");
    println!();
    println!(
        "| attack | before p50/p99 | during p50/p99 | after p50/p99 | pings lost | peak RSS (MiB) | attacker sent (MiB) | router CPU (s) | p99 ≤ 2× | RSS ≤ 256 MiB |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let (b50, b99) = percentiles(&r.before);
        let (d50, d99) = percentiles(&r.during);
        let (a50, a99) = percentiles(&r.after);
        let lost = r.before.lost() + r.during.lost() + r.after.lost();
        let p99_holds = d99 <= 2.0 * b99 && r.during.lost() == 0;
        let rss_holds = r.peak_rss <= MAX_RSS;
        println!(
            "| {} | {b50:.2}/{b99:.2} | {d50:.2}/{d99:.2} | {a50:.2}/{a99:.2} | {lost} | {:.0} | {:.1} | {:.2} | {} | {} |",
            r.name,
            r.peak_rss as f64 / f64::from(1 << 20),
            r.sent.bytes as f64 / f64::from(1 << 20),
            r.cpu,
            if p99_holds { "yes" } else { "no" },
            if rss_holds { "yes" } else { "no" },
        );
    }
}
