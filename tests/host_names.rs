//! Host names as nginx compares them (`kong_client_tls::internal::host`), on hostile
//! bytes: the request's `Host` and the ClientHello's SNI name both come from the client.
//! What `fuzz/fuzz_targets/host.rs` asserts on every input, checked here on generated ones,
//! and the names of the grammar nginx serves compared against a model built from it.

use kong_client_tls::internal::host::{canonical, lowercase_into, same_host};
use proptest::collection::vec;
use proptest::prelude::*;

/// What holds for every input, valid or not (the fuzz target's invariants).
fn check_invariants(raw: &[u8]) {
    let Some(host) = canonical(raw) else {
        assert!(!same_host(raw, raw), "an invalid name is no name");
        return;
    };
    assert!(raw.starts_with(host), "a prefix of the input");
    assert!(!host.is_empty());
    assert!(!host.ends_with(b"."), "no trailing dot");
    assert!(!host.windows(2).any(|w| w == b".."), "no empty label");
    assert!(
        !host.iter().any(|&c| c <= 0x20 || c == 0x7f || c == b'/'),
        "no control character, space or slash"
    );
    assert_eq!(canonical(host), Some(host), "idempotent");
    assert!(same_host(raw, host) && same_host(host, raw), "symmetric");
    let mut lower = Vec::new();
    assert_eq!(lowercase_into(raw, &mut lower), Some(()));
    assert_eq!(lower, host.to_ascii_lowercase());
    assert!(same_host(&lower, raw));
}

/// A DNS-like name as clients send it: labels, maybe a trailing dot, maybe a port.
fn name() -> impl Strategy<Value = (Vec<String>, bool, Option<u16>)> {
    (
        vec("[a-zA-Z0-9-]{1,12}", 1..5),
        any::<bool>(),
        proptest::option::of(any::<u16>()),
    )
}

fn render((labels, dot, port): &(Vec<String>, bool, Option<u16>)) -> String {
    let mut s = labels.join(".");
    if *dot {
        s.push('.');
    }
    if let Some(port) = port {
        s.push_str(&format!(":{port}"));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn any_bytes_keep_the_invariants(raw in vec(any::<u8>(), 0..64)) {
        check_invariants(&raw);
    }

    #[test]
    fn host_like_bytes_keep_the_invariants(raw in "[a-zA-Z0-9.:\\[\\]/ -]{0,24}") {
        check_invariants(raw.as_bytes());
    }

    /// The model: the labels joined by dots, lowercased; port and trailing dot ignored.
    #[test]
    fn names_compare_as_their_labels(a in name(), b in name()) {
        let model = |n: &(Vec<String>, bool, Option<u16>)| n.0.join(".").to_ascii_lowercase();
        let (ra, rb) = (render(&a), render(&b));
        prop_assert_eq!(
            canonical(ra.as_bytes()).map(|h| h.to_ascii_lowercase()),
            Some(model(&a).into_bytes())
        );
        prop_assert_eq!(same_host(ra.as_bytes(), rb.as_bytes()), model(&a) == model(&b));
        let shouted = render(&(a.0.iter().map(|l| l.to_ascii_uppercase()).collect(), !a.1, Some(443)));
        prop_assert!(same_host(ra.as_bytes(), shouted.as_bytes()));
    }

    /// An empty label anywhere, or a byte nginx refuses, refuses the whole name.
    #[test]
    fn a_bad_byte_or_empty_label_refuses_the_name(n in name(), bad in prop::sample::select(vec![b' ', b'/', b'\t', 0u8, 0x7f]), at in any::<prop::sample::Index>()) {
        let s = render(&n);
        let i = at.index(s.len() + 1);
        let mut with_bad = s.as_bytes().to_vec();
        with_bad.insert(i, bad);
        prop_assert_eq!(canonical(&with_bad), None);
        let doubled = format!("{}..{}", n.0[0], s);
        prop_assert_eq!(canonical(doubled.as_bytes()), None);
    }
}

#[test]
fn ip_literals_and_addresses() {
    assert_eq!(
        canonical(b"[2001:db8::1]:8443"),
        Some(&b"[2001:db8::1]"[..])
    );
    assert!(same_host(b"[2001:DB8::1]", b"[2001:db8::1]:443"));
    assert!(same_host(b"127.0.0.1", b"127.0.0.1:8443"));
    assert!(!same_host(b"127.0.0.1", b"127.0.0.2"));
}
