-- ZKA session keys and MAC (csrc/zka.c).
local hsm = require "payhsm"

-- Sources:
--  The derivation (SK = TDES-decrypt under MK xor per-half control mask of RND, odd parity) is
--  the one described for the public ZKA/UKPT code; the mask values are payhsm's own (the ZKA
--  masks are not public), see csrc/zka.c. Expected values below were computed independently
--  with pyca/cryptography from that definition [pyca]; the PIN block is ISO 9564 format 0 of
--  the Wikipedia worked example (PIN 1234, PAN 43219876543210987 -> 0412AC89ABCDEF67).
local MK = "0123456789ABCDEFFEDCBA9876543210"
local RND = "A1B2C3D4E5F60718293A4B5C6D7E8F90"
local function mk(attrs) return hsm.key.import("TDES_2KEY", MK, attrs) end

describe("zka", function()
  describe("derive_session_key()", function()
    for _, c in ipairs {
      { "PAC", "73DF5D6BCB546825767A15EABF0220A2", "P0", "B" },
      { "MAC", "5DC7F82CD575076EBA7F621CE00DC131", "M1", "C" },
      { "ENC", "570DB30846EF753E3B6E682668020D58", "D0", "B" },
    } do
      it(("derives SK-%s [pyca] and labels its usage"):format(c[1]:lower()), function()
        local sk = hsm.zka.derive_session_key(mk(), c[1], RND)
        assert.equal(c[2], sk:export())
        assert.equal(c[3], sk.usage)
        assert.equal(c[4], sk.mode)
      end)
    end

    it("gives different keys per purpose and per RND, the same on both sides", function()
      local a = hsm.zka.derive_session_key(mk(), "PAC", RND):export()
      assert.are_not.equal(a, hsm.zka.derive_session_key(mk(), "PAC", ("00"):rep(16)):export())
      assert.equal(a, hsm.zka.derive_session_key(mk { usage = "B0" }, "PAC", RND:lower()):export())
    end)

    it("refuses bad inputs", function()
      assert.equal("ZKA_RND_LENGTH", select(3, hsm.zka.derive_session_key(mk(), "PAC", "00")))
      assert.equal("BAD_HEX", select(3, hsm.zka.derive_session_key(mk(), "PAC", ("ZZ"):rep(16))))
      assert.equal("KEY_TYPE", select(3, hsm.zka.derive_session_key(hsm.key.generate("AES_128"), "PAC", RND)))
      assert.equal("KEY_USAGE", select(3, hsm.zka.derive_session_key(mk { usage = "P0" }, "PAC", RND)))
      assert.has_error(function() hsm.zka.derive_session_key(mk(), "CVV", RND) end)
      local _, msg = hsm.zka.derive_session_key(mk(), "PAC", "00")
      assert.is_nil(msg:find(MK, 1, true))
    end)
  end)

  describe("PIN under SK-pac", function()
    it("is ISO 9564 format 0 under the derived key [pyca]", function()
      local pac = hsm.zka.derive_session_key(mk(), "PAC", RND)
      assert.equal("0F045023DD0AC036", hsm.pin.encrypt(pac, "ISO_FORMAT_0", "1234", "43219876543210987"))
      assert.equal("1234", hsm.pin.decrypt(pac, "ISO_FORMAT_0", "0F045023DD0AC036", "43219876543210987"))
    end)
  end)

  describe("mac() and verify_mac()", function()
    local msg = "0200F23C449108E0800016"
    it("TDES CBC-MAC under SK-mac, 8 or 4 bytes [pyca]", function()
      local sk = hsm.zka.derive_session_key(mk(), "MAC", RND)
      assert.equal("4E2446D03A55167C", hsm.zka.mac(sk, msg))
      assert.equal("4E2446D0", hsm.zka.mac(sk, msg, { length = 4 }))
      assert.is_true(hsm.zka.verify_mac(sk, msg, "4E2446D03A55167C"))
      assert.is_true(hsm.zka.verify_mac(sk, msg, "4E2446D0"))
      local ok, _, code = hsm.zka.verify_mac(sk, msg:sub(1, -2) .. "7", "4E2446D0")
      assert.is_false(ok)
      assert.equal("MAC_MISMATCH", code)
    end)
    it("refuses the wrong key, lengths and hex", function()
      local sk = hsm.zka.derive_session_key(mk(), "MAC", RND)
      local pac = hsm.zka.derive_session_key(mk(), "PAC", RND)
      assert.equal("KEY_USAGE", select(3, hsm.zka.mac(pac, msg)))
      assert.equal("BAD_HEX", select(3, hsm.zka.mac(sk, "XYZ0")))
      local ok, _, code = hsm.zka.verify_mac(sk, msg, "4E2446")
      assert.is_false(ok)
      assert.equal("MAC_LENGTH", code)
      ok, _, code = hsm.zka.verify_mac(sk, msg, "QQ")
      assert.is_false(ok)
      assert.equal("BAD_HEX", code)
      assert.has_error(function() hsm.zka.mac(sk, msg, { length = 6 }) end)
    end)
  end)
end)
