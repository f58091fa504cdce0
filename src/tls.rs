//! Mutual TLS: the rustls server configuration, built from the files named
//! under `tls.*`, and swappable at run time so that certificate rotation and
//! CRL updates take effect for new handshakes without a restart.
//!
//! TLS 1.2 and 1.3 only, ALPN `http/1.1` only, client certificates verified
//! against `tls.client_ca` (required unless `tls.client_cert: optional`) and,
//! when `tls.crl` is set, checked against it.
//!
//! Revocation covers the whole chain: every certificate of the client's
//! path below the trust anchor (the leaf and each intermediate) is looked
//! up in the CRLs of `tls.crl`, and a chain with a certificate whose issuer
//! has no CRL there is refused (its status is unknown; moat fails closed).
//! So with `tls.crl` set, the file must hold a CRL from every CA that
//! issues client certificates or intermediates: the root's and each
//! intermediate's (`moat certs` writes that bundle). Trust anchors in
//! `tls.client_ca` are never checked against a CRL (they are trusted as
//! configured): put only roots there, never an intermediate you may have
//! to revoke. Which certificate of a refused chain was revoked is logged
//! and counted ([`revocation`]).
//!
//! No session resumption (no tickets, no session cache): every connection
//! presents its certificate and is checked against the CA and CRL in force
//! at that moment. The docker CLI never resumes a session anyway, and
//! tickets cost a record and an encryption per handshake. The chain check
//! itself is remembered per certificate for the life of one configuration
//! ([`verify`]); a reload starts afresh.
//!
//! Cipher suites are chosen in the server's order, AES-128-GCM first (as Go,
//! and so dockerd, does on hardware with AES instructions): it is the
//! fastest suite there, and its SHA-256 key schedule uses the CPU's SHA
//! instructions where SHA-384 has none.

pub mod reload;
pub mod revocation;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::{self, ClientCert};
use crate::metrics::RevokedCounter;
use revocation::RevokedSet;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {what}: {reason}")]
    File {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// Installs the one crypto provider moat uses. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The current server configuration, replaced as a whole on reload.
pub struct TlsSettings {
    source: config::Tls,
    current: ArcSwap<ServerConfig>,
    /// Counts revoked chains; set once the metrics exist.
    revoked_counter: Arc<OnceLock<RevokedCounter>>,
}

impl TlsSettings {
    pub fn load(source: &config::Tls) -> Result<Self, TlsError> {
        let revoked_counter = Arc::new(OnceLock::new());
        Ok(Self {
            current: ArcSwap::new(build_counted(source, &revoked_counter)?),
            source: source.clone(),
            revoked_counter,
        })
    }

    /// Counts revoked chains (at the handshake and on reload) in `counter`.
    pub fn count_revocations_in(&self, counter: RevokedCounter) {
        let _ = self.revoked_counter.set(counter);
    }

    /// The revocation counter, if set.
    pub fn revoked_counter(&self) -> Option<&RevokedCounter> {
        self.revoked_counter.get()
    }

    /// The configuration a new handshake should use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Rebuilds from the files on disk. On error the previous configuration
    /// stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current
            .store(build_counted(&self.source, &self.revoked_counter)?);
        Ok(())
    }

    /// The files whose change should trigger a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![
            self.source.cert.clone(),
            self.source.key.clone(),
            self.source.client_ca.clone(),
        ];
        files.extend(self.source.crl.clone());
        files
    }

    /// The revocation list file, if any.
    pub fn crl_path(&self) -> Option<&Path> {
        self.source.crl.as_deref()
    }
}

fn file_err(path: &Path, what: &'static str, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        what,
        reason: e.to_string(),
    }
}

/// Reads every certificate in a PEM file; an empty file is an error.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, what, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, what, e))?;
    if certs.is_empty() {
        return Err(file_err(path, what, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Reads every CRL in a PEM file.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| file_err(path, "tls.crl", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, "tls.crl", e))
}

/// Builds a complete server configuration from the files on disk.
pub fn build(cfg: &config::Tls) -> Result<Arc<ServerConfig>, TlsError> {
    build_counted(cfg, &Arc::new(OnceLock::new()))
}

fn build_counted(
    cfg: &config::Tls,
    revoked_counter: &Arc<OnceLock<RevokedCounter>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    let chain = load_certs(&cfg.cert, "tls.cert")?;
    let key =
        PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| file_err(&cfg.key, "tls.key", e))?;
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&cfg.client_ca, "tls.client_ca")? {
        roots
            .add(ca)
            .map_err(|e| file_err(&cfg.client_ca, "tls.client_ca", e))?;
    }
    let mut verifier = WebPkiClientVerifier::builder(Arc::new(roots));
    let mut revoked = None;
    if let Some(crl) = &cfg.crl {
        // Every certificate of the chain is checked (webpki's default depth),
        // and an unknown status (no CRL from its issuer) is refused (webpki's
        // default policy): neither is relaxed here.
        let crls = load_crls(crl)?;
        revoked = Some(Arc::new(RevokedSet::from_crls(crl, &crls)?));
        verifier = verifier.with_crls(crls);
    }
    if cfg.client_cert == ClientCert::Optional {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
    let verifier = Arc::new(
        verify::CachedVerifier::new(verifier).with_revocation(revoked, revoked_counter.clone()),
    );
    let mut server = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(format!("protocol versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| file_err(&cfg.key, "tls.key", format!("does not match tls.cert: {e}")))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    server.ignore_client_order = true;
    // No resumption: every connection's certificate is checked against the
    // CA and CRL in force now (rustls's default ticketer already issues none).
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    Ok(Arc::new(server))
}

/// aws-lc-rs with the cipher suites in moat's order of preference.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

#[cfg(test)]
mod tests;
