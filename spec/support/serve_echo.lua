-- Runs an echo server in its own process for client specs:
--   lua5.4 spec/support/serve_echo.lua PORTFILE [CERT KEY CA]
if not os.getenv("LUA_CPATH") then -- else the caller chose the build (spec/support/interp.lua)
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  package.cpath = "./build/?.so;" .. package.cpath
end
local http = require "payhsm.http"
local portfile, cert, key, ca = ...
local function read(p) local f = assert(io.open(p)) local s = f:read("*a") f:close() return s end
local srv = http.new { port = 0, quiet = true,
  tls = cert and { cert = read(cert), key = read(key), client_ca = ca and read(ca) } or nil,
  handler = function(req)
    return { status = 200, headers = { ["X-Echo"] = req.method },
             body = req.method .. " " .. req.path .. " " .. req.body .. " " .. (req.headers["x-test"] or "") }
  end }
local f = assert(io.open(portfile .. ".tmp", "w"))
f:write(srv:port())
f:close()
os.rename(portfile .. ".tmp", portfile)
while true do srv:run_once(1000) end
