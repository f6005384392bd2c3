//! Replica sets: the servers a capsule's owner placed the capsule on.
//!
//! A capsule may live on several capsule servers. Each one serves it under
//! its own [`AdCert`](super::AdCert); the [`ReplicaSet`] is what tells the
//! replicas (and readers) which servers hold copies, so they can exchange
//! records with each other. It is signed by the capsule's owner and carries
//! a version (microseconds since the epoch when it was issued): a server
//! replaces the set it holds only by a newer one, so an old set replayed by
//! anyone cannot bring back a retired replica.
//!
//! ```text
//! u8    version = 1
//! u8    type = 5
//! [32]  capsule
//! u64   set version (strictly increasing per capsule)
//! u8    server count (1..=MAX_REPLICAS), then [32] each, sorted, distinct
//! [64]  signature by the capsule owner's key (SigContext::ReplicaSet)
//! ```

use bytes::{BufMut, BytesMut};

use super::{CertError, CertType, Signed, Verified, check_kind, check_name, read_header};
use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::{Kind, Metadata, NAME_LEN, Name, SIGNATURE_LEN, SecretKey, SigContext, Signature};

/// Most servers in one replica set.
pub const MAX_REPLICAS: usize = 16;

/// Largest encoding of a replica set.
pub const MAX_REPLICA_SET_LEN: usize =
    2 + NAME_LEN + 8 + 1 + MAX_REPLICAS * NAME_LEN + SIGNATURE_LEN;

/// The servers holding a capsule, as its owner placed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSet {
    capsule: Name,
    version: u64,
    servers: Vec<Name>,
    signature: Signature,
}

impl ReplicaSet {
    /// Issues the set `servers` (sorted and deduplicated here; 1 to
    /// [`MAX_REPLICAS`] of them) for `capsule`, signed by `owner` (the key
    /// in the capsule's metadata). `version` must be higher than that of any
    /// set issued before for the capsule; a timestamp in microseconds is the
    /// usual choice.
    pub fn issue(
        owner: &SecretKey,
        capsule: Name,
        version: u64,
        mut servers: Vec<Name>,
    ) -> Result<ReplicaSet, CertError> {
        servers.sort_unstable();
        servers.dedup();
        if servers.is_empty() || servers.len() > MAX_REPLICAS {
            return Err(CertError::Decode(DecodeError::Invalid {
                what: "replica set size (1..=16 servers)",
            }));
        }
        let mut set = ReplicaSet {
            capsule,
            version,
            servers,
            signature: Signature([0; SIGNATURE_LEN]),
        };
        set.signature = set.sign_with(owner);
        Ok(set)
    }

    /// The capsule.
    pub fn capsule(&self) -> Name {
        self.capsule
    }
    /// The set's version: a newer set replaces an older one.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// The servers, sorted.
    pub fn servers(&self) -> &[Name] {
        &self.servers
    }
    /// True if `server` is in the set.
    pub fn contains(&self, server: &Name) -> bool {
        self.servers.binary_search(server).is_ok()
    }
    /// The owner's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks the set against the capsule's metadata: the metadata hashes
    /// to [`ReplicaSet::capsule`] and describes a capsule, the owner signed
    /// the set, and the capsule's hosting constraints allow every server.
    pub fn verify(&self, capsule_md: &Metadata) -> Result<Verified<ReplicaSet>, CertError> {
        check_name(capsule_md, &self.capsule)?;
        check_kind(capsule_md, |k| k == Kind::Capsule, "capsule")?;
        if let Some(server) = self.servers.iter().find(|s| !capsule_md.may_host(s)) {
            return Err(CertError::NotPermittedHost {
                capsule: self.capsule,
                server: *server,
            });
        }
        self.check_signature(capsule_md.key())?;
        Ok(Verified::new(self.clone()))
    }
}

impl Signed for ReplicaSet {
    const TYPE: CertType = CertType::ReplicaSet;
    const CONTEXT: SigContext = SigContext::ReplicaSet;
    const WHAT: &'static str = "replica set";

    fn encode_fields(&self, buf: &mut BytesMut) {
        self.capsule.encode(buf);
        buf.put_u64(self.version);
        // At most MAX_REPLICAS (16) servers: the count fits a byte.
        buf.put_u8(self.servers.len() as u8);
        for s in &self.servers {
            s.encode(buf);
        }
    }
    fn fields_len(&self) -> usize {
        NAME_LEN + 8 + 1 + self.servers.len() * NAME_LEN
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
}

impl Encode for ReplicaSet {
    fn encode(&self, buf: &mut BytesMut) {
        self.encode_cert(buf);
    }
    fn encoded_len(&self) -> usize {
        self.cert_len()
    }
}

impl Decode for ReplicaSet {
    const WHAT: &'static str = "replica set";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        read_header::<Self>(r)?;
        let capsule = Name::decode_from(r)?;
        let version = r.u64("replica set version")?;
        let count = usize::from(r.u8("replica count")?);
        if count == 0 || count > MAX_REPLICAS {
            return Err(DecodeError::Invalid {
                what: "replica set size (1..=16 servers)",
            });
        }
        let mut servers = Vec::with_capacity(count);
        for _ in 0..count {
            let s = Name::decode_from(r)?;
            if servers.last().is_some_and(|prev: &Name| *prev >= s) {
                return Err(DecodeError::Invalid {
                    what: "replica servers not sorted and distinct",
                });
            }
            servers.push(s);
        }
        Ok(ReplicaSet {
            capsule,
            version,
            servers,
            signature: Signature::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::testutil::*;
    use proptest::prelude::*;

    fn servers(n: u8) -> Vec<Name> {
        (1..=n).map(|i| Name::from_bytes([i; 32])).collect()
    }

    #[test]
    fn issued_set_verifies_round_trips_and_is_sorted() {
        let f = Fixture::new();
        let mut list = servers(3);
        list.reverse();
        list.push(list[0]);
        let set = ReplicaSet::issue(&f.owner, f.capsule_md.name(), 7, list).expect("issued");
        assert_eq!(set.servers(), servers(3).as_slice());
        assert!(set.contains(&Name::from_bytes([2; 32])));
        assert!(!set.contains(&Name::from_bytes([9; 32])));
        let bytes = set.to_bytes();
        assert!(bytes.len() <= MAX_REPLICA_SET_LEN);
        assert_eq!(ReplicaSet::decode(bytes).expect("decodes"), set);
        assert_eq!(set.verify(&f.capsule_md).expect("verifies").version(), 7);
    }

    #[test]
    fn signed_by_someone_other_than_the_owner() {
        let f = Fixture::new();
        let mallory = SecretKey::from_seed(&[99; 32]);
        let set = ReplicaSet::issue(&mallory, f.capsule_md.name(), 1, servers(2)).expect("issued");
        assert_eq!(
            set.verify(&f.capsule_md),
            Err(CertError::BadSignature {
                cert: "replica set"
            })
        );
    }

    #[test]
    fn server_outside_hosting_constraints() {
        let f = Fixture::new();
        let md = capsule_md(&f.owner, vec![Name::from_bytes([1; 32])], 3);
        let set = ReplicaSet::issue(&f.owner, md.name(), 1, servers(2)).expect("issued");
        assert_eq!(
            set.verify(&md),
            Err(CertError::NotPermittedHost {
                capsule: md.name(),
                server: Name::from_bytes([2; 32]),
            })
        );
    }

    #[test]
    fn empty_and_oversized_sets_are_refused() {
        let f = Fixture::new();
        let name = f.capsule_md.name();
        assert!(ReplicaSet::issue(&f.owner, name, 1, vec![]).is_err());
        let many = (0..=MAX_REPLICAS as u8)
            .map(|i| Name::from_bytes([i; 32]))
            .collect();
        assert!(ReplicaSet::issue(&f.owner, name, 1, many).is_err());
    }

    #[test]
    fn unsorted_servers_do_not_decode() {
        let f = Fixture::new();
        let set = ReplicaSet::issue(&f.owner, f.capsule_md.name(), 1, servers(2)).expect("issued");
        let mut bytes = set.to_bytes().to_vec();
        // Swap the two server names (after header, capsule, version, count).
        let at = 2 + NAME_LEN + 8 + 1;
        let (a, b) = bytes[at..at + 2 * NAME_LEN].split_at_mut(NAME_LEN);
        a.swap_with_slice(b);
        assert!(ReplicaSet::decode(bytes::Bytes::from(bytes)).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_is_canonical(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(set) = ReplicaSet::decode(bytes::Bytes::from(data.clone())) {
                prop_assert_eq!(set.to_bytes().to_vec(), data);
            }
        }

        #[test]
        fn any_flipped_byte_breaks_the_set(n in 1u8..=16, at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let f = Fixture::new();
            let set = ReplicaSet::issue(&f.owner, f.capsule_md.name(), 5, servers(n)).expect("issued");
            let mut bytes = set.to_bytes().to_vec();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            if let Ok(other) = ReplicaSet::decode(bytes::Bytes::from(bytes)) {
                prop_assert!(other.verify(&f.capsule_md).is_err());
            }
        }
    }
}
