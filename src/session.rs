//! `disable_session_reuse`: the connection's session can never be resumed.
//!
//! Three per-`SSL` settings close every path by which a server hands out a resumable
//! session, and all three are still read by OpenSSL after the certificate callback:
//! - the not-resumable callback marks the session not resumable once the cipher is
//!   chosen: OpenSSL then sends an empty TLS 1.2 session ID (so neither the internal
//!   cache nor an external `new_session_cb` cache ever stores it) and drops a TLS 1.2
//!   ticket it meant to send;
//! - `SSL_OP_NO_TICKET` keeps the TLS 1.2 session-ticket extension out of the ServerHello;
//! - zero TLS 1.3 tickets: no NewSessionTicket, stateless or stateful (stateful ones are
//!   what would enter the session cache).

use std::ffi::{c_char, c_int};

use foreign_types::ForeignTypeRef;
use openssl_sys::{SSL, SSL_OP_NO_TICKET};

use crate::error::{guard, KONG_CLIENT_TLS_OK};
use crate::ssl::{
    server_ssl_before_server_hello, SSL_SESSION_set1_id, SSL_set_not_resumable_session_callback,
    SSL_set_options,
};

/// Makes the session of this server-side connection impossible to resume.
///
/// Call it from the client hello callback or the certificate callback
/// (`SSL_CTX_set_cert_cb`; nginx's `ssl_certificate_by_lua*`), or before the handshake.
/// Afterwards the handshake sends no TLS 1.2 session ID, no TLS 1.2 session ticket and no
/// TLS 1.3 ticket, and the session enters neither the internal session cache nor an
/// external one fed by `SSL_CTX_sess_set_new_cb`. Other connections are unaffected.
/// It replaces any not-resumable-session callback set on this `SSL`.
///
/// Returns `KONG_CLIENT_TLS_OK`, or `KONG_CLIENT_TLS_ERROR` with a static message stored
/// in `*err` (when `err` is not NULL).
///
/// # Safety
/// `ssl` is NULL or a live `SSL *`; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_disable_session_reuse(
    ssl: *mut SSL,
    err: *mut *const c_char,
) -> c_int {
    guard(err, || {
        // SAFETY: forwarded from this function's contract.
        let ssl = unsafe { server_ssl_before_server_hello(ssl) }?;
        ssl.set_num_tickets(0)?;
        // SAFETY: `ssl` is live; the callback is a plain function with no state.
        unsafe {
            SSL_set_options(ssl.as_ptr(), SSL_OP_NO_TICKET);
            SSL_set_not_resumable_session_callback(ssl.as_ptr(), Some(never_resumable));
        }
        Ok(KONG_CLIENT_TLS_OK)
    })
}

/// OpenSSL calls this once it has chosen the cipher of a full handshake, before it
/// writes the ServerHello. Marking the session not resumable stops TLS 1.2 tickets;
/// emptying its ID keeps it out of every session cache and out of the ServerHello.
unsafe extern "C" fn never_resumable(ssl: *mut SSL, _is_forward_secure: c_int) -> c_int {
    // SAFETY: OpenSSL passes the live SSL whose handshake is running; its session exists
    // at this point, and a zero-length ID needs no source bytes.
    unsafe {
        let session = openssl_sys::SSL_get_session(ssl);
        if !session.is_null() {
            SSL_SESSION_set1_id(session, std::ptr::null(), 0);
        }
    }
    1
}
