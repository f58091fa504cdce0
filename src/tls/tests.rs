//! The server configuration as a client meets it: suite order, no
//! resumption, and the chain cache never outliving a reload.

use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::*;
use crate::pki;

struct Pki {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    tls: config::Tls,
}

fn pki() -> Pki {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let paths = pki::init(&pki::InitOptions::new(&dir)).unwrap();
    let tls = config::Tls {
        cert: paths.server_cert.clone(),
        key: paths.server_key.clone(),
        client_ca: paths.ca_cert.clone(),
        crl: Some(paths.crl.clone()),
        client_cert: ClientCert::Required,
    };
    Pki {
        _tmp: tmp,
        dir,
        tls,
    }
}

/// A client with rustls's defaults (AES-256 first, resumption on) and a
/// certificate from moat's CA.
fn client(p: &Pki, user: &str) -> (Arc<ClientConfig>, String) {
    let bundle = pki::issue(&pki::IssueOptions::new(&p.dir, user)).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(bundle.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(bundle.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    (Arc::new(config), bundle.serial)
}

/// Runs one handshake in memory; returns both ends, or the first error.
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = ClientConnection::new(client, name)?;
    let mut s = ServerConnection::new(server)?;
    for _ in 0..20 {
        pump(&mut c, &mut s)?;
        pump(&mut s, &mut c)?;
        if !c.is_handshaking() && !s.is_handshaking() && !s.wants_write() {
            return Ok((c, s));
        }
    }
    panic!("handshake did not finish");
}

/// Moves everything `from` has to send into `to`, and lets `to` process it.
fn pump<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
) -> Result<(), rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
    }
    to.process_new_packets().map(|_| ())
}

#[test]
fn the_server_picks_aes_128_gcm_over_a_client_preferring_aes_256() {
    let p = pki();
    let (client, _) = client(&p, "alice");
    let (c, _) = handshake(build(&p.tls).unwrap(), client).unwrap();
    let suite = c.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
}

#[test]
fn every_connection_is_a_full_handshake_with_its_certificate() {
    let p = pki();
    let (client, _) = client(&p, "alice");
    let server = build(&p.tls).unwrap();
    for _ in 0..3 {
        let (c, s) = handshake(server.clone(), client.clone()).unwrap();
        assert_eq!(c.handshake_kind(), Some(rustls::HandshakeKind::Full));
        assert!(s.peer_certificates().is_some_and(|c| !c.is_empty()));
    }
}

#[test]
fn a_certificate_revoked_after_it_was_verified_is_refused_after_reload() {
    // The chain cache belongs to one configuration: the reload that picks
    // up the new CRL starts with an empty one.
    let p = pki();
    let settings = TlsSettings::load(&p.tls).unwrap();
    let (client, serial) = client(&p, "alice");
    handshake(settings.current(), client.clone()).unwrap();
    handshake(settings.current(), client.clone()).unwrap();
    pki::revoke(&p.dir, &pki::RevokeTarget::Serial(serial)).unwrap();
    settings.reload().unwrap();
    let refused = handshake(settings.current(), client);
    assert!(
        matches!(
            refused,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        ),
        "{:?}",
        refused.map(|_| ())
    );
}
