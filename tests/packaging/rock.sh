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
mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<CONF
$(nginx_modules)
pid $tmp/nginx/nginx.pid;
events {}
http {
    access_log off;
    lua_package_path "$tree/share/lua/5.1/?.lua;;";
    lua_package_cpath "$tree/lib/lua/5.1/?.so;;";
    init_by_lua_block {
        require "kong_client_tls"
        local f = assert(io.open("$tmp/pki/ca_a.pem"))
        CA_A = assert(require("ngx.ssl").parse_pem_cert(f:read("*a")))
        f:close()
    }
    server {
        listen 127.0.0.1:$port ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate $tmp/pki/server.pem;
        ssl_certificate_key $tmp/pki/server.key;
        ssl_certificate_by_lua_block {
            local ok, err = require("kong_client_tls").request_client_certificate(CA_A)
            if not ok then ngx.log(ngx.ERR, err) end
        }
        location / {
            content_by_lua_block {
                local tls = require "kong_client_tls"
                local chain, err = tls.get_full_client_certificate_chain()
                local _, n = (chain or ""):gsub("BEGIN CERTIFICATE", "")
                ngx.say("version=", tls._VERSION, " certs=", n, " err=", tostring(err),
                        " verify=", ngx.var.ssl_client_verify)
            }
        }
    }
}
CONF
start_nginx "$tmp/nginx"
wait_port "$port"
reply=$(curl_tls a.example "$port" --cert "$tmp/pki/client_a.pem" --key "$tmp/pki/client_a.key")
expect "nginx with the tree's paths: mutual TLS through the rock" "$reply" \
  "version=$version certs=1 err=nil verify=SUCCESS"
reply=$(curl_tls a.example "$port")
expect "no client certificate" "$reply" "certs=0 err=nil verify=NONE"
check_error_log "$tmp/nginx"
