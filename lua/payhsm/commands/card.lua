--- bin/payhsm subcommands for card and PIN verification data, after AWS Payment
-- Cryptography's generate-/verify-card-validation-data and generate-/verify-pin-data:
-- `card generate|verify` and `pin generate|verify` (added to the `pin` command).
-- Loaded by payhsm.commands, which passes its command table and helpers.
--
-- Card validation data: CardVerificationValue1 is the Visa CVV / Mastercard CVC over the
-- PAN, CardExpiryDate and ServiceCode (hsm.card.cvv), CardVerificationValue2 the same with
-- service code 000. CardExpiryDate is taken as given (AWS's user guide: the format must
-- match the one used when the value was generated; Visa's CVV takes YYMM).
-- DynamicCardVerificationValue (Visa dCVV) and DynamicCardVerificationCode (Mastercard
-- CVC3) take the issuer master key for dynamic numbers (AWS's TR31_E4_EMV_MKEY_DYNAMIC_NUMBERS)
-- and derive the card's key from it with the PAN and PanSequenceNumber by EMV 4.4 Book 2
-- A1.4.1 option A (hsm.emv.derive_icc_master_key), as AWS does.
local hsm = require "payhsm"
local util = require "payhsm.util"
local compat = require "payhsm.compat"

return function(C, H)
  local fail, required, call, load_key, kcv_of = H.fail, H.required, H.call, H.load_key, H.kcv_of
  local verified, structure, only, SHAPE, KEYALG = H.verified, H.structure, H.only, H.SHAPE, H.KEYALG

  -- The IMK of a dynamic value: usage E4 (dynamic numbers) or none; the ICC key of the card.
  local function icc_key(imk, pan, psn)
    if imk.usage ~= nil and imk.usage ~= "E4" then
      fail("KEY_USAGE", "dynamic card values take an issuer master key of usage E4 (dynamic numbers), "
        .. "not %s", imk.usage)
    end
    return call(hsm.emv.derive_icc_master_key, imk, pan, psn, "EMV_OPTION_A")
  end

  -- ValidationDataLength: 3 (AWS's default) for CVV, CVV2 and dCVV; 3 to 5 for CVC3.
  local function data_length(o, member)
    local n = o["validation-data-length"]
    if n == nil then return 3 end
    local max = member == "DynamicCardVerificationCode" and 5 or 3
    n = tonumber(n)
    if not n or n < 3 or n > max or n ~= math.floor(n) then
      fail("CLI_USAGE", "--validation-data-length: %s takes %s", member, max == 3 and "3" or "3 to 5")
    end
    return n
  end

  C.card = {
    summary = "card validation data: generate | verify (AWS generate-/verify-card-validation-data)",
    subs = { generate = true, verify = true },
    options = { { "key-identifier", "the CVK (CVV, CVV2) or the issuer master key for dynamic numbers "
      .. "(dCVV, CVC3; usage E4): file:, env: or -" }, KEYALG,
      { "primary-account-number", "the PAN" },
      { "generation-attributes", "generate: CardGenerationAttributes: CardVerificationValue1={CardExpiryDate=YYMM,"
        .. "ServiceCode=101}, CardVerificationValue2={CardExpiryDate=YYMM}, DynamicCardVerificationValue="
        .. "{PanSequenceNumber=00,CardExpiryDate=,ServiceCode=,ApplicationTransactionCounter=4 hex}, "
        .. "DynamicCardVerificationCode={UnpredictableNumber=8 hex,PanSequenceNumber=,ApplicationTransactionCounter=,"
        .. "TrackData=hex} or JSON", subs = { generate = true } },
      { "verification-attributes", "verify: CardVerificationAttributes, the members of --generation-attributes",
        subs = { verify = true } },
      { "validation-data-length", "generate: digits returned, 3 (default; CVC3: 3 to 5)", subs = { generate = true } },
      { "validation-data", "verify: the value to check", subs = { verify = true } } },
    run = function(o, sub)
      local key = load_key(o, "key-identifier", "key-algorithm")
      local pan = required(o, "primary-account-number")
      local opt = sub == "generate" and "generation-attributes" or "verification-attributes"
      if o[opt] == nil then fail("CLI_USAGE", "--%s is required", opt) end
      local v = structure(o, opt, sub == "generate" and SHAPE.CardGenerationAttributes or SHAPE.CardVerificationAttributes)
      local member, m = only(v)
      local gen, ver, args
      if member == "CardVerificationValue1" or member == "CardVerificationValue2" then
        gen, ver = hsm.card.cvv, hsm.card.verify_cvv
        args = { key, pan, m.CardExpiryDate, m.ServiceCode or "000" }
      elseif member == "DynamicCardVerificationValue" then
        gen, ver = hsm.card.dcvv, hsm.card.verify_dcvv
        args = { icc_key(key, pan, m.PanSequenceNumber), { pan = pan, psn = m.PanSequenceNumber,
          expiry = m.CardExpiryDate, service_code = m.ServiceCode, atc = m.ApplicationTransactionCounter } }
      else
        gen, ver = hsm.card.cvc3, hsm.card.verify_cvc3
        args = { icc_key(key, pan, m.PanSequenceNumber), { track_data = m.TrackData,
          atc = m.ApplicationTransactionCounter, un = m.UnpredictableNumber } }
      end
      if sub == "verify" then
        args[#args + 1] = required(o, "validation-data")
        verified(key, "VERIFICATION_FAILED", ver, compat.unpack(args))
        return util.object { "KeyCheckValue", kcv_of(key), "Valid", true }
      end
      local n = data_length(o, member)
      local value = call(gen, compat.unpack(args))
      return util.object { "KeyCheckValue", kcv_of(key), "ValidationData", value:sub(-n) }
    end,
  }

  -- ---- pin generate | verify -------------------------------------------------------
  local PIN = C.pin
  local old_run = PIN.run
  PIN.summary = "ISO 9564 PIN blocks: encrypt | decrypt | translate | generate | verify "
    .. "(AWS translate-, generate-, verify-pin-data)"
  PIN.subs.generate, PIN.subs.verify = true, true
  local GV = { generate = true, verify = true }
  local more = {
    { "generation-key-identifier", "generate: the PVK (file:, env: or -)", subs = { generate = true } },
    { "verification-key-identifier", "verify: the PVK (file:, env: or -)", subs = { verify = true } },
    { "encryption-key-identifier", "generate/verify: the PEK the PIN block is under", subs = GV },
    { "generation-attributes", "generate: PinGenerationAttributes: VisaPinVerificationValue={EncryptedPinBlock=hex,"
      .. "PinVerificationKeyIndex=1}, Ibm3624PinOffset={EncryptedPinBlock=hex,DecimalizationTable=16 digits,"
      .. "PinValidationDataPadCharacter=F,PinValidationData=hex}, Ibm3624NaturalPin={DecimalizationTable=,"
      .. "PinValidationDataPadCharacter=,PinValidationData=} or JSON", subs = { generate = true } },
    { "verification-attributes", "verify: PinVerificationAttributes: VisaPin={PinVerificationKeyIndex=1,"
      .. "VerificationValue=4 digits} or Ibm3624Pin={DecimalizationTable=,PinValidationDataPadCharacter=,"
      .. "PinValidationData=,PinOffset=} or JSON", subs = { verify = true } },
    { "pin-data-length", "generate: Ibm3624NaturalPin's PIN length, 4 to 12 (default 4)", subs = GV } }
  for _, spec in ipairs(more) do PIN.options[#PIN.options + 1] = spec end

  local function ibm(m)
    return { decimalization_table = m.DecimalizationTable, validation_data = m.PinValidationData,
      pad_char = m.PinValidationDataPadCharacter }
  end

  PIN.run = function(o, sub)
    if sub ~= "generate" and sub ~= "verify" then return old_run(o, sub) end
    local pvk_opt = sub == "generate" and "generation-key-identifier" or "verification-key-identifier"
    local pvk = load_key(o, pvk_opt, "key-algorithm")
    local pek = load_key(o, "encryption-key-identifier", "key-algorithm")
    local fmt, pan = required(o, "pin-block-format"), required(o, "primary-account-number")
    local opt = sub == "generate" and "generation-attributes" or "verification-attributes"
    if o[opt] == nil then fail("CLI_USAGE", "--%s is required", opt) end
    local v = structure(o, opt, sub == "generate" and SHAPE.PinGenerationAttributes or SHAPE.PinVerificationAttributes)
    local member, m = only(v)
    local kcvs = { "GenerationKeyCheckValue", kcv_of(pvk), "EncryptionKeyCheckValue", kcv_of(pek) }
    if sub == "verify" then
      local block = required(o, "encrypted-pin-block")
      local spec
      if member == "VisaPin" then
        spec = { method = "VISA_PVV", pvki = m.PinVerificationKeyIndex, pvv = m.VerificationValue }
      else
        spec = ibm(m)
        spec.method, spec.offset = "IBM3624", m.PinOffset
      end
      verified(pvk, "VERIFICATION_FAILED", hsm.pin.verify, pvk, pek, fmt, block, pan, spec)
      return util.object { "VerificationKeyCheckValue", kcv_of(pvk), "EncryptionKeyCheckValue", kcv_of(pek),
        "Valid", true }
    end
    if o["encrypted-pin-block"] ~= nil then
      fail("CLI_USAGE", "--encrypted-pin-block is for pin verify; generate takes EncryptedPinBlock in --generation-attributes")
    end
    local block, data
    if member == "VisaPinVerificationValue" then
      block = m.EncryptedPinBlock
      data = util.object { "VerificationValue", call(hsm.pin.generate_pvv, pvk, pek, fmt, block, pan,
        m.PinVerificationKeyIndex) }
    elseif member == "Ibm3624PinOffset" then
      block = m.EncryptedPinBlock
      data = util.object { "PinOffset", call(hsm.pin.generate_offset, pvk, pek, fmt, block, pan, ibm(m)) }
    else
      -- the natural PIN (offset all zeros), enciphered under the PEK; it is never printed
      local p = ibm(m)
      p.pin_length = tonumber(o["pin-data-length"] or "4")
      local pin = call(hsm.pin.ibm3624_natural_pin, pvk, p)
      block = call(hsm.pin.encrypt, pek, fmt, pin, pan)
      data = util.object { "PinOffset", ("0"):rep(#pin) }
    end
    kcvs[#kcvs + 1], kcvs[#kcvs + 2] = "EncryptedPinBlock", block:upper()
    kcvs[#kcvs + 1], kcvs[#kcvs + 2] = "PinData", data
    return util.object(kcvs)
  end
end
