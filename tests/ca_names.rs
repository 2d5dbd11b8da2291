//! CA sets whose subject names do not fit a CertificateRequest: `request_client_certificate`
//! refuses them with their size and the limit, and changes nothing, where OpenSSL itself
//! would fail every handshake with an `internal_error` alert; sets that fit are sent
//! whole. Real in-process handshakes, TLS 1.2 and 1.3, both placements.

mod support;

use std::sync::{Arc, Mutex};

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::ssl::{SslContext, SslVerifyMode, SslVersion};
use openssl::stack::Stack;
use openssl::x509::{X509Name, X509NameRef, X509VerifyResult, X509};
use support::api::{request_client_certificate, CertStack};
use support::memtls::{client_context_presenting, connect, hook, server_context, Hooks};
use support::memtls::{Connection, VERSIONS};
use support::pki::{self, ca_names_bytes, KeyKind, Pki, CA_NAMES_LIMIT as LIMIT};
use support::sys::SSL_get_client_CA_list;

/// The client's root first, then long-named CAs while their names take at most `fits`.
fn set_within(fits: usize) -> Vec<X509> {
    pki::ca_set_within(&client_pki().root.cert, fits)
}

fn client_pki() -> &'static Pki {
    Pki::get("client", KeyKind::EcdsaP256)
}

fn server_ctx(version: SslVersion) -> SslContext {
    server_context(Pki::get("server", KeyKind::EcdsaP256), version).build()
}

/// A handshake of a client presenting a certificate of `client_pki()`'s root, the
/// server running `hooks`.
fn handshake(version: SslVersion, hooks: Hooks) -> Connection {
    let client = client_context_presenting(version, Some(&client_pki().direct_leaf), &[]);
    connect(&server_ctx(version), &client.build(), hooks, None)
}

/// The acceptable-CA names the client received.
fn names_received(conn: &Connection) -> usize {
    // SAFETY: the list belongs to the live client SSL and is only read.
    unsafe {
        let list = SSL_get_client_CA_list(conn.client().as_ptr());
        if list.is_null() {
            0
        } else {
            openssl::stack::StackRef::<X509Name>::from_ptr(list).len()
        }
    }
}

/// What each `request_client_certificate` call of a connection returned.
type Calls = Arc<Mutex<Vec<Result<(), String>>>>;

/// Hooks that request a certificate against `set` at `client_hello` or at certificate
/// time, keeping what the call returned.
fn requesting(set: Vec<X509>, at_client_hello: bool) -> (Hooks, Calls) {
    let results = Arc::new(Mutex::new(Vec::new()));
    let keep = results.clone();
    let request = hook(move |ssl| {
        let stack = CertStack::new(&set.iter().collect::<Vec<_>>());
        let result = request_client_certificate(ssl, Some(&stack));
        // SAFETY: the server SSL of the running callback.
        let mode = unsafe { openssl_sys::SSL_get_verify_mode(ssl) };
        if result.is_err() {
            assert_eq!(mode, 0, "a refused set leaves the verify mode alone");
        }
        keep.lock().unwrap().push(result);
    });
    let hooks = if at_client_hello {
        Hooks::at_client_hello(request)
    } else {
        Hooks::at_certificate(request)
    };
    (hooks, results)
}

#[test]
fn a_set_whose_names_fit_is_sent_whole_and_verifies() {
    let set = set_within(LIMIT);
    assert!(ca_names_bytes(&set) > LIMIT - 200, "close to the limit");
    for version in VERSIONS {
        for at_client_hello in [true, false] {
            let (hooks, results) = requesting(set.clone(), at_client_hello);
            let conn = handshake(version, hooks);
            let what = format!("{version:?}, client hello: {at_client_hello}");
            assert_eq!(*results.lock().unwrap(), vec![Ok(())], "{what}");
            assert_eq!(names_received(&conn), set.len(), "{what}: every name sent");
            assert_eq!(
                conn.server().verify_result(),
                X509VerifyResult::OK,
                "{what}"
            );
        }
    }
}

#[test]
fn a_set_whose_names_do_not_fit_is_refused_with_its_size_and_changes_nothing() {
    let fits = set_within(LIMIT);
    let over = set_within(LIMIT + 200);
    assert!(over.len() > fits.len());
    let took = ca_names_bytes(&over);
    let expected = format!(
        "ca_certs' subject names do not fit a CertificateRequest (nothing was changed): \
         they take {took} bytes, at most {LIMIT} fit"
    );
    for version in VERSIONS {
        for at_client_hello in [true, false] {
            let (hooks, results) = requesting(over.clone(), at_client_hello);
            let conn = handshake(version, hooks);
            let what = format!("{version:?}, client hello: {at_client_hello}");
            assert_eq!(
                *results.lock().unwrap(),
                vec![Err(expected.clone())],
                "{what}"
            );
            assert_eq!(names_received(&conn), 0, "{what}: no CertificateRequest");
            assert!(conn.server().peer_certificate().is_none(), "{what}");
        }
    }
}

/// The reference: plain OpenSSL asked to send more names than fit fails the handshake,
/// which is what the library's refusal spares its callers.
#[test]
fn openssl_itself_fails_every_handshake_past_the_protocol_limit() {
    let all: Vec<X509> = pki::long_named_cas().to_vec();
    for version in VERSIONS {
        let request = hook({
            let all = all.clone();
            move |ssl| {
                let mut names = Stack::<X509Name>::new().unwrap();
                for ca in &all {
                    let name: &X509NameRef = ca.subject_name();
                    names.push(name.to_owned().unwrap()).unwrap();
                }
                // SAFETY: the server SSL of the running callback; it takes the stack.
                unsafe {
                    openssl_sys::SSL_set_client_CA_list(ssl, names.as_ptr());
                    std::mem::forget(names);
                    openssl_sys::SSL_set_verify(ssl, SslVerifyMode::PEER.bits(), None);
                }
            }
        });
        let conn = handshake(version, Hooks::at_certificate(request));
        let server = conn
            .server
            .as_ref()
            .expect_err("the server's handshake fails");
        assert!(server.contains("internal error"), "{version:?}: {server}");
        assert!(conn.client.is_err(), "{version:?}: and the client's");
    }
}
