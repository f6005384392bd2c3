//! The admin API of `gdp-capsule-server`, on the same stack as the
//! router's (axum on hyper), read-only.
//!
//! It listens on loopback by default ([`DEFAULT_ADMIN`], `127.0.0.1:7476`);
//! any other address only when configured, with a warning since it has no
//! authentication of its own. At most [`MAX_CONNECTIONS`] requests are
//! served at once, each within [`REQUEST_TIMEOUT`].
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text ([`crate::metrics`]; the store's size is read at the scrape) |
//! | `GET /healthz` | `200 ok` once the server runs (key loaded, store open, service started); `503` before |
//! | `GET /readyz` | `200 ready` while attached to a router (its capsules are advertised and routable); `503` and the reason otherwise |
//! | `GET /v1/status` | name, version, uptime, router, capsules, store size, service counters, refusals by reason |
//! | `GET /v1/capsules?after=NAME&limit=N` | hosted capsules in name order with their newest seqno, replica set version and forks; a page of at most `N` (default 100, at most 1000) |
//! | `GET /v1/config` | the settings in force |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gdp_certs::Name;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use crate::config::DEFAULT_ADMIN;
use crate::config::ServerConfig;
use crate::observe::Observer;
use crate::stats::Refusal;

/// Most requests served at once; more wait for a turn.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Capsules per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// The most capsules one page holds.
pub const MAX_PAGE: usize = 1000;

#[derive(Clone)]
struct AdminState {
    observer: Arc<Observer>,
    prometheus: PrometheusHandle,
    config: Arc<Value>,
    limit: Arc<Semaphore>,
}

/// Serves the admin API on `listener` until the process ends.
pub fn serve(
    listener: std::net::TcpListener,
    observer: Arc<Observer>,
    prometheus: PrometheusHandle,
    config: &ServerConfig,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let listener = TcpListener::from_std(listener)?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the admin API listens beyond loopback and has no authentication of its own");
    }
    let state = AdminState {
        observer,
        prometheus,
        config: Arc::new(config_json(config)),
        limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    let app = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/v1/capsules", get(capsules))
        .route("/v1/config", get(config_view))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: see / for the paths\n") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), bounded))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the admin API stopped");
        }
    });
    tracing::info!(%addr, "admin API at http://{addr}/ (metrics at /metrics)");
    Ok(())
}

async fn bounded(
    State(state): State<AdminState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = state.limit.clone().acquire_owned().await else {
        return unavailable("shutting down");
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => unavailable("the request took too long"),
    }
}

fn unavailable(why: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{value:#}\n"),
    )
        .into_response()
}

/// The store's database file size in bytes, if it can be read.
fn store_bytes(observer: &Observer) -> Option<u64> {
    let store = observer.store()?;
    std::fs::metadata(store.path()).ok().map(|m| m.len())
}

async fn index() -> &'static str {
    "gdp-capsule-server admin API\n\
     /metrics /healthz /readyz\n\
     /v1/status /v1/capsules?after=NAME&limit=N /v1/config\n"
}

async fn metrics(State(s): State<AdminState>) -> Response {
    if let Some(bytes) = store_bytes(&s.observer) {
        crate::metrics::store_bytes(bytes);
    }
    s.prometheus.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.prometheus.render(),
    )
        .into_response()
}

async fn healthz(State(s): State<AdminState>) -> Response {
    if s.observer.stats().is_some() {
        "ok\n".into_response()
    } else {
        unavailable("starting: the store or the service is not up yet")
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.observer.router() {
        Some(_) => "ready\n".into_response(),
        None => unavailable("not attached to a router"),
    }
}

async fn status(State(s): State<AdminState>) -> Response {
    let o = &s.observer;
    let hosted = match o.store().map(|st| st.capsule_names()) {
        Some(Ok(names)) => Some(names.len()),
        _ => None,
    };
    let stats = o.stats();
    let refused: serde_json::Map<String, Value> = stats
        .as_ref()
        .map(|st| {
            Refusal::ALL
                .iter()
                .map(|r| (r.label().to_owned(), json!(st.refused.get(*r))))
                .collect()
        })
        .unwrap_or_default();
    json_response(json!({
        "name": o.name().map(|n| n.to_string()),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": o.uptime_secs(),
        "router": o.router().map(|n| n.to_string()),
        "ready": o.router().is_some(),
        "capsules": hosted,
        "store_bytes": store_bytes(o),
        "created": stats.as_ref().map(|st| st.created),
        "peers_gone": stats.as_ref().map(|st| st.peers_gone),
        "publishes": stats.as_ref().map(|st| st.publishes),
        "sync_requests": stats.as_ref().map(|st| st.sync_requests),
        "synced_records": stats.as_ref().map(|st| st.synced_records),
        "forks_found": stats.as_ref().map(|st| st.forks_found),
        "refused": refused,
    }))
}

/// `?after=NAME&limit=N` of `/v1/capsules`.
#[derive(Debug, serde::Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn capsules(State(s): State<AdminState>, Query(q): Query<PageQuery>) -> Response {
    let after = match q.after.as_deref().map(str::parse::<Name>).transpose() {
        Ok(after) => after,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("after: {e}\n")).into_response(),
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let Some(store) = s.observer.store().cloned() else {
        return unavailable("the store is not open yet");
    };
    // Store reads are blocking: off the runtime's threads.
    let page = tokio::task::spawn_blocking(move || -> Result<Value, String> {
        let mut names = store.capsule_names().map_err(|e| e.to_string())?;
        names.sort();
        let total = names.len();
        let rest: Vec<Name> = names
            .into_iter()
            .filter(|n| after.is_none_or(|a| *n > a))
            .take(limit + 1)
            .collect();
        let next = (rest.len() > limit).then(|| rest[limit - 1]);
        let mut rows = Vec::with_capacity(limit);
        for name in rest.into_iter().take(limit) {
            let tail = store.tail(&name).map_err(|e| e.to_string())?;
            let replicas = store.replicas(&name).map_err(|e| e.to_string())?;
            let forks = store.forks(&name).map_err(|e| e.to_string())?;
            rows.push(json!({
                "capsule": name.to_string(),
                "newest": tail.map_or(0, |t| t.seqno),
                "replicas": replicas.map(|r| json!({
                    "version": r.version(),
                    "servers": r.servers().iter().map(ToString::to_string).collect::<Vec<_>>(),
                })),
                "forks": forks.len(),
            }));
        }
        Ok(json!({
            "capsules": rows,
            "next": next.map(|n| n.to_string()),
            "total": total,
        }))
    })
    .await;
    match page {
        Ok(Ok(v)) => json_response(v),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn config_view(State(s): State<AdminState>) -> Response {
    json_response((*s.config).clone())
}

/// The settings as JSON: durations in human form. The capsule server's
/// settings hold no secrets (its key lives in a file, named here).
pub fn config_json(c: &ServerConfig) -> Value {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let svc = &c.service;
    json!({
        "data_dir": c.data_dir.display().to_string(),
        "key_file": c.key_file().display().to_string(),
        "label": c.label,
        "log": c.log,
        "admin": match c.admin {
            None => Value::String(format!("{DEFAULT_ADMIN} (default)")),
            Some(a) => a.addr().map_or(Value::String("off".into()), |a: SocketAddr| Value::String(a.to_string())),
        },
        "router": {
            "address": c.router.address.map(|a| a.to_string()),
            "name": c.router.name.map(|n| n.to_string()),
            "rtcert_validity": d(c.router.rtcert_validity),
            "attach_timeout": d(c.router.attach_timeout),
            "retry_initial": d(c.router.retry_initial),
            "retry_max": d(c.router.retry_max),
        },
        "service": {
            "max_record_payload": svc.max_record_payload,
            "max_response_bytes": svc.max_response_bytes,
            "peer_requests": svc.peer_requests.map(|r| format!("{r:?}")),
            "capsule_records": svc.capsule_records.map(|r| format!("{r:?}")),
            "max_pending_bytes": svc.max_pending_bytes,
            "max_subscribers": svc.max_subscribers,
            "max_subscriptions_per_peer": svc.max_subscriptions_per_peer,
            "max_capsules": svc.max_capsules,
            "create_policy": format!("{:?}", svc.create_policy),
            "max_tracked_peers": svc.max_tracked_peers,
            "tree_lease": d(svc.tree_lease),
            "tree_tip_interval": d(svc.tree_tip_interval),
            "sync_interval": d(svc.sync_interval),
            "sync_timeout": d(svc.sync_timeout),
        },
        "store": format!("{:?}", c.store),
        "committer": format!("{:?}", c.committer),
        "host": format!("{:?}", c.host),
    })
}
