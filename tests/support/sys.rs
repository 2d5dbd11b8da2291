//! The libssl functions and constants the tests and benches call that `openssl-sys` does
//! not declare (or not on every OpenSSL line the tests build with), declared once.

use std::ffi::{c_int, c_long, c_void};

use openssl_sys::{stack_st_X509_NAME, BIO, SSL, SSL_CTX, SSL_SESSION};

/// `SSL_CTX_set_cert_cb`'s callback.
pub type CertCallback = unsafe extern "C" fn(ssl: *mut SSL, arg: *mut c_void) -> c_int;
/// `SSL_CTX_set_client_hello_cb`'s callback.
pub type ClientHelloCallback =
    unsafe extern "C" fn(ssl: *mut SSL, alert: *mut c_int, arg: *mut c_void) -> c_int;
/// `SSL_set_msg_callback`'s callback.
pub type MsgCallback = unsafe extern "C" fn(
    write_p: c_int,
    version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    ssl: *mut SSL,
    arg: *mut c_void,
);
/// `SSL_set_not_resumable_session_callback`'s callback.
pub type NotResumableCallback =
    unsafe extern "C" fn(ssl: *mut SSL, is_forward_secure: c_int) -> c_int;

extern "C" {
    pub fn SSL_get_client_CA_list(ssl: *const SSL) -> *mut stack_st_X509_NAME;
    pub fn SSL_get_state(ssl: *const SSL) -> c_int;
    pub fn SSL_set_options(ssl: *mut SSL, options: u64) -> u64;
    pub fn SSL_ctrl(ssl: *mut SSL, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long;
    pub fn SSL_set_msg_callback(ssl: *mut SSL, cb: Option<MsgCallback>);
    pub fn SSL_set_not_resumable_session_callback(ssl: *mut SSL, cb: Option<NotResumableCallback>);

    pub fn SSL_CTX_get_options(ctx: *const SSL_CTX) -> u64;
    pub fn SSL_CTX_ctrl(ctx: *mut SSL_CTX, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long;
    pub fn SSL_CTX_set_cert_cb(ctx: *mut SSL_CTX, cb: Option<CertCallback>, arg: *mut c_void);
    pub fn SSL_CTX_set_client_hello_cb(
        ctx: *mut SSL_CTX,
        cb: Option<ClientHelloCallback>,
        arg: *mut c_void,
    );

    pub fn SSL_SESSION_is_resumable(session: *const SSL_SESSION) -> c_int;
    pub fn SSL_SESSION_set_time(session: *mut SSL_SESSION, t: c_long) -> c_long;

    pub fn BIO_free(bio: *mut BIO) -> c_int;
}

/// `SSL_ctrl` command: the argument passed to the message callback.
pub const SSL_CTRL_SET_MSG_CALLBACK_ARG: c_int = 16;
/// `SSL_CTX_ctrl` command: the number of sessions in the internal cache.
pub const SSL_CTRL_SESS_NUMBER: c_int = 20;
/// `SSL_CTX_ctrl` command: set the ticket keys (`SSL_CTX_set_tlsext_ticket_keys`).
pub const SSL_CTRL_SET_TLSEXT_TICKET_KEYS: c_int = 59;
/// `BIO_ctrl` command: the bytes pending in a BIO (`BIO_pending`).
pub const BIO_CTRL_PENDING: c_int = 10;
/// `SSL_CLIENT_HELLO_SUCCESS`.
pub const SSL_CLIENT_HELLO_SUCCESS: c_int = 1;
/// `SSL_CLIENT_HELLO_RETRY`: the client hello callback pauses the handshake.
pub const SSL_CLIENT_HELLO_RETRY: c_int = -1;
/// TLS record content type of handshake messages.
pub const SSL3_RT_HANDSHAKE: c_int = 22;
