//! The library's connection calls as the tests make them: a `STACK_OF(X509)` as callers
//! hand it in, and `Result`s instead of status codes and error pointers.

use std::ffi::{c_char, CStr};
use std::ptr;

use foreign_types::ForeignType;
use kong_client_tls::kong_client_tls_disable_session_reuse;
use kong_client_tls::{
    kong_client_tls_check_request, kong_client_tls_get0_request_server_name,
    kong_client_tls_request_client_certificate,
    kong_client_tls_request_client_certificate_for_server,
};
use kong_client_tls::{
    KONG_CLIENT_TLS_ERROR, KONG_CLIENT_TLS_MISDIRECTED, KONG_CLIENT_TLS_NOT_REQUESTED,
    KONG_CLIENT_TLS_OK,
};
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

/// `kong_client_tls_request_client_certificate_for_server` with the tag `server`.
pub fn request_client_certificate_for_server(
    ssl: *mut SSL,
    ca: Option<&CertStack>,
    server: usize,
) -> Result<(), String> {
    let mut err = ptr::null();
    let ca = ca.map_or(ptr::null(), CertStack::as_ptr);
    // SAFETY: pointers are NULL or live; the tag is only compared.
    let rc = unsafe {
        kong_client_tls_request_client_certificate_for_server(ssl, ca, server as *const _, &mut err)
    };
    match rc {
        KONG_CLIENT_TLS_OK => Ok(()),
        KONG_CLIENT_TLS_ERROR => Err(message(err)),
        other => panic!("unexpected status {other}"),
    }
}

/// `kong_client_tls_check_request`: `Ok(true)` when the request may see the verdict,
/// `Ok(false)` when it is misdirected.
pub fn check_request(ssl: *mut SSL, host: Option<&[u8]>, server: usize) -> Result<bool, String> {
    let mut err = ptr::null();
    let (ptr, len) = host.map_or((ptr::null(), 0), |h| (h.as_ptr().cast(), h.len()));
    // SAFETY: pointers are NULL or live; `host` is readable for `len` bytes.
    let rc = unsafe { kong_client_tls_check_request(ssl, ptr, len, server as *const _, &mut err) };
    match rc {
        KONG_CLIENT_TLS_OK => Ok(true),
        KONG_CLIENT_TLS_MISDIRECTED => Ok(false),
        KONG_CLIENT_TLS_ERROR => Err(message(err)),
        other => panic!("unexpected status {other}"),
    }
}

/// `kong_client_tls_get0_request_server_name`: `None` when no certificate was requested,
/// `Some(None)` when it was requested without a server name.
pub fn request_server_name(ssl: *mut SSL) -> Result<Option<Option<String>>, String> {
    let (mut name, mut len, mut err) = (ptr::null(), usize::MAX, ptr::null());
    // SAFETY: pointers are live.
    let rc =
        unsafe { kong_client_tls_get0_request_server_name(ssl, &mut name, &mut len, &mut err) };
    match rc {
        KONG_CLIENT_TLS_OK if name.is_null() => {
            assert_eq!(len, 0, "no name, no length");
            Ok(Some(None))
        }
        KONG_CLIENT_TLS_OK => {
            // SAFETY: the library returns `len` bytes followed by a NUL.
            let bytes = unsafe { std::slice::from_raw_parts(name.cast::<u8>(), len + 1) };
            assert_eq!(bytes[len], 0, "the name is NUL-terminated");
            Ok(Some(Some(
                String::from_utf8(bytes[..len].to_vec()).unwrap(),
            )))
        }
        KONG_CLIENT_TLS_NOT_REQUESTED => {
            assert!(
                name.is_null() && len == usize::MAX,
                "out-parameters untouched"
            );
            Ok(None)
        }
        KONG_CLIENT_TLS_ERROR => Err(message(err)),
        other => panic!("unexpected status {other}"),
    }
}
