#!/usr/bin/env bash
# install_pdk(): examples/kong-plugin (a Kong plugin's handler calling kong.client.tls.*
# unchanged) served by stock nginx from its nginx.conf, with the module and the library of
# this clone; then the rules of install_pdk itself in nginx's LuaJIT: an existing `kong`
# and `kong.client` keep their fields, a second call changes nothing, an existing
# kong.client.tls (Kong's own) is left in place, and a `kong` that is not a table is an
# error. Needs `make build` first.
set -euo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

make_pki "$tmp/pki"
prefix=$tmp/nginx
mkdir -p "$prefix"
cp "$tmp/pki/server.pem" "$tmp/pki/server.key" "$prefix/"
cp "$tmp/pki/ca_a.pem" "$prefix/ca.pem"
# nginx's workers (user nobody) read the plugin and the rules when first used: copies in
# a directory they may enter, wherever the clone is (e.g. inside a 0700 mktemp -d).
chmod 755 "$tmp"
cp -r "$repo/examples/kong-plugin" "$tmp/kong-plugin"
cp "$repo/tests/packaging/pdk_rules.lua" "$tmp/"
port=$(free_port)
upstream_port=$(free_port)
pdk_port=$(free_port)
sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$upstream_port|g" \
    -e "s|@EXAMPLE@|$tmp/kong-plugin|g" -e "s|@LUA_PATH@|$repo/lua/?.lua|g" \
    -e "s|@LUA_CPATH@|$release/?.so|g" "$repo/examples/kong-plugin/nginx.conf" \
    > "$prefix/nginx.conf"
# The rules of install_pdk, answered by a server of its own.
sed -i "s|^    # The upstream: says what it received.|    server {\n        listen 127.0.0.1:$pdk_port ssl;\n        ssl_certificate $prefix/server.pem;\n        ssl_certificate_key $prefix/server.key;\n        location / { content_by_lua_file $tmp/pdk_rules.lua; }\n    }\n&|" "$prefix/nginx.conf"
grep -q "pdk_rules.lua" "$prefix/nginx.conf" || fail "could not add /pdk to the example's nginx.conf"
start_nginx "$prefix"
wait_port "$port"

reply=$(curl_tls a.example "$port" --cert "$tmp/pki/client_a.pem" --key "$tmp/pki/client_a.key")
expect "the plugin forwards the verified client's chain" "$reply" "upstream got 1 certificate(s)"
reply=$(curl_tls a.example "$port" --cert "$tmp/pki/chain.pem" --key "$tmp/pki/leaf.key")
expect "a chain of another CA is forwarded too (verdict FAILED)" "$reply" \
  "upstream got 2 certificate(s)"
reply=$(curl_tls a.example "$port")
expect "no certificate: nothing forwarded" "$reply" "upstream got 0 certificate(s)"
reply=$(curl_tls a.example "$port" --cert "$tmp/pki/client_a.pem" --key "$tmp/pki/client_a.key" \
          -H "Host: b.example" -o /dev/null -w '%{http_code}')
expect "verified for a.example, Host b.example: 421 before the plugin runs" "$reply" "421"
sleep 0.2
reply=$(curl_tls pdk.example "$pdk_port")
expect "install_pdk rules" "$reply" "install_pdk: all rules hold"
expect "_VERSION is Cargo.toml's" "$reply" "_VERSION=$version"
check_error_log "$prefix"
