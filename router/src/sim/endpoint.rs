//! A simulated endpoint: a small sans-IO client of one router.
//!
//! It answers the router's attach challenge with a proof (an RtCert for the
//! challenging router), advertises capsules once attached, records every
//! PDU it receives, and can echo Data PDUs back to their source. Tests also
//! use it to send hand-made or hostile bytes.

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::Validity;
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Name, Timestamp};
use gdp_proto::control::{AdvertiseEntry, AttachProof, ControlMessage, NakReason};
use gdp_proto::pdu::PduError;
use gdp_proto::{Flags, Pdu, PduHeader, PduType};

use crate::core::LinkId;

/// Where an endpoint stands with its router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachState {
    /// No link.
    Detached,
    /// Linked, not (yet) accepted.
    Attaching,
    /// Accepted by the router.
    Attached,
}

/// A NakNoRoute an endpoint received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedNak {
    /// The name that could not be reached.
    pub unreachable: Name,
    /// Why.
    pub reason: NakReason,
    /// The `seq` of the PDU that was not delivered.
    pub seq: u64,
    /// The router that gave up.
    pub from: Name,
}

/// A simulated endpoint. See the module documentation.
#[derive(Debug)]
pub struct SimEndpoint {
    identity: Identity,
    pub(crate) link: Option<LinkId>,
    state: AttachState,
    /// Validity of the RtCerts it issues (`None`: from a day before to a day
    /// after the challenge).
    rtcert_validity: Option<Validity>,
    advertise_on_attach: Vec<AdvertiseEntry>,
    echo: bool,
    outbox: Vec<Bytes>,
    received: Vec<Pdu>,
    rejections: Vec<String>,
    next_seq: u64,
}

impl SimEndpoint {
    /// An endpoint with `identity` (a server or a client).
    pub fn new(identity: Identity) -> Self {
        SimEndpoint {
            identity,
            link: None,
            state: AttachState::Detached,
            rtcert_validity: None,
            advertise_on_attach: Vec::new(),
            echo: false,
            outbox: Vec::new(),
            received: Vec::new(),
            rejections: Vec::new(),
            next_seq: 1,
        }
    }

    /// The endpoint's name.
    pub fn name(&self) -> Name {
        self.identity.name()
    }

    /// The endpoint's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Its link to the router, if any.
    pub fn link(&self) -> Option<LinkId> {
        self.link
    }

    /// Where it stands with its router.
    pub fn state(&self) -> AttachState {
        self.state
    }

    /// Issues RtCerts with this validity from now on (for expired-cert tests).
    pub fn set_rtcert_validity(&mut self, validity: Option<Validity>) {
        self.rtcert_validity = validity;
    }

    /// Answers each Data PDU (that is not itself a response) with a Data
    /// response carrying the same payload and `seq`.
    pub fn set_echo(&mut self, echo: bool) {
        self.echo = echo;
    }

    /// Capsules to advertise each time the router accepts the endpoint.
    pub fn advertise_on_attach(&mut self, entries: Vec<AdvertiseEntry>) {
        self.advertise_on_attach = entries;
    }

    /// Every PDU received, in order.
    pub fn received(&self) -> &[Pdu] {
        &self.received
    }

    /// Forgets the PDUs received so far.
    pub fn clear_received(&mut self) {
        self.received.clear();
    }

    /// Data PDUs received from `src`.
    pub fn data_from(&self, src: Name) -> impl Iterator<Item = &Pdu> {
        self.received
            .iter()
            .filter(move |p| p.header.ptype == PduType::Data && p.header.src == src)
    }

    /// NAKs received.
    pub fn naks(&self) -> Vec<ReceivedNak> {
        self.received
            .iter()
            .filter_map(|p| match ControlMessage::from_pdu(p) {
                Ok(ControlMessage::NakNoRoute { dst, reason }) => Some(ReceivedNak {
                    unreachable: dst,
                    reason,
                    seq: p.header.seq,
                    from: p.header.src,
                }),
                _ => None,
            })
            .collect()
    }

    /// AttachRejected reasons received.
    pub fn rejections(&self) -> &[String] {
        &self.rejections
    }

    /// A fresh sequence number.
    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Queues a Data PDU to `dst`; returns its `seq`.
    pub fn send_data(&mut self, dst: Name, payload: impl Into<Bytes>) -> Result<u64, PduError> {
        let seq = self.next_seq();
        let header = PduHeader::new(PduType::Data, dst, self.name(), seq);
        self.send_pdu(&Pdu::new(header, payload.into())?);
        Ok(seq)
    }

    /// Queues a PDU of type `ptype` to `dst` with `payload`; returns its `seq`.
    pub fn send(
        &mut self,
        ptype: PduType,
        dst: Name,
        payload: impl Into<Bytes>,
    ) -> Result<u64, PduError> {
        let seq = self.next_seq();
        let header = PduHeader::new(ptype, dst, self.name(), seq);
        self.send_pdu(&Pdu::new(header, payload.into())?);
        Ok(seq)
    }

    /// Queues `pdu` as it is (any source name).
    pub fn send_pdu(&mut self, pdu: &Pdu) {
        self.outbox.push(pdu.to_bytes());
    }

    /// Queues raw bytes as one PDU frame (malformed-input tests).
    pub fn send_raw(&mut self, bytes: Bytes) {
        self.outbox.push(bytes);
    }

    /// Queues a control message to the router.
    pub fn send_control(&mut self, msg: &ControlMessage) -> Result<(), PduError> {
        let seq = self.next_seq();
        let pdu = msg.to_pdu(Name::ZERO, self.name(), seq)?;
        self.send_pdu(&pdu);
        Ok(())
    }

    /// Advertises `entries`.
    pub fn advertise(&mut self, entries: Vec<AdvertiseEntry>) -> Result<(), PduError> {
        for msg in ControlMessage::advertise_batches(entries) {
            self.send_control(&msg)?;
        }
        Ok(())
    }

    /// Withdraws `names`.
    pub fn withdraw(&mut self, names: &[Name]) -> Result<(), PduError> {
        for msg in ControlMessage::withdraw_batches(names) {
            self.send_control(&msg)?;
        }
        Ok(())
    }

    pub(crate) fn poll_transmit(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.outbox)
    }

    pub(crate) fn linked(&mut self, link: LinkId) {
        self.link = Some(link);
        self.state = AttachState::Attaching;
    }

    pub(crate) fn unlinked(&mut self) {
        self.link = None;
        self.state = AttachState::Detached;
    }

    /// One PDU from the router.
    pub(crate) fn handle_pdu(&mut self, now: Timestamp, bytes: Bytes) {
        let Ok(pdu) = Pdu::decode(bytes) else {
            return;
        };
        match pdu.header.ptype {
            PduType::Control => self.on_control(now, &pdu),
            PduType::Data if self.echo && !pdu.header.flags.contains(Flags::RESPONSE) => {
                let reply =
                    PduHeader::new(PduType::Data, pdu.header.src, self.name(), pdu.header.seq)
                        .with_flags(Flags::RESPONSE);
                if let Ok(reply) = Pdu::new(reply, pdu.payload.clone()) {
                    self.send_pdu(&reply);
                }
            }
            _ => {}
        }
        self.received.push(pdu);
    }

    fn on_control(&mut self, now: Timestamp, pdu: &Pdu) {
        match ControlMessage::from_pdu(pdu) {
            Ok(ControlMessage::AttachChallenge(challenge)) => {
                let validity = self.rtcert_validity.unwrap_or_else(|| {
                    let day = Duration::from_secs(86_400);
                    Validity::new(now.saturating_sub(day), now.saturating_add(day))
                });
                let proof = AttachProof::create(&self.identity, &challenge, validity);
                let _ = self.send_control(&ControlMessage::AttachProof(proof));
            }
            Ok(ControlMessage::AttachAccepted { .. }) => {
                self.state = AttachState::Attached;
                if !self.advertise_on_attach.is_empty() {
                    let entries = self.advertise_on_attach.clone();
                    let _ = self.advertise(entries);
                }
            }
            Ok(ControlMessage::AttachRejected { reason }) => self.rejections.push(reason),
            _ => {}
        }
    }
}
