//! The responder: the task that turns the service's responses into PDUs and
//! sends them to the router.
//!
//! ```text
//!   host outbox (bounded) ──► responder ──► Book::reply (source name, advertise first?)
//!   publishes (bounded) ─────────┘ │         Publish PDUs of advertised capsules
//!                                  ▼
//!                  Target::Link(link).send_batch(PDUs)  (one call per batch)
//! ```
//!
//! Publishes (records for a capsule's delivery tree) leave from the
//! capsule's name, so only for a capsule advertised on the link: the
//! router would refuse any other source. They wait for a link like
//! responses do.
//!
//! While there is no link ([`Target::Wait`]) the responder takes nothing
//! from the outbox, so the service stops behind it (back-pressure) and no
//! response, subscription events included, is dropped for lack of a link.
//! A batch whose send fails (the link went down under it) is kept and sent
//! first on the next link. At shutdown the target is [`Target::Final`]:
//! everything left is sent on the last link, or dropped when there is none,
//! until the outbox ends.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use gdp_certs::codec::Encode;
use gdp_certs::{Name, Timestamp};
use gdp_link::endpoint::EndpointLink;
use gdp_proto::control::ControlMessage;
use tokio::sync::{mpsc, watch};

use super::book::Book;
use crate::host::Outgoing;
use crate::service::{Publish, Response};

/// Most responses sent in one batch.
const BATCH: usize = 256;

/// Where responses go.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// No link: hold responses until there is one.
    Wait,
    /// The current link.
    Link(EndpointLink),
    /// Shutting down: send what is left on this link, if any, else drop it.
    Final(Option<EndpointLink>),
}

/// Locks the book (a panic elsewhere leaves it usable).
pub(crate) fn lock(book: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Encodes `responses` (and the advertisements that must precede some of
/// them) into `out`.
fn encode(
    responses: &mut Vec<Response>,
    book: &Mutex<Book>,
    server: Name,
    seq: &mut u64,
    out: &mut Vec<Bytes>,
) {
    let now = Timestamp::now();
    let mut book = lock(book);
    for response in responses.drain(..) {
        let reply = book.reply(&response, now);
        if reply.withdraw {
            tracing::info!(capsule = %response.capsule, "retired from the capsule's replica set; withdrawn");
            for msg in ControlMessage::withdraw_batches(&[response.capsule]) {
                *seq += 1;
                match msg.to_pdu(Name::ZERO, server, *seq) {
                    Ok(pdu) => out.push(pdu.to_bytes()),
                    Err(e) => tracing::error!(error = %e, "withdrawal not sent"),
                }
            }
        }
        if let Some(entry) = reply.advertise {
            for msg in ControlMessage::advertise_batches(vec![entry]) {
                *seq += 1;
                match msg.to_pdu(Name::ZERO, server, *seq) {
                    Ok(pdu) => out.push(pdu.to_bytes()),
                    Err(e) => tracing::error!(error = %e, "advertisement not sent"),
                }
            }
        }
        match response
            .body
            .to_pdu(response.to, reply.src, response.request_id)
        {
            Ok(pdu) => out.push(pdu.to_bytes()),
            Err(e) => {
                tracing::error!(to = %response.to, capsule = %response.capsule, error = %e,
                    "response over the pdu limits dropped");
            }
        }
    }
}

/// Encodes `outgoing` into `out`: requests to other servers from this
/// server's name, and the Publish PDUs of advertised capsules.
fn encode_outgoing(
    outgoing: &mut Vec<Outgoing>,
    book: &Mutex<Book>,
    server: Name,
    out: &mut Vec<Bytes>,
) {
    let mut publishes = Vec::new();
    for o in outgoing.drain(..) {
        match o {
            Outgoing::Publish(p) => publishes.push(p),
            Outgoing::Request(r) => match r.to_pdu(server) {
                Ok(pdu) => out.push(pdu.to_bytes()),
                Err(e) => {
                    tracing::error!(to = %r.to, error = %e, "request over the pdu limits dropped")
                }
            },
        }
    }
    encode_publishes(&mut publishes, book, out);
}

/// Encodes the Publish PDUs of advertised capsules among `publishes` into
/// `out`.
fn encode_publishes(publishes: &mut Vec<Publish>, book: &Mutex<Book>, out: &mut Vec<Bytes>) {
    let book = lock(book);
    for publish in publishes.drain(..) {
        let capsule = publish.capsule;
        if !book.is_advertised(&capsule) {
            tracing::debug!(%capsule, "publish of a capsule not advertised on this link dropped");
            continue;
        }
        match publish.into_pdu() {
            Ok(pdu) => out.push(pdu.to_bytes()),
            Err(e) => tracing::error!(%capsule, error = %e, "publish over the pdu limits dropped"),
        }
    }
}

/// Waits until responses can go somewhere; false once the target can no
/// longer change (the driver is gone), in which case they are dropped.
async fn ready(target: &mut watch::Receiver<Target>) -> bool {
    loop {
        match &*target.borrow_and_update() {
            Target::Wait => {}
            Target::Link(link) if link.is_closed() => {}
            _ => return true,
        }
        if target.changed().await.is_err() {
            return false;
        }
    }
}

/// Runs the responder until the outbox ends. See the module documentation.
pub(crate) async fn respond(
    mut responses: mpsc::Receiver<Response>,
    mut publishes: mpsc::Receiver<Outgoing>,
    mut target: watch::Receiver<Target>,
    book: Arc<Mutex<Book>>,
    server: Name,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut published = Vec::new();
    let mut publishing = true;
    let mut held: Vec<Bytes> = Vec::new();
    let mut seq = 0u64;
    let mut orphaned = false;
    loop {
        if held.is_empty() {
            if !orphaned && !ready(&mut target).await {
                orphaned = true;
            }
            tokio::select! {
                n = responses.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                }
                n = publishes.recv_many(&mut published, BATCH), if publishing => {
                    publishing = n > 0;
                }
            }
            encode(&mut batch, &book, server, &mut seq, &mut held);
            encode_outgoing(&mut published, &book, server, &mut held);
            if held.is_empty() {
                continue;
            }
        }
        if orphaned {
            held.clear();
            continue;
        }
        let current = target.borrow_and_update().clone();
        match current {
            Target::Link(link) => match link.send_batch(held.clone()).await {
                Ok(()) => held.clear(),
                Err(e) => {
                    tracing::debug!(error = %e, held = held.len(),
                        "link lost under a batch of responses; kept for the next link");
                    if target.changed().await.is_err() {
                        orphaned = true;
                    }
                }
            },
            Target::Final(Some(link)) => {
                if let Err(e) = link.send_batch(std::mem::take(&mut held)).await {
                    tracing::debug!(error = %e, "responses dropped at shutdown");
                }
            }
            Target::Final(None) => held.clear(),
            Target::Wait => {
                if target.changed().await.is_err() {
                    orphaned = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use gdp_certs::cert::{AdCert, Validity};
    use gdp_certs::codec::Decode;
    use gdp_certs::{Metadata, SecretKey};
    use gdp_proto::capsule::decode_publish;
    use gdp_proto::chain::{Appender, ChainState};
    use gdp_proto::control::AdvertiseEntry;
    use gdp_proto::pdu::{Pdu, PduType};
    use gdp_proto::proof::Proof;
    use gdp_proto::record::Record;

    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
    const SERVER: Name = Name::from_bytes([200; 32]);

    /// A capsule hosted by SERVER, and a Publish of its first two records.
    fn capsule(nonce: u8) -> (AdvertiseEntry, Publish) {
        let owner = SecretKey::from_seed(&[3; 32]);
        let md = Metadata::capsule(owner.public(), vec![owner.public()], "p", NOW, vec![])
            .expect("valid")
            .with_nonce([nonce; 16]);
        let validity = Validity::new(Timestamp::from_secs(1), Timestamp::from_secs(1_900_000_000));
        let entry = AdvertiseEntry {
            adcert: AdCert::issue(&owner, md.name(), SERVER, validity),
            capsule_md: md.clone(),
        };
        let mut a = Appender::new(owner, &md, ChainState::new(md.name())).expect("writer");
        let records: Vec<Record> = (0..2)
            .map(|_| a.append(Bytes::from_static(b"x"), NOW).expect("appends"))
            .collect();
        let hb = a.heartbeat().expect("appended");
        let proof = Proof::build(hb, 2, |s| {
            records
                .get(usize::try_from(s).ok()?.checked_sub(1)?)
                .map(Record::header)
        })
        .expect("headers at hand");
        let publish = Publish {
            capsule: md.name(),
            records,
            proof,
        };
        (entry, publish)
    }

    #[test]
    fn only_publishes_of_advertised_capsules_leave_from_the_capsule() {
        let (advertised, mine) = capsule(1);
        let (hidden, theirs) = capsule(2);
        let book = Mutex::new(Book::new(
            SERVER,
            [(&advertised.capsule_md, &advertised.adcert)],
        ));
        lock(&book).attach_entries(NOW);
        assert!(!lock(&book).is_advertised(&hidden.capsule_md.name()));
        let mut out = Vec::new();
        let mut publishes = vec![theirs, mine.clone()];
        encode_publishes(&mut publishes, &book, &mut out);
        assert!(publishes.is_empty());
        assert_eq!(out.len(), 1);
        let pdu = Pdu::decode(out.remove(0)).expect("a pdu");
        assert_eq!(pdu.header.ptype, PduType::Publish);
        assert_eq!(
            (pdu.header.src, pdu.header.dst),
            (mine.capsule, mine.capsule)
        );
        assert_eq!(pdu.header.seq, 2);
        assert_eq!(decode_publish(&pdu), Ok((mine.records, mine.proof)));
    }
}
