--- Runs a payhsm simulator inside lighttpd (Debian `lighttpd-modules-lua`, mod_magnet on
-- Lua 5.4): the magnet script is a few lines that hand each request to a handler built once
-- per lighttpd process (mod_magnet resets globals per request but keeps package.loaded).
--
--   -- gateway.magnet.lua (magnet.attract-raw-url-to = ( "/path/gateway.magnet.lua" ))
--   package.path = "/opt/payhsm/lua/?.lua;/opt/payhsm/lua/?/init.lua;" .. package.path
--   package.cpath = "/opt/payhsm/build/?.so;" .. package.cpath
--   return require("payhsm.embed.lighttpd").serve("gateway", "/etc/payhsm/gateway.conf.lua", lighty)
--
-- The config file is the one `bin/payhsm serve` reads (its listen and tls are lighttpd's
-- business and are ignored); payhsm.embed builds the handler. mod_magnet runs before
-- lighttpd reads a request body, so requests reach the handler without one: GET endpoints
-- (Get Key, Get Keys) work; POSTs are answered by the handler as if their body were empty.
-- (payhsm.embed.nginx serves every endpoint.)
local embed = require "payhsm.embed"

local M = {}

--- The application for (system, config path), built on first use.
function M.app(system, config_path)
  return embed.app(system, config_path)
end

--- Serves the current lighttpd request (`lighty`, which mod_magnet gives the script's own
-- environment only); returns the HTTP status for the magnet script to return.
function M.serve(system, config_path, lighty)
  local r = lighty.r
  local headers = {}
  for k, v in pairs(r.req_header) do headers[k:lower()] = v end
  local resp = embed.handle(system, config_path, {
    method = r.req_attr["request.method"], path = r.req_attr["uri.path"], query = r.req_attr["uri.query"],
    headers = headers, body = "" })
  for k, v in pairs(resp.headers or {}) do r.resp_header[k] = v end
  r.resp_body.set({ resp.body or "" })
  return resp.status or 200
end

return M
