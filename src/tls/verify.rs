//! Client-certificate chain verification, remembered per certificate.
//!
//! The docker CLI opens a new connection, with a full handshake, for almost
//! every command, and presents the same certificate each time. Verifying its
//! chain (webpki path building, the CA's ECDSA signature over the
//! certificate, the CRL lookup) gives the same answer every time for as long
//! as the certificate is within its validity dates: the trust anchors and
//! the CRL are fixed for the life of one verifier, because a reload builds a
//! new [`rustls::ServerConfig`] and with it a new verifier and an empty
//! cache. So a successful verification is remembered, keyed by the SHA-256
//! of the exact chain bytes, together with the chain's validity window;
//! outside that window (or for any chain not seen before) the full
//! verification runs again.
//!
//! Only the chain check is cached. The handshake signature (proof that the
//! client holds the private key) is verified on every handshake, and
//! failures are never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use sha2::{Digest, Sha256};

use super::revocation::RevokedSet;
use crate::metrics::RevokedCounter;

/// Most chains remembered; past it the cache starts over.
const MAX_ENTRIES: usize = 4096;

/// A verifier that remembers successful chain verifications of `inner`.
#[derive(Debug)]
pub struct CachedVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// Chain hash → (not before, not after), in seconds since the epoch.
    verified: Mutex<HashMap<[u8; 32], (u64, u64)>>,
    /// The CRLs' entries, to say which certificate of a refused chain is
    /// revoked.
    revoked: Option<Arc<RevokedSet>>,
    revoked_counter: Arc<OnceLock<RevokedCounter>>,
}

impl CachedVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>) -> Self {
        CachedVerifier {
            inner,
            verified: Mutex::new(HashMap::new()),
            revoked: None,
            revoked_counter: Arc::new(OnceLock::new()),
        }
    }

    /// Logs and counts which certificate of a chain refused as revoked is
    /// on a CRL.
    pub fn with_revocation(
        mut self,
        revoked: Option<Arc<RevokedSet>>,
        counter: Arc<OnceLock<RevokedCounter>>,
    ) -> Self {
        self.revoked = revoked;
        self.revoked_counter = counter;
        self
    }

    fn note_refusal(
        &self,
        error: &Error,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) {
        let chain: Vec<&[u8]> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref())
            .collect();
        match error {
            Error::InvalidCertificate(rustls::CertificateError::Revoked) => {
                let found = self.revoked.as_ref().and_then(|r| r.find_der(&chain));
                let position = found.as_ref().map_or("leaf", |f| f.position());
                if let Some(c) = self.revoked_counter.get() {
                    c.inc(position, "handshake");
                }
                match found {
                    Some(f) => tracing::info!(
                        position,
                        depth = f.depth,
                        serial = %f.serial,
                        subject = %f.subject,
                        "client certificate chain refused: a CRL revokes this certificate of it"
                    ),
                    None => tracing::info!("client certificate chain refused: revoked"),
                }
            }
            Error::InvalidCertificate(rustls::CertificateError::UnknownRevocationStatus) => {
                tracing::warn!(
                    "client certificate chain refused: tls.crl holds no CRL from the issuer of one of its certificates (an intermediate CA's CRL is missing?); moat refuses chains whose revocation it cannot check"
                );
            }
            _ => {}
        }
    }

    fn remembered(&self, key: &[u8; 32], now: u64) -> bool {
        let Ok(map) = self.verified.lock() else {
            return false;
        };
        map.get(key)
            .is_some_and(|(from, until)| *from <= now && now <= *until)
    }

    fn remember(&self, key: [u8; 32], window: (u64, u64)) {
        if let Ok(mut map) = self.verified.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, window);
        }
    }
}

/// SHA-256 over the chain, each certificate length-prefixed.
fn chain_key(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for cert in std::iter::once(end_entity).chain(intermediates) {
        h.update((cert.len() as u64).to_be_bytes());
        h.update(cert.as_ref());
    }
    h.finalize().into()
}

/// The window in which every certificate of the chain is valid, or `None`
/// if one of them does not parse (then nothing is remembered).
fn validity_window(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<(u64, u64)> {
    let mut window = (0u64, u64::MAX);
    for cert in std::iter::once(end_entity).chain(intermediates) {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let v = parsed.validity();
        let from = u64::try_from(v.not_before.timestamp()).unwrap_or(0);
        let until = u64::try_from(v.not_after.timestamp()).ok()?;
        window = (window.0.max(from), window.1.min(until));
    }
    (window.0 <= window.1).then_some(window)
}

impl ClientCertVerifier for CachedVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let key = chain_key(end_entity, intermediates);
        if self.remembered(&key, now.as_secs()) {
            return Ok(ClientCertVerified::assertion());
        }
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| self.note_refusal(e, end_entity, intermediates))?;
        if let Some(window) = validity_window(end_entity, intermediates) {
            self.remember(key, window);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Accepts every chain and counts the calls.
    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicUsize,
        refuse: bool,
    }

    impl ClientCertVerifier for Counting {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &[]
        }
        fn verify_client_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: UnixTime,
        ) -> Result<ClientCertVerified, Error> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.refuse {
                Err(Error::InvalidCertificate(rustls::CertificateError::Revoked))
            } else {
                Ok(ClientCertVerified::assertion())
            }
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            Err(Error::General("unused".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            Err(Error::General("unused".into()))
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![]
        }
    }

    /// A self-signed certificate valid from `from` to `until` (seconds).
    fn cert(from: i64, until: i64) -> CertificateDer<'static> {
        let mut p = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(until).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().clone()
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs))
    }

    #[test]
    fn a_verified_chain_is_not_verified_again_within_its_dates() {
        let inner = Arc::new(Counting::default());
        let v = CachedVerifier::new(inner.clone());
        let c = cert(1_000_000, 2_000_000);
        for now in [1_500_000, 1_500_001, 1_999_999] {
            v.verify_client_cert(&c, &[], at(now)).unwrap();
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn outside_its_dates_the_chain_is_verified_again() {
        let inner = Arc::new(Counting::default());
        let v = CachedVerifier::new(inner.clone());
        let c = cert(1_000_000, 2_000_000);
        v.verify_client_cert(&c, &[], at(1_500_000)).unwrap();
        // Expired: the cache must not vouch for it; the inner verifier decides.
        v.verify_client_cert(&c, &[], at(2_000_001)).unwrap();
        v.verify_client_cert(&c, &[], at(999_999)).unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn another_chain_is_verified_in_full() {
        let inner = Arc::new(Counting::default());
        let v = CachedVerifier::new(inner.clone());
        let (a, b) = (cert(1_000_000, 2_000_000), cert(1_000_000, 2_000_000));
        v.verify_client_cert(&a, &[], at(1_500_000)).unwrap();
        v.verify_client_cert(&b, &[], at(1_500_000)).unwrap();
        // Same end entity, different intermediates: a different chain.
        v.verify_client_cert(&a, std::slice::from_ref(&b), at(1_500_000))
            .unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_refused_chain_is_never_remembered() {
        let inner = Arc::new(Counting {
            refuse: true,
            ..Counting::default()
        });
        let v = CachedVerifier::new(inner.clone());
        let c = cert(1_000_000, 2_000_000);
        for _ in 0..3 {
            assert!(v.verify_client_cert(&c, &[], at(1_500_000)).is_err());
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    }
}
