#!/usr/bin/env bash
# The LuaRocks road: `luarocks make` of the rockspec into a local tree (Debian's luarocks,
# Lua 5.1), then stock nginx given only that tree's paths (no KONG_CLIENT_TLS_LIB) serves
# mutual TLS through the module: the client's chain and verdict in a response, and
# _VERSION being Cargo.toml's version.
set -euo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

tree=$tmp/tree
(cd "$repo" && quiet luarocks --lua-version 5.1 make --tree "$tree" \
  "kong-client-tls-$version-1.rockspec")
[ -f "$tree/share/lua/5.1/kong_client_tls.lua" ] || fail "no module in $tree/share/lua/5.1"
[ -f "$tree/lib/lua/5.1/libkong_client_tls.so" ] || fail "no library in $tree/lib/lua/5.1"
ok "luarocks make: the module and the library in the tree"
expect "luarocks list" "$(luarocks --lua-version 5.1 list --tree "$tree" --porcelain)" \
  "kong-client-tls	$version-1	installed"
rock_dir=$(luarocks --lua-version 5.1 show --tree "$tree" --rock-dir kong-client-tls)
[ "$(PKG_CONFIG_PATH=$rock_dir/c/lib/pkgconfig pkg-config --modversion kong_client_tls)" \
  = "$version" ] || fail "the rock's kong_client_tls.pc"
ok "the rock's c/lib/pkgconfig/kong_client_tls.pc: $version"

make_pki "$tmp/pki"
port=$(free_port)
write_mtls_conf "$tmp/nginx" "$port" "lua_package_path \"$tree/share/lua/5.1/?.lua;;\";" "lua_package_cpath \"$tree/lib/lua/5.1/?.so;;\";"
start_nginx "$tmp/nginx"
wait_port "$port"
reply=$(curl_tls a.example "$port" --cert "$tmp/pki/client_a.pem" --key "$tmp/pki/client_a.key")
expect "nginx with the tree's paths: mutual TLS through the rock" "$reply" \
  "version=$version certs=1 err=nil verify=SUCCESS"
reply=$(curl_tls a.example "$port")
expect "no client certificate" "$reply" "certs=0 err=nil verify=NONE"
check_error_log "$tmp/nginx"
