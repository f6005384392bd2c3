//! `gdp-capsule-server`: a standalone GDP capsule server.
//!
//! ```text
//! gdp-capsule-server --data-dir /var/lib/gdp-capsules --router 127.0.0.1:7474
//! gdp-capsule-server --config /etc/gdp/capsule-server.toml --admin 127.0.0.1:7476
//! ```
//!
//! Settings come from the TOML file given with `--config` (see
//! `gdp_capsule_server::config`), then the command-line flags, which win.
//! The key file is generated (mode 0600) on first start. At start the
//! server prints one line on stdout, `gdp-capsule-server name=… data_dir=…
//! key=… key_created=… admin=<addr|none>`, for people and scripts (with
//! the port really bound when `--admin` asked for port 0). It serves its
//! admin API (`gdp_capsule_server::admin`: Prometheus metrics, health,
//! JSON state) on `--admin ADDR`, by default on 127.0.0.1:7476; when that
//! default is taken (another server on this host) it warns and goes on
//! without one. `--admin off` turns it off. SIGTERM or ctrl-c
//! stops the server gracefully: no new requests, every write in flight made
//! durable and answered, the link closed; the exit status is then 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use gdp_capsule_server::Observer;
use gdp_capsule_server::config::{AdminListen, DEFAULT_ADMIN, ServerConfig};
use gdp_certs::Name;
use metrics_exporter_prometheus::PrometheusBuilder;

/// The command line. Every flag overrides the same setting of the file.
#[derive(Debug, Parser)]
#[command(name = "gdp-capsule-server", version, about = "The GDP capsule server")]
struct Cli {
    /// TOML config file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: the store, and the key file unless --key-file says
    /// otherwise.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's key file, generated (mode 0600) if missing.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Label for a newly generated key.
    #[arg(long)]
    label: Option<String>,
    /// The router's UDP address.
    #[arg(long, value_name = "ADDR")]
    router: Option<SocketAddr>,
    /// The router's name. Without it the first router that answers is
    /// trusted, then required for the life of the process.
    #[arg(long, value_name = "NAME")]
    router_name: Option<Name>,
    /// A tracing filter such as `info` or `gdp_capsule_server=debug`
    /// (default: `info`, or RUST_LOG).
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    /// Serve the admin API (/metrics, /healthz, /readyz, JSON under /v1)
    /// at ADDR, or `off`. Default 127.0.0.1:7476: loopback only.
    #[arg(long, visible_alias = "metrics", value_name = "ADDR|off")]
    admin: Option<AdminListen>,
}

impl Cli {
    /// The file's settings (or the defaults) with the flags applied.
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::load(path)?,
            None => ServerConfig::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(file) = &self.key_file {
            config.key_file = Some(file.clone());
        }
        if let Some(label) = &self.label {
            config.label = label.clone();
        }
        if let Some(addr) = self.router {
            config.router.address = Some(addr);
        }
        if let Some(name) = self.router_name {
            config.router.name = Some(name);
        }
        if let Some(log) = &self.log {
            config.log = Some(log.clone());
        }
        if let Some(admin) = self.admin {
            config.admin = Some(admin);
        }
        config.validate()?;
        Ok(config)
    }
}

/// Binds the admin listener: where configured (an error if that fails),
/// else [`DEFAULT_ADMIN`] (without one, with a warning, if that is taken).
fn bind_admin(config: &ServerConfig) -> anyhow::Result<Option<std::net::TcpListener>> {
    let (addr, configured) = match config.admin {
        Some(AdminListen::Off) => return Ok(None),
        Some(AdminListen::At(addr)) => (addr, true),
        None => (DEFAULT_ADMIN, false),
    };
    match std::net::TcpListener::bind(addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if !configured && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(
                %addr,
                "the default admin address is taken (another capsule server on this host?): \
                 no admin API; set --admin to serve it elsewhere"
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| {
            format!("binding the admin API on {addr} (set --admin to another address, or `off`)")
        }),
    }
}

/// Completes on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config()?;
    let filter = match &config.log {
        Some(f) => tracing_subscriber::EnvFilter::try_new(f)
            .with_context(|| format!("invalid log filter {f:?}"))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The identity first, so the start line can name the server (scripts
    // read it); `run` loads the same file.
    let key_file = config.key_file();
    let (identity, created) =
        gdp_certs::Identity::load_or_generate(&key_file, gdp_certs::Kind::Server, &config.label)
            .with_context(|| format!("loading the key file {}", key_file.display()))?;
    // Bound before the start line, which says where it really listens.
    let admin = bind_admin(&config)?;
    let admin_addr = match &admin {
        Some(l) => l.local_addr()?.to_string(),
        None => "none".to_owned(),
    };
    println!(
        "gdp-capsule-server name={} data_dir={} key={} key_created={created} admin={admin_addr}",
        identity.name(),
        config.data_dir.display(),
        key_file.display(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let observer = Arc::new(Observer::new());
        if let Some(listener) = admin {
            let prometheus = PrometheusBuilder::new()
                .install_recorder()
                .context("installing the metrics recorder")?;
            gdp_capsule_server::metrics::describe();
            gdp_capsule_server::admin::serve(listener, observer.clone(), prometheus, &config)
                .context("starting the admin API")?;
        }
        gdp_capsule_server::run_observed(config, shutdown_signal(), observer).await?;
        anyhow::Ok(())
    })?;
    Ok(())
}
