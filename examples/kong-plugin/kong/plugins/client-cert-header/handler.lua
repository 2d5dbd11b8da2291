-- A Kong plugin's handler, written against Kong's PDK: on Kong it runs as it is; on plain
-- nginx or OpenResty it runs after `require("kong_client_tls").install_pdk()` (see
-- ../../../nginx.conf), which provides `kong.client.tls`.
--
-- It asks every client for a certificate, never lets such a session be resumed (Kong's
-- pairing), and in access forwards the client's chain to the upstream in a header,
-- recording the verdict for the log with set_client_verify.

-- luacheck: read globals kong, ignore 212/self
local ClientCertHeader = {
  PRIORITY = 1000,
  VERSION = "0.1.0",
}

-- Kong's certificate phase (ssl_certificate_by_lua*).
function ClientCertHeader:certificate(conf)
  local ok, err = kong.client.tls.request_client_certificate(conf.ca_certs)
  if not ok then
    ngx.log(ngx.ERR, "request_client_certificate: ", err)
    return
  end
  ok, err = kong.client.tls.disable_session_reuse()
  if not ok then
    ngx.log(ngx.ERR, "disable_session_reuse: ", err)
  end
end

-- Kong's access phase.
function ClientCertHeader:access(conf)
  local chain, err = kong.client.tls.get_full_client_certificate_chain()
  if err then
    ngx.log(ngx.ERR, "get_full_client_certificate_chain: ", err)
    return ngx.exit(ngx.HTTP_INTERNAL_SERVER_ERROR)
  end
  if not chain then
    kong.client.tls.set_client_verify("NONE")
    if conf.required then
      return ngx.exit(ngx.HTTP_UNAUTHORIZED)
    end
    return
  end
  -- nginx's verdict: "SUCCESS" or "FAILED:<reason>" (depth 0, ca_certs as the store).
  kong.client.tls.set_client_verify(ngx.var.ssl_client_verify)
  ngx.req.set_header(conf.header, ngx.escape_uri(chain))
end

return ClientCertHeader
