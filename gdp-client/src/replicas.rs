//! Replicated capsules: which servers hold a capsule, and how many of them
//! a write and a read must reach.
//!
//! A capsule may live on several capsule servers (its replicas), listed in
//! an owner-signed [`ReplicaSet`]. A [`Replication`] is that set with two
//! quorums:
//!
//! - the write quorum `W`: a batch is acknowledged once `W` replicas
//!   answered that it is durable, so `W` is the number of replicas whose
//!   disks hold every acknowledged append;
//! - the read quorum `R`: a read asks `R` replicas and returns the freshest
//!   verified answer.
//!
//! With `W + R > N` (`N` replicas) every read quorum meets every write
//! quorum in at least one replica, so a read sees every acknowledged
//! append: read-your-writes. With less, a read may miss recent appends
//! until the replicas have synchronised with each other. Majorities
//! (`W = R = N/2 + 1`, [`Replication::majority`]) give read-your-writes and
//! survive the loss of a minority.
//!
//! Requests for one replica are `At` requests (see
//! [`gdp_proto::capsule`]): addressed to the server's name, naming the
//! capsule inside. Reads ask replicas in parallel, and another one each
//! time a replica fails, until enough have answered.

use std::future::Future;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gdp_certs::cert::ReplicaSet;
use gdp_certs::{Metadata, Name};

use crate::ClientError;

/// A capsule's replica set with its write and read quorums. See the
/// [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    set: ReplicaSet,
    write_quorum: usize,
    read_quorum: usize,
}

impl Replication {
    /// `set` with write quorum `write_quorum` (W) and read quorum
    /// `read_quorum` (R). Both must be between 1 and the number of servers
    /// in the set; `W + R` above that number gives read-your-writes.
    pub fn new(
        set: ReplicaSet,
        write_quorum: usize,
        read_quorum: usize,
    ) -> Result<Replication, ClientError> {
        check_quorums(set.servers().len(), write_quorum, read_quorum)?;
        Ok(Replication {
            set,
            write_quorum,
            read_quorum,
        })
    }

    /// `set` with majority quorums for writes and reads.
    pub fn majority(set: ReplicaSet) -> Replication {
        let m = majority(set.servers().len());
        Replication {
            set,
            write_quorum: m,
            read_quorum: m,
        }
    }

    /// The replica set.
    pub fn set(&self) -> &ReplicaSet {
        &self.set
    }

    /// The replicas' server names, sorted.
    pub fn servers(&self) -> &[Name] {
        self.set.servers()
    }

    /// Replicas that must acknowledge an append (W).
    pub fn write_quorum(&self) -> usize {
        self.write_quorum
    }

    /// Replicas a read asks (R).
    pub fn read_quorum(&self) -> usize {
        self.read_quorum
    }

    /// True if every read meets every acknowledged write (`W + R > N`).
    pub fn reads_own_writes(&self) -> bool {
        self.write_quorum + self.read_quorum > self.set.servers().len()
    }

    /// The same set with other quorums, checked as by [`Replication::new`].
    pub fn with_quorums(
        self,
        write_quorum: usize,
        read_quorum: usize,
    ) -> Result<Replication, ClientError> {
        Replication::new(self.set, write_quorum, read_quorum)
    }

    /// Checks the set against the capsule's metadata (the owner signed it
    /// for this capsule, and every server may host it).
    pub(crate) fn verify(&self, md: &Metadata) -> Result<(), ClientError> {
        self.set.verify(md).map(|_| ()).map_err(|e| {
            ClientError::invalid(format!(
                "the replica set is not capsule {}'s: {e}",
                md.name()
            ))
        })
    }
}

/// A majority of `n` replicas: `n / 2 + 1`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Checks write quorum `w` and read quorum `r` for `n` replicas: both in
/// `1..=n`.
pub fn check_quorums(n: usize, w: usize, r: usize) -> Result<(), ClientError> {
    for (what, q) in [("write", w), ("read", r)] {
        if q == 0 || q > n {
            return Err(ClientError::invalid(format!(
                "a {what} quorum of {q} is not possible with {n} replica{}: it must be 1 to {n}",
                if n == 1 { "" } else { "s" }
            )));
        }
    }
    Ok(())
}

/// The progress of a request sent to several replicas: who was asked, who
/// answered, who failed, and who to ask next. Pure bookkeeping, driven by
/// [`gather`].
#[derive(Debug)]
pub(crate) struct Gather<T> {
    /// Replicas in the order they are asked.
    order: Vec<Name>,
    /// How many of `order` were asked.
    asked: usize,
    /// Answers needed.
    needed: usize,
    /// Asked and not answered yet.
    outstanding: usize,
    answers: Vec<(Name, T)>,
    failures: Vec<(Name, ClientError)>,
}

impl<T> Gather<T> {
    /// A request to `order` (in that order) needing `needed` answers.
    pub(crate) fn new(order: Vec<Name>, needed: usize) -> Self {
        Gather {
            order,
            asked: 0,
            needed,
            outstanding: 0,
            answers: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The replicas to ask first: `first` of them (at least those needed).
    pub(crate) fn start(&mut self, first: usize) -> Vec<Name> {
        let n = first.max(self.needed).min(self.order.len());
        (0..n).filter_map(|_| self.ask_next()).collect()
    }

    fn ask_next(&mut self) -> Option<Name> {
        let s = *self.order.get(self.asked)?;
        self.asked += 1;
        self.outstanding += 1;
        Some(s)
    }

    /// Takes the outcome of asking `server`; returns the replica to ask
    /// instead when it failed and one is left.
    pub(crate) fn on_outcome(
        &mut self,
        server: Name,
        outcome: Result<T, ClientError>,
    ) -> Option<Name> {
        self.outstanding = self.outstanding.saturating_sub(1);
        match outcome {
            Ok(t) => {
                self.answers.push((server, t));
                None
            }
            Err(e) => {
                self.failures.push((server, e));
                // Replace the failed replica while an answer is missing.
                if self.answers.len() + self.outstanding < self.needed {
                    self.ask_next()
                } else {
                    None
                }
            }
        }
    }

    /// True when nothing more is awaited: every replica asked answered or
    /// failed (with those needed answered early, the rest are not awaited
    /// only if `early` is set).
    pub(crate) fn is_done(&self, early: bool) -> bool {
        self.outstanding == 0 || (early && self.answers.len() >= self.needed)
    }

    /// The answers, if enough came; else the error naming each replica's
    /// outcome.
    pub(crate) fn finish(self, what: &'static str) -> Result<Vec<(Name, T)>, ClientError> {
        if self.answers.len() >= self.needed {
            return Ok(self.answers);
        }
        let mut outcomes: Vec<(Name, String)> = self
            .answers
            .iter()
            .map(|(s, _)| (*s, "answered".to_owned()))
            .collect();
        let transient = self.failures.iter().all(|(_, e)| e.is_transient());
        outcomes.extend(self.failures.into_iter().map(|(s, e)| (s, e.to_string())));
        outcomes.extend(
            self.order[self.asked..]
                .iter()
                .map(|s| (*s, "not asked".to_owned())),
        );
        Err(ClientError::Quorum {
            what,
            needed: self.needed,
            got: self.answers.len(),
            outcomes,
            transient,
        })
    }
}

/// Asks the replicas of `order` with `op`, `first` of them at once (at
/// least `needed`), asking the next one in `order` each time one fails,
/// until `needed` answered (then the others still out are not awaited,
/// unless `wait_all`) or every replica was tried. Returns the answers, or
/// [`ClientError::Quorum`] naming each replica's outcome.
pub(crate) async fn gather<T, F, Fut>(
    what: &'static str,
    order: Vec<Name>,
    first: usize,
    needed: usize,
    wait_all: bool,
    op: F,
) -> Result<Vec<(Name, T)>, ClientError>
where
    F: Fn(Name) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut state = Gather::new(order, needed);
    let mut pending = FuturesUnordered::new();
    let ask = |s: Name| {
        let fut = op(s);
        async move { (s, fut.await) }
    };
    for s in state.start(first) {
        pending.push(ask(s));
    }
    while !state.is_done(!wait_all) {
        let Some((server, outcome)) = pending.next().await else {
            break;
        };
        if let Err(e) = &outcome {
            tracing::debug!(%server, error = %e, what, "a replica failed");
        }
        if let Some(next) = state.on_outcome(server, outcome) {
            pending.push(ask(next));
        }
    }
    state.finish(what)
}

/// The replicas of `servers`, rotated to start at a random one, so that
/// readers spread over the set.
pub(crate) fn rotated(servers: &[Name]) -> Vec<Name> {
    let mut order = servers.to_vec();
    if !order.is_empty() {
        let k = rand::random::<u64>() % order.len() as u64;
        order.rotate_left(usize::try_from(k).unwrap_or(0));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_certs::{SecretKey, Timestamp};
    use gdp_proto::capsule::ErrorCode;

    fn names(n: u8) -> Vec<Name> {
        (1..=n).map(|i| Name::from_bytes([i; 32])).collect()
    }

    fn set(n: u8) -> (Metadata, ReplicaSet) {
        let owner = SecretKey::from_seed(&[4; 32]);
        let md = Metadata::capsule(
            owner.public(),
            vec![owner.public()],
            "r",
            Timestamp::from_secs(1),
            vec![],
        )
        .expect("valid");
        let set = ReplicaSet::issue(&owner, md.name(), 1, names(n)).expect("issued");
        (md, set)
    }

    fn not_hosted() -> ClientError {
        ClientError::Server {
            code: ErrorCode::NotHosted,
            message: "no".into(),
        }
    }

    #[test]
    fn quorums_must_be_within_the_set() {
        let (md, s) = set(3);
        let r = Replication::new(s.clone(), 2, 2).expect("valid");
        assert!(r.reads_own_writes());
        assert!(r.verify(&md).is_ok());
        assert!(
            !Replication::new(s.clone(), 1, 1)
                .expect("ok")
                .reads_own_writes()
        );
        for (w, q) in [(0, 1), (1, 0), (4, 1), (1, 4)] {
            let err = Replication::new(s.clone(), w, q).expect_err("out of range");
            assert!(
                err.to_string().contains("must be 1 to 3"),
                "{err} for W={w} R={q}"
            );
        }
        let m = Replication::majority(s.clone());
        assert_eq!((m.write_quorum(), m.read_quorum()), (2, 2));
        assert_eq!(majority(1), 1);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
        assert!(m.with_quorums(3, 1).is_ok());
        let (other, _) = {
            let owner = SecretKey::from_seed(&[5; 32]);
            let md = Metadata::capsule(
                owner.public(),
                vec![owner.public()],
                "o",
                Timestamp::from_secs(1),
                vec![],
            )
            .expect("valid");
            (md, ())
        };
        assert!(r.verify(&other).is_err());
    }

    #[test]
    fn a_failed_replica_is_replaced_by_the_next() {
        let n = names(4);
        let mut g: Gather<u32> = Gather::new(n.clone(), 2);
        assert_eq!(g.start(0), vec![n[0], n[1]]);
        assert_eq!(g.on_outcome(n[0], Err(not_hosted())), Some(n[2]));
        assert!(!g.is_done(true));
        assert_eq!(g.on_outcome(n[1], Ok(7)), None);
        assert!(!g.is_done(true));
        assert_eq!(g.on_outcome(n[2], Ok(9)), None);
        assert!(g.is_done(true));
        let answers = g.finish("read").expect("quorum");
        assert_eq!(answers, vec![(n[1], 7), (n[2], 9)]);
    }

    #[test]
    fn an_exhausted_set_names_every_replica() {
        let n = names(3);
        let mut g: Gather<u32> = Gather::new(n.clone(), 2);
        g.start(0);
        assert_eq!(g.on_outcome(n[1], Ok(1)), None);
        assert_eq!(g.on_outcome(n[0], Err(not_hosted())), Some(n[2]));
        let timeout = ClientError::Timeout {
            what: "read",
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(g.on_outcome(n[2], Err(timeout)), None);
        assert!(g.is_done(true));
        let err = g.finish("read").expect_err("no quorum");
        let text = err.to_string();
        assert!(text.contains("1 of the 2 replicas needed"), "{text}");
        for s in &n {
            assert!(text.contains(&s.short().to_string()), "{text}");
        }
        assert!(
            text.contains("NotHosted") && text.contains("timed out"),
            "{text}"
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn asking_everyone_waits_for_everyone() {
        let n = names(3);
        let mut g: Gather<u32> = Gather::new(n.clone(), 1);
        assert_eq!(g.start(3), n);
        assert_eq!(g.on_outcome(n[0], Ok(1)), None);
        assert!(g.is_done(true));
        assert!(!g.is_done(false));
        assert_eq!(g.on_outcome(n[1], Err(not_hosted())), None);
        assert_eq!(g.on_outcome(n[2], Ok(3)), None);
        assert!(g.is_done(false));
        assert_eq!(g.finish("x").expect("enough").len(), 2);
    }

    #[tokio::test]
    async fn gather_replaces_failures_and_stops_at_the_quorum() {
        let n = names(5);
        let failing = [n[0], n[2]];
        let asked = std::sync::Mutex::new(Vec::new());
        let answers = gather("read", n.clone(), 0, 2, false, |s| {
            asked.lock().expect("lock").push(s);
            async move {
                if failing.contains(&s) {
                    Err(not_hosted())
                } else {
                    Ok(s)
                }
            }
        })
        .await
        .expect("quorum");
        let got: Vec<Name> = answers.iter().map(|(s, _)| *s).collect();
        assert_eq!(got.len(), 2);
        assert!(got.contains(&n[1]) && got.contains(&n[3]), "{got:?}");
        // The fifth replica was never needed.
        assert!(!asked.lock().expect("lock").contains(&n[4]));
    }

    #[test]
    fn rotation_keeps_every_replica() {
        let n = names(5);
        let mut r = rotated(&n);
        r.sort();
        assert_eq!(r, n);
        assert!(rotated(&[]).is_empty());
    }
}
