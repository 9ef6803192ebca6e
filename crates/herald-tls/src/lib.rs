//! Which TLS servers herald trusts, as a client: a relay (herald-smtp), or
//! herald itself over HTTPS (herald-client). The system's roots, or
//! webpki's bundled ones when the system has none, plus an optional extra
//! CA; or only the CAs of a PEM (tests, private relays). TLS 1.2 and 1.3,
//! certificates always verified.

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
    let mut roots = system_roots();
    if let Some(path) = extra_ca {
        add_pem_file(&mut roots, path)?;
    }
    client_config(roots)
}

/// The system's trust roots, or webpki's bundled ones when the system has
/// none (a minimal container).
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// Only the CA certificates in the PEM file at `path` (at least one).
pub fn pem_file_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    add_pem_file(&mut roots, path)?;
    Ok(roots)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["ca.test".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn temp_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("herald-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn the_system_roots_are_never_empty() {
        assert!(!system_roots().is_empty(), "webpki's stand in for none");
    }

    #[test]
    fn a_pem_gives_exactly_its_certificates() {
        let pem = ca_pem();
        assert!(tls_config_from_pem(pem.as_bytes()).is_ok());
        let path = temp_file("ca.pem", format!("{pem}{}", ca_pem()).as_bytes());
        assert_eq!(pem_file_roots(&path).unwrap().len(), 2);
        assert!(system_tls_config(Some(&path)).is_ok());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_file_without_a_certificate_is_refused_naming_it() {
        let empty = temp_file("empty.pem", b"not a certificate\n");
        let error = pem_file_roots(&empty).unwrap_err().to_string();
        assert!(
            error.contains("empty.pem") && error.contains("no certificate"),
            "{error}"
        );
        assert!(system_tls_config(Some(&empty)).is_err());
        std::fs::remove_file(&empty).unwrap();

        let missing = std::env::temp_dir().join("herald-tls-missing.pem");
        let error = pem_file_roots(&missing).unwrap_err().to_string();
        assert!(error.contains("herald-tls-missing.pem"), "{error}");
        assert!(tls_config_from_pem(b"").is_err());
    }
}
