//! `gdp readers add|remove|list`: who may read an encrypted capsule; and
//! `gdp capsule reencrypt`, for shutting removed readers out of the history.

use anyhow::{Context as _, bail};
use gdp_certs::{Identity, PublicKey};
use serde_json::json;

use crate::cli::{ReadersChange, ReadersCommand, ReadersList, Reencrypt};
use crate::context::{Context, parse_key, parse_name};
use gdp_client::CapsuleSpec;

use crate::capsules::{save_in_capsule_dir, served_file};

/// A reader named by its public key, or by a key file (whose public key is
/// taken; the secret is not kept).
pub(crate) fn reader_key(text: &str) -> anyhow::Result<PublicKey> {
    let path = std::path::Path::new(text);
    if path.is_file() {
        let id = Identity::load(path)
            .with_context(|| format!("reading the reader's key file {}", path.display()))?;
        return Ok(id.public_key());
    }
    parse_key(text)
}

pub(crate) async fn run(ctx: &Context, command: &ReadersCommand) -> anyhow::Result<()> {
    match command {
        ReadersCommand::Add(a) => change(ctx, a, true).await,
        ReadersCommand::Remove(a) => change(ctx, a, false).await,
        ReadersCommand::List(a) => list(ctx, a).await,
    }
}

async fn change(ctx: &Context, args: &ReadersChange, add: bool) -> anyhow::Result<()> {
    let readers = args
        .readers
        .iter()
        .map(|r| reader_key(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = ctx.capsule_file(&args.capsule)?;
    let client = ctx.connect_session().await?;
    let (capsule, _) = ctx.capsule(&client, target, &Default::default()).await?;
    if !capsule.metadata().is_encrypted() {
        bail!(
            "capsule {} is not encrypted: it has no readers to manage",
            capsule.name()
        );
    }
    let me = ctx.identity()?;
    let (human, value) = if add {
        let added = capsule.add_readers(me.secret_key(), &readers).await?;
        (
            format!(
                "added {added} reader{} to {}",
                plural(added),
                capsule.name()
            ),
            json!({"capsule": capsule.name().to_string(), "added": added}),
        )
    } else {
        let epoch = capsule.remove_readers(me.secret_key(), &readers).await?;
        (
            format!(
                "removed {} reader{} from {}: records appended from now on use key epoch {epoch}; \
                 removed readers can still read the records before it",
                readers.len(),
                plural(readers.len()),
                capsule.name()
            ),
            json!({"capsule": capsule.name().to_string(), "removed": readers.len(), "epoch": epoch}),
        )
    };
    client.shutdown().await;
    ctx.out.emit(human, value)
}

async fn list(ctx: &Context, args: &ReadersList) -> anyhow::Result<()> {
    let target = ctx.capsule_file(&args.capsule)?;
    let client = ctx.connect_session().await?;
    let (capsule, _) = ctx.capsule(&client, target, &Default::default()).await?;
    if !capsule.metadata().is_encrypted() {
        bail!(
            "capsule {} is not encrypted: anyone may read it",
            capsule.name()
        );
    }
    let epoch = capsule.epoch().await?;
    let readers = capsule.readers().await?;
    client.shutdown().await;
    let keys: Vec<String> = readers.iter().map(ToString::to_string).collect();
    let owner = capsule.metadata().key();
    let human = std::iter::once(format!(
        "epoch {epoch}, {} reader{}",
        keys.len(),
        plural(keys.len())
    ))
    .chain(readers.iter().map(|r| {
        let role = if r == owner {
            "  (owner)"
        } else if capsule.metadata().is_writer(r) {
            "  (writer)"
        } else {
            ""
        };
        format!("{r}{role}")
    }))
    .collect::<Vec<_>>()
    .join("\n");
    ctx.out.emit(
        human,
        json!({"capsule": capsule.name().to_string(), "epoch": epoch, "readers": keys}),
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `gdp capsule reencrypt`: the history of an encrypted capsule copied into
/// a new one, sealed under a fresh key for the current readers.
pub(crate) async fn reencrypt(ctx: &Context, args: &Reencrypt) -> anyhow::Result<()> {
    let server = parse_name(&args.server, "server name")?;
    let target = ctx.capsule_file(&args.capsule)?;
    let client = ctx.connect_session().await?;
    let (old, _) = ctx.capsule(&client, target, &Default::default()).await?;
    let Some(encryption) = old.metadata().encryption().copied() else {
        bail!(
            "capsule {} is not encrypted: there is nothing to re-encrypt",
            old.name()
        );
    };
    let me = ctx.identity()?;
    let mut spec = CapsuleSpec::new(args.label.as_deref().unwrap_or(old.metadata().label()))
        .encrypted(encryption.scheme);
    spec.writers = old.metadata().writers().to_vec();
    if !spec.writers.contains(&me.public_key()) {
        spec.writers.insert(0, me.public_key());
    }
    spec.readers = old.readers().await?;
    let created = client
        .create_encrypted(server, me.secret_key(), spec)
        .await
        .with_context(|| format!("creating the new capsule on server {server}"))?;
    let copied = old
        .reencrypt_into(me.secret_key(), &created.capsule.capsule)
        .await
        .context("copying the records")?;
    client.shutdown().await;
    let key_file = std::path::absolute(&ctx.key_file).unwrap_or_else(|_| ctx.key_file.clone());
    save_in_capsule_dir(ctx, &served_file(&created.keyring, server, &key_file))?;
    let (new, path) = save_in_capsule_dir(ctx, &served_file(&created.capsule, server, &key_file))?;
    ctx.out.emit(
        format!(
            "{new}\ncapsule file {}\ncopied {copied} record{} from {} under a fresh key for its current readers; retire the old capsule",
            path.display(),
            plural(copied as usize),
            old.name()
        ),
        json!({"capsule": new.to_string(), "from": old.name().to_string(), "copied": copied,
            "file": path.display().to_string()}),
    )
}
