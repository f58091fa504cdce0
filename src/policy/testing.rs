//! `moat policy check` and `moat policy test`: compile a policy directory
//! the way the gateway does, and run its `test_*` rules like `opa test`.
//!
//! Tests run in the interpreter, not the RVM, because they use `with`. The
//! interpreter gets the modules with their import aliases resolved
//! ([`aliases`]), since regorus' interpreter evaluates an alias as the whole
//! imported document, which can disagree with the RVM the gateway runs.
//! [`Interpreter`] exposes the same engine so the Rust tests can check both
//! decide alike.

mod aliases;

use std::path::Path;
use std::time::{Duration, Instant};

use regorus::Value;

use super::eval::Raw;
use super::set::{locate, Compiled, Sources};
use super::PolicyError;

/// What `check` found.
pub struct CheckReport {
    pub revision: String,
    /// Policy files loaded by the gateway.
    pub policy_files: usize,
    /// `*_test.rego` files (parsed, not loaded by the gateway).
    pub test_files: usize,
    pub has_deny: bool,
}

/// Compiles `dir` exactly as the gateway would, and also parses and
/// analyses the test files.
pub fn check(dir: &Path) -> Result<CheckReport, PolicyError> {
    let sources = Sources::read(dir)?;
    let compiled = Compiled::compile(&sources)?;
    let test_files = sources
        .rego
        .iter()
        .filter(|(n, _)| Sources::is_test(n))
        .count();
    if test_files > 0 {
        let mut engine = sources.engine(true)?;
        engine
            .compile_with_entrypoint(&regorus::Rc::from(super::set::ALLOW))
            .map_err(|e| PolicyError::Compile(locate(&e)))?;
    }
    Ok(CheckReport {
        revision: compiled.revision,
        policy_files: sources.rego.len() - test_files,
        test_files,
        has_deny: compiled.has_deny,
    })
}

/// One `test_*` rule's outcome.
pub struct TestResult {
    /// `data.<package>.<rule>`
    pub name: String,
    pub file: String,
    pub passed: bool,
    /// Why it failed, when it did not evaluate to `true`.
    pub detail: Option<String>,
    pub duration: Duration,
}

/// Runs every `test_*` rule of every `*_test.rego` under `dir`. A test
/// passes when it evaluates to `true`; undefined, false or an error fail.
pub fn run_tests(dir: &Path) -> Result<Vec<TestResult>, PolicyError> {
    let sources = Sources::read(dir)?;
    let mut engine = test_engine(&sources, true)?;
    let mut results = Vec::new();
    for (file, text) in sources.rego.iter().filter(|(n, _)| Sources::is_test(n)) {
        let Some(pkg) = package_of(text) else {
            continue;
        };
        for rule in test_rules(text) {
            let name = format!("data.{pkg}.{rule}");
            let start = Instant::now();
            let outcome = engine.eval_rule(name.clone());
            let duration = start.elapsed();
            let (passed, detail) = match outcome {
                Ok(Value::Bool(true)) => (true, None),
                Ok(Value::Undefined) => (false, Some("undefined".to_string())),
                Ok(v) => (
                    false,
                    Some(format!(
                        "evaluated to {}",
                        v.to_json_str()
                            .unwrap_or_else(|_| "a non-true value".into())
                    )),
                ),
                Err(e) => (false, Some(locate(&e))),
            };
            results.push(TestResult {
                name,
                file: file.clone(),
                passed,
                detail,
                duration,
            });
        }
    }
    Ok(results)
}

/// An interpreter engine as `moat policy test` builds it: the files of
/// `sources` (tests too when asked) with their import aliases resolved, and
/// the data.
fn test_engine(sources: &Sources, include_tests: bool) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    for (name, text) in &sources.rego {
        if !include_tests && Sources::is_test(name) {
            continue;
        }
        engine
            .add_policy(name.clone(), aliases::resolve(name, text))
            .map_err(|e| PolicyError::Compile(locate(&e)))?;
    }
    engine
        .add_data(Value::from(sources.data.clone()))
        .map_err(|e| PolicyError::Data(format!("{e}")))?;
    Ok(engine)
}

/// The package of the probe module [`Interpreter`] adds: nested under
/// `docker.authz` and reading the decision through an import alias, as a
/// test does.
const PROBE: &str = "docker.authz.moat_internal_probe_test";

/// The test runner's evaluation of a policy directory, for checking that it
/// decides like the gateway's RVM: `allow` and `deny` read the way a test
/// reads them (`authz.allow with input as …`).
pub struct Interpreter {
    engine: regorus::Engine,
}

impl Interpreter {
    /// Loads the policy files of `dir` (not the tests) like `run_tests`.
    pub fn new(dir: &Path) -> Result<Interpreter, PolicyError> {
        let sources = Sources::read(dir)?;
        let mut engine = test_engine(&sources, false)?;
        let probe = format!(
            "package {PROBE}\nimport rego.v1\nimport data.docker.authz\n\
             allow := x if {{ x := authz.allow with input as input.probe }}\n\
             deny := x if {{ x := authz.deny with input as input.probe }}\n\
             owner_scope := x if {{ x := authz.owner_scope with input as input.probe }}\n\
             view_scope := x if {{ x := authz.view_scope with input as input.probe }}\n"
        );
        engine
            .add_policy(
                "moat:probe_test.rego".into(),
                aliases::resolve("moat:probe_test.rego", &probe),
            )
            .map_err(|e| PolicyError::Compile(locate(&e)))?;
        Ok(Interpreter { engine })
    }

    /// `allow`, `deny` and the ownership outputs for `input` (Undefined when
    /// not defined).
    pub fn raw(&mut self, input: serde_json::Value) -> Result<Raw, PolicyError> {
        let mut probe = serde_json::Map::new();
        probe.insert("probe".into(), input);
        self.engine
            .set_input(Value::from(serde_json::Value::Object(probe)));
        let mut rule = |name: &str| {
            self.engine
                .eval_rule(format!("data.{PROBE}.{name}"))
                .map_err(|e| PolicyError::Compile(locate(&e)))
        };
        Ok(Raw {
            allow: rule("allow")?,
            deny: rule("deny")?,
            owner_scope: rule("owner_scope")?,
            view_scope: rule("view_scope")?,
        })
    }
}

fn package_of(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("package ")
            .map(|p| p.trim().to_string())
    })
}

/// The names of the `test_*` rules a module declares (each once, in order).
fn test_rules(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if !line.starts_with("test_") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_test_rules_and_package() {
        let text = "package docker.authz_test\n\nimport rego.v1\n\ntest_a if {\n  true\n}\n\ntest_b if true\ntest_a if false\n# test_c if true\n  test_d if true\n";
        assert_eq!(package_of(text).as_deref(), Some("docker.authz_test"));
        assert_eq!(test_rules(text), vec!["test_a", "test_b"]);
    }
}
