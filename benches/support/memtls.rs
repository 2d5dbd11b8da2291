//! Whole TLS handshakes in one thread, client and server talking through in-memory
//! pipes: no sockets, no threads, no scheduler in the measurement.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::io::{self, Read, Write};
use std::rc::Rc;

use openssl::ssl::{
    ErrorCode, ShutdownState, Ssl, SslContext, SslSession, SslSessionRef, SslStream,
};
use openssl_sys::{SSL, SSL_CTX};

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
    let mut s = SslStream::new(Ssl::new(server).unwrap(), s_end).unwrap();
    let mut c = SslStream::new(client, c_end).unwrap();
    let paused = [
        ErrorCode::WANT_CLIENT_HELLO_CB,
        ErrorCode::from_raw(openssl_sys::SSL_ERROR_WANT_X509_LOOKUP),
    ];
    let (mut c_done, mut s_done) = (false, false);
    for _ in 0..16 {
        if !c_done {
            match c.connect() {
                Ok(()) => c_done = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => {}
                Err(e) => panic!("client handshake: {e}"),
            }
        }
        if !s_done {
            match s.accept() {
                Ok(()) => s_done = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => {}
                Err(e) if until_paused && paused.contains(&e.code()) => {
                    return Conn {
                        server: s,
                        client: c,
                    }
                }
                Err(e) => panic!("server handshake: {e}"),
            }
        }
        if c_done && s_done {
            assert!(!until_paused, "the handshake finished without pausing");
            return Conn {
                server: s,
                client: c,
            };
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

/// A function run on the server `SSL` from a callback; `arg` is what was registered.
pub type Hook = unsafe fn(ssl: *mut SSL, arg: *mut c_void);

struct HookArg {
    hook: Hook,
    arg: *mut c_void,
}

extern "C" {
    fn SSL_CTX_set_cert_cb(
        ctx: *mut SSL_CTX,
        cb: Option<unsafe extern "C" fn(*mut SSL, *mut c_void) -> c_int>,
        arg: *mut c_void,
    );
    fn SSL_CTX_set_client_hello_cb(
        ctx: *mut SSL_CTX,
        cb: Option<unsafe extern "C" fn(*mut SSL, *mut c_int, *mut c_void) -> c_int>,
        arg: *mut c_void,
    );
}

unsafe extern "C" fn cert_cb(ssl: *mut SSL, arg: *mut c_void) -> c_int {
    let h = &*(arg as *const HookArg);
    (h.hook)(ssl, h.arg);
    1
}

unsafe extern "C" fn client_hello_cb(ssl: *mut SSL, _al: *mut c_int, arg: *mut c_void) -> c_int {
    let h = &*(arg as *const HookArg);
    (h.hook)(ssl, h.arg);
    1 // SSL_CLIENT_HELLO_SUCCESS
}

unsafe fn nothing(_ssl: *mut SSL, _arg: *mut c_void) {}

/// Installs a certificate callback running `hook` (or an empty one), the way nginx runs
/// `ssl_certificate_by_lua`. The registration is leaked: contexts live for the bench.
pub fn set_cert_hook(ctx: *mut SSL_CTX, hook: Option<Hook>, arg: *mut c_void) {
    let arg = Box::into_raw(Box::new(HookArg {
        hook: hook.unwrap_or(nothing),
        arg,
    }));
    // SAFETY: live context; the argument is leaked so it outlives it.
    unsafe { SSL_CTX_set_cert_cb(ctx, Some(cert_cb), arg.cast()) };
}

/// Installs a client hello callback running `hook` (or an empty one), the way nginx runs
/// `ssl_client_hello_by_lua`.
pub fn set_client_hello_hook(ctx: *mut SSL_CTX, hook: Option<Hook>, arg: *mut c_void) {
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
    -1 // SSL_CLIENT_HELLO_RETRY
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
