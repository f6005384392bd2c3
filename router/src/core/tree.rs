//! Delivery trees: a capsule's new records copied once per link.
//!
//! A subscriber does not ask the capsule's server for every record: it
//! joins the capsule's *delivery tree* at its router, and each router on
//! the way to the server keeps one branch. A router holds, per capsule it
//! has subscribers for, a [`Tree`]: the *members* (the links that joined,
//! each with a lease) and the *upstream* link (toward the capsule, through
//! which this router itself joined).
//!
//! # Messages
//!
//! - `Subscribe { capsule }` (a [`PduType::Subscribe`] PDU, `dst` = the
//!   capsule, `src` = the sender's own name) from link `L` adds or
//!   refreshes the membership (capsule, `L`) for `tree_lease`. From an
//!   endpoint its `src` must be the endpoint's attached name, from a router
//!   link in use the peer's name: anything else is a
//!   [`DropReason::BadSource`] violation, as for any PDU. The first member
//!   makes a new tree, which joins upstream at once: the router sends its
//!   own `Subscribe` (`src` = this router) toward the capsule along the
//!   FIB, or through the miss path (pending queue and lookup) when it has
//!   no route yet. The link that join leaves on is the tree's upstream: a
//!   router link, or the link of the capsule's server attached here; a
//!   different upstream before it is sent an Unsubscribe. While the tree has members the router refreshes upstream every
//!   `tree_refresh`, along the route of the moment.
//! - `Unsubscribe { capsule }` from `L` removes the membership.
//! - `Publish` (`dst` = `src` = the capsule, the records and their proof)
//!   is accepted from `L` only if a tree for the capsule exists and `L` is
//!   its upstream or the FIB's next hop for the capsule (which then becomes
//!   the upstream). The same bytes are queued once on every member link
//!   other than `L` (the TTL decremented toward routers, as for forwarded
//!   PDUs). Nothing is decoded: subscribers verify records against the
//!   capsule's metadata themselves.
//!
//! Routers never forward these three PDU types: the fast path leaves them
//! to the core ([`Reason::Tree`](super::fast::Reason::Tree)).
//!
//! # Failures
//!
//! Tree state is soft. A membership ends with an `Unsubscribe`, with its
//! link going down, or when its lease runs out without a refresh. A tree
//! left without members sends `Unsubscribe` upstream (best effort) and is
//! deleted. When the upstream link goes down, every tree that used it joins
//! again at once, along whatever route the FIB (or a new lookup) gives.
//!
//! # Bounds
//!
//! At most `max_trees` trees, `max_tree_members` members per tree and
//! `max_tree_joins_per_link` memberships per link; each link's Subscribes
//! (refreshes included) pass a token bucket (`subscribe_rate_per_link`).
//! Every refusal is counted in [`TreeStats`](super::TreeStats) and is not
//! a violation (the sender refreshes later).
//!
//! **No amplification.** A tree sends only to its members, and a link
//! becomes a member only by a Subscribe that arrived on that very link
//! from a source proven there. No message names another link or another
//! endpoint as a subscriber, so a forged Subscribe (any `src` the sender
//! did not prove) adds nothing, and a link that never subscribed never
//! receives a copy: the most one Subscribe can draw toward a link is one
//! copy of each record, toward the link it came on.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use gdp_certs::codec::Encode;
use gdp_certs::{Name, Timestamp};
use gdp_proto::control::ControlMessage;
use gdp_proto::pdu::{HEADER_LEN, decrement_ttl};
use gdp_proto::{Flags, PduHeader, PduType};

use super::attach::LinkKind;
use super::io::LinkId;
use super::limits::TokenBucket;
use super::timers::Timer;
use super::{DropReason, RouterCore};

/// One capsule's delivery tree at this router.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// The link toward the capsule this router joined through; `None`
    /// while the join waits for a route.
    upstream: Option<LinkId>,
    /// Member links, each with its lease's end.
    members: BTreeMap<LinkId, Timestamp>,
    /// When the upstream join is refreshed next.
    refresh_at: Timestamp,
    /// When the tree's timer is set to fire next.
    wake: Timestamp,
}

/// A tree as tests and metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeInfo {
    /// The link toward the capsule, once the join has found a route.
    pub upstream: Option<LinkId>,
    /// The member links, in order.
    pub members: Vec<LinkId>,
}

/// Every tree of a router, and the per-link indexes and budgets.
#[derive(Debug, Default)]
pub(crate) struct Trees {
    trees: BTreeMap<Name, Tree>,
    /// Capsules each link is a member of.
    by_link: BTreeMap<LinkId, BTreeSet<Name>>,
    /// Each link's Subscribe budget.
    budgets: BTreeMap<LinkId, TokenBucket>,
    /// Memberships in all trees.
    memberships: usize,
}

impl Trees {
    /// Trees now.
    pub(crate) fn len(&self) -> usize {
        self.trees.len()
    }

    /// Memberships now.
    pub(crate) fn memberships(&self) -> usize {
        self.memberships
    }

    /// Removes `link` from `capsule`'s tree; returns true if it was a
    /// member.
    fn remove_member(&mut self, capsule: Name, link: LinkId) -> bool {
        let Some(tree) = self.trees.get_mut(&capsule) else {
            return false;
        };
        if tree.members.remove(&link).is_none() {
            return false;
        }
        self.memberships -= 1;
        if let Some(caps) = self.by_link.get_mut(&link) {
            caps.remove(&capsule);
            if caps.is_empty() {
                self.by_link.remove(&link);
            }
        }
        true
    }
}

/// What a Subscribe or Unsubscribe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    Join,
    Leave,
}

impl RouterCore {
    /// The delivery tree of `capsule` at this router, if it has one.
    pub fn tree(&self, capsule: &Name) -> Option<TreeInfo> {
        self.trees.trees.get(capsule).map(|t| TreeInfo {
            upstream: t.upstream,
            members: t.members.keys().copied().collect(),
        })
    }

    /// The capsules this router has a delivery tree for, in order.
    pub fn tree_capsules(&self) -> impl Iterator<Item = Name> + '_ {
        self.trees.trees.keys().copied()
    }

    /// A Subscribe or Unsubscribe on `link`, whose sender was checked
    /// (its `src` is the name proven on the link).
    pub(crate) fn on_tree_control(
        &mut self,
        now: Timestamp,
        link: LinkId,
        header: &PduHeader,
        bytes: &Bytes,
    ) {
        let msg = ControlMessage::from_payload(header.ptype, bytes.slice(HEADER_LEN..))
            .and_then(|m| m.check_addressed(header).map(|()| m));
        match msg {
            Ok(ControlMessage::Subscribe { capsule }) => {
                self.membership(now, link, capsule, Membership::Join);
            }
            Ok(ControlMessage::Unsubscribe { capsule }) => {
                self.membership(now, link, capsule, Membership::Leave);
            }
            _ => self.violation(now, link, DropReason::Malformed),
        }
    }

    fn membership(&mut self, now: Timestamp, link: LinkId, capsule: Name, what: Membership) {
        match what {
            Membership::Join => self.join(now, link, capsule),
            Membership::Leave => {
                if self.trees.remove_member(capsule, link) {
                    self.stats.trees.pruned_unsubscribe += 1;
                    self.prune_if_empty(capsule);
                }
            }
        }
    }

    /// Adds or refreshes the membership (`capsule`, `link`), within the
    /// limits; a new tree joins upstream.
    fn join(&mut self, now: Timestamp, link: LinkId, capsule: Name) {
        let rate = self.config.subscribe_rate_per_link;
        let budget = self
            .trees
            .budgets
            .entry(link)
            .or_insert_with(|| TokenBucket::full(rate, now));
        if !budget.try_take(rate, now, 1) {
            self.stats.trees.refused_rate += 1;
            return;
        }
        let lease = now.saturating_add(self.config.tree_lease);
        let exists = self.trees.trees.contains_key(&capsule);
        if let Some(tree) = self.trees.trees.get_mut(&capsule)
            && let Some(until) = tree.members.get_mut(&link)
        {
            *until = lease;
            self.stats.trees.joins += 1;
            return;
        }
        if !exists && self.trees.trees.len() >= self.config.max_trees {
            self.stats.trees.refused_trees += 1;
            return;
        }
        let members = self
            .trees
            .trees
            .get(&capsule)
            .map_or(0, |t| t.members.len());
        if members >= self.config.max_tree_members {
            self.stats.trees.refused_members += 1;
            return;
        }
        let held = self.trees.by_link.get(&link).map_or(0, BTreeSet::len);
        if held >= self.config.max_tree_joins_per_link {
            self.stats.trees.refused_link += 1;
            return;
        }
        let refresh_at = now.saturating_add(self.config.tree_refresh);
        let tree = self.trees.trees.entry(capsule).or_insert_with(|| Tree {
            upstream: None,
            members: BTreeMap::new(),
            refresh_at,
            wake: refresh_at,
        });
        tree.members.insert(link, lease);
        let wake = tree.wake;
        self.trees.by_link.entry(link).or_default().insert(capsule);
        self.trees.memberships += 1;
        self.stats.trees.joins += 1;
        if !exists {
            self.join_upstream(now, capsule);
            // A join that did not leave at once (waiting for a lookup, or
            // refused) is checked again in TREE_REJOIN.
            let mut wake = wake;
            if let Some(tree) = self.trees.trees.get_mut(&capsule)
                && tree.upstream.is_none()
            {
                tree.refresh_at = now.saturating_add(self.config.tree_refresh.min(TREE_REJOIN));
                tree.wake = tree.wake.min(tree.refresh_at);
                wake = tree.wake;
            }
            self.timers.schedule(wake, Timer::Tree(capsule));
        }
    }

    /// Sends this router's Subscribe for `capsule` toward the capsule, and
    /// takes the FIB's next hop as the tree's upstream. A join that finds
    /// no route waits in the pending queue while the capsule is looked up.
    fn join_upstream(&mut self, now: Timestamp, capsule: Name) {
        let seq = self.next_seq();
        let pdu = match (ControlMessage::Subscribe { capsule }).to_pdu(capsule, self.name, seq) {
            Ok(p) => p,
            Err(e) => return tracing::warn!(error = %e, "subscribe not built"),
        };
        self.stats.trees.upstream_joins += 1;
        let header = pdu.wire_header();
        // Sent now along the FIB, or once a lookup finds a route; either
        // way `joined_via` learns the link it leaves on.
        self.forward(now, header, pdu.to_bytes());
    }

    /// This router's Subscribe for `capsule` left on `hop`: that is the
    /// tree's upstream now.
    pub(crate) fn joined_via(&mut self, capsule: Name, hop: LinkId) {
        self.set_upstream(capsule, hop);
    }

    /// `capsule`'s upstream is now `hop`; a previous, different upstream is
    /// told to forget this router's membership.
    fn set_upstream(&mut self, capsule: Name, hop: LinkId) {
        let Some(tree) = self.trees.trees.get_mut(&capsule) else {
            return;
        };
        let old = tree.upstream.replace(hop);
        if let Some(old) = old.filter(|o| *o != hop) {
            self.leave_upstream(capsule, old);
        }
    }

    /// Sends this router's Unsubscribe for `capsule` on `link`, if the link
    /// is still there.
    fn leave_upstream(&mut self, capsule: Name, link: LinkId) {
        if !self.links.contains_key(&link) {
            return;
        }
        let seq = self.next_seq();
        match (ControlMessage::Unsubscribe { capsule }).to_pdu(capsule, self.name, seq) {
            Ok(pdu) => {
                self.stats.trees.upstream_leaves += 1;
                self.send_on(link, pdu.to_bytes());
            }
            Err(e) => tracing::warn!(error = %e, "unsubscribe not built"),
        }
    }

    /// Deletes `capsule`'s tree if it has no member left, leaving upstream.
    fn prune_if_empty(&mut self, capsule: Name) {
        let empty = self
            .trees
            .trees
            .get(&capsule)
            .is_some_and(|t| t.members.is_empty());
        if !empty {
            return;
        }
        if let Some(tree) = self.trees.trees.remove(&capsule)
            && let Some(up) = tree.upstream
            && !self.shutting_down
        {
            self.leave_upstream(capsule, up);
        }
    }

    /// A Publish on `link` (its sender's source was checked if it is an
    /// endpoint): copied to every member but `link` if `link` is the tree's
    /// upstream or the FIB's next hop for the capsule, dropped otherwise.
    pub(crate) fn on_publish(
        &mut self,
        now: Timestamp,
        link: LinkId,
        header: &PduHeader,
        bytes: Bytes,
    ) {
        let capsule = header.dst;
        if header.src != capsule {
            return self.violation(now, link, DropReason::Malformed);
        }
        let Some(tree) = self.trees.trees.get(&capsule) else {
            self.stats.trees.publish_no_tree += 1;
            return;
        };
        let from_upstream = tree.upstream == Some(link)
            || self
                .fib
                .lookup(&capsule, now)
                .is_some_and(|e| e.next_hop == link);
        if !from_upstream {
            self.stats.trees.publish_not_upstream += 1;
            return;
        }
        if tree.upstream != Some(link) {
            self.set_upstream(capsule, link);
        }
        self.stats.trees.publishes += 1;
        let members: Vec<LinkId> = self.trees.trees[&capsule]
            .members
            .keys()
            .copied()
            .filter(|m| *m != link)
            .collect();
        let reliable = !header.flags.contains(Flags::UNRELIABLE);
        // One copy with the TTL decremented, shared by every router member.
        let mut toward_routers: Option<Option<Bytes>> = None;
        for member in members {
            let Some(to_router) = self.links.get(&member).map(|s| s.is_router()) else {
                continue;
            };
            let copy = if to_router {
                let decremented = toward_routers.get_or_insert_with(|| {
                    if header.ttl == 0 {
                        return None;
                    }
                    let mut buf = BytesMut::from(&bytes[..]);
                    decrement_ttl(&mut buf).ok().map(|_| buf.freeze())
                });
                match decremented {
                    Some(b) => b.clone(),
                    None => {
                        self.stats.dropped.count(DropReason::Ttl);
                        continue;
                    }
                }
            } else {
                bytes.clone()
            };
            if self.outbox.push(member, reliable, copy).is_err() {
                self.stats.dropped.count(DropReason::QueueFull);
                self.stats.trees.copies_queue_full += 1;
                continue;
            }
            self.stats.trees.copies += 1;
            self.stats.forwarded += 1;
            if !to_router {
                self.stats.delivered_local += 1;
            }
        }
    }

    /// The tree timer of `capsule`: expired leases are pruned, and the
    /// upstream join is refreshed when due.
    pub(crate) fn tree_timer(&mut self, now: Timestamp, capsule: Name) {
        let Some(tree) = self.trees.trees.get(&capsule) else {
            return;
        };
        if tree.wake > now {
            // A stale timer: a later one is set.
            return;
        }
        let expired: Vec<LinkId> = tree
            .members
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(l, _)| *l)
            .collect();
        for link in expired {
            if self.trees.remove_member(capsule, link) {
                self.stats.trees.pruned_lease += 1;
            }
        }
        self.prune_if_empty(capsule);
        let Some(tree) = self.trees.trees.get_mut(&capsule) else {
            return;
        };
        let refresh = tree.refresh_at <= now;
        if refresh {
            // A tree with no way up yet (its last join found no route, or
            // its upstream died) tries again soon rather than a refresh
            // period later.
            let every = if tree.upstream.is_some() {
                self.config.tree_refresh
            } else {
                self.config.tree_refresh.min(TREE_REJOIN)
            };
            tree.refresh_at = now.saturating_add(every);
        }
        let lease_end = tree.members.values().min().copied();
        let wake = lease_end.map_or(tree.refresh_at, |l| l.min(tree.refresh_at));
        tree.wake = wake;
        self.timers.schedule(wake, Timer::Tree(capsule));
        if refresh && !self.shutting_down {
            self.join_upstream(now, capsule);
        }
    }

    /// `link` is gone: its memberships end, and the trees it was upstream
    /// of join again along another route.
    pub(crate) fn trees_link_down(&mut self, now: Timestamp, link: LinkId) {
        self.trees.budgets.remove(&link);
        let capsules = self.trees.by_link.get(&link).cloned().unwrap_or_default();
        for capsule in capsules {
            if self.trees.remove_member(capsule, link) {
                self.stats.trees.pruned_link_down += 1;
            }
            // Leaving an upstream that is `link` itself sends nothing: the
            // link is gone from the table already.
            self.prune_if_empty(capsule);
        }
        let orphans: Vec<Name> = self
            .trees
            .trees
            .iter()
            .filter(|(_, t)| t.upstream == Some(link))
            .map(|(c, _)| *c)
            .collect();
        for capsule in orphans {
            if let Some(tree) = self.trees.trees.get_mut(&capsule) {
                tree.upstream = None;
                // If this join finds no way up either, the next is due in
                // TREE_REJOIN.
                tree.refresh_at = now.saturating_add(self.config.tree_refresh.min(TREE_REJOIN));
                if tree.refresh_at < tree.wake {
                    tree.wake = tree.refresh_at;
                    self.timers.schedule(tree.refresh_at, Timer::Tree(capsule));
                }
            }
            if !self.shutting_down {
                self.stats.trees.rejoins += 1;
                self.join_upstream(now, capsule);
            }
        }
    }

    /// Whether a Subscribe or Unsubscribe from the endpoint or router at
    /// the other end of `link` carries that peer's own name.
    pub(crate) fn tree_sender_ok(&self, link: LinkId, src: &Name) -> bool {
        match self.links.get(&link).map(|l| &l.kind) {
            Some(LinkKind::Endpoint(att)) => att.name == *src,
            Some(LinkKind::Router { name, .. }) => name == src,
            _ => false,
        }
    }
}

/// The PDU types delivery trees use, which routers act on and never
/// forward.
/// How soon a tree without an upstream (its join found no route, or its
/// upstream link went down) sends its join again.
pub(crate) const TREE_REJOIN: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) fn is_tree_type(ptype: PduType) -> bool {
    matches!(
        ptype,
        PduType::Subscribe | PduType::Unsubscribe | PduType::Publish
    )
}
