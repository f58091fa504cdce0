//! Fuzzes the address parsers of `input.operation.fetches` (URLs, host:port,
//! image references, registry server addresses, host classes) with arbitrary
//! strings: the client chooses these values, so they must never panic, and
//! a literal IPv4 address in any spelling must be classed as what it is.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use moat::effective::fetch::address::{self, AddressClass};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = address::url(s).class();
    let _ = address::host_port(s).class();
    let _ = address::registry_of_reference(s);
    let _ = address::registry_of_server_address(s);
    let class = address::classify_host(s);
    // Every dotted-decimal address the standard parser accepts is read the
    // same way by the inet_aton reading (which also accepts more).
    if let Ok(std) = s.parse::<Ipv4Addr>() {
        assert_eq!(address::inet_aton(s), Some(std), "{s:?}");
    }
    if let Some(v4) = address::inet_aton(s) {
        if v4.is_loopback() {
            assert_eq!(class, AddressClass::Loopback, "{s:?}");
        }
        if v4.is_link_local() {
            assert_eq!(class, AddressClass::LinkLocal, "{s:?}");
        }
    }
});
