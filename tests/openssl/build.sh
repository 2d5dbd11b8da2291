#!/usr/bin/env bash
# Builds one OpenSSL release line as shared libraries from the source that the
# `openssl-src` crate ships, into a cache outside the clone, and prints its prefix.
#
#   tests/openssl/build.sh 3.5        # -> $KCT_CACHE/openssl/3.5.5 (lib/, include/)
#
# Shared, not the `vendored` feature's static build: the matrix runs the library built
# against the host's headers with this libssl.so.3 swapped in at run time (what happens
# inside OpenResty, or when one binary is shipped to several hosts), and also builds the
# crate against these headers. A prefix is reused once its stamp exists; a half-made one
# is rebuilt. The crate ships no provider-module sources, hence no-module no-legacy.
set -euo pipefail

line=${1:?usage: build.sh <line: 1.1.1|3.1|3.2|3.3|3.4|3.5|3.6|4.0>}
here=$(cd "$(dirname "$0")" && pwd)
crate=$(awk -v l="$line" '$1 == l { print $2 }' "$here/versions.txt")
[ -n "$crate" ] || { echo "build.sh: no OpenSSL line '$line' in $here/versions.txt" >&2; exit 2; }
version=${crate#*+}
cache=${KCT_CACHE:-$HOME/.cache/kong-client-tls}
prefix=$cache/openssl/$version
stamp=$prefix/.built-from-openssl-src-$crate

if [ -f "$stamp" ]; then
  echo "$prefix"
  exit 0
fi

log() { echo "build.sh: $*" >&2; }
rm -rf "$prefix"
work=$(mktemp -d "$cache/build-$version.XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "$cache/build-$version.XXXXXX"; })
trap 'rm -rf "$work"' EXIT

# The source, through cargo: a throw-away manifest that depends on this exact crate.
log "fetching openssl-src $crate"
mkdir -p "$work/fetch/src"
printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nopenssl-src = "=%s"\n' \
  "$crate" > "$work/fetch/Cargo.toml"
: > "$work/fetch/src/lib.rs"
${CARGO:-cargo} fetch -q --manifest-path "$work/fetch/Cargo.toml" >&2
archive=$(find "${CARGO_HOME:-$HOME/.cargo}"/registry/cache -name "openssl-src-$crate.crate" | head -n 1)
tar -xzf "$archive" -C "$work"
src=$work/openssl-src-$crate/openssl

case "$(uname -m)" in
  x86_64) target=linux-x86_64 ;;
  aarch64) target=linux-aarch64 ;;
  *) target=linux-generic64 ;;
esac
case "$line" in
  1.1.1) options="shared no-tests" ;; # no providers, hence nothing to leave out
  3.0 | 3.1) options="shared no-module no-legacy no-tests" ;;
  *) options="shared no-module no-legacy no-tests no-docs" ;; # no-docs: 3.2 on
esac

# The crate leaves out util/mkdef.pl, which writes the linker version scripts of the
# shared libraries from util/lib{crypto,ssl}.num. Write them here instead, in the same
# form (OPENSSL_3.0.0 { global: ...; local: *; }; OPENSSL_3.2.0 { ... } OPENSSL_3.0.0;),
# so these libraries carry the symbol versions that binaries linked against a
# distribution's libssl.so.3 ask for; then stand in an empty mkdef.pl older than them.
version_script() { # util/libX.num
  awk '$4 !~ /^NOEXIST/ { v = $3; gsub("_", ".", v); if (!(v in seen)) { seen[v] = 1; order[++n] = v }
                           syms[v] = syms[v] "        " $1 ";\n" }
       END { for (i = 1; i <= n; i++) {
               printf "OPENSSL_%s {\n    global:\n%s", order[i], syms[order[i]]
               if (i == 1) printf "    local: *;\n};\n"; else printf "} OPENSSL_%s;\n", order[i - 1]
             } }' "$1"
}

log "building OpenSSL $version ($target, $options) into $prefix"
start=$(date +%s)
(
  cd "$src"
  # shellcheck disable=SC2086
  ./Configure $options --prefix="$prefix" --libdir=lib --openssldir="$prefix/ssl" "$target" >/dev/null
  if [ ! -e util/mkdef.pl ]; then
    : > util/mkdef.pl
    touch -d 2000-01-01 util/mkdef.pl
    for lib in crypto ssl; do version_script "util/lib$lib.num" > "lib$lib.ld"; done
  fi
  make -s -j"$(nproc)" build_libs >/dev/null 2>&1 || make -j"$(nproc)" build_libs >&2
  make -s install_dev >/dev/null
  # The command-line tool is useful for debugging a failing line; not needed by tests.
) >&2
touch "$stamp"
log "OpenSSL $version built in $(( $(date +%s) - start )) s"
echo "$prefix"
