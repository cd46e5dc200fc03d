--- The EMV and AS2805 operations of AWS Payment Cryptography's data plane:
--   VerifyAuthRequestCryptogram  the ARQC (EMV 4.4 Book 2 8.1.2, A1.3; Visa and Amex
--       under the ICC master key) under a TR31_E0 IMK-AC (DeriveKey), over the
--       TransactionData exactly as given (whole 8-byte blocks: the service does not pad
--       it); on success the ARPC of method 1 (Book 2 8.2.1) or method 2 (8.2.2).
--   GenerateMacEmvPinChange  the offline PIN change script (Book 2 A1.1-A1.3, Visa VIS,
--       M/Chip): the new PIN under SK-SMC of a TR31_E1 IMK-SMC, the MAC under SK-SMI of a
--       TR31_E2 IMK-SMI; the new PIN comes under a TR31_P0 PEK; Visa and Amex bind the
--       block to the ICC's AC key (TR31_E0 IMK-AC).
--   GenerateAs2805KekValidation  AS2805.6.6 node-to-node KEK validation (request and
--       response) under a TR31_K0 KEK, as AWS computes it.
local hsm = require "payhsm"
local data = require "payhsm.aws.data"

local M = {}

local IMK_AC = { "TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS" }
local IMK_SMC = { "TR31_E1_EMV_MKEY_CONFIDENTIALITY" }
local IMK_SMI = { "TR31_E2_EMV_MKEY_INTEGRITY" }
local PEK = { "TR31_P0_PIN_ENCRYPTION_KEY" }
local KEK = { "TR31_K0_KEY_ENCRYPTION_KEY" }

local DERIVATION = { EmvCommon = "EMV_COMMON", Mastercard = "MASTERCARD", Emv2000 = "EMV2000", Amex = "AMEX",
  Visa = "VISA" }

local function pad(hex, n) return ("0"):rep(n - #hex) .. hex:upper() end

function M.VerifyAuthRequestCryptogram(svc, input)
  local rec, imk = data.key(svc, input.KeyIdentifier, IMK_AC, "DeriveKey")
  local kind, a = next(input.SessionKeyDerivationAttributes)
  local tx = input.TransactionData
  if #tx % 16 ~= 0 then
    data.invalid(("TransactionData must be whole 8-byte blocks (%d hex digits given): the service does not pad it")
      :format(#tx))
  end
  local p = { mode = input.MajorKeyDerivationMode, pan = a.PrimaryAccountNumber, psn = a.PanSequenceNumber,
    derivation = DERIVATION[kind], atc = a.ApplicationTransactionCounter and a.ApplicationTransactionCounter:upper(),
    un = a.UnpredictableNumber and pad(a.UnpredictableNumber, 8), data = tx, padding = 0,
    arqc = input.AuthRequestCryptogram:upper() }
  data.verified("INVALID_AUTH_REQUEST_CRYPTOGRAM", hsm.emv.verify_arqc(imk, p))
  local out = { KeyArn = data.arn(svc, rec), KeyCheckValue = rec.kcv }
  local resp = input.AuthResponseAttributes
  if resp then
    local method, r = next(resp)
    p.data, p.padding = nil, nil
    if method == "ArpcMethod1" then
      p.method, p.arc = 1, r.AuthResponseCode:upper()
    else
      p.method, p.csu, p.proprietary = 2, r.CardStatusUpdate:upper(),
        r.ProprietaryAuthenticationData and r.ProprietaryAuthenticationData:upper()
      if p.proprietary and #p.proprietary % 2 == 1 then
        data.invalid("ProprietaryAuthenticationData must be whole bytes (an even number of hex digits)")
      end
    end
    out.AuthResponseValue = data.check(hsm.emv.generate_arpc(imk, p))
  end
  return out
end

-- EmvCommon's PinBlockPaddingType and PinBlockLengthPosition -> payhsm's secure messaging type.
local function sm_type(a)
  local front = a.PinBlockLengthPosition == "FRONT_OF_PIN_BLOCK"
  if a.PinBlockPaddingType == "ISO_IEC_7816_4" then return front and "VISA" or "EMV" end
  if front then data.invalid("PinBlockLengthPosition FRONT_OF_PIN_BLOCK needs PinBlockPaddingType ISO_IEC_7816_4") end
  return "MASTERCARD"
end

function M.GenerateMacEmvPinChange(svc, input)
  local kind, a = next(input.DerivationMethodAttributes)
  if kind == "Emv2000" then data.invalid("The Emv2000 derivation is not supported for the PIN change script") end
  local prec, pek = data.key(svc, input.NewPinPekIdentifier, PEK, "Decrypt", "NewPinPekIdentifier")
  local irec, smi = data.key(svc, input.SecureMessagingIntegrityKeyIdentifier, IMK_SMI, "DeriveKey",
    "SecureMessagingIntegrityKeyIdentifier")
  local crec, smc = data.key(svc, input.SecureMessagingConfidentialityKeyIdentifier, IMK_SMC, "DeriveKey",
    "SecureMessagingConfidentialityKeyIdentifier")
  local p = { pan = a.PrimaryAccountNumber, psn = a.PanSequenceNumber, mode = a.MajorKeyDerivationMode, pek = pek,
    pin_block = input.NewEncryptedPinBlock:upper(), format = input.PinBlockFormat,
    message_data = input.MessageData:upper() }
  local out = {}
  if kind == "EmvCommon" or kind == "Mastercard" then
    p.derivation = kind == "EmvCommon" and "EMV_COMMON" or "MASTERCARD"
    p.arqc = a.ApplicationCryptogram:upper()
    if kind == "EmvCommon" then p.type, p.encryption_mode = sm_type(a), a.Mode end
  else -- Visa, Amex: the VIS PIN block, bound to the ICC's AC key
    p.derivation, p.atc = "VISA", a.ApplicationTransactionCounter:upper()
    local arec, imk_ac = data.key(svc, a.AuthorizationRequestKeyIdentifier, IMK_AC, "DeriveKey",
      "AuthorizationRequestKeyIdentifier")
    p.imk_ac = imk_ac
    out.VisaAmexDerivationOutputs = { AuthorizationRequestKeyArn = data.arn(svc, arec),
      AuthorizationRequestKeyCheckValue = arec.kcv }
    local cur = a.CurrentPinAttributes
    if cur then
      local crec2, cpek = data.key(svc, cur.CurrentPinPekIdentifier, PEK, "Decrypt", "CurrentPinPekIdentifier")
      p.current_pek, p.current_pin_block, p.current_format = cpek, cur.CurrentEncryptedPinBlock:upper(),
        input.PinBlockFormat
      out.VisaAmexDerivationOutputs.CurrentPinPekArn = data.arn(svc, crec2)
      out.VisaAmexDerivationOutputs.CurrentPinPekKeyCheckValue = crec2.kcv
    end
  end
  local r = data.check(hsm.emv.pin_change(smc, smi, p))
  out.NewPinPekArn, out.NewPinPekKeyCheckValue = data.arn(svc, prec), prec.kcv
  out.SecureMessagingIntegrityKeyArn, out.SecureMessagingIntegrityKeyCheckValue = data.arn(svc, irec), irec.kcv
  out.SecureMessagingConfidentialityKeyArn = data.arn(svc, crec)
  out.SecureMessagingConfidentialityKeyCheckValue = crec.kcv
  out.Mac, out.EncryptedPinBlock = r.mac, r.encrypted_pin_block
  return out
end

function M.GenerateAs2805KekValidation(svc, input)
  local kind, a = next(input.KekValidationType)
  local mask = input.RandomKeySendVariantMask
  local rec, kek
  local out
  if kind == "KekValidationRequest" then
    rec, kek = data.key(svc, input.KeyIdentifier, KEK, "Encrypt")
    if a.DeriveKeyAlgorithm ~= "TDES_2KEY" and a.DeriveKeyAlgorithm ~= "TDES_3KEY" then
      data.invalid("DeriveKeyAlgorithm must be TDES_2KEY or TDES_3KEY for AS2805 KEK validation")
    end
    local r = data.check(hsm.as2805.kek_validation_request(kek, { derive_algorithm = rec.attrs.KeyAlgorithm,
      random_key_max_length = a.DeriveKeyAlgorithm == "TDES_3KEY" and "BYTES_24" or "BYTES_16",
      variant_mask = mask }))
    out = { RandomKeySend = r.random_key_send, RandomKeyReceive = r.random_key_receive }
  else
    rec, kek = data.key(svc, input.KeyIdentifier, KEK, "Decrypt")
    local krs = a.RandomKeySend:upper()
    out = { RandomKeySend = krs,
      RandomKeyReceive = data.check(hsm.as2805.kek_validation_response(kek, krs, { variant_mask = mask })) }
  end
  out.KeyArn, out.KeyCheckValue = data.arn(svc, rec), rec.kcv
  return out
end

return M
