//! The strict JSON parser for inspected bodies: one JSON value and nothing
//! after it, no two keys in one object that Go's `encoding/json` would treat
//! as the same field (equal under [`fold_key`]).

use std::cell::RefCell;
use std::collections::HashSet;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::BodyError;

/// Folds a key the way Go's `encoding/json` compares field names: ASCII
/// case-insensitively, plus Unicode letters whose case mapping lands on an
/// ASCII letter (U+017F long s ≡ `s`, U+212A Kelvin sign ≡ `k`, U+0130 and
/// U+0131 ≡ `i`; newer Go folds with `ToUpper(ToLower(r))`, older Go with
/// simple folding; this covers both).
pub fn fold_key(key: &str) -> String {
    key.chars().map(fold_char).collect()
}

fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    match c {
        '\u{017F}' => 'S',
        '\u{212A}' => 'K',
        '\u{0130}' | '\u{0131}' => 'I',
        _ => {
            let mut lower = c.to_lowercase();
            let (Some(l), None) = (lower.next(), lower.next()) else {
                return c;
            };
            let mut upper = l.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        }
    }
}

/// Parses exactly one JSON value (surrounding whitespace allowed), refusing
/// trailing data and keys that fold-collide within one object. `\u` escapes
/// in keys are decoded first, as Go does, so the decoded spelling is judged.
pub(super) fn parse_strict(bytes: &[u8]) -> Result<Value, BodyError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = StrictValue {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match (result, duplicate.into_inner()) {
        (_, Some((first, second))) => Err(BodyError::DuplicateKey { first, second }),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(BodyError::InvalidJson(e.to_string())),
    }
}

/// Builds a `serde_json::Value`, recording the first fold-colliding pair.
#[derive(Clone, Copy)]
struct StrictValue<'a> {
    duplicate: &'a RefCell<Option<(String, String)>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut folded: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !folded.insert(fold_key(&key)) {
                let fk = fold_key(&key);
                let first = out
                    .keys()
                    .find(|k| fold_key(k) == fk)
                    .cloned()
                    .unwrap_or_else(|| key.clone());
                *self.duplicate.borrow_mut() = Some((first, key));
                return Err(A::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        let same: &[(&str, &str)] = &[
            ("HostConfig", "hostconfig"),
            ("HostConfig", "HOSTCONFIG"),
            ("Privileged", "privileged"),
            ("Mask", "Ma\u{017F}k"),
            ("Kind", "\u{212A}ind"),
            ("Pid", "P\u{0131}d"),
            ("Pid", "P\u{0130}d"),
        ];
        for (a, b) in same {
            assert_eq!(fold_key(a), fold_key(b), "{a} vs {b}");
        }
        for (a, b) in [("Binds", "Bind"), ("Image", "Imagé")] {
            assert_ne!(fold_key(a), fold_key(b), "{a} vs {b}");
        }
    }

    #[test]
    fn parsing() {
        let ok: &[(&str, &str)] = &[
            ("{}", "{}"),
            (" {\"a\":1} \n", "{\"a\":1}"),
            ("[1,2,{\"b\":null}]", "[1,2,{\"b\":null}]"),
            ("{\"\\u0048ostConfig\":{}}", "{\"HostConfig\":{}}"),
            (
                "{\"a\":{\"x\":1},\"b\":{\"x\":2}}",
                "{\"a\":{\"x\":1},\"b\":{\"x\":2}}",
            ),
            ("{\"z\":1,\"a\":2}", "{\"z\":1,\"a\":2}"),
            ("1.5e3", "1500.0"),
        ];
        for (input, want) in ok {
            let got = parse_strict(input.as_bytes()).unwrap();
            assert_eq!(got.to_string(), *want, "{input}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "InvalidJson"),
            ("{", "InvalidJson"),
            ("{} {}", "InvalidJson"),
            ("{}x", "InvalidJson"),
            ("{\"a\":1,}", "InvalidJson"),
            ("\u{feff}{}", "InvalidJson"),
            ("{\"a\":NaN}", "InvalidJson"),
            ("{\"a\":\"\\ud800\"}", "InvalidJson"),
            ("{\"a\":1,\"a\":2}", "DuplicateKey"),
            ("{\"Image\":\"a\",\"image\":\"b\"}", "DuplicateKey"),
            (
                "{\"HostConfig\":{\"Privileged\":false,\"privileged\":true}}",
                "DuplicateKey",
            ),
            (
                "{\"Privileged\":false,\"\\u0070rivileged\":true}",
                "DuplicateKey",
            ),
            ("{\"Mask\":1,\"Ma\u{017F}k\":2}", "DuplicateKey"),
            ("[{\"k\":1,\"\u{212A}\":2}]", "DuplicateKey"),
        ];
        for (input, want) in bad {
            let err = parse_strict(input.as_bytes()).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{input}: {err:?}");
        }
        let err = parse_strict(b"{\"Image\":1,\"IMAGE\":2}").unwrap_err();
        assert!(err.to_string().contains("`Image`") && err.to_string().contains("`IMAGE`"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(parse_strict(deep.as_bytes()).is_err());
    }
}
