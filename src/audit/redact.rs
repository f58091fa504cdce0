//! Secrets never reach the audit log: what is removed from request bodies
//! and parameters before a record is queued (audit.level `request`).
//!
//! The Docker daemon decodes JSON keys case-insensitively (Go's
//! `encoding/json`), so keys are matched case-insensitively here too: `env`
//! is as much an environment as `Env`.

use std::collections::BTreeMap;

use serde_json::Value;

/// What a removed value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Keys whose value is replaced wholesale, wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "data",
    "authorization",
    "x-registry-auth",
    "x-registry-config",
    "registryauth",
    "auth",
    "password",
    "identitytoken",
    "registrytoken",
    "jointoken",
    "unlockkey",
];

/// Keys whose value is a `NAME=value` list: the names are kept.
const ENV_KEYS: &[&str] = &["env"];

/// Operations whose whole body is a secret.
const SECRET_BODY_OPS: &[&str] = &["SystemAuth"];

/// Operations whose body is itself a `NAME=value` list.
const ENV_BODY_OPS: &[&str] = &["PluginSet"];

/// Parameters (query or header) never recorded.
const SECRET_PARAMS: &[&str] = &["x-registry-auth", "x-registry-config", "authorization"];

/// The body as it may be recorded for operation `op_id`:
/// - `/auth` (`SystemAuth`): the whole body is replaced by `"<redacted>"`;
/// - `Env` lists (and a `PluginSet` body): `"DB_PASSWORD=<redacted>"`, the
///   name kept; entries without `=` are names only and kept;
/// - secret/config `Data`, `Authorization`, `X-Registry-Auth`, registry
///   `auth`/`password`/`identitytoken`/`registrytoken`, swarm `JoinToken` and
///   `UnlockKey`: the value is replaced by `"<redacted>"`, at any depth.
pub fn redact(op_id: &str, body: &Value) -> Value {
    if SECRET_BODY_OPS.contains(&op_id) {
        return Value::String(REDACTED.to_owned());
    }
    if ENV_BODY_OPS.contains(&op_id) {
        if let Value::Array(items) = body {
            return env_list(items);
        }
    }
    walk(body)
}

/// Removes header-like secrets from the recorded parameters and the values
/// of `buildargs` (build arguments often carry tokens), keeping their names.
pub fn redact_params(params: &mut BTreeMap<String, String>) {
    params.retain(|k, _| !SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)));
    for (k, v) in params.iter_mut() {
        if k.eq_ignore_ascii_case("buildargs") {
            *v = build_args_names(v);
        }
    }
}

/// The policy input document as it may be recorded (audit.level
/// `request`): its bodies (`request.body`, `Body`) redacted as [`redact`]
/// does, `buildargs` values removed from the query (`request.query`,
/// `Query`) and from the raw request targets (`request.uri`, `Path`).
/// Credentials never reach the input (moat removes them from its headers).
pub fn redact_input(op_id: &str, input: &mut Value) {
    for ptr in ["/request/body", "/Body"] {
        if let Some(body) = input.pointer_mut(ptr) {
            if !body.is_null() {
                *body = redact(op_id, body);
            }
        }
    }
    for ptr in ["/request/query", "/Query"] {
        if let Some(Value::Object(query)) = input.pointer_mut(ptr) {
            for (k, values) in query.iter_mut() {
                if k.eq_ignore_ascii_case("buildargs") {
                    if let Value::Array(values) = values {
                        for v in values.iter_mut() {
                            if let Value::String(s) = v {
                                *s = build_args_names(s);
                            }
                        }
                    }
                }
            }
        }
    }
    for ptr in ["/request/uri", "/Path"] {
        if let Some(Value::String(uri)) = input.pointer_mut(ptr) {
            *uri = redact_uri(uri);
        }
    }
}

/// A request target as it may be recorded: the values of `buildargs`
/// query parameters keep only the argument names. A query that cannot be
/// parsed but mentions `buildargs` is replaced whole.
pub fn redact_uri(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    if !query.to_ascii_lowercase().contains("build") && !query.contains('%') {
        return uri.to_owned();
    }
    match crate::classify::parse_query(query) {
        Ok(mut pairs) => {
            if !pairs
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("buildargs"))
            {
                return uri.to_owned();
            }
            for (k, v) in pairs.iter_mut() {
                if k.eq_ignore_ascii_case("buildargs") {
                    *v = build_args_names(v);
                }
            }
            format!("{path}?{}", crate::classify::encode_query(&pairs))
        }
        Err(_) => format!("{path}?{REDACTED}"),
    }
}

/// `{"NAME": "value"}` as `{"NAME": "<redacted>"}`; anything else whole.
fn build_args_names(v: &str) -> String {
    match serde_json::from_str::<serde_json::Map<String, Value>>(v) {
        Ok(args) => {
            let names: serde_json::Map<String, Value> = args
                .into_iter()
                .map(|(name, _)| (name, Value::String(REDACTED.to_owned())))
                .collect();
            Value::Object(names).to_string()
        }
        Err(_) => REDACTED.to_owned(),
    }
}

fn walk(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_one_of(k, SECRET_KEYS) {
                        Value::String(REDACTED.to_owned())
                    } else if is_one_of(k, ENV_KEYS) {
                        match v {
                            Value::Array(items) => env_list(items),
                            Value::Null => Value::Null,
                            _ => Value::String(REDACTED.to_owned()),
                        }
                    } else {
                        walk(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(walk).collect()),
        other => other.clone(),
    }
}

fn env_list(items: &[Value]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|item| match item {
                Value::String(s) => match s.split_once('=') {
                    Some((name, _)) => Value::String(format!("{name}={REDACTED}")),
                    None => Value::String(s.clone()),
                },
                _ => Value::String(REDACTED.to_owned()),
            })
            .collect(),
    )
}

fn is_one_of(key: &str, set: &[&str]) -> bool {
    set.iter().any(|s| key.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_table() {
        let cases = [
            (
                "ContainerCreate",
                json!({"Image": "alpine", "Env": ["DB_PASSWORD=hunter2", "A=b=c", "PLAIN"], "Cmd": ["sh"]}),
                json!({"Image": "alpine", "Env": ["DB_PASSWORD=<redacted>", "A=<redacted>", "PLAIN"], "Cmd": ["sh"]}),
            ),
            (
                "ContainerCreate",
                json!({"env": ["X=1"], "HostConfig": {"Binds": null}}),
                json!({"env": ["X=<redacted>"], "HostConfig": {"Binds": null}}),
            ),
            (
                "ContainerCreate",
                json!({"Env": null}),
                json!({"Env": null}),
            ),
            (
                "ContainerCreate",
                json!({"Env": "X=1"}),
                json!({"Env": "<redacted>"}),
            ),
            (
                "ContainerCreate",
                json!({"Env": [7]}),
                json!({"Env": ["<redacted>"]}),
            ),
            (
                "ContainerExec",
                json!({"Cmd": ["id"], "Env": ["TOKEN=abc"]}),
                json!({"Cmd": ["id"], "Env": ["TOKEN=<redacted>"]}),
            ),
            (
                "ServiceCreate",
                json!({"TaskTemplate": {"ContainerSpec": {"Image": "nginx", "Env": ["K=v"]}}}),
                json!({"TaskTemplate": {"ContainerSpec": {"Image": "nginx", "Env": ["K=<redacted>"]}}}),
            ),
            (
                "SystemAuth",
                json!({"username": "u", "password": "p", "identitytoken": "t"}),
                json!("<redacted>"),
            ),
            ("SystemAuth", json!(null), json!("<redacted>")),
            (
                "SecretCreate",
                json!({"Name": "db", "Data": "aHVudGVyMg=="}),
                json!({"Name": "db", "Data": "<redacted>"}),
            ),
            (
                "ConfigCreate",
                json!({"Name": "cfg", "data": "eA=="}),
                json!({"Name": "cfg", "data": "<redacted>"}),
            ),
            (
                "PluginSet",
                json!(["DEBUG=1", "SECRET=x"]),
                json!(["DEBUG=<redacted>", "SECRET=<redacted>"]),
            ),
            (
                "SwarmJoin",
                json!({"RemoteAddrs": ["10.0.0.1"], "JoinToken": "SWMTKN-1-x"}),
                json!({"RemoteAddrs": ["10.0.0.1"], "JoinToken": "<redacted>"}),
            ),
            (
                "SwarmUnlock",
                json!({"UnlockKey": "SWMKEY-1-x"}),
                json!({"UnlockKey": "<redacted>"}),
            ),
            (
                "ContainerCreate",
                json!({"Labels": {"Authorization": "Bearer x"}}),
                json!({"Labels": {"Authorization": "<redacted>"}}),
            ),
            (
                "ImageList",
                json!([{"auth": "dXNlcjpwYXNz", "serveraddress": "r.example"}]),
                json!([{"auth": "<redacted>", "serveraddress": "r.example"}]),
            ),
        ];
        for (op, input, want) in cases {
            assert_eq!(redact(op, &input), want, "{op}: {input}");
        }
    }

    #[test]
    fn params_lose_registry_auth_and_build_arg_values() {
        let mut p = BTreeMap::from([
            ("X-Registry-Auth".to_owned(), "eyJ1c2VyIjoicCJ9".to_owned()),
            ("authorization".to_owned(), "Bearer t".to_owned()),
            ("fromImage".to_owned(), "alpine".to_owned()),
            (
                "buildargs".to_owned(),
                r#"{"NPM_TOKEN":"s3cret"}"#.to_owned(),
            ),
        ]);
        redact_params(&mut p);
        assert_eq!(
            p,
            BTreeMap::from([
                ("fromImage".to_owned(), "alpine".to_owned()),
                (
                    "buildargs".to_owned(),
                    r#"{"NPM_TOKEN":"<redacted>"}"#.to_owned()
                ),
            ])
        );
        let mut bad = BTreeMap::from([("buildargs".to_owned(), "not json".to_owned())]);
        redact_params(&mut bad);
        assert_eq!(bad["buildargs"], REDACTED);
    }

    /// `docker build --build-arg NPM_TOKEN=...` put the token in the audit
    /// log through the recorded request target.
    #[test]
    fn build_arg_values_do_not_reach_the_audit_through_the_uri() {
        let cases = [
            (
                "/v1.41/build?t=x&buildargs=%7B%22NPM_TOKEN%22%3A%22s3cret%22%7D",
                "/v1.41/build?t=x&buildargs=%7B%22NPM_TOKEN%22%3A%22%3Credacted%3E%22%7D",
            ),
            // An escaped key is the same key to the daemon.
            (
                "/build?build%61rgs=%7B%22A%22%3A%22s3cret%22%7D",
                "/build?buildargs=%7B%22A%22%3A%22%3Credacted%3E%22%7D",
            ),
            (
                "/build?buildargs=not-json",
                "/build?buildargs=%3Credacted%3E",
            ),
            ("/build?buildargs=%zz", "/build?<redacted>"),
            ("/containers/json?all=1", "/containers/json?all=1"),
            ("/_ping", "/_ping"),
        ];
        for (uri, want) in cases {
            let got = redact_uri(uri);
            assert_eq!(got, want, "{uri}");
            assert!(!got.contains("s3cret"), "{got}");
        }
    }

    #[test]
    fn recorded_input_loses_secrets_in_body_query_and_target() {
        let mut input = serde_json::json!({
            "request": {
                "uri": "/build?buildargs=%7B%22T%22%3A%22s3cret%22%7D",
                "query": {"buildargs": ["{\"T\":\"s3cret\"}"]},
                "body": null
            },
            "Path": "/build?buildargs=%7B%22T%22%3A%22s3cret%22%7D",
            "Query": {"buildargs": ["{\"T\":\"s3cret\"}"]},
            "Body": null
        });
        redact_input("ImageBuild", &mut input);
        assert!(!input.to_string().contains("s3cret"), "{input}");
        assert_eq!(
            input["request"]["query"]["buildargs"][0],
            r#"{"T":"<redacted>"}"#
        );

        let mut input = serde_json::json!({
            "request": {"uri": "/containers/create", "query": {}, "body": {"Image": "x", "Env": ["K=s3cret"]}},
            "Path": "/containers/create", "Query": {}, "Body": {"Image": "x", "Env": ["K=s3cret"]}
        });
        redact_input("ContainerCreate", &mut input);
        assert!(!input.to_string().contains("s3cret"), "{input}");
        assert_eq!(input["Body"]["Env"][0], "K=<redacted>");
    }
}
