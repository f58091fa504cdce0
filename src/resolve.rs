//! The resolve stage: every object a request names is looked up in the
//! engine before the decision, shown to the policy with its owner and
//! security facts (`input.resources`), and named by its canonical id in
//! what is forwarded.
//!
//! 1. [`refs`]: which references the operation carries (its path parameter,
//!    ImageCommit's `container` query, and ContainerCreate's and
//!    NetworkConnect/Disconnect's body references), parsed as the daemon
//!    parses them;
//! 2. [`lookup`]: each looked up through the engine's inspect endpoint by
//!    the reference as given (an exec, then its container), afresh for every
//!    request: there is no cache. An inspect request (of a container, exec,
//!    volume or network) is its own lookup: moat sends the request itself,
//!    decides on the engine's answer and, if the policy allows, gives the
//!    client that answer ([`Resolved::answer`]), so it costs the engine
//!    one request, not two;
//! 3. [`facts`]: the owner (from moat's labels, [`crate::owner`]), the
//!    security facts and `host_access`, computed in one place;
//! 4. the reference rewritten to the canonical id in the forwarded path and
//!    in the effective body, so that the policy sees, and the engine
//!    receives, the same object: a rename between the check and the use
//!    cannot switch the target.
//!
//! An object the engine does not know gets the engine's own answer (its 404
//! and message) and nothing is forwarded; a lookup the engine fails, or
//! does not answer within `limits.resolve_timeout`, is a 503: never an
//! allow. Images, plugins and swarm objects are not resolved (images are
//! shared; swarm objects are administrators' in the shipped pack).

mod facts;
mod lookup;
mod refs;

use std::collections::HashMap;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::body::Inspected;
use crate::classify::{OpId, Route};
use crate::config::Limits;
use crate::forward::Upstream;
use crate::owner::{Kind, Owner, Resource};
use lookup::Answer;
pub use lookup::Reply;
use refs::{Ref, Site};

/// Why moat refused a request at this stage.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The engine's own answer to the reference (404 for an unknown
    /// object), as it would have answered the request.
    #[error("{message}")]
    Engine { status: StatusCode, message: String },
    #[error("moat could not look up {kind} `{reference}` in the engine, so it cannot decide on this request; try again")]
    Unavailable { kind: Kind, reference: String },
    #[error("the engine did not answer moat's lookups of the objects this request names within {} (limits.resolve_timeout); try again", humantime::format_duration(*.after))]
    Timeout { after: Duration },
    #[error("this request names {count} objects; moat looks up at most {limit} per request (limits.max_resolved_objects): send fewer, or ask an admin to raise the limit")]
    TooMany { count: usize, limit: usize },
    #[error("`{reference}` ({position}) is not a {kind} name or id")]
    Invalid {
        kind: Kind,
        reference: String,
        position: String,
    },
}

impl ResolveError {
    pub fn status(&self) -> StatusCode {
        match self {
            ResolveError::Engine { status, .. } => *status,
            ResolveError::Unavailable { .. } | ResolveError::Timeout { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ResolveError::TooMany { .. } | ResolveError::Invalid { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

/// The request with its objects resolved: the route (path parameter
/// rewritten to the id), the effective body (references rewritten), and
/// what the policy sees as `input.resources`.
pub struct Resolved {
    pub route: Route,
    pub inspected: Inspected,
    pub resources: Vec<Resource>,
    /// For an inspect request (ContainerInspect, ExecInspect, VolumeInspect,
    /// NetworkInspect), the engine's answer to the lookup, which was that
    /// very request: the client gets it if the policy allows, and nothing
    /// more is sent to the engine.
    pub answer: Option<Reply>,
}

impl Resolved {
    /// The request as it is, with nothing resolved.
    pub fn nothing(route: Route, inspected: Inspected) -> Self {
        Resolved {
            route,
            inspected,
            resources: Vec::new(),
            answer: None,
        }
    }

    /// The named volumes a ContainerCreate mounts that do not exist yet
    /// (`exists: false`), each once: the scope stage creates them, labelled,
    /// before the create.
    pub fn missing_volumes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.resources {
            if r.kind == Kind::Volume && !r.exists && !out.contains(&r.id) {
                out.push(r.id.clone());
            }
        }
        out
    }
}

/// Resolves the objects `route` and the effective body `inspected` name.
pub async fn resolve(
    upstream: &Upstream,
    limits: &Limits,
    route: Route,
    mut inspected: Inspected,
) -> Result<Resolved, ResolveError> {
    let found = refs::refs(route.op.id, &route.params, &route.query, inspected.json());
    if found.is_empty() {
        return Ok(Resolved::nothing(route, inspected));
    }
    if found.len() > limits.max_resolved_objects {
        return Err(ResolveError::TooMany {
            count: found.len(),
            limit: limits.max_resolved_objects,
        });
    }
    for r in &found {
        if !lookup::valid_reference(r.kind, &r.reference) {
            return Err(ResolveError::Invalid {
                kind: r.kind,
                reference: r.reference.clone(),
                position: r.site.position(&r.reference),
            });
        }
    }
    let after = limits.resolve_timeout;
    let own = own_lookup(&route, &found);
    let (objects, answer) = tokio::time::timeout(after, look_up_all(upstream, &found, own))
        .await
        .map_err(|_| ResolveError::Timeout { after })??;

    let mut route = route;
    let mut resources = Vec::with_capacity(found.len());
    for (r, object) in found.iter().zip(objects) {
        if let Some(id) = object.rewrite.as_deref() {
            let done = match (&r.site, &mut inspected) {
                (Site::Path, _) => rewrite_path(&mut route, id),
                (Site::Query(name), _) => rewrite_query(&mut route, name, id),
                (_, Inspected::Json { value, .. }) => refs::rewrite(value, r, id),
                _ => false,
            };
            if !done {
                // The request was read once and not changed since: this is
                // a bug, and the request must not go through unresolved.
                tracing::error!(reference = %r.reference, position = %r.site.position(&r.reference), "resolved reference could not be rewritten");
                return Err(ResolveError::Unavailable {
                    kind: r.kind,
                    reference: r.reference.clone(),
                });
            }
        }
        let mut resource = object.resource;
        if let (false, Some(body)) = (resource.exists, inspected.json()) {
            let v = facts::created_volume(body, &r.site);
            resource.host_access = facts::volume_host_access(&v);
            resource.volume = Some(v);
        }
        resources.push(resource);
    }
    Ok(Resolved {
        route,
        inspected,
        resources,
        answer,
    })
}

/// When the request is the inspect of the one object it names, its own
/// path and query as forwarded: the lookup is the request itself.
fn own_lookup<'a>(route: &'a Route, found: &[Ref]) -> Option<&'a str> {
    let [r] = found else {
        return None;
    };
    let inspect = match r.kind {
        Kind::Container => OpId::ContainerInspect,
        Kind::Exec => OpId::ExecInspect,
        Kind::Volume => OpId::VolumeInspect,
        Kind::Network => OpId::NetworkInspect,
    };
    (matches!(r.site, Site::Path) && route.op.id == inspect).then_some(route.upstream.as_str())
}

/// One reference resolved: what the policy sees, and the id written back
/// (`None` when the reference stays as given: a volume, whose id is its
/// name; a built-in network; a volume a create will make).
struct Object {
    resource: Resource,
    rewrite: Option<String>,
}

/// Looks up every reference, each distinct one once; `own` is the request's
/// own path when it is the one lookup (see [`own_lookup`]), whose reply is
/// kept.
async fn look_up_all(
    upstream: &Upstream,
    found: &[Ref],
    own: Option<&str>,
) -> Result<(Vec<Object>, Option<Reply>), ResolveError> {
    let mut seen: HashMap<(Kind, &str), Looked> = HashMap::new();
    let mut out = Vec::with_capacity(found.len());
    let mut reply = None;
    for r in found {
        let key = (r.kind, r.reference.as_str());
        let looked = match seen.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let (l, kept) = look_up(upstream, r.kind, &r.reference, own).await?;
                reply = reply.or(kept);
                v.insert(l)
            }
        };
        out.push(object(r, looked)?);
    }
    Ok((out, reply))
}

/// What one lookup gave: the inspect documents, or the engine's refusal.
enum Looked {
    Found {
        doc: Value,
        /// An exec's container.
        container: Option<Value>,
    },
    Refused {
        status: StatusCode,
        message: String,
    },
}

/// Looks one reference up: through its inspect endpoint, or through `via`
/// (the request's own path, see [`own_lookup`]), whose reply is returned
/// when the object was found.
async fn look_up(
    upstream: &Upstream,
    kind: Kind,
    reference: &str,
    via: Option<&str>,
) -> Result<(Looked, Option<Reply>), ResolveError> {
    let unavailable = |why: lookup::Failed| {
        tracing::warn!(%kind, %reference, reason = %why.0, "object lookup failed");
        ResolveError::Unavailable {
            kind,
            reference: reference.to_string(),
        }
    };
    let (answer, reply) = match via {
        Some(path) => {
            let reply = lookup::get(upstream, path).await.map_err(unavailable)?;
            let answer = lookup::answer(kind, reference, path, &reply).map_err(unavailable)?;
            (answer, Some(reply))
        }
        None => (
            lookup::inspect(upstream, kind, reference)
                .await
                .map_err(unavailable)?,
            None,
        ),
    };
    let doc = match answer {
        Answer::Found(doc) => doc,
        Answer::Refused { status, message } => {
            return Ok((Looked::Refused { status, message }, None))
        }
    };
    if kind != Kind::Exec {
        return Ok((
            Looked::Found {
                doc,
                container: None,
            },
            reply,
        ));
    }
    let container_id = facts::exec(&doc).container_id;
    if !lookup::valid_reference(Kind::Container, &container_id) {
        return Err(unavailable(lookup::Failed(
            "exec without a usable ContainerID".into(),
        )));
    }
    match lookup::inspect(upstream, Kind::Container, &container_id)
        .await
        .map_err(unavailable)?
    {
        Answer::Found(c) => Ok((
            Looked::Found {
                doc,
                container: Some(c),
            },
            reply,
        )),
        Answer::Refused { status, message } => Ok((Looked::Refused { status, message }, None)),
    }
}

/// The resource for `r` from its lookup, or the engine's refusal.
fn object(r: &Ref, looked: &Looked) -> Result<Object, ResolveError> {
    let position = r.site.position(&r.reference);
    let (doc, container) = match looked {
        Looked::Found { doc, container } => (doc, container.as_ref()),
        Looked::Refused { status, .. }
            if *status == StatusCode::NOT_FOUND && r.site.may_be_created() =>
        {
            return Ok(Object {
                resource: missing_volume(r, position),
                rewrite: None,
            })
        }
        Looked::Refused { status, message } => {
            return Err(ResolveError::Engine {
                status: *status,
                message: message.clone(),
            })
        }
    };
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut resource = Resource {
        kind: r.kind,
        position,
        reference: r.reference.clone(),
        id: String::new(),
        name: String::new(),
        exists: true,
        owner: None,
        host_access: Vec::new(),
        container: None,
        volume: None,
        network: None,
        exec: None,
    };
    match r.kind {
        Kind::Container => {
            let c = facts::container(doc);
            resource.id = str_of(doc, "Id");
            resource.name = str_of(doc, "Name").trim_start_matches('/').into();
            resource.owner = owner(doc.get("Config").and_then(|c| c.get("Labels")));
            resource.host_access = facts::container_host_access(&c);
            resource.container = Some(c);
        }
        Kind::Exec => {
            let e = facts::exec(doc);
            let cdoc = container.unwrap_or(&Value::Null);
            let c = facts::container(cdoc);
            resource.id = str_of(doc, "ID");
            resource.owner = owner(cdoc.get("Config").and_then(|c| c.get("Labels")));
            resource.host_access = facts::exec_host_access(&e, &c);
            resource.container = Some(c);
            resource.exec = Some(e);
        }
        Kind::Volume => {
            let v = facts::volume(doc);
            resource.id = str_of(doc, "Name");
            resource.name = resource.id.clone();
            resource.owner = owner(doc.get("Labels"));
            resource.host_access = facts::volume_host_access(&v);
            resource.volume = Some(v);
        }
        Kind::Network => {
            let n = facts::network(doc);
            resource.id = str_of(doc, "Id");
            resource.name = str_of(doc, "Name");
            resource.owner = owner(doc.get("Labels"));
            resource.host_access = facts::network_host_access(&resource.name, &n);
            resource.network = Some(n);
        }
    }
    if !lookup::usable_id(&resource.id) {
        tracing::warn!(kind = %r.kind, reference = %r.reference, "the engine's inspect document has no usable id");
        return Err(ResolveError::Unavailable {
            kind: r.kind,
            reference: r.reference.clone(),
        });
    }
    let keep = match r.kind {
        // A volume's id is its name, found only by its exact name.
        Kind::Volume => true,
        // The built-in networks are modes the daemon knows by name.
        Kind::Network => refs::builtin_network(&resource.name),
        Kind::Container | Kind::Exec => false,
    };
    let rewrite = (!keep && resource.id != r.reference).then(|| resource.id.clone());
    Ok(Object { resource, rewrite })
}

/// A named volume a ContainerCreate mounts that does not exist yet: the
/// create makes it, with the driver and options the body gives.
fn missing_volume(r: &Ref, position: String) -> Resource {
    let volume = facts::volume(&Value::Null);
    Resource {
        kind: Kind::Volume,
        position,
        reference: r.reference.clone(),
        id: r.reference.clone(),
        name: r.reference.clone(),
        exists: false,
        owner: None,
        host_access: Vec::new(),
        container: None,
        volume: Some(volume),
        network: None,
        exec: None,
    }
}

fn owner(labels: Option<&Value>) -> Option<Owner> {
    Owner::from_labels(&facts::string_map(labels))
}

/// Writes `id` into the route's path parameter: the path, the parameter
/// and what is forwarded. Every resolved route has the object as its
/// second segment (`/containers/{name}/…`, `/exec/{id}/…`, `/volumes/{name}`,
/// `/networks/{id}`).
fn rewrite_path(route: &mut Route, id: &str) -> bool {
    let mut segments = route.path.splitn(4, '/');
    let (Some(""), Some(family), Some(param)) = (segments.next(), segments.next(), segments.next())
    else {
        return false;
    };
    let rest = segments.next().map(|r| format!("/{r}")).unwrap_or_default();
    let Some(slot) = route
        .params
        .iter_mut()
        .find(|(k, v)| (*k == "name" || *k == "id") && v == param)
    else {
        return false;
    };
    let path = format!("/{family}/{id}{rest}");
    let (forwarded, query) = match route.upstream.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (route.upstream.as_str(), String::new()),
    };
    let prefix = route
        .api_version
        .as_ref()
        .map(|v| format!("/v{v}"))
        .unwrap_or_default();
    // What follows the object, as classify encoded it (the parameter holds
    // no `/`); the id needs no encoding (`lookup::usable_id`).
    let Some(mut up) = forwarded.strip_prefix(&prefix).map(|p| p.splitn(4, '/')) else {
        return false;
    };
    let (Some(""), Some(_), Some(_)) = (up.next(), up.next(), up.next()) else {
        return false;
    };
    let encoded_rest = up.next().map(|r| format!("/{r}")).unwrap_or_default();
    slot.1 = id.to_string();
    route.upstream = format!("{prefix}/{family}/{id}{encoded_rest}{query}");
    route.path = path;
    true
}

/// Writes `id` as the first value of the query parameter `name` (the one
/// the daemon reads), in the route and in what is forwarded.
fn rewrite_query(route: &mut Route, name: &str, id: &str) -> bool {
    let Some(slot) = route.query.iter_mut().find(|(k, _)| k == name) else {
        return false;
    };
    slot.1 = id.to_string();
    let path = route.upstream.split('?').next().unwrap_or("").to_string();
    route.upstream = format!("{path}?{}", crate::classify::encode_query(&route.query));
    true
}

#[cfg(test)]
mod tests {
    use http::{Method, Uri};

    use super::*;
    use crate::classify::classify;

    fn route(method: Method, target: &str) -> Route {
        classify(&method, &target.parse::<Uri>().unwrap()).unwrap()
    }

    #[test]
    fn the_path_parameter_is_rewritten_everywhere_it_is_used() {
        let id = "0123456789abcdef".repeat(4);
        for (method, target, want) in [
            (
                Method::POST,
                "/v1.41/containers/web/stop?t=3",
                format!("/v1.41/containers/{id}/stop?t=3"),
            ),
            (
                Method::GET,
                "/containers/web/json",
                format!("/containers/{id}/json"),
            ),
            (
                Method::DELETE,
                "/v1.41/containers/web?force=1&v=1",
                format!("/v1.41/containers/{id}?force=1&v=1"),
            ),
            (
                Method::DELETE,
                "/containers/web/checkpoints/c%201",
                format!("/containers/{id}/checkpoints/c%201"),
            ),
            (
                Method::POST,
                "/v1.41/exec/abc/start",
                format!("/v1.41/exec/{id}/start"),
            ),
            (
                Method::POST,
                "/v1.41/networks/backend/connect",
                format!("/v1.41/networks/{id}/connect"),
            ),
        ] {
            let mut r = route(method.clone(), target);
            let op = r.op.id;
            assert!(rewrite_path(&mut r, &id), "{target}");
            assert_eq!(r.upstream, want);
            assert!(r.params.iter().any(|(_, v)| *v == id), "{:?}", r.params);
            // Classifying what is forwarded gives the same operation and
            // the same route.
            let again = route(method, &r.upstream);
            assert_eq!(again.op.id, op, "{target}");
            assert_eq!(again.path, r.path);
            assert_eq!(again.params, r.params);
        }
    }

    #[test]
    fn a_query_reference_is_rewritten_in_the_route_and_what_is_forwarded() {
        let id = "ab".repeat(32);
        let mut r = route(
            Method::POST,
            "/v1.41/commit?container=web&repo=x%2Fy&container=other",
        );
        assert!(rewrite_query(&mut r, "container", &id));
        assert_eq!(
            r.upstream,
            format!("/v1.41/commit?container={id}&repo=x%2Fy&container=other")
        );
        assert_eq!(r.query[0], ("container".to_string(), id));
        assert_eq!(route(Method::POST, &r.upstream).query, r.query);
    }

    #[test]
    fn errors_say_what_happened_without_internals() {
        let e = ResolveError::Unavailable {
            kind: Kind::Container,
            reference: "web".into(),
        };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.to_string().contains("could not look up container `web`"));
        let e = ResolveError::TooMany {
            count: 40,
            limit: 32,
        };
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("limits.max_resolved_objects"));
        let e = ResolveError::Timeout {
            after: Duration::from_secs(10),
        };
        assert!(e.to_string().contains("limits.resolve_timeout"), "{e}");
        let e = ResolveError::Engine {
            status: StatusCode::NOT_FOUND,
            message: "No such container: web".into(),
        };
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(e.to_string(), "No such container: web");
    }

    #[test]
    fn a_missing_named_volume_of_a_create_is_shown_as_to_be_created() {
        let r = Ref {
            kind: Kind::Volume,
            reference: "newvol".into(),
            site: Site::Bind(0),
        };
        let refused = Looked::Refused {
            status: StatusCode::NOT_FOUND,
            message: "get newvol: no such volume".into(),
        };
        let o = object(&r, &refused).unwrap();
        assert!(!o.resource.exists);
        assert_eq!(o.resource.id, "newvol");
        assert_eq!(o.rewrite, None);
        // Elsewhere (a path parameter), a missing volume is the engine's 404.
        let r = Ref {
            site: Site::Path,
            ..r
        };
        let e = object(&r, &refused).err().unwrap();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn resources_carry_owner_facts_and_the_id_to_write_back() {
        let id = "ab".repeat(32);
        let doc = serde_json::json!({
            "Id": id, "Name": "/ops",
            "Config": {"Labels": {"io.moat.owner": "ada", "io.moat.scope": "user:ada"}},
            "HostConfig": {"NetworkMode": "host"}
        });
        let r = Ref {
            kind: Kind::Container,
            reference: "ops".into(),
            site: Site::ContainerMode("NetworkMode"),
        };
        let o = object(
            &r,
            &Looked::Found {
                doc,
                container: None,
            },
        )
        .unwrap();
        assert_eq!(o.rewrite.as_deref(), Some(id.as_str()));
        assert_eq!(o.resource.name, "ops");
        assert_eq!(o.resource.position, "HostConfig.NetworkMode");
        assert_eq!(o.resource.owner.as_ref().unwrap().user, "ada");
        assert_eq!(o.resource.host_access, ["network=host"]);
        // The built-in networks keep their names.
        let doc = serde_json::json!({"Id": "cd".repeat(32), "Name": "bridge", "Driver": "bridge"});
        let r = Ref {
            kind: Kind::Network,
            reference: "bridge".into(),
            site: Site::Endpoint,
        };
        let o = object(
            &r,
            &Looked::Found {
                doc,
                container: None,
            },
        )
        .unwrap();
        assert_eq!(o.rewrite, None);
        assert!(o.resource.network.unwrap().builtin);
        assert!(o.resource.owner.is_none());
    }

    /// moat parses only the fields of an inspect document it reads
    /// (`lookup::Kept`): for real documents of every kind (taken from
    /// dockerd, with the fields the facts read set), the resource the
    /// policy sees is the same as from the whole document.
    #[test]
    fn resources_from_the_kept_fields_equal_those_from_the_whole_document() {
        let cases = [
            (
                Kind::Container,
                "containers",
                Site::ContainerMode("PidMode"),
            ),
            (Kind::Exec, "exec", Site::Path),
            (Kind::Volume, "volumes", Site::Bind(0)),
            (Kind::Network, "networks", Site::Endpoint),
        ];
        let container = fixture("containers");
        let whole = |body: &str| serde_json::from_str::<Value>(body).unwrap();
        let kept = |body: &str| {
            let reply = Reply {
                status: StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            };
            match lookup::answer(Kind::Container, "x", "/x", &reply).unwrap() {
                Answer::Found(doc) => doc,
                Answer::Refused { .. } => panic!("refused"),
            }
        };
        for (kind, name, site) in cases {
            let body = fixture(name);
            let r = Ref {
                kind,
                reference: "x".into(),
                site,
            };
            let looked = |doc: &dyn Fn(&str) -> Value| Looked::Found {
                doc: doc(&body),
                container: (kind == Kind::Exec).then(|| doc(&container)),
            };
            let from_whole = object(&r, &looked(&whole)).unwrap().resource;
            let from_kept = object(&r, &looked(&kept)).unwrap().resource;
            assert_eq!(from_kept, from_whole, "{name}");
            // The fixtures exercise the facts: none of them is all defaults.
            assert!(from_whole.owner.is_some() || kind == Kind::Exec, "{name}");
        }
        let c = object(
            &Ref {
                kind: Kind::Container,
                reference: "c1".into(),
                site: Site::Path,
            },
            &Looked::Found {
                doc: kept(&container),
                container: None,
            },
        )
        .unwrap()
        .resource;
        let facts = c.container.unwrap();
        assert!(facts.privileged && !facts.binds.is_empty() && !facts.devices.is_empty());
        assert!(!facts.cap_add.is_empty() && !facts.mount_sources.is_empty());
        assert_eq!(facts.pid_mode, "host");
    }

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/data/inspect/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }
}
