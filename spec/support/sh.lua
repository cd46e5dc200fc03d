--- Runs a shell command the way the CLI specs need it: bin/payhsm with the LUA and
-- PAYHSM_BUILD of this run (spec/support/interp.lua), optional stdin text, and stdout,
-- exit code and stderr apart.
--   local sh = require "spec.support.sh"
--   local out, rc, err = sh("bin/payhsm kcv --key-identifier -", "TDES_2KEY:0123...")
local interp = require "spec.support.interp"

return function(cmd, stdin)
  local errf, inf = os.tmpname(), nil
  local full = "export " .. interp.env .. "; " .. cmd .. " 2>" .. errf
  if stdin then
    inf = os.tmpname()
    local f = assert(io.open(inf, "w"))
    f:write(stdin)
    f:close()
    full = full .. " <" .. inf
  end
  local p = io.popen(full)
  local out = p:read("*a")
  local _, _, rc = p:close()
  local ef = io.open(errf)
  local err = ef:read("*a")
  ef:close()
  os.remove(errf)
  if inf then os.remove(inf) end
  return out, rc, err
end
