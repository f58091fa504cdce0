//! The naming rule against the hostile corpus (`tests/data/hostile-names.tsv`)
//! and against names that must stay accepted.

use x509_parser::prelude::FromDer;

use super::*;

#[path = "../../../tests/support/hostile.rs"]
#[allow(unreachable_pub)]
pub(crate) mod hostile;

/// What the certificate path does with a subject: the user, then the groups.
fn names_of(subject_der: &[u8]) -> Result<(UserName, Vec<GroupName>), NameError> {
    let (rest, subject) = X509Name::from_der(subject_der).expect("the corpus writes valid DER");
    assert!(rest.is_empty());
    let user = subject_user(&subject)?;
    let groups = subject_groups(
        &subject,
        &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME,
        "subject O",
    )?;
    Ok((user, groups))
}

/// Nothing the rule refuses, and no raw control byte, is in `s`.
fn clean(s: &str) -> bool {
    s.chars().all(|c| forbidden(c).is_none())
}

#[test]
fn every_hostile_subject_is_refused_with_an_escaped_message() {
    let cases = hostile::corpus();
    assert!(
        cases.len() > 100,
        "the corpus expands ranges: {}",
        cases.len()
    );
    for case in &cases {
        let err = match names_of(&case.subject_der()) {
            Ok(n) => panic!("{}: accepted as {n:?}", case.label),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            msg.contains(&case.expect),
            "{}: {msg:?} does not say {:?}",
            case.label,
            case.expect
        );
        assert!(clean(&msg), "{}: message not escaped: {msg:?}", case.label);
    }
}

#[test]
fn every_hostile_token_claim_is_refused_by_the_same_rule() {
    let mut n = 0;
    for case in hostile::corpus() {
        let Some((_, value)) = case.token_claim() else {
            continue;
        };
        n += 1;
        let why = UserName::parse(&value).expect_err(&case.label);
        let msg = NameError::new("token claim `sub`", &value, why).to_string();
        assert!(msg.contains(&case.expect), "{}: {msg}", case.label);
        assert!(clean(&msg), "{}: {msg:?}", case.label);
        assert!(GroupName::parse(&value).is_err(), "{}", case.label);
    }
    assert!(n > 80, "{n}");
}

/// Writes the corpus's subjects as seeds for the `subject_name` fuzz target
/// when `MOAT_WRITE_FUZZ_SEEDS` names a directory (a maintenance step, not a
/// check); otherwise checks that the DER entry point agrees with the parser.
#[test]
fn the_der_entry_point_reads_what_the_parser_reads() {
    let seeds = std::env::var_os("MOAT_WRITE_FUZZ_SEEDS").map(std::path::PathBuf::from);
    for case in hostile::corpus() {
        let der = case.subject_der();
        let (user, groups) = subject_der_names(&der).expect("a Name");
        assert_eq!(
            user.is_ok() && groups.is_ok(),
            names_of(&der).is_ok(),
            "{}",
            case.label
        );
        if let Some(dir) = &seeds {
            std::fs::write(dir.join(&case.label), &der).unwrap();
        }
    }
    assert!(subject_der_names(b"not DER").is_none());
}

#[test]
fn ordinary_names_are_accepted_as_they_are() {
    for name in [
        "alice",
        "bob@example.com",
        "svc-ci.deploy_01",
        "O'Brien",
        "José",
        "Zoë Ångström",
        "山田太郎",
        "Мария",
        "spiffe://example.org/ns/ci/sa/builder",
        "a b",
        &"x".repeat(MAX_NAME_BYTES),
    ] {
        assert_eq!(UserName::parse(name).unwrap().as_str(), name);
        assert_eq!(GroupName::parse(name).unwrap().as_str(), name);
    }
}

#[test]
fn printable_string_and_utf8_string_read_the_same_name() {
    let printable = [
        0x30, 0x10, 0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x05, b'a', b'l',
        b'i', b'c', b'e',
    ];
    let (user, _) = names_of(&printable).unwrap();
    assert_eq!(user, "alice");
    let mut utf8 = printable;
    utf8[11] = 0x0c;
    assert_eq!(names_of(&utf8).unwrap().0, "alice");
}

#[test]
fn groups_keep_their_order_without_duplicates() {
    // O=b, O=a, O=b, CN=u
    let mut rdns = Vec::new();
    for v in ["b", "a", "b"] {
        rdns.extend_from_slice(&[
            0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x01,
        ]);
        rdns.push(v.as_bytes()[0]);
    }
    rdns.extend_from_slice(&[
        0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, b'u',
    ]);
    let mut der = vec![0x30, rdns.len() as u8];
    der.extend(rdns);
    let (user, groups) = names_of(&der).unwrap();
    assert_eq!(user, "u");
    assert_eq!(groups, vec!["b", "a"]);
}

#[test]
fn escape_shows_every_refused_character_and_quotes() {
    assert_eq!(escape("alice"), "alice");
    assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    assert_eq!(escape("rt\0x\r\n\u{1b}"), "rt\\u{0}x\\u{d}\\u{a}\\u{1b}");
    assert_eq!(escape("a\u{202e}b\u{2028}"), "a\\u{202e}b\\u{2028}");
    assert_eq!(escape("José"), "José");
    assert_eq!(escape_bytes(b"ad\xffmin\x00"), "ad\\xffmin\\u{0}");
    let long = escape(&"a".repeat(1000));
    assert!(long.len() < 120, "{long}");
    assert!(long.ends_with("…(1000 bytes)"), "{long}");
}

#[test]
fn a_name_with_a_refused_character_is_refused_whatever_else_it_has() {
    // The checks run in a fixed order; each refusal names the first rule
    // broken, and none lets a later character through.
    assert_eq!(check(""), Err(Why::Empty));
    assert_eq!(
        check(&"a".repeat(MAX_NAME_BYTES + 1)),
        Err(Why::TooLong {
            bytes: MAX_NAME_BYTES + 1
        })
    );
    assert!(matches!(
        check(" a\u{0}"),
        Err(Why::Forbidden { ch: '\0', .. })
    ));
    assert_eq!(check(" a"), Err(Why::EdgeSpace));
    assert_eq!(check("e\u{301}"), Err(Why::NotNfc));
    assert_eq!(check("\u{e9}"), Ok(()));
}

#[test]
fn san_user_needs_exactly_one_ascii_value() {
    assert_eq!(
        san_user(&["a@example.com"], "email SAN").unwrap(),
        "a@example.com"
    );
    assert!(san_user(&[], "email SAN")
        .unwrap_err()
        .to_string()
        .contains("there is none"));
    let two = san_user(&["a@example.com", "admin@example.com"], "email SAN").unwrap_err();
    assert!(two.to_string().contains("there are 2"), "{two}");
    assert!(san_user(&["jos\u{e9}@example.com"], "email SAN").is_err());
}
