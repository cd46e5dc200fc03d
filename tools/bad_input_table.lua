--- Prints the bad-input table (spec/support/bad_input.lua) as Markdown: module, input,
-- result code. Run from the repository root:
--   lua5.4 tools/bad_input_table.lua > docs/bad-input.md
-- The table is data only; spec/bad_input_spec.lua is what checks it against the code.
package.path = "./?.lua;./lua/?.lua;./lua/?/init.lua;" .. package.path
local rows = require("spec.support.bad_input").rows

local function cell(s) return (tostring(s):gsub("|", "\\|")) end

local out = {
  "# Bad input",
  "",
  "Every class of bad input the specs try, per module, and what it gets: library calls return",
  "`nil, message, CODE` (verifications `false, message, CODE`); requests to the HTTP services",
  "(gateway, POS, multi-use public keys) an HTTP status and error code; misuse (an argument no",
  "caller should pass) raises. The codes are explained in",
  "[keys-and-crypto.md](keys-and-crypto.md#error-codes) and, for the HTTP services, on each",
  "service's page. Generated from `spec/support/bad_input.lua` by `tools/bad_input_table.lua`",
  "(`make docs`); `spec/bad_input_spec.lua` walks it.",
  "",
  "| module | input | result code |",
  "|---|---|---|",
}
for _, row in ipairs(rows) do
  local result
  if row.raises then
    result = ("raises (misuse): `%s`"):format(row.raises)
  elseif row[1]:match(" HTTP$") then
    result = ("HTTP %d, `%s`"):format(row[4], row[5])
  else
    result = ("`%s`"):format(row[4])
  end
  out[#out + 1] = ("| %s | %s | %s |"):format(cell(row[1]), cell(row[2]), cell(result))
end
io.write(table.concat(out, "\n"), "\n")
