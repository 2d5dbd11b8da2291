//! The libssl and libcrypto calls and constants this crate needs that `openssl-sys` does
//! not declare. All exist in OpenSSL 3.0's `libssl.so.3` / `libcrypto.so.3` and later;
//! `cbindgen.toml` keeps them out of our header.

use std::ffi::{c_int, c_long, c_uint, c_void};

use openssl_sys::{ASN1_TIME, SSL, SSL_SESSION, X509};

/// `SSL3_RT_HANDSHAKE`: the record content type of handshake messages.
pub(crate) const SSL3_RT_HANDSHAKE: c_int = 22;
/// Handshake message types (RFC 8446, section 4).
pub(crate) const SSL3_MT_CLIENT_HELLO: u8 = 1;
pub(crate) const SSL3_MT_SERVER_HELLO: u8 = 2;
/// `TLSEXT_TYPE_server_name` (RFC 6066).
pub(crate) const TLSEXT_TYPE_SERVER_NAME: u16 = 0;

/// The signature of a message callback (`SSL_set_msg_callback`).
pub(crate) type MsgCallback =
    unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, usize, *mut SSL, *mut c_void);

extern "C" {
    pub(crate) fn SSL_in_before(ssl: *const SSL) -> c_int;
    pub(crate) fn SSL_get_state(ssl: *const SSL) -> c_int;
    pub(crate) fn SSL_get0_peer_certificate(ssl: *const SSL) -> *mut X509;
    pub(crate) fn SSL_set_msg_callback(ssl: *mut SSL, cb: Option<MsgCallback>);
    pub(crate) fn SSL_set_options(ssl: *mut SSL, options: u64) -> u64;
    pub(crate) fn SSL_set_not_resumable_session_callback(
        ssl: *mut SSL,
        cb: Option<unsafe extern "C" fn(*mut SSL, c_int) -> c_int>,
    );
    pub(crate) fn SSL_set_session_id_context(
        ssl: *mut SSL,
        sid_ctx: *const u8,
        len: c_uint,
    ) -> c_int;
    pub(crate) fn SSL_set_verify_depth(ssl: *mut SSL, depth: c_int);
    pub(crate) fn SSL_SESSION_set1_id(
        session: *mut SSL_SESSION,
        id: *const u8,
        len: c_uint,
    ) -> c_int;
    pub(crate) fn SSL_SESSION_set1_id_context(
        session: *mut SSL_SESSION,
        sid_ctx: *const u8,
        len: c_uint,
    ) -> c_int;
    pub(crate) fn SSL_SESSION_set_time(session: *mut SSL_SESSION, time: c_long) -> c_long;
    pub(crate) fn SSL_SESSION_set_timeout(session: *mut SSL_SESSION, timeout: c_long) -> c_long;
    pub(crate) fn X509_get0_notAfter(x509: *const X509) -> *const ASN1_TIME;
}
