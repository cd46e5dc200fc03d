--- make demo: runs every scenarios/*.lua in its own Lua 5.4 process with payhsm on
-- the path, shows what each prints, and ends with a one-line verdict per scenario.
-- A scenario fails by raising an error (assert) or exiting non-zero.
local lua = os.getenv("LUA") or "lua5.4"
local env = "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build/?.so;;' "
local files = {}
for f in io.popen("ls scenarios/*.lua 2>/dev/null"):lines() do files[#files + 1] = f end
table.sort(files, function(a, b)
  -- the tour of the core first, then the systems in name order
  if a:match("core_tour") then return true elseif b:match("core_tour") then return false end
  return a < b
end)

local verdicts, failed = {}, 0
for _, f in ipairs(files) do
  print(("=" ):rep(78))
  print("scenario " .. f)
  print(("="):rep(78))
  local p = io.popen(env .. lua .. " " .. f .. " 2>&1")
  for line in p:lines() do print("  " .. line) end
  local ok = p:close()
  verdicts[#verdicts + 1] = ("%-40s %s"):format(f, ok and "ok" or "FAILED")
  if not ok then failed = failed + 1 end
end
print(("="):rep(78))
for _, v in ipairs(verdicts) do print(v) end
print(("demo: %d scenarios, %d failed"):format(#files, failed))
os.exit(failed == 0 and 0 or 1)
