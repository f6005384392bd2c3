//! How a client connects, how long it waits, and how much it keeps in
//! flight.

use std::time::Duration;

use gdp_certs::Name;

/// Default bound on one request and its answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ClientOptions::retransmit_after`]: far above a request's
/// usual round trip, so that only lost ones are sent again.
pub const DEFAULT_RETRANSMIT_AFTER: Duration = Duration::from_secs(1);
/// Default bound on dialing and attaching to the router.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time during which a NAK "no route" is retried: a capsule just
/// created or a server just restarted takes a moment to reach the directory.
pub const DEFAULT_NO_ROUTE_RETRY: Duration = Duration::from_secs(2);
/// Default number of append batches in flight per writer.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// Default bound on the bytes of append batches in flight per writer: half
/// of a router's default queue toward one link (4 MiB), so that a writer
/// ahead of its server waits for acknowledgements instead of filling that
/// queue until the router drops batches (each then costs a resend after
/// [`DEFAULT_RETRANSMIT_AFTER`]).
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 2 << 20;
/// Default silence after which a subscription is renewed.
pub const DEFAULT_SUBSCRIPTION_REFRESH: Duration = Duration::from_secs(30);
/// Default QUIC keep-alive interval on the link to the router.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Default silence after which the link to the router counts as dead (a
/// router that crashed sends no close), and the client reattaches.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(6);
/// Default bound on received datagrams waiting for [`crate::Client::recv`].
pub const DEFAULT_DATAGRAM_QUEUE: usize = 1024;
/// Default bound on subscription events waiting for the stream's reader.
pub const DEFAULT_EVENT_QUEUE: usize = 64;
/// Default interval at which a tree subscription refreshes its join.
pub const DEFAULT_TREE_REFRESH: Duration = Duration::from_secs(10);
/// Default bound on Publish PDUs waiting for one tree subscription.
pub const DEFAULT_PUBLISH_QUEUE: usize = 256;
/// Default bound on verified records a tree subscription holds ahead of a
/// gap it is filling.
pub const DEFAULT_MAX_AHEAD: usize = 4096;

/// How a [`Subscription`](crate::Subscription) gets a capsule's new
/// records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SubscribeMode {
    /// Join the capsule's delivery tree in the routers: the router this
    /// client is attached to joins upstream toward the capsule's server
    /// once for all its subscribers, and copies each new record down to
    /// them, so the server sends each record once per tree link whatever
    /// the number of subscribers. The backlog, and whatever the tree loses,
    /// is read from the server by unicast. The default.
    #[default]
    Tree,
    /// Ask the capsule's server for a subscription of this client's own
    /// (server-side fan-out: one copy of each record per subscriber from
    /// the server). Kept for comparison and for routers without trees.
    Unicast,
}

/// Options of a [`Client`](crate::Client). Start from
/// [`ClientOptions::default`] and change what you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The router's name. `None` trusts whichever router answers at the
    /// address first, and pins its name for every reconnect.
    pub router: Option<Name>,
    /// Bound on dialing and attaching.
    pub connect_timeout: Duration,
    /// Bound on each request, including waiting for a reconnect.
    pub request_timeout: Duration,
    /// A request with no answer after this long is sent again (then after
    /// twice as long, and so on, up to 8 times this, within
    /// `request_timeout`): routers drop PDUs to a full queue rather than
    /// stall, and every capsule request is idempotent, so a lost request
    /// or answer costs a resend instead of the whole timeout. Zero never
    /// resends. Default: [`DEFAULT_RETRANSMIT_AFTER`] (1 s).
    pub retransmit_after: Duration,
    /// For how long a NAK "no route" is retried before it is reported.
    /// Zero reports the first one.
    pub no_route_retry: Duration,
    /// QUIC keep-alive interval on the link to the router.
    pub keep_alive: Duration,
    /// Silence after which the link counts as dead (longer than
    /// `keep_alive`). A router that crashed is noticed after this long.
    pub idle_timeout: Duration,
    /// Reconnect when the link goes down. Without it, everything fails
    /// with [`ClientError::LinkDown`](crate::ClientError::LinkDown) once the
    /// link is gone.
    pub reconnect: bool,
    /// First reconnect delay (doubling, with jitter).
    pub reconnect_initial: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Most append batches a writer keeps in flight.
    pub max_in_flight: usize,
    /// Most bytes of records a writer keeps in flight (one batch is always
    /// allowed, however long). Default: [`DEFAULT_MAX_IN_FLIGHT_BYTES`].
    pub max_in_flight_bytes: usize,
    /// Most records in one append batch (closed by one heartbeat). At
    /// most [`MAX_APPEND_RECORDS`](gdp_proto::capsule::MAX_APPEND_RECORDS).
    pub batch_records: usize,
    /// A subscription that has heard nothing for this long subscribes
    /// again from where it is, so one lost by a restarting server resumes
    /// (unicast mode); in tree mode, it reads the capsule's tail by unicast
    /// and fetches what it missed (a live tree republishes the tail every
    /// few seconds, so silence means the tree is broken somewhere).
    pub subscription_refresh: Duration,
    /// Bound on received datagrams waiting to be read; more are dropped and
    /// counted.
    pub datagram_queue: usize,
    /// Bound on verified subscription events waiting for the stream's
    /// reader; a slow reader slows its subscription.
    pub event_queue: usize,
    /// How subscriptions get new records. Default: [`SubscribeMode::Tree`].
    pub subscribe_mode: SubscribeMode,
    /// In tree mode, how often a subscription sends its join again (the
    /// router's membership is a lease; it is also sent right after the link
    /// comes back). Default: [`DEFAULT_TREE_REFRESH`] (10 s).
    pub tree_refresh: Duration,
    /// In tree mode, Publish PDUs that may wait for one subscription; more
    /// are dropped, and the records they held are read by unicast.
    /// Default: [`DEFAULT_PUBLISH_QUEUE`].
    pub publish_queue: usize,
    /// In tree mode, verified records a subscription keeps ahead of a gap
    /// it is filling; the highest beyond it are read again later.
    /// Default: [`DEFAULT_MAX_AHEAD`].
    pub max_ahead: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            router: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retransmit_after: DEFAULT_RETRANSMIT_AFTER,
            no_route_retry: DEFAULT_NO_ROUTE_RETRY,
            keep_alive: DEFAULT_KEEP_ALIVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            reconnect: true,
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            batch_records: gdp_proto::capsule::MAX_APPEND_RECORDS,
            subscription_refresh: DEFAULT_SUBSCRIPTION_REFRESH,
            datagram_queue: DEFAULT_DATAGRAM_QUEUE,
            event_queue: DEFAULT_EVENT_QUEUE,
            subscribe_mode: SubscribeMode::Tree,
            tree_refresh: DEFAULT_TREE_REFRESH,
            publish_queue: DEFAULT_PUBLISH_QUEUE,
            max_ahead: DEFAULT_MAX_AHEAD,
        }
    }
}

impl ClientOptions {
    /// These options, expecting the router to prove `router`.
    pub fn with_router(mut self, router: Name) -> Self {
        self.router = Some(router);
        self
    }

    /// These options with `timeout` for each request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// These options with subscriptions in `mode`.
    pub fn with_subscribe_mode(mut self, mode: SubscribeMode) -> Self {
        self.subscribe_mode = mode;
        self
    }

    /// These options with `timeout` for connecting.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Values clamped to what works: at least one batch in flight, batches
    /// of 1 to `MAX_APPEND_RECORDS` records, queues of at least one.
    pub(crate) fn sanitized(mut self) -> Self {
        self.max_in_flight = self.max_in_flight.max(1);
        self.batch_records = self
            .batch_records
            .clamp(1, gdp_proto::capsule::MAX_APPEND_RECORDS);
        self.datagram_queue = self.datagram_queue.max(1);
        self.event_queue = self.event_queue.max(1);
        self.publish_queue = self.publish_queue.max(1);
        self.max_ahead = self.max_ahead.max(1);
        if self.tree_refresh.is_zero() {
            self.tree_refresh = DEFAULT_TREE_REFRESH;
        }
        if self.keep_alive.is_zero() {
            self.keep_alive = DEFAULT_KEEP_ALIVE;
        }
        if self.idle_timeout <= self.keep_alive {
            self.idle_timeout = self.keep_alive * 3;
        }
        if self.reconnect_max < self.reconnect_initial {
            self.reconnect_max = self.reconnect_initial;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_clamps_to_working_values() {
        let o = ClientOptions {
            max_in_flight: 0,
            batch_records: 100_000,
            datagram_queue: 0,
            event_queue: 0,
            publish_queue: 0,
            max_ahead: 0,
            tree_refresh: Duration::ZERO,
            reconnect_initial: Duration::from_secs(9),
            reconnect_max: Duration::from_secs(1),
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(1),
            ..ClientOptions::default()
        };
        let o = o.sanitized();
        assert_eq!(o.max_in_flight, 1);
        assert_eq!(o.batch_records, gdp_proto::capsule::MAX_APPEND_RECORDS);
        assert_eq!(o.datagram_queue, 1);
        assert_eq!(o.event_queue, 1);
        assert_eq!(o.publish_queue, 1);
        assert_eq!(o.max_ahead, 1);
        assert_eq!(o.tree_refresh, DEFAULT_TREE_REFRESH);
        assert_eq!(o.subscribe_mode, SubscribeMode::Tree);
        assert_eq!(o.reconnect_max, Duration::from_secs(9));
        assert_eq!(o.idle_timeout, Duration::from_secs(6));
    }

    #[test]
    fn builders_set_fields() {
        let name = Name::from_bytes([4; 32]);
        let o = ClientOptions::default()
            .with_router(name)
            .with_request_timeout(Duration::from_millis(300))
            .with_connect_timeout(Duration::from_millis(200))
            .with_subscribe_mode(SubscribeMode::Unicast);
        assert_eq!(o.subscribe_mode, SubscribeMode::Unicast);
        assert_eq!(o.router, Some(name));
        assert_eq!(o.request_timeout, Duration::from_millis(300));
        assert_eq!(o.connect_timeout, Duration::from_millis(200));
    }
}
