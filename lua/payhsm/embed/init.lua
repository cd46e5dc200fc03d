--- What every embedding host shares (payhsm.embed.lighttpd, payhsm.embed.nginx): the
-- simulator's handler, built once per host process from the config file `bin/payhsm
-- serve` reads, and a request handed to it that never raises.
--
--   local embed = require "payhsm.embed"
--   local resp = embed.handle("gateway", "/etc/payhsm/gateway.conf.lua",
--     {method =, path = (decoded once), query = (raw string), headers = {lower-case = value}, body =},
--     {shared = true, log = function(line) end, log_error = function(line) end})
--                                                       --> {status =, headers =, body =}
--
-- The config's listen and tls are the host's business and are ignored; its store defaults
-- to sqlite, as for `bin/payhsm serve`. opts.shared says the host runs several processes
-- (nginx workers): a memory store would then be one private store per process (a key
-- imported through one worker unknown to the next), so it is refused; sqlite (several
-- processes may share the file) and redis are shared.
local util = require "payhsm.util"

local M = {}
local apps = {}


--- The application for (system, config path), built on first use in this process.
-- opts.log receives the application's log lines (default: stderr).
function M.app(system, config_path, opts)
  util.checkfields(opts, "embed.app", { "log", "log_error", "shared" })
  opts = opts or {}
  local key = tostring(system) .. "\0" .. tostring(config_path)
  if not apps[key] then
    local server = require "payhsm.server"
    server.system(system, "embed")
    local cfg = server.load_config(config_path)
    local backend = (cfg.store or {}).backend or "sqlite"
    if opts.shared and backend == "memory" then
      error("embed: a memory store is private to each host process; give the config a sqlite "
        .. "(or redis) store that the host's processes share", 0)
    end
    apps[key] = server.app(system, cfg, "sqlite", opts.log, "embed")
  end
  return apps[key]
end

--- The answer to a request the host could not serve: the reason goes to log (default
-- stderr), the client gets 500 with the JSON body payhsm.http gives for system (its
-- service's internal error; a generic one when system is unknown).
function M.failure(reason, log, system)
  log = log or function(line) io.stderr:write(line, "\n") end
  log("payhsm: " .. tostring(reason))
  local server = require "payhsm.server"
  local ok, mod = pcall(server.system, system)
  local body = ok and mod.service and mod.service:bodies()[500]
    or '{"error":{"code":"500","message":"Internal Server Error"}}'
  return { status = 500, headers = { ["Content-Type"] = "application/json" }, body = body }
end

--- Hands one request to the application; returns its response. A failure (a bad config
-- file, a store that cannot be opened, a handler that raises) is M.failure, logged
-- through opts.log_error (default opts.log).
function M.handle(system, config_path, req, opts)
  opts = opts or {}
  local ok, resp = pcall(function() return M.app(system, config_path, opts):handle(req) end)
  if ok and type(resp) == "table" then return resp end
  return M.failure(ok and "the handler returned no response" or resp, opts.log_error or opts.log, system)
end

return M
