--- The control plane of AWS Payment Cryptography (API reference, "Actions" of the
-- Control Plane): key lifecycle, aliases and tags. Each operation takes the validated
-- input table and returns the output table; refusals raise through errors.raise.
-- Import and export are in payhsm.aws.exchange.
local hsm = require "payhsm"
local errors = require "payhsm.aws.errors"
local rules = require "payhsm.aws.rules"
local util = require "payhsm.util"

local M = {}

local raise = errors.raise

M.MAX_TAGS = 50 -- tags per resource (AWS Payment Cryptography quotas)
M.DEFAULT_DELETE_DAYS = 7

-- ---- shared checks -----------------------------------------------------------------

--- Algorithms the symmetric core holds (payhsm.key); others are refused as unsupported.
M.SUPPORTED_SYMMETRIC = { TDES_2KEY = true, TDES_3KEY = true, AES_128 = true, AES_192 = true, AES_256 = true,
  HMAC_SHA224 = true, HMAC_SHA256 = true, HMAC_SHA384 = true, HMAC_SHA512 = true }
M.RSA_BITS = { RSA_2048 = 2048, RSA_3072 = 3072, RSA_4096 = 4096 }
M.ECC_CURVES = { ECC_NIST_P256 = "P-256", ECC_NIST_P384 = "P-384", ECC_NIST_P521 = "P-521" }

--- Refuses attributes AWS would refuse (rules) or this implementation cannot hold.
function M.check_attributes(attrs, purpose)
  local ok, msg = rules.check(attrs, purpose)
  if not ok then raise("ValidationException", msg) end
  local alg = attrs.KeyAlgorithm
  if not M.SUPPORTED_SYMMETRIC[alg] and not M.RSA_BITS[alg] and not M.ECC_CURVES[alg] then
    raise("ValidationException", ("KeyAlgorithm %s is not supported by this implementation yet"):format(alg))
  end
end

--- The check-value algorithm for a key: the requested one if it fits, else AWS's default.
function M.kcv_algorithm(alg, wanted)
  if not wanted then return rules.default_kcv(alg) end
  local hmac = alg:match("^HMAC") ~= nil
  if (wanted == "HMAC") ~= hmac then
    raise("ValidationException", ("KeyCheckValueAlgorithm %s does not fit a %s key"):format(wanted, alg))
  end
  return wanted
end

--- Tags as stored: array of {Key, Value}; refuses duplicates, reserved names and more
-- than MAX_TAGS.
function M.merge_tags(old, new)
  local out, index = {}, {}
  for _, t in ipairs(old or {}) do
    out[#out + 1] = { Key = t.Key, Value = t.Value }
    index[t.Key] = #out
  end
  local seen = {}
  for _, t in ipairs(new or {}) do
    if seen[t.Key] then raise("ValidationException", "Duplicate tag key " .. t.Key) end
    seen[t.Key] = true
    if t.Key:lower():sub(1, 4) == "aws:" then
      raise("ValidationException", "Tag keys beginning with 'aws:' are reserved")
    end
    if index[t.Key] then out[index[t.Key]].Value = t.Value or ""
    else
      out[#out + 1] = { Key = t.Key, Value = t.Value or "" }
      index[t.Key] = #out
    end
  end
  if #out > M.MAX_TAGS then
    raise("ServiceQuotaExceededException", ("A resource can have at most %d tags"):format(M.MAX_TAGS))
  end
  return out
end

--- A new key record with the fields every origin shares.
function M.new_record(svc, attrs, o)
  local now = svc.clock()
  local enabled = o.enabled ~= false
  return {
    id = svc.keys:new_id(),
    attrs = { KeyUsage = attrs.KeyUsage, KeyClass = attrs.KeyClass, KeyAlgorithm = attrs.KeyAlgorithm,
      KeyModesOfUse = rules.full_modes(attrs.KeyModesOfUse) },
    kcv = o.kcv or "", kcv_alg = o.kcv_alg or "ANSI_X9_24",
    enabled = enabled, exportable = o.exportable == true, state = "CREATE_COMPLETE",
    origin = o.origin or "AWS_PAYMENT_CRYPTOGRAPHY", created = now, usage_start = enabled and now or nil,
    usage_stop = (not enabled) and now or nil,
    tags = M.merge_tags(nil, o.tags),
  }
end

--- Raises unless the record may be used now (enabled, not pending deletion).
function M.usable(svc, rec, what)
  local state = svc.keys:state(rec)
  if state ~= "CREATE_COMPLETE" then
    raise("ValidationException", ("%s %s is %s"):format(what or "Key", svc.keys:arn(rec.id), state))
  end
  if not rec.enabled then
    raise("ValidationException", ("%s %s is disabled (StopKeyUsage); StartKeyUsage enables it"):format(
      what or "Key", svc.keys:arn(rec.id)))
  end
end

-- ---- keys ---------------------------------------------------------------------------

--- The symmetric key's TR-31 attributes from AWS's: usage code, mode, exportability.
function M.tr31_attrs(attrs, exportable)
  return { usage = rules.usage_code(attrs.KeyUsage), mode = rules.mode_char(attrs.KeyModesOfUse),
    exportability = exportable and "E" or "N" }
end

--- CreateKey: a new key of the attributes asked (AWS's combinations only): symmetric keys made at random and kept as a TR-31 block under the LMK; RSA and ECC (P-256, P-384, P-521) key pairs with a certificate from the service's CA. DeriveKeyUsage (ECC key agreement keys) limits what the pair's ECDH agreements may derive.
function M.CreateKey(svc, input)
  local attrs = input.KeyAttributes
  M.check_attributes(attrs, "CreateKey")
  local alg = attrs.KeyAlgorithm
  if input.DeriveKeyUsage and attrs.KeyUsage ~= "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT" then
    raise("ValidationException", "DeriveKeyUsage applies to ECC key agreement keys (TR31_K3_ASYMMETRIC_KEY_FOR_KEY_"
      .. "AGREEMENT) only")
  end
  local rec
  if M.RSA_BITS[alg] or M.ECC_CURVES[alg] then
    if input.KeyCheckValueAlgorithm then
      raise("ValidationException", "KeyCheckValueAlgorithm does not apply to asymmetric keys")
    end
    local pair = M.RSA_BITS[alg] and hsm.rsa.generate(M.RSA_BITS[alg]) or hsm.core.ec.generate(M.ECC_CURVES[alg])
    rec = M.new_record(svc, attrs, { exportable = input.Exportable, enabled = input.Enabled, tags = input.Tags })
    rec.private = svc.keys:wrap_private(pair)
    rec.derive_usage = input.DeriveKeyUsage
    rec.cert = svc.keys:certify(pair, "payhsm key " .. rec.id,
      attrs.KeyUsage == "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE" and "sign"
      or attrs.KeyUsage == "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT" and "agree" or "encipher")
    pair:close()
  else
    local kcv_alg = M.kcv_algorithm(alg, input.KeyCheckValueAlgorithm)
    local key = hsm.key.generate(alg, M.tr31_attrs(attrs, input.Exportable))
    rec = M.new_record(svc, attrs, { exportable = input.Exportable, enabled = input.Enabled, tags = input.Tags,
      kcv = hsm.kcv(key, kcv_alg), kcv_alg = kcv_alg })
    rec.block = svc.keys:wrap(key)
    key:close()
  end
  svc.keys:create(rec)
  return { Key = svc.keys:describe(rec) }
end

--- GetKey: the Key structure of a key ARN, alias or alias ARN.
function M.GetKey(svc, input)
  return errors.raw(svc.keys:describe_json(svc.keys:resolve(input.KeyIdentifier)))
end

-- NextToken: the last key ID of the previous page, base64url.
local function page(items, token, max)
  local start = 1
  if token then
    local after = util.b64decode(token)
    if not after then raise("ValidationException", "NextToken is not valid") end
    start = #items + 1
    for i, v in ipairs(items) do if v > after then start = i break end end
  end
  local n = max or 100
  local out = {}
  for i = start, math.min(#items, start + n - 1) do out[#out + 1] = items[i] end
  local next_token
  if start + n - 1 < #items then next_token = util.b64url(out[#out]) end
  return out, next_token
end

--- ListKeys: KeySummary list in key ID order, KeyState filter, MaxResults (1..100) and NextToken pages.
function M.ListKeys(svc, input)
  local ids = {}
  for _, id in ipairs(svc.keys:ids()) do
    local rec = svc.keys:get(id)
    local state = rec and svc.keys:state(rec)
    if rec and (input.KeyState and state == input.KeyState or (not input.KeyState and state ~= "DELETE_COMPLETE")) then
      ids[#ids + 1] = id
    end
  end
  local chosen, next_token = page(ids, input.NextToken, input.MaxResults)
  local keys = errors.array()
  for _, id in ipairs(chosen) do keys[#keys + 1] = svc.keys:summary(svc.keys:get(id)) end
  return { Keys = keys, NextToken = next_token }
end

local function change(svc, ident, fn)
  local rec = svc.keys:resolve(ident)
  svc.keys:update(rec.id, function(r)
    if svc.keys:state(r) == "DELETE_COMPLETE" then
      raise("ResourceNotFoundException", "Key " .. ident .. " was not found", { ResourceId = ident })
    end
    fn(r, svc.clock())
  end)
  return { Key = svc.keys:describe(svc.keys:get(rec.id)) }
end

--- DeleteKey: DELETE_PENDING for DeleteKeyInDays (3..180, default 7), unusable until RestoreKey; DELETE_COMPLETE (gone) after.
function M.DeleteKey(svc, input)
  local days = input.DeleteKeyInDays or M.DEFAULT_DELETE_DAYS
  return change(svc, input.KeyIdentifier, function(r, now)
    if r.state == "DELETE_PENDING" then raise("ConflictException", "Key is already pending deletion") end
    r.state, r.enabled = "DELETE_PENDING", false
    r.usage_stop, r.usage_start = now, nil
    r.delete_pending, r.delete_at = now, now + days * 86400
  end)
end

--- RestoreKey: a DELETE_PENDING key back to CREATE_COMPLETE, disabled (StartKeyUsage enables it).
function M.RestoreKey(svc, input)
  return change(svc, input.KeyIdentifier, function(r)
    if r.state ~= "DELETE_PENDING" then raise("ConflictException", "Key is not pending deletion") end
    r.state, r.delete_pending, r.delete_at = "CREATE_COMPLETE", nil, nil
  end)
end

--- StartKeyUsage: enables a key (UsageStartTimestamp).
function M.StartKeyUsage(svc, input)
  return change(svc, input.KeyIdentifier, function(r, now)
    if r.state ~= "CREATE_COMPLETE" then raise("ConflictException", "Key is " .. r.state) end
    r.enabled, r.usage_start, r.usage_stop = true, now, nil
  end)
end

--- StopKeyUsage: disables a key (UsageStopTimestamp); a disabled key is refused for use.
function M.StopKeyUsage(svc, input)
  return change(svc, input.KeyIdentifier, function(r, now)
    if r.state ~= "CREATE_COMPLETE" then raise("ConflictException", "Key is " .. r.state) end
    r.enabled, r.usage_stop = false, now
  end)
end

-- ---- aliases ------------------------------------------------------------------------

local function key_arn_of(svc, arn)
  if arn == nil then return nil end
  local rec = svc.keys:resolve(arn)
  return svc.keys:arn(rec.id)
end

--- CreateAlias: a new alias, with or without a key (ConflictException when the name exists).
function M.CreateAlias(svc, input)
  local arn = key_arn_of(svc, input.KeyArn)
  local alias = { AliasName = input.AliasName, KeyArn = arn }
  svc.keys:update_alias(input.AliasName, function(old)
    if old then raise("ConflictException", "Alias " .. input.AliasName .. " already exists") end
    return alias
  end)
  return { Alias = alias }
end

--- GetAlias: an alias and its key ARN.
function M.GetAlias(svc, input)
  local alias = svc.keys:alias(input.AliasName)
  if not alias then
    raise("ResourceNotFoundException", "Alias " .. input.AliasName .. " was not found", { ResourceId = input.AliasName })
  end
  return { Alias = alias }
end

--- UpdateAlias: points an existing alias at another key (or at none).
function M.UpdateAlias(svc, input)
  local arn = key_arn_of(svc, input.KeyArn)
  local alias = { AliasName = input.AliasName, KeyArn = arn }
  svc.keys:update_alias(input.AliasName, function(old)
    if not old then
      raise("ResourceNotFoundException", "Alias " .. input.AliasName .. " was not found", { ResourceId = input.AliasName })
    end
    return alias
  end)
  return { Alias = alias }
end

--- DeleteAlias: removes an alias (its key stays).
function M.DeleteAlias(svc, input)
  svc.keys:update_alias(input.AliasName, function(old)
    if not old then
      raise("ResourceNotFoundException", "Alias " .. input.AliasName .. " was not found", { ResourceId = input.AliasName })
    end
    return nil
  end)
  return {}
end

--- ListAliases: aliases in name order, optionally of one KeyArn, in pages.
function M.ListAliases(svc, input)
  local names = {}
  for _, name in ipairs(svc.keys:alias_names()) do
    if not input.KeyArn or (svc.keys:alias(name) or {}).KeyArn == input.KeyArn then names[#names + 1] = name end
  end
  local chosen, next_token = page(names, input.NextToken, input.MaxResults)
  local out = errors.array()
  for _, name in ipairs(chosen) do out[#out + 1] = svc.keys:alias(name) end
  return { Aliases = out, NextToken = next_token }
end

-- ---- tags -----------------------------------------------------------------------------

--- TagResource: adds or updates tags (at most 50 per key; keys starting with aws: are reserved).
function M.TagResource(svc, input)
  local rec = svc.keys:resolve(input.ResourceArn)
  svc.keys:update(rec.id, function(r) r.tags = M.merge_tags(r.tags, input.Tags) end)
  return {}
end

--- UntagResource: removes the tags named by TagKeys.
function M.UntagResource(svc, input)
  local rec = svc.keys:resolve(input.ResourceArn)
  local drop = {}
  for _, k in ipairs(input.TagKeys) do drop[k] = true end
  svc.keys:update(rec.id, function(r)
    local keep = {}
    for _, t in ipairs(r.tags or {}) do if not drop[t.Key] then keep[#keep + 1] = t end end
    r.tags = keep
  end)
  return {}
end

--- ListTagsForResource: a key's tags in key order, in pages.
function M.ListTagsForResource(svc, input)
  local rec = svc.keys:resolve(input.ResourceArn)
  local keys, by = {}, {}
  for _, t in ipairs(rec.tags or {}) do
    keys[#keys + 1] = t.Key
    by[t.Key] = t
  end
  table.sort(keys)
  local chosen, next_token = page(keys, input.NextToken, input.MaxResults)
  local out = errors.array()
  for _, k in ipairs(chosen) do out[#out + 1] = { Key = k, Value = by[k].Value } end
  return { Tags = out, NextToken = next_token }
end

return M
