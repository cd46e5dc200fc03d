-- Secrets (issue 8): clear key bytes never appear in results, error messages, tostring,
-- stdout/stderr, the log of `bin/payhsm serve gateway` or its sqlite files; a closed key
-- is unusable. Keys are "marked" (spec/support/marked.lua): values that cannot occur by
-- chance, searched for as any 8 consecutive bytes, hex in either case or raw.
--
-- Limits: scenarios generate most of their keys at random and print what they print;
-- only the keys they import from literal hex (found by reading scenarios/*.lua) are
-- searched for in their output, as whole keys (they are published test keys whose halves
-- are common data patterns). Wiping is checked from Lua (closed keys refuse every use);
-- that the C memory is zeroed is not observable without a test-only hook in the library,
-- which this spec does not add (csrc/key.c: OPENSSL_secure_clear_free / OPENSSL_cleanse).
local hsm = require "payhsm"
local marked = require "spec.support.marked"
local serve = require "spec.support.serve"

local ENV = "env -u LD_PRELOAD LUA_PATH='./?.lua;./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build/?.so;;' "

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function run(cmd)
  local p = io.popen(ENV .. cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

describe("secrets", function()
  describe("the scanner", function()
    it("finds a marked key however it leaks, and nothing in unrelated hex", function()
      local hex = marked.hex(32, "EE", "scanner self-test")
      local k = hsm.key.import("AES_256", hex)
      assert.is_nil(marked.leak("ciphertext " .. hsm.cipher.encrypt(k, "ECB", ("00"):rep(16)), { [hex] = "t" }))
      assert.is_string(marked.leak("x" .. k:export() .. "y", { [hex] = "t" }))
      assert.is_string(marked.leak(k:export():lower():sub(9, 24), { [hex] = "t" }))
      local raw = k:export():sub(17, 40):gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end)
      assert.is_string(marked.leak("\0\1" .. raw, { [hex] = "t" }))
      assert.is_nil(marked.leak(hex:sub(1, 14), { [hex] = "t" })) -- 7 bytes: below the threshold
      assert.is_string(marked.leak(hex:lower(), { [hex] = "t" }, true))
      assert.is_nil(marked.leak(hex:sub(1, 62), { [hex] = "t" }, true))
    end)
  end)

  describe("core operations", function()
    it("return, raise and print nothing that holds a clear key (in process)", function()
      local n, leaks = 0, {}
      require("spec.support.secret_ops")(function(label, value)
        n = n + 1
        local l = marked.leak(value)
        if l then leaks[#leaks + 1] = label .. ": " .. l end
      end)
      assert.is_true(n > 500, "only " .. n .. " values")
      assert.same({}, leaks)
    end)

    it("print nothing that holds a clear key on stdout or stderr (own process)", function()
      local out, ok = run([[lua5.4 -e 'require("spec.support.secret_ops")(function(l, v) print(l, v) io.stderr:write(l, "\n") end)']])
      assert.is_true(ok, out)
      assert.is_true(#out > 10000)
      assert.matches("payhsm.Key%(AES_128, usage P0", out)
      assert.is_nil(marked.leak(out))
    end)

    it("tostring shows algorithm, usage and check value only", function()
      for _, c in ipairs { { "DES", 8 }, { "TDES_2KEY", 16 }, { "TDES_3KEY", 24 }, { "AES_128", 16 }, { "AES_192", 24 },
        { "AES_256", 32 }, { "HMAC_SHA256", 32 }, { "HMAC_SHA512", 100 } } do
        local hex = marked.hex(c[2], "E2", "tostring " .. c[1])
        local k = hsm.key.import(c[1], hex)
        assert.matches("^payhsm%.Key%(" .. c[1] .. ", usage any, KCV %x%x%x%x%x%x%)$", tostring(k))
        assert.is_nil(marked.leak(tostring(k), { [hex] = c[1] }))
      end
    end)
  end)

  describe("scenarios", function()
    -- the keys scenarios import from literal hex (directly or through a local string)
    local function literal_keys(src, into)
      for hex in src:gmatch('key%.import%(%s*"[%w_]+"%s*,%s*"(%x+)"') do into[hex:upper()] = true end
      for name in src:gmatch('key%.import%(%s*"[%w_]+"%s*,%s*([%a_][%w_]*)%s*[,)]') do
        local hex = src:match("local%s+" .. name .. '%s*=%s*"(%x+)"')
        if hex then into[hex:upper()] = true end
      end
    end

    local files, keys = {}, {}
    for f in io.popen("ls scenarios/*.lua"):lines() do
      files[#files + 1] = f
      literal_keys(read(f), keys)
    end
    local list = {}
    for hex in pairs(keys) do list[hex] = "literal key " .. hex:sub(1, 8) .. "... in scenarios/" end

    it("import fixed keys we can look for", function()
      assert.is_true(#files >= 5)
      local n = 0
      for hex in pairs(keys) do
        n = n + 1
        assert.is_true(#hex >= 16, hex)
      end
      assert.is_true(n >= 4, "found " .. n .. " literal keys")
      -- positive control: the scan finds them where they are meant to be, in the sources
      assert.is_string(marked.leak(read("scenarios/core_tour.lua"), list, true))
    end)

    for _, f in ipairs(files) do
      it(f .. " prints none of them", function()
        local out, ok = run("lua5.4 " .. f)
        assert.is_true(ok, out)
        assert.is_nil(marked.leak(out, list, true))
      end)
    end
  end)

  describe("payhsm serve gateway", function()
    local ZMK_PAN, ZMK_PIN = marked.hex(32, "D0", "gateway ZMK_PAN"), marked.hex(32, "D2", "gateway ZMK_PIN")
    local master_keys = {
      { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = ZMK_PAN },
      { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = ZMK_PIN },
    }

    it("logs and stores no clear key: master keys, derived keys, session keys", function()
      local db = os.tmpname()
      local out = os.tmpname()
      local later = require("spec.support.defer")(finally)
      later(function()
        for _, p in ipairs { db, db .. "-wal", db .. "-shm", db .. "-journal", out } do os.remove(p) end
      end)
      -- the local master key the gateway derives from its config (no storage_key)
      local secrets = { [ZMK_PAN] = "ZMK_PAN", [ZMK_PIN] = "ZMK_PIN" }
      local twin = require("payhsm.gateway").new { master_keys = master_keys, basic_auth = { integrator = "pa55word" } }
      secrets[twin.lmk:export()] = "gateway local master key"

      -- serve.start has no stdout option: the redirection inside the system word sends the
      -- server's stdout to a file scanned too (its stderr is the log)
      local srv = serve.start("gateway >> " .. out, ([[{
        listen = "127.0.0.1:0",
        basic_auth = { integrator = "pa55word" },
        store = { backend = "sqlite", path = %q },
        master_keys = {
          { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = %q },
          { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = %q },
        },
      }]]):format(db, ZMK_PAN, ZMK_PIN))
      later(function() srv.stop() srv.cleanup() end)
      -- the gateway's own PAN and PIN keys are random, made at its first start and kept in
      -- its store under the LMK: a second gateway on the same database reads the real ones
      local own_pan_kcv
      do
        local store = require("payhsm.store.sqlite").new { path = db }
        local reader = require("payhsm.gateway").new { master_keys = master_keys, store = store,
          basic_auth = { integrator = "pa55word" } }
        assert.equal(twin.lmk:kcv("CMAC"), reader.lmk:kcv("CMAC"))
        assert.not_equal(twin.gw_pan:kcv("CMAC"), reader.gw_pan:kcv("CMAC")) -- not derivable from the config
        own_pan_kcv = reader.gw_pan:kcv("CMAC")
        secrets[reader.gw_pan:export()] = "gateway PAN key"
        secrets[reader.gw_pin:export()] = "gateway PIN key"
        store:close()
      end

      local c = require("payhsm.gateway.client").new {
        http = { host = "127.0.0.1", port = srv.port, timeout = 5 },
        user = "integrator", password = "pa55word",
        zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = hsm.key.import("AES_256", ZMK_PAN) },
                 PIN = { label = "ZMK_PIN_XXX_YYY", key = hsm.key.import("AES_256", ZMK_PIN) } },
      }
      local last
      for n = 1, 4 do
        last = assert(c:rotate("PAN", "DEK_SECRETS"))
        secrets[last.key:export()] = "PAN session key " .. n
      end
      local pin = assert(c:rotate("PIN", "PEK_SECRETS"))
      secrets[pin.key:export()] = "PIN session key"
      local reenc = assert(c:reencrypt_pan(last, last.key, "4111111111111111"))
      assert.equal(own_pan_kcv, reenc.gatewayKeyCheckValue) -- the scan looks for the key in use
      local zpk = hsm.key.import("AES_128", pin.key:export(), { usage = "P0" })
      assert(c:translate_pin(pin, zpk, "1234", "4111111111111111"))
      -- refusals: the same key again, a wrong check value, a tampered block, bad credentials
      assert.equal("301", select(3, c:import("PAN", "DEK_SECRETS", last.key)))
      local req = c:import_request("PAN", "DEK_SECRETS", last.key)
      local doc = require("cjson").decode(require("payhsm.util").json(req))
      doc.sessionKeyCheckValue = "000000"
      assert.equal("3907", select(3, c:call("POST", "/key-management/keys/import", doc)))
      doc.sessionKey = doc.sessionKey:sub(1, -2) .. (doc.sessionKey:sub(-1) == "0" and "1" or "0")
      assert.equal("3904", select(3, c:call("POST", "/key-management/keys/import", doc)))
      c.auth = "Basic " .. require("payhsm.util").b64encode("integrator:" .. ZMK_PAN)
      assert.equal("401", select(3, c:get_keys("DEK_SECRETS")))
      c:close()

      local function scan(what, bytes)
        local l = marked.leak(bytes, secrets)
        assert.is_nil(l, what .. ": " .. tostring(l))
      end
      -- positive control: the config file holds the master keys, and the scan sees them
      assert.is_string(marked.leak(read(srv.config), secrets))
      local log = serve.read(srv.log)
      assert.matches("POST /key%-management/keys/import 200", log)
      assert.matches("POST /key%-management/keys/import 409", log)
      scan("log", log)
      scan("stdout", read(out))
      assert.is_true(#read(db) > 0)
      scan("sqlite db (running)", read(db) .. read(db .. "-wal") .. read(db .. "-shm"))
      srv.stop()
      for _ = 1, 100 do
        if not srv.alive() then break end
        os.execute("sleep 0.02")
      end
      scan("log after stop", serve.read(srv.log))
      scan("sqlite db (stopped)", read(db) .. read(db .. "-wal") .. read(db .. "-shm") .. read(db .. "-journal"))
    end)

    it("refuses a broken master key without printing it", function()
      local cfg = os.tmpname()
      finally(function() os.remove(cfg) end)
      for _, hex in ipairs { ZMK_PAN:sub(1, 62), ZMK_PAN .. "ZZ", ZMK_PAN:sub(1, 63) } do
        local f = assert(io.open(cfg, "w"))
        f:write(([[return { listen = "127.0.0.1:0", basic_auth = { integrator = "pa55word" },
          store = { backend = "memory" },
          master_keys = { { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = %q } } }]]):format(hex))
        f:close()
        local out, ok = run("timeout 10 bin/payhsm serve gateway --config " .. cfg)
        assert.is_falsy(ok)
        assert.matches("master_keys%[1%]", out)
        assert.is_nil(marked.leak(out, { [ZMK_PAN] = "ZMK_PAN" }))
      end
    end)
  end)

  describe("closed keys", function()
    it("refuse every use and show only that they are closed", function()
      for _, c in ipairs { { "TDES_2KEY", 16, { usage = "D0" } }, { "AES_256", 32, { usage = "K1", mode = "B" } },
        { "HMAC_SHA256", 32, { usage = "M7" } } } do
        local hex = marked.hex(c[2], "E4", "closed " .. c[1])
        local k = hsm.key.import(c[1], hex, c[3])
        local kbpk = k.usage == "K1" and k
        if kbpk then assert(hsm.tr31.wrap(kbpk, hsm.key.generate("AES_128", { usage = "P0", mode = "E" }), {})) end
        assert.is_false(k.closed)
        k:close()
        assert.is_true(k.closed)
        assert.equal(("payhsm.Key(%s, closed)"):format(c[1]), tostring(k))
        assert.equal(c[1], k.algorithm)
        for _, f in ipairs {
          function() return k:kcv() end,
          function() return k:export() end,
          function() return hsm.kcv(k) end,
          function() return hsm.cipher.encrypt(k, "ECB", ("00"):rep(16)) end,
          function() return hsm.mac.generate(k, "HMAC", "00") end,
          function() return hsm.hmac(k, "m") end,
          function() return hsm.tr31.wrap(k, hsm.key.generate("AES_128", { usage = "P0", mode = "E" }), {}) end,
          function() return hsm.tr31.wrap(hsm.key.generate("AES_256", { usage = "K1" }), k, { mode = "B" }) end,
          function() return hsm.envelope.seal(k, "x") end,
          function() return hsm.key.derive(k, "AES_128", "l", "c") end,
        } do
          assert.has_error(f, "key has been closed")
        end
        assert.has_no_error(function() k:close() end) -- closing twice is harmless
      end
    end)

    it("are closed by <close> at the end of their scope (Lua 5.4)", function()
      if _VERSION ~= "Lua 5.4" then return end -- <close> is 5.4 syntax
      local kept = assert(load([[
        local hsm, hex = ...
        local kept
        do
          local k <close> = hsm.key.import("AES_128", hex)
          kept = k
          assert(not k.closed)
        end
        return kept]]))(hsm, marked.hex(16, "E6", "closed scope"))
      assert.is_true(kept.closed)
      assert.has_error(function() kept:kcv() end, "key has been closed")
    end)
  end)
end)
