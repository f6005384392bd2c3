//! A process's memory and CPU time, from Linux's `/proc`.

use std::io;

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`, 100 on every
/// Linux architecture this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says of one process now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcStats {
    /// Resident memory (`VmRSS`), in bytes.
    pub rss: u64,
    /// Peak resident memory (`VmHWM`), in bytes.
    pub peak_rss: u64,
    /// CPU time used, user and system (`utime + stime`), in seconds.
    pub cpu_seconds: f64,
}

impl ProcStats {
    /// Reads them for process `pid`.
    ///
    /// # Errors
    ///
    /// When the process is gone or `/proc` does not say.
    pub fn read(pid: u32) -> io::Result<ProcStats> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        Ok(ProcStats {
            rss: status_kib(&status, "VmRSS:")? * 1024,
            peak_rss: status_kib(&status, "VmHWM:")? * 1024,
            cpu_seconds: cpu_ticks(&stat)? as f64 / TICKS_PER_SECOND,
        })
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// The value in KiB of the `/proc/PID/status` line starting with `key`.
fn status_kib(status: &str, key: &str) -> io::Result<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad(key))
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted after its last `)`.
fn cpu_ticks(stat: &str) -> io::Result<u64> {
    let rest = stat.rsplit_once(')').ok_or_else(|| bad("stat"))?.1;
    // `rest` starts at field 3 (the state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("stat field"))
    };
    Ok(field(14)? + field(15)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(cpu_ticks(stat).expect("parses"), 300);
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let s = ProcStats::read(std::process::id()).expect("reads /proc");
        assert!(s.rss > 0 && s.peak_rss >= s.rss, "{s:?}");
        assert!(s.cpu_seconds >= 0.0);
    }
}
