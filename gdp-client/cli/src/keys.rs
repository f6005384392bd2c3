//! `gdp keygen`, `gdp whoami` and `gdp cert`.

use anyhow::{Context as _, anyhow, bail};
use gdp_certs::cert::{AdCert, DomainCert, RouteRecord, RtCert, Validity};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Timestamp};
use gdp_client::capsule_file::{decode_base32, encode_base32};
use serde_json::json;

use crate::cli::{Issue, KeyShow, Keygen, Show};
use crate::context::{CLIENT_KIND, Context, parse_name};
use crate::output::format_time;

/// How far back a certificate's validity starts, for peers whose clock is
/// behind.
const BACKDATE: std::time::Duration = std::time::Duration::from_secs(300);

pub(crate) fn keygen(ctx: &Context, args: &Keygen) -> anyhow::Result<()> {
    let path = &ctx.key_file;
    if path.exists() && !args.force {
        bail!(
            "{} exists; use --force to replace it (the old identity is lost)",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let id = Identity::generate(CLIENT_KIND, args.label.as_str())?;
    id.save(path)?;
    ctx.out.emit(
        format!("{}\nkey written to {}", id.name(), path.display()),
        json!({"name": id.name().to_string(), "key_file": path.display().to_string()}),
    )
}

pub(crate) fn whoami(ctx: &Context) -> anyhow::Result<()> {
    show_identity(ctx, &ctx.identity()?, &ctx.key_file.display().to_string())
}

/// Prints what an identity's key file says publicly.
fn show_identity(ctx: &Context, id: &Identity, file: &str) -> anyhow::Result<()> {
    let md = id.metadata();
    ctx.out.emit(
        format!(
            "name     {}\nkind     {}\nlabel    {}\nkey      {}\ncreated  {}\nkey file {file}",
            id.name(),
            md.kind(),
            md.label(),
            id.public_key(),
            format_time(md.created().0),
        ),
        json!({
            "name": id.name().to_string(),
            "kind": md.kind().to_string(),
            "label": md.label(),
            "public_key": id.public_key().to_string(),
            "created_us": md.created().0,
            "key_file": file,
        }),
    )
}

/// `gdp key show FILE`: what any key file says publicly, the secret never.
/// A router's or server's key is an identity file like a client's; a
/// trust domain's is its own format.
pub(crate) fn key_show(ctx: &Context, args: &KeyShow) -> anyhow::Result<()> {
    let path = &args.file;
    let file = path.display().to_string();
    match Identity::load(path) {
        Ok(id) => show_identity(ctx, &id, &file),
        Err(identity_error) => match crate::domain::load_domain_key(path) {
            Ok(domain) => {
                let public = domain.public();
                ctx.out.emit(
                    format!("kind     trust-domain\nkey      {public}\nkey file {file}"),
                    json!({
                        "kind": "trust-domain",
                        "public_key": public.to_string(),
                        "key_file": file,
                    }),
                )
            }
            Err(_) => Err(anyhow!("{file}: {identity_error}")),
        },
    }
}

/// Writes a certificate to `out` (binary), or prints it as base32.
fn deliver(
    ctx: &Context,
    bytes: &[u8],
    out: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
            ctx.out.emit(
                format!("{what} written to {}", path.display()),
                json!({"type": what, "file": path.display().to_string()}),
            )
        }
        None => {
            let text = encode_base32(bytes);
            ctx.out.emit(&text, json!({"type": what, "base32": text}))
        }
    }
}

pub(crate) fn issue(ctx: &Context, args: &Issue) -> anyhow::Result<()> {
    let id = ctx.identity()?;
    let now = Timestamp::now();
    match args {
        Issue::Adcert(a) => {
            let (name, file) = ctx.capsule_file(&a.capsule)?;
            let file = file.ok_or_else(|| {
                anyhow!(
                    "no capsule file for {name}: only the owner, who has it, can issue an AdCert"
                )
            })?;
            if file.metadata.key() != &id.public_key() {
                bail!("this key does not own capsule {name}");
            }
            let server = parse_name(&a.server, "server name")?;
            if !file.metadata.may_host(&server) {
                bail!("capsule {name} does not allow server {server} to host it");
            }
            let validity =
                Validity::new(now.saturating_sub(BACKDATE), now.saturating_add(a.validity));
            let cert = AdCert::issue(id.secret_key(), name, server, validity);
            deliver(ctx, &cert.to_bytes(), a.out.as_deref(), "adcert")
        }
        Issue::Rtcert(r) => {
            let router = parse_name(&r.router, "router name")?;
            let validity =
                Validity::new(now.saturating_sub(BACKDATE), now.saturating_add(r.validity));
            let cert = RtCert::issue_by(&id, router, validity);
            deliver(ctx, &cert.to_bytes(), r.out.as_deref(), "rtcert")
        }
    }
}

/// The bytes of a certificate given as a file (binary or base32) or as
/// base32 text.
fn cert_bytes(arg: &str) -> anyhow::Result<Vec<u8>> {
    let path = std::path::Path::new(arg);
    if path.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Ok(decoded) = decode_base32(text)
        {
            return Ok(decoded);
        }
        return Ok(bytes);
    }
    decode_base32(arg)
        .map_err(|e| anyhow!("{arg:?} is neither a file nor a certificate in base32 ({e})"))
}

fn validity_text(v: Validity) -> String {
    format!(
        "{} .. {}",
        format_time(v.not_before.0),
        format_time(v.not_after.0)
    )
}

pub(crate) fn show(ctx: &Context, args: &Show) -> anyhow::Result<()> {
    let bytes = cert_bytes(&args.cert)?;
    let now = Timestamp::now();
    let kind = bytes.get(1).copied().unwrap_or(0);
    match kind {
        1 => {
            let cert = AdCert::decode(bytes).context("not a valid AdCert")?;
            let check = match &args.capsule {
                Some(c) => {
                    let (_, file) = ctx.capsule_file(c)?;
                    let file = file.ok_or_else(|| {
                        anyhow!("no capsule file for {c}: its metadata is needed")
                    })?;
                    match cert.verify(&file.metadata, now) {
                        Ok(_) => "valid: signed by the capsule's owner, in force now".to_owned(),
                        Err(e) => format!("INVALID: {e}"),
                    }
                }
                None => "signature not checked (give --capsule)".to_owned(),
            };
            ctx.out.emit(
                format!(
                    "AdCert\ncapsule  {}\nserver   {}\nvalid    {}\ncheck    {check}",
                    cert.capsule(),
                    cert.server(),
                    validity_text(cert.validity())
                ),
                json!({"type": "adcert", "capsule": cert.capsule().to_string(),
                    "server": cert.server().to_string(),
                    "not_before_us": cert.validity().not_before.0,
                    "not_after_us": cert.validity().not_after.0, "check": check}),
            )
        }
        2 => {
            let cert = RtCert::decode(bytes).context("not a valid RtCert")?;
            ctx.out.emit(
                format!(
                    "RtCert\nendpoint {}\nrouter   {}\nvalid    {}",
                    cert.endpoint(),
                    cert.router(),
                    validity_text(cert.validity())
                ),
                json!({"type": "rtcert", "endpoint": cert.endpoint().to_string(),
                    "router": cert.router().to_string(),
                    "not_before_us": cert.validity().not_before.0,
                    "not_after_us": cert.validity().not_after.0}),
            )
        }
        3 => {
            let rec = RouteRecord::decode(bytes).context("not a valid route record")?;
            let text = format!("{rec:?}");
            ctx.out.emit(
                format!("route record\n{text}"),
                json!({"type": "route-record", "debug": text}),
            )
        }
        4 => {
            let cert = DomainCert::decode(bytes).context("not a valid domain certificate")?;
            let check = match cert.check_self_consistent(now) {
                Ok(()) => "valid: signed by the domain key, in force now".to_owned(),
                Err(e) => format!("INVALID: {e}"),
            };
            ctx.out.emit(
                format!(
                    "domain certificate\ndomain   {}\nrouter   {}\nvalid    {}\ncheck    {check}",
                    cert.domain(),
                    cert.router(),
                    validity_text(cert.validity())
                ),
                json!({"type": "domain-cert", "domain": cert.domain().to_string(),
                    "router": cert.router().to_string(),
                    "not_before_us": cert.validity().not_before.0,
                    "not_after_us": cert.validity().not_after.0, "check": check}),
            )
        }
        other => bail!("not a GDP certificate (type byte {other})"),
    }
}
