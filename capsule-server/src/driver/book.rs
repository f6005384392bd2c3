//! What the driver knows about names: which capsules it hosts and
//! advertised, and which requests wait for an answer whose source matters.
//!
//! A router accepts a PDU from an endpoint only if its source is the
//! endpoint's name or a capsule the endpoint advertised on that link. So a
//! response leaves from the capsule's name only when the capsule was
//! advertised (and its AdCert was valid when it was); otherwise (a request
//! for a capsule this server does not host, a failed create) it leaves from
//! the server's own name. A `Create` may be addressed to the server's name,
//! since a new capsule has no route yet; its answer then comes from the
//! server's name too.
//!
//! When a create succeeds, the capsule is advertised *before* the `Created`
//! response is sent on the same stream, so the router knows the capsule
//! before the creator hears of it.
//!
//! On a new link every hosted capsule is advertised oldest first (by the
//! creation time in its metadata, then by name), always in the same order.
//! A router accepts a bounded number of capsules per server link and drops
//! the rest; with more capsules than that, the same ones (the oldest) are
//! routable after every reattach, rather than an arbitrary subset.

use std::collections::{HashMap, HashSet};

use gdp_certs::cert::AdCert;
use gdp_certs::{Metadata, Name, Timestamp};
use gdp_proto::capsule::CapsuleResponse;
use gdp_proto::control::AdvertiseEntry;

use crate::service::Response;

/// Most creates waiting for their answer at once.
pub(crate) const MAX_PENDING_CREATES: usize = 65_536;

/// A create in flight.
#[derive(Debug)]
struct PendingCreate {
    entry: AdvertiseEntry,
    /// The request was addressed to the server's name.
    via_server: bool,
}

/// How to send one response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The PDU's source name.
    pub(crate) src: Name,
    /// Advertise this first (a capsule just created or whose AdCert was
    /// renewed, or a replica set that names this server again).
    pub(crate) advertise: Option<AdvertiseEntry>,
    /// Withdraw the capsule first: the newest replica set leaves this
    /// server out.
    pub(crate) withdraw: bool,
}

/// The hosted capsules and the creates in flight. See the module docs.
#[derive(Debug)]
pub(crate) struct Book {
    server: Name,
    /// Every hosted capsule, with the entry that proves it (the latest
    /// AdCert seen).
    hosted: HashMap<Name, AdvertiseEntry>,
    /// Capsules advertised on the current link.
    advertised: HashSet<Name>,
    /// Hosted capsules whose newest replica set leaves this server out:
    /// never advertised.
    retired: HashSet<Name>,
    creates: HashMap<(Name, u64), PendingCreate>,
}

impl Book {
    /// A book for server `server` hosting `hosted`.
    pub(crate) fn new<'a>(
        server: Name,
        hosted: impl IntoIterator<Item = (&'a Metadata, &'a AdCert)>,
    ) -> Self {
        let hosted = hosted
            .into_iter()
            .map(|(md, adcert)| {
                (
                    md.name(),
                    AdvertiseEntry {
                        capsule_md: md.clone(),
                        adcert: adcert.clone(),
                    },
                )
            })
            .collect();
        Book {
            server,
            hosted,
            advertised: HashSet::new(),
            retired: HashSet::new(),
            creates: HashMap::new(),
        }
    }

    /// The book with `retired` capsules left out of every advertisement.
    pub(crate) fn with_retired(mut self, retired: impl IntoIterator<Item = Name>) -> Self {
        self.retired.extend(retired);
        self
    }

    /// True if `capsule` was advertised on the current link, so PDUs may
    /// leave from its name.
    pub(crate) fn is_advertised(&self, capsule: &Name) -> bool {
        self.advertised.contains(capsule)
    }

    /// How many capsules are hosted.
    pub(crate) fn hosted_count(&self) -> usize {
        self.hosted.len()
    }

    /// The entries to advertise on a new link at `now`: every hosted
    /// capsule whose AdCert is valid, oldest first. They become the
    /// advertised set.
    pub(crate) fn attach_entries(&mut self, now: Timestamp) -> Vec<AdvertiseEntry> {
        let mut entries: Vec<AdvertiseEntry> = self
            .hosted
            .values()
            .filter(|e| valid(e, self.server, now))
            .filter(|e| !self.retired.contains(&e.adcert.capsule()))
            .cloned()
            .collect();
        entries.sort_by_cached_key(|e| (e.capsule_md.created(), e.adcert.capsule()));
        let skipped = self.hosted.len() - entries.len();
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "capsules not advertised: their AdCert is not valid now (the owner must renew it)"
            );
        }
        self.advertised = entries.iter().map(|e| e.adcert.capsule()).collect();
        entries
    }

    /// Notes a `Create` from `from` with id `request_id` for `entry`'s
    /// capsule; false if too many creates are in flight (refuse it).
    pub(crate) fn note_create(
        &mut self,
        from: Name,
        request_id: u64,
        entry: AdvertiseEntry,
        via_server: bool,
    ) -> bool {
        if self.creates.len() >= MAX_PENDING_CREATES
            && !self.creates.contains_key(&(from, request_id))
        {
            return false;
        }
        self.creates
            .insert((from, request_id), PendingCreate { entry, via_server });
        true
    }

    /// How to send `response` at `now`.
    pub(crate) fn reply(&mut self, response: &Response, now: Timestamp) -> Reply {
        let key = (response.to, response.request_id);
        let create = match self.creates.get(&key) {
            Some(p) if p.entry.adcert.capsule() == response.capsule => self.creates.remove(&key),
            _ => None,
        };
        let mut advertise = None;
        let mut via_server = false;
        if let Some(create) = create {
            via_server = create.via_server;
            if response.body == CapsuleResponse::Created {
                advertise = self.created(create.entry, now);
            }
        }
        let mut withdraw = false;
        if let CapsuleResponse::Replicas { set: Some(set) } = &response.body
            && set.capsule() == response.capsule
        {
            let capsule = response.capsule;
            if set.contains(&self.server) {
                if self.retired.remove(&capsule)
                    && let Some(entry) = self.hosted.get(&capsule)
                    && valid(entry, self.server, now)
                {
                    self.advertised.insert(capsule);
                    advertise = Some(entry.clone());
                }
            } else if self.retired.insert(capsule) {
                withdraw = self.advertised.remove(&capsule);
            }
        }
        let src = if !via_server && self.advertised.contains(&response.capsule) {
            response.capsule
        } else {
            self.server
        };
        Reply {
            src,
            advertise,
            withdraw,
        }
    }

    /// A create succeeded with `entry`: hosts it (keeping the AdCert that
    /// lasts longer) and returns the entry to advertise, if valid.
    fn created(&mut self, entry: AdvertiseEntry, now: Timestamp) -> Option<AdvertiseEntry> {
        let capsule = entry.adcert.capsule();
        let best = match self.hosted.get(&capsule) {
            Some(old) if old.adcert.validity().not_after >= entry.adcert.validity().not_after => {
                old.clone()
            }
            _ => {
                self.hosted.insert(capsule, entry.clone());
                entry
            }
        };
        if !valid(&best, self.server, now) {
            tracing::warn!(%capsule, "created capsule not advertised: its AdCert is not valid now");
            return None;
        }
        if self.retired.contains(&capsule) {
            return None;
        }
        self.advertised.insert(capsule);
        Some(best)
    }
}

/// True if the entry's AdCert lets `server` serve the capsule at `now`.
fn valid(entry: &AdvertiseEntry, server: Name, now: Timestamp) -> bool {
    entry
        .adcert
        .verify(&entry.capsule_md, now)
        .is_ok_and(|v| v.server() == server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_certs::SecretKey;
    use gdp_certs::cert::{ReplicaSet, Validity};
    use gdp_proto::capsule::ErrorCode;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
    const SERVER: Name = Name::from_bytes([200; 32]);
    const CLIENT: Name = Name::from_bytes([7; 32]);

    fn entry(label: &str, until: u64) -> AdvertiseEntry {
        let owner = SecretKey::from_seed(&[1; 32]);
        let md = Metadata::capsule(
            owner.public(),
            vec![owner.public()],
            label,
            Timestamp::from_secs(1),
            vec![],
        )
        .expect("valid")
        .with_nonce([label.len() as u8; 16]);
        let validity = Validity::new(Timestamp::from_secs(1), Timestamp::from_secs(until));
        AdvertiseEntry {
            adcert: AdCert::issue(&owner, md.name(), SERVER, validity),
            capsule_md: md,
        }
    }

    fn response(capsule: Name, request_id: u64, body: CapsuleResponse) -> Response {
        Response {
            to: CLIENT,
            capsule,
            request_id,
            body,
        }
    }

    #[test]
    fn only_valid_entries_are_advertised_and_answer_from_the_capsule() {
        let good = entry("good", 1_900_000_000);
        let expired = entry("expired", 1_700_000_000);
        let mut book = Book::new(
            SERVER,
            [&good, &expired].map(|e| (&e.capsule_md, &e.adcert)),
        );
        assert_eq!(book.hosted_count(), 2);
        assert_eq!(book.attach_entries(NOW), vec![good.clone()]);
        let ok = book.reply(
            &response(good.adcert.capsule(), 1, CapsuleResponse::Unsubscribed),
            NOW,
        );
        assert_eq!(ok.src, good.adcert.capsule());
        assert_eq!(ok.advertise, None);
        let not_adv = book.reply(
            &response(expired.adcert.capsule(), 2, CapsuleResponse::Unsubscribed),
            NOW,
        );
        assert_eq!(not_adv.src, SERVER);
        let stranger = book.reply(
            &response(
                Name::from_bytes([3; 32]),
                3,
                CapsuleResponse::error(ErrorCode::NotHosted, "no"),
            ),
            NOW,
        );
        assert_eq!(stranger.src, SERVER);
    }

    #[test]
    fn a_create_is_advertised_before_its_answer() {
        let e = entry("new", 1_900_000_000);
        let capsule = e.adcert.capsule();
        let mut book = Book::new(SERVER, []);
        book.attach_entries(NOW);
        assert!(book.note_create(CLIENT, 9, e.clone(), false));
        let reply = book.reply(&response(capsule, 9, CapsuleResponse::Created), NOW);
        assert_eq!(reply.advertise, Some(e.clone()));
        assert_eq!(reply.src, capsule);
        assert_eq!(book.hosted_count(), 1);
        // Answered once: a second response with the same id is an ordinary one.
        let again = book.reply(&response(capsule, 9, CapsuleResponse::Created), NOW);
        assert_eq!(again.advertise, None);
        // And the next attach advertises it.
        assert_eq!(book.attach_entries(NOW), vec![e]);
    }

    #[test]
    fn a_create_via_the_server_is_answered_from_the_server() {
        let e = entry("via", 1_900_000_000);
        let capsule = e.adcert.capsule();
        let mut book = Book::new(SERVER, []);
        assert!(book.note_create(CLIENT, 4, e.clone(), true));
        let reply = book.reply(&response(capsule, 4, CapsuleResponse::Created), NOW);
        assert_eq!(reply.src, SERVER);
        assert_eq!(reply.advertise, Some(e.clone()));
        // A failed create advertises nothing and answers from the server.
        let other = entry("failing", 1_900_000_000);
        assert!(book.note_create(CLIENT, 5, other.clone(), false));
        let reply = book.reply(
            &response(
                other.adcert.capsule(),
                5,
                CapsuleResponse::error(ErrorCode::BadCert, "no"),
            ),
            NOW,
        );
        assert_eq!(
            reply,
            Reply {
                src: SERVER,
                advertise: None,
                withdraw: false,
            }
        );
    }

    #[test]
    fn a_replica_set_without_this_server_withdraws_and_a_newer_one_with_it_advertises() {
        let e = entry("replicated", 1_900_000_000);
        let capsule = e.adcert.capsule();
        let owner = SecretKey::from_seed(&[1; 32]);
        let other = Name::from_bytes([201; 32]);
        let mut book = Book::new(SERVER, [(&e.capsule_md, &e.adcert)]);
        assert_eq!(book.attach_entries(NOW), vec![e.clone()]);
        let set = |version, servers| {
            let set = ReplicaSet::issue(&owner, capsule, version, servers).expect("valid set");
            response(
                capsule,
                version,
                CapsuleResponse::Replicas { set: Some(set) },
            )
        };
        // Named: nothing changes.
        let kept = book.reply(&set(1, vec![SERVER, other]), NOW);
        assert!(!kept.withdraw && kept.advertise.is_none());
        assert_eq!(kept.src, capsule);
        // Retired: withdrawn once, answered from the server, never re-advertised.
        let out = book.reply(&set(2, vec![other]), NOW);
        assert!(out.withdraw);
        assert_eq!(out.src, SERVER);
        assert!(!book.reply(&set(2, vec![other]), NOW).withdraw);
        assert!(book.attach_entries(NOW).is_empty());
        // Named again: advertised before the answer.
        let back = book.reply(&set(3, vec![SERVER]), NOW);
        assert_eq!(back.advertise, Some(e.clone()));
        assert_eq!(back.src, capsule);
        assert_eq!(book.attach_entries(NOW), vec![e]);
    }

    #[test]
    fn the_longer_adcert_wins() {
        let short = entry("c", 1_850_000_000);
        let long = entry("c", 1_950_000_000);
        let capsule = short.adcert.capsule();
        let mut book = Book::new(SERVER, [(&long.capsule_md, &long.adcert)]);
        book.attach_entries(NOW);
        assert!(book.note_create(CLIENT, 1, short, false));
        let reply = book.reply(&response(capsule, 1, CapsuleResponse::Created), NOW);
        assert_eq!(reply.advertise, Some(long));
    }

    #[test]
    fn capsules_are_advertised_oldest_first_in_the_same_order_every_time() {
        let owner = SecretKey::from_seed(&[1; 32]);
        let validity = Validity::new(Timestamp::from_secs(1), Timestamp::from_secs(1_900_000_000));
        let entries: Vec<AdvertiseEntry> = (0..40u8)
            .map(|i| {
                // Creation times out of order, some equal.
                let created = Timestamp::from_secs(1_000 + (u64::from(i) * 7) % 13);
                let md =
                    Metadata::capsule(owner.public(), vec![owner.public()], "c", created, vec![])
                        .expect("valid")
                        .with_nonce([i; 16]);
                AdvertiseEntry {
                    adcert: AdCert::issue(&owner, md.name(), SERVER, validity),
                    capsule_md: md,
                }
            })
            .collect();
        let mut book = Book::new(SERVER, entries.iter().map(|e| (&e.capsule_md, &e.adcert)));
        let first = book.attach_entries(NOW);
        assert_eq!(first.len(), 40);
        let keys: Vec<(Timestamp, Name)> = first
            .iter()
            .map(|e| (e.capsule_md.created(), e.adcert.capsule()))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        // Another book over the same capsules, built in another order.
        let mut again = Book::new(
            SERVER,
            entries.iter().rev().map(|e| (&e.capsule_md, &e.adcert)),
        );
        assert_eq!(again.attach_entries(NOW), first);
        assert_eq!(book.attach_entries(NOW), first);
    }

    #[test]
    fn creates_in_flight_are_bounded() {
        let e = entry("x", 1_900_000_000);
        let mut book = Book::new(SERVER, []);
        for id in 0..MAX_PENDING_CREATES as u64 {
            assert!(book.note_create(CLIENT, id, e.clone(), false));
        }
        assert!(!book.note_create(CLIENT, u64::MAX, e.clone(), false));
        // The same request again replaces its own slot.
        assert!(book.note_create(CLIENT, 0, e, false));
    }
}
