--- `bin/payhsm <command>`: one subcommand per core operation, with parameter names after
-- the AWS Payment Cryptography CLI (`--key-identifier`, `--message-data`,
-- `--primary-account-number`, `--key-check-value-algorithm` ...).
--
-- Output is JSON (field names as AWS returns them) or, with --text, one value per line.
-- Bad input: exit 1 and one line `payhsm CMD: message [CODE]` on stderr; wrong usage: exit 2.
-- Secrets (keys, PINs, plaintexts) are never taken from the command line itself: a key
-- argument is `file:PATH` (hex, or `ALGORITHM:HEX`), `env:NAME`, or `-` (one line of stdin).
local hsm = require "payhsm"
local util = require "payhsm.util"
local compat = require "payhsm.compat"

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

C.mac = {
  summary = "MACs: generate | verify",
  subs = { generate = true, verify = true },
  options = { KEY, KEYALG, { "message-data", "hex" }, { "generation-attributes",
    "ISO9797_ALGORITHM1, ISO9797_ALGORITHM3, CMAC, HMAC_SHA256 ..." }, { "mac", "verify: the MAC (hex)" },
    { "mac-length", "bytes of output" }, { "padding", "ISO 9797-1 padding method 1 or 2" } },
  run = function(o, sub)
    local key = load_key(o, "key-identifier", "key-algorithm")
    local alg = required(o, "generation-attributes")
    local popts = { length = tonumber(o["mac-length"]), padding = tonumber(o.padding) }
    if sub == "generate" then
      return util.object { "Mac", call(hsm.mac.generate, key, alg, required(o, "message-data"), popts) }
    end
    local ok, msg, code = hsm.mac.verify(key, alg, required(o, "message-data"), required(o, "mac"), popts)
    if not ok then fail(code or "MAC_MISMATCH", "%s", msg or "the MAC does not verify") end
    return util.object { "Valid", true }
  end,
}

C.pin = {
  summary = "ISO 9564 PIN blocks: encrypt | decrypt | translate",
  subs = { encrypt = true, decrypt = true, translate = true },
  options = { KEY, KEYALG, { "pin-block-format", "ISO_FORMAT_0 ... ISO_FORMAT_4" },
    { "pin", "encrypt: the PIN (file:, env: or -)" }, { "primary-account-number", "the PAN" },
    { "encrypted-pin-block", "decrypt/translate: hex" },
    { "incoming-key-identifier", "translate: key in" }, { "incoming-key-algorithm", "translate" },
    { "incoming-pin-block-format", "translate" }, { "outgoing-key-identifier", "translate: key out" },
    { "outgoing-key-algorithm", "translate" }, { "outgoing-pin-block-format", "translate" },
    { "outgoing-primary-account-number", "translate: PAN for the outgoing block (default: same)" } },
  run = function(o, sub)
    local pan = o["primary-account-number"]
    if sub == "translate" then
      local kin = load_key(o, "incoming-key-identifier", "incoming-key-algorithm")
      local kout = load_key(o, "outgoing-key-identifier", "outgoing-key-algorithm")
      local out_fmt = required(o, "outgoing-pin-block-format")
      return util.object { "PinBlock", call(hsm.pin.translate, kin, required(o, "incoming-pin-block-format"),
        required(o, "encrypted-pin-block"), kout, out_fmt, required(o, "primary-account-number"),
        o["outgoing-primary-account-number"]), "PinBlockFormat", out_fmt }
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
  { "session-key-derivation", "EMV_COMMON, MASTERCARD, EMV2000, VISA, AMEX" },
  { "primary-account-number", "the PAN" }, { "pan-sequence-number", "2 digits" },
  { "application-transaction-counter", "ATC, 4 hex" }, { "unpredictable-number", "8 hex (MASTERCARD)" },
  { "transaction-data", "hex" }, { "padding", "ISO 9797-1 method 1 or 2 (default: the derivation's)" },
  { "auth-request-cryptogram", "the ARQC (verify, arpc)" } }

local function emv_params(o)
  return { mode = o["major-key-derivation-mode"] or "EMV_OPTION_A", derivation = required(o, "session-key-derivation"),
    pan = required(o, "primary-account-number"), psn = o["pan-sequence-number"] or "00",
    atc = required(o, "application-transaction-counter"), un = o["unpredictable-number"],
    data = o["transaction-data"], padding = tonumber(o.padding), arqc = o["auth-request-cryptogram"] }
end

C.arqc = {
  summary = "EMV ARQC: generate | verify",
  subs = { generate = true, verify = true },
  options = EMV_OPTS,
  run = function(o, sub)
    local imk = load_key(o, "key-identifier", "key-algorithm")
    local p = emv_params(o)
    p.data = required(o, "transaction-data")
    if sub == "generate" then return util.object { "AuthRequestCryptogram", call(hsm.emv.generate_arqc, imk, p) } end
    required(o, "auth-request-cryptogram")
    local ok, msg, code = hsm.emv.verify_arqc(imk, p)
    if not ok then fail(code or "ARQC_MISMATCH", "%s", msg or "the ARQC does not verify") end
    return util.object { "Valid", true }
  end,
}

local ARPC_OPTS = {}
for _, v in ipairs(EMV_OPTS) do ARPC_OPTS[#ARPC_OPTS + 1] = v end
ARPC_OPTS[#ARPC_OPTS + 1] = { "method", "1 (ARC) or 2 (CSU)" }
ARPC_OPTS[#ARPC_OPTS + 1] = { "auth-response-code", "method 1: 4 hex" }
ARPC_OPTS[#ARPC_OPTS + 1] = { "card-status-update", "method 2: 8 hex" }
ARPC_OPTS[#ARPC_OPTS + 1] = { "proprietary-authentication-data", "method 2: hex (optional)" }

C.arpc = {
  summary = "EMV ARPC (method 1 or 2)",
  options = ARPC_OPTS,
  run = function(o)
    local imk = load_key(o, "key-identifier", "key-algorithm")
    local p = emv_params(o)
    required(o, "auth-request-cryptogram")
    p.method = tonumber(o.method or "1")
    p.arc, p.csu, p.proprietary = o["auth-response-code"], o["card-status-update"], o["proprietary-authentication-data"]
    return util.object { "AuthResponseValue", call(hsm.emv.generate_arpc, imk, p) }
  end,
}

C.as2805 = {
  summary = "AS2805 KEK validation: request | response",
  subs = { request = true, response = true },
  options = { { "key-identifier", "the KEK (file:, env: or -)" }, KEYALG,
    { "derive-key-algorithm", "request: TDES_2KEY (default) or TDES_3KEY" },
    { "random-key-max-length", "request: BYTES_8, BYTES_16 (default), BYTES_24" },
    { "variant-mask", "VARIANT_MASK_82C0 (default) or VARIANT_MASK_82" },
    { "random-key-send", "response: the KRs (hex)" } },
  run = function(o, sub)
    local kek = load_key(o, "key-identifier", "key-algorithm")
    local mask = o["variant-mask"] or "VARIANT_MASK_82C0"
    if sub == "request" then
      local r = call(hsm.as2805.kek_validation_request, kek, { derive_algorithm = o["derive-key-algorithm"] or "TDES_2KEY",
        random_key_max_length = o["random-key-max-length"] or "BYTES_16", variant_mask = mask })
      return util.object { "RandomKeySend", r.random_key_send, "RandomKeyReceive", r.random_key_receive,
        "KeyCheckValue", r.kcv }
    end
    return util.object { "RandomKeyReceive", call(hsm.as2805.kek_validation_response, kek,
      required(o, "random-key-send"), { variant_mask = mask }) }
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
