//! One object looked up through the engine's inspect endpoint, by whatever
//! reference the client gave (a name, a full id, an id prefix): the engine
//! resolves it exactly as it will when the request is forwarded.
//!
//! Over the existing upstream client ([`Upstream`]), without a version
//! prefix (the engine's newest), every time: there is no cache. An inspect
//! request is its own lookup: its path and query as forwarded, and the
//! engine's [`Reply`] is kept for the client.

use http::{Method, StatusCode};
use serde_json::Value;

use crate::forward::{EngineReply, ForwardError, Upstream};
use crate::owner::Kind;

/// The most of an inspect document moat reads (a container's holds its
/// environment and labels; a few KB in practice).
const MAX_INSPECT_BYTES: usize = 4 << 20;

/// What the engine answered.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The inspect document.
    Found(Value),
    /// The engine's refusal of the reference (404 for an unknown object,
    /// 400 for an ambiguous id prefix, …): its status and message, which
    /// the client gets as the engine's own answer.
    Refused { status: StatusCode, message: String },
}

/// Why a lookup failed: for the log only, never for the client.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) String);

/// The inspect endpoint of `kind` for `reference` (already checked by
/// [`valid_reference`]), percent-encoded.
pub(crate) fn inspect_path(kind: Kind, reference: &str) -> String {
    let r = encode(reference);
    match kind {
        Kind::Container => format!("/containers/{r}/json"),
        Kind::Exec => format!("/exec/{r}/json"),
        Kind::Volume => format!("/volumes/{r}"),
        Kind::Network => format!("/networks/{r}"),
    }
}

/// Whether a reference can be looked up as one path segment: not empty, no
/// `/` (a container name's one leading `/` is stripped by [`lookup_form`]),
/// not `.` or `..`, no control characters. Names and ids never are.
pub(crate) fn valid_reference(kind: Kind, reference: &str) -> bool {
    let r = lookup_form(kind, reference);
    !r.is_empty() && r != "." && r != ".." && !r.contains('/') && !r.chars().any(char::is_control)
}

/// The reference as moat asks for it: the engine stores container names
/// with a leading `/` and accepts them either way.
pub(crate) fn lookup_form(kind: Kind, reference: &str) -> &str {
    match kind {
        Kind::Container => reference.strip_prefix('/').unwrap_or(reference),
        _ => reference,
    }
}

/// Percent-encodes everything but `[A-Za-z0-9_.-]`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The engine's whole answer to a lookup: kept as it is when the request is
/// itself the lookup (an inspect), so that the client gets the very answer
/// the policy decided on, with one engine round trip instead of two.
pub type Reply = EngineReply;

/// Asks the engine about one object.
pub(crate) async fn inspect(
    upstream: &Upstream,
    kind: Kind,
    reference: &str,
) -> Result<Answer, Failed> {
    let path = inspect_path(kind, lookup_form(kind, reference));
    let reply = get(upstream, &path).await?;
    answer(kind, reference, &path, &reply)
}

/// GETs `path` (a path and query as forwarded) from the engine, reading at
/// most [`MAX_INSPECT_BYTES`] of the answer.
pub(crate) async fn get(upstream: &Upstream, path: &str) -> Result<Reply, Failed> {
    upstream
        .call(Method::GET, path, None, MAX_INSPECT_BYTES)
        .await
        .map_err(|e| match e {
            ForwardError::Unreachable => Failed("the engine is not reachable".into()),
            e => Failed(format!("GET {path}: {e}")),
        })
}

/// What the engine's `reply` to the lookup of `reference` says.
pub(crate) fn answer(
    kind: Kind,
    reference: &str,
    path: &str,
    reply: &Reply,
) -> Result<Answer, Failed> {
    let status = reply.status;
    if status.is_client_error() {
        let message = reply
            .message()
            .unwrap_or_else(|| format!("No such {kind}: {reference}"));
        return Ok(Answer::Refused { status, message });
    }
    if !status.is_success() {
        return Err(Failed(format!("GET {path} answered {status}")));
    }
    match serde_json::from_slice::<Kept>(&reply.body) {
        Ok(kept) => Ok(Answer::Found(kept.into_value())),
        Err(e) => Err(Failed(format!("GET {path}: {e}"))),
    }
}

/// The fields of an inspect document that moat reads (`facts`, the ids,
/// names and owner labels), parsed alone: the rest of the document (a
/// container's state, network settings, environment, …) is skipped
/// without being built, which was a fifth of moat's CPU on an inspect
/// request (issue 17). A document that is not a JSON object, or that names
/// one of these fields twice, is refused (the lookup fails: 503).
#[derive(serde::Deserialize)]
struct Kept {
    #[serde(rename = "Id")]
    id: Option<Value>,
    /// An exec's id.
    #[serde(rename = "ID")]
    exec_id: Option<Value>,
    #[serde(rename = "Name")]
    name: Option<Value>,
    #[serde(rename = "Config")]
    config: Option<KeptConfig>,
    #[serde(rename = "HostConfig")]
    host_config: Option<KeptObject>,
    #[serde(rename = "Mounts")]
    mounts: Option<Value>,
    #[serde(rename = "ContainerID")]
    container_id: Option<Value>,
    #[serde(rename = "ProcessConfig")]
    process_config: Option<Value>,
    #[serde(rename = "Driver")]
    driver: Option<Value>,
    #[serde(rename = "Options")]
    options: Option<Value>,
    #[serde(rename = "Labels")]
    labels: Option<Value>,
}

/// Of a container's `HostConfig`, the fields its facts are read from
/// (`facts::container`); the rest is skipped.
#[derive(serde::Deserialize)]
struct KeptObject(#[serde(deserialize_with = "host_config")] serde_json::Map<String, Value>);

/// The `HostConfig` fields `facts::container` reads.
const HOST_CONFIG_FIELDS: [&str; 10] = [
    "Privileged",
    "NetworkMode",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "UsernsMode",
    "CgroupnsMode",
    "Binds",
    "Devices",
    "CapAdd",
];

/// A `HostConfig` object with only [`HOST_CONFIG_FIELDS`] built.
fn host_config<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, Value>, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = serde_json::Map<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a HostConfig object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut kept = serde_json::Map::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if HOST_CONFIG_FIELDS.contains(&key.as_ref()) {
                    let value = map.next_value::<Value>()?;
                    if kept.insert(key.into_owned(), value).is_some() {
                        return Err(serde::de::Error::custom("a HostConfig field named twice"));
                    }
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(kept)
        }
    }
    d.deserialize_map(Visit)
}

/// Of a container's `Config`, its labels (the owner).
#[derive(serde::Deserialize)]
struct KeptConfig {
    #[serde(rename = "Labels")]
    labels: Option<Value>,
}

impl Kept {
    /// The kept fields as a JSON object, under their names in the document.
    fn into_value(self) -> Value {
        let mut doc = serde_json::Map::new();
        let config = self.config.map(|c| {
            let mut config = serde_json::Map::new();
            if let Some(l) = c.labels {
                config.insert("Labels".into(), l);
            }
            Value::Object(config)
        });
        let fields = [
            ("Id", self.id),
            ("ID", self.exec_id),
            ("Name", self.name),
            ("Config", config),
            ("HostConfig", self.host_config.map(|h| Value::Object(h.0))),
            ("Mounts", self.mounts),
            ("ContainerID", self.container_id),
            ("ProcessConfig", self.process_config),
            ("Driver", self.driver),
            ("Options", self.options),
            ("Labels", self.labels),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                doc.insert(name.into(), v);
            }
        }
        Value::Object(doc)
    }
}

/// Whether an id the engine gave can be written into a path and a body as
/// it is (hex ids; volume names).
pub(crate) fn usable_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_one_encoded_path_segment() {
        assert_eq!(inspect_path(Kind::Container, "web"), "/containers/web/json");
        assert_eq!(inspect_path(Kind::Volume, "a b"), "/volumes/a%20b");
        assert_eq!(inspect_path(Kind::Network, "n:1"), "/networks/n%3A1");
        assert_eq!(inspect_path(Kind::Exec, "abc"), "/exec/abc/json");
        assert_eq!(lookup_form(Kind::Container, "/web"), "web");
        assert_eq!(lookup_form(Kind::Volume, "/web"), "/web");
    }

    #[test]
    fn references_that_are_no_name_or_id_are_invalid() {
        assert!(valid_reference(Kind::Container, "/web"));
        assert!(valid_reference(Kind::Container, "web"));
        for bad in ["", "/", "a/b", ".", "..", "//web", "a\nb"] {
            assert!(!valid_reference(Kind::Container, bad), "{bad:?}");
        }
        assert!(!valid_reference(Kind::Volume, "/data"));
    }

    #[test]
    fn only_plain_ids_are_written_back() {
        assert!(usable_id(&"a".repeat(64)));
        assert!(usable_id("my_vol.1-x"));
        for bad in ["", ".", "..", "a/b", "a b", "a?b"] {
            assert!(!usable_id(bad), "{bad:?}");
        }
    }

    fn reply(body: &str) -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    /// An answer moat would read otherwise than a JSON reader that keeps
    /// the last of two keys (or one that is no object at all) fails the
    /// lookup, which refuses the request: never a decision on one reading
    /// of a document while the engine meant another.
    #[test]
    fn an_answer_that_is_no_object_or_names_a_field_twice_fails_the_lookup() {
        for body in [
            "[]",
            "\"x\"",
            "null",
            "{\"Id\":\"a\",\"Id\":\"b\"}",
            "{\"HostConfig\":{\"Privileged\":false,\"Privileged\":true}}",
            "{\"Config\":{\"Labels\":{},\"Labels\":{\"io.moat.owner\":\"ada\"}}}",
            "{\"HostConfig\":\"host\"}",
            "{\"Id\":\"a\"",
        ] {
            let r = answer(Kind::Container, "c", "/containers/c/json", &reply(body));
            assert!(r.is_err(), "{body}: {r:?}");
        }
        // Fields moat does not read may be anything.
        let ok = "{\"Id\":\"a\",\"State\":[1,{\"x\":null}],\"State\":7,\"HostConfig\":null}";
        let Ok(Answer::Found(doc)) = answer(Kind::Container, "c", "/c", &reply(ok)) else {
            panic!("{ok}");
        };
        assert_eq!(doc, serde_json::json!({"Id": "a"}));
    }
}
