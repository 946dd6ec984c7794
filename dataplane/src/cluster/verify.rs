//! Password checks on a small pool of threads of their own, with bounded
//! queues, so a CONNECT flood cannot take the machine.
//!
//! An argon2id check costs about 19 MiB and tens of milliseconds of CPU.
//! Run on tokio's blocking pool, a flood of CONNECTs for one username queued
//! hundreds of them and starved everything else on that pool (the control
//! plane's storage among them). Here:
//!
//! - checks run on `threads` dedicated threads, never on tokio's pools;
//! - at most `queue` checks wait; past that a CONNECT is refused at once
//!   (0x89, server busy) instead of queueing;
//! - at most `per_username` checks for one username, and `per_address` for
//!   one client address, are waiting or running: a flood for one account,
//!   or from one address with made-up usernames, is refused fast and leaves
//!   room for others;
//! - an unknown username costs the same check, against a dummy hash, so
//!   answer times do not tell which usernames exist;
//! - a hash whose cost parameters are outside sane bounds is never run;
//! - a password that matched the same stored hash recently is let in
//!   without a check ([`RecentChecks`]: keyed hashes, never passwords).

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::recent_checks::RecentChecks;

/// Largest argon2 memory cost accepted, in KiB (64 MiB).
pub const MAX_MEMORY_KIB: u32 = 64 * 1024;
/// Most argon2 passes accepted.
pub const MAX_PASSES: u32 = 8;
/// Most argon2 lanes accepted.
pub const MAX_LANES: u32 = 8;

/// Why a check was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("too many password checks waiting")]
    Busy,
    #[error("the password check did not finish")]
    Failed,
}

struct Job {
    /// `None`: an unknown user, checked against the dummy hash.
    phc: Option<Arc<str>>,
    password: Vec<u8>,
    reply: oneshot::Sender<bool>,
    /// Count the check against its username and address until the job is
    /// done (or dropped unrun), not until its caller stops waiting.
    _pending: (Pending, Pending),
}

type PendingCounts = Arc<Mutex<HashMap<Box<str>, u32>>>;

/// The pool; threads start on first use.
pub struct Verifier {
    threads: usize,
    queue: usize,
    per_username: u32,
    per_address: u32,
    sender: OnceLock<SyncSender<Job>>,
    pending: PendingCounts,
    recent: RecentChecks,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("threads", &self.threads).field("queue", &self.queue).finish()
    }
}

/// Counts a username's pending check until dropped.
struct Pending {
    counts: PendingCounts,
    username: Box<str>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut pending = self.counts.lock();
        if let Some(count) = pending.get_mut(&self.username) {
            *count -= 1;
            if *count == 0 {
                pending.remove(&self.username);
            }
        }
    }
}

impl Verifier {
    /// A pool of `threads` (0: half the cores, at least one), `queue`
    /// waiting checks, `per_username` checks per username and
    /// `per_address` per client address, remembering successes in `recent`.
    pub fn new(
        threads: usize,
        queue: usize,
        per_username: u32,
        per_address: u32,
        recent: RecentChecks,
    ) -> Verifier {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        } else {
            threads
        };
        Verifier {
            threads,
            queue: queue.max(1),
            per_username: per_username.max(1),
            per_address: per_address.max(1),
            sender: OnceLock::new(),
            pending: Arc::new(Mutex::new(HashMap::new())),
            recent,
        }
    }

    fn sender(&self) -> &SyncSender<Job> {
        self.sender.get_or_init(|| {
            let (sender, receiver) = sync_channel::<Job>(self.queue);
            let receiver = Arc::new(Mutex::new(receiver));
            for n in 0..self.threads {
                let receiver = receiver.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("mqttd-auth-{n}"))
                    .spawn(move || work(&receiver));
                if let Err(error) = spawned {
                    tracing::error!(%error, "cannot start a password-check thread");
                }
            }
            sender
        })
    }

    /// Checks `password` against `phc` (or, for an unknown user, against a
    /// dummy hash, which never matches).
    pub async fn verify(
        &self,
        username: &str,
        address: std::net::IpAddr,
        phc: Option<&str>,
        password: &[u8],
    ) -> Result<bool, VerifyError> {
        if let Some(phc) = phc {
            if self.recent.matches(username, phc, password) {
                return Ok(true);
            }
        }
        let pending = {
            let mut pending = self.pending.lock();
            let (user_key, address_key) = (format!("u:{username}"), format!("a:{address}"));
            let full = |key: &str, cap: u32| pending.get(key).is_some_and(|count| *count >= cap);
            if full(&user_key, self.per_username) || full(&address_key, self.per_address) {
                return Err(VerifyError::Busy);
            }
            *pending.entry(user_key.as_str().into()).or_insert(0) += 1;
            *pending.entry(address_key.as_str().into()).or_insert(0) += 1;
            (
                Pending { counts: self.pending.clone(), username: user_key.into() },
                Pending { counts: self.pending.clone(), username: address_key.into() },
            )
        };
        let (reply, answer) = oneshot::channel();
        let job = Job { phc: phc.map(Arc::from), password: password.to_vec(), reply, _pending: pending };
        match self.sender().try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(VerifyError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(VerifyError::Failed),
        }
        let matched = answer.await.map_err(|_| VerifyError::Failed)?;
        if let (true, Some(phc)) = (matched, phc) {
            self.recent.remember(username, phc, password);
        }
        Ok(matched)
    }
}

fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        // One idle thread waits in `recv` holding the lock; the others wait
        // for the lock. Either way a job goes to exactly one thread.
        let Ok(job) = receiver.lock().recv() else { return };
        if job.reply.is_closed() {
            // Its caller gave up (timed out): do not spend the work.
            continue;
        }
        let Job { phc, password, reply, _pending: pending } = job;
        let matched = match &phc {
            Some(phc) => check(phc, &password),
            None => {
                let _ = check(dummy_hash(), &password);
                false
            }
        };
        // Free the username's and address's slots before answering, so a
        // caller that checks again at once finds them free.
        drop(pending);
        let _ = reply.send(matched);
    }
}

/// A hash with the default cost, for unknown users.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"mqttd-dummy-salt").expect("a 16-byte salt encodes");
        argon2::Argon2::default()
            .hash_password(b"not a password anyone has", &salt)
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

/// True when the PHC string's cost parameters are within bounds.
pub fn sane_cost(hash: &argon2::password_hash::PasswordHash<'_>) -> bool {
    match argon2::Params::try_from(hash) {
        Ok(params) => {
            params.m_cost() <= MAX_MEMORY_KIB && params.t_cost() <= MAX_PASSES && params.p_cost() <= MAX_LANES
        }
        Err(_) => false,
    }
}

/// Checks a password against an argon2id PHC string; false for a malformed
/// hash or one with absurd cost parameters.
fn check(phc: &str, password: &[u8]) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(phc) {
        Ok(hash) if sane_cost(&hash) => argon2::Argon2::default().verify_password(password, &hash).is_ok(),
        Ok(_) => {
            tracing::warn!("a password hash with cost parameters out of bounds: refused");
            false
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn a_flood_of_made_up_usernames_from_one_address_is_refused_fast() {
        let verifier = Arc::new(Verifier::new(1, 64, 4, 3, RecentChecks::new(0, Duration::ZERO)));
        let checks: Vec<_> = (0..20)
            .map(|n| {
                let verifier = verifier.clone();
                tokio::spawn(async move { verifier.verify(&format!("nobody-{n}"), LOCAL, None, b"x").await })
            })
            .collect();
        let mut busy = 0;
        for check in checks {
            if check.await.unwrap() == Err(VerifyError::Busy) {
                busy += 1;
            }
        }
        assert!(busy >= 17, "only {busy} of 20 refused; 3 may run per address");
        let elsewhere: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            verifier.verify("nobody", elsewhere, None, b"x").await,
            Ok(false),
            "another address is served"
        );
    }

    #[tokio::test]
    async fn checks_and_bounds() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let hash = argon2::Argon2::default().hash_password(b"pw", &salt).unwrap().to_string();
        let verifier = Verifier::new(1, 4, 2, 100, RecentChecks::new(0, Duration::ZERO));
        assert_eq!(verifier.verify("u", LOCAL, Some(&hash), b"pw").await, Ok(true));
        assert_eq!(verifier.verify("u", LOCAL, Some(&hash), b"no").await, Ok(false));
        assert_eq!(verifier.verify("ghost", LOCAL, None, b"pw").await, Ok(false));
        let absurd = "$argon2id$v=19$m=4194304,t=100,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let started = std::time::Instant::now();
        assert_eq!(verifier.verify("u", LOCAL, Some(absurd), b"pw").await, Ok(false));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "an absurd hash was run");
    }

    #[tokio::test]
    async fn a_flood_for_one_username_is_refused_fast() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let hash = argon2::Argon2::default().hash_password(b"pw", &salt).unwrap().to_string();
        let verifier = Arc::new(Verifier::new(1, 64, 2, 100, RecentChecks::new(0, Duration::ZERO)));
        let checks: Vec<_> = (0..20)
            .map(|_| {
                let (verifier, hash) = (verifier.clone(), hash.clone());
                tokio::spawn(async move { verifier.verify("victim", LOCAL, Some(&hash), b"wrong").await })
            })
            .collect();
        let mut busy = 0;
        for check in checks {
            if check.await.unwrap() == Err(VerifyError::Busy) {
                busy += 1;
            }
        }
        assert!(busy >= 18, "only {busy} of 20 refused; 2 may run per username");
        // Another username still gets its check.
        assert_eq!(verifier.verify("other", LOCAL, Some(&hash), b"pw").await, Ok(true));
    }

    /// A reconnect storm: once a password has matched, the same password
    /// against the same hash is let in without a check (no thread, no
    /// per-username slot), while a wrong one is still checked and capped.
    #[tokio::test]
    async fn a_password_that_matched_recently_skips_the_check() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let hash = argon2::Argon2::default().hash_password(b"pw", &salt).unwrap().to_string();
        let verifier = Arc::new(Verifier::new(1, 64, 1, 100, RecentChecks::new(10, Duration::from_secs(60))));
        assert_eq!(verifier.verify("u", LOCAL, Some(&hash), b"pw").await, Ok(true));
        // Twenty at once: with one check allowed per username, only cached
        // answers can all succeed.
        let checks: Vec<_> = (0..20)
            .map(|_| {
                let (verifier, hash) = (verifier.clone(), hash.clone());
                tokio::spawn(async move { verifier.verify("u", LOCAL, Some(&hash), b"pw").await })
            })
            .collect();
        for check in checks {
            assert_eq!(check.await.unwrap(), Ok(true));
        }
        assert_eq!(verifier.verify("u", LOCAL, Some(&hash), b"wrong").await, Ok(false));
        let other = argon2::Argon2::default().hash_password(b"new", &salt).unwrap().to_string();
        assert_eq!(verifier.verify("u", LOCAL, Some(&other), b"pw").await, Ok(false), "the password changed");
    }
}
