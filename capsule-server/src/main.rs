//! `gdp-capsule-server`: a standalone GDP capsule server.
//!
//! ```text
//! gdp-capsule-server --data-dir /var/lib/gdp-capsules --router 127.0.0.1:7474
//! gdp-capsule-server --config /etc/gdp/capsule-server.toml --admin 127.0.0.1:7476
//! ```
//!
//! Settings come from the TOML file given with `--config` (see
//! `gdp_capsule_server::config`), then the environment, then the
//! command-line flags: a flag wins over its environment variable
//! (`GDP_CAPSULE_SERVER_ROUTER` for `--router`, `RUST_LOG` for `--log`),
//! which wins over the file, which wins over the default.
//! `gdp-capsule-server --check-config` loads and checks all of it, prints
//! the settings in force as a config file and exits: 0 when the
//! configuration is valid, 2 with the reason when it is not.
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

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory as _, Parser};
use gdp_capsule_server::Observer;
use gdp_capsule_server::config::{AdminListen, DEFAULT_ADMIN, ServerConfig};
use gdp_certs::Name;
use metrics_exporter_prometheus::PrometheusBuilder;

/// The command line. Every flag overrides the same setting of the file, and
/// so does its environment variable when the flag is not given:
/// `GDP_CAPSULE_SERVER_` and the flag's name in capitals with `-` as `_`
/// (`GDP_CAPSULE_SERVER_ROUTER` for `--router`), and `RUST_LOG` for
/// `--log`. `--check-config` is an action and has no variable.
#[derive(Debug, Parser)]
#[command(name = "gdp-capsule-server", version, about = "The GDP capsule server")]
struct Cli {
    /// TOML config file.
    #[arg(short, long, value_name = "FILE", env = "GDP_CAPSULE_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: the store, and the key file unless --key-file says
    /// otherwise.
    #[arg(long, value_name = "DIR", env = "GDP_CAPSULE_SERVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The server's key file, generated (mode 0600) if missing.
    #[arg(long, value_name = "FILE", env = "GDP_CAPSULE_SERVER_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Label for a newly generated key.
    #[arg(long, env = "GDP_CAPSULE_SERVER_LABEL")]
    label: Option<String>,
    /// The router's UDP address.
    #[arg(long, value_name = "ADDR", env = "GDP_CAPSULE_SERVER_ROUTER")]
    router: Option<SocketAddr>,
    /// The router's name. Without it the first router that answers is
    /// trusted, then required for the life of the process.
    #[arg(long, value_name = "NAME", env = "GDP_CAPSULE_SERVER_ROUTER_NAME")]
    router_name: Option<Name>,
    /// A tracing filter such as `info` or `gdp_capsule_server=debug`
    /// (default: the file's `log`, else `info`).
    #[arg(long, value_name = "FILTER", env = "RUST_LOG")]
    log: Option<String>,
    /// Serve the admin API (/metrics, /healthz, /readyz, JSON under /v1)
    /// at ADDR, or `off`. Default 127.0.0.1:7476: loopback only.
    #[arg(
        long,
        visible_alias = "metrics",
        value_name = "ADDR|off",
        env = "GDP_CAPSULE_SERVER_ADMIN"
    )]
    admin: Option<AdminListen>,
    /// Load and check the configuration (file, environment and flags),
    /// print the settings in force, and exit: 0 when it is valid, 2 when it
    /// is not. Starts nothing and writes nothing.
    #[arg(long)]
    check_config: bool,
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

    /// The names of the variables in this process's environment that
    /// stand for flags (`RUST_LOG` included), sorted; not their values.
    fn environment_in_use() -> Vec<String> {
        let mut names: Vec<String> = Cli::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .filter(|name| std::env::var_os(name).is_some())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// What `--check-config` says about the key file: the server's name when
/// it exists. A key file that exists but cannot be used is an error.
fn key_status(config: &ServerConfig) -> anyhow::Result<String> {
    let path = config.key_file();
    if !path.exists() {
        return Ok(format!(
            "{} does not exist yet: a new key is generated at first start",
            path.display()
        ));
    }
    let id = gdp_certs::Identity::load(&path)
        .with_context(|| format!("the key file {}", path.display()))?;
    let kind = id.metadata().kind();
    if kind != gdp_certs::Kind::Server {
        anyhow::bail!(
            "the key file {} holds a {kind} identity, not a capsule server's",
            path.display()
        );
    }
    Ok(format!("{} (server name {})", path.display(), id.name()))
}

/// `--check-config`: prints the settings in force, or fails.
fn check_config(cli: &Cli, config: &ServerConfig) -> anyhow::Result<()> {
    let key = key_status(config)?;
    let file = cli
        .config
        .as_ref()
        .map_or_else(|| "none".to_owned(), |p| p.display().to_string());
    let env = Cli::environment_in_use();
    let env = if env.is_empty() {
        "none".to_owned()
    } else {
        env.join(", ")
    };
    let mut resolved = config.clone();
    resolved.log = Some(config.log.clone().unwrap_or_else(|| DEFAULT_LOG.to_owned()));
    resolved.key_file = Some(config.key_file());
    let text = resolved.to_toml()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# gdp-capsule-server --check-config: the configuration is valid."
    )?;
    writeln!(out, "# config file: {file}")?;
    writeln!(out, "# environment: {env}")?;
    writeln!(out, "# key file: {key}")?;
    if config.admin.is_none() {
        writeln!(
            out,
            "# admin: not set, so {DEFAULT_ADMIN}, or no admin API if another server holds that address"
        )?;
    }
    if config.router.name.is_none() {
        writeln!(
            out,
            "# router.name: not set, so the first router that answers is trusted, then pinned"
        )?;
    }
    writeln!(
        out,
        "# The settings in force (flag > environment > config file > default):"
    )?;
    write!(out, "{text}")?;
    out.flush()?;
    Ok(())
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

/// The log filter when neither `--log`, `RUST_LOG` nor the file sets one.
const DEFAULT_LOG: &str = "info";

/// The configuration and its log filter, checked.
fn load(cli: &Cli) -> anyhow::Result<(ServerConfig, tracing_subscriber::EnvFilter)> {
    let config = cli.config()?;
    let log = config.log.as_deref().unwrap_or(DEFAULT_LOG);
    let filter = tracing_subscriber::EnvFilter::try_new(log)
        .with_context(|| format!("invalid log filter {log:?}"))?;
    Ok((config, filter))
}

/// Exits with status 2 on a configuration error (as `gdp-router` does),
/// 1 when the server fails once started.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let loaded = load(&cli).and_then(|(config, filter)| {
        if cli.check_config {
            check_config(&cli, &config)?;
        }
        Ok((config, filter))
    });
    let (config, filter) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("gdp-capsule-server: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if cli.check_config {
        return std::process::ExitCode::SUCCESS;
    }
    match serve(config, filter) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gdp-capsule-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Starts the server and runs it until SIGTERM or ctrl-c.
fn serve(config: ServerConfig, filter: tracing_subscriber::EnvFilter) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The variable of every setting flag follows the documented rule.
    #[test]
    fn every_setting_flag_has_its_environment_variable() {
        let command = Cli::command();
        let mut seen = 0;
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version" | "check_config") {
                assert_eq!(arg.get_env(), None, "{id} is an action");
                continue;
            }
            let expected = if id == "log" {
                "RUST_LOG".to_owned()
            } else {
                format!("GDP_CAPSULE_SERVER_{}", id.to_uppercase())
            };
            let env = arg.get_env().and_then(|e| e.to_str());
            assert_eq!(env, Some(expected.as_str()), "--{id}");
            seen += 1;
        }
        assert!(seen >= 8, "only {seen} setting flags");
    }

    /// Unless configured, the admin API is on loopback (or nowhere, when
    /// another server holds the default port); `off` binds nothing.
    #[test]
    fn the_admin_api_listens_on_loopback_unless_configured() {
        assert!(DEFAULT_ADMIN.ip().is_loopback());
        let config = ServerConfig::default();
        assert_eq!(config.admin, None);
        if let Some(listener) = bind_admin(&config).expect("binds or warns") {
            assert_eq!(listener.local_addr().expect("bound"), DEFAULT_ADMIN);
        }
        let mut off = ServerConfig::default();
        off.admin = Some(AdminListen::Off);
        assert!(bind_admin(&off).expect("off").is_none());
    }
}
