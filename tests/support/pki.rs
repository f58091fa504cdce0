//! The test PKI, generated in code with rcgen: a CA, a server certificate
//! for 127.0.0.1/localhost, and client bundles (valid, expired, and from
//! another CA). No key is ever committed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber, SigningKey,
};
use time::{Duration, OffsetDateTime};

pub(crate) struct Pki {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    issued: std::sync::Mutex<std::collections::HashMap<(String, String), Bundle>>,
}

/// A docker client bundle: a directory with ca.pem, cert.pem and key.pem.
#[derive(Clone, Debug)]
pub(crate) struct Bundle {
    pub dir: PathBuf,
}

static PKI: OnceLock<Pki> = OnceLock::new();

pub(crate) fn pki() -> &'static Pki {
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
    pub(crate) fn generate(dir: &Path) -> Pki {
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
    pub(crate) fn client(&self, user: &str, group: &str) -> Bundle {
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
    pub(crate) fn expired_client(&self, user: &str) -> Bundle {
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
    pub(crate) fn foreign_client(&self, user: &str) -> Bundle {
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
    pub(crate) fn tls_yaml_optional(&self) -> String {
        format!(
            "  cert: {}\n  key: {}\n  client_ca: {}\n  client_cert: optional\n",
            self.server_cert.display(),
            self.server_key.display(),
            self.ca_pem.display()
        )
    }

    /// A bundle with only ca.pem (for token clients).
    pub(crate) fn ca_only(&self, name: &str) -> Bundle {
        let dir = self
            .dir
            .join("clients")
            .join(format!("{name}-{}", hex::encode(rand::random::<[u8; 4]>())));
        std::fs::create_dir_all(&dir).expect("bundle dir");
        std::fs::copy(&self.ca_pem, dir.join("ca.pem")).expect("copy ca");
        Bundle { dir }
    }

    /// A valid client bundle whose certificate carries exactly `subject`
    /// (a DER Name, however hostile), signed by the test CA.
    pub(crate) fn client_with_subject(&self, subject: &[u8], label: &str) -> Bundle {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, "placeholder");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = now - Duration::hours(1);
        p.not_after = now + Duration::days(1);
        p.serial_number = Some(random_serial());
        let cert = p.signed_by(&key, &self.issuer).expect("sign client");
        let der =
            moat::pki::der::replace_subject(cert.der(), subject, |tbs| self.issuer.key().sign(tbs))
                .expect("rewrite the subject")
                .expect("sign");
        let dir = self.dir.join("clients").join(format!(
            "hostile-{label}-{}",
            hex::encode(rand::random::<[u8; 4]>())
        ));
        std::fs::create_dir_all(&dir).expect("bundle dir");
        std::fs::copy(&self.ca_pem, dir.join("ca.pem")).expect("copy ca");
        std::fs::write(dir.join("cert.pem"), pem("CERTIFICATE", &der)).expect("write cert");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
        Bundle { dir }
    }

    /// A two-level PKI of its own in `dir`: a root, an intermediate it
    /// signed, and a client (`dana`, group `admin`) the intermediate
    /// signed, whose bundle trusts this PKI's server certificate and sends
    /// the intermediate after its leaf.
    pub(crate) fn two_level(&self, dir: &Path) -> TwoLevel {
        std::fs::create_dir_all(dir).expect("dir");
        let (root_params, root_key) = ca("test root CA");
        let root_cert = root_params.self_signed(&root_key).expect("root");
        let root_pem = dir.join("root.pem");
        std::fs::write(&root_pem, root_cert.pem()).expect("write root");
        let root = Issuer::new(root_params, root_key);

        let (mut ip, inter_key) = ca("test intermediate CA");
        ip.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let inter_serial = random_serial();
        ip.serial_number = Some(inter_serial.clone());
        let inter_cert = ip.signed_by(&inter_key, &root).expect("intermediate");
        let inter = Issuer::new(ip, inter_key);

        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, "dana");
        p.distinguished_name.push(DnType::OrganizationName, "admin");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = now - Duration::hours(1);
        p.not_after = now + Duration::days(1);
        let leaf_serial = random_serial();
        p.serial_number = Some(leaf_serial.clone());
        let leaf = p.signed_by(&key, &inter).expect("leaf");
        let bundle_dir = dir.join("dana");
        std::fs::create_dir_all(&bundle_dir).expect("bundle dir");
        std::fs::copy(&self.ca_pem, bundle_dir.join("ca.pem")).expect("copy ca");
        std::fs::write(
            bundle_dir.join("cert.pem"),
            format!("{}{}", leaf.pem(), inter_cert.pem()),
        )
        .expect("write cert");
        std::fs::write(bundle_dir.join("key.pem"), key.serialize_pem()).expect("write key");
        TwoLevel {
            root_pem,
            root,
            inter,
            inter_serial,
            leaf_serial,
            leaf: Bundle { dir: bundle_dir },
        }
    }

    /// The `tls:` section for moat serving this PKI's server certificate and
    /// trusting `client_ca`, with `crl`.
    pub(crate) fn tls_yaml_with(&self, client_ca: &Path, crl: &Path) -> String {
        format!(
            "  cert: {}\n  key: {}\n  client_ca: {}\n  crl: {}\n",
            self.server_cert.display(),
            self.server_key.display(),
            client_ca.display(),
            crl.display()
        )
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

/// A root, an intermediate and one client under it (see [`Pki::two_level`]).
pub(crate) struct TwoLevel {
    pub root_pem: PathBuf,
    pub root: Issuer<'static, KeyPair>,
    pub inter: Issuer<'static, KeyPair>,
    pub inter_serial: SerialNumber,
    pub leaf_serial: SerialNumber,
    pub leaf: Bundle,
}

/// A PEM CRL signed by `issuer` revoking `serials`.
pub(crate) fn crl(issuer: &Issuer<'static, KeyPair>, serials: &[&SerialNumber]) -> String {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(1),
        crl_number: SerialNumber::from_slice(&rand::random::<[u8; 8]>()[..]),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: (*s).clone(),
                revocation_time: now - Duration::minutes(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .expect("sign CRL")
    .pem()
    .expect("CRL PEM")
}

/// Writes `text` to `path` through a rename, as tools replace files.
pub(crate) fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
