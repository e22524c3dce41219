//! TLS as LocalSend uses it: self-signed certificates on both sides, no
//! certificate authority, and the peer known by its certificate's
//! fingerprint. rustls still checks, in the handshake, that each side holds
//! the private key of the certificate it shows; which certificate is the
//! right one is decided afterwards, by the fingerprint pinned in the peer
//! store.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

use super::cert::Certificate;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: this node's certificate, and a client certificate asked
/// for (LocalSend 1.18 and later send one; without one a sender is not
/// identified and may not upload).
///
/// # Errors
/// When rustls refuses the certificate.
pub fn server(cert: &Certificate) -> Result<Arc<ServerConfig>, rustls::Error> {
    let p = provider();
    let cfg = ServerConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(AnyCertificate(
            p.signature_verification_algorithms,
        )))
        .with_single_cert(vec![cert.cert.clone()], cert.key())?;
    Ok(Arc::new(cfg))
}

/// The client side: this node's certificate as the client certificate, and
/// any server certificate (the caller checks its fingerprint).
///
/// # Errors
/// When rustls refuses the certificate.
pub fn client(cert: &Certificate) -> Result<Arc<ClientConfig>, rustls::Error> {
    let p = provider();
    let cfg = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(
            p.signature_verification_algorithms,
        )))
        .with_client_auth_cert(vec![cert.cert.clone()], cert.key())?;
    Ok(Arc::new(cfg))
}

/// Accepts any certificate whose key signs the handshake: the fingerprint
/// decides who it is.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

impl ClientCertVerifier for AnyCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The fingerprint of the first certificate a TLS peer showed.
#[must_use]
pub fn peer_fingerprint(conn: &rustls::CommonState) -> Option<[u8; 32]> {
    conn.peer_certificates()
        .and_then(<[CertificateDer<'_>]>::first)
        .map(|c| super::wire::sha256(c))
}
