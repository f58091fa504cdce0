//! The daemon's route table, from the embedded copy of
//! `../shared/engine-api/routes.tsv`, with moat's metadata for each
//! operation (resource, read-only, hijack, body handling) and the matcher that
//! agrees with gorilla/mux as the daemon configures it.

use std::sync::OnceLock;

use super::{BodyKind, OpId, Operation};

/// The daemon's routes in registration order (see `routes.tsv` columns).
pub(crate) const ROUTES_TSV: &str = include_str!("routes.tsv");

/// One piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// Text that must appear as is.
    Literal(&'static str),
    /// `{name}`: one segment, `[^/]+`.
    Segment(&'static str),
    /// `{name:.*}` (may be empty) or `{name:.+}` (non-empty): any run of
    /// characters including `/`, greedy.
    Rest { name: &'static str, non_empty: bool },
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Row {
    pub method: &'static str,
    pub tokens: Vec<Token>,
    pub op: Operation,
}

/// The parsed table, built once.
pub(crate) fn rows() -> &'static [Row] {
    static ROWS: OnceLock<Vec<Row>> = OnceLock::new();
    ROWS.get_or_init(|| parse_table(ROUTES_TSV))
}

/// Parses the TSV. A malformed row is skipped, which fails closed (requests
/// for it classify as `Unknown`); a unit test makes sure every row parses.
fn parse_table(tsv: &'static str) -> Vec<Row> {
    tsv.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&'static str> = line.split('\t').collect();
            let [_order, method, template, id, _handler, _min, _exp, router] = cols[..] else {
                return None;
            };
            let tokens = parse_template(template)?;
            Some(Row {
                method,
                tokens,
                op: operation(method, OpId::from_name(id)?, router),
            })
        })
        .collect()
}

/// Splits `/containers/{name:.*}/json` into tokens; None when malformed.
pub(crate) fn parse_template(template: &'static str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}')?;
                let inner = &rest[1..end];
                let token = match inner.split_once(':') {
                    None => Token::Segment(inner),
                    Some((name, ".*")) => Token::Rest {
                        name,
                        non_empty: false,
                    },
                    Some((name, ".+")) => Token::Rest {
                        name,
                        non_empty: true,
                    },
                    Some(_) => return None,
                };
                tokens.push(token);
                rest = &rest[end + 1..];
            }
            Some(i) => {
                tokens.push(Token::Literal(&rest[..i]));
                rest = &rest[i..];
            }
            None => {
                tokens.push(Token::Literal(rest));
                rest = "";
            }
        }
    }
    Some(tokens)
}

/// moat's metadata for an operation of the table.
fn operation(method: &'static str, id: OpId, router: &'static str) -> Operation {
    use OpId as O;
    Operation {
        id,
        resource: resource(id, router),
        // A websocket attach is a GET that writes to the container's stdin:
        // it is not read-only whatever its method.
        readonly: matches!(method, "GET" | "HEAD") && id != O::ContainerAttachWebsocket,
        hijack: matches!(
            id,
            O::ContainerAttach | O::ExecStart | O::Session | O::Grpc | O::ContainerAttachWebsocket
        ),
        body: if matches!(
            id,
            O::ImageBuild
                | O::ImageLoad
                | O::PutContainerArchive
                | O::ImageCreate
                | O::PluginCreate
        ) {
            BodyKind::Stream
        } else {
            BodyKind::Inspect
        },
    }
}

/// The resource family an operation acts on.
fn resource(id: OpId, router: &str) -> &'static str {
    match router {
        "checkpoint" => "checkpoints",
        "container" if id.as_str().starts_with("Exec") || id == OpId::ContainerExec => "exec",
        "container" if id == OpId::ImageCommit => "images",
        "container" => "containers",
        "image" => "images",
        "system" => "system",
        "volume" => "volumes",
        "build" => "build",
        "session" => "session",
        "swarm" => swarm_resource(id.as_str()),
        "plugin" => "plugins",
        "distribution" => "distribution",
        "network" => "networks",
        "debug" => "debug",
        "grpc" => "grpc",
        _ => "unknown",
    }
}

fn swarm_resource(id: &str) -> &'static str {
    const FAMILIES: [(&str, &str); 6] = [
        ("Service", "services"),
        ("Node", "nodes"),
        ("Task", "tasks"),
        ("Secret", "secrets"),
        ("Config", "configs"),
        ("Swarm", "swarm"),
    ];
    FAMILIES
        .iter()
        .find(|(prefix, _)| id.starts_with(prefix))
        .map_or("swarm", |(_, r)| r)
}

/// Matches a decoded path against a template the way the daemon's
/// `^template$` regexp does (leftmost-first, greedy `.*`), returning the
/// parameters.
pub(crate) fn match_template(tokens: &[Token], path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    if match_from(tokens, path, &mut params) {
        params.reverse();
        Some(params)
    } else {
        None
    }
}

/// Recursive backtracking match; params are pushed in reverse order.
fn match_from(tokens: &[Token], path: &str, params: &mut Vec<(&'static str, String)>) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return path.is_empty();
    };
    match first {
        Token::Literal(lit) => path
            .strip_prefix(lit)
            .is_some_and(|p| match_from(rest, p, params)),
        Token::Segment(name) => {
            let end = path.find('/').unwrap_or(path.len());
            if end == 0 {
                return false;
            }
            // `[^/]+` is greedy; the next token never starts inside a segment
            // except at `/` or the end, but backtrack anyway to stay exact.
            (1..=end)
                .rev()
                .filter(|&i| path.is_char_boundary(i))
                .any(|i| {
                    let ok = match_from(rest, &path[i..], params);
                    if ok {
                        params.push((name, path[..i].to_string()));
                    }
                    ok
                })
        }
        Token::Rest { name, non_empty } => {
            // Go's `.` matches any character but `\n`; control characters are
            // refused before matching, so this is any character here.
            let min = usize::from(*non_empty);
            (min..=path.len())
                .rev()
                .filter(|&i| path.is_char_boundary(i))
                .any(|i| {
                    let ok = match_from(rest, &path[i..], params);
                    if ok {
                        params.push((name, path[..i].to_string()));
                    }
                    ok
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_parses() {
        let data_rows = ROUTES_TSV.lines().skip(1).filter(|l| !l.is_empty()).count();
        assert_eq!(rows().len(), data_rows);
        assert!(data_rows >= 120);
    }

    #[test]
    fn embedded_table_matches_shared_reference() {
        // `../shared` from the main checkout, `../../shared` from a worktree.
        // CI sets MOAT_CHECK_REFERENCE so a missing reference is a failure
        // there, not a silent pass.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut compared = false;
        for shared in ["../shared", "../../shared"] {
            let file = root.join(shared).join("engine-api/routes.tsv");
            if let Ok(text) = std::fs::read_to_string(&file) {
                assert_eq!(
                    text, ROUTES_TSV,
                    "src/classify/routes.tsv differs from {file:?}"
                );
                compared = true;
            }
        }
        assert!(
            compared || std::env::var_os("MOAT_CHECK_REFERENCE").is_none(),
            "MOAT_CHECK_REFERENCE is set but ../shared/engine-api/routes.tsv was not found"
        );
    }

    #[test]
    fn metadata() {
        let cases: &[(&str, &str, bool, bool, BodyKind)] = &[
            (
                "ContainerCreate",
                "containers",
                false,
                false,
                BodyKind::Inspect,
            ),
            (
                "ContainerList",
                "containers",
                true,
                false,
                BodyKind::Inspect,
            ),
            (
                "ContainerAttach",
                "containers",
                false,
                true,
                BodyKind::Inspect,
            ),
            (
                "ContainerAttachWebsocket",
                "containers",
                false,
                true,
                BodyKind::Inspect,
            ),
            ("ContainerExec", "exec", false, false, BodyKind::Inspect),
            ("ExecStart", "exec", false, true, BodyKind::Inspect),
            ("ExecInspect", "exec", true, false, BodyKind::Inspect),
            ("ImageCommit", "images", false, false, BodyKind::Inspect),
            ("ImageBuild", "build", false, false, BodyKind::Stream),
            ("ImageLoad", "images", false, false, BodyKind::Stream),
            ("ImageCreate", "images", false, false, BodyKind::Stream),
            (
                "PutContainerArchive",
                "containers",
                false,
                false,
                BodyKind::Stream,
            ),
            ("PluginCreate", "plugins", false, false, BodyKind::Stream),
            (
                "ContainerArchiveInfo",
                "containers",
                true,
                false,
                BodyKind::Inspect,
            ),
            ("SystemAuth", "system", false, false, BodyKind::Inspect),
            ("Session", "session", false, true, BodyKind::Inspect),
            ("Grpc", "grpc", false, true, BodyKind::Inspect),
            ("ServiceCreate", "services", false, false, BodyKind::Inspect),
            ("NodeList", "nodes", true, false, BodyKind::Inspect),
            ("TaskLogs", "tasks", true, false, BodyKind::Inspect),
            ("SecretCreate", "secrets", false, false, BodyKind::Inspect),
            ("ConfigInspect", "configs", true, false, BodyKind::Inspect),
            ("SwarmInit", "swarm", false, false, BodyKind::Inspect),
            (
                "CheckpointList",
                "checkpoints",
                true,
                false,
                BodyKind::Inspect,
            ),
            (
                "NetworkConnect",
                "networks",
                false,
                false,
                BodyKind::Inspect,
            ),
            ("VolumeCreate", "volumes", false, false, BodyKind::Inspect),
            (
                "DistributionInspect",
                "distribution",
                true,
                false,
                BodyKind::Inspect,
            ),
            ("DebugVars", "debug", true, false, BodyKind::Inspect),
            ("Options", "system", false, false, BodyKind::Inspect),
        ];
        for (id, resource, readonly, hijack, body) in cases {
            let row = rows().iter().find(|r| r.op.id.as_str() == *id).unwrap();
            assert_eq!(row.op.resource, *resource, "{id}");
            assert_eq!(row.op.readonly, *readonly, "{id}");
            assert_eq!(row.op.hijack, *hijack, "{id}");
            assert_eq!(row.op.body, *body, "{id}");
        }
        for row in rows() {
            assert_ne!(row.op.resource, "unknown", "{}", row.op.id);
        }
    }

    #[test]
    fn template_matching() {
        type Params<'a> = Option<&'a [(&'a str, &'a str)]>;
        let cases: &[(&str, &str, Params)] = &[
            (
                "/containers/{name:.*}/json",
                "/containers/a/b/json",
                Some(&[("name", "a/b")]),
            ),
            (
                "/containers/{name:.*}/json",
                "/containers//json",
                Some(&[("name", "")]),
            ),
            (
                "/containers/{name:.*}/json",
                "/containers/json/json/json",
                Some(&[("name", "json/json")]),
            ),
            ("/networks/{id:.+}", "/networks/", None),
            ("/networks/{id:.+}", "/networks/x/y", Some(&[("id", "x/y")])),
            ("/services/{id}", "/services/a/b", None),
            ("/services/{id}", "/services/a", Some(&[("id", "a")])),
            (
                "/containers/{name}/checkpoints/{checkpoint}",
                "/containers/c/checkpoints/k",
                Some(&[("name", "c"), ("checkpoint", "k")]),
            ),
            ("/_ping", "/_ping/", None),
        ];
        for (template, path, want) in cases {
            let template: &'static str = template;
            let tokens = parse_template(template).unwrap();
            let got = match_template(&tokens, path);
            let want: Option<Vec<(&str, String)>> =
                want.map(|w| w.iter().map(|(k, v)| (*k, v.to_string())).collect());
            assert_eq!(got, want, "{template} vs {path}");
        }
    }
}
