//! A policy set: the `*.rego` files and `data.json`/`data.yaml` of a policy
//! directory, read, compiled once to an RVM program, and identified by a
//! revision hash. Requests never prepare anything: they run the program.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::Program;
use regorus::{Engine, Rc};
use sha2::{Digest, Sha256};

use super::memo::{self, Memo};
use super::PolicyError;

/// The rule that must be true for a request to be allowed.
pub const ALLOW: &str = "data.docker.authz.allow";
/// The optional set of deny messages; any message denies.
pub const DENY: &str = "data.docker.authz.deny";
/// The package of moat's own wrapper module.
const DECISION_PACKAGE: &str = "moat_internal_decision";
/// The wrapper rule the VM runs: `{"allow": …, "deny": …, "owner_scope":
/// …, "view_scope": …}`.
pub const DECISION: &str = "data.moat_internal_decision.result";
/// The decision outputs read beside `allow` and `deny` when the pack
/// defines them (ownership, issue 15): the scope stamped on what a request
/// creates, and the scope lists, events and prunes are narrowed to.
pub const OUTPUTS: [&str; 2] = ["owner_scope", "view_scope"];

/// The files of a policy directory, read but not compiled.
pub struct Sources {
    /// `(display name, contents)` of every `*.rego` file, sorted by name.
    pub rego: Vec<(String, String)>,
    /// `data.json` or `data.yaml`, as JSON; an empty object when absent.
    pub data: serde_json::Value,
    /// A hash over every file's name and contents.
    pub revision: String,
}

impl Sources {
    /// Reads `dir`: every `*.rego` under it (hidden entries skipped, so the
    /// `..data` links of a Kubernetes ConfigMap are not read twice) and its
    /// top-level `data.json` or `data.yaml`.
    pub fn read(dir: &Path) -> Result<Sources, PolicyError> {
        let mut files = Vec::new();
        collect_rego(dir, &mut files)?;
        files.sort();
        let mut hasher = Sha256::new();
        let mut rego = Vec::with_capacity(files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::Io {
                path: path.clone(),
                err: e,
            })?;
            let name = path.display().to_string();
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
            rego.push((name, text));
        }
        let data = read_data(dir, &mut hasher)?;
        Ok(Sources {
            rego,
            data,
            revision: hex::encode(&hasher.finalize()[..8]),
        })
    }

    /// True for `*_test.rego` files, which `moat policy test` runs and the
    /// gateway does not load.
    pub fn is_test(name: &str) -> bool {
        name.ends_with("_test.rego")
    }

    /// An interpreter engine with the given files and the data loaded.
    pub fn engine(&self, include_tests: bool) -> Result<Engine, PolicyError> {
        let mut engine = Engine::new();
        for (name, text) in &self.rego {
            if !include_tests && Self::is_test(name) {
                continue;
            }
            engine
                .add_policy(name.clone(), text.clone())
                .map_err(|e| PolicyError::Compile(locate(&e)))?;
        }
        engine
            .add_data(regorus::Value::from(self.data.clone()))
            .map_err(|e| PolicyError::Data(format!("{e}")))?;
        Ok(engine)
    }
}

fn collect_rego(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let rd = std::fs::read_dir(dir).map_err(|e| PolicyError::Io {
        path: dir.to_path_buf(),
        err: e,
    })?;
    for entry in rd {
        let entry = entry.map_err(|e| PolicyError::Io {
            path: dir.to_path_buf(),
            err: e,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            collect_rego(&path, out)?;
        } else if name.ends_with(".rego") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_data(dir: &Path, hasher: &mut Sha256) -> Result<serde_json::Value, PolicyError> {
    let json = dir.join("data.json");
    let yaml = ["data.yaml", "data.yml"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists());
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| PolicyError::Io {
            path: p.to_path_buf(),
            err: e,
        })
    };
    let value = match (json.exists(), yaml) {
        (true, Some(y)) => {
            return Err(PolicyError::Data(format!(
                "both {} and {} exist; keep one of them",
                json.display(),
                y.display()
            )))
        }
        (true, None) => {
            let text = read(&json)?;
            hasher.update(text.as_bytes());
            serde_json::from_str(&text).map_err(|e| {
                PolicyError::Data(format!(
                    "{}:{}:{}: {e}",
                    json.display(),
                    e.line(),
                    e.column()
                ))
            })?
        }
        (false, Some(y)) => {
            let text = read(&y)?;
            hasher.update(text.as_bytes());
            serde_saphyr::from_str::<serde_json::Value>(&text)
                .map_err(|e| PolicyError::Data(format!("{}: {e}", y.display())))?
        }
        (false, None) => serde_json::Value::Object(Default::default()),
    };
    if !value.is_object() {
        return Err(PolicyError::Data(
            "the data file must hold an object at its top level".into(),
        ));
    }
    Ok(value)
}

/// Turns a regorus error (a multi-line message with a `--> file:line:col`
/// pointer) into one line: `file:line:col: message`.
pub fn locate(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let loc = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("--> "))
        .map(str::trim);
    let msg = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error");
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    match loc {
        Some(loc) => format!("{loc}: {msg}"),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled policy set, ready to evaluate.
pub struct Compiled {
    /// Unique per compilation; keys the per-thread VMs.
    pub id: u64,
    /// The hash of the files this set was compiled from.
    pub revision: String,
    pub program: Arc<Program>,
    pub data: regorus::Value,
    /// Whether the policy defines `data.docker.authz.deny` at all.
    pub has_deny: bool,
    /// The builtins the program calls whose result is not a function of
    /// `input` and `data` ([`memo::impure_builtins`]); empty when none.
    pub impure: Vec<String>,
    /// This set's remembered decisions; `None` when [`Compiled::impure`]
    /// is not empty (every request is then evaluated).
    pub memo: Option<Memo>,
}

impl Compiled {
    /// Compiles the non-test files of `sources` to one RVM program with the
    /// entry points [`ALLOW`] and (when defined) [`DENY`].
    pub fn compile(sources: &Sources) -> Result<Compiled, PolicyError> {
        if !sources.rego.iter().any(|(n, _)| !Sources::is_test(n)) {
            return Err(PolicyError::NoPolicy);
        }
        let mut engine = sources.engine(false)?;
        if !defines(&engine, "allow") {
            return Err(PolicyError::Compile(format!(
                "no rule defines {ALLOW}: add `package docker.authz` with an `allow` rule"
            )));
        }
        let has_deny = defines(&engine, "deny");
        // One entry point that yields every result, so the rules they share
        // are evaluated once per request. An output the pack does not
        // define is null.
        let outputs: String = OUTPUTS
            .iter()
            .map(|o| {
                let value = if defines(&engine, o) {
                    format!("{o} := data.docker.authz.{o}\n")
                } else {
                    String::new()
                };
                format!("default {o} := null\n{value}")
            })
            .collect();
        let wrapper = format!(
            "package {DECISION_PACKAGE}\nimport rego.v1\n\
             default allow := false\nallow := {ALLOW}\n\
             default deny := false\n{}{outputs}\
             result := {{\"allow\": allow, \"deny\": deny, \
             \"owner_scope\": owner_scope, \"view_scope\": view_scope}}\n",
            if has_deny {
                format!("deny := {DENY}\n")
            } else {
                String::new()
            }
        );
        engine
            .add_policy("moat:decision.rego".into(), wrapper)
            .map_err(|e| PolicyError::Compile(locate(&e)))?;
        let compiled = engine
            .compile_with_entrypoint(&Rc::from(DECISION))
            .map_err(|e| PolicyError::Compile(locate(&e)))?;
        let program = Compiler::compile_from_policy(&compiled, &[DECISION])
            .map_err(|e| PolicyError::Compile(format!("{e}")))?;
        let data = regorus::Value::from(sources.data.clone());
        // Data that collides with a rule path is only detected by a VM.
        let mut probe = regorus::rvm::RegoVM::new();
        probe.load_program(program.clone());
        probe
            .set_data(data.clone())
            .map_err(|e| PolicyError::Data(format!("data conflicts with a policy rule: {e}")))?;
        let impure = memo::impure_builtins(&program);
        let memo = impure.is_empty().then(|| Memo::new(memo::CAPACITY));
        Ok(Compiled {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            revision: sources.revision.clone(),
            program,
            data,
            has_deny,
            impure,
            memo,
        })
    }
}

/// Whether some module of package `docker.authz` declares `rule`.
fn defines(engine: &Engine, rule: &str) -> bool {
    engine
        .get_policy_package_components()
        .map(|pkgs| {
            pkgs.iter().any(|p| {
                p.components == ["docker", "authz"]
                    && engine
                        .has_declared_rule_rooted_at(&p.source_file, rule)
                        .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}
