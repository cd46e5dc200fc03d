--- What the POS server (payhsm.pos.server) and the device (payhsm.pos.device) of
-- seeds/pos-keys-viopay.txt must agree on, in one place: paths, header names, the
-- device id and token shapes, the HMAC signing strings, time stamps and the EMV
-- transaction data an ARQC covers. docs/pos.md explains each choice.
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
}

M.TOKEN_LIFETIME = 300          -- seconds an attestation token lives (the seed: 5 minutes)
M.CHALLENGE_LIFETIME = 60       -- seconds an attestation challenge lives
M.CLOCK_SKEW = 300              -- seconds X-Timestamp may differ from the server's clock

--- True when s is a device id of the seed's form POS-{8 hex characters}.
function M.valid_device_id(s)
  return type(s) == "string" and s:match("^POS%-%x%x%x%x%x%x%x%x$") ~= nil
end

-- ---- time ------------------------------------------------------------------------

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

--- Seconds since the epoch -> "2025-12-13T14:25:30Z".
function M.iso8601(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

--- "2025-12-13T14:25:30Z" -> seconds since the epoch, or nil.
function M.parse_iso8601(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, se = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)Z$")
  if not y then return nil end
  y, mo, d, h, mi, se = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(se)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or se > 60 then return nil end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se
end

-- ---- signatures ------------------------------------------------------------------

--- The text X-Signature signs on a request: seven lines joined by "\n", the last
-- being the body exactly as sent (the envelope JSON; empty for config, terminal
-- parameters and cancel: the seed's "empty HMAC body").
function M.request_signing_string(method, path, device_id, key_set_id, timestamp, nonce, body)
  return table.concat({ method, path, device_id, key_set_id, timestamp, nonce, body or "" }, "\n")
end

--- The text X-Signature signs on a response: the status, the request's nonce and the
-- body, so a response cannot be replayed for another request.
function M.response_signing_string(status, nonce, body)
  return table.concat({ tostring(status), nonce or "", body or "" }, "\n")
end

--- The text an attestation proof (HMAC-SHA-256 under the device attestation key) signs.
function M.attestation_string(device_id, challenge, firmware_version)
  return table.concat({ "payhsm-pos-attest-v1", device_id, challenge, firmware_version or "" }, "\n")
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
