//! The driver's dials to other routers: tracked, bounded, backed off and
//! cancelled.
//!
//! A `Dial` action of the core becomes one task that tries the router's
//! addresses in turn and reports back as a [`Completion`]: `DialFailed`
//! when every address failed, `Dialed` when a link came up (its `Up` has
//! then already reached the driver). The tasks are kept by router name:
//!
//! - one dial per router at a time: a second request for a router being
//!   dialed is left to the running one, which reports for both;
//! - at most [`DriverConfig::max_dials`] at once: a request beyond it is
//!   refused, counted, and reported to the core as a failed dial at once;
//! - after a failed dial, a router is backed off: requests within
//!   [`DriverConfig::dial_backoff`] (doubling after each further failure, up
//!   to [`DriverConfig::dial_backoff_max`]) are refused the same way;
//! - a link to the router that comes up inbound (the router dialed us)
//!   cancels the dial, and a shutdown cancels every dial.
//!
//! A dial's task registers its link through the transport, which completes
//! the registration even when the dial itself is cancelled, so cancelling
//! never leaves a half-registered link.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use gdp_certs::Name;
use gdp_link::Transport;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::DriverConfig;
use super::directory::Completion;

/// Most routers remembered as backed off; beyond it, entries whose backoff
/// has passed are forgotten, and if none has, the new one is not kept.
pub(crate) const MAX_BACKED_OFF: usize = 4096;

/// Whether this host has a route to `addr`. Connecting a UDP socket asks
/// the kernel's routing table and fails at once (network unreachable) when
/// there is none, where a QUIC handshake would only time out after
/// `dial_timeout`: a router on a stub network then learns at once that it
/// must go through its gateway.
fn routable(addr: SocketAddr) -> std::io::Result<()> {
    let any = match addr {
        SocketAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    std::net::UdpSocket::bind(any)?.connect(addr)
}

/// Why a dial was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// [`DriverConfig::max_dials`] dials were running.
    Limit,
    /// The router failed recently and is backed off.
    Backoff,
}

/// What became of a dial request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Started {
    /// A dial task is running for it now.
    Dialing,
    /// One was already running; it reports for this request too.
    Already,
    /// Refused: the core should treat it as failed.
    Refused(Refused),
}

/// Backoff state of one router.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    until: Instant,
    delay: Duration,
}

/// The driver's running dials and the routers backed off.
pub(crate) struct Dials {
    running: HashMap<Name, AbortHandle>,
    backoff: HashMap<Name, Backoff>,
    max: usize,
    initial: Duration,
    ceiling: Duration,
}

impl Dials {
    pub(crate) fn new(config: &DriverConfig) -> Self {
        Dials {
            running: HashMap::new(),
            backoff: HashMap::new(),
            max: config.max_dials,
            initial: config.dial_backoff,
            ceiling: config.dial_backoff_max.max(config.dial_backoff),
        }
    }

    /// Dials running now.
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// Routers backed off now (some may have served their time).
    pub(crate) fn backed_off(&self) -> usize {
        self.backoff.len()
    }

    /// Whether a request for `router` at `now` may start a dial.
    fn admit(&self, router: Name, now: Instant) -> Result<(), Refused> {
        if self.backoff.get(&router).is_some_and(|b| b.until > now) {
            return Err(Refused::Backoff);
        }
        if self.running.len() >= self.max {
            return Err(Refused::Limit);
        }
        Ok(())
    }

    /// Starts a dial of `router` at `addresses` unless one is running or it
    /// is refused.
    pub(crate) fn start(
        &mut self,
        router: Name,
        addresses: Vec<SocketAddr>,
        transport: &Transport,
        done: &mpsc::Sender<Completion>,
    ) -> Started {
        if self.running.contains_key(&router) {
            return Started::Already;
        }
        if let Err(refused) = self.admit(router, Instant::now()) {
            return Started::Refused(refused);
        }
        let transport = transport.clone();
        let done = done.clone();
        let task = tokio::spawn(async move {
            let mut error = String::from("no address to dial");
            for addr in addresses {
                if let Err(e) = routable(addr) {
                    tracing::debug!(router = %router.short(), %addr, error = %e, "no route to the address");
                    error = format!("no route to {addr}: {e}");
                    continue;
                }
                match transport.dial(addr, router).await {
                    Ok(_) => {
                        let _ = done.send(Completion::Dialed { router }).await;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(router = %router.short(), %addr, error = %e, "dial attempt failed");
                        error = e.to_string();
                    }
                }
            }
            let _ = done.send(Completion::DialFailed { router, error }).await;
        });
        self.running.insert(router, task.abort_handle());
        Started::Dialing
    }

    /// The dial of `router` made a link: it is no longer backed off.
    pub(crate) fn succeeded(&mut self, router: Name) {
        self.running.remove(&router);
        self.backoff.remove(&router);
    }

    /// The dial of `router` failed on every address: back it off (unless
    /// it was cancelled meanwhile, the router having linked to us).
    pub(crate) fn failed(&mut self, router: Name) {
        if self.running.remove(&router).is_none() {
            return;
        }
        let now = Instant::now();
        let delay = match self.backoff.get(&router) {
            Some(b) => b.delay.saturating_mul(2).min(self.ceiling),
            None => self.initial,
        };
        if !self.backoff.contains_key(&router) && self.backoff.len() >= MAX_BACKED_OFF {
            self.backoff.retain(|_, b| b.until > now);
            if self.backoff.len() >= MAX_BACKED_OFF {
                return;
            }
        }
        self.backoff.insert(
            router,
            Backoff {
                until: now + delay,
                delay,
            },
        );
    }

    /// A link to `router` came up by the router's own dial: a dial of ours
    /// is no longer needed. True if one was cancelled.
    pub(crate) fn linked(&mut self, router: Name) -> bool {
        self.backoff.remove(&router);
        match self.running.remove(&router) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Cancels every dial (shutdown).
    pub(crate) fn cancel_all(&mut self) {
        for (_, task) in self.running.drain() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(b: u8) -> Name {
        Name::from_bytes([b; 32])
    }

    fn dials(max: usize) -> Dials {
        Dials::new(&DriverConfig {
            max_dials: max,
            dial_backoff: Duration::from_secs(1),
            dial_backoff_max: Duration::from_secs(4),
            ..DriverConfig::default()
        })
    }

    /// Marks `router` as being dialed.
    fn running(d: &mut Dials, router: Name) {
        let task = tokio::spawn(std::future::pending::<()>());
        d.running.insert(router, task.abort_handle());
    }

    #[test]
    fn loopback_is_routable_and_the_check_sends_nothing() {
        let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        assert!(routable(addr).is_ok());
        let mut buf = [0u8; 16];
        assert!(listener.recv(&mut buf).is_err(), "connect sends no packet");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_a_router_off_exponentially_up_to_the_ceiling() {
        let mut d = dials(4);
        let r = name(1);
        let mut delays = Vec::new();
        for _ in 0..5 {
            running(&mut d, r);
            d.failed(r);
            let b = d.backoff[&r];
            delays.push(b.delay);
            assert_eq!(d.admit(r, Instant::now()), Err(Refused::Backoff));
            assert_eq!(d.admit(r, b.until), Ok(()));
        }
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![1, 2, 4, 4, 4]);
        d.succeeded(r);
        assert_eq!(d.admit(r, Instant::now()), Ok(()));
        assert_eq!(d.backed_off(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_dial_limit_refuses_and_one_router_is_dialed_once() {
        let mut d = dials(2);
        for b in 1..=2 {
            running(&mut d, name(b));
        }
        assert_eq!(d.admit(name(3), Instant::now()), Err(Refused::Limit));
        assert!(d.linked(name(1)), "an inbound link cancels the dial");
        d.failed(name(1));
        assert_eq!(d.backed_off(), 0, "a cancelled dial backs nothing off");
        assert_eq!(d.running(), 1);
        assert_eq!(d.admit(name(3), Instant::now()), Ok(()));
        d.cancel_all();
        assert_eq!(d.running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_table_is_bounded() {
        let mut d = dials(1);
        for i in 0..MAX_BACKED_OFF as u32 + 10 {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            let router = Name::from_bytes(bytes);
            running(&mut d, router);
            d.failed(router);
        }
        assert_eq!(d.backed_off(), MAX_BACKED_OFF);
        // Once the backoffs have passed, new failures replace them.
        tokio::time::advance(Duration::from_secs(2)).await;
        running(&mut d, name(0xee));
        d.failed(name(0xee));
        assert_eq!(d.backed_off(), 1);
    }
}
