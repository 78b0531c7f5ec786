//! Readings from `/proc`: a process's CPU time and resident memory.

use std::fs;

/// Clock ticks per second for `/proc/PID/stat` times (`sysconf(_SC_CLK_TCK)`,
/// which is 100 on every Linux architecture wsbench targets).
const CLK_TCK: f64 = 100.0;

/// CPU time (user + system) in seconds of process `pid` (`"self"` for wsbench),
/// including its waited-for children when `with_children` is set.
pub fn cpu_seconds(pid: &str, with_children: bool) -> Option<f64> {
    cpu_times(pid, with_children).map(|(user, system)| user + system)
}

/// User and system CPU time in seconds of process `pid`, as [`cpu_seconds`].
pub fn cpu_times(pid: &str, with_children: bool) -> Option<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
    let get = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (mut user, mut system) = (get(14)?, get(15)?);
    if with_children {
        user += get(16)?;
        system += get(17)?;
    }
    Some((user as f64 / CLK_TCK, system as f64 / CLK_TCK))
}

/// Resident set size of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A snapshot of the server's and wsbench's CPU time, taken at a window edge.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSnapshot {
    /// Server CPU seconds, when a server PID was given and readable.
    pub server: Option<f64>,
    /// The user-space part of `server`.
    pub server_user: Option<f64>,
    /// wsbench's own CPU seconds (with finished children).
    pub client: Option<f64>,
}

impl CpuSnapshot {
    /// Reads both sides now.
    pub fn take(server_pid: Option<u32>) -> Self {
        let server = server_pid.and_then(|p| cpu_times(&p.to_string(), false));
        CpuSnapshot {
            server: server.map(|(user, system)| user + system),
            server_user: server.map(|(user, _)| user),
            client: cpu_seconds("self", true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_self() {
        assert!(cpu_seconds("self", true).is_some());
        assert!(rss_bytes("self").unwrap() > 0);
        assert!(cpu_seconds("999999999", false).is_none());
        let (user, system) = cpu_times("self", false).unwrap();
        assert!(user >= 0.0 && system >= 0.0);
    }
}
