-- The POS host (lua/payhsm/pos/server.lua) and device (lua/payhsm/pos/device.lua) driven
-- as pure handlers with a simulated clock. Source: viopay's POS key provisioning guide (POST
-- /pos/keys response field for field, the 401 body, the key hierarchy and install order,
-- the MSK-protected endpoint table); the rest is the design docs/pos-activation.md
-- describes.
local hsm = require "payhsm"
local util = require "payhsm.util"
local cjson = require "cjson"
local pos = require "payhsm.pos.server"
local device_mod = require "payhsm.pos.device"
local P = require "payhsm.pos.protocol"
local gzip = require "payhsm.pos.gzip"
local memory = require "payhsm.store.memory"

local ZMK = ("A1"):rep(32)
local DAK = ("B2"):rep(32)
local ZMK2 = ("C3"):rep(32)
local DAK2 = ("D4"):rep(32)
local DEV, DEV2 = "POS-8F3A2C91", "POS-0BADCAFE"
local T0 = 1765635930 -- 2025-12-13T14:25:30Z, viopay's issued_at
-- key set ids: viopay's "ks-2025-01" with the device's 8 hex digits (globally unique)
local KS1, KS2 = "ks-2025-8F3A2C91-01", "ks-2025-8F3A2C91-02"

local function new_world(extra)
  local now = T0
  local clock = function() return now end
  local cfg = {
    devices = { { device_id = DEV, zmk = ZMK, attestation_key = DAK },
                { device_id = DEV2, zmk = ZMK2, attestation_key = DAK2 } },
    clock = clock,
  }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  cfg.store = cfg.store or memory.new { clock = clock }
  local srv = pos.new(cfg)
  local w = { srv = srv, store = cfg.store, clock = clock, scheme = cfg.request_signature or "body" }
  function w.advance(dt) now = now + dt end
  function w.device(id, zmk, dak, more)
    local o = {
      device_id = id or DEV,
      zmk = hsm.key.import("AES_256", zmk or ZMK, { usage = "K1", mode = "B" }),
      attestation_key = hsm.key.import("HMAC_SHA256", dak or DAK, { usage = "M7", mode = "C" }),
      transport = function(req) return srv:handle(req) end,
      clock = clock,
    }
    for k, v in pairs(more or {}) do o[k] = v end
    return device_mod.new(o)
  end
  return w
end

local function imk() return hsm.key.import("TDES_2KEY", pos.TEST_ISSUER.imk, { usage = "E0" }) end
-- Each simulated card object starts where the last one of its PAN stopped (the host
-- declines an ATC that does not move forward).
local atc_base = 0
local function card(n)
  local c = pos.TEST_ISSUER.cards[n or 1]
  atc_base = atc_base + 100
  return device_mod.card { pan = c.pan, psn = c.psn, imk = imk(), atc = atc_base }
end

local function active_device(w, id, zmk, dak)
  local d = w.device(id, zmk, dak)
  assert(d:activate_all())
  return d
end

local function post(w, path, headers, body)
  return w.srv:handle { method = "POST", path = path, headers = headers or {}, body = body }
end

local function err_of(resp)
  local doc = cjson.decode(resp.body)
  return resp.status, doc.error.code
end

-- A request signed with the device's keys, with fields to override.
local function signed(w, d, path, body, o)
  o = o or {}
  body = body or ""
  local ks_id = o.key_set or d.key_set.key_set_id
  local ts = o.timestamp or P.iso8601(w.clock())
  local nonce = o.nonce or hsm.random(16)
  local h = { [P.H.device] = o.device or d.device_id, [P.H.key_set] = ks_id, [P.H.timestamp] = ts, [P.H.nonce] = nonce }
  h[P.H.signature] = o.signature or hsm.hmac(d.keys.mac, w.scheme == "bound" and P.request_signing_string(
    o.method or "POST", path, h[P.H.device], ks_id, ts, nonce, body) or P.body_signing_string(body))
  for _, k in ipairs(o.drop or {}) do h[k] = nil end
  return w.srv:handle { method = o.method or "POST", path = path, headers = h, body = body }
end

local function seal(d, t) return hsm.envelope.encode(hsm.envelope.seal(d.keys.msk, cjson.encode(t))) end

describe("pos", function()
  describe("attestation", function()
    it("issues an att_ token for a registered device that answers its challenge", function()
      local w = new_world()
      local d = w.device()
      local token, doc = d:attest()
      assert.matches("^att_%x+$", token)
      assert.equal("Attestation", doc.token_type)
      assert.equal(300, doc.expires_in)
      assert.equal("2025-12-13T14:30:30Z", doc.expires_at)
      assert.equal(DEV, doc.device_id)
    end)

    it("refuses an unknown device, a wrong proof, a used or expired challenge (401 / 4002)", function()
      local w = new_world()
      local h = { [P.H.device] = "POS-12345678" }
      assert.same({ 401, "4002" }, { err_of(post(w, P.PATHS.challenge, h, '{"device_id":"POS-12345678"}')) })
      -- the device's attestation key is wrong
      local d = w.device(DEV, ZMK, DAK2)
      local _, msg, code = d:attest()
      assert.equal("4002", code, msg)
      -- challenge used twice
      h = { [P.H.device] = DEV }
      local ch = cjson.decode(post(w, P.PATHS.challenge, h, '{"device_id":"' .. DEV .. '"}').body).challenge
      local dak = hsm.key.import("HMAC_SHA256", DAK, { usage = "M7", mode = "C" })
      local body = cjson.encode { device_id = DEV, challenge = ch, firmware_version = "1",
        proof = hsm.hmac(dak, P.attestation_string(DEV, ch, "1")) }
      assert.equal(200, post(w, P.PATHS.attest, h, body).status)
      assert.same({ 401, "4002" }, { err_of(post(w, P.PATHS.attest, h, body)) })
      -- challenge older than 60 s
      ch = cjson.decode(post(w, P.PATHS.challenge, h, '{"device_id":"' .. DEV .. '"}').body).challenge
      w.advance(61)
      body = cjson.encode { device_id = DEV, challenge = ch, firmware_version = "1",
        proof = hsm.hmac(dak, P.attestation_string(DEV, ch, "1")) }
      assert.same({ 401, "4002" }, { err_of(post(w, P.PATHS.attest, h, body)) })
    end)

    it("keeps one outstanding challenge per device: a new one replaces the last", function()
      local w = new_world()
      local h = { [P.H.device] = DEV }
      local dak = hsm.key.import("HMAC_SHA256", DAK, { usage = "M7", mode = "C" })
      local function attest_with(ch)
        return post(w, P.PATHS.attest, h, cjson.encode { device_id = DEV, challenge = ch, firmware_version = "1",
          proof = hsm.hmac(dak, P.attestation_string(DEV, ch, "1")) })
      end
      local chs = {}
      for i = 1, 50 do chs[i] = cjson.decode(post(w, P.PATHS.challenge, h, '{"device_id":"' .. DEV .. '"}').body).challenge end
      assert.equal(1, #w.store:keys("pos:chal:"))
      assert.same({ 401, "4002" }, { err_of(attest_with(chs[1])) }) -- replaced: refused (and uses up the last)
      assert.same({ 401, "4002" }, { err_of(attest_with(chs[50])) })
      local ch = cjson.decode(post(w, P.PATHS.challenge, h, '{"device_id":"' .. DEV .. '"}').body).challenge
      assert.equal(200, attest_with(ch).status)
      assert.equal(0, #w.store:keys("pos:chal:"))
    end)

    it("refuses a device id that is malformed or differs from X-Device-Id (400 / 4000)", function()
      local w = new_world()
      assert.same({ 400, "4000" }, { err_of(post(w, P.PATHS.challenge, { [P.H.device] = "POS-8F3A2C9" },
        '{"device_id":"POS-8F3A2C9"}')) })
      assert.same({ 400, "4000" }, { err_of(post(w, P.PATHS.challenge, { [P.H.device] = DEV2 },
        '{"device_id":"' .. DEV .. '"}')) })
      assert.same({ 400, "4000" }, { err_of(post(w, P.PATHS.attest, { [P.H.device] = DEV }, "nope")) })
    end)
  end)

  describe("POST /pos/keys", function()
    it("answers viopay's response field for field, in viopay's order", function()
      local w = new_world()
      local d = w.device()
      local token = d:attest()
      local resp = post(w, P.PATHS.keys, { authorization = "Attestation " .. token, [P.H.device] = DEV })
      assert.equal(200, resp.status)
      local order = {}
      for k in resp.body:gmatch('"([%w_]+)":') do order[#order + 1] = k end
      assert.same({ "key_set", "key_set_id", "issued_at", "expires_at", "transport", "format", "encryption",
        "wrapped_under", "keys", "tmk", "key_id", "key_block", "usage", "kek", "key_id", "key_block", "usage",
        "msk", "key_id", "key_block", "usage", "tpk", "key_id", "key_block", "usage", "tdk", "key_id",
        "key_block", "usage", "mac", "key_id", "key_block", "usage", "verification", "kcv", "tmk", "kek",
        "msk", "tpk", "tdk", "mac" }, order)
      local doc = cjson.decode(resp.body)
      assert.same({ key_set_id = KS1, issued_at = "2025-12-13T14:25:30Z",
        expires_at = "2026-12-13T14:25:30Z" }, doc.key_set)
      assert.same({ format = "TR31", encryption = "AES-256", wrapped_under = "kek" }, doc.transport)
      local usage = { tmk = "key-encryption", kek = "key-encryption", msk = "data-encryption",
        tpk = "pin-encryption", tdk = "data-encryption", mac = "message-authentication" }
      for name, u in pairs(usage) do
        assert.equal(name .. "-2025-8F3A2C91-01", doc.keys[name].key_id)
        assert.equal(u, doc.keys[name].usage)
        assert.matches("^%x%x%x%x%x%x$", doc.verification.kcv[name])
        local h = hsm.tr31.parse(util.b64decode(doc.keys[name].key_block))
        assert.equal("D", h.version)
      end
      assert.equal("no-store", resp.headers["Cache-Control"])
    end)

    it("wraps along ZMK -> TMK -> KEK -> MSK / TPK / TDK / MAC with matching KCVs", function()
      local w = new_world()
      local d = w.device()
      d:attest()
      local _, doc = assert(d:download_keys())
      local function unwrap(kbpk, name)
        return assert(hsm.tr31.unwrap(kbpk, util.b64decode(doc.keys[name].key_block)))
      end
      local tmk = unwrap(hsm.key.import("AES_256", ZMK, { usage = "K1" }), "tmk")
      local kek = unwrap(tmk, "kek")
      assert.equal("K1", tmk.usage) assert.equal("K1", kek.usage)
      local want = { msk = { "AES_256", "D0" }, tpk = { "AES_256", "P0" }, tdk = { "AES_256", "D0" },
        mac = { "HMAC_SHA256", "M7" } }
      for name, w2 in pairs(want) do
        local k = unwrap(kek, name)
        assert.same(w2, { k.algorithm, k.usage })
        assert.equal(doc.verification.kcv[name], k:kcv())
        -- not under the TMK or the ZMK
        assert.is_nil(hsm.tr31.unwrap(tmk, util.b64decode(doc.keys[name].key_block)))
      end
      assert.equal(doc.verification.kcv.kek, kek:kcv())
      -- viopay's guide: "encrypt a block of zeros and compare the first 3 bytes"
      assert.equal(doc.verification.kcv.msk,
        hsm.cipher.encrypt(d.keys.msk, "ECB", ("00"):rep(16)):sub(1, 6))
    end)

    it("gives every device and every download fresh, distinct keys", function()
      local w = new_world()
      local seen, n = {}, 0
      for _, id in ipairs { DEV, DEV, DEV2 } do
        local d = w.device(id, id == DEV and ZMK or ZMK2, id == DEV and DAK or DAK2)
        d:attest()
        local ks = assert(d:download_keys())
        for name, kcv in pairs(ks.kcv) do
          assert.is_nil(seen[kcv], name)
          seen[kcv] = true
          n = n + 1
        end
      end
      assert.equal(18, n)
      local second = w.device() second:attest()
      assert.equal("ks-2025-8F3A2C91-03", (assert(second:download_keys())).key_set_id)
    end)

    it("refuses every bad attestation with 401 and viopay's error body", function()
      local w = new_world()
      local d = w.device()
      local token = d:attest()
      local cases = {
        {},                                                              -- nothing
        { [P.H.device] = DEV },                                          -- no Authorization
        { authorization = "Bearer " .. token, [P.H.device] = DEV },     -- Bearer scheme
        { authorization = token, [P.H.device] = DEV },                  -- no scheme
        { authorization = "Attestation att_0000", [P.H.device] = DEV }, -- unknown token
        { authorization = "Attestation " .. token },                    -- no X-Device-Id
        { authorization = "Attestation " .. token, [P.H.device] = DEV2 }, -- another device
        { authorization = "Attestation " .. token, [P.H.device] = "pos-8f3a2c91" }, -- malformed
      }
      for i, h in ipairs(cases) do
        local resp = post(w, P.PATHS.keys, h)
        assert.equal(401, resp.status, i)
        local doc = cjson.decode(resp.body)
        assert.same({ "code", "message", "trace_id" }, (function()
          local ks = {} for k in pairs(doc.error) do ks[#ks + 1] = k end table.sort(ks) return ks end)())
        assert.equal("4001", doc.error.code)
        assert.equal("Invalid or expired attestation token", doc.error.message)
        assert.matches("^[%w_-]+$", doc.error.trace_id)
        assert.matches('^{"error":{"code":"4001","message":', resp.body)
        assert.equal('Attestation realm="pos"', resp.headers["WWW-Authenticate"])
      end
    end)

    it("accepts the Attestation scheme in any case (RFC 7235 2.1) and still refuses Bearer", function()
      local w = new_world()
      local d = w.device()
      local token = d:attest()
      for _, scheme in ipairs { "attestation", "ATTESTATION", "aTtEsTaTiOn" } do
        assert.equal(200, post(w, P.PATHS.keys, { authorization = scheme .. " " .. token, [P.H.device] = DEV }).status)
      end
      for _, scheme in ipairs { "Bearer", "bearer", "Attestations", "Basic" } do
        assert.same({ 401, "4001" }, { err_of(post(w, P.PATHS.keys, { authorization = scheme .. " " .. token,
          [P.H.device] = DEV })) })
      end
    end)

    it("delivers every key non-exportable (N) and names key sets uniquely across devices", function()
      local w = new_world()
      local d = w.device()
      d:attest()
      local _, doc = assert(d:download_keys())
      for _, s in ipairs(device_mod.INSTALL_ORDER) do
        assert.equal("N", hsm.tr31.parse(util.b64decode(doc.keys[s[1]].key_block)).exportability, s[1])
        assert.equal("N", d.keys[s[1]].exportability, s[1])
      end
      -- the terminal cannot wrap its keys under another key ...
      local _, _, code = hsm.tr31.wrap(d.keys.kek, d.keys.msk, { version = "D" })
      assert.equal("TR31_NOT_EXPORTABLE", code)
      -- ... while an N KBPK still wraps and unwraps (tr31.c does not look at a KBPK's
      -- exportability), which is all the TMK and KEK do
      local e = hsm.key.generate("AES_256", { usage = "D0", mode = "B", exportability = "E" })
      local block = assert(hsm.tr31.wrap(d.keys.kek, e, { version = "D" }))
      assert.equal(e:kcv(), (assert(hsm.tr31.unwrap(d.keys.kek, block))):kcv())
      local d2 = w.device(DEV2, ZMK2, DAK2)
      d2:attest()
      local ks2 = assert(d2:download_keys())
      assert.equal("ks-2025-0BADCAFE-01", ks2.key_set_id)
      assert.not_equal(d.key_set.key_set_id, ks2.key_set_id)
    end)

    it("accepts the token for 5 minutes and refuses it after", function()
      local w = new_world()
      local d = w.device()
      local token = d:attest()
      local h = { authorization = "Attestation " .. token, [P.H.device] = DEV }
      w.advance(299)
      assert.equal(200, post(w, P.PATHS.keys, h).status)
      w.advance(1)
      assert.same({ 401, "4001" }, { err_of(post(w, P.PATHS.keys, h)) })
    end)

    it("keeps tokens only as HMAC-named TTL entries in the store", function()
      local w = new_world()
      local d = w.device()
      local token = d:attest()
      local keys = w.store:keys("pos:att:")
      assert.equal(1, #keys)
      assert.not_matches(token, keys[1], 1, true)
      assert.equal(300, w.store:ttl(keys[1]))
    end)
  end)

  describe("device install", function()
    local function doc_for(w)
      local d = w.device()
      d:attest()
      local resp = post(w, P.PATHS.keys, { authorization = "Attestation " .. d.token, [P.H.device] = DEV })
      return d, cjson.decode(resp.body)
    end

    it("installs in viopay's order and keeps nothing from a set with a wrong KCV", function()
      local w = new_world()
      for _, name in ipairs { "tmk", "kek", "msk", "tpk", "tdk", "mac" } do
        local d, doc = doc_for(w)
        doc.verification.kcv[name] = doc.verification.kcv[name] == "000000" and "000001" or "000000"
        local ok, msg, code = d:install(doc)
        assert.is_nil(ok)
        assert.equal("KCV_MISMATCH", code)
        assert.matches(name, msg)
        assert.is_nil(d.keys)
      end
      assert.same({ "tmk", "kek", "msk", "tpk", "tdk", "mac" }, (function()
        local o = {} for _, s in ipairs(device_mod.INSTALL_ORDER) do o[#o + 1] = s[1] end return o end)())
    end)

    it("refuses a key set that has already expired (KEY_SET_EXPIRED) or has no valid dates", function()
      local w = new_world { key_set_lifetime = 3600 }
      local d, doc = doc_for(w)
      w.advance(3600) -- delivered late: expires_at is now
      local ok, msg, code = d:install(doc)
      assert.is_nil(ok)
      assert.equal("KEY_SET_EXPIRED", code)
      assert.matches("expired at 2025%-12%-13T15:25:30Z", msg)
      assert.is_nil(d.keys)
      w.advance(-1)
      for _, bad in ipairs { { expires_at = "next year" }, { issued_at = false },
                             { expires_at = doc.key_set.issued_at }, { key_set_id = "" } } do
        local copy = cjson.decode(cjson.encode(doc))
        for k, v in pairs(bad) do copy.key_set[k] = v or nil end
        ok, _, code = d:install(copy)
        assert.is_nil(ok)
        assert.equal("KEY_SET_FORMAT", code)
      end
      assert(d:install(doc)) -- one second before expiry it still installs
    end)

    it("refuses a key block whose TR-31 MAC does not verify, or a wrong ZMK", function()
      local w = new_world()
      for _, name in ipairs { "tmk", "kek", "mac" } do
        local d, doc = doc_for(w)
        local block = util.b64decode(doc.keys[name].key_block)
        local i = #block - 40
        block = block:sub(1, i - 1) .. (block:sub(i, i) == "0" and "1" or "0") .. block:sub(i + 1)
        doc.keys[name].key_block = util.b64encode(block)
        local ok, _, code = d:install(doc)
        assert.is_nil(ok)
        assert.equal("TR31_MAC_MISMATCH", code)
        assert.is_nil(d.keys)
      end
      local _, doc = doc_for(w)
      local other = w.device(DEV, ZMK2, DAK)
      local ok, _, code = other:install(doc)
      assert.is_nil(ok)
      assert.equal("TR31_MAC_MISMATCH", code)
      -- a key block swapped for another of the set: usage check
      local d3, doc3 = doc_for(w)
      doc3.keys.msk.key_block = doc3.keys.tpk.key_block
      doc3.verification.kcv.msk = doc3.verification.kcv.tpk
      ok, _, code = d3:install(doc3)
      assert.is_nil(ok)
      assert.equal("TR31_USAGE", code)
    end)
  end)

  describe("MSK-protected endpoints", function()
    it("serves the config in a signed envelope", function()
      local w = new_world()
      local d = w.device()
      d:attest() d:download_keys()
      local cfg = assert(d:fetch_config())
      assert.equal(DEV, cfg.device_id)
      assert.equal("MID-000123456", cfg.merchant.merchant_id)
      assert.equal(KS1, cfg.key_set.key_set_id)
      local resp = signed(w, d, P.PATHS.config)
      assert.equal(200, resp.status)
      assert.matches('^{"format":"TR31%-DATA","ciphertext":"%x+","initialization_vector":"%x+","mode":"CBC"}$', resp.body)
      assert.equal(KS1, resp.headers["X-Key-Set-Id"])
    end)

    it("serves the terminal parameters as gzip JSON in TR31-DATA or TR31-DATA-CHUNKED", function()
      local w = new_world()
      local d = w.device()
      d:attest() d:download_keys()
      local params, format = assert(d:fetch_terminal_parameters())
      assert.equal("TR31-DATA", format)
      assert.equal(5, #params.applications)
      assert.equal("A0000000031010", params.applications[1].aid)
      local w2 = new_world { chunk_size = 128 }
      local d2 = w2.device()
      d2:attest() d2:download_keys()
      local params2, format2 = assert(d2:fetch_terminal_parameters())
      assert.equal("TR31-DATA-CHUNKED", format2)
      assert.same(params, params2)
      -- the inner bytes are gzip (RFC 1952 magic) and gunzip to the JSON
      local resp = signed(w, d, P.PATHS.parameters)
      local gz = hsm.envelope.open(d.keys.msk, resp.body)
      assert.equal("\31\139\8", gz:sub(1, 3))
      local json = gzip.decompress(gz)
      assert.same(params, cjson.decode(json))
    end)

    it("refuses missing headers, bad signatures, replays, stale timestamps and unknown key sets", function()
      local w = new_world { request_signature = "bound" }
      local d = w.device()
      d:attest() d:download_keys()
      assert.same({ 401, "4005" }, { err_of(signed(w, d, P.PATHS.config, nil, { drop = { P.H.device } })) })
      assert.same({ 401, "4005" }, { err_of(signed(w, d, P.PATHS.config, nil, { drop = { P.H.key_set } })) })
      assert.same({ 401, "4003" }, { err_of(signed(w, d, P.PATHS.config, nil, { drop = { P.H.signature } })) })
      assert.same({ 401, "4003" }, { err_of(signed(w, d, P.PATHS.config, nil, { drop = { P.H.nonce } })) })
      assert.same({ 401, "4003" }, { err_of(signed(w, d, P.PATHS.config, nil, { signature = ("00"):rep(32) })) })
      assert.same({ 401, "4005" }, { err_of(signed(w, d, P.PATHS.config, nil, { key_set = "ks-2025-09" })) })
      assert.same({ 401, "4005" }, { err_of(signed(w, d, P.PATHS.config, nil, { device = DEV2 })) })
      -- the signature covers the path: a config signature sent to terminal-parameters
      local ts, nonce = P.iso8601(w.clock()), hsm.random(16)
      local sig = hsm.hmac(d.keys.mac, P.request_signing_string("POST", P.PATHS.config, DEV, KS1, ts, nonce, ""))
      assert.same({ 401, "4003" }, { err_of(signed(w, d, P.PATHS.parameters, nil, { timestamp = ts, nonce = nonce,
        signature = sig })) })
      -- a replay of the very same request
      assert(d:fetch_config())
      local resp = d:replay_last()
      assert.is_nil(resp)
      local _, _, code = d:replay_last()
      assert.equal("4004", code)
      -- stale and future timestamps
      assert.same({ 401, "4004" }, { err_of(signed(w, d, P.PATHS.config, nil,
        { timestamp = P.iso8601(w.clock() - 301) })) })
      assert.same({ 401, "4004" }, { err_of(signed(w, d, P.PATHS.config, nil,
        { timestamp = P.iso8601(w.clock() + 301) })) })
      assert.same({ 401, "4004" }, { err_of(signed(w, d, P.PATHS.config, nil, { timestamp = "yesterday" })) })
    end)

    it("refuses a tampered envelope (4003 when the HMAC covers it, 4220 when it is signed)", function()
      local w = new_world { request_signature = "bound" }
      local d = w.device()
      assert(d:activate_all())
      local body = seal(d, { request_id = util.uuid(), readiness = {} })
      local tampered = body:gsub('"ciphertext":"(%x)', function(c) return '"ciphertext":"' .. (c == "0" and "1" or "0") end)
      -- tampered in transit: the signature no longer verifies
      local ts, nonce = P.iso8601(w.clock()), hsm.random(16)
      local sig = hsm.hmac(d.keys.mac, P.request_signing_string("POST", P.PATHS.activate, DEV, KS1, ts,
        nonce, body))
      assert.same({ 401, "4003" }, { err_of(signed(w, d, P.PATHS.activate, tampered,
        { timestamp = ts, nonce = nonce, signature = sig })) })
      -- signed but not an envelope under this MSK
      local other = hsm.key.generate("AES_256", { usage = "D0" })
      local foreign = hsm.envelope.encode(hsm.envelope.seal(other, "{}"))
      assert.same({ 422, "4220" }, { err_of(signed(w, d, P.PATHS.activate, foreign)) })
      assert.same({ 422, "4220" }, { err_of(signed(w, d, P.PATHS.charge, "{not json")) })
      assert.same({ 422, "4220" }, { err_of(signed(w, d, P.PATHS.charge, hsm.envelope.encode(
        hsm.envelope.seal(d.keys.msk, "[1,2]")))) })
    end)

    it("refuses an expired key set (403 / 4006) until the device downloads a new one", function()
      local w = new_world { key_set_lifetime = 86400 }
      local d = w.device()
      d.auto_renew = false -- a terminal that does not renew on its own
      assert(d:activate_all())
      assert.is_false(d:needs_new_keys(3600))
      w.advance(86400 - 1800)
      assert.is_true(d:needs_new_keys(3600))
      w.advance(1800)
      local _, msg, code = d:fetch_config()
      assert.equal("4006", code, msg)
      assert.matches("expired at 2025%-12%-14T14:25:30Z", msg)
      local ks = assert(d:ensure_keys(3600))
      assert.equal(KS2, ks.key_set_id)
      assert(d:fetch_config())
      -- activation survives a new key set; the old key set is no longer current
      assert.equal("approved", (assert(d:charge { amount = 100, card = card(), pin = "1234" })).status)
    end)

    it("renews the key set on its own before a call when it expires within renew_before_seconds", function()
      local w = new_world { key_set_lifetime = 10 * 86400, renew_before_seconds = 86400 }
      local d = w.device()
      local codes = {}
      local real = d.transport
      d.transport = function(req)
        local resp = real(req)
        codes[#codes + 1] = req.path .. " " .. resp.status
        return resp
      end
      assert(d:activate_all())
      assert.equal(86400, d.config.key_set.renew_before_seconds)
      assert.equal(86400, d:renew_margin())
      local c = card()
      w.advance(9 * 86400 - 1) -- one second before the margin: no renewal
      assert(d:charge { amount = 100, card = c, pin = "1234" })
      assert.equal(0, d.renewals)
      w.advance(1)
      codes = {}
      local ch = assert(d:charge { amount = 100, card = c, pin = "1234" })
      assert.equal("approved", ch.status)
      assert.equal(1, d.renewals)
      assert.equal(KS2, d.key_set.key_set_id)
      -- attest, keys, then the charge under the new set: no 4006 on the way
      assert.same({ "/pos/attest/challenge 200", "/pos/attest 200", "/pos/keys 200", "/pos/charge 200" }, codes)
      assert.equal(KS2, w.srv:key_set_record(DEV).key_set_id)
      -- other calls renew too; the margin never exceeds half the set's lifetime
      local w2 = new_world { key_set_lifetime = 4 * 3600 }
      local d2 = w2.device()
      assert(d2:activate_all())
      assert.equal(2 * 3600, d2.config.key_set.renew_before_seconds)
      w2.advance(2 * 3600)
      assert(d2:fetch_config())
      assert.equal(1, d2.renewals)
      assert(d2:fetch_config())
      assert.equal(1, d2.renewals)
      -- an activation due for renewal names the new set's KCVs, not the old one's
      w2.advance(2 * 3600)
      local res = assert(d2:activate())
      assert.same({ 2, "active", "ks-2025-8F3A2C91-03" }, { d2.renewals, res.status, res.key_set_id })
    end)

    it("goes on under the current set when renewal fails, and gets 4006 once it has expired", function()
      local w = new_world { key_set_lifetime = 86400 }
      local d = w.device()
      assert(d:activate_all())
      assert.equal(P.RENEW_BEFORE_SECONDS, device_mod.new { device_id = DEV, zmk = d.zmk, attestation_key = d.dak,
        transport = d.transport }:renew_margin()) -- the documented default before /pos/config says
      d.dak = hsm.key.import("HMAC_SHA256", DAK2, { usage = "M7", mode = "C" }) -- attestation now fails
      w.advance(86400 - 600)
      assert(d:fetch_config())
      assert.equal(0, d.renewals)
      assert.equal("4002", d.renew_error.code)
      w.advance(600)
      local _, msg, code = d:fetch_config()
      assert.equal("4006", code)
      assert.matches("renewal failed", msg)
      d.dak = hsm.key.import("HMAC_SHA256", DAK, { usage = "M7", mode = "C" })
      _, _, code = d:fetch_config() -- within 60 s of the failed try: no new attempt
      assert.equal("4006", code)
      w.advance(60)
      assert(d:fetch_config()) -- the next try renews
      assert.equal(1, d.renewals)
      assert.is_nil(d.renew_error)
    end)

    it("refuses a superseded key set (4005)", function()
      local w = new_world()
      local d = w.device()
      assert(d:activate_all())
      local old_keys, old_ks = d.keys, d.key_set
      local d2 = w.device()
      d2:attest() assert(d2:download_keys())
      d.keys, d.key_set = old_keys, old_ks
      local _, _, code = d:fetch_config()
      assert.equal("4005", code)
    end)

    it("activates with the KCVs of the installed keys and refuses wrong ones (4009)", function()
      local w = new_world()
      local d = w.device()
      d:attest() d:download_keys()
      local _, _, code = d:charge { amount = 100, card = card(), pin = "1234" }
      assert.equal("4008", code)
      local kcv = {}
      for name, v in pairs(d.key_set.kcv) do kcv[name] = v end
      kcv.tpk = "000000"
      assert.same({ 422, "4009" }, { err_of(signed(w, d, P.PATHS.activate, seal(d, { request_id = util.uuid(),
        readiness = { keys_installed = true, kcv = kcv } }))) })
      assert.same({ 400, "4000" }, { err_of(signed(w, d, P.PATHS.activate, seal(d, { request_id = util.uuid() }))) })
      local res = assert(d:activate())
      assert.equal("active", res.status)
      assert.equal("T8F3A2C91", res.terminal_id)
      assert.equal("2025-12-13T14:25:30Z", res.activated_at)
    end)

    it("answers 404 / 4040 and 405 / 4050", function()
      local w = new_world()
      assert.same({ 404, "4040" }, { err_of(w.srv:handle { method = "POST", path = "/pos/nope" }) })
      assert.same({ 405, "4050" }, { err_of(w.srv:handle { method = "GET", path = "/pos/keys" }) })
      assert.same({ 405, "4050" }, { err_of(w.srv:handle { method = "GET", path = "/pos/charge" }) })
      assert.same({ 404, "4040" }, { err_of(w.srv:handle { method = "POST", path = "/pos/charge/ch_1/void" }) })
    end)
  end)

  describe("charges", function()
    it("approves a chip charge with the right PIN and ARQC, and returns an ARPC the card accepts", function()
      local w = new_world()
      local d = active_device(w)
      local c = card()
      local ch = assert(d:charge { amount = 1250, currency = "EUR", entry_mode = "chip", card = c, pin = "1234" })
      assert.equal("approved", ch.status)
      assert.equal("00", ch.response_code)
      assert.equal("Approved", ch.message)
      assert.matches("^ch_%x+$", ch.charge_id)
      assert.matches("^%x%x%x%x%x%x$", ch.authorization_code)
      assert.equal("476173******0119", ch.card.masked_pan)
      assert.equal("3030", ch.emv.arc)
      assert.is_true(ch.arpc_ok)
      assert.equal(1250, ch.amount)
      -- contactless below the CVM limit without PIN, magstripe with PIN
      assert.equal("approved", (assert(d:charge { amount = 400, entry_mode = "contactless", card = c })).status)
      local ms = assert(d:charge { amount = 400, entry_mode = "magstripe", card = card(2), pin = "4321" })
      assert.equal("approved", ms.status)
      assert.is_nil(ms.emv)
    end)

    it("declines a wrong PIN (55), a bad ARQC (05), a replayed ATC (05), an unknown card (14), over limit (51)", function()
      local w = new_world()
      local d = active_device(w)
      local c = card()
      local function code_of(p) return (assert(d:charge(p))).response_code end
      assert.equal("55", code_of { amount = 100, card = c, pin = "9999" })
      assert.equal("55", code_of { amount = 100, entry_mode = "magstripe", card = c })
      assert.equal("55", code_of { amount = 6000, entry_mode = "contactless", card = c })
      -- the ARQC was made for another amount
      local real = c.generate_ac
      c.generate_ac = function(f) f.amount = f.amount + 1 return real(f) end
      assert.equal("05", code_of { amount = 100, card = c, pin = "1234" })
      c.generate_ac = real
      -- a card whose ATC went backwards (a cloned / replayed cryptogram)
      assert.equal("00", code_of { amount = 100, card = c, pin = "1234" })
      c.atc = c.atc - 2
      assert.equal("05", code_of { amount = 100, card = c, pin = "1234" })
      local stranger = device_mod.card { pan = "4000000000000002", imk = imk() }
      local res = assert(d:charge { amount = 100, card = stranger, pin = "1234" })
      assert.same({ "declined", "14" }, { res.status, res.response_code })
      c.atc = c.atc + 5
      res = assert(d:charge { amount = 100001, card = c, pin = "1234" })
      assert.same({ "declined", "51", "3531" }, { res.status, res.response_code, res.emv.arc })
      -- a wrong TPK: the PIN block does not decrypt
      local req = d:charge_request { amount = 100, card = card(2), pin = "4321" }
      for i = 1, #req.kv, 2 do
        if req.kv[i] == "pin_block" then
          req.kv[i + 1] = hsm.pin.encrypt(hsm.key.generate("AES_256", { usage = "P0" }), "ISO_FORMAT_4", "4321",
            "5413330089010434")
        end
      end
      local resp = signed(w, d, P.PATHS.charge, hsm.envelope.encode(hsm.envelope.seal(d.keys.msk, util.json(req))))
      local out = cjson.decode(hsm.envelope.open(d.keys.msk, resp.body))
      assert.same({ "declined", "55" }, { out.status, out.response_code })
    end)

    it("stops a card at ATC FFFF (CARD_ATC_EXHAUSTED) instead of wrapping", function()
      local w = new_world()
      local d = active_device(w)
      local c = device_mod.card { pan = pos.TEST_ISSUER.cards[1].pan, psn = pos.TEST_ISSUER.cards[1].psn, imk = imk(),
        atc = 65534 }
      local ch = assert(d:charge { amount = 100, card = c, pin = "1234" })
      assert.equal("approved", ch.status)
      assert.equal(65535, c.atc)
      local ok, msg, code = d:charge { amount = 100, card = c, pin = "1234" }
      assert.is_nil(ok)
      assert.equal("CARD_ATC_EXHAUSTED", code)
      assert.matches("replace the card", msg)
      assert.equal(65535, c.atc)
    end)

    it("refuses malformed charges (4000) and a reused request_id (4094)", function()
      local w = new_world()
      local d = active_device(w)
      for _, bad in ipairs {
        { amount = 0 }, { amount = 1.5 }, { amount = "100" }, { currency = "XXX" }, { entry_mode = "swipe" },
      } do
        local t = { request_id = util.uuid(), amount = 100, currency = "EUR", entry_mode = "chip" }
        for k, v in pairs(bad) do t[k] = v end
        assert.same({ 400, "4000" }, { err_of(signed(w, d, P.PATHS.charge, seal(d, t))) })
      end
      assert.same({ 400, "4000" }, { err_of(signed(w, d, P.PATHS.charge, seal(d, { request_id = util.uuid(),
        amount = 100, currency = "EUR", entry_mode = "magstripe", card = { encrypted_pan = "00", pan_iv = "00" } }))) })
      local ok = assert(d:charge { amount = 100, card = card(), pin = "1234", request_id = "req-000000001" })
      assert.equal("approved", ok.status)
      local _, _, code = d:charge { amount = 100, card = card(), pin = "1234", request_id = "req-000000001" }
      assert.equal("4094", code)
    end)
  end)

  describe("refunds and cancels", function()
    it("refunds an approved charge once; cancels an approved charge once", function()
      local w = new_world()
      local d = active_device(w)
      local ch = assert(d:charge { amount = 1250, card = card(), pin = "1234" })
      local r = assert(d:refund(ch.charge_id, 1000, "customer return"))
      assert.equal("refunded", r.status)
      assert.equal(1000, r.amount)
      assert.matches("^re_%x+$", r.refund_id)
      assert.equal("customer return", r.reason)
      assert.equal("refunded", w.srv:charge_record(ch.charge_id).status)
      local _, _, code = d:refund(ch.charge_id, 250)
      assert.equal("4091", code)
      _, _, code = d:cancel(ch.charge_id)
      assert.equal("4091", code)
      local ch2 = assert(d:charge { amount = 500, card = card(), pin = "1234" })
      local c = assert(d:cancel(ch2.charge_id))
      assert.same({ ch2.charge_id, "cancelled", 500 }, { c.charge_id, c.status, c.amount })
      _, _, code = d:cancel(ch2.charge_id)
      assert.equal("4092", code)
      _, _, code = d:refund(ch2.charge_id)
      assert.equal("4092", code)
    end)

    it("refuses unknown charges, other devices' charges, declined charges and bad amounts", function()
      local w = new_world()
      local d = active_device(w)
      local d2 = active_device(w, DEV2, ZMK2, DAK2)
      local ch = assert(d:charge { amount = 1250, card = card(), pin = "1234" })
      local _, _, code = d:refund("ch_00000000")
      assert.equal("4041", code)
      _, _, code = d:cancel("nope")
      assert.equal("4041", code)
      _, _, code = d2:refund(ch.charge_id)
      assert.equal("4041", code)
      _, _, code = d2:cancel(ch.charge_id)
      assert.equal("4041", code)
      _, _, code = d:refund(ch.charge_id, 1251)
      assert.equal("4095", code)
      _, _, code = d:refund(ch.charge_id, -1)
      assert.equal("4095", code)
      local declined = assert(d:charge { amount = 100, card = card(), pin = "0000" })
      _, _, code = d:refund(declined.charge_id)
      assert.equal("4093", code)
      _, _, code = d:cancel(declined.charge_id)
      assert.equal("4093", code)
      -- the whole amount by default
      assert.equal(1250, (assert(d:refund(ch.charge_id))).amount)
    end)

    it("signs the cancel over an empty body and refuses a cancel with a body or a replayed one", function()
      local w = new_world { request_signature = "bound" }
      local d = active_device(w)
      local ch = assert(d:charge { amount = 700, card = card(), pin = "1234" })
      local path = "/pos/charge/" .. ch.charge_id .. "/cancel"
      assert.same({ 400, "4000" }, { err_of(signed(w, d, path, "{}")) })
      local ts, nonce = P.iso8601(w.clock()), hsm.random(16)
      local sig = hsm.hmac(d.keys.mac, table.concat({ "POST", path, DEV, KS1, ts, nonce, "" }, "\n"))
      local resp = signed(w, d, path, "", { timestamp = ts, nonce = nonce, signature = sig })
      assert.equal(200, resp.status)
      -- the same signed cancel again: refused as a replay before any state is read
      assert.same({ 401, "4004" }, { err_of(signed(w, d, path, "", { timestamp = ts, nonce = nonce, signature = sig })) })
      -- the response is signed for the request's nonce
      assert.is_true(hsm.hmac_verify(d.keys.mac, P.response_signing_string(200, nonce, resp.body),
        resp.headers["X-Signature"]))
    end)
  end)

  describe("request ids", function()
    it("does not burn a request_id on a refused charge or refund (400, 404, 409, 422)", function()
      local w = new_world()
      local d = active_device(w)
      -- 400: no card; the corrected charge with the same id is accepted
      local refused = signed(w, d, P.PATHS.charge, seal(d, { request_id = "req-charge-01", amount = 100,
        currency = "EUR", entry_mode = "chip" }))
      assert.same({ 400, "4000" }, { err_of(refused) })
      assert.same({}, w.store:keys("pos:req:"))
      local ch = assert(d:charge { amount = 1250, card = card(), pin = "1234", request_id = "req-charge-01" })
      assert.equal("approved", ch.status)
      -- 404 (unknown charge), 422 (amount too large), 409 (already refunded): each leaves
      -- the refund's id free for the corrected request
      local function refund(id, amount, rid)
        return signed(w, d, "/pos/charge/" .. id .. "/refund", seal(d, { request_id = rid, amount = amount }))
      end
      assert.same({ 404, "4041" }, { err_of(refund("ch_00000000", 100, "req-refund-01")) })
      assert.same({ 422, "4095" }, { err_of(refund(ch.charge_id, 1251, "req-refund-01")) })
      assert.equal(200, refund(ch.charge_id, 1250, "req-refund-01").status)
      assert.same({ 409, "4091" }, { err_of(refund(ch.charge_id, 1000, "req-refund-03")) })
      local ch2 = assert(d:charge { amount = 500, card = card(), pin = "1234" })
      local resp = refund(ch2.charge_id, 500, "req-refund-03")
      assert.equal(200, resp.status)
      assert.equal("refunded", cjson.decode(hsm.envelope.open(d.keys.msk, resp.body)).status)
    end)

    it("answers a retried request with its original result and refuses another request under a used id (4094)", function()
      local w = new_world()
      local d = active_device(w)
      local c = card()
      local ch = assert(d:charge { amount = 1250, card = c, pin = "1234", request_id = "req-000000001" })
      -- the answer was lost: the terminal sends the same request again (new nonce, IV, signature)
      local again = assert(d:retry_last())
      assert.same({ ch.charge_id, ch.status, ch.authorization_code, ch.emv.arpc },
        { again.charge_id, again.status, again.authorization_code, again.emv.arpc })
      local n = 0
      for _ in pairs(w.store:keys("pos:charge:")) do n = n + 1 end
      assert.equal(1, n) -- one charge, not two
      -- another charge under the same id
      local _, msg, code = d:charge { amount = 1250, card = c, pin = "1234", request_id = "req-000000001" }
      assert.equal("4094", code, msg)
      -- a refund retried, and a refund reusing the charge's id
      local r = assert(d:refund(ch.charge_id, 1250))
      local r2 = assert(d:retry_last())
      assert.same({ r.refund_id, r.amount, r.created_at }, { r2.refund_id, r2.amount, r2.created_at })
      assert.same({ 409, "4094" }, { err_of(signed(w, d, "/pos/charge/" .. ch.charge_id .. "/refund",
        seal(d, { request_id = "req-000000001" }))) })
      -- the retry is marked for the operator, and is still signed for its own nonce
      assert(d:charge { amount = 100, card = c, pin = "1234", request_id = "req-000000002" })
      local raw = d.last_call
      local resp = signed(w, d, raw.path, hsm.envelope.encode(hsm.envelope.seal(d.keys.msk, raw.json)))
      assert.equal("true", resp.headers["Idempotent-Replayed"])
    end)

    it("lets only one of two processes sharing a store accept a request_id", function()
      local store = memory.new { clock = function() return T0 end }
      local w = new_world { store = store, request_signature = "bound", storage_key = { hex = ("77"):rep(32) } }
      local other = pos.new { store = store, request_signature = "bound", storage_key = { hex = ("77"):rep(32) }, clock = w.clock }
      local d = active_device(w)
      -- while this process is between its claim and its answer, the other one gets the same request
      local c = card()
      local req = assert(d:charge_request { amount = 300, card = c, pin = "1234", request_id = "req-race-0001" })
      local body = hsm.envelope.encode(hsm.envelope.seal(d.keys.msk, util.json(req)))
      local seen
      local put = store.put
      store.put = function(s, k, v, ttl)
        if k:match("^pos:charge:") and not seen then
          local ts, nonce = P.iso8601(w.clock()), hsm.random(16)
          local h = { [P.H.device] = DEV, [P.H.key_set] = d.key_set.key_set_id, [P.H.timestamp] = ts, [P.H.nonce] = nonce }
          h[P.H.signature] = hsm.hmac(d.keys.mac, P.request_signing_string("POST", P.PATHS.charge, DEV,
            d.key_set.key_set_id, ts, nonce, body))
          seen = other:handle { method = "POST", path = P.PATHS.charge, headers = h, body = body }
        end
        return put(s, k, v, ttl)
      end
      local first = signed(w, d, P.PATHS.charge, body)
      store.put = put
      assert.equal(200, first.status)
      assert.same({ 409, "4094" }, { err_of(seen) })
      assert.matches("not been answered yet", cjson.decode(seen.body).error.details)
      -- once answered, the other process answers the retry with the same charge
      local again = signed(w, d, P.PATHS.charge, body)
      assert.equal(cjson.decode(hsm.envelope.open(d.keys.msk, first.body)).charge_id,
        cjson.decode(hsm.envelope.open(d.keys.msk, again.body)).charge_id)
    end)

    it("releases the request_id when the charge cannot be stored (500 / 5000)", function()
      local w = new_world()
      local d = active_device(w)
      local put = w.store.put
      w.store.put = function(s, k, v, ttl)
        if k:match("^pos:charge:") then error("disk full") end
        return put(s, k, v, ttl)
      end
      local _, _, code = d:charge { amount = 100, card = card(), pin = "1234", request_id = "req-000000009" }
      assert.equal("5000", code)
      w.store.put = put
      assert.same({}, w.store:keys("pos:req:"))
      assert.equal("approved", (assert(d:charge { amount = 100, card = card(), pin = "1234",
        request_id = "req-000000009" })).status)
    end)
  end)

  describe("store growth and caches", function()
    it("keeps request ids for request_id_ttl and nonces while their time stamp is accepted", function()
      local w = new_world()
      local d = active_device(w)
      assert(d:charge { amount = 100, card = card(), pin = "1234", request_id = "req-ttl-00001" })
      assert.equal(P.REQUEST_ID_TTL, w.store:ttl("pos:req:" .. DEV .. ":req-ttl-00001"))
      for _, k in ipairs(w.store:keys("pos:nonce:")) do
        assert.equal(2 * P.CLOCK_SKEW + 1 - P.CLOCK_SKEW, w.store:ttl(k)) -- stamped now: 301 s
      end
      -- a request stamped 300 s ahead: its nonce must stay refused until the stamp is out
      local ts, nonce = P.iso8601(w.clock() + P.CLOCK_SKEW), hsm.random(16)
      assert.equal(200, signed(w, d, P.PATHS.config, nil, { timestamp = ts, nonce = nonce }).status)
      w.advance(2 * P.CLOCK_SKEW) -- the stamp is now 300 s old: still accepted
      local resp = signed(w, d, P.PATHS.config, nil, { timestamp = ts, nonce = nonce })
      assert.same({ 401, "4004" }, { err_of(resp) })
      assert.equal("X-Nonce has been used", cjson.decode(resp.body).error.details)
      w.advance(1)
      resp = signed(w, d, P.PATHS.config, nil, { timestamp = ts, nonce = nonce })
      assert.equal("X-Timestamp is outside the accepted window", cjson.decode(resp.body).error.details)
      -- after a day nothing per-request is left but the charges
      w.advance(P.REQUEST_ID_TTL)
      assert.same({}, w.store:keys("pos:req:"))
      assert.same({}, w.store:keys("pos:nonce:"))
      assert.equal(1, #w.store:keys("pos:charge:"))
      assert.has_error(function() pos.new { request_id_ttl = 600 } end)
    end)

    it("bounds the per-process key set and parameters caches (2 * cache_size devices)", function()
      local w = new_world { cache_size = 2 }
      local devices = {}
      for i = 1, 6 do
        local id = ("POS-%08X"):format(0xC0DE0000 + i)
        local zmk, dak = ("%02X"):format(i):rep(32), ("%02X"):format(0x40 + i):rep(32)
        assert(w.srv:register_device(id, hsm.key.import("AES_256", zmk, { usage = "K1", mode = "B" }),
          hsm.key.import("HMAC_SHA256", dak, { usage = "M7", mode = "C" })))
        devices[i] = active_device(w, id, zmk, dak)
      end
      for round = 1, 2 do
        for i, d in ipairs(devices) do
          assert(d:fetch_config(), ("round %d device %d"):format(round, i))
          assert(d:fetch_terminal_parameters())
          assert.is_true(w.srv.cache:count() <= 4)
          assert.is_true(w.srv.parameters_cache:count() <= 4)
        end
      end
    end)
  end)

  describe("store and secrets", function()
    it("keeps keys only as TR-31 blocks under the local master key", function()
      local w = new_world()
      local d = active_device(w)
      assert(d:charge { amount = 100, card = card(), pin = "1234" })
      local dump = {}
      for _, k in ipairs(w.store:keys("")) do dump[#dump + 1] = k .. "=" .. w.store:get(k) end
      dump = table.concat(dump, "\n")
      for _, k in pairs(d.keys) do -- non-exportable (N): read through a local wrap
        local hex = require("spec.support.clear")(k)
        assert.not_matches(hex, dump, 1, true)
        assert.not_matches(hex:lower(), dump, 1, true)
      end
      for _, secret in ipairs { ZMK, DAK, "4761739001010119", "\"1234\"" } do
        assert.not_matches(secret, dump, 1, true)
      end
      local rec = w.srv:key_set_record(DEV)
      for _, b in pairs(rec.keys) do assert.equal("D", hsm.tr31.parse(b).version) end
    end)

    it("refuses to start on a store written under another storage key", function()
      local store = memory.new()
      pos.new { store = store, storage_key = { hex = ("01"):rep(32) } }
      assert.has_error(function() pos.new { store = store, storage_key = { hex = ("02"):rep(32) } } end)
    end)

    it("answers 500 / 5000 without the cause when something unexpected fails", function()
      local w = new_world()
      local d = active_device(w)
      w.store.get = function() error("disk on fire") end
      local _, _, code = d:fetch_config()
      assert.equal("5000", code)
      assert.matches("disk on fire", w.srv.last_error)
    end)
  end)

  describe("registration over HTTP", function()
    it("registers a device with TR-31 blocks under the registration KBPK (Basic auth)", function()
      local kif = ("5A"):rep(32)
      local w = new_world { basic_auth = { operator = "op" }, registration_kbpk = { hex = kif } }
      local kbpk = hsm.key.import("AES_256", kif, { usage = "K1", mode = "B" })
      local zmk = hsm.key.generate("AES_256", { usage = "K1", mode = "B", exportability = "E" })
      local dak = hsm.key.generate("HMAC_SHA256", { usage = "M7", mode = "C", exportability = "E" })
      local body = cjson.encode { device_id = "POS-00C0FFEE", zmk = hsm.tr31.wrap(kbpk, zmk, { version = "D" }),
        attestation_key = hsm.tr31.wrap(kbpk, dak, { version = "D" }) }
      local auth = { authorization = "Basic " .. util.b64encode("operator:op") }
      assert.same({ 401, "4007" }, { err_of(post(w, "/pos/devices", {}, body)) })
      assert.equal(201, post(w, "/pos/devices", auth, body).status)
      assert.equal(201, post(w, "/pos/devices", auth, body).status) -- idempotent
      local d = device_mod.new { device_id = "POS-00C0FFEE", zmk = zmk, attestation_key = dak,
        transport = function(r) return w.srv:handle(r) end, clock = w.clock }
      assert(d:activate_all())
      -- the same id with other keys
      local other = cjson.encode { device_id = "POS-00C0FFEE",
        zmk = hsm.tr31.wrap(kbpk, hsm.key.generate("AES_256", { usage = "K1", mode = "B", exportability = "E" }), { version = "D" }),
        attestation_key = hsm.tr31.wrap(kbpk, dak, { version = "D" }) }
      assert.same({ 409, "4090" }, { err_of(post(w, "/pos/devices", auth, other)) })
      assert.same({ 400, "4000" }, { err_of(post(w, "/pos/devices", auth, '{"device_id":"POS-00C0FFEE"}')) })
    end)
  end)

  describe("gzip", function()
    it("round-trips and interoperates with gzip(1) both ways", function()
      local text = P.iso8601(0) .. ("terminal parameters "):rep(200) .. "\0\1\2\255"
      local gz = gzip.compress(text)
      assert.is_true(#gz < #text / 4)
      assert.equal(text, gzip.decompress(gz))
      local tmp = os.tmpname()
      local f = assert(io.open(tmp, "wb")) f:write(gz) f:close()
      local p = io.popen("gzip -dc < " .. tmp)
      assert.equal(text, p:read("*a"))
      p:close()
      f = assert(io.open(tmp, "wb")) f:write(text) f:close()
      p = io.popen("gzip -9c < " .. tmp)
      local theirs = p:read("*a")
      p:close()
      os.remove(tmp)
      assert.equal(text, gzip.decompress(theirs))
      assert.equal(gzip.compress(""), gzip.compress(""))
      assert.equal("", gzip.decompress(gzip.compress("")))
    end)

    it("refuses corrupt input", function()
      local gz = gzip.compress("hello hello hello")
      assert.is_nil(gzip.decompress("nope"))
      assert.is_nil(gzip.decompress(gz:sub(1, -2)))
      local bad = gz:sub(1, -9) .. "\0\0\0\0" .. gz:sub(-4) -- CRC-32 zeroed
      local ok, msg = gzip.decompress(bad)
      assert.is_nil(ok)
      assert.matches("CRC", msg)
    end)
  end)

  -- viopay's POS key provisioning guide, word for word: what an integrator who follows it
  -- sends must be accepted by default; payhsm's stronger options come after.
  describe("the guide's own way", function()
    -- A magstripe charge built as the guide describes, field-level data under `key`.
    local function charge_doc(d, key, extra)
      local iv = hsm.random(16)
      local c = { request_id = util.uuid(), amount = 250, currency = "EUR", entry_mode = "magstripe",
        card = { encrypted_pan = hsm.cipher.encrypt(key, "CBC", P.pan_block("5413330089010434"), iv), pan_iv = iv },
        pin_block = hsm.pin.encrypt(d.keys.tpk, "ISO_FORMAT_4", "4321", "5413330089010434"),
        pin_block_format = "ISO_FORMAT_4" }
      for k, v in pairs(extra or {}) do c.card[k] = v end
      return seal(d, c)
    end
    -- Only the headers that name the device and key set, and X-Signature = HMAC of the body.
    local function guide_request(w, d, path, body)
      return post(w, path, { [P.H.device] = DEV, [P.H.key_set] = d.key_set.key_set_id,
        [P.H.signature] = hsm.hmac(d.keys.mac, body) }, body)
    end

    it("'Use MSK for field-level data encrypt (send ciphertext to API)': the PAN under the MSK is accepted", function()
      local w = new_world()
      local d = active_device(w)
      local resp = signed(w, d, P.PATHS.charge, charge_doc(d, d.keys.msk))
      assert.equal(200, resp.status)
      local out = cjson.decode(hsm.envelope.open(d.keys.msk, resp.body))
      assert.same({ "approved", "00", "541333******0434" }, { out.status, out.response_code, out.card.masked_pan })
      -- the TDK ("Legacy/auxiliary data encryption key") stays, named by card.pan_key
      resp = signed(w, d, P.PATHS.charge, charge_doc(d, d.keys.tdk, { pan_key = "tdk" }))
      assert.equal(200, resp.status)
      -- a PAN under the TDK that does not say so is not a PAN under the MSK
      resp = signed(w, d, P.PATHS.charge, charge_doc(d, d.keys.tdk))
      assert.same({ 400, "4000" }, { err_of(resp) })
      assert.matches("not a PAN under the MSK", cjson.decode(resp.body).error.details, 1, true)
      assert.same({ 400, "4000" }, { err_of(signed(w, d, P.PATHS.charge, charge_doc(d, d.keys.msk, { pan_key = "zmk" }))) })
      -- a server configured for the legacy path reads an unnamed PAN under the TDK
      local w2 = new_world { pan_key = "tdk" }
      local d2 = active_device(w2)
      assert.equal(200, signed(w2, d2, P.PATHS.charge, charge_doc(d2, d2.keys.tdk)).status)
      assert.same({ 400, "4000" }, { err_of(signed(w2, d2, P.PATHS.charge, charge_doc(d2, d2.keys.msk))) })
      -- the device puts the PAN under the MSK by default, under the TDK when told
      local req = d:charge_request { amount = 100, card = card(2), pin = "4321" }
      local fields = {}
      for i = 1, #req.kv, 2 do fields[req.kv[i]] = req.kv[i + 1] end
      local cf = {}
      for i = 1, #fields.card.kv, 2 do cf[fields.card.kv[i]] = fields.card.kv[i + 1] end
      assert.equal(P.pan_block("5413330089010434"), hsm.cipher.decrypt(d.keys.msk, "CBC", cf.encrypted_pan, cf.pan_iv))
      assert.is_nil(cf.pan_key)
      local legacy = active_device(w, DEV2, ZMK2, DAK2)
      legacy.pan_key = "tdk"
      assert.equal("approved", (assert(legacy:charge { amount = 100, card = card(2), pin = "4321" })).status)
    end)

    it("'HMAC signs the envelope body' and 'Empty HMAC body': a request signed so is served by default", function()
      local w = new_world()
      local d = active_device(w)
      local resp = guide_request(w, d, P.PATHS.charge, charge_doc(d, d.keys.msk))
      assert.equal(200, resp.status)
      -- the response is signed the same way: an HMAC of its body
      assert.is_true(hsm.hmac_verify(d.keys.mac, resp.body, resp.headers["X-Signature"]))
      assert.equal("body", resp.headers["X-Signature-Scheme"])
      local ch = cjson.decode(hsm.envelope.open(d.keys.msk, resp.body))
      -- cancel: "Empty HMAC body"
      resp = guide_request(w, d, "/pos/charge/" .. ch.charge_id .. "/cancel", "")
      assert.equal(200, resp.status)
      assert.equal("cancelled", cjson.decode(hsm.envelope.open(d.keys.msk, resp.body)).status)
      assert.same({ 401, "4003" }, { err_of(post(w, P.PATHS.config, { [P.H.device] = DEV,
        [P.H.key_set] = d.key_set.key_set_id, [P.H.signature] = hsm.hmac(d.keys.mac, "x") }, "")) })
      -- X-Timestamp and X-Nonce, when sent, are still checked
      assert.same({ 401, "4004" }, { err_of(signed(w, d, P.PATHS.config, nil, { timestamp = P.iso8601(w.clock() - 301) })) })
      -- the device follows: /pos/keys names the scheme, the device signs and checks with it
      assert.equal("body", d.signature)
      assert(d:fetch_config())
      assert.equal(hsm.hmac(d.keys.mac, ""), d.last_request.headers[P.H.signature])
    end)

    it("offers payhsm's bound signature as request_signature = \"bound\"; the device follows the server", function()
      local w = new_world { request_signature = "bound" }
      local d = active_device(w)
      assert.equal("bound", d.signature)
      assert.equal("approved", (assert(d:charge { amount = 100, card = card(2), pin = "4321" })).status)
      -- the guide's body-only signature is refused there
      assert.same({ 401, "4003" }, { err_of(guide_request(w, d, P.PATHS.charge, charge_doc(d, d.keys.msk))) })
      -- a device pinned to one scheme refuses a server that names the other
      local pinned = w.device(DEV2, ZMK2, DAK2, { request_signature = "body" })
      assert(pinned:attest())
      local ok, _, code = pinned:download_keys()
      assert.is_nil(ok)
      assert.equal("SIGNATURE_SCHEME", code)
      assert.has_error(function() new_world { request_signature = "hmac" } end)
      assert.has_error(function() new_world { pan_key = "tpk" } end)
    end)

    -- The guide's example runs from "issued_at": "2025-12-13T14:25:30Z" to "expires_at":
    -- "2026-12-13T14:25:30Z": one calendar year, which 365 * 86,400 s is not across 29 February.
    it("'expires_at' one calendar year after 'issued_at' (2027-11-13 -> 2028-11-13, across 29 February)", function()
      for _, c in ipairs {
        { "2025-12-13T14:25:30Z", "2026-12-13T14:25:30Z" },
        { "2027-11-13T09:00:00Z", "2028-11-13T09:00:00Z" },
        { "2028-02-29T12:00:00Z", "2029-02-28T12:00:00Z" },
      } do
        local w = new_world()
        w.advance(P.parse_iso8601(c[1]) - T0)
        local d = w.device()
        assert(d:attest())
        local ks = assert(d:download_keys())
        assert.equal(c[2], P.iso8601(ks.expires_at))
      end
      local w = new_world { key_set_years = 2 }
      local d = w.device()
      d:attest()
      assert.equal("2027-12-13T14:25:30Z", P.iso8601((assert(d:download_keys())).expires_at))
      assert.has_error(function() new_world { key_set_years = 1, key_set_lifetime = 3600 } end)
    end)
  end)
end)
