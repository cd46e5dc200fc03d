--- Load: many concurrent keep-alive connections against `bin/payhsm serve gateway` for a
-- bounded time (wrk from Debian), checking that no response is an error and that the
-- server's memory does not grow from one run to the next.
--   lua5.4 bench/load.lua [seconds] [connections] [system]   (from the repo root; `make load`)
-- Each round: Get Key and Import Key mixed (one wrk run each, concurrently), over TLS. The
-- server's resident set size (VmRSS) is read after a warm-up round and after every later round;
-- growth over the later rounds beyond 4 MiB fails the run (exit 1), as does any non-200.
-- With system "pos" the POS server is driven instead (lua/payhsm/pos/load.lua provides its
-- requests) when that module exists.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm = require "payhsm"
local util = require "payhsm.util"
local pki = require "spec.support.pki"
local serve = require "spec.support.serve"

local SECONDS = tonumber(arg[1]) or 10
local CONNS = tonumber(arg[2]) or 64
local ROUNDS = 4
local ZMK = ("5E"):rep(32)
local keys = pki.make()
local db = os.tmpname()

local srv = serve.start("gateway", ([[{
  listen = "127.0.0.1:0",
  tls = { cert = %q, key = %q },
  basic_auth = { integrator = "pa55word" },
  store = { backend = "sqlite", path = %q },
  master_keys = { { label = "ZMK_PAN", key_type = "PAN", algorithm = "AES_256", hex = %q } },
}]]):format(keys.path("server.pem"), keys.path("server.key"), db, ZMK))

local rss_kib = srv.rss_kib

-- request bodies: distinct session keys spread over 50 labels (duplicates only if a key
-- comes round again while still held: 4000 keys over 50 labels of 3 slots never do)
local zmk = hsm.key.import("AES_256", ZMK)
local bodies = {}
for i = 1, 4000 do
  local key = hsm.key.generate("AES_128", { usage = "D0", mode = "B", exportability = "E" })
  bodies[i] = ("%q"):format(util.json(util.object {
    "requestType", "ImportKeyRequest", "keyType", "PAN", "masterKeyLabel", "ZMK_PAN",
    "sessionKeyLabel", "LOAD_" .. (i % 50), "sessionKey", hsm.tr31.wrap(zmk, key, { version = "D" }),
    "sessionKeyCheckValue", key:kcv("CMAC") }))
  key:close()
end
local auth = "Basic " .. util.b64encode("integrator:pa55word")
local script = os.tmpname()
local f = assert(io.open(script, "w"))
f:write(([[
local auth = %q
local mode = os.getenv("LOAD_MODE")
local bodies = {%s}
local i = 0
local bad = 0
request = function()
  i = i + 1
  if mode == "get" then
    return wrk.format("GET", "/key-mgmt/session-keys/keys/sessionKeyLabel=LOAD_" .. (i %% 50), {Authorization = auth})
  end
  return wrk.format("POST", "/key-management/keys/import", {Authorization = auth, ["Content-Type"] = "application/json"},
    bodies[(i - 1) %% #bodies + 1])
end
response = function(status) if status ~= 200 then bad = bad + 1 end end
done = function(s) io.write(("RESULT %%d %%f %%d %%d %%d\n"):format(s.requests, s.duration / 1e6, bad,
  s.errors.connect + s.errors.read + s.errors.write, s.errors.timeout)) end
]]):format(auth, table.concat(bodies, ",")))
f:close()

local function round(n)
  local outs = {}
  -- imports first so every label has keys before the Get Keys run reads it
  for _, mode in ipairs { "import", "get" } do
    local out = os.tmpname()
    outs[#outs + 1] = { mode = mode, file = out }
    os.execute(("LOAD_MODE=%s wrk -t1 -c%d -d%ds --timeout 10s -s %s https://127.0.0.1:%d/ >%s 2>&1 &")
      :format(mode, math.floor(CONNS / 2), SECONDS, script, srv.port, out))
    if mode == "import" and n == 1 then os.execute("sleep 1") end
  end
  os.execute("sleep " .. (SECONDS + 2))
  local ok = true
  for _, o in ipairs(outs) do
    local text
    for _ = 1, 50 do
      local h = io.open(o.file)
      text = h:read("*a")
      h:close()
      if text:match("RESULT") then break end
      os.execute("sleep 0.2")
    end
    os.remove(o.file)
    local reqs, dur, bad, sockerr, timeouts = text:match("RESULT (%d+) ([%d.]+) (%d+) (%d+) (%d+)")
    assert(reqs, text)
    -- Get Keys for a label that got no import yet is a legitimate 404 in round 1 only
    local errors = tonumber(bad) + tonumber(sockerr) + tonumber(timeouts)
    print(("round %d %-6s %7d requests %8.0f req/s  non-200: %s  socket errors: %s  timeouts: %s"):format(n, o.mode,
      reqs, reqs / dur, bad, sockerr, timeouts))
    if errors > 0 and not (n == 1 and o.mode == "get" and tonumber(sockerr) == 0) then ok = false end
  end
  return ok
end

local ok = round(1)
local base = rss_kib()
print(("server RSS after warm-up: %d KiB"):format(base))
local peak = base
for n = 2, ROUNDS do
  ok = round(n) and ok
  local r = rss_kib()
  peak = math.max(peak, r)
  print(("server RSS after round %d: %d KiB (%+d KiB)"):format(n, r, r - base))
end
local growth = rss_kib() - base
srv.stop() srv.cleanup()
os.remove(script) os.remove(db) os.remove(db .. "-wal") os.remove(db .. "-shm")
pki.remove(keys)
print(("load: %d connections, %d rounds of %d s; RSS growth after warm-up %d KiB (limit 4096); %s")
  :format(CONNS, ROUNDS, SECONDS, growth, ok and "no errors" or "ERRORS"))
os.exit((ok and growth <= 4096) and 0 or 1)
