#!/usr/bin/env bash
# The Debian road, on a clean Debian 12 root (tests/distro/make-root.sh bookworm: nginx,
# lua-nginx-module, lua-resty-core, made once and cached) seen through an overlay, so the
# cached root stays clean: `apt-get install ./kong-client-tls_*.deb ./kong-client-tls-dev_*.deb`,
# then Debian's nginx with the README's minimal configuration (no lua_package_* line, no
# KONG_CLIENT_TLS_LIB) serves mutual TLS to curl and `openssl s_client`; then
# the example server builds statically from the -dev package through its .pc; then
# `apt-get remove` leaves none of the packages' files and no trace in dpkg.
# Needs root and `make deb` first (`make test-packaging` runs it as root after make deb).
#
#   tests/packaging/deb.sh [suite]     (default bookworm: the host's, which built the .deb)
set -euo pipefail
if [ "${KCT_DEB_NS:-}" != "$$" ]; then
  # A mount namespace of our own: the overlay ends with the script, pass or fail.
  KCT_DEB_NS=$$ exec unshare --mount --propagation private "$0" "$@"
fi
unset KCT_DEB_NS
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

suite=${1:-bookworm}
arch=$(dpkg --print-architecture)
debs=("$release/debian/kong-client-tls_${version}-1_$arch.deb"
      "$release/debian/kong-client-tls-dev_${version}-1_$arch.deb")
for deb in "${debs[@]}"; do
  [ -f "$deb" ] || fail "$deb missing: run make deb"
done

cached=$("$repo/tests/distro/make-root.sh" "$suite" | sed -n 's/^root \(.*\) (.*):$/\1/p')
[ -d "$cached" ] || fail "no root from tests/distro/make-root.sh $suite"
mkdir -p "$tmp/ov" "$tmp/root"
mount -t tmpfs kct-deb "$tmp/ov"
mkdir -p "$tmp/ov/upper" "$tmp/ov/work"
mount -t overlay kct-deb -o "lowerdir=$cached,upperdir=$tmp/ov/upper,workdir=$tmp/ov/work" \
  "$tmp/root"
on_exit "umount -l '$tmp/root'; umount -l '$tmp/ov'"
cp /etc/resolv.conf "$tmp/root/etc/resolv.conf"
ok "a throw-away overlay of the cached $suite root"

mkdir -p "$tmp/debs"
cp "${debs[@]}" "$tmp/debs/"
in_root() { "$repo/tests/distro/in-root.sh" "$tmp/root" "$tmp" -- "$@"; }
export DEBIAN_FRONTEND=noninteractive
# The -dev package pulls libssl-dev from the mirror: fresh package lists first.
quiet in_root apt-get update -qq
quiet in_root sh -c "cd $tmp/debs && apt-get install -y -q ./$(basename "${debs[0]}") ./$(basename "${debs[1]}")"
ok "apt-get install ./kong-client-tls_${version}-1_$arch.deb ./kong-client-tls-dev_…"
files=$(in_root dpkg -L kong-client-tls kong-client-tls-dev)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for f in "/usr/lib/$multiarch/libkong_client_tls.so.$version" \
         "/usr/lib/$multiarch/libkong_client_tls.so.${version%%.*}" \
         /usr/share/lua/5.1/kong_client_tls.lua \
         "/usr/lib/$multiarch/libkong_client_tls.so" "/usr/lib/$multiarch/libkong_client_tls.a" \
         "/usr/lib/$multiarch/pkgconfig/kong_client_tls.pc" /usr/include/kong_client_tls.h; do
  expect "dpkg -L lists $f" "$files" "$f"
  [ -e "$tmp/root$f" ] || fail "$f not installed"
done
expect "the ldconfig trigger ran" "$(in_root ldconfig -p)" "libkong_client_tls.so.${version%%.*} "
expect "Depends on libssl3" "$(in_root dpkg -s kong-client-tls)" "libssl3"

# The README's minimal configuration, nothing more: no lua_package_*, no env.
make_pki "$tmp/pki"
port=$(free_port)
write_mtls_conf "$tmp/nginx" "$port"
start_nginx "$tmp/nginx" "$repo/tests/distro/in-root.sh" "$tmp/root" "$tmp" --
wait_port "$port"
reply=$(curl_tls a.example "$port" --cert "$tmp/pki/client_a.pem" --key "$tmp/pki/client_a.key")
expect "curl with a certificate of the CA: verified" "$reply" \
  "version=$version certs=1 err=nil verify=SUCCESS"
# Found by its SONAME: no template of nginx's default cpath names its directory.
expect_not "the library is not on nginx's package.cpath" "$reply" "/usr/lib/$multiarch/?.so"
reply=$(curl_tls a.example "$port")
expect "curl without a certificate: served, none" "$reply" "certs=0 err=nil verify=NONE"
reply=$(curl_tls a.example "$port" --cert "$tmp/pki/chain.pem" --key "$tmp/pki/leaf.key")
expect "a chain of another CA: FAILED" "$reply" "certs=2 err=nil verify=FAILED:"
reply=$(curl_tls a.example "$port" --cert "$tmp/pki/client_a.pem" --key "$tmp/pki/client_a.key" \
          -H "Host: b.example" -o /dev/null -w '%{http_code}')
expect "verified for a.example, Host b.example: 421 Misdirected Request" "$reply" "421"
reply=$(openssl s_client -connect "127.0.0.1:$port" -servername a.example \
          -cert "$tmp/pki/client_a.pem" -key "$tmp/pki/client_a.key" < /dev/null 2>&1 || true)
expect "openssl s_client: the CA list sent" "$reply" "C Client CA A"
check_error_log "$tmp/nginx"
kill "$(cat "$tmp/nginx/nginx.pid")"

# The -dev package as a C user's pkg-config sees it: the example built statically against
# the root's header, .a and .pc (by the host's compiler, with the root as sysroot; the
# system directories unfiltered, since they are the root's here), run on the host.
pc_env=(PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_LIBDIR="$tmp/root/usr/lib/$multiarch/pkgconfig"
        PKG_CONFIG_SYSTEM_INCLUDE_PATH=/nonexistent PKG_CONFIG_SYSTEM_LIBRARY_PATH=/nonexistent)
expect "the -dev package's .pc" "$(env "${pc_env[@]}" pkg-config --cflags --libs kong_client_tls)" \
  "-I$tmp/root/usr/include -L$tmp/root/usr/lib/$multiarch -lkong_client_tls"
cp "$repo/examples/c-server/server.c" "$repo/examples/c-server/Makefile" "$tmp/"
quiet env "${pc_env[@]}" make -C "$tmp" server-static
expect_not "built from the -dev package: no NEEDED libkong_client_tls" \
  "$(readelf -d "$tmp/server-static")" "libkong_client_tls"
expect "and it runs" "$("$tmp/server-static" 2>&1 || true)" "usage:"

quiet in_root apt-get remove -y -q kong-client-tls kong-client-tls-dev
left=""
for f in $files; do
  if [ -e "$tmp/root$f" ] && [ ! -d "$tmp/root$f" ] || [ -L "$tmp/root$f" ]; then
    left="$left $f"
  fi
done
[ -z "$left" ] || fail "apt-get remove left:$left"
ok "apt-get remove: none of the $(echo "$files" | wc -l) paths of dpkg -L left but directories"
expect_not "ldconfig forgets the library" "$(in_root ldconfig -p)" "libkong_client_tls"
# No conffiles, no maintainer-made files: removed is purged (dpkg forgets the packages);
# a purge asked anyway finds nothing to do.
quiet in_root dpkg --purge kong-client-tls kong-client-tls-dev
expect_not "removed and purged: dpkg knows nothing of them" \
  "$(in_root dpkg-query -W 2>/dev/null)" "kong-client-tls"
