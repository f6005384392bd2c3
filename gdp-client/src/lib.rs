//! The GDP client SDK.
//!
//! A [`Client`] is one identity attached to one GDP router over a QUIC link
//! ([`gdp_link::endpoint`]). Requests travel as Capsule PDUs addressed to a
//! capsule's flat name; the router finds the server that advertised it.
//! Each request carries a fresh request id in the PDU's `seq`, and the
//! client's supervisor task (one per client) hands every answer to the
//! request with that id. When
//! the link drops, the supervisor reconnects with backoff and waiting
//! requests are sent again (every capsule request is idempotent), within
//! their timeout.
//!
//! Nothing received is trusted. A [`Capsule`] handle holds the capsule's
//! metadata (which hashes to its name) and checks every record it returns
//! against it: records come with a proof (a writer's heartbeat and a hash
//! path), and only records that verify become [`VerifiedRecord`]s. A
//! [`Writer`] builds hash-chained records itself, closes each batch with
//! one heartbeat and keeps many batches in flight. A [`Subscription`] is a
//! `futures::Stream` of verified records that resumes after link failures
//! and server restarts with no gap and no duplicate.
//!
//! The example below starts a whole GDP in this process (`local`, with the
//! feature of that name: three routers and a capsule server on loopback)
//! and uses it as any remote GDP:
//!
#![cfg_attr(feature = "local", doc = "```")]
#![cfg_attr(not(feature = "local"), doc = "```ignore")]
//! use futures::StreamExt;
//! use gdp_client::CapsuleSpec;
//! use gdp_client::local::LocalGdp;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gdp = LocalGdp::start(3).await?;
//! // A writer attached to the first router, a reader to the third.
//! let (client, me) = gdp.client(0, "writer").await?;
//! let (reader, _) = gdp.client(2, "reader").await?;
//!
//! // Create a capsule on the server, then append three records closed by
//! // one heartbeat.
//! let created = client.create_capsule(gdp.server_name(), me.secret_key(), CapsuleSpec::new("log")).await?;
//! let capsule = created.capsule;
//! let mut writer = capsule.writer(me.secret_key().clone()).await?;
//! writer.append_all(["a", "b", "c"].map(bytes::Bytes::from)).await?;
//!
//! // Reads are verified against the capsule's metadata, which the reader
//! // fetches by name and checks against the name.
//! let remote = reader.open(capsule.name()).await?;
//! assert_eq!(remote.read(2).await?.payload().as_ref(), b"b");
//!
//! // Follow the capsule from its first record on.
//! let mut records = remote.subscribe(1);
//! for want in ["a", "b", "c"] {
//!     let record = records.next().await.expect("the stream stays open")?;
//!     assert_eq!(record.payload().as_ref(), want.as_bytes());
//! }
//! drop(records);
//! client.shutdown().await;
//! reader.shutdown().await;
//! gdp.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! A capsule may also live on several servers: [`Client::create_replicated`]
//! places it, and a handle with a [`Replication`] writes every batch to
//! each replica (acknowledged by W of them) and reads from R of them (see
//! [`replicas`]).
//!
//! Against a real GDP, connect to a router's address instead:
//! `Client::connect(addr, identity, ClientOptions::default())`. The names,
//! keys and metadata a client works with are re-exported here ([`Identity`],
//! [`Name`], [`Kind`], [`Metadata`], [`PublicKey`], [`SecretKey`], ...), so
//! an application needs no other GDP crate.
//!
//! # Features
//!
//! The default build is the client alone. `local` adds `gdp_client::local`,
//! a whole GDP in this process, and with it the router and the capsule
//! server (and their Redis and redb backends). The `gdp` command is the
//! `gdp-cli` package.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod capsule;
pub mod capsule_file;
mod client;
mod connection;
mod error;
#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub mod local;
mod options;
pub mod replicas;
pub mod sealed;
mod subscription;
mod verified;
mod writer;

pub use capsule::{Capsule, READ_AHEAD};
pub use capsule_file::{CapsuleFile, CapsuleFileError};
pub use client::{
    CapsuleSpec, Client, Created, CreatedEncrypted, CreatedEncryptedReplicated, CreatedReplicated,
    DEFAULT_ADCERT_VALIDITY,
};
pub use connection::Datagram;
pub use error::ClientError;
pub use options::{
    ClientOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DATAGRAM_QUEUE, DEFAULT_EVENT_QUEUE,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_AHEAD, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_BYTES, DEFAULT_NO_ROUTE_RETRY, DEFAULT_PUBLISH_QUEUE,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRANSMIT_AFTER, DEFAULT_SUBSCRIPTION_REFRESH,
    DEFAULT_TREE_REFRESH, SubscribeMode,
};
pub use replicas::Replication;
pub use sealed::{Decryptor, OpenedRecord, ReaderView, SealedWriter};
pub use subscription::{Subscription, SubscriptionStats};
pub use verified::VerifiedRecord;
pub use writer::Writer;

pub use gdp_certs::cert::{AdCert, ReplicaSet, Validity};
pub use gdp_certs::{
    Encryption, EncryptionScheme, Identity, Kind, Metadata, Name, PublicIdentity, PublicKey,
    SecretKey, Timestamp,
};
pub use gdp_link::endpoint::Nak;
pub use gdp_proto::capsule::ErrorCode;
pub use gdp_proto::fork::ForkEvidence;
pub use gdp_proto::proof::ProofError;
