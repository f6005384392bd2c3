//! Shared fixtures for the certificate unit tests.

use std::net::SocketAddr;

use super::{AdCert, RouteRecord, RouteTarget, RtCert, Validity};
use crate::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};

/// The "current time" of the fixtures, inside [`Fixture::validity`].
pub(crate) const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

/// Deterministic principals and a capsule.
pub(crate) struct Fixture {
    pub(crate) owner: SecretKey,
    pub(crate) capsule_md: Metadata,
    pub(crate) server: Identity,
    pub(crate) client: Identity,
    pub(crate) router: Identity,
    pub(crate) other_router: Identity,
    pub(crate) validity: Validity,
}

fn principal(seed: u8, kind: Kind, label: &str) -> Identity {
    Identity::from_key(
        SecretKey::from_seed(&[seed; 32]),
        kind,
        label,
        Timestamp::from_secs(1_700_000_000),
    )
    .expect("fixture metadata is within limits")
}

/// Capsule metadata owned (and written) by `owner`, with a nonce from `seed`.
pub(crate) fn capsule_md(owner: &SecretKey, hosting: Vec<Name>, seed: u8) -> Metadata {
    Metadata::capsule(
        owner.public(),
        vec![owner.public()],
        "sensor log",
        Timestamp::from_secs(1_700_000_000),
        hosting,
    )
    .expect("fixture metadata is within limits")
    .with_nonce([seed; 16])
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let owner = SecretKey::from_seed(&[10; 32]);
        Fixture {
            capsule_md: capsule_md(&owner, vec![], 1),
            owner,
            server: principal(11, Kind::Server, "store-1"),
            client: principal(12, Kind::Client, "app"),
            router: principal(13, Kind::Router, "edge-1"),
            other_router: principal(14, Kind::Router, "edge-2"),
            validity: Validity::new(
                Timestamp::from_secs(1_799_990_000),
                Timestamp::from_secs(1_800_010_000),
            ),
        }
    }

    pub(crate) fn adcert(&self) -> AdCert {
        AdCert::issue(
            &self.owner,
            self.capsule_md.name(),
            self.server.name(),
            self.validity,
        )
    }

    pub(crate) fn server_rtcert(&self, router: Name) -> RtCert {
        RtCert::issue_by(&self.server, router, self.validity)
    }

    pub(crate) fn capsule_target(&self) -> RouteTarget {
        RouteTarget::Capsule {
            capsule_md: self.capsule_md.clone(),
            adcert: self.adcert(),
            server_md: self.server.metadata().clone(),
            rtcert: self.server_rtcert(self.router.name()),
        }
    }

    pub(crate) fn addresses() -> Vec<SocketAddr> {
        vec![
            "192.0.2.7:4433".parse().expect("literal address"),
            "[2001:db8::7]:4433".parse().expect("literal address"),
        ]
    }

    /// A valid route record for the capsule, published by `self.router`.
    pub(crate) fn capsule_route(&self) -> RouteRecord {
        RouteRecord::sign(
            &self.router,
            self.capsule_md.name(),
            self.capsule_target(),
            Self::addresses(),
            None,
            self.validity,
        )
        .expect("fixture record is within limits")
    }
}
