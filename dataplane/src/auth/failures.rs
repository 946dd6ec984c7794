//! Failed logins per client address, and the ban that follows too many
//! (`auth.failed_login_limit` within `auth.failed_login_window_s` bans the
//! address for `auth.failed_login_ban_s`; a limit of 0 turns it off).
//!
//! A failure is a CONNECT the authenticator chain refused for its
//! credentials (0x86, 0x87), not one refused because a backend was down or
//! busy. A banned address is refused with 0x8A (3.1.1: return code 5)
//! before any authenticator runs, so guessing costs the node nothing.
//!
//! Bounded: at most `MAX_TRACKED` addresses are followed; when the table is
//! full, entries whose window and ban are over go first, and if none has, a
//! new address is not followed (many addresses, each guessing a little, are
//! the password checks' per-address caps' job). The ban is this node's own:
//! it is not written to the control plane, so a flood of failures never
//! becomes a flood of Raft writes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The most addresses followed at once.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    banned_until: Option<Instant>,
}

/// The failures of each address, and its ban.
#[derive(Debug)]
pub struct LoginFailures {
    limit: u32,
    window: Duration,
    ban: Duration,
    capacity: usize,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl LoginFailures {
    pub fn new(limit: u32, window: Duration, ban: Duration) -> LoginFailures {
        LoginFailures::with_capacity(limit, window, ban, MAX_TRACKED)
    }

    fn with_capacity(limit: u32, window: Duration, ban: Duration, capacity: usize) -> LoginFailures {
        LoginFailures { limit, window, ban, capacity, entries: Mutex::new(HashMap::new()) }
    }

    /// True while `address` is banned.
    pub fn banned(&self, address: IpAddr) -> bool {
        if self.limit == 0 {
            return false;
        }
        let entries = self.entries.lock();
        entries.get(&address).and_then(|entry| entry.banned_until).is_some_and(|until| Instant::now() < until)
    }

    /// Counts a failure; answers true if it banned the address.
    pub fn failed(&self, address: IpAddr) -> bool {
        if self.limit == 0 {
            return false;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&address) {
            let window = self.window;
            entries.retain(|_, entry| !over(entry, now, window));
            if entries.len() >= self.capacity {
                return false;
            }
        }
        let entry =
            entries.entry(address).or_insert(Entry { window_start: now, failures: 0, banned_until: None });
        if now.duration_since(entry.window_start) >= self.window {
            *entry = Entry { window_start: now, failures: 0, banned_until: entry.banned_until };
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= self.limit && entry.banned_until.is_none_or(|until| until <= now) {
            entry.banned_until = Some(now + self.ban);
            entry.failures = 0;
            entry.window_start = now;
            return true;
        }
        false
    }
}

/// The entry's window and ban are both over: it can go.
fn over(entry: &Entry, now: Instant, window: Duration) -> bool {
    now.duration_since(entry.window_start) >= window && entry.banned_until.is_none_or(|until| until <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn the_limit_bans_the_address_and_only_it() {
        let failures = LoginFailures::new(3, Duration::from_secs(60), Duration::from_secs(60));
        assert!(!failures.failed(ip(1)));
        assert!(!failures.failed(ip(1)));
        assert!(!failures.banned(ip(1)));
        assert!(failures.failed(ip(1)), "the third failure bans");
        assert!(failures.banned(ip(1)));
        assert!(!failures.banned(ip(2)));
        let off = LoginFailures::new(0, Duration::from_secs(60), Duration::from_secs(60));
        for _ in 0..10 {
            assert!(!off.failed(ip(1)));
        }
        assert!(!off.banned(ip(1)), "0 turns it off");
    }

    #[test]
    fn bans_and_windows_end() {
        let failures = LoginFailures::new(2, Duration::ZERO, Duration::ZERO);
        failures.failed(ip(1));
        assert!(!failures.failed(ip(1)), "a window of zero never holds two failures");
        let failures = LoginFailures::new(1, Duration::from_secs(60), Duration::ZERO);
        assert!(failures.failed(ip(1)));
        assert!(!failures.banned(ip(1)), "a ban of zero is over at once");
    }

    #[test]
    fn the_table_is_bounded() {
        let failures = LoginFailures::with_capacity(2, Duration::from_secs(60), Duration::from_secs(60), 2);
        failures.failed(ip(1));
        failures.failed(ip(2));
        // Full, nothing over: a third address is not followed...
        assert!(!failures.failed(ip(3)));
        assert!(!failures.failed(ip(3)));
        assert!(!failures.banned(ip(3)));
        // ...while the followed ones still are.
        assert!(failures.failed(ip(1)));
        assert_eq!(failures.entries.lock().len(), 2);
    }
}
