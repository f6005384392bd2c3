//! Delivery trees: the router's leases on capsules, and the `Publish`
//! outputs they cause.
//!
//! A router that has subscribers of a capsule joins the capsule's delivery
//! tree by sending `Subscribe` toward it; the router this server is attached
//! to delivers that join here, from its own name. The join takes (or
//! refreshes) a *lease* on the capsule for [`ServiceConfig::tree_lease`];
//! an `Unsubscribe` from the router ends it, and so does a lease that runs
//! out unrefreshed. One lease per capsule: the router aggregates every
//! subscriber behind it, so the number of leases is bounded by the number
//! of hosted capsules. Joins and leaves from anyone but the router, or for
//! capsules not served here, are ignored and counted
//! ([`TreeIgnored`]).
//!
//! While a capsule has a live lease:
//!
//! - every append that becomes durable leaves once, as
//!   [`Output::Publish`]: the new records with the proof of the last one,
//!   what a unicast subscriber's `Event` holds (split only when it would
//!   not fit one PDU);
//! - when the lease is new, and whenever the capsule published nothing for
//!   [`ServiceConfig::tree_tip_interval`], its newest record (the *tip*) is
//!   published again, so subscribers that lost records learn the tail and
//!   fetch what they miss by unicast reads.
//!
//! Timers are driven by the caller's clock: [`CapsuleService::next_timeout`]
//! says when [`CapsuleService::handle_timeout`] has something to do.
//!
//! [`ServiceConfig::tree_lease`]: crate::limits::ServiceConfig::tree_lease
//! [`ServiceConfig::tree_tip_interval`]: crate::limits::ServiceConfig::tree_tip_interval

use std::cmp::Reverse;

use gdp_certs::codec::Encode;
use gdp_certs::{Name, Timestamp};
use gdp_proto::pdu::{Pdu, PduError};
use gdp_proto::proof::Proof;
use gdp_proto::record::Record;

use super::read::{pack_batch, pack_stored};
use super::{CapsuleService, Output, PendingAppend};
use crate::stats::TreeIgnored;

/// A delivery-tree message for a capsule, as the driver received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRequest {
    /// The capsule (the PDU's destination).
    pub capsule: Name,
    /// Who sent it (the PDU's source).
    pub from: Name,
    /// The router this server is attached to: the only sender obeyed.
    pub router: Name,
    /// Join (or refresh) or leave.
    pub op: TreeOp,
}

/// What a [`TreeRequest`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeOp {
    /// Take or refresh the capsule's lease (a `Subscribe` PDU).
    Join,
    /// End the capsule's lease (an `Unsubscribe` PDU).
    Leave,
}

/// Records of a capsule for its delivery tree: contiguous, with the proof
/// of the last one. Sent as one `Publish` PDU from the capsule to itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The capsule.
    pub capsule: Name,
    /// Contiguous records.
    pub records: Vec<Record>,
    /// The proof of the last record.
    pub proof: Proof,
}

impl Publish {
    /// The `Publish` PDU.
    pub fn into_pdu(self) -> Result<Pdu, PduError> {
        gdp_proto::capsule::publish_pdu(self.capsule, self.records, self.proof)
    }

    /// The seqno of the last record (0 if there is none).
    pub fn last(&self) -> u64 {
        self.records.last().map_or(0, Record::seqno)
    }

    /// Encoded bytes of the records and the proof (about the PDU's
    /// payload).
    fn payload_len(&self) -> usize {
        self.records.iter().map(Encode::encoded_len).sum::<usize>() + self.proof.encoded_len()
    }
}

/// A router's lease on one capsule's delivery tree.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    /// It ends at this time unless refreshed.
    until: Timestamp,
    /// When the capsule last published (records or the tip).
    last_publish: Timestamp,
    /// The deadline of this lease's entry in the timer heap.
    timer: Timestamp,
}

impl Lease {
    fn next_deadline(&self, tip: std::time::Duration) -> Timestamp {
        self.until.min(self.last_publish.saturating_add(tip))
    }
}

impl CapsuleService {
    /// Capsules with a live tree lease.
    pub fn tree_leases(&self) -> usize {
        self.leases
    }

    /// True if `capsule` has a tree lease (live until its expiry is
    /// processed).
    pub fn has_tree_lease(&self, capsule: &Name) -> bool {
        self.capsules.get(capsule).is_some_and(|h| h.tree.is_some())
    }

    /// Handles a delivery-tree join or leave. See the [module docs](self).
    pub fn tree(&mut self, now: Timestamp, req: TreeRequest) {
        if req.from != req.router {
            return self.tree_ignored(req, TreeIgnored::NotRouter);
        }
        let tip = self.config.tree_tip_interval;
        let lease_for = self.config.tree_lease;
        let served = !self.damaged.contains_key(&req.capsule);
        let Some(h) = self.capsules.get_mut(&req.capsule).filter(|_| served) else {
            return self.tree_ignored(req, TreeIgnored::NotHosted);
        };
        if h.tree.is_some_and(|lease| lease.until <= now) {
            // Ran out, and its timer did not come up yet: a join now is a
            // new lease.
            h.tree = None;
            self.expired(req.capsule);
        }
        let Some(h) = self.capsules.get_mut(&req.capsule) else {
            return;
        };
        match (req.op, &mut h.tree) {
            (TreeOp::Join, Some(lease)) => {
                lease.until = now.saturating_add(lease_for);
            }
            (TreeOp::Join, None) => {
                let mut lease = Lease {
                    until: now.saturating_add(lease_for),
                    last_publish: now,
                    timer: now,
                };
                lease.timer = lease.next_deadline(tip);
                h.tree = Some(lease);
                self.tree_timers.push(Reverse((lease.timer, req.capsule)));
                self.leases += 1;
                self.stats.tree_leases_taken += 1;
                crate::metrics::tree_lease_taken();
                crate::metrics::tree_leases(self.leases);
                tracing::debug!(capsule = %req.capsule.short(), "tree lease taken");
                self.publish_tip(req.capsule);
            }
            (TreeOp::Leave, lease) => {
                if lease.take().is_some() {
                    self.leases -= 1;
                    crate::metrics::tree_leases(self.leases);
                    tracing::debug!(capsule = %req.capsule.short(), "tree lease ended by the router");
                }
            }
        }
    }

    fn tree_ignored(&mut self, req: TreeRequest, reason: TreeIgnored) {
        self.stats.tree_ignored.count(reason);
        crate::metrics::tree_ignored(reason);
        tracing::debug!(reason = reason.label(), from = %req.from.short(),
            capsule = %req.capsule.short(), op = ?req.op, "tree message ignored");
    }

    /// When [`CapsuleService::handle_timeout`] has something to do: a tip
    /// to publish or a lease to end. `None` without leases.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        let tree = self.tree_timers.peek().map(|Reverse((at, _))| *at);
        match (tree, self.next_sync()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Publishes the tips that are due and ends the leases that ran out,
    /// as of `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.sync_due(now);
        let tip = self.config.tree_tip_interval;
        while let Some(Reverse((at, capsule))) = self.tree_timers.peek().copied() {
            if at > now {
                break;
            }
            self.tree_timers.pop();
            let Some(h) = self.capsules.get_mut(&capsule) else {
                continue;
            };
            // An entry of a lease since replaced is stale.
            let Some(lease) = h.tree.as_mut().filter(|l| l.timer == at) else {
                continue;
            };
            if lease.until <= now {
                h.tree = None;
                self.expired(capsule);
                continue;
            }
            let idle = lease.last_publish.saturating_add(tip) <= now;
            if idle {
                lease.last_publish = now;
            }
            // Later than `now`: the lease lasts beyond it, and the tip is
            // due a whole interval after the last publish.
            lease.timer = lease.next_deadline(tip);
            let timer = lease.timer;
            self.tree_timers.push(Reverse((timer, capsule)));
            if idle {
                self.publish_tip(capsule);
            }
        }
    }

    fn expired(&mut self, capsule: Name) {
        self.leases -= 1;
        self.stats.tree_leases_expired += 1;
        crate::metrics::tree_lease_expired();
        crate::metrics::tree_leases(self.leases);
        tracing::debug!(capsule = %capsule.short(), "tree lease ran out");
    }

    /// The live lease of `capsule` at `now`, ending it if it ran out.
    fn live_lease(&mut self, now: Timestamp, capsule: Name) -> bool {
        let Some(h) = self.capsules.get_mut(&capsule) else {
            return false;
        };
        match h.tree {
            Some(lease) if lease.until > now => true,
            Some(_) => {
                h.tree = None;
                self.expired(capsule);
                false
            }
            None => false,
        }
    }

    /// Publishes a newly durable append to the capsule's tree, if it has
    /// a live lease.
    pub(super) fn publish_append(&mut self, now: Timestamp, capsule: Name, p: &PendingAppend) {
        if !self.live_lease(now, capsule) {
            return;
        }
        match pack_batch(&self.config, &p.records, 0, p.heartbeat.heartbeat()) {
            Ok(chunks) => {
                for (records, proof) in chunks {
                    self.emit(Publish {
                        capsule,
                        records,
                        proof,
                    });
                }
            }
            // Cannot happen with a checked batch; the next tip tells the
            // subscribers the tail, and they read what they miss.
            Err(e) => tracing::error!(%capsule, error = %e, "packing a publish failed"),
        }
        if let Some(lease) = self
            .capsules
            .get_mut(&capsule)
            .and_then(|h| h.tree.as_mut())
        {
            lease.last_publish = now;
        }
    }

    /// Publishes the capsule's newest record, if it has one.
    fn publish_tip(&mut self, capsule: Name) {
        let Some(h) = self.capsules.get(&capsule) else {
            return;
        };
        let Some(hb) = h.heartbeat.as_ref().map(|hb| hb.heartbeat().clone()) else {
            return;
        };
        let tail = h.durable.tail_seqno();
        match pack_stored(&self.store, &self.config, &capsule, &hb, tail, tail) {
            Ok((records, proof)) => self.emit(Publish {
                capsule,
                records,
                proof,
            }),
            Err(e) => tracing::error!(%capsule, error = %e, "reading the tip to publish failed"),
        }
    }

    fn emit(&mut self, publish: Publish) {
        let records = publish.records.len() as u64;
        let bytes = publish.payload_len() as u64;
        self.stats.publishes += 1;
        self.stats.published_records += records;
        self.stats.published_bytes += bytes;
        crate::metrics::published(records, bytes);
        self.out.outputs.push_back(Output::Publish(publish));
    }

    /// Forgets the lease of a capsule no longer hosted.
    pub(super) fn drop_lease(&mut self, had: bool) {
        if had {
            self.leases -= 1;
            crate::metrics::tree_leases(self.leases);
        }
    }
}
