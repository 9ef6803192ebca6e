//! What we learnt about a session's TLS (for `relay-check` and logs). The
//! trust settings themselves come from herald-tls.

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
