//! TLS for relays: which certificates we trust (the system's roots, or
//! webpki's when the system has none, plus an optional extra CA), and what
//! we learnt about a session's TLS (for `relay-check` and logs).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use thiserror::Error;

/// Why a TLS configuration could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The extra CA file could not be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The crypto provider refused the protocol versions.
    #[error("TLS provider: {0}")]
    Provider(String),
    /// rustls refused a certificate as a trust anchor.
    #[error("CA certificate not usable: {0}")]
    Anchor(String),
}

/// Builds TLS client settings: TLS 1.2 and 1.3 only (rustls speaks nothing
/// older), certificates verified against `roots`.
fn client_config(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Provider(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The system's trust roots (webpki's bundled roots if the system has
/// none), plus the certificates in `extra_ca` if given.
pub fn system_tls_config(
    extra_ca: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = extra_ca {
        add_pem_file(&mut roots, path)?;
    }
    client_config(roots)
}

/// Trust only the CA certificates in `pem` (tests, private relays).
pub fn tls_config_from_pem(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    add_pem(&mut roots, pem, "<memory>")?;
    client_config(roots)
}

fn add_pem_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsSetupError> {
    let pem = std::fs::read(path).map_err(|e| TlsSetupError::CaFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    add_pem(roots, &pem, &path.display().to_string())
}

fn add_pem(roots: &mut RootCertStore, pem: &[u8], origin: &str) -> Result<(), TlsSetupError> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsSetupError::CaFile {
            path: origin.to_owned(),
            reason: format!("not PEM: {e}"),
        })?;
        roots
            .add(cert)
            .map_err(|e| TlsSetupError::Anchor(e.to_string()))?;
        count += 1;
    }
    if count == 0 {
        return Err(TlsSetupError::CaFile {
            path: origin.to_owned(),
            reason: "no certificate found".to_owned(),
        });
    }
    Ok(())
}

/// What a finished TLS handshake tells about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The negotiated cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The server certificate's subject, e.g. `CN=smtp.example.com`.
    pub subject: Option<String>,
    /// The server certificate's issuer.
    pub issuer: Option<String>,
    /// When the server certificate expires (RFC 3339).
    pub not_after: Option<String>,
}

impl TlsInfo {
    pub(crate) fn from_connection(conn: &rustls::ClientConnection) -> Self {
        let version = conn
            .protocol_version()
            .map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        let leaf = conn.peer_certificates().and_then(|certs| certs.first());
        let parsed = leaf.and_then(|der| {
            x509_parser::parse_x509_certificate(der.as_ref())
                .ok()
                .map(|(_, cert)| cert)
        });
        Self {
            version,
            cipher,
            subject: parsed.as_ref().map(|c| c.subject().to_string()),
            issuer: parsed.as_ref().map(|c| c.issuer().to_string()),
            not_after: parsed.as_ref().and_then(|c| {
                c.validity()
                    .not_after
                    .to_datetime()
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
        }
    }
}
