//! Kong Gateway 3.9's `kong.client.tls` API on a raw OpenSSL `SSL *`.
//!
//! Kong implements `kong.client.tls` with a patched nginx. This crate does the same work
//! from the outside: every function takes the `SSL *` of a server-side connection and
//! changes only that connection, through OpenSSL's per-`SSL` settings and callbacks. It
//! therefore runs inside stock nginx (through LuaJIT FFI, see `lua/kong_client_tls.lua`)
//! and inside any C program that speaks OpenSSL (see `include/kong_client_tls.h`).
//!
//! Design rules, visible throughout:
//! - every `extern "C"` entry runs inside `error::guard`, which turns panics and errors
//!   into a status code plus a static C string, so no host process ever unwinds or frees;
//! - every pointer from outside is checked by `ssl::server_ssl` or its siblings before use;
//! - state kept with a connection lives in `SSL` ex_data, freed by OpenSSL with the `SSL`;
//!   the only process-wide state is once-initialised: ex_data indices and the running
//!   OpenSSL line;
//! - the library binds to the host's `libssl.so.3` and `version` can prove it;
//! - what differs between OpenSSL releases is decided at run time from
//!   `OpenSSL_version_num()`, and a release line outside the tested matrix is refused;
//! - every `unsafe` block says why it is sound (`clippy::undocumented_unsafe_blocks`).
//!
//! The public surface is the C API: the `kong_client_tls_*` functions and the
//! `KONG_CLIENT_TLS_*` status codes, re-exported here from private modules, one per
//! concept (`docs/architecture.md` draws the layers):
//! - `client_cert` holds `request_client_certificate`, mutual TLS on demand;
//! - `session` holds `disable_session_reuse` and every decision about which later
//!   connections may resume a connection's session; `binding` computes what a resumable
//!   mutual-TLS session is bound to (the verification inputs);
//! - `misdirected` holds the rule that keeps a verdict from requests for another server
//!   name (nginx's 421), `kong_client_tls_check_request`; `host` compares host names as
//!   nginx does;
//! - `message` is the connection's one message callback, shared by ALPN and sessions;
//! - `chain` holds `get_full_client_certificate_chain`, PEM encoded once per connection
//!   (`pem`);
//! - `alpn` holds `disable_http2_alpn`; `alpn::select` an ALPN select callback for C
//!   servers; `alpn::wire` the bounds-checked ClientHello parser;
//! - `version` holds library and libssl versions, and the load-time check (one libssl,
//!   of a verified release line);
//! - `openssl_lines` holds the verified OpenSSL lines and the internals that differ
//!   between them, read from the running libcrypto, never from the build's headers;
//! - `error` holds every status code and the shared messages; `ssl` the checks on the
//!   caller's `SSL *`; `sys` the libssl declarations `openssl-sys` lacks.

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod alpn;
mod binding;
mod chain;
mod client_cert;
mod error;
mod host;
mod message;
mod misdirected;
mod openssl_lines;
mod pem;
mod session;
mod ssl;
mod sys;
mod version;

pub use alpn::kong_client_tls_disable_http2_alpn;
pub use alpn::select::{kong_client_tls_alpn_select_cb, KongClientTlsProtocols};
pub use chain::{
    kong_client_tls_get0_full_client_certificate_chain,
    kong_client_tls_get_full_client_certificate_chain,
};
pub use client_cert::{
    kong_client_tls_request_client_certificate,
    kong_client_tls_request_client_certificate_for_server,
};
pub use error::{
    KONG_CLIENT_TLS_BUFFER_TOO_SMALL, KONG_CLIENT_TLS_ERROR, KONG_CLIENT_TLS_NO_CERTIFICATE,
    KONG_CLIENT_TLS_NO_HOST_LIBSSL, KONG_CLIENT_TLS_OK,
};
pub use misdirected::{
    kong_client_tls_check_request, kong_client_tls_get0_request_server_name,
    KONG_CLIENT_TLS_MISDIRECTED, KONG_CLIENT_TLS_NOT_REQUESTED,
};
pub use session::kong_client_tls_disable_session_reuse;
pub use version::{
    kong_client_tls_check_libssl, kong_client_tls_openssl_version_num, kong_client_tls_version,
};

/// Not part of the API: the parsers of client bytes (the ClientHello, host names),
/// public only for the fuzzers (`fuzz/`) and the property tests (`tests/alpn_wire.rs`,
/// `tests/host_names.rs`). They may change at any time.
#[doc(hidden)]
pub mod internal {
    pub use crate::alpn::wire;
    /// Host names as nginx compares them.
    pub mod host {
        pub use crate::host::{canonical, lowercase_into, same_host};
    }
}
