//! The effective bodies of the container operations: the document the
//! engine will apply, built from the canonical body and the API version,
//! exactly as the daemon's handlers (moby v20.10.24 and the newest release)
//! decode and adjust them. `docs/policy-input.md` lists every position.
//!
//! - ContainerCreate (and ImageCommit, which decodes its body with the same
//!   wrapper): dockerd 20.10's `ContainerConfigWrapper` embeds a deprecated
//!   second `HostConfig` at the top level of the body. When `HostConfig` is
//!   absent or null, top-level host-config fields ARE the container's host
//!   config; next to a `HostConfig` object, five of them are merged into it
//!   (`Memory`, `MemorySwap`, `CpuShares`, `CpusetCpus`, `VolumeDriver`, plus
//!   the wrapper's own `Cpuset`). No current client sends them (the docker
//!   CLI, docker-py and compose all nest `HostConfig`), so ContainerCreate
//!   refuses every one, naming where it belongs; ImageCommit drops them,
//!   since a commit ignores the host config.
//! - The version adjustments the handlers make (fields an older client could
//!   not have meant, defaults older clients expect) are applied here, so the
//!   policy sees the value the engine will use.
//! - ContainerStart: below API 1.24 the daemon applies a HostConfig sent in
//!   the start body. moat refuses any start body but an empty one, at every
//!   version, and forwards none.

use serde_json::{Map, Value};

use super::{ApiVersion, EffectiveError, EngineFacts};
use crate::body::fold_key;

/// Every JSON field name of the daemon's `HostConfig` (with the embedded
/// `Resources`), moby v20.10.24 and newest, plus `Capabilities` (API 1.40
/// only). These are the fields the deprecated top-level position reaches.
const HOST_CONFIG_FIELDS: &[&str] = &[
    "Annotations",
    "AutoRemove",
    "Binds",
    "BlkioDeviceReadBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceWriteIOps",
    "BlkioWeight",
    "BlkioWeightDevice",
    "CapAdd",
    "CapDrop",
    "Capabilities",
    "Cgroup",
    "CgroupParent",
    "CgroupnsMode",
    "ConsoleSize",
    "ContainerIDFile",
    "CpuCount",
    "CpuPercent",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpuShares",
    "CpusetCpus",
    "CpusetMems",
    "DeviceCgroupRules",
    "DeviceRequests",
    "Devices",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IOMaximumBandwidth",
    "IOMaximumIOps",
    "Init",
    "IpcMode",
    "Isolation",
    "KernelMemory",
    "KernelMemoryTCP",
    "Links",
    "LogConfig",
    "MaskedPaths",
    "Memory",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "Mounts",
    "NanoCpus",
    "NetworkMode",
    "OomKillDisable",
    "OomScoreAdj",
    "PidMode",
    "PidsLimit",
    "PortBindings",
    "Privileged",
    "PublishAllPorts",
    "ReadonlyPaths",
    "ReadonlyRootfs",
    "RestartPolicy",
    "Runtime",
    "SecurityOpt",
    "ShmSize",
    "StorageOpt",
    "Sysctls",
    "Tmpfs",
    "UTSMode",
    "Ulimits",
    "UsernsMode",
    "VolumeDriver",
    "VolumesFrom",
];

/// Where a top-level key of a create/commit body belongs, when it is one of
/// the deprecated host-config positions: `HostConfig.<field>`.
fn host_config_target(key: &str) -> Option<String> {
    let folded = fold_key(key);
    if folded == fold_key("Cpuset") {
        return Some("HostConfig.CpusetCpus".into());
    }
    HOST_CONFIG_FIELDS
        .iter()
        .find(|f| fold_key(f) == folded)
        .map(|f| format!("HostConfig.{f}"))
}

/// ContainerCreate.
pub(super) fn create(
    body: Value,
    version: ApiVersion,
    engine: &EngineFacts,
) -> Result<Value, EffectiveError> {
    let Value::Object(mut top) = body else {
        // `null`: the daemon refuses a create without a config itself.
        return Ok(body);
    };
    if let Some((key, target)) = top
        .keys()
        .find_map(|k| host_config_target(k).map(|t| (k.clone(), t)))
    {
        return Err(EffectiveError::DeprecatedPosition {
            op: "ContainerCreate",
            key,
            target,
        });
    }
    if let Some(Value::Object(hc)) = top.get_mut("HostConfig") {
        host_config_for_version(hc, version, engine)?;
    }
    if version < ApiVersion::new(1, 44) {
        // Healthcheck.StartInterval was added in API 1.44 (newer engines
        // clear it below; 20.10 does not know it).
        if let Some(Value::Object(hc)) = top.get_mut("Healthcheck") {
            hc.remove("StartInterval");
        }
    }
    Ok(Value::Object(top))
}

/// The handler's version adjustments of a create's HostConfig. The daemon
/// makes them only when the body has a HostConfig (20.10 leaves an absent
/// one to the daemon's defaults).
fn host_config_for_version(
    hc: &mut Map<String, Value>,
    version: ApiVersion,
    engine: &EngineFacts,
) -> Result<(), EffectiveError> {
    // `Capabilities` existed in API 1.40 only: dockerd 20.10 no longer has
    // the field (it ignores it), the newest refuses it at 1.40. moat refuses
    // a non-empty one at 1.40 and drops it otherwise.
    match hc.remove("Capabilities") {
        Some(Value::Array(caps)) if !caps.is_empty() && version == ApiVersion::new(1, 40) => {
            return Err(EffectiveError::Removed {
                field: "HostConfig.Capabilities",
                instead: "use HostConfig.CapAdd and HostConfig.CapDrop",
            });
        }
        _ => {}
    }
    if version < ApiVersion::new(1, 25) {
        // "When using API 1.24 and under, the client is responsible for
        // removing the container."
        hc.remove("AutoRemove");
    }
    if version < ApiVersion::new(1, 40) {
        hc.remove("KernelMemoryTCP");
        for_each_bind_options(hc, |bo| {
            bo.remove("NonRecursive");
        });
        // "Older clients (API < 1.40) expects the default to be shareable."
        if is_empty_string(hc.get("IpcMode")) {
            hc.insert("IpcMode".into(), Value::from("shareable"));
        }
    }
    if version < ApiVersion::new(1, 41)
        && !engine.cgroup_v2
        && is_empty_string(hc.get("CgroupnsMode"))
    {
        // "Older clients expect the default to be 'host' on cgroup v1 hosts."
        hc.insert("CgroupnsMode".into(), Value::from("host"));
    }
    if version < ApiVersion::new(1, 42) {
        // Added in API 1.42; newer engines clear them for older clients and
        // 20.10 does not know them.
        for_each_bind_options(hc, |bo| {
            bo.remove("CreateMountpoint");
        });
        hc.remove("ConsoleSize");
    }
    if version < ApiVersion::new(1, 43) {
        hc.remove("Annotations");
    }
    derive_label_disable(hc);
    Ok(())
}

/// The daemon (`generateSecurityOpt`) adds `label=disable` to `SecurityOpt`
/// for a privileged container or one in the host's IPC or PID namespace,
/// unless the client set a `label` option itself: SELinux confinement is
/// off for it. Made explicit here, so that a policy about `label=disable`
/// sees it; sent explicitly, it makes the daemon add nothing.
fn derive_label_disable(hc: &mut Map<String, Value>) {
    let is = |k: &str, v: &Value| hc.get(k) == Some(v);
    let host = Value::from("host");
    if !(is("Privileged", &Value::Bool(true)) || is("IpcMode", &host) || is("PidMode", &host)) {
        return;
    }
    let opts = hc
        .entry("SecurityOpt")
        .or_insert_with(|| Value::Array(Vec::new()));
    if opts.is_null() {
        *opts = Value::Array(Vec::new());
    }
    if let Value::Array(list) = opts {
        let has_label = list
            .iter()
            .filter_map(Value::as_str)
            .any(|o| o.split('=').next() == Some("label"));
        if !has_label {
            list.push(Value::from("label=disable"));
        }
    }
}

/// A missing, null or empty-string field: the daemon's `IsEmpty()`.
fn is_empty_string(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

fn for_each_bind_options(hc: &mut Map<String, Value>, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(Value::Array(mounts)) = hc.get_mut("Mounts") {
        for m in mounts {
            if let Some(Value::Object(bo)) = m.get_mut("BindOptions") {
                f(bo);
            }
        }
    }
}

/// ImageCommit: the daemon decodes the body with the create wrapper and
/// keeps only the container config; host-config fields (nested or at the top
/// level) and `NetworkingConfig` are ignored, so they are dropped.
pub(super) fn commit(body: Value) -> Value {
    let Value::Object(mut top) = body else {
        return body;
    };
    top.retain(|k, _| {
        let f = fold_key(k);
        host_config_target(k).is_none()
            && f != fold_key("HostConfig")
            && f != fold_key("NetworkingConfig")
    });
    Value::Object(top)
}

/// ContainerStart: no body is forwarded. An empty object or `null` (what
/// some clients send) is dropped; anything else is refused, because below
/// API 1.24 the daemon applies it as the container's HostConfig and at 1.24
/// and above it refuses it anyway.
pub(super) fn start(body: Value) -> Result<Option<Value>, EffectiveError> {
    match &body {
        Value::Null => Ok(None),
        Value::Object(o) if o.is_empty() => Ok(None),
        _ => Err(EffectiveError::StartBody),
    }
}

/// The fields of an update body the daemon applies (moby v20.10.24
/// `Container.UpdateContainer`); it ignores every other `Resources` field
/// (`Devices`, `Ulimits`, …), so they are dropped.
const UPDATE_APPLIED: &[&str] = &[
    "BlkioWeight",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpuShares",
    "CpusetCpus",
    "CpusetMems",
    "KernelMemory",
    "Memory",
    "MemoryReservation",
    "MemorySwap",
    "NanoCpus",
    "PidsLimit",
    "RestartPolicy",
];

/// Applied from API 1.55 on (newer engines).
const UPDATE_APPLIED_SINCE_1_55: &[&str] = &[
    "BlkioDeviceReadBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceWriteIOps",
    "BlkioWeightDevice",
];

/// ContainerUpdate: only what the daemon applies; below 1.40 `PidsLimit`
/// is ignored too.
pub(super) fn update(body: Value, version: ApiVersion) -> Value {
    let Value::Object(mut top) = body else {
        return body;
    };
    top.retain(|k, _| {
        UPDATE_APPLIED.contains(&k.as_str())
            || (version >= ApiVersion::new(1, 55)
                && UPDATE_APPLIED_SINCE_1_55.contains(&k.as_str()))
    });
    if version < ApiVersion::new(1, 40) {
        top.remove("PidsLimit");
    }
    Value::Object(top)
}

/// ContainerExec (exec create).
pub(super) fn exec(body: Value, version: ApiVersion) -> Value {
    let Value::Object(mut top) = body else {
        return body;
    };
    if version < ApiVersion::new(1, 42) {
        top.remove("ConsoleSize");
    }
    Value::Object(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V1: EngineFacts = EngineFacts {
        min: ApiVersion::new(1, 12),
        max: ApiVersion::new(1, 41),
        cgroup_v2: false,
    };
    const V2: EngineFacts = EngineFacts {
        cgroup_v2: true,
        ..V1
    };

    fn v(s: &str) -> ApiVersion {
        ApiVersion::parse(s).unwrap()
    }

    #[test]
    fn the_host_config_fields_are_sorted_and_unique() {
        let mut sorted = HOST_CONFIG_FIELDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, HOST_CONFIG_FIELDS);
    }

    #[test]
    fn top_level_host_config_fields_are_refused_wherever_they_would_apply() {
        for body in [
            json!({"Image": "x", "Privileged": true}),
            json!({"Image": "x", "HostConfig": null, "Binds": ["/:/host"]}),
            json!({"Image": "x", "HostConfig": {}, "Memory": 1}),
            json!({"Image": "x", "Cpuset": "0"}),
            json!({"Image": "x", "pidmode": "host"}),
            json!({"Image": "x", "NetworkMode": "host"}),
        ] {
            let err = create(body.clone(), v("1.41"), &V1).unwrap_err();
            assert!(
                err.to_string().contains("belongs in `HostConfig."),
                "{body}: {err}"
            );
        }
        let err = create(json!({"Privileged": true}), v("1.41"), &V1).unwrap_err();
        assert!(err.to_string().contains("`HostConfig.Privileged`"), "{err}");
        let err = create(json!({"Cpuset": "0"}), v("1.41"), &V1).unwrap_err();
        assert!(err.to_string().contains("`HostConfig.CpusetCpus`"), "{err}");
    }

    #[test]
    fn config_fields_stay() {
        let body = json!({"Image": "x", "Cmd": ["true"], "Labels": {"Privileged": "x"},
            "Volumes": {"/v": {}}, "MacAddress": "", "HostConfig": {"Privileged": false},
            "NetworkingConfig": null, "x-unknown": 1});
        // (HostConfig.Privileged false: nothing is derived from it.)
        assert_eq!(create(body.clone(), v("1.41"), &V1).unwrap(), body);
    }

    #[test]
    fn version_adjustments() {
        let hc = |body: Value, ver: &str, e: &EngineFacts| {
            create(json!({"HostConfig": body}), v(ver), e).unwrap()["HostConfig"].clone()
        };
        // < 1.25: AutoRemove is the client's job.
        assert_eq!(
            hc(json!({"AutoRemove": true}), "1.24", &V2),
            json!({"IpcMode": "shareable"})
        );
        assert_eq!(
            hc(
                json!({"AutoRemove": true, "IpcMode": "private"}),
                "1.25",
                &V2
            ),
            json!({"AutoRemove": true, "IpcMode": "private"})
        );
        // < 1.40: shareable IPC by default, no NonRecursive, no KernelMemoryTCP.
        assert_eq!(
            hc(
                json!({"KernelMemoryTCP": 5, "Mounts": [{"Type": "bind", "BindOptions": {"NonRecursive": true}}]}),
                "1.39",
                &V2
            ),
            json!({"Mounts": [{"Type": "bind", "BindOptions": {}}], "IpcMode": "shareable"})
        );
        assert_eq!(
            hc(json!({"IpcMode": ""}), "1.40", &V2),
            json!({"IpcMode": ""})
        );
        assert_eq!(
            hc(json!({"IpcMode": "host"}), "1.24", &V2)["IpcMode"],
            "host"
        );
        // < 1.41 on cgroup v1: the host cgroup namespace by default.
        assert_eq!(hc(json!({}), "1.40", &V1), json!({"CgroupnsMode": "host"}));
        assert_eq!(hc(json!({}), "1.40", &V2), json!({}));
        assert_eq!(hc(json!({}), "1.41", &V1), json!({}));
        assert_eq!(
            hc(json!({"CgroupnsMode": "private"}), "1.40", &V1),
            json!({"CgroupnsMode": "private"})
        );
        // Capabilities: refused at 1.40, ignored (dropped) elsewhere.
        assert!(create(
            json!({"HostConfig": {"Capabilities": ["CAP_SYS_ADMIN"]}}),
            v("1.40"),
            &V2
        )
        .is_err());
        assert_eq!(
            hc(json!({"Capabilities": ["CAP_SYS_ADMIN"]}), "1.41", &V2),
            json!({})
        );
        // < 1.42 / 1.43: fields from later versions are dropped.
        assert_eq!(
            hc(
                json!({"Annotations": {"a": "b"}, "ConsoleSize": [1, 2],
                       "Mounts": [{"BindOptions": {"CreateMountpoint": true}}]}),
                "1.41",
                &V2
            ),
            json!({"Mounts": [{"BindOptions": {}}]})
        );
        // No HostConfig: nothing is invented.
        assert_eq!(
            create(json!({"Image": "x"}), v("1.24"), &V1).unwrap(),
            json!({"Image": "x"})
        );
        assert_eq!(
            create(json!({"Image": "x", "HostConfig": null}), v("1.24"), &V1).unwrap(),
            json!({"Image": "x", "HostConfig": null})
        );
    }

    #[test]
    fn label_disable_is_derived_as_the_daemon_does() {
        let hc = |body: Value| {
            create(json!({"HostConfig": body}), v("1.41"), &V2).unwrap()["HostConfig"].clone()
        };
        for body in [
            json!({"Privileged": true}),
            json!({"IpcMode": "host"}),
            json!({"PidMode": "host", "SecurityOpt": null}),
        ] {
            assert_eq!(
                hc(body.clone())["SecurityOpt"],
                json!(["label=disable"]),
                "{body}"
            );
        }
        assert_eq!(
            hc(json!({"Privileged": true, "SecurityOpt": ["seccomp=unconfined"]}))["SecurityOpt"],
            json!(["seccomp=unconfined", "label=disable"])
        );
        assert_eq!(
            hc(json!({"Privileged": true, "SecurityOpt": ["label=type:x"]}))["SecurityOpt"],
            json!(["label=type:x"])
        );
        assert_eq!(
            hc(json!({"Privileged": false, "PidMode": "Host"})),
            json!({"Privileged": false, "PidMode": "Host"})
        );
    }

    #[test]
    fn commit_drops_what_a_commit_ignores() {
        assert_eq!(
            commit(
                json!({"Cmd": ["x"], "Privileged": true, "HostConfig": {"Privileged": true},
                          "networkingconfig": {}, "Env": ["A=1"]})
            ),
            json!({"Cmd": ["x"], "Env": ["A=1"]})
        );
    }

    #[test]
    fn start_bodies() {
        assert_eq!(start(json!(null)).unwrap(), None);
        assert_eq!(start(json!({})).unwrap(), None);
        for body in [
            json!({"Binds": ["/:/h"]}),
            json!({"HostConfig": {}}),
            json!([]),
        ] {
            let err = start(body.clone()).unwrap_err();
            assert!(err.to_string().contains("ContainerCreate"), "{body}: {err}");
        }
    }

    #[test]
    fn update_and_exec_by_version() {
        let body = json!({"PidsLimit": 5, "Memory": 1, "BlkioWeightDevice": [{"Path": "/dev/sda", "Weight": 1}]});
        assert_eq!(update(body.clone(), v("1.39")), json!({"Memory": 1}));
        assert_eq!(
            update(body, v("1.41")),
            json!({"PidsLimit": 5, "Memory": 1})
        );
        let body = json!({"Cmd": ["sh"], "ConsoleSize": [1, 2], "Privileged": false});
        assert_eq!(
            exec(body.clone(), v("1.41")),
            json!({"Cmd": ["sh"], "Privileged": false})
        );
        assert_eq!(exec(body.clone(), v("1.42")), body);
    }
}
