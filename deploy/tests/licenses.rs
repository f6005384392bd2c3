//! The workspace is licensed "MIT OR Apache-2.0": both texts are at the
//! repository root, every crate takes its `license` from the workspace (and
//! names no `license-file`), and every published crate carries both texts
//! (links to the root's), so each package cargo publishes includes them.
//!
//! `cargo test -p gdp-deploy --test licenses`

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn manifest(dir: &Path) -> toml::Table {
    let path = dir.join("Cargo.toml");
    toml::from_str(&std::fs::read_to_string(&path).expect("a manifest")).expect("TOML")
}

const LICENSES: [&str; 2] = ["LICENSE-MIT", "LICENSE-APACHE"];

#[test]
fn both_texts_are_at_the_root() {
    let mit = std::fs::read_to_string(root().join("LICENSE-MIT")).expect("LICENSE-MIT");
    assert!(mit.starts_with("MIT License\n"), "{mit}");
    assert!(mit.contains("Copyright (c) The GDP developers"), "{mit}");
    assert!(mit.contains("THE SOFTWARE IS PROVIDED \"AS IS\""), "{mit}");
    let apache = std::fs::read_to_string(root().join("LICENSE-APACHE")).expect("LICENSE-APACHE");
    assert!(
        apache.trim_start().starts_with("Apache License")
            && apache.contains("Version 2.0, January 2004"),
        "{apache}"
    );
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
}

#[test]
fn every_crate_takes_the_workspace_license_and_ships_both_texts() {
    let workspace = manifest(&root());
    let license = workspace["workspace"]["package"]["license"]
        .as_str()
        .expect("workspace.package.license");
    assert_eq!(license, "MIT OR Apache-2.0");
    let members = workspace["workspace"]["members"]
        .as_array()
        .expect("members");
    assert!(members.len() >= 10, "{members:?}");
    for member in members {
        let dir = root().join(member.as_str().expect("a path"));
        let package = manifest(&dir)["package"].clone();
        let name = package["name"].as_str().expect("name").to_owned();
        assert_eq!(
            package.get("license").and_then(|l| l.get("workspace")),
            Some(&toml::Value::Boolean(true)),
            "{name}: license.workspace = true"
        );
        assert!(
            package.get("license-file").is_none(),
            "{name}: license-file"
        );
        if package.get("publish").and_then(toml::Value::as_bool) == Some(false) {
            continue;
        }
        for text in LICENSES {
            let shipped = std::fs::read(dir.join(text))
                .unwrap_or_else(|e| panic!("{name} has no {text}: {e}"));
            let original = std::fs::read(root().join(text)).expect("the root's");
            assert!(shipped == original, "{name}/{text} differs from the root's");
        }
    }
}
