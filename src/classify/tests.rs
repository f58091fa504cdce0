//! Tests of the classifier: every row of the daemon's table against an
//! independent regexp oracle built the way gorilla/mux builds it, plus tables
//! of refused and accepted request targets.

use super::table::{rows, ROUTES_TSV};
use super::*;

/// `^template$` as gorilla/mux compiles it (default variable pattern
/// `[^/]+`), with the version-prefixed variant when `versioned`.
fn oracle_regex(template: &str, versioned: bool) -> regex::Regex {
    let mut re = String::from("^");
    if versioned {
        re.push_str("/v[0-9.]+");
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        re.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..].find('}').unwrap() + open;
        let pattern = match rest[open + 1..close].split_once(':') {
            Some((_, p)) => p.to_string(),
            None => "[^/]+".to_string(),
        };
        re.push('(');
        re.push_str(&pattern);
        re.push(')');
        rest = &rest[close + 1..];
    }
    re.push_str(&regex::escape(rest));
    re.push('$');
    regex::Regex::new(&re).unwrap()
}

/// A concrete path for a template: one-segment params get `p1`, greedy ones
/// get a value with a slash, like an image name.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(if rest[open + 1..close].contains(':') {
            "reg:5000/team/app"
        } else {
            "p1"
        });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_route_of_the_table_classifies_like_the_daemon() {
    let table: Vec<(&str, &str, &str)> = ROUTES_TSV
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[1], c[2], c[3])
        })
        .collect();
    assert_eq!(table.len(), rows().len());
    let oracles: Vec<[regex::Regex; 2]> = table
        .iter()
        .map(|(_, t, _)| [oracle_regex(t, true), oracle_regex(t, false)])
        .collect();
    let mut checked = 0;
    for (method, template, _id) in &table {
        for versioned in [false, true] {
            let path = concrete(template);
            let target = if versioned {
                format!("/v1.41{path}")
            } else {
                path.clone()
            };
            // The daemon registers, per route, the versioned then the bare
            // form, and takes the first route that matches.
            let mut want = None;
            'rows: for ((m, _, id), pair) in table.iter().zip(&oracles) {
                if m != method {
                    continue;
                }
                for (re, v) in pair.iter().zip([true, false]) {
                    if let Some(caps) = re.captures(&target) {
                        want = Some((*id, caps, v));
                        break 'rows;
                    }
                }
            }
            let (want_id, caps, _) = want.unwrap();
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let uri: Uri = target.parse().unwrap();
            let route = classify(&method, &uri).unwrap();
            assert_eq!(route.op.id.as_str(), want_id, "{method} {target}");
            let want_params: Vec<String> = caps
                .iter()
                .skip(1)
                .map(|c| c.unwrap().as_str().to_string())
                .collect();
            let got_params: Vec<String> = route.params.iter().map(|(_, v)| v.clone()).collect();
            // Only compare when the oracle's match was the same form as ours
            // (the versioned Options route captures the whole rest).
            if route.api_version.is_some() == versioned || want_id != "Options" {
                assert_eq!(got_params, want_params, "{method} {target}");
            }
            assert_eq!(route.upstream, target, "{method} {target}");
            assert_eq!(route.api_version.as_deref(), versioned.then_some("1.41"));
            checked += 1;
        }
    }
    assert_eq!(checked, table.len() * 2);
}

#[test]
fn classification_table() {
    type Params<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(&str, &str, &str, Params)] = &[
        ("GET", "/v1.41/containers/json", "ContainerList", &[]),
        ("GET", "/containers/json", "ContainerList", &[]),
        (
            "GET",
            "/v1.41/containers/%6a%73%6f%6e",
            "ContainerList",
            &[],
        ),
        (
            "POST",
            "/v1.41/containers/create?name=x",
            "ContainerCreate",
            &[],
        ),
        (
            "GET",
            "/v1.41/containers/abc/json",
            "ContainerInspect",
            &[("name", "abc")],
        ),
        (
            "GET",
            "/v1.41/containers/json/json",
            "ContainerInspect",
            &[("name", "json")],
        ),
        (
            "POST",
            "/v1.41/exec/e1/start",
            "ExecStart",
            &[("name", "e1")],
        ),
        (
            "GET",
            "/v1.41/images/reg:5000/team/app:1.0/json",
            "ImageInspect",
            &[("name", "reg:5000/team/app:1.0")],
        ),
        (
            "DELETE",
            "/v1.41/images/reg:5000/app",
            "ImageDelete",
            &[("name", "reg:5000/app")],
        ),
        ("GET", "/v1.41/networks/", "NetworkList", &[]),
        (
            "GET",
            "/v1.41/networks/n1",
            "NetworkInspect",
            &[("id", "n1")],
        ),
        (
            "GET",
            "/v1.41/debug/pprof/heap",
            "DebugPprof",
            &[("name", "heap")],
        ),
        ("HEAD", "/_ping", "SystemPingHead", &[]),
        (
            "OPTIONS",
            "/anything/at/all",
            "Options",
            &[("anyroute", "anything/at/all")],
        ),
        ("get", "/v1.41/containers/json", "Unknown", &[]),
        ("GET", "/v1.41/nope", "Unknown", &[]),
        ("GET", "/v1.41", "Unknown", &[]),
        ("GET", "/version", "SystemVersion", &[]),
        ("GET", "/v1.41/version", "SystemVersion", &[]),
        ("GET", "/v0.0/version", "SystemVersion", &[]),
        ("GET", "/v1.41/v1.41/version", "Unknown", &[]),
        ("GET", "/volumes", "VolumeList", &[]),
        (
            "GET",
            "/v1.41/containers/a%20b/json",
            "ContainerInspect",
            &[("name", "a b")],
        ),
    ];
    for (method, target, id, params) in cases {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let route = classify(&m, &target.parse().unwrap()).unwrap();
        assert_eq!(route.op.id.as_str(), *id, "{method} {target}");
        let got: Vec<(&str, &str)> = route.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(got, *params, "{method} {target}");
    }
}

#[test]
fn upstream_is_canonical() {
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
        (
            "/v1.41/containers/%6a%73%6f%6e",
            "/v1.41/containers/json",
            Some("1.41"),
            "/containers/json",
        ),
        (
            "/containers/json?all=1&all=0",
            "/containers/json?all=1&all=0",
            None,
            "/containers/json",
        ),
        (
            "/containers/json?",
            "/containers/json",
            None,
            "/containers/json",
        ),
        (
            "/containers/json?filters=%7B%22a%22%3A1%7D",
            "/containers/json?filters=%7B%22a%22%3A1%7D",
            None,
            "/containers/json",
        ),
        (
            "/images/json?a+b=c%20d&x",
            "/images/json?a+b=c+d&x=",
            None,
            "/images/json",
        ),
        (
            "/containers/a%21b/json",
            "/containers/a%21b/json",
            None,
            "/containers/a!b/json",
        ),
        (
            "/containers/a!b/json",
            "/containers/a%21b/json",
            None,
            "/containers/a!b/json",
        ),
    ];
    for (target, upstream, version, path) in cases {
        let route = classify(&Method::GET, &target.parse().unwrap()).unwrap();
        assert_eq!(route.upstream, *upstream, "{target}");
        assert_eq!(route.api_version.as_deref(), *version, "{target}");
        assert_eq!(route.path, *path, "{target}");
        let again = classify(&Method::GET, &route.upstream.parse().unwrap()).unwrap();
        assert_eq!(again.upstream, route.upstream);
    }
}

#[test]
fn refused_targets() {
    let cases: &[&str] = &[
        "/v1/containers/json",
        "/v01.41/containers/json",
        "/v1.041/containers/json",
        "/v1.41.0/containers/json",
        "/v./containers/json",
        "/v1./containers/json",
        "/v.41/containers/json",
        "/%76%31/containers/json",
        "//containers/json",
        "/v1.41//containers/json",
        "/v1.41/containers/./json",
        "/v1.41/containers/../json",
        "/v1.41/containers/%2e%2e/json",
        "/v1.41/containers/x/%2E%2E/%2E%2E/version",
        "/v1.41/containers/a%2Fb/json",
        "/v1.41/containers/%zz/json",
        "/v1.41/containers/%00/json",
        "/v1.41/containers/%252F/json",
        "/v1.41/containers/json?a=1;b=2",
        "/v1.41/containers/json?a=%zz",
        "http://evil/v1.41/containers/json",
        "http://localhost/containers/json",
        "localhost:2375",
        "*",
    ];
    for target in cases {
        let Ok(uri) = target.parse::<Uri>() else {
            continue;
        };
        let err = classify(&Method::GET, &uri).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{target}");
        assert!(!err.to_string().is_empty());
    }
}

/// A tiny deterministic generator (xorshift), so the property test needs no
/// extra crate and always runs the same inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn mutated_targets_never_panic_and_upstream_is_a_fixed_point() {
    let pieces = [
        "/",
        "v1.41",
        "v1",
        "containers",
        "json",
        "%2F",
        "%2e",
        ".",
        "..",
        "%",
        "%4",
        "%41",
        "a",
        "exec",
        "images",
        "{",
        "?",
        "&",
        "=",
        "+",
        ";",
        "%00",
        "%C3%A9",
        "%ff",
        "networks",
        ":",
        "@",
        "!",
        "~",
        "%20",
        "#",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::DELETE,
        Method::PUT,
        Method::OPTIONS,
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for _ in 0..4000 {
        let n = 1 + rng.next() % 8;
        let mut target = String::from("/");
        for _ in 0..n {
            target.push_str(rng.pick(&pieces));
        }
        let method = &methods[(rng.next() % methods.len() as u64) as usize];
        let Ok(uri) = target.parse::<Uri>() else {
            continue;
        };
        let Ok(route) = classify(method, &uri) else {
            continue;
        };
        accepted += 1;
        let uri2: Uri = route.upstream.parse().unwrap();
        let again = classify(method, &uri2).unwrap();
        assert_eq!(again.upstream, route.upstream, "{target}");
        assert_eq!(again.op.id, route.op.id, "{target}");
        assert_eq!(again.path, route.path, "{target}");
        assert_eq!(again.query, route.query, "{target}");
        assert_eq!(again.params, route.params, "{target}");
    }
    assert!(accepted > 100, "too few accepted targets: {accepted}");
}

/// `OpId` has exactly the table's operations, in table order, then
/// `Unknown`; each name converts back to its id.
#[test]
fn op_ids_are_the_table_operations() {
    let mut want: Vec<&str> = Vec::new();
    for line in ROUTES_TSV.lines().skip(1).filter(|l| !l.is_empty()) {
        let id = line.split('\t').nth(3).unwrap();
        if !want.contains(&id) {
            want.push(id);
        }
    }
    want.push("Unknown");
    let got: Vec<&str> = OpId::ALL.iter().map(|id| id.as_str()).collect();
    assert_eq!(got, want, "rerun tools/gen_op_ids.py");
    for id in OpId::ALL {
        assert_eq!(OpId::from_name(id.as_str()), Some(*id));
    }
    assert_eq!(OpId::from_name("containercreate"), None);
    assert_eq!(UNKNOWN.id, OpId::Unknown);
}

/// The committed `op_id.rs` is what `tools/gen_op_ids.py` generates.
#[test]
fn op_id_file_is_generated() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("tools/gen_op_ids.py"))
        .arg(root.join("src/classify/routes.tsv"))
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        // CI has python3; without it the file cannot be regenerated here.
        other => {
            assert!(
                std::env::var_os("MOAT_CHECK_REFERENCE").is_none(),
                "cannot run tools/gen_op_ids.py: {other:?}"
            );
            return;
        }
    };
    let committed = std::fs::read_to_string(root.join("src/classify/op_id.rs")).unwrap();
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed,
        "src/classify/op_id.rs is stale: rerun tools/gen_op_ids.py"
    );
}
