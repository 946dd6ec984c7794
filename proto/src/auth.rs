//! The cluster token: every RPC carries `authorization: Bearer TOKEN` when a
//! token is configured.
//!
//! [`BearerToken`] is the client side (an interceptor that adds the header),
//! [`check_bearer`] / [`presented_token`] the server side, and
//! [`read_token_file`] reads a secret from a file (every `*_file` key and
//! `mqttctl --token-file`). Both planes and `mqttctl` use these, so the
//! header's spelling and the file format live in one place.

use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key that carries the token.
pub const AUTHORIZATION: &str = "authorization";

/// A client interceptor that adds `authorization: Bearer TOKEN` to every
/// request, or nothing when built without a token.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use proto::admin::admin_client::AdminClient;
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect().await?;
/// let token = proto::auth::BearerToken::new(Some("secret"))?;
/// let mut admin = AdminClient::with_interceptor(channel, token);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct BearerToken {
    header: Option<MetadataValue<Ascii>>,
}

impl BearerToken {
    /// Builds the interceptor; fails if the token is not a valid header value
    /// (visible ASCII only).
    pub fn new(token: Option<&str>) -> Result<Self, tonic::metadata::errors::InvalidMetadataValue> {
        let header = token.map(|token| format!("Bearer {token}").parse()).transpose()?;
        Ok(Self { header })
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert(AUTHORIZATION, header.clone());
        }
        Ok(request)
    }
}

/// Why a token file could not be used.
#[derive(Debug)]
pub enum TokenFileError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The file holds no token, or one that is not visible ASCII.
    Invalid(&'static str),
}

impl std::fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenFileError::Read(error) => write!(f, "cannot read it: {error}"),
            TokenFileError::Invalid(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for TokenFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenFileError::Read(error) => Some(error),
            TokenFileError::Invalid(_) => None,
        }
    }
}

/// Reads a token from a file: its whole content, less one trailing newline
/// (`\n` or `\r\n`). The token must be non-empty visible ASCII.
pub fn read_token_file(path: &std::path::Path) -> Result<String, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(TokenFileError::Read)?;
    let token = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if token.is_empty() {
        return Err(TokenFileError::Invalid("the file is empty"));
    }
    if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(TokenFileError::Invalid("the token must be visible ASCII without spaces or line breaks"));
    }
    Ok(token.to_owned())
}

/// The token that `metadata` carries as `authorization: Bearer TOKEN`.
pub fn presented_token(metadata: &MetadataMap) -> Result<&str, Status> {
    metadata
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer TOKEN` metadata"))
}

/// Compares two secrets in a time that does not depend on where they differ.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

/// Checks that `metadata` carries `authorization: Bearer {expected}`.
///
/// The comparison takes the same time wherever the first difference is, so
/// the token cannot be guessed byte by byte from response times.
pub fn check_bearer(expected: &str, metadata: &MetadataMap) -> Result<(), Status> {
    let presented = presented_token(metadata)?;
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated("wrong cluster token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let mut interceptor = BearerToken::new(Some("s3cret")).expect("valid token");
        let request = interceptor.call(Request::new(())).expect("interceptor never fails");
        assert!(check_bearer("s3cret", request.metadata()).is_ok());
        let status = check_bearer("other", request.metadata()).expect_err("wrong token");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn missing_token_is_unauthenticated() {
        let mut interceptor = BearerToken::new(None).expect("no token");
        let request = interceptor.call(Request::new(())).expect("interceptor never fails");
        let status = check_bearer("s3cret", request.metadata()).expect_err("no header");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn token_files_lose_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("proto-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("token");
        for (content, expected) in [("abc\n", Some("abc")), ("abc\r\n", Some("abc")), ("abc", Some("abc"))] {
            std::fs::write(&file, content).expect("write");
            assert_eq!(read_token_file(&file).ok().as_deref(), expected, "{content:?}");
        }
        for bad in ["", "\n", "a b\n", "abc\n\n"] {
            std::fs::write(&file, bad).expect("write");
            assert!(read_token_file(&file).is_err(), "{bad:?}");
        }
        assert!(matches!(read_token_file(&dir.join("missing")), Err(TokenFileError::Read(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn token_with_newline_is_refused() {
        assert!(BearerToken::new(Some("bad\ntoken")).is_err());
    }
}
