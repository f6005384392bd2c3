//! Bringing a testbed up and down on this machine: namespaces, a bridge,
//! veth pairs, `redis-server`, routers and capsule servers.
//!
//! - `machine`: what this machine must have (root, `ip`, the programs);
//! - `netns`: the namespaces, the bridge and the veth pairs;
//! - `start`: `redis-server`, the routers and the capsule servers;
//! - `wait`: the pings that tell the overlay works;
//! - `teardown`: stopping everything and deleting the network;
//! - `status`: a running testbed seen from outside;
//! - `faults`: processes, the directory and networks broken on command.

pub mod faults;
pub mod links;
mod machine;
mod netns;
mod start;
mod status;
mod teardown;
mod wait;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

pub use machine::{Binaries, check_machine, deploy_program};
pub use status::{ProcessStatus, exec, in_host, measure, status, table};
pub use teardown::{DownReport, down, teardown};

use crate::engine::{Engine, Podman};
use crate::names::Naming;
use crate::state::State;
use crate::topology::Topology;

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
    /// Where the daemons run.
    pub engine: Engine,
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
    let naming = netns::free_naming(opts.prefix.as_deref())?;
    if topology.root_joins() {
        netns::check_root_subnet(&topology)?;
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
            links_namespace: None,
            netem: false,
            networks: Vec::new(),
            engine: match &opts.engine {
                Engine::Namespaces => Engine::Namespaces,
                Engine::Podman(p) => Engine::Podman(Podman {
                    state_dir: Some(dir.clone()),
                    ..p.clone()
                }),
            },
        },
    };
    builder.save()?;
    let built = builder
        .network()
        .and_then(|()| builder.data_networks())
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;
    use crate::state::{DirectoryState, HostState, ProcessState, RouterState, ServerState};
    use crate::sys;
    use crate::topology::ServerMode;

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
                admin: None,
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
                binary: Some(PathBuf::from("/bin/gdp-router")),
                args: vec!["--listen".into(), "10.77.0.10:7474".into()],
            }],
            directory: Some(DirectoryState {
                namespace: Some("gabc_directory".into()),
                url: "redis://10.77.0.2:6379".into(),
            }),
            hosts: vec![host("r1", 10, true), host("c", 11, false)],
            links_namespace: None,
            netem: false,
            networks: Vec::new(),
            engine: Engine::Namespaces,
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
        let dir = gdp_testkit::TempDir::new("deploy-state");
        let dir = dir.path();
        assert_eq!(State::load(dir).expect("no file is fine"), None);
        let s = sample();
        s.save(dir).expect("saves");
        assert_eq!(State::load(dir).expect("loads"), Some(s.clone()));
        assert!(status(&s).iter().all(|p| !p.alive));
        std::fs::write(State::path(dir), "{ not json").expect("write");
        assert!(State::load(dir).is_err());
    }

    #[test]
    #[ignore = "needs root and the ip command: run with --ignored"]
    fn tearing_down_a_state_of_which_nothing_exists_does_nothing() {
        assert!(
            sys::which("ip").is_some() && sys::is_root(),
            "this test needs root and the ip command"
        );
        assert_eq!(
            teardown(&sample(), Duration::from_millis(10)).expect("nothing to do"),
            DownReport::default()
        );
    }

    #[test]
    fn exec_names_the_known_hosts() {
        let e = exec(&sample(), "nope", &["true".to_owned()]).expect_err("unknown host");
        assert!(e.to_string().contains("hosts: r1, c"), "{e}");
        let e = exec(&sample(), "c", &[]).expect_err("no command");
        assert!(e.to_string().contains("no command"), "{e}");
    }
}
