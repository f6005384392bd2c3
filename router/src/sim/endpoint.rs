//! A simulated endpoint: a small sans-IO client of one router.
//!
//! It attaches with the endpoint's own attach state machine,
//! [`EndpointAttach`] (the one the QUIC endpoint drives), told the name of
//! the router its link reaches as TLS would prove it: so it answers only a
//! challenge naming that router, with a proof issuing an RtCert for it, and
//! accepts only an acceptance of its own name after a proof. Once attached
//! it advertises capsules, it records every PDU it receives, and it can
//! echo Data PDUs back to their source. Tests also use it to send
//! hand-made or hostile bytes, and to hand it PDUs as if from its router
//! ([`SimEndpoint::inject`]).
//!
//! After a rejection it starts a new attach on the same link, since the
//! router sends a fresh challenge after each failed proof (until it closes
//! the link). After a protocol violation it stops: it stays linked but
//! never attaches ([`AttachState::Failed`], [`SimEndpoint::attach_error`]).

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{RtCert, Validity};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Identity, Name, Timestamp};
use gdp_proto::attach::{EndpointAttach, EndpointAttachError, RtCertValidity};
use gdp_proto::control::{AdvertiseEntry, ControlMessage, NakReason};
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
    /// Linked, but the router broke the attach protocol: the endpoint
    /// will not attach on this link ([`SimEndpoint::attach_error`]).
    Failed,
}

/// The RtCert validity of a simulated endpoint that was given none: from a
/// day before to a day after the challenge.
const DEFAULT_VALIDITY: RtCertValidity =
    RtCertValidity::relative(Duration::from_secs(86_400), Duration::from_secs(86_400));

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
    /// The attach in progress on the link, if any.
    attach: Option<EndpointAttach>,
    /// The router the link reaches.
    router: Option<Name>,
    /// The RtCert the router accepted on this link.
    rtcert: Option<RtCert>,
    /// Validity of the RtCerts it issues.
    rtcert_validity: RtCertValidity,
    advertise_on_attach: Vec<AdvertiseEntry>,
    echo: bool,
    outbox: Vec<Bytes>,
    received: Vec<Pdu>,
    rejections: Vec<String>,
    attach_error: Option<EndpointAttachError>,
    next_seq: u64,
}

impl SimEndpoint {
    /// An endpoint with `identity` (a server or a client).
    pub fn new(identity: Identity) -> Self {
        SimEndpoint {
            identity,
            link: None,
            state: AttachState::Detached,
            attach: None,
            router: None,
            rtcert: None,
            rtcert_validity: DEFAULT_VALIDITY,
            advertise_on_attach: Vec::new(),
            echo: false,
            outbox: Vec::new(),
            received: Vec::new(),
            rejections: Vec::new(),
            attach_error: None,
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

    /// The router its link reaches, if linked.
    pub fn router(&self) -> Option<Name> {
        self.router
    }

    /// The RtCert its router accepted, while attached.
    pub fn rtcert(&self) -> Option<&RtCert> {
        self.rtcert.as_ref()
    }

    /// Why its last attach failed, if one did: the router's rejection, or
    /// the router's protocol violation.
    pub fn attach_error(&self) -> Option<&EndpointAttachError> {
        self.attach_error.as_ref()
    }

    /// Issues RtCerts with this validity from the next attach on (for
    /// expired-cert tests); `None` restores the default, from a day before
    /// to a day after each challenge.
    pub fn set_rtcert_validity(&mut self, validity: Option<Validity>) {
        self.rtcert_validity = validity.map_or(DEFAULT_VALIDITY, RtCertValidity::Fixed);
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

    /// Queues a Subscribe to `capsule`'s delivery tree (a join, or a
    /// refresh of the lease): addressed to the capsule, from this
    /// endpoint's name. Returns its `seq`.
    pub fn subscribe(&mut self, capsule: Name) -> Result<u64, PduError> {
        self.tree_message(ControlMessage::Subscribe { capsule }, capsule)
    }

    /// Queues an Unsubscribe from `capsule`'s delivery tree. Returns its
    /// `seq`.
    pub fn unsubscribe(&mut self, capsule: Name) -> Result<u64, PduError> {
        self.tree_message(ControlMessage::Unsubscribe { capsule }, capsule)
    }

    fn tree_message(&mut self, msg: ControlMessage, capsule: Name) -> Result<u64, PduError> {
        let seq = self.next_seq();
        let pdu = msg.to_pdu(capsule, self.name(), seq)?;
        self.send_pdu(&pdu);
        Ok(seq)
    }

    /// PDUs of type `ptype` received, in order.
    pub fn received_of(&self, ptype: PduType) -> impl Iterator<Item = &Pdu> {
        self.received
            .iter()
            .filter(move |p| p.header.ptype == ptype)
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

    /// Hands the endpoint `bytes` as if its router had sent them on its
    /// link (tests of hostile routers). Send what it answers with
    /// [`Network::flush_endpoint`](super::Network::flush_endpoint).
    pub fn inject(&mut self, now: Timestamp, bytes: Bytes) {
        self.handle_pdu(now, bytes);
    }

    pub(crate) fn poll_transmit(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.outbox)
    }

    /// Linked to the router named `router` (the name TLS would prove): the
    /// attach starts.
    pub(crate) fn linked(&mut self, link: LinkId, router: Name) {
        self.link = Some(link);
        self.router = Some(router);
        self.rtcert = None;
        self.state = AttachState::Attaching;
        self.start_attach(router);
    }

    pub(crate) fn unlinked(&mut self) {
        self.link = None;
        self.router = None;
        self.rtcert = None;
        self.attach = None;
        self.state = AttachState::Detached;
    }

    /// A new attach to `router`; a simulated endpoint of a kind that does
    /// not attach stays in [`AttachState::Attaching`] for good.
    fn start_attach(&mut self, router: Name) {
        self.attach = EndpointAttach::new(self.identity.clone(), router, self.rtcert_validity).ok();
    }

    /// One PDU from the router.
    pub(crate) fn handle_pdu(&mut self, now: Timestamp, bytes: Bytes) {
        let Ok(pdu) = Pdu::decode(bytes.clone()) else {
            return;
        };
        if pdu.header.ptype == PduType::Control {
            self.on_control(now, bytes);
        } else if pdu.header.ptype == PduType::Data
            && self.echo
            && !pdu.header.flags.contains(Flags::RESPONSE)
        {
            let reply = PduHeader::new(PduType::Data, pdu.header.src, self.name(), pdu.header.seq)
                .with_flags(Flags::RESPONSE);
            if let Ok(reply) = Pdu::new(reply, pdu.payload.clone()) {
                self.send_pdu(&reply);
            }
        }
        self.received.push(pdu);
    }

    /// A Control PDU: the attach machine's, while an attach runs. (PDUs of
    /// other types that arrive before the acceptance are recorded as they
    /// come, so the machine's early PDUs are not needed here.)
    fn on_control(&mut self, now: Timestamp, bytes: Bytes) {
        let Some(attach) = self.attach.as_mut() else {
            return;
        };
        attach.handle_pdu(now, bytes);
        while let Some(proof) = attach.poll_transmit() {
            self.outbox.push(proof.to_bytes());
        }
        let Some(outcome) = attach.poll_outcome() else {
            return;
        };
        self.attach = None;
        match outcome {
            Ok(accepted) => {
                self.rtcert = Some(accepted.rtcert);
                self.state = AttachState::Attached;
                if !self.advertise_on_attach.is_empty() {
                    let entries = self.advertise_on_attach.clone();
                    let _ = self.advertise(entries);
                }
            }
            Err(EndpointAttachError::Rejected { reason }) => {
                self.rejections.push(reason.clone());
                self.attach_error = Some(EndpointAttachError::Rejected { reason });
                // The router challenges again after a failed proof.
                if let Some(router) = self.router {
                    self.start_attach(router);
                }
            }
            Err(e) => {
                self.attach_error = Some(e);
                self.state = AttachState::Failed;
            }
        }
    }
}
