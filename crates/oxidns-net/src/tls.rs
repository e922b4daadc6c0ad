//! DNS-over-TLS client settings (RFC 7858, RFC 8310).
//!
//! rustls with the `ring` provider. The server certificate is verified
//! against Mozilla's root store (`webpki-roots`) or a CA file, for the name
//! given (CoreDNS's `tls_servername`) or else the upstream's IP address (an IP
//! SAN), as Go's `crypto/tls` does when no server name is set. A client
//! certificate is optional.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What a TLS upstream needs: a client config and the name its certificate must show.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl TlsSettings {
    /// Settings that verify `server_name` (a DNS name or an IP address), or
    /// `ip` when no name is given.
    pub fn new(
        config: Arc<ClientConfig>,
        server_name: Option<&str>,
        ip: IpAddr,
    ) -> Result<TlsSettings, String> {
        let server_name = match server_name {
            Some(name) => ServerName::try_from(name.trim_end_matches('.').to_owned())
                .map_err(|_| format!("invalid TLS server name '{name}'"))?,
            None => ServerName::IpAddress(ip.into()),
        };
        Ok(TlsSettings {
            config,
            server_name,
        })
    }
}

/// A client config as CoreDNS's `tls [CERT KEY] [CA]` describes it: the
/// server verified against `ca` (a PEM file) or the public roots, and the
/// client authenticated with `cert_key` (PEM files) when given.
pub fn client_config(
    cert_key: Option<(&Path, &Path)>,
    ca: Option<&Path>,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let mut added = 0;
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("bad CA file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("no certificate in CA file {}", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let mut config = match cert_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?;
            if certs.is_empty() {
                return Err(format!("no certificate in {}", cert.display()));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("bad client certificate or key: {e}"))?
        }
    };
    // RFC 7858 §3.2 registers no ALPN id for DoT ("dot" is RFC 8310's SVCB name):
    // offering none is what every DoT client does.
    config.resumption = rustls::client::Resumption::in_memory_sessions(64);
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_roots_without_client_auth() {
        let config = client_config(None, None).unwrap();
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn missing_ca_file_is_an_error() {
        let err = client_config(None, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.contains("cannot read CA file"), "{err}");
    }

    #[test]
    fn server_name_defaults_to_the_ip() {
        let config = client_config(None, None).unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let settings = TlsSettings::new(config.clone(), None, ip).unwrap();
        assert_eq!(settings.server_name, ServerName::IpAddress(ip.into()));
        let named = TlsSettings::new(config.clone(), Some("dns.example."), ip).unwrap();
        assert_eq!(named.server_name.to_str(), "dns.example");
        assert!(TlsSettings::new(config, Some("bad name!"), ip).is_err());
    }
}
