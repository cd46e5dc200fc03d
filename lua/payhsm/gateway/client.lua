--- The integrator's side of the MSK gateway (Fiserv's host-to-host MSK API): generate
-- an AES-128 session key, wrap it in a TR-31 version D block under the zone master key
-- for its type, compute its check value, import it, and after a timeout confirm with
-- Get Keys instead of importing twice (the API's "Additional note").
--
--   local client = require("payhsm.gateway.client").new{
--     transport = function(req) return resp end,    -- {method, path, headers, body} -> {status, body} | nil, err
--     -- or: http = {host =, port =, tls = {cafile =, certificate =, key =}, timeout =}
--     -- or, in process: transport = client.in_process(gw)   (decodes the path as HTTP does)
--     user = "user", password = "password",
--     zmks = {PAN = {label = "ZMK_PAN_XXX_YYY", key = zmk_pan}, PIN = {label = "...", key = zmk_pin}},
--     kcv_algorithm = "CMAC",                        -- or "ANSI_X9_24"
--     attempts = 3, backoff = 0.1, sleep = fn,       -- import retries (see Client:import)
--   }
--   local res = client:rotate("PAN", "DEK_XX_XXYY")  -- new key, imported (or confirmed)
--   -- res = {sessionKeyId =, sessionKeyCheckValue =, key = <the session key>, confirmed = bool}
--   client:get_keys(label), client:get_key(id), client:active(label)
--   client:encrypt_pan(dek, pan) / client:reencrypt_pan(id, dek, pan) / client:translate_pin(...)
-- Errors come back as nil, message, code where code is the gateway's error.code (or
-- "TRANSPORT" when no answer came).
local hsm = require "payhsm"
local util = require "payhsm.util"
local cjson = require "cjson.safe"
local gateway = require "payhsm.gateway"

local M = {}
local Client = {}
Client.__index = Client

local USAGE = { PIN = "P0", PAN = "D0" }

function M.new(opts)
  util.checkfields(opts, "gateway.client.new", { "zmks", "kcv_algorithm", "transport", "http", "user", "password",
    "sleep", "attempts", "backoff" })
  assert(type(opts) == "table", "gateway.client.new{...}")
  local self = setmetatable({ opts = opts, zmks = opts.zmks or {}, kcv_algorithm = opts.kcv_algorithm or "CMAC" },
    Client)
  if opts.transport then
    self.transport = opts.transport
  else
    assert(opts.http, "gateway.client: give transport or http = {host =, port =, tls =}")
    local c = require("payhsm.http_client").new(opts.http)
    self.http = c
    self.transport = function(req) return c:request(req) end
  end
  self.auth = "Basic " .. util.b64encode(assert(opts.user, "user") .. ":" .. assert(opts.password, "password"))
  self.sleep = opts.sleep or function(seconds)
    local ok, socket = pcall(require, "socket")
    if ok then socket.sleep(seconds) end
  end
  return self
end

--- Percent-encodes a path segment (RFC 3986: everything but unreserved characters), as
-- the client does with the labels and IDs it puts into paths.
function M.url_encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- Decodes %XX once, as an HTTP server does with the request path before the gateway
-- sees it (the gateway itself does not decode).
function M.url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- A transport calling a gateway object in this process the way the HTTP layer would:
-- the wire path is decoded once before gw:handle sees it (for specs and scenarios).
function M.in_process(gw)
  return function(req)
    local r = {}
    for k, v in pairs(req) do r[k] = v end
    r.path = M.url_decode(req.path)
    return gw:handle(r)
  end
end

function Client:close()
  if self.http then self.http:close() end
end

-- Sends a request; returns the decoded body and the response, or nil, message, code.
function Client:call(method, path, body, request_id)
  local resp, err = self.transport {
    method = method, path = path, body = body and util.json(body) or nil,
    headers = { authorization = self.auth, ["content-type"] = body and "application/json" or nil,
                ["client-request-id"] = request_id or util.uuid() },
  }
  if not resp then return nil, "no answer from the gateway: " .. tostring(err), "TRANSPORT" end
  local doc = cjson.decode(resp.body or "")
  if resp.status ~= 200 then
    local e = type(doc) == "table" and type(doc.error) == "table" and doc.error or {}
    return nil, ("gateway answered %d: %s %s"):format(resp.status, tostring(e.code), tostring(e.message)),
      tostring(e.code or resp.status), resp
  end
  if type(doc) ~= "table" then return nil, "gateway answered 200 without a JSON body", "TRANSPORT" end
  return doc, resp
end

--- A fresh AES-128 session key for keyType "PAN" (usage D0) or "PIN" (usage P0).
function Client:generate(key_type)
  assert(USAGE[key_type], "keyType must be PAN or PIN")
  return hsm.key.generate("AES_128", { usage = USAGE[key_type], mode = "B",
    exportability = "E" })
end

--- The import request for a session key: TR-31 version D under the ZMK for key_type,
-- and the key's check value (self.kcv_algorithm).
function Client:import_request(key_type, session_key_label, key)
  local zmk = assert(self.zmks[key_type], "no zone master key configured for " .. tostring(key_type))
  local block = assert(hsm.tr31.wrap(zmk.key, key, { version = "D", usage = USAGE[key_type],
    mode = key.mode or "B", exportability = "E" }))
  return util.object {
    "requestType", "ImportKeyRequest",
    "keyType", key_type,
    "masterKeyLabel", zmk.label,
    "sessionKeyLabel", session_key_label,
    "sessionKey", block,
    "sessionKeyCheckValue", key:kcv(self.kcv_algorithm),
  }
end

-- Looks the key up by its check value in the label's Get Keys list: the result, or nil
-- plus the Get Keys failure (nil, nil when the list answered without it).
function Client:_confirm(session_key_label, kcv)
  local keys, msg, code = self:get_keys(session_key_label)
  for _, k in ipairs(keys or {}) do
    if k.sessionKeyCheckValue == kcv then
      return { sessionKeyId = k.sessionKeyId, sessionKeyCheckValue = kcv, version = k.version, confirmed = true }
    end
  end
  return nil, msg, code
end

--- Imports a session key. On a transport failure (timeout, connection lost) or 3067 it
-- does not import again: it asks Get Keys whether the key (by check value) arrived, and
-- imports again, after a short backoff, only when it did not. A 301 (already imported) on
-- such a retry means an earlier attempt did arrive: the key is confirmed with Get Keys
-- (retried with the same backoff) and reported as imported. Returns {sessionKeyId,
-- sessionKeyCheckValue, version, confirmed} or nil, message, code.
-- opts: attempts (default 3), backoff (seconds before the second attempt, doubled for each
-- further one; default 0.1), sleep (function(seconds); default LuaSocket's socket.sleep).
function Client:import(key_type, session_key_label, key)
  local req = self:import_request(key_type, session_key_label, key)
  local kcv = key:kcv(self.kcv_algorithm)
  local attempts = self.opts.attempts or 3
  local msg, code
  for attempt = 1, attempts do
    if attempt > 1 then self:_backoff(attempt - 1) end
    local doc
    doc, msg, code = self:call("POST", gateway.PATHS.import, req)
    if doc then
      return { sessionKeyId = doc.sessionKeyId, sessionKeyCheckValue = doc.sessionKeyCheckValue, confirmed = false }
    end
    if code == "301" and attempt > 1 then
      -- an earlier attempt whose answer was lost did import the key
      local res
      for try = 1, attempts do
        if try > 1 then self:_backoff(try - 1) end
        res, msg, code = self:_confirm(session_key_label, kcv)
        if res then return res end
      end
      return nil, "the key was imported (301 on a retry) but Get Keys did not confirm it: " .. tostring(msg),
        code or "301"
    end
    if code ~= "TRANSPORT" and code ~= "3067" then return nil, msg, code end
    -- No answer: the import may or may not have happened. Confirm with Get Keys.
    local res = self:_confirm(session_key_label, kcv)
    if res then return res end
  end
  return nil, msg, code
end

function Client:_backoff(n)
  local delay = (self.opts.backoff or 0.1) * 2 ^ (n - 1)
  if delay > 0 then self.sleep(delay) end
end

--- Generates, imports (or confirms) a new session key for a label: the rotation
-- Fiserv's MSK API describes. Returns the import result with .key, the session key itself.
function Client:rotate(key_type, session_key_label)
  local key = self:generate(key_type)
  local res, msg, code = self:import(key_type, session_key_label, key)
  if not res then
    key:close()
    return nil, msg, code
  end
  res.key = key
  return res
end

function Client:get_key(id)
  local doc, msg, code = self:call("GET", gateway.PATHS.key .. M.url_encode(id))
  if not doc then return nil, msg, code end
  return doc.key
end

function Client:get_keys(label)
  local doc, msg, code = self:call("GET", gateway.PATHS.keys .. M.url_encode(label))
  if not doc then return nil, msg, code end
  return doc.keys
end

--- The active key of a label (the highest version): id, check value, version.
function Client:active(label)
  local keys, msg, code = self:get_keys(label)
  if not keys then return nil, msg, code end
  local best
  for _, k in ipairs(keys) do
    if not best or tonumber(k.version) > tonumber(best.version) then best = k end
  end
  if not best then return nil, "no keys", "3921" end
  return best.sessionKeyId, best.sessionKeyCheckValue, best.version
end

--- The PAN block the gateway's PAN re-encryption takes: the PAN's digits padded with F
-- to 32 hex digits, AES-CBC under the DEK (iv: hex, default zero).
function M.encrypt_pan(dek, pan, iv)
  assert(type(pan) == "string" and pan:match("^%d+$") and #pan >= 12 and #pan <= 19, "PAN: 12 to 19 digits")
  return hsm.cipher.encrypt(dek, "CBC", pan .. ("F"):rep(32 - #pan), iv or ("0"):rep(32))
end

--- Reads a PAN block (the inverse of encrypt_pan), e.g. what the gateway re-encrypted.
function M.decrypt_pan(key, block, iv)
  local clear, msg, code = hsm.cipher.decrypt(key, "CBC", block, iv or ("0"):rep(32))
  if not clear then return nil, msg, code end
  return clear:match("^(%d+)F*$")
end

function Client:reencrypt_pan(session, dek, pan)
  return self:call("POST", gateway.PATHS.pan, util.object {
    "sessionKeyId", session.sessionKeyId,
    "sessionKeyCheckValue", session.sessionKeyCheckValue,
    "encryptedPan", M.encrypt_pan(dek, pan),
  })
end

function Client:translate_pin(session, zpk, pin, pan, fmt)
  fmt = fmt or "ISO_FORMAT_4"
  return self:call("POST", gateway.PATHS.pin, util.object {
    "sessionKeyId", session.sessionKeyId,
    "sessionKeyCheckValue", session.sessionKeyCheckValue,
    "pinBlock", hsm.pin.encrypt(zpk, fmt, pin, pan),
    "pinBlockFormat", fmt,
    "pan", pan,
  })
end

return M
