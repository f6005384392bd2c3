//! The driver's directory audit on paused tokio time: a router started from
//! the library over a memory directory that the test can reach into.
//!
//! The audit runs on a tokio interval (10 s by default), so under paused
//! time the test moves the clock to each tick instead of waiting for it:
//! a first audit finds the router's own record and leaves it alone; after
//! the directory loses every record, nothing happens until the next tick,
//! which publishes them all again.

use std::sync::Arc;
use std::time::Duration;

use gdp_certs::{Identity, Kind, Name};
use gdp_link::Transport;
use gdp_router::config::RouterSettings;
use gdp_router::core::RouterCore;
use gdp_router::directory::{Directory, MemoryDirectory};
use gdp_router::driver::{self, DirectoryStats, RouterHandle};
use gdp_testkit::eventually;
use tokio::time::Instant;

/// Longest (virtual) wait for the driver to act on a tick.
const WAIT: Duration = Duration::from_secs(5);

async fn stats(router: &RouterHandle) -> DirectoryStats {
    router
        .snapshot()
        .await
        .expect("the router is running")
        .driver
        .directory
}

async fn has_record(directory: &MemoryDirectory, name: Name) -> bool {
    let lookup = directory.lookup(name).await.expect("memory answers");
    !lookup.records.is_empty()
}

#[tokio::test(start_paused = true)]
async fn an_audit_republishes_what_the_directory_lost_at_its_next_tick() {
    let directory = MemoryDirectory::new();
    let mut settings = RouterSettings::default();
    settings.listen = "127.0.0.1:0".parse().expect("an address");
    let audit = settings.audit_interval;
    assert_eq!(audit, Duration::from_secs(10), "the default interval");

    let identity = Identity::generate(Kind::Router, "audited").expect("an identity");
    let name = identity.name();
    let (transport, events) =
        Transport::bind(identity.clone(), settings.transport_config()).expect("binds");
    let addresses = settings.advertised_addresses(transport.local_addr());
    let core =
        RouterCore::new(identity, settings.core_config(addresses, None)).expect("valid settings");
    // The driver's audit interval starts when its task first runs, which is
    // before the clock moves: ticks fall at `start + k * audit`.
    let start = Instant::now();
    let router = driver::spawn(
        core,
        transport,
        events,
        Arc::new(directory.clone()),
        settings.driver_config(),
    );
    let handle = router.handle().clone();
    eventually(WAIT, "the router published its own record", || {
        has_record(&directory, name)
    })
    .await;

    // The first audit finds the record and repairs nothing.
    tokio::time::sleep_until(start + audit).await;
    eventually(WAIT, "the first audit ran", || async {
        stats(&handle).await.audits == 1
    })
    .await;
    assert_eq!(stats(&handle).await.repairs, 0);

    // The directory forgets everything, as a Redis restarted empty would.
    directory
        .unpublish(name, name)
        .await
        .expect("memory answers");
    // Until the next tick nobody notices.
    tokio::time::sleep_until(start + 2 * audit - Duration::from_millis(1)).await;
    assert!(!has_record(&directory, name).await);
    let before = stats(&handle).await;
    assert_eq!((before.audits, before.repairs), (1, 0));

    // The next tick finds the record missing and publishes it again.
    eventually(WAIT, "the second audit republished the record", || {
        has_record(&directory, name)
    })
    .await;
    let after = stats(&handle).await;
    assert_eq!((after.audits, after.repairs, after.republished), (2, 1, 1));
    assert!(
        start.elapsed() < 2 * audit + WAIT,
        "{:?} of virtual time",
        start.elapsed()
    );
    router.shutdown().await.expect("the router stops");
}
