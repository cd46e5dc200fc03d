--- GenerateCardValidationData and VerifyCardValidationData of AWS Payment
-- Cryptography's data plane (API reference: CardGenerationAttributes,
-- CardVerificationAttributes), on payhsm.card:
--   CardVerificationValue1  Visa CVV / Mastercard CVC over PAN, CardExpiryDate and
--                           ServiceCode (iCVV: service code 999); key TR31_C0.
--   CardVerificationValue2  the same with service code 000; key TR31_C0.
--   DynamicCardVerificationValue  Visa dCVV under the ICC master key derived (EMV 4.4
--                           Book 2 A1.4 option A) from the IMK and PAN, PSN; key TR31_E6.
--   DynamicCardVerificationCode   Mastercard CVC3 over TrackData, UN and ATC under the
--                           ICC master key derived the same way; key TR31_E6.
-- CardExpiryDate is taken as given, in the order the card's algorithm uses it (AWS
-- passes it through). Amex CSC, the cardholder verification value and Discover's
-- dynamic code are answered with a ValidationException that says so.
local hsm = require "payhsm"
local data = require "payhsm.aws.data"
local util = require "payhsm.util"

local M = {}

local UNSUPPORTED = {
  AmexCardSecurityCodeVersion1 = "Amex card security codes (CSC) are not supported by this service",
  AmexCardSecurityCodeVersion2 = "Amex card security codes (CSC) are not supported by this service",
  CardHolderVerificationValue = "CardHolderVerificationValue is not supported by this service",
  DiscoverDynamicCardVerificationCode = "DiscoverDynamicCardVerificationCode is not supported by this service",
}

local STATIC = { "TR31_C0_CARD_VERIFICATION_KEY" }
local DYNAMIC = { "TR31_E6_EMV_MKEY_OTHER" }

local function pad(hex, n) return ("0"):rep(n - #hex) .. hex:upper() end

-- The kind of the union, its attributes, and the key it needs.
local function kind_of(attrs)
  local kind, a = next(attrs)
  if UNSUPPORTED[kind] then data.invalid(UNSUPPORTED[kind]) end
  return kind, a
end

-- The value of the card for kind, as many digits as `len` (nil: the algorithm's own).
local function compute(svc, input, attrs, mode)
  local kind, a = kind_of(attrs)
  local pan = input.PrimaryAccountNumber
  if kind == "CardVerificationValue1" or kind == "CardVerificationValue2" then
    local rec, key = data.key(svc, input.KeyIdentifier, STATIC, mode)
    local sc = kind == "CardVerificationValue2" and "000" or a.ServiceCode
    return rec, data.check(hsm.card.cvv(key, pan, a.CardExpiryDate, sc)), kind
  end
  local rec, imk = data.key(svc, input.KeyIdentifier, DYNAMIC, "DeriveKey")
  local icc = data.check(hsm.emv.derive_icc_master_key(imk, pan, a.PanSequenceNumber, "EMV_OPTION_A"))
  local v
  if kind == "DynamicCardVerificationValue" then
    v = hsm.card.dcvv(icc, { pan = pan, expiry = a.CardExpiryDate, service_code = a.ServiceCode,
      atc = pad(a.ApplicationTransactionCounter, 4) })
  else -- DynamicCardVerificationCode
    if #a.TrackData % 2 == 1 then data.invalid("TrackData must be whole bytes (an even number of hex digits)") end
    v = hsm.card.cvc3(icc, { track_data = a.TrackData, atc = pad(a.ApplicationTransactionCounter, 4),
      un = pad(a.UnpredictableNumber, 8) })
  end
  icc:close()
  return rec, data.check(v), kind
end

function M.GenerateCardValidationData(svc, input)
  local rec, v, kind = compute(svc, input, input.GenerationAttributes, "Generate")
  local len = input.ValidationDataLength or 3
  if kind ~= "DynamicCardVerificationCode" and len ~= 3 then
    data.invalid(("ValidationDataLength %d: %s values are 3 digits"):format(len, kind))
  end
  return { KeyArn = data.arn(svc, rec), KeyCheckValue = rec.kcv, ValidationData = v:sub(-len) }
end

function M.VerifyCardValidationData(svc, input)
  local rec, v, kind = compute(svc, input, input.VerificationAttributes, "Verify")
  local given = input.ValidationData
  if kind ~= "DynamicCardVerificationCode" and #given ~= 3 then
    data.invalid(("ValidationData must be 3 digits for %s"):format(kind))
  end
  if not util.secret_equal(v:sub(-#given), given) then
    data.failed("INVALID_VALIDATION_DATA", "Card validation data verification failed")
  end
  return { KeyArn = data.arn(svc, rec), KeyCheckValue = rec.kcv }
end

return M
