//! Record envelopes: the payload of every record of a confidential capsule.
//!
//! ```text
//! u8    version = 2
//! u8    mode (1 = epoch key, 2 = convergent)
//! u32   epoch (>= 1)
//! [8]   salt
//! mode 2 only:
//!   [48]  the record's convergent key sealed under the epoch key
//!         (32 key bytes and a 16-byte Poly1305 tag)
//! ..    ciphertext and its 16-byte Poly1305 tag (at least 16 bytes: the
//!       plaintext may be empty)
//! ```
//!
//! All integers are big-endian. The envelope runs to the end of the record
//! payload, so the ciphertext has no length prefix.
//!
//! # Epoch mode
//!
//! The plaintext is sealed with XChaCha20-Poly1305 under the epoch's content
//! key. Its 24-byte nonce is not carried whole: it is
//!
//! ```text
//! salt (8) || the capsule name's first 8 bytes || seqno (u64)
//! ```
//!
//! so the envelope carries only the salt, and the record's place supplies
//! the rest, as TLS 1.3 and QUIC build their nonces from a record or packet
//! number. A nonce repeats under one key only if two seals of one seqno of
//! one capsule drew the same salt. A single writer seals each seqno once,
//! and a [`Sealer`] asked to seal a seqno again (a writer that resends
//! after a failure) draws a fresh salt first; so a repeat needs two salts
//! drawn for one seqno to collide, a chance of 2^-64 for each such pair.
//! The 16 bytes of the nonce before the seqno, with the key, derive the
//! cipher's subkey (HChaCha20), so a run of records from one sealer derives
//! it once.
//!
//! The associated data binds the envelope to its place in its capsule:
//!
//! ```text
//! "GDP v1 sealed record" || capsule (32) || seqno (u64) || version || mode || epoch (u32)
//! ```
//!
//! so an envelope copied to another capsule or seqno, or given another
//! version, epoch or mode, no longer opens. A record adds
//! [`EPOCH_OVERHEAD`] bytes to its plaintext.
//!
//! # Convergent mode
//!
//! The record's own key is derived from its plaintext,
//! `kc = blake3::derive_key("GDP v1 2026-12-06 convergent record key", plaintext)`,
//! and the body is sealed under `kc` with an all-zero nonce and the
//! associated data `"GDP v1 convergent body"`. The body is therefore a
//! function of the plaintext alone: identical plaintexts give identical
//! bodies in any capsule, under any epoch, at any seqno, so storage can
//! coalesce them. `kc` itself is sealed under the epoch key with the nonce
//! and the associated data of epoch mode, so only readers of the epoch can
//! find it. Opening checks that the plaintext derives `kc` again. A record
//! adds [`CONVERGENT_OVERHEAD`] bytes.
//!
//! Convergent encryption reveals which records are equal, and anyone who can
//! guess a plaintext exactly can confirm the guess against a body without any
//! key. Use it only for content whose equality may be public and which has
//! too much entropy to be guessed.
//!
//! # Version 1
//!
//! The first envelopes carried the whole 24-byte nonce in place of the salt
//! (24 random bytes, or 16 random bytes and a count of the records sealed).
//! They are still decoded and opened, with the version byte 1 in their
//! associated data; nothing writes them any more.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use gdp_certs::Name;
use gdp_certs::codec::{Decode, DecodeError, Encode, Reader};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::aead::{self, Subkey};
use crate::error::SealError;
use crate::key::ContentKey;

/// The envelope version this crate writes.
pub const ENVELOPE_VERSION: u8 = 2;
/// The first envelope version, which carried the whole nonce; still read.
pub const ENVELOPE_VERSION_1: u8 = 1;
/// Length of the salt field.
pub const SALT_LEN: usize = 8;
/// Length of a version 1 envelope's nonce field.
pub const V1_NONCE_LEN: usize = aead::NONCE_LEN;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Length of a convergent record's key sealed under the epoch key.
pub const WRAPPED_RECORD_KEY_LEN: usize = 32 + TAG_LEN;
/// Length of the fixed header: version, mode, epoch and salt.
pub const HEADER_LEN: usize = 1 + 1 + 4 + SALT_LEN;
/// Bytes an epoch-mode envelope adds to its plaintext.
pub const EPOCH_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Bytes a convergent envelope adds to its plaintext.
pub const CONVERGENT_OVERHEAD: usize = HEADER_LEN + WRAPPED_RECORD_KEY_LEN + TAG_LEN;

const RECORD_AAD_CONTEXT: &[u8] = b"GDP v1 sealed record";
const CONVERGENT_KEY_CONTEXT: &str = "GDP v1 2026-12-06 convergent record key";
const CONVERGENT_BODY_AAD: &[u8] = b"GDP v1 convergent body";

/// How a record's plaintext is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Directly under the epoch's content key.
    Epoch,
    /// Under a key derived from the plaintext, itself sealed under the epoch
    /// key: identical plaintexts give identical bodies.
    Convergent,
}

impl Mode {
    /// The mode's byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            Mode::Epoch => 1,
            Mode::Convergent => 2,
        }
    }

    /// The mode a wire byte stands for, if any.
    pub fn from_u8(value: u8) -> Option<Mode> {
        match value {
            1 => Some(Mode::Epoch),
            2 => Some(Mode::Convergent),
            _ => None,
        }
    }
}

/// What an envelope carries of its nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceField {
    /// Version 2: the salt; the capsule and the seqno supply the rest.
    Salt([u8; SALT_LEN]),
    /// Version 1: the whole nonce.
    Whole([u8; V1_NONCE_LEN]),
}

impl NonceField {
    /// The envelope version that carries this field.
    pub fn version(&self) -> u8 {
        match self {
            NonceField::Salt(_) => ENVELOPE_VERSION,
            NonceField::Whole(_) => ENVELOPE_VERSION_1,
        }
    }

    /// The field's bytes as carried.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            NonceField::Salt(salt) => salt,
            NonceField::Whole(nonce) => nonce,
        }
    }

    /// The XChaCha20 nonce of the record `seqno` of `capsule`, split into
    /// the prefix that derives the subkey and the tail.
    fn nonce(&self, capsule: &Name, seqno: u64) -> ([u8; aead::PREFIX_LEN], [u8; aead::TAIL_LEN]) {
        match self {
            NonceField::Salt(salt) => (salted_prefix(salt, capsule), seqno.to_be_bytes()),
            NonceField::Whole(nonce) => {
                let (prefix, tail) = aead::split_nonce(nonce);
                (*prefix, *tail)
            }
        }
    }
}

/// The first 16 bytes of a version 2 nonce: the salt and the capsule name's
/// first 8 bytes.
fn salted_prefix(salt: &[u8; SALT_LEN], capsule: &Name) -> [u8; aead::PREFIX_LEN] {
    let mut prefix = [0u8; aead::PREFIX_LEN];
    prefix[..SALT_LEN].copy_from_slice(salt);
    prefix[SALT_LEN..].copy_from_slice(&capsule.as_bytes()[..aead::PREFIX_LEN - SALT_LEN]);
    prefix
}

/// A decoded record envelope (see the [module documentation](self) for the
/// format). Decoding checks the structure only; [`open`] authenticates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    epoch: u32,
    nonce: NonceField,
    wrapped_key: Option<[u8; WRAPPED_RECORD_KEY_LEN]>,
    ciphertext: Bytes,
}

impl Envelope {
    /// The envelope's version: [`ENVELOPE_VERSION`], or
    /// [`ENVELOPE_VERSION_1`] for an envelope written before it.
    pub fn version(&self) -> u8 {
        self.nonce.version()
    }

    /// How the record is sealed.
    pub fn mode(&self) -> Mode {
        self.view().mode()
    }

    /// The epoch whose content key opens the record.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// What the envelope carries of its nonce (of the body in epoch mode,
    /// of the wrapped record key in convergent mode).
    pub fn nonce_field(&self) -> &NonceField {
        &self.nonce
    }

    /// In convergent mode, the record's key sealed under the epoch key.
    pub fn wrapped_key(&self) -> Option<&[u8; WRAPPED_RECORD_KEY_LEN]> {
        self.wrapped_key.as_ref()
    }

    /// The sealed body with its tag. In convergent mode it depends on the
    /// plaintext alone.
    pub fn ciphertext(&self) -> &Bytes {
        &self.ciphertext
    }

    /// The length of the plaintext the envelope holds.
    pub fn plaintext_len(&self) -> usize {
        self.view().plaintext_len()
    }

    /// The envelope as an [`EnvelopeRef`], which is what an [`Opener`]
    /// opens.
    pub fn view(&self) -> EnvelopeRef<'_> {
        EnvelopeRef {
            epoch: self.epoch,
            nonce: self.nonce,
            wrapped_key: self.wrapped_key.as_ref(),
            ciphertext: &self.ciphertext,
        }
    }
}

/// An envelope read in place: the checks of [`Envelope::decode`] on
/// borrowed bytes, for a reader that opens a record's payload where it lies
/// (no handle on the shared payload is made and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeRef<'a> {
    epoch: u32,
    nonce: NonceField,
    wrapped_key: Option<&'a [u8; WRAPPED_RECORD_KEY_LEN]>,
    ciphertext: &'a [u8],
}

impl<'a> EnvelopeRef<'a> {
    /// Reads an envelope from `bytes`; it runs to their end. Fails as
    /// [`Envelope::decode`] does.
    pub fn parse(bytes: &'a [u8]) -> Result<EnvelopeRef<'a>, DecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Truncated {
            what: "sealed record version",
        })?;
        if version != ENVELOPE_VERSION && version != ENVELOPE_VERSION_1 {
            return Err(DecodeError::UnknownValue {
                what: "sealed record version",
                value: version.into(),
            });
        }
        let (&mode, rest) = rest.split_first().ok_or(DecodeError::Truncated {
            what: "sealed record mode",
        })?;
        let mode = Mode::from_u8(mode).ok_or(DecodeError::UnknownValue {
            what: "sealed record mode",
            value: mode.into(),
        })?;
        let (epoch, rest) = split_array::<4>(rest, "sealed record epoch")?;
        let epoch = u32::from_be_bytes(*epoch);
        if epoch == 0 {
            return Err(DecodeError::Invalid {
                what: "sealed record epoch",
            });
        }
        let (nonce, rest) = if version == ENVELOPE_VERSION {
            let (salt, rest) = split_array(rest, "sealed record salt")?;
            (NonceField::Salt(*salt), rest)
        } else {
            let (nonce, rest) = split_array(rest, "sealed record nonce")?;
            (NonceField::Whole(*nonce), rest)
        };
        let (wrapped_key, ciphertext) = match mode {
            Mode::Epoch => (None, rest),
            Mode::Convergent => {
                let (key, rest) = split_array(rest, "sealed record key")?;
                (Some(key), rest)
            }
        };
        if ciphertext.len() < TAG_LEN {
            return Err(DecodeError::Truncated {
                what: "sealed record ciphertext",
            });
        }
        Ok(EnvelopeRef {
            epoch,
            nonce,
            wrapped_key,
            ciphertext,
        })
    }

    /// The envelope's version.
    pub fn version(&self) -> u8 {
        self.nonce.version()
    }

    /// How the record is sealed.
    pub fn mode(&self) -> Mode {
        if self.wrapped_key.is_some() {
            Mode::Convergent
        } else {
            Mode::Epoch
        }
    }

    /// The epoch whose content key opens the record.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The length of the plaintext the envelope holds.
    pub fn plaintext_len(&self) -> usize {
        self.ciphertext.len() - TAG_LEN
    }
}

/// The first `N` bytes of `bytes` and the rest.
fn split_array<'a, const N: usize>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(&'a [u8; N], &'a [u8]), DecodeError> {
    bytes
        .split_first_chunk::<N>()
        .ok_or(DecodeError::Truncated { what })
}

impl Encode for Envelope {
    fn encode(&self, buf: &mut BytesMut) {
        put_header(buf, self.mode(), self.epoch, &self.nonce);
        if let Some(w) = &self.wrapped_key {
            buf.put_slice(w);
        }
        buf.put_slice(&self.ciphertext);
    }

    fn encoded_len(&self) -> usize {
        // The fixed header with this envelope's nonce field for the salt.
        HEADER_LEN - SALT_LEN
            + self.nonce.as_bytes().len()
            + self.wrapped_key.map_or(0, |w| w.len())
            + self.ciphertext.len()
    }
}

impl Decode for Envelope {
    const WHAT: &'static str = "sealed record";

    /// Reads an envelope; it runs to the end of `r`.
    fn decode_from(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut rest = r.take_rest();
        let view = EnvelopeRef::parse(&rest)?;
        let (epoch, nonce, wrapped_key) = (view.epoch, view.nonce, view.wrapped_key.copied());
        rest.advance(rest.len() - view.ciphertext.len());
        Ok(Envelope {
            epoch,
            nonce,
            wrapped_key,
            ciphertext: rest,
        })
    }
}

fn put_header(buf: &mut BytesMut, mode: Mode, epoch: u32, nonce: &NonceField) {
    buf.put_u8(nonce.version());
    buf.put_u8(mode.to_u8());
    buf.put_u32(epoch);
    buf.put_slice(nonce.as_bytes());
}

/// The associated data that binds an envelope to its capsule, seqno,
/// version, epoch and mode.
fn record_aad(capsule: &Name, seqno: u64, version: u8, mode: Mode, epoch: u32) -> [u8; 66] {
    let mut aad = [0u8; RECORD_AAD_CONTEXT.len() + 32 + 8 + 1 + 1 + 4];
    let mut at = 0;
    for part in [
        RECORD_AAD_CONTEXT,
        capsule.as_bytes(),
        &seqno.to_be_bytes(),
        &[version, mode.to_u8()],
        &epoch.to_be_bytes(),
    ] {
        aad[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    aad
}

/// Seals `buf[from..]` in place under `subkey` and the nonce tail `tail`,
/// and appends its tag.
fn seal_tail(
    subkey: &Subkey,
    tail: &[u8; aead::TAIL_LEN],
    aad: &[u8],
    buf: &mut BytesMut,
    from: usize,
) {
    let tag = subkey.seal_in_place(tail, aad, &mut buf[from..]);
    buf.put_slice(&tag);
}

/// Opens `sealed` (ciphertext and tag) onto the end of `out`; on failure
/// what it appended holds no plaintext.
fn append_opened(
    subkey: &Subkey,
    tail: &[u8; aead::TAIL_LEN],
    aad: &[u8],
    sealed: &[u8],
    out: &mut BytesMut,
) -> Result<(), SealError> {
    let (body, tag) = sealed
        .split_last_chunk::<TAG_LEN>()
        .ok_or(SealError::Tampered)?;
    let start = out.len();
    out.extend_from_slice(body);
    subkey
        .open_in_place(tail, aad, &mut out[start..], tag)
        .map_err(|()| SealError::Tampered)
}

/// The subkey of a convergent record's key `kc`: its body's nonce is all
/// zeros.
fn convergent_subkey(kc: &[u8; 32]) -> Subkey {
    Subkey::derive(kc, &[0; aead::PREFIX_LEN])
}

fn convergent_key(plaintext: &[u8]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(blake3::derive_key(CONVERGENT_KEY_CONTEXT, plaintext))
}

/// A fresh random salt and the subkey it derives with `key` for `capsule`.
fn fresh_salt(key: &ContentKey, capsule: &Name) -> ([u8; SALT_LEN], Subkey) {
    let mut salt = [0u8; SALT_LEN];
    // A CSPRNG seeded from the operating system and reseeded by it: no
    // system call per record.
    rand::thread_rng().fill_bytes(&mut salt);
    let subkey = Subkey::derive(key.as_bytes(), &salted_prefix(&salt, capsule));
    (salt, subkey)
}

/// Seals `plaintext` as the payload of record `seqno` of `capsule`, under
/// `key`, the content key of `epoch`, with a salt of its own, and returns
/// the encoded envelope. A writer sealing many records uses a [`Sealer`],
/// which derives the cipher's subkey once instead of once per record.
///
/// The envelope is [`EPOCH_OVERHEAD`] or [`CONVERGENT_OVERHEAD`] bytes longer
/// than the plaintext.
///
/// # Panics
///
/// If `epoch` is 0 (epochs count from 1), or if the plaintext is longer than
/// XChaCha20-Poly1305 allows (2^38 bytes).
pub fn seal(
    key: &ContentKey,
    epoch: u32,
    mode: Mode,
    capsule: &Name,
    seqno: u64,
    plaintext: &[u8],
) -> Bytes {
    Sealer::new(key, epoch, mode, *capsule).seal(seqno, plaintext)
}

/// The length of the envelope of a plaintext of `len` bytes.
fn sealed_len(mode: Mode, len: usize) -> usize {
    len + match mode {
        Mode::Epoch => EPOCH_OVERHEAD,
        Mode::Convergent => CONVERGENT_OVERHEAD,
    }
}

/// Where a record is sealed: what its nonce and associated data bind it to.
struct Place<'a> {
    capsule: &'a Name,
    seqno: u64,
    mode: Mode,
    epoch: u32,
}

/// Seals `plaintext` under `subkey`, the subkey of the epoch key and the
/// prefix of `salt` and the capsule, and appends the envelope to `out`.
fn seal_with(
    subkey: &Subkey,
    salt: [u8; SALT_LEN],
    place: &Place<'_>,
    plaintext: &[u8],
    out: &mut BytesMut,
) {
    let Place {
        capsule,
        seqno,
        mode,
        epoch,
    } = *place;
    let aad = record_aad(capsule, seqno, ENVELOPE_VERSION, mode, epoch);
    let tail = seqno.to_be_bytes();
    let start = out.len();
    out.reserve(sealed_len(mode, plaintext.len()));
    put_header(out, mode, epoch, &NonceField::Salt(salt));
    match mode {
        Mode::Epoch => {
            out.put_slice(plaintext);
            seal_tail(subkey, &tail, &aad, out, start + HEADER_LEN);
        }
        Mode::Convergent => {
            let kc = convergent_key(plaintext);
            out.put_slice(&kc[..]);
            seal_tail(subkey, &tail, &aad, out, start + HEADER_LEN);
            let body = out.len();
            out.put_slice(plaintext);
            seal_tail(
                &convergent_subkey(&kc),
                &[0; aead::TAIL_LEN],
                CONVERGENT_BODY_AAD,
                out,
                body,
            );
        }
    }
    debug_assert_eq!(out.len() - start, sealed_len(mode, plaintext.len()));
}

/// Seals the records a writer appends under one epoch of a capsule.
///
/// It draws one salt when it is made and seals every record under it, so
/// the XChaCha20 subkey, which depends on the key, the salt and the capsule
/// alone, is derived once per sealer instead of once per record (and an
/// [`Opener`] makes the same saving when it opens such a run of records).
/// Asked to seal a seqno no higher than one it has sealed (a writer that
/// seals again after a failure), it draws a fresh salt first, so no nonce
/// of one sealer repeats.
pub struct Sealer {
    key: ContentKey,
    epoch: u32,
    mode: Mode,
    capsule: Name,
    salt: [u8; SALT_LEN],
    subkey: Subkey,
    /// The highest seqno sealed under the salt.
    last: Option<u64>,
}

impl Sealer {
    /// A sealer for the records of `capsule` under `key`, the content key of
    /// `epoch`, sealed in `mode`.
    ///
    /// # Panics
    ///
    /// If `epoch` is 0 (epochs count from 1).
    pub fn new(key: &ContentKey, epoch: u32, mode: Mode, capsule: Name) -> Sealer {
        assert!(epoch >= 1, "epochs count from 1");
        let (salt, subkey) = fresh_salt(key, &capsule);
        Sealer {
            key: key.clone(),
            epoch,
            mode,
            capsule,
            salt,
            subkey,
            last: None,
        }
    }

    /// The epoch whose key seals.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Seals `plaintext` as the payload of record `seqno` (see [`seal`]).
    ///
    /// # Panics
    ///
    /// If the plaintext is longer than XChaCha20-Poly1305 allows (2^38
    /// bytes).
    pub fn seal(&mut self, seqno: u64, plaintext: &[u8]) -> Bytes {
        let mut buf = BytesMut::with_capacity(sealed_len(self.mode, plaintext.len()));
        self.seal_to(seqno, plaintext, &mut buf);
        buf.freeze()
    }

    /// [`Sealer::seal`], with the envelope appended to `out`: a writer
    /// sealing a batch puts every envelope in one buffer and splits them
    /// off it.
    pub fn seal_to(&mut self, seqno: u64, plaintext: &[u8], out: &mut BytesMut) {
        if self.last.is_some_and(|last| seqno <= last) {
            (self.salt, self.subkey) = fresh_salt(&self.key, &self.capsule);
        }
        self.last = Some(seqno);
        let place = Place {
            capsule: &self.capsule,
            seqno,
            mode: self.mode,
            epoch: self.epoch,
        };
        seal_with(&self.subkey, self.salt, &place, plaintext, out);
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("capsule", &self.capsule)
            .field("epoch", &self.epoch)
            .field("mode", &self.mode)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

/// Opens `envelope`, the payload of record `seqno` of `capsule`, with `key`,
/// the content key of the envelope's epoch.
///
/// Fails with [`SealError::Tampered`] if the key is not the one the record was
/// sealed under, if the envelope belongs to another capsule or seqno, or if
/// any of its bytes were altered; and, in convergent mode, with
/// [`SealError::NotConvergent`] if the plaintext does not derive the record's
/// key.
pub fn open(
    key: &ContentKey,
    capsule: &Name,
    seqno: u64,
    envelope: &Envelope,
) -> Result<Bytes, SealError> {
    let mut out = BytesMut::with_capacity(envelope.plaintext_len());
    open_to(key, capsule, seqno, envelope, &mut out)?;
    Ok(out.freeze())
}

/// [`open`], with the plaintext appended to `out` instead of returned in a
/// buffer of its own: a reader opening many records appends them all to
/// one buffer (and uses an [`Opener`]). On failure `out` is as it was.
pub fn open_to(
    key: &ContentKey,
    capsule: &Name,
    seqno: u64,
    envelope: &Envelope,
    out: &mut BytesMut,
) -> Result<(), SealError> {
    let (prefix, tail) = envelope.nonce.nonce(capsule, seqno);
    let subkey = Subkey::derive(key.as_bytes(), &prefix);
    open_with(&subkey, &tail, capsule, seqno, envelope.view(), out)
}

/// Opens `envelope` with `subkey`, the subkey of its epoch's key and its
/// nonce's prefix, and `tail`, its nonce's tail, onto the end of `out`; on
/// failure `out` is as it was.
fn open_with(
    subkey: &Subkey,
    tail: &[u8; aead::TAIL_LEN],
    capsule: &Name,
    seqno: u64,
    envelope: EnvelopeRef<'_>,
    out: &mut BytesMut,
) -> Result<(), SealError> {
    let aad = record_aad(
        capsule,
        seqno,
        envelope.version(),
        envelope.mode(),
        envelope.epoch,
    );
    let start = out.len();
    let opened = match &envelope.wrapped_key {
        None => append_opened(subkey, tail, &aad, envelope.ciphertext, out),
        Some(wrapped) => {
            let (sealed_kc, tag) = wrapped.split_at(32);
            let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| SealError::Tampered)?;
            let mut kc = Zeroizing::new([0u8; 32]);
            kc.copy_from_slice(sealed_kc);
            subkey
                .open_in_place(tail, &aad, &mut kc[..], tag)
                .map_err(|()| SealError::Tampered)?;
            append_opened(
                &convergent_subkey(&kc),
                &[0; aead::TAIL_LEN],
                CONVERGENT_BODY_AAD,
                envelope.ciphertext,
                out,
            )
            .and_then(|()| {
                // blake3's hash comparison is constant-time.
                if blake3::Hash::from_bytes(*kc) == *convergent_key(&out[start..]) {
                    Ok(())
                } else {
                    Err(SealError::NotConvergent)
                }
            })
        }
    };
    if opened.is_err() {
        out.truncate(start);
    }
    opened
}

/// Opens many records: it keeps the subkey of the last key and nonce
/// prefix it met, so a run of records from one [`Sealer`] derives it once.
#[derive(Default)]
pub struct Opener {
    last: Option<(ContentKey, [u8; aead::PREFIX_LEN], Subkey)>,
}

impl Opener {
    /// An opener that has met no record yet.
    pub fn new() -> Opener {
        Opener::default()
    }

    /// [`open_to`], with the subkey of the last record's key and prefix
    /// kept for the next.
    pub fn open_to(
        &mut self,
        key: &ContentKey,
        capsule: &Name,
        seqno: u64,
        envelope: EnvelopeRef<'_>,
        out: &mut BytesMut,
    ) -> Result<(), SealError> {
        let (prefix, tail) = envelope.nonce.nonce(capsule, seqno);
        let hit = matches!(&self.last, Some((k, p, _)) if *p == prefix && k == key);
        if !hit {
            let subkey = Subkey::derive(key.as_bytes(), &prefix);
            self.last = Some((key.clone(), prefix, subkey));
        }
        let (_, _, subkey) = self.last.as_ref().expect("just set");
        open_with(subkey, &tail, capsule, seqno, envelope, out)
    }
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener(..)")
    }
}

/// Decodes `payload` as an envelope and opens it: [`Envelope::decode`]
/// followed by [`open`].
pub fn open_bytes(
    key: &ContentKey,
    capsule: &Name,
    seqno: u64,
    payload: impl Into<Bytes>,
) -> Result<Bytes, SealError> {
    let envelope = Envelope::decode(payload)?;
    open(key, capsule, seqno, &envelope)
}

#[cfg(test)]
mod tests;
