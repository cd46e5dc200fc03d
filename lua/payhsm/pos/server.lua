--- The POS terminal host of seeds/pos-keys-viopay.txt as a pure request handler
-- (../shared/DESIGN.md): attestation, the key set download (`POST /pos/keys`, the seed's sixth
-- activation step), and the MSK-protected endpoints (config, terminal parameters,
-- activation, charges, refunds, cancels).
--
--   local pos = require("payhsm.pos.server").new{
--     devices = {{device_id = "POS-8F3A2C91", zmk = hex, attestation_key = hex}},
--     storage_key = {hex = ...},      -- AES-256 local master key (LMK); random when absent
--     store = require("payhsm.store.memory").new(),   -- or sqlite / redis
--     clock = os.time,                -- seconds; scenarios and specs pass a simulated one
--     key_set_lifetime = 365 * 86400, -- seconds from issued_at to expires_at
--     renew_before_seconds = 30 * 86400, -- sent in /pos/config; at most half the lifetime
--     request_id_ttl = 86400,         -- seconds a request_id is remembered (P.REQUEST_ID_TTL)
--     cache_size = 1024,              -- devices whose unwrapped keys / parameters stay cached
--     merchant = {...}, issuer = {...},   -- see M.DEFAULT_MERCHANT / M.TEST_ISSUER
--     basic_auth = {operator = "password"}, -- for POST /pos/devices (registration)
--     registration_kbpk = {hex = ...},   -- AES-256 KBPK the POST /pos/devices key blocks are under
--     chunk_size = 16384,             -- terminal parameters: TR31-DATA-CHUNKED above this
--   }
--   local resp = pos:handle{method =, path =, headers = {lower-case = value}, body =}
--
-- Every refusal is a row of M.ERRORS and leaves as the seed's error body
-- {"error": {"code", "message", "trace_id"}}. Keys live in the store only as TR-31
-- version D blocks under the LMK; unwrapped key objects of current key sets are cached
-- in this process (C memory, never Lua strings), for at most 2 * cache_size devices.
local hsm = require "payhsm"
local util = require "payhsm.util"
local service = require "payhsm.service"
local cjson = require "cjson.safe"
local P = require "payhsm.pos.protocol"

local M = {}

--- Every refusal: HTTP status, error.code, error.message. 4001 is the seed's; the others
-- are ours (README.md, "POS terminal activation and payments" > "Error codes").
M.ERRORS = {
  BAD_REQUEST        = { 400, "4000", "Bad request" },
  ATTESTATION_TOKEN  = { 401, "4001", "Invalid or expired attestation token" },
  ATTESTATION_FAILED = { 401, "4002", "Device attestation failed" },
  SIGNATURE          = { 401, "4003", "Invalid request signature" },
  REPLAY             = { 401, "4004", "Request expired or replayed" },
  KEY_SET_UNKNOWN    = { 401, "4005", "Unknown device or key set" },
  KEY_SET_EXPIRED    = { 403, "4006", "Key set expired; download a new key set" },
  UNAUTHORIZED       = { 401, "4007", "Unauthorized" },
  NOT_ACTIVATED      = { 403, "4008", "Device is not activated" },
  ACTIVATION         = { 422, "4009", "Activation refused: installed keys do not match the key set" },
  NOT_FOUND          = { 404, "4040", "Resource not found" },
  CHARGE_NOT_FOUND   = { 404, "4041", "Charge not found" },
  METHOD             = { 405, "4050", "Method not allowed" },
  DEVICE_EXISTS      = { 409, "4090", "Device is already registered with other keys" },
  ALREADY_REFUNDED   = { 409, "4091", "Charge has already been refunded" },
  ALREADY_CANCELLED  = { 409, "4092", "Charge has been cancelled" },
  NOT_APPROVED       = { 409, "4093", "Charge was not approved" },
  DUPLICATE_REQUEST  = { 409, "4094", "request_id has already been used" },
  REFUND_AMOUNT      = { 422, "4095", "Refund amount must be between 1 and the charged amount" },
  ENVELOPE           = { 422, "4220", "Envelope cannot be opened with the device's MSK" },
  INTERNAL           = { 500, "5000", "Internal server error" },
}

M.DEFAULT_MERCHANT = {
  merchant_id = "MID-000123456", name = "Viopay Demo Store", mcc = "5411", country = "NL",
  country_code = "0528", currency = "EUR", timezone = "Europe/Amsterdam",
}

--- The simulated issuer (test data only): an EMV issuer master key for ARQCs and
-- cards with their PINs and per-transaction limits (minor units).
M.TEST_ISSUER = {
  imk = "0123456789ABCDEFFEDCBA9876543210",
  mode = "EMV_OPTION_A",
  derivation = "EMV_COMMON",
  cards = {
    { pan = "4761739001010119", psn = "01", pin = "1234", limit = 100000 },
    { pan = "5413330089010434", psn = "00", pin = "4321", limit = 50000 },
    { pan = "6799998900000060018", psn = "00", pin = "987654", limit = 100000 },
  },
}

local KEY_SPECS = {
  -- name, algorithm, TR-31 usage, mode of use, the seed's usage word
  { "tmk", "AES_256", "K1", "B", "key-encryption" },
  { "kek", "AES_256", "K1", "B", "key-encryption" },
  { "msk", "AES_256", "D0", "B", "data-encryption" },
  { "tpk", "AES_256", "P0", "B", "pin-encryption" },
  { "tdk", "AES_256", "D0", "B", "data-encryption" },
  { "mac", "HMAC_SHA256", "M7", "C", "message-authentication" },
}
M.KEY_SPECS = KEY_SPECS

local Server = {}
Server.__index = Server

-- A per-process cache bounded to 2 * size entries: two generations, a hit in the older
-- one moves to the newer; when the newer holds `size` entries the older one is dropped
-- (drop(value) is called for each of its values, e.g. to close key objects).
local Cache = {}
Cache.__index = Cache

local function new_cache(size, drop)
  assert(size >= 1, "pos: cache_size must be at least 1")
  return setmetatable({ size = size, drop = drop, new = {}, old = {}, n = 0 }, Cache)
end

function Cache:get(k)
  local v = self.new[k]
  if v ~= nil then return v end
  v = self.old[k]
  if v ~= nil then
    self.old[k] = nil
    self:put(k, v)
  end
  return v
end

function Cache:put(k, v)
  self.old[k] = nil
  if self.new[k] == nil then self.n = self.n + 1 end
  self.new[k] = v
  if self.n >= self.size then
    if self.drop then for _, old in pairs(self.old) do self.drop(old) end end
    self.old, self.new, self.n = self.new, {}, 0
  end
end

--- The number of cached entries (at most 2 * size).
function Cache:count()
  local n = self.n
  for _ in pairs(self.old) do n = n + 1 end
  return n
end

local refusal = service.refusal

local function import_key(hex, alg, attrs, what)
  local key, msg = hsm.key.import(alg, hex, attrs)
  assert(key, ("pos: %s: %s"):format(what, tostring(msg)))
  return key
end

--- Builds the server from its config (see the header). Raises on a broken config.
function M.new(cfg)
  cfg = cfg or {}
  local clock = cfg.clock or os.time
  local self = setmetatable({
    store = cfg.store or require("payhsm.store.memory").new { clock = clock },
    clock = function() return math.floor(clock()) end,
    lifetime = tonumber(cfg.key_set_lifetime) or 365 * 86400,
    merchant = cfg.merchant or M.DEFAULT_MERCHANT,
    users = cfg.basic_auth,
    chunk_size = tonumber(cfg.chunk_size) or 16384,
    request_id_ttl = tonumber(cfg.request_id_ttl) or P.REQUEST_ID_TTL,
  }, Server)
  assert(self.lifetime >= 2, "pos: key_set_lifetime must be at least 2 seconds")
  -- The margin the device renews within: never more than half the lifetime, or a fresh
  -- set would be due for renewal at once.
  self.renew_before = math.min(tonumber(cfg.renew_before_seconds) or P.RENEW_BEFORE_SECONDS,
    math.floor(self.lifetime / 2))
  -- A request_id must be remembered at least as long as a request carrying it can be
  -- accepted (its X-Timestamp within the skew on either side).
  assert(self.request_id_ttl >= 2 * P.CLOCK_SKEW + 1, "pos: request_id_ttl must be at least 2 * CLOCK_SKEW + 1")
  local cache_size = tonumber(cfg.cache_size) or 1024
  self.cache = new_cache(cache_size, function(c) for _, k in pairs(c.ks.k) do k:close() end end)
  self.parameters_cache = new_cache(cache_size)
  if cfg.registration_kbpk then
    self.registration_kbpk = import_key(cfg.registration_kbpk.hex, "AES_256", { usage = "K1", mode = "B" },
      "registration_kbpk")
  end
  -- The LMK wraps stored keys and nothing else; an HMAC "index key" derived from the
  -- same configured secret names tokens and cards in the store (so neither a token nor
  -- a PAN is a store key in clear) and is the same in every process sharing the store.
  local kdk
  if cfg.storage_key then
    self.lmk = import_key(cfg.storage_key.hex, "AES_256", { usage = "K1", mode = "B" }, "storage_key")
    kdk = import_key(cfg.storage_key.hex, "AES_256", { usage = "B0" }, "storage_key")
  else
    self.lmk = hsm.key.generate("AES_256", { usage = "K1", mode = "B" })
    kdk = hsm.key.generate("AES_256", { usage = "B0" })
  end
  self.index_key = hsm.key.derive(kdk, "HMAC_SHA256", "payhsm pos store index", "", { usage = "M7", mode = "C" })
  kdk:close()
  util.check_storage_key(self.store, "pos:lmk", self.lmk, "pos", "configure that storage_key")
  local issuer = cfg.issuer or M.TEST_ISSUER
  self.issuer = {
    imk = import_key(issuer.imk, "TDES_2KEY", { usage = "E0" }, "issuer.imk"),
    mode = issuer.mode or "EMV_OPTION_A",
    derivation = issuer.derivation or "EMV_COMMON",
    cards = {},
  }
  for _, c in ipairs(issuer.cards or {}) do
    self.issuer.cards[c.pan] = { psn = c.psn or "00", limit = c.limit or math.huge,
      pin_check = hsm.hmac(self.index_key, c.pan .. ":" .. c.pin) }
  end
  for i, d in ipairs(cfg.devices or {}) do
    assert(type(d) == "table" and d.zmk and d.attestation_key, ("pos: devices[%d] needs device_id, zmk, attestation_key"):format(i))
    local zmk = import_key(d.zmk, "AES_256", { usage = "K1", mode = "B" }, ("devices[%d].zmk"):format(i))
    local dak = import_key(d.attestation_key, "HMAC_SHA256", { usage = "M7", mode = "C" },
      ("devices[%d].attestation_key"):format(i))
    local ok, msg = self:register_device(d.device_id, zmk, dak)
    assert(ok, ("pos: devices[%d]: %s"):format(i, tostring(msg)))
    zmk:close()
    dak:close()
  end
  return self
end

function Server:_wrap_local(key)
  return assert(hsm.tr31.wrap(self.lmk, key, { version = "D", exportability = "N" }, { ["local"] = true }))
end

function Server:_unwrap_local(block, what)
  local key = hsm.tr31.unwrap(self.lmk, block)
  if not key then error("pos: stored " .. what .. " does not unwrap under the LMK", 0) end
  return key
end

local function device_key(id) return "pos:dev:" .. id end
local function key_set_key(id) return "pos:ks:" .. id end
local function charge_key(id) return "pos:charge:" .. id end

--- Registers a device (step 2 of the activation flow): its id and the two keys injected
-- at manufacturing, the ZMK (AES-256, K1) and the device attestation key (HMAC-SHA-256,
-- M7). Idempotent for the same keys; returns true or nil, message, "DEVICE_EXISTS".
function Server:register_device(device_id, zmk, dak)
  if not P.valid_device_id(device_id) then return nil, "device_id must be POS- and 8 hex characters", "BAD_REQUEST" end
  local rec = { zmk = self:_wrap_local(zmk), zmk_kcv = zmk:kcv("CMAC"), dak = self:_wrap_local(dak),
    dak_kcv = dak:kcv(), registered_at = P.iso8601(self.clock()), activated = false, key_sets = 0 }
  local ok, err = pcall(self.store.update, self.store, device_key(device_id), function(old)
    if old then
      local o = cjson.decode(old)
      if o.zmk_kcv ~= rec.zmk_kcv or o.dak_kcv ~= rec.dak_kcv then refusal("DEVICE_EXISTS") end
      return old
    end
    return cjson.encode(rec)
  end)
  if not ok then
    if type(err) == "table" then return nil, "device " .. device_id .. " is registered with other keys", err.refusal end
    error(err, 0)
  end
  return true
end

function Server:device(device_id)
  local text = self.store:get(device_key(device_id))
  return text and cjson.decode(text)
end

-- ---- responses -------------------------------------------------------------------------

-- The seed's error body {"error": {"code", "message", "trace_id"}}; X-Trace-Id on every answer.
local S = service.new {
  name = "pos",
  errors = M.ERRORS,
  headers = function(ctx) return { ["Content-Type"] = "application/json", ["X-Trace-Id"] = ctx.trace } end,
  error_body = function(ctx, e, _, detail)
    return util.object {
      "error", util.object { "code", e[2], "message", e[3], "trace_id", ctx.trace, "details", detail },
    }
  end,
  challenges = { ATTESTATION_TOKEN = 'Attestation realm="pos"', UNAUTHORIZED = 'Basic realm="pos"' },
}
M.service = S

local function respond(ctx, status, body, headers) return S:respond(ctx, status, body, headers) end

local function error_response(ctx, name, detail) return S:error(ctx, name, detail) end
M.error_response = error_response

local function decode_body(body)
  local doc = cjson.decode(body or "")
  if type(doc) ~= "table" then refusal("BAD_REQUEST", "body is not a JSON object") end
  return doc
end

-- ---- step 2: registration over HTTP (operator) ------------------------------------------

-- POST /pos/devices (operator, Basic auth): {"device_id", "zmk", "attestation_key"}, both
-- keys TR-31 version D blocks under the key injection facility's KBPK (cfg.registration_kbpk).
function Server:register_http(ctx, req)
  if not (self.users and util.basic_auth_ok(req.headers.authorization, self.users)) then
    return error_response(ctx, "UNAUTHORIZED")
  end
  if not self.registration_kbpk then return error_response(ctx, "NOT_FOUND", "registration over HTTP is off") end
  local doc = decode_body(req.body)
  local zmk = type(doc.zmk) == "string" and hsm.tr31.unwrap(self.registration_kbpk, doc.zmk)
  local dak = type(doc.attestation_key) == "string" and hsm.tr31.unwrap(self.registration_kbpk, doc.attestation_key)
  if not zmk or not dak then return error_response(ctx, "BAD_REQUEST", "zmk and attestation_key must be TR-31 blocks under the registration KBPK") end
  local ok, msg, code = self:register_device(doc.device_id, zmk, dak)
  zmk:close() dak:close()
  if not ok then return error_response(ctx, code, msg) end
  return respond(ctx, 201, util.object { "device_id", doc.device_id, "status", "registered" })
end

-- ---- steps 4 and 5: attestation ----------------------------------------------------------

local function random_token(prefix)
  return prefix .. hsm.random(16):lower()
end

-- POST /pos/attest/challenge {"device_id"} -> {"device_id", "challenge", "expires_in"}
function Server:challenge(ctx, req)
  local doc = decode_body(req.body)
  local device_id = doc.device_id
  if not P.valid_device_id(device_id) or device_id ~= req.headers[P.H.device] then
    return error_response(ctx, "BAD_REQUEST", "device_id must match X-Device-Id, POS- and 8 hex characters")
  end
  if not self:device(device_id) then return error_response(ctx, "ATTESTATION_FAILED", "unknown device") end
  local challenge = hsm.random(16)
  local now = self.clock()
  self.store:put("pos:chal:" .. device_id .. ":" .. challenge, tostring(now + P.CHALLENGE_LIFETIME),
    P.CHALLENGE_LIFETIME)
  return respond(ctx, 200, util.object {
    "device_id", device_id,
    "challenge", challenge,
    "expires_in", P.CHALLENGE_LIFETIME,
  })
end

-- POST /pos/attest {"device_id", "challenge", "firmware_version", "proof"}
--   -> {"attestation_token": "att_...", "token_type": "Attestation", "expires_in": 300,
--       "expires_at", "device_id"}
function Server:attest(ctx, req)
  local doc = decode_body(req.body)
  local device_id = doc.device_id
  if not P.valid_device_id(device_id) or device_id ~= req.headers[P.H.device] then
    return error_response(ctx, "BAD_REQUEST", "device_id must match X-Device-Id, POS- and 8 hex characters")
  end
  for _, f in ipairs { "challenge", "proof" } do
    if type(doc[f]) ~= "string" then return error_response(ctx, "BAD_REQUEST", "missing field " .. f) end
  end
  local dev = self:device(device_id)
  if not dev then return error_response(ctx, "ATTESTATION_FAILED", "unknown device") end
  local now = self.clock()
  -- the challenge is used up whatever the outcome
  local ck = "pos:chal:" .. device_id .. ":" .. doc.challenge:upper()
  local until_ = self.store:update(ck, function(old) return nil, old end)
  if not until_ or tonumber(until_) <= now then
    return error_response(ctx, "ATTESTATION_FAILED", "unknown, used or expired challenge")
  end
  local dak = self:_unwrap_local(dev.dak, "attestation key")
  local ok = hsm.hmac_verify(dak, P.attestation_string(device_id, doc.challenge:upper(), doc.firmware_version),
    doc.proof)
  dak:close()
  if not ok then return error_response(ctx, "ATTESTATION_FAILED", "proof does not verify") end
  local token = random_token("att_")
  local expires = now + P.TOKEN_LIFETIME
  self.store:put("pos:att:" .. hsm.hmac(self.index_key, token), cjson.encode { device_id = device_id,
    expires = expires }, P.TOKEN_LIFETIME)
  return respond(ctx, 200, util.object {
    "attestation_token", token,
    "token_type", "Attestation",
    "expires_in", P.TOKEN_LIFETIME,
    "expires_at", P.iso8601(expires),
    "device_id", device_id,
  })
end

-- Checks Authorization: Attestation <token> and X-Device-Id; returns the device id or
-- refuses with 4001. The scheme name is case-insensitive (RFC 7235 section 2.1:
-- "attestation att_..." is accepted); any other scheme (Bearer) is refused.
function Server:_check_attestation(req)
  local auth = req.headers.authorization
  local scheme, token
  if type(auth) == "string" then scheme, token = auth:match("^(%a+) +(att_[%w]+)%s*$") end
  if not token or scheme:lower() ~= "attestation" then refusal("ATTESTATION_TOKEN") end
  local device_id = req.headers[P.H.device]
  if not P.valid_device_id(device_id) then refusal("ATTESTATION_TOKEN") end
  local text = self.store:get("pos:att:" .. hsm.hmac(self.index_key, token))
  local rec = text and cjson.decode(text)
  if not rec or rec.expires <= self.clock() then refusal("ATTESTATION_TOKEN") end
  if not hsm.equal(rec.device_id, device_id) then refusal("ATTESTATION_TOKEN") end
  return device_id
end

-- ---- step 6: POST /pos/keys -----------------------------------------------------------

--- Issues a fresh key set for a device and returns the seed's response (a util.object).
function Server:issue_key_set(device_id)
  local dev = assert(self:device(device_id), "unknown device")
  local zmk = self:_unwrap_local(dev.zmk, "ZMK")
  local now = self.clock()
  local seq = self.store:update(device_key(device_id), function(old)
    local d = cjson.decode(old)
    d.key_sets = (d.key_sets or 0) + 1
    return cjson.encode(d), d.key_sets
  end)
  -- Globally unique ids: the year, the device's 8 hex digits and its key set sequence
  -- (an atomic counter in the device record), e.g. ks-2025-8F3A2C91-01.
  local suffix = ("%s-%s-%02d"):format(os.date("!%Y", now), device_id:sub(5), seq)
  -- Generated exportable (E) here, because tr31.wrap refuses to wrap a key marked N;
  -- delivered with exportability N in every block: the terminal uses its keys and
  -- never exports them. tr31.unwrap does not look at a KBPK's exportability, so the
  -- terminal's N TMK and KEK still unwrap the keys below them.
  local keys = {}
  for _, s in ipairs(KEY_SPECS) do
    keys[s[1]] = hsm.key.generate(s[2], { usage = s[3], mode = s[4], exportability = "E" })
  end
  -- The hierarchy: ZMK -> TMK -> KEK -> MSK / TPK / TDK / MAC.
  local parent = { tmk = zmk, kek = keys.tmk, msk = keys.kek, tpk = keys.kek, tdk = keys.kek, mac = keys.kek }
  local blocks, kcv, stored = {}, {}, {}
  for _, s in ipairs(KEY_SPECS) do
    local name = s[1]
    local block = assert(hsm.tr31.wrap(parent[name], keys[name], { version = "D", exportability = "N",
      key_version = ("%02d"):format(seq % 100) }))
    blocks[name] = util.b64encode(block)
    kcv[name] = keys[name]:kcv()
    stored[name] = self:_wrap_local(keys[name])
  end
  local rec = {
    key_set_id = "ks-" .. suffix, device_id = device_id, issued_at = now, expires_at = now + self.lifetime,
    keys = stored, kcv = kcv,
  }
  self.store:put(key_set_key(device_id), cjson.encode(rec))
  for _, k in pairs(keys) do k:close() end
  zmk:close()
  local key_objs = {}
  for _, s in ipairs(KEY_SPECS) do
    key_objs[#key_objs + 1] = s[1]
    key_objs[#key_objs + 1] = util.object {
      "key_id", s[1] .. "-" .. suffix,
      "key_block", blocks[s[1]],
      "usage", s[5],
    }
  end
  local kcvs = {}
  for _, s in ipairs(KEY_SPECS) do kcvs[#kcvs + 1] = s[1]; kcvs[#kcvs + 1] = kcv[s[1]] end
  return util.object {
    "key_set", util.object {
      "key_set_id", rec.key_set_id,
      "issued_at", P.iso8601(rec.issued_at),
      "expires_at", P.iso8601(rec.expires_at),
    },
    "transport", util.object { "format", "TR31", "encryption", "AES-256", "wrapped_under", "kek" },
    "keys", util.object(key_objs),
    "verification", util.object { "kcv", util.object(kcvs) },
  }
end

function Server:keys(ctx, req)
  local device_id = self:_check_attestation(req)
  return respond(ctx, 200, self:issue_key_set(device_id), { ["Cache-Control"] = "no-store" })
end

-- ---- the MSK-protected endpoints ---------------------------------------------------------

-- The current key set of a device with its keys unwrapped (cached per process, checked
-- against the stored record so a new key set from another process is picked up).
function Server:_key_set(device_id)
  local text = self.store:get(key_set_key(device_id))
  if not text then return nil end
  local c = self.cache:get(device_id)
  if c and c.text == text then return c.ks end
  local ks = cjson.decode(text)
  local keys = {}
  for _, s in ipairs(KEY_SPECS) do
    if s[1] == "msk" or s[1] == "tpk" or s[1] == "tdk" or s[1] == "mac" then
      keys[s[1]] = self:_unwrap_local(ks.keys[s[1]], s[1])
    end
  end
  ks.k = keys
  if c then for _, k in pairs(c.ks.k) do k:close() end end
  self.cache:put(device_id, { text = text, ks = ks })
  return ks
end

-- Verifies the headers and X-Signature of an MSK-protected request; returns the key set.
function Server:_authenticate(req)
  local h = req.headers
  local device_id, ks_id, ts, nonce, sig = h[P.H.device], h[P.H.key_set], h[P.H.timestamp], h[P.H.nonce],
    h[P.H.signature]
  if not P.valid_device_id(device_id) or type(ks_id) ~= "string" then
    refusal("KEY_SET_UNKNOWN", "X-Device-Id and X-Key-Set-Id are required")
  end
  if type(sig) ~= "string" or type(ts) ~= "string" or type(nonce) ~= "string" or not nonce:match("^%x+$")
     or #nonce ~= 32 then
    refusal("SIGNATURE", "X-Timestamp, X-Nonce (16 bytes hex) and X-Signature are required")
  end
  local ks = self:_key_set(device_id)
  if not ks or not hsm.equal(ks.key_set_id, ks_id) then
    refusal("KEY_SET_UNKNOWN", "no key set " .. ks_id:sub(1, 40) .. " is current for this device")
  end
  local msg = P.request_signing_string(req.method, req.path, device_id, ks_id, ts, nonce, req.body)
  if not hsm.hmac_verify(ks.k.mac, msg, sig) then refusal("SIGNATURE") end
  local now = self.clock()
  if ks.expires_at <= now then
    refusal("KEY_SET_EXPIRED", "key set " .. ks.key_set_id .. " expired at " .. P.iso8601(ks.expires_at))
  end
  local t = P.parse_iso8601(ts)
  if not t or math.abs(t - now) > P.CLOCK_SKEW then refusal("REPLAY", "X-Timestamp is outside the accepted window") end
  local nk = "pos:nonce:" .. device_id .. ":" .. nonce:upper()
  -- The nonce is remembered until its X-Timestamp leaves the window: t + CLOCK_SKEW is
  -- the last second the timestamp is accepted, so the entry lives one second past it
  -- (at most 2 * CLOCK_SKEW + 1 seconds). The TTL is set in the same atomic write.
  local fresh = self.store:update(nk, function(old)
    if old then return old, false end
    return "1", true
  end, { ttl = P.nonce_ttl(t, now) })
  if not fresh then refusal("REPLAY", "X-Nonce has been used") end
  return ks, device_id, nonce
end

-- An MSK envelope response, signed for the request's nonce.
local function sealed(ctx, ks, nonce, payload, opts, headers)
  local env = hsm.envelope.seal(ks.k.msk, type(payload) == "string" and payload or util.json(payload), opts)
  local body = hsm.envelope.encode(env)
  local h = {
    ["X-Key-Set-Id"] = ks.key_set_id,
    ["X-Signature"] = hsm.hmac(ks.k.mac, P.response_signing_string(200, nonce, body)),
  }
  for k, v in pairs(headers or {}) do h[k] = v end
  return respond(ctx, 200, body, h)
end

local function open_request(ks, body)
  local plain, msg = hsm.envelope.open(ks.k.msk, body or "")
  if not plain then refusal("ENVELOPE", (tostring(msg):gsub("^[%w%.]+: ", ""))) end
  local doc = cjson.decode(plain)
  if type(doc) ~= "table" or doc[1] ~= nil then refusal("ENVELOPE", "the envelope does not hold a JSON object") end
  return doc, plain
end

function Server:config(ctx, req, ks, device_id, nonce)
  local m = self.merchant
  local dev = self:device(device_id)
  return sealed(ctx, ks, nonce, util.object {
    "device_id", device_id,
    "terminal_id", dev.terminal_id or ("T" .. device_id:sub(5)),
    "merchant", util.object {
      "merchant_id", m.merchant_id, "name", m.name, "mcc", m.mcc, "country", m.country,
      "country_code", m.country_code, "timezone", m.timezone,
    },
    "currency", m.currency,
    "config_version", "2025.12.1",
    "features", util.object { "chip", true, "contactless", true, "magstripe", true, "refunds", true,
      "cancels", true, "online_pin", true },
    "key_set", util.object { "key_set_id", ks.key_set_id, "expires_at", P.iso8601(ks.expires_at),
      "renew_before_seconds", self.renew_before },
  })
end

--- The terminal parameters (the JSON before gzip): EMV applications, limits, TACs.
function Server:terminal_parameters_json(device_id)
  local aids = {
    { aid = "A0000000031010", label = "VISA CREDIT", kernel = 3 },
    { aid = "A0000000032010", label = "VISA ELECTRON", kernel = 3 },
    { aid = "A0000000041010", label = "MASTERCARD", kernel = 2 },
    { aid = "A0000000043060", label = "MAESTRO", kernel = 2 },
    { aid = "A00000002501", label = "AMERICAN EXPRESS", kernel = 4 },
  }
  local apps = {}
  for i, a in ipairs(aids) do
    apps[i] = util.object {
      "aid", a.aid, "label", a.label, "kernel_id", a.kernel, "app_version", "0002",
      "floor_limit", 0, "contactless_transaction_limit", 5000, "contactless_cvm_limit", 5000,
      "tac_default", "DC4000A800", "tac_denial", "0010000000", "tac_online", "DC4004F800",
      "ddol", "9F3704", "tdol", "9F02065F2A029A039C0195059F3704",
    }
  end
  return util.json(util.object {
    "device_id", device_id,
    "parameters_version", "2025.12.1",
    "terminal", util.object { "terminal_type", "22", "capabilities", "E0F8C8", "additional_capabilities",
      "F000F0A001", "country_code", self.merchant.country_code, "currency_code",
      P.CURRENCIES[self.merchant.currency] },
    "applications", util.array(apps),
    "receipt", util.object { "header", self.merchant.name, "footer", "Thank you" },
  })
end

function Server:terminal_parameters(ctx, req, ks, device_id, nonce)
  local gz = self.parameters_cache:get(device_id)
  if not gz then
    gz = require("payhsm.pos.gzip").compress(self:terminal_parameters_json(device_id))
    self.parameters_cache:put(device_id, gz)
  end
  local chunked = #gz > self.chunk_size
  return sealed(ctx, ks, nonce, gz, { chunked = chunked, chunk_size = chunked and self.chunk_size or nil })
end

function Server:activate(ctx, req, ks, device_id, nonce)
  local doc = open_request(ks, req.body)
  local r = doc.readiness
  if type(r) ~= "table" or r.keys_installed ~= true or type(r.kcv) ~= "table" then
    refusal("BAD_REQUEST", "readiness with keys_installed and kcv is required")
  end
  for _, s in ipairs(KEY_SPECS) do
    if type(r.kcv[s[1]]) ~= "string" or not hsm.equal(r.kcv[s[1]]:upper(), ks.kcv[s[1]]) then
      refusal("ACTIVATION", "kcv of " .. s[1] .. " does not match")
    end
  end
  local now = self.clock()
  local dev = self.store:update(device_key(device_id), function(old)
    local d = cjson.decode(old)
    if not d.activated then
      d.activated, d.activated_at, d.terminal_id = true, P.iso8601(now), "T" .. device_id:sub(5)
    end
    return cjson.encode(d), d
  end)
  return sealed(ctx, ks, nonce, util.object {
    "device_id", device_id,
    "status", "active",
    "terminal_id", dev.terminal_id,
    "merchant_id", self.merchant.merchant_id,
    "activated_at", dev.activated_at,
    "key_set_id", ks.key_set_id,
  })
end

-- ---- payments --------------------------------------------------------------------------

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
-- (PAN under the TDK, PIN, ARQC). Refuses malformed input with 400 / 4000; nothing is
-- written, so a refused charge leaves no trace. Returns the facts the decision needs.
function Server:_check_charge(ks, doc)
  local card = doc.card
  if type(card) ~= "table" or type(card.encrypted_pan) ~= "string" or type(card.pan_iv) ~= "string" then
    refusal("BAD_REQUEST", "card.encrypted_pan and card.pan_iv are required")
  end
  local clear = hsm.cipher.decrypt(ks.k.tdk, "CBC", card.encrypted_pan, card.pan_iv)
  local pan = clear and #clear == 32 and clear:match("^(%d+)F*$")
  if not pan or #pan < 12 or #pan > 19 then refusal("BAD_REQUEST", "card.encrypted_pan is not a PAN under the TDK") end
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
function Server:_decide(doc, f)
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
function Server:_claim(device_id, request_id, text)
  local held = self.store:update(request_key(device_id, request_id), function(old)
    if old then return old, old end
    return text, nil
  end, { ttl = self.request_id_ttl })
  if held then return nil, cjson.decode(held) or {} end
  return true
end

-- Releases a claim made with text (and only that claim).
function Server:_release(device_id, request_id, text)
  self.store:update(request_key(device_id, request_id), function(old)
    if old == text then return nil end
    return old
  end)
end

-- Runs fn under a claim: a refusal or failure inside releases it, success keeps it (it
-- expires request_id_ttl seconds after it was made).
function Server:_claimed(device_id, request_id, text, fn)
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
function Server:_replayed(device_id, held, rec, answered)
  if held.kind ~= rec.kind or type(held.fp) ~= "string" or not hsm.equal(held.fp, rec.fp) then
    refusal("DUPLICATE_REQUEST")
  end
  local ch = self:charge_record(held.charge_id)
  if not ch or ch.device_id ~= device_id or not answered(ch) then refusal("DUPLICATE_REQUEST", IN_FLIGHT) end
  return ch
end

function Server:charge(ctx, req, ks, device_id, nonce)
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
function Server:_change_charge(device_id, id, fn)
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

function Server:refund(ctx, req, ks, device_id, nonce, id)
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

function Server:cancel(ctx, req, ks, device_id, nonce, id)
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

-- ---- dispatch ----------------------------------------------------------------------------

local MSK_ROUTES = {
  [P.PATHS.config] = "config",
  [P.PATHS.parameters] = "terminal_parameters",
  [P.PATHS.activate] = "activate",
  [P.PATHS.charge] = "charge",
}

function Server:_route(ctx, req)
  local path, method = req.path or "", req.method
  local name, id = MSK_ROUTES[path], nil
  if not name then
    id, name = path:match("^/pos/charge/([^/]+)/(%a+)$")
    if name ~= "refund" and name ~= "cancel" then name = nil end
  end
  if name then
    if method ~= "POST" then return error_response(ctx, "METHOD") end
    local ks, device_id, nonce = self:_authenticate(req)
    return self[name](self, ctx, req, ks, device_id, nonce, id)
  end
  local f = (path == P.PATHS.keys and self.keys) or (path == P.PATHS.attest and self.attest)
    or (path == P.PATHS.challenge and self.challenge) or (path == "/pos/devices" and self.register_http)
  if not f then return error_response(ctx, "NOT_FOUND") end
  if method ~= "POST" then return error_response(ctx, "METHOD") end
  return f(self, ctx, req)
end

--- Handles one request {method, path, headers (lower-case names), body} and returns
-- {status, headers, body}. An unexpected failure is answered 500 / 5000 (its text goes
-- to self.last_error, never to the client).
function Server:handle(req)
  req.headers = req.headers or {}
  return S:handle(self, req)
end

--- A charge record (for scenarios and operators), or nil.
function Server:charge_record(id)
  local text = self.store:get(charge_key(id))
  return text and cjson.decode(text)
end

--- The current key set record of a device (blocks under the LMK, KCVs), or nil.
function Server:key_set_record(device_id)
  local text = self.store:get(key_set_key(device_id))
  return text and cjson.decode(text)
end

return M
