-- LuaRocks: `luarocks make` in a clone builds the library with cargo (Rust and OpenSSL 3
-- headers needed: on Debian, `libssl-dev`) and installs into the rocks tree:
--   <tree>/share/lua/5.1/kong_client_tls.lua     the module
--   <tree>/lib/lua/5.1/libkong_client_tls.so     the library, which the module finds
--                                                 through that tree's package.cpath
-- and, for C, the header, the static library and kong_client_tls.pc in the rock's own
-- directory (`luarocks show --rock-dir kong-client-tls`, under c/). The version is
-- Cargo.toml's (tests/packaging/versions.sh checks it). The module needs LuaJIT's FFI:
-- nginx with lua-nginx-module, or OpenResty.
rockspec_format = "3.0"
package = "kong-client-tls"
version = "0.1.0-1"
source = {
  url = "git+file:///dev/null",
  tag = "v0.1.0",
}
description = {
  summary = "Kong Gateway 3.9's kong.client.tls API for stock nginx + lua-nginx-module",
  detailed = [[
Kong's kong.client.tls functions (request_client_certificate, disable_session_reuse,
get_full_client_certificate_chain, set_client_verify, disable_http2_alpn) on stock nginx
with lua-nginx-module, through a small Rust library working on the connection's OpenSSL
SSL *. install_pdk() provides kong.client.tls for Kong plugin code.]],
  license = "Apache-2.0",
}
dependencies = {
  "lua >= 5.1, < 5.2",
}
build = {
  type = "make",
  build_target = "rock-build",
  build_variables = {},
  install_target = "install-rock",
  install_variables = {
    ROCK_PREFIX = "$(PREFIX)",
    ROCK_LUADIR = "$(LUADIR)",
    ROCK_LIBDIR = "$(LIBDIR)",
  },
}
