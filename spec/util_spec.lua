-- lua/payhsm/util.lua: base64 (RFC 4648 section 10 test vectors), UUIDs (RFC 9562 version 4
-- layout), UTC time stamps, Basic credentials (RFC 7617 section 2's example) and query
-- strings. The module is plain arithmetic that every Lua reads alike, so this spec runs
-- under each interpreter of make test-compat.
local util = require "payhsm.util"

describe("util", function()
  it("encodes and decodes the RFC 4648 test vectors", function()
    local vectors = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
      { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" } }
    for _, v in ipairs(vectors) do
      assert.equal(v[2], util.b64encode(v[1]))
      assert.equal(v[1], util.b64decode(v[2]))
      assert.equal(v[1], util.b64decode((v[2]:gsub("=", ""))))
    end
    assert.equal("-_8", util.b64url("\251\255"))
    assert.equal("\251\255", util.b64decode("-_8"))
    assert.equal("+/8=", util.b64encode("\251\255"))
  end)

  it("round-trips every byte and every length", function()
    local all = {}
    for b = 0, 255 do all[#all + 1] = string.char(b) end
    local s = table.concat(all)
    for n = 0, 64 do
      local part = s:sub(1, n) .. s:sub(256 - n)
      assert.equal(part, util.b64decode(util.b64encode(part)))
      assert.equal(part, util.b64decode(util.b64url(part)))
    end
  end)

  it("refuses what is not base64", function()
    for _, bad in ipairs { "Zg=a", "Z", "Zh==", "Zm9=", "Zm9v!", "Zm 9v", 42 } do
      assert.is_nil(util.b64decode(bad), tostring(bad))
    end
  end)

  it("makes version 4 UUIDs", function()
    local seen = {}
    for _ = 1, 200 do
      local u = util.uuid()
      assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", u)
      assert.is_nil(seen[u])
      seen[u] = true
    end
  end)

  it("parses and formats UTC time stamps", function()
    assert.equal(0, util.parse_time("1970-01-01T00:00:00Z"))
    assert.equal(-1, util.parse_time("1969-12-31T23:59:59Z"))
    assert.equal(951782400, util.parse_time("2000-02-29T00:00:00Z"))
    assert.equal(1765635930, util.parse_time("2025-12-13T14:25:30Z"))
    assert.equal("2025-12-13T14:25:30Z", util.format_time(1765635930))
    assert.equal(1765635930, util.parse_time("2025-12-13T14:25:30.250Z", { fraction = true }))
    for _, bad in ipairs { "2025-12-13T14:25:30.250Z", "2025-13-01T00:00:00Z", "2025-12-13 14:25:30Z",
      "2025-12-13T24:00:00Z", "2025-12-13T14:25:60Z", "2025-12-13T14:25:30", 1765635930 } do
      assert.is_nil(util.parse_time(bad), tostring(bad))
    end
  end)

  it("checks Basic credentials (RFC 7617: Aladdin / open sesame)", function()
    local users = { Aladdin = "open sesame" }
    assert.is_true(util.basic_auth_ok("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", users))
    assert.is_true(util.basic_auth_ok("basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", users))
    assert.is_false(util.basic_auth_ok("Basic QWxhZGRpbjpvcGVuIHNlc2FtZR==", users))
    assert.is_false(util.basic_auth_ok("Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==", users))
    assert.is_false(util.basic_auth_ok(nil, users))
    assert.is_false(util.basic_auth_ok("Basic " .. util.b64encode("Nobody:open sesame"), users))
  end)

  it("compares secrets of any lengths through equal-length HMACs (secret_equal)", function()
    assert.is_true(util.secret_equal("open sesame", "open sesame"))
    assert.is_true(util.secret_equal("", ""))
    assert.is_false(util.secret_equal("open sesame", "open sesam"))
    assert.is_false(util.secret_equal("open sesame", "open sesame!"))
    assert.is_false(util.secret_equal("open sesame", "Open sesame"))
    assert.is_false(util.secret_equal("a\0b", "a\0c"))
    assert.is_false(util.basic_auth_ok("Basic " .. util.b64encode("Aladdin:open sesame and more"), { Aladdin = "open sesame" }))
    assert.is_false(util.basic_auth_ok("Basic " .. util.b64encode("Aladdin:"), { Aladdin = "open sesame" }))
  end)

  it("turns hex into bytes, either case, and raises on what is not hex", function()
    assert.equal("Jo\0\255", util.hex_to_bin("4A6f00Ff"))
    assert.equal("", util.hex_to_bin(""))
    for _, bad in ipairs { "4A6", "4G", "4A 6F", 42 } do
      assert.has_error(function() util.hex_to_bin(bad) end)
    end
  end)

  it("reads query strings and passes argument tables through", function()
    assert.same({ merchantId = "123", note = "a b&c" }, util.query_table("merchantId=123&note=a+b%26c"))
    assert.same({ a = "1", flag = "" }, util.query_table("a=1&a=2&flag"))
    local t = { merchantId = "9" }
    assert.equal(t, util.query_table(t))
    assert.same({}, util.query_table(nil))
  end)
end)
