//! The data networks of a topology: segments (shared L2 networks) and
//! point-to-point links between hosts, each with its own /24 and an
//! optional impairment (rate, delay, loss).
//!
//! ```toml
//! [[segment]]
//! name = "lan1"              # also the interface's name in each member
//! subnet = "10.80.1.0/24"    # optional: else the next free 10.78.N.0/24
//! hosts = ["r1", "r2", "c1"] # members get .1, .2, .3 in this order
//! rate = "100mbit"           # optional, each member's sending rate
//! delay = "5ms"              # optional, added to each packet a member sends
//! loss = 0.5                 # optional, percent of a member's packets dropped
//!
//! [[link]]
//! ends = ["r2", "r3"]        # name: "r2-r3" unless `name` says otherwise
//! delay = "20ms"             # each direction
//! ```
//!
//! A topology without segments and links has one flat network (the
//! management network of [`crate::topology`]) that carries everything, as
//! before these existed. With them, GDP traffic between hosts goes only
//! over the networks they share; the management network carries the
//! directory and the admin APIs.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::topology::{Subnet, TopologyError};

/// The longest network name: it names an interface (15 characters at most
/// in Linux).
pub const MAX_NETWORK_NAME_LEN: usize = 15;
/// The longest delay accepted.
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// The slowest rate accepted, in bits per second.
pub const MIN_RATE: u64 = 8_000;
/// Loss is kept in units of 1/[`LOSS_SCALE`]: 0.01 %.
pub const LOSS_SCALE: u32 = 10_000;
/// Where the automatic subnets of data networks start: `10.78.0.0/24`,
/// then `10.78.1.0/24` and so on, skipping any /24 already taken.
pub const FIRST_AUTO_SUBNET: [u8; 3] = [10, 78, 0];

/// A rate in bits per second, written like `tc` does: `100mbit`, `512kbit`,
/// `1gbit`, `64000bit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate(pub u64);

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim().to_ascii_lowercase();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(digits);
        let number: u64 = number
            .parse()
            .map_err(|_| "write a whole number and a unit, such as 100mbit".to_owned())?;
        let scale: u64 = match unit {
            "bit" => 1,
            "kbit" => 1_000,
            "mbit" => 1_000_000,
            "gbit" => 1_000_000_000,
            _ => return Err("the unit is one of bit, kbit, mbit, gbit".to_owned()),
        };
        let bits = number
            .checked_mul(scale)
            .filter(|b| *b <= 100_000_000_000)
            .ok_or_else(|| "more than 100gbit".to_owned())?;
        if bits < MIN_RATE {
            return Err(format!("less than {MIN_RATE}bit"));
        }
        Ok(Rate(bits))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b if b % 1_000_000_000 == 0 => write!(f, "{}gbit", b / 1_000_000_000),
            b if b % 1_000_000 == 0 => write!(f, "{}mbit", b / 1_000_000),
            b if b % 1_000 == 0 => write!(f, "{}kbit", b / 1_000),
            b => write!(f, "{b}bit"),
        }
    }
}

/// Parses a delay such as `20ms`, `500us` or `1s` (at most [`MAX_DELAY`]).
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}: write it like 20ms, 500us or 1s"))?;
    if d > MAX_DELAY {
        return Err(format!("more than {}s", MAX_DELAY.as_secs()));
    }
    Ok(d)
}

/// Converts a loss in percent (0 to 100, steps of 0.01) to units of
/// 1/[`LOSS_SCALE`].
pub fn parse_loss(percent: f64) -> Result<u32, String> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err("a percentage from 0 to 100".to_owned());
    }
    // In range, so the product fits.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((percent * f64::from(LOSS_SCALE) / 100.0).round() as u32)
}

/// What a network does to the packets each member sends onto it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impairment {
    /// The most each member sends, in bits per second.
    pub rate: Option<Rate>,
    /// Added to every packet a member sends, in microseconds.
    pub delay_us: Option<u64>,
    /// The share of a member's packets dropped, in units of
    /// 1/[`LOSS_SCALE`] (0.01 %).
    pub loss: Option<u32>,
}

impl Impairment {
    /// Whether it changes nothing.
    pub fn is_none(&self) -> bool {
        self.rate.is_none() && self.delay().is_none() && self.loss.is_none_or(|l| l == 0)
    }

    /// The delay, if any (a zero delay is none).
    pub fn delay(&self) -> Option<Duration> {
        self.delay_us.filter(|d| *d > 0).map(Duration::from_micros)
    }

    /// Parses the three texts of a topology file or a command line; `None`
    /// leaves that part out.
    pub fn parse(
        rate: Option<&str>,
        delay: Option<&str>,
        loss: Option<f64>,
    ) -> Result<Impairment, (&'static str, String, String)> {
        let rate = rate
            .map(|r| r.parse::<Rate>().map_err(|e| ("rate", r.to_owned(), e)))
            .transpose()?;
        let delay_us = delay
            .map(|d| {
                parse_delay(d)
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                    .map_err(|e| ("delay", d.to_owned(), e))
            })
            .transpose()?;
        let loss = loss
            .map(|l| parse_loss(l).map_err(|e| ("loss", l.to_string(), e)))
            .transpose()?;
        Ok(Impairment {
            rate,
            delay_us,
            loss,
        })
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut parts = Vec::new();
        if let Some(r) = self.rate {
            parts.push(format!("rate {r}"));
        }
        if let Some(d) = self.delay() {
            parts.push(format!("delay {}", humantime::format_duration(d)));
        }
        if let Some(l) = self.loss.filter(|l| *l > 0) {
            parts.push(format!(
                "loss {}%",
                f64::from(l) * 100.0 / f64::from(LOSS_SCALE)
            ));
        }
        f.write_str(&parts.join(", "))
    }
}

/// Whether a network is a shared segment or a point-to-point link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// A shared L2 network of any number of hosts.
    Segment,
    /// Two hosts.
    Link,
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkKind::Segment => "segment",
            NetworkKind::Link => "link",
        })
    }
}

/// A host on a data network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The host.
    pub host: String,
    /// Its address on this network.
    pub address: Ipv4Addr,
}

/// A checked data network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Its name (the interface's name in every member).
    pub name: String,
    /// Segment or link.
    pub kind: NetworkKind,
    /// Its /24.
    pub subnet: Subnet,
    /// Its members, in file order (addresses .1, .2, ...).
    pub members: Vec<Member>,
    /// What it does to packets.
    pub impairment: Impairment,
}

impl Network {
    /// The member `host`, if it is one.
    pub fn member(&self, host: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.host == host)
    }
}

/// `[[segment]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSegment {
    name: String,
    subnet: Option<String>,
    hosts: Vec<String>,
    #[serde(flatten)]
    impairment: RawImpairment,
}

/// `[[link]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    name: Option<String>,
    subnet: Option<String>,
    ends: [String; 2],
    #[serde(flatten)]
    impairment: RawImpairment,
}

/// A segment or link as written: kind, name, subnet, hosts, impairment.
type RawNetwork = (
    NetworkKind,
    String,
    Option<String>,
    Vec<String>,
    RawImpairment,
);

#[derive(Debug, Default, Deserialize)]
struct RawImpairment {
    rate: Option<String>,
    delay: Option<String>,
    loss: Option<f64>,
}

fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NETWORK_NAME_LEN
        && name != "eth0"
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks the segments and links against the hosts (`hosts`, in file
/// order) and the management subnet, and gives each its subnet and each
/// member its address.
pub(crate) fn check(
    segments: Vec<RawSegment>,
    links: Vec<RawLink>,
    hosts: &[String],
    management: Subnet,
) -> Result<Vec<Network>, TopologyError> {
    let known: HashSet<&str> = hosts.iter().map(String::as_str).collect();
    let mut raw: Vec<RawNetwork> = Vec::new();
    for s in segments {
        raw.push((
            NetworkKind::Segment,
            s.name,
            s.subnet,
            s.hosts,
            s.impairment,
        ));
    }
    for l in links {
        let [a, b] = l.ends;
        let name = match l.name {
            Some(n) => n,
            None => {
                let n = format!("{a}-{b}");
                if !valid_network_name(&n) {
                    return Err(TopologyError::LinkNeedsName { ends: [a, b] });
                }
                n
            }
        };
        raw.push((NetworkKind::Link, name, l.subnet, vec![a, b], l.impairment));
    }
    // Subnets: fixed ones first, then the next free ones.
    let mut taken: HashMap<Subnet, String> = HashMap::new();
    taken.insert(management, "the management network".to_owned());
    let mut names = HashSet::new();
    let mut fixed = Vec::with_capacity(raw.len());
    for (_, name, subnet, _, _) in &raw {
        if !valid_network_name(name) {
            return Err(TopologyError::BadNetworkName { name: name.clone() });
        }
        if !names.insert(name.clone()) {
            return Err(TopologyError::DuplicateNetwork { name: name.clone() });
        }
        let Some(text) = subnet else {
            fixed.push(None);
            continue;
        };
        let s: Subnet = text.parse()?;
        if let Some(first) = taken.insert(s, name.clone()) {
            return Err(TopologyError::OverlappingSubnets {
                subnet: s.to_string(),
                first,
                second: name.clone(),
            });
        }
        fixed.push(Some(s));
    }
    let mut next = FIRST_AUTO_SUBNET;
    let mut networks = Vec::with_capacity(raw.len());
    for ((kind, name, _, hosts, imp), fixed) in raw.into_iter().zip(fixed) {
        let subnet = match fixed {
            Some(s) => s,
            None => loop {
                let candidate = Subnet::from_base(next);
                next = advance(next).ok_or(TopologyError::NoFreeSubnet {
                    network: name.clone(),
                })?;
                if let std::collections::hash_map::Entry::Vacant(e) = taken.entry(candidate) {
                    e.insert(name.clone());
                    break candidate;
                }
            },
        };
        if hosts.is_empty() {
            return Err(TopologyError::EmptyNetwork { network: name });
        }
        if hosts.len() > 254 {
            return Err(TopologyError::TooManyMembers { network: name });
        }
        let mut seen = HashSet::new();
        let mut members = Vec::with_capacity(hosts.len());
        for (i, host) in hosts.into_iter().enumerate() {
            if !known.contains(host.as_str()) {
                return Err(TopologyError::UnknownMember {
                    network: name,
                    host,
                });
            }
            if !seen.insert(host.clone()) {
                return Err(TopologyError::DuplicateMember {
                    network: name,
                    host,
                });
            }
            // At most 254 members, so .1 to .254.
            let octet = u8::try_from(i + 1).unwrap_or(254);
            members.push(Member {
                host,
                address: subnet.host(octet),
            });
        }
        let impairment = Impairment::parse(imp.rate.as_deref(), imp.delay.as_deref(), imp.loss)
            .map_err(|(what, text, reason)| TopologyError::BadImpairment {
                network: name.clone(),
                what,
                text,
                reason,
            })?;
        networks.push(Network {
            name,
            kind,
            subnet,
            members,
            impairment,
        });
    }
    if !networks.is_empty() {
        for host in hosts {
            if !networks.iter().any(|n| n.member(host).is_some()) {
                return Err(TopologyError::OffNetwork { host: host.clone() });
            }
        }
    }
    Ok(networks)
}

fn advance(base: [u8; 3]) -> Option<[u8; 3]> {
    let n = (u32::from(base[0]) << 16 | u32::from(base[1]) << 8 | u32::from(base[2])) + 1;
    let b = n.to_be_bytes();
    // Stay inside 10.0.0.0/8.
    (b[1] == 10).then_some([b[1], b[2], b[3]])
}

/// The address `to` has on the first network it shares with `from` (in
/// file order), if they share one.
pub fn shared_address(networks: &[Network], from: &str, to: &str) -> Option<Ipv4Addr> {
    networks
        .iter()
        .filter(|n| n.member(from).is_some())
        .find_map(|n| n.member(to).map(|m| m.address))
}

/// The addresses `host` has on the data networks, in file order.
pub fn addresses_of(networks: &[Network], host: &str) -> Vec<Ipv4Addr> {
    networks
        .iter()
        .filter_map(|n| n.member(host).map(|m| m.address))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_delays_and_losses() {
        assert_eq!("100mbit".parse::<Rate>(), Ok(Rate(100_000_000)));
        assert_eq!("64kbit".parse::<Rate>(), Ok(Rate(64_000)));
        assert_eq!("1GBIT".parse::<Rate>(), Ok(Rate(1_000_000_000)));
        assert_eq!(Rate(10_000_000).to_string(), "10mbit");
        assert_eq!(Rate(12_345).to_string(), "12345bit");
        for bad in [
            "", "mbit", "10", "10 mbps", "1.5mbit", "100bit", "999gbit", "-1mbit",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert_eq!(parse_delay("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_delay("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_delay("11s").is_err());
        assert!(parse_delay("soon").is_err());
        assert_eq!(parse_loss(0.5), Ok(50));
        assert_eq!(parse_loss(100.0), Ok(LOSS_SCALE));
        for bad in [-0.1, 100.5, f64::NAN, f64::INFINITY] {
            assert!(parse_loss(bad).is_err(), "{bad}");
        }
        let i = Impairment::parse(Some("10mbit"), Some("20ms"), Some(1.0)).expect("valid");
        assert_eq!(i.to_string(), "rate 10mbit, delay 20ms, loss 1%");
        assert_eq!(Impairment::default().to_string(), "none");
        assert!(
            Impairment::parse(None, Some("0ms"), Some(0.0))
                .expect("valid")
                .is_none()
        );
        assert_eq!(
            Impairment::parse(Some("fast"), None, None).map_err(|e| e.0),
            Err("rate")
        );
    }

    #[test]
    fn automatic_subnets_skip_taken_ones() {
        assert_eq!(advance([10, 78, 255]), Some([10, 79, 0]));
        assert_eq!(advance([10, 255, 255]), None);
    }
}
