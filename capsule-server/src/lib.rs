//! The GDP capsule server: durable DataCapsules with hash chains, proofs and
//! subscriptions.
//!
//! A capsule server stores capsules (single-writer logs of hash-chained
//! records, closed by writer heartbeats) and answers the capsule messages of
//! [`gdp_proto::capsule`]. It is built in three layers:
//!
//! - [`store`]: one redb database holding every capsule's metadata, AdCert,
//!   records (each beside its hash, re-checked on read), tail and fork
//!   evidence, checked when opened;
//! - [`committer`]: the one writer of the store, a thread that commits every
//!   write waiting in its queue in one durable transaction (group commit) and
//!   acknowledges each once it is on disk;
//! - [`service`]: the sans-IO capsule logic. [`service::CapsuleService`]
//!   takes requests and `now`, verifies heartbeats (in batches), checks
//!   chains against an optimistic tail so a writer can pipeline, detects
//!   forks, answers reads with proofs, and tracks subscribers; it returns
//!   responses and writes for its driver. Every peer's share of the server
//!   is bounded ([`limits`]: request and record rates, subscriptions per
//!   capsule and per peer, who may create capsules and how many) and every
//!   refusal is counted ([`stats`]).
//!
//! [`host`] drives a service with a committer on tokio, without any
//! network: the building block of the QUIC driver, and what the tests and
//! benchmarks use. [`driver`] is that QUIC driver: [`run`] attaches the
//! server to its router as an endpoint, advertises its capsules and serves
//! them, configured by a [`config::ServerConfig`] (the `gdp-capsule-server`
//! binary reads it from a TOML file; a router embeds a server by calling
//! [`run`] itself). The binary's command line and logging are the `daemon`
//! feature (on by default); a program that embeds a server depends on this
//! crate with `default-features = false`.
//!
//! ```
//! use gdp_capsule_server::committer::{Committer, CommitterConfig};
//! use gdp_capsule_server::host::{Host, HostConfig};
//! use gdp_capsule_server::service::{CapsuleService, Request};
//! use gdp_capsule_server::store::{Store, StoreOptions};
//! use gdp_capsule_server::limits::ServiceConfig;
//! use gdp_certs::cert::{AdCert, Validity};
//! use gdp_certs::{Identity, Kind, Metadata, SecretKey, Timestamp};
//! use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
//! use gdp_proto::chain::{Appender, ChainState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("gdp-doc-{}", std::process::id()));
//! let server = Identity::generate(Kind::Server, "store-1")?;
//! let (store, report) = Store::open(&dir, &StoreOptions::default())?;
//! let committer = Committer::spawn(store.clone(), CommitterConfig::default())?;
//! let service = CapsuleService::new(ServiceConfig::default(), server.name(), store, report)?;
//! let (out_tx, mut responses) = tokio::sync::mpsc::channel(64);
//! let host = Host::spawn(service, committer.handle(), out_tx, HostConfig::default());
//!
//! // A writer creates a capsule on this server and appends two records
//! // closed by one heartbeat.
//! let owner = SecretKey::generate();
//! let now = Timestamp::now();
//! let md = Metadata::capsule(owner.public(), vec![owner.public()], "log", now, vec![])?;
//! let adcert = AdCert::issue(&owner, md.name(), server.name(), Validity::new(now, Timestamp::MAX));
//! let client = gdp_certs::Name::from_bytes([7; 32]);
//! let send = |request_id, body| Request { capsule: md.name(), from: client, request_id, body };
//! host.handle().request(send(1, CapsuleRequest::Create { metadata: md.clone(), adcert })).await?;
//! assert_eq!(responses.recv().await.map(|r| r.body), Some(CapsuleResponse::Created));
//!
//! let mut writer = Appender::new(owner, &md, ChainState::new(md.name()))?;
//! let records = vec![writer.append("a".into(), now)?, writer.append("b".into(), now)?];
//! let heartbeat = writer.heartbeat().expect("two records appended");
//! host.handle().request(send(2, CapsuleRequest::Append { records, heartbeat })).await?;
//! assert_eq!(responses.recv().await.map(|r| r.body), Some(CapsuleResponse::Appended { tail: 2 }));
//!
//! // Reads come with a proof the reader checks against the metadata.
//! host.handle().request(send(3, CapsuleRequest::ReadRange { from: 1, to: 2 })).await?;
//! let Some(CapsuleResponse::Records { records, proof }) = responses.recv().await.map(|r| r.body)
//! else { panic!("records expected") };
//! proof.verify_range(&md, &records)?;
//!
//! host.shutdown().await?;
//! committer.shutdown();
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

#[cfg(feature = "daemon")]
pub mod admin;
pub mod committer;
pub mod config;
pub mod driver;
pub mod fork;
pub mod host;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod service;
pub mod stats;
pub mod store;

pub use driver::{ServerError, run, run_observed};
pub use observe::Observer;
