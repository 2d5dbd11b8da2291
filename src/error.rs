//! Every status code the C API returns, the error messages shared by several entries, and
//! the panic-proof wrapper around every `extern "C"` entry.

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Success.
pub const KONG_CLIENT_TLS_OK: c_int = 0;
/// Failure; `*err` names the reason.
pub const KONG_CLIENT_TLS_ERROR: c_int = -1;
/// The peer presented no certificate (or none was requested).
pub const KONG_CLIENT_TLS_NO_CERTIFICATE: c_int = 1;
/// The caller's buffer is too small; the needed size was written back.
pub const KONG_CLIENT_TLS_BUFFER_TOO_SMALL: c_int = 2;
/// `kong_client_tls_check_libssl` only: the host process exports no libssl/libcrypto
/// symbols, so sharing one libssl cannot be proven.
pub const KONG_CLIENT_TLS_NO_HOST_LIBSSL: c_int = 3;

/// An error for the C caller: a static, NUL-terminated message it never frees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(pub &'static CStr);

impl Error {
    pub const NULL_SSL: Error = Error(c"ssl is NULL");
    pub const CLIENT_SIDE: Error =
        Error(c"ssl is a client-side connection; a server-side SSL is required");
    pub const WRONG_STATE: Error = Error(
        c"the handshake is past the ClientHello; call this from the client hello or certificate callback",
    );
    pub const NOT_IN_CLIENT_HELLO: Error =
        Error(c"the ClientHello is no longer available; call this from the client hello callback");
    pub const PANIC: Error = Error(c"internal error in kong_client_tls (panic caught)");
    pub const OPENSSL: Error = Error(c"OpenSSL call failed (see the OpenSSL error queue)");
    pub const EX_DATA_INDEX: Error = Error(c"cannot allocate an SSL ex_data index");

    pub fn as_ptr(self) -> *const c_char {
        self.0.as_ptr()
    }
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(_: openssl::error::ErrorStack) -> Self {
        Error::OPENSSL
    }
}

/// Runs an entry's body, converting `Err` and panics into [`KONG_CLIENT_TLS_ERROR`] with
/// the message stored through `err` (when `err` is not NULL).
pub(crate) fn guard(err: *mut *const c_char, body: impl FnOnce() -> Result<c_int, Error>) -> c_int {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => return code,
        Ok(Err(e)) => e,
        Err(_) => Error::PANIC,
    };
    // SAFETY: every entry's contract makes `err` NULL or writable.
    unsafe { set_err(err, failure) };
    KONG_CLIENT_TLS_ERROR
}

/// Stores `e` through `err` unless `err` is NULL.
///
/// # Safety
/// `err` is NULL or writable.
pub(crate) unsafe fn set_err(err: *mut *const c_char, e: Error) {
    if !err.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { *err = e.as_ptr() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_a_static_message() {
        let mut err: *const c_char = std::ptr::null();
        let rc = guard(&mut err, || panic!("boom"));
        assert_eq!(rc, KONG_CLIENT_TLS_ERROR);
        // SAFETY: `guard` stored a static NUL-terminated message.
        assert_eq!(unsafe { CStr::from_ptr(err) }, Error::PANIC.0);
    }

    #[test]
    fn a_null_err_pointer_is_never_written() {
        assert_eq!(
            guard(std::ptr::null_mut(), || Err(Error::NULL_SSL)),
            KONG_CLIENT_TLS_ERROR
        );
        assert_eq!(guard(std::ptr::null_mut(), || Ok(7)), 7);
    }
}
