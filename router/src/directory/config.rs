//! Which directory backend to use, parsed from one string.
//!
//! ```text
//! memory                                  in-process
//! redis://127.0.0.1:6379                  one Redis server (any URL the redis client accepts:
//!                                         redis://[user:password@]host:port[/db])
//! redis-cluster://h1:p1,h2:p2,...         a Redis Cluster, from one or more seed nodes
//! ```
//!
//! [`DirectoryConfig`] round-trips through this text form and serializes as
//! it, so a TOML config holds `directory = "redis://10.0.0.5:6379"`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::{Directory, DirectoryError, MemoryDirectory, RedisClusterDirectory, RedisDirectory};

const MEMORY: &str = "memory";
const REDIS_SCHEME: &str = "redis://";
const CLUSTER_SCHEME: &str = "redis-cluster://";

/// Most seed nodes a `redis-cluster://` string may list.
pub const MAX_SEED_NODES: usize = 64;

/// A directory backend and where to find it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum DirectoryConfig {
    /// The in-process [`MemoryDirectory`], the default.
    #[default]
    Memory,
    /// One Redis server, [`RedisDirectory`].
    Redis {
        /// The `redis://` URL.
        url: String,
    },
    /// A Redis Cluster, [`RedisClusterDirectory`].
    RedisCluster {
        /// Seed nodes; the client discovers the others.
        nodes: Vec<NodeAddr>,
    },
}

/// A `host:port` of a Redis Cluster node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// Host name or IP address (IPv6 in brackets in the text form).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// The node's `redis://host:port` URL.
    pub fn url(&self) -> String {
        format!("redis://{self}")
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for NodeAddr {
    type Err = DirectoryConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DirectoryConfigError::Node(s.to_owned());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !valid_host || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(NodeAddr {
            host: host.to_owned(),
            port,
        })
    }
}

/// Why a directory configuration string is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryConfigError {
    /// The string names no known backend.
    #[error(
        "unknown directory {0:?}: expected `memory`, `redis://host:port` or \
         `redis-cluster://host:port,host:port,...`"
    )]
    Unknown(String),
    /// The `redis://` URL is invalid.
    #[error("invalid Redis URL: {0}")]
    RedisUrl(String),
    /// A cluster node is not `host:port`.
    #[error("invalid Redis Cluster node {0:?}: expected host:port")]
    Node(String),
    /// A `redis-cluster://` string lists no node, or too many.
    #[error("a Redis Cluster needs between 1 and {MAX_SEED_NODES} seed nodes, got {0}")]
    NodeCount(usize),
}

impl FromStr for DirectoryConfig {
    type Err = DirectoryConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == MEMORY {
            Ok(DirectoryConfig::Memory)
        } else if let Some(list) = s.strip_prefix(CLUSTER_SCHEME) {
            let parts: Vec<&str> = list.split(',').collect();
            if list.is_empty() || parts.len() > MAX_SEED_NODES {
                return Err(DirectoryConfigError::NodeCount(
                    parts.len() * usize::from(!list.is_empty()),
                ));
            }
            let nodes = parts
                .into_iter()
                .map(str::parse)
                .collect::<Result<Vec<NodeAddr>, _>>()?;
            Ok(DirectoryConfig::RedisCluster { nodes })
        } else if s.starts_with(REDIS_SCHEME) {
            redis::IntoConnectionInfo::into_connection_info(s)
                .map_err(|e| DirectoryConfigError::RedisUrl(format!("{}: {e}", masked_url(s))))?;
            Ok(DirectoryConfig::Redis { url: s.to_owned() })
        } else {
            Err(DirectoryConfigError::Unknown(s.to_owned()))
        }
    }
}

/// `url` with the password of its user information, if any, replaced by
/// `***`: `redis://user:secret@host:6379/0` shows as
/// `redis://user:***@host:6379/0`. What logs, errors and the admin API
/// print of a directory.
pub fn masked_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // A user name alone is no secret.
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{user}@{host}{tail}")
}

impl DirectoryConfig {
    /// The configuration string, password included: what parses back into
    /// this configuration (and what serializing writes). Show people the
    /// [`Display`](fmt::Display) form, which masks the password.
    pub fn spec(&self) -> String {
        match self {
            DirectoryConfig::Memory => MEMORY.to_owned(),
            DirectoryConfig::Redis { url } => url.clone(),
            DirectoryConfig::RedisCluster { nodes } => {
                let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
                format!("{CLUSTER_SCHEME}{}", nodes.join(","))
            }
        }
    }
}

/// Shows the directory with any password masked (see [`masked_url`]).
impl fmt::Display for DirectoryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectoryConfig::Redis { url } => f.write_str(&masked_url(url)),
            other => f.write_str(&other.spec()),
        }
    }
}

impl TryFrom<String> for DirectoryConfig {
    type Error = DirectoryConfigError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DirectoryConfig> for String {
    fn from(c: DirectoryConfig) -> String {
        c.spec()
    }
}

/// Settings shared by the Redis backends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryOptions {
    /// Longest any one call may take, reconnecting included. A call that
    /// takes longer fails with [`DirectoryError::Unavailable`], so a dead
    /// Redis fails fast rather than stalling forwarding.
    pub timeout: Duration,
    /// Longest the first connection may take when the directory is built
    /// (for a cluster: reaching a seed and loading the slot map).
    pub connect_timeout: Duration,
}

impl DirectoryOptions {
    /// The default per-call timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(300);
    /// The default timeout of the first connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

    /// These options with the given per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// These options with the given timeout of the first connection.
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }
}

impl Default for DirectoryOptions {
    fn default() -> Self {
        DirectoryOptions {
            timeout: Self::DEFAULT_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl DirectoryConfig {
    /// Builds the configured backend.
    ///
    /// The Redis backends connect first and fail with
    /// [`DirectoryError::Unavailable`] when the server (or no seed node)
    /// answers within `options.connect_timeout`; once built, they reconnect
    /// by themselves.
    pub async fn connect(
        &self,
        options: &DirectoryOptions,
    ) -> Result<Arc<dyn Directory>, DirectoryError> {
        Ok(match self {
            DirectoryConfig::Memory => Arc::new(MemoryDirectory::new()),
            DirectoryConfig::Redis { url } => {
                Arc::new(RedisDirectory::connect(url, options).await?)
            }
            DirectoryConfig::RedisCluster { nodes } => {
                Arc::new(RedisClusterDirectory::connect(nodes, options).await?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::masked_url;

    #[test]
    fn passwords_are_masked() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://alice:hunter2@h:6379", "redis://alice:***@h:6379"),
            ("rediss://alice:p@ss@h/1?x=y", "rediss://alice:***@h/1?x=y"),
            ("redis://alice@h", "redis://alice@h"),
            ("memory", "memory"),
        ] {
            assert_eq!(masked_url(url), shown, "{url}");
        }
        let spec: super::DirectoryConfig =
            "redis://:hunter2@127.0.0.1:6379".parse().expect("valid");
        assert!(!spec.to_string().contains("hunter2"));
        let err = "redis://:hunter2@127.0.0.1:notaport"
            .parse::<super::DirectoryConfig>()
            .expect_err("bad port");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_backend() {
        assert_eq!("memory".parse(), Ok(DirectoryConfig::Memory));
        assert_eq!(
            "redis://127.0.0.1:6379".parse(),
            Ok(DirectoryConfig::Redis {
                url: "redis://127.0.0.1:6379".into()
            })
        );
        let cluster: DirectoryConfig = "redis-cluster://h1:7000,[::1]:7001"
            .parse()
            .expect("valid cluster");
        assert_eq!(
            cluster,
            DirectoryConfig::RedisCluster {
                nodes: vec![
                    NodeAddr {
                        host: "h1".into(),
                        port: 7000
                    },
                    NodeAddr {
                        host: "::1".into(),
                        port: 7001
                    },
                ]
            }
        );
        assert_eq!(cluster.to_string(), "redis-cluster://h1:7000,[::1]:7001");
    }

    #[test]
    fn rejects_malformed_strings() {
        for bad in ["", "Memory", "memory ", "http://x:1", "redis-cluster://"] {
            assert!(bad.parse::<DirectoryConfig>().is_err(), "{bad:?}");
        }
        assert!(matches!(
            "redis-cluster://h1".parse::<DirectoryConfig>(),
            Err(DirectoryConfigError::Node(n)) if n == "h1"
        ));
        assert!(matches!(
            "redis-cluster://h1:0".parse::<DirectoryConfig>(),
            Err(DirectoryConfigError::Node(_))
        ));
        assert!(matches!(
            "redis-cluster://h1:70000".parse::<DirectoryConfig>(),
            Err(DirectoryConfigError::Node(_))
        ));
        assert!(matches!(
            "redis-cluster://".parse::<DirectoryConfig>(),
            Err(DirectoryConfigError::NodeCount(0))
        ));
        assert!(matches!(
            "redis-cluster://a:1,,b:2".parse::<DirectoryConfig>(),
            Err(DirectoryConfigError::Node(n)) if n.is_empty()
        ));
        assert!(matches!(
            "ftp://x".parse::<DirectoryConfig>(),
            Err(DirectoryConfigError::Unknown(_))
        ));
    }

    #[test]
    fn serde_uses_the_text_form() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Cfg {
            directory: DirectoryConfig,
        }
        let cfg: Cfg =
            toml::from_str("directory = \"redis-cluster://a:1,b:2\"").expect("valid toml");
        assert!(
            matches!(cfg.directory, DirectoryConfig::RedisCluster { ref nodes } if nodes.len() == 2)
        );
        let text = toml::to_string(&cfg).expect("serializes");
        assert_eq!(text.trim(), "directory = \"redis-cluster://a:1,b:2\"");
        assert!(toml::from_str::<Cfg>("directory = \"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn cluster_strings_round_trip(
            nodes in proptest::collection::vec(("[a-z][a-z0-9.-]{0,20}", 1u16..), 1..8)
        ) {
            let text = format!(
                "redis-cluster://{}",
                nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",")
            );
            let parsed: DirectoryConfig = text.parse().expect("valid");
            prop_assert_eq!(parsed.to_string(), text);
        }

        #[test]
        fn a_password_never_shows(user in "[a-z]{0,4}", password in "[A-Za-z0-9]{6,20}") {
            let config: DirectoryConfig = format!("redis://{user}:{password}@h:6379/0")
                .parse()
                .expect("valid");
            let shown = config.to_string();
            prop_assert!(!shown.contains(&password), "{}", shown);
            prop_assert_eq!(shown, format!("redis://{user}:***@h:6379/0"));
        }

        #[test]
        fn whatever_parses_round_trips(s in "(memory|redis://|redis-cluster://)?\\PC{0,60}") {
            if let Ok(parsed) = s.parse::<DirectoryConfig>() {
                let again: DirectoryConfig = parsed.spec().parse().expect("the spec re-parses");
                prop_assert_eq!(&again, &parsed);
                // What people see re-parses too, to the same thing unless
                // a password was masked out of it.
                if !s.contains('@') {
                    let shown: DirectoryConfig = parsed.to_string().parse().expect("display re-parses");
                    prop_assert_eq!(shown, parsed);
                }
            }
        }
    }
}
