--- Runs every bench/<area>.lua and its C baseline build/bench/<area>, and prints
-- a Markdown table: Lua ops/s, C ops/s, and the ratio C/Lua (1.0 = no overhead).
-- Usage: lua5.4 bench/run.lua [area ...]   (make bench builds and runs it)
package.path = "./lua/?.lua;./lua/?/init.lua;./bench/?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local lib = require "lib"

local areas = { ... }
if #areas == 0 then
  -- the areas are those with a C baseline (bench/c/<area>.c); the other scripts in bench/
  -- (gateway_http, pos_http, load, load_pos) drive servers and run on their own
  for f in io.popen("ls bench/c/*.c"):lines() do
    areas[#areas + 1] = f:match("bench/c/(.-)%.c$")
  end
end

print("| case | Lua ops/s | ns/op | C ops/s | C/Lua |")
print("|---|---:|---:|---:|---:|")
for _, area in ipairs(areas) do
  local b = lib.new()
  dofile("bench/" .. area .. ".lua")(b)
  local c = {}
  local p = io.popen("build/bench/" .. area .. " 2>/dev/null")
  if p then
    for line in p:lines() do
      local name, ops = line:match("^(%S+)%s+([%d.]+)")
      if name then c[name] = tonumber(ops) end
    end
    p:close()
  end
  for _, r in ipairs(b.results) do
    local cops = c[r.name]
    print(("| %s | %.0f | %.0f | %s | %s |"):format(r.name, r.ops, r.ns,
      cops and ("%.0f"):format(cops) or "-", cops and ("%.2f"):format(cops / r.ops) or "-"))
  end
end
