//! An ALPN select callback for C servers that own their `SSL_CTX` and want the
//! `disable_http2_alpn` switch honoured without nginx.
//!
//! OpenSSL's contract for this callback has no error channel but the alert, so every way
//! of not choosing (no overlap, a malformed list, a bad argument, a caught panic) ends the
//! handshake with `no_application_protocol`.

use std::ffi::{c_int, c_uchar, c_uint, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use foreign_types::ForeignTypeRef;
use openssl::ssl::SslRef;
use openssl_sys::{SSL, SSL_TLSEXT_ERR_ALERT_FATAL, SSL_TLSEXT_ERR_OK};

use super::h2_disabled;
use super::wire::{self, ProtocolList};

/// A server's ALPN protocols in wire format (each name preceded by its length byte), in
/// preference order, e.g. `"\x02h2\x08http/1.1"`.
#[repr(C)]
pub struct KongClientTlsProtocols {
    /// The first byte of the list.
    pub data: *const c_uchar,
    /// The list's length in bytes.
    pub len: usize,
}

/// Why no protocol was selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoProtocol {
    /// `ssl`, `out`, `outlen` or the client's list is NULL, or `arg` holds no list.
    BadArgument,
    /// The server's or the client's list is not a well-formed `ProtocolNameList`.
    Malformed,
    /// The client offered none of the server's protocols (`h2` excluded when disabled).
    NoOverlap,
}

/// The first of `server`'s protocols that `client` offers (server preference, like
/// nginx), skipping `h2` when `no_h2`. The slice returned points into `client`, as
/// OpenSSL requires.
fn choose<'c>(server: &[u8], client: &'c [u8], no_h2: bool) -> Result<&'c [u8], NoProtocol> {
    let server = ProtocolList::parse(server).map_err(|_| NoProtocol::Malformed)?;
    let client = ProtocolList::parse(client).map_err(|_| NoProtocol::Malformed)?;
    server
        .names()
        .filter(|wanted| !(no_h2 && *wanted == wire::H2))
        .find_map(|wanted| client.find(wanted))
        .ok_or(NoProtocol::NoOverlap)
}

/// An ALPN select callback for C servers that own their `SSL_CTX`:
/// `SSL_CTX_set_alpn_select_cb(ctx, kong_client_tls_alpn_select_cb, &protocols)` with
/// `protocols` a `kong_client_tls_protocols` that outlives the context.
///
/// It picks the first of the server's protocols that the client offered (server
/// preference, like nginx), skipping `h2` on connections where
/// `kong_client_tls_disable_http2_alpn` was called. No common protocol, or a malformed
/// list, ends the handshake with a `no_application_protocol` alert.
///
/// # Safety
/// OpenSSL's contract for ALPN select callbacks; `arg` points to a live
/// `kong_client_tls_protocols` whose `data` holds `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_alpn_select_cb(
    ssl: *mut SSL,
    out: *mut *const c_uchar,
    outlen: *mut c_uchar,
    client: *const c_uchar,
    client_len: c_uint,
    arg: *mut c_void,
) -> c_int {
    let selected = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded from this function's contract.
        unsafe { select(ssl, client, client_len, arg) }
    }));
    match selected {
        Ok(Ok(chosen)) if !out.is_null() && !outlen.is_null() => {
            // SAFETY: both out-pointers are non-NULL and writable per OpenSSL's contract;
            // `chosen` points into the client's list, which OpenSSL keeps alive, and a
            // protocol name is at most 255 bytes long.
            unsafe {
                *out = chosen.as_ptr();
                *outlen = chosen.len() as c_uchar;
            }
            SSL_TLSEXT_ERR_OK
        }
        _ => SSL_TLSEXT_ERR_ALERT_FATAL,
    }
}

/// The callback's decision, from its raw arguments.
///
/// # Safety
/// As for [`kong_client_tls_alpn_select_cb`].
unsafe fn select<'c>(
    ssl: *mut SSL,
    client: *const c_uchar,
    client_len: c_uint,
    arg: *mut c_void,
) -> Result<&'c [u8], NoProtocol> {
    // SAFETY: `arg` is NULL or points to a live `kong_client_tls_protocols`.
    let server =
        unsafe { arg.cast::<KongClientTlsProtocols>().as_ref() }.filter(|p| !p.data.is_null());
    let (Some(server), false, false) = (server, ssl.is_null(), client.is_null()) else {
        return Err(NoProtocol::BadArgument);
    };
    // SAFETY: non-NULL; OpenSSL passes a live SSL and `client_len` readable bytes at
    // `client`, and the caller's `server.data` holds `server.len` bytes.
    let (ssl, server, client) = unsafe {
        (
            SslRef::from_ptr(ssl),
            std::slice::from_raw_parts(server.data, server.len),
            std::slice::from_raw_parts(client, client_len as usize),
        )
    };
    choose(server, client, h2_disabled(ssl))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &[u8] = b"\x02h2\x08http/1.1";

    #[test]
    fn the_server_preference_wins_and_the_choice_points_into_the_client_list() {
        let client = b"\x08http/1.1\x02h2";
        let chosen = choose(SERVER, client, false).unwrap();
        assert_eq!(chosen, b"h2");
        assert_eq!(chosen.as_ptr(), client[10..].as_ptr());
    }

    #[test]
    fn h2_is_skipped_only_when_disabled() {
        assert_eq!(
            choose(SERVER, b"\x02h2\x08http/1.1", true),
            Ok(&b"http/1.1"[..])
        );
        assert_eq!(choose(SERVER, b"\x02h2", true), Err(NoProtocol::NoOverlap));
        assert_eq!(choose(SERVER, b"\x02h2", false), Ok(&b"h2"[..]));
    }

    #[test]
    fn malformed_lists_select_nothing() {
        for bad in [&b""[..], b"\x00", b"\x05h2", b"\x02h2\x00"] {
            assert_eq!(
                choose(SERVER, bad, false),
                Err(NoProtocol::Malformed),
                "{bad:?}"
            );
            assert_eq!(
                choose(bad, b"\x02h2", false),
                Err(NoProtocol::Malformed),
                "{bad:?}"
            );
        }
    }
}
