//! The admin API against a router task in this process (memory directory,
//! real QUIC transport on loopback), over real HTTP.

use super::*;
use crate::config::RouterSettings;
use crate::core::{CoreConfig, RouterCore};
use crate::directory::{DirectoryConfig, MemoryDirectory};
use crate::driver::{DriverConfig, spawn};
use gdp_certs::Identity;
use gdp_link::{Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` over a fresh connection: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("writes");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("reads");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn every_path_answers_with_the_routers_state() {
    let id = Identity::generate(Kind::Router, "admin").expect("identity");
    let name = id.name();
    let (transport, events) = Transport::bind(
        id.clone(),
        TransportConfig::new("127.0.0.1:0".parse().expect("addr")),
    )
    .expect("binds");
    let core = RouterCore::new(
        id,
        CoreConfig {
            addresses: vec![transport.local_addr()],
            ..CoreConfig::default()
        },
    )
    .expect("valid core");
    let directory: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
    let running = spawn(
        core,
        transport,
        events,
        directory.clone(),
        DriverConfig::default(),
    );
    let settings = RouterSettings {
        directory: "redis://:hunter2@127.0.0.1:6379"
            .parse::<DirectoryConfig>()
            .expect("valid"),
        ..RouterSettings::default()
    };
    let server = AdminServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        running.handle().clone(),
        directory,
        settings.to_json(),
    )
    .await
    .expect("binds");
    let addr = server.local_addr();

    let (code, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(text.contains(&format!(
        "gdp_router_info{{name=\"{name}\",backend=\"memory\"}} 1"
    )));
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    // Ready once the router's own record is written, which the memory
    // directory does at once.
    let mut ready = get(addr, "/readyz").await;
    for _ in 0..50 {
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        ready = get(addr, "/readyz").await;
    }
    assert_eq!(ready, (200, "ready\n".to_owned()));

    let status = json(&get(addr, "/v1/status").await.1);
    assert_eq!(status["name"], name.to_string());
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["ready"], true);
    assert_eq!(status["links"], 0);
    assert_eq!(status["directory"], "memory");

    // A router needs no FIB entry for itself: the FIB is empty, and paged
    // all the same.
    let fib = json(&get(addr, "/v1/fib?limit=5").await.1);
    assert_eq!(fib["total"], 0);
    assert_eq!(fib["next"], Value::Null);
    let (code, body) = get(addr, "/v1/fib?after=nonsense").await;
    assert_eq!(code, 400, "{body}");

    assert_eq!(json(&get(addr, "/v1/links").await.1)["links"], json!([]));
    assert_eq!(
        json(&get(addr, "/v1/endpoints").await.1)["endpoints"],
        json!([])
    );
    assert_eq!(
        json(&get(addr, "/v1/capsules").await.1)["capsules"],
        json!([])
    );
    assert_eq!(
        json(&get(addr, "/v1/lookups").await.1)["lookups"],
        json!([])
    );

    // The router's own record, as the directory holds it, verified here.
    let routes = json(&get(addr, &format!("/v1/routes/{name}")).await.1);
    let records = routes["directory"]["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{routes:#}");
    assert_eq!(records[0]["verified"], true, "{routes:#}");
    assert_eq!(records[0]["target"], "router");
    assert_eq!(records[0]["router"], name.to_string());
    let (code, _) = get(addr, "/v1/routes/not-a-name").await;
    assert_eq!(code, 400);

    let dir = json(&get(addr, "/v1/directory").await.1);
    assert_eq!(dir["backend"], "memory");
    assert_eq!(dir["ping"]["ok"], true);
    assert_eq!(dir["publishes"], 1);

    let trust = json(&get(addr, "/v1/trust").await.1);
    assert_eq!(trust["peering"], "vouched");
    assert_eq!(trust["domain_cert"], Value::Null);

    // The password never shows; the rest of the URL does.
    let (code, config) = get(addr, "/v1/config").await;
    assert_eq!(code, 200);
    assert!(!config.contains("hunter2"), "{config}");
    assert_eq!(json(&config)["directory"], "redis://:***@127.0.0.1:6379");

    let (code, _) = get(addr, "/nowhere").await;
    assert_eq!(code, 404);
    let (code, index) = get(addr, "/").await;
    assert_eq!(code, 200);
    assert!(index.contains("/v1/routes/NAME"));

    server.stop().await;
    let summary = running.shutdown().await.expect("stops");
    assert_eq!(summary.withdrawn, 1);
}

#[test]
fn the_default_admin_address_is_loopback() {
    let s = RouterSettings::default();
    let addr = s.admin.expect("on by default");
    assert!(addr.ip().is_loopback(), "{addr}");
    assert!(!s.admin_configured);
}

#[test]
fn times_are_rfc3339() {
    assert_eq!(
        time(Timestamp::from_secs(1_800_000_000)),
        json!("2027-01-15T08:00:00Z")
    );
    assert_eq!(time(Timestamp::MAX), Value::Null);
}
