//! Versions, and the proof that the host process and this library share one libssl, of a
//! verified release line.
//!
//! Two copies of OpenSSL in one process corrupt memory as soon as an `SSL *` made by one
//! reaches the other. A library loaded into nginx binds `SSL_new` and friends through the
//! dynamic linker; if nginx's own libssl is a different object (a statically linked or
//! differently named OpenSSL), the addresses differ, and that is what we check.

use std::ffi::{c_char, c_int, c_ulong, c_void, CStr};

use crate::error::{guard, set_err, Error, KONG_CLIENT_TLS_NO_HOST_LIBSSL, KONG_CLIENT_TLS_OK};
use crate::openssl_lines;

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("version string"),
    };

const SECOND_LIBSSL: Error = Error::new(
    c"two copies of libssl in one process: the host's SSL_new is not the one kong_client_tls is linked to; build kong_client_tls against the host's OpenSSL",
);
const SECOND_LIBCRYPTO: Error = Error::new(
    c"two copies of libcrypto in one process: the host's X509_free is not the one kong_client_tls is linked to; build kong_client_tls against the host's OpenSSL",
);
const NO_HOST_LIBSSL: Error = Error::new(
    c"the host process exports no libssl symbols, so it cannot be shown to use kong_client_tls's libssl",
);

/// The library's version, e.g. `"0.1.0"`. Static; never free it.
#[no_mangle]
pub extern "C" fn kong_client_tls_version() -> *const c_char {
    VERSION.as_ptr()
}

/// `OpenSSL_version_num()` of the libcrypto this library is bound to at run time.
#[no_mangle]
pub extern "C" fn kong_client_tls_openssl_version_num() -> c_ulong {
    // SAFETY: no arguments, no preconditions.
    unsafe { openssl_sys::OpenSSL_version_num() }
}

/// Checks that the host process and this library use the same libssl and libcrypto, and
/// that it is of an OpenSSL release line this library is verified on.
///
/// Compares the addresses of `SSL_new` and `X509_free` that this library is bound to with
/// those the host process exports (`dlsym(RTLD_DEFAULT, …)`), then the release line of
/// `OpenSSL_version_num()` (3.0 to 3.6 and 4.0 are verified). Call it once at load time.
///
/// Returns `KONG_CLIENT_TLS_OK` when they are the same objects of a verified line;
/// `KONG_CLIENT_TLS_NO_HOST_LIBSSL` when the line is verified but the host exports neither
/// symbol (a process that does not use OpenSSL itself, or links it statically without
/// exporting it: the caller decides; `*err` explains); `KONG_CLIENT_TLS_ERROR` when they
/// differ or the line is not verified (`*err` says which). On an unverified line,
/// `kong_client_tls_request_client_certificate`, `kong_client_tls_disable_session_reuse`
/// and `kong_client_tls_disable_http2_alpn` refuse every call with the same message.
///
/// # Safety
/// `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_check_libssl(err: *mut *const c_char) -> c_int {
    guard(err, || {
        let ssl_new = host_symbol(c"SSL_new");
        let x509_free = host_symbol(c"X509_free");
        if !ssl_new.is_null() && ssl_new != openssl_sys::SSL_new as *mut c_void {
            return Err(SECOND_LIBSSL);
        }
        if !x509_free.is_null() && x509_free != openssl_sys::X509_free as *mut c_void {
            return Err(SECOND_LIBCRYPTO);
        }
        openssl_lines::running()?;
        if ssl_new.is_null() && x509_free.is_null() {
            // SAFETY: `err` is NULL or writable per the contract.
            unsafe { set_err(err, NO_HOST_LIBSSL) };
            return Ok(KONG_CLIENT_TLS_NO_HOST_LIBSSL);
        }
        Ok(KONG_CLIENT_TLS_OK)
    })
}

fn host_symbol(name: &CStr) -> *mut c_void {
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the global scope only.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}
