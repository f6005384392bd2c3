//! The `gdp-capsule-server` binary's metrics endpoint: a real router
//! process, a real server process started with `--metrics 127.0.0.1:0`, a
//! client creating and appending through the router; the scrape counts
//! what the server did and refused.

mod net;
mod procs;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use gdp_proto::capsule::CapsuleResponse;
use gdp_testkit::{
    TempDir, Writer, eventually_blocking, scrape_metrics as scrape, spawn_with_start_line,
    start_line_field,
};
use net::{TestClient, is_error, server_identity};
use procs::start_router;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_counts_creates_appends_and_refusals() {
    let dir = TempDir::new("server-metrics");
    let (_router, router_addr, router_name) = start_router(&dir.subdir("router"), &[]);
    let server_dir = dir.subdir("server");
    let (id, key) = server_identity(&server_dir);
    let allowed = Writer::new(id.name(), "allowed");
    let stranger = Writer::new(id.name(), "not allowed");
    let config = server_dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[service]\ncreate_policy = {{ mode = \"allow-list\", creators = [\"{}\"] }}\n",
            allowed.owner.public()
        ),
    )
    .expect("config written");
    let log = server_dir.join("server.log");
    let (_server, line) = spawn_with_start_line(
        Command::new(env!("CARGO_BIN_EXE_gdp-capsule-server"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&server_dir)
            .arg("--key-file")
            .arg(&key)
            .args(["--router", &router_addr.to_string()])
            .args(["--router-name", &router_name.to_string()])
            .args(["--metrics", "127.0.0.1:0", "--log", "warn"])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("server log")),
        "capsule server",
        Some(&log),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let metrics: SocketAddr = start_line_field(&line, "admin")
        .expect("a metrics field")
        .parse()
        .expect("the bound metrics address");

    // Every reason shows up before any refusal.
    let first = scrape(metrics);
    assert_eq!(
        first.get("gdp_capsule_refused_total{reason=\"creator_not_allowed\"}"),
        Some(&0.0),
        "{first:?}"
    );
    // So do the delivery-tree figures.
    for key in [
        "gdp_capsule_tree_ignored_total{reason=\"not_router\"}",
        "gdp_capsule_tree_ignored_total{reason=\"not_hosted\"}",
        "gdp_capsule_publishes_total",
        "gdp_capsule_tree_leases",
    ] {
        assert_eq!(first.get(key), Some(&0.0), "{key}: {first:?}");
    }

    let mut client = TestClient::connect(router_addr).await;
    let (_, body) = client.call_when_routed(id.name(), &allowed.create()).await;
    assert_eq!(body, CapsuleResponse::Created);
    let mut allowed = allowed;
    let append = allowed.append(8);
    let (_, body) = client.call_when_routed(allowed.capsule(), &append).await;
    assert_eq!(body, CapsuleResponse::Appended { tail: 8 });
    let (_, body) = client.call_when_routed(id.name(), &stranger.create()).await;
    assert!(is_error(&body), "{body:?}");

    eventually_blocking(
        Duration::from_secs(10),
        "the scrape counts what happened",
        || {
            let m = scrape(metrics);
            let get = |k: &str| m.get(k).copied().unwrap_or(-1.0);
            get("gdp_capsule_created_total") == 1.0
                && get("gdp_capsule_hosted") == 1.0
                && get("gdp_capsule_appended_records_total") == 8.0
                && get("gdp_capsule_refused_total{reason=\"creator_not_allowed\"}") == 1.0
                && get("gdp_capsule_commits_total") >= 2.0
        },
    );
}
