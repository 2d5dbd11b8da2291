//! Host names as nginx compares them, on arbitrary bytes (a request's `Host`, a
//! ClientHello's SNI name): no panic, and the invariants of `tests/host_names.rs`.
#![no_main]

use kong_client_tls::internal::host::{canonical, lowercase_into, same_host};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input into two names to compare.
    let (a, b) = match data.split_first() {
        Some((&at, rest)) => rest.split_at(usize::from(at).min(rest.len())),
        None => (data, data),
    };
    for raw in [a, b] {
        match canonical(raw) {
            Some(host) => {
                assert!(raw.starts_with(host) && !host.is_empty() && !host.ends_with(b"."));
                assert!(!host.windows(2).any(|w| w == b".."));
                assert!(!host.iter().any(|&c| c <= 0x20 || c == 0x7f || c == b'/'));
                assert_eq!(canonical(host), Some(host));
                let mut lower = Vec::new();
                assert_eq!(lowercase_into(raw, &mut lower), Some(()));
                assert_eq!(lower, host.to_ascii_lowercase());
            }
            None => assert!(!same_host(raw, raw)),
        }
    }
    assert_eq!(same_host(a, b), same_host(b, a));
});
