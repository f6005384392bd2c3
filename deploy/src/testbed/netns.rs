//! The testbed network: one namespace per host and one for the directory,
//! all on one Linux bridge (in a namespace of its own, or in the root
//! namespace), each through a veth pair; and the name prefix that keeps a
//! testbed's namespaces and links apart from everything else.

use std::net::Ipv4Addr;

use anyhow::{Context as _, bail};

use super::Builder;
use crate::names::Naming;
use crate::sys;
use crate::topology::{Placement, ROOT_OCTET, Topology};

fn ip_in(ns: Option<&str>, args: &[&str]) -> anyhow::Result<()> {
    match ns {
        Some(ns) => {
            let mut all = vec!["-n", ns];
            all.extend_from_slice(args);
            sys::ip(all)
        }
        None => sys::ip(args),
    }
}

/// A name prefix none of whose namespaces and links exist yet: `prefix`,
/// or else a random one.
pub(super) fn free_naming(prefix: Option<&str>) -> anyhow::Result<Naming> {
    let existing = sys::namespaces()?;
    let in_use = |n: &Naming| {
        existing.iter().any(|ns| n.owns_ns(ns))
            || [n.bridge(), n.root_if()]
                .iter()
                .any(|l| sys::link_exists(l))
    };
    let naming = match prefix {
        Some(p) => {
            let n = Naming::new(p)?;
            if in_use(&n) {
                bail!("prefix {p} is in use by namespaces or links that exist already");
            }
            n
        }
        None => {
            let mut n = Naming::random();
            let mut tries = 0;
            while in_use(&n) {
                tries += 1;
                if tries > 16 {
                    bail!("no free name prefix found");
                }
                n = Naming::random();
            }
            n
        }
    };
    Ok(naming)
}

/// Refuses a topology whose subnet already holds an address of the root
/// namespace, for a testbed the root namespace joins.
pub(super) fn check_root_subnet(topology: &Topology) -> anyhow::Result<()> {
    let taken = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .context("running `ip addr show`")?;
    let text = String::from_utf8_lossy(&taken.stdout);
    let clash = text
        .split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .filter(|(key, _)| *key == "inet")
        .filter_map(|(_, cidr)| cidr.split('/').next()?.parse::<Ipv4Addr>().ok())
        .find(|a| topology.subnet.octet_of(*a).is_some());
    if let Some(addr) = clash {
        bail!(
            "the root namespace already has {addr}, in {}: choose another subnet",
            topology.subnet
        );
    }
    Ok(())
}

impl Builder<'_> {
    fn bridge_ns(&self) -> Option<String> {
        (self.topology.bridge == Placement::Namespace).then(|| self.naming.bridge_ns())
    }

    pub(super) fn add_namespace(&mut self, ns: &str) -> anyhow::Result<()> {
        sys::ip(["netns", "add", ns])?;
        self.state.namespaces.push(ns.to_owned());
        self.save()?;
        ip_in(Some(ns), &["link", "set", "lo", "up"])
    }

    fn bridge(&mut self) -> anyhow::Result<()> {
        let br = self.naming.bridge();
        let root_addr = format!("{}/24", self.topology.subnet.host(ROOT_OCTET));
        match self.bridge_ns() {
            Some(ns) => {
                self.add_namespace(&ns)?;
                ip_in(Some(&ns), &["link", "add", &br, "type", "bridge"])?;
                ip_in(Some(&ns), &["link", "set", &br, "up"])?;
                if self.topology.root_joins() {
                    // The root namespace joins through a veth pair.
                    let root_if = self.naming.root_if();
                    let port = self.naming.root_port();
                    sys::ip([
                        "link", "add", &root_if, "type", "veth", "peer", "name", &port, "netns",
                        &ns,
                    ])?;
                    self.state.root_links.push(root_if.clone());
                    self.save()?;
                    ip_in(Some(&ns), &["link", "set", &port, "master", &br, "up"])?;
                    sys::ip(["addr", "add", &root_addr, "dev", &root_if])?;
                    sys::ip(["link", "set", &root_if, "up"])?;
                }
            }
            None => {
                sys::ip(["link", "add", &br, "type", "bridge"])?;
                self.state.root_links.push(br.clone());
                self.save()?;
                sys::ip(["addr", "add", &root_addr, "dev", &br])?;
                sys::ip(["link", "set", &br, "up"])?;
            }
        }
        Ok(())
    }

    /// A namespace on the bridge with `addr`.
    fn plug(&mut self, ns: &str, port: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
        self.add_namespace(ns)?;
        let inner = self.naming.inner_if();
        let br = self.naming.bridge();
        let bridge_ns = self.bridge_ns();
        let mut args = vec!["link", "add", port];
        if let Some(b) = &bridge_ns {
            args.extend(["netns", b.as_str()]);
        }
        args.extend(["type", "veth", "peer", "name", inner, "netns", ns]);
        sys::ip(&args)?;
        if bridge_ns.is_none() {
            self.state.root_links.push(port.to_owned());
            self.save()?;
        }
        ip_in(
            bridge_ns.as_deref(),
            &["link", "set", port, "master", &br, "up"],
        )?;
        let cidr = format!("{addr}/24");
        ip_in(Some(ns), &["addr", "add", &cidr, "dev", inner])?;
        ip_in(Some(ns), &["link", "set", inner, "up"])?;
        Ok(())
    }

    pub(super) fn network(&mut self) -> anyhow::Result<()> {
        self.bridge()?;
        if self.topology.directory.placement == Placement::Namespace {
            let ns = self.naming.directory_ns();
            let port = self.naming.directory_port();
            self.plug(&ns, &port, self.topology.directory.address)?;
        }
        for (i, host) in self.topology.hosts.iter().enumerate() {
            let ns = self.naming.host_ns(&host.name);
            let port = self.naming.host_port(i);
            self.plug(&ns, &port, host.address)?;
        }
        Ok(())
    }
}
