-- An EMV issuer host: a card computes ARQCs over a few transactions, the issuer verifies
-- each one and answers with an ARPC; a replayed or altered cryptogram is declined.
local hsm = require "payhsm"

local function step(title) print(("-- %s"):format(title)) end
local function show(label, value) print(("   %-36s %s"):format(label, tostring(value))) end

-- The issuer's IMK-AC (TR-31 E0, derive only). The card holds the ICC master key derived from
-- it at personalisation (EMV Book 2 A1.4, option A) and never the IMK itself.
local imk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "E0", mode = "X" })
local card = { pan = "5413330089020011", psn = "01" }
card.mk = hsm.emv.derive_icc_master_key(imk, card.pan, card.psn, "EMV_OPTION_A")
step("Card personalised")
show("PAN / PSN", card.pan .. " / " .. card.psn)
show("ICC master key", card.mk)

-- EMV Book 2 8.1.1 minimum data: amount, other amount, country, TVR, currency, date, type, UN,
-- AIP, ATC.
local function txn_data(amount, un, atc)
  return ("%012d"):format(amount) .. "000000000000" .. "0826" .. "0000008000" .. "0826" .. "261123" ..
         "00" .. un .. "5800" .. atc
end

-- The card side: session key from its own master key, MAC over the data (the same math the
-- issuer repeats from the IMK).
local function card_arqc(atc, un, data)
  local sk = hsm.emv.derive_session_key(card.mk, "EMV_COMMON", { atc = atc })
  local plain = hsm.key.import("TDES_2KEY", sk:export()) -- the card's own MAC engine
  return hsm.mac.generate(plain, "ISO9797_ALGORITHM3", data, { padding = 2 })
end

local seen = {} -- the issuer's last ATC per card: a replay reuses an old one
local function issuer(atc, un, data, arqc)
  local p = { mode = "EMV_OPTION_A", derivation = "EMV_COMMON", pan = card.pan, psn = card.psn,
              atc = atc, data = data, arqc = arqc }
  if seen[card.pan] and tonumber(atc, 16) <= seen[card.pan] then
    return "declined", "ATC " .. atc .. " already used (replay)"
  end
  local ok, why, code = hsm.emv.verify_arqc(imk, p)
  if not ok then return "declined", code .. ": " .. why end
  seen[card.pan] = tonumber(atc, 16)
  p.method, p.arc = 1, "3030" -- ARC "00" approved, ASCII
  return "approved", hsm.emv.generate_arpc(imk, p)
end

step("Three purchases")
local log = {}
for i, amount in ipairs { 1700, 4250, 999 } do
  local atc, un = ("%04X"):format(i), ("%08X"):format(0x1A2B3C00 + i)
  local data = txn_data(amount, un, atc)
  local arqc = card_arqc(atc, un, data)
  local verdict, arpc = issuer(atc, un, data, arqc)
  show(("ATC %s amount %d.%02d"):format(atc, math.floor(amount / 100), amount % 100), ("ARQC %s -> %s, ARPC %s"):format(arqc, verdict, arpc))
  assert(verdict == "approved")
  -- the card checks the ARPC with its own session key (method 1)
  local sk = hsm.emv.derive_session_key(card.mk, "EMV_COMMON", { atc = atc })
  assert(hsm.emv.compute_arpc(sk, { method = 1, arqc = arqc, arc = "3030" }) == arpc, "card rejects ARPC")
  log[i] = { atc = atc, un = un, data = data, arqc = arqc }
end

step("Attacks")
local r = log[2]
local verdict, why = issuer(r.atc, r.un, r.data, r.arqc)
show("replay of ATC 0002", verdict .. " (" .. why .. ")")
assert(verdict == "declined")
local altered = txn_data(425000, "1A2B3C04", "0004") -- amount raised after the card signed 42.50
local arqc4 = card_arqc("0004", "1A2B3C04", txn_data(4250, "1A2B3C04", "0004"))
verdict, why = issuer("0004", "1A2B3C04", altered, arqc4)
show("amount altered in flight", verdict .. " (" .. why .. ")")
assert(verdict == "declined" and why:match("ARQC_MISMATCH"))
verdict = issuer("0004", "1A2B3C04", txn_data(4250, "1A2B3C04", "0004"), arqc4)
show("the genuine transaction", verdict)
assert(verdict == "approved")
print("emv issuer scenario complete")
