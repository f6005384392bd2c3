//! Capsule files: what a writer keeps locally about a capsule it created.
//!
//! The metadata is what proves a capsule's name, and only its creator has it
//! until a server is asked; the writer also needs to know which key signs.
//! A capsule file keeps both, with the server that hosts the capsule and
//! the AdCert it was given:
//!
//! ```toml
//! # GDP capsule <name>
//! name = "<52 characters of base32>"
//! label = "sensor-log"
//! metadata = "<canonical metadata, lowercase base32>"
//! writer_key = "/home/me/.config/gdp/client.key"
//! server = "<server name>"
//! adcert = "<AdCert, lowercase base32>"
//! # A replicated capsule also has:
//! replicas = "<ReplicaSet, lowercase base32>"
//! write_quorum = 2
//! read_quorum = 2
//! ```
//!
//! Binary fields use the alphabet of names (lowercase RFC 4648 base32
//! without padding, see [`encode_base32`]). Loading checks that the
//! metadata hashes to `name`, that the AdCert (if any) names that capsule,
//! and that the replica set (if any) verifies against the metadata with
//! quorums it can meet (a majority when a quorum is missing), so a damaged
//! or edited file is refused rather than used. Files without replicas
//! (older ones) load as before.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gdp_certs::cert::{AdCert, ReplicaSet};
use gdp_certs::codec::{Decode, Encode};
use gdp_certs::{Metadata, Name};

use crate::replicas::{Replication, majority};

/// The file extension of capsule files.
pub const CAPSULE_FILE_EXTENSION: &str = "capsule";

/// Longest capsule file read.
const MAX_FILE_LEN: u64 = 64 * 1024;

fn base32() -> &'static data_encoding::Encoding {
    static ENC: OnceLock<data_encoding::Encoding> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut spec = data_encoding::Specification::new();
        spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
        spec.check_trailing_bits = true;
        spec.encoding()
            .expect("the lowercase base32 specification is statically valid")
    })
}

/// `bytes` as lowercase base32 without padding (the alphabet of names).
pub fn encode_base32(bytes: &[u8]) -> String {
    base32().encode(bytes)
}

/// The bytes of lowercase base32 text without padding.
pub fn decode_base32(text: &str) -> Result<Vec<u8>, String> {
    base32()
        .decode(text.trim().as_bytes())
        .map_err(|e| format!("not lowercase base32: {e}"))
}

/// Why a capsule file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CapsuleFileError {
    /// Reading or writing failed.
    #[error("capsule file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid capsule file.
    #[error("capsule file {}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Name,
    label: String,
    metadata: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer_key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    adcert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replicas: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write_quorum: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_quorum: Option<usize>,
}

/// What a writer keeps about a capsule. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapsuleFile {
    /// The capsule's metadata.
    pub metadata: Metadata,
    /// The identity file whose key writes the capsule.
    pub writer_key: Option<PathBuf>,
    /// The server hosting it.
    pub server: Option<Name>,
    /// The AdCert given to that server.
    pub adcert: Option<AdCert>,
    /// The capsule's replicas and quorums, for a replicated capsule.
    pub replication: Option<Replication>,
}

impl CapsuleFile {
    /// The capsule's name.
    pub fn name(&self) -> Name {
        self.metadata.name()
    }

    /// The file as TOML text.
    pub fn to_toml(&self) -> String {
        let raw = Raw {
            name: self.name(),
            label: self.metadata.label().to_owned(),
            metadata: encode_base32(&self.metadata.to_bytes()),
            writer_key: self.writer_key.clone(),
            server: self.server,
            adcert: self.adcert.as_ref().map(|c| encode_base32(&c.to_bytes())),
            replicas: self
                .replication
                .as_ref()
                .map(|r| encode_base32(&r.set().to_bytes())),
            write_quorum: self.replication.as_ref().map(Replication::write_quorum),
            read_quorum: self.replication.as_ref().map(Replication::read_quorum),
        };
        let body = toml::to_string(&raw).unwrap_or_default();
        format!("# GDP capsule {}\n{body}", self.name())
    }

    /// Parses TOML text written by [`CapsuleFile::to_toml`], checking that
    /// the metadata hashes to the name and that the AdCert is this
    /// capsule's.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
        let bytes = decode_base32(&raw.metadata).map_err(|e| format!("metadata: {e}"))?;
        let metadata = Metadata::decode(bytes).map_err(|e| format!("metadata: {e}"))?;
        if metadata.name() != raw.name {
            return Err(format!(
                "the metadata hashes to {}, not to the name {}",
                metadata.name(),
                raw.name
            ));
        }
        if metadata.kind() != gdp_certs::Kind::Capsule {
            return Err(format!(
                "the metadata is a {}'s, not a capsule's",
                metadata.kind()
            ));
        }
        let adcert = match &raw.adcert {
            Some(text) => {
                let bytes = decode_base32(text).map_err(|e| format!("adcert: {e}"))?;
                let cert = AdCert::decode(bytes).map_err(|e| format!("adcert: {e}"))?;
                if cert.capsule() != raw.name {
                    return Err(format!("the AdCert is for capsule {}", cert.capsule()));
                }
                Some(cert)
            }
            None => None,
        };
        let replication = replication(&raw, &metadata)?;
        Ok(CapsuleFile {
            metadata,
            writer_key: raw.writer_key,
            server: raw.server,
            adcert,
            replication,
        })
    }

    /// Reads the capsule file at `path`.
    pub fn load(path: &Path) -> Result<Self, CapsuleFileError> {
        let io = |source| CapsuleFileError::Io {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_FILE_LEN {
            return Err(CapsuleFileError::Format {
                path: path.to_owned(),
                reason: format!("{len} bytes is too large for a capsule file"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::from_toml(&text).map_err(|reason| CapsuleFileError::Format {
            path: path.to_owned(),
            reason,
        })
    }

    /// Writes the capsule file to `path` (through a temporary file and a
    /// rename), creating its directory if needed.
    pub fn save(&self, path: &Path) -> Result<(), CapsuleFileError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| CapsuleFileError::Io { path: p, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let tmp = path.with_extension("capsule.tmp");
        std::fs::write(&tmp, self.to_toml()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }

    /// The file name for capsule `name` in `dir`: `<dir>/<name>.capsule`.
    pub fn path_in(dir: &Path, name: &Name) -> PathBuf {
        dir.join(format!("{name}.{CAPSULE_FILE_EXTENSION}"))
    }
}

/// The replication in `raw`, checked against the capsule's metadata.
fn replication(raw: &Raw, md: &Metadata) -> Result<Option<Replication>, String> {
    let Some(text) = &raw.replicas else {
        if raw.write_quorum.is_some() || raw.read_quorum.is_some() {
            return Err("quorums without replicas".to_owned());
        }
        return Ok(None);
    };
    let bytes = decode_base32(text).map_err(|e| format!("replicas: {e}"))?;
    let set = ReplicaSet::decode(bytes).map_err(|e| format!("replicas: {e}"))?;
    set.verify(md).map_err(|e| format!("replicas: {e}"))?;
    let m = majority(set.servers().len());
    let w = raw.write_quorum.unwrap_or(m);
    let r = raw.read_quorum.unwrap_or(m);
    Replication::new(set, w, r)
        .map(Some)
        .map_err(|e| format!("replicas: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdp_certs::cert::Validity;
    use gdp_certs::{SecretKey, Timestamp};
    use proptest::prelude::*;

    fn sample() -> CapsuleFile {
        let owner = SecretKey::from_seed(&[9; 32]);
        let md = Metadata::capsule(
            owner.public(),
            vec![owner.public()],
            "log",
            Timestamp::from_secs(10),
            vec![],
        )
        .expect("valid");
        let server = Name::from_bytes([3; 32]);
        let adcert = AdCert::issue(
            &owner,
            md.name(),
            server,
            Validity::new(Timestamp::ZERO, Timestamp::MAX),
        );
        CapsuleFile {
            metadata: md,
            writer_key: Some(PathBuf::from("/tmp/k.key")),
            server: Some(server),
            adcert: Some(adcert),
            replication: None,
        }
    }

    fn replicated() -> CapsuleFile {
        let owner = SecretKey::from_seed(&[9; 32]);
        let mut f = sample();
        let servers = (1..=3).map(|i| Name::from_bytes([i; 32])).collect();
        let set = ReplicaSet::issue(&owner, f.name(), 77, servers).expect("set");
        f.replication = Some(Replication::new(set, 3, 1).expect("quorums"));
        f
    }

    #[test]
    fn replicas_round_trip_and_old_files_load() {
        let f = replicated();
        let text = f.to_toml();
        assert!(text.contains("write_quorum = 3") && text.contains("read_quorum = 1"));
        assert_eq!(CapsuleFile::from_toml(&text), Ok(f.clone()));
        // Without quorums, majorities.
        let bare: String = text
            .lines()
            .filter(|l| !l.contains("_quorum"))
            .map(|l| format!("{l}\n"))
            .collect();
        let loaded = CapsuleFile::from_toml(&bare).expect("loads");
        let r = loaded.replication.expect("replicas");
        assert_eq!((r.write_quorum(), r.read_quorum()), (2, 2));
        // A file written before replicas existed.
        let old = sample().to_toml();
        assert!(!old.contains("replicas"));
        assert_eq!(
            CapsuleFile::from_toml(&old).expect("loads").replication,
            None
        );
    }

    #[test]
    fn bad_replicas_are_refused() {
        let f = replicated();
        let text = f.to_toml();
        let err = CapsuleFile::from_toml(&text.replace("write_quorum = 3", "write_quorum = 4"))
            .expect_err("W above N");
        assert!(err.contains("write quorum"), "{err}");
        // A set signed by someone else.
        let mallory = SecretKey::from_seed(&[1; 32]);
        let forged = ReplicaSet::issue(&mallory, f.name(), 78, vec![Name::from_bytes([1; 32])])
            .expect("set");
        let mut g = f.clone();
        g.replication = Some(Replication::majority(forged));
        let err = CapsuleFile::from_toml(&g.to_toml()).expect_err("forged");
        assert!(err.starts_with("replicas:"), "{err}");
        let err = CapsuleFile::from_toml(&format!("{}read_quorum = 1\n", sample().to_toml()))
            .expect_err("quorum alone");
        assert!(err.contains("without replicas"), "{err}");
    }

    #[test]
    fn toml_round_trips() {
        let f = sample();
        let text = f.to_toml();
        assert!(text.starts_with(&format!("# GDP capsule {}", f.name())));
        assert_eq!(CapsuleFile::from_toml(&text), Ok(f));
    }

    #[test]
    fn a_name_that_does_not_match_is_refused() {
        let f = sample();
        let text = f.to_toml().replace(
            &format!("name = \"{}\"", f.name()),
            &format!("name = \"{}\"", Name::from_bytes([1; 32])),
        );
        let err = CapsuleFile::from_toml(&text).expect_err("mismatch");
        assert!(err.contains("hashes to"), "{err}");
    }

    #[test]
    fn save_and_load() {
        let dir = gdp_testkit::TempDir::new("capfile");
        let f = sample();
        let path = CapsuleFile::path_in(dir.path(), &f.name());
        f.save(&path).expect("saves");
        assert_eq!(CapsuleFile::load(&path).expect("loads"), f);
        std::fs::write(&path, "name = 3").expect("overwrite");
        assert!(matches!(
            CapsuleFile::load(&path),
            Err(CapsuleFileError::Format { .. })
        ));
        std::fs::remove_dir_all(dir.path()).expect("removes the directory");
        assert!(matches!(
            CapsuleFile::load(&path),
            Err(CapsuleFileError::Io { .. })
        ));
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = encode_base32(&bytes);
            prop_assert!(text.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
            prop_assert_eq!(decode_base32(&text), Ok(bytes));
        }

        #[test]
        fn parsing_never_panics(text in ".{0,200}") {
            let _ = CapsuleFile::from_toml(&text);
            let _ = decode_base32(&text);
        }
    }
}
