-- bin/payhsm key files keep what a key may do, and the CLI speaks in its own words.
-- Key usage and mode of use are the ANSI X9.143 (TR-31) header fields: a P0 key with mode
-- E (encrypt only) must not decrypt PIN blocks nor make MACs (X9.143 Table 6 usage P0 "PIN
-- encryption", Table 7 mode E "encrypt / wrap only"). KCV 08D7B4 of the TDES key
-- 0123456789ABCDEFFEDCBA9876543210 and the ISO 9797-1 algorithm 3 MAC A1C72E74EA3FA9B6 of
-- "Now is the time for all " as in spec/kcv_spec.lua and spec/mac_spec.lua.
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
local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local TDES = "0123456789ABCDEFFEDCBA9876543210"
local NOW = "4E6F77206973207468652074696D6520666F7220616C6C20"

-- A usage error: exit 2, one line in the CLI's words, no Lua internals.
local function usage_error(cmd, pattern, stdin)
  local out, rc, err = sh(cmd, stdin)
  assert.equal(2, rc, cmd .. "\n" .. err)
  assert.equal("", out, cmd)
  assert.matches("^payhsm[ :][^\n]*%[CLI_USAGE%]\n$", err, 1, false, cmd)
  if pattern then assert.matches(pattern, err, 1, false, cmd) end
  for _, leak in ipairs { "bad argument", "%.lua:%d", "payhsm%.core", "attempt to", "'%?'", "CLI_ERROR" } do
    assert.not_matches(leak, err, 1, false, cmd)
  end
  return err
end

describe("bin/payhsm key files", function()
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("tr31 unwrap --out keeps an encrypt-only PIN key's attributes: pin decrypt and mac generate refuse it", function()
    local kbpk = file("kbpk", "AES_256:" .. ("22"):rep(32))
    local block = assert(hsm.tr31.wrap(hsm.key.import("AES_256", ("22"):rep(32)),
      hsm.key.import("TDES_2KEY", TDES), { usage = "P0", mode = "E", exportability = "E" }))
    local out, rc = sh(("bin/payhsm tr31 unwrap --wrapping-key-identifier file:%s --key-block %s --out %s/pek")
      :format(kbpk, block, dir))
    assert.equal(0, rc)
    assert.equal("08D7B4", cjson.decode(out).KeyCheckValue)
    assert.equal("TDES_2KEY:" .. TDES .. " usage=P0 mode=E exportability=E\n", slurp(dir .. "/pek"))
    -- encrypting a PIN block is what it is for
    local pb
    out, rc = sh(("bin/payhsm pin encrypt --key-identifier file:%s/pek --pin-block-format ISO_FORMAT_0 --pin - "
      .. "--primary-account-number 4111111111111111"):format(dir), "1234\n")
    assert.equal(0, rc)
    pb = cjson.decode(out).PinBlock
    -- decrypting with it is not
    local err
    out, rc, err = sh(("bin/payhsm pin decrypt --key-identifier file:%s/pek --pin-block-format ISO_FORMAT_0 "
      .. "--encrypted-pin-block %s --primary-account-number 4111111111111111"):format(dir, pb))
    assert.equal(1, rc)
    assert.equal("", out)
    assert.matches("^payhsm pin decrypt: [^\n]*mode of use E[^\n]*%[KEY_USAGE%]\n$", err)
    out, rc, err = sh(("bin/payhsm mac generate --key-identifier file:%s/pek --generation-attributes "
      .. "ISO9797_ALGORITHM3 --message-data %s"):format(dir, NOW))
    assert.equal(1, rc)
    assert.matches("usage P0 is not allowed here[^\n]*%[KEY_USAGE%]\n$", err)
    -- wrapped again, the block's header comes from the file's attributes
    out, rc = sh(("bin/payhsm tr31 wrap --wrapping-key-identifier file:%s --key-identifier file:%s/pek"):format(kbpk, dir))
    assert.equal(0, rc)
    assert.matches("^D%d%d%d%dP0TE00E", cjson.decode(out).KeyBlock)
  end)

  it("keygen keeps --key-usage and --key-mode-of-use; an old ALG:HEX or HEX file means any use", function()
    local out, rc = sh(("bin/payhsm keygen --key-algorithm TDES_2KEY --key-usage M3 --key-mode-of-use G --out %s/m3")
      :format(dir))
    assert.equal(0, rc)
    local gen = cjson.decode(out)
    assert.equal("M3", gen.KeyUsage)
    assert.equal("G", gen.KeyModeOfUse)
    assert.matches("^TDES_2KEY:%x+ usage=M3 mode=G\n$", slurp(dir .. "/m3"))
    out, rc = sh(("bin/payhsm mac generate --key-identifier file:%s/m3 --generation-attributes ISO9797_ALGORITHM3 "
      .. "--message-data %s"):format(dir, NOW))
    assert.equal(0, rc)
    assert.equal(gen.KeyCheckValue, cjson.decode(out).KeyCheckValue)
    local _, rc2, err = sh(("bin/payhsm mac verify --key-identifier file:%s/m3 --verification-attributes "
      .. "Algorithm=ISO9797_ALGORITHM3 --message-data %s --mac %s"):format(dir, NOW, cjson.decode(out).Mac))
    assert.equal(1, rc2) -- mode G: generate only (X9.143 Table 7)
    assert.matches("%[KEY_USAGE%]", err)
    -- the older forms, and the algorithm name in any case
    for _, content in ipairs { "TDES_2KEY:" .. TDES, "tdes_2key:" .. TDES:lower(), "Tdes_2Key:" .. TDES .. "\n" } do
      out, rc = sh(("bin/payhsm mac generate --key-identifier file:%s --generation-attributes ISO9797_ALGORITHM3 "
        .. "--message-data %s"):format(file("old", content), NOW))
      assert.equal(0, rc, content)
      assert.equal("A1C72E74EA3FA9B6", cjson.decode(out).Mac)
    end
    out, rc = sh(("bin/payhsm kcv --key-identifier file:%s --key-algorithm TDES_2KEY"):format(file("bare", TDES)))
    assert.equal("08D7B4", cjson.decode(out).KeyCheckValue)
    -- a damaged attribute list is bad input (exit 1) named without repeating the key
    for _, c in ipairs { { " usgae=P0", "unknown attribute 'usgae'" }, { " usage=Q9", "unknown TR%-31 key usage 'Q9'" },
      { " usage=P0 usage=P0", "gives usage twice" } } do
      local out2, rc3, err3 = sh(("bin/payhsm kcv --key-identifier file:%s"):format(file("bad", "TDES_2KEY:" .. TDES .. c[1])))
      assert.equal(1, rc3, c[1])
      assert.equal("", out2)
      assert.matches("^payhsm kcv: %-%-key%-identifier: [^\n]*" .. c[2] .. "[^\n]*%[CLI_INPUT%]\n$", err3)
      assert.not_matches(TDES, err3)
    end
  end)

  it("keygen --out: a new file of mode 0600, not over an existing one without --force, never through a symlink", function()
    local path = dir .. "/new"
    local out, rc = sh("bin/payhsm keygen --key-algorithm AES_128 --out " .. path)
    assert.equal(0, rc)
    assert.equal("600", io.popen("stat -c %a " .. path):read("*l"))
    local first = slurp(path)
    usage_error("bin/payhsm keygen --key-algorithm AES_128 --out " .. path, "exists; pass %-%-force")
    assert.equal(first, slurp(path))
    out, rc = sh("umask 022; bin/payhsm keygen --key-algorithm AES_128 --force --out " .. path)
    assert.equal(0, rc)
    assert.are_not.equal(first, slurp(path))
    assert.equal("600", io.popen("stat -c %a " .. path):read("*l"))
    assert.equal(path, cjson.decode(out).KeyFile)
    -- a symlink planted at the path: refused, its target untouched
    local target = file("target", "untouched")
    os.execute(("ln -s %s %s/link"):format(target, dir))
    usage_error(("bin/payhsm keygen --key-algorithm AES_128 --out %s/link"):format(dir), "exists")
    assert.equal("untouched", slurp(target))
    -- --force replaces the link itself, not its target
    out, rc = sh(("bin/payhsm keygen --key-algorithm AES_128 --force --out %s/link"):format(dir))
    assert.equal(0, rc)
    assert.equal("untouched", slurp(target))
    assert.equal("", io.popen(("find %s/link -type l"):format(dir)):read("*a"))
    -- core.write_secret_file itself
    local core = require "payhsm.core"
    assert.same({ nil, "write_secret_file: " .. path .. " exists (pass force to replace it)", "FILE_EXISTS" },
      { core.write_secret_file(path, "x") })
  end)

  it("keygen --out - writes the key line alone to stdout and the JSON to stderr", function()
    local out, rc, err = sh("bin/payhsm keygen --key-algorithm AES_128 --key-usage K0 --key-mode-of-use B --out -")
    assert.equal(0, rc)
    assert.matches("^AES_128:%x+ usage=K0 mode=B\n$", out)
    local gen = cjson.decode(err)
    assert.equal(hsm.key.import("AES_128", out:match(":(%x+)")):kcv(), gen.KeyCheckValue)
    assert.is_nil(gen.KeyFile)
  end)

  it("the KCV of an HMAC key is the HMAC check value, in keygen and kcv alike", function()
    local out, rc = sh(("bin/payhsm keygen --key-algorithm HMAC_SHA256 --out %s/hk"):format(dir))
    assert.equal(0, rc)
    local gen = cjson.decode(out)
    assert.equal("HMAC", gen.KeyCheckValueAlgorithm)
    local k = hsm.key.import("HMAC_SHA256", slurp(dir .. "/hk"):match(":(%x+)"))
    assert.equal(k:kcv("HMAC"), gen.KeyCheckValue)
    out, rc = sh(("bin/payhsm kcv --key-identifier file:%s/hk"):format(dir))
    assert.equal(0, rc)
    assert.same({ KeyCheckValue = gen.KeyCheckValue, KeyCheckValueAlgorithm = "HMAC" }, cjson.decode(out))
  end)
end)

describe("bin/payhsm usage errors", function()
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("are exit 2 in the CLI's own words, listing the valid names", function()
    local k = file("k", "TDES_2KEY:" .. TDES)
    usage_error("bin/payhsm kcv --key-identifier", "%-%-key%-identifier needs a value")
    usage_error("bin/payhsm kcv --key-identifier --text", "%-%-key%-identifier needs a value")
    usage_error("bin/payhsm kcv --key-identifier file:" .. k .. " --key-identifier file:" .. k, "given twice")
    usage_error("bin/payhsm kcv --key-identifier file:" .. k .. " --key-check-value-algorithm X",
      "unknown KCV algorithm 'X' %(expected one of: ANSI_X9_24, CMAC, HMAC%)")
    usage_error("bin/payhsm keygen --key-algorithm AES_265 --out " .. dir .. "/x",
      "unknown key algorithm 'AES_265' %(expected one of: DES, TDES_2KEY")
    usage_error("bin/payhsm kcv --key-identifier file:" .. file("h", TDES),
      "%-%-key%-algorithm is required %(or write ALGORITHM:HEX in the key file; one of DES, TDES_2KEY")
    usage_error("bin/payhsm kcv --key-identifer file:" .. k,
      "unknown option '%-%-key%-identifer' %(expected one of: %-%-key%-identifier, %-%-key%-algorithm")
    usage_error("bin/payhsm tr31 unwrapp", "unknown subcommand 'unwrapp' %(expected one of: parse, unwrap, wrap%)")
    usage_error(("bin/payhsm zka mac --key-identifier file:%s --purpose PAC --random-number %s --message-data 00")
      :format(k, ("00"):rep(16)), "%-%-purpose is for zka derive, not mac")
    usage_error("bin/payhsm envelope seal --chunked=yes --key-identifier file:" .. k, "is a flag")
    usage_error(("bin/payhsm mac generate --key-identifier file:%s --generation-attributes CMAC --message-data 00 "
      .. "--padding 4"):format(k), "padding")
    usage_error("bin/payhsm frobnicate", "unknown command 'frobnicate' %(expected one of: run, repl, serve, arpc, arqc")
  end)

  it("--help works for every command and exits 0", function()
    local cmds = require "payhsm.commands"
    local names = {}
    for name in pairs(cmds.commands) do names[#names + 1] = name end
    for _, extra in ipairs { "run", "repl", "serve" } do names[#names + 1] = extra end
    for _, name in ipairs(names) do
      local out, rc = sh("bin/payhsm " .. name .. " --help")
      assert.equal(0, rc, name)
      assert.matches("^usage: payhsm " .. name, out, 1, false, name)
    end
    local out, rc = sh("bin/payhsm --help")
    assert.equal(0, rc)
    assert.matches("^usage: payhsm run FILE", out)
    out, rc = sh("bin/payhsm tr31 unwrap --help")
    assert.equal(0, rc)
    out = sh("bin/payhsm serve --help")
    for _, key in ipairs { "listen", "tls", "store", "master_keys", "registration_kbpk", "webhook_url" } do
      assert.truthy(out:find("[ ,]" .. key .. "[ ,\n]"), key)
    end
    -- no subcommand and a bad serve line stay usage errors
    local _, rc2 = sh("bin/payhsm tr31")
    assert.equal(2, rc2)
    _, rc2 = sh("bin/payhsm serve gateway")
    assert.equal(2, rc2)
  end)

  it("a failed verification answers JSON on stdout and exits 1", function()
    local k = file("mk", "TDES_2KEY:" .. TDES)
    local out, rc, err = sh(("bin/payhsm mac verify --key-identifier file:%s --verification-attributes "
      .. "Algorithm=ISO9797_ALGORITHM3 --message-data %s --mac A1C72E74EA3FA9B7"):format(k, NOW))
    assert.equal(1, rc)
    assert.same({ Valid = false, Code = "MAC_MISMATCH", KeyCheckValue = "08D7B4" }, cjson.decode(out))
    assert.matches("%[MAC_MISMATCH%]\n$", err)
    local imk = file("imk", "TDES_2KEY:9E15204313F7318ACB79B90BD986AD29")
    local args = ("--key-identifier file:%s --session-key-derivation-attributes 'EmvCommon={PrimaryAccountNumber="
      .. "5413330089600010,PanSequenceNumber=01,ApplicationTransactionCounter=0001}' --major-key-derivation-mode EMV_OPTION_A"
      .. " --transaction-data 0000000000000000"):format(imk)
    out, rc = sh("bin/payhsm arqc verify " .. args .. " --auth-request-cryptogram 0000000000000000")
    assert.equal(1, rc)
    local v = cjson.decode(out)
    assert.is_false(v.Valid)
    assert.equal("ARQC_MISMATCH", v.Code)
  end)

  it("arqc generate and arpc give the KeyCheckValue of the key they used", function()
    local imk_hex = "9E15204313F7318ACB79B90BD986AD29"
    local imk = file("imk", "TDES_2KEY:" .. imk_hex)
    local kcv = hsm.key.import("TDES_2KEY", imk_hex):kcv()
    local args = ("--key-identifier file:%s --session-key-derivation-attributes 'EmvCommon={PrimaryAccountNumber="
      .. "5413330089600010,PanSequenceNumber=01,ApplicationTransactionCounter=0001}' --major-key-derivation-mode EMV_OPTION_A")
      :format(imk)
    local out, rc = sh("bin/payhsm arqc generate " .. args .. " --transaction-data 0000000000000000")
    assert.equal(0, rc)
    local arqc = cjson.decode(out)
    assert.equal(kcv, arqc.KeyCheckValue)
    out, rc = sh("bin/payhsm arpc " .. args .. " --auth-request-cryptogram " .. arqc.AuthRequestCryptogram
      .. " --auth-response-attributes ArpcMethod1={AuthResponseCode=3030}")
    assert.equal(0, rc)
    assert.equal(kcv, cjson.decode(out).KeyCheckValue)
  end)
end)
