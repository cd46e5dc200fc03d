--- What the POS server (payhsm.pos.server) and the device (payhsm.pos.device) of
-- viopay's POS key provisioning guide must agree on, in one place: paths, header names, the
-- device id and token shapes, the HMAC signing strings, time stamps and the EMV
-- transaction data an ARQC covers. docs/pos-activation.md explains each
-- choice.
local util = require "payhsm.util"

local M = {}

M.PATHS = {
  challenge = "/pos/attest/challenge",
  attest = "/pos/attest",
  keys = "/pos/keys",
  config = "/pos/config",
  parameters = "/pos/terminal-parameters",
  activate = "/pos/activate",
  charge = "/pos/charge",
}

--- Request and response headers of the MSK-protected endpoints (lower case, as the
-- handlers receive them).
M.H = {
  device = "x-device-id",
  key_set = "x-key-set-id",
  timestamp = "x-timestamp",
  nonce = "x-nonce",
  signature = "x-signature",
  scheme = "x-signature-scheme",
}

--- The request signature schemes (pos server config request_signature; the server names
-- its scheme in the X-Signature-Scheme header of POST /pos/keys and of every signed
-- response, and the device follows it):
--   "body"  viopay's guide: "HMAC signs the envelope body" ("Empty HMAC body" for cancel):
--           X-Signature = HMAC-SHA-256(MAC key, body as sent); the default.
--   "bound" payhsm's: the HMAC also binds method, path, device, key set, X-Timestamp and
--           X-Nonce (request_signing_string), so a captured request cannot be replayed
--           or sent to another path.
M.SIGNATURE_SCHEMES = { body = true, bound = true }
M.DEFAULT_SIGNATURE = "body"

M.TOKEN_LIFETIME = 300          -- seconds an attestation token lives (viopay's guide: 5 minutes)
M.CHALLENGE_LIFETIME = 60       -- seconds an attestation challenge lives
M.CLOCK_SKEW = 300              -- seconds X-Timestamp may differ from the server's clock
M.REQUEST_ID_TTL = 86400        -- seconds a used request_id is remembered (its retries answered)
M.RENEW_BEFORE_SECONDS = 30 * 86400 -- the device renews a key set expiring within this

--- Seconds a nonce first seen at `now` in a request stamped `t` must stay refused: until
-- t + CLOCK_SKEW (the last second the time stamp is accepted) has passed, i.e. one
-- second more (at most 2 * CLOCK_SKEW + 1; at least 1).
function M.nonce_ttl(t, now)
  return math.max(1, t + M.CLOCK_SKEW - now + 1)
end

--- True when s is a device id of viopay's form POS-{8 hex characters}.
function M.valid_device_id(s)
  return type(s) == "string" and s:match("^POS%-%x%x%x%x%x%x%x%x$") ~= nil
end

-- ---- time ------------------------------------------------------------------------

--- Seconds since the epoch -> "2025-12-13T14:25:30Z".
M.iso8601 = util.format_time

--- "2025-12-13T14:25:30Z" -> seconds since the epoch, or nil.
function M.parse_iso8601(s) return util.parse_time(s, { leap = true }) end

-- ---- signatures ------------------------------------------------------------------

--- The text X-Signature signs under the "body" scheme, request or response: the body
-- exactly as sent (the envelope JSON; "" when there is none).
function M.body_signing_string(body)
  return body or ""
end

--- The text X-Signature signs on a request under the "bound" scheme: seven lines joined by "\n", the last
-- being the body exactly as sent (the envelope JSON; empty for config, terminal
-- parameters and cancel: viopay's "empty HMAC body").
function M.request_signing_string(method, path, device_id, key_set_id, timestamp, nonce, body)
  return table.concat({ method, path, device_id, key_set_id, timestamp, nonce, body or "" }, "\n")
end

--- The text X-Signature signs on a response under the "bound" scheme: the status, the request's nonce and the
-- body, so a response cannot be replayed for another request.
function M.response_signing_string(status, nonce, body)
  return table.concat({ tostring(status), nonce or "", body or "" }, "\n")
end

--- The text an attestation proof (HMAC-SHA-256 under the device attestation key) signs.
function M.attestation_string(device_id, challenge, firmware_version)
  return table.concat({ "payhsm-pos-attest-v1", device_id, challenge, firmware_version or "" }, "\n")
end

-- ---- calendar years -----------------------------------------------------------------

local function leap(y) return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 end

--- t plus n calendar years (UTC): the same month, day and time of day n years later;
-- 29 February becomes 28 February in a common year. viopay's example key set runs from
-- 2025-12-13T14:25:30Z to 2026-12-13T14:25:30Z.
function M.add_years(t, n)
  t = math.floor(t)
  local y, mo, d = os.date("!%Y-%m-%d", t):match("^(%d+)-(%d+)-(%d+)$")
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local ty = y + n
  local td = (mo == 2 and d == 29 and not leap(ty)) and 28 or d
  local sod = t % 86400
  local same = M.parse_iso8601(("%04d-%02d-%02dT00:00:00Z"):format(ty, mo, td))
  return same + sod
end

-- ---- EMV ------------------------------------------------------------------------

-- ISO 4217 numeric codes for the currencies the simulator knows.
M.CURRENCIES = { EUR = "0978", USD = "0840", GBP = "0826", CHF = "0756" }

--- The transaction data an ARQC covers (EMV Book 2 8.1.1, the minimum set of data
-- elements recommended for the application cryptogram), hex, in this order:
-- 9F02 amount authorised (n12), 9F03 amount other (n12), 9F1A terminal country (n4),
-- 95 TVR (5 bytes), 5F2A currency (n4), 9A date (YYMMDD), 9C type (n2), 9F37 UN
-- (4 bytes), 82 AIP (2 bytes), 9F36 ATC (2 bytes). The server rebuilds it from the
-- charge's own amount and currency, so the ARQC binds the amount.
function M.emv_data(f)
  return table.concat {
    ("%012d"):format(f.amount),
    ("%012d"):format(f.amount_other or 0),
    f.country or "0528",
    f.tvr or "0000000000",
    assert(M.CURRENCIES[f.currency], "unknown currency"),
    f.date,
    f.type or "00",
    f.un,
    f.aip or "3900",
    f.atc,
  }
end

--- "4761739001010119" -> "476173******0119"
function M.mask_pan(pan)
  return pan:sub(1, 6) .. ("*"):rep(#pan - 10) .. pan:sub(-4)
end

--- A PAN as the 16-byte block encrypted under the TDK: digits padded with F.
function M.pan_block(pan)
  return pan .. ("F"):rep(32 - #pan)
end

return M
