//! The `process_*` metrics every flashgate service shows on `/metrics` (CPU, memory, file
//! descriptors, threads, start time), read from Linux's `/proc/self`, under the names the
//! official Prometheus clients use, so stock dashboards and alerts work unchanged.
//!
//! Shared here because every binary depends on this crate; each `/metrics` appends
//! [`render`] to its own counters. On a system without `/proc` nothing is rendered.

use std::fmt::Write as _;

/// Clock ticks per second of the times in `/proc/self/stat` (`USER_HZ`). Linux reports them
/// in units of 100 Hz on every architecture it exports to user space, whatever the kernel's
/// own tick rate; reading `sysconf(_SC_CLK_TCK)` would need `unsafe` for the same answer.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors (sockets included).
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Threads of the process.
    pub threads: u64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where there is no `/proc` or it could not be parsed.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let system = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Self::parse(&stat, &status, &limits, &system, open_fds)
    }

    /// Builds a reading from the texts of `/proc/self/stat`, `/proc/self/status`,
    /// `/proc/self/limits`, `/proc/stat` and the count of `/proc/self/fd`.
    pub fn parse(
        stat: &str,
        status: &str,
        limits: &str,
        system: &str,
        open_fds: u64,
    ) -> Option<Self> {
        // The command name (field 2) may hold spaces and parentheses: fields are counted from
        // after its last `)`, where field 3 (the state) is index 0.
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let ticks = field(14)? + field(15)?;
        let boot_time: Option<u64> = system
            .lines()
            .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok());
        let start_time_seconds = match boot_time {
            Some(boot) => boot as f64 + field(22)? as f64 / TICKS_PER_SECOND,
            None => 0.0,
        };
        Some(Self {
            cpu_seconds: ticks as f64 / TICKS_PER_SECOND,
            resident_bytes: status_kib(status, "VmRSS:").unwrap_or(0) * 1024,
            virtual_bytes: field(23)?,
            open_fds,
            max_fds: limits.lines().find_map(|line| {
                line.strip_prefix("Max open files")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            }),
            start_time_seconds,
            threads: field(20)?,
        })
    }

    /// The Prometheus text exposition of this reading.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds,
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes as f64,
        );
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_bytes as f64,
        );
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            self.open_fds as f64,
        );
        if let Some(max) = self.max_fds {
            metric(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                max as f64,
            );
        }
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        );
        metric(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            self.threads as f64,
        );
        out
    }
}

/// The `process_*` metrics of this process now, or nothing where `/proc` cannot be read.
pub fn render() -> String {
    ProcessStats::read()
        .map(|stats| stats.render())
        .unwrap_or_default()
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix(key)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line of /proc/self/stat, its command name given spaces and a parenthesis.
    const STAT: &str = "4242 (flash gate) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                        250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0";
    const STATUS: &str =
        "Name:\tflashgate\nVmSize:\t  964504 kB\nVmRSS:\t   23456 kB\nThreads:\t9\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\n\
                          Max open files            1024                 1048576              files\n";
    const SYSTEM: &str = "cpu  1 2 3 4\nbtime 1700000000\nprocesses 99\n";

    #[test]
    fn proc_texts_become_cpu_seconds_memory_fds_threads_and_start_time() {
        let stats = ProcessStats::parse(STAT, STATUS, LIMITS, SYSTEM, 17).expect("parses");

        assert_eq!(stats.cpu_seconds, 3.25);
        assert_eq!(stats.resident_bytes, 23_456 * 1024);
        assert_eq!(stats.virtual_bytes, 987_654_321);
        assert_eq!(stats.open_fds, 17);
        assert_eq!(stats.max_fds, Some(1024));
        assert_eq!(stats.threads, 9);
        assert_eq!(stats.start_time_seconds, 1_700_000_000.0 + 1_234.56);
    }

    #[test]
    fn a_stat_line_that_is_cut_short_reads_as_nothing() {
        assert_eq!(
            ProcessStats::parse("4242 (fg) S 1 2", STATUS, LIMITS, SYSTEM, 1),
            None
        );
        assert_eq!(ProcessStats::parse("", STATUS, LIMITS, SYSTEM, 1), None);
    }

    #[test]
    fn this_process_renders_every_process_metric_with_live_values() {
        let stats = ProcessStats::read().expect("tests run on Linux");
        assert!(stats.resident_bytes > 0);
        assert!(stats.threads >= 1);
        assert!(stats.open_fds >= 3);
        assert!(stats.start_time_seconds > 1_600_000_000.0);

        let text = render();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} in:\n{text}"
            );
            assert!(text.contains(&format!("\n{name} ")), "{name} has a sample");
        }
    }
}
