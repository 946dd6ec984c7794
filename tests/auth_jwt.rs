//! The `jwt` authenticator in a running broker: a token signed with the
//! configured secret (v3.1.1 and v5) lets its client in; one with another
//! secret, an expired one or one for another client id is refused (0x86 /
//! return code 4); a password that is not a JWT is left to the next
//! authenticator (here the built-in users, with no anonymous access).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{login, Broker, VERSIONS};
use jsonwebtoken::{encode, EncodingKey, Header};
use mqtt_codec::{ProtocolVersion, ReasonCode};
use serde_json::json;

fn token(secret: &[u8], claims: serde_json::Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn a_signed_token_lets_its_client_in_and_nothing_else_does() {
    let chain = "auth.authenticators=[{ type = \"jwt\", secret = \"jwt-s3cret\", \
                 verify_claims = { sub = \"${username}\", clientid = \"${clientid}\" } }, { type = \"builtin\" }]";
    let broker = Broker::start(&[chain, "auth.allow_anonymous=deny"]);
    let port = broker.port;
    let claims = |client: &str, exp: u64| json!({"sub": "alice", "clientid": client, "exp": exp});
    for version in VERSIONS {
        let good = token(b"jwt-s3cret", claims("dev-1", now() + 60));
        let (_c, reason) = login(port, version, "dev-1", "alice", &good).await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{version:?}");
        let (_c, reason) = login(port, version, "dev-2", "alice", &good).await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "another client id: {version:?}");
        let (_c, reason) = login(port, version, "dev-1", "bob", &good).await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "another user: {version:?}");
        let forged = token(b"guessed", claims("dev-1", now() + 60));
        let (_c, reason) = login(port, version, "dev-1", "alice", &forged).await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "another secret: {version:?}");
        let expired = token(b"jwt-s3cret", claims("dev-1", now() - 5));
        let (_c, reason) = login(port, version, "dev-1", "alice", &expired).await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "expired: {version:?}");
    }
    // Not a JWT: the built-in users decide (no such user, no anonymous).
    let (_c, reason) = login(port, ProtocolVersion::V5, "p", "alice", "a plain password").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
}
