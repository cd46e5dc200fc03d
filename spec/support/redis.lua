--- A throwaway redis-server on a free loopback port for specs and benches:
--   local url, stop = require("spec.support.redis").start()
-- No persistence; a missing redis-server is an error (make deps installs it).
local socket = require "socket"

local M = {}

function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

function M.start()
  assert(os.execute("command -v redis-server >/dev/null 2>&1"), "redis-server is not installed (make deps installs it)")
  local port = M.free_port()
  local pidfile = os.tmpname()
  local logfile = pidfile .. ".log"
  os.execute(("env -u LD_PRELOAD redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no"
    .. " --daemonize no >%s 2>&1 & echo $! >%s"):format(port, logfile, pidfile))
  local f = assert(io.open(pidfile))
  local pid = assert(f:read("*a"):match("%d+"))
  f:close()
  local redis = require "payhsm.redis"
  local up = false
  for _ = 1, 250 do
    local conn = redis.connect("127.0.0.1", port, 200)
    if conn then
      up = conn:command("PING") == "PONG"
      conn:close()
      if up then break end
    end
    socket.sleep(0.02)
  end
  local function stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
    os.remove(pidfile)
    os.remove(logfile)
  end
  if not up then
    local lf = io.open(logfile)
    local log = lf and lf:read("*a") or ""
    if lf then lf:close() end
    stop()
    error("redis-server did not answer PING on port " .. port .. ":\n" .. log)
  end
  return ("redis://127.0.0.1:%d/0"):format(port), stop, port
end

return M
