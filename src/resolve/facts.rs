//! The security facts of a resolved object, read from the engine's inspect
//! document, and `host_access`: how the object reaches the host, computed
//! in this one place from those facts.

use std::collections::BTreeMap;

use serde_json::Value;

use super::refs::Site;
use crate::owner::{ContainerFacts, ExecFacts, NetworkFacts, VolumeFacts};

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// `{string: string}` of an object field (labels, driver options); other
/// values are left out.
pub(crate) fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

/// A container's facts from `GET /containers/{id}/json`.
pub(crate) fn container(inspect: &Value) -> ContainerFacts {
    let null = Value::Null;
    let hc = inspect.get("HostConfig").unwrap_or(&null);
    let mount_sources = inspect
        .get("Mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| str_of(m, "Type") == "bind")
        .map(|m| str_of(m, "Source").to_string())
        .collect();
    let devices = hc
        .get("Devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| str_of(d, "PathOnHost").to_string())
        .collect();
    ContainerFacts {
        privileged: hc.get("Privileged").and_then(Value::as_bool) == Some(true),
        network_mode: str_of(hc, "NetworkMode").into(),
        pid_mode: str_of(hc, "PidMode").into(),
        ipc_mode: str_of(hc, "IpcMode").into(),
        uts_mode: str_of(hc, "UTSMode").into(),
        userns_mode: str_of(hc, "UsernsMode").into(),
        cgroupns_mode: str_of(hc, "CgroupnsMode").into(),
        binds: strings(hc.get("Binds")),
        mount_sources,
        devices,
        cap_add: strings(hc.get("CapAdd")),
    }
}

/// A volume's facts from `GET /volumes/{name}`.
pub(crate) fn volume(inspect: &Value) -> VolumeFacts {
    VolumeFacts {
        driver: str_of(inspect, "Driver").into(),
        options: string_map(inspect.get("Options")),
    }
}

/// A network's facts from `GET /networks/{id}`.
pub(crate) fn network(inspect: &Value) -> NetworkFacts {
    NetworkFacts {
        driver: str_of(inspect, "Driver").into(),
        builtin: super::refs::builtin_network(str_of(inspect, "Name")),
    }
}

/// The facts of a volume a ContainerCreate will make: the driver and
/// options of `HostConfig.Mounts[i].VolumeOptions.DriverConfig`, else
/// `HostConfig.VolumeDriver` (the engine's default, `local`, when empty).
pub(crate) fn created_volume(body: &Value, site: &Site) -> VolumeFacts {
    let null = Value::Null;
    let hc = body.get("HostConfig").unwrap_or(&null);
    let config = match site {
        Site::Mount(i) => hc
            .get("Mounts")
            .and_then(|m| m.get(*i))
            .and_then(|m| m.get("VolumeOptions"))
            .and_then(|o| o.get("DriverConfig")),
        _ => None,
    };
    let driver = config
        .map(|c| str_of(c, "Name"))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| str_of(hc, "VolumeDriver"));
    VolumeFacts {
        driver: if driver.is_empty() { "local" } else { driver }.into(),
        options: string_map(config.and_then(|c| c.get("Options"))),
    }
}

/// An exec instance's facts from `GET /exec/{id}/json`.
pub(crate) fn exec(inspect: &Value) -> ExecFacts {
    let null = Value::Null;
    let process = inspect.get("ProcessConfig").unwrap_or(&null);
    ExecFacts {
        container_id: str_of(inspect, "ContainerID").into(),
        privileged: process.get("privileged").and_then(Value::as_bool) == Some(true),
        user: str_of(process, "user").into(),
    }
}

/// Adds `item` unless it is there already (order kept).
fn add(out: &mut Vec<String>, item: String) {
    if !out.contains(&item) {
        out.push(item);
    }
}

/// How a container reaches the host: privileged, a host namespace, a host
/// path bind-mounted, a host device.
pub(crate) fn container_host_access(c: &ContainerFacts) -> Vec<String> {
    let mut out = Vec::new();
    if c.privileged {
        add(&mut out, "privileged".into());
    }
    for (name, mode) in [
        ("network", &c.network_mode),
        ("pid", &c.pid_mode),
        ("ipc", &c.ipc_mode),
        ("uts", &c.uts_mode),
        ("userns", &c.userns_mode),
        ("cgroupns", &c.cgroupns_mode),
    ] {
        if mode == "host" {
            add(&mut out, format!("{name}=host"));
        }
    }
    let bind_sources = c.binds.iter().filter_map(|b| {
        let source = b.split(':').next().unwrap_or("");
        source.starts_with('/').then_some(source)
    });
    for source in bind_sources.chain(c.mount_sources.iter().map(String::as_str)) {
        if !source.is_empty() {
            add(&mut out, format!("bind:{source}"));
        }
    }
    for d in c.devices.iter().filter(|d| !d.is_empty()) {
        add(&mut out, format!("device:{d}"));
    }
    out
}

/// How an exec reaches the host: its container's access, and `privileged`
/// when the exec itself is.
pub(crate) fn exec_host_access(e: &ExecFacts, container: &ContainerFacts) -> Vec<String> {
    let mut out = container_host_access(container);
    if e.privileged {
        add(&mut out, "privileged".into());
    }
    out
}

/// How a volume reaches the host: a `local` volume whose options bind-mount
/// a host path (`o=bind`, or `type=none`, with a `device`), or mount a host
/// block device (`device=/dev/…`).
pub(crate) fn volume_host_access(v: &VolumeFacts) -> Vec<String> {
    let local = v.driver.is_empty() || v.driver == "local";
    let Some(device) = v.options.get("device").filter(|d| local && !d.is_empty()) else {
        return Vec::new();
    };
    let bind = v.options.get("type").map(String::as_str) == Some("none")
        || v.options.get("o").is_some_and(|o| {
            o.split(',')
                .any(|opt| matches!(opt.trim(), "bind" | "rbind"))
        });
    if bind {
        vec![format!("volume-bind:{device}")]
    } else if device.starts_with('/') && !device.starts_with("//") {
        // A path that is not a bind and not a network share (`//server`,
        // `:/export` for NFS): a host block device.
        vec![format!("volume-device:{device}")]
    } else {
        Vec::new()
    }
}

/// How a network reaches the host: the host network.
pub(crate) fn network_host_access(name: &str, n: &NetworkFacts) -> Vec<String> {
    if name == "host" || n.driver == "host" {
        vec!["network=host".into()]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn container_facts_and_host_access_from_inspect() {
        let inspect = json!({
            "Id": "abc", "Name": "/ops",
            "HostConfig": {
                "Privileged": true, "NetworkMode": "host", "PidMode": "host",
                "IpcMode": "private", "UTSMode": "host", "UsernsMode": "", "CgroupnsMode": "host",
                "Binds": ["/:/host", "named:/data", "/etc:/e:ro"],
                "Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda"}],
                "CapAdd": ["SYS_ADMIN"]
            },
            "Mounts": [
                {"Type": "bind", "Source": "/", "Destination": "/host"},
                {"Type": "volume", "Source": "/var/lib/docker/volumes/named/_data"},
                {"Type": "bind", "Source": "/srv", "Destination": "/srv"}
            ]
        });
        let c = container(&inspect);
        assert!(c.privileged);
        assert_eq!(c.mount_sources, ["/", "/srv"]);
        assert_eq!(c.devices, ["/dev/sda"]);
        assert_eq!(c.cap_add, ["SYS_ADMIN"]);
        assert_eq!(
            container_host_access(&c),
            [
                "privileged",
                "network=host",
                "pid=host",
                "uts=host",
                "cgroupns=host",
                "bind:/",
                "bind:/etc",
                "bind:/srv",
                "device:/dev/sda"
            ]
        );
    }

    #[test]
    fn an_ordinary_container_has_no_host_access() {
        let inspect = json!({
            "HostConfig": {"NetworkMode": "bridge", "PidMode": "", "IpcMode": "private",
                           "CgroupnsMode": "private", "Binds": null, "Devices": []},
            "Mounts": [{"Type": "volume", "Source": "/var/lib/docker/volumes/v/_data"}]
        });
        assert!(container_host_access(&container(&inspect)).is_empty());
        // What the fake engine answers (no HostConfig at all).
        assert!(container_host_access(&container(&json!({"Id": "x"}))).is_empty());
    }

    #[test]
    fn volume_options_that_reach_the_host() {
        let vol = |driver: &str, opts: Value| volume(&json!({"Driver": driver, "Options": opts}));
        for (v, want) in [
            (
                vol("local", json!({"type": "none", "o": "bind", "device": "/"})),
                vec!["volume-bind:/"],
            ),
            (
                vol("local", json!({"o": "ro,rbind", "device": "/etc"})),
                vec!["volume-bind:/etc"],
            ),
            (
                vol("", json!({"type": "none", "device": "/srv"})),
                vec!["volume-bind:/srv"],
            ),
            (
                vol("local", json!({"type": "ext4", "device": "/dev/sda1"})),
                vec!["volume-device:/dev/sda1"],
            ),
            (
                vol(
                    "local",
                    json!({"type": "nfs", "o": "addr=10.0.0.1", "device": ":/export"}),
                ),
                vec![],
            ),
            (
                vol("local", json!({"type": "cifs", "device": "//server/share"})),
                vec![],
            ),
            (
                vol("local", json!({"type": "tmpfs", "device": "tmpfs"})),
                vec![],
            ),
            (vol("local", json!(null)), vec![]),
            (vol("other", json!({"o": "bind", "device": "/"})), vec![]),
        ] {
            assert_eq!(volume_host_access(&v), want, "{v:?}");
        }
    }

    #[test]
    fn a_volume_a_create_makes_has_the_body_s_driver_and_options() {
        let body = json!({"HostConfig": {
            "VolumeDriver": "",
            "Binds": ["new:/n"],
            "Mounts": [{"Type": "volume", "Source": "hostvol", "Target": "/h",
                        "VolumeOptions": {"DriverConfig": {"Name": "local",
                            "Options": {"type": "none", "o": "bind", "device": "/"}}}}]
        }});
        let v = created_volume(&body, &Site::Mount(0));
        assert_eq!(volume_host_access(&v), ["volume-bind:/"]);
        let v = created_volume(&body, &Site::Bind(0));
        assert_eq!(v.driver, "local");
        assert!(volume_host_access(&v).is_empty());
    }

    #[test]
    fn exec_adds_its_own_privilege_to_its_containers_access() {
        let e = exec(
            &json!({"ContainerID": "c1", "ProcessConfig": {"privileged": true, "user": "root"}}),
        );
        assert_eq!(e.container_id, "c1");
        assert_eq!(e.user, "root");
        let c = ContainerFacts {
            pid_mode: "host".into(),
            ..Default::default()
        };
        assert_eq!(exec_host_access(&e, &c), ["pid=host", "privileged"]);
    }

    #[test]
    fn the_host_network_reaches_the_host() {
        let host = network(&json!({"Name": "host", "Driver": "host"}));
        assert!(host.builtin);
        assert_eq!(network_host_access("host", &host), ["network=host"]);
        let mine = network(&json!({"Name": "mine", "Driver": "bridge"}));
        assert!(!mine.builtin);
        assert!(network_host_access("mine", &mine).is_empty());
    }
}
