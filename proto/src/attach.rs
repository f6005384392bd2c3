//! The endpoint side of attach, as a sans-IO state machine.
//!
//! An endpoint (a capsule server or a client) that has opened a link to a
//! router runs one [`EndpointAttach`] for that link. The link's TLS handshake
//! has already proved the router's name; the machine holds the endpoint's
//! identity, that name and a policy for the validity of the RtCert it issues
//! ([`RtCertValidity`]). It does no I/O and reads no clock: the driver feeds
//! it every PDU the router sends with the current time, sends the PDUs it
//! returns, and stops once it has an outcome.
//!
//! ```text
//!   endpoint                                   router
//!      | <---------- AttachChallenge ----------- |  router name, fresh nonce
//!      | ----------- AttachProof --------------> |  metadata, RtCert for the router,
//!      |                                         |  signature over the challenge
//!      | <---------- AttachAccepted ------------ |  (or AttachRejected { reason })
//! ```
//!
//! # Driving it
//!
//! - [`EndpointAttach::handle_pdu`] takes one PDU from the router, as
//!   received, and `now`, from which a challenge's RtCert validity is
//!   computed.
//! - [`EndpointAttach::poll_transmit`] hands out the [`AttachProof`] PDUs to
//!   send, in order.
//! - [`EndpointAttach::poll_outcome`] hands out the end, once:
//!   [`Accepted`] (the router's name, the RtCert the accepted proof issued,
//!   and the PDUs that arrived before or with the acceptance), or an
//!   [`EndpointAttachError`].
//!
//! # What it checks
//!
//! - A challenge must name the router the link proved; one that names
//!   another router is a protocol violation and ends the attach (answering
//!   it would issue an RtCert for a router this endpoint is not linked to).
//! - An acceptance must name this endpoint and come after a proof. The
//!   acceptance is of the last proof sent (a router challenges again only
//!   after a rejection).
//! - A rejection ends the attach with the router's reason.
//! - Anything else is not part of attach: PDUs that do not decode and other
//!   control messages are ignored (and counted, [`EndpointAttach::ignored`]);
//!   PDUs of other types are kept, in order, and handed over with the
//!   acceptance. After the acceptance (until the outcome is taken) every PDU
//!   is kept the same way, so a driver may feed a whole batch and find the
//!   rest of it in [`Accepted::early`].
//!
//! # Example
//!
//! Both sides of an attach, the router's done by hand:
//!
//! ```
//! use std::time::Duration;
//! use gdp_certs::{Identity, Kind, Name, Timestamp};
//! use gdp_proto::Encode;
//! use gdp_proto::attach::{EndpointAttach, RtCertValidity};
//! use gdp_proto::control::{AttachChallenge, ControlMessage};
//! use gdp_proto::pdu::Pdu;
//!
//! let router = Identity::generate(Kind::Router, "router")?;
//! let client = Identity::generate(Kind::Client, "client")?;
//! let validity = RtCertValidity::relative(Duration::from_secs(300), Duration::from_secs(3600));
//! let mut attach = EndpointAttach::new(client.clone(), router.name(), validity)?;
//!
//! let now = Timestamp::from_secs(1_800_000_000);
//! let challenge = AttachChallenge { router: router.name(), nonce: [7; 32] };
//! let pdu = ControlMessage::AttachChallenge(challenge.clone()).to_pdu(Name::ZERO, router.name(), 1)?;
//! attach.handle_pdu(now, pdu.to_bytes());
//!
//! // The endpoint answers with a proof, which the router checks.
//! let proof = attach.poll_transmit().expect("a proof");
//! let Ok(ControlMessage::AttachProof(proof)) = ControlMessage::from_pdu(&proof) else {
//!     panic!("not a proof");
//! };
//! let verified = proof.verify(&challenge, now)?;
//! assert_eq!(verified.endpoint(), client.name());
//!
//! let accepted = ControlMessage::AttachAccepted { endpoint: client.name() };
//! attach.handle_pdu(now, accepted.to_pdu(Name::ZERO, router.name(), 2)?.to_bytes());
//! let accepted = attach.poll_outcome().expect("an outcome")?;
//! assert_eq!(accepted.router, router.name());
//! assert_eq!(accepted.rtcert, proof.rtcert);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::cert::{RTCERT_LEN, RtCert, Validity};
use gdp_certs::codec::Decode;
use gdp_certs::{Identity, Kind, MAX_METADATA_LEN, Name, SIGNATURE_LEN, Timestamp};

use crate::control::{AttachChallenge, AttachProof, ControlMessage};
use crate::pdu::{MAX_PAYLOAD_LEN, Pdu, PduType};

// An attach proof (tag, metadata, RtCert, signature) always fits a PDU, so
// building its PDU cannot fail.
const _: () = assert!(1 + MAX_METADATA_LEN + RTCERT_LEN + SIGNATURE_LEN <= MAX_PAYLOAD_LEN);

/// How long the RtCert issued at each attach is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtCertValidity {
    /// From `clock_skew` before the challenge is answered (so that a router
    /// whose clock is somewhat behind still accepts it) until `lifetime`
    /// after.
    Relative {
        /// How far the certificate starts before `now`.
        clock_skew: Duration,
        /// How long it lasts after `now`.
        lifetime: Duration,
    },
    /// Exactly this validity, whatever the time (for tests of expired or
    /// not yet valid certificates).
    Fixed(Validity),
}

impl RtCertValidity {
    /// [`RtCertValidity::Relative`] with `clock_skew` and `lifetime`.
    pub const fn relative(clock_skew: Duration, lifetime: Duration) -> Self {
        RtCertValidity::Relative {
            clock_skew,
            lifetime,
        }
    }

    /// The validity of a certificate issued at `now`.
    pub fn at(&self, now: Timestamp) -> Validity {
        match *self {
            RtCertValidity::Relative {
                clock_skew,
                lifetime,
            } => Validity::new(now.saturating_sub(clock_skew), now.saturating_add(lifetime)),
            RtCertValidity::Fixed(validity) => validity,
        }
    }
}

/// Only servers and clients attach to routers as endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {kind} identity cannot attach as an endpoint")]
#[non_exhaustive]
pub struct NotAnEndpoint {
    /// The identity's kind.
    pub kind: Kind,
}

/// Why an attach ended without the router accepting the endpoint. Both are
/// the router's doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointAttachError {
    /// The router refused the proof.
    #[error("the router refused to attach this endpoint: {reason}")]
    Rejected {
        /// The router's reason.
        reason: String,
    },
    /// The router broke the attach protocol.
    #[error("the router broke the attach protocol: {0}")]
    Protocol(#[from] AttachViolation),
}

/// How a router broke the attach protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachViolation {
    /// The challenge names another router than the one the link proved.
    #[error("the challenge names router {challenged}, the link proved {linked}")]
    WrongRouter {
        /// The router the challenge names.
        challenged: Name,
        /// The router the link proved.
        linked: Name,
    },
    /// The router accepted another endpoint than this one.
    #[error("the router accepted {accepted}, not {endpoint}")]
    WrongEndpoint {
        /// The name the router accepted.
        accepted: Name,
        /// This endpoint's name.
        endpoint: Name,
    },
    /// The router accepted before this endpoint sent any proof.
    #[error("the router accepted before any proof")]
    AcceptedBeforeProof,
}

/// A successful attach.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The router that accepted the endpoint (the name the link proved).
    pub router: Name,
    /// The RtCert issued by the proof the router accepted.
    pub rtcert: RtCert,
    /// PDUs of types other than Control that arrived before the acceptance,
    /// and every PDU fed after it, in order.
    pub early: Vec<Bytes>,
}

/// Where an [`EndpointAttach`] stands.
#[derive(Debug)]
enum State {
    /// No proof sent yet.
    AwaitingChallenge,
    /// A proof issuing `rtcert` was sent; waiting for the router's answer.
    AwaitingAnswer { rtcert: RtCert },
    /// Accepted; the outcome is waiting to be taken.
    Accepted { rtcert: RtCert },
    /// Failed; the outcome is waiting to be taken.
    Failed(EndpointAttachError),
    /// The outcome was taken.
    Finished,
}

/// The endpoint side of one attach. See the [module documentation](self).
#[derive(Debug)]
pub struct EndpointAttach {
    identity: Identity,
    router: Name,
    validity: RtCertValidity,
    state: State,
    transmits: VecDeque<Pdu>,
    early: Vec<Bytes>,
    next_seq: u64,
    ignored: u64,
}

impl EndpointAttach {
    /// The attach of `identity` (a server or a client) to the router whose
    /// name the link proved, issuing RtCerts valid as `validity` says.
    pub fn new(
        identity: Identity,
        router: Name,
        validity: RtCertValidity,
    ) -> Result<Self, NotAnEndpoint> {
        let kind = identity.metadata().kind();
        if !kind.is_endpoint() {
            return Err(NotAnEndpoint { kind });
        }
        Ok(EndpointAttach {
            identity,
            router,
            validity,
            state: State::AwaitingChallenge,
            transmits: VecDeque::new(),
            early: Vec::new(),
            next_seq: 1,
            ignored: 0,
        })
    }

    /// The router the link proved.
    pub fn router(&self) -> Name {
        self.router
    }

    /// The endpoint's name.
    pub fn endpoint(&self) -> Name {
        self.identity.name()
    }

    /// True once the attach has ended, whether or not its outcome has been
    /// taken.
    pub fn is_done(&self) -> bool {
        matches!(
            self.state,
            State::Accepted { .. } | State::Failed(_) | State::Finished
        )
    }

    /// True once a proof has been sent and the attach has not ended.
    pub fn is_proved(&self) -> bool {
        matches!(self.state, State::AwaitingAnswer { .. })
    }

    /// PDUs ignored so far: they did not decode, or were control messages
    /// that are not part of attach.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// One PDU from the router, as received, at `now`. After the outcome
    /// has been taken, PDUs are dropped unseen.
    pub fn handle_pdu(&mut self, now: Timestamp, bytes: Bytes) {
        match self.state {
            State::AwaitingChallenge | State::AwaitingAnswer { .. } => {}
            State::Accepted { .. } => {
                self.early.push(bytes);
                return;
            }
            State::Failed(_) | State::Finished => return,
        }
        let pdu = match Pdu::decode(bytes.clone()) {
            Ok(p) => p,
            Err(_) => {
                self.ignored += 1;
                return;
            }
        };
        if pdu.header.ptype != PduType::Control {
            self.early.push(bytes);
            return;
        }
        match ControlMessage::from_pdu(&pdu) {
            Ok(ControlMessage::AttachChallenge(challenge)) => self.on_challenge(now, &challenge),
            Ok(ControlMessage::AttachAccepted { endpoint }) => self.on_accepted(endpoint),
            Ok(ControlMessage::AttachRejected { reason }) => {
                self.fail(EndpointAttachError::Rejected { reason });
            }
            Ok(_) | Err(_) => self.ignored += 1,
        }
    }

    /// The next PDU to send to the router: an [`AttachProof`].
    pub fn poll_transmit(&mut self) -> Option<Pdu> {
        self.transmits.pop_front()
    }

    /// The outcome, once the attach has ended; handed out once.
    pub fn poll_outcome(&mut self) -> Option<Result<Accepted, EndpointAttachError>> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Accepted { rtcert } => Some(Ok(Accepted {
                router: self.router,
                rtcert,
                early: std::mem::take(&mut self.early),
            })),
            State::Failed(e) => Some(Err(e)),
            waiting => {
                self.state = waiting;
                None
            }
        }
    }

    fn on_challenge(&mut self, now: Timestamp, challenge: &AttachChallenge) {
        if challenge.router != self.router {
            self.fail(
                AttachViolation::WrongRouter {
                    challenged: challenge.router,
                    linked: self.router,
                }
                .into(),
            );
            return;
        }
        let proof = AttachProof::create(&self.identity, challenge, self.validity.at(now));
        let rtcert = proof.rtcert.clone();
        let pdu = ControlMessage::AttachProof(proof)
            .to_pdu(Name::ZERO, self.identity.name(), self.next_seq)
            .expect("an attach proof fits a pdu: its metadata and RtCert are bounded");
        self.next_seq += 1;
        self.transmits.push_back(pdu);
        self.state = State::AwaitingAnswer { rtcert };
    }

    fn on_accepted(&mut self, endpoint: Name) {
        if endpoint != self.identity.name() {
            self.fail(
                AttachViolation::WrongEndpoint {
                    accepted: endpoint,
                    endpoint: self.identity.name(),
                }
                .into(),
            );
            return;
        }
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitingAnswer { rtcert } => self.state = State::Accepted { rtcert },
            _ => self.fail(AttachViolation::AcceptedBeforeProof.into()),
        }
    }

    /// Ends the attach with `error`; nothing queued is worth sending.
    fn fail(&mut self, error: EndpointAttachError) {
        self.transmits.clear();
        self.early.clear();
        self.state = State::Failed(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::PduHeader;
    use gdp_certs::codec::Encode;
    use proptest::prelude::*;

    const SKEW: Duration = Duration::from_secs(300);
    const LIFETIME: Duration = Duration::from_secs(3600);
    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn identity(kind: Kind, label: &str, seed: u8) -> Identity {
        Identity::from_key(
            gdp_certs::SecretKey::from_seed(&[seed; 32]),
            kind,
            label,
            Timestamp::from_secs(1_700_000_000),
        )
        .expect("short label")
    }

    struct Fixture {
        router: Identity,
        other_router: Identity,
        client: Identity,
    }

    fn fixture() -> Fixture {
        Fixture {
            router: identity(Kind::Router, "router", 1),
            other_router: identity(Kind::Router, "other", 2),
            client: identity(Kind::Client, "client", 3),
        }
    }

    fn machine(f: &Fixture) -> EndpointAttach {
        EndpointAttach::new(
            f.client.clone(),
            f.router.name(),
            RtCertValidity::relative(SKEW, LIFETIME),
        )
        .expect("a client attaches")
    }

    fn control(msg: ControlMessage, from: Name) -> Bytes {
        msg.to_pdu(Name::ZERO, from, 9)
            .expect("fits a pdu")
            .to_bytes()
    }

    fn challenge(router: Name, nonce: u8) -> AttachChallenge {
        AttachChallenge {
            router,
            nonce: [nonce; 32],
        }
    }

    fn challenge_pdu(router: Name, nonce: u8) -> Bytes {
        control(
            ControlMessage::AttachChallenge(challenge(router, nonce)),
            router,
        )
    }

    fn accepted_pdu(endpoint: Name) -> Bytes {
        control(ControlMessage::AttachAccepted { endpoint }, Name::ZERO)
    }

    fn data_pdu(seq: u64) -> Bytes {
        let h = PduHeader::new(PduType::Data, Name::from_bytes([5; 32]), Name::ZERO, seq);
        Pdu::new(h, Bytes::from_static(b"early"))
            .expect("small")
            .to_bytes()
    }

    fn proof_of(pdu: &Pdu) -> AttachProof {
        match ControlMessage::from_pdu(pdu) {
            Ok(ControlMessage::AttachProof(p)) => p,
            other => panic!("expected a proof, got {other:?}"),
        }
    }

    #[test]
    fn answers_the_challenge_and_ends_accepted() {
        let f = fixture();
        let mut m = machine(&f);
        assert_eq!(
            (m.router(), m.endpoint()),
            (f.router.name(), f.client.name())
        );
        m.handle_pdu(NOW, data_pdu(1));
        m.handle_pdu(NOW, challenge_pdu(f.router.name(), 7));
        assert!(m.is_proved() && !m.is_done());
        assert!(m.poll_outcome().is_none());
        let pdu = m.poll_transmit().expect("a proof");
        assert!(m.poll_transmit().is_none());
        assert_eq!(pdu.header.ptype, PduType::Control);
        assert_eq!(
            (pdu.header.dst, pdu.header.src),
            (Name::ZERO, f.client.name())
        );
        let proof = proof_of(&pdu);
        // The router accepts the proof for its challenge...
        let verified = proof
            .verify(&challenge(f.router.name(), 7), NOW)
            .expect("a valid proof");
        assert_eq!(verified.endpoint(), f.client.name());
        // ...with the validity the policy gives.
        let v = proof.rtcert.validity();
        assert_eq!(v.not_before, NOW.saturating_sub(SKEW));
        assert_eq!(v.not_after, NOW.saturating_add(LIFETIME));

        m.handle_pdu(NOW, accepted_pdu(f.client.name()));
        m.handle_pdu(NOW, data_pdu(2));
        assert!(m.is_done());
        let accepted = m.poll_outcome().expect("an outcome").expect("accepted");
        assert_eq!(accepted.router, f.router.name());
        assert_eq!(accepted.rtcert, proof.rtcert);
        assert_eq!(accepted.early, vec![data_pdu(1), data_pdu(2)]);
        // Handed out once; nothing more happens.
        assert!(m.poll_outcome().is_none());
        m.handle_pdu(NOW, challenge_pdu(f.router.name(), 8));
        assert!(m.poll_transmit().is_none());
        assert!(m.is_done());
    }

    #[test]
    fn a_fixed_validity_is_used_as_it_is() {
        let f = fixture();
        let long_ago = Validity::new(Timestamp::from_secs(1), Timestamp::from_secs(2));
        let mut m = EndpointAttach::new(
            f.client.clone(),
            f.router.name(),
            RtCertValidity::Fixed(long_ago),
        )
        .expect("a client");
        m.handle_pdu(NOW, challenge_pdu(f.router.name(), 1));
        let proof = proof_of(&m.poll_transmit().expect("a proof"));
        assert_eq!(proof.rtcert.validity(), long_ago);
        assert!(proof.verify(&challenge(f.router.name(), 1), NOW).is_err());
    }

    #[test]
    fn only_endpoints_attach() {
        let f = fixture();
        let err = EndpointAttach::new(
            f.other_router.clone(),
            f.router.name(),
            RtCertValidity::relative(SKEW, LIFETIME),
        )
        .expect_err("a router is not an endpoint");
        assert_eq!(err.kind, Kind::Router);
        let server = identity(Kind::Server, "server", 4);
        assert!(
            EndpointAttach::new(
                server,
                f.router.name(),
                RtCertValidity::relative(SKEW, LIFETIME)
            )
            .is_ok()
        );
    }

    #[test]
    fn a_challenge_for_another_router_is_refused_without_a_proof() {
        let f = fixture();
        let mut m = machine(&f);
        m.handle_pdu(NOW, challenge_pdu(f.other_router.name(), 7));
        assert!(m.poll_transmit().is_none());
        assert_eq!(
            m.poll_outcome(),
            Some(Err(EndpointAttachError::Protocol(
                AttachViolation::WrongRouter {
                    challenged: f.other_router.name(),
                    linked: f.router.name(),
                }
            )))
        );
    }

    #[test]
    fn a_wrong_challenge_after_a_proof_also_ends_it() {
        let f = fixture();
        let mut m = machine(&f);
        m.handle_pdu(NOW, challenge_pdu(f.router.name(), 7));
        m.handle_pdu(NOW, challenge_pdu(f.other_router.name(), 8));
        // The proof queued before is not worth sending any more.
        assert!(m.poll_transmit().is_none());
        assert!(matches!(
            m.poll_outcome(),
            Some(Err(EndpointAttachError::Protocol(
                AttachViolation::WrongRouter { .. }
            )))
        ));
    }

    #[test]
    fn an_acceptance_before_any_proof_is_a_violation() {
        let f = fixture();
        let mut m = machine(&f);
        m.handle_pdu(NOW, accepted_pdu(f.client.name()));
        assert_eq!(
            m.poll_outcome(),
            Some(Err(AttachViolation::AcceptedBeforeProof.into()))
        );
    }

    #[test]
    fn an_acceptance_of_another_name_is_a_violation() {
        let f = fixture();
        let mut m = machine(&f);
        m.handle_pdu(NOW, challenge_pdu(f.router.name(), 7));
        m.handle_pdu(NOW, accepted_pdu(f.other_router.name()));
        assert_eq!(
            m.poll_outcome(),
            Some(Err(AttachViolation::WrongEndpoint {
                accepted: f.other_router.name(),
                endpoint: f.client.name(),
            }
            .into()))
        );
    }

    #[test]
    fn a_rejection_ends_it_with_the_reason() {
        let f = fixture();
        let mut m = machine(&f);
        m.handle_pdu(NOW, challenge_pdu(f.router.name(), 7));
        assert!(m.poll_transmit().is_some());
        m.handle_pdu(
            NOW,
            control(ControlMessage::rejected("expired"), Name::ZERO),
        );
        // A fresh challenge after the rejection is not answered.
        m.handle_pdu(NOW, challenge_pdu(f.router.name(), 8));
        assert!(m.poll_transmit().is_none());
        let err = m.poll_outcome().expect("an outcome").expect_err("rejected");
        assert_eq!(
            err,
            EndpointAttachError::Rejected {
                reason: "expired".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "the router refused to attach this endpoint: expired"
        );
    }

    #[test]
    fn the_acceptance_is_of_the_last_proof() {
        let f = fixture();
        let mut m = machine(&f);
        m.handle_pdu(NOW, challenge_pdu(f.router.name(), 1));
        let later = NOW.saturating_add(Duration::from_secs(10));
        m.handle_pdu(later, challenge_pdu(f.router.name(), 2));
        let first = m.poll_transmit().expect("first proof");
        let second = m.poll_transmit().expect("second proof");
        assert!(second.header.seq > first.header.seq);
        m.handle_pdu(later, accepted_pdu(f.client.name()));
        let accepted = m.poll_outcome().expect("done").expect("accepted");
        assert_eq!(accepted.rtcert, proof_of(&second).rtcert);
        assert_ne!(accepted.rtcert, proof_of(&first).rtcert);
    }

    #[test]
    fn junk_and_other_messages_are_ignored_and_counted() {
        let f = fixture();
        let mut m = machine(&f);
        m.handle_pdu(NOW, Bytes::from_static(b"not a pdu"));
        m.handle_pdu(
            NOW,
            control(
                ControlMessage::Subscribe {
                    capsule: Name::ZERO,
                },
                Name::ZERO,
            ),
        );
        // A Control PDU whose payload is not a control message.
        let h = PduHeader::new(PduType::Control, Name::ZERO, Name::ZERO, 1);
        m.handle_pdu(
            NOW,
            Pdu::new(h, Bytes::from_static(&[0xee, 1, 2]))
                .expect("small")
                .to_bytes(),
        );
        assert_eq!(m.ignored(), 2);
        assert!(!m.is_done() && !m.is_proved());
        assert!(m.poll_transmit().is_none());
    }

    /// What the router may send, good and bad.
    #[derive(Debug, Clone)]
    enum Input {
        Challenge { right_router: bool, nonce: u8 },
        Accepted { right_name: bool },
        Rejected(String),
        Other(u8),
        Data(u64),
        Junk(Vec<u8>),
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            (any::<bool>(), any::<u8>()).prop_map(|(right_router, nonce)| Input::Challenge {
                right_router,
                nonce
            }),
            any::<bool>().prop_map(|right_name| Input::Accepted { right_name }),
            "[a-z ]{0,20}".prop_map(Input::Rejected),
            any::<u8>().prop_map(Input::Other),
            any::<u64>().prop_map(Input::Data),
            proptest::collection::vec(any::<u8>(), 0..120).prop_map(Input::Junk),
        ]
    }

    fn encode(f: &Fixture, input: &Input) -> Bytes {
        match input {
            Input::Challenge {
                right_router,
                nonce,
            } => {
                let r = if *right_router {
                    &f.router
                } else {
                    &f.other_router
                };
                challenge_pdu(r.name(), *nonce)
            }
            Input::Accepted { right_name } => {
                let n = if *right_name {
                    f.client.name()
                } else {
                    f.other_router.name()
                };
                accepted_pdu(n)
            }
            Input::Rejected(reason) => {
                control(ControlMessage::rejected(reason.clone()), Name::ZERO)
            }
            Input::Other(n) => control(
                ControlMessage::NakNoRoute {
                    dst: Name::from_bytes([*n; 32]),
                    reason: crate::control::NakReason::NoRoute,
                },
                Name::ZERO,
            ),
            Input::Data(seq) => data_pdu(*seq),
            Input::Junk(bytes) => Bytes::from(bytes.clone()),
        }
    }

    proptest! {
        /// Whatever a router sends, the machine never panics, never accepts
        /// without having sent a proof, and ends exactly as a simple model
        /// of the protocol says.
        #[test]
        fn any_sequence_ends_as_the_protocol_says(inputs in proptest::collection::vec(input(), 0..24)) {
            let f = fixture();
            let mut m = machine(&f);
            let mut sent: Vec<AttachProof> = Vec::new();
            // The model: the outcome the inputs call for, and the proof the
            // acceptance must carry.
            let mut expected: Option<Result<(), EndpointAttachError>> = None;
            let mut last_proof = false;
            for (i, inp) in inputs.iter().enumerate() {
                let now = NOW.saturating_add(Duration::from_secs(i as u64));
                m.handle_pdu(now, encode(&f, inp));
                while let Some(pdu) = m.poll_transmit() {
                    prop_assert!(expected.is_none(), "nothing is sent after the end");
                    let proof = proof_of(&pdu);
                    let challenged = inputs[..=i].iter().rev().find_map(|x| match x {
                        Input::Challenge { nonce, .. } => Some(*nonce),
                        _ => None,
                    });
                    let nonce = challenged.expect("a proof answers a challenge");
                    prop_assert!(proof.verify(&challenge(f.router.name(), nonce), now).is_ok());
                    sent.push(proof);
                }
                if expected.is_some() {
                    continue;
                }
                match inp {
                    Input::Challenge { right_router: true, .. } => last_proof = true,
                    Input::Challenge { right_router: false, .. } => {
                        expected = Some(Err(AttachViolation::WrongRouter {
                            challenged: f.other_router.name(),
                            linked: f.router.name(),
                        }.into()));
                    }
                    Input::Accepted { right_name: false } => {
                        expected = Some(Err(AttachViolation::WrongEndpoint {
                            accepted: f.other_router.name(),
                            endpoint: f.client.name(),
                        }.into()));
                    }
                    Input::Accepted { right_name: true } if !last_proof => {
                        expected = Some(Err(AttachViolation::AcceptedBeforeProof.into()));
                    }
                    Input::Accepted { right_name: true } => expected = Some(Ok(())),
                    Input::Rejected(reason) => {
                        let reason = reason.clone();
                        expected = Some(Err(EndpointAttachError::Rejected { reason }));
                    }
                    _ => {}
                }
                prop_assert_eq!(m.is_done(), expected.is_some());
            }
            match (m.poll_outcome(), expected) {
                (None, None) => {}
                (Some(Ok(accepted)), Some(Ok(()))) => {
                    let last = sent.last().expect("accepted only after a proof");
                    prop_assert_eq!(&accepted.rtcert, &last.rtcert);
                    prop_assert_eq!(accepted.router, f.router.name());
                }
                (Some(Err(e)), Some(Err(want))) => prop_assert_eq!(e, want),
                (got, want) => prop_assert!(false, "got {:?}, the model says {:?}", got, want),
            }
        }
    }
}
