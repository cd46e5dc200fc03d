-- POS activation and payments (viopay's POS key provisioning guide): a terminal with a ZMK and an
-- attestation key injected at manufacturing attests, downloads its key set (TMK under the
-- ZMK, KEK under the TMK, MSK / TPK / TDK / MAC under the KEK), installs it in viopay's
-- order checking every KCV, fetches its config and terminal parameters, activates, and
-- takes a chip payment that it then refunds, and another that it cancels -- the guide's
-- way first (the PAN under the MSK, "HMAC signs the envelope body"), then payhsm's options
-- (the bound signature that closes the body-only replays, the TDK as legacy PAN key). Then the
-- failure runs: a token after 5 simulated minutes, a wrong device id, a tampered
-- envelope, a bad HMAC, a wrong KCV, a replay. Then the key set's renewal before expiry
-- (simulated time moves to 30 days before expires_at; the device renews before its next
-- charge), a set delivered already expired, and an expired set (4006) on a terminal
-- that does not renew on its own.
local hsm = require "payhsm"
local util = require "payhsm.util"
local cjson = require "cjson"
local pos = require "payhsm.pos.server"
local device_mod = require "payhsm.pos.device"
local P = require "payhsm.pos.protocol"

local function step(title) print(("-- %s"):format(title)) end
local function show(label, value) print(("   %-34s %s"):format(label, tostring(value))) end
local function refused(label, want, ok, msg, code)
  assert(ok == nil, label .. ": expected a refusal")
  assert(code == want, ("%s: expected %s, got %s (%s)"):format(label, want, tostring(code), tostring(msg)))
  show(label, ("refused [%s] %s"):format(code, msg))
end

local now = 1765635930 -- 2025-12-13T14:25:30Z
local clock = function() return now end

step("Manufacturing: key injection (ZMK AES-256 K1, attestation key HMAC-SHA-256 M7) and registration")
local DEVICE_ID = "POS-8F3A2C91"
local zmk = hsm.key.generate("AES_256", { usage = "K1", mode = "B", exportability = "E" })
local dak = hsm.key.generate("HMAC_SHA256", { usage = "M7", mode = "C", exportability = "E" })
-- a second terminal for the failure runs around tokens and key installs
local zmk2 = hsm.key.generate("AES_256", { usage = "K1", mode = "B", exportability = "E" })
local dak2 = hsm.key.generate("HMAC_SHA256", { usage = "M7", mode = "C", exportability = "E" })
local server = pos.new {
  devices = { { device_id = DEVICE_ID, zmk = zmk:export(), attestation_key = dak:export() },
              { device_id = "POS-1234ABCD", zmk = zmk2:export(), attestation_key = dak2:export() } },
  clock = clock,
  -- the guide's ways are the defaults: key_set_years = 1 (calendar years),
  -- request_signature = "body", pan_key = "msk"
}
local transport = function(req) return server:handle(req) end
show("device", DEVICE_ID)
show("ZMK KCV (CMAC)", zmk:kcv("CMAC"))

local dev = device_mod.new { device_id = DEVICE_ID, zmk = zmk, attestation_key = dak, transport = transport,
  clock = clock }

step("Steps 4-5: POST /pos/attest/challenge, POST /pos/attest")
local token, att = assert(dev:attest())
show("attestation token", token:sub(1, 8) .. "…  (" .. #token .. " chars)")
show("expires_at", att.expires_at)

step("Step 6: POST /pos/keys (Authorization: Attestation att_…, X-Device-Id)")
local ks, doc = assert(dev:download_keys())
show("key_set_id", ks.key_set_id)
show("issued_at / expires_at", doc.key_set.issued_at .. " / " .. doc.key_set.expires_at .. " (one calendar year)")
show("X-Signature-Scheme", dev.signature .. " (the guide's: HMAC signs the envelope body)")
show("transport", ("%s %s under %s"):format(doc.transport.format, doc.transport.encryption,
  doc.transport.wrapped_under))
for _, s in ipairs(device_mod.INSTALL_ORDER) do
  local block = util.b64decode(doc.keys[s[1]].key_block)
  show(("install %s under %s"):format(s[1]:upper(), s[2]:upper()),
    ("%s…  usage %s  KCV %s ok"):format(block:sub(1, 16), doc.keys[s[1]].usage, doc.verification.kcv[s[1]]))
end

step("Step 7: POST /pos/config (MSK envelope in the response)")
local cfg = assert(dev:fetch_config())
show("merchant", ("%s %s (MCC %s)"):format(cfg.merchant.merchant_id, cfg.merchant.name, cfg.merchant.mcc))
show("terminal_id / currency", cfg.terminal_id .. " / " .. cfg.currency)

step("Step 8: POST /pos/terminal-parameters (MSK envelope around gzip JSON)")
local params, format, gz_len, json_len = assert(dev:fetch_terminal_parameters())
show("envelope format", format)
show("gzip / JSON bytes", ("%d / %d"):format(gz_len, json_len))
show("EMV applications", #params.applications)

step("Step 9: POST /pos/activate (readiness JSON in, result out, both MSK envelopes)")
local act = assert(dev:activate())
show("status", act.status .. " since " .. act.activated_at .. ", terminal " .. act.terminal_id)

step("Payments, the guide's way: PAN under the MSK (step 4), PIN ISO format 4 under the TPK, ARQC")
local issuer = pos.TEST_ISSUER
local imk = hsm.key.import("TDES_2KEY", issuer.imk, { usage = "E0" })
local card = device_mod.card { pan = issuer.cards[1].pan, psn = issuer.cards[1].psn, imk = imk }
local ch = assert(dev:charge { amount = 1250, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
show("charge " .. ch.charge_id, ("%s %s (%s) auth %s"):format(ch.status, ch.response_code, ch.message,
  ch.authorization_code))
show("card / ARPC", ("%s / %s (card accepts: %s)"):format(ch.card.masked_pan, ch.emv.arpc, ch.arpc_ok))
assert(ch.status == "approved" and ch.arpc_ok)
local sent = dev.last_request
show("X-Signature = HMAC(MAC, body)", tostring(hsm.equal(sent.headers[P.H.signature], hsm.hmac(dev.keys.mac, sent.body))))
local inner = cjson.decode(hsm.envelope.open(dev.keys.msk, sent.body))
show("card.encrypted_pan under the MSK", hsm.cipher.decrypt(dev.keys.msk, "CBC", inner.card.encrypted_pan,
  inner.card.pan_iv):gsub("^(%d%d%d%d%d%d)%d+(%d%d%d%d)F*$", "%1******%2"))
local rf = assert(dev:refund(ch.charge_id, 1250, "customer return"))
show("refund " .. rf.refund_id, ("%s %d %s"):format(rf.status, rf.amount, rf.currency))
refused("second refund", "4091", dev:refund(ch.charge_id, 1250))
local ch2 = assert(dev:charge { amount = 899, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
show("charge " .. ch2.charge_id, ch2.status)
local cc = assert(dev:cancel(ch2.charge_id))
show("cancel (empty HMAC body)", cc.status .. " at " .. cc.cancelled_at)
refused("cancel again", "4092", dev:cancel(ch2.charge_id))
local bad = assert(dev:charge { amount = 500, currency = "EUR", entry_mode = "chip", card = card, pin = "0000" })
show("wrong PIN", ("%s %s (%s)"):format(bad.status, bad.response_code, bad.message))
assert(bad.response_code == "55")

step("The replay the guide's body-only HMAC allows, and payhsm's bound signature")
-- Every cancel signs the empty body, so one cancel's X-Signature cancels any charge.
local victim = assert(dev:charge { amount = 650, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
local seen_sig = hsm.hmac(dev.keys.mac, "") -- what an eavesdropper saw on the earlier cancel
local forged = transport { method = "POST", path = "/pos/charge/" .. victim.charge_id .. "/cancel", body = "",
  headers = { ["x-device-id"] = DEVICE_ID, ["x-key-set-id"] = dev.key_set.key_set_id, ["x-signature"] = seen_sig } }
show("body: old cancel signature, new charge", forged.status .. " (cancelled without the MAC key)")
assert(forged.status == 200)
local bound_srv = pos.new {
  devices = { { device_id = DEVICE_ID, zmk = zmk:export(), attestation_key = dak:export() } },
  clock = clock, request_signature = "bound",
}
local bdev = device_mod.new { device_id = DEVICE_ID, zmk = zmk, attestation_key = dak, clock = clock,
  transport = function(req) return bound_srv:handle(req) end }
assert(bdev:activate_all())
show("bound: X-Signature-Scheme", bdev.signature .. " (method, path, device, key set, X-Timestamp, X-Nonce, body)")
local bch = assert(bdev:charge { amount = 650, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
local bch2 = assert(bdev:charge { amount = 700, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
assert(bdev:cancel(bch.charge_id))
local captured = bdev.last_request.headers -- the signed cancel an eavesdropper saw
local moved = bound_srv:handle { method = "POST", path = "/pos/charge/" .. bch2.charge_id .. "/cancel", body = "",
  headers = captured }
refused("bound: that cancel moved to another charge", "4003", nil, cjson.decode(moved.body).error.message,
  cjson.decode(moved.body).error.code)
refused("bound: the same cancel replayed", "4004", bdev:replay_last())

step("payhsm's option: the TDK as legacy PAN key (the guide's 'Legacy/auxiliary data encryption key')")
dev.pan_key = "tdk"
local legacy = assert(dev:charge { amount = 300, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
show("charge with card.pan_key = \"tdk\"", legacy.status .. " " .. legacy.response_code)
assert(legacy.status == "approved")
dev.pan_key = "msk"

step("Failure runs")
-- a token after 5 simulated minutes
local late = device_mod.new { device_id = "POS-1234ABCD", zmk = zmk2, attestation_key = dak2,
  transport = transport, clock = clock }
assert(late:attest())
now = now + 300
refused("token after 5 minutes", "4001", late:download_keys())
-- a wrong device id: the token was bound to POS-1234ABCD
local resp = transport { method = "POST", path = P.PATHS.keys,
  headers = { authorization = "Attestation " .. assert(late:attest()), ["x-device-id"] = DEVICE_ID } }
local e = cjson.decode(resp.body).error
refused("token with another X-Device-Id", "4001", nil, e.message, e.code)
resp = transport { method = "POST", path = P.PATHS.keys,
  headers = { authorization = "Bearer " .. late.token, ["x-device-id"] = "POS-1234ABCD" } }
e = cjson.decode(resp.body).error
refused("Bearer instead of Attestation", "4001", nil, e.message, e.code)
show("401 body", resp.body)
-- a wrong KCV: the device installs nothing
local r2 = transport { method = "POST", path = P.PATHS.keys,
  headers = { authorization = "Attestation " .. late.token, ["x-device-id"] = "POS-1234ABCD" } }
local kdoc = cjson.decode(r2.body)
kdoc.verification.kcv.tpk = "000000"
refused("key set with a wrong TPK KCV", "KCV_MISMATCH", late:install(kdoc))
local kdoc2 = cjson.decode(r2.body)
local blk = util.b64decode(kdoc2.keys.kek.key_block)
kdoc2.keys.kek.key_block = util.b64encode(blk:sub(1, -3) .. (blk:sub(-2) == "00" and "01" or "00"))
refused("key set with a flipped KEK MAC", "TR31_MAC_MISMATCH", late:install(kdoc2))
-- the main device keeps working; tamper with its envelope in transit
local real = dev.transport
dev.transport = function(req)
  if req.body and req.body ~= "" then
    req.body = req.body:gsub('"ciphertext":"(%x)', function(c) return '"ciphertext":"' .. (c == "A" and "B" or "A") end)
  end
  return real(req)
end
refused("tampered charge envelope", "4003", dev:charge { amount = 100, card = card, pin = "1234" })
-- a bad HMAC: the device signs with a MAC key the server never issued
dev.transport = real
local mac = dev.keys.mac
dev.keys.mac = hsm.key.generate("HMAC_SHA256", { usage = "M7", mode = "C" })
refused("charge with a bad HMAC", "4003", dev:charge { amount = 100, card = card, pin = "1234" })
dev.keys.mac = mac
-- a replay of a signed request
assert(dev:fetch_config())
refused("replayed request", "4004", dev:replay_last())

step("Key set renewal: the device renews on its own before expiry")
local margin = dev:renew_margin()
show("expires_at / renew_before_seconds", P.iso8601(dev.key_set.expires_at) .. " / " .. margin)
local before = dev.key_set.key_set_id
now = dev.key_set.expires_at - margin -- simulated time: 30 days before expiry
local seen = {}
dev.transport = function(req)
  local r = real(req)
  seen[#seen + 1] = ("%s %d"):format(req.path, r.status)
  return r
end
local ch3 = assert(dev:charge { amount = 4200, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
dev.transport = real
show("clock", P.iso8601(now))
show("requests for one charge", table.concat(seen, ", "))
show("key set", before .. " -> " .. dev.key_set.key_set_id .. " until " .. P.iso8601(dev.key_set.expires_at))
show("charge under the new key set", ch3.status .. " " .. ch3.response_code)
assert(dev.renewals == 1 and dev.key_set.key_set_id ~= before and ch3.status == "approved")
assert(seen[3] == "/pos/keys 200" and seen[4] == "/pos/charge 200" and #seen == 4, "renewal before the charge")

step("Failure runs: key set expiry")
-- a key set delivered after its expires_at is not installed
local stale = cjson.decode(transport { method = "POST", path = P.PATHS.keys,
  headers = { authorization = "Attestation " .. assert(late:attest()), ["x-device-id"] = "POS-1234ABCD" } }.body)
now = P.parse_iso8601(stale.key_set.expires_at)
refused("set already expired on delivery", "KEY_SET_EXPIRED", late:install(stale))
-- a terminal that does not renew on its own gets 4006 once the set has expired
dev.auto_renew = false
now = dev.key_set.expires_at
refused("envelope under an expired key set", "4006", dev:fetch_config())
local fresh = assert(dev:ensure_keys())
show("new key set downloaded", fresh.key_set_id .. " until " .. P.iso8601(fresh.expires_at))
local ch4 = assert(dev:charge { amount = 1800, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
show("charge under the new key set", ch4.status .. " " .. ch4.response_code)
assert(ch4.status == "approved")
print("POS activation scenario: all steps and refusals as expected")
