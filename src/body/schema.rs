//! Canonical key spellings. The daemon decodes JSON into Go structs, whose
//! field names match keys case-insensitively, so `{"hostconfig":
//! {"privileged": true}}` is a privileged container to the daemon. moat
//! gives the policy (and the engine) the canonical spelling wherever a key
//! could reach a Go field:
//!
//! - At a position the Engine API swagger (v1.41 and newest, merged; see
//!   `tools/gen_body_schema.py` and the generated `schema_table.rs`)
//!   describes as a struct, a key that folds-equal to one of that struct's
//!   fields but is spelled differently is rewritten to the field's spelling
//!   (docker-py sends `detachKeys`; the daemon reads it as `DetachKeys`).
//!   Two keys of one object that fold-equal were already refused by the
//!   parser, so the rewrite never merges keys.
//! - Everywhere except map positions (swagger `additionalProperties`, such as
//!   `Labels`, `DriverOpts`, `Options`, whose keys are data), a key that
//!   folds-equal to ANY property name of the API but matches none of their
//!   spellings exactly is refused: which field it reaches (if any) is not
//!   known there, so it cannot be rewritten. This backstop fails closed where the
//!   swagger is incomplete or the operation has no documented body.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::json::fold_key;
use super::BodyError;

#[path = "schema_table.rs"]
mod table;

/// One schema position.
#[derive(Debug)]
pub(super) enum Node {
    /// Not described (scalar, or an object of unknown shape).
    Any,
    /// A Go struct: its fields (sorted) and the node of each value.
    Struct(&'static [(&'static str, u16)]),
    /// A Go map: any key; the node of each value.
    Map(u16),
    /// An array: the node of each item.
    Array(u16),
}

/// Where a body's schema starts: the request-body schema of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaRoot {
    node: u16,
    op: &'static str,
}

impl SchemaRoot {
    /// No documented schema: only the API-wide backstop applies.
    pub const ANY: SchemaRoot = SchemaRoot { node: 0, op: "" };

    /// The request-body schema of an operation id (`ContainerCreate`, …);
    /// [`SchemaRoot::ANY`] for an operation without a documented JSON body.
    pub fn for_operation(id: &str) -> SchemaRoot {
        table::ROOTS
            .iter()
            .find(|(op, _)| *op == id)
            .map_or(SchemaRoot::ANY, |(op, n)| SchemaRoot { node: *n, op })
    }

    fn is_struct(self) -> bool {
        matches!(node(self.node), Node::Struct(_))
    }
}

fn node(i: u16) -> &'static Node {
    table::NODES.get(usize::from(i)).unwrap_or(&Node::Any)
}

/// Folded name -> the spellings the backstop accepts: those of the API's
/// property names with that fold that start with an upper-case letter (the
/// style of every request struct), or all of them when none does. The
/// lower-case spellings of response-only structs (`ProcessConfig.privileged`)
/// are thereby not accepted where the position is not known.
fn known_folds() -> &'static HashMap<String, Vec<&'static str>> {
    static FOLDS: OnceLock<HashMap<String, Vec<&'static str>>> = OnceLock::new();
    FOLDS.get_or_init(|| {
        let mut all: HashMap<String, Vec<&'static str>> = HashMap::new();
        for name in table::KNOWN_FIELDS {
            all.entry(fold_key(name)).or_default().push(name);
        }
        for spellings in all.values_mut() {
            if spellings
                .iter()
                .any(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
            {
                spellings.retain(|s| s.starts_with(|c: char| c.is_ascii_uppercase()));
            }
        }
        all
    })
}

/// Checks every key of `value` against the schema from `root` and returns
/// the document with every key spelled canonically: at a known struct
/// position a key equal ignoring case to one field is renamed to that field
/// (the daemon matches it the same way, so the meaning is unchanged); where
/// the position is unknown, a key equal ignoring case to an API property but
/// spelled differently is refused, since which field it reaches is not
/// known.
pub fn canonicalize(value: Value, root: SchemaRoot) -> Result<Value, BodyError> {
    if root.is_struct() && !matches!(value, Value::Object(_) | Value::Null) {
        return Err(BodyError::NotObject(root.op.to_string()));
    }
    walk(value, root.node)
}

fn walk(value: Value, at: u16) -> Result<Value, BodyError> {
    match (value, node(at)) {
        (Value::Object(obj), Node::Map(child)) => obj
            .into_iter()
            .map(|(k, v)| walk(v, *child).map_err(|e| e.under(&k)).map(|v| (k, v)))
            .collect::<Result<_, _>>()
            .map(Value::Object),
        (Value::Object(obj), Node::Struct(fields)) => obj
            .into_iter()
            .map(|(k, v)| {
                if let Some((_, child)) = fields.iter().find(|(f, _)| *f == k) {
                    return walk(v, *child).map_err(|e| e.under(&k)).map(|v| (k, v));
                }
                let folded = fold_key(&k);
                if let Some((canonical, child)) = fields.iter().find(|(f, _)| fold_key(f) == folded)
                {
                    let canonical = (*canonical).to_string();
                    return walk(v, *child)
                        .map_err(|e| e.under(&canonical))
                        .map(|v| (canonical, v));
                }
                backstop(&k)?;
                walk(v, 0).map_err(|e| e.under(&k)).map(|v| (k, v))
            })
            .collect::<Result<_, _>>()
            .map(Value::Object),
        (Value::Object(obj), _) => obj
            .into_iter()
            .map(|(k, v)| {
                backstop(&k)?;
                walk(v, 0).map_err(|e| e.under(&k)).map(|v| (k, v))
            })
            .collect::<Result<_, _>>()
            .map(Value::Object),
        (Value::Array(items), Node::Array(child)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| walk(v, *child).map_err(|e| e.under(&i.to_string())))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        (Value::Array(items), _) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| walk(v, 0).map_err(|e| e.under(&i.to_string())))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        (other, _) => Ok(other),
    }
}

/// The API-wide rule, where the position is not a known struct field or map
/// key: a key equal ignoring case to a property name of the API must be
/// spelled as one of its accepted spellings (see [`known_folds`]).
fn backstop(key: &str) -> Result<(), BodyError> {
    match known_folds().get(&fold_key(key)) {
        Some(spellings) if !spellings.contains(&key) => {
            let canonical = spellings.first().copied().unwrap_or(key);
            Err(BodyError::non_canonical(key, canonical))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_well_formed() {
        let mut sorted = table::KNOWN_FIELDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted,
            table::KNOWN_FIELDS,
            "KNOWN_FIELDS must be sorted and unique"
        );
        for n in table::NODES {
            let children: Vec<u16> = match n {
                Node::Any => vec![],
                Node::Struct(f) => f.iter().map(|(_, c)| *c).collect(),
                Node::Map(c) | Node::Array(c) => vec![*c],
            };
            for c in children {
                assert!(usize::from(c) < table::NODES.len());
            }
        }
        for op in [
            "ContainerCreate",
            "ContainerUpdate",
            "ContainerExec",
            "ExecStart",
            "ServiceCreate",
            "ServiceUpdate",
            "NetworkCreate",
            "NetworkConnect",
            "NetworkDisconnect",
            "VolumeCreate",
            "SecretCreate",
            "SecretUpdate",
            "ConfigCreate",
            "ConfigUpdate",
            "SwarmInit",
            "SwarmJoin",
            "SwarmUpdate",
            "PluginSet",
            "PluginUpgrade",
            "PluginPull",
            "ImageCommit",
            "SystemAuth",
            "NodeUpdate",
            "SwarmUnlock",
        ] {
            assert_ne!(
                SchemaRoot::for_operation(op),
                SchemaRoot::ANY,
                "{op} has no schema"
            );
        }
    }

    #[test]
    fn generated_table_is_current() {
        // Regenerates the table when the reference data and python3 with
        // PyYAML are available, and compares it with the committed one.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        // `../shared` from the main checkout, `../../shared` from a worktree.
        let Some(shared) = ["../shared/engine-api", "../../shared/engine-api"]
            .iter()
            .map(|d| root.join(d))
            .find(|d| d.join("swagger-v1.41.yaml").exists())
        else {
            // CI sets MOAT_CHECK_REFERENCE: there the reference must exist.
            assert!(
                std::env::var_os("MOAT_CHECK_REFERENCE").is_none(),
                "MOAT_CHECK_REFERENCE is set but ../shared/engine-api was not found"
            );
            return;
        };
        let out = std::process::Command::new("python3")
            .arg(root.join("tools/gen_body_schema.py"))
            .arg(&shared)
            .output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            // Without python3 + PyYAML the table cannot be regenerated; CI
            // installs both, so there this is a failure.
            other => {
                assert!(
                    std::env::var_os("MOAT_CHECK_REFERENCE").is_none(),
                    "cannot run tools/gen_body_schema.py (python3 with PyYAML): {other:?}"
                );
                return;
            }
        };
        let committed = std::fs::read_to_string(root.join("src/body/schema_table.rs")).unwrap();
        assert!(
            String::from_utf8(out.stdout).unwrap() == committed,
            "src/body/schema_table.rs is stale: rerun tools/gen_body_schema.py"
        );
    }

    /// (operation, body, Ok(the canonical document) or Err(part of the message)).
    #[test]
    fn canonical_spelling() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            (
                "ContainerCreate",
                r#"{"Image":"x","HostConfig":{"Privileged":true}}"#,
                Ok(r#"{"Image":"x","HostConfig":{"Privileged":true}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"hostconfig":{"Privileged":true}}"#,
                Ok(r#"{"HostConfig":{"Privileged":true}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"HostConfig":{"privileged":true}}"#,
                Ok(r#"{"HostConfig":{"Privileged":true}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"HostConfig":{"PRIVILEGED":true}}"#,
                Ok(r#"{"HostConfig":{"Privileged":true}}"#),
            ),
            (
                "ContainerCreate",
                "{\"HostConfig\":{\"Pr\u{0131}vileged\":true}}",
                Ok(r#"{"HostConfig":{"Privileged":true}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"HostConfig":{"Mounts":[{"type":"bind"}]}}"#,
                Ok(r#"{"HostConfig":{"Mounts":[{"Type":"bind"}]}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/"}]}}"#,
                Ok(r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/"}]}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"Labels":{"privileged":"x","hostconfig":"y"}}"#,
                Ok(r#"{"Labels":{"privileged":"x","hostconfig":"y"}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"NetworkingConfig":{"EndpointsConfig":{"hostconfig":{"Aliases":["a"]}}}}"#,
                Ok(r#"{"NetworkingConfig":{"EndpointsConfig":{"hostconfig":{"Aliases":["a"]}}}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"aliases":["a"]}}}}"#,
                Ok(r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"Aliases":["a"]}}}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"Unrelated":1,"x-custom":{"a":1}}"#,
                Ok(r#"{"Unrelated":1,"x-custom":{"a":1}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"x-custom":{"privileged":1}}"#,
                Err("must be spelled `Privileged`"),
            ),
            (
                "ContainerCreate",
                r#"{"x-custom":{"Id":1,"ID":{"Tty":true,"OS":"x"}}}"#,
                Ok(r#"{"x-custom":{"Id":1,"ID":{"Tty":true,"OS":"x"}}}"#),
            ),
            (
                "ContainerCreate",
                r#"{"x-custom":{"tty":true}}"#,
                Err("TTY"),
            ),
            ("ContainerCreate", r#"[]"#, Err("object")),
            (
                "ContainerExec",
                r#"{"Cmd":["sh"],"privileged":true,"detachKeys":"ctrl-x"}"#,
                Ok(r#"{"Cmd":["sh"],"Privileged":true,"DetachKeys":"ctrl-x"}"#),
            ),
            ("ContainerUpdate", r#"{"memory":1}"#, Ok(r#"{"Memory":1}"#)),
            (
                "VolumeCreate",
                r#"{"DriverOpts":{"type":"none","o":"bind","device":"/"}}"#,
                Ok(r#"{"DriverOpts":{"type":"none","o":"bind","device":"/"}}"#),
            ),
            (
                "VolumeCreate",
                r#"{"driveropts":{"type":"none"}}"#,
                Ok(r#"{"DriverOpts":{"type":"none"}}"#),
            ),
            (
                "ServiceCreate",
                r#"{"TaskTemplate":{"ContainerSpec":{"mounts":[]}}}"#,
                Ok(r#"{"TaskTemplate":{"ContainerSpec":{"Mounts":[]}}}"#),
            ),
            ("PluginSet", r#"["DEBUG=1"]"#, Ok(r#"["DEBUG=1"]"#)),
            (
                "ContainerStart",
                r#"{"hostconfig":{}}"#,
                Err("must be spelled `HostConfig`"),
            ),
            (
                "Unknown",
                r#"{"HostConfig":{"privileged":true}}"#,
                Err("must be spelled `Privileged`"),
            ),
        ];
        for (op, body, want) in cases {
            let v: Value = serde_json::from_str(body).unwrap();
            match (canonicalize(v, SchemaRoot::for_operation(op)), want) {
                (Ok(got), Ok(w)) => assert_eq!(got.to_string(), *w, "{op} {body}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{op} {body}: {e}"),
                (got, _) => panic!("{op} {body}: got {got:?}, want {want:?}"),
            }
        }
    }
}
