//! `gdp send`, `gdp recv` and `gdp ping`.

use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::cli::{Ping, Recv, Send};
use crate::context::{Context, parse_name};
use crate::output::display_payload;

pub(crate) async fn send(ctx: &Context, args: &Send) -> anyhow::Result<()> {
    let dst = parse_name(&args.dst, "destination name")?;
    let client = ctx.connect().await?;
    let payload = bytes::Bytes::from(args.data.clone());
    let seq = if args.unreliable {
        client.send_unreliable(dst, payload).await?
    } else {
        client.send(dst, payload).await?
    };
    // A graceful shutdown waits until the router has the datagram.
    client.shutdown().await;
    ctx.out.emit(
        format!("sent {} bytes to {dst}", args.data.len()),
        json!({"dst": dst.to_string(), "seq": seq, "bytes": args.data.len()}),
    )
}

pub(crate) async fn recv(ctx: &Context, args: &Recv) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    // Say who we are, so a sender can be pointed here (people only).
    if !ctx.out.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("receiving as {}", client.name());
    }
    let wait = args.wait.unwrap_or(Duration::MAX);
    let deadline = tokio::time::Instant::now()
        .checked_add(wait)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400));
    let mut got = 0u64;
    while got < args.count {
        let d = tokio::select! {
            d = client.recv() => d?,
            () = tokio::time::sleep_until(deadline) => {
                client.shutdown().await;
                bail!("received {got} of {} datagrams before the wait ran out", args.count);
            }
            r = tokio::signal::ctrl_c() => {
                r?;
                break;
            }
        };
        got += 1;
        ctx.out.emit(
            format!("{}: {}", d.src, display_payload(&d.payload)),
            json!({"src": d.src.to_string(), "seq": d.seq, "reliable": d.reliable,
                "payload": std::str::from_utf8(&d.payload).ok(),
                "payload_hex": data_encoding::HEXLOWER.encode(&d.payload)}),
        )?;
    }
    client.shutdown().await;
    Ok(())
}

pub(crate) async fn ping(ctx: &Context, args: &Ping) -> anyhow::Result<()> {
    let dst = parse_name(&args.dst, "name to ping")?;
    let client = ctx.connect_session().await?;
    let mut rtts = Vec::new();
    let mut last_err = None;
    for i in 0..args.count {
        if i > 0 {
            tokio::time::sleep(args.interval).await;
        }
        match client.ping(dst).await {
            Ok(rtt) => {
                ctx.out.emit(
                    format!(
                        "pong from {dst}: seq={i} time={:.3} ms",
                        rtt.as_secs_f64() * 1e3
                    ),
                    json!({"dst": dst.to_string(), "seq": i, "rtt_ms": rtt.as_secs_f64() * 1e3}),
                )?;
                rtts.push(rtt);
            }
            Err(e) => {
                ctx.out.emit(
                    format!("no pong from {dst}: seq={i}: {e}"),
                    json!({"dst": dst.to_string(), "seq": i, "error": e.to_string()}),
                )?;
                last_err = Some(e);
            }
        }
    }
    client.shutdown().await;
    if rtts.is_empty() {
        match last_err {
            Some(e) => return Err(anyhow::Error::new(e).context(format!("ping {dst}"))),
            None => bail!("no ping sent"),
        }
    }
    let ms: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ms.iter().copied().fold(0.0, f64::max);
    let avg = ms.iter().sum::<f64>() / ms.len() as f64;
    ctx.out.emit(
        format!(
            "{} of {} answered, rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms",
            rtts.len(),
            args.count
        ),
        json!({"dst": dst.to_string(), "sent": args.count, "answered": rtts.len(),
            "min_ms": min, "avg_ms": avg, "max_ms": max}),
    )
}
