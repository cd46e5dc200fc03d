--- The bin/payhsm command line: run, repl, serve, and one subcommand per core operation
-- (lua/payhsm/commands.lua).
local commands = require "payhsm.commands"
local compat = require "payhsm.compat"
local usage = [[
usage: payhsm run FILE [ARGS...]              run a Lua script with payhsm on the path
       payhsm repl                            interactive session with `hsm` preloaded
       payhsm serve SYSTEM --config FILE      serve a simulator (gateway, pos, mupk) over HTTP(S)
]] .. commands.usage_lines() .. "\n       payhsm COMMAND --help                  the options of a command"

local function run(file, ...)
  if not file then io.stderr:write(usage, "\n") os.exit(2) end
  local chunk, err = loadfile(file)
  if not chunk then io.stderr:write("payhsm: ", err, "\n") os.exit(1) end
  arg = { [0] = file, ... }
  local args = compat.pack(...)
  local ok, e = xpcall(function() return chunk(compat.unpack(args, 1, args.n)) end, debug.traceback)
  if not ok then io.stderr:write("payhsm: ", tostring(e), "\n") os.exit(1) end
end

-- Readable values for the REPL: tables as sorted Lua-like literals (nested up to 4 levels),
-- strings quoted, keys and other userdata by their tostring (never key bytes).
local function pretty(v, indent, seen)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  indent, seen = indent or "", seen or {}
  if seen[v] then return "<cycle>" end
  if #indent >= 8 then return "{...}" end
  seen[v] = true
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
    return type(a) < type(b)
  end)
  if #keys == 0 then seen[v] = nil return "{}" end
  local inner, parts = indent .. "  ", {}
  for _, k in ipairs(keys) do
    local name = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. pretty(k, inner, seen) .. "]")
    if compat.is_integral(k) and k >= 1 and k <= #v then name = nil end
    parts[#parts + 1] = inner .. (name and (name .. " = ") or "") .. pretty(v[k], inner, seen)
  end
  seen[v] = nil
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

local function show(...)
  local n = select("#", ...)
  if n == 0 then return end
  local out = {}
  for i = 1, n do out[i] = pretty((select(i, ...))) end
  print(table.concat(out, "\t"))
end

local function repl()
  hsm = require "payhsm"
  print(("payhsm %s on %s (%s); `hsm` is loaded, Ctrl-D leaves"):format(hsm.version, _VERSION, hsm.openssl))
  local buffer = ""
  while true do
    io.write(buffer == "" and "hsm> " or "...> ")
    io.flush()
    local line = io.read("*l")
    if not line then io.write("\n") break end
    buffer = buffer == "" and line or buffer .. "\n" .. line
    local chunk, err = compat.load("return " .. buffer, "=repl")
    if not chunk then chunk, err = compat.load(buffer, "=repl") end
    if chunk then
      buffer = ""
      show(select(2, xpcall(chunk, debug.traceback)))
    elseif not err:match("<eof>'?$") then -- 5.1 quotes it: near '<eof>'
      buffer = ""
      print(err)
    end
  end
end

local cmd = ...
if cmd == "run" then
  run(select(2, ...))
elseif cmd == "repl" then
  repl()
elseif cmd == "serve" then
  local system, flag, file = select(2, ...)
  if not system or flag ~= "--config" or not file then io.stderr:write(usage, "\n") os.exit(2) end
  local ok, err = pcall(require("payhsm.server").serve, system, file)
  if not ok then io.stderr:write("payhsm: ", tostring(err), "\n") os.exit(1) end
elseif cmd and commands.commands[cmd] then
  os.exit(commands.main(cmd, { select(2, ...) }))
else
  io.stderr:write(usage, "\n")
  os.exit(cmd and 2 or 0)
end
