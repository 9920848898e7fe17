//! TLS for a listener: the server's certificate chain and key from PEM files, TLS 1.2 and 1.3
//! only (rustls offers nothing older), ALPN `http/1.1`, and optionally client certificates
//! verified against a CA: offered certificates must chain to it, and a client without one is
//! still let in (it authenticates some other way), as the `mlflow` client's
//! `MLFLOW_TRACKING_CLIENT_CERT_PATH` expects.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;

/// Why TLS could not be set up; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the TLS file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("the TLS file {0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the TLS settings were refused: {0}")]
    Config(String),
}

/// A client certificate the handshake verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// SHA-256 of the certificate's DER bytes, lowercase hex: what an operator binds to a user.
    pub sha256: String,
}

impl ClientCertificate {
    pub fn from_der(der: &[u8]) -> Self {
        ClientCertificate { sha256: hex::encode(sha2::Sha256::digest(der)) }
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |e: rustls_pki_types::pem::Error| TlsError::File { path: path.to_owned(), message: e.to_string() };
    let certificates =
        CertificateDer::pem_file_iter(path).map_err(failed)?.collect::<Result<Vec<_>, _>>().map_err(failed)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certificates)
}

/// The server's TLS configuration: `certificate` (PEM, the leaf first, then intermediates),
/// `key` (PEM, PKCS#8, PKCS#1 or SEC1), and with `client_ca` (PEM, one or more CA
/// certificates), optional client-certificate authentication.
pub fn tls_config(
    certificate: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(certificate)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::File { path: key.to_owned(), message: e.to_string() })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(ca)? {
                roots.add(certificate).map_err(|e| TlsError::File {
                    path: ca.to_owned(),
                    message: format!("not a CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
