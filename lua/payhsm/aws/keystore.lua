--- The durable state of `bin/payhsm serve aws`: keys, aliases and tags in one of
-- payhsm's stores (memory, sqlite, redis), every secret wrapped under the local master
-- key (LMK): symmetric keys as TR-31 version D key blocks (ANSI X9.143-2022), RSA
-- private keys as PKCS#8 under AES key wrap with padding (RFC 5649). One store value per
-- key ("aws:key:ID", JSON), per alias ("aws:alias:NAME"), the service's own certificate
-- authority ("aws:ca") and per import or export token ("aws:token:TOKEN", with expiry).
-- Key identifiers, ARNs and states follow the AWS Payment Cryptography API reference
-- (Key, KeySummary; arn:aws:payment-cryptography:REGION:ACCOUNT:key/ID).
local hsm = require "payhsm"
local cjson = require "cjson.safe"
local errors = require "payhsm.aws.errors"
local rules = require "payhsm.aws.rules"

local M = {}

local KS = {}
KS.__index = KS

local PREFIX_KEY, PREFIX_ALIAS = "aws:key:", "aws:alias:"
M.LMK_NAME = "aws:lmk"

--- new{store =, lmk = payhsm key (AES_256, K0), region =, account =, clock =}
function M.new(o)
  return setmetatable({ store = o.store, lmk = o.lmk, region = o.region, account = o.account,
    clock = o.clock or os.time, cache = {} }, KS)
end

local ID_CHARS = "abcdefghijklmnopqrstuvwxyz234567"

--- A fresh key ID: 16 characters [a-z2-7] (80 random bits), as AWS's look.
function KS:new_id()
  local bytes = require("payhsm.util").hex_to_bin(hsm.random(16))
  local out = {}
  for i = 1, 16 do
    local v = bytes:byte(i) % 32 + 1
    out[i] = ID_CHARS:sub(v, v)
  end
  return table.concat(out)
end

function KS:arn(id)
  return ("arn:aws:payment-cryptography:%s:%s:key/%s"):format(self.region, self.account, id)
end

local function decode(text, what)
  local v = cjson.decode(text)
  if type(v) ~= "table" then error("aws: corrupt " .. what .. " record in the store", 0) end
  return v
end

-- ---- keys ------------------------------------------------------------------------------

--- The record of key ID, or nil. Records are cached by their text (a store shared with
-- other processes is read every time; only the decoding is saved).
function KS:get(id)
  local text = self.store:get(PREFIX_KEY .. id)
  if not text then return nil end
  local c = self.cache[id]
  if c and c.text == text then return c.rec end
  local rec = decode(text, "key")
  self.cache[id] = { text = text, rec = rec }
  return rec
end

--- Writes a new key record (refuses to overwrite: IDs are random).
function KS:create(rec)
  local text = cjson.encode(rec)
  self.store:update(PREFIX_KEY .. rec.id, function(old)
    if old then error("aws: key ID collision", 0) end
    return text
  end)
end

--- Changes a key record atomically: fn(rec) changes it in place (or raises).
function KS:update(id, fn)
  return self.store:update(PREFIX_KEY .. id, function(old)
    if not old then errors.raise("ResourceNotFoundException", "Key not found", { ResourceId = self:arn(id) }) end
    local rec = decode(old, "key")
    local r = fn(rec)
    return cjson.encode(rec), r
  end)
end

--- Key IDs in the store, sorted.
function KS:ids()
  local out = {}
  for i, k in ipairs(self.store:keys(PREFIX_KEY)) do out[i] = k:sub(#PREFIX_KEY + 1) end
  return out
end

--- The state a record is in now: a DELETE_PENDING key whose time has come is
-- DELETE_COMPLETE.
function KS:state(rec)
  if rec.state == "DELETE_PENDING" and rec.delete_at and self.clock() >= rec.delete_at then
    return "DELETE_COMPLETE"
  end
  return rec.state
end

local function not_found(self, ident)
  errors.raise("ResourceNotFoundException", "Key " .. ident .. " was not found", { ResourceId = ident })
end

--- The key an identifier names: a key ARN, an alias name or an alias ARN of this
-- region and account. Raises ResourceNotFoundException (also for a deleted key).
function KS:resolve(ident)
  local id
  local region, account = ident:match("^arn:aws:payment%-cryptography:([^:]*):([^:]*):")
  if region and (region ~= self.region or account ~= self.account) then
    errors.raise("AccessDeniedException", ("%s belongs to another account or region (%s, %s): cross-account and "
      .. "cross-region use is not allowed for this operation"):format(ident, account, region))
  end
  local head = ("arn:aws:payment-cryptography:%s:%s:"):format(self.region, self.account)
  local rest = ident:sub(1, #head) == head and ident:sub(#head + 1) or nil
  if ident:match("^alias/") or (rest and rest:match("^alias/")) then
    local alias = self:alias(rest or ident)
    if not alias or not alias.KeyArn then not_found(self, ident) end
    id = alias.KeyArn:match("key/(%w+)$")
  elseif rest then
    id = rest:match("^key/(%w+)$")
  end
  local rec = id and self:get(id)
  if not rec or self:state(rec) == "DELETE_COMPLETE" then not_found(self, ident) end
  return rec
end

--- The Key structure of the API reference for a record.
function KS:describe(rec)
  local state = self:state(rec)
  return {
    KeyArn = self:arn(rec.id),
    KeyAttributes = { KeyUsage = rec.attrs.KeyUsage, KeyClass = rec.attrs.KeyClass,
      KeyAlgorithm = rec.attrs.KeyAlgorithm, KeyModesOfUse = rules.full_modes(rec.attrs.KeyModesOfUse) },
    KeyCheckValue = rec.kcv,
    KeyCheckValueAlgorithm = rec.kcv_alg,
    Enabled = rec.enabled,
    Exportable = rec.exportable,
    KeyState = state,
    KeyOrigin = rec.origin,
    CreateTimestamp = rec.created,
    UsageStartTimestamp = rec.usage_start,
    UsageStopTimestamp = rec.usage_stop,
    DeletePendingTimestamp = state == "DELETE_PENDING" and rec.delete_pending or nil,
    DeleteTimestamp = state == "DELETE_PENDING" and rec.delete_at or nil,
    DeriveKeyUsage = rec.derive_usage,
  }
end

--- The JSON text of {"Key": describe(rec)}, kept on the (cached) record while its
-- state cannot change by the clock alone.
function KS:describe_json(rec)
  local j = rec._json
  if j then return j end
  j = cjson.encode { Key = self:describe(rec) }
  if rec.state ~= "DELETE_PENDING" then rec._json = j end
  return j
end

--- The KeySummary of ListKeys.
function KS:summary(rec)
  local d = self:describe(rec)
  return { KeyArn = d.KeyArn, KeyState = d.KeyState, KeyAttributes = d.KeyAttributes,
    KeyCheckValue = d.KeyCheckValue, Exportable = d.Exportable, Enabled = d.Enabled }
end

-- ---- key material under the LMK ------------------------------------------------------

--- A symmetric key as a TR-31 block under the LMK.
function KS:wrap(key)
  local block, msg = hsm.tr31.wrap(self.lmk, key, { version = "D" }, { ["local"] = true })
  if not block then error("aws: wrapping a key under the local master key failed: " .. tostring(msg), 0) end
  return block
end

--- The payhsm key object of a record (symmetric keys).
function KS:unwrap(rec)
  local key, msg = hsm.tr31.unwrap(self.lmk, rec.block)
  if not key then error("aws: a stored key does not unwrap under the local master key: " .. tostring(msg), 0) end
  return key
end

--- A key pair's private key (RsaKey or EcKey) as PKCS#8 under AES key wrap (RFC 5649) by the LMK.
function KS:wrap_private(pair) return pair:wrap(self.lmk) end

--- The private key of an asymmetric key pair record: an EcKey for ECC_NIST_* keys, else an RsaKey.
function KS:unwrap_private(rec)
  if rec.attrs.KeyAlgorithm:match("^ECC_") then
    local k, msg = hsm.core.ec.unwrap(self.lmk, rec.private)
    if not k then error("aws: a stored private key does not unwrap under the local master key: " .. tostring(msg), 0) end
    return k
  end
  return self:unwrap_rsa(rec.private)
end

function KS:unwrap_rsa(hex)
  local k, msg = hsm.rsa.unwrap(self.lmk, hex)
  if not k then error("aws: a stored private key does not unwrap under the local master key: " .. tostring(msg), 0) end
  return k
end

-- ---- aliases ----------------------------------------------------------------------------

function KS:alias(name)
  local text = self.store:get(PREFIX_ALIAS .. name)
  return text and decode(text, "alias") or nil
end

--- Changes an alias atomically: fn(old record or nil) returns the new record (nil deletes).
function KS:update_alias(name, fn)
  return self.store:update(PREFIX_ALIAS .. name, function(old)
    local new, r = fn(old and decode(old, "alias") or nil)
    return new and cjson.encode(new) or nil, r
  end)
end

function KS:alias_names()
  local out = {}
  for i, k in ipairs(self.store:keys(PREFIX_ALIAS)) do out[i] = k:sub(#PREFIX_ALIAS + 1) end
  return out
end

-- ---- the service's certificate authority ---------------------------------------------

local CA_NAME = "aws:ca"
M.CA_CN = "payhsm AWS Payment Cryptography CA"

--- The service's own CA (RsaKey, certificate PEM), made on first use in one atomic store
-- update (processes sharing a store agree on one).
function KS:ca()
  if self._ca then return self._ca.key, self._ca.cert end
  local text = self.store:get(CA_NAME)
  if not text then
    local key = hsm.rsa.generate(2048)
    local cert = hsm.core.pki.certificate(key, key, { subject = M.CA_CN, issuer = M.CA_CN, ca = true, days = 3650 })
    local mine = cjson.encode { key = self:wrap_private(key), cert = cert }
    key:close()
    text = self.store:update(CA_NAME, function(old)
      local v = old or mine
      return v, v
    end)
  end
  local rec = decode(text, "certificate authority")
  self._ca = { key = self:unwrap_rsa(rec.key), cert = rec.cert }
  return self._ca.key, self._ca.cert
end

--- A certificate for `public` (an RSA or EC key) signed by the service's CA.
function KS:certify(public, cn, usage)
  local ca_key = self:ca()
  return hsm.core.pki.certificate(ca_key, public, { subject = cn, issuer = M.CA_CN, usage = usage,
    days = 365, not_before = self.clock() - 60 })
end

-- ---- import and export tokens ----------------------------------------------------------

--- Stores token parameters (a table) until `expires` (seconds since the epoch).
function KS:put_token(token, rec, expires)
  self.store:put("aws:token:" .. token, cjson.encode(rec), math.max(1, expires - self.clock()))
end

function KS:token(token)
  local text = self.store:get("aws:token:" .. token)
  return text and decode(text, "token") or nil
end

return M
