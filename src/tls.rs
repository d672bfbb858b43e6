//! TLS settings for both ends, built on rustls (ring provider).
//!
//! Client: the system's root certificates by default, plus an optional CA
//! file, an optional client certificate, SNI from the URI's host, and an
//! explicit insecure switch for development. Server: a PEM certificate chain
//! and private key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client-side TLS options. Defaults: system roots, no extra CA, no client
/// certificate, certificates verified.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// Trust the operating system's root certificates. Default true.
    pub system_roots: bool,
    /// Also trust the certificates in this PEM file.
    pub ca_file: Option<PathBuf>,
    /// Present this certificate chain and key (PEM files) when asked.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate. For development only: it disables the
    /// protection TLS exists for.
    pub insecure: bool,
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls {
            system_roots: true,
            ca_file: None,
            client_cert: None,
            insecure: false,
        }
    }
}

/// Says what went wrong with a PEM file in words a user can act on.
fn pem_error(path: &Path, what: &str, e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => format!("cannot read {}: {e}", path.display()),
        Error::NoItemsFound => format!("no {what} found in {}", path.display()),
        e => format!("bad PEM {what} in {}: {e}", path.display()),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "certificate", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, "private key", e))
}

impl ClientTls {
    /// Builds the rustls configuration; errors say which file and why.
    pub fn build(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
        } else {
            let mut roots = RootCertStore::empty();
            if self.system_roots {
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    let _ = roots.add(c);
                }
            }
            if let Some(ca) = &self.ca_file {
                for c in load_certs(ca)? {
                    roots
                        .add(c)
                        .map_err(|e| format!("unusable CA certificate in {}: {e}", ca.display()))?;
                }
            }
            if roots.is_empty() {
                return Err("no trusted root certificate: none found on the system and no CA file given".into());
            }
            builder.with_root_certificates(roots)
        };
        let cfg = match &self.client_cert {
            Some((chain, key)) => builder
                .with_client_auth_cert(load_certs(chain)?, load_key(key)?)
                .map_err(|e| format!("unusable client certificate {}: {e}", chain.display()))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(cfg))
    }
}

/// Server-side TLS from a PEM certificate chain (leaf first) and its private
/// key (PKCS#8, PKCS#1 or SEC1). The files are read now; each error names
/// the file and says what is wrong with it: unreadable, no certificate, no
/// or unusable private key, or a key that does not belong to the certificate.
pub fn server_config(cert_chain: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = load_certs(cert_chain)?;
    let key_der = load_key(key)?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "the private key in {} does not belong to the certificate in {}",
                key.display(),
                cert_chain.display()
            ),
            rustls::Error::InvalidCertificate(e) => {
                format!("unusable certificate in {}: {e:?}", cert_chain.display())
            }
            e => format!("unusable private key in {}: {e}", key.display()),
        })?;
    Ok(Arc::new(cfg))
}

/// The verifier behind `insecure`: accepts any certificate, still checks the
/// handshake signatures so the session itself is sound.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
