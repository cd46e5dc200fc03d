--- The bin/payhsm command line: run, repl, serve, and one subcommand per core operation
-- (lua/payhsm/commands.lua).
local commands = require "payhsm.commands"
local compat = require "payhsm.compat"
local cliutil = require "payhsm.cliutil"
local usage = [[
usage: payhsm run FILE [ARGS...]              run a Lua script with payhsm on the path
       payhsm repl                            interactive session with `hsm` preloaded
       payhsm serve SYSTEM --config FILE      serve a simulator (gateway, pos, mupk, aws) over HTTP(S)
]] .. commands.usage_lines() .. "\n       payhsm COMMAND --help                  the options of a command"

local HELP = {
  run = [[
usage: payhsm run FILE [ARGS...]
Runs the Lua script FILE with payhsm on the path (require "payhsm"); ARGS are its `...`
and `arg`. A script that raises exits 1 with the error and its traceback on stderr.]],
  repl = [[
usage: payhsm repl
An interactive Lua session with `hsm = require "payhsm"` loaded. An expression prints its
value (`= expr` too); tables print as sorted literals, keys by their check value.
  help              the areas of hsm and their functions; help(hsm.pin) lists one area
  traceback         the traceback of the last error (errors print as one line)
  Tab               completes hsm.* names (with rlwrap: line editing and history too)
  Ctrl-C            drops the current input, even within a multi-line one
  Ctrl-D            leaves
Lines holding 16 or more hex digits are never written to the history file.]],
  serve = [[
usage: payhsm serve SYSTEM --config FILE [--workers N]
Serves a simulator over HTTP (HTTPS with tls) until SIGINT or SIGTERM, which stop it
cleanly (requests in flight finish, the store closes, exit 0). FILE is a Lua chunk
returning a table; paths in it (tls files, sqlite store) are relative to FILE.
--workers N: N processes serve the one port, each with its own event loop and store
connection (the store must be sqlite or redis); a worker that dies is started again,
and SIGTERM to the first process stops them all.
Every system reads:
  listen            "IPv4:port" (default "127.0.0.1:8443")
  tls               {cert = PEM file, key = PEM file, client_ca = PEM file (mutual TLS)}
  store             {backend = "sqlite" (default) | "memory" | "redis", path = file, url =, prefix =}
  basic_auth        {user = "password", ...}
  storage_key       {algorithm =, hex =}: the local master key the store's keys are wrapped under
  tick_interval     seconds between timed work (mupk webhooks; default 1)
SYSTEM gateway (Fiserv's host-to-host MSK API):
  master_keys       {{label =, key_type = "PAN" | "PIN", algorithm =, hex =}, ...}
  gateway_keys      {pan = {...}, pin = {...}}: the gateway's own keys (default: generated once)
  min_import_interval  seconds between two imports of one label
SYSTEM pos (viopay's POS key guide):
  registration_kbpk, devices, merchant, issuer, key_set_years (or key_set_lifetime in s),
  request_signature ("body" | "bound"), pan_key ("msk" | "tdk"), renew_before_seconds,
  request_id_ttl, chunk_size, cache_size
SYSTEM mupk (Commerce Hub's multi-use public keys):
  merchants, key_lifetime, max_key_lifetime, max_offline_amount, webhook_url,
  webhook_hours, webhook_retry, webhook_timeout, webhook_cafile
Examples: examples/gateway.conf.lua, examples/pos.conf.lua, examples/mupk.conf.lua;
examples/make-test-pki.sh makes a test CA with server and client certificates.]],
}

local function wants_help(...)
  for i = 1, select("#", ...) do
    local a = select(i, ...)
    if a == "--help" or a == "-h" then return true end
  end
  return false
end

local function run(file, ...)
  if not file then io.stderr:write(HELP.run, "\n") os.exit(2) end
  local chunk, err = loadfile(file)
  if not chunk then io.stderr:write("payhsm: ", err, "\n") os.exit(1) end
  arg = { [0] = file, ... }
  local args = compat.pack(...)
  local ok, e = xpcall(function() return chunk(compat.unpack(args, 1, args.n)) end, debug.traceback)
  if not ok then io.stderr:write("payhsm: ", tostring(e), "\n") os.exit(1) end
end

-- ---- the REPL ---------------------------------------------------------------------
-- Readable values: tables as sorted Lua-like literals (nested up to 4 levels), strings
-- quoted, keys and other userdata by their tostring (never key bytes).
local function pretty(v, indent, seen)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__tostring then return tostring(v) end
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

-- The functions of hsm by area, with their signatures from the source comments
-- (payhsm.apidoc, generated by tools/apidoc.lua like docs/API-reference.md).
local function help_text(hsm, t)
  local sigs = {}
  for _, e in ipairs(require "payhsm.apidoc") do
    local name = e[1]:match("^([%w_.:]+)%(")
    if name then sigs[name] = e end
  end
  local areas = {}
  for k, v in pairs(hsm) do
    if type(v) == "table" and k ~= "core" then areas[#areas + 1] = k end
  end
  table.sort(areas)
  local function line(name)
    local e = sigs[name]
    if not e then return "  " .. name .. "(...)" end
    return "  " .. e[1] .. (e[2] ~= "" and ("\n      " .. e[2]) or "")
  end
  if t == nil then
    local out = { "hsm = require \"payhsm\" " .. tostring(hsm.version) .. ". Areas (help(hsm.AREA) lists one):" }
    out[#out + 1] = "  " .. table.concat(areas, ", ")
    local fns = {}
    for k, v in pairs(hsm) do if type(v) == "function" then fns[#fns + 1] = k end end
    table.sort(fns)
    out[#out + 1] = "Functions:"
    for _, k in ipairs(fns) do out[#out + 1] = line(k) end
    out[#out + 1] = "`= expr` prints a value; `traceback` shows the last error's; Ctrl-C drops the line; Ctrl-D leaves."
    return table.concat(out, "\n")
  end
  if type(t) == "function" then
    for k, v in pairs(hsm) do if v == t then return line(k) end end
    for _, a in ipairs(areas) do
      for k, v in pairs(hsm[a]) do if v == t then return line(a .. "." .. k) end end
    end
    return "no help for this function"
  end
  for _, a in ipairs(areas) do
    if hsm[a] == t then
      local names = {}
      for k, v in pairs(t) do if type(v) == "function" then names[#names + 1] = k end end
      table.sort(names)
      local out = { "hsm." .. a .. ":" }
      for _, k in ipairs(names) do out[#out + 1] = line(a .. "." .. k) end
      local methods = {}
      for name in pairs(sigs) do
        if name:match("^" .. a .. ":") then methods[#methods + 1] = name end
      end
      table.sort(methods)
      for _, m in ipairs(methods) do out[#out + 1] = line(m) end
      return table.concat(out, "\n")
    end
  end
  return "help(hsm.AREA) takes one of: hsm." .. table.concat(areas, ", hsm.")
end

-- The words Tab completes (for rlwrap -f): hsm, its areas and their functions.
local function completions()
  local hsm = require "payhsm"
  local words = { "hsm", "help", "traceback" }
  for k, v in pairs(hsm) do
    words[#words + 1] = "hsm." .. k
    if type(v) == "table" and k ~= "core" then
      for f in pairs(v) do words[#words + 1] = "hsm." .. k .. "." .. f end
    end
  end
  table.sort(words)
  return table.concat(words, "\n")
end

local function repl()
  local core = require "payhsm.core"
  hsm = require "payhsm"
  local last_traceback = "no error yet"
  local function word(text_fn, call)
    return setmetatable({}, { __tostring = text_fn, __call = call })
  end
  help = word(function() return help_text(hsm) end, function(_, t) print(help_text(hsm, t)) end)
  traceback = word(function() return last_traceback end, function() print(last_traceback) end)
  local function on_error(e)
    last_traceback = debug.traceback(tostring(e), 2):gsub("\n%s*%[C%]: in function 'xpcall'.*", "")
    return e
  end
  -- Ctrl-C raises "interrupted" in the running code (a computation, or the read at the
  -- prompt), and the handler stays: the next Ctrl-C does the same.
  core.catch_signals({ "INT" }, true)
  print(("payhsm %s on %s (%s); `hsm` is loaded, `help` lists it, Ctrl-D leaves"):format(hsm.version, _VERSION,
    hsm.openssl))
  local buffer = ""
  local function step()
    io.write(buffer == "" and "hsm> " or "...> ")
    io.flush()
    local line = io.read("*l")
    if line == nil then
      if core.caught_signal() then error("interrupted", 0) end
      return false
    end
    if buffer == "" then line = line:gsub("^%s*=", "return ", 1) end
    buffer = buffer == "" and line or buffer .. "\n" .. line
    local chunk, err = compat.load("return " .. buffer, "=repl")
    if not chunk then chunk, err = compat.load(buffer, "=repl") end
    if chunk then
      buffer = ""
      -- LuaJIT runs no hooks in compiled code: the session's own code stays interpreted,
      -- so Ctrl-C can stop a loop (the crypto runs in C either way)
      if rawget(_G, "jit") then jit.off(chunk, true) end
      local r = compat.pack(xpcall(chunk, on_error))
      if r[1] then show(compat.unpack(r, 2, r.n))
      else print("error: " .. cliutil.clean(r[2])) end
    elseif not err:match("<eof>'?$") then -- 5.1 quotes it: near '<eof>'
      buffer = ""
      print("error: " .. err)
    end
    return true
  end
  while true do
    local ok, more = pcall(step)
    if ok and not more then io.write("\n") break end
    if not ok then -- Ctrl-C: drop the input, a fresh prompt
      core.caught_signal()
      buffer = ""
      io.write("\n")
    end
  end
end

local cmd = ...
if cmd == "--help" or cmd == "-h" or cmd == "help" then
  io.stdout:write(usage, "\n")
  os.exit(0)
elseif (cmd == "run" or cmd == "repl" or cmd == "serve") and wants_help(select(2, ...)) then
  if cmd ~= "run" or select(2, ...) == "--help" or select(2, ...) == "-h" then
    io.stdout:write(HELP[cmd], "\n")
    os.exit(0)
  end
end
if cmd == "run" then
  run(select(2, ...))
elseif cmd == "repl" then
  if select("#", ...) > 1 then io.stderr:write(HELP.repl, "\n") os.exit(2) end
  repl()
elseif cmd == "completions" then
  io.stdout:write(completions(), "\n")
elseif cmd == "serve" then
  local args = { select(2, ...) }
  local system, file, workers, bad = args[1], nil, nil, #args < 3
  for i = 2, #args, 2 do
    if args[i] == "--config" and args[i + 1] and not file then file = args[i + 1]
    elseif args[i] == "--workers" and not workers and tostring(args[i + 1]):match("^%d+$")
      and tonumber(args[i + 1]) >= 1 and tonumber(args[i + 1]) <= 64 then workers = tonumber(args[i + 1])
    else bad = true end
  end
  if not system or not file or bad then
    io.stderr:write(HELP.serve, "\n")
    os.exit(2)
  end
  local server = require "payhsm.server"
  local ok, err = pcall(server.serve, system, file, { workers = workers })
  -- a config error may quote key values (an unknown option named after one): redacted
  if not ok then io.stderr:write("payhsm: ", server.redact(err), "\n") os.exit(1) end
  os.exit(0)
elseif cmd and commands.commands[cmd] then
  os.exit(commands.main(cmd, { select(2, ...) }))
elseif cmd == nil then
  io.stderr:write(usage, "\n")
  os.exit(2)
else
  local names = { "run", "repl", "serve" }
  for _, k in ipairs(commands.names()) do names[#names + 1] = k end
  io.stderr:write(("payhsm: unknown command %s (expected one of: %s; payhsm --help shows the usage) [CLI_USAGE]\n")
    :format(cmd:match("^[%w_-]+$") and #cmd <= 20 and ("'" .. cmd .. "'") or "(not shown)", table.concat(names, ", ")))
  os.exit(2)
end
