//! `gdp domain`: trust-domain keys and the certificates that admit routers
//! to a trust domain.
//!
//! A trust domain is a key. Its holder admits a router by signing a
//! [`DomainCert`] for the router's name; the router sends it in its hellos
//! (`gdp-router --domain-cert FILE`, the certificate's binary encoding,
//! exactly what `gdp domain issue` writes), and routers started with
//! `--trusted-domain <the domain's public key>` treat it as a trusted peer.
//!
//! The domain key file is TOML, written with mode 0600:
//!
//! ```text
//! # GDP trust-domain key <public key>. Keep this file secret.
//! kind = "trust-domain"
//! secret_key = "<the key's 32-byte seed, in the text form of names>"
//! ```

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use gdp_certs::cert::{DomainCert, Validity};
use gdp_certs::codec::Encode;
use gdp_certs::{Identity, Kind, Name, SecretKey, Timestamp};
use serde_json::json;

use crate::cli::{DomainIssue, DomainKeygen, DomainShow};
use crate::context::{Context, parse_name};

/// The `kind` line of a domain key file.
const DOMAIN_KIND: &str = "trust-domain";

/// How far back a certificate's validity starts, for routers whose clock is
/// behind.
const BACKDATE: std::time::Duration = std::time::Duration::from_secs(300);

/// Writes `text` to `path`, readable by its owner only.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a domain key file.
pub(crate) fn load_domain_key(path: &Path) -> anyhow::Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut kind = None;
    let mut seed = None;
    let mut unexpected = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((key, value)) if key.trim() == "kind" => {
                kind = Some(value.trim().trim_matches('"').to_owned());
            }
            Some((key, value)) if key.trim() == "secret_key" => {
                seed = Some(value.trim().trim_matches('"').to_owned());
            }
            _ => unexpected = unexpected.or(Some(line.to_owned())),
        }
    }
    if kind.as_deref() != Some(DOMAIN_KIND) {
        bail!(
            "{} is not a trust-domain key file (made by `gdp domain keygen`)",
            path.display()
        );
    }
    if let Some(line) = unexpected {
        bail!("{}: unexpected line {line:?}", path.display());
    }
    let seed = seed.ok_or_else(|| anyhow!("{}: no secret_key", path.display()))?;
    let seed = parse_name(&seed, "secret key")?;
    Ok(SecretKey::from_seed(seed.as_bytes()))
}

/// `gdp domain keygen`: a new trust-domain key.
pub(crate) fn keygen(ctx: &Context, args: &DomainKeygen) -> anyhow::Result<()> {
    if args.out.exists() {
        if !args.force {
            bail!(
                "{} exists; use --force to replace it (certificates it issued stop counting once routers trust the new key instead)",
                args.out.display()
            );
        }
        std::fs::remove_file(&args.out)
            .with_context(|| format!("replacing {}", args.out.display()))?;
    }
    let key = SecretKey::generate();
    let public = key.public();
    let text = format!(
        "# GDP trust-domain key {public}. Keep this file secret.\nkind = \"{DOMAIN_KIND}\"\nsecret_key = \"{}\"\n",
        Name::from_bytes(key.to_seed())
    );
    write_secret(&args.out, &text)?;
    ctx.out.emit(
        format!(
            "{public}\ndomain key written to {}\nrouters trust it with: gdp-router --trusted-domain {public}",
            args.out.display()
        ),
        json!({"public_key": public.to_string(), "key_file": args.out.display().to_string()}),
    )
}

/// A router given as its name, or as its key file (whose name is derived
/// from the metadata in it).
fn router_name(arg: &str) -> anyhow::Result<Name> {
    let path = Path::new(arg);
    if path.is_file() {
        let id = Identity::load(path).with_context(|| format!("reading {}", path.display()))?;
        if id.metadata().kind() != Kind::Router {
            bail!(
                "{} holds a {} key, not a router's",
                path.display(),
                id.metadata().kind()
            );
        }
        return Ok(id.name());
    }
    parse_name(arg, "router name (or router key file)")
}

/// `gdp domain issue`: a domain certificate admitting one router.
pub(crate) fn issue(ctx: &Context, args: &DomainIssue) -> anyhow::Result<()> {
    let key = load_domain_key(&args.domain_key)?;
    let router = router_name(&args.router)?;
    let now = Timestamp::now();
    let validity = Validity::new(
        now.saturating_sub(BACKDATE),
        now.saturating_add(args.valid_for),
    );
    let cert = DomainCert::issue(&key, router, validity);
    std::fs::write(&args.out, cert.to_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    let domain = key.public();
    ctx.out.emit(
        format!(
            "domain certificate for router {router} written to {}\nstart the router with: gdp-router --domain-cert {} --trusted-domain {domain}",
            args.out.display(),
            args.out.display()
        ),
        json!({
            "type": "domain-cert",
            "router": router.to_string(),
            "domain": domain.to_string(),
            "not_before_us": validity.not_before.0,
            "not_after_us": validity.not_after.0,
            "file": args.out.display().to_string(),
        }),
    )
}

/// `gdp domain show`: a domain key file's public key.
pub(crate) fn show(ctx: &Context, args: &DomainShow) -> anyhow::Result<()> {
    let public = load_domain_key(&args.domain_key)?.public();
    ctx.out.emit(
        format!("{public}"),
        json!({"public_key": public.to_string()}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_key_file_reads_back_and_is_private() {
        let dir = std::env::temp_dir().join(format!("gdp-domain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("domain.key");
        let _ = std::fs::remove_file(&path);
        let key = SecretKey::from_seed(&[5; 32]);
        let text = format!(
            "# comment\nkind = \"{DOMAIN_KIND}\"\nsecret_key = \"{}\"\n",
            Name::from_bytes(key.to_seed())
        );
        write_secret(&path, &text).expect("written");
        assert_eq!(
            load_domain_key(&path).expect("reads").public(),
            key.public()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(write_secret(&path, &text).is_err(), "never overwritten");
        std::fs::write(&path, "kind = \"client\"\n").expect("rewritten");
        assert!(load_domain_key(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
