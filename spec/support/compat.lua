--- busted helper (see .busted): lets the specs, written for Lua 5.3/5.4, run unchanged
-- on Lua 5.1, 5.2 and LuaJIT 2.1, so the same suite checks payhsm under each Lua a host
-- may embed. It touches the test process only (the library itself is version-neutral,
-- lua/payhsm/compat.lua); on 5.3 and 5.4 it does nothing.
if _VERSION == "Lua 5.3" or _VERSION == "Lua 5.4" then return end

-- file:read / io.read / io.lines formats without the '*' that 5.1 requires
local function fix(fmt)
  if fmt == "a" or fmt == "l" or fmt == "n" or fmt == "L" then return "*" .. fmt end
  return fmt
end
local function fix_all(...)
  local n, t = select("#", ...), { ... }
  for i = 1, n do t[i] = fix(t[i]) end
  return unpack(t, 1, n)
end
local file_mt = getmetatable(io.stdout).__index
local raw_read, raw_lines = file_mt.read, file_mt.lines
file_mt.read = function(f, ...) return raw_read(f, fix_all(...)) end
file_mt.lines = function(f, ...) return raw_lines(f, fix_all(...)) end
local raw_io_read, raw_io_lines = io.read, io.read and io.lines
io.read = function(...) return raw_io_read(fix_all(...)) end
io.lines = function(name, ...) return raw_io_lines(name, fix_all(...)) end

table.unpack = table.unpack or unpack
table.pack = table.pack or function(...) return { n = select("#", ...), ... } end

-- os.execute and popen():close() report the exit status as 5.2+ do: true|nil, "exit", code
if _VERSION == "Lua 5.1" then
  local raw_execute = os.execute
  os.execute = function(cmd)
    if cmd == nil then return raw_execute() ~= 0 end
    local st, how, n = raw_execute(cmd)
    if type(st) ~= "number" then return st, how, n end -- a LuaJIT built with 5.2 compatibility
    local code = st >= 256 and math.floor(st / 256) or st
    if code == 0 then return true, "exit", 0 end
    return nil, "exit", code
  end
  -- 5.1's pclose drops the status: the command echoes it after its output, behind a
  -- marker the reader strips
  local raw_popen = io.popen
  local MARK = "\n\0payhsm-rc="
  io.popen = function(cmd, mode)
    if mode ~= nil and mode ~= "r" then return raw_popen(cmd, mode) end
    local p, err = raw_popen("{ " .. cmd .. "\n}; printf '\\n\\0payhsm-rc=%d' $?", "r")
    if not p then return nil, err end
    local buf, pos, rc
    local function load_all()
      if buf then return end
      local all = raw_read(p, "*a")
      local at = all:find(MARK, 1, true)
      rc = at and tonumber(all:sub(at + #MARK)) or 0
      buf, pos = at and all:sub(1, at - 1) or all, 1
    end
    local proxy = {}
    function proxy:read(...)
      load_all()
      local out, n = {}, select("#", ...)
      if n == 0 then n = 1 end
      for i = 1, n do
        local fmt = fix((select(i, ...)) or "*l")
        if fmt == "*a" then
          out[i] = buf:sub(pos)
          pos = #buf + 1
        elseif fmt == "*l" or fmt == "*L" then
          if pos > #buf then out[i] = nil break end
          local nl = buf:find("\n", pos, true)
          local stop = nl or #buf
          out[i] = buf:sub(pos, fmt == "*L" and stop or (nl and nl - 1 or stop))
          pos = stop + 1
        else
          error("spec compat: popen read format " .. tostring(fmt) .. " is not supported", 2)
        end
      end
      return unpack(out, 1, n)
    end
    function proxy:lines(fmt)
      return function() return proxy:read(fmt or "*l") end
    end
    function proxy:close()
      load_all()
      p:close()
      if rc == 0 then return true, "exit", 0 end
      return nil, "exit", rc
    end
    return proxy
  end
end

-- load(text [, chunkname [, mode [, env]]]) as on 5.2+
if _VERSION == "Lua 5.1" then
  local raw_load = load
  load = function(chunk, name, mode, env)
    local f, err
    if type(chunk) == "string" then f, err = loadstring(chunk, name) else f, err = raw_load(chunk, name) end
    if f and env then setfenv(f, env) end
    return f, err
  end
end
