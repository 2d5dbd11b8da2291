//! Which later connections may resume a connection's session.
//!
//! Every decision lives in one per-`SSL` [`SessionState`] (ex_data) and is carried out by
//! three hooks that OpenSSL calls on that connection alone:
//! - the not-resumable-session callback, which runs on every full handshake once the
//!   cipher is chosen, after the SNI switch and the certificate callback, before the
//!   ServerHello: it builds the verify store and CA list of `request_client_certificate`
//!   (only a full handshake needs them, so a resumed connection never pays for them) and
//!   applies the client verification (nginx's SNI switch replaces the verify mode, depth
//!   and store of the connection), and marks the session not resumable when it must be;
//! - the verify callback of `request_client_certificate`, which never fails the handshake
//!   and shortens the new session's lifetime so that it ends before any certificate it
//!   verified expires;
//! - the message callback on the outgoing ServerHello of a resumed TLS 1.3 connection,
//!   which keeps the session's end fixed: the NewSessionTicket that follows restarts a
//!   session's clock, and would otherwise carry a verdict past the certificate's expiry.
//!
//! A session that must never be resumed is closed on every path: the not-resumable
//! callback empties its TLS 1.2 session ID (so no cache stores it) and drops a TLS 1.2
//! ticket; `SSL_OP_NO_TICKET` keeps the ticket extension out of the ServerHello; zero TLS
//! 1.3 tickets are sent; and its session id context becomes one no connection has.

use std::ffi::{c_char, c_int, c_long};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509Name, X509};
use openssl_sys::{SSL, SSL_OP_NO_TICKET, SSL_VERIFY_PEER, X509_STORE_CTX};

use crate::binding;
use crate::error::{guard_connection, Error, KONG_CLIENT_TLS_OK};
use crate::message;
use crate::ssl::server_ssl_before_server_hello;
use crate::sys::{
    SSL_SESSION_set1_id, SSL_SESSION_set1_id_context, SSL_SESSION_set_time,
    SSL_SESSION_set_timeout, SSL_set_not_resumable_session_callback, SSL_set_options,
    SSL_set_session_id_context, SSL_set_verify_depth, X509_get0_notAfter,
};

/// The verify depth `request_client_certificate` uses, as Kong does.
pub(crate) const VERIFY_DEPTH: c_int = 0;

/// Seconds a session's end is kept ahead of the first certificate expiry. A TLS 1.3
/// NewSessionTicket restarts the session's clock after verification (within the same
/// second, or the next one: session times have a one-second resolution).
const EXPIRY_MARGIN: c_long = 2;

/// What the library decided about one connection's session.
#[derive(Default)]
pub(crate) struct SessionState {
    /// Set by `request_client_certificate`: verify the client against these CA
    /// certificates, or against the context's store when `None`. Every full handshake
    /// builds the store and the CA list from them; a resumption never needs them.
    client_verification: Option<Option<Vec<X509>>>,
    /// Set when the verification was decided at ClientHello time: the digest of its CA
    /// set; the connection's session id context then holds the full binding.
    bound_ca_set: Option<[u8; binding::LEN]>,
    /// Set by `disable_session_reuse`, and by a client-certificate request that cannot be
    /// bound: the session must never be resumed.
    reuse_disabled: bool,
    /// The caller's tag of the virtual server whose code requested the certificate
    /// (nginx: its `server {}` configuration), 0 when none was given; see [`crate::misdirected`].
    requesting_server: usize,
    /// The connection's server name as nginx stores it, NUL-terminated, for the request
    /// checks and for `kong_client_tls_get0_request_server_name`, whose pointer must
    /// outlive the call (`None`: not worked out yet; `Some(None)`: no usable name).
    server_name: Option<Option<Vec<u8>>>,
}

fn state_index() -> Result<Index<Ssl, SessionState>, Error> {
    static INDEX: OnceLock<Option<Index<Ssl, SessionState>>> = OnceLock::new();
    INDEX
        .get_or_init(|| Ssl::new_ex_index().ok())
        .ok_or(Error::EX_DATA_INDEX)
}

/// The connection's state, created empty on first use, with the not-resumable callback
/// that acts on it installed.
fn state_mut(ssl: &mut SslRef) -> Result<&mut SessionState, Error> {
    let index = state_index()?;
    if ssl.ex_data(index).is_none() {
        ssl.set_ex_data(index, SessionState::default());
        // SAFETY: `ssl` is live; the callback only reads this SSL's ex_data.
        unsafe { SSL_set_not_resumable_session_callback(ssl.as_ptr(), Some(on_full_handshake)) };
    }
    ssl.ex_data_mut(index).ok_or(Error::EX_DATA_INDEX)
}

/// The connection's state, if the library keeps one for it.
fn state(ssl: &SslRef) -> Option<&SessionState> {
    ssl.ex_data(state_index().ok()?)
}

/// The tag of the virtual server that requested a client certificate on this connection
/// (0: no tag), or `None` when the library requested none.
pub(crate) fn requesting_server(ssl: &SslRef) -> Option<usize> {
    state(ssl)
        .filter(|s| s.client_verification.is_some())
        .map(|s| s.requesting_server)
}

/// The server name kept with the connection, once worked out (see
/// [`crate::misdirected`]): NUL-terminated, or `None` inside for no usable name.
pub(crate) fn kept_server_name(ssl: &SslRef) -> Option<Option<&[u8]>> {
    let name = state(ssl)?.server_name.as_ref()?;
    Some(name.as_deref())
}

/// Keeps `name` (NUL-terminated) as the connection's server name; an equal one already
/// kept stays, so that pointers handed out to it stay valid.
pub(crate) fn keep_server_name(ssl: &mut SslRef, name: Option<Vec<u8>>) -> Result<(), Error> {
    let kept = &mut state_mut(ssl)?.server_name;
    if kept.as_ref() != Some(&name) {
        *kept = Some(name);
    }
    Ok(())
}

/// The CA set digest this connection's session is bound to, if it is.
pub(crate) fn bound_ca_set(ssl: &SslRef) -> Option<[u8; binding::LEN]> {
    state(ssl).and_then(|s| s.bound_ca_set)
}

/// Makes this server-side connection's session impossible to resume.
///
/// Call it from the client hello callback or the certificate callback
/// (`SSL_CTX_set_cert_cb`; nginx's `ssl_certificate_by_lua*`), or before the handshake.
/// Afterwards the handshake sends no TLS 1.2 session ID, no TLS 1.2 session ticket and no
/// TLS 1.3 ticket, and the session enters neither the internal session cache nor an
/// external one fed by `SSL_CTX_sess_set_new_cb`. Other connections are unaffected.
///
/// `kong_client_tls_request_client_certificate` does the same by itself unless it binds
/// the session (see there); this call remains for Kong compatibility and to opt out of
/// resumption explicitly.
///
/// It installs this `SSL`'s not-resumable-session callback
/// (`SSL_set_not_resumable_session_callback`), replacing any set on the `SSL`.
///
/// Returns `KONG_CLIENT_TLS_OK`, or `KONG_CLIENT_TLS_ERROR` with a message stored in `*err`
/// (when `err` is not NULL; see the header's note on errors).
///
/// # Safety
/// `ssl` is NULL or a live `SSL *`; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_disable_session_reuse(
    ssl: *mut SSL,
    err: *mut *const c_char,
) -> c_int {
    guard_connection(ssl, err, || {
        // SAFETY: forwarded from this function's contract.
        let ssl = unsafe { server_ssl_before_server_hello(ssl) }?;
        disable_reuse(ssl)?;
        Ok(KONG_CLIENT_TLS_OK)
    })
}

/// The settings of `disable_session_reuse`, for every caller in the crate.
pub(crate) fn disable_reuse(ssl: &mut SslRef) -> Result<(), Error> {
    ssl.set_num_tickets(0)?;
    state_mut(ssl)?.reuse_disabled = true;
    // SAFETY: `ssl` is live.
    unsafe { SSL_set_options(ssl.as_ptr(), SSL_OP_NO_TICKET) };
    Ok(())
}

/// Asks for and verifies the client's certificate on this connection against `cas` (the
/// context's store when `None`), from the next full handshake's not-resumable callback on.
///
/// Until that callback has run, the connection refuses any client certificate: should
/// the callback be replaced, verification fails closed instead of trusting the context's
/// store.
///
/// `server` is the caller's tag of the virtual server making the request (0: none).
pub(crate) fn verify_client(
    ssl: &mut SslRef,
    cas: Option<Vec<X509>>,
    server: usize,
) -> Result<(), Error> {
    let state = state_mut(ssl)?;
    state.client_verification = Some(cas);
    state.requesting_server = server;
    // SAFETY: `ssl` is live; the callback is a plain function.
    unsafe {
        openssl_sys::SSL_set_verify(ssl.as_ptr(), SSL_VERIFY_PEER, Some(refuse_until_applied));
        SSL_set_verify_depth(ssl.as_ptr(), VERIFY_DEPTH);
    }
    Ok(())
}

extern "C" fn refuse_until_applied(_preverify_ok: c_int, _ctx: *mut X509_STORE_CTX) -> c_int {
    0
}

/// The verify store and the acceptable-CA list of `cas`.
fn build_verification(cas: &[X509]) -> Result<(X509Store, Stack<X509Name>), Error> {
    let mut store = X509StoreBuilder::new()?;
    let mut names = Stack::<X509Name>::new()?;
    for cert in cas {
        store.add_cert(cert.clone())?;
        names.push(cert.subject_name().to_owned()?)?;
    }
    Ok((store.build(), names))
}

/// Lets this connection resume only sessions bound to `sid_ctx`, and binds its own.
pub(crate) fn bind(
    ssl: &mut SslRef,
    sid_ctx: &[u8; binding::LEN],
    ca_set: [u8; binding::LEN],
) -> Result<(), Error> {
    // SAFETY: `ssl` is live; OpenSSL copies the 32 bytes (SSL_MAX_SID_CTX_LENGTH).
    let ok = unsafe { SSL_set_session_id_context(ssl.as_ptr(), sid_ctx.as_ptr(), 32) };
    if ok != 1 {
        return Err(Error::OPENSSL);
    }
    state_mut(ssl)?.bound_ca_set = Some(ca_set);
    message::install(ssl);
    Ok(())
}

fn apply_verification(ssl: &SslRef, store: Option<&X509Store>) {
    // SAFETY: `ssl` is live; the callback is a plain function; `set1` takes OpenSSL's own
    // reference to the store.
    unsafe {
        openssl_sys::SSL_set_verify(ssl.as_ptr(), SSL_VERIFY_PEER, Some(verify_callback));
        SSL_set_verify_depth(ssl.as_ptr(), VERIFY_DEPTH);
        if let Some(store) = store {
            openssl_sys::SSL_ctrl(
                ssl.as_ptr(),
                openssl_sys::SSL_CTRL_SET_VERIFY_CERT_STORE,
                1,
                store.as_ptr().cast(),
            );
        }
    }
}

/// The not-resumable-session callback: OpenSSL calls it on full handshakes only, once it
/// has chosen the cipher, after the servername and certificate callbacks, before it
/// writes the ServerHello and the CertificateRequest. Returns 1 for "not resumable".
unsafe extern "C" fn on_full_handshake(ssl: *mut SSL, _is_forward_secure: c_int) -> c_int {
    let not_resumable = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: OpenSSL passes the live SSL whose handshake is running.
        let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
        let Some(state) = state(ssl) else {
            return true;
        };
        let reuse_disabled = state.reuse_disabled;
        // On failure to build (no memory) the refusing verify callback stays: fail closed.
        match state
            .client_verification
            .as_ref()
            .map(|cas| cas.as_deref().map(build_verification).transpose())
        {
            Some(Ok(Some((store, names)))) => {
                apply_verification(ssl, Some(&store));
                ssl.set_client_ca_list(names);
            }
            Some(Ok(None)) => apply_verification(ssl, None),
            Some(Err(_)) | None => {}
        }
        reuse_disabled
    }))
    .unwrap_or(true);
    if not_resumable {
        // SAFETY: the session of a running full handshake exists; a zero-length ID needs
        // no source bytes; the never-resumable context is 32 bytes.
        unsafe {
            let session = openssl_sys::SSL_get_session(ssl);
            if !session.is_null() {
                let empty = [0u8; 1];
                SSL_SESSION_set1_id(session, empty.as_ptr(), 0);
                SSL_SESSION_set1_id_context(session, binding::NEVER_RESUMABLE.as_ptr(), 32);
            }
        }
    }
    c_int::from(not_resumable)
}

/// The verify callback of `request_client_certificate`: never fails the handshake,
/// exactly like lua-nginx-module's and nginx's `optional_no_ca` (the outcome stays
/// readable through `SSL_get_verify_result`). It ends the new session before the
/// certificate it is shown expires, so no resumption reports a verdict for a certificate
/// that a full handshake would call expired.
pub(crate) extern "C" fn verify_callback(_preverify_ok: c_int, ctx: *mut X509_STORE_CTX) -> c_int {
    // SAFETY: OpenSSL passes the live store context of the verification it runs.
    let _ = catch_unwind(|| unsafe { end_session_before_expiry(ctx) });
    1
}

/// # Safety
/// `ctx` is the live store context of a verification OpenSSL runs for an `SSL`.
unsafe fn end_session_before_expiry(ctx: *mut X509_STORE_CTX) {
    // SAFETY: per the contract; every pointer read is checked before use, and the
    // session of a handshake that verifies a certificate exists and is not yet cached.
    unsafe {
        let ssl = openssl_sys::X509_STORE_CTX_get_ex_data(
            ctx,
            openssl_sys::SSL_get_ex_data_X509_STORE_CTX_idx(),
        )
        .cast::<SSL>();
        let cert = openssl_sys::X509_STORE_CTX_get_current_cert(ctx);
        if ssl.is_null() || cert.is_null() {
            return;
        }
        let session = openssl_sys::SSL_get_session(ssl);
        if session.is_null() {
            return;
        }
        let not_after = X509_get0_notAfter(cert);
        let (mut days, mut seconds) = (0, 0);
        let left = if !not_after.is_null()
            && openssl_sys::ASN1_TIME_diff(&mut days, &mut seconds, std::ptr::null(), not_after)
                == 1
        {
            c_long::from(days) * 86_400 + c_long::from(seconds)
        } else {
            0
        };
        // Counted from now rather than from the session's birth: a TLS 1.3 ticket restarts
        // the clock at about now, and a TLS 1.2 session, born earlier, only ends earlier.
        let limit = (left - EXPIRY_MARGIN).max(1);
        if limit < openssl_sys::SSL_SESSION_get_timeout(session) {
            SSL_SESSION_set_timeout(session, limit);
        }
    }
}

/// Called by the message callback for each ServerHello this connection sends. On a
/// resumed TLS 1.3 connection, the NewSessionTicket to come copies the session and
/// restarts its clock; restarting it now, with the time left less a second (the ticket's
/// clock may read the next second), keeps the end of a bound session no later than its
/// full handshake put it. With a second or less left, no ticket is issued.
pub(crate) fn on_server_hello(ssl: &mut SslRef) {
    if bound_ca_set(ssl).is_none()
        || !ssl.session_reused()
        || ssl.version2() != Some(openssl::ssl::SslVersion::TLS1_3)
    {
        return;
    }
    // SAFETY: a resumed connection has its session; setting its time and timeout keeps
    // its end (OpenSSL re-sorts a cached session under the cache's lock).
    unsafe {
        let session = openssl_sys::SSL_get_session(ssl.as_ptr());
        if session.is_null() {
            return;
        }
        let now = libc::time(std::ptr::null_mut()) as c_long;
        let end = openssl_sys::SSL_SESSION_get_time(session)
            + openssl_sys::SSL_SESSION_get_timeout(session);
        let left = end - now - 1;
        if left > 0 {
            SSL_SESSION_set_time(session, now);
            SSL_SESSION_set_timeout(session, left);
            return;
        }
    }
    let _ = ssl.set_num_tickets(0);
}
