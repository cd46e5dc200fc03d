-- An acquirer with AES DUKPT terminals (ANSI X9.24-3). Each terminal enciphers the PIN in ISO 9564-1
-- format 4 under its transaction's PIN key and MACs the message with CMAC under its MAC key; the
-- acquirer host derives the same keys from the BDK and the KSN, checks the MAC, refuses replayed
-- KSNs and translates the PIN block to format 0 under the zone PIN key it shares with the issuer.
-- The issuer checks the card's CVV2 and the PIN (Visa PVV or IBM 3624 offset) from that block.
-- A wrong PIN, a wrong CVV2, an altered amount, a replayed KSN and an exhausted terminal are shown.
local hsm = require "payhsm"

local function step(title) print(("-- %s"):format(title)) end
local function show(label, value) print(("   %-30s %s"):format(label, tostring(value))) end
local function row(...) print(("   %-24s %-6s %-9s %-34s %s"):format(...)) end

-- Keys. The acquirer's BDK never leaves its HSM; the key injection facility loads each terminal
-- with the initial key derived from it and the terminal's initial key ID (BDK ID 12345678,
-- derivation ID). The zone PIN key is exchanged between acquirer and issuer (under a ZMK, not shown).
local bdk = hsm.key.import("AES_128", "FEDCBA9876543210F1F1F1F1F1F1F1F1", { usage = "B0", mode = "X" })
local zpk_hex = "0123456789ABCDEFFEDCBA9876543210"
local acquirer = { zpk = hsm.key.import("TDES_2KEY", zpk_hex, { usage = "P0", mode = "B" }), last = {} }
local issuer = {
  zpk = hsm.key.import("TDES_2KEY", zpk_hex, { usage = "P0", mode = "B" }),
  cvk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "C0", mode = "C" }),
  pvv_key = hsm.key.import("TDES_2KEY", "1111222233334444AAAABBBBCCCCDDDD", { usage = "V2", mode = "C" }),
  ibm_key = hsm.key.import("TDES_2KEY", "5555666677778888EEEEFFFF00001111", { usage = "V1", mode = "C" }),
  cards = {},
}

step("Issuance: the issuer stores each card's PIN verification value, never the PIN")
local decimalization = "0123456789012345"
local function issue(pan, expiry, pin, method)
  local card = { pan = pan, expiry = expiry, method = method }
  if method == "VISA_PVV" then
    card.v = { method = "VISA_PVV", pvki = "1", pvv = hsm.pin.visa_pvv(issuer.pvv_key, pin, pan, "1") }
  else
    local p = { decimalization_table = decimalization, validation_data = pan:sub(-16, -5), pad_char = "F" }
    card.v = { method = "IBM3624", offset = hsm.pin.ibm3624_offset(issuer.ibm_key, pin, p),
               decimalization_table = p.decimalization_table, validation_data = p.validation_data,
               pad_char = p.pad_char }
  end
  issuer.cards[pan] = card
  -- printed on the card: the CVV2 (service code 000)
  return { pan = pan, expiry = expiry, cvv2 = hsm.card.cvv(issuer.cvk, pan, expiry, "000") }
end
local visa = issue("4111111111111111", "2812", "1234", "VISA_PVV")
local debit = issue("5413330089600010", "2906", "907105", "IBM3624")
show("card " .. visa.pan, ("PVV %s (PVKI 1), CVV2 %s"):format(issuer.cards[visa.pan].v.pvv, visa.cvv2))
show("card " .. debit.pan, ("IBM 3624 offset %s, CVV2 %s"):format(issuer.cards[debit.pan].v.offset, debit.cvv2))

-- The terminal: PIN block and MAC under the keys of its next transaction, then forgets them.
local function body_of(msg)
  return ("0200%-19s%s%s%012d"):format(msg.pan, msg.expiry, msg.cvv2, msg.amount):gsub(" ", "F") .. msg.pinblock
end
local function terminal_txn(t, card, pin, amount, cvv2)
  local ksn, keys, code = t:next()
  if not ksn then return nil, code end
  local msg = { ksn = ksn, pan = card.pan, expiry = card.expiry, cvv2 = cvv2 or card.cvv2,
                amount = amount, pinblock = hsm.pin.encrypt(keys.PIN, "ISO_FORMAT_4", pin, card.pan) }
  msg.body = body_of(msg)
  msg.mac = hsm.mac.generate(keys.MAC, "CMAC", msg.body)
  return msg
end

-- The issuer: CVV2 first, then the PIN from the format 0 block (the PIN stays inside the HSM).
local function issuer_authorise(pan, expiry, cvv2, block0)
  local card = issuer.cards[pan]
  local ok, _, code = hsm.card.verify_cvv(issuer.cvk, pan, expiry, "000", cvv2)
  if not ok then return "declined", "CVV2 " .. code end
  ok, _, code = hsm.pin.verify(card.v.method == "VISA_PVV" and issuer.pvv_key or issuer.ibm_key,
                               issuer.zpk, "ISO_FORMAT_0", block0, pan, card.v)
  if not ok then return "declined", card.v.method .. " " .. code end
  return "approved", card.v.method .. " and CVV2 verified"
end

-- The acquirer host: per device (the KSN's initial key ID) it keeps the last counter it accepted.
local function acquirer_host(msg)
  local device, counter = msg.ksn:sub(1, 16), tonumber(msg.ksn:sub(17), 16)
  local last = acquirer.last[device]
  if last and counter <= last then
    return "refused", ("replay: counter %08X not above %08X"):format(counter, last)
  end
  local mac_key = hsm.dukpt.working_key(bdk, msg.ksn, { purpose = "MAC" })
  local ok, _, code = hsm.mac.verify(mac_key, "CMAC", msg.body, msg.mac)
  if not ok then return "refused", "CMAC " .. code end
  acquirer.last[device] = counter -- only an authentic message moves the counter on
  local pek = hsm.dukpt.working_key(bdk, msg.ksn, { purpose = "PIN" })
  local block0, why, c = hsm.pin.translate(pek, "ISO_FORMAT_4", msg.pinblock, acquirer.zpk, "ISO_FORMAT_0", msg.pan)
  if not block0 then return "refused", c .. ": " .. why end
  msg.block0 = block0
  return issuer_authorise(msg.pan, msg.expiry, msg.cvv2, block0)
end

step("A day at terminal 1234567890123456 (keyed entry: PAN, expiry, CVV2 and PIN)")
local ik = hsm.dukpt.initial_key(bdk, "123456789012345600000000")
local t = hsm.dukpt.terminal(ik, "123456789012345600000000")
row("KSN", "card", "amount", "PIN block (format 4, PIN key)", "outcome")
local runs = {
  { visa, "1234", 1250, nil, "approved" },
  { debit, "907105", 8000, nil, "approved" },
  { visa, "4321", 2000, nil, "declined", "VISA_PVV VERIFICATION_FAILED" },
  { debit, "907106", 500, nil, "declined", "IBM3624 VERIFICATION_FAILED" },
  { visa, "1234", 4599, "000", "declined", "CVV2 VERIFICATION_FAILED" },
  { debit, "907105", 12000, nil, "approved" },
}
local sent = {}
for i, r in ipairs(runs) do
  local msg = assert(terminal_txn(t, r[1], r[2], r[3], r[4]))
  local verdict, why = acquirer_host(msg)
  row(msg.ksn, "..." .. msg.pan:sub(-4), ("%d.%02d"):format(math.floor(msg.amount / 100), msg.amount % 100),
      msg.pinblock, verdict .. " (" .. why .. ")")
  assert(verdict == r[5], ("transaction %d: %s (%s)"):format(i, verdict, why))
  assert(r[6] == nil or why == r[6], ("transaction %d: %s"):format(i, why))
  sent[i] = msg
end
show("format 0 block for the issuer", sent[1].block0 .. " (the ZPK, TDES)")
assert(#sent[1].block0 == 16 and sent[1].block0 ~= sent[1].pinblock:sub(1, 16))

step("Attacks on the acquirer host")
local replay = sent[2]
local verdict, why = acquirer_host(replay)
show("transaction 2 sent again", verdict .. " (" .. why .. ")")
assert(verdict == "refused" and why:match("^replay"))
local msg = assert(terminal_txn(t, visa, "1234", 1000))
local forged = {}
for k, v in pairs(msg) do forged[k] = v end
forged.amount = 100000 -- 10.00 raised to 1000.00, the MAC left as it was
forged.body = body_of(forged)
verdict, why = acquirer_host(forged)
show("amount raised in flight", verdict .. " (" .. why .. ")")
assert(verdict == "refused" and why == "CMAC MAC_MISMATCH")
verdict, why = acquirer_host(msg)
show("the genuine message after it", verdict .. " (" .. why .. ")")
assert(verdict == "approved")
t:close()

step("A terminal at the end of its counter space (X9.24-3: at most 16 one bits in 32)")
-- Resumed after its transaction FFFE8000 (16 one bits); the only counter left is FFFF0000.
local ik2 = hsm.dukpt.initial_key(bdk, "1234567890ABCDEF00000000")
local old = hsm.dukpt.terminal(ik2, "1234567890ABCDEFFFFE8000")
local last = assert(terminal_txn(old, debit, "907105", 700))
verdict, why = acquirer_host(last)
show("last transaction " .. last.ksn:sub(17), verdict .. " (" .. why .. ")")
assert(last.ksn == "1234567890ABCDEFFFFF0000" and verdict == "approved")
local none, err = terminal_txn(old, debit, "907105", 700)
show("the next one", ("%s (%s)"):format(tostring(none), err))
assert(none == nil and err == "DUKPT_EXHAUSTED")
local _, _, code = hsm.dukpt.terminal(ik2, "1234567890ABCDEFFFFFFFFE")
show("resuming at counter FFFFFFFE", code .. " (31 one bits: no device uses it)")
assert(code == "DUKPT_COUNTER")
old:close()
print("acquirer dukpt scenario complete")
