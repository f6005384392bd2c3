//! Capsules for simulated servers to advertise.

use gdp_certs::cert::{AdCert, Validity};
use gdp_certs::{Metadata, Name, SecretKey, Timestamp};
use gdp_proto::control::AdvertiseEntry;

use super::SIM_START;

/// A capsule and its owner's key, which issues AdCerts.
#[derive(Debug, Clone)]
pub struct SimCapsule {
    owner: SecretKey,
    metadata: Metadata,
}

impl SimCapsule {
    /// A capsule owned and written by `owner`, with `nonce` in its metadata.
    ///
    /// # Panics
    ///
    /// If `label` is longer than a metadata label may be (a test bug).
    pub fn new(owner: SecretKey, label: &str, nonce: [u8; 16]) -> Self {
        let metadata = Metadata::capsule(
            owner.public(),
            vec![owner.public()],
            label,
            SIM_START,
            Vec::new(),
        )
        .expect("simulated capsule labels are short")
        .with_nonce(nonce);
        SimCapsule { owner, metadata }
    }

    /// The capsule's name.
    pub fn name(&self) -> Name {
        self.metadata.name()
    }

    /// The capsule's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The owner's key.
    pub fn owner(&self) -> &SecretKey {
        &self.owner
    }

    /// An advertise entry letting `server` serve the capsule for `validity`.
    pub fn entry_for(&self, server: Name, validity: Validity) -> AdvertiseEntry {
        AdvertiseEntry {
            capsule_md: self.metadata.clone(),
            adcert: AdCert::issue(&self.owner, self.name(), server, validity),
        }
    }

    /// An advertise entry for `server`, valid for a year around [`SIM_START`].
    pub fn entry(&self, server: Name) -> AdvertiseEntry {
        let year = std::time::Duration::from_secs(365 * 86_400);
        self.entry_for(
            server,
            Validity::new(
                SIM_START.saturating_sub(year),
                SIM_START.saturating_add(year),
            ),
        )
    }

    /// An advertise entry for `server` valid between `from` and `to`.
    pub fn entry_between(&self, server: Name, from: Timestamp, to: Timestamp) -> AdvertiseEntry {
        self.entry_for(server, Validity::new(from, to))
    }
}
