//! The systemd units `deploy/systemd/gdp-router.service` and
//! `gdp-capsule-server.service`: `systemd-analyze verify` accepts them
//! without a single warning, `systemd-analyze security --offline` rates
//! their exposure at 2.0 or below, they carry the hardening and restart
//! settings this project promises, and each reads the example config
//! whose data directory is its state directory.
//!
//! `verify` wants each ExecStart program to exist, so the units are checked
//! as copies whose `/usr/local/bin/` is the workspace's binary directory
//! (`target/debug`, or `GDP_BIN_DIR`; build with `cargo build --workspace
//! --bins`). Where `systemd-analyze` is not installed the test says so and
//! passes; `security --offline` needs systemd 250 or later and is skipped,
//! saying so, on older ones.
//!
//! `cargo test -p gdp-deploy --test systemd`

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gdp_deploy::sys;
use gdp_testkit::{TempDir, workspace_bin_dir};

/// Where the units start the programs from (`cargo install --root /usr/local`).
const INSTALLED_BIN: &str = "/usr/local/bin/";

/// Each unit, the program it starts, and the config file it reads.
const UNITS: [(&str, &str, &str); 2] = [
    ("gdp-router.service", "gdp-router", "router.toml"),
    (
        "gdp-capsule-server.service",
        "gdp-capsule-server",
        "capsule-server.toml",
    ),
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The values of `key` in `unit`, in order (`Key=` lines, comments skipped).
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// `systemd`'s version, from `systemd-analyze --version`.
fn systemd_version(analyze: &Path) -> Option<u32> {
    let out = Command::new(analyze).arg("--version").output().ok()?;
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .to_owned();
    first.split_whitespace().nth(1)?.parse().ok()
}

/// Copies of the units in `dir` that start the workspace's binaries.
fn units_with_workspace_binaries(dir: &Path) -> Vec<PathBuf> {
    let bins = std::fs::canonicalize(workspace_bin_dir(&["gdp-router", "gdp-capsule-server"]))
        .expect("bin dir");
    UNITS
        .iter()
        .map(|(unit, _, _)| {
            let text = std::fs::read_to_string(deploy_dir().join("systemd").join(unit))
                .expect("the unit exists");
            let copy = dir.join(unit);
            let bins = format!("{}/", bins.display());
            std::fs::write(&copy, text.replace(INSTALLED_BIN, &bins)).expect("writes");
            copy
        })
        .collect()
}

#[test]
fn systemd_analyze_accepts_the_units() {
    let Some(analyze) = sys::which("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed, the units were not verified");
        return;
    };
    let tmp = TempDir::new("units");
    let units = units_with_workspace_binaries(tmp.path());
    let out = Command::new(&analyze)
        .arg("verify")
        .args(&units)
        .current_dir(tmp.path())
        .output()
        .expect("systemd-analyze runs");
    assert!(out.status.success(), "verify failed:\n{}", text(&out));
    // `verify` reports unknown keys and bad values as warnings and still
    // exits 0: any output is a problem.
    assert!(
        out.stderr.is_empty() && out.stdout.is_empty(),
        "verify complained:\n{}",
        text(&out)
    );

    match systemd_version(&analyze) {
        Some(v) if v >= 250 => {
            let out = Command::new(&analyze)
                .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
                .args(&units)
                .current_dir(tmp.path())
                .output()
                .expect("systemd-analyze runs");
            assert!(
                out.status.success(),
                "an exposure above 2.0:\n{}",
                text(&out)
            );
        }
        v => eprintln!(
            "skipped: systemd {v:?} has no `security --offline` (250 or later), the exposure was not rated"
        ),
    }
}

#[test]
fn the_units_are_hardened_and_read_the_example_configs() {
    for (unit, program, config) in UNITS {
        let text = std::fs::read_to_string(deploy_dir().join("systemd").join(unit))
            .expect("the unit exists");
        let one = |key: &str| -> &str {
            let v = values(&text, key);
            assert_eq!(v.len(), 1, "{unit}: {key} {v:?}");
            v[0]
        };
        assert_eq!(
            one("ExecStart"),
            format!("{INSTALLED_BIN}{program} --config /etc/gdp/{config}"),
            "{unit}"
        );
        assert_eq!(
            one("EnvironmentFile"),
            format!("-/etc/default/{program}"),
            "{unit}"
        );
        for (key, expected) in [
            ("DynamicUser", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("MemoryDenyWriteExecute", "yes"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("Restart", "on-failure"),
            ("UMask", "0077"),
        ] {
            assert_eq!(one(key), expected, "{unit}: {key}");
        }
        assert!(
            values(&text, "SystemCallFilter").contains(&"@system-service"),
            "{unit}"
        );
        let nofile: u64 = one("LimitNOFILE").parse().expect("a number");
        assert!(nofile >= 65_536, "{unit}: LimitNOFILE {nofile}");

        // The state directory is the example config's data directory, the
        // only place the service may write.
        let example = deploy_dir().join("config").join(config);
        let config: toml::Table =
            toml::from_str(&std::fs::read_to_string(&example).expect("the example config exists"))
                .expect("TOML");
        let data_dir = config["data_dir"].as_str().expect("data_dir is set");
        assert_eq!(
            data_dir,
            format!("/var/lib/{}", one("StateDirectory")),
            "{unit} and {}",
            example.display()
        );
        assert_eq!(one("WorkingDirectory"), data_dir, "{unit}");
    }
}
