#!/usr/bin/env bash
# One version, Cargo.toml's, everywhere a user reads one: kong_client_tls_version() of the
# built library, its SONAME (libkong_client_tls.so.<major>) and the Lua module's idea of
# it, the .pc of `make install`, the rockspec (file name, version, tag), CHANGELOG.md's
# entry, and the .deb files of `make deb` (Version, the -dev package's pin, the file
# names). The Lua `_VERSION` (read from the library) is checked in nginx by pdk.sh and
# rock.sh and in LuaJIT by tests/lua_unit.rs. Needs `make build` and `make deb` first.
set -euo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

major=${version%%.*}
echo "  Cargo.toml: $version"

so=$release/libkong_client_tls.so
lib_version=$(python3 -c '
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.kong_client_tls_version.restype = ctypes.c_char_p
print(lib.kong_client_tls_version().decode())' "$so")
[ "$lib_version" = "$version" ] || fail "kong_client_tls_version() is $lib_version"
ok "kong_client_tls_version(): $lib_version"
expect "the library's SONAME" "$(readelf -d "$so")" "[libkong_client_tls.so.$major]"
expect "the Lua module's SONAME" "$(grep '^local LIB_SONAME' "$repo/lua/kong_client_tls.lua")" \
  "\"libkong_client_tls.so.$major\""

quiet make -C "$repo" install DESTDIR="$tmp/dest" PREFIX=/usr LDCONFIG=:
expect "the .pc of make install" "$(cat "$tmp/dest/usr/lib/pkgconfig/kong_client_tls.pc")" \
  "Version: $version"
[ -f "$tmp/dest/usr/lib/libkong_client_tls.so.$version" ] || fail "make install: no .so.$version"
ok "make install: libkong_client_tls.so.$version"

rockspecs=$(cd "$repo" && ls ./*.rockspec)
[ "$rockspecs" = "./kong-client-tls-$version-1.rockspec" ] \
  || fail "expected one rockspec, kong-client-tls-$version-1.rockspec: $rockspecs"
rockspec=$(cat "$repo/kong-client-tls-$version-1.rockspec")
expect "the rockspec's version" "$rockspec" "version = \"$version-1\""
expect "the rockspec's tag" "$rockspec" "tag = \"v$version\""

changelog=$(cat "$repo/CHANGELOG.md")
expect "CHANGELOG.md has an entry" "$changelog" "## [$version]"
expect "CHANGELOG.md links it" "$changelog" "[$version]: "

arch=$(dpkg --print-architecture)
for pkg in kong-client-tls kong-client-tls-dev; do
  deb=$release/debian/${pkg}_$version-1_$arch.deb
  [ -f "$deb" ] || fail "$deb missing: run make deb"
  [ "$(dpkg-deb -f "$deb" Version)" = "$version-1" ] || fail "$deb: Version"
  ok "$pkg: Version $version-1"
done
expect "the -dev package pins the runtime package" \
  "$(dpkg-deb -f "$release/debian/kong-client-tls-dev_$version-1_$arch.deb" Depends)" \
  "kong-client-tls (= $version-1)"
expect "the runtime package holds libkong_client_tls.so.$version" \
  "$(dpkg-deb -c "$release/debian/kong-client-tls_$version-1_$arch.deb")" \
  "libkong_client_tls.so.$version"
