//! moat's label namespace on engine objects: the owner labels stamped on
//! what a request creates, and the refusal of any label a client tries to
//! set in that namespace (anywhere a label can be set), so that an owner
//! label on the engine was always written by moat.

use serde_json::{Map, Value};

use crate::classify::{OpId, Route};
use crate::identity::{AuthMethod, Identity};
use crate::owner::{AUTH_LABEL as AUTH, LABEL_NAMESPACE as NAMESPACE, OWNER_LABEL as OWNER};
use crate::policy::Decision;

pub(crate) use crate::owner::SCOPE_LABEL as SCOPE;

use super::ScopeError;

/// The owner labels one request stamps on what it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerLabels {
    pub(crate) owner: String,
    pub(crate) scope: String,
    pub(crate) auth: &'static str,
}

impl OwnerLabels {
    /// The identity's labels under the decision's `owner_scope` (by
    /// default `user:<name>`).
    pub(crate) fn new(identity: &Identity, decision: &Decision) -> OwnerLabels {
        OwnerLabels {
            owner: identity.name.clone(),
            scope: decision
                .owner_scope
                .clone()
                .unwrap_or_else(|| format!("user:{}", identity.name)),
            auth: match identity.auth_method {
                AuthMethod::Certificate => "tls",
                AuthMethod::Token => "token",
                AuthMethod::Peer => "peer",
            },
        }
    }

    /// Sets the three labels in `labels` (always all three: an image's own
    /// `io.moat.*` labels never reach a container through them).
    pub(crate) fn insert(&self, labels: &mut Map<String, Value>) {
        labels.insert(OWNER.into(), Value::String(self.owner.clone()));
        labels.insert(SCOPE.into(), Value::String(self.scope.clone()));
        labels.insert(AUTH.into(), Value::String(self.auth.into()));
    }
}

/// Stamps the owner labels into the `Labels` of a create body (an absent
/// or null `Labels` becomes an object).
pub(crate) fn stamp(body: &mut Value, labels: &OwnerLabels) -> Result<(), ScopeError> {
    let Value::Object(top) = body else {
        return Err(ScopeError::NotAnObject);
    };
    let slot = top
        .entry("Labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => {
            labels.insert(m);
            Ok(())
        }
        _ => Err(ScopeError::LabelsNotObject),
    }
}

/// Refuses a client-supplied label in moat's namespace: in any `Labels`
/// object of the body (containers, volumes, networks, mounts' volume
/// options, services and their tasks, secrets, configs, nodes, swarm), in
/// the build's `labels` query and in the `changes` (Dockerfile `LABEL`) of
/// a commit or import.
pub(crate) fn check(route: &Route, body: Option<&Value>) -> Result<(), ScopeError> {
    if let Some((position, key)) = body.and_then(spoofed) {
        return Err(ScopeError::Spoofed {
            position: format!("`{position}`"),
            key,
        });
    }
    for (name, value) in &route.query {
        match (route.op.id, name.as_str()) {
            (OpId::ImageBuild, "labels") => check_build_labels(value)?,
            (OpId::ImageCommit | OpId::ImageCreate, "changes") => check_change(value)?,
            _ => {}
        }
    }
    Ok(())
}

/// One step down a JSON document: an object key or an array index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The first key in moat's namespace of a `Labels` object anywhere in `v`,
/// with the position of that object (`HostConfig.Mounts[0].VolumeOptions.Labels`).
/// The position is written out only for what is found: the walk itself
/// allocates nothing per key.
fn spoofed(v: &Value) -> Option<(String, String)> {
    let mut trail = Vec::new();
    let key = find(v, &mut trail)?;
    let mut position = String::new();
    for step in &trail {
        match step {
            Step::Key(k) => {
                if !position.is_empty() {
                    position.push('.');
                }
                position.push_str(k);
            }
            Step::Index(i) => position.push_str(&format!("[{i}]")),
        }
    }
    Some((position, key))
}

fn find<'a>(v: &'a Value, trail: &mut Vec<Step<'a>>) -> Option<String> {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                trail.push(Step::Key(k));
                if k == "Labels" {
                    if let Some(key) = child
                        .as_object()
                        .and_then(|labels| labels.keys().find(|k| reserved(k)))
                    {
                        return Some(key.clone());
                    }
                }
                if let Some(found) = find(child, trail) {
                    return Some(found);
                }
                trail.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                trail.push(Step::Index(i));
                if let Some(found) = find(child, trail) {
                    return Some(found);
                }
                trail.pop();
            }
        }
        _ => {}
    }
    None
}

/// Whether a label key is in moat's namespace.
fn reserved(key: &str) -> bool {
    key.starts_with(NAMESPACE)
}

/// The build's `labels`: a JSON object of strings, as the daemon reads it.
fn check_build_labels(value: &str) -> Result<(), ScopeError> {
    if value.is_empty() {
        return Ok(());
    }
    let Ok(Value::Object(labels)) = serde_json::from_str::<Value>(value) else {
        return Err(ScopeError::BadBuildLabels);
    };
    match labels.keys().find(|k| reserved(k)) {
        Some(key) => Err(ScopeError::Spoofed {
            position: "the build's `labels` query parameter".into(),
            key: key.clone(),
        }),
        None => Ok(()),
    }
}

/// A commit's or import's `changes` entry: a Dockerfile instruction. A
/// `LABEL` naming moat's namespace (quotes and escapes removed) is refused,
/// and so is a `LABEL` built from a variable, which moat cannot read.
fn check_change(value: &str) -> Result<(), ScopeError> {
    for line in value.lines() {
        let line = line.trim_start();
        let is_label = line
            .get(..5)
            .is_some_and(|w| w.eq_ignore_ascii_case("LABEL"))
            && line[5..].starts_with(char::is_whitespace);
        if !is_label {
            continue;
        }
        let plain: String = line
            .chars()
            .filter(|c| !matches!(c, '\\' | '"' | '\''))
            .collect();
        if plain.contains(NAMESPACE) || plain.contains('$') {
            return Err(ScopeError::Spoofed {
                position: "a `LABEL` instruction of `changes`".into(),
                key: if plain.contains(NAMESPACE) {
                    NAMESPACE.to_string() + "*"
                } else {
                    "a label named by a variable".into()
                },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(op: &str, query: &[(&str, &str)]) -> Route {
        let uri: http::Uri = match op {
            "ImageBuild" => "/build",
            "ImageCommit" => "/commit",
            "ImageCreate" => "/images/create",
            "VolumeCreate" => "/volumes/create",
            "NetworkCreate" => "/networks/create",
            _ => "/containers/create",
        }
        .parse()
        .unwrap();
        let mut r = crate::classify::classify(&http::Method::POST, &uri).unwrap();
        assert_eq!(r.op.id.as_str(), op);
        r.query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        r
    }

    fn refused(op: &str, query: &[(&str, &str)], body: Value) -> String {
        match check(&route(op, query), Some(&body)) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{op} {query:?} {body} was not refused"),
        }
    }

    #[test]
    fn labels_in_moat_namespace_are_refused_where_they_can_be_set() {
        let m = refused(
            "ContainerCreate",
            &[],
            json!({"Labels": {"io.moat.owner": "alice"}}),
        );
        assert!(m.contains("`Labels`") && m.contains("io.moat.owner"), "{m}");
        assert!(m.contains("moat's"), "{m}");
        let m = refused(
            "ContainerCreate",
            &[],
            json!({"HostConfig": {"Mounts": [{"Type": "volume"}, {"VolumeOptions": {"Labels": {"io.moat.scope": "x"}}}]}}),
        );
        assert!(
            m.contains("HostConfig.Mounts[1].VolumeOptions.Labels"),
            "{m}"
        );
        refused(
            "VolumeCreate",
            &[],
            json!({"Labels": {"io.moat.auth": "tls"}}),
        );
        refused("NetworkCreate", &[], json!({"Labels": {"io.moat.x": ""}}));
        let m = refused(
            "ImageBuild",
            &[("labels", r#"{"io.moat.scope":"team:a"}"#)],
            json!(null),
        );
        assert!(m.contains("labels"), "{m}");
        refused("ImageBuild", &[("labels", "not json")], json!(null));
        refused(
            "ImageCommit",
            &[],
            json!({"Labels": {"io.moat.owner": "a"}}),
        );
        for change in [
            "LABEL io.moat.owner=alice",
            "label \"io.moat.scope\"=x",
            "LABEL a=b io\\.moat.scope=x",
            "ENV X=1\nLABEL $X=y",
        ] {
            refused("ImageCommit", &[("changes", change)], json!(null));
            refused("ImageCreate", &[("changes", change)], json!(null));
        }
        // Swarm objects: any Labels at any depth.
        let body = json!({"TaskTemplate": {"ContainerSpec": {"Labels": {"io.moat.owner": "a"}}}});
        let m = check(&route("ContainerCreate", &[]), Some(&body))
            .unwrap_err()
            .to_string();
        assert!(m.contains("TaskTemplate.ContainerSpec.Labels"), "{m}");
    }

    #[test]
    fn other_labels_pass() {
        let ok = |op: &str, q: &[(&str, &str)], body: Value| {
            check(&route(op, q), Some(&body)).unwrap_or_else(|e| panic!("{op}: {e}"))
        };
        ok(
            "ContainerCreate",
            &[],
            json!({"Labels": {"io.moatx": "1", "com.example.moat": "io.moat.owner"}}),
        );
        ok(
            "ContainerCreate",
            &[],
            json!({"Labels": null, "Env": ["io.moat.owner=x"]}),
        );
        ok(
            "ImageBuild",
            &[("labels", r#"{"a":"io.moat.owner"}"#), ("labels", "")],
            json!(null),
        );
        ok(
            "ImageCommit",
            &[("changes", "ENV io.moat.owner=x"), ("changes", "LABEL a=b")],
            json!(null),
        );
    }

    #[test]
    fn stamping_sets_all_three_labels() {
        let who = OwnerLabels {
            owner: "alice".into(),
            scope: "team:web".into(),
            auth: "tls",
        };
        let mut body = json!({"Image": "busybox", "Labels": {"a": "b"}});
        stamp(&mut body, &who).unwrap();
        assert_eq!(
            body["Labels"],
            json!({"a": "b", "io.moat.owner": "alice", "io.moat.scope": "team:web", "io.moat.auth": "tls"})
        );
        let mut body = json!({"Name": "v", "Labels": null});
        stamp(&mut body, &who).unwrap();
        assert_eq!(body["Labels"]["io.moat.scope"], "team:web");
        let mut body = json!({"Name": "v"});
        stamp(&mut body, &who).unwrap();
        assert_eq!(body["Labels"]["io.moat.owner"], "alice");
        assert!(matches!(
            stamp(&mut json!({"Labels": ["x"]}), &who),
            Err(ScopeError::LabelsNotObject)
        ));
        assert!(matches!(
            stamp(&mut json!([]), &who),
            Err(ScopeError::NotAnObject)
        ));
    }
}
