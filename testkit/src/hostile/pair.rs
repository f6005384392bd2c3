//! The unrelated pair: two well-behaved endpoints attached to the router
//! under attack, pinging each other through it the whole time.
//!
//! `a` sends a small Data PDU to `b` every interval; `b` echoes it back;
//! `a` records the round trip (or a loss, when no echo came within
//! [`PING_TIMEOUT`]) before the next ping. Both bind 127.0.0.1, apart from
//! the attackers' [`ATTACKER_IP`](super::ATTACKER_IP).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gdp_certs::{Identity, Kind, Name};
use gdp_link::endpoint::{EndpointConfig, EndpointEvent, EndpointLink, EndpointReceiver};
use gdp_proto::pdu::{Pdu, PduHeader, PduType};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Stop, identity};

/// Longest a ping waits for its echo before it counts as lost.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the pair may take to attach and exchange a first ping.
const WARM_UP: Duration = Duration::from_secs(10);

/// One ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingSample {
    /// When it was sent, since the pair started.
    pub at: Duration,
    /// Its round trip; `None` when it was lost.
    pub rtt: Option<Duration>,
}

/// Every ping of a pair, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PingLog {
    /// The pings.
    pub samples: Vec<PingSample>,
    /// How long the pair ran.
    pub ran: Duration,
}

impl PingLog {
    /// Pings answered.
    pub fn answered(&self) -> usize {
        self.samples.iter().filter(|s| s.rtt.is_some()).count()
    }

    /// Pings lost.
    pub fn lost(&self) -> usize {
        self.samples.len() - self.answered()
    }

    /// The longest time without an answer: between the start and the first
    /// answer, between consecutive answers, and between the last answer
    /// and the end.
    pub fn max_gap(&self) -> Duration {
        let mut last = Duration::ZERO;
        let mut gap = Duration::ZERO;
        for s in &self.samples {
            if let Some(rtt) = s.rtt {
                let answered = s.at + rtt;
                gap = gap.max(answered.saturating_sub(last));
                last = answered;
            }
        }
        gap.max(self.ran.saturating_sub(last))
    }

    /// The pings sent in `[from, to)`.
    pub fn between(&self, from: Duration, to: Duration) -> PingLog {
        PingLog {
            samples: self
                .samples
                .iter()
                .filter(|s| s.at >= from && s.at < to)
                .copied()
                .collect(),
            ran: to.saturating_sub(from),
        }
    }

    /// The round trips of the answered pings.
    pub fn rtts(&self) -> impl Iterator<Item = Duration> + '_ {
        self.samples.iter().filter_map(|s| s.rtt)
    }

    /// A one-line summary (answered, lost, longest gap, slowest ping).
    pub fn summary(&self) -> String {
        format!(
            "{} pings answered, {} lost, longest gap {:?}, slowest {:?}",
            self.answered(),
            self.lost(),
            self.max_gap(),
            self.rtts().max().unwrap_or_default()
        )
    }
}

/// Two endpoints pinging each other through a router, in the background.
pub struct PingPair {
    started: Instant,
    stop: Stop,
    pinger: JoinHandle<PingLog>,
    echo: JoinHandle<()>,
    names: (Name, Name),
}

/// Endpoint settings of the pair: from 127.0.0.1, expecting `router`.
fn pair_config(addr: SocketAddr, router: Name) -> EndpointConfig {
    let mut config = EndpointConfig::new(addr).with_router(router);
    config.transport.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.transport.keep_alive = Duration::from_millis(300);
    config.transport.idle_timeout = Duration::from_secs(5);
    config.attach_timeout = Duration::from_secs(5);
    config
}

async fn attach(
    addr: SocketAddr,
    router: Name,
    label: &str,
) -> (Identity, EndpointLink, EndpointReceiver) {
    let id = identity(Kind::Client, label);
    let (link, rx) = EndpointLink::connect(&id, &pair_config(addr, router))
        .await
        .unwrap_or_else(|e| panic!("pair endpoint {label} attaches: {e}"));
    (id, link, rx)
}

fn ping(dst: Name, src: Name, seq: u64) -> Pdu {
    Pdu::new(
        PduHeader::new(PduType::Data, dst, src, seq),
        Bytes::from_static(b"ping"),
    )
    .expect("a small PDU")
}

/// The next Data PDU numbered `seq` on `rx` within `wait` (others are
/// skipped); false when none came.
async fn wait_for(rx: &mut EndpointReceiver, seq: u64, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(EndpointEvent::Pdu { pdu, .. }))
                if pdu.header.ptype == PduType::Data && pdu.header.seq == seq =>
            {
                return true;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

impl PingPair {
    /// Attaches `a` and `b` to the router `router` at `addr`, waits until a
    /// first ping goes round (the routes are open), then pings every
    /// `interval` in the background.
    ///
    /// # Panics
    ///
    /// When either cannot attach, or no ping goes round within 10 s.
    pub async fn start(addr: SocketAddr, router: Name, interval: Duration) -> PingPair {
        let (a, a_link, mut a_rx) = attach(addr, router, "pair-a").await;
        let (b, b_link, mut b_rx) = attach(addr, router, "pair-b").await;
        let (a_name, b_name) = (a.name(), b.name());
        let echo = tokio::spawn(async move {
            while let Some(event) = b_rx.recv().await {
                if let EndpointEvent::Pdu { pdu, .. } = event
                    && pdu.header.ptype == PduType::Data
                {
                    let back = ping(pdu.header.src, b_name, pdu.header.seq);
                    if b_link.send(&back).await.is_err() {
                        return;
                    }
                }
            }
        });
        let deadline = Instant::now() + WARM_UP;
        let mut seq = 0;
        loop {
            seq += 1;
            a_link
                .send(&ping(b_name, a_name, seq))
                .await
                .expect("the pair's link is up");
            if wait_for(&mut a_rx, seq, Duration::from_millis(300)).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the pair never pinged through the router"
            );
        }
        let started = Instant::now();
        let stop = Stop::after(Duration::from_secs(24 * 3600));
        let until = stop.clone();
        let pinger = tokio::spawn(async move {
            let mut log = PingLog::default();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            while !until.is_over() {
                tick.tick().await;
                seq += 1;
                let at = started.elapsed();
                let sent = Instant::now();
                let rtt = if a_link.send(&ping(b_name, a_name, seq)).await.is_ok()
                    && wait_for(&mut a_rx, seq, PING_TIMEOUT).await
                {
                    Some(sent.elapsed())
                } else {
                    None
                };
                log.samples.push(PingSample { at, rtt });
            }
            log.ran = started.elapsed();
            a_link.close("done");
            log
        });
        PingPair {
            started,
            stop,
            pinger,
            echo,
            names: (a_name, b_name),
        }
    }

    /// The time since the pings started (to mark the phases of a run).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The names of `a` and `b`.
    pub fn names(&self) -> (Name, Name) {
        self.names
    }

    /// Stops pinging and returns every ping.
    ///
    /// # Panics
    ///
    /// When the pinging task panicked.
    pub async fn finish(self) -> PingLog {
        self.stop.cancel();
        let log = self.pinger.await.expect("the pinging task ends");
        self.echo.abort();
        log
    }
}
