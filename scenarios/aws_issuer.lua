-- An issuer on AWS Payment Cryptography's data plane, here `bin/payhsm serve aws` in its
-- own process, driven with payhsm.aws (SigV4, AWS's member names and REST paths): the
-- issuer brings its keys in (a KEK by key cryptogram, working keys as TR-31 blocks under
-- it), then authorises card transactions: verifies the chip's ARQC and answers with an
-- ARPC, checks a CVV2, verifies a PIN against its Visa PVV, and translates a DUKPT PIN
-- block from an acquirer's terminal to its own PIN key, and takes a PIN set from a phone
-- over ECDH (AWS's ECDH flow). Each refusal AWS gives is shown:
-- a wrong cryptogram, CVV2 or PIN (VerificationFailedException and its Reason), a key used
-- for what its usage or modes of use forbid, transaction data the service will not pad.
-- The card and the terminal are simulated with payhsm's own core.
local hsm = require "payhsm"
local aws = require "payhsm.aws"
local util = require "payhsm.util"

local function step(title) print(("-- %s"):format(title)) end
local function show(label, value) print(("   %-40s %s"):format(label, tostring(value))) end
local function refused(label, out, err)
  assert(out == nil, label .. " should have been refused")
  print(("   %-40s %s%s: %s"):format(label, err.type, err.reason and (" (" .. err.reason .. ")") or "", err.message))
end

-- ---- the service ------------------------------------------------------------------------
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local ACCESS_KEY, SECRET = "AKIDISSUER", "issuer-secret-access-key"
local config = dir .. "/aws.cfg.lua"
local f = assert(io.open(config, "w"))
f:write(([[return {listen = "127.0.0.1:0", region = "eu-west-1", account = "111122223333",
  credentials = {%s = %q}, store = {backend = "sqlite", path = %q}, storage_key_file = %q}
]]):format(ACCESS_KEY, SECRET, dir .. "/aws.db", dir .. "/aws.lmk"))
f:close()
local log = dir .. "/serve.log"
os.execute(("bin/payhsm serve aws --config %s >/dev/null 2>%s & echo $! > %s/pid"):format(config, log, dir))
local pid = io.open(dir .. "/pid"):read("*l")
local port
for _ = 1, 250 do
  local l = io.open(log)
  port = l and l:read("*a"):match("listening on http://[%d.]+:(%d+)")
  if l then l:close() end
  if port then break end
  os.execute("sleep 0.02")
end
assert(port, "bin/payhsm serve aws did not start")
local pc = aws.new { endpoint = "http://127.0.0.1:" .. port, region = "eu-west-1", access_key = ACCESS_KEY,
  secret_key = SECRET }

step("The issuer's KEK, by key cryptogram (RSA-OAEP under the service's wrapping certificate)")
local params = assert(pc:GetParametersForImport { KeyMaterialType = "KEY_CRYPTOGRAM", WrappingKeyAlgorithm = "RSA_2048" })
local cert = assert(hsm.core.pki.parse(util.b64decode(params.WrappingKeyCertificate)))
local kek = hsm.key.generate("AES_256", { usage = "K0", mode = "B" })
local kek_arn = assert(pc:ImportKey { KeyMaterial = { KeyCryptogram = { KeyAttributes = {
  KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY", KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_256",
  KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } }, Exportable = true,
  WrappedKeyCryptogram = hsm.core.pki.oaep_wrap(cert.public_key, kek, "SHA_256"),
  ImportToken = params.ImportToken } } }).Key.KeyArn
show("KEK", kek_arn:match("key/.*") .. "  KCV " .. kek:kcv("CMAC"))

step("Working keys as TR-31 blocks under the KEK (the issuer keeps its copies to play card and terminal)")
local function bring(label, alg, usage, mode)
  local key = hsm.key.generate(alg, { usage = usage, mode = mode, exportability = "E" })
  local out = assert(pc:ImportKey { KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = kek_arn,
    WrappedKeyBlock = assert(hsm.tr31.wrap(kek, key, { version = "D" })) } } }).Key
  show(label, ("%s  %s  KCV %s"):format(out.KeyArn:match("key/.*"), out.KeyAttributes.KeyUsage, out.KeyCheckValue))
  return out.KeyArn, key
end
local imk_arn, imk = bring("IMK-AC (ARQC / ARPC)", "TDES_2KEY", "E0", "X")
local cvk_arn = bring("CVK (CVV2)", "TDES_2KEY", "C0", "C")
local pvk_arn, pvk = bring("PVK (Visa PVV)", "TDES_2KEY", "V2", "C")
local pek_arn, pek = bring("PEK (the issuer's PIN key)", "TDES_2KEY", "P0", "B")
local bdk_arn, bdk = bring("BDK (the acquirer's terminals)", "TDES_2KEY", "B0", "X")

local PAN, PSN, ATC = "4761739001010119", "01", "004A"
-- the chip's transaction data (amount, country, TVR, currency, date, type, UN, AIP, ATC,
-- CVR), already padded to whole blocks by the terminal: the service takes it as given
local TX = "000000001000000000000000082600000000000826240131005A8CE1B2" .. "1800" .. ATC .. "03A0A000" .. "000000"

step("VerifyAuthRequestCryptogram: the chip's ARQC (EMV common session key), ARPC method 1")
local arqc = hsm.emv.generate_arqc(imk, { mode = "EMV_OPTION_A", pan = PAN, psn = PSN, derivation = "EMV_COMMON",
  atc = ATC, data = TX, padding = 0 })
local function arqc_request(ac, data)
  return { KeyIdentifier = imk_arn, TransactionData = data or TX, AuthRequestCryptogram = ac,
    MajorKeyDerivationMode = "EMV_OPTION_A", SessionKeyDerivationAttributes = { EmvCommon = {
      PrimaryAccountNumber = PAN, PanSequenceNumber = PSN, ApplicationTransactionCounter = ATC } },
    AuthResponseAttributes = { ArpcMethod1 = { AuthResponseCode = "3030" } } }
end
local out, err = pc:VerifyAuthRequestCryptogram(arqc_request(arqc))
assert(out, err and err.message)
show("ARQC " .. arqc, "verified; ARPC " .. out.AuthResponseValue)
refused("a forged ARQC", pc:VerifyAuthRequestCryptogram(arqc_request(("0"):rep(16))))
refused("transaction data not in whole blocks", pc:VerifyAuthRequestCryptogram(arqc_request(arqc, TX:sub(1, -9))))

step("CVV2 of the card, checked on an e-commerce authorisation")
local cvv2 = assert(pc:GenerateCardValidationData { KeyIdentifier = cvk_arn, PrimaryAccountNumber = PAN,
  GenerationAttributes = { CardVerificationValue2 = { CardExpiryDate = "2912" } } }).ValidationData
show("CVV2 (printed on the card)", cvv2)
local function cvv_check(v)
  return pc:VerifyCardValidationData { KeyIdentifier = cvk_arn, PrimaryAccountNumber = PAN, ValidationData = v,
    VerificationAttributes = { CardVerificationValue2 = { CardExpiryDate = "2912" } } }
end
assert(cvv_check(cvv2))
show("VerifyCardValidationData " .. cvv2, "verified")
refused("a mistyped CVV2", cvv_check(cvv2 == "000" and "001" or "000"))
refused("the IMK used as a CVK", pc:GenerateCardValidationData { KeyIdentifier = imk_arn, PrimaryAccountNumber = PAN,
  GenerationAttributes = { CardVerificationValue2 = { CardExpiryDate = "2912" } } })

step("A new random PIN with its Visa PVV, then verified; a wrong PIN refused")
local gen = assert(pc:GeneratePinData { GenerationKeyIdentifier = pvk_arn, EncryptionKeyIdentifier = pek_arn,
  PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0", GenerationAttributes = { VisaPin = {
    PinVerificationKeyIndex = 1 } } })
show("PIN block under the PEK (ISO 0)", gen.EncryptedPinBlock)
show("PVV (kept on the card record)", gen.PinData.VerificationValue)
local function pin_check(block)
  return pc:VerifyPinData { VerificationKeyIdentifier = pvk_arn, EncryptionKeyIdentifier = pek_arn,
    PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0", EncryptedPinBlock = block,
    VerificationAttributes = { VisaPin = { PinVerificationKeyIndex = 1, VerificationValue = gen.PinData.VerificationValue } } }
end
assert(pin_check(gen.EncryptedPinBlock))
show("VerifyPinData", "verified")
-- another PIN: one whose PVV differs (two PINs of 10,000 share a 4-digit PVV now and then)
local other = "0000"
while hsm.pin.visa_pvv(pvk, other, PAN, "1") == gen.PinData.VerificationValue do
  other = ("%04d"):format((tonumber(other) + 1111) % 10000)
end
refused("a PIN block of another PIN", pin_check(hsm.pin.encrypt(pek, "ISO_FORMAT_0", other, PAN)))

step("TranslatePinData: a DUKPT PIN block from the acquirer's terminal to the issuer's PEK")
local ksn0 = "FFFF9876543210E00000"
local ipek = assert(hsm.dukpt.initial_key(bdk, ksn0))
local terminal = assert(hsm.dukpt.terminal(ipek, ksn0))
local ksn, keys = terminal:next()
local dukpt_block = hsm.pin.encrypt(keys.PIN, "ISO_FORMAT_0", "4321", PAN)
show("terminal: KSN / PIN block", ksn .. " / " .. dukpt_block)
local tr = assert(pc:TranslatePinData { IncomingKeyIdentifier = bdk_arn, OutgoingKeyIdentifier = pek_arn,
  EncryptedPinBlock = dukpt_block, IncomingDukptAttributes = { KeySerialNumber = ksn },
  IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } },
  OutgoingTranslationAttributes = { IsoFormat3 = { PrimaryAccountNumber = PAN } } })
show("issuer: ISO 3 block under the PEK", tr.PinBlock)
refused("the PEK named as the BDK", pc:TranslatePinData { IncomingKeyIdentifier = pek_arn,
  OutgoingKeyIdentifier = pek_arn, EncryptedPinBlock = dukpt_block, IncomingDukptAttributes = { KeySerialNumber = ksn },
  IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } },
  OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } } })

step("PIN set from the cardholder's phone over ECDH (the flow of AWS's ECDH samples)")
-- the service's ECC key pair, and the issuer's CA for the phones' certificates
local ecc = assert(pc:CreateKey { Exportable = false, KeyAttributes = { KeyAlgorithm = "ECC_NIST_P256",
  KeyClass = "ASYMMETRIC_KEY_PAIR", KeyUsage = "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT",
  KeyModesOfUse = { DeriveKey = true } } }).Key.KeyArn
local service_cert = assert(pc:GetPublicKeyCertificate { KeyIdentifier = ecc }).KeyCertificate
local ca = hsm.ec.generate("P-256")
local ca_arn = assert(pc:ImportKey { KeyMaterial = { RootCertificatePublicKey = { KeyAttributes = {
  KeyAlgorithm = "ECC_NIST_P256", KeyClass = "PUBLIC_KEY", KeyModesOfUse = { Verify = true },
  KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE" }, PublicKeyCertificate = util.b64encode(
    hsm.core.pki.certificate(ca, ca, { subject = "Issuer phone CA", issuer = "Issuer phone CA", ca = true })) } } }).Key.KeyArn
show("ECC key pair / phone CA", ecc:match("key/.*") .. " / " .. ca_arn:match("key/.*"))
-- the phone: its own key pair, certified by the CA; it derives the PIN key on its side
local phone = hsm.ec.generate("P-256")
local phone_cert = util.b64encode(hsm.core.pki.certificate(ca, phone, { subject = "phone", issuer = "Issuer phone CA",
  usage = "agree" }))
local shared_info = hsm.random(32)
local phone_key = assert(hsm.ec.derive(phone, hsm.core.pki.parse(util.b64decode(service_cert)).public_key, {
  kdf = "NIST_SP800", hash = "SHA_512", algorithm = "AES_128", shared_info = shared_info }))
local phone_block = hsm.pin.encrypt(phone_key, "ISO_FORMAT_4", "2468", PAN)
show("phone: ISO 4 block under its ECDH key", phone_block)
local function from_phone(cert_b64)
  return pc:TranslatePinData { IncomingKeyIdentifier = ecc, OutgoingKeyIdentifier = pek_arn,
    EncryptedPinBlock = phone_block, IncomingWrappedKey = { WrappedKeyMaterial = { DiffieHellmanSymmetricKey = {
      CertificateAuthorityPublicKeyIdentifier = ca_arn, PublicKeyCertificate = cert_b64, KeyAlgorithm = "AES_128",
      KeyDerivationFunction = "NIST_SP800", KeyDerivationHashAlgorithm = "SHA_512", SharedInformation = shared_info } } },
    IncomingTranslationAttributes = { IsoFormat4 = { PrimaryAccountNumber = PAN } },
    OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } } }
end
local set = assert(from_phone(phone_cert))
show("issuer: ISO 0 block under the PEK", set.PinBlock .. " (PIN " .. hsm.pin.decrypt(pek, "ISO_FORMAT_0",
  set.PinBlock, PAN) .. ")")
local stranger = hsm.ec.generate("P-256")
refused("a phone certificate the CA did not sign", from_phone(util.b64encode(hsm.core.pki.certificate(stranger, phone,
  { subject = "phone", issuer = "someone", usage = "agree" }))))

step("A key whose usage is stopped is refused until it is started again")
assert(pc:StopKeyUsage { KeyIdentifier = cvk_arn })
refused("CVV2 check with the CVK stopped", cvv_check(cvv2))
assert(pc:StartKeyUsage { KeyIdentifier = cvk_arn })
assert(cvv_check(cvv2))
show("after StartKeyUsage", "verified")

terminal:close()
pc:close()
os.execute("kill " .. pid .. " 2>/dev/null; sleep 0.3")
os.execute("rm -rf " .. dir)
