//! TLS settings for both ends, built on rustls (ring provider).
//!
//! Client: the system's root certificates by default, plus an optional CA
//! file, an optional client certificate, SNI from the URI's host, and an
//! explicit insecure switch for development. Server: a PEM certificate chain
//! and private key.
//!
//! A server certificate the client rejects is described in the failure
//! message: which certificate (the server's or a CA certificate it sent), its
//! subject, issuer and validity period, and why, in words.

mod x509;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

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
        self.build_described().map(|(cfg, _)| cfg)
    }

    /// [`ClientTls::build`], with a description of the client certificate
    /// (see [`describe_certificate`]) when there is one, for the message
    /// when a server refuses it.
    pub fn build_described(&self) -> Result<(Arc<rustls::ClientConfig>, Option<String>), String> {
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
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?;
            let trusted = match (self.system_roots, &self.ca_file) {
                (true, Some(ca)) => format!("the system roots or the CA file {}", ca.display()),
                (false, Some(ca)) => format!("the CA file {}", ca.display()),
                _ => "the system roots".to_owned(),
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Explaining { inner, trusted }))
        };
        let (cfg, described) = match &self.client_cert {
            Some((chain, key)) => {
                let certs = load_certs(chain)?;
                let described = certs.first().map(|c| describe_certificate(c));
                let cfg = builder
                    .with_client_auth_cert(certs, load_key(key)?)
                    .map_err(|e| format!("unusable client certificate {}: {e}", chain.display()))?;
                (cfg, described)
            }
            None => (builder.with_no_client_auth(), None),
        };
        Ok((Arc::new(cfg), described))
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

/// Describes a DER certificate in one line: `subject CN=…,O=…, issued by
/// CN=…, valid 2026-12-01T00:00:00Z to 2026-12-02T00:00:00Z` (names in RFC
/// 4514 form, times in UTC). Any input is accepted: what cannot be read is
/// said so, and the text is bounded and escaped, so it is safe to log.
pub fn describe_certificate(der: &[u8]) -> String {
    match x509::summary(der) {
        Some(s) => s.to_string(),
        None => format!("a certificate that cannot be read ({} bytes)", der.len()),
    }
}

thread_local! {
    /// What the verifier said about the certificate it just rejected on this
    /// thread (rustls calls it inside `process_new_packets`, on the thread
    /// that then receives the error).
    static REJECTED: Cell<Option<String>> = const { Cell::new(None) };
}

/// Takes the description of the last certificate rejected on this thread.
pub(crate) fn take_rejection() -> Option<String> {
    REJECTED.try_with(|r| r.take()).ok().flatten()
}

/// The verifier of a client that checks certificates: webpki's, which
/// decides, and on a rejection a sentence for the failure message (see
/// [`take_rejection`]). The error itself, and so the result code and the
/// alert sent, are webpki's.
#[derive(Debug)]
struct Explaining {
    inner: Arc<WebPkiServerVerifier>,
    /// Where trusted roots come from, for an unknown issuer.
    trusted: String,
}

impl ServerCertVerifier for Explaining {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        if let Err(rustls::Error::InvalidCertificate(e)) = &r {
            let text = explain(e, end_entity, intermediates, server_name, now, &self.trusted);
            let _ = REJECTED.try_with(|r| r.set(Some(text)));
        }
        r
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// How many certificates of a chain are looked at for the one a validity
/// error is about.
const MAX_CHAIN: usize = 8;

/// One sentence: which certificate, what it is, and why it was rejected.
/// `trusted` says where the trusted roots come from.
fn explain(
    e: &CertificateError,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    now: UnixTime,
    trusted: &str,
) -> String {
    let host = server_name.to_str();
    let chain = || std::iter::once(end_entity).chain(intermediates).take(MAX_CHAIN);
    // A validity error names the period it found wanting: the certificate
    // with that period is the one at fault, the server's own or a CA's.
    let at_fault = |matches: &dyn Fn(&(x509::Time, x509::Time)) -> bool| {
        chain()
            .position(|c| x509::summary(c).and_then(|s| s.validity).is_some_and(|v| matches(&v)))
            .unwrap_or(0)
    };
    let at = |t: &UnixTime| i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    let index = match e {
        CertificateError::ExpiredContext { not_after, .. } => at_fault(&|v| v.1.unix() == at(not_after)),
        CertificateError::NotValidYetContext { not_before, .. } => at_fault(&|v| v.0.unix() == at(not_before)),
        _ => 0,
    };
    let cert: &[u8] = chain().nth(index).map_or(end_entity, |c| c);
    let which = if index == 0 {
        format!("the server certificate for \"{host}\"")
    } else {
        format!("a CA certificate sent with the server certificate for \"{host}\"")
    };
    let summary = x509::summary(cert);
    let what = describe_certificate(cert);
    let time = |t: &UnixTime| x509::Time::from_unix(t.as_secs());
    let here = time(&now);
    let why = match e {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let mut s = format!("is not valid for the name \"{host}\"");
            if let CertificateError::NotValidForNameContext { presented, .. } = e {
                s.push_str(&presented_names(presented));
            }
            s
        }
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("expired on {} (the time here is {here})", time(not_after))
        }
        // webpki's word for a period that ends before it begins, too.
        CertificateError::Expired => match summary.as_ref().and_then(|s| s.validity) {
            Some((from, to)) if to.unix() < from.unix() => {
                "has a validity period that ends before it begins".to_owned()
            }
            Some((_, to)) => format!("expired on {to} (the time here is {here})"),
            None => format!("has expired (the time here is {here})"),
        },
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("is not valid before {} (the time here is {here})", time(not_before))
        }
        CertificateError::NotValidYet => format!("is not valid yet (the time here is {here})"),
        CertificateError::UnknownIssuer if summary.as_ref().is_some_and(|s| s.self_issued) => {
            format!("is self-signed and not trusted (not in {trusted})")
        }
        CertificateError::UnknownIssuer => {
            format!("is signed by an unknown issuer (not in {trusted})")
        }
        CertificateError::BadSignature => "has a signature its issuer's key does not verify".to_owned(),
        CertificateError::Revoked => "has been revoked".to_owned(),
        CertificateError::BadEncoding => "is malformed".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "is not for TLS servers (its extended key usage does not include serverAuth)".to_owned()
        }
        CertificateError::UnhandledCriticalExtension => "has a critical extension this client does not know".to_owned(),
        e => format!("was rejected: {e}"),
    };
    format!("{which} ({what}) {why}")
}

/// ": it is for a.example, 10.0.0.1" from webpki's `DnsName("a.example")`,
/// `IpAddress(10.0.0.1)`; bounded, with control characters escaped.
fn presented_names(presented: &[String]) -> String {
    const MAX_NAMES: usize = 8;
    if presented.is_empty() {
        return ": it names no host in its subjectAltName".to_owned();
    }
    let mut s = String::from(": it is for ");
    for (i, p) in presented.iter().take(MAX_NAMES).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let bare = p
            .strip_prefix("DnsName(\"")
            .and_then(|r| r.strip_suffix("\")"))
            .or_else(|| p.strip_prefix("IpAddress(").and_then(|r| r.strip_suffix(')')))
            .unwrap_or(p);
        for c in bare.chars().take(80) {
            if c.is_control() {
                s.push_str(&c.escape_default().to_string());
            } else {
                s.push(c);
            }
        }
    }
    if presented.len() > MAX_NAMES {
        s.push_str(", …");
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(text: &str) -> UnixTime {
        // "2026-12-01T12:00:00Z" read as a GeneralizedTime.
        let t: String = text.chars().filter(|c| c.is_ascii_digit() || *c == 'Z').collect();
        UnixTime::since_unix_epoch(Duration::from_secs(x509::unix_time(&t)))
    }

    fn verifier() -> Explaining {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(x509::fixture("root"))).unwrap();
        Explaining {
            inner: WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap(),
            trusted: "the CA file root.pem".to_owned(),
        }
    }

    /// Verifies `chain` (fixture names, leaf first) for `host` at `when`;
    /// the rustls error and the sentence left for the failure message.
    fn verify(chain: &[&str], host: &str, when: &str) -> Result<(), (CertificateError, String)> {
        let certs: Vec<CertificateDer<'static>> =
            chain.iter().map(|n| CertificateDer::from(x509::fixture(n))).collect();
        let name = ServerName::try_from(host.to_owned()).unwrap();
        let r = verifier().verify_server_cert(&certs[0], &certs[1..], &name, &[], at(when));
        let text = take_rejection();
        match r {
            Ok(_) => {
                assert_eq!(text, None, "nothing is left behind after a success");
                Ok(())
            }
            Err(rustls::Error::InvalidCertificate(e)) => Err((e, text.expect("a rejection is described"))),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    const WRONG: &str =
        "(subject CN=wrong.example,OU=engine,O=wsbroker tests,C=DE, issued by CN=wsbroker fixture root,\
                         O=wsbroker tests, valid 2026-12-01T00:00:00Z to 2026-12-02T00:00:00Z)";

    #[test]
    fn each_rejection_names_the_certificate_and_the_reason() {
        let (e, m) = verify(&["wrong-name"], "localhost", "2026-12-01T12:00:00Z").unwrap_err();
        assert!(matches!(e, CertificateError::NotValidForNameContext { .. }), "{e:?}");
        assert_eq!(
            m,
            format!(
                "the server certificate for \"localhost\" {WRONG} is not valid for the name \"localhost\": \
                 it is for wrong.example"
            )
        );

        let (e, m) = verify(&["wrong-name"], "wrong.example", "2026-12-03T08:30:00Z").unwrap_err();
        assert!(matches!(e, CertificateError::ExpiredContext { .. }), "{e:?}");
        assert_eq!(
            m,
            format!(
                "the server certificate for \"wrong.example\" {WRONG} expired on 2026-12-02T00:00:00Z \
                 (the time here is 2026-12-03T08:30:00Z)"
            )
        );

        let (e, m) = verify(&["wrong-name"], "wrong.example", "2026-11-30T23:59:59Z").unwrap_err();
        assert!(matches!(e, CertificateError::NotValidYetContext { .. }), "{e:?}");
        assert_eq!(
            m,
            format!(
                "the server certificate for \"wrong.example\" {WRONG} is not valid before 2026-12-01T00:00:00Z \
                 (the time here is 2026-11-30T23:59:59Z)"
            )
        );

        assert_eq!(verify(&["wrong-name"], "wrong.example", "2026-12-01T12:00:00Z"), Ok(()));
    }

    #[test]
    fn the_certificate_at_fault_may_be_a_ca_the_server_sent() {
        assert_eq!(
            verify(&["chain-leaf", "intermediate"], "chain.example", "2026-03-01T00:00:00Z"),
            Ok(())
        );
        // The leaf is still valid in July, its issuer expired in June.
        let (e, m) = verify(&["chain-leaf", "intermediate"], "chain.example", "2026-07-01T00:00:00Z").unwrap_err();
        assert!(matches!(e, CertificateError::ExpiredContext { .. }), "{e:?}");
        assert_eq!(
            m,
            "a CA certificate sent with the server certificate for \"chain.example\" (subject CN=wsbroker fixture \
             intermediate, issued by CN=wsbroker fixture root,O=wsbroker tests, valid 2026-01-01T00:00:00Z to \
             2026-06-01T00:00:00Z) expired on 2026-06-01T00:00:00Z (the time here is 2026-07-01T00:00:00Z)"
        );
    }

    #[test]
    fn unknown_issuers() {
        // The server leaves out the intermediate: its issuer is unknown here.
        let (e, m) = verify(&["chain-leaf"], "chain.example", "2026-03-01T00:00:00Z").unwrap_err();
        assert_eq!(e, CertificateError::UnknownIssuer);
        assert_eq!(
            m,
            "the server certificate for \"chain.example\" (subject CN=chain.example, issued by CN=wsbroker fixture \
             intermediate, valid 2026-01-01T00:00:00Z to 2027-01-01T00:00:00Z) is signed by an unknown issuer \
             (not in the CA file root.pem)"
        );
        let (e, m) = verify(&["self-signed"], "localhost", "2026-03-01T00:00:00Z").unwrap_err();
        assert_eq!(e, CertificateError::UnknownIssuer);
        assert!(
            m.starts_with("the server certificate for \"localhost\" (subject CN=localhost, issued by CN=localhost,")
                && m.ends_with(") is self-signed and not trusted (not in the CA file root.pem)"),
            "{m}"
        );
    }

    #[test]
    fn an_unreadable_certificate_is_said_to_be() {
        let mut bad = x509::fixture("wrong-name");
        bad.truncate(bad.len() - 1);
        let (e, m) = verify_der(bad.clone());
        assert_eq!(e, CertificateError::BadEncoding);
        assert_eq!(
            m,
            format!(
                "the server certificate for \"localhost\" (a certificate that cannot be read ({} bytes)) is malformed",
                bad.len()
            )
        );
        assert_eq!(describe_certificate(&[]), "a certificate that cannot be read (0 bytes)");
    }

    fn verify_der(der: Vec<u8>) -> (CertificateError, String) {
        let name = ServerName::try_from("localhost").unwrap();
        let r = verifier().verify_server_cert(&CertificateDer::from(der), &[], &name, &[], at("2026-12-01T12:00:00Z"));
        match r {
            Err(rustls::Error::InvalidCertificate(e)) => (e, take_rejection().unwrap()),
            r => panic!("unexpected {r:?}"),
        }
    }

    #[test]
    fn reasons_without_context() {
        let leaf = CertificateDer::from(x509::fixture("wrong-name"));
        let name = ServerName::try_from("localhost").unwrap();
        let why = |e: CertificateError| {
            let m = explain(&e, &leaf, &[], &name, at("2026-12-03T00:00:00Z"), "the system roots");
            let prefix = format!("the server certificate for \"localhost\" {WRONG} ");
            m.strip_prefix(&prefix).map(str::to_owned).unwrap_or(m)
        };
        assert_eq!(
            why(CertificateError::Expired),
            "expired on 2026-12-02T00:00:00Z (the time here is 2026-12-03T00:00:00Z)"
        );
        assert_eq!(
            why(CertificateError::BadSignature),
            "has a signature its issuer's key does not verify"
        );
        assert_eq!(
            why(CertificateError::InvalidPurpose),
            "is not for TLS servers (its extended key usage does not include serverAuth)"
        );
        assert_eq!(why(CertificateError::Revoked), "has been revoked");
    }

    #[test]
    fn presented_names_are_bounded_and_escaped() {
        let many: Vec<String> = (0..20).map(|i| format!("DnsName(\"h{i}.example\")")).collect();
        let s = presented_names(&many);
        assert!(
            s.starts_with(": it is for h0.example, h1.example,") && s.ends_with("h7.example, …"),
            "{s}"
        );
        assert_eq!(
            presented_names(&["IpAddress(10.0.0.1)".to_owned(), "DnsName(\"a\nb\")".to_owned()]),
            ": it is for 10.0.0.1, a\\nb"
        );
        assert_eq!(presented_names(&[]), ": it names no host in its subjectAltName");
    }
}
