-- The bad-input table (spec/support/bad_input.lua; docs/bad-input.md is its Markdown):
-- every row's call returns nil or false with exactly the listed code (gateway rows: the
-- HTTP status and error.code), and nothing raises but the rows marked as misuse.
local bad_input = require "spec.support.bad_input"

local MODULES = { "key", "kcv", "cipher", "mac", "tr31", "pin", "card", "emv", "as2805", "zka", "envelope", "rotation",
  "rsa", "ec", "dukpt", "tr34", "gateway HTTP", "pos HTTP", "mupk HTTP" }

describe("bad input table", function()
  local env = bad_input.env()

  it("has rows for every module", function()
    local seen = {}
    for _, row in ipairs(bad_input.rows) do seen[row[1]] = (seen[row[1]] or 0) + 1 end
    for _, m in ipairs(MODULES) do assert.is_true((seen[m] or 0) > 0, "no rows for " .. m) end
    for m in pairs(seen) do
      local known = false
      for _, n in ipairs(MODULES) do known = known or n == m end
      assert.is_true(known, "unknown module " .. m)
    end
  end)

  for _, module in ipairs(MODULES) do
    describe(module, function()
      for _, row in ipairs(bad_input.rows) do
        if row[1] == module then
          local want = row.raises and ("raises '" .. row.raises .. "'") or
            module:match(" HTTP$") and ("%d %s"):format(row[4], row[5]) or row[4]
          it(("%s -> %s"):format(row[2], want), function()
            local out = bad_input.run(row, env)
            if row.raises then
              assert.is_string(out.raised, "expected a raise (misuse)")
              assert.is_truthy(out.raised:find(row.raises, 1, true), out.raised)
            elseif module:match(" HTTP$") then
              assert.is_nil(out.raised, out.raised)
              assert.equal(row[4], out.status, out.body)
              assert.equal(row[5], out.code, out.body)
            else
              assert.is_nil(out.raised, out.raised)
              local r = out.results
              assert.is_true(r[1] == nil or r[1] == false, "expected nil or false, got " .. tostring(r[1]))
              assert.is_string(r[2], "message")
              assert.matches("^[%w_]+[%.:]", r[2]) -- starts with the function's name
              assert.equal(row[4], r[3], r[2])
            end
          end)
        end
      end
    end)
  end
end)

describe("docs/bad-input.md", function()
  it("is what tools/bad_input_table.lua prints from the table", function()
    local p = io.popen("env -u LD_PRELOAD lua5.4 tools/bad_input_table.lua")
    local printed = p:read("*a")
    p:close()
    local f = assert(io.open("docs/bad-input.md"))
    local stored = f:read("*a")
    f:close()
    assert.equal(printed, stored, "run: lua5.4 tools/bad_input_table.lua > docs/bad-input.md")
  end)

  it("is linked from the README, which does not copy its rows", function()
    local f = assert(io.open("README.md"))
    local readme = f:read("*a")
    f:close()
    local f2 = assert(io.open("docs/bad-input.md"))
    local stored = f2:read("*a")
    f2:close()
    assert.is_truthy(readme:find("](docs/bad-input.md)", 1, true), "link docs/bad-input.md from README.md")
    local row = stored:match("\n(| key | [^\n]+)\n")
    assert.is_truthy(row, "docs/bad-input.md has no key row")
    assert.is_falsy(readme:find(row, 1, true), "README.md copies a row of docs/bad-input.md: link it instead")
    assert.is_falsy(readme:find("| module | input | result code |", 1, true), "README.md copies the bad-input table")
  end)

  it("opens with a title and what it covers", function()
    local f = assert(io.open("docs/bad-input.md"))
    local stored = f:read("*a")
    f:close()
    local head = "# Bad input\n\nEvery class of bad input the specs try"
    assert.equal(head, stored:sub(1, #head))
  end)
end)
