-- AS2805 node-to-node initialisation: two nodes validate each other's KEKs, then exchange a
-- session key; a node holding the wrong KEK is detected before any key moves.
local hsm = require "payhsm"

local function step(title) print(("-- %s"):format(title)) end
local function show(label, value) print(("   %-34s %s"):format(label, tostring(value))) end
local MASK = { variant_mask = "VARIANT_MASK_82C0" }

-- Each direction has its own KEK: node A's sending KEK is node B's receiving KEK.
local kek_ab = hsm.key.generate("TDES_2KEY", { usage = "K0", mode = "B" })
local kek_ba = hsm.key.generate("TDES_2KEY", { usage = "K0", mode = "B" })
local function node(name, send, recv) return { name = name, kek_s = send, kek_r = recv } end
local a = node("acquirer", kek_ab, hsm.key.import("TDES_2KEY", kek_ba:export(), { usage = "K0", mode = "B" }))
local b = node("switch", kek_ba, hsm.key.import("TDES_2KEY", kek_ab:export(), { usage = "K0", mode = "B" }))

local function validate(from, to)
  local req = hsm.as2805.kek_validation_request(from.kek_s, { derive_algorithm = "TDES_2KEY",
    random_key_max_length = "BYTES_16", variant_mask = MASK.variant_mask })
  show(from.name .. " -> " .. to.name .. " KRs", req.random_key_send .. "  (KEK KCV " .. req.kcv .. ")")
  local krr = hsm.as2805.kek_validation_response(to.kek_r, req.random_key_send, MASK)
  show(to.name .. " -> " .. from.name .. " KRr", krr)
  local ok, why = hsm.as2805.kek_validation_verify(from.kek_s, req.random_key_send, krr, MASK)
  show("verdict", ok and "KEK validated" or ("FAILED: " .. why))
  return ok
end

step("Sign-on: KEK validation both ways")
assert(validate(a, b))
assert(validate(b, a))

step("Session key exchange under the validated KEK (TR-31 version B)")
local zpk = hsm.key.generate("TDES_2KEY", { usage = "P0", mode = "B" })
local kbpk_a = hsm.key.import("TDES_2KEY", a.kek_s:export(), { usage = "K0", mode = "B" })
local block = assert(hsm.tr31.wrap(kbpk_a, zpk, {}))
show("ZPK sent", block)
local at_b = assert(hsm.tr31.unwrap(b.kek_r, block))
show("ZPK received, KCV", at_b:kcv() .. " (sent " .. zpk:kcv() .. ")")
assert(at_b:kcv() == zpk:kcv())
local pinblock = hsm.pin.encrypt(zpk, "ISO_FORMAT_0", "8642", "4564320000980369")
show("PIN block under the new ZPK", pinblock)
assert(hsm.pin.decrypt(at_b, "ISO_FORMAT_0", pinblock, "4564320000980369") == "8642")

step("A node loaded with the wrong KEK")
local rogue = node("misconfigured node", kek_ba, hsm.key.generate("TDES_2KEY", { usage = "K0", mode = "B" }))
assert(not validate(a, rogue))
print("as2805 node init scenario complete")
