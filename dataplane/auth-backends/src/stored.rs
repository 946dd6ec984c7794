//! What the user-store authenticators (Redis, PostgreSQL, MySQL, LDAP) share: the
//! lookup run on a task of its own, admitted only while fewer than `pool_size
//! + queue` wait and abandoned (aborted) at the timeout; the user's row
//! judged against the password (costly hashes on the blocking pool); the
//! answer cache; and the outcome turned into the chain's verdict, with
//! `on_error` for a store that failed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dataplane::cluster::access::{default_refusal, Grant};
use dataplane::hooks::Verdict;
use mqtt_codec::ReasonCode;

use tokio::sync::Semaphore;

use crate::cache::AnswerCache;
use crate::http::SettingsError;
use crate::password::{from_emqx_spelling, HashAlgorithm};
use crate::template::{take_limits, Chain, Limits, OnError};

/// A backend's settings from its chain entry: the ones every backend of
/// `chain` has, and its own (EMQX's spelling of the hash setting read too).
pub(crate) fn parse_settings<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    chain: Chain,
) -> Result<(T, Limits), SettingsError> {
    let mut table = table.clone();
    from_emqx_spelling(&mut table);
    let limits = take_limits(&mut table, chain)?;
    let own = toml::Value::Table(table)
        .try_into()
        .map_err(|error: toml::de::Error| SettingsError::Parse(error.to_string().trim().to_owned()))?;
    Ok((own, limits))
}

/// `host:port` (or `host`, `[v6]:port`) as host and port.
pub(crate) fn host_port(server: &str, default_port: u16) -> Result<(String, u16), SettingsError> {
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => {
            let port = port.parse().map_err(|_| SettingsError::Invalid {
                key: "server",
                reason: format!("bad port in {server:?}"),
            })?;
            Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
        }
        _ => Ok((server.trim_start_matches('[').trim_end_matches(']').to_owned(), default_port)),
    }
}

/// The parts of a user-store authenticator that do not depend on the store.
pub(crate) struct Store {
    /// How stored passwords are hashed (none: the store judges passwords
    /// itself, as LDAP's bind does).
    algorithm: Option<Arc<HashAlgorithm>>,
    timeout: Duration,
    /// `pool_size + queue` permits: lookups running or waiting.
    admission: Arc<Semaphore>,
    on_error: OnError,
    cache: AnswerCache<Outcome>,
    /// The store, as logs name it (no credentials).
    name: String,
}

/// The settings every user store has.
pub(crate) struct StoreSettings {
    pub algorithm: Option<HashAlgorithm>,
    pub timeout_ms: u64,
    pub pool_size: usize,
    pub queue: usize,
    pub on_error: OnError,
    pub cache_entries: usize,
    pub cache_ttl_s: u64,
    pub name: String,
}

impl Store {
    pub fn new(settings: StoreSettings) -> Store {
        Store {
            algorithm: settings.algorithm.map(Arc::new),
            timeout: Duration::from_millis(settings.timeout_ms),
            admission: Arc::new(Semaphore::new(settings.pool_size.saturating_add(settings.queue))),
            on_error: settings.on_error,
            cache: AnswerCache::new(settings.cache_entries, Duration::from_secs(settings.cache_ttl_s)),
            name: settings.name,
        }
    }

    /// The verdict on `password` for the user `lookup` finds; `key` is what
    /// the lookup was made of (the cache files the outcome under it and the
    /// password).
    pub async fn decide<F>(
        &self,
        username: Option<&str>,
        key: &[&[u8]],
        password: &[u8],
        lookup: F,
    ) -> Verdict<Grant>
    where
        F: Future<Output = Result<Option<StoredUser>, String>> + Send + 'static,
    {
        let algorithm = self.algorithm.clone();
        let secret = password.to_vec();
        let check = async move {
            let algorithm = algorithm.ok_or_else(|| "no password hash configured".to_owned())?;
            let user = lookup.await?;
            judge(user, &algorithm, secret).await
        };
        self.decide_by(username, key, password, check).await
    }

    /// The verdict `check` comes to (a store that judges the password
    /// itself); cached under `key` and the password like [`Store::decide`].
    pub async fn decide_by<F>(
        &self,
        username: Option<&str>,
        key: &[&[u8]],
        password: &[u8],
        check: F,
    ) -> Verdict<Grant>
    where
        F: Future<Output = Result<Outcome, String>> + Send + 'static,
    {
        let mut cache_key = key.to_vec();
        cache_key.push(password);
        let outcome = match self.cache.get(&cache_key) {
            Some(outcome) => Ok(outcome),
            None => {
                let checked = self.check(check).await;
                if let Ok(outcome) = &checked {
                    self.cache.put(&cache_key, outcome.clone());
                }
                checked
            }
        };
        verdict(outcome, username, self.on_error, &self.name)
    }

    async fn check<F>(&self, check: F) -> Result<Outcome, String>
    where
        F: Future<Output = Result<Outcome, String>> + Send + 'static,
    {
        bounded(&self.admission, self.timeout, check).await
    }
}

/// Runs `work` on a task of its own if `admission` has a permit (else a
/// failure: the queue is full), for at most `timeout`: a backend that hangs
/// keeps no task (nor a connection slot's lock) past it.
pub(crate) async fn bounded<T, F>(admission: &Arc<Semaphore>, timeout: Duration, work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = Result<T, String>> + Send + 'static,
{
    let admitted =
        admission.clone().try_acquire_owned().map_err(|_| "the lookup queue is full".to_owned())?;
    let mut task = tokio::spawn(async move {
        let _admitted = admitted;
        work.await
    });
    match tokio::time::timeout(timeout, &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => {
            task.abort();
            Err("no answer within the timeout".to_owned())
        }
    }
}

/// What the store and the hash said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allow {
        superuser: bool,
    },
    Deny,
    /// No such user: the next authenticator decides.
    Ignore,
}

/// A user as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredUser {
    pub hash: String,
    pub salt: Vec<u8>,
    pub superuser: bool,
}

/// Whether a stored flag (`1`, `true`) is set.
pub(crate) fn flag(value: &[u8]) -> bool {
    matches!(value, b"1" | b"true" | b"TRUE" | b"True" | b"t")
}

/// The outcome for `user` (`None`: not in the store) and `password`; an
/// error says why the stored hash could not be checked.
pub(crate) async fn judge(
    user: Option<StoredUser>,
    algorithm: &Arc<HashAlgorithm>,
    password: Vec<u8>,
) -> Result<Outcome, String> {
    let Some(user) = user else { return Ok(Outcome::Ignore) };
    let costly = matches!(
        **algorithm,
        HashAlgorithm::Bcrypt {} | HashAlgorithm::Pbkdf2 { .. } | HashAlgorithm::Argon2 {}
    );
    let superuser = user.superuser;
    let check = {
        let algorithm = algorithm.clone();
        move || algorithm.verify(&password, &user.hash, &user.salt)
    };
    let matched = if costly {
        tokio::task::spawn_blocking(check).await.map_err(|error| error.to_string())?
    } else {
        check()
    };
    match matched {
        Ok(true) => Ok(Outcome::Allow { superuser }),
        Ok(false) => Ok(Outcome::Deny),
        Err(error) => Err(error.to_string()),
    }
}

/// The chain's verdict for an outcome, or for a failure (logged, with
/// `what` naming the store; never the password).
pub(crate) fn verdict(
    outcome: Result<Outcome, impl std::fmt::Display>,
    username: Option<&str>,
    on_error: OnError,
    what: &str,
) -> Verdict<Grant> {
    match outcome {
        Ok(Outcome::Allow { superuser }) => Verdict::Allow(Grant {
            superuser,
            credential: None,
            external: true,
            username: None,
            rules: None,
            expires_at: None,
            client_id: None,
        }),
        Ok(Outcome::Deny) => Verdict::Deny(default_refusal(username)),
        Ok(Outcome::Ignore) => Verdict::Ignore,
        Err(failure) => {
            tracing::warn!(store = what, %failure, ?on_error, "authenticator failed");
            match on_error {
                OnError::Deny => Verdict::Deny(ReasonCode::SERVER_UNAVAILABLE),
                OnError::Ignore => Verdict::Ignore,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_host_and_port() {
        assert_eq!(host_port("127.0.0.1:6380", 6379).unwrap(), ("127.0.0.1".to_owned(), 6380));
        assert_eq!(host_port("db.example", 5432).unwrap(), ("db.example".to_owned(), 5432));
        assert_eq!(host_port("[::1]:5433", 5432).unwrap(), ("::1".to_owned(), 5433));
        assert_eq!(host_port("[::1]", 5432).unwrap(), ("::1".to_owned(), 5432));
        assert!(host_port("db:port", 5432).is_err());
    }
}
