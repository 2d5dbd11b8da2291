//! `request_client_certificate`: ask for a client certificate without requiring one.
//!
//! Matches what lua-resty-core's `ngx.ssl.verify_client(ca_certs, 0)` does, which is what
//! Kong 3.9 calls: verify mode PEER with a callback that never fails the handshake (the
//! outcome is read later through `SSL_get_verify_result`, i.e. nginx's
//! `$ssl_client_verify`), verify depth 0, and, when CA certificates are given, those
//! certificates as the verify store and their subjects as the acceptable-CA list.
//!
//! Unlike Kong, the verdict never travels to a connection that would verify differently
//! through session resumption (see [`crate::binding`] and [`crate::session`]): called at
//! ClientHello time with CA certificates, the session is bound to what is verified;
//! called later, when OpenSSL has already looked for a session to resume, the session is
//! never resumable.

use std::ffi::{c_char, c_int, c_void};

use foreign_types::ForeignTypeRef;
use openssl::hash::MessageDigest;
use openssl::ssl::SslRef;
use openssl::x509::{X509Ref, X509};
use openssl_sys::{stack_st_X509, OPENSSL_STACK, SSL};

use crate::binding::{self, ServerName};
use crate::error::{guard_connection, Error, KONG_CLIENT_TLS_OK};
use crate::session;
use crate::ssl::{client_hello_extension, server_ssl_placement, Placement};
use crate::sys::TLSEXT_TYPE_SERVER_NAME;

const EMPTY_CA_LIST: Error = Error::new(c"ca_certs is an empty certificate stack");
const NULL_CA_ENTRY: Error = Error::new(c"ca_certs contains a NULL certificate");
const NAMES_TOO_LARGE: Error =
    Error::new(c"ca_certs' subject names do not fit a CertificateRequest (nothing was changed)");
const REBIND: Error = Error::new(
    c"request_client_certificate already ran at ClientHello time with other ca_certs; resumed sessions skip this phase, so the CA set cannot change here",
);

/// Requests a client certificate on a server-side connection without requiring it.
///
/// Call it from the client hello callback (`SSL_CTX_set_client_hello_cb`; nginx's
/// `ssl_client_hello_by_lua*`), the certificate callback (`SSL_CTX_set_cert_cb`; nginx's
/// `ssl_certificate_by_lua*`), or before the handshake.
/// It sets verify mode `SSL_VERIFY_PEER` with a verify callback that always accepts, and
/// verify depth 0. When `ca_certs` is not NULL, its certificates become this connection's
/// verify store and their subject names are sent as the acceptable-CA list of the
/// CertificateRequest. With `ca_certs` NULL, no CA list is sent and the context's store
/// is used. The verification outcome is available after the handshake through
/// `SSL_get_verify_result()`. These settings hold across an SNI switch
/// (`SSL_set_SSL_CTX` in a servername callback, as nginx does).
///
/// Session resumption never reports a verdict that a full handshake on the resuming
/// connection would not give:
/// - From the client hello callback or before the handshake, with `ca_certs`: the
///   connection's session id context (`SSL_set_session_id_context`) becomes a SHA-256
///   binding of the policy version, verify depth 0, the ClientHello's raw `server_name`
///   extension (or its absence; "before the handshake" when called then), the
///   connection's certificate at the time of the call, and each CA certificate (order
///   and duplicates ignored), certificates by the SHA-1 fingerprint OpenSSL caches with
///   them. OpenSSL then resumes, on every
///   path (TLS 1.2 session IDs and tickets, TLS 1.3 tickets), only sessions born under
///   the same binding; any other offer becomes a clean full handshake that verifies
///   again. Sessions this connection creates carry the binding.
/// - From the certificate callback, or with `ca_certs` NULL: the session is made
///   impossible to resume, as `kong_client_tls_disable_session_reuse` does (by then
///   OpenSSL has already decided on resumption, and the context's store cannot be
///   bound).
/// - In both cases the session ends (its timeout is shortened) about two seconds before
///   the first expiry among the certificates the verification saw, and a resumed TLS 1.3
///   connection issues tickets that end no later than the session it resumed.
///
/// A second call from the certificate callback after one at ClientHello time succeeds
/// and changes nothing when `ca_certs` has the same certificates, and fails otherwise
/// (resumed connections skip the certificate callback, so the two must agree).
///
/// This `SSL`'s verify callback, not-resumable-session callback and, when bound, message
/// callback belong to the library after the call.
///
/// Ownership: the caller keeps `ca_certs`; the library takes its own references. Calling
/// it again on the same connection replaces the previous store and CA list.
///
/// The subject names of `ca_certs` must fit a CertificateRequest: with their 2-byte
/// lengths at most 64,512 bytes (TLS limits the list to 65,535 bytes, and in TLS 1.3 the
/// other extensions of the message share that room). A larger set fails with a message
/// saying how many bytes its names take, and changes nothing, instead of every handshake
/// ending in an `internal_error` alert.
///
/// Returns `KONG_CLIENT_TLS_OK`, or `KONG_CLIENT_TLS_ERROR` with a message stored in `*err`
/// (when `err` is not NULL; see the header's note on errors). On error the connection is left unchanged.
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
    // SAFETY: forwarded from this function's contract.
    unsafe { request(ssl, ca_certs, std::ptr::null(), err) }
}

/// `kong_client_tls_request_client_certificate`, and records which virtual server made
/// the request: `server` is the caller's tag for it (nginx: the `server {}` block whose
/// handler runs; any pointer that names one virtual server, or NULL for none).
/// `kong_client_tls_check_request` compares it with the tag of the server a request is
/// routed to when the ClientHello named no server; see there. The tag is only compared,
/// never dereferenced. A repeated call that changes nothing (see
/// `kong_client_tls_request_client_certificate`) keeps the first tag.
///
/// Returns `KONG_CLIENT_TLS_OK`, or `KONG_CLIENT_TLS_ERROR` with a message stored in `*err`
/// (when `err` is not NULL). On error the connection is left unchanged.
///
/// # Safety
/// As for `kong_client_tls_request_client_certificate`; `server` may be any value.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_request_client_certificate_for_server(
    ssl: *mut SSL,
    ca_certs: *const stack_st_X509,
    server: *const c_void,
    err: *mut *const c_char,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    unsafe { request(ssl, ca_certs, server, err) }
}

/// # Safety
/// As for `kong_client_tls_request_client_certificate`.
unsafe fn request(
    ssl: *mut SSL,
    ca_certs: *const stack_st_X509,
    server: *const c_void,
    err: *mut *const c_char,
) -> c_int {
    guard_connection(ssl, err, || {
        // SAFETY: forwarded from this function's contract.
        let (ssl, placement) = unsafe { server_ssl_placement(ssl) }?;
        // SAFETY: forwarded from this function's contract.
        let ca = unsafe { CaCertificates::from_stack(ca_certs) }?;
        if let Some(bound) = session::bound_ca_set(ssl) {
            if placement == Placement::Certificate {
                return match ca {
                    Some(ca) if ca.digest == bound => Ok(KONG_CLIENT_TLS_OK),
                    _ => Err(REBIND),
                };
            }
        }
        // (session id context, CA set digest) when the session can be bound.
        let binding = match (&ca, placement) {
            (Some(ca), Placement::ClientHello | Placement::BeforeHandshake) => {
                // SAFETY: `ssl` is live and, for `ClientHello`, in its client hello callback.
                let name = unsafe { server_name(ssl, placement) };
                let sid_ctx = binding::session_id_context(&binding::Inputs {
                    server_name: name,
                    server_certificate: ssl.certificate().map(fingerprint).transpose()?,
                    ca_set: ca.digest,
                    verify_depth: session::VERIFY_DEPTH as u32,
                });
                Some((sid_ctx, ca.digest))
            }
            _ => None,
        };
        session::verify_client(ssl, ca.map(|ca| ca.certs), server as usize)?;
        match binding {
            Some((sid_ctx, ca_set)) => session::bind(ssl, &sid_ctx, ca_set)?,
            None => session::disable_reuse(ssl)?,
        }
        Ok(KONG_CLIENT_TLS_OK)
    })
}

/// The certificate's [`binding::Fingerprint`]: OpenSSL computes it once per certificate
/// object, with the rest of its cached extension data, and serves it from there.
fn fingerprint(cert: &X509Ref) -> Result<binding::Fingerprint, Error> {
    // SAFETY: a live certificate; this only fills OpenSSL's per-certificate cache, under
    // the certificate's own lock (thread-safe), and changes no content.
    unsafe { openssl_sys::X509_get_extension_flags(cert.as_ptr()) };
    let digest = cert.digest(MessageDigest::sha1())?;
    binding::Fingerprint::try_from(&digest[..]).map_err(|_| Error::OPENSSL)
}

/// The length of `cert`'s subject name in DER, as the CertificateRequest carries it
/// (X509_NAME keeps its encoding: nothing is encoded again).
fn name_len(cert: &X509Ref) -> Result<usize, Error> {
    // SAFETY: a live certificate's subject; a NULL output pointer only measures.
    let len =
        unsafe { openssl_sys::i2d_X509_NAME(cert.subject_name().as_ptr(), std::ptr::null_mut()) };
    usize::try_from(len).map_err(|_| Error::OPENSSL)
}

/// The server name of the ClientHello being answered, as the binding sees it.
///
/// # Safety
/// `ssl` is live; with `Placement::ClientHello`, inside its client hello callback, and the
/// result must not outlive it.
unsafe fn server_name<'a>(ssl: &SslRef, placement: Placement) -> ServerName<'a> {
    if placement == Placement::BeforeHandshake {
        return ServerName::BeforeHandshake;
    }
    // SAFETY: in the client hello callback, per this function's contract.
    match unsafe { client_hello_extension(ssl, TLSEXT_TYPE_SERVER_NAME) } {
        Some(body) => ServerName::Sent(body),
        None => ServerName::Absent,
    }
}

/// The most bytes the acceptable-CA names may take in a CertificateRequest: each name's
/// DER and its 2-byte length. TLS 1.2 holds the list in a 16-bit length (65,535 bytes;
/// `construct_ca_names` in OpenSSL's `ssl/statem/statem_lib.c`); TLS 1.3 holds it in the
/// `certificate_authorities` extension (4 bytes of header, a 2-byte length), in a 16-bit
/// extensions block shared with `signature_algorithms` (6 bytes and 2 per algorithm) and
/// what else the CertificateRequest carries (`tls_construct_extensions`). Past either,
/// OpenSSL fails every handshake with an `internal_error` alert. The protocol version is
/// not known at ClientHello time, so one limit serves both, with 1 KiB left for the
/// other extensions.
pub(crate) const MAX_CA_NAMES_BYTES: usize = 65_536 - 1024;

/// What a `STACK_OF(X509)` of CA certificates becomes for one connection: our own
/// references to them (the store and the CA list are built only by a full handshake,
/// see [`session`]), and their digest for the binding.
struct CaCertificates {
    certs: Vec<X509>,
    /// [`binding::ca_set_digest`] of the certificates.
    digest: [u8; binding::LEN],
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
        let mut owned = Vec::with_capacity(certs.len() as usize);
        let mut fingerprints = Vec::with_capacity(certs.len() as usize);
        let mut names_bytes = 0usize;
        for cert in certs.flatten() {
            names_bytes += 2 + name_len(cert)?;
            fingerprints.push(fingerprint(cert)?);
            owned.push(cert.to_owned());
        }
        if names_bytes > MAX_CA_NAMES_BYTES {
            return Err(NAMES_TOO_LARGE.with_sizes(names_bytes, MAX_CA_NAMES_BYTES));
        }
        Ok(Some(CaCertificates {
            certs: owned,
            digest: binding::ca_set_digest(&mut fingerprints),
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
