//! The policy input document: what a Rego policy sees as `input`.
//!
//! Its shape is a public contract, documented field by field in
//! `docs/policy-input.md`. Two views of one request live side by side:
//! moat's own (`input.request`, `input.operation`, `input.user`,
//! `input.client`) and the flat fields of opa-docker-authz (`Method`, `Path`,
//! `Body`, `BindMounts`, …) so that policies written for that plugin run
//! unchanged. Credentials never appear in either.
//!
//! The document is described once, as the typed [`Input`]; it is converted
//! in one place each way: to JSON by serde_json ([`build`]: what `moat policy
//! eval` prints and the docs describe) and to regorus' value type by
//! [`value`] ([`build_value`]: what the gateway evaluates on every request).
//! A new field is one edit: a field of [`Input`] (or of a part of it) and
//! its value in [`Input::new`].

use std::path::{Component, Path, PathBuf};

use http::HeaderMap;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::Facts;
use crate::effective::fetch::{self, Fetch};
use crate::identity::{AuthMethod, CertInfo};
use crate::owner::Resource;

pub(crate) mod value;

/// Headers that carry credentials; they are removed from both header views.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "x-registry-auth",
    "x-registry-config",
];

/// Builds the input document for one request, as JSON.
pub fn build(f: &Facts<'_>) -> Value {
    let derived = Derived::new(f);
    // Serializing these types to JSON cannot fail (all map keys are
    // strings); fail closed all the same.
    serde_json::to_value(Input::new(f, &derived)).unwrap_or(Value::Null)
}

/// The same document as regorus' value type, as the gateway evaluates it,
/// converted directly (see [`value`]).
pub fn build_value(f: &Facts<'_>) -> regorus::Value {
    let derived = Derived::new(f);
    value::to_value(&Input::new(f, &derived))
}

/// The input document. Field order is the order `moat policy eval` prints.
#[derive(Serialize)]
#[allow(non_snake_case)] // the opa-docker-authz fields are spelled as it spells them
pub struct Input<'a> {
    pub request: RequestInput<'a>,
    pub operation: OperationInput<'a>,
    pub user: UserInput<'a>,
    pub client: ClientInput,
    /// The objects the request names, resolved through the engine, with
    /// their owners and security facts (the `resolve` stage).
    pub resources: &'a [Resource],
    // opa-docker-authz compatibility.
    pub Method: &'a str,
    /// The request target as the client sent it.
    pub Path: &'a str,
    /// The decoded path as the daemon saw it, version prefix included.
    pub PathPlain: &'a str,
    pub PathArr: Segments<'a>,
    pub Query: Shared<'a, Query<'a>>,
    pub Headers: GoHeaders<'a>,
    pub Body: Shared<'a, Value>,
    pub User: &'a str,
    /// `TLS` or `token`.
    pub AuthMethod: &'static str,
    pub BindMounts: &'a [BindMount],
}

/// `input.request`.
#[derive(Serialize)]
pub struct RequestInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub api_version: Option<&'a str>,
    pub query: Shared<'a, Query<'a>>,
    pub headers: LowerHeaders<'a>,
    pub body: Shared<'a, Value>,
    pub uri: &'a str,
}

/// `input.operation`.
#[derive(Serialize)]
pub struct OperationInput<'a> {
    pub id: &'static str,
    pub params: Params<'a>,
    pub resource: &'static str,
    pub readonly: bool,
    /// Every address the engine will contact because of the request
    /// ([`fetch::fetches`]): URLs it downloads, registries, log servers,
    /// file servers, swarm managers. Literal, never resolved.
    pub fetches: &'a [Fetch],
}

/// `input.user`.
#[derive(Serialize)]
pub struct UserInput<'a> {
    pub name: &'a str,
    pub groups: &'a [String],
    /// `certificate` or `token`.
    pub auth_method: &'static str,
    pub scopes: &'a [String],
    pub claims: &'a Value,
    pub certificate: Option<&'a CertInfo>,
    /// The kernel's credentials of a local client (`listen.unix`).
    pub local: Option<LocalInput>,
}

/// `input.user.local`.
#[derive(Serialize)]
pub struct LocalInput {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// `input.client`.
#[derive(Serialize)]
pub struct ClientInput {
    pub address: String,
    pub port: u16,
}

/// What the document derives from the facts and owns, so that [`Input`]
/// can borrow it (and parts appearing twice are the same value).
pub struct Derived<'a> {
    raw_target: String,
    path_plain: String,
    query: Query<'a>,
    bind_mounts: Vec<BindMount>,
    fetches: Vec<Fetch>,
}

/// The body when there is none.
static NO_BODY: Value = Value::Null;

impl<'a> Derived<'a> {
    pub fn new(f: &Facts<'a>) -> Self {
        Derived {
            raw_target: raw_target(f),
            path_plain: path_plain(f.route),
            query: Query::new(&f.route.query),
            bind_mounts: f.body.map(bind_mounts).unwrap_or_default(),
            fetches: fetch::fetches(f.route.op.id, &f.route.query, &f.route.params, f.body),
        }
    }
}

impl<'a> Input<'a> {
    /// The document for `f`: every field of `input` is given its value here.
    pub fn new(f: &Facts<'a>, d: &'a Derived<'a>) -> Self {
        let route = f.route;
        let id = f.identity;
        let body = Shared(f.body.unwrap_or(&NO_BODY));
        let query = Shared(&d.query);
        let (auth_method, compat_auth_method) = match id.auth_method {
            AuthMethod::Certificate => ("certificate", "TLS"),
            AuthMethod::Token => ("token", "token"),
            AuthMethod::Peer => ("peer", "peer"),
        };
        Input {
            request: RequestInput {
                method: f.method.as_str(),
                path: &route.path,
                api_version: f.api_version,
                query,
                headers: LowerHeaders(f.headers),
                body,
                uri: &d.raw_target,
            },
            operation: OperationInput {
                id: route.op.id.as_str(),
                params: Params(&route.params),
                resource: route.op.resource,
                readonly: route.op.readonly,
                fetches: &d.fetches,
            },
            user: UserInput {
                name: &id.name,
                groups: &id.groups,
                auth_method,
                scopes: &id.scopes,
                claims: &id.claims,
                certificate: id.certificate.as_deref(),
                local: id.local.map(|c| LocalInput {
                    uid: c.uid,
                    gid: c.gid,
                    pid: c.pid,
                }),
            },
            client: match id.local {
                // A local socket has no address: `unix`, port 0.
                Some(_) => ClientInput {
                    address: "unix".to_owned(),
                    port: 0,
                },
                None => ClientInput {
                    address: f.client.ip().to_string(),
                    port: f.client.port(),
                },
            },
            resources: f.resources,
            Method: f.method.as_str(),
            Path: &d.raw_target,
            PathPlain: &d.path_plain,
            PathArr: Segments(&d.path_plain),
            Query: query,
            Headers: GoHeaders(f.headers),
            Body: body,
            User: &id.name,
            AuthMethod: compat_auth_method,
            BindMounts: &d.bind_mounts,
        }
    }
}

/// A part of the document that appears in more than one place (the body,
/// the query): serialized as itself, but converted to regorus' value type
/// once and shared by reference count (see [`value`]).
pub struct Shared<'a, T: ?Sized>(pub &'a T);

impl<T: ?Sized> Clone for Shared<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for Shared<'_, T> {}

impl<T: Serialize + ?Sized> Serialize for Shared<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(value::SHARED, self.0)
    }
}

/// The query, `{name: [values]}`, names in order of first appearance.
pub struct Query<'a>(Vec<(&'a str, Vec<&'a str>)>);

impl<'a> Query<'a> {
    fn new(pairs: &'a [(String, String)]) -> Self {
        let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
        for (k, v) in pairs {
            match out.iter_mut().find(|(name, _)| name == k) {
                Some((_, vals)) => vals.push(v),
                None => out.push((k, vec![v])),
            }
        }
        Query(out)
    }
}

impl Serialize for Query<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, vals) in &self.0 {
            m.serialize_entry(k, vals)?;
        }
        m.end()
    }
}

/// The route's path parameters, `{name: value}`.
pub struct Params<'a>(&'a [(&'static str, String)]);

impl Serialize for Params<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A path split at `/` (`PathArr`).
pub struct Segments<'a>(&'a str);

impl Serialize for Segments<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for part in self.0.split('/') {
            seq.serialize_element(part)?;
        }
        seq.end()
    }
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

fn is_credential(name: &str) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// `{lower-case name: value}` (`input.request.headers`); repeated fields
/// are joined with `, ` as HTTP allows; values that are not UTF-8 are
/// replaced lossily.
pub struct LowerHeaders<'a>(&'a HeaderMap);

impl Serialize for LowerHeaders<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.0;
        let mut m = s.serialize_map(None)?;
        for name in h.keys() {
            if is_credential(name.as_str()) {
                continue;
            }
            let mut values = h.get_all(name).iter();
            let joined = match (values.next(), values.next()) {
                (Some(only), None) => String::from_utf8_lossy(only.as_bytes()).into_owned(),
                _ => h
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            m.serialize_entry(name.as_str(), &joined)?;
        }
        m.end()
    }
}

/// `{Go-Canonical-Name: last value}` (`Headers`), as Docker's authorization
/// plugin API hands headers to opa-docker-authz.
pub struct GoHeaders<'a>(&'a HeaderMap);

impl Serialize for GoHeaders<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.0;
        let mut m = s.serialize_map(None)?;
        for name in h.keys() {
            if is_credential(name.as_str()) {
                continue;
            }
            if let Some(last) = h.get_all(name).iter().next_back() {
                m.serialize_entry(
                    &canonical_header_name(name.as_str()),
                    &String::from_utf8_lossy(last.as_bytes()),
                )?;
            }
        }
        m.end()
    }
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

/// One host path a ContainerCreate body bind-mounts (`BindMounts`).
#[derive(Debug, PartialEq, Serialize)]
#[allow(non_snake_case)] // spelled as opa-docker-authz spells them
pub struct BindMount {
    pub Source: String,
    pub ReadOnly: bool,
    /// The path the daemon will really mount, as far as moat's host can
    /// tell ([`resolve`]).
    pub Resolved: String,
}

/// The host paths a ContainerCreate body bind-mounts: every `HostConfig.Binds`
/// entry whose source is an absolute path, and every `HostConfig.Mounts`
/// entry of type `bind`. Nulls and odd shapes yield nothing here; the
/// shipped policy also inspects the raw fields.
fn bind_mounts(body: &Value) -> Vec<BindMount> {
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
    out
}

fn mount_entry(source: &str, read_only: bool) -> BindMount {
    BindMount {
        Source: source.to_string(),
        ReadOnly: read_only,
        Resolved: resolve(source),
    }
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
    use serde_json::json;

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
        let got = serde_json::to_value(bind_mounts(&body)).unwrap();
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
            assert_eq!(serde_json::to_value(bind_mounts(&body)).unwrap(), json!([]));
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
