//! Server identity pinning.
//!
//! A gateway has no operator to click through certificate warnings and may never
//! see a public CA chain (a private fleet cloud, a yard server). So the device
//! learns the server's end-entity certificate at enrollment — on first use, or
//! checked against a fingerprint the technician supplies — and afterwards accepts
//! only that certificate. Handshake signatures are still verified with the ring
//! provider, so holding a copy of the certificate without its key gets nowhere.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// SHA-256 of a DER certificate.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(cert_der: &[u8]) -> Fingerprint {
    Sha256::digest(cert_der).into()
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FingerprintError {
    #[error(
        "server fingerprint must be 64 hex digits (SHA-256 of the server certificate), got {0:?}"
    )]
    Malformed(String),
}

/// Parse a fingerprint as `openssl x509 -fingerprint -sha256` or `sha256sum` print it:
/// 64 hex digits, colons allowed, any case.
pub fn parse_fingerprint(s: &str) -> Result<Fingerprint, FingerprintError> {
    let hex_only: String = s.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hex_only).map_err(|_| FingerprintError::Malformed(s.to_owned()))?;
    bytes
        .try_into()
        .map_err(|_| FingerprintError::Malformed(s.to_owned()))
}

/// Which server certificate the verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Enrollment without a fingerprint: accept the first certificate and record it.
    TrustOnFirstUse,
    /// Only this certificate.
    Exactly(Fingerprint),
}

#[derive(Debug)]
pub struct PinningVerifier {
    pin: Pin,
    seen: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl PinningVerifier {
    pub fn new(pin: Pin) -> Self {
        Self {
            pin,
            seen: Mutex::new(None),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// The certificate the server presented on the first accepted handshake.
    pub fn seen(&self) -> Option<Fingerprint> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity.as_ref());
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let expected = match self.pin {
            Pin::Exactly(fp) => Some(fp),
            // On first use, every later handshake of the same client must present
            // the certificate of the first one.
            Pin::TrustOnFirstUse => *seen,
        };
        if expected.is_some_and(|fp| fp != got) {
            tracing::warn!(
                presented = %hex::encode(got),
                "server certificate does not match the pinned one"
            );
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        seen.get_or_insert(got);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3) that trusts
/// exactly what `verifier` accepts.
pub fn client_config(verifier: Arc<PinningVerifier>) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex64 = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex64), Ok([0xab; 32]));
        assert_eq!(parse_fingerprint(&colons), Ok([0xab; 32]));
    }

    #[test]
    fn short_or_non_hex_fingerprints_are_refused() {
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn trust_on_first_use_then_only_that_certificate() {
        let v = PinningVerifier::new(Pin::TrustOnFirstUse);
        let name = ServerName::try_from("fleet.example").expect("valid name");
        let a = CertificateDer::from(vec![1u8, 2, 3]);
        let b = CertificateDer::from(vec![4u8, 5, 6]);
        v.verify_server_cert(&a, &[], &name, &[], UnixTime::now())
            .expect("first certificate is trusted");
        assert_eq!(v.seen(), Some(fingerprint(&[1, 2, 3])));
        v.verify_server_cert(&a, &[], &name, &[], UnixTime::now())
            .expect("same certificate again");
        assert!(v
            .verify_server_cert(&b, &[], &name, &[], UnixTime::now())
            .is_err());
    }

    #[test]
    fn an_exact_pin_refuses_any_other_certificate() {
        let v = PinningVerifier::new(Pin::Exactly(fingerprint(&[9, 9])));
        let name = ServerName::try_from("fleet.example").expect("valid name");
        assert!(v
            .verify_server_cert(
                &CertificateDer::from(vec![1u8]),
                &[],
                &name,
                &[],
                UnixTime::now()
            )
            .is_err());
        v.verify_server_cert(
            &CertificateDer::from(vec![9u8, 9]),
            &[],
            &name,
            &[],
            UnixTime::now(),
        )
        .expect("pinned certificate");
    }
}
