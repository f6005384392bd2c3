//! Bringing a testbed up and down on this machine: namespaces, a bridge,
//! veth pairs, `redis-server`, routers and capsule servers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use gdp_certs::{Identity, Kind};

use crate::names::Naming;
use crate::state::{DirectoryState, HostState, ProcessState, RouterState, ServerState, State};
use crate::sys::{self, Spawned};
use crate::topology::{Placement, ROOT_OCTET, Role, ServerMode, Topology};

/// What `up` needs besides the topology.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The topology file.
    pub topology: PathBuf,
    /// Where the state file, keys, data and logs go.
    pub state_dir: PathBuf,
    /// Where `gdp-router`, `gdp-capsule-server` and `gdp` are; `None`:
    /// next to the running program, else on `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// The name prefix; `None`: a random one.
    pub prefix: Option<String>,
    /// How long each process may take to start, and the overlay to answer.
    pub timeout: Duration,
    /// On failure, leave everything running (and the state file in
    /// place) for a look, instead of tearing it down.
    pub keep_on_failure: bool,
}

/// The programs a testbed runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `gdp-router`.
    pub router: PathBuf,
    /// `gdp-capsule-server`.
    pub server: PathBuf,
    /// `gdp` (for the readiness pings and for `exec` users).
    pub gdp: PathBuf,
    /// `redis-server`.
    pub redis: PathBuf,
}

impl Binaries {
    /// Finds the programs: the GDP ones in `bin_dir`, or else next to the
    /// running program, or else on `PATH`; `redis-server` on `PATH`.
    pub fn find(bin_dir: Option<&Path>) -> anyhow::Result<Binaries> {
        let here = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let find = |program: &str| -> anyhow::Result<PathBuf> {
            if let Some(dir) = bin_dir {
                let p = dir.join(program);
                if sys::is_executable(&p) {
                    return Ok(std::fs::canonicalize(&p).unwrap_or(p));
                }
                bail!("{program} is not in {} (--bin-dir)", dir.display());
            }
            if let Some(p) = here.as_ref().map(|d| d.join(program))
                && sys::is_executable(&p)
            {
                return Ok(p);
            }
            sys::which(program).ok_or_else(|| {
                anyhow!(
                    "{program} is neither next to this program nor on PATH: build it with \
                     `cargo build --workspace --bins` or pass --bin-dir"
                )
            })
        };
        Ok(Binaries {
            router: find("gdp-router")?,
            server: find("gdp-capsule-server")?,
            gdp: find("gdp")?,
            redis: sys::which("redis-server").ok_or_else(|| {
                anyhow!("redis-server is not on PATH (Debian: apt-get install redis-server)")
            })?,
        })
    }
}

/// Checks what `up` needs from the machine: root, `ip` with network
/// namespaces.
pub fn check_machine() -> anyhow::Result<()> {
    if !sys::is_root() {
        bail!("gdp-deploy up needs root (network namespaces and links)");
    }
    if sys::which("ip").is_none() {
        bail!("`ip` is not on PATH (Debian: apt-get install iproute2)");
    }
    sys::namespaces().context("network namespaces are not available")?;
    Ok(())
}

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

/// `up` in progress: the state so far, saved after every step.
struct Builder<'a> {
    topology: &'a Topology,
    naming: Naming,
    dir: PathBuf,
    bins: Binaries,
    timeout: Duration,
    state: State,
}

impl Builder<'_> {
    fn save(&self) -> anyhow::Result<()> {
        self.state.save(&self.dir)
    }

    fn bridge_ns(&self) -> Option<String> {
        (self.topology.bridge == Placement::Namespace).then(|| self.naming.bridge_ns())
    }

    fn add_namespace(&mut self, ns: &str) -> anyhow::Result<()> {
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

    fn network(&mut self) -> anyhow::Result<()> {
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
        let mut command = sys::in_namespace(ns, binary);
        command.args(args);
        let spawned = sys::spawn_detached(command, &stdout, &log)?;
        self.state.processes.push(ProcessState {
            program: program.to_owned(),
            host: host.to_owned(),
            namespace: ns.map(str::to_owned),
            pid: spawned.pid,
            start_time: spawned.start_time,
            name: None,
            stdout: stdout.clone(),
            log: log.clone(),
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

    fn redis(&mut self) -> anyhow::Result<()> {
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

    fn daemons(&mut self) -> anyhow::Result<()> {
        let topology = self.topology;
        let hosts_dir = self.dir.join("hosts");
        // Keys first: every name is known before anything starts.
        let mut router_names = std::collections::HashMap::new();
        let mut server_names = std::collections::HashMap::new();
        for host in &topology.hosts {
            let Some(router) = host.router() else {
                continue;
            };
            let dir = hosts_dir.join(&host.name);
            let (id, _) =
                Identity::load_or_generate(&dir.join("router.key"), Kind::Router, &host.name)
                    .with_context(|| format!("the router key of {}", host.name))?;
            router_names.insert(host.name.clone(), id.name().to_string());
            if router.capsule_server.is_some() {
                let label = format!("{}-capsule-server", host.name);
                let (id, _) = Identity::load_or_generate(
                    &dir.join("capsule-server.key"),
                    Kind::Server,
                    &label,
                )
                .with_context(|| format!("the capsule server key of {}", host.name))?;
                server_names.insert(host.name.clone(), id.name().to_string());
            }
        }
        let port_of = |name: &str| {
            topology
                .host(name)
                .and_then(|h| h.router().map(|r| SocketAddr::from((h.address, r.port))))
        };
        for host in topology.start_order()? {
            let Some(router) = host.router() else {
                continue;
            };
            let dir = hosts_dir.join(&host.name);
            let listen = SocketAddr::from((host.address, router.port));
            let mut args: Vec<String> = vec![
                "--data-dir".into(),
                dir.join("router").to_string_lossy().into_owned(),
                "--key-file".into(),
                dir.join("router.key").to_string_lossy().into_owned(),
                "--listen".into(),
                listen.to_string(),
                "--directory".into(),
                topology.directory.url(),
                "--log".into(),
                router.log.clone(),
            ];
            if let Some(via) = &router.via {
                let addr = port_of(via).ok_or_else(|| anyhow!("no router on {via}"))?;
                args.push("--via".into());
                args.push(format!("{}@{addr}", router_names[via]));
            }
            if router.capsule_server == Some(ServerMode::Embedded) {
                let mut table = toml::Table::new();
                table.insert(
                    "key_file".into(),
                    dir.join("capsule-server.key")
                        .to_string_lossy()
                        .into_owned()
                        .into(),
                );
                let mut file = toml::Table::new();
                file.insert("capsule_server".into(), table.into());
                let config = dir.join("router.toml");
                std::fs::write(&config, toml::to_string(&file)?)
                    .with_context(|| format!("writing {}", config.display()))?;
                args.push("--config".into());
                args.push(config.to_string_lossy().into_owned());
            }
            let ns = self.naming.host_ns(&host.name);
            let bin = self.bins.router.clone();
            let line = self.spawn(
                "gdp-router",
                &host.name,
                Some(&ns),
                &bin,
                &args,
                ("gdp-router ", false),
            )?;
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(key))
                    .map(str::to_owned)
            };
            let name = field("name=").ok_or_else(|| anyhow!("no name in {line:?}"))?;
            if name != router_names[&host.name] {
                bail!(
                    "the router on {} says it is {name}, not {}",
                    host.name,
                    router_names[&host.name]
                );
            }
            if let Some(p) = self.state.processes.last_mut() {
                p.name = Some(name);
            }
            self.save()?;
        }
        for host in &topology.hosts {
            let Some(router) = host.router() else {
                continue;
            };
            if router.capsule_server != Some(ServerMode::Standalone) {
                continue;
            }
            let dir = hosts_dir.join(&host.name);
            let args: Vec<String> = vec![
                "--data-dir".into(),
                dir.join("capsule-server").to_string_lossy().into_owned(),
                "--key-file".into(),
                dir.join("capsule-server.key")
                    .to_string_lossy()
                    .into_owned(),
                "--router".into(),
                SocketAddr::from((host.address, router.port)).to_string(),
                "--router-name".into(),
                router_names[&host.name].clone(),
                "--log".into(),
                router.log.clone(),
            ];
            let ns = self.naming.host_ns(&host.name);
            let bin = self.bins.server.clone();
            self.spawn(
                "gdp-capsule-server",
                &host.name,
                Some(&ns),
                &bin,
                &args,
                ("gdp-capsule-server ", false),
            )?;
            if let Some(p) = self.state.processes.last_mut() {
                p.name = Some(server_names[&host.name].clone());
            }
            self.save()?;
        }
        // The hosts as clients see them.
        for host in &topology.hosts {
            let gateway = match &host.role {
                Role::Router(_) => host.name.as_str(),
                Role::Client { attach } => attach.as_str(),
            };
            let gdp_router = port_of(gateway).ok_or_else(|| anyhow!("no router on {gateway}"))?;
            self.state.hosts.push(HostState {
                name: host.name.clone(),
                namespace: self.naming.host_ns(&host.name),
                address: host.address,
                gdp_router_host: gateway.to_owned(),
                gdp_router,
                gdp_router_name: router_names.get(gateway).cloned(),
                router: host.router().map(|r| RouterState {
                    name: router_names[&host.name].clone(),
                    listen: SocketAddr::from((host.address, r.port)),
                    via: r.via.clone(),
                }),
                capsule_server: host.router().and_then(|r| r.capsule_server).map(|mode| {
                    ServerState {
                        name: server_names[&host.name].clone(),
                        mode,
                    }
                }),
            });
        }
        self.save()
    }

    /// Pings `name` through the router `via` uses, from `via`'s namespace,
    /// until it answers or the deadline passes.
    fn ping_until(
        &self,
        via: &HostState,
        what: &str,
        name: &str,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        loop {
            let out = sys::in_namespace(Some(&via.namespace), &self.bins.gdp)
                .arg("--router")
                .arg(via.gdp_router.to_string())
                .args(
                    via.gdp_router_name
                        .iter()
                        .flat_map(|n| ["--router-name", n]),
                )
                .args(["--timeout", "2s", "ping", "--count", "1", name])
                .stdin(std::process::Stdio::null())
                .output()
                .context("running gdp ping")?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what} ({name}) did not answer a ping through the router of {} within {:?}: {}",
                    via.name,
                    self.timeout,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the overlay works: each router answers a ping through
    /// itself, then every capsule server (standalone or embedded) and every
    /// router behind a gateway answers a ping through the first router.
    fn wait_for_overlay(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let order = self.topology.start_order()?;
        for host in &order {
            let Some(entry) = self.state.host(&host.name) else {
                continue;
            };
            if let Some(r) = &entry.router {
                self.ping_until(
                    entry,
                    &format!("the router on {}", host.name),
                    &r.name,
                    deadline,
                )?;
            }
        }
        let Some(first) = order.first().and_then(|h| self.state.host(&h.name)) else {
            return Ok(());
        };
        for h in &self.state.hosts {
            if let Some(s) = &h.capsule_server {
                let what = format!("the capsule server on {}", h.name);
                self.ping_until(first, &what, &s.name, deadline)?;
            }
            if let Some(r) = h.router.as_ref().filter(|r| r.via.is_some()) {
                let what = format!("the router on {}", h.name);
                self.ping_until(first, &what, &r.name, deadline)?;
            }
        }
        Ok(())
    }
}

/// Brings a testbed up; on any failure, tears down what it created.
pub fn up(opts: &UpOptions) -> anyhow::Result<State> {
    let text = std::fs::read_to_string(&opts.topology)
        .with_context(|| format!("reading {}", opts.topology.display()))?;
    let topology = Topology::parse(&text).with_context(|| opts.topology.display().to_string())?;
    check_machine()?;
    let bins = Binaries::find(opts.bin_dir.as_deref())?;
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating {}", opts.state_dir.display()))?;
    let dir = std::fs::canonicalize(&opts.state_dir)?;
    if let Some(old) = State::load(&dir)? {
        bail!(
            "{} already holds testbed {}: run `gdp-deploy down --state {}` first",
            dir.display(),
            old.prefix,
            dir.display()
        );
    }
    let existing = sys::namespaces()?;
    let in_use = |n: &Naming| {
        existing.iter().any(|ns| n.owns_ns(ns))
            || [n.bridge(), n.root_if()]
                .iter()
                .any(|l| sys::link_exists(l))
    };
    let naming = match &opts.prefix {
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
    if topology.root_joins() {
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
    }
    let mut builder = Builder {
        topology: &topology,
        naming: naming.clone(),
        dir: dir.clone(),
        bins,
        timeout: opts.timeout,
        state: State {
            prefix: naming.prefix().to_owned(),
            topology: std::fs::canonicalize(&opts.topology)
                .unwrap_or_else(|_| opts.topology.clone()),
            subnet: topology.subnet.to_string(),
            complete: false,
            namespaces: Vec::new(),
            root_links: Vec::new(),
            processes: Vec::new(),
            directory: None,
            hosts: Vec::new(),
        },
    };
    builder.save()?;
    let built = builder
        .network()
        .and_then(|()| builder.redis())
        .and_then(|()| builder.daemons())
        .and_then(|()| builder.wait_for_overlay());
    if let Err(e) = built {
        if opts.keep_on_failure {
            return Err(e.context(format!(
                "bringing the testbed up failed; it is left as it is: `gdp-deploy down --state {}` removes it",
                dir.display()
            )));
        }
        let undo = teardown(&builder.state, Duration::from_secs(3));
        let _ = std::fs::remove_file(State::path(&dir));
        return Err(match undo {
            Ok(_) => e.context("bringing the testbed up failed; everything it created is gone"),
            Err(u) => e.context(format!(
                "bringing the testbed up failed, and so did cleaning up: {u:#}"
            )),
        });
    }
    builder.state.complete = true;
    builder.save()?;
    Ok(builder.state)
}

/// What `down` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Processes that exited after SIGTERM.
    pub terminated: usize,
    /// Processes that needed SIGKILL (including strays found in the
    /// namespaces).
    pub killed: usize,
    /// Namespaces deleted.
    pub namespaces: usize,
    /// Root-namespace links deleted.
    pub links: usize,
}

fn wait_dead(procs: &[Spawned], until: Instant) -> bool {
    loop {
        if procs.iter().all(|p| !sys::is_alive(*p)) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Stops every process of `state` (SIGTERM, then SIGKILL after `grace`)
/// and deletes its namespaces and links. Anything already gone is skipped.
pub fn teardown(state: &State, grace: Duration) -> anyhow::Result<DownReport> {
    let mut report = DownReport::default();
    // Capsule servers, then routers (which withdraw their records from the
    // directory on the way out), then redis.
    let stages: [&[&str]; 3] = [&["gdp-capsule-server"], &["gdp-router"], &["redis-server"]];
    for programs in stages {
        let procs: Vec<Spawned> = state
            .processes
            .iter()
            .filter(|p| programs.contains(&p.program.as_str()))
            .map(ProcessState::spawned)
            .filter(|p| sys::is_alive(*p))
            .collect();
        for p in &procs {
            sys::signal(p.pid, "TERM");
        }
        wait_dead(&procs, Instant::now() + grace);
        for p in &procs {
            if sys::is_alive(*p) {
                sys::signal(p.pid, "KILL");
                report.killed += 1;
            } else {
                report.terminated += 1;
            }
        }
        wait_dead(&procs, Instant::now() + Duration::from_secs(2));
    }
    let existing = sys::namespaces()?;
    let mut failures = Vec::new();
    for ns in state.namespaces.iter().rev() {
        if !existing.contains(ns) {
            continue;
        }
        // Anything else still in there (commands run with `exec`).
        for pid in sys::namespace_pids(ns) {
            sys::signal(pid, "KILL");
            report.killed += 1;
        }
        match sys::ip(["netns", "del", ns]) {
            Ok(()) => report.namespaces += 1,
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    for link in state.root_links.iter().rev() {
        if !sys::link_exists(link) {
            continue;
        }
        match sys::ip(["link", "del", link]) {
            Ok(()) => report.links += 1,
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(anyhow!(failures.join("; ")))
    }
}

/// Tears down the testbed whose state is in `dir` and removes its state
/// file. Without a state file there is nothing to do.
pub fn down(dir: &Path, grace: Duration) -> anyhow::Result<Option<DownReport>> {
    let Some(state) = State::load(dir)? else {
        return Ok(None);
    };
    let report = teardown(&state, grace)?;
    std::fs::remove_file(State::path(dir))
        .with_context(|| format!("removing {}", State::path(dir).display()))?;
    Ok(Some(report))
}

/// One process's state as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStatus {
    /// What `up` recorded.
    pub process: ProcessState,
    /// Whether it still runs.
    pub alive: bool,
}

/// The processes of `state` and whether each still runs.
pub fn status(state: &State) -> Vec<ProcessStatus> {
    state
        .processes
        .iter()
        .map(|p| ProcessStatus {
            process: p.clone(),
            alive: sys::is_alive(p.spawned()),
        })
        .collect()
}

/// Runs `command` in `host`'s namespace with `GDP_ROUTER` (and
/// `GDP_ROUTER_NAME`) set to that host's router, with this process's
/// standard streams; returns its exit status.
pub fn exec(
    state: &State,
    host: &str,
    command: &[String],
) -> anyhow::Result<std::process::ExitStatus> {
    let Some(h) = state.host(host) else {
        let known: Vec<&str> = state.hosts.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "no host {host:?} in this testbed (hosts: {})",
            known.join(", ")
        );
    };
    let Some((program, args)) = command.split_first() else {
        bail!("no command given");
    };
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", &h.namespace, program])
        .args(args)
        .env("GDP_ROUTER", h.gdp_router.to_string());
    if let Some(name) = &h.gdp_router_name {
        c.env("GDP_ROUTER_NAME", name);
    }
    c.status()
        .with_context(|| format!("running {program} on {host}"))
}

/// A table of the hosts: namespace, address, router and capsule server.
pub fn table(state: &State) -> String {
    let mut rows = vec![[
        "HOST".to_owned(),
        "NAMESPACE".to_owned(),
        "ADDRESS".to_owned(),
        "ROUTER".to_owned(),
        "CAPSULE SERVER".to_owned(),
    ]];
    for h in &state.hosts {
        let router = match &h.router {
            Some(r) => match &r.via {
                Some(via) => format!("{} :{} via {via}", r.name, r.listen.port()),
                None => format!("{} :{}", r.name, r.listen.port()),
            },
            None => format!("- (clients use {}, {})", h.gdp_router_host, h.gdp_router),
        };
        let server = h
            .capsule_server
            .as_ref()
            .map_or_else(|| "-".to_owned(), |s| format!("{} ({})", s.name, s.mode));
        rows.push([
            h.name.clone(),
            h.namespace.clone(),
            h.address.to_string(),
            router,
            server,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let host = |name: &str, octet: u8, router: bool| HostState {
            name: name.to_owned(),
            namespace: format!("gabc-{name}"),
            address: Ipv4Addr::new(10, 77, 0, octet),
            gdp_router_host: "r1".to_owned(),
            gdp_router: "10.77.0.10:7474".parse().expect("addr"),
            gdp_router_name: Some("a".repeat(52)),
            router: router.then(|| RouterState {
                name: "a".repeat(52),
                listen: SocketAddr::from((Ipv4Addr::new(10, 77, 0, octet), 7474)),
                via: None,
            }),
            capsule_server: router.then(|| ServerState {
                name: "b".repeat(52),
                mode: ServerMode::Embedded,
            }),
        };
        State {
            prefix: "gabc".into(),
            topology: PathBuf::from("/t.toml"),
            subnet: "10.77.0.0/24".into(),
            complete: true,
            namespaces: vec!["gabc_bridge".into(), "gabc-r1".into(), "gabc-c".into()],
            root_links: Vec::new(),
            processes: vec![ProcessState {
                program: "gdp-router".into(),
                host: "r1".into(),
                namespace: Some("gabc-r1".into()),
                pid: u32::MAX,
                start_time: 1,
                name: Some("a".repeat(52)),
                stdout: PathBuf::from("/x.out"),
                log: PathBuf::from("/x.log"),
            }],
            directory: Some(DirectoryState {
                namespace: Some("gabc_directory".into()),
                url: "redis://10.77.0.2:6379".into(),
            }),
            hosts: vec![host("r1", 10, true), host("c", 11, false)],
        }
    }

    #[test]
    fn table_lists_every_host_in_aligned_columns() {
        let t = table(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("HOST  NAMESPACE"), "{t}");
        assert!(lines[1].starts_with("r1    gabc-r1    10.77.0.10"), "{t}");
        assert!(
            lines[1].ends_with(&format!("{} (embedded)", "b".repeat(52))),
            "{t}"
        );
        assert!(
            lines[2].contains("- (clients use r1, 10.77.0.10:7474)"),
            "{t}"
        );
        let col = lines[0].find("ADDRESS").expect("column");
        assert_eq!(lines[2].find("10.77.0.11"), Some(col));
    }

    #[test]
    fn state_round_trips_and_a_gone_process_is_not_alive() {
        let dir = std::env::temp_dir().join(format!("gdp-deploy-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        assert_eq!(State::load(&dir).expect("no file is fine"), None);
        let s = sample();
        s.save(&dir).expect("saves");
        assert_eq!(State::load(&dir).expect("loads"), Some(s.clone()));
        assert!(status(&s).iter().all(|p| !p.alive));
        // Nothing of this state exists, so tearing it down does nothing.
        if sys::which("ip").is_some() && sys::is_root() {
            assert_eq!(
                teardown(&s, Duration::from_millis(10)).expect("nothing to do"),
                DownReport::default()
            );
        }
        std::fs::write(State::path(&dir), "{ not json").expect("write");
        assert!(State::load(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exec_names_the_known_hosts() {
        let e = exec(&sample(), "nope", &["true".to_owned()]).expect_err("unknown host");
        assert!(e.to_string().contains("hosts: r1, c"), "{e}");
        let e = exec(&sample(), "c", &[]).expect_err("no command");
        assert!(e.to_string().contains("no command"), "{e}");
    }
}
