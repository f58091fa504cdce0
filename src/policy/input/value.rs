//! The input document built directly as regorus' value type, which is what
//! the gateway evaluates on every request.
//!
//! [`super::build`] (serde_json) stays the definition of the document (it is
//! what `moat policy eval` prints and `docs/policy-input.md` describes); this
//! builds the same value without the intermediate JSON tree and the serde
//! round trip, which were about half of a `/_ping`'s policy time. The field
//! names are allocated once per thread and shared by reference count. The
//! tests check that both builders give equal documents.

use std::collections::BTreeMap;

use http::HeaderMap;
use regorus::Value;

use super::{bind_mounts, canonical_header_name, is_credential, path_plain, raw_target};
use crate::identity::AuthMethod;
use crate::policy::Facts;

macro_rules! keys {
    ($($field:ident),* $(,)?) => {
        /// Every field name of the document, allocated once per thread.
        #[allow(non_snake_case)]
        struct Keys { $($field: Value),* }
        impl Keys {
            fn new() -> Self {
                Keys { $($field: Value::from(stringify!($field))),* }
            }
        }
    };
}

keys!(
    request,
    method,
    path,
    api_version,
    query,
    headers,
    body,
    uri,
    operation,
    id,
    params,
    resource,
    readonly,
    user,
    name,
    groups,
    auth_method,
    scopes,
    claims,
    certificate,
    client,
    address,
    port,
    subject,
    serial,
    fingerprint_sha256,
    not_after,
    Method,
    Path,
    PathPlain,
    PathArr,
    Query,
    Headers,
    Body,
    User,
    AuthMethod,
    BindMounts,
);

thread_local! {
    static KEYS: Keys = Keys::new();
}

/// Builds the document for `f` (see the module doc).
pub fn build(f: &Facts<'_>) -> Value {
    KEYS.with(|k| document(k, f))
}

fn obj(entries: Vec<(&Value, Value)>) -> Value {
    Value::from(
        entries
            .into_iter()
            .map(|(k, v)| (k.clone(), v))
            .collect::<BTreeMap<Value, Value>>(),
    )
}

fn strings(v: &[String]) -> Value {
    Value::from(
        v.iter()
            .map(|s| Value::from(s.as_str()))
            .collect::<Vec<_>>(),
    )
}

/// A serde_json value (the body, token claims, bind mounts) converted as
/// regorus itself converts JSON, so numbers keep their exact form.
fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        _ => match serde::Deserialize::deserialize(v) {
            Ok(v) => v,
            Err::<_, serde_json::Error>(_) => Value::from(v.clone()),
        },
    }
}

fn document(k: &Keys, f: &Facts<'_>) -> Value {
    let route = f.route;
    let raw_target = Value::from(raw_target(f));

    let mut query: BTreeMap<Value, Vec<Value>> = BTreeMap::new();
    for (name, v) in &route.query {
        query
            .entry(Value::from(name.as_str()))
            .or_default()
            .push(Value::from(v.as_str()));
    }
    let query = Value::from(
        query
            .into_iter()
            .map(|(n, vals)| (n, Value::from(vals)))
            .collect::<BTreeMap<_, _>>(),
    );
    let params = Value::from(
        route
            .params
            .iter()
            .map(|(n, v)| (Value::from(*n), Value::from(v.as_str())))
            .collect::<BTreeMap<_, _>>(),
    );

    let id = f.identity;
    let certificate = match &id.certificate {
        Some(c) => obj(vec![
            (&k.subject, Value::from(c.subject.as_str())),
            (&k.serial, Value::from(c.serial.as_str())),
            (
                &k.fingerprint_sha256,
                Value::from(c.fingerprint_sha256.as_str()),
            ),
            (&k.not_after, Value::from(c.not_after.as_str())),
        ]),
        None => Value::Null,
    };
    let (auth_method, compat_auth_method) = match id.auth_method {
        AuthMethod::Certificate => ("certificate", "TLS"),
        AuthMethod::Token => ("token", "token"),
    };
    let path_plain = path_plain(route);
    let path_arr = Value::from(path_plain.split('/').map(Value::from).collect::<Vec<_>>());
    let body = f.body.map_or(Value::Null, from_json);
    let bind_mounts = match f.body {
        Some(b) => from_json(&bind_mounts(b)),
        None => Value::new_array(),
    };
    let user_name = Value::from(id.name.as_str());
    let method = Value::from(f.method.as_str());

    obj(vec![
        (
            &k.request,
            obj(vec![
                (&k.method, method.clone()),
                (&k.path, Value::from(route.path.as_str())),
                (
                    &k.api_version,
                    route
                        .api_version
                        .as_deref()
                        .map_or(Value::Null, Value::from),
                ),
                (&k.query, query.clone()),
                (&k.headers, lower_headers(f.headers)),
                (&k.body, body.clone()),
                (&k.uri, raw_target.clone()),
            ]),
        ),
        (
            &k.operation,
            obj(vec![
                (&k.id, Value::from(route.op.id)),
                (&k.params, params),
                (&k.resource, Value::from(route.op.resource)),
                (&k.readonly, Value::Bool(route.op.readonly)),
            ]),
        ),
        (
            &k.user,
            obj(vec![
                (&k.name, user_name.clone()),
                (&k.groups, strings(&id.groups)),
                (&k.auth_method, Value::from(auth_method)),
                (&k.scopes, strings(&id.scopes)),
                (&k.claims, from_json(&id.claims)),
                (&k.certificate, certificate),
            ]),
        ),
        (
            &k.client,
            obj(vec![
                (&k.address, Value::from(f.client.ip().to_string())),
                (&k.port, Value::from(u64::from(f.client.port()))),
            ]),
        ),
        (&k.Method, method),
        (&k.Path, raw_target),
        (&k.PathPlain, Value::from(path_plain)),
        (&k.PathArr, path_arr),
        (&k.Query, query),
        (&k.Headers, go_headers(f.headers)),
        (&k.Body, body),
        (&k.User, user_name),
        (&k.AuthMethod, Value::from(compat_auth_method)),
        (&k.BindMounts, bind_mounts),
    ])
}

/// As [`super::lower_headers`].
fn lower_headers(h: &HeaderMap) -> Value {
    let mut out = BTreeMap::new();
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
        out.insert(Value::from(name.as_str()), Value::from(joined));
    }
    Value::from(out)
}

/// As [`super::go_headers`].
fn go_headers(h: &HeaderMap) -> Value {
    let mut out = BTreeMap::new();
    for name in h.keys() {
        if is_credential(name.as_str()) {
            continue;
        }
        if let Some(last) = h.get_all(name).iter().next_back() {
            out.insert(
                Value::from(canonical_header_name(name.as_str())),
                Value::from(String::from_utf8_lossy(last.as_bytes()).into_owned()),
            );
        }
    }
    Value::from(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{HeaderValue, Method, Uri};
    use serde_json::json;

    use super::*;
    use crate::classify::{BodyKind, Operation, Route};
    use crate::identity::{CertInfo, Identity};

    static OP: Operation = Operation {
        id: "ContainerCreate",
        resource: "containers",
        readonly: false,
        hijack: false,
        body: BodyKind::Inspect,
    };

    /// Both builders give the same document, field for field, for requests
    /// with and without body, query, headers, certificate and token claims.
    #[test]
    fn equals_the_json_document() {
        let cert = Arc::new(CertInfo {
            subject: "CN=dana,O=developer".into(),
            serial: "1f".into(),
            fingerprint_sha256: "ab".repeat(32),
            not_after: "2027-01-01T00:00:00Z".into(),
            user: Some("dana".into()),
            groups: vec!["developer".into()],
        });
        let body = json!({"Image": "alpine", "Cmd": ["sh", "-c", "true"], "Memory": 1073741824,
            "CpuShares": -1, "NanoCpus": 1.5, "Labels": {"a": "b"}, "Env": null,
            "HostConfig": {"Binds": ["/etc:/e:ro", "vol:/v"], "Privileged": false,
            "Mounts": [{"Type": "bind", "Source": "/srv", "ReadOnly": true}]}});
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        headers.insert("authorization", HeaderValue::from_static("Bearer secret"));
        headers.insert("x-registry-auth", HeaderValue::from_static("c2VjcmV0"));
        headers.insert("x-odd", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let routes = [
            Route {
                op: &OP,
                params: vec![("name", "web".into()), ("id", "abc".into())],
                api_version: Some("1.41".into()),
                path: "/containers/create".into(),
                query: vec![
                    ("name".into(), "web".into()),
                    ("filters".into(), "{}".into()),
                    ("name".into(), "other".into()),
                ],
                upstream: "/v1.41/containers/create?name=web".into(),
            },
            Route {
                op: &OP,
                params: vec![],
                api_version: None,
                path: "/_ping".into(),
                query: vec![],
                upstream: "/_ping".into(),
            },
        ];
        let identities = [
            Identity {
                name: "dana".into(),
                groups: vec!["developer".into(), "viewer".into()],
                auth_method: AuthMethod::Certificate,
                scopes: vec![],
                claims: serde_json::Value::Null,
                certificate: Some(cert.clone()),
                token_id: None,
            },
            Identity {
                name: "ci-bot".into(),
                groups: vec!["ci".into()],
                auth_method: AuthMethod::Token,
                scopes: vec!["build".into(), "push".into()],
                claims: json!({"sub": "ci-bot", "exp": 1900000000u64, "nbf": -5, "w": 0.25,
                               "groups": ["ci"], "nested": {"x": null, "y": true}}),
                certificate: Some(cert),
                token_id: Some("j1".into()),
            },
        ];
        let uris: [Uri; 2] = [
            "/v1.41/containers/create?name=web&filters=%7B%7D&name=other"
                .parse()
                .unwrap(),
            "/_ping".parse().unwrap(),
        ];
        let empty = HeaderMap::new();
        let mut n = 0;
        for route in &routes {
            for identity in &identities {
                for uri in &uris {
                    for h in [&headers, &empty] {
                        for b in [Some(&body), Some(&serde_json::Value::Null), None] {
                            for method in [Method::POST, Method::GET] {
                                let facts = Facts {
                                    method: &method,
                                    uri,
                                    headers: h,
                                    route,
                                    body: b,
                                    identity,
                                    client: "[::1]:40000".parse().unwrap(),
                                };
                                let want = Value::from(super::super::build(&facts));
                                assert_ne!(want, Value::Undefined);
                                assert_eq!(build(&facts), want, "{}", super::super::build(&facts));
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(n, 96);
    }
}
