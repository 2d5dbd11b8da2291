-- Helpers for tests/nginx_e2e.rs, loaded inside the test nginx (tests/nginx/ is on its
-- lua_package_path). The test config (tests/support/nginx.rs) sets in init_by_lua the
-- globals E2E_DIR (the nginx prefix, where the test wrote its PEM files) and
-- KCT_FUNCTIONS (the API's functions, from tests/support/kong.rs: the one list).
-- luacheck: read globals E2E_DIR KCT_FUNCTIONS

local tls = require "kong_client_tls"
local ngx_ssl = require "ngx.ssl"

local _M = {}

local FUNCS = assert(KCT_FUNCTIONS, "KCT_FUNCTIONS is set by the test config")

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

-- The CA stacks, parsed once per process (ngx.ssl.parse_pem_cert: a STACK_OF(X509)*).
local ca_cache = {}
function _M.ca(name)
  local ca = ca_cache[name]
  if not ca then
    ca = assert(ngx_ssl.parse_pem_cert(read_file(E2E_DIR .. "/" .. name .. ".pem")))
    ca_cache[name] = ca
  end
  return ca
end

local function pack(...)
  return { n = select("#", ...), ... }
end

-- Calls one API function; a Lua error raised at level 2 points at this line.
local function invoke(f, arg)
  return pack(f(arg))
end

local function record(key, value)
  local ok, err = ngx.shared.results:set(key, value)
  if not ok then
    ngx.log(ngx.ERR, "cannot record ", key, ": ", err)
  end
end

-- Runs the five functions in the current phase and records each outcome under
-- "<prefix>|<phase>|<function>" as "ok|<count>|<type of first>|<first>" or
-- "err|<where>|<message>"; after set_client_verify, ngx.ctx.CLIENT_VERIFY_OVERRIDE goes
-- under "<prefix>|<phase>|ctx" (except where ngx.ctx does not exist).
function _M.probe(prefix, phase, has_ctx)
  for _, name in ipairs(FUNCS) do
    local arg
    if name == "set_client_verify" then
      arg = "FAILED:set in " .. phase
    end
    local ok, r = pcall(invoke, tls[name], arg)
    local value
    if ok then
      value = "ok|" .. r.n .. "|" .. type(r[1]) .. "|" .. tostring(r[1])
    else
      local where, msg = tostring(r):match("^(.-:%d+): (.*)$")
      value = "err|" .. tostring(where) .. "|" .. tostring(msg or r)
    end
    record(prefix .. "|" .. phase .. "|" .. name, value)
  end
  if has_ctx then
    record(prefix .. "|" .. phase .. "|ctx", tostring(ngx.ctx.CLIENT_VERIFY_OVERRIDE))
  end
end

-- The probe in a request phase, keyed by the connection's SNI.
function _M.probe_request(phase)
  local ctx = ngx.ctx
  if phase == "body_filter" then
    if ctx.probed_body_filter then
      return
    end
    ctx.probed_body_filter = true
  end
  local prefix = ctx.probe_prefix
  if not prefix then
    prefix = ngx.var.ssl_server_name or "no-sni"
    ctx.probe_prefix = prefix
  end
  _M.probe(prefix, phase, true)
end

-- The probe in an SSL phase (no ngx.ctx there), keyed by SNI.
function _M.probe_ssl(phase)
  local sni
  if phase == "client_hello" then
    sni = require("ngx.ssl.clienthello").get_client_hello_server_name()
  else
    sni = ngx_ssl.server_name()
  end
  _M.probe(sni or "no-sni", phase, false)
end

-- Writes every recorded result whose key starts with `prefix` as "key<TAB>hex(value)".
function _M.dump(prefix)
  local dict = ngx.shared.results
  local keys = dict:get_keys(0)
  table.sort(keys)
  for _, key in ipairs(keys) do
    if key:sub(1, #prefix) == prefix then
      local v = dict:get(key) or ""
      ngx.say(key, "\t", (v:gsub(".", function(c) return string.format("%02x", c:byte()) end)))
    end
  end
end

-- request_client_certificate with a ca_certs of each C type a caller may pass by mistake
-- (each would be read as a certificate stack by OpenSSL), recorded under
-- "types|<case>" as "ok" or the error's message; then the real request, with the CA
-- stack wrapped as a lua-resty-openssl x509.chain object (its ctx: an OPENSSL_STACK *).
function _M.wrong_ca_certs(ca)
  local ffi = require "ffi"
  pcall(ffi.cdef, "typedef struct x509_st X509; typedef struct evp_pkey_st EVP_PKEY;")
  local key = assert(ngx_ssl.parse_pem_priv_key(read_file(E2E_DIR .. "/server.key")))
  local cases = {
    x509 = ffi.new("X509 *"), -- lua-resty-openssl's x509.ctx
    x509_object = { ctx = ffi.new("X509 *") }, -- a lua-resty-openssl x509 object
    evp_pkey = ffi.cast("EVP_PKEY *", key), -- lua-resty-openssl's pkey.ctx
    ssl = ffi.new("struct ssl_st *"),
    int4 = ffi.new("int[4]", 1, 2, 3, 4),
    struct = ffi.new("struct { int num; void *data; }"),
  }
  for name, value in pairs(cases) do
    local ok, err = pcall(tls.request_client_certificate, value)
    record("types|" .. name, ok and "ok" or (tostring(err):gsub("^.-:%d+: ", "")))
  end
  return tls.request_client_certificate({ ctx = ffi.cast("struct stack_st *", ca) })
end

-- A content handler reporting what the connection looks like to the application.
function _M.report()
  local r = pack(tls.get_full_client_certificate_chain())
  ngx.header["X-Verify"] = ngx.var.ssl_client_verify
  ngx.header["X-S-DN"] = ngx.var.ssl_client_s_dn
  ngx.header["X-Reused"] = ngx.var.ssl_session_reused
  ngx.header["X-Protocol"] = ngx.var.ssl_protocol
  ngx.header["X-Chain-Count"] = r.n
  ngx.header["X-Chain-Err"] = tostring(r[2])
  ngx.print(r[1] or "")
end

-- set_client_verify from a handler: records what was stored, or the error raised.
function _M.verify_value(v)
  local ok, err = pcall(invoke, tls.set_client_verify, v)
  ngx.header["X-Set-Ok"] = tostring(ok)
  ngx.header["X-Set-Err"] = ok and "" or tostring(err)
  ngx.header["X-Override"] = tostring(ngx.ctx.CLIENT_VERIFY_OVERRIDE)
end

return _M
