-- A tour of the crypto core: keys and their check values, MACs, ciphers, a TR-31
-- key block round trip, and a tampered key block refused.
local hsm = require "payhsm"

local function step(title) print(("-- %s"):format(title)) end
local function show(label, value) print(("   %-34s %s"):format(label, tostring(value))) end
local function expect(label, got, want)
  show(label, got)
  assert(got == want, ("%s: expected %s, got %s"):format(label, tostring(want), tostring(got)))
end

step("Keys and key check values (X9.24-1 Annex A; AWS Payment Cryptography examples)")
local tdes = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "M3", mode = "C" })
local aes = hsm.key.import("AES_128", "3F419E1CB7079442AA37474C2EFBF8B8")
show("TDES key", tdes)
expect("TDES KCV (ANSI_X9_24)", tdes:kcv(), "08D7B4")
expect("AES KCV (CMAC)", aes:kcv("CMAC"), "08793E")
expect("AES KCV (ANSI_X9_24)", aes:kcv("ANSI_X9_24"), "E5E07C")

step("MACs")
local msg = "4E6F77206973207468652074696D6520666F7220616C6C20" -- "Now is the time for all "
local mac = hsm.mac.generate(tdes, "ISO9797_ALGORITHM3", msg)
expect("X9.19 retail MAC", mac, "A1C72E74EA3FA9B6")
expect("verify", hsm.mac.verify(tdes, "ISO9797_ALGORITHM3", msg, mac), true)
local ok, why, code = hsm.mac.verify(tdes, "ISO9797_ALGORITHM3", msg:sub(1, -3) .. "21", mac)
show("verify altered message", ("%s (%s: %s)"):format(tostring(ok), code, why))
assert(ok == false and code == "MAC_MISMATCH")
local cmac_key = hsm.key.import("AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", { usage = "M6" })
expect("AES-CMAC, RFC 4493 example 2", hsm.mac.generate(cmac_key, "CMAC", "6BC1BEE22E409F96E93D7E117393172A"),
  "070A16B46B4D4144F79BDD9DD04A287C")
local _, _, ucode = hsm.mac.generate(cmac_key, "ISO9797_ALGORITHM1", "00")
expect("an M6 (CMAC) key asked for a CBC-MAC", ucode, "KEY_USAGE")

step("Ciphers")
local dek = hsm.key.generate("AES_256", { usage = "D0", mode = "B" })
local ct = hsm.cipher.encrypt(dek, "CBC", ("00"):rep(32), ("11"):rep(16))
show("AES-256-CBC of two zero blocks", ct)
expect("decrypts back", hsm.cipher.decrypt(dek, "CBC", ct, ("11"):rep(16)), ("00"):rep(32))

step("TR-31 key block (ANSI X9.143 version D, AES-256 KBPK)")
local kbpk = hsm.key.import("AES_256", "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6", { usage = "K1", mode = "B" })
local pek = hsm.key.import("AES_128", "3F419E1CB7079442AA37474C2EFBF8B8", { usage = "P0", mode = "E", exportability = "E" })
local block = assert(hsm.tr31.wrap(kbpk, pek, { version = "D" }))
show("wrapped PIN key", block)
local back, header = assert(hsm.tr31.unwrap(kbpk, block))
show("unwrapped", back)
expect("same key (KCV)", back:kcv("CMAC"), pek:kcv("CMAC"))
expect("header usage", header.usage, "P0")
expect("key carries the usage", back.usage, "P0")
local published = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34"
local k2 = assert(hsm.tr31.unwrap(kbpk, published))
expect("X9.143 example A.7.4 unwraps to the same key", k2:kcv("CMAC"), "08793E")

step("A tampered key block is refused")
local pos = 60
local flipped = block:sub(1, pos - 1) .. (block:sub(pos, pos) == "0" and "1" or "0") .. block:sub(pos + 1)
local none, tmsg, tcode = hsm.tr31.unwrap(kbpk, flipped)
show("one character changed at " .. pos, ("%s (%s: %s)"):format(tostring(none), tcode, tmsg))
assert(none == nil and tcode == "TR31_MAC_MISMATCH")

print("core tour complete")
