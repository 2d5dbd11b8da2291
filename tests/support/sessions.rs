//! Every way a server resumes a TLS session, each as a server context that resumes only
//! that way: the paths that a session-related guarantee must hold on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openssl::ssl::{SslContextBuilder, SslOptions, SslSession, SslSessionCacheMode, SslVersion};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionPath {
    Tls12SessionIdInternalCache,
    /// An external cache keeping `SSL_SESSION` objects.
    Tls12SessionIdExternalCache,
    /// An external cache keeping `i2d_SSL_SESSION` bytes, as nginx's shared cache and
    /// `ssl_session_store_by_lua` do.
    Tls12SessionIdSerializedCache,
    Tls12Ticket,
    Tls13StatelessTicket,
    Tls13StatefulTicket,
    /// TLS 1.3 stateful tickets kept as bytes in an external cache.
    Tls13StatefulSerializedCache,
}

/// What an external cache holds, by session ID.
#[derive(Clone)]
pub enum Cached {
    Object(SslSession),
    Bytes(Vec<u8>),
}

pub type ExternalCache = Arc<Mutex<HashMap<Vec<u8>, Cached>>>;

impl SessionPath {
    pub const ALL: [SessionPath; 7] = [
        SessionPath::Tls12SessionIdInternalCache,
        SessionPath::Tls12SessionIdExternalCache,
        SessionPath::Tls12SessionIdSerializedCache,
        SessionPath::Tls12Ticket,
        SessionPath::Tls13StatelessTicket,
        SessionPath::Tls13StatefulTicket,
        SessionPath::Tls13StatefulSerializedCache,
    ];

    pub fn version(self) -> SslVersion {
        match self {
            SessionPath::Tls13StatelessTicket
            | SessionPath::Tls13StatefulTicket
            | SessionPath::Tls13StatefulSerializedCache => SslVersion::TLS1_3,
            _ => SslVersion::TLS1_2,
        }
    }

    /// Whether the server resumes from the very `SSL_SESSION` object it made (which keeps
    /// the client's whole chain) rather than from a decoded copy (which keeps the leaf).
    pub fn keeps_session_object(self) -> bool {
        matches!(
            self,
            SessionPath::Tls12SessionIdInternalCache
                | SessionPath::Tls12SessionIdExternalCache
                | SessionPath::Tls13StatefulTicket
        )
    }

    /// Makes `ctx` (a server context of this path's version) resume only through this
    /// path; returns its external cache, empty for paths without one.
    pub fn configure(self, ctx: &mut SslContextBuilder) -> ExternalCache {
        let cache: ExternalCache = Default::default();
        match self {
            SessionPath::Tls12SessionIdInternalCache | SessionPath::Tls13StatefulTicket => {
                ctx.set_options(SslOptions::NO_TICKET);
                ctx.set_session_cache_mode(SslSessionCacheMode::SERVER);
            }
            SessionPath::Tls12SessionIdExternalCache
            | SessionPath::Tls12SessionIdSerializedCache
            | SessionPath::Tls13StatefulSerializedCache => {
                let serialized = self != SessionPath::Tls12SessionIdExternalCache;
                ctx.set_options(SslOptions::NO_TICKET);
                ctx.set_session_cache_mode(
                    SslSessionCacheMode::SERVER | SslSessionCacheMode::NO_INTERNAL,
                );
                let store = cache.clone();
                ctx.set_new_session_callback(move |_, session| {
                    let id = session.id().to_vec();
                    let entry = if serialized {
                        Cached::Bytes(session.to_der().unwrap())
                    } else {
                        Cached::Object(session)
                    };
                    store.lock().unwrap().insert(id, entry);
                });
                let lookup = cache.clone();
                // SAFETY: sessions handed back come from this very context.
                unsafe {
                    ctx.set_get_session_callback(move |_, id| {
                        match lookup.lock().unwrap().get(id)? {
                            Cached::Object(session) => Some(session.clone()),
                            Cached::Bytes(der) => SslSession::from_der(der).ok(),
                        }
                    });
                }
            }
            SessionPath::Tls12Ticket | SessionPath::Tls13StatelessTicket => {
                ctx.set_session_cache_mode(SslSessionCacheMode::OFF);
            }
        }
        cache
    }
}
