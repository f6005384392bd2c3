//! The example configuration `deploy/config/capsule-server.toml` loads with
//! the server's own config loader and passes `gdp-capsule-server
//! --check-config`, and it documents every setting: each one is in the
//! file, set or commented out as `#key = value`, and a commented-out value
//! is the value in force (the default) unless the key only has examples.
//!
//! `cargo test -p gdp-capsule-server --test example_config`

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use gdp_capsule_server::config::ServerConfig;
use gdp_testkit::TempDir;
use toml::{Table, Value};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/capsule-server.toml")
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

/// Every setting of `config`, flattened.
fn settings(config: &ServerConfig) -> BTreeMap<String, Value> {
    let table: Table = toml::from_str(&config.to_toml().expect("writes")).expect("TOML");
    let mut out = BTreeMap::new();
    flatten(&table, "", &mut out);
    out
}

/// The `section.key`s written in `text` (set or commented out).
fn written_keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in uncommented(text).lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{name}.");
        } else if let Some((key, _)) = line.split_once(" = ")
            && !line.starts_with('#')
        {
            keys.insert(format!("{section}{key}"));
        }
    }
    keys
}

#[test]
fn the_example_loads_with_the_server_loader() {
    let config = ServerConfig::load(&example()).expect("the example parses");
    config.validate().expect("the example is valid");
    assert_eq!(config.data_dir, Path::new("/var/lib/gdp-capsule-server"));
    assert_eq!(
        config.key_file(),
        Path::new("/var/lib/gdp-capsule-server/capsule-server.key")
    );
    assert_eq!(
        config.router.address,
        Some("127.0.0.1:7474".parse().expect("address"))
    );
}

#[test]
fn every_setting_is_documented_with_the_value_in_force() {
    let text = std::fs::read_to_string(example()).expect("the example exists");
    let original = ServerConfig::from_toml(&text, "example").expect("parses");
    let every = ServerConfig::from_toml(&uncommented(&text), "uncommented").expect("parses");
    every.validate().expect("every example value is valid");
    let (in_force, shown) = (settings(&original), settings(&every));
    let written = written_keys(&text);
    for key in shown.keys() {
        // `peer_requests = { ... }` documents peer_requests.per_second too.
        let documented = key
            .match_indices('.')
            .map(|(i, _)| &key[..i])
            .chain([key.as_str()])
            .any(|prefix| written.contains(prefix));
        assert!(documented, "{key} is not in the example");
    }
    for (key, value) in &shown {
        if let Some(v) = in_force.get(key) {
            assert_eq!(
                value, v,
                "{key}: the example shows {value}, in force is {v}"
            );
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gdp-capsule-server"));
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("GDP_CAPSULE_SERVER_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        let out = cmd
            .current_dir(tmp.path())
            .args(["--check-config", "--config"])
            .arg(&file)
            .output()
            .expect("gdp-capsule-server runs");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains("data_dir = \"/var/lib/gdp-capsule-server\""),
            "{printed}"
        );
    }
}
