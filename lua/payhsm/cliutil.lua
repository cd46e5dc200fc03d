--- What the bin/payhsm subcommands share: usage and input failures, secrets read from
-- files, the environment or stdin, and key files that keep what a key may do.
--
-- A key file holds one line: `ALGORITHM:HEX`, then the key's TR-31 attributes as
-- `name=value` words (ANSI X9.143 header fields: usage = key usage, mode = mode of use,
-- version = key version, exportability):
--   TDES_2KEY:0123...3210 usage=P0 mode=E
-- A file with no attributes (the older `ALGORITHM:HEX` or bare `HEX`) means "any use".
-- The algorithm name is read in either case. Files are written with mode 0600, never
-- over an existing file unless --force, never through a symlink (core.write_secret_file).
local hsm = require "payhsm"
local core = require "payhsm.core"

local M = {}

local Fail = {}
M.Fail = Fail
function Fail.__tostring(e) return e.msg end

--- fail(code, fmt, ...): raises a CLI failure (CLI_USAGE: exit 2; any other code: exit 1).
function M.fail(code, msg, ...) error(setmetatable({ code = code, msg = msg:format(...) }, Fail), 0) end
local fail = M.fail

--- A raised Lua error in the CLI's own words: no file:line, no "bad argument #n to 'f'".
function M.clean(e)
  e = tostring(e):gsub("^[^\n]-:%d+: ", "")
  local inner = e:match("^bad argument #%d+ to '[^']*' %((.*)%)$")
  return inner or e
end

--- check(v, msg [, code]): v, or a failure with msg when v is nil or false.
function M.check(v, msg, code)
  if v == nil or v == false then fail(code or "CLI_INPUT", "%s", tostring(msg)) end
  return v
end

--- required(opts, name): the value of --name, or a usage failure.
function M.required(opts, name)
  local v = opts[name]
  if v == nil or v == true then fail("CLI_USAGE", "--%s is required", name) end
  return v
end

--- call(fn, ...): fn's results; a raise is a usage failure, nil, msg, code an input failure.
function M.call(fn, ...)
  local ok, a, b, c = pcall(fn, ...)
  if not ok then fail("CLI_USAGE", "%s", M.clean(a)) end
  if a == nil then fail(c or "CLI_INPUT", "%s", tostring(b)) end
  return a, b
end

-- ---- secrets ----------------------------------------------------------------------
local stdin_used = false

--- read_secret(spec, what): the text of file:PATH, env:NAME or - (one line of stdin).
function M.read_secret(spec, what)
  if spec == nil then fail("CLI_USAGE", "%s is required", what) end
  local text
  if spec == "-" then
    if stdin_used then fail("CLI_USAGE", "only one secret can come from stdin") end
    stdin_used = true
    text = io.read("*l")
    M.check(text, what .. ": nothing on stdin", "CLI_INPUT")
  elseif spec:match("^file:") then
    local f, err = io.open(spec:sub(6), "rb")
    if not f then fail("CLI_INPUT", "%s: cannot read %s (%s)", what, spec:sub(6), tostring(err)) end
    text = f:read("*a")
    f:close()
  elseif spec:match("^env:") then
    text = os.getenv(spec:sub(5))
    M.check(text, what .. ": environment variable " .. spec:sub(5) .. " is not set", "CLI_INPUT")
  else
    fail("CLI_SECRET_ARGV", "%s: secrets are not read from the command line; use file:PATH, env:NAME or - (stdin)",
      what)
  end
  return (text:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- ---- key files --------------------------------------------------------------------
-- The algorithm names a key file may start with. Anything else before a colon is not
-- taken for a name: "HEX:KCV" would otherwise echo the key in "unknown algorithm".
M.ALGORITHMS = { "DES", "TDES_2KEY", "TDES_3KEY", "AES_128", "AES_192", "AES_256", "HMAC_SHA224", "HMAC_SHA256",
  "HMAC_SHA384", "HMAC_SHA512" }
local IS_ALG = {}
for _, a in ipairs(M.ALGORITHMS) do IS_ALG[a] = true end
local ATTRS = { "usage", "mode", "version", "exportability" }
local IS_ATTR = { usage = true, mode = true, version = true, exportability = true }

--- The one line of a key file for key: ALGORITHM:HEX and its attributes.
function M.key_line(key)
  local words = { key.algorithm .. ":" .. key:export() }
  for _, a in ipairs(ATTRS) do
    local v = key[a]
    if v ~= nil and not (a == "version" and v == "00") then words[#words + 1] = a .. "=" .. v end
  end
  return table.concat(words, " ")
end

--- load_key(opts, spec_opt, alg_opt): the key of --spec_opt with the attributes its file keeps.
function M.load_key(opts, spec_opt, alg_opt)
  local text = M.read_secret(opts[spec_opt], "--" .. spec_opt)
  local first, rest = text:match("^(%S*)%s*(.-)$")
  local alg, hex = first:match("^([%a%d_]+):(.*)$")
  if alg and IS_ALG[alg:upper()] then alg = alg:upper() else alg, hex, rest = nil, text, "" end
  local attrs = {}
  for word in rest:gmatch("%S+") do
    local name, value = word:match("^(%a+)=(%w+)$")
    if not (name and IS_ATTR[name]) then
      fail("CLI_INPUT", "--%s: the key file holds %s; after ALGORITHM:HEX it takes %s=VALUE words", spec_opt,
        name and ("an unknown attribute '" .. name .. "'") or "a word that is not an attribute",
        table.concat(ATTRS, "=, "))
    end
    if attrs[name] then fail("CLI_INPUT", "--%s: the key file gives %s twice", spec_opt, name) end
    attrs[name] = value
  end
  if not alg then
    alg = opts[alg_opt]
    if alg == nil or alg == true then
      fail("CLI_USAGE", "--%s is required (or write ALGORITHM:HEX in the key file; one of %s)", alg_opt,
        table.concat(M.ALGORITHMS, ", "))
    end
  end
  local ok, key, msg, code = pcall(hsm.key.import, alg, hex, attrs)
  if not ok then
    if next(attrs) and IS_ALG[alg] then fail("CLI_INPUT", "--%s: the key file's attributes: %s", spec_opt, M.clean(key)) end
    fail("CLI_USAGE", "--%s: %s", alg_opt, M.clean(key))
  end
  if not key then fail(code, "--%s: %s", spec_opt, msg) end
  return key
end

--- save_key(opts, key [, what]): writes key to --out (a new 0600 file, or replaced with
-- --force; "-": stdout). Returns the file name for the output, nil for stdout.
function M.save_key(opts, key)
  local out = opts.out
  if out == nil then return nil end
  if out == true then fail("CLI_USAGE", "--out needs a file name (or - for stdout)") end
  if out == "-" then
    io.stdout:write(M.key_line(key), "\n")
    io.stdout:flush()
    return nil
  end
  local ok, msg, code = core.write_secret_file(out, M.key_line(key) .. "\n", { force = opts.force == true })
  if not ok then
    if code == "FILE_EXISTS" then fail("CLI_USAGE", "--out %s exists; pass --force to replace it", out) end
    fail(code, "--out: %s", (tostring(msg):gsub("^write_secret_file: ", "")))
  end
  return out
end

--- The check value algorithm `payhsm kcv` uses by default: HMAC for HMAC keys, else ANSI X9.24.
function M.kcv_algorithm(key)
  return tostring(key.algorithm):match("^HMAC") and "HMAC" or "ANSI_X9_24"
end

--- A key's check value for outputs (AWS returns the KeyCheckValue of the key it used).
function M.kcv_of(key) return key:kcv(M.kcv_algorithm(key)) end

return M
