//! `gdp`: the Global Data Plane command.
//!
//! ```text
//! gdp keygen                                   # ~/.config/gdp/client.key
//! export GDP_ROUTER=127.0.0.1:7474
//! gdp capsule create --server <server name> --label notes
//! gdp capsule create --replicas <name>,<name>,<name> -W 2 -R 2   # replicated
//! gdp capsule replicas <capsule> [--set <name>,<name>]   # show or move replicas
//! gdp capsule forks <capsule>                  # verified fork evidence
//! gdp append <capsule> "first note" "second note"
//! seq 1 100000 | gdp append <capsule>          # one record per line, pipelined
//! gdp read <capsule> 1..10
//! gdp tail -f <capsule>
//! gdp ping <router or client name>
//! gdp domain keygen -o domain.key              # a trust domain; prints its public key
//! gdp domain issue --domain-key domain.key --router <router name or key file> -o router.domain-cert
//! gdp demo                                     # a whole GDP in this process
//! ```
//!
//! Every command prints text by default and one JSON object per line with
//! `--json`. A failure prints one line, `gdp: <what went wrong>`, on
//! standard error and exits with status 1 (2 for a bad command line, 3 for
//! a read of an encrypted capsule by a key that is not one of its readers).
//!
//! It is the `gdp-cli` package, built on the `gdp-client` SDK with its
//! `local` feature (for `gdp demo`): `cargo install --path gdp-client/cli`,
//! or `cargo run --release -p gdp-cli -- demo`.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

mod admin;
mod capsules;
mod cli;
mod context;
mod demo;
mod domain;
mod keys;
mod net;
mod output;
mod readers;

use cli::{CapsuleCommand, CertCommand, Cli, Command, DomainCommand, KeyCommand};
use context::Context;

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context::new(&cli.global)?;
    match &cli.command {
        Command::Keygen(a) => keys::keygen(&ctx, a),
        Command::Whoami => keys::whoami(&ctx),
        Command::Capsule(CapsuleCommand::Create(a)) => capsules::create(&ctx, a).await,
        Command::Capsule(CapsuleCommand::Info(a)) => capsules::info(&ctx, a).await,
        Command::Capsule(CapsuleCommand::Replicas(a)) => capsules::replicas(&ctx, a).await,
        Command::Capsule(CapsuleCommand::Forks(a)) => capsules::forks(&ctx, a).await,
        Command::Capsule(CapsuleCommand::Reencrypt(a)) => readers::reencrypt(&ctx, a).await,
        Command::Append(a) => capsules::append(&ctx, a).await,
        Command::Read(a) => capsules::read(&ctx, a).await,
        Command::Tail(a) => capsules::tail(&ctx, a).await,
        Command::Send(a) => net::send(&ctx, a).await,
        Command::Recv(a) => net::recv(&ctx, a).await,
        Command::Ping(a) => net::ping(&ctx, a).await,
        Command::Cert(CertCommand::Issue(a)) => keys::issue(&ctx, a),
        Command::Cert(CertCommand::Show(a)) => keys::show(&ctx, a),
        Command::Domain(DomainCommand::Keygen(a)) => domain::keygen(&ctx, a),
        Command::Domain(DomainCommand::Issue(a)) => domain::issue(&ctx, a),
        Command::Domain(DomainCommand::Show(a)) => domain::show(&ctx, a),
        Command::Demo(a) => demo::run(&ctx, a).await,
        Command::Router(a) => admin::router(&ctx, a).await,
        Command::Server(a) => admin::server(&ctx, a).await,
        Command::Key(KeyCommand::Show(a)) => keys::key_show(&ctx, a),
        Command::Readers(c) => readers::run(&ctx, c).await,
    }
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A clap error on one line: its message and the arguments it lists,
/// without the usage and the hint that follow.
fn clap_error_line(text: &str) -> String {
    let body: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let line = body.join(" ");
    let line = line.trim_start_matches("error: ");
    if line.is_empty() {
        "invalid command line".to_owned()
    } else {
        line.to_owned()
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "gdp: {}", one_line(message));
    ExitCode::from(code)
}

fn main() -> ExitCode {
    // Whatever happens, one line and no backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_owned());
        let _ = writeln!(std::io::stderr(), "gdp: internal error: {}", one_line(&msg));
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            let text = e.render().to_string();
            let first = clap_error_line(&text);
            return fail(&format!("{first} (see gdp --help)"), 2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}"), 1),
    };
    let result = runtime.block_on(run(cli));
    // Tasks still running (a link closing) are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `gdp ... | head -n 1`: the reader took what it wanted and left.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if is_not_reader(&e) => fail(&format!("{e:#}"), EXIT_NOT_READER),
        Err(e) => fail(&format!("{e:#}"), 1),
    }
}

/// The exit status of a read of an encrypted capsule by a key that is not
/// one of its readers (for that record's epoch).
const EXIT_NOT_READER: u8 = 3;

/// True if `e` says this key is not a reader of an encrypted capsule.
fn is_not_reader(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<gdp_client::ClientError>(),
            Some(gdp_client::ClientError::NotReader { .. })
        )
    })
}

/// True if `e` comes from writing to a pipe whose reader has gone, as
/// behind `head`: not a failure of the command, so it ends quietly and
/// successfully (a shell with `pipefail` would otherwise fail the whole
/// pipeline for output nobody wanted).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_pipe_counts_as_one() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(
            &anyhow::Error::new(pipe).context("writing the capsule name")
        ));
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!is_broken_pipe(&anyhow::Error::new(other)));
        assert!(!is_broken_pipe(&anyhow::anyhow!("broken pipe")));
    }
}
