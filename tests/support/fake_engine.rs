//! A fake engine on a unix socket, for logic that asks the engine about the
//! objects a request names (resolving a name or an id prefix, reading an
//! object's labels) and must be tested without root and without a real
//! dockerd. A test puts objects in; the fake answers the Engine API's
//! inspect and list endpoints for them in the daemon's shapes and with its
//! errors (`404 {"message": "No such container: x"}`), records every request
//! it receives, and can be told to fail, to hang, or to swap two objects'
//! names after a given request (a rename race).
//!
//! What it answers (with or without a `/v1.xx` prefix): `/_ping`,
//! `/version` and `/info` (what moat learns about an engine), `GET /containers/json` (`filters={"label":[…]}`),
//! `GET /containers/{ref}/json`, the same for `images`, `volumes` and
//! `networks`, `GET /exec/{id}/json`, and `POST /volumes/create` (an
//! existing volume is answered as it is, as the daemon does). Containers, networks and execs are
//! found by full id, unique id prefix or name; images by tag (`name` means
//! `name:latest`) or id; volumes by name. Anything else is a 404, as the
//! daemon answers an unknown route.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The kinds of object the fake engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Container,
    Image,
    Volume,
    Network,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Image => "image",
            Kind::Volume => "volume",
            Kind::Network => "network",
        }
    }
}

#[derive(Debug, Clone)]
struct Object {
    kind: Kind,
    id: String,
    name: String,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Exec {
    id: String,
    container: String,
}

#[derive(Default)]
struct State {
    objects: Vec<Object>,
    execs: Vec<Exec>,
    requests: Vec<String>,
    /// When set, every request except `/_ping` is answered with this.
    failure: Option<(u16, String)>,
    /// When set, every request except `/_ping` is read and never answered.
    stalled: bool,
    /// After a request `METHOD target` is answered, the names of two
    /// objects (by id) are swapped: a rename race.
    swap_after: Option<(String, String, String)>,
    /// An object added once a request has been answered (`add_after`).
    appear_after: Option<(String, Object)>,
}

/// The fake engine; it stops serving when dropped (its socket is removed
/// with its directory).
pub(crate) struct FakeEngine {
    pub socket: PathBuf,
    state: Arc<Mutex<State>>,
    _dir: tempfile::TempDir,
}

impl FakeEngine {
    pub(crate) fn start() -> FakeEngine {
        let dir = tempfile::Builder::new()
            .prefix("moat-fake-engine-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&socket).expect("bind the fake engine socket");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(conn, &state));
            }
        });
        FakeEngine {
            socket,
            state,
            _dir: dir,
        }
    }

    /// Once a request `request` (`METHOD target`) has been answered, adds an
    /// object (as [`FakeEngine::add`]): one that appears between moat's
    /// lookup and its use, e.g. a volume someone else creates meanwhile.
    pub(crate) fn add_after(&self, request: &str, kind: Kind, name: &str, labels: &[(&str, &str)]) {
        let object = new_object(kind, name, labels);
        self.state.lock().unwrap().appear_after = Some((request.to_string(), object));
    }

    /// Adds an object; returns its id (64 hex digits, derived from kind and
    /// name; an image's is `sha256:`-prefixed as the daemon's are).
    pub(crate) fn add(&self, kind: Kind, name: &str, labels: &[(&str, &str)]) -> String {
        let object = new_object(kind, name, labels);
        let id = object.id.clone();
        self.state.lock().unwrap().objects.push(object);
        id
    }

    /// Adds an exec instance of a container; returns its id.
    pub(crate) fn add_exec(&self, container_id: &str) -> String {
        let mut state = self.state.lock().unwrap();
        let id = hex::encode(Sha256::digest(format!(
            "exec/{container_id}/{}",
            state.execs.len()
        )));
        state.execs.push(Exec {
            id: id.clone(),
            container: container_id.to_string(),
        });
        id
    }

    /// Every request received so far, as `METHOD target`.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// From now on, answers every request but `/_ping` with `status` and a
    /// Docker-style message (an engine failing its lookups); `None` heals.
    pub(crate) fn fail(&self, failure: Option<(u16, &str)>) {
        self.state.lock().unwrap().failure = failure.map(|(s, m)| (s, m.to_string()));
    }

    /// From now on, reads every request but `/_ping` and never answers it
    /// (an engine that hangs); `false` heals.
    pub(crate) fn stall(&self, stalled: bool) {
        self.state.lock().unwrap().stalled = stalled;
    }

    /// Once a request `request` (`METHOD target`) has been answered, swaps
    /// the names of the objects with ids `a` and `b`: what two renames
    /// between moat's lookup and its forwarding would do.
    pub(crate) fn swap_names_after(&self, request: &str, a: &str, b: &str) {
        self.state.lock().unwrap().swap_after =
            Some((request.to_string(), a.to_string(), b.to_string()));
    }

    /// `GET target` sent straight to the fake engine: status and JSON body
    /// (`Value::Null` when the body is not JSON).
    pub(crate) fn get(&self, target: &str) -> (u16, Value) {
        let mut conn = UnixStream::connect(&self.socket).expect("connect to the fake engine");
        write!(
            conn,
            "GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut raw = String::new();
        conn.read_to_string(&mut raw).expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

/// An object of `kind` named `name`, its id derived from both.
fn new_object(kind: Kind, name: &str, labels: &[(&str, &str)]) -> Object {
    let hex = hex::encode(Sha256::digest(format!("{}/{name}", kind.noun())));
    let id = match kind {
        Kind::Image => format!("sha256:{hex}"),
        Kind::Volume => name.to_string(),
        _ => hex,
    };
    let name = match kind {
        Kind::Image if !name.contains(':') => format!("{name}:latest"),
        _ => name.to_string(),
    };
    Object {
        kind,
        id,
        name,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Answers one request on `conn`, then closes it.
fn serve(conn: UnixStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    if strip_version(&target) != "/_ping" && state.lock().unwrap().stalled {
        // Hold the connection without answering, until the client gives up.
        let mut conn = reader.into_inner();
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(60)));
        let _ = conn.read(&mut [0u8; 1]);
        return;
    }
    let (status, content_type, payload) = answer(state, &method, &target, &body);
    swap_after(state, &method, &target);
    {
        let mut state = state.lock().unwrap();
        let due = matches!(&state.appear_after, Some((r, _)) if *r == format!("{method} {target}"));
        if due {
            if let Some((_, object)) = state.appear_after.take() {
                state.objects.push(object);
            }
        }
    }
    let reason = match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nApi-Version: 1.41\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let mut conn = reader.into_inner();
    let _ = conn.write_all(response.as_bytes());
}

fn answer(
    state: &Mutex<State>,
    method: &str,
    target: &str,
    body: &[u8],
) -> (u16, &'static str, String) {
    let mut state = state.lock().unwrap();
    state.requests.push(format!("{method} {target}"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = strip_version(path);
    if path == "/_ping" {
        return (200, "text/plain", "OK".into());
    }
    if let Some((status, message)) = &state.failure {
        return (*status, "application/json", error(message));
    }
    let json = |v: Value| (200, "application/json", v.to_string());
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let found = match (method, segments.as_slice()) {
        ("GET", ["version"]) => {
            return json(json!({
                "ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.24-fake"
            }))
        }
        ("GET", ["info"]) => {
            return json(json!({
                "ServerVersion": "20.10.24-fake", "CgroupVersion": "2", "Containers": 0
            }))
        }
        ("GET", ["containers", "json"]) => {
            return json(Value::Array(list(&state, Kind::Container, query)))
        }
        ("GET", ["images", "json"]) => return json(Value::Array(list(&state, Kind::Image, query))),
        ("GET", ["networks"]) => return json(Value::Array(list(&state, Kind::Network, query))),
        ("GET", ["volumes"]) => {
            return json(json!({"Volumes": list(&state, Kind::Volume, query), "Warnings": null}))
        }
        ("GET", ["exec", id, "json"]) => {
            return match state.execs.iter().find(|e| e.id.starts_with(id)) {
                Some(e) => json(json!({"ID": e.id, "ContainerID": e.container, "Running": false})),
                None => not_found(&format!("No such exec instance: {id}")),
            };
        }
        ("POST", ["volumes", "create"]) => {
            // The daemon answers the create of an existing volume with it.
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let name = body["Name"].as_str().unwrap_or_default().to_string();
            if !state
                .objects
                .iter()
                .any(|o| o.kind == Kind::Volume && o.name == name)
            {
                let labels: Vec<(String, String)> = body["Labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let labels: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let object = new_object(Kind::Volume, &name, &labels);
                state.objects.push(object);
            }
            let created = lookup(&state, Kind::Volume, &name).map(inspect);
            return match created {
                Ok(v) => (201, "application/json", v.to_string()),
                Err(message) => not_found(&message),
            };
        }
        ("GET", ["containers", name, "json"]) => lookup(&state, Kind::Container, name),
        ("GET", ["networks", name]) => lookup(&state, Kind::Network, name),
        ("GET", ["volumes", name]) => lookup(&state, Kind::Volume, name),
        ("GET", [rest @ .., "json"]) if rest.first() == Some(&"images") && rest.len() > 1 => {
            lookup(&state, Kind::Image, &rest[1..].join("/"))
        }
        _ => return not_found("page not found"),
    };
    match found {
        Ok(o) => json(inspect(o)),
        Err(message) => not_found(&message),
    }
}

/// The rename race of [`FakeEngine::swap_names_after`], once.
fn swap_after(state: &Mutex<State>, method: &str, target: &str) {
    let mut state = state.lock().unwrap();
    let due = matches!(&state.swap_after, Some((r, _, _)) if *r == format!("{method} {target}"));
    if !due {
        return;
    }
    let Some((_, a, b)) = state.swap_after.take() else {
        return;
    };
    let name = |s: &State, id: &str| {
        s.objects
            .iter()
            .find(|o| o.id == id)
            .map(|o| o.name.clone())
    };
    let (Some(name_a), Some(name_b)) = (name(&state, &a), name(&state, &b)) else {
        return;
    };
    for o in state.objects.iter_mut() {
        if o.id == a {
            o.name = name_b.clone();
        } else if o.id == b {
            o.name = name_a.clone();
        }
    }
}

fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(i) = rest.find('/') {
            if rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.') {
                return &rest[i..];
            }
        }
    }
    path
}

/// An object by reference, as the daemon resolves one of its kind.
fn lookup<'s>(state: &'s State, kind: Kind, reference: &str) -> Result<&'s Object, String> {
    let reference = percent_decode(reference);
    let of_kind = || state.objects.iter().filter(move |o| o.kind == kind);
    let missing = || match kind {
        Kind::Container => format!("No such container: {reference}"),
        Kind::Image => format!("No such image: {reference}"),
        Kind::Volume => format!("get {reference}: no such volume"),
        Kind::Network => format!("network {reference} not found"),
    };
    let exact = of_kind().find(|o| {
        o.id == reference
            || o.name == reference
            || (kind == Kind::Container && format!("/{}", o.name) == reference)
            || (kind == Kind::Image
                && !reference.contains(':')
                && o.name == format!("{reference}:latest"))
    });
    if let Some(o) = exact {
        return Ok(o);
    }
    if kind == Kind::Volume || reference.is_empty() {
        return Err(missing());
    }
    let prefixed: Vec<&Object> = of_kind()
        .filter(|o| o.id.trim_start_matches("sha256:").starts_with(&reference))
        .collect();
    match prefixed.as_slice() {
        [one] => Ok(one),
        [] => Err(missing()),
        _ => Err(format!(
            "multiple IDs found with provided prefix: {reference}"
        )),
    }
}

/// The objects of a kind that pass the `label` filters of `query`.
fn list(state: &State, kind: Kind, query: &str) -> Vec<Value> {
    let mut wanted: Vec<String> = Vec::new();
    for pair in query.split('&') {
        if let Some(filters) = pair.strip_prefix("filters=") {
            let filters: Value = serde_json::from_str(&percent_decode(filters)).unwrap_or_default();
            match &filters["label"] {
                Value::Array(labels) => {
                    wanted.extend(labels.iter().filter_map(Value::as_str).map(String::from))
                }
                // The older form: {"label": {"k=v": true}}.
                Value::Object(labels) => wanted.extend(labels.keys().cloned()),
                _ => {}
            }
        }
    }
    state
        .objects
        .iter()
        .filter(|o| o.kind == kind)
        .filter(|o| {
            wanted.iter().all(|w| match w.split_once('=') {
                Some((k, v)) => o.labels.get(k).is_some_and(|have| have == v),
                None => o.labels.contains_key(w),
            })
        })
        .map(|o| match kind {
            Kind::Container => {
                json!({"Id": o.id, "Names": [format!("/{}", o.name)], "Labels": o.labels})
            }
            Kind::Image => json!({"Id": o.id, "RepoTags": [o.name], "Labels": o.labels}),
            Kind::Volume => json!({"Name": o.name, "Driver": "local", "Labels": o.labels}),
            Kind::Network => json!({"Id": o.id, "Name": o.name, "Labels": o.labels}),
        })
        .collect()
}

/// An object's inspect document, with the fields resolution reads.
fn inspect(o: &Object) -> Value {
    match o.kind {
        Kind::Container => json!({
            "Id": o.id, "Name": format!("/{}", o.name),
            "Config": {"Labels": o.labels}, "State": {"Running": true}
        }),
        Kind::Image => json!({"Id": o.id, "RepoTags": [o.name], "Config": {"Labels": o.labels}}),
        Kind::Volume => json!({"Name": o.name, "Driver": "local", "Labels": o.labels}),
        Kind::Network => json!({"Id": o.id, "Name": o.name, "Labels": o.labels}),
    }
}

fn error(message: &str) -> String {
    json!({ "message": message }).to_string()
}

fn not_found(message: &str) -> (u16, &'static str, String) {
    (404, "application/json", error(message))
}

/// `%XX` decoding (names and filters in tests are ASCII).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
