//! Identities: a secret key together with the principal metadata it controls,
//! and the files they live in.
//!
//! An identity file is TOML, written with mode 0600 through a temporary file
//! and a rename, so a crash never leaves half a key behind:
//!
//! ```toml
//! # GDP identity. Keep this file secret.
//! kind = "router"
//! label = "edge-1"
//! created = 1795000000000000
//! secret_key = "…52 characters of base32…"
//! ```
//!
//! Loading refuses a file that group or others can read or write, because a
//! key anyone can read names nobody in particular.
//!
//! The public form ([`PublicIdentity`]) is the same without the secret: the
//! metadata, which anyone may hold, and the name it hashes to.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Kind, Metadata, Name, PublicKey, SecretKey, Timestamp};

/// A principal's secret key and metadata.
#[derive(Clone, Debug)]
pub struct Identity {
    key: SecretKey,
    metadata: Metadata,
    name: Name,
}

/// Why an identity file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file can be read or written by group or others.
    #[error(
        "key file {path} has mode {mode:04o}, readable by others; run `chmod 600 {path}`",
        path = path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a valid identity file.
    #[error("key file {path}: {reason}", path = path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    kind: Kind,
    label: String,
    created: u64,
    secret_key: Name,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicFile {
    name: Name,
    kind: Kind,
    label: String,
    created: u64,
    public_key: Name,
}

impl Identity {
    /// A fresh identity of `kind`, created now.
    pub fn generate(kind: Kind, label: impl Into<String>) -> Result<Self, crate::MetadataError> {
        Self::from_key(SecretKey::generate(), kind, label, Timestamp::now())
    }

    /// The identity of `key` as a principal of `kind`.
    pub fn from_key(
        key: SecretKey,
        kind: Kind,
        label: impl Into<String>,
        created: Timestamp,
    ) -> Result<Self, crate::MetadataError> {
        let metadata = Metadata::principal(kind, key.public(), label, created)?;
        let name = metadata.name();
        Ok(Identity {
            key,
            metadata,
            name,
        })
    }

    /// The principal's name.
    pub fn name(&self) -> Name {
        self.name
    }
    /// The principal's metadata (its public proof of name).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    /// The secret key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.key
    }
    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        *self.metadata.key()
    }
    /// The public form.
    pub fn to_public(&self) -> PublicIdentity {
        PublicIdentity {
            metadata: self.metadata.clone(),
            name: self.name,
        }
    }

    /// Writes the identity to `path` with mode 0600, atomically.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let file = SecretFile {
            kind: self.metadata.kind(),
            label: self.metadata.label().to_owned(),
            created: self.metadata.created().0,
            secret_key: Name::from_bytes(self.key.to_seed()),
        };
        let body = toml::to_string(&file).map_err(|e| KeyFileError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let text = format!(
            "# GDP identity {}. Keep this file secret.\n{body}",
            self.name
        );
        write_private(path, text.as_bytes())
    }

    /// Loads an identity written by [`Identity::save`].
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        check_private(path)?;
        let text = fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let format = |reason: String| KeyFileError::Format {
            path: path.to_owned(),
            reason,
        };
        let f: SecretFile = toml::from_str(&text).map_err(|e| format(e.to_string()))?;
        Identity::from_key(
            SecretKey::from_seed(f.secret_key.as_bytes()),
            f.kind,
            f.label,
            Timestamp(f.created),
        )
        .map_err(|e| format(e.to_string()))
    }

    /// Loads the identity at `path`, or generates one and saves it there if
    /// the file does not exist. This is what daemons do on first start.
    pub fn load_or_generate(
        path: &Path,
        kind: Kind,
        label: &str,
    ) -> Result<(Self, bool), KeyFileError> {
        match fs::metadata(path) {
            Ok(_) => {
                let id = Identity::load(path)?;
                if id.metadata.kind() != kind {
                    return Err(KeyFileError::Format {
                        path: path.to_owned(),
                        reason: format!(
                            "holds a {} identity, expected a {kind}",
                            id.metadata.kind()
                        ),
                    });
                }
                Ok((id, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity::generate(kind, label).map_err(|e| KeyFileError::Format {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::create_dir_all(dir).map_err(|source| KeyFileError::Io {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
                id.save(path)?;
                Ok((id, true))
            }
            Err(source) => Err(KeyFileError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// The public form of an identity: metadata and name, no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    metadata: Metadata,
    name: Name,
}

impl PublicIdentity {
    /// From metadata (the name is derived).
    pub fn new(metadata: Metadata) -> Self {
        let name = metadata.name();
        PublicIdentity { metadata, name }
    }
    /// The name.
    pub fn name(&self) -> Name {
        self.name
    }
    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// As TOML text.
    pub fn to_toml(&self) -> String {
        let f = PublicFile {
            name: self.name,
            kind: self.metadata.kind(),
            label: self.metadata.label().to_owned(),
            created: self.metadata.created().0,
            public_key: Name::from_bytes(*self.metadata.key().as_bytes()),
        };
        toml::to_string(&f).unwrap_or_default()
    }

    /// Parses the TOML text of [`PublicIdentity::to_toml`], checking that the
    /// fields hash to the stated name.
    pub fn from_toml(text: &str) -> Result<Self, crate::Error> {
        let f: PublicFile =
            toml::from_str(text).map_err(|e| crate::Error::Format(e.to_string()))?;
        let key = PublicKey::from_bytes(f.public_key.as_bytes())?;
        let md = Metadata::principal(f.kind, key, f.label, Timestamp(f.created))
            .map_err(|e| crate::Error::Format(e.to_string()))?;
        md.check_name(&f.name)?;
        Ok(PublicIdentity::new(md))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    #[cfg(unix)]
    {
        // `mode` only applies when the file is created; a stale temporary file
        // keeps its old bits, so set them explicitly.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn check_private(path: &Path) -> Result<(), KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let md = fs::metadata(path).map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mode = md.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("gdp-certs-test-{}", rand::random::<u64>()));
        fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn save_load_round_trip_with_mode_0600() {
        let d = tmpdir();
        let p = d.join("router.key");
        let id = Identity::generate(Kind::Router, "r1").expect("valid");
        id.save(&p).expect("saves");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).expect("exists").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = Identity::load(&p).expect("loads");
        assert_eq!(back.name(), id.name());
        assert_eq!(back.public_key(), id.public_key());
        fs::remove_dir_all(d).ok();
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir();
        let p = d.join("k");
        Identity::generate(Kind::Client, "c")
            .expect("valid")
            .save(&p)
            .expect("saves");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Identity::load(&p).expect_err("must refuse");
        assert!(matches!(err, KeyFileError::Permissions { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"));
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn load_or_generate_is_stable() {
        let d = tmpdir();
        let p = d.join("sub/server.key");
        let (a, created) = Identity::load_or_generate(&p, Kind::Server, "s").expect("generates");
        assert!(created);
        let (b, created) = Identity::load_or_generate(&p, Kind::Server, "s").expect("loads");
        assert!(!created);
        assert_eq!(a.name(), b.name());
        assert!(Identity::load_or_generate(&p, Kind::Router, "s").is_err());
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn garbage_file_is_a_format_error() {
        let d = tmpdir();
        let p = d.join("k");
        write_private(&p, b"secret_key = 12").expect("writes");
        assert!(matches!(
            Identity::load(&p),
            Err(KeyFileError::Format { .. })
        ));
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn public_form_round_trips_and_checks_the_name() {
        let id = Identity::generate(Kind::Client, "me").expect("valid");
        let text = id.to_public().to_toml();
        assert_eq!(
            PublicIdentity::from_toml(&text).expect("parses"),
            id.to_public()
        );
        let tampered = text.replace("label = \"me\"", "label = \"you\"");
        assert!(matches!(
            PublicIdentity::from_toml(&tampered),
            Err(crate::Error::NameMismatch { .. })
        ));
    }
}
