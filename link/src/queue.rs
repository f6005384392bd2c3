//! The reliable send queue of one link, bounded in bytes.
//!
//! Senders reserve the bytes they enqueue (the memory those PDUs hold,
//! which the link handle computes, see `link::held`) from a semaphore of
//! `capacity` permits (a single PDU or batch larger than the capacity
//! reserves the whole capacity, so it can always go through alone); the
//! link's writer task gives the permits back once QUIC has accepted the
//! bytes. Waiting senders are served in order, so a waiting large PDU is not
//! starved by small ones. The channel under the semaphore is unbounded only
//! in type: what it holds is bounded by the permits.
//!
//! Closing the queue wakes every waiting sender with an error and makes all
//! later sends fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{Semaphore, TryAcquireError, mpsc, oneshot};

/// What the writer task receives, in send order.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// PDUs to write, and the permits they hold.
    Pdus {
        /// One or more encoded PDUs.
        pdus: Batch,
        /// Permits to give back once written.
        permits: u32,
        /// Bytes counted for them in the queue's depth (the memory they
        /// hold, see `Link`'s accounting).
        charged: u64,
    },
    /// Write everything before this, finish the stream, wait until the
    /// peer has acknowledged it, then answer and stop.
    Finish(oneshot::Sender<()>),
}

/// One PDU or many, without allocating a `Vec` for one.
#[derive(Debug)]
pub(crate) enum Batch {
    /// A single PDU.
    One(Bytes),
    /// Runs of PDUs back to back, and how many PDUs in all.
    Runs(Vec<Bytes>, usize),
}

impl Batch {
    pub(crate) fn len(&self) -> usize {
        match self {
            Batch::One(_) => 1,
            Batch::Runs(_, n) => *n,
        }
    }
}

/// Why a PDU was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// No room now (only from `try_push`).
    Full,
    /// The queue is closed.
    Closed,
}

/// Bytes and PDUs in a queue, shared by its two halves.
#[derive(Debug, Default)]
pub(crate) struct Depth {
    bytes: AtomicU64,
    pdus: AtomicU64,
}

impl Depth {
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    pub(crate) fn pdus(&self) -> u64 {
        self.pdus.load(Ordering::Relaxed)
    }
    fn add(&self, bytes: u64, pdus: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.pdus.fetch_add(pdus, Ordering::Relaxed);
    }
    fn sub(&self, bytes: u64, pdus: u64) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.pdus.fetch_sub(pdus, Ordering::Relaxed);
    }
}

/// The sending half; cheap to share behind the link handle.
#[derive(Debug)]
pub(crate) struct QueueSender {
    permits: Arc<Semaphore>,
    capacity: u32,
    tx: mpsc::UnboundedSender<WriterMsg>,
    depth: Arc<Depth>,
}

/// The receiving half, owned by the writer task.
#[derive(Debug)]
pub(crate) struct QueueReceiver {
    permits: Arc<Semaphore>,
    rx: mpsc::UnboundedReceiver<WriterMsg>,
    depth: Arc<Depth>,
}

/// A queue that holds at most `capacity` bytes.
pub(crate) fn queue(capacity: u32) -> (QueueSender, QueueReceiver) {
    let capacity = capacity.max(1);
    let permits = Arc::new(Semaphore::new(capacity as usize));
    let depth = Arc::new(Depth::default());
    let (tx, rx) = mpsc::unbounded_channel();
    (
        QueueSender {
            permits: permits.clone(),
            capacity,
            tx,
            depth: depth.clone(),
        },
        QueueReceiver { permits, rx, depth },
    )
}

impl QueueSender {
    /// Permits for `bytes` bytes: the bytes, capped at the capacity.
    fn permits_for(&self, bytes: usize) -> u32 {
        u32::try_from(bytes).map_or(self.capacity, |b| b.min(self.capacity))
    }

    /// Takes the room for `bytes` bytes if there is room now; returns the
    /// permits to pass to [`enqueue`](Self::enqueue).
    pub(crate) fn try_reserve(&self, bytes: usize) -> Result<u32, QueueError> {
        let permits = self.permits_for(bytes);
        match self.permits.try_acquire_many(permits) {
            Ok(p) => {
                p.forget();
                Ok(permits)
            }
            Err(TryAcquireError::NoPermits) => Err(QueueError::Full),
            Err(TryAcquireError::Closed) => Err(QueueError::Closed),
        }
    }

    /// Queues `pdus` (charged `bytes`) on room already taken with
    /// [`try_reserve`](Self::try_reserve).
    pub(crate) fn enqueue(
        &self,
        pdus: Batch,
        bytes: usize,
        permits: u32,
    ) -> Result<(), QueueError> {
        let count = pdus.len() as u64;
        self.depth.add(bytes as u64, count);
        self.tx
            .send(WriterMsg::Pdus {
                pdus,
                permits,
                charged: bytes as u64,
            })
            .map_err(|_| {
                self.depth.sub(bytes as u64, count);
                QueueError::Closed
            })
    }

    /// Queues `pdus` (`bytes` long in all), waiting for room.
    pub(crate) async fn push(&self, pdus: Batch, bytes: usize) -> Result<(), QueueError> {
        let permits = self.permits_for(bytes);
        self.permits
            .acquire_many(permits)
            .await
            .map_err(|_| QueueError::Closed)?
            .forget();
        self.enqueue(pdus, bytes, permits)
    }

    /// Queues `pdus` (`bytes` long in all) if there is room now.
    pub(crate) fn try_push(&self, pdus: Batch, bytes: usize) -> Result<(), QueueError> {
        let permits = self.try_reserve(bytes)?;
        self.enqueue(pdus, bytes, permits)
    }

    /// Asks the writer to finish the stream after everything queued so
    /// far; the answer comes once the peer has acknowledged it all.
    pub(crate) fn finish(&self) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(WriterMsg::Finish(tx)).ok().map(|()| rx)
    }

    /// Refuses every later push and wakes waiting ones with `Closed`.
    pub(crate) fn close(&self) {
        self.permits.close();
    }

    /// The queue's fill level.
    pub(crate) fn depth(&self) -> &Depth {
        &self.depth
    }
}

impl QueueReceiver {
    /// Takes everything queued (up to `limit` messages) into `out`, waiting
    /// if nothing is; returns 0 once every sender is gone.
    pub(crate) async fn recv_many(&mut self, out: &mut Vec<WriterMsg>, limit: usize) -> usize {
        self.rx.recv_many(out, limit).await
    }

    /// Gives back the room of PDUs QUIC has taken: their permits, the
    /// bytes charged for them, and their number.
    pub(crate) fn release(&self, permits: u32, bytes: u64, pdus: u64) {
        self.depth.sub(bytes, pdus);
        self.permits.add_permits(permits as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu(len: usize) -> Batch {
        Batch::One(Bytes::from(vec![0u8; len]))
    }

    #[tokio::test]
    async fn try_push_is_bounded_in_bytes_and_release_makes_room() {
        let (tx, mut rx) = queue(1000);
        assert_eq!(tx.try_push(pdu(600), 600), Ok(()));
        assert_eq!(tx.try_push(pdu(600), 600), Err(QueueError::Full));
        assert_eq!(tx.try_push(pdu(400), 400), Ok(()));
        assert_eq!(tx.depth().bytes(), 1000);
        assert_eq!(tx.depth().pdus(), 2);

        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 100).await, 2);
        rx.release(600, 600, 1);
        assert_eq!(tx.depth().bytes(), 400);
        assert_eq!(tx.try_push(pdu(600), 600), Ok(()));
    }

    #[tokio::test]
    async fn oversized_batch_takes_the_whole_capacity() {
        let (tx, mut rx) = queue(100);
        assert_eq!(tx.try_push(pdu(5000), 5000), Ok(()));
        assert_eq!(tx.try_push(pdu(1), 1), Err(QueueError::Full));
        let mut out = Vec::new();
        rx.recv_many(&mut out, 10).await;
        match out.pop() {
            Some(WriterMsg::Pdus { permits, .. }) => assert_eq!(permits, 100),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn close_wakes_waiting_senders() {
        let (tx, _rx) = queue(10);
        let tx = Arc::new(tx);
        assert_eq!(tx.try_push(pdu(10), 10), Ok(()));
        let waiter = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.push(pdu(5), 5).await })
        };
        tokio::task::yield_now().await;
        tx.close();
        assert_eq!(waiter.await.expect("joins"), Err(QueueError::Closed));
        assert_eq!(tx.try_push(pdu(1), 1), Err(QueueError::Closed));
    }
}
