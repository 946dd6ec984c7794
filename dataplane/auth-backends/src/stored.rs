//! What the user-store authenticators (Redis, PostgreSQL) share once their
//! store has answered: the user's row judged against the password (costly
//! hashes on the blocking pool), and the outcome turned into the chain's
//! verdict, with `on_error` for a store that failed.

use std::sync::Arc;

use dataplane::cluster::access::{default_refusal, Grant};
use dataplane::hooks::Verdict;
use mqtt_codec::ReasonCode;

use crate::password::HashAlgorithm;
use crate::template::OnError;

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
        Ok(Outcome::Allow { superuser }) => {
            Verdict::Allow(Grant { superuser, credential: None, external: true, username: None })
        }
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
