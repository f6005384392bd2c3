//! The example configuration `deploy/config/router.toml` loads with the
//! router's own config loader and passes `gdp-router --check-config`, and
//! it documents every setting: each one is in the file, set or commented
//! out as `#key = value`, and a commented-out value is the value in force
//! (the default) unless the key only has examples.
//!
//! `cargo test -p gdp-router --test example_config`

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser as _;
use gdp_router::config::{Cli, FileConfig, RouterSettings};
use gdp_testkit::TempDir;
use toml::{Table, Value};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/router.toml")
}

/// The file with every `#key = value` and `#[table]` line made active.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The settings the router resolves from `text` with no flag.
fn resolve(text: &str) -> RouterSettings {
    let file = FileConfig::parse(text, Path::new("router.toml")).expect("parses");
    let cli = Cli::try_parse_from(["gdp-router"]).expect("no flags");
    RouterSettings::resolve(file, &cli).expect("valid")
}

/// `section.key` -> value, for every key of `table` and its tables.
fn flatten(table: &Table, prefix: &str, out: &mut BTreeMap<String, Value>) {
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        match value {
            Value::Table(inner) if !inner.is_empty() => flatten(inner, &format!("{path}."), out),
            other => {
                out.insert(path, other.clone());
            }
        }
    }
}

/// The `section.key`s written in `text` (set or commented out).
fn written_keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in uncommented(text).lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{name}.");
            keys.insert(name.to_owned());
        } else if let Some((key, _)) = line.split_once(" = ")
            && !line.starts_with('#')
        {
            keys.insert(format!("{section}{key}"));
        }
    }
    keys
}

#[test]
fn the_example_loads_with_the_router_loader() {
    let settings = RouterSettings::from_cli(
        &Cli::try_parse_from([
            "gdp-router",
            "--config",
            example().to_str().expect("utf-8 path"),
        ])
        .expect("valid"),
    )
    .expect("the example is valid");
    assert_eq!(settings.data_dir, Path::new("/var/lib/gdp-router"));
    assert_eq!(
        settings.key_file,
        Path::new("/var/lib/gdp-router/gdp-router.key")
    );
    assert!(settings.capsule_server.is_none(), "no embedded server");
}

#[test]
fn every_setting_is_documented_with_the_value_in_force() {
    let text = std::fs::read_to_string(example()).expect("the example exists");
    let all = uncommented(&text);
    let original = resolve(&text);
    let every = resolve(&all);
    // The embedded server's table, made active, is one the server takes.
    gdp_capsule_server::config::ServerConfig::from_router_table(
        every.capsule_server.clone(),
        &every.data_dir,
        every.listen,
    )
    .expect("[capsule_server] is valid");

    let mut in_force = BTreeMap::new();
    flatten(&original.to_masked_table(), "", &mut in_force);
    let mut shown = BTreeMap::new();
    flatten(&every.to_masked_table(), "", &mut shown);
    let written = written_keys(&text);
    for key in shown.keys() {
        assert!(written.contains(key), "{key} is not in the example");
    }
    // Keys with examples rather than defaults: set only in the
    // uncommented file, or listed here.
    let examples = ["directory", "trust.trusted_domains", "trust.trusted_peers"];
    for (key, value) in &shown {
        match in_force.get(key) {
            Some(v) if !examples.contains(&key.as_str()) => {
                assert_eq!(
                    value, v,
                    "{key}: the example shows {value}, in force is {v}"
                );
            }
            _ => {}
        }
    }
    assert!(
        shown.len() > in_force.len(),
        "the optional keys have examples"
    );
}

#[test]
fn check_config_accepts_the_example_and_all_its_settings() {
    let tmp = TempDir::new("example-config");
    let all = tmp.path().join("all.toml");
    let text = std::fs::read_to_string(example()).expect("the example exists");
    std::fs::write(&all, uncommented(&text)).expect("writes");
    for file in [example(), all] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gdp-router"));
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("GDP_ROUTER_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        let out = cmd
            .current_dir(tmp.path())
            .args(["--check-config", "--config"])
            .arg(&file)
            .output()
            .expect("gdp-router runs");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains("data_dir = \"/var/lib/gdp-router\""),
            "{printed}"
        );
    }
}
