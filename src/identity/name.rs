//! Names: the one place where a string a client sent becomes a user or
//! group name moat decides and audits under.
//!
//! Everything moat records hangs on the user name: the audit log, the
//! policy's `input.identity.user`, the owner labels a policy compares it
//! with. So a name is parsed, not taken. [`UserName::parse`] and
//! [`GroupName::parse`] accept a string only when it is one clean value:
//!
//! - not empty, at most [`MAX_NAME_BYTES`] bytes of UTF-8;
//! - no leading or trailing white space, and no white space but the plain
//!   space (U+0020);
//! - printable: no control character (C0, DEL, C1, so no NUL, CR, LF, ESC,
//!   BEL), no line or paragraph separator (U+2028, U+2029), no bidirectional
//!   control (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C: they
//!   make a name display as another), no invisible format character
//!   (zero-width spaces and joiners, soft hyphen, word joiner, BOM, variation
//!   selectors, tag characters), no private-use or non-character code point;
//! - in Unicode Normalization Form C. moat does *not* normalise: a name is
//!   compared and recorded byte for byte as the credential carries it, and a
//!   name that is not already NFC (say `e` + U+0301 instead of `é`) is
//!   refused, so two users whose names look the same can never both exist
//!   and every other tool reading the credential sees the same bytes moat
//!   saw.
//!
//! The same rule applies to user and group names from certificates (subject
//! CN, O, OU, or an email/URI SAN) and from tokens (the user claim, groups,
//! scopes and `jti`), and `moat certs issue` / `moat token issue` apply it
//! before signing, so moat never mints a credential it would refuse.
//!
//! From a certificate subject ([`subject_user`], [`subject_groups`]): the
//! subject must hold exactly one CN; each attribute value must be a
//! `UTF8String` holding valid UTF-8 or a `PrintableString` holding ASCII,
//! the two encodings RFC 5280 lets conforming CAs use. `BMPString`,
//! `TeletexString` (whose character set tools disagree on),
//! `UniversalString`, `IA5String` and anything else are refused, since two
//! tools could read them as different names.
//!
//! Whatever is refused is shown escaped ([`escape`], [`escape_bytes`]):
//! anything the rule refuses, and `\` and `"`, are written as `\u{…}` or
//! `\xNN`, so an error message, a log line or an audit record never carries
//! a client's control bytes.

use std::fmt;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};
use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::oid_registry::Oid;
use x509_parser::x509::X509Name;

/// The longest name accepted, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;

/// How much of a refused value an error message shows (characters).
const SHOWN_CHARS: usize = 80;

/// A user name that passed the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

/// A group name (or scope, or token id) that passed the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(String);

macro_rules! name_type {
    ($t:ident) => {
        impl $t {
            /// Accepts `s` if it follows the naming rule (see the module).
            pub fn parse(s: &str) -> Result<$t, Why> {
                check(s)?;
                Ok($t(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
name_type!(UserName);
name_type!(GroupName);

/// Why a value is not a usable name. The message completes "… is refused:".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Why {
    #[error("it is empty")]
    Empty,
    #[error("it is {bytes} bytes long; the limit is {MAX_NAME_BYTES}")]
    TooLong { bytes: usize },
    #[error("it begins or ends with white space")]
    EdgeSpace,
    #[error("it contains {class} {}", codepoint(*.ch))]
    Forbidden { ch: char, class: &'static str },
    #[error("it is not in Unicode normalization form C (moat compares names byte for byte)")]
    NotNfc,
    #[error("its bytes are not valid UTF-8")]
    NotUtf8,
    #[error("it has bytes outside ASCII (a PrintableString or a SAN must be ASCII)")]
    NotAscii,
    #[error("it is encoded as {0}; moat reads only UTF8String and PrintableString (RFC 5280)")]
    StringType(&'static str),
    #[error("there is none")]
    Missing,
    #[error(
        "the certificate's subjectAltName extension cannot be read (malformed or present twice)"
    )]
    BadExtension,
    #[error("there are {0}; exactly one is needed")]
    Several(usize),
}

/// A refused name: where it came from, what was sent (escaped) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// `subject CN`, `subject O`, `email SAN`, `token claim \`sub\``, ….
    pub source: String,
    /// The value as sent, escaped; empty when there was no single value.
    pub shown: Option<String>,
    pub why: Why,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shown {
            Some(shown) => write!(f, "{} \"{shown}\" is refused: {}", self.source, self.why),
            None => write!(f, "{}: {}", self.source, self.why),
        }
    }
}

impl std::error::Error for NameError {}

impl NameError {
    pub fn new(source: impl Into<String>, value: &str, why: Why) -> Self {
        NameError {
            source: source.into(),
            shown: Some(escape(value)),
            why,
        }
    }

    fn count(source: impl Into<String>, why: Why) -> Self {
        NameError {
            source: source.into(),
            shown: None,
            why,
        }
    }
}

/// The naming rule (see the module).
pub fn check(s: &str) -> Result<(), Why> {
    if s.is_empty() {
        return Err(Why::Empty);
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(Why::TooLong { bytes: s.len() });
    }
    if let Some(ch) = s.chars().find(|c| forbidden(*c).is_some()) {
        let class = forbidden(ch).unwrap_or("a forbidden character");
        return Err(Why::Forbidden { ch, class });
    }
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return Err(Why::EdgeSpace);
    }
    let nfc = match is_nfc_quick(s.chars()) {
        IsNormalized::Yes => true,
        IsNormalized::No => false,
        IsNormalized::Maybe => s.chars().eq(s.nfc()),
    };
    if !nfc {
        return Err(Why::NotNfc);
    }
    Ok(())
}

/// The class of a character the rule refuses, or `None` if it is allowed.
pub fn forbidden(c: char) -> Option<&'static str> {
    let u = u32::from(c);
    Some(match u {
        0x00 => "NUL",
        0x01..=0x1f => "a C0 control character",
        0x7f => "DEL",
        0x80..=0x9f => "a C1 control character",
        0x2028 => "a line separator",
        0x2029 => "a paragraph separator",
        0x202a..=0x202e | 0x2066..=0x2069 | 0x200e | 0x200f | 0x061c => {
            "a bidirectional control character"
        }
        0x00ad
        | 0x034f
        | 0x115f
        | 0x1160
        | 0x17b4
        | 0x17b5
        | 0x180b..=0x180f
        | 0x200b..=0x200d
        | 0x2060..=0x2065
        | 0x206a..=0x206f
        | 0x3164
        | 0xfe00..=0xfe0f
        | 0xfeff
        | 0xffa0
        | 0xfff0..=0xfffb
        | 0x1d173..=0x1d17a
        | 0xe0000..=0xe0fff => "an invisible format character",
        0xe000..=0xf8ff | 0xf0000..=0x10ffff => "a private-use character",
        0xfdd0..=0xfdef => "a non-character",
        _ if u & 0xfffe == 0xfffe => "a non-character",
        _ if c.is_whitespace() && c != ' ' => "white space other than U+0020",
        _ => return None,
    })
}

fn codepoint(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// `s` with every character the rule refuses, and `\` and `"`, escaped as
/// `\u{…}` (`\\`, `\"`); shortened to about [`SHOWN_CHARS`] characters.
pub fn escape(s: &str) -> String {
    let mut out = String::new();
    let total = s.chars().count();
    for c in s.chars().take(SHOWN_CHARS) {
        push_escaped(&mut out, c);
    }
    if total > SHOWN_CHARS {
        out.push_str(&format!("…({} bytes)", s.len()));
    }
    out
}

/// Like [`escape`] for bytes that may not be UTF-8: invalid bytes are shown
/// as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut shown = 0usize;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown < SHOWN_CHARS {
                push_escaped(&mut out, c);
            }
            shown += 1;
        }
        for b in chunk.invalid() {
            if shown < SHOWN_CHARS {
                out.push_str(&format!("\\x{b:02x}"));
            }
            shown += 1;
        }
    }
    if shown > SHOWN_CHARS {
        out.push_str(&format!("…({} bytes)", bytes.len()));
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        c if forbidden(c).is_some() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        c => out.push(c),
    }
}

/// The text of a DER attribute value: a `UTF8String` of valid UTF-8 or a
/// `PrintableString` of ASCII; everything else is refused.
pub fn directory_string<'a>(value: &Any<'a>) -> Result<&'a str, Why> {
    let data: &'a [u8] = value.data;
    match value.header.tag() {
        Tag::Utf8String => std::str::from_utf8(data).map_err(|_| Why::NotUtf8),
        Tag::PrintableString => {
            if !data.is_ascii() {
                return Err(Why::NotAscii);
            }
            std::str::from_utf8(data).map_err(|_| Why::NotUtf8)
        }
        Tag::BmpString => Err(Why::StringType("BMPString")),
        Tag::TeletexString => Err(Why::StringType("TeletexString")),
        Tag::UniversalString => Err(Why::StringType("UniversalString")),
        Tag::Ia5String => Err(Why::StringType("IA5String")),
        Tag::VisibleString => Err(Why::StringType("VisibleString")),
        Tag::NumericString => Err(Why::StringType("NumericString")),
        Tag::VideotexString => Err(Why::StringType("VideotexString")),
        Tag::GraphicString => Err(Why::StringType("GraphicString")),
        Tag::GeneralString => Err(Why::StringType("GeneralString")),
        _ => Err(Why::StringType("a type that is not a string")),
    }
}

/// Every value of attribute `oid` in `subject`, each read and checked.
fn subject_values(
    subject: &X509Name<'_>,
    oid: &Oid<'_>,
    source: &str,
) -> Result<Vec<String>, NameError> {
    let mut out = Vec::new();
    for attr in subject.iter_by_oid(oid) {
        let value = attr.attr_value();
        let text = directory_string(value).map_err(|why| NameError {
            source: source.to_owned(),
            shown: Some(escape_bytes(value.data)),
            why,
        })?;
        check(text).map_err(|why| NameError::new(source, text, why))?;
        out.push(text.to_owned());
    }
    Ok(out)
}

/// The user name from a subject's CN: exactly one, readable and following
/// the rule.
pub fn subject_user(subject: &X509Name<'_>) -> Result<UserName, NameError> {
    let source = "the client certificate's subject CN";
    let oid = x509_parser::oid_registry::OID_X509_COMMON_NAME;
    let n = subject.iter_by_oid(&oid).count();
    if n != 1 {
        let why = if n == 0 {
            Why::Missing
        } else {
            Why::Several(n)
        };
        return Err(NameError::count(source, why));
    }
    let mut values = subject_values(subject, &oid, source)?;
    match values.pop() {
        Some(v) => Ok(UserName(v)),
        None => Err(NameError::count(source, Why::Missing)),
    }
}

/// The group names from every value of `oid` (O or OU) in a subject, in
/// order, duplicates dropped. One value that breaks the rule refuses all:
/// dropping it could change what a policy decides.
pub fn subject_groups(
    subject: &X509Name<'_>,
    oid: &Oid<'_>,
    source: &str,
) -> Result<Vec<GroupName>, NameError> {
    let mut out: Vec<GroupName> = Vec::new();
    for v in subject_values(subject, oid, source)? {
        let g = GroupName(v);
        if !out.contains(&g) {
            out.push(g);
        }
    }
    Ok(out)
}

/// What a subject yields: the user, and the groups.
pub type SubjectNames = (
    Result<UserName, NameError>,
    Result<Vec<GroupName>, NameError>,
);

/// The user (subject CN) and groups (subject O) that a DER-encoded subject
/// Name yields, as a certificate with it would be read with the default
/// `auth.certificate` mapping; `None` when the bytes are not a Name. For the
/// fuzz target and tests.
pub fn subject_der_names(der: &[u8]) -> Option<SubjectNames> {
    use x509_parser::prelude::FromDer;
    let (_, subject) = X509Name::from_der(der).ok()?;
    Some((
        subject_user(&subject),
        subject_groups(
            &subject,
            &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME,
            "the client certificate's subject O",
        ),
    ))
}

/// A user name from a SAN (email or URI, IA5String in DER): one value, ASCII,
/// and the rule.
pub fn san_user(values: &[&str], source: &str) -> Result<UserName, NameError> {
    let [value] = values else {
        let why = if values.is_empty() {
            Why::Missing
        } else {
            Why::Several(values.len())
        };
        return Err(NameError::count(source, why));
    };
    if !value.is_ascii() {
        return Err(NameError::new(source, value, Why::NotAscii));
    }
    UserName::parse(value).map_err(|why| NameError::new(source, value, why))
}

#[cfg(test)]
pub(crate) mod tests;
