//! Checks on the `SSL *` handed in by the caller, and the few libssl calls that
//! `openssl-sys` does not declare.

use std::ffi::c_int;

use foreign_types::ForeignTypeRef;
use openssl::ssl::SslRef;
use openssl_sys::SSL;

use crate::error::Error;
use crate::openssl_lines;

// The libssl functions this crate calls that `openssl-sys` does not declare (all in
// OpenSSL 3.0's libssl.so.3). cbindgen.toml keeps them out of our header.
extern "C" {
    pub(crate) fn SSL_in_before(ssl: *const SSL) -> c_int;
    pub(crate) fn SSL_get_state(ssl: *const SSL) -> c_int;
    pub(crate) fn SSL_get0_peer_certificate(ssl: *const SSL) -> *mut openssl_sys::X509;
    pub(crate) fn SSL_set_msg_callback(
        ssl: *mut SSL,
        cb: Option<
            unsafe extern "C" fn(
                c_int,
                c_int,
                c_int,
                *const std::ffi::c_void,
                usize,
                *mut SSL,
                *mut std::ffi::c_void,
            ),
        >,
    );
    pub(crate) fn SSL_set_options(ssl: *mut SSL, options: u64) -> u64;
    pub(crate) fn SSL_set_not_resumable_session_callback(
        ssl: *mut SSL,
        cb: Option<unsafe extern "C" fn(*mut SSL, c_int) -> c_int>,
    );
    pub(crate) fn SSL_SESSION_set1_id(
        session: *mut openssl_sys::SSL_SESSION,
        id: *const u8,
        len: std::ffi::c_uint,
    ) -> c_int;
    pub(crate) fn SSL_set_session_id_context(
        ssl: *mut SSL,
        sid_ctx: *const u8,
        len: std::ffi::c_uint,
    ) -> c_int;
    pub(crate) fn SSL_SESSION_set1_id_context(
        session: *mut openssl_sys::SSL_SESSION,
        sid_ctx: *const u8,
        len: std::ffi::c_uint,
    ) -> c_int;
    pub(crate) fn SSL_SESSION_set_time(
        session: *mut openssl_sys::SSL_SESSION,
        time: std::ffi::c_long,
    ) -> std::ffi::c_long;
    pub(crate) fn SSL_SESSION_set_timeout(
        session: *mut openssl_sys::SSL_SESSION,
        timeout: std::ffi::c_long,
    ) -> std::ffi::c_long;
    pub(crate) fn SSL_set_verify_depth(ssl: *mut SSL, depth: c_int);
    pub(crate) fn X509_get0_notAfter(
        x509: *const openssl_sys::X509,
    ) -> *const openssl_sys::ASN1_TIME;
}

/// Where in the handshake a call that shapes the ServerHello was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Before the handshake started (C callers only).
    BeforeHandshake,
    /// Inside the client hello callback (nginx's `ssl_client_hello_by_lua*`): before
    /// OpenSSL looks for a session to resume.
    ClientHello,
    /// Inside the certificate callback (nginx's `ssl_certificate_by_lua*`): after that
    /// lookup, on full handshakes only.
    Certificate,
}

/// The server-side connection behind `ssl`, or the reason it cannot be used.
///
/// # Safety
/// `ssl` is NULL or a live `SSL *` that nobody else mutates during the call.
pub(crate) unsafe fn server_ssl<'a>(ssl: *mut SSL) -> Result<&'a mut SslRef, Error> {
    if ssl.is_null() {
        return Err(Error::NULL_SSL);
    }
    // SAFETY: non-NULL and live per this function's contract.
    let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
    if !ssl.is_server() {
        return Err(Error::CLIENT_SIDE);
    }
    Ok(ssl)
}

/// Like [`server_ssl`], and the handshake must not have answered the ClientHello yet:
/// settings that shape the ServerHello only work from the client hello or certificate
/// callback (or before the handshake starts). Also refuses an unverified libssl, whose
/// handshake states this cannot read.
///
/// # Safety
/// As for [`server_ssl`].
pub(crate) unsafe fn server_ssl_before_server_hello<'a>(
    ssl: *mut SSL,
) -> Result<&'a mut SslRef, Error> {
    // SAFETY: forwarded contract.
    unsafe { server_ssl_placement(ssl) }.map(|(ssl, _)| ssl)
}

/// Like [`server_ssl_before_server_hello`], and says where the call was made.
///
/// # Safety
/// As for [`server_ssl`].
pub(crate) unsafe fn server_ssl_placement<'a>(
    ssl: *mut SSL,
) -> Result<(&'a mut SslRef, Placement), Error> {
    let line = openssl_lines::running()?;
    // SAFETY: forwarded contract.
    let ssl = unsafe { server_ssl(ssl) }?;
    // SAFETY: `ssl` is live; the calls only read its state. No public predicate tells
    // the certificate callback apart from later states, hence the line's state number;
    // the ClientHello accessors answer 0 outside the client hello callback.
    let (before, state, hello_version) = unsafe {
        (
            SSL_in_before(ssl.as_ptr()),
            SSL_get_state(ssl.as_ptr()),
            openssl_sys::SSL_client_hello_get0_legacy_version(ssl.as_ptr()),
        )
    };
    let placement = match (before, hello_version) {
        (1, _) => Placement::BeforeHandshake,
        _ if state != line.sr_clnt_hello => return Err(Error::WRONG_STATE),
        (_, 0) => Placement::Certificate,
        _ => Placement::ClientHello,
    };
    Ok((ssl, placement))
}

/// Like [`server_ssl_placement`], for calls that must see the ClientHello itself: allowed
/// before the handshake starts or inside the client hello callback.
///
/// # Safety
/// As for [`server_ssl`].
pub(crate) unsafe fn server_ssl_in_client_hello<'a>(
    ssl: *mut SSL,
) -> Result<(&'a mut SslRef, Placement), Error> {
    // SAFETY: forwarded contract.
    match unsafe { server_ssl_placement(ssl) } {
        Ok((_, Placement::Certificate)) => Err(Error::NOT_IN_CLIENT_HELLO),
        Err(e) if e == Error::WRONG_STATE => Err(Error::NOT_IN_CLIENT_HELLO),
        other => other,
    }
}

/// The body of extension `ext_type` of the ClientHello being processed, writable.
///
/// # Safety
/// Call only inside the client hello callback of `ssl`; the slice must not outlive it.
pub(crate) unsafe fn client_hello_extension<'a>(
    ssl: &SslRef,
    ext_type: u16,
) -> Option<&'a mut [u8]> {
    let mut data: *const std::ffi::c_uchar = std::ptr::null();
    let mut len = 0usize;
    // SAFETY: in the client hello callback; out-pointers are valid.
    let found = unsafe {
        openssl_sys::SSL_client_hello_get0_ext(
            ssl.as_ptr(),
            std::ffi::c_uint::from(ext_type),
            &mut data,
            &mut len,
        )
    };
    if found != 1 || data.is_null() {
        return None;
    }
    // SAFETY: the extension body lives in OpenSSL's buffer of the received ClientHello,
    // writable heap memory that stays put while this message is processed.
    Some(unsafe { std::slice::from_raw_parts_mut(data.cast_mut(), len) })
}
