--- Generates the API reference (docs/API-reference.md) from the source comments:
--   * C: every comment block that starts with a Lua call signature (` * name(args) -> ...`)
--     and is followed by the function that implements it;
--   * Lua: every `---` comment directly above a `function M.name(...)`, `function X:name(...)`.
-- Run from the repository root:  lua5.4 tools/apidoc.lua > docs/API-reference.md
-- (spec/apidoc_spec.lua checks that the file is current).
local function lines_of(cmd)
  local out = {}
  local p = io.popen(cmd)
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

local out = {
  "# payhsm API reference",
  "",
  "Every Lua-callable function of payhsm, with its arguments, results and error codes: the API",
  "a program relies on. Generated from the source comments by `tools/apidoc.lua` (`make docs`);",
  "the pages of the manual (see the README's contents) explain each area. C functions are",
  "reached through `require \"payhsm\"` (which re-exports `payhsm.core`) or their own modules",
  "(`payhsm.http`, `payhsm.redis`).",
  "",
}

-- ---- C ----------------------------------------------------------------------------
out[#out + 1] = "## C modules (`csrc/`)"
out[#out + 1] = ""
for _, path in ipairs(lines_of("ls csrc/*.c")) do
  local text = read(path)
  local entries = {}
  -- a comment that ends right above a Lua-callable function
  local blocks = {}
  local pos = 1
  while true do -- each comment ending right above a function taking lua_State *L
    local e1, e2 = text:find("%*/\nstatic int [%w_]+%(lua_State %*L%)", pos)
    if not e1 then break end
    local start
    local from = 1
    while true do
      local s0 = text:find("/*", from, true)
      if not s0 or s0 > e1 then break end
      start, from = s0, s0 + 2
    end
    blocks[#blocks + 1] = text:sub(start + 2, e1 - 1)
    pos = e2 + 1
  end
  for _, block in ipairs(blocks) do
    do
      local body = {}
      for l in (block .. "\n"):gmatch("([^\n]*)\n") do
        l = l:gsub("^%s*%*?%s?", ""):gsub("%s+$", "")
        if l ~= "" then body[#body + 1] = l end
      end
      local sig = body[1] or ""
      if sig:match("^[%w_.:]+%b()") then
        table.remove(body, 1)
        local rest = table.concat(body, " "):gsub("%s+", " ")
        local s1, s2 = sig:match("^(.-%b()[^:]*)(:.*)$") -- "f(x) -> y: text" on one line
        if s1 and not s1:match("%->%s*$") then sig, rest = s1, s2:sub(2) .. " " .. rest end
        entries[#entries + 1] = { sig = sig:gsub("%s+$", ""), text = rest:gsub("^%s+", ""):gsub("%s+$", "") }
      end
    end
  end
  if #entries > 0 then
    local head = text:match("^/%*\n %* ([^\n]+)")
    out[#out + 1] = ("### `%s`%s"):format(path, head and (" — " .. head:gsub("^[%w_.]+ %- ", "")) or "")
    out[#out + 1] = ""
    for _, e in ipairs(entries) do
      out[#out + 1] = ("- `%s`%s"):format(e.sig, e.text ~= "" and (": " .. e.text) or "")
    end
    out[#out + 1] = ""
  end
end

-- ---- Lua --------------------------------------------------------------------------
out[#out + 1] = "## Lua modules (`lua/payhsm/`)"
out[#out + 1] = ""
for _, path in ipairs(lines_of("find lua/payhsm -name '*.lua' | sort")) do
  local entries, doc = {}, nil
  local first
  for l in io.lines(path) do
    if not first then first = l:match("^%-%-%-%s*(.+)") or "" end
    local d = l:match("^%-%-%-%s?(.*)$")
    if d then
      doc = doc and (doc .. " " .. d) or d
    elseif doc and l:match("^%-%-") then
      doc = doc .. " " .. l:gsub("^%-%-%s?", "")
    else
      local name, args = l:match("^function ([%w_.:]+)(%b())")
      if name and doc and not name:match("[.:]_") then
        entries[#entries + 1] = { sig = name .. args, text = doc:gsub("%s+", " ") }
      end
      doc = nil
    end
  end
  local mod = path:gsub("^lua/", ""):gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
  if #entries > 0 then
    out[#out + 1] = ("### `%s` (`%s`)%s"):format(mod, path, first ~= "" and (" — " .. first) or "")
    out[#out + 1] = ""
    for _, e in ipairs(entries) do out[#out + 1] = ("- `%s`: %s"):format(e.sig, e.text) end
    out[#out + 1] = ""
  end
end

io.write(table.concat(out, "\n"))
