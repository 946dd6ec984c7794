//! TLS for the gRPC port, client side: the CA that must have signed the
//! server's certificate and, for mutual TLS, the certificate this client
//! presents. Applied to `https://` endpoints only; `http://` stays plain.
//!
//! The control plane's `Raft` network, the data-plane link and `mqttctl`
//! all build their channels through [`ClientTls::endpoint`], so the rule
//! "https means verified TLS" lives in one place.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Why the TLS files could not be used.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read.
    Read { path: String, source: std::io::Error },
    /// Certificate and key must be given together.
    HalfIdentity,
    /// An `https://` endpoint without a CA to verify it against.
    NoCa(String),
    /// The URL is malformed or the TLS settings were refused.
    Endpoint { url: String, source: tonic::transport::Error },
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Read { path, source } => write!(f, "cannot read {path}: {source}"),
            TlsError::HalfIdentity => {
                f.write_str("a client certificate needs both its certificate and its key file")
            }
            TlsError::NoCa(url) => {
                write!(f, "{url} uses https, but no CA certificate is configured to verify it")
            }
            TlsError::Endpoint { url, source } => write!(f, "{url}: {source}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { source, .. } => Some(source),
            TlsError::Endpoint { source, .. } => Some(source),
            TlsError::HalfIdentity | TlsError::NoCa(_) => None,
        }
    }
}

/// Makes ring rustls' process-wide crypto provider (tonic's TLS needs one,
/// and cannot pick it when the build enables more than one). Idempotent:
/// a provider already installed stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a PEM file.
pub fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
}

/// What a client trusts and presents on `https://` endpoints.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    config: Option<ClientTlsConfig>,
}

impl ClientTls {
    /// Plain gRPC only: an `https://` endpoint is refused.
    pub fn none() -> Self {
        ClientTls::default()
    }

    /// Trust `ca_pem` (PEM, one or more certificates) and, when given,
    /// present `identity` (certificate and key PEM) for mutual TLS.
    pub fn new(ca_pem: Vec<u8>, identity: Option<(Vec<u8>, Vec<u8>)>) -> Self {
        install_crypto_provider();
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        if let Some((cert, key)) = identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        ClientTls { config: Some(config) }
    }

    /// From files: no CA means plain gRPC only.
    pub fn from_files(
        cacertfile: Option<&Path>,
        certfile: Option<&Path>,
        keyfile: Option<&Path>,
    ) -> Result<Self, TlsError> {
        let identity = match (certfile, keyfile) {
            (Some(cert), Some(key)) => Some((read_pem(cert)?, read_pem(key)?)),
            (None, None) => None,
            _ => return Err(TlsError::HalfIdentity),
        };
        match cacertfile {
            Some(ca) => Ok(ClientTls::new(read_pem(ca)?, identity)),
            None => Ok(ClientTls::none()),
        }
    }

    /// Whether `https://` endpoints can be used.
    pub fn is_enabled(&self) -> bool {
        self.config.is_some()
    }

    /// An endpoint for `url`, with TLS when the URL is `https://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|source| TlsError::Endpoint { url: url.to_owned(), source })?;
        if !url.starts_with("https://") {
            return Ok(endpoint);
        }
        let config = self.config.clone().ok_or_else(|| TlsError::NoCa(url.to_owned()))?;
        endpoint.tls_config(config).map_err(|source| TlsError::Endpoint { url: url.to_owned(), source })
    }
}
