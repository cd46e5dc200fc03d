-- `bin/payhsm serve SYSTEM --config FILE --workers N`: N processes serve one port, each
-- with its own event loop and store connection (sqlite or redis). Imports acknowledged
-- by either worker are read back from both (fresh connections until both worker pids
-- have answered, told apart by the X-Payhsm-Worker header); a worker killed with
-- SIGKILL under load is started again by the parent; SIGTERM to the parent stops all
-- (exit 0); a memory store with two workers is refused.
local cjson = require "cjson"
local interp = require "spec.support.interp"
local defer = require "spec.support.defer"

local ZMK_PAN = ("5E"):rep(32)

local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end
local function sleep(s) os.execute("sleep " .. s) end

-- Starts the server; returns {port, pid (the parent), log, rc() (nil while it runs), stop()}.
local function start(system, config_text, workers)
  local base = os.tmpname()
  local cfg, log, rcf, pidf = base .. ".cfg.lua", base .. ".log", base .. ".rc", base .. ".pid"
  write(cfg, "return " .. config_text .. "\n")
  os.execute(("(env -u LD_PRELOAD %s bin/payhsm serve %s --config %s --workers %d >/dev/null 2>>%s; echo $? > %s)"
    .. " >/dev/null 2>&1 </dev/null & echo $! > %s"):format(interp.env, system, cfg, workers, log, rcf, pidf))
  local h = { log = log }
  function h.rc() return tonumber(read(rcf):match("%d+")) end
  for _ = 1, 500 do
    h.port = tonumber(read(log):match("listening on http://[%d.]+:(%d+) with %d+ workers"))
    if h.port or h.rc() then break end
    sleep(0.02)
  end
  if h.port then h.pid = io.popen("env -u LD_PRELOAD pgrep -P " .. read(pidf):match("%d+")):read("*a"):match("%d+") end
  -- the workers' pids, as the log names them ("worker PID serving"), in order of start
  function h.workers()
    local out = {}
    for pid in read(log):gmatch("worker (%d+) serving") do out[#out + 1] = pid end
    return out
  end
  function h.stop() if h.pid then os.execute("kill " .. h.pid .. " 2>/dev/null") end end
  function h.wait_exit()
    for _ = 1, 500 do
      if h.rc() then return h.rc() end
      sleep(0.02)
    end
  end
  function h.cleanup()
    for _, s in ipairs { ".cfg.lua", ".log", ".rc", ".pid", "" } do os.remove(base .. s) end
  end
  return h
end

local function alive(pid)
  local st = read("/proc/" .. pid .. "/stat"):match("^%d+ %b() (%a)")
  return st ~= nil and st ~= "Z"
end

-- Get Keys for label on a fresh connection: worker pid, the KCVs listed.
local function get_keys(port, label)
  local p = io.popen(("env -u LD_PRELOAD curl -s -S -D - -u integrator:pa55word "
    .. "http://127.0.0.1:%d/key-mgmt/session-keys/keys/sessionKeyLabel=%s 2>&1"):format(port, label))
  local out = p:read("*a")
  p:close()
  local pid = out:match("[Xx]%-[Pp]ayhsm%-[Ww]orker: (%d+)")
  local body = out:match("\r\n\r\n(.*)$") or ""
  local kcvs = {}
  local ok, doc = pcall(cjson.decode, body)
  if ok and type(doc) == "table" then
    for _, k in ipairs(doc.keys or {}) do
      if type(k) == "table" and k.sessionKeyCheckValue then kcvs[k.sessionKeyCheckValue] = true end
    end
  end
  return pid, kcvs, out
end

-- Runs `count` importer processes (N imports each into its own label); returns the
-- output files.
local function importers(port, prefix, count, n)
  local outs = {}
  for i = 1, count do
    outs[i] = os.tmpname()
    os.execute(("%s spec/support/gateway_importer.lua %d %s%d %d %s > %s 2>&1 &"):format(interp.run, port, prefix, i,
      n, ZMK_PAN, outs[i]))
  end
  return outs
end

-- Waits until each importer has written n lines or exited; returns per label {kcv, ...}
-- of the acknowledged imports and the total acknowledged.
local function collect(outs, n, prefix)
  local acked, total = {}, 0
  for i, out in ipairs(outs) do
    local lines
    for _ = 1, 1500 do
      lines = {}
      for l in io.lines(out) do lines[#lines + 1] = l end
      if #lines >= n then break end
      sleep(0.02)
    end
    acked[prefix .. i] = {}
    for _, l in ipairs(lines) do
      local kcv = l:match("^%d+ (%x+)$")
      if kcv then
        table.insert(acked[prefix .. i], kcv)
        total = total + 1
      end
    end
    os.remove(out)
  end
  return acked, total
end

local function gateway_config(store)
  return ([[{
    listen = "127.0.0.1:0",
    basic_auth = { integrator = "pa55word" },
    store = %s,
    storage_key = { hex = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F" },
    master_keys = { { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = %q } },
  }]]):format(store, ZMK_PAN)
end

-- later: the test's clean-ups (spec.support.defer: busted keeps one finally() per test)
local function exercise(store, later)
  local srv = start("gateway", gateway_config(store), 2)
  later(function() srv.stop() srv.cleanup() end)
  assert.is_number(srv.port, read(srv.log))
  local first = srv.workers()
  for _ = 1, 200 do
    if #first == 2 then break end
    sleep(0.02)
    first = srv.workers()
  end
  assert.equal(2, #first, read(srv.log))

  -- concurrent clients: 4 processes, 3 imports each into their own label (a label
  -- keeps three slots, so every acknowledged import stays listed)
  local acked, total = collect(importers(srv.port, "WK", 4, 3), 3, "WK")
  assert.equal(12, total)
  -- every acknowledged key is listed by both workers
  for label, kcvs in pairs(acked) do
    local seen = {}
    for _ = 1, 60 do
      local pid, listed, raw = get_keys(srv.port, label)
      assert.is_string(pid, raw)
      for _, kcv in ipairs(kcvs) do assert.is_true(listed[kcv] == true, label .. " " .. kcv .. "\n" .. raw) end
      seen[pid] = true
      if seen[first[1]] and seen[first[2]] then break end
    end
    assert.is_true(seen[first[1]] and seen[first[2]], "both workers answered for " .. label)
  end

  -- one client opening 24 connections at once reaches both workers: each worker has its
  -- own SO_REUSEPORT socket, and the kernel spreads connections over them by the
  -- client's port (with one shared socket, the first worker awake took them all)
  local url = ("http://127.0.0.1:%d/key-mgmt/session-keys/keys/sessionKeyLabel=WK1"):format(srv.port)
  local p = io.popen("env -u LD_PRELOAD curl -s -S -Z --parallel-immediate --parallel-max 24 -u integrator:pa55word "
    .. "-o /dev/null -w '%header{x-payhsm-worker}\\n'" .. (" " .. url):rep(24) .. " 2>&1")
  local parallel = p:read("*a")
  p:close()
  local by = {}
  for pid in parallel:gmatch("(%d+)\n") do by[pid] = (by[pid] or 0) + 1 end
  assert.is_true((by[first[1]] or 0) > 0 and (by[first[2]] or 0) > 0, "24 parallel connections: " .. parallel)

  -- one worker killed with SIGKILL under load: the parent starts another, the port
  -- keeps answering, and what was acknowledged stays readable
  local outs = importers(srv.port, "LOAD", 2, 25)
  sleep(0.3)
  os.execute("kill -9 " .. first[1])
  local now
  for _ = 1, 300 do
    now = srv.workers()
    if #now == 3 then break end
    sleep(0.02)
  end
  assert.equal(3, #now, read(srv.log))
  assert.matches("worker " .. first[1] .. " ended %(signal KILL%); starting another", read(srv.log))
  local load_acked, load_total = collect(outs, 25, "LOAD")
  -- at most the one request each client had in flight on the killed worker is lost
  assert.is_true(load_total >= 48, "acknowledged " .. load_total .. " of 50")
  local fresh, seen = now[3], {}
  for label, kcvs in pairs(load_acked) do
    for _ = 1, 60 do
      local pid, listed, raw = get_keys(srv.port, label)
      assert.is_string(pid, raw)
      -- the last three acknowledged imports of a label are its three slots
      for j = math.max(1, #kcvs - 2), #kcvs do assert.is_true(listed[kcvs[j]] == true, raw) end
      seen[pid] = true
      if seen[fresh] and seen[first[2]] then break end
    end
  end
  assert.is_true(seen[fresh] and seen[first[2]], "the new worker and the old one both answered")
  assert.is_nil(seen[first[1]])

  -- SIGTERM to the parent: every worker stops, the parent exits 0
  srv.stop()
  assert.equal(0, srv.wait_exit(), read(srv.log))
  assert.is_false(alive(first[2]))
  assert.is_false(alive(fresh))
  assert.matches("payhsm gateway stopped on SIGTERM %(2 workers%)", read(srv.log))
end

describe("payhsm serve --workers", function()
  it("two workers on one sqlite store: shared keys, a killed worker restarted, SIGTERM stops all", function()
    local later = defer(finally)
    local db = os.tmpname()
    later(function() os.remove(db) os.remove(db .. "-wal") os.remove(db .. "-shm") end)
    exercise(("{ backend = %q, path = %q }"):format("sqlite", db), later)
  end)

  it("two workers on one redis store: the same", function()
    local later = defer(finally)
    local url, stop_redis = require("spec.support.redis").start()
    later(stop_redis)
    exercise(("{ backend = %q, url = %q }"):format("redis", url), later)
  end)

  it("refuses a port that workers already serve (SO_REUSEPORT sockets would share it silently)", function()
    local later = defer(finally)
    local db, db2 = os.tmpname(), os.tmpname()
    later(function()
      for _, d in ipairs { db, db2 } do os.remove(d) os.remove(d .. "-wal") os.remove(d .. "-shm") end
    end)
    local a = start("gateway", gateway_config(("{ backend = %q, path = %q }"):format("sqlite", db)), 2)
    later(function() a.stop() a.cleanup() end)
    assert.is_number(a.port, read(a.log))
    local cfg = gateway_config(("{ backend = %q, path = %q }"):format("sqlite", db2)):gsub("127%.0%.0%.1:0",
      "127.0.0.1:" .. a.port)
    local b = start("gateway", cfg, 2)
    later(function() b.stop() b.cleanup() end)
    assert.equal(1, b.wait_exit(), read(b.log))
    assert.matches("another process is serving that port", read(b.log))
  end)

  it("refuses a memory store with more than one worker, before binding the port", function()
    local srv = start("gateway", gateway_config("{ backend = \"memory\" }"), 2)
    finally(function() srv.cleanup() end)
    assert.equal(1, srv.wait_exit())
    assert.matches("%-%-workers 2 needs a store the workers share %(sqlite or redis%)", read(srv.log))
  end)

  it("names a bad --workers value with the usage (exit 2)", function()
    for _, n in ipairs { "0", "x", "65" } do
      local p = io.popen(("env -u LD_PRELOAD %s bin/payhsm serve gateway --config /nonexistent --workers %s 2>&1; echo rc=$?")
        :format(interp.env, n))
      local out = p:read("*a")
      p:close()
      assert.matches("rc=2", out)
      assert.matches("usage: payhsm serve SYSTEM %-%-config FILE %[%-%-workers N%]", out)
    end
  end)
end)
