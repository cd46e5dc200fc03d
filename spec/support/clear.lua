--- The clear bytes of any key object, for specs that search stores and logs for them:
-- also keys marked non-exportable (N), which key:export() refuses. The key is wrapped
-- locally (tr31.wrap with local = true, version D) under a local master key whose bytes
-- this helper chose, and the block is opened here from those bytes, independently of
-- tr31.unwrap: ANSI X9.143-2022 (TR-31:2018) key block version D:
--   KBEK = CMAC(KBPK, 01 0000 00 0004 0100) || CMAC(KBPK, 02 0000 00 0004 0100)
--          (derivation data: counter, key usage 0000 = encryption, separator 00,
--           algorithm 0004 = AES-256, length 0100 = 256 bits; NIST SP 800-108 counter mode)
--   key field = AES-256-CBC-decrypt(KBEK, IV = the block's 16-byte MAC, encrypted field)
--             = 2-byte key length in bits || key || padding
--   local clear = require "spec.support.clear"
--   clear(key) -> upper-case hex of its bytes
local hsm = require "payhsm"

local KBPK_HEX = ("5C"):rep(16) .. ("A3"):rep(16)
-- the same bytes twice: the local master key that wraps, and a plain key (usage M6, CMAC)
-- whose primitives open the block
local lmk = hsm.key.import("AES_256", KBPK_HEX, { usage = "K0", local_master = true })
local cmac_key = hsm.key.import("AES_256", KBPK_HEX, { usage = "M6", mode = "C" })
local kbek = hsm.key.import("AES_256",
  hsm.mac.generate(cmac_key, "CMAC", "0100000000040100") .. hsm.mac.generate(cmac_key, "CMAC", "0200000000040100"),
  { usage = "D0", mode = "D" })

-- a header the key's algorithm allows when the key has no usage or mode of its own
local function header_for(key)
  local h = {}
  local hmac = key.algorithm:match("^HMAC") ~= nil
  if not key.usage then h.usage = hmac and "M7" or "D0" end
  if not key.mode then h.mode = hmac and "C" or "B" end
  return h
end

return function(key)
  local block = assert(hsm.tr31.wrap(lmk, key, header_for(key), { ["local"] = true, obfuscate = false }))
  -- the header: 16 characters, then the optional blocks (id, 2 hex digits of length, data)
  local hlen, nblocks = 16, tonumber(block:sub(13, 14))
  for _ = 1, nblocks do
    hlen = hlen + tonumber(block:sub(hlen + 3, hlen + 4), 16)
  end
  local enc, mac = block:sub(hlen + 1, -33), block:sub(-32)
  local field = hsm.cipher.decrypt(kbek, "CBC", enc, mac)
  local bits = tonumber(field:sub(1, 4), 16)
  return field:sub(5, 4 + bits / 4)
end
