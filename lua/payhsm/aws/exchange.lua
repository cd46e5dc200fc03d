--- Key import and export as AWS Payment Cryptography does them (user guide, "Import
-- and export keys"; API reference ImportKey, ExportKey, GetParametersForImport,
-- GetParametersForExport, GetPublicKeyCertificate): public key certificates (root and
-- trusted), TR-31 key blocks under a key-encryption key (ANSI X9.143-2022), TR-34 key
-- blocks (ASC X9 TR-34-2019 in AWS's X9_TR34_2012 layout, hsm.tr34) and key cryptograms
-- (RSAES-OAEP with SHA-256 or SHA-512 over the clear key bytes, RFC 8017 7.1).
-- Certificates travel as base64 of the PEM text, as AWS's API does.
local hsm = require "payhsm"
local core = require "payhsm.core"
local errors = require "payhsm.aws.errors"
local rules = require "payhsm.aws.rules"
local control = require "payhsm.aws.control"
local util = require "payhsm.util"

local M = {}

local raise = errors.raise

M.PARAMETERS_VALID = 7 * 86400 -- seconds an import or export token stays valid

-- base64 PEM in, PEM out (ValidationException naming the member otherwise)
-- (rsa: the certificate must hold an RSA key, as TR-34 and key cryptograms need)
local function pem_of(b64, member, rsa)
  local pem = util.b64decode(b64)
  if not pem or not pem:find("-----BEGIN CERTIFICATE-----", 1, true) then
    raise("ValidationException", member .. " must be a base64-encoded PEM X.509 certificate")
  end
  local cert, msg = core.pki.parse(pem)
  if not cert then raise("ValidationException", member .. ": " .. tostring(msg)) end
  if rsa and cert.public_key.curve then raise("ValidationException", member .. " must hold an RSA key") end
  return pem, cert
end

local function token(prefix)
  local t = {}
  local bytes = util.hex_to_bin(hsm.random(16))
  local chars = "abcdefghijklmnopqrstuvwxyz234567"
  for i = 1, 16 do
    local v = bytes:byte(i) % 32 + 1
    t[i] = chars:sub(v, v)
  end
  return prefix .. table.concat(t)
end

-- ---- parameters ------------------------------------------------------------------------

local function parameters(svc, kind, material, alg)
  local bits = control.RSA_BITS[alg]
  local pair = hsm.rsa.generate(bits)
  local cert = svc.keys:certify(pair, "payhsm " .. kind .. " key", kind == "import" and "encipher" or "sign")
  local _, ca_cert = svc.keys:ca()
  local tok = token(kind .. "-token-")
  local expires = svc.clock() + M.PARAMETERS_VALID
  svc.keys:put_token(tok, { kind = kind, material = material, key = svc.keys:wrap_private(pair), cert = cert,
    algorithm = alg }, expires)
  pair:close()
  return util.b64encode(cert), util.b64encode(ca_cert), tok, expires
end

--- GetParametersForImport: a fresh RSA wrapping key pair (certificate from the service's CA, base64 PEM, with the CA as chain) and an import token valid 7 days, for KEY_CRYPTOGRAM (and TR34_KEY_BLOCK) imports.
function M.GetParametersForImport(svc, input)
  local mt = input.KeyMaterialType
  if mt ~= "KEY_CRYPTOGRAM" and mt ~= "TR34_KEY_BLOCK" then
    raise("ValidationException", "KeyMaterialType must be KEY_CRYPTOGRAM or TR34_KEY_BLOCK for import parameters")
  end
  local cert, chain, tok, expires = parameters(svc, "import", mt, input.WrappingKeyAlgorithm)
  return { WrappingKeyCertificate = cert, WrappingKeyCertificateChain = chain,
    WrappingKeyAlgorithm = input.WrappingKeyAlgorithm, ImportToken = tok, ParametersValidUntilTimestamp = expires }
end

--- GetParametersForExport: a signing key pair (certificate, chain) and an export token, for TR34_KEY_BLOCK exports.
function M.GetParametersForExport(svc, input)
  if input.KeyMaterialType ~= "TR34_KEY_BLOCK" then
    raise("ValidationException", "KeyMaterialType must be TR34_KEY_BLOCK for export parameters")
  end
  local cert, chain, tok, expires = parameters(svc, "export", input.KeyMaterialType, input.SigningKeyAlgorithm)
  return { SigningKeyCertificate = cert, SigningKeyCertificateChain = chain,
    SigningKeyAlgorithm = input.SigningKeyAlgorithm, ExportToken = tok, ParametersValidUntilTimestamp = expires }
end

--- GetPublicKeyCertificate: the certificate (base64 PEM) of an asymmetric key and its chain.
function M.GetPublicKeyCertificate(svc, input)
  local rec = svc.keys:resolve(input.KeyIdentifier)
  if not rec.cert then
    raise("ValidationException", "Key " .. svc.keys:arn(rec.id) .. " is not an asymmetric key: it has no certificate")
  end
  local chain = rec.chain
  if not chain then
    local _, ca_cert = svc.keys:ca()
    chain = rec.origin == "EXTERNAL" and rec.cert or ca_cert
  end
  return { KeyCertificate = util.b64encode(rec.cert), KeyCertificateChain = util.b64encode(chain) }
end

-- ---- import ------------------------------------------------------------------------------

-- A root or trusted public key certificate: an RSA or ECC public key kept with its certificate.
local function import_certificate(svc, input, m, trusted)
  local attrs = m.KeyAttributes
  if attrs.KeyClass ~= "PUBLIC_KEY" then raise("ValidationException", "KeyClass must be PUBLIC_KEY for a certificate") end
  control.check_attributes(attrs, "ImportKey")
  local alg = attrs.KeyAlgorithm
  if not control.RSA_BITS[alg] and not control.ECC_CURVES[alg] then
    raise("ValidationException", "KeyAlgorithm must be RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384 or "
      .. "ECC_NIST_P521 for a certificate")
  end
  local pem, cert = pem_of(m.PublicKeyCertificate, "PublicKeyCertificate")
  local pub = cert.public_key
  local holds = pub.curve and ("an ECC key on " .. pub:curve()) or ("an RSA-%d key"):format(pub:bits())
  if (control.RSA_BITS[alg] and (pub.curve or pub:bits() ~= control.RSA_BITS[alg]))
    or (control.ECC_CURVES[alg] and (not pub.curve or pub:curve() ~= control.ECC_CURVES[alg])) then
    raise("ValidationException", ("PublicKeyCertificate holds %s, not %s"):format(holds, alg))
  end
  local chain
  if trusted then
    local ca = svc.keys:resolve(m.CertificateAuthorityPublicKeyIdentifier)
    if not ca.cert or not ca.root then
      raise("ValidationException", "CertificateAuthorityPublicKeyIdentifier must name an imported root certificate")
    end
    control.usable(svc, ca, "Certificate authority")
    local ca_cert = core.pki.parse(ca.cert)
    if not core.pki.verify(pem, ca_cert.public_key) then
      raise("ValidationException", "PublicKeyCertificate is not signed by the certificate authority")
    end
    chain = ca.cert
  else
    if attrs.KeyUsage ~= "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE" then
      raise("ValidationException", "A root certificate's KeyUsage must be TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE")
    end
    if not cert.ca or not core.pki.verify(pem, cert.public_key) then
      raise("ValidationException", "PublicKeyCertificate must be a self-signed CA certificate")
    end
  end
  local now = svc.clock()
  if now < cert.not_before or now > cert.not_after then
    raise("ValidationException", "PublicKeyCertificate is not valid now")
  end
  local rec = control.new_record(svc, attrs, { exportable = true, enabled = input.Enabled, tags = input.Tags,
    origin = "EXTERNAL" })
  rec.cert, rec.chain, rec.root = pem, chain, not trusted or nil
  return rec
end

-- The key-encryption key a TR-31 block or export names: K0/K1, usable, fit for `dir`.
local function kek(svc, ident, dir)
  local rec = svc.keys:resolve(ident)
  local usage = rec.attrs.KeyUsage
  if usage ~= "TR31_K0_KEY_ENCRYPTION_KEY" and usage ~= "TR31_K1_KEY_BLOCK_PROTECTION_KEY" then
    raise("ValidationException", "The wrapping key must be a TR31_K0_KEY_ENCRYPTION_KEY or TR31_K1_KEY_BLOCK_PROTECTION_KEY")
  end
  control.usable(svc, rec, "Wrapping key")
  local m = rec.attrs.KeyModesOfUse
  if not (m.NoRestrictions or m[dir]) then
    raise("ValidationException", "The wrapping key's modes of use do not allow " .. dir)
  end
  return rec, svc.keys:unwrap(rec)
end

-- (kek_rec, kbpk: the key-block protection key, when the caller has it: ECDH's)
local function import_tr31(svc, input, m, kek_rec, kbpk)
  if not kbpk then kek_rec, kbpk = kek(svc, m.WrappingKeyIdentifier, "Unwrap") end
  local key, header = hsm.tr31.unwrap(kbpk, m.WrappedKeyBlock)
  kbpk:close()
  if not key then
    raise("ValidationException", "WrappedKeyBlock does not unwrap under the wrapping key: " ..
      tostring(header):gsub("^[%w%._]+: ", ""))
  end
  local usage = rules.usage_name(header.usage)
  local attrs = { KeyUsage = usage or header.usage, KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = key.algorithm,
    KeyModesOfUse = rules.modes_of(header.mode) }
  local ok, err = pcall(control.check_attributes, attrs, "ImportKey")
  if not ok then
    key:close()
    error(err, 0)
  end
  local exportable = header.exportability == "E"
  local kcv_alg = control.kcv_algorithm(key.algorithm, input.KeyCheckValueAlgorithm)
  local rec = control.new_record(svc, attrs, { exportable = exportable, enabled = input.Enabled, tags = input.Tags,
    origin = "EXTERNAL", kcv = hsm.kcv(key, kcv_alg), kcv_alg = kcv_alg })
  rec.block = svc.keys:wrap(key)
  rec.wrapped_by = kek_rec.id
  key:close()
  return rec
end

local function import_cryptogram(svc, input, m)
  local attrs = m.KeyAttributes
  control.check_attributes(attrs, "ImportKey")
  if control.RSA_BITS[attrs.KeyAlgorithm] then
    raise("ValidationException", "A key cryptogram carries a symmetric key")
  end
  local t = svc.keys:token(m.ImportToken)
  if not t or t.kind ~= "import" or t.material ~= "KEY_CRYPTOGRAM" then
    raise("ValidationException", "ImportToken is not valid (unknown, expired, or not from GetParametersForImport "
      .. "with KeyMaterialType KEY_CRYPTOGRAM)")
  end
  local priv = svc.keys:unwrap_rsa(t.key)
  local spec = (m.WrappingSpec or "RSA_OAEP_SHA_256"):match("SHA_%d+$")
  local key, msg = core.pki.oaep_unwrap(priv, m.WrappedKeyCryptogram, spec, attrs.KeyAlgorithm,
    control.tr31_attrs(attrs, m.Exportable))
  priv:close()
  if not key then
    raise("ValidationException", "WrappedKeyCryptogram: " .. tostring(msg):gsub("^[%w%._]+: ", ""))
  end
  local kcv_alg = control.kcv_algorithm(attrs.KeyAlgorithm, input.KeyCheckValueAlgorithm)
  local rec = control.new_record(svc, attrs, { exportable = m.Exportable, enabled = input.Enabled, tags = input.Tags,
    origin = "EXTERNAL", kcv = hsm.kcv(key, kcv_alg), kcv_alg = kcv_alg })
  rec.block = svc.keys:wrap(key)
  key:close()
  return rec
end

-- The certificate authority a TR-34 exchange names: an imported root (or trusted)
-- certificate in a usable state; its PEM.
local function tr34_ca(svc, ident)
  local ca = svc.keys:resolve(ident)
  if not ca.cert then
    raise("ValidationException", "CertificateAuthorityPublicKeyIdentifier must name an imported root certificate")
  end
  control.usable(svc, ca, "Certificate authority")
  if control.ECC_CURVES[ca.attrs.KeyAlgorithm] then
    raise("ValidationException", "A TR-34 certificate authority must hold an RSA key (TR-34-2019 signs with RSA)")
  end
  return ca
end

-- hsm.tr34's refusal as a ValidationException naming the member at fault
local TR34_MEMBER = { TR34_SIGNER = "SigningKeyCertificate", TR34_CERT_CHAIN = "SigningKeyCertificate",
  TR34_CERT_EXPIRED = "SigningKeyCertificate", TR34_CERT_USAGE = "SigningKeyCertificate",
  TR34_CERT = "SigningKeyCertificate", TR34_NONCE = "RandomNonce" }
local function tr34_refused(msg, code, member)
  raise("ValidationException", ("%s: %s (%s)"):format(member or TR34_MEMBER[code] or "WrappedKeyBlock",
    tostring(msg):gsub("^[%w%._]+: ", ""), tostring(code)))
end

-- ImportKey with Tr34KeyBlock: this service is the Key Receiving Device. The import
-- token names GetParametersForImport's RSA key pair (KeyMaterialType TR34_KEY_BLOCK);
-- the token must be signed by SigningKeyCertificate, which chains to the named CA, and
-- carry RandomNonce when one is given (two-pass), or signingTime (one-pass) otherwise.
local function import_tr34(svc, input, m)
  local t = svc.keys:token(m.ImportToken)
  if not t or t.kind ~= "import" or t.material ~= "TR34_KEY_BLOCK" then
    raise("ValidationException", "ImportToken is not valid (unknown, expired, or not from GetParametersForImport "
      .. "with KeyMaterialType TR34_KEY_BLOCK)")
  end
  local ca = tr34_ca(svc, m.CertificateAuthorityPublicKeyIdentifier)
  local kdh = pem_of(m.SigningKeyCertificate, "SigningKeyCertificate", true)
  local priv = svc.keys:unwrap_rsa(t.key)
  local key, info, code = hsm.tr34.unwrap(priv, m.WrappedKeyBlock, { kdh_cert = kdh, ca_cert = ca.cert,
    krd_cert = t.cert, nonce = m.RandomNonce, time = svc.clock() })
  priv:close()
  if not key then tr34_refused(info, code) end
  local attrs = { KeyUsage = rules.usage_name(info.usage) or info.usage, KeyClass = "SYMMETRIC_KEY",
    KeyAlgorithm = key.algorithm, KeyModesOfUse = rules.modes_of(info.mode) }
  local ok, err = pcall(control.check_attributes, attrs, "ImportKey")
  if not ok then
    key:close()
    error(err, 0)
  end
  local kcv_alg = control.kcv_algorithm(key.algorithm, input.KeyCheckValueAlgorithm)
  local rec = control.new_record(svc, attrs, { exportable = info.exportability == "E", enabled = input.Enabled,
    tags = input.Tags, origin = "EXTERNAL", kcv = hsm.kcv(key, kcv_alg), kcv_alg = kcv_alg })
  rec.block = svc.keys:wrap(key)
  key:close()
  return rec
end

--- ImportKey: RootCertificatePublicKey, TrustedCertificatePublicKey, Tr31KeyBlock (under a K0/K1 key of the service), Tr34KeyBlock (X9_TR34_2012, signed by SigningKeyCertificate under an imported root, for GetParametersForImport's TR34_KEY_BLOCK key) or KeyCryptogram (RSA-OAEP under GetParametersForImport's key); or DiffieHellmanTr31KeyBlock (a TR-31 block under the key an ECDH agreement derives).
function M.ImportKey(svc, input)
  local m = input.KeyMaterial
  local rec
  if m.RootCertificatePublicKey then rec = import_certificate(svc, input, m.RootCertificatePublicKey, false)
  elseif m.TrustedCertificatePublicKey then rec = import_certificate(svc, input, m.TrustedCertificatePublicKey, true)
  elseif m.Tr31KeyBlock then rec = import_tr31(svc, input, m.Tr31KeyBlock)
  elseif m.KeyCryptogram then rec = import_cryptogram(svc, input, m.KeyCryptogram)
  elseif m.Tr34KeyBlock then rec = import_tr34(svc, input, m.Tr34KeyBlock)
  else
    local d = m.DiffieHellmanTr31KeyBlock
    local kbpk, ecc = M.ecdh_kbpk(svc, d)
    rec = import_tr31(svc, input, d, ecc, kbpk)
  end
  svc.keys:create(rec)
  return { Key = svc.keys:describe(rec) }
end

--- The key-block protection key of a DiffieHellmanTr31KeyBlock (import or export): ECDH
-- between PrivateKeyIdentifier's ECC key pair and PublicKeyCertificate's key, then the KDF
-- asked into a DeriveKeyAlgorithm key (usage K1, or K0 when the pair's DeriveKeyUsage says so).
-- Returns the key and the key pair's record.
function M.ecdh_kbpk(svc, d)
  if d.DeriveKeyAlgorithm:match("^HMAC") then
    raise("ValidationException", "DeriveKeyAlgorithm must be a TDES or AES algorithm: the derived key protects a "
      .. "TR-31 key block")
  end
  return require("payhsm.aws.ecdh").derive(svc, d.PrivateKeyIdentifier, {
    CertificateAuthorityPublicKeyIdentifier = d.CertificateAuthorityPublicKeyIdentifier,
    PublicKeyCertificate = d.PublicKeyCertificate, KeyDerivationFunction = d.KeyDerivationFunction,
    KeyDerivationHashAlgorithm = d.KeyDerivationHashAlgorithm,
    SharedInformation = d.DerivationData and d.DerivationData.SharedInformation },
    d.DeriveKeyAlgorithm, { "TR31_K1_KEY_BLOCK_PROTECTION_KEY", "TR31_K0_KEY_ENCRYPTION_KEY" }, "B")
end

-- ---- export ------------------------------------------------------------------------------

local EXPORTABILITY = { EXPORTABLE = "E", NON_EXPORTABLE = "N", SENSITIVE = "S" }

local function export_tr31(svc, rec, key, m, kek_rec, kbpk)
  if not kbpk then kek_rec, kbpk = kek(svc, m.WrappingKeyIdentifier, "Wrap") end
  local header = { version = kbpk.algorithm:match("^AES") and "D" or "B" }
  local h = m.KeyBlockHeaders
  if h then
    if h.KeyModesOfUse then
      local mode = rules.mode_char(h.KeyModesOfUse)
      if not mode then raise("ValidationException", "KeyBlockHeaders.KeyModesOfUse is not a TR-31 mode of use") end
      header.mode = mode
    end
    header.exportability = h.KeyExportability and EXPORTABILITY[h.KeyExportability]
    header.key_version = h.KeyVersion
    if h.OptionalBlocks then
      local ids = {}
      for id in pairs(h.OptionalBlocks) do ids[#ids + 1] = id end
      table.sort(ids)
      header.blocks = {}
      for _, id in ipairs(ids) do header.blocks[#header.blocks + 1] = { id = id, data = h.OptionalBlocks[id] } end
    end
  end
  local block, msg = hsm.tr31.wrap(kbpk, key, header)
  kbpk:close()
  if not block then raise("ValidationException", "The key cannot be exported in this key block: " ..
    tostring(msg):gsub("^[%w%._]+: ", "")) end
  return { WrappingKeyArn = svc.keys:arn(kek_rec.id), WrappedKeyMaterialFormat = "TR31_KEY_BLOCK",
    KeyMaterial = block }
end

local function export_cryptogram(svc, key, m)
  local ca = svc.keys:resolve(m.CertificateAuthorityPublicKeyIdentifier)
  if not ca.cert or not ca.root then
    raise("ValidationException", "CertificateAuthorityPublicKeyIdentifier must name an imported root certificate")
  end
  control.usable(svc, ca, "Certificate authority")
  local pem, cert = pem_of(m.WrappingKeyCertificate, "WrappingKeyCertificate", true)
  if not core.pki.verify(pem, core.pki.parse(ca.cert).public_key) then
    raise("ValidationException", "WrappingKeyCertificate is not signed by the certificate authority")
  end
  local spec = (m.WrappingSpec or "RSA_OAEP_SHA_256"):match("SHA_%d+$")
  local hex, msg = core.pki.oaep_wrap(cert.public_key, key, spec)
  if not hex then raise("ValidationException", (tostring(msg):gsub("^[%w%._]+: ", ""))) end
  return { WrappingKeyArn = svc.keys:arn(ca.id), WrappedKeyMaterialFormat = "KEY_CRYPTOGRAM", KeyMaterial = hex }
end

-- ExportKey with Tr34KeyBlock: this service is the Key Distribution Host. It signs with
-- GetParametersForExport's key pair (the export token) and enciphers for
-- WrappingKeyCertificate, which must chain to the named CA. The header is hsm.tr34's
-- default (the key's usage, algorithm, mode B, version 00, exportable) with
-- KeyBlockHeaders' KeyModesOfUse, KeyExportability and KeyVersion applied.
local function export_tr34(svc, key, m)
  local t = svc.keys:token(m.ExportToken)
  if not t or t.kind ~= "export" then
    raise("ValidationException", "ExportToken is not valid (unknown, expired, or not from GetParametersForExport)")
  end
  local ca = tr34_ca(svc, m.CertificateAuthorityPublicKeyIdentifier)
  local krd, cert = pem_of(m.WrappingKeyCertificate, "WrappingKeyCertificate", true)
  if not core.pki.verify(krd, core.pki.parse(ca.cert).public_key) then
    raise("ValidationException", "WrappingKeyCertificate is not signed by the certificate authority")
  end
  if cert.public_key:bits() < 2048 then raise("ValidationException", "WrappingKeyCertificate: RSA key under 2048 bits") end
  local h = m.KeyBlockHeaders or {}
  if h.OptionalBlocks and next(h.OptionalBlocks) then
    raise("ValidationException", "KeyBlockHeaders.OptionalBlocks are not supported in a TR-34 key block")
  end
  local mode = key.mode or "B"
  if h.KeyModesOfUse then
    mode = rules.mode_char(h.KeyModesOfUse)
    if not mode then raise("ValidationException", "KeyBlockHeaders.KeyModesOfUse is not a TR-31 mode of use") end
  end
  local version = h.KeyVersion or "00"
  if not tostring(version):match("^%w%w$") then raise("ValidationException", "KeyBlockHeaders.KeyVersion must be 2 characters") end
  local header = "D9999" .. (key.usage or "K0") .. (key.algorithm:match("^AES") and "A" or "T") .. mode .. version
    .. (h.KeyExportability and EXPORTABILITY[h.KeyExportability] or "E") .. "0000"
  local priv = svc.keys:unwrap_rsa(t.key)
  local block, msg, code = hsm.tr34.wrap(key, { kdh_key = priv, kdh_cert = t.cert, krd_cert = krd, ca_cert = ca.cert,
    nonce = m.RandomNonce, header = header, form = "X9_TR34_2012", time = svc.clock() })
  priv:close()
  if not block then tr34_refused(msg, code, code == "KEY_TYPE" and "ExportKeyIdentifier" or "WrappingKeyCertificate") end
  return { WrappingKeyArn = svc.keys:arn(ca.id), WrappedKeyMaterialFormat = "TR34_KEY_BLOCK", KeyMaterial = block }
end

-- ExportDukptInitialKey: the initial key (IPEK) of the device with this KSN, derived from
-- the BDK being exported (ANSI X9.24-1:2009 A.6 for a TDES_2KEY BDK and a 20-digit KSN,
-- X9.24-3:2017 6.3.1 for an AES BDK and a 24-digit one; usage B1, mode X), exported instead
-- of the BDK. Closes bdk.
local function initial_key(svc, rec, bdk, ksn)
  local alg = rec.attrs.KeyAlgorithm
  local want = alg == "TDES_2KEY" and 20 or alg:match("^AES") and 24
  local ok, err = pcall(function()
    if rec.attrs.KeyUsage ~= "TR31_B0_BASE_DERIVATION_KEY" then
      raise("ValidationException", "ExportDukptInitialKey needs a TR31_B0_BASE_DERIVATION_KEY")
    end
    if not want then raise("ValidationException", "ExportDukptInitialKey: DUKPT has no " .. alg .. " BDK") end
    if #ksn ~= want then
      raise("ValidationException", ("KeySerialNumber must be %d hex digits for a %s BDK"):format(want, alg))
    end
  end)
  if not ok then
    bdk:close()
    error(err, 0)
  end
  local ik, msg = hsm.dukpt.initial_key(bdk, ksn)
  bdk:close()
  if not ik then raise("ValidationException", "ExportDukptInitialKey: " .. tostring(msg):gsub("^[%w%._]+: ", "")) end
  return ik
end

--- ExportKey: an exportable symmetric key as a Tr31KeyBlock under a K0/K1 key (KeyBlockHeaders honoured), a Tr34KeyBlock (X9_TR34_2012, signed with GetParametersForExport's key, for a WrappingKeyCertificate signed by an imported root) or a KeyCryptogram (RSA-OAEP) under a wrapping certificate signed by an imported root; or a DiffieHellmanTr31KeyBlock (TR-31 under the key an ECDH agreement derives). With ExportAttributes.ExportDukptInitialKey, a BDK's initial key for the KSN given is exported instead of the BDK.
function M.ExportKey(svc, input)
  local m = input.KeyMaterial
  local attrs = input.ExportAttributes or {}
  local rec = svc.keys:resolve(input.ExportKeyIdentifier)
  control.usable(svc, rec)
  if not rec.block then raise("ValidationException", "Only symmetric keys can be exported") end
  if not rec.exportable then raise("ValidationException", "Key " .. svc.keys:arn(rec.id) .. " is not exportable") end
  local key = svc.keys:unwrap(rec)
  if attrs.ExportDukptInitialKey then key = initial_key(svc, rec, key, attrs.ExportDukptInitialKey.KeySerialNumber) end
  local ok, out
  if m.Tr31KeyBlock then ok, out = pcall(export_tr31, svc, rec, key, m.Tr31KeyBlock)
  elseif m.DiffieHellmanTr31KeyBlock then
    ok, out = pcall(function()
      local kbpk, ecc = M.ecdh_kbpk(svc, m.DiffieHellmanTr31KeyBlock)
      return export_tr31(svc, rec, key, m.DiffieHellmanTr31KeyBlock, ecc, kbpk)
    end)
  elseif m.Tr34KeyBlock then ok, out = pcall(export_tr34, svc, key, m.Tr34KeyBlock)
  else ok, out = pcall(export_cryptogram, svc, key, m.KeyCryptogram) end
  if ok then
    local kcv_alg = control.kcv_algorithm(key.algorithm, attrs.KeyCheckValueAlgorithm or rec.kcv_alg)
    out.KeyCheckValue, out.KeyCheckValueAlgorithm = hsm.kcv(key, kcv_alg), kcv_alg
  end
  key:close()
  if not ok then error(out, 0) end
  return { WrappedKey = out }
end

return M
