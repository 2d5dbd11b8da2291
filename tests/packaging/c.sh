#!/usr/bin/env bash
# The C road, from the installed files only: `make install` into a temp prefix, then
# examples/c-server copied out of the tree and built through pkg-config, dynamically and
# statically; the static one needs no libkong_client_tls.so (readelf NEEDED). The server
# is then driven by curl and `openssl s_client`: the client certificate verified (a leaf
# of the CA: 0; leaf + intermediate at depth 0: 20), the chain printed, no certificate
# without one, ALPN per name (h2; http/1.1 where h2 is disabled), no resumption where
# session reuse is disabled and resumption elsewhere. Last, `make uninstall` leaves
# nothing. Needs `make build` first (the Makefile's test-packaging does it).
set -euo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

prefix=$tmp/prefix
quiet make -C "$repo" install PREFIX="$prefix" LDCONFIG=:
major=${version%%.*}
if [ "$(readlink "$prefix/lib/libkong_client_tls.so")" != "libkong_client_tls.so.$major" ] \
   || [ "$(readlink "$prefix/lib/libkong_client_tls.so.$major")" != "libkong_client_tls.so.$version" ] \
   || [ ! -f "$prefix/lib/libkong_client_tls.so.$version" ]; then
  fail "make install: the .so, .so.$major and .so.$version links"
fi
ok "make install: libkong_client_tls.so -> .so.$major -> .so.$version"
expect "SONAME" "$(readelf -d "$prefix/lib/libkong_client_tls.so.$version")" \
  "Library soname: [libkong_client_tls.so.$major]"

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[ "$(pkg-config --modversion kong_client_tls)" = "$version" ] || fail "pkg-config --modversion"
ok "pkg-config --modversion kong_client_tls: $version"
expect "pkg-config --static --libs" "$(pkg-config --static --libs kong_client_tls)" "-lssl"

# The example as a user copies it, built against the installed files.
cp "$repo/examples/c-server/server.c" "$repo/examples/c-server/Makefile" "$tmp/"
quiet make -C "$tmp" server server-static CFLAGS="-O2 -g -Wall -Wextra -Werror"
dyn=$(readelf -d "$tmp/server")
expect "dynamic build: NEEDED the SONAME" "$dyn" "Shared library: [libkong_client_tls.so.$major]"
expect_not "dynamic build: no build path recorded" "$dyn" "RUNPATH"
static=$(readelf -d "$tmp/server-static")
expect_not "static build: no NEEDED libkong_client_tls" "$static" "libkong_client_tls"
expect "static build: libssl.so.3 from the system" "$static" "Shared library: [libssl.so.3]"

make_pki "$tmp/pki"
pki=$tmp/pki
cat "$pki/ca_a.pem" "$pki/root.pem" > "$pki/client-cas.pem"

# start_server <binary> [env...]: on a free port, stopped at exit; sets $port, $out.
start_server() {
  port=$(free_port)
  out=$tmp/$(basename "$1").$port.log
  env "${@:2}" "$1" "$port" "$pki/server.pem" "$pki/server.key" "$pki/client-cas.pem" \
    > "$out" 2>&1 &
  on_exit "kill $! 2>/dev/null; wait $! 2>/dev/null"
  wait_port "$port"
}

# HTTP/1.1 requests (curl offers h2 first by default; this server speaks HTTP/1.1 only).
curl1() { curl_tls "$@" --http1.1; }

# The dynamic build runs with the installed library (not in the linker cache: a temp
# prefix), found through its SONAME.
start_server "$tmp/server" LD_LIBRARY_PATH="$prefix/lib"
reply=$(curl1 mtls.example "$port" --cert "$pki/client_a.pem" --key "$pki/client_a.key")
expect "dynamic build: mutual TLS" "$reply" "name=mtls.example alpn=http/1.1 certs=1 verify=0"

start_server "$tmp/server-static"
expect "static build: starts, says its version" "$(cat "$out")" "(kong_client_tls $version)"

reply=$(curl1 mtls.example "$port" --cert "$pki/client_a.pem" --key "$pki/client_a.key")
expect "curl with a client certificate of the CA: verified" "$reply" \
  "name=mtls.example alpn=http/1.1 certs=1 verify=0"
sleep 0.2
expect "the server prints the client chain" "$(cat "$out")" \
  "client chain: 1 certificate(s), verify 0 (ok)"
expect "the chain is PEM" "$(cat "$out")" "-----BEGIN CERTIFICATE-----"

reply=$(curl1 mtls.example "$port" --cert "$pki/chain.pem" --key "$pki/leaf.key")
expect "leaf + intermediate at depth 0: 20 (unable to get local issuer)" "$reply" \
  "certs=2 verify=20"

reply=$(curl1 mtls.example "$port")
expect "curl without a certificate: served, no chain" "$reply" "certs=0 verify=0"

reply=$(curl1 mtls.example "$port" --cert "$pki/client_a.pem" --key "$pki/client_a.key" \
          -H "Host: plain.example" -o /dev/null -w '%{http_code}')
expect "SNI mtls.example, Host plain.example: 421 Misdirected Request" "$reply" "421"
sleep 0.2
expect "the server says misdirected" "$(cat "$out")" "request: misdirected"
reply=$(curl1 mtls.example "$port" --cert "$pki/client_a.pem" --key "$pki/client_a.key" \
          -H "Host: MTLS.example:443")
expect "Host MTLS.example:443 is mtls.example: served" "$reply" "name=mtls.example"
expect "the server says none" "$(cat "$out")" "client chain: none"

reply=$(curl_tls noh2.example "$port" --http2)
expect "noh2.example: curl --http2 gets http/1.1" "$reply" "name=noh2.example alpn=http/1.1"
s_client() {
  openssl s_client -connect "127.0.0.1:$port" -servername "$@" < /dev/null 2>&1 || true
}
expect "other names: h2 chosen" "$(s_client plain.example -alpn h2,http/1.1)" \
  "ALPN protocol: h2"
expect "noh2.example: openssl s_client -alpn h2,http/1.1 gets http/1.1" \
  "$(s_client noh2.example -alpn h2,http/1.1)" "ALPN protocol: http/1.1"
expect "noh2.example: only h2 offered: no_application_protocol" \
  "$(s_client noh2.example -alpn h2)" "no application protocol"

# Resumption: TLS 1.2 session IDs and TLS 1.3 tickets. Each connection sends a request
# and reads until the server closes (-ign_eof), so that a TLS 1.3 ticket, which comes after
# the handshake, has arrived before -sess_out writes the session.
s_request() {
  printf 'GET / HTTP/1.1\r\nHost: %s\r\n\r\n' "$1" \
    | openssl s_client -connect "127.0.0.1:$port" -ign_eof -servername "$@" 2>&1 || true
}
for proto in -tls1_2 -tls1_3; do
  for name in plain.example mtls.example; do
    sess=$tmp/sess.$name$proto
    s_request "$name" "$proto" -sess_out "$sess" > /dev/null
    if [ "$name" = plain.example ]; then
      expect "$name $proto: resumed" "$(s_request "$name" "$proto" -sess_in "$sess")" "Reused, TLS"
    elif [ ! -s "$sess" ]; then
      ok "$name $proto: no resumable session handed out (disable_session_reuse)"
    else
      expect "$name $proto: not resumed (disable_session_reuse)" \
        "$(s_request "$name" "$proto" -sess_in "$sess")" "New, TLS"
    fi
  done
done

quiet make -C "$repo" uninstall PREFIX="$prefix" LDCONFIG=:
left=$(find "$prefix" -type f -o -type l)
[ -z "$left" ] || fail "make uninstall left: $left"
ok "make uninstall removes every file"
