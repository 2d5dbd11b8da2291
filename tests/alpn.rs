//! `disable_http2_alpn` on real handshakes, against a server whose ALPN callback we do
//! not control (it behaves like nginx's: server preference, fatal alert on no overlap).

mod support;

use std::ffi::{c_char, c_uchar, CStr};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foreign_types::ForeignTypeRef;
use kong_client_tls::internal::wire;
use kong_client_tls::KONG_CLIENT_TLS_OK;
use kong_client_tls::{
    kong_client_tls_alpn_select_cb, kong_client_tls_disable_http2_alpn, KongClientTlsProtocols,
};
use openssl::ssl::{
    select_next_proto, AlpnError, NameType, Ssl, SslContext, SslContextBuilder, SslOptions,
    SslSession, SslSessionCacheMode, SslVersion,
};
use openssl_sys::SSL;
use support::memtls::{
    client_context, connect, connect_ssl, count_client_hellos, hook, server_context, Connection,
    Hooks, VERSIONS,
};
use support::pki::{KeyKind, Pki};

const NGINX_PROTOCOLS: &[u8] = b"\x02h2\x08http/1.1";
const H2_AND_HTTP11: &[u8] = b"\x02h2\x08http/1.1";
const ONLY_H2: &[u8] = b"\x02h2";
const GREASE_H2_HTTP11: &[u8] = b"\x02\x0a\x0a\x02h2\x08http/1.1";

fn disable_http2_alpn(ssl: *mut SSL) -> Result<(), String> {
    let mut err: *const c_char = ptr::null();
    // SAFETY: pointers are NULL or live.
    match unsafe { kong_client_tls_disable_http2_alpn(ssl, &mut err) } {
        KONG_CLIENT_TLS_OK => Ok(()),
        // SAFETY: static message.
        _ => Err(unsafe { CStr::from_ptr(err) }.to_str().unwrap().to_owned()),
    }
}

/// An ALPN callback like nginx's `ngx_http_ssl_alpn_select`.
fn nginx_like_alpn(ctx: &mut SslContextBuilder) {
    ctx.set_alpn_select_callback(|_, client| {
        select_next_proto(NGINX_PROTOCOLS, client).ok_or(AlpnError::ALERT_FATAL)
    });
}

fn server(version: SslVersion) -> SslContextBuilder {
    let mut ctx = server_context(Pki::get("server", KeyKind::EcdsaP256), version);
    nginx_like_alpn(&mut ctx);
    ctx
}

fn client(version: SslVersion, alpn: Option<&[u8]>) -> SslContext {
    let mut ctx = client_context(None, version);
    if let Some(alpn) = alpn {
        ctx.set_alpn_protos(alpn).unwrap();
    }
    ctx.build()
}

/// Hooks that call `disable_http2_alpn` from the client hello callback the first time it
/// runs for a connection, as nginx runs `ssl_client_hello_by_lua` once; counts calls.
fn disable_once(client_hellos: Arc<AtomicUsize>) -> Hooks {
    Hooks {
        client_hello: hook(move |ssl| {
            if client_hellos.fetch_add(1, Ordering::SeqCst) == 0 {
                disable_http2_alpn(ssl).unwrap();
            }
        }),
        ..Default::default()
    }
}

fn disabled() -> Hooks {
    disable_once(Arc::new(AtomicUsize::new(0)))
}

fn selected(conn: &Connection) -> Option<Vec<u8>> {
    let client = conn.client().selected_alpn_protocol().map(<[u8]>::to_vec);
    assert_eq!(
        client.as_deref(),
        conn.server().selected_alpn_protocol(),
        "both ends agree"
    );
    client
}

fn assert_no_application_protocol(conn: &Connection, case: &str) {
    let err = conn
        .client
        .as_ref()
        .err()
        .unwrap_or_else(|| panic!("{case}: handshake must fail"));
    // The alert's number, not its text: OpenSSL 3.2.1 has no string for reason 1120
    // ("reason(1120)" instead of "tlsv1 alert no application protocol").
    assert!(
        err.contains("SSL alert number 120"),
        "{case}: no no_application_protocol alert (120): {err}"
    );
    assert!(conn.server.is_err(), "{case}");
}

#[test]
fn h2_is_refused_only_where_disabled() {
    for version in VERSIONS {
        let server_ctx = server(version).build();
        for offer in [H2_AND_HTTP11, GREASE_H2_HTTP11] {
            let case = format!("{version:?} offer {offer:?}");
            let client_ctx = client(version, Some(offer));
            let conn = connect(&server_ctx, &client_ctx, disabled(), None);
            assert_eq!(selected(&conn).as_deref(), Some(&b"http/1.1"[..]), "{case}");
            let control = connect(&server_ctx, &client_ctx, Hooks::default(), None);
            assert_eq!(
                selected(&control).as_deref(),
                Some(&b"h2"[..]),
                "{case}: control"
            );
        }

        let only_h2 = client(version, Some(ONLY_H2));
        assert_no_application_protocol(
            &connect(&server_ctx, &only_h2, disabled(), None),
            &format!("{version:?} only h2"),
        );
        let control = connect(&server_ctx, &only_h2, Hooks::default(), None);
        assert_eq!(selected(&control).as_deref(), Some(&b"h2"[..]));

        let no_alpn = client(version, None);
        let conn = connect(&server_ctx, &no_alpn, disabled(), None);
        assert!(
            conn.server.is_ok() && conn.client.is_ok(),
            "{version:?}: no ALPN is unaffected"
        );
        assert_eq!(selected(&conn), None);
    }
}

/// Server offers P-256 only; the client's first key share is X25519: OpenSSL answers the
/// first ClientHello with a HelloRetryRequest, and the second ClientHello — for which the
/// hook does not run again, as in nginx — must still lose `h2`.
fn hrr_pair(alpn: &[u8]) -> (SslContext, SslContext) {
    let mut server_ctx = server(SslVersion::TLS1_3);
    server_ctx.set_groups_list("P-256").unwrap();
    let mut client_ctx = client_context(None, SslVersion::TLS1_3);
    client_ctx.set_groups_list("X25519:P-256").unwrap();
    client_ctx.set_alpn_protos(alpn).unwrap();
    (server_ctx.build(), client_ctx.build())
}

/// A client `SSL` that counts the ClientHellos it sends.
fn counting_client(ctx: &SslContext) -> (Ssl, Arc<AtomicUsize>) {
    let mut ssl = Ssl::new(ctx).unwrap();
    let counter = count_client_hellos(&mut ssl);
    (ssl, counter)
}

#[test]
fn h2_stays_refused_after_a_hello_retry_request() {
    let (server_ctx, client_ctx) = hrr_pair(H2_AND_HTTP11);
    let (ssl, sent) = counting_client(&client_ctx);
    let hook_runs = Arc::new(AtomicUsize::new(0));
    let conn = connect_ssl(&server_ctx, ssl, disable_once(hook_runs.clone()));
    assert_eq!(
        sent.load(Ordering::SeqCst),
        2,
        "a HelloRetryRequest made the client send a second ClientHello"
    );
    assert_eq!(
        hook_runs.load(Ordering::SeqCst),
        2,
        "OpenSSL ran the client hello callback twice"
    );
    assert_eq!(selected(&conn).as_deref(), Some(&b"http/1.1"[..]));

    // Offering only h2, the first ClientHello already gets the alert (OpenSSL selects
    // ALPN before it decides on a HelloRetryRequest).
    let (server_ctx, client_ctx) = hrr_pair(ONLY_H2);
    let (ssl, sent) = counting_client(&client_ctx);
    let conn = connect_ssl(&server_ctx, ssl, disabled());
    assert_no_application_protocol(&conn, "HRR, only h2");
    assert_eq!(sent.load(Ordering::SeqCst), 1);
}

/// Why the message callback exists: editing only the first ClientHello, as a hook that
/// nginx runs once would, lets the second ClientHello after a HelloRetryRequest win `h2`.
#[test]
fn editing_only_the_first_client_hello_loses_to_a_hello_retry_request() {
    let (server_ctx, client_ctx) = hrr_pair(H2_AND_HTTP11);
    let runs = Arc::new(AtomicUsize::new(0));
    let naive_once = Hooks {
        client_hello: hook(move |ssl| {
            if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                let (mut data, mut len) = (ptr::null::<c_uchar>(), 0usize);
                // SAFETY: in the client hello callback of a live SSL.
                unsafe {
                    assert_eq!(
                        openssl_sys::SSL_client_hello_get0_ext(ssl, 16, &mut data, &mut len),
                        1
                    );
                    assert!(
                        wire::hide_h2(std::slice::from_raw_parts_mut(data.cast_mut(), len))
                            .unwrap()
                            .is_some()
                    );
                }
            }
        }),
        ..Default::default()
    };
    let conn = connect(&server_ctx, &client_ctx, naive_once, None);
    assert_eq!(selected(&conn).as_deref(), Some(&b"h2"[..]));
}

#[derive(Clone, Copy, Debug)]
enum Resumption {
    Tls13Ticket,
    Tls13TicketAfterHelloRetry,
    Tls12Ticket,
    Tls12SessionId,
}

impl Resumption {
    fn contexts(self) -> (SslContext, SslContext) {
        match self {
            Resumption::Tls13TicketAfterHelloRetry => hrr_pair(H2_AND_HTTP11),
            Resumption::Tls13Ticket => (
                server(SslVersion::TLS1_3).build(),
                client(SslVersion::TLS1_3, Some(H2_AND_HTTP11)),
            ),
            Resumption::Tls12Ticket => {
                let mut ctx = server(SslVersion::TLS1_2);
                ctx.set_session_cache_mode(SslSessionCacheMode::OFF);
                (ctx.build(), client(SslVersion::TLS1_2, Some(H2_AND_HTTP11)))
            }
            Resumption::Tls12SessionId => {
                let mut ctx = server(SslVersion::TLS1_2);
                ctx.set_options(SslOptions::NO_TICKET);
                (ctx.build(), client(SslVersion::TLS1_2, Some(H2_AND_HTTP11)))
            }
        }
    }
}

impl Resumption {
    /// TLS 1.2 resumptions are kept; a TLS 1.3 PSK offered together with `h2` cannot be
    /// (its binder covers the ALPN bytes) and becomes a full handshake.
    fn kept(self) -> bool {
        matches!(self, Resumption::Tls12Ticket | Resumption::Tls12SessionId)
    }
}

#[test]
fn resumptions_never_negotiate_h2_and_never_fail() {
    for path in [
        Resumption::Tls13Ticket,
        Resumption::Tls13TicketAfterHelloRetry,
        Resumption::Tls12Ticket,
        Resumption::Tls12SessionId,
    ] {
        let (server_ctx, client_ctx) = path.contexts();
        // The session was made by a connection that got h2, and by one that did not.
        for first_hooks in [Hooks::default(), disabled()] {
            let first = connect(&server_ctx, &client_ctx, first_hooks, None);
            let session: SslSession = first.client_session().unwrap();
            let resumed = connect(&server_ctx, &client_ctx, disabled(), Some(&session));
            assert!(
                resumed.server.is_ok() && resumed.client.is_ok(),
                "{path:?}: {:?}",
                resumed.server.as_ref().err()
            );
            assert_eq!(
                resumed.server().session_reused(),
                path.kept(),
                "{path:?}: resumption kept?"
            );
            assert_eq!(
                selected(&resumed).as_deref(),
                Some(&b"http/1.1"[..]),
                "{path:?}"
            );
            let control = connect(&server_ctx, &client_ctx, Hooks::default(), Some(&session));
            assert!(
                control.server().session_reused(),
                "{path:?}: control resumes"
            );
            assert_eq!(
                selected(&control).as_deref(),
                Some(&b"h2"[..]),
                "{path:?}: control"
            );
        }
    }
}

#[test]
fn tls13_resumption_without_h2_in_the_offer_is_kept() {
    let server_ctx = server(SslVersion::TLS1_3).build();
    let client_ctx = client(SslVersion::TLS1_3, Some(b"\x08http/1.1"));
    let first = connect(&server_ctx, &client_ctx, disabled(), None);
    let session = first.client_session().unwrap();
    let resumed = connect(&server_ctx, &client_ctx, disabled(), Some(&session));
    assert!(
        resumed.server().session_reused(),
        "nothing was rewritten, so the PSK is used"
    );
    assert_eq!(selected(&resumed).as_deref(), Some(&b"http/1.1"[..]));
}

/// The premise of the PSK-mode rewrite, kept honest: editing the ALPN bytes alone makes
/// OpenSSL reject a TLS 1.3 resumption outright ("binder does not verify"). If a future
/// OpenSSL stops checking the binder over the raw message, this fails and docs/alpn.md
/// must be revisited (the resumption could then be kept).
#[test]
fn a_naive_in_place_edit_breaks_tls13_resumption() {
    let (server_ctx, client_ctx) = Resumption::Tls13Ticket.contexts();
    let first = connect(&server_ctx, &client_ctx, Hooks::default(), None);
    let session = first.client_session().unwrap();
    let naive = Hooks {
        client_hello: hook(|ssl| {
            let (mut data, mut len) = (ptr::null::<c_uchar>(), 0usize);
            // SAFETY: in the client hello callback of a live SSL.
            unsafe {
                assert_eq!(
                    openssl_sys::SSL_client_hello_get0_ext(ssl, 16, &mut data, &mut len),
                    1
                );
                let ext = std::slice::from_raw_parts_mut(data.cast_mut(), len);
                assert!(wire::hide_h2(ext).unwrap().is_some());
            }
        }),
        ..Default::default()
    };
    let broken = connect(&server_ctx, &client_ctx, naive, Some(&session));
    let err = broken
        .server
        .as_ref()
        .expect_err("the naive edit must break the binder");
    assert!(err.contains("binder"), "{err}");
}

#[test]
fn sni_switch_to_another_context_still_refuses_h2() {
    for version in VERSIONS {
        let mut other = server_context(Pki::get("other server", KeyKind::EcdsaP256), version);
        nginx_like_alpn(&mut other);
        let other = other.build();
        let mut front = server(version);
        let switch_to = other.clone();
        front.set_servername_callback(move |ssl, _| {
            if ssl.servername(NameType::HOST_NAME) == Some("other.test") {
                ssl.set_ssl_context(&switch_to).unwrap();
            }
            Ok(())
        });
        let front = front.build();
        let client_ctx = client(version, Some(H2_AND_HTTP11));
        for (hooks, want) in [
            (disabled(), &b"http/1.1"[..]),
            (Hooks::default(), &b"h2"[..]),
        ] {
            let mut ssl = Ssl::new(&client_ctx).unwrap();
            ssl.set_hostname("other.test").unwrap();
            let conn = connect_ssl(&front, ssl, hooks);
            let peer = conn.client().peer_certificate().unwrap();
            let cn = peer
                .subject_name()
                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                .next()
                .unwrap();
            assert_eq!(
                cn.data().as_slice(),
                b"other server leaf",
                "{version:?}: SNI picked the other context"
            );
            assert_eq!(selected(&conn).as_deref(), Some(want), "{version:?}");
        }
    }
}

#[test]
fn c_servers_alpn_select_callback_honours_the_switch() {
    // Declared first, so it is dropped after every context that points to it.
    let protocols = Box::new(KongClientTlsProtocols {
        data: NGINX_PROTOCOLS.as_ptr(),
        len: NGINX_PROTOCOLS.len(),
    });
    for version in VERSIONS {
        let ctx = server_context(Pki::get("server", KeyKind::EcdsaP256), version);
        // SAFETY: the callback and its argument (kept until the end of the test) outlive
        // the context.
        unsafe {
            openssl_sys::SSL_CTX_set_alpn_select_cb__fixed_rust(
                ctx.as_ptr(),
                Some(kong_client_tls_alpn_select_cb),
                ptr::from_ref(&*protocols).cast_mut().cast(),
            );
        }
        let server_ctx = ctx.build();
        let both = client(version, Some(H2_AND_HTTP11));
        let conn = connect(&server_ctx, &both, Hooks::default(), None);
        assert_eq!(selected(&conn).as_deref(), Some(&b"h2"[..]));
        let conn = connect(&server_ctx, &both, disabled(), None);
        assert_eq!(selected(&conn).as_deref(), Some(&b"http/1.1"[..]));
        // Called before the handshake: the message callback edits the first ClientHello.
        let before = Hooks {
            before_handshake: hook(|ssl| disable_http2_alpn(ssl).unwrap()),
            ..Default::default()
        };
        let conn = connect(&server_ctx, &both, before, None);
        assert_eq!(selected(&conn).as_deref(), Some(&b"http/1.1"[..]));
        let only_h2 = client(version, Some(ONLY_H2));
        assert_no_application_protocol(
            &connect(&server_ctx, &only_h2, disabled(), None),
            "C callback, only h2",
        );
    }
}

#[test]
fn wrong_moments_and_bad_pointers_are_refused() {
    let expected =
        "the ClientHello is no longer available; call this from the client hello callback";
    let server_ctx = server(SslVersion::TLS1_3).build();
    let client_ctx = client(SslVersion::TLS1_3, Some(H2_AND_HTTP11));
    let from_certificate = Arc::new(std::sync::Mutex::new(None));
    let seen = from_certificate.clone();
    let hooks = Hooks::at_certificate(hook(move |ssl| {
        *seen.lock().unwrap() = Some(disable_http2_alpn(ssl))
    }));
    let conn = connect(&server_ctx, &client_ctx, hooks, None);
    assert_eq!(
        from_certificate.lock().unwrap().clone(),
        Some(Err(expected.to_owned()))
    );
    assert_eq!(
        selected(&conn).as_deref(),
        Some(&b"h2"[..]),
        "a refused call changes nothing"
    );
    assert_eq!(
        disable_http2_alpn(conn.server().as_ptr()),
        Err(expected.to_owned())
    );
    assert_eq!(
        disable_http2_alpn(ptr::null_mut()),
        Err("ssl is NULL".to_owned())
    );
    let client_ssl = Ssl::new(&client_ctx).unwrap();
    assert_eq!(
        disable_http2_alpn(client_ssl.as_ptr()),
        Err("ssl is a client-side connection; a server-side SSL is required".to_owned())
    );
}
