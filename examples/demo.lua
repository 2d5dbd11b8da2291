-- The Lua side of the kong-client-tls demo (examples/nginx.conf.template).
--
-- One HTTPS server answers two names. For mtls.demo.test the certificate phase asks the
-- client for a certificate, naming the acceptable CAs, and disables session reuse; the
-- access phase reads the client's chain, checks it, records the verdict the way a Kong
-- plugin does (set_client_verify) and forwards the chain to the upstream in a header.
-- public.demo.test stays plain TLS with normal session resumption. bound.demo.test asks
-- for a certificate at ClientHello time instead: its sessions are bound to what is
-- verified, so they resume there and nowhere else.

local tls = require "kong_client_tls"
local ngx_ssl = require "ngx.ssl"

local _M = {}

local MTLS_NAME = "mtls.demo.test"
local BOUND_NAME = "bound.demo.test"
-- The Lua check: the client certificate must be issued by this CA (the demo's
-- intermediate). Kong plugins (mtls-auth) do a full chain verification at this point.
local ALLOWED_ISSUER = "CN=kong-client-tls demo intermediate CA,O=kong-client-tls demo"

local client_cas -- STACK_OF(X509)* of the acceptable client CAs, parsed once

function _M.init(ca_file)
  local f = assert(io.open(ca_file, "rb"))
  local pem = f:read("*a")
  f:close()
  client_cas = assert(ngx_ssl.parse_pem_cert(pem))
end

-- ssl_client_hello_by_lua: Kong's "client_hello" phase. Mutual TLS decided here keeps
-- resumption, safely: the session is bound to the name, the server certificate and the CA
-- set, and a session from anywhere else gets a full handshake that verifies again.
function _M.client_hello()
  local name = require("ngx.ssl.clienthello").get_client_hello_server_name()
  if name ~= BOUND_NAME then
    return
  end
  local ok, err = tls.request_client_certificate(client_cas)
  if not ok then
    ngx.log(ngx.ERR, "request_client_certificate failed: ", err)
    return ngx.exit(ngx.ERROR)
  end
end

-- ssl_certificate_by_lua: Kong's "certificate" phase. (disable_session_reuse is Kong's
-- pairing; with this library the request alone already makes the session unresumable.)
function _M.certificate()
  if ngx_ssl.server_name() ~= MTLS_NAME then
    return
  end
  local ok, err = tls.request_client_certificate(client_cas)
  if not ok then
    ngx.log(ngx.ERR, "request_client_certificate failed: ", err)
    return ngx.exit(ngx.ERROR)
  end
  ok, err = tls.disable_session_reuse()
  if not ok then
    ngx.log(ngx.ERR, "disable_session_reuse failed: ", err)
    return ngx.exit(ngx.ERROR)
  end
end

-- access_by_lua: the client's chain, a Lua check, set_client_verify, forward the chain.
function _M.access()
  if ngx.var.ssl_server_name ~= MTLS_NAME then
    return
  end
  local chain, err = tls.get_full_client_certificate_chain()
  if err then
    ngx.log(ngx.ERR, "get_full_client_certificate_chain failed: ", err)
    return ngx.exit(500)
  end
  if not chain then
    tls.set_client_verify("NONE")
    ngx.header["X-Demo-Client-Verify"] = "NONE"
    ngx.status = 401
    ngx.say("mtls.demo.test needs a client certificate")
    return ngx.exit(401)
  end

  local issuer = ngx.var.ssl_client_i_dn
  if issuer ~= ALLOWED_ISSUER then
    tls.set_client_verify("FAILED:issuer not allowed: " .. tostring(issuer))
    ngx.header["X-Demo-Client-Verify"] = ngx.ctx.CLIENT_VERIFY_OVERRIDE
    ngx.status = 403
    ngx.say("client certificate from an unknown issuer: ", issuer)
    return ngx.exit(403)
  end

  tls.set_client_verify("SUCCESS")
  ngx.var.demo_client_verify = ngx.ctx.CLIENT_VERIFY_OVERRIDE
  -- PEM has newlines, which a header cannot carry: send it URI-escaped.
  ngx.var.demo_client_chain = ngx.escape_uri(chain)
end

-- log_by_lua: what Kong's serializer reports as request.tls.client_verify: the override
-- when a plugin set one, nginx's $ssl_client_verify otherwise.
function _M.log()
  local verify = ngx.ctx.CLIENT_VERIFY_OVERRIDE or ngx.var.ssl_client_verify
  ngx.log(ngx.NOTICE, "demo log: host=", ngx.var.ssl_server_name,
          " status=", ngx.status, " request.tls.client_verify=", verify,
          " nginx ssl_client_verify=", ngx.var.ssl_client_verify,
          " session_reused=", ngx.var.ssl_session_reused)
end

-- The upstream: reports what the gateway sent.
function _M.upstream()
  local headers = ngx.req.get_headers()
  local chain = headers["X-Client-Chain"]
  local count = 0
  if chain and chain ~= "" then
    for _ in ngx.unescape_uri(chain):gmatch("BEGIN CERTIFICATE") do
      count = count + 1
    end
  end
  ngx.say("upstream got: host=", headers["X-Forwarded-Host"] or "-",
          " client_verify=", headers["X-Client-Verify"] or "-",
          " client chain=", count, " PEM certificate(s)",
          count > 0 and (" (leaf: " .. (headers["X-Client-S-DN"] or "?") .. ")") or "")
end

return _M
