//! Which objects a request names, and where: the path parameter of a
//! container, exec, volume or network operation, and the references in the
//! bodies of ContainerCreate, NetworkConnect and NetworkDisconnect.
//!
//! Each reference is parsed as the daemon parses it (`container:X` modes,
//! `X[:ro|rw]` volumes-from, `X[:alias]` links, `name:/dst[:opts]` binds),
//! and knows how to write the canonical id back into the body ([`Site`]),
//! so that the engine receives the id the policy saw.

use serde_json::Value;

use crate::classify::OpId;
use crate::owner::Kind;

/// One reference a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ref {
    pub(crate) kind: Kind,
    /// The reference as the client gave it.
    pub(crate) reference: String,
    pub(crate) site: Site,
}

/// Where a reference sits, and so how its id is written back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Site {
    /// The route's path parameter.
    Path,
    /// The first value of a query parameter (the one the daemon reads):
    /// ImageCommit's `container`.
    Query(&'static str),
    /// `HostConfig.<field>` (`NetworkMode`, `PidMode`, `IpcMode`) as
    /// `container:X`.
    ContainerMode(&'static str),
    /// `HostConfig.NetworkMode` naming a user-defined network.
    NetworkMode,
    /// `HostConfig.VolumesFrom[i]`: `X` then `rest` (`:ro`, `:rw` or
    /// nothing).
    VolumesFrom { index: usize, rest: String },
    /// `HostConfig.Links[i]`, `X:alias`.
    Link { index: usize, alias: String },
    /// `HostConfig.Binds[i]`: a named volume (its id is its name: nothing
    /// to rewrite).
    Bind(usize),
    /// `HostConfig.Mounts[i]` of type `volume`.
    Mount(usize),
    /// A key of `NetworkingConfig.EndpointsConfig`.
    Endpoint,
    /// `Links[i]` (`X:alias`) of an endpoint's settings: of
    /// `NetworkingConfig.EndpointsConfig.<key>` (ContainerCreate; `key`
    /// set) or of NetworkConnect's `EndpointConfig` (`key` none). On a
    /// user-defined network a link is a DNS alias for X.
    EndpointLink {
        key: Option<String>,
        index: usize,
        alias: String,
    },
    /// NetworkConnect/Disconnect's `Container`.
    Container,
}

impl Site {
    /// The position as the policy sees it (`input.resources[].position`).
    pub(crate) fn position(&self, reference: &str) -> String {
        match self {
            Site::Path => "path".into(),
            Site::Query(name) => format!("query.{name}"),
            Site::ContainerMode(field) => format!("HostConfig.{field}"),
            Site::NetworkMode => "HostConfig.NetworkMode".into(),
            Site::VolumesFrom { index, .. } => format!("HostConfig.VolumesFrom[{index}]"),
            Site::Link { index, .. } => format!("HostConfig.Links[{index}]"),
            Site::Bind(i) => format!("HostConfig.Binds[{i}]"),
            Site::Mount(i) => format!("HostConfig.Mounts[{i}]"),
            Site::Endpoint => format!("NetworkingConfig.EndpointsConfig.{reference}"),
            Site::EndpointLink {
                key: Some(key),
                index,
                ..
            } => format!("NetworkingConfig.EndpointsConfig.{key}.Links[{index}]"),
            Site::EndpointLink {
                key: None, index, ..
            } => format!("EndpointConfig.Links[{index}]"),
            Site::Container => "Container".into(),
        }
    }

    /// Whether a missing object at this site is a volume a create will
    /// make, rather than an error.
    pub(crate) fn may_be_created(&self) -> bool {
        matches!(self, Site::Bind(_) | Site::Mount(_))
    }
}

/// The kind of object an operation's path parameter names, if any.
pub(crate) fn path_kind(op: OpId) -> Option<Kind> {
    use OpId::*;
    Some(match op {
        CheckpointList
        | CheckpointCreate
        | CheckpointDelete
        | ContainerArchiveInfo
        | ContainerExport
        | ContainerChanges
        | ContainerInspect
        | ContainerTop
        | ContainerLogs
        | ContainerStats
        | ContainerAttachWebsocket
        | ContainerArchive
        | ContainerKill
        | ContainerPause
        | ContainerUnpause
        | ContainerRestart
        | ContainerStart
        | ContainerStop
        | ContainerWait
        | ContainerResize
        | ContainerAttach
        | ContainerExec
        | ContainerRename
        | ContainerUpdate
        | PutContainerArchive
        | ContainerDelete => Kind::Container,
        ExecInspect | ExecStart | ExecResize => Kind::Exec,
        VolumeInspect | VolumeUpdate | VolumeDelete => Kind::Volume,
        NetworkInspect | NetworkConnect | NetworkDisconnect | NetworkDelete => Kind::Network,
        _ => return None,
    })
}

/// The references of a request: its path parameter (or query) first, then
/// its body's.
pub(crate) fn refs(
    op: OpId,
    params: &[(&'static str, String)],
    query: &[(String, String)],
    body: Option<&Value>,
) -> Vec<Ref> {
    let mut out = Vec::new();
    if op == OpId::ImageCommit {
        // The container whose file system becomes an image: the daemon
        // reads the first `container` value (`r.Form.Get`).
        if let Some((_, c)) = query.iter().find(|(k, _)| k == "container") {
            push(&mut out, Kind::Container, c, Site::Query("container"));
        }
    }
    if let Some(kind) = path_kind(op) {
        // Each of these routes has exactly one parameter (`name` or `id`),
        // the object; CheckpointDelete's second names a checkpoint.
        if let Some((_, value)) = params.iter().find(|(k, _)| *k == "name" || *k == "id") {
            out.push(Ref {
                kind,
                reference: value.clone(),
                site: Site::Path,
            });
        }
    }
    let Some(body) = body else {
        return out;
    };
    match op {
        OpId::ContainerCreate => create_refs(body, &mut out),
        OpId::NetworkConnect | OpId::NetworkDisconnect => {
            if let Some(c) = body.get("Container").and_then(Value::as_str) {
                push(&mut out, Kind::Container, c, Site::Container);
            }
            if op == OpId::NetworkConnect {
                endpoint_links(body.get("EndpointConfig"), None, &mut out);
            }
        }
        _ => {}
    }
    out
}

fn push(out: &mut Vec<Ref>, kind: Kind, reference: &str, site: Site) {
    if !reference.is_empty() {
        out.push(Ref {
            kind,
            reference: reference.to_string(),
            site,
        });
    }
}

/// The strings of an array field (nulls and other types yield nothing: the
/// body stage has checked the types the daemon decodes).
fn strings(v: Option<&Value>) -> impl Iterator<Item = (usize, &str)> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| s.as_str().map(|s| (i, s)))
}

fn create_refs(body: &Value, out: &mut Vec<Ref>) {
    let hc = body.get("HostConfig").filter(|h| h.is_object());
    if let Some(hc) = hc {
        for field in ["NetworkMode", "PidMode", "IpcMode"] {
            let Some(mode) = hc.get(field).and_then(Value::as_str) else {
                continue;
            };
            if let Some(target) = container_mode(mode) {
                push(out, Kind::Container, target, Site::ContainerMode(field));
            } else if field == "NetworkMode" && user_network(mode) {
                push(out, Kind::Network, mode, Site::NetworkMode);
            }
        }
        for (index, spec) in strings(hc.get("VolumesFrom")) {
            let (name, rest) = match spec.split_once(':') {
                Some((name, mode)) => (name, format!(":{mode}")),
                None => (spec, String::new()),
            };
            push(
                out,
                Kind::Container,
                name,
                Site::VolumesFrom { index, rest },
            );
        }
        for (index, link) in strings(hc.get("Links")) {
            if let Some((name, alias)) = parse_link(link) {
                let alias = alias.to_string();
                push(out, Kind::Container, name, Site::Link { index, alias });
            }
        }
        for (i, bind) in strings(hc.get("Binds")) {
            if let Some(name) = bind_volume(bind) {
                push(out, Kind::Volume, name, Site::Bind(i));
            }
        }
        let mounts = hc.get("Mounts").and_then(Value::as_array);
        for (i, m) in mounts.into_iter().flatten().enumerate() {
            if m.get("Type").and_then(Value::as_str) == Some("volume") {
                if let Some(source) = m.get("Source").and_then(Value::as_str) {
                    push(out, Kind::Volume, source, Site::Mount(i));
                }
            }
        }
    }
    let endpoints = body
        .get("NetworkingConfig")
        .and_then(|n| n.get("EndpointsConfig"))
        .and_then(Value::as_object);
    // The links first: rewriting a key moves its settings.
    for (key, settings) in endpoints.into_iter().flatten() {
        endpoint_links(Some(settings), Some(key), out);
    }
    for key in endpoints.into_iter().flat_map(|m| m.keys()) {
        // `default` is a mode (the daemon's default network), not a name.
        if key != "default" {
            push(out, Kind::Network, key, Site::Endpoint);
        }
    }
}

/// The `Links` of an endpoint's settings.
fn endpoint_links(settings: Option<&Value>, key: Option<&String>, out: &mut Vec<Ref>) {
    for (index, link) in strings(settings.and_then(|s| s.get("Links"))) {
        if let Some((name, alias)) = parse_link(link) {
            let site = Site::EndpointLink {
                key: key.cloned(),
                index,
                alias: alias.to_string(),
            };
            push(out, Kind::Container, name, site);
        }
    }
}

/// `X` of a `container:X` mode (Go: `SplitN(mode, ":", 2)`).
fn container_mode(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:")
}

/// A network mode that names a network (the daemon's `IsUserDefined`):
/// not `default`, `bridge`, `host`, `none` or `container:…`.
pub(crate) fn user_network(mode: &str) -> bool {
    !matches!(mode, "" | "default" | "bridge" | "host" | "none") && !mode.starts_with("container:")
}

/// The built-in networks, which are modes as much as networks: their names
/// are never rewritten (the daemon treats them by name) and they cannot be
/// removed or recreated.
pub(crate) fn builtin_network(name: &str) -> bool {
    matches!(name, "bridge" | "host" | "none")
}

/// A link's container and alias, as the daemon's `opts.ParseLink`: `X`
/// (alias `X`), `X:alias`, or the stored form `/X:/c/alias`. `None` for
/// what the daemon refuses (empty, more than one `:`).
pub(crate) fn parse_link(link: &str) -> Option<(&str, &str)> {
    let mut parts = link.split(':');
    let (first, second, more) = (parts.next()?, parts.next(), parts.next());
    if link.is_empty() || more.is_some() {
        return None;
    }
    match second {
        None => Some((link, link)),
        Some(alias) => match first.strip_prefix('/') {
            Some(name) => Some((name, alias.rsplit('/').next().unwrap_or(alias))),
            None => Some((first, alias)),
        },
    }
}

/// The named volume of a `Binds` entry `name:/dst[:opts]`: `None` for a
/// host path (an absolute source) and for an anonymous volume (`/dst`).
pub(crate) fn bind_volume(bind: &str) -> Option<&str> {
    let (source, _) = bind.split_once(':')?;
    (!source.is_empty() && !source.starts_with('/')).then_some(source)
}

/// Writes `id` into `body` where `r` was found. `false` when the body no
/// longer has the reference there (it cannot happen: the body is not
/// changed between finding and rewriting).
pub(crate) fn rewrite(body: &mut Value, r: &Ref, id: &str) -> bool {
    fn hc(b: &mut Value) -> Option<&mut Value> {
        b.get_mut("HostConfig")
    }
    let set = |slot: Option<&mut Value>, new: String| match slot {
        Some(v) => {
            *v = Value::String(new);
            true
        }
        None => false,
    };
    match &r.site {
        Site::Path | Site::Query(_) | Site::Bind(_) | Site::Mount(_) => true,
        Site::ContainerMode(field) => set(
            hc(body).and_then(|h| h.get_mut(*field)),
            format!("container:{id}"),
        ),
        Site::NetworkMode => set(hc(body).and_then(|h| h.get_mut("NetworkMode")), id.into()),
        Site::VolumesFrom { index, rest } => set(
            hc(body).and_then(|h| h.get_mut("VolumesFrom")?.get_mut(*index)),
            format!("{id}{rest}"),
        ),
        Site::Link { index, alias } => set(
            hc(body).and_then(|h| h.get_mut("Links")?.get_mut(*index)),
            format!("{id}:{alias}"),
        ),
        Site::Container => set(body.get_mut("Container"), id.into()),
        Site::EndpointLink { key, index, alias } => {
            let settings = match key {
                Some(key) => body
                    .get_mut("NetworkingConfig")
                    .and_then(|n| n.get_mut("EndpointsConfig"))
                    .and_then(|e| e.get_mut(key)),
                None => body.get_mut("EndpointConfig"),
            };
            set(
                settings.and_then(|s| s.get_mut("Links")?.get_mut(*index)),
                format!("{id}:{alias}"),
            )
        }
        Site::Endpoint => {
            let Some(map) = body
                .get_mut("NetworkingConfig")
                .and_then(|n| n.get_mut("EndpointsConfig"))
                .and_then(Value::as_object_mut)
            else {
                return false;
            };
            if r.reference == id {
                return map.contains_key(id);
            }
            match map.remove(&r.reference) {
                Some(v) => {
                    map.insert(id.to_string(), v);
                    true
                }
                None => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn positions(op: OpId, params: &[(&'static str, String)], body: &Value) -> Vec<String> {
        refs(op, params, &[], Some(body))
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.kind,
                    r.site.position(&r.reference),
                    r.reference
                )
            })
            .collect()
    }

    #[test]
    fn create_body_references_are_found_as_the_daemon_parses_them() {
        let body = json!({
            "Image": "busybox",
            "HostConfig": {
                "NetworkMode": "container:web",
                "PidMode": "container:db:x",
                "IpcMode": "shareable",
                "VolumesFrom": ["data:ro", "logs", 7],
                "Links": ["cache", "db:database", "/old:/me/alias", "a:b:c", ""],
                "Binds": ["/srv:/srv:ro", "named:/data", "/anon", "vol2:/v:rw,z"],
                "Mounts": [
                    {"Type": "volume", "Source": "mvol", "Target": "/m"},
                    {"Type": "bind", "Source": "/etc", "Target": "/e"},
                    {"Type": "volume", "Target": "/anon"}
                ]
            },
            "NetworkingConfig": {"EndpointsConfig": {"default": {}, "backend": {"Aliases": ["x"], "Links": ["api:a"]}}}
        });
        assert_eq!(
            positions(OpId::ContainerCreate, &[], &body),
            [
                "container HostConfig.NetworkMode web",
                "container HostConfig.PidMode db:x",
                "container HostConfig.VolumesFrom[0] data",
                "container HostConfig.VolumesFrom[1] logs",
                "container HostConfig.Links[0] cache",
                "container HostConfig.Links[1] db",
                "container HostConfig.Links[2] old",
                "volume HostConfig.Binds[1] named",
                "volume HostConfig.Binds[3] vol2",
                "volume HostConfig.Mounts[0] mvol",
                "container NetworkingConfig.EndpointsConfig.backend.Links[0] api",
                "network NetworkingConfig.EndpointsConfig.backend backend",
            ]
        );
    }

    #[test]
    fn network_modes_name_a_network_only_when_user_defined() {
        for (mode, want) in [
            ("mynet", vec!["network HostConfig.NetworkMode mynet"]),
            ("host", vec![]),
            ("bridge", vec![]),
            ("none", vec![]),
            ("default", vec![]),
            ("", vec![]),
            ("container:x", vec!["container HostConfig.NetworkMode x"]),
            ("container:", vec![]),
        ] {
            let body = json!({"HostConfig": {"NetworkMode": mode}});
            assert_eq!(positions(OpId::ContainerCreate, &[], &body), want, "{mode}");
        }
    }

    #[test]
    fn nulls_and_odd_shapes_name_nothing() {
        for body in [
            json!(null),
            json!({"HostConfig": null}),
            json!({"HostConfig": {"Binds": null, "Links": null, "VolumesFrom": null, "Mounts": null}}),
            json!({"NetworkingConfig": {"EndpointsConfig": null}}),
        ] {
            assert!(refs(OpId::ContainerCreate, &[], &[], Some(&body)).is_empty());
        }
    }

    #[test]
    fn path_parameters_name_the_object_of_their_family() {
        let p = |k: &'static str, v: &str| vec![(k, v.to_string())];
        let r = refs(OpId::ContainerStop, &p("name", "web"), &[], None);
        assert_eq!(
            (r[0].kind, r[0].reference.as_str()),
            (Kind::Container, "web")
        );
        let r = refs(OpId::ExecStart, &p("name", "abc"), &[], None);
        assert_eq!(r[0].kind, Kind::Exec);
        let r = refs(OpId::NetworkDelete, &p("id", "n1"), &[], None);
        assert_eq!(r[0].kind, Kind::Network);
        let r = refs(
            OpId::CheckpointDelete,
            &[("name", "web".into()), ("checkpoint", "c1".into())],
            &[],
            None,
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reference, "web");
        let body = json!({"Container": "web", "EndpointConfig": {"Links": ["db"]}});
        assert_eq!(
            positions(OpId::NetworkConnect, &p("id", "backend"), &body),
            [
                "network path backend",
                "container Container web",
                "container EndpointConfig.Links[0] db"
            ]
        );
        for op in [
            OpId::ImageDelete,
            OpId::ContainerList,
            OpId::ContainerCreate,
        ] {
            assert!(path_kind(op).is_none(), "{op}");
        }
    }

    #[test]
    fn a_commit_names_its_container_by_the_first_query_value() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let r = refs(
            OpId::ImageCommit,
            &[],
            &q(&[("repo", "x"), ("container", "web"), ("container", "db")]),
            Some(&json!({})),
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reference, "web");
        assert_eq!(r[0].site.position("web"), "query.container");
        assert!(refs(OpId::ImageCommit, &[], &q(&[("repo", "x")]), None).is_empty());
    }

    /// Every route of the daemon's table with a path parameter under
    /// `/containers/`, `/exec/`, `/volumes/` or `/networks/` resolves it: a
    /// new operation cannot slip through unresolved.
    #[test]
    fn every_object_route_resolves_its_parameter() {
        let table = include_str!("../classify/routes.tsv");
        let mut n = 0;
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let (path, op) = (cols[2], cols[3]);
            let object = ["/containers/{", "/exec/{", "/volumes/{", "/networks/{"]
                .iter()
                .any(|p| path.starts_with(p));
            let op = OpId::from_name(op).unwrap();
            assert_eq!(path_kind(op).is_some(), object, "{op} {path}");
            n += usize::from(object);
        }
        assert!(n > 30, "{n}");
    }

    #[test]
    fn links_parse_as_the_daemon_parses_them() {
        assert_eq!(parse_link("web"), Some(("web", "web")));
        assert_eq!(parse_link("web:w"), Some(("web", "w")));
        assert_eq!(parse_link("/web:/me/w"), Some(("web", "w")));
        assert_eq!(parse_link("a:b:c"), None);
        assert_eq!(parse_link(""), None);
    }

    #[test]
    fn binds_name_volumes_only_for_relative_sources() {
        assert_eq!(bind_volume("data:/d"), Some("data"));
        assert_eq!(bind_volume("data:/d:ro"), Some("data"));
        assert_eq!(bind_volume("/host:/d"), None);
        assert_eq!(bind_volume("/anonymous"), None);
        assert_eq!(bind_volume(":/d"), None);
    }

    #[test]
    fn ids_are_written_back_keeping_modes_and_aliases() {
        let id = "f".repeat(64);
        let mut body = json!({
            "HostConfig": {
                "NetworkMode": "mynet",
                "PidMode": "container:web",
                "VolumesFrom": ["data:ro", "logs"],
                "Links": ["cache", "db:database"]
            },
            "NetworkingConfig": {"EndpointsConfig": {"mynet": {"Aliases": ["a"], "Links": ["db"]}}}
        });
        for r in refs(OpId::ContainerCreate, &[], &[], Some(&body.clone())) {
            assert!(rewrite(&mut body, &r, &id), "{r:?}");
        }
        let hc = &body["HostConfig"];
        assert_eq!(hc["NetworkMode"], id);
        assert_eq!(hc["PidMode"], format!("container:{id}"));
        assert_eq!(hc["VolumesFrom"], json!([format!("{id}:ro"), id.clone()]));
        assert_eq!(
            hc["Links"],
            json!([format!("{id}:cache"), format!("{id}:database")])
        );
        assert_eq!(
            body["NetworkingConfig"]["EndpointsConfig"],
            json!({ id.clone(): {"Aliases": ["a"], "Links": [format!("{id}:db")]} })
        );
        let mut body = json!({"Container": "web"});
        let r = &refs(OpId::NetworkDisconnect, &[], &[], Some(&body.clone()))[0];
        assert!(rewrite(&mut body, r, &id));
        assert_eq!(body["Container"], id);
    }
}
