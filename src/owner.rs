//! Ownership, as data: the labels moat puts on what it creates, and the
//! objects a request names as the policy sees them (`input.resources`).
//!
//! A leaf: it depends on no other module of moat, so that the `resolve`
//! stage (which fills [`Resource`]s before the decision), the policy input
//! (which shows them) and the `scope` stage (which stamps the labels at
//! forwarding) share these types without importing one another.
//!
//! The label names are a public contract: they are on the engine's objects,
//! so they outlive any moat process, and policies and operators read them.
//! They never change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The label naming the identity that created an object (its user name).
pub const OWNER_LABEL: &str = "io.moat.owner";
/// The label naming the owner scope the object belongs to (`user:<name>`, or
/// a shared scope such as `team:<t>`), as the policy decided at creation.
pub const SCOPE_LABEL: &str = "io.moat.scope";
/// The label naming how the creator authenticated: `tls`, `token`, `peer`,
/// or a token's issuer.
pub const AUTH_LABEL: &str = "io.moat.auth";
/// moat's label namespace: clients may not set labels starting with it.
pub const LABEL_NAMESPACE: &str = "io.moat.";

/// The kind of an object a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Container,
    Volume,
    Network,
    Exec,
}

impl Kind {
    /// The word used in messages and in the input (`container`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Volume => "volume",
            Kind::Network => "network",
            Kind::Exec => "exec",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object a request names, resolved through the engine: an element of
/// `input.resources` (documented in `docs/policy-input.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub kind: Kind,
    /// Where the request names it: `path`, or the body position
    /// (`HostConfig.NetworkMode`, `HostConfig.Binds[0]`,
    /// `NetworkingConfig.EndpointsConfig.<key>`, `Container`, …).
    pub position: String,
    /// The reference exactly as the client gave it (a name, an id, an id
    /// prefix).
    #[serde(rename = "ref")]
    pub reference: String,
    /// The canonical id (a volume's is its name); what the engine receives.
    pub id: String,
    /// Its name, without the leading `/` the engine gives container names;
    /// empty for an exec instance.
    pub name: String,
    /// False only for a named volume that does not exist yet (a create will
    /// make it).
    pub exists: bool,
    /// From its `io.moat.*` labels (an exec's are its container's); `None`
    /// when it has no [`OWNER_LABEL`].
    pub owner: Option<Owner>,
    /// How the object reaches the host (`privileged`, `network=host`,
    /// `bind:/`, `volume-bind:/`, …), computed by moat from the facts
    /// below; empty when it does not.
    pub host_access: Vec<String>,
    /// A container's facts (for an exec, its container's).
    pub container: Option<ContainerFacts>,
    pub volume: Option<VolumeFacts>,
    pub network: Option<NetworkFacts>,
    pub exec: Option<ExecFacts>,
}

/// Who owns an object, from its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// [`OWNER_LABEL`].
    pub user: String,
    /// [`SCOPE_LABEL`]; `None` when the label is missing.
    pub scope: Option<String>,
    /// [`AUTH_LABEL`]; `None` when the label is missing.
    pub auth: Option<String>,
}

impl Owner {
    /// The owner an object's labels name, if any: `None` without an
    /// [`OWNER_LABEL`] (an unowned object).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<Owner> {
        let user = labels.get(OWNER_LABEL)?;
        Some(Owner {
            user: user.clone(),
            scope: labels.get(SCOPE_LABEL).cloned(),
            auth: labels.get(AUTH_LABEL).cloned(),
        })
    }
}

/// The security facts of a container, from its inspect document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerFacts {
    pub privileged: bool,
    pub network_mode: String,
    pub pid_mode: String,
    pub ipc_mode: String,
    pub uts_mode: String,
    pub userns_mode: String,
    pub cgroupns_mode: String,
    /// `HostConfig.Binds` as the engine recorded them.
    pub binds: Vec<String>,
    /// The host paths of its bind mounts (`Mounts[]` of type `bind`, which
    /// covers `Binds` and `HostConfig.Mounts`).
    pub mount_sources: Vec<String>,
    /// `HostConfig.Devices[].PathOnHost`.
    pub devices: Vec<String>,
    pub cap_add: Vec<String>,
}

/// The facts of a volume, from its inspect document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFacts {
    pub driver: String,
    /// The driver options it was created with (`type`, `o`, `device` for
    /// the `local` driver).
    pub options: BTreeMap<String, String>,
}

/// The facts of a network, from its inspect document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFacts {
    pub driver: String,
    /// One of the engine's own networks: `bridge`, `host`, `none`.
    pub builtin: bool,
}

/// The facts of an exec instance, from its inspect document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecFacts {
    /// The full id of the container it runs in.
    pub container_id: String,
    /// Created with `--privileged`.
    pub privileged: bool,
    /// The user it runs as (`ProcessConfig.user`), empty for the
    /// container's.
    pub user: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_comes_from_the_owner_label_only() {
        let mut labels = BTreeMap::new();
        labels.insert(SCOPE_LABEL.to_string(), "user:alice".to_string());
        assert_eq!(Owner::from_labels(&labels), None);
        labels.insert(OWNER_LABEL.to_string(), "alice".to_string());
        let owner = Owner::from_labels(&labels).unwrap();
        assert_eq!(owner.user, "alice");
        assert_eq!(owner.scope.as_deref(), Some("user:alice"));
        assert_eq!(owner.auth, None);
    }

    #[test]
    fn resource_serializes_as_documented() {
        let r = Resource {
            kind: Kind::Volume,
            position: "HostConfig.Binds[0]".into(),
            reference: "data".into(),
            id: "data".into(),
            name: "data".into(),
            exists: true,
            owner: None,
            host_access: vec!["volume-bind:/".into()],
            container: None,
            volume: Some(VolumeFacts {
                driver: "local".into(),
                options: BTreeMap::from([("o".to_string(), "bind".to_string())]),
            }),
            network: None,
            exec: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "volume");
        assert_eq!(v["ref"], "data");
        assert_eq!(v["owner"], serde_json::Value::Null);
        assert_eq!(v["container"], serde_json::Value::Null);
        assert_eq!(v["volume"]["options"]["o"], "bind");
        let back: Resource = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
