-- Options tables are checked, not guessed: every function that takes an options,
-- attribute or parameter table raises on a field it does not know, naming the field and
-- the fields it accepts (csrc/core.c payhsm_checkfields; util.checkfields for the Lua
-- modules). A misspelt field would otherwise silently change a result: an EMV table with
-- `derivaton = "MASTERCARD"` would compute EMV_COMMON, a key imported with `usge = "P0"`
-- would be good for any use.
local hsm = require "payhsm"
local core = require "payhsm.core"

local TDES = "0123456789ABCDEFFEDCBA9876543210"
local function tdes(attrs) return hsm.key.import("TDES_2KEY", TDES, attrs) end
local function aes(attrs) return hsm.key.import("AES_256", ("11"):rep(32), attrs) end

-- fn() must raise "<where>: unknown option '<field>' (expected one of: <list>)".
local function refuses(where, field, list, fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, where .. " accepted " .. field)
  err = tostring(err)
  local want = ("%s: unknown option '%s' (expected one of: %s)"):format(where, field, list)
  assert.truthy(err:find(want, 1, true), ("%s\nwanted: %s"):format(err, want))
end

local EMV_P = "mode, pan, psn, derivation, atc, un, iv, height, branch_factor, padding, data, arqc, method, "
  .. "arc, csu, proprietary"

describe("options tables", function()
  it("key attributes (key.import, key.generate, key.derive) and hsm.policy", function()
    refuses("key attributes", "usge", "usage, mode, version, exportability, local_master",
      function() tdes { usge = "P0" } end)
    refuses("key attributes", "Mode", "usage, mode, version, exportability, local_master",
      function() hsm.key.generate("AES_128", { Mode = "E" }) end)
    refuses("key attributes", "exportable", "usage, mode, version, exportability, local_master",
      function() hsm.key.derive(aes(), "AES_128", "l", "c", { exportable = "N" }) end)
    refuses("policy", "clear_exports", "clear_export", function() hsm.policy { clear_exports = false } end)
    -- the right spelling still works
    assert.equal("P0", tdes({ usage = "P0" }).usage)
  end)

  it("mac.generate and mac.verify", function()
    local k = tdes()
    refuses("mac.generate", "lenght", "length, padding",
      function() hsm.mac.generate(k, "ISO9797_ALGORITHM3", "00", { lenght = 4 }) end)
    refuses("mac.verify", "pading", "length, padding",
      function() hsm.mac.verify(k, "ISO9797_ALGORITHM3", "00", "00000000", { pading = 2 }) end)
  end)

  it("tr31.wrap: opts, the header table and each optional block", function()
    local kbpk, key = aes(), tdes { usage = "P0", mode = "E" }
    refuses("tr31.wrap", "obfuscated", "obfuscate, padding, legacy, local",
      function() hsm.tr31.wrap(kbpk, key, {}, { obfuscated = false }) end)
    refuses("tr31.wrap: header", "key_usage", "version, usage, algorithm, mode, key_version, exportability, "
      .. "context, blocks", function() hsm.tr31.wrap(kbpk, key, { key_usage = "P0" }) end)
    refuses("tr31.wrap: header.blocks entry", "value", "id, data",
      function() hsm.tr31.wrap(kbpk, key, { blocks = { { id = "KS", value = "00" } } }) end)
  end)

  it("emv: every function taking p (derivaton would silently give EMV_COMMON)", function()
    local imk = tdes()
    local p = { pan = "5413330089020011", psn = "00", atc = "0001", data = "00", derivaton = "MASTERCARD" }
    refuses("emv.generate_arqc", "derivaton", EMV_P, function() hsm.emv.generate_arqc(imk, p) end)
    refuses("emv.verify_arqc", "derivaton", EMV_P, function() hsm.emv.verify_arqc(imk, p) end)
    refuses("emv.generate_arpc", "derivaton", EMV_P, function() hsm.emv.generate_arpc(imk, p) end)
    refuses("emv.compute_arpc", "arc_code", EMV_P,
      function() hsm.emv.compute_arpc(imk, { arqc = ("00"):rep(8), arc_code = "3030" }) end)
    refuses("emv.derive_session_key", "act", EMV_P,
      function() hsm.emv.derive_session_key(imk, "EMV_COMMON", { act = "0001" }) end)
  end)

  it("as2805 KEK validation", function()
    local kek = tdes { usage = "K0", mode = "B" }
    refuses("as2805.kek_validation_request", "variantmask", "variant_mask, derive_algorithm, random_key_max_length",
      function() hsm.as2805.kek_validation_request(kek, { variantmask = "VARIANT_MASK_82C0" }) end)
    refuses("as2805.kek_validation_response", "mask", "variant_mask",
      function() hsm.as2805.kek_validation_response(kek, ("00"):rep(16), { variant_mask = "VARIANT_MASK_82", mask = 1 }) end)
    refuses("as2805.kek_validation_verify", "mask", "variant_mask",
      function() hsm.as2805.kek_validation_verify(kek, ("00"):rep(16), ("00"):rep(16), { mask = 1 }) end)
  end)

  it("zka.mac and zka.verify_mac", function()
    local sk = tdes()
    refuses("zka.mac", "len", "length, padding", function() hsm.zka.mac(sk, "00", { len = 4 }) end)
    refuses("zka.verify_mac", "len", "length, padding",
      function() hsm.zka.verify_mac(sk, "00", ("00"):rep(8), { len = 4 }) end)
  end)

  it("envelope seal and open, and the envelope table itself", function()
    local msk = aes()
    refuses("envelope.seal", "chunk", "chunked, iv, chunk_size",
      function() hsm.envelope.seal(msk, "x", { chunk = true }) end)
    refuses("envelope.open", "mac", "mac_key, hmac",
      function() hsm.envelope.open(msk, "{}", { mac = "00" }) end)
    refuses("envelope", "iv", "format, ciphertext, initialization_vector, mode, chunk_size",
      function() hsm.envelope.open(msk, { format = "TR31-DATA", iv = "00" }) end)
    refuses("envelope", "cipher_text", "format, ciphertext, initialization_vector, mode, chunk_size",
      function() hsm.envelope.encode { cipher_text = "00" } end)
  end)

  it("rotation.new and rsa.open", function()
    refuses("rotation.new", "id", "ids", function() hsm.rotation.new { ids = { "a" }, id = "a" } end)
    local priv = core.rsa.generate(2048)
    refuses("rsa.open", "encryptedKey", "encrypted_key, iv, ciphertext, tag",
      function() core.rsa.open(priv, { encryptedKey = "00" }) end)
  end)
end)

-- The Lua modules check their options tables the same way (util.checkfields).
describe("options tables of the Lua modules", function()
  local function refuses_lua(where, field, fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, where .. " accepted " .. field)
    assert.matches(where:gsub("%p", "%%%0") .. ": unknown option '" .. field .. "' %(expected one of: ", tostring(err))
  end

  it("stores, their update, the HTTP client, parse_time", function()
    refuses_lua("store.memory.new", "clok", function() require("payhsm.store.memory").new { clok = os.time } end)
    local store = require("payhsm.store.memory").new()
    refuses_lua("store:update", "tll", function() store:update("k", function() return "v" end, { tll = 5 }) end)
    refuses_lua("store.sqlite.new", "file", function() require("payhsm.store.sqlite").new { path = ":memory:", file = "x" } end)
    refuses_lua("http_client.new", "hostname", function()
      require("payhsm.http_client").new { host = "127.0.0.1", port = 1, hostname = "x" } end)
    refuses_lua("parse_time", "fractions", function() require("payhsm.util").parse_time("2025-01-01T00:00:00Z", { fractions = true }) end)
  end)

  it("the systems' configs and clients", function()
    local MK = { { label = "ZMK_PIN", key_type = "PIN", algorithm = "AES_256", hex = ("AB"):rep(32) } }
    refuses_lua("gateway config", "master_key", function()
      require("payhsm.gateway").new { master_keys = MK, basic_auth = { u = "p" }, master_key = MK } end)
    refuses_lua("pos config", "key_set_life", function() require("payhsm.pos.server").new { key_set_life = 5 } end)
    refuses_lua("mupk config", "webhook", function() require("payhsm.mupk").new { webhook = "http://x" } end)
    refuses_lua("gateway.client.new", "pasword", function()
      require("payhsm.gateway.client").new { user = "u", pasword = "p", transport = function() end } end)
    refuses_lua("server.start", "quite", function() require("payhsm.server").start("gateway", {}, { quite = true }) end)
    refuses_lua("config store", "backand", function() require("payhsm.server").open_store { backand = "memory" } end)
  end)
end)
