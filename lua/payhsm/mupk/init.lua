--- The multi-use public key service of Commerce Hub's multi-use public keys as a
-- pure request handler: a spec, a scenario and `bin/payhsm serve mupk`
-- drive this same code.
--
--   local svc = require("payhsm.mupk").new{
--     store = require("payhsm.store.memory").new(),  -- or sqlite / redis
--     clock = os.time,                 -- seconds; scenarios pass a simulated one
--     storage_key = {algorithm = "AES_256", hex = "..."},  -- local master key (see below)
--     key_lifetime = 20 * 86400,       -- seconds a generated key pair is valid (Commerce Hub's example)
--     webhook_url = "http://127.0.0.1:9000/hooks",      -- default expiry notification URL
--     merchants = {["123456789012345"] = {webhook_url = "..."}},  -- per-merchant URLs
--     webhook_hours = {47, 44, 41},    -- notifications before expiry (Commerce Hub); any order,
--                                      -- sorted largest first; positive, distinct (else raises)
--     webhook_retry = 600,             -- seconds between attempts of a failed notification
--     webhook_cafile = path,           -- CA file for https webhook URLs (default: the system's)
--     webhook_post = fn(url, body, headers) -> status | nil, err  -- transport (default: HTTP POST)
--     webhook_pump = fn(),             -- called while the default transport waits (same-thread listeners)
--     basic_auth = {user = "password"},  -- HTTP Basic on every endpoint, or
--     tls = {cert =, key =, client_ca =},  -- mutual TLS (payhsm.http checks the client certificate);
--     auth = "none",                   -- or neither, said explicitly (local experiments; logs a warning)
--     generate_rate = {per_minute = 10},  -- generations a merchant may ask for per minute (429 beyond)
--     cache_size = 1024,               -- unwrapped private keys kept (at most 2 * cache_size)
--   }
--   svc:handle{method =, path =, headers =, body =} --> {status =, headers =, body =}
--   svc:tick()  -- sends the expiry notifications that are due; call after advancing the clock
--
-- Endpoints:
--   POST /security/v1/keys/generate           Generate Key (Commerce Hub)    201
--   POST /security/v1/keys/{keyId}/revoke      Revoke Key (Commerce Hub)      201
--   GET  /security/v1/keys/{keyId}             a key's details and status (payhsm's)
--   POST /security/v1/transactions             an offline (store-and-forward) charge whose card
--                                              data is sealed under a key pair (payhsm's)  201
--
-- Key status at an instant t (computed from the stored record, so it changes with the clock):
--   REVOKED   revoked through the revoke endpoint (terminal)
--   INACTIVE  t is outside [validFrom, validTo]: not yet valid, or expired (terminal once expired)
--   LEGACY    valid, but the merchant has a newer valid key (still accepted, not recommended)
--   ACTIVE    valid and the merchant's newest valid key (the one to use)
-- Private keys are stored only as RFC 5649 wraps (core.rsa, csrc/rsa.c) under the local
-- master key (LMK): `storage_key` from the config, or else one generated per process
-- (memory stores only). The store keeps the LMK's check value and the service refuses
-- to start on a store written under another.
local hsm = require "payhsm"
local core = require "payhsm.core"
local util = require "payhsm.util"
local service = require "payhsm.service"
local cjson = require "cjson.safe"
local webhook = require "payhsm.mupk.webhook"
local expiry = require "payhsm.mupk.expiry"
local cache = require "payhsm.cache"

local rsa = core.rsa

local M = {}

M.PATHS = {
  generate = "/security/v1/keys/generate",
  keys = "/security/v1/keys/",
  transactions = "/security/v1/transactions",
}

--- Every refusal: HTTP status, error code, message (docs/public-keys.md, "Error codes").
-- payhsm.http's limits for this system (lua/payhsm/server.lua): the largest request is a
-- transaction of about 1,100 bytes (measured over spec/mupk_serve_spec.lua); 16 KiB of room.
M.max_body = 16384
M.single_headers = { "client-request-id" }

M.ERRORS = {
  BAD_REQUEST      = { 400, "400", "Bad request" },
  UNAUTHORIZED     = { 401, "401", "Unauthorized" },
  NOT_FOUND        = { 404, "404", "Resource not found" },
  METHOD           = { 405, "405", "Method not allowed" },
  INTERNAL         = { 500, "500", "Internal server error" },
  MERCHANT_ID      = { 400, "1001", "merchantDetails.merchantId is required" },
  VALIDITY         = { 400, "1002", "Requested key validity is not acceptable" },
  KEY_NOT_FOUND    = { 404, "1010", "Key not found for this merchant" },
  KEY_ID           = { 400, "1013", "keyId must be at most 64 characters" },
  ALREADY_REVOKED  = { 409, "1011", "Key has already been revoked" },
  KEY_EXPIRED_REVOKE = { 409, "1012", "Key has expired and cannot be revoked" },
  KEY_EXPIRED      = { 422, "1020", "Encryption key has expired" }, -- also for a revoked key (details)
  KEY_NOT_YET_VALID = { 422, "1022", "Encryption key is not yet valid" },
  DECRYPTION       = { 422, "1023", "Encrypted data cannot be decrypted with this key" },
  CARD_DATA        = { 422, "1024", "Decrypted card data is not valid" },
  AMOUNT           = { 400, "1025", "amount.total must be a positive number and currency a 3-letter code" },
  AMOUNT_LIMIT     = { 422, "1026", "Amount exceeds the processing limit for offline transactions" },
  TOO_MANY_REQUESTS = { 429, "429", "Too many requests" }, -- payhsm's: generate_rate (RFC 6585 section 4)
}

local DAY = 86400
local MAX_KEY_ID = 64 -- Commerce Hub: keyId, maximum length 64
local Service = {}
Service.__index = Service

local refusal = service.refusal

-- ---- time ------------------------------------------------------------------------------

--- "YYYY-MM-DDThh:mm:ss[.fff]Z" -> epoch seconds (the fraction is dropped), or nil.
function M.parse_time(s) return util.parse_time(s, { fraction = true }) end

--- epoch seconds -> "YYYY-MM-DDThh:mm:ssZ" (the format of Commerce Hub's field table)
M.format_time = util.format_time

-- ---- construction ------------------------------------------------------------------------

-- Authentication, as the other servers have it: HTTP Basic (basic_auth), mutual TLS
-- (tls.client_ca: payhsm.http refuses a client without a certificate from that CA before
-- the handler runs), or both. Neither refuses to start, unless auth = "none" says so.
local function check_auth(cfg, log)
  local basic, mtls = cfg.basic_auth, type(cfg.tls) == "table" and cfg.tls.client_ca ~= nil
  assert(basic == nil or (type(basic) == "table" and next(basic) ~= nil),
    'mupk: basic_auth must be {user = "password", ...}')
  if cfg.auth ~= nil then
    assert(cfg.auth == "none", 'mupk: auth is "none" or absent (then basic_auth or tls.client_ca is required)')
    assert(not basic and not mtls, 'mupk: auth = "none" contradicts basic_auth and tls.client_ca')
    if log then
      log('mupk: WARNING: auth = "none": every client may generate, read and revoke keys; for local experiments only')
    end
  elseif not basic and not mtls then
    error('mupk: config needs basic_auth = {user = "password"} or tls.client_ca (mutual TLS); '
      .. 'auth = "none" turns authentication off, for local experiments only', 0)
  end
end

function M.new(cfg)
  util.checkfields(cfg, "mupk config", { "storage_key", "merchants", "key_lifetime", "max_key_lifetime",
    "max_offline_amount", "webhook_url", "webhook_hours", "webhook_retry", "webhook_timeout", "webhook_cafile",
    "webhook_pump", "webhook_post", "basic_auth", "auth", "generate_rate", "cache_size", "listen", "tls",
    "tick_interval", "store", "log", "clock" })
  cfg = cfg or {}
  check_auth(cfg, cfg.log)
  util.checkfields(cfg.generate_rate, "mupk generate_rate", { "per_minute" })
  local per_minute = tonumber((cfg.generate_rate or {}).per_minute) or 10
  assert(per_minute >= 1, "mupk: generate_rate.per_minute must be at least 1")
  local cache_size = tonumber(cfg.cache_size) or 1024
  assert(cache_size >= 1, "mupk: cache_size must be at least 1")
  local clock = cfg.clock or os.time
  local self = setmetatable({
    store = cfg.store or require("payhsm.store.memory").new { clock = clock },
    clock = clock,
    log = cfg.log,
    users = cfg.basic_auth,
    lifetime = tonumber(cfg.key_lifetime) or 20 * DAY,
    max_lifetime = tonumber(cfg.max_key_lifetime) or 90 * DAY,
    webhook_url = cfg.webhook_url,
    merchants = cfg.merchants or {},
    hours = M.check_hours(cfg.webhook_hours or { 47, 44, 41 }),
    retry = tonumber(cfg.webhook_retry) or 600,
    max_amount = cfg.max_offline_amount and tonumber(cfg.max_offline_amount),
    per_minute = per_minute,
    -- keyId -> {key = RsaKey, validTo =}: unwrapped private keys, closed at expiry, on
    -- revoke, or when the bounded cache drops them (least recently used first)
    cache = cache.new(cache_size, function(c) c.key:close() end),
    wake = {},    -- keyId -> instant before which tick has nothing to do for that key
    index_text = nil, index = nil, -- the last "mupk:pending" text read and its decoding
  }, Service)
  self.post = cfg.webhook_post or function(url, body, headers)
    return webhook.post(url, body, headers, { timeout = cfg.webhook_timeout or 5, pump = cfg.webhook_pump,
      cafile = cfg.webhook_cafile })
  end
  if cfg.storage_key then
    self.lmk = hsm.key.import(cfg.storage_key.algorithm or "AES_256", cfg.storage_key.hex,
      { usage = "K0", local_master = true })
    assert(self.lmk, "mupk: storage_key is not a valid key")
    assert(self.lmk.algorithm == "AES_256", "mupk: storage_key must be AES_256")
  else
    self.lmk = hsm.key.generate("AES_256", { usage = "K0", local_master = true })
    if self.log then
      self.log("mupk: no storage_key configured: the local master key is random and lives only as long as this "
        .. "process (keys in a durable store become unusable at restart); configure storage_key")
    end
  end
  util.check_storage_key(self.store, "mupk:lmk", self.lmk, "mupk", "configure storage_key; refusing to start")
  self:_build_index()
  return self
end

--- Validates webhook_hours and returns a copy sorted largest first (payhsm.mupk.expiry).
M.check_hours = expiry.check_hours

-- ---- store records -------------------------------------------------------------------------

local function key_key(id) return "mupk:key:" .. id end
local function merchant_key(mid) return "mupk:merchant:" .. mid end

function Service:record(id)
  local text = self.store:get(key_key(id))
  if not text then return nil end
  return assert(cjson.decode(text), "mupk: corrupt key record")
end

--- The merchant's key records, oldest first.
function Service:merchant_keys(mid)
  local ids = cjson.decode(self.store:get(merchant_key(mid)) or "[]") or {}
  local out = {}
  for _, id in ipairs(ids) do out[#out + 1] = self:record(id) end
  table.sort(out, function(a, b)
    if a.validFrom ~= b.validFrom then return a.validFrom < b.validFrom end
    return a.seq < b.seq
  end)
  return out
end

local function valid_at(rec, t) return not rec.revokedAt and rec.validFrom <= t and t <= rec.validTo end

--- Status of a key record at instant t (see the header).
function Service:status(rec, t)
  t = t or self.clock()
  if rec.revokedAt then return "REVOKED" end
  if not valid_at(rec, t) then return "INACTIVE" end
  for _, other in ipairs(self:merchant_keys(rec.merchantId)) do
    if other.keyId ~= rec.keyId and valid_at(other, t) and
       (other.validFrom > rec.validFrom or (other.validFrom == rec.validFrom and other.seq > rec.seq)) then
      return "LEGACY"
    end
  end
  return "ACTIVE"
end

-- Whether the merchant has started a new key exchange: a key, not revoked, generated
-- after this one and valid beyond this one's expiry.
function Service:has_newer(rec)
  for _, other in ipairs(self:merchant_keys(rec.merchantId)) do
    if other.keyId ~= rec.keyId and not other.revokedAt and other.seq > rec.seq and other.validTo > rec.validTo then
      return true
    end
  end
  return false
end

function Service:_next_seq()
  return self.store:update("mupk:seq", function(old)
    local n = (tonumber(old) or 0) + 1
    return tostring(n), n
  end)
end

--- The unwrapped private key of a valid record, cached until the key expires or is
-- revoked (then closed: the EVP_PKEY is freed and its numbers cleared by OpenSSL).
function Service:private_key(rec)
  local c = self.cache:get(rec.keyId)
  if c then return c.key end
  local k = rsa.unwrap(self.lmk, rec.wrappedPrivateKey)
  if not k then error("mupk: stored private key " .. rec.keyId .. " does not unwrap", 0) end
  self.cache:put(rec.keyId, { key = k, validTo = rec.validTo })
  return k
end

--- Closes and drops one cached private key (no-op when not cached).
function Service:evict(id)
  local c = self.cache:delete(id)
  if c then c.key:close() end
end

--- Closes every cached private key whose key has expired at instant t.
function Service:evict_expired(t)
  local gone = {}
  self.cache:each(function(id, c)
    if t > c.validTo then gone[#gone + 1] = id end
  end)
  for _, id in ipairs(gone) do self:evict(id) end
  return #gone
end

-- ---- responses -------------------------------------------------------------------------------

local function processing_details(ctx)
  return util.object {
    "transactionTimestamp", M.format_time(ctx.now),
    "apiTraceId", ctx.trace,
    "clientRequestId", ctx.crid,
    "transactionId", ctx.txid,
  }
end

-- HTTP Basic when basic_auth is configured; Client-Request-Id echoed (or a fresh UUID),
-- a hex apiTraceId; the error body is a declined gatewayResponse with an error list.
local S = service.new {
  name = "mupk",
  errors = M.ERRORS,
  auth = "optional",
  request_id = true,
  trace = "hex",
  headers = function(ctx)
    return { ["Content-Type"] = "application/json", ["Client-Request-Id"] = ctx.crid,
             ["Api-Trace-Id"] = ctx.trace, ["Retry-After"] = ctx.retry_after }
  end,
  error_body = function(ctx, e, _, detail)
    return util.object {
      "gatewayResponse", util.object { "transactionType", ctx.ttype, "transactionState", "DECLINED",
        "transactionProcessingDetails", processing_details(ctx) },
      "error", util.array { util.object { "type", "GATEWAY", "code", e[2], "field", ctx.field,
        "message", e[3], "details", detail } },
    }
  end,
  challenges = { UNAUTHORIZED = 'Basic realm="payhsm-mupk"' },
}
M.service = S

local function respond(ctx, status, body) return S:respond(ctx, status, body) end

function Service:_error(ctx, name, detail) return S:error(ctx, name, detail) end

function Service:key_details(rec, t)
  return util.object {
    "keyId", rec.keyId,
    "encryptionType", "RSA",
    "modulus", rec.modulus,
    "encodedPublicKey", rec.encodedPublicKey,
    "validFrom", M.format_time(rec.validFrom),
    "validTo", M.format_time(rec.validTo),
    "status", self:status(rec, t),
  }
end

local SYMMETRIC = util.object { "encryptionType", "AES-GCM", "modulus", 256 }

function Service:_key_response(ctx, status, rec)
  return respond(ctx, status, util.object {
    "gatewayResponse", util.object { "transactionProcessingDetails", processing_details(ctx) },
    "asymmetricKeyDetails", self:key_details(rec, ctx.now),
    "symmetricKeyDetails", SYMMETRIC,
  })
end

-- ---- endpoints --------------------------------------------------------------------------------

local function merchant_id(body)
  local md = type(body) == "table" and body.merchantDetails
  local mid = type(md) == "table" and md.merchantId
  if type(mid) ~= "string" or mid == "" or #mid > 1024 then refusal("MERCHANT_ID") end
  return mid
end

-- payhsm's limit on generations: at most per_minute for one merchant in a fixed window of
-- 60 seconds, counted in the store (so every process on it shares the count); beyond it
-- TOO_MANY_REQUESTS (429) with Retry-After, the seconds until the window closes. A refused
-- generation writes nothing (the update's function raises).
function Service:_rate_check(ctx, mid)
  local now = math.floor(ctx.now)
  self.store:update("mupk:rate:" .. mid, function(old)
    local start, n = (old or ""):match("^(%d+) (%d+)$")
    start, n = tonumber(start), tonumber(n)
    if not start or now - start >= 60 or now < start then start, n = now, 0 end
    if n >= self.per_minute then
      ctx.retry_after = ("%d"):format(start + 60 - now)
      refusal("TOO_MANY_REQUESTS", ("at most %d key generations a minute for one merchant"):format(self.per_minute))
    end
    return ("%d %d"):format(start, n + 1)
  end, { ttl = 60 })
end

--- POST /security/v1/keys/generate {merchantDetails = {merchantId}} -> 201
-- payhsm's: optional asymmetricKeyDetails = {validFrom =, validTo =} to ask for a window
-- inside [now, now + max_key_lifetime] (validFrom not in the past); at most
-- generate_rate.per_minute generations per merchant (TOO_MANY_REQUESTS).
function Service:generate(ctx, body)
  local mid = merchant_id(body)
  local now = ctx.now
  local from, to = math.floor(now), math.floor(now) + self.lifetime
  local want = body.asymmetricKeyDetails
  if want ~= nil then
    if type(want) ~= "table" then refusal("VALIDITY") end
    if want.validFrom ~= nil then
      from = M.parse_time(want.validFrom) or refusal("VALIDITY", "validFrom must be YYYY-MM-DDThh:mm:ssZ")
      if from < math.floor(now) then refusal("VALIDITY", "validFrom is in the past") end
      to = from + self.lifetime
    end
    if want.validTo ~= nil then
      to = M.parse_time(want.validTo) or refusal("VALIDITY", "validTo must be YYYY-MM-DDThh:mm:ssZ")
    end
    if to <= from then refusal("VALIDITY", "validTo must be after validFrom") end
    if to - math.floor(now) > self.max_lifetime then refusal("VALIDITY", "validity exceeds the maximum lifetime") end
  end
  self:_rate_check(ctx, mid)
  local priv = rsa.generate(2048)
  local der = priv:public_der()
  local rec = {
    keyId = util.uuid(), merchantId = mid, modulus = 2048,
    encodedPublicKey = util.b64encode(util.hex_to_bin(der)),
    wrappedPrivateKey = priv:wrap(self.lmk),
    validFrom = from, validTo = to, createdAt = math.floor(now), seq = self:_next_seq(),
  }
  self.store:put(key_key(rec.keyId), cjson.encode(rec))
  self.store:update(merchant_key(mid), function(old)
    local ids = cjson.decode(old or "[]") or {}
    ids[#ids + 1] = rec.keyId
    return cjson.encode(ids)
  end)
  self.cache:put(rec.keyId, { key = priv, validTo = to })
  self:_index_add(rec)
  return self:_key_response(ctx, 201, rec)
end

--- POST /security/v1/keys/{keyId}/revoke {merchantDetails = {merchantId}} -> 201
function Service:revoke(ctx, id, body)
  local mid = merchant_id(body)
  local now = ctx.now
  local rec = self.store:update(key_key(id), function(old)
    local r = old and cjson.decode(old)
    if not r or r.merchantId ~= mid then refusal("KEY_NOT_FOUND") end
    if r.revokedAt then refusal("ALREADY_REVOKED") end
    if now > r.validTo then refusal("KEY_EXPIRED_REVOKE") end
    r.revokedAt = math.floor(now)
    return cjson.encode(r), r
  end)
  self:evict(id)
  self:_index_remove(id)
  return self:_key_response(ctx, 201, rec)
end

--- GET /security/v1/keys/{keyId}?merchantId= (payhsm's)
function Service:get_key(ctx, id, query)
  local rec = self:record(id)
  local mid = util.query_table(query).merchantId
  if not rec or (mid and rec.merchantId ~= mid) then refusal("KEY_NOT_FOUND") end
  return self:_key_response(ctx, 200, rec)
end

local function luhn_ok(pan)
  local sum, alt = 0, false
  for i = #pan, 1, -1 do
    local d = tonumber(pan:sub(i, i))
    if alt then d = d * 2 if d > 9 then d = d - 9 end end
    sum, alt = sum + d, not alt
  end
  return sum % 10 == 0
end

--- POST /security/v1/transactions (payhsm's): an offline charge whose card data was sealed
-- by the merchant under one of its public keys:
--   {merchantDetails = {merchantId}, amount = {total, currency},
--    transactionDetails = {merchantTransactionId, captureTime},
--    source = {sourceType = "PaymentCard", encryptionData = {keyId, encryptionType = "RSA",
--      encryptedKey, iv, encryptionBlock, authenticationTag}}}
-- The card data is the JSON {"cardData": PAN, "expirationMonth", "expirationYear"} sealed
-- with core.rsa.seal, AAD = the keyId. The key must be the merchant's, not revoked and
-- valid now: an expired or a revoked key gets Commerce Hub's expiry response KEY_EXPIRED
-- (details "key expired <validTo>" or "key revoked <revokedAt>"); a key not yet valid
-- gets KEY_NOT_YET_VALID.
function Service:transaction(ctx, body)
  ctx.ttype = "CHARGE"
  local mid = merchant_id(body)
  local amount = type(body.amount) == "table" and body.amount or {}
  local total = tonumber(amount.total)
  if not total or total ~= total or total <= 0 or total == math.huge or type(amount.currency) ~= "string" or not amount.currency:match("^%u%u%u$") then
    refusal("AMOUNT")
  end
  local src = type(body.source) == "table" and body.source or {}
  local ed = type(src.encryptionData) == "table" and src.encryptionData or {}
  if type(ed.keyId) ~= "string" or type(ed.encryptedKey) ~= "string" or type(ed.iv) ~= "string" or
     type(ed.encryptionBlock) ~= "string" or type(ed.authenticationTag) ~= "string" then
    ctx.field = "source.encryptionData"
    refusal("BAD_REQUEST", "encryptionData needs keyId, encryptedKey, iv, encryptionBlock, authenticationTag")
  end
  ctx.field = "source.encryptionData.keyId"
  if #ed.keyId > MAX_KEY_ID then refusal("KEY_ID") end
  local rec = self:record(ed.keyId)
  if not rec or rec.merchantId ~= mid then refusal("KEY_NOT_FOUND") end
  local now = ctx.now
  if rec.revokedAt then
    self:evict(rec.keyId) -- revoked, perhaps by another process on the same store
    refusal("KEY_EXPIRED", "key revoked " .. M.format_time(rec.revokedAt))
  end
  if now > rec.validTo then
    self:evict(rec.keyId)
    refusal("KEY_EXPIRED", "key expired " .. M.format_time(rec.validTo))
  end
  if now < rec.validFrom then refusal("KEY_NOT_YET_VALID", "key valid from " .. M.format_time(rec.validFrom)) end
  ctx.field = "source.encryptionData"
  local clear, msg, code = rsa.open(self:private_key(rec), { encrypted_key = ed.encryptedKey, iv = ed.iv,
    ciphertext = ed.encryptionBlock, tag = ed.authenticationTag }, rec.keyId)
  if not clear then refusal("DECRYPTION", code) end
  local card = cjson.decode(clear)
  local pan = type(card) == "table" and card.cardData
  if type(pan) ~= "string" or not pan:match("^%d+$") or #pan < 12 or #pan > 19 or not luhn_ok(pan) then
    refusal("CARD_DATA")
  end
  ctx.field = "amount.total"
  if self.max_amount and total > self.max_amount then refusal("AMOUNT_LIMIT") end
  ctx.field = nil
  local td = type(body.transactionDetails) == "table" and body.transactionDetails or {}
  return respond(ctx, 201, util.object {
    "gatewayResponse", util.object { "transactionType", "CHARGE", "transactionState", "CAPTURED",
      "transactionOrigin", "STORE_AND_FORWARD", "transactionProcessingDetails", processing_details(ctx) },
    "source", util.object { "sourceType", "PaymentCard", "card", util.object {
      "bin", pan:sub(1, 6), "last4", pan:sub(-4), "keyId", rec.keyId, "keyStatus", self:status(rec, now) } },
    "paymentReceipt", util.object { "approvedAmount", util.object { "total", total, "currency", amount.currency } },
    "transactionDetails", util.object { "merchantTransactionId", td.merchantTransactionId,
      "captureTime", td.captureTime },
  })
end

-- ---- routing ----------------------------------------------------------------------------------

function Service:_route(ctx, req)
  local path, method = req.path or "/", req.method
  local function post_body()
    if method ~= "POST" then refusal("METHOD") end
    local body = cjson.decode(req.body or "")
    if type(body) ~= "table" then refusal("BAD_REQUEST", "body must be a JSON object") end
    return body
  end
  if path == M.PATHS.generate then return self:generate(ctx, post_body()) end
  if path == M.PATHS.transactions then return self:transaction(ctx, post_body()) end
  local id, rest = path:match("^/security/v1/keys/([^/]+)(.*)$")
  if id and #id > MAX_KEY_ID and (rest == "/revoke" or rest == "") then
    ctx.field = "keyId"
    refusal("KEY_ID", ("keyId is %d characters"):format(#id))
  end
  if id and not id:match("^[%w%-]+$") then id = nil end
  if id and rest == "/revoke" then return self:revoke(ctx, id, post_body()) end
  if id and rest == "" then
    if method ~= "GET" then refusal("METHOD") end
    return self:get_key(ctx, id, req.query)
  end
  refusal("NOT_FOUND")
end

-- transactionId: 12 random decimal digits per answer, so that answering (a refusal
-- above all) writes nothing to the store.
local function transaction_id()
  return ("%012.0f"):format(tonumber(core.random(5), 16) % 1e12)
end

--- Handles one request (see the header); a refused request writes nothing to the store.
function Service:handle(req)
  return S:handle(self, req, { now = self.clock(), txid = transaction_id() })
end

-- ---- expiry notifications (payhsm.mupk.expiry) ------------------------------------------------

expiry.install(Service)

return M
