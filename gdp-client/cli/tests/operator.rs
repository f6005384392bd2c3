//! The operator's commands against real daemons: `gdp router ...` and
//! `gdp server ...` read a running `gdp-router` (with a real
//! `redis-server` as its directory, behind a password) and a running
//! `gdp-capsule-server` through their admin APIs, in text and JSON; the
//! password never shows; `gdp key show` reads every kind of key file.
//!
//! Run: `cargo test -p gdp-cli --test operator` (`redis-server` on PATH;
//! `scripts/test.sh` installs it).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gdp_certs::{Identity, Kind};
use gdp_testkit::RedisServer;
use gdp_testkit::{eventually_blocking, spawn_with_start_line, start_line_field, workspace_bin};
use serde_json::Value;

use common::{Router, TempDir};

const PASSWORD: &str = "hunter2-secret";

/// A `redis-server` that asks for [`PASSWORD`] (set once it answers, so
/// that the test kit's readiness check needs none).
fn redis_with_password() -> RedisServer {
    let redis = RedisServer::start();
    redis
        .query(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg(PASSWORD),
        )
        .expect("CONFIG SET requirepass");
    redis
}

/// `gdp ARGS` with a home of its own and nothing from the environment.
fn gdp(home: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gdp"));
    c.args(args).env("HOME", home).env_remove("RUST_LOG");
    for var in [
        "GDP_KEY",
        "GDP_ROUTER",
        "GDP_ROUTER_NAME",
        "GDP_CAPSULE_DIR",
        "GDP_LOG",
        "GDP_ROUTER_ADMIN",
        "GDP_SERVER_ADMIN",
        "XDG_CONFIG_HOME",
    ] {
        c.env_remove(var);
    }
    c.output().expect("gdp runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}stderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `gdp ARGS`, which must succeed; its standard output.
fn ok(home: &Path, args: &[&str]) -> String {
    let o = gdp(home, args);
    assert!(o.status.success(), "gdp {args:?}: {}", text(&o));
    String::from_utf8(o.stdout).expect("UTF-8")
}

/// `gdp --json ARGS`: one JSON value per line.
fn json_lines(home: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    ok(home, &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A `gdp-capsule-server` with its admin API on a free loopback port.
fn start_server(
    dir: &Path,
    router: &Router,
) -> (
    gdp_testkit::ChildGuard,
    gdp_certs::Name,
    SocketAddr,
    PathBuf,
) {
    let data_dir = dir.join("server");
    std::fs::create_dir_all(&data_dir).expect("server dir");
    let (proc, line) = spawn_with_start_line(
        Command::new(workspace_bin("gdp-capsule-server"))
            .args([
                "--data-dir",
                data_dir.to_str().expect("utf-8"),
                "--router",
                &router.addr.to_string(),
                "--router-name",
                &router.name.to_string(),
                "--admin",
                "127.0.0.1:0",
                "--log",
                "warn",
            ])
            .stderr(Stdio::inherit()),
        "server",
        None,
        Duration::from_secs(30),
    )
    .expect("the server starts");
    let name = start_line_field(&line, "name")
        .expect("name=")
        .parse()
        .expect("a name");
    let admin = start_line_field(&line, "admin")
        .expect("admin=")
        .parse()
        .expect("an address");
    let key = PathBuf::from(start_line_field(&line, "key").expect("key="));
    (proc, name, admin, key)
}

#[test]
fn every_operator_command_reads_a_real_router_and_capsule_server() {
    let redis = redis_with_password();
    let directory = format!("redis://:{PASSWORD}@{}", redis.addr());
    let dir = TempDir::new("operator");
    let router = Router::start_with_args(
        dir.path(),
        "router",
        "127.0.0.1:0",
        &directory,
        &["--admin", "127.0.0.1:0"],
    );
    let radmin = router
        .admin
        .expect("the router serves its admin API")
        .to_string();
    let (_server_proc, server, sadmin, server_key) = start_server(dir.path(), &router);
    let sadmin = sadmin.to_string();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let r = |view: &[&str]| {
        let mut args = vec!["router", "--admin", radmin.as_str()];
        args.extend_from_slice(view);
        args.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<String>>()
    };
    let run_ok =
        |args: Vec<String>| ok(&home, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let run_json =
        |args: Vec<String>| json_lines(&home, &args.iter().map(String::as_str).collect::<Vec<_>>());

    // Both daemons become ready: the router's record is in Redis, the
    // server is attached.
    eventually_blocking(Duration::from_secs(30), "the router is ready", || {
        gdp(&home, &["router", "--admin", &radmin, "health", "--ready"])
            .status
            .success()
    });
    eventually_blocking(Duration::from_secs(30), "the server is ready", || {
        gdp(&home, &["server", "--admin", &sadmin, "health", "--ready"])
            .status
            .success()
    });
    assert_eq!(run_ok(r(&["health"])).trim(), "ok");

    // A capsule with three records, made through the router.
    let router_addr = router.addr.to_string();
    let router_name = router.name.to_string();
    let net = [
        "--router",
        router_addr.as_str(),
        "--router-name",
        router_name.as_str(),
    ];
    let with_net = |args: &[&str]| {
        let mut all: Vec<&str> = net.to_vec();
        all.extend_from_slice(args);
        ok(&home, &all)
    };
    with_net(&["keygen"]);
    let created = with_net(&[
        "capsule",
        "create",
        "--server",
        &server.to_string(),
        "--label",
        "ops",
    ]);
    let capsule = created.lines().next().expect("a name").trim().to_owned();
    with_net(&["append", &capsule, "one", "two", "three"]);

    // Router: status.
    let status = &run_json(r(&["status"]))[0];
    assert_eq!(status["name"], router.name.to_string());
    assert_eq!(status["ready"], true);
    assert_eq!(status["directory"], "redis");
    assert!(run_ok(r(&["status"])).contains(&router.name.to_string()));

    // Links: the server's among them.
    let links = run_json(r(&["links"]));
    assert!(
        links.iter().any(|l| l["peer"] == server.to_string()
            && l["kind"] == "server"
            && l["role"] == "endpoint"
            && l["protocol"] == "gdp/2"),
        "{links:?}"
    );
    assert!(run_ok(r(&["links"])).starts_with("ID "));

    // FIB: the server and its capsule, local; paged one at a time.
    let fib = run_json(r(&["fib", "--all", "--limit", "1"]));
    for name in [server.to_string(), capsule.clone()] {
        assert!(
            fib.iter()
                .any(|e| e["name"] == name.as_str() && e["kind"] == "local"),
            "{name} in {fib:?}"
        );
    }
    let first = run_json(r(&["fib", "--limit", "1"]));
    assert_eq!(first.len(), 1);
    assert!(run_ok(r(&["fib"])).contains(&capsule));

    // Routes: the directory's record for the capsule, verified.
    let routes = &run_json(r(&["routes", &capsule]))[0];
    let records = routes["directory"]["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{routes:#}");
    assert_eq!(records[0]["verified"], true, "{routes:#}");
    assert_eq!(records[0]["target"], "capsule");
    assert_eq!(records[0]["server"], server.to_string());
    assert_eq!(routes["fib"]["kind"], "local");
    let shown = run_ok(r(&["routes", &capsule]));
    assert!(
        shown.contains("1 record(s)") && shown.contains("true"),
        "{shown}"
    );
    // A name nobody serves: no FIB entry, no record.
    let nobody = Identity::generate(Kind::Client, "nobody")
        .expect("identity")
        .name();
    let none = &run_json(r(&["routes", &nobody.to_string()]))[0];
    assert_eq!(none["fib"], Value::Null);
    assert_eq!(none["directory"]["records"], serde_json::json!([]));

    // Endpoints and capsules.
    let endpoints = run_json(r(&["endpoints"]));
    assert!(
        endpoints.iter().any(|e| e["name"] == server.to_string()
            && e["accepted"] == true
            && e["capsules"] == 1),
        "{endpoints:?}"
    );
    let capsules = run_json(r(&["capsules"]));
    assert_eq!(capsules.len(), 1, "{capsules:?}");
    assert_eq!(capsules[0]["capsule"], capsule.as_str());
    assert_eq!(capsules[0]["server"], server.to_string());
    assert!(run_ok(r(&["capsules"])).contains(&capsule));

    // Lookups: nothing is being resolved now.
    assert_eq!(run_json(r(&["lookups"])), Vec::<Value>::new());
    assert_eq!(run_ok(r(&["lookups"])).trim(), "(none)");

    // Directory: reachable; trust: the default policy.
    let d = &run_json(r(&["directory"]))[0];
    assert_eq!(d["backend"], "redis");
    assert_eq!(d["ping"]["ok"], true);
    assert!(d["publishes"].as_u64().expect("a count") >= 3, "{d}");
    let t = &run_json(r(&["trust"]))[0];
    assert_eq!(t["peering"], "vouched");
    assert_eq!(t["trusted_domains"], serde_json::json!([]));

    // Config: the directory's password masked, in text and JSON.
    let config = run_ok(r(&["config"]));
    assert!(!config.contains(PASSWORD), "{config}");
    assert!(config.contains("redis://:***@"), "{config}");
    let config = &run_json(r(&["config"]))[0];
    assert_eq!(
        config["directory"],
        format!("redis://:***@{}", redis.addr())
    );
    // And over plain HTTP, as any scraper sees it.
    let raw = ok(
        &home,
        &["router", "--admin", &format!("http://{radmin}/"), "config"],
    );
    assert!(!raw.contains(PASSWORD));

    // Server: status, health, capsules, config.
    let s = |view: &[&str]| {
        let mut args = vec!["server", "--admin", sadmin.as_str()];
        args.extend_from_slice(view);
        args.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<String>>()
    };
    let st = &run_json(s(&["status"]))[0];
    assert_eq!(st["name"], server.to_string());
    assert_eq!(st["router"], router.name.to_string());
    assert_eq!(st["capsules"], 1);
    assert_eq!(st["created"], 1);
    assert!(st["store_bytes"].as_u64().expect("a size") > 0);
    assert_eq!(run_ok(s(&["health"])).trim(), "ok");
    let hosted = run_json(s(&["capsules"]));
    assert_eq!(hosted.len(), 1);
    assert_eq!(hosted[0]["capsule"], capsule.as_str());
    assert_eq!(hosted[0]["newest"], 3);
    assert_eq!(hosted[0]["forks"], 0);
    assert!(run_ok(s(&["capsules"])).contains(&capsule));
    let sconfig = &run_json(s(&["config"]))[0];
    assert_eq!(sconfig["router"]["name"], router.name.to_string());
    // Its metrics count what happened.
    let metrics = http_get(&sadmin, "/metrics");
    assert!(
        metrics.contains("gdp_capsule_appended_records_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("gdp_capsule_commit_seconds"), "{metrics}");
    assert!(metrics.contains("gdp_capsule_store_bytes"), "{metrics}");

    // Key files of every kind.
    let rkey = router.data_dir.join("gdp-router.key");
    let shown = &json_lines(&home, &["key", "show", rkey.to_str().expect("utf-8")])[0];
    assert_eq!(shown["name"], router.name.to_string());
    assert_eq!(shown["kind"], "router");
    let shown = &json_lines(&home, &["key", "show", server_key.to_str().expect("utf-8")])[0];
    assert_eq!(shown["name"], server.to_string());
    assert_eq!(shown["kind"], "server");
    let domain_key = dir.path().join("domain.key");
    let dk = domain_key.to_str().expect("utf-8");
    let made = &json_lines(&home, &["domain", "keygen", "-o", dk])[0];
    let shown = &json_lines(&home, &["key", "show", dk])[0];
    assert_eq!(shown["kind"], "trust-domain");
    assert_eq!(shown["public_key"], made["public_key"]);
    let not_a_key = dir.path().join("nonsense");
    std::fs::write(&not_a_key, "nonsense").expect("written");
    let o = gdp(&home, &["key", "show", not_a_key.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // Nothing listening: health fails with one line.
    let o = gdp(&home, &["router", "--admin", "127.0.0.1:1", "health"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
}

#[test]
fn a_wrong_directory_password_is_never_printed() {
    let redis = redis_with_password();
    let dir = TempDir::new("operator-secret");
    let wrong = "not-the-password";
    let o = Command::new(workspace_bin("gdp-router"))
        .args([
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--directory",
            &format!("redis://:{wrong}@{}", redis.addr()),
        ])
        .output()
        .expect("gdp-router runs");
    assert!(!o.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all.contains(wrong), "{all}");
    assert!(all.contains(":***@"), "{all}");
}

/// `GET path` on `addr` with a bare HTTP/1.1 request: the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("writes");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("reads");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}
