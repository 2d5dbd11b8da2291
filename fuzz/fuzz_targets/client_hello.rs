//! Arbitrary bytes as a received ClientHello: the parser never panics or reads out of
//! bounds, and every rewrite keeps the length, touches only what it must, and undoes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kong_client_tls::internal::wire::check_invariants(data);
});
