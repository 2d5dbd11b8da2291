//! Which requests may see a connection's client-certificate verdict.
//!
//! One listener serves many names, and HTTP lets every request name its own (`Host`,
//! HTTP/2 `:authority`), whatever the ClientHello said. A verdict made for one name must
//! not reach the virtual server of another: nginx's own `ssl_verify_client` answers such
//! a request 421 Misdirected Request (`ngx_http_set_virtual_server`), and so must every
//! server that requests certificates through this library. The rule, for a connection on
//! which the library requested a certificate:
//! - the ClientHello named a server (SNI, valid as nginx validates hosts): a request must
//!   name the same host, compared as nginx compares them ([`crate::host`]). nginx's
//!   `$host` of a request that names none is the name of the server it was routed to
//!   (the listener's default server: `ngx_http_process_request_header` looks up the
//!   empty name), so that case needs no rule of its own;
//! - it named none, or the caller gives no host: the request must be routed to the
//!   virtual server that requested the certificate, by the tag the caller gave for it
//!   (`kong_client_tls_request_client_certificate_for_server`). No tag on either side
//!   proves nothing, and fails.
//!
//! Stricter than nginx in two places, both on purpose: nginx checks only when the Host's
//! server verifies clients itself, and never when SNI was absent or named no server.

use std::ffi::{c_char, c_int, c_void};

use openssl::ssl::{NameType, SslRef};
use openssl_sys::SSL;

use crate::error::{guard_connection, Error, KONG_CLIENT_TLS_OK};
use crate::host;
use crate::session;
use crate::ssl::server_ssl;

/// `kong_client_tls_check_request`: the request names another server than the one the
/// connection's client certificate was requested for; answer it 421 Misdirected Request.
pub const KONG_CLIENT_TLS_MISDIRECTED: c_int = 4;
/// `kong_client_tls_get0_request_server_name`: the library requested no client
/// certificate on this connection.
pub const KONG_CLIENT_TLS_NOT_REQUESTED: c_int = 5;

/// Decides whether a request on this server-side connection may see its
/// client-certificate verdict (`SSL_get_verify_result`, the peer's certificate): call it
/// for every request, before anything reads the verdict, with the host the request names
/// and the tag of the virtual server it was routed to.
///
/// - `host`, `host_len`: the host the request names (the request line's authority, else
///   `Host`, else HTTP/2 `:authority`), as sent or as nginx's `$host` holds it (for a
///   request naming none, nginx's `$host` is the name of the server it was routed to);
///   NULL when the caller has no host for it: the request is then judged by `server`
///   alone, as without SNI.
/// - `server`: the tag of the virtual server the request was routed to, as given to
///   `kong_client_tls_request_client_certificate_for_server`; NULL for none.
///
/// Returns `KONG_CLIENT_TLS_OK` when the request may proceed: the library requested no
/// certificate on this connection, or the request is for the server it was requested for
/// (see the module's rule, in the README: the SNI name compared with `host` as nginx
/// compares hosts; without SNI or without `host`, `server` compared with the requesting
/// server's tag). After a TLS 1.2 resumption the SNI name is the one of the session's
/// full handshake, which OpenSSL keeps only when the servername callback accepted it
/// (`SSL_TLSEXT_ERR_OK`, as nginx's does); without such a callback, such a connection
/// counts as one without SNI.
/// Returns `KONG_CLIENT_TLS_MISDIRECTED` when it must be refused: answer 421 Misdirected
/// Request, as nginx does, so that the client retries on a connection of its own for that
/// name. A `host` nginx would refuse is misdirected. Returns `KONG_CLIENT_TLS_ERROR` with
/// a message stored in `*err` (when `err` is not NULL) for a NULL or client-side `ssl`.
///
/// # Safety
/// `ssl` is NULL or a live `SSL *`; `host` is NULL or readable for `host_len` bytes;
/// `err` is NULL or writable. `server` is only compared, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_check_request(
    ssl: *mut SSL,
    host: *const c_char,
    host_len: usize,
    server: *const c_void,
    err: *mut *const c_char,
) -> c_int {
    guard_connection(ssl, err, || {
        // SAFETY: forwarded from this function's contract.
        let ssl = unsafe { server_ssl(ssl) }?;
        // SAFETY: non-NULL `host` is readable for `host_len` bytes per the contract.
        let host = (!host.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(host.cast::<u8>(), host_len) });
        Ok(match verdict_reaches(ssl, host, server as usize)? {
            true => KONG_CLIENT_TLS_OK,
            false => KONG_CLIENT_TLS_MISDIRECTED,
        })
    })
}

/// The module's rule.
fn verdict_reaches(ssl: &mut SslRef, host: Option<&[u8]>, server: usize) -> Result<bool, Error> {
    let Some(requesting_server) = session::requesting_server(ssl) else {
        return Ok(true);
    };
    let same_server = requesting_server != 0 && requesting_server == server;
    let name = server_name_with_nul(ssl)?
        .and_then(|n| n.split_last())
        .map(|(_, n)| n);
    Ok(match (name, host) {
        // nginx's `$host` is already canonical: most requests end at the byte compare.
        (Some(name), Some(host)) => name == host || host::same_host(name, host),
        _ => same_server,
    })
}

/// The connection's server name as nginx stores it (canonical, lowercased), with a NUL
/// after it, kept with the connection. Worked out once the handshake is over; before
/// that, on each call, since in the client hello callback OpenSSL has not read it yet.
/// After a TLS 1.2 resumption OpenSSL answers with the name of the handshake that made
/// the session, the one its verdict was made for.
fn server_name_with_nul(ssl: &mut SslRef) -> Result<Option<&[u8]>, Error> {
    if !ssl.is_init_finished() || session::kept_server_name(ssl).is_none() {
        let name = ssl.servername_raw(NameType::HOST_NAME).and_then(|raw| {
            let mut name = Vec::new();
            host::lowercase_into(raw, &mut name)?;
            name.push(0);
            Some(name)
        });
        session::keep_server_name(ssl, name)?;
    }
    Ok(session::kept_server_name(ssl).flatten())
}

/// The server name this connection's client certificate was requested for, as nginx
/// stores it (lowercase, without port or trailing dot): `*name` points to it, NUL
/// terminated, and `*len` holds its length without the NUL. `*name` is NULL and `*len` 0
/// when the ClientHello named no server (or none nginx accepts as a host name): the
/// request was made in the listener's default server. Call it once the ClientHello has
/// been processed (from the certificate callback on).
///
/// The name stays valid until the next call of this function on `ssl` or `SSL_free`.
/// With it, a server applies the rule of `kong_client_tls_check_request` itself, or logs
/// which name a verdict belongs to.
///
/// Returns `KONG_CLIENT_TLS_OK`; `KONG_CLIENT_TLS_NOT_REQUESTED` (out-parameters
/// untouched) when the library requested no client certificate on this connection; or
/// `KONG_CLIENT_TLS_ERROR` with a message stored in `*err` (when `err` is not NULL) for a
/// NULL `ssl`, `name` or `len`, or a client-side `ssl`.
///
/// # Safety
/// `ssl` is NULL or a live `SSL *`; `name`, `len` and `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_get0_request_server_name(
    ssl: *mut SSL,
    name: *mut *const c_char,
    len: *mut usize,
    err: *mut *const c_char,
) -> c_int {
    guard_connection(ssl, err, || {
        // SAFETY: forwarded from this function's contract.
        let ssl = unsafe { server_ssl(ssl) }?;
        if name.is_null() || len.is_null() {
            return Err(NULL_OUT);
        }
        if session::requesting_server(ssl).is_none() {
            return Ok(KONG_CLIENT_TLS_NOT_REQUESTED);
        }
        let found = server_name_with_nul(ssl)?;
        // SAFETY: both out-pointers are non-NULL and writable per the contract.
        unsafe {
            *len = found.map_or(0, |n| n.len() - 1);
            *name = found.map_or(std::ptr::null(), |n| n.as_ptr().cast());
        }
        Ok(KONG_CLIENT_TLS_OK)
    })
}

const NULL_OUT: Error = Error::new(c"name and len must not be NULL");
