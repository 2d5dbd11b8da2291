-- install_pdk()'s rules, run in nginx's LuaJIT (tests/packaging/pdk.sh, a server of its own).
-- The nginx.conf ran install_pdk() at init; each rule here saves and restores `kong`.
-- luacheck: globals kong
local tls = require "kong_client_tls"

local function check(cond, what)
  if not cond then
    ngx.say("FAILED: ", what)
    ngx.exit(ngx.HTTP_OK)
  end
end

local installed = rawget(_G, "kong")
check(type(installed) == "table" and installed.client.tls ~= nil, "init made kong.client.tls")
check(installed.client.tls.request_client_certificate == tls.request_client_certificate,
      "kong.client.tls holds the module's functions")
check(installed.client.tls._VERSION == nil and installed.client.tls.install_pdk == nil,
      "kong.client.tls holds only Kong's five functions")

-- Extends an existing kong and kong.client without clobbering.
local log = function() end
rawset(_G, "kong", { log = log, client = { get_ip = log } })
check(tls.install_pdk() == true, "install on an existing kong returns true")
check(kong.log == log and kong.client.get_ip == log, "other fields of kong stay")
check(kong.client.tls.set_client_verify == tls.set_client_verify, "kong.client.tls added")
local first = kong.client.tls
check(tls.install_pdk() == true and kong.client.tls == first, "a second call changes nothing")

-- Leaves someone else's kong.client.tls (Kong's own PDK) in place.
local theirs = {}
rawset(_G, "kong", { client = { tls = theirs } })
local ok, err = tls.install_pdk()
check(ok == false and kong.client.tls == theirs, "an existing kong.client.tls is kept")
check(err and err:find("already exists", 1, true), "and the reason is given: " .. tostring(err))

-- A kong that is not a table is an error.
rawset(_G, "kong", 42)
local pok, perr = pcall(tls.install_pdk)
check(not pok and perr:find("the global kong is a number", 1, true), "kong = 42 raises")

rawset(_G, "kong", installed)
ngx.say("install_pdk: all rules hold; _VERSION=", tls._VERSION)
