//! Child processes that cannot outlive their test.
//!
//! A [`ChildGuard`] kills its process (SIGKILL) and reaps it when dropped,
//! so a failing test leaves nothing running; if the test is failing and the
//! process wrote a log file, the end of that log is printed first.
//! [`spawn_with_start_line`] starts a program that announces itself on its
//! first line of standard output (`gdp-router name=... listen=...`) and
//! returns that line.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a bounded wait checks whether the process has exited.
const EXIT_POLL: Duration = Duration::from_millis(10);
/// Lines of log printed when a test fails with the process running.
const LOG_LINES_ON_PANIC: usize = 60;

/// A child process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    label: String,
    child: Option<Child>,
    log: Option<PathBuf>,
}

impl ChildGuard {
    /// Guards `child`; `label` names it in messages.
    pub fn new(label: impl Into<String>, child: Child) -> ChildGuard {
        ChildGuard {
            label: label.into(),
            child: Some(child),
            log: None,
        }
    }

    /// Names the file the process logs to: its end is printed when a test
    /// panics while the guard is alive, and by [`log_tail`](Self::log_tail).
    pub fn with_log(mut self, path: impl Into<PathBuf>) -> ChildGuard {
        self.log = Some(path.into());
        self
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process id, unless the process was killed or reaped.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills the process with SIGKILL and reaps it. Does nothing if it is
    /// already gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean that the process has exited already.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit.
    /// Returns its exit status, or `None` if it was still running (it is
    /// then killed with SIGKILL) or was gone already.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let pid = self.id()?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !sent.is_ok_and(|s| s.success()) {
            // It has exited already (or kill(1) is missing): report what
            // there is to report.
            return self.wait_timeout(Duration::ZERO);
        }
        let status = self.wait_timeout(within);
        if status.is_none() {
            self.kill();
        }
        status
    }

    /// Waits up to `within` for the process to exit by itself. Returns its
    /// exit status, or `None` if it is still running (it is left running)
    /// or was gone already.
    pub fn wait_timeout(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut()?;
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(EXIT_POLL),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The last `lines` lines of the log named by
    /// [`with_log`](Self::with_log) (empty without one).
    pub fn log_tail(&self, lines: usize) -> String {
        self.log
            .as_deref()
            .map(|path| tail(path, lines))
            .unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking()
            && let Some(log) = &self.log
        {
            eprintln!("---- last lines of the log of {} ----", self.label);
            eprintln!("{}", tail(log, LOG_LINES_ON_PANIC));
        }
    }
}

/// The last `lines` lines of the file at `path` (empty if unreadable).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Spawns `cmd` with its standard output piped and waits up to `within`
/// for its first line, which it returns with the guarded process. The rest
/// of the output is read and discarded, so the process never blocks on a
/// full pipe. `log`, if given, is the file the caller sends the process's
/// standard error to: its end is quoted when no line comes.
///
/// Fails when the process cannot be spawned, or prints no line in time (it
/// is then killed): the error says which, with its exit status if it exited.
pub fn spawn_with_start_line(
    cmd: &mut Command,
    label: &str,
    log: Option<&Path>,
    within: Duration,
) -> io::Result<(ChildGuard, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {label}: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("the standard output was set to be piped"))?;
    let mut guard = ChildGuard::new(label, child);
    if let Some(log) = log {
        guard = guard.with_log(log);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep the pipe drained until the process exits.
        for _ in lines {}
    });
    match rx.recv_timeout(within) {
        Ok(line) => Ok((guard, line)),
        Err(_) => {
            let status = guard.wait_timeout(Duration::ZERO);
            guard.kill();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{label} printed no line within {within:?} (exit status: {}); \
                     the end of its log:\n{}",
                    status.map_or("still running".to_owned(), |s| s.to_string()),
                    guard.log_tail(30)
                ),
            ))
        }
    }
}

/// The value of the field `key=value` in a line of space-separated fields,
/// such as a program's start line.
pub fn start_line_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|field| {
        field
            .split_once('=')
            .and_then(|(k, v)| (k == key).then_some(v))
    })
}

/// User and system CPU seconds process `pid` has used so far (fields 14
/// and 15 of `/proc/PID/stat`, counted after the command name's last `)`,
/// in ticks of 1/100 s), or `None` where `/proc` does not say.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((ticks(14)? + ticks(15)?) as f64 / 100.0)
}

/// Resident memory of process `pid` in bytes (`VmRSS` of
/// `/proc/PID/status`), or `None` where `/proc` does not say.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory() {
        assert!(resident_bytes(std::process::id()).is_some_and(|b| b > 0));
    }

    #[test]
    fn the_first_line_is_returned_and_the_process_killed_on_drop() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo 'demo name=abc listen=127.0.0.1:9'; exec sleep 60",
        ]);
        let (mut guard, line) =
            spawn_with_start_line(&mut cmd, "sh", None, Duration::from_secs(10)).expect("starts");
        assert_eq!(start_line_field(&line, "name"), Some("abc"));
        assert_eq!(start_line_field(&line, "listen"), Some("127.0.0.1:9"));
        assert_eq!(start_line_field(&line, "port"), None);
        assert!(guard.is_running());
        assert_eq!(guard.wait_timeout(Duration::from_millis(20)), None);
        guard.kill();
        assert!(!guard.is_running());
        assert_eq!(guard.id(), None);
    }

    #[test]
    fn silence_is_an_error_naming_the_exit() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let err = spawn_with_start_line(&mut cmd, "silent", None, Duration::from_millis(500))
            .expect_err("prints nothing");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("silent printed no line"), "{err}");
    }

    #[test]
    fn terminate_reports_the_exit_status() {
        let mut cmd = Command::new("sh");
        // The start line comes once the trap is installed.
        cmd.args([
            "-c",
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.01; done",
        ]);
        let (mut guard, line) =
            spawn_with_start_line(&mut cmd, "trap", None, Duration::from_secs(10)).expect("starts");
        assert_eq!(line, "ready");
        let status = guard
            .terminate(Duration::from_secs(10))
            .expect("exits on SIGTERM");
        assert_eq!(status.code(), Some(7));
        assert_eq!(
            guard.terminate(Duration::from_secs(1)),
            None,
            "gone already"
        );
    }
}
