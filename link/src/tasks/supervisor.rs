//! The supervisor: the end of a link.
//!
//! It waits for the connection to close (either side, idle timeout,
//! failure), marks the link down so that pending and later sends fail,
//! stops the writers, waits for the readers to deliver what they read,
//! removes the link from the transport (`on_down`) and sends the link's
//! last event, [`LinkEvent::Down`], with the reason.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::link::LinkShared;
use crate::{DownReason, LinkEvent, LinkId};

pub(super) async fn supervise(
    shared: Arc<LinkShared>,
    readers: [JoinHandle<()>; 2],
    writers: [JoinHandle<()>; 2],
    events: mpsc::Sender<LinkEvent>,
    on_down: impl FnOnce(LinkId),
) {
    let err = shared.conn.closed().await;
    shared.mark_down();
    for w in writers {
        w.abort();
    }
    for r in readers {
        // A reader ends once the connection is closed and it has delivered
        // what it read; it fails only if it panicked, which changes nothing
        // here.
        let _ = r.await;
    }
    on_down(shared.id);
    let reason = DownReason::from_error(err, shared.local_close());
    tracing::info!(link = %shared.id, peer = %shared.peer.name(), %reason, "link down");
    shared.down.send_replace(Some(reason.clone()));
    let _ = events
        .send(LinkEvent::Down {
            link_id: shared.id,
            reason,
        })
        .await;
}
