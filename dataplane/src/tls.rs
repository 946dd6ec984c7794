//! TLS server configuration from the certificate files named in the config.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Why a TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {message}")]
    File { key: &'static str, path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |message: String| TlsError::File { key, path: path.display().to_string(), message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Builds an acceptor for a listener whose config key is `listener` (e.g. `listeners.tls`).
pub fn acceptor(listener: &'static str, files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let missing = |what: &str| TlsError::Invalid { key: listener, message: format!("{what} is not set") };
    let certfile = files.certfile.as_deref().ok_or_else(|| missing("certfile"))?;
    let keyfile = files.keyfile.as_deref().ok_or_else(|| missing("keyfile"))?;
    let chain = certificates("certfile", certfile)?;
    let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| TlsError::File {
        key: "keyfile",
        path: keyfile.display().to_string(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid { key: listener, message: e.to_string() })?;
    let builder = match (&files.cacertfile, files.verify_peer) {
        (Some(cafile), true) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("cacertfile", cafile)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Invalid { key: "cacertfile", message: e.to_string() })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Invalid { key: "cacertfile", message: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Invalid { key: listener, message: e.to_string() })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
