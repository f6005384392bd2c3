//! The forwarding information base: destination name -> next-hop link.
//!
//! The FIB is a concurrent hash map ([`DashMap`]) so that a driver can hand a
//! read-only [`FibReader`] to per-link reader tasks, which forward the
//! common case themselves, while the core stays the only writer. Entries
//! are small and `Copy` (a link id, a kind and an expiry), so a lookup
//! copies them out under a shard read lock and never allocates.
//!
//! # Sealing
//!
//! A reader task must not see an entry before the PDUs the core queued
//! under it have left the core: the first PDUs to a name wait in the
//! pending queue while the name is resolved, and the core releases them
//! into its outbox when it inserts the entry; a reader that took the next
//! PDU to the same name straight to the link would overtake them. So every
//! entry is stamped with the epoch it was written in, and readers use
//! [`FibReader::lookup_sealed`], which returns only entries of sealed
//! epochs. The driver calls [`Fib::seal`] once everything the core queued
//! is on its links. Removals take effect at once for everyone.
//!
//! Names are already uniform hashes (blake3 of metadata), so the map hashes
//! them with a cheap keyed mixer ([`NameHasher`]) instead of SipHash: the
//! random key stops anyone from grinding names into one bucket, and the
//! mixing costs a few multiplications.
//!
//! Expired entries are treated as absent by [`Fib::lookup`]; the core removes
//! them on its expiry timers. When a link goes down, [`Fib::remove_link`]
//! scans the whole table (about 10 ms per million entries): links go down
//! rarely, and a per-link index would cost memory on every entry.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use gdp_certs::{Name, Timestamp};

use super::io::LinkId;

/// How a FIB entry was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RouteKind {
    /// An endpoint attached to this router, or a capsule it advertised.
    Local,
    /// A router at the other end of a direct link that is trusted to have
    /// checked the sources of the PDUs it sends (a trusted peer, or any
    /// peer under [`PeeringPolicy::InsecureOpen`](super::PeeringPolicy)).
    Neighbor,
    /// A router at the other end of a direct link that the directory
    /// vouched for: PDUs from it are forwarded only for sources it is
    /// entitled to send for (see the `entitle` module).
    Vouched,
    /// A route learned from a verified directory record (cached until it
    /// expires).
    Cached,
    /// A route installed by configuration
    /// ([`RouterCore::install_route`](super::RouterCore::install_route)).
    Static,
}

/// One FIB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FibEntry {
    /// The link to send PDUs for the name on.
    pub next_hop: LinkId,
    /// How the entry was learned.
    pub kind: RouteKind,
    /// The last instant at which the entry may be used
    /// ([`Timestamp::MAX`] for local and neighbour entries).
    pub expires: Timestamp,
}

impl FibEntry {
    /// True if the entry may be used at `now`.
    pub fn is_valid(&self, now: Timestamp) -> bool {
        now <= self.expires
    }
}

/// A keyed hasher for [`Name`]s (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct NameHasher {
    state: u64,
    multiplier: u64,
}

/// Builds [`NameHasher`]s with one random key.
#[derive(Debug, Clone, Copy)]
pub struct NameHasherBuilder {
    seed: u64,
    multiplier: u64,
}

impl NameHasherBuilder {
    /// A builder keyed with `key` (two random 64-bit words).
    pub fn new(key: [u64; 2]) -> Self {
        NameHasherBuilder {
            seed: key[0],
            // An odd multiplier keeps the folded product a bijection-friendly mix.
            multiplier: key[1] | 1,
        }
    }
}

/// `a * b` as a 128-bit product, folded to 64 bits: every output bit depends
/// on every input bit.
#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.state = folded_multiply(self.state ^ u64::from_le_bytes(w), self.multiplier);
        }
        for &b in chunks.remainder() {
            self.state = folded_multiply(self.state ^ u64::from(b), self.multiplier);
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        // The length prefix of a fixed-size name carries no information.
        self.state ^= n as u64;
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_multiply(self.state, self.multiplier.rotate_left(29))
    }
}

impl BuildHasher for NameHasherBuilder {
    type Hasher = NameHasher;
    #[inline]
    fn build_hasher(&self) -> NameHasher {
        NameHasher {
            state: self.seed,
            multiplier: self.multiplier,
        }
    }
}

/// An entry and the epoch it was written in (see "Sealing" above).
#[derive(Debug, Clone, Copy)]
struct Stamped {
    entry: FibEntry,
    epoch: u64,
}

/// The forwarding information base. See the module documentation.
#[derive(Debug)]
pub struct Fib {
    map: DashMap<Name, Stamped, NameHasherBuilder>,
    /// The epoch new entries are stamped with (written by the core only).
    open: AtomicU64,
    /// Entries of this epoch and older are visible to
    /// [`FibReader::lookup_sealed`].
    sealed: AtomicU64,
}

impl Fib {
    /// An empty FIB whose hasher is keyed with `key`.
    pub fn new(key: [u64; 2]) -> Self {
        Fib::with_capacity(0, key)
    }

    /// An empty FIB with room for `capacity` entries.
    pub fn with_capacity(capacity: usize, key: [u64; 2]) -> Self {
        Fib {
            map: DashMap::with_capacity_and_hasher(capacity, NameHasherBuilder::new(key)),
            open: AtomicU64::new(1),
            sealed: AtomicU64::new(0),
        }
    }

    /// The entry for `name` if it is valid at `now`.
    #[inline]
    pub fn lookup(&self, name: &Name, now: Timestamp) -> Option<FibEntry> {
        let e = self.map.get(name)?.entry;
        e.is_valid(now).then_some(e)
    }

    /// The entry for `name` if it is valid at `now` and was written in a
    /// sealed epoch.
    #[inline]
    pub fn lookup_sealed(&self, name: &Name, now: Timestamp) -> Option<FibEntry> {
        let s = *self.map.get(name)?;
        // Acquire: what the core queued before the seal is queued before
        // anything a reader queues after seeing the entry.
        (s.epoch <= self.sealed.load(Ordering::Acquire) && s.entry.is_valid(now)).then_some(s.entry)
    }

    /// Makes every entry written so far visible to
    /// [`lookup_sealed`](Fib::lookup_sealed); later ones wait for the next
    /// seal.
    pub fn seal(&self) {
        let epoch = self.open.load(Ordering::Relaxed);
        self.sealed.store(epoch, Ordering::Release);
        self.open.store(epoch + 1, Ordering::Relaxed);
    }

    /// The entry for `name`, expired or not.
    pub fn get(&self, name: &Name) -> Option<FibEntry> {
        self.map.get(name).map(|s| s.entry)
    }

    /// Sets the entry for `name`, returning the previous one. The entry
    /// is visible to [`lookup_sealed`](Fib::lookup_sealed) after the next
    /// [`seal`](Fib::seal).
    pub fn insert(&self, name: Name, entry: FibEntry) -> Option<FibEntry> {
        let epoch = self.open.load(Ordering::Relaxed);
        self.map
            .insert(name, Stamped { entry, epoch })
            .map(|s| s.entry)
    }

    /// Removes the entry for `name`.
    pub fn remove(&self, name: &Name) -> Option<FibEntry> {
        self.map.remove(name).map(|(_, s)| s.entry)
    }

    /// Removes the entry for `name` if `pred` holds for it.
    pub fn remove_if(&self, name: &Name, pred: impl FnOnce(&FibEntry) -> bool) -> bool {
        self.map.remove_if(name, |_, s| pred(&s.entry)).is_some()
    }

    /// Removes every entry whose next hop is `link`; returns how many.
    pub fn remove_link(&self, link: LinkId) -> usize {
        let before = self.map.len();
        self.map.retain(|_, s| s.entry.next_hop != link);
        before.saturating_sub(self.map.len())
    }

    /// Calls `f` with every entry, expired ones included, in no order.
    pub fn for_each(&self, mut f: impl FnMut(&Name, &FibEntry)) {
        for item in &self.map {
            f(item.key(), &item.value().entry);
        }
    }

    /// Number of entries (expired ones included until they are removed).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Slots allocated in the underlying tables.
    pub fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// Bytes of one table slot: a name and its stamped entry (the tables
    /// add a control byte per slot).
    pub const SLOT_BYTES: usize = size_of::<(Name, Stamped)>();
}

/// A read-only, cheaply cloned handle on a core's FIB, for tasks that
/// forward on their own (see [`RouterCore::fib`](super::RouterCore::fib)).
#[derive(Debug, Clone)]
pub struct FibReader(pub(crate) Arc<Fib>);

impl FibReader {
    /// The entry for `name` if it is valid at `now`.
    #[inline]
    pub fn lookup(&self, name: &Name, now: Timestamp) -> Option<FibEntry> {
        self.0.lookup(name, now)
    }

    /// The entry for `name` if it is valid at `now` and sealed: what a
    /// task that forwards on its own may use (see "Sealing" in the module
    /// documentation).
    #[inline]
    pub fn lookup_sealed(&self, name: &Name, now: Timestamp) -> Option<FibEntry> {
        self.0.lookup_sealed(name, now)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::hash::BuildHasher;

    fn entry(link: u64, expires: u64) -> FibEntry {
        FibEntry {
            next_hop: LinkId(link),
            kind: RouteKind::Cached,
            expires: Timestamp(expires),
        }
    }

    #[test]
    fn expired_entries_are_not_returned() {
        let fib = Fib::new([1, 2]);
        let n = Name::from_bytes([7; 32]);
        fib.insert(n, entry(3, 100));
        assert_eq!(fib.lookup(&n, Timestamp(100)), Some(entry(3, 100)));
        assert_eq!(fib.lookup(&n, Timestamp(101)), None);
        assert_eq!(fib.get(&n), Some(entry(3, 100)));
    }

    #[test]
    fn remove_link_removes_only_that_link() {
        let fib = Fib::new([1, 2]);
        for i in 0..10u8 {
            fib.insert(Name::from_bytes([i; 32]), entry(u64::from(i % 2), 10));
        }
        assert_eq!(fib.remove_link(LinkId(1)), 5);
        assert_eq!(fib.len(), 5);
        assert!(
            fib.lookup(&Name::from_bytes([1; 32]), Timestamp(0))
                .is_none()
        );
        assert!(
            fib.lookup(&Name::from_bytes([2; 32]), Timestamp(0))
                .is_some()
        );
    }

    #[test]
    fn entries_are_sealed_readers_see_them_only_after_a_seal() {
        let fib = Fib::new([1, 2]);
        let (a, b) = (Name::from_bytes([1; 32]), Name::from_bytes([2; 32]));
        fib.insert(a, entry(3, 100));
        assert_eq!(fib.lookup(&a, Timestamp(0)), Some(entry(3, 100)));
        assert_eq!(fib.lookup_sealed(&a, Timestamp(0)), None);
        fib.seal();
        assert_eq!(fib.lookup_sealed(&a, Timestamp(0)), Some(entry(3, 100)));
        // A replaced entry is new again until the next seal; so is a new one.
        fib.insert(a, entry(4, 100));
        fib.insert(b, entry(5, 100));
        assert_eq!(fib.lookup_sealed(&a, Timestamp(0)), None);
        assert_eq!(fib.lookup_sealed(&b, Timestamp(0)), None);
        fib.seal();
        assert_eq!(fib.lookup_sealed(&a, Timestamp(0)), Some(entry(4, 100)));
        assert_eq!(fib.lookup_sealed(&b, Timestamp(101)), None, "expired");
        // Removals need no seal.
        fib.remove(&b);
        assert_eq!(fib.lookup_sealed(&b, Timestamp(0)), None);
    }

    #[test]
    fn remove_if_checks_the_predicate() {
        let fib = Fib::new([1, 2]);
        let n = Name::from_bytes([1; 32]);
        fib.insert(n, entry(4, 10));
        assert!(!fib.remove_if(&n, |e| e.next_hop == LinkId(5)));
        assert!(fib.remove_if(&n, |e| e.next_hop == LinkId(4)));
        assert!(fib.is_empty());
    }

    #[test]
    fn hasher_depends_on_the_key_and_every_byte() {
        let a = NameHasherBuilder::new([1, 2]);
        let b = NameHasherBuilder::new([3, 2]);
        let n = Name::from_bytes([9; 32]);
        assert_ne!(a.hash_one(n), b.hash_one(n));
        let mut m = [9u8; 32];
        m[31] = 8;
        assert_ne!(a.hash_one(n), a.hash_one(Name::from_bytes(m)));
    }

    proptest! {
        #[test]
        fn fib_agrees_with_a_model(ops in proptest::collection::vec((0u8..16, 0u64..4, any::<bool>()), 0..64)) {
            let fib = Fib::new([5, 6]);
            let mut model = std::collections::BTreeMap::new();
            for (n, link, insert) in ops {
                let name = Name::from_bytes([n; 32]);
                if insert {
                    fib.insert(name, entry(link, u64::MAX));
                    model.insert(n, link);
                } else {
                    fib.remove(&name);
                    model.remove(&n);
                }
            }
            prop_assert_eq!(fib.len(), model.len());
            for (n, link) in model {
                prop_assert_eq!(fib.lookup(&Name::from_bytes([n; 32]), Timestamp(0)).map(|e| e.next_hop), Some(LinkId(link)));
            }
        }
    }
}
