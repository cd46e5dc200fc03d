--- GenerateMac and VerifyMac of AWS Payment Cryptography's data plane (MacAttributes):
--   Algorithm ISO9797_ALGORITHM1  CBC-MAC (ISO/IEC 9797-1 MAC algorithm 1), key TR31_M1
--   Algorithm ISO9797_ALGORITHM3  retail MAC (MAC algorithm 3, ANSI X9.19), key TR31_M3
--             (both with padding method 1, zeros, as AWS computes them)
--   Algorithm CMAC                NIST SP 800-38B, key TR31_M6
--   Algorithm HMAC, HMAC_SHA224..512  FIPS 198-1, key TR31_M7 of that digest
--   DukptIso9797Algorithm1 / 3, DukptCmac  the MAC key of the transaction (ANSI X9.24-1:2009
--             A.4.1 variants; X9.24-3:2017 6.3.2), key a TR31_B0 BDK (DeriveKey)
--   EmvMac    the issuer script MAC (EMV 4.4 Book 2 9.2.3, A1.2: MAC algorithm 3, padding
--             method 2) under the secure messaging session key of the card (A1.3),
--             derived from a TR31_E2 IMK-SMI (DeriveKey); AMEX takes the Visa session key
--             (AWS's payShield migration guide: "The Visa, Amex and JCB 01 schemes are all
--             the same"); EMV2000 is refused
-- MacLength is in bytes (default: the algorithm's whole MAC). AS2805_4_1 is refused
-- with a ValidationException that says so.
local hsm = require "payhsm"
local data = require "payhsm.aws.data"
local util = require "payhsm.util"

local M = {}

local KEYS = {
  ISO9797_ALGORITHM1 = { "TR31_M1_ISO_9797_1_MAC_KEY" }, ISO9797_ALGORITHM3 = { "TR31_M3_ISO_9797_3_MAC_KEY" },
  CMAC = { "TR31_M6_ISO_9797_5_CMAC_KEY" }, HMAC = { "TR31_M7_HMAC_KEY" }, HMAC_SHA224 = { "TR31_M7_HMAC_KEY" },
  HMAC_SHA256 = { "TR31_M7_HMAC_KEY" }, HMAC_SHA384 = { "TR31_M7_HMAC_KEY" }, HMAC_SHA512 = { "TR31_M7_HMAC_KEY" },
}
local BDK = { "TR31_B0_BASE_DERIVATION_KEY" }
local IMK_SMI = { "TR31_E2_EMV_MKEY_INTEGRITY" }
local DUKPT = { DukptIso9797Algorithm1 = { "ISO9797_ALGORITHM1", "M1" },
  DukptIso9797Algorithm3 = { "ISO9797_ALGORITHM3", "M3" }, DukptCmac = { "CMAC", "M6" } }
local SM_DERIVATION = { EMV_COMMON_SESSION_KEY = "EMV_COMMON", MASTERCARD_SESSION_KEY = "MASTERCARD", VISA = "VISA",
  AMEX = "VISA" }

-- The key and the payhsm MAC algorithm an attribute set names; temp: the key is derived.
local function mac_key(svc, input, attrs, mode)
  local kind, a = next(attrs)
  if kind == "Algorithm" then
    if a == "AS2805_4_1" then data.invalid("The AS2805_4_1 MAC algorithm is not supported by this service") end
    local rec, key = data.key(svc, input.KeyIdentifier, KEYS[a], mode)
    local alg = a
    if a:match("^HMAC_") then
      if rec.attrs.KeyAlgorithm ~= a then
        data.invalid(("Algorithm %s needs an %s key, not %s"):format(a, a, rec.attrs.KeyAlgorithm))
      end
      alg = "HMAC"
    end
    return rec, key, alg, false
  end
  if DUKPT[kind] then
    local rec, bdk = data.key(svc, input.KeyIdentifier, BDK, "DeriveKey")
    local ksn = a.KeySerialNumber:upper()
    local tdes = rec.attrs.KeyAlgorithm:match("^TDES") ~= nil
    if #ksn ~= (tdes and 20 or 24) then
      data.invalid(("KeySerialNumber must be %d hex digits for a %s BDK"):format(tdes and 20 or 24,
        rec.attrs.KeyAlgorithm))
    end
    local variant = a.DukptKeyVariant
    if tdes and variant == "BIDIRECTIONAL" then variant = "REQUEST" end -- X9.24-1: "request or both ways"
    local key = data.check(hsm.dukpt.working_key(bdk, ksn, { purpose = "MAC", variant = variant,
      derivation_type = a.DukptDerivationType, usage = DUKPT[kind][2] }))
    return rec, key, DUKPT[kind][1], true
  end
  -- EmvMac
  local rec, imk = data.key(svc, input.KeyIdentifier, IMK_SMI, "DeriveKey")
  local derivation = SM_DERIVATION[a.SessionKeyDerivationMode]
  if not derivation then
    data.invalid("SessionKeyDerivationMode " .. a.SessionKeyDerivationMode .. " is not supported for EmvMac")
  end
  local v = a.SessionKeyDerivationValue
  local p
  if derivation == "VISA" then
    if not v.ApplicationTransactionCounter then
      data.invalid("SessionKeyDerivationMode " .. a.SessionKeyDerivationMode .. " needs ApplicationTransactionCounter")
    end
    p = { atc = v.ApplicationTransactionCounter:upper() }
  else
    if not v.ApplicationCryptogram then
      data.invalid("SessionKeyDerivationMode " .. a.SessionKeyDerivationMode .. " needs ApplicationCryptogram")
    end
    p = { arqc = v.ApplicationCryptogram:upper() }
  end
  local icc = data.check(hsm.emv.derive_icc_master_key(imk, a.PrimaryAccountNumber, a.PanSequenceNumber,
    a.MajorKeyDerivationMode))
  local sk, msg, code = hsm.emv.derive_sm_session_key(icc, derivation, p)
  icc:close()
  return rec, data.check(sk, msg, code), "EMV", true
end

-- The whole MAC of the message.
local function compute(rec, key, alg, message)
  if alg == "EMV" then return data.check(hsm.emv.sm_mac(key, message)) end
  return data.check(hsm.mac.generate(key, alg, message))
end

function M.GenerateMac(svc, input)
  local rec, key, alg, temp = mac_key(svc, input, input.GenerationAttributes, "Generate")
  local mac = compute(rec, key, alg, input.MessageData)
  if temp then key:close() end
  local len = input.MacLength
  if len then
    if 2 * len > #mac then data.invalid(("MacLength %d is longer than the %d-byte MAC"):format(len, #mac / 2)) end
    mac = mac:sub(1, 2 * len)
  end
  return { KeyArn = data.arn(svc, rec), KeyCheckValue = rec.kcv, Mac = mac }
end

function M.VerifyMac(svc, input)
  local rec, key, alg, temp = mac_key(svc, input, input.VerificationAttributes, "Verify")
  local given = input.Mac:upper()
  local len = input.MacLength or #given / 2
  if 2 * len ~= #given then
    if temp then key:close() end
    data.invalid(("Mac is %d bytes, MacLength %d"):format(#given / 2, len))
  end
  local ok, msg, code
  if alg == "EMV" then
    local mac = hsm.emv.sm_mac(key, input.MessageData)
    ok = mac and 2 * len <= #mac and util.secret_equal(mac:sub(1, 2 * len), given)
    code = mac and (ok and nil or (2 * len <= #mac and "MAC_MISMATCH" or "MAC_LENGTH")) or "BAD_HEX"
    msg = "Mac is longer than the 8-byte MAC"
  else
    ok, msg, code = hsm.mac.verify(key, alg, input.MessageData, given)
  end
  if temp then key:close() end
  if code == "MAC_LENGTH" then data.invalid(msg) end
  data.verified("INVALID_MAC", ok, msg, code)
  return { KeyArn = data.arn(svc, rec), KeyCheckValue = rec.kcv }
end

return M
