--- Payments on the POS terminal host (payhsm.pos.server): charges, refunds and cancels,
-- each an MSK envelope request of an activated device, and the request_id idempotency
-- they share. The methods are installed on the server's class by install(Server, shared),
-- shared giving the server's envelope helpers: sealed(ctx, ks, nonce, payload, opts,
-- headers) -> response and open_request(ks, body) -> doc, plain.
local hsm = require "payhsm"
local util = require "payhsm.util"
local cjson = require "cjson.safe"
local service = require "payhsm.service"
local P = require "payhsm.pos.protocol"

local M = {}

local refusal = service.refusal
local sealed, open_request -- the server's envelope helpers (install)

--- The store key of a charge record.
function M.charge_key(id) return "pos:charge:" .. id end
local charge_key = M.charge_key

local Payments = {}

local RESPONSE_TEXT = {
  ["00"] = "Approved", ["05"] = "Do not honour", ["14"] = "Invalid card number",
  ["51"] = "Insufficient funds", ["55"] = "Incorrect PIN",
}

-- An amount in minor units: a positive whole number (cjson reads JSON numbers as floats).
local function amount_of(v)
  if type(v) == "number" and v == math.floor(v) and v > 0 and v <= 99999999999 then return v end
  return nil
end

-- Checks a charge's card, PIN block and EMV fields and verifies what needs no state
-- (PAN, PIN, ARQC). Refuses malformed input with 400 / 4000; nothing is written, so a
-- refused charge leaves no trace. Returns the facts the decision needs.
-- The PAN is field-level data under the MSK, step 4 of viopay's guide ("Use MSK for
-- field-level data encrypt"); card.pan_key = "tdk" names the legacy path (the guide's
-- TDK, "Legacy/auxiliary data encryption key"). Without card.pan_key the server's
-- pan_key config decides ("msk" unless configured).
function Payments:_check_charge(ks, doc)
  local card = doc.card
  if type(card) ~= "table" or type(card.encrypted_pan) ~= "string" or type(card.pan_iv) ~= "string" then
    refusal("BAD_REQUEST", "card.encrypted_pan and card.pan_iv are required")
  end
  local which = card.pan_key or self.pan_key or "msk"
  if which ~= "msk" and which ~= "tdk" then refusal("BAD_REQUEST", "card.pan_key must be \"msk\" or \"tdk\"") end
  local clear = hsm.cipher.decrypt(ks.k[which], "CBC", card.encrypted_pan, card.pan_iv)
  local pan = clear and #clear == 32 and clear:match("^(%d+)F*$")
  if not pan or #pan < 12 or #pan > 19 then
    refusal("BAD_REQUEST", "card.encrypted_pan is not a PAN under the " .. which:upper())
  end
  local mode = doc.entry_mode
  local e = doc.emv
  if mode == "chip" or mode == "contactless" then
    if type(e) ~= "table" or type(e.arqc) ~= "string" or type(e.atc) ~= "string" or type(e.un) ~= "string"
       or type(e.date) ~= "string" then
      refusal("BAD_REQUEST", "emv.arqc, emv.atc, emv.un and emv.date are required for chip")
    end
    if not (e.atc:match("^%x%x%x%x$") and e.un:match("^%x%x%x%x%x%x%x%x$") and e.date:match("^%d%d%d%d%d%d$")) then
      refusal("BAD_REQUEST", "emv.atc (2 bytes), emv.un (4 bytes) or emv.date (YYMMDD) malformed")
    end
  end
  local f = { pan = pan, masked = P.mask_pan(pan), card = self.issuer.cards[pan] }
  local c = f.card
  if not c then return f end
  -- PIN: ISO 9564-1 format 4 under the TPK
  if type(doc.pin_block) ~= "string" then
    if mode ~= "contactless" or doc.amount > 5000 then f.pin_fail = "PIN required" end
  else
    local pin = hsm.pin.decrypt(ks.k.tpk, "ISO_FORMAT_4", doc.pin_block, pan)
    local ok = pin and hsm.equal(hsm.hmac(self.index_key, pan .. ":" .. pin), c.pin_check)
    if not ok then f.pin_fail = pin and "PIN does not match" or "PIN block does not decrypt" end
  end
  if not f.pin_fail and (mode == "chip" or mode == "contactless") then
    local issuer = self.issuer
    f.emv = { mode = issuer.mode, derivation = issuer.derivation, pan = pan, psn = c.psn, atc = e.atc, un = e.un,
      data = P.emv_data { amount = doc.amount, currency = doc.currency, date = e.date, un = e.un, atc = e.atc,
        tvr = e.tvr, aip = e.aip, country = self.merchant.country_code },
      arqc = e.arqc }
    f.arqc_ok = hsm.emv.verify_arqc(issuer.imk, f.emv)
  end
  return f
end

-- Decides a checked charge: returns response code, reason and the ARPC (chip). The one
-- stateful step: the card's ATC must move forward (a replayed cryptogram is declined).
function Payments:_decide(doc, f)
  local c = f.card
  if not c then return "14", "unknown card" end
  if f.pin_fail then return "55", f.pin_fail end
  local arpc
  if f.emv then
    if not f.arqc_ok then return "05", "ARQC does not verify" end
    local atc = tonumber(f.emv.atc, 16)
    local fresh = self.store:update("pos:atc:" .. hsm.hmac(self.index_key, f.pan), function(old)
      if old and tonumber(old) >= atc then return old, false end
      return tostring(atc), true
    end)
    if not fresh then return "05", "ATC not greater than the last one seen" end
    f.emv.method, f.emv.arc = 1, doc.amount > c.limit and "3531" or "3030"
    arpc = hsm.emv.generate_arpc(self.issuer.imk, f.emv)
  end
  if doc.amount > c.limit then return "51", "amount over the card's limit", arpc end
  return "00", nil, arpc
end

local function charge_object(ch)
  return util.object {
    "charge_id", ch.charge_id,
    "status", ch.status,
    "response_code", ch.response_code,
    "message", RESPONSE_TEXT[ch.response_code],
    "authorization_code", ch.authorization_code,
    "amount", ch.amount,
    "currency", ch.currency,
    "entry_mode", ch.entry_mode,
    "card", util.object { "masked_pan", ch.masked_pan },
    "emv", ch.arpc and util.object { "arpc", ch.arpc, "arc", ch.arc } or nil,
    "refunded_amount", ch.refunded_amount,
    "created_at", ch.created_at,
  }
end

local function refund_object(ch)
  return util.object {
    "refund_id", ch.refund_id,
    "charge_id", ch.charge_id,
    "status", "refunded",
    "amount", ch.refunded_amount,
    "currency", ch.currency,
    "reason", ch.refund_reason,
    "created_at", ch.refunded_at,
  }
end

-- ---- request ids ---------------------------------------------------------------------
-- A request_id is single-use per device. It is claimed by one atomic store update that
-- writes {kind, fp, charge_id[, refund_id]} only when the id is free, so of two
-- processes racing with one id exactly one goes on. It is claimed only after
-- everything that can refuse the request without state has passed; a refusal after
-- the claim (a refund the charge's state refuses, an internal error) releases it. A
-- kept claim lives request_id_ttl seconds (P.REQUEST_ID_TTL). The same request again
-- (fp: HMAC under the index key of kind, path and the envelope's plaintext) gets the
-- original answer; anything else under a used id is 409 / 4094.

local function request_key(device_id, request_id) return "pos:req:" .. device_id .. ":" .. request_id end

local function check_request_id(doc)
  if type(doc.request_id) ~= "string" or #doc.request_id < 8 or #doc.request_id > 64
     or not doc.request_id:match("^[%w%-_.:]+$") then
    refusal("BAD_REQUEST", "request_id (8 to 64 letters, digits or -_.:) is required")
  end
end

-- Claims the id with rec (its JSON text) for request_id_ttl seconds, the TTL set in the
-- same atomic write: returns true, or nil and the record that holds it.
function Payments:_claim(device_id, request_id, text)
  local held = self.store:update(request_key(device_id, request_id), function(old)
    if old then return old, old end
    return text, nil
  end, { ttl = self.request_id_ttl })
  if held then return nil, cjson.decode(held) or {} end
  return true
end

-- Releases a claim made with text (and only that claim).
function Payments:_release(device_id, request_id, text)
  self.store:update(request_key(device_id, request_id), function(old)
    if old == text then return nil end
    return old
  end)
end

-- Runs fn under a claim: a refusal or failure inside releases it, success keeps it (it
-- expires request_id_ttl seconds after it was made).
function Payments:_claimed(device_id, request_id, text, fn)
  local ok, a, b = pcall(fn)
  if not ok then
    pcall(self._release, self, device_id, request_id, text)
    error(a, 0)
  end
  return a, b
end

local function fingerprint(self, kind, path, plain)
  return hsm.hmac(self.index_key, kind .. "\n" .. path .. "\n" .. plain)
end

local REPLAYED = { ["Idempotent-Replayed"] = "true" }
local IN_FLIGHT = "the first request with this request_id has not been answered yet"

-- A request whose request_id is already claimed (held: the claim's record). The same
-- request again (same kind and fingerprint) gets the charge its first sending produced,
-- once answered(charge) says it has been; anything else is DUPLICATE_REQUEST.
function Payments:_replayed(device_id, held, rec, answered)
  if held.kind ~= rec.kind or type(held.fp) ~= "string" or not hsm.equal(held.fp, rec.fp) then
    refusal("DUPLICATE_REQUEST")
  end
  local ch = self:charge_record(held.charge_id)
  if not ch or ch.device_id ~= device_id or not answered(ch) then refusal("DUPLICATE_REQUEST", IN_FLIGHT) end
  return ch
end

function Payments:charge(ctx, req, ks, device_id, nonce)
  local doc, plain = open_request(ks, req.body)
  local dev = self:device(device_id)
  if not dev.activated then refusal("NOT_ACTIVATED") end
  check_request_id(doc)
  doc.amount = amount_of(doc.amount)
  if not doc.amount then refusal("BAD_REQUEST", "amount must be a positive integer (minor units)") end
  if not P.CURRENCIES[doc.currency] then refusal("BAD_REQUEST", "unknown currency") end
  if doc.entry_mode ~= "chip" and doc.entry_mode ~= "contactless" and doc.entry_mode ~= "magstripe" then
    refusal("BAD_REQUEST", "entry_mode must be chip, contactless or magstripe")
  end
  local f = self:_check_charge(ks, doc)
  local rec = { kind = "charge", fp = fingerprint(self, "charge", req.path, plain),
    charge_id = "ch_" .. hsm.random(12):lower() }
  local text = cjson.encode(rec)
  local claimed, held = self:_claim(device_id, doc.request_id, text)
  if not claimed then
    local ch = self:_replayed(device_id, held, rec, function() return true end)
    return sealed(ctx, ks, nonce, charge_object(ch), nil, REPLAYED)
  end
  local ch = self:_claimed(device_id, doc.request_id, text, function()
    local code, reason, arpc = self:_decide(doc, f)
    local ch = {
      charge_id = rec.charge_id, device_id = device_id, status = code == "00" and "approved" or "declined",
      response_code = code, decline_reason = reason, amount = doc.amount, currency = doc.currency,
      entry_mode = doc.entry_mode, masked_pan = f.masked, arpc = arpc, arc = arpc and (code == "00" and "3030" or "3531"),
      authorization_code = code == "00" and hsm.random(3) or nil, created_at = P.iso8601(self.clock()),
    }
    self.store:put(charge_key(ch.charge_id), cjson.encode(ch))
    return ch
  end)
  return sealed(ctx, ks, nonce, charge_object(ch))
end

-- Loads a charge of this device under an atomic update; fn(ch) changes it or refuses.
function Payments:_change_charge(device_id, id, fn)
  return self.store:update(charge_key(id), function(old)
    local ch = old and cjson.decode(old)
    if not ch or ch.device_id ~= device_id then refusal("CHARGE_NOT_FOUND") end
    local extra = fn(ch)
    return cjson.encode(ch), ch, extra
  end)
end

local function charge_id_ok(id)
  if not id:match("^ch_%x+$") then refusal("CHARGE_NOT_FOUND") end
end

function Payments:refund(ctx, req, ks, device_id, nonce, id)
  local doc, plain = open_request(ks, req.body)
  charge_id_ok(id)
  if doc.amount ~= nil then
    doc.amount = amount_of(doc.amount)
    if not doc.amount then refusal("REFUND_AMOUNT") end
  end
  check_request_id(doc)
  local rec = { kind = "refund", fp = fingerprint(self, "refund", req.path, plain), charge_id = id,
    refund_id = "re_" .. hsm.random(12):lower() }
  local text = cjson.encode(rec)
  local claimed, held = self:_claim(device_id, doc.request_id, text)
  if not claimed then
    local ch = self:_replayed(device_id, held, rec, function(c) return c.refund_id == held.refund_id end)
    return sealed(ctx, ks, nonce, refund_object(ch), nil, REPLAYED)
  end
  local now = P.iso8601(self.clock())
  local ch = self:_claimed(device_id, doc.request_id, text, function()
    return self:_change_charge(device_id, id, function(ch)
      if ch.status == "refunded" then refusal("ALREADY_REFUNDED") end
      if ch.status == "cancelled" then refusal("ALREADY_CANCELLED") end
      if ch.status ~= "approved" then refusal("NOT_APPROVED") end
      local amount = doc.amount or ch.amount
      if amount > ch.amount then refusal("REFUND_AMOUNT") end
      ch.status, ch.refunded_amount, ch.refunded_at = "refunded", amount, now
      ch.refund_id, ch.refund_reason = rec.refund_id, type(doc.reason) == "string" and doc.reason or nil
    end)
  end)
  return sealed(ctx, ks, nonce, refund_object(ch))
end

function Payments:cancel(ctx, req, ks, device_id, nonce, id)
  if req.body and req.body ~= "" then refusal("BAD_REQUEST", "cancel takes no body") end
  charge_id_ok(id)
  local now = P.iso8601(self.clock())
  local ch = self:_change_charge(device_id, id, function(ch)
    if ch.status == "cancelled" then refusal("ALREADY_CANCELLED") end
    if ch.status == "refunded" then refusal("ALREADY_REFUNDED") end
    if ch.status ~= "approved" then refusal("NOT_APPROVED") end
    ch.status, ch.cancelled_at = "cancelled", now
  end)
  return sealed(ctx, ks, nonce, util.object {
    "charge_id", ch.charge_id,
    "status", "cancelled",
    "amount", ch.amount,
    "currency", ch.currency,
    "cancelled_at", now,
  })
end

--- Adds the payment methods (charge, refund, cancel and their helpers) to the server class.
function M.install(Server, shared)
  sealed, open_request = shared.sealed, shared.open_request
  for name, f in pairs(Payments) do Server[name] = f end
end

return M
