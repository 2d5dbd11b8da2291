//! Whole TLS handshakes in one thread, client and server talking through in-memory
//! pipes: no sockets, no threads, no scheduler in the measurement.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::io::{self, Read, Write};
use std::rc::Rc;

use openssl::ssl::{ErrorCode, ShutdownState, Ssl, SslContext, SslSessionRef, SslStream};
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
    #[allow(dead_code)]
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
    let (s_end, c_end) = pipe();
    let mut s = SslStream::new(Ssl::new(server).unwrap(), s_end).unwrap();
    let mut client_ssl = Ssl::new(client).unwrap();
    if let Some(session) = session {
        // SAFETY: the session comes from a handshake with the same client context.
        unsafe { client_ssl.set_session(session).unwrap() };
    }
    let mut c = SslStream::new(client_ssl, c_end).unwrap();
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
                Err(e) => panic!("server handshake: {e}"),
            }
        }
        if c_done && s_done {
            return Conn {
                server: s,
                client: c,
            };
        }
    }
    panic!("handshake did not finish");
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
