--- The merchant side of Commerce Hub's multi-use public keys: keeps its key
-- pairs' public halves, requests a new key 2 days before the current one expires (Commerce
-- Hub's best practice), picks the key to use at any instant, seals card data offline
-- with the public key (core.rsa.seal: RSA-OAEP wraps a fresh AES-256-GCM key; the AES
-- key never reaches Lua), stores the transactions and forwards them later, and enforces
-- its own limit on offline amounts (over the limit: refused here, never stored or sent).
--
--   local m = require("payhsm.mupk.merchant").new{
--     merchant_id = "123456789012345",
--     service = svc,            -- anything with :handle(req) -> resp (the pure handler, or
--                               -- an HTTP adapter such as merchant.http_service{...})
--     clock = os.time,
--     offline_limit = 100.00,   -- largest amount accepted offline
--     rotate_before = 2 * 86400, -- seconds before expiry to request the next key
--     auto_rotate = true,       -- false: a merchant that forgets (the scenario's)
--     user = "shop", password = "...",  -- HTTP Basic credentials for a service with basic_auth
--   }
--   m:tick()                            -- rotates when due
--   m:key_for([t]) -> key               -- the recommended key (newest valid)
--   m:capture{amount =, currency =, pan =, exp_month =, exp_year = [, key_id =]}
--       -> queued transaction | nil, message, code ("AMOUNT", "CURRENCY", "PAN",
--          "OVER_LIMIT", "NO_KEY", "UNKNOWN_KEY")
--   m:forward() -> array of {tx =, status =, body =}   (sends every stored transaction)
--   m:webhook(req) -> resp      the merchant's webhook receiver (a payhsm.http handler):
--       records each expiry notification once, drops a repeated eventId (200, duplicate)
local core = require "payhsm.core"
local util = require "payhsm.util"
local cjson = require "cjson.safe"

local rsa = core.rsa

local M = {}
local Merchant = {}
Merchant.__index = Merchant

local DAY = 86400

local function parse_time(s) return util.parse_time(s, { fraction = true }) end

function M.new(opts)
  util.checkfields(opts, "merchant.new", { "merchant_id", "service", "clock", "valid", "auto_rotate",
    "rotate_before", "offline_limit", "on_notice", "user", "password" })
  assert(type(opts) == "table" and type(opts.merchant_id) == "string", "merchant.new{merchant_id=, service=}")
  assert(opts.service and opts.service.handle, "merchant.new: service must have :handle(req)")
  return setmetatable({
    id = opts.merchant_id,
    service = opts.service,
    clock = opts.clock or os.time,
    limit = tonumber(opts.offline_limit) or 100,
    rotate_before = tonumber(opts.rotate_before) or 2 * DAY,
    auto_rotate = opts.auto_rotate ~= false,
    keys = {},   -- known keys, oldest first: {keyId, validFrom, validTo, public, status}
    queue = {},  -- stored offline transactions, in capture order
    seq = 0,
    rejected = {}, -- captures refused by the merchant's own limit
    notices = {},  -- expiry notifications received, each eventId once, in arrival order
    seen = {},     -- eventId -> instant received (dropped after 7 days)
    on_notice = opts.on_notice, -- optional fn(merchant, doc) for each new notification
    authorization = opts.user and ("Basic " .. util.b64encode(opts.user .. ":" .. assert(opts.password,
      "merchant.new: user needs password"))),
  }, Merchant)
end

function Merchant:_call(path, body)
  self.seq = self.seq + 1
  local resp = self.service:handle { method = "POST", path = path,
    headers = { ["content-type"] = "application/json", ["client-request-id"] = self.id .. "-" .. self.seq,
                authorization = self.authorization },
    body = cjson.encode(body) }
  return resp, cjson.decode(resp.body or "") or {}
end

local function learn(self, d)
  local der = util.b64decode(d.encodedPublicKey)
  local hex = der and der:gsub(".", function(c) return ("%02X"):format(c:byte()) end)
  local pub = assert(rsa.public(hex or ""), "merchant: the service sent a bad public key")
  local k = { keyId = d.keyId, validFrom = parse_time(d.validFrom), validTo = parse_time(d.validTo),
              public = pub, status = d.status }
  for i, old in ipairs(self.keys) do
    if old.keyId == k.keyId then self.keys[i] = k return k end
  end
  self.keys[#self.keys + 1] = k
  return k
end

--- Requests a new key pair (POST /security/v1/keys/generate). opts (payhsm's, optional):
-- {validFrom =, validTo =} to ask for a particular window. Returns the key or nil, error body.
function Merchant:request_key(opts)
  util.checkfields(opts, "merchant:request_key", { "validFrom", "validTo" })
  local body = { merchantDetails = { merchantId = self.id } }
  if opts then body.asymmetricKeyDetails = { validFrom = opts.validFrom, validTo = opts.validTo } end
  local resp, doc = self:_call("/security/v1/keys/generate", body)
  if resp.status ~= 201 then return nil, doc end
  return learn(self, doc.asymmetricKeyDetails)
end

--- Revokes one of its keys (POST /security/v1/keys/{keyId}/revoke).
function Merchant:revoke(key_id)
  local resp, doc = self:_call("/security/v1/keys/" .. key_id .. "/revoke", { merchantDetails = { merchantId = self.id } })
  if resp.status ~= 201 then return nil, doc end
  return learn(self, doc.asymmetricKeyDetails)
end

local function usable(k, t) return k.status ~= "REVOKED" and k.validFrom <= t and t <= k.validTo end

--- Keys the merchant may use at t, newest first (the first is the recommended one).
function Merchant:usable_keys(t)
  t = t or self.clock()
  local out = {}
  for i = #self.keys, 1, -1 do
    if usable(self.keys[i], t) then out[#out + 1] = self.keys[i] end
  end
  table.sort(out, function(a, b) return a.validFrom > b.validFrom end)
  return out
end

--- The key to use at t: the valid key with the latest validFrom (nil if none).
function Merchant:key_for(t) return self:usable_keys(t)[1] end

function Merchant:key(id)
  for _, k in ipairs(self.keys) do if k.keyId == id then return k end end
end

-- A key that is not revoked and still valid after instant t (valid now or future-dated)
-- means the exchange for the period after t has already been made.
function Merchant:has_key_after(t, except)
  for _, k in ipairs(self.keys) do
    if k ~= except and k.status ~= "REVOKED" and k.validTo > t then return true end
  end
  return false
end

--- Best practice: request the next key once the current one is within rotate_before of
-- its expiry, unless a later key (valid now or future-dated) exists; with no valid key
-- now, request one unless a future-dated key is waiting for its validFrom. Returns the
-- new key when it requested one.
function Merchant:tick()
  if not self.auto_rotate then return nil end
  local now = self.clock()
  local cur = self:key_for(now)
  if cur then
    if now < cur.validTo - self.rotate_before or self:has_key_after(cur.validTo, cur) then return nil end
  elseif self:has_key_after(now) then
    return nil -- only future-dated keys: it waits for the first one's validFrom
  end
  return self:request_key()
end

-- Amounts are decimal numbers in the currency's major unit with at most two decimals
-- (12.04 USD), given as a Lua number or a decimal string ("12.04"); positive, finite.
-- Returns the number, or nil and a message.
local function check_amount(a)
  local n
  if type(a) == "number" then n = a
  elseif type(a) == "string" and a:match("^%d+%.?%d?%d?$") and not a:match("%.$") then n = tonumber(a)
  else return nil, "amount must be a number, got " .. type(a) end
  if n ~= n or n == math.huge or n <= 0 then return nil, "amount must be positive" end
  local cents = n * 100
  if math.abs(cents - math.floor(cents + 0.5)) > 1e-6 then return nil, "amount has more than two decimals" end
  return n
end

--- Captures an offline transaction: checks the merchant's own limit, seals the card
-- data under the chosen key (default: key_for(now)) and stores it for forwarding.
function Merchant:capture(t)
  assert(type(t) == "table", "merchant:capture{amount =, pan =, ...}")
  local now = self.clock()
  local amount, why = check_amount(t.amount)
  if not amount then return nil, "merchant.capture: " .. why, "AMOUNT" end
  local currency = t.currency or "USD"
  if type(currency) ~= "string" or not currency:match("^%u%u%u$") then
    return nil, "merchant.capture: currency must be a 3-letter ISO 4217 code", "CURRENCY"
  end
  if type(t.pan) ~= "string" or not t.pan:match("^%d+$") or #t.pan < 12 or #t.pan > 19 then
    return nil, "merchant.capture: pan must be 12 to 19 digits", "PAN"
  end
  if amount > self.limit then
    self.rejected[#self.rejected + 1] = { amount = amount, reason = "OVER_LIMIT", at = now }
    return nil, ("merchant.capture: %.2f is over the offline limit %.2f"):format(amount, self.limit), "OVER_LIMIT"
  end
  local k
  if t.key_id then
    k = self:key(t.key_id)
    if not k then return nil, "merchant.capture: no key " .. tostring(t.key_id), "UNKNOWN_KEY" end
  else
    k = self:key_for(now)
    if not k then return nil, "merchant.capture: no key is valid now", "NO_KEY" end
  end
  local card = cjson.encode { cardData = t.pan, expirationMonth = t.exp_month, expirationYear = t.exp_year }
  local sealed = rsa.seal(k.public, card, k.keyId)
  self.seq = self.seq + 1
  local tx = {
    merchantTransactionId = t.id or (self.id .. "-tx-" .. self.seq),
    captureTime = util.format_time(now),
    amount = amount, currency = currency, keyId = k.keyId,
    encryptionData = { keyId = k.keyId, encryptionType = "RSA", encryptedKey = sealed.encrypted_key,
      iv = sealed.iv, encryptionBlock = sealed.ciphertext, authenticationTag = sealed.tag },
  }
  self.queue[#self.queue + 1] = tx
  return tx
end

--- The request body of a stored transaction.
function Merchant:transaction_body(tx)
  return {
    merchantDetails = { merchantId = self.id },
    amount = { total = tx.amount, currency = tx.currency },
    transactionDetails = { merchantTransactionId = tx.merchantTransactionId, captureTime = tx.captureTime },
    source = { sourceType = "PaymentCard", encryptionData = tx.encryptionData },
  }
end

--- Forwards every stored transaction; each leaves the queue once the service answered
-- (approved or refused). Transactions not answered (a 5xx) stay for the next forward.
function Merchant:forward()
  local results, keep = {}, {}
  for _, tx in ipairs(self.queue) do
    local resp, doc = self:_call("/security/v1/transactions", self:transaction_body(tx))
    results[#results + 1] = { tx = tx, status = resp.status, body = doc }
    if resp.status >= 500 then keep[#keep + 1] = tx end
  end
  self.queue = keep
  return results
end

--- The merchant's webhook receiver: a handler for payhsm.http (or anything giving
-- {method, body}). A KEY_EXPIRY_NOTIFICATION is recorded in m.notices once per eventId
-- (the Webhook-Id header when the body has none) and on_notice is called; a repeat of an
-- eventId already seen, which the service sends when an earlier attempt timed out
-- after the merchant had it, is answered 200 and dropped. Not JSON or no eventId: 400.
function Merchant:webhook(req)
  if req.method and req.method ~= "POST" then return { status = 405, body = "" } end
  local doc = cjson.decode(req.body or "")
  local h = req.headers or {}
  local id = type(doc) == "table" and doc.eventId or h["webhook-id"] or h["Webhook-Id"]
  if type(doc) ~= "table" or type(id) ~= "string" or id == "" then
    return { status = 400, headers = { ["Content-Type"] = "application/json" },
             body = cjson.encode { error = "a JSON notification with an eventId is expected" } }
  end
  local now = self.clock()
  for old, at in pairs(self.seen) do
    if now - at > 7 * DAY then self.seen[old] = nil end
  end
  local dup = self.seen[id] ~= nil
  if not dup then
    self.seen[id] = now
    self.notices[#self.notices + 1] = doc
    if self.on_notice then self.on_notice(self, doc) end
  end
  return { status = 200, headers = { ["Content-Type"] = "application/json" },
           body = cjson.encode { eventId = id, duplicate = dup } }
end

--- An adapter that makes a payhsm.http_client look like a handler (for a merchant
-- talking to `bin/payhsm serve mupk` over HTTP).
function M.http_service(http_opts)
  local c = require("payhsm.http_client").new(http_opts)
  return { handle = function(_, req)
    local resp, err = c:request(req)
    if not resp then return { status = 599, body = cjson.encode { error = err } } end
    return resp
  end }
end

return M
