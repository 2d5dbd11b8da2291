//! Generates the C header from the `extern "C"` items of `src/` with cbindgen.
//!
//! The header is written to `OUT_DIR`; the committed copy in `include/` is refreshed only
//! on request (`make header`, i.e. `KONG_CLIENT_TLS_WRITE_HEADER=1`). `tests/header.rs`
//! fails when the two differ, so the committed header cannot drift from the source.

use std::env;
use std::path::PathBuf;

fn main() {
    refuse_openssl_before_3();
    link_shared_library();
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=KONG_CLIENT_TLS_WRITE_HEADER");

    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("kong_client_tls.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    let mut header = Vec::new();
    cbindgen::generate_with_config(&crate_dir, config)
        .expect("cbindgen can read the crate")
        .write(&mut header);
    let header = String::from_utf8(header).expect("cbindgen writes UTF-8");
    std::fs::write(&out, c89_comments(&parenthesise_negative_macros(&header)))
        .expect("OUT_DIR is writable");
    println!(
        "cargo:rustc-env=KONG_CLIENT_TLS_GENERATED_HEADER={}",
        out.display()
    );

    if env::var_os("KONG_CLIENT_TLS_WRITE_HEADER").is_some() {
        let committed = crate_dir.join("include").join("kong_client_tls.h");
        std::fs::copy(&out, &committed).expect("include/ is writable");
    }
}

/// The shared library's ELF names: SONAME `libkong_client_tls.so.<N>`, N the ABI number.
///
/// The rule (README, "Versions"): N is the major version of `Cargo.toml`. Through the 0.x
/// releases the C ABI only grows (new functions, new status codes), so every 0.y.z is
/// `libkong_client_tls.so.0`; a release that removes or changes anything in the C ABI
/// is a new major version with a new SONAME (1.0.0: `.so.1`). The Makefile, the `.deb`
/// and the `.pc` derive the same N from the same version.
///
/// `-z nodelete`: LuaJIT `dlclose()`s a clib when it is garbage collected, but OpenSSL
/// still holds this library's callbacks (verify, message, not-resumable) and ex_data
/// free functions on live connections; the library must stay mapped until exit.
fn link_shared_library() {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkong_client_tls.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}

/// cbindgen's `cpp_compat` lines end in `// __cplusplus` and `// extern "C"`, which C89
/// rejects (`-std=c89 -pedantic`, where OpenSSL's own headers compile): the header has
/// `/* */` comments only (`documentation_style = "doxy"` for the documentation).
fn c89_comments(header: &str) -> String {
    let mut fixed = String::with_capacity(header.len());
    for line in header.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        match body.split_once("//") {
            // Only cbindgen's own lines (`#endif`, `}`): never a `//` inside documentation.
            Some((code, comment)) if code.starts_with(['#', '}']) => {
                fixed.push_str(&format!("{code}/* {} */", comment.trim()));
                fixed.push_str(&line[body.len()..]);
            }
            _ => fixed.push_str(line),
        }
    }
    fixed
}

/// `#define X -1` becomes `#define X (-1)`, so that `a-X` or `X[0]`-style expansions in C
/// cannot change meaning; cbindgen writes a negative constant bare.
fn parenthesise_negative_macros(header: &str) -> String {
    let mut fixed = String::with_capacity(header.len() + 16);
    for line in header.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        match body
            .strip_prefix("#define ")
            .and_then(|rest| rest.split_once(' '))
        {
            Some((name, value)) if value.starts_with('-') => {
                fixed.push_str(&format!("#define {name} ({value})"));
                fixed.push_str(&line[body.len()..]);
            }
            _ => fixed.push_str(line),
        }
    }
    fixed
}

/// OpenSSL 1.1.1 (still linked by OpenResty 1.25's packages and RHEL 8) lacks calls this
/// library makes (`SSL_get0_peer_certificate`, among others) and its handshake internals
/// were never verified: say so at build time instead of failing to link or, worse, at
/// run time. openssl-sys tells dependents the version of the headers it found.
fn refuse_openssl_before_3() {
    let Ok(hex) = env::var("DEP_OPENSSL_VERSION_NUMBER") else {
        return;
    };
    let version = u64::from_str_radix(&hex, 16).unwrap_or(0);
    if version < 0x3000_0000 {
        panic!(
            "kong-client-tls needs OpenSSL 3.0 or newer (3.0 to 3.6 and 4.0 are verified), \
             but openssl-sys found OpenSSL headers of version 0x{hex} (OpenSSL {}.{}.{}); \
             point OPENSSL_DIR at an OpenSSL 3 installation",
            version >> 28,
            (version >> 20) & 0xff,
            (version >> 12) & 0xff,
        );
    }
}
