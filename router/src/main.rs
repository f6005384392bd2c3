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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match RouterSettings::from_cli(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gdp-router: {e}");
            return std::process::ExitCode::from(2);
        }
    };
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
