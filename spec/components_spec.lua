-- hsm.key.from_components and hsm.key.split: keys loaded as clear components (ANSI X9.24-1
-- key components; payShield's "form key from components"). The key is the XOR of its
-- components; DES-family results get odd parity.
--
-- Known answers: the TDES key 0123456789ABCDEFFEDCBA9876543210 has the ANSI X9.24 check
-- value 08D7B4 (ANSI X9.24-1 Annex A's example key; spec/kcv_spec.lua). The component
-- check values below were computed independently with python3-cryptography (TDES-ECB of
-- a zero block; AES-CMAC of a zero block, NIST SP 800-38B):
--   TDES 1111...11 -> 82E136, TDES 1032547698BADCFEEFCDAB8967452301 -> 8A6416,
--   AES-128 00..00 CMAC -> 763CBC, AES-128 11..11 CMAC -> EE23D8 (ANSI X9.24 E0D541).
local hsm = require "payhsm"

local KEY = "0123456789ABCDEFFEDCBA9876543210"

describe("key", function()
  describe("from_components()", function()
    it("forms a TDES key as the XOR of its components, with each check value", function()
      local k, r = hsm.key.from_components("TDES_2KEY",
        { ("11"):rep(16), "1032547698BADCFEEFCDAB8967452301" })
      assert.equal(KEY, k:export())
      assert.equal("08D7B4", r.kcv)
      assert.same({ "82E136", "8A6416" }, r.component_kcvs)
    end)

    it("adjusts the result to odd parity (two odd-parity components XOR to even parity)", function()
      local k, r = hsm.key.from_components("TDES_2KEY", { KEY, ("01"):rep(16) })
      assert.equal(KEY, k:export())
      assert.equal("08D7B4", r.kcv)
    end)

    it("takes three components and the key's TR-31 attributes", function()
      local k = hsm.key.from_components("TDES_2KEY",
        { ("11"):rep(16), ("22"):rep(16), "1032547698BADCFEEFCDAB8967452301" }, { usage = "K0", mode = "B" })
      -- 11 ^ 22 = 33: the key is 33.. XOR 1032.., then parity-adjusted
      assert.equal("K0", k.usage)
      assert.equal("B", k.mode)
      assert.equal(8 * 2, #k:export() / 2)
    end)

    it("reports CMAC check values on request (AES)", function()
      local k, r = hsm.key.from_components("AES_128", { ("00"):rep(16), ("11"):rep(16) }, nil,
        { kcv_algorithm = "CMAC" })
      assert.equal(("11"):rep(16), k:export())
      assert.equal("EE23D8", r.kcv)
      assert.same({ "763CBC", "EE23D8" }, r.component_kcvs)
      local _, r2 = hsm.key.from_components("AES_128", { ("00"):rep(16), ("11"):rep(16) })
      assert.equal("E0D541", r2.kcv)
    end)

    it("refuses one component, or more than nine", function()
      local k, msg, code = hsm.key.from_components("TDES_2KEY", { KEY })
      assert.is_nil(k)
      assert.equal("KEY_COMPONENTS", code)
      assert.matches("2 to 9", msg)
      local many = {}
      for i = 1, 10 do many[i] = KEY end
      assert.equal("KEY_COMPONENTS", select(3, hsm.key.from_components("TDES_2KEY", many)))
    end)

    it("refuses a component of the wrong length, bad hex or not a string, naming which", function()
      local _, msg, code = hsm.key.from_components("TDES_2KEY", { KEY, "0123" })
      assert.equal("KEY_LENGTH", code)
      assert.matches("component 2", msg)
      assert.equal("BAD_HEX", select(3, hsm.key.from_components("TDES_2KEY", { KEY, KEY:sub(2) })))
      assert.equal("BAD_HEX", select(3, hsm.key.from_components("TDES_2KEY", { KEY, "ZZ" .. KEY:sub(3) })))
      assert.equal("KEY_COMPONENTS", select(3, hsm.key.from_components("TDES_2KEY", { KEY, 5 })))
    end)

    it("never shows a component in its messages", function()
      local _, msg = hsm.key.from_components("TDES_2KEY", { KEY, KEY:sub(1, 30) })
      assert.is_nil(msg:find(KEY:sub(1, 16), 1, true))
    end)

    it("raises on an unknown algorithm, option or KCV algorithm", function()
      assert.has_error(function() hsm.key.from_components("AES_265", { KEY, KEY }) end)
      assert.has_error(function() hsm.key.from_components("TDES_2KEY", { KEY, KEY }, nil, { kcv_algoritm = "CMAC" }) end,
        "key.from_components: unknown option 'kcv_algoritm' (expected one of: kcv_algorithm)")
      assert.has_error(function() hsm.key.from_components("TDES_2KEY", { KEY, KEY }, nil, { kcv_algorithm = "MD5" }) end)
      assert.has_error(function() hsm.key.from_components("TDES_2KEY", "nope") end)
    end)
  end)

  describe("split()", function()
    for _, alg in ipairs { "TDES_2KEY", "TDES_3KEY", "AES_128", "AES_256", "HMAC_SHA256" } do
      it("splits a " .. alg .. " key into 2 to 9 components that form it again", function()
        local k = hsm.key.generate(alg)
        for n = 2, 9 do
          local parts = hsm.key.split(k, n)
          assert.equal(n, #parts)
          local k2, r = hsm.key.from_components(alg, parts)
          assert.equal(k:export(), k2:export())
          assert.equal(k:kcv(), r.kcv)
        end
      end)
    end

    it("gives DES-family components odd parity", function()
      local parts = hsm.key.split(hsm.key.import("TDES_2KEY", KEY), 2)
      for _, p in ipairs(parts) do
        for byte in p:gmatch("%x%x") do
          local v, bits = tonumber(byte, 16), 0
          while v > 0 do bits = bits + v % 2; v = (v - v % 2) / 2 end
          assert.equal(1, bits % 2)
        end
      end
    end)

    it("refuses fewer than 2 or more than 9 components", function()
      local k = hsm.key.import("TDES_2KEY", KEY)
      assert.has_error(function() hsm.key.split(k, 1) end)
      assert.has_error(function() hsm.key.split(k, 10) end)
    end)
  end)
end)
