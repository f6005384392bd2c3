//! The tasks that move one link's bytes.
//!
//! Each link runs five tasks, one module each:
//!
//! - the **stream writer** ([`stream_writer`]) opens the link's one
//!   outgoing unidirectional stream, takes everything in the reliable queue
//!   at each wake-up, and hands it to QUIC in one `write_all_chunks` call
//!   (small PDUs coalesced into one buffer; large ones, and runs of PDUs
//!   passed on from another link's reader, as they are);
//! - the **datagram writer** ([`datagram_writer`]) sends the unreliable
//!   queue as QUIC datagrams, one PDU each;
//! - the **stream reader** ([`stream_reader`]) accepts the peer's
//!   unidirectional stream, reads up to
//!   [`READ_CHUNKS`](stream_reader::READ_CHUNKS) chunks at a time, copies
//!   them into its [`RunDecoder`](gdp_proto::frame::RunDecoder) (which
//!   checks each header as it completes) and takes the whole PDUs as one
//!   run per read, so a PDU cut by a chunk boundary costs nothing extra; it
//!   offers the read's runs to the link's [`LinkForwarder`] if the owner
//!   set one, and delivers the PDUs left as one batch, waiting when the
//!   owner's channel is full (QUIC flow control then slows the peer);
//! - the **datagram reader** ([`datagram_reader`]) checks each datagram
//!   holds one PDU and delivers what has arrived as one batch, dropping
//!   (and counting) the batch when the owner's channel is full;
//! - the **supervisor** ([`supervisor`]) waits for the connection to close,
//!   fails pending and later sends, lets the readers deliver what they
//!   hold, removes the link from the transport and sends the link's last
//!   event, `Down`.

use std::sync::Arc;

use bytes::Bytes;
use gdp_proto::frame::FrameError;
use tokio::sync::mpsc;

use super::forward::LinkForwarder;
use super::link::LinkShared;
use super::queue::QueueReceiver;
use super::{CloseCode, LinkEvent, LinkId};

mod datagram_reader;
mod datagram_writer;
mod stream_reader;
mod stream_writer;
mod supervisor;

/// Most datagrams delivered in one event, and taken from the unreliable
/// queue at once.
const DATAGRAM_BATCH: usize = 64;

/// What a link's tasks need besides the link itself.
pub(crate) struct LinkIo {
    pub(crate) queue: QueueReceiver,
    pub(crate) datagrams: mpsc::Receiver<Bytes>,
    pub(crate) events: mpsc::Sender<LinkEvent>,
    pub(crate) malformed_limit: u64,
    pub(crate) forwarder: Option<Box<dyn LinkForwarder>>,
}

/// Starts the tasks of a link whose `Up` has been delivered. `on_down` runs
/// once the connection has closed and the readers are done, just before
/// the `Down` event is sent.
pub(crate) fn spawn_link(
    shared: Arc<LinkShared>,
    io: LinkIo,
    on_down: impl FnOnce(LinkId) + Send + 'static,
) {
    let LinkIo {
        queue,
        datagrams,
        events,
        malformed_limit,
        forwarder,
    } = io;
    let writers = [
        tokio::spawn(stream_writer::write_stream(shared.clone(), queue)),
        tokio::spawn(datagram_writer::write_datagrams(shared.clone(), datagrams)),
    ];
    let readers = [
        tokio::spawn(stream_reader::read_stream(
            shared.clone(),
            events.clone(),
            malformed_limit,
            forwarder,
        )),
        tokio::spawn(datagram_reader::read_datagrams(
            shared.clone(),
            events.clone(),
            malformed_limit,
        )),
    ];
    tokio::spawn(supervisor::supervise(
        shared, readers, writers, events, on_down,
    ));
}

/// Counts a malformed PDU and closes the link at the limit; returns the
/// event to report.
fn malformed(shared: &LinkShared, error: FrameError, reliable: bool, limit: u64) -> LinkEvent {
    let total = shared
        .counters
        .malformed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    tracing::debug!(link = %shared.id, peer = %shared.peer.name(), %error, reliable, total,
        "malformed pdu");
    if total >= limit {
        shared.close(CloseCode::Malformed, "too many malformed pdus");
    }
    LinkEvent::Malformed {
        link_id: shared.id,
        error,
        reliable,
        total,
    }
}
