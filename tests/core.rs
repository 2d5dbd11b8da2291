//! The C API on real in-process handshakes: TLS 1.2 and 1.3, RSA and ECDSA, every call
//! made from the callbacks where nginx runs Lua, and every outcome compared with what
//! OpenSSL itself gives for the reference setup.

mod support;

use std::ffi::{c_char, c_int, CStr};
use std::ptr;
use std::sync::{Arc, Mutex};

use foreign_types::{ForeignType, ForeignTypeRef};
use kong_client_tls::kong_client_tls_disable_session_reuse;
use kong_client_tls::{
    kong_client_tls_check_libssl, kong_client_tls_openssl_version_num, kong_client_tls_version,
};
use kong_client_tls::{
    kong_client_tls_get0_full_client_certificate_chain,
    kong_client_tls_get_full_client_certificate_chain,
};
use kong_client_tls::{
    KONG_CLIENT_TLS_BUFFER_TOO_SMALL, KONG_CLIENT_TLS_ERROR, KONG_CLIENT_TLS_NO_CERTIFICATE,
    KONG_CLIENT_TLS_OK,
};
use openssl::ssl::{Ssl, SslContext, SslRef, SslSession, SslVerifyMode, SslVersion};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509Name, X509NameRef, X509};
use openssl_sys::SSL;
use support::api::{disable_session_reuse, message, request_client_certificate, CertStack};
use support::memtls::{client_context, connect, hook, server_context, Connection, Hooks, VERSIONS};
use support::pki::{KeyKind, Pki, KEY_KINDS};
use support::sessions::{ExternalCache, SessionPath};
use support::sys::{
    SSL_CTX_ctrl, SSL_SESSION_is_resumable, SSL_get_client_CA_list, SSL_get_state,
    SSL_CTRL_SESS_NUMBER,
};

/// The server context most tests use: the "server" ECDSA identity, exactly `version`.
fn server_ctx(version: SslVersion) -> SslContext {
    server_context(Pki::get("server", KeyKind::EcdsaP256), version).build()
}

// ---- small safe wrappers over the C API ------------------------------------------------

/// The zero-copy chain call: (pointer, PEM) or None for no certificate.
fn chain0(ssl: &SslRef) -> Result<Option<(*const c_char, String)>, String> {
    let (mut pem, mut len, mut err) = (ptr::null(), 0usize, ptr::null());
    // SAFETY: all pointers live.
    let rc = unsafe {
        kong_client_tls_get0_full_client_certificate_chain(
            ssl.as_ptr(),
            &mut pem,
            &mut len,
            &mut err,
        )
    };
    match rc {
        KONG_CLIENT_TLS_OK => {
            // SAFETY: the library returns `len` readable bytes followed by a NUL.
            let bytes = unsafe { std::slice::from_raw_parts(pem.cast::<u8>(), len + 1) };
            assert_eq!(bytes[len], 0, "PEM is NUL-terminated");
            Ok(Some((
                pem,
                String::from_utf8(bytes[..len].to_vec()).unwrap(),
            )))
        }
        KONG_CLIENT_TLS_NO_CERTIFICATE => {
            assert!(pem.is_null() && len == 0);
            Ok(None)
        }
        KONG_CLIENT_TLS_ERROR => Err(message(err)),
        other => panic!("unexpected status {other}"),
    }
}

/// The copying chain call with a caller buffer of `size` bytes.
fn chain_into(ssl: *mut SSL, size: usize) -> (c_int, usize, Vec<u8>) {
    let mut buf = vec![0xAAu8; size];
    let mut len = size;
    let mut err = ptr::null();
    let bufp = if size == 0 {
        ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: `buf` is writable for `size` bytes.
    let rc =
        unsafe { kong_client_tls_get_full_client_certificate_chain(ssl, bufp, &mut len, &mut err) };
    (rc, len, buf)
}

fn ca_names_seen_by_client(conn: &Connection) -> Vec<Vec<u8>> {
    // SAFETY: live client SSL; the stack belongs to it.
    let names = unsafe { SSL_get_client_CA_list(conn.client().as_ptr()) };
    if names.is_null() {
        return Vec::new();
    }
    // SAFETY: a live STACK_OF(X509_NAME) owned by the SSL.
    let names = unsafe { openssl::stack::StackRef::<X509Name>::from_ptr(names) };
    names.iter().map(|n| n.to_der().unwrap()).collect()
}

fn der_names<'a>(names: impl IntoIterator<Item = &'a X509NameRef>) -> Vec<Vec<u8>> {
    names.into_iter().map(|n| n.to_der().unwrap()).collect()
}

fn is_resumable(session: &SslSession) -> bool {
    // SAFETY: live session.
    unsafe { SSL_SESSION_is_resumable(session.as_ptr()) == 1 }
}

// ---- request_client_certificate -----------------------------------------------------------

/// The reference: what lua-nginx-module's `ngx.ssl.verify_client(ca, 0)` sets on the SSL,
/// done with OpenSSL's own API.
fn reference_verify_client(ssl: *mut SSL, ca: Option<&[X509]>) {
    // SAFETY: called from the certificate callback with the live server SSL.
    let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
    ssl.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    ssl.param_mut().set_depth(0);
    if let Some(ca) = ca {
        let mut store = X509StoreBuilder::new().unwrap();
        let mut names = Stack::new().unwrap();
        for cert in ca {
            store.add_cert(cert.clone()).unwrap();
            names.push(cert.subject_name().to_owned().unwrap()).unwrap();
        }
        ssl.set_verify_cert_store(store.build()).unwrap();
        ssl.set_client_ca_list(names);
    }
}

#[derive(Debug, PartialEq)]
struct Observed {
    handshake_ok: bool,
    verify_result: i32,
    peer_der: Option<Vec<u8>>,
    ca_names: Vec<Vec<u8>>,
}

fn observe(conn: &Connection) -> Observed {
    let handshake_ok = conn.server.is_ok() && conn.client.is_ok();
    assert!(
        handshake_ok,
        "requesting a certificate must never fail the handshake: {:?} / {:?}",
        conn.server.as_ref().err(),
        conn.client.as_ref().err()
    );
    Observed {
        handshake_ok,
        verify_result: conn.server().verify_result().as_raw(),
        peer_der: conn
            .server()
            .peer_certificate()
            .map(|c| c.to_der().unwrap()),
        ca_names: ca_names_seen_by_client(conn),
    }
}

#[test]
fn request_client_certificate_matches_verify_client_reference() {
    let untrusted = Pki::get("untrusted", KeyKind::EcdsaP256);
    for version in VERSIONS {
        for kind in KEY_KINDS {
            let server_pki = Pki::get("server", kind);
            let client_pki = Pki::get("client", kind);
            let server_ctx = server_context(server_pki, version).build();
            let ca_choices: [Option<Vec<X509>>; 4] = [
                None,
                Some(vec![client_pki.root.cert.clone()]),
                Some(vec![client_pki.intermediate().cert.clone()]),
                Some(vec![
                    client_pki.root.cert.clone(),
                    untrusted.root.cert.clone(),
                ]),
            ];
            let clients = [Some(client_pki), None, Some(untrusted)];
            for ca in &ca_choices {
                for client in clients {
                    let client_ctx = client_context(client, version).build();
                    let stack = ca
                        .as_ref()
                        .map(|certs| CertStack::new(&certs.iter().collect::<Vec<_>>()));
                    let stack = Arc::new(stack.map(SendStack));
                    let ours = {
                        let stack = stack.clone();
                        hook(move |ssl| {
                            request_client_certificate(ssl, stack.as_ref().as_ref().map(|s| &s.0))
                                .unwrap()
                        })
                    };
                    let reference = {
                        let ca = ca.clone();
                        hook(move |ssl| reference_verify_client(ssl, ca.as_deref()))
                    };
                    let got = observe(&connect(
                        &server_ctx,
                        &client_ctx,
                        Hooks::at_certificate(ours),
                        None,
                    ));
                    let want = observe(&connect(
                        &server_ctx,
                        &client_ctx,
                        Hooks::at_certificate(reference),
                        None,
                    ));
                    let case = format!(
                        "{version:?} {kind:?} ca={:?} client={:?}",
                        ca.as_ref().map(|c| c.len()),
                        client.map(|c| c.leaf.cert.subject_name().to_der().unwrap().len())
                    );
                    assert_eq!(got, want, "{case}");
                    // The outcome itself, beyond agreeing with the reference.
                    let expected_names = ca.as_ref().map_or(Vec::new(), |c| {
                        der_names(c.iter().map(|x| x.subject_name()))
                    });
                    assert_eq!(got.ca_names, expected_names, "{case}: CA names");
                    assert_eq!(
                        got.peer_der,
                        client.map(|c| c.leaf.cert.to_der().unwrap()),
                        "{case}: peer"
                    );
                    if client.is_none() {
                        assert_eq!(
                            got.verify_result, 0,
                            "{case}: no certificate verifies as OK (nginx: NONE)"
                        );
                    } else {
                        assert_ne!(
                            got.verify_result, 0,
                            "{case}: depth 0 cannot accept leaf+intermediate chains"
                        );
                    }
                }
            }
        }
    }
}

/// `*const` stacks are not `Send`; the tests only read them from the handshake thread
/// while the main thread keeps them alive.
struct SendStack(CertStack);
// SAFETY: see above; the stack is never mutated once built.
unsafe impl Send for SendStack {}
// SAFETY: as above.
unsafe impl Sync for SendStack {}

#[test]
fn verify_depth_zero_accepts_a_leaf_issued_by_a_ca_in_the_list() {
    // The one SUCCESS case of depth 0: the client's leaf is signed directly by a CA in the
    // list, and that CA is a trust anchor (self-signed root issuing the leaf).
    let pki = Pki::get("client", KeyKind::EcdsaP256);
    for version in VERSIONS {
        let server_ctx = server_ctx(version);
        let mut client_ctx = SslContext::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
        client_ctx.set_min_proto_version(Some(version)).unwrap();
        client_ctx.set_max_proto_version(Some(version)).unwrap();
        client_ctx.set_certificate(&pki.direct_leaf.cert).unwrap();
        client_ctx.set_private_key(&pki.direct_leaf.key).unwrap();
        let client_ctx = client_ctx.build();
        let stack = Arc::new(SendStack(CertStack::new(&[&pki.root.cert])));
        let ours = hook(move |ssl| request_client_certificate(ssl, Some(&stack.0)).unwrap());
        let conn = connect(&server_ctx, &client_ctx, Hooks::at_certificate(ours), None);
        let observed = observe(&conn);
        assert_eq!(observed.verify_result, 0, "{version:?}: X509_V_OK");
        // And OpenSSL's own verification of that certificate against the list agrees.
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(pki.root.cert.clone()).unwrap();
        let mut param = openssl::x509::verify::X509VerifyParam::new().unwrap();
        param.set_depth(0);
        store.set_param(&param).unwrap();
        let store = store.build();
        let mut ctx = openssl::x509::X509StoreContext::new().unwrap();
        let ok = ctx
            .init(&store, &pki.direct_leaf.cert, &Stack::new().unwrap(), |c| {
                c.verify_cert()
            })
            .unwrap();
        assert!(ok, "OpenSSL's own verification agrees");
    }
}

#[test]
fn request_client_certificate_twice_replaces_the_ca_list() {
    let client_pki = Pki::get("client", KeyKind::EcdsaP256);
    let other = Pki::get("untrusted", KeyKind::EcdsaP256);
    for version in VERSIONS {
        let server_ctx = server_ctx(version);
        let client_ctx = client_context(Some(client_pki), version).build();
        let first = Arc::new(SendStack(CertStack::new(&[
            &other.root.cert,
            &other.intermediate().cert,
        ])));
        let second = Arc::new(SendStack(CertStack::new(&[&client_pki.root.cert])));
        let calls = hook(move |ssl| {
            request_client_certificate(ssl, Some(&first.0)).unwrap();
            request_client_certificate(ssl, Some(&second.0)).unwrap();
        });
        let conn = connect(&server_ctx, &client_ctx, Hooks::at_certificate(calls), None);
        assert_eq!(
            ca_names_seen_by_client(&conn),
            der_names([client_pki.root.cert.subject_name()])
        );
    }
}

#[test]
fn the_caller_keeps_ownership_of_ca_certs() {
    // The stack and its certificates are freed right after the call, before the handshake
    // uses the CA list: the library must hold its own references.
    let client_pki = Pki::get("client", KeyKind::EcdsaP256);
    let server_ctx = server_ctx(SslVersion::TLS1_3);
    let client_ctx = client_context(Some(client_pki), SslVersion::TLS1_3).build();
    let root_pem = client_pki.root.cert.to_pem().unwrap();
    let calls = hook(move |ssl| {
        let fresh = X509::from_pem(&root_pem).unwrap();
        let stack = CertStack::new(&[&fresh]);
        request_client_certificate(ssl, Some(&stack)).unwrap();
    });
    let conn = connect(&server_ctx, &client_ctx, Hooks::at_certificate(calls), None);
    assert_eq!(
        ca_names_seen_by_client(&conn),
        der_names([client_pki.root.cert.subject_name()])
    );
}

// ---- get_full_client_certificate_chain -----------------------------------------------------

fn mtls_hooks() -> Hooks {
    Hooks {
        certificate: hook(|ssl| request_client_certificate(ssl, None).unwrap()),
        ..Default::default()
    }
}

#[test]
fn chain_is_leaf_then_intermediates_encoded_once() {
    for version in VERSIONS {
        for kind in KEY_KINDS {
            let client_pki = Pki::get("client", kind);
            let server_ctx = server_context(Pki::get("server", kind), version).build();
            let client_ctx = client_context(Some(client_pki), version).build();
            let conn = connect(&server_ctx, &client_ctx, mtls_hooks(), None);
            let server = conn.server();
            let (ptr1, pem1) = chain0(server).unwrap().expect("a chain");
            assert_eq!(pem1, client_pki.chain_pem(), "{version:?} {kind:?}");
            let (ptr2, pem2) = chain0(server).unwrap().expect("a chain");
            assert_eq!(
                ptr1, ptr2,
                "the second call hands out the cached bytes, not a new encoding"
            );
            assert_eq!(pem1, pem2);

            // The copying variant: size query, too small, exact fit.
            let (rc, needed, _) = chain_into(server.as_ptr(), 0);
            assert_eq!(
                (rc, needed),
                (KONG_CLIENT_TLS_BUFFER_TOO_SMALL, pem1.len() + 1)
            );
            let (rc, len, buf) = chain_into(server.as_ptr(), needed - 1);
            assert_eq!((rc, len), (KONG_CLIENT_TLS_BUFFER_TOO_SMALL, needed));
            assert!(
                buf.iter().all(|&b| b == 0xAA),
                "nothing copied when too small"
            );
            let (rc, len, buf) = chain_into(server.as_ptr(), needed);
            assert_eq!((rc, len), (KONG_CLIENT_TLS_OK, pem1.len()));
            assert_eq!(&buf[..len], pem1.as_bytes());
            assert_eq!(buf[len], 0);
        }
    }
}

#[test]
fn chain_without_client_certificate_is_no_certificate() {
    for version in VERSIONS {
        let server_ctx = server_ctx(version);
        let client_ctx = client_context(None, version).build();
        for hooks in [mtls_hooks(), Hooks::default()] {
            let conn = connect(&server_ctx, &client_ctx, hooks, None);
            assert_eq!(chain0(conn.server()).unwrap(), None);
            let (rc, len, _) = chain_into(conn.server().as_ptr(), 64);
            assert_eq!((rc, len), (KONG_CLIENT_TLS_NO_CERTIFICATE, 0));
        }
    }
}

#[test]
fn chain_on_resumed_sessions() {
    let client_pki = Pki::get("client", KeyKind::EcdsaP256);
    // Resumable mutual TLS: the request made at ClientHello time, with a CA set.
    let root = client_pki.root.cert.clone();
    let bound_mtls = move || {
        let root = root.clone();
        Hooks::at_client_hello(hook(move |ssl| {
            request_client_certificate(ssl, Some(&CertStack::new(&[&root]))).unwrap()
        }))
    };
    for path in SessionPath::ALL {
        let (server_ctx, _) = path_context(path);
        let client_ctx = client_context(Some(client_pki), path.version()).build();
        let first = connect(&server_ctx, &client_ctx, bound_mtls(), None);
        let session = first.client_session().unwrap();
        let resumed = connect(&server_ctx, &client_ctx, bound_mtls(), Some(&session));
        assert!(resumed.server().session_reused(), "{path:?}");
        let (_, pem) = chain0(resumed.server())
            .unwrap()
            .expect("the peer certificate survives resumption");
        let leaf = String::from_utf8(client_pki.leaf.cert.to_pem().unwrap()).unwrap();
        // OpenSSL keeps the sent chain only in sessions it keeps in memory; a session
        // rebuilt from a ticket or an external cache only has the leaf.
        let expected = if path.keeps_session_object() {
            client_pki.chain_pem()
        } else {
            leaf
        };
        assert_eq!(pem, expected, "{path:?}");
    }
}

// ---- disable_session_reuse -----------------------------------------------------------------

/// A server context that resumes only through `path`, and its external cache.
fn path_context(path: SessionPath) -> (SslContext, ExternalCache) {
    let mut ctx = server_context(Pki::get("server", KeyKind::EcdsaP256), path.version());
    let cache = path.configure(&mut ctx);
    (ctx.build(), cache)
}

fn internal_cache_size(ctx: &SslContext) -> i64 {
    // SAFETY: live context; SSL_CTX_sess_number reads a counter.
    unsafe { SSL_CTX_ctrl(ctx.as_ptr(), SSL_CTRL_SESS_NUMBER, 0, ptr::null_mut()) }
}

#[test]
fn disable_session_reuse_closes_every_resumption_path() {
    for path in SessionPath::ALL {
        for called_from in ["certificate", "client_hello"] {
            let (server_ctx, external) = path_context(path);
            let client_ctx = client_context(None, path.version()).build();
            let disable = hook(|ssl| disable_session_reuse(ssl).unwrap());
            let hooks = if called_from == "certificate" {
                Hooks::at_certificate(disable)
            } else {
                Hooks::at_client_hello(disable)
            };
            let case = format!("{path:?} from {called_from}");

            // The connection that disabled reuse hands out nothing resumable…
            let disabled = connect(&server_ctx, &client_ctx, hooks, None);
            let session = disabled.client_session().unwrap();
            assert!(
                !is_resumable(&session),
                "{case}: the client got a resumable session"
            );
            assert_eq!(
                internal_cache_size(&server_ctx),
                0,
                "{case}: internal cache"
            );
            assert!(
                external.lock().unwrap().is_empty(),
                "{case}: external cache"
            );
            let retry = connect(&server_ctx, &client_ctx, Hooks::default(), Some(&session));
            assert!(
                retry.client.is_ok() && retry.server.is_ok(),
                "{case}: the retry is a clean full handshake"
            );
            assert!(!retry.server().session_reused(), "{case}: resumed");

            // …while the control connection on the same context resumes.
            let control = connect(&server_ctx, &client_ctx, Hooks::default(), None);
            let session = control.client_session().unwrap();
            assert!(is_resumable(&session), "{case}: control session");
            let resumed = connect(&server_ctx, &client_ctx, Hooks::default(), Some(&session));
            assert!(
                resumed.server().session_reused(),
                "{case}: control resumption"
            );
        }
    }
}

// ---- bad input and wrong state -------------------------------------------------------------

#[test]
fn null_and_client_side_ssl_are_refused() {
    let client_ctx = client_context(None, SslVersion::TLS1_3).build();
    let client = Ssl::new(&client_ctx).unwrap();
    let cases: [(*mut SSL, &str); 2] = [
        (ptr::null_mut(), "ssl is NULL"),
        (
            client.as_ptr(),
            "ssl is a client-side connection; a server-side SSL is required",
        ),
    ];
    for (ssl, expected) in cases {
        assert_eq!(request_client_certificate(ssl, None), Err(expected.into()));
        assert_eq!(disable_session_reuse(ssl), Err(expected.into()));
        let (mut pem, mut len, mut err) = (ptr::null(), 0usize, ptr::null());
        // SAFETY: pointers are NULL or live.
        let rc = unsafe {
            kong_client_tls_get0_full_client_certificate_chain(ssl, &mut pem, &mut len, &mut err)
        };
        assert_eq!(
            (rc, message(err)),
            (KONG_CLIENT_TLS_ERROR, expected.to_owned())
        );
        let mut err = ptr::null();
        let mut len = 0usize;
        // SAFETY: as above.
        let rc = unsafe {
            kong_client_tls_get_full_client_certificate_chain(
                ssl,
                ptr::null_mut(),
                &mut len,
                &mut err,
            )
        };
        assert_eq!(
            (rc, message(err)),
            (KONG_CLIENT_TLS_ERROR, expected.to_owned())
        );
        // A NULL `err` is allowed: still an error, no crash.
        // SAFETY: as above.
        assert_eq!(
            unsafe { kong_client_tls_disable_session_reuse(ssl, ptr::null_mut()) },
            KONG_CLIENT_TLS_ERROR
        );
    }
}

#[test]
fn bad_ca_certs_are_refused_and_change_nothing() {
    let server_ctx = server_ctx(SslVersion::TLS1_3);
    let ssl = Ssl::new(&server_ctx).unwrap();
    let root = Pki::get("client", KeyKind::EcdsaP256).root.cert.clone();
    let empty = CertStack::new(&[]);
    let mut with_null = CertStack::new(&[&root]);
    with_null.push_null();
    assert_eq!(
        request_client_certificate(ssl.as_ptr(), Some(&empty)),
        Err("ca_certs is an empty certificate stack".into())
    );
    assert_eq!(
        request_client_certificate(ssl.as_ptr(), Some(&with_null)),
        Err("ca_certs contains a NULL certificate".into())
    );
    assert_eq!(
        ssl.verify_mode(),
        SslVerifyMode::NONE,
        "a refused call leaves the connection as it was"
    );
}

#[test]
fn chain_out_parameters_are_checked() {
    let server_ctx = server_ctx(SslVersion::TLS1_3);
    let ssl = Ssl::new(&server_ctx).unwrap();
    let mut err = ptr::null();
    let mut pem = ptr::null();
    let mut len = 16usize;
    // SAFETY: pointers are NULL or live.
    unsafe {
        assert_eq!(
            kong_client_tls_get0_full_client_certificate_chain(
                ssl.as_ptr(),
                ptr::null_mut(),
                &mut len,
                &mut err
            ),
            KONG_CLIENT_TLS_ERROR
        );
        assert_eq!(message(err), "pem and len must not be NULL");
        assert_eq!(
            kong_client_tls_get0_full_client_certificate_chain(
                ssl.as_ptr(),
                &mut pem,
                ptr::null_mut(),
                &mut err
            ),
            KONG_CLIENT_TLS_ERROR
        );
        assert_eq!(
            kong_client_tls_get_full_client_certificate_chain(
                ssl.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut err
            ),
            KONG_CLIENT_TLS_ERROR
        );
        assert_eq!(message(err), "len must not be NULL");
        assert_eq!(
            kong_client_tls_get_full_client_certificate_chain(
                ssl.as_ptr(),
                ptr::null_mut(),
                &mut len,
                &mut err
            ),
            KONG_CLIENT_TLS_ERROR
        );
        assert_eq!(message(err), "buf is NULL but *len is not 0");
    }
}

#[test]
fn hello_phase_functions_refuse_a_finished_handshake() {
    let server_ctx = server_ctx(SslVersion::TLS1_3);
    let client_ctx = client_context(None, SslVersion::TLS1_3).build();
    let conn = connect(&server_ctx, &client_ctx, Hooks::default(), None);
    let server = conn.server().as_ptr();
    let expected = "the handshake is past the ClientHello; call this from the client hello or certificate callback";
    assert_eq!(
        request_client_certificate(server, None),
        Err(expected.into())
    );
    assert_eq!(disable_session_reuse(server), Err(expected.into()));
}

/// The one OpenSSL internal the library reads as a number (docs/openssl-internals.md): the
/// handshake state in which the client hello and certificate callbacks run, 20 before
/// OpenSSL 3.2 and 22 from 3.2 on. Every mutual-TLS test fails when the library's table is
/// wrong for the running line; this one says why. The OpenSSL matrix runs it per line.
#[test]
fn hello_and_certificate_callbacks_run_in_the_state_the_library_expects() {
    let expected = if openssl::version::number() >= 0x3020_0000 {
        22
    } else {
        20
    };
    for version in VERSIONS {
        let name = format!("{version:?}");
        let server_ctx = server_ctx(version);
        let client_ctx = client_context(None, version).build();
        let seen: Arc<Mutex<Vec<(&str, c_int)>>> = Arc::default();
        let record = |callback: &'static str| {
            let seen = seen.clone();
            // SAFETY: OpenSSL passes the live server SSL to the callback.
            hook(move |ssl| {
                seen.lock()
                    .unwrap()
                    .push((callback, unsafe { SSL_get_state(ssl) }))
            })
        };
        let hooks = Hooks {
            client_hello: record("client hello"),
            certificate: record("certificate"),
            ..Hooks::default()
        };
        let conn = connect(&server_ctx, &client_ctx, hooks, None);
        assert!(conn.server.is_ok(), "{name}: handshake failed");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [("client hello", expected), ("certificate", expected)],
            "{name}: {}",
            openssl::version::version()
        );
    }
}

// ---- versions, libssl, threads -------------------------------------------------------------

#[test]
fn versions_and_libssl_identity() {
    // SAFETY: static string.
    let version = unsafe { CStr::from_ptr(kong_client_tls_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    // SAFETY: no preconditions.
    assert_eq!(kong_client_tls_openssl_version_num(), unsafe {
        openssl_sys::OpenSSL_version_num()
    });
    let mut err = ptr::null();
    // This test binary links the same libssl.so.3 the library uses.
    // SAFETY: `err` is writable.
    assert_eq!(
        unsafe { kong_client_tls_check_libssl(&mut err) },
        KONG_CLIENT_TLS_OK
    );
}

#[test]
fn concurrent_connections_on_many_threads() {
    let client_pki = Pki::get("client", KeyKind::EcdsaP256);
    let server_ctx = server_ctx(SslVersion::TLS1_3);
    let client_ctx = client_context(Some(client_pki), SslVersion::TLS1_3).build();
    let ca = Arc::new(SendStack(CertStack::new(&[&client_pki.root.cert])));
    std::thread::scope(|scope| {
        for _ in 0..6 {
            let (server_ctx, client_ctx, ca) = (&server_ctx, &client_ctx, ca.clone());
            scope.spawn(move || {
                for _ in 0..15 {
                    let ca = ca.clone();
                    let hooks = Hooks {
                        certificate: hook(move |ssl| {
                            request_client_certificate(ssl, Some(&ca.0)).unwrap();
                            disable_session_reuse(ssl).unwrap();
                        }),
                        ..Default::default()
                    };
                    let conn = connect(server_ctx, client_ctx, hooks, None);
                    let (_, pem) = chain0(conn.server()).unwrap().unwrap();
                    assert_eq!(pem, client_pki.chain_pem());
                    assert!(!is_resumable(&conn.client_session().unwrap()));
                }
            });
        }
    });
}
