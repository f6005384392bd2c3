//! `gdp capsule create|info`, `gdp append`, `gdp read` and `gdp tail`.

use std::io::BufRead;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use gdp_certs::Identity;
use gdp_client::{CapsuleFile, CapsuleSpec, Client, VerifiedRecord, Writer};
use serde_json::json;

use crate::cli::{Append, Create, Info, Read, Tail};
use crate::context::{Context, describe_metadata, parse_key, parse_name};
use crate::output::{progress, rate};

/// Records handed to the writer at once while reading standard input.
const STDIN_CHUNK: usize = 1024;

pub(crate) async fn create(ctx: &Context, args: &Create) -> anyhow::Result<()> {
    let server = parse_name(&args.server, "server name")?;
    let mut spec = CapsuleSpec::new(args.label.as_str());
    spec.adcert_validity = args.validity;
    let writers = args
        .writer
        .iter()
        .map(|w| parse_key(w))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let hosting = args
        .host
        .iter()
        .map(|h| parse_name(h, "server name"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let me = ctx.identity()?;
    let client = ctx.connect_session().await?;
    if !writers.is_empty() {
        spec.writers = std::iter::once(me.public_key()).chain(writers).collect();
    }
    spec.hosting = hosting;
    let created = client
        .create_capsule(server, me.secret_key(), spec)
        .await
        .with_context(|| format!("creating a capsule on server {server}"))?;
    let capsule = &created.capsule;
    let key_file = std::path::absolute(&ctx.key_file).unwrap_or_else(|_| ctx.key_file.clone());
    let file = CapsuleFile {
        metadata: capsule.metadata().clone(),
        writer_key: Some(key_file),
        server: Some(server),
        adcert: Some(created.adcert.clone()),
        replication: None,
    };
    let path = match &args.out {
        Some(p) => p.clone(),
        None => CapsuleFile::path_in(&ctx.capsule_dir, &capsule.name()),
    };
    file.save(&path)?;
    client.shutdown().await;
    ctx.out.emit(
        format!("{}\ncapsule file {}", capsule.name(), path.display()),
        json!({"capsule": capsule.name().to_string(), "server": server.to_string(),
            "file": path.display().to_string()}),
    )
}

pub(crate) async fn info(ctx: &Context, args: &Info) -> anyhow::Result<()> {
    let target = ctx.capsule_file(&args.capsule)?;
    let client = ctx.connect_session().await?;
    let (capsule, file) = ctx.capsule(&client, target).await?;
    let latest = capsule.latest().await?;
    let (human, mut value) = describe_metadata(capsule.metadata());
    let tail = latest.as_ref().map_or(0, VerifiedRecord::seqno);
    let mut text = format!("{human}\nrecords  {tail}");
    if let Some(r) = &latest {
        text.push_str(&format!(
            "\nnewest   {} ({})",
            crate::output::format_time(r.timestamp().0),
            r.hash()
        ));
    }
    if let Some(f) = &file
        && let Some(server) = f.server
    {
        text.push_str(&format!("\nserver   {server}"));
        value["server"] = json!(server.to_string());
    }
    value["records"] = json!(tail);
    client.shutdown().await;
    ctx.out.emit(text, value)
}

/// The writer of the capsule `arg`, with the key its capsule file names (or
/// this client's key).
async fn writer(
    ctx: &Context,
    client: &Client,
    target: (gdp_certs::Name, Option<CapsuleFile>),
) -> anyhow::Result<Writer> {
    let (capsule, file) = ctx.capsule(client, target).await?;
    let key = match file.as_ref().and_then(|f| f.writer_key.clone()) {
        Some(path) if path != ctx.key_file => Identity::load(&path)
            .with_context(|| format!("the writer key of capsule {}", capsule.name()))?
            .secret_key()
            .clone(),
        _ => ctx.identity()?.secret_key().clone(),
    };
    if !capsule.metadata().is_writer(&key.public()) {
        bail!("this key is not a writer of capsule {}", capsule.name());
    }
    Ok(capsule.writer(key).await?)
}

pub(crate) async fn append(ctx: &Context, args: &Append) -> anyhow::Result<()> {
    let mut payloads: Vec<Bytes> = args.data.iter().map(|d| Bytes::from(d.clone())).collect();
    for f in &args.file {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        payloads.push(Bytes::from(bytes));
    }
    let use_stdin = args.stdin || payloads.is_empty();
    let target = ctx.capsule_file(&args.capsule)?;
    let client = ctx.connect_session().await?;
    let mut w = writer(ctx, &client, target).await?;
    let first = w.next_seqno();
    let start = Instant::now();
    let mut count = 0u64;
    let bar = progress(
        (!use_stdin).then_some(payloads.len() as u64),
        "appending",
        ctx.out,
    );
    if !payloads.is_empty() {
        for chunk in payloads.chunks(STDIN_CHUNK) {
            count += chunk.len() as u64;
            submit(&mut w, chunk.to_vec(), args.sign_each).await?;
            bar.inc(chunk.len() as u64);
        }
    }
    if use_stdin {
        let mut lines = stdin_chunks();
        while let Some(batch) = lines.recv().await {
            let batch = batch.context("reading standard input")?;
            count += batch.len() as u64;
            bar.inc(batch.len() as u64);
            submit(&mut w, batch, args.sign_each).await?;
        }
    }
    if count == 0 {
        bail!("nothing to append: give data, --file or lines on standard input");
    }
    let last = w.flush().await?;
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    client.shutdown().await;
    ctx.out.emit(
        format!(
            "appended {count} record{} to {} (seqno {first}..={last}) in {:.1} ms, {:.0} records/s",
            if count == 1 { "" } else { "s" },
            w.capsule().name(),
            elapsed.as_secs_f64() * 1e3,
            rate(count, elapsed)
        ),
        json!({"capsule": w.capsule().name().to_string(), "appended": count,
            "first": first, "last": last, "elapsed_ms": elapsed.as_secs_f64() * 1e3}),
    )
}

/// The lines of standard input in chunks, read on a thread of their own
/// (reading blocks).
fn stdin_chunks() -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<Bytes>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut batch = Vec::with_capacity(STDIN_CHUNK);
        for line in stdin.lock().lines() {
            match line {
                Ok(l) => batch.push(Bytes::from(l)),
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            if batch.len() >= STDIN_CHUNK
                && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err()
            {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Ok(batch));
        }
    });
    rx
}

/// Hands `batch` to the writer: one heartbeat for the batch, or one per
/// record with `sign_each`.
async fn submit(w: &mut Writer, batch: Vec<Bytes>, sign_each: bool) -> anyhow::Result<()> {
    if sign_each {
        for p in batch {
            w.submit([p]).await?;
        }
    } else {
        w.submit(batch).await?;
    }
    Ok(())
}

/// `N`, `A..B` or `A..` into an inclusive range (open end: `u64::MAX`).
pub(crate) fn parse_range(text: &str) -> anyhow::Result<(u64, u64)> {
    let bad = || anyhow!("{text:?} is not a seqno or a range such as 5, 3..9 or 10..");
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    let (a, b) = match text.split_once("..") {
        Some((a, "")) => (num(a)?, u64::MAX),
        Some((a, b)) => (num(a)?, num(b.trim_start_matches('='))?),
        None => {
            let n = num(text)?;
            (n, n)
        }
    };
    if a == 0 || a > b {
        return Err(anyhow!(
            "{text:?}: seqnos start at 1 and a range must not end before it starts"
        ));
    }
    Ok((a, b))
}

pub(crate) async fn read(ctx: &Context, args: &Read) -> anyhow::Result<()> {
    let target = ctx.capsule_file(&args.capsule)?;
    let (from, to) = match &args.range {
        Some(r) => parse_range(r)?,
        None => (1, u64::MAX),
    };
    let client = ctx.connect_session().await?;
    let (capsule, _) = ctx.capsule(&client, target).await?;
    if args.latest {
        match capsule.latest().await? {
            Some(r) => ctx.out.record(&r, args.raw)?,
            None => bail!("capsule {} has no records yet", capsule.name()),
        }
        client.shutdown().await;
        return Ok(());
    }
    if from == to {
        let r = capsule.read(from).await?;
        ctx.out.record(&r, args.raw)?;
        client.shutdown().await;
        return Ok(());
    }
    let tail = capsule.tail().await?;
    let to = to.min(tail);
    if from > to {
        client.shutdown().await;
        if tail == 0 {
            bail!("capsule {} has no records yet", capsule.name());
        }
        bail!("no records in that range: the newest is {tail}");
    }
    let bar = progress(Some(to - from + 1), "reading", ctx.out);
    let mut chunks = std::pin::pin!(capsule.read_chunks(from, to));
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        bar.inc(chunk.len() as u64);
        bar.suspend(|| -> anyhow::Result<()> {
            for r in &chunk {
                ctx.out.record(r, args.raw)?;
            }
            Ok(())
        })?;
    }
    bar.finish_and_clear();
    client.shutdown().await;
    Ok(())
}

pub(crate) async fn tail(ctx: &Context, args: &Tail) -> anyhow::Result<()> {
    let target = ctx.capsule_file(&args.capsule)?;
    let client = ctx.connect_session().await?;
    let (capsule, _) = ctx.capsule(&client, target).await?;
    let newest = capsule.tail().await?;
    let from = args
        .from
        .unwrap_or_else(|| newest.saturating_sub(args.lines.saturating_sub(1)).max(1));
    if !args.follow {
        if newest >= from {
            for r in capsule.read_range(from, newest).await? {
                ctx.out.record(&r, args.raw)?;
            }
        }
        client.shutdown().await;
        return Ok(());
    }
    let mut sub = capsule.subscribe(from);
    let mut seen = 0u64;
    let limit = args.count.unwrap_or(u64::MAX);
    while seen < limit {
        let item = tokio::select! {
            item = sub.next() => item,
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for ctrl-c")?;
                break;
            }
        };
        match item {
            Some(Ok(r)) => {
                ctx.out.record(&r, args.raw)?;
                seen += 1;
            }
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    drop(sub);
    // Let the unsubscribe leave before the link closes.
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("5").ok(), Some((5, 5)));
        assert_eq!(parse_range("3..9").ok(), Some((3, 9)));
        assert_eq!(parse_range("3..=9").ok(), Some((3, 9)));
        assert_eq!(parse_range("10..").ok(), Some((10, u64::MAX)));
        assert!(parse_range("0").is_err());
        assert!(parse_range("9..3").is_err());
        assert!(parse_range("x..").is_err());
        assert!(parse_range("").is_err());
    }
}
