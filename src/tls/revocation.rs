//! Which certificates the CRLs in force revoke, and which certificate of a
//! client's chain that is.
//!
//! rustls' verifier (webpki) checks every certificate of the path below the
//! trust anchor against the CRLs (`tls.crl`); this module answers the
//! questions it does not: *which* certificate was revoked (for the log and
//! `moat_revoked_certificates_total{position}`), and which open connections
//! a new CRL cuts off (the `reload` module, above this one). A CRL entry is keyed as a CRL
//! names it: the CRL's issuer and the serial, so a serial that two CAs
//! happen to share is not confused.

use std::collections::HashSet;
use std::path::Path;

use rustls_pki_types::CertificateRevocationListDer;

use super::TlsError;
use crate::identity::{serial_hex, ChainLink};

/// Every (issuer Name DER, serial) the CRLs list.
#[derive(Debug, Default, Clone)]
pub struct RevokedSet {
    entries: HashSet<(Vec<u8>, String)>,
}

/// Which certificate of a chain is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedLink {
    /// 0 for the leaf, 1 for the certificate that issued it, ….
    pub depth: usize,
    pub serial: String,
    /// Escaped.
    pub subject: String,
}

impl RevokedLink {
    /// `leaf` or `intermediate`: the metric label.
    pub fn position(&self) -> &'static str {
        if self.depth == 0 {
            "leaf"
        } else {
            "intermediate"
        }
    }
}

impl RevokedSet {
    /// Reads the CRLs (already loaded as DER).
    pub fn from_crls(
        path: &Path,
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<Self, TlsError> {
        let mut entries = HashSet::new();
        for der in crls {
            let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| TlsError::File {
                path: path.to_path_buf(),
                what: "tls.crl",
                reason: format!("not a CRL: {e}"),
            })?;
            let issuer = crl.issuer().as_raw().to_vec();
            for r in crl.iter_revoked_certificates() {
                entries.insert((issuer.clone(), serial_hex(r.raw_serial())));
            }
        }
        Ok(Self { entries })
    }

    /// Reads the CRL file.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        Self::from_crls(path, &super::load_crls(path)?)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The revoked serials, whatever their issuer.
    pub fn serials(&self) -> HashSet<String> {
        self.entries.iter().map(|(_, s)| s.clone()).collect()
    }

    /// The certificate of `chain` (leaf first) closest to the leaf that a
    /// CRL revokes.
    pub fn find(&self, chain: &[ChainLink]) -> Option<RevokedLink> {
        chain.iter().enumerate().find_map(|(depth, link)| {
            self.entries
                .contains(&(link.issuer_der.clone(), link.serial.clone()))
                .then(|| RevokedLink {
                    depth,
                    serial: link.serial.clone(),
                    subject: link.subject.clone(),
                })
        })
    }

    /// [`RevokedSet::find`] over DER certificates; those that do not parse
    /// are skipped (the verifier has refused the chain already).
    pub fn find_der(&self, chain: &[&[u8]]) -> Option<RevokedLink> {
        let links: Vec<ChainLink> = chain
            .iter()
            .filter_map(|c| ChainLink::from_der(c).ok())
            .collect();
        self.find(&links)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CertificateAuth;
    use crate::identity::CertInfo;
    use crate::pki;

    #[test]
    fn crl_entries_match_the_chains_moat_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        pki::init(&pki::InitOptions::new(&dir)).unwrap();
        let a = pki::issue(&pki::IssueOptions::new(&dir, "a")).unwrap();
        let b = pki::issue(&pki::IssueOptions::new(&dir, "b")).unwrap();
        let crl = dir.join("crl.pem");
        assert!(RevokedSet::load(&crl).unwrap().is_empty());
        pki::revoke(&dir, &pki::RevokeTarget::Serial(a.serial.clone())).unwrap();
        let revoked = RevokedSet::load(&crl).unwrap();
        let chain_of = |der: &[u8]| {
            CertInfo::from_der(der, &CertificateAuth::default())
                .unwrap()
                .chain
        };
        let found = revoked.find(&chain_of(&a.cert_der)).unwrap();
        assert_eq!((found.depth, found.position()), (0, "leaf"));
        assert_eq!(found.serial, a.serial);
        assert!(revoked.find(&chain_of(&b.cert_der)).is_none());
        // The same serial from another issuer is not revoked.
        let mut other = chain_of(&a.cert_der);
        other[0].issuer_der = b"another CA".to_vec();
        assert!(revoked.find(&other).is_none());
    }
}
