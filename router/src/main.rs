//! `gdp-router`: the GDP router daemon.
//!
//! ```text
//! gdp-router                                   # embedded defaults: ./gdp-router.key, memory
//!                                              # directory, UDP 0.0.0.0:7474
//! gdp-router --data-dir /var/lib/gdp-router --directory redis://10.0.0.5:6379 \
//!            --advertise 203.0.113.7:7474 --admin 127.0.0.1:7475
//! gdp-router --config /etc/gdp/router.toml --log gdp_router=debug
//! ```
//!
//! See [`gdp_router::config`] for the config file and every flag. At start
//! the router prints one line to standard output:
//!
//! ```text
//! gdp-router name=<name> listen=<addr> advertise=<addr,...> admin=<addr|none> key=<file> key_created=<bool>
//! ```
//!
//! With a `[capsule_server]` table in its config it also runs a capsule
//! server in the same process (built with the default `capsule-server`
//! feature): the server keeps its data under `<data_dir>/capsule-server`
//! unless the table says otherwise, and attaches to this router over
//! loopback like any other endpoint.
//!
//! Every flag can also be given in the environment (`GDP_ROUTER_LISTEN`
//! for `--listen`, `RUST_LOG` for `--log`); a flag wins over its variable,
//! which wins over the config file, which wins over the default.
//! `gdp-router --check-config` loads and checks all of it, prints the
//! settings in force (a Redis password masked) and exits: 0 when the
//! configuration is valid, 2 with the reason when it is not.
//!
//! SIGTERM or Ctrl-C shuts it down gracefully: the embedded capsule server
//! stops first, then the router's records are withdrawn from the directory,
//! queued PDUs are flushed, links are closed, and it exits with status 0.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser as _;
use gdp_router::config::{Cli, RouterSettings};
use gdp_router::driver::{EmbedHook, launch};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// The shutdown signals, installed before the router starts.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Waits for SIGTERM or SIGINT (Ctrl-C).
    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The embedded capsule server.
#[cfg(feature = "capsule-server")]
fn capsule_server() -> Option<EmbedHook> {
    use gdp_capsule_server::config::ServerConfig;
    use gdp_router::driver::EmbedContext;
    let hook: EmbedHook = Box::new(|ctx: EmbedContext| {
        Box::pin(async move {
            let config = ServerConfig::embedded(
                Some(ctx.config),
                &ctx.data_dir,
                ctx.router_addr,
                ctx.router,
            )
            .context("[capsule_server]")?;
            let mut stop = ctx.shutdown;
            let shutdown = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            gdp_capsule_server::driver::run(config, shutdown)
                .await
                .context("embedded capsule server")
        })
    });
    Some(hook)
}

/// This build embeds no capsule server.
#[cfg(not(feature = "capsule-server"))]
fn capsule_server() -> Option<EmbedHook> {
    None
}

async fn run(settings: RouterSettings) -> anyhow::Result<()> {
    // Installed before the start line is printed, so that a SIGTERM sent
    // as soon as the router is up is a graceful shutdown, not a kill.
    let signals = Signals::install()?;
    let embed = if settings.capsule_server.is_some() {
        capsule_server()
    } else {
        None
    };
    let router = launch(&settings, embed).await?;
    let advertised: Vec<String> = router.advertised.iter().map(ToString::to_string).collect();
    let admin = router
        .admin
        .map_or_else(|| "none".to_owned(), |a| a.to_string());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "gdp-router name={} listen={} advertise={} admin={} key={} key_created={}",
        router.name,
        router.listen,
        advertised.join(","),
        admin,
        router.key_file.display(),
        router.key_created
    )?;
    out.flush()?;
    drop(out);
    tracing::info!(name = %router.name, listen = %router.listen, "gdp-router started");

    let signal = signals.wait().await;
    tracing::info!(signal, "shutting down");
    let summary = router.shutdown().await?;
    tracing::info!(
        withdrawn = summary.withdrawn,
        withdraw_failures = summary.withdraw_failures,
        links = summary.transport.links,
        "gdp-router stopped"
    );
    Ok(())
}

/// The embedded capsule server's table, checked as the server will read it.
#[cfg(feature = "capsule-server")]
fn check_capsule_server(settings: &RouterSettings) -> anyhow::Result<()> {
    if let Some(table) = &settings.capsule_server {
        gdp_capsule_server::config::ServerConfig::from_router_table(
            Some(table.clone()),
            &settings.data_dir,
            settings.listen,
        )
        .context("[capsule_server]")?;
    }
    Ok(())
}

/// A `[capsule_server]` table is refused by a build without the feature.
#[cfg(not(feature = "capsule-server"))]
fn check_capsule_server(settings: &RouterSettings) -> anyhow::Result<()> {
    if settings.capsule_server.is_some() {
        anyhow::bail!(
            "[capsule_server]: this gdp-router was built without the capsule-server feature"
        );
    }
    Ok(())
}

/// What `--check-config` says about the key file: the router's name when
/// it exists. A key file that exists but cannot be used is an error.
fn key_status(settings: &RouterSettings) -> anyhow::Result<String> {
    let path = &settings.key_file;
    if !path.exists() {
        return Ok(format!(
            "{} does not exist yet: a new key is generated at first start",
            path.display()
        ));
    }
    let id = gdp_certs::Identity::load(path)
        .with_context(|| format!("the key file {}", path.display()))?;
    let kind = id.metadata().kind();
    if kind != gdp_certs::Kind::Router {
        anyhow::bail!(
            "the key file {} holds a {kind} identity, not a router's",
            path.display()
        );
    }
    Ok(format!("{} (router name {})", path.display(), id.name()))
}

/// `--check-config`: everything but the start. Prints the settings in
/// force on standard output; an error goes to standard error.
fn check_config(cli: &Cli, settings: &RouterSettings) -> anyhow::Result<()> {
    check_capsule_server(settings)?;
    let key = key_status(settings)?;
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
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# gdp-router --check-config: the configuration is valid."
    )?;
    writeln!(out, "# config file: {file}")?;
    writeln!(out, "# environment: {env}")?;
    writeln!(out, "# key file: {key}")?;
    if !settings.admin_configured {
        writeln!(
            out,
            "# admin: not set, so {}, or no admin API if another router holds that address",
            gdp_router::config::DEFAULT_ADMIN
        )?;
    }
    if let Some(warning) =
        settings.advertise_warning(&settings.advertised_addresses(settings.listen))
    {
        writeln!(out, "# warning: {warning}")?;
    }
    if settings.advertise.is_none() {
        let what = if settings.via.is_some() {
            "none (behind a gateway)"
        } else {
            "the bound listen address (127.0.0.1 for an unspecified IP)"
        };
        writeln!(out, "# advertise: not set, so {what}")?;
    }
    writeln!(
        out,
        "# The settings in force (flag > environment > config file > default):"
    )?;
    write!(out, "{}", settings.to_masked_toml())?;
    out.flush()?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match RouterSettings::from_cli(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gdp-router: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if cli.check_config {
        return match check_config(&cli, &settings) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gdp-router: {e:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    // `validate` has checked the filter already.
    let filter = EnvFilter::try_new(&settings.log).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gdp-router: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gdp-router: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
