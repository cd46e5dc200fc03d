-- Host-to-host Master Session Keys (Fiserv's host-to-host MSK API): an integrator and the
-- gateway share two AES-256 zone master keys (PAN and PIN); the integrator imports
-- session keys as TR-31 blocks, the gateway rotates them through three static key IDs,
-- and transactions use the active key. Ends with a gateway restart on its SQLite store.
local hsm = require "payhsm"
local gateway = require "payhsm.gateway"
local client_mod = require "payhsm.gateway.client"

local function step(title) print(("-- %s"):format(title)) end
local function show(label, value) print(("   %-30s %s"):format(label, tostring(value))) end

local function table_of(gw, label)
  local rows = {}
  for _, s in ipairs(gw:slots(label) or {}) do
    rows[#rows + 1] = ("%s v%s %s%s"):format(s.id, s.version, s.kcv, s.active and " (active)" or "")
  end
  return #rows > 0 and table.concat(rows, " | ") or "(empty)"
end

step("Offline: the two zone master keys (AES-256) are exchanged and registered by label")
local zmk_pan = hsm.key.generate("AES_256", { usage = "K0", mode = "B" })
local zmk_pin = hsm.key.generate("AES_256", { usage = "K0", mode = "B" })
show("ZMK_PAN_XXX_YYY  KCV (CMAC)", zmk_pan:kcv("CMAC"))
show("ZMK_PIN_XXX_YYY  KCV (CMAC)", zmk_pin:kcv("CMAC"))

local db = os.tmpname()
local function gateway_config()
  return {
    master_keys = {
      { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = zmk_pan:export() },
      { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = zmk_pin:export() },
    },
    basic_auth = { integrator = "s3cret" },
    store = require("payhsm.store.sqlite").new { path = db },
  }
end
local gw = gateway.new(gateway_config())
step("The gateway's own PAN and PIN keys: random, made at its first start, kept in its store under its local master key")
show("gateway PAN key  KCV (CMAC)", gw.gw_pan:kcv("CMAC"))
show("gateway PIN key  KCV (CMAC)", gw.gw_pin:kcv("CMAC"))
local own_before = gw.gw_pan:kcv("CMAC") .. gw.gw_pin:kcv("CMAC")
local client = client_mod.new {
  -- in process, the path decoded once as the HTTP server would (gw is replaced at the restart)
  transport = function(req) return client_mod.in_process(gw)(req) end,
  user = "integrator", password = "s3cret",
  zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = zmk_pan }, PIN = { label = "ZMK_PIN_XXX_YYY", key = zmk_pin } },
}

step("Five PAN session keys (DEK, AES-128, TR-31 D under the PAN ZMK) imported under one label")
local dek
for n = 1, 5 do
  local res = assert(client:rotate("PAN", "DEK_XX_XXYY"))
  dek = res
  show(("import %d -> sessionKeyId %s"):format(n, res.sessionKeyId), table_of(gw, "DEK_XX_XXYY"))
end
local id, kcv, version = client:active("DEK_XX_XXYY")
show("Get Keys: active key", ("%s (version %s, KCV %s)"):format(id, version, kcv))
assert(id == dek.sessionKeyId and version == "3.0")

step("Refusals")
local _, msg, code = client:import("PAN", "DEK_XX_XXYY", dek.key)
show("same key again", ("%s  [%s]"):format(msg, code))
assert(code == "301")
local req = client:import_request("PAN", "DEK_XX_XXYY", client:generate("PAN"))
req.kv[#req.kv] = "000000" -- the sessionKeyCheckValue field
local doc
doc, msg, code = client:call("POST", gateway.PATHS.import, req)
show("wrong check value", ("%s  [%s]"):format(msg, code))
assert(not doc and code == "3907")

step("A PIN session key (ZPK) and a PIN translated to the gateway's PIN key")
local zpk = assert(client:rotate("PIN", "ZPK_XX_XXYY"))
local pan = "4111111111111111"
show("ZPK imported", zpk.sessionKeyId .. " KCV " .. zpk.sessionKeyCheckValue)
show("PIN block under the ZPK (ISO 4)", hsm.pin.encrypt(zpk.key, "ISO_FORMAT_4", "1234", pan))
doc = assert(client:translate_pin(zpk, zpk.key, "1234", pan))
show("under the gateway PIN key", doc.pinBlock .. " (key " .. doc.gatewayKeyCheckValue .. ")")

step("A PAN re-encrypted from the active DEK to the gateway's PAN key")
show("PAN under the DEK", client_mod.encrypt_pan(dek.key, pan))
doc = assert(client:reencrypt_pan(dek, dek.key, pan))
show("under the gateway PAN key", doc.encryptedPan .. " (IV " .. doc.iv .. ")")
show("with sessionKeyId / version", doc.sessionKeyId .. " / " .. doc.version)

step("A transaction must name the key instance: sessionKeyId and its sessionKeyCheckValue")
doc, msg, code = client:call("POST", gateway.PATHS.pan, require("payhsm.util").object {
  "sessionKeyId", dek.sessionKeyId, "encryptedPan", client_mod.encrypt_pan(dek.key, pan) })
show("without sessionKeyCheckValue", ("%s  [%s]"):format(msg, code))
assert(not doc and code == "1002")

step("A key rotated out is refused")
local old = dek
for _ = 1, 3 do client:rotate("PAN", "DEK_XX_XXYY") end
doc, msg, code = client:reencrypt_pan(old, old.key, pan)
show("old key " .. old.sessionKeyId .. " after 3 rotations", ("%s  [%s]"):format(msg, code))
assert(code == "3930")

step("Restart: a new gateway process on the same SQLite file keeps every key")
local before = table_of(gw, "DEK_XX_XXYY")
gw.store:close()
gw = gateway.new(gateway_config())
show("before restart", before)
show("after restart", table_of(gw, "DEK_XX_XXYY"))
assert(before == table_of(gw, "DEK_XX_XXYY"))
show("PIN key label after restart", table_of(gw, "ZPK_XX_XXYY"))
show("gateway PAN / PIN key KCVs", gw.gw_pan:kcv("CMAC") .. " / " .. gw.gw_pin:kcv("CMAC") .. " (unchanged)")
assert(own_before == gw.gw_pan:kcv("CMAC") .. gw.gw_pin:kcv("CMAC"))
doc = assert(client:translate_pin(zpk, zpk.key, "1234", pan))
show("PIN translated after restart", doc.pinBlock)
gw.store:close()
os.remove(db)
os.remove(db .. "-wal")
os.remove(db .. "-shm")
print("msk_gateway: ok")
