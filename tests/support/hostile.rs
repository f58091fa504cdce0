//! The corpus of hostile names (`tests/data/hostile-names.tsv`), expanded
//! into cases, with the DER subject each case puts in a certificate and the
//! token claim it puts in a token.
//!
//! Self-contained (its own tiny DER writer, no moat code), so that the unit
//! tests beside the name parser can include it too: what is tested is never
//! built by the code under test.

#![allow(dead_code)]

/// Where the hostile value sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `O=dev, CN=value`.
    Cn,
    /// `CN=alice, CN=value`.
    TwoCn,
    /// `CN=value` three times.
    ThreeCn,
    /// `O=value`, no CN.
    NoCn,
    /// `CN=alice, O=value`.
    O,
}

/// The ASN.1 string type of the hostile value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Utf8,
    Printable,
    Bmp,
    Teletex,
    Universal,
    Ia5,
    Visible,
}

#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub label: String,
    pub layout: Layout,
    pub encoding: Encoding,
    /// The value as bytes (UTF-8 unless the case says otherwise).
    pub value: Vec<u8>,
    /// A piece of the refusal message.
    pub expect: String,
}

const CORPUS: &str = include_str!("../data/hostile-names.tsv");

/// Every case of the corpus, ranges expanded.
pub(crate) fn corpus() -> Vec<Case> {
    let mut out = Vec::new();
    for line in CORPUS.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let [label, layout, encoding, value, expect] = cols[..] else {
            panic!("corpus line has not 5 columns: {line:?}");
        };
        let layout = match layout {
            "cn" => Layout::Cn,
            "cn2" => Layout::TwoCn,
            "cn3" => Layout::ThreeCn,
            "nocn" => Layout::NoCn,
            "o" => Layout::O,
            other => panic!("unknown layout {other}"),
        };
        let encoding = match encoding {
            "utf8" => Encoding::Utf8,
            "printable" => Encoding::Printable,
            "bmp" => Encoding::Bmp,
            "teletex" => Encoding::Teletex,
            "universal" => Encoding::Universal,
            "ia5" => Encoding::Ia5,
            "visible" => Encoding::Visible,
            other => panic!("unknown encoding {other}"),
        };
        for (suffix, value) in expand(value) {
            out.push(Case {
                label: format!("{label}{suffix}"),
                layout,
                encoding,
                value,
                expect: expect.to_string(),
            });
        }
    }
    out
}

/// Expands `{U+A..U+B}` (one value per code point) and `{repeat N TEXT}`,
/// then the escapes.
fn expand(value: &str) -> Vec<(String, Vec<u8>)> {
    if let Some(start) = value.find("{U+") {
        let end = start + value[start..].find('}').expect("closing brace");
        let (a, b) = value[start + 3..end].split_once("..U+").expect("a range");
        let (a, b) = (
            u32::from_str_radix(a, 16).expect("hex"),
            u32::from_str_radix(b, 16).expect("hex"),
        );
        return (a..=b)
            .map(|u| {
                let text = format!("{}\\u{{{u:x}}}{}", &value[..start], &value[end + 1..]);
                (format!("-U+{u:04X}"), unescape(&text))
            })
            .collect();
    }
    if let Some(rest) = value.strip_prefix("{repeat ") {
        let rest = rest.strip_suffix('}').expect("closing brace");
        let (n, text) = rest.split_once(' ').expect("{repeat N TEXT}");
        let n: usize = n.parse().expect("a count");
        return vec![(String::new(), unescape(&text.repeat(n)))];
    }
    vec![(String::new(), unescape(value))]
}

/// `\u{HEX}`, `\xNN`, `\\`, `\r`, `\n`, `\t`.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let tail = &rest[i + 1..];
        if let Some(t) = tail.strip_prefix("u{") {
            let close = t.find('}').expect("closing brace");
            let c = char::from_u32(u32::from_str_radix(&t[..close], 16).expect("hex"))
                .expect("a scalar value");
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            rest = &t[close + 1..];
        } else if let Some(t) = tail.strip_prefix('x') {
            out.push(u8::from_str_radix(&t[..2], 16).expect("hex byte"));
            rest = &t[2..];
        } else {
            let (c, t) = tail.split_at(1);
            out.push(match c {
                "\\" => b'\\',
                "r" => b'\r',
                "n" => b'\n',
                "t" => b'\t',
                other => panic!("unknown escape \\{other}"),
            });
            rest = t;
        }
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

const CN: &[u8] = &[0x55, 0x04, 0x03];
const O: &[u8] = &[0x55, 0x04, 0x0a];

/// One RDN with one attribute.
fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
    let mut atv = der(0x06, oid);
    atv.extend(der(tag, value));
    der(0x31, &der(0x30, &atv))
}

impl Case {
    /// The hostile value as DER string contents, and its tag.
    fn encoded(&self) -> (u8, Vec<u8>) {
        let text = || String::from_utf8_lossy(&self.value).into_owned();
        match self.encoding {
            Encoding::Utf8 => (0x0c, self.value.clone()),
            Encoding::Printable => (0x13, self.value.clone()),
            Encoding::Teletex => (0x14, self.value.clone()),
            Encoding::Ia5 => (0x16, self.value.clone()),
            Encoding::Visible => (0x1a, self.value.clone()),
            Encoding::Universal => (
                0x1c,
                text()
                    .chars()
                    .flat_map(|c| u32::from(c).to_be_bytes())
                    .collect(),
            ),
            Encoding::Bmp => (
                0x1e,
                text()
                    .encode_utf16()
                    .flat_map(|u| u.to_be_bytes())
                    .collect(),
            ),
        }
    }

    /// The subject Name, DER.
    pub(crate) fn subject_der(&self) -> Vec<u8> {
        let (tag, value) = self.encoded();
        let mut rdns = Vec::new();
        match self.layout {
            Layout::Cn => {
                rdns.extend(rdn(O, 0x0c, b"dev"));
                rdns.extend(rdn(CN, tag, &value));
            }
            Layout::TwoCn => {
                rdns.extend(rdn(CN, 0x0c, b"alice"));
                rdns.extend(rdn(CN, tag, &value));
            }
            Layout::ThreeCn => {
                for _ in 0..3 {
                    rdns.extend(rdn(CN, tag, &value));
                }
            }
            Layout::NoCn => rdns.extend(rdn(O, tag, &value)),
            Layout::O => {
                rdns.extend(rdn(CN, 0x0c, b"alice"));
                rdns.extend(rdn(O, tag, &value));
            }
        }
        der(0x30, &rdns)
    }

    /// The token claim this case becomes (`sub` or `groups`), when it can
    /// be said in JSON: a UTF-8 value in a one-value layout.
    pub(crate) fn token_claim(&self) -> Option<(&'static str, String)> {
        if self.encoding != Encoding::Utf8 {
            return None;
        }
        let text = String::from_utf8(self.value.clone()).ok()?;
        match self.layout {
            Layout::Cn => Some(("sub", text)),
            Layout::O => Some(("groups", text)),
            _ => None,
        }
    }

    /// How the value must appear in a refusal: every byte that is not
    /// printable ASCII is escaped, so a message shows neither raw control
    /// bytes nor this case's invisible characters.
    pub(crate) fn must_not_appear_raw(&self) -> bool {
        self.value.iter().any(|b| *b < 0x20 || *b == 0x7f)
    }
}
