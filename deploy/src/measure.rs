//! Measuring a data network between two hosts with UDP traffic of our own:
//! round trips (delay and loss) and a flood (rate).
//!
//! [`echo`] runs in the receiving host's namespace: it answers probe
//! packets (`P...`) with the same bytes, counts flood packets (`F...`) and
//! their bytes, and answers a report request (`R`) with what it counted.
//! [`probe`] runs in the sending host's namespace: `count` probes at
//! `interval`, then a flood of 1200-byte packets for `flood`, then the
//! report. Round-trip loss `r` means a one-way loss of `1 - sqrt(1 - r)`
//! when both directions are impaired alike.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The size of a flood packet's UDP payload.
pub const FLOOD_PAYLOAD: usize = 1200;

/// What [`probe`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Probes sent.
    pub sent: usize,
    /// Probes answered.
    pub answered: usize,
    /// Round trips lost, in percent.
    pub round_trip_loss_percent: f64,
    /// The one-way loss those imply, in percent, if both ways lose alike.
    pub one_way_loss_percent: f64,
    /// Round trip times, in milliseconds: min, median, 90th percentile, max
    /// (all 0 when nothing was answered).
    pub rtt_ms: [f64; 4],
    /// Flood packets sent.
    pub flood_sent: u64,
    /// Flood packets that arrived.
    pub flood_received: u64,
    /// The rate they arrived at, in bits per second of UDP payload plus
    /// IP, UDP and Ethernet headers (42 bytes a packet).
    pub flood_rate_bps: f64,
}

/// Answers probes and counts floods on `bind` until killed. Prints
/// `udp-echo ready` once bound.
pub fn echo(bind: SocketAddr) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    println!("udp-echo ready on {bind}");
    let mut buf = vec![0u8; 65_536];
    let mut flood: (u64, Option<Instant>, Option<Instant>) = (0, None, None);
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        match buf.first() {
            Some(b'P') => {
                let _ = socket.send_to(&buf[..n], from);
            }
            Some(b'F') => {
                let now = Instant::now();
                flood.0 += 1;
                flood.1.get_or_insert(now);
                flood.2 = Some(now);
            }
            Some(b'R') => {
                let span = match (flood.1, flood.2) {
                    (Some(a), Some(b)) => (b - a).as_micros(),
                    _ => 0,
                };
                let _ = socket.send_to(format!("{} {span}", flood.0).as_bytes(), from);
                flood = (0, None, None);
            }
            _ => {}
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // q in [0, 1], so the index is in range.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Probes the echo at `to`: `count` round trips `interval` apart, then a
/// flood for `flood` (none when zero).
pub fn probe(
    to: SocketAddr,
    count: usize,
    interval: Duration,
    flood: Duration,
) -> anyhow::Result<Report> {
    let socket = UdpSocket::bind(("0.0.0.0", 0)).context("binding a UDP socket")?;
    socket.connect(to)?;
    let start = Instant::now();
    let rtts = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let reader = {
        let socket = socket.try_clone()?;
        let rtts = Arc::clone(&rtts);
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut quiet_since = Instant::now();
            loop {
                match socket.recv(&mut buf) {
                    Ok(17) if buf[0] == b'P' => {
                        let mut sent = [0u8; 16];
                        sent.copy_from_slice(&buf[1..17]);
                        let sent = Duration::from_nanos(
                            u64::try_from(u128::from_be_bytes(sent)).unwrap_or(u64::MAX),
                        );
                        let rtt = start.elapsed().saturating_sub(sent);
                        if let Ok(mut r) = rtts.lock() {
                            r.push(rtt.as_secs_f64() * 1000.0);
                        }
                        quiet_since = Instant::now();
                    }
                    Ok(_) => {}
                    Err(_) if quiet_since.elapsed() > Duration::from_secs(2) => return,
                    Err(_) => {}
                }
            }
        })
    };
    for i in 0..count {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut packet = vec![b'P'];
        packet.extend_from_slice(&start.elapsed().as_nanos().to_be_bytes());
        let _ = socket.send(&packet);
    }
    let _ = reader.join();
    let mut rtts = rtts.lock().map(|r| r.clone()).unwrap_or_default();
    rtts.sort_by(f64::total_cmp);
    let answered = rtts.len();
    let round_trip = if count == 0 {
        0.0
    } else {
        1.0 - answered as f64 / count as f64
    };
    let mut report = Report {
        sent: count,
        answered,
        round_trip_loss_percent: round_trip * 100.0,
        one_way_loss_percent: (1.0 - (1.0 - round_trip).sqrt()) * 100.0,
        rtt_ms: [
            percentile(&rtts, 0.0),
            percentile(&rtts, 0.5),
            percentile(&rtts, 0.9),
            percentile(&rtts, 1.0),
        ],
        flood_sent: 0,
        flood_received: 0,
        flood_rate_bps: 0.0,
    };
    if flood.is_zero() {
        return Ok(report);
    }
    let mut packet = vec![0u8; FLOOD_PAYLOAD];
    packet[0] = b'F';
    let until = Instant::now() + flood;
    while Instant::now() < until {
        if socket.send(&packet).is_ok() {
            report.flood_sent += 1;
        }
    }
    // Let the queues drain, then ask (the request or its answer may be lost).
    std::thread::sleep(Duration::from_millis(300));
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 64];
    for _ in 0..10 {
        socket.send(b"R")?;
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let mut fields = text.split_whitespace().map(str::parse::<u64>);
            if let (Some(Ok(received)), Some(Ok(span_us))) = (fields.next(), fields.next()) {
                report.flood_received = received;
                if span_us > 0 && received > 1 {
                    let bits = (received - 1) as f64 * (FLOOD_PAYLOAD + 42) as f64 * 8.0;
                    report.flood_rate_bps = bits / (span_us as f64 / 1e6);
                }
                break;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_probe_and_flood() {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("addr")
        };
        std::thread::spawn(move || echo(port));
        std::thread::sleep(Duration::from_millis(100));
        let r = probe(
            port,
            20,
            Duration::from_millis(1),
            Duration::from_millis(200),
        )
        .expect("probe");
        assert_eq!(r.sent, 20);
        assert!(r.answered >= 18, "{r:?}");
        assert!(r.rtt_ms[0] >= 0.0 && r.rtt_ms[0] <= r.rtt_ms[3], "{r:?}");
        assert!(r.flood_sent > 0 && r.flood_received > 0, "{r:?}");
        assert!(r.flood_rate_bps > 0.0, "{r:?}");
    }
}
