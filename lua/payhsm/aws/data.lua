--- AWS Payment Cryptography's data plane (API reference 2022-02-03) for `bin/payhsm
-- serve aws`: the REST-JSON paths routed to the operations of data_cipher, data_card,
-- data_pin, data_mac and data_emv, with what they share: the request's shape checked
-- against AWS's model (payhsm.aws.data_shapes), keys found and checked for state, key
-- usage and mode of use as AWS checks them, refusals in AWS's exception types.
--
-- Statuses are those of the data plane's model (REST-JSON): ValidationException and
-- VerificationFailedException 400, AccessDeniedException 403, ResourceNotFoundException
-- 404, ThrottlingException 429, InternalServerException 500. VerificationFailedException
-- carries Reason (INVALID_MAC, INVALID_PIN, INVALID_VALIDATION_DATA,
-- INVALID_AUTH_REQUEST_CRYPTOGRAM) and Message.
local cjson = require "cjson.safe"
local errors = require "payhsm.aws.errors"
local shapes = require "payhsm.aws.shapes"
local data_shapes = require "payhsm.aws.data_shapes"
local rules = require "payhsm.aws.rules"
local hsm = require "payhsm"

local M = {}

M.STATUS = { ValidationException = 400, VerificationFailedException = 400, AccessDeniedException = 403,
  ResourceNotFoundException = 404, ThrottlingException = 429, InternalServerException = 500,
  ConflictException = 409, ServiceUnavailableException = 503 }

--- Raises an AWS exception of the data plane inside an operation.
function M.raise(kind, message, extra)
  error({ aws = kind, message = message, extra = extra }, 0)
end

--- Refuses a request: ValidationException with message.
function M.invalid(message) M.raise("ValidationException", message) end

--- VerificationFailedException with AWS's Reason.
function M.failed(reason, message)
  M.raise("VerificationFailedException", message, { Reason = reason })
end

-- "area.fn: message" -> "message"
local function bare(msg) return (tostring(msg):gsub("^[%w_%.]+: ", "")) end

--- The result of a core function that returns value or nil, msg, code: the value, or
-- a ValidationException with the core's message.
function M.check(v, msg, code)
  if v == nil or v == false then
    if code == "KEY_USAGE" or code == "KEY_TYPE" then
      M.invalid("The key cannot be used for this operation: " .. bare(msg))
    end
    M.invalid(bare(msg or "invalid input"))
  end
  return v
end

--- A verification's result: true passes; a mismatch (codes in `mismatch`) raises
-- VerificationFailedException with reason; other failures ValidationException.
function M.verified(reason, ok, msg, code)
  if ok == true then return true end
  if code == "VERIFICATION_FAILED" or code == "MAC_MISMATCH" or code == "ARQC_MISMATCH"
    or code == "AS2805_MISMATCH" then
    M.failed(reason, ({ INVALID_MAC = "MAC verification failed", INVALID_PIN = "PIN verification failed",
      INVALID_VALIDATION_DATA = "Card validation data verification failed",
      INVALID_AUTH_REQUEST_CRYPTOGRAM = "ARQC verification failed" })[reason])
  end
  return M.check(nil, msg, code)
end

-- ---- keys -------------------------------------------------------------------------------

-- Unwrapped key objects by their stored block (a request must not pay a TR-31 unwrap);
-- at most CACHE_MAX of them, the table emptied when full.
local CACHE_MAX = 1024

--- The key an identifier names, for an operation: found (ResourceNotFoundException),
-- usable (enabled, not being deleted), of one of `usages` (AWS's KeyUsage names) with
-- the mode of use `mode` (Encrypt, Decrypt, Generate, Verify, DeriveKey; NoRestrictions
-- also passes). Returns the record (with .arn, .kcv) and the payhsm key object.
-- The record of ident, checked for use: its state, enabled, a usage of usages and the mode
-- of use mode.
local function usable(svc, ident, usages, mode, what)
  local ks = svc.keys
  local rec = ks:resolve(ident)
  local state = ks:state(rec)
  if state ~= "CREATE_COMPLETE" then
    M.invalid(("Key %s is in state %s and cannot be used"):format(ks:arn(rec.id), state))
  end
  if rec.enabled == false then M.invalid(("Key %s is disabled"):format(ks:arn(rec.id))) end
  local attrs = rec.attrs
  local fits = false
  for _, u in ipairs(usages) do if attrs.KeyUsage == u then fits = true end end
  if not fits then
    M.invalid(("KeyUsage of %s is %s; %s needs %s"):format(what or "the key", attrs.KeyUsage,
      svc._op or "this operation", table.concat(usages, " or ")))
  end
  local modes = attrs.KeyModesOfUse or {}
  if mode and not modes[mode] and not modes.NoRestrictions then
    M.invalid(("KeyModesOfUse of %s do not include %s (it has {%s})"):format(what or "the key", mode,
      rules.mode_set(modes):gsub("%+", ", ")))
  end
  return rec
end

--- The RSA key of an asymmetric record, checked as M.key checks: with private, the key
-- pair's private key (a payhsm.RsaKey, unwrapped from under the LMK); else its public key
-- (from its certificate: a key pair's, or an imported public key's).
function M.rsa_key(svc, ident, usages, mode, private, what)
  local rec = usable(svc, ident, usages, mode, what)
  if private then
    if not rec.private then
      M.invalid(("Key %s is a public key; %s needs its private key"):format(svc.keys:arn(rec.id),
        svc._op or "this operation"))
    end
    return rec, svc.keys:unwrap_rsa(rec.private)
  end
  if not rec.cert then M.invalid(("Key %s has no public key certificate"):format(svc.keys:arn(rec.id))) end
  return rec, M.check(require("payhsm.core").pki.parse(rec.cert)).public_key
end

-- AWS mode of use name -> the TR-31 mode a derived or unwrapped working key needs
local MODE_CHAR = { Encrypt = "E", Decrypt = "D", Generate = "G", Verify = "V", DeriveKey = "X" }

-- The working key of a WrappedKey (WrappedKeyMaterial: Tr31KeyBlock under the key ident
-- names, a K0/K1 key with Unwrap; or DiffieHellmanSymmetricKey, derived by ECDH with the ECC
-- key pair ident names), checked for usages and mode as a stored key is. Returns a record
-- for the answer (the ARN of ident, the KCV of the working key) and the key.
local function wrapped_key(svc, ident, w, usages, mode, what)
  local m = w.WrappedKeyMaterial
  local key, rec
  if m.Tr31KeyBlock then
    rec = usable(svc, ident, { "TR31_K0_KEY_ENCRYPTION_KEY", "TR31_K1_KEY_BLOCK_PROTECTION_KEY" }, "Unwrap", what)
    local kbpk = svc.keys:unwrap(rec)
    local header
    key, header = hsm.tr31.unwrap(kbpk, m.Tr31KeyBlock)
    kbpk:close()
    if not key then M.invalid("The wrapped key block does not unwrap under " .. svc.keys:arn(rec.id) .. ": "
      .. bare(header)) end
    local usage = rules.usage_name(header.usage)
    local fits = false
    for _, u in ipairs(usages) do if u == usage then fits = true end end
    if not fits then
      key:close()
      M.invalid(("The wrapped key's usage %s does not fit %s (it needs %s)"):format(usage or header.usage,
        svc._op or "this operation", table.concat(usages, " or ")))
    end
    local modes = rules.modes_of(header.mode)
    if mode and not modes[mode] and not modes.NoRestrictions then
      key:close()
      M.invalid(("The wrapped key's mode of use %s does not include %s"):format(header.mode, mode))
    end
  else
    local d = m.DiffieHellmanSymmetricKey
    key, rec = require("payhsm.aws.ecdh").derive(svc, ident, d, d.KeyAlgorithm, usages, MODE_CHAR[mode] or "N")
  end
  local kcv_alg = require("payhsm.aws.control").kcv_algorithm(key.algorithm, w.KeyCheckValueAlgorithm)
  return { id = rec.id, kcv = hsm.kcv(key, kcv_alg), attrs = { KeyUsage = rules.usage_name(key.usage),
    KeyAlgorithm = key.algorithm, KeyModesOfUse = rules.modes_of(key.mode or "N") } }, key
end

function M.key(svc, ident, usages, mode, what)
  local w = svc._wrapped and svc._wrapped[ident]
  if w then return wrapped_key(svc, ident, w, usages, mode, what) end
  local ks = svc.keys
  local rec = usable(svc, ident, usages, mode, what)
  local cache = svc.key_cache
  if not cache then cache = { n = 0 } svc.key_cache = cache end
  local key = rec.block and cache[rec.block]
  if not key then
    if not rec.block then M.invalid("Key " .. ks:arn(rec.id) .. " is an asymmetric key; this operation needs "
      .. "a symmetric key") end
    if cache.n >= CACHE_MAX then cache = { n = 0 } svc.key_cache = cache end
    key = ks:unwrap(rec)
    cache[rec.block] = key
    cache.n = cache.n + 1
  end
  return rec, key
end

--- The ARN of a record.
function M.arn(svc, rec) return svc.keys:arn(rec.id) end

--- The usages an AWS key algorithm belongs to, for messages: "TDES" or "AES" family.
function M.is_tdes(rec) return rec.attrs.KeyAlgorithm:match("^TDES") ~= nil end

-- ---- dispatch ---------------------------------------------------------------------------

--- The operations by AWS name (the data_* modules, loaded on first use: they use this one).
function M.operations()
  if not M.OPERATIONS then
    local ops = {}
    for _, mod in ipairs { "data_cipher", "data_card", "data_pin", "data_mac", "data_emv", "data_keys" } do
      for name, fn in pairs(require("payhsm.aws." .. mod)) do
        if name:match("^%u") then ops[name] = fn end
      end
    end
    M.OPERATIONS = ops
  end
  return M.OPERATIONS
end

-- A working key given wrapped in the request, and the identifier member it goes with
local WRAPPED = { WrappedKey = "KeyIdentifier", IncomingWrappedKey = "IncomingKeyIdentifier",
  OutgoingWrappedKey = "OutgoingKeyIdentifier", EncryptionWrappedKey = "EncryptionKeyIdentifier" }

-- Routes: {pattern, operation, label member}, from the model's request paths.
local ROUTES, EXACT = {}, {}
for op, path in pairs(data_shapes.paths) do
  local label = path:match("{(%w+)}")
  if not label then EXACT[path] = op end
  local pattern = "^" .. path:gsub("{%w+}", "@"):gsub("%p", "%%%0"):gsub("%%@", "(.+)") .. "$"
  ROUTES[#ROUTES + 1] = { pattern, op, label }
end
table.sort(ROUTES, function(a, b) return a[2] < b[2] end)
M.ROUTES = ROUTES

--- The operation a POST path names, and the input member its label fills (or nil).
function M.route(path)
  local op = EXACT[path]
  if op then return op end
  for _, r in ipairs(ROUTES) do
    local label = path:match(r[1])
    if label then return r[2], r[3], r[3] and label end
  end
end

local function response(kind, message, rid, extra)
  local resp = errors.response(kind, message, rid, extra)
  resp.status = M.STATUS[kind] or 500
  resp.headers["Content-Type"] = "application/json"
  return resp
end
M.response = response

--- Answers one data-plane request (already authenticated): POST only.
function M.handle(svc, req, rid)
  local op, member, label = M.route(req.path or "")
  if not op or req.method ~= "POST" then return nil end
  local input = cjson.decode(req.body ~= "" and req.body or "{}")
  if type(input) ~= "table" then
    return response("ValidationException", "The request body is not a JSON object", rid)
  end
  local ok, msg = shapes.validate(op, input)
  if ok and member then -- the path label: AWS's KeyArnOrKeyAliasType
    ok, msg = shapes.validate("GetKey", { KeyIdentifier = label })
    msg = msg and msg:gsub("'keyIdentifier'", "'" .. member:sub(1, 1):lower() .. member:sub(2) .. "'")
    input[member] = label
  end
  if not ok then return response("ValidationException", msg, rid) end
  local wrapped
  for name, ident in pairs(WRAPPED) do
    local w, id = input[name], input[ident]
    if w and id then
      wrapped = wrapped or {}
      if wrapped[id] then
        return response("ValidationException", "Two wrapped keys go with one key identifier " .. id, rid)
      end
      wrapped[id] = w
    end
  end
  local fn = M.operations()[op]
  svc._op, svc._wrapped = op, wrapped
  local done, out = pcall(fn, svc, input)
  svc._op, svc._wrapped = nil, nil
  if done then
    local resp = errors.ok(out, rid)
    resp.headers["Content-Type"] = "application/json"
    return resp
  end
  if type(out) == "table" and out.aws then
    return response(out.aws, out.message, rid, out.extra)
  end
  svc:_failure(out)
  return response("InternalServerException", "The request processing has failed because of an unknown "
    .. "error, exception or failure (request " .. rid .. ")", rid)
end

return M
