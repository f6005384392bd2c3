//! Socket addresses in route records.
//!
//! ```text
//! u8 4, [4] IPv4 address, u16 port
//! u8 6, [16] IPv6 address, u16 port
//! ```
//!
//! Addresses are canonical, so that equal addresses have equal encodings and
//! a decoded record re-encodes to the bytes its router signed: an IPv4
//! address is always written as IPv4 (never IPv4-mapped IPv6, which decoding
//! rejects), and IPv6 flow labels and scope ids, which mean nothing to another
//! host, are not carried.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use bytes::{BufMut, BytesMut};

use crate::codec::{DecodeError, Reader};

/// Largest encoding of one address (family, IPv6 address, port).
pub(super) const MAX_ADDRESS_LEN: usize = 1 + 16 + 2;

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// The canonical form of an address: IPv4-mapped IPv6 becomes IPv4, and
/// IPv6 flow label and scope id are dropped.
pub(super) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => addr,
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
        },
    }
}

pub(super) fn address_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

pub(super) fn encode_address(addr: &SocketAddr, buf: &mut BytesMut) {
    match addr {
        SocketAddr::V4(a) => {
            buf.put_u8(FAMILY_V4);
            buf.put_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            buf.put_u8(FAMILY_V6);
            buf.put_slice(&a.ip().octets());
        }
    }
    buf.put_u16(addr.port());
}

pub(super) fn decode_address(r: &mut Reader) -> Result<SocketAddr, DecodeError> {
    let ip = match r.u8("route address family")? {
        FAMILY_V4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("route IPv4 address")?)),
        FAMILY_V6 => {
            let ip = Ipv6Addr::from(r.array::<16>("route IPv6 address")?);
            if ip.to_ipv4_mapped().is_some() {
                return Err(DecodeError::Invalid {
                    what: "route address (IPv4-mapped IPv6 is written as IPv4)",
                });
            }
            IpAddr::V6(ip)
        }
        v => {
            return Err(DecodeError::UnknownValue {
                what: "route address family",
                value: v.into(),
            });
        }
    };
    let port = r.u16("route address port")?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn decode(bytes: Vec<u8>) -> Result<SocketAddr, DecodeError> {
        let mut r = Reader::new(Bytes::from(bytes));
        let a = decode_address(&mut r)?;
        r.finish("address")?;
        Ok(a)
    }

    proptest! {
        #[test]
        fn canonical_addresses_round_trip(addr in any::<SocketAddr>()) {
            let c = canonical(addr);
            prop_assert_eq!(canonical(c), c);
            prop_assert_eq!(c.ip().to_canonical(), c.ip());
            prop_assert_eq!(c.port(), addr.port());
            let mut buf = BytesMut::new();
            encode_address(&c, &mut buf);
            prop_assert_eq!(buf.len(), address_len(&c));
            prop_assert!(buf.len() <= MAX_ADDRESS_LEN);
            prop_assert_eq!(decode(buf.to_vec()), Ok(c));
        }
    }

    #[test]
    fn mapped_and_scoped_addresses_are_normalised() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:80".parse().expect("literal");
        assert_eq!(
            canonical(mapped),
            "192.0.2.1:80".parse::<SocketAddr>().expect("literal")
        );
        let scoped = SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().expect("literal"),
            9,
            5,
            3,
        ));
        assert_eq!(
            canonical(scoped),
            "[fe80::1]:9".parse::<SocketAddr>().expect("literal")
        );
    }

    #[test]
    fn non_canonical_encodings_are_rejected() {
        let mut mapped = vec![FAMILY_V6];
        mapped.extend_from_slice(&Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped().octets());
        mapped.extend_from_slice(&80u16.to_be_bytes());
        assert_eq!(
            decode(mapped),
            Err(DecodeError::Invalid {
                what: "route address (IPv4-mapped IPv6 is written as IPv4)"
            })
        );
        assert_eq!(
            decode(vec![5, 1, 2, 3, 4, 0, 80]),
            Err(DecodeError::UnknownValue {
                what: "route address family",
                value: 5
            })
        );
        assert_eq!(
            decode(vec![FAMILY_V4, 1, 2, 3, 4, 0]),
            Err(DecodeError::Truncated {
                what: "route address port"
            })
        );
    }
}
