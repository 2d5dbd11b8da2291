//! `request_client_certificate`: ask for a client certificate without requiring one.
//!
//! Matches what lua-resty-core's `ngx.ssl.verify_client(ca_certs, 0)` does, which is what
//! Kong 3.9 calls: verify mode PEER with a callback that never fails the handshake (the
//! outcome is read later through `SSL_get_verify_result`, i.e. nginx's
//! `$ssl_client_verify`), verify depth 0, and, when CA certificates are given, those
//! certificates as the verify store and their subjects as the acceptable-CA list.

use std::ffi::{c_char, c_int};

use foreign_types::ForeignTypeRef;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509Name, X509Ref};
use openssl_sys::{stack_st_X509, OPENSSL_STACK, SSL, SSL_VERIFY_PEER, X509_STORE_CTX};

use crate::error::{guard, Error, KONG_CLIENT_TLS_OK};
use crate::ssl::server_ssl_before_server_hello;

const EMPTY_CA_LIST: Error = Error(c"ca_certs is an empty certificate stack");
const NULL_CA_ENTRY: Error = Error(c"ca_certs contains a NULL certificate");
const CA_STORE: Error = Error(c"cannot build the verify store from ca_certs");

/// Requests a client certificate on a server-side connection without requiring it.
///
/// Call it from the client hello callback or the certificate callback
/// (`SSL_CTX_set_cert_cb`; nginx's `ssl_certificate_by_lua*`), or before the handshake.
/// It sets verify mode `SSL_VERIFY_PEER` with a verify callback that always accepts, and
/// verify depth 0. When `ca_certs` is not NULL, its certificates become this connection's
/// verify store and their subject names are sent as the acceptable-CA list of the
/// CertificateRequest. With `ca_certs` NULL, no CA list is sent and the context's store
/// is used. The verification outcome is available after the handshake through
/// `SSL_get_verify_result()`.
///
/// Ownership: the caller keeps `ca_certs`; the library takes its own references. Calling
/// it again on the same connection replaces the previous store and CA list.
///
/// Returns `KONG_CLIENT_TLS_OK`, or `KONG_CLIENT_TLS_ERROR` with a static message stored
/// in `*err` (when `err` is not NULL). On error the connection is left unchanged.
///
/// # Safety
/// `ssl` is NULL or a live `SSL *`; `ca_certs` is NULL or a live `STACK_OF(X509) *`
/// whose entries are NULL or live `X509 *`; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_request_client_certificate(
    ssl: *mut SSL,
    ca_certs: *const stack_st_X509,
    err: *mut *const c_char,
) -> c_int {
    guard(err, || {
        // SAFETY: forwarded from this function's contract.
        let ssl = unsafe { server_ssl_before_server_hello(ssl) }?;
        // SAFETY: forwarded from this function's contract.
        let ca = unsafe { CaCertificates::from_stack(ca_certs) }?;
        // SAFETY: `ssl` is live; the callback is a plain function with no state.
        unsafe {
            openssl_sys::SSL_set_verify(ssl.as_ptr(), SSL_VERIFY_PEER, Some(accept_any_certificate))
        };
        ssl.param_mut().set_depth(0);
        if let Some(ca) = ca {
            ssl.set_verify_cert_store(ca.store)?;
            ssl.set_client_ca_list(ca.names);
        }
        Ok(KONG_CLIENT_TLS_OK)
    })
}

/// The verify callback: never fails the handshake, exactly like lua-nginx-module's and
/// nginx's `optional_no_ca`; the result stays readable through `SSL_get_verify_result`.
extern "C" fn accept_any_certificate(_preverify_ok: c_int, _ctx: *mut X509_STORE_CTX) -> c_int {
    1
}

/// What a `STACK_OF(X509)` of CA certificates becomes for one connection.
struct CaCertificates {
    store: X509Store,
    names: Stack<X509Name>,
}

impl CaCertificates {
    /// Validates every entry before building anything, so a bad stack changes nothing.
    ///
    /// # Safety
    /// `stack` is NULL or a live `STACK_OF(X509) *` whose entries are NULL or live.
    unsafe fn from_stack(stack: *const stack_st_X509) -> Result<Option<Self>, Error> {
        if stack.is_null() {
            return Ok(None);
        }
        // SAFETY: per the contract, `stack` is a live stack of `X509 *`.
        let certs = unsafe { StackEntries::new(stack) };
        // Check every entry first, so a bad stack changes nothing.
        if certs.len() == 0 {
            return Err(EMPTY_CA_LIST);
        }
        if certs.clone().any(|cert| cert.is_none()) {
            return Err(NULL_CA_ENTRY);
        }
        let mut store = X509StoreBuilder::new().map_err(|_| CA_STORE)?;
        let mut names = Stack::new().map_err(|_| CA_STORE)?;
        for cert in certs.flatten() {
            store.add_cert(cert.to_owned()).map_err(|_| CA_STORE)?;
            names
                .push(cert.subject_name().to_owned().map_err(|_| CA_STORE)?)
                .map_err(|_| CA_STORE)?;
        }
        Ok(Some(CaCertificates {
            store: store.build(),
            names,
        }))
    }
}

/// The entries of a `STACK_OF(X509)`, NULL ones included (which `StackRef` cannot hold).
#[derive(Clone)]
struct StackEntries<'a> {
    stack: *const OPENSSL_STACK,
    next: c_int,
    len: c_int,
    _certs: std::marker::PhantomData<&'a X509Ref>,
}

impl StackEntries<'_> {
    /// # Safety
    /// `stack` is a live `STACK_OF(X509) *` whose entries are NULL or live for `'a`.
    unsafe fn new(stack: *const stack_st_X509) -> Self {
        let stack = stack.cast::<OPENSSL_STACK>();
        // SAFETY: `stack` is live.
        let len = unsafe { openssl_sys::OPENSSL_sk_num(stack) }.max(0);
        StackEntries {
            stack,
            next: 0,
            len,
            _certs: std::marker::PhantomData,
        }
    }

    fn len(&self) -> c_int {
        self.len - self.next
    }
}

impl<'a> Iterator for StackEntries<'a> {
    type Item = Option<&'a X509Ref>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.len {
            return None;
        }
        // SAFETY: `next` is within the stack's length; entries are NULL or live.
        let cert = unsafe { openssl_sys::OPENSSL_sk_value(self.stack, self.next) };
        self.next += 1;
        // SAFETY: non-NULL entries are live `X509 *` per `new`'s contract.
        Some((!cert.is_null()).then(|| unsafe { X509Ref::from_ptr(cert.cast()) }))
    }
}
