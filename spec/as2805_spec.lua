-- AS2805 node-to-node KEK validation (csrc/as2805.c).
local hsm = require "payhsm"

-- Sources:
--  [aws]   AWS Payment Cryptography's user guide and AWS's published example: KRs
--          9217DC67B8763BABCFDF3DADFCD0F84A -> KRr A4B7E249C40C98178C1B856DB7FB76EB, KEK KCV 0A3674.
--          The KEK is not published, so the example can only be checked for shape.
--  [pyca]  KRr for the KRs above under KEK 0123456789ABCDEFFEDCBA9876543210 computed independently
--          with pyca/cryptography from payhsm's reading of the masks (csrc/as2805.c).
local KEK = "0123456789ABCDEFFEDCBA9876543210"
local KRS = "9217DC67B8763BABCFDF3DADFCD0F84A"
local M82C0, M82 = { variant_mask = "VARIANT_MASK_82C0" }, { variant_mask = "VARIANT_MASK_82" }
local function kek(attrs) return hsm.key.import("TDES_2KEY", KEK, attrs) end

describe("as2805", function()
  describe("kek_validation_response()", function()
    it("inverts the deciphered random key and re-enciphers it [pyca]", function()
      assert.equal("397B22224B4ED60585A21E9214BFB937", hsm.as2805.kek_validation_response(kek(), KRS, M82C0))
      assert.equal("AEE6C2604CB70B1290BA94DC1ECAA2DC", hsm.as2805.kek_validation_response(kek(), KRS, M82))
    end)
    it("has the shape of AWS's example [aws]", function()
      local krr = hsm.as2805.kek_validation_response(kek(), KRS, M82C0)
      assert.equal(#"A4B7E249C40C98178C1B856DB7FB76EB", #krr)
      assert.equal(6, #kek():kcv())
    end)
  end)

  describe("kek_validation_request()", function()
    for _, len in ipairs { { "BYTES_8", 16 }, { "BYTES_16", 32 }, { "BYTES_24", 48 } } do
      it(("makes KRs/KRr of %s that the partner's response matches"):format(len[1]), function()
        local mine, partner = kek { usage = "K0" }, kek { usage = "K0" }
        for _, m in ipairs { M82C0, M82 } do
          local r = hsm.as2805.kek_validation_request(mine, { derive_algorithm = "TDES_2KEY",
            random_key_max_length = len[1], variant_mask = m.variant_mask })
          assert.equal(len[2], #r.random_key_send)
          assert.equal(len[2], #r.random_key_receive)
          assert.equal(mine:kcv(), r.kcv)
          local krr = hsm.as2805.kek_validation_response(partner, r.random_key_send, m)
          assert.equal(r.random_key_receive, krr)
          assert.is_true(hsm.as2805.kek_validation_verify(mine, r.random_key_send, krr, m))
        end
      end)
    end
    it("uses a fresh random key each time", function()
      local a = hsm.as2805.kek_validation_request(kek(), M82C0)
      local b = hsm.as2805.kek_validation_request(kek(), M82C0)
      assert.are_not.equal(a.random_key_send, b.random_key_send)
    end)
  end)

  describe("detection and bad input", function()
    it("a partner with another KEK (or another variant) is detected", function()
      local r = hsm.as2805.kek_validation_request(kek(), M82C0)
      local wrong = hsm.as2805.kek_validation_response(hsm.key.generate("TDES_2KEY"), r.random_key_send, M82C0)
      local ok, _, code = hsm.as2805.kek_validation_verify(kek(), r.random_key_send, wrong, M82C0)
      assert.is_false(ok)
      assert.equal("AS2805_MISMATCH", code)
      local other = hsm.as2805.kek_validation_response(kek(), r.random_key_send, M82)
      assert.is_false((hsm.as2805.kek_validation_verify(kek(), r.random_key_send, other, M82C0)))
    end)
    it("refuses malformed values and keys", function()
      assert.equal("AS2805_KRS_LENGTH", select(3, hsm.as2805.kek_validation_response(kek(), "0011", M82C0)))
      assert.equal("BAD_HEX", select(3, hsm.as2805.kek_validation_response(kek(), ("G0"):rep(16), M82C0)))
      assert.equal("KEY_TYPE", select(3, hsm.as2805.kek_validation_response(hsm.key.generate("AES_128"), KRS, M82C0)))
      assert.equal("KEY_USAGE", select(3, hsm.as2805.kek_validation_response(kek { usage = "P0" }, KRS, M82C0)))
      assert.equal("KEY_TYPE", select(3, hsm.as2805.kek_validation_request(kek(), { derive_algorithm = "TDES_3KEY", variant_mask = "VARIANT_MASK_82" })))
      local ok, _, code = hsm.as2805.kek_validation_verify(kek(), KRS, "00", M82C0)
      assert.is_false(ok)
      assert.equal("AS2805_MISMATCH", code)
      assert.has_error(function() hsm.as2805.kek_validation_response(kek(), KRS) end)
      assert.has_error(function() hsm.as2805.kek_validation_response(kek(), KRS, { variant_mask = "VARIANT_MASK_FF" }) end)
      assert.has_error(function() hsm.as2805.kek_validation_request(kek(), { variant_mask = "VARIANT_MASK_82", random_key_max_length = "BYTES_32" }) end)
    end)
  end)
end)
