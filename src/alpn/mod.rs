//! `disable_http2_alpn`: this connection negotiates anything but `h2`, whatever ALPN
//! callback the server runs (nginx's own, for any `server {}` block SNI selects).
//!
//! We cannot replace or wrap nginx's ALPN callback, so we change what it sees: the `h2`
//! entries of the client's offered list are overwritten in place, in OpenSSL's buffer of
//! the received ClientHello, with a reserved GREASE identifier of the same length. The
//! handshake transcript was hashed from those bytes before we touch them, so Finished
//! messages still verify. Two per-`SSL` hooks cover every ClientHello:
//! - the first ClientHello is edited right here, called from the client hello callback
//!   (`SSL_client_hello_get0_ext` points into the message buffer);
//! - any later ClientHello (after a HelloRetryRequest, where nginx does not run its Lua
//!   handler again) is edited by the message callback, which OpenSSL calls for each
//!   received handshake message after hashing it and before processing it.
//!
//! A TLS 1.3 PSK binder covers the raw ClientHello, and OpenSSL verifies it before it
//! reads the ALPN list, with no callback in between: a resumption offer cannot survive
//! the edit. So when `h2` was hidden from a ClientHello that offers a PSK, its
//! `psk_key_exchange_modes` are overwritten too; OpenSSL then ignores the PSK without
//! checking its binder, and the handshake is a clean full one. TLS 1.2 resumption has no
//! binder and is kept.
//!
//! `docs/alpn.md` explains the OpenSSL paths in detail and what would break this.

pub mod select;
pub mod wire;

use std::ffi::{c_char, c_int};
use std::ops::Range;
use std::sync::OnceLock;

use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef};
use openssl_sys::SSL;

use crate::error::{guard_connection, Error, KONG_CLIENT_TLS_OK};
use crate::message;
use crate::ssl::{client_hello_extension, server_ssl_in_client_hello, Placement};

/// Per-connection marker, kept in the `SSL`'s ex_data and freed with it: its presence
/// is the switch.
struct H2Disabled;

fn state_index() -> Result<Index<Ssl, H2Disabled>, Error> {
    static INDEX: OnceLock<Option<Index<Ssl, H2Disabled>>> = OnceLock::new();
    INDEX
        .get_or_init(|| Ssl::new_ex_index().ok())
        .ok_or(Error::EX_DATA_INDEX)
}

/// The switch is on for `ssl` when it carries our state.
pub(crate) fn h2_disabled(ssl: &SslRef) -> bool {
    state_index().is_ok_and(|index| ssl.ex_data(index).is_some())
}

/// The extensions of one ClientHello that we may rewrite, each a writable byte slice
/// inside OpenSSL's buffer of the received message.
struct HelloExtensions<'a> {
    alpn: Option<&'a mut [u8]>,
    has_psk: bool,
    psk_modes: Option<&'a mut [u8]>,
}

impl HelloExtensions<'_> {
    /// Hides `h2` from the offered protocols and, when that changed anything and a PSK is
    /// offered, turns the resumption offer into a full handshake. Malformed extensions are
    /// left alone: OpenSSL rejects them with a decode_error alert on its own.
    fn refuse_h2(self) {
        let Some(alpn) = self.alpn else { return };
        if matches!(wire::hide_h2(alpn), Ok(Some(_))) && self.has_psk {
            if let Some(modes) = self.psk_modes {
                let _ = wire::disable_psk_modes(modes);
            }
        }
    }
}

/// Makes this server-side connection negotiate anything but `h2` through ALPN.
///
/// Call it from the client hello callback (`SSL_CTX_set_client_hello_cb`; nginx's
/// `ssl_client_hello_by_lua*`), or before the handshake starts. A client offering
/// `h2,http/1.1` then gets `http/1.1` from whatever ALPN callback the server uses; a
/// client offering only `h2` gets a `no_application_protocol` alert (when the server's
/// callback, like nginx's, fails on no overlap); a client offering no ALPN is unaffected.
/// It holds across HelloRetryRequest and SNI context switches. Other connections are
/// unaffected.
///
/// A TLS 1.3 resumption offered together with `h2` becomes a full handshake (the PSK
/// binder covers the bytes we change); TLS 1.2 resumptions are kept.
///
/// It installs this `SSL`'s message callback, replacing any set on the `SSL` or
/// inherited from its `SSL_CTX` (nginx sets none).
///
/// Returns `KONG_CLIENT_TLS_OK`, or `KONG_CLIENT_TLS_ERROR` with a message stored in `*err`
/// (when `err` is not NULL; see the header's note on errors).
///
/// # Safety
/// `ssl` is NULL or a live `SSL *`; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_disable_http2_alpn(
    ssl: *mut SSL,
    err: *mut *const c_char,
) -> c_int {
    guard_connection(ssl, err, || {
        // SAFETY: forwarded from this function's contract.
        let (ssl, placement) = unsafe { server_ssl_in_client_hello(ssl) }?;
        let index = state_index()?;
        if ssl.ex_data(index).is_none() {
            ssl.set_ex_data(index, H2Disabled);
        }
        message::install(ssl);
        if placement == Placement::ClientHello {
            // SAFETY: in the client hello callback of a live SSL.
            let hello = unsafe {
                HelloExtensions {
                    alpn: client_hello_extension(ssl, wire::EXTENSION_ALPN),
                    has_psk: client_hello_extension(ssl, wire::EXTENSION_PRE_SHARED_KEY).is_some(),
                    psk_modes: client_hello_extension(ssl, wire::EXTENSION_PSK_KEY_EXCHANGE_MODES),
                }
            };
            hello.refuse_h2();
        }
        Ok(KONG_CLIENT_TLS_OK)
    })
}

/// Hides `h2` in a ClientHello received after the first one, when the switch is on; the
/// message callback hands it over after hashing it and before OpenSSL processes it.
pub(crate) fn on_client_hello(ssl: &SslRef, message: &mut [u8]) {
    if !h2_disabled(ssl) {
        return;
    }
    let Ok([alpn, psk, psk_modes]) = wire::find_extensions(
        message,
        [
            wire::EXTENSION_ALPN,
            wire::EXTENSION_PRE_SHARED_KEY,
            wire::EXTENSION_PSK_KEY_EXCHANGE_MODES,
        ],
    ) else {
        return;
    };
    let (alpn, psk_modes) = disjoint_mut(message, alpn, psk_modes);
    HelloExtensions {
        alpn,
        has_psk: psk.is_some(),
        psk_modes,
    }
    .refuse_h2();
}

/// Two sub-slices of one buffer; extensions never overlap, and `None` if they would.
fn disjoint_mut(
    buf: &mut [u8],
    a: Option<Range<usize>>,
    b: Option<Range<usize>>,
) -> (Option<&mut [u8]>, Option<&mut [u8]>) {
    match (a, b) {
        (Some(a), Some(b)) if a.end <= b.start => {
            let (head, tail) = buf.split_at_mut(b.start);
            (head.get_mut(a), tail.get_mut(..b.len()))
        }
        (Some(a), Some(b)) if b.end <= a.start => {
            let (head, tail) = buf.split_at_mut(a.start);
            (tail.get_mut(..a.len()), head.get_mut(b))
        }
        (Some(a), None) => (buf.get_mut(a), None),
        (None, Some(b)) => (None, buf.get_mut(b)),
        _ => (None, None),
    }
}
