//! Property and negative tests of the certificate formats, through the public
//! API only: round trips, exact `encoded_len`, single-bit tampering,
//! truncation, trailing bytes and length limits.

use std::net::SocketAddr;

use gdp_certs::cert::{
    AdCert, CertError, DomainCert, MAX_ROUTE_ADDRESSES, MAX_ROUTE_RECORD_LEN, RouteRecord,
    RouteTarget, RtCert, Validity,
};
use gdp_certs::codec::{Decode, DecodeError, Encode};
use gdp_certs::{Identity, Kind, Metadata, Name, SecretKey, Timestamp};
use proptest::prelude::*;

/// A capsule, its owner, a server, a client and two routers, all from seeds.
#[derive(Debug, Clone)]
struct World {
    owner: SecretKey,
    capsule_md: Metadata,
    server: Identity,
    client: Identity,
    router: Identity,
    domain: SecretKey,
    validity: Validity,
    now: Timestamp,
}

fn identity(seed: [u8; 32], kind: Kind, label: &str) -> Identity {
    Identity::from_key(SecretKey::from_seed(&seed), kind, label, Timestamp(1))
        .expect("short label is within limits")
}

impl World {
    fn adcert(&self) -> AdCert {
        AdCert::issue(
            &self.owner,
            self.capsule_md.name(),
            self.server.name(),
            self.validity,
        )
    }
    fn rtcert(&self) -> RtCert {
        RtCert::issue_by(&self.server, self.router.name(), self.validity)
    }
    fn domain_cert(&self) -> DomainCert {
        DomainCert::issue(&self.domain, self.router.name(), self.validity)
    }
    /// Route target number `which` (0 router, 1 endpoint, 2 capsule) and the
    /// name it routes to.
    fn target(&self, which: u8) -> (Name, RouteTarget) {
        match which % 3 {
            0 => (self.router.name(), RouteTarget::Router),
            1 => (
                self.client.name(),
                RouteTarget::Endpoint {
                    endpoint_md: self.client.metadata().clone(),
                    rtcert: RtCert::issue_by(&self.client, self.router.name(), self.validity),
                },
            ),
            _ => (
                self.capsule_md.name(),
                RouteTarget::Capsule {
                    capsule_md: self.capsule_md.clone(),
                    adcert: self.adcert(),
                    server_md: self.server.metadata().clone(),
                    rtcert: self.rtcert(),
                },
            ),
        }
    }
}

fn arb_world() -> impl Strategy<Value = World> {
    (
        any::<[[u8; 32]; 5]>(),
        any::<[u8; 16]>(),
        any::<bool>(),
        "[a-z ]{0,24}",
        1u64..u64::MAX / 4,
        0u64..1_000_000_000,
        0u64..1_000_000_000,
    )
        .prop_map(
            |(seeds, nonce, constrain_hosting, label, now, before, after)| {
                let owner = SecretKey::from_seed(&seeds[0]);
                let server = identity(seeds[1], Kind::Server, "store");
                let hosting = if constrain_hosting {
                    vec![Name::from_bytes([9; 32]), server.name()]
                } else {
                    vec![]
                };
                let capsule_md = Metadata::capsule(
                    owner.public(),
                    vec![owner.public()],
                    label,
                    Timestamp(7),
                    hosting,
                )
                .expect("strategy stays within limits")
                .with_nonce(nonce);
                World {
                    owner,
                    capsule_md,
                    server,
                    client: identity(seeds[2], Kind::Client, "app"),
                    router: identity(seeds[3], Kind::Router, "edge"),
                    domain: SecretKey::from_seed(&seeds[4]),
                    validity: Validity::new(
                        Timestamp(now - before.min(now)),
                        Timestamp(now + after),
                    ),
                    now: Timestamp(now),
                }
            },
        )
}

fn arb_route() -> impl Strategy<Value = (World, RouteRecord)> {
    (
        arb_world(),
        any::<u8>(),
        proptest::collection::vec(any::<SocketAddr>(), 0..=MAX_ROUTE_ADDRESSES),
        proptest::option::of(any::<[u8; 32]>().prop_map(Name::from_bytes)),
        any::<[u8; 32]>(),
    )
        .prop_map(|(w, which, addresses, via, gateway)| {
            let (name, target) = w.target(which);
            // A record needs an address or a gateway.
            let via = if addresses.is_empty() {
                Some(via.unwrap_or(Name::from_bytes(gateway)))
            } else {
                via
            };
            let rec = RouteRecord::sign(&w.router, name, target, addresses, via, w.validity)
                .expect("strategy stays within limits");
            (w, rec)
        })
}

/// Decodes `bytes` as `T`, checks the round trip and the encoded length.
fn assert_round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let bytes = value.to_bytes();
    prop_assert_eq!(bytes.len(), value.encoded_len());
    let back = T::decode(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

/// `bytes` with bit `bit` (taken modulo its length in bits) flipped.
fn flip(bytes: &[u8], bit: prop::sample::Index) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let i = bit.index(bytes.len() * 8);
    out[i / 8] ^= 1 << (i % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn adcert_round_trips_and_verifies(w in arb_world()) {
        let cert = w.adcert();
        assert_round_trip(&cert)?;
        prop_assert!(cert.verify(&w.capsule_md, w.now).is_ok());
    }

    #[test]
    fn rtcert_round_trips_and_verifies(w in arb_world()) {
        let cert = w.rtcert();
        assert_round_trip(&cert)?;
        prop_assert!(cert.verify(w.server.metadata(), &w.router.name(), w.now).is_ok());
    }

    #[test]
    fn domain_cert_round_trips_and_verifies(w in arb_world()) {
        let cert = w.domain_cert();
        assert_round_trip(&cert)?;
        prop_assert!(cert.verify(w.router.metadata(), &[w.domain.public()], w.now).is_ok());
    }

    #[test]
    fn route_record_round_trips_and_verifies((w, rec) in arb_route()) {
        assert_round_trip(&rec)?;
        prop_assert!(rec.encoded_len() <= MAX_ROUTE_RECORD_LEN);
        let v = rec.verify(&rec.name(), w.now);
        prop_assert!(v.is_ok(), "{:?}", v);
        prop_assert_eq!(rec.router_name(), w.router.name());
    }

    #[test]
    fn adcert_bit_flip_fails(w in arb_world(), bit in any::<prop::sample::Index>()) {
        let bytes = flip(&w.adcert().to_bytes(), bit);
        if let Ok(c) = AdCert::decode(bytes) {
            prop_assert!(c.verify(&w.capsule_md, w.now).is_err());
        }
    }

    #[test]
    fn rtcert_bit_flip_fails(w in arb_world(), bit in any::<prop::sample::Index>()) {
        let bytes = flip(&w.rtcert().to_bytes(), bit);
        if let Ok(c) = RtCert::decode(bytes) {
            prop_assert!(c.verify(w.server.metadata(), &w.router.name(), w.now).is_err());
        }
    }

    #[test]
    fn domain_cert_bit_flip_fails(w in arb_world(), bit in any::<prop::sample::Index>()) {
        let bytes = flip(&w.domain_cert().to_bytes(), bit);
        if let Ok(c) = DomainCert::decode(bytes) {
            prop_assert!(c.verify(w.router.metadata(), &[w.domain.public()], w.now).is_err());
        }
    }

    #[test]
    fn route_record_bit_flip_fails((w, rec) in arb_route(), bit in any::<prop::sample::Index>()) {
        let bytes = flip(&rec.to_bytes(), bit);
        if let Ok(r) = RouteRecord::decode(bytes) {
            prop_assert!(r.verify(&rec.name(), w.now).is_err());
        }
    }

    #[test]
    fn every_prefix_is_truncated((_w, rec) in arb_route(), cut in any::<prop::sample::Index>()) {
        let bytes = rec.to_bytes();
        let n = cut.index(bytes.len());
        let err = RouteRecord::decode(bytes.slice(..n)).expect_err("a prefix is not a record");
        prop_assert!(matches!(err, DecodeError::Truncated { .. }), "{:?}", err);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = AdCert::decode(bytes.clone());
        let _ = RtCert::decode(bytes.clone());
        let _ = DomainCert::decode(bytes.clone());
        let _ = RouteRecord::decode(bytes);
    }

    #[test]
    fn decoders_never_panic_on_near_valid_records(
        (_w, rec) in arb_route(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = rec.to_bytes().to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = RouteRecord::decode(bytes);
    }
}

fn fixed_world() -> World {
    let owner = SecretKey::from_seed(&[1; 32]);
    let server = identity([2; 32], Kind::Server, "store");
    World {
        capsule_md: Metadata::capsule(
            owner.public(),
            vec![owner.public()],
            "c",
            Timestamp(7),
            vec![],
        )
        .expect("valid")
        .with_nonce([3; 16]),
        owner,
        server,
        client: identity([4; 32], Kind::Client, "app"),
        router: identity([5; 32], Kind::Router, "edge"),
        domain: SecretKey::from_seed(&[6; 32]),
        validity: Validity::new(Timestamp::from_secs(100), Timestamp::from_secs(200)),
        now: Timestamp::from_secs(150),
    }
}

#[test]
fn fixed_length_certs_report_truncation_and_trailing_bytes() {
    let w = fixed_world();
    let ad = w.adcert().to_bytes();
    for n in 0..ad.len() {
        assert!(matches!(
            AdCert::decode(ad.slice(..n)),
            Err(DecodeError::Truncated { .. })
        ));
    }
    let mut long = ad.to_vec();
    long.push(0);
    assert_eq!(
        AdCert::decode(long),
        Err(DecodeError::TrailingBytes {
            what: "advertisement certificate",
            count: 1
        })
    );
    let mut long = w.rtcert().to_bytes().to_vec();
    long.extend_from_slice(&[0, 0]);
    assert_eq!(
        RtCert::decode(long),
        Err(DecodeError::TrailingBytes {
            what: "router certificate",
            count: 2
        })
    );
    let mut long = w.domain_cert().to_bytes().to_vec();
    long.push(1);
    assert!(matches!(
        DomainCert::decode(long),
        Err(DecodeError::TrailingBytes { count: 1, .. })
    ));
}

#[test]
fn route_record_trailing_bytes() {
    let w = fixed_world();
    let (name, target) = w.target(2);
    let rec = RouteRecord::sign(
        &w.router,
        name,
        target,
        vec![SocketAddr::from(([192, 0, 2, 1], 4433))],
        None,
        w.validity,
    )
    .expect("signs");
    let mut long = rec.to_bytes().to_vec();
    long.push(0);
    assert_eq!(
        RouteRecord::decode(long),
        Err(DecodeError::TrailingBytes {
            what: "route record",
            count: 1
        })
    );
}

#[test]
fn embedded_metadata_beyond_limits() {
    let w = fixed_world();
    let (name, target) = w.target(2);
    let rec = RouteRecord::sign(
        &w.router,
        name,
        target,
        vec![],
        Some(Name::ZERO),
        w.validity,
    )
    .expect("signs");
    let mut bytes = rec.to_bytes().to_vec();
    // The capsule metadata follows the header, name, router metadata and
    // target tag; its writer count sits after version, kind, key, created,
    // label and nonce.
    let capsule_at = 2 + 32 + w.router.metadata().encoded_len() + 1;
    let writers_at = capsule_at + 1 + 1 + 32 + 8 + 1 + w.capsule_md.label().len() + 16;
    assert_eq!(bytes[writers_at], 1);
    bytes[writers_at] = 200;
    assert_eq!(
        RouteRecord::decode(bytes),
        Err(DecodeError::TooLong {
            what: "writer count",
            len: 200,
            max: gdp_certs::MAX_WRITERS
        })
    );
}

#[test]
fn unknown_version_and_type() {
    let w = fixed_world();
    let mut bytes = w.adcert().to_bytes().to_vec();
    bytes[0] = 2;
    assert_eq!(
        AdCert::decode(bytes.clone()),
        Err(DecodeError::UnknownValue {
            what: "certificate version",
            value: 2
        })
    );
    bytes[0] = 1;
    bytes[1] = 200;
    assert_eq!(
        AdCert::decode(bytes),
        Err(DecodeError::UnknownValue {
            what: "certificate type",
            value: 200
        })
    );
}

#[test]
fn a_signature_is_bound_to_its_certificate_type() {
    // An RtCert and an AdCert with the same names and validity have the same
    // body; the type byte and the signature context keep them apart.
    let w = fixed_world();
    let rt = RtCert::issue(&w.owner, w.capsule_md.name(), w.server.name(), w.validity);
    let mut bytes = rt.to_bytes().to_vec();
    bytes[1] = 1;
    let forged = AdCert::decode(bytes).expect("well-formed");
    assert_eq!(
        forged.verify(&w.capsule_md, w.now),
        Err(CertError::BadSignature {
            cert: "advertisement certificate"
        })
    );
}

#[test]
fn verified_values_encode_like_the_plain_ones() {
    let w = fixed_world();
    let cert = w.adcert();
    let verified = cert.verify(&w.capsule_md, w.now).expect("verifies");
    assert_eq!(verified.to_bytes(), cert.to_bytes());
    assert_eq!(verified.encoded_len(), cert.encoded_len());
}

#[test]
fn errors_tell_the_operator_what_failed() {
    let w = fixed_world();
    let late = Timestamp::from_secs(201);
    let err = w
        .rtcert()
        .verify(w.server.metadata(), &w.router.name(), late)
        .expect_err("expired");
    assert!(matches!(err, CertError::Expired { .. }));
    assert_eq!(
        err.to_string(),
        "certificate expired at 200.000000s (now 201.000000s)"
    );
    let err = w
        .domain_cert()
        .verify(w.router.metadata(), &[], w.now)
        .expect_err("untrusted");
    assert!(err.to_string().contains("not a trusted domain key"));
}
