//! Runs the install guide, `docs/install.md`, as far as a test machine
//! allows, so that it stays true:
//!
//! - the blocks marked `install-files` and `check` run under `bash -e` from
//!   the repository's top directory with `DESTDIR` set to a temporary
//!   directory and the workspace's binaries first on `PATH`: the configs and
//!   units land where the guide says, and both daemons accept the installed
//!   configs with `--check-config`;
//! - every repository path the guide names exists, every flag it gives
//!   `gdp-router` or `gdp-capsule-server` is one they accept, and every
//!   `gdp` command it runs exists with the flags it gives;
//! - the block marked `install-programs` (`cargo install --locked`, a
//!   release build of three packages, many minutes) runs only when
//!   `GDP_TEST_CARGO_INSTALL=1` asks, offline, with its build directory in
//!   `target/install-guide`; otherwise the test says it was skipped.
//!
//! `cargo build --workspace --bins && cargo test -p gdp-deploy --test install_guide`

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gdp_testkit::{TempDir, workspace_bin_dir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn guide() -> String {
    std::fs::read_to_string(repo().join("docs/install.md")).expect("docs/install.md exists")
}

/// The ```sh block between `<!-- name -->` and `<!-- /name -->`.
fn block(guide: &str, name: &str) -> String {
    let start = guide
        .find(&format!("<!-- {name} -->"))
        .unwrap_or_else(|| panic!("the guide has no <!-- {name} --> block"));
    let end = guide[start..]
        .find(&format!("<!-- /{name} -->"))
        .map(|e| start + e)
        .unwrap_or_else(|| panic!("the guide's {name} block is not closed"));
    let text = &guide[start..end];
    let body = text.find("```sh\n").expect("a ```sh block") + "```sh\n".len();
    let body_end = text.rfind("```").expect("the block is closed");
    text[body..body_end].to_owned()
}

/// Every ```sh block of the guide, joined.
fn all_blocks(guide: &str) -> String {
    guide
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(body, _)| body))
        .collect::<Vec<_>>()
        .join("\n")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `script` under bash from the repository's top directory with
/// `DESTDIR` and the workspace's binaries first on `PATH`.
fn run_block(script: &str, destdir: &Path, extra_env: &[(&str, &str)]) -> Output {
    let bins = workspace_bin_dir(&["gdp-router", "gdp-capsule-server", "gdp"]);
    let path = format!(
        "{}:{}",
        std::fs::canonicalize(bins).expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-e", "-o", "pipefail", "-c", script])
        .current_dir(repo())
        .env("DESTDIR", destdir)
        .env("PATH", path)
        .envs(extra_env.iter().copied());
    // The guide's commands must not pick up the caller's settings.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("GDP_ROUTER_") || name.starts_with("GDP_CAPSULE_SERVER_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd.output().expect("bash runs")
}

#[test]
fn the_files_install_where_the_guide_says_and_their_configs_check() {
    let guide = guide();
    let dest = TempDir::new("install-guide");
    let out = run_block(&block(&guide, "install-files"), dest.path(), &[]);
    assert!(out.status.success(), "install-files:\n{}", text(&out));
    for (installed, source) in [
        ("etc/gdp/router.toml", "deploy/config/router.toml"),
        (
            "etc/gdp/capsule-server.toml",
            "deploy/config/capsule-server.toml",
        ),
        (
            "etc/systemd/system/gdp-router.service",
            "deploy/systemd/gdp-router.service",
        ),
        (
            "etc/systemd/system/gdp-capsule-server.service",
            "deploy/systemd/gdp-capsule-server.service",
        ),
    ] {
        let got = std::fs::read(dest.path().join(installed))
            .unwrap_or_else(|e| panic!("{installed} not installed: {e}"));
        let want = std::fs::read(repo().join(source)).expect("the source exists");
        assert!(got == want, "{installed} differs from {source}");
        // The units read what the guide installs.
        if installed.ends_with(".service") {
            let unit = String::from_utf8_lossy(&got);
            let config = if installed.contains("router") {
                "/etc/gdp/router.toml"
            } else {
                "/etc/gdp/capsule-server.toml"
            };
            assert!(unit.contains(&format!("--config {config}")), "{installed}");
        }
    }

    let out = run_block(&block(&guide, "check"), dest.path(), &[]);
    assert!(out.status.success(), "check:\n{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    for daemon in ["gdp-router", "gdp-capsule-server"] {
        assert!(
            printed.contains(&format!(
                "# {daemon} --check-config: the configuration is valid."
            )),
            "{printed}"
        );
    }
    assert!(
        printed.contains("data_dir = \"/var/lib/gdp-router\""),
        "{printed}"
    );
}

#[test]
fn the_paths_and_flags_the_guide_names_exist() {
    let guide = guide();
    let mut paths = 0;
    for word in guide.split(|c: char| c.is_whitespace() || "`()[]\"',:".contains(c)) {
        let word = word.trim_start_matches("../").trim_end_matches('.');
        if ["deploy/", "docs/", "scripts/"]
            .iter()
            .any(|p| word.starts_with(p))
        {
            assert!(
                repo().join(word).exists(),
                "the guide names {word}, which does not exist"
            );
            paths += 1;
        }
    }
    assert!(paths >= 10, "only {paths} paths found");

    let blocks = all_blocks(&guide);
    for program in ["gdp-router", "gdp-capsule-server"] {
        let bin = workspace_bin_dir(&[program]).join(program);
        let help = Command::new(&bin).arg("--help").output().expect("runs");
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let mut flags = 0;
        for line in blocks.lines() {
            let Some(at) = line.find(&format!("{program} ")) else {
                continue;
            };
            // Only this program's arguments, up to a pipe.
            let args = line[at..].split('|').next().unwrap_or("");
            for flag in args.split_whitespace().filter(|w| w.starts_with("--")) {
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "the guide gives {program} {flag}, which its --help does not list"
                );
                flags += 1;
            }
        }
        assert!(flags >= 2, "{program}: only {flags} flags checked");
    }
}

/// Every `gdp` command in the guide's blocks is one `gdp` has, and it
/// accepts the flags the guide gives it.
#[test]
fn the_gdp_commands_the_guide_uses_exist() {
    let gdp = workspace_bin_dir(&["gdp"]).join("gdp");
    let blocks = all_blocks(&guide());
    let mut commands = 0;
    for line in blocks.lines() {
        let line = line.replace("$(", " ");
        let tokens: Vec<&str> = line.split_whitespace().collect();
        for (i, _) in tokens.iter().enumerate().filter(|(_, t)| **t == "gdp") {
            let rest = &tokens[i + 1..];
            // The subcommand: lowercase words, up to the first argument.
            let path: Vec<&str> = rest
                .iter()
                .take_while(|t| {
                    t.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !t.starts_with('-')
                })
                .copied()
                .collect();
            let flags: Vec<&str> = rest
                .iter()
                .take_while(|t| **t != "|")
                .filter(|t| t.starts_with("--"))
                .copied()
                .collect();
            let help = Command::new(&gdp)
                .args(&path)
                .arg("--help")
                .output()
                .expect("gdp runs");
            assert!(
                help.status.success(),
                "the guide runs `gdp {}`, which gdp does not have:\n{}",
                path.join(" "),
                text(&help)
            );
            let help = String::from_utf8_lossy(&help.stdout);
            for flag in flags {
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "the guide gives `gdp {}` {flag}, which its --help does not list",
                    path.join(" ")
                );
            }
            commands += 1;
        }
    }
    assert!(commands >= 8, "only {commands} gdp commands checked");
}

#[test]
fn cargo_install_installs_the_three_programs_when_asked() {
    if std::env::var_os("GDP_TEST_CARGO_INSTALL").is_none_or(|v| v != "1") {
        eprintln!(
            "skipped: `cargo install --locked` of the guide builds three packages in release \
             mode; set GDP_TEST_CARGO_INSTALL=1 to run it"
        );
        return;
    }
    let dest = TempDir::new("install-programs");
    let target = repo().join("target/install-guide");
    let target = target.to_string_lossy().into_owned();
    let out = run_block(
        &block(&guide(), "install-programs"),
        dest.path(),
        &[("CARGO_NET_OFFLINE", "true"), ("CARGO_TARGET_DIR", &target)],
    );
    assert!(out.status.success(), "install-programs:\n{}", text(&out));
    for program in ["gdp-router", "gdp-capsule-server", "gdp"] {
        let bin = dest.path().join("usr/local/bin").join(program);
        let out = Command::new(&bin)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{} does not run: {e}", bin.display()));
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(program),
            "{}",
            text(&out)
        );
    }
}
