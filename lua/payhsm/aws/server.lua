--- AWS Payment Cryptography as a local service: `bin/payhsm serve aws --config FILE`, a
-- pure request handler like the other simulators (new(config) -> object with
-- :handle(req) -> resp). One listener serves both planes as AWS's published models
-- define them: the control plane is AWS JSON 1.0 (POST / with X-Amz-Target:
-- PaymentCryptographyControlPlane.<Operation>), the data plane REST-JSON paths
-- (payhsm.aws.data). Every request is authenticated by AWS Signature
-- Version 4 with the configured credentials (service name payment-cryptography).
--
--   local svc = require("payhsm.aws.server").new{
--     region = "us-east-1", account = "111122223333",
--     credentials = {AKIDEXAMPLE = "secret access key", ...},
--     store = <a payhsm store>,                 -- bin/payhsm serve opens it (sqlite default)
--     storage_key = {algorithm = "AES_256", hex = "..."},   -- the local master key, or
--     storage_key_file = "payhsm-aws.lmk",      -- where it is made and kept (see docs/aws.md)
--     clock = os.time, clock_skew = 300, throttle = {rate = 100, burst = 200},
--   }
local hsm = require "payhsm"
local cjson = require "cjson.safe"
local errors = require "payhsm.aws.errors"
local shapes = require "payhsm.aws.shapes"
local sigv4 = require "payhsm.aws.sigv4"
local keystore = require "payhsm.aws.keystore"
local control = require "payhsm.aws.control"
local exchange = require "payhsm.aws.exchange"
local data = require "payhsm.aws.data"
local util = require "payhsm.util"

local M = {}

M.SERVICE = "payment-cryptography"
M.TARGET_PREFIX = "PaymentCryptographyControlPlane."

--- Every configuration key `serve aws` accepts; any other is refused (a typo must not
-- silently change behaviour). listen, tls, store and tick_interval are read by the
-- serve front (payhsm.server); log by the handler.
M.CONFIG_KEYS = { listen = true, tls = true, store = true, region = true, account = true, credentials = true,
  storage_key = true, storage_key_file = true, clock = true, clock_skew = true, throttle = true, log = true,
  tick_interval = true }

--- The path as the SDKs send it (payment-cryptography-data-2022-02-03: the only label is
-- {KeyIdentifier} in /keys/{KeyIdentifier}/encrypt|decrypt|reencrypt, one segment, so a
-- "/" inside it, as in a key ARN, went as %2F).
function M.wire_path(path)
  local label, op = path:match("^/keys/(.+)/(%l+)$")
  if label and (op == "encrypt" or op == "decrypt" or op == "reencrypt") then
    return "/keys/" .. sigv4.uri_encode(label) .. "/" .. op
  end
  return sigv4.uri_encode(path, true)
end

local OPERATIONS = {}
for _, name in ipairs { "CreateKey", "GetKey", "ListKeys", "DeleteKey", "RestoreKey", "StartKeyUsage",
  "StopKeyUsage", "CreateAlias", "GetAlias", "UpdateAlias", "DeleteAlias", "ListAliases", "TagResource",
  "UntagResource", "ListTagsForResource" } do OPERATIONS[name] = control[name] end
for _, name in ipairs { "ImportKey", "ExportKey", "GetParametersForImport", "GetParametersForExport",
  "GetPublicKeyCertificate" } do OPERATIONS[name] = exchange[name] end
-- payhsm.http's limits for this system (lua/payhsm/server.lua): the largest legitimate
-- request is a TR-34 ImportKey (AWS Payment Cryptography API reference, ImportTr34KeyBlock:
-- WrappedKeyBlock up to 9,984 characters, SigningKeyCertificate up to 32,768); 64 KiB.
M.max_body = 65536
M.single_headers = { "x-amz-target", "x-amz-date", "x-amz-content-sha256" }
M.OPERATIONS = OPERATIONS

--- Where the local master key is made and kept when the config names neither
-- storage_key nor storage_key_file (durable stores only; relative to the working
-- directory, like sqlite's default payhsm.db).
M.DEFAULT_KEY_FILE = "payhsm-aws.lmk"

local Service = {}
Service.__index = Service

local function check_config(cfg)
  for k in pairs(cfg) do
    if not M.CONFIG_KEYS[k] then
      local names = {}
      for n in pairs(M.CONFIG_KEYS) do names[#names + 1] = n end
      table.sort(names)
      error(("aws: unknown config key '%s' (expected one of: %s)"):format(tostring(k), table.concat(names, ", ")), 0)
    end
  end
  assert(type(cfg.region) == "string" and cfg.region:match("^%l%l%-%l+%-%d+$"),
    "aws: config needs region, e.g. \"us-east-1\"")
  assert(type(cfg.account) == "string" and cfg.account:match("^%d+$") and #cfg.account == 12,
    "aws: config needs account, 12 digits, e.g. \"111122223333\"")
  assert(type(cfg.credentials) == "table" and next(cfg.credentials),
    "aws: config needs credentials = {[access_key_id] = secret_access_key}")
  for akid, secret in pairs(cfg.credentials) do
    assert(type(akid) == "string" and akid:match("^%w+$") and type(secret) == "string" and #secret > 0,
      "aws: credentials must map access key ids (letters and digits) to secret access keys (strings)")
  end
  if cfg.throttle then
    assert(type(cfg.throttle) == "table" and tonumber(cfg.throttle.rate) and tonumber(cfg.throttle.rate) > 0,
      "aws: throttle = {rate = requests per second, burst = requests}")
  end
end

-- The local master key: storage_key from the config, else the one kept in
-- storage_key_file (made there, readable by the owner only, on the first start).
local function local_master_key(cfg, store)
  local spec = cfg.storage_key
  if not spec and cfg.log then
    cfg.log(("aws: no storage_key configured: the local master key is %s; configure storage_key"):format(
      cfg.storage_key_file and ("kept in clear in " .. cfg.storage_key_file)
        or "random and lives only as long as this process"))
  end
  if not spec and cfg.storage_key_file then
    local f = io.open(cfg.storage_key_file, "rb")
    local hex = f and f:read("*a"):match("^%s*(%x+)%s*$")
    if f then f:close() end
    if not hex then
      assert(not f, "aws: storage_key_file " .. cfg.storage_key_file .. " does not hold a hex AES-256 key")
      local k = hsm.key.generate("AES_256")
      hex = k:export()
      k:close()
      assert(hsm.core.write_secret_file(cfg.storage_key_file, hex .. "\n")) -- 0600, new file only
    end
    spec = { algorithm = "AES_256", hex = hex }
  end
  local lmk
  if spec then
    assert(type(spec) == "table" and (spec.algorithm or "AES_256") == "AES_256" and type(spec.hex) == "string",
      "aws: storage_key = {algorithm = \"AES_256\", hex = ...}")
    local msg
    lmk, msg = hsm.key.import("AES_256", spec.hex, { usage = "K0", local_master = true })
    assert(lmk, "aws: storage_key: " .. tostring(msg))
  else
    lmk = hsm.key.generate("AES_256", { usage = "K0", local_master = true }) -- memory stores: gone with the process
  end
  util.check_storage_key(store, keystore.LMK_NAME, lmk, "aws",
    "configure the storage_key (or storage_key_file) the store was written under; refusing to start")
  return lmk
end

--- Builds the service from its config (see the header). Raises on a broken config.
function M.new(cfg)
  assert(type(cfg) == "table", "aws.new(config)")
  check_config(cfg)
  local store = cfg.store or require("payhsm.store.memory").new { clock = cfg.clock }
  local memory = getmetatable(store) == getmetatable(require("payhsm.store.memory").new())
  if not cfg.storage_key and not cfg.storage_key_file and not memory then
    cfg.storage_key_file = M.DEFAULT_KEY_FILE
  end
  local clock = cfg.clock or os.time
  local self = setmetatable({
    region = cfg.region, account = cfg.account, clock = clock, log = cfg.log, store = store,
    verifier = sigv4.verifier(cfg.credentials, cfg.region, M.SERVICE, { skew = tonumber(cfg.clock_skew) or 300,
      wire_path = M.wire_path }),
    throttle = cfg.throttle, buckets = {},
  }, Service)
  if cfg.throttle then
    local ok, http = pcall(require, "payhsm.http")
    self.monotonic = ok and http.clock or os.time -- hosts without payhsm.http: whole seconds
  end
  self.keys = keystore.new { store = store, lmk = local_master_key(cfg, store), region = cfg.region,
    account = cfg.account, clock = clock }
  return self
end

-- Token bucket per access key (opts throttle = {rate, burst}): ThrottlingException past it.
function Service:_throttled(akid)
  local t = self.throttle
  if not t then return false end
  local now = self.monotonic()
  local b = self.buckets[akid]
  local burst = tonumber(t.burst) or tonumber(t.rate)
  if not b then b = { tokens = burst, at = now } self.buckets[akid] = b end
  b.tokens = math.min(burst, b.tokens + (now - b.at) * t.rate)
  b.at = now
  if b.tokens < 1 then return true end
  b.tokens = b.tokens - 1
  return false
end

function Service:_failure(err)
  self.last_error = tostring(err)
  if self.log then self.log("aws: internal error: " .. self.last_error) end
end

function Service:_control(op, req, rid)
  local fn = OPERATIONS[op]
  if not fn then
    return errors.response("UnknownOperationException", "Unknown operation " .. op, rid)
  end
  local input = cjson.decode(req.body ~= "" and req.body or "{}")
  if type(input) ~= "table" then
    return errors.response("SerializationException", "The request body is not a JSON object", rid)
  end
  local ok, msg = shapes.validate(op, input)
  if not ok then return errors.response("ValidationException", msg, rid) end
  local done, out = pcall(fn, self, input)
  if done then return errors.ok(out, rid) end
  if type(out) == "table" and out.aws then return errors.response(out.aws, out.message, rid, out.extra) end
  self:_failure(out)
  return errors.response("InternalServerException", "The request processing has failed because of an unknown "
    .. "error, exception or failure (request " .. rid .. ")", rid)
end

--- Handles one request {method, path, query, headers (lower-case names), body} and
-- returns {status, headers, body}. Authentication first (SigV4), then the control
-- plane by X-Amz-Target or the data plane by path.
function Service:handle(req)
  local rid = util.uuid()
  local akid, refusal = self.verifier:verify(req, self.clock())
  if not akid then return errors.response(refusal.type, refusal.message, rid) end
  if self:_throttled(akid) then
    return errors.response("ThrottlingException", "Rate exceeded", rid)
  end
  local h = req.headers or {}
  local target = h["x-amz-target"]
  if target then
    if req.method ~= "POST" or req.path ~= "/" then
      return errors.response("UnknownOperationException", "Control-plane requests are POST /", rid)
    end
    if target:sub(1, #M.TARGET_PREFIX) ~= M.TARGET_PREFIX then
      return errors.response("UnknownOperationException", "Unknown X-Amz-Target " .. target, rid)
    end
    local ok, resp = pcall(self._control, self, target:sub(#M.TARGET_PREFIX + 1), req, rid)
    if ok then return resp end
    self:_failure(resp)
    return errors.response("InternalServerException", "The request processing has failed because of an unknown "
      .. "error, exception or failure (request " .. rid .. ")", rid)
  end
  local ok, resp = pcall(data.handle, self, req, rid)
  if not ok then
    self:_failure(resp)
    return data.response("InternalServerException", "The request processing has failed because of an unknown "
      .. "error, exception or failure (request " .. rid .. ")", rid)
  end
  if resp then return resp end
  return errors.response("UnknownOperationException", "No operation for " .. tostring(req.method) .. " "
    .. tostring(req.path), rid)
end

-- The service skeleton with AWS's error shape: server.lua hands its answers to payhsm.http
-- for the refusals made before the handler runs (control bytes, repeated headers, body over
-- max_body, a failed handler).
M.service = errors.service

return M
