-- Imports N PAN session keys into one label through a gateway over plain HTTP and
-- prints "id kcv" for every import answered 200 (a worker for the concurrency specs):
--   lua5.4 spec/support/gateway_importer.lua PORT LABEL N ZMK_HEX
-- (interp.run sets LUA_PATH and LUA_CPATH to the build of the Lua running the suite)
if not os.getenv("LUA_CPATH") then
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  package.cpath = "./build/?.so;" .. package.cpath
end
local hsm = require "payhsm"
local port, label, n, zmk_hex = ...
local c = require("payhsm.gateway.client").new {
  http = { host = "127.0.0.1", port = tonumber(port), timeout = 10 },
  user = "integrator", password = "pa55word",
  zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = hsm.key.import("AES_256", zmk_hex) } },
}
for _ = 1, tonumber(n) do
  local key = c:generate("PAN")
  local res, msg = c:import("PAN", label, key)
  if res then
    io.write(res.sessionKeyId, " ", key:kcv("CMAC"), "\n")
  else
    io.stderr:write(msg, "\n")
  end
  key:close()
end
c:close()
