-- bin/payhsm subcommands after AWS Payment Cryptography's card, PIN and key operations
-- (lua/payhsm/commands/card.lua, keys.lua, emv.lua), the AWS forms of ARQC and AS2805 as
-- AWS's user guide writes them, and the key usage each EMV master key function takes
-- (csrc/emv.c, csrc/card.c).
--
-- Member names: the AWS Payment Cryptography data plane API reference
-- (API_CardGenerationAttributes, API_CardVerificationAttributes, API_PinGenerationAttributes,
-- API_PinVerificationAttributes, API_KekValidationRequest with DeriveKeyAlgorithm and
-- RandomKeyMaxLength, API_VerifyAuthRequestCryptogram with MajorKeyDerivationMode required).
-- Known answers (the core specs' sources):
--  [psec-cvv] psec (github.com/knovichikhin/psec) tests/test_cvv.py: CVK
--             0123456789ABCDEFFEDCBA9876543210, PAN 4123456789012345, expiry 8701, service
--             code 101 -> CVV 561 (spec/card_spec.lua).
--  [jpos]     jPOS JCESecurityModuleTest.java: IMK 4 x 12345678, PAN 1234567890123456, PSN 00,
--             expiry 1310, service code 226, ATC 3210 -> dCVV 422; track 2
--             1234567890123456D12012061000110000000F, ATC 2710, UN 00002710 -> CVC3 39464.
--  [psec-pin] ISO 9564-1:2017 format 4 example: AES key 00112233445566778899AABBCCDDEEFF, PAN
--             1234567890123456, block E4BE5B623AF7E006AC319E5B93544564 (PIN 1234); under
--             PVK 0123456789ABCDEFFEDCBA9876543210: PVV (PVKI 1) 7880, IBM 3624 offset (table
--             0123456789012345, data 56789012345, pad F) 6013; natural PIN 4524 (table
--             1234567890123456, data 1122334455667788) -- spec/pinverify_spec.lua, by psec.
--  [A4]       ANSI X9.24-1:2009 Annex A.4: BDK 0123456789ABCDEFFEDCBA9876543210, KSN
--             FFFF9876543210E00000 -> IPEK 6AC292FAA1315B4D858AB3A3D7D5933A; the PIN key of
--             counter 1 is 042666B49184CF5C68DE9628D0397B36.
--  [pyca]     ZKA MAC 70D8C78200D57B31 (spec/zka_spec.lua, computed with pyca/cryptography).
local hsm = require "payhsm"
local cjson = require "cjson"

local sh = require "spec.support.sh"

local dir
local function file(name, content)
  local path = dir .. "/" .. name
  local f = io.open(path, "w")
  f:write(content)
  f:close()
  return path
end
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
local function q(s) return "'" .. s .. "'" end

-- exit 0 with JSON
local function ok(cmd, stdin)
  local out, rc, err = sh(cmd, stdin)
  assert.equal(0, rc, cmd .. "\n" .. err)
  return cjson.decode(out)
end
-- a usage error: exit 2, nothing on stdout, one line [CLI_USAGE]
local function usage_error(cmd, pattern)
  local out, rc, err = sh(cmd)
  assert.equal(2, rc, cmd .. "\n" .. err)
  assert.equal("", out, cmd)
  assert.matches("^payhsm [^\n]*%[CLI_USAGE%]\n$", err)
  if pattern then assert.matches(pattern, err, 1, false) end
  return err
end
-- bad input: exit 1, one line with the code; a failed verification also answers JSON
local function bad_input(cmd, code, stdin)
  local out, rc, err = sh(cmd, stdin)
  assert.equal(1, rc, cmd .. "\n" .. err)
  assert.matches("^payhsm [^\n]*%[" .. code .. "%]\n$", err)
  return out ~= "" and cjson.decode(out) or nil
end

local T2 = "0123456789ABCDEFFEDCBA9876543210"
local K12 = ("12345678"):rep(4)

describe("bin/payhsm card, pin generate|verify, dukpt, tr34, key, zka", function()
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("card generate|verify: CardVerificationValue1 and 2 [psec-cvv]", function()
    local k = file("cvk", "TDES_2KEY:" .. T2 .. " usage=C0\n")
    local base = "bin/payhsm card %s --key-identifier file:" .. k .. " --primary-account-number 4123456789012345 "
    assert.same({ KeyCheckValue = "08D7B4", ValidationData = "561" }, ok(base:format("generate")
      .. "--generation-attributes 'CardVerificationValue1={CardExpiryDate=8701,ServiceCode=101}'"))
    local cvv2 = hsm.card.cvv(hsm.key.import("TDES_2KEY", T2), "4123456789012345", "8701", "000")
    assert.same({ KeyCheckValue = "08D7B4", ValidationData = cvv2 }, ok(base:format("generate")
      .. "--generation-attributes " .. q('{"CardVerificationValue2":{"CardExpiryDate":"8701"}}')))
    assert.same({ KeyCheckValue = "08D7B4", Valid = true }, ok(base:format("verify")
      .. "--verification-attributes 'CardVerificationValue1={CardExpiryDate=8701,ServiceCode=101}' --validation-data 561"))
    local r = bad_input(base:format("verify") .. "--verification-attributes "
      .. "'CardVerificationValue1={CardExpiryDate=8701,ServiceCode=101}' --validation-data 562", "VERIFICATION_FAILED")
    assert.same({ KeyCheckValue = "08D7B4", Valid = false, Code = "VERIFICATION_FAILED" }, r)
    -- AWS members payhsm does not offer, and usage errors
    usage_error(base:format("generate") .. "--generation-attributes 'AmexCardSecurityCodeVersion1={CardExpiryDate=8701}'",
      "payhsm does not offer Amex CSC: it has no public definition")
    usage_error(base:format("verify") .. "--verification-attributes "
      .. "'AmexCardSecurityCodeVersion2={CardExpiryDate=8701,ServiceCode=101}' --validation-data 561", "Amex CSC")
    usage_error(base:format("generate"), "%-%-generation%-attributes is required")
    usage_error(base:format("generate") .. "--generation-attributes 'CardVerificationValue1={CardExpiryDate=8701}'",
      "ServiceCode is required")
    usage_error(base:format("generate") .. "--validation-data-length 4 "
      .. "--generation-attributes 'CardVerificationValue2={CardExpiryDate=8701}'", "validation%-data%-length")
    usage_error(base:format("generate") .. "--verification-attributes 'CardVerificationValue2={CardExpiryDate=8701}'",
      "is for card verify")
    -- bad data: exit 1 with the core's code
    bad_input(base:format("generate") .. "--generation-attributes 'CardVerificationValue2={CardExpiryDate=87011}'",
      "CARD_EXPIRY")
  end)

  it("card: DynamicCardVerificationValue and DynamicCardVerificationCode from the E4 IMK, option A [jpos]", function()
    local k = file("imkdn", "TDES_2KEY:" .. K12 .. " usage=E4 mode=X\n")
    local base = "bin/payhsm card %s --key-identifier file:" .. k .. " --primary-account-number 1234567890123456 "
    local DCVV = "'DynamicCardVerificationValue={PanSequenceNumber=00,CardExpiryDate=1310,ServiceCode=226,"
      .. "ApplicationTransactionCounter=3210}'"
    local DCVC = "'DynamicCardVerificationCode={UnpredictableNumber=00002710,PanSequenceNumber=00,"
      .. "ApplicationTransactionCounter=2710,TrackData=1234567890123456D12012061000110000000F}'"
    local kcv = hsm.key.import("TDES_2KEY", K12):kcv()
    assert.same({ KeyCheckValue = kcv, ValidationData = "422" }, ok(base:format("generate") .. "--generation-attributes " .. DCVV))
    assert.same({ KeyCheckValue = kcv, ValidationData = "464" }, ok(base:format("generate") .. "--generation-attributes " .. DCVC))
    assert.same({ KeyCheckValue = kcv, ValidationData = "39464" },
      ok(base:format("generate") .. "--validation-data-length 5 --generation-attributes " .. DCVC))
    assert.is_true(ok(base:format("verify") .. "--validation-data 422 --verification-attributes " .. DCVV).Valid)
    assert.is_true(ok(base:format("verify") .. "--validation-data 39464 --verification-attributes " .. DCVC).Valid)
    assert.equal("VERIFICATION_FAILED", bad_input(base:format("verify") .. "--validation-data 423 --verification-attributes "
      .. DCVV, "VERIFICATION_FAILED").Code)
    -- an IMK for application cryptograms (E0) is refused for dynamic numbers
    local e0 = file("imkac", "TDES_2KEY:" .. K12 .. " usage=E0\n")
    local err = select(3, sh(("bin/payhsm card generate --key-identifier file:%s --primary-account-number "
      .. "1234567890123456 --generation-attributes %s"):format(e0, DCVV)))
    assert.matches("usage E4 %(dynamic numbers%), not E0 %[KEY_USAGE%]", err)
    usage_error(base:format("generate") .. "--generation-attributes "
      .. "'CardHolderVerificationValue={UnpredictableNumber=1,PanSequenceNumber=00,ApplicationTransactionCounter=0001}'",
      "does not implement")
  end)

  it("pin generate|verify: VisaPinVerificationValue, Ibm3624PinOffset, Ibm3624NaturalPin, VisaPin, Ibm3624Pin [psec-pin]", function()
    local pvk = file("pvk", "TDES_2KEY:" .. T2 .. "\n")
    local pek = file("pek", "AES_128:00112233445566778899AABBCCDDEEFF usage=P0\n")
    local BLOCK, PAN = "E4BE5B623AF7E006AC319E5B93544564", "1234567890123456"
    local gen = ("bin/payhsm pin generate --generation-key-identifier file:%s --encryption-key-identifier file:%s "
      .. "--pin-block-format ISO_FORMAT_4 --primary-account-number %s --generation-attributes "):format(pvk, pek, PAN)
    local pek_kcv = hsm.key.import("AES_128", "00112233445566778899AABBCCDDEEFF"):kcv()
    assert.same({ GenerationKeyCheckValue = "08D7B4", EncryptionKeyCheckValue = pek_kcv, EncryptedPinBlock = BLOCK,
      PinData = { VerificationValue = "7880" } },
      ok(gen .. q("VisaPinVerificationValue={EncryptedPinBlock=" .. BLOCK .. ",PinVerificationKeyIndex=1}")))
    assert.same({ PinOffset = "6013" }, ok(gen .. q('{"Ibm3624PinOffset":{"EncryptedPinBlock":"' .. BLOCK
      .. '","DecimalizationTable":"0123456789012345","PinValidationDataPadCharacter":"F",'
      .. '"PinValidationData":"56789012345"}}')).PinData)
    local ver = ("bin/payhsm pin verify --verification-key-identifier file:%s --encryption-key-identifier file:%s "
      .. "--pin-block-format ISO_FORMAT_4 --primary-account-number %s --encrypted-pin-block %s --verification-attributes ")
      :format(pvk, pek, PAN, BLOCK)
    assert.same({ VerificationKeyCheckValue = "08D7B4", EncryptionKeyCheckValue = pek_kcv, Valid = true },
      ok(ver .. q('{"VisaPin":{"PinVerificationKeyIndex":1,"VerificationValue":"7880"}}')))
    assert.is_true(ok(ver .. q("Ibm3624Pin={DecimalizationTable=0123456789012345,PinValidationDataPadCharacter=F,"
      .. "PinValidationData=56789012345,PinOffset=6013}")).Valid)
    local r = bad_input(ver .. "'VisaPin={PinVerificationKeyIndex=1,VerificationValue=7881}'", "VERIFICATION_FAILED")
    assert.is_false(r.Valid)
    -- the natural PIN leaves enciphered under the PEK, with offset 0000
    local nat = ok(("bin/payhsm pin generate --generation-key-identifier file:%s --encryption-key-identifier file:%s "
      .. "--pin-block-format ISO_FORMAT_4 --primary-account-number 1122334455667788 --generation-attributes "
      .. "'Ibm3624NaturalPin={DecimalizationTable=1234567890123456,PinValidationDataPadCharacter=F,"
      .. "PinValidationData=1122334455667788}'"):format(pvk, pek))
    assert.same({ PinOffset = "0000" }, nat.PinData)
    assert.equal("4524", hsm.pin.decrypt(hsm.key.import("AES_128", "00112233445566778899AABBCCDDEEFF"), "ISO_FORMAT_4",
      nat.EncryptedPinBlock, "1122334455667788"))
    -- usage errors
    usage_error(gen .. "'VisaPin={PinVerificationKeyIndex=1}'", "payhsm generates no random PINs")
    usage_error(gen .. "'Ibm3624RandomPin={DecimalizationTable=1,PinValidationDataPadCharacter=F,PinValidationData=1}'",
      "no random PINs")
    usage_error(gen .. "'VisaPinVerificationValue={EncryptedPinBlock=" .. BLOCK .. ",PinVerificationKeyIndex=x}'",
      "PinVerificationKeyIndex must be a whole number")
    usage_error(gen .. "'VisaPinVerificationValue={EncryptedPinBlock=" .. BLOCK .. ",PinVerificationKeyIndex=1}' "
      .. "--encrypted-pin-block " .. BLOCK, "is for pin verify")
    usage_error(ver:gsub("%-%-verification%-attributes $", ""), "verification%-attributes is required")
    -- a PEK of the wrong usage is bad input
    local m3 = file("m3", "AES_128:00112233445566778899AABBCCDDEEFF usage=M3\n")
    bad_input(("bin/payhsm pin verify --verification-key-identifier file:%s --encryption-key-identifier file:%s "
      .. "--pin-block-format ISO_FORMAT_4 --primary-account-number %s --encrypted-pin-block %s --verification-attributes "
      .. "'VisaPin={PinVerificationKeyIndex=1,VerificationValue=7880}'"):format(pvk, m3, PAN, BLOCK), "KEY_USAGE")
  end)

  it("dukpt initial-key and derive write the keys with their attributes, mode 0600 [A4]", function()
    local bdk = file("bdk", "TDES_2KEY:" .. T2 .. " usage=B0\n")
    local ipek = dir .. "/ipek.key"
    local r = ok(("bin/payhsm dukpt initial-key --key-identifier file:%s --key-serial-number FFFF9876543210E00000 "
      .. "--out %s"):format(bdk, ipek))
    assert.equal("TDES_2KEY:6AC292FAA1315B4D858AB3A3D7D5933A usage=B1 mode=X\n", read(ipek))
    assert.equal(hsm.key.import("TDES_2KEY", "6AC292FAA1315B4D858AB3A3D7D5933A"):kcv(), r.KeyCheckValue)
    assert.equal("B1", r.KeyUsage)
    local p = io.popen("stat -c %a " .. ipek)
    assert.equal("600", p:read("*l"))
    p:close()
    local pin = dir .. "/pin.key"
    r = ok(("bin/payhsm dukpt derive --key-identifier file:%s --key-serial-number FFFF9876543210E00001 --purpose PIN "
      .. "--out %s"):format(bdk, pin))
    assert.equal("TDES_2KEY:042666B49184CF5C68DE9628D0397B36 usage=P0 mode=B\n", read(pin))
    assert.same({ "FFFF9876543210E00001", "P0" }, { r.KeySerialNumber, r.KeyUsage })
    -- the MAC response variant, as the Lua API derives it
    local want = hsm.dukpt.working_key(hsm.key.import("TDES_2KEY", T2), "FFFF9876543210E00001",
      { purpose = "MAC", variant = "RESPONSE" })
    assert.equal(want:kcv(), ok(("bin/payhsm dukpt derive --key-identifier file:%s --key-serial-number "
      .. "FFFF9876543210E00001 --purpose MAC --dukpt-key-variant RESPONSE --dukpt-key-derivation-type TDES_2KEY")
      :format(bdk)).KeyCheckValue)
    -- an existing --out without --force, bad data, wrong names
    usage_error(("bin/payhsm dukpt derive --key-identifier file:%s --key-serial-number FFFF9876543210E00001 "
      .. "--purpose PIN --out %s"):format(bdk, pin), "exists; pass %-%-force")
    ok(("bin/payhsm dukpt derive --key-identifier file:%s --key-serial-number FFFF9876543210E00002 --purpose PIN "
      .. "--out %s --force"):format(bdk, pin))
    bad_input(("bin/payhsm dukpt derive --key-identifier file:%s --key-serial-number FFFF98 --purpose PIN"):format(bdk),
      "DUKPT_KSN")
    bad_input(("bin/payhsm dukpt derive --key-identifier file:%s --key-serial-number FFFF9876543210E00001 --purpose MAC "
      .. "--dukpt-key-variant BIDIRECTIONAL"):format(bdk), "DUKPT_VARIANT")
    usage_error(("bin/payhsm dukpt initial-key --key-identifier file:%s --key-serial-number FFFF9876543210E00000 "
      .. "--purpose PIN"):format(bdk), "is for dukpt derive")
    usage_error(("bin/payhsm dukpt derive --key-identifier file:%s --key-serial-number FFFF9876543210E00001 "
      .. "--purpose PINS"):format(bdk))
  end)

  it("key split and combine: components in 0600 files or on stdin, never argv; KCVs printed", function()
    local k = file("split", "TDES_2KEY:" .. T2 .. "\n")
    local prefix = dir .. "/comp"
    local r = ok(("bin/payhsm key split --key-identifier file:%s --number-of-components 3 --out %s"):format(k, prefix))
    assert.equal("08D7B4", r.KeyCheckValue)
    assert.same({ prefix .. ".1", prefix .. ".2", prefix .. ".3" }, r.ComponentFiles)
    local parts = {}
    for i = 1, 3 do
      parts[i] = read(prefix .. "." .. i):match("^(%x+)\n$")
      assert.equal(32, #parts[i])
      assert.equal(hsm.key.import("TDES_2KEY", parts[i]):kcv(), r.ComponentCheckValues[i])
      local p = io.popen("stat -c %a " .. prefix .. "." .. i)
      assert.equal("600", p:read("*l"))
      p:close()
    end
    usage_error(("bin/payhsm key split --key-identifier file:%s --number-of-components 3 --out %s"):format(k, prefix),
      "exists; pass %-%-force")
    local all = file("all", table.concat(parts, "\n") .. "\n")
    local out = dir .. "/combined.key"
    r = ok(("bin/payhsm key combine --key-algorithm TDES_2KEY --components file:%s --key-usage K0 --key-mode-of-use B "
      .. "--out %s"):format(all, out))
    assert.equal("08D7B4", r.KeyCheckValue)
    assert.same({ r.ComponentCheckValues[1], "K0" }, { hsm.key.import("TDES_2KEY", parts[1]):kcv(), r.KeyUsage })
    assert.equal("TDES_2KEY:" .. T2 .. " usage=K0 mode=B\n", read(out))
    r = ok(("bin/payhsm key combine --key-algorithm TDES_2KEY --components - --out %s --force"):format(out),
      table.concat(parts, "\n") .. "\n")
    assert.equal("08D7B4", r.KeyCheckValue)
    -- never from argv; one component is not enough; not hex
    bad_input(("bin/payhsm key combine --key-algorithm TDES_2KEY --components %s --out %s --force"):format(parts[1], out),
      "CLI_SECRET_ARGV")
    bad_input(("bin/payhsm key combine --key-algorithm TDES_2KEY --components - --out %s --force"):format(out),
      "KEY_COMPONENTS", parts[1] .. "\n")
    bad_input(("bin/payhsm key combine --key-algorithm TDES_2KEY --components - --out %s --force"):format(out),
      "BAD_HEX", parts[1] .. "\n" .. ("Z"):rep(32) .. "\n")
    usage_error(("bin/payhsm key split --key-identifier file:%s --number-of-components 10 --out %s --force")
      :format(k, prefix), "2 to 9")
  end)

  it("zka mac --mac-length 4|8 and zka verify [pyca]", function()
    local k = file("zmk", "TDES_2KEY:" .. T2 .. "\n")
    local base = ("bin/payhsm zka %%s --key-identifier file:%s --random-number A1B2C3D4E5F60718293A4B5C6D7E8F90 "
      .. "--message-data 0200F23C449108E0800016 "):format(k)
    assert.same({ Mac = "70D8C78200D57B31" }, ok(base:format("mac")))
    assert.same({ Mac = "70D8C782" }, ok(base:format("mac") .. "--mac-length 4"))
    assert.same({ KeyCheckValue = "08D7B4", Valid = true }, ok(base:format("verify") .. "--mac 70D8C78200D57B31"))
    assert.is_true(ok(base:format("verify") .. "--mac 70D8C782 --mac-length 4").Valid)
    assert.same({ KeyCheckValue = "08D7B4", Valid = false, Code = "MAC_MISMATCH" },
      bad_input(base:format("verify") .. "--mac 70D8C78200D57B30", "MAC_MISMATCH"))
    usage_error(base:format("mac") .. "--mac-length 6", "4 or 8")
    usage_error(base:format("verify"), "%-%-mac is required")
  end)

  it("tr34 wrap and unwrap: a KEK from the KDH to the KRD, certificates and RSA keys from files", function()
    local function run(cmd) assert(os.execute("env -u LD_PRELOAD " .. cmd .. " >/dev/null 2>&1")) end
    local function leaf(name, ku)
      run(("openssl req -newkey rsa:2048 -nodes -subj '/O=TR34 Test/CN=%s' -keyout %s/%s.key -out %s/%s.csr")
        :format(name, dir, name, dir, name))
      file(name .. ".ext", "keyUsage=" .. ku .. "\n")
      run(("openssl x509 -req -in %s/%s.csr -CA %s/ca.pem -CAkey %s/ca.key -CAcreateserial -days 10 -extfile %s/%s.ext "
        .. "-out %s/%s.pem"):format(dir, name, dir, dir, dir, name, dir, name))
    end
    run(("openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=ca' -keyout %s/ca.key -out %s/ca.pem"):format(dir, dir))
    leaf("kdh", "digitalSignature")
    leaf("krd", "keyEncipherment")
    local kek = file("kek", "TDES_2KEY:" .. T2 .. " usage=K0 mode=B\n")
    local p = function(n) return dir .. "/" .. n end
    for _, nonce in ipairs { "", " --random-nonce 0123456789ABCDEF" } do
      local w = ok(("bin/payhsm tr34 wrap --key-identifier file:%s --signing-key-identifier file:%s "
        .. "--signing-key-certificate %s --wrapping-key-certificate %s --certificate-authority-public-key-identifier %s%s")
        :format(kek, p("kdh.key"), p("kdh.pem"), p("krd.pem"), p("ca.pem"), nonce))
      assert.equal("08D7B4", w.KeyCheckValue)
      assert.matches("^%x+$", w.WrappedKeyBlock)
      local out = p("received.key")
      local u = ok(("bin/payhsm tr34 unwrap --wrapped-key-block %s --wrapping-key-identifier file:%s "
        .. "--signing-key-certificate %s --certificate-authority-public-key-identifier file:%s --out %s --force%s")
        :format(w.WrappedKeyBlock, p("krd.key"), p("kdh.pem"), p("ca.pem"), out, nonce))
      assert.same({ "08D7B4", "K0", "B", "TDES_2KEY" }, { u.KeyCheckValue, u.KeyUsage, u.KeyModeOfUse, u.KeyAlgorithm })
      assert.equal("TDES_2KEY:" .. T2 .. " usage=K0 mode=B exportability=E\n", read(out))
      if nonce ~= "" then
        -- a two-pass token answers only the nonce the KRD sent
        bad_input(("bin/payhsm tr34 unwrap --wrapped-key-block %s --wrapping-key-identifier file:%s "
          .. "--signing-key-certificate %s --certificate-authority-public-key-identifier %s --random-nonce 0123456789ABCDEE")
          :format(w.WrappedKeyBlock, p("krd.key"), p("kdh.pem"), p("ca.pem")), "TR34_NONCE")
      end
    end
    -- a private key on the command line is refused; a missing certificate is a usage error
    bad_input(("bin/payhsm tr34 unwrap --wrapped-key-block 00 --wrapping-key-identifier %s --signing-key-certificate %s "
      .. "--certificate-authority-public-key-identifier %s"):format(p("krd.key"), p("kdh.pem"), p("ca.pem")), "CLI_SECRET_ARGV")
    usage_error(("bin/payhsm tr34 wrap --key-identifier file:%s --signing-key-identifier file:%s "
      .. "--signing-key-certificate %s --certificate-authority-public-key-identifier %s")
      :format(kek, p("kdh.key"), p("kdh.pem"), p("ca.pem")), "wrapping%-key%-certificate is required")
  end)

  it("every new subcommand has --help", function()
    for _, c in ipairs { { "card", "generation%-attributes" }, { "pin", "verification%-key%-identifier" },
      { "dukpt", "dukpt%-key%-variant" }, { "tr34", "signing%-key%-certificate" }, { "key", "components" },
      { "zka", "mac%-length" } } do
      local out, rc = sh("bin/payhsm " .. c[1] .. " --help")
      assert.equal(0, rc, c[1])
      assert.matches("usage: payhsm " .. c[1], out)
      assert.matches(c[2], out)
    end
  end)
end)

describe("the AWS forms of ARQC and AS2805 as AWS's user guide writes them", function()
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("KekValidationRequest={DeriveKeyAlgorithm=…,RandomKeyMaxLength=BYTES_8} is accepted", function()
    local k = file("kek", "TDES_2KEY:" .. T2 .. "\n")
    local base = "bin/payhsm as2805 generate --key-identifier file:" .. k .. " --random-key-send-variant-mask "
      .. "VARIANT_MASK_82C0 --kek-validation-type "
    local kek = hsm.key.import("TDES_2KEY", T2)
    local want = hsm.as2805.kek_validation_request(kek, { derive_algorithm = "TDES_2KEY", random_key_max_length = "BYTES_8",
      variant_mask = "VARIANT_MASK_82C0" })
    local r = ok(base .. "'KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY,RandomKeyMaxLength=BYTES_8}'")
    assert.equal(#want.random_key_send, #r.RandomKeySend)
    assert.equal(r.RandomKeyReceive, hsm.as2805.kek_validation_response(kek, r.RandomKeySend,
      { variant_mask = "VARIANT_MASK_82C0" }))
    r = ok(base .. q('{"KekValidationRequest":{"DeriveKeyAlgorithm":"TDES_2KEY","RandomKeyMaxLength":"BYTES_24"}}'))
    assert.equal(#hsm.as2805.kek_validation_request(kek, { random_key_max_length = "BYTES_24",
      variant_mask = "VARIANT_MASK_82C0" }).random_key_send,
      #r.RandomKeySend)
    -- the older option stays an alias, not together with the member
    r = ok(base:gsub("generate", "request") .. "'KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY}' "
      .. "--random-key-max-length BYTES_8")
    assert.equal(#want.random_key_send, #r.RandomKeySend)
    usage_error(base .. "'KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY,RandomKeyMaxLength=BYTES_8}' "
      .. "--random-key-max-length BYTES_8", "two forms of the same input")
  end)

  it("DeriveKeyAlgorithm: TDES_2KEY and TDES_3KEY; AES and HMAC refused with a usage error naming them", function()
    local k2 = file("kek2", "TDES_2KEY:" .. T2 .. "\n")
    local k3 = file("kek3", "TDES_3KEY:" .. T2 .. "89ABCDEF01234567\n")
    local base = "bin/payhsm as2805 generate --random-key-send-variant-mask VARIANT_MASK_82 --key-identifier file:"
    ok(base .. k3 .. " --kek-validation-type 'KekValidationRequest={DeriveKeyAlgorithm=TDES_3KEY}'")
    for _, alg in ipairs { "AES_128", "AES_192", "AES_256", "HMAC_SHA256", "HMAC_SHA512" } do
      usage_error(base .. k2 .. " --kek-validation-type 'KekValidationRequest={DeriveKeyAlgorithm=" .. alg .. "}'",
        "DeriveKeyAlgorithm " .. alg .. " is not supported: .* use TDES_2KEY or TDES_3KEY")
    end
    usage_error(base:gsub("generate", "request") .. k2 .. " --derive-key-algorithm AES_128", "use TDES_2KEY or TDES_3KEY")
    -- a TDES_3KEY algorithm for a TDES_2KEY KEK is bad input
    bad_input(base .. k2 .. " --kek-validation-type 'KekValidationRequest={DeriveKeyAlgorithm=TDES_3KEY}'", "KEY_TYPE")
  end)

  it("RandomKeySendVariantMask and MajorKeyDerivationMode are required in the AWS forms", function()
    local k = file("kek", "TDES_2KEY:" .. T2 .. "\n")
    usage_error("bin/payhsm as2805 generate --key-identifier file:" .. k
      .. " --kek-validation-type 'KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY}'",
      "random%-key%-send%-variant%-mask is required")
    usage_error("bin/payhsm as2805 generate --key-identifier file:" .. k .. " --random-key-send-variant-mask VARIANT_MASK_99"
      .. " --kek-validation-type 'KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY}'", "VARIANT_MASK_82C0 or")
    local imk = file("imk", "TDES_2KEY:9E15204313F7318ACB79B90BD986AD29 usage=E0\n")
    usage_error("bin/payhsm arqc generate --key-identifier file:" .. imk .. " --transaction-data 0000000000000000"
      .. " --session-key-derivation-attributes 'Visa={PrimaryAccountNumber=5413330089600010,PanSequenceNumber=01}'",
      "major%-key%-derivation%-mode is required")
  end)

  it("transaction data in the AWS form is taken as given; --padding pads on request", function()
    local imk_hex = "9E15204313F7318ACB79B90BD986AD29"
    local imk = hsm.key.import("TDES_2KEY", imk_hex, { usage = "E0" })
    local k = file("imk", "TDES_2KEY:" .. imk_hex .. " usage=E0\n")
    local pan, data = "5413330089600010", "0000000010000000000000000840008000800008401605170000000000"
    local padded = data .. "800000"
    local p = { mode = "EMV_OPTION_A", derivation = "EMV_COMMON", pan = pan, psn = "01", atc = "0001", data = data }
    local arqc = hsm.emv.generate_arqc(imk, p)
    local base = ("bin/payhsm arqc verify --key-identifier file:%s --major-key-derivation-mode EMV_OPTION_A "
      .. "--session-key-derivation-attributes 'EmvCommon={PrimaryAccountNumber=%s,PanSequenceNumber=01,"
      .. "ApplicationTransactionCounter=0001}' --auth-request-cryptogram %s "):format(k, pan, arqc)
    assert.is_true(ok(base .. "--transaction-data " .. padded).Valid)
    assert.is_true(ok(base .. "--transaction-data " .. data .. " --padding 2").Valid)
    -- unpadded data is not padded behind the user's back: not whole blocks, so refused
    bad_input(base .. "--transaction-data " .. data, "BAD_LENGTH")
    -- padded by the other method: another cryptogram
    assert.equal("ARQC_MISMATCH", bad_input(base .. "--transaction-data " .. data .. "000000", "ARQC_MISMATCH").Code)
    usage_error(base .. "--transaction-data " .. padded .. " --padding 3", "%-%-padding: 0 %(none%), 1 or 2")
    -- generate gives what verify takes
    local g = ok((base:gsub("verify", "generate"):gsub("%-%-auth%-request%-cryptogram %x+ ", ""))
      .. "--transaction-data " .. padded)
    assert.equal(arqc, g.AuthRequestCryptogram)
  end)
end)

describe("key usage per EMV master key (csrc/emv.c, csrc/card.c)", function()
  local PAN, DATA = "5413330089600010", "00000000100000000000000008400080008000084016051700000000008000000"
  local function imk(usage) return assert(hsm.key.import("TDES_2KEY", "9E15204313F7318ACB79B90BD986AD29", { usage = usage })) end
  local function p() return { mode = "EMV_OPTION_A", derivation = "EMV_COMMON", pan = PAN, psn = "01", atc = "0001",
    data = DATA:sub(1, 64), arqc = "0011223344556677", method = 1, arc = "3030" } end
  local AC = {
    generate_arqc = function(k) return hsm.emv.generate_arqc(k, p()) end,
    verify_arqc = function(k) return hsm.emv.verify_arqc(k, p()) end,
    generate_arpc = function(k) return hsm.emv.generate_arpc(k, p()) end,
    compute_arpc = function(k) return hsm.emv.compute_arpc(k, p()) end,
    derive_session_key = function(k) return hsm.emv.derive_session_key(k, "EMV_COMMON", { atc = "0001" }) end,
  }
  for _, usage in ipairs { "E1", "E2", "E3", "E4", "E5", "E6" } do
    for name, fn in pairs(AC) do
      it(("emv.%s refuses an IMK of usage %s (KEY_USAGE)"):format(name, usage), function()
        local a, _, code = fn(imk(usage))
        assert.is_falsy(a)
        assert.equal("KEY_USAGE", code)
      end)
    end
  end
  it("E0 (and no usage) make cryptograms; every EMV master key usage derives an ICC master key", function()
    for _, usage in ipairs { "E0", false } do
      local k = imk(usage or nil)
      assert.matches("^%x+$", hsm.emv.generate_arqc(k, p()))
      assert.matches("^%x+$", hsm.emv.generate_arpc(k, p()))
      assert.is_truthy(hsm.emv.derive_session_key(k, "EMV_COMMON", { atc = "0001" }))
    end
    for _, usage in ipairs { "E0", "E1", "E2", "E3", "E4", "E5", "E6" } do
      local mk = assert(hsm.emv.derive_icc_master_key(imk(usage), PAN, "01", "EMV_OPTION_A"))
      assert.equal(usage, mk.usage)
    end
  end)

  local DCVV = { pan = "1234567890123456", expiry = "1310", service_code = "226", atc = "3210" }
  local CVC3 = { track_data = "1234567890123456D12012061000110000000F", atc = "2710", un = "00002710" }
  local function icc(usage)
    return assert(hsm.emv.derive_icc_master_key(assert(hsm.key.import("TDES_2KEY", K12, { usage = usage })),
      "1234567890123456", "00", "EMV_OPTION_A"))
  end
  for _, usage in ipairs { "E1", "E2", "E3", "E5" } do
    it(("card.dcvv and card.cvc3 refuse a card key of usage %s (KEY_USAGE)"):format(usage), function()
      assert.equal("KEY_USAGE", select(3, hsm.card.dcvv(icc(usage), DCVV)))
      assert.equal("KEY_USAGE", select(3, hsm.card.cvc3(icc(usage), CVC3)))
      assert.equal("KEY_USAGE", select(3, hsm.card.verify_dcvv(icc(usage), DCVV, "422")))
      assert.equal("KEY_USAGE", select(3, hsm.card.verify_cvc3(icc(usage), CVC3, "464")))
    end)
  end
  it("card.dcvv and card.cvc3 take the card key of an E4 IMK (AWS's dynamic numbers key), E6 and E0 [jpos]", function()
    for _, usage in ipairs { "E4", "E6", "E0" } do
      assert.equal("422", hsm.card.dcvv(icc(usage), DCVV))
      assert.equal("39464", hsm.card.cvc3(icc(usage), CVC3))
    end
  end)
  it("bin/payhsm arqc refuses an IMK of usage E1 with KEY_USAGE, exit 1", function()
    local d = os.tmpname()
    local f = io.open(d, "w")
    f:write("TDES_2KEY:9E15204313F7318ACB79B90BD986AD29 usage=E1\n")
    f:close()
    local out, rc, err = sh("bin/payhsm arqc generate --key-identifier file:" .. d .. " --major-key-derivation-mode "
      .. "EMV_OPTION_A --transaction-data 0000000000000000 --session-key-derivation-attributes "
      .. "'Visa={PrimaryAccountNumber=5413330089600010,PanSequenceNumber=01}'")
    os.remove(d)
    assert.equal(1, rc)
    assert.equal("", out)
    assert.matches("%[KEY_USAGE%]\n$", err)
  end)
end)
