//! The keyring of a confidential capsule, folded from its keyring records.

use std::collections::BTreeMap;

use bytes::Bytes;
use gdp_certs::{Name, PUBLIC_KEY_LEN, PublicKey, SecretKey};

use crate::envelope::{self, Envelope};
use crate::error::{KeyringError, SealError};
use crate::grant::Grant;
use crate::key::ContentKey;
use crate::record::{KeyRecord, MAX_GRANTS};

/// The state of a keyring: for each epoch so far, which readers hold its
/// content key and their grants.
///
/// # Rules
///
/// Records are applied in the keyring capsule's seqno order:
///
/// - every record names the keyring's data capsule;
/// - the first record starts epoch 1;
/// - a record that starts an epoch starts the one after the current epoch,
///   with a new content key;
/// - a record that does not start an epoch adds readers to the current
///   epoch, none of which already holds its key.
///
/// A record that breaks a rule is reported and leaves the keyring as it was.
/// Who may append (the capsule's writers) is the keyring capsule's own
/// concern: its signatures authenticate every record.
///
/// Rotating to a new epoch is how a reader is removed: the new epoch's key is
/// wrapped only to the remaining readers. A removed reader keeps the keys of
/// the epochs it was granted (it could have kept their plaintexts as well),
/// but cannot open anything sealed in a later epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    capsule: Name,
    /// Epoch `i + 1`'s grants, by reader key bytes.
    epochs: Vec<BTreeMap<[u8; PUBLIC_KEY_LEN], Grant>>,
}

impl Keyring {
    /// An empty keyring for the data capsule `capsule`.
    pub fn new(capsule: Name) -> Keyring {
        Keyring {
            capsule,
            epochs: Vec::new(),
        }
    }

    /// The data capsule whose keys the keyring holds.
    pub fn capsule(&self) -> Name {
        self.capsule
    }

    /// Applies the next keyring record. A record that breaks the
    /// [rules](Keyring#rules) is an error and changes nothing.
    pub fn apply(&mut self, record: &KeyRecord) -> Result<(), KeyringError> {
        if record.capsule() != self.capsule {
            return Err(KeyringError::WrongCapsule {
                expected: self.capsule,
                found: record.capsule(),
            });
        }
        let epoch = record.epoch();
        let grants = || {
            record
                .grants()
                .iter()
                .map(|g| (*g.reader().as_bytes(), g.clone()))
        };
        match (self.current_epoch(), record.starts_epoch()) {
            (None, true) if epoch == 1 => self.epochs.push(grants().collect()),
            (None, starts_epoch) => {
                return Err(KeyringError::FirstNotEpochOne {
                    epoch,
                    starts_epoch,
                });
            }
            (Some(current), true) => {
                if u64::from(epoch) != u64::from(current) + 1 {
                    return Err(KeyringError::EpochNotNext {
                        current,
                        found: epoch,
                    });
                }
                self.epochs.push(grants().collect());
            }
            (Some(current), false) => {
                if epoch != current {
                    return Err(KeyringError::EpochNotCurrent {
                        current,
                        found: epoch,
                    });
                }
                let granted = self.epochs.last_mut().ok_or(KeyringError::NotStarted)?;
                if let Some(g) = record
                    .grants()
                    .iter()
                    .find(|g| granted.contains_key(g.reader().as_bytes()))
                {
                    return Err(KeyringError::AlreadyGranted {
                        reader: Box::new(*g.reader()),
                        epoch,
                    });
                }
                granted.extend(grants());
            }
        }
        Ok(())
    }

    /// The current (latest) epoch, or `None` before the first record.
    pub fn current_epoch(&self) -> Option<u32> {
        u32::try_from(self.epochs.len()).ok().filter(|&n| n > 0)
    }

    /// The current epoch's readers, sorted by key bytes.
    pub fn readers(&self) -> Vec<PublicKey> {
        self.current_epoch()
            .map(|e| self.readers_of(e))
            .unwrap_or_default()
    }

    /// The readers of `epoch`, sorted by key bytes; empty if there is no
    /// such epoch.
    pub fn readers_of(&self, epoch: u32) -> Vec<PublicKey> {
        self.epoch(epoch)
            .map(|g| g.values().map(|g| *g.reader()).collect())
            .unwrap_or_default()
    }

    /// Whether `reader` holds the current epoch's key.
    pub fn is_reader(&self, reader: &PublicKey) -> bool {
        self.grant_of(self.current_epoch().unwrap_or(0), reader)
            .is_some()
    }

    /// The grant of `epoch`'s key to `reader`, if there is one.
    pub fn grant_of(&self, epoch: u32, reader: &PublicKey) -> Option<&Grant> {
        self.epoch(epoch)?.get(reader.as_bytes())
    }

    fn epoch(&self, epoch: u32) -> Option<&BTreeMap<[u8; PUBLIC_KEY_LEN], Grant>> {
        let index = usize::try_from(epoch.checked_sub(1)?).ok()?;
        self.epochs.get(index)
    }

    /// Unwraps, with a reader's secret key, the content key of every epoch
    /// that reader was granted. Epochs it was never granted are absent.
    ///
    /// Fails if one of its grants does not open.
    pub fn keys_for(&self, reader: &SecretKey) -> Result<EpochKeys, SealError> {
        let public = reader.public();
        let mut keys = BTreeMap::new();
        for (epoch, granted) in (1u32..).zip(&self.epochs) {
            if let Some(g) = granted.get(public.as_bytes()) {
                keys.insert(epoch, g.unwrap(&self.capsule, epoch, reader)?);
            }
        }
        Ok(EpochKeys { keys })
    }

    /// The records that start a keyring for `capsule`: epoch 1, a fresh
    /// content key, wrapped to `readers` (in any order; repeats are
    /// ignored). More than [`MAX_GRANTS`] readers take several records, the
    /// first of which starts the epoch.
    ///
    /// Returns the key, with which the writer seals epoch 1's records.
    pub fn start(
        capsule: Name,
        readers: &[PublicKey],
    ) -> Result<(ContentKey, Vec<KeyRecord>), KeyringError> {
        let key = ContentKey::generate();
        let records = wrap_all(&key, capsule, 1, true, sorted(readers))?;
        Ok((key, records))
    }

    /// The records that add `readers` to the current epoch, whose content
    /// key is `key`. Readers that already hold it are skipped; if none is
    /// left, there are no records.
    ///
    /// The keyring cannot check that `key` is the current epoch's key: only
    /// a reader can unwrap a grant.
    pub fn grant(
        &self,
        key: &ContentKey,
        readers: &[PublicKey],
    ) -> Result<Vec<KeyRecord>, KeyringError> {
        let current = self.current_epoch().ok_or(KeyringError::NotStarted)?;
        let mut new = sorted(readers);
        new.retain(|r| self.grant_of(current, r).is_none());
        if new.is_empty() {
            return Ok(Vec::new());
        }
        wrap_all(key, self.capsule, current, false, new)
    }

    /// The records that start the next epoch with a fresh content key,
    /// wrapped to `remaining` (in any order; repeats are ignored), which
    /// must not be empty. Readers not in `remaining` get no key for the new
    /// epoch or any later one.
    ///
    /// Returns the new key, with which the writer seals the new epoch's
    /// records.
    pub fn rotate(
        &self,
        remaining: &[PublicKey],
    ) -> Result<(ContentKey, Vec<KeyRecord>), KeyringError> {
        let current = self.current_epoch().ok_or(KeyringError::NotStarted)?;
        let next = current
            .checked_add(1)
            .ok_or(KeyringError::EpochsExhausted { current })?;
        let key = ContentKey::generate();
        let records = wrap_all(&key, self.capsule, next, true, sorted(remaining))?;
        Ok((key, records))
    }
}

fn sorted(readers: &[PublicKey]) -> Vec<PublicKey> {
    let mut readers = readers.to_vec();
    readers.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    readers.dedup();
    readers
}

/// `key` wrapped to `readers` (sorted, without repeats) in records of at most
/// [`MAX_GRANTS`] grants; the first starts the epoch if `starts` is set.
fn wrap_all(
    key: &ContentKey,
    capsule: Name,
    epoch: u32,
    starts: bool,
    readers: Vec<PublicKey>,
) -> Result<Vec<KeyRecord>, KeyringError> {
    if readers.is_empty() {
        return Err(KeyringError::NoReaders);
    }
    readers
        .chunks(MAX_GRANTS)
        .enumerate()
        .map(|(i, chunk)| KeyRecord::wrap(key, capsule, epoch, starts && i == 0, chunk))
        .collect()
}

/// The content keys one reader holds, by epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochKeys {
    keys: BTreeMap<u32, ContentKey>,
}

impl EpochKeys {
    /// The key of `epoch`, if the reader holds it.
    pub fn get(&self, epoch: u32) -> Option<&ContentKey> {
        self.keys.get(&epoch)
    }

    /// The latest epoch the reader holds, and its key.
    pub fn latest(&self) -> Option<(u32, &ContentKey)> {
        self.keys.last_key_value().map(|(e, k)| (*e, k))
    }

    /// The epochs whose keys the reader holds, ascending.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// The epochs and their keys, ascending by epoch.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &ContentKey)> {
        self.keys.iter().map(|(e, k)| (*e, k))
    }

    /// How many epochs' keys the reader holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the reader holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Opens `envelope`, the payload of record `seqno` of `capsule`, with the
    /// key of its epoch ([`SealError::NoKey`] if the reader has none).
    pub fn open(
        &self,
        capsule: &Name,
        seqno: u64,
        envelope: &Envelope,
    ) -> Result<Bytes, SealError> {
        let key = self.get(envelope.epoch()).ok_or(SealError::NoKey {
            epoch: envelope.epoch(),
        })?;
        envelope::open(key, capsule, seqno, envelope)
    }
}

#[cfg(test)]
mod tests {
    use gdp_certs::codec::{Decode, Encode};

    use super::*;
    use crate::envelope::{Mode, seal};

    fn capsule() -> Name {
        Name::from_bytes([6; 32])
    }

    fn secret(i: u8) -> SecretKey {
        SecretKey::from_seed(&[i; 32])
    }

    fn public(i: u8) -> PublicKey {
        secret(i).public()
    }

    fn applied(keyring: &mut Keyring, records: &[KeyRecord]) {
        for r in records {
            keyring.apply(r).expect("applies");
        }
    }

    #[test]
    fn start_grant_rotate() {
        let mut keyring = Keyring::new(capsule());
        assert_eq!(keyring.current_epoch(), None);
        assert!(keyring.readers().is_empty());

        let (k1, records) =
            Keyring::start(capsule(), &[public(2), public(1), public(2)]).expect("starts");
        assert_eq!(records.len(), 1);
        assert!(records[0].starts_epoch());
        assert_eq!(records[0].epoch(), 1);
        applied(&mut keyring, &records);
        assert_eq!(keyring.current_epoch(), Some(1));
        let mut expected = vec![public(1), public(2)];
        expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(keyring.readers(), expected);
        assert!(keyring.is_reader(&public(1)));
        assert!(!keyring.is_reader(&public(3)));

        // Readers 1 and 2 are skipped; reader 3 is added.
        let records = keyring
            .grant(&k1, &[public(1), public(3), public(2)])
            .expect("grants");
        assert_eq!(records.len(), 1);
        assert!(!records[0].starts_epoch());
        assert_eq!(records[0].readers().collect::<Vec<_>>(), [&public(3)]);
        applied(&mut keyring, &records);
        assert!(keyring.is_reader(&public(3)));
        assert!(keyring.grant(&k1, &[public(3)]).expect("grants").is_empty());

        for i in 1..=3 {
            let keys = keyring.keys_for(&secret(i)).expect("unwraps");
            assert_eq!(keys.len(), 1);
            assert_eq!(keys.get(1), Some(&k1));
            assert_eq!(keys.latest(), Some((1, &k1)));
        }
        assert!(keyring.keys_for(&secret(4)).expect("nothing").is_empty());

        // Rotation to readers 1 and 4.
        let (k2, records) = keyring.rotate(&[public(4), public(1)]).expect("rotates");
        assert_ne!(k1, k2);
        assert!(records[0].starts_epoch());
        assert_eq!(records[0].epoch(), 2);
        applied(&mut keyring, &records);
        assert_eq!(keyring.current_epoch(), Some(2));
        assert!(keyring.is_reader(&public(4)));
        assert!(!keyring.is_reader(&public(2)));
        assert_eq!(keyring.readers_of(1).len(), 3);
        assert_eq!(keyring.readers_of(2).len(), 2);
        assert!(keyring.readers_of(0).is_empty());
        assert!(keyring.readers_of(3).is_empty());
        assert!(keyring.grant_of(2, &public(1)).is_some());
        assert!(keyring.grant_of(2, &public(2)).is_none());

        let keys = keyring.keys_for(&secret(1)).expect("unwraps");
        assert_eq!(keys.epochs().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(keys.get(2), Some(&k2));
        let keys = keyring.keys_for(&secret(4)).expect("unwraps");
        assert_eq!(keys.epochs().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn revoked_reader_keeps_old_epochs_only() {
        let (k1, records) = Keyring::start(capsule(), &[public(1), public(2)]).expect("starts");
        let mut keyring = Keyring::new(capsule());
        applied(&mut keyring, &records);
        let old =
            crate::envelope::Envelope::decode(seal(&k1, 1, Mode::Epoch, &capsule(), 1, b"before"))
                .expect("decodes");

        let (k2, records) = keyring.rotate(&[public(1)]).expect("rotates");
        applied(&mut keyring, &records);
        let new =
            crate::envelope::Envelope::decode(seal(&k2, 2, Mode::Epoch, &capsule(), 2, b"after"))
                .expect("decodes");

        let revoked = keyring.keys_for(&secret(2)).expect("unwraps");
        assert_eq!(revoked.epochs().collect::<Vec<_>>(), [1]);
        assert_eq!(
            &revoked.open(&capsule(), 1, &old).expect("opens")[..],
            b"before"
        );
        assert_eq!(
            revoked.open(&capsule(), 2, &new),
            Err(SealError::NoKey { epoch: 2 })
        );
        // Epoch 1's key does not open epoch 2's records either.
        assert_eq!(
            envelope::open(&k1, &capsule(), 2, &new),
            Err(SealError::Tampered)
        );

        let kept = keyring.keys_for(&secret(1)).expect("unwraps");
        assert_eq!(
            &kept.open(&capsule(), 1, &old).expect("opens")[..],
            b"before"
        );
        assert_eq!(
            &kept.open(&capsule(), 2, &new).expect("opens")[..],
            b"after"
        );
    }

    #[test]
    fn bad_sequences_rejected_and_state_unchanged() {
        let (k1, start) = Keyring::start(capsule(), &[public(1)]).expect("starts");
        let mut keyring = Keyring::new(capsule());

        // The first record must start epoch 1.
        let grant1 = KeyRecord::wrap(&k1, capsule(), 1, false, &[public(2)]).expect("valid");
        let start2 = KeyRecord::wrap(&k1, capsule(), 2, true, &[public(2)]).expect("valid");
        let before = keyring.clone();
        assert_eq!(
            keyring.apply(&grant1),
            Err(KeyringError::FirstNotEpochOne {
                epoch: 1,
                starts_epoch: false
            })
        );
        assert_eq!(
            keyring.apply(&start2),
            Err(KeyringError::FirstNotEpochOne {
                epoch: 2,
                starts_epoch: true
            })
        );
        assert_eq!(keyring, before);

        applied(&mut keyring, &start);
        let before = keyring.clone();

        // Another capsule's record.
        let other =
            KeyRecord::wrap(&k1, Name::from_bytes([7; 32]), 1, false, &[public(2)]).expect("valid");
        assert_eq!(
            keyring.apply(&other),
            Err(KeyringError::WrongCapsule {
                expected: capsule(),
                found: Name::from_bytes([7; 32])
            })
        );
        // Epoch 1 again, or epoch 3 before 2.
        assert_eq!(
            keyring.apply(&start[0]),
            Err(KeyringError::EpochNotNext {
                current: 1,
                found: 1
            })
        );
        let start3 = KeyRecord::wrap(&k1, capsule(), 3, true, &[public(2)]).expect("valid");
        assert_eq!(
            keyring.apply(&start3),
            Err(KeyringError::EpochNotNext {
                current: 1,
                found: 3
            })
        );
        // Grants for an epoch other than the current one.
        let grant2 = KeyRecord::wrap(&k1, capsule(), 2, false, &[public(2)]).expect("valid");
        assert_eq!(
            keyring.apply(&grant2),
            Err(KeyringError::EpochNotCurrent {
                current: 1,
                found: 2
            })
        );
        // A reader granted twice in one epoch, even alongside a new one.
        let again =
            KeyRecord::wrap(&k1, capsule(), 1, false, &[public(2), public(1)]).expect("valid");
        assert_eq!(
            keyring.apply(&again),
            Err(KeyringError::AlreadyGranted {
                reader: Box::new(public(1)),
                epoch: 1
            })
        );
        assert_eq!(keyring, before);
        assert!(!keyring.is_reader(&public(2)));

        // The good record still applies afterwards.
        keyring.apply(&grant1).expect("applies");
        assert!(keyring.is_reader(&public(2)));
    }

    #[test]
    fn builders_need_readers_and_a_start() {
        let empty = Keyring::new(capsule());
        assert_eq!(
            Keyring::start(capsule(), &[]).map(|(_, r)| r),
            Err(KeyringError::NoReaders)
        );
        assert_eq!(
            empty.grant(&ContentKey::generate(), &[public(1)]),
            Err(KeyringError::NotStarted)
        );
        assert_eq!(
            empty.rotate(&[public(1)]).map(|(_, r)| r),
            Err(KeyringError::NotStarted)
        );
        let (_, records) = Keyring::start(capsule(), &[public(1)]).expect("starts");
        let mut keyring = Keyring::new(capsule());
        applied(&mut keyring, &records);
        assert_eq!(
            keyring.rotate(&[]).map(|(_, r)| r),
            Err(KeyringError::NoReaders)
        );
    }

    #[test]
    fn many_readers_take_several_records() {
        let readers: Vec<PublicKey> = (0..MAX_GRANTS as u32 + 3)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&i.to_be_bytes());
                SecretKey::from_seed(&seed).public()
            })
            .collect();
        let (key, records) = Keyring::start(capsule(), &readers).expect("starts");
        assert_eq!(records.len(), 2);
        assert!(records[0].starts_epoch());
        assert!(!records[1].starts_epoch());
        assert_eq!(records[0].grants().len(), MAX_GRANTS);
        assert_eq!(records[1].grants().len(), 3);
        for r in &records {
            assert_eq!(KeyRecord::decode(r.to_bytes()).as_ref(), Ok(r));
        }
        let mut keyring = Keyring::new(capsule());
        applied(&mut keyring, &records);
        assert_eq!(keyring.readers().len(), MAX_GRANTS + 3);
        let mut last = [0u8; 32];
        last[..4].copy_from_slice(&(MAX_GRANTS as u32 + 2).to_be_bytes());
        let keys = keyring
            .keys_for(&SecretKey::from_seed(&last))
            .expect("unwraps");
        assert_eq!(keys.get(1), Some(&key));
    }
}
