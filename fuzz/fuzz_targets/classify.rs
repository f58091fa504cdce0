//! Fuzzes the classifier with arbitrary method and request-target bytes: it
//! must never panic, and a classified request's upstream target must
//! classify to the same route again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == b' ') else {
        return;
    };
    let (method, target) = (&data[..split], &data[split + 1..]);
    let (Ok(method), Ok(uri)) = (
        http::Method::from_bytes(method),
        http::Uri::try_from(target),
    ) else {
        return;
    };
    if let Ok(route) = moat::classify::classify(&method, &uri) {
        let again_uri: http::Uri = route.upstream.parse().expect("upstream is a valid target");
        let again = moat::classify::classify(&method, &again_uri).expect("upstream classifies");
        assert_eq!(again.upstream, route.upstream);
        assert_eq!(again.op.id, route.op.id);
        assert_eq!(again.params, route.params);
        assert_eq!(again.query, route.query);
    }
});
