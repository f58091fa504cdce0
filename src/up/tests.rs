//! Unit tests of `moat up`'s bootstrap: the embedded pack, the generated
//! config, first run versus reuse, and the printed instructions.

use super::*;
use crate::config::ClientCert;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn embedded_policies_are_exactly_the_shipped_pack() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with("_test.rego"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = SHIPPED_POLICIES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    embedded.sort();
    assert_eq!(
        embedded, on_disk,
        "list every non-test file of policies/ in up::SHIPPED_POLICIES"
    );
    for (name, text) in SHIPPED_POLICIES {
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), *text);
    }
}

#[test]
fn generated_config_parses_and_matches_the_layout() {
    let layout = Layout::new(Path::new("/srv/moat"));
    let text = render_config(Some(addr("[::1]:2400")), Some(addr("10.0.0.1:9400")));
    let c = Config::parse(&text, &layout.config).unwrap();
    assert_eq!(c.listen.tcp, addr("[::1]:2400"));
    assert_eq!(c.metrics.listen, Some(addr("10.0.0.1:9400")));
    assert_eq!(c.tls.cert, layout.pki.server_cert);
    assert_eq!(c.tls.key, layout.pki.server_key);
    assert_eq!(c.tls.client_ca, layout.pki.ca_cert);
    assert_eq!(c.tls.crl.as_deref(), Some(layout.pki.crl.as_path()));
    assert_eq!(c.tls.client_cert, ClientCert::Optional);
    assert_eq!(c.engine.socket, layout.engine_socket);
    assert_eq!(
        layout.engine_socket.parent(),
        Some(layout.engine_dir.as_path())
    );
    let b = c.engine.bundled.as_ref().unwrap();
    assert_eq!(b.root, layout.engine_data);
    assert_eq!(b.dockerd, Path::new("dockerd"));
    assert!(b.extra_args.is_empty());
    let t = c.auth.tokens.as_ref().unwrap();
    assert_eq!((t.issuer.as_str(), t.audience.as_str()), ("moat", "moat"));
    assert_eq!(t.keys.len(), 1);
    assert_eq!(t.keys[0].file, layout.token_public_key);
    assert_eq!(t.revoked.as_deref(), Some(layout.revoked_tokens.as_path()));
    assert_eq!(c.policy.dir, layout.policies);
    assert_eq!(c.audit.file, layout.audit.join("audit.log"));

    let defaults = Config::parse(&render_config(None, None), &layout.config).unwrap();
    assert_eq!(defaults.listen.tcp, addr("127.0.0.1:2376"));
    assert_eq!(defaults.metrics.listen, Some(addr("127.0.0.1:9323")));
}

#[test]
fn first_run_creates_everything_and_later_runs_reuse_it() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(&tmp.path().join("state"));
    let created = ensure_state(&layout, Some(addr("10.9.8.7:2376")), None).unwrap();
    assert_eq!(created.len(), 6, "{created:?}");
    for f in [
        &layout.config,
        &layout.pki.ca_cert,
        &layout.pki.ca_key,
        &layout.pki.server_cert,
        &layout.pki.crl,
        &layout.admin_bundle.join("ca.pem"),
        &layout.admin_bundle.join("cert.pem"),
        &layout.admin_bundle.join("key.pem"),
        &layout.token_key,
        &layout.token_public_key,
        &layout.revoked_tokens,
        &layout.policies.join("data.json"),
    ] {
        assert!(f.is_file(), "{} missing", f.display());
    }
    assert!(layout.audit.is_dir());
    use std::os::unix::fs::PermissionsExt;
    for private in [&layout.dir, &layout.audit] {
        let mode = std::fs::metadata(private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", private.display());
    }
    for key in [&layout.token_key, &layout.admin_bundle.join("key.pem")] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{}", key.display());
    }
    let admin = pki::list(&layout.pki.dir)
        .unwrap()
        .into_iter()
        .find(|e| e.user == "admin")
        .unwrap();
    assert_eq!(admin.groups, vec!["admin".to_string()]);
    let server = std::fs::read(&layout.pki.server_cert).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&server).unwrap();
    let cert = pem.parse_x509().unwrap();
    let sans = format!(
        "{:?}",
        cert.subject_alternative_name().unwrap().unwrap().value
    );
    for want in [
        "IPAddress([10, 9, 8, 7])",
        "DNSName(\"localhost\")",
        "IPAddress([127, 0, 0, 1])",
    ] {
        assert!(sans.contains(want), "{want} not in {sans}");
    }
    let c = Config::load(&layout.config).unwrap();
    assert_eq!(c.listen.tcp, addr("10.9.8.7:2376"));

    // The second run changes nothing, keeps the admin's edits, and a new
    // --listen does not rewrite the config.
    let keep = |p: &Path| std::fs::read(p).unwrap();
    let before: Vec<Vec<u8>> = [
        &layout.pki.ca_key,
        &layout.pki.server_key,
        &layout.admin_bundle.join("key.pem"),
        &layout.token_key,
        &layout.config,
    ]
    .iter()
    .map(|p| keep(p))
    .collect();
    std::fs::write(layout.policies.join("authz.rego"), "package edited\n").unwrap();
    let created = ensure_state(&layout, Some(addr("127.0.0.1:2999")), None).unwrap();
    assert!(created.is_empty(), "{created:?}");
    let after: Vec<Vec<u8>> = [
        &layout.pki.ca_key,
        &layout.pki.server_key,
        &layout.admin_bundle.join("key.pem"),
        &layout.token_key,
        &layout.config,
    ]
    .iter()
    .map(|p| keep(p))
    .collect();
    assert!(before == after, "an existing file was rewritten");
    assert_eq!(
        std::fs::read_to_string(layout.policies.join("authz.rego")).unwrap(),
        "package edited\n"
    );

    // A lost admin bundle is issued again from the same CA.
    std::fs::remove_dir_all(&layout.admin_bundle).unwrap();
    let created = ensure_state(&layout, None, None).unwrap();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(
        std::fs::read(layout.admin_bundle.join("ca.pem")).unwrap(),
        std::fs::read(&layout.pki.ca_cert).unwrap()
    );
}

#[test]
fn flags_override_the_file_for_the_run() {
    let layout = Layout::new(Path::new("/srv/moat"));
    let mut c = Config::parse(&render_config(None, None), &layout.config).unwrap();
    apply_overrides(
        &mut c,
        &UpOptions {
            dir: layout.dir.clone(),
            listen: Some(addr("0.0.0.0:2376")),
            metrics: Some(addr("127.0.0.1:0")),
            engine_socket: Some(PathBuf::from("/run/docker.sock")),
            unix: Some(PathBuf::from("/run/moat.sock")),
        },
    );
    assert_eq!(c.listen.tcp, addr("0.0.0.0:2376"));
    assert_eq!(c.listen.unix.as_deref(), Some(Path::new("/run/moat.sock")));
    assert_eq!(c.metrics.listen, Some(addr("127.0.0.1:0")));
    assert_eq!(c.engine.socket, Path::new("/run/docker.sock"));
    assert!(c.engine.bundled.is_none());
}

#[test]
fn docker_host_and_sans_from_the_listen_address() {
    for (listen, host, sans) in [
        ("127.0.0.1:2376", "tcp://127.0.0.1:2376", vec!["127.0.0.1"]),
        ("0.0.0.0:2376", "tcp://127.0.0.1:2376", vec![]),
        ("[::]:2376", "tcp://localhost:2376", vec![]),
        ("[::1]:40000", "tcp://[::1]:40000", vec!["::1"]),
        (
            "192.168.1.20:2376",
            "tcp://192.168.1.20:2376",
            vec!["192.168.1.20"],
        ),
    ] {
        assert_eq!(docker_host(addr(listen)), host, "{listen}");
        assert_eq!(listen_sans(addr(listen)), sans, "{listen}");
    }
}

#[test]
fn instructions_print_exports_with_the_absolute_bundle_path() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path());
    let config = Config::parse(&render_config(None, None), &layout.config).unwrap();
    let prepared = Prepared {
        _lock: engine::lock_dir(tmp.path()).unwrap(),
        layout: layout.clone(),
        config,
        created: Vec::new(),
        bundled: true,
    };
    let text = instructions(&prepared, addr("0.0.0.0:41234"), None, "moat");
    let export = format!(
        "export DOCKER_HOST=tcp://127.0.0.1:41234 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}",
        layout.admin_bundle.display()
    );
    assert!(text.lines().any(|l| l == export), "{text}");
    assert!(layout.admin_bundle.is_absolute());
    assert!(text.contains("docker context create moat"), "{text}");
    assert!(
        text.contains(&format!(
            "moat certs issue --dir {}",
            layout.pki.dir.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "moat token issue --key {} --issuer moat --audience moat",
            layout.token_key.display()
        )),
        "{text}"
    );
}
