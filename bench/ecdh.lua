--- ECDH key agreement: core.ec.derive per curve (ECDH + the SP 800-56C one-step KDF with
-- SHA-512 into an AES-128 key), and `serve aws`'s TranslatePinData with an ECDH-derived
-- incoming key (AWS's PIN set flow: certificate parse and signature check, ECDH, KDF, ISO 4
-- to ISO 0 translation) through the service's handler in this process, SigV4 included.
--   lua5.4 bench/ecdh.lua [seconds=2]   (from the repo root)
-- One core; rates are operations per second of CPU time.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm = require "payhsm"
local util = require "payhsm.util"
local ip = require "spec.support.aws.inproc"
local core = hsm.core

local SECONDS = tonumber(arg[1]) or 2
local function rate(fn)
  local n, t0 = 0, os.clock()
  while os.clock() - t0 < SECONDS do fn() n = n + 1 end
  return n / (os.clock() - t0)
end

print(("ECDH, %d s per figure, %s"):format(SECONDS, os.date("!%Y-%m-%dT%H:%M:%SZ")))
local opts = { kdf = "NIST_SP800", hash = "SHA_512", algorithm = "AES_128", shared_info = ("AB"):rep(32) }
for _, curve in ipairs { "P-256", "P-384", "P-521" } do
  local a, b = core.ec.generate(curve), core.ec.generate(curve):public()
  print(("%-52s %8.0f /s"):format("core.ec.derive " .. curve, rate(function() core.ec.derive(a, b, opts) end)))
end

local svc = ip.service()
local function ok(out, err) return assert(out, err and err.message) end
local kek_arn, kek = ip.import_kek(svc, "AES_256", ("0123456789ABCDEF"):rep(4))
local pek_arn = ip.import(svc, kek_arn, kek, "TDES_2KEY", "89ABCDEF0123456776543210FEDCBA98",
  "TR31_P0_PIN_ENCRYPTION_KEY", { "Encrypt", "Decrypt" })
local ecdh_arn = ok(ip.control(svc, "CreateKey", { Exportable = false, KeyAttributes = { KeyAlgorithm = "ECC_NIST_P256",
  KeyClass = "ASYMMETRIC_KEY_PAIR", KeyUsage = "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT",
  KeyModesOfUse = { DeriveKey = true } } })).Key.KeyArn
local service_pub = core.pki.parse(util.b64decode(ok(ip.control(svc, "GetPublicKeyCertificate",
  { KeyIdentifier = ecdh_arn })).KeyCertificate)).public_key
local ca = core.ec.generate("P-256")
local ca_arn = ok(ip.control(svc, "ImportKey", { KeyMaterial = { RootCertificatePublicKey = { KeyAttributes = {
  KeyAlgorithm = "ECC_NIST_P256", KeyClass = "PUBLIC_KEY", KeyModesOfUse = { Verify = true },
  KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE" }, PublicKeyCertificate = util.b64encode(
    core.pki.certificate(ca, ca, { subject = "CA", issuer = "CA", ca = true })) } } })).Key.KeyArn
local phone = core.ec.generate("P-256")
local cert = util.b64encode(core.pki.certificate(ca, phone, { subject = "phone", issuer = "CA", usage = "agree" }))
local info = hsm.random(32)
local pan = "4123456789012345"
local block = hsm.pin.encrypt(core.ec.derive(phone, service_pub, { kdf = "NIST_SP800", hash = "SHA_512",
  algorithm = "AES_128", shared_info = info }), "ISO_FORMAT_4", "1234", pan)
local input = { EncryptedPinBlock = block, IncomingKeyIdentifier = ecdh_arn, OutgoingKeyIdentifier = pek_arn,
  IncomingWrappedKey = { WrappedKeyMaterial = { DiffieHellmanSymmetricKey = { CertificateAuthorityPublicKeyIdentifier =
    ca_arn, PublicKeyCertificate = cert, KeyAlgorithm = "AES_128", KeyDerivationFunction = "NIST_SP800",
    KeyDerivationHashAlgorithm = "SHA_512", SharedInformation = info } } },
  IncomingTranslationAttributes = { IsoFormat4 = { PrimaryAccountNumber = pan } },
  OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = pan } } }
ok(ip.data(svc, "TranslatePinData", input))
print(("%-52s %8.0f /s"):format("TranslatePinData, ECDH P-256 in (handler, memory)", rate(function()
  ok(ip.data(svc, "TranslatePinData", input)) end)))
input.IncomingWrappedKey = nil
input.IncomingKeyIdentifier = pek_arn
input.EncryptedPinBlock = hsm.pin.encrypt(hsm.key.import("TDES_2KEY", "89ABCDEF0123456776543210FEDCBA98"),
  "ISO_FORMAT_0", "1234", pan)
input.IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = pan } }
print(("%-52s %8.0f /s"):format("TranslatePinData, stored PEK in (the same, for scale)", rate(function()
  ok(ip.data(svc, "TranslatePinData", input)) end)))
