-- Multi-use public keys (seeds/commerce-hub-multi-use-public-key.md), run on a simulated
-- clock: the seed's three-key January table and its three example transactions, a
-- merchant that forgets to rotate and gets the 47/44/41-hour webhooks on a real HTTP
-- listener, and a store-and-forward batch with one transaction over the merchant's
-- limit and one under a revoked key. Fails by raising.
local cjson = require "cjson"
local http = require "payhsm.http"
local mupk = require "payhsm.mupk"
local merchant_mod = require "payhsm.mupk.merchant"

local T = mupk.parse_time
local now = T("2024-01-01T00:00:00Z")
local clock = function() return now end
local function at(s) now = T(s) end
local function show(...) print(string.format(...)) end

local CARD = { pan = "4005550000000019", exp_month = "12", exp_year = "2030" }

-- ---- 1. the seed's Key Expiry Example -------------------------------------------------------
print("1. the seed's three keys and three example transactions")
local svc = mupk.new { clock = clock }
local m = merchant_mod.new { merchant_id = "123456789012345", service = svc, clock = clock, auto_rotate = false }

local TABLE = {
  { "Key #1", "2024-01-01T00:00:00Z", "2024-01-07T23:59:59Z" },
  { "Key #2", "2024-01-06T00:00:00Z", "2024-01-12T23:59:59Z" },
  { "Key #3", "2024-01-11T08:00:01Z", "2024-01-18T20:00:00Z" },
}
local keys, name_of = {}, {}
for i, row in ipairs(TABLE) do
  at(row[2]) -- generated and activated at this instant
  local k = assert(m:request_key { validTo = row[3] })
  assert(mupk.format_time(k.validFrom) == row[2] and mupk.format_time(k.validTo) == row[3])
  keys[i], name_of[k.keyId] = k, row[1]
  show("   %s generated/activated %s, expires %s (%s)", row[1], row[2], row[3], k.keyId)
end

local function submit(key, when)
  at(when)
  assert(m:capture { amount = 20.00, currency = "USD", key_id = key.keyId, pan = CARD.pan,
    exp_month = CARD.exp_month, exp_year = CARD.exp_year })
  local r = m:forward()[1]
  return r.status, r.body
end

local EXAMPLES = {
  { when = "2024-01-02T14:30:00Z", recommended = 1, accepted = { 1 }, rejected = {} },
  { when = "2024-01-06T08:30:00Z", recommended = 2, accepted = { 2, 1 }, rejected = {} },
  { when = "2024-01-11T23:45:00Z", recommended = 3, accepted = { 3, 2 }, rejected = { 1 } },
}
for _, ex in ipairs(EXAMPLES) do
  at(ex.when)
  local rec = m:key_for(now)
  assert(rec == keys[ex.recommended], "recommended key at " .. ex.when)
  show("   %s: the merchant should use %s", ex.when, name_of[rec.keyId])
  for _, i in ipairs(ex.accepted) do
    local status, body = submit(keys[i], ex.when)
    assert(status == 201, ("%s under %s: %s"):format(ex.when, TABLE[i][1], cjson.encode(body)))
    show("     under %s: %d %s (key status %s)", TABLE[i][1], status, body.gatewayResponse.transactionState,
      body.source.card.keyStatus)
  end
  for _, i in ipairs(ex.rejected) do
    local status, body = submit(keys[i], ex.when)
    assert(status == 422 and body.error[1].code == mupk.ERRORS.KEY_EXPIRED[2],
      ("%s under %s must be refused: %s"):format(ex.when, TABLE[i][1], cjson.encode(body)))
    show("     under %s: %d %s (%s)", TABLE[i][1], status, body.error[1].message, body.error[1].details)
  end
end

-- ---- 2. a merchant that forgets to rotate: the expiry webhooks ------------------------------------
print("2. a merchant that forgets to rotate: webhooks at 47, 44 and 41 hours (real HTTP, same process)")
local received, fail_next = {}, 1 -- the listener refuses its first delivery (503): retried
local srv = http.new { host = "127.0.0.1", port = 0, quiet = true, handler = function(req)
  if fail_next > 0 then
    fail_next = fail_next - 1
    return { status = 503, body = "busy" }
  end
  local doc = cjson.decode(req.body)
  received[#received + 1] = { at = now, doc = doc, path = req.path }
  return { status = 204, body = "" }
end }
local hook_url = ("http://127.0.0.1:%d/merchant/webhooks"):format(srv:port())
at("2024-02-01T00:00:00Z")
local svc2 = mupk.new { clock = clock, webhook_url = hook_url, webhook_retry = 600,
  webhook_pump = function() srv:run_once(5) end } -- the listener gets its turn while the service waits
local lazy = merchant_mod.new { merchant_id = "998877665544332", service = svc2, clock = clock, auto_rotate = false }
local careful = merchant_mod.new { merchant_id = "112233445566778", service = svc2, clock = clock }
local lk = assert(lazy:request_key())
assert(careful:tick()) -- its first key
show("   lazy merchant's key %s expires %s", lk.keyId, mupk.format_time(lk.validTo))
local stop = lk.validTo + 3600
while now < stop do
  now = now + 600 -- ten minutes a step
  careful:tick()
  svc2:tick()
end
for _, r in ipairs(received) do
  local n = r.doc.notification
  show("   webhook %d/%d at %s: %d hours before expiry (%s)", n.number, n["of"], mupk.format_time(r.at),
    n.hoursBeforeExpiry, r.path)
end
assert(#received == 3, "three notifications, got " .. #received)
for i, h in ipairs { 47, 44, 41 } do
  local due = lk.validTo - h * 3600
  assert(received[i].doc.notification.hoursBeforeExpiry == h)
  assert(received[i].doc.merchantDetails.merchantId == "998877665544332", "only the lazy merchant is notified")
  -- sent at the first tick at or after the mark; the first one after one retry interval
  local late = received[i].at - due
  assert(late >= 0 and late <= (i == 1 and 600 + 600 or 600), "on time: " .. late)
end
local st = svc2:notifications(lk.keyId)
assert(st[47].attempts == 2 and st[44].attempts == 1 and st[41].attempts == 1)
show("   47-hour webhook: first attempt refused with 503, delivered on attempt %d; each sent once", st[47].attempts)
show("   the careful merchant rotated 2 days before expiry (%d keys) and got no webhook", #careful.keys)
srv:close()

-- ---- 3. store and forward ---------------------------------------------------------------------------
print("3. store and forward: the merchant's offline limit and a revoked key")
at("2024-03-01T00:00:00Z")
local svc3 = mupk.new { clock = clock }
local seen = 0
local counting = { handle = function(_, req)
  if req.path == "/security/v1/transactions" then seen = seen + 1 end
  return svc3:handle(req)
end }
local shop = merchant_mod.new { merchant_id = "555000111222333", service = counting, clock = clock,
  offline_limit = 100.00 }
local ka = assert(shop:tick())
local old_tx = assert(shop:capture { amount = 30.00, pan = CARD.pan, exp_month = "12", exp_year = "2030" })
now = ka.validTo - 2 * 86400 + 60 -- two days before expiry: the merchant rotates
local kb = assert(shop:tick(), "the merchant requests its next key 2 days before expiry")
assert(shop:key_for(now) == kb)
local tx1 = assert(shop:capture { amount = 45.00, pan = CARD.pan, exp_month = "12", exp_year = "2030" })
local none, why = shop:capture { amount = 250.00, pan = CARD.pan, exp_month = "12", exp_year = "2030" }
assert(none == nil and why == "OVER_LIMIT")
show("   captured 30.00 under key A, 45.00 under key B; 250.00 refused by the merchant (limit 100.00)")
assert(shop:revoke(ka.keyId)) -- key A is revoked (say, a compromised terminal) before forwarding
show("   key A revoked before the batch is forwarded")
now = now + 3600
local results = shop:forward()
assert(#results == 2 and seen == 2, "the over-limit transaction is never sent")
for _, r in ipairs(results) do
  if r.tx == tx1 then
    assert(r.status == 201, cjson.encode(r.body))
  else
    assert(r.tx == old_tx and r.status == 422 and r.body.error[1].code == mupk.ERRORS.KEY_REVOKED[2])
  end
  show("   %s %.2f under %s: %d %s", r.tx.merchantTransactionId, r.tx.amount, r.tx.keyId == ka.keyId and "key A" or "key B",
    r.status, r.status == 201 and r.body.gatewayResponse.transactionState or r.body.error[1].message)
end
assert(#shop.queue == 0)
print("key_expiry: ok")
