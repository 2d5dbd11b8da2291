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

/// `<target>/release`, where `cargo build --release --lib` puts the library.
pub fn release_dir() -> PathBuf {
    target_dir().join("release")
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
