--- A Lua client for AWS Payment Cryptography's control plane (API reference
-- 2021-09-14) and data plane (2022-02-03), signing every request with AWS Signature
-- Version 4: usable against `bin/payhsm serve aws` and against AWS itself.
--
--   local aws = require "payhsm.aws"
--   local pc = aws.new{endpoint = "http://127.0.0.1:9000", region = "us-east-1",
--                      access_key = "AKIDEXAMPLE", secret_key = "..."}
--   -- endpoint defaults to https://controlplane.payment-cryptography.REGION.amazonaws.com
--   local out, err = pc:CreateKey{Exportable = true, KeyAttributes = {
--       KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY", KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_256",
--       KeyModesOfUse = {Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true}}}
--   -- out.Key.KeyArn ...; on failure out is nil and err = {type =, message =, status =}
--
--   local out = pc:GenerateMac{KeyIdentifier = "alias/mac", MessageData = "0102...",
--                              GenerationAttributes = {Algorithm = "CMAC"}}   -- data plane
--
-- Every operation takes and returns tables with AWS's member names; data-plane
-- operations go to their REST paths (the key in /keys/{KeyIdentifier}/encrypt is taken
-- from the input) at data_endpoint (default: endpoint when given, else
-- https://dataplane.payment-cryptography.REGION.amazonaws.com). Options:
-- session_token, timeout (seconds), tls = {cafile =} for https endpoints other than
-- AWS's own (the certificate must chain to cafile, default the system's CA bundle, and
-- name the endpoint's host: SNI is sent), clock (function returning seconds; a test hook).
local cjson = require "cjson.safe"
local sigv4 = require "payhsm.aws.sigv4"

local M = {}

M.SERVICE = "payment-cryptography"
M.TARGET_PREFIX = "PaymentCryptographyControlPlane."

--- The control-plane operations (AWS's names), each a method of the client.
M.OPERATIONS = { "CreateAlias", "CreateKey", "DeleteAlias", "DeleteKey", "ExportKey", "GetAlias", "GetKey",
  "GetParametersForExport", "GetParametersForImport", "GetPublicKeyCertificate", "ImportKey", "ListAliases",
  "ListKeys", "ListTagsForResource", "RestoreKey", "StartKeyUsage", "StopKeyUsage", "TagResource",
  "UntagResource", "UpdateAlias" }

local Client = {}
Client.__index = Client

--- The data-plane operations (AWS's names) and their REST paths (POST), each a method.
M.DATA_OPERATIONS = {
  DecryptData = "/keys/{KeyIdentifier}/decrypt", EncryptData = "/keys/{KeyIdentifier}/encrypt",
  ReEncryptData = "/keys/{IncomingKeyIdentifier}/reencrypt",
  GenerateAs2805KekValidation = "/as2805kekvalidation/generate",
  GenerateCardValidationData = "/cardvalidationdata/generate", VerifyCardValidationData = "/cardvalidationdata/verify",
  GenerateMac = "/mac/generate", VerifyMac = "/mac/verify", GenerateMacEmvPinChange = "/macemvpinchange/generate",
  GeneratePinData = "/pindata/generate", VerifyPinData = "/pindata/verify", TranslatePinData = "/pindata/translate",
  TranslateKeyMaterial = "/keymaterial/translate", VerifyAuthRequestCryptogram = "/cryptogram/verify",
}

local ALLOWED = { data_endpoint = true, endpoint = true, region = true, access_key = true, secret_key = true,
  session_token = true,
  timeout = true, tls = true, clock = true }

--- Parses "http(s)://host[:port]" -> scheme, host, port.
function M.parse_endpoint(url)
  local scheme, host, port = tostring(url):match("^(https?)://([^:/]+):?(%d*)/?$")
  assert(scheme, "aws: endpoint must be http(s)://host[:port], got " .. tostring(url))
  return scheme, host, tonumber(port) or (scheme == "https" and 443 or 80)
end

--- A client (see the header). Raises on a missing or unknown option.
function M.new(opts)
  assert(type(opts) == "table", "aws.new{...}")
  for k in pairs(opts) do assert(ALLOWED[k], "aws.new: unknown option '" .. tostring(k) .. "'") end
  assert(type(opts.region) == "string", "aws.new: region is required")
  assert(type(opts.access_key) == "string" and type(opts.secret_key) == "string",
    "aws.new: access_key and secret_key are required")
  local endpoint = opts.endpoint or ("https://controlplane.payment-cryptography.%s.amazonaws.com"):format(opts.region)
  local scheme, host, port = M.parse_endpoint(endpoint)
  local tls
  if scheme == "https" then -- the server certificate must chain to cafile and name the host
    tls = { cafile = (opts.tls or {}).cafile or "/etc/ssl/certs/ca-certificates.crt" }
    for k, v in pairs(opts.tls or {}) do tls[k] = v end
  end
  local http = require("payhsm.http_client").new { host = host, port = port, timeout = opts.timeout or 10,
    tls = scheme == "https" and tls or nil }
  local self = setmetatable({ opts = opts, http = http, host = host, port = port }, Client)
  local data_endpoint = opts.data_endpoint or (opts.endpoint and endpoint)
    or ("https://dataplane.payment-cryptography.%s.amazonaws.com"):format(opts.region)
  if data_endpoint == endpoint then
    self.data_http, self.data_host, self.data_port = http, host, port
  else
    local dscheme
    dscheme, self.data_host, self.data_port = M.parse_endpoint(data_endpoint)
    self.data_http = require("payhsm.http_client").new { host = self.data_host, port = self.data_port,
      timeout = opts.timeout or 10, tls = dscheme == "https" and tls or nil }
  end
  return self
end

--- Calls one control-plane operation with an input table. Returns the output table, or
-- nil and {type = AWS error type, message =, status = HTTP status} (type "transport"
-- when no answer came).
function Client:call(operation, input)
  local body = cjson.encode(input or {})
  if body == "[]" then body = "{}" end
  local req = { method = "POST", path = "/", body = body,
    headers = { host = self.host .. ":" .. self.port, ["content-type"] = "application/x-amz-json-1.0",
      ["x-amz-target"] = M.TARGET_PREFIX .. operation } }
  local o = self.opts
  sigv4.sign(req, { access_key = o.access_key, secret_key = o.secret_key, session_token = o.session_token,
    region = o.region, service = M.SERVICE, time = o.clock and o.clock() or os.time() })
  req.headers.host = nil -- http_client writes Host: host:port itself
  return self:_answer(self.http:request(req))
end

--- Calls one data-plane operation: POST to its REST path, the path's label taken from
-- the input (percent-encoded: a key ARN's "/" goes as %2F), the rest as the JSON body.
-- Results as for Client:call.
function Client:call_data(operation, input)
  local template = assert(M.DATA_OPERATIONS[operation], "aws: unknown data-plane operation " .. tostring(operation))
  local body_t = {}
  for k, v in pairs(input or {}) do body_t[k] = v end
  local path = template:gsub("{(%w+)}", function(name)
    local v = body_t[name]
    body_t[name] = nil
    return sigv4.uri_encode(tostring(v or ""))
  end)
  local body = cjson.encode(body_t)
  if body == "[]" then body = "{}" end
  local req = { method = "POST", path = path, body = body,
    headers = { host = self.data_host .. ":" .. self.data_port, ["content-type"] = "application/json" } }
  local o = self.opts
  sigv4.sign(req, { access_key = o.access_key, secret_key = o.secret_key, session_token = o.session_token,
    region = o.region, service = M.SERVICE, time = o.clock and o.clock() or os.time() })
  req.headers.host = nil
  return self:_answer(self.data_http:request(req))
end

function Client:_answer(resp, err)
  if not resp then return nil, { type = "transport", message = tostring(err) } end
  local out = cjson.decode(resp.body ~= "" and resp.body or "{}")
  if resp.status == 200 and type(out) == "table" then return out end
  local kind = resp.headers["x-amzn-errortype"] or (type(out) == "table" and out.__type) or "UnknownError"
  kind = tostring(kind):match("([^#:]+)$") or kind
  local message = type(out) == "table" and (out.message or out.Message) or resp.body
  return nil, { type = kind, message = message, status = resp.status, body = out,
    reason = type(out) == "table" and out.Reason or nil }
end

for _, op in ipairs(M.OPERATIONS) do
  Client[op] = function(self, input) return self:call(op, input) end
end

for op in pairs(M.DATA_OPERATIONS) do
  Client[op] = function(self, input) return self:call_data(op, input) end
end

--- Closes the kept-alive connections.
function Client:close()
  self.http:close()
  if self.data_http ~= self.http then self.data_http:close() end
end

return M
