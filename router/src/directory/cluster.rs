//! The Redis Cluster directory.
//!
//! Same layout and scripts as [`RedisDirectory`](super::RedisDirectory):
//! every operation touches one key, `gdp:v1:route:<name>`, so it runs on the
//! master owning that key's hash slot and names spread over the whole
//! cluster. The client learns the slot map from the seed nodes, follows
//! `MOVED`/`ASK` redirections and reconnects to nodes by itself; each call
//! is still bounded by the per-call timeout of [`DirectoryOptions`].

use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Name, Timestamp};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use super::redis::{RedisStore, map_error};
use super::{
    Backend, BoxFuture, Directory, DirectoryConfigError, DirectoryError, DirectoryOptions, Lookup,
    NodeAddr, Unavailable,
};

/// A [`Directory`] on a Redis Cluster. Cheap to clone.
#[derive(Clone)]
pub struct RedisClusterDirectory {
    store: RedisStore<ClusterConnection>,
    seeds: Vec<NodeAddr>,
}

impl std::fmt::Debug for RedisClusterDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterDirectory")
            .field("seeds", &self.seeds)
            .finish_non_exhaustive()
    }
}

impl RedisClusterDirectory {
    /// Connects to the cluster through `seeds` (one reachable node is
    /// enough) and loads its slot map.
    ///
    /// Fails with [`DirectoryError::Unavailable`] when no seed answers
    /// within `options.connect_timeout`.
    pub async fn connect(
        seeds: &[NodeAddr],
        options: &DirectoryOptions,
    ) -> Result<Self, DirectoryError> {
        if seeds.is_empty() {
            return Err(DirectoryConfigError::NodeCount(0).into());
        }
        let client = ClusterClientBuilder::new(seeds.iter().map(NodeAddr::url))
            .connection_timeout(options.timeout)
            .response_timeout(options.timeout)
            .retries(3)
            .min_retry_wait(5)
            .max_retry_wait(100)
            .build()
            .map_err(|e| DirectoryConfigError::RedisUrl(e.to_string()))?;
        let conn = match tokio::time::timeout(
            options.connect_timeout,
            client.get_async_connection(),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(map_error(Backend::RedisCluster, e)),
            Err(_) => {
                return Err(DirectoryError::Unavailable {
                    backend: Backend::RedisCluster,
                    cause: Unavailable::Timeout(options.connect_timeout),
                });
            }
        };
        Ok(RedisClusterDirectory {
            store: RedisStore::new(conn, Backend::RedisCluster, options.timeout),
            seeds: seeds.to_vec(),
        })
    }

    /// The seed nodes this directory was built from.
    pub fn seeds(&self) -> &[NodeAddr] {
        &self.seeds
    }
}

impl Directory for RedisClusterDirectory {
    fn backend(&self) -> Backend {
        Backend::RedisCluster
    }

    fn publish(
        &self,
        name: Name,
        router: Name,
        record: Bytes,
        expires: Timestamp,
    ) -> BoxFuture<'_, Result<(), DirectoryError>> {
        Box::pin(self.store.publish(name, router, record, expires))
    }

    fn unpublish(&self, name: Name, router: Name) -> BoxFuture<'_, Result<(), DirectoryError>> {
        Box::pin(self.store.unpublish(name, router))
    }

    fn lookup(&self, name: Name) -> BoxFuture<'_, Result<Lookup, DirectoryError>> {
        Box::pin(self.store.lookup(name))
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, DirectoryError>> {
        Box::pin(self.store.ping())
    }

    fn fields(&self, name: Name) -> BoxFuture<'_, Result<Vec<(Name, Bytes)>, DirectoryError>> {
        Box::pin(self.store.fields(name))
    }

    fn remove_fields(
        &self,
        name: Name,
        routers: Vec<Name>,
    ) -> BoxFuture<'_, Result<usize, DirectoryError>> {
        Box::pin(self.store.remove_fields(name, routers))
    }
}
