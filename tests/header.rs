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
