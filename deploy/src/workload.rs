//! Scenario workloads: GDP clients that `gdp-deploy run` starts inside the
//! hosts' namespaces (as `gdp-deploy workload ...`), each writing one JSON
//! object per line ([`Event`]) to its standard output for the report.
//!
//! - `create`: makes the capsule a writer appends to, on a named capsule
//!   server, and writes its metadata to a file (before the clock starts);
//! - `writer`: appends one record at a time at a rate (each record's
//!   payload is its send time), logging each acknowledged append;
//! - `subscriber`: subscribes to the capsule from seqno 1 and logs each
//!   verified record received, with its latency from the writer's send;
//! - `ping`: pings a name at an interval, logging each round trip or loss;
//! - `stream-sink` and `stream-source`: datagrams at a rate from a client
//!   on one host to a client on another (each payload starts with the
//!   datagram's number and send time), the source logging each one sent,
//!   the sink each one received with its one-way latency.
//!
//! Every workload runs between two instants on the wall clock (`start_us`,
//! `end_us`, microseconds since the Unix epoch), so that all of them, and
//! the faults, share one time line. Errors are logged as events and the
//! workload goes on: the client reconnects by itself.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures::StreamExt as _;
use gdp_certs::codec::{Decode as _, Encode as _};
use gdp_client::{CapsuleSpec, Client, ClientOptions, Identity, Kind, Metadata, Name};
use serde::{Deserialize, Serialize};

/// What happened, as one line of a workload's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A writer's append was acknowledged (durable).
    Ack,
    /// A subscriber received a verified record.
    Record,
    /// A ping was answered.
    Pong,
    /// A ping was not answered in time.
    Lost,
    /// A stream's source sent a datagram.
    Sent,
    /// A stream's sink received a datagram.
    Datagram,
    /// Anything that failed (the workload goes on).
    Error,
}

/// One line of a workload's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, in microseconds since the Unix epoch.
    pub t_us: u64,
    /// What.
    pub kind: EventKind,
    /// The record's seqno (ack, record) or the ping's number (pong, lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seqno: Option<u64>,
    /// Ack: from the append's start; record: from the writer's send;
    /// pong: the round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn emit(kind: EventKind, seqno: Option<u64>, latency_us: Option<u64>, message: Option<String>) {
    let event = Event {
        t_us: now_us(),
        kind,
        seqno,
        latency_us,
        message,
    };
    if let Ok(line) = serde_json::to_string(&event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn error(message: impl std::fmt::Display) {
    emit(EventKind::Error, None, None, Some(message.to_string()));
}

/// Where a workload's client attaches.
#[derive(Debug, Clone)]
pub struct Attach {
    /// The router's address.
    pub router: SocketAddr,
    /// The router's name, which the link must prove.
    pub router_name: Option<Name>,
}

/// Client options for short experiments: a subscription that hears
/// nothing for 2 s checks where it stands (instead of after 10 s or 30 s),
/// and requests give up after 5 s so that failures show in the log.
fn options(attach: &Attach) -> ClientOptions {
    let mut o = ClientOptions::default();
    o.router = attach.router_name;
    o.request_timeout = Duration::from_secs(5);
    o.tree_refresh = Duration::from_secs(2);
    o.subscription_refresh = Duration::from_secs(2);
    o
}

/// Connects, retrying until `end_us`.
async fn connect(attach: &Attach, identity: &Identity, end_us: u64) -> anyhow::Result<Client> {
    loop {
        match Client::connect(attach.router, identity.clone(), options(attach)).await {
            Ok(c) => return Ok(c),
            Err(e) if now_us() < end_us => {
                error(format_args!("connecting to {}: {e}", attach.router));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => bail!("could not connect to {}: {e}", attach.router),
        }
    }
}

async fn sleep_until_us(t_us: u64) {
    let now = now_us();
    if t_us > now {
        tokio::time::sleep(Duration::from_micros(t_us - now)).await;
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Creates a capsule owned by the client key in `key_file` (made if
/// missing) on `server` and writes its metadata to `out`.
pub fn create(attach: &Attach, server: Name, key_file: &Path, out: &Path) -> anyhow::Result<()> {
    let (identity, _) = Identity::load_or_generate(key_file, Kind::Client, "scenario-writer")
        .with_context(|| format!("the key {}", key_file.display()))?;
    runtime()?.block_on(async {
        let deadline = now_us() + 30_000_000;
        let client = connect(attach, &identity, deadline).await?;
        let created = loop {
            match client
                .create_capsule(server, identity.secret_key(), CapsuleSpec::new("scenario"))
                .await
            {
                Ok(c) => break c,
                Err(e) if now_us() < deadline => {
                    eprintln!("creating the capsule: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => bail!("creating the capsule on {server}: {e}"),
            }
        };
        let md = created.capsule.metadata().to_bytes();
        let tmp = out.with_extension("tmp");
        std::fs::write(&tmp, &md).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
        println!("{}", created.capsule.name());
        client.shutdown().await;
        Ok(())
    })
}

fn read_metadata(path: &Path) -> anyhow::Result<Metadata> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Metadata::decode(Bytes::from(bytes)).with_context(|| format!("decoding {}", path.display()))
}

/// Appends a record every `1/rate` s from `start_us` to `end_us` with the
/// owner key in `key_file`, one at a time: a tick that comes while an
/// append waits is skipped.
pub fn writer(
    attach: &Attach,
    key_file: &Path,
    capsule: &Path,
    rate: f64,
    start_us: u64,
    end_us: u64,
) -> anyhow::Result<()> {
    if !(rate.is_finite() && rate > 0.0) {
        bail!("the rate must be above 0, not {rate}");
    }
    let (identity, _) = Identity::load_or_generate(key_file, Kind::Client, "scenario-writer")
        .with_context(|| format!("the key {}", key_file.display()))?;
    let md = read_metadata(capsule)?;
    runtime()?.block_on(async {
        let client = connect(attach, &identity, end_us).await?;
        let handle = client.capsule(md)?;
        let mut writer = loop {
            match handle.writer(identity.secret_key().clone()).await {
                Ok(w) => break w,
                Err(e) if now_us() < end_us => {
                    error(format_args!("opening the writer: {e}"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => bail!("opening the writer: {e}"),
            }
        };
        sleep_until_us(start_us).await;
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while now_us() < end_us {
            ticks.tick().await;
            let sent = now_us();
            if sent >= end_us {
                break;
            }
            let left = Duration::from_micros(end_us - sent);
            match tokio::time::timeout(left, writer.append(Bytes::from(sent.to_string()))).await {
                Ok(Ok(seqno)) => emit(
                    EventKind::Ack,
                    Some(seqno),
                    Some(now_us().saturating_sub(sent)),
                    None,
                ),
                Ok(Err(e)) => error(format_args!("append: {e}")),
                Err(_) => break,
            }
        }
        client.shutdown().await;
        Ok(())
    })
}

/// Follows the capsule in `capsule` from seqno 1 until `end_us`.
pub fn subscriber(attach: &Attach, capsule: &Path, end_us: u64) -> anyhow::Result<()> {
    let md = read_metadata(capsule)?;
    let identity = Identity::generate(Kind::Client, "scenario-subscriber")?;
    runtime()?.block_on(async {
        let client = connect(attach, &identity, end_us).await?;
        let handle = client.capsule(md)?;
        let mut records = handle.subscribe(1);
        let end = sleep_until_us(end_us);
        tokio::pin!(end);
        loop {
            tokio::select! {
                () = &mut end => break,
                next = records.next() => match next {
                    Some(Ok(record)) => {
                        let now = now_us();
                        let sent = std::str::from_utf8(record.payload())
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok());
                        emit(
                            EventKind::Record,
                            Some(record.seqno()),
                            sent.map(|s| now.saturating_sub(s)),
                            None,
                        );
                    }
                    Some(Err(e)) => error(format_args!("subscription: {e}")),
                    None => {
                        error("the subscription ended");
                        break;
                    }
                },
            }
        }
        drop(records);
        client.shutdown().await;
        Ok(())
    })
}

/// Pings `target` every `interval` from `start_us` to `end_us`; a ping not
/// answered within `timeout` is lost.
pub fn ping(
    attach: &Attach,
    target: Name,
    interval: Duration,
    timeout: Duration,
    start_us: u64,
    end_us: u64,
) -> anyhow::Result<()> {
    let identity = Identity::generate(Kind::Client, "scenario-ping")?;
    runtime()?.block_on(async {
        let client = connect(attach, &identity, end_us).await?;
        sleep_until_us(start_us).await;
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n = 0u64;
        while now_us() < end_us {
            ticks.tick().await;
            if now_us() >= end_us {
                break;
            }
            n += 1;
            match tokio::time::timeout(timeout, client.ping(target)).await {
                Ok(Ok(rtt)) => emit(
                    EventKind::Pong,
                    Some(n),
                    Some(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
                    None,
                ),
                Ok(Err(e)) => emit(EventKind::Lost, Some(n), None, Some(e.to_string())),
                Err(_) => emit(EventKind::Lost, Some(n), None, Some("timed out".into())),
            }
        }
        client.shutdown().await;
        Ok(())
    })
}

/// Receives a stream's datagrams as the client whose key is in `key_file`
/// (made if missing, so `run` knows the sink's name before it starts)
/// until `end_us`, logging each with its number and one-way latency.
pub fn stream_sink(attach: &Attach, key_file: &Path, end_us: u64) -> anyhow::Result<()> {
    let (identity, _) = Identity::load_or_generate(key_file, Kind::Client, "scenario-sink")?;
    runtime()?.block_on(async {
        let client = connect(attach, &identity, end_us).await?;
        loop {
            let left = end_us.saturating_sub(now_us());
            if left == 0 {
                break;
            }
            match tokio::time::timeout(Duration::from_micros(left), client.recv()).await {
                Ok(Ok(d)) => match stream_header(&d.payload) {
                    Some((n, sent_us)) => emit(
                        EventKind::Datagram,
                        Some(n),
                        Some(now_us().saturating_sub(sent_us)),
                        None,
                    ),
                    None => error(format_args!(
                        "a datagram of {} bytes from {}",
                        d.payload.len(),
                        d.src
                    )),
                },
                Ok(Err(e)) => {
                    error(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => break,
            }
        }
        client.shutdown().await;
        Ok(())
    })
}

/// The number and send time at the front of a stream's payload.
fn stream_header(payload: &[u8]) -> Option<(u64, u64)> {
    let n = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    let t = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((n, t))
}

/// Sends datagrams of `size` bytes to `dst` at `rate` a second from
/// `start_us` to `end_us`, reliably or as QUIC datagrams, logging each one
/// sent.
pub fn stream_source(
    attach: &Attach,
    dst: Name,
    rate: f64,
    size: usize,
    unreliable: bool,
    start_us: u64,
    end_us: u64,
) -> anyhow::Result<()> {
    let identity = Identity::generate(Kind::Client, "scenario-source")?;
    runtime()?.block_on(async {
        let client = connect(attach, &identity, end_us).await?;
        sleep_until_us(start_us).await;
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n = 0u64;
        while now_us() < end_us {
            ticks.tick().await;
            n += 1;
            let mut payload = vec![0u8; size.max(16)];
            payload[..8].copy_from_slice(&n.to_be_bytes());
            payload[8..16].copy_from_slice(&now_us().to_be_bytes());
            let sent = if unreliable {
                client.send_unreliable(dst, payload).await
            } else {
                client.send(dst, payload).await
            };
            match sent {
                Ok(_) => emit(EventKind::Sent, Some(n), None, None),
                Err(e) => error(e),
            }
        }
        client.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_line_of_json_each_without_empty_fields() {
        let e = Event {
            t_us: 5,
            kind: EventKind::Ack,
            seqno: Some(3),
            latency_us: Some(700),
            message: None,
        };
        let line = serde_json::to_string(&e).expect("encodes");
        assert_eq!(
            line,
            r#"{"t_us":5,"kind":"ack","seqno":3,"latency_us":700}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).expect("decodes"), e);
        let lost: Event =
            serde_json::from_str(r#"{"t_us":9,"kind":"lost","seqno":2,"message":"timed out"}"#)
                .expect("decodes");
        assert_eq!(lost.kind, EventKind::Lost);
        assert_eq!(lost.latency_us, None);
    }
}
