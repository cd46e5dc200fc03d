-- TR-31 / ANSI X9.143 key blocks (csrc/tr31.c).
local hsm = require "payhsm"

-- Sources:
--  [A.7.4]  ANSI X9.143-2022 / ASC TR-31:2018 example A.7.4 (version D, AES-256 KBPK,
--           AES-128 PIN key, padding 1C2965473CE206BB855B01533782).
--  [1b]     TR-31:2018 example 1b (version B, TDES KBPK DD7515F2BFC17F85CE48F3CA25CB21F6).
--  [tr31]   Other TR-31:2010/2018 examples as collected in psec's test suite (known values
--           from third parties, tests/test_tr31.py of github.com/knovichikhin/psec): versions A,
--           B and C with 2- and 3-key KBPKs, KS optional blocks, a PB padding block.
--  [tr31-1] psec tests/test_tr31.py: three blocks A0088M3TC00E.., B0096M3TC00E.., C0088M3TC00E..
--           carrying the single-length key EEEEEEEEEEEEEEEE under algorithm 'T', KBPK
--           AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB.
--  Round trips and the psec cross-check (tools/crosscheck/tr31_psec.py) cover the rest.
local published = {
  -- source, KBPK algorithm, KBPK, key algorithm, key, block
  { "A.7.4", "AES_256", "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6", "AES_128",
    "3F419E1CB7079442AA37474C2EFBF8B8",
    "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34" },
  { "1b", "TDES_2KEY", "DD7515F2BFC17F85CE48F3CA25CB21F6", "TDES_2KEY", "3F419E1CB7079442AA37474C2EFBF8B8",
    "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E" },
  { "tr31", "TDES_2KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB", "TDES_2KEY", "CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
    "A0088M3TC00E0000BE8AE894906D0B8F6FF555573A3907DC37FF13B12CE1CB8A97A97C8414AE1A8FF9183122" },
  { "tr31", "TDES_2KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB", "TDES_2KEY", "CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
    "B0096M3TC00E0000D578DACC2286C7D10F20DEA88799CA8A2F44E0CC21226A2158D5DC8FD5C78E621327DA956C678808" },
  { "tr31", "TDES_2KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB", "TDES_2KEY", "CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
    "C0088M3TC00E00009BC6306FC31891BF87B3148463627B1D68C603D9FAB9074E4A0D2E78D40B29905A826F5C" },
  { "tr31", "TDES_3KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCC", "TDES_2KEY",
    "CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
    "A0088M3TC00E000022BD7EC46BBE2A6A73389D1BA6DB63120B386F912839F4679C0523399E4D8D0F1D9A356E" },
  { "tr31", "TDES_3KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCC", "TDES_2KEY",
    "CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
    "B0096M3TC00E0000C7C6FE86A5DE769C20DCA238C52341378B484D544A9764D43963C3B2824AE56C2D07A565DD3AB342" },
  { "tr31", "TDES_3KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCC", "TDES_2KEY",
    "CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
    "C0088M3TC00E000091FA4978279FD9C218BDCBE9CC62F11A182F828406B67AC61B5573748FCF348FD59FA93A" },
  { "tr31", "TDES_2KEY", "89E88CF7931444F334BD7547FC3F380C", "TDES_2KEY", "F039121BEC83D26B169BDCD5B22AAF8F",
    "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701" },
  { "tr31", "TDES_2KEY", "B8ED59E0A279A295E9F5ED7944FD06B9", "TDES_2KEY", "EDB380DD340BC2620247D445F5B8D678",
    "C0096B0TX12S0100KS1800604B120F9292800000BFB9B689CB567E66FC3FEE5AD5F52161FC6545B9D60989015D02155C" },
  { "tr31", "TDES_2KEY", "1D22BF32387C600AD97F9B97A51311AC", "TDES_2KEY", "E8BC63E5479455E26577F715D587FE68",
    "B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E248719E24B433627" },
  { "tr31", "TDES_2KEY", "89E88CF7931444F334BD7547FC3F380C", "TDES_2KEY", "F039121BEC83D26B169BDCD5B22AAF8F",
    "B0120P0TE12E0100KS1800604B120F9292800000E6E28F097CB0350B2EB2DF520947F779FA34D9759CEE7E0DEEACF8353DB778D47FA4EC20DA3A9754" },
  { "tr31", "TDES_2KEY", "B8ED59E0A279A295E9F5ED7944FD06B9", "TDES_2KEY", "F039121BEC83D26B169BDCD5B22AAF8F",
    "A0112P0TE12E0200KS1400604B120F929280PB047A1BB737854CD7AF58A8A1E4506A942277EDA76EBA6BA228AF62ADDA3AD8799E8B2C8CD7" },
}

local A256 = "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"
local A74 = published[1][6]

local function flip(s, i)
  local c = s:sub(i, i)
  local r = c == "0" and "1" or (c == "A" and "B" or "0")
  if r == c then r = "X" end
  return s:sub(1, i - 1) .. r .. s:sub(i + 1)
end

describe("tr31", function()
  describe("unwrap()", function()
    for i, v in ipairs(published) do
      it(("unwraps published block %d [%s] %s"):format(i, v[1], v[6]:sub(1, 16)), function()
        local kbpk = hsm.key.import(v[2], v[3])
        local key, h = hsm.tr31.unwrap(kbpk, v[6])
        assert.is_truthy(key, h)
        assert.equal(v[5], key:export())
        assert.equal(v[4], key.algorithm)
        assert.equal(v[6]:sub(6, 7), h.usage)
        assert.equal(h.usage, key.usage)
        assert.equal(v[6]:sub(9, 9), key.mode)
        assert.equal(v[6]:sub(10, 11), key.version)
        assert.equal(v[6]:sub(12, 12), key.exportability)
        assert.equal(#v[6], h.length)
      end)
    end

    it("reads the header fields and optional blocks [tr31 KS example]", function()
      local v = published[10]
      local _, h = hsm.tr31.unwrap(hsm.key.import(v[2], v[3]), v[6])
      assert.same({ version = "C", length = 96, usage = "B0", algorithm = "T", mode = "X",
        key_version = "12", exportability = "S", context = "0", header = "C0096B0TX12S0100",
        legacy = true, blocks = { { id = "KS", data = "00604B120F9292800000" } } }, h)
    end)

    it("accepts a block whose KBPK is weaker than its key (such blocks exist) and flags it", function()
      -- AES-256 key 00112233..EEFF twice under AES-128 KBPK 000102..0F, made by psec (an
      -- independent implementation; tools/crosscheck/tr31_psec.py). wrap() refuses to make these.
      local kbpk = hsm.key.import("AES_128", "000102030405060708090A0B0C0D0E0F")
      local block = "D0144D0AB00E0000C4D8124ECEBF7A41C5A2EA32E712250FB2E8C82F04BBEE586477C54D477D07DB8BFF74EC58704212C31DC85C5028D0601EDFCDD65A454FA6E0CE8EDC99F276A7"
      local key, h = hsm.tr31.unwrap(kbpk, block)
      assert.is_truthy(key, h)
      assert.equal(("00112233445566778899AABBCCDDEEFF"):rep(2), key:export())
      assert.is_true(h.weaker_kbpk)
      local again, _, code = hsm.tr31.wrap(kbpk, key, {})
      assert.is_nil(again)
      assert.equal("TR31_WEAK_KBPK", code)
      -- equal strength is not flagged
      local _, h2 = hsm.tr31.unwrap(hsm.key.import(published[3][2], published[3][3]), published[3][6])
      assert.is_nil(h2.weaker_kbpk)
    end)

    it("unwraps HMAC keys, taking the hash from the HM block", function()
      local kbpk = hsm.key.import("AES_256", A256)
      -- X9.143 Table 13 hash codes: 20 SHA-224, 21 SHA-256, 22 SHA-384, 23 SHA-512
      for alg, hm in pairs { HMAC_SHA224 = "20", HMAC_SHA256 = "21", HMAC_SHA384 = "22", HMAC_SHA512 = "23" } do
        local k = hsm.key.import(alg, ("5A"):rep(32), { usage = "M7", mode = "C" })
        local block = assert(hsm.tr31.wrap(kbpk, k, {}))
        local back, h = hsm.tr31.unwrap(kbpk, block)
        assert.equal(alg, back.algorithm)
        assert.equal("HM", h.blocks[1].id)
        assert.equal(hm, h.blocks[1].data)
        assert.equal(k:kcv("HMAC"), back:kcv("HMAC"))
      end
    end)
  end)

  describe("wrap()", function()
    it("reproduces X9.143 example A.7.4 byte for byte with its published padding [A.7.4]", function()
      local kbpk = hsm.key.import("AES_256", A256)
      local key = hsm.key.import("AES_128", "3F419E1CB7079442AA37474C2EFBF8B8")
      assert.equal(A74, hsm.tr31.wrap(kbpk, key, "D0112P0AE00E0000", { padding = "1C2965473CE206BB855B01533782" }))
      assert.equal(A74, hsm.tr31.wrap(kbpk, key, { version = "D", usage = "P0", mode = "E", exportability = "E" },
        { padding = "1c2965473ce206bb855b01533782" }))
    end)

    it("reproduces the TR-31:2018 version B example 1b byte for byte with its padding [1b]", function()
      -- Example 1b's key field decrypts to 0080 || key || 1C2965473CE2 (the same padding
      -- bytes as A.7.4); wrapping with that padding must give the published block.
      local kbpk = hsm.key.import("TDES_2KEY", "DD7515F2BFC17F85CE48F3CA25CB21F6")
      local key = hsm.key.import("TDES_2KEY", "3F419E1CB7079442AA37474C2EFBF8B8")
      assert.equal(published[2][6], hsm.tr31.wrap(kbpk, key, "B0080P0TE00E0000", { padding = "1C2965473CE2" }))
    end)

    local kbpks = {
      { "B", "TDES_2KEY", 16 }, { "B", "TDES_3KEY", 24 },
      { "A", "TDES_2KEY", 16 }, { "A", "TDES_3KEY", 24 }, { "C", "TDES_2KEY", 16 }, { "C", "TDES_3KEY", 24 },
      { "D", "AES_128", 16 }, { "D", "AES_192", 24 }, { "D", "AES_256", 32 },
    }
    local keys = { { "DES", 56, "D" }, { "TDES_2KEY", 80, "T" }, { "TDES_3KEY", 112, "T" },
      { "AES_128", 128, "A" }, { "AES_192", 192, "A" }, { "AES_256", 256, "A" }, { "HMAC_SHA256", 128, "H" } }
    local strength = { TDES_2KEY = 80, TDES_3KEY = 112, AES_128 = 128, AES_192 = 192, AES_256 = 256 }
    for _, kb in ipairs(kbpks) do
      for _, ka in ipairs(keys) do
        local allowed = ka[2] <= strength[kb[2]]
        it(("version %s, %s KBPK, %s key: %s"):format(kb[1], kb[2], ka[1], allowed and "round trip" or "refused as weaker"), function()
          local kbpk = hsm.key.generate(kb[2], { usage = "K1", mode = "B" })
          local key = ka[1]:match("HMAC") and hsm.key.import(ka[1], hsm.key.generate("AES_128"):export(), { usage = "M7", mode = "C" })
                      or hsm.key.generate(ka[1], { usage = "D0", mode = "B", version = "07", exportability = "E" })
          for _, obf in ipairs { true, false } do
            local block, msg, code = hsm.tr31.wrap(kbpk, key, { version = kb[1] }, { legacy = true, obfuscate = obf })
            if not allowed then
              assert.is_nil(block)
              assert.equal("TR31_WEAK_KBPK", code)
              assert.is_nil(msg:find(key:export(), 1, true))
            else
              assert.is_truthy(block, msg)
              assert.equal(kb[1], block:sub(1, 1))
              assert.equal(ka[3], block:sub(8, 8))
              local back, h = hsm.tr31.unwrap(kbpk, block)
              assert.is_truthy(back, h)
              assert.equal(key:export(), back:export())
              assert.equal(key.algorithm, back.algorithm)
              assert.equal(key.usage, back.usage)
              assert.equal(key.mode, back.mode)
              assert.equal(key.version, back.version)
              assert.is_nil(h.weaker_kbpk)
              assert.equal(kb[1] == "A" or kb[1] == "C" or nil, h.legacy)
            end
          end
        end)
      end
    end

    it("obfuscates the key length by default and pads exactly when told not to", function()
      local kbpk = hsm.key.import("AES_256", A256)
      local k128 = hsm.key.generate("AES_128", { usage = "D0", mode = "B" })
      local k256 = hsm.key.generate("AES_256", { usage = "D0", mode = "B" })
      -- obfuscated: both as a 32-byte key -> 2 + 32 -> 48 bytes of key field
      assert.equal(16 + 96 + 32, #hsm.tr31.wrap(kbpk, k128, {}))
      assert.equal(16 + 96 + 32, #hsm.tr31.wrap(kbpk, k256, {}))
      -- not obfuscated: 2 + 16 -> 32 bytes, as in A.7.4
      assert.equal(112, #hsm.tr31.wrap(kbpk, k128, {}, { obfuscate = false }))
      local tk = hsm.key.import("TDES_2KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
      local tkbpk = hsm.key.import("TDES_3KEY", ("11"):rep(24))
      assert.equal(16 + 64 + 16, #hsm.tr31.wrap(tkbpk, tk, { usage = "D0", mode = "B" }))
      assert.equal(80, #hsm.tr31.wrap(tkbpk, tk, { usage = "D0", mode = "B" }, { obfuscate = false }))
    end)

    it("uses fresh random padding every time", function()
      local kbpk = hsm.key.import("AES_256", A256)
      local k = hsm.key.generate("AES_128", { usage = "P0", mode = "E" })
      assert.are_not.equal(hsm.tr31.wrap(kbpk, k, {}), hsm.tr31.wrap(kbpk, k, {}))
    end)

    it("takes attributes from the key, the table, or a header string with optional blocks", function()
      local kbpk = hsm.key.import("AES_256", A256)
      local k = hsm.key.import("AES_128", "3F419E1CB7079442AA37474C2EFBF8B8", { usage = "P0", mode = "E", version = "c1" })
      local b = hsm.tr31.wrap(kbpk, k, { blocks = { { id = "KS", data = "00604B120F9292800000" } } })
      assert.equal("P0AEc1E0", b:sub(6, 13))
      local h = hsm.tr31.parse(b)
      assert.equal("KS", h.blocks[1].id)
      assert.equal("00604B120F9292800000", h.blocks[1].data)
      assert.equal("PB", h.blocks[2].id) -- header padded to the AES block
      assert.equal(0, h.header_length % 16)
      -- header string: length digits and PB are recomputed
      local b2 = hsm.tr31.wrap(kbpk, k, "D9999P0AEc1E0200KS1800604B120F9292800000PB08ABCD")
      assert.equal(b:sub(1, 40), b2:sub(1, 40))
      assert.equal(#b, tonumber(b2:sub(2, 5)))
    end)

    it("writes and reads the extended length form for optional blocks over 255 characters", function()
      local kbpk = hsm.key.import("AES_256", A256)
      local k = hsm.key.generate("AES_256", { usage = "D0", mode = "B" })
      local data = ("0123456789"):rep(40)
      local b = hsm.tr31.wrap(kbpk, k, { blocks = { { id = "CT", data = data } } })
      assert.equal("CT0002019A", b:sub(17, 26)) -- 400 + 10 = 0x019A
      local back, h = hsm.tr31.unwrap(kbpk, b)
      assert.equal(k:export(), back:export())
      assert.equal(data, h.blocks[1].data)
    end)

    it("allows versions A and C only on explicit request", function()
      local kbpk = hsm.key.import("TDES_2KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
      local k = hsm.key.import("TDES_2KEY", "CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD", { usage = "M3", mode = "C" })
      for _, v in ipairs { "A", "C" } do
        local b, _, code = hsm.tr31.wrap(kbpk, k, { version = v })
        assert.is_nil(b)
        assert.equal("TR31_LEGACY", code)
        assert.is_truthy(hsm.tr31.wrap(kbpk, k, { version = v }, { legacy = true }))
      end
    end)

    it("refuses a non-exportable key unless wrapping for local storage", function()
      local kbpk = hsm.key.import("AES_256", A256)
      local k = hsm.key.generate("AES_128", { usage = "P0", mode = "E", exportability = "N" })
      local b, _, code = hsm.tr31.wrap(kbpk, k, {})
      assert.is_nil(b)
      assert.equal("TR31_NOT_EXPORTABLE", code)
      -- local storage: only under a KBPK marked as the local master key
      local lmk = hsm.key.import("AES_256", A256, { usage = "K0", local_master = true })
      b = assert(hsm.tr31.wrap(lmk, k, {}, { ["local"] = true }))
      assert.equal("N", hsm.tr31.unwrap(lmk, b).exportability)
      assert.equal("N", hsm.tr31.unwrap(kbpk, b).exportability) -- the same bytes unwrap it
    end)

    it("refuses local = true under a KBPK that is not a local master key", function()
      local k = hsm.key.generate("AES_128", { usage = "P0", mode = "E", exportability = "N" })
      for _, attrs in ipairs { {}, { usage = "K0" }, { usage = "K1", mode = "B", exportability = "N" } } do
        local kbpk = hsm.key.import("AES_256", A256, attrs)
        local b, msg, code = hsm.tr31.wrap(kbpk, k, {}, { ["local"] = true })
        assert.is_nil(b)
        assert.equal("TR31_NOT_LOCAL", code)
        assert.equal("tr31.wrap: local = true needs a KBPK marked as the local master key (local_master)", msg)
      end
      -- an exportable key needs no local wrap, and local changes nothing for it
      local kbpk = hsm.key.import("AES_256", A256, { usage = "K0" })
      local e = hsm.key.generate("AES_128", { usage = "P0", mode = "E" })
      assert.equal("TR31_NOT_LOCAL", select(3, hsm.tr31.wrap(kbpk, e, {}, { ["local"] = true })))
      assert(hsm.tr31.wrap(kbpk, e, {}))
    end)
  end)

  describe("parse()", function()
    it("reads a header without a key", function()
      local h = hsm.tr31.parse(A74)
      assert.equal("D", h.version)
      assert.equal(112, h.length)
      assert.equal("P0", h.usage)
      assert.equal("A", h.algorithm)
      assert.equal("E", h.mode)
      assert.equal("00", h.key_version)
      assert.equal("E", h.exportability)
      assert.equal(16, h.header_length)
      assert.equal(A74:sub(-32), h.mac)
      assert.same({}, h.blocks)
      assert.is_nil(h.legacy)
    end)
  end)

  describe("bad input", function()
    local kbpk = hsm.key.import("AES_256", A256)
    local cases = {
      -- what, block, code
      { "empty", "", "TR31_LENGTH" },
      { "truncated header", "D0112P0AE00E", "TR31_LENGTH" },
      { "truncated block", A74:sub(1, -3), "TR31_LENGTH" },
      { "over-long block", A74 .. "00", "TR31_LENGTH" },
      { "length not digits", "D01X2" .. A74:sub(6), "TR31_LENGTH" },
      { "wrong version letter", "E" .. A74:sub(2), "TR31_VERSION" },
      { "lower-case version", "d" .. A74:sub(2), "TR31_VERSION" },
      { "unknown usage", A74:sub(1, 5) .. "Q9" .. A74:sub(8), "TR31_USAGE" },
      { "unknown algorithm", A74:sub(1, 7) .. "Z" .. A74:sub(9), "TR31_ALGORITHM" },
      { "unknown mode", A74:sub(1, 8) .. "Q" .. A74:sub(10), "TR31_MODE" },
      { "mode that makes no sense for the usage (PIN key, generate-only)", A74:sub(1, 8) .. "G" .. A74:sub(10), "TR31_MODE" },
      { "bad key version", A74:sub(1, 9) .. "a!" .. A74:sub(12), "TR31_KEY_VERSION" },
      { "bad exportability", A74:sub(1, 11) .. "X" .. A74:sub(13), "TR31_EXPORTABILITY" },
      { "block count not digits", A74:sub(1, 12) .. "0A" .. A74:sub(15), "TR31_FORMAT" },
      { "reserved field", A74:sub(1, 14) .. "01" .. A74:sub(17), "TR31_FORMAT" },
      { "non-printable header", "D0112P0AE00E\0\0" .. A74:sub(15), "TR31_FORMAT" },
      { "missing optional block", A74:sub(1, 12) .. "01" .. A74:sub(15), "TR31_OPT_BLOCK" },
      { "optional block length not hex", "D0128P0AE00E0100KSZZ" .. ("0"):rep(108), "TR31_OPT_BLOCK" },
      { "optional block too short", "D0128P0AE00E0100KS02" .. ("0"):rep(108), "TR31_OPT_BLOCK" },
      { "optional block past the end", "D0128P0AE00E0100KSFF" .. ("0"):rep(108), "TR31_OPT_BLOCK" },
      { "header not a multiple of the block", "D0120P0AE00E0100KS08ABCD" .. ("0"):rep(96), "TR31_OPT_BLOCK" },
      { "PB not last", "D0144P0AE00E0200PB0400KS0C00000000" .. ("0"):rep(110), "TR31_OPT_BLOCK" },
      { "bad extended length", "D0128P0AE00E0100KS00ZZ" .. ("0"):rep(106), "TR31_OPT_BLOCK" },
      { "key field not hex", A74:sub(1, 20) .. "ZZ" .. A74:sub(23), "BAD_HEX" },
      { "MAC not hex", A74:sub(1, -3) .. "G1", "BAD_HEX" },
      { "key field not whole blocks", "D0104" .. A74:sub(6, 80) .. A74:sub(-32), "TR31_LENGTH" },
    }
    for _, c in ipairs(cases) do
      it(("%s -> %s"):format(c[1], c[3]), function()
        local key, msg, code = hsm.tr31.unwrap(kbpk, c[2])
        assert.is_nil(key)
        assert.equal(c[3], code, msg)
        assert.is_string(msg)
        assert.is_nil(msg:find(A256, 1, true))
        local h, _, pcode = hsm.tr31.parse(c[2])
        if c[3] ~= "BAD_HEX" then
          assert.is_nil(h)
          assert.equal(c[3], pcode)
        end
      end)
    end

    it("refuses every single-character change of a block (MAC checked before anything)", function()
      local refused = 0
      for i = 1, #A74 do
        local key, _, code = hsm.tr31.unwrap(kbpk, flip(A74, i))
        assert.is_nil(key, "position " .. i)
        assert.is_string(code)
        refused = refused + 1
      end
      assert.equal(#A74, refused)
      -- and the same for a legacy version A block (4-byte MAC) and a version B block
      for _, v in ipairs { published[3], published[4] } do
        local k = hsm.key.import(v[2], v[3])
        for i = 1, #v[6] do
          assert.is_nil((hsm.tr31.unwrap(k, flip(v[6], i))), v[1] .. " position " .. i)
        end
      end
    end)

    it("refuses a MAC that does not verify with TR31_MAC_MISMATCH, leaking no key bytes", function()
      local other = hsm.key.import("AES_256", ("11"):rep(32))
      local key, msg, code = hsm.tr31.unwrap(other, A74)
      assert.is_nil(key)
      assert.equal("TR31_MAC_MISMATCH", code)
      assert.is_nil(msg:find("3F419E1C", 1, true))
      assert.is_nil(msg:find("111111", 1, true))
      key, msg, code = hsm.tr31.unwrap(kbpk, A74:sub(1, 40) .. (A74:sub(41, 41) == "0" and "1" or "0") .. A74:sub(42))
      assert.equal("TR31_MAC_MISMATCH", code)
    end)

    it("refuses a KBPK of the wrong algorithm for the version", function()
      local tdes = hsm.key.import("TDES_2KEY", "DD7515F2BFC17F85CE48F3CA25CB21F6")
      local _, _, code = hsm.tr31.unwrap(tdes, A74)
      assert.equal("TR31_KBPK_MISMATCH", code)
      _, _, code = hsm.tr31.unwrap(kbpk, published[2][6])
      assert.equal("TR31_KBPK_MISMATCH", code)
      local k = hsm.key.generate("AES_128", { usage = "P0", mode = "E" })
      _, _, code = hsm.tr31.wrap(kbpk, k, { version = "B" })
      assert.equal("TR31_KBPK_MISMATCH", code)
      _, _, code = hsm.tr31.wrap(tdes, hsm.key.generate("DES", { usage = "P0", mode = "E" }), { version = "D" })
      assert.equal("TR31_KBPK_MISMATCH", code)
    end)

    it("refuses KBPKs that are not key-block keys, and HMAC KBPKs", function()
      local pin = hsm.key.import("AES_256", A256, { usage = "P0" })
      local _, _, code = hsm.tr31.unwrap(pin, A74)
      assert.equal("KEY_USAGE", code)
      local enc_only = hsm.key.import("AES_256", A256, { usage = "K1", mode = "E" })
      _, _, code = hsm.tr31.unwrap(enc_only, A74)
      assert.equal("KEY_USAGE", code)
      local h = hsm.key.import("HMAC_SHA256", A256)
      _, _, code = hsm.tr31.unwrap(h, A74)
      assert.equal("KEY_TYPE", code)
      _, _, code = hsm.tr31.wrap(h, hsm.key.generate("AES_128"), { usage = "D0", mode = "B" })
      assert.equal("KEY_TYPE", code)
    end)

    it("refuses a header that contradicts the key or its own algorithm", function()
      local k = hsm.key.generate("AES_128", { usage = "P0", mode = "E", exportability = "S" })
      local _, _, code = hsm.tr31.wrap(kbpk, k, { usage = "D0", mode = "B" })
      assert.equal("TR31_ATTRIBUTES", code)
      _, _, code = hsm.tr31.wrap(kbpk, k, { mode = "D" })
      assert.equal("TR31_ATTRIBUTES", code)
      _, _, code = hsm.tr31.wrap(kbpk, k, { exportability = "E" })
      assert.equal("TR31_ATTRIBUTES", code)
      _, _, code = hsm.tr31.wrap(kbpk, k, { algorithm = "T" })
      assert.equal("TR31_ALGORITHM", code)
      _, _, code = hsm.tr31.wrap(kbpk, hsm.key.generate("AES_128"), { usage = "P0", mode = "G" })
      assert.equal("TR31_MODE", code)
      _, _, code = hsm.tr31.wrap(kbpk, hsm.key.generate("AES_128"), { usage = "ZZ", mode = "E" })
      assert.equal("TR31_USAGE", code)
      _, _, code = hsm.tr31.wrap(kbpk, k, { version = "E" })
      assert.equal("TR31_VERSION", code)
      _, _, code = hsm.tr31.wrap(kbpk, k, { blocks = { { id = "K\1", data = "x" } } })
      assert.equal("TR31_OPT_BLOCK", code)
      _, _, code = hsm.tr31.wrap(kbpk, k, "D0000P0AE00E01")
      assert.equal("TR31_LENGTH", code)
    end)

    it("refuses, after the MAC verified, a key that cannot be loaded as labelled", function()
      -- Blocks made by psec under AES-128 KBPK 000102..0F: a 10-byte key labelled 'T' and a
      -- 16-byte key labelled 'D' (single DES), and an 'R' (RSA) key, which payhsm cannot hold
      -- as a key object.
      local k = hsm.key.import("AES_128", "000102030405060708090A0B0C0D0E0F")
      local _, msg, code = hsm.tr31.unwrap(k, "D0112D0TB00E00005F21DFBD41BFA0A33328B2CE90C8CBA4F5B133844CD54F8DCD9BD39099E03A5D54579D981FF566FD5A001AA99FD48BC2")
      assert.equal("TR31_KEY_LENGTH", code)
      assert.is_nil(msg:find("0123456789ABCDEF", 1, true))
      _, _, code = hsm.tr31.unwrap(k, "D0112D0DB00E0000C76CB91C3CC5022753B2F2195C599D3EB37984CDC614256C6CE392BEAA590D5357ECA3E91C81C3CAAFD4B7AD5366503A")
      assert.equal("TR31_KEY_LENGTH", code)
      _, _, code = hsm.tr31.unwrap(k, "D0080D0RB00E00006298136708E67AC42EC53328EFB6BFA9A9D8F474BB9C2731958A0FB0467EF0FD")
      assert.equal("TR31_ALGORITHM", code)
      -- parse still reads the RSA block's header
      assert.equal("R", hsm.tr31.parse("D0080D0RB00E00006298136708E67AC42EC53328EFB6BFA9A9D8F474BB9C2731958A0FB0467EF0FD").algorithm)
      -- and wrap refuses to relabel a DES key as TDES
      local des = hsm.key.import("DES", "0123456789ABCDEF", { usage = "D0", mode = "B" })
      _, _, code = hsm.tr31.wrap(hsm.key.import("TDES_2KEY", ("AB"):rep(16)), des, "B0000D0TB00E0000")
      assert.equal("TR31_ALGORITHM", code)
    end)

    it("unwraps a single-length key under algorithm 'T' as DES, flagged single_length [tr31-1]", function()
      for _, b in ipairs {
        "A0088M3TC00E000062C2C14D8785A01A9E8283525CA96F490D0CC6346FC7C2AC1E6FF354468910379AA5BBA6",
        "B0096M3TC00E0000B6CD513680EF255FC0DC590726FD0129A7CF6602E7F271631AB4EE7350642F11181AF4CC12F12FD9",
        "C0088M3TC00E0000A53CF172FE6562E7FDD5E6482E8925DA46F7FFE4D1BAD49EB33A9EDBB96A8A8D39F13A31",
      } do
        local kbpk2 = hsm.key.import("TDES_2KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
        local key, h = hsm.tr31.unwrap(kbpk2, b)
        assert.equal("DES", key.algorithm)
        assert.equal("EEEEEEEEEEEEEEEE", key:export())
        assert.equal("M3", key.usage)
        assert.equal("C", key.mode)
        assert.equal("T", h.algorithm)
        assert.is_true(h.single_length)
        assert.is_nil(h.weaker_kbpk)
        -- a flipped MAC byte is still refused before the key field is read
        local last = b:sub(-1) == "0" and "1" or "0"
        assert.equal("TR31_MAC_MISMATCH", select(3, hsm.tr31.unwrap(kbpk2, b:sub(1, -2) .. last)))
        -- wrap never makes such a block: a DES key is labelled 'D', and 'T' is refused
        assert.equal("TR31_ALGORITHM", select(3, hsm.tr31.wrap(kbpk2, key, "B0000M3TC00E0000")))
      end
      -- the same under an AES KBPK, version D (made by psec)
      local k = hsm.key.import("AES_128", "000102030405060708090A0B0C0D0E0F")
      local key, h = hsm.tr31.unwrap(k, "D0080D0TB00E00009EC15325E368C058D360732E22691BB3F903C6DD5223F99A9605668AA3734A91")
      assert.equal("DES", key.algorithm)
      assert.is_true(h.single_length)
      -- double-length keys carry no flag
      local _, h2 = hsm.tr31.unwrap(hsm.key.import("TDES_2KEY", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"),
        "A0088M3TC00E0000BE8AE894906D0B8F6FF555573A3907DC37FF13B12CE1CB8A97A97C8414AE1A8FF9183122")
      assert.is_nil(h2.single_length)
    end)

    it("raises on programming errors", function()
      local k = hsm.key.generate("AES_128")
      assert.has_error(function() hsm.tr31.wrap(kbpk, k, {}) end) -- no usage anywhere
      assert.has_error(function() hsm.tr31.wrap(kbpk, k, { usage = "P0" }) end) -- no mode
      assert.has_error(function() hsm.tr31.wrap(kbpk, k, 42) end)
      assert.has_error(function() hsm.tr31.wrap(kbpk, k, { usage = "P0", mode = "E" }, { padding = "00" }) end)
      assert.has_error(function() hsm.tr31.unwrap("not a key", A74) end)
      assert.has_error(function() hsm.tr31.parse(nil) end)
    end)
  end)
end)
