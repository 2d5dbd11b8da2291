//! The ClientHello parser and rewriter on hostile bytes: property tests, and a replay of
//! the fuzz seed corpus (real ClientHellos from curl, openssl s_client, Python's ssl with
//! a TLS 1.3 PSK, and a Chrome-like one with GREASE).

use std::fs;
use std::path::Path;

use kong_client_tls::internal::wire::{
    check_invariants, disable_psk_modes, find_extensions, hide_h2, protocols, restore_h2,
    EXTENSION_ALPN, EXTENSION_PRE_SHARED_KEY, EXTENSION_PSK_KEY_EXCHANGE_MODES, H2,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn encode_list(names: &[Vec<u8>]) -> Vec<u8> {
    let mut list = Vec::new();
    for name in names {
        list.push(name.len() as u8);
        list.extend_from_slice(name);
    }
    let mut ext = (list.len() as u16).to_be_bytes().to_vec();
    ext.extend(list);
    ext
}

fn client_hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.extend([0u8]); // session id
    body.extend([0, 2, 0x13, 0x01]); // one cipher suite
    body.extend([1, 0]); // null compression
    let mut exts = Vec::new();
    for (kind, data) in extensions {
        exts.extend(kind.to_be_bytes());
        exts.extend((data.len() as u16).to_be_bytes());
        exts.extend(data);
    }
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut msg = vec![1];
    msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    msg
}

fn protocol_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(H2.to_vec()),
        Just(b"http/1.1".to_vec()),
        Just(vec![0x0A, 0x0A]),
        Just(vec![0x1A, 0x1A]),
        vec(any::<u8>(), 1..3),
        vec(any::<u8>(), 1..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn hide_touches_only_h2_and_keeps_the_length(names in vec(protocol_name(), 1..40)) {
        let original = encode_list(&names);
        let mut edited = original.clone();
        let marker = hide_h2(&mut edited).unwrap();
        prop_assert_eq!(edited.len(), original.len());
        let before: Vec<&[u8]> = protocols(&original[2..]).unwrap().collect();
        let after: Vec<&[u8]> = protocols(&edited[2..]).unwrap().collect();
        prop_assert_eq!(before.len(), after.len());
        match marker {
            None => {
                prop_assert!(!names.iter().any(|n| n[..] == H2));
                prop_assert_eq!(&edited, &original);
            }
            Some(marker) => {
                prop_assert!(!before.contains(&&marker[..]), "marker collides with an offer");
                for (was, now) in before.iter().zip(&after) {
                    if **was == H2 { prop_assert_eq!(*now, &marker[..]); } else { prop_assert_eq!(was, now); }
                }
                prop_assert!(!after.contains(&&H2[..]));
                restore_h2(&mut edited, marker).unwrap();
                prop_assert_eq!(&edited, &original);
            }
        }
    }

    #[test]
    fn malformed_alpn_is_reported_and_left_untouched(bytes in vec(any::<u8>(), 0..300)) {
        let mut edited = bytes.clone();
        if hide_h2(&mut edited).is_err() {
            prop_assert_eq!(&edited, &bytes);
        }
        prop_assert_eq!(edited.len(), bytes.len());
    }

    #[test]
    fn truncated_or_extended_lists_are_refused(names in vec(protocol_name(), 1..10), cut in 1usize..5, extra in vec(any::<u8>(), 1..4)) {
        let good = encode_list(&names);
        let mut short = good[..good.len().saturating_sub(cut)].to_vec();
        let before = short.clone();
        prop_assert!(hide_h2(&mut short).is_err());
        prop_assert_eq!(short, before);
        let mut long = good.clone();
        long.extend(extra);
        let before = long.clone();
        prop_assert!(hide_h2(&mut long).is_err());
        prop_assert_eq!(long, before);
    }

    #[test]
    fn find_extensions_locates_what_was_built(names in vec(protocol_name(), 1..10), padding in vec(any::<u8>(), 0..50)) {
        let alpn = encode_list(&names);
        let msg = client_hello(&[(21, padding), (EXTENSION_ALPN, alpn.clone()), (EXTENSION_PSK_KEY_EXCHANGE_MODES, vec![1, 1])]);
        let [found, psk, modes] = find_extensions(&msg, [EXTENSION_ALPN, EXTENSION_PRE_SHARED_KEY, EXTENSION_PSK_KEY_EXCHANGE_MODES]).unwrap();
        prop_assert_eq!(&msg[found.unwrap()], &alpn[..]);
        prop_assert!(psk.is_none());
        prop_assert_eq!(&msg[modes.unwrap()], &[1u8, 1][..]);
        check_invariants(&msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        check_invariants(&bytes);
        let mut with_header = vec![1, 0, (bytes.len() >> 8) as u8, bytes.len() as u8];
        with_header.extend(&bytes);
        check_invariants(&with_header);
    }

    #[test]
    fn psk_modes_are_neutralized_in_place(modes in vec(any::<u8>(), 1..8)) {
        let mut ext = vec![modes.len() as u8];
        ext.extend(&modes);
        let n = disable_psk_modes(&mut ext).unwrap();
        prop_assert_eq!(n, modes.len());
        prop_assert_eq!(ext.len(), modes.len() + 1);
        prop_assert!(ext[1..].iter().all(|&m| m == 0xFF));
    }
}

#[test]
fn seed_corpus_of_real_client_hellos() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/client_hello");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).expect("the seed corpus is committed") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let msg = fs::read(&path).unwrap();
        check_invariants(&msg);
        let [alpn, psk, modes] = find_extensions(
            &msg,
            [
                EXTENSION_ALPN,
                EXTENSION_PRE_SHARED_KEY,
                EXTENSION_PSK_KEY_EXCHANGE_MODES,
            ],
        )
        .unwrap_or_else(|e| panic!("{name}: a real ClientHello parses: {e:?}"));
        let offers_h2 = alpn
            .clone()
            .is_some_and(|r| protocols(&msg[r][2..]).unwrap().any(|p| p == H2));
        let expect_h2 = !(name.contains("no-alpn") || name.contains("http11-tls12"));
        assert_eq!(offers_h2, expect_h2, "{name}");
        if name.contains("psk") {
            assert!(
                psk.is_some() && modes.is_some(),
                "{name}: carries a PSK offer"
            );
        }
        seen += 1;
    }
    assert!(seen >= 7, "seed corpus incomplete: {seen} files");
}
