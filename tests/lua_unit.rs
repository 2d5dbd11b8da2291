//! Unit tests of `lua/kong_client_tls.lua` in LuaJIT (mlua), outside nginx.
//!
//! Each test builds its own Lua state with a stand-in `ngx` table (a settable phase and a
//! plain `ngx.ctx`), its own `os.getenv` (so `KONG_CLIENT_TLS_LIB` is per test, not per
//! process) and its own `package.cpath`, then loads the module against the library that
//! `cargo build --release --lib` built. Request-bound behaviour needs a real `SSL *` and
//! is proven in nginx by `tests/nginx_e2e.rs`.

use std::borrow::Cow;
use std::fs;
use std::path::PathBuf;

use mlua::{Lua, Table, Value};

mod support;
use support::kong::{allowed_phases, kong_phase, wrong_phase_message, FUNCTIONS};
use support::memtls;
use support::paths::library;
use support::pki::{KeyKind, Pki};

const MODULE: &str = include_str!("../lua/kong_client_tls.lua");
const HEADER: &str = include_str!("../include/kong_client_tls.h");

const NO_REQUEST: &str =
    "kong_client_tls: no request found (this function works only inside nginx with lua-nginx-module)";

fn lua_dir() -> String {
    format!("{}/lua", env!("CARGO_MANIFEST_DIR"))
}

/// How a test state is set up before `require "kong_client_tls"`.
struct Setup {
    /// `KONG_CLIENT_TLS_LIB` as the module sees it (`None`: unset).
    env_lib: Option<String>,
    /// `package.cpath`.
    cpath: String,
    /// Lua run after the stand-ins are in place and before the module is required.
    prelude: Cow<'static, str>,
}

impl Default for Setup {
    fn default() -> Self {
        let so = library();
        Setup {
            env_lib: None,
            cpath: format!("{}/?.so", so.parent().unwrap().display()),
            prelude: Cow::Borrowed(""),
        }
    }
}

fn new_state(setup: &Setup) -> Lua {
    // The FFI library is "unsafe" for mlua, and the module is an FFI module.
    // SAFETY: only this test's trusted Lua runs in the state.
    let lua = unsafe { Lua::unsafe_new() };
    // Make sure this test binary links libssl, as nginx does (check_libssl compares).
    openssl_sys::init();
    let g = lua.globals();
    let package: Table = g.get("package").unwrap();
    package.set("path", format!("{}/?.lua", lua_dir())).unwrap();
    package.set("cpath", setup.cpath.clone()).unwrap();
    g.set("TEST_ENV_LIB", setup.env_lib.clone()).unwrap();
    lua.load(
        r#"
        local real_getenv = os.getenv
        os.getenv = function(name)
          if name == "KONG_CLIENT_TLS_LIB" then return TEST_ENV_LIB end
          return real_getenv(name)
        end
        PHASE = "init"
        ngx = { get_phase = function() return PHASE end, ctx = {} }
        "#,
    )
    .set_name("=setup")
    .exec()
    .unwrap();
    lua.load(&*setup.prelude)
        .set_name("=prelude")
        .exec()
        .unwrap();
    lua
}

/// Requires the module; `Err` holds the load error's message.
fn require(lua: &Lua) -> Result<Table, String> {
    let (ok, value): (bool, Value) = lua
        .load(r#"return pcall(require, "kong_client_tls")"#)
        .eval()
        .unwrap();
    if ok {
        match value {
            Value::Table(t) => Ok(t),
            other => panic!("module returned {other:?}"),
        }
    } else {
        Err(lua_string(&value))
    }
}

fn lua_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_str().unwrap().to_string(),
        other => format!("{other:?}"),
    }
}

fn loaded() -> Lua {
    let lua = new_state(&Setup::default());
    let tls = require(&lua).expect("the module loads outside nginx");
    lua.globals().set("tls", tls).unwrap();
    lua
}

/// Calls `tls[func](args...)` with the stand-in in `phase` from a chunk named `caller`,
/// the call on line 3, never as a tail call, so level-2 errors read `caller:3: ...`.
/// Returns `Ok(number of results, first result)` or `Err(message)`.
fn call(lua: &Lua, phase: &str, func: &str, args: &str) -> Result<(i64, String), String> {
    let src = format!(
        "PHASE = {phase:?} local function pack(...) return {{ n = select('#', ...), ... }} end\n\
         local ok, n, first = pcall(function()\n\
         local r = pack(tls.{func}({args}))\n\
         return r.n, tostring(r[1])\n\
         end)\n\
         return ok, n, first"
    );
    let (ok, n, first): (bool, Value, Value) = lua.load(src).set_name("=caller").eval().unwrap();
    if ok {
        let n = match n {
            Value::Integer(i) => i,
            Value::Number(f) => f as i64,
            other => panic!("count {other:?}"),
        };
        Ok((n, lua_string(&first)))
    } else {
        Err(lua_string(&n))
    }
}

/// ngx.get_phase() name → Kong's name, from the reference's table.
const NGX_PHASES: [&str; 17] = [
    "init",
    "init_worker",
    "set",
    "ssl_client_hello",
    "ssl_cert",
    "ssl_session_fetch",
    "ssl_session_store",
    "rewrite",
    "server_rewrite",
    "access",
    "balancer",
    "content",
    "header_filter",
    "body_filter",
    "log",
    "timer",
    "exit_worker",
];

#[test]
fn exports_kongs_functions_and_the_library_version() {
    let lua = loaded();
    let tls: Table = lua.globals().get("tls").unwrap();
    // Exactly the API's functions (tests/support/kong.rs) and our `install_pdk`, no more,
    // no fewer.
    let mut exported: Vec<String> = tls
        .pairs::<String, Value>()
        .map(|pair| pair.unwrap())
        .filter(|(_, value)| matches!(value, Value::Function(_)))
        .map(|(name, _)| name)
        .collect();
    exported.sort();
    let mut expected: Vec<String> = FUNCTIONS.iter().map(|f| f.to_string()).collect();
    expected.extend(OURS.iter().map(|(f, _)| f.to_string()));
    expected.push("install_pdk".to_owned());
    expected.sort();
    assert_eq!(exported, expected, "the module's functions");
    let version: String = tls.get("_VERSION").unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn every_function_in_every_phase() {
    let lua = loaded();
    let mut checked = 0;
    for ngx_phase in NGX_PHASES {
        let current = kong_phase(ngx_phase);
        for func in FUNCTIONS {
            let allowed = allowed_phases(func);
            let arg = if func == "set_client_verify" {
                "'NONE'"
            } else {
                ""
            };
            let got = call(&lua, ngx_phase, func, arg);
            if !allowed.contains(&current) {
                assert_eq!(
                    got,
                    Err(format!("caller:3: {}", wrong_phase_message(current, func))),
                    "{func} in {ngx_phase}"
                );
            } else if func == "set_client_verify" {
                // Needs no connection: it works here too, returning nothing.
                assert_eq!(got, Ok((0, "nil".into())), "{func} in {ngx_phase}");
            } else {
                // Past the phase check, a request is needed; plain LuaJIT has none.
                assert_eq!(
                    got,
                    Err(format!("caller:3: {NO_REQUEST}")),
                    "{func} in {ngx_phase}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, NGX_PHASES.len() * 5);
}

/// The functions of ours beyond Kong's API, with the (Kong-named) phases they allow.
const OURS: [(&str, &[&str]); 2] = [
    (
        "reject_misdirected_request",
        &["server_rewrite", "rewrite", "access"],
    ),
    (
        "get_client_certificate_server_name",
        &[
            "server_rewrite",
            "rewrite",
            "access",
            "balancer",
            "response",
            "header_filter",
            "body_filter",
            "log",
        ],
    ),
];

#[test]
fn our_request_phase_functions_in_every_phase() {
    let lua = loaded();
    for ngx_phase in NGX_PHASES {
        let current = kong_phase(ngx_phase);
        for (func, allowed) in OURS {
            let got = call(&lua, ngx_phase, func, "");
            let expected = if allowed.contains(&current) {
                format!("caller:3: {NO_REQUEST}")
            } else {
                format!(
                    "caller:3: function cannot be called in {current} phase (only in: {})",
                    allowed.join(", ")
                )
            };
            assert_eq!(got, Err(expected), "{func} in {ngx_phase}");
        }
    }
}

#[test]
fn wrong_phase_errors_quote_kongs_lists() {
    // The reference's own example (which lists only certificate: client_hello is ours,
    // the placement that keeps resumption safely), and the lists spelled out by hand.
    let lua = loaded();
    assert_eq!(
        call(&lua, "access", "request_client_certificate", ""),
        Err("caller:3: function cannot be called in access phase (only in: certificate, client_hello)".into())
    );
    assert_eq!(
        call(&lua, "access", "disable_session_reuse", ""),
        Err("caller:3: function cannot be called in access phase (only in: certificate)".into())
    );
    assert_eq!(
        call(&lua, "ssl_cert", "get_full_client_certificate_chain", ""),
        Err("caller:3: function cannot be called in certificate phase (only in: rewrite, access, balancer, response, header_filter, body_filter, log)".into())
    );
    assert_eq!(
        call(&lua, "log", "set_client_verify", "'SUCCESS'"),
        Err("caller:3: function cannot be called in log phase (only in: rewrite, access, balancer, response)".into())
    );
    assert_eq!(
        call(&lua, "ssl_client_hello", "disable_session_reuse", ""),
        Err(
            "caller:3: function cannot be called in client_hello phase (only in: certificate)"
                .into()
        )
    );
}

#[test]
fn set_client_verify_stores_accepted_values() {
    let lua = loaded();
    for phase in ["rewrite", "access", "balancer", "content"] {
        for v in [
            "SUCCESS",
            "NONE",
            "FAILED:",
            "FAILED:unknown CA",
            "FAILED:x:y",
        ] {
            lua.load("ngx.ctx = {}").exec().unwrap();
            assert_eq!(
                call(&lua, phase, "set_client_verify", &format!("{v:?}")),
                Ok((0, "nil".into()))
            );
            let stored: String = lua
                .load("return ngx.ctx.CLIENT_VERIFY_OVERRIDE")
                .eval()
                .unwrap();
            assert_eq!(stored, v);
        }
    }
}

#[test]
fn set_client_verify_rejects_other_values_with_kongs_message() {
    let lua = loaded();
    for v in [
        "",
        "success",
        "SUCCESS ",
        " NONE",
        "FAILED",
        "failed:x",
        "FAILED :x",
        "OK",
    ] {
        lua.load("ngx.ctx = { CLIENT_VERIFY_OVERRIDE = 'before' }")
            .exec()
            .unwrap();
        assert_eq!(
            call(&lua, "access", "set_client_verify", &format!("{v:?}")),
            Err(format!(
                "caller:3: unknown client verify value: {v} accepted values are: \"SUCCESS\", \"NONE\" or \"FAILED:<reason>\""
            ))
        );
        let stored: String = lua
            .load("return ngx.ctx.CLIENT_VERIFY_OVERRIDE")
            .eval()
            .unwrap();
        assert_eq!(stored, "before", "a rejected value is not stored");
    }
    for v in ["nil", "1", "true", "{}", "function() end"] {
        let err = call(&lua, "access", "set_client_verify", v).unwrap_err();
        assert!(err.ends_with("assertion failed!"), "non-string {v}: {err}");
    }
    // The phase is checked before the value, as in Kong.
    assert_eq!(
        call(&lua, "header_filter", "set_client_verify", "42"),
        Err("caller:3: function cannot be called in header_filter phase (only in: rewrite, access, balancer, response)".into())
    );
}

#[test]
fn request_client_certificate_checks_ca_certs_type() {
    let lua = loaded();
    for (arg, ty) in [
        ("'pem'", "string"),
        ("{}", "table"),
        ("1", "number"),
        ("true", "boolean"),
    ] {
        assert_eq!(
            call(&lua, "ssl_cert", "request_client_certificate", arg),
            Err(format!(
                "caller:3: ca_certs expects a cdata object but found {ty}"
            ))
        );
    }
    for arg in ["nil", "require('ffi').new('void *')"] {
        assert_eq!(
            call(&lua, "ssl_cert", "request_client_certificate", arg),
            Err(format!("caller:3: {NO_REQUEST}"))
        );
    }
}

/// Typed cdata that is not a certificate stack would be read as one by OpenSSL: each is
/// refused by its C type. The stack types (and an untyped `void *`, which cannot be told
/// apart) go on to the connection lookup, which the stand-in has none for.
#[test]
fn request_client_certificate_refuses_cdata_of_other_c_types() {
    let lua = loaded();
    lua.load(
        "local ffi = require 'ffi'
         ffi.cdef [[typedef struct x509_st X509; typedef struct evp_pkey_st EVP_PKEY;
                    typedef struct stack_st OPENSSL_STACK;]]",
    )
    .exec()
    .unwrap();
    let expected = "ca_certs expects a STACK_OF(X509) * cdata (from ngx.ssl.parse_pem_cert, \
                    or a lua-resty-openssl x509.chain or its ctx) but found ";
    for (arg, ctype) in [
        ("require('ffi').new('X509 *')", "ctype<struct x509_st *>"),
        (
            "{ ctx = require('ffi').new('X509 *') }",
            "ctype<struct x509_st *>",
        ),
        (
            "require('ffi').new('EVP_PKEY *')",
            "ctype<struct evp_pkey_st *>",
        ),
        ("require('ffi').new('SSL *')", "ctype<struct ssl_st *>"),
        ("require('ffi').new('int[4]')", "ctype<int [4]>"),
        ("require('ffi').new('uint64_t', 1)", "ctype<uint64_t>"),
        ("require('ffi').new('char *')", "ctype<char *>"),
    ] {
        assert_eq!(
            call(&lua, "ssl_cert", "request_client_certificate", arg),
            Err(format!("caller:3: {expected}{ctype}")),
            "{arg}"
        );
    }
    for arg in [
        "require('ffi').new('OPENSSL_STACK *')",
        "require('ffi').new('struct stack_st_X509 *')",
        "{ ctx = require('ffi').new('OPENSSL_STACK *') }",
        "require('ffi').new('const void *')",
    ] {
        assert_eq!(
            call(&lua, "ssl_cert", "request_client_certificate", arg),
            Err(format!("caller:3: {NO_REQUEST}")),
            "{arg}"
        );
    }
}

#[test]
fn loads_without_any_ngx_table() {
    let lua = new_state(&Setup {
        prelude: "ngx = nil".into(),
        ..Setup::default()
    });
    let tls = require(&lua).expect("loads in plain LuaJIT without ngx");
    lua.globals().set("tls", tls).unwrap();
    assert_eq!(
        call(&lua, "access", "get_full_client_certificate_chain", ""),
        Err(
            "caller:3: kong_client_tls: ngx.get_phase is not available (not running inside nginx)"
                .into()
        )
    );
}

// Library discovery -----------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kct-lua-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn loaded_from(lua: &Lua) -> String {
    // The module loaded the library through ffi.load; find which file by its version.
    let tls = require(lua).expect("module loads");
    tls.get::<String>("_VERSION").unwrap()
}

#[test]
fn finds_lib_prefixed_library_through_cpath() {
    let so = library();
    let lua = new_state(&Setup {
        cpath: format!(
            "/nonexistent/?.so;{}/?.so;/also/nonexistent/?.so",
            so.parent().unwrap().display()
        ),
        ..Setup::default()
    });
    assert_eq!(loaded_from(&lua), env!("CARGO_PKG_VERSION"));
}

#[test]
fn finds_unprefixed_library_through_cpath() {
    let dir = TempDir::new("plain");
    std::os::unix::fs::symlink(library(), dir.0.join("kong_client_tls.so")).unwrap();
    let lua = new_state(&Setup {
        cpath: format!("./?/nothing.so;{}/?.so", dir.path()),
        ..Setup::default()
    });
    assert_eq!(loaded_from(&lua), env!("CARGO_PKG_VERSION"));
}

#[test]
fn explicit_path_from_the_environment_wins() {
    let dir = TempDir::new("env");
    let renamed = dir.0.join("renamed-kct.so");
    std::os::unix::fs::symlink(library(), &renamed).unwrap();
    let lua = new_state(&Setup {
        env_lib: Some(renamed.display().to_string()),
        cpath: "/nonexistent/?.so".into(),
        ..Setup::default()
    });
    assert_eq!(loaded_from(&lua), env!("CARGO_PKG_VERSION"));
}

#[test]
fn empty_environment_variable_falls_back_to_cpath() {
    let lua = new_state(&Setup {
        env_lib: Some(String::new()),
        ..Setup::default()
    });
    assert_eq!(loaded_from(&lua), env!("CARGO_PKG_VERSION"));
}

/// The dynamic linker as on a machine without the library installed: the SONAME is not
/// found. (In this test process glibc would answer with the copy other tests loaded.)
const SONAME_NOT_INSTALLED: &str = r#"
    local ffi = require "ffi"
    local real_load = ffi.load
    ffi.load = function(name)
      if name == "libkong_client_tls.so.0" then
        error(name .. ": cannot open shared object file: No such file or directory")
      end
      return real_load(name)
    end
"#;

#[test]
fn not_found_lists_every_path_tried() {
    let lua = new_state(&Setup {
        cpath: "/nonexistent/a/?.so;./?.so;/usr/lib/lua/loadall.so;/nonexistent/b/?/core.so".into(),
        prelude: SONAME_NOT_INSTALLED.into(),
        ..Setup::default()
    });
    let err = require(&lua).unwrap_err();
    let tried = "kong_client_tls: libkong_client_tls.so not found; set KONG_CLIENT_TLS_LIB to its path or add its directory to package.cpath (lua_package_cpath in nginx); tried: /nonexistent/a/libkong_client_tls.so, /nonexistent/a/kong_client_tls.so, ./libkong_client_tls.so, ./kong_client_tls.so, /nonexistent/b/kong_client_tls/core.so";
    let then = "; then libkong_client_tls.so.0 in the dynamic linker's search path: ";
    assert!(err.starts_with(&format!("{tried}{then}")), "{err}");
    assert!(err.contains("No such file"), "{err}");
    let lua = new_state(&Setup {
        cpath: String::new(),
        prelude: SONAME_NOT_INSTALLED.into(),
        ..Setup::default()
    });
    let err = require(&lua).unwrap_err();
    assert!(
        err.contains(&format!("tried: (no templates){then}")),
        "{err}"
    );
}

#[test]
fn the_soname_is_the_last_resort() {
    // Nothing on package.cpath: the module still loads, by the SONAME, when the dynamic
    // linker can find it. Here glibc finds the copy this process already loaded (it
    // matches a SONAME against loaded objects first); tests/packaging/deb.sh shows the
    // installed case.
    let _loaded = loaded();
    let lua = new_state(&Setup {
        cpath: "/nonexistent/?.so".into(),
        ..Setup::default()
    });
    assert_eq!(loaded_from(&lua), env!("CARGO_PKG_VERSION"));
}

#[test]
fn bad_explicit_path_is_reported() {
    let lua = new_state(&Setup {
        env_lib: Some("/nonexistent/libkong_client_tls.so".into()),
        ..Setup::default()
    });
    let err = require(&lua).unwrap_err();
    assert!(
        err.starts_with(
            "kong_client_tls: cannot load /nonexistent/libkong_client_tls.so (from KONG_CLIENT_TLS_LIB): "
        ),
        "{err}"
    );
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn unloadable_file_on_cpath_is_reported() {
    let dir = TempDir::new("garbage");
    let bad = dir.0.join("libkong_client_tls.so");
    fs::write(&bad, b"not an ELF file").unwrap();
    let lua = new_state(&Setup {
        cpath: format!("{}/?.so", dir.path()),
        ..Setup::default()
    });
    let err = require(&lua).unwrap_err();
    assert!(
        err.starts_with(&format!("kong_client_tls: cannot load {}: ", bad.display())),
        "{err}"
    );
}

// The one-libssl check at load -----------------------------------------------------

/// A prelude that makes `kong_client_tls_check_libssl` answer `rc` with `msg`, by
/// wrapping `ffi.load` so that everything else reaches the real library.
fn stub_check(rc: i32, msg: &str, config: &str) -> Cow<'static, str> {
    Cow::Owned(format!(
        r#"
        local ffi = require "ffi"
        local real_load = ffi.load
        local MSG = {msg:?}
        ffi.load = function(path)
          local lib = real_load(path)
          return setmetatable({{}}, {{ __index = function(_, k)
            if k == "kong_client_tls_check_libssl" then
              return function(errp) errp[0] = MSG return {rc} end
            end
            return lib[k]
          end }})
        end
        ngx.config = {config}
        "#
    ))
}

#[test]
fn real_check_passes_in_a_process_that_links_libssl() {
    let lua = new_state(&Setup::default());
    lua.globals()
        .set("SO", library().display().to_string())
        .unwrap();
    let rc: i64 = lua
        .load(
            r#"
            local ffi = require "ffi"
            require "kong_client_tls" -- declares the prototypes
            return ffi.load(SO).kong_client_tls_check_libssl(nil)
            "#,
        )
        .eval()
        .unwrap();
    assert_eq!(rc, 0);
}

#[test]
fn two_libssl_copies_refuse_to_load() {
    for config in ["nil", "{ nginx_version = 1022001, subsystem = 'http' }"] {
        let lua = new_state(&Setup {
            prelude: stub_check(-1, "two copies of libssl in one process", config),
            ..Setup::default()
        });
        assert_eq!(
            require(&lua).unwrap_err(),
            refusal("two copies of libssl in one process")
        );
    }
}

#[test]
fn no_host_libssl_is_fine_in_plain_luajit_only() {
    let lua = new_state(&Setup {
        prelude: stub_check(3, "the host process exports no libssl symbols", "nil"),
        ..Setup::default()
    });
    require(&lua).expect("plain LuaJIT may lack libssl");

    let lua = new_state(&Setup {
        prelude: stub_check(
            3,
            "the host process exports no libssl symbols",
            "{ nginx_version = 1022001, subsystem = 'http' }",
        ),
        ..Setup::default()
    });
    assert_eq!(
        require(&lua).unwrap_err(),
        refusal("the host process exports no libssl symbols")
    );
}

#[test]
fn an_unverified_openssl_line_refuses_to_load_everywhere() {
    // The library's side (the line read from OpenSSL_version_num()) is proven by
    // tests/c/test_unverified_openssl.c with a faked version; here, what Lua makes of it.
    const UNVERIFIED: &str = "the running OpenSSL release line is not verified for kong_client_tls";
    for config in ["nil", "{ nginx_version = 1022001, subsystem = 'http' }"] {
        let lua = new_state(&Setup {
            prelude: stub_check(-1, UNVERIFIED, config),
            ..Setup::default()
        });
        assert_eq!(require(&lua).unwrap_err(), refusal(UNVERIFIED));
    }
}

/// The module's load-time refusal: the library, the running libcrypto as the module
/// names it ("OpenSSL 3.0.19"), and `reason`.
fn refusal(reason: &str) -> String {
    let n = openssl::version::number() as u64;
    format!(
        "kong_client_tls: refusing to load {} with OpenSSL {}.{}.{}: {reason}",
        library().display(),
        n >> 28,
        (n >> 20) & 0xff,
        (n >> 4) & 0xff
    )
}

#[test]
fn stream_subsystem_is_refused() {
    let lua = new_state(&Setup {
        prelude: "ngx.config = { nginx_version = 1022001, subsystem = 'stream' }".into(),
        ..Setup::default()
    });
    assert_eq!(
        require(&lua).unwrap_err(),
        "kong_client_tls: the stream subsystem is not supported (only http)"
    );
}

// The ffi.cdef block against include/kong_client_tls.h -----------------------------

/// The one `ffi.cdef [[ ... ]]` block of the module.
fn cdef_block(module: &str) -> &str {
    let code_lines = module.lines().filter(|l| !l.trim_start().starts_with("--"));
    assert_eq!(
        code_lines.filter(|l| l.contains("ffi.cdef")).count(),
        1,
        "the module must have exactly one ffi.cdef block"
    );
    let start = module.find("ffi.cdef").unwrap();
    let open = start + module[start..].find("[[").expect("ffi.cdef [[") + 2;
    let close = open + module[open..].find("]]").expect("]]");
    &module[open..close]
}

fn strip_comments(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = &r[r.find("*/").map_or(r.len(), |i| i + 2)..];
        } else if let Some(r) = rest.strip_prefix("//") {
            rest = &r[r.find('\n').unwrap_or(r.len())..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// One declaration with all optional whitespace removed: `int f(SSL*ssl,const char**err)`.
fn normalize(decl: &str) -> String {
    let words: Vec<&str> = decl.split_whitespace().collect();
    let mut s = words.join(" ");
    for p in ["(", ")", ",", "*"] {
        s = s.replace(&format!(" {p}"), p).replace(&format!("{p} "), p);
    }
    s
}

fn function_name(decl: &str) -> Option<String> {
    let before = &decl[..decl.find('(')?];
    let name: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Some(name)
}

/// `name → normalized prototype` of the `kong_client_tls_*` functions in C source.
fn prototypes(src: &str) -> Vec<(String, String)> {
    let code: String = strip_comments(src)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| !l.contains("extern \"C\"") && l.trim() != "}")
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(normalize)
        .filter(|d| !d.starts_with("typedef"))
        .filter_map(|d| Some((function_name(&d)?, d)))
        .filter(|(name, _)| name.starts_with("kong_client_tls_"))
        .collect()
}

/// The header's prototypes as the FFI sees them: `STACK_OF(X509)` is opaque there, so
/// the cdef spells it `void` (ngx.ssl's stacks are `void *`, lua-resty-openssl's are
/// `OPENSSL_STACK *`; both must be accepted as they are).
fn header_prototypes(header: &str) -> Vec<(String, String)> {
    prototypes(&header.replace("STACK_OF(X509)", "void"))
}

/// Every cdef prototype must be the header's, word for word; returns the mismatches.
fn cdef_mismatches(module: &str, header: &str) -> Vec<String> {
    let header = header_prototypes(header);
    let mut problems = Vec::new();
    let declared = prototypes(cdef_block(module));
    for (name, decl) in &declared {
        match header.iter().find(|(n, _)| n == name) {
            None => problems.push(format!("{name} is not in the header")),
            Some((_, h)) if h != decl => {
                problems.push(format!("{name}: cdef `{decl}` but header `{h}`"))
            }
            Some(_) => {}
        }
    }
    // Every library function the module calls is declared.
    for (i, _) in module.match_indices("lib.kong_client_tls_") {
        let name: String = module[i + 4..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !declared.iter().any(|(n, _)| *n == name) {
            problems.push(format!("{name} is called but not declared"));
        }
    }
    problems
}

#[test]
fn cdef_matches_the_header() {
    let problems = cdef_mismatches(MODULE, HEADER);
    assert!(problems.is_empty(), "cdef vs header: {problems:#?}");
    let declared = prototypes(cdef_block(MODULE));
    for needed in [
        "kong_client_tls_get0_full_client_certificate_chain",
        "kong_client_tls_request_client_certificate",
        "kong_client_tls_disable_session_reuse",
        "kong_client_tls_check_libssl",
    ] {
        assert!(declared.iter().any(|(n, _)| n == needed), "{needed}");
    }
}

#[test]
fn cdef_check_catches_divergence() {
    // The comparison itself must bite: change the header the way a core change would.
    for (from, to) in [
        ("size_t *len,\n                                                       const char **err",
         "unsigned int *len,\n                                                       const char **err"),
        ("int kong_client_tls_disable_session_reuse(SSL *ssl, const char **err)",
         "int kong_client_tls_disable_session_reuse(SSL *ssl, int flags, const char **err)"),
        ("int kong_client_tls_check_libssl(const char **err)",
         "long kong_client_tls_check_libssl(const char **err)"),
        ("kong_client_tls_request_client_certificate(", "kong_client_tls_request_client_cert("),
    ] {
        assert!(HEADER.contains(from), "test fixture out of date: {from}");
        let changed = HEADER.replace(from, to);
        assert!(
            !cdef_mismatches(MODULE, &changed).is_empty(),
            "a header change went unnoticed: {to}"
        );
    }
}

#[test]
fn status_codes_match_the_header() {
    let mut seen = 0;
    for line in MODULE.lines() {
        let Some(rest) = line.strip_prefix("local KONG_CLIENT_TLS_") else {
            continue;
        };
        let (name, value) = rest.split_once(" = ").expect("local NAME = value");
        // The header parenthesises negative values.
        let value = if value.starts_with('-') {
            format!("({value})")
        } else {
            value.to_owned()
        };
        let define = format!("#define KONG_CLIENT_TLS_{name} {value}");
        assert!(
            HEADER.lines().any(|l| l.trim() == define),
            "header lacks `{define}`"
        );
        seen += 1;
    }
    assert_eq!(
        seen, 6,
        "OK, ERROR, NO_CERTIFICATE, NO_HOST_LIBSSL, MISDIRECTED, NOT_REQUESTED"
    );
}

#[test]
fn the_library_stays_loaded_while_the_module_lives() {
    // LuaJIT dlclose()s a collected clib; the module must keep its clib referenced, or
    // every later call jumps into unmapped memory (seen in nginx before this was fixed).
    let lua = new_state(&Setup {
        prelude: r#"
            local ffi = require "ffi"
            local real_load = ffi.load
            LOADED = setmetatable({}, { __mode = "v" })
            ffi.load = function(path)
              local lib = real_load(path)
              LOADED[#LOADED + 1] = lib
              return lib
            end
        "#
        .into(),
        ..Setup::default()
    });
    let tls = require(&lua).expect("module loads");
    lua.globals().set("tls", tls).unwrap();
    let alive: bool = lua
        .load(r#"collectgarbage("collect") collectgarbage("collect") return LOADED[1] ~= nil"#)
        .eval()
        .unwrap();
    assert!(
        alive,
        "the clib was garbage collected while the module is loaded"
    );
}

/// OpenSSL calls into the library for as long as an `SSL` carries its state: the ex_data
/// free functions on `SSL_free`, and the connection's callbacks. So the library must stay
/// mapped after the Lua state that loaded it is closed (nginx with `lua_code_cache off`
/// closes one per request): it is linked `-z nodelete`. In a fresh process (no other test
/// holding the library), SSLs get the library's state through the module's clib, the Lua
/// state is closed, then the SSLs run their handshakes' first step and are freed.
#[test]
fn the_library_outlives_the_lua_state_that_loaded_it() {
    const CHILD: &str = "KCT_OUTLIVES_CHILD";
    let name = "the_library_outlives_the_lua_state_that_loaded_it";
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the child died: {:?}\n{text}",
            out.status
        );
        assert!(
            text.contains("freed 12 SSLs after the Lua state closed"),
            "{text}"
        );
        return;
    }
    let dynamic = std::process::Command::new("readelf")
        .args(["-d", library().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&dynamic.stdout).contains("NODELETE"),
        "the library is not linked -z nodelete"
    );
    let mapped = || {
        fs::read_to_string("/proc/self/maps")
            .unwrap()
            .contains(library().to_str().unwrap())
    };
    assert!(!mapped(), "nothing loaded the library yet in this process");

    let version = openssl::ssl::SslVersion::TLS1_3;
    let server_pki = Pki::get("server", KeyKind::EcdsaP256);
    let ctx = memtls::server_context(server_pki, version).build();
    let ssls: Vec<openssl::ssl::Ssl> = (0..12)
        .map(|_| openssl::ssl::Ssl::new(&ctx).unwrap())
        .collect();
    {
        let lua = new_state(&Setup::default());
        require(&lua).expect("module loads");
        let pointers = lua.create_table().unwrap();
        for (i, ssl) in ssls.iter().enumerate() {
            let ptr = mlua::LightUserData(foreign_types::ForeignType::as_ptr(ssl).cast());
            pointers.set(i + 1, ptr).unwrap();
        }
        lua.globals().set("SSLS", pointers).unwrap();
        lua.globals()
            .set("SO", library().to_str().unwrap())
            .unwrap();
        // Through the very clib the module loaded (ffi.load of the same path shares it):
        // ex_data on every SSL, the not-resumable, verify and message callbacks.
        lua.load(
            r#"
            local ffi = require "ffi"
            local lib = ffi.load(SO)
            local err = ffi.new("const char *[1]")
            for i = 1, #SSLS do
              local ssl = ffi.cast("SSL *", SSLS[i])
              assert(lib.kong_client_tls_disable_http2_alpn(ssl, err) == 0)
              assert(lib.kong_client_tls_request_client_certificate(ssl, nil, err) == 0)
              assert(lib.kong_client_tls_disable_session_reuse(ssl, err) == 0)
            end
            "#,
        )
        .exec()
        .unwrap();
        assert!(mapped());
        drop(lua);
    }
    assert!(mapped(), "the library was unmapped with the Lua state");
    // Handshakes run the library's callbacks (message, not-resumable, verify); then
    // SSL_free runs its ex_data free functions.
    let client =
        memtls::client_context(Some(Pki::get("client", KeyKind::EcdsaP256)), version).build();
    let count = ssls.len();
    for ssl in ssls {
        let (server_end, client_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let client = openssl::ssl::Ssl::new(&client).unwrap();
        let peer = std::thread::spawn(move || {
            let mut stream = client.connect(client_end).map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            std::io::Read::read(&mut stream, &mut byte).map_err(|e| e.to_string())?;
            Ok::<u8, String>(byte[0])
        });
        let mut stream = ssl.accept(server_end).expect("the handshake completes");
        // Verified by the library's callbacks: depth 0, the context's (empty) store.
        assert_eq!(
            stream.ssl().verify_result().as_raw(),
            openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        );
        std::io::Write::write_all(&mut stream, b"k").unwrap();
        assert_eq!(peer.join().unwrap(), Ok(b'k'));
        drop(stream);
    }
    println!("freed {count} SSLs after the Lua state closed");
}
