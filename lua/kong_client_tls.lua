-- kong_client_tls: Kong Gateway 3.9's `kong.client.tls` API for stock nginx + lua-nginx-module.
--
--   local tls = require "kong_client_tls"
--
-- The functions keep Kong's names, arguments, return values, phase rules and error texts
-- (see README.md, "Using it from Lua"). Each one is a thin LuaJIT FFI call into
-- libkong_client_tls.so, which works on the OpenSSL `SSL *` of the current connection;
-- lua-nginx-module hands that pointer out through `ngx_http_lua_ffi_get_req_ssl_pointer`.
--
-- Finding the library: the environment variable KONG_CLIENT_TLS_LIB (an explicit path;
-- inside nginx it must be passed through with the `env` directive), otherwise every
-- `package.cpath` template (`lua_package_cpath` in nginx) with `?` = `kong_client_tls`,
-- first as `lib?.so`, then as `?.so`; last, the SONAME `libkong_client_tls.so.0` through
-- the dynamic linker's own search (ld.so.cache, LD_LIBRARY_PATH), which is how the
-- Debian package's library in /usr/lib/<multiarch> is found with no configuration.
--
-- Outside Kong, `require("kong_client_tls").install_pdk()` makes these functions
-- `kong.client.tls`, for plugin code written against Kong's PDK.

local ffi = require "ffi"

local C = ffi.C
local ffi_cast = ffi.cast
local ffi_new = ffi.new
local ffi_string = ffi.string
local ffi_typeof = ffi.typeof
local istype = ffi.istype
local concat = table.concat
local error = error
local tostring = tostring
local type = type

-- Every declaration this module uses; the kong_client_tls_* prototypes are those of
-- include/kong_client_tls.h (tests/lua_unit.rs fails when the two differ), except that
-- `STACK_OF(X509)` is `void` here, so that stacks typed by ngx.ssl (`void *`) and by
-- lua-resty-openssl (`OPENSSL_STACK *`) are both accepted as they are. The two struct
-- tags are only declared (as OpenSSL does), so any module may still define them.
ffi.cdef [[
typedef struct ssl_st SSL;
struct stack_st;
struct stack_st_X509;

int kong_client_tls_get0_full_client_certificate_chain(SSL *ssl,
                                                       const char **pem,
                                                       size_t *len,
                                                       const char **err);
int kong_client_tls_request_client_certificate(SSL *ssl,
                                               const void *ca_certs,
                                               const char **err);
int kong_client_tls_request_client_certificate_for_server(SSL *ssl,
                                                          const void *ca_certs,
                                                          const void *server,
                                                          const char **err);
int kong_client_tls_check_request(SSL *ssl,
                                  const char *host,
                                  size_t host_len,
                                  const void *server,
                                  const char **err);
int kong_client_tls_get0_request_server_name(SSL *ssl,
                                             const char **name,
                                             size_t *len,
                                             const char **err);
int kong_client_tls_disable_session_reuse(SSL *ssl, const char **err);
int kong_client_tls_disable_http2_alpn(SSL *ssl, const char **err);
const char *kong_client_tls_version(void);
unsigned long kong_client_tls_openssl_version_num(void);
int kong_client_tls_check_libssl(const char **err);

void *ngx_http_lua_ffi_get_req_ssl_pointer(void *r, const char **err);
typedef void *(*kong_client_tls_get_req_ssl_pointer_t)(void *r, const char **err);
typedef struct {
    uint32_t signature;
    void *connection;
    void **ctx;
    void **main_conf;
    void **srv_conf;
} kong_client_tls_ngx_http_request_head_t;
]]

-- Status codes of include/kong_client_tls.h.
local KONG_CLIENT_TLS_OK = 0
local KONG_CLIENT_TLS_ERROR = -1
local KONG_CLIENT_TLS_NO_CERTIFICATE = 1
local KONG_CLIENT_TLS_NO_HOST_LIBSSL = 3
local KONG_CLIENT_TLS_MISDIRECTED = 4
local KONG_CLIENT_TLS_NOT_REQUESTED = 5

-- The C types a certificate stack arrives as: lua-resty-openssl's `OPENSSL_STACK *`,
-- OpenSSL's `STACK_OF(X509) *`, and ngx.ssl.parse_pem_cert's untyped `void *`. Any other
-- cdata (an `X509 *`, an `SSL *`, an array, a struct...) would make OpenSSL read foreign
-- memory as a stack, so it is refused by its type. A `void *` cannot be told apart:
-- ngx.ssl.parse_pem_priv_key returns one too.
local CA_STACK_TYPES = {
  ffi_typeof("struct stack_st *"),
  ffi_typeof("struct stack_st_X509 *"),
  ffi_typeof("void *"),
}
local CA_CERTS_WRONG_TYPE = "ca_certs expects a STACK_OF(X509) * cdata (from "
  .. "ngx.ssl.parse_pem_cert, or a lua-resty-openssl x509.chain or its ctx) but found "

local LIB_NAME = "kong_client_tls"
local LIB_ENV = "KONG_CLIENT_TLS_LIB"
-- The library's SONAME (build.rs: libkong_client_tls.so.<major of the version>);
-- tests/packaging/versions.sh checks it against the built library.
local LIB_SONAME = "libkong_client_tls.so.0"


-- Library discovery -------------------------------------------------------------------

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

-- The paths tried for one `package.cpath` template: when its last component starts with
-- `?`, that component with `lib` prepended (`/x/?.so` gives `/x/libkong_client_tls.so`);
-- then the template itself, as Lua's loader reads it. Templates without `?` are skipped.
local function candidates_of(template, out)
  if not template:find("?", 1, true) then
    return
  end
  local dir, last = template:match("^(.-)([^/]*)$")
  if last:sub(1, 1) == "?" then
    out[#out + 1] = (dir .. "lib" .. last):gsub("%?", LIB_NAME)
  end
  out[#out + 1] = (template:gsub("%?", LIB_NAME))
end

local function load_library()
  local explicit = os.getenv(LIB_ENV)
  if explicit and explicit ~= "" then
    local ok, lib = pcall(ffi.load, explicit)
    if not ok then
      error("kong_client_tls: cannot load " .. explicit .. " (from " .. LIB_ENV .. "): "
            .. tostring(lib), 0)
    end
    return lib, explicit
  end

  local tried = {}
  for template in (package.cpath or ""):gmatch("[^;]+") do
    candidates_of(template, tried)
  end
  for _, path in ipairs(tried) do
    if file_exists(path) then
      local ok, lib = pcall(ffi.load, path)
      if not ok then
        error("kong_client_tls: cannot load " .. path .. ": " .. tostring(lib), 0)
      end
      return lib, path
    end
  end

  -- Last resort: the SONAME, by the dynamic linker's search (a name without a slash), as
  -- a program linked with -lkong_client_tls would find it: the Debian package's
  -- /usr/lib/<multiarch>, or `make install` to a prefix ldconfig knows.
  local ok, lib = pcall(ffi.load, LIB_SONAME)
  if ok then
    return lib, LIB_SONAME
  end

  error("kong_client_tls: libkong_client_tls.so not found; set " .. LIB_ENV
        .. " to its path or add its directory to package.cpath (lua_package_cpath in"
        .. " nginx); tried: " .. (#tried > 0 and concat(tried, ", ") or "(no templates)")
        .. "; then " .. LIB_SONAME .. " in the dynamic linker's search path: "
        .. tostring(lib), 0)
end

-- Called as `lib.<function>` below, never through function values cached apart from it:
-- that keeps the clib referenced by the API functions, and LuaJIT dlclose()s a clib once
-- it is garbage collected, which would leave any cached function pointer dangling. A
-- clib lookup allocates nothing (LuaJIT caches the resolved symbol; the JIT folds it).
local lib, lib_path = load_library()

-- Reused for every call (the way lua-resty-core reuses its errmsg pointer): no
-- allocation on the paths that run per connection or per request.
local errp = ffi_new("const char *[1]")
local pem_ptr = ffi_new("const char *[1]")
local len_ptr = ffi_new("size_t[1]")


-- Host checks at load time ----------------------------------------------------------

local ngx = ngx
local ngx_config = type(ngx) == "table" and ngx.config or nil
local in_nginx = type(ngx_config) == "table" and ngx_config.nginx_version ~= nil

if in_nginx and ngx_config.subsystem ~= "http" then
  error("kong_client_tls: the " .. tostring(ngx_config.subsystem) .. " subsystem is not"
        .. " supported (only http)", 0)
end

-- "OpenSSL 3.5.5" from OpenSSL_version_num()'s 0xMNN00PP0L.
local function openssl_version(num)
  num = tonumber(num)
  local floor = math.floor
  return "OpenSSL " .. floor(num / 2^28) .. "." .. floor(num / 2^20) % 256 .. "."
         .. floor(num / 2^4) % 256
end

do
  errp[0] = nil
  local rc = lib.kong_client_tls_check_libssl(errp)
  if rc ~= KONG_CLIENT_TLS_OK then
    local msg = errp[0] ~= nil and ffi_string(errp[0]) or ("status " .. tostring(rc))
    -- A process without OpenSSL of its own (plain LuaJIT) cannot share a second copy,
    -- but nginx always has one: refuse there, two libssl copies corrupt memory. An
    -- unverified OpenSSL line is an error everywhere.
    if rc ~= KONG_CLIENT_TLS_NO_HOST_LIBSSL or in_nginx then
      error("kong_client_tls: refusing to load " .. lib_path .. " with "
            .. openssl_version(lib.kong_client_tls_openssl_version_num()) .. ": " .. msg, 0)
    end
  end
end

local get_request
local get_req_ssl_pointer
if in_nginx then
  get_request = require("resty.core.base").get_request
  -- Through our own function pointer type: another module (lua-resty-openssl) may have
  -- declared the symbol first with the older one-argument prototype.
  get_req_ssl_pointer = ffi_cast("kong_client_tls_get_req_ssl_pointer_t",
                                 C.ngx_http_lua_ffi_get_req_ssl_pointer)
end

local NO_REQUEST = "kong_client_tls: no request found (this function works only inside"
                   .. " nginx with lua-nginx-module)"
local NOT_TLS = "connection is not TLS or TLS support for Nginx not enabled"
local MISDIRECTED = "misdirected request: the client certificate of this connection was"
                    .. " requested for another server name than the one this request names"
local GUARD_MISSING = "kong_client_tls: a client certificate was requested on a connection"
  .. " of a worker where reject_misdirected_request() has not run: a request naming another"
  .. " server in its Host would see that connection's verdict ($ssl_client_verify). Add"
  .. " `server_rewrite_by_lua_block { require(\"kong_client_tls\").reject_misdirected_request() }`"
  .. " at http {} level, and call it first in any server_rewrite_by_lua* of your own"
  .. " (README, \"Many names on one listener\")"


-- Phases ------------------------------------------------------------------------------

-- ngx.get_phase() names that Kong calls differently; any other name is kept as is.
local KONG_PHASE_NAMES = {
  ssl_client_hello = "client_hello",
  ssl_cert = "certificate",
  content = "response",
}

-- The order in which Kong lists the allowed phases in its error text.
local KONG_PHASE_ORDER = {
  "init_worker", "certificate", "client_hello", "server_rewrite", "rewrite", "access",
  "balancer",
  "response", "header_filter", "body_filter", "log", "preread",
}

local get_phase = type(ngx) == "table" and ngx.get_phase or nil

-- A set of allowed Kong phase names, plus the "(only in: ...)" list in Kong's order.
local function phases(...)
  local set, listed = {}, {}
  for i = 1, select("#", ...) do
    set[select(i, ...)] = true
  end
  for _, name in ipairs(KONG_PHASE_ORDER) do
    if set[name] then
      listed[#listed + 1] = name
    end
  end
  set[0] = concat(listed, ", ")
  return set
end

-- Raises Kong's wrong-phase error unless the current phase is allowed; the error points
-- at the caller of the API function (level 3 from here).
local function check_phase(allowed)
  if not get_phase then
    error("kong_client_tls: ngx.get_phase is not available (not running inside nginx)", 3)
  end
  local phase = get_phase()
  phase = KONG_PHASE_NAMES[phase] or phase
  if not allowed[phase] then
    error("function cannot be called in " .. tostring(phase) .. " phase (only in: "
          .. allowed[0] .. ")", 3)
  end
end

local CERTIFICATE = phases("certificate")
local REQUEST_PHASES = phases("certificate", "client_hello")
local CLIENT_HELLO = phases("client_hello")
local CHAIN_PHASES = phases("rewrite", "access", "balancer", "response",
                            "header_filter", "body_filter", "log")
local VERIFY_PHASES = phases("rewrite", "access", "balancer", "response")
local GUARD_PHASES = phases("server_rewrite", "rewrite", "access")
local NAME_PHASES = phases("server_rewrite", "rewrite", "access", "balancer", "response",
                           "header_filter", "body_filter", "log")


-- The connection's SSL * ----------------------------------------------------------

-- Returns the SSL * of the current request's connection, or nil and Kong's error for a
-- connection without TLS. No SSL * always means that: the one-argument
-- ngx_http_lua_ffi_get_req_ssl_pointer (lua-nginx-module <= 0.10.28) just returns NULL,
-- the two-argument one (0.10.29) also sets its err to "bad request" (no TLS on the
-- connection) or "bad ssl connection" (no SSL * in it), which Kong never returns.
local function connection_ssl()
  local r = get_request and get_request()
  if r == nil then
    error(NO_REQUEST, 3)
  end
  errp[0] = nil
  local ssl = get_req_ssl_pointer(r, errp)
  if ssl == nil then
    return nil, NOT_TLS
  end
  return ssl, nil, r
end

local function failure(rc)
  if rc == KONG_CLIENT_TLS_ERROR and errp[0] ~= nil then
    return nil, ffi_string(errp[0])
  end
  return nil, "kong_client_tls: unexpected status " .. tostring(rc)
end


-- Which server {} a request is in --------------------------------------------------

-- The server {} block of request `r` (a real request, or the one lua-nginx-module makes
-- for an ssl_* handler), as the address of its configuration (`r->srv_conf`), which the
-- library only compares. It reads the head of nginx's ngx_http_request_t, the same from
-- nginx 0.x to 1.31 (docs/openssl-internals.md, "nginx"); a head without nginx's
-- "HTTP" signature gives nil, which matches nothing, so the guard fails closed.
local request_head_t = ffi_typeof("kong_client_tls_ngx_http_request_head_t *")
local NGX_HTTP_MODULE = 0x50545448

local function server_of(r)
  local head = ffi_cast(request_head_t, r)
  if head.signature ~= NGX_HTTP_MODULE then
    return nil
  end
  return head.srv_conf
end

-- true when request `r` on connection `ssl` names another server than the one the
-- connection's client certificate was requested for; false when it may see the verdict
-- (or no certificate was requested); nil and an error message on failure. $host is what
-- nginx routed by (request line, Host, :authority), or for a request naming none the
-- name of the server it went to, the listener's default one.
local function misdirected(ssl, r)
  local host = ngx.var.host or ""
  errp[0] = nil
  local rc = lib.kong_client_tls_check_request(ssl, host, #host, server_of(r), errp)
  if rc == KONG_CLIENT_TLS_OK then
    return false
  end
  if rc == KONG_CLIENT_TLS_MISDIRECTED then
    return true
  end
  return failure(rc)
end

-- Set once reject_misdirected_request() has run in this worker; until then, a request
-- phase call on a connection with a certificate request warns (once) that it is missing.
local guard_seen = false
local guard_missing_warned = false

local function warn_unless_guarded(ssl)
  if guard_seen or guard_missing_warned then
    return
  end
  errp[0] = nil
  local rc = lib.kong_client_tls_get0_request_server_name(ssl, pem_ptr, len_ptr, errp)
  if rc == KONG_CLIENT_TLS_OK then
    guard_missing_warned = true
    ngx.log(ngx.WARN, GUARD_MISSING)
  end
end


-- `ca_certs` as the library's `STACK_OF(X509) *`, or an error raised at the caller of
-- request_client_certificate.
local function certificate_stack(ca_certs)
  local kind = type(ca_certs)
  if kind == "table" and type(ca_certs.ctx) == "cdata" then
    ca_certs, kind = ca_certs.ctx, "cdata" -- a lua-resty-openssl object: its ctx
  end
  if kind ~= "cdata" then
    error("ca_certs expects a cdata object but found " .. kind, 3)
  end
  for i = 1, #CA_STACK_TYPES do
    if istype(CA_STACK_TYPES[i], ca_certs) then
      return ca_certs
    end
  end
  error(CA_CERTS_WRONG_TYPE .. tostring(ffi_typeof(ca_certs)), 3)
end


-- The API -------------------------------------------------------------------------

local _M = {
  _VERSION = ffi_string(lib.kong_client_tls_version()),
}

--- Asks the client for its certificate (mutual TLS) without requiring one.
-- Phases: certificate, and (ours) client_hello. `ca_certs`: optional `STACK_OF(X509) *`
-- cdata (ngx.ssl.parse_pem_cert, a lua-resty-openssl x509.chain or its ctx); any other
-- typed cdata raises an error naming its type. Its subjects are sent as the acceptable-CA
-- list. From client_hello with `ca_certs`, the TLS session is bound to
-- what is verified and stays resumable for clients verified the same way; otherwise it is
-- never resumable (README, "Session resumption and mutual TLS").
-- Returns true, or nil and an error message.
function _M.request_client_certificate(ca_certs)
  check_phase(REQUEST_PHASES)
  -- (Not `ca_certs ~= nil`: a NULL pointer equals nil, and its type is checked too.)
  if type(ca_certs) ~= "nil" then
    ca_certs = certificate_stack(ca_certs)
  end
  local ssl, err, r = connection_ssl()
  if not ssl then
    return nil, err
  end
  errp[0] = nil
  local rc = lib.kong_client_tls_request_client_certificate_for_server(ssl, ca_certs,
                                                                      server_of(r), errp)
  if rc == KONG_CLIENT_TLS_OK then
    return true
  end
  return failure(rc)
end

--- Stops this connection's TLS session from ever being resumed.
-- Phase: certificate. Returns true, or nil and an error message.
function _M.disable_session_reuse()
  check_phase(CERTIFICATE)
  local ssl, err = connection_ssl()
  if not ssl then
    return nil, err
  end
  errp[0] = nil
  local rc = lib.kong_client_tls_disable_session_reuse(ssl, errp)
  if rc == KONG_CLIENT_TLS_OK then
    return true
  end
  return failure(rc)
end

--- The client's certificate chain as PEM, leaf first.
-- Phases: rewrite, access, balancer, header_filter, body_filter, log, and (ours) content.
-- Returns the PEM; nil (alone) when the client sent no certificate; nil and an error
-- message on failure.
function _M.get_full_client_certificate_chain()
  check_phase(CHAIN_PHASES)
  local ssl, err, r = connection_ssl()
  if not ssl then
    return nil, err
  end
  warn_unless_guarded(ssl)
  local wrong, werr = misdirected(ssl, r)
  if wrong ~= false then
    return nil, werr or MISDIRECTED
  end
  errp[0] = nil
  local rc = lib.kong_client_tls_get0_full_client_certificate_chain(ssl, pem_ptr, len_ptr, errp)
  if rc == KONG_CLIENT_TLS_OK then
    return ffi_string(pem_ptr[0], len_ptr[0])
  end
  if rc == KONG_CLIENT_TLS_NO_CERTIFICATE then
    return nil
  end
  return failure(rc)
end

--- (ours) Answers 421 Misdirected Request, as nginx's own ssl_verify_client does, when
-- the request names another server than the one this connection's client certificate
-- was requested for, so that no other server {} ever sees that verdict. Meant for
-- `server_rewrite_by_lua_block` at http {} level, which runs for every request before
-- any rewrite or access code (README, "Many names on one listener").
-- Phases: server_rewrite, rewrite, access. Returns true when the request may proceed;
-- otherwise ends it (ngx.exit(421); 500 and a logged error if the check itself fails).
function _M.reject_misdirected_request()
  check_phase(GUARD_PHASES)
  guard_seen = true
  local ssl, _, r = connection_ssl()
  if not ssl then
    return true
  end
  local wrong, err = misdirected(ssl, r)
  if wrong == false then
    return true
  end
  if wrong then
    ngx.log(ngx.INFO, "kong_client_tls: client attempted to request the server name \"",
            ngx.var.host, "\", different from the one its client certificate was requested for")
    return ngx.exit(421)
  end
  ngx.log(ngx.ERR, "kong_client_tls: reject_misdirected_request: ", err)
  return ngx.exit(500)
end

--- (ours) The server name this connection's client certificate was requested for:
-- the ClientHello's SNI name as nginx keeps it (lowercase, no port, no trailing dot);
-- false when the request was made without one (the listener's default server); nil when
-- no certificate was requested through this module; nil and an error message on failure.
-- Phases: server_rewrite, rewrite, access, balancer, content, header_filter, body_filter, log.
function _M.get_client_certificate_server_name()
  check_phase(NAME_PHASES)
  local ssl, err = connection_ssl()
  if not ssl then
    return nil, err
  end
  errp[0] = nil
  local rc = lib.kong_client_tls_get0_request_server_name(ssl, pem_ptr, len_ptr, errp)
  if rc == KONG_CLIENT_TLS_OK then
    if pem_ptr[0] == nil then
      return false
    end
    return ffi_string(pem_ptr[0], len_ptr[0])
  end
  if rc == KONG_CLIENT_TLS_NOT_REQUESTED then
    return nil
  end
  return failure(rc)
end

--- Overrides the client verification result Kong's log serializer reports.
-- Phases: rewrite, access, balancer, and (ours) content. `v`: "SUCCESS", "NONE" or
-- "FAILED:<reason>"; stored in ngx.ctx.CLIENT_VERIFY_OVERRIDE. Returns nothing.
function _M.set_client_verify(v)
  check_phase(VERIFY_PHASES)
  assert(type(v) == "string")
  if v ~= "SUCCESS" and v ~= "NONE" and v:sub(1, 7) ~= "FAILED:" then
    error("unknown client verify value: " .. v .. " accepted values are: \"SUCCESS\","
          .. " \"NONE\" or \"FAILED:<reason>\"", 2)
  end
  ngx.ctx.CLIENT_VERIFY_OVERRIDE = v
end

--- Stops this connection's handshake from negotiating HTTP/2 through ALPN.
-- Phase: client_hello. A client offering h2 and http/1.1 gets http/1.1; one offering only
-- h2 gets a no_application_protocol alert. Returns true, or nil and an error message.
function _M.disable_http2_alpn()
  check_phase(CLIENT_HELLO)
  local ssl, err = connection_ssl()
  if not ssl then
    return nil, err
  end
  errp[0] = nil
  local rc = lib.kong_client_tls_disable_http2_alpn(ssl, errp)
  if rc == KONG_CLIENT_TLS_OK then
    return true
  end
  return failure(rc)
end


-- Kong's PDK outside Kong ----------------------------------------------------------

-- The functions Kong's PDK has as `kong.client.tls.*`, in one table of their own (no
-- `_VERSION`, no `install_pdk`), made once so that repeated installs find it again.
local pdk_tls = {
  request_client_certificate = _M.request_client_certificate,
  disable_session_reuse = _M.disable_session_reuse,
  get_full_client_certificate_chain = _M.get_full_client_certificate_chain,
  set_client_verify = _M.set_client_verify,
  disable_http2_alpn = _M.disable_http2_alpn,
}

--- Makes these functions `kong.client.tls`, so that plugin code written against Kong's
-- PDK runs unchanged on plain nginx or OpenResty. Any phase; call it once, from
-- init_by_lua* (the global then exists in every worker). Creates the global `kong` table
-- and `kong.client` as needed and adds only `tls`: other fields stay. An existing
-- `kong.client.tls` that is not this module's (Kong's own PDK) is left in place.
-- Returns true (installed, or already installed by an earlier call), or false and the
-- reason it left things as they were. Raises when `kong` or `kong.client` is not a table.
function _M.install_pdk()
  local kong = rawget(_G, "kong")
  if kong == nil then
    kong = {}
    rawset(_G, "kong", kong)
  elseif type(kong) ~= "table" then
    error("kong_client_tls.install_pdk: the global kong is a " .. type(kong)
          .. ", not a table", 2)
  end
  local client = kong.client
  if client == nil then
    client = {}
    kong.client = client
  elseif type(client) ~= "table" then
    error("kong_client_tls.install_pdk: kong.client is a " .. type(client)
          .. ", not a table", 2)
  end
  local current = client.tls
  if current ~= nil and current ~= pdk_tls then
    return false, "kong.client.tls already exists (Kong's own PDK?); left as it is"
  end
  client.tls = pdk_tls
  return true
end

return _M
