--- The POS terminal host of viopay's POS key provisioning guide as a pure request handler:
-- attestation, the key set download (`POST /pos/keys`, the guide's sixth
-- activation step), and the MSK-protected endpoints (config, terminal parameters,
-- activation, charges, refunds, cancels).
--
--   local pos = require("payhsm.pos.server").new{
--     devices = {{device_id = "POS-8F3A2C91", zmk = hex, attestation_key = hex}},
--     storage_key = {hex = ...},      -- AES-256 local master key (LMK); random when absent
--     store = require("payhsm.store.memory").new(),   -- or sqlite / redis
--     clock = os.time,                -- seconds; scenarios and specs pass a simulated one
--     key_set_years = 1,              -- calendar years from issued_at to expires_at (default)
--     key_set_lifetime = nil,         -- or a lifetime in seconds (replaces key_set_years)
--     request_signature = "body",     -- X-Signature: "body" (viopay's guide: HMAC over the
--                                     -- envelope body) or "bound" (payhsm's: also method,
--                                     -- path, device, key set, X-Timestamp, X-Nonce)
--     pan_key = "msk",                -- key card.encrypted_pan is under when the card names
--                                     -- none: "msk" (the guide's step 4) or "tdk" (legacy)
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
-- Every refusal is a row of M.ERRORS and leaves as the guide's error body
-- {"error": {"code", "message", "trace_id"}}. Keys live in the store only as TR-31
-- version D blocks under the LMK; unwrapped key objects of current key sets are cached
-- in this process (C memory, never Lua strings), for at most 2 * cache_size devices.
local hsm = require "payhsm"
local util = require "payhsm.util"
local service = require "payhsm.service"
local cjson = require "cjson.safe"
local P = require "payhsm.pos.protocol"
local payments = require "payhsm.pos.payments"
local attestation = require "payhsm.pos.attestation"
local cache = require "payhsm.cache"

local M = {}

--- Every refusal: HTTP status, error.code, error.message. 4001 is viopay's; the others
-- are payhsm's (docs/pos-activation.md, "Error codes").
-- payhsm.http's limits for this system (lua/payhsm/server.lua): the largest request is a
-- charge of about 1,000 bytes (measured over spec/pos_serve_spec.lua); 16 KiB of room.
M.max_body = 16384
M.single_headers = { "x-device-id", "x-key-set-id", "x-timestamp", "x-nonce", "x-signature" }

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
  -- name, algorithm, TR-31 usage, mode of use, the guide's usage word
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

local refusal = service.refusal

local function import_key(hex, alg, attrs, what)
  local key, msg = hsm.key.import(alg, hex, attrs)
  assert(key, ("pos: %s: %s"):format(what, tostring(msg)))
  return key
end

--- Builds the server from its config (see the header). Raises on a broken config.
function M.new(cfg)
  util.checkfields(cfg, "pos config", { "storage_key", "registration_kbpk", "devices", "merchant", "issuer",
    "key_set_lifetime", "key_set_years", "request_signature", "pan_key", "renew_before_seconds", "request_id_ttl", "chunk_size", "cache_size", "basic_auth", "listen",
    "tls", "tick_interval", "store", "log", "clock" })
  cfg = cfg or {}
  local clock = cfg.clock or os.time
  local self = setmetatable({
    store = cfg.store or require("payhsm.store.memory").new { clock = clock },
    clock = function() return math.floor(clock()) end,
    lifetime = tonumber(cfg.key_set_lifetime),
    years = tonumber(cfg.key_set_years) or 1,
    signature = cfg.request_signature or P.DEFAULT_SIGNATURE,
    pan_key = cfg.pan_key or "msk",
    merchant = cfg.merchant or M.DEFAULT_MERCHANT,
    users = cfg.basic_auth,
    chunk_size = tonumber(cfg.chunk_size) or 16384,
    request_id_ttl = tonumber(cfg.request_id_ttl) or P.REQUEST_ID_TTL,
  }, Server)
  assert(not (cfg.key_set_lifetime and cfg.key_set_years), "pos: key_set_lifetime and key_set_years exclude each other")
  assert(self.years >= 1 and self.years == math.floor(self.years), "pos: key_set_years must be a whole number >= 1")
  assert(P.SIGNATURE_SCHEMES[self.signature], "pos: request_signature must be \"body\" or \"bound\"")
  assert(self.pan_key == "msk" or self.pan_key == "tdk", "pos: pan_key must be \"msk\" or \"tdk\"")
  -- the shortest the lifetime can be (a calendar year is at least 365 days)
  local shortest = self.lifetime or self.years * 365 * 86400
  assert(shortest >= 2, "pos: key_set_lifetime must be at least 2 seconds")
  -- The margin the device renews within: never more than half the lifetime, or a fresh
  -- set would be due for renewal at once.
  self.renew_before = math.min(tonumber(cfg.renew_before_seconds) or P.RENEW_BEFORE_SECONDS,
    math.floor(shortest / 2))
  -- A request_id must be remembered at least as long as a request carrying it can be
  -- accepted (its X-Timestamp within the skew on either side).
  assert(self.request_id_ttl >= 2 * P.CLOCK_SKEW + 1, "pos: request_id_ttl must be at least 2 * CLOCK_SKEW + 1")
  local cache_size = tonumber(cfg.cache_size) or 1024
  assert(cache_size >= 1, "pos: cache_size must be at least 1")
  self.cache = cache.new(cache_size, function(c) for _, k in pairs(c.ks.k) do k:close() end end)
  self.parameters_cache = cache.new(cache_size)
  if cfg.registration_kbpk then
    self.registration_kbpk = import_key(cfg.registration_kbpk.hex, "AES_256", { usage = "K1", mode = "B" },
      "registration_kbpk")
  end
  -- The LMK wraps stored keys and nothing else; an HMAC "index key" derived from the
  -- same configured secret names tokens and cards in the store (so neither a token nor
  -- a PAN is a store key in clear) and is the same in every process sharing the store.
  local kdk
  if cfg.storage_key then
    self.lmk = import_key(cfg.storage_key.hex, "AES_256", { usage = "K1", mode = "B", local_master = true }, "storage_key")
    kdk = import_key(cfg.storage_key.hex, "AES_256", { usage = "B0" }, "storage_key")
  else
    self.lmk = hsm.key.generate("AES_256", { usage = "K1", mode = "B", local_master = true })
    kdk = hsm.key.generate("AES_256", { usage = "B0" })
    if cfg.log then
      cfg.log("pos: no storage_key configured: the local master key is random and lives only as long as this "
        .. "process (key sets in a durable store become unusable at restart); configure storage_key")
    end
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
local charge_key = payments.charge_key

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
      if not (hsm.equal(o.zmk_kcv, rec.zmk_kcv) and hsm.equal(o.dak_kcv, rec.dak_kcv)) then
        refusal("DEVICE_EXISTS")
      end
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

-- viopay's error body {"error": {"code", "message", "trace_id"}}; X-Trace-Id on every answer.
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

-- ---- steps 4 and 5: attestation (payhsm.pos.attestation) -------------------------------

attestation.install(Server, { respond = respond, error_response = error_response, decode_body = decode_body })

-- ---- step 6: POST /pos/keys -----------------------------------------------------------

--- Issues a fresh key set for a device and returns the guide's response (a util.object).
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
    key_set_id = "ks-" .. suffix, device_id = device_id, issued_at = now,
    expires_at = self.lifetime and now + self.lifetime or P.add_years(now, self.years),
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
  return respond(ctx, 200, self:issue_key_set(device_id), { ["Cache-Control"] = "no-store",
    ["X-Signature-Scheme"] = self.signature })
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
-- Scheme "body" (viopay's guide, the default): X-Signature is the HMAC of the body alone;
-- X-Timestamp and X-Nonce are optional and, when sent, checked (window, reuse) -- but
-- they are not signed, so they stop a duplicate send, not an attacker. Scheme "bound":
-- both are required and signed with method, path, device and key set.
function Server:_authenticate(req)
  local h = req.headers
  local device_id, ks_id, ts, nonce, sig = h[P.H.device], h[P.H.key_set], h[P.H.timestamp], h[P.H.nonce],
    h[P.H.signature]
  local bound = self.signature == "bound"
  if not P.valid_device_id(device_id) or type(ks_id) ~= "string" then
    refusal("KEY_SET_UNKNOWN", "X-Device-Id and X-Key-Set-Id are required")
  end
  if type(sig) ~= "string" then refusal("SIGNATURE", "X-Signature is required") end
  if bound and (type(ts) ~= "string" or type(nonce) ~= "string") then
    refusal("SIGNATURE", "X-Timestamp, X-Nonce (16 bytes hex) and X-Signature are required")
  end
  if nonce ~= nil and (type(nonce) ~= "string" or not nonce:match("^%x+$") or #nonce ~= 32) then
    refusal("SIGNATURE", "X-Nonce must be 16 bytes hex")
  end
  local ks = self:_key_set(device_id)
  if not ks or not hsm.equal(ks.key_set_id, ks_id) then
    refusal("KEY_SET_UNKNOWN", "no key set " .. ks_id:sub(1, 40) .. " is current for this device")
  end
  local msg = bound and P.request_signing_string(req.method, req.path, device_id, ks_id, ts, nonce, req.body)
    or P.body_signing_string(req.body)
  if not hsm.hmac_verify(ks.k.mac, msg, sig) then
    refusal("SIGNATURE", bound and "X-Signature does not verify (scheme \"bound\": method, path, device, key set, "
      .. "X-Timestamp, X-Nonce and body)" or "X-Signature does not verify (scheme \"body\": HMAC of the body)")
  end
  local now = self.clock()
  if ks.expires_at <= now then
    refusal("KEY_SET_EXPIRED", "key set " .. ks.key_set_id .. " expired at " .. P.iso8601(ks.expires_at))
  end
  if ts == nil and nonce == nil then return ks, device_id, nil end
  if type(ts) ~= "string" then refusal("REPLAY", "X-Nonce needs X-Timestamp") end
  local t = P.parse_iso8601(ts)
  if not t or math.abs(t - now) > P.CLOCK_SKEW then refusal("REPLAY", "X-Timestamp is outside the accepted window") end
  if nonce == nil then return ks, device_id, nil end
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
-- Signed as the request was: the body alone ("body"), or status, nonce and body ("bound").
local function sealed(ctx, ks, nonce, payload, opts, headers)
  local env = hsm.envelope.seal(ks.k.msk, type(payload) == "string" and payload or util.json(payload), opts)
  local body = hsm.envelope.encode(env)
  local bound = ctx.signature == "bound"
  local h = {
    ["X-Key-Set-Id"] = ks.key_set_id,
    ["X-Signature"] = hsm.hmac(ks.k.mac, bound and P.response_signing_string(200, nonce, body)
      or P.body_signing_string(body)),
    ["X-Signature-Scheme"] = ctx.signature,
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

-- ---- payments (payhsm.pos.payments) ---------------------------------------------------

payments.install(Server, { sealed = sealed, open_request = open_request })

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
    ctx.signature = self.signature
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
