//! The `jwt` authenticator in a running broker: a token signed with the
//! configured secret (v3.1.1 and v5) lets its client in; one with another
//! secret, an expired one or one for another client id is refused (0x86 /
//! return code 4); a password that is not a JWT is left to the next
//! authenticator (here the built-in users, with no anonymous access). With
//! a JWKS URL (served by the test): a token signed by a key of the set is
//! let in, one naming an unknown key is refused, and a rotated set is
//! taken in at the next refresh.

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{login, subscribe_reason, Broker, VERSIONS};
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

/// A P-256 key as a JWK with `kid`, and the key that signs for it.
fn ec_key(kid: &str) -> (serde_json::Value, EncodingKey) {
    use base64::Engine;
    let pair = rcgen::KeyPair::generate().unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                     "x": b64(&point[1..33]), "y": b64(&point[33..])});
    (jwk, EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap())
}

fn es256(kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    encode(&header, &json!({"sub": "alice", "exp": now() + 60}), key).unwrap()
}

/// Serves `body` (swappable) to every GET on `listener`, until aborted.
fn serve_jwks(
    listener: tokio::net::TcpListener,
    body: Arc<parking_lot::Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let body = body.lock().clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_a_jwks_url_and_rotate() {
    let (jwk1, key1) = ec_key("k1");
    let (jwk2, key2) = ec_key("k2");
    let body = Arc::new(parking_lot::Mutex::new(json!({"keys": [jwk1]}).to_string()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let server = serve_jwks(listener, body.clone());
    let chain = format!(
        "auth.authenticators=[{{ type = \"jwt\", jwks_url = \"{url}\", jwks_refresh_s = 1, \
         verify_claims = {{ sub = \"${{username}}\" }} }}, {{ type = \"builtin\" }}]"
    );
    let broker = Broker::start(&[&chain, "auth.allow_anonymous=deny"]);
    let port = broker.port;

    let first = es256("k1", &key1);
    common::eventually("the first key set is fetched", || async {
        login(port, ProtocolVersion::V5, "j1", "alice", &first).await.1 == ReasonCode::SUCCESS
    })
    .await;
    let (_c, reason) = login(port, ProtocolVersion::V311, "j1", "alice", &first).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let unknown = es256("k2", &key2);
    let (_c, reason) = login(port, ProtocolVersion::V5, "j2", "alice", &unknown).await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "a key the set does not have");
    let forged = es256("k1", &key2);
    let (_c, reason) = login(port, ProtocolVersion::V5, "j3", "alice", &forged).await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "signed by another key under k1's name");

    // Rotation: the set now has k2 only.
    *body.lock() = json!({"keys": [jwk2]}).to_string();
    common::eventually("the rotated set is taken in", || async {
        login(port, ProtocolVersion::V5, "j4", "alice", &unknown).await.1 == ReasonCode::SUCCESS
    })
    .await;
    let (_c, reason) = login(port, ProtocolVersion::V5, "j5", "alice", &first).await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "k1 is gone from the set");

    // The URL down: the last good set stays in use.
    server.abort();
    let _ = server.await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_c, reason) = login(port, ProtocolVersion::V5, "j6", "alice", &unknown).await;
    assert_eq!(reason, ReasonCode::SUCCESS, "the last keys stay in use");
}

/// A token's `acl` claim decides before the authorizer chain (here the
/// built-in rules, none, then acl_no_match = deny), in both of EMQX's
/// spellings; a claim that does not parse refuses the token; and a
/// connection ends when its token expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_claims_decide_and_an_expired_token_ends_its_connection() {
    let chain = "auth.authenticators=[{ type = \"jwt\", secret = \"jwt-s3cret\", \
                 verify_claims = { sub = \"${username}\" } }]";
    let broker = Broker::start(&[chain, "auth.acl_no_match=deny"]);
    let port = broker.port;
    let rules = json!([
        {"permission": "deny", "action": "all", "topic": "dev/${clientid}/secret"},
        {"permission": "allow", "action": "subscribe", "topic": "dev/${clientid}/#"},
        {"permission": "allow", "action": "publish", "topic": "up/#", "qos": [1]},
    ]);
    let new_style = token(b"jwt-s3cret", json!({"sub": "alice", "exp": now() + 600, "acl": rules}));
    let (mut alice, reason) = login(port, ProtocolVersion::V5, "d1", "alice", &new_style).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe_reason(&mut alice, "dev/d1/in").await, ReasonCode::GRANTED_QOS_0);
    assert_eq!(
        subscribe_reason(&mut alice, "dev/d1/#").await,
        ReasonCode::NOT_AUTHORIZED,
        "reaches the deny"
    );
    assert_eq!(
        subscribe_reason(&mut alice, "dev/d2/in").await,
        ReasonCode::NOT_AUTHORIZED,
        "another client's"
    );
    let reason = alice.publish_reason("up/x", b"x", 1).await;
    assert!(reason == ReasonCode::SUCCESS || reason == ReasonCode::NO_MATCHING_SUBSCRIBERS, "{reason:?}");
    assert_eq!(
        alice.publish_reason("dev/d1/in", b"x", 2).await,
        ReasonCode::NOT_AUTHORIZED,
        "subscribe only"
    );

    let old_style = token(
        b"jwt-s3cret",
        json!({"sub": "bob", "exp": now() + 600, "acl": {"pub": ["up/bob"], "sub": ["down/bob"]}}),
    );
    let (mut bob, reason) = login(port, ProtocolVersion::V5, "b1", "bob", &old_style).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe_reason(&mut bob, "down/bob").await, ReasonCode::GRANTED_QOS_0);
    assert_eq!(subscribe_reason(&mut bob, "up/bob").await, ReasonCode::NOT_AUTHORIZED);

    for bad in
        [json!("everything"), json!([{"permission": "allow", "action": "pub"}]), json!({"write": ["t"]})]
    {
        let refused = token(b"jwt-s3cret", json!({"sub": "eve", "exp": now() + 600, "acl": bad}));
        let (_c, reason) = login(port, ProtocolVersion::V5, "e1", "eve", &refused).await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{bad}");
    }

    // A token that expires in two seconds: the connection is told 0x87
    // then, and closed.
    let short = token(b"jwt-s3cret", json!({"sub": "carol", "exp": now() + 2}));
    let (mut carol, reason) = login(port, ProtocolVersion::V5, "c1", "carol", &short).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let started = std::time::Instant::now();
    carol.expect_disconnect(ReasonCode::NOT_AUTHORIZED).await;
    assert!(started.elapsed() <= std::time::Duration::from_secs(4), "{:?}", started.elapsed());
    // The others, whose tokens hold, stay.
    assert_eq!(subscribe_reason(&mut alice, "dev/d1/more").await, ReasonCode::GRANTED_QOS_0);
}
