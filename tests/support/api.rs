//! The library's session calls as the tests make them: a `STACK_OF(X509)` as callers hand
//! it in, and `Result`s instead of status codes and error pointers.

use std::ffi::{c_char, CStr};
use std::ptr;

use foreign_types::ForeignType;
use kong_client_tls::kong_client_tls_disable_session_reuse;
use kong_client_tls::kong_client_tls_request_client_certificate;
use kong_client_tls::{KONG_CLIENT_TLS_ERROR, KONG_CLIENT_TLS_OK};
use openssl::x509::X509;
use openssl_sys::{stack_st_X509, SSL};

/// A `STACK_OF(X509)` the way a caller hands it in (lua-resty-core's parse_pem_cert).
/// The stack does not own its entries; the `Vec` keeps them alive as long as it lives.
pub struct CertStack(
    *mut openssl_sys::OPENSSL_STACK,
    #[allow(dead_code)] Vec<X509>,
);

impl CertStack {
    pub fn new(certs: &[&X509]) -> CertStack {
        // SAFETY: plain constructor.
        let stack = unsafe { openssl_sys::OPENSSL_sk_new_null() };
        assert!(!stack.is_null());
        let owned: Vec<X509> = certs.iter().map(|c| (*c).clone()).collect();
        for cert in &owned {
            // SAFETY: live stack, live cert (kept alive by `owned`).
            assert!(unsafe { openssl_sys::OPENSSL_sk_push(stack, cert.as_ptr().cast()) } > 0);
        }
        CertStack(stack, owned)
    }
    pub fn push_null(&mut self) {
        // SAFETY: live stack; a NULL entry is exactly what we want to feed the library.
        unsafe { openssl_sys::OPENSSL_sk_push(self.0, ptr::null()) };
    }
    pub fn as_ptr(&self) -> *const stack_st_X509 {
        self.0.cast()
    }
}

impl Drop for CertStack {
    fn drop(&mut self) {
        // SAFETY: we own the stack (not its entries, owned by `self.1`).
        unsafe { openssl_sys::OPENSSL_sk_free(self.0) };
    }
}

pub fn message(err: *const c_char) -> String {
    assert!(!err.is_null(), "an error must come with a message");
    // SAFETY: the library hands out static NUL-terminated strings.
    unsafe { CStr::from_ptr(err) }.to_str().unwrap().to_owned()
}

pub fn request_client_certificate(ssl: *mut SSL, ca: Option<&CertStack>) -> Result<(), String> {
    let mut err = ptr::null();
    let ca = ca.map_or(ptr::null(), CertStack::as_ptr);
    // SAFETY: pointers are NULL or live.
    match unsafe { kong_client_tls_request_client_certificate(ssl, ca, &mut err) } {
        KONG_CLIENT_TLS_OK => Ok(()),
        KONG_CLIENT_TLS_ERROR => Err(message(err)),
        other => panic!("unexpected status {other}"),
    }
}

pub fn disable_session_reuse(ssl: *mut SSL) -> Result<(), String> {
    let mut err = ptr::null();
    // SAFETY: pointers are NULL or live.
    match unsafe { kong_client_tls_disable_session_reuse(ssl, &mut err) } {
        KONG_CLIENT_TLS_OK => Ok(()),
        KONG_CLIENT_TLS_ERROR => Err(message(err)),
        other => panic!("unexpected status {other}"),
    }
}
