-- `serve aws`'s handler in this process, driven by signed requests as the SDKs send
-- them (SigV4, the control plane's X-Amz-Target, the data plane's REST paths), and keys
-- brought in as an issuer brings them: the KEK as a key cryptogram (RSA-OAEP under
-- GetParametersForImport's certificate), working keys as TR-31 blocks under it.
local cjson = require "cjson"
local hsm = require "payhsm"
local sigv4 = require "payhsm.aws.sigv4"
local aws = require "payhsm.aws"
local util = require "payhsm.util"

local M = {}

M.AKID, M.SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

--- A service with a memory store.
function M.service()
  return require("payhsm.aws.server").new { region = "us-east-1", account = "111122223333",
    credentials = { [M.AKID] = M.SECRET } }
end

local function send(svc, req, decoded_path)
  sigv4.sign(req, { access_key = M.AKID, secret_key = M.SECRET, region = "us-east-1",
    service = "payment-cryptography", time = os.time() })
  req.path = decoded_path
  local resp = svc:handle(req)
  local out = cjson.decode(resp.body)
  if resp.status == 200 then return out end
  return nil, { type = resp.headers["x-amzn-ErrorType"], message = out.message, status = resp.status,
    reason = out.Reason }
end

--- A control-plane call: output, or nil and {type, message, status}.
function M.control(svc, op, input)
  local body = cjson.encode(input)
  return send(svc, { method = "POST", path = "/", body = body, headers = { host = "localhost",
    ["content-type"] = "application/x-amz-json-1.0", ["x-amz-target"] = "PaymentCryptographyControlPlane." .. op } },
    "/")
end

--- A data-plane call (the label of /keys/{KeyIdentifier}/... from the input).
function M.data(svc, op, input)
  local t = {}
  for k, v in pairs(input) do t[k] = v end
  local decoded
  local wire = aws.DATA_OPERATIONS[op]:gsub("{(%w+)}", function(name)
    local v = t[name]
    t[name] = nil
    decoded = v
    return sigv4.uri_encode(v)
  end)
  local path = decoded and aws.DATA_OPERATIONS[op]:gsub("{%w+}", function() return decoded end)
    or aws.DATA_OPERATIONS[op]
  local body = next(t) and cjson.encode(t) or "{}"
  return send(svc, { method = "POST", path = wire, body = body, headers = { host = "localhost",
    ["content-type"] = "application/json" } }, path)
end

local MODES = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true }

--- Imports a KEK (AES_256 or TDES) of clear hex as a key cryptogram; returns its ARN
-- and the local payhsm key.
function M.import_kek(svc, alg, hex)
  local p = assert(M.control(svc, "GetParametersForImport", { KeyMaterialType = "KEY_CRYPTOGRAM",
    WrappingKeyAlgorithm = "RSA_2048" }))
  local cert = assert(hsm.core.pki.parse(util.b64decode(p.WrappingKeyCertificate)))
  local kek = assert(hsm.key.import(alg, hex, { usage = "K0", mode = "B", exportability = "E" }))
  local cryptogram = assert(hsm.core.pki.oaep_wrap(cert.public_key, kek, "SHA_256"))
  local out = assert(M.control(svc, "ImportKey", { KeyMaterial = { KeyCryptogram = { KeyAttributes = {
    KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY", KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = alg, KeyModesOfUse = MODES },
    Exportable = true, WrappedKeyCryptogram = cryptogram, ImportToken = p.ImportToken } } }))
  return out.Key.KeyArn, kek
end

local MODE_CHAR = { Generate = "G", Verify = "V", DeriveKey = "X", Encrypt = "E", Decrypt = "D",
  NoRestrictions = "N" }

--- Imports a working key of clear hex as a TR-31 block under the KEK; modes: a list of
-- AWS mode names (default: the usual pair of the usage). Returns the key's ARN.
function M.import(svc, kek_arn, kek, alg, hex, usage, modes)
  local code = usage:match("^TR31_(%w%w)_")
  local set = {}
  for _, m in ipairs(modes) do set[m] = true end
  local mode
  if set.Generate and set.Verify then mode = "C"
  elseif set.Encrypt and set.Decrypt then mode = "B"
  else mode = MODE_CHAR[modes[1]] end
  local key = assert(hsm.key.import(alg, hex, { usage = code, mode = mode, exportability = "E" }))
  local block = assert(hsm.tr31.wrap(kek, key, { version = kek.algorithm:match("^AES") and "D" or "B" }))
  local out, err = M.control(svc, "ImportKey", { KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = kek_arn,
    WrappedKeyBlock = block } } })
  assert(out, err and err.message)
  return out.Key.KeyArn, out.Key.KeyCheckValue
end

return M
