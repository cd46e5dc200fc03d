--- Starts `bin/payhsm serve SYSTEM --config FILE` as its own process for specs and
-- benches: writes the config (a Lua table literal given as text), waits for the
-- "listening on" line, and returns a handle {port =, pid =, log = path, stop(), kill9()}.
local M = {}

local function sleep(s) os.execute("sleep " .. s) end

local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
M.read = read

--- Removes the files start() made under base (config, log, pid, stdout, base itself).
function M.remove_files(base)
  for _, suffix in ipairs { ".cfg.lua", ".log", ".pid", ".out", "" } do os.remove(base .. suffix) end
end

--- config_text: Lua source of the config table (without "return"); listen should be
-- "127.0.0.1:0" so the server picks a free port. opts.workers = N adds --workers N.
function M.start(system, config_text, opts)
  opts = opts or {}
  local base = opts.base or os.tmpname()
  local cfg, log, pidfile, out = base .. ".cfg.lua", base .. ".log", base .. ".pid", base .. ".out"
  local f = assert(io.open(cfg, "w"))
  f:write("return ", config_text, "\n")
  f:close()
  os.remove(log)
  -- stdout goes to base.out (a redirection in the system word, as the secrets spec makes,
  -- comes later and wins): a server left running must not hold the spec runner's stdout,
  -- or whatever reads that pipe (tee in .ci/run) waits for it forever
  os.execute(("env -u LD_PRELOAD %s bin/payhsm serve >> %s %s --config %s%s 2>> %s & echo $! > %s"):format(
    require("spec.support.interp").env, out, system, cfg, opts.workers and (" --workers " .. opts.workers) or "",
    log, pidfile))
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
  function h.cleanup() M.remove_files(base) end
  return h
end

return M
