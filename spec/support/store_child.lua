-- A second process for spec/store_spec.lua (run from the repository root).
--   lua5.4 spec/support/store_child.lua count <backend> <target> <key> <n>
--       n update() increments of the decimal counter at key
--   lua5.4 spec/support/store_child.lua fill sqlite <path>
--       puts key<i> = value<i> for i = 1, 2, ... forever, printing each key once put returned
-- backend: sqlite (target = file path) or redis (target = url, prefix from PAYHSM_PREFIX).
if not os.getenv("LUA_CPATH") then -- else the caller chose the build (spec/support/interp.lua)
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  package.cpath = "./build/?.so;" .. package.cpath
end

local mode, backend, target = arg[1], arg[2], arg[3]

local function open()
  if backend == "sqlite" then
    return require("payhsm.store.sqlite").new { path = target }
  elseif backend == "redis" then
    return require("payhsm.store.redis").new { url = target, prefix = os.getenv("PAYHSM_PREFIX") }
  end
  error("store_child: unknown backend " .. tostring(backend))
end

local store = open()
if mode == "count" then
  local key, n = arg[4], tonumber(arg[5])
  for _ = 1, n do
    store:update(key, function(old) return tostring((tonumber(old) or 0) + 1) end)
  end
elseif mode == "fill" then
  local i = 0
  while true do
    i = i + 1
    store:put("key" .. i, "value" .. i)
    io.stdout:write("key", i, "\n")
    io.stdout:flush()
  end
else
  error("store_child: unknown mode " .. tostring(mode))
end
store:close()
