//! `type = "jwt"`: the client proves who it is with a JSON Web Token in its
//! password (or username), as with EMQX's JWT authenticator.
//!
//! ```toml
//! [[auth.authenticators]]
//! type = "jwt"
//! from = "password"               # or "username": where the token is
//! secret = "..."                  # HS256, HS384, HS512
//! secret_base64_encoded = false
//! # or, instead of secret: public_key = """-----BEGIN PUBLIC KEY----- ..."""
//! #   (RSA: RS256/384/512, PS256/384/512; EC: ES256, ES384; Ed25519: EdDSA)
//! # or: jwks_url = "https://idp.example/.well-known/jwks.json"
//! #     jwks_refresh_s = 300      # fetched at start and this often (jwks.rs)
//! #     timeout_ms = 5000         # for each fetch
//! verify_claims = { sub = "${username}", clientid = "${clientid}" }
//! ```
//!
//! Outcomes: no token, or something that is not a JWT (not three base64url
//! parts with a JSON header): ignore, the next authenticator decides; a
//! token whose signature, algorithm, `exp`, `nbf` or claims do not hold:
//! deny (bad username or password); a valid one: allow. With a JWKS URL
//! whose keys have not been fetched yet: 0x88 (server unavailable). A token
//! names its key with `kid` (or is tried against every key of the set).
//!
//! Invariants:
//! - **The key decides the algorithms**: a secret accepts only HMAC, a
//!   public key only its own family, so a token signed with the public key
//!   as an HMAC secret (algorithm confusion) or `alg: none` is refused.
//! - `exp` and `nbf`, when present, are checked against the clock with no
//!   leeway; a token without `exp` does not expire.
//! - `verify_claims` values are templates (`${username}`, `${clientid}`,
//!   `${peerhost}`, `${cert_common_name}`): the claim must be a string (or
//!   number) equal to the expanded value. A claim that is missing fails.
//! - Checking is local CPU work of microseconds, bounded by the token's
//!   size (an MQTT password is at most 65,535 bytes), so it runs in place.
//!
//! - An `acl` claim carries ACL rules, checked before the authorizer chain
//!   (none matching: the chain decides), in EMQX's two spellings: a list of
//!   `{"permission", "action", "topic", "qos", "retain"}` objects, or
//!   `{"pub": [topics], "sub": [topics], "all": [topics]}` (allow rules). A
//!   claim that does not parse refuses the token (0x86): rules that cannot
//!   be read are never dropped silently.
//! - A token with `exp` ends its client's connection when it expires (the
//!   client is told 0x87 not authorized).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dataplane::cluster::access::{default_refusal, Grant};
use dataplane::hooks::{Authenticator, ConnectRequest, HookFuture, Verdict};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mqtt_codec::ReasonCode;
use serde::Deserialize;

use dataplane::auth::client_rules::{RuleSet, RuleSpec, MAX_RULES};

use crate::acl_source::rule_from_json;
use crate::http::SettingsError;
use crate::jwks::Jwks;
use crate::template::{check_template, default_timeout_ms, expand, request_values};

/// A token's claims.
type Claims = serde_json::Map<String, serde_json::Value>;

/// Placeholders a claim's expected value may hold.
const CLAIM_PLACEHOLDERS: [&str; 4] = ["${username}", "${clientid}", "${peerhost}", "${cert_common_name}"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum From {
    Password,
    Username,
}

/// The settings of one `type = "jwt"` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "password")]
    from: From,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_base64_encoded: bool,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    jwks_url: Option<String>,
    #[serde(default = "default_refresh_s")]
    jwks_refresh_s: u64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    verify_claims: BTreeMap<String, String>,
}

fn default_refresh_s() -> u64 {
    300
}

fn password() -> From {
    From::Password
}

/// Why a token does not hold.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("signature or algorithm: {0}")]
    Signature(String),
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    Premature,
    #[error("claim {0:?} does not match")]
    Claim(String),
    #[error("the JWKS keys have not been fetched")]
    NoKeys,
    #[error("acl claim: {0}")]
    Acl(String),
}

/// What a token that holds grants.
#[derive(Debug, PartialEq, Eq)]
struct Granted {
    rules: Option<RuleSet>,
    expires_at: Option<std::time::Instant>,
}

/// The rules of an `acl` claim, in either of EMQX's spellings.
fn acl_rules(claim: &serde_json::Value) -> Result<RuleSet, String> {
    let specs: Vec<RuleSpec> = match claim {
        serde_json::Value::Array(rules) => {
            if rules.len() > MAX_RULES {
                return Err(format!("more than {MAX_RULES} rules"));
            }
            rules.iter().map(|rule| rule_from_json(rule, None)).collect::<Result<_, _>>()?
        }
        serde_json::Value::Object(lists) => {
            let mut specs = Vec::new();
            for (action, topics) in lists {
                let action = match action.as_str() {
                    "pub" | "publish" => "publish",
                    "sub" | "subscribe" => "subscribe",
                    "all" => "all",
                    other => return Err(format!("{other:?} is not pub, sub or all")),
                };
                let topics = topics.as_array().ok_or_else(|| format!("{action}: not a list of topics"))?;
                for topic in topics {
                    let topic = topic.as_str().ok_or_else(|| format!("{action}: a topic is not text"))?;
                    if specs.len() == MAX_RULES {
                        return Err(format!("more than {MAX_RULES} rules"));
                    }
                    specs.push(RuleSpec {
                        permission: "allow".into(),
                        action: action.into(),
                        topic: topic.into(),
                        ..Default::default()
                    });
                }
            }
            specs
        }
        _ => return Err("not a list of rules or an object of topic lists".into()),
    };
    RuleSet::compile(&specs).map_err(|error| error.to_string())
}

/// Where the keys come from.
enum Keys {
    /// A secret or a public key from the config (the validation's
    /// algorithms are its).
    Fixed(DecodingKey),
    /// A JWKS URL's, each key with its own algorithms.
    Jwks(Arc<Jwks>),
}

/// The `jwt` authenticator.
pub struct JwtAuthenticator {
    from: From,
    keys: Keys,
    validation: Validation,
    claims: Vec<(String, String)>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("from", &self.from)
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// Reads one `[[auth.authenticators]]` entry (its `type` taken out).
    pub fn from_table(table: &toml::Table) -> Result<JwtAuthenticator, SettingsError> {
        let settings: Settings = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|error: toml::de::Error| SettingsError::Parse(error.to_string().trim().to_owned()))?;
        let invalid = |key, reason: String| SettingsError::Invalid { key, reason };
        let (keys, algorithms) = match (&settings.secret, &settings.public_key, &settings.jwks_url) {
            (Some(secret), None, None) => {
                let key = if settings.secret_base64_encoded {
                    DecodingKey::from_base64_secret(secret)
                        .map_err(|error| invalid("secret", error.to_string()))?
                } else {
                    DecodingKey::from_secret(secret.as_bytes())
                };
                if secret.is_empty() {
                    return Err(invalid("secret", "is empty".into()));
                }
                (Keys::Fixed(key), vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512])
            }
            (None, Some(pem), None) => {
                let (key, algorithms) = public_key(pem.as_bytes()).ok_or_else(|| {
                    invalid("public_key", "not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".into())
                })?;
                (Keys::Fixed(key), algorithms)
            }
            (None, None, Some(url)) => {
                let url = reqwest::Url::parse(url).map_err(|error| invalid("jwks_url", error.to_string()))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(invalid(
                        "jwks_url",
                        format!("scheme {:?} is not http or https", url.scheme()),
                    ));
                }
                if settings.jwks_refresh_s == 0 || settings.timeout_ms == 0 {
                    return Err(invalid("jwks_refresh_s, timeout_ms", "must be at least 1".into()));
                }
                let refresh = Duration::from_secs(settings.jwks_refresh_s);
                let jwks = Jwks::start(url, refresh, Duration::from_millis(settings.timeout_ms))
                    .map_err(|reason| invalid("jwks_url", reason))?;
                // Each key brings its own; these only seed the validation.
                (Keys::Jwks(jwks), vec![Algorithm::RS256])
            }
            _ => return Err(invalid("secret, public_key, jwks_url", "set exactly one of them".into())),
        };
        for (name, template) in &settings.verify_claims {
            check_template(template, &CLAIM_PLACEHOLDERS)
                .map_err(|reason| invalid("verify_claims", format!("{name}: {reason}")))?;
        }
        // exp and nbf are checked here, each only when present.
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Ok(JwtAuthenticator {
            from: settings.from,
            keys,
            validation,
            claims: settings.verify_claims.into_iter().collect(),
        })
    }

    /// What a token that holds grants (its `acl` rules, its expiry), or why
    /// it does not hold.
    fn check(&self, token: &str, values: &[String; 5]) -> Result<Granted, Refusal> {
        let claims = self.verified_claims(token)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
        if let Some(exp) = claims.get("exp") {
            if exp.as_u64().is_none_or(|exp| exp <= now) {
                return Err(Refusal::Expired);
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            if nbf.as_u64().is_none_or(|nbf| nbf > now) {
                return Err(Refusal::Premature);
            }
        }
        for (name, template) in &self.claims {
            let want = expand(template, values);
            let matches = match claims.get(name) {
                Some(serde_json::Value::String(have)) => *have == want,
                Some(serde_json::Value::Number(have)) => have.to_string() == want,
                _ => false,
            };
            if !matches {
                return Err(Refusal::Claim(name.clone()));
            }
        }
        let rules = claims.get("acl").map(acl_rules).transpose().map_err(Refusal::Acl)?;
        let expires_at = claims.get("exp").and_then(serde_json::Value::as_u64).map(|exp| {
            std::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now).min(10 * 365 * 86_400))
        });
        Ok(Granted { rules, expires_at })
    }

    /// The claims of a token whose signature holds.
    fn verified_claims(&self, token: &str) -> Result<Claims, Refusal> {
        let signature =
            |error: jsonwebtoken::errors::Error| Refusal::Signature(format!("{:?}", error.kind()));
        match &self.keys {
            Keys::Fixed(key) => {
                Ok(jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(signature)?.claims)
            }
            Keys::Jwks(jwks) => {
                let keys = jwks.keys().ok_or(Refusal::NoKeys)?;
                let header = jsonwebtoken::decode_header(token).map_err(signature)?;
                let mut refusal = Refusal::Signature("no key of the set for this token".into());
                for key in keys.iter().filter(|key| header.kid.is_none() || key.kid == header.kid) {
                    if !key.algorithms.contains(&header.alg) {
                        continue;
                    }
                    let mut validation = self.validation.clone();
                    validation.algorithms = vec![header.alg];
                    match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                        Ok(data) => return Ok(data.claims),
                        Err(error) => refusal = signature(error),
                    }
                }
                Err(refusal)
            }
        }
    }

    fn verdict(&self, request: &ConnectRequest<'_>) -> Verdict<Grant> {
        let token = match self.from {
            From::Password => request.password.and_then(|password| std::str::from_utf8(password).ok()),
            From::Username => request.username,
        };
        let Some(token) = token.filter(|token| looks_like_jwt(token)) else { return Verdict::Ignore };
        match self.check(token, &request_values(request)) {
            Ok(granted) => Verdict::Allow(Grant {
                superuser: false,
                credential: None,
                external: true,
                username: None,
                rules: granted.rules,
                expires_at: granted.expires_at,
                client_id: None,
            }),
            Err(Refusal::NoKeys) => {
                tracing::warn!("JWT not checked: the JWKS keys have not been fetched");
                Verdict::Deny(ReasonCode::SERVER_UNAVAILABLE)
            }
            Err(refusal) => {
                tracing::debug!(%refusal, "JWT refused");
                Verdict::Deny(default_refusal(request.username))
            }
        }
    }
}

/// The decoding key a PEM public key makes, with the algorithms of its family.
fn public_key(pem: &[u8]) -> Option<(DecodingKey, Vec<Algorithm>)> {
    use Algorithm as A;
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Some((key, vec![A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512]));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Some((key, vec![A::ES256, A::ES384]));
    }
    DecodingKey::from_ed_pem(pem).ok().map(|key| (key, vec![A::EdDSA]))
}

/// Three base64url parts, the first a JSON object: a JWT, maybe a bad one.
/// Anything else is someone else's password.
fn looks_like_jwt(token: &str) -> bool {
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[0])
        .ok()
        .and_then(|header| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&header).ok())
        .is_some()
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Verdict<Grant>> {
        let verdict = self.verdict(&request);
        Box::pin(std::future::ready(verdict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn hook(text: &str) -> JwtAuthenticator {
        JwtAuthenticator::from_table(&toml::from_str(text).expect("toml")).expect("valid")
    }

    fn request<'a>(username: &'a str, password: &'a [u8]) -> ConnectRequest<'a> {
        ConnectRequest {
            client_id: "dev-1",
            username: Some(username),
            password: Some(password),
            address: std::net::IpAddr::from([127, 0, 0, 1]),
            certificate: None,
        }
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn hs(alg: Algorithm, secret: &[u8], claims: serde_json::Value) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn allowed(verdict: Verdict<Grant>) -> bool {
        matches!(verdict, Verdict::Allow(_))
    }

    fn denied(verdict: Verdict<Grant>) -> bool {
        matches!(verdict, Verdict::Deny(_))
    }

    #[test]
    fn hmac_tokens_with_claims_exp_and_nbf() {
        let jwt =
            hook("secret = \"s3cret\"\nverify_claims = { sub = \"${username}\", cid = \"${clientid}\" }");
        let good = json!({"sub": "alice", "cid": "dev-1", "exp": now() + 60});
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = hs(alg, b"s3cret", good.clone());
            assert!(allowed(jwt.verdict(&request("alice", token.as_bytes()))), "{alg:?}");
        }
        let token = hs(Algorithm::HS256, b"s3cret", good.clone());
        assert!(denied(jwt.verdict(&request("bob", token.as_bytes()))), "sub is another user's");
        let wrong = hs(Algorithm::HS256, b"other", good.clone());
        assert!(denied(jwt.verdict(&request("alice", wrong.as_bytes()))), "another secret");
        let expired =
            hs(Algorithm::HS256, b"s3cret", json!({"sub": "alice", "cid": "dev-1", "exp": now() - 1}));
        assert_eq!(jwt.check(&expired, &request_values(&request("alice", b""))), Err(Refusal::Expired));
        let early =
            hs(Algorithm::HS256, b"s3cret", json!({"sub": "alice", "cid": "dev-1", "nbf": now() + 60}));
        assert_eq!(jwt.check(&early, &request_values(&request("alice", b""))), Err(Refusal::Premature));
        let no_exp = hs(Algorithm::HS256, b"s3cret", json!({"sub": "alice", "cid": "dev-1"}));
        assert!(allowed(jwt.verdict(&request("alice", no_exp.as_bytes()))), "no exp: does not expire");
        let missing = hs(Algorithm::HS256, b"s3cret", json!({"sub": "alice"}));
        assert_eq!(
            jwt.check(&missing, &request_values(&request("alice", b""))),
            Err(Refusal::Claim("cid".into()))
        );
        // Tampered payload, same signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = hs(Algorithm::HS256, b"x", json!({"sub": "alice", "cid": "dev-1", "admin": true}))
            .split('.')
            .nth(1)
            .unwrap()
            .to_owned();
        assert!(denied(jwt.verdict(&request("alice", parts.join(".").as_bytes()))));
    }

    #[test]
    fn what_is_not_a_jwt_is_left_to_the_next() {
        let jwt = hook("secret = \"s3cret\"");
        for password in [&b"plain password"[..], b"a.b.c", b"", &[0xff, 0xfe][..]] {
            assert!(matches!(jwt.verdict(&request("alice", password)), Verdict::Ignore), "{password:?}");
        }
        let none = ConnectRequest { password: None, ..request("alice", b"") };
        assert!(matches!(jwt.verdict(&none), Verdict::Ignore));
    }

    #[test]
    fn the_key_decides_the_algorithms() {
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let public = key_pair.public_key_pem();
        let jwt = hook(&format!("public_key = '''{public}'''"));
        let signing = EncodingKey::from_ec_pem(key_pair.serialize_pem().as_bytes()).unwrap();
        let claims = json!({"sub": "alice", "exp": now() + 60});
        let token = encode(&Header::new(Algorithm::ES256), &claims, &signing).unwrap();
        assert!(allowed(jwt.verdict(&request("alice", token.as_bytes()))));
        // The public key's text used as an HMAC secret: refused.
        let confused = hs(Algorithm::HS256, public.as_bytes(), claims.clone());
        assert!(denied(jwt.verdict(&request("alice", confused.as_bytes()))));
        // alg: none.
        use base64::Engine;
        let b64 = |value: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
        };
        let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims));
        assert!(denied(jwt.verdict(&request("alice", unsigned.as_bytes()))));
        // A secret refuses a token signed with a key.
        let hmac = hook("secret = \"s3cret\"");
        assert!(denied(hmac.verdict(&request("alice", token.as_bytes()))));
        // The token may come in the username.
        let from_username = hook(&format!("from = \"username\"\npublic_key = '''{public}'''"));
        let by_name = ConnectRequest { username: Some(&token), password: None, ..request("", b"") };
        assert!(allowed(from_username.verdict(&by_name)));
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        for (text, expect) in [
            ("", "exactly one"),
            ("jwks_url = \"ftp://x/\"", "jwks_url"),
            ("jwks_url = \"http://x/\"\nsecret = \"a\"", "exactly one"),
            ("secret = \"a\"\npublic_key = \"b\"", "exactly one"),
            ("secret = \"\"", "empty"),
            ("public_key = \"not pem\"", "public_key"),
            ("secret = \"!!\"\nsecret_base64_encoded = true", "secret"),
            ("secret = \"a\"\nverify_claims = { sub = \"${password}\" }", "${password}"),
            ("secret = \"a\"\nfrom = \"clientid\"", "clientid"),
        ] {
            let error =
                JwtAuthenticator::from_table(&toml::from_str(text).unwrap()).err().map(|e| e.to_string());
            assert!(error.as_deref().is_some_and(|error| error.contains(expect)), "{text:?}: {error:?}");
        }
    }
}
