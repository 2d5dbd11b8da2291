//! Test support shared by the integration tests: a throw-away PKI and real in-process
//! TLS handshakes over a socketpair, with hooks run from OpenSSL's client hello and
//! certificate callbacks, where nginx runs `ssl_client_hello_by_lua` and
//! `ssl_certificate_by_lua`.
#![allow(dead_code, unused_imports)] // each test binary uses a part of it

pub mod api;
pub mod kong;
pub mod pki;
pub mod sessions;

use std::ffi::{c_int, c_void};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

use foreign_types::ForeignTypeRef;
use openssl::ex_data::Index;
use openssl::ssl::{
    ClientHelloResponse, Ssl, SslContext, SslContextBuilder, SslMethod, SslRef, SslSession,
    SslStream, SslVersion,
};
use openssl_sys::{SSL, SSL_CTX};

pub use pki::{KeyKind, Pki};

/// A hook run on the server `SSL` from one of OpenSSL's callbacks.
pub type Hook = Arc<dyn Fn(*mut SSL) + Send + Sync>;

#[derive(Clone, Default)]
pub struct Hooks {
    /// Runs on the new server `SSL` before its handshake starts.
    pub before_handshake: Option<Hook>,
    pub client_hello: Option<Hook>,
    pub certificate: Option<Hook>,
}

extern "C" {
    fn SSL_set_msg_callback(
        ssl: *mut SSL,
        cb: Option<
            unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, usize, *mut SSL, *mut c_void),
        >,
    );
    fn SSL_ctrl(
        ssl: *mut SSL,
        cmd: c_int,
        larg: std::ffi::c_long,
        parg: *mut c_void,
    ) -> std::ffi::c_long;
    fn SSL_CTX_set_cert_cb(
        ctx: *mut SSL_CTX,
        cb: Option<unsafe extern "C" fn(*mut SSL, *mut c_void) -> c_int>,
        arg: *mut c_void,
    );
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
    pub fn at_certificate(hook: Option<Hook>) -> Hooks {
        Hooks {
            certificate: hook,
            ..Default::default()
        }
    }

    /// Only `hook`, run from the client hello callback.
    pub fn at_client_hello(hook: Option<Hook>) -> Hooks {
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
    ctx.add_extra_chain_cert(identity.intermediate.cert.clone())
        .unwrap();
    ctx.set_private_key(&identity.leaf.key).unwrap();
    ctx.set_min_proto_version(Some(version)).unwrap();
    ctx.set_max_proto_version(Some(version)).unwrap();
    ctx.set_session_id_context(b"kong-client-tls-tests")
        .unwrap();
    install_hook_callbacks(&mut ctx);
    ctx
}

/// A client context for `version`; with `identity`, it presents leaf + intermediate.
pub fn client_context(identity: Option<&Pki>, version: SslVersion) -> SslContextBuilder {
    let mut ctx = SslContext::builder(SslMethod::tls_client()).unwrap();
    ctx.set_min_proto_version(Some(version)).unwrap();
    ctx.set_max_proto_version(Some(version)).unwrap();
    ctx.set_verify(openssl::ssl::SslVerifyMode::NONE);
    if let Some(id) = identity {
        ctx.set_certificate(&id.leaf.cert).unwrap();
        ctx.add_extra_chain_cert(id.intermediate.cert.clone())
            .unwrap();
        ctx.set_private_key(&id.leaf.key).unwrap();
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

const SSL_CTRL_SET_MSG_CALLBACK_ARG: c_int = 16;

unsafe extern "C" fn count_sent_client_hello(
    write_p: c_int,
    _version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    _ssl: *mut SSL,
    arg: *mut c_void,
) {
    if write_p == 1 && content_type == 22 && len > 0 && *buf.cast::<u8>() == 1 {
        (*arg.cast::<AtomicUsize>()).fetch_add(1, Ordering::SeqCst);
    }
}

/// Makes the client `ssl` count the ClientHellos it sends (two after a
/// HelloRetryRequest). The counter is leaked, so it outlives the `SSL`.
pub fn count_client_hellos(ssl: &SslRef) -> &'static AtomicUsize {
    let counter: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    // SAFETY: live SSL; the counter lives for the rest of the process.
    unsafe {
        SSL_set_msg_callback(ssl.as_ptr(), Some(count_sent_client_hello));
        SSL_ctrl(
            ssl.as_ptr(),
            SSL_CTRL_SET_MSG_CALLBACK_ARG,
            0,
            std::ptr::from_ref(counter).cast_mut().cast(),
        );
    }
    counter
}

/// A hook from a plain function of the server `SSL`.
pub fn hook(f: impl Fn(*mut SSL) + Send + Sync + 'static) -> Option<Hook> {
    Some(Arc::new(f))
}

pub const VERSIONS: [SslVersion; 2] = [SslVersion::TLS1_2, SslVersion::TLS1_3];
