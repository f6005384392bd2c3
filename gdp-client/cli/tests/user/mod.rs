//! A user of the `gdp` command in tests: a home directory (its key and
//! capsule files) and the router it talks to, with helpers that run `gdp`
//! and check what it printed.

#![allow(dead_code, reason = "each test file uses a part")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Net, Router};

/// One user: a home directory (key and capsule files) and a router.
pub(crate) struct User {
    pub(crate) home: PathBuf,
    pub(crate) router: Option<(String, String)>,
}

impl User {
    pub(crate) fn new(dir: &Path, label: &str) -> User {
        let home = dir.join(label);
        std::fs::create_dir_all(&home).expect("home");
        User { home, router: None }
    }

    pub(crate) fn at(self, net: &Net) -> User {
        self.at_router(&net.router)
    }

    pub(crate) fn at_router(mut self, router: &Router) -> User {
        self.router = Some((router.addr.to_string(), router.name.to_string()));
        self
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gdp"));
        c.args(args).env("HOME", &self.home).env_remove("RUST_LOG");
        for var in [
            "GDP_KEY",
            "GDP_ROUTER",
            "GDP_ROUTER_NAME",
            "GDP_CAPSULE_DIR",
            "GDP_LOG",
            "XDG_CONFIG_HOME",
        ] {
            c.env_remove(var);
        }
        if let Some((addr, name)) = &self.router {
            c.env("GDP_ROUTER", addr).env("GDP_ROUTER_NAME", name);
        }
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("gdp runs")
    }

    pub(crate) fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gdp runs");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())
            .expect("stdin written");
        child.wait_with_output().expect("gdp ends")
    }

    /// Runs and expects success; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gdp {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `gdp --json capsule create ARGS`, retried for a while (the capsule
    /// server may still be attaching); its JSON line.
    pub(crate) fn create_capsule(&self, args: &[&str]) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut full = vec!["--json", "capsule", "create"];
        full.extend_from_slice(args);
        loop {
            let out = self.run(&full);
            if out.status.success() {
                return json_lines(&String::from_utf8(out.stdout).expect("utf-8"))[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "create kept failing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn key_file(&self) -> PathBuf {
        self.home.join(".config/gdp/client.key")
    }

    pub(crate) fn name(&self) -> String {
        self.ok(&["whoami", "--json"])
            .parse::<serde_json::Value>()
            .expect("json")["name"]
            .as_str()
            .expect("name")
            .to_owned()
    }
}

/// The run failed with `code` and exactly one line on stderr, starting
/// with `gdp: `, mentioning `needle`.
pub(crate) fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got {stderr:?}");
    assert!(lines[0].starts_with("gdp: "), "{stderr:?}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{needle:?} not in {stderr:?}"
    );
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"));
}

pub(crate) fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| l.parse().expect("one JSON object per line"))
        .collect()
}
