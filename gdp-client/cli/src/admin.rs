//! `gdp router ...` and `gdp server ...`: what a running daemon says about
//! itself through its admin API (see `gdp_router::admin` and
//! `gdp_capsule_server::admin`), as tables for people or, with `--json`,
//! one JSON object per line (per entry for lists).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use serde_json::Value;

use crate::cli::{Page, RouterAdmin, RouterView, ServerAdmin, ServerView};
use crate::context::Context;

/// An admin API at `host:port` (an `http://` prefix and a trailing `/`
/// are accepted).
struct Api {
    authority: String,
    timeout: Duration,
}

impl Api {
    fn new(spec: &str, timeout: Duration) -> anyhow::Result<Api> {
        let authority = spec
            .strip_prefix("http://")
            .unwrap_or(spec)
            .trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            bail!("{spec:?} is not an admin API address (host:port)");
        }
        Ok(Api {
            authority: authority.to_owned(),
            timeout,
        })
    }

    /// `GET path`: the status code and the body.
    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let fetch = async {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .with_context(|| format!("connecting to the admin API at {}", self.authority))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .context("HTTP handshake")?;
            tokio::spawn(connection);
            let request = hyper::Request::get(path)
                .header(hyper::header::HOST, &self.authority)
                .body(Empty::<Bytes>::new())
                .context("building the request")?;
            let response = sender
                .send_request(request)
                .await
                .with_context(|| format!("GET {path}"))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .context("reading the answer")?
                .to_bytes();
            anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| anyhow!("the admin API at {} did not answer in time", self.authority))?
    }

    /// `GET path`, which must answer 200 with JSON.
    async fn json(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.get(path).await?;
        if status != 200 {
            bail!("GET {path}: {status}: {}", body.trim());
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON"))
    }
}

/// A JSON value as table text: strings bare, null as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows of `items` under `columns` (header, JSON key), aligned.
fn table(items: &[Value], columns: &[(&str, &str)]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|(_, k)| cell(&item[*k])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(&mut out, columns.iter().map(|(h, _)| *h).collect());
    for r in &rows {
        line(&mut out, r.iter().map(String::as_str).collect());
    }
    out
}

/// `key  value` lines of an object's fields, in its order.
fn fields(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return cell(v);
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in map {
        let text = match v {
            Value::Object(_) | Value::Array(_) => v.to_string(),
            other => cell(other),
        };
        let _ = writeln!(out, "{k:<width$}  {text}");
    }
    out
}

/// Prints a list: a table, or one JSON object per entry.
fn list(ctx: &Context, items: &[Value], columns: &[(&str, &str)]) -> anyhow::Result<()> {
    if ctx.out.json {
        for item in items {
            ctx.out.emit("", item.clone())?;
        }
        Ok(())
    } else if items.is_empty() {
        ctx.out.emit("(none)", Value::Null)
    } else {
        ctx.out.emit(table(items, columns).trim_end(), Value::Null)
    }
}

/// Prints one object: `key  value` lines, or one JSON line.
fn object(ctx: &Context, v: Value) -> anyhow::Result<()> {
    ctx.out.emit(fields(&v).trim_end(), v)
}

/// Every entry of a paged list at `path` under `key`, one page or all.
async fn pages(api: &Api, path: &str, key: &str, page: &Page) -> anyhow::Result<Vec<Value>> {
    let mut after = page.after.clone();
    let mut all = Vec::new();
    loop {
        let mut url = format!("{path}?limit={}", page.limit);
        if let Some(a) = &after {
            let _ = write!(url, "&after={a}");
        }
        let v = api.json(&url).await?;
        all.extend(v[key].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(next) if page.all => after = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(all)
}

/// `/healthz` or `/readyz`: prints the answer, fails unless it is 200.
async fn health(ctx: &Context, api: &Api, ready: bool) -> anyhow::Result<()> {
    let path = if ready { "/readyz" } else { "/healthz" };
    let (status, body) = api.get(path).await?;
    let text = body.trim().to_owned();
    if status != 200 {
        bail!(
            "{}: {text}",
            if ready { "not ready" } else { "not healthy" }
        );
    }
    ctx.out.emit(
        &text,
        serde_json::json!({"status": status, "answer": text, "ready": ready}),
    )
}

pub(crate) async fn router(ctx: &Context, a: &RouterAdmin) -> anyhow::Result<()> {
    let api = Api::new(&a.admin, ctx.timeout)?;
    match &a.view {
        RouterView::Status => object(ctx, api.json("/v1/status").await?),
        RouterView::Health(h) => health(ctx, &api, h.ready).await,
        RouterView::Links => {
            let v = api.json("/v1/links").await?;
            list(
                ctx,
                v["links"].as_array().map_or(&[][..], Vec::as_slice),
                &[
                    ("ID", "id"),
                    ("KIND", "kind"),
                    ("ROLE", "role"),
                    ("DIR", "direction"),
                    ("REMOTE", "remote_addr"),
                    ("PROTO", "protocol"),
                    ("RTT_US", "rtt_us"),
                    ("QUEUED_B", "queued_bytes"),
                    ("SENT", "sent_pdus"),
                    ("RECEIVED", "received_pdus"),
                    ("PEER", "peer"),
                ],
            )
        }
        RouterView::Fib(page) => {
            let entries = pages(&api, "/v1/fib", "entries", page).await?;
            list(
                ctx,
                &entries,
                &[
                    ("NAME", "name"),
                    ("LINK", "link"),
                    ("KIND", "kind"),
                    ("EXPIRES", "expires"),
                ],
            )
        }
        RouterView::Routes(r) => {
            let name = crate::context::parse_name(&r.name, "the name")?;
            let v = api.json(&format!("/v1/routes/{name}")).await?;
            if ctx.out.json {
                return ctx.out.emit("", v);
            }
            let mut text = String::new();
            let _ = writeln!(text, "name  {name}");
            match v["fib"].as_object() {
                Some(f) => {
                    let _ = writeln!(
                        text,
                        "fib   link {} ({}), expires {}",
                        cell(&f["link"]),
                        cell(&f["kind"]),
                        cell(&f["expires"])
                    );
                }
                None => text.push_str("fib   no entry\n"),
            }
            if let Some(e) = v["directory"]["error"].as_str() {
                let _ = writeln!(text, "directory  unreachable: {e}");
            }
            let records = v["directory"]["records"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let _ = writeln!(text, "directory  {} record(s)", records.len());
            if !records.is_empty() {
                text.push_str(&table(
                    &records,
                    &[
                        ("VERIFIED", "verified"),
                        ("TARGET", "target"),
                        ("VIA", "via"),
                        ("NOT_AFTER", "not_after"),
                        ("ERROR", "error"),
                        ("ROUTER", "router"),
                    ],
                ));
            }
            ctx.out.emit(text.trim_end(), Value::Null)
        }
        RouterView::Endpoints => {
            let v = api.json("/v1/endpoints").await?;
            list(
                ctx,
                v["endpoints"].as_array().map_or(&[][..], Vec::as_slice),
                &[
                    ("NAME", "name"),
                    ("KIND", "kind"),
                    ("LINK", "link"),
                    ("CAPSULES", "capsules"),
                    ("ACCEPTED", "accepted"),
                    ("NOT_AFTER", "not_after"),
                ],
            )
        }
        RouterView::Capsules => {
            let v = api.json("/v1/capsules").await?;
            list(
                ctx,
                v["capsules"].as_array().map_or(&[][..], Vec::as_slice),
                &[
                    ("CAPSULE", "capsule"),
                    ("LINK", "link"),
                    ("NOT_AFTER", "not_after"),
                    ("SERVER", "server"),
                ],
            )
        }
        RouterView::Lookups => {
            let v = api.json("/v1/lookups").await?;
            list(
                ctx,
                v["lookups"].as_array().map_or(&[][..], Vec::as_slice),
                &[
                    ("NAME", "name"),
                    ("PHASE", "phase"),
                    ("PENDING", "pending_pdus"),
                    ("DEADLINE", "deadline"),
                    ("WAITING_FOR", "waiting_for"),
                ],
            )
        }
        RouterView::Directory => object(ctx, api.json("/v1/directory").await?),
        RouterView::Trust => object(ctx, api.json("/v1/trust").await?),
        RouterView::Config => config(ctx, api.json("/v1/config").await?),
    }
}

pub(crate) async fn server(ctx: &Context, a: &ServerAdmin) -> anyhow::Result<()> {
    let api = Api::new(&a.admin, ctx.timeout)?;
    match &a.view {
        ServerView::Status => object(ctx, api.json("/v1/status").await?),
        ServerView::Health(h) => health(ctx, &api, h.ready).await,
        ServerView::Capsules(page) => {
            let capsules = pages(&api, "/v1/capsules", "capsules", page).await?;
            let rows: Vec<Value> = capsules
                .into_iter()
                .map(|mut c| {
                    c["replica_set"] = c["replicas"]["version"].clone();
                    c
                })
                .collect();
            list(
                ctx,
                &rows,
                &[
                    ("CAPSULE", "capsule"),
                    ("NEWEST", "newest"),
                    ("REPLICA_SET", "replica_set"),
                    ("FORKS", "forks"),
                ],
            )
        }
        ServerView::Config => config(ctx, api.json("/v1/config").await?),
    }
}

/// Settings: indented JSON for people, one line with `--json`.
fn config(ctx: &Context, v: Value) -> anyhow::Result<()> {
    ctx.out.emit(format!("{v:#}"), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_show_nulls_as_dashes() {
        let items = vec![json!({"a": "x", "b": 1}), json!({"a": "longer", "b": null})];
        let t = table(&items, &[("A", "a"), ("B", "b")]);
        assert_eq!(t, "A       B\nx       1\nlonger  -\n");
    }

    #[test]
    fn addresses_take_an_optional_scheme() {
        let t = Duration::from_secs(1);
        assert_eq!(
            Api::new("127.0.0.1:7475", t).expect("ok").authority,
            "127.0.0.1:7475"
        );
        assert_eq!(
            Api::new("http://127.0.0.1:7475/", t).expect("ok").authority,
            "127.0.0.1:7475"
        );
        assert!(Api::new("http://h:1/v1/status", t).is_err());
        assert!(Api::new("", t).is_err());
    }
}
