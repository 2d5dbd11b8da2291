//! Checks on the `SSL *` handed in by the caller: NULL, role, and where in the handshake
//! the call was made; and the ClientHello accessor those placements allow.

use foreign_types::ForeignTypeRef;
use openssl::ssl::SslRef;
use openssl_sys::SSL;

use crate::error::Error;
use crate::openssl_lines;
use crate::sys::{SSL_get_state, SSL_in_before};

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
