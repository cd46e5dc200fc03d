--- The POS device of viopay's POS key provisioning guide: attests with its pre-provisioned keys,
-- downloads and installs the key set in the guide's order (TMK under the ZMK, KEK under
-- the TMK, MSK under the KEK, then TPK, TDK, MAC under the KEK), checks every KCV and
-- refuses a set whose KCV or TR-31 MAC does not match, then drives the MSK-protected
-- endpoints: config, terminal parameters, activation, charges, refunds and cancels.
--
--   local dev = require("payhsm.pos.device").new{
--     device_id = "POS-8F3A2C91",
--     zmk = zmk_key, attestation_key = dak_key,     -- injected at manufacturing
--     transport = function(req) return resp end,    -- {method, path, headers, body} -> {status, headers, body}
--     -- or: http = {host =, port =, tls = {cafile =, certificate =, key =}, timeout =}
--     clock = os.time, firmware_version = "1.4.2",
--     renew_before_seconds = 30 * 86400, -- until /pos/config has said (key_set.renew_before_seconds)
--     auto_renew = true,                 -- renew a set near expiry before an MSK-protected call
--     request_signature = nil,           -- pin "body" or "bound"; default: the scheme the server
--                                        -- names in X-Signature-Scheme on POST /pos/keys
--                                        -- ("body", viopay's guide, when it names none)
--     pan_key = "msk",                   -- the PAN under the MSK (the guide's step 4) or "tdk"
--   }
--   dev:activate_all()                 -- attest, keys, config, terminal parameters, activate
--   local ch = dev:charge{amount = 1250, currency = "EUR", entry_mode = "chip",
--                         card = dev.card{pan =, psn =, imk =}, pin = "1234"}
--   dev:refund(ch.charge_id, 1250) ; dev:cancel(ch.charge_id)
-- Before each MSK-protected call the device renews its key set (attest, POST /pos/keys)
-- when it expires within the renewal margin; a failed renewal is kept in
-- dev.renew_error and the call goes ahead under the current set (the server refuses an
-- expired one with 4006).
-- Failures come back as nil, message, code: the server's error.code ("4001" ...), or
-- the device's own "KCV_MISMATCH", "KEY_SET_EXPIRED", "TR31_*", "SIGNATURE", "ENVELOPE",
-- "TRANSPORT", "CARD_ATC_EXHAUSTED".
local hsm = require "payhsm"
local util = require "payhsm.util"
local cjson = require "cjson.safe"
local P = require "payhsm.pos.protocol"
local gzip = require "payhsm.pos.gzip"

local M = {}
local Device = {}
Device.__index = Device

--- The install order of viopay's guide ("Terminal install order") with each key's parent and
-- the TR-31 usage the device expects in the block header.
M.INSTALL_ORDER = {
  { "tmk", "zmk", "K1" },
  { "kek", "tmk", "K1" },
  { "msk", "kek", "D0" },
  { "tpk", "kek", "P0" },
  { "tdk", "kek", "D0" },
  { "mac", "kek", "M7" },
}

function M.new(opts)
  util.checkfields(opts, "pos.device.new", { "device_id", "zmk", "attestation_key", "http", "transport", "clock",
    "log", "firmware_version", "auto_renew", "renew_before_seconds", "request_signature", "pan_key" })
  assert(type(opts) == "table", "pos.device.new{...}")
  assert(P.valid_device_id(opts.device_id), "device_id must be POS- and 8 hex characters")
  assert(hsm.key.is_key(opts.zmk), "zmk: the pre-provisioned zone master key")
  assert(hsm.key.is_key(opts.attestation_key), "attestation_key: the device attestation key")
  local clock = opts.clock or os.time
  local self = setmetatable({
    device_id = opts.device_id, zmk = opts.zmk, dak = opts.attestation_key,
    clock = function() return math.floor(clock()) end,
    firmware_version = opts.firmware_version or "1.4.2",
    keys = nil, key_set = nil, log = opts.log,
    renew_before = tonumber(opts.renew_before_seconds) or P.RENEW_BEFORE_SECONDS,
    auto_renew = opts.auto_renew ~= false,
    renewals = 0,
    pinned_signature = opts.request_signature,
    signature = opts.request_signature or P.DEFAULT_SIGNATURE,
    pan_key = opts.pan_key or "msk",
  }, Device)
  assert(opts.request_signature == nil or P.SIGNATURE_SCHEMES[opts.request_signature],
    "request_signature must be \"body\" or \"bound\"")
  assert(self.pan_key == "msk" or self.pan_key == "tdk", "pan_key must be \"msk\" or \"tdk\"")
  if opts.transport then
    self.transport = opts.transport
  else
    assert(opts.http, "pos.device: give transport or http = {host =, port =, tls =}")
    local c = require("payhsm.http_client").new(opts.http)
    self.http = c
    self.transport = function(req) return c:request(req) end
  end
  return self
end

function Device:close()
  if self.http then self.http:close() end
  self:_drop_keys()
end

function Device:_drop_keys()
  for _, k in pairs(self.keys or {}) do k:close() end
  self.keys = nil
end

local function header(resp, name)
  local h = resp.headers or {}
  local v = h[name]
  if v ~= nil then return v end
  for k, val in pairs(h) do if k:lower() == name then return val end end
  return nil
end

-- Sends a request; returns the response or nil, message, code for non-2xx answers.
function Device:_send(method, path, headers, body)
  local resp, err = self.transport { method = method, path = path, headers = headers, body = body }
  if not resp then return nil, "no answer from the server: " .. tostring(err), "TRANSPORT" end
  if resp.status < 200 or resp.status > 299 then
    local doc = cjson.decode(resp.body or "")
    local e = type(doc) == "table" and type(doc.error) == "table" and doc.error or {}
    return nil, ("server answered %d: %s %s%s"):format(resp.status, tostring(e.code), tostring(e.message),
      e.details and (" (" .. tostring(e.details) .. ")") or ""), tostring(e.code or resp.status), resp
  end
  return resp
end

local function json_of(resp)
  local doc = cjson.decode(resp.body or "")
  if type(doc) ~= "table" then return nil, "the server answered without a JSON object", "TRANSPORT" end
  return doc
end

-- ---- steps 4 and 5: challenge and attestation ----------------------------------------------

--- Asks for a challenge, answers it with the attestation key and keeps the att_ token.
-- Returns the token (and the response document) or nil, message, code.
function Device:attest()
  local h = { [P.H.device] = self.device_id, ["content-type"] = "application/json" }
  local resp, msg, code = self:_send("POST", P.PATHS.challenge, h, util.json(util.object { "device_id", self.device_id }))
  if not resp then return nil, msg, code end
  local doc = json_of(resp)
  if not doc or type(doc.challenge) ~= "string" then return nil, "no challenge in the answer", "TRANSPORT" end
  local proof = hsm.hmac(self.dak, P.attestation_string(self.device_id, doc.challenge, self.firmware_version))
  resp, msg, code = self:_send("POST", P.PATHS.attest, h, util.json(util.object {
    "device_id", self.device_id,
    "challenge", doc.challenge,
    "firmware_version", self.firmware_version,
    "proof", proof,
  }))
  if not resp then return nil, msg, code end
  doc = json_of(resp)
  if not doc or type(doc.attestation_token) ~= "string" then return nil, "no token in the answer", "TRANSPORT" end
  self.token = doc.attestation_token
  return self.token, doc
end

-- ---- step 6: POST /pos/keys and the install ---------------------------------------------------

--- Installs a /pos/keys response document: unwraps each key in viopay's order under
-- its parent, checks the block's usage and the key's KCV (encrypt a zero block, first
-- 3 bytes; the HMAC key's check value for the MAC key). All or nothing: on any failure
-- no key of the set is kept and nil, message, code is returned.
function Device:install(doc)
  if type(doc) ~= "table" or type(doc.keys) ~= "table" or type(doc.key_set) ~= "table"
     or type(doc.verification) ~= "table" or type(doc.verification.kcv) ~= "table" then
    return nil, "install: not a key set response", "KEY_SET_FORMAT"
  end
  local t = doc.transport or {}
  if t.format ~= "TR31" or t.encryption ~= "AES-256" or t.wrapped_under ~= "kek" then
    return nil, "install: transport must be TR31 / AES-256 / kek", "KEY_SET_FORMAT"
  end
  local set = doc.key_set
  local issued, expires = P.parse_iso8601(set.issued_at), P.parse_iso8601(set.expires_at)
  if type(set.key_set_id) ~= "string" or set.key_set_id == "" or not issued or not expires or expires <= issued then
    return nil, "install: key_set needs key_set_id, issued_at and a later expires_at (RFC 3339 UTC)", "KEY_SET_FORMAT"
  end
  if expires <= self.clock() then
    return nil, ("install: key set %s expired at %s"):format(set.key_set_id:sub(1, 40), set.expires_at),
      "KEY_SET_EXPIRED"
  end
  local staged = { zmk = self.zmk }
  local function fail(msg, code)
    for name, k in pairs(staged) do if name ~= "zmk" then k:close() end end
    return nil, "install: " .. msg, code
  end
  for _, step in ipairs(M.INSTALL_ORDER) do
    local name, parent, usage = step[1], step[2], step[3]
    local entry = doc.keys[name]
    local block = type(entry) == "table" and util.b64decode(entry.key_block)
    if not block then return fail(name .. ": key_block is not base64", "KEY_SET_FORMAT") end
    local key, h_or_msg, code = hsm.tr31.unwrap(staged[parent], block)
    if not key then return fail(("%s under %s: %s"):format(name, parent, tostring(h_or_msg)), code) end
    staged[name] = key
    if h_or_msg.version ~= "D" or key.usage ~= usage then
      return fail(("%s: expected a version D block with usage %s"):format(name, usage), "TR31_USAGE")
    end
    local want = doc.verification.kcv[name]
    if type(want) ~= "string" or not hsm.equal(key:kcv(), want:upper()) then
      return fail(name .. ": KCV does not match", "KCV_MISMATCH")
    end
  end
  staged.zmk = nil
  self:_drop_keys()
  self.keys = staged
  self.key_set = {
    key_set_id = set.key_set_id,
    issued_at = issued,
    expires_at = expires,
    kcv = doc.verification.kcv,
  }
  return self.key_set
end

--- POST /pos/keys with the attestation token; installs the set. Returns the key set
-- ({key_set_id, issued_at, expires_at, kcv}) and the response document.
function Device:download_keys()
  if not self.token then return nil, "no attestation token: attest first", "4001" end
  local resp, msg, code = self:_send("POST", P.PATHS.keys, {
    authorization = "Attestation " .. self.token, [P.H.device] = self.device_id,
    ["content-type"] = "application/json" })
  if not resp then return nil, msg, code end
  local doc, m2, c2 = json_of(resp)
  if not doc then return nil, m2, c2 end
  -- The scheme the server signs with: named in X-Signature-Scheme ("body" when absent).
  -- A device pinned to a scheme refuses a server naming another.
  local scheme = header(resp, P.H.scheme) or P.DEFAULT_SIGNATURE
  if not P.SIGNATURE_SCHEMES[scheme] then
    return nil, "the server names an unknown signature scheme", "SIGNATURE_SCHEME"
  end
  if self.pinned_signature and scheme ~= self.pinned_signature then
    return nil, ("the server signs with scheme %q, the device is pinned to %q"):format(scheme,
      self.pinned_signature), "SIGNATURE_SCHEME"
  end
  local ks, m3, c3 = self:install(doc)
  if not ks then return nil, m3, c3, doc end
  self.signature = scheme
  return ks, doc
end

--- The renewal margin in seconds: key_set.renew_before_seconds from /pos/config, else
-- opts.renew_before_seconds (default P.RENEW_BEFORE_SECONDS, 30 days); never more than
-- half the current set's lifetime, so a fresh set is not due for renewal at once.
function Device:renew_margin()
  local cfg = self.config and self.config.key_set
  local m = cfg and tonumber(cfg.renew_before_seconds) or self.renew_before
  local ks = self.key_set
  if ks then m = math.min(m, (ks.expires_at - ks.issued_at) / 2) end
  return math.floor(m)
end

--- True when there is no key set or it expires within `margin` seconds (default
-- renew_margin()).
function Device:needs_new_keys(margin)
  if not self.key_set then return true end
  return self.key_set.expires_at - self.clock() <= (margin or self:renew_margin())
end

--- Attests again and downloads a new key set when the current one is near expiry.
function Device:ensure_keys(margin)
  if not self:needs_new_keys(margin) then return self.key_set end
  local tok, msg, code = self:attest()
  if not tok then return nil, msg, code end
  return self:download_keys()
end

-- Before an MSK-protected call: renews the key set when it is due (auto_renew). A failed
-- renewal is recorded (renew_error) and retried no sooner than 60 s later; the call
-- then goes ahead under the current set.
function Device:_renew_if_due()
  if not (self.auto_renew and self.key_set and self:needs_new_keys()) then return end
  local now = self.clock()
  if self.renew_retry_at and now < self.renew_retry_at then return end
  local old = self.key_set.key_set_id
  local ks, msg, code = self:ensure_keys()
  if ks then
    self.renewals, self.renew_error, self.renew_retry_at = self.renewals + 1, nil, nil
    if self.log then self.log(("key set %s renewed as %s"):format(old, ks.key_set_id)) end
  else
    self.renew_error, self.renew_retry_at = { message = msg, code = code }, now + 60
    if self.log then self.log(("key set %s: renewal failed: %s"):format(old, tostring(msg))) end
  end
end

-- ---- MSK-protected requests ---------------------------------------------------------------------

-- Signs and sends a request; checks the response signature and opens its envelope.
-- `payload` is a table (util.object) or its JSON text; `no_renew` skips the renewal
-- check (the payload was built under the current keys). Returns the plaintext (or the
-- gzip'ed bytes) and the response.
function Device:_protected(path, payload, no_renew)
  if not no_renew then self:_renew_if_due() end
  if not self.keys then return nil, "no key set installed", "NO_KEYS" end
  local body = ""
  local json = payload
  if payload ~= nil then
    if type(json) ~= "string" then json = util.json(payload) end
    body = hsm.envelope.encode(hsm.envelope.seal(self.keys.msk, json))
  end
  self.last_call = { path = path, json = json }
  local ts, nonce = P.iso8601(self.clock()), hsm.random(16)
  local bound = self.signature == "bound"
  local headers = {
    [P.H.device] = self.device_id,
    [P.H.key_set] = self.key_set.key_set_id,
    [P.H.timestamp] = ts,
    [P.H.nonce] = nonce,
    [P.H.signature] = hsm.hmac(self.keys.mac, bound and P.request_signing_string("POST", path, self.device_id,
      self.key_set.key_set_id, ts, nonce, body) or P.body_signing_string(body)),
    ["content-type"] = body ~= "" and "application/json" or nil,
  }
  self.last_request = { path = path, headers = headers, body = body }
  local resp, msg, code, failed = self:_send("POST", path, headers, body)
  if not resp then
    if code == "4006" and self.renew_error then
      msg = msg .. "; renewal failed: " .. tostring(self.renew_error.message)
    end
    return nil, msg, code, failed
  end
  local sig = header(resp, "x-signature")
  local signed = bound and P.response_signing_string(resp.status, nonce, resp.body) or P.body_signing_string(resp.body)
  if type(sig) ~= "string" or not hsm.hmac_verify(self.keys.mac, signed, sig) then
    return nil, "response signature does not verify", "SIGNATURE", resp
  end
  local plain, m2, c2 = hsm.envelope.open(self.keys.msk, resp.body)
  if not plain then return nil, m2, c2, resp end
  return plain, resp
end

local function decoded(plain, msg, code)
  if not plain then return nil, msg, code end
  local doc = cjson.decode(plain)
  if type(doc) ~= "table" then return nil, "envelope does not hold a JSON object", "ENVELOPE" end
  return doc
end

--- POST /pos/config: the core config (merchant, terminal id, features).
function Device:fetch_config()
  local doc, msg, code = decoded(self:_protected(P.PATHS.config))
  if doc then self.config = doc end
  return doc, msg, code
end

--- POST /pos/terminal-parameters: envelope (TR31-DATA or TR31-DATA-CHUNKED) around gzip
-- JSON. Returns the parameters and the envelope format used.
function Device:fetch_terminal_parameters()
  local gz, resp, code = self:_protected(P.PATHS.parameters)
  if not gz then return nil, resp, code end
  local json, gerr = gzip.decompress(gz)
  if not json then return nil, gerr, "GZIP" end
  local doc = cjson.decode(json)
  if type(doc) ~= "table" then return nil, "terminal parameters are not JSON", "GZIP" end
  self.parameters = doc
  local env = cjson.decode(resp.body)
  return doc, env.format, #gz, #json
end

--- POST /pos/activate: readiness JSON (installed key KCVs, versions) in, result out.
function Device:activate()
  self:_renew_if_due() -- before the readiness names the installed keys' KCVs
  local kcv = {}
  for _, step in ipairs(M.INSTALL_ORDER) do
    kcv[#kcv + 1] = step[1]
    kcv[#kcv + 1] = self.keys and self.keys[step[1]]:kcv() or nil
  end
  return decoded(self:_protected(P.PATHS.activate, util.object {
    "request_id", util.uuid(),
    "device_id", self.device_id,
    "readiness", util.object {
      "keys_installed", self.keys ~= nil,
      "key_set_id", self.key_set and self.key_set.key_set_id,
      "kcv", util.object(kcv),
      "config_version", self.config and self.config.config_version,
      "parameters_version", self.parameters and self.parameters.parameters_version,
      "firmware_version", self.firmware_version,
    },
  }, true))
end

--- The whole activation: attest, keys, config, terminal parameters, activate.
function Device:activate_all()
  local ok, msg, code = self:attest()
  if not ok then return nil, msg, code end
  ok, msg, code = self:download_keys()
  if not ok then return nil, msg, code end
  ok, msg, code = self:fetch_config()
  if not ok then return nil, msg, code end
  ok, msg, code = self:fetch_terminal_parameters()
  if not ok then return nil, msg, code end
  return self:activate()
end

-- ---- payments ----------------------------------------------------------------------------

--- A simulated EMV card for tests and scenarios: it holds its issuer's IMK (test data)
-- to compute ARQCs, and an ATC that counts up.
function M.card(c)
  assert(type(c.pan) == "string" and hsm.key.is_key(c.imk), "card{pan =, imk =}")
  local card = { pan = c.pan, psn = c.psn or "00", imk = c.imk, atc = c.atc or 0,
    mode = c.mode or "EMV_OPTION_A", derivation = c.derivation or "EMV_COMMON" }
  --- GENERATE AC: the ARQC over the transaction data and the ATC used.
  -- The ATC is 2 bytes (EMV Book 3, 9F36): at 65535 the card is used up and must be
  -- replaced (nil, message, "CARD_ATC_EXHAUSTED"); it never wraps, since the issuer
  -- declines an ATC that does not move forward.
  function card.generate_ac(fields)
    if card.atc >= 65535 then
      return nil, "card: ATC exhausted after 65535 transactions; replace the card", "CARD_ATC_EXHAUSTED"
    end
    card.atc = card.atc + 1
    fields.atc = ("%04X"):format(card.atc)
    local arqc = hsm.emv.generate_arqc(card.imk, { mode = card.mode, derivation = card.derivation, pan = card.pan,
      psn = card.psn, atc = fields.atc, un = fields.un, data = P.emv_data(fields) })
    return arqc, fields.atc
  end
  --- Checks an ARPC (method 1) as the card would in EXTERNAL AUTHENTICATE.
  function card.check_arpc(arqc, atc, un, arpc, arc)
    local want = hsm.emv.generate_arpc(card.imk, { mode = card.mode, derivation = card.derivation, pan = card.pan,
      psn = card.psn, atc = atc, un = un, method = 1, arqc = arqc, arc = arc })
    return hsm.equal(want, arpc)
  end
  return card
end

--- The charge request the device sends (before sealing): PAN under the MSK (viopay's
-- step 4, "Use MSK for field-level data encrypt"; under the TDK with pan_key = "tdk",
-- the card then saying pan_key = "tdk"), PIN block
-- ISO format 4 under the TPK, and for chip / contactless the card's ARQC. Returns the
-- request and the EMV values, or nil, message, code (CARD_ATC_EXHAUSTED).
function Device:charge_request(p)
  util.checkfields(p, "device:charge", { "card", "amount", "currency", "entry_mode", "pin", "request_id" })
  local card = assert(p.card, "charge{card =}")
  local pan_iv = hsm.random(16)
  local req = {}
  local function add(k, v) if v ~= nil then req[#req + 1] = k; req[#req + 1] = v end end
  add("request_id", p.request_id or util.uuid())
  add("amount", p.amount)
  add("currency", p.currency or "EUR")
  add("entry_mode", p.entry_mode or "chip")
  add("card", util.object {
    "encrypted_pan", hsm.cipher.encrypt(self.keys[self.pan_key], "CBC", P.pan_block(card.pan), pan_iv),
    "pan_iv", pan_iv,
    "psn", card.psn,
    "pan_key", self.pan_key ~= "msk" and self.pan_key or nil,
  })
  if p.pin then
    add("pin_block", hsm.pin.encrypt(self.keys.tpk, "ISO_FORMAT_4", p.pin, card.pan))
    add("pin_block_format", "ISO_FORMAT_4")
  end
  local emv
  if (p.entry_mode or "chip") ~= "magstripe" then
    local f = { amount = p.amount, currency = p.currency or "EUR", date = os.date("!%y%m%d", self.clock()),
      un = hsm.random(4), country = self.config and self.config.merchant and self.config.merchant.country_code }
    local arqc, atc, code = card.generate_ac(f)
    if not arqc then return nil, atc, code end
    emv = { arqc = arqc, atc = atc, un = f.un }
    add("emv", util.object { "arqc", arqc, "atc", atc, "un", f.un, "date", f.date,
      "tvr", "0000000000", "aip", "3900", "cryptogram_type", "ARQC" })
  end
  return util.object(req), emv
end

--- POST /pos/charge. Returns the charge result (status approved or declined, response
-- code, ARPC for chip, checked against the card) or nil, message, code.
function Device:charge(p)
  self:_renew_if_due() -- before the PAN and PIN are put under the MSK (or TDK) and TPK
  if not self.keys then return nil, "no key set installed", "NO_KEYS" end
  local req, emv, c = self:charge_request(p)
  if not req then return nil, emv, c end
  local doc, msg, code = decoded(self:_protected(P.PATHS.charge, req, true))
  if not doc then return nil, msg, code end
  if emv and doc.emv then
    doc.arpc_ok = p.card.check_arpc(emv.arqc, emv.atc, emv.un, doc.emv.arpc, doc.emv.arc)
  end
  return doc
end

--- POST /pos/charge/:id/refund (amount defaults to the whole charge).
function Device:refund(charge_id, amount, reason)
  return decoded(self:_protected(P.PATHS.charge .. "/" .. charge_id .. "/refund", util.object {
    "request_id", util.uuid(), "amount", amount, "reason", reason }))
end

--- POST /pos/charge/:id/cancel (no body: viopay's "Empty HMAC body"; under the "bound"
-- scheme the HMAC still covers the path, headers and the empty body).
function Device:cancel(charge_id)
  return decoded(self:_protected(P.PATHS.charge .. "/" .. charge_id .. "/cancel"))
end

--- Sends the last MSK-protected request's payload again as a new request (fresh IV,
-- time stamp, nonce and signature; same request_id): what a terminal does when an
-- answer was lost. The server answers a request it has seen with its original result.
function Device:retry_last()
  local c = assert(self.last_call, "nothing sent yet")
  return decoded(self:_protected(c.path, c.json, true))
end

--- Sends the last MSK-protected request again, byte for byte (for replay checks).
function Device:replay_last()
  local r = assert(self.last_request, "nothing sent yet")
  return self:_send("POST", r.path, r.headers, r.body)
end

return M
