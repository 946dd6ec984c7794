//! Facts about processes read from /proc: a broker's resident memory and
//! CPU time, and our own open-file limit.

use std::sync::OnceLock;

use anyhow::{bail, Context};

/// VmRSS of process `pid`, in kB.
pub fn vm_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS line in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// CPU time process `pid` has used so far, user plus system, over all its
/// threads (those still running and those that ended), in seconds: fields
/// 14 and 15 (`utime`, `stime`) of /proc/PID/stat, in clock ticks.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("no utime/stime in {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_second() as f64)
}

/// utime + stime from a /proc/PID/stat line. The command name (field 2)
/// is in parentheses and may hold spaces and parentheses itself, so the
/// fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; utime is field 14.
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` once (this crate has no libc
/// binding and no unsafe code); Linux reports 100 everywhere it runs here.
fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

/// Our soft limit on open files, if /proc says.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Fails when `sockets` more sockets would not fit under the open-file limit.
pub fn check_open_files(sockets: usize) -> anyhow::Result<()> {
    // Stdio, the runtime's epoll and eventfd, and some slack.
    const RESERVED: u64 = 32;
    if let Some(limit) = open_files_limit() {
        if sockets as u64 + RESERVED > limit {
            bail!(
                "{sockets} connections need more open files than this process may have ({limit}); \
                 lower --clients or raise `ulimit -n`"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_status() {
        let status = "Name:\tmqttd\nVmPeak:\t  9000 kB\nVmRSS:\t   4321 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(4321));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        // Fields 14 and 15 are 700 and 55; the name holds ") (" to trip a naive split.
        let stat = "4242 (my ) (proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 700 55 0 0 20 0 3 0 9 1 2";
        assert_eq!(parse_cpu_ticks(stat), Some(755));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2"), None);
    }

    #[test]
    fn our_own_cpu_time_grows_while_we_spin() {
        let before = cpu_seconds(std::process::id()).unwrap();
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        let mut after = before;
        // Spin until the clock moves a few ticks (or give up after 10 s of a
        // machine too busy to schedule us).
        while after - before < 0.03 && started.elapsed() < std::time::Duration::from_secs(10) {
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
            after = cpu_seconds(std::process::id()).unwrap();
        }
        assert!(after - before >= 0.03, "{before} -> {after}");
    }

    #[test]
    fn our_own_status_has_vm_rss() {
        assert!(vm_rss_kb(std::process::id()).unwrap() > 0);
    }
}
