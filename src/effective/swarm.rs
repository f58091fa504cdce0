//! The effective bodies of the swarm operations: the fields the daemon's
//! swarm handlers (moby v20.10.24 `adjustForAPIVersion` and `swarmInit`)
//! clear for clients older than the version that introduced them. Clearing
//! them here means the policy never sees a value the engine will not apply.

use serde_json::{Map, Value};

use super::ApiVersion;

fn obj<'a>(v: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    match v.get_mut(key) {
        Some(Value::Object(o)) => Some(o),
        _ => None,
    }
}

/// ServiceCreate and ServiceUpdate (a `ServiceSpec`).
pub(super) fn service(body: Value, version: ApiVersion) -> Value {
    let Value::Object(mut spec) = body else {
        return body;
    };
    let before_1_40 = version < ApiVersion::new(1, 40);
    let before_1_41 = version < ApiVersion::new(1, 41);
    if let Some(task) = obj(&mut spec, "TaskTemplate") {
        if let Some(cs) = obj(task, "ContainerSpec") {
            if before_1_40 {
                cs.remove("Sysctls");
                if let Some(cred) = obj(cs, "Privileges").and_then(|p| obj(p, "CredentialSpec")) {
                    cred.remove("Config");
                }
                if let Some(Value::Array(configs)) = cs.get_mut("Configs") {
                    for c in configs.iter_mut().filter_map(Value::as_object_mut) {
                        c.remove("Runtime");
                    }
                }
            }
            if before_1_41 {
                for f in ["CapabilityAdd", "CapabilityDrop", "Ulimits"] {
                    cs.remove(f);
                }
            }
        }
        if before_1_40 {
            if let Some(p) = obj(task, "Placement") {
                p.remove("MaxReplicas");
            }
        }
        if before_1_41 {
            if let Some(l) = obj(task, "Resources").and_then(|r| obj(r, "Limits")) {
                l.remove("Pids");
            }
        }
    }
    if before_1_41 {
        if let Some(mode) = obj(&mut spec, "Mode") {
            mode.remove("ReplicatedJob");
            mode.remove("GlobalJob");
        }
    }
    Value::Object(spec)
}

/// SwarmInit.
pub(super) fn init(body: Value, version: ApiVersion) -> Value {
    let Value::Object(mut req) = body else {
        return body;
    };
    if version < ApiVersion::new(1, 39) {
        req.remove("DefaultAddrPool");
        req.remove("SubnetSize");
    }
    if version < ApiVersion::new(1, 40) {
        req.remove("DataPathPort");
    }
    Value::Object(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_fields_from_later_versions_are_cleared() {
        let spec = json!({
            "Name": "s",
            "Mode": {"ReplicatedJob": {}, "Replicated": {"Replicas": 1}},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "x", "Sysctls": {"a": "b"}, "CapabilityAdd": ["CAP_SYS_ADMIN"],
                                  "Ulimits": [], "Configs": [{"Runtime": {}, "ConfigID": "c"}],
                                  "Privileges": {"CredentialSpec": {"Config": "c", "File": "f"}}},
                "Placement": {"MaxReplicas": 2, "Constraints": []},
                "Resources": {"Limits": {"Pids": 5, "MemoryBytes": 1}}
            }
        });
        assert_eq!(service(spec.clone(), ApiVersion::new(1, 41)), spec);
        assert_eq!(
            service(spec.clone(), ApiVersion::new(1, 40)),
            json!({
                "Name": "s",
                "Mode": {"Replicated": {"Replicas": 1}},
                "TaskTemplate": {
                    "ContainerSpec": {"Image": "x", "Sysctls": {"a": "b"},
                                      "Configs": [{"Runtime": {}, "ConfigID": "c"}],
                                      "Privileges": {"CredentialSpec": {"Config": "c", "File": "f"}}},
                    "Placement": {"MaxReplicas": 2, "Constraints": []},
                    "Resources": {"Limits": {"MemoryBytes": 1}}
                }
            })
        );
        assert_eq!(
            service(spec, ApiVersion::new(1, 39))["TaskTemplate"],
            json!({
                "ContainerSpec": {"Image": "x", "Configs": [{"ConfigID": "c"}],
                                  "Privileges": {"CredentialSpec": {"File": "f"}}},
                "Placement": {"Constraints": []},
                "Resources": {"Limits": {"MemoryBytes": 1}}
            })
        );
    }

    #[test]
    fn swarm_init_fields_from_later_versions_are_cleared() {
        let req = json!({"ListenAddr": "0.0.0.0:2377", "DefaultAddrPool": ["10.0.0.0/8"], "SubnetSize": 24, "DataPathPort": 4789});
        assert_eq!(init(req.clone(), ApiVersion::new(1, 40)), req);
        assert_eq!(
            init(req.clone(), ApiVersion::new(1, 39)),
            json!({"ListenAddr": "0.0.0.0:2377", "DefaultAddrPool": ["10.0.0.0/8"], "SubnetSize": 24})
        );
        assert_eq!(
            init(req, ApiVersion::new(1, 38)),
            json!({"ListenAddr": "0.0.0.0:2377"})
        );
    }
}
