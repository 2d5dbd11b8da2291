//! The committed header must be what cbindgen generates from the current sources.
#[test]
fn committed_header_matches_generated() {
    let generated = include_str!(env!("KONG_CLIENT_TLS_GENERATED_HEADER"));
    let committed = include_str!("../include/kong_client_tls.h");
    assert!(
        generated == committed,
        "include/kong_client_tls.h is stale: run `make header` and commit it"
    );
}

/// A C program includes this header next to its own and OpenSSL's names: every name it
/// defines carries the library's prefix, and a negative value cannot change meaning in
/// an expression (`a-KONG_CLIENT_TLS_ERROR`).
#[test]
fn the_header_defines_only_prefixed_names() {
    let header = include_str!("../include/kong_client_tls.h");
    let prefixed =
        |name: &str| name.starts_with("kong_client_tls_") || name.starts_with("KONG_CLIENT_TLS_");
    let mut names = Vec::new();
    // Top-level lines only: parameter lists continue indented.
    for line in header.lines().filter(|l| !l.starts_with([' ', '\t'])) {
        if let Some(rest) = line.strip_prefix("#define ") {
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(
                !value.starts_with('-'),
                "negative macro not parenthesised: {line}"
            );
            names.push(name);
        } else if let Some(rest) = line.strip_prefix("typedef struct ") {
            names.push(rest.split_whitespace().next().unwrap_or(rest));
        } else if let Some(alias) = line.strip_prefix("} ").and_then(|r| r.strip_suffix(';')) {
            names.push(alias);
        } else if !line.starts_with(['/', '*', '#', '}']) && line.contains('(') {
            // A declaration: the identifier just before the parameter list.
            let head = line.split('(').next().unwrap_or("");
            if let Some(name) = head
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .next_back()
            {
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 15, "parsed too few names: {names:?}");
    let foreign: Vec<_> = names
        .iter()
        .filter(|n| !prefixed(n) && **n != "KONG_CLIENT_TLS_H")
        .collect();
    assert!(
        foreign.is_empty(),
        "unprefixed names in the header: {foreign:?}"
    );
}
