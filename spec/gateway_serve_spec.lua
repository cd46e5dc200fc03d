-- `bin/payhsm serve gateway` as a real HTTPS server (its own process): mutual TLS with a
-- PKI generated here, Basic authorization, one log line per request without secrets,
-- the integrator client over keep-alive TLS, and durability of answered imports across
-- SIGKILL and restart with the sqlite store (Fiserv's host-to-host MSK API:
-- "TLS 1.2 or higher ... Mutual Authentication and Basic Authorization").
local hsm = require "payhsm"
local cjson = require "cjson"
local pki = require "spec.support.pki"
local serve = require "spec.support.serve"
local client_mod = require "payhsm.gateway.client"
local defer = require "spec.support.defer"

local ZMK_PAN = ("5E"):rep(32)
local ZMK_PIN = ("6F"):rep(32)

local function config(keys, db, extra)
  return ([[{
    listen = "127.0.0.1:0",
    tls = { cert = %q, key = %q, client_ca = %q },
    basic_auth = { integrator = "pa55word" },
    store = { backend = "sqlite", path = %q },
    master_keys = {
      { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = %q },
      { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = %q },
    },
    %s
  }]]):format(keys.path("server.pem"), keys.path("server.key"), keys.path("ca.pem"), db, ZMK_PAN, ZMK_PIN,
    extra or "")
end

local function curl(args)
  local p = io.popen("env -u LD_PRELOAD curl -s -S -o /dev/null -w '%{http_code}' " .. args .. " 2>/dev/null")
  local out = p:read("*a")
  local _, _, rc = p:close()
  return out, rc
end

local function new_client(keys, port)
  return client_mod.new {
    http = { host = "127.0.0.1", port = port, timeout = 5,
             tls = { cafile = keys.path("ca.pem"), certificate = keys.path("client.pem"), key = keys.path("client.key") } },
    user = "integrator", password = "pa55word",
    zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = hsm.key.import("AES_256", ZMK_PAN) },
             PIN = { label = "ZMK_PIN_XXX_YYY", key = hsm.key.import("AES_256", ZMK_PIN) } },
  }
end

describe("payhsm serve gateway", function()
  local keys, db, gateway_kcv
  setup(function()
    keys = pki.make()
    db = os.tmpname()
  end)
  teardown(function()
    pki.remove(keys)
    os.remove(db) os.remove(db .. "-wal") os.remove(db .. "-shm")
  end)

  it("requires a client certificate from the CA, TLS 1.2+, and Basic authorization", function()
    local srv = serve.start("gateway", config(keys, db))
    finally(function() srv.stop() srv.cleanup() end)
    local url = ("https://127.0.0.1:%d/key-mgmt/session-keys/keys/sessionKeyLabel=X"):format(srv.port)
    local ca = "--cacert " .. keys.path("ca.pem")
    local mine = ("--cert %s --key %s"):format(keys.path("client.pem"), keys.path("client.key"))
    local stranger = ("--cert %s --key %s"):format(keys.path("stranger.pem"), keys.path("stranger.key"))
    local good = "-u integrator:pa55word"
    -- no client certificate, or one from another CA: refused before any handler runs
    local codes403 = {}
    local code = curl(("%s %s %s"):format(ca, good, url))
    assert.is_true(code:match("^403") ~= nil or code:match("^000") ~= nil, code)
    codes403[#codes403 + 1] = code
    code = curl(("%s %s %s %s"):format(ca, stranger, good, url))
    assert.is_true(code:match("^403") ~= nil or code:match("^000") ~= nil, code)
    codes403[#codes403 + 1] = code
    -- TLS 1.1 and below refused at the handshake
    code = curl(("%s %s %s --tlsv1 --tls-max 1.1 %s"):format(ca, mine, good, url))
    assert.matches("^000", code)
    -- wrong or missing Basic credentials: 401
    assert.equal("401", (curl(("%s %s -u integrator:nope %s"):format(ca, mine, url))))
    assert.equal("401", (curl(("%s %s %s"):format(ca, mine, url))))
    -- all right: the label has no keys yet
    assert.equal("404", (curl(("%s %s %s %s"):format(ca, mine, good, url))))
    local log = serve.read(srv.log)
    assert.matches("GET /key%-mgmt/session%-keys/keys/sessionKeyLabel=X 401", log)
    assert.matches("GET /key%-mgmt/session%-keys/keys/sessionKeyLabel=X 404", log)
    -- the refusals payhsm.http gives before any handler (403) are logged too, one line each
    -- (a connection refused at the handshake instead has no request to log)
    local refused = 0
    for line in log:gmatch("[^\n]+") do
      if line:match("^%d%d%d%d%-%d%d%-%d%dT%S+ GET /key%-mgmt/session%-keys/keys/sessionKeyLabel=X 403 %- %(no client certificate") then
        refused = refused + 1
      end
    end
    local answered403 = 0
    for _, c in ipairs(codes403) do if c == "403" then answered403 = answered403 + 1 end end
    assert.equal(answered403, refused)
  end)

  it("decodes a label in the path exactly once: a label X%41 is imported and listed over HTTPS", function()
    -- libmicrohttpd percent-decodes the path; the client percent-encodes what it puts there
    local ldb = os.tmpname()
    local srv = serve.start("gateway", config(keys, ldb))
    finally(function()
      srv.stop() srv.cleanup()
      os.remove(ldb) os.remove(ldb .. "-wal") os.remove(ldb .. "-shm")
    end)
    local c = new_client(keys, srv.port)
    local res = assert(c:rotate("PAN", "X%41"))
    local other = assert(c:rotate("PAN", "DEK A/1?#%2F"))
    local list = assert(c:get_keys("X%41"))
    assert.equal(1, #list)
    assert.equal("X%41", list[1].sessionKeyLabel)
    assert.equal(res.key:kcv("CMAC"), list[1].sessionKeyCheckValue)
    assert.equal("X%41", assert(c:get_key(res.sessionKeyId)).sessionKeyLabel)
    assert.equal("DEK A/1?#%2F", assert(c:get_keys("DEK A/1?#%2F"))[1].sessionKeyLabel)
    assert.equal(other.sessionKeyId, assert(c:get_keys("DEK A/1?#%2F"))[1].sessionKeyId)
    -- "XA" is another label; the wire path ...=X%41 (what curl sends as is) is the label "XA"
    assert.equal("3921", select(3, c:get_keys("XA")))
    c:close()
    local url = ("https://127.0.0.1:%d/key-mgmt/session-keys/keys/sessionKeyLabel="):format(srv.port)
    local args = ("--cacert %s --cert %s --key %s -u integrator:pa55word "):format(keys.path("ca.pem"),
      keys.path("client.pem"), keys.path("client.key"))
    assert.equal("200", (curl(args .. url .. "X%2541")))
    assert.equal("404", (curl(args .. url .. "X%41")))
    -- the log shows the decoded path with anything unprintable escaped (one line per request)
    assert.matches("GET /key%-mgmt/session%-keys/keys/sessionKeyLabel=DEK%%20A/1%?#%%2F 200", serve.read(srv.log))
  end)

  it("imports, rotates and transacts over keep-alive HTTPS, logging one line per request and no secrets", function()
    local srv = serve.start("gateway", config(keys, db))
    finally(function() srv.stop() srv.cleanup() end)
    local c = new_client(keys, srv.port)
    local clear = {}
    local last
    for n = 1, 4 do
      last = assert(c:rotate("PAN", "DEK_SERVE"))
      assert.equal(tostring(1001 + (n - 1) % 3), last.sessionKeyId)
      clear[#clear + 1] = last.key:export()
    end
    local doc = assert(c:reencrypt_pan(last, last.key, "4111111111111111"))
    assert.equal("panReencryptionResponse", doc.type)
    gateway_kcv = doc.gatewayKeyCheckValue
    local _, msg, code = c:import("PAN", "DEK_SERVE", last.key)
    assert.equal("301", code, msg)
    c:close()
    local log = serve.read(srv.log)
    local lines = 0
    for line in log:gmatch("[^\n]+") do
      if line:match("^%d%d%d%d%-%d%d%-%d%dT") then lines = lines + 1 end
    end
    assert.equal(4 + 1 + 1, lines) -- four imports, one transaction, one duplicate
    assert.matches("POST /key%-management/keys/import 409", log)
    for _, secret in ipairs { ZMK_PAN, ZMK_PIN, "pa55word", table.unpack(clear) } do
      assert.not_matches(secret, log, 1, true)
    end
    -- the sqlite file holds the session keys only wrapped
    local f = assert(io.open(db, "rb"))
    local bytes = f:read("*a")
    f:close()
    local w = io.open(db .. "-wal", "rb")
    if w then bytes = bytes .. w:read("*a") w:close() end
    for _, k in ipairs(clear) do
      assert.not_matches(k, bytes, 1, true)
      assert.not_matches(k:lower(), bytes, 1, true)
    end
  end)

  it("keeps its own random PAN key across a restart (sqlite)", function()
    assert.is_string(gateway_kcv) -- from the test above, on the same database
    local db2 = os.tmpname()
    local srv, srv2
    finally(function()
      srv.stop() srv.cleanup()
      if srv2 then srv2.stop() srv2.cleanup() end
      os.remove(db2) os.remove(db2 .. "-wal") os.remove(db2 .. "-shm")
    end)
    srv = serve.start("gateway", config(keys, db))
    local c = new_client(keys, srv.port)
    local k = assert(c:rotate("PAN", "DEK_SERVE"))
    local doc = assert(c:reencrypt_pan(k, k.key, "4111111111111111"))
    c:close()
    assert.equal(gateway_kcv, doc.gatewayKeyCheckValue)
    -- and a gateway on a new database (same config) has another one
    srv2 = serve.start("gateway", config(keys, db2))
    local c2 = new_client(keys, srv2.port)
    k = assert(c2:rotate("PAN", "DEK_SERVE"))
    local doc2 = assert(c2:reencrypt_pan(k, k.key, "4111111111111111"))
    c2:close()
    assert.not_equal(gateway_kcv, doc2.gatewayKeyCheckValue)
  end)

  it("keeps every import it answered 200 across SIGKILL and restart (sqlite)", function()
    local later = defer(finally)
    local kdb = os.tmpname()
    local base = os.tmpname()
    later(function() os.remove(kdb) os.remove(kdb .. "-wal") os.remove(kdb .. "-shm") end)
    later(function() serve.remove_files(base) end)
    local answered = {} -- {id=, kcv=} in order
    local starts = 0
    math.randomseed(os.time())
    for round = 1, 3 do
      local srv = serve.start("gateway", config(keys, kdb), { base = base, previous_starts = starts })
      later(srv.kill9)
      starts = starts + 1
      local c = new_client(keys, srv.port)
      local inflight = 0
      for n = 1, 100000 do
        local key = c:generate("PAN")
        local res = c:import("PAN", "DEK_CRASH", key)
        if not res then inflight = 1 break end
        answered[#answered + 1] = { id = res.sessionKeyId, kcv = key:kcv("CMAC") }
        if n == 1 then
          -- a killer in the background, armed once this round has an answered import (a slow
          -- client, under valgrind, may not finish its handshake within the delay): SIGKILL
          -- after a random 50-400 ms, mid-stream
          os.execute(("(sleep 0.%03d; kill -9 %s) >/dev/null 2>&1 &"):format(math.random(50, 400), srv.pid))
        end
      end
      assert.equal(1, inflight, "the server was not killed in round " .. round)
      c:close()
      os.execute("sleep 0.05")
      assert.is_false(srv.alive())
      -- restart and compare the slot table with the answered imports
      local srv2 = serve.start("gateway", config(keys, kdb), { base = base, previous_starts = starts })
      later(srv2.stop)
      starts = starts + 1
      local c2 = new_client(keys, srv2.port)
      local list = assert(c2:get_keys("DEK_CRASH"))
      table.sort(list, function(a, b) return a.version > b.version end)
      local versions = {}
      for _, k in ipairs(list) do versions[#versions + 1] = k.version end
      assert.same(#list == 3 and { "3.0", "2.0", "1.0" } or #list == 2 and { "3.0", "2.0" } or { "3.0" }, versions)
      -- the newest key is either the last answered import or one whose answer was lost
      local skip = list[1].sessionKeyCheckValue == answered[#answered].kcv and 0 or 1
      for i = 1 + skip, #list do
        local want = answered[#answered - (i - 1 - skip)]
        assert.equal(want.kcv, list[i].sessionKeyCheckValue)
        assert.equal(want.id, list[i].sessionKeyId)
        local one = assert(c2:get_key(want.id))
        assert.equal(want.kcv, one.sessionKeyCheckValue)
      end
      if skip == 1 then
        -- the lost answer's key is in the table: record it as the client's Get Keys would
        answered[#answered + 1] = { id = list[1].sessionKeyId, kcv = list[1].sessionKeyCheckValue }
      end
      c2:close()
      srv2.stop()
      os.execute("sleep 0.05")
    end
    assert.is_true(#answered > 3)
  end)

  it("keeps one consistent slot table when two gateway processes import concurrently (redis)", function()
    local later = defer(finally)
    local url, stop_redis = require("spec.support.redis").start()
    later(stop_redis)
    local cfg = ([[{
      listen = "127.0.0.1:0",
      basic_auth = { integrator = "pa55word" },
      store = { backend = "redis", url = %q },
      master_keys = { { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = %q } },
    }]]):format(url, ZMK_PAN)
    local a, b = serve.start("gateway", cfg), serve.start("gateway", cfg)
    later(function() a.stop() b.stop() a.cleanup() b.cleanup() end)
    local N = 60
    local outs = {}
    for i, srv in ipairs { a, b, a, b } do
      outs[i] = os.tmpname()
      os.execute(("lua5.4 spec/support/gateway_importer.lua %d DEK_SHARED %d %s > %s 2>&1 &"):format(srv.port, N,
        ZMK_PAN, outs[i]))
    end
    local answered, per_id, kcvs = 0, {}, {}
    for i = 1, #outs do
      local lines
      for _ = 1, 1500 do -- each worker writes N lines, then exits
        lines = {}
        for l in io.lines(outs[i]) do lines[#lines + 1] = l end
        if #lines >= N then break end
        os.execute("sleep 0.02")
      end
      assert.equal(N, #lines, table.concat(lines, "\n"))
      for _, l in ipairs(lines) do
        local id, kcv = l:match("^(%d+) (%x+)$")
        assert.is_string(id, l)
        answered = answered + 1
        per_id[id] = (per_id[id] or 0) + 1
        kcvs[kcv] = true
      end
      os.remove(outs[i])
    end
    -- every import was answered, and the k-th import overall went to ID 1001 + (k-1) % 3:
    -- with no lost update the IDs were handed out exactly round-robin
    assert.equal(4 * N, answered)
    -- (which three IDs depends on which process created the label first)
    local counts = {}
    for _, count in pairs(per_id) do counts[#counts + 1] = count end
    assert.same({ 4 * N / 3, 4 * N / 3, 4 * N / 3 }, counts)
    -- both processes see the same table: versions 1..3, one active, keys that were imported
    local function table_from(srv)
      local c = client_mod.new { http = { host = "127.0.0.1", port = srv.port }, user = "integrator",
        password = "pa55word" }
      local list = assert(c:get_keys("DEK_SHARED"))
      c:close()
      table.sort(list, function(x, y) return x.sessionKeyId < y.sessionKeyId end)
      return list
    end
    local ta, tb = table_from(a), table_from(b)
    assert.same(ta, tb)
    -- and on the gateway's own PAN key, generated once in the shared store
    local function plain(srv)
      return client_mod.new { http = { host = "127.0.0.1", port = srv.port }, user = "integrator", password = "pa55word",
        zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = hsm.key.import("AES_256", ZMK_PAN) } } }
    end
    local ca, cb = plain(a), plain(b)
    local k = assert(ca:rotate("PAN", "DEK_AGREE"))
    local da = assert(ca:reencrypt_pan(k, k.key, "4111111111111111"))
    local dbb = assert(cb:reencrypt_pan(k, k.key, "4111111111111111"))
    ca:close() cb:close()
    assert.equal(da.gatewayKeyCheckValue, dbb.gatewayKeyCheckValue)
    local versions = {}
    for _, k in ipairs(ta) do
      versions[#versions + 1] = k.version
      assert.is_true(kcvs[k.sessionKeyCheckValue])
    end
    table.sort(versions)
    assert.same({ "1.0", "2.0", "3.0" }, versions)
  end)
end)
