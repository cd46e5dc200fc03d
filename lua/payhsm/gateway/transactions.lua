--- The gateway's transactions with imported session keys (payhsm.gateway): PAN
-- re-encryption and PIN translation from a session key to the gateway's own PAN and PIN
-- keys (ours; Fiserv's host-to-host MSK API names the keys, not these endpoints). The
-- methods are installed on the gateway's class by install(Gateway, shared), shared giving
-- the gateway's respond and error_response.
local hsm = require "payhsm"
local util = require "payhsm.util"
local cjson = require "cjson.safe"
local service = require "payhsm.service"

local M = {}

local refusal = service.refusal
local respond, error_response -- the gateway's (install)

local Transactions = {}

-- Unwraps the session key a transaction names. The three IDs of a label are static and
-- are refilled on every rotation, so an ID alone does not say which key the integrator
-- used: the request must also carry that key's sessionKeyCheckValue (6 hex digits, its CMAC
-- or its ANSI X9.24 KCV, either case), and a key no longer held under the ID is refused
-- (3930) instead of the ID's newer key being used silently.
function Transactions:_session_key(req, key_type)
  if type(req.sessionKeyId) ~= "string" then refusal("BAD_REQUEST", "missing field sessionKeyId") end
  local given = req.sessionKeyCheckValue
  if type(given) ~= "string" or not given:match("^%x%x%x%x%x%x$") then
    refusal("BAD_REQUEST", "sessionKeyCheckValue (6 hex digits) is required: it names the key held under sessionKeyId")
  end
  local rec, state, entry, version = self:find(req.sessionKeyId)
  if not rec then refusal("KEY_NOT_FOUND") end
  if rec.keyType ~= key_type then refusal("WRONG_KEY_TYPE", "session key " .. req.sessionKeyId .. " is a " ..
    rec.keyType .. " key") end
  given = given:upper()
  local m1, m2 = hsm.equal(given, entry.cmac), hsm.equal(given, entry.x924)
  if not (m1 or m2) then
    refusal("ROTATED_OUT", "session key " .. req.sessionKeyId .. " now holds another key (version " .. version .. ")")
  end
  local key = hsm.tr31.unwrap(self.lmk, entry.block)
  if not key then error("gateway: stored session key " .. req.sessionKeyId .. " does not unwrap", 0) end
  local active = state:active()
  return key, version, active == req.sessionKeyId
end

local function pan_block(pan)
  return (pan .. ("F"):rep(32 - #pan))
end

function Transactions:pan_reencryption(ctx, body)
  local req = cjson.decode(body or "")
  if type(req) ~= "table" then return error_response(ctx, "BAD_REQUEST", "body is not a JSON object") end
  if type(req.encryptedPan) ~= "string" or not req.encryptedPan:match("^%x+$") or #req.encryptedPan % 32 ~= 0 then
    return error_response(ctx, "BAD_REQUEST", "encryptedPan must be hex, a multiple of 16 bytes")
  end
  local iv = req.iv or ("0"):rep(32)
  if type(iv) ~= "string" or not iv:match("^" .. ("%x"):rep(32) .. "$") then
    return error_response(ctx, "BAD_REQUEST", "iv must be 16 bytes of hex")
  end
  local ok, key, version, active = pcall(self._session_key, self, req, "PAN")
  if not ok then
    if service.is_refusal(key) then return error_response(ctx, key.refusal, key.detail) end
    error(key, 0)
  end
  local clear = hsm.cipher.decrypt(key, "CBC", req.encryptedPan, iv)
  key:close()
  local pan = clear and clear:match("^(%d%d%d%d%d%d%d%d%d%d%d%d+)F*$")
  if not pan or #pan > 19 or #clear ~= 32 then
    return error_response(ctx, "TRANSACTION_DATA", "encryptedPan does not decrypt to a PAN block under this key")
  end
  local out_iv = hsm.random(16)
  local out = hsm.cipher.encrypt(self.gw_pan, "CBC", pan_block(pan), out_iv)
  return respond(ctx, 200, util.object {
    "type", "panReencryptionResponse",
    "clientRequestId", ctx.crid,
    "apiTraceId", ctx.trace,
    "sessionKeyId", req.sessionKeyId,
    "version", version,
    "active", active,
    "encryptedPan", out,
    "iv", out_iv,
    "gatewayKeyCheckValue", self.gw_pan:kcv("CMAC"),
  })
end

local PIN_FORMATS = { ISO_FORMAT_0 = true, ISO_FORMAT_1 = true, ISO_FORMAT_3 = true, ISO_FORMAT_4 = true }
-- PIN block formats that fit a key (ISO 9564-1: format 4 for AES, 0, 1 and 3 for TDES).
local function format_fits(fmt, key)
  return (fmt == "ISO_FORMAT_4") == (key.algorithm:sub(1, 3) == "AES")
end

function Transactions:pin_translation(ctx, body)
  local req = cjson.decode(body or "")
  if type(req) ~= "table" then return error_response(ctx, "BAD_REQUEST", "body is not a JSON object") end
  local in_fmt = req.pinBlockFormat or "ISO_FORMAT_4"
  local out_fmt = req.outputPinBlockFormat or "ISO_FORMAT_4"
  if not PIN_FORMATS[in_fmt] or not PIN_FORMATS[out_fmt] then
    return error_response(ctx, "BAD_REQUEST", "pin block formats: ISO_FORMAT_0, 1, 3 or 4")
  end
  if type(req.pinBlock) ~= "string" or type(req.pan) ~= "string" then
    return error_response(ctx, "BAD_REQUEST", "pinBlock and pan are required")
  end
  if not format_fits(out_fmt, self.gw_pin) then
    return error_response(ctx, "BAD_REQUEST", "outputPinBlockFormat does not fit the gateway PIN key (" ..
      self.gw_pin.algorithm .. ")")
  end
  if in_fmt ~= "ISO_FORMAT_4" then
    return error_response(ctx, "BAD_REQUEST", "pinBlockFormat must be ISO_FORMAT_4 (the session keys are AES-128)")
  end
  local ok, key, version, active = pcall(self._session_key, self, req, "PIN")
  if not ok then
    if service.is_refusal(key) then return error_response(ctx, key.refusal, key.detail) end
    error(key, 0)
  end
  local out, msg, code = hsm.pin.translate(key, in_fmt, req.pinBlock, self.gw_pin, out_fmt, req.pan)
  key:close()
  if not out then
    return error_response(ctx, "TRANSACTION_DATA", ("pinBlock: %s (%s)"):format(
      tostring(msg):gsub("^[%w%.]+: ", ""), tostring(code)))
  end
  return respond(ctx, 200, util.object {
    "type", "pinTranslationResponse",
    "clientRequestId", ctx.crid,
    "apiTraceId", ctx.trace,
    "sessionKeyId", req.sessionKeyId,
    "version", version,
    "active", active,
    "pinBlock", out,
    "pinBlockFormat", out_fmt,
    "gatewayKeyCheckValue", self.gw_pin:kcv("CMAC"),
  })
end

--- Adds the transaction methods (pan_reencryption, pin_translation, _session_key) to the gateway class.
function M.install(Gateway, shared)
  respond, error_response = shared.respond, shared.error_response
  for name, f in pairs(Transactions) do Gateway[name] = f end
end

return M
