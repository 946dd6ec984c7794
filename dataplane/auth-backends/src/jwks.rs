//! The public keys of a JWKS URL for the `jwt` authenticator: fetched at
//! start and every `jwks_refresh_s` by a task of their own (never on a
//! connection's), held for reading without waiting, and kept when a fetch
//! fails (the last good set stays in use, and the failure is logged).
//!
//! Only public keys are taken (RSA, EC P-256/P-384, Ed25519): a symmetric
//! (`oct`) key from a URL would let whoever serves it mint tokens with the
//! same bytes, so it is skipped. A key's algorithms are its family's, or
//! the one its `alg` names. A set larger than [`MAX_JWKS`] bytes is
//! refused.

use std::sync::{Arc, Weak};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::RwLock;

/// The most of a key set's body that is read.
pub const MAX_JWKS: usize = 1 << 20;

/// One usable key.
pub struct Key {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

/// The keys of one URL, as last fetched.
pub struct Jwks {
    url: reqwest::Url,
    client: reqwest::Client,
    keys: RwLock<Option<Arc<Vec<Key>>>>,
}

impl Jwks {
    /// Starts fetching `url` now and every `refresh` (the task ends with the
    /// last `Arc`); without a runtime (a unit test), nothing is fetched.
    pub fn start(url: reqwest::Url, refresh: Duration, timeout: Duration) -> Result<Arc<Jwks>, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| error.to_string())?;
        let jwks = Arc::new(Jwks { url, client, keys: RwLock::new(None) });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(refresh_loop(Arc::downgrade(&jwks), refresh));
        }
        Ok(jwks)
    }

    /// The keys now (`None` before the first good fetch).
    pub fn keys(&self) -> Option<Arc<Vec<Key>>> {
        self.keys.read().clone()
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let mut response = self.client.get(self.url.clone()).send().await.map_err(|error| {
            if error.is_timeout() {
                "timed out".to_owned()
            } else {
                "cannot fetch".to_owned()
            }
        })?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| "read failed".to_owned())? {
            if body.len() + chunk.len() > MAX_JWKS {
                return Err(format!("over {MAX_JWKS} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|error| format!("not a JWK set: {error}"))?;
        Ok(set.keys.iter().filter_map(usable).collect())
    }
}

async fn refresh_loop(jwks: Weak<Jwks>, every: Duration) {
    loop {
        let Some(held) = jwks.upgrade() else { return };
        match held.fetch().await {
            Ok(keys) => {
                tracing::debug!(url = %redacted(&held.url), keys = keys.len(), "JWKS fetched");
                *held.keys.write() = Some(Arc::new(keys));
            }
            Err(failure) => {
                tracing::warn!(url = %redacted(&held.url), %failure, "JWKS fetch failed; the last keys stay in use")
            }
        }
        drop(held);
        tokio::time::sleep(every).await;
    }
}

/// The URL without user, password or query, for logs.
fn redacted(url: &reqwest::Url) -> String {
    format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.path())
}

/// A public key of the set, with its algorithms; `None` for what is not one.
fn usable(jwk: &Jwk) -> Option<Key> {
    use Algorithm as A;
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![A::ES256],
            EllipticCurve::P384 => vec![A::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![A::EdDSA],
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let algorithms =
        match jwk.common.key_algorithm.and_then(|named| named.to_string().parse::<Algorithm>().ok()) {
            Some(named) if family.contains(&named) => vec![named],
            Some(_) => return None,
            None => family,
        };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { kid: jwk.common.key_id.clone(), key, algorithms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_keys_are_taken() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "mislabelled", "alg": "RS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}))
        .unwrap();
        let keys: Vec<Key> = set.keys.iter().filter_map(usable).collect();
        assert_eq!(keys.len(), 1, "no symmetric key, no key whose alg is not its family's");
        assert_eq!(keys[0].kid.as_deref(), Some("ec"));
        assert_eq!(keys[0].algorithms, vec![Algorithm::ES256]);
    }
}
