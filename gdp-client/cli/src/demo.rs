//! `gdp demo`: a whole GDP in one process, on embedded defaults.
//!
//! ```text
//!   writer client ── R1 ─┐                  ┌─ R3 ── reader client (subscribed)
//!                        └── R2 ── capsule server (embedded, temporary store)
//!             R1, R2, R3 share one in-memory directory; links are QUIC on loopback
//! ```
//!
//! The writer creates a capsule on the server (routed R1 -> R2 by the
//! server's name), appends records one at a time and then pipelined in
//! batches, reads them back with proofs, while the reader at R3 follows the
//! capsule from its first record. Every step is timed and printed; the
//! network is shut down and its files removed at the end. The network is
//! [`gdp_client::local::LocalGdp`].

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use gdp_client::CapsuleSpec;
use gdp_client::local::LocalGdp;
use serde_json::json;

use crate::cli::Demo;
use crate::context::Context;
use crate::output::{Out, rate};

/// How long the whole demo may take before it gives up.
const DEMO_TIMEOUT: Duration = Duration::from_secs(120);

/// Prints a step in text mode, or one JSON object per step.
fn step(out: Out, text: String, value: serde_json::Value) -> anyhow::Result<()> {
    out.emit(text, value)
}

/// Percentile `p` (0..=100) of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

pub(crate) async fn run(ctx: &Context, args: &Demo) -> anyhow::Result<()> {
    if args.records == 0 && args.single == 0 {
        bail!("nothing to do: give --single or --records above 0");
    }
    match tokio::time::timeout(DEMO_TIMEOUT, demo(ctx.out, args)).await {
        Ok(r) => r,
        Err(_) => bail!("the demo did not finish within {DEMO_TIMEOUT:?}"),
    }
}

async fn demo(out: Out, args: &Demo) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let gdp = LocalGdp::start(3).await?;
    let names: Vec<_> = (0..3).filter_map(|i| gdp.router_name(i)).collect();
    for i in 0..gdp.router_count() {
        let (Some(name), Some(addr)) = (gdp.router_name(i), gdp.router_addr(i)) else {
            continue;
        };
        step(
            out,
            format!("router R{} {name} on {addr}", i + 1),
            json!({"step": "router", "index": i + 1, "name": name.to_string(), "addr": addr.to_string()}),
        )?;
    }
    let server = gdp.server_name();
    step(
        out,
        format!(
            "capsule server {server} attached to R{}, store in {}",
            gdp.server_router() + 1,
            gdp.data_dir().display()
        ),
        json!({"step": "server", "name": server.to_string(), "data_dir": gdp.data_dir().display().to_string()}),
    )?;

    let (writer_client, writer_id) = gdp.client(0, "demo-writer").await?;
    let (reader_client, reader_id) = gdp.client(2, "demo-reader").await?;
    step(
        out,
        format!(
            "writer {} at R1, reader {} at R3",
            writer_id.name(),
            reader_id.name()
        ),
        json!({"step": "clients", "writer": writer_id.name().to_string(), "reader": reader_id.name().to_string()}),
    )?;

    // Create: the server's name resolves through the directory, R1 -> R2.
    let t = Instant::now();
    let created = writer_client
        .create_capsule(server, writer_id.secret_key(), CapsuleSpec::new("demo"))
        .await
        .map_err(|e| anyhow!(e).context("creating the demo capsule"))?;
    let capsule = created.capsule;
    step(
        out,
        format!(
            "created capsule {} in {:.1} ms",
            capsule.name(),
            t.elapsed().as_secs_f64() * 1e3
        ),
        json!({"step": "create", "capsule": capsule.name().to_string(), "ms": t.elapsed().as_secs_f64() * 1e3}),
    )?;

    // The reader follows the capsule from R3 before anything is written.
    let reader_capsule = reader_client.open(capsule.name()).await?;
    let total = args.single + args.records;
    let follower = tokio::spawn(async move {
        let mut sub = reader_capsule.subscribe(1);
        let start = Instant::now();
        let mut got = 0u64;
        while got < total {
            match sub.next().await {
                Some(Ok(r)) if r.seqno() == got + 1 => got += 1,
                Some(Ok(r)) => {
                    return Err(anyhow!("subscription skipped to {} after {got}", r.seqno()));
                }
                Some(Err(e)) => return Err(anyhow!(e)),
                None => return Err(anyhow!("subscription ended after {got} records")),
            }
        }
        Ok::<_, anyhow::Error>((got, start.elapsed()))
    });

    let payload = Bytes::from(vec![b'x'; args.size]);
    let mut writer = capsule.writer(writer_id.secret_key().clone()).await?;
    let mut lat = Vec::with_capacity(usize::try_from(args.single).unwrap_or(0));
    for _ in 0..args.single {
        let t = Instant::now();
        writer.append(payload.clone()).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    if args.single > 0 {
        step(
            out,
            format!(
                "{} single appends (one heartbeat each, R1 -> R2, durable): p50 {:.2} ms, p99 {:.2} ms",
                args.single,
                percentile(&lat, 50),
                percentile(&lat, 99)
            ),
            json!({"step": "append-single", "records": args.single,
                "p50_ms": percentile(&lat, 50), "p99_ms": percentile(&lat, 99)}),
        )?;
    }

    let t = Instant::now();
    if args.records > 0 {
        let payloads = (0..args.records).map(|_| payload.clone());
        writer.append_all(payloads).await?;
        let d = t.elapsed();
        step(
            out,
            format!(
                "{} pipelined appends in batches of {} (one heartbeat per batch): {:.0} records/s, {:.1} MB/s",
                args.records,
                capsule.client().options().batch_records,
                rate(args.records, d),
                rate(args.records * args.size as u64, d) / 1e6
            ),
            json!({"step": "append-pipelined", "records": args.records, "seconds": d.as_secs_f64(),
                "records_per_s": rate(args.records, d)}),
        )?;
    }

    let t = Instant::now();
    let back = capsule.read_range(1, total).await?;
    let d = t.elapsed();
    if back.len() as u64 != total || back.iter().any(|r| r.payload() != &payload) {
        bail!("read back {} records, not the {total} written", back.len());
    }
    let one = capsule.read(total.div_ceil(2)).await?;
    step(
        out,
        format!(
            "read back {total} records with proofs, every one verified: {:.0} records/s; record {} proved by the heartbeat at {}",
            rate(total, d),
            one.seqno(),
            one.heartbeat().seqno()
        ),
        json!({"step": "read", "records": total, "records_per_s": rate(total, d)}),
    )?;

    let (got, d) = follower
        .await
        .map_err(|e| anyhow!("the reader task failed: {e}"))??;
    step(
        out,
        format!(
            "reader at R3 received all {got} records in order, verified, no gap or duplicate ({:.1} s after subscribing)",
            d.as_secs_f64()
        ),
        json!({"step": "subscribe", "records": got, "seconds": d.as_secs_f64()}),
    )?;

    let mut pings = Vec::new();
    for (what, dst) in [("R3", names[2]), ("the reader", reader_id.name())] {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            best = best.min(writer_client.ping(dst).await?);
        }
        pings.push(json!({"to": what, "best_ms": best.as_secs_f64() * 1e3}));
        step(
            out,
            format!(
                "ping from the writer to {what}: best of 5 {:.3} ms",
                best.as_secs_f64() * 1e3
            ),
            json!({"step": "ping", "to": what, "best_ms": best.as_secs_f64() * 1e3}),
        )?;
    }

    writer_client.shutdown().await;
    reader_client.shutdown().await;
    gdp.shutdown().await?;
    step(
        out,
        format!(
            "done in {:.1} s; everything shut down",
            t0.elapsed().as_secs_f64()
        ),
        json!({"step": "done", "seconds": t0.elapsed().as_secs_f64(), "pings": pings}),
    )
}
