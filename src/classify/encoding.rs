//! Percent-decoding and canonical re-encoding of the request target, with the
//! same results as Go's `url.PathUnescape` / `url.ParseQuery` (what the daemon
//! sees), and refusal of every form where moat and the daemon could disagree.

use super::ClassifyError;

/// Characters that may appear unencoded in a received path: RFC 3986 `pchar`
/// plus `/`, `%` (escapes) and `[]` (Go accepts them raw).
fn raw_path_char_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%[]".contains(&b)
}

/// Characters Go's `EscapedPath` leaves unencoded; everything else is `%XX`.
fn path_char_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~$&+,/:;=@".contains(&b)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes; `plus_is_space` for query components. Errors on
/// a `%` not followed by two hex digits (Go's `invalid URL escape`).
fn unescape(raw: &str, plus_is_space: bool) -> Result<Vec<u8>, ()> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_val).ok_or(())?;
                let lo = bytes.get(i + 2).copied().and_then(hex_val).ok_or(())?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Decodes and validates the path. The result is clean: starts with `/`, no
/// `//`, no `.`/`..` segments, no control characters, valid UTF-8, no `%`.
pub(crate) fn decode_path(raw: &str) -> Result<String, ClassifyError> {
    if !raw.starts_with('/') {
        return Err(ClassifyError::NotOriginForm(raw.to_string()));
    }
    if let Some(b) = raw.bytes().find(|&b| !raw_path_char_ok(b)) {
        return Err(ClassifyError::RawCharacter(
            char::from(b).escape_default().to_string(),
        ));
    }
    // `%2F` would become a `/` that splits a segment the client meant whole.
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") {
        return Err(ClassifyError::EncodedSlash);
    }
    let bytes = unescape(raw, false).map_err(|()| ClassifyError::BadEscape)?;
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(ClassifyError::ControlCharacter);
    }
    let path = String::from_utf8(bytes).map_err(|_| ClassifyError::NotUtf8)?;
    if path.contains('%') {
        return Err(ClassifyError::DoubleEncoded);
    }
    // The daemon's router redirects unclean paths instead of routing them.
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if *seg == "." || *seg == ".." || (seg.is_empty() && i != last) {
            return Err(ClassifyError::NotClean(path.clone()));
        }
    }
    Ok(path)
}

/// The canonical encoding of a decoded path, as Go's `EscapedPath` writes it.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if path_char_kept(b) {
            out.push(char::from(b));
        } else {
            push_escape(&mut out, b);
        }
    }
    out
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// Parses a query as Go's `url.ParseQuery`: pairs split on `&`, empty pairs
/// skipped, `key` without `=` has the value "", `+` is a space. A `;` or a bad
/// escape is an error (Go reports it and the daemon's view is then unclear).
pub(crate) fn parse_query(raw: &str) -> Result<Vec<(String, String)>, ClassifyError> {
    if raw.contains(';') {
        return Err(ClassifyError::QuerySemicolon);
    }
    if let Some(b) = raw.bytes().find(|&b| b <= b' ' || b >= 0x7f || b == b'#') {
        return Err(ClassifyError::RawCharacter(
            char::from(b).escape_default().to_string(),
        ));
    }
    let mut out = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((query_component(k)?, query_component(v)?));
    }
    Ok(out)
}

fn query_component(raw: &str) -> Result<String, ClassifyError> {
    let bytes = unescape(raw, true).map_err(|()| ClassifyError::BadQueryEscape(raw.to_string()))?;
    String::from_utf8(bytes).map_err(|_| ClassifyError::NotUtf8)
}

/// The canonical query: `k=v` pairs joined by `&`, each part encoded as Go's
/// `url.QueryEscape` does (space as `+`).
pub(crate) fn encode_query(query: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in query.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_query_component(&mut out, k);
        out.push('=');
        encode_query_component(&mut out, v);
    }
    out
}

fn encode_query_component(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            push_escape(out, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_decoding() {
        let ok: &[(&str, &str)] = &[
            ("/containers/json", "/containers/json"),
            ("/containers/%6a%73%6f%6e", "/containers/json"),
            ("/containers/%6A%73%6F%6E", "/containers/json"),
            (
                "/images/reg:5000/team/app:1.0/json",
                "/images/reg:5000/team/app:1.0/json",
            ),
            ("/a+b", "/a+b"),
            ("/networks/", "/networks/"),
            ("/", "/"),
            ("/caf%C3%A9", "/café"),
        ];
        for (raw, want) in ok {
            assert_eq!(decode_path(raw).unwrap(), *want, "{raw}");
        }
        let bad: &[&str] = &[
            "//containers/json",
            "/containers//json",
            "/containers/./json",
            "/containers/../json",
            "/containers/..",
            "/containers/%2e%2e/json",
            "/containers/%2E/json",
            "/containers/a%2Fb/json",
            "/containers/a%2fb/json",
            "/containers/%zz/json",
            "/containers/%4",
            "/containers/%00/json",
            "/containers/%0a/json",
            "/containers/%7f",
            "/containers/%ff",
            "/containers/%2541",
            "containers/json",
            "*",
            "/containers/a b",
            "/containers/a\"b",
        ];
        for raw in bad {
            assert!(decode_path(raw).is_err(), "{raw} should be refused");
        }
    }

    #[test]
    fn path_encoding_round_trips() {
        for path in [
            "/containers/json",
            "/café",
            "/a b/c!d'e(f)g*h",
            "/x?y#z",
            "/a+b:c@d;e=f&g,h$",
        ] {
            let enc = encode_path(path);
            assert!(!enc.contains(' ') && !enc.contains('?') && !enc.contains('#'));
            assert_eq!(decode_path(&enc).unwrap(), path, "{enc}");
        }
        assert_eq!(encode_path("/a b/é"), "/a%20b/%C3%A9");
    }

    #[test]
    fn query_parsing() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("all=1", &[("all", "1")]),
            ("a=1&a=2&b", &[("a", "1"), ("a", "2"), ("b", "")]),
            ("a=1&&b=2&", &[("a", "1"), ("b", "2")]),
            ("a+b=c+d", &[("a b", "c d")]),
            ("f=%7B%22a%22%3A1%7D", &[("f", "{\"a\":1}")]),
            ("a=b=c", &[("a", "b=c")]),
            ("=x", &[("", "x")]),
        ];
        for (raw, want) in cases {
            let got = parse_query(raw).unwrap();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{raw}");
            assert_eq!(parse_query(&encode_query(&got)).unwrap(), got, "{raw}");
        }
        for bad in ["a=1;b=2", "a=%zz", "a=%4", "%ff=1", "a=b c"] {
            assert!(parse_query(bad).is_err(), "{bad} should be refused");
        }
    }
}
