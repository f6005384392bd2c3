//! Starting the testbed's processes inside their namespaces: the
//! directory's `redis-server`, then the routers (each gateway before the
//! routers behind it) and the standalone capsule servers, with the command
//! lines of [`crate::daemon`]. Each start waits for the program's start
//! line, and the state is saved after each.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};

use super::Builder;
use crate::daemon::{self, Keys, RouterArgs, ServerArgs};
use crate::network;
use crate::state::{DirectoryState, HostState, ProcessState, RouterState, ServerState};
use crate::sys;
use crate::topology::{Placement, Role, ServerMode};

impl Builder<'_> {
    fn spawn(
        &mut self,
        program: &str,
        host: &str,
        ns: Option<&str>,
        binary: &Path,
        args: &[String],
        ready: (&str, bool),
    ) -> anyhow::Result<String> {
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let stdout = logs.join(format!("{host}.{program}.out"));
        let log = logs.join(format!("{host}.{program}.log"));
        let spawned = self.state.engine.launch(
            self.naming.prefix(),
            host,
            program,
            ns,
            binary,
            args,
            &stdout,
            &log,
        )?;
        self.state.processes.push(ProcessState {
            program: program.to_owned(),
            host: host.to_owned(),
            namespace: ns.map(str::to_owned),
            pid: spawned.pid,
            start_time: spawned.start_time,
            name: None,
            stdout: stdout.clone(),
            log: log.clone(),
            binary: Some(binary.to_path_buf()),
            args: args.to_vec(),
        });
        self.save()?;
        sys::wait_for_line(&stdout, ready.0, ready.1, spawned, self.timeout).map_err(|e| {
            anyhow!(
                "{program} on {host}: {e}\n--- {} ---\n{}\n--- {} ---\n{}",
                stdout.display(),
                sys::tail(&stdout, 20),
                log.display(),
                sys::tail(&log, 30)
            )
        })
    }

    pub(super) fn redis(&mut self) -> anyhow::Result<()> {
        let d = &self.topology.directory;
        let data = self.dir.join("redis");
        std::fs::create_dir_all(&data)?;
        let mut args = d.redis_args(&d.address.to_string());
        args.extend([
            "--daemonize".to_owned(),
            "no".to_owned(),
            "--dir".to_owned(),
            data.to_string_lossy().into_owned(),
        ]);
        let ns = match d.placement {
            Placement::Namespace => Some(self.naming.directory_ns()),
            Placement::Root => None,
        };
        let redis = self.bins.redis.clone();
        self.spawn(
            "redis-server",
            "directory",
            ns.as_deref(),
            &redis,
            &args,
            ("Ready to accept connections", true),
        )?;
        self.state.directory = Some(DirectoryState {
            namespace: ns,
            url: d.url(),
        });
        self.save()
    }

    pub(super) fn daemons(&mut self) -> anyhow::Result<()> {
        let topology = self.topology;
        // Keys first: every name is known before anything starts.
        let keys = Keys::load_or_generate(topology, &self.dir.join("hosts"))?;
        for host in topology.start_order()? {
            let Some(router) = host.router() else {
                continue;
            };
            // With data networks, a router listens on its data address (every
            // address when it has several) and publishes them all, unless it
            // sits behind a gateway.
            let data = network::addresses_of(&topology.networks, &host.name);
            let listen = match data.as_slice() {
                [] => SocketAddr::from((host.address, router.port)),
                [one] => SocketAddr::from((*one, router.port)),
                _ => SocketAddr::from((Ipv4Addr::UNSPECIFIED, router.port)),
            };
            let advertise = if data.len() > 1 && router.via.is_none() {
                data.iter()
                    .map(|a| SocketAddr::from((*a, router.port)))
                    .collect()
            } else {
                Vec::new()
            };
            let dir = keys.host_dir(&host.name);
            let via = match &router.via {
                Some(via) => {
                    let addr = topology
                        .router_address_from(&host.name, via)
                        .ok_or_else(|| anyhow!("no router on {via}"))?;
                    Some((keys.routers[via].clone(), addr.to_string()))
                }
                None => None,
            };
            let config = if router.capsule_server == Some(ServerMode::Embedded) {
                let key_file = dir.join(daemon::CAPSULE_SERVER_KEY);
                let config = dir.join("router.toml");
                std::fs::write(
                    &config,
                    daemon::embedded_config(Some(&key_file.to_string_lossy())),
                )
                .with_context(|| format!("writing {}", config.display()))?;
                Some(config.to_string_lossy().into_owned())
            } else {
                None
            };
            let args = RouterArgs {
                data_dir: dir.join("router").to_string_lossy().into_owned(),
                listen,
                directory: topology.directory.url(),
                log: router.log.clone(),
                advertise,
                via,
                key_file: Some(dir.join(daemon::ROUTER_KEY).to_string_lossy().into_owned()),
                config,
                admin: Some(SocketAddr::from((host.address, daemon::ADMIN_PORT))),
            };
            let ns = self.naming.host_ns(&host.name);
            let bin = self.bins.router.clone();
            let line = self.spawn(
                daemon::ROUTER,
                &host.name,
                Some(&ns),
                &bin,
                &args.to_args(),
                ("gdp-router ", false),
            )?;
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(key))
                    .map(str::to_owned)
            };
            let name = field("name=").ok_or_else(|| anyhow!("no name in {line:?}"))?;
            if name != keys.routers[&host.name] {
                bail!(
                    "the router on {} says it is {name}, not {}",
                    host.name,
                    keys.routers[&host.name]
                );
            }
            if let Some(p) = self.state.processes.last_mut() {
                p.name = Some(name);
            }
            self.save()?;
        }
        for host in &topology.hosts {
            let (Some(router), Some(listen)) = (
                host.router(),
                topology.router_address_from(&host.name, &host.name),
            ) else {
                continue;
            };
            if router.capsule_server != Some(ServerMode::Standalone) {
                continue;
            }
            let dir = keys.host_dir(&host.name);
            let args = ServerArgs {
                data_dir: dir.join("capsule-server").to_string_lossy().into_owned(),
                router: listen,
                log: router.log.clone(),
                key_file: Some(
                    dir.join(daemon::CAPSULE_SERVER_KEY)
                        .to_string_lossy()
                        .into_owned(),
                ),
                router_name: Some(keys.routers[&host.name].clone()),
            };
            let ns = self.naming.host_ns(&host.name);
            let bin = self.bins.server.clone();
            self.spawn(
                daemon::CAPSULE_SERVER,
                &host.name,
                Some(&ns),
                &bin,
                &args.to_args(),
                ("gdp-capsule-server ", false),
            )?;
            if let Some(p) = self.state.processes.last_mut() {
                p.name = Some(keys.servers[&host.name].clone());
            }
            self.save()?;
        }
        // The hosts as clients see them.
        for host in &topology.hosts {
            let gateway = match &host.role {
                Role::Router(_) => host.name.as_str(),
                Role::Client { attach } => attach.as_str(),
            };
            let gdp_router = topology
                .router_address_from(&host.name, gateway)
                .ok_or_else(|| anyhow!("no router on {gateway}"))?;
            self.state.hosts.push(HostState {
                name: host.name.clone(),
                namespace: self.naming.host_ns(&host.name),
                address: host.address,
                gdp_router_host: gateway.to_owned(),
                gdp_router,
                gdp_router_name: keys.routers.get(gateway).cloned(),
                router: host.router().map(|r| RouterState {
                    name: keys.routers[&host.name].clone(),
                    listen: topology
                        .router_address_from(&host.name, &host.name)
                        .unwrap_or_else(|| SocketAddr::from((host.address, r.port))),
                    via: r.via.clone(),
                    admin: Some(SocketAddr::from((host.address, daemon::ADMIN_PORT))),
                }),
                capsule_server: host.router().and_then(|r| r.capsule_server).map(|mode| {
                    ServerState {
                        name: keys.servers[&host.name].clone(),
                        mode,
                    }
                }),
            });
        }
        self.save()
    }
}
