--- `bin/payhsm <command>`: one subcommand per core operation, with parameter names after
-- the AWS Payment Cryptography CLI (`--key-identifier`, `--message-data`,
-- `--primary-account-number`, `--key-check-value-algorithm` ...). AWS's structure
-- parameters (`--generation-attributes`, `--verification-attributes`,
-- `--session-key-derivation-attributes`, `--auth-response-attributes`,
-- `--incoming-/--outgoing-translation-attributes`, `--kek-validation-type`) take JSON or the
-- AWS CLI shorthand, with AWS's member names; the older flattened options are aliases.
--
-- Output is JSON (field names as AWS returns them) or, with --text, one value per line.
-- Bad input: exit 1 and one line `payhsm CMD: message [CODE]` on stderr (a failed
-- verification also answers {"Valid": false, "Code": ...} on stdout); wrong usage: exit 2,
-- in the CLI's own words. Secrets (keys, PINs, plaintexts) are never taken from the
-- command line itself: a key argument is `file:PATH`, `env:NAME`, or `-` (one line of
-- stdin), holding HEX, ALGORITHM:HEX, or ALGORITHM:HEX with the key's TR-31 attributes
-- (payhsm.cliutil), which every subcommand enforces.
local hsm = require "payhsm"
local util = require "payhsm.util"
local compat = require "payhsm.compat"
local cliutil = require "payhsm.cliutil"
local shapes = require "payhsm.shapes"

local M = {}
local fail, check, required, call = cliutil.fail, cliutil.check, cliutil.required, cliutil.call
local read_secret, load_key, save_key, kcv_of = cliutil.read_secret, cliutil.load_key, cliutil.save_key, cliutil.kcv_of
local SHAPE, structure, exclusive, only = shapes.shapes, shapes.structure, shapes.exclusive, shapes.only
M.shapes, M.parse_structure = shapes.shapes, shapes.parse_structure

-- ---- commands ---------------------------------------------------------------------
-- Each: {summary, subs = {name = true}, options = {{name, help [, flag = true] [, subs = {sub = true}]}},
-- aliases (as options), run = function(opts, sub) -> util.object}. A flag takes no value;
-- an option with subs is refused by the other subcommands.
local C = {}

local KEY = { "key-identifier", "the key: file:PATH, env:NAME or - (stdin); content HEX, ALGORITHM:HEX, or "
  .. "ALGORITHM:HEX usage=.. mode=.. (a key file keeps its TR-31 attributes)" }
local FORCE = { "force", "replace an existing --out file (flag)", flag = true }
-- A verification that does not hold: the JSON answer ({"Valid": false, "Code": ...}) on
-- stdout and exit 1, so scripts can read it; the one-line message on stderr.
local function verified(key, default_code, fn, ...)
  local pok, ok, msg, code = pcall(fn, ...)
  if not pok then fail("CLI_USAGE", "%s", cliutil.clean(ok)) end
  if ok then return end
  local e = setmetatable({ code = code or default_code, msg = tostring(msg or "does not verify") }, cliutil.Fail)
  e.result = util.object { "KeyCheckValue", kcv_of(key), "Valid", false, "Code", e.code }
  error(e, 0)
end
local kcv_alg = cliutil.kcv_algorithm
-- util.object of name, value pairs, leaving out the nil values wherever they are.
local function obj(...)
  local kv = {}
  for i = 1, select("#", ...), 2 do
    local v = select(i + 1, ...)
    if v ~= nil then kv[#kv + 1], kv[#kv + 2] = (select(i, ...)), v end
  end
  return util.object(kv)
end
local KEYALG = { "key-algorithm", "TDES_2KEY, TDES_3KEY, AES_128, AES_192, AES_256, HMAC_SHA256 ... (unless in the file)" }

C.keygen = {
  summary = "generate a key; writes it with its attributes to --out (a new file, mode 0600) and prints its KCV",
  options = { { "key-algorithm", "algorithm of the new key: " .. table.concat(cliutil.ALGORITHMS, ", ") },
    { "out", "file to write, created with mode 0600 (- for stdout: the JSON then goes to stderr)" }, FORCE,
    { "key-usage", "TR-31 usage (optional; kept in the file)" },
    { "key-mode-of-use", "TR-31 mode of use (optional; kept in the file)" },
    { "key-version", "TR-31 key version, two characters (optional)" },
    { "exportability", "TR-31 exportability E, N or S (optional)" } },
  run = function(o)
    local alg = required(o, "key-algorithm")
    required(o, "out")
    local key = call(hsm.key.generate, alg:upper(), { usage = o["key-usage"], mode = o["key-mode-of-use"],
      version = o["key-version"], exportability = o.exportability })
    local file = save_key(o, key)
    return obj("KeyAlgorithm", key.algorithm, "KeyCheckValue", kcv_of(key), "KeyCheckValueAlgorithm", kcv_alg(key),
      "KeyUsage", key.usage, "KeyModeOfUse", key.mode, "KeyFile", file)
  end,
}

C.kcv = {
  summary = "key check value",
  options = { KEY, KEYALG,
    { "key-check-value-algorithm", "ANSI_X9_24 (default for TDES and AES keys), CMAC, HMAC (default for HMAC keys)" } },
  run = function(o)
    local key = load_key(o, "key-identifier", "key-algorithm")
    local alg = o["key-check-value-algorithm"] or cliutil.kcv_algorithm(key)
    return util.object { "KeyCheckValue", call(key.kcv, key, alg), "KeyCheckValueAlgorithm", alg }
  end,
}

local function header_object(h)
  local blocks = {}
  for _, b in ipairs(h.blocks or {}) do blocks[#blocks + 1] = util.object { "Id", b.id, "Data", b.data } end
  return util.object { "Version", h.version, "KeyUsage", h.usage, "KeyAlgorithm", h.algorithm,
    "KeyModeOfUse", h.mode, "KeyVersion", h.key_version, "Exportability", h.exportability,
    "OptionalBlocks", util.array(blocks) }
end

C.tr31 = {
  summary = "TR-31 / ANSI X9.143 key blocks: wrap | unwrap | parse",
  subs = { wrap = true, unwrap = true, parse = true },
  options = { { "wrapping-key-identifier", "the KBPK (file:, env: or -)" }, { "wrapping-key-algorithm", "KBPK algorithm" },
    KEY, KEYALG, { "key-block", "the key block (unwrap, parse)" }, { "key-usage", "wrap: usage (P0, D0, K0 ...)" },
    { "key-mode-of-use", "wrap: mode of use (E, D, B ...)" }, { "exportability", "wrap: E, N or S" },
    { "key-version", "wrap: two characters" }, { "version", "wrap: A, B, C, D (A and C need --legacy)" },
    { "legacy", "allow versions A and C (flag)", flag = true, subs = { wrap = true } },
    { "out", "unwrap: write the key with the block's attributes to this file (mode 0600)", subs = { unwrap = true } },
    { "force", "unwrap: replace an existing --out file (flag)", flag = true, subs = { unwrap = true } } },
  run = function(o, sub)
    if sub == "parse" then
      return header_object(call(hsm.tr31.parse, required(o, "key-block")))
    end
    local kbpk = load_key(o, "wrapping-key-identifier", "wrapping-key-algorithm")
    if sub == "wrap" then
      local key = load_key(o, "key-identifier", "key-algorithm")
      -- header fields not given come from the key file's attributes (mode B, exportability E without)
      local usage = o["key-usage"]
      if usage == nil and not key.usage then usage = required(o, "key-usage") end
      local block = call(hsm.tr31.wrap, kbpk, key, { version = o.version, usage = usage,
        mode = o["key-mode-of-use"] or (not key.mode and "B" or nil),
        exportability = o.exportability or (not key.exportability and "E" or nil), key_version = o["key-version"] },
        { legacy = o.legacy == true })
      return obj("KeyBlock", block, "KeyCheckValue", kcv_of(key), "KeyCheckValueAlgorithm", kcv_alg(key))
    end
    local key, header = call(hsm.tr31.unwrap, kbpk, required(o, "key-block"))
    local file = save_key(o, key)
    return obj("KeyAlgorithm", key.algorithm, "KeyCheckValue", kcv_of(key), "KeyCheckValueAlgorithm", kcv_alg(key),
      "KeyFile", file, "KeyAttributes", header_object(header))
  end,
}

-- MAC attributes: AWS's MacAttributes structure (Algorithm=CMAC or {"Algorithm":"CMAC"}), or
-- the older bare algorithm name (--generation-attributes CMAC).
local function mac_algorithm(o, sub)
  local name = "generation-attributes"
  if sub == "verify" then
    if o["verification-attributes"] ~= nil then
      exclusive(o, "verification-attributes", { "generation-attributes" })
      name = "verification-attributes"
    elseif o["generation-attributes"] == nil then
      fail("CLI_USAGE", "--verification-attributes is required")
    end
  end
  local v = required(o, name)
  if v:match("^[%u%d_]+$") then return v end
  return (structure(o, name, SHAPE.MacAttributes).Algorithm)
end

C.mac = {
  summary = "MACs: generate | verify (AWS generate-mac, verify-mac)",
  subs = { generate = true, verify = true },
  options = { KEY, KEYALG, { "message-data", "hex" },
    { "generation-attributes", "generate: MacAttributes, Algorithm=ISO9797_ALGORITHM3 or '{\"Algorithm\":\"CMAC\"}' "
      .. "(ISO9797_ALGORITHM1, ISO9797_ALGORITHM3, CMAC, HMAC, HMAC_SHA256 ...)" },
    { "verification-attributes", "verify: MacAttributes, as --generation-attributes" },
    { "mac", "verify: the MAC (hex)" }, { "mac-length", "bytes of output" },
    { "padding", "ISO 9797-1 padding method 1 or 2" } },
  aliases = { { "generation-attributes", "a bare algorithm name (--generation-attributes CMAC); for verify, in "
    .. "place of --verification-attributes" } },
  run = function(o, sub)
    local key = load_key(o, "key-identifier", "key-algorithm")
    local alg = mac_algorithm(o, sub)
    local popts = { length = tonumber(o["mac-length"]), padding = tonumber(o.padding) }
    if sub == "generate" then
      return util.object { "KeyCheckValue", kcv_of(key), "Mac", call(hsm.mac.generate, key, alg,
        required(o, "message-data"), popts) }
    end
    verified(key, "MAC_MISMATCH", hsm.mac.verify, key, alg, required(o, "message-data"), required(o, "mac"), popts)
    return util.object { "KeyCheckValue", kcv_of(key), "Valid", true }
  end,
}

-- One side of a PIN translation: AWS's TranslationIsoFormats structure
-- (IsoFormat0={PrimaryAccountNumber=...}, IsoFormat1={} ...) or the older --*-pin-block-format
-- with --primary-account-number / --outgoing-primary-account-number: format, PAN.
local ISO_FORMATS = { IsoFormat0 = "ISO_FORMAT_0", IsoFormat1 = "ISO_FORMAT_1", IsoFormat3 = "ISO_FORMAT_3",
  IsoFormat4 = "ISO_FORMAT_4" }
local function translation_side(o, side, pan_opt)
  local name = side .. "-translation-attributes"
  local v = structure(o, name, SHAPE.TranslationIsoFormats)
  if v then
    exclusive(o, name, { side .. "-pin-block-format", pan_opt })
    local member, m = only(v)
    return ISO_FORMATS[member], m.PrimaryAccountNumber, true
  end
  if o[side .. "-pin-block-format"] == nil then
    fail("CLI_USAGE", "--%s is required (or the older --%s-pin-block-format)", name, side)
  end
  return o[side .. "-pin-block-format"], o[pan_opt], false
end

C.pin = {
  summary = "ISO 9564 PIN blocks: encrypt | decrypt | translate (AWS translate-pin-data)",
  subs = { encrypt = true, decrypt = true, translate = true },
  options = { KEY, KEYALG, { "pin-block-format", "ISO_FORMAT_0 ... ISO_FORMAT_4" },
    { "pin", "encrypt: the PIN (file:, env: or -)" }, { "primary-account-number", "the PAN" },
    { "encrypted-pin-block", "decrypt/translate: hex" },
    { "incoming-key-identifier", "translate: key in" }, { "incoming-key-algorithm", "translate" },
    { "incoming-translation-attributes", "translate: TranslationIsoFormats, IsoFormat0={PrimaryAccountNumber=PAN}, "
      .. "IsoFormat1={}, IsoFormat3={...}, IsoFormat4={...} or JSON" },
    { "outgoing-key-identifier", "translate: key out" }, { "outgoing-key-algorithm", "translate" },
    { "outgoing-translation-attributes", "translate: TranslationIsoFormats, as --incoming-translation-attributes" } },
  aliases = { { "incoming-pin-block-format", "translate: in place of --incoming-translation-attributes (PAN from "
      .. "--primary-account-number)" },
    { "outgoing-pin-block-format", "translate: in place of --outgoing-translation-attributes" },
    { "outgoing-primary-account-number", "translate: PAN for an --outgoing-pin-block-format block (default: "
      .. "the incoming PAN)" } },
  run = function(o, sub)
    local pan = o["primary-account-number"]
    if sub == "translate" then
      local kin = load_key(o, "incoming-key-identifier", "incoming-key-algorithm")
      local kout = load_key(o, "outgoing-key-identifier", "outgoing-key-algorithm")
      local in_fmt, in_pan = translation_side(o, "incoming", "primary-account-number")
      local out_fmt, out_pan, out_struct = translation_side(o, "outgoing", "outgoing-primary-account-number")
      if not out_struct then out_pan = out_pan or in_pan end
      return util.object { "KeyCheckValue", kcv_of(kout), "PinBlock", call(hsm.pin.translate, kin, in_fmt,
        required(o, "encrypted-pin-block"), kout, out_fmt, in_pan, out_pan), "PinBlockFormat", out_fmt }
    end
    local key = load_key(o, "key-identifier", "key-algorithm")
    local fmt = required(o, "pin-block-format")
    if sub == "encrypt" then
      local pin = read_secret(o.pin, "--pin")
      return util.object { "PinBlock", call(hsm.pin.encrypt, key, fmt, pin, pan), "PinBlockFormat", fmt }
    end
    return util.object { "Pin", call(hsm.pin.decrypt, key, fmt, required(o, "encrypted-pin-block"), pan) }
  end,
}

C.zka = {
  summary = "ZKA session keys: derive | mac | verify",
  subs = { derive = true, mac = true, verify = true },
  options = { { "key-identifier", "the ZKA master key (file:, env: or -)" }, KEYALG,
    { "purpose", "derive: PAC, MAC or ENC", subs = { derive = true } }, { "random-number", "RND, 32 hex" },
    { "message-data", "mac, verify: hex", subs = { mac = true, verify = true } },
    { "mac-length", "mac, verify: 4 or 8 bytes (default 8)", subs = { mac = true, verify = true } },
    { "mac", "verify: the MAC to check (hex)", subs = { verify = true } },
    { "out", "derive: write the session key to this file (mode 0600)", subs = { derive = true } },
    { "force", "derive: replace an existing --out file (flag)", flag = true, subs = { derive = true } } },
  run = function(o, sub)
    local mk = load_key(o, "key-identifier", "key-algorithm")
    local purpose = sub == "derive" and required(o, "purpose") or "MAC"
    local len = o["mac-length"]
    if len ~= nil and len ~= "4" and len ~= "8" then fail("CLI_USAGE", "--mac-length: 4 or 8") end
    local sk = call(hsm.zka.derive_session_key, mk, purpose, required(o, "random-number"))
    local popts = { length = tonumber(len) }
    if sub == "mac" then return util.object { "Mac", call(hsm.zka.mac, sk, required(o, "message-data"), popts) } end
    if sub == "verify" then
      verified(mk, "MAC_MISMATCH", hsm.zka.verify_mac, sk, required(o, "message-data"), required(o, "mac"), popts)
      return util.object { "KeyCheckValue", kcv_of(mk), "Valid", true }
    end
    local file = save_key(o, sk)
    return obj("Purpose", purpose, "KeyCheckValue", kcv_of(sk), "KeyCheckValueAlgorithm", kcv_alg(sk), "KeyFile", file)
  end,
}

C.envelope = {
  summary = "MSK envelopes: seal | open",
  subs = { seal = true, open = true },
  options = { { "key-identifier", "the MSK (file:, env: or -)" }, KEYALG,
    { "plain-text", "seal: the plaintext (file:, env: or -)" },
    { "chunked", "seal: TR31-DATA-CHUNKED (flag)", flag = true, subs = { seal = true } },
    { "envelope", "open: the envelope JSON (file:PATH or -)" } },
  run = function(o, sub)
    local msk = load_key(o, "key-identifier", "key-algorithm")
    if sub == "seal" then
      local env = call(hsm.envelope.seal, msk, read_secret(o["plain-text"], "--plain-text"), { chunked = o.chunked == true })
      return { raw = hsm.envelope.encode(env) }
    end
    local plaintext = call(hsm.envelope.open, msk, read_secret(o.envelope, "--envelope"))
    return util.object { "PlainText", plaintext }
  end,
}

-- What the command modules (lua/payhsm/commands/*.lua) share.
local H = { fail = fail, check = check, required = required, call = call, read_secret = read_secret,
  load_key = load_key, save_key = save_key, kcv_of = kcv_of, kcv_alg = kcv_alg, verified = verified, obj = obj,
  structure = structure, exclusive = exclusive, only = only, SHAPE = SHAPE, KEY = KEY, KEYALG = KEYALG, FORCE = FORCE }
for _, name in ipairs { "emv", "card", "keys" } do require("payhsm.commands." .. name)(C, H) end

M.commands = C

-- ---- argument parsing, help, output ------------------------------------------------
-- The option specs of cmd by name, with --text and --help.
local function specs_of(cmd)
  local by, names = {}, {}
  for _, list in ipairs { cmd.options, cmd.aliases or {} } do
    for _, spec in ipairs(list) do
      if not by[spec[1]] then names[#names + 1] = spec[1] end
      by[spec[1]] = by[spec[1]] or spec
    end
  end
  by.text, by.help = { "text", flag = true }, { "help", flag = true }
  names[#names + 1] = "text"
  return by, names
end

-- A name fit to repeat in a message: option-shaped (a secret pasted as an option never is).
local function shown(a)
  if #a <= 40 and a:match("^%-%-[%a][%w-]*$") then return "'" .. a .. "'" end
  return "(an argument not shown)"
end

local function parse(args, cmd, sub, where)
  local by, names = specs_of(cmd)
  local opts = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w-]+)$") end
    if not name then
      fail("CLI_USAGE", "unexpected argument %s (options are --name VALUE; see payhsm %s --help)",
        a:match("^[%w_-]+$") and #a <= 20 and ("'" .. a .. "'") or "(not shown)", where)
    end
    local spec = by[name]
    if not spec then
      fail("CLI_USAGE", "unknown option %s (expected one of: --%s)", shown("--" .. name), table.concat(names, ", --"))
    end
    if spec.subs and sub and not spec.subs[sub] then
      local s = {}
      for k in pairs(spec.subs) do s[#s + 1] = k end
      table.sort(s)
      fail("CLI_USAGE", "--%s is for %s %s, not %s", name, where:match("^%S+"), table.concat(s, ", "), sub)
    end
    if opts[name] ~= nil then fail("CLI_USAGE", "--%s given twice", name) end
    if spec.flag then
      if value ~= nil then fail("CLI_USAGE", "--%s is a flag and takes no value", name) end
      value = true
    elseif value == nil then
      local nxt = args[i + 1]
      if nxt == nil or (nxt:match("^%-%-") and nxt ~= "-") then fail("CLI_USAGE", "--%s needs a value", name) end
      value, i = nxt, i + 1
    end
    opts[name] = value
    i = i + 1
  end
  return opts
end

local function help(name, cmd)
  local out = { ("usage: payhsm %s%s [options] [--text]"):format(name, cmd.subs and (" " .. table.concat((function()
    local s = {}
    for k in pairs(cmd.subs) do s[#s + 1] = k end
    table.sort(s)
    return { table.concat(s, "|") }
  end)())) or ""), cmd.summary, "" }
  for _, spec in ipairs(cmd.options) do out[#out + 1] = ("  --%-34s %s"):format(spec[1], spec[2]) end
  out[#out + 1] = ("  --%-34s %s"):format("text", "plain text output instead of JSON")
  if cmd.aliases then
    out[#out + 1] = ""
    out[#out + 1] = "older flattened forms, still accepted (not together with the AWS form they stand for):"
    for _, spec in ipairs(cmd.aliases) do out[#out + 1] = ("  --%-34s %s"):format(spec[1], spec[2]) end
    out[#out + 1] = ""
    out[#out + 1] = "A structure value is JSON or the AWS CLI shorthand Name=Value,Name2={Inner=Value} (no spaces)."
  end
  out[#out + 1] = ""
  out[#out + 1] = "Exit status: 0 done, 1 bad input or a failed verification (its JSON answer on stdout), 2 usage."
  return table.concat(out, "\n")
end

--- The subcommand names, sorted.
function M.names()
  local names = {}
  for k in pairs(C) do names[#names + 1] = k end
  table.sort(names)
  return names
end

function M.usage_lines()
  local out = {}
  for _, k in ipairs(M.names()) do out[#out + 1] = ("       payhsm %-31s %s"):format(k .. " ...", C[k].summary) end
  return table.concat(out, "\n")
end

local function text_of(result)
  if result.raw then return result.raw end
  local lines = {}
  local kv = getmetatable(result) and result.kv or {}
  for i = 1, #kv, 2 do
    local v = kv[i + 1]
    if v ~= nil then
      if type(v) == "table" then v = util.json(v) end
      lines[#lines + 1] = ("%s\t%s"):format(kv[i], tostring(v))
    end
  end
  return table.concat(lines, "\n")
end

--- Runs `payhsm NAME args...`; returns the exit code (0, 1 bad input or a failed verification, 2 usage).
function M.main(name, args)
  local cmd = C[name]
  if not cmd then return nil end
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then
      io.stdout:write(help(name, cmd), "\n")
      return 0
    end
  end
  local sub
  if cmd.subs then
    sub = args[1]
    if sub == nil then
      io.stderr:write(help(name, cmd), "\n")
      return 2
    end
    if not cmd.subs[sub] then
      local s = {}
      for k in pairs(cmd.subs) do s[#s + 1] = k end
      table.sort(s)
      io.stderr:write(("payhsm %s: unknown subcommand %s (expected one of: %s) [CLI_USAGE]\n"):format(name,
        sub:match("^[%w_-]+$") and #sub <= 20 and ("'" .. sub .. "'") or "(not shown)", table.concat(s, ", ")))
      return 2
    end
    args = { compat.unpack(args, 2) }
  end
  local where = name .. (sub and (" " .. sub) or "")
  local opts
  local ok, result = pcall(function()
    opts = parse(args, cmd, sub, where)
    return { out = cmd.run(opts, sub), text = opts.text }
  end)
  if not ok then
    local e = result
    local msg, code = cliutil.clean(e), "CLI_USAGE"
    if getmetatable(e) == cliutil.Fail then msg, code = e.msg, e.code end
    if type(e) == "table" and e.result then
      io.stdout:write(opts and opts.text and text_of(e.result) or util.json(e.result), "\n")
    end
    io.stderr:write(("payhsm %s: %s [%s]\n"):format(where, (msg:gsub("\n.*", "")), code))
    return code == "CLI_USAGE" and 2 or 1
  end
  -- with --out -, stdout carries the key line alone; the JSON goes to stderr
  local sink = opts.out == "-" and io.stderr or io.stdout
  sink:write(result.text and text_of(result.out) or (result.out.raw or util.json(result.out)), "\n")
  return 0
end

return M
