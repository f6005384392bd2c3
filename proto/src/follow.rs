//! Following a capsule: what a subscriber does with the records that reach
//! it, from wherever they come.
//!
//! A subscriber's records arrive by two ways at once: live, as Publish PDUs
//! copied down the capsule's delivery tree, and by unicast, as answers to
//! the reads it makes for the backlog it asked for and for whatever the tree
//! lost (a router on the way restarted, a link was cut, a queue was full).
//! The two overlap and interleave. A [`Follower`] turns them into the
//! capsule's chain, in order, with no gap and no duplicate:
//!
//! ```text
//!   Publish (tree) ──┐                               ┌──► pop(): next record, in order
//!                    ├──► offer(records, proof) ──►  │
//!   Records (reads) ─┘    verify, keep >= next       └──► want(): a range to read by unicast
//! ```
//!
//! It does no I/O and keeps no clock, so the client SDK and the routers'
//! simulations run the same rules.
//!
//! # What is checked
//!
//! Every batch offered is verified against the capsule's metadata before
//! anything of it is kept (the proof of its last record, a writer's
//! heartbeat, and the `prev` hashes inside the batch). Records handed out by
//! [`pop`](Follower::pop) also chain to each other across batches: each one's
//! `prev` is the hash of the one popped before, so two batches from two
//! branches of a fork cannot be spliced into one stream. A record offered at
//! a seqno where a different verified record waits is a fork too.
//!
//! # Bounds
//!
//! At most `max_ahead` records wait ahead of the next one to pop; beyond
//! that the highest are let go and read again later (what exists is known
//! from the highest verified seqno seen, the `tail`).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use gdp_certs::Metadata;

use crate::proof::{Proof, ProofError, VerifiedHeartbeat};
use crate::record::{Record, RecordHash};

/// Why a [`Follower`] refused what it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// A batch did not verify against the capsule's metadata.
    #[error("records do not verify: {0}")]
    Unverified(#[from] ProofError),
    /// Two different records, each verified, at one seqno; or a record whose
    /// `prev` is not the hash of the record before it in the stream.
    #[error("fork at seqno {seqno}: two different verified records")]
    Fork {
        /// The seqno with two records.
        seqno: u64,
    },
}

/// A subscriber's view of one capsule's chain. See the [module
/// documentation](self).
#[derive(Debug, Clone)]
pub struct Follower {
    metadata: Metadata,
    /// The first seqno not yet popped.
    next: u64,
    /// The hash of the last record popped, once one was.
    last: Option<RecordHash>,
    /// Verified records at or after `next`, waiting their turn.
    ahead: BTreeMap<u64, Record>,
    max_ahead: usize,
    /// The highest seqno seen in a verified batch.
    tail: u64,
}

impl Follower {
    /// Follows the capsule of `metadata` from seqno `from` (0 and 1 both
    /// mean from the first record), keeping at most `max_ahead` records
    /// (at least one) waiting ahead of the next.
    pub fn new(metadata: Metadata, from: u64, max_ahead: usize) -> Self {
        Follower {
            metadata,
            next: from.max(1),
            last: None,
            ahead: BTreeMap::new(),
            max_ahead: max_ahead.max(1),
            tail: 0,
        }
    }

    /// The capsule's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The first seqno not yet popped.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The highest seqno seen in a verified batch (0 before any).
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// How many verified records wait ahead of the next one to pop.
    pub fn waiting(&self) -> usize {
        self.ahead.len()
    }

    /// Takes `records` (contiguous, oldest first) with the `proof` of the
    /// last: a Publish from the tree, an `Event`, or a `Records` answer to a
    /// read. The batch is verified as a whole first; then the records at or
    /// after [`next`](Self::next) are kept and the rest (already popped)
    /// dropped. Returns the batch's verified heartbeat (what a caller
    /// hands out with the records, without verifying them again). An
    /// error leaves the follower as it was.
    pub fn offer(
        &mut self,
        records: Vec<Record>,
        proof: &Proof,
    ) -> Result<VerifiedHeartbeat, FollowError> {
        let heartbeat = proof.verify_range(&self.metadata, &records)?;
        for record in &records {
            if let Some(held) = self.ahead.get(&record.seqno())
                && held.hash() != record.hash()
            {
                return Err(FollowError::Fork {
                    seqno: record.seqno(),
                });
            }
        }
        if let Some(last) = records.last() {
            self.tail = self.tail.max(last.seqno());
        }
        for record in records {
            let seqno = record.seqno();
            if seqno < self.next || self.ahead.contains_key(&seqno) {
                continue;
            }
            if self.ahead.len() >= self.max_ahead {
                // Keep the lowest seqnos: they are popped first; the
                // others are read again when their turn comes.
                match self.ahead.last_key_value() {
                    Some((&highest, _)) if highest > seqno => {
                        self.ahead.remove(&highest);
                    }
                    _ => continue,
                }
            }
            self.ahead.insert(seqno, record);
        }
        Ok(heartbeat)
    }

    /// The next record of the chain, if it is here. A record that does not
    /// chain to the one popped before it is a fork: it is dropped and the
    /// error returned (the follower stays at the same seqno).
    pub fn pop(&mut self) -> Result<Option<Record>, FollowError> {
        let Some(entry) = self.ahead.first_entry() else {
            return Ok(None);
        };
        if *entry.key() != self.next {
            return Ok(None);
        }
        let record = entry.remove();
        if let Some(last) = self.last
            && *record.prev() != last
        {
            return Err(FollowError::Fork {
                seqno: record.seqno(),
            });
        }
        self.last = Some(record.hash());
        self.next += 1;
        Ok(Some(record))
    }

    /// A range of seqnos to read by unicast, if the next record is missing
    /// and known to exist: from [`next`](Self::next) up to the record before
    /// the first one waiting, or up to the tail. `None` when the next record
    /// is here, or nothing after what was popped is known to exist.
    pub fn want(&self) -> Option<RangeInclusive<u64>> {
        if self.next > self.tail {
            return None;
        }
        match self.ahead.first_key_value() {
            Some((&first, _)) if first == self.next => None,
            Some((&first, _)) => Some(self.next..=first - 1),
            None => Some(self.next..=self.tail),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use gdp_certs::{SecretKey, Timestamp};
    use proptest::prelude::*;

    use super::*;
    use crate::chain::ChainState;
    use crate::control::tests::capsule_md;
    use crate::proof::Heartbeat;

    /// A capsule of `n` records, signed by its writer.
    fn capsule(n: u64) -> (Metadata, Vec<Record>) {
        let md = capsule_md(1, "followed", vec![]);
        let mut state = ChainState::new(md.name());
        let records = (1..=n)
            .map(|i| {
                state
                    .next_record(Bytes::from(i.to_be_bytes().to_vec()), Timestamp(i))
                    .expect("within limits")
            })
            .collect();
        (md, records)
    }

    /// Records `a..=b` of `records` with the proof of `b`.
    fn batch(records: &[Record], a: u64, b: u64) -> (Vec<Record>, Proof) {
        let key = SecretKey::from_seed(&[1; 32]);
        let part: Vec<Record> = records[(a - 1) as usize..b as usize].to_vec();
        let last = part.last().expect("a <= b");
        let proof = Proof::build(Heartbeat::sign(&key, last), b, |s| {
            records
                .get(usize::try_from(s).ok()? - 1)
                .map(Record::header)
        })
        .expect("all headers at hand");
        (part, proof)
    }

    fn drain(f: &mut Follower) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(r) = f.pop().expect("no fork") {
            out.push(r.seqno());
        }
        out
    }

    #[test]
    fn live_records_wait_for_the_backlog() {
        let (md, records) = capsule(10);
        let mut f = Follower::new(md, 3, 64);
        assert_eq!(f.want(), None);
        let (live, proof) = batch(&records, 8, 8);
        f.offer(live, &proof).expect("verifies");
        assert_eq!(drain(&mut f), Vec::<u64>::new());
        assert_eq!(f.want(), Some(3..=7));
        let (backlog, proof) = batch(&records, 2, 7);
        f.offer(backlog, &proof).expect("verifies");
        assert_eq!(drain(&mut f), vec![3, 4, 5, 6, 7, 8]);
        assert_eq!(f.want(), None);
        // Duplicates of what was popped are dropped.
        let (again, proof) = batch(&records, 1, 9);
        f.offer(again, &proof).expect("verifies");
        assert_eq!(drain(&mut f), vec![9]);
        assert_eq!(f.next(), 10);
    }

    #[test]
    fn a_forged_batch_leaves_the_follower_as_it_was() {
        let (md, records) = capsule(4);
        let mut f = Follower::new(md, 1, 64);
        let (mut part, proof) = batch(&records, 1, 2);
        part[0] = records[2].clone();
        assert!(matches!(
            f.offer(part, &proof),
            Err(FollowError::Unverified(_))
        ));
        assert_eq!((f.tail(), f.waiting(), f.want()), (0, 0, None));
        // A good batch is taken, with the heartbeat that verified it.
        let (good, proof) = batch(&records, 1, 2);
        assert_eq!(f.offer(good, &proof).map(|hb| hb.seqno()), Ok(2));
    }

    #[test]
    fn batches_from_two_branches_are_not_spliced() {
        let (md, records) = capsule(3);
        // Another branch of the same capsule from seqno 2 on, signed by the
        // same writer.
        let mut state = ChainState::new(md.name());
        let mut other: Vec<Record> = Vec::new();
        for i in 1..=3u64 {
            let payload = if i == 1 { i } else { 100 + i };
            other.push(
                state
                    .next_record(Bytes::from(payload.to_be_bytes().to_vec()), Timestamp(i))
                    .expect("within limits"),
            );
        }
        assert_eq!(other[0], records[0]);
        let mut f = Follower::new(md.clone(), 1, 64);
        let (a, pa) = batch(&records, 1, 1);
        f.offer(a, &pa).expect("verifies");
        let (b, pb) = batch(&other, 2, 3);
        f.offer(b, &pb).expect("verifies");
        assert_eq!(f.pop().expect("first").map(|r| r.seqno()), Some(1));
        // The other branch's record 2 waits; this branch's record 2 is the
        // fork.
        let (c, pc) = batch(&records, 2, 2);
        assert_eq!(f.offer(c, &pc), Err(FollowError::Fork { seqno: 2 }));
        // And a record that does not chain to what was popped is refused.
        let mut g = Follower::new(md, 1, 64);
        let (a, pa) = batch(&records, 1, 2);
        g.offer(a, &pa).expect("verifies");
        assert_eq!(drain(&mut g), vec![1, 2]);
        let (d, pd) = batch(&other, 3, 3);
        g.offer(d, &pd).expect("verifies");
        assert_eq!(g.pop(), Err(FollowError::Fork { seqno: 3 }));
    }

    #[test]
    fn the_records_ahead_are_bounded() {
        let (md, records) = capsule(20);
        let mut f = Follower::new(md, 1, 4);
        for s in (5..=20).rev() {
            let (b, p) = batch(&records, s, s);
            f.offer(b, &p).expect("verifies");
            assert!(f.waiting() <= 4);
        }
        assert_eq!(f.tail(), 20);
        assert_eq!(f.want(), Some(1..=4));
        let mut popped = Vec::new();
        while let Some(range) = f.want() {
            let (b, p) = batch(&records, *range.start(), *range.end());
            f.offer(b, &p).expect("verifies");
            popped.extend(drain(&mut f));
        }
        popped.extend(drain(&mut f));
        assert_eq!(popped, (1..=20).collect::<Vec<_>>());
    }

    proptest! {
        /// Whatever the tree delivers (batches lost, repeated, reordered),
        /// reading what `want` asks for yields the whole chain from `from`,
        /// in order, once.
        #[test]
        fn every_record_once_in_order(
            n in 1u64..40,
            from in 0u64..10,
            cuts in proptest::collection::vec(1u64..40, 0..12),
            fate in proptest::collection::vec(0u8..4, 40),
            max_ahead in 1usize..16,
        ) {
            let (md, records) = capsule(n);
            let mut bounds: Vec<u64> = cuts.into_iter().filter(|c| *c < n).collect();
            bounds.push(n);
            bounds.sort_unstable();
            bounds.dedup();
            let mut live = Vec::new();
            let mut a = 1;
            for b in bounds {
                live.push(batch(&records, a, b));
                a = b + 1;
            }
            let mut f = Follower::new(md, from, max_ahead);
            let mut out = Vec::new();
            let mut delivered = Vec::new();
            for (i, item) in live.iter().enumerate() {
                match fate[i % fate.len()] {
                    0 => {}
                    1 => delivered.push(item.clone()),
                    2 => { delivered.push(item.clone()); delivered.push(item.clone()); }
                    _ => delivered.insert(0, item.clone()),
                }
            }
            for (part, proof) in delivered {
                f.offer(part, &proof).expect("verifies");
                out.extend(drain(&mut f));
            }
            // The last record is learnt at least from a tip or a read of
            // the latest.
            let (tip, proof) = batch(&records, n, n);
            f.offer(tip, &proof).expect("verifies");
            out.extend(drain(&mut f));
            let mut reads = 0;
            while let Some(range) = f.want() {
                let (part, proof) = batch(&records, *range.start(), *range.end());
                f.offer(part, &proof).expect("verifies");
                out.extend(drain(&mut f));
                reads += 1;
                prop_assert!(reads <= 2 * n, "reads do not converge");
            }
            let want: Vec<u64> = (from.max(1)..=n).collect();
            prop_assert_eq!(out, want);
        }
    }
}
