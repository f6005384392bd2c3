//! Keyring records: the payloads of a keyring capsule.
//!
//! A confidential capsule's writers append keyring records to a second
//! capsule, its keyring; that capsule's signatures authenticate them. Each
//! record wraps one epoch's content key to some readers.
//!
//! ```text
//! u8    version = 1
//! u8    flags (bit 0: the record starts its epoch; other bits are 0)
//! [32]  the data capsule's name
//! u32   epoch (>= 1)
//! u16   grant count (1..=MAX_GRANTS)
//! ..    the grants, sorted strictly ascending by reader key bytes, each
//!       [32] reader, [32] enc, [48] wrapped (see the grant module)
//! ```

use bytes::{BufMut, BytesMut};
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader, put};
use gdp_certs::{NAME_LEN, Name, PublicKey};

use crate::error::{KeyringError, SealError};
use crate::grant::{GRANT_LEN, Grant};
use crate::key::ContentKey;

/// The keyring record version this crate writes and reads.
pub const KEY_RECORD_VERSION: u8 = 1;
/// The most grants one keyring record holds. An epoch with more readers is
/// granted by several records.
pub const MAX_GRANTS: usize = 1024;
/// Encoded length of a keyring record's fields before its grants.
pub const KEY_RECORD_HEADER_LEN: usize = 1 + 1 + NAME_LEN + 4 + 2;

const FLAG_STARTS_EPOCH: u8 = 1;

/// One keyring record: `epoch`'s content key for the data capsule `capsule`,
/// wrapped to one or more readers.
///
/// A record that starts its epoch opens it with a new content key; one that
/// does not adds readers to an epoch already started. The grants are sorted
/// by reader key bytes, and no reader appears twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    capsule: Name,
    epoch: u32,
    starts_epoch: bool,
    grants: Vec<Grant>,
}

impl KeyRecord {
    /// A record from its grants, in any order.
    ///
    /// Fails if `epoch` is 0, if there are no grants or more than
    /// [`MAX_GRANTS`], or if a reader appears twice.
    pub fn new(
        capsule: Name,
        epoch: u32,
        starts_epoch: bool,
        mut grants: Vec<Grant>,
    ) -> Result<KeyRecord, KeyringError> {
        if epoch == 0 {
            return Err(KeyringError::ZeroEpoch);
        }
        check_count(grants.len())?;
        grants.sort_by(|a, b| a.reader().as_bytes().cmp(b.reader().as_bytes()));
        if let Some(pair) = grants
            .windows(2)
            .find(|w| w[0].reader().as_bytes() == w[1].reader().as_bytes())
        {
            return Err(KeyringError::DuplicateReader {
                reader: Box::new(*pair[0].reader()),
            });
        }
        Ok(KeyRecord {
            capsule,
            epoch,
            starts_epoch,
            grants,
        })
    }

    /// A record that wraps `key`, the content key of `epoch` of `capsule`, to
    /// each of `readers` (in any order, without repeats).
    pub fn wrap(
        key: &ContentKey,
        capsule: Name,
        epoch: u32,
        starts_epoch: bool,
        readers: &[PublicKey],
    ) -> Result<KeyRecord, KeyringError> {
        if epoch == 0 {
            return Err(KeyringError::ZeroEpoch);
        }
        check_count(readers.len())?;
        let grants = readers
            .iter()
            .map(|r| Grant::wrap(key, &capsule, epoch, r))
            .collect::<Result<Vec<_>, SealError>>()?;
        KeyRecord::new(capsule, epoch, starts_epoch, grants)
    }

    /// The data capsule whose content key the record holds.
    pub fn capsule(&self) -> Name {
        self.capsule
    }

    /// The epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Whether the record starts its epoch (with a new content key).
    pub fn starts_epoch(&self) -> bool {
        self.starts_epoch
    }

    /// The grants, sorted by reader key bytes.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// The grant for `reader`, if the record has one.
    pub fn grant_for(&self, reader: &PublicKey) -> Option<&Grant> {
        self.grants
            .binary_search_by(|g| g.reader().as_bytes().cmp(reader.as_bytes()))
            .ok()
            .map(|i| &self.grants[i])
    }

    /// The readers, sorted by key bytes.
    pub fn readers(&self) -> impl Iterator<Item = &PublicKey> {
        self.grants.iter().map(Grant::reader)
    }
}

fn check_count(count: usize) -> Result<(), KeyringError> {
    if count == 0 {
        Err(KeyringError::NoReaders)
    } else if count > MAX_GRANTS {
        Err(KeyringError::TooManyGrants {
            count,
            max: MAX_GRANTS,
        })
    } else {
        Ok(())
    }
}

impl Encode for KeyRecord {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(KEY_RECORD_VERSION);
        buf.put_u8(if self.starts_epoch {
            FLAG_STARTS_EPOCH
        } else {
            0
        });
        self.capsule.encode(buf);
        buf.put_u32(self.epoch);
        put::vec_u16(buf, &self.grants);
    }

    fn encoded_len(&self) -> usize {
        KEY_RECORD_HEADER_LEN + self.grants.len() * GRANT_LEN
    }
}

impl Decode for KeyRecord {
    const WHAT: &'static str = "keyring record";

    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let version = r.u8("keyring record version")?;
        if version != KEY_RECORD_VERSION {
            return Err(DecodeError::UnknownValue {
                what: "keyring record version",
                value: version.into(),
            });
        }
        let flags = r.u8("keyring record flags")?;
        if flags & !FLAG_STARTS_EPOCH != 0 {
            return Err(DecodeError::UnknownValue {
                what: "keyring record flags",
                value: flags.into(),
            });
        }
        let capsule = Name::decode_from(r)?;
        let epoch = r.u32("keyring record epoch")?;
        if epoch == 0 {
            return Err(DecodeError::Invalid {
                what: "keyring record epoch",
            });
        }
        let grants: Vec<Grant> = r.vec_u16(MAX_GRANTS)?;
        if grants.is_empty() {
            return Err(DecodeError::Invalid {
                what: "keyring record without grants",
            });
        }
        if grants
            .windows(2)
            .any(|w| w[0].reader().as_bytes() >= w[1].reader().as_bytes())
        {
            return Err(DecodeError::Invalid {
                what: "keyring record grant order",
            });
        }
        Ok(KeyRecord {
            capsule,
            epoch,
            starts_epoch: flags & FLAG_STARTS_EPOCH != 0,
            grants,
        })
    }
}

#[cfg(test)]
mod tests {
    use gdp_certs::SecretKey;

    use super::*;

    fn capsule() -> Name {
        Name::from_bytes([5; 32])
    }

    fn readers(n: u8) -> Vec<PublicKey> {
        (1..=n)
            .map(|i| SecretKey::from_seed(&[i; 32]).public())
            .collect()
    }

    #[test]
    fn round_trip_and_sorted() {
        let key = ContentKey::generate();
        let rec = KeyRecord::wrap(&key, capsule(), 3, true, &readers(5)).expect("valid");
        assert!(
            rec.grants()
                .windows(2)
                .all(|w| w[0].reader().as_bytes() < w[1].reader().as_bytes())
        );
        let bytes = rec.to_bytes();
        assert_eq!(bytes.len(), KEY_RECORD_HEADER_LEN + 5 * GRANT_LEN);
        assert_eq!(bytes[1], 1);
        assert_eq!(KeyRecord::decode(bytes), Ok(rec.clone()));
        let reader = SecretKey::from_seed(&[2; 32]);
        let grant = rec.grant_for(&reader.public()).expect("granted");
        assert_eq!(grant.unwrap(&capsule(), 3, &reader), Ok(key));
        assert!(rec.grant_for(&readers(6)[5]).is_none());
    }

    #[test]
    fn constructor_limits() {
        let key = ContentKey::generate();
        assert_eq!(
            KeyRecord::wrap(&key, capsule(), 0, true, &readers(1)),
            Err(KeyringError::ZeroEpoch)
        );
        assert_eq!(
            KeyRecord::wrap(&key, capsule(), 1, true, &[]),
            Err(KeyringError::NoReaders)
        );
        let r = readers(2);
        assert_eq!(
            KeyRecord::wrap(&key, capsule(), 1, true, &[r[0], r[1], r[0]]),
            Err(KeyringError::DuplicateReader {
                reader: Box::new(r[0])
            })
        );
        let grant = Grant::wrap(&key, &capsule(), 1, &r[0]).expect("wraps");
        assert_eq!(
            KeyRecord::new(capsule(), 1, true, vec![grant; MAX_GRANTS + 1]),
            Err(KeyringError::TooManyGrants {
                count: MAX_GRANTS + 1,
                max: MAX_GRANTS
            })
        );
    }

    #[test]
    fn decode_rejects_non_canonical() {
        let key = ContentKey::generate();
        let rec = KeyRecord::wrap(&key, capsule(), 1, false, &readers(2)).expect("valid");
        let good = rec.to_bytes().to_vec();
        assert_eq!(KeyRecord::decode(good.clone()), Ok(rec));

        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            KeyRecord::decode(b)
        };
        assert!(matches!(with(0, 2), Err(DecodeError::UnknownValue { .. })));
        assert!(matches!(with(1, 2), Err(DecodeError::UnknownValue { .. })));
        assert!(matches!(
            with(1, 0x81),
            Err(DecodeError::UnknownValue { .. })
        ));
        // Epoch 0.
        let mut b = good.clone();
        b[34..38].copy_from_slice(&[0; 4]);
        assert!(matches!(
            KeyRecord::decode(b),
            Err(DecodeError::Invalid { .. })
        ));
        // No grants.
        let mut b = good[..KEY_RECORD_HEADER_LEN].to_vec();
        b[38..40].copy_from_slice(&[0, 0]);
        assert!(matches!(
            KeyRecord::decode(b),
            Err(DecodeError::Invalid { .. })
        ));
        // Grants out of order, and duplicated.
        let (g0, g1) = (
            &good[KEY_RECORD_HEADER_LEN..KEY_RECORD_HEADER_LEN + GRANT_LEN],
            &good[KEY_RECORD_HEADER_LEN + GRANT_LEN..],
        );
        for (a, b) in [(g1, g0), (g0, g0)] {
            let swapped = [&good[..KEY_RECORD_HEADER_LEN], a, b].concat();
            assert_eq!(
                KeyRecord::decode(swapped),
                Err(DecodeError::Invalid {
                    what: "keyring record grant order"
                })
            );
        }
        // Count over the limit, truncation, trailing bytes.
        let mut b = good.clone();
        b[38..40].copy_from_slice(&1025u16.to_be_bytes());
        assert!(matches!(
            KeyRecord::decode(b),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(matches!(
            KeyRecord::decode(good[..good.len() - 1].to_vec()),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            KeyRecord::decode([&good[..], &[0]].concat()),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }
}
