//! Fuzzes the strict JSON body parser: it must never panic, and what it
//! accepts must be accepted again after re-serialisation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat::body::{parse_json_strict, SchemaRoot};

const OPS: [&str; 5] = [
    "ContainerCreate",
    "ServiceCreate",
    "VolumeCreate",
    "PluginSet",
    "Unknown",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let op = OPS[usize::from(selector) % OPS.len()];
    let root = SchemaRoot::for_operation(op);
    if let Ok(value) = parse_json_strict(body, root) {
        let again = value.to_string().into_bytes();
        assert!(parse_json_strict(&again, root).is_ok());
    }
});
