-- bin/payhsm subcommands for the core operations (lua/payhsm/commands.lua), run as a user
-- would: JSON out, --text, --help, exit codes, one-line errors with codes, secrets only from
-- files, the environment or stdin. Known answers: KCV 08D7B4 and the ISO 9797-1 algorithm 3
-- MAC A1C72E74EA3FA9B6 of "Now is the time for all " (the README tour's and spec/mac_spec.lua's
-- vectors); the rest are round trips through the Lua API.
--
-- Structure parameters follow the AWS Payment Cryptography data plane API reference
-- (https://docs.aws.amazon.com/payment-cryptography/latest/DataAPIReference/): API_VerifyMac
-- (--verification-attributes, a MacAttributes union with Algorithm), API_MacAttributes,
-- API_SessionKeyDerivation with SessionKeyEmvCommon / SessionKeyMastercard (+UnpredictableNumber)
-- / SessionKeyEmv2000 / SessionKeyVisa / SessionKeyAmex, API_CryptogramAuthResponse
-- (ArpcMethod1 AuthResponseCode, ArpcMethod2 CardStatusUpdate + ProprietaryAuthenticationData),
-- API_TranslationIsoFormats (IsoFormat0/1/3/4), API_As2805KekValidationType
-- (KekValidationRequest DeriveKeyAlgorithm, KekValidationResponse RandomKeySend) with
-- RandomKeySendVariantMask VARIANT_MASK_82C0 | VARIANT_MASK_82; outputs as VerifyMacOutput
-- (KeyCheckValue), GenerateMac (Mac), TranslatePinData (PinBlock, KeyCheckValue),
-- VerifyAuthRequestCryptogram (AuthResponseValue, KeyCheckValue) and GenerateAs2805KekValidation
-- (RandomKeySend, RandomKeyReceive, KeyCheckValue). The shorthand is the AWS CLI's
-- (https://docs.aws.amazon.com/cli/latest/userguide/cli-usage-shorthand.html).
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

describe("bin/payhsm commands", function()
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("kcv: JSON by default, --text for people, key from a file, the environment or stdin", function()
    local k = file("k", "TDES_2KEY:0123456789ABCDEFFEDCBA9876543210\n")
    local out, rc = sh("bin/payhsm kcv --key-identifier file:" .. k)
    assert.equal(0, rc)
    assert.same({ KeyCheckValue = "08D7B4", KeyCheckValueAlgorithm = "ANSI_X9_24" }, cjson.decode(out))
    out = sh("bin/payhsm kcv --key-identifier file:" .. k .. " --text")
    assert.equal("KeyCheckValue\t08D7B4\nKeyCheckValueAlgorithm\tANSI_X9_24\n", out)
    out = sh("K=0123456789ABCDEFFEDCBA9876543210 bin/payhsm kcv --key-identifier env:K --key-algorithm TDES_2KEY")
    assert.equal("08D7B4", cjson.decode(out).KeyCheckValue)
    out = sh("bin/payhsm kcv --key-identifier - --key-algorithm TDES_2KEY --key-check-value-algorithm CMAC",
      "0123456789ABCDEFFEDCBA9876543210\n")
    assert.equal(hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210"):kcv("CMAC"), cjson.decode(out).KeyCheckValue)
  end)

  it("never takes a key from the command line itself", function()
    local out, rc, err = sh("bin/payhsm kcv --key-identifier 0123456789ABCDEFFEDCBA9876543210 --key-algorithm TDES_2KEY")
    assert.equal(1, rc)
    assert.equal("", out)
    assert.matches("%[CLI_SECRET_ARGV%]\n$", err)
    assert.not_matches("0123456789ABCDEF", err)
  end)

  it("mac generate and verify (ISO 9797-1 algorithm 3 known answer)", function()
    local k = file("mk", "TDES_2KEY:0123456789ABCDEFFEDCBA9876543210")
    local data = "4E6F77206973207468652074696D6520666F7220616C6C20"
    local base = "bin/payhsm mac %s --key-identifier file:" .. k .. " --generation-attributes ISO9797_ALGORITHM3 --message-data " .. data
    local out, rc = sh(base:format("generate"))
    assert.equal(0, rc)
    assert.equal("A1C72E74EA3FA9B6", cjson.decode(out).Mac)
    out, rc = sh(base:format("verify") .. " --mac A1C72E74EA3FA9B6")
    assert.equal(0, rc)
    assert.is_true(cjson.decode(out).Valid)
    local err
    out, rc, err = sh(base:format("verify") .. " --mac A1C72E74EA3FA9B7")
    assert.equal(1, rc)
    assert.matches("%[MAC_MISMATCH%]", err)
  end)

  it("keygen writes a 0600 key file; tr31 wrap, unwrap and parse round-trip", function()
    local kbpk = dir .. "/kbpk"
    local out, rc = sh("bin/payhsm keygen --key-algorithm AES_256 --out " .. kbpk)
    assert.equal(0, rc)
    local gen = cjson.decode(out)
    assert.equal("AES_256", gen.KeyAlgorithm)
    local mode = io.popen("stat -c %a " .. kbpk):read("*l")
    assert.equal("600", mode)
    local f = io.open(kbpk)
    local alg, hex = f:read("*a"):match("^(%S+):(%x+)")
    f:close()
    assert.equal(gen.KeyCheckValue, hsm.key.import(alg, hex):kcv())
    local k = file("zpk", "TDES_2KEY:0123456789ABCDEFFEDCBA9876543210")
    out, rc = sh(("bin/payhsm tr31 wrap --wrapping-key-identifier file:%s --key-identifier file:%s --key-usage P0 "
      .. "--key-mode-of-use E --exportability N"):format(kbpk, k))
    assert.equal(0, rc)
    local block = cjson.decode(out).KeyBlock
    assert.matches("^D%d%d%d%dP0TE00N", block)
    local key = assert(hsm.tr31.unwrap(hsm.key.import(alg, hex), block))
    assert.equal("08D7B4", key:kcv())
    -- a key marked non-exportable (N) is never written in clear: --out is refused, no file
    local _, nrc, nerr = sh(("bin/payhsm tr31 unwrap --wrapping-key-identifier file:%s --key-block %s --out %s/unwrapped")
      :format(kbpk, block, dir))
    assert.is_true(nrc ~= 0)
    assert.matches("key:export: the key is marked non%-exportable %(N%)", nerr)
    assert.is_nil(io.open(dir .. "/unwrapped"))
    out, rc = sh(("bin/payhsm tr31 unwrap --wrapping-key-identifier file:%s --key-block %s"):format(kbpk, block))
    assert.equal(0, rc)
    local un = cjson.decode(out)
    assert.equal("08D7B4", un.KeyCheckValue)
    assert.equal("P0", un.KeyAttributes.KeyUsage)
    out = sh("bin/payhsm tr31 parse --key-block " .. block .. " --text")
    assert.matches("KeyUsage\tP0", out)
    -- a tampered block: exit 1 and the TR-31 code
    local bad = block:sub(1, -2) .. (block:sub(-1) == "0" and "1" or "0")
    local err
    out, rc, err = sh(("bin/payhsm tr31 unwrap --wrapping-key-identifier file:%s --key-block %s"):format(kbpk, bad))
    assert.equal(1, rc)
    assert.matches("%[TR31_MAC_MISMATCH%]", err)
  end)

  it("pin encrypt, decrypt and translate (PIN from a file, never argv)", function()
    local k1 = file("p1", "AES_128:00112233445566778899AABBCCDDEEFF")
    local k2 = file("p2", "TDES_2KEY:0123456789ABCDEFFEDCBA9876543210")
    local pin = file("pin", "1234\n")
    local pan = "4111111111111111"
    local out, rc = sh(("bin/payhsm pin encrypt --key-identifier file:%s --pin-block-format ISO_FORMAT_4 --pin file:%s "
      .. "--primary-account-number %s"):format(k1, pin, pan))
    assert.equal(0, rc)
    local block = cjson.decode(out).PinBlock
    out = sh(("bin/payhsm pin translate --incoming-key-identifier file:%s --incoming-pin-block-format ISO_FORMAT_4 "
      .. "--outgoing-key-identifier file:%s --outgoing-pin-block-format ISO_FORMAT_0 --encrypted-pin-block %s "
      .. "--primary-account-number %s"):format(k1, k2, block, pan))
    local b0 = cjson.decode(out).PinBlock
    assert.equal("1234", hsm.pin.decrypt(hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210"), "ISO_FORMAT_0",
      b0, pan))
    out = sh(("bin/payhsm pin decrypt --key-identifier file:%s --pin-block-format ISO_FORMAT_0 --encrypted-pin-block %s "
      .. "--primary-account-number %s"):format(k2, b0, pan))
    assert.equal("1234", cjson.decode(out).Pin)
    local _, rc2, err = sh(("bin/payhsm pin encrypt --key-identifier file:%s --pin-block-format ISO_FORMAT_4 --pin 1234 "
      .. "--primary-account-number %s"):format(k1, pan))
    assert.equal(1, rc2)
    assert.matches("CLI_SECRET_ARGV", err)
  end)

  it("arqc generate/verify and arpc agree with the Lua API", function()
    local imk_hex = "9E15204313F7318ACB79B90BD986AD29"
    local k = file("imk", "TDES_2KEY:" .. imk_hex)
    local p = { mode = "EMV_OPTION_A", derivation = "EMV_COMMON", pan = "5413330089600010", psn = "01", atc = "0001",
      data = "0000000010000000000000000840008000800008401605170000000000" }
    local want = hsm.emv.generate_arqc(hsm.key.import("TDES_2KEY", imk_hex), p)
    local args = ("--key-identifier file:%s --session-key-derivation EMV_COMMON --primary-account-number %s "
      .. "--pan-sequence-number 01 --application-transaction-counter 0001"):format(k, p.pan)
    local out, rc = sh("bin/payhsm arqc generate " .. args .. " --transaction-data " .. p.data)
    assert.equal(0, rc)
    assert.equal(want, cjson.decode(out).AuthRequestCryptogram)
    out, rc = sh("bin/payhsm arqc verify " .. args .. " --transaction-data " .. p.data .. " --auth-request-cryptogram " .. want)
    assert.equal(0, rc)
    local err
    _, rc, err = sh("bin/payhsm arqc verify " .. args .. " --transaction-data " .. p.data:gsub("1", "2", 1)
      .. " --auth-request-cryptogram " .. want)
    assert.equal(1, rc)
    assert.matches("ARQC_MISMATCH", err)
    p.arqc, p.method, p.arc = want, 1, "0012"
    out = sh("bin/payhsm arpc " .. args .. " --auth-request-cryptogram " .. want .. " --auth-response-code 0012")
    assert.equal(hsm.emv.generate_arpc(hsm.key.import("TDES_2KEY", imk_hex), p), cjson.decode(out).AuthResponseValue)
  end)

  it("as2805 request/response, zka derive/mac and envelope seal/open", function()
    local kek = file("kek", "TDES_2KEY:0123456789ABCDEFFEDCBA9876543210")
    local out = sh("bin/payhsm as2805 request --key-identifier file:" .. kek)
    local req = cjson.decode(out)
    out = sh("bin/payhsm as2805 response --key-identifier file:" .. kek .. " --random-key-send " .. req.RandomKeySend)
    assert.equal(req.RandomKeyReceive, cjson.decode(out).RandomKeyReceive)
    local rnd = "00112233445566778899AABBCCDDEEFF"
    local mk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210")
    out = sh(("bin/payhsm zka mac --key-identifier file:%s --random-number %s --message-data 0011223344556677"):format(kek, rnd))
    assert.equal(hsm.zka.mac(hsm.zka.derive_session_key(mk, "MAC", rnd), "0011223344556677"), cjson.decode(out).Mac)
    local msk = file("msk", "AES_256:" .. ("11"):rep(32))
    out = sh("bin/payhsm envelope seal --chunked --key-identifier file:" .. msk .. " --plain-text -", "card data")
    local env = cjson.decode(out)
    assert.equal("TR31-DATA-CHUNKED", env.format)
    local envf = file("env.json", out)
    out = sh("bin/payhsm envelope open --key-identifier file:" .. msk .. " --envelope file:" .. envf)
    assert.equal("card data", cjson.decode(out).PlainText)
  end)

  it("answers --help for every command, and usage errors with exit 2", function()
    for name in pairs(require("payhsm.commands").commands) do
      local out, rc = sh("bin/payhsm " .. name .. " --help")
      assert.equal(0, rc, name)
      assert.matches("^usage: payhsm " .. name, out)
    end
    local k = file("u", "TDES_2KEY:0123456789ABCDEFFEDCBA9876543210")
    local cases = {
      { "bin/payhsm kcv --key-identifier file:" .. k .. " --nope 1", "unknown option" },
      { "bin/payhsm kcv", "key%-identifier is required" },
      { "bin/payhsm tr31 frobnicate", "unknown subcommand" },
      { "bin/payhsm mac generate --key-identifier file:" .. k .. " --message-data 00", "generation%-attributes is required" },
      { "bin/payhsm kcv --key-identifier file:" .. k .. " --key-check-value-algorithm MD5", "" },
    }
    for _, c in ipairs(cases) do
      local _, rc, err = sh(c[1])
      assert.equal(2, rc, c[1])
      assert.matches(c[2], err)
      assert.matches("%[CLI_USAGE%]\n$", err)
      assert.equal(1, select(2, err:gsub("\n", "")), err) -- one line
    end
    local bad = file("bad", "TDES_2KEY:0123456789ABCDEFFEDCBA98765432ZZ")
    local _, rc, err = sh("bin/payhsm kcv --key-identifier file:" .. bad)
    assert.equal(1, rc)
    assert.matches("%[BAD_HEX%]", err)
    _, rc, err = sh("bin/payhsm kcv --key-identifier file:/nonexistent/key")
    assert.equal(1, rc)
    assert.matches("cannot read", err)
  end)

  -- ---- AWS structure parameters --------------------------------------------------------
  local function q(v) return "'" .. v:gsub("'", "'\\''") .. "'" end
  local TDES = "0123456789ABCDEFFEDCBA9876543210"
  local NOW = "4E6F77206973207468652074696D6520666F7220616C6C20" -- "Now is the time for all "

  -- A usage error: exit 2, nothing on stdout, one line ending in [CLI_USAGE], no traceback.
  local function usage_error(cmd, pattern)
    local out, rc, err = sh(cmd)
    assert.equal(2, rc, cmd .. "\n" .. err)
    assert.equal("", out, cmd)
    assert.matches("^payhsm [^\n]*%[CLI_USAGE%]\n$", err)
    assert.not_matches("traceback", err)
    assert.not_matches("%.lua:%d", err)
    if pattern then assert.matches(pattern, err, 1, false) end
    return err
  end

  it("mac: --generation-attributes and --verification-attributes as AWS MacAttributes, JSON or shorthand", function()
    local k = file("amk", "TDES_2KEY:" .. TDES)
    local base = "bin/payhsm mac %s --key-identifier file:" .. k .. " --message-data " .. NOW .. " "
    for _, attrs in ipairs { "Algorithm=ISO9797_ALGORITHM3", '{"Algorithm":"ISO9797_ALGORITHM3"}',
      ' { "Algorithm" : "ISO9797_ALGORITHM3" } ', 'Algorithm="ISO9797_ALGORITHM3"', "ISO9797_ALGORITHM3" } do
      local out, rc, err = sh(base:format("generate") .. "--generation-attributes " .. q(attrs))
      assert.equal(0, rc, attrs .. err)
      -- GenerateMac returns Mac (and KeyArn, KeyCheckValue: payhsm has no ARNs)
      assert.same({ Mac = "A1C72E74EA3FA9B6", KeyCheckValue = "08D7B4" }, cjson.decode(out))
    end
    for _, attrs in ipairs { "Algorithm=ISO9797_ALGORITHM3", '{"Algorithm":"ISO9797_ALGORITHM3"}' } do
      local out, rc = sh(base:format("verify") .. "--verification-attributes " .. q(attrs) .. " --mac A1C72E74EA3FA9B6")
      assert.equal(0, rc)
      assert.same({ Valid = true, KeyCheckValue = "08D7B4" }, cjson.decode(out)) -- VerifyMacOutput: KeyCheckValue
      local _, rc2, err = sh(base:format("verify") .. "--verification-attributes " .. q(attrs) .. " --mac A1C72E74EA3FA9B7")
      assert.equal(1, rc2)
      assert.matches("%[MAC_MISMATCH%]\n$", err)
    end
    -- an HMAC key's check value is the HMAC method's (an ANSI X9.24 one would be misuse)
    local hk = file("ahk", "HMAC_SHA256:" .. ("5A"):rep(32))
    local out = sh("bin/payhsm mac generate --key-identifier file:" .. hk .. " --message-data 00112233 "
      .. "--generation-attributes Algorithm=HMAC_SHA256")
    local key = hsm.key.import("HMAC_SHA256", ("5A"):rep(32))
    assert.same({ Mac = hsm.mac.generate(key, "HMAC_SHA256", "00112233"), KeyCheckValue = key:kcv("HMAC") },
      cjson.decode(out))
    -- both forms of the verification attributes at once
    usage_error(base:format("verify") .. "--verification-attributes Algorithm=CMAC --generation-attributes CMAC --mac 00",
      "two forms of the same input")
    usage_error(base:format("verify") .. "--mac A1C72E74EA3FA9B6", "verification%-attributes is required")
  end)

  it("rejects malformed or ill-shaped structures with one CLI_USAGE line, never a traceback", function()
    local k = file("emk", "TDES_2KEY:" .. TDES)
    local mac = "bin/payhsm mac generate --key-identifier file:" .. k .. " --message-data " .. NOW .. " --generation-attributes "
    local cases = {
      { '{"Algorithm":', "malformed JSON" },
      { '{"Algorithm":"CMAC"} x', "malformed JSON" },
      { "[1,2]", "expected a JSON object" },
      { "Algorithm=CMAC,", "malformed shorthand at character 16: expected a member name" },
      { "Algorithm=CMAC X", "malformed shorthand at character 15" },
      { "Algorithm=a=b", "malformed shorthand at character 12" },
      { 'Algorithm="CMAC', "unterminated quote" },
      { "Algorithm={Name=CMAC", "expected '}'" },
      { "Algorithm=CMAC,Algorithm=CMAC", "'Algorithm' given twice" },
      { "Algorithm=[CMAC]", "lists are not used" },
      { "=CMAC", "expected a member name" },
      { "Algorithm", "expected '=' after 'Algorithm'" },
      { "Algorith=CMAC", "unknown member 'Algorith' %(expected Algorithm%)" },
      { '{"Algorithm":3}', "Algorithm must be a string" },
      { '{"Algorithm":null}', "Algorithm must be a string" },
      { "Algorithm={}", "Algorithm must be a string" },
      { "EmvMac={MajorKeyDerivationMode=EMV_OPTION_A}", "'EmvMac' is an AWS member payhsm does not implement" },
      { "{}", "give exactly one of Algorithm" },
      { "Algorithm=NOPE", "unknown MAC algorithm" },
    }
    for _, c in ipairs(cases) do usage_error(mac .. q(c[1]), c[2]) end
    usage_error(mac:gsub(" %-%-generation%-attributes $", "") .. " --generation-attributes", "generation%-attributes")
    -- a member name that is not a plain word is not repeated
    for _, name in ipairs { TDES, TDES:lower(), "AbCdEf0123456789AbCdEf0123456789", "Algorithm with space" } do
      local err = usage_error(mac .. q('{"' .. name .. '":"x"}'), "unknown member %(a name not shown%)")
      assert.not_matches(name, err, 1, true)
      err = usage_error(mac .. q(name .. "=x"))
      assert.not_matches(name, err, 1, true)
    end
  end)

  it("arqc and arpc: --session-key-derivation-attributes and --auth-response-attributes agree with the Lua API", function()
    local imk_hex = "9E15204313F7318ACB79B90BD986AD29"
    local imk = hsm.key.import("TDES_2KEY", imk_hex)
    local k = file("aimk", "TDES_2KEY:" .. imk_hex)
    -- AWS's form takes the transaction data as given (AWS's user guide: pad before sending):
    -- here padded by ISO 9797-1 method 2 to whole blocks
    local pan, data = "5413330089600010", "0000000010000000000000000840008000800008401605170000000000" .. "800000"
    local cases = {
      { "EmvCommon", { derivation = "EMV_COMMON", atc = "0001" },
        "EmvCommon={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01,ApplicationTransactionCounter=0001}" },
      { "EmvCommon JSON", { derivation = "EMV_COMMON", atc = "0001" }, '{"EmvCommon":{"PrimaryAccountNumber":"' .. pan
        .. '","PanSequenceNumber":"01","ApplicationTransactionCounter":"0001"}}' },
      { "Mastercard", { derivation = "MASTERCARD", atc = "002A", un = "11223344" }, "Mastercard={PrimaryAccountNumber="
        .. pan .. ",PanSequenceNumber=01,ApplicationTransactionCounter=002A,UnpredictableNumber=11223344}" },
      { "Emv2000", { derivation = "EMV2000", atc = "0005" },
        "Emv2000={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01,ApplicationTransactionCounter=0005}" },
      { "Visa (no ATC)", { derivation = "VISA" }, "Visa={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01}" },
      { "Amex (no ATC)", { derivation = "AMEX" }, '{"Amex":{"PrimaryAccountNumber":"' .. pan .. '","PanSequenceNumber":"01"}}' },
    }
    for _, c in ipairs(cases) do
      local p = c[2]
      p.mode, p.pan, p.psn, p.data, p.padding = "EMV_OPTION_A", pan, "01", data, 0
      local want = hsm.emv.generate_arqc(imk, p)
      local args = ("--key-identifier file:%s --session-key-derivation-attributes %s --major-key-derivation-mode "
        .. "EMV_OPTION_A --transaction-data %s")
        :format(k, q(c[3]), data)
      local out, rc, err = sh("bin/payhsm arqc generate " .. args)
      assert.equal(0, rc, c[1] .. err)
      assert.equal(want, cjson.decode(out).AuthRequestCryptogram, c[1])
      -- verify alone: VerifyAuthRequestCryptogram's KeyCheckValue, no AuthResponseValue
      out, rc = sh("bin/payhsm arqc verify " .. args .. " --auth-request-cryptogram " .. want)
      assert.equal(0, rc, c[1])
      assert.same({ Valid = true, KeyCheckValue = imk:kcv() }, cjson.decode(out))
      -- verify with ARPC method 1 and method 2
      p.arqc, p.method, p.arc = want, 1, "3030"
      local arpc1 = hsm.emv.generate_arpc(imk, p)
      out, rc = sh("bin/payhsm arqc verify " .. args .. " --auth-request-cryptogram " .. want
        .. " --auth-response-attributes 'ArpcMethod1={AuthResponseCode=3030}'")
      assert.equal(0, rc, c[1])
      assert.equal(arpc1, cjson.decode(out).AuthResponseValue, c[1])
      p.method, p.arc, p.csu, p.proprietary = 2, nil, "00820000", "1122"
      local arpc2 = hsm.emv.generate_arpc(imk, p)
      out = sh("bin/payhsm arpc " .. args .. " --auth-request-cryptogram " .. want .. " --auth-response-attributes "
        .. q('{"ArpcMethod2":{"CardStatusUpdate":"00820000","ProprietaryAuthenticationData":"1122"}}'))
      assert.equal(arpc2, cjson.decode(out).AuthResponseValue, c[1])
      -- a wrong ARQC still fails with the ARPC asked for
      local bad = want:sub(1, -2) .. (want:sub(-1) == "0" and "1" or "0")
      local _, rc2, err2 = sh("bin/payhsm arqc verify " .. args .. " --auth-request-cryptogram " .. bad
        .. " --auth-response-attributes 'ArpcMethod1={AuthResponseCode=3030}'")
      assert.equal(1, rc2)
      assert.matches("%[ARQC_MISMATCH%]\n$", err2)
    end
    -- the older flattened form gives the same VISA cryptogram without an ATC (it pads by default)
    local out = sh(("bin/payhsm arqc generate --key-identifier file:%s --session-key-derivation VISA "
      .. "--primary-account-number %s --pan-sequence-number 01 --transaction-data %s"):format(k, pan, data))
    assert.equal(hsm.emv.generate_arqc(imk, { mode = "EMV_OPTION_A", derivation = "VISA", pan = pan, psn = "01", data = data }),
      cjson.decode(out).AuthRequestCryptogram)
    -- error paths
    local base = "bin/payhsm arqc generate --key-identifier file:" .. k .. " --transaction-data " .. data
      .. " --major-key-derivation-mode EMV_OPTION_A --session-key-derivation-attributes "
    usage_error(base .. q("EmvCommon={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01}"),
      "EmvCommon: ApplicationTransactionCounter is required")
    usage_error(base .. q("Mastercard={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01,ApplicationTransactionCounter=0001}"),
      "Mastercard: UnpredictableNumber is required")
    usage_error(base .. q("Visa={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01,ApplicationTransactionCounter=0001}"),
      "Visa: unknown member 'ApplicationTransactionCounter'")
    usage_error(base .. q("Visa={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01},Amex={PrimaryAccountNumber=" .. pan
      .. ",PanSequenceNumber=01}"), "give exactly one of EmvCommon, Mastercard, Emv2000, Amex, Visa")
    usage_error(base .. q("Discover={PrimaryAccountNumber=" .. pan .. "}"), "unknown member 'Discover'")
    usage_error(base .. q('{"Visa":{"PrimaryAccountNumber":' .. pan .. ',"PanSequenceNumber":"01"}}'),
      "PrimaryAccountNumber must be a string")
    usage_error(base .. q("Visa={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01") , "expected '}'")
    usage_error(base .. q("Visa={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01}") .. " --pan-sequence-number 01",
      "two forms of the same input")
    usage_error(base .. q("Visa={PrimaryAccountNumber=" .. pan .. ",PanSequenceNumber=01}")
      .. " --auth-response-attributes 'ArpcMethod1={AuthResponseCode=3030}'", "is for arqc verify")
    local arpc = ("bin/payhsm arpc --key-identifier file:%s --major-key-derivation-mode EMV_OPTION_A "
      .. "--session-key-derivation-attributes %s "
      .. "--auth-request-cryptogram 0011223344556677 --auth-response-attributes "):format(k, q(cases[1][3]))
    usage_error(arpc .. "'ArpcMethod1={AuthResponseCode=3030}' --auth-response-code 3030", "two forms of the same input")
    usage_error(arpc .. "'ArpcMethod1={AuthResponseCode=3030},ArpcMethod2={CardStatusUpdate=00820000}'", "give exactly one of")
    usage_error(arpc .. "'ArpcMethod2={ProprietaryAuthenticationData=11}'", "ArpcMethod2: CardStatusUpdate is required")
    usage_error(arpc .. "'ArpcMethod3={AuthResponseCode=3030}'", "unknown member 'ArpcMethod3'")
    usage_error(("bin/payhsm arqc generate --key-identifier file:%s --transaction-data %s"):format(k, data),
      "session%-key%-derivation%-attributes is required")
  end)

  it("pin translate: --incoming/--outgoing-translation-attributes as AWS TranslationIsoFormats", function()
    local k1hex = "00112233445566778899AABBCCDDEEFF"
    local k1, k2 = file("tp1", "AES_128:" .. k1hex), file("tp2", "TDES_2KEY:" .. TDES)
    local aes, tdes = hsm.key.import("AES_128", k1hex), hsm.key.import("TDES_2KEY", TDES)
    local pan, pan2 = "4111111111111111", "5413330089600010"
    local b4 = hsm.pin.encrypt(aes, "ISO_FORMAT_4", "1234", pan)
    local base = ("bin/payhsm pin translate --incoming-key-identifier file:%s --outgoing-key-identifier file:%s "
      .. "--encrypted-pin-block %s "):format(k1, k2, b4)
    local cases = {
      { "IsoFormat4={PrimaryAccountNumber=" .. pan .. "}", '{"IsoFormat0":{"PrimaryAccountNumber":"' .. pan .. '"}}',
        "ISO_FORMAT_0", pan },
      { '{"IsoFormat4":{"PrimaryAccountNumber":"' .. pan .. '"}}', "IsoFormat3={PrimaryAccountNumber=" .. pan2 .. "}",
        "ISO_FORMAT_3", pan2 },
    }
    for _, c in ipairs(cases) do
      local out, rc, err = sh(base .. "--incoming-translation-attributes " .. q(c[1]) .. " --outgoing-translation-attributes "
        .. q(c[2]))
      assert.equal(0, rc, err)
      local r = cjson.decode(out)
      assert.equal("08D7B4", r.KeyCheckValue) -- TranslatePinData: the outgoing key's check value
      assert.equal(c[3], r.PinBlockFormat)
      assert.equal("1234", hsm.pin.decrypt(tdes, c[3], r.PinBlock, c[4]))
    end
    -- format 1 carries no PAN: IsoFormat1={} in, the outgoing PAN from its own structure
    local b1 = hsm.pin.encrypt(tdes, "ISO_FORMAT_1", "987654", nil)
    local out, rc, err = sh(("bin/payhsm pin translate --incoming-key-identifier file:%s --outgoing-key-identifier file:%s "
      .. "--encrypted-pin-block %s --incoming-translation-attributes 'IsoFormat1={}' --outgoing-translation-attributes %s")
      :format(k2, k1, b1, q("IsoFormat4={PrimaryAccountNumber=" .. pan .. "}")))
    assert.equal(0, rc, err)
    assert.equal("987654", hsm.pin.decrypt(aes, "ISO_FORMAT_4", cjson.decode(out).PinBlock, pan))
    -- mixed: AWS form in, the older flattened form out (its PAN defaults to the incoming one)
    out = sh(base .. "--incoming-translation-attributes " .. q(cases[1][1]) .. " --outgoing-pin-block-format ISO_FORMAT_0")
    assert.equal("1234", hsm.pin.decrypt(tdes, "ISO_FORMAT_0", cjson.decode(out).PinBlock, pan))
    -- error paths
    local inn = "--incoming-translation-attributes " .. q(cases[1][1])
    usage_error(base .. inn .. " --primary-account-number " .. pan .. " --outgoing-pin-block-format ISO_FORMAT_0",
      "%-%-incoming%-translation%-attributes and %-%-primary%-account%-number are two forms")
    usage_error(base .. inn .. " --incoming-pin-block-format ISO_FORMAT_4 --outgoing-pin-block-format ISO_FORMAT_0",
      "two forms of the same input")
    usage_error(base .. inn .. " --outgoing-translation-attributes 'IsoFormat0={PrimaryAccountNumber=" .. pan .. "}' "
      .. "--outgoing-primary-account-number " .. pan, "two forms of the same input")
    usage_error(base .. inn .. " --outgoing-translation-attributes 'IsoFormat0={}'", "IsoFormat0: PrimaryAccountNumber is required")
    usage_error(base .. inn .. " --outgoing-translation-attributes 'IsoFormat1={PrimaryAccountNumber=" .. pan .. "}'",
      "IsoFormat1: unknown member 'PrimaryAccountNumber' %(expected none%)")
    usage_error(base .. inn .. " --outgoing-translation-attributes 'IsoFormat2={}'", "unknown member 'IsoFormat2'")
    usage_error(base .. inn .. " --outgoing-translation-attributes '{\"IsoFormat0\":\"" .. pan .. "\"}'",
      "IsoFormat0 must be a structure")
    usage_error(base .. inn, "outgoing%-translation%-attributes is required")
  end)

  it("as2805: generate with --kek-validation-type and --random-key-send-variant-mask, AWS names beside the old ones", function()
    local kf = file("akek", "TDES_2KEY:" .. TDES)
    local kek = hsm.key.import("TDES_2KEY", TDES)
    for _, mask in ipairs { "VARIANT_MASK_82C0", "VARIANT_MASK_82" } do
      local out, rc, err = sh(("bin/payhsm as2805 generate --key-identifier file:%s --kek-validation-type "
        .. "'KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY}' --random-key-send-variant-mask %s"):format(kf, mask))
      assert.equal(0, rc, err)
      local r = cjson.decode(out)
      assert.equal("08D7B4", r.KeyCheckValue)
      assert.equal(r.RandomKeyReceive, hsm.as2805.kek_validation_response(kek, r.RandomKeySend, { variant_mask = mask }))
      -- the partner's side, as JSON and through the older subcommand and options
      out, rc = sh(("bin/payhsm as2805 generate --key-identifier file:%s --kek-validation-type %s "
        .. "--random-key-send-variant-mask %s"):format(kf, q('{"KekValidationResponse":{"RandomKeySend":"'
        .. r.RandomKeySend:lower() .. '"}}'), mask))
      assert.equal(0, rc)
      assert.same({ RandomKeySend = r.RandomKeySend, RandomKeyReceive = r.RandomKeyReceive, KeyCheckValue = "08D7B4" },
        cjson.decode(out))
      out = sh(("bin/payhsm as2805 response --key-identifier file:%s --random-key-send %s --variant-mask %s")
        :format(kf, r.RandomKeySend, mask))
      assert.equal(r.RandomKeyReceive, cjson.decode(out).RandomKeyReceive)
      out = sh(("bin/payhsm as2805 response --key-identifier file:%s --kek-validation-type "
        .. "'KekValidationResponse={RandomKeySend=%s}' --random-key-send-variant-mask %s"):format(kf, r.RandomKeySend, mask))
      assert.equal(r.RandomKeyReceive, cjson.decode(out).RandomKeyReceive)
    end
    -- with the masks swapped the answer differs
    local r = hsm.as2805.kek_validation_request(kek, { derive_algorithm = "TDES_2KEY", random_key_max_length = "BYTES_16",
      variant_mask = "VARIANT_MASK_82C0" })
    local out = sh(("bin/payhsm as2805 generate --key-identifier file:%s --kek-validation-type "
      .. "'KekValidationResponse={RandomKeySend=%s}' --random-key-send-variant-mask VARIANT_MASK_82"):format(kf, r.random_key_send))
    assert.not_equal(r.random_key_receive, cjson.decode(out).RandomKeyReceive)
    -- error paths
    local base = "bin/payhsm as2805 %s --key-identifier file:" .. kf .. " "
    -- AWS marks RandomKeySendVariantMask required: the AWS form does not default it
    local basem = base .. "--random-key-send-variant-mask VARIANT_MASK_82C0 "
    usage_error(base:format("generate"), "kek%-validation%-type is required")
    usage_error(basem:format("request") .. "--kek-validation-type 'KekValidationResponse={RandomKeySend=" .. r.random_key_send
      .. "}'", "is a KekValidationResponse: use as2805 response or as2805 generate")
    usage_error(basem:format("generate") .. "--kek-validation-type 'KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY}' "
      .. "--derive-key-algorithm TDES_2KEY", "two forms of the same input")
    usage_error(basem:format("generate") .. "--kek-validation-type 'KekValidationRequest={}'",
      "KekValidationRequest: DeriveKeyAlgorithm is required")
    usage_error(basem:format("generate") .. "--kek-validation-type 'KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY},"
      .. "KekValidationResponse={RandomKeySend=" .. r.random_key_send .. "}'", "give exactly one of")
    usage_error(base:format("generate") .. "--kek-validation-type 'KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY}' "
      .. "--variant-mask VARIANT_MASK_82 --random-key-send-variant-mask VARIANT_MASK_82", "two forms of the same input")
    usage_error(basem:format("generate") .. "--kek-validation-type 'KekValidationResponse={RandomKeySend=" .. r.random_key_send
      .. "}' --random-key-max-length BYTES_8", "random%-key%-max%-length is for a request")
    usage_error(base:format("request") .. "--random-key-send-variant-mask VARIANT_MASK_99", "")
    -- bad data (a short KRs) is still bad input, exit 1
    local _, rc, err = sh(basem:format("generate") .. "--kek-validation-type 'KekValidationResponse={RandomKeySend=0011}'")
    assert.equal(1, rc)
    assert.matches("^payhsm as2805 generate: [^\n]*%[[%u%d_]+%]\n$", err)
  end)

  it("parses the AWS shorthand strictly (quoted values, empty structures and values)", function()
    local cmds = require "payhsm.commands"
    local S = cmds.shapes
    assert.same({ Algorithm = "CMAC" }, cmds.parse_structure("Algorithm='CMAC'", S.MacAttributes, "--x"))
    assert.same({ IsoFormat1 = {} }, cmds.parse_structure("IsoFormat1={}", S.TranslationIsoFormats, "--x"))
    assert.same({ ArpcMethod2 = { CardStatusUpdate = "00820000", ProprietaryAuthenticationData = "a,b={c}" } },
      cmds.parse_structure('ArpcMethod2={CardStatusUpdate=00820000,ProprietaryAuthenticationData="a,b={c}"}',
        S.CryptogramAuthResponse, "--x"))
    -- an empty value is a value (the core then judges it)
    assert.same({ KekValidationResponse = { RandomKeySend = "" } },
      cmds.parse_structure("KekValidationResponse={RandomKeySend=}", S.As2805KekValidationType, "--x"))
    for _, bad in ipairs { "", " Algorithm=CMAC", "Algorithm=CMAC ", "Algorithm=CMAC}", "{Algorithm=CMAC}", "Algorithm=\"C\"M" } do
      local ok, e = pcall(cmds.parse_structure, bad, S.MacAttributes, "--x")
      assert.is_false(ok, bad)
      assert.equal("CLI_USAGE", e.code, bad)
      assert.matches("^%-%-x", e.msg)
    end
  end)

  it("--help puts the AWS forms first and the older flattened ones after", function()
    local want = {
      mac = { "verification-attributes", "generation-attributes" },
      arqc = { "session-key-derivation-attributes", "session-key-derivation " },
      arpc = { "auth-response-attributes", "auth-response-code" },
      pin = { "incoming-translation-attributes", "incoming-pin-block-format" },
      as2805 = { "kek-validation-type", "derive-key-algorithm" },
    }
    for name, w in pairs(want) do
      local out = sh("bin/payhsm " .. name .. " --help")
      local primary = out:find("--" .. w[1], 1, true)
      local older = out:find("older flattened forms", 1, true)
      local alias = out:find("--" .. w[2], older or 1, true)
      assert.is_truthy(primary, name)
      assert.is_truthy(older, name)
      assert.is_truthy(alias, name)
      assert.is_true(primary < older and older < alias, name)
    end
  end)
end)
