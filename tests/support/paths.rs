//! Where things are: the clone, the Cargo target directory and the built library.

use std::path::{Path, PathBuf};

/// The clone (the crate's manifest directory).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the clone when relative), else
/// `<clone>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                repo_root().join(t)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Where Cargo put the library built with this test or bench: the parent of the `deps`
/// directory this executable runs from (`<target>/release`, or `<target>/<triple>/release`
/// for an instrumented `--target` build such as `make test-sanitizers`); else
/// `<target>/release`, where `cargo build --release --lib` puts it.
pub fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().ok();
    exe.as_deref()
        .and_then(Path::parent)
        .filter(|dir| dir.ends_with("deps"))
        .and_then(Path::parent)
        .filter(|dir| dir.join("libkong_client_tls.so").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| target_dir().join("release"))
}

/// The built `libkong_client_tls.so`, or why it is missing.
pub fn try_library() -> Result<PathBuf, String> {
    let so = release_dir().join("libkong_client_tls.so");
    if so.is_file() {
        Ok(so)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release --lib` (`make test` and \
             `make bench` do)",
            so.display()
        ))
    }
}

/// The built `libkong_client_tls.so`; panics when it is missing (tests never skip).
pub fn library() -> PathBuf {
    try_library().unwrap_or_else(|e| panic!("{e}"))
}
