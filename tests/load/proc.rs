//! What the server process costs, read from /proc, and the open-file limit a
//! generator of 10,000 connections needs.

use anyhow::{bail, Context, Result};

/// One reading of a process's memory and CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// Resident set size now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// The largest resident set so far, KiB (`VmHWM`).
    pub peak_rss_kib: u64,
    /// User plus system CPU time so far, seconds.
    pub cpu_s: f64,
}

/// Reads `/proc/PID/status` and `/proc/PID/stat`.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    Ok(ProcSample {
        rss_kib: status_kib(&status, "VmRSS:")?,
        peak_rss_kib: status_kib(&status, "VmHWM:")?,
        cpu_s: stat_cpu_ticks(&stat)? as f64 / ticks,
    })
}

fn status_kib(status: &str, field: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc status"))?;
    line[field.len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("unreadable {line:?}"))
}

/// `utime + stime` from a `/proc/PID/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from its last `)`.
pub fn stat_cpu_ticks(stat: &str) -> Result<u64> {
    let Some(end) = stat.rfind(')') else {
        bail!("no command name in /proc stat {stat:?}");
    };
    // After ")": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("unreadable field {} in /proc stat", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// Raises this process's soft limit on open files to its hard limit (children,
/// such as the server this generator starts, inherit it); the new soft limit.
pub fn raise_nofile_limit() -> Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current == now.maximum {
        return Ok(now.current.unwrap_or(u64::MAX));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        },
    )
    .context("raising RLIMIT_NOFILE")?;
    Ok(now.maximum.unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (fleet (sync) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 123 45 0 0 20 0 9 0 100 0 0";
        assert_eq!(stat_cpu_ticks(stat).unwrap(), 168);
    }

    #[test]
    fn a_truncated_stat_line_is_an_error_not_zero() {
        assert!(stat_cpu_ticks("4242 (fleet-sync) S 1 2").is_err());
    }
}
