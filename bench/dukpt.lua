-- DUKPT host side: a PIN working key from the BDK for a random KSN (TDES: ANSI X9.24-1,
-- counters with up to 10 one bits; AES: ANSI X9.24-3, up to 16), and the terminal's next
-- transaction (all working keys of one KSN). The KSNs come from a fixed pool of 4096 drawn
-- from the same generator as bench/c/dukpt.c, so Lua and C derive the same keys.
local hsm = require "payhsm"

-- a linear congruential generator over integers below 2^31 (no bit operators: Lua 5.1 to 5.4)
local function pool(bits, maxones, start)
  local s, out = start, {}
  local function bitcount(x) local n = 0; while x > 0 do n = n + x % 2; x = math.floor(x / 2) end; return n end
  while #out < 4096 do
    s = (s * 1103515245 + 12345) % 2147483648
    local c = (s * 2 + (s % 7 == 0 and 1 or 0)) % (2 ^ bits)
    if c > 0 and bitcount(c) <= maxones then out[#out + 1] = c end
  end
  return out
end

return function(b)
  local tbdk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210")
  local a128 = hsm.key.import("AES_128", "FEDCBA9876543210F1F1F1F1F1F1F1F1")
  local tk, ak = {}, {}
  for i, c in ipairs(pool(21, 10, 1)) do
    tk[i] = ("FFFF9876543210%02X%04X"):format(0xE0 + math.floor(c / 65536), c % 65536)
  end
  for i, c in ipairs(pool(32, 16, 2)) do ak[i] = ("1234567890123456%08X"):format(c) end
  local wk, w, i = hsm.dukpt.working_key, { purpose = "PIN" }, 0
  b.case("dukpt_tdes_pin_key_random_ksn", 200000, function()
    i = i % 4096 + 1
    return wk(tbdk, tk[i], w)
  end)
  b.case("dukpt_aes128_pin_key_random_ksn", 200000, function()
    i = i % 4096 + 1
    return wk(a128, ak[i], w)
  end)
  local tt = hsm.dukpt.terminal(hsm.dukpt.initial_key(tbdk, "FFFF9876543210E00000"), "FFFF9876543210E00000")
  b.case("dukpt_tdes_terminal_next", 100000, function() return tt:next() end)
  local at = hsm.dukpt.terminal(hsm.dukpt.initial_key(a128, "123456789012345600000000"), "123456789012345600000000")
  b.case("dukpt_aes128_terminal_next", 100000, function() return at:next() end)
end
