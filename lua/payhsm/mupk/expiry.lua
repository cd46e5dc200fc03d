--- The expiry notifications of the multi-use public key service (payhsm.mupk): webhooks
-- sent webhook_hours before a key pair expires (Commerce Hub's multi-use public keys),
-- retried every webhook_retry seconds until answered 2xx, and the pending index that lets
-- tick() find the keys with notifications due without reading every key. The methods are
-- installed on the service's class by install(Service).
local util = require "payhsm.util"
local cjson = require "cjson.safe"

local M = {}

-- The keys whose expiry notifications are not finished: a JSON object keyId ->
-- {validTo, merchantId}, so tick reads one value instead of every key record.
local PENDING = "mupk:pending"
local function hook_key(id, h) return ("mupk:hook:%s:%s"):format(id, util.json(h)) end

--- Validates webhook_hours and returns a copy sorted largest first (notification 1 is
-- the earliest, e.g. 47 h before expiry). Raises on an empty list, a non-positive or
-- non-number entry, or a repeated one (a configuration mistake, not bad data).
function M.check_hours(list)
  assert(type(list) == "table" and #list > 0, "mupk: webhook_hours must be a non-empty list of hours")
  local out, seen = {}, {}
  for i, h in ipairs(list) do
    assert(type(h) == "number" and h > 0 and h < 24 * 366,
      ("mupk: webhook_hours[%d] must be a positive number of hours"):format(i))
    assert(not seen[h], ("mupk: webhook_hours repeats %s"):format(tostring(h)))
    seen[h], out[#out + 1] = true, h
  end
  table.sort(out, function(a, b) return a > b end)
  return out
end

local Expiry = {}

function Expiry:_webhook_url(mid)
  local m = self.merchants[mid]
  return (m and m.webhook_url) or self.webhook_url
end

-- ---- the pending index ------------------------------------------------------------------------
-- PENDING maps keyId -> {validTo =, merchantId =} for every key whose notifications are
-- not finished. generate adds, revoke removes, tick removes a key once it is revoked,
-- expired, or every mark of it is decided (delivered, suppressed or skipped). Updates are atomic
-- (store:update), so several processes on one store share it.

function Expiry:_index_add(rec)
  self.store:update(PENDING, function(old)
    local t = cjson.decode(old or "{}") or {}
    t[rec.keyId] = { validTo = rec.validTo, merchantId = rec.merchantId }
    return cjson.encode(t)
  end)
end

function Expiry:_index_remove(id)
  self.store:update(PENDING, function(old)
    local t = cjson.decode(old or "{}") or {}
    if t[id] == nil then return old end
    t[id] = nil
    return cjson.encode(t)
  end)
  self.wake[id] = nil
end

-- A store written before the index existed (or by a service that crashed while making
-- it): build it once from the key records.
function Expiry:_build_index()
  if self.store:get(PENDING) then return end
  local now = self.clock()
  local t = {}
  for _, k in ipairs(self.store:keys("mupk:key:")) do
    local rec = self:record(k:sub(#"mupk:key:" + 1))
    if rec and not rec.revokedAt and now <= rec.validTo then
      t[rec.keyId] = { validTo = rec.validTo, merchantId = rec.merchantId }
    end
  end
  self.store:update(PENDING, function(old)
    if old then return old end
    return next(t) and cjson.encode(t) or "{}"
  end)
end

--- Sends the expiry notifications that are due at the clock's instant. Commerce Hub's
-- multi-use public keys: "If merchant does not initiate the new key exchange as per the
-- best practices, Commerce Hub will send three notifications via webhook at 47, 44 and 41
-- hours before the key expires." Per key that is neither revoked nor expired, each hour
-- mark (webhook_hours) is decided once, at the first tick at or after it:
--   * suppression is re-evaluated at every mark: if the merchant has a newer key then,
--     that mark is "suppressed"; if that newer key is revoked later, the next mark is
--     sent again;
--   * only the latest mark that has passed is sent: earlier marks not yet sent (a key
--     that lives less than 47 hours, a service that was down across marks, a failed
--     notice still being retried when the next mark arrives) are "skipped", never sent
--     late, so no tick sends a burst and no notice names hours that are no longer true.
-- Each notification is claimed in the store before it is sent and marked delivered on a
-- 2xx answer, so it is sent at most once; a failed attempt is retried after
-- webhook_retry seconds until the next mark supersedes it or the key expires. Also
-- closes the cached private keys of keys that have expired. Returns the number delivered.
--
-- Cost per tick: one read of the pending index (decoded only when its text changed)
-- and, per pending key, a comparison with its wake time; a key's record is read only
-- when one of its marks (or a retry) is due.
function Expiry:tick()
  local now = self.clock()
  local delivered = 0
  self:evict_expired(now)
  local text = self.store:get(PENDING) or "{}"
  if text ~= self.index_text then
    self.index_text, self.index = text, cjson.decode(text) or {}
  end
  local first = self.hours[1] * 3600
  local done = {}
  for id, e in pairs(self.index) do
    if now > e.validTo then
      done[#done + 1] = id
    elseif now >= e.validTo - first and now >= (self.wake[id] or -math.huge) then
      local n, finished, wake = self:_due(id, now)
      delivered = delivered + n
      if finished then done[#done + 1] = id else self.wake[id] = wake end
    end
  end
  for _, id in ipairs(done) do self:_index_remove(id) end
  return delivered
end

-- States a notification ends in: delivered (2xx), sending (claimed by a process that
-- has not recorded an answer: at most once), suppressed (the merchant had a newer key at
-- its mark), skipped (a later mark had passed before it was sent).
local FINAL = { delivered = true, sending = true, suppressed = true, skipped = true }

-- Sets a notification's state to `state` unless it is already final (atomic).
function Expiry:_settle(rec, h, state, now)
  self.store:update(hook_key(rec.keyId, h), function(old)
    local st = old and cjson.decode(old) or { attempts = 0 }
    if FINAL[st.state] then return old end
    st.state, st.settled_at, st.next_attempt = state, math.floor(now), nil
    return cjson.encode(st)
  end)
end

-- Works on one pending key at now. Returns the number delivered, whether the key is
-- finished, and the next instant anything can be due for it.
function Expiry:_due(id, now)
  local rec = self:record(id)
  if not rec or rec.revokedAt or now > rec.validTo then return 0, true end
  local url = self:_webhook_url(rec.merchantId)
  if not url then return 0, false, rec.validTo - self.hours[#self.hours] * 3600 end
  local latest = 0 -- the latest mark that has passed (hours are sorted largest first)
  for n, h in ipairs(self.hours) do
    if now >= rec.validTo - h * 3600 then latest = n end
  end
  for n = 1, latest - 1 do self:_settle(rec, self.hours[n], "skipped", now) end
  local delivered = 0
  if latest > 0 then
    local h = self.hours[latest]
    if self:has_newer(rec) then
      self:_settle(rec, h, "suppressed", now)
    else
      delivered = self:_notify(rec, latest, h, url, now) and 1 or 0
    end
  end
  local finished, wake = true, math.huge
  for n = latest, #self.hours do
    if n > 0 then
      local h = self.hours[n]
      local st = self.store:get(hook_key(rec.keyId, h))
      st = st and cjson.decode(st)
      if not (st and FINAL[st.state]) then
        finished = false
        local at = rec.validTo - h * 3600
        if st and st.next_attempt and st.next_attempt > at then at = st.next_attempt end
        if at < wake then wake = at end
      end
    end
  end
  return delivered, finished, wake
end

function Expiry:_notify(rec, n, h, url, now)
  local hk = hook_key(rec.keyId, h)
  local claimed = self.store:update(hk, function(old)
    local st = old and cjson.decode(old) or { attempts = 0 }
    if st.state == "delivered" or st.state == "sending" then return old, false end
    if st.next_attempt and now < st.next_attempt then return old, false end
    st.state, st.attempts = "sending", st.attempts + 1
    return cjson.encode(st), st
  end)
  if not claimed then return false end
  local event_id = rec.keyId .. "-" .. util.json(h)
  local body = util.json(util.object {
    "eventType", "KEY_EXPIRY_NOTIFICATION",
    "eventId", event_id,
    "eventTimestamp", util.format_time(now),
    "merchantDetails", util.object { "merchantId", rec.merchantId },
    "asymmetricKeyDetails", util.object { "keyId", rec.keyId, "validTo", util.format_time(rec.validTo),
      "status", self:status(rec, now) },
    "notification", util.object { "number", n, "of", #self.hours, "hoursBeforeExpiry", h },
  })
  local ok, status, err, kind = pcall(self.post, url, body, { ["Webhook-Id"] = event_id })
  if not ok then status, err, kind = nil, status, "ambiguous" end
  local good = type(status) == "number" and status >= 200 and status < 300
  local why = good and "" or (type(status) == "number" and ("HTTP " .. status) or tostring(err))
  self.store:update(hk, function(old)
    local st = cjson.decode(old)
    if good then
      st.state, st.delivered_at = "delivered", math.floor(now)
    else
      st.state, st.next_attempt, st.last_error = "failed", now + self.retry, why
      -- ambiguous: the request went out and no complete answer came back, so the
      -- merchant may have it; the retry repeats the eventId for it to drop
      st.ambiguous = (type(status) ~= "number" and kind ~= "not_sent") or nil
    end
    return cjson.encode(st)
  end)
  if not good and self.log then
    self.log(("mupk: webhook %s for key %s failed: %s"):format(tostring(h), rec.keyId, why))
  end
  return good
end

--- The notification state of a key: {[hours] = {state =, attempts =, delivered_at =,
-- settled_at =}}; state is delivered, sending, failed (retried), suppressed or skipped.
function Expiry:notifications(id)
  local out = {}
  for _, h in ipairs(self.hours) do
    local s = self.store:get(hook_key(id, h))
    out[h] = s and cjson.decode(s) or nil
  end
  return out
end

--- Adds the expiry methods (tick, notifications and the pending index) to the service class.
function M.install(Service)
  for name, f in pairs(Expiry) do Service[name] = f end
end

return M
