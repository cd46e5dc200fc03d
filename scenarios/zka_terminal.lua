-- The ZKA ATM flow public descriptions of ZKA session keys give: the bank's HSM and the ATM derive SK-pac and
-- SK-mac from the shared master key and the session's random value; the ATM encrypts the PIN
-- (ISO 9564 format 0) and MACs the message; the bank verifies both. A forged MAC and a wrong
-- master key are caught.
local hsm = require "payhsm"

local function step(title) print(("-- %s"):format(title)) end
local function show(label, value) print(("   %-34s %s"):format(label, tostring(value))) end

local mk_hex = "0123456789ABCDEFFEDCBA9876543210"
local bank = { mk = hsm.key.import("TDES_2KEY", mk_hex, { usage = "B0", mode = "X" }) }
local atm = { mk = hsm.key.import("TDES_2KEY", mk_hex, { usage = "B0", mode = "X" }) }

step("1-3: session set-up, keys derived on both sides")
local rnd = hsm.key.generate("AES_128"):export() -- 16 random bytes from the bank's HSM
show("RND (sent to the ATM)", rnd)
for _, side in ipairs { bank, atm } do
  side.pac = hsm.zka.derive_session_key(side.mk, "PAC", rnd)
  side.mac = hsm.zka.derive_session_key(side.mk, "MAC", rnd)
end
show("SK-pac (KCV bank / ATM)", bank.pac:kcv() .. " / " .. atm.pac:kcv())
show("SK-mac (KCV bank / ATM)", bank.mac:kcv() .. " / " .. atm.mac:kcv())
assert(bank.pac:kcv() == atm.pac:kcv() and bank.mac:kcv() == atm.mac:kcv())
assert(bank.pac:kcv() ~= bank.mac:kcv(), "key separation")

step("4-6: the ATM encrypts the PIN and MACs the message")
local pan = "6762100000000000017"
local pinblock = hsm.pin.encrypt(atm.pac, "ISO_FORMAT_0", "2468", pan)
local message = "0200" .. "0000000100000" .. pinblock -- a toy ISO 8583-like body, hex
if #message % 2 == 1 then message = message .. "0" end
local mac = hsm.zka.mac(atm.mac, message, { length = 4 })
show("PIN block (SK-pac)", pinblock)
show("MAC (SK-mac, 4 bytes)", mac)

step("7-8: the bank verifies MAC and PIN")
assert(hsm.zka.verify_mac(bank.mac, message, mac))
show("MAC", "verified")
local pin = hsm.pin.decrypt(bank.pac, "ISO_FORMAT_0", pinblock, pan)
show("PIN", pin == "2468" and "correct" or "WRONG")
assert(pin == "2468")

step("Attacks")
local forged = message:sub(1, 8) .. "9" .. message:sub(10)
local ok, _, code = hsm.zka.verify_mac(bank.mac, forged, mac)
show("amount changed in flight", ("%s (%s)"):format(ok and "accepted" or "rejected", code))
assert(not ok and code == "MAC_MISMATCH")
local stranger = hsm.zka.derive_session_key(hsm.key.generate("TDES_2KEY"), "MAC", rnd)
ok, _, code = hsm.zka.verify_mac(bank.mac, message, hsm.zka.mac(stranger, message, { length = 4 }))
show("terminal with another master key", ("%s (%s)"):format(ok and "accepted" or "rejected", code))
assert(not ok)

step("payhsm's AES construction (not ZKA's: no public specification defines AES ZKA)")
-- The ZKA session key description: "AES for newer implementations", "CMAC-based derivation";
-- payhsm offers KBKDF-CMAC (NIST SP 800-108r1 counter mode) with label = purpose, context = RND.
local amk = hsm.key.generate("AES_256", { usage = "B0" })
local a_pac = hsm.zka.derive_session_key(amk, "PAC", rnd)
local a_mac = hsm.zka.derive_session_key(amk, "MAC", rnd)
show("AES SK-pac / SK-mac", ("%s %s / %s %s"):format(a_pac.algorithm, a_pac.usage, a_mac.algorithm, a_mac.usage))
local a_pb = hsm.pin.encrypt(a_pac, "ISO_FORMAT_4", "2468", pan)
local a_cmac = hsm.zka.mac(a_mac, message)
show("PIN block (ISO format 4, AES)", a_pb)
show("CMAC (SK-mac, 8 bytes)", a_cmac)
assert(hsm.pin.decrypt(hsm.zka.derive_session_key(amk, "PAC", rnd), "ISO_FORMAT_4", a_pb, pan) == "2468")
assert(hsm.zka.verify_mac(hsm.zka.derive_session_key(amk, "MAC", rnd), message, a_cmac))
show("bank side", "same keys from the same MK and RND: PIN and CMAC verified")
print("zka terminal scenario complete")
