//! The data networks: segments and links, their impairments, and cutting
//! and healing them.
//!
//! All bridges live in one namespace of their own, the links namespace
//! (`<prefix>_links`). A member's port is a veth pair: the interface in the
//! member's namespace is named after the network, its peer `p<N>` is a port
//! of the network's bridge `br<K>`. A link is a segment of two. Every
//! impairment applies to what a member sends:
//!
//! - rate: `tbf` on the member's interface;
//! - loss: an nftables rule in the member's namespace (table `inet
//!   gdp_testbed`, chain `loss_<N>`: `numgen random mod 10000 < L drop`);
//! - delay: the [delay relay](crate::relay). The port `p<N>` leaves the
//!   bridge; the relay reads the member's frames from it and writes them,
//!   delayed, to `x<N>`, whose veth peer `y<N>` is the bridge port; a `tc`
//!   mirred redirect takes frames arriving on `x<N>` from the bridge
//!   straight to `p<N>`. The member's interface computes checksums and
//!   segments in software (`ethtool -K tx off tso off gso off`), so the
//!   frames the relay copies are whole and correct.
//!
//! Where `tc qdisc add ... netem` works (checked by `up`), netem on the
//! member's interface does delay, loss and rate instead.
//!
//! A cut sets `p<N>` down, which takes the member's carrier away; a heal
//! sets it up again.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use super::Builder;
use crate::network::{Impairment, LOSS_SCALE, Network};
use crate::state::{NetworkState, PortState, ProcessState, State};
use crate::sys;

/// The program name of delay relays in the state file.
pub const DELAY_RELAY: &str = "delay-relay";
/// The nftables table `up` makes in every host namespace (with data
/// networks).
pub const NFT_TABLE: &str = "gdp_testbed";

/// Runs `program args` in namespace `ns`, feeding `input` on standard input;
/// fails with its standard error.
fn run_in(ns: &str, program: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<()> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program])
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().with_context(|| format!("running {program}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write as _;
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{program} {}` in {ns} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ip_in(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    sys::ip(all)
}

fn tc(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    run_in(ns, "tc", args, None)
}

/// Whether this kernel has netem: tries it on the loopback of `ns`.
pub fn netem_works(ns: &str) -> bool {
    let ok = tc(
        ns,
        &["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
    )
    .is_ok();
    if ok {
        let _ = tc(ns, &["qdisc", "del", "dev", "lo", "root"]);
    }
    ok
}

/// The MAC address of the member's interface of port number `index`: a
/// locally administered address, unique within a testbed.
fn mac(index: usize) -> String {
    let b = u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes();
    format!("02:67:64:{:02x}:{:02x}:{:02x}", b[1], b[2], b[3])
}

/// The number `N` of port `p<N>`.
fn port_number(port: &str) -> &str {
    port.trim_start_matches('p')
}

/// The nftables table of a host namespace with data networks: UDP on the
/// management interface is dropped (GDP traffic goes over the data
/// networks only), and `impair` jumps to each port's loss chain.
fn host_table(mgmt_if: &str) -> String {
    format!(
        "table inet {NFT_TABLE} {{\n\
         \tchain mgmt_in {{ type filter hook input priority 0; iifname \"{mgmt_if}\" meta l4proto udp drop; }}\n\
         \tchain mgmt_out {{ type filter hook output priority 0; oifname \"{mgmt_if}\" meta l4proto udp drop; }}\n\
         \tchain impair {{ type filter hook postrouting priority 0; }}\n\
         }}\n"
    )
}

impl Builder<'_> {
    /// Builds the segments and links, with their impairments.
    pub(super) fn data_networks(&mut self) -> anyhow::Result<()> {
        let topology = self.topology;
        if topology.networks.is_empty() {
            return Ok(());
        }
        let links = self.naming.links_ns();
        self.add_namespace(&links)?;
        self.state.links_namespace = Some(links.clone());
        self.state.netem = netem_works(&links);
        self.save()?;
        for host in &topology.hosts {
            let ns = self.naming.host_ns(&host.name);
            // GDP forwards; the kernel does not, so a cut really isolates.
            run_in(
                &ns,
                "sh",
                &["-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"],
                None,
            )?;
            run_in(
                &ns,
                "nft",
                &["-f", "-"],
                Some(&host_table(self.naming.inner_if())),
            )?;
        }
        let mut index = 0;
        for (k, network) in topology.networks.iter().enumerate() {
            let state = self.data_network(&links, k, network, &mut index)?;
            self.state.networks.push(state);
            self.save()?;
            let at = self.state.networks.len() - 1;
            let exe = self.bins.deploy.clone();
            apply(&mut self.state, &self.dir, &exe, at, network.impairment)?;
            self.save()?;
        }
        Ok(())
    }

    fn data_network(
        &mut self,
        links: &str,
        k: usize,
        network: &Network,
        index: &mut usize,
    ) -> anyhow::Result<NetworkState> {
        let bridge = format!("br{k}");
        ip_in(links, &["link", "add", &bridge, "type", "bridge"])?;
        ip_in(links, &["link", "set", &bridge, "up"])?;
        let mut ports = Vec::with_capacity(network.members.len());
        for member in &network.members {
            let i = *index;
            *index += 1;
            let port = format!("p{i}");
            let mac = mac(i);
            let ns = self.naming.host_ns(&member.host);
            ip_in(
                links,
                &[
                    "link",
                    "add",
                    &port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &network.name,
                    "address",
                    &mac,
                    "netns",
                    &ns,
                ],
            )?;
            ip_in(links, &["link", "set", &port, "master", &bridge, "up"])?;
            let cidr = format!("{}/24", member.address);
            ip_in(&ns, &["addr", "add", &cidr, "dev", &network.name])?;
            ip_in(&ns, &["link", "set", &network.name, "up"])?;
            let chain = format!("loss_{i}");
            run_in(
                &ns,
                "nft",
                &["add", "chain", "inet", NFT_TABLE, &chain],
                None,
            )?;
            run_in(
                &ns,
                "nft",
                &[
                    "add",
                    "rule",
                    "inet",
                    NFT_TABLE,
                    "impair",
                    "oifname",
                    &network.name,
                    "jump",
                    &chain,
                ],
                None,
            )?;
            ports.push(PortState {
                host: member.host.clone(),
                namespace: ns,
                interface: network.name.clone(),
                mac,
                address: member.address,
                port,
                relay_output: None,
                up: true,
            });
        }
        Ok(NetworkState {
            name: network.name.clone(),
            kind: network.kind,
            subnet: network.subnet.to_string(),
            bridge,
            impairment: Impairment::default(),
            ports,
        })
    }
}

/// Gives network number `net` of `state` the impairment `imp` on every
/// port, starting, restarting or stopping delay relays (the program
/// `exe`, logging to `dir/logs`) as needed. The caller saves the state.
pub fn apply(
    state: &mut State,
    dir: &Path,
    exe: &Path,
    net: usize,
    imp: Impairment,
) -> anyhow::Result<()> {
    let links = state
        .links_namespace
        .clone()
        .ok_or_else(|| anyhow!("this testbed has no data networks"))?;
    let netem = state.netem;
    let network = state
        .networks
        .get(net)
        .cloned()
        .ok_or_else(|| anyhow!("no network number {net}"))?;
    for (p, port) in network.ports.iter().enumerate() {
        let ns = &port.namespace;
        let dev = port.interface.as_str();
        // Deleting a root qdisc that is the default fails: that is fine.
        let _ = tc(ns, &["qdisc", "del", "dev", dev, "root"]);
        let loss_chain = format!("loss_{}", port_number(&port.port));
        run_in(
            ns,
            "nft",
            &["flush", "chain", "inet", NFT_TABLE, &loss_chain],
            None,
        )?;
        if netem {
            if !imp.is_none() {
                let mut args: Vec<String> = ["qdisc", "add", "dev", dev, "root", "netem"]
                    .map(str::to_owned)
                    .to_vec();
                if let Some(d) = imp.delay() {
                    args.extend(["delay".into(), format!("{}us", d.as_micros())]);
                }
                if let Some(l) = imp.loss.filter(|l| *l > 0) {
                    let percent = f64::from(l) * 100.0 / f64::from(LOSS_SCALE);
                    args.extend(["loss".into(), format!("{percent}%")]);
                }
                if let Some(r) = imp.rate {
                    args.extend(["rate".into(), format!("{}bit", r.0)]);
                }
                args.extend(["limit".into(), "10000".into()]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                tc(ns, &args)?;
            }
            continue;
        }
        if let Some(r) = imp.rate {
            // A burst of 1/100 s of traffic, at least 16 frames.
            let burst = (r.0 / 8 / 100).max(16 * 1514).to_string();
            let rate = format!("{}bit", r.0);
            tc(
                ns,
                &[
                    "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst,
                    "latency", "100ms",
                ],
            )?;
        }
        if let Some(l) = imp.loss.filter(|l| *l > 0) {
            let n = l.to_string();
            run_in(
                ns,
                "nft",
                &[
                    "add",
                    "rule",
                    "inet",
                    NFT_TABLE,
                    &loss_chain,
                    "numgen",
                    "random",
                    "mod",
                    "10000",
                    "<",
                    &n,
                    "drop",
                ],
                None,
            )?;
        }
        stop_relay(state, &network.name, &port.host);
        match imp.delay() {
            Some(delay) => {
                let output = attach_relay(&links, &network.bridge, port)?;
                state.networks[net].ports[p].relay_output = Some(output.clone());
                start_relay(state, dir, exe, &links, &network.name, port, &output, delay)?;
            }
            None => {
                if let Some(output) = &port.relay_output {
                    detach_relay(&links, &network.bridge, port, output)?;
                    state.networks[net].ports[p].relay_output = None;
                }
            }
        }
    }
    state.networks[net].impairment = imp;
    Ok(())
}

/// Moves `port` off the bridge and behind a relay's veth pair (once);
/// returns the interface the relay writes to.
fn attach_relay(links: &str, bridge: &str, port: &PortState) -> anyhow::Result<String> {
    let n = port_number(&port.port);
    let output = format!("x{n}");
    if port.relay_output.is_some() {
        return Ok(output);
    }
    run_in(
        &port.namespace,
        "ethtool",
        &[
            "-K",
            &port.interface,
            "tx",
            "off",
            "tso",
            "off",
            "gso",
            "off",
        ],
        None,
    )
    .context("the delay relay needs ethtool (Debian: apt-get install ethtool)")?;
    let bridge_port = format!("y{n}");
    ip_in(
        links,
        &[
            "link",
            "add",
            &output,
            "type",
            "veth",
            "peer",
            "name",
            &bridge_port,
        ],
    )?;
    ip_in(links, &["link", "set", &port.port, "nomaster"])?;
    ip_in(
        links,
        &["link", "set", &bridge_port, "master", bridge, "up"],
    )?;
    ip_in(links, &["link", "set", &output, "up"])?;
    tc(links, &["qdisc", "add", "dev", &output, "ingress"])?;
    tc(
        links,
        &[
            "filter", "add", "dev", &output, "parent", "ffff:", "protocol", "all", "u32", "match",
            "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", &port.port,
        ],
    )?;
    Ok(output)
}

/// Puts `port` back on the bridge and deletes the relay's veth pair.
fn detach_relay(links: &str, bridge: &str, port: &PortState, output: &str) -> anyhow::Result<()> {
    ip_in(links, &["link", "del", output])?;
    ip_in(links, &["link", "set", &port.port, "master", bridge])?;
    Ok(())
}

fn relay_host(network: &str, host: &str) -> String {
    format!("{network}:{host}")
}

/// Stops the delay relay of `host`'s port on `network`, if it runs, and
/// forgets it.
fn stop_relay(state: &mut State, network: &str, host: &str) {
    let who = relay_host(network, host);
    state.processes.retain(|p| {
        if p.program == DELAY_RELAY && p.host == who {
            if sys::is_alive(p.spawned()) {
                sys::signal(p.pid, "KILL");
            }
            false
        } else {
            true
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn start_relay(
    state: &mut State,
    dir: &Path,
    exe: &Path,
    links: &str,
    network: &str,
    port: &PortState,
    output: &str,
    delay: Duration,
) -> anyhow::Result<()> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let stem = format!("{network}.{}.{DELAY_RELAY}", port.host);
    let stdout = logs.join(format!("{stem}.out"));
    let log = logs.join(format!("{stem}.log"));
    let mut command = sys::in_namespace(Some(links), exe);
    command.args([
        "delay-relay",
        "--input",
        &port.port,
        "--output",
        output,
        "--source-mac",
        &port.mac,
        "--delay-us",
        &delay.as_micros().to_string(),
    ]);
    let spawned = sys::spawn_detached(command, &stdout, &log)?;
    state.processes.push(ProcessState {
        program: DELAY_RELAY.to_owned(),
        host: relay_host(network, &port.host),
        namespace: Some(links.to_owned()),
        pid: spawned.pid,
        start_time: spawned.start_time,
        name: None,
        stdout: stdout.clone(),
        log: log.clone(),
        binary: None,
        args: Vec::new(),
    });
    sys::wait_for_line(
        &stdout,
        "delay-relay ready",
        false,
        spawned,
        Duration::from_secs(5),
    )
    .map_err(|e| {
        anyhow!(
            "the delay relay of {network}:{}: {e}\n{}",
            port.host,
            sys::tail(&log, 10)
        )
    })?;
    Ok(())
}

/// A cut or heal target: a network, or one member's port on it
/// (`NETWORK:HOST`).
pub fn ports_of(state: &State, target: &str) -> anyhow::Result<(usize, Vec<usize>)> {
    let (name, host) = match target.split_once(':') {
        Some((n, h)) => (n, Some(h)),
        None => (target, None),
    };
    let Some(net) = state.networks.iter().position(|n| n.name == name) else {
        let known: Vec<&str> = state.networks.iter().map(|n| n.name.as_str()).collect();
        bail!(
            "no segment or link {name:?} in this testbed (it has: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    let ports: Vec<usize> = match host {
        None => (0..state.networks[net].ports.len()).collect(),
        Some(h) => match state.networks[net].ports.iter().position(|p| p.host == h) {
            Some(p) => vec![p],
            None => bail!("host {h:?} is not on {name}"),
        },
    };
    Ok((net, ports))
}

/// Cuts (`up == false`) or heals the ports `target` names (see
/// [`ports_of`]); the caller saves the state. Returns how many ports
/// changed.
pub fn set_ports(state: &mut State, target: &str, up: bool) -> anyhow::Result<usize> {
    let links = state
        .links_namespace
        .clone()
        .ok_or_else(|| anyhow!("this testbed has no data networks"))?;
    let (net, ports) = ports_of(state, target)?;
    let mut changed = 0;
    for p in ports {
        let port = &mut state.networks[net].ports[p];
        ip_in(
            &links,
            &["link", "set", &port.port, if up { "up" } else { "down" }],
        )?;
        if port.up != up {
            changed += 1;
        }
        port.up = up;
    }
    Ok(changed)
}

/// The address `to` has on a network it shares with `from`, and that
/// network's name.
pub fn shared(state: &State, from: &str, to: &str) -> Option<(String, Ipv4Addr)> {
    state.networks.iter().find_map(|n| {
        n.port(from)?;
        n.port(to).map(|p| (n.name.clone(), p.address))
    })
}
