//! The addresses the engine will contact because of a request
//! (`input.operation.fetches`): a URL to download, a registry to pull from
//! or push to, a log server, a network file system, a swarm manager.
//!
//! Some operations make the engine act as a network client on the client's
//! behalf, from the gateway host's network, loopback and cloud metadata
//! services included: server-side request forgery, unless the policy sees
//! where the engine will connect. Each parameter that does so is listed
//! here, from the daemon's handlers (moby v20.10.24 and the newest); the
//! table in `docs/policy-input.md` is the same list.
//!
//! The facts are computed from the effective request (the query as
//! forwarded, the effective body), never from a name lookup: see
//! [`address`]. Where the daemon reads only the first value of a repeated
//! query parameter, every value is listed.

pub mod address;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::classify::OpId;
use address::{AddressClass, Endpoint};

/// One address the engine will contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetch {
    /// Where the address comes from: a query parameter (`fromSrc`), a path
    /// parameter (`name`) or a body field (`HostConfig.LogConfig.Config.syslog-address`).
    pub param: String,
    pub kind: Kind,
    /// The value as the client sent it.
    pub value: String,
    /// The host, lower-cased, without brackets; a unix socket's path.
    pub host: String,
    pub port: Option<u16>,
    pub address_class: AddressClass,
    /// For `kind: registry`: the registry as the reference grammar derives
    /// it (`docker.io`, `localhost:5000`, `[::1]:5000`), lower-cased.
    pub registry: Option<String>,
}

/// What kind of address a [`Fetch`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A URL the engine downloads from or sends to.
    Url,
    /// An image (or plugin) registry.
    Registry,
    /// A `host[:port]` (or a file system device naming a server).
    Address,
}

/// Every address the engine will contact because of this request.
pub fn fetches(
    op: OpId,
    query: &[(String, String)],
    params: &[(&'static str, String)],
    body: Option<&Value>,
) -> Vec<Fetch> {
    let mut out = Vec::new();
    let q = |name: &'static str| {
        query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let p = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = body.unwrap_or(&Value::Null);
    match op {
        OpId::ImageCreate => {
            for v in q("fromImage").filter(|v| !v.is_empty()) {
                out.push(registry("fromImage", v));
            }
            // `-` imports the request body; anything else is downloaded
            // (`http://` is prefixed when there is no scheme).
            for v in q("fromSrc").filter(|v| *v != "-") {
                out.push(url("fromSrc", v));
            }
        }
        OpId::ImageBuild => {
            for v in q("remote") {
                // Not fetched: no remote (the body is the context), the
                // classic builder's refused session, BuildKit's context in
                // the request body.
                if !matches!(v, "" | "client-session" | "upload-request") {
                    out.push(url("remote", v));
                }
            }
            for v in q("cachefrom") {
                cache_from(v, &mut out);
            }
        }
        OpId::ImagePush | OpId::DistributionInspect | OpId::PluginPush => {
            if let Some(name) = p("name") {
                out.push(registry("name", name));
            }
        }
        OpId::ImageSearch => {
            for v in q("term") {
                out.push(registry("term", v));
            }
        }
        OpId::PluginPull | OpId::PluginUpgrade | OpId::GetPluginPrivileges => {
            for v in q("remote") {
                out.push(registry("remote", v));
            }
        }
        OpId::SystemAuth => {
            let v = str_at(body, &["serveraddress"]).unwrap_or("");
            let reg = address::registry_of_server_address(v);
            out.push(registry_fact("serveraddress", v, reg));
        }
        OpId::SwarmJoin => {
            for v in strings_at(body, &["RemoteAddrs"]) {
                out.push(addr("RemoteAddrs", v, address::host_port(v)));
            }
        }
        OpId::SwarmInit => external_cas(body, &["Spec", "CAConfig"], "Spec.", &mut out),
        OpId::SwarmUpdate => external_cas(body, &["CAConfig"], "", &mut out),
        OpId::ContainerCreate => {
            let hc = at(body, &["HostConfig"]);
            if let Some(lc) = hc.and_then(|hc| at(hc, &["LogConfig"])) {
                let driver = str_at(lc, &["Type"]).unwrap_or("");
                log_options(
                    driver,
                    at(lc, &["Config"]),
                    "HostConfig.LogConfig.Config",
                    &mut out,
                );
            }
            mounts(
                hc.and_then(|hc| at(hc, &["Mounts"])),
                "HostConfig.Mounts",
                &mut out,
            );
        }
        OpId::VolumeCreate => {
            let driver = str_at(body, &["Driver"]).unwrap_or("");
            volume_options(driver, at(body, &["DriverOpts"]), "DriverOpts", &mut out);
        }
        OpId::ServiceCreate | OpId::ServiceUpdate => {
            let task = at(body, &["TaskTemplate"]);
            let cs = task.and_then(|t| at(t, &["ContainerSpec"]));
            if let Some(image) = cs.and_then(|cs| str_at(cs, &["Image"])) {
                out.push(registry("TaskTemplate.ContainerSpec.Image", image));
            }
            if let Some(remote) = task.and_then(|t| str_at(t, &["PluginSpec", "Remote"])) {
                out.push(registry("TaskTemplate.PluginSpec.Remote", remote));
            }
            if let Some(ld) = task.and_then(|t| at(t, &["LogDriver"])) {
                let driver = str_at(ld, &["Name"]).unwrap_or("");
                log_options(
                    driver,
                    at(ld, &["Options"]),
                    "TaskTemplate.LogDriver.Options",
                    &mut out,
                );
            }
            mounts(
                cs.and_then(|cs| at(cs, &["Mounts"])),
                "TaskTemplate.ContainerSpec.Mounts",
                &mut out,
            );
        }
        _ => {}
    }
    out
}

fn url(param: &str, value: &str) -> Fetch {
    let e = address::url(value);
    fact(param, Kind::Url, value, e, None)
}

fn addr(param: &str, value: &str, e: Endpoint) -> Fetch {
    fact(param, Kind::Address, value, e, None)
}

fn registry(param: &str, reference: &str) -> Fetch {
    registry_fact(param, reference, address::registry_of_reference(reference))
}

fn registry_fact(param: &str, value: &str, registry: String) -> Fetch {
    let e = address::host_port(&registry);
    fact(param, Kind::Registry, value, e, Some(registry))
}

fn fact(param: &str, kind: Kind, value: &str, e: Endpoint, registry: Option<String>) -> Fetch {
    Fetch {
        param: param.to_owned(),
        kind,
        value: value.to_owned(),
        address_class: e.class(),
        host: e.host,
        port: e.port,
        registry,
    }
}

/// A `cachefrom` value: a JSON array of image references, or (BuildKit)
/// of `type=registry,ref=…` entries; `type=local` reads from the client's
/// session, not the network. A value that is not such an array is refused
/// by the daemon.
fn cache_from(value: &str, out: &mut Vec<Fetch>) {
    let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(value) else {
        return;
    };
    for entry in entries.iter().filter_map(Value::as_str) {
        if !entry.contains('=') {
            out.push(registry("cachefrom", entry));
            continue;
        }
        let attrs: Vec<(&str, &str)> = entry
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |k: &str| {
            attrs
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(k))
                .map(|(_, v)| *v)
        };
        match (get("type"), get("ref"), get("url")) {
            (Some(t), _, _) if t.eq_ignore_ascii_case("local") => {}
            (_, Some(r), _) => out.push(registry("cachefrom", r)),
            (_, None, Some(u)) => out.push(url("cachefrom", u)),
            // Not a form moat knows: listed whole, which no allowed
            // registry matches.
            _ => out.push(registry("cachefrom", entry)),
        }
    }
}

/// Log driver options that name a server: the built-in drivers' keys
/// (`syslog-address`, `gelf-address`, `fluentd-address`, `splunk-url`,
/// `awslogs-endpoint`) and, for logging plugins such as Loki (`loki-url`),
/// any key ending in `-address`, `-url`, `-endpoint` or `-host`. The
/// `fluentd` driver without an address sends to `localhost:24224`.
fn log_options(driver: &str, config: Option<&Value>, prefix: &str, out: &mut Vec<Fetch>) {
    let mut fluentd_address = false;
    if let Some(Value::Object(config)) = config {
        for (key, v) in config {
            let Some(v) = v.as_str() else { continue };
            let k = key.to_ascii_lowercase();
            if !["-address", "-url", "-endpoint", "-host"]
                .iter()
                .any(|s| k.ends_with(s))
            {
                continue;
            }
            if v.is_empty() {
                continue;
            }
            fluentd_address |= k == "fluentd-address";
            let param = format!("{prefix}.{key}");
            out.push(if v.contains("://") {
                url(&param, v)
            } else {
                addr(&param, v, address::host_port(v))
            });
        }
    }
    if driver.eq_ignore_ascii_case("fluentd") && !fluentd_address {
        let e = Endpoint {
            host: "localhost".to_owned(),
            port: Some(24224),
        };
        out.push(addr(&format!("{prefix}.fluentd-address"), "", e));
    }
}

/// Mount options of the local volume driver that name a server.
const ADDRESS_OPTIONS: [&str; 4] = ["addr", "ip", "mountaddr", "mounthost"];

/// File system types whose `device` names a server: NFS `host:/path`,
/// CIFS/SMB `//host/share`, Ceph `mon[:port][,mon…]:/path`, 9p and
/// GlusterFS `host`.
const NETWORK_FS: [&str; 8] = [
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "9p",
    "glusterfs",
];

/// The local volume driver's options (`type`, `device`, `o`): the kernel
/// mounts `device` with `o`, and the daemon resolves `o=addr=`. Only the
/// `local` driver (the default); plugins' options are their own.
fn volume_options(driver: &str, opts: Option<&Value>, prefix: &str, out: &mut Vec<Fetch>) {
    if !(driver.is_empty() || driver == "local") {
        return;
    }
    let Some(Value::Object(opts)) = opts else {
        return;
    };
    let get = |k: &str| get_ci(opts, k).and_then(Value::as_str);
    let fs = get("type").unwrap_or("").to_ascii_lowercase();
    if let Some(o) = get("o") {
        for opt in o.split(',') {
            let Some((k, v)) = opt.split_once('=') else {
                continue;
            };
            if ADDRESS_OPTIONS.contains(&k.trim().to_ascii_lowercase().as_str()) {
                out.push(addr(&format!("{prefix}.o"), opt, address::host_port(v)));
            }
        }
    }
    if let Some(device) = get("device").filter(|_| NETWORK_FS.contains(&fs.as_str())) {
        for server in device_servers(&fs, device)
            .into_iter()
            .filter(|s| !s.is_empty())
        {
            out.push(addr(
                &format!("{prefix}.device"),
                device,
                address::host_port(server),
            ));
        }
    }
}

/// The servers a network file system's device names.
fn device_servers<'a>(fs: &str, device: &'a str) -> Vec<&'a str> {
    if let Some(rest) = device
        .strip_prefix("//")
        .or_else(|| device.strip_prefix("\\\\"))
    {
        return vec![rest.split(['/', '\\']).next().unwrap_or("")];
    }
    match fs {
        "nfs" | "nfs4" => {
            // `host:/path`, `[v6]:/path`.
            let server = match device.find(":/") {
                Some(i) => &device[..i],
                None => device,
            };
            vec![server]
        }
        "ceph" => {
            let servers = match device.find(":/") {
                Some(i) => &device[..i],
                None => device,
            };
            servers.split(',').collect()
        }
        _ => vec![device.split(['/', ':']).next().unwrap_or("")],
    }
}

/// Mounts of type `volume` whose `VolumeOptions.DriverConfig` creates a
/// local-driver volume with options.
fn mounts(mounts: Option<&Value>, prefix: &str, out: &mut Vec<Fetch>) {
    let Some(Value::Array(mounts)) = mounts else {
        return;
    };
    for m in mounts {
        let Some(dc) = at(m, &["VolumeOptions", "DriverConfig"]) else {
            continue;
        };
        let driver = str_at(dc, &["Name"]).unwrap_or("");
        let p = format!("{prefix}.VolumeOptions.DriverConfig.Options");
        volume_options(driver, at(dc, &["Options"]), &p, out);
    }
}

/// Swarm's external certificate authorities, which the managers contact.
fn external_cas(body: &Value, path: &[&str], prefix: &str, out: &mut Vec<Fetch>) {
    let Some(Value::Array(cas)) = at(body, path).and_then(|c| at(c, &["ExternalCAs"])) else {
        return;
    };
    for ca in cas {
        if let Some(u) = str_at(ca, &["URL"]) {
            out.push(url(&format!("{prefix}CAConfig.ExternalCAs.URL"), u));
        }
    }
}

/// A key of a JSON object as the daemon's decoder finds it: the exact
/// spelling, else case-insensitively (the effective body is already
/// canonical; this keeps the extraction right if it were not).
fn get_ci<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = get_ci(cur.as_object()?, key)?;
    }
    (!cur.is_null()).then_some(cur)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn strings_at<'a>(v: &'a Value, path: &[&str]) -> Vec<&'a str> {
    match at(v, path) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
