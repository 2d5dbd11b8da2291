//! The connection's one message callback, shared by the features that must see
//! handshake messages: a connection has a single `SSL_set_msg_callback` slot.
//!
//! OpenSSL calls it for each handshake message: a received one after it entered the
//! transcript and before it is processed, a sent one once it is written.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use foreign_types::ForeignTypeRef;
use openssl::ssl::SslRef;
use openssl_sys::SSL;

use crate::sys::{
    SSL_set_msg_callback, SSL3_MT_CLIENT_HELLO, SSL3_MT_SERVER_HELLO, SSL3_RT_HANDSHAKE,
};
use crate::{alpn, session};

/// Installs the library's message callback on `ssl`, replacing any set on the `SSL` or
/// inherited from its `SSL_CTX` (nginx sets none).
pub(crate) fn install(ssl: &SslRef) {
    // SAFETY: `ssl` is live; the callback only acts on the SSL it is called for.
    unsafe { SSL_set_msg_callback(ssl.as_ptr(), Some(on_message)) };
}

unsafe extern "C" fn on_message(
    write_p: c_int,
    _version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    ssl: *mut SSL,
    _arg: *mut c_void,
) {
    if content_type != SSL3_RT_HANDSHAKE || buf.is_null() || len == 0 || ssl.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: OpenSSL passes the live SSL and a message of `len` readable bytes.
        let (ssl, message_type) = unsafe { (SslRef::from_ptr_mut(ssl), *buf.cast::<u8>()) };
        match (write_p, message_type) {
            (0, SSL3_MT_CLIENT_HELLO) => {
                // SAFETY: a received message lies in OpenSSL's own heap buffer
                // (`init_buf`), writable, which it is about to parse.
                let message =
                    unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>().cast_mut(), len) };
                alpn::on_client_hello(ssl, message);
            }
            (1, SSL3_MT_SERVER_HELLO) => session::on_server_hello(ssl),
            _ => {}
        }
    }));
}
