//! `get_full_client_certificate_chain`: the peer's leaf and the chain it sent, as PEM.
//!
//! The PEM is encoded on the first call and kept in the connection's ex_data, which
//! OpenSSL frees with the `SSL`; later calls hand out the same bytes. The cache is keyed
//! by the peer certificate itself (a reference is held, so the pointer cannot be reused),
//! which keeps it right even if a TLS 1.2 renegotiation changes the peer.

use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

use foreign_types::ForeignTypeRef;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef};
use openssl::x509::{X509Ref, X509};
use openssl_sys::SSL;

use crate::error::{
    guard_connection, Error, KONG_CLIENT_TLS_BUFFER_TOO_SMALL, KONG_CLIENT_TLS_NO_CERTIFICATE,
    KONG_CLIENT_TLS_OK,
};
use crate::ssl::server_ssl;
use crate::sys::SSL_get0_peer_certificate;

const NULL_OUT: Error = Error::new(c"pem and len must not be NULL");
const NULL_LEN: Error = Error::new(c"len must not be NULL");
const NULL_BUF: Error = Error::new(c"buf is NULL but *len is not 0");
const PEM_ENCODING: Error = Error::new(c"cannot PEM-encode the client certificate chain");

/// The encoded chain of one connection; `pem` ends with a NUL that [`CachedChain::pem`]
/// excludes.
struct CachedChain {
    leaf: X509,
    pem: Box<[u8]>,
}

impl CachedChain {
    fn pem_with_nul(&self) -> &[u8] {
        &self.pem
    }

    fn pem(&self) -> &[u8] {
        &self.pem[..self.pem.len() - 1]
    }
}

fn cache_index() -> Result<Index<Ssl, CachedChain>, Error> {
    static INDEX: OnceLock<Option<Index<Ssl, CachedChain>>> = OnceLock::new();
    INDEX
        .get_or_init(|| Ssl::new_ex_index().ok())
        .ok_or(Error::EX_DATA_INDEX)
}

/// The connection's chain PEM, encoding and caching it on first use; `None` when the
/// peer sent no certificate.
fn cached_chain(ssl: &mut SslRef) -> Result<Option<&CachedChain>, Error> {
    let index = cache_index()?;
    // SAFETY: `ssl` is live; the certificate is borrowed, not counted, and only compared
    // or up-referenced while `ssl` is borrowed.
    let peer = unsafe { SSL_get0_peer_certificate(ssl.as_ptr()) };
    if peer.is_null() {
        return Ok(None);
    }
    let fresh = ssl
        .ex_data(index)
        .is_some_and(|cached| cached.leaf.as_ptr() == peer);
    if !fresh {
        // SAFETY: non-NULL and owned by `ssl`, which outlives this borrow.
        let leaf = unsafe { X509Ref::from_ptr(peer) }.to_owned();
        let pem = encode_chain(&leaf, ssl.peer_cert_chain().into_iter().flatten())?;
        ssl.set_ex_data(index, CachedChain { leaf, pem });
    }
    Ok(ssl.ex_data(index))
}

/// PEM of `leaf` then `chain`, NUL-terminated. Server side, OpenSSL's peer chain omits
/// the leaf (`server_ssl` guarantees the side).
fn encode_chain<'a>(
    leaf: &'a X509Ref,
    chain: impl Iterator<Item = &'a X509Ref>,
) -> Result<Box<[u8]>, Error> {
    crate::pem::certificates_with_nul(std::iter::once(leaf).chain(chain))
        .map_err(|stack| PEM_ENCODING.with_openssl(&stack))
}

/// Copies the PEM of the client's certificate chain (leaf first, then the certificates
/// the client sent after it, in its order) into `buf`, followed by a NUL.
///
/// Call it on a server-side connection once the handshake has received the client's
/// Certificate (e.g. in any nginx request phase). The PEM is encoded once per connection
/// and kept with the `SSL` (freed by `SSL_free`); later calls copy the cached bytes.
/// On a resumed session the leaf is always there; the rest of the chain only when OpenSSL
/// kept the session in memory (its internal cache): a session rebuilt from a ticket or an
/// external cache (nginx's `ssl_session_cache shared:`) holds the leaf alone.
///
/// `*len` is the size of `buf` on entry. Returns:
/// - `KONG_CLIENT_TLS_OK`: `buf` holds the PEM and a NUL; `*len` is the PEM length
///   without the NUL;
/// - `KONG_CLIENT_TLS_NO_CERTIFICATE`: the client sent no certificate; `*len` is 0;
/// - `KONG_CLIENT_TLS_BUFFER_TOO_SMALL`: nothing copied; `*len` is the size needed
///   (PEM length + 1). Pass `buf` NULL and `*len` 0 to ask for the size;
/// - `KONG_CLIENT_TLS_ERROR`: `*err` holds a message (when `err` is not NULL; see the
///   header's note on errors).
///
/// # Safety
/// `ssl` is NULL or a live `SSL *`; `buf` is NULL or writable for `*len` bytes; `len` is
/// NULL or writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_get_full_client_certificate_chain(
    ssl: *mut SSL,
    buf: *mut c_char,
    len: *mut usize,
    err: *mut *const c_char,
) -> c_int {
    guard_connection(ssl, err, || {
        // SAFETY: forwarded from this function's contract.
        let ssl = unsafe { server_ssl(ssl) }?;
        if len.is_null() {
            return Err(NULL_LEN);
        }
        // SAFETY: `len` is non-NULL and writable per the contract.
        let len = unsafe { &mut *len };
        if buf.is_null() && *len != 0 {
            return Err(NULL_BUF);
        }
        let Some(chain) = cached_chain(ssl)? else {
            *len = 0;
            return Ok(KONG_CLIENT_TLS_NO_CERTIFICATE);
        };
        let with_nul = chain.pem_with_nul();
        if *len < with_nul.len() {
            *len = with_nul.len();
            return Ok(KONG_CLIENT_TLS_BUFFER_TOO_SMALL);
        }
        // SAFETY: `buf` is writable for `*len >= with_nul.len()` bytes and cannot overlap
        // our private cache.
        unsafe { std::ptr::copy_nonoverlapping(with_nul.as_ptr(), buf.cast(), with_nul.len()) };
        *len = chain.pem().len();
        Ok(KONG_CLIENT_TLS_OK)
    })
}

/// Points `*pem` at the cached PEM of the client's certificate chain, without copying.
///
/// Same chain, phases and return codes as
/// `kong_client_tls_get_full_client_certificate_chain` (never `BUFFER_TOO_SMALL`).
/// On `KONG_CLIENT_TLS_OK`, `*pem` is NUL-terminated and `*len` is its length without
/// the NUL. The bytes belong to the connection: they stay valid until `SSL_free` or the
/// next chain call on the same `SSL`, whichever comes first. Never free them.
/// On `KONG_CLIENT_TLS_NO_CERTIFICATE`, `*pem` is NULL and `*len` is 0.
///
/// # Safety
/// `ssl` is NULL or a live `SSL *`; `pem`, `len` and `err` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kong_client_tls_get0_full_client_certificate_chain(
    ssl: *mut SSL,
    pem: *mut *const c_char,
    len: *mut usize,
    err: *mut *const c_char,
) -> c_int {
    guard_connection(ssl, err, || {
        // SAFETY: forwarded from this function's contract.
        let ssl = unsafe { server_ssl(ssl) }?;
        if pem.is_null() || len.is_null() {
            return Err(NULL_OUT);
        }
        // SAFETY: both are non-NULL and writable per the contract.
        let (pem, len) = unsafe { (&mut *pem, &mut *len) };
        match cached_chain(ssl)? {
            Some(chain) => {
                *pem = chain.pem_with_nul().as_ptr().cast();
                *len = chain.pem().len();
                Ok(KONG_CLIENT_TLS_OK)
            }
            None => {
                *pem = std::ptr::null();
                *len = 0;
                Ok(KONG_CLIENT_TLS_NO_CERTIFICATE)
            }
        }
    })
}
