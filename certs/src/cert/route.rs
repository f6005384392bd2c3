//! Route records: a router tells the directory where a name is reached.
//!
//! A route record carries every piece of metadata its chain of certificates
//! needs, so a reader that knows only the name it looked up can verify the
//! whole chain down to that name: the router's metadata proves the router's
//! key; an [`RtCert`] signed by the endpoint proves the endpoint chose this
//! router; for a capsule, an [`AdCert`] signed by the capsule's owner proves
//! the server may serve it.
//!
//! ```text
//! u8    version = 1
//! u8    type = 3
//! [32]  name routed to
//! ...   router metadata (its canonical encoding, kind router)
//! u8    target: 1 router     (the name is the router itself)
//!               2 endpoint   followed by: endpoint metadata, RtCert
//!               3 capsule    followed by: capsule metadata, AdCert,
//!                                         server metadata, RtCert
//! u8    address count (at most MAX_ROUTE_ADDRESSES), then each address:
//!         u8 4, [4] IPv4 address, u16 port
//!         u8 6, [16] IPv6 address, u16 port
//! u8    via present (0 or 1), then [32] gateway router name if 1
//! u64   not_before
//! u64   not_after   (the record's expiry)
//! [64]  signature by the router's key (SigContext::RouteRecord)
//! ```
//!
//! Metadata and embedded certificates are self-delimiting and appear exactly
//! as they do on their own. Addresses are canonical (see the `address`
//! module). A record has at least one address or a `via` gateway.

use std::net::SocketAddr;

use bytes::{BufMut, BytesMut};

use super::address::{MAX_ADDRESS_LEN, address_len, canonical, decode_address, encode_address};
use super::{
    ADCERT_LEN, AdCert, CertError, CertType, RTCERT_LEN, RtCert, Signed, Validity, Verified,
    check_kind, check_name, read_header,
};
use crate::codec::{Decode, DecodeError, Encode, Reader, put};
use crate::{
    Identity, Kind, MAX_METADATA_LEN, Metadata, NAME_LEN, Name, SIGNATURE_LEN, SigContext,
    Signature, Timestamp,
};

/// Maximum number of addresses in a route record.
pub const MAX_ROUTE_ADDRESSES: usize = 8;

/// Largest possible encoding of a route record.
pub const MAX_ROUTE_RECORD_LEN: usize = 2
    + NAME_LEN
    + MAX_METADATA_LEN
    + 1
    + (2 * MAX_METADATA_LEN + ADCERT_LEN + RTCERT_LEN)
    + 1
    + MAX_ROUTE_ADDRESSES * MAX_ADDRESS_LEN
    + 1
    + NAME_LEN
    + super::VALIDITY_LEN
    + SIGNATURE_LEN;

const TARGET_ROUTER: u8 = 1;
const TARGET_ENDPOINT: u8 = 2;
const TARGET_CAPSULE: u8 = 3;

/// What a route record's name is, and the certificates that prove the
/// router may route to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "records are decoded one at a time and kept behind the directory cache; boxing would only add allocations"
)]
pub enum RouteTarget {
    /// The name is the router itself.
    Router,
    /// The name is an endpoint (server or client) attached to the router.
    Endpoint {
        /// The endpoint's metadata; hashes to the record's name.
        endpoint_md: Metadata,
        /// The endpoint's certificate naming the router.
        rtcert: RtCert,
    },
    /// The name is a capsule hosted by a server attached to the router.
    Capsule {
        /// The capsule's metadata; hashes to the record's name.
        capsule_md: Metadata,
        /// The owner's certificate letting the server serve the capsule.
        adcert: AdCert,
        /// The server's metadata.
        server_md: Metadata,
        /// The server's certificate naming the router.
        rtcert: RtCert,
    },
}

impl RouteTarget {
    fn tag(&self) -> u8 {
        match self {
            RouteTarget::Router => TARGET_ROUTER,
            RouteTarget::Endpoint { .. } => TARGET_ENDPOINT,
            RouteTarget::Capsule { .. } => TARGET_CAPSULE,
        }
    }

    /// The latest instant at which every certificate of the target is still
    /// valid ([`Timestamp::MAX`] for a router, which has none).
    pub fn not_after(&self) -> Timestamp {
        match self {
            RouteTarget::Router => Timestamp::MAX,
            RouteTarget::Endpoint { rtcert, .. } => rtcert.validity().not_after,
            RouteTarget::Capsule { adcert, rtcert, .. } => {
                adcert.validity().not_after.min(rtcert.validity().not_after)
            }
        }
    }
}

impl Encode for RouteTarget {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.tag());
        match self {
            RouteTarget::Router => {}
            RouteTarget::Endpoint {
                endpoint_md,
                rtcert,
            } => {
                endpoint_md.encode(buf);
                rtcert.encode(buf);
            }
            RouteTarget::Capsule {
                capsule_md,
                adcert,
                server_md,
                rtcert,
            } => {
                capsule_md.encode(buf);
                adcert.encode(buf);
                server_md.encode(buf);
                rtcert.encode(buf);
            }
        }
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            RouteTarget::Router => 0,
            RouteTarget::Endpoint {
                endpoint_md,
                rtcert,
            } => endpoint_md.encoded_len() + rtcert.encoded_len(),
            RouteTarget::Capsule {
                capsule_md,
                adcert,
                server_md,
                rtcert,
            } => {
                capsule_md.encoded_len()
                    + adcert.encoded_len()
                    + server_md.encoded_len()
                    + rtcert.encoded_len()
            }
        }
    }
}

impl Decode for RouteTarget {
    const WHAT: &'static str = "route target";

    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.u8("route target")? {
            TARGET_ROUTER => Ok(RouteTarget::Router),
            TARGET_ENDPOINT => Ok(RouteTarget::Endpoint {
                endpoint_md: Metadata::decode_from(r)?,
                rtcert: RtCert::decode_from(r)?,
            }),
            TARGET_CAPSULE => Ok(RouteTarget::Capsule {
                capsule_md: Metadata::decode_from(r)?,
                adcert: AdCert::decode_from(r)?,
                server_md: Metadata::decode_from(r)?,
                rtcert: RtCert::decode_from(r)?,
            }),
            v => Err(DecodeError::UnknownValue {
                what: "route target",
                value: v.into(),
            }),
        }
    }
}

/// A route record: `name` is reached through the router described by
/// `router_md`, at `addresses` or through the gateway router `via`, signed
/// by the router.
///
/// A decoded `RouteRecord` is unchecked; [`RouteRecord::verify`] checks the
/// whole chain and returns a [`Verified<RouteRecord>`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRecord {
    name: Name,
    router_md: Metadata,
    target: RouteTarget,
    addresses: Vec<SocketAddr>,
    via: Option<Name>,
    validity: Validity,
    signature: Signature,
}

impl RouteRecord {
    /// Signs a record saying that `name` is reached through `router`.
    ///
    /// `target` carries the certificates that prove the router may route to
    /// `name` (see [`RouteTarget`]); `addresses` (at most
    /// [`MAX_ROUTE_ADDRESSES`]) are where the router accepts links, stored in
    /// canonical form; `via` names a gateway router for a router without a
    /// public address. A record needs at least one address or a `via`.
    pub fn sign(
        router: &Identity,
        name: Name,
        target: RouteTarget,
        addresses: Vec<SocketAddr>,
        via: Option<Name>,
        validity: Validity,
    ) -> Result<RouteRecord, CertError> {
        check_kind(router.metadata(), |k| k == Kind::Router, "router")?;
        if addresses.len() > MAX_ROUTE_ADDRESSES {
            return Err(CertError::TooManyAddresses {
                count: addresses.len(),
                max: MAX_ROUTE_ADDRESSES,
            });
        }
        if addresses.is_empty() && via.is_none() {
            return Err(CertError::NoAddress);
        }
        let mut record = RouteRecord {
            name,
            router_md: router.metadata().clone(),
            target,
            addresses: addresses.into_iter().map(canonical).collect(),
            via,
            validity,
            signature: Signature([0; SIGNATURE_LEN]),
        };
        record.signature = record.sign_with(router.secret_key());
        Ok(record)
    }

    /// The name this record routes to.
    pub fn name(&self) -> Name {
        self.name
    }
    /// The publishing router's metadata.
    pub fn router_md(&self) -> &Metadata {
        &self.router_md
    }
    /// The publishing router's name (derived from its metadata).
    pub fn router_name(&self) -> Name {
        self.router_md.name()
    }
    /// What the name is, with the certificates that prove the route.
    pub fn target(&self) -> &RouteTarget {
        &self.target
    }
    /// Where the router accepts links.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }
    /// The gateway router to go through, if the router has no public address.
    pub fn via(&self) -> Option<Name> {
        self.via
    }
    /// When the record is valid.
    pub fn validity(&self) -> Validity {
        self.validity
    }
    /// The record's expiry (`validity().not_after`).
    pub fn expires(&self) -> Timestamp {
        self.validity.not_after
    }
    /// The latest instant at which the record and every certificate in its
    /// chain are still valid: when a cache must drop it.
    pub fn chain_not_after(&self) -> Timestamp {
        self.validity.not_after.min(self.target.not_after())
    }
    /// The router's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks the record at `now` for a reader that looked up `looked_up`.
    ///
    /// Checks that the record is for `looked_up`; the router metadata is a
    /// router's; the chain proves the name: for [`RouteTarget::Router`] the
    /// name is the router's own, for [`RouteTarget::Endpoint`] the endpoint
    /// metadata hashes to the name and its RtCert names this router, for
    /// [`RouteTarget::Capsule`] the capsule metadata hashes to the name, its
    /// AdCert lets the carried server serve it, and the server's RtCert names
    /// this router; every certificate, and the record itself, is valid at
    /// `now`; and the record is signed by the router.
    pub fn verify(
        &self,
        looked_up: &Name,
        now: Timestamp,
    ) -> Result<Verified<RouteRecord>, CertError> {
        if &self.name != looked_up {
            return Err(CertError::NameNotCovered {
                looked_up: *looked_up,
                record: self.name,
            });
        }
        check_kind(&self.router_md, |k| k == Kind::Router, "router")?;
        self.validity.check(now)?;
        let router = self.router_md.name();
        match &self.target {
            RouteTarget::Router => {
                if router != self.name {
                    return Err(CertError::NameMismatch {
                        expected: self.name,
                        actual: router,
                    });
                }
            }
            RouteTarget::Endpoint {
                endpoint_md,
                rtcert,
            } => {
                check_name(endpoint_md, &self.name)?;
                rtcert.verify(endpoint_md, &router, now)?;
            }
            RouteTarget::Capsule {
                capsule_md,
                adcert,
                server_md,
                rtcert,
            } => {
                check_name(capsule_md, &self.name)?;
                check_kind(server_md, |k| k == Kind::Server, "server")?;
                let server = server_md.name();
                if adcert.server() != server {
                    return Err(CertError::WrongServer {
                        expected: server,
                        found: adcert.server(),
                    });
                }
                adcert.verify(capsule_md, now)?;
                rtcert.verify(server_md, &router, now)?;
            }
        }
        self.check_signature(self.router_md.key())?;
        Ok(Verified::new(self.clone()))
    }
}

impl Signed for RouteRecord {
    const TYPE: CertType = CertType::RouteRecord;
    const CONTEXT: SigContext = SigContext::RouteRecord;
    const WHAT: &'static str = "route record";

    fn encode_fields(&self, buf: &mut BytesMut) {
        self.name.encode(buf);
        self.router_md.encode(buf);
        self.target.encode(buf);
        debug_assert!(self.addresses.len() <= MAX_ROUTE_ADDRESSES);
        buf.put_u8(self.addresses.len() as u8);
        for a in &self.addresses {
            encode_address(a, buf);
        }
        put::bool(buf, self.via.is_some());
        if let Some(via) = &self.via {
            via.encode(buf);
        }
        self.validity.encode(buf);
    }

    fn fields_len(&self) -> usize {
        NAME_LEN
            + self.router_md.encoded_len()
            + self.target.encoded_len()
            + 1
            + self.addresses.iter().map(address_len).sum::<usize>()
            + 1
            + self.via.map_or(0, |_| NAME_LEN)
            + super::VALIDITY_LEN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }
}

impl Encode for RouteRecord {
    fn encode(&self, buf: &mut BytesMut) {
        self.encode_cert(buf);
    }
    fn encoded_len(&self) -> usize {
        self.cert_len()
    }
}

impl Decode for RouteRecord {
    const WHAT: &'static str = "route record";

    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        read_header::<Self>(r)?;
        let name = Name::decode_from(r)?;
        let router_md = Metadata::decode_from(r)?;
        let target = RouteTarget::decode_from(r)?;
        let count = usize::from(r.u8("route addresses")?);
        if count > MAX_ROUTE_ADDRESSES {
            return Err(DecodeError::TooLong {
                what: "route addresses",
                len: count,
                max: MAX_ROUTE_ADDRESSES,
            });
        }
        let mut addresses = Vec::with_capacity(count);
        for _ in 0..count {
            addresses.push(decode_address(r)?);
        }
        let via = if r.bool("route via present")? {
            Some(Name::decode_from(r)?)
        } else {
            None
        };
        if addresses.is_empty() && via.is_none() {
            return Err(DecodeError::Invalid {
                what: "route record with neither addresses nor via",
            });
        }
        let validity = Validity::decode_from(r)?;
        let signature = Signature::decode_from(r)?;
        Ok(RouteRecord {
            name,
            router_md,
            target,
            addresses,
            via,
            validity,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use crate::cert::testutil::*;
    use std::net::SocketAddrV6;

    #[test]
    fn capsule_route_verifies() {
        let f = Fixture::new();
        let rec = f.capsule_route();
        let bytes = rec.to_bytes();
        assert_eq!(bytes.len(), rec.encoded_len());
        assert!(bytes.len() <= MAX_ROUTE_RECORD_LEN);
        let back = RouteRecord::decode(bytes).expect("decodes");
        let v = back.verify(&f.capsule_md.name(), NOW).expect("verifies");
        assert_eq!(v.router_name(), f.router.name());
        assert_eq!(v.addresses(), Fixture::addresses().as_slice());
        assert_eq!(v.expires(), f.validity.not_after);
    }

    #[test]
    fn router_and_endpoint_routes_verify() {
        let f = Fixture::new();
        let rec = RouteRecord::sign(
            &f.router,
            f.router.name(),
            RouteTarget::Router,
            Fixture::addresses(),
            None,
            f.validity,
        )
        .expect("signs");
        assert!(rec.verify(&f.router.name(), NOW).is_ok());
        assert_eq!(rec.chain_not_after(), f.validity.not_after);

        let rec = RouteRecord::sign(
            &f.router,
            f.client.name(),
            RouteTarget::Endpoint {
                endpoint_md: f.client.metadata().clone(),
                rtcert: RtCert::issue_by(&f.client, f.router.name(), f.validity),
            },
            vec![],
            Some(f.other_router.name()),
            f.validity,
        )
        .expect("signs");
        let v = rec.verify(&f.client.name(), NOW).expect("verifies");
        assert_eq!(v.via(), Some(f.other_router.name()));
        assert!(v.addresses().is_empty());
    }

    #[test]
    fn record_for_another_name() {
        let f = Fixture::new();
        let rec = f.capsule_route();
        assert_eq!(
            rec.verify(&f.server.name(), NOW),
            Err(CertError::NameNotCovered {
                looked_up: f.server.name(),
                record: f.capsule_md.name()
            })
        );
    }

    #[test]
    fn rtcert_naming_another_router() {
        let f = Fixture::new();
        // The server attached to other_router; router publishes anyway.
        let target = RouteTarget::Capsule {
            capsule_md: f.capsule_md.clone(),
            adcert: f.adcert(),
            server_md: f.server.metadata().clone(),
            rtcert: f.server_rtcert(f.other_router.name()),
        };
        let rec = RouteRecord::sign(
            &f.router,
            f.capsule_md.name(),
            target,
            Fixture::addresses(),
            None,
            f.validity,
        )
        .expect("signs");
        assert_eq!(
            rec.verify(&f.capsule_md.name(), NOW),
            Err(CertError::WrongRouter {
                expected: f.router.name(),
                found: f.other_router.name()
            })
        );

        let endpoint = RouteRecord::sign(
            &f.router,
            f.server.name(),
            RouteTarget::Endpoint {
                endpoint_md: f.server.metadata().clone(),
                rtcert: f.server_rtcert(f.other_router.name()),
            },
            Fixture::addresses(),
            None,
            f.validity,
        )
        .expect("signs");
        assert!(matches!(
            endpoint.verify(&f.server.name(), NOW),
            Err(CertError::WrongRouter { .. })
        ));
    }

    #[test]
    fn adcert_for_another_server() {
        let f = Fixture::new();
        let target = RouteTarget::Capsule {
            capsule_md: f.capsule_md.clone(),
            adcert: AdCert::issue(&f.owner, f.capsule_md.name(), f.client.name(), f.validity),
            server_md: f.server.metadata().clone(),
            rtcert: f.server_rtcert(f.router.name()),
        };
        let rec = RouteRecord::sign(
            &f.router,
            f.capsule_md.name(),
            target,
            Fixture::addresses(),
            None,
            f.validity,
        )
        .expect("signs");
        assert_eq!(
            rec.verify(&f.capsule_md.name(), NOW),
            Err(CertError::WrongServer {
                expected: f.server.name(),
                found: f.client.name()
            })
        );
    }

    #[test]
    fn router_target_for_another_name() {
        let f = Fixture::new();
        let rec = RouteRecord::sign(
            &f.router,
            f.other_router.name(),
            RouteTarget::Router,
            Fixture::addresses(),
            None,
            f.validity,
        )
        .expect("signs");
        assert_eq!(
            rec.verify(&f.other_router.name(), NOW),
            Err(CertError::NameMismatch {
                expected: f.other_router.name(),
                actual: f.router.name()
            })
        );
    }

    #[test]
    fn expired_link_in_the_chain() {
        let f = Fixture::new();
        let short = Validity::new(f.validity.not_before, NOW);
        let target = RouteTarget::Capsule {
            capsule_md: f.capsule_md.clone(),
            adcert: AdCert::issue(&f.owner, f.capsule_md.name(), f.server.name(), short),
            server_md: f.server.metadata().clone(),
            rtcert: f.server_rtcert(f.router.name()),
        };
        let rec = RouteRecord::sign(
            &f.router,
            f.capsule_md.name(),
            target,
            Fixture::addresses(),
            None,
            f.validity,
        )
        .expect("signs");
        assert_eq!(rec.chain_not_after(), NOW);
        assert!(rec.verify(&f.capsule_md.name(), NOW).is_ok());
        let later = Timestamp(NOW.0 + 1);
        assert_eq!(
            rec.verify(&f.capsule_md.name(), later),
            Err(CertError::Expired {
                not_after: NOW,
                now: later
            })
        );
    }

    #[test]
    fn signed_by_a_router_key_that_is_not_in_the_metadata() {
        let f = Fixture::new();
        let mut rec = f.capsule_route();
        rec.signature = rec.sign_with(&SecretKey::from_seed(&[77; 32]));
        assert_eq!(
            rec.verify(&f.capsule_md.name(), NOW),
            Err(CertError::BadSignature {
                cert: "route record"
            })
        );
    }

    #[test]
    fn published_by_a_non_router() {
        let f = Fixture::new();
        assert_eq!(
            RouteRecord::sign(
                &f.client,
                f.client.name(),
                RouteTarget::Router,
                Fixture::addresses(),
                None,
                f.validity,
            ),
            Err(CertError::WrongKind {
                expected: "router",
                found: Kind::Client
            })
        );
    }

    #[test]
    fn address_limits_on_sign() {
        let f = Fixture::new();
        let many: Vec<SocketAddr> = (0..=MAX_ROUTE_ADDRESSES as u16)
            .map(|p| SocketAddr::from(([10, 0, 0, 1], p)))
            .collect();
        let sign = |addresses, via| {
            RouteRecord::sign(
                &f.router,
                f.router.name(),
                RouteTarget::Router,
                addresses,
                via,
                f.validity,
            )
        };
        assert_eq!(
            sign(many, None),
            Err(CertError::TooManyAddresses {
                count: MAX_ROUTE_ADDRESSES + 1,
                max: MAX_ROUTE_ADDRESSES
            })
        );
        assert_eq!(sign(vec![], None), Err(CertError::NoAddress));
    }

    #[test]
    fn addresses_are_stored_canonically() {
        let f = Fixture::new();
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:80".parse().expect("literal");
        let scoped = SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().expect("literal"),
            9,
            5,
            3,
        ));
        let rec = RouteRecord::sign(
            &f.router,
            f.router.name(),
            RouteTarget::Router,
            vec![mapped, scoped],
            None,
            f.validity,
        )
        .expect("signs");
        assert_eq!(
            rec.addresses(),
            &[
                "192.0.2.1:80".parse::<SocketAddr>().expect("literal"),
                "[fe80::1]:9".parse::<SocketAddr>().expect("literal"),
            ]
        );
        assert_eq!(RouteRecord::decode(rec.to_bytes()), Ok(rec));
    }

    /// Offset of the address count in an encoded router-target record.
    fn address_count_offset(rec: &RouteRecord) -> usize {
        2 + NAME_LEN + rec.router_md().encoded_len() + 1
    }

    #[test]
    fn decode_rejects_bad_address_fields() {
        let f = Fixture::new();
        let rec = RouteRecord::sign(
            &f.router,
            f.router.name(),
            RouteTarget::Router,
            vec!["[2001:db8::1]:1".parse().expect("literal")],
            None,
            f.validity,
        )
        .expect("signs");
        let at = address_count_offset(&rec);
        let bytes = rec.to_bytes().to_vec();

        let mut too_many = bytes.clone();
        too_many[at] = 9;
        assert_eq!(
            RouteRecord::decode(too_many),
            Err(DecodeError::TooLong {
                what: "route addresses",
                len: 9,
                max: MAX_ROUTE_ADDRESSES
            })
        );

        let mut none = bytes.clone();
        none[at] = 0;
        none.drain(at + 1..at + 1 + 19);
        assert_eq!(
            RouteRecord::decode(none),
            Err(DecodeError::Invalid {
                what: "route record with neither addresses nor via"
            })
        );

        let mut via_flag = bytes;
        via_flag[at + 1 + 19] = 2;
        assert_eq!(
            RouteRecord::decode(via_flag),
            Err(DecodeError::UnknownValue {
                what: "route via present",
                value: 2
            })
        );
    }

    #[test]
    fn unknown_target_tag() {
        let f = Fixture::new();
        let rec = f.capsule_route();
        let mut bytes = rec.to_bytes().to_vec();
        bytes[2 + NAME_LEN + rec.router_md().encoded_len()] = 9;
        assert_eq!(
            RouteRecord::decode(bytes),
            Err(DecodeError::UnknownValue {
                what: "route target",
                value: 9
            })
        );
    }
}
