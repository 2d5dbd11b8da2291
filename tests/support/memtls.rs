//! In-process TLS: a real server `SSL` and client `SSL` handshaking with each other, and
//! code run from the server's client hello and certificate callbacks, where nginx runs
//! `ssl_client_hello_by_lua` and `ssl_certificate_by_lua`. Two transports:
//!
//! - For the tests, [`connect`]: a socketpair, the server on a thread of its own, both
//!   results kept as values ([`Connection`]) so that a test can assert a failure; per
//!   connection [`Hooks`] of [`ClosureHook`]s on contexts made by [`server_context`].
//! - For the benches, [`handshake`] and friends: in-memory pipes driven from one thread
//!   (no sockets, threads or scheduler in the measurement), panicking on failure
//!   ([`Conn`]); callbacks installed per context with [`set_cert_hook`] and
//!   [`set_client_hello_hook`] running a [`RawHook`] without allocating; handshakes
//!   paused in a callback ([`paused_in_callback`]); a client that reconnects
//!   ([`Reconnecting`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

use foreign_types::ForeignTypeRef;
use openssl::ex_data::Index;
use openssl::ssl::{
    ClientHelloResponse, ErrorCode, ShutdownState, Ssl, SslContext, SslContextBuilder, SslMethod,
    SslRef, SslSession, SslSessionRef, SslStream, SslVersion,
};
use openssl::x509::X509;
use openssl_sys::{SSL, SSL_CTX};

use super::pki::{Identity, Pki};
use super::sys::{
    SSL_CTX_set_cert_cb, SSL_CTX_set_client_hello_cb, SSL_ctrl, SSL_set_msg_callback,
    SSL3_RT_HANDSHAKE, SSL_CLIENT_HELLO_RETRY, SSL_CLIENT_HELLO_SUCCESS,
    SSL_CTRL_SET_MSG_CALLBACK_ARG,
};

// Threaded, over a socketpair (the tests) ------------------------------------------------

/// A closure run on the server `SSL` from one of OpenSSL's callbacks (per connection,
/// see [`Hooks`]); for the tests, where capturing state matters more than cost.
pub type ClosureHook = Arc<dyn Fn(*mut SSL) + Send + Sync>;

#[derive(Clone, Default)]
pub struct Hooks {
    /// Runs on the new server `SSL` before its handshake starts.
    pub before_handshake: Option<ClosureHook>,
    pub client_hello: Option<ClosureHook>,
    pub certificate: Option<ClosureHook>,
}

fn hooks_index() -> Index<Ssl, Hooks> {
    static INDEX: OnceLock<Index<Ssl, Hooks>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("ex_data index"))
}

unsafe extern "C" fn run_certificate_hook(ssl: *mut SSL, _arg: *mut c_void) -> c_int {
    let hook = SslRef::from_ptr(ssl)
        .ex_data(hooks_index())
        .and_then(|h| h.certificate.clone());
    if let Some(hook) = hook {
        hook(ssl);
    }
    1
}

impl Hooks {
    /// Only `hook`, run from the certificate callback.
    pub fn at_certificate(hook: Option<ClosureHook>) -> Hooks {
        Hooks {
            certificate: hook,
            ..Default::default()
        }
    }

    /// Only `hook`, run from the client hello callback.
    pub fn at_client_hello(hook: Option<ClosureHook>) -> Hooks {
        Hooks {
            client_hello: hook,
            ..Default::default()
        }
    }
}

/// Installs the client hello and certificate callbacks that run per-connection [`Hooks`].
pub fn install_hook_callbacks(ctx: &mut SslContextBuilder) {
    ctx.set_client_hello_callback(|ssl, _alert| {
        if let Some(hook) = ssl
            .ex_data(hooks_index())
            .and_then(|h| h.client_hello.clone())
        {
            hook(ssl.as_ptr());
        }
        Ok(ClientHelloResponse::SUCCESS)
    });
    // SAFETY: the context is live; the callback is a plain function.
    unsafe {
        SSL_CTX_set_cert_cb(
            ctx.as_ptr(),
            Some(run_certificate_hook),
            std::ptr::null_mut(),
        )
    };
}

/// A server context: `identity` (leaf + chain), exactly `version`, hook callbacks
/// installed, and a session ID context so that resumption with client certificates works.
pub fn server_context(identity: &Pki, version: SslVersion) -> SslContextBuilder {
    let mut ctx = SslContext::builder(SslMethod::tls_server()).unwrap();
    ctx.set_certificate(&identity.leaf.cert).unwrap();
    ctx.add_extra_chain_cert(identity.intermediate().cert.clone())
        .unwrap();
    ctx.set_private_key(&identity.leaf.key).unwrap();
    ctx.set_min_proto_version(Some(version)).unwrap();
    ctx.set_max_proto_version(Some(version)).unwrap();
    ctx.set_session_id_context(b"kong-client-tls-tests")
        .unwrap();
    install_hook_callbacks(&mut ctx);
    ctx
}

/// A client context for `version`; with `identity`, it presents its leaf and
/// intermediates.
pub fn client_context(identity: Option<&Pki>, version: SslVersion) -> SslContextBuilder {
    match identity {
        Some(pki) => client_context_presenting(version, Some(&pki.leaf), &pki.chain()),
        None => client_context_presenting(version, None, &[]),
    }
}

/// A client context for exactly `version` that does not verify the server and, with
/// `identity`, presents its certificate followed by `chain`.
pub fn client_context_presenting(
    version: SslVersion,
    identity: Option<&Identity>,
    chain: &[&X509],
) -> SslContextBuilder {
    let mut ctx = SslContext::builder(SslMethod::tls_client()).unwrap();
    ctx.set_min_proto_version(Some(version)).unwrap();
    ctx.set_max_proto_version(Some(version)).unwrap();
    ctx.set_verify(openssl::ssl::SslVerifyMode::NONE);
    if let Some(id) = identity {
        ctx.set_certificate(&id.cert).unwrap();
        ctx.set_private_key(&id.key).unwrap();
        for cert in chain {
            ctx.add_extra_chain_cert((*cert).clone()).unwrap();
        }
    }
    ctx
}

/// One finished (or failed) handshake, with both ends kept for inspection.
pub struct Connection {
    pub server: Result<SslStream<UnixStream>, String>,
    pub client: Result<SslStream<UnixStream>, String>,
}

impl Connection {
    pub fn server(&self) -> &SslRef {
        self.server.as_ref().expect("server handshake").ssl()
    }
    pub fn client(&self) -> &SslRef {
        self.client.as_ref().expect("client handshake").ssl()
    }
    /// The client's session after it has read the server's first application data (and
    /// with it any TLS 1.3 NewSessionTicket).
    pub fn client_session(&self) -> Option<SslSession> {
        self.client().session().map(|s| s.to_owned())
    }
}

/// Runs a real handshake between a new server `SSL` of `server_ctx` (with `hooks`) and a
/// new client `SSL` of `client_ctx` (resuming `session` when given). The server then
/// sends one application byte, which the client reads, so TLS 1.3 tickets arrive.
pub fn connect(
    server_ctx: &SslContext,
    client_ctx: &SslContext,
    hooks: Hooks,
    session: Option<&SslSession>,
) -> Connection {
    let mut client_ssl = Ssl::new(client_ctx).unwrap();
    if let Some(session) = session {
        // SAFETY: the session comes from a context with the same settings.
        unsafe { client_ssl.set_session(session).unwrap() };
    }
    connect_ssl(server_ctx, client_ssl, hooks)
}

/// [`connect`] with a client `SSL` the caller prepared (SNI, ALPN, session…).
pub fn connect_ssl(server_ctx: &SslContext, client_ssl: Ssl, hooks: Hooks) -> Connection {
    let (server_sock, client_sock) = UnixStream::pair().unwrap();
    let mut server_ssl = Ssl::new(server_ctx).unwrap();
    if let Some(before) = &hooks.before_handshake {
        before(server_ssl.as_ptr());
    }
    server_ssl.set_ex_data(hooks_index(), hooks);
    let server = thread::spawn(move || {
        let mut stream = server_ssl.accept(server_sock).map_err(|e| e.to_string())?;
        stream.write_all(b"!").map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        let _ = stream.read(&mut byte);
        Ok::<_, String>(stream)
    });
    let client = client_ssl
        .connect(client_sock)
        .map_err(|e| e.to_string())
        .and_then(|mut stream| {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).map_err(|e| e.to_string())?;
            stream.write_all(b"!").map_err(|e| e.to_string())?;
            Ok(stream)
        });
    let server = server.join().expect("server thread");
    Connection { server, client }
}

unsafe extern "C" fn count_sent_client_hello(
    write_p: c_int,
    _version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    _ssl: *mut SSL,
    arg: *mut c_void,
) {
    if write_p == 1 && content_type == SSL3_RT_HANDSHAKE && len > 0 && *buf.cast::<u8>() == 1 {
        (*arg.cast::<AtomicUsize>()).fetch_add(1, Ordering::SeqCst);
    }
}

/// Makes the client `ssl` count the ClientHellos it sends (two after a
/// HelloRetryRequest). The `SSL` keeps a reference to the counter in its ex_data, so
/// the callback's argument lives exactly as long as the `SSL`.
pub fn count_client_hellos(ssl: &mut SslRef) -> Arc<AtomicUsize> {
    static INDEX: OnceLock<Index<Ssl, Arc<AtomicUsize>>> = OnceLock::new();
    let index = *INDEX.get_or_init(|| Ssl::new_ex_index().unwrap());
    let counter = Arc::new(AtomicUsize::new(0));
    ssl.set_ex_data(index, counter.clone());
    // SAFETY: live SSL; the counter is owned by the SSL's ex_data until SSL_free.
    unsafe {
        SSL_set_msg_callback(ssl.as_ptr(), Some(count_sent_client_hello));
        SSL_ctrl(
            ssl.as_ptr(),
            SSL_CTRL_SET_MSG_CALLBACK_ARG,
            0,
            Arc::as_ptr(&counter).cast_mut().cast(),
        );
    }
    counter
}

/// A hook from a plain function of the server `SSL`.
pub fn hook(f: impl Fn(*mut SSL) + Send + Sync + 'static) -> Option<ClosureHook> {
    Some(Arc::new(f))
}

pub const VERSIONS: [SslVersion; 2] = [SslVersion::TLS1_2, SslVersion::TLS1_3];

// One thread, over in-memory pipes (the benches) ----------------------------------------

type Queue = Rc<RefCell<VecDeque<u8>>>;

/// One end of an in-memory duplex pipe.
pub struct End {
    rx: Queue,
    tx: Queue,
}

impl Read for End {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.rx.borrow_mut();
        if q.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        q.read(buf)
    }
}

impl Write for End {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.borrow_mut().extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub fn pipe() -> (End, End) {
    let a: Queue = Default::default();
    let b: Queue = Default::default();
    (
        End {
            rx: a.clone(),
            tx: b.clone(),
        },
        End { rx: b, tx: a },
    )
}

/// Both ends of a finished handshake.
pub struct Conn {
    pub server: SslStream<End>,
    pub client: SslStream<End>,
}

/// Closed as if close_notify had been sent: OpenSSL marks the session of an `SSL` freed
/// unclosed as not resumable, which would spoil a session offered again and again.
impl Drop for Conn {
    fn drop(&mut self) {
        self.server.set_shutdown(ShutdownState::SENT);
        self.client.set_shutdown(ShutdownState::SENT);
    }
}

/// A full handshake between a new server `SSL` of `server` and a new client `SSL` of
/// `client`; panics if it fails.
pub fn handshake(server: &SslContext, client: &SslContext) -> Conn {
    handshake_resuming(server, client, None)
}

/// [`handshake`] where the client offers `session` for resumption.
pub fn handshake_resuming(
    server: &SslContext,
    client: &SslContext,
    session: Option<&SslSessionRef>,
) -> Conn {
    handshake_ssl(server, client_ssl(client, None, session))
}

/// A new client `SSL` of `client` that sends `host` as SNI and offers `session`.
pub fn client_ssl(client: &SslContext, host: Option<&str>, session: Option<&SslSessionRef>) -> Ssl {
    let mut ssl = Ssl::new(client).unwrap();
    if let Some(host) = host {
        ssl.set_hostname(host).unwrap();
    }
    if let Some(session) = session {
        // SAFETY: the caller's session comes from a handshake with the same client context.
        unsafe { ssl.set_session(session).unwrap() };
    }
    ssl
}

/// [`handshake`] with a client `SSL` made by [`client_ssl`].
pub fn handshake_ssl(server: &SslContext, client: Ssl) -> Conn {
    drive(server, client, false)
}

/// A handshake stopped where the server's client hello or certificate callback asked
/// to be called again (see [`set_pause`]), as nginx leaves a connection while a Lua
/// handler of those phases yields: the server `SSL` stays in that callback's state.
pub fn paused_in_callback(server: &SslContext, client: Ssl) -> Conn {
    drive(server, client, true)
}

fn drive(server: &SslContext, client: Ssl, until_paused: bool) -> Conn {
    let (s_end, c_end) = pipe();
    let mut server = SslStream::new(Ssl::new(server).unwrap(), s_end).unwrap();
    let mut client = SslStream::new(client, c_end).unwrap();
    let paused = step_handshake(&mut client, &mut server, until_paused, |s| s.accept());
    assert_eq!(
        paused, until_paused,
        "the handshake finished without pausing"
    );
    Conn { server, client }
}

/// Steps the client's and the server's handshakes in turn until both are done, the
/// server's each time through `server_step` (which makes it: `|s| s.accept()`, timed if
/// wanted). With `until_paused`, returns `true` as soon as the server pauses in its
/// client hello or certificate callback; otherwise returns `false` once both are done.
pub fn step_handshake(
    client: &mut SslStream<End>,
    server: &mut SslStream<End>,
    until_paused: bool,
    mut server_step: impl FnMut(&mut SslStream<End>) -> Result<(), openssl::ssl::Error>,
) -> bool {
    let paused = [
        ErrorCode::WANT_CLIENT_HELLO_CB,
        ErrorCode::from_raw(openssl_sys::SSL_ERROR_WANT_X509_LOOKUP),
    ];
    let (mut c_done, mut s_done) = (false, false);
    for _ in 0..16 {
        if !c_done {
            match client.connect() {
                Ok(()) => c_done = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => {}
                Err(e) => panic!("client handshake: {e}"),
            }
        }
        if !s_done {
            match server_step(server) {
                Ok(()) => s_done = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => {}
                Err(e) if until_paused && paused.contains(&e.code()) => return true,
                Err(e) => panic!("server handshake: {e}"),
            }
        }
        if c_done && s_done {
            return false;
        }
    }
    panic!("handshake did not finish");
}

impl Conn {
    /// The session the client keeps for its next connection, after reading what followed
    /// the handshake (TLS 1.3 tickets come after it).
    pub fn kept_session(&mut self) -> Option<SslSession> {
        let _ = self.client.read(&mut [0u8; 1]);
        self.client.ssl().session().map(|s| s.to_owned())
    }
}

/// A client reconnecting to one server again and again, each time offering the session
/// it kept from its previous connection (as browsers and HTTP clients do), or never
/// offering one; counts the connections the server resumed.
pub struct Reconnecting<'a> {
    server: &'a SslContext,
    client: &'a SslContext,
    host: &'a str,
    keeps_sessions: bool,
    session: Option<SslSession>,
    pub connections: usize,
    pub resumed: usize,
}

impl<'a> Reconnecting<'a> {
    pub fn new(
        server: &'a SslContext,
        client: &'a SslContext,
        host: &'a str,
        keeps_sessions: bool,
    ) -> Self {
        Reconnecting {
            server,
            client,
            host,
            keeps_sessions,
            session: None,
            connections: 0,
            resumed: 0,
        }
    }

    /// One connection; returns it for inspection.
    pub fn connect(&mut self) -> Conn {
        let ssl = client_ssl(self.client, Some(self.host), self.session.as_deref());
        let mut conn = handshake_ssl(self.server, ssl);
        self.connections += 1;
        self.resumed += usize::from(conn.server.ssl().session_reused());
        if self.keeps_sessions {
            self.session = conn.kept_session();
        }
        conn
    }

    /// Forgets the counts (not the session).
    pub fn reset_counts(&mut self) {
        self.connections = 0;
        self.resumed = 0;
    }
}

/// A plain function run on the server `SSL` from a callback, `arg` being what was
/// registered with it: no allocation, no reference count, for the benches' hot path.
pub type RawHook = unsafe fn(ssl: *mut SSL, arg: *mut c_void);

struct HookArg {
    hook: RawHook,
    arg: *mut c_void,
}

unsafe extern "C" fn cert_cb(ssl: *mut SSL, arg: *mut c_void) -> c_int {
    let h = &*(arg as *const HookArg);
    (h.hook)(ssl, h.arg);
    1
}

unsafe extern "C" fn client_hello_cb(ssl: *mut SSL, _al: *mut c_int, arg: *mut c_void) -> c_int {
    let h = &*(arg as *const HookArg);
    (h.hook)(ssl, h.arg);
    SSL_CLIENT_HELLO_SUCCESS
}

unsafe fn nothing(_ssl: *mut SSL, _arg: *mut c_void) {}

/// Installs a certificate callback running `hook` (or an empty one), the way nginx runs
/// `ssl_certificate_by_lua`. The registration is leaked: contexts live for the bench.
pub fn set_cert_hook(ctx: *mut SSL_CTX, hook: Option<RawHook>, arg: *mut c_void) {
    let arg = Box::into_raw(Box::new(HookArg {
        hook: hook.unwrap_or(nothing),
        arg,
    }));
    // SAFETY: live context; the argument is leaked so it outlives it.
    unsafe { SSL_CTX_set_cert_cb(ctx, Some(cert_cb), arg.cast()) };
}

/// Installs a client hello callback running `hook` (or an empty one), the way nginx runs
/// `ssl_client_hello_by_lua`.
pub fn set_client_hello_hook(ctx: *mut SSL_CTX, hook: Option<RawHook>, arg: *mut c_void) {
    let arg = Box::into_raw(Box::new(HookArg {
        hook: hook.unwrap_or(nothing),
        arg,
    }));
    // SAFETY: live context; the argument is leaked so it outlives it.
    unsafe { SSL_CTX_set_client_hello_cb(ctx, Some(client_hello_cb), arg.cast()) };
}

unsafe extern "C" fn pause_cert_cb(_ssl: *mut SSL, _arg: *mut c_void) -> c_int {
    -1
}

unsafe extern "C" fn pause_client_hello_cb(
    _ssl: *mut SSL,
    _al: *mut c_int,
    _arg: *mut c_void,
) -> c_int {
    SSL_CLIENT_HELLO_RETRY
}

/// The server callback a handshake pauses in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pause {
    ClientHello,
    Certificate,
}

/// Makes every handshake of `ctx` pause in the callback `at` (see [`paused_in_callback`]).
pub fn set_pause(ctx: *mut SSL_CTX, at: Pause) {
    // SAFETY: live context; the callbacks use no argument.
    unsafe {
        match at {
            Pause::ClientHello => {
                SSL_CTX_set_client_hello_cb(ctx, Some(pause_client_hello_cb), std::ptr::null_mut())
            }
            Pause::Certificate => {
                SSL_CTX_set_cert_cb(ctx, Some(pause_cert_cb), std::ptr::null_mut())
            }
        }
    }
}
