--- Starts `bin/payhsm serve SYSTEM --config FILE` as its own process for specs and
-- benches: writes the config (a Lua table literal given as text), waits for the
-- "listening on" line, and returns a handle {port =, pid =, log = path, stop(), kill9()}.
local M = {}

local function sleep(s) os.execute("sleep " .. s) end

local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
M.read = read

--- config_text: Lua source of the config table (without "return"); listen should be
-- "127.0.0.1:0" so the server picks a free port.
function M.start(system, config_text, opts)
  opts = opts or {}
  local base = opts.base or os.tmpname()
  local cfg, log, pidfile = base .. ".cfg.lua", base .. ".log", base .. ".pid"
  local f = assert(io.open(cfg, "w"))
  f:write("return ", config_text, "\n")
  f:close()
  os.remove(log)
  os.execute(("env -u LD_PRELOAD bin/payhsm serve %s --config %s 2>> %s & echo $! > %s"):format(system, cfg, log,
    pidfile))
  local pid = read(pidfile):match("%d+")
  local port
  for _ = 1, 250 do
    local all = {}
    for p in read(log):gmatch("listening on https?://[%d.]+:(%d+)") do all[#all + 1] = p end
    port = all[#all]
    if port then break end
    sleep(0.02)
  end
  assert(port, "payhsm serve did not start:\n" .. read(log))
  local h = { port = tonumber(port), pid = pid, log = log, config = cfg, base = base }
  function h.kill9() os.execute("kill -9 " .. pid .. " 2>/dev/null") end
  function h.stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
  end
  -- alive: running and not a zombie (orphans may wait for a reaper that never comes)
  function h.alive()
    local st = read("/proc/" .. pid .. "/stat"):match("^%d+ %b() (%a)")
    return st ~= nil and st ~= "Z"
  end
  -- resident set size of the server process, KiB (load benches watch it for growth)
  function h.rss_kib() return tonumber(read("/proc/" .. pid .. "/status"):match("VmRSS:%s*(%d+)")) end
  function h.cleanup()
    os.remove(cfg) os.remove(log) os.remove(pidfile) os.remove(base)
  end
  return h
end

return M
