-- Secrets: clear key bytes never appear in results, error messages, tostring,
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
local clear = require "spec.support.clear" -- the bytes of non-exportable (N) keys too

-- The integrator's client for a served gateway whose two zone master keys are pan_hex and pin_hex.
local function gateway_client(port, pan_hex, pin_hex)
  return require("payhsm.gateway.client").new {
    http = { host = "127.0.0.1", port = port, timeout = 5 },
    user = "integrator", password = "pa55word",
    zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = hsm.key.import("AES_256", pan_hex) },
             PIN = { label = "ZMK_PIN_XXX_YYY", key = hsm.key.import("AES_256", pin_hex) } },
  }
end

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
      secrets[clear(twin.lmk)] = "gateway local master key"

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
        secrets[clear(reader.gw_pan)] = "gateway PAN key"
        secrets[clear(reader.gw_pin)] = "gateway PIN key"
        store:close()
      end

      local c = gateway_client(srv.port, ZMK_PAN, ZMK_PIN)
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

  describe("a config file with a syntax error", function()
    it("is reported without the key values near the error (runs of 16+ hex digits redacted)", function()
      local ZMK_PAN = marked.hex(32, "D4", "config ZMK")
      local cfg = os.tmpname()
      finally(function() os.remove(cfg) end)
      for _, broken in ipairs {
        -- a missing closing quote: Lua's message quotes the unfinished string
        ('return { master_keys = { { hex = "%s } } }'):format(ZMK_PAN),
        -- an error raised while the chunk runs, with the value in its text
        ('error("bad key %s")'):format(ZMK_PAN),
        -- a key value where a name goes
        ('return { %s = 1 }'):format("k" .. ZMK_PAN),
      } do
        local f = assert(io.open(cfg, "w"))
        f:write(broken)
        f:close()
        local out, ok = run("timeout 10 bin/payhsm serve gateway --config " .. cfg)
        assert.is_falsy(ok)
        assert.matches("config", out)
        assert.is_nil(marked.leak(out, { [ZMK_PAN] = "ZMK_PAN" }), out)
        assert.is_nil(out:find(ZMK_PAN:sub(1, 16), 1, true), out)
      end
    end)
  end)

  -- ---- the other servers, the redis stores and the CLI ------------------------------
  -- These start processes under the interpreter and build of this run (spec/support/interp.lua).
  local interp = require "spec.support.interp"
  local cjson = require "cjson"

  -- Runs a shell command with bin/payhsm's LUA and PAYHSM_BUILD; returns stdout, exit
  -- code, stderr.
  local function sh(cmd, stdin)
    local errf = os.tmpname()
    local full = "export " .. interp.env .. "; " .. cmd .. " 2>" .. errf
    local inf
    if stdin then
      inf = os.tmpname()
      local f = assert(io.open(inf, "wb"))
      f:write(stdin)
      f:close()
      full = full .. " <" .. inf
    end
    local p = io.popen(full)
    local out = p:read("a")
    local _, _, rc = p:close()
    local err = read(errf)
    os.remove(errf)
    if inf then os.remove(inf) end
    return out, rc, err
  end

  local function scanner(secrets)
    return function(what, bytes)
      local l = marked.leak(bytes, secrets)
      assert.is_nil(l, what .. ": " .. tostring(l))
    end
  end

  local function wait_stopped(srv)
    srv.stop()
    for _ = 1, 150 do
      if not srv.alive() then return end
      os.execute("sleep 0.02")
    end
  end

  local function sqlite_files(db)
    return read(db) .. read(db .. "-wal") .. read(db .. "-shm") .. read(db .. "-journal")
  end

  local function remove_sqlite(db)
    for _, p in ipairs { db, db .. "-wal", db .. "-shm", db .. "-journal" } do os.remove(p) end
  end

  -- Every key of a redis database with its value (strings, hashes, lists, sets, sorted
  -- sets), as one text to scan; also the number of keys.
  local function redis_dump(port)
    local conn = assert(require("payhsm.redis").connect("127.0.0.1", port, 2000))
    local keys = assert(conn:command("KEYS", "*"))
    local parts = {}
    for _, k in ipairs(keys) do
      local t = conn:command("TYPE", k)
      local v
      if t == "string" then v = { (conn:command("GET", k)) }
      elseif t == "hash" then v = conn:command("HGETALL", k)
      elseif t == "list" then v = conn:command("LRANGE", k, 0, -1)
      elseif t == "set" then v = conn:command("SMEMBERS", k)
      elseif t == "zset" then v = conn:command("ZRANGE", k, 0, -1, "WITHSCORES")
      else v = {} end
      parts[#parts + 1] = k .. "\n" .. tostring(t) .. "\n"
      for _, x in ipairs(v or {}) do parts[#parts + 1] = tostring(x) .. "\n" end
    end
    conn:close()
    return table.concat(parts), #keys, keys
  end

  -- ---- POS ------------------------------------------------------------------------------
  local pos_mod = require "payhsm.pos.server"
  local device_mod = require "payhsm.pos.device"
  local P = require "payhsm.pos.protocol"
  local POS = {
    dev = "POS-5EC8E701",
    zmk = marked.hex(32, "B0", "POS device ZMK"),
    dak = marked.hex(32, "B1", "POS device attestation key"),
    lmk = marked.hex(32, "B2", "POS storage key (LMK)"),
    imk = marked.hex(16, "B3", "POS issuer master key"),
    kbpk = marked.hex(32, "B4", "POS registration KBPK"),
    wrong_dak = marked.hex(32, "B5", "wrong attestation key"),
  }
  local POS_CARD = pos_mod.TEST_ISSUER.cards[1]

  local function pos_config(store)
    return ([[{
      listen = "127.0.0.1:0",
      store = %s,
      storage_key = { hex = %q },
      registration_kbpk = { hex = %q },
      basic_auth = { operator = "0per4tor" },
      issuer = { imk = %q, cards = { { pan = %q, psn = %q, pin = "1234", limit = 100000 } } },
      devices = { { device_id = %q, zmk = %q, attestation_key = %q } },
    }]]):format(store, POS.lmk, POS.kbpk, POS.imk, POS_CARD.pan, POS_CARD.psn, POS.dev, POS.zmk, POS.dak)
  end

  -- The secrets a POS server holds: its configured keys and the HMAC index key it
  -- derives from the storage key (lua/payhsm/pos/server.lua, M.new).
  local function pos_secrets()
    local s = {}
    for name, hex in pairs(POS) do if name ~= "dev" then s[hex] = "POS " .. name end end
    local kdk = hsm.key.import("AES_256", POS.lmk, { usage = "B0" })
    local index = hsm.key.derive(kdk, "HMAC_SHA256", "payhsm pos store index", "", { usage = "M7", mode = "C" })
    s[index:export()] = "POS store index key"
    return s
  end

  local function pos_device(port, dak)
    return device_mod.new {
      device_id = POS.dev,
      zmk = hsm.key.import("AES_256", POS.zmk, { usage = "K1", mode = "B" }),
      attestation_key = hsm.key.import("HMAC_SHA256", dak or POS.dak, { usage = "M7", mode = "C" }),
      http = { host = "127.0.0.1", port = port, timeout = 5 },
    }
  end

  -- The spec is the device: a full flow (activation, two key sets, charges, refund,
  -- cancel, a retry) and refusals (bad token, wrong attestation key, tampered envelope,
  -- bad signature, replay). The clear keys of both key sets the server issued and the
  -- tokens go into secrets.
  local function pos_flow(port, secrets)
    local d = pos_device(port)
    local function learn(what)
      for name, k in pairs(d.keys) do secrets[clear(k)] = what .. " " .. name end
    end
    assert.equal("active", (assert(d:activate_all())).status)
    secrets[d.token:sub(5)] = "attestation token 1"
    learn("key set 1")
    local card = device_mod.card { pan = POS_CARD.pan, psn = POS_CARD.psn, imk = hsm.key.import("TDES_2KEY", POS.imk),
      atc = os.time() % 30000 }
    local ch = assert(d:charge { amount = 1250, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
    assert.equal("approved", ch.status)
    assert.is_true(ch.arpc_ok)
    assert.equal("refunded", (assert(d:refund(ch.charge_id))).status)
    assert.equal("4091", select(3, d:refund(ch.charge_id)))
    -- a second key set (what a renewal does), then a charge, its retry and a cancel under it
    assert(d:attest())
    secrets[d.token:sub(5)] = "attestation token 2"
    assert(d:download_keys())
    learn("key set 2")
    assert(d:activate())
    local ch2 = assert(d:charge { amount = 300, card = card, pin = "1234" })
    assert.equal(ch2.charge_id, (assert(d:retry_last())).charge_id)
    assert.equal("cancelled", (assert(d:cancel(ch2.charge_id))).status)
    assert.equal("4004", select(3, d:replay_last()))
    -- refusals
    local token = d.token
    d.token = "att_" .. ("5e"):rep(16)
    assert.equal("4001", select(3, d:download_keys()))
    d.token = token
    local wrong = pos_device(port, POS.wrong_dak)
    assert.equal("4002", select(3, wrong:attest()))
    wrong:close()
    local real = d.transport
    local tamper
    d.transport = function(req)
      local h = req.headers
      if tamper == "envelope" and req.body ~= "" then
        -- flip a ciphertext digit and sign the altered body: the MAC passes, the MSK cannot open it
        local env = cjson.decode(req.body)
        env.ciphertext = (env.ciphertext:sub(1, 1) == "0" and "1" or "0") .. env.ciphertext:sub(2)
        req.body = cjson.encode(env)
        h[P.H.signature] = hsm.hmac(d.keys.mac, d.signature == "bound" and P.request_signing_string(req.method,
          req.path, h[P.H.device], h[P.H.key_set], h[P.H.timestamp], h[P.H.nonce], req.body)
          or P.body_signing_string(req.body))
      elseif tamper == "signature" then
        h[P.H.signature] = ("00"):rep(32)
      end
      return real(req)
    end
    tamper = "envelope"
    assert.equal("4220", select(3, d:charge { amount = 500, card = card, pin = "1234" }))
    tamper = "signature"
    assert.equal("4003", select(3, d:fetch_config()))
    tamper = nil
    assert(d:fetch_config())
    d:close()
  end

  describe("payhsm serve pos", function()
    it("logs, prints and stores no clear key: configured keys, issued key sets, tokens", function()
      local later = require("spec.support.defer")(finally)
      local db = os.tmpname()
      later(function() remove_sqlite(db) end)
      local srv = serve.start("pos", pos_config(("{ backend = \"sqlite\", path = %q }"):format(db)))
      later(function() srv.stop() srv.cleanup() end)
      local secrets = pos_secrets()
      pos_flow(srv.port, secrets)
      local n = 0
      for _ in pairs(secrets) do n = n + 1 end
      assert.is_true(n >= 7 + 12 + 2, "only " .. n .. " secrets")
      local scan = scanner(secrets)
      -- positive control: the config file holds the configured keys, and the scan sees them
      assert.is_string(marked.leak(read(srv.config), secrets))
      local log = serve.read(srv.log)
      for _, p in ipairs { "/pos/keys 200", "/pos/keys 401", "/pos/attest 401", "/pos/activate 200",
        "/pos/charge 200", "/pos/charge 422", "/pos/config 401", "/refund 200", "/refund 409", "/cancel 200" } do
        assert.matches("POST [^\n]*" .. p, log)
      end
      scan("log", log)
      scan("stdout", read(srv.base .. ".out"))
      assert.is_true(#read(db) > 0)
      scan("sqlite store (running)", sqlite_files(db))
      wait_stopped(srv)
      scan("log after stop", serve.read(srv.log))
      scan("sqlite store (stopped)", sqlite_files(db))
    end)
  end)

  -- ---- multi-use public keys -----------------------------------------------------------
  local MUPK_LMK = marked.hex(32, "C0", "mupk storage key (LMK)")
  local MID = "123456789012345"

  local MUPK_PASSWORD = marked.hex(16, "C1", "mupk basic_auth password")
  local function mupk_config(store)
    return ([[{
      listen = "127.0.0.1:0",
      store = %s,
      basic_auth = { shop = %q },
      storage_key = { algorithm = "AES_256", hex = %q },
    }]]):format(store, MUPK_PASSWORD, MUPK_LMK)
  end

  local function tmpfile_bytes(bytes)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(bytes)
    f:close()
    return path
  end

  local function to_hex(bytes)
    return (bytes:gsub(".", function(c) return ("%02X"):format(c:byte()) end))
  end

  -- The private key of a stored record, recovered outside payhsm (payhsm has no function
  -- that returns private key bytes): OpenSSL's RFC 5649 unwrap under the configured LMK
  -- gives the PKCS#8 DER. Returns the DER hex, the hex of each private number (d, p, q,
  -- dP, dQ, qInv) and the DER SubjectPublicKeyInfo hex of the recovered key.
  local function recover_private(wrapped_hex)
    local wf = tmpfile_bytes((wrapped_hex:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end)))
    local der = os.tmpname()
    local function cleanup() os.remove(wf) os.remove(der) end
    local ok = os.execute(("env -u LD_PRELOAD openssl enc -d -id-aes256-wrap-pad -K %s -iv A65959A6 -in %s -out %s"
      .. " 2>/dev/null"):format(MUPK_LMK, wf, der))
    if not ok then cleanup() error("openssl could not unwrap the stored private key under the LMK") end
    local der_hex = to_hex(read(der))
    local p = io.popen(("env -u LD_PRELOAD openssl rsa -inform DER -in %s -text -noout 2>/dev/null"):format(der))
    local text = p:read("a")
    p:close()
    p = io.popen(("env -u LD_PRELOAD openssl pkey -inform DER -in %s -pubout -outform DER 2>/dev/null"):format(der))
    local spki = to_hex(p:read("a"))
    p:close()
    cleanup()
    local numbers = {}
    for _, name in ipairs { "privateExponent", "prime1", "prime2", "exponent1", "exponent2", "coefficient" } do
      local body = text:match(name .. ":%s*\n([%x:%s]+)")
      assert(body, "openssl rsa -text shows no " .. name)
      numbers[name] = (body:gsub("[%s:]", "")):upper()
    end
    return der_hex, numbers, spki
  end

  local function new_merchant(port)
    local merchant = require "payhsm.mupk.merchant"
    return merchant.new { merchant_id = MID, clock = os.time, auto_rotate = false, user = "shop",
      password = MUPK_PASSWORD, service = merchant.http_service { host = "127.0.0.1", port = port, timeout = 5 } }
  end

  -- Generate, a transaction decrypted, a revoke, a transaction refused for the revoked
  -- key, a second key and a transaction refused for a tampered tag. Returns the key ids.
  local function mupk_flow(port)
    local m = new_merchant(port)
    local k1 = assert(m:request_key())
    assert(m:capture { amount = 12.00, currency = "EUR", pan = "4005550000000019", exp_month = "01", exp_year = "2031" })
    local res = m:forward()
    assert.equal(201, res[1].status)
    assert.equal("CAPTURED", res[1].body.gatewayResponse.transactionState)
    assert(m:capture { amount = 5.00, currency = "EUR", pan = "4005550000000019", exp_month = "01", exp_year = "2031" })
    assert(m:revoke(k1.keyId))
    res = m:forward()
    assert.equal(422, res[1].status)
    assert.equal("1020", res[1].body.error[1].code)
    local k2 = assert(m:request_key())
    local tx = assert(m:capture { amount = 7.00, currency = "EUR", pan = "4005550000000019", exp_month = "01",
      exp_year = "2031" })
    local tag = tx.encryptionData.authenticationTag
    tx.encryptionData.authenticationTag = (tag:sub(1, 1) == "0" and "1" or "0") .. tag:sub(2)
    res = m:forward()
    assert.equal(422, res[1].status)
    assert.equal("1023", res[1].body.error[1].code)
    return { k1.keyId, k2.keyId }
  end

  -- The secrets of a mupk server after mupk_flow: its LMK and, per key pair (read from
  -- the store with get), the private numbers (searched for as any 8 bytes) and the
  -- whole PKCS#8 DER (searched for whole: its header and public half are not secret).
  local function mupk_secrets(get, ids)
    local secrets, ders = { [MUPK_LMK] = "mupk storage key", [MUPK_PASSWORD] = "mupk basic_auth password" }, {}
    local util = require "payhsm.util"
    for _, id in ipairs(ids) do
      local rec = cjson.decode((assert(get("mupk:key:" .. id), "no record for " .. id)))
      assert.is_string(rec.wrappedPrivateKey)
      local der, numbers, spki = recover_private(rec.wrappedPrivateKey)
      -- the key recovered is the pair the service published
      assert.equal(to_hex(util.b64decode(rec.encodedPublicKey)), spki)
      local mine = {}
      for name, hex in pairs(numbers) do
        secrets[hex] = "private " .. name .. " of key " .. id
        mine[hex] = name
      end
      assert.is_string(marked.leak(der, mine)) -- positive control: the numbers are in the DER
      ders[der] = "PKCS#8 private key of " .. id
    end
    return function(what, bytes)
      local l = marked.leak(bytes, secrets) or marked.leak(bytes, ders, true)
      assert.is_nil(l, what .. ": " .. tostring(l))
    end
  end

  describe("payhsm serve mupk", function()
    it("logs, prints and stores no clear private key and no storage key", function()
      local later = require("spec.support.defer")(finally)
      local db = os.tmpname()
      later(function() remove_sqlite(db) end)
      local srv = serve.start("mupk", mupk_config(("{ backend = \"sqlite\", path = %q }"):format(db)))
      later(function() srv.stop() srv.cleanup() end)
      local ids = mupk_flow(srv.port)
      local store = require("payhsm.store.sqlite").new { path = db }
      local ok, scan = pcall(mupk_secrets, function(k) return store:get(k) end, ids)
      store:close()
      assert(ok, scan)
      assert.is_string(marked.leak(read(srv.config), { [MUPK_LMK] = "LMK" })) -- positive control
      local log = serve.read(srv.log)
      assert.matches("POST /security/v1/keys/generate 201", log)
      assert.matches("POST /security/v1/keys/[%w-]+/revoke 201", log)
      assert.matches("POST /security/v1/transactions 201", log)
      assert.matches("POST /security/v1/transactions 422", log)
      scan("log", log)
      scan("stdout", read(srv.base .. ".out"))
      assert.is_true(#read(db) > 0)
      scan("sqlite store (running)", sqlite_files(db))
      wait_stopped(srv)
      scan("log after stop", serve.read(srv.log))
      scan("sqlite store (stopped)", sqlite_files(db))
    end)
  end)

  -- ---- AWS Payment Cryptography (serve aws) ----------------------------------------------
  describe("payhsm serve aws", function()
    local AWS_LMK = marked.hex(32, "B0", "aws storage key")
    local AWS_KEK = marked.hex(32, "B1", "aws KEK imported by key cryptogram")
    local AWS_WK = marked.hex(16, "B2", "aws working key imported by TR-31")
    local AWS_LONG = marked.hex(24, "B3", "aws key of the wrong length in a cryptogram")
    local AWS_K512 = marked.hex(16, "B4", "aws key imported by OAEP SHA-512 cryptogram")
    local AWS_SECRET = "aws-secret-" .. marked.hex(16, "B5", "aws secret access key")
    local function aws_config(store)
      return ([[{listen = "127.0.0.1:0", region = "us-east-1", account = "111122223333",
        credentials = {AKIDSECRETS = %q}, store = %s, storage_key = {algorithm = "AES_256", hex = %q}}]])
        :format(AWS_SECRET, store, AWS_LMK)
    end

    -- Imports the marked keys (cryptograms under the service's wrapping certificate,
    -- TR-31 under the imported KEK), exports one, and provokes refusals that handle key
    -- material: returns the text of every answer.
    local function aws_flow(port)
      local core = require "payhsm.core"
      local util = require "payhsm.util"
      local pc = require("payhsm.aws").new { endpoint = "http://127.0.0.1:" .. port, region = "us-east-1",
        access_key = "AKIDSECRETS", secret_key = AWS_SECRET }
      local answers = {}
      local function call(op, input)
        local out, err = pc:call(op, input)
        answers[#answers + 1] = cjson.encode(out or err)
        return out, err
      end
      local params = assert(call("GetParametersForImport", { KeyMaterialType = "KEY_CRYPTOGRAM",
        WrappingKeyAlgorithm = "RSA_2048" }))
      local wrapping = core.pki.parse(util.b64decode(params.WrappingKeyCertificate)).public_key
      local function cryptogram(hex, alg, digest)
        return core.pki.oaep_wrap(wrapping, hsm.key.import(alg, hex), digest)
      end
      local CIPHER = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true }
      local function attrs(usage, alg)
        return { KeyUsage = usage, KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = alg, KeyModesOfUse = CIPHER }
      end
      local kek = assert(call("ImportKey", { KeyMaterial = { KeyCryptogram = {
        KeyAttributes = attrs("TR31_K0_KEY_ENCRYPTION_KEY", "AES_256"), Exportable = true,
        WrappedKeyCryptogram = cryptogram(AWS_KEK, "AES_256", "SHA_256"), ImportToken = params.ImportToken } } }))
      assert(call("ImportKey", { KeyMaterial = { KeyCryptogram = {
        KeyAttributes = attrs("TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", "AES_128"), Exportable = false,
        WrappingSpec = "RSA_OAEP_SHA_512", WrappedKeyCryptogram = cryptogram(AWS_K512, "AES_128", "SHA_512"),
        ImportToken = params.ImportToken } } }))
      local kek_key = hsm.key.import("AES_256", AWS_KEK)
      local block = hsm.tr31.wrap(kek_key, hsm.key.import("AES_128", AWS_WK,
        { usage = "D0", mode = "B", exportability = "E" }), { version = "D" })
      local wk = assert(call("ImportKey", { KeyMaterial = { Tr31KeyBlock = {
        WrappingKeyIdentifier = kek.Key.KeyArn, WrappedKeyBlock = block } } }))
      assert(call("ExportKey", { ExportKeyIdentifier = wk.Key.KeyArn, KeyMaterial = { Tr31KeyBlock = {
        WrappingKeyIdentifier = kek.Key.KeyArn } } }))
      -- refusals: a flipped MAC byte, a key of the wrong length, a wrong token, a wrong KEK
      local flipped = block:sub(1, -2) .. (block:sub(-1) == "0" and "1" or "0")
      local _, e1 = call("ImportKey", { KeyMaterial = { Tr31KeyBlock = {
        WrappingKeyIdentifier = kek.Key.KeyArn, WrappedKeyBlock = flipped } } })
      local _, e2 = call("ImportKey", { KeyMaterial = { KeyCryptogram = {
        KeyAttributes = attrs("TR31_K0_KEY_ENCRYPTION_KEY", "AES_128"), Exportable = true,
        WrappedKeyCryptogram = cryptogram(AWS_LONG, "AES_192", "SHA_256"), ImportToken = params.ImportToken } } })
      local _, e3 = call("ImportKey", { KeyMaterial = { KeyCryptogram = {
        KeyAttributes = attrs("TR31_K0_KEY_ENCRYPTION_KEY", "AES_256"), Exportable = true,
        WrappedKeyCryptogram = cryptogram(AWS_KEK, "AES_256", "SHA_256"),
        ImportToken = "import-token-aaaaaaaaaaaaaaaa" } } })
      local other = assert(call("CreateKey", { Exportable = true,
        KeyAttributes = attrs("TR31_K0_KEY_ENCRYPTION_KEY", "AES_256") }))
      local _, e4 = call("ImportKey", { KeyMaterial = { Tr31KeyBlock = {
        WrappingKeyIdentifier = other.Key.KeyArn, WrappedKeyBlock = block } } })
      for _, e in ipairs { e1, e2, e3, e4 } do assert.equal("ValidationException", e.type) end
      assert.equal("WrappedKeyCryptogram: the cryptogram holds 24 bytes, not a AES_128 key", e2.message)
      pc:close()
      return table.concat(answers, "\n")
    end

    local function check(store_cfg, dump, cleanup)
      local later = require("spec.support.defer")(finally)
      later(cleanup)
      local srv = serve.start("aws", aws_config(store_cfg))
      later(function() srv.stop() srv.cleanup() end)
      local secrets = { [AWS_LMK] = "LMK", [AWS_KEK] = "KEK", [AWS_WK] = "working key", [AWS_LONG] = "long key",
        [AWS_K512] = "SHA-512 key", [AWS_SECRET:sub(12)] = "secret access key" }
      local scan = scanner(secrets)
      assert.is_string(marked.leak(read(srv.config), { [AWS_LMK] = "LMK" })) -- positive control
      scan("answers", aws_flow(srv.port))
      local log = serve.read(srv.log)
      assert.matches("POST / 200", log)
      assert.matches("POST / 400", log)
      scan("log", log)
      scan("stdout", read(srv.base .. ".out"))
      scan("store (running)", dump())
      wait_stopped(srv)
      scan("log after stop", serve.read(srv.log))
      scan("store (stopped)", dump())
    end

    it("logs, answers and stores (sqlite) no clear key, no storage key and no secret access key", function()
      local db = os.tmpname()
      check(("{ backend = \"sqlite\", path = %q }"):format(db), function()
        local text = sqlite_files(db)
        assert.is_true(#text > 0)
        return text
      end, function() remove_sqlite(db) end)
    end)

    it("stores (redis) no clear key, no storage key and no secret access key", function()
      local url, stop_redis, port = require("spec.support.redis").start()
      check(("{ backend = \"redis\", url = %q, prefix = \"aws:\" }"):format(url), function()
        local text, n = redis_dump(port)
        assert.is_true(n > 3)
        return text
      end, stop_redis)
    end)
  end)

  -- ---- redis ---------------------------------------------------------------------------
  describe("redis stores", function()
    local GW_PAN, GW_PIN = marked.hex(32, "90", "redis gateway ZMK_PAN"), marked.hex(32, "92", "redis gateway ZMK_PIN")

    it("hold no clear key of the gateway, the POS host or the mupk service (every key, every value)", function()
      local later = require("spec.support.defer")(finally)
      local url, stop_redis, port = require("spec.support.redis").start()
      later(stop_redis)
      local function store_cfg(prefix) return ("{ backend = \"redis\", url = %q, prefix = %q }"):format(url, prefix) end

      -- the gateway
      local gw = serve.start("gateway", ([[{
        listen = "127.0.0.1:0",
        basic_auth = { integrator = "pa55word" },
        store = %s,
        master_keys = {
          { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = %q },
          { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = %q },
        },
      }]]):format(store_cfg("gw:"), GW_PAN, GW_PIN))
      later(function() gw.stop() gw.cleanup() end)
      local secrets = { [GW_PAN] = "gateway ZMK_PAN", [GW_PIN] = "gateway ZMK_PIN" }
      local master_keys = {
        { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = GW_PAN },
        { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = GW_PIN },
      }
      local c = gateway_client(gw.port, GW_PAN, GW_PIN)
      local last
      for n = 1, 3 do
        last = assert(c:rotate("PAN", "DEK_REDIS"))
        secrets[last.key:export()] = "gateway PAN session key " .. n
      end
      local pin = assert(c:rotate("PIN", "PEK_REDIS"))
      secrets[pin.key:export()] = "gateway PIN session key"
      assert(c:reencrypt_pan(last, last.key, "4111111111111111"))
      assert(c:translate_pin(pin, hsm.key.import("AES_128", pin.key:export(), { usage = "P0" }), "1234", "4111111111111111"))
      assert.equal("301", select(3, c:import("PAN", "DEK_REDIS", last.key)))
      c:close()
      -- its LMK and own PAN / PIN keys, read back from the same redis database
      do
        local store = require("payhsm.store.redis").new { url = url, prefix = "gw:" }
        local reader = require("payhsm.gateway").new { master_keys = master_keys, store = store,
          basic_auth = { integrator = "pa55word" } }
        secrets[clear(reader.lmk)] = "gateway local master key"
        secrets[clear(reader.gw_pan)] = "gateway PAN key"
        secrets[clear(reader.gw_pin)] = "gateway PIN key"
        store:close()
      end

      -- the POS host
      local pos_srv = serve.start("pos", pos_config(store_cfg("pos:")))
      later(function() pos_srv.stop() pos_srv.cleanup() end)
      for hex, label in pairs(pos_secrets()) do secrets[hex] = label end
      pos_flow(pos_srv.port, secrets)

      -- the mupk service
      local mupk_srv = serve.start("mupk", mupk_config(store_cfg("mupk:")))
      later(function() mupk_srv.stop() mupk_srv.cleanup() end)
      local ids = mupk_flow(mupk_srv.port)
      local conn = assert(require("payhsm.redis").connect("127.0.0.1", port, 2000))
      local ok, mupk_scan = pcall(mupk_secrets, function(k) return (conn:command("GET", "mupk:" .. k)) end, ids)
      conn:close()
      assert(ok, mupk_scan)

      local dump, n, keys = redis_dump(port)
      local seen = {}
      for _, k in ipairs(keys) do seen[k:match("^(%a+:%a+):") or k] = true end
      for _, k in ipairs { "gw:gw", "pos:pos", "mupk:mupk" } do assert.is_true(seen[k], k .. " not in redis") end
      assert.is_true(n >= 20, "only " .. n .. " keys")
      -- positive control: the scan finds a clear key put into the same dump text
      assert.is_string(marked.leak(dump .. GW_PAN:lower(), secrets))
      scanner(secrets)("redis", dump)
      mupk_scan("redis", dump)
      for _, s in ipairs { gw, pos_srv, mupk_srv } do
        scanner(secrets)("log", serve.read(s.log))
        scanner(secrets)("stdout", read(s.base .. ".out"))
        mupk_scan("log", serve.read(s.log))
      end
    end)
  end)

  -- ---- bin/payhsm subcommands ------------------------------------------------------------
  describe("bin/payhsm commands", function()
    local K = {
      aes = marked.hex(32, "F0", "CLI AES_256 key"),
      tdes = marked.hex(16, "F1", "CLI TDES_2KEY key"),
      aes128 = marked.hex(16, "F2", "CLI AES_128 PIN key"),
      hmac = marked.hex(32, "F3", "CLI HMAC_SHA256 key"),
      kbpk = marked.hex(32, "F4", "CLI KBPK"),
      zka = marked.hex(16, "F5", "CLI ZKA master key"),
      msk = marked.hex(32, "F6", "CLI MSK"),
      imk = marked.hex(16, "F7", "CLI issuer master key"),
    }
    local dir, F
    local function secrets_of()
      local s = {}
      for name, hex in pairs(K) do s[hex] = "CLI key " .. name end
      return s
    end
    local function put(name, content)
      local path = dir .. "/" .. name
      local f = assert(io.open(path, "wb"))
      f:write(content)
      f:close()
      return path
    end
    setup(function()
      dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. dir)
      F = {
        aes = put("aes", "AES_256:" .. K.aes .. "\n"),
        tdes = put("tdes", "TDES_2KEY:" .. K.tdes .. "\n"),
        aes128 = put("aes128", "AES_128:" .. K.aes128 .. "\n"),
        hmac = put("hmac", "HMAC_SHA256:" .. K.hmac .. "\n"),
        kbpk = put("kbpk", "AES_256:" .. K.kbpk .. "\n"),
        zka = put("zka", "TDES_2KEY:" .. K.zka .. "\n"),
        msk = put("msk", "AES_256:" .. K.msk .. "\n"),
        imk = put("imk", K.imk:lower() .. "\n"), -- bare hex, the algorithm on the command line
        -- broken key files
        badhex = put("badhex", "AES_256:" .. K.aes:sub(1, 62) .. "ZZ\n"),
        short = put("short", "AES_256:" .. K.aes:sub(1, 62) .. "\n"),
        odd = put("odd", "AES_256:" .. K.aes:sub(1, 63) .. "\n"),
        long = put("long", "AES_128:" .. K.aes .. "\n"),
        lower = put("lower", "aes_256:" .. K.aes .. "\n"),
        spaced = put("spaced", "AES_256 " .. K.aes .. "\n"),
        twice = put("twice", "AES_256:" .. K.aes .. "\nAES_256:" .. K.aes .. "\n"),
        kcv3 = put("kcv3", "AES_256:" .. K.aes .. ":" .. hsm.key.import("AES_256", K.aes):kcv() .. "\n"),
        pin = put("pin", "1234\n"),
        plain = put("plain", "card data 4111111111111111"),
      }
    end)
    teardown(function() os.execute("rm -rf " .. dir) end)

    -- Runs one case {command [, want exit code] [, env = key hex] [, stdin =]} as JSON and
    -- as --text; returns what both printed on stdout and stderr (not the command line: a
    -- case may put a key there on purpose). A failure prints nothing on stdout and one
    -- "payhsm CMD: message [CODE]" line on stderr.
    local function both(c)
      local want = c[2] or 0
      local all = {}
      for _, extra in ipairs { "", " --text" } do
        local cmd = (c.env and ("PAYHSM_SPEC_KEY=" .. c.env .. " ") or "") .. "bin/payhsm " .. c[1] .. extra
        local out, rc, err = sh(cmd, c.stdin)
        assert.equal(want, rc, c[1] .. extra .. "\n" .. out .. err)
        if want == 0 then
          assert.is_true(#out > 0, c[1])
        else
          -- a failed verification answers {"Valid":false,...} on stdout; other failures print nothing there
          if not out:match('"Valid":false') and not out:match("\nValid\tfalse") then assert.equal("", out) end
          assert.matches("^payhsm [^\n]*%[[%u%d_]+%]\n$", err)
        end
        all[#all + 1] = out .. err
      end
      return table.concat(all)
    end

    it("print no clear key on stdout or stderr, succeeding or failing, JSON or --text", function()
      local secrets = secrets_of()
      local scan = scanner(secrets)
      local pan = "4111111111111111"
      local function json(cmd, stdin)
        local out, rc, err = sh("bin/payhsm " .. cmd, stdin)
        assert.equal(0, rc, cmd .. "\n" .. err)
        scan("$ " .. cmd, out .. err)
        return cjson.decode(out)
      end
      -- values later cases use, made through the CLI itself
      local block = json(("tr31 wrap --wrapping-key-identifier file:%s --key-identifier file:%s --key-usage P0 "
        .. "--key-mode-of-use E"):format(F.kbpk, F.tdes)).KeyBlock
      local pinblock = json(("pin encrypt --key-identifier file:%s --pin-block-format ISO_FORMAT_4 --pin file:%s "
        .. "--primary-account-number %s"):format(F.aes128, F.pin, pan)).PinBlock
      local emv = ("--key-identifier file:%s --key-algorithm TDES_2KEY --session-key-derivation EMV_COMMON "
        .. "--primary-account-number 5413330089600010 --pan-sequence-number 01 --application-transaction-counter 0001")
        :format(F.imk)
      local tdata = "0000000010000000000000000840008000800008401605170000000000"
      local arqc = json("arqc generate " .. emv .. " --transaction-data " .. tdata).AuthRequestCryptogram
      local krs = json("as2805 request --key-identifier file:" .. F.tdes).RandomKeySend
      local env = put("env.json", (sh("bin/payhsm envelope seal --key-identifier file:" .. F.msk .. " --plain-text file:"
        .. F.plain)))
      local mac = json(("mac generate --key-identifier file:%s --generation-attributes HMAC_SHA256 --message-data 00112233")
        :format(F.hmac)).Mac
      local bad_block = block:sub(1, -2) .. (block:sub(-1) == "0" and "1" or "0")
      local rnd = "00112233445566778899AABBCCDDEEFF"

      local ok_cases = {
        { "kcv --key-identifier file:" .. F.aes },
        { "kcv --key-identifier file:" .. F.hmac .. " --key-check-value-algorithm HMAC" },
        { "kcv --key-identifier file:" .. F.aes .. " --key-check-value-algorithm CMAC" },
        { "kcv --key-identifier file:" .. F.imk .. " --key-algorithm TDES_2KEY" },
        { "kcv --key-identifier env:PAYHSM_SPEC_KEY --key-algorithm AES_256", env = K.aes },
        { "kcv --key-identifier - --key-algorithm TDES_2KEY", stdin = K.tdes .. "\n" },
        { ("tr31 wrap --wrapping-key-identifier file:%s --key-identifier file:%s --key-usage D0 --key-mode-of-use B")
          :format(F.kbpk, F.aes) },
        { ("tr31 wrap --wrapping-key-identifier file:%s --key-identifier file:%s --key-usage M7 --key-mode-of-use C "
          .. "--exportability N"):format(F.kbpk, F.hmac) },
        { ("tr31 unwrap --wrapping-key-identifier file:%s --key-block %s"):format(F.kbpk, block) },
        { "tr31 parse --key-block " .. block },
        { ("mac generate --key-identifier file:%s --generation-attributes ISO9797_ALGORITHM3 --message-data %s")
          :format(F.tdes, tdata) },
        { ("mac generate --key-identifier file:%s --generation-attributes CMAC --message-data %s"):format(F.aes, tdata) },
        { ("mac verify --key-identifier file:%s --generation-attributes HMAC_SHA256 --message-data 00112233 --mac %s")
          :format(F.hmac, mac) },
        { ("pin encrypt --key-identifier file:%s --pin-block-format ISO_FORMAT_0 --pin file:%s --primary-account-number %s")
          :format(F.tdes, F.pin, pan) },
        { ("pin decrypt --key-identifier file:%s --pin-block-format ISO_FORMAT_4 --encrypted-pin-block %s "
          .. "--primary-account-number %s"):format(F.aes128, pinblock, pan) },
        { ("pin translate --incoming-key-identifier file:%s --incoming-pin-block-format ISO_FORMAT_4 "
          .. "--outgoing-key-identifier file:%s --outgoing-pin-block-format ISO_FORMAT_0 --encrypted-pin-block %s "
          .. "--primary-account-number %s"):format(F.aes128, F.tdes, pinblock, pan) },
        { "arqc verify " .. emv .. " --transaction-data " .. tdata .. " --auth-request-cryptogram " .. arqc },
        { "arpc " .. emv .. " --auth-request-cryptogram " .. arqc .. " --auth-response-code 3030" },
        { "as2805 request --key-identifier file:" .. F.tdes .. " --random-key-max-length BYTES_8" },
        { "as2805 response --key-identifier file:" .. F.tdes .. " --random-key-send " .. krs },
        { ("zka derive --key-identifier file:%s --purpose PAC --random-number %s"):format(F.zka, rnd) },
        { ("zka mac --key-identifier file:%s --random-number %s --message-data 0011223344556677"):format(F.zka, rnd) },
        { "envelope seal --chunked --key-identifier file:" .. F.msk .. " --plain-text file:" .. F.plain },
        { "envelope open --key-identifier file:" .. F.msk .. " --envelope file:" .. env },
        { "kcv --key-identifier file:" .. F.lower }, -- the algorithm name in either case
      }
      local fail_cases = {
        -- broken key files: the message names the problem, never the bytes
        { "kcv --key-identifier file:" .. F.badhex, 1 },
        { "kcv --key-identifier file:" .. F.short, 1 },
        { "kcv --key-identifier file:" .. F.odd, 1 },
        { "kcv --key-identifier file:" .. F.long, 1 },
        { "kcv --key-identifier file:" .. F.spaced, 2 },
        { "kcv --key-identifier file:" .. F.twice, 1 },
        { "kcv --key-identifier file:" .. F.kcv3, 1 },
        { "kcv --key-identifier file:" .. F.imk, 2 },
        { "kcv --key-identifier file:" .. F.imk .. " --key-algorithm AES_256", 1 },
        { "kcv --key-identifier env:PAYHSM_SPEC_KEY --key-algorithm TDES_3KEY", 1, env = K.aes },
        { "kcv --key-identifier - --key-algorithm AES_128", 1, stdin = K.aes .. "\n" },
        { "kcv --key-identifier file:" .. F.aes .. " --key-check-value-algorithm MD5", 2 },
        -- good keys, bad data or the wrong key
        { ("tr31 unwrap --wrapping-key-identifier file:%s --key-block %s"):format(F.kbpk, bad_block), 1 },
        { ("tr31 unwrap --wrapping-key-identifier file:%s --key-block %s"):format(F.aes, block), 1 },
        { ("tr31 wrap --wrapping-key-identifier file:%s --key-identifier file:%s --key-usage P0 --version Q")
          :format(F.kbpk, F.tdes), 1 },
        { ("tr31 wrap --wrapping-key-identifier file:%s --key-identifier file:%s --key-usage P0"):format(F.hmac, F.tdes), 1 },
        { ("mac verify --key-identifier file:%s --generation-attributes HMAC_SHA256 --message-data 00112234 --mac %s")
          :format(F.hmac, mac), 1 },
        { ("mac generate --key-identifier file:%s --generation-attributes ISO9797_ALGORITHM3 --message-data 0G")
          :format(F.tdes), 1 },
        { ("pin decrypt --key-identifier file:%s --pin-block-format ISO_FORMAT_4 --encrypted-pin-block %s "
          .. "--primary-account-number %s"):format(F.aes, pinblock, pan), 1 },
        { ("pin translate --incoming-key-identifier file:%s --incoming-pin-block-format ISO_FORMAT_4 "
          .. "--outgoing-key-identifier file:%s --outgoing-pin-block-format ISO_FORMAT_0 --encrypted-pin-block %s "
          .. "--primary-account-number %s"):format(F.kbpk, F.tdes, pinblock, pan), 1 },
        { "arqc verify " .. emv .. " --transaction-data " .. tdata:gsub("1", "2", 1) .. " --auth-request-cryptogram "
          .. arqc, 1 },
        { "as2805 response --key-identifier file:" .. F.tdes .. " --random-key-send " .. krs:sub(3), 1 },
        { ("zka derive --key-identifier file:%s --purpose PAC --random-number 0011"):format(F.zka), 1 },
        { "envelope open --key-identifier file:" .. F.aes .. " --envelope file:" .. env, 1 },
        { "envelope open --key-identifier file:" .. F.msk .. " --envelope file:" .. F.plain, 1 },
        -- a key on the command line itself is refused without being echoed
        { "kcv --key-algorithm AES_256 --key-identifier " .. K.aes, 1 },
        { "pin encrypt --key-identifier file:" .. F.aes128 .. " --pin-block-format ISO_FORMAT_4 --primary-account-number "
          .. pan .. " --pin " .. K.aes128, 1 },
      }
      local n = 0
      for _, list in ipairs { ok_cases, fail_cases } do
        for _, c in ipairs(list) do
          scan("$ " .. c[1], both(c))
          n = n + 1
        end
      end
      assert.is_true(n >= 50, n)
    end)

    it("put a key only into the --out file the user named", function()
      local secrets = secrets_of()
      local scan = scanner(secrets)
      local block = cjson.decode((sh(("bin/payhsm tr31 wrap --wrapping-key-identifier file:%s --key-identifier file:%s "
        .. "--key-usage D0 --key-mode-of-use B"):format(F.kbpk, F.aes)))).KeyBlock
      local outs = {}
      for i, extra in ipairs { "", " --text" } do
        local o = dir .. "/unwrapped" .. i
        local out, rc, err = sh(("bin/payhsm tr31 unwrap --wrapping-key-identifier file:%s --key-block %s --out %s%s")
          :format(F.kbpk, block, o, extra))
        assert.equal(0, rc, err)
        scan("tr31 unwrap --out" .. extra, out .. err)
        -- positive control: the file holds the key, and the scan sees it
        assert.equal("AES_256:" .. K.aes .. " usage=D0 mode=B exportability=E\n", read(o)) -- with the block's attributes
        assert.is_string(marked.leak(read(o), secrets))
        outs[#outs + 1] = o
      end
      -- zka derive: the session key goes to --out only
      local rnd = "00112233445566778899AABBCCDDEEFF"
      local sk = hsm.zka.derive_session_key(hsm.key.import("TDES_2KEY", K.zka), "ENC", rnd)
      local derived = { [sk:export()] = "ZKA session key" }
      for hex, label in pairs(secrets) do derived[hex] = label end
      local o = dir .. "/session"
      local out, rc, err = sh(("bin/payhsm zka derive --key-identifier file:%s --purpose ENC --random-number %s --out %s")
        :format(F.zka, rnd, o))
      assert.equal(0, rc, err)
      assert.equal(sk:kcv(), cjson.decode(out).KeyCheckValue)
      scanner(derived)("zka derive --out", out .. err)
      assert.is_string(marked.leak(read(o), { [sk:export()] = "ZKA session key" }))
      -- and without --out it is nowhere
      out, rc, err = sh(("bin/payhsm zka derive --key-identifier file:%s --purpose ENC --random-number %s --text")
        :format(F.zka, rnd))
      assert.equal(0, rc, err)
      scanner(derived)("zka derive", out .. err)
      -- keygen --out FILE: the new key is in the file, not on stdout
      o = dir .. "/generated"
      out, rc, err = sh("bin/payhsm keygen --key-algorithm AES_256 --out " .. o)
      assert.equal(0, rc, err)
      local hex = read(o):match("^AES_256:(%x+)\n$")
      assert.is_string(hex)
      scanner({ [hex] = "generated key" })("keygen --out", out .. err)
      for _, p in ipairs(outs) do os.remove(p) end
    end)

    it("never echo a key file's content in an error (a file written KEY:KCV)", function()
      -- "HEX:KCV" (a key with its check value) looks like ALGORITHM:HEX to the key loader
      local f = put("key_kcv", K.aes .. ":" .. hsm.key.import("AES_256", K.aes):kcv() .. "\n")
      for _, cmd in ipairs { "kcv --key-identifier file:" .. f, "kcv --key-identifier file:" .. f .. " --text",
        "kcv --key-identifier file:" .. f .. " --key-algorithm AES_256" } do
        local out, rc, err = sh("bin/payhsm " .. cmd)
        assert.is_true(rc ~= 0, cmd)
        scanner(secrets_of())("$ " .. cmd, out .. err)
      end
      local out, rc, err = sh("bin/payhsm kcv --key-identifier -", K.aes .. ":000000\n")
      assert.is_true(rc ~= 0)
      scanner(secrets_of())("kcv from stdin", out .. err)
    end)
  end)

  -- ---- configuration: errors, warnings, files ------------------------------------------
  describe("configuration and files", function()
    local CFG_LMK = marked.hex(32, "A0", "config storage key")
    local function mode(path)
      local p = io.popen("stat -c %a " .. path .. " 2>/dev/null")
      local m = p:read("*l")
      p:close()
      return m
    end
    local dir
    setup(function()
      dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. dir)
    end)
    teardown(function() os.execute("rm -rf " .. dir) end)

    local function serve_fails(system, text)
      local cfg = dir .. "/" .. system .. ".bad.conf.lua"
      local f = assert(io.open(cfg, "w"))
      f:write("return ", text)
      f:close()
      local out, rc, err = sh("timeout 20 bin/payhsm serve " .. system .. " --config " .. cfg)
      assert.is_true(rc ~= 0, system .. ": " .. out .. err)
      scanner({ [CFG_LMK] = "config storage key" })("serve " .. system, out .. err)
      return out .. err
    end

    it("refuse to start without authentication or with a broken storage key, printing no key", function()
      local text = serve_fails("mupk", ([[{ listen = "127.0.0.1:0", store = { backend = "memory" },
        storage_key = { algorithm = "AES_256", hex = %q } }]]):format(CFG_LMK))
      assert.matches('mupk: config needs basic_auth = {user = "password"} or tls.client_ca %(mutual TLS%)', text)
      assert.is_nil(text:find("listening", 1, true))
      for _, hex in ipairs { CFG_LMK:sub(1, 62), CFG_LMK:sub(1, 60) .. "ZZZZ", CFG_LMK .. "00" } do
        assert.matches("storage_key", serve_fails("mupk", ([[{ listen = "127.0.0.1:0", store = { backend = "memory" },
          basic_auth = { shop = "pw" }, storage_key = { algorithm = "AES_256", hex = %q } }]]):format(hex)))
        assert.matches("storage_key", serve_fails("pos", ([[{ listen = "127.0.0.1:0", store = { backend = "memory" },
          basic_auth = { operator = "pw" }, storage_key = { hex = %q } }]]):format(hex)))
        assert.matches("storage_key", serve_fails("aws", ([[{ listen = "127.0.0.1:0", store = { backend = "memory" },
          region = "us-east-1", account = "111122223333", credentials = { AKID = "secret" },
          storage_key = { algorithm = "AES_256", hex = %q } }]]):format(hex)))
      end
    end)

    it("warn at start when no storage_key is configured (gateway, POS, mupk, AWS)", function()
      local function lines_of(build)
        local lines = {}
        build(function(l) lines[#lines + 1] = l end)
        return table.concat(lines, "\n")
      end
      local memory = require "payhsm.store.memory"
      local gw = lines_of(function(log) require("payhsm.gateway").new { log = log, store = memory.new(),
        basic_auth = { i = "pw" }, master_keys = { { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", hex = CFG_LMK } } } end)
      assert.matches("gateway: no storage_key configured", gw)
      local pos = lines_of(function(log) require("payhsm.pos.server").new { log = log, store = memory.new() } end)
      assert.matches("pos: no storage_key configured: the local master key is random", pos)
      local mupk = lines_of(function(log) require("payhsm.mupk").new { log = log, store = memory.new(), auth = "none" } end)
      assert.matches("mupk: no storage_key configured: the local master key is random", mupk)
      local aws_cfg = { region = "us-east-1", account = "111122223333", credentials = { AKID = "secret" } }
      local aws = lines_of(function(log)
        local c = { log = log, store = memory.new() }
        for k, v in pairs(aws_cfg) do c[k] = v end
        require("payhsm.aws.server").new(c)
      end)
      assert.matches("aws: no storage_key configured: the local master key is random", aws)
      local keyfile = dir .. "/aws.lmk"
      aws = lines_of(function(log)
        local c = { log = log, store = memory.new(), storage_key_file = keyfile }
        for k, v in pairs(aws_cfg) do c[k] = v end
        require("payhsm.aws.server").new(c)
      end)
      assert.matches("aws: no storage_key configured: the local master key is kept in clear in " .. keyfile:gsub("%p", "%%%0"),
        aws)
      assert.equal("600", mode(keyfile)) -- made by core.write_secret_file
      -- with a storage_key: no such line
      assert.is_nil(lines_of(function(log) require("payhsm.pos.server").new { log = log, store = memory.new(),
        storage_key = { hex = CFG_LMK } } end):find("storage_key", 1, true))
      -- and every example config sets one
      for _, system in ipairs { "gateway", "pos", "mupk", "aws" } do
        assert.matches("storage_key = {", read("examples/" .. system .. ".conf.lua"), nil, true)
      end
    end)

    it("--out files are created 0600, whatever the umask", function()
      local kbpk = dir .. "/kbpk"
      local _, rc, err = sh("umask 022; bin/payhsm keygen --key-algorithm AES_256 --out " .. kbpk)
      assert.equal(0, rc, err)
      assert.equal("600", mode(kbpk))
      local zka = dir .. "/zka"
      local f = assert(io.open(zka, "w"))
      f:write("TDES_2KEY:" .. marked.hex(16, "A1", "config ZKA key") .. "\n")
      f:close()
      local out
      out, rc, err = sh(("umask 022; bin/payhsm zka derive --key-identifier file:%s --purpose ENC --random-number %s "
        .. "--out %s/session"):format(zka, ("01"):rep(16), dir))
      assert.equal(0, rc, err)
      assert.equal("600", mode(dir .. "/session"))
      local block = cjson.decode((sh(("bin/payhsm tr31 wrap --wrapping-key-identifier file:%s --key-identifier file:%s "
        .. "--key-usage D0 --key-mode-of-use B"):format(kbpk, kbpk)))).KeyBlock
      out, rc, err = sh(("umask 022; bin/payhsm tr31 unwrap --wrapping-key-identifier file:%s --key-block %s --out %s/unwrapped")
        :format(kbpk, block, dir))
      assert.equal(0, rc, out .. err)
      assert.equal("600", mode(dir .. "/unwrapped"))
    end)

    it("served stores: the sqlite database, its -wal and -shm are 0600 (gateway, POS, mupk, AWS)", function()
      local later = require("spec.support.defer")(finally)
      local configs = {
        gateway = [[basic_auth = { i = "pw" }, master_keys = { { label = "ZMK_PAN_XXX_YYY", key_type = "PAN",
          hex = "%s" } }, storage_key = { hex = "%s" }]],
        pos = [[basic_auth = { operator = "pw" }, storage_key = { hex = "%s" }]],
        mupk = [[basic_auth = { shop = "pw" }, storage_key = { hex = "%s" }]],
        aws = [[region = "us-east-1", account = "111122223333", credentials = { AKID = "secret" },
          storage_key = { hex = "%s" }]],
      }
      for _, system in ipairs { "gateway", "pos", "mupk", "aws" } do
        local db = dir .. "/" .. system .. ".db" -- a new file: the server makes it
        local srv = serve.start(system, ("{ listen = \"127.0.0.1:0\", store = { backend = \"sqlite\", path = %q }, %s }")
          :format(db, configs[system]:format(CFG_LMK, CFG_LMK)))
        later(function() srv.stop() srv.cleanup() end)
        for _, suffix in ipairs { "", "-wal", "-shm" } do
          assert.equal("600", mode(db .. suffix), system .. " " .. db .. suffix)
        end
        wait_stopped(srv)
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
