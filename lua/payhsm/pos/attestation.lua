--- Steps 4 and 5 of the POS key guide on the terminal host (payhsm.pos.server): the
-- attestation challenge and the attestation that answers it with a short-lived token,
-- which the key set download (step 6) checks. The methods are installed on the server's
-- class by install(Server, shared), shared giving the server's respond, error_response
-- and decode_body.
local hsm = require "payhsm"
local util = require "payhsm.util"
local cjson = require "cjson.safe"
local service = require "payhsm.service"
local P = require "payhsm.pos.protocol"

local M = {}

local refusal = service.refusal
local respond, error_response, decode_body -- the server's (install)

local Attestation = {}

local function random_token(prefix)
  return prefix .. hsm.random(16):lower()
end

-- POST /pos/attest/challenge {"device_id"} -> {"device_id", "challenge", "expires_in"}
function Attestation:challenge(ctx, req)
  local doc = decode_body(req.body)
  local device_id = doc.device_id
  if not P.valid_device_id(device_id) or device_id ~= req.headers[P.H.device] then
    return error_response(ctx, "BAD_REQUEST", "device_id must match X-Device-Id, POS- and 8 hex characters")
  end
  if not self:device(device_id) then return error_response(ctx, "ATTESTATION_FAILED", "unknown device") end
  local challenge = hsm.random(16)
  local now = self.clock()
  -- one outstanding challenge per device: a new one replaces the last, so a flood of
  -- challenge requests keeps one entry, not one per request
  self.store:put("pos:chal:" .. device_id, challenge .. " " .. tostring(now + P.CHALLENGE_LIFETIME),
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
function Attestation:attest(ctx, req)
  local doc = decode_body(req.body)
  local device_id = doc.device_id
  if not P.valid_device_id(device_id) or device_id ~= req.headers[P.H.device] then
    return error_response(ctx, "BAD_REQUEST", "device_id must match X-Device-Id, POS- and 8 hex characters")
  end
  for _, f in ipairs { "challenge", "proof" } do
    if type(doc[f]) ~= "string" then return error_response(ctx, "BAD_REQUEST", "missing field " .. f) end
  end
  if doc.firmware_version ~= nil and type(doc.firmware_version) ~= "string" then
    return error_response(ctx, "BAD_REQUEST", "firmware_version must be a string")
  end
  local dev = self:device(device_id)
  if not dev then return error_response(ctx, "ATTESTATION_FAILED", "unknown device") end
  local now = self.clock()
  -- the challenge is used up whatever the outcome
  local stored = self.store:update("pos:chal:" .. device_id, function(old) return nil, old end)
  local challenge, until_ = (stored or ""):match("^(%x+) (%S+)$")
  if not challenge or not hsm.equal(challenge, doc.challenge:upper()) or tonumber(until_) <= now then
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
function Attestation:_check_attestation(req)
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

--- Adds the attestation methods (challenge, attest, _check_attestation) to the server class.
function M.install(Server, shared)
  respond, error_response, decode_body = shared.respond, shared.error_response, shared.decode_body
  for name, f in pairs(Attestation) do Server[name] = f end
end

return M
