//! The admin API: what an operator asks a running router, over HTTP/1.1
//! (axum on hyper), read-only.
//!
//! It listens on loopback by default ([`DEFAULT_ADMIN`](crate::config::DEFAULT_ADMIN),
//! `127.0.0.1:7475`); any other address is used only when configured
//! (`--admin`, `GDP_ROUTER_ADMIN`, `admin` in the file), and a
//! non-loopback one is logged as a warning, since the API has no
//! authentication of its own. At most [`MAX_CONNECTIONS`] requests are
//! served at once, each within [`REQUEST_TIMEOUT`].
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text ([`crate::metrics`]) |
//! | `GET /healthz` | `200 ok` while the router's task answers within [`HEALTH_TIMEOUT`]; `503` otherwise: restart it |
//! | `GET /readyz` | `200 ready` once the router serves: its own route record was written to the directory and, behind a gateway, the gateway is linked; `503` and the reason otherwise: wait, or look at the directory |
//! | `GET /v1/status` | name, version, uptime, addresses, readiness, counts |
//! | `GET /v1/links` | every link: peer, kind, role, direction, address, RTT, queue, counters, the link protocol (`protocol`: `gdp/2` with compact stream frames, or `gdp/1`) and the bytes its stream carried (`sent_stream_bytes`) |
//! | `GET /v1/fib?after=NAME&limit=N` | FIB entries in name order, a page of at most `N` (default 100, at most 1000) after `NAME`; `next` names the following page |
//! | `GET /v1/endpoints` | attached endpoints |
//! | `GET /v1/capsules` | capsules advertised by attached servers |
//! | `GET /v1/lookups` | names being resolved, and PDUs waiting for them |
//! | `GET /v1/routes/NAME` | the FIB entry for `NAME` and every record the directory holds for it, each decoded and verified here |
//! | `GET /v1/directory` | the directory backend and its call counters, with a ping |
//! | `GET /v1/trust` | peering policy, trusted domains and peers, this router's domain certificate, each router link's trust |
//! | `GET /v1/config` | the settings in force, secrets masked |
//!
//! Times are RFC 3339 (UTC); names are the 52-character base32 text form.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gdp_certs::cert::{RouteRecord, RouteTarget};
use gdp_certs::codec::Decode;
use gdp_certs::{Kind, Name, Timestamp};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::core::{FibEntry, LinkRole, RouteKind};
use crate::directory::Directory;
use crate::driver::RouterHandle;
use crate::metrics::render;

/// Most requests served at once; more wait for a turn.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest one request may take, reading included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the router's task may take to answer `/healthz`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// FIB entries per page unless `limit` says otherwise.
pub const DEFAULT_FIB_PAGE: usize = 100;

/// What the handlers share.
#[derive(Clone)]
struct AdminState {
    router: RouterHandle,
    directory: Arc<dyn Directory>,
    /// The settings in force, secrets masked.
    config: Arc<Value>,
    started: Instant,
    limit: Arc<Semaphore>,
}

/// The running admin API.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Binds `addr` and serves the admin API of the router behind `router`.
    /// `config` is what `/v1/config` shows (masked by the caller).
    pub async fn start(
        addr: SocketAddr,
        router: RouterHandle,
        directory: Arc<dyn Directory>,
        config: Value,
    ) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the admin API listens beyond loopback and has no authentication of its own");
        }
        let state = AdminState {
            router,
            directory,
            config: Arc::new(config),
            started: Instant::now(),
            limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        };
        let app = app(state);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "the admin API stopped");
            }
        });
        tracing::info!(%addr, "admin API at http://{addr}/ (metrics at /metrics)");
        Ok(AdminServer { addr, stop, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

fn app(state: AdminState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/v1/links", get(links))
        .route("/v1/fib", get(fib))
        .route("/v1/endpoints", get(endpoints))
        .route("/v1/capsules", get(capsules))
        .route("/v1/lookups", get(lookups))
        .route("/v1/routes/{name}", get(routes))
        .route("/v1/directory", get(directory))
        .route("/v1/trust", get(trust))
        .route("/v1/config", get(config))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: see / for the paths\n") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), bounded))
        .with_state(state)
}

/// At most [`MAX_CONNECTIONS`] requests at once, each within
/// [`REQUEST_TIMEOUT`].
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

/// A JSON response.
fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{value:#}\n"),
    )
        .into_response()
}

/// RFC 3339, seconds precision; `null` for "never".
fn time(t: Timestamp) -> Value {
    if t == Timestamp::MAX {
        return Value::Null;
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_micros(t.0);
    Value::String(humantime::format_rfc3339_seconds(at).to_string())
}

fn kind_label(kind: Kind) -> String {
    kind.to_string()
}

fn route_kind_label(kind: RouteKind) -> &'static str {
    match kind {
        RouteKind::Local => "local",
        RouteKind::Neighbor => "neighbor",
        RouteKind::Vouched => "vouched",
        RouteKind::Cached => "cached",
        RouteKind::Static => "static",
    }
}

fn role_label(role: Option<LinkRole>) -> &'static str {
    match role {
        Some(LinkRole::Attaching) => "attaching",
        Some(LinkRole::Endpoint) => "endpoint",
        Some(LinkRole::RouterPending) => "router-pending",
        Some(LinkRole::Router) => "router",
        None => "closing",
    }
}

fn fib_entry(name: Name, e: &FibEntry) -> Value {
    json!({
        "name": name.to_string(),
        "link": e.next_hop.0,
        "kind": route_kind_label(e.kind),
        "expires": time(e.expires),
    })
}

async fn index() -> &'static str {
    "gdp-router admin API\n\
     /metrics /healthz /readyz\n\
     /v1/status /v1/links /v1/fib?after=NAME&limit=N /v1/endpoints /v1/capsules\n\
     /v1/lookups /v1/routes/NAME /v1/directory /v1/trust /v1/config\n"
}

async fn metrics(State(s): State<AdminState>) -> Response {
    match s.router.snapshot().await {
        Ok(snapshot) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            render(&snapshot),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn healthz(State(s): State<AdminState>) -> Response {
    match tokio::time::timeout(HEALTH_TIMEOUT, s.router.inspect(|_| ())).await {
        Ok(Ok(())) => "ok\n".into_response(),
        Ok(Err(e)) => unavailable(e),
        Err(_) => unavailable(format!(
            "the router did not answer within {HEALTH_TIMEOUT:?}"
        )),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.router.inspect(|core| core.readiness()).await {
        Ok(Ok(())) => "ready\n".into_response(),
        Ok(Err(why)) => unavailable(why),
        Err(e) => unavailable(e),
    }
}

async fn status(State(s): State<AdminState>) -> Response {
    let Ok(snapshot) = s.router.snapshot().await else {
        return unavailable("the router has stopped");
    };
    let Ok((ready, endpoints, capsules, lookups)) = s
        .router
        .inspect(|core| {
            (
                core.readiness(),
                core.endpoints().len(),
                core.capsules().len(),
                core.lookups().len(),
            )
        })
        .await
    else {
        return unavailable("the router has stopped");
    };
    let c = &snapshot.core;
    json_response(json!({
        "name": snapshot.name.to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": s.started.elapsed().as_secs(),
        "listen": s.router.local_addr().to_string(),
        "directory": snapshot.backend,
        "ready": ready.is_ok(),
        "not_ready_because": ready.err(),
        "links": snapshot.links.len(),
        "fib_entries": c.fib_entries,
        "endpoints": endpoints,
        "capsules": capsules,
        "lookups": lookups,
        "pending_pdus": c.pending,
        "forwarded": c.forwarded,
        "delivered_local": c.delivered_local,
        "dropped": c.dropped.total(),
        "queued_bytes": snapshot.queued_bytes(),
    }))
}

async fn links(State(s): State<AdminState>) -> Response {
    let Ok(snapshot) = s.router.snapshot().await else {
        return unavailable("the router has stopped");
    };
    let links: Vec<Value> = snapshot
        .links
        .iter()
        .map(|l| {
            json!({
                "id": l.id,
                "peer": l.peer.to_string(),
                "kind": kind_label(l.kind),
                "role": role_label(l.role),
                "direction": match l.direction {
                    gdp_link::Direction::Inbound => "inbound",
                    gdp_link::Direction::Outbound => "outbound",
                },
                "remote_addr": l.remote_addr.to_string(),
                "rtt_us": u64::try_from(l.stats.rtt.as_micros()).unwrap_or(u64::MAX),
                "queued_bytes": l.stats.queued_bytes,
                "queued_pdus": l.stats.queued_pdus,
                "sent_pdus": l.stats.sent_pdus,
                "sent_bytes": l.stats.sent_bytes,
                "sent_stream_bytes": l.stats.sent_stream_bytes,
                // The link protocol: gdp/2 carries compact stream frames.
                "protocol": if l.stats.compact_headers { "gdp/2" } else { "gdp/1" },
                "received_pdus": l.stats.received_pdus,
                "received_bytes": l.stats.received_bytes,
                "sent_datagrams": l.stats.sent_datagrams,
                "received_datagrams": l.stats.received_datagrams,
                "dropped_unreliable_out": l.stats.dropped_unreliable_out,
                "dropped_unreliable_in": l.stats.dropped_unreliable_in,
                "malformed": l.stats.malformed,
                "lost_packets": l.stats.lost_packets,
            })
        })
        .collect();
    json_response(json!({ "links": links }))
}

/// `?after=NAME&limit=N` of `/v1/fib`.
#[derive(Debug, serde::Deserialize)]
struct FibQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn fib(State(s): State<AdminState>, Query(q): Query<FibQuery>) -> Response {
    let after = match q.after.as_deref().map(str::parse::<Name>).transpose() {
        Ok(after) => after,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("after: {e}\n")).into_response(),
    };
    let limit = q.limit.unwrap_or(DEFAULT_FIB_PAGE);
    let Ok(page) = s
        .router
        .inspect(move |core| core.fib_page(after, limit))
        .await
    else {
        return unavailable("the router has stopped");
    };
    let entries: Vec<Value> = page.entries.iter().map(|(n, e)| fib_entry(*n, e)).collect();
    json_response(json!({
        "entries": entries,
        "next": page.next.map(|n| n.to_string()),
        "total": page.total,
    }))
}

async fn endpoints(State(s): State<AdminState>) -> Response {
    let Ok(list) = s.router.inspect(|core| core.endpoints()).await else {
        return unavailable("the router has stopped");
    };
    let list: Vec<Value> = list
        .iter()
        .map(|e| {
            json!({
                "name": e.name.to_string(),
                "kind": kind_label(e.kind),
                "link": e.link.0,
                "capsules": e.capsules,
                "not_after": time(e.not_after),
                "accepted": e.accepted,
            })
        })
        .collect();
    json_response(json!({ "endpoints": list }))
}

async fn capsules(State(s): State<AdminState>) -> Response {
    let Ok(list) = s.router.inspect(|core| core.capsules()).await else {
        return unavailable("the router has stopped");
    };
    let list: Vec<Value> = list
        .iter()
        .map(|c| {
            json!({
                "capsule": c.capsule.to_string(),
                "server": c.server.to_string(),
                "link": c.link.0,
                "not_after": time(c.not_after),
            })
        })
        .collect();
    json_response(json!({ "capsules": list }))
}

async fn lookups(State(s): State<AdminState>) -> Response {
    let Ok(list) = s.router.inspect(|core| core.lookups()).await else {
        return unavailable("the router has stopped");
    };
    let list: Vec<Value> = list
        .iter()
        .map(|l| {
            json!({
                "name": l.name.to_string(),
                "phase": l.phase,
                "waiting_for": l.waiting_for.map(|n| n.to_string()),
                "deadline": time(l.deadline),
                "pending_pdus": l.pending_pdus,
            })
        })
        .collect();
    json_response(json!({ "lookups": list }))
}

/// One directory record, decoded and verified for `name` at `now`.
fn record_report(name: Name, bytes: bytes::Bytes, now: Timestamp) -> Value {
    let record = match RouteRecord::decode(bytes) {
        Ok(r) => r,
        Err(e) => return json!({ "verified": false, "error": format!("undecodable: {e}") }),
    };
    let (target, server) = match record.target() {
        RouteTarget::Router => ("router", None),
        RouteTarget::Endpoint { endpoint_md, .. } => ("endpoint", Some(endpoint_md.name())),
        RouteTarget::Capsule { server_md, .. } => ("capsule", Some(server_md.name())),
    };
    let verdict = record.verify(&name, now);
    json!({
        "router": record.router_name().to_string(),
        "target": target,
        "server": server.map(|n| n.to_string()),
        "via": record.via().map(|n| n.to_string()),
        "addresses": record.addresses().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "not_before": time(record.validity().not_before),
        "not_after": time(record.validity().not_after),
        "verified": verdict.is_ok(),
        "error": verdict.err().map(|e| e.to_string()),
    })
}

async fn routes(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    let name: Name = match name.parse() {
        Ok(n) => n,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let Ok(fib) = s.router.inspect(move |core| core.fib().0.get(&name)).await else {
        return unavailable("the router has stopped");
    };
    let now = Timestamp::now();
    let directory = match s.directory.lookup(name).await {
        Ok(lookup) => {
            let records: Vec<Value> = lookup
                .records
                .into_iter()
                .map(|r| record_report(name, r, now))
                .collect();
            json!({
                "records": records,
                "skipped": {
                    "oversize": lookup.oversize,
                    "malformed": lookup.malformed,
                },
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    };
    json_response(json!({
        "name": name.to_string(),
        "fib": fib.map(|e| fib_entry(name, &e)),
        "directory": directory,
    }))
}

async fn directory(State(s): State<AdminState>) -> Response {
    let Ok(snapshot) = s.router.snapshot().await else {
        return unavailable("the router has stopped");
    };
    let ping = match s.directory.ping().await {
        Ok(rtt) => {
            json!({ "ok": true, "rtt_us": u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX) })
        }
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    };
    let d = &snapshot.driver.directory;
    json_response(json!({
        "backend": snapshot.backend,
        "ping": ping,
        "in_flight": snapshot.directory_in_flight,
        "lookups": snapshot.core.lookups,
        "lookup_failures": d.lookup_failures,
        "publishes": d.publishes,
        "publish_failures": d.publish_failures,
        "unpublishes": d.unpublishes,
        "unpublish_failures": d.unpublish_failures,
        "audits": d.audits,
        "audit_failures": d.audit_failures,
        "records_repaired": d.records_repaired,
        "bad_records": snapshot.core.bad_records,
    }))
}

async fn trust(State(s): State<AdminState>) -> Response {
    let Ok(t) = s.router.inspect(|core| core.trust()).await else {
        return unavailable("the router has stopped");
    };
    let links: Vec<Value> = t
        .router_links
        .iter()
        .map(|(link, peer, trusted)| {
            json!({
                "link": link.0,
                "peer": peer.to_string(),
                "trust": if *trusted { "trusted" } else { "vouched" },
            })
        })
        .collect();
    json_response(json!({
        "peering": t.peering.to_string(),
        "trusted_domains": t.trusted_domains.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "trusted_peers": t.trusted_peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "domain_cert": t.domain.map(|(domain, not_after)| json!({
            "domain": domain.to_string(),
            "not_after": time(not_after),
        })),
        "router_links": links,
    }))
}

async fn config(State(s): State<AdminState>) -> Response {
    json_response((*s.config).clone())
}

#[cfg(test)]
mod tests;
