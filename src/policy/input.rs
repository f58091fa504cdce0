//! The policy input document: what a Rego policy sees as `input`.
//!
//! Its shape is a public contract, documented field by field in
//! `docs/policy-input.md`. Two views of one request live side by side:
//! moat's own (`input.request`, `input.operation`, `input.user`,
//! `input.client`) and the flat fields of opa-docker-authz (`Method`, `Path`,
//! `Body`, `BindMounts`, …) so that policies written for that plugin run
//! unchanged. Credentials never appear in either.

use std::path::{Component, Path, PathBuf};

use http::HeaderMap;
use serde_json::{json, Map, Value};

use super::Facts;
use crate::identity::AuthMethod;

mod value;

/// Headers that carry credentials; they are removed from both header views.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "x-registry-auth",
    "x-registry-config",
];

/// Builds the input document for one request.
pub fn build(f: &Facts<'_>) -> Value {
    document(f, f.body.cloned().unwrap_or(Value::Null))
}

/// The same document as regorus' value type, as the gateway evaluates it,
/// built directly (see [`value`]).
pub fn build_value(f: &Facts<'_>) -> regorus::Value {
    value::build(f)
}

/// The request target as the client sent it (`input.request.uri`, `Path`).
fn raw_target(f: &Facts<'_>) -> String {
    f.uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| f.uri.to_string())
}

/// opa-docker-authz's PathPlain: the decoded path as the daemon saw it,
/// version prefix included.
fn path_plain(route: &crate::classify::Route) -> String {
    match &route.api_version {
        Some(v) => format!("/v{v}{}", route.path),
        None => route.path.clone(),
    }
}

fn document(f: &Facts<'_>, body: Value) -> Value {
    let route = f.route;
    let raw_target = raw_target(f);

    let mut query: Map<String, Value> = Map::new();
    for (k, v) in &route.query {
        if let Some(Value::Array(vals)) = query.get_mut(k) {
            vals.push(Value::String(v.clone()));
        } else {
            query.insert(k.clone(), json!([v]));
        }
    }
    let query = Value::Object(query);

    let params: Map<String, Value> = route
        .params
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
        .collect();

    let id = f.identity;
    let certificate = match &id.certificate {
        Some(c) => serde_json::to_value(c.as_ref()).unwrap_or(Value::Null),
        None => Value::Null,
    };
    let auth_method = match id.auth_method {
        AuthMethod::Certificate => "certificate",
        AuthMethod::Token => "token",
    };

    let path_plain = path_plain(route);
    let path_arr: Vec<Value> = path_plain
        .split('/')
        .map(|s| Value::String(s.to_string()))
        .collect();

    json!({
        "request": {
            "method": f.method.as_str(),
            "path": route.path,
            "api_version": route.api_version,
            "query": query,
            "headers": lower_headers(f.headers),
            "body": body,
            "uri": raw_target,
        },
        "operation": {
            "id": route.op.id,
            "params": params,
            "resource": route.op.resource,
            "readonly": route.op.readonly,
        },
        "user": {
            "name": id.name,
            "groups": id.groups,
            "auth_method": auth_method,
            "scopes": id.scopes,
            "claims": id.claims,
            "certificate": certificate,
        },
        "client": {
            "address": f.client.ip().to_string(),
            "port": f.client.port(),
        },
        // opa-docker-authz compatibility.
        "Method": f.method.as_str(),
        "Path": raw_target,
        "PathPlain": path_plain,
        "PathArr": path_arr,
        "Query": query,
        "Headers": go_headers(f.headers),
        "Body": body,
        "User": id.name,
        "AuthMethod": match id.auth_method {
            AuthMethod::Certificate => "TLS",
            AuthMethod::Token => "token",
        },
        "BindMounts": bind_mounts(f.body.unwrap_or(&Value::Null)),
    })
}

fn is_credential(name: &str) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// `{lower-case name: value}`; repeated fields are joined with `, ` as HTTP
/// allows; values that are not UTF-8 are replaced lossily.
fn lower_headers(h: &HeaderMap) -> Value {
    let mut out: Map<String, Value> = Map::new();
    for name in h.keys() {
        if is_credential(name.as_str()) {
            continue;
        }
        let joined = h
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        out.insert(name.as_str().to_string(), Value::String(joined));
    }
    Value::Object(out)
}

/// `{Go-Canonical-Name: last value}`, as Docker's authorization plugin API
/// hands headers to opa-docker-authz.
fn go_headers(h: &HeaderMap) -> Value {
    let mut out: Map<String, Value> = Map::new();
    for name in h.keys() {
        if is_credential(name.as_str()) {
            continue;
        }
        if let Some(last) = h.get_all(name).iter().next_back() {
            out.insert(
                canonical_header_name(name.as_str()),
                Value::String(String::from_utf8_lossy(last.as_bytes()).into_owned()),
            );
        }
    }
    Value::Object(out)
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: upper-case the first letter and
/// every letter after a hyphen, lower-case the rest.
pub fn canonical_header_name(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// The host paths a ContainerCreate body bind-mounts: every `HostConfig.Binds`
/// entry whose source is an absolute path, and every `HostConfig.Mounts`
/// entry of type `bind`. Nulls and odd shapes yield nothing here; the
/// shipped policy also inspects the raw fields.
fn bind_mounts(body: &Value) -> Value {
    let mut out = Vec::new();
    let hc = body.get("HostConfig");
    if let Some(Value::Array(binds)) = hc.and_then(|h| h.get("Binds")) {
        for b in binds.iter().filter_map(Value::as_str) {
            if let Some((source, read_only)) = parse_bind(b) {
                out.push(mount_entry(source, read_only));
            }
        }
    }
    if let Some(Value::Array(mounts)) = hc.and_then(|h| h.get("Mounts")) {
        for m in mounts {
            if m.get("Type").and_then(Value::as_str) != Some("bind") {
                continue;
            }
            let source = m.get("Source").and_then(Value::as_str).unwrap_or("");
            let read_only = m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
            out.push(mount_entry(source, read_only));
        }
    }
    Value::Array(out)
}

fn mount_entry(source: &str, read_only: bool) -> Value {
    json!({
        "Source": source,
        "ReadOnly": read_only,
        "Resolved": resolve(source),
    })
}

/// Splits a `Binds` entry `src:dst[:opts]`; `Some` only for host paths
/// (absolute sources), not named volumes.
fn parse_bind(bind: &str) -> Option<(&str, bool)> {
    let mut parts = bind.split(':');
    let source = parts.next()?;
    if !source.starts_with('/') {
        return None;
    }
    let _dest = parts.next();
    let read_only = parts
        .next()
        .map(|opts| opts.split(',').any(|o| o == "ro" || o == "readonly"))
        .unwrap_or(false);
    Some((source, read_only))
}

/// The path the daemon will really mount, as far as this host can tell:
/// `.`/`..` removed lexically, then the longest existing prefix resolved
/// through symlinks and the rest appended. It is resolved on moat's host,
/// which is the engine's host when moat talks to a local socket.
fn resolve(source: &str) -> String {
    if !source.starts_with('/') {
        return String::new();
    }
    let clean = lexical_clean(Path::new(source));
    let mut existing = clean.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return lexical_clean(&out).to_string_lossy().into_owned();
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return clean.to_string_lossy().into_owned(),
        }
    }
}

/// Like Go's `filepath.Clean` for absolute paths.
fn lexical_clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_follow_go() {
        for (raw, want) in [
            ("content-type", "Content-Type"),
            ("x-registry-auth", "X-Registry-Auth"),
            ("user-agent", "User-Agent"),
            ("authz-user", "Authz-User"),
            ("host", "Host"),
        ] {
            assert_eq!(canonical_header_name(raw), want);
        }
    }

    #[test]
    fn binds_and_mounts_become_bind_mounts() {
        let body = json!({"HostConfig": {
            "Binds": ["/etc:/host-etc:ro", "named:/data", "/a/b/../../tmp:/t:rw,z"],
            "Mounts": [
                {"Type": "bind", "Source": "/", "Target": "/host"},
                {"Type": "volume", "Source": "vol", "Target": "/v"},
                {"Type": "bind", "Source": "/srv", "Target": "/s", "ReadOnly": true}
            ]
        }});
        let got = bind_mounts(&body);
        let sources: Vec<(&str, bool, &str)> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["Source"].as_str().unwrap(),
                    m["ReadOnly"].as_bool().unwrap(),
                    m["Resolved"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(sources.len(), 4);
        assert_eq!(sources[0].0, "/etc");
        assert!(sources[0].1);
        assert_eq!(sources[1].0, "/a/b/../../tmp");
        assert!(!sources[1].1);
        assert_eq!(
            sources[1].2,
            std::fs::canonicalize("/tmp").unwrap().to_str().unwrap()
        );
        assert_eq!(sources[2], ("/", false, "/"));
        assert!(sources[3].1);
    }

    #[test]
    fn null_binds_and_mounts_yield_nothing() {
        for body in [
            json!(null),
            json!({"HostConfig": null}),
            json!({"HostConfig": {"Binds": null, "Mounts": null}}),
        ] {
            assert_eq!(bind_mounts(&body), json!([]));
        }
    }

    #[test]
    fn resolve_follows_symlinks_of_missing_children() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("etc-link");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let src = format!("{}/nonexistent/x", link.display());
        let real_etc = std::fs::canonicalize("/etc").unwrap();
        assert_eq!(
            resolve(&src),
            format!("{}/nonexistent/x", real_etc.display())
        );
    }
}
