//! Runs the README's five-minute tour as a script, so the tour stays true.
//!
//! The block between `<!-- tour -->` and `<!-- /tour -->` in README.md runs
//! under `bash -euo pipefail` in an empty directory, with a fresh `HOME` and
//! the workspace's debug binaries first on `PATH` (`scripts/test.sh` builds
//! them). The tour uses the router's default port, 7474.
//!
//! Run with: `cargo build --bins && cargo test -p gdp-cli --test readme_tour`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn tour_script() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md is readable");
    let start = text
        .find("<!-- tour -->")
        .expect("README has a <!-- tour --> block");
    let end = text
        .find("<!-- /tour -->")
        .expect("README has a <!-- /tour --> marker");
    let block = &text[start..end];
    let body_start = block.find("```sh\n").expect("the tour is a ```sh block") + "```sh\n".len();
    let body_end = block.rfind("```").expect("the tour block is closed");
    block[body_start..body_end].to_owned()
}

fn bin_dir() -> PathBuf {
    // The test executable lives in target/debug/deps; the binaries one up.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_owned()
}

#[test]
fn the_readme_tour_works_as_written() {
    let bins = bin_dir();
    for b in ["gdp", "gdp-router", "gdp-capsule-server"] {
        assert!(
            bins.join(b).exists(),
            "{b} is not built in {}: run `cargo build --bins` (scripts/test.sh does)",
            bins.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("gdp-tour-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = format!(
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}",
        tour_script()
    );
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("PATH", path)
        .env_remove("GDP_ROUTER")
        .env_remove("GDP_KEY")
        .env_remove("GDP_CAPSULE_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash runs");
    // Bounded: a hung tour is killed rather than stalling the suite.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on bash") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            child.kill().ok();
            panic!("the tour did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.success(),
        "tour failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // `gdp read 1..5` prints the five records, and the follower saw them too.
    for payload in ["hello", "world", "one", "two", "three"] {
        assert_eq!(
            stdout.lines().filter(|l| l.ends_with(payload)).count(),
            2,
            "{payload:?} should be printed by read and by tail -f\n{stdout}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
