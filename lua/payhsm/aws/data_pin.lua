--- GeneratePinData, VerifyPinData and TranslatePinData of AWS Payment Cryptography's
-- data plane, on payhsm.pin (ISO 9564-1:2017 PIN blocks, Visa PVV, IBM 3624).
-- Keys as AWS's user guide lists them: PIN encryption keys TR31_P0 (Encrypt to make a
-- block, Decrypt to read one), or a TR31_B0 BDK (DeriveKey) with DUKPT attributes (the
-- PIN encryption key of ANSI X9.24-1:2009 A.4.1 / X9.24-3:2017 6.3.2); Visa PIN keys
-- TR31_V2, IBM 3624 keys TR31_V1 (Generate or Verify). With IncomingAs2805Attributes the
-- incoming block is under the per-transaction key KPE of AS2805.6.6.3 that the STAN and amount
-- derive from the incoming PEK (hsm.as2805.derive_pek). PINs stay in payhsm's C core
-- except where the operation makes a new one (Visa and IBM 3624 random PINs).
local hsm = require "payhsm"
local data = require "payhsm.aws.data"

local M = {}

local PEK = { "TR31_P0_PIN_ENCRYPTION_KEY" }
local BDK = { "TR31_B0_BASE_DERIVATION_KEY" }
local VISA = { "TR31_V2_VISA_PIN_VERIFICATION_KEY" }
local IBM = { "TR31_V1_IBM3624_PIN_VERIFICATION_KEY" }

local TDES_TYPES = { TDES_2KEY = true, TDES_3KEY = true }

--- The key a PIN block is under: the PEK itself, or the DUKPT PIN key of the BDK and
-- KSN in dukpt = {KeySerialNumber, DukptKeyDerivationType | DukptDerivationType}.
-- Returns the record and the key (close the key when it was derived: third result true).
function M.pin_key(svc, ident, dukpt, mode, what)
  if not dukpt then
    local rec, key = data.key(svc, ident, PEK, mode, what)
    return rec, key, false
  end
  local rec, bdk = data.key(svc, ident, BDK, "DeriveKey", what)
  local ksn = dukpt.KeySerialNumber:upper()
  local dt = dukpt.DukptKeyDerivationType or dukpt.DukptDerivationType
  if TDES_TYPES[rec.attrs.KeyAlgorithm] then
    if #ksn ~= 20 then data.invalid("KeySerialNumber must be 20 hex digits for a TDES BDK") end
  elseif #ksn ~= 24 then
    data.invalid("KeySerialNumber must be 24 hex digits for an AES BDK")
  end
  local key = data.check(hsm.dukpt.working_key(bdk, ksn, { purpose = "PIN", derivation_type = dt }))
  return rec, key, true
end

local FORMATS = { IsoFormat0 = "ISO_FORMAT_0", IsoFormat1 = "ISO_FORMAT_1", IsoFormat3 = "ISO_FORMAT_3",
  IsoFormat4 = "ISO_FORMAT_4" }

local function format_of(attrs)
  local name, a = next(attrs)
  if name == "As2805Format0" then
    data.invalid("As2805Format0 PIN blocks (AS2805 PEK derivation) are not supported by this service")
  end
  return FORMATS[name], a.PrimaryAccountNumber
end

local function pan_for(fmt, pan)
  if fmt ~= "ISO_FORMAT_1" and not pan then
    data.invalid("PrimaryAccountNumber is required for " .. fmt)
  end
  return pan
end

function M.TranslatePinData(svc, input)
  local in_fmt, in_pan = format_of(input.IncomingTranslationAttributes)
  local out_fmt, out_pan = format_of(input.OutgoingTranslationAttributes)
  local pan = in_pan or out_pan
  pan_for(out_fmt, out_pan)
  local _, in_key, in_temp = M.pin_key(svc, input.IncomingKeyIdentifier, input.IncomingDukptAttributes, "Decrypt",
    "the incoming key")
  local as2805 = input.IncomingAs2805Attributes
  if as2805 then
    -- the block is under the per-transaction key KPE derived from the incoming PEK (KPP)
    if input.IncomingDukptAttributes then
      if in_temp then in_key:close() end
      data.invalid("IncomingAs2805Attributes and IncomingDukptAttributes cannot be given together")
    end
    in_key, in_temp = data.check(hsm.as2805.derive_pek(in_key, as2805.SystemTraceAuditNumber,
      as2805.TransactionAmount)), true
  end
  local out_rec, out_key, out_temp = M.pin_key(svc, input.OutgoingKeyIdentifier, input.OutgoingDukptAttributes,
    "Encrypt", "the outgoing key")
  local block, msg, code = hsm.pin.translate(in_key, in_fmt, input.EncryptedPinBlock, out_key, out_fmt, pan, out_pan)
  if in_temp then in_key:close() end
  if out_temp then out_key:close() end
  data.check(block, msg, code)
  return { PinBlock = block, KeyArn = data.arn(svc, out_rec), KeyCheckValue = out_rec.kcv }
end

-- n random decimal digits, each uniform: bytes of 250 and above are drawn again.
local function random_pin(n)
  local digits = {}
  while #digits < n do
    local bytes = hsm.random(n)
    for i = 1, n do
      local b = tonumber(bytes:sub(2 * i - 1, 2 * i), 16)
      if b < 250 and #digits < n then digits[#digits + 1] = tostring(b % 10) end
    end
  end
  return table.concat(digits)
end

local function ibm(a, extra)
  local p = { decimalization_table = a.DecimalizationTable, validation_data = a.PinValidationData,
    pad_char = a.PinValidationDataPadCharacter }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

function M.GeneratePinData(svc, input)
  local kind, a = next(input.GenerationAttributes)
  local fmt, pan = input.PinBlockFormat, input.PrimaryAccountNumber
  pan_for(fmt, pan)
  local len = input.PinDataLength or 4
  local grec, gkey = data.key(svc, input.GenerationKeyIdentifier, kind:match("^Visa") and VISA or IBM, "Generate",
    "the generation key")
  local needs_block = a.EncryptedPinBlock ~= nil
  local erec, ekey = data.key(svc, input.EncryptionKeyIdentifier, PEK, needs_block and "Decrypt" or "Encrypt",
    "the encryption key")
  local block, pin_data
  if kind == "VisaPin" then
    local pin = random_pin(len)
    block = data.check(hsm.pin.encrypt(ekey, fmt, pin, pan))
    local pvki = ("%d"):format(a.PinVerificationKeyIndex)
    pin_data = { VerificationValue = data.check(hsm.pin.visa_pvv(gkey, pin, pan, pvki)) }
  elseif kind == "VisaPinVerificationValue" then
    block = a.EncryptedPinBlock:upper()
    pin_data = { VerificationValue = data.check(hsm.pin.generate_pvv(gkey, ekey, fmt, block, pan,
      ("%d"):format(a.PinVerificationKeyIndex))) }
  elseif kind == "Ibm3624PinOffset" then
    block = a.EncryptedPinBlock:upper()
    pin_data = { PinOffset = data.check(hsm.pin.generate_offset(gkey, ekey, fmt, block, pan, ibm(a))) }
  else
    local pin
    if kind == "Ibm3624NaturalPin" then
      pin = data.check(hsm.pin.ibm3624_natural_pin(gkey, ibm(a, { pin_length = len })))
    elseif kind == "Ibm3624RandomPin" then
      pin = random_pin(len)
    else -- Ibm3624PinFromOffset: natural PIN + offset, digit by digit mod 10
      local natural = data.check(hsm.pin.ibm3624_natural_pin(gkey, ibm(a, { pin_length = #a.PinOffset })))
      local d = {}
      for i = 1, #natural do
        d[i] = tostring((tonumber(natural:sub(i, i)) + tonumber(a.PinOffset:sub(i, i))) % 10)
      end
      pin = table.concat(d)
    end
    block = data.check(hsm.pin.encrypt(ekey, fmt, pin, pan))
    pin_data = { PinOffset = data.check(hsm.pin.ibm3624_offset(gkey, pin, ibm(a))) }
  end
  return { GenerationKeyArn = data.arn(svc, grec), GenerationKeyCheckValue = grec.kcv,
    EncryptionKeyArn = data.arn(svc, erec), EncryptionKeyCheckValue = erec.kcv,
    EncryptedPinBlock = block, PinData = pin_data }
end

function M.VerifyPinData(svc, input)
  local kind, a = next(input.VerificationAttributes)
  local fmt, pan = input.PinBlockFormat, input.PrimaryAccountNumber
  pan_for(fmt, pan)
  local vrec, vkey = data.key(svc, input.VerificationKeyIdentifier, kind == "VisaPin" and VISA or IBM, "Verify",
    "the verification key")
  local dukpt = input.DukptAttributes
  local erec, ekey, temp = M.pin_key(svc, input.EncryptionKeyIdentifier, dukpt, "Decrypt", "the encryption key")
  local v
  if kind == "VisaPin" then
    if #a.VerificationValue ~= 4 then data.invalid("VerificationValue of VisaPin must be 4 digits") end
    v = { method = "VISA_PVV", pvki = ("%d"):format(a.PinVerificationKeyIndex), pvv = a.VerificationValue }
  else
    v = ibm(a, { method = "IBM3624", offset = a.PinOffset })
  end
  local ok, msg, code = hsm.pin.verify(vkey, ekey, fmt, input.EncryptedPinBlock, pan, v)
  if temp then ekey:close() end
  data.verified("INVALID_PIN", ok, msg, code)
  return { VerificationKeyArn = data.arn(svc, vrec), VerificationKeyCheckValue = vrec.kcv,
    EncryptionKeyArn = data.arn(svc, erec), EncryptionKeyCheckValue = erec.kcv }
end

return M
