//! The GDP image under podman: `deploy/image/build.sh` builds it from the
//! workspace's binaries, `deploy/image/redis.sh` makes the `redis:7` image,
//! `gdp-deploy compose --keys` writes the compose file of a one-router
//! topology with a standalone capsule server, podman-compose brings it up,
//! and the `gdp` command on the host (not in a container) creates a
//! capsule on that server through the router at its container address,
//! appends and reads the records back with proofs; the image's HEALTHCHECK
//! passes in both daemons' containers and the server reports itself ready.
//! Then `down -v` removes the containers, the network and the volumes (the
//! images stay).
//!
//! Needs root (rootless podman's networks are not reachable from the
//! host), podman, and podman-compose 1.1 or later on `PATH` (or named by
//! `GDP_PODMAN_COMPOSE`). Where one is missing the test says why and passes:
//! machines without podman skip it. It is ignored unless asked for:
//! `cargo test -p gdp-deploy --test image -- --ignored`, which
//! `scripts/test.sh` runs as root. When runc is installed and
//! `CONTAINERS_CONF` is not set, it uses `deploy/image/containers.conf`
//! (runc, cgroupfs), which works where podman's defaults do not. The
//! binaries come from `target/debug` (or `GDP_BIN_DIR`), as for the other
//! tests; the image is tagged `gdp:test`, so a `gdp:latest` is left alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gdp_deploy::sys;
use gdp_testkit::{TempDir, eventually_blocking, workspace_bin_dir};

/// The image the test builds and the compose file runs (`GDP_IMAGE`).
const IMAGE: &str = "gdp:test";
/// The compose project, so that a run cleans up what a failed one left.
const PROJECT: &str = "gdp-image-test";
/// The topology: one router with a standalone capsule server. Its subnet
/// becomes a podman network with a bridge on the host, which is how the
/// host reaches the router at 10.78.0.10.
const TOPOLOGY: &str = r#"
[network]
subnet = "10.78.0.0/24"

[[host]]
name = "edge"
router = { capsule_server = "standalone" }
"#;
const ROUTER_ADDR: &str = "10.78.0.10:7474";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The podman-compose to use.
fn podman_compose() -> Option<PathBuf> {
    match std::env::var_os("GDP_PODMAN_COMPOSE") {
        Some(path) => Some(PathBuf::from(path)),
        None => sys::which("podman-compose"),
    }
}

/// `major.minor` of a `podman-compose version X.Y.Z` line.
fn compose_version(output: &str) -> Option<(u32, u32)> {
    let line = output
        .lines()
        .find(|l| l.starts_with("podman-compose version"))?;
    let version = line.rsplit(' ').next()?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Why this machine cannot run the test, if it cannot.
fn skip_reason() -> Option<String> {
    if !sys::is_root() {
        return Some("not running as root: rootless podman's container networks are not reachable from the host".into());
    }
    if sys::which("podman").is_none() {
        return Some("podman is not installed".into());
    }
    let Some(compose) = podman_compose() else {
        return Some("podman-compose is not on PATH (nor named by GDP_PODMAN_COMPOSE)".into());
    };
    let out = match Command::new(&compose).arg("--version").output() {
        Ok(out) => out,
        Err(e) => return Some(format!("{} does not run: {e}", compose.display())),
    };
    match compose_version(&String::from_utf8_lossy(&out.stdout)) {
        Some(v) if v >= (1, 1) => None,
        Some((major, minor)) => Some(format!(
            "podman-compose {major}.{minor} is too old: 1.0.3 fails on the compose file's \
             ipv4_address; install 1.1 or later (pip install podman-compose)"
        )),
        None => Some(format!("{} --version: {}", compose.display(), text(&out))),
    }
}

/// The `CONTAINERS_CONF` to give podman: the caller's, or the project's
/// runc and cgroupfs configuration when runc is installed.
fn containers_conf() -> Option<PathBuf> {
    if std::env::var_os("CONTAINERS_CONF").is_some() || sys::which("runc").is_none() {
        return None;
    }
    Some(repo().join("deploy/image/containers.conf"))
}

/// Runs a command with the containers configuration and `GDP_IMAGE`, and
/// returns its output.
fn run(program: &Path, args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir).env("GDP_IMAGE", IMAGE);
    if let Some(conf) = containers_conf() {
        cmd.env("CONTAINERS_CONF", conf);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", program.display()))
}

/// Runs a command that must succeed, and returns its standard output.
fn must(program: &Path, args: &[&str], dir: &Path) -> String {
    let out = run(program, args, dir);
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}",
        program.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Takes the compose project down (containers, network, volumes) when
/// dropped, so that a failing test leaves nothing running.
struct Down {
    compose: PathBuf,
    dir: PathBuf,
    armed: bool,
}

impl Down {
    fn down(&self) -> Output {
        run(
            &self.compose,
            &["-f", "compose.yaml", "down", "-v"],
            &self.dir,
        )
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let out = self.down();
        if !out.status.success() {
            eprintln!("compose down failed:\n{}", text(&out));
        }
    }
}

/// The name after `label` in the compose file's header (`#   router of
/// edge: NAME`).
fn header_name(compose: &str, label: &str) -> String {
    compose
        .lines()
        .find_map(|l| l.strip_prefix(&format!("#   {label}: ")))
        .unwrap_or_else(|| panic!("no {label:?} in the header:\n{compose}"))
        .trim()
        .to_owned()
}

/// Makes `path` and everything under it owned by the image's user, so that
/// the daemons, which run as 10001, can read the key files (mode 0600) the
/// compose file mounts.
fn chown_for_image(path: &Path) {
    std::os::unix::fs::chown(path, Some(10001), Some(10001)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir") {
            chown_for_image(&entry.expect("entry").path());
        }
    }
}

#[test]
#[ignore = "needs root, podman and podman-compose: run with --ignored"]
fn the_image_serves_the_host_through_a_compose_deployment() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: the image test cannot run here: {reason}");
        return;
    }
    let compose = podman_compose().expect("checked");
    let podman = sys::which("podman").expect("checked");
    let bins = std::fs::canonicalize(workspace_bin_dir(&[
        "gdp-router",
        "gdp-capsule-server",
        "gdp",
    ]))
    .expect("bin dir");
    let gdp = bins.join("gdp");
    let tmp = TempDir::new("image");
    let dir = tmp.path().to_owned();
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());

    // The images: the GDP one from this build, redis:7 from the host's
    // redis-server (kept when it exists).
    let context = dir.join("context");
    let context_arg = context.to_string_lossy().into_owned();
    let bins_arg = bins.to_string_lossy().into_owned();
    must(
        &repo().join("deploy/image/build.sh"),
        &[
            "--bin-dir",
            &bins_arg,
            "--tag",
            IMAGE,
            "--context",
            &context_arg,
            "--engine",
            "podman",
        ],
        &dir,
    );
    step("built gdp:test");
    let inspect = must(
        &podman,
        &[
            "image",
            "inspect",
            IMAGE,
            "--format",
            "{{.Config.User}} {{.Config.WorkingDir}}",
        ],
        &dir,
    );
    assert_eq!(inspect.trim(), "10001:10001 /var/lib/gdp");
    let inspect = must(&podman, &["image", "inspect", IMAGE], &dir);
    assert!(
        inspect.contains("\"Healthcheck\"") && inspect.contains("\"health\""),
        "a HEALTHCHECK running `gdp router health`:\n{inspect}"
    );
    assert!(
        sys::which("redis-server").is_some(),
        "redis-server is not on PATH: scripts/test.sh installs it"
    );
    must(
        &repo().join("deploy/image/redis.sh"),
        &["--engine", "podman"],
        &dir,
    );
    step("redis:7 is there");

    // The compose file, as an operator would write it, with the keys made
    // beforehand and handed to the image's user.
    std::fs::write(dir.join("topology.toml"), TOPOLOGY).expect("writes");
    let compose_file = must(
        Path::new(env!("CARGO_BIN_EXE_gdp-deploy")),
        &[
            "compose",
            "topology.toml",
            "--project",
            PROJECT,
            "--keys",
            "keys",
        ],
        &dir,
    );
    std::fs::write(dir.join("compose.yaml"), &compose_file).expect("writes");
    chown_for_image(&dir.join("keys"));
    let router = header_name(&compose_file, "router of edge");
    let server = header_name(&compose_file, "capsule server of edge");

    let mut down = Down {
        compose: compose.clone(),
        dir: dir.clone(),
        armed: true,
    };
    // Whatever a failed run left behind goes first.
    let _ = down.down();
    let up = run(&compose, &["-f", "compose.yaml", "up", "-d"], &dir);
    assert!(up.status.success(), "compose up failed:\n{}", text(&up));
    step("compose up");

    // The host's `gdp`, through the router at its container address.
    let key = dir.join("me.key").to_string_lossy().into_owned();
    let capsules = dir.join("capsules").to_string_lossy().into_owned();
    let client = |args: &[&str]| -> Output {
        let mut all = vec![
            "--key",
            key.as_str(),
            "--capsule-dir",
            capsules.as_str(),
            "--router",
            ROUTER_ADDR,
            "--router-name",
            router.as_str(),
            "--timeout",
            "5s",
        ];
        all.extend_from_slice(args);
        run(&gdp, &all, &dir)
    };
    let logs = || text(&run(&compose, &["-f", "compose.yaml", "logs"], &dir));
    let keygen = client(&["keygen"]);
    assert!(keygen.status.success(), "{}", text(&keygen));
    // Up once the capsule server has attached and its route is published.
    let mut last = None;
    let deadline = Duration::from_secs(60);
    let ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually_blocking(deadline, "the capsule server answers a ping", || {
            let ping = client(&["ping", &server, "--count", "1"]);
            let ok = ping.status.success();
            if !ok {
                last = Some(text(&ping));
                std::thread::sleep(Duration::from_millis(500));
            }
            ok
        });
    }));
    if ready.is_err() {
        panic!(
            "no answer from the capsule server within {deadline:?}; last ping:\n{}\ncompose logs:\n{}",
            last.unwrap_or_default(),
            logs()
        );
    }
    step("the capsule server answers through the router");

    let create = client(&["capsule", "create", "--server", &server, "--label", "image"]);
    assert!(create.status.success(), "{}\n{}", text(&create), logs());
    let capsule = String::from_utf8_lossy(&create.stdout)
        .lines()
        .next()
        .expect("the capsule's name")
        .trim()
        .to_owned();
    assert_eq!(capsule.len(), 52, "{capsule:?}");
    let append = client(&["append", &capsule, "from the host", "through a container"]);
    assert!(append.status.success(), "{}\n{}", text(&append), logs());
    // `read` verifies each record's proof before printing it.
    let read = client(&["read", &capsule, "1..2"]);
    assert!(read.status.success(), "{}\n{}", text(&read), logs());
    let records = String::from_utf8_lossy(&read.stdout).into_owned();
    assert!(
        records.contains("from the host") && records.contains("through a container"),
        "{records}"
    );
    step("created, appended and read back");

    // The daemons run as the image's user, with their data in the volumes.
    let ps = must(
        &podman,
        &[
            "ps",
            "--filter",
            &format!("label=io.podman.compose.project={PROJECT}"),
            "--format",
            "{{.Names}}",
        ],
        &dir,
    );
    let names: Vec<&str> = ps.lines().collect();
    assert_eq!(names.len(), 3, "directory, router, server: {names:?}");
    for name in names.iter().filter(|n| !n.contains("directory")) {
        let user = must(
            &podman,
            &["inspect", name, "--format", "{{.Config.User}}"],
            &dir,
        );
        assert_eq!(user.trim(), "10001:10001", "{name}");
        // The image's HEALTHCHECK (`gdp router health`), run on demand:
        // the server shares the router's network namespace, so both see
        // the router's admin API on 127.0.0.1:7475.
        let health = run(&podman, &["healthcheck", "run", name], &dir);
        assert!(
            health.status.success(),
            "{name} is not healthy:\n{}",
            text(&health)
        );
    }
    let server_container = names
        .iter()
        .find(|n| n.contains("capsule-server"))
        .expect("the capsule server's container");
    let ready = run(
        &podman,
        &[
            "exec",
            server_container,
            "gdp",
            "server",
            "health",
            "--ready",
        ],
        &dir,
    );
    assert!(
        ready.status.success(),
        "the server is not ready:\n{}",
        text(&ready)
    );

    let out = down.down();
    down.armed = false;
    assert!(out.status.success(), "compose down failed:\n{}", text(&out));
    let left = must(
        &podman,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label=io.podman.compose.project={PROJECT}"),
            "--format",
            "{{.Names}}",
        ],
        &dir,
    );
    assert!(left.trim().is_empty(), "left after down: {left}");
    step("compose down");
}

#[test]
fn podman_compose_versions_are_read() {
    assert_eq!(
        compose_version("podman-compose version 1.6.0\npodman version 4.3.1\n"),
        Some((1, 6))
    );
    assert_eq!(
        compose_version(
            "['podman', '--version', '']\nusing podman version: 4.3.1\npodman-compose version 1.0.3\n"
        ),
        Some((1, 0))
    );
    assert_eq!(compose_version("nonsense"), None);
}
