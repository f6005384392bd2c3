//! Runs the README's five-minute tour as a script, so the tour stays true.
//!
//! The block between `<!-- tour -->` and `<!-- /tour -->` in README.md runs
//! under `bash -euo pipefail` in an empty directory, with a fresh `HOME` and
//! the workspace's debug binaries first on `PATH` (`scripts/test.sh` builds
//! them). The tour uses the router's default port, 7474.
//!
//! Run with: `cargo build --bins && cargo test -p gdp-cli --test readme_tour`

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use gdp_testkit::{ChildGuard, TempDir, workspace_bin_dir};

/// Longest the tour may run before it is killed.
const TOUR_TIMEOUT: Duration = Duration::from_secs(90);

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

/// Reads `pipe` to its end on a thread of its own, so that neither of a
/// child's pipes can fill up while the other is read.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = pipe.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    })
}

#[test]
fn the_readme_tour_works_as_written() {
    let bins = workspace_bin_dir(&["gdp", "gdp-router", "gdp-capsule-server"]);
    let dir = TempDir::new("tour");
    let script = format!(
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}",
        tour_script()
    );
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("PATH", path)
        .env_remove("GDP_ROUTER")
        .env_remove("GDP_KEY")
        .env_remove("GDP_CAPSULE_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let stdout = read_all(child.stdout.take().expect("piped"));
    let stderr = read_all(child.stderr.take().expect("piped"));
    // Bounded: a hung tour is killed rather than stalling the suite.
    let status = ChildGuard::new("the tour", child)
        .wait_timeout(TOUR_TIMEOUT)
        .unwrap_or_else(|| panic!("the tour did not finish within {TOUR_TIMEOUT:?}"));
    let stdout = stdout.join().expect("stdout is read");
    let stderr = stderr.join().expect("stderr is read");
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
}
