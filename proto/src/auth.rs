//! The cluster token: every RPC carries `authorization: Bearer TOKEN` when a
//! token is configured.
//!
//! [`BearerToken`] is the client side (an interceptor that adds the header),
//! [`check_bearer`] the server side. Both planes and `mqttctl` use these, so
//! the header's spelling lives in one place.

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

/// Checks that `metadata` carries `authorization: Bearer {expected}`.
///
/// The comparison takes the same time wherever the first difference is, so
/// the token cannot be guessed byte by byte from response times.
pub fn check_bearer(expected: &str, metadata: &MetadataMap) -> Result<(), Status> {
    let presented = metadata
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer TOKEN` metadata"))?;
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated("wrong cluster token"))
    }
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
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
    fn token_with_newline_is_refused() {
        assert!(BearerToken::new(Some("bad\ntoken")).is_err());
    }
}
