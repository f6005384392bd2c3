//! The bodies of GDP's fuzz targets, one per decoder.
//!
//! Each function takes arbitrary bytes and must never panic except on a real
//! bug. Decoders must accept only canonical encodings, so whatever decodes is
//! encoded again and compared with the input: a decoder that accepts two
//! spellings of one value would let a signed structure be re-spelled.
//!
//! The libFuzzer binaries in `fuzz_targets/` call these functions (build them
//! with `cargo fuzz run <target> --features libfuzzer`), and
//! `tests/corpus.rs` replays every committed input in `corpus/<target>/`
//! through them on every test run, so a crash once found stays fixed.

use bytes::{Bytes, BytesMut};
use gdp_certs::Timestamp;
use gdp_certs::cert::{AdCert, DomainCert, ReplicaSet, RouteRecord, RtCert};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Metadata, Name};
use gdp_proto::capsule::{CapsuleRequest, CapsuleResponse};
use gdp_proto::control::ControlMessage;
use gdp_proto::frame::{FrameDecoder, FrameError, LabelEncoder, RunDecoder, decode_datagram};
use gdp_proto::pdu::{Pdu, PduHeader, PduType, peek_header, peek_pdu_len};
use gdp_proto::proof::{Heartbeat, Proof};
use gdp_proto::record::{Record, RecordHeader};
use gdp_seal::{ContentKey, Envelope, KeyRecord, Keyring};

/// Names of every target, matching the `[[bin]]` names and corpus folders.
pub const TARGETS: &[&str] = &[
    "pdu", "frames", "labels", "control", "capsule", "certs", "records", "proof", "envelope",
    "keyring", "store",
];

/// Runs the target called `name` on `data`. Returns false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "pdu" => pdu(data),
        "frames" => frames(data),
        "labels" => labels(data),
        "control" => control(data),
        "capsule" => capsule(data),
        "certs" => certs(data),
        "records" => records(data),
        "proof" => proof(data),
        "envelope" => envelope(data),
        "keyring" => keyring(data),
        "store" => store(data),
        _ => return false,
    }
    true
}

/// Decodes `data` as `T`; if that succeeds, the value must encode back to
/// exactly `data` and report the right `encoded_len`.
fn canonical<T: Decode + Encode>(data: &[u8]) -> Option<T> {
    let v = T::decode(Bytes::copy_from_slice(data)).ok()?;
    assert_eq!(
        v.encoded_len(),
        data.len(),
        "{}: encoded_len differs",
        T::WHAT
    );
    assert_eq!(
        &v.to_bytes()[..],
        data,
        "{}: non-canonical encoding accepted",
        T::WHAT
    );
    Some(v)
}

/// PDUs: the allocation-free header peek agrees with the full decoder, and
/// whole PDUs round-trip.
pub fn pdu(data: &[u8]) {
    let peeked = peek_header(data);
    assert_eq!(
        peek_pdu_len(data),
        peeked.as_ref().map(|h| h.pdu_len()).map_err(|e| *e),
        "peek_pdu_len disagrees with peek_header"
    );
    if let Some(h) = canonical::<PduHeader>(data.get(..gdp_proto::pdu::HEADER_LEN).unwrap_or(data))
    {
        assert_eq!(
            peeked.as_ref().ok(),
            Some(&h),
            "peek_header disagrees with decode"
        );
    }
    canonical::<Pdu>(data);
    let _ = decode_datagram(Bytes::copy_from_slice(data));
}

/// Link frames: the input, cut into chunks at boundaries taken from its
/// first bytes, yields the same PDUs as when pushed whole; and a
/// [`RunDecoder`] (what a link's reader uses) fed the same chunks, its runs
/// taken at points the input picks, yields the same PDUs and the same
/// error.
pub fn frames(data: &[u8]) {
    runs(data);
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let whole = drain(&mut FrameDecoder::new(), &[rest]);
    let step = usize::from(cut).max(1);
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let chunked = drain(&mut FrameDecoder::new(), &chunks);
    assert_eq!(whole, chunked, "chunking changed the decoded PDUs");
}

/// The [`RunDecoder`] half of [`frames`].
fn runs(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1);
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let mut dec = FrameDecoder::new();
    let (frames, frame_err) = drain(&mut dec, &chunks);
    let frame_err = frame_err.or(dec.finish().err());
    let (pdus, run_err) = drain_runs(RunDecoder::new(), &chunks, |i| {
        rest.get(i).is_some_and(|b| b & 1 == 1)
    });
    assert_eq!(pdus, frames, "the run decoder yields other pdus");
    assert_eq!(run_err, frame_err, "the run decoder fails otherwise");
}

/// The PDUs `dec` yields for `chunks`, taking its runs after the pushes
/// `take_after` picks (as a link reader does after each read) and at the
/// end, and the error that stopped it (the stream's end included).
fn drain_runs(
    mut dec: RunDecoder,
    chunks: &[&[u8]],
    take_after: impl Fn(usize) -> bool,
) -> (Vec<Pdu>, Option<FrameError>) {
    let mut pdus = Vec::new();
    let mut take = |dec: &mut RunDecoder| {
        if let Some((mut run, count)) = dec.take_run() {
            let mut n = 0;
            while !run.is_empty() {
                let len = peek_header(&run).expect("a run holds whole pdus").pdu_len();
                pdus.push(Pdu::decode(run.split_to(len)).expect("a run holds valid pdus"));
                n += 1;
            }
            assert_eq!(n, count, "a run's count is its pdus");
        }
    };
    let mut err = None;
    for (i, c) in chunks.iter().enumerate() {
        let pushed = dec.push(c);
        if pushed.is_err() || take_after(i) {
            take(&mut dec);
        }
        if let Err(e) = pushed {
            err = Some(e);
            break;
        }
    }
    take(&mut dec);
    let err = err.or(dec.finish().err());
    (pdus, err)
}

/// Compact link frames (`gdp/2`): whatever the input, a labelled
/// [`RunDecoder`] yields the same PDUs and fails the same way however it
/// is cut; and the PDUs the input describes (three bytes each: two names
/// out of eight, so that pairs repeat, and a payload length), written by a
/// [`LabelEncoder`], decode to themselves.
pub fn labels(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1);
    let never = |_| false;
    let whole = drain_runs(RunDecoder::with_labels(), &[rest], never);
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let chunked = drain_runs(RunDecoder::with_labels(), &chunks, |i| i % 2 == 1);
    assert_eq!(whole, chunked, "chunking changed the labelled frames");

    let pdus: Vec<Pdu> = rest
        .chunks_exact(3)
        .map(|b| {
            let header = PduHeader::new(
                PduType::Data,
                Name::from_bytes([b[0] % 8; 32]),
                Name::from_bytes([b[1] % 8; 32]),
                u64::from(b[2]),
            );
            Pdu::new(header, Bytes::from(vec![b[2]; usize::from(b[2])])).expect("short payload")
        })
        .collect();
    let mut enc = LabelEncoder::new();
    let mut wire = BytesMut::new();
    for p in &pdus {
        enc.push_pdus(&p.to_bytes(), &mut wire);
    }
    let chunks: Vec<&[u8]> = wire.chunks(step).collect();
    assert_eq!(
        drain_runs(RunDecoder::with_labels(), &chunks, never),
        (pdus, None),
        "labelled frames do not round-trip"
    );
}

/// The PDUs `dec` yields for `chunks`, and the error that stopped it.
fn drain(dec: &mut FrameDecoder, chunks: &[&[u8]]) -> (Vec<Pdu>, Option<FrameError>) {
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = dec.push(Bytes::copy_from_slice(c)) {
            return (out, Some(e));
        }
        loop {
            match dec.next_pdu() {
                Ok(Some(p)) => out.push(p),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// Control messages (attach, advertise, withdraw, NAK, subscriptions).
pub fn control(data: &[u8]) {
    canonical::<ControlMessage>(data);
}

/// Capsule requests and responses.
pub fn capsule(data: &[u8]) {
    canonical::<CapsuleRequest>(data);
    canonical::<CapsuleResponse>(data);
    publish(data);
}

/// The same bytes as the payload of a Publish PDU: whatever decodes is
/// offered to a subscriber's follower, which must refuse it cleanly (the
/// proof cannot verify against a capsule the input does not control).
fn publish(data: &[u8]) {
    let md = any_metadata();
    let header = gdp_proto::PduHeader::new(gdp_proto::PduType::Publish, md.name(), md.name(), 0);
    let Ok(pdu) = gdp_proto::Pdu::new(header, bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    if let Ok((records, proof)) = gdp_proto::capsule::decode_publish(&pdu) {
        let mut follower = gdp_proto::follow::Follower::new(md, 1, 16);
        assert!(
            follower.offer(records, &proof).is_err(),
            "a record nobody signed was accepted"
        );
        assert_eq!(follower.pop(), Ok(None));
    }
}

/// Metadata and certificates. The first byte picks the structure; whatever
/// decodes is also run through its verifier, which must fail cleanly.
pub fn certs(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let now = Timestamp::from_secs(1_800_000_000);
    match which % 6 {
        0 => {
            if let Some(md) = canonical::<Metadata>(rest) {
                md.check_name(&md.name())
                    .expect("metadata always hashes to its own name");
            }
        }
        1 => {
            if let Some(c) = canonical::<AdCert>(rest) {
                let _ = c.verify(&any_metadata(), now);
            }
        }
        2 => {
            if let Some(c) = canonical::<RtCert>(rest) {
                let _ = c.verify(&any_metadata(), &Name::ZERO, now);
            }
        }
        3 => {
            if let Some(r) = canonical::<RouteRecord>(rest) {
                let name = r.name();
                let _ = r.verify(&name, now);
            }
        }
        4 => {
            if let Some(c) = canonical::<DomainCert>(rest) {
                let _ = c.verify(&any_metadata(), &[], now);
            }
        }
        _ => {
            if let Some(set) = canonical::<ReplicaSet>(rest) {
                let _ = set.verify(&any_metadata());
            }
        }
    }
}

/// Records, record headers and heartbeats.
pub fn records(data: &[u8]) {
    if let Some(r) = canonical::<Record>(data) {
        assert_eq!(
            r.header().hash(),
            r.hash(),
            "header hash differs from record hash"
        );
    }
    canonical::<RecordHeader>(data);
    if let Some(hb) = canonical::<Heartbeat>(data) {
        let _ = hb.verify(&any_metadata());
    }
}

/// Proofs of membership: whatever decodes is verified against a fixed
/// capsule, which must fail cleanly.
pub fn proof(data: &[u8]) {
    if let Some(p) = canonical::<Proof>(data) {
        let md = any_metadata();
        let _ = p.verify_hash(&md, 1, gdp_proto::record::RecordHash([0; 32]));
    }
}

/// Sealed record envelopes: whatever decodes is opened with a fixed key,
/// which must fail cleanly unless the input was sealed under that key for
/// the capsule and seqno tried (the seed corpus holds such envelopes).
pub fn envelope(data: &[u8]) {
    let parsed = gdp_seal::EnvelopeRef::parse(data);
    let decoded = canonical::<Envelope>(data);
    assert_eq!(
        parsed.ok(),
        decoded.as_ref().map(Envelope::view),
        "reading in place agrees with decoding"
    );
    if let Some(env) = decoded {
        let key = ContentKey::from_bytes(FUZZ_CONTENT_KEY);
        // An opener that keeps the subkey between records must agree with
        // opening each record on its own.
        let mut opener = gdp_seal::Opener::new();
        for seqno in [0, 1] {
            let alone = gdp_seal::open(&key, &Name::ZERO, seqno, &env);
            let mut out = bytes::BytesMut::from(&b"kept"[..]);
            let kept = opener.open_to(&key, &Name::ZERO, seqno, env.view(), &mut out);
            match &alone {
                Ok(plaintext) => {
                    assert_eq!(
                        plaintext.len(),
                        env.plaintext_len(),
                        "an opened envelope has its plaintext's length"
                    );
                    assert_eq!(kept, Ok(()), "the opener opens what opens alone");
                    assert_eq!(&out[4..], &plaintext[..]);
                }
                Err(e) => {
                    assert_eq!(kept.as_ref(), Err(e), "the opener fails as opening alone");
                    assert_eq!(&out[..], b"kept", "a failed opening leaves the buffer");
                }
            }
        }
    }
}

/// The content key the `envelope` target opens envelopes with.
pub const FUZZ_CONTENT_KEY: [u8; 32] = [0x42; 32];

/// Keyring records: whatever decodes is applied to an empty keyring for its
/// capsule, which must accept it only as the start of epoch 1 and otherwise
/// refuse it without changing; a reader without a grant gets no keys.
pub fn keyring(data: &[u8]) {
    let Some(record) = canonical::<KeyRecord>(data) else {
        return;
    };
    let mut fresh = Keyring::new(record.capsule());
    let before = fresh.clone();
    if fresh.apply(&record).is_err() {
        assert_eq!(fresh, before, "a refused record changed the keyring");
    } else {
        assert_eq!(fresh.current_epoch(), Some(1));
        assert_eq!(fresh.readers().len(), record.grants().len());
    }
    // A reader that is not among the grants can never unwrap anything.
    let outsider = gdp_certs::SecretKey::from_seed(&[0xee; 32]);
    if record.grant_for(&outsider.public()).is_none() {
        let keys = fresh
            .keys_for(&outsider)
            .expect("no grants, nothing to unwrap");
        assert!(keys.is_empty());
    }
}

fn any_metadata() -> Metadata {
    let key = gdp_certs::SecretKey::from_seed(&[7; 32]).public();
    Metadata::capsule(key, vec![key], "fuzz", Timestamp(1), vec![])
        .expect("fixed metadata is within limits")
        .with_nonce([0; 16])
}

/// Record runs as a capsule server stores them (a `record_runs` row):
/// `data` is a capsule name (32 bytes), the seqno the row is stored under
/// (`u64`) and the row's value. Whatever reads must be the run's records,
/// consecutive, of that capsule, ending at that seqno, and must encode back
/// to exactly the value.
pub fn store(data: &[u8]) {
    let Some((capsule, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((last, value)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let capsule = Name::from_bytes(*capsule);
    let last = u64::from_be_bytes(*last);
    let Ok(records) = gdp_capsule_server::store::tables::read_run(&capsule, last, value) else {
        return;
    };
    assert_eq!(records.last().map(Record::seqno), Some(last));
    assert!(
        records.windows(2).all(|w| w[1].seqno() == w[0].seqno() + 1),
        "a run's records are consecutive"
    );
    assert!(records.iter().all(|r| *r.capsule() == capsule));
    assert_eq!(
        &gdp_capsule_server::store::tables::run_value(&records)[..],
        value,
        "a run that reads encodes back to exactly its value"
    );
}
