//! What a running capsule server shows of itself to its admin API: its
//! name, the router it is attached to, its service counters and its store.
//! [`run_observed`](crate::driver::run_observed) fills an [`Observer`] as
//! the server starts and keeps the router current; readers never block the
//! server (they read the store in their own transactions).

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use gdp_certs::Name;

use crate::host::HostHandle;
use crate::stats::ServiceStats;
use crate::store::Store;

/// A window on a running server. Create one, hand it to
/// [`run_observed`](crate::driver::run_observed), read it from elsewhere.
#[derive(Debug)]
pub struct Observer {
    started: Instant,
    name: OnceLock<Name>,
    store: OnceLock<Store>,
    host: OnceLock<HostHandle>,
    router: Mutex<Option<Name>>,
}

impl Default for Observer {
    fn default() -> Self {
        Observer::new()
    }
}

impl Observer {
    /// An observer of a server not started yet.
    pub fn new() -> Self {
        Observer {
            started: Instant::now(),
            name: OnceLock::new(),
            store: OnceLock::new(),
            host: OnceLock::new(),
            router: Mutex::new(None),
        }
    }

    /// Seconds since the observer was made (about when the server started).
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The server's name, once its key is loaded.
    pub fn name(&self) -> Option<Name> {
        self.name.get().copied()
    }

    /// The router the server is attached to now, if it is.
    pub fn router(&self) -> Option<Name> {
        *self
            .router
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The service's counters, once it runs.
    pub fn stats(&self) -> Option<ServiceStats> {
        self.host.get().map(HostHandle::stats)
    }

    /// The store, once it is open.
    pub fn store(&self) -> Option<&Store> {
        self.store.get()
    }

    pub(crate) fn set_name(&self, name: Name) {
        let _ = self.name.set(name);
    }

    pub(crate) fn set_store(&self, store: Store) {
        let _ = self.store.set(store);
    }

    pub(crate) fn set_host(&self, host: HostHandle) {
        let _ = self.host.set(host);
    }

    pub(crate) fn set_router(&self, router: Option<Name>) {
        *self
            .router
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = router;
    }
}
