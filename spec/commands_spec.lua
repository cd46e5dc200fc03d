-- bin/payhsm subcommands for the core operations (lua/payhsm/commands.lua), run as a user
-- would: JSON out, --text, --help, exit codes, one-line errors with codes, secrets only from
-- files, the environment or stdin. Known answers: KCV 08D7B4 and the ISO 9797-1 algorithm 3
-- MAC A1C72E74EA3FA9B6 of "Now is the time for all " (the README's and spec/mac_spec.lua's
-- vectors); the rest are round trips through the Lua API.
local hsm = require "payhsm"
local cjson = require "cjson"

local interp = require "spec.support.interp"

local function sh(cmd, stdin)
  local errf = os.tmpname()
  local full = "export " .. interp.env .. "; " .. cmd .. " 2>" .. errf
  if stdin then
    local inf = os.tmpname()
    local f = io.open(inf, "w")
    f:write(stdin)
    f:close()
    full = full .. " <" .. inf
  end
  local p = io.popen(full)
  local out = p:read("*a")
  local _, _, rc = p:close()
  local ef = io.open(errf)
  local err = ef:read("*a")
  ef:close()
  os.remove(errf)
  return out, rc, err
end

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
    out, rc = sh(("bin/payhsm tr31 unwrap --wrapping-key-identifier file:%s --key-block %s --out %s/unwrapped")
      :format(kbpk, block, dir))
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
end)
