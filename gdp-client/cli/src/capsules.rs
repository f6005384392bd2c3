//! `gdp capsule create|info|replicas|forks`, `gdp append`, `gdp read` and
//! `gdp tail`.

use std::io::BufRead;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use gdp_certs::{Identity, Name};
use gdp_client::replicas::check_quorums;
use std::path::{Path, PathBuf};

use gdp_client::{
    Capsule, CapsuleFile, CapsuleSpec, Client, Created, Decryptor, EncryptionScheme, Replication,
    SealedWriter, VerifiedRecord, Writer,
};
use serde_json::json;

use crate::cli::{Append, Create, Forks, Info, Quorums, Read, Replicas, Tail};
use crate::context::{Context, describe_metadata, parse_key, parse_name, quorums_for};
use crate::output::{progress, rate};

/// Records handed to the writer at once while reading standard input.
const STDIN_CHUNK: usize = 1024;

pub(crate) async fn create(ctx: &Context, args: &Create) -> anyhow::Result<()> {
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
    if !writers.is_empty() {
        spec.writers = std::iter::once(me.public_key()).chain(writers).collect();
    }
    spec.hosting = hosting;
    if args.encrypted {
        spec = spec.encrypted(if args.convergent {
            EncryptionScheme::Convergent
        } else {
            EncryptionScheme::Epoch
        });
        for r in &args.reader {
            spec = spec.with_reader(crate::readers::reader_key(r)?);
        }
    }
    let key_file = std::path::absolute(&ctx.key_file).unwrap_or_else(|_| ctx.key_file.clone());
    let (file, mut human, mut value) = match &args.server {
        Some(server) if args.encrypted => {
            let server = parse_name(server, "server name")?;
            let client = ctx.connect_session().await?;
            let created = client
                .create_encrypted(server, me.secret_key(), spec)
                .await
                .with_context(|| format!("creating an encrypted capsule on server {server}"))?;
            client.shutdown().await;
            let (keyring_name, _) =
                save_in_capsule_dir(ctx, &served_file(&created.keyring, server, &key_file))?;
            let file = served_file(&created.capsule, server, &key_file);
            (
                file,
                format!("\nencrypted, keyring {keyring_name}"),
                json!({"server": server.to_string(), "encrypted": true,
                    "keyring": keyring_name.to_string()}),
            )
        }
        Some(server) => {
            if args.quorums.any() {
                bail!("-W and -R apply to capsules created with --replicas");
            }
            let server = parse_name(server, "server name")?;
            let client = ctx.connect_session().await?;
            let created = client
                .create_capsule(server, me.secret_key(), spec)
                .await
                .with_context(|| format!("creating a capsule on server {server}"))?;
            client.shutdown().await;
            let file = served_file(&created, server, &key_file);
            (file, String::new(), json!({"server": server.to_string()}))
        }
        None => create_replicated(ctx, &args.replicas, &args.quorums, &me, spec, key_file).await?,
    };
    let name = file.name();
    let path = match &args.out {
        Some(p) => p.clone(),
        None => CapsuleFile::path_in(&ctx.capsule_dir, &name),
    };
    file.save(&path)?;
    human = format!("{name}\ncapsule file {}{human}", path.display());
    value["capsule"] = json!(name.to_string());
    value["file"] = json!(path.display().to_string());
    ctx.out.emit(human, value)
}

/// Creates the capsule of `spec` on the replicas `names`: its capsule
/// file, and what to print about the replicas.
async fn create_replicated(
    ctx: &Context,
    names: &[String],
    quorums: &Quorums,
    me: &Identity,
    spec: CapsuleSpec,
    key_file: std::path::PathBuf,
) -> anyhow::Result<(CapsuleFile, String, serde_json::Value)> {
    let servers = parse_servers(names)?;
    let (w, r) = quorums_for(servers.len(), quorums);
    check_quorums(servers.len(), w, r)?;
    let client = ctx.connect_session().await?;
    let (created, keyring) = if spec.encryption.is_some() {
        let both = client
            .create_encrypted_replicated(&servers, me.secret_key(), spec)
            .await
            .context("creating a replicated encrypted capsule")?;
        (both.capsule, Some(both.keyring))
    } else {
        let created = client
            .create_replicated(&servers, me.secret_key(), spec)
            .await
            .context("creating a replicated capsule")?;
        (created, None)
    };
    client.shutdown().await;
    let replication = Replication::new(created.set, w, r)?;
    let (mut human, mut value) = describe_replication(&replication);
    if let Some(keyring) = keyring {
        let file = CapsuleFile {
            metadata: keyring.capsule.metadata().clone(),
            writer_key: Some(key_file.clone()),
            server: None,
            adcert: None,
            replication: Some(Replication::new(keyring.set, w, r)?),
        };
        let (name, _) = save_in_capsule_dir(ctx, &file)?;
        human.push_str(&format!("\nencrypted, keyring {name}"));
        value["encrypted"] = json!(true);
        value["keyring"] = json!(name.to_string());
    }
    let file = CapsuleFile {
        metadata: created.capsule.metadata().clone(),
        writer_key: Some(key_file),
        server: None,
        adcert: None,
        replication: Some(replication),
    };
    Ok((file, format!("\n{human}"), value))
}

/// The capsule file of `created`, on `server`, written with `key_file`.
pub(crate) fn served_file(created: &Created, server: Name, key_file: &Path) -> CapsuleFile {
    CapsuleFile {
        metadata: created.capsule.metadata().clone(),
        writer_key: Some(key_file.to_owned()),
        server: Some(server),
        adcert: Some(created.adcert.clone()),
        replication: None,
    }
}

/// Saves `file` in the capsule directory; its capsule's name and path.
pub(crate) fn save_in_capsule_dir(
    ctx: &Context,
    file: &CapsuleFile,
) -> anyhow::Result<(Name, PathBuf)> {
    let name = file.name();
    let path = CapsuleFile::path_in(&ctx.capsule_dir, &name);
    file.save(&path)?;
    Ok((name, path))
}

/// Server names given as a list, sorted, without duplicates.
fn parse_servers(names: &[String]) -> anyhow::Result<Vec<Name>> {
    let mut servers = names
        .iter()
        .filter(|n| !n.trim().is_empty())
        .map(|n| parse_name(n, "server name"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    servers.sort_unstable();
    servers.dedup();
    if servers.is_empty() {
        bail!("no replicas: give at least one server name");
    }
    Ok(servers)
}

/// The replicas and quorums as text lines and JSON fields.
fn describe_replication(r: &Replication) -> (String, serde_json::Value) {
    let servers: Vec<String> = r.servers().iter().map(ToString::to_string).collect();
    let human = format!(
        "replicas {} (W={}, R={}, set version {})",
        servers.join(", "),
        r.write_quorum(),
        r.read_quorum(),
        r.set().version()
    );
    let value = json!({"replicas": servers, "write_quorum": r.write_quorum(),
        "read_quorum": r.read_quorum(), "replica_set_version": r.set().version()});
    (human, value)
}

pub(crate) async fn info(ctx: &Context, args: &Info) -> anyhow::Result<()> {
    let target = ctx.capsule_file(&args.capsule)?;
    let client = ctx.connect_session().await?;
    let (capsule, file) = ctx.capsule(&client, target, &args.quorums).await?;
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
    if let Some(r) = capsule.replication() {
        let (human, fields) = describe_replication(r);
        text.push_str(&format!("\n{human}"));
        if let (Some(v), Some(f)) = (value.as_object_mut(), fields.as_object()) {
            v.extend(f.clone());
        }
    }
    value["records"] = json!(tail);
    client.shutdown().await;
    ctx.out.emit(text, value)
}

/// A writer of plaintext or of sealed records, as the capsule is.
enum AnyWriter {
    Plain(Box<Writer>),
    Sealed(Box<SealedWriter>),
}

impl AnyWriter {
    fn capsule(&self) -> &Capsule {
        match self {
            AnyWriter::Plain(w) => w.capsule(),
            AnyWriter::Sealed(w) => w.capsule(),
        }
    }

    fn next_seqno(&self) -> u64 {
        match self {
            AnyWriter::Plain(w) => w.next_seqno(),
            AnyWriter::Sealed(w) => w.next_seqno(),
        }
    }

    async fn submit(&mut self, batch: Vec<Bytes>) -> Result<u64, gdp_client::ClientError> {
        match self {
            AnyWriter::Plain(w) => w.submit(batch).await,
            AnyWriter::Sealed(w) => w.submit(batch).await,
        }
    }

    async fn flush(&mut self) -> Result<u64, gdp_client::ClientError> {
        match self {
            AnyWriter::Plain(w) => w.flush().await,
            AnyWriter::Sealed(w) => w.flush().await,
        }
    }
}

/// The writer of the capsule `arg`, with the key its capsule file names (or
/// this client's key): sealing its records when the capsule is encrypted.
async fn writer(
    ctx: &Context,
    client: &Client,
    target: (Name, Option<CapsuleFile>),
    quorums: &Quorums,
) -> anyhow::Result<AnyWriter> {
    let (capsule, file) = ctx.capsule(client, target, quorums).await?;
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
    if capsule.metadata().is_encrypted() {
        return Ok(AnyWriter::Sealed(Box::new(
            capsule.sealed_writer(key).await?,
        )));
    }
    Ok(AnyWriter::Plain(Box::new(capsule.writer(key).await?)))
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
    let mut w = writer(ctx, &client, target, &args.quorums).await?;
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
async fn submit(w: &mut AnyWriter, batch: Vec<Bytes>, sign_each: bool) -> anyhow::Result<()> {
    if sign_each {
        for p in batch {
            w.submit(vec![p]).await?;
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
    let (capsule, _) = ctx.capsule(&client, target, &args.quorums).await?;
    let mut keys = decryptor(ctx, &capsule).await?;
    if args.latest {
        match capsule.latest().await? {
            Some(r) => print_record(ctx, &mut keys, &r, args.raw).await?,
            None => bail!("capsule {} has no records yet", capsule.name()),
        }
        client.shutdown().await;
        return Ok(());
    }
    if from == to {
        let r = capsule.read(from).await?;
        print_record(ctx, &mut keys, &r, args.raw).await?;
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
    if let Some(keys) = keys {
        // Each chunk is decrypted on the task that verified it.
        let mut view = keys.into_reader(&capsule)?;
        let mut chunks = std::pin::pin!(view.read_chunks(from, to));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            bar.inc(chunk.len() as u64);
            bar.suspend(|| -> anyhow::Result<()> {
                for o in &chunk {
                    ctx.out
                        .record_with(&o.record, Some(&o.plaintext), args.raw)?;
                }
                Ok(())
            })?;
        }
    } else {
        let mut chunks = std::pin::pin!(capsule.read_chunks(from, to));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            bar.inc(chunk.len() as u64);
            bar.suspend(|| -> anyhow::Result<()> {
                for r in &chunk {
                    ctx.out.record_with(r, None, args.raw)?;
                }
                Ok(())
            })?;
        }
    }
    bar.finish_and_clear();
    client.shutdown().await;
    Ok(())
}

pub(crate) async fn tail(ctx: &Context, args: &Tail) -> anyhow::Result<()> {
    let target = ctx.capsule_file(&args.capsule)?;
    let client = ctx.connect_session().await?;
    let (capsule, _) = ctx.capsule(&client, target, &args.quorums).await?;
    let mut keys = decryptor(ctx, &capsule).await?;
    let newest = capsule.tail().await?;
    let from = args
        .from
        .unwrap_or_else(|| newest.saturating_sub(args.lines.saturating_sub(1)).max(1));
    if !args.follow {
        if newest >= from {
            for r in capsule.read_range(from, newest).await? {
                print_record(ctx, &mut keys, &r, args.raw).await?;
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
                print_record(ctx, &mut keys, &r, args.raw).await?;
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

/// What this client can decrypt of `capsule`, if it is encrypted.
async fn decryptor(ctx: &Context, capsule: &Capsule) -> anyhow::Result<Option<Decryptor>> {
    if !capsule.metadata().is_encrypted() {
        return Ok(None);
    }
    let me = ctx.identity()?;
    Ok(Some(capsule.decryptor(me.secret_key()).await?))
}

/// The payload of `r` as its readers see it: decrypted when `keys` is
/// given.
async fn open(keys: &mut Option<Decryptor>, r: &VerifiedRecord) -> anyhow::Result<Option<Bytes>> {
    match keys {
        None => Ok(None),
        Some(d) => Ok(Some(d.open(r).await?)),
    }
}

/// Prints `r`, decrypted when `keys` is given.
async fn print_record(
    ctx: &Context,
    keys: &mut Option<Decryptor>,
    r: &VerifiedRecord,
    raw: bool,
) -> anyhow::Result<()> {
    let plain = open(keys, r).await?;
    ctx.out.record_with(r, plain.as_ref(), raw)
}

pub(crate) async fn replicas(ctx: &Context, args: &Replicas) -> anyhow::Result<()> {
    if args.set.is_empty() {
        if args.quorums.any() {
            bail!("-W and -R apply with --set (to read with other quorums, give them to read)");
        }
        return show_replicas(ctx, &args.capsule).await;
    }
    let (name, path) = ctx.capsule_path(&args.capsule)?;
    let Some(path) = path else {
        bail!("no capsule file for {name}: --set rewrites it, so it needs one");
    };
    let mut file = CapsuleFile::load(&path)?;
    let me = ctx.identity()?;
    if me.public_key() != *file.metadata.key() {
        bail!("this key does not own capsule {name}: only its owner may place it");
    }
    let servers = parse_servers(&args.set)?;
    // The old quorums when the new set can meet them, else majorities.
    let n = servers.len();
    let old = file
        .replication
        .as_ref()
        .map_or((0, 0), |r| (r.write_quorum(), r.read_quorum()));
    let fits = |q: usize| (1..=n).contains(&q).then_some(q);
    let quorums = Quorums {
        write_quorum: args.quorums.write_quorum.or(fits(old.0)),
        read_quorum: args.quorums.read_quorum.or(fits(old.1)),
    };
    let (w, r) = quorums_for(n, &quorums);
    check_quorums(n, w, r)?;
    let client = ctx.connect_session().await?;
    let mut capsule = client.capsule(file.metadata.clone())?;
    if let Some(r) = file.replication.clone() {
        capsule = capsule.with_replication(r)?;
    }
    let set = client
        .set_replicas(&capsule, me.secret_key(), &servers)
        .await
        .with_context(|| format!("placing capsule {name}"))?;
    client.shutdown().await;
    let replication = Replication::new(set, w, r)?;
    let (human, mut value) = describe_replication(&replication);
    file.replication = Some(replication);
    file.save(&path)?;
    value["capsule"] = json!(name.to_string());
    value["file"] = json!(path.display().to_string());
    ctx.out.emit(
        format!("{name}\n{human}\ncapsule file {}", path.display()),
        value,
    )
}

/// Prints the replica set each replica of the capsule holds.
async fn show_replicas(ctx: &Context, arg: &str) -> anyhow::Result<()> {
    let (name, file) = ctx.capsule_file(arg)?;
    let Some(replication) = file.as_ref().and_then(|f| f.replication.clone()) else {
        bail!("capsule {name} has no replicas in a capsule file here");
    };
    let client = ctx.connect_session().await?;
    let (capsule, _) = ctx
        .capsule(&client, (name, file), &Quorums::default())
        .await?;
    let (human, _) = describe_replication(&replication);
    let mut lines = vec![format!("capsule  {name}\nfile     {human}")];
    let mut values = Vec::new();
    for &server in replication.servers() {
        let held = client.fetch_replicas(name, server).await;
        let (text, value) = describe_held(&capsule, server, held);
        lines.push(text);
        values.push(value);
    }
    client.shutdown().await;
    if ctx.out.json {
        for v in values {
            ctx.out.emit("", v)?;
        }
        Ok(())
    } else {
        ctx.out.emit(lines.join("\n"), json!(null))
    }
}

/// One replica's answer to GetReplicas, verified against the metadata.
fn describe_held(
    capsule: &Capsule,
    server: Name,
    held: Result<Option<gdp_client::ReplicaSet>, gdp_client::ClientError>,
) -> (String, serde_json::Value) {
    let s = server.to_string();
    match held {
        Ok(Some(set)) => match set.verify(capsule.metadata()) {
            Ok(_) => {
                let servers: Vec<String> = set.servers().iter().map(Name::short).collect();
                (
                    format!("{s}  version {}  {}", set.version(), servers.join(", ")),
                    json!({"server": s, "version": set.version(),
                        "replicas": set.servers().iter().map(ToString::to_string).collect::<Vec<_>>()}),
                )
            }
            Err(e) => (
                format!("{s}  a set that does not verify: {e}"),
                json!({"server": s, "error": format!("does not verify: {e}")}),
            ),
        },
        Ok(None) => (
            format!("{s}  no replica set"),
            json!({"server": s, "version": null}),
        ),
        Err(e) => (
            format!("{s}  {e}"),
            json!({"server": s, "error": e.to_string()}),
        ),
    }
}

pub(crate) async fn forks(ctx: &Context, args: &Forks) -> anyhow::Result<()> {
    let target = ctx.capsule_file(&args.capsule)?;
    let client = ctx.connect_session().await?;
    let (capsule, _) = ctx.capsule(&client, target, &Quorums::default()).await?;
    let evidence = capsule.forks().await?;
    for ev in &evidence {
        let fork = ev.record.hash();
        // The record served at that seqno, where it can be read.
        let served = match capsule.read(ev.seqno()).await {
            Ok(r) if r.hash() != fork => Some(r.hash()),
            _ => None,
        };
        let served_text = served.map_or_else(|| "unknown".to_owned(), |h| h.to_string());
        ctx.out.emit(
            format!("{:>8}  fork {fork}  served {served_text}", ev.seqno()),
            json!({"capsule": capsule.name().to_string(), "seqno": ev.seqno(),
                "fork_hash": fork.to_string(), "served_hash": served.map(|h| h.to_string())}),
        )?;
    }
    client.shutdown().await;
    if !evidence.is_empty() {
        bail!(
            "capsule {} was forked: {} verified fork{}",
            capsule.name(),
            evidence.len(),
            if evidence.len() == 1 { "" } else { "s" }
        );
    }
    if !ctx.out.json {
        ctx.out
            .emit(format!("no forks of {}", capsule.name()), json!(null))?;
    }
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

    #[test]
    fn server_lists_parse() {
        let a = Name::from_bytes([1; 32]).to_string();
        let b = Name::from_bytes([2; 32]).to_string();
        let list = [b.clone(), a.clone(), b.clone(), " ".to_owned()];
        let servers = parse_servers(&list).expect("parses");
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].to_string(), a);
        assert!(parse_servers(&[]).is_err());
        assert!(parse_servers(&["nope".to_owned()]).is_err());
    }
}
