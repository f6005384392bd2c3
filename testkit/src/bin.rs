//! The workspace's binaries, as `cargo build --workspace --bins` leaves
//! them, for tests that run them as processes.
//!
//! A test of one package cannot ask cargo for another package's binary
//! (`CARGO_BIN_EXE_*` names only its own), so these functions look where
//! cargo puts them. In order:
//!
//! 1. the variable `<NAME>_BIN`, the binary's name in capitals with `-` as
//!    `_` (`GDP_ROUTER_BIN` for `gdp-router`), naming the file;
//! 2. the variable `GDP_BIN_DIR`, naming a directory;
//! 3. the profile directory of the running executable (`target/debug` for
//!    a test in `target/debug/deps`, `target/release` for an example in
//!    `target/release/examples`), which follows `CARGO_TARGET_DIR`.
//!
//! So a benchmark built with `--release` runs release binaries, and never
//! a debug build that happens to be lying around.

use std::path::{Path, PathBuf};

/// The variable naming a directory that holds every binary.
pub const BIN_DIR_ENV: &str = "GDP_BIN_DIR";

/// The variable naming the file of binary `name`: `GDP_ROUTER_BIN` for
/// `gdp-router`.
pub fn bin_env(name: &str) -> String {
    format!("{}_BIN", name.to_uppercase().replace('-', "_"))
}

/// The directories searched, in order (steps 2 and 3 of the module docs).
fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile) = exe.parent().and_then(Path::parent)
    {
        dirs.push(profile.to_owned());
    }
    dirs
}

/// The path of the workspace binary `name`, or a message saying where it
/// was looked for and how to build it.
pub fn find_workspace_bin(name: &str) -> Result<PathBuf, String> {
    let var = bin_env(name);
    if let Some(path) = std::env::var_os(&var) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{var}={} is not a file", path.display()))
        };
    }
    let dirs = candidate_dirs();
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| not_built(&[name], &dirs))
}

/// The path of the workspace binary `name`.
///
/// # Panics
///
/// When it is not built, with the places searched and the command that
/// builds it (`cargo build --workspace --bins`, which `scripts/test.sh`
/// runs).
pub fn workspace_bin(name: &str) -> PathBuf {
    find_workspace_bin(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The first directory searched that holds every one of `names` (for a
/// program given a directory of binaries, or a `PATH`).
///
/// # Panics
///
/// When no directory holds them all.
pub fn workspace_bin_dir(names: &[&str]) -> PathBuf {
    let dirs = candidate_dirs();
    dirs.iter()
        .find(|dir| names.iter().all(|name| dir.join(name).is_file()))
        .cloned()
        .unwrap_or_else(|| panic!("{}", not_built(names, &dirs)))
}

fn not_built(names: &[&str], dirs: &[PathBuf]) -> String {
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!(
        "{} not built (searched {}): build with `cargo build --workspace --bins` \
         (scripts/test.sh does), or set {BIN_DIR_ENV}",
        names.join(", "),
        searched.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_named_after_the_binary() {
        assert_eq!(bin_env("gdp-router"), "GDP_ROUTER_BIN");
        assert_eq!(bin_env("gdp-capsule-server"), "GDP_CAPSULE_SERVER_BIN");
        assert_eq!(bin_env("gdp"), "GDP_BIN");
    }

    #[test]
    fn a_missing_binary_is_reported_with_the_build_command() {
        let err = find_workspace_bin("gdp-no-such-binary").expect_err("not built");
        assert!(err.contains("cargo build --workspace --bins"), "{err}");
        assert!(err.contains("debug"), "the test's own profile: {err}");
    }
}
