//! The OpenSSL release lines this library is verified on, and the one internal that
//! differs between them, decided from the libcrypto running in the process.
//!
//! The library is built against one set of OpenSSL headers and then loaded next to
//! whatever `libssl.so.3` the host has (OpenResty bundles 3.5; a binary built on Debian 12
//! may run on Debian 13's 3.5 or unstable's 3.6). So nothing that depends on OpenSSL's
//! internals may be a compile-time constant: OpenSSL 3.2 inserted the certificate
//! compression states into `OSSL_HANDSHAKE_STATE`, moving `TLS_ST_SR_CLNT_HELLO` from 20
//! to 22, and a constant taken from 3.0's headers silently refused every certificate
//! callback on 3.2 and later.
//!
//! Everything else this library relies on inside OpenSSL is behaviour, not a number (see
//! `docs/openssl-internals.md`): the writable received-ClientHello buffer, when the
//! message callback runs, the PSK being checked before ALPN is read, what the
//! not-resumable callback may change. Those are proven per line by the OpenSSL matrix
//! (`make test-openssl`), and a line outside it is refused, at load
//! (`kong_client_tls_check_libssl`) and at every call that depends on them, rather than
//! trusted blindly.

use std::ffi::{c_int, c_ulong};
use std::sync::OnceLock;

use crate::error::Error;

/// One verified release line, `major.minor`, and its internals.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub major: u8,
    pub minor: u8,
    /// `TLS_ST_SR_CLNT_HELLO`: the state in which the client hello and certificate
    /// callbacks run, i.e. before anything of the ServerHello is written.
    pub sr_clnt_hello: c_int,
}

const fn line(major: u8, minor: u8, sr_clnt_hello: c_int) -> Line {
    Line {
        major,
        minor,
        sr_clnt_hello,
    }
}

/// Every line the matrix covers (tests/openssl/versions.txt plus the host's 3.0).
/// Adding one here is a claim: run the matrix on it first.
const VERIFIED: &[Line] = &[
    line(3, 0, 20),
    line(3, 1, 20),
    line(3, 2, 22),
    line(3, 3, 22),
    line(3, 4, 22),
    line(3, 5, 22),
    line(3, 6, 22),
    line(4, 0, 22),
];

/// Said when the running libcrypto is of a line not in [`VERIFIED`]; the list in the text
/// is checked against the table by a unit test.
pub(crate) const UNVERIFIED: Error = Error::new(
    c"the running OpenSSL release line is not verified for kong_client_tls (verified: 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 4.0); its handshake internals may differ, so kong_client_tls refuses to run on it",
);

/// The verified line of an `OpenSSL_version_num()` value (`0xMNN00PP0L` since 3.0).
pub(crate) fn line_of(version_num: c_ulong) -> Result<&'static Line, Error> {
    let major = (version_num >> 28) & 0xf;
    let minor = (version_num >> 20) & 0xff;
    VERIFIED
        .iter()
        .find(|l| c_ulong::from(l.major) == major && c_ulong::from(l.minor) == minor)
        .ok_or(UNVERIFIED)
}

/// The verified line of the libcrypto this process runs, read once.
pub(crate) fn running() -> Result<&'static Line, Error> {
    static RUNNING: OnceLock<Result<&'static Line, Error>> = OnceLock::new();
    // SAFETY: no arguments, no preconditions.
    *RUNNING.get_or_init(|| line_of(unsafe { openssl_sys::OpenSSL_version_num() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patch_release_of_a_verified_line_is_that_line() {
        for (num, major, minor, state) in [
            (0x3000_0130_u32, 3, 0, 20), // 3.0.19, Debian 12
            (0x3010_0040, 3, 1, 20),
            (0x3020_0010, 3, 2, 22),
            (0x3050_0050, 3, 5, 22), // 3.5.5, OpenResty and Debian 13
            (0x3060_0050, 3, 6, 22),
            (0x4000_0030, 4, 0, 22),
        ] {
            let l = line_of(c_ulong::from(num)).unwrap();
            assert_eq!((l.major, l.minor, l.sr_clnt_hello), (major, minor, state));
        }
    }

    #[test]
    fn lines_outside_the_matrix_are_refused() {
        for num in [
            0x1010_117f_u32, // 1.1.1w
            0x3070_0000,     // a future 3.7
            0x4010_0000,     // a future 4.1
            0x5000_0000,
            0,
        ] {
            assert_eq!(line_of(c_ulong::from(num)), Err(UNVERIFIED));
        }
    }

    #[test]
    fn the_refusal_lists_exactly_the_verified_lines() {
        let listed: Vec<String> = VERIFIED
            .iter()
            .map(|l| format!("{}.{}", l.major, l.minor))
            .collect();
        let text = UNVERIFIED.message.to_str().unwrap();
        assert!(
            text.contains(&format!("(verified: {})", listed.join(", "))),
            "{text}"
        );
    }
}
