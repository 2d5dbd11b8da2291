//! Session resumption never carries a client-certificate verdict to a connection that a
//! full handshake would verify differently (issue 12), on every resumption path, on real
//! in-process handshakes.
//!
//! The server mimics nginx: one listening context with its own session id context, one
//! context per name (each with its own), and the SNI switch done either by a servername
//! callback after the client hello callback (nginx up to 1.29.1) or inside the client hello
//! callback before the Lua handler (nginx 1.29.2 and later), followed by nginx's reset of
//! the verify mode, depth and options. The policy, like Lua code, picks a CA set by name.
//! Every case compares the resumed (or refused) connection's verdict with a fresh full
//! handshake on the same name.

mod support;

use std::collections::HashMap;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foreign_types::ForeignTypeRef;
use openssl::asn1::Asn1Time;
use openssl::ssl::{
    NameType, Ssl, SslContext, SslContextBuilder, SslMethod, SslRef, SslSession, SslVerifyMode,
    SslVersion,
};
use openssl::x509::{X509VerifyResult, X509};
use openssl_sys::SSL;
use support::api::{disable_session_reuse, request_client_certificate, CertStack};
use support::memtls::{
    client_context_presenting, connect_ssl, count_client_hellos, hook, install_hook_callbacks,
    ClosureHook, Connection, Hooks,
};
use support::pki::{issue, new_key, Identity, KeyKind, Pki};
use support::sessions::SessionPath;
use support::sys::{SSL_CTX_get_options, SSL_set_not_resumable_session_callback, SSL_set_options};

const NAMES: [&str; 3] = ["a.test", "b.test", "c.test"];

/// Where the connection's request for a client certificate is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `ssl_client_hello_by_lua`: the session is bound to what is verified.
    ClientHello,
    /// `ssl_certificate_by_lua` (Kong's placement): the session is never resumable.
    Certificate,
    /// The hole this issue closes, reproduced: what `ngx.ssl.verify_client(ca, 0)` does from
    /// the certificate callback, without the library.
    UnboundReference,
}

/// When the server switches to the context of the requested name.
#[derive(Clone, Copy, Debug)]
enum Switch {
    /// From the servername callback, after the client hello callback (nginx <= 1.29.1).
    AfterClientHello,
    /// Inside the client hello callback, before the policy runs (nginx >= 1.29.2).
    InClientHello,
}

const SWITCHES: [Switch; 2] = [Switch::AfterClientHello, Switch::InClientHello];

/// The CA set of each name; no entry: no client certificate requested.
type Policy = Arc<dyn Fn(&str) -> Option<Vec<X509>> + Send + Sync>;

struct Server {
    front: SslContext,
    form: Form,
    switch: Switch,
    policy: Policy,
}

fn key_kind() -> KeyKind {
    KeyKind::EcdsaP256
}

/// A server context as nginx makes one: one certificate for every name, a 20-byte session id
/// context of its own (nginx's SHA-1), the path's session settings.
fn context(path: SessionPath, sid_ctx: &[u8]) -> SslContextBuilder {
    let identity = Pki::get("server", key_kind());
    let mut ctx = SslContext::builder(SslMethod::tls_server()).unwrap();
    ctx.set_certificate(&identity.leaf.cert).unwrap();
    ctx.add_extra_chain_cert(identity.intermediate().cert.clone())
        .unwrap();
    ctx.set_private_key(&identity.leaf.key).unwrap();
    ctx.set_min_proto_version(Some(path.version())).unwrap();
    ctx.set_max_proto_version(Some(path.version())).unwrap();
    ctx.set_session_id_context(sid_ctx).unwrap();
    ctx.set_groups_list("X25519:P-256").unwrap();
    // Every server block may run certificate-phase Lua: the certificate callback belongs to
    // the context that SNI selects.
    install_hook_callbacks(&mut ctx);
    ctx
}

fn sid_ctx_of(label: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    let digest = openssl::sha::sha1(label.as_bytes());
    out.copy_from_slice(&digest);
    out
}

/// What nginx's `ngx_http_ssl_servername` does once it found the name's server.
fn switch_to(ssl: &mut SslRef, ctx: &SslContext) {
    ssl.set_ssl_context(ctx).unwrap();
    ssl.set_verify(ctx.verify_mode());
    ssl.param_mut().set_depth(100);
    // SAFETY: live SSL and context; options are ORed in, as nginx does.
    unsafe { SSL_set_options(ssl.as_ptr(), SSL_CTX_get_options(ctx.as_ptr())) };
}

/// The host name of the ClientHello being processed (test input, well formed).
fn hello_server_name(ssl: &SslRef) -> Option<String> {
    let (mut data, mut len) = (ptr::null(), 0usize);
    // SAFETY: called from the client hello callback; out-pointers are valid.
    let found =
        unsafe { openssl_sys::SSL_client_hello_get0_ext(ssl.as_ptr(), 0, &mut data, &mut len) };
    if found != 1 {
        return None;
    }
    // SAFETY: the extension body, `len` bytes, lives during the callback.
    let body = unsafe { std::slice::from_raw_parts(data, len) };
    // list length (2), name type (1), name length (2), name
    let name = body.get(5..)?;
    Some(String::from_utf8_lossy(name).into_owned())
}

fn request(ssl: *mut SSL, cas: &[X509]) -> Result<(), String> {
    request_client_certificate(ssl, Some(&CertStack::new(&cas.iter().collect::<Vec<_>>())))
}

/// What `ngx.ssl.verify_client(ca, 0)` does: no binding, no lifetime limit.
fn unbound_reference(ssl: &mut SslRef, cas: &[X509]) {
    let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
    for ca in cas {
        store.add_cert(ca.clone()).unwrap();
    }
    ssl.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    ssl.param_mut().set_depth(0);
    ssl.set_verify_cert_store(store.build()).unwrap();
}

impl Server {
    fn new(path: SessionPath, form: Form, switch: Switch, policy: Policy) -> Server {
        let sites: HashMap<&str, SslContext> = NAMES
            .iter()
            .map(|name| (*name, context(path, &sid_ctx_of(name)).build()))
            .collect();
        let mut front = context(path, &sid_ctx_of("default server"));
        path.configure(&mut front);
        let hooks_policy = policy.clone();
        let sites_in_hello = sites.clone();
        front.set_client_hello_callback(move |ssl, _| {
            let name = hello_server_name(ssl).unwrap_or_default();
            if let (Switch::InClientHello, Some(site)) = (switch, sites_in_hello.get(&*name)) {
                switch_to(ssl, site);
            }
            if form == Form::ClientHello {
                if let Some(cas) = hooks_policy(&name) {
                    request(ssl.as_ptr(), &cas).unwrap();
                }
            }
            Ok(openssl::ssl::ClientHelloResponse::SUCCESS)
        });
        if let Switch::AfterClientHello = switch {
            front.set_servername_callback(move |ssl, _| {
                let name = ssl.servername(NameType::HOST_NAME).unwrap_or("").to_owned();
                if let Some(site) = sites.get(&*name) {
                    switch_to(ssl, site);
                }
                Ok(())
            });
        }
        Server {
            front: front.build(),
            form,
            switch,
            policy,
        }
    }

    /// The certificate-phase hook of this server's form.
    fn certificate_hook(&self) -> Option<ClosureHook> {
        let policy = self.policy.clone();
        let form = self.form;
        hook(move |ssl| {
            // SAFETY: the hook runs on the live server SSL.
            let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
            let name = ssl.servername(NameType::HOST_NAME).unwrap_or("").to_owned();
            let Some(cas) = policy(&name) else { return };
            match form {
                Form::Certificate => request(ssl.as_ptr(), &cas).unwrap(),
                Form::UnboundReference => unbound_reference(ssl, &cas),
                Form::ClientHello => {}
            }
        })
    }

    /// One connection to `name` from a client presenting `client` (if any), offering
    /// `session` (if any).
    fn connect(
        &self,
        name: &str,
        client: Option<&Identity>,
        session: Option<&SslSession>,
        version: SslVersion,
    ) -> Connection {
        self.connect_ssl(name, client_ssl(client, version), session)
    }

    /// One connection to `name` whose certificate callback runs `certificate` instead of
    /// the form's own hook, whatever the outcome.
    fn connect_with(
        &self,
        name: &str,
        client: Option<&Identity>,
        version: SslVersion,
        certificate: Option<ClosureHook>,
    ) -> Connection {
        let mut ssl = client_ssl(client, version);
        ssl.set_hostname(name).unwrap();
        connect_ssl(&self.front, ssl, Hooks::at_certificate(certificate))
    }

    /// [`Server::connect`] with a client `SSL` the caller prepared.
    fn connect_ssl(&self, name: &str, mut ssl: Ssl, session: Option<&SslSession>) -> Connection {
        ssl.set_hostname(name).unwrap();
        if let Some(session) = session {
            // SAFETY: the session comes from a client context with the same settings.
            unsafe { ssl.set_session(session).unwrap() };
        }
        let conn = connect_ssl(
            &self.front,
            ssl,
            Hooks::at_certificate(self.certificate_hook()),
        );
        assert!(
            conn.server.is_ok() && conn.client.is_ok(),
            "{name} {:?} {:?}: handshake failed: server {:?} client {:?}",
            self.form,
            self.switch,
            conn.server.as_ref().err(),
            conn.client.as_ref().err()
        );
        conn
    }
}

fn client_ssl(identity: Option<&Identity>, version: SslVersion) -> Ssl {
    Ssl::new(&client_context_presenting(version, identity, &[]).build()).unwrap()
}

/// The verdict a server reports, as nginx's `$ssl_client_verify` derives it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    None,
    Success,
    Failed(i32),
}

fn verdict(server: &SslRef) -> Verdict {
    if server.peer_certificate().is_none() {
        return Verdict::None;
    }
    match server.verify_result() {
        X509VerifyResult::OK => Verdict::Success,
        other => Verdict::Failed(other.as_raw()),
    }
}

fn ca(label: &'static str) -> X509 {
    Pki::get(label, key_kind()).root.cert.clone()
}

/// a.test trusts CA A, b.test CA B, c.test requests nothing.
fn by_name() -> Policy {
    Arc::new(|name: &str| match name {
        "a.test" => Some(vec![ca("ca-a")]),
        "b.test" => Some(vec![ca("ca-b")]),
        _ => None,
    })
}

fn client_a() -> &'static Identity {
    &Pki::get("ca-a", key_kind()).direct_leaf
}

const FORMS: [Form; 2] = [Form::ClientHello, Form::Certificate];

#[test]
fn a_session_verified_on_one_name_never_resumes_on_another() {
    for path in SessionPath::ALL {
        for switch in SWITCHES {
            for form in FORMS {
                let server = Server::new(path, form, switch, by_name());
                let v = path.version();
                let case = format!("{path:?} {switch:?} {form:?}");
                let first = server.connect("a.test", Some(client_a()), None, v);
                assert_eq!(verdict(first.server()), Verdict::Success, "{case}");
                let session = first.client_session().unwrap();

                let fresh_b = server.connect("b.test", Some(client_a()), None, v);
                let offered_b = server.connect("b.test", Some(client_a()), Some(&session), v);
                assert!(
                    !offered_b.server().session_reused(),
                    "{case}: reused on b.test"
                );
                assert_eq!(
                    verdict(offered_b.server()),
                    verdict(fresh_b.server()),
                    "{case}"
                );
                assert!(
                    matches!(verdict(fresh_b.server()), Verdict::Failed(_)),
                    "{case}"
                );

                // The session offered was good: its own name resumes it (client hello
                // form) or, being unresumable, verifies afresh to the same verdict.
                let again = server.connect("a.test", Some(client_a()), Some(&session), v);
                assert_eq!(
                    again.server().session_reused(),
                    form == Form::ClientHello,
                    "{case}: same name"
                );
                assert_eq!(verdict(again.server()), Verdict::Success, "{case}");

                // A name that asks for no certificate never inherits the verdict either.
                let offered_c = server.connect("c.test", Some(client_a()), Some(&session), v);
                assert!(
                    !offered_c.server().session_reused(),
                    "{case}: reused on c.test"
                );
                assert_eq!(verdict(offered_c.server()), Verdict::None, "{case}");
            }
        }
    }
}

#[test]
fn without_the_library_the_verdict_travels_across_names() {
    // The reference: the hole this library closes, reproduced on the same server, so the
    // test above is known to look at the right thing.
    for path in SessionPath::ALL {
        let server = Server::new(
            path,
            Form::UnboundReference,
            Switch::AfterClientHello,
            by_name(),
        );
        let v = path.version();
        let first = server.connect("a.test", Some(client_a()), None, v);
        assert_eq!(verdict(first.server()), Verdict::Success, "{path:?}");
        let session = first.client_session().unwrap();
        let offered_b = server.connect("b.test", Some(client_a()), Some(&session), v);
        assert!(offered_b.server().session_reused(), "{path:?}");
        assert_eq!(verdict(offered_b.server()), Verdict::Success, "{path:?}");
    }
}

#[test]
fn a_ca_set_that_changed_refuses_the_sessions_of_the_old_one() {
    let sets: [Vec<X509>; 4] = [
        vec![ca("ca-a")],
        vec![ca("ca-b")],
        vec![ca("ca-a"), ca("ca-b")],
        vec![ca("ca-b"), ca("ca-a"), ca("ca-b")],
    ];
    let current = Arc::new(AtomicUsize::new(0));
    let chosen = current.clone();
    let sets_for_policy = sets.clone();
    let policy: Policy =
        Arc::new(move |_: &str| Some(sets_for_policy[chosen.load(Ordering::SeqCst)].clone()));
    for path in SessionPath::ALL {
        let server = Server::new(
            path,
            Form::ClientHello,
            Switch::AfterClientHello,
            policy.clone(),
        );
        let v = path.version();
        current.store(0, Ordering::SeqCst);
        let first = server.connect("a.test", Some(client_a()), None, v);
        let session = first.client_session().unwrap();
        // {A} -> {B} -> {A, B} -> {B, A, B} (the same set) -> {A}: only {A} resumes.
        for (set, resumes) in [(1, false), (2, false), (3, false), (0, true)] {
            current.store(set, Ordering::SeqCst);
            let fresh = server.connect("a.test", Some(client_a()), None, v);
            let offered = server.connect("a.test", Some(client_a()), Some(&session), v);
            let case = format!("{path:?}: session of {{A}} offered under set {set}");
            assert_eq!(offered.server().session_reused(), resumes, "{case}");
            assert_eq!(verdict(offered.server()), verdict(fresh.server()), "{case}");
        }
        // Order and duplicates do not matter: {A, B} resumes under {B, A, B}.
        current.store(2, Ordering::SeqCst);
        // Kept open: OpenSSL drops the cached session of an SSL freed without a shutdown.
        let both_conn = server.connect("a.test", Some(client_a()), None, v);
        let both = both_conn.client_session().unwrap();
        current.store(3, Ordering::SeqCst);
        let offered = server.connect("a.test", Some(client_a()), Some(&both), v);
        assert!(
            offered.server().session_reused(),
            "{path:?}: same set, other order"
        );
    }
}

#[test]
fn a_plain_server_keeps_resuming_and_its_sessions_carry_no_verdict() {
    let nothing: Policy = Arc::new(|_: &str| None);
    for path in SessionPath::ALL {
        let v = path.version();
        let plain = Server::new(
            path,
            Form::ClientHello,
            Switch::AfterClientHello,
            nothing.clone(),
        );
        let first = plain.connect("c.test", Some(client_a()), None, v);
        let session = first.client_session().unwrap();
        let resumed = plain.connect("c.test", Some(client_a()), Some(&session), v);
        assert!(resumed.server().session_reused(), "{path:?}: control");
        assert_eq!(verdict(resumed.server()), Verdict::None, "{path:?}");

        // The plain session offered where a certificate is requested: refused at
        // ClientHello time; at certificate time the request comes too late, and the
        // resumed connection reports no certificate (what a client sending none gets).
        for form in FORMS {
            let server = Server::new(path, form, Switch::AfterClientHello, by_name());
            // Kept open: OpenSSL drops the cached session of an SSL freed without a shutdown.
            let plain = server.connect("c.test", Some(client_a()), None, v);
            let plain_session = plain.client_session().unwrap();
            let offered = server.connect("a.test", Some(client_a()), Some(&plain_session), v);
            let case = format!("{path:?} {form:?}");
            assert_eq!(
                offered.server().session_reused(),
                form == Form::Certificate,
                "{case}"
            );
            let expected = if form == Form::Certificate {
                Verdict::None
            } else {
                Verdict::Success
            };
            assert_eq!(verdict(offered.server()), expected, "{case}");
        }
    }
}

#[test]
fn a_later_call_at_certificate_time_cannot_change_a_bound_ca_set() {
    let path = SessionPath::Tls13StatelessTicket;
    let server = Server::new(path, Form::ClientHello, Switch::AfterClientHello, by_name());
    let outcomes: Arc<std::sync::Mutex<Vec<Result<(), String>>>> = Arc::default();
    let seen = outcomes.clone();
    let conn = server.connect_with(
        "a.test",
        Some(client_a()),
        path.version(),
        hook(move |ssl| {
            let mut seen = seen.lock().unwrap();
            seen.push(request(ssl, &[ca("ca-a")]));
            seen.push(request(ssl, &[ca("ca-b")]));
            seen.push(request(ssl, &[ca("ca-a"), ca("ca-a")]));
        }),
    );
    assert_eq!(verdict(conn.server()), Verdict::Success);
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes[0], Ok(()));
    assert_eq!(
        outcomes[1],
        Err("request_client_certificate already ran at ClientHello time with other ca_certs; resumed sessions skip this phase, so the CA set cannot change here".into())
    );
    assert_eq!(outcomes[2], Ok(()));
    let session = conn.client_session().unwrap();
    let again = server.connect("a.test", Some(client_a()), Some(&session), path.version());
    assert!(
        again.server().session_reused(),
        "still bound, still resumable"
    );
}

#[test]
fn disable_session_reuse_still_wins_over_a_binding() {
    for path in SessionPath::ALL {
        let server = Server::new(path, Form::ClientHello, Switch::AfterClientHello, by_name());
        let conn = server.connect_with(
            "a.test",
            Some(client_a()),
            path.version(),
            hook(|ssl| disable_session_reuse(ssl).unwrap()),
        );
        let session = conn.client_session().unwrap();
        let again = server.connect("a.test", Some(client_a()), Some(&session), path.version());
        assert!(!again.server().session_reused(), "{path:?}");
    }
}

/// A client certificate of CA A that expires `seconds` from now.
fn short_lived_client(seconds: i64) -> Identity {
    let pki = Pki::get("ca-a", key_kind());
    let key = new_key(key_kind());
    let cert = issue("short-lived client", &key, Some(&pki.root), false);
    // Re-sign with a short validity: the shared issuer makes long-lived certificates.
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(cert.serial_number()).unwrap();
    b.set_subject_name(cert.subject_name()).unwrap();
    b.set_issuer_name(pki.root.cert.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now - 60).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + seconds).unwrap())
        .unwrap();
    b.sign(&pki.root.key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    Identity {
        cert: b.build(),
        key,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn not_after_unix(cert: &X509) -> i64 {
    let epoch = Asn1Time::from_unix(0).unwrap();
    let diff = epoch.diff(cert.not_after()).unwrap();
    i64::from(diff.days) * 86_400 + i64::from(diff.secs)
}

fn session_end(session: &openssl::ssl::SslSessionRef) -> i64 {
    session.time() + session.timeout()
}

#[test]
fn sessions_end_before_the_client_certificate_expires() {
    const LIFETIME: i64 = 4;
    let client = short_lived_client(LIFETIME);
    let expiry = not_after_unix(&client.cert);
    // Sessions to offer once the certificate has expired: TLS 1.2 ones are reusable, a TLS
    // 1.3 ticket is offered once, so the ticket reissued on the resumed connection.
    let mut pending = Vec::new();
    for path in SessionPath::ALL {
        let server = Server::new(path, Form::ClientHello, Switch::AfterClientHello, by_name());
        let v = path.version();
        let first = server.connect("a.test", Some(&client), None, v);
        assert_eq!(verdict(first.server()), Verdict::Success, "{path:?}");
        let server_session = first.server().session().unwrap();
        assert!(
            session_end(server_session) < expiry,
            "{path:?}: the session ends at {} but the certificate expires at {expiry}",
            session_end(server_session)
        );
        let session = first.client_session().unwrap();
        let resumed = server.connect("a.test", Some(&client), Some(&session), v);
        assert!(resumed.server().session_reused(), "{path:?}: before expiry");
        // TLS 1.3 tickets issued on a resumed connection keep the original end.
        let later = if v == SslVersion::TLS1_3 {
            assert!(
                session_end(resumed.server().session().unwrap()) < expiry,
                "{path:?}"
            );
            resumed.client_session().unwrap()
        } else {
            session
        };
        pending.push((server, path, later));
    }
    let wait = expiry - unix_now() + 1;
    if wait > 0 {
        std::thread::sleep(std::time::Duration::from_secs(wait as u64));
    }
    for (server, path, session) in pending {
        let v = path.version();
        let offered = server.connect("a.test", Some(&client), Some(&session), v);
        assert!(!offered.server().session_reused(), "{path:?}: after expiry");
        assert_eq!(
            verdict(offered.server()),
            Verdict::Failed(openssl_sys::X509_V_ERR_CERT_HAS_EXPIRED),
            "{path:?}"
        );
    }
}

#[test]
fn the_binding_holds_across_a_hello_retry_request() {
    // The client's only key share is for a group the server does not take: the server asks
    // again, and the second ClientHello offers the session. (Across names, the SNI switch
    // during the first ClientHello already changes nginx's own session id context; the CA
    // set of one name is what only the binding tells apart.)
    let retrying_client = || {
        let mut ctx = client_context_presenting(SslVersion::TLS1_3, Some(client_a()), &[]);
        ctx.set_groups_list("P-384:X25519").unwrap();
        let mut ssl = Ssl::new(&ctx.build()).unwrap();
        let hellos = count_client_hellos(&mut ssl);
        (ssl, hellos)
    };
    let use_b = Arc::new(AtomicUsize::new(0));
    let chosen = use_b.clone();
    let policy: Policy = Arc::new(move |_: &str| {
        Some(vec![ca(if chosen.load(Ordering::SeqCst) == 1 {
            "ca-b"
        } else {
            "ca-a"
        })])
    });
    for path in [
        SessionPath::Tls13StatelessTicket,
        SessionPath::Tls13StatefulTicket,
    ] {
        let server = Server::new(
            path,
            Form::ClientHello,
            Switch::AfterClientHello,
            policy.clone(),
        );
        use_b.store(0, Ordering::SeqCst);
        let (ssl, hellos) = retrying_client();
        let first = server.connect_ssl("a.test", ssl, None);
        assert_eq!(
            hellos.load(Ordering::SeqCst),
            2,
            "{path:?}: no HelloRetryRequest"
        );
        assert_eq!(verdict(first.server()), Verdict::Success, "{path:?}");
        let session = first.client_session().unwrap();

        use_b.store(1, Ordering::SeqCst);
        let (ssl, hellos) = retrying_client();
        let rotated = server.connect_ssl("a.test", ssl, Some(&session));
        assert_eq!(hellos.load(Ordering::SeqCst), 2, "{path:?}");
        assert!(
            !rotated.server().session_reused(),
            "{path:?}: reused under CA B"
        );
        assert!(
            matches!(verdict(rotated.server()), Verdict::Failed(_)),
            "{path:?}"
        );

        use_b.store(0, Ordering::SeqCst);
        let (ssl, _) = retrying_client();
        let same = server.connect_ssl("a.test", ssl, Some(&session));
        assert!(
            same.server().session_reused(),
            "{path:?}: not reused under CA A"
        );
        assert_eq!(verdict(same.server()), Verdict::Success, "{path:?}");
    }
}

#[test]
fn a_replaced_not_resumable_callback_fails_closed() {
    // The library builds the verify store on the full handshake, from the callback it owns;
    // a caller that replaces it must never get a verdict from the context's store instead:
    // either nginx's SNI switch has reset the request (no certificate asked, NONE), or the
    // connection refuses any certificate.
    let path = SessionPath::Tls13StatelessTicket;
    for switch in SWITCHES {
        let server = Server::new(path, Form::ClientHello, switch, by_name());
        for client in [None, Some(client_a())] {
            let conn = server.connect_with(
                "a.test",
                client,
                path.version(),
                hook(|ssl| {
                    // SAFETY: live SSL; removing the callback is what a careless caller does.
                    unsafe { SSL_set_not_resumable_session_callback(ssl, None) };
                }),
            );
            let case = format!("{switch:?}, client certificate: {}", client.is_some());
            match (switch, client) {
                (Switch::InClientHello, Some(_)) => {
                    assert!(conn.server.is_err(), "{case}: a certificate was accepted")
                }
                _ => assert_eq!(verdict(conn.server()), Verdict::None, "{case}"),
            }
        }
    }
}
