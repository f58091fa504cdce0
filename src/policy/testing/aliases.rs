//! Resolves import aliases to full references before `moat policy test`
//! hands modules to the regorus interpreter, so tests decide like the RVM.
//!
//! regorus 0.14.1's interpreter evaluates `authz.deny` (with
//! `import data.docker.authz`) by first evaluating the whole document
//! `data.docker.authz` and then selecting `deny`, unlike OPA and the RVM,
//! which resolve the alias statically to `data.docker.authz.deny`. Whole-
//! document evaluation walks every module under the path, which
//! - evaluates test packages nested under it (`docker.authz.ports_test`)
//!   from inside their own tests: "cyclic evaluation" as soon as two such
//!   packages exist;
//! - marks the package evaluated after its first module, so a rule that
//!   refers to a rule defined further on (a later file, or lower in a file
//!   other than the first) reads it as undefined: a deny rule that uses the
//!   pack's `body` helper silently never fires in tests, while the gateway
//!   denies.
//!
//! Rewriting each root use of an alias to the imported reference
//! (`authz.deny` → `data.docker.authz.deny`) gives the interpreter the same
//! reference OPA resolves, and avoids both. Only the interpreter copy used
//! for tests is rewritten; the gateway compiles the files as written.

use regorus::unstable::{Lexer, TokenKind};
use regorus::{Engine, Source};

/// `text` with every use of a `data.…`/`input.…` import alias replaced by
/// the imported reference. Lines are kept (columns after a replaced alias
/// shift). Text that does not parse is returned unchanged, so the engine
/// reports the error at its real location.
pub(super) fn resolve(name: &str, text: &str) -> String {
    let aliases = match imports(name, text) {
        Some(a) if !a.is_empty() => a,
        _ => return text.to_string(),
    };
    let Ok(source) = Source::from_contents(name.to_string(), text.to_string()) else {
        return text.to_string();
    };
    let mut lexer = Lexer::new(&source);
    let mut out = String::with_capacity(text.len() + 64);
    let mut copied = 0usize;
    let mut after_dot = false;
    loop {
        let Ok(token) = lexer.next_token() else {
            return text.to_string();
        };
        let (start, end) = (token.1.start as usize, token.1.end as usize);
        match token.0 {
            TokenKind::Eof => break,
            TokenKind::Ident if !after_dot => {
                let word = token.1.text();
                let in_import = aliases.iter().any(|a| a.import.contains(&start));
                if let Some(a) = aliases.iter().find(|a| a.alias == word) {
                    if !in_import && start >= copied {
                        out.push_str(&text[copied..start]);
                        out.push_str(&a.path);
                        copied = end;
                    }
                }
            }
            _ => {}
        }
        after_dot = token.0 == TokenKind::Symbol && token.1.text() == ".";
    }
    out.push_str(&text[copied..]);
    out
}

struct Alias {
    alias: String,
    /// The imported reference, e.g. `data.docker.authz`.
    path: String,
    /// Byte range of the import statement, left as written.
    import: std::ops::Range<usize>,
}

/// The `data`/`input` imports of a module and the names they bind.
fn imports(name: &str, text: &str) -> Option<Vec<Alias>> {
    let mut engine = Engine::new();
    engine.add_policy(name.to_string(), text.to_string()).ok()?;
    let module = engine.get_modules().first()?.clone();
    let mut out = Vec::new();
    for imp in &module.imports {
        let path = imp.refr.span().text().to_string();
        if !(path.starts_with("data.") || path.starts_with("input."))
            || path.chars().any(char::is_whitespace)
        {
            continue;
        }
        let alias = match &imp.r#as {
            Some(a) => a.text().to_string(),
            None => match path.rsplit('.').next() {
                Some(last) if is_ident(last) => last.to_string(),
                _ => continue,
            },
        };
        out.push(Alias {
            alias,
            path,
            import: imp.span.start as usize..imp.span.end as usize,
        });
    }
    Some(out)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_root_uses_of_aliases_only() {
        let text = "package docker.authz_test\n\nimport rego.v1\n\nimport data.docker.authz\nimport input.request as req\n\n# authz.deny in a comment\ntest_a if {\n\tsome msg in authz.deny with input as {\"authz\": x.authz}\n\tauthz.f(req.body)\n}\n";
        let got = resolve("t_test.rego", text);
        assert_eq!(
            got,
            "package docker.authz_test\n\nimport rego.v1\n\nimport data.docker.authz\nimport input.request as req\n\n# authz.deny in a comment\ntest_a if {\n\tsome msg in data.docker.authz.deny with input as {\"authz\": x.authz}\n\tdata.docker.authz.f(input.request.body)\n}\n"
        );
        assert_eq!(got.lines().count(), text.lines().count());
    }

    #[test]
    fn leaves_text_without_imports_or_unparsable_alone() {
        let plain = "package p\nimport rego.v1\nx := 1\n";
        assert_eq!(resolve("p.rego", plain), plain);
        let broken = "package p\nimport data.q\nx := q.y +\n";
        assert_eq!(resolve("p.rego", broken), broken);
    }
}
