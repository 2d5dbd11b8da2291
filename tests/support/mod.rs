//! The one support module of the tests, the benches and the soak. An integration test
//! includes it with `mod support;` (tests/soak.rs too); a bench with
//! `#[path = "../tests/support/mod.rs"] mod support;`.
//!
//! - [`paths`]: the clone, the target directory, the built library.
//! - [`process`]: [`process::ChildGuard`], a child process stopped on Drop.
//! - [`nginx`]: the nginx harness (start, wait, named ports, logs, `finish`, reload).
//! - [`clients`]: the TLS clients that drive nginx (Rust, `openssl s_client`, `curl`).
//! - [`pki`]: throw-away certificate hierarchies.
//! - [`memtls`]: in-process handshakes, threaded for the tests and single-threaded for the
//!   benches, with code run from the server's callbacks.
//! - [`sys`]: the libssl declarations `openssl-sys` lacks.
//! - [`kong`]: the API's function list and Kong's phase table, as the reference states.
//! - [`api`]: the library's session calls as `Result`s; [`sessions`]: every resumption path.
// Each test or bench binary uses a part of it.
#![allow(dead_code, unused_imports)]

pub mod api;
pub mod clients;
pub mod h2;
pub mod kong;
pub mod memtls;
pub mod nginx;
pub mod paths;
pub mod pki;
pub mod process;
pub mod sessions;
pub mod sys;
