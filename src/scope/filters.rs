//! The `filters` query parameter of lists, events and prunes, parsed in
//! both forms the daemon accepts and merged with moat's own `label=`
//! filter, so that a narrowed caller's `--filter`, `--last` and `--limit`
//! still apply (the engine ANDs label filters).
//!
//! The daemon (`filters.FromJSON`) reads the first `filters` value as a
//! JSON object mapping each filter name either to an object of values
//! (`{"label":{"a=b":true}}`, the current form) or, when that does not
//! parse, to a list of strings (`{"label":["a=b"]}`, the legacy form). A
//! value in neither form is refused here as the daemon refuses it. The
//! engine receives moat's serialization, in the current form, in place of
//! every `filters` value the client sent.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ScopeError;

/// Filter name → values (each with the boolean the current form carries).
pub(crate) type Filters = BTreeMap<String, BTreeMap<String, bool>>;

/// Parses one `filters` value (empty: no filters).
pub(crate) fn parse(raw: &str) -> Result<Filters, ScopeError> {
    let mut out = Filters::new();
    if raw.is_empty() {
        return Ok(out);
    }
    let bad = || ScopeError::BadFilters;
    let Value::Object(top) = serde_json::from_str::<Value>(raw).map_err(|_| bad())? else {
        return Err(bad());
    };
    let current = top.values().all(Value::is_object);
    for (name, values) in top {
        let entry = out.entry(name).or_default();
        match values {
            Value::Object(m) if current => {
                for (v, flag) in m {
                    let Value::Bool(flag) = flag else {
                        return Err(bad());
                    };
                    entry.insert(v, flag);
                }
            }
            Value::Array(items) if !current => {
                for item in items {
                    let Value::String(v) = item else {
                        return Err(bad());
                    };
                    entry.insert(v, true);
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// The client's filters (the first `filters` value, as the daemon reads
/// it) with `label=<key>=<value>` added; every `filters` entry of `query`
/// is replaced by the merged one.
pub(crate) fn narrow(
    query: &mut Vec<(String, String)>,
    key: &str,
    value: &str,
) -> Result<(), ScopeError> {
    let first = query
        .iter()
        .find(|(k, _)| k == "filters")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let mut filters = parse(first)?;
    filters
        .entry("label".into())
        .or_default()
        .insert(format!("{key}={value}"), true);
    let merged = serde_json::to_string(&filters).map_err(|_| ScopeError::BadFilters)?;
    query.retain(|(k, _)| k != "filters");
    query.push(("filters".into(), merged));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn narrowed(query: &[(&str, &str)]) -> Result<Vec<(String, String)>, ScopeError> {
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        narrow(&mut q, "io.moat.scope", "user:alice")?;
        Ok(q)
    }

    fn filters_of(q: &[(String, String)]) -> Value {
        let all: Vec<_> = q.iter().filter(|(k, _)| k == "filters").collect();
        assert_eq!(all.len(), 1, "{q:?}");
        serde_json::from_str(&all[0].1).unwrap()
    }

    #[test]
    fn adds_the_label_filter_to_no_filters() {
        let q = narrowed(&[("all", "1"), ("limit", "3")]).unwrap();
        assert_eq!(
            &q[..2],
            &[("all".into(), "1".into()), ("limit".into(), "3".into())]
        );
        assert_eq!(
            filters_of(&q),
            serde_json::json!({"label": {"io.moat.scope=user:alice": true}})
        );
        let q = narrowed(&[("filters", "")]).unwrap();
        assert_eq!(filters_of(&q)["label"]["io.moat.scope=user:alice"], true);
    }

    #[test]
    fn merges_both_forms() {
        let q = narrowed(&[(
            "filters",
            r#"{"label":{"app=web":true},"status":{"exited":true}}"#,
        )])
        .unwrap();
        assert_eq!(
            filters_of(&q),
            serde_json::json!({"label": {"app=web": true, "io.moat.scope=user:alice": true}, "status": {"exited": true}})
        );
        let q = narrowed(&[("filters", r#"{"label":["app=web"],"name":["x"]}"#)]).unwrap();
        assert_eq!(
            filters_of(&q),
            serde_json::json!({"label": {"app=web": true, "io.moat.scope=user:alice": true}, "name": {"x": true}})
        );
    }

    /// The client cannot widen the filter: its own scope label is ANDed
    /// with moat's, and a second `filters` value (which the daemon would
    /// ignore) is dropped, not merged.
    #[test]
    fn the_first_filters_value_is_merged_and_the_rest_dropped() {
        let q = narrowed(&[
            ("filters", r#"{"label":{"io.moat.scope=user:bob":true}}"#),
            ("filters", r#"{"name":["x"]}"#),
        ])
        .unwrap();
        assert_eq!(
            filters_of(&q),
            serde_json::json!({"label": {"io.moat.scope=user:bob": true, "io.moat.scope=user:alice": true}})
        );
    }

    #[test]
    fn refuses_what_the_daemon_cannot_parse() {
        for bad in [
            "x",
            "[]",
            "null",
            r#"{"label":"a"}"#,
            r#"{"label":{"a":"yes"}}"#,
            r#"{"label":[1]}"#,
            r#"{"label":{"a":true},"name":["x"]}"#,
            r#"{"label":null}"#,
        ] {
            assert!(
                matches!(narrowed(&[("filters", bad)]), Err(ScopeError::BadFilters)),
                "{bad}"
            );
        }
    }
}
