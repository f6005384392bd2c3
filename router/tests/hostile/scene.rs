//! The stage of each hostile-peer test and of each attack benchmark run: a
//! real `redis-server`, a `gdp-router` process on loopback using it as its
//! directory and serving metrics, optionally a `gdp-capsule-server`
//! process attached to it, and the unrelated pair pinging through it.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by the hostile-peer tests and the attack benchmark, each using a part"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use std::future::ready;

use gdp_certs::{Identity, Kind, Name};
use gdp_link::endpoint::{EndpointLink, EndpointReceiver};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_router::directory::route_key;
use gdp_testkit::hostile::capsule::CapsuleClient;
use gdp_testkit::hostile::procfs::ProcStats;
use gdp_testkit::hostile::{PingLog, PingPair, attacker_config, directory};
use gdp_testkit::{
    ChildGuard, RedisServer, TempDir, Writer, eventually, spawn_with_start_line, start_line_field,
    workspace_bin,
};

use crate::common::RouterProcess;

/// How often the pair pings.
pub const PING_INTERVAL: Duration = Duration::from_millis(10);
/// Longest the pair may go without an answer while under attack.
pub const MAX_GAP: Duration = Duration::from_secs(1);
/// Most memory the router may hold under any attack (the target).
pub const MAX_RSS: u64 = 256 << 20;
/// How long a capsule server may take to print its start line.
const SERVER_START: Duration = Duration::from_secs(20);
/// Longest a test waits for something it expects.
pub const WAIT: Duration = Duration::from_secs(15);

/// The loopback address of the router, the server and the pair.
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Arguments of a router under attack: loopback on a free port, metrics on
/// a free port, its data under `dir/label`, the directory `directory`, the
/// default limits (nothing here loosens or tightens them) and short
/// timers.
pub fn router_args(dir: &Path, label: &str, directory: &str) -> Vec<String> {
    let data = dir.join(label);
    [
        "--data-dir",
        data.to_str().expect("a UTF-8 path"),
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--directory",
        directory,
        "--log",
        "warn",
        "--idle-timeout",
        "2s",
        "--keep-alive",
        "300ms",
        "--audit-interval",
        "300ms",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A `gdp-capsule-server` process attached to a router.
pub struct ServerProcess {
    /// Its name (from its start line).
    pub name: Name,
    process: ChildGuard,
}

impl ServerProcess {
    /// Starts `gdp-capsule-server` with its data under `dir/server`,
    /// attached to the router `router` at `addr`.
    ///
    /// # Panics
    ///
    /// When the binary is not built, or it does not start.
    pub fn start(dir: &Path, addr: SocketAddr, router: Name) -> ServerProcess {
        let log = dir.join("server.log");
        let binary = workspace_bin("gdp-capsule-server");
        let (process, line) = spawn_with_start_line(
            Command::new(binary)
                .arg("--data-dir")
                .arg(dir.join("server"))
                .args(["--router", &addr.to_string()])
                .args(["--router-name", &router.to_string()])
                .args(["--log", "warn"])
                .stdin(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("server log")),
            "capsule server",
            Some(&log),
            SERVER_START,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let name = start_line_field(&line, "name")
            .unwrap_or_else(|| panic!("no name in {line:?}"))
            .parse()
            .expect("a server name");
        ServerProcess { name, process }
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(30)
    }
}

/// Redis, a router and optionally a capsule server; everything is killed
/// on drop.
pub struct Scene {
    /// The router's directory.
    pub redis: RedisServer,
    /// The router under attack.
    pub router: RouterProcess,
    /// The capsule server behind it, when asked for.
    pub server: Option<ServerProcess>,
    /// Logs and data (last: removed after the processes are gone).
    pub dir: TempDir,
}

impl Scene {
    /// Starts Redis and a router (and a capsule server when `with_server`),
    /// and waits until the server answers through the router.
    pub async fn start(label: &str, with_server: bool) -> Scene {
        let dir = TempDir::new(label);
        let redis = RedisServer::start();
        let router = RouterProcess::start(
            "router",
            dir.path(),
            &router_args(dir.path(), "router", &redis.url()),
        );
        let server =
            with_server.then(|| ServerProcess::start(dir.path(), router.addr(), router.name()));
        let scene = Scene {
            redis,
            router,
            server,
            dir,
        };
        if let Some(server) = &scene.server {
            // The server is attached once a request to it is answered
            // (whatever the answer).
            let mut probe = scene.client("probe").await;
            probe
                .call_when_routed(server.name, CapsuleRequest::Latest, WAIT)
                .await;
        }
        scene
    }

    /// The router's address.
    pub fn addr(&self) -> SocketAddr {
        self.router.addr()
    }

    /// The router's name.
    pub fn name(&self) -> Name {
        self.router.name()
    }

    /// The capsule server's name.
    pub fn server(&self) -> Name {
        self.server.as_ref().expect("a scene with a server").name
    }

    /// One metric of the router now (0 if absent).
    pub fn metric(&self, key: &str) -> f64 {
        self.router.metric(key)
    }

    /// The router's memory and CPU time now.
    pub fn router_stats(&self) -> ProcStats {
        let pid = self.router.pid().expect("the router runs");
        ProcStats::read(pid).expect("the router's /proc entries")
    }

    /// Starts the unrelated pair.
    pub async fn pair(&self) -> PingPair {
        PingPair::start(self.addr(), self.name(), PING_INTERVAL).await
    }

    /// A well-behaved capsule client from 127.0.0.1.
    pub async fn client(&self, label: &str) -> CapsuleClient {
        CapsuleClient::attach(self.addr(), self.name(), LOCAL, label)
            .await
            .unwrap_or_else(|e| panic!("{label} attaches: {e}"))
    }

    /// Creates `count` capsules on the server, each with its own owner,
    /// through `client`; returns their writers.
    pub async fn create_capsules(&self, client: &mut CapsuleClient, count: usize) -> Vec<Writer> {
        let server = self.server();
        let writers: Vec<Writer> = (0..count).map(|_| Writer::new(server, "honest")).collect();
        let requests: Vec<_> = writers.iter().map(|w| (server, w.create())).collect();
        let (replies, _) = client.call_all(&requests, WAIT).await;
        for reply in replies {
            assert!(
                matches!(
                    reply,
                    Some(gdp_testkit::hostile::capsule::Reply::Response(ref r))
                        if **r == CapsuleResponse::Created
                ),
                "an honest create: {reply:?}"
            );
        }
        writers
    }
}

/// Checks that the pair kept exchanging PDUs: every ping answered, never
/// longer than [`MAX_GAP`] without an answer.
pub fn assert_pair_held(log: &PingLog) {
    eprintln!("pair: {}", log.summary());
    assert!(log.answered() > 0, "the pair never pinged");
    assert_eq!(log.lost(), 0, "pings lost: {}", log.summary());
    assert!(
        log.max_gap() <= MAX_GAP,
        "the pair stalled: {}",
        log.summary()
    );
}

/// Attack 11 set up: an endpoint `b` that was attached to a router `old`
/// (which published a record for it) and, `old` killed without a word, is
/// now attached to a router `fresh`; `old`'s record, still valid, has
/// been replayed into the directory next to `fresh`'s. Both routers use
/// the scene's directory.
pub struct StaleScene {
    /// The endpoint whose route has a stale and a fresh record.
    pub b: Identity,
    /// What arrives for `b` (through `fresh`).
    pub b_rx: EndpointReceiver,
    /// `fresh` and b's link to it, kept alive with the scene (and `old`,
    /// killed).
    pub routers: (RouterProcess, RouterProcess, EndpointLink),
}

impl StaleScene {
    /// Sets it up.
    pub async fn start(scene: &Scene) -> StaleScene {
        let start = |label: &str| {
            RouterProcess::start(
                label,
                scene.dir.path(),
                &router_args(scene.dir.path(), label, &scene.redis.url()),
            )
        };
        let mut old = start("old");
        let fresh = start("fresh");
        let mut redis = scene.redis.connection().expect("redis");
        let b = Identity::generate(Kind::Client, "b").expect("identity");
        let key = route_key(&b.name());
        let config = |r: &RouterProcess| {
            let mut c = attacker_config(r.addr(), r.name());
            c.transport.bind = SocketAddr::new(LOCAL, 0);
            c
        };
        let (old_link, _old_rx) = EndpointLink::connect(&b, &config(&old))
            .await
            .expect("b attaches to old");
        let old_name = old.name();
        let mut stale = None;
        eventually(WAIT, "old published b's record", || {
            stale = directory::read_field(&mut redis, &key, old_name).expect("redis");
            ready(stale.is_some())
        })
        .await;
        old.kill();
        drop(old_link);
        let (b_link, b_rx) = EndpointLink::connect(&b, &config(&fresh))
            .await
            .expect("b attaches to fresh");
        eventually(WAIT, "fresh published b's record", || {
            let found = directory::read_field(&mut redis, &key, fresh.name()).expect("redis");
            ready(found.is_some())
        })
        .await;
        // The attack: the old record, still valid, next to the fresh one.
        let stale = stale.expect("read above");
        directory::replay_field(&mut redis, &key, old_name, &stale).expect("redis");
        StaleScene {
            b,
            b_rx,
            routers: (old, fresh, b_link),
        }
    }
}
