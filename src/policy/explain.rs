//! `moat policy explain`: which `allow` rules of a policy hold for one
//! input, so that an administrator sees why a request was allowed, or that
//! no rule allowed it (the deny messages say the rest).
//!
//! Each definition of `allow` in package `docker.authz` (a line of a
//! non-test file that starts with `allow`, as `moat policy test` finds
//! `test_*` rules) is evaluated alone: a copy of the policy names that one
//! definition `moat_internal_explain_allow`, and the interpreter evaluates
//! it for the input. A definition whose head does not start its line is
//! not found; the decision itself does not depend on this.

use std::path::Path;

use regorus::Value;

use super::set::{locate, Sources};
use super::PolicyError;

/// The package whose `allow` decides.
const PACKAGE: &str = "docker.authz";
/// What the definition under test is renamed to.
const PROBE: &str = "moat_internal_explain_allow";

/// One definition of `allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    /// The file, as `moat policy check` names it.
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// The definition's first line, trimmed.
    pub head: String,
    /// Whether the definition alone makes `allow` true for the input.
    pub holds: bool,
}

/// Every `allow` definition of the policy in `dir`, evaluated for `input`.
pub fn allow_rules(dir: &Path, input: &serde_json::Value) -> Result<Vec<AllowRule>, PolicyError> {
    let sources = Sources::read(dir)?;
    let mut out = Vec::new();
    for (i, (file, text)) in sources.rego.iter().enumerate() {
        if Sources::is_test(file) || package_of(text).as_deref() != Some(PACKAGE) {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if !is_allow_head(line) {
                continue;
            }
            let mut probe = Sources {
                rego: sources.rego.clone(),
                data: sources.data.clone(),
                revision: sources.revision.clone(),
            };
            probe.rego[i].1 = rename_line(text, n);
            let mut engine = probe.engine(false)?;
            engine.set_input(Value::from(input.clone()));
            let value = engine
                .eval_rule(format!("data.{PACKAGE}.{PROBE}"))
                .map_err(|e| PolicyError::Compile(locate(&e)))?;
            out.push(AllowRule {
                file: file.clone(),
                line: n + 1,
                head: line.trim().to_owned(),
                holds: value == Value::Bool(true),
            });
        }
    }
    Ok(out)
}

/// `allow if …`, `allow := …`, `allow {` (not `default allow`, not
/// `allowed`).
fn is_allow_head(line: &str) -> bool {
    line.strip_prefix("allow")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c == ' ' || c == '\t' || c == '{' || c == ':' || c == '=')
}

/// `text` with the `allow` at the start of line `n` (0-based) renamed.
fn rename_line(text: &str, n: usize) -> String {
    let mut out = String::with_capacity(text.len() + PROBE.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        match line.strip_prefix("allow") {
            Some(rest) if i == n => {
                out.push_str(PROBE);
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
    }
    out
}

fn package_of(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("package ")
            .map(|p| p.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_allow_heads_only() {
        assert!(is_allow_head("allow if \"admin\" in roles"));
        assert!(is_allow_head("allow if {"));
        assert!(is_allow_head("allow := true if {"));
        assert!(is_allow_head("allow {"));
        assert!(!is_allow_head("default allow := false"));
        assert!(!is_allow_head("allowed(op) if {"));
        assert!(!is_allow_head("  allow if true"));
        assert!(!is_allow_head("# allow if true"));
    }

    #[test]
    fn renames_one_definition() {
        let text = "package docker.authz\nallow if a\nallow if b\n";
        assert_eq!(
            rename_line(text, 2),
            format!("package docker.authz\nallow if a\n{PROBE} if b\n")
        );
    }

    /// Against the shipped pack: an admin is allowed by the admin rule, a
    /// viewer's write by none.
    #[test]
    fn shipped_pack_names_the_rule_that_allowed() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let admin = serde_json::json!({
            "request": {"method": "GET", "path": "/_ping", "api_version": null, "query": {}, "headers": {}, "body": null, "uri": "/_ping"},
            "operation": {"id": "SystemPing", "params": {}, "resource": "system", "readonly": true},
            "user": {"name": "root", "groups": ["admin"], "auth_method": "certificate", "scopes": [], "claims": null, "certificate": null},
            "client": {"address": "127.0.0.1", "port": 1}
        });
        let rules = allow_rules(&dir, &admin).unwrap();
        assert!(!rules.is_empty());
        let holding: Vec<_> = rules.iter().filter(|r| r.holds).collect();
        assert!(
            holding.iter().any(|r| r.head.contains("admin")),
            "{rules:?}"
        );
        let mut nobody = admin.clone();
        nobody["user"]["groups"] = serde_json::json!([]);
        nobody["user"]["name"] = serde_json::json!("nobody");
        nobody["operation"] = serde_json::json!({"id": "ContainerDelete", "params": {"name": "x"}, "resource": "containers", "readonly": false});
        nobody["request"]["method"] = serde_json::json!("DELETE");
        let rules = allow_rules(&dir, &nobody).unwrap();
        assert!(rules.iter().all(|r| !r.holds), "{rules:?}");
    }
}
