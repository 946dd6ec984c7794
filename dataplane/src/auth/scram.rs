//! SCRAM-SHA-256 (RFC 5802, RFC 7677) for MQTT 5 enhanced authentication
//! (Authentication Method `SCRAM-SHA-256`) against the built-in users: the
//! server side of the exchange, checked against the verifier the control
//! plane derived from the password when it was set (PostgreSQL's format,
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`).
//!
//! ```text
//! client-first  n,,n=<user>,r=<client nonce>             (CONNECT / AUTH 0x19)
//! server-first  r=<client nonce + server nonce>,s=<salt>,i=<iterations>   (AUTH 0x18)
//! client-final  c=biws,r=<nonce>,p=<proof>               (AUTH 0x18)
//! server-final  v=<server signature>                     (CONNACK / AUTH 0x00)
//! ```
//!
//! Invariants:
//! - **Nothing is learnt about who exists**: a user that does not exist, or
//!   has no verifier (imported by hash), gets a salt made from its name and
//!   a key of this node, and the exchange fails at the proof like a wrong
//!   password.
//! - The proof is compared in constant time; channel binding is not
//!   offered (`p=` is refused), and the `c=` attribute must repeat the
//!   client-first header exactly.
//! - Every message is bounded ([`MAX_MESSAGE`]) and parsed strictly; a
//!   malformed one fails the exchange.

use std::sync::Arc;

use base64::Engine;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;

/// The Authentication Method name.
pub const METHOD: &str = "SCRAM-SHA-256";
/// Longest SCRAM message accepted.
pub const MAX_MESSAGE: usize = 4096;
/// Iterations a made-up salt claims (those of a new verifier).
const DEFAULT_ITERATIONS: u32 = 4096;

/// A key of this process, for made-up salts where the cluster has no
/// shared secret (a standalone node).
pub fn node_secret() -> &'static [u8; 32] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SECRET.get_or_init(rand::random)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("the proof does not match")]
    Proof,
}

/// What the control plane stored for a user.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl Verifier {
    /// Reads PostgreSQL's format; `None` if it is not that.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok().filter(|n| *n >= 1)?;
        let salt = b64().decode(salt).ok().filter(|salt| !salt.is_empty())?;
        let stored_key = b64().decode(stored).ok()?.try_into().ok()?;
        let server_key = b64().decode(server).ok()?.try_into().ok()?;
        Some(Verifier { iterations, salt, stored_key, server_key })
    }

    /// The verifier of `password` (for tests and tools; the control plane
    /// makes the stored ones).
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let salted = salted_password(password, salt, iterations);
        let (stored_key, server_key) = keys(&salted);
        Verifier { iterations, salt: salt.to_vec(), stored_key, server_key }
    }

    /// PostgreSQL's format.
    pub fn encode(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            b64().encode(&self.salt),
            b64().encode(self.stored_key),
            b64().encode(self.server_key)
        )
    }
}

/// PBKDF2-HMAC-SHA-256 of the password (`Hi` in RFC 5802).
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    let iterations = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, password.as_bytes(), &mut out);
    out
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// StoredKey and ServerKey of a salted password.
fn keys(salted: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    (sha256(&mac(salted, b"Client Key")), mac(salted, b"Server Key"))
}

/// The client's first message, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The username, `=2C`/`=3D` decoded.
    pub username: String,
    nonce: String,
    /// `n,,` (or `y,,`): repeated in the client-final `c=`.
    header: String,
    /// The message without its header (part of the AuthMessage).
    bare: String,
}

/// Reads a client-first message.
pub fn client_first(data: &[u8]) -> Result<ClientFirst, ScramError> {
    if data.len() > MAX_MESSAGE {
        return Err(ScramError::Malformed("too long"));
    }
    let text = std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let (flag, rest) = text.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
    match flag {
        "n" | "y" => {}
        flag if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad GS2 flag")),
    }
    let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
    if !authzid.is_empty() {
        return Err(ScramError::Malformed("an authorization identity is not supported"));
    }
    let mut parts = bare.split(',');
    let username =
        parts.next().and_then(|part| part.strip_prefix("n=")).ok_or(ScramError::Malformed("no username"))?;
    let nonce =
        parts.next().and_then(|part| part.strip_prefix("r=")).ok_or(ScramError::Malformed("no nonce"))?;
    if nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        return Err(ScramError::Malformed("bad nonce"));
    }
    if parts.any(|part| part.starts_with("m=")) {
        return Err(ScramError::Malformed("mandatory extension"));
    }
    Ok(ClientFirst {
        username: decode_name(username)?,
        nonce: nonce.to_owned(),
        header: format!("{flag},,"),
        bare: bare.to_owned(),
    })
}

/// `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_name(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3).ok_or(ScramError::Malformed("bad username escape"))?;
        match code {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return Err(ScramError::Malformed("bad username escape")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty username"));
    }
    Ok(out)
}

/// A server's half-done exchange: after the server-first message.
#[derive(Debug)]
pub struct Exchange {
    verifier: Arc<Verifier>,
    /// False for a made-up verifier: the exchange must fail.
    real: bool,
    nonce: String,
    header: String,
    /// `client-first-bare,server-first,`: the AuthMessage's start.
    transcript: String,
}

impl Exchange {
    /// Starts the exchange for `first` against the user's verifier (`None`:
    /// no such user, or none stored; `secret` keys the made-up salt).
    /// Returns the server-first message.
    pub fn start(first: ClientFirst, verifier: Option<Arc<Verifier>>, secret: &[u8]) -> (Exchange, Vec<u8>) {
        let real = verifier.is_some();
        let verifier = verifier.unwrap_or_else(|| {
            let salt = mac(secret, first.username.as_bytes())[..16].to_vec();
            Arc::new(Verifier {
                iterations: DEFAULT_ITERATIONS,
                salt,
                stored_key: [0; 32],
                server_key: [0; 32],
            })
        });
        let server_nonce: [u8; 18] = rand::random();
        let nonce = format!("{}{}", first.nonce, b64().encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={}", b64().encode(&verifier.salt), verifier.iterations);
        let transcript = format!("{},{server_first},", first.bare);
        (Exchange { verifier, real, nonce, header: first.header, transcript }, server_first.into_bytes())
    }

    /// Checks the client-final message; returns the server-final message.
    pub fn finish(self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        if data.len() > MAX_MESSAGE {
            return Err(ScramError::Malformed("too long"));
        }
        let text = std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut parts = without_proof.split(',');
        let binding = parts
            .next()
            .and_then(|part| part.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding attribute"))?;
        if b64().decode(binding).ok().as_deref() != Some(self.header.as_bytes()) {
            return Err(ScramError::Malformed("channel binding attribute differs from the header"));
        }
        let nonce =
            parts.next().and_then(|part| part.strip_prefix("r=")).ok_or(ScramError::Malformed("no nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce differs"));
        }
        let proof: [u8; 32] = b64()
            .decode(proof)
            .ok()
            .and_then(|proof| proof.try_into().ok())
            .ok_or(ScramError::Malformed("bad proof"))?;
        let auth_message = format!("{}{without_proof}", self.transcript);
        let signature = mac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (out, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature.iter())) {
            *out = p ^ s;
        }
        let matches = bool::from(sha256(&client_key).ct_eq(&self.verifier.stored_key));
        if !matches || !self.real {
            return Err(ScramError::Proof);
        }
        let server_signature = mac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", b64().encode(server_signature)).into_bytes())
    }
}

/// The client side, for the unit tests: the messages a client sends for
/// `username` and `password`.
#[cfg(test)]
mod client {
    use super::*;

    /// The client-first message with `nonce`.
    pub fn first(username: &str, nonce: &str) -> String {
        format!("n,,n={},r={nonce}", username.replace('=', "=3D").replace(',', "=2C"))
    }

    /// The client-final message answering `server_first`, and the server
    /// signature the server-final must carry.
    pub fn finish(
        username: &str,
        password: &str,
        nonce: &str,
        server_first: &str,
    ) -> Option<(String, String)> {
        let mut attributes = server_first.split(',');
        let combined = attributes.next()?.strip_prefix("r=")?;
        let salt = b64().decode(attributes.next()?.strip_prefix("s=")?).ok()?;
        let iterations: u32 = attributes.next()?.strip_prefix("i=")?.parse().ok()?;
        if !combined.starts_with(nonce) {
            return None;
        }
        let salted = salted_password(password, &salt, iterations);
        let client_key = mac(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c=biws,r={combined}");
        let first_bare = first(username, nonce)[3..].to_owned();
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let signature = mac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature.iter()).map(|(k, s)| k ^ s).collect();
        let server_signature = mac(&mac(&salted, b"Server Key"), auth_message.as_bytes());
        Some((
            format!("{without_proof},p={}", b64().encode(proof)),
            format!("v={}", b64().encode(server_signature)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user, pencil, its salt, nonces and messages.
    #[test]
    fn rfc_7677_example() {
        let salt = b64().decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = Arc::new(Verifier::from_password("pencil", &salt, 4096));
        let first = client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.username, "user");
        // The server's nonce is random; the example's is put in its place.
        let (mut exchange, _) = Exchange::start(first, Some(verifier.clone()), b"k");
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        exchange.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        exchange.transcript = format!("n=user,r=rOprNGfwEbeRWgbNEkqO,{server_first},");
        let final_message =
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let server_final = exchange.finish(final_message).unwrap();
        assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(Verifier::parse(&verifier.encode()), Some((*verifier).clone()));
    }

    #[test]
    fn a_wrong_password_or_an_unknown_user_fails_alike() {
        let verifier = Arc::new(Verifier::from_password("right", b"salt-salt", 4096));
        for (password, known) in [("wrong", true), ("right", false)] {
            let first = client_first(client::first("ann", "abc").as_bytes()).unwrap();
            let (exchange, server_first) =
                Exchange::start(first, known.then(|| verifier.clone()), b"node key");
            let server_first = String::from_utf8(server_first).unwrap();
            let (final_message, _) = client::finish("ann", password, "abc", &server_first).unwrap();
            assert_eq!(exchange.finish(final_message.as_bytes()), Err(ScramError::Proof));
        }
        let first = client_first(client::first("ann", "abc").as_bytes()).unwrap();
        let (exchange, server_first) = Exchange::start(first, Some(verifier), b"node key");
        let server_first = String::from_utf8(server_first).unwrap();
        let (final_message, expected) = client::finish("ann", "right", "abc", &server_first).unwrap();
        assert_eq!(exchange.finish(final_message.as_bytes()).unwrap(), expected.into_bytes());
    }

    #[test]
    fn malformed_messages_fail() {
        for bad in [
            &b"p=tls-server-end-point,,n=a,r=x"[..],
            b"n,a=admin,n=a,r=x",
            b"n,,r=x",
            b"n,,n=a",
            b"n,,n=,r=x",
            b"n,,n=a=41,r=x",
            b"n,,n=a,r=x,m=ext",
            b"x,,n=a,r=x",
        ] {
            assert!(client_first(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(client_first(b"n,,n=a=2Cb=3Dc,r=x").unwrap().username, "a,b=c");
        let verifier = Arc::new(Verifier::from_password("pw", b"salt", 4096));
        let start = || Exchange::start(client_first(b"n,,n=a,r=x").unwrap(), Some(verifier.clone()), b"k").0;
        for bad in [&b"c=biws,r=x,p=AAAA"[..], b"c=eSws,r=x", b"r=x,p=AAAA", b"c=biws"] {
            assert!(start().finish(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(Verifier::parse("SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB"), None);
    }
}
