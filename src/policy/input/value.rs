//! The input document converted directly to regorus' value type, which is
//! what the gateway evaluates on every request.
//!
//! [`super::build`] (serde_json) is what `moat policy eval` prints and
//! `docs/policy-input.md` describes; both come from the one description,
//! [`super::Input`]. This converter is a serde [`Serializer`] into
//! [`regorus::Value`], so the document needs no intermediate JSON tree and
//! no serde round trip (they were about half of a `/_ping`'s policy time).
//! Numbers are converted as regorus itself converts JSON, so they keep their
//! exact form. Field names are allocated once per thread and shared by
//! reference count, and a [`super::Shared`] part (the body, the query) is
//! converted once however often it appears. The tests check that both
//! conversions give equal documents.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use regorus::Value;
use serde::ser::{self, Impossible, Serialize, Serializer};

/// The newtype name [`super::Shared`] serializes under: the part is
/// converted once, then shared.
pub(crate) const SHARED: &str = "$moat::input::Shared";

/// Converts `doc`; [`Value::Undefined`] if it cannot be (a non-finite
/// number), which no policy allows.
pub(crate) fn to_value<T: Serialize + ?Sized>(doc: &T) -> Value {
    let shared = RefCell::new(Vec::new());
    doc.serialize(Converter { shared: &shared })
        .unwrap_or(Value::Undefined)
}

thread_local! {
    /// Field names, allocated once per thread.
    static KEYS: RefCell<HashMap<&'static str, Value>> = RefCell::new(HashMap::new());
}

fn key(name: &'static str) -> Value {
    KEYS.with(|k| {
        k.borrow_mut()
            .entry(name)
            .or_insert_with(|| Value::from(name))
            .clone()
    })
}

/// Why a document could not be converted.
#[derive(Debug)]
pub(crate) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Parts already converted, by address and type, for the duration of one
/// conversion (the borrowed document outlives it, so addresses are stable).
type SharedParts = RefCell<Vec<((usize, &'static str), Value)>>;

#[derive(Clone, Copy)]
struct Converter<'s> {
    shared: &'s SharedParts,
}

impl<'s> Serializer for Converter<'s> {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = Seq<'s>;
    type SerializeTuple = Seq<'s>;
    type SerializeTupleStruct = Seq<'s>;
    type SerializeTupleVariant = Impossible<Value, Error>;
    type SerializeMap = Map<'s>;
    type SerializeStruct = Struct<'s>;
    type SerializeStructVariant = Impossible<Value, Error>;

    fn serialize_bool(self, v: bool) -> Result<Value, Error> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Error> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Error> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Error> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Error> {
        Ok(Value::from(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, Error> {
        Ok(Value::from(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Error> {
        Ok(Value::from(u64::from(v)))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Error> {
        Ok(Value::from(u64::from(v)))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Error> {
        Ok(Value::from(u64::from(v)))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Error> {
        Ok(Value::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, Error> {
        Ok(Value::from(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Error> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Error> {
        // As regorus' own JSON conversion: no non-finite numbers.
        if !v.is_finite() {
            return Err(Error(format!("non-finite number {v}")));
        }
        Ok(Value::from(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, Error> {
        Ok(Value::from(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, Error> {
        Ok(Value::from(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
        // As serde_json: an array of numbers.
        Ok(Value::from(
            v.iter()
                .map(|b| Value::from(u64::from(*b)))
                .collect::<Vec<_>>(),
        ))
    }
    fn serialize_none(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, Error> {
        Ok(key(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Value, Error> {
        if name != SHARED {
            return value.serialize(self);
        }
        let id = (
            (value as *const T).cast::<()>() as usize,
            std::any::type_name::<T>(),
        );
        if let Some((_, v)) = self.shared.borrow().iter().find(|(k, _)| *k == id) {
            return Ok(v.clone());
        }
        let v = value.serialize(self)?;
        self.shared.borrow_mut().push((id, v.clone()));
        Ok(v)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, Error> {
        // As serde_json: `{variant: value}`.
        let mut map = BTreeMap::new();
        map.insert(key(variant), value.serialize(self)?);
        Ok(Value::from(map))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'s>, Error> {
        Ok(Seq {
            conv: self,
            items: Vec::with_capacity(len.unwrap_or(0)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'s>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq<'s>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(Error(format!(
            "{name}::{variant}: tuple variants are not part of the input"
        )))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'s>, Error> {
        Ok(Map {
            conv: self,
            map: BTreeMap::new(),
            key: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Struct<'s>, Error> {
        Ok(Struct {
            conv: self,
            map: BTreeMap::new(),
        })
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(Error(format!(
            "{name}::{variant}: struct variants are not part of the input"
        )))
    }
}

struct Seq<'s> {
    conv: Converter<'s>,
    items: Vec<Value>,
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.items.push(value.serialize(self.conv)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::from(self.items))
    }
}

impl ser::SerializeTuple for Seq<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Seq<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeSeq::end(self)
    }
}

struct Map<'s> {
    conv: Converter<'s>,
    map: BTreeMap<Value, Value>,
    key: Option<Value>,
}

impl ser::SerializeMap for Map<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(self.conv)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error("a map value without a key".into()))?;
        self.map.insert(key, value.serialize(self.conv)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::from(self.map))
    }
}

struct Struct<'s> {
    conv: Converter<'s>,
    map: BTreeMap<Value, Value>,
}

impl ser::SerializeStruct for Struct<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.map.insert(key(name), value.serialize(self.conv)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::from(self.map))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{HeaderMap, HeaderValue, Method, Uri};
    use serde_json::json;

    use super::super::{build, build_value};
    use super::*;
    use crate::classify::{BodyKind, Operation, Route};
    use crate::identity::{AuthMethod, CertInfo, Identity};
    use crate::policy::Facts;

    static OP: Operation = Operation {
        id: crate::classify::OpId::ContainerCreate,
        resource: "containers",
        readonly: false,
        hijack: false,
        body: BodyKind::Inspect,
    };

    /// Both builders give the same document, field for field, for requests
    /// with and without body, query, headers, certificate and token claims.
    #[test]
    fn equals_the_json_document() {
        let cert = Arc::new(CertInfo {
            subject: "CN=dana,O=developer".into(),
            serial: "1f".into(),
            fingerprint_sha256: "ab".repeat(32),
            not_after: "2027-01-01T00:00:00Z".into(),
            names: Ok(crate::identity::CertNames {
                user: crate::identity::name::UserName::parse("dana").unwrap(),
                groups: vec![crate::identity::name::GroupName::parse("developer").unwrap()],
            }),
            chain: Vec::new(),
        });
        let body = json!({"Image": "alpine", "Cmd": ["sh", "-c", "true"], "Memory": 1073741824,
            "CpuShares": -1, "NanoCpus": 1.5, "Labels": {"a": "b"}, "Env": null,
            "HostConfig": {"Binds": ["/etc:/e:ro", "vol:/v"], "Privileged": false,
            "Mounts": [{"Type": "bind", "Source": "/srv", "ReadOnly": true}]}});
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        headers.insert("authorization", HeaderValue::from_static("Bearer secret"));
        headers.insert("x-registry-auth", HeaderValue::from_static("c2VjcmV0"));
        headers.insert("x-odd", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let routes = [
            Route {
                op: &OP,
                params: vec![("name", "web".into()), ("id", "abc".into())],
                api_version: Some("1.41".into()),
                path: "/containers/create".into(),
                query: vec![
                    ("name".into(), "web".into()),
                    ("filters".into(), "{}".into()),
                    ("name".into(), "other".into()),
                ],
                upstream: "/v1.41/containers/create?name=web".into(),
            },
            Route {
                op: &OP,
                params: vec![],
                api_version: None,
                path: "/_ping".into(),
                query: vec![],
                upstream: "/_ping".into(),
            },
        ];
        let identities = [
            Identity {
                name: "dana".into(),
                groups: vec!["developer".into(), "viewer".into()],
                auth_method: AuthMethod::Certificate,
                scopes: vec![],
                claims: serde_json::Value::Null,
                certificate: Some(cert.clone()),
                token_id: None,
                local: None,
            },
            Identity {
                name: "ci-bot".into(),
                groups: vec!["ci".into()],
                auth_method: AuthMethod::Token,
                scopes: vec!["build".into(), "push".into()],
                claims: json!({"sub": "ci-bot", "exp": 1900000000u64, "nbf": -5, "w": 0.25,
                               "groups": ["ci"], "nested": {"x": null, "y": true}}),
                certificate: Some(cert),
                token_id: Some("j1".into()),
                local: None,
            },
        ];
        let uris: [Uri; 2] = [
            "/v1.41/containers/create?name=web&filters=%7B%7D&name=other"
                .parse()
                .unwrap(),
            "/_ping".parse().unwrap(),
        ];
        let empty = HeaderMap::new();
        let resources = [crate::owner::Resource {
            kind: crate::owner::Kind::Volume,
            position: "HostConfig.Binds[1]".into(),
            reference: "vol".into(),
            id: "vol".into(),
            name: "vol".into(),
            exists: true,
            owner: Some(crate::owner::Owner {
                user: "dana".into(),
                scope: Some("team:web".into()),
                auth: None,
            }),
            host_access: vec!["volume-bind:/".into()],
            container: None,
            volume: Some(crate::owner::VolumeFacts {
                driver: "local".into(),
                options: [("o".to_string(), "bind".to_string())].into(),
            }),
            network: None,
            exec: None,
        }];
        let mut n = 0;
        for route in &routes {
            for identity in &identities {
                for uri in &uris {
                    for h in [&headers, &empty] {
                        for b in [Some(&body), Some(&serde_json::Value::Null), None] {
                            for method in [Method::POST, Method::GET] {
                                let facts = Facts {
                                    method: &method,
                                    uri,
                                    headers: h,
                                    route,
                                    api_version: route.api_version.as_deref(),
                                    body: b,
                                    identity,
                                    client: "[::1]:40000".parse().unwrap(),
                                    resources: if b.is_some() { &resources } else { &[] },
                                };
                                let want = Value::from(build(&facts));
                                assert_ne!(want, Value::Undefined);
                                assert_eq!(build_value(&facts), want, "{}", build(&facts));
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(n, 96);
    }
}
