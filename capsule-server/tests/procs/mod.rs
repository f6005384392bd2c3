//! Real processes for the process-level tests: the `gdp-router` binary
//! (from `cargo build --workspace --bins`, or `GDP_ROUTER_BIN`), the
//! `gdp-capsule-server` binary of this package, and `redis-server`.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gdp_certs::Name;

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    child: Child,
    what: &'static str,
    log: Option<PathBuf>,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "SIGTERM delivered to the {}", self.what);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the {} did not exit after SIGTERM",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let Some(path) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn router_bin() -> PathBuf {
    let path = match std::env::var_os("GDP_ROUTER_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/gdp-router"),
    };
    assert!(
        path.exists(),
        "the gdp-router binary is not at {}: build it with `cargo build --workspace --bins` \
         (scripts/test.sh does) or set GDP_ROUTER_BIN",
        path.display()
    );
    path
}

/// Starts a router on a free loopback port; returns it, its address and
/// its name (from the line it prints at start).
pub fn start_router(dir: &Path, extra: &[&str]) -> (Proc, SocketAddr, Name) {
    let log = dir.join("router.log");
    let mut child = Command::new(router_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--log", "warn"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("router log"))
        .spawn()
        .expect("the router starts");
    let stdout = child.stdout.take().expect("piped");
    let mut proc = Proc {
        child,
        what: "router",
        log: Some(log),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the router never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(_) => {
            proc.kill();
            panic!("the router printed nothing:\n{}", proc.log_tail());
        }
    };
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .to_owned()
    };
    let addr: SocketAddr = field("listen=").parse().expect("listen address");
    let name: Name = field("name=").parse().expect("router name");
    (proc, addr, name)
}

pub fn start_server(
    dir: &Path,
    key: &Path,
    router: SocketAddr,
    router_name: Name,
    run: usize,
) -> Proc {
    let log = dir.join(format!("server-{run}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_gdp-capsule-server"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--key-file")
        .arg(key)
        .arg("--router")
        .arg(router.to_string())
        .arg("--router-name")
        .arg(router_name.to_string())
        .args(["--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("server log"))
        .spawn()
        .expect("the capsule server starts");
    Proc {
        child,
        what: "capsule server",
        log: Some(log),
    }
}

/// A free loopback TCP port (free when this returns).
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts a `redis-server` without persistence on a free loopback port,
/// in `dir`; returns it and its port once it answers PING.
pub fn start_redis(dir: &Path) -> (Proc, u16) {
    let binary = std::env::var_os("GDP_REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
    let port = free_tcp_port();
    let log = dir.join("redis.log");
    let child = Command::new(&binary)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("redis log"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {binary:?} ({e}): run scripts/test.sh, which installs it, \
                 or set GDP_REDIS_SERVER"
            )
        });
    let proc = Proc {
        child,
        what: "redis-server",
        log: Some(log),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pong = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.write_all(b"PING\r\n")?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf)?;
            Ok(buf == *b"+PONG\r\n")
        });
        if matches!(pong, Ok(true)) {
            return (proc, port);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server never answered:\n{}",
            proc.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
