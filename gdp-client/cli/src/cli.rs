//! The command line of `gdp`.
//!
//! The doc comments here are also `gdp --help`, so they are written for a
//! terminal: placeholders such as `<name>` are plain text, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The `gdp` command: keys, capsules, datagrams and a local demo network.
#[derive(Debug, Parser)]
#[command(name = "gdp", version, about = "Global Data Plane client", long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The client key file [default: $XDG_CONFIG_HOME/gdp/client.key, that
    /// is ~/.config/gdp/client.key].
    #[arg(long, global = true, env = "GDP_KEY", value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// The router's address (host:port).
    #[arg(long, global = true, env = "GDP_ROUTER", value_name = "ADDR")]
    pub(crate) router: Option<String>,
    /// The router's name; without it the router that answers is trusted.
    #[arg(long, global = true, env = "GDP_ROUTER_NAME", value_name = "NAME")]
    pub(crate) router_name: Option<String>,
    /// Where capsule files are kept [default: $XDG_CONFIG_HOME/gdp/capsules].
    #[arg(long, global = true, env = "GDP_CAPSULE_DIR", value_name = "DIR")]
    pub(crate) capsule_dir: Option<PathBuf>,
    /// Print JSON (one object per line) instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Bound on each network operation, such as 500ms, 10s or 1m.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// A log filter for stderr, such as `info` or `gdp_client=debug`.
    #[arg(
        long,
        global = true,
        env = "GDP_LOG",
        value_name = "FILTER",
        default_value = "error"
    )]
    pub(crate) log: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a client key file.
    Keygen(Keygen),
    /// Show this client's name and key.
    Whoami,
    /// Create capsules and describe them.
    #[command(subcommand)]
    Capsule(CapsuleCommand),
    /// Append records to a capsule you write.
    Append(Append),
    /// Read records, verified against the capsule's metadata.
    Read(Read),
    /// Show the newest records; with -f, follow new ones as they come.
    Tail(Tail),
    /// Send a datagram to any name.
    Send(Send),
    /// Receive datagrams sent to this client.
    Recv(Recv),
    /// Measure round trips to a name across the overlay.
    Ping(Ping),
    /// Issue and inspect certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Trust-domain keys, and certificates admitting routers to a domain.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Start a local GDP in this process and show it at work.
    Demo(Demo),
    /// Inspect a running router through its admin API.
    Router(RouterAdmin),
    /// Inspect a running capsule server through its admin API.
    Server(ServerAdmin),
    /// Key files of any kind (client, router, server, trust domain).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Who may read an encrypted capsule: add, remove, list.
    #[command(subcommand)]
    Readers(ReadersCommand),
}

/// `gdp readers ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ReadersCommand {
    /// Grant readers the current key of an encrypted capsule.
    Add(ReadersChange),
    /// Remove readers: a new key for every record appended after this,
    /// wrapped to the readers who remain. Removed readers keep what they
    /// could already read.
    Remove(ReadersChange),
    /// The readers of the newest epoch.
    List(ReadersList),
}

#[derive(Debug, Args)]
pub(crate) struct ReadersChange {
    /// The encrypted capsule (a capsule file, or the name of one in the
    /// capsule directory).
    pub(crate) capsule: String,
    /// Readers' public keys (as `gdp whoami` prints them) or their key files.
    #[arg(required = true, value_name = "KEY")]
    pub(crate) readers: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ReadersList {
    /// The encrypted capsule (a capsule name or capsule file).
    pub(crate) capsule: String,
}

/// `gdp router ...`: one view of a router's admin API.
#[derive(Debug, Args)]
pub(crate) struct RouterAdmin {
    /// The router's admin API (host:port, or an http:// URL).
    #[arg(
        long,
        env = "GDP_ROUTER_ADMIN",
        value_name = "ADDR",
        default_value = "127.0.0.1:7475"
    )]
    pub(crate) admin: String,
    #[command(subcommand)]
    pub(crate) view: RouterView,
}

/// What `gdp router` shows.
#[derive(Debug, Subcommand)]
pub(crate) enum RouterView {
    /// Name, version, uptime, readiness and counts.
    Status,
    /// Exit 0 if the router is alive (its /healthz), 1 otherwise; with
    /// --ready, if it serves (its /readyz).
    Health(Health),
    /// Links: peer, kind, role, RTT, queue and counters.
    Links,
    /// FIB entries in name order.
    Fib(Page),
    /// What the router and the directory say about a name, each record
    /// verified by the router.
    Routes(Routes),
    /// Attached endpoints.
    Endpoints,
    /// Capsules advertised by attached servers.
    Capsules,
    /// Names being resolved, and the PDUs waiting for them.
    Lookups,
    /// The directory: backend, reachability, call counters.
    Directory,
    /// Peering policy, trust domains and each router link's trust.
    Trust,
    /// The settings in force (secrets masked).
    Config,
}

/// `gdp server ...`: one view of a capsule server's admin API.
#[derive(Debug, Args)]
pub(crate) struct ServerAdmin {
    /// The capsule server's admin API (host:port, or an http:// URL).
    #[arg(
        long,
        env = "GDP_SERVER_ADMIN",
        value_name = "ADDR",
        default_value = "127.0.0.1:7476"
    )]
    pub(crate) admin: String,
    #[command(subcommand)]
    pub(crate) view: ServerView,
}

/// What `gdp server` shows.
#[derive(Debug, Subcommand)]
pub(crate) enum ServerView {
    /// Name, version, router, capsules, store size and counters.
    Status,
    /// Exit 0 if the server runs (its /healthz), 1 otherwise; with
    /// --ready, if it is attached to a router (its /readyz).
    Health(Health),
    /// Hosted capsules with their newest seqno, replicas and forks.
    Capsules(Page),
    /// The settings in force.
    Config,
}

#[derive(Debug, Args)]
pub(crate) struct Health {
    /// Ask whether it serves, not only whether it is alive.
    #[arg(long)]
    pub(crate) ready: bool,
}

/// A page of a long list.
#[derive(Debug, Args)]
pub(crate) struct Page {
    /// Start after this name.
    #[arg(long, value_name = "NAME")]
    pub(crate) after: Option<String>,
    /// Entries per page (at most 1000).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: usize,
    /// Every page, not only the first.
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct Routes {
    /// The name to look up.
    pub(crate) name: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Show a key file's name, kind, label and public key (never the
    /// secret).
    Show(KeyShow),
}

#[derive(Debug, Args)]
pub(crate) struct KeyShow {
    /// The key file: a client's, router's or server's, or a trust
    /// domain's.
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct Keygen {
    /// Label put in the key's metadata.
    #[arg(long, default_value = "gdp-client")]
    pub(crate) label: String,
    /// Replace an existing key file.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CapsuleCommand {
    /// Create a capsule on a server, or on several with --replicas; this
    /// key owns and writes it.
    Create(Create),
    /// Describe a capsule: its verified metadata and newest seqno.
    Info(Info),
    /// Show the replica set each replica holds, or move the capsule to
    /// other replicas with --set (you must own it).
    Replicas(Replicas),
    /// Show verified evidence that the capsule was forked (exits 1 if
    /// there is any).
    Forks(Forks),
    /// Copy an encrypted capsule's history into a new encrypted capsule
    /// under a fresh key, for its current readers only: what removed
    /// readers could read stays in the old capsule, which you retire.
    Reencrypt(Reencrypt),
}

#[derive(Debug, Args)]
pub(crate) struct Reencrypt {
    /// The encrypted capsule (a capsule file, or the name of one in the
    /// capsule directory).
    pub(crate) capsule: String,
    /// The capsule server to place the new capsule on.
    #[arg(long, value_name = "NAME")]
    pub(crate) server: String,
    /// A label for the new capsule [default: the old one's].
    #[arg(long)]
    pub(crate) label: Option<String>,
}

/// Quorums of a replicated capsule, overriding its capsule file's.
#[derive(Debug, Args, Default, Clone, Copy)]
pub(crate) struct Quorums {
    /// Replicas that must acknowledge each append (W) [default: the
    /// capsule file's, else a majority].
    #[arg(short = 'W', long, value_name = "N")]
    pub(crate) write_quorum: Option<usize>,
    /// Replicas each read asks (R) [default: the capsule file's, else a
    /// majority]. W + R above the number of replicas reads your writes.
    #[arg(short = 'R', long, value_name = "N")]
    pub(crate) read_quorum: Option<usize>,
}

impl Quorums {
    /// True if either quorum is given.
    pub(crate) fn any(&self) -> bool {
        self.write_quorum.is_some() || self.read_quorum.is_some()
    }
}

#[derive(Debug, Args)]
pub(crate) struct Create {
    /// The capsule server to place it on.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "replicas",
        conflicts_with = "replicas"
    )]
    pub(crate) server: Option<String>,
    /// Place it on these servers as replicas (comma-separated names):
    /// appends go to every replica, reads ask R of them.
    #[arg(long, value_name = "NAME,NAME,...", value_delimiter = ',')]
    pub(crate) replicas: Vec<String>,
    #[command(flatten)]
    pub(crate) quorums: Quorums,
    /// A label for people.
    #[arg(long, default_value = "")]
    pub(crate) label: String,
    /// Another writer's public key (repeatable).
    #[arg(long, value_name = "KEY")]
    pub(crate) writer: Vec<String>,
    /// Restrict hosting to these servers (repeatable).
    #[arg(long, value_name = "NAME")]
    pub(crate) host: Vec<String>,
    /// Encrypt its records (XChaCha20-Poly1305 under keys wrapped to each
    /// reader); you and the writers are readers.
    #[arg(long)]
    pub(crate) encrypted: bool,
    /// With --encrypted: convergent encryption, so that equal records give
    /// equal ciphertexts (anyone who guesses a record can confirm it).
    #[arg(long, requires = "encrypted")]
    pub(crate) convergent: bool,
    /// With --encrypted: another reader's public key or key file (repeatable).
    #[arg(long, value_name = "KEY", requires = "encrypted")]
    pub(crate) reader: Vec<String>,
    /// How long the server may serve it.
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = parse_duration)]
    pub(crate) validity: Duration,
    /// Where to write the capsule file [default: <capsule-dir>/<name>.capsule].
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct Info {
    /// A capsule name or capsule file.
    pub(crate) capsule: String,
    #[command(flatten)]
    pub(crate) quorums: Quorums,
}

#[derive(Debug, Args)]
pub(crate) struct Replicas {
    /// A capsule file, or the name of one in the capsule directory.
    pub(crate) capsule: String,
    /// Move the capsule to these servers (comma-separated names): new
    /// ones get it, retired ones are told they are out, and the capsule
    /// file is rewritten with the new set.
    #[arg(long, value_name = "NAME,NAME,...", value_delimiter = ',')]
    pub(crate) set: Vec<String>,
    /// With --set: the quorums stored for the new set [default: the old
    /// ones if the new set can meet them, else majorities].
    #[command(flatten)]
    pub(crate) quorums: Quorums,
}

#[derive(Debug, Args)]
pub(crate) struct Forks {
    /// A capsule name or capsule file (with replicas, every replica is
    /// asked).
    pub(crate) capsule: String,
}

#[derive(Debug, Args)]
pub(crate) struct Append {
    /// A capsule name or capsule file (you must be a writer).
    pub(crate) capsule: String,
    /// Records to append, one per argument.
    pub(crate) data: Vec<String>,
    /// Append the whole content of a file as one record (repeatable).
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Vec<PathBuf>,
    /// Append each line of standard input as a record (the default when
    /// no data and no file is given).
    #[arg(long)]
    pub(crate) stdin: bool,
    /// One heartbeat per record instead of one per batch.
    #[arg(long)]
    pub(crate) sign_each: bool,
    #[command(flatten)]
    pub(crate) quorums: Quorums,
}

#[derive(Debug, Args)]
pub(crate) struct Read {
    /// A capsule name or capsule file.
    pub(crate) capsule: String,
    /// A seqno, a range FROM..TO or FROM.. [default: every record].
    pub(crate) range: Option<String>,
    /// Only the newest record.
    #[arg(long, conflicts_with = "range")]
    pub(crate) latest: bool,
    /// Write the payloads alone, each followed by a newline.
    #[arg(long)]
    pub(crate) raw: bool,
    #[command(flatten)]
    pub(crate) quorums: Quorums,
}

#[derive(Debug, Args)]
pub(crate) struct Tail {
    /// A capsule name or capsule file.
    pub(crate) capsule: String,
    /// Follow: print new records as they are appended.
    #[arg(short, long)]
    pub(crate) follow: bool,
    /// How many of the newest records to show first.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub(crate) lines: u64,
    /// Start at this seqno instead (implies showing everything after it).
    #[arg(long, value_name = "SEQNO")]
    pub(crate) from: Option<u64>,
    /// With -f, stop after this many records.
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Write the payloads alone, each followed by a newline.
    #[arg(long)]
    pub(crate) raw: bool,
    #[command(flatten)]
    pub(crate) quorums: Quorums,
}

#[derive(Debug, Args)]
pub(crate) struct Send {
    /// The destination name.
    pub(crate) dst: String,
    /// The payload.
    pub(crate) data: String,
    /// Send as a QUIC datagram (may be dropped).
    #[arg(long)]
    pub(crate) unreliable: bool,
}

#[derive(Debug, Args)]
pub(crate) struct Recv {
    /// Stop after this many datagrams.
    #[arg(long, default_value_t = 1)]
    pub(crate) count: u64,
    /// Give up after this long without the datagrams [default: wait forever].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) wait: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct Ping {
    /// The name to ping (a router, or a client).
    pub(crate) dst: String,
    /// How many pings.
    #[arg(short, long, default_value_t = 3)]
    pub(crate) count: u32,
    /// Time between pings.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration)]
    pub(crate) interval: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Issue a certificate signed by this key.
    #[command(subcommand)]
    Issue(Issue),
    /// Decode a certificate and show what it says.
    Show(Show),
}

#[derive(Debug, Subcommand)]
pub(crate) enum Issue {
    /// Let a server serve a capsule you own (an AdCert).
    Adcert(IssueAdcert),
    /// Name the router this client attaches to (an RtCert).
    Rtcert(IssueRtcert),
}

#[derive(Debug, Args)]
pub(crate) struct IssueAdcert {
    /// A capsule name or capsule file (you must own it).
    #[arg(long)]
    pub(crate) capsule: String,
    /// The server that may serve it.
    #[arg(long, value_name = "NAME")]
    pub(crate) server: String,
    /// How long it is valid.
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = parse_duration)]
    pub(crate) validity: Duration,
    /// Write it to this file (binary) instead of printing it (base32).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct IssueRtcert {
    /// The router.
    #[arg(long, value_name = "NAME")]
    pub(crate) router: String,
    /// How long it is valid.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub(crate) validity: Duration,
    /// Write it to this file (binary) instead of printing it (base32).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct Show {
    /// A certificate file (binary or base32 text), or base32 text itself.
    pub(crate) cert: String,
    /// Check an AdCert against this capsule (name or capsule file).
    #[arg(long)]
    pub(crate) capsule: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DomainCommand {
    /// Create a trust-domain key file and print its public key (what
    /// routers are given with --trusted-domain).
    Keygen(DomainKeygen),
    /// Admit a router to the domain: write the certificate that
    /// gdp-router --domain-cert reads.
    Issue(DomainIssue),
    /// Print a domain key file's public key.
    Show(DomainShow),
}

#[derive(Debug, Args)]
pub(crate) struct DomainKeygen {
    /// Where to write the key (mode 0600).
    #[arg(short, long, value_name = "FILE", default_value = "domain.key")]
    pub(crate) out: PathBuf,
    /// Replace an existing key file.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DomainIssue {
    /// The domain key file (from gdp domain keygen).
    #[arg(long, value_name = "FILE")]
    pub(crate) domain_key: PathBuf,
    /// The router to admit: its name, or its key file.
    #[arg(long, value_name = "NAME-OR-FILE")]
    pub(crate) router: String,
    /// How long the certificate is valid.
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = parse_duration)]
    pub(crate) valid_for: Duration,
    /// Where to write the certificate (binary, for gdp-router --domain-cert).
    #[arg(short, long, value_name = "FILE")]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct DomainShow {
    /// The domain key file.
    #[arg(long, value_name = "FILE", default_value = "domain.key")]
    pub(crate) domain_key: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct Demo {
    /// Records appended one at a time (each waits for its acknowledgement).
    #[arg(long, default_value_t = 200)]
    pub(crate) single: u64,
    /// Records appended pipelined, in batches.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) records: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
}

/// A duration: see [`gdp_certs::parse_duration`].
pub(crate) use gdp_certs::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("gdp").chain(args.iter().copied()))
    }

    #[test]
    fn replicas_and_quorums_parse() {
        let cli = parse(&[
            "capsule",
            "create",
            "--replicas",
            "a,b,c",
            "-W",
            "3",
            "-R",
            "1",
        ])
        .expect("parses");
        let Command::Capsule(CapsuleCommand::Create(c)) = cli.command else {
            panic!("not a create");
        };
        assert_eq!(c.replicas, ["a", "b", "c"]);
        assert_eq!(c.server, None);
        assert_eq!(c.quorums.write_quorum, Some(3));
        assert_eq!(c.quorums.read_quorum, Some(1));
        // A server, or replicas, but not both and not neither.
        assert!(parse(&["capsule", "create", "--server", "s", "--replicas", "a"]).is_err());
        assert!(parse(&["capsule", "create"]).is_err());
        let cli = parse(&["capsule", "create", "--server", "s"]).expect("parses");
        let Command::Capsule(CapsuleCommand::Create(c)) = cli.command else {
            panic!("not a create");
        };
        assert!(c.replicas.is_empty() && !c.quorums.any());

        let cli = parse(&["read", "c", "1..3", "--read-quorum", "2"]).expect("parses");
        let Command::Read(r) = cli.command else {
            panic!("not a read");
        };
        assert_eq!(r.quorums.read_quorum, Some(2));
        assert!(parse(&["append", "c", "x", "-W", "1"]).is_ok());
        assert!(parse(&["tail", "c", "-R", "1"]).is_ok());
        assert!(parse(&["append", "c", "x", "-W", "two"]).is_err());

        let cli = parse(&["capsule", "replicas", "c", "--set", "a,b"]).expect("parses");
        let Command::Capsule(CapsuleCommand::Replicas(r)) = cli.command else {
            panic!("not replicas");
        };
        assert_eq!(r.set, ["a", "b"]);
        let cli = parse(&["capsule", "replicas", "c"]).expect("parses");
        let Command::Capsule(CapsuleCommand::Replicas(r)) = cli.command else {
            panic!("not replicas");
        };
        assert!(r.set.is_empty());
        assert!(parse(&["capsule", "forks", "c"]).is_ok());
    }
}
