--- `bin/payhsm <command>`: one subcommand per core operation, with parameter names after
-- the AWS Payment Cryptography CLI (`--key-identifier`, `--message-data`,
-- `--primary-account-number`, `--key-check-value-algorithm` ...). AWS's structure
-- parameters (`--generation-attributes`, `--verification-attributes`,
-- `--session-key-derivation-attributes`, `--auth-response-attributes`,
-- `--incoming-/--outgoing-translation-attributes`, `--kek-validation-type`) take JSON or the
-- AWS CLI shorthand, with AWS's member names; the older flattened options are aliases.
--
-- Output is JSON (field names as AWS returns them) or, with --text, one value per line.
-- Bad input: exit 1 and one line `payhsm CMD: message [CODE]` on stderr; wrong usage: exit 2.
-- Secrets (keys, PINs, plaintexts) are never taken from the command line itself: a key
-- argument is `file:PATH` (hex, or `ALGORITHM:HEX`), `env:NAME`, or `-` (one line of stdin).
local hsm = require "payhsm"
local util = require "payhsm.util"
local compat = require "payhsm.compat"
local cjson = require "cjson"

local M = {}

local Fail = {}
local function fail(code, msg, ...) error(setmetatable({ code = code, msg = msg:format(...) }, Fail), 0) end
local function check(v, msg, code)
  if v == nil or v == false then fail(code or "CLI_INPUT", "%s", tostring(msg)) end
  return v
end

-- ---- secrets ----------------------------------------------------------------------
local stdin_used = false
local function read_secret(spec, what)
  if spec == nil then fail("CLI_USAGE", "%s is required", what) end
  local text
  if spec == "-" then
    if stdin_used then fail("CLI_USAGE", "only one secret can come from stdin") end
    stdin_used = true
    text = io.read("*l")
    check(text, what .. ": nothing on stdin", "CLI_INPUT")
  elseif spec:match("^file:") then
    local f, err = io.open(spec:sub(6), "rb")
    if not f then fail("CLI_INPUT", "%s: cannot read %s (%s)", what, spec:sub(6), tostring(err)) end
    text = f:read("*a")
    f:close()
  elseif spec:match("^env:") then
    text = os.getenv(spec:sub(5))
    check(text, what .. ": environment variable " .. spec:sub(5) .. " is not set", "CLI_INPUT")
  else
    fail("CLI_SECRET_ARGV", "%s: secrets are not read from the command line; use file:PATH, env:NAME or - (stdin)",
      what)
  end
  return (text:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- The algorithm names a key file may start with (`ALG:HEX`). Anything else before a colon
-- is not taken for a name: "HEX:KCV" would otherwise echo the key in "unknown algorithm".
local FILE_ALGORITHMS = { DES = true, TDES_2KEY = true, TDES_3KEY = true, AES_128 = true, AES_192 = true,
  AES_256 = true, HMAC_SHA256 = true, HMAC_SHA384 = true, HMAC_SHA512 = true }

-- A key from a secret spec; the algorithm from `ALG:HEX` or from the given option.
local function load_key(opts, spec_opt, alg_opt, attrs)
  local text = read_secret(opts[spec_opt], "--" .. spec_opt)
  local alg, hex = text:match("^([%u%d_]+):(.*)$")
  if not FILE_ALGORITHMS[alg] then alg, hex = opts[alg_opt], text end
  if not alg then fail("CLI_USAGE", "--%s is required (or write ALGORITHM:HEX in the key file)", alg_opt) end
  local ok, key, msg, code = pcall(hsm.key.import, alg, hex, attrs)
  if not ok then fail("CLI_USAGE", "--%s: %s", alg_opt, tostring(key):gsub("^.-: ", "")) end
  if not key then fail(code, "--%s: %s", spec_opt, msg) end
  return key
end

local function required(opts, name)
  local v = opts[name]
  if v == nil or v == true then fail("CLI_USAGE", "--%s is required", name) end
  return v
end

local function call(fn, ...)
  local ok, a, b, c = pcall(fn, ...)
  if not ok then fail("CLI_USAGE", "%s", tostring(a):gsub("^.-:%d+: ", "")) end
  if a == nil then fail(c or "CLI_INPUT", "%s", tostring(b)) end
  return a, b
end

local function write_secret_file(path, hex)
  local f, err = io.open(path, "wb")
  if not f then fail("CLI_INPUT", "cannot write %s (%s)", path, tostring(err)) end
  f:write(hex, "\n")
  f:close()
  os.execute("chmod 600 '" .. path:gsub("'", "'\\''") .. "'")
end

-- ---- AWS structure parameters ------------------------------------------------------
-- The AWS CLI takes a structure as JSON ('{"EmvCommon":{"PrimaryAccountNumber":"..."}}') or
-- in its shorthand (EmvCommon={PrimaryAccountNumber=...,PanSequenceNumber=01}). Both are
-- parsed strictly here and checked against the AWS shape: unknown members, missing
-- required members, non-string values and unions with other than one member are usage
-- errors (CLI_USAGE). Messages name options and members, never the values.

-- A shape: {union = bool, members = {{Name, "string" | shape, required = bool}, ...},
-- unsupported = {Name = true} (AWS members payhsm does not implement)}.
local function S(members, union, unsupported)
  local by = {}
  for _, m in ipairs(members) do by[m[1]] = m end
  return { members = members, by = by, union = union, unsupported = unsupported or {} }
end
local function req(name, t) return { name, t or "string", required = true } end

local PAN, PSN, ATC = req "PrimaryAccountNumber", req "PanSequenceNumber", req "ApplicationTransactionCounter"
local SHAPE = {
  -- API_MacAttributes: a union; payhsm implements the Algorithm member
  MacAttributes = S({ { "Algorithm", "string" } }, true,
    { EmvMac = true, DukptIso9797Algorithm1 = true, DukptIso9797Algorithm3 = true, DukptCmac = true }),
  -- API_SessionKeyDerivation and SessionKeyEmvCommon / Mastercard / Emv2000 / Amex / Visa
  SessionKeyDerivation = S({ { "EmvCommon", S { PAN, PSN, ATC } },
    { "Mastercard", S { PAN, PSN, ATC, req "UnpredictableNumber" } }, { "Emv2000", S { PAN, PSN, ATC } },
    { "Amex", S { PAN, PSN } }, { "Visa", S { PAN, PSN } } }, true),
  -- API_CryptogramAuthResponse: ArpcMethod1 / ArpcMethod2
  CryptogramAuthResponse = S({ { "ArpcMethod1", S { req "AuthResponseCode" } },
    { "ArpcMethod2", S { req "CardStatusUpdate", { "ProprietaryAuthenticationData", "string" } } } }, true),
  -- API_TranslationIsoFormats: IsoFormat0/3/4 (TranslationPinDataIsoFormat034), IsoFormat1
  TranslationIsoFormats = S({ { "IsoFormat0", S { PAN } }, { "IsoFormat1", S {} }, { "IsoFormat3", S { PAN } },
    { "IsoFormat4", S { PAN } } }, true),
  -- API_As2805KekValidationType: KekValidationRequest / KekValidationResponse
  As2805KekValidationType = S({ { "KekValidationRequest", S { req "DeriveKeyAlgorithm" } },
    { "KekValidationResponse", S { req "RandomKeySend" } } }, true),
}
M.shapes = SHAPE

-- A member name fit to repeat in a message. It is user input, so only a name shaped like
-- AWS's (PascalCase: a capital, then letters and digits, some lower case, at most 32
-- characters, not all hex) is repeated: a key pasted in the wrong place never is.
local function said(name)
  if type(name) == "string" and #name <= 32 and name:match("^%u%w*$") and name:find("%l")
    and not name:match("^%x+$") then
    return "'" .. name .. "'"
  end
  return "(a name not shown)"
end

-- AWS CLI shorthand: Key=Value,Key2={Inner=Value},Key3="quoted, value",Empty={} -> table.
local function shorthand(s, opt)
  local pos = 1
  local function bad(what) fail("CLI_USAGE", "%s: malformed shorthand at character %d: %s", opt, pos, what) end
  local structure
  local function value()
    local c = s:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local t = structure("}")
      if s:sub(pos, pos) ~= "}" then bad("expected '}'") end
      pos = pos + 1
      return t
    elseif c == '"' or c == "'" then
      local close = s:find(c, pos + 1, true)
      if not close then bad("unterminated quote") end
      local v = s:sub(pos + 1, close - 1)
      pos = close + 1
      return v
    elseif c == "[" then
      bad("lists are not used by any payhsm option")
    end
    local v = s:match("^[^,{}%[%]=\"'%s]*", pos)
    pos = pos + #v
    return v
  end
  function structure(closing)
    local t = {}
    if closing and s:sub(pos, pos) == closing then return t end
    while true do
      local key = s:match("^%a[%w_]*", pos)
      if not key then bad("expected a member name") end
      pos = pos + #key
      if s:sub(pos, pos) ~= "=" then bad("expected '=' after " .. said(key)) end
      pos = pos + 1
      if t[key] ~= nil then bad(said(key) .. " given twice") end
      t[key] = value()
      local c = s:sub(pos, pos)
      if c == "" or (closing and c == closing) then return t end
      if c ~= "," then bad("expected ',' or the end") end
      pos = pos + 1
    end
  end
  local t = structure(nil)
  if pos <= #s then bad("expected ',' or the end") end
  return t
end

local function json_structure(s, opt)
  local ok, v = pcall(cjson.decode, s)
  if not ok then
    fail("CLI_USAGE", "%s: malformed JSON (%s)", opt, (tostring(v):gsub("^.-:%d+: ", ""):gsub("\n.*", "")))
  end
  if type(v) ~= "table" or v[1] ~= nil then fail("CLI_USAGE", "%s: expected a JSON object", opt) end
  return v
end

-- Checks v against shape; path names the place in messages ("--opt", "--opt EmvCommon").
local function conform(v, shape, path)
  if type(v) ~= "table" then fail("CLI_USAGE", "%s must be a structure", path) end
  local n = 0
  for k, x in pairs(v) do
    local m = type(k) == "string" and shape.by[k]
    if not m then
      if shape.unsupported[k] then fail("CLI_USAGE", "%s: %s is an AWS member payhsm does not implement", path, said(k)) end
      local names = {}
      for _, mm in ipairs(shape.members) do names[#names + 1] = mm[1] end
      fail("CLI_USAGE", "%s: unknown member %s (%s)", path, said(k),
        #names > 0 and ("expected " .. table.concat(names, ", ")) or "expected none")
    end
    if m[2] == "string" then
      if type(x) ~= "string" then fail("CLI_USAGE", "%s: %s must be a string", path, k) end
    else
      conform(x, m[2], path .. " " .. k)
    end
    n = n + 1
  end
  if shape.union and n ~= 1 then
    local names = {}
    for _, mm in ipairs(shape.members) do names[#names + 1] = mm[1] end
    fail("CLI_USAGE", "%s: give exactly one of %s", path, table.concat(names, ", "))
  end
  for _, m in ipairs(shape.members) do
    if m.required and v[m[1]] == nil then fail("CLI_USAGE", "%s: %s is required", path, m[1]) end
  end
  return v
end

-- Parses an AWS structure value (JSON, or the CLI shorthand) for option `opt` and checks
-- it against `shape` (one of M.shapes); raises a CLI_USAGE failure on bad syntax or shape.
function M.parse_structure(text, shape, opt)
  if type(text) ~= "string" then fail("CLI_USAGE", "%s needs a value", opt) end
  local v
  if text:match("^%s*[{%[]") then v = json_structure(text, opt) else v = shorthand(text, opt) end
  return conform(v, shape, opt)
end

-- The structure option `name` of o, parsed; nil when absent.
local function structure(o, name, shape)
  if o[name] == nil then return nil end
  return M.parse_structure(o[name], shape, "--" .. name)
end

-- The structure option `name` excludes each of its older flattened aliases.
local function exclusive(o, name, aliases)
  for _, a in ipairs(aliases) do
    if o[a] ~= nil then
      fail("CLI_USAGE", "--%s and --%s are two forms of the same input; give one", name, a)
    end
  end
end

-- The one member of a union value: name, value.
local function only(v) return next(v) end

-- A key's check value for outputs (AWS returns the KeyCheckValue of the key it used): the
-- default `payhsm kcv` prints (ANSI X9.24), and the HMAC method for HMAC keys.
local function kcv_of(key)
  if tostring(key.algorithm):match("^HMAC") then return key:kcv("HMAC") end
  return key:kcv()
end

-- ---- commands ---------------------------------------------------------------------
-- Each: {summary, options = {{name, help}}, run = function(opts, sub) -> util.object}
local C = {}

local KEY = { "key-identifier", "the key: file:PATH, env:NAME or - (stdin); content HEX or ALGORITHM:HEX" }
local KEYALG = { "key-algorithm", "TDES_2KEY, TDES_3KEY, AES_128, AES_192, AES_256, HMAC_SHA256 ... (unless in the file)" }

C.keygen = {
  summary = "generate a key; writes its hex to --out (mode 0600) and prints its check value",
  options = { { "key-algorithm", "algorithm of the new key" }, { "out", "file to write (- for stdout)" },
    { "key-usage", "TR-31 usage (optional)" }, { "key-mode-of-use", "TR-31 mode of use (optional)" } },
  run = function(o)
    local key = call(hsm.key.generate, required(o, "key-algorithm"),
      { usage = o["key-usage"], mode = o["key-mode-of-use"] })
    local out = required(o, "out")
    if out == "-" then io.stdout:write(key.algorithm, ":", key:export(), "\n")
    else write_secret_file(out, key.algorithm .. ":" .. key:export()) end
    return util.object { "KeyAlgorithm", key.algorithm, "KeyCheckValue", key:kcv(),
      "KeyCheckValueAlgorithm", "ANSI_X9_24", "KeyFile", out ~= "-" and out or nil }
  end,
}

C.kcv = {
  summary = "key check value",
  options = { KEY, KEYALG, { "key-check-value-algorithm", "ANSI_X9_24 (default) or CMAC" } },
  run = function(o)
    local key = load_key(o, "key-identifier", "key-algorithm")
    local alg = o["key-check-value-algorithm"] or "ANSI_X9_24"
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
    { "legacy", "allow versions A and C (flag)" }, { "out", "unwrap: write the key to this file (mode 0600)" } },
  run = function(o, sub)
    if sub == "parse" then
      return header_object(call(hsm.tr31.parse, required(o, "key-block")))
    end
    local kbpk = load_key(o, "wrapping-key-identifier", "wrapping-key-algorithm")
    if sub == "wrap" then
      local key = load_key(o, "key-identifier", "key-algorithm")
      local block = call(hsm.tr31.wrap, kbpk, key, { version = o.version, usage = required(o, "key-usage"),
        mode = o["key-mode-of-use"] or "B", exportability = o.exportability or "E", key_version = o["key-version"] },
        { legacy = o.legacy == true })
      return util.object { "KeyBlock", block, "KeyCheckValue", key:kcv(), "KeyCheckValueAlgorithm", "ANSI_X9_24" }
    end
    local key, header = call(hsm.tr31.unwrap, kbpk, required(o, "key-block"))
    if o.out then write_secret_file(o.out, key.algorithm .. ":" .. key:export()) end
    return util.object { "KeyAlgorithm", key.algorithm, "KeyCheckValue", key:kcv(),
      "KeyCheckValueAlgorithm", "ANSI_X9_24", "KeyFile", o.out, "KeyAttributes", header_object(header) }
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
    local ok, msg, code = hsm.mac.verify(key, alg, required(o, "message-data"), required(o, "mac"), popts)
    if not ok then fail(code or "MAC_MISMATCH", "%s", msg or "the MAC does not verify") end
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

local EMV_OPTS = { { "key-identifier", "the issuer master key (file:, env: or -)" }, KEYALG,
  { "major-key-derivation-mode", "EMV_OPTION_A (default) or EMV_OPTION_B" },
  { "session-key-derivation-attributes", "SessionKeyDerivation: EmvCommon={PrimaryAccountNumber=PAN,"
    .. "PanSequenceNumber=01,ApplicationTransactionCounter=0001}, Mastercard={...,UnpredictableNumber=8 hex}, "
    .. "Emv2000={...}, Visa={PrimaryAccountNumber=,PanSequenceNumber=}, Amex={...} or JSON" },
  { "transaction-data", "hex" }, { "padding", "ISO 9797-1 method 1 or 2 (default: the derivation's)" },
  { "auth-request-cryptogram", "the ARQC (verify, arpc)" } }
local EMV_ALIASES = { { "session-key-derivation", "EMV_COMMON, MASTERCARD, EMV2000, VISA, AMEX, with the four below" },
  { "primary-account-number", "the PAN" }, { "pan-sequence-number", "2 digits (default 00)" },
  { "application-transaction-counter", "ATC, 4 hex (not for VISA, AMEX)" },
  { "unpredictable-number", "8 hex (MASTERCARD)" } }
local SKD_FLAT = { "session-key-derivation", "primary-account-number", "pan-sequence-number",
  "application-transaction-counter", "unpredictable-number" }
local SKD = { EmvCommon = "EMV_COMMON", Mastercard = "MASTERCARD", Emv2000 = "EMV2000", Amex = "AMEX", Visa = "VISA" }

local function emv_params(o)
  local p = { mode = o["major-key-derivation-mode"] or "EMV_OPTION_A", data = o["transaction-data"],
    padding = tonumber(o.padding), arqc = o["auth-request-cryptogram"] }
  local v = structure(o, "session-key-derivation-attributes", SHAPE.SessionKeyDerivation)
  if v then
    exclusive(o, "session-key-derivation-attributes", SKD_FLAT)
    local member, m = only(v)
    p.derivation, p.pan, p.psn = SKD[member], m.PrimaryAccountNumber, m.PanSequenceNumber
    p.atc, p.un = m.ApplicationTransactionCounter, m.UnpredictableNumber
    return p
  end
  if o["session-key-derivation"] == nil then
    fail("CLI_USAGE", "--session-key-derivation-attributes is required (or the older --session-key-derivation)")
  end
  p.derivation, p.pan = required(o, "session-key-derivation"), required(o, "primary-account-number")
  p.psn, p.un = o["pan-sequence-number"] or "00", o["unpredictable-number"]
  if p.derivation == "VISA" or p.derivation == "AMEX" then p.atc = o["application-transaction-counter"]
  else p.atc = required(o, "application-transaction-counter") end
  return p
end

-- ARPC inputs: AWS's CryptogramAuthResponse (ArpcMethod1={AuthResponseCode=...} or
-- ArpcMethod2={CardStatusUpdate=...,ProprietaryAuthenticationData=...}) into p; true when given.
local ARPC_FLAT = { "method", "auth-response-code", "card-status-update", "proprietary-authentication-data" }
local function arpc_attributes(o, p)
  local v = structure(o, "auth-response-attributes", SHAPE.CryptogramAuthResponse)
  if not v then return false end
  for _, a in ipairs(ARPC_FLAT) do
    if o[a] ~= nil then exclusive(o, "auth-response-attributes", { a }) end
  end
  local member, m = only(v)
  if member == "ArpcMethod1" then p.method, p.arc = 1, m.AuthResponseCode
  else p.method, p.csu, p.proprietary = 2, m.CardStatusUpdate, m.ProprietaryAuthenticationData end
  return true
end

local ARQC_OPTS = {}
for _, v in ipairs(EMV_OPTS) do ARQC_OPTS[#ARQC_OPTS + 1] = v end
ARQC_OPTS[#ARQC_OPTS + 1] = { "auth-response-attributes", "verify: also make the ARPC, CryptogramAuthResponse: "
  .. "ArpcMethod1={AuthResponseCode=4 hex} or ArpcMethod2={CardStatusUpdate=8 hex,ProprietaryAuthenticationData=hex}" }

C.arqc = {
  summary = "EMV ARQC: generate | verify (AWS verify-auth-request-cryptogram)",
  subs = { generate = true, verify = true },
  options = ARQC_OPTS,
  aliases = EMV_ALIASES,
  run = function(o, sub)
    local imk = load_key(o, "key-identifier", "key-algorithm")
    local p = emv_params(o)
    p.data = required(o, "transaction-data")
    if sub == "generate" then
      if o["auth-response-attributes"] ~= nil then fail("CLI_USAGE", "--auth-response-attributes is for arqc verify") end
      return util.object { "AuthRequestCryptogram", call(hsm.emv.generate_arqc, imk, p) }
    end
    required(o, "auth-request-cryptogram")
    local want_arpc = arpc_attributes(o, p)
    local ok, msg, code = hsm.emv.verify_arqc(imk, p)
    if not ok then fail(code or "ARQC_MISMATCH", "%s", msg or "the ARQC does not verify") end
    return util.object { "KeyCheckValue", kcv_of(imk), "Valid", true,
      "AuthResponseValue", want_arpc and call(hsm.emv.generate_arpc, imk, p) or nil }
  end,
}

local ARPC_OPTS = {}
for _, v in ipairs(EMV_OPTS) do ARPC_OPTS[#ARPC_OPTS + 1] = v end
ARPC_OPTS[#ARPC_OPTS + 1] = { "auth-response-attributes", "CryptogramAuthResponse: ArpcMethod1={AuthResponseCode="
  .. "4 hex} or ArpcMethod2={CardStatusUpdate=8 hex,ProprietaryAuthenticationData=hex} or JSON" }
local ARPC_ALIASES = {}
for _, v in ipairs(EMV_ALIASES) do ARPC_ALIASES[#ARPC_ALIASES + 1] = v end
ARPC_ALIASES[#ARPC_ALIASES + 1] = { "method", "1 (ARC, default) or 2 (CSU)" }
ARPC_ALIASES[#ARPC_ALIASES + 1] = { "auth-response-code", "method 1: 4 hex" }
ARPC_ALIASES[#ARPC_ALIASES + 1] = { "card-status-update", "method 2: 8 hex" }
ARPC_ALIASES[#ARPC_ALIASES + 1] = { "proprietary-authentication-data", "method 2: hex (optional)" }

C.arpc = {
  summary = "EMV ARPC (method 1 or 2) without verifying the ARQC (arqc verify --auth-response-attributes does both)",
  options = ARPC_OPTS,
  aliases = ARPC_ALIASES,
  run = function(o)
    local imk = load_key(o, "key-identifier", "key-algorithm")
    local p = emv_params(o)
    required(o, "auth-request-cryptogram")
    if not arpc_attributes(o, p) then
      p.method = tonumber(o.method or "1")
      p.arc, p.csu, p.proprietary = o["auth-response-code"], o["card-status-update"], o["proprietary-authentication-data"]
    end
    return util.object { "AuthResponseValue", call(hsm.emv.generate_arpc, imk, p) }
  end,
}

C.as2805 = {
  summary = "AS2805 KEK validation: generate | request | response (AWS generate-as2805-kek-validation)",
  subs = { generate = true, request = true, response = true },
  options = { { "key-identifier", "the KEK (file:, env: or -)" }, KEYALG,
    { "kek-validation-type", "As2805KekValidationType: KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY} or "
      .. "KekValidationResponse={RandomKeySend=hex} or JSON (generate: required; request/response: optional)" },
    { "random-key-send-variant-mask", "VARIANT_MASK_82C0 (default) or VARIANT_MASK_82" },
    { "random-key-max-length", "request: BYTES_8, BYTES_16 (default), BYTES_24 (payhsm)" } },
  aliases = { { "derive-key-algorithm", "request: TDES_2KEY (default) or TDES_3KEY" },
    { "random-key-send", "response: the KRs (hex)" },
    { "variant-mask", "in place of --random-key-send-variant-mask" } },
  run = function(o, sub)
    local kek = load_key(o, "key-identifier", "key-algorithm")
    local mask = o["random-key-send-variant-mask"]
    if mask ~= nil then exclusive(o, "random-key-send-variant-mask", { "variant-mask" }) end
    mask = mask or o["variant-mask"] or "VARIANT_MASK_82C0"
    local derive, krs
    local v = structure(o, "kek-validation-type", SHAPE.As2805KekValidationType)
    if v then
      exclusive(o, "kek-validation-type", { "derive-key-algorithm", "random-key-send" })
      local member, m = only(v)
      local kind = member == "KekValidationRequest" and "request" or "response"
      if sub ~= "generate" and sub ~= kind then
        fail("CLI_USAGE", "--kek-validation-type is a %s: use as2805 %s or as2805 generate", member, kind)
      end
      sub, derive, krs = kind, m.DeriveKeyAlgorithm, m.RandomKeySend
    elseif sub == "generate" then
      fail("CLI_USAGE", "--kek-validation-type is required")
    end
    if sub == "request" then
      local r = call(hsm.as2805.kek_validation_request, kek, { derive_algorithm = derive or o["derive-key-algorithm"]
        or "TDES_2KEY", random_key_max_length = o["random-key-max-length"] or "BYTES_16", variant_mask = mask })
      return util.object { "RandomKeySend", r.random_key_send, "RandomKeyReceive", r.random_key_receive,
        "KeyCheckValue", r.kcv }
    end
    if o["random-key-max-length"] ~= nil then fail("CLI_USAGE", "--random-key-max-length is for a request") end
    krs = krs or required(o, "random-key-send")
    local krr = call(hsm.as2805.kek_validation_response, kek, krs, { variant_mask = mask })
    return util.object { "RandomKeySend", krs:upper(), "RandomKeyReceive", krr, "KeyCheckValue", kcv_of(kek) }
  end,
}

C.zka = {
  summary = "ZKA session keys: derive | mac",
  subs = { derive = true, mac = true },
  options = { { "key-identifier", "the ZKA master key (file:, env: or -)" }, KEYALG,
    { "purpose", "derive: PAC, MAC or ENC" }, { "random-number", "RND, 32 hex" },
    { "message-data", "mac: hex" }, { "out", "derive: write the session key to this file (mode 0600)" } },
  run = function(o, sub)
    local mk = load_key(o, "key-identifier", "key-algorithm")
    local purpose = sub == "mac" and "MAC" or required(o, "purpose")
    local sk = call(hsm.zka.derive_session_key, mk, purpose, required(o, "random-number"))
    if sub == "mac" then return util.object { "Mac", call(hsm.zka.mac, sk, required(o, "message-data")) } end
    if o.out then write_secret_file(o.out, sk.algorithm .. ":" .. sk:export()) end
    return util.object { "Purpose", purpose, "KeyCheckValue", sk:kcv(), "KeyFile", o.out }
  end,
}

C.envelope = {
  summary = "MSK envelopes: seal | open",
  subs = { seal = true, open = true },
  options = { { "key-identifier", "the MSK (file:, env: or -)" }, KEYALG,
    { "plain-text", "seal: the plaintext (file:, env: or -)" }, { "chunked", "seal: TR31-DATA-CHUNKED (flag)" },
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

M.commands = C

-- ---- argument parsing, help, output ------------------------------------------------
local function parse(args, cmd)
  local opts, known = {}, {}
  for _, spec in ipairs(cmd.options) do known[spec[1]] = true end
  for _, spec in ipairs(cmd.aliases or {}) do known[spec[1]] = true end
  known.text, known.help = true, true
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w-]+)$") end
    if not name then fail("CLI_USAGE", "unexpected argument '%s'", a) end
    if not known[name] then fail("CLI_USAGE", "unknown option --%s", name) end
    if value == nil then
      local nxt = args[i + 1]
      if nxt ~= nil and (not nxt:match("^%-%-") or nxt == "-") then value, i = nxt, i + 1 else value = true end
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
  return table.concat(out, "\n")
end

function M.usage_lines()
  local names = {}
  for k in pairs(C) do names[#names + 1] = k end
  table.sort(names)
  local out = {}
  for _, k in ipairs(names) do out[#out + 1] = ("       payhsm %-32s %s"):format(k .. " ...", C[k].summary) end
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

--- Runs `payhsm NAME args...`; returns the exit code (0, 1 bad input, 2 usage).
function M.main(name, args)
  local cmd = C[name]
  if not cmd then return nil end
  local sub
  if cmd.subs then
    sub = args[1]
    if sub == "--help" or sub == nil then
      io.stdout:write(help(name, cmd), "\n")
      return sub and 0 or 2
    end
    if not cmd.subs[sub] then
      io.stderr:write(("payhsm %s: unknown subcommand '%s' [CLI_USAGE]\n"):format(name, tostring(sub)))
      return 2
    end
    args = { compat.unpack(args, 2) }
  end
  local ok, result = pcall(function()
    local opts = parse(args, cmd)
    if opts.help then return { help = true } end
    return { out = cmd.run(opts, sub), text = opts.text }
  end)
  if not ok then
    local e = result
    local msg, code = tostring(e), "CLI_ERROR"
    if getmetatable(e) == Fail then msg, code = e.msg, e.code end
    io.stderr:write(("payhsm %s%s: %s [%s]\n"):format(name, sub and (" " .. sub) or "", msg:gsub("\n.*", ""), code))
    return code == "CLI_USAGE" and 2 or 1
  end
  if result.help then
    io.stdout:write(help(name, cmd), "\n")
    return 0
  end
  io.stdout:write(result.text and text_of(result.out) or (result.out.raw or util.json(result.out)), "\n")
  return 0
end

return M
