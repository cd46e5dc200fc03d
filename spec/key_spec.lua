-- Key objects: import, generate, attributes, export policy, close, tostring.
local hsm = require "payhsm"

local TDES = "0123456789ABCDEFFEDCBA9876543210"

describe("key", function()
  describe("import()", function()
    it("accepts every algorithm at its length, either hex case", function()
      local cases = {
        { "DES", 8 }, { "TDES_2KEY", 16 }, { "TDES_3KEY", 24 }, { "AES_128", 16 },
        { "AES_192", 24 }, { "AES_256", 32 }, { "HMAC_SHA256", 32 }, { "HMAC_SHA384", 48 },
        { "HMAC_SHA512", 64 },
      }
      for _, c in ipairs(cases) do
        local hex = ("ab"):rep(c[2])
        local k = assert(hsm.key.import(c[1], hex))
        assert.are.equal(c[1], k.algorithm)
        assert.are.equal(c[2] * 8, k.bits)
        assert.are.equal(hex:upper(), k:export())
      end
    end)

    it("refuses a wrong length with KEY_LENGTH and bad hex with BAD_HEX", function()
      local bad = {
        { "TDES_2KEY", "0123456789ABCDEF", "KEY_LENGTH" },
        { "AES_128", TDES .. "00", "KEY_LENGTH" },
        { "AES_256", "", "KEY_LENGTH" },
        { "TDES_2KEY", "0123456789ABCDEFFEDCBA987654321G", "BAD_HEX" },
        { "TDES_2KEY", "0123456789ABCDEFFEDCBA987654321", "BAD_HEX" },
        { "HMAC_SHA256", "", "KEY_LENGTH" },
        { "AES_128", (" "):rep(32), "BAD_HEX" },
      }
      for _, c in ipairs(bad) do
        local k, msg, code = hsm.key.import(c[1], c[2])
        assert.is_nil(k)
        assert.are.equal(c[3], code)
        assert.is_string(msg)
      end
    end)

    it("raises on an unknown algorithm and on malformed attributes", function()
      assert.has_error(function() hsm.key.import("AES_512", TDES) end)
      assert.has_error(function() hsm.key.import("TDES_2KEY", TDES, { usage = "Z9" }) end)
      assert.has_error(function() hsm.key.import("TDES_2KEY", TDES, { mode = "Q" }) end)
      assert.has_error(function() hsm.key.import("TDES_2KEY", TDES, { usage = "P0", mode = "G" }) end)
      assert.has_error(function() hsm.key.import("TDES_2KEY", TDES, { exportability = "X" }) end)
      assert.has_error(function() hsm.key.import("TDES_2KEY", TDES, { version = "1" }) end)
      assert.has_error(function() hsm.key.import("HMAC_SHA256", TDES, { usage = "P0" }) end)
      assert.has_error(function() hsm.key.import("AES_128", TDES, { usage = "M7" }) end)
    end)

    it("carries TR-31 attributes as read-only fields", function()
      local k = hsm.key.import("TDES_2KEY", TDES, { usage = "P0", mode = "E", version = "01", exportability = "N" })
      assert.are.same({ "P0", "E", "01", "N" }, { k.usage, k.mode, k.version, k.exportability })
      assert.has_error(function() k.usage = "D0" end)
      local any = hsm.key.import("TDES_2KEY", TDES)
      assert.is_nil(any.usage)
      assert.is_nil(any.mode)
      assert.are.equal("00", any.version)
    end)
  end)

  describe("generate()", function()
    it("makes distinct keys of the right size, DES keys with odd parity", function()
      local seen = {}
      for _, alg in ipairs { "TDES_2KEY", "TDES_3KEY", "AES_256", "HMAC_SHA384" } do
        for _ = 1, 20 do
          local hex = hsm.key.generate(alg):export()
          assert.is_nil(seen[hex])
          seen[hex] = true
          if alg:match("^TDES") then
            for byte in hex:gmatch("..") do
              local v, ones = tonumber(byte, 16), 0
              while v > 0 do ones = ones + v % 2; v = math.floor(v / 2) end
              assert.are.equal(1, ones % 2)
            end
          end
        end
      end
      assert.are.equal(384, hsm.key.generate("HMAC_SHA384").bits)
    end)

    it("sets the attributes it is given", function()
      local k = hsm.key.generate("AES_128", { usage = "K1", mode = "B" })
      assert.are.equal("K1", k.usage)
      assert.are.equal("B", k.mode)
    end)
  end)

  describe("secrets", function()
    it("tostring shows algorithm, usage and KCV, never key bytes", function()
      local k = hsm.key.import("TDES_2KEY", TDES, { usage = "P0" })
      local s = tostring(k)
      assert.are.equal("payhsm.Key(TDES_2KEY, usage P0, KCV 08D7B4)", s)
      assert.is_nil(s:find("0123456789", 1, true))
    end)

    it("close wipes the key; every later use raises, double close is harmless", function()
      local k = hsm.key.import("AES_128", ("11"):rep(16))
      k:close()
      k:close()
      assert.has_error(function() k:export() end, "key has been closed")
      assert.has_error(function() k:kcv() end)
      assert.has_error(function() hsm.cipher.encrypt(k, "ECB", ("00"):rep(16)) end)
      assert.truthy(tostring(k):find("closed"))
    end)

    it("closes at the end of a to-be-closed scope (Lua 5.4)", function()
      if _VERSION ~= "Lua 5.4" then return end -- <close> is 5.4 syntax; __close is set anyway
      local outer = assert(load([[
        local hsm = ...
        local outer
        do
          local k <close> = hsm.key.import("AES_128", ("22"):rep(16))
          outer = k
        end
        return outer]]))(hsm)
      assert.is_true(outer.closed)
    end)

    -- The policy is one-way per Lua state, so it is tried in a Lua state of its own (a
    -- child process of the interpreter under test), not in the one running this suite.
    it("export obeys the host policy, which once off stays off", function()
      local interp = require "spec.support.interp"
      local script = os.tmpname()
      finally(function() os.remove(script) end)
      local f = assert(io.open(script, "w"))
      f:write([[
        local hsm = require "payhsm"
        local k = hsm.key.import("AES_128", ("33"):rep(16))
        assert(k:export() == ("33"):rep(16))
        assert(hsm.policy { clear_export = true }.clear_export == true) -- on, and may stay on
        assert(hsm.policy { clear_export = false }.clear_export == false)
        local ok, err = pcall(k.export, k)
        assert(not ok and err:find("disabled by policy") and not err:find("3333", 1, true), err)
        ok, err = pcall(hsm.key.split, k, 2)
        assert(not ok and err:find("disabled by policy"), err)
        ok, err = pcall(hsm.policy, { clear_export = true })
        assert(not ok and err:find("cannot be turned back on", 1, true), err)
        assert(hsm.policy().clear_export == false)
        assert(hsm.policy { clear_export = false }.clear_export == false) -- off again: no change
        assert(not pcall(k.export, k))
        print("policy ok")
      ]])
      f:close()
      local p = io.popen(interp.run .. " " .. script .. " 2>&1")
      local out = p:read("*a")
      p:close()
      assert.equal("policy ok\n", out)
    end)

    it("export and split refuse a key marked non-exportable (N)", function()
      for _, c in ipairs { { "AES_128", 16 }, { "TDES_2KEY", 16 }, { "HMAC_SHA256", 32 } } do
        local k = hsm.key.import(c[1], ("34"):rep(c[2]), { exportability = "N" })
        local ok, err = pcall(k.export, k)
        assert.is_false(ok)
        assert.matches("key:export: the key is marked non%-exportable %(N%)", err)
        assert.is_nil(err:find("3434", 1, true))
        ok, err = pcall(hsm.key.split, k, 3)
        assert.is_false(ok)
        assert.matches("non%-exportable", err)
        assert.is_nil(err:find("3434", 1, true))
      end
      -- E, S and no exportability export as before
      for _, e in ipairs { "E", "S" } do
        assert.equal(("35"):rep(16), hsm.key.import("AES_128", ("35"):rep(16), { exportability = e }):export())
      end
      assert.equal(("35"):rep(16), hsm.key.import("AES_128", ("35"):rep(16)):export())
      -- a key unwrapped from a block marked N is just as non-exportable
      local kbpk = hsm.key.import("AES_256", ("36"):rep(32), { usage = "K0" })
      local block = assert(hsm.tr31.wrap(kbpk, hsm.key.import("AES_128", ("37"):rep(16), { usage = "D0", mode = "B" }),
        { exportability = "N" }))
      local k = assert(hsm.tr31.unwrap(kbpk, block))
      assert.equal("N", k.exportability)
      assert.is_false(pcall(k.export, k))
    end)

    it("marks a local master key: K0 or K1, never exportable, set only when the key is made", function()
      local lmk = hsm.key.import("AES_256", ("38"):rep(32), { usage = "K0", local_master = true })
      assert.is_true(lmk.local_master)
      assert.equal("N", lmk.exportability)
      assert.is_false(pcall(lmk.export, lmk))
      assert.is_false(hsm.key.import("AES_256", ("38"):rep(32), { usage = "K0" }).local_master)
      local g = hsm.key.generate("AES_256", { usage = "K1", mode = "B", local_master = true })
      assert.is_true(g.local_master)
      local kdk = hsm.key.import("AES_256", ("39"):rep(32))
      assert.is_true(hsm.key.derive(kdk, "AES_256", "l", "c", { usage = "K0", local_master = true }).local_master)
      for _, bad in ipairs {
        { { usage = "D0", local_master = true }, "local master key needs usage K0 or K1" },
        { { local_master = true }, "local master key needs usage K0 or K1" },
        { { usage = "K0", exportability = "E", local_master = true }, "local master key is non%-exportable" },
        { { usage = "K0", local_master = "yes" }, "local_master must be a boolean" },
      } do
        local ok, err = pcall(hsm.key.import, "AES_256", ("38"):rep(32), bad[1])
        assert.is_false(ok)
        assert.matches(bad[2], err)
      end
      assert.has_error(function() lmk.local_master = false end)
    end)

    it("has a protected metatable", function()
      local k = hsm.key.import("AES_128", ("44"):rep(16))
      assert.is_false(getmetatable(k))
    end)
  end)

  describe("derive()", function()
    -- NIST SP 800-108r1 counter-mode KBKDF (r = 32, [i] || label || 00 || context || [L]).
    -- Expected values from an independent implementation: pyca/cryptography 48.0
    -- KBKDFCMAC / KBKDFHMAC (rlen=4, llen=4, CounterLocation.BeforeFixed).
    local KDK = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
    local cases = {
      { "AES_256", "AES_256", "payhsm gateway storage", "",
        "2E74125119DF4415BC8536488282298367503CE4D6CDBE882BD806135AACB7CB" },
      { "AES_256", "AES_128", "label", "context", "A8B59B87CEDF1B2B63FE1BB11763F654" },
      -- 24 bytes C439E1B1... from pyca, with DES odd parity set on every byte
      { "AES_256", "TDES_3KEY", "", "x", "C438E0B097BF92A40DC223E523B3D5AB611FC1FE1C0762DC" },
      { "HMAC_SHA256", "AES_256", "lbl", "ctx",
        "58641FB130910DF961EA49A0767CE934583F02F8E3F97AEF817DB04A52BE47CF" },
    }
    for _, c in ipairs(cases) do
      it(("derives %s from %s (label '%s')"):format(c[2], c[1], c[3]), function()
        local kdk = hsm.key.import(c[1], KDK)
        local k = hsm.key.derive(kdk, c[2], c[3], c[4], { usage = "D0" })
        assert.equal(c[5], k:export())
        assert.equal("D0", k.usage)
      end)
    end

    it("refuses a TDES key-derivation key and a KDK meant for something else", function()
      assert.has_error(function() hsm.key.derive(hsm.key.import("TDES_2KEY", TDES), "AES_128", "a", "") end)
      local kdk = hsm.key.import("AES_256", KDK, { usage = "P0" })
      local k, msg, code = hsm.key.derive(kdk, "AES_128", "a", "")
      assert.is_nil(k)
      assert.equal("KEY_USAGE", code)
      assert.matches("key.derive", msg)
      assert.has_error(function() hsm.key.derive(hsm.key.import("AES_256", KDK), "AES_999", "a", "") end)
    end)
  end)
end)
