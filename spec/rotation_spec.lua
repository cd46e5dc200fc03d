-- Session-key rotation state (csrc/rotation.c), as msk-gateway-fiserv.txt describes it:
-- three static key IDs with versions; a new key goes into the ID with the lowest version,
-- which becomes the highest; the others move down; the highest version is active.
local hsm = require "payhsm"

describe("rotation", function()
  describe("import()", function()
    it("fills the IDs in order, then replaces the oldest key", function()
      local s = hsm.rotation.new { ids = { "1001", "1002", "1003" } }
      assert.is_nil(s:active())
      assert.same({}, s:list())
      local want = { "1001", "1002", "1003", "1001", "1002", "1003", "1001" }
      for i, id in ipairs(want) do
        local got, version = s:import { kcv = "K" .. i }
        assert.equal(id, got)
        assert.equal("3.0", version)
        local aid, entry, aver = s:active()
        assert.equal(id, aid)
        assert.equal("K" .. i, entry.kcv)
        assert.equal("3.0", aver)
      end
    end)

    it("reproduces Fiserv's Get Keys example: 25 -> 3.0, 26 -> 1.0, 27 -> 2.0", function()
      -- Fiserv's host-to-host MSK API, "Retrieve All Session Keys": after a fourth import into
      -- IDs 25, 26, 27 the versions are 25 = 3.0 (active), 27 = 2.0, 26 = 1.0.
      local s = hsm.rotation.new { ids = { "25", "26", "27" } }
      for _, kcv in ipairs { "AAAAAA", "2990D4", "E3AFC6", "0DDC0A" } do s:import { kcv = kcv } end
      local list = s:list()
      assert.same({
        { id = "25", version = "3.0", entry = { kcv = "0DDC0A" } },
        { id = "27", version = "2.0", entry = { kcv = "E3AFC6" } },
        { id = "26", version = "1.0", entry = { kcv = "2990D4" } },
      }, list)
      local entry, version = s:get("26")
      assert.equal("2990D4", entry.kcv)
      assert.equal("1.0", version)
      assert.is_nil(s:get("99"))
    end)

    it("keeps versions a permutation of 1..n at every step", function()
      local s = hsm.rotation.new { ids = { "a", "b", "c" } }
      for i = 1, 20 do
        s:import { n = tostring(i) }
        local seen = {}
        for _, e in ipairs(s:ids()) do seen[e.version] = true end
        assert.same({ ["1.0"] = true, ["2.0"] = true, ["3.0"] = true }, seen)
      end
    end)

    it("stores a copy of the entry and hands out copies", function()
      local s = hsm.rotation.new { ids = { "1", "2", "3" } }
      local e = { kcv = "123456" }
      s:import(e)
      e.kcv = "changed"
      local _, got = s:active()
      assert.equal("123456", got.kcv)
      got.kcv = "changed again"
      assert.equal("123456", select(2, s:active()).kcv)
    end)

    it("raises on programming errors", function()
      assert.has_error(function() hsm.rotation.new {} end)
      assert.has_error(function() hsm.rotation.new { ids = {} } end)
      assert.has_error(function() hsm.rotation.new { ids = { "1", "1" } } end)
      assert.has_error(function() hsm.rotation.new { ids = { "1", 2 } } end)
      local s = hsm.rotation.new { ids = { "1", "2", "3" } }
      assert.has_error(function() s:import { kcv = 5 } end)
      assert.has_error(function() s:import "x" end)
      -- a failed import changes nothing
      assert.is_nil(s:active())
    end)
  end)

  describe("snapshot() and restore()", function()
    it("round-trips every slot, version and field, including awkward bytes", function()
      local s = hsm.rotation.new { ids = { "1001", "1002", "1003" } }
      s:import { kcv = "AAAAAA", block = "D0144P0AE00E0000..." }
      s:import { kcv = "BBBBBB", note = "comma, equals = and\nnewline" }
      s:import {}
      s:import { kcv = "DDDDDD" }
      local snap = s:snapshot()
      local r = assert(hsm.rotation.restore(snap))
      assert.same(s:list(), r:list())
      assert.same(s:ids(), r:ids())
      assert.equal(snap, r:snapshot())
      -- and restoring continues the rotation where it left off
      assert.equal(s:import { kcv = "E" }, r:import { kcv = "E" })
    end)

    it("keeps empty slots empty", function()
      local s = hsm.rotation.new { ids = { "1001", "1002", "1003" } }
      s:import { kcv = "AAAAAA" }
      local r = hsm.rotation.restore(s:snapshot())
      assert.equal(1, #r:list())
      assert.is_nil(r:get("1002"))
      assert.equal("1002", (r:import { kcv = "B" }))
    end)

    local good = hsm.rotation.new { ids = { "1001", "1002", "1003" } }
    good:import { kcv = "AAAAAA" }
    local snap = good:snapshot()
    local bad = {
      { "empty", "" },
      { "wrong magic", "payhsm-rotation 2 3\n" .. snap:match("\n(.*)") },
      { "no count", "payhsm-rotation 1 \n" },
      { "zero IDs", "payhsm-rotation 1 0\n" },
      { "too many IDs", "payhsm-rotation 1 99\n" },
      { "missing slot", snap:match("^(.*\n).-\n$") },
      { "trailing data", snap .. "x" },
      { "duplicate version", snap:gsub(" 1 ", " 2 ", 1) },
      { "version out of range", snap:gsub(" 3 ", " 4 ", 1) },
      { "ID not hex", snap:gsub("31303031", "3130303G", 1) },
      { "empty ID", snap:gsub("31303032 ", " ", 1) },
      { "duplicate ID", snap:gsub("31303032", "31303031", 1) },
      { "field not hex", snap:gsub("=414141414141", "=41414141414", 1) },
      { "field without =", snap:gsub("6B6376=", "6B6376", 1) },
      { "trailing comma", snap:gsub("414141414141\n", "414141414141,\n", 1) },
      { "NUL in a field", snap:gsub("=414141414141", "=004141414141", 1) },
    }
    for _, c in ipairs(bad) do
      it(("refuses a snapshot with %s -> ROTATION_SNAPSHOT"):format(c[1]), function()
        local r, msg, code = hsm.rotation.restore(c[2])
        assert.is_nil(r)
        assert.equal("ROTATION_SNAPSHOT", code)
        assert.matches("^rotation.restore: ", msg)
      end)
    end
  end)
end)
