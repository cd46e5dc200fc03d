--- EncryptData, DecryptData and ReEncryptData of AWS Payment Cryptography's data plane
-- (EncryptionDecryptionAttributes, ReEncryptionAttributes):
--   Symmetric  TDES or AES in ECB, CBC, CFB (CFB1, CFB8, CFB64 for TDES, CFB128 for AES;
--              plain CFB is the key's full-block CFB) or OFB (NIST SP 800-67, FIPS 197,
--              SP 800-38A) under a TR31_D0 key (Encrypt / Decrypt); the IV defaults to zeros.
--              ECB and CBC take whole blocks; CFB and OFB any number of bytes.
--   Dukpt      the data encryption key of the transaction (ANSI X9.24-1:2009 A.4.1 data
--              variants, X9.24-3:2017 6.3.2) from a TR31_B0 BDK (DeriveKey); CBC by default.
--   Emv        the issuer script confidentiality session key (EMV 4.4 Book 2 A1.3, R =
--              SessionDerivationData) of the card's ICC master key (A1.4) under a TR31_E1
--              IMK-SMC (DeriveKey); ECB or CBC with a zero IV.
-- Data is taken as given: whole blocks, no padding added or removed, as AWS does.
--   Asymmetric RSA (RFC 8017: PKCS #1 v1.5 or OAEP with SHA-1/256/512) under a TR31_D1 key:
--              its public key encrypts, the key pair's private key decrypts.
local hsm = require "payhsm"
local data = require "payhsm.aws.data"

local M = {}

local DEK = { "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY" }
local RSA_DATA = { "TR31_D1_ASYMMETRIC_KEY_FOR_DATA_ENCRYPTION" }
local BDK = { "TR31_B0_BASE_DERIVATION_KEY" }
local IMK_SMC = { "TR31_E1_EMV_MKEY_CONFIDENTIALITY" }

-- Dukpt and Emv attributes: ECB or CBC only (their model's enum)
local function block_mode(mode)
  if mode ~= "ECB" and mode ~= "CBC" then data.invalid("Mode must be ECB or CBC, not " .. mode) end
  return mode
end

-- Runs the cipher of attrs (a union) in direction enc ("Encrypt" | "Decrypt") over hex
-- under the key ident names. Returns the record and the result.
function M.crypt(svc, ident, attrs, enc, hex)
  local kind, a = next(attrs)
  local fn = enc == "Encrypt" and hsm.cipher.encrypt or hsm.cipher.decrypt
  if kind == "Asymmetric" then
    -- RSA (RFC 8017) under a TR31_D1 key: encrypt with its public key, decrypt with the
    -- key pair's private key; PaddingType PKCS1 or OAEP_SHA1/256/512 (default OAEP_SHA256)
    local rec, rsa = data.rsa_key(svc, ident, RSA_DATA, enc, enc == "Decrypt")
    local pki = require("payhsm.core").pki
    local out, msg, code = (enc == "Encrypt" and pki.rsa_encrypt or pki.rsa_decrypt)(rsa, hex,
      a.PaddingType or "OAEP_SHA256")
    if enc == "Decrypt" then rsa:close() end
    return rec, data.check(out, msg, code)
  end
  if kind == "Symmetric" then
    if a.PaddingType then data.invalid("PaddingType applies to asymmetric keys, not to Symmetric encryption") end
    local rec, key = data.key(svc, ident, DEK, enc)
    local mode = a.Mode
    if mode == "ECB" and a.InitializationVector then data.invalid("ECB takes no InitializationVector") end
    return rec, data.check(fn(key, mode, hex, mode ~= "ECB" and a.InitializationVector or nil))
  end
  if kind == "Dukpt" then
    local rec, bdk = data.key(svc, ident, BDK, "DeriveKey")
    local tdes = rec.attrs.KeyAlgorithm:match("^TDES") ~= nil
    local ksn = a.KeySerialNumber:upper()
    if #ksn ~= (tdes and 20 or 24) then
      data.invalid(("KeySerialNumber must be %d hex digits for a %s BDK"):format(tdes and 20 or 24,
        rec.attrs.KeyAlgorithm))
    end
    local variant = a.DukptKeyVariant or "BIDIRECTIONAL"
    if tdes and variant == "BIDIRECTIONAL" then variant = "REQUEST" end -- X9.24-1: "request or both ways"
    local key = data.check(hsm.dukpt.working_key(bdk, ksn, { purpose = "DATA", variant = variant,
      derivation_type = a.DukptKeyDerivationType }))
    local mode = block_mode(a.Mode or "CBC")
    local out, msg, code = fn(key, mode, hex, mode == "CBC" and a.InitializationVector or nil)
    key:close()
    return rec, data.check(out, msg, code)
  end
  -- Emv
  local rec, imk = data.key(svc, ident, IMK_SMC, "DeriveKey")
  local mode = block_mode(a.Mode or "CBC")
  if a.InitializationVector and not a.InitializationVector:match("^0+$") then
    data.invalid("Emv encryption uses a zero InitializationVector")
  end
  if #hex % 16 ~= 0 then data.invalid("Emv data must be whole 8-byte blocks") end
  local icc = data.check(hsm.emv.derive_icc_master_key(imk, a.PrimaryAccountNumber, a.PanSequenceNumber,
    a.MajorKeyDerivationMode))
  local sk, msg, code = hsm.emv.derive_sm_session_key(icc, "EMV_COMMON", { arqc = a.SessionDerivationData:upper() })
  icc:close()
  data.check(sk, msg, code)
  local out
  if enc == "Encrypt" then
    out, msg, code = hsm.emv.sm_encrypt(sk, hex, { type = "MASTERCARD", mode = mode })
  else
    out, msg, code = hsm.emv.sm_decrypt(sk, hex, { type = "MASTERCARD", mode = mode })
  end
  sk:close()
  return rec, data.check(out, msg, code)
end

function M.EncryptData(svc, input)
  local rec, ct = M.crypt(svc, input.KeyIdentifier, input.EncryptionAttributes, "Encrypt", input.PlainText)
  return { KeyArn = data.arn(svc, rec), KeyCheckValue = rec.kcv, CipherText = ct }
end

function M.DecryptData(svc, input)
  local rec, pt = M.crypt(svc, input.KeyIdentifier, input.DecryptionAttributes, "Decrypt", input.CipherText)
  return { KeyArn = data.arn(svc, rec), KeyCheckValue = rec.kcv, PlainText = pt }
end

function M.ReEncryptData(svc, input)
  local _, pt = M.crypt(svc, input.IncomingKeyIdentifier, input.IncomingEncryptionAttributes, "Decrypt",
    input.CipherText)
  local rec, ct = M.crypt(svc, input.OutgoingKeyIdentifier, input.OutgoingEncryptionAttributes, "Encrypt", pt)
  return { KeyArn = data.arn(svc, rec), KeyCheckValue = rec.kcv, CipherText = ct }
end

return M
