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
            *v = match serde_json::from_str::<serde_json::Map<String, Value>>(v) {
                Ok(args) => {
                    let names: serde_json::Map<String, Value> = args
                        .into_iter()
                        .map(|(name, _)| (name, Value::String(REDACTED.to_owned())))
                        .collect();
                    Value::Object(names).to_string()
                }
                Err(_) => REDACTED.to_owned(),
            };
        }
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
}
