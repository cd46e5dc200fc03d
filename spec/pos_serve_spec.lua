-- `bin/payhsm serve pos` as its own process: the device (lua/payhsm/pos/device.lua) against
-- it over real HTTP keep-alive, viopay's 401 seen with curl, tokens expiring after five
-- minutes of the server's (file-driven) clock, one log line per request without secrets,
-- and tokens in a real redis-server shared by two server processes (viopay's POS key provisioning guide:
-- "is cached in Redis, and is valid for 5 minutes").
local hsm = require "payhsm"
local cjson = require "cjson"
local serve = require "spec.support.serve"
local device_mod = require "payhsm.pos.device"
local pos = require "payhsm.pos.server"

local ZMK = ("3A"):rep(32)
local DAK = ("4B"):rep(32)
local LMK = ("5C"):rep(32)
local DEV = "POS-8F3A2C91"

-- The server's clock stands still at the moment the config is written, plus the seconds
-- written in a file, so a spec moves it forward in a running process, to the second (a
-- clock that also followed os.time() made the 299-second check fail on a slow run).
local function config(offset_file, store)
  return ([[{
    listen = "127.0.0.1:0",
    store = %s,
    storage_key = { hex = %q },
    devices = { { device_id = %q, zmk = %q, attestation_key = %q } },
    clock = function()
      local f = io.open(%q)
      local off = f and tonumber(f:read("*a")) or 0
      if f then f:close() end
      return %d + off
    end,
  }]]):format(store or '{ backend = "memory" }', LMK, DEV, ZMK, DAK, offset_file, os.time())
end

local function set_offset(file, seconds)
  local f = assert(io.open(file, "w"))
  f:write(tostring(seconds))
  f:close()
end

local function new_device(port, clock)
  return device_mod.new {
    device_id = DEV,
    zmk = hsm.key.import("AES_256", ZMK, { usage = "K1", mode = "B" }),
    attestation_key = hsm.key.import("HMAC_SHA256", DAK, { usage = "M7", mode = "C" }),
    http = { host = "127.0.0.1", port = port, timeout = 5 },
    clock = clock,
  }
end

local function card()
  local c = pos.TEST_ISSUER.cards[1]
  return device_mod.card { pan = c.pan, psn = c.psn, imk = hsm.key.import("TDES_2KEY", pos.TEST_ISSUER.imk),
    atc = os.time() % 30000 }
end

local function curl(args)
  local p = io.popen("env -u LD_PRELOAD curl -s -S -w '\\n%{http_code}' " .. args .. " 2>/dev/null")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)\n(%d+)$")
  return code, body
end

describe("payhsm serve pos", function()
  -- busted keeps one finally() per test: everything to undo goes on this list instead
  local offset, undo
  local function later(fn) undo[#undo + 1] = fn end
  before_each(function()
    offset = os.tmpname()
    set_offset(offset, 0)
    undo = {}
  end)
  after_each(function()
    for i = #undo, 1, -1 do pcall(undo[i]) end
    os.remove(offset)
  end)

  it("activates a device, charges, refunds and cancels over HTTP keep-alive", function()
    local srv = serve.start("pos", config(offset))
    later(function() srv.stop() srv.cleanup() end)
    local d = new_device(srv.port)
    local res = assert(d:activate_all())
    assert.equal("active", res.status)
    local c = card()
    local ch = assert(d:charge { amount = 1250, currency = "EUR", entry_mode = "chip", card = c, pin = "1234" })
    assert.equal("approved", ch.status)
    assert.is_true(ch.arpc_ok)
    assert.equal("refunded", (assert(d:refund(ch.charge_id))).status)
    local _, _, code = d:refund(ch.charge_id)
    assert.equal("4091", code)
    local ch2 = assert(d:charge { amount = 300, card = c, pin = "1234" })
    -- the answer is lost and the terminal sends the same charge again: the same charge comes back
    local again = assert(d:retry_last())
    assert.same({ ch2.charge_id, ch2.authorization_code }, { again.charge_id, again.authorization_code })
    assert.equal("cancelled", (assert(d:cancel(ch2.charge_id))).status)
    _, _, code = d:replay_last()
    assert.equal("4004", code)
    local token = d.token
    local exported = {}
    for _, k in pairs(d.keys) do exported[#exported + 1] = require("spec.support.clear")(k) end -- N keys too
    d:close()
    local log = serve.read(srv.log)
    for _, p in ipairs { "/pos/attest/challenge 200", "/pos/attest 200", "/pos/keys 200", "/pos/config 200",
      "/pos/terminal%-parameters 200", "/pos/activate 200", "/pos/charge 200", "/refund 200", "/refund 409",
      "/cancel 200", "/cancel 401" } do
      assert.matches("POST [^\n]*" .. p, log)
    end
    for _, secret in ipairs { ZMK, DAK, LMK, token, "4761739001010119", table.unpack(exported) } do
      assert.not_matches(secret, log, 1, true)
    end
  end)

  it("answers viopay's 401 to curl and lets tokens expire after 5 minutes of server time", function()
    local srv = serve.start("pos", config(offset))
    later(function() srv.stop() srv.cleanup() end)
    local url = ("http://127.0.0.1:%d/pos/keys"):format(srv.port)
    local code, body = curl(("-X POST -H 'Authorization: Bearer att_f83kLmP9s2ab' -H 'X-Device-Id: %s' %s")
      :format(DEV, url))
    assert.equal("401", code)
    local doc = cjson.decode(body)
    assert.equal("4001", doc.error.code)
    assert.equal("Invalid or expired attestation token", doc.error.message)
    assert.is_string(doc.error.trace_id)
    local d = new_device(srv.port)
    later(function() d:close() end)
    assert(d:attest())
    code = curl(("-X POST -H 'Authorization: Attestation %s' -H 'X-Device-Id: POS-00000000' %s"):format(d.token, url))
    assert.equal("401", code)
    -- the scheme is case-insensitive (RFC 7235 2.1)
    code, body = curl(("-X POST -H 'Authorization: attestation %s' -H 'X-Device-Id: %s' %s"):format(d.token, DEV, url))
    assert.equal("200", code, body)
    set_offset(offset, 299)
    assert(d:download_keys())
    set_offset(offset, 300)
    local ok, msg, err = d:download_keys()
    assert.is_nil(ok)
    assert.equal("4001", err, msg)
  end)

  it("keeps tokens in redis with Redis's own TTL, shared by two server processes", function()
    local url, stop_redis, port = require("spec.support.redis").start()
    later(stop_redis)
    local store = ("{ backend = \"redis\", url = %q, prefix = \"pos-spec:\" }"):format(url)
    local a = serve.start("pos", config(offset, store))
    later(function() a.stop() a.cleanup() end)
    local b = serve.start("pos", config(offset, store))
    later(function() b.stop() b.cleanup() end)
    local da = new_device(a.port)
    later(function() da:close() end)
    assert(da:attest())
    -- the token issued by a is accepted by b
    local db = new_device(b.port)
    later(function() db:close() end)
    db.token = da.token
    assert(db:download_keys())
    local conn = require("payhsm.redis").connect("127.0.0.1", port, 1000)
    local keys = conn:command("KEYS", "pos-spec:pos:att:*")
    assert.equal(1, #keys)
    assert.not_matches(da.token, keys[1], 1, true)
    local ttl = conn:command("TTL", keys[1])
    assert.is_true(ttl > 290 and ttl <= 300, tostring(ttl))
    conn:close()
    -- both processes serve the key set b issued
    assert(db:fetch_config())
    -- per-request entries expire by Redis's TTL: a nonce while its time stamp is accepted
    -- (at most 2 * 300 + 1 s), a request_id for a day
    assert(db:fetch_terminal_parameters())
    assert(db:activate())
    assert(db:charge { amount = 100, card = card(), pin = "1234", request_id = "req-redis-0001" })
    conn = require("payhsm.redis").connect("127.0.0.1", port, 1000)
    local nonces = conn:command("KEYS", "pos-spec:pos:nonce:*")
    assert.equal(4, #nonces)
    for _, k in ipairs(nonces) do
      ttl = conn:command("TTL", k)
      assert.is_true(ttl > 0 and ttl <= 601, tostring(ttl))
    end
    ttl = conn:command("TTL", "pos-spec:pos:req:" .. DEV .. ":req-redis-0001")
    assert.is_true(ttl > 86390 and ttl <= 86400, tostring(ttl))
    conn:close()
    da.keys, da.key_set = db.keys, db.key_set
    assert(da:fetch_config())
    db.keys = nil
  end)
end)
