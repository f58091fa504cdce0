//! Tests for moat's CA: every certificate is checked the way the server
//! will check it (rustls' webpki verifier with the CRL), and read back with
//! the identity code the server uses.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls::pki_types::{pem::PemObject, CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::*;
use crate::config::{CertGroups, CertUser, CertificateAuth};
use crate::identity::CertInfo;

fn init_dir() -> (tempfile::TempDir, PkiPaths) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut opts = InitOptions::new(&dir);
    opts.sans = vec!["gateway.example".into(), "10.1.2.3".into()];
    let paths = init(&opts).unwrap();
    (tmp, paths)
}

/// Verifies `cert` against the CA and CRL in `paths` like the server does.
fn verify_client(paths: &PkiPaths, cert: &[u8]) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&paths.ca_cert).unwrap())
        .unwrap();
    let crl = CertificateRevocationListDer::from_pem_file(&paths.crl).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls([crl])
        .build()
        .unwrap();
    verifier
        .verify_client_cert(&CertificateDer::from(cert.to_vec()), &[], UnixTime::now())
        .map(|_| ())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_every_file_with_private_keys_0600() {
    let (_tmp, p) = init_dir();
    for f in [&p.ca_cert, &p.server_cert, &p.crl, &p.index] {
        assert!(f.exists(), "{}", f.display());
    }
    assert_eq!(mode(&p.ca_key), 0o600);
    assert_eq!(mode(&p.server_key), 0o600);
    let index = Index::load(&p.index).unwrap();
    assert_eq!(index.certificates.len(), 1);
    assert_eq!(index.certificates[0].kind, CertKind::Server);
}

#[test]
fn init_refuses_to_overwrite_a_ca_without_force() {
    let (_tmp, p) = init_dir();
    let before = std::fs::read(&p.ca_cert).unwrap();
    let err = init(&InitOptions::new(&p.dir)).unwrap_err();
    assert!(matches!(err, PkiError::AlreadyExists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(std::fs::read(&p.ca_cert).unwrap(), before);
    let mut forced = InitOptions::new(&p.dir);
    forced.force = true;
    init(&forced).unwrap();
    assert_ne!(std::fs::read(&p.ca_cert).unwrap(), before);
}

#[test]
fn server_certificate_names_localhost_loopbacks_and_extra_sans() {
    let (_tmp, p) = init_dir();
    let der = CertificateDer::from_pem_file(&p.server_cert).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::prelude::GeneralName::DNSName(d) => d.to_string(),
            x509_parser::prelude::GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
            },
            other => format!("{other:?}"),
        })
        .collect();
    for want in [
        "localhost",
        "127.0.0.1",
        "::1",
        "gateway.example",
        "10.1.2.3",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
}

#[test]
fn issued_certificate_carries_user_and_two_groups_and_verifies() {
    let (tmp, p) = init_dir();
    let out = tmp.path().join("alice");
    let mut opts = IssueOptions::new(&p.dir, "alice");
    opts.groups = vec!["devs".into(), "ops".into()];
    opts.out = Some(out.clone());
    let bundle = issue(&opts).unwrap();

    let der = CertificateDer::from_pem_file(out.join("cert.pem")).unwrap();
    assert_eq!(der.as_ref(), bundle.cert_der.as_slice());
    assert_eq!(mode(&out.join("key.pem")), 0o600);
    assert_eq!(
        std::fs::read_to_string(out.join("ca.pem")).unwrap(),
        std::fs::read_to_string(&p.ca_cert).unwrap()
    );

    let info = CertInfo::from_der(&der, &CertificateAuth::default()).unwrap();
    let names = info.names.as_ref().unwrap();
    assert_eq!(names.user, "alice");
    assert_eq!(names.groups, vec!["devs", "ops"]);
    assert_eq!(info.serial, bundle.serial);

    // The re-signed certificate chains to the CA and is not revoked.
    verify_client(&p, &der).unwrap();
    // Its key matches the certificate (rustls checks this when it loads).
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(out.join("key.pem")).unwrap();
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).unwrap();
    rustls::sign::CertifiedKey::new(vec![der.clone()], signer)
        .keys_match()
        .unwrap();
}

#[test]
fn groups_mapping_ou_reads_none_from_o_only_certificates() {
    let (_tmp, p) = init_dir();
    let mut opts = IssueOptions::new(&p.dir, "bob");
    opts.groups = vec!["devs".into()];
    let bundle = issue(&opts).unwrap();
    let mapping = CertificateAuth {
        user: CertUser::Cn,
        groups: CertGroups::Ou,
    };
    let info = CertInfo::from_der(&bundle.cert_der, &mapping).unwrap();
    assert!(info.names.unwrap().groups.is_empty());
}

#[test]
fn serials_are_random_and_unique() {
    let (_tmp, p) = init_dir();
    let a = issue(&IssueOptions::new(&p.dir, "a")).unwrap();
    let b = issue(&IssueOptions::new(&p.dir, "a")).unwrap();
    assert_ne!(a.serial, b.serial);
    assert_eq!(a.serial.len(), 32);
    let listed: Vec<_> = list(&p.dir)
        .unwrap()
        .into_iter()
        .map(|e| e.serial)
        .collect();
    assert!(listed.contains(&a.serial) && listed.contains(&b.serial));
}

#[test]
fn revoke_by_serial_or_file_puts_the_certificate_on_the_crl() {
    let (tmp, p) = init_dir();
    let keep = issue(&IssueOptions::new(&p.dir, "keep")).unwrap();
    let mut by_file = IssueOptions::new(&p.dir, "gone-file");
    by_file.out = Some(tmp.path().join("gone"));
    let gone_file = issue(&by_file).unwrap();
    let gone_serial = issue(&IssueOptions::new(&p.dir, "gone-serial")).unwrap();
    let crl_before = std::fs::read(&p.crl).unwrap();

    // Colons and upper case are accepted, as openssl prints serials.
    let colons: String = gone_serial
        .serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let e = revoke(&p.dir, &RevokeTarget::Serial(colons)).unwrap();
    assert!(e.revoked && e.revoked_at.is_some());
    revoke(
        &p.dir,
        &RevokeTarget::CertFile(tmp.path().join("gone/cert.pem")),
    )
    .unwrap();
    assert_ne!(std::fs::read(&p.crl).unwrap(), crl_before);

    verify_client(&p, &keep.cert_der).unwrap();
    for gone in [&gone_file, &gone_serial] {
        let err = verify_client(&p, &gone.cert_der).unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
            ),
            "{err:?}"
        );
    }
    let listed = list(&p.dir).unwrap();
    let revoked: Vec<_> = listed
        .iter()
        .filter(|e| e.revoked)
        .map(|e| e.user.as_str())
        .collect();
    assert_eq!(revoked.len(), 2, "{listed:?}");
    assert!(revoked.contains(&"gone-file") && revoked.contains(&"gone-serial"));
    // CRL numbers increase with each signature.
    assert_eq!(Index::load(&p.index).unwrap().crl_number, 3);
}

#[test]
fn revoke_refuses_serials_the_ca_did_not_issue() {
    let (_tmp, p) = init_dir();
    let err = revoke(&p.dir, &RevokeTarget::Serial("abcdef".into())).unwrap_err();
    assert!(matches!(err, PkiError::UnknownSerial { .. }), "{err}");
}

#[test]
fn issue_without_a_ca_says_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let err = issue(&IssueOptions::new(tmp.path(), "alice")).unwrap_err();
    assert!(err.to_string().contains("moat certs init"), "{err}");
}

#[test]
fn bad_names_are_refused() {
    let (_tmp, p) = init_dir();
    for (user, groups) in [
        ("", vec![]),
        (" alice", vec![]),
        ("al\nice", vec![]),
        ("alice", vec!["".to_string()]),
    ] {
        let mut o = IssueOptions::new(&p.dir, user);
        o.groups = groups;
        assert!(
            matches!(issue(&o), Err(PkiError::InvalidName { .. })),
            "{user:?}"
        );
    }
}

#[test]
fn serials_normalise() {
    for (input, want) in [
        ("0A:bc:DE", "abcde"),
        ("00ff", "ff"),
        ("0x1f", "1f"),
        ("  7e  ", "7e"),
        ("00", "0"),
    ] {
        assert_eq!(normalize_serial(input), want, "{input}");
    }
}

#[test]
fn token_key_is_es256_pem() {
    let pair = generate_token_key().unwrap();
    assert!(pair.private_pem.contains("BEGIN PRIVATE KEY"));
    assert!(pair.public_pem.contains("BEGIN PUBLIC KEY"));
    jsonwebtoken::EncodingKey::from_ec_pem(pair.private_pem.as_bytes()).unwrap();
    jsonwebtoken::DecodingKey::from_ec_pem(pair.public_pem.as_bytes()).unwrap();
}

/// Verifies a bundle's `cert.pem` (leaf, then intermediates) against the
/// root and every CRL in `crl_pem` like the server does: the whole chain,
/// an unknown status refused.
fn verify_chain(root: &PkiPaths, cert_pem: &str, crl_pem: &[u8]) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&root.ca_cert).unwrap())
        .unwrap();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let crls: Vec<CertificateRevocationListDer<'static>> =
        CertificateRevocationListDer::pem_slice_iter(crl_pem)
            .collect::<Result<_, _>>()
            .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        .build()
        .unwrap();
    verifier
        .verify_client_cert(&certs[0], &certs[1..], UnixTime::now())
        .map(|_| ())
}

fn revoked(r: Result<(), rustls::Error>) -> bool {
    matches!(
        r,
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked
        ))
    )
}

#[test]
fn a_two_level_pki_issues_verifies_and_revokes_at_both_levels() {
    let (_tmp, root) = init_dir();
    let team = intermediate(&IntermediateOptions::new(&root.dir, "team-a")).unwrap();
    assert_eq!(team.dir, root.dir.join("intermediates/team-a"));
    assert_eq!(mode(&team.ca_key), 0o600);
    let crl = |p: &PkiPaths| std::fs::read(&p.crl).unwrap();
    // The root's crl.pem holds the root's CRL and the intermediate's.
    assert_eq!(
        CertificateRevocationListDer::pem_slice_iter(&crl(&root)).count(),
        2
    );

    let alice = issue(&IssueOptions::new(&team.dir, "alice")).unwrap();
    let bob = issue(&IssueOptions::new(&team.dir, "bob")).unwrap();
    // Bundles trust the root and carry the intermediate after the leaf.
    assert_eq!(
        alice.ca_pem,
        std::fs::read_to_string(&root.ca_cert).unwrap()
    );
    assert_eq!(
        CertificateDer::pem_slice_iter(alice.cert_pem.as_bytes()).count(),
        2
    );
    verify_chain(&root, &alice.cert_pem, &crl(&root)).unwrap();

    // Without the intermediate's CRL its clients' status is unknown: refused.
    let root_only = std::fs::read(&root.own_crl).unwrap();
    let unknown = verify_chain(&root, &alice.cert_pem, &root_only);
    assert!(
        matches!(
            unknown,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownRevocationStatus
            ))
        ),
        "{unknown:?}"
    );

    // A leaf revoked by the intermediate.
    revoke(&team.dir, &RevokeTarget::Serial(alice.serial.clone())).unwrap();
    assert!(revoked(verify_chain(&root, &alice.cert_pem, &crl(&root))));
    verify_chain(&root, &bob.cert_pem, &crl(&root)).unwrap();

    // The intermediate revoked by the root: every leaf under it refused.
    let listed = list(&root.dir).unwrap();
    let entry = listed
        .iter()
        .find(|e| e.kind == CertKind::Intermediate)
        .unwrap();
    revoke(&root.dir, &RevokeTarget::CertFile(team.ca_cert.clone())).unwrap();
    assert!(list(&root.dir)
        .unwrap()
        .iter()
        .any(|e| e.serial == entry.serial && e.revoked));
    assert!(revoked(verify_chain(&root, &bob.cert_pem, &crl(&root))));
    // Clients of the root itself are unaffected.
    let carol = issue(&IssueOptions::new(&root.dir, "carol")).unwrap();
    verify_chain(&root, &carol.cert_pem, &crl(&root)).unwrap();
}

#[test]
fn intermediate_names_are_checked_and_not_reused() {
    let (_tmp, root) = init_dir();
    for bad in ["", "../x", ".hidden", "a/b", "a b"] {
        assert!(
            intermediate(&IntermediateOptions::new(&root.dir, bad)).is_err(),
            "{bad:?}"
        );
    }
    let team = intermediate(&IntermediateOptions::new(&root.dir, "t")).unwrap();
    assert!(intermediate(&IntermediateOptions::new(&root.dir, "t")).is_err());
    // Not under an intermediate: one level only.
    assert!(intermediate(&IntermediateOptions::new(&team.dir, "u")).is_err());
}

#[test]
fn issue_refuses_names_the_server_would_refuse() {
    let (_tmp, p) = init_dir();
    for bad in ["", " alice", "rt-admin\0.evil", "a\u{202e}b", "e\u{301}"] {
        let e = issue(&IssueOptions::new(&p.dir, bad)).unwrap_err();
        assert!(matches!(e, PkiError::InvalidName { .. }), "{bad:?}: {e}");
        assert!(e.to_string().chars().all(|c| !c.is_control()), "{e}");
    }
    let mut opts = IssueOptions::new(&p.dir, "alice");
    opts.groups = vec!["dev\nops".into()];
    assert!(issue(&opts).is_err());
}
