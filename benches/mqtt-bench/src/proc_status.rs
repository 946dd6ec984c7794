//! Facts about processes read from /proc: a broker's resident memory and
//! our own open-file limit.

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
    fn our_own_status_has_vm_rss() {
        assert!(vm_rss_kb(std::process::id()).unwrap() > 0);
    }
}
