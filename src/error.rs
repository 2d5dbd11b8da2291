//! Every status code the C API returns, the error messages shared by several entries, and
//! the panic-proof wrapper around every `extern "C"` entry.

use std::ffi::{c_char, c_int, c_ulong, CStr};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef};
use openssl_sys::SSL;

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

/// An error for the C caller: a static, NUL-terminated message it never frees, and what
/// the connection's copy of the message adds to it (see [`guard_connection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub(crate) message: &'static CStr,
    detail: Option<Detail>,
}

/// What a connection's message adds to the static one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// For a failed OpenSSL call, what OpenSSL said (first error of its queue).
    OpenSsl(OpenSslReason),
    /// For something too large, how large it is and what fits.
    Sizes { took: usize, limit: usize },
}

/// The first error OpenSSL queued, by its static strings (OpenSSL's own tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenSslReason {
    code: c_ulong,
    library: Option<&'static str>,
    reason: Option<&'static str>,
}

impl Error {
    /// An error with a static message.
    pub const fn new(message: &'static CStr) -> Error {
        Error {
            message,
            detail: None,
        }
    }

    /// `self`'s message, with what OpenSSL said of `stack`.
    pub(crate) fn with_openssl(self, stack: &ErrorStack) -> Error {
        let detail = stack.errors().first().map(|e| {
            Detail::OpenSsl(OpenSslReason {
                code: e.code(),
                library: e.library(),
                reason: e.reason(),
            })
        });
        Error { detail, ..self }
    }

    /// `self`'s message, saying it took `took` bytes where `limit` fit.
    pub(crate) fn with_sizes(self, took: usize, limit: usize) -> Error {
        Error {
            detail: Some(Detail::Sizes { took, limit }),
            ..self
        }
    }

    pub const NULL_SSL: Error = Error::new(c"ssl is NULL");
    pub const CLIENT_SIDE: Error =
        Error::new(c"ssl is a client-side connection; a server-side SSL is required");
    pub const WRONG_STATE: Error = Error::new(
        c"the handshake is past the ClientHello; call this from the client hello or certificate callback",
    );
    pub const NOT_IN_CLIENT_HELLO: Error = Error::new(
        c"the ClientHello is no longer available; call this from the client hello callback",
    );
    pub const PANIC: Error = Error::new(c"internal error in kong_client_tls (panic caught)");
    pub const OPENSSL: Error = Error::new(c"OpenSSL call failed");
    pub const EX_DATA_INDEX: Error = Error::new(c"cannot allocate an SSL ex_data index");

    pub fn as_ptr(self) -> *const c_char {
        self.message.as_ptr()
    }
}

impl From<ErrorStack> for Error {
    fn from(stack: ErrorStack) -> Self {
        Error::OPENSSL.with_openssl(&stack)
    }
}

/// Room for a message with OpenSSL's reason; longer ones are cut, still NUL-terminated.
const MESSAGE_ROOM: usize = 256;

/// The last error message of a connection whose OpenSSL call failed, kept in its ex_data
/// so that `*err` can point to it without the caller freeing anything.
struct ConnectionMessage([u8; MESSAGE_ROOM]);

fn message_index() -> Option<Index<Ssl, ConnectionMessage>> {
    static INDEX: OnceLock<Option<Index<Ssl, ConnectionMessage>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// `e`'s message with its detail, written into `ssl`'s message slot; `None` when there is
/// no detail to add or no slot.
fn connection_message(ssl: &mut SslRef, e: Error) -> Option<*const c_char> {
    let detail = e.detail?;
    let index = message_index()?;
    if ssl.ex_data(index).is_none() {
        ssl.set_ex_data(index, ConnectionMessage([0; MESSAGE_ROOM]));
    }
    let slot = &mut ssl.ex_data_mut(index)?.0;
    let mut out = &mut slot[..MESSAGE_ROOM - 1];
    // A write into a full slice stops short: the message is cut, never overflowing.
    let message = e.message.to_str().unwrap_or("kong_client_tls error");
    let _ = match detail {
        Detail::OpenSsl(openssl) => write!(
            out,
            "{message}: {}: {} (error:{:08X})",
            openssl.library.unwrap_or("unknown library"),
            openssl.reason.unwrap_or("unknown reason"),
            openssl.code,
        ),
        Detail::Sizes { took, limit } => {
            write!(
                out,
                "{message}: they take {took} bytes, at most {limit} fit"
            )
        }
    };
    let end = MESSAGE_ROOM - 1 - out.len();
    slot[end] = 0;
    Some(slot.as_ptr().cast())
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

/// Like [`guard`], for an entry that works on the server-side connection `ssl`: when an
/// OpenSSL call failed, the message that reaches `*err` says what OpenSSL said (and when
/// something was too large, its size and the limit), and is
/// held by the connection until its next such failure or `SSL_free` (never freed by the
/// caller). Every entry's contract makes `ssl` NULL or a live `SSL *`.
pub(crate) fn guard_connection(
    ssl: *mut SSL,
    err: *mut *const c_char,
    body: impl FnOnce() -> Result<c_int, Error>,
) -> c_int {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => return code,
        Ok(Err(e)) => e,
        Err(_) => Error::PANIC,
    };
    let with_reason = catch_unwind(AssertUnwindSafe(|| {
        if ssl.is_null() || err.is_null() {
            return None;
        }
        // SAFETY: non-NULL, and live per every entry's contract; the role is checked
        // before the connection is changed.
        let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
        if !ssl.is_server() {
            return None;
        }
        connection_message(ssl, failure)
    }));
    match (with_reason, err.is_null()) {
        // SAFETY: `err` is non-NULL, and writable per every entry's contract.
        (Ok(Some(message)), false) => unsafe { *err = message },
        // SAFETY: every entry's contract makes `err` NULL or writable.
        _ => unsafe { set_err(err, failure) },
    }
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
        assert_eq!(unsafe { CStr::from_ptr(err) }, Error::PANIC.message);
    }

    #[test]
    fn a_null_err_pointer_is_never_written() {
        assert_eq!(
            guard(std::ptr::null_mut(), || Err(Error::NULL_SSL)),
            KONG_CLIENT_TLS_ERROR
        );
        assert_eq!(guard(std::ptr::null_mut(), || Ok(7)), 7);
    }

    fn server_ssl() -> Ssl {
        let ctx = openssl::ssl::SslContext::builder(openssl::ssl::SslMethod::tls())
            .unwrap()
            .build();
        let mut ssl = Ssl::new(&ctx).unwrap();
        ssl.set_accept_state();
        ssl
    }

    /// A real OpenSSL failure: PEM without a certificate in it.
    fn openssl_failure() -> ErrorStack {
        openssl::x509::X509::from_pem(b"not a certificate").unwrap_err()
    }

    fn text(err: *const c_char) -> String {
        // SAFETY: the guards store NUL-terminated messages.
        unsafe { CStr::from_ptr(err) }.to_str().unwrap().to_owned()
    }

    #[test]
    fn an_openssl_failure_says_what_openssl_said_and_the_connection_holds_the_text() {
        let ssl = server_ssl();
        let mut err: *const c_char = std::ptr::null();
        let rc = guard_connection(ssl.as_ptr(), &mut err, || Err(openssl_failure().into()));
        assert_eq!(rc, KONG_CLIENT_TLS_ERROR);
        let first = text(err);
        assert!(
            first.starts_with("OpenSSL call failed: PEM routines: no start line (error:"),
            "{first}"
        );
        let slot = ssl.ex_data(message_index().unwrap()).unwrap();
        assert_eq!(err, slot.0.as_ptr().cast(), "owned by the connection");
        // SAFETY: no OpenSSL error is left for the next call on this thread to misread.
        assert_eq!(unsafe { openssl_sys::ERR_get_error() }, 0);

        // A static error leaves the connection's text alone and points to static memory.
        let rc = guard_connection(ssl.as_ptr(), &mut err, || Err(Error::NULL_SSL));
        assert_eq!(
            (rc, text(err).as_str()),
            (KONG_CLIENT_TLS_ERROR, "ssl is NULL")
        );
        let with_context = Error::new(c"cannot PEM-encode").with_openssl(&openssl_failure());
        guard_connection(ssl.as_ptr(), &mut err, || Err(with_context));
        assert!(text(err).starts_with("cannot PEM-encode: PEM routines: "));
    }

    #[test]
    fn without_a_server_connection_the_static_message_is_used() {
        let mut err: *const c_char = std::ptr::null();
        let failure = || Err(openssl_failure().into());
        guard_connection(std::ptr::null_mut(), &mut err, failure);
        assert_eq!(text(err), "OpenSSL call failed");
        let ctx = openssl::ssl::SslContext::builder(openssl::ssl::SslMethod::tls())
            .unwrap()
            .build();
        let mut client = Ssl::new(&ctx).unwrap();
        client.set_connect_state();
        guard_connection(client.as_ptr(), &mut err, failure);
        assert_eq!(text(err), "OpenSSL call failed");
        assert_eq!(
            guard_connection(client.as_ptr(), std::ptr::null_mut(), failure),
            KONG_CLIENT_TLS_ERROR
        );
    }

    #[test]
    fn a_long_reason_is_cut_and_still_terminated() {
        let ssl = server_ssl();
        let long = Error::new(c"x").with_openssl(&openssl_failure());
        let long = Error {
            message: c"a context far longer than the room kept for a connection's message, a context far longer than the room kept for a connection's message, a context far longer than the room kept for a connection's message, a context far longer than the room",
            ..long
        };
        let mut err: *const c_char = std::ptr::null();
        guard_connection(ssl.as_ptr(), &mut err, || Err(long));
        assert_eq!(text(err).len(), MESSAGE_ROOM - 1);
    }
}
