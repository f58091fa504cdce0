//! Fuzzes the subject-to-name parser with arbitrary DER Name bytes: it must
//! never panic; a name it accepts follows the naming rule (printable, NFC,
//! bounded); every refusal message is escaped (nothing the rule refuses
//! reaches it raw), and so is every escaped rendering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat::identity::name::{self, GroupName, UserName};

fuzz_target!(|data: &[u8]| {
    let clean = |s: &str| s.chars().all(|c| name::forbidden(c).is_none());
    if let Some((user, groups)) = name::subject_der_names(data) {
        match user {
            Ok(u) => {
                assert!(UserName::parse(u.as_str()).is_ok());
                assert!(u.as_str().len() <= name::MAX_NAME_BYTES);
            }
            Err(e) => assert!(clean(&e.to_string()), "unescaped: {e:?}"),
        }
        match groups {
            Ok(gs) => {
                for g in gs {
                    assert!(GroupName::parse(g.as_str()).is_ok());
                }
            }
            Err(e) => assert!(clean(&e.to_string()), "unescaped: {e:?}"),
        }
    }
    assert!(clean(&name::escape_bytes(data)));
    if let Ok(s) = std::str::from_utf8(data) {
        assert!(clean(&name::escape(s)));
        if name::check(s).is_ok() {
            assert!(clean(s));
        }
    }
});
