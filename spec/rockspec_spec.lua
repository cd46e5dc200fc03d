-- rockspec/payhsm-scm-1.rockspec: lists every module, and `luarocks make --tree DIR` (Debian's
-- luarocks, no server needed) installs a payhsm that works from that tree alone.
local function load_rockspec()
  local f = assert(io.open("rockspec/payhsm-scm-1.rockspec"))
  local env = {}
  assert(load(f:read("*a"), "rockspec", "t", env))()
  f:close()
  return env
end

local function lines(cmd)
  local out = {}
  for l in io.popen(cmd):lines() do out[#out + 1] = l end
  return out
end

describe("rockspec", function()
  it("lists every Lua module under lua/payhsm and every C file in a module", function()
    local spec = load_rockspec()
    local mods = spec.build.modules
    for _, path in ipairs(lines("find lua/payhsm -name '*.lua' | sort")) do
      local name = path:gsub("^lua/", ""):gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.equal(path, mods[name], "module " .. name .. " missing or wrong in the rockspec")
    end
    local sources = {}
    for _, m in pairs(mods) do
      if type(m) == "table" then for _, s in ipairs(m.sources) do sources[s] = true end end
    end
    for _, c in ipairs(lines("ls csrc/*.c")) do assert.is_true(sources[c] == true, c .. " is in no module") end
  end)

  it("installs with luarocks make into a tree, and works from there", function()
    assert(os.execute("command -v luarocks >/dev/null"), "luarocks is not installed (make deps installs it)")
    local tree = os.tmpname()
    os.remove(tree)
    finally(function() os.execute("rm -rf " .. tree) end)
    local log = tree .. ".log"
    local ok = os.execute(("env -u LD_PRELOAD luarocks --lua-version 5.4 make rockspec/payhsm-scm-1.rockspec --tree %s >%s 2>&1")
      :format(tree, log))
    local f = io.open(log)
    local text = f:read("*a")
    f:close()
    os.remove(log)
    assert.is_true(ok == true, text)
    local p = io.popen(("cd /tmp && env -u LD_PRELOAD LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;' "
      .. "LUA_CPATH='%s/lib/lua/5.4/?.so;;' lua5.4 -e '"
      .. [[local h = require "payhsm"; require "payhsm.http"; require "payhsm.redis"; require "payhsm.gateway";]]
      .. [[io.write(h.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210"):kcv(), " ",]]
      .. [[package.searchpath("payhsm.core", package.cpath))' 2>&1]]):format(tree, tree, tree))
    local out = p:read("*a")
    p:close()
    assert.equal("08D7B4 " .. tree .. "/lib/lua/5.4/payhsm/core.so", out)
    -- the installed command line, from another directory, on the tree's paths only
    p = io.popen(("cd /tmp && printf '0123456789ABCDEFFEDCBA9876543210\\n' | env -u LD_PRELOAD "
      .. "LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;' LUA_CPATH='%s/lib/lua/5.4/?.so;;' "
      .. "%s/bin/payhsm kcv --key-identifier - --key-algorithm TDES_2KEY 2>&1"):format(tree, tree, tree, tree))
    out = p:read("*a")
    p:close()
    assert.equal('{"KeyCheckValue":"08D7B4","KeyCheckValueAlgorithm":"ANSI_X9_24"}\n', out)
  end)
end)
