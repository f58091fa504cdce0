//! Tests of the body inspector: framing and content-type tables, the strict
//! parser on the bodies the issue names, hyper's own framing behaviour, and a
//! seeded mutation test that the parser never panics.

use super::*;
use crate::classify::{classify, UNKNOWN};
use http::{HeaderValue, Method};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn op(method: Method, target: &str) -> &'static Operation {
    classify(&method, &target.parse().unwrap()).unwrap().op
}

#[test]
fn framing() {
    let cases: &[(&[(&str, &str)], bool)] = &[
        (&[], true),
        (&[("content-length", "12")], true),
        (&[("transfer-encoding", "chunked")], true),
        (&[("transfer-encoding", "Chunked")], true),
        (
            &[("transfer-encoding", "chunked"), ("content-length", "0")],
            false,
        ),
        (
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
            false,
        ),
        (&[("transfer-encoding", "gzip, chunked")], false),
        (&[("transfer-encoding", "identity")], false),
        (
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked"),
            ],
            false,
        ),
        (&[("content-length", "5"), ("content-length", "6")], false),
        (&[("content-length", "5"), ("content-length", "5")], false),
        (&[("content-length", "+5")], false),
        (&[("content-length", "")], false),
    ];
    for (h, ok) in cases {
        let r = check_framing(&headers(h));
        assert_eq!(r.is_ok(), *ok, "{h:?}: {r:?}");
        if let Err(e) = r {
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }
    }
}

#[test]
fn statuses() {
    assert_eq!(
        BodyError::TooLarge { limit: 1 }.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        BodyError::InvalidJson("x".into()).status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        BodyError::FormBody("x".into()).status(),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn inspected_bodies() {
    let create = op(Method::POST, "/v1.41/containers/create");
    let start = op(Method::POST, "/v1.41/containers/c1/start");
    let json = [("content-type", "application/json")];
    // (operation, headers, body, expected: Ok("Empty"/"Json") or Err(variant prefix))
    type Case<'a> = (
        &'a Operation,
        &'a [(&'a str, &'a str)],
        &'a str,
        Result<&'a str, &'a str>,
    );
    let cases: &[Case] = &[
        (create, &json, "", Ok("Empty")),
        (start, &[], "", Ok("Empty")),
        (start, &[("content-type", "text/plain")], "", Ok("Empty")),
        (create, &json, r#"{"Image":"alpine"}"#, Ok("Json")),
        (create, &[], r#"{"Image":"alpine"}"#, Ok("Json")),
        (
            create,
            &[("content-type", "application/json; charset=utf-8")],
            "{}",
            Ok("Json"),
        ),
        (
            create,
            &[("content-type", "Application/JSON")],
            "{}",
            Ok("Json"),
        ),
        (
            create,
            &[("content-type", "application/x-www-form-urlencoded")],
            "HostConfig=x",
            Err("FormBody"),
        ),
        (
            create,
            &[("content-type", "multipart/form-data; boundary=x")],
            "--x",
            Err("FormBody"),
        ),
        (
            create,
            &[("content-type", "text/plain")],
            "{}",
            Err("NotJson"),
        ),
        (
            create,
            &[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ],
            "{}",
            Err("RepeatedHeader"),
        ),
        (create, &json, "{\"Image\":", Err("InvalidJson")),
        (
            create,
            &json,
            "{\"Image\":\"a\"}garbage",
            Err("InvalidJson"),
        ),
        (
            create,
            &json,
            r#"{"Image":"a","HostConfig":{"Privileged":false},"hostconfig":{"Privileged":true}}"#,
            Err("DuplicateKey"),
        ),
        (
            create,
            &json,
            r#"{"Image":"a","HostConfig":{"privileged":true}}"#,
            Ok("Json"),
        ),
        (
            create,
            &json,
            r#"{"Image":"a","hostconfig":{"Privileged":true}}"#,
            Ok("Json"),
        ),
        (
            create,
            &json,
            r#"{"Image":"a","\u0048ostconfig":{"Privileged":true}}"#,
            Ok("Json"),
        ),
        (
            create,
            &json,
            r#"{"Image":"a","\u0048ostConfig":{"Privileged":true}}"#,
            Ok("Json"),
        ),
        (
            &UNKNOWN,
            &json,
            r#"{"hostconfig":{}}"#,
            Err("NonCanonicalKey"),
        ),
    ];
    for (op, h, body, want) in cases {
        let got = inspect_bytes(op, &headers(h), Bytes::copy_from_slice(body.as_bytes()));
        match (&got, want) {
            (Ok(Inspected::Empty), Ok("Empty")) => {}
            (Ok(Inspected::Json { value, received }), Ok("Json")) => {
                assert_eq!(*received, body.len() as u64);
                let canonical = r#"{"Image":"a","HostConfig":{"Privileged":true}}"#;
                if body.contains("rivileged") {
                    assert_eq!(value.to_string(), canonical, "{body}");
                }
            }
            (Err(e), Err(w)) => assert!(format!("{e:?}").starts_with(w), "{} {body}: {e:?}", op.id),
            _ => panic!("{} {body}: got {got:?}, want {want:?}", op.id),
        }
    }
}

#[test]
fn policy_sees_decoded_escaped_keys() {
    let create = op(Method::POST, "/v1.41/containers/create");
    let body = r#"{"\u0048ostConfig":{"\u0050rivileged":true}}"#;
    let Ok(Inspected::Json { value, .. }) =
        inspect_bytes(create, &HeaderMap::new(), Bytes::from(body))
    else {
        panic!("expected JSON");
    };
    assert_eq!(
        value["HostConfig"]["Privileged"],
        serde_json::Value::Bool(true)
    );
}

#[test]
fn stream_uploads_must_not_be_forms() {
    let cases: &[(&[(&str, &str)], bool)] = &[
        (&[], true),
        (&[("content-type", "application/x-tar")], true),
        (
            &[("content-type", "application/x-www-form-urlencoded")],
            false,
        ),
        (
            &[(
                "content-type",
                "Application/X-WWW-Form-Urlencoded; charset=x",
            )],
            false,
        ),
        (
            &[("content-type", "multipart/form-data; boundary=b")],
            false,
        ),
        (
            &[
                ("content-type", "application/x-tar"),
                ("content-type", "application/x-tar"),
            ],
            false,
        ),
    ];
    for (h, ok) in cases {
        assert_eq!(check_stream_headers(&headers(h)).is_ok(), *ok, "{h:?}");
    }
}

/// Runs one raw HTTP/1.1 request through a real hyper server that applies
/// check_framing and inspect, and returns the status line plus what the
/// inspector saw.
async fn through_hyper(raw: &[u8]) -> String {
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        let (parts, body) = req.into_parts();
        let text = match check_framing(&parts.headers) {
            Err(e) => format!("refused: {e}"),
            Ok(()) => {
                let route = classify(&parts.method, &parts.uri).unwrap();
                match inspect(
                    route.op,
                    &parts.headers,
                    RequestBody::new(
                        body,
                        std::time::Duration::from_secs(1),
                        tokio_util::task::TaskTracker::new(),
                    ),
                    64,
                )
                .await
                {
                    Ok(Inspected::Json { value, .. }) => format!("json: {value}"),
                    Ok(Inspected::Empty) => "empty".to_string(),
                    Ok(Inspected::Stream(_)) => "stream".to_string(),
                    Err(e) => format!("refused: {e}"),
                }
            }
        };
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
            Bytes::from(text),
        )))
    });
    let conn = tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc)
            .await;
    });
    client.write_all(raw).await.unwrap();
    client.shutdown().await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    conn.await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    format!("{status} | {body}")
}

#[tokio::test]
async fn hyper_framing_behaviour() {
    let post =
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    let cases: &[(String, &str)] = &[
        // Chunked with Content-Length: 0 — hyper drops Content-Length (our
        // check never sees it) and de-chunks: the whole body is inspected.
        (
            format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n4\r\n{{\"a\"\r\n3\r\n:1}}\r\n0\r\n\r\n"),
            "json: {\"a\":1}",
        ),
        (
            format!("{post}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{{\"a\"\r\n3\r\n:1}}\r\n0\r\n\r\n"),
            "json: {\"a\":1}",
        ),
        // Two different Content-Length values: hyper answers 400 itself.
        (format!("{post}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"), "400"),
        // A non-chunked transfer coding: hyper answers 400.
        (format!("{post}Transfer-Encoding: gzip\r\n\r\n{{}}"), "400"),
        // Chunked but not only chunked: hyper accepts, moat refuses.
        (format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"), "refused: ambiguous"),
        // Oversize body.
        (format!("{post}Content-Length: 80\r\n\r\n{{\"Image\":\"{}\"}}", "a".repeat(68)), "refused: request body is larger"),
        // Lower-case key (rewritten to the canonical spelling), duplicate key.
        (format!("{post}Content-Length: 31\r\n\r\n{{\"HostConfig\":{{\"privileged\":1}}}}"), "json: {\"HostConfig\":{\"Privileged\":1}}"),
        (format!("{post}Content-Length: 13\r\n\r\n{{\"a\":1,\"A\":2}}"), "refused: request body has the keys"),
    ];
    for (raw, want) in cases {
        let got = through_hyper(raw.as_bytes()).await;
        assert!(got.contains(want), "{raw:?}\n got: {got}\nwant: {want}");
    }
}

/// xorshift, so the mutation test is deterministic and needs no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_bodies_never_panic() {
    let seeds: &[&str] = &[
        r#"{"Image":"alpine","HostConfig":{"Privileged":true,"Binds":["/:/host"],"Mounts":[{"Type":"bind","Source":"/"}]},"Labels":{"a":"b"}}"#,
        r#"{"Name":"v","Driver":"local","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#,
        r#"{"TaskTemplate":{"ContainerSpec":{"Image":"x","Mounts":[]}},"Mode":{"Replicated":{"Replicas":1}}}"#,
        r#"["DEBUG=1",{"\u0048":1}]"#,
    ];
    let alphabet: &[u8] = b"{}[]\":,\\u0048aAsSkK \x00\xff\xc5\xbf0123456789.eE-+ntrf";
    let ops = [
        "ContainerCreate",
        "VolumeCreate",
        "ServiceCreate",
        "PluginSet",
        "Unknown",
        "ContainerUpdate",
    ];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut parsed = 0;
    for i in 0..4000 {
        let mut body = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..(1 + rng.next() % 4) {
            let pos = (rng.next() as usize) % (body.len() + 1);
            let b = alphabet[(rng.next() as usize) % alphabet.len()];
            match rng.next() % 3 {
                0 => body.insert(pos, b),
                1 if pos < body.len() => {
                    body.remove(pos);
                }
                _ if pos < body.len() => body[pos] = b,
                _ => body.push(b),
            }
        }
        let op = ops[(rng.next() as usize) % ops.len()];
        if let Ok(v) = parse_json_strict(&body, SchemaRoot::for_operation(op)) {
            parsed += 1;
            // What was accepted re-serialises to something accepted again.
            let again = serde_json::to_vec(&v).unwrap();
            assert_eq!(
                parse_json_strict(&again, SchemaRoot::for_operation(op)).unwrap(),
                v
            );
        }
    }
    assert!(parsed > 100, "too few accepted bodies: {parsed}");
}
