--- `serve --workers 1` against `--workers 2` on one port: AWS Payment Cryptography's
-- GetKey (SigV4, sqlite store), the MSK gateway's Get Key (sqlite store) and the POS
-- charges (redis store: every charge is a write the workers share).
--   lua5.4 bench/workers_http.lua [seconds=5] [systems=aws,gateway,pos] [connections=16] [rounds=3]   (from the repo root)
-- Clients on the same machine as the server (so they take part of its cores too):
--   * aws and gateway: wrk (Debian), 1 thread, 16 keep-alive connections, plain HTTP, the
--     same request each time (one signed GetKey; one Get Key with Basic authorization).
--   * pos: 4 device processes (bench/load_pos_worker.lua), each activated, then charging
--     over its own keep-alive connection (PIN block, ARQC, envelope and ARPC checked by
--     the device: the clients' crypto is about as heavy as the server's).
-- Prints each rate, the ratio 2 workers / 1 worker, and the load average before each run
-- (other processes on the machine take CPU too). Every run stops after its seconds.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local cjson = require "cjson"
local serve = require "spec.support.serve"
local sigv4 = require "payhsm.aws.sigv4"
local aws = require "payhsm.aws"
local util = require "payhsm.util"
local hsm = require "payhsm"

local SECONDS = tonumber(arg[1]) or 5
local CONNS = tonumber(arg[3]) or 16
-- Each round measures 1 worker then 2; the ratio printed last is the median of the rounds'
-- ratios (a virtual machine's speed drifts by tens of percent from one run to the next).
local ROUNDS = tonumber(arg[4]) or 3
local SYSTEMS = {}
for s in (arg[2] or "aws,gateway,pos"):gmatch("[^,]+") do SYSTEMS[s] = true end

local function loadavg()
  local f = io.open("/proc/loadavg")
  local s = f and f:read("*l") or "?"
  if f then f:close() end
  return s:match("^(%S+ %S+ %S+)") or s
end

-- wrk with a script that sets wrk.method/path/headers/body (`request_lua`): wrk builds the
-- request once and resends its bytes, so the client takes as little of the shared cores as
-- it can (a request() function costs wrk ~20 us of Lua per request); returns requests/s, errors.
local function wrk(port, request_lua)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(request_lua, [[
done = function(summary)
  local e = summary.errors
  io.write(("RESULT %d %f %d\n"):format(summary.requests, summary.duration / 1e6,
    e.status + e.connect + e.read + e.write + e.timeout))
end
]])
  f:close()
  local p = io.popen(("wrk -t1 -c%d -d%ds -s %s http://127.0.0.1:%d/ 2>&1"):format(CONNS, SECONDS, script, port))
  local out = p:read("*a")
  p:close()
  os.remove(script)
  local n, dt, errs = out:match("RESULT (%d+) ([%d.]+) (%d+)")
  if not n then error("wrk gave no result:\n" .. out, 0) end
  return tonumber(n) / tonumber(dt), tonumber(errs)
end

-- CPU seconds (user + system) of pid's children (the workers) and of the whole machine
-- (busy, idle) from /proc, so a run shows whether a core was left free for the second worker.
local CLK_TCK = tonumber(io.popen("getconf CLK_TCK"):read("*l")) or 100
local function workers_cpu(parent)
  local sum = 0
  local p = io.popen("env -u LD_PRELOAD pgrep -P " .. parent)
  for pid in p:read("*a"):gmatch("%d+") do
    local f = io.open("/proc/" .. pid .. "/stat")
    if f then
      local fields = {}
      for w in f:read("*a"):gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = w end
      f:close()
      sum = sum + (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK
    end
  end
  p:close()
  return sum
end
local function machine_cpu()
  local f = io.open("/proc/stat")
  local line = f:read("*l")
  f:close()
  local v = {}
  for n in line:gmatch("%d+") do v[#v + 1] = tonumber(n) end
  local idle = v[4] + v[5]
  local total = 0
  for _, n in ipairs(v) do total = total + n end
  return (total - idle) / CLK_TCK, idle / CLK_TCK
end
local measure = {}
local function begin(srv)
  measure.parent = srv.pid
  measure.cpu0 = workers_cpu(measure.parent)
  measure.busy0, measure.idle0 = machine_cpu()
end
local function finish()
  local busy, idle = machine_cpu()
  measure.server = workers_cpu(measure.parent) - measure.cpu0
  measure.busy, measure.idle = busy - measure.busy0, idle - measure.idle0
end

local function rm_db(db) for _, s in ipairs { "", "-wal", "-shm", ".lmk" } do os.remove(db .. s) end end

local AKID, SECRET = "AKIDBENCH", "bench-secret-access-key"
local function aws_getkey(workers)
  local db = os.tmpname()
  local srv = serve.start("aws", ([[{listen = "127.0.0.1:0", region = "us-east-1", account = "111122223333",
    credentials = {%s = %q}, store = {backend = "sqlite", path = %q},
    storage_key = {algorithm = "AES_256", hex = %q}}]]):format(AKID, SECRET, db, ("A5"):rep(32)), { workers = workers })
  local pc = aws.new { endpoint = "http://127.0.0.1:" .. srv.port, region = "us-east-1", access_key = AKID,
    secret_key = SECRET }
  local key = assert(pc:CreateKey { Exportable = true, KeyAttributes = { KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY",
    KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_256",
    KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } } }).Key
  pc:close()
  local body = cjson.encode { KeyIdentifier = key.KeyArn }
  local req = sigv4.sign({ method = "POST", path = "/", body = body, headers = {
    host = "127.0.0.1:" .. srv.port, ["content-type"] = "application/x-amz-json-1.0",
    ["x-amz-target"] = "PaymentCryptographyControlPlane.GetKey" } },
    { access_key = AKID, secret_key = SECRET, region = "us-east-1", service = "payment-cryptography" })
  local hdrs = {}
  for k, v in pairs(req.headers) do
    if k ~= "host" then hdrs[#hdrs + 1] = ("wrk.headers[%q] = %q\n"):format(k, v) end
  end
  begin(srv)
  local ok, rate, errs = pcall(wrk, srv.port, ("wrk.method = \"POST\"\nwrk.body = %q\n%s"):format(body,
    table.concat(hdrs)))
  finish()
  srv.stop() srv.cleanup() rm_db(db)
  if not ok then error(rate, 0) end
  return rate, errs
end

local ZMK = ("5E"):rep(32)
local function gateway_getkey(workers)
  local db = os.tmpname()
  local srv = serve.start("gateway", ([[{listen = "127.0.0.1:0", basic_auth = { integrator = "pa55word" },
    store = { backend = "sqlite", path = %q }, storage_key = { hex = %q },
    master_keys = { { label = "ZMK_PAN", key_type = "PAN", algorithm = "AES_256", hex = %q } }}]]):format(
    db, ("5C"):rep(32), ZMK), { workers = workers })
  local c = require("payhsm.gateway.client").new { http = { host = "127.0.0.1", port = srv.port },
    user = "integrator", password = "pa55word",
    zmks = { PAN = { label = "ZMK_PAN", key = hsm.key.import("AES_256", ZMK) } } }
  local first = assert(c:rotate("PAN", "BENCH_WORKERS"))
  c:close()
  begin(srv)
  local ok, rate, errs = pcall(wrk, srv.port, ("wrk.path = \"/key-management/keys/%s\"\n"
    .. "wrk.headers[\"Authorization\"] = %q\n"):format(first.sessionKeyId,
    "Basic " .. util.b64encode("integrator:pa55word")))
  finish()
  srv.stop() srv.cleanup() rm_db(db)
  if not ok then error(rate, 0) end
  return rate, errs
end

local ZMK_POS, DAK = ("3A"):rep(32), ("4B"):rep(32)
local function pos_charges(workers)
  local url, stop_redis = require("spec.support.redis").start()
  local devs, cards, pans = {}, {}, {}
  for i = 1, 4 do
    devs[i] = ("POS-BE0C%04X"):format(i)
    pans[i] = ("476173900102%04d"):format(i)
    cards[i] = ('{ pan = "%s", psn = "01", pin = "1234", limit = 100000000 }'):format(pans[i])
  end
  local dev_cfg = {}
  for i, d in ipairs(devs) do
    dev_cfg[i] = ("{ device_id = %q, zmk = %q, attestation_key = %q }"):format(d, ZMK_POS, DAK)
  end
  local srv = serve.start("pos", ([[{ listen = "127.0.0.1:0",
    store = { backend = "redis", url = %q, prefix = "benchw:" }, storage_key = { hex = %q },
    devices = { %s },
    issuer = { imk = %q, mode = "EMV_OPTION_A", derivation = "EMV_COMMON", cards = { %s } } }]]):format(url,
    ("5C"):rep(32), table.concat(dev_cfg, ", "), require("payhsm.pos.server").TEST_ISSUER.imk,
    table.concat(cards, ", ")), { workers = workers })
  local outs = {}
  begin(srv)
  for i, d in ipairs(devs) do
    outs[i] = os.tmpname()
    os.execute(("lua5.4 bench/load_pos_worker.lua %d %s %s %s %d %s > %s 2>&1 &"):format(srv.port, d, ZMK_POS, DAK,
      SECONDS, pans[i], outs[i]))
  end
  local total, errs = 0, 0
  for i = 1, #devs do
    local line
    for _ = 1, (SECONDS + 30) * 20 do
      local f = io.open(outs[i])
      line = f and f:read("*a"):match("RESULT %d+ %d+") or nil
      if f then f:close() end
      if line then break end
      os.execute("sleep 0.05")
    end
    local ok, bad = (line or "RESULT 0 1"):match("RESULT (%d+) (%d+)")
    total, errs = total + tonumber(ok), errs + tonumber(bad)
    os.remove(outs[i])
  end
  finish()
  srv.stop() srv.cleanup() stop_redis()
  -- the devices' charging time is SECONDS each (activation before it is not counted)
  return total / SECONDS, errs
end

local cases = {
  { "aws", "GetKey (aws, SigV4, sqlite), wrk " .. CONNS .. " conns", aws_getkey },
  { "gateway", "Get Key (gateway, sqlite), wrk " .. CONNS .. " conns", gateway_getkey },
  { "pos", "charges (pos, redis), 4 device processes", pos_charges },
}
print(("serve --workers 1 vs 2, %d s each, %s, %d cores"):format(SECONDS, os.date("!%Y-%m-%dT%H:%M:%SZ"),
  tonumber(io.popen("nproc"):read("*l")) or 0))
local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end
for _, case in ipairs(cases) do
  if SYSTEMS[case[1]] then
    local rates, ratios = { {}, {} }, {}
    for round = 1, ROUNDS do
      for _, w in ipairs { 1, 2 } do
        local la = loadavg()
        local rate, errs = case[3](w)
        rates[w][round] = rate
        print(("%-44s workers %d: %8.0f /s  (%d errors; workers' CPU %.2f s = %.0f us/op; machine busy %.2f s, idle %.2f s;"
          .. " load average before: %s)"):format(case[2], w, rate, errs, measure.server,
          measure.server / (rate * SECONDS) * 1e6, measure.busy, measure.idle, la))
      end
      ratios[round] = rates[2][round] / rates[1][round]
    end
    local each = {}
    for i, r in ipairs(ratios) do each[i] = ("%.2f"):format(r) end
    print(("%-44s 2 workers / 1 worker = %.2f (target >= 1.7)%s"):format(case[2], median(ratios),
      ROUNDS > 1 and ("; median of %d rounds: %s"):format(ROUNDS, table.concat(each, " ")) or ""))
  end
end
