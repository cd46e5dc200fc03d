--- The Master Session Key gateway of Fiserv's host-to-host MSK API, as a
-- pure request handler (a spec, a scenario, an embedding host and
-- `bin/payhsm serve gateway` all drive this same code).
--
--   local gw = require("payhsm.gateway").new{
--     master_keys = {{label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = "..."},
--                    {label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = "..."}},
--     basic_auth = {user = "password"},
--     store = require("payhsm.store.memory").new(),   -- or sqlite / redis
--     clock = os.time,                 -- seconds; scenarios pass a simulated one
--     min_import_interval = 0,         -- seconds between successful imports per label (0: off)
--     storage_key = {algorithm = "AES_256", hex = "..."},   -- local master key (see below)
--     gateway_keys = {pan = {algorithm =, hex =}, pin = {algorithm =, hex =}},  -- optional
--   }
--   local resp = gw:handle{method = "POST", path = "/key-management/keys/import",
--                          headers = {authorization = "Basic ...", ["client-request-id"] = "..."},
--                          body = "{...}"}     --> {status =, headers =, body =}
--
-- Endpoints (Fiserv's API elides the host part of the path; these are payhsm's):
--   POST /key-management/keys/import                          Import Key
--   GET  /key-management/keys/{sessionKeyId}                  Get Key
--   GET  /key-mgmt/session-keys/keys/sessionKeyLabel={label}  Get Keys
--   POST /key-management/transactions/pan-reencryption        PAN re-encryption (ours)
--   POST /key-management/transactions/pin-translation         PIN translation (ours)
--
-- State, per session key label, is one store value (so an import is one atomic store
-- update, durable before the 200 is sent): the key type, the master key label, the time
-- of the last import and the C rotation state (three static IDs, versions as Fiserv's API
-- describes) whose entries hold each session key as a TR-31 block under the local master
-- key (LMK) with its two check values. The LMK is `storage_key` from the config, or else
-- derived (SP 800-108 KBKDF) from one configured master key: on a new store the one whose
-- label sorts first, afterwards whichever configured master key derives the LMK whose
-- check value the store records (so adding a master key never changes it). The gateway's
-- own PAN and PIN keys (the targets of re-encryption and translation) are `gateway_keys`
-- from the config, or else generated at random on the first start and kept in the store
-- as TR-31 blocks under the LMK (created in one atomic store update, so processes sharing
-- a store agree): nothing the integrator holds derives them.
local hsm = require "payhsm"
local util = require "payhsm.util"
local service = require "payhsm.service"
local transactions = require "payhsm.gateway.transactions"
local cjson = require "cjson.safe"

local M = {}

M.PATHS = {
  import = "/key-management/keys/import",
  key = "/key-management/keys/", -- .. sessionKeyId
  keys = "/key-mgmt/session-keys/keys/sessionKeyLabel=", -- .. label
  pan = "/key-management/transactions/pan-reencryption",
  pin = "/key-management/transactions/pin-translation",
}

--- Every refusal: HTTP status, error.code, error.message. The first five rows are the
-- exception table of Fiserv's API; the rest are payhsm's (docs/msk-gateway.md, error codes).
-- payhsm.http's limits for this system (lua/payhsm/server.lua): the largest request is an
-- Import Key of about 310 bytes (measured over spec/gateway_serve_spec.lua); 8 KiB leaves
-- room for long labels and details. Headers that must not repeat (400 when they do).
M.max_body = 8192
M.single_headers = { "client-request-id" }

M.ERRORS = {
  DUPLICATE         = { 409, "301", "Session key has already been imported" },
  NO_RESPONSE       = { 409, "3067", "Unable to retrieve response while importing session key" },
  UNAUTHORIZED      = { 401, "401", "Unauthorized" },
  IMPORT_FAILED     = { 409, "3901", "Server error occurred while importing session key" },
  INTERNAL          = { 500, "1001", "Internal Server Error" },
  BAD_REQUEST       = { 400, "1002", "Bad request" },
  NOT_FOUND         = { 404, "1004", "Resource not found" },
  METHOD            = { 405, "1005", "Method not allowed" },
  UNKNOWN_MASTER_KEY = { 409, "3902", "Unknown masterKeyLabel" },
  MASTER_KEY_TYPE   = { 409, "3903", "masterKeyLabel does not name a master key for this keyType" },
  BLOCK_INVALID     = { 409, "3904", "sessionKey is not a valid TR-31 key block under the master key" },
  BLOCK_FORMAT      = { 409, "3905", "sessionKey must be an AES-128 key in a TR-31 version D key block" },
  KEY_USAGE         = { 409, "3906", "sessionKey has the wrong key usage for keyType (PIN: P0, PAN: D0)" },
  KCV_MISMATCH      = { 409, "3907", "sessionKeyCheckValue does not match the session key" },
  KEY_TYPE          = { 400, "3908", "keyType must be 'PAN' or 'PIN'" },
  TOO_SOON          = { 429, "3909", "Another key was imported for this sessionKeyLabel too recently" },
  LABEL_CONFLICT    = { 409, "3910", "sessionKeyLabel is already used with another keyType or masterKeyLabel" },
  KEY_NOT_FOUND     = { 404, "3920", "Session key not found" },
  LABEL_NOT_FOUND   = { 404, "3921", "No session keys for this sessionKeyLabel" },
  ROTATED_OUT       = { 409, "3930", "Session key has been rotated out" },
  WRONG_KEY_TYPE    = { 409, "3931", "Session key has the wrong keyType for this transaction" },
  TRANSACTION_DATA  = { 422, "3932", "Transaction data cannot be processed with this session key" },
}

local IDS_PER_LABEL = 3
local NEED_IDS = {} -- raised inside an import's store update when the label is new
local FIRST_ID = 1001
local USAGE = { PIN = "P0", PAN = "D0" }

local Gateway = {}
Gateway.__index = Gateway

local refusal = service.refusal

local function master_key_entry(mk, i)
  assert(type(mk) == "table" and type(mk.label) == "string" and type(mk.hex) == "string",
    ("gateway: master_keys[%d] needs label and hex"):format(i))
  assert(mk.key_type == "PAN" or mk.key_type == "PIN",
    ("gateway: master_keys[%d].key_type must be PAN or PIN"):format(i))
  local alg = mk.algorithm or "AES_256"
  assert(alg == "AES_256", ("gateway: master_keys[%d]: zone master keys are AES_256 (Fiserv's MSK API)"):format(i))
  local key, msg = hsm.key.import(alg, mk.hex, { usage = "K0" })
  assert(key, ("gateway: master_keys[%d]: %s"):format(i, tostring(msg)))
  return { label = mk.label, key_type = mk.key_type, key = key }
end

local function import_key(spec, what, usage, local_master)
  local key, msg = hsm.key.import(spec.algorithm or "AES_256", spec.hex, { usage = usage, local_master = local_master })
  assert(key, ("gateway: %s: %s"):format(what, tostring(msg)))
  return key
end

local LMK_NAME = "gw:lmk"     -- the LMK's CMAC check value
local OWN_KEYS = "gw:own"     -- the gateway's own PAN and PIN keys, TR-31 under the LMK
local LMK_LABEL = "payhsm gateway local master key"

local function derive_from(master_keys, label)
  local hex
  for _, mk in ipairs(master_keys) do if mk.label == label then hex = mk.hex end end
  local zkdk = hsm.key.import("AES_256", hex)
  local lmk = hsm.key.derive(zkdk, "AES_256", LMK_LABEL, label, { usage = "K0", local_master = true })
  zkdk:close()
  return lmk
end

-- The LMK when the config has no storage_key: derived from a master key (KBKDF, context
-- its label). A new store takes the label that sorts first and records the LMK's check
-- value (created atomically: two processes starting on one new store agree); a store that
-- has one takes whichever configured master key derives it, so adding, reordering or
-- relabelling other master keys changes nothing. Raises when none does.
local function derived_lmk(store, master_keys, labels)
  local stored = store:get(LMK_NAME)
  if not stored then
    local first = derive_from(master_keys, labels[1])
    local kcv = first:kcv("CMAC")
    first:close()
    stored = store:update(LMK_NAME, function(old)
      local v = old or kcv
      return v, v
    end)
  end
  for _, label in ipairs(labels) do
    local lmk = derive_from(master_keys, label)
    if hsm.equal(lmk:kcv("CMAC"), stored) then return lmk, label end
    lmk:close()
  end
  error(("gateway: the store was written under a local master key (KCV %s) that no configured master key "
    .. "derives: configure the master key it came from, or its storage_key; refusing to start"):format(stored), 0)
end

-- The gateway's own PAN (D0) and PIN (P0) keys when the config has no gateway_keys: AES-256,
-- random, generated on the first start and stored as TR-31 D blocks under the LMK. The
-- record is created in one store update that keeps a record already there, so of two
-- processes starting at once on one store (sqlite, redis) both use the first one written.
local function own_keys(store, lmk)
  local text = store:get(OWN_KEYS)
  if not text then
    local blocks = {}
    for _, t in ipairs { { "pan", "D0" }, { "pin", "P0" } } do
      local k = hsm.key.generate("AES_256", { usage = t[2], mode = "B", exportability = "N" })
      blocks[t[1]] = assert(hsm.tr31.wrap(lmk, k, { version = "D", exportability = "N" }, { ["local"] = true }))
      k:close()
    end
    local mine = cjson.encode(blocks)
    text = store:update(OWN_KEYS, function(old)
      local v = old or mine
      return v, v
    end)
  end
  local rec = cjson.decode(text)
  local keys = {}
  for _, t in ipairs { { "pan", "D0" }, { "pin", "P0" } } do
    local k = type(rec) == "table" and type(rec[t[1]]) == "string" and hsm.tr31.unwrap(lmk, rec[t[1]])
    if not k or k.usage ~= t[2] then
      error("gateway: the gateway's own " .. t[1]:upper() .. " key in the store does not unwrap under the local "
        .. "master key; refusing to start", 0)
    end
    keys[#keys + 1] = k
  end
  return keys[1], keys[2]
end

--- Builds a gateway from its config (see the header). Raises on a broken config.
function M.new(cfg)
  util.checkfields(cfg, "gateway config", { "master_keys", "basic_auth", "storage_key", "min_import_interval",
    "gateway_keys", "listen", "tls", "tick_interval", "store", "log", "clock" })
  assert(type(cfg) == "table", "gateway.new(config)")
  assert(type(cfg.master_keys) == "table" and #cfg.master_keys > 0, "gateway: config needs master_keys")
  assert(type(cfg.basic_auth) == "table" and next(cfg.basic_auth),
    "gateway: config needs basic_auth = {user = \"password\"} (Fiserv's MSK API requires Basic authorization)")
  local self = setmetatable({
    store = cfg.store or require("payhsm.store.memory").new { clock = cfg.clock },
    clock = cfg.clock or os.time,
    users = cfg.basic_auth,
    min_interval = tonumber(cfg.min_import_interval) or 0,
    log = cfg.log,
    zmks = {},
  }, Gateway)
  local labels = {}
  for i, mk in ipairs(cfg.master_keys) do
    local e = master_key_entry(mk, i)
    assert(not self.zmks[e.label], "gateway: duplicate master key label " .. e.label)
    self.zmks[e.label] = e
    labels[#labels + 1] = e.label
  end
  table.sort(labels)
  if cfg.storage_key then
    self.lmk = import_key(cfg.storage_key, "storage_key", "K0", true)
    assert(self.lmk.algorithm == "AES_256", "gateway: storage_key must be AES_256")
    util.check_storage_key(self.store, LMK_NAME, self.lmk, "gateway", "refusing to start")
  else
    self.lmk, self.lmk_source = derived_lmk(self.store, cfg.master_keys, labels)
    if self.log then
      self.log(("gateway: no storage_key configured: the local master key is derived from master key %s, "
        .. "which the integrator also holds; configure storage_key in production"):format(self.lmk_source))
    end
  end
  local gk = cfg.gateway_keys
  if gk then
    assert(type(gk.pan) == "table" and type(gk.pin) == "table", "gateway: gateway_keys needs pan and pin")
    self.gw_pan = import_key(gk.pan, "gateway_keys.pan", "D0")
    self.gw_pin = import_key(gk.pin, "gateway_keys.pin", "P0")
  else
    self.gw_pan, self.gw_pin = own_keys(self.store, self.lmk)
  end
  return self
end

-- ---- responses ---------------------------------------------------------------------

-- Every request needs HTTP Basic; Client-Request-Id is echoed (or a fresh UUID given).
local S = service.new {
  name = "gateway",
  errors = M.ERRORS,
  auth = "required",
  request_id = true,
  headers = function(ctx)
    return { ["Content-Type"] = "application/json", ["Client-Request-Id"] = ctx.crid,
             ["Api-Trace-Id"] = ctx.trace }
  end,
  error_body = function(ctx, e, _, detail)
    return util.object {
      "type", "errorResponse",
      "clientRequestId", ctx.crid,
      "apiTraceId", ctx.trace,
      "error", util.object { "code", e[2], "message", e[3], "details", detail },
    }
  end,
  challenges = { UNAUTHORIZED = 'Basic realm="payhsm-gateway"' },
}
M.service = S

local function respond(ctx, status, body) return S:respond(ctx, status, body) end

local function error_response(ctx, name, detail)
  local resp = S:error(ctx, name, detail)
  if name == "TOO_SOON" and ctx.retry_after then resp.headers["Retry-After"] = tostring(ctx.retry_after) end
  return resp
end

local function key_object(rec, id, entry, version)
  return util.object {
    "keyType", rec.keyType,
    "sessionKeyLabel", rec.sessionKeyLabel,
    "sessionKeyId", id,
    "sessionKeyCheckValue", entry.kcv,
    "version", version,
  }
end

-- ---- store records -------------------------------------------------------------------

local function label_key(label) return "gw:label:" .. label end
local function id_key(id) return "gw:id:" .. id end

local function decode_record(text)
  local rec = cjson.decode(text)
  if type(rec) ~= "table" then error("gateway: corrupt label record in the store", 0) end
  local state, msg = hsm.rotation.restore(rec.rotation)
  if not state then error("gateway: corrupt rotation state in the store: " .. tostring(msg), 0) end
  return rec, state
end

local function encode_record(rec, state)
  rec.rotation = state:snapshot()
  return cjson.encode(rec)
end

-- Reserves IDS_PER_LABEL fresh session key IDs and indexes them to the label.
function Gateway:_new_ids(label)
  local first = self.store:update("gw:seq", function(old)
    local next_id = old and tonumber(old) or FIRST_ID
    return tostring(next_id + IDS_PER_LABEL), next_id
  end)
  local ids = {}
  for i = 0, IDS_PER_LABEL - 1 do
    ids[#ids + 1] = tostring(first + i)
    self.store:put(id_key(ids[#ids]), label)
  end
  return ids
end

--- Reads a label's record and rotation state (nil when the label has no keys).
function Gateway:label_state(label)
  local text = self.store:get(label_key(label))
  if not text then return nil end
  return decode_record(text)
end

-- ---- Import Key ----------------------------------------------------------------------

local IMPORT_FIELDS = { "requestType", "keyType", "masterKeyLabel", "sessionKeyLabel", "sessionKey",
  "sessionKeyCheckValue" }

-- Unwraps and checks the session key; returns the key and the check value it matched.
function Gateway:_check_session_key(req)
  local zmk = self.zmks[req.masterKeyLabel]
  if not zmk then refusal("UNKNOWN_MASTER_KEY") end
  if zmk.key_type ~= req.keyType then refusal("MASTER_KEY_TYPE") end
  local header = hsm.tr31.parse(req.sessionKey)
  if not header then refusal("BLOCK_INVALID") end
  if header.version ~= "D" or header.algorithm ~= "A" then refusal("BLOCK_FORMAT") end
  if header.usage ~= USAGE[req.keyType] then refusal("KEY_USAGE") end
  local key = hsm.tr31.unwrap(zmk.key, req.sessionKey)
  if not key then refusal("BLOCK_INVALID") end
  if key.algorithm ~= "AES_128" then
    key:close()
    refusal("BLOCK_FORMAT")
  end
  local given = req.sessionKeyCheckValue:upper()
  local cmac, x924 = key:kcv("CMAC"), key:kcv("ANSI_X9_24")
  local m1, m2 = hsm.equal(given, cmac), hsm.equal(given, x924)
  if not (m1 or m2) then
    key:close()
    refusal("KCV_MISMATCH")
  end
  return key, cmac, x924
end

function Gateway:import(ctx, body)
  local req = cjson.decode(body or "")
  if type(req) ~= "table" then return error_response(ctx, "BAD_REQUEST", "body is not a JSON object") end
  for _, f in ipairs(IMPORT_FIELDS) do
    if type(req[f]) ~= "string" or req[f] == "" then
      return error_response(ctx, "BAD_REQUEST", "missing or empty field " .. f)
    end
  end
  if req.requestType ~= "ImportKeyRequest" then
    return error_response(ctx, "BAD_REQUEST", "requestType must be ImportKeyRequest")
  end
  if not USAGE[req.keyType] then return error_response(ctx, "KEY_TYPE") end
  if not req.sessionKeyCheckValue:match("^%x%x%x%x%x%x$") then
    return error_response(ctx, "KCV_MISMATCH", "sessionKeyCheckValue must be 6 hex digits")
  end

  local ok, key, cmac, x924 = pcall(self._check_session_key, self, req)
  if not ok then
    if service.is_refusal(key) then return error_response(ctx, key.refusal, key.detail) end
    error(key, 0)
  end
  local block = hsm.tr31.wrap(self.lmk, key, { version = "D", usage = USAGE[req.keyType], mode = key.mode or "B",
    exportability = "N" }, { ["local"] = true })
  key:close()
  if not block then error("re-wrapping the session key under the local master key failed", 0) end

  local label = req.sessionKeyLabel
  local ids -- reserved only when the label turns out to be new (then the update is retried)
  local now = self.clock()
  local entry = { kcv = req.sessionKeyCheckValue:upper(), cmac = cmac, x924 = x924, block = block,
    imported = tostring(now), clientRequestId = ctx.crid }
  local function rotate(old)
    local rec, state
    if old then
      rec, state = decode_record(old)
      if rec.keyType ~= req.keyType or rec.masterKeyLabel ~= req.masterKeyLabel then refusal("LABEL_CONFLICT") end
      for _, slot in ipairs(state:list()) do
        if hsm.equal(slot.entry.cmac, cmac) and hsm.equal(slot.entry.x924, x924) then
          refusal("DUPLICATE", "the same key is session key " .. slot.id)
        end
      end
      if self.min_interval > 0 and now - rec.lastImport < self.min_interval then
        ctx.retry_after = math.ceil(self.min_interval - (now - rec.lastImport))
        refusal("TOO_SOON", ("at most one import per %d s for a sessionKeyLabel"):format(self.min_interval))
      end
    else
      if not ids then error(NEED_IDS, 0) end
      rec = { keyType = req.keyType, masterKeyLabel = req.masterKeyLabel, sessionKeyLabel = label }
      state = hsm.rotation.new { ids = ids }
    end
    local slot_id, slot_version = state:import(entry)
    rec.lastImport = now
    return encode_record(rec, state), slot_id, slot_version
  end
  -- Every store call is protected: a store failure (also while reserving the IDs of a
  -- new label) is Fiserv's 3067, never the 3901 of an unexpected failure.
  local ok2, id, version = pcall(self.store.update, self.store, label_key(label), rotate)
  if not ok2 and id == NEED_IDS then
    ok2, id = pcall(self._new_ids, self, label)
    if ok2 then
      ids = id
      ok2, id, version = pcall(self.store.update, self.store, label_key(label), rotate)
    end
  end
  if not ok2 then
    if service.is_refusal(id) then return error_response(ctx, id.refusal, id.detail) end
    self:_log_store_failure(label, id)
    return error_response(ctx, "NO_RESPONSE")
  end
  return respond(ctx, 200, util.object {
    "type", "importKeyResponse",
    "clientRequestId", ctx.crid,
    "keyType", req.keyType,
    "masterKeyLabel", req.masterKeyLabel,
    "sessionKeyLabel", label,
    "sessionKeyId", id,
    "sessionKeyCheckValue", entry.kcv,
  })
end

-- ---- Get Key / Get Keys ----------------------------------------------------------------

--- Finds a session key by ID: rec, state, entry, version (nil when absent).
function Gateway:find(id)
  local label = self.store:get(id_key(id))
  if not label then return nil end
  local rec, state = self:label_state(label)
  if not rec then return nil end
  local entry, version = state:get(id)
  if not entry then return nil end
  return rec, state, entry, version
end

function Gateway:get_key(ctx, id)
  local rec, _, entry, version = self:find(id)
  if not rec then return error_response(ctx, "KEY_NOT_FOUND") end
  return respond(ctx, 200, util.object {
    "type", "getKeyResponse",
    "clientRequestId", ctx.crid,
    "apiTraceId", ctx.trace,
    "key", key_object(rec, id, entry, version),
  })
end

-- Get Keys lists the label's keys in the order of their static IDs (as Fiserv's
-- example: 25, 26, 27 with versions 3.0, 1.0, 2.0); the highest version is active.
function Gateway:get_keys(ctx, label)
  local rec, state = self:label_state(label)
  if not rec then return error_response(ctx, "LABEL_NOT_FOUND") end
  local list = state:list()
  table.sort(list, function(a, b) return tonumber(a.id) < tonumber(b.id) end)
  local keys = {}
  for _, s in ipairs(list) do keys[#keys + 1] = key_object(rec, s.id, s.entry, s.version) end
  return respond(ctx, 200, util.object {
    "type", "getKeysResponse",
    "clientRequestId", ctx.crid,
    "apiTraceId", ctx.trace,
    "keys", util.array(keys),
  })
end

-- ---- transactions with the session keys (payhsm.gateway.transactions) ----------------

transactions.install(Gateway, { respond = respond, error_response = error_response })

-- ---- dispatch ----------------------------------------------------------------------------

function Gateway:_route(ctx, req)
  local path, method = req.path or "", req.method
  if path == M.PATHS.import then
    if method ~= "POST" then return error_response(ctx, "METHOD") end
    local ok, resp = pcall(self.import, self, ctx, req.body)
    if ok then return resp end
    self:_log_failure(resp)
    return error_response(ctx, "IMPORT_FAILED")
  elseif path == M.PATHS.pan or path == M.PATHS.pin then
    if method ~= "POST" then return error_response(ctx, "METHOD") end
    local ok, resp = pcall(path == M.PATHS.pan and self.pan_reencryption or self.pin_translation, self, ctx, req.body)
    if ok then return resp end
    if service.is_refusal(resp) then return error_response(ctx, resp.refusal, resp.detail) end
    error(resp, 0)
  elseif path:sub(1, #M.PATHS.keys) == M.PATHS.keys then
    if method ~= "GET" then return error_response(ctx, "METHOD") end
    return self:get_keys(ctx, path:sub(#M.PATHS.keys + 1))
  elseif path:sub(1, #M.PATHS.key) == M.PATHS.key and not path:find("/", #M.PATHS.key + 1, true) then
    if method ~= "GET" then return error_response(ctx, "METHOD") end
    return self:get_key(ctx, path:sub(#M.PATHS.key + 1))
  end
  return error_response(ctx, "NOT_FOUND")
end

--- Handles one request {method, path, headers (lower-case names), body} and returns
-- {status, headers, body}. `path` is the decoded path, as every HTTP layer hands it over
-- (libmicrohttpd, lighttpd's uri.path): it is not percent-decoded again, so a label such
-- as "X%41" is taken literally (the client percent-encodes labels and IDs in its paths). Every request needs Basic authorization; an unexpected
-- failure is answered 500 / 1001 (its text goes to self.last_error, never to the client).
function Gateway:handle(req)
  return S:handle(self, req)
end

-- An unexpected failure: its text goes to the operator's log (cfg.log) and to
-- self.last_error, never to the client. payhsm's own messages carry no key bytes.
function Gateway:_log_failure(err)
  self.last_error = tostring(err)
  if self.log then self.log("gateway: internal error: " .. self.last_error) end
end

-- A store failure answered 409 / 3067: the access log shows only the status, so the cause
-- goes to the operator's log (cfg.log) and self.last_store_error. Store messages may quote
-- what was being written, so every run of 16 or more hex digits is replaced by its length:
-- no key bytes (nor wrapped ones) reach the log.
function Gateway:_log_store_failure(label, err)
  local cause = tostring(err):gsub("%x+", function(run)
    if #run >= 16 then return "<" .. #run .. " hex digits>" end
  end)
  self.last_store_error = cause
  if self.log then
    self.log(("gateway: import of sessionKeyLabel %q answered 409 / 3067: the store failed: %s"):format(label, cause))
  end
end

--- The slot table of a label (for scenarios and operators): array of
-- {id=, version=, kcv=, active=} in static ID order, or nil.
function Gateway:slots(label)
  local rec, state = self:label_state(label)
  if not rec then return nil end
  local active = state:active()
  local out = {}
  for _, s in ipairs(state:list()) do
    out[#out + 1] = { id = s.id, version = s.version, kcv = s.entry.kcv, active = s.id == active }
  end
  table.sort(out, function(a, b) return tonumber(a.id) < tonumber(b.id) end)
  return out
end

return M
