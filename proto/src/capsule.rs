//! Capsule service messages: the payloads of Capsule PDUs.
//!
//! A client sends a [`CapsuleRequest`] in a Capsule PDU addressed to the
//! capsule's name; routers deliver it to a server that advertised the
//! capsule. The server answers with a [`CapsuleResponse`] in a Capsule PDU
//! with the `RESPONSE` flag, addressed back to the request's source, with
//! the capsule as source and the request's `seq` (the request id)
//! ([`CapsuleResponse::reply_to`]). Subscription events are responses to
//! the `Subscribe` request: they carry its request id.
//!
//! Nothing here is trusted: every record a reader receives comes with a
//! [`Proof`] (a writer's heartbeat and a hash path) that the reader checks
//! against the capsule's metadata ([`Proof::verify_range`]).
//!
//! # Encoding
//!
//! One type byte, then the fields. Integers are big-endian; metadata,
//! certificates, records, heartbeats and proofs are their own canonical
//! (self-delimiting) encodings. Request and response type bytes are
//! disjoint, so one is never mistaken for the other.
//!
//! ```text
//! requests
//! 0x01 Create       capsule metadata, AdCert (owner -> this server)
//! 0x02 Append       u16 count (1..=MAX_APPEND_RECORDS), records, Heartbeat
//! 0x03 Read         u64 seqno
//! 0x04 ReadRange    u64 from, u64 to          (from <= to, both included)
//! 0x05 Latest
//! 0x06 Subscribe    u64 from seqno
//! 0x07 Unsubscribe
//! 0x08 GetMetadata
//! 0x09 Sync         u64 tail, [32] hash of the tail record (anchor if 0)
//! 0x0A GetReplicas
//! 0x0B SetReplicas  ReplicaSet
//! 0x0C GetForks
//! 0x0D At           [32] capsule, request (any type but At)
//!
//! responses
//! 0x81 Created
//! 0x82 Appended     u64 tail
//! 0x83 Records      u16 count (1..=MAX_RESPONSE_RECORDS), records, Proof
//! 0x84 Metadata     capsule metadata
//! 0x85 Event        u16 count (1..=MAX_RESPONSE_RECORDS), records, Proof
//! 0x86 Error        u16 ErrorCode, u16 length, UTF-8 message
//!                   (at most MAX_ERROR_MESSAGE_LEN bytes)
//! 0x87 Subscribed   u64 tail (records after it arrive as events)
//! 0x88 Unsubscribed
//! 0x89 Synced       u64 tail
//! 0x8A Replicas     u8 present (0 or 1), then the ReplicaSet if present
//! 0x8B Forks        u16 count (0..=MAX_FORKS_PER_RESPONSE), ForkEvidence
//! ```
//!
//! # Replicas
//!
//! A capsule may live on several servers, all advertising it. `At` directs
//! a request to one of them: the PDU is addressed to that server's name and
//! names the capsule inside, so a writer reaches every replica and a reader
//! picks one. Replicas converge by `Sync`: a server sends its tail and the
//! hash of its tail record; the other answers `Synced` when it has nothing
//! newer, `Records` (closed by a heartbeat over the last one) when it has,
//! and `Forks` when its record at that seqno differs. `SetReplicas` hands a
//! server the owner-signed [`ReplicaSet`].
//!
//! `Records` and `Event` carry contiguous records, oldest first, and a proof
//! of the last one; each earlier record is authenticated by the `prev` hash
//! of the one after it. A server answers a `ReadRange` with at most
//! [`MAX_RESPONSE_RECORDS`] records that fit in one PDU, starting at `from`;
//! the client asks again for the rest.

use bytes::{BufMut, Bytes, BytesMut};
use gdp_certs::Metadata;
use gdp_certs::Name;
use gdp_certs::cert::{AdCert, ReplicaSet};
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader, put};

use crate::control::bounded_str;
use crate::fork::ForkEvidence;
use crate::pdu::{Flags, Pdu, PduError, PduHeader, PduType};
use crate::proof::{Heartbeat, Proof};
use crate::record::{Record, RecordHash};

/// Most records in one `Append`.
pub const MAX_APPEND_RECORDS: usize = 256;
/// Most records in one `Records` or `Event` response.
pub const MAX_RESPONSE_RECORDS: usize = 1024;
/// Longest error message, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;
/// Most fork evidences in one `Forks` response.
pub const MAX_FORKS_PER_RESPONSE: usize = 64;

const TAG_CREATE: u8 = 0x01;
const TAG_APPEND: u8 = 0x02;
const TAG_READ: u8 = 0x03;
const TAG_READ_RANGE: u8 = 0x04;
const TAG_LATEST: u8 = 0x05;
const TAG_SUBSCRIBE: u8 = 0x06;
const TAG_UNSUBSCRIBE: u8 = 0x07;
const TAG_GET_METADATA: u8 = 0x08;
const TAG_SYNC: u8 = 0x09;
const TAG_GET_REPLICAS: u8 = 0x0A;
const TAG_SET_REPLICAS: u8 = 0x0B;
const TAG_GET_FORKS: u8 = 0x0C;
const TAG_AT: u8 = 0x0D;

const TAG_CREATED: u8 = 0x81;
const TAG_APPENDED: u8 = 0x82;
const TAG_RECORDS: u8 = 0x83;
const TAG_METADATA: u8 = 0x84;
const TAG_EVENT: u8 = 0x85;
const TAG_ERROR: u8 = 0x86;
const TAG_SUBSCRIBED: u8 = 0x87;
const TAG_UNSUBSCRIBED: u8 = 0x88;
const TAG_SYNCED: u8 = 0x89;
const TAG_REPLICAS: u8 = 0x8A;
const TAG_FORKS: u8 = 0x8B;

/// A request to the server hosting a capsule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapsuleRequest {
    /// Host a new capsule.
    Create {
        /// The capsule's metadata (its name is the PDU's destination).
        metadata: Metadata,
        /// The owner's certificate letting this server serve it.
        adcert: AdCert,
    },
    /// Append records, closed by a writer's heartbeat over the last one.
    Append {
        /// Consecutive records, oldest first (1..=[`MAX_APPEND_RECORDS`]).
        records: Vec<Record>,
        /// The writer's heartbeat over the last record.
        heartbeat: Heartbeat,
    },
    /// Read one record, with a proof.
    Read {
        /// Its seqno.
        seqno: u64,
    },
    /// Read records `from..=to`, with a proof.
    ReadRange {
        /// First seqno.
        from: u64,
        /// Last seqno (`>= from`).
        to: u64,
    },
    /// Read the newest record, with the newest heartbeat.
    Latest,
    /// Receive records from seqno `from` on: the backlog, then new ones.
    Subscribe {
        /// First seqno wanted.
        from: u64,
    },
    /// Stop the subscription made from this source.
    Unsubscribe,
    /// Fetch the capsule's metadata.
    GetMetadata,
    /// Anti-entropy between replicas: the sender's tail and the hash of its
    /// tail record. Answered with `Synced`, `Records` or `Forks`.
    Sync {
        /// The sender's tail seqno (0: no records).
        tail: u64,
        /// The hash of the sender's record at `tail` (the capsule's anchor
        /// when `tail` is 0).
        hash: RecordHash,
    },
    /// Fetch the replica set the server holds for the capsule.
    GetReplicas,
    /// Hand the server the owner-signed replica set of the capsule; it is
    /// kept if newer than the one it has.
    SetReplicas {
        /// The set.
        set: ReplicaSet,
    },
    /// Fetch the fork evidence the server holds for the capsule.
    GetForks,
    /// `request` for `capsule`, addressed to one server by its name (a
    /// replica chosen by the sender) rather than to the capsule.
    At {
        /// The capsule the request is about.
        capsule: Name,
        /// The request; never another `At`.
        request: Box<CapsuleRequest>,
    },
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No such capsule or record.
    NotFound,
    /// A different record already exists at that seqno; the append would fork.
    Fork,
    /// The heartbeat does not verify or does not cover the records.
    BadHeartbeat,
    /// The heartbeat's signer is not a writer of the capsule.
    NotWriter,
    /// A record's `prev` or skip pointers do not match the chain.
    BadChain,
    /// The records do not continue the server's tail (a seqno gap).
    Gap,
    /// A request or batch is over a limit.
    TooLarge,
    /// Too many requests; retry later.
    RateLimited,
    /// This server does not host the capsule.
    NotHosted,
    /// The AdCert or metadata of a `Create` does not verify.
    BadCert,
    /// The request is malformed or not allowed in this state.
    BadRequest,
    /// The server failed; retry later.
    Internal,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::NotFound,
        ErrorCode::Fork,
        ErrorCode::BadHeartbeat,
        ErrorCode::NotWriter,
        ErrorCode::BadChain,
        ErrorCode::Gap,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::NotHosted,
        ErrorCode::BadCert,
        ErrorCode::BadRequest,
        ErrorCode::Internal,
    ];

    /// The wire code.
    pub const fn code(self) -> u16 {
        match self {
            ErrorCode::NotFound => 1,
            ErrorCode::Fork => 2,
            ErrorCode::BadHeartbeat => 3,
            ErrorCode::NotWriter => 4,
            ErrorCode::BadChain => 5,
            ErrorCode::Gap => 6,
            ErrorCode::TooLarge => 7,
            ErrorCode::RateLimited => 8,
            ErrorCode::NotHosted => 9,
            ErrorCode::BadCert => 10,
            ErrorCode::BadRequest => 11,
            ErrorCode::Internal => 12,
        }
    }

    /// The error code with wire code `code`.
    pub fn from_code(code: u16) -> Result<Self, DecodeError> {
        Self::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or(DecodeError::UnknownValue {
                what: "capsule error code",
                value: code.into(),
            })
    }

    /// True if the same request may succeed later.
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Internal)
    }
}

/// A server's answer to a [`CapsuleRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapsuleResponse {
    /// The capsule is hosted here now (or already was).
    Created,
    /// The records are durable; the capsule's tail is now `tail`.
    Appended {
        /// The newest seqno.
        tail: u64,
    },
    /// Records read, with a proof of the last one.
    Records {
        /// Consecutive records, oldest first (1..=[`MAX_RESPONSE_RECORDS`]).
        records: Vec<Record>,
        /// Proof of the last record.
        proof: Proof,
    },
    /// The capsule's metadata.
    Metadata {
        /// The metadata (hashes to the capsule's name).
        metadata: Metadata,
    },
    /// Records delivered to a subscriber, with a proof of the last one.
    Event {
        /// Consecutive records, oldest first (1..=[`MAX_RESPONSE_RECORDS`]).
        records: Vec<Record>,
        /// Proof of the last record.
        proof: Proof,
    },
    /// The request failed.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Details for people; encoded cut to [`MAX_ERROR_MESSAGE_LEN`] bytes.
        message: String,
    },
    /// The subscription is active; records after `tail` follow as events
    /// (and the backlog from the requested seqno up to `tail` before them).
    Subscribed {
        /// The capsule's tail when the subscription started.
        tail: u64,
    },
    /// The subscription ended.
    Unsubscribed,
    /// Answer to `Sync`: nothing newer than the sender's tail here; this
    /// server's tail is `tail` (lower when the sender is ahead).
    Synced {
        /// This server's durable tail.
        tail: u64,
    },
    /// The server's replica set for the capsule, if it holds one.
    Replicas {
        /// The owner-signed set (not verified here).
        set: Option<ReplicaSet>,
    },
    /// Evidence of forks: records a writer signed at a seqno where this
    /// server holds another record (at most [`MAX_FORKS_PER_RESPONSE`]).
    Forks {
        /// The evidence, by seqno (not verified here).
        evidence: Vec<ForkEvidence>,
    },
}

fn check_records(what: &'static str, records: &[Record], max: usize) -> Result<(), PduError> {
    if records.is_empty() {
        return Err(PduError::Invalid {
            what: "empty record list",
        });
    }
    PduError::check(what, records.len(), max)
}

fn read_records(r: &mut Reader, max: usize) -> Result<Vec<Record>, DecodeError> {
    let records: Vec<Record> = r.vec_u16(max)?;
    if records.is_empty() {
        return Err(DecodeError::Invalid {
            what: "empty record list",
        });
    }
    Ok(records)
}

impl CapsuleRequest {
    fn tag(&self) -> u8 {
        match self {
            CapsuleRequest::Create { .. } => TAG_CREATE,
            CapsuleRequest::Append { .. } => TAG_APPEND,
            CapsuleRequest::Read { .. } => TAG_READ,
            CapsuleRequest::ReadRange { .. } => TAG_READ_RANGE,
            CapsuleRequest::Latest => TAG_LATEST,
            CapsuleRequest::Subscribe { .. } => TAG_SUBSCRIBE,
            CapsuleRequest::Unsubscribe => TAG_UNSUBSCRIBE,
            CapsuleRequest::GetMetadata => TAG_GET_METADATA,
            CapsuleRequest::Sync { .. } => TAG_SYNC,
            CapsuleRequest::GetReplicas => TAG_GET_REPLICAS,
            CapsuleRequest::SetReplicas { .. } => TAG_SET_REPLICAS,
            CapsuleRequest::GetForks => TAG_GET_FORKS,
            CapsuleRequest::At { .. } => TAG_AT,
        }
    }

    /// `request` for `capsule`, directed to one server (see
    /// [`CapsuleRequest::At`]). A request that is already directed is
    /// re-directed, not nested.
    pub fn at(capsule: Name, request: CapsuleRequest) -> Self {
        let request = match request {
            CapsuleRequest::At { request, .. } => request,
            other => Box::new(other),
        };
        CapsuleRequest::At { capsule, request }
    }

    /// Checks the limits the decoder enforces, so the request will decode.
    pub fn check_limits(&self) -> Result<(), PduError> {
        match self {
            CapsuleRequest::Append { records, .. } => {
                check_records("append records", records, MAX_APPEND_RECORDS)
            }
            CapsuleRequest::ReadRange { from, to } if from > to => Err(PduError::Invalid {
                what: "read range ending before it starts",
            }),
            CapsuleRequest::At { request, .. } => match **request {
                CapsuleRequest::At { .. } => Err(PduError::Invalid {
                    what: "a directed request inside a directed request",
                }),
                ref inner => inner.check_limits(),
            },
            _ => Ok(()),
        }
    }

    /// This request in a Capsule PDU from `src` to `capsule`, with request
    /// id `request_id`.
    pub fn to_pdu(&self, capsule: Name, src: Name, request_id: u64) -> Result<Pdu, PduError> {
        self.check_limits()?;
        Pdu::new(
            PduHeader::new(PduType::Capsule, capsule, src, request_id),
            self.to_bytes(),
        )
    }

    /// Decodes the request in `pdu`: a Capsule PDU without the `RESPONSE` flag.
    pub fn from_pdu(pdu: &Pdu) -> Result<Self, DecodeError> {
        if pdu.header.ptype != PduType::Capsule || pdu.header.flags.contains(Flags::RESPONSE) {
            return Err(DecodeError::Invalid {
                what: "capsule request outside a capsule request pdu",
            });
        }
        Self::decode(pdu.payload.clone())
    }
}

impl Encode for CapsuleRequest {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.tag());
        match self {
            CapsuleRequest::Create { metadata, adcert } => {
                metadata.encode(buf);
                adcert.encode(buf);
            }
            CapsuleRequest::Append { records, heartbeat } => {
                put::vec_u16(buf, records);
                heartbeat.encode(buf);
            }
            CapsuleRequest::Read { seqno } => buf.put_u64(*seqno),
            CapsuleRequest::ReadRange { from, to } => {
                buf.put_u64(*from);
                buf.put_u64(*to);
            }
            CapsuleRequest::Subscribe { from } => buf.put_u64(*from),
            CapsuleRequest::Sync { tail, hash } => {
                buf.put_u64(*tail);
                hash.encode(buf);
            }
            CapsuleRequest::SetReplicas { set } => set.encode(buf),
            CapsuleRequest::At { capsule, request } => {
                capsule.encode(buf);
                request.encode(buf);
            }
            CapsuleRequest::Latest
            | CapsuleRequest::Unsubscribe
            | CapsuleRequest::GetMetadata
            | CapsuleRequest::GetReplicas
            | CapsuleRequest::GetForks => {}
        }
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            CapsuleRequest::Create { metadata, adcert } => {
                metadata.encoded_len() + adcert.encoded_len()
            }
            CapsuleRequest::Append { records, heartbeat } => {
                put::vec_len(2, records) + heartbeat.encoded_len()
            }
            CapsuleRequest::Read { .. } | CapsuleRequest::Subscribe { .. } => 8,
            CapsuleRequest::ReadRange { .. } => 16,
            CapsuleRequest::Sync { hash, .. } => 8 + hash.encoded_len(),
            CapsuleRequest::SetReplicas { set } => set.encoded_len(),
            CapsuleRequest::At { capsule, request } => {
                capsule.encoded_len() + request.encoded_len()
            }
            CapsuleRequest::Latest
            | CapsuleRequest::Unsubscribe
            | CapsuleRequest::GetMetadata
            | CapsuleRequest::GetReplicas
            | CapsuleRequest::GetForks => 0,
        }
    }
}

impl Decode for CapsuleRequest {
    const WHAT: &'static str = "capsule request";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        decode_request(r, true)
    }
}

/// Decodes a request; an `At` only if `directed` may be one (so nesting is
/// refused before it recurses).
fn decode_request(r: &mut Reader, directed: bool) -> Result<CapsuleRequest, DecodeError> {
    {
        Ok(match r.u8("capsule request type")? {
            TAG_CREATE => CapsuleRequest::Create {
                metadata: Metadata::decode_from(r)?,
                adcert: AdCert::decode_from(r)?,
            },
            TAG_APPEND => CapsuleRequest::Append {
                records: read_records(r, MAX_APPEND_RECORDS)?,
                heartbeat: Heartbeat::decode_from(r)?,
            },
            TAG_READ => CapsuleRequest::Read {
                seqno: r.u64("read seqno")?,
            },
            TAG_READ_RANGE => {
                let from = r.u64("read range from")?;
                let to = r.u64("read range to")?;
                if from > to {
                    return Err(DecodeError::Invalid {
                        what: "read range ending before it starts",
                    });
                }
                CapsuleRequest::ReadRange { from, to }
            }
            TAG_LATEST => CapsuleRequest::Latest,
            TAG_SUBSCRIBE => CapsuleRequest::Subscribe {
                from: r.u64("subscribe from")?,
            },
            TAG_UNSUBSCRIBE => CapsuleRequest::Unsubscribe,
            TAG_GET_METADATA => CapsuleRequest::GetMetadata,
            TAG_SYNC => CapsuleRequest::Sync {
                tail: r.u64("sync tail")?,
                hash: RecordHash::decode_from(r)?,
            },
            TAG_GET_REPLICAS => CapsuleRequest::GetReplicas,
            TAG_SET_REPLICAS => CapsuleRequest::SetReplicas {
                set: ReplicaSet::decode_from(r)?,
            },
            TAG_GET_FORKS => CapsuleRequest::GetForks,
            TAG_AT if !directed => {
                return Err(DecodeError::Invalid {
                    what: "a directed request inside a directed request",
                });
            }
            TAG_AT => {
                let capsule = Name::decode_from(r)?;
                let request = decode_request(r, false)?;
                CapsuleRequest::At {
                    capsule,
                    request: Box::new(request),
                }
            }
            v => {
                return Err(DecodeError::UnknownValue {
                    what: "capsule request type",
                    value: v.into(),
                });
            }
        })
    }
}

impl CapsuleResponse {
    /// An `Error` with `message` cut to [`MAX_ERROR_MESSAGE_LEN`] bytes.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        let len = bounded_str(&message, MAX_ERROR_MESSAGE_LEN).len();
        message.truncate(len);
        CapsuleResponse::Error { code, message }
    }

    fn tag(&self) -> u8 {
        match self {
            CapsuleResponse::Created => TAG_CREATED,
            CapsuleResponse::Appended { .. } => TAG_APPENDED,
            CapsuleResponse::Records { .. } => TAG_RECORDS,
            CapsuleResponse::Metadata { .. } => TAG_METADATA,
            CapsuleResponse::Event { .. } => TAG_EVENT,
            CapsuleResponse::Error { .. } => TAG_ERROR,
            CapsuleResponse::Subscribed { .. } => TAG_SUBSCRIBED,
            CapsuleResponse::Unsubscribed => TAG_UNSUBSCRIBED,
            CapsuleResponse::Synced { .. } => TAG_SYNCED,
            CapsuleResponse::Replicas { .. } => TAG_REPLICAS,
            CapsuleResponse::Forks { .. } => TAG_FORKS,
        }
    }

    /// Checks the limits the decoder enforces, so the response will decode.
    pub fn check_limits(&self) -> Result<(), PduError> {
        match self {
            CapsuleResponse::Records { records, .. } => {
                check_records("response records", records, MAX_RESPONSE_RECORDS)
            }
            CapsuleResponse::Event { records, .. } => {
                check_records("event records", records, MAX_RESPONSE_RECORDS)
            }
            CapsuleResponse::Forks { evidence } => {
                PduError::check("fork evidence", evidence.len(), MAX_FORKS_PER_RESPONSE)
            }
            _ => Ok(()),
        }
    }

    /// This response in a Capsule PDU with the `RESPONSE` flag.
    pub fn to_pdu(&self, dst: Name, src: Name, request_id: u64) -> Result<Pdu, PduError> {
        self.check_limits()?;
        Pdu::new(
            PduHeader::new(PduType::Capsule, dst, src, request_id).with_flags(Flags::RESPONSE),
            self.to_bytes(),
        )
    }

    /// This response to the request whose PDU header is `request`: back to
    /// its source, from the capsule it was sent to, with its request id.
    pub fn reply_to(&self, request: &PduHeader) -> Result<Pdu, PduError> {
        self.to_pdu(request.src, request.dst, request.seq)
    }

    /// Decodes the response in `pdu`: a Capsule PDU with the `RESPONSE` flag.
    pub fn from_pdu(pdu: &Pdu) -> Result<Self, DecodeError> {
        if pdu.header.ptype != PduType::Capsule || !pdu.header.flags.contains(Flags::RESPONSE) {
            return Err(DecodeError::Invalid {
                what: "capsule response outside a capsule response pdu",
            });
        }
        Self::decode(pdu.payload.clone())
    }
}

/// `records` (contiguous, oldest first) and the `proof` of the last, as they
/// travel down `capsule`'s delivery tree: a [`PduType::Publish`] PDU from
/// the capsule to the capsule, whose payload is the `Event` response a
/// unicast subscriber gets, so a subscriber verifies both the same way.
/// Its `seq` is the last record's seqno (for logs and counters only).
pub fn publish_pdu(capsule: Name, records: Vec<Record>, proof: Proof) -> Result<Pdu, PduError> {
    let last = records.last().map_or(0, Record::seqno);
    let event = CapsuleResponse::Event { records, proof };
    event.check_limits()?;
    Pdu::new(
        PduHeader::new(PduType::Publish, capsule, capsule, last),
        event.to_bytes(),
    )
}

/// The records and proof of a Publish PDU (see [`publish_pdu`]). Nothing is
/// verified here: the caller checks the proof against the capsule's
/// metadata.
pub fn decode_publish(pdu: &Pdu) -> Result<(Vec<Record>, Proof), DecodeError> {
    if pdu.header.ptype != PduType::Publish || pdu.header.src != pdu.header.dst {
        return Err(DecodeError::Invalid {
            what: "publish outside a publish pdu from its capsule",
        });
    }
    match CapsuleResponse::decode(pdu.payload.clone())? {
        CapsuleResponse::Event { records, proof } => Ok((records, proof)),
        _ => Err(DecodeError::Invalid {
            what: "publish pdu without an event",
        }),
    }
}

impl Encode for CapsuleResponse {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.tag());
        match self {
            CapsuleResponse::Appended { tail }
            | CapsuleResponse::Subscribed { tail }
            | CapsuleResponse::Synced { tail } => {
                buf.put_u64(*tail);
            }
            CapsuleResponse::Replicas { set } => match set {
                Some(set) => {
                    buf.put_u8(1);
                    set.encode(buf);
                }
                None => buf.put_u8(0),
            },
            CapsuleResponse::Forks { evidence } => put::vec_u16(buf, evidence),
            CapsuleResponse::Records { records, proof }
            | CapsuleResponse::Event { records, proof } => {
                put::vec_u16(buf, records);
                proof.encode(buf);
            }
            CapsuleResponse::Metadata { metadata } => metadata.encode(buf),
            CapsuleResponse::Error { code, message } => {
                buf.put_u16(code.code());
                put::bytes_u16(buf, bounded_str(message, MAX_ERROR_MESSAGE_LEN).as_bytes());
            }
            CapsuleResponse::Created | CapsuleResponse::Unsubscribed => {}
        }
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            CapsuleResponse::Appended { .. }
            | CapsuleResponse::Subscribed { .. }
            | CapsuleResponse::Synced { .. } => 8,
            CapsuleResponse::Replicas { set } => 1 + set.as_ref().map_or(0, Encode::encoded_len),
            CapsuleResponse::Forks { evidence } => put::vec_len(2, evidence),
            CapsuleResponse::Records { records, proof }
            | CapsuleResponse::Event { records, proof } => {
                put::vec_len(2, records) + proof.encoded_len()
            }
            CapsuleResponse::Metadata { metadata } => metadata.encoded_len(),
            CapsuleResponse::Error { message, .. } => {
                2 + 2 + bounded_str(message, MAX_ERROR_MESSAGE_LEN).len()
            }
            CapsuleResponse::Created | CapsuleResponse::Unsubscribed => 0,
        }
    }
}

impl Decode for CapsuleResponse {
    const WHAT: &'static str = "capsule response";
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match r.u8("capsule response type")? {
            TAG_CREATED => CapsuleResponse::Created,
            TAG_APPENDED => CapsuleResponse::Appended {
                tail: r.u64("appended tail")?,
            },
            TAG_RECORDS => CapsuleResponse::Records {
                records: read_records(r, MAX_RESPONSE_RECORDS)?,
                proof: Proof::decode_from(r)?,
            },
            TAG_METADATA => CapsuleResponse::Metadata {
                metadata: Metadata::decode_from(r)?,
            },
            TAG_EVENT => CapsuleResponse::Event {
                records: read_records(r, MAX_RESPONSE_RECORDS)?,
                proof: Proof::decode_from(r)?,
            },
            TAG_ERROR => {
                let code = ErrorCode::from_code(r.u16("capsule error code")?)?;
                let raw: Bytes = r.bytes_u16(MAX_ERROR_MESSAGE_LEN, "capsule error message")?;
                let message =
                    String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::Invalid {
                        what: "capsule error message",
                    })?;
                CapsuleResponse::Error { code, message }
            }
            TAG_SUBSCRIBED => CapsuleResponse::Subscribed {
                tail: r.u64("subscribed tail")?,
            },
            TAG_UNSUBSCRIBED => CapsuleResponse::Unsubscribed,
            TAG_SYNCED => CapsuleResponse::Synced {
                tail: r.u64("synced tail")?,
            },
            TAG_REPLICAS => CapsuleResponse::Replicas {
                set: match r.u8("replica set present")? {
                    0 => None,
                    1 => Some(ReplicaSet::decode_from(r)?),
                    v => {
                        return Err(DecodeError::UnknownValue {
                            what: "replica set present",
                            value: v.into(),
                        });
                    }
                },
            },
            TAG_FORKS => CapsuleResponse::Forks {
                evidence: r.vec_u16(MAX_FORKS_PER_RESPONSE)?,
            },
            v => {
                return Err(DecodeError::UnknownValue {
                    what: "capsule response type",
                    value: v.into(),
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainState;
    use crate::control::tests::{arb_adcert, arb_metadata, capsule_md};
    use crate::pdu::tests::arb_name;
    use gdp_certs::{SecretKey, Timestamp};
    use proptest::prelude::*;

    /// `n` valid records of a capsule written by the key from seed 1, and a
    /// proof of the last one built from the heartbeat over it.
    fn chain(n: usize, payload: &[u8]) -> (Metadata, Vec<Record>, Heartbeat, Proof) {
        let md = capsule_md(1, "log", vec![]);
        let key = SecretKey::from_seed(&[1; 32]);
        let mut state = ChainState::new(md.name());
        let records: Vec<Record> = (0..n)
            .map(|i| {
                state
                    .next_record(Bytes::copy_from_slice(payload), Timestamp(i as u64))
                    .expect("within limits")
            })
            .collect();
        let last = records.last().expect("n >= 1");
        let hb = Heartbeat::sign(&key, last);
        let proof = Proof::build(hb.clone(), last.seqno(), |s| {
            records
                .get(usize::try_from(s).ok()? - 1)
                .map(Record::header)
        })
        .expect("all headers at hand");
        (md, records, hb, proof)
    }

    fn arb_chain() -> impl Strategy<Value = (Metadata, Vec<Record>, Heartbeat, Proof)> {
        (1usize..6, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(n, payload)| chain(n, &payload))
    }

    fn arb_request() -> impl Strategy<Value = CapsuleRequest> {
        prop_oneof![
            (arb_metadata(), arb_adcert())
                .prop_map(|(metadata, adcert)| CapsuleRequest::Create { metadata, adcert }),
            arb_chain().prop_map(|(_, records, heartbeat, _)| CapsuleRequest::Append {
                records,
                heartbeat
            }),
            any::<u64>().prop_map(|seqno| CapsuleRequest::Read { seqno }),
            (any::<u64>(), any::<u64>()).prop_map(|(a, b)| CapsuleRequest::ReadRange {
                from: a.min(b),
                to: a.max(b)
            }),
            Just(CapsuleRequest::Latest),
            any::<u64>().prop_map(|from| CapsuleRequest::Subscribe { from }),
            Just(CapsuleRequest::Unsubscribe),
            Just(CapsuleRequest::GetMetadata),
            (any::<u64>(), any::<[u8; 32]>()).prop_map(|(tail, h)| CapsuleRequest::Sync {
                tail,
                hash: RecordHash(h)
            }),
            Just(CapsuleRequest::GetReplicas),
            arb_replica_set().prop_map(|set| CapsuleRequest::SetReplicas { set }),
            Just(CapsuleRequest::GetForks),
        ]
    }

    fn arb_replica_set() -> impl Strategy<Value = ReplicaSet> {
        (
            arb_name(),
            any::<u64>(),
            proptest::collection::vec(arb_name(), 1..5),
        )
            .prop_map(|(capsule, version, servers)| {
                let owner = SecretKey::from_seed(&[3; 32]);
                ReplicaSet::issue(&owner, capsule, version, servers).expect("1..=16 servers")
            })
    }

    /// Any request, directed to one server or not.
    fn arb_any_request() -> impl Strategy<Value = CapsuleRequest> {
        prop_oneof![
            arb_request(),
            (arb_name(), arb_request()).prop_map(|(c, r)| CapsuleRequest::at(c, r)),
        ]
    }

    fn arb_response() -> impl Strategy<Value = CapsuleResponse> {
        prop_oneof![
            Just(CapsuleResponse::Created),
            any::<u64>().prop_map(|tail| CapsuleResponse::Appended { tail }),
            arb_chain()
                .prop_map(|(_, records, _, proof)| CapsuleResponse::Records { records, proof }),
            arb_metadata().prop_map(|metadata| CapsuleResponse::Metadata { metadata }),
            arb_chain()
                .prop_map(|(_, records, _, proof)| CapsuleResponse::Event { records, proof }),
            (prop::sample::select(ErrorCode::ALL.to_vec()), ".{0,100}")
                .prop_map(|(code, m)| CapsuleResponse::error(code, m)),
            any::<u64>().prop_map(|tail| CapsuleResponse::Subscribed { tail }),
            Just(CapsuleResponse::Unsubscribed),
            any::<u64>().prop_map(|tail| CapsuleResponse::Synced { tail }),
            proptest::option::of(arb_replica_set())
                .prop_map(|set| CapsuleResponse::Replicas { set }),
            proptest::collection::vec(arb_chain(), 0..3).prop_map(|chains| {
                let evidence = chains
                    .into_iter()
                    .map(|(_, records, _, proof)| ForkEvidence {
                        record: records.last().expect("n >= 1").clone(),
                        proof,
                    })
                    .collect();
                CapsuleResponse::Forks { evidence }
            }),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(req in arb_any_request(), capsule in arb_name(), src in arb_name(), id in any::<u64>()) {
            let bytes = req.to_bytes();
            prop_assert_eq!(bytes.len(), req.encoded_len());
            prop_assert_eq!(CapsuleRequest::decode(bytes), Ok(req.clone()));
            let pdu = req.to_pdu(capsule, src, id).expect("within limits");
            prop_assert_eq!(pdu.header.dst, capsule);
            prop_assert_eq!(pdu.header.seq, id);
            prop_assert_eq!(CapsuleRequest::from_pdu(&pdu), Ok(req));
        }

        #[test]
        fn responses_round_trip(resp in arb_response(), client in arb_name(), capsule in arb_name(), id in any::<u64>()) {
            let bytes = resp.to_bytes();
            prop_assert_eq!(bytes.len(), resp.encoded_len());
            prop_assert_eq!(CapsuleResponse::decode(bytes), Ok(resp.clone()));
            let request = PduHeader::new(PduType::Capsule, capsule, client, id);
            let pdu = resp.reply_to(&request).expect("within limits");
            prop_assert_eq!((pdu.header.dst, pdu.header.src, pdu.header.seq), (client, capsule, id));
            prop_assert!(pdu.header.flags.contains(Flags::RESPONSE));
            prop_assert_eq!(CapsuleResponse::from_pdu(&pdu), Ok(resp));
        }

        #[test]
        fn capsule_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = CapsuleRequest::decode(bytes.clone());
            let _ = CapsuleResponse::decode(bytes);
        }

        #[test]
        fn mutated_messages_never_panic(
            resp in arb_response(),
            flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut b = resp.to_bytes().to_vec();
            for f in &flips {
                let i = f.index(b.len() * 8);
                b[i / 8] ^= 1 << (i % 8);
            }
            let _ = CapsuleResponse::decode(b.clone());
            b.truncate(cut.index(b.len() + 1));
            let _ = CapsuleResponse::decode(b);
        }
    }

    #[test]
    fn nested_directed_requests_are_refused() {
        let capsule = Name::from_bytes([7; 32]);
        let inner = CapsuleRequest::at(capsule, CapsuleRequest::Latest);
        assert_eq!(CapsuleRequest::at(capsule, inner.clone()), inner);
        let nested = CapsuleRequest::At {
            capsule,
            request: Box::new(inner),
        };
        assert!(nested.check_limits().is_err());
        let mut bytes = vec![TAG_AT];
        bytes.extend_from_slice(&[7; 32]);
        bytes.push(TAG_AT);
        bytes.extend_from_slice(&[7; 32]);
        bytes.push(TAG_LATEST);
        assert_eq!(
            CapsuleRequest::decode(bytes),
            Err(DecodeError::Invalid {
                what: "a directed request inside a directed request"
            })
        );
    }

    #[test]
    fn decoded_records_response_verifies() {
        let (md, records, _, proof) = chain(5, b"x");
        let resp = CapsuleResponse::Records { records, proof };
        let CapsuleResponse::Records { records, proof } =
            CapsuleResponse::decode(resp.to_bytes()).expect("round trips")
        else {
            panic!("decodes to the same variant");
        };
        let hb = proof.verify_range(&md, &records).expect("valid chain");
        assert_eq!(hb.seqno(), 5);
    }

    #[test]
    fn unknown_types_and_codes_are_rejected() {
        assert_eq!(
            CapsuleRequest::decode(Bytes::from_static(&[0x81])),
            Err(DecodeError::UnknownValue {
                what: "capsule request type",
                value: 0x81
            })
        );
        assert_eq!(
            CapsuleResponse::decode(Bytes::from_static(&[0x01])),
            Err(DecodeError::UnknownValue {
                what: "capsule response type",
                value: 0x01
            })
        );
        assert_eq!(
            CapsuleResponse::decode(Bytes::from_static(&[TAG_ERROR, 0, 99, 0, 0])),
            Err(DecodeError::UnknownValue {
                what: "capsule error code",
                value: 99
            })
        );
    }

    #[test]
    fn truncated_and_trailing_are_rejected() {
        let b = CapsuleRequest::ReadRange { from: 1, to: 2 }.to_bytes();
        assert_eq!(
            CapsuleRequest::decode(b.slice(..10)),
            Err(DecodeError::Truncated {
                what: "read range to"
            })
        );
        let mut long = b.to_vec();
        long.push(7);
        assert_eq!(
            CapsuleRequest::decode(long),
            Err(DecodeError::TrailingBytes {
                what: "capsule request",
                count: 1
            })
        );
        let (_, records, hb, _) = chain(2, b"abc");
        let append = CapsuleRequest::Append {
            records,
            heartbeat: hb,
        }
        .to_bytes();
        assert!(matches!(
            CapsuleRequest::decode(append.slice(..append.len() - 1)),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn bounds_are_enforced() {
        let mut b = vec![TAG_APPEND];
        b.extend_from_slice(&(MAX_APPEND_RECORDS as u16 + 1).to_be_bytes());
        assert_eq!(
            CapsuleRequest::decode(b),
            Err(DecodeError::TooLong {
                what: "record",
                len: MAX_APPEND_RECORDS + 1,
                max: MAX_APPEND_RECORDS
            })
        );
        let mut b = vec![TAG_APPEND, 0, 0];
        b.extend_from_slice(&chain(1, b"").2.to_bytes());
        assert_eq!(
            CapsuleRequest::decode(b),
            Err(DecodeError::Invalid {
                what: "empty record list"
            })
        );
        let mut b = vec![TAG_ERROR, 0, 1];
        b.extend_from_slice(&(MAX_ERROR_MESSAGE_LEN as u16 + 1).to_be_bytes());
        assert_eq!(
            CapsuleResponse::decode(b),
            Err(DecodeError::TooLong {
                what: "capsule error message",
                len: MAX_ERROR_MESSAGE_LEN + 1,
                max: MAX_ERROR_MESSAGE_LEN
            })
        );
        let mut b = vec![TAG_READ_RANGE];
        b.extend_from_slice(&5u64.to_be_bytes());
        b.extend_from_slice(&4u64.to_be_bytes());
        assert_eq!(
            CapsuleRequest::decode(b),
            Err(DecodeError::Invalid {
                what: "read range ending before it starts"
            })
        );
        let (_, records, hb, _) = chain(1, b"");
        let too_many = CapsuleRequest::Append {
            records: vec![records[0].clone(); MAX_APPEND_RECORDS + 1],
            heartbeat: hb,
        };
        assert_eq!(
            too_many.to_pdu(Name::ZERO, Name::ZERO, 0),
            Err(PduError::OverLimit {
                what: "append records",
                len: MAX_APPEND_RECORDS + 1,
                max: MAX_APPEND_RECORDS
            })
        );
    }

    #[test]
    fn oversized_response_does_not_fit_a_pdu() {
        let payload = vec![0u8; crate::record::MAX_RECORD_PAYLOAD];
        let (_, records, _, proof) = chain(5, &payload);
        let resp = CapsuleResponse::Records { records, proof };
        assert!(matches!(
            resp.to_pdu(Name::ZERO, Name::ZERO, 1),
            Err(PduError::PayloadTooLong { .. })
        ));
    }

    #[test]
    fn requests_and_responses_are_not_confused() {
        let req = CapsuleRequest::Latest
            .to_pdu(Name::ZERO, Name::ZERO, 1)
            .expect("small");
        assert_eq!(
            CapsuleResponse::from_pdu(&req),
            Err(DecodeError::Invalid {
                what: "capsule response outside a capsule response pdu"
            })
        );
        let resp = CapsuleResponse::Created
            .to_pdu(Name::ZERO, Name::ZERO, 1)
            .expect("small");
        assert_eq!(
            CapsuleRequest::from_pdu(&resp),
            Err(DecodeError::Invalid {
                what: "capsule request outside a capsule request pdu"
            })
        );
    }

    #[test]
    fn error_codes_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c.code()), Ok(c));
        }
        assert!(ErrorCode::RateLimited.is_retryable());
        assert!(!ErrorCode::Fork.is_retryable());
        let long = CapsuleResponse::error(ErrorCode::Internal, "ü".repeat(600));
        let CapsuleResponse::Error { message, .. } = &long else {
            panic!("constructor builds Error");
        };
        assert_eq!(message.len(), MAX_ERROR_MESSAGE_LEN);
        assert_eq!(CapsuleResponse::decode(long.to_bytes()), Ok(long.clone()));
    }

    #[test]
    fn publish_round_trips_and_is_told_apart() {
        let (md, records, _, proof) = chain(3, b"tree");
        let capsule = md.name();
        let pdu = publish_pdu(capsule, records.clone(), proof.clone()).expect("small");
        assert_eq!(pdu.header.ptype, PduType::Publish);
        assert_eq!(
            (pdu.header.dst, pdu.header.src, pdu.header.seq),
            (capsule, capsule, 3)
        );
        let wire = Pdu::decode(pdu.to_bytes()).expect("decodes");
        assert_eq!(decode_publish(&wire), Ok((records.clone(), proof.clone())));
        let mut forged = wire.clone();
        forged.header.src = Name::ZERO;
        assert!(decode_publish(&forged).is_err());
        let reply = CapsuleResponse::Event { records, proof }
            .to_pdu(capsule, capsule, 1)
            .expect("small");
        assert!(decode_publish(&reply).is_err());
        let mut created = wire;
        created.payload = CapsuleResponse::Created.to_bytes();
        assert_eq!(
            decode_publish(&created),
            Err(DecodeError::Invalid {
                what: "publish pdu without an event"
            })
        );
    }
}
