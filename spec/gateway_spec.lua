-- The MSK gateway (lua/payhsm/gateway) and its integrator client, driven as pure handlers.
-- Source: Fiserv's host-to-host MSK API (request/response fields, exception table, rotation,
-- Get Key / Get Keys shapes, the advice to confirm with Get Keys after a timeout).
local hsm = require "payhsm"
local util = require "payhsm.util"
local cjson = require "cjson"
local gateway = require "payhsm.gateway"
local client_mod = require "payhsm.gateway.client"
local memory = require "payhsm.store.memory"

local ZMK_PAN = ("1A"):rep(32)
local ZMK_PIN = ("2B"):rep(32)
local GW_PAN = ("3C"):rep(32)
local GW_PIN = ("4D"):rep(32)
local AUTH = "Basic " .. util.b64encode("integrator:s3cret")

-- Fiserv's own example session key: a TDES version B block (algorithm T).
local FISERV_EXAMPLE_BLOCK = "B0080P0TN00N000041664BFCB3C43B151D024BFECFB43BD789CB666C16BB04028873D6F5B6C1D42F"

local function new_gateway(extra)
  local now = 1700000000
  local clock = function() return now end
  local cfg = {
    master_keys = {
      { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = ZMK_PAN },
      { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = ZMK_PIN },
    },
    basic_auth = { integrator = "s3cret" },
    gateway_keys = { pan = { algorithm = "AES_256", hex = GW_PAN }, pin = { algorithm = "AES_256", hex = GW_PIN } },
    clock = clock,
  }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  cfg.store = cfg.store or memory.new { clock = clock }
  local gw = gateway.new(cfg)
  return gw, function(dt) now = now + dt end, cfg.store
end

local function zmk(key_type)
  return hsm.key.import("AES_256", key_type == "PIN" and ZMK_PIN or ZMK_PAN)
end

local function session_key(usage)
  return hsm.key.generate("AES_128", { usage = usage or "D0", mode = "B", exportability = "E" })
end

local function import_body(fields)
  local t = {
    requestType = "ImportKeyRequest", keyType = "PAN", masterKeyLabel = "ZMK_PAN_XXX_YYY",
    sessionKeyLabel = "DEK_XX_XXYY",
  }
  for k, v in pairs(fields or {}) do t[k] = v end
  local drop_kcv = t.sessionKeyCheckValue == false
  if drop_kcv then t.sessionKeyCheckValue = nil end
  if t.sessionKey == nil then
    local key = t.key or session_key(t.keyType == "PIN" and "P0" or "D0")
    t.sessionKey = assert(hsm.tr31.wrap(zmk(t.keyType), key, { version = "D", exportability = "E" }))
    t.sessionKeyCheckValue = t.sessionKeyCheckValue or key:kcv("CMAC")
  end
  t.key = nil
  if drop_kcv then t.sessionKeyCheckValue = nil end
  return cjson.encode(t)
end

local function call(gw, method, path, body, headers)
  local h = { authorization = AUTH }
  for k, v in pairs(headers or {}) do h[k] = v end
  local resp = gw:handle { method = method, path = path, headers = h, body = body }
  return resp, cjson.decode(resp.body)
end

local function import(gw, fields, headers)
  return call(gw, "POST", "/key-management/keys/import", import_body(fields), headers)
end

local function assert_error(resp, doc, status, code)
  assert.equal(status, resp.status)
  assert.equal("errorResponse", doc.type)
  assert.equal(code, doc.error.code)
  assert.is_string(doc.error.message)
  assert.is_string(doc.clientRequestId)
  assert.is_string(doc.apiTraceId)
end

local function keys_of(doc)
  local t = {}
  for k in pairs(doc) do t[#t + 1] = k end
  table.sort(t)
  return t
end

describe("gateway", function()
  describe("import", function()
    it("answers with exactly Fiserv's response fields", function()
      local gw = new_gateway()
      local key = session_key("D0")
      local resp, doc = import(gw, { key = key }, { ["client-request-id"] = "6af17b4f-3e07-44f9-9b09-cf84ab3b485d" })
      assert.equal(200, resp.status)
      assert.same({ "clientRequestId", "keyType", "masterKeyLabel", "sessionKeyCheckValue", "sessionKeyId",
        "sessionKeyLabel", "type" }, keys_of(doc))
      assert.equal("importKeyResponse", doc.type)
      assert.equal("6af17b4f-3e07-44f9-9b09-cf84ab3b485d", doc.clientRequestId)
      assert.equal("PAN", doc.keyType)
      assert.equal("ZMK_PAN_XXX_YYY", doc.masterKeyLabel)
      assert.equal("DEK_XX_XXYY", doc.sessionKeyLabel)
      assert.equal("1001", doc.sessionKeyId)
      assert.equal(key:kcv("CMAC"), doc.sessionKeyCheckValue)
      assert.equal("application/json", resp.headers["Content-Type"])
    end)

    it("accepts the zero-encryption (ANSI X9.24) check value too, in either case", function()
      local gw = new_gateway()
      local key = session_key("D0")
      local resp = import(gw, { key = key, sessionKeyCheckValue = key:kcv("ANSI_X9_24"):lower() })
      assert.equal(200, resp.status)
    end)

    it("imports PIN keys (ZPK, usage P0) under the PIN master key", function()
      local gw = new_gateway()
      local resp, doc = import(gw, { keyType = "PIN", masterKeyLabel = "ZMK_PIN_XXX_YYY", sessionKeyLabel = "ZPK_1" })
      assert.equal(200, resp.status)
      assert.equal("PIN", doc.keyType)
    end)

    it("gives a fresh UUID when Client-Request-Id is absent and a new apiTraceId each time", function()
      local gw = new_gateway()
      local _, doc = import(gw)
      assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", doc.clientRequestId)
      -- an id with control characters or over 128 characters is replaced too
      for _, bad in ipairs { "a\nb", ("x"):rep(129), "" } do
        local _, d = import(gw, nil, { ["client-request-id"] = bad })
        assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", d.clientRequestId)
      end
      local seen = {}
      for _ = 1, 20 do
        local resp, d = call(gw, "GET", "/key-management/keys/1001")
        assert.equal(27, #d.apiTraceId)
        assert.equal(d.apiTraceId, resp.headers["Api-Trace-Id"])
        assert.is_nil(seen[d.apiTraceId])
        seen[d.apiTraceId] = true
      end
    end)

    it("rotates through three static IDs exactly as Fiserv's API describes, for 1 to 7 imports", function()
      local gw = new_gateway()
      local kcvs = {}
      for n = 1, 7 do
        local key = session_key("D0")
        local resp, doc = import(gw, { key = key })
        assert.equal(200, resp.status)
        kcvs[n] = key:kcv("CMAC")
        -- the n-th import lands in ID 1001 + (n-1) % 3 and is version 3.0 (active);
        -- the one before is 2.0, the one before that 1.0
        assert.equal(tostring(1001 + (n - 1) % 3), doc.sessionKeyId)
        local _, all = call(gw, "GET", "/key-mgmt/session-keys/keys/sessionKeyLabel=DEK_XX_XXYY")
        assert.equal("getKeysResponse", all.type)
        assert.equal(math.min(n, 3), #all.keys)
        for i, k in ipairs(all.keys) do
          assert.equal(tostring(1000 + i), k.sessionKeyId) -- listed in static ID order
          local age -- 0 for the latest import
          for m = n, 1, -1 do
            if tostring(1001 + (m - 1) % 3) == k.sessionKeyId then age = n - m break end
          end
          assert.equal(("%d.0"):format(3 - age), k.version)
          assert.equal(kcvs[n - age], k.sessionKeyCheckValue)
          assert.equal("PAN", k.keyType)
          assert.equal("DEK_XX_XXYY", k.sessionKeyLabel)
        end
        local slots = gw:slots("DEK_XX_XXYY")
        local active = 0
        for _, s in ipairs(slots) do if s.active then active = active + 1 assert.equal("3.0", s.version) end end
        assert.equal(1, active)
      end
    end)

    it("gives each label its own three IDs", function()
      local gw = new_gateway()
      local _, a = import(gw, { sessionKeyLabel = "DEK_A" })
      local _, b = import(gw, { sessionKeyLabel = "DEK_B" })
      assert.equal("1001", a.sessionKeyId)
      assert.equal("1004", b.sessionKeyId)
    end)

    -- Fiserv's exception table, then ours.
    it("refuses a duplicate import with 409 / 301", function()
      local gw = new_gateway()
      local key = session_key("D0")
      local body = import_body { key = key }
      assert.equal(200, call(gw, "POST", "/key-management/keys/import", body).status)
      assert_error(select(1, call(gw, "POST", "/key-management/keys/import", body)),
        select(2, call(gw, "POST", "/key-management/keys/import", body)), 409, "301")
      -- the same key wrapped again (a new block) is still a duplicate, also after rotation
      import(gw)
      local resp, doc = import(gw, { key = key })
      assert_error(resp, doc, 409, "301")
      assert.equal(2, #gw:slots("DEK_XX_XXYY"))
    end)

    it("refuses missing, wrong and non-Basic credentials with 401 / 401 on every endpoint", function()
      local gw = new_gateway()
      local bad = { "", "Basic " .. util.b64encode("integrator:wrong"), "Basic " .. util.b64encode("nobody:s3cret"),
        "Bearer abc", "Basic !!!", "Basic " .. util.b64encode("integrator") }
      for _, path in ipairs { "/key-management/keys/import", "/key-management/keys/1001",
                              "/key-mgmt/session-keys/keys/sessionKeyLabel=X", "/nowhere" } do
        for _, auth in ipairs(bad) do
          local resp
          if auth == "" then
            resp = gw:handle { method = "POST", path = path, headers = {}, body = import_body() }
          else
            resp = call(gw, "POST", path, import_body(), { authorization = auth })
          end
          local doc = cjson.decode(resp.body)
          assert_error(resp, doc, 401, "401")
          assert.matches("^Basic", resp.headers["WWW-Authenticate"])
        end
      end
      assert.is_nil(gw:slots("DEK_XX_XXYY"))
    end)

    it("refuses Fiserv's own TDES version B example block (409 / 3905)", function()
      -- Fiserv's API says AES-128 but shows B0080P0TN00N...: a TDES key (T) in a version B block.
      -- A version B block is protected by a TDES KBPK, so it cannot come from the AES-256
      -- zone master keys Fiserv's API prescribes: refused before any unwrap is tried.
      local gw = new_gateway()
      local resp, doc = import(gw, { sessionKey = FISERV_EXAMPLE_BLOCK, sessionKeyCheckValue = "CE1CDE" })
      assert_error(resp, doc, 409, "3905")
    end)

    it("refuses session keys that are not AES-128 (409 / 3905)", function()
      local gw = new_gateway()
      for _, alg in ipairs { "AES_256", "AES_192", "TDES_2KEY" } do
        local key = hsm.key.generate(alg, { usage = "D0", mode = "B", exportability = "E" })
        local resp, doc = import(gw, { key = key })
        assert_error(resp, doc, 409, "3905")
      end
    end)

    local refusals = {
      { "an unknown masterKeyLabel", { masterKeyLabel = "ZMK_NOPE" }, 409, "3902" },
      { "the PIN master key for a PAN key", { masterKeyLabel = "ZMK_PIN_XXX_YYY" }, 409, "3903" },
      { "a block that is not TR-31", { sessionKey = "not a key block", sessionKeyCheckValue = "000000" }, 409, "3904" },
      { "a truncated block", { sessionKey = FISERV_EXAMPLE_BLOCK:sub(1, 40), sessionKeyCheckValue = "000000" }, 409, "3904" },
      { "a PIN key (P0) sent as PAN", { key = session_key("P0") }, 409, "3906" },
      { "a wrong check value", { sessionKeyCheckValue = "000000" }, 409, "3907" },
      { "a check value that is not 6 hex digits", { sessionKeyCheckValue = "XYZ" }, 409, "3907" },
      { "an unknown keyType", { keyType = "CVV" }, 400, "3908" },
      { "a missing field", { sessionKeyCheckValue = false }, 400, "1002" },
      { "a wrong requestType", { requestType = "ExportKeyRequest" }, 400, "1002" },
    }
    for _, r in ipairs(refusals) do
      it(("refuses %s (%d / %s) and stores nothing"):format(r[1], r[3], r[4]), function()
        local gw = new_gateway()
        local resp, doc = import(gw, r[2])
        assert_error(resp, doc, r[3], r[4])
        assert.is_nil(gw:slots("DEK_XX_XXYY"))
      end)
    end

    it("refuses a block whose MAC was altered, or one made under another key (409 / 3904)", function()
      local gw = new_gateway()
      local key = session_key("D0")
      local block = hsm.tr31.wrap(zmk("PAN"), key, { version = "D", exportability = "E" })
      local last = block:sub(-1)
      local tampered = block:sub(1, -2) .. (last == "0" and "1" or "0")
      local resp, doc = import(gw, { sessionKey = tampered, sessionKeyCheckValue = key:kcv("CMAC") })
      assert_error(resp, doc, 409, "3904")
      local other = hsm.tr31.wrap(hsm.key.generate("AES_256"), key, { version = "D", exportability = "E" })
      resp, doc = import(gw, { sessionKey = other, sessionKeyCheckValue = key:kcv("CMAC") })
      assert_error(resp, doc, 409, "3904")
    end)

    it("refuses JSON that is not an object (400 / 1002)", function()
      local gw = new_gateway()
      for _, body in ipairs { "", "{", "[]", "42", "null" } do
        local resp, doc = call(gw, "POST", "/key-management/keys/import", body)
        assert_error(resp, doc, 400, "1002")
      end
    end)

    it("keeps a label to one keyType and masterKeyLabel (409 / 3910)", function()
      local gw = new_gateway()
      import(gw, { sessionKeyLabel = "SHARED" })
      local resp, doc = import(gw, { sessionKeyLabel = "SHARED", keyType = "PIN", masterKeyLabel = "ZMK_PIN_XXX_YYY" })
      assert_error(resp, doc, 409, "3910")
    end)

    it("enforces a configured minimum interval between imports per label (429 / 3909)", function()
      local gw, advance = new_gateway { min_import_interval = 60 }
      assert.equal(200, (import(gw)).status)
      local resp, doc = import(gw)
      assert_error(resp, doc, 429, "3909")
      assert.equal("60", resp.headers["Retry-After"])
      assert.equal(200, (import(gw, { sessionKeyLabel = "OTHER" })).status) -- per label
      advance(59)
      assert.equal(429, (import(gw)).status)
      advance(1)
      assert.equal(200, (import(gw)).status)
      assert.equal(2, #gw:slots("DEK_XX_XXYY"))
    end)

    it("has no minimum interval by default", function()
      local gw = new_gateway()
      for _ = 1, 4 do assert.equal(200, (import(gw)).status) end
    end)

    it("answers 409 / 3067 when the store cannot complete the import, and 500 / 1001 on other failures", function()
      local store = memory.new()
      local gw = new_gateway { store = store }
      import(gw) -- creates the label
      local update = store.update
      store.update = function() error("disk on fire") end
      local resp, doc = import(gw)
      assert_error(resp, doc, 409, "3067")
      store.update = update
      store.get = function() error("disk on fire") end
      resp, doc = call(gw, "GET", "/key-management/keys/1001")
      assert_error(resp, doc, 500, "1001")
      assert.not_matches("fire", resp.body)
    end)

    it("answers 409 / 3067 when the store fails while reserving the IDs of a new label", function()
      local store = memory.new()
      local gw = new_gateway { store = store }
      local update = store.update
      store.update = function(self, k, fn)
        if k == "gw:seq" then error("disk on fire") end
        return update(self, k, fn)
      end
      local resp, doc = import(gw, { sessionKeyLabel = "NEW_LABEL" })
      assert_error(resp, doc, 409, "3067")
      assert.not_matches("fire", resp.body)
      assert.is_nil(gw:slots("NEW_LABEL"))
      store.update = update
      local put = store.put
      store.put = function(self, k, v, ttl)
        if k:match("^gw:id:") then error("disk on fire") end
        return put(self, k, v, ttl)
      end
      resp, doc = import(gw, { sessionKeyLabel = "NEW_LABEL" })
      assert_error(resp, doc, 409, "3067")
      store.put = put
      assert.equal(200, (import(gw, { sessionKeyLabel = "NEW_LABEL" })).status)
    end)

    -- Fiserv's host-to-host MSK API: "409 | 3067 -Unable to retrieve response while importing
    -- session key". The answer names no cause (nor may it), so the operator's log must.
    it("'3067 - Unable to retrieve response while importing session key': logs the store's cause, never key bytes", function()
      local lines = {}
      local store = memory.new()
      local gw = new_gateway { store = store, log = function(l) lines[#lines + 1] = l end }
      import(gw)
      local update = store.update
      local before = #lines
      store.update = function() error("disk on fire writing 0123456789ABCDEF0123456789ABCDEF") end
      local resp, doc = import(gw)
      store.update = update
      assert_error(resp, doc, 409, "3067")
      assert.equal(before + 1, #lines)
      local line = lines[#lines]
      assert.matches("3067", line, 1, true)
      assert.matches('"DEK_XX_XXYY"', line, 1, true)
      assert.matches("disk on fire writing <32 hex digits>", line, 1, true)
      assert.not_matches("0123456789ABCDEF", line)
      assert.not_matches("fire", resp.body)
      -- the same when the IDs of a new label cannot be reserved
      store.update = function(self, k, fn)
        if k == "gw:seq" then error("sequence lost") end
        return update(self, k, fn)
      end
      resp, doc = import(gw, { sessionKeyLabel = "NEW_LABEL" })
      store.update = update
      assert_error(resp, doc, 409, "3067")
      assert.matches('"NEW_LABEL".*sequence lost', lines[#lines])
    end)

    it("answers 409 / 3901 when an import fails unexpectedly, and logs the cause", function()
      local lines = {}
      local gw = new_gateway { log = function(l) lines[#lines + 1] = l end }
      local wrap = hsm.tr31.wrap
      local body = import_body() -- made before the fault is injected
      hsm.tr31.wrap = function() return nil, "tr31.wrap: injected fault", "TR31_PADDING" end
      local ok, resp = pcall(call, gw, "POST", "/key-management/keys/import", body)
      hsm.tr31.wrap = wrap
      assert.is_true(ok, tostring(resp))
      assert_error(resp, cjson.decode(resp.body), 409, "3901")
      assert.is_nil(gw:slots("DEK_XX_XXYY"))
      assert.matches("re%-wrapping", lines[#lines])
      assert.not_matches("re%-wrapping", resp.body)
    end)
  end)

  describe("Get Key and Get Keys", function()
    it("reproduce Fiserv's shapes", function()
      local gw = new_gateway()
      local key = session_key("D0")
      import(gw, { key = key })
      local resp, doc = call(gw, "GET", "/key-management/keys/1001", nil, { ["client-request-id"] = "testuuid" })
      assert.equal(200, resp.status)
      assert.same({ "apiTraceId", "clientRequestId", "key", "type" }, keys_of(doc))
      assert.equal("getKeyResponse", doc.type)
      assert.equal("testuuid", doc.clientRequestId)
      assert.same({ keyType = "PAN", sessionKeyLabel = "DEK_XX_XXYY", sessionKeyId = "1001",
        sessionKeyCheckValue = key:kcv("CMAC"), version = "3.0" }, doc.key)
      resp, doc = call(gw, "GET", "/key-mgmt/session-keys/keys/sessionKeyLabel=DEK_XX_XXYY", nil,
        { ["client-request-id"] = "TestKeyMgmt" })
      assert.same({ "apiTraceId", "clientRequestId", "keys", "type" }, keys_of(doc))
      assert.equal("TestKeyMgmt", doc.clientRequestId)
      assert.equal(1, #doc.keys)
    end)

    it("answer 404 for unknown IDs and labels, 405 for wrong methods, 404 elsewhere", function()
      local gw = new_gateway()
      import(gw)
      assert_error(select(1, call(gw, "GET", "/key-management/keys/9999")),
        select(2, call(gw, "GET", "/key-management/keys/9999")), 404, "3920")
      -- IDs reserved for the label but not yet filled are not found either
      assert.equal(404, (call(gw, "GET", "/key-management/keys/1002")).status)
      local resp, doc = call(gw, "GET", "/key-mgmt/session-keys/keys/sessionKeyLabel=NOPE")
      assert_error(resp, doc, 404, "3921")
      resp, doc = call(gw, "GET", "/key-management/keys/import")
      assert_error(resp, doc, 405, "1005")
      resp, doc = call(gw, "DELETE", "/key-management/keys/1001")
      assert_error(resp, doc, 405, "1005")
      resp, doc = call(gw, "GET", "/key-management/keys/import/x")
      assert_error(resp, doc, 404, "1004")
    end)

    it("takes the path as the HTTP layer decoded it, without decoding it again", function()
      -- the HTTP server (libmicrohttpd, lighttpd's uri.path) has already percent-decoded the
      -- path: "X%41" arrives as "X%41" and is that label, not "XA"
      local gw = new_gateway()
      import(gw, { sessionKeyLabel = "X%41" })
      import(gw, { sessionKeyLabel = "DEK A/1?" })
      local resp, doc = call(gw, "GET", "/key-mgmt/session-keys/keys/sessionKeyLabel=X%41")
      assert.equal(200, resp.status)
      assert.equal("X%41", doc.keys[1].sessionKeyLabel)
      assert_error(select(1, call(gw, "GET", "/key-mgmt/session-keys/keys/sessionKeyLabel=XA")),
        select(2, call(gw, "GET", "/key-mgmt/session-keys/keys/sessionKeyLabel=XA")), 404, "3921")
      resp, doc = call(gw, "GET", "/key-mgmt/session-keys/keys/sessionKeyLabel=DEK A/1?")
      assert.equal(200, resp.status)
      assert.equal("DEK A/1?", doc.keys[1].sessionKeyLabel)
      -- the client percent-encodes labels and IDs in its paths; in_process decodes once, as HTTP does
      local c = client_mod.new { transport = client_mod.in_process(gw), user = "integrator", password = "s3cret" }
      assert.equal("X%2541", client_mod.url_encode("X%41"))
      assert.equal("DEK%20A%2F1%3F", client_mod.url_encode("DEK A/1?"))
      assert.equal("X%41", assert(c:get_keys("X%41"))[1].sessionKeyLabel)
      assert.equal("DEK A/1?", assert(c:get_keys("DEK A/1?"))[1].sessionKeyLabel)
      assert.equal("X%41", assert(c:get_key("1001")).sessionKeyLabel)
      local none = { c:get_keys("XA") }
      assert.is_nil(none[1])
      assert.equal("3921", none[3])
    end)
  end)

  describe("transactions", function()
    local function setup_keys()
      local gw = new_gateway()
      local dek, zpk = session_key("D0"), session_key("P0")
      import(gw, { key = dek })
      import(gw, { key = zpk, keyType = "PIN", masterKeyLabel = "ZMK_PIN_XXX_YYY", sessionKeyLabel = "ZPK_1" })
      return gw, dek, zpk
    end
    local PAN = "4111111111111111"
    local PIN_PAN = "5413330089600010"
    local function pan_call(gw, fields)
      return call(gw, "POST", "/key-management/transactions/pan-reencryption", cjson.encode(fields))
    end
    local function pin_call(gw, fields)
      return call(gw, "POST", "/key-management/transactions/pin-translation", cjson.encode(fields))
    end

    -- The three IDs are static (Fiserv's rotation): an ID alone does not say which key
    -- the integrator used, so the request names the key instance by its check value.
    it("require the session key's check value, PAN and PIN alike (400 / 1002 without it)", function()
      local gw, dek, zpk = setup_keys()
      local enc = client_mod.encrypt_pan(dek, PAN)
      local pinblock = hsm.pin.encrypt(zpk, "ISO_FORMAT_4", "1234", PIN_PAN)
      for _, bad in ipairs { cjson.null, 123, true, { "x" }, "XYZ", "", dek:kcv("CMAC") .. "0" } do
        local kcv = bad
        if bad == cjson.null then kcv = nil end
        local resp, doc = pan_call(gw, { sessionKeyId = "1001", sessionKeyCheckValue = kcv, encryptedPan = enc })
        assert_error(resp, doc, 400, "1002")
        assert.matches("sessionKeyCheckValue", doc.error.details)
        resp, doc = pin_call(gw, { sessionKeyId = "1004", sessionKeyCheckValue = kcv, pinBlock = pinblock, pan = PIN_PAN })
        assert_error(resp, doc, 400, "1002")
      end
      -- either KCV of the key, in either case, names it
      for _, kcv in ipairs { dek:kcv("CMAC"), dek:kcv("ANSI_X9_24"):lower() } do
        assert.equal(200, (pan_call(gw, { sessionKeyId = "1001", sessionKeyCheckValue = kcv, encryptedPan = enc })).status)
      end
      for _, kcv in ipairs { zpk:kcv("CMAC"):lower(), zpk:kcv("ANSI_X9_24") } do
        assert.equal(200, (pin_call(gw, { sessionKeyId = "1004", sessionKeyCheckValue = kcv, pinBlock = pinblock,
          pan = PIN_PAN })).status)
      end
    end)

    it("refuse a key rotated out of its ID (409 / 3930), PAN and PIN alike, and serve the older keys still held", function()
      local gw, dek, zpk = setup_keys()
      local enc = client_mod.encrypt_pan(dek, PAN)
      local pinblock = hsm.pin.encrypt(zpk, "ISO_FORMAT_4", "1234", PIN_PAN)
      local pin_import = { keyType = "PIN", masterKeyLabel = "ZMK_PIN_XXX_YYY", sessionKeyLabel = "ZPK_1" }
      import(gw)
      import(gw, pin_import) -- dek and zpk are now version 2.0, still held
      local resp, doc = pan_call(gw, { sessionKeyId = "1001", sessionKeyCheckValue = dek:kcv("CMAC"), encryptedPan = enc })
      assert.equal(200, resp.status)
      assert.equal("2.0", doc.version)
      assert.is_false(doc.active)
      resp, doc = pin_call(gw, { sessionKeyId = "1004", sessionKeyCheckValue = zpk:kcv("CMAC"), pinBlock = pinblock,
        pan = PIN_PAN })
      assert.equal(200, resp.status)
      assert.equal("2.0", doc.version)
      for _ = 1, 2 do import(gw) import(gw, pin_import) end -- 1001 and 1004 hold new keys
      resp, doc = pan_call(gw, { sessionKeyId = "1001", sessionKeyCheckValue = dek:kcv("CMAC"), encryptedPan = enc })
      assert_error(resp, doc, 409, "3930")
      resp, doc = pin_call(gw, { sessionKeyId = "1004", sessionKeyCheckValue = zpk:kcv("ANSI_X9_24"), pinBlock = pinblock,
        pan = PIN_PAN })
      assert_error(resp, doc, 409, "3930")
      -- and the new key under the ID is never used for data sent under the old one
      assert.is_nil(doc.pinBlock)
    end)

    it("re-encrypts a PAN from the DEK to the gateway's PAN key", function()
      local gw, dek = setup_keys()
      local pan = "4111111111111111"
      local resp, doc = call(gw, "POST", "/key-management/transactions/pan-reencryption", cjson.encode {
        sessionKeyId = "1001", sessionKeyCheckValue = dek:kcv("CMAC"), encryptedPan = client_mod.encrypt_pan(dek, pan) })
      assert.equal(200, resp.status)
      assert.equal("panReencryptionResponse", doc.type)
      assert.equal("1001", doc.sessionKeyId)
      assert.equal("3.0", doc.version)
      local gwk = hsm.key.import("AES_256", GW_PAN)
      assert.equal(gwk:kcv("CMAC"), doc.gatewayKeyCheckValue)
      assert.equal(pan, client_mod.decrypt_pan(gwk, doc.encryptedPan, doc.iv))
      assert.not_equal(client_mod.encrypt_pan(gwk, pan, doc.iv), client_mod.encrypt_pan(dek, pan, doc.iv))
    end)

    it("translates a PIN block from the ZPK to the gateway's PIN key", function()
      local gw, _, zpk = setup_keys()
      local pan = "5413330089600010"
      for _, fmt in ipairs { "ISO_FORMAT_4" } do
        local resp, doc = call(gw, "POST", "/key-management/transactions/pin-translation", cjson.encode {
          sessionKeyId = "1004", sessionKeyCheckValue = zpk:kcv("ANSI_X9_24"):lower(),
          pinBlock = hsm.pin.encrypt(zpk, "ISO_FORMAT_4", "1234", pan), pan = pan,
          pinBlockFormat = "ISO_FORMAT_4", outputPinBlockFormat = fmt })
        assert.equal(200, resp.status)
        assert.equal("pinTranslationResponse", doc.type)
        assert.equal(fmt, doc.pinBlockFormat)
        assert.equal("1234", hsm.pin.decrypt(hsm.key.import("AES_256", GW_PIN), fmt, doc.pinBlock, pan))
      end
    end)

    it("refuses a key rotated out, a key of the other type, unknown IDs and undecipherable data", function()
      local gw, dek, zpk = setup_keys()
      local pan = "4111111111111111"
      local old_kcv = dek:kcv("CMAC")
      import(gw) -- 1002 is now active; 1001 still holds dek as version 2.0
      local function pan_call1(fields)
        return pan_call(gw, fields)
      end
      local resp, doc = pan_call1 { sessionKeyId = "1001", sessionKeyCheckValue = old_kcv,
        encryptedPan = client_mod.encrypt_pan(dek, pan) }
      assert.equal(200, resp.status)
      assert.equal("2.0", doc.version)
      assert.is_false(doc.active)
      import(gw)
      import(gw) -- 1001 now holds a new key: dek is gone
      resp, doc = pan_call1 { sessionKeyId = "1001", sessionKeyCheckValue = old_kcv,
        encryptedPan = client_mod.encrypt_pan(dek, pan) }
      assert_error(resp, doc, 409, "3930")
      -- the ID's current key, named by its check value, with data that does not decrypt under it
      local current = gw:slots("DEK_XX_XXYY")[1]
      assert.equal("1001", current.id)
      resp, doc = pan_call1 { sessionKeyId = "1001", sessionKeyCheckValue = current.kcv,
        encryptedPan = client_mod.encrypt_pan(dek, pan) }
      assert_error(resp, doc, 422, "3932")
      resp, doc = pan_call1 { sessionKeyId = "1004", sessionKeyCheckValue = zpk:kcv("CMAC"),
        encryptedPan = client_mod.encrypt_pan(dek, pan) }
      assert_error(resp, doc, 409, "3931")
      resp, doc = pan_call1 { sessionKeyId = "4242", sessionKeyCheckValue = old_kcv, encryptedPan = client_mod.encrypt_pan(dek, pan) }
      assert_error(resp, doc, 404, "3920")
      resp, doc = pan_call1 { sessionKeyId = "1002", sessionKeyCheckValue = old_kcv, encryptedPan = "XYZ" }
      assert_error(resp, doc, 400, "1002")
      resp, doc = call(gw, "POST", "/key-management/transactions/pin-translation", cjson.encode {
        sessionKeyId = "1004", sessionKeyCheckValue = zpk:kcv("CMAC"), pinBlock = ("00"):rep(16), pan = "5413330089600010" })
      assert_error(resp, doc, 422, "3932")
      resp, doc = call(gw, "POST", "/key-management/transactions/pin-translation", cjson.encode {
        sessionKeyId = "1004", sessionKeyCheckValue = zpk:kcv("CMAC"),
        pinBlock = hsm.pin.encrypt(zpk, "ISO_FORMAT_4", "1234", "5413330089600010"),
        pan = "5413330089600010", pinBlockFormat = "ISO_FORMAT_9" })
      assert_error(resp, doc, 400, "1002")
      -- format 0 needs a TDES key: the AES gateway PIN key cannot take it
      resp, doc = call(gw, "POST", "/key-management/transactions/pin-translation", cjson.encode {
        sessionKeyId = "1004", sessionKeyCheckValue = zpk:kcv("CMAC"),
        pinBlock = hsm.pin.encrypt(zpk, "ISO_FORMAT_4", "1234", "5413330089600010"),
        pan = "5413330089600010", outputPinBlockFormat = "ISO_FORMAT_0" })
      assert_error(resp, doc, 400, "1002")
    end)
  end)

  describe("state", function()
    it("stores session keys only wrapped under the local master key, and survives a restart", function()
      local store = memory.new()
      local gw = new_gateway { store = store }
      local key = session_key("D0")
      local clear = key:export()
      import(gw, { key = key })
      for _, k in ipairs(store:keys("")) do
        assert.not_matches(clear, store:get(k), 1, true)
        assert.not_matches(clear:lower(), store:get(k), 1, true)
      end
      local gw2 = new_gateway { store = store } -- a restarted gateway on the same store
      local resp, doc = call(gw2, "GET", "/key-management/keys/1001")
      assert.equal(200, resp.status)
      assert.equal(key:kcv("CMAC"), doc.key.sessionKeyCheckValue)
      local pan = "4111111111111111"
      resp = call(gw2, "POST", "/key-management/transactions/pan-reencryption", cjson.encode {
        sessionKeyId = "1001", sessionKeyCheckValue = key:kcv("CMAC"), encryptedPan = client_mod.encrypt_pan(key, pan) })
      assert.equal(200, resp.status)
    end)

    it("refuses to start on a store written under another storage key", function()
      local store = memory.new()
      new_gateway { store = store, storage_key = { algorithm = "AES_256", hex = ("55"):rep(32) } }
      assert.has_error(function()
        new_gateway { store = store, storage_key = { algorithm = "AES_256", hex = ("66"):rep(32) } }
      end, nil)
      assert.has_no_error(function()
        new_gateway { store = store, storage_key = { algorithm = "AES_256", hex = ("55"):rep(32) } }
      end)
    end)

    -- Key separation: the zone master keys are shared with the integrator, so nothing the
    -- gateway keeps to itself may be derived from them.
    local function bare_gateway(store, master_keys)
      return gateway.new { store = store, basic_auth = { integrator = "s3cret" }, master_keys = master_keys or {
        { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = ZMK_PAN },
        { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = ZMK_PIN } } }
    end

    it("generates its own PAN and PIN keys at random: a twin with the same config has other ones", function()
      local a, b = bare_gateway(memory.new()), bare_gateway(memory.new())
      assert.not_equal(a.gw_pan:kcv("CMAC"), b.gw_pan:kcv("CMAC"))
      assert.not_equal(a.gw_pin:kcv("CMAC"), b.gw_pin:kcv("CMAC"))
      assert.not_equal(a.gw_pan:kcv("CMAC"), a.gw_pin:kcv("CMAC"))
      -- nor are they what a KBKDF of a zone master key would give (the old derivation)
      for _, hex in ipairs { ZMK_PAN, ZMK_PIN } do
        local kdk = hsm.key.import("AES_256", hex)
        for _, label in ipairs { "ZMK_PAN_XXX_YYY", "ZMK_PIN_XXX_YYY" } do
          local k = hsm.key.derive(hsm.key.derive(kdk, "AES_256", "payhsm gateway key derivation", label),
            "AES_256", "payhsm gateway PAN key", "")
          assert.not_equal(k:kcv("CMAC"), a.gw_pan:kcv("CMAC"))
        end
      end
      assert.equal("D0", a.gw_pan.usage)
      assert.equal("P0", a.gw_pin.usage)
    end)

    it("keeps its own keys in the store wrapped under the local master key, across restarts", function()
      local store = memory.new()
      local gw = bare_gateway(store)
      local pan_kcv, pin_kcv = gw.gw_pan:kcv("CMAC"), gw.gw_pin:kcv("CMAC")
      local stored = assert(store:get("gw:own"))
      for _, k in ipairs { gw.gw_pan, gw.gw_pin } do -- non-exportable (N): read through a local wrap
        local hex = require("spec.support.clear")(k)
        assert.not_matches(hex, stored, 1, true)
        assert.not_matches(hex:lower(), stored, 1, true)
      end
      local doc = cjson.decode(stored)
      assert.equal("D0", hsm.tr31.parse(doc.pan).usage)
      assert.equal("P0", hsm.tr31.parse(doc.pin).usage)
      -- a PAN re-encrypted before the restart reads under the restarted gateway's key
      local c = client_mod.new { transport = client_mod.in_process(gw), user = "integrator", password = "s3cret",
        zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = zmk("PAN") } } }
      local dek = assert(c:rotate("PAN", "DEK_R"))
      local out = assert(c:reencrypt_pan(dek, dek.key, "4111111111111111"))
      local again = bare_gateway(store)
      assert.equal(pan_kcv, again.gw_pan:kcv("CMAC"))
      assert.equal(pin_kcv, again.gw_pin:kcv("CMAC"))
      assert.equal(pan_kcv, out.gatewayKeyCheckValue)
      assert.equal("4111111111111111", client_mod.decrypt_pan(again.gw_pan, out.encryptedPan, out.iv))
      assert.equal(stored, store:get("gw:own")) -- not rewritten
    end)

    it("takes the own keys another process stored first (created in one atomic update)", function()
      local store = memory.new()
      local first = bare_gateway(store)
      -- the second process read "no keys yet" before the first one's update committed
      local racing = {}
      for _, m in ipairs { "put", "update", "delete", "ttl", "keys", "close" } do
        racing[m] = function(_, ...) return store[m](store, ...) end
      end
      racing.get = function(_, k)
        if k == "gw:own" then return nil end
        return store:get(k)
      end
      local second = bare_gateway(racing)
      assert.equal(first.gw_pan:kcv("CMAC"), second.gw_pan:kcv("CMAC"))
      assert.equal(first.gw_pin:kcv("CMAC"), second.gw_pin:kcv("CMAC"))
    end)

    it("refuses to start when its own keys in the store do not unwrap", function()
      local store = memory.new()
      bare_gateway(store)
      local doc = cjson.decode(store:get("gw:own"))
      doc.pin = doc.pin:sub(1, -2) .. (doc.pin:sub(-1) == "0" and "1" or "0")
      store:put("gw:own", cjson.encode(doc))
      assert.has_error(function() bare_gateway(store) end,
        "gateway: the gateway's own PIN key in the store does not unwrap under the local master key; refusing to start")
    end)

    it("keeps its derived local master key when master keys are added, and says which one it came from", function()
      local store = memory.new()
      local gw = bare_gateway(store)
      assert.equal("ZMK_PAN_XXX_YYY", gw.lmk_source)
      local lmk_kcv, pan_kcv = gw.lmk:kcv("CMAC"), gw.gw_pan:kcv("CMAC")
      import(gw) -- a session key stored under the LMK
      -- a new master key whose label sorts first
      local more = {
        { label = "AAA_ZMK_PIN_NEW", key_type = "PIN", algorithm = "AES_256", hex = ("77"):rep(32) },
        { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = ZMK_PIN },
        { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = ZMK_PAN },
      }
      local gw2 = bare_gateway(store, more)
      assert.equal(lmk_kcv, gw2.lmk:kcv("CMAC"))
      assert.equal("ZMK_PAN_XXX_YYY", gw2.lmk_source)
      assert.equal(pan_kcv, gw2.gw_pan:kcv("CMAC"))
      local resp = call(gw2, "GET", "/key-management/keys/1001")
      assert.equal(200, resp.status)
      -- a new store with that config derives from the label that sorts first
      assert.equal("AAA_ZMK_PIN_NEW", bare_gateway(memory.new(), more).lmk_source)
      -- without the master key the LMK came from, the gateway cannot read its store
      local ok, err = pcall(bare_gateway, store, { more[1], more[2] })
      assert.is_false(ok)
      assert.matches("no configured master key derives", err)
      -- a startup line tells the operator (no key bytes)
      local lines = {}
      gateway.new { store = store, basic_auth = { integrator = "s3cret" }, master_keys = more,
        log = function(l) lines[#lines + 1] = l end }
      assert.matches("no storage_key configured.*ZMK_PAN_XXX_YYY.*configure storage_key in production", lines[1])
      assert.not_matches(ZMK_PAN, lines[1], 1, true)
    end)

    it("refuses broken configs", function()
      assert.has_error(function() gateway.new {} end)
      assert.has_error(function()
        gateway.new { master_keys = { { label = "Z", key_type = "PAN", hex = ZMK_PAN } } } -- no basic_auth
      end)
      assert.has_error(function()
        gateway.new { basic_auth = { a = "b" }, master_keys = { { label = "Z", key_type = "PAN", hex = "00" } } }
      end)
      assert.has_error(function()
        gateway.new { basic_auth = { a = "b" }, master_keys = { { label = "Z", key_type = "CVV", hex = ZMK_PAN } } }
      end)
      assert.has_error(function()
        gateway.new { basic_auth = { a = "b" }, master_keys = { { label = "Z", key_type = "PAN",
          algorithm = "TDES_2KEY", hex = ("11"):rep(16) } } }
      end)
    end)

    it("never puts key bytes in responses", function()
      local gw = new_gateway()
      local key = session_key("D0")
      local clear = key:export()
      local bodies = { (import(gw, { key = key })).body, (call(gw, "GET", "/key-management/keys/1001")).body,
        (call(gw, "GET", "/key-mgmt/session-keys/keys/sessionKeyLabel=DEK_XX_XXYY")).body }
      for _, b in ipairs(bodies) do
        assert.not_matches(clear, b, 1, true)
        assert.not_matches(ZMK_PAN, b, 1, true)
      end
    end)
  end)

  describe("client", function()
    local function client_for(gw, transport)
      return client_mod.new {
        transport = transport or function(req) return gw:handle(req) end,
        user = "integrator", password = "s3cret",
        zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = zmk("PAN") }, PIN = { label = "ZMK_PIN_XXX_YYY", key = zmk("PIN") } },
      }
    end

    it("generates, wraps, imports and rotates session keys", function()
      local gw = new_gateway()
      local c = client_for(gw)
      for n = 1, 4 do
        local res = assert(c:rotate("PAN", "DEK_XX_XXYY"))
        assert.equal(tostring(1001 + (n - 1) % 3), res.sessionKeyId)
        assert.is_false(res.confirmed)
        local id, kcv, version = c:active("DEK_XX_XXYY")
        assert.equal(res.sessionKeyId, id)
        assert.equal(res.key:kcv("CMAC"), kcv)
        assert.equal("3.0", version)
      end
      local zpk = assert(c:rotate("PIN", "ZPK_1"))
      local doc = assert(c:translate_pin(zpk, zpk.key, "9876", "4111111111111111"))
      assert.equal("9876", hsm.pin.decrypt(hsm.key.import("AES_256", GW_PIN), "ISO_FORMAT_4", doc.pinBlock,
        "4111111111111111"))
    end)

    it("after a timeout, confirms with Get Keys instead of importing twice", function()
      local gw = new_gateway()
      local imports = 0
      local c = client_for(gw, function(req)
        local resp = gw:handle(req)
        if req.path == "/key-management/keys/import" then
          imports = imports + 1
          return nil, "timeout" -- the gateway did the work but the answer was lost
        end
        return resp
      end)
      local res = assert(c:rotate("PAN", "DEK_XX_XXYY"))
      assert.is_true(res.confirmed)
      assert.equal("1001", res.sessionKeyId)
      assert.equal(1, imports)
      assert.equal(1, #gw:slots("DEK_XX_XXYY"))
    end)

    it("imports again when the confirmation shows the first attempt never arrived", function()
      local gw = new_gateway()
      local dropped = false
      local c = client_for(gw, function(req)
        if req.path == "/key-management/keys/import" and not dropped then
          dropped = true
          return nil, "connection refused"
        end
        return gw:handle(req)
      end)
      local res = assert(c:rotate("PAN", "DEK_XX_XXYY"))
      assert.is_false(res.confirmed)
      assert.equal(1, #gw:slots("DEK_XX_XXYY"))
    end)

    it("reports a key as imported when a retry gets 301 after a lost answer and a failed Get Keys", function()
      local gw = new_gateway()
      local imports, lists, sleeps = 0, 0, {}
      local c = client_mod.new {
        transport = function(req)
          local resp = client_mod.in_process(gw)(req)
          if req.path == "/key-management/keys/import" then
            imports = imports + 1
            if imports == 1 then return nil, "timeout" end -- imported, answer lost
          else
            lists = lists + 1
            if lists == 1 then return nil, "connection reset" end -- the confirmation fails too
          end
          return resp
        end,
        user = "integrator", password = "s3cret", sleep = function(s) sleeps[#sleeps + 1] = s end,
        zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = zmk("PAN") } },
      }
      local key = c:generate("PAN")
      local res, msg = c:import("PAN", "DEK_XX_XXYY", key)
      assert.is_table(res, msg)
      assert.is_true(res.confirmed)
      assert.equal("1001", res.sessionKeyId)
      assert.equal(key:kcv("CMAC"), res.sessionKeyCheckValue)
      assert.equal("3.0", res.version)
      assert.equal(2, imports) -- the retry got 301
      assert.equal(1, #gw:slots("DEK_XX_XXYY"))
      assert.same({ 0.1 }, sleeps) -- a backoff before the retry
    end)

    it("backs off between retries (doubling) and gives up with the last error", function()
      local sleeps = {}
      local c = client_mod.new {
        transport = function() return nil, "connection refused" end,
        user = "integrator", password = "s3cret", attempts = 3, backoff = 0.05,
        sleep = function(s) sleeps[#sleeps + 1] = s end,
        zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = zmk("PAN") } },
      }
      local res, msg, code = c:import("PAN", "DEK_XX_XXYY", c:generate("PAN"))
      assert.is_nil(res)
      assert.equal("TRANSPORT", code)
      assert.matches("connection refused", msg)
      assert.same({ 0.05, 0.1 }, sleeps)
    end)

    it("fails when a retry gets 301 but Get Keys never confirms the key", function()
      local gw = new_gateway()
      local imports = 0
      local c = client_mod.new {
        transport = function(req)
          if req.path == "/key-management/keys/import" then
            imports = imports + 1
            local resp = client_mod.in_process(gw)(req)
            if imports == 1 then return nil, "timeout" end
            return resp
          end
          return nil, "connection reset"
        end,
        user = "integrator", password = "s3cret", sleep = function() end,
        zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = zmk("PAN") } },
      }
      local res, msg, code = c:import("PAN", "DEK_XX_XXYY", c:generate("PAN"))
      assert.is_nil(res)
      assert.equal("TRANSPORT", code)
      assert.matches("301 on a retry", msg)
    end)

    it("returns the gateway's error code on refusal", function()
      local gw = new_gateway()
      local c = client_for(gw)
      local key = c:generate("PAN")
      assert(c:import("PAN", "DEK_XX_XXYY", key))
      local res, msg, code = c:import("PAN", "DEK_XX_XXYY", key)
      assert.is_nil(res)
      assert.equal("301", code)
      assert.matches("409", msg)
    end)
  end)
end)
