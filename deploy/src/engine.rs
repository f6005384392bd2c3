//! Where a testbed's daemons run: as host processes inside the hosts'
//! network namespaces, or in containers of the project's image joined to
//! those same namespaces.
//!
//! Either way `gdp-deploy` makes the namespaces, the segments, the links
//! and their impairments itself, so a topology, its faults and its
//! scenarios mean the same thing under both engines. With
//! [`Engine::Podman`] each daemon (`redis-server`, `gdp-router`,
//! `gdp-capsule-server`) is a container of its own:
//!
//! ```text
//! podman run --rm --no-healthcheck --replace --name <prefix>-<host>-<program> \
//!     --network ns:/run/netns/<namespace> --user 0:0 \
//!     --volume <state dir>:<state dir> <image> <program> <args...>
//! ```
//!
//! so it sees the testbed's networks and nothing else of the host's, runs
//! the programs of the image rather than the host's, and keeps its keys,
//! data and logs in the state directory, at the same paths as a host
//! process would. The `podman run` client stays attached, which carries the
//! container's output to the testbed's log files; the pid recorded for the
//! daemon is its container's main process, as seen from the host, so that
//! killing, stopping and continuing it act on the daemon itself. `--rm`
//! removes a container once its daemon is gone, so a restart runs the same
//! command line again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::sys;

/// The image the daemons' containers run unless told otherwise.
pub const DEFAULT_IMAGE: &str = "gdp:latest";
/// The image of the directory's container (made by `deploy/image/redis.sh`).
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7";
/// How long a container's main process may take to appear after `podman
/// run` started.
pub const CONTAINER_START: Duration = Duration::from_secs(30);

/// Where the daemons of a testbed run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Engine {
    /// Host processes in the namespaces (`ip netns exec`).
    #[default]
    Namespaces,
    /// Podman containers joined to the namespaces.
    Podman(Podman),
}

/// How podman is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Podman {
    /// The GDP image (`deploy/image/build.sh` makes it).
    pub image: String,
    /// The directory's image.
    pub redis_image: String,
    /// A `containers.conf` given to podman (`CONTAINERS_CONF`), if any.
    pub conf: Option<PathBuf>,
    /// The testbed's state directory (keys, data, logs), which every
    /// container shares at its own path; `up` sets it.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

impl Podman {
    /// Checks that podman is installed and both images exist; takes
    /// `CONTAINERS_CONF` from the environment, or else `conf` when given.
    pub fn check(image: &str, redis_image: &str, conf: Option<&Path>) -> anyhow::Result<Podman> {
        if sys::which("podman").is_none() {
            bail!("podman is not on PATH (Debian: apt-get install podman runc)");
        }
        let podman = Podman {
            image: image.to_owned(),
            redis_image: redis_image.to_owned(),
            conf: std::env::var_os("CONTAINERS_CONF")
                .map(PathBuf::from)
                .or_else(|| conf.map(Path::to_path_buf)),
            state_dir: None,
        };
        for (what, image, made_by) in [
            ("the GDP image", image, "deploy/image/build.sh --tag"),
            (
                "the directory's image",
                redis_image,
                "deploy/image/redis.sh --tag",
            ),
        ] {
            let status = podman
                .command()
                .args(["image", "exists", image])
                .status()
                .context("running podman")?;
            if !status.success() {
                bail!("{what} {image} does not exist: make it with `{made_by} {image}`");
            }
        }
        Ok(podman)
    }

    /// A `podman` command with this testbed's configuration.
    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        if let Some(conf) = &self.conf {
            c.env("CONTAINERS_CONF", conf);
        }
        c
    }

    /// The arguments of `podman run` for `program` (a program of `image`)
    /// with `args`, in the container `name`, joined to the network
    /// namespace `ns` (the host's network when `None`) and sharing
    /// `volumes` at their own paths.
    pub fn run_args(
        name: &str,
        ns: Option<&str>,
        volumes: &[&Path],
        image: &str,
        program: &str,
        args: &[String],
    ) -> Vec<String> {
        let mut all: Vec<String> = [
            "run",
            "--rm",
            // Readiness is what the testbed checks itself.
            "--no-healthcheck",
            // A restart right after a kill may find the old container not
            // yet removed.
            "--replace",
            "--name",
            name,
            "--network",
            &ns.map_or_else(|| "host".to_owned(), |ns| format!("ns:/run/netns/{ns}")),
            // The keys in the state directory belong to root, who made
            // them; the image's own user could not read them.
            "--user",
            "0:0",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for v in volumes {
            let v = v.display();
            all.push("--volume".into());
            all.push(format!("{v}:{v}"));
        }
        all.push(image.to_owned());
        all.push(program.to_owned());
        all.extend(args.iter().cloned());
        all
    }

    /// The pid, on the host, of the main process of the running container
    /// `name`, once it runs; waits up to [`CONTAINER_START`], or until
    /// `client` (the attached `podman run`) is gone.
    pub fn main_pid(&self, name: &str, client: sys::Spawned) -> anyhow::Result<sys::Spawned> {
        let deadline = Instant::now() + CONTAINER_START;
        loop {
            let out = self
                .command()
                .args(["container", "inspect", "--format", "{{.State.Pid}}", name])
                .output()
                .context("running podman container inspect")?;
            let pid: u32 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0);
            if pid != 0
                && let Some(start_time) = sys::start_time(pid)
            {
                return Ok(sys::Spawned { pid, start_time });
            }
            if !sys::is_alive(client) {
                bail!("podman run for container {name} ended before the container ran");
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "container {name} did not run within {CONTAINER_START:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Removes the containers whose names start with `prefix`, running or
    /// not; how many there were.
    pub fn remove_all(&self, prefix: &str) -> anyhow::Result<usize> {
        let out = self
            .command()
            .args(["ps", "--all", "--format", "{{.Names}}"])
            .output()
            .context("running podman ps")?;
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|n| n.starts_with(prefix))
            .map(str::to_owned)
            .collect();
        if !names.is_empty() {
            let status = self
                .command()
                .args(["rm", "--force", "--time", "0"])
                .args(&names)
                .stdout(std::process::Stdio::null())
                .status()
                .context("running podman rm")?;
            if !status.success() {
                bail!("podman rm failed for {}", names.join(", "));
            }
        }
        Ok(names.len())
    }
}

impl Engine {
    /// Starts `program` (the host's `binary`) with `args` for `host` of the
    /// testbed named by `prefix`, in the namespace `ns` (the root one when
    /// `None`), its output to `stdout` and `log`: a host process, or a
    /// container whose main process is returned.
    #[allow(clippy::too_many_arguments, reason = "one launch, spelled out")]
    pub fn launch(
        &self,
        prefix: &str,
        host: &str,
        program: &str,
        ns: Option<&str>,
        binary: &Path,
        args: &[String],
        stdout: &Path,
        log: &Path,
    ) -> anyhow::Result<sys::Spawned> {
        match self {
            Engine::Namespaces => {
                let mut command = sys::in_namespace(ns, binary);
                command.args(args);
                sys::spawn_detached(command, stdout, log)
            }
            Engine::Podman(podman) => {
                let name = container_name(prefix, host, program);
                let image = if program == REDIS_SERVER {
                    &podman.redis_image
                } else {
                    &podman.image
                };
                let volumes: Vec<&Path> = podman.state_dir.iter().map(PathBuf::as_path).collect();
                let mut command = podman.command();
                command.args(Podman::run_args(&name, ns, &volumes, image, program, args));
                let client = sys::spawn_detached(command, stdout, log)?;
                podman.main_pid(&name, client).map_err(|e| {
                    anyhow!("{e:#}\n--- {} ---\n{}", log.display(), sys::tail(log, 20))
                })
            }
        }
    }
}

impl Podman {
    /// Waits up to `within` for the `podman run` clients of the containers
    /// whose names start with `prefix` to exit (each exits once its
    /// container is removed); the pids of those still there.
    pub fn wait_for_clients(prefix: &str, within: Duration) -> Vec<u32> {
        let deadline = Instant::now() + within;
        loop {
            let left = clients_of(prefix);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The pids of `podman run` clients of containers named `prefix...`.
fn clients_of(prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"podman"))
                    && args
                        .windows(2)
                        .any(|w| w[0] == b"--name" && w[1].starts_with(prefix.as_bytes()))
            })
        })
        .collect()
}

/// The directory's program, which runs from the directory's image.
const REDIS_SERVER: &str = "redis-server";

/// The container name of `program` on `host` in the testbed whose names
/// start with `prefix`.
pub fn container_name(prefix: &str, host: &str, program: &str) -> String {
    format!("{prefix}-{host}-{program}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_joins_its_namespace_as_root_with_the_state_dir_at_its_own_path() {
        let args = Podman::run_args(
            "tb-r1-gdp-router",
            Some("tb-r1"),
            &[Path::new("/tmp/state")],
            "gdp:test",
            "gdp-router",
            &["--listen".into(), "10.78.1.1:7474".into()],
        );
        assert_eq!(
            args.join(" "),
            "run --rm --no-healthcheck --replace --name tb-r1-gdp-router --network ns:/run/netns/tb-r1 --user 0:0 \
             --volume /tmp/state:/tmp/state gdp:test gdp-router --listen 10.78.1.1:7474"
        );
    }

    #[test]
    fn the_engine_round_trips_through_the_state_file() {
        for engine in [
            Engine::Namespaces,
            Engine::Podman(Podman {
                image: "gdp:test".into(),
                redis_image: DEFAULT_REDIS_IMAGE.into(),
                conf: Some("/x/containers.conf".into()),
                state_dir: Some("/tmp/tb".into()),
            }),
        ] {
            let json = serde_json::to_string(&engine).expect("serializes");
            let back: Engine = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, engine);
        }
        assert_eq!(
            serde_json::from_str::<Engine>(r#"{"kind":"namespaces"}"#).expect("parses"),
            Engine::Namespaces
        );
    }

    #[test]
    fn container_names_carry_the_testbed_prefix() {
        assert_eq!(
            container_name("gdpab12", "r1", "gdp-router"),
            "gdpab12-r1-gdp-router"
        );
    }
}
