//! The test PKI, generated in code with rcgen: a CA, a server certificate
//! for 127.0.0.1/localhost, and client bundles (valid, expired, and from
//! another CA). No key is ever committed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    issued: std::sync::Mutex<std::collections::HashMap<(String, String), Bundle>>,
}

/// A docker client bundle: a directory with ca.pem, cert.pem and key.pem.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
}

static PKI: OnceLock<Pki> = OnceLock::new();

pub fn pki() -> &'static Pki {
    PKI.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("moat-pki-")
            .tempdir()
            .expect("tempdir")
            .keep();
        Pki::generate(&dir)
    })
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    (params, key)
}

fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let (params, key) = ca("moat test CA");
        let ca_cert = params.self_signed(&key).expect("self-sign CA");
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).expect("write ca");
        let issuer = Issuer::new(params, key);

        let server_key = KeyPair::generate().expect("key");
        let mut sp = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        sp.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        sp.distinguished_name
            .push(DnType::CommonName, "moat test server");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.serial_number = Some(random_serial());
        let server = sp.signed_by(&server_key, &issuer).expect("sign server");
        let server_cert = dir.join("server-cert.pem");
        let server_key_path = dir.join("server-key.pem");
        std::fs::write(&server_cert, server.pem()).expect("write");
        std::fs::write(&server_key_path, server_key.serialize_pem()).expect("write");
        Pki {
            dir: dir.to_path_buf(),
            ca_pem,
            server_cert,
            server_key: server_key_path,
            issuer,
            issued: Default::default(),
        }
    }

    /// A valid client bundle for `user` in `group` (subject O).
    pub fn client(&self, user: &str, group: &str) -> Bundle {
        let now = OffsetDateTime::now_utc();
        self.issue(
            &self.issuer,
            user,
            group,
            now - Duration::hours(1),
            now + Duration::days(1),
            &self.ca_pem,
            "",
        )
    }

    /// A client bundle whose certificate expired yesterday.
    pub fn expired_client(&self, user: &str) -> Bundle {
        let now = OffsetDateTime::now_utc();
        self.issue(
            &self.issuer,
            user,
            "admin",
            now - Duration::days(10),
            now - Duration::days(1),
            &self.ca_pem,
            "-expired",
        )
    }

    /// A client bundle from a CA moat does not trust (its ca.pem is moat's,
    /// so the client trusts the server).
    pub fn foreign_client(&self, user: &str) -> Bundle {
        let (params, key) = ca("some other CA");
        let other = Issuer::new(params, key);
        let now = OffsetDateTime::now_utc();
        self.issue(
            &other,
            user,
            "admin",
            now - Duration::hours(1),
            now + Duration::days(1),
            &self.ca_pem,
            "-foreign",
        )
    }

    /// The `tls:` section body for moat with this PKI's server certificate
    /// and `client_cert: optional` (token clients may come without one).
    pub fn tls_yaml_optional(&self) -> String {
        format!(
            "  cert: {}\n  key: {}\n  client_ca: {}\n  client_cert: optional\n",
            self.server_cert.display(),
            self.server_key.display(),
            self.ca_pem.display()
        )
    }

    /// A bundle with only ca.pem (for token clients).
    pub fn ca_only(&self, name: &str) -> Bundle {
        let dir = self
            .dir
            .join("clients")
            .join(format!("{name}-{}", hex::encode(rand::random::<[u8; 4]>())));
        std::fs::create_dir_all(&dir).expect("bundle dir");
        std::fs::copy(&self.ca_pem, dir.join("ca.pem")).expect("copy ca");
        Bundle { dir }
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        issuer: &Issuer<'static, KeyPair>,
        user: &str,
        group: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        ca_pem: &Path,
        suffix: &str,
    ) -> Bundle {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, user);
        if !group.is_empty() {
            p.distinguished_name.push(DnType::OrganizationName, group);
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = not_before;
        p.not_after = not_after;
        p.serial_number = Some(random_serial());
        let cert = p.signed_by(&key, issuer).expect("sign client");
        let dir = self.dir.join("clients").join(format!(
            "{user}{suffix}-{}",
            hex::encode(rand::random::<[u8; 4]>())
        ));
        std::fs::create_dir_all(&dir).expect("bundle dir");
        std::fs::copy(ca_pem, dir.join("ca.pem")).expect("copy ca");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
        Bundle { dir }
    }
}
