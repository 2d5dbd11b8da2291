//! `kong_client_tls_check_request` and `kong_client_tls_get0_request_server_name` on real
//! in-process handshakes (TLS 1.2 and 1.3), with the certificate requested from the
//! client hello and from the certificate callback: which requests may see the verdict a
//! connection's handshake made, and which name it was made for. The same rule through
//! real nginx: `tests/nginx_misdirected.rs`.

mod support;

use std::sync::{Arc, Mutex};

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::ssl::{Ssl, SslContext, SslSession, SslVersion};
use openssl::x509::X509;
use openssl_sys::SSL;
use support::api::{
    check_request, request_client_certificate, request_client_certificate_for_server,
    request_server_name, CertStack,
};
use support::memtls::{
    client_context, client_context_presenting, connect_ssl, hook, server_context, Connection, Hooks,
};
use support::memtls::{ClosureHook, VERSIONS};
use support::pki::{KeyKind, Pki};

const TENANT_A: usize = 0xA;
const TENANT_B: usize = 0xB;

/// The server context, with a servername callback that accepts every name, as nginx's
/// does: only then does OpenSSL keep the name with a TLS 1.2 session.
fn server_ctx(version: SslVersion) -> SslContext {
    let mut ctx = server_context(Pki::get("server", KeyKind::EcdsaP256), version);
    ctx.set_servername_callback(|_, _| Ok(()));
    ctx.build()
}

fn client_pki() -> &'static Pki {
    Pki::get("client", KeyKind::EcdsaP256)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    ClientHello,
    Certificate,
}

const FORMS: [Form; 2] = [Form::ClientHello, Form::Certificate];

/// Hooks that request a certificate (CA: the client's root) in `form`, tagged `server`.
fn requesting(form: Form, server: usize) -> Hooks {
    let root: X509 = client_pki().root.cert.clone();
    let request: Option<ClosureHook> = hook(move |ssl: *mut SSL| {
        let stack = CertStack::new(&[&root]);
        request_client_certificate_for_server(ssl, Some(&stack), server).unwrap();
    });
    match form {
        Form::ClientHello => Hooks::at_client_hello(request),
        Form::Certificate => Hooks::at_certificate(request),
    }
}

/// A handshake of a client presenting its certificate, sending `sni`.
fn handshake(
    version: SslVersion,
    sni: Option<&str>,
    session: Option<&SslSession>,
    hooks: Hooks,
) -> Connection {
    handshake_with(&server_ctx(version), version, sni, session, hooks)
}

/// [`handshake`] on `server_ctx`, offering `session`.
fn handshake_with(
    server_ctx: &SslContext,
    version: SslVersion,
    sni: Option<&str>,
    session: Option<&SslSession>,
    hooks: Hooks,
) -> Connection {
    // Issued by the root itself: verify depth 0 (Kong's) accepts it.
    let client_ctx =
        client_context_presenting(version, Some(&client_pki().direct_leaf), &[]).build();
    let mut client = Ssl::new(&client_ctx).unwrap();
    if let Some(sni) = sni {
        client.set_hostname(sni).unwrap();
    }
    if let Some(session) = session {
        // SAFETY: the session comes from a client of the same settings.
        unsafe { client.set_session(session).unwrap() };
    }
    let conn = connect_ssl(server_ctx, client, hooks);
    assert_eq!(
        conn.server().verify_result(),
        openssl::x509::X509VerifyResult::OK,
        "the client's certificate verifies"
    );
    conn
}

fn check(conn: &Connection, host: Option<&str>, server: usize) -> bool {
    check_request(conn.server().as_ptr(), host.map(str::as_bytes), server).unwrap()
}

/// Without a host (a C caller's; nginx's `$host` is never missing) the tags decide.
fn no_host_is_judged_by_the_tags(conn: &Connection, what: &str) {
    assert!(check(conn, None, TENANT_A), "{what}: no host, same server");
    assert!(
        !check(conn, None, TENANT_B),
        "{what}: no host, another server"
    );
}

#[test]
fn with_sni_only_requests_for_that_name_see_the_verdict() {
    for version in VERSIONS {
        for form in FORMS {
            let conn = handshake(version, Some("A.Test"), None, requesting(form, TENANT_A));
            let what = format!("{version:?} {form:?}");
            for same in ["a.test", "A.TEST", "a.test:443", "a.test.", "a.test.:8443"] {
                assert!(check(&conn, Some(same), TENANT_B), "{what}: {same}");
            }
            for other in [
                "b.test",
                "a.test.b",
                "www.a.test",
                "",
                "a..test",
                "a.test/x",
                ":443",
            ] {
                assert!(!check(&conn, Some(other), TENANT_A), "{what}: {other:?}");
            }
            no_host_is_judged_by_the_tags(&conn, &what);
            assert_eq!(
                request_server_name(conn.server().as_ptr()),
                Ok(Some(Some("a.test".to_string()))),
                "{what}: the name as nginx stores it"
            );
        }
    }
}

#[test]
fn without_sni_only_requests_routed_to_the_requesting_server_see_the_verdict() {
    for version in VERSIONS {
        for form in FORMS {
            let conn = handshake(version, None, None, requesting(form, TENANT_A));
            let what = format!("{version:?} {form:?}");
            assert!(check(&conn, Some("a.test"), TENANT_A), "{what}");
            assert!(
                check(&conn, Some("127.0.0.1"), TENANT_A),
                "{what}: any host"
            );
            assert!(
                !check(&conn, Some("a.test"), TENANT_B),
                "{what}: another server"
            );
            assert!(
                !check(&conn, Some("a.test"), 0),
                "{what}: no tag proves nothing"
            );
            no_host_is_judged_by_the_tags(&conn, &what);
            assert_eq!(
                request_server_name(conn.server().as_ptr()),
                Ok(Some(None)),
                "{what}"
            );
        }
    }
}

#[test]
fn an_untagged_request_without_sni_fails_closed() {
    let root = client_pki().root.cert.clone();
    let untagged = hook(move |ssl| {
        request_client_certificate(ssl, Some(&CertStack::new(&[&root]))).unwrap();
    });
    let conn = handshake(
        SslVersion::TLS1_3,
        None,
        None,
        Hooks::at_certificate(untagged),
    );
    assert!(!check(&conn, Some("a.test"), TENANT_A));
    assert!(!check(&conn, Some("a.test"), 0));
}

#[test]
fn a_sni_name_nginx_refuses_counts_as_none() {
    // OpenSSL sends and takes "a..test"; nginx refuses it as a host name and serves the
    // connection as one without SNI, from the default server.
    let conn = handshake(
        SslVersion::TLS1_3,
        Some("a..test"),
        None,
        requesting(Form::Certificate, TENANT_A),
    );
    assert_eq!(request_server_name(conn.server().as_ptr()), Ok(Some(None)));
    assert!(check(&conn, Some("a.test"), TENANT_A));
    assert!(!check(&conn, Some("a..test"), TENANT_B));
}

#[test]
fn a_connection_without_a_request_is_never_touched() {
    for version in VERSIONS {
        let conn = handshake(version, Some("a.test"), None, Hooks::default());
        for host in [Some("b.test"), Some(""), None] {
            assert!(check(&conn, host, TENANT_B), "{version:?} {host:?}");
            assert!(check(&conn, host, 0), "{version:?} {host:?}");
        }
        assert_eq!(request_server_name(conn.server().as_ptr()), Ok(None));
    }
}

#[test]
fn a_resumed_session_keeps_the_name_its_verdict_was_made_for() {
    for version in VERSIONS {
        let ctx = server_ctx(version);
        let full = handshake_with(
            &ctx,
            version,
            Some("a.test"),
            None,
            requesting(Form::ClientHello, TENANT_A),
        );
        let session = full.client_session().expect("a session");
        let resumed = handshake_with(
            &ctx,
            version,
            Some("a.test"),
            Some(&session),
            requesting(Form::ClientHello, TENANT_A),
        );
        assert!(resumed.server().session_reused(), "{version:?}: resumed");
        assert!(check(&resumed, Some("a.test"), TENANT_B), "{version:?}");
        assert!(!check(&resumed, Some("b.test"), TENANT_A), "{version:?}");
        assert_eq!(
            request_server_name(resumed.server().as_ptr()),
            Ok(Some(Some("a.test".to_string())))
        );
    }
}

#[test]
fn a_tls12_session_keeps_no_name_unless_the_servername_callback_accepted_it() {
    let ctx = server_context(Pki::get("server", KeyKind::EcdsaP256), SslVersion::TLS1_2).build();
    let hooks = || requesting(Form::ClientHello, TENANT_A);
    let full = handshake_with(&ctx, SslVersion::TLS1_2, Some("a.test"), None, hooks());
    assert!(
        check(&full, Some("a.test"), TENANT_B),
        "the full handshake has the name"
    );
    let session = full.client_session().expect("a session");
    let resumed = handshake_with(
        &ctx,
        SslVersion::TLS1_2,
        Some("a.test"),
        Some(&session),
        hooks(),
    );
    assert!(resumed.server().session_reused());
    assert_eq!(
        request_server_name(resumed.server().as_ptr()),
        Ok(Some(None))
    );
    assert!(
        check(&resumed, Some("a.test"), TENANT_A),
        "the requesting server"
    );
    assert!(
        !check(&resumed, Some("a.test"), TENANT_B),
        "fails closed elsewhere"
    );
}

#[test]
fn a_repeated_certificate_phase_call_keeps_the_first_tag() {
    let root = client_pki().root.cert.clone();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let hooks = {
        let (hello_root, cert_root) = (root.clone(), root);
        let calls = calls.clone();
        Hooks {
            client_hello: hook(move |ssl| {
                let stack = CertStack::new(&[&hello_root]);
                request_client_certificate_for_server(ssl, Some(&stack), TENANT_A).unwrap();
            }),
            certificate: hook(move |ssl| {
                let stack = CertStack::new(&[&cert_root]);
                let r = request_client_certificate_for_server(ssl, Some(&stack), TENANT_B);
                calls.lock().unwrap().push(r);
            }),
            ..Default::default()
        }
    };
    let conn = handshake(SslVersion::TLS1_3, None, None, hooks);
    assert_eq!(
        *calls.lock().unwrap(),
        vec![Ok(())],
        "same CA set: no change"
    );
    assert!(check(&conn, Some("x"), TENANT_A));
    assert!(!check(&conn, Some("x"), TENANT_B));
}

#[test]
fn bad_pointers_are_refused_with_a_message() {
    assert_eq!(
        check_request(std::ptr::null_mut(), Some(b"a.test"), 0),
        Err("ssl is NULL".into())
    );
    assert_eq!(
        request_server_name(std::ptr::null_mut()),
        Err("ssl is NULL".into())
    );
    let ctx = client_context(None, SslVersion::TLS1_3).build();
    let mut client = Ssl::new(&ctx).unwrap();
    client.set_connect_state();
    let client_side = "ssl is a client-side connection; a server-side SSL is required";
    assert_eq!(
        check_request(client.as_ptr(), None, 0),
        Err(client_side.into())
    );
    assert_eq!(
        request_server_name(client.as_ptr()),
        Err(client_side.into())
    );
    let mut err = std::ptr::null();
    let mut len = 0usize;
    let server = Ssl::new(&server_ctx(SslVersion::TLS1_3)).unwrap();
    // SAFETY: live SSL; the NULL out-pointer is what is tested.
    let rc = unsafe {
        kong_client_tls::kong_client_tls_get0_request_server_name(
            server.as_ptr(),
            std::ptr::null_mut(),
            &mut len,
            &mut err,
        )
    };
    assert_eq!(rc, kong_client_tls::KONG_CLIENT_TLS_ERROR);
    assert_eq!(support::api::message(err), "name and len must not be NULL");
}
