-- The multi-use public key service (lua/payhsm/mupk) and its merchant, driven as pure
-- handlers on a simulated clock. Source: Commerce Hub's multi-use public keys
-- (Generate Key and Revoke Key bodies, statuses, the key expiry rules, webhooks at 47,
-- 44 and 41 hours, the merchant's best practices).
local cjson = require "cjson"
local core = require "payhsm.core"
local util = require "payhsm.util"
local mupk = require "payhsm.mupk"
local merchant_mod = require "payhsm.mupk.merchant"
local memory = require "payhsm.store.memory"

local MID = "123456789012345"
local T = mupk.parse_time
local H, DAY = 3600, 86400
local LMK = { algorithm = "AES_256", hex = ("7A"):rep(32) }
local CARD = { cardData = "4005550000000019", expirationMonth = "12", expirationYear = "2030" }

local function env(extra)
  local e = { now = T("2024-01-01T00:00:00Z"), posts = {}, answer = 200 }
  e.clock = function() return e.now end
  local cfg = { clock = e.clock, storage_key = LMK, webhook_url = "http://127.0.0.1:1/hooks",
    webhook_post = function(url, body, headers)
      e.posts[#e.posts + 1] = { url = url, doc = cjson.decode(body), headers = headers, at = e.now }
      if type(e.answer) == "function" then return e.answer() end
      return e.answer
    end }
  -- pure-handler specs: no authentication unless a case configures it
  if not (extra and (extra.basic_auth or extra.tls or extra.auth)) then cfg.auth = "none" end
  for k, v in pairs(extra or {}) do cfg[k] = v end
  cfg.store = cfg.store or memory.new { clock = e.clock }
  e.store = cfg.store
  e.svc = mupk.new(cfg)
  return e
end

local function call(e, method, path, body, headers)
  local resp = e.svc:handle { method = method, path = path, headers = headers or {},
    body = type(body) == "table" and cjson.encode(body) or body }
  return resp, cjson.decode(resp.body)
end

local function generate(e, mid, want)
  return call(e, "POST", "/security/v1/keys/generate",
    { merchantDetails = { merchantId = mid or MID }, asymmetricKeyDetails = want })
end

local function revoke(e, id, mid)
  return call(e, "POST", "/security/v1/keys/" .. id .. "/revoke", { merchantDetails = { merchantId = mid or MID } })
end

local function status_of(e, id)
  local _, doc = call(e, "GET", "/security/v1/keys/" .. id)
  return doc.asymmetricKeyDetails.status
end

local function hex_of(b64)
  return (util.b64decode(b64):gsub(".", function(c) return ("%02X"):format(c:byte()) end))
end

-- Seals card data the way the merchant does, under the public key of a key response.
local function sealed_body(details, opts)
  opts = opts or {}
  local pub = assert(core.rsa.public(hex_of(details.encodedPublicKey)))
  local s = core.rsa.seal(pub, cjson.encode(opts.card or CARD), opts.aad or details.keyId)
  local ed = { keyId = opts.keyId or details.keyId, encryptionType = "RSA", encryptedKey = s.encrypted_key,
    iv = s.iv, encryptionBlock = s.ciphertext, authenticationTag = s.tag }
  if opts.tamper then ed[opts.tamper] = ed[opts.tamper]:sub(1, 5) ..
    (ed[opts.tamper]:sub(6, 6) == "0" and "1" or "0") .. ed[opts.tamper]:sub(7) end
  return { merchantDetails = { merchantId = opts.mid or MID },
    amount = { total = opts.total or 25.50, currency = "USD" },
    transactionDetails = { merchantTransactionId = "tx-1", captureTime = "2024-01-01T00:00:00Z" },
    source = { sourceType = "PaymentCard", encryptionData = ed } }
end

local function pay(e, details, opts)
  return call(e, "POST", "/security/v1/transactions", sealed_body(details, opts))
end

local function keys_of(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function assert_error(resp, doc, status, name)
  assert.equal(status, resp.status)
  assert.equal(mupk.ERRORS[name][2], doc.error[1].code)
  assert.equal(mupk.ERRORS[name][3], doc.error[1].message)
  assert.is_table(doc.gatewayResponse.transactionProcessingDetails)
end

describe("mupk", function()
  describe("POST /security/v1/keys/generate", function()
    it("answers 201 with Commerce Hub's fields, an RSA-2048 SPKI in base64 and AES-GCM 256", function()
      local e = env()
      local resp, doc = generate(e, MID)
      assert.equal(201, resp.status)
      assert.same({ "asymmetricKeyDetails", "gatewayResponse", "symmetricKeyDetails" }, keys_of(doc))
      assert.same({ "apiTraceId", "clientRequestId", "transactionId", "transactionTimestamp" },
        keys_of(doc.gatewayResponse.transactionProcessingDetails))
      assert.equal("2024-01-01T00:00:00Z", doc.gatewayResponse.transactionProcessingDetails.transactionTimestamp)
      assert.matches("^%x+$", doc.gatewayResponse.transactionProcessingDetails.apiTraceId)
      local a = doc.asymmetricKeyDetails
      assert.same({ "encodedPublicKey", "encryptionType", "keyId", "modulus", "status", "validFrom", "validTo" },
        keys_of(a))
      assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", a.keyId)
      assert.equal("RSA", a.encryptionType)
      assert.equal(2048, a.modulus)
      assert.matches("^MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", a.encodedPublicKey) -- Commerce Hub's prefix
      assert.equal(2048, core.rsa.public(hex_of(a.encodedPublicKey)):bits())
      assert.equal("2024-01-01T00:00:00Z", a.validFrom)
      assert.equal("2024-01-21T00:00:00Z", a.validTo) -- 20 days, as Commerce Hub's example
      assert.equal("ACTIVE", a.status)
      assert.same({ encryptionType = "AES-GCM", modulus = 256 }, doc.symmetricKeyDetails)
      -- field order as Commerce Hub writes it
      assert.matches('^{"gatewayResponse":{"transactionProcessingDetails":{"transactionTimestamp":.-}},' ..
        '"asymmetricKeyDetails":{"keyId":.-"status":"ACTIVE"},"symmetricKeyDetails":{"encryptionType":"AES%-GCM",' ..
        '"modulus":256}}$', resp.body)
    end)
    it("echoes Client-Request-Id", function()
      local e = env()
      local resp, doc = call(e, "POST", "/security/v1/keys/generate", { merchantDetails = { merchantId = MID } },
        { ["client-request-id"] = "4345791" })
      assert.equal("4345791", doc.gatewayResponse.transactionProcessingDetails.clientRequestId)
      assert.equal("4345791", resp.headers["Client-Request-Id"])
    end)
    it("stores the private key only wrapped under the local master key", function()
      local e = env()
      local _, doc = generate(e)
      local rec = cjson.decode(e.store:get("mupk:key:" .. doc.asymmetricKeyDetails.keyId))
      assert.same({ "createdAt", "encodedPublicKey", "keyId", "merchantId", "modulus", "seq", "validFrom", "validTo",
        "wrappedPrivateKey" }, keys_of(rec))
      local lmk = core.key.import("AES_256", LMK.hex, { usage = "K0" })
      local priv = assert(core.rsa.unwrap(lmk, rec.wrappedPrivateKey))
      assert.equal(hex_of(doc.asymmetricKeyDetails.encodedPublicKey), priv:public_der())
      assert.equal("RSA_UNWRAP", select(3, core.rsa.unwrap(core.key.generate("AES_256", { usage = "K0" }),
        rec.wrappedPrivateKey)))
    end)
    it("takes a requested window (ours) inside the limits", function()
      local e = env()
      local resp, doc = generate(e, MID, { validFrom = "2024-01-02T00:00:00Z", validTo = "2024-01-05T12:00:00Z" })
      assert.equal(201, resp.status)
      assert.equal("2024-01-02T00:00:00Z", doc.asymmetricKeyDetails.validFrom)
      assert.equal("INACTIVE", doc.asymmetricKeyDetails.status) -- not yet valid
      assert_error(select(1, generate(e, MID, { validFrom = "2023-12-31T23:59:59Z" })), select(2,
        generate(e, MID, { validFrom = "2023-12-31T23:59:59Z" })), 400, "VALIDITY")
      local r2, d2 = generate(e, MID, { validTo = "2024-01-01T00:00:00Z" })
      assert_error(r2, d2, 400, "VALIDITY")
      r2, d2 = generate(e, MID, { validTo = "2024-06-01T00:00:00Z" })
      assert_error(r2, d2, 400, "VALIDITY")
      r2, d2 = generate(e, MID, { validTo = "January" })
      assert_error(r2, d2, 400, "VALIDITY")
    end)
    it("refuses a missing merchantId, bad JSON and other methods", function()
      local e = env()
      local resp, doc = call(e, "POST", "/security/v1/keys/generate", { merchantDetails = {} })
      assert_error(resp, doc, 400, "MERCHANT_ID")
      resp, doc = call(e, "POST", "/security/v1/keys/generate", "{nope")
      assert_error(resp, doc, 400, "BAD_REQUEST")
      resp, doc = call(e, "GET", "/security/v1/keys/generate")
      assert.equal(405, resp.status)
      resp, doc = call(e, "POST", "/security/v1/elsewhere", {})
      assert_error(resp, doc, 404, "NOT_FOUND")
    end)
    it("requires Basic authorization when configured", function()
      local e = env { basic_auth = { shop = "pw" } }
      local resp, doc = generate(e)
      assert_error(resp, doc, 401, "UNAUTHORIZED")
      resp = call(e, "POST", "/security/v1/keys/generate", { merchantDetails = { merchantId = MID } },
        { authorization = "Basic " .. util.b64encode("shop:pw") })
      assert.equal(201, resp.status)
    end)
  end)

  describe("access, limits and the store", function()
    local AUTH = { authorization = "Basic " .. util.b64encode("shop:pw") }

    -- A memory store that counts what it commits: puts, deletes, and updates whose
    -- function returned (an update whose function raises leaves the store as it was).
    local function counting_store(clock)
      local s = memory.new { clock = clock }
      s.writes = 0
      for _, m in ipairs { "put", "delete" } do
        local orig = s[m]
        s[m] = function(self, ...)
          self.writes = self.writes + 1
          return orig(self, ...)
        end
      end
      local update = s.update
      s.update = function(self, key, fn, opts)
        local function committed(...)
          self.writes = self.writes + 1
          return ...
        end
        return update(self, key, function(old) return committed(fn(old)) end, opts)
      end
      return s
    end

    it("refuses to start without authentication unless it is turned off explicitly", function()
      local base = { storage_key = LMK, store = memory.new() }
      local ok, err = pcall(mupk.new, base)
      assert.is_false(ok)
      assert.equal('mupk: config needs basic_auth = {user = "password"} or tls.client_ca (mutual TLS); '
        .. 'auth = "none" turns authentication off, for local experiments only', err)
      for _, bad in ipairs { { auth = "basic" }, { auth = "none", basic_auth = { shop = "pw" } }, { basic_auth = {} },
        { tls = { cert = "c", key = "k" } } } do
        local cfg = { storage_key = LMK, store = memory.new() }
        for k, v in pairs(bad) do cfg[k] = v end
        assert.is_false(pcall(mupk.new, cfg))
      end
      -- Basic, mutual TLS (payhsm.http checks the client certificate before the handler
      -- runs), or an explicit opt-out that says so in the log
      assert.is_table(mupk.new { storage_key = LMK, store = memory.new(), basic_auth = { shop = "pw" } })
      assert.is_table(mupk.new { storage_key = LMK, store = memory.new(),
        tls = { cert = "c.pem", key = "k.pem", client_ca = "ca.pem" } })
      local lines = {}
      assert.is_table(mupk.new { storage_key = LMK, store = memory.new(), auth = "none",
        log = function(l) lines[#lines + 1] = l end })
      assert.equal("mupk: WARNING: auth = \"none\": every client may generate, read and revoke keys; "
        .. "for local experiments only", lines[1])
    end)

    it("warns at start when no storage_key is configured", function()
      local lines = {}
      mupk.new { auth = "none", store = memory.new(), log = function(l) lines[#lines + 1] = l end }
      assert.equal("mupk: no storage_key configured: the local master key is random and lives only as long as "
        .. "this process (keys in a durable store become unusable at restart); configure storage_key", lines[2])
      lines = {}
      mupk.new { auth = "none", store = memory.new(), storage_key = LMK, log = function(l) lines[#lines + 1] = l end }
      assert.equal(1, #lines) -- only the auth warning
    end)

    it("writes nothing to the store for a refused request", function()
      local now = T("2024-01-01T00:00:00Z")
      local store = counting_store(function() return now end)
      local svc = mupk.new { storage_key = LMK, store = store, clock = function() return now end,
        basic_auth = { shop = "pw" }, generate_rate = { per_minute = 1 } }
      local function req(method, path, body, headers)
        return svc:handle { method = method, path = path, headers = headers or AUTH,
          body = type(body) == "table" and cjson.encode(body) or body }
      end
      local gen = { merchantDetails = { merchantId = MID } }
      local first = req("POST", "/security/v1/keys/generate", gen)
      assert.equal(201, first.status)
      local id = cjson.decode(first.body).asymmetricKeyDetails.keyId
      local before = store.writes
      local refused = {
        { 401, req("POST", "/security/v1/keys/generate", gen, {}) },
        { 401, req("POST", "/security/v1/keys/" .. id .. "/revoke", gen, { authorization = "Basic bm9wZQ==" }) },
        { 404, req("GET", "/security/v1/nothing") },
        { 404, req("GET", "/security/v1/keys/nope") },
        { 404, req("POST", "/security/v1/keys/nope/revoke", gen) },
        { 404, req("POST", "/security/v1/keys/" .. id .. "/revoke", { merchantDetails = { merchantId = "other" } }) },
        { 405, req("PUT", "/security/v1/keys/generate", gen) },
        { 400, req("POST", "/security/v1/keys/generate", "{") },
        { 400, req("POST", "/security/v1/keys/generate", { merchantDetails = {} }) },
        { 429, req("POST", "/security/v1/keys/generate", gen) },
        { 400, req("POST", "/security/v1/transactions", { merchantDetails = { merchantId = MID } }) },
        { 200, req("GET", "/security/v1/keys/" .. id) }, -- a read writes nothing either
      }
      for i, r in ipairs(refused) do assert.equal(r[1], r[2].status, "request " .. i) end
      assert.equal(before, store.writes)
      -- every answer still carries a transactionId (12 digits), none of them from the store
      for _, r in ipairs(refused) do
        local doc = cjson.decode(r[2].body)
        assert.matches("^%d%d%d%d%d%d%d%d%d%d%d%d$",
          doc.gatewayResponse.transactionProcessingDetails.transactionId)
      end
    end)

    it("limits generate per merchant (generate_rate.per_minute): 429 with Retry-After", function()
      local e = env { generate_rate = { per_minute = 2 } }
      assert.equal(201, (generate(e)).status)
      e.now = e.now + 10
      assert.equal(201, (generate(e)).status)
      e.now = e.now + 20
      local resp, doc = generate(e)
      assert_error(resp, doc, 429, "TOO_MANY_REQUESTS")
      assert.equal("30", resp.headers["Retry-After"]) -- the window opened 30 s ago
      assert.equal(1, #e.store:keys("mupk:merchant:")) -- nothing generated
      assert.equal(201, (generate(e, "999999999999999")).status) -- another merchant
      e.now = e.now + 29
      assert.equal(429, (generate(e)).status)
      e.now = e.now + 1
      assert.equal(201, (generate(e)).status) -- a new minute
      -- the default: 10 a minute
      local d = env()
      for _ = 1, 10 do assert.equal(201, (generate(d)).status) end
      assert.equal(429, (generate(d)).status)
      assert.has_error(function() env { generate_rate = { per_minute = 0 } } end)
      assert.has_error(function() env { generate_rate = { per_hour = 5 } } end)
    end)

    it("bounds the cache of unwrapped private keys (cache_size), closing what it drops", function()
      local e = env { cache_size = 2, generate_rate = { per_minute = 100 } }
      local ds, first = {}, nil
      for i = 1, 7 do
        local _, g = generate(e)
        ds[i] = g.asymmetricKeyDetails
        if i == 1 then first = e.svc.cache:get(ds[1].keyId).key end
      end
      assert.is_true(e.svc.cache:count() <= 4, e.svc.cache:count())
      assert.equal("payhsm.RsaKey(closed)", tostring(first))
      -- a dropped key is unwrapped again from the store when a transaction needs it
      assert.is_nil(e.svc.cache:get(ds[1].keyId))
      assert.equal(201, (pay(e, ds[1])).status)
      assert.is_table(e.svc.cache:get(ds[1].keyId))
      assert.has_error(function() env { cache_size = 0 } end)
    end)
  end)

  describe("POST /security/v1/keys/{keyId}/revoke", function()
    it("answers 201 with the key's details, status REVOKED", function()
      local e = env()
      local _, g = generate(e)
      local id = g.asymmetricKeyDetails.keyId
      local resp, doc = revoke(e, id)
      assert.equal(201, resp.status)
      assert.same({ "asymmetricKeyDetails", "gatewayResponse", "symmetricKeyDetails" }, keys_of(doc))
      assert.equal("REVOKED", doc.asymmetricKeyDetails.status)
      assert.equal(g.asymmetricKeyDetails.encodedPublicKey, doc.asymmetricKeyDetails.encodedPublicKey)
      assert.equal("REVOKED", status_of(e, id))
    end)
    it("refuses a second revoke, another merchant's key, an unknown key and an expired key", function()
      local e = env()
      local _, g = generate(e)
      local id = g.asymmetricKeyDetails.keyId
      assert_error(select(1, revoke(e, id, "999")), select(2, revoke(e, id, "999")), 404, "KEY_NOT_FOUND")
      revoke(e, id)
      local resp, doc = revoke(e, id)
      assert_error(resp, doc, 409, "ALREADY_REVOKED")
      resp, doc = revoke(e, "00000000-0000-4000-8000-000000000000")
      assert_error(resp, doc, 404, "KEY_NOT_FOUND")
      local _, g2 = generate(e)
      e.now = T(g2.asymmetricKeyDetails.validTo) + 1
      resp, doc = revoke(e, g2.asymmetricKeyDetails.keyId)
      assert_error(resp, doc, 409, "KEY_EXPIRED_REVOKE")
      resp, doc = call(e, "POST", "/security/v1/keys/" .. id .. "/revoke", { merchantDetails = {} })
      assert_error(resp, doc, 400, "MERCHANT_ID")
    end)
  end)

  describe("statuses", function()
    it("ACTIVE -> LEGACY when a newer key is generated, LEGACY -> ACTIVE when the newer one is revoked", function()
      local e = env()
      local _, a = generate(e)
      e.now = e.now + DAY
      local _, b = generate(e)
      local ida, idb = a.asymmetricKeyDetails.keyId, b.asymmetricKeyDetails.keyId
      assert.equal("LEGACY", status_of(e, ida))
      assert.equal("ACTIVE", status_of(e, idb))
      revoke(e, idb)
      assert.equal("ACTIVE", status_of(e, ida))
      assert.equal("REVOKED", status_of(e, idb))
    end)
    it("ACTIVE/LEGACY -> INACTIVE at validTo; a future key INACTIVE -> ACTIVE at validFrom; REVOKED stays", function()
      local e = env()
      local _, a = generate(e, MID, { validTo = "2024-01-10T00:00:00Z" })
      local _, f = generate(e, MID, { validFrom = "2024-01-05T00:00:00Z", validTo = "2024-01-15T00:00:00Z" })
      local _, r = generate(e, "other")
      local ida, idf, idr = a.asymmetricKeyDetails.keyId, f.asymmetricKeyDetails.keyId, r.asymmetricKeyDetails.keyId
      revoke(e, idr, "other")
      e.now = T("2024-01-04T23:59:59Z")
      assert.equal("ACTIVE", status_of(e, ida))
      assert.equal("INACTIVE", status_of(e, idf))
      e.now = T("2024-01-05T00:00:00Z")
      assert.equal("LEGACY", status_of(e, ida))
      assert.equal("ACTIVE", status_of(e, idf))
      e.now = T("2024-01-10T00:00:00Z")
      assert.equal("LEGACY", status_of(e, ida))
      e.now = e.now + 1
      assert.equal("INACTIVE", status_of(e, ida))
      e.now = T("2024-02-01T00:00:00Z")
      assert.equal("INACTIVE", status_of(e, idf))
      assert.equal("REVOKED", status_of(e, idr))
    end)
    it("GET answers 404 for an unknown key or another merchant", function()
      local e = env()
      local _, a = generate(e)
      local resp, doc = call(e, "GET", "/security/v1/keys/nope")
      assert_error(resp, doc, 404, "KEY_NOT_FOUND")
      resp = e.svc:handle { method = "GET", path = "/security/v1/keys/" .. a.asymmetricKeyDetails.keyId,
        query = "merchantId=someone" }
      assert.equal(404, resp.status)
    end)
  end)

  describe("POST /security/v1/transactions", function()
    it("decrypts the card data and answers 201 without the PAN", function()
      local e = env()
      local _, g = generate(e)
      local resp, doc = pay(e, g.asymmetricKeyDetails)
      assert.equal(201, resp.status)
      assert.equal("CAPTURED", doc.gatewayResponse.transactionState)
      assert.equal("400555", doc.source.card.bin)
      assert.equal("0019", doc.source.card.last4)
      assert.equal(25.5, doc.paymentReceipt.approvedAmount.total)
      assert.is_nil(resp.body:find("4005550000000019", 1, true))
    end)
    it("is accepted from validFrom to validTo inclusive, one second outside refused", function()
      local e = env()
      local _, g = generate(e, MID, { validFrom = "2024-01-02T00:00:00Z", validTo = "2024-01-09T23:59:59Z" })
      local d = g.asymmetricKeyDetails
      -- one second before and after validFrom and validTo
      e.now = T("2024-01-01T23:59:59Z") -- validFrom - 1 s
      assert_error(select(1, pay(e, d)), select(2, pay(e, d)), 422, "KEY_NOT_YET_VALID")
      assert.equal("INACTIVE", status_of(e, d.keyId))
      e.now = T("2024-01-02T00:00:00Z") -- validFrom
      assert.equal(201, (pay(e, d)).status)
      e.now = T("2024-01-02T00:00:01Z") -- validFrom + 1 s
      assert.equal(201, (pay(e, d)).status)
      assert.equal("ACTIVE", status_of(e, d.keyId))
      e.now = T("2024-01-09T23:59:58Z") -- validTo - 1 s
      assert.equal(201, (pay(e, d)).status)
      e.now = T("2024-01-09T23:59:59Z") -- validTo: the last valid second
      assert.equal(201, (pay(e, d)).status)
      assert.equal("ACTIVE", status_of(e, d.keyId))
      e.now = T("2024-01-10T00:00:00Z") -- validTo + 1 s
      assert.equal("INACTIVE", status_of(e, d.keyId))
      local resp, doc = pay(e, d)
      assert_error(resp, doc, 422, "KEY_EXPIRED") -- Commerce Hub's expiry response
    end)
    it("answers a revoked key with Commerce Hub's expiry response (details say revoked)", function()
      local e = env()
      local _, g = generate(e)
      local body = sealed_body(g.asymmetricKeyDetails) -- sealed before the revocation
      e.now = e.now + 60
      revoke(e, g.asymmetricKeyDetails.keyId)
      local resp, doc = call(e, "POST", "/security/v1/transactions", body)
      assert_error(resp, doc, 422, "KEY_EXPIRED") -- the same code and message as an expired key
      assert.equal("1020", doc.error[1].code)
      assert.equal("key revoked 2024-01-01T00:01:00Z", doc.error[1].details)
      assert.is_nil(mupk.ERRORS.KEY_REVOKED)
      e.now = T(g.asymmetricKeyDetails.validTo) + 1
      resp, doc = call(e, "POST", "/security/v1/transactions", body)
      assert_error(resp, doc, 422, "KEY_EXPIRED")
      assert.equal("key revoked 2024-01-01T00:01:00Z", doc.error[1].details) -- revoked, then expired
    end)
    it("refuses a keyId longer than Commerce Hub's 64 characters with 400, code 1013", function()
      local e = env()
      local long = ("a"):rep(65)
      local resp, doc = revoke(e, long)
      assert_error(resp, doc, 400, "KEY_ID")
      assert.equal("1013", doc.error[1].code)
      assert.equal("keyId", doc.error[1].field)
      resp, doc = call(e, "GET", "/security/v1/keys/" .. long)
      assert_error(resp, doc, 400, "KEY_ID")
      local _, g = generate(e)
      resp, doc = pay(e, g.asymmetricKeyDetails, { keyId = long })
      assert_error(resp, doc, 400, "KEY_ID")
      assert.equal("source.encryptionData.keyId", doc.error[1].field)
      -- 64 characters is a well-formed id: unknown, 404
      resp, doc = revoke(e, ("a"):rep(64))
      assert_error(resp, doc, 404, "KEY_NOT_FOUND")
      resp, doc = pay(e, g.asymmetricKeyDetails, { keyId = ("a"):rep(64) })
      assert_error(resp, doc, 404, "KEY_NOT_FOUND")
    end)
    it("refuses tampered ciphertext, tag, IV or encrypted key", function()
      local e = env()
      local _, g = generate(e)
      for field, code in pairs { encryptionBlock = "GCM_TAG", authenticationTag = "GCM_TAG", iv = "GCM_TAG",
                                 encryptedKey = "RSA_DECRYPT" } do
        local resp, doc = pay(e, g.asymmetricKeyDetails, { tamper = field })
        assert_error(resp, doc, 422, "DECRYPTION")
        assert.equal(code, doc.error[1].details, field)
      end
    end)
    it("refuses data sealed under another key (key id swapped) or another merchant's key", function()
      local e = env()
      local _, a = generate(e)
      local _, b = generate(e)
      local resp, doc = pay(e, a.asymmetricKeyDetails, { keyId = b.asymmetricKeyDetails.keyId })
      assert_error(resp, doc, 422, "DECRYPTION")
      resp, doc = pay(e, a.asymmetricKeyDetails, { mid = "someone-else" })
      assert_error(resp, doc, 404, "KEY_NOT_FOUND")
      -- right key, but the AAD names another key id: the GCM tag catches it
      resp, doc = pay(e, a.asymmetricKeyDetails, { aad = b.asymmetricKeyDetails.keyId })
      assert_error(resp, doc, 422, "DECRYPTION")
    end)
    it("checks the amount, the card data and the fields", function()
      local e = env { max_offline_amount = 500 }
      local _, g = generate(e)
      local d = g.asymmetricKeyDetails
      assert_error(select(1, pay(e, d, { total = -1 })), select(2, pay(e, d, { total = -1 })), 400, "AMOUNT")
      local resp, doc = pay(e, d, { total = 500.01 })
      assert_error(resp, doc, 422, "AMOUNT_LIMIT")
      resp, doc = pay(e, d, { card = { cardData = "4005550000000018" } })
      assert_error(resp, doc, 422, "CARD_DATA")
      local body = sealed_body(d)
      body.source.encryptionData.iv = nil
      resp, doc = call(e, "POST", "/security/v1/transactions", body)
      assert_error(resp, doc, 400, "BAD_REQUEST")
      body = sealed_body(d)
      body.source.encryptionData.encryptionBlock = "ZZ"
      resp, doc = call(e, "POST", "/security/v1/transactions", body)
      assert_error(resp, doc, 422, "DECRYPTION")
      assert.equal("BAD_HEX", doc.error[1].details)
    end)
    it("decrypts after a restart on the same store (the wrapped key is unwrapped under the LMK)", function()
      local e = env()
      local _, g = generate(e)
      local e2 = env { store = e.store }
      assert.equal(201, (pay(e2, g.asymmetricKeyDetails)).status)
      assert.has_error(function() env { store = e.store, storage_key = { hex = ("11"):rep(32) } } end)
    end)
  end)

  describe("expiry webhooks (tick)", function()
    local function setup_key(e, mid)
      local _, g = generate(e, mid)
      return g.asymmetricKeyDetails.keyId, T(g.asymmetricKeyDetails.validTo)
    end

    it("sends three, at 47, 44 and 41 hours before expiry, each at the mark and not a second before", function()
      local e = env()
      local id, to = setup_key(e)
      for _, h in ipairs { 47, 44, 41 } do
        e.now = to - h * H - 1
        e.svc:tick()
        local before = #e.posts
        e.now = to - h * H
        assert.equal(1, e.svc:tick())
        assert.equal(before + 1, #e.posts)
      end
      assert.equal(3, #e.posts)
      for i, h in ipairs { 47, 44, 41 } do
        local doc = e.posts[i].doc
        assert.equal("KEY_EXPIRY_NOTIFICATION", doc.eventType)
        assert.equal(h, doc.notification.hoursBeforeExpiry)
        assert.equal(i, doc.notification.number)
        assert.equal(id, doc.asymmetricKeyDetails.keyId)
        assert.equal(MID, doc.merchantDetails.merchantId)
        assert.equal("http://127.0.0.1:1/hooks", e.posts[i].url)
        assert.equal(id .. "-" .. h, e.posts[i].headers["Webhook-Id"])
      end
    end)
    it("sends each at most once, also from a second service on the same store", function()
      local e = env()
      local _, to = setup_key(e)
      for _, h in ipairs { 47, 44, 41 } do e.now = to - h * H e.svc:tick() e.svc:tick() end
      assert.equal(3, #e.posts)
      for _ = 1, 5 do e.now = e.now + H e.svc:tick() end
      local e2 = env { store = e.store }
      e2.now = e.now
      e2.svc:tick()
      assert.equal(3, #e.posts)
      assert.equal(0, #e2.posts)
    end)
    it("retries a failed delivery after webhook_retry seconds, not before", function()
      local e = env { webhook_retry = 600 }
      local id, to = setup_key(e)
      e.answer = 503
      e.now = to - 47 * H
      e.svc:tick()
      assert.equal(1, #e.posts)
      e.now = e.now + 599
      e.svc:tick()
      assert.equal(1, #e.posts)
      e.answer = function() error("connection refused") end
      e.now = e.now + 1
      e.svc:tick()
      assert.equal(2, #e.posts)
      e.answer = 204
      e.now = e.now + 600
      assert.equal(1, e.svc:tick())
      assert.equal(3, #e.posts)
      local st = e.svc:notifications(id)[47]
      assert.equal("delivered", st.state)
      assert.equal(3, st.attempts)
      e.now = e.now + 600
      e.svc:tick()
      assert.equal(3, #e.posts)
    end)
    it("is not sent once the merchant has a newer key", function()
      local e = env()
      local _, to = setup_key(e)
      e.now = to - 48 * H
      generate(e) -- the best practice: a new key 2 days before
      for _ = 1, 50 do e.now = e.now + H e.svc:tick() end
      assert.equal(0, #e.posts)
      local e2 = env()
      local _, to2 = setup_key(e2)
      e2.now = to2 - 47 * H
      e2.svc:tick()
      generate(e2) -- after the first notification: the other two are not sent
      for _ = 1, 50 do e2.now = e2.now + H e2.svc:tick() end
      assert.equal(1, #e2.posts)
    end)
    it("is not sent for a revoked key, nor after expiry, and goes to the merchant's own URL", function()
      local e = env { merchants = { shop2 = { webhook_url = "http://127.0.0.1:2/shop2" } } }
      local id = setup_key(e)
      revoke(e, id)
      local _, to2 = setup_key(e, "shop2")
      e.now = to2 + 1
      e.svc:tick()
      assert.equal(0, #e.posts)
      local e2 = env { merchants = { shop2 = { webhook_url = "http://127.0.0.1:2/shop2" } } }
      local _, to3 = setup_key(e2, "shop2")
      e2.now = to3 - 47 * H
      e2.svc:tick()
      assert.equal("http://127.0.0.1:2/shop2", e2.posts[1].url)
    end)
    it("posts over real HTTP with the default transport", function()
      local http = require "payhsm.http"
      local got = {}
      local srv = http.new { host = "127.0.0.1", port = 0, quiet = true, handler = function(req)
        got[#got + 1] = req
        return { status = 200, body = "ok" }
      end }
      finally(function() srv:close() end)
      local e = env { webhook_url = ("http://127.0.0.1:%d/wh"):format(srv:port()),
        webhook_pump = function() srv:run_once(5) end }
      e.svc.post = require("payhsm.mupk").new { storage_key = LMK, store = e.store, auth = "none",
        webhook_pump = function() srv:run_once(5) end }.post -- the real transport, not the spy
      local _, to = setup_key(e)
      e.now = to - 47 * H
      assert.equal(1, e.svc:tick())
      e.now = to - 44 * H
      assert.equal(1, e.svc:tick())
      assert.equal(2, #got)
      assert.equal("POST", got[1].method)
      assert.equal("/wh", got[1].path)
      assert.equal(47, cjson.decode(got[1].body).notification.hoursBeforeExpiry)
      -- nobody listening: a failure, recorded for retry
      local e2 = env { webhook_url = "http://127.0.0.1:1/none" }
      e2.svc.post = require("payhsm.mupk").new { storage_key = LMK, store = e2.store, auth = "none", webhook_timeout = 1 }.post
      local id2, to2 = setup_key(e2)
      e2.now = to2 - 47 * H
      assert.equal(0, e2.svc:tick())
      assert.equal("failed", e2.svc:notifications(id2)[47].state)
    end)
    it("sorts webhook_hours (any order) and refuses a bad list", function()
      local e = env { webhook_hours = { 41, 44, 47 } }
      assert.same({ 47, 44, 41 }, e.svc.hours)
      local _, to = setup_key(e)
      e.now = to - 47 * H
      assert.equal(1, e.svc:tick()) -- at 47 h, the first mark of the sorted list
      assert.equal(47, e.posts[1].doc.notification.hoursBeforeExpiry)
      assert.equal(1, e.posts[1].doc.notification.number)
      e.now = to - 44 * H
      assert.equal(1, e.svc:tick())
      assert.equal(44, e.posts[2].doc.notification.hoursBeforeExpiry)
      assert.equal(2, e.posts[2].doc.notification.number)
      for _, bad in ipairs { {}, { 47, -1 }, { 47, 47 }, { "47" }, { 0 } } do
        assert.has_error(function() env { webhook_hours = bad } end)
      end
    end)
    it("reads no key record at a tick when nothing is due (one index read)", function()
      local e = env()
      for i = 1, 12 do generate(e, "m" .. i) end
      local reads = {}
      local get = e.store.get
      e.store.get = function(st, k) reads[#reads + 1] = k return get(st, k) end
      e.now = e.now + DAY
      for _ = 1, 5 do e.svc:tick() end
      for _, k in ipairs(reads) do assert.is_nil(k:match("^mupk:key:"), k) end
      assert.equal(5, #reads) -- the pending index, once per tick
      -- and the keys are still found when they fall due
      e.store.get = get
      e.now = e.now - DAY + 20 * DAY - 47 * H
      assert.equal(12, e.svc:tick())
      -- a restarted service on a store without the index rebuilds it
      e.store:delete("mupk:pending")
      local e2 = env { store = e.store }
      e2.now = e.now + 3 * H
      assert.equal(12, e2.svc:tick()) -- the 44-hour ones
    end)
    -- Commerce Hub's multi-use public keys: "If merchant does not initiate the new key exchange
    -- as per the best practices, Commerce Hub will send three notifications via webhook at 47,
    -- 44 and 41 hours before the key expires." Whether the merchant has initiated one is
    -- decided at each mark: a successor revoked later no longer counts.
    it("'if merchant does not initiate the new key exchange': a successor revoked after the 47-hour mark brings the 44 and 41 back", function()
      local e = env()
      local id, to = setup_key(e)
      e.now = to - 48 * H
      local _, g = generate(e) -- the best practice: a new key 2 days before
      e.now = to - 47 * H
      assert.equal(0, e.svc:tick())
      assert.equal("suppressed", e.svc:notifications(id)[47].state)
      e.now = to - 46 * H
      revoke(e, g.asymmetricKeyDetails.keyId) -- the new key is withdrawn
      e.svc:tick()
      assert.equal(0, #e.posts) -- the 47-hour mark was decided at 47 hours
      e.now = to - 44 * H
      assert.equal(1, e.svc:tick())
      e.now = to - 41 * H
      assert.equal(1, e.svc:tick())
      assert.equal(2, #e.posts)
      assert.same({ 44, 2, 3 }, { e.posts[1].doc.notification.hoursBeforeExpiry, e.posts[1].doc.notification.number,
        e.posts[1].doc.notification.of })
      assert.equal(41, e.posts[2].doc.notification.hoursBeforeExpiry)
      assert.equal("delivered", e.svc:notifications(id)[41].state)
      -- and a successor made between marks suppresses only the marks after it
      local e2 = env()
      local id2, to2 = setup_key(e2)
      e2.now = to2 - 47 * H
      assert.equal(1, e2.svc:tick())
      generate(e2)
      for _ = 1, 10 do e2.now = e2.now + H e2.svc:tick() end
      assert.equal(1, #e2.posts)
      assert.same({ "delivered", "suppressed", "suppressed" }, { e2.svc:notifications(id2)[47].state,
        e2.svc:notifications(id2)[44].state, e2.svc:notifications(id2)[41].state })
    end)

    -- "three notifications via webhook at 47, 44 and 41 hours before the key expires": a notice
    -- names its hours, so one sent later would name hours that are no longer true. Only the
    -- latest mark that has passed is sent; earlier ones are skipped, never sent in a burst.
    it("'at 47, 44 and 41 hours before the key expires': a key living under 47 hours, or a service down across marks, sends only the latest due", function()
      local e = env { key_lifetime = 43 * H }
      local id = setup_key(e)
      assert.equal(1, e.svc:tick())
      assert.equal(1, #e.posts)
      assert.same({ 44, 2, 3 }, { e.posts[1].doc.notification.hoursBeforeExpiry, e.posts[1].doc.notification.number,
        e.posts[1].doc.notification.of })
      assert.equal("skipped", e.svc:notifications(id)[47].state)
      e.now = e.now + 2 * H
      assert.equal(1, e.svc:tick())
      assert.equal(41, e.posts[2].doc.notification.hoursBeforeExpiry)
      -- a service that was down from before 47 h until 40 h sends the 41-hour notice alone
      local e2 = env()
      local id2, to2 = setup_key(e2)
      e2.now = to2 - 40 * H
      assert.equal(1, e2.svc:tick())
      assert.equal(1, #e2.posts)
      assert.equal(41, e2.posts[1].doc.notification.hoursBeforeExpiry)
      assert.same({ "skipped", "skipped", "delivered" }, { e2.svc:notifications(id2)[47].state,
        e2.svc:notifications(id2)[44].state, e2.svc:notifications(id2)[41].state })
      for _ = 1, 5 do e2.now = e2.now + H e2.svc:tick() end
      assert.equal(1, #e2.posts)
      -- a 47-hour notice still failing when the 44-hour mark comes is given up for the 44
      local e3 = env { webhook_retry = 3600 }
      local id3, to3 = setup_key(e3)
      e3.answer = 503
      e3.now = to3 - 47 * H
      e3.svc:tick()
      e3.answer = 200
      e3.now = to3 - 44 * H
      assert.equal(1, e3.svc:tick())
      assert.same({ 47, 44 }, { e3.posts[1].doc.notification.hoursBeforeExpiry, e3.posts[2].doc.notification.hoursBeforeExpiry })
      assert.equal("skipped", e3.svc:notifications(id3)[47].state)
      assert.equal(2, #e3.posts)
    end)

    it("closes a cached private key once its key expires (not only on revoke)", function()
      local e = env()
      local _, g = generate(e)
      local d = g.asymmetricKeyDetails
      assert.equal(201, (pay(e, d)).status)
      local cached = e.svc.cache:get(d.keyId).key
      assert.matches("^payhsm.RsaKey%(RSA%-2048", tostring(cached))
      e.now = T(d.validTo)
      e.svc:tick()
      assert.is_table(e.svc.cache:get(d.keyId)) -- the last valid second: still in use
      e.now = e.now + 1
      e.svc:tick()
      assert.is_nil(e.svc.cache:get(d.keyId))
      assert.equal("payhsm.RsaKey(closed)", tostring(cached))
      -- revoked by another service on the same store: closed at the next transaction
      local _, g2 = generate(e)
      local d2 = g2.asymmetricKeyDetails
      assert.equal(201, (pay(e, d2)).status)
      local k2 = e.svc.cache:get(d2.keyId).key
      local other = env { store = e.store }
      other.now = e.now
      revoke(other, d2.keyId)
      assert_error(select(1, pay(e, d2)), select(2, pay(e, d2)), 422, "KEY_EXPIRED")
      assert.equal("payhsm.RsaKey(closed)", tostring(k2))
    end)
  end)

  describe("webhook transport (payhsm.mupk.webhook)", function()
    local socket = require "socket"
    local webhook = require "payhsm.mupk.webhook"

    -- A raw HTTP listener on LuaSocket, driven by pump(): reads each request (headers and
    -- Content-Length body) and writes answer(req) -> string (or nil: never answers),
    -- keeping the connection open as a keep-alive server does.
    local function raw_server(answer)
      local srv = assert(socket.bind("127.0.0.1", 0))
      srv:settimeout(0)
      local conns, got = {}, {}
      local self = { got = got, port = select(2, srv:getsockname()) }
      function self.pump()
        local c = srv:accept()
        if c then c:settimeout(0) conns[#conns + 1] = { sock = c, buf = "" } end
        for _, cn in ipairs(conns) do
          local data, err, partial = cn.sock:receive(8192)
          cn.buf = cn.buf .. (data or partial or "")
          local head_end = cn.buf:find("\r\n\r\n", 1, true)
          if head_end then
            local n = tonumber(cn.buf:sub(1, head_end):match("[Cc]ontent%-[Ll]ength: *(%d+)")) or 0
            if #cn.buf >= head_end + 3 + n then
              local req = { head = cn.buf:sub(1, head_end), body = cn.buf:sub(head_end + 4, head_end + 3 + n) }
              cn.buf = cn.buf:sub(head_end + 4 + n)
              got[#got + 1] = req
              local out = answer(req, #got)
              if out then cn.sock:send(out) end
            end
          end
          if err == "closed" then cn.closed = true end
        end
        socket.sleep(0.001)
      end
      function self.close()
        for _, cn in ipairs(conns) do cn.sock:close() end
        srv:close()
      end
      return self
    end

    local function service_with(srv, extra)
      local cfg = { webhook_url = ("http://127.0.0.1:%d/hooks"):format(srv.port), webhook_timeout = 2,
        webhook_pump = srv.pump }
      for k, v in pairs(extra or {}) do cfg[k] = v end
      local e = env(cfg)
      e.svc.post = mupk.new { storage_key = LMK, store = memory.new(), auth = "none", webhook_timeout = cfg.webhook_timeout,
        webhook_pump = srv.pump }.post -- the real transport, not the spy
      return e
    end

    it("counts a 2xx on a kept-alive connection as one delivery (Content-Length framing)", function()
      local srv = raw_server(function()
        return "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
      end)
      finally(srv.close)
      local e = service_with(srv)
      local _, g = generate(e)
      local id, to = g.asymmetricKeyDetails.keyId, T(g.asymmetricKeyDetails.validTo)
      e.now = to - 47 * H
      local t0 = socket.gettime()
      assert.equal(1, e.svc:tick())
      assert.is_true(socket.gettime() - t0 < 1.5, "did not wait for the connection to close")
      assert.equal("delivered", e.svc:notifications(id)[47].state)
      assert.equal(1, e.svc:notifications(id)[47].attempts)
      for _ = 1, 3 do e.now = e.now + 700 e.svc:tick() end
      assert.equal(1, #srv.got) -- never retried: no duplicate
      assert.matches("Webhook%-Id: " .. id:gsub("%-", "%%-") .. "%-47", srv.got[1].head)
    end)
    it("reads chunked bodies, skips 1xx, and takes 204 without a body", function()
      local answers = {
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n" ..
          "4\r\nwell\r\n3;x=y\r\n!!!\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n",
      }
      local srv = raw_server(function(_, n) return answers[n] end)
      finally(srv.close)
      local status, headers, body = webhook.post(("http://127.0.0.1:%d/a"):format(srv.port), "{}", {},
        { timeout = 2, pump = srv.pump })
      assert.equal(202, status)
      assert.equal("chunked", headers["transfer-encoding"])
      assert.equal("well!!!", body)
      status, _, body = webhook.post(("http://127.0.0.1:%d/b"):format(srv.port), "{}", {}, { timeout = 2, pump = srv.pump })
      assert.equal(204, status)
      assert.equal("", body)
    end)
    it("calls a request answered by no one (or half an answer) ambiguous, and retries it", function()
      local srv = raw_server(function(_, n)
        if n == 1 then return nil end -- received, never answered
        if n == 2 then return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort" end -- cut short
        return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
      end)
      finally(srv.close)
      local status, err, kind = webhook.post(("http://127.0.0.1:%d/a"):format(srv.port), "{}", {},
        { timeout = 0.5, pump = srv.pump })
      assert.is_nil(status)
      assert.matches("timeout", err)
      assert.equal("ambiguous", kind)
      status, err, kind = webhook.post(("http://127.0.0.1:%d/a"):format(srv.port), "{}", {}, { timeout = 0.5, pump = srv.pump })
      assert.is_nil(status)
      assert.equal("ambiguous", kind)
      status, err, kind = webhook.post("http://127.0.0.1:1/none", "{}", {}, { timeout = 0.5 })
      assert.is_nil(status)
      assert.equal("not_sent", kind)
      assert.equal("not_sent", select(3, webhook.post("ftp://x", "{}", {}, {})))
    end)
    it("the merchant drops the repeat of an eventId after an ambiguous timeout", function()
      local shop
      local srv = raw_server(function(req, n)
        local resp = shop:webhook { method = "POST", body = req.body }
        if n == 1 then return nil end -- the merchant has it, the answer is lost
        return ("HTTP/1.1 %d OK\r\nContent-Length: %d\r\n\r\n%s"):format(resp.status, #resp.body, resp.body)
      end)
      finally(srv.close)
      local e = service_with(srv, { webhook_timeout = 0.5 })
      shop = merchant_mod.new { merchant_id = MID, service = e.svc, clock = e.clock, auto_rotate = false }
      local k = assert(shop:request_key())
      e.now = k.validTo - 47 * H
      assert.equal(0, e.svc:tick())
      local st = e.svc:notifications(k.keyId)[47]
      assert.equal("failed", st.state)
      assert.is_true(st.ambiguous)
      e.now = e.now + 600
      assert.equal(1, e.svc:tick()) -- the retry: delivered
      assert.equal(2, #srv.got) -- the merchant got it twice ...
      assert.equal(1, #shop.notices) -- ... and acted once
      assert.equal(k.keyId .. "-47", shop.notices[1].eventId)
      local again = shop:webhook { method = "POST", body = srv.got[1].body }
      assert.equal(200, again.status)
      assert.is_true(cjson.decode(again.body).duplicate)
      assert.equal(400, shop:webhook { method = "POST", body = "{}" }.status)
      assert.equal(400, shop:webhook { method = "POST", body = "nope" }.status)
    end)

    describe("https", function()
      local pki = require "spec.support.pki"
      local http = require "payhsm.http"
      local p
      setup(function()
        p = pki.make()
        pki.leaf(p, "other", "subjectAltName=DNS:other.example,IP:10.9.8.7\nextendedKeyUsage=serverAuth")
        pki.leaf(p, "cn-only", "extendedKeyUsage=serverAuth", "localhost")
        pki.leaf(p, "wild", "subjectAltName=DNS:*.example.test\nextendedKeyUsage=serverAuth")
      end)
      teardown(function() pki.remove(p) end)
      local function tls_server(name)
        local got = {}
        local srv = http.new { host = "127.0.0.1", port = 0, quiet = true,
          tls = { cert = p.read(name .. ".pem"), key = p.read(name .. ".key") },
          handler = function(req) got[#got + 1] = req return { status = 204, body = "" } end }
        return srv, got
      end
      -- "localhost" is connected to 127.0.0.1 by opts.resolve, not by the machine's resolver
      -- (a minimal chroot has no /etc/hosts); names are still checked against "localhost"
      local function post(srv, host)
        return webhook.post(("https://%s:%d/hooks"):format(host, srv:port()), "{}", {},
          { timeout = 3, pump = function() srv:run_once(5) end, cafile = p.path("ca.pem"),
            resolve = { localhost = "127.0.0.1" } })
      end

      it("delivers to a server whose certificate names the host (IP and DNS subjectAltName)", function()
        local srv, got = tls_server("server")
        finally(function() srv:close() end)
        assert.equal(204, (post(srv, "127.0.0.1")))
        assert.equal(204, (post(srv, "localhost")))
        assert.equal(2, #got)
      end)
      it("refuses a certificate for another name, before sending anything", function()
        local srv, got = tls_server("other")
        finally(function() srv:close() end)
        local status, err, kind = post(srv, "127.0.0.1")
        assert.is_nil(status)
        assert.matches("does not name 127%.0%.0%.1", err)
        assert.equal("not_sent", kind)
        status, err = post(srv, "localhost")
        assert.is_nil(status)
        assert.matches("does not name localhost %(it names: other%.example%)", err)
        assert.equal(0, #got)
        -- the service records it as a failure to retry
        local e = env { webhook_url = ("https://127.0.0.1:%d/hooks"):format(srv:port()) }
        e.svc.post = mupk.new { storage_key = LMK, store = memory.new(), auth = "none", webhook_cafile = p.path("ca.pem"),
          webhook_timeout = 3, webhook_pump = function() srv:run_once(5) end }.post
        local _, g = generate(e)
        e.now = T(g.asymmetricKeyDetails.validTo) - 47 * H
        assert.equal(0, e.svc:tick())
        local st = e.svc:notifications(g.asymmetricKeyDetails.keyId)[47]
        assert.equal("failed", st.state)
        assert.matches("does not name", st.last_error)
      end)
      it("matches names by RFC 6125: CN only without subjectAltName, wildcards one label", function()
        local x509 = require "ssl.x509"
        local function cert(name) return x509.load(p.read(name .. ".pem")) end
        assert.is_true(webhook.cert_names_host(cert("cn-only"), "localhost"))
        assert.is_false(webhook.cert_names_host(cert("cn-only"), "127.0.0.1"))
        assert.is_true(webhook.cert_names_host(cert("wild"), "hooks.example.test"))
        assert.is_true(webhook.cert_names_host(cert("wild"), "HOOKS.Example.Test"))
        assert.is_false(webhook.cert_names_host(cert("wild"), "a.hooks.example.test"))
        assert.is_false(webhook.cert_names_host(cert("wild"), "example.test"))
        assert.is_true(webhook.cert_names_host(cert("other"), "10.9.8.7"))
        assert.is_false(webhook.cert_names_host(cert("other"), "10.9.8.77"))
        assert.is_false(webhook.cert_names_host(cert("server"), "127.0.0.2"))
      end)
      it("sends the host name as SNI (RFC 6066), and no SNI for an IP address", function()
        local function client_hello(host)
          local lsn = assert(socket.bind("127.0.0.1", 0))
          lsn:settimeout(0)
          local port = select(2, lsn:getsockname())
          local hello, c = "", nil
          local function pump()
            c = c or lsn:accept()
            if c then
              c:settimeout(0)
              local d, _, part = c:receive(4096)
              hello = hello .. (d or part or "")
              if #hello > 100 then c:close() end -- enough of the ClientHello; the handshake fails
            end
            socket.sleep(0.001)
          end
          webhook.post(("https://%s:%d/"):format(host, port), "{}", {}, { timeout = 1, pump = pump,
            cafile = p.path("ca.pem"), resolve = { localhost = "127.0.0.1" } })
          if c then c:close() end
          lsn:close()
          return hello
        end
        assert.is_truthy(client_hello("localhost"):find("\0\0\9localhost", 1, true)) -- host_name(0), length 9
        local h = client_hello("127.0.0.1")
        assert.is_true(#h > 100)
        assert.is_nil(h:find("127.0.0.1", 1, true))
      end)
    end)
  end)

  describe("merchant", function()
    local function shop(e, opts)
      local o = { merchant_id = MID, service = e.svc, clock = e.clock, offline_limit = 100 }
      for k, v in pairs(opts or {}) do o[k] = v end
      return merchant_mod.new(o)
    end
    local function capture(m, amount, key_id)
      return m:capture { amount = amount, currency = "USD", pan = "4005550000000019", exp_month = "12",
        exp_year = "2030", key_id = key_id }
    end

    it("requests its first key, and the next one 2 days before expiry, not a second earlier", function()
      local e = env()
      local m = shop(e)
      local k1 = assert(m:tick())
      assert.is_nil(m:tick())
      e.now = k1.validTo - 2 * DAY - 1
      assert.is_nil(m:tick())
      e.now = k1.validTo - 2 * DAY
      local k2 = assert(m:tick())
      assert.is_nil(m:tick())
      assert.equal(k2, m:key_for(e.now))
      assert.equal(2, #m:usable_keys(e.now))
      assert.equal("LEGACY", status_of(e, k1.keyId))
    end)
    it("refuses offline amounts over its limit and never sends them", function()
      local e = env()
      local sent = 0
      local svc = e.svc
      local m = shop(e, { service = { handle = function(_, req)
        if req.path:match("transactions") then sent = sent + 1 end
        return svc:handle(req)
      end } })
      m:tick()
      assert(capture(m, 100))
      local tx, msg, code = capture(m, 100.01)
      assert.is_nil(tx)
      assert.equal("OVER_LIMIT", code)
      assert.matches("^merchant.capture: ", msg)
      local res = m:forward()
      assert.equal(1, #res)
      assert.equal(1, sent)
      assert.equal(201, res[1].status)
      assert.equal(1, #m.rejected)
    end)
    it("stores and forwards later; the service judges the key at arrival", function()
      local e = env()
      local m = shop(e, { auto_rotate = false })
      local k = assert(m:request_key())
      assert(capture(m, 10))
      assert.equal(1, #m.queue)
      e.now = k.validTo + 1
      local res = m:forward()
      assert.equal(422, res[1].status)
      assert.equal(mupk.ERRORS.KEY_EXPIRED[2], res[1].body.error[1].code)
      assert.equal(0, #m.queue)
      assert.equal("NO_KEY", select(3, capture(m, 10)))
      assert.equal("UNKNOWN_KEY", select(3, capture(m, 10, "nope")))
    end)
    it("validates the amount, the currency and the PAN (nil, message, code)", function()
      local e = env()
      local m = shop(e)
      m:tick()
      local function code(t)
        local tx, msg, c = m:capture(t)
        assert.is_nil(tx)
        assert.matches("^merchant.capture: ", msg)
        return c
      end
      local card = { pan = "4005550000000019", exp_month = "12", exp_year = "2030" }
      local function with(extra)
        local t = {}
        for k, v in pairs(card) do t[k] = v end
        for k, v in pairs(extra) do t[k] = v end
        return t
      end
      assert.equal("AMOUNT", code(with {})) -- no amount: was "attempt to compare number with nil"
      assert.equal("AMOUNT", code(with { amount = -5 }))
      assert.equal("AMOUNT", code(with { amount = 0 }))
      assert.equal("AMOUNT", code(with { amount = 1.005 }))
      assert.equal("AMOUNT", code(with { amount = 0 / 0 }))
      assert.equal("AMOUNT", code(with { amount = math.huge }))
      assert.equal("AMOUNT", code(with { amount = "12,00" }))
      assert.equal("AMOUNT", code(with { amount = "-1" }))
      assert.equal("CURRENCY", code(with { amount = 5, currency = "usd" }))
      assert.equal("PAN", code(with { amount = 5, pan = "4005 5500" }))
      assert.equal("PAN", code(with { amount = 5, pan = false }))
      assert.equal(0, #m.queue)
      local tx = assert(m:capture(with { amount = "12.04", currency = "EUR" }))
      assert.equal(12.04, tx.amount)
      assert(m:capture(with { amount = 99.99 }))
      assert.equal(201, m:forward()[1].status)
    end)
    it("does not request a key at every tick while its only key is future-dated", function()
      local e = env()
      local m = shop(e)
      local f = assert(m:request_key { validFrom = "2024-01-03T00:00:00Z", validTo = "2024-01-20T00:00:00Z" })
      local requests = 0
      local svc = e.svc
      m.service = { handle = function(_, req)
        if req.path == "/security/v1/keys/generate" then requests = requests + 1 end
        return svc:handle(req)
      end }
      for _ = 1, 10 do
        e.now = e.now + 3600
        assert.is_nil(m:tick())
      end
      assert.equal(0, requests)
      assert.is_nil(m:key_for(e.now))
      e.now = f.validFrom
      assert.equal(f, m:key_for(e.now))
      assert.is_nil(m:tick())
      e.now = f.validTo - 2 * DAY -- the usual rotation still happens
      assert(m:tick())
      assert.equal(1, requests)
      -- no key at all, or only revoked ones: it asks
      local m2 = shop(e, { merchant_id = "M2" })
      local k = assert(m2:tick())
      assert(m2:revoke(k.keyId))
      assert(m2:tick())
    end)
    it("keeps transactions the service did not answer", function()
      local e = env()
      local m = shop(e)
      m:tick()
      local svc = e.svc
      m.service = { handle = function() return { status = 503, body = "{}" } end }
      assert(capture(m, 10))
      m:forward()
      assert.equal(1, #m.queue)
      m.service = svc
      assert.equal(201, m:forward()[1].status)
      assert.equal(0, #m.queue)
    end)
  end)

  describe("time", function()
    it("parses and formats Commerce Hub's timestamps", function()
      assert.equal(0, T("1970-01-01T00:00:00Z"))
      assert.equal(1680098120, T("2023-03-29T13:55:20.102105Z"))
      assert.equal("2023-03-29T13:55:20Z", mupk.format_time(1680098120))
      assert.equal(T("2024-03-01T00:00:00Z") - T("2024-02-28T00:00:00Z"), 2 * DAY) -- leap year
      assert.is_nil(T("2023-13-01T00:00:00Z"))
      assert.is_nil(T("2023-03-29 13:55:20Z"))
    end)
  end)
end)
