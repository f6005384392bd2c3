//! Names of the namespaces and links of one testbed.
//!
//! Every name starts with the run's prefix (`g` and six characters), so
//! testbeds brought up side by side never collide, and every interface name
//! fits Linux's limit of 15 characters (`IFNAMSIZ` less the NUL).

use std::hash::{BuildHasher, Hasher};

/// The longest interface name Linux accepts.
pub const MAX_IFNAME_LEN: usize = 15;
/// The longest prefix accepted.
pub const MAX_PREFIX_LEN: usize = 8;

/// The names of one testbed's namespaces and links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: String,
}

/// Why a prefix cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad prefix {0:?}: use 1 to {MAX_PREFIX_LEN} lowercase letters and digits, starting with a letter"
)]
pub struct BadPrefix(pub String);

impl Naming {
    /// Names with the given prefix.
    pub fn new(prefix: &str) -> Result<Naming, BadPrefix> {
        let mut chars = prefix.chars();
        let ok = prefix.len() <= MAX_PREFIX_LEN
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if ok {
            Ok(Naming {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(BadPrefix(prefix.to_owned()))
        }
    }

    /// Names with a fresh random prefix: `g` and six base-36 characters.
    pub fn random() -> Naming {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(t.as_nanos());
        }
        let mut n = hasher.finish();
        let mut prefix = String::from("g");
        for _ in 0..6 {
            let digit = (n % 36) as u32;
            n /= 36;
            prefix.push(char::from_digit(digit, 36).unwrap_or('0'));
        }
        Naming { prefix }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace of host `host`.
    pub fn host_ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// The namespace holding the bridge (when it has one of its own).
    pub fn bridge_ns(&self) -> String {
        format!("{}_bridge", self.prefix)
    }

    /// The namespace of the directory (when it has one of its own).
    pub fn directory_ns(&self) -> String {
        format!("{}_directory", self.prefix)
    }

    /// The namespace of the data networks' bridges and delay relays.
    pub fn links_ns(&self) -> String {
        format!("{}_links", self.prefix)
    }

    /// The bridge.
    pub fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// The bridge's end of the veth pair of host number `index`.
    pub fn host_port(&self, index: usize) -> String {
        format!("{}v{index}", self.prefix)
    }

    /// The bridge's end of the directory's veth pair.
    pub fn directory_port(&self) -> String {
        format!("{}vd", self.prefix)
    }

    /// The bridge's end of the root namespace's veth pair.
    pub fn root_port(&self) -> String {
        format!("{}vr", self.prefix)
    }

    /// The root namespace's end of its veth pair.
    pub fn root_if(&self) -> String {
        format!("{}rt", self.prefix)
    }

    /// The interface inside a host's or the directory's namespace.
    pub fn inner_if(&self) -> &'static str {
        "eth0"
    }

    /// Whether a namespace name belongs to this testbed.
    pub fn owns_ns(&self, ns: &str) -> bool {
        ns.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('_'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::MAX_HOSTS;

    #[test]
    fn interface_names_fit() {
        for naming in [
            Naming::random(),
            Naming::new("abcdefgh").expect("longest prefix"),
        ] {
            let mut names = vec![
                naming.bridge(),
                naming.directory_port(),
                naming.root_port(),
                naming.root_if(),
                naming.inner_if().to_owned(),
            ];
            names.extend((0..MAX_HOSTS).map(|i| naming.host_port(i)));
            for n in &names {
                assert!(n.len() <= MAX_IFNAME_LEN, "{n} is too long");
            }
            let unique: std::collections::HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len());
            assert!(naming.owns_ns(&naming.host_ns("r1")));
            assert!(naming.owns_ns(&naming.bridge_ns()));
            assert!(!naming.owns_ns(&format!("{}x-r1", naming.prefix())));
        }
    }

    #[test]
    fn random_prefixes_differ_and_are_valid() {
        let a = Naming::random();
        let b = Naming::random();
        assert_ne!(a, b);
        assert_eq!(Naming::new(a.prefix()), Ok(a.clone()));
        assert_eq!(a.prefix().len(), 7);
        assert!(Naming::new("").is_err());
        assert!(Naming::new("1abc").is_err());
        assert!(Naming::new("abcdefghi").is_err());
        assert!(Naming::new("ab-c").is_err());
    }
}
