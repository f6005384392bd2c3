//! Forwarding straight from a link's stream reader.
//!
//! A router's hot path is a PDU read on one link and written to another.
//! Delivered as [`LinkEvent::Pdus`](crate::LinkEvent::Pdus), each read's
//! batch crosses two task hand-offs (reader → owner → next link's writer);
//! an owner that can decide some PDUs without its own state may take them
//! in the reader instead, with [`Transport::set_forwarder`](crate::Transport::set_forwarder).
//! The reader then offers every read's PDUs to the link's
//! [`LinkForwarder`] first, and only what it leaves becomes an event.
//!
//! The forwarder takes PDUs from the *front* of the read, so what reaches
//! the owner is always the tail of a read, in order. Keeping the order
//! across the two paths (a later PDU taken in the reader while an earlier
//! one still waits for the owner) is the forwarder's business: the reader
//! knows nothing of destinations.

use bytes::Bytes;

use crate::Link;

/// Takes PDUs off links' stream readers before they become events: a
/// reader offers each read's PDUs to the link's [`LinkForwarder`] first,
/// and only what it leaves becomes a [`LinkEvent::Pdus`](crate::LinkEvent::Pdus).
/// It takes PDUs from the *front* of the read, so what reaches the owner
/// is always the tail of a read, in order; keeping the order across the
/// two paths is the forwarder's business.
pub trait Forwarder: Send + Sync + 'static {
    /// `link` is starting: returns what its stream reader offers each
    /// read's PDUs to, or `None` to leave all of them to events. Called
    /// once per link, after its `Up` was delivered and before its reader
    /// reads.
    fn open(&self, link: &Link) -> Option<Box<dyn LinkForwarder>>;
}

/// One link's forwarder, owned by the link's stream reader.
pub trait LinkForwarder: Send + 'static {
    /// `runs` are the PDUs of one read from the link's reliable stream, in
    /// stream order, as runs: each run is one or more whole PDUs back to
    /// back in one buffer (usually one run for the whole read; a very
    /// large read is cut into runs of about 64 KiB). Never empty.
    /// Returns how many PDUs from the front it has dealt with; the rest of
    /// the read is delivered to the owner as one
    /// [`LinkEvent::Pdus`](crate::LinkEvent::Pdus), as without a forwarder.
    ///
    /// Whole runs let a forwarder pass many PDUs on at once with
    /// [`Link::try_send_runs`](crate::Link::try_send_runs): one queue
    /// operation per next hop per read, and no allocation or reference
    /// count per PDU.
    fn forward(&mut self, runs: &[Bytes]) -> usize;
}
