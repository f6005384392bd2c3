//! What every command needs: the key file, the router, the capsule files,
//! and parsing names given on the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use gdp_certs::{Identity, Kind, Metadata, Name, PublicKey};
use gdp_client::replicas::majority;
use gdp_client::{Capsule, CapsuleFile, Client, ClientOptions, Replication};

use crate::cli::{Global, Quorums};
use crate::output::Out;

/// The configuration directory under the home directory.
/// `gdp`'s directory under the user's configuration directory.
const APP_DIR: &str = "gdp";
/// The default key file name.
const KEY_FILE: &str = "client.key";
/// The default capsule directory name.
const CAPSULE_DIR: &str = "capsules";
/// Longest a connect may take, whatever `--timeout` says.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The resolved global options.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) key_file: PathBuf,
    pub(crate) capsule_dir: PathBuf,
    router: Option<String>,
    router_name: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) out: Out,
}

/// `$XDG_CONFIG_HOME/gdp`, by default `~/.config/gdp`.
fn config_dir() -> anyhow::Result<PathBuf> {
    use etcetera::BaseStrategy as _;
    let base = etcetera::choose_base_strategy()
        .map_err(|e| anyhow!("no home directory ({e}): give --key and --capsule-dir"))?;
    Ok(base.config_dir().join(APP_DIR))
}

impl Context {
    pub(crate) fn new(g: &Global) -> anyhow::Result<Self> {
        let key_file = match &g.key {
            Some(k) => k.clone(),
            None => config_dir()?.join(KEY_FILE),
        };
        let capsule_dir = match &g.capsule_dir {
            Some(d) => d.clone(),
            None => config_dir()?.join(CAPSULE_DIR),
        };
        Ok(Context {
            key_file,
            capsule_dir,
            router: g.router.clone(),
            router_name: g.router_name.clone(),
            timeout: g.timeout,
            out: Out { json: g.json },
        })
    }

    /// This client's identity, from the key file.
    pub(crate) fn identity(&self) -> anyhow::Result<Identity> {
        if !self.key_file.exists() {
            bail!(
                "no key file at {}: run `gdp keygen` first (or give --key)",
                self.key_file.display()
            );
        }
        let id = Identity::load(&self.key_file)?;
        if !id.metadata().kind().is_endpoint() {
            bail!(
                "{} holds a {} key; a client needs a client key",
                self.key_file.display(),
                id.metadata().kind()
            );
        }
        Ok(id)
    }

    /// The router's address, resolved.
    async fn router_addr(&self) -> anyhow::Result<SocketAddr> {
        let text = self
            .router
            .as_deref()
            .ok_or_else(|| anyhow!("no router: give --router host:port or set GDP_ROUTER"))?;
        if let Ok(addr) = text.parse() {
            return Ok(addr);
        }
        tokio::net::lookup_host(text)
            .await
            .with_context(|| format!("router address {text:?}"))?
            .next()
            .ok_or_else(|| anyhow!("router address {text:?} resolves to nothing"))
    }

    /// Attaches to the router as this client, under the key file's name:
    /// for commands whose peers must know who they talk to (`send`, `recv`).
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        let identity = self.identity()?;
        self.attach(identity).await
    }

    /// Attaches to the router under a fresh name of its own, for commands
    /// that only ask and listen (capsule operations, `ping`).
    ///
    /// A router holds one link per attached name, and a name that attaches
    /// again moves to its new link: two commands attached under one key at
    /// once (a `tail -f` beside an `append`) would take the answers from
    /// each other. A session name per command keeps them apart. What needs
    /// a key (a capsule's owner or writer signature) is still signed with
    /// the key file's key.
    pub(crate) async fn connect_session(&self) -> anyhow::Result<Client> {
        let identity = Identity::generate(Kind::Client, "gdp session")?;
        self.attach(identity).await
    }

    async fn attach(&self, identity: Identity) -> anyhow::Result<Client> {
        let addr = self.router_addr().await?;
        let mut options = ClientOptions::default()
            .with_request_timeout(self.timeout)
            .with_connect_timeout(self.timeout.min(MAX_CONNECT_TIMEOUT));
        if let Some(name) = &self.router_name {
            options = options.with_router(parse_name(name, "router name")?);
        }
        Client::connect(addr, identity, options)
            .await
            .with_context(|| format!("router {addr}"))
    }

    /// The capsule file for `arg` (a path, or a name with a file in the
    /// capsule directory), if there is one, and the capsule's name.
    pub(crate) fn capsule_file(&self, arg: &str) -> anyhow::Result<(Name, Option<CapsuleFile>)> {
        let (name, path) = self.capsule_path(arg)?;
        match path {
            Some(path) => {
                let file = CapsuleFile::load(&path)?;
                Ok((file.name(), Some(file)))
            }
            None => Ok((name, None)),
        }
    }

    /// The capsule's name (as given, or as in its capsule file) and the
    /// path of its capsule file, if there is one.
    pub(crate) fn capsule_path(&self, arg: &str) -> anyhow::Result<(Name, Option<PathBuf>)> {
        let path = Path::new(arg);
        if path.is_file() {
            let file = CapsuleFile::load(path)?;
            return Ok((file.name(), Some(path.to_owned())));
        }
        let name: Name = arg
            .parse()
            .map_err(|e| anyhow!("{arg:?} is neither a capsule file nor a capsule name ({e})"))?;
        let path = CapsuleFile::path_in(&self.capsule_dir, &name);
        Ok((name, path.is_file().then_some(path)))
    }

    /// A handle to the capsule `target` (from [`Context::capsule_file`]):
    /// from its capsule file when there is one, else with its metadata
    /// fetched (and checked against its name). A capsule file with
    /// replicas gives the handle its replication, with `quorums` overriding
    /// the file's; without a file, `-W`/`-R` make the handle ask the
    /// capsule's server for the replica set (verified against the
    /// metadata).
    pub(crate) async fn capsule(
        &self,
        client: &Client,
        target: (Name, Option<CapsuleFile>),
        quorums: &Quorums,
    ) -> anyhow::Result<(Capsule, Option<CapsuleFile>)> {
        let (name, file) = target;
        let capsule = match &file {
            Some(f) => client.capsule(f.metadata.clone())?,
            None => client
                .open(name)
                .await
                .with_context(|| format!("capsule {name}"))?,
        };
        let replication = match file.as_ref().and_then(|f| f.replication.clone()) {
            Some(r) => Some(r),
            None if quorums.any() => client
                .open_replicated(name)
                .await
                .with_context(|| format!("the replicas of capsule {name}"))?
                .replication()
                .cloned(),
            None => None,
        };
        let capsule = match replication {
            Some(r) => capsule.with_replication(with_quorums(r, quorums)?)?,
            None if quorums.any() => bail!(
                "capsule {name} has no replica set (neither in a capsule file here nor on its \
                 server): -W and -R apply to replicated capsules"
            ),
            None => capsule,
        };
        Ok((capsule, file))
    }
}

/// `r` with the quorums given on the command line instead of its own.
pub(crate) fn with_quorums(r: Replication, quorums: &Quorums) -> anyhow::Result<Replication> {
    let w = quorums.write_quorum.unwrap_or(r.write_quorum());
    let q = quorums.read_quorum.unwrap_or(r.read_quorum());
    Ok(r.with_quorums(w, q)?)
}

/// The quorums for `n` replicas: those given, else majorities.
pub(crate) fn quorums_for(n: usize, quorums: &Quorums) -> (usize, usize) {
    let m = majority(n);
    (
        quorums.write_quorum.unwrap_or(m),
        quorums.read_quorum.unwrap_or(m),
    )
}

/// A name given on the command line.
pub(crate) fn parse_name(text: &str, what: &str) -> anyhow::Result<Name> {
    text.trim()
        .parse()
        .map_err(|e| anyhow!("invalid {what} {text:?}: {e}"))
}

/// A public key given on the command line.
pub(crate) fn parse_key(text: &str) -> anyhow::Result<PublicKey> {
    text.trim()
        .parse()
        .map_err(|e| anyhow!("invalid public key {text:?}: {e}"))
}

/// The metadata's fields as text lines and JSON.
pub(crate) fn describe_metadata(md: &Metadata) -> (String, serde_json::Value) {
    let writers: Vec<String> = md.writers().iter().map(ToString::to_string).collect();
    let hosting: Vec<String> = md.hosting().iter().map(ToString::to_string).collect();
    let encryption = match md.encryption() {
        None => "none".to_owned(),
        Some(e) => format!(
            "{} (keyring {})",
            match e.scheme {
                gdp_certs::EncryptionScheme::Convergent => "convergent",
                _ => "xchacha20-poly1305",
            },
            e.keyring
        ),
    };
    let human = format!(
        "capsule  {}\nlabel    {}\nowner    {}\nwriters  {}\ncreated  {}\nhosting  {}\ncipher   {encryption}",
        md.name(),
        md.label(),
        md.key(),
        writers.join(", "),
        crate::output::format_time(md.created().0),
        if hosting.is_empty() {
            "any server".to_owned()
        } else {
            hosting.join(", ")
        }
    );
    let json = serde_json::json!({
        "capsule": md.name().to_string(),
        "kind": md.kind().to_string(),
        "label": md.label(),
        "owner": md.key().to_string(),
        "writers": writers,
        "created_us": md.created().0,
        "hosting": hosting,
        "encryption": md.encryption().map(|e| serde_json::json!({
            "scheme": e.scheme,
            "keyring": e.keyring.to_string(),
        })),
    });
    (human, json)
}

/// The key file kind a client creates.
pub(crate) const CLIENT_KIND: Kind = Kind::Client;
