-- AWS Payment Cryptography on this machine: `bin/payhsm serve aws` started as its own
-- process, and payhsm.aws (the Lua client, signing with SigV4 as for AWS itself) managing
-- keys through the control plane: create keys, import an issuer's keys by key cryptogram
-- (RSA-OAEP under the service's wrapping certificate) and by TR-31 under that KEK, alias
-- and tag them, export one under the KEK, see AWS's errors, and restart the service.
local hsm = require "payhsm"
local aws = require "payhsm.aws"
local util = require "payhsm.util"

local function step(title) print(("-- %s"):format(title)) end
local function show(label, value) print(("   %-38s %s"):format(label, tostring(value))) end
local function refused(label, out, err)
  assert(out == nil, label .. " should have been refused")
  print(("   %-38s %s: %s"):format(label, err.type, err.message))
end

-- ---- the service, its own process -------------------------------------------------------
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local ACCESS_KEY, SECRET = "AKIDSCENARIO", "scenario-secret-access-key"
local config = dir .. "/aws.cfg.lua"
local f = assert(io.open(config, "w"))
f:write(([[return {listen = "127.0.0.1:0", region = "eu-central-1", account = "111122223333",
  credentials = {%s = %q}, store = {backend = "sqlite", path = %q}, storage_key_file = %q}
]]):format(ACCESS_KEY, SECRET, dir .. "/aws.db", dir .. "/aws.lmk"))
f:close()

local pid
local function start()
  local log = dir .. "/serve.log"
  os.remove(log)
  os.execute(("bin/payhsm serve aws --config %s >/dev/null 2>%s & echo $! > %s/pid"):format(config, log, dir))
  pid = io.open(dir .. "/pid"):read("*l")
  for _ = 1, 250 do
    local l = io.open(log)
    local port = l and l:read("*a"):match("listening on http://[%d.]+:(%d+)")
    if l then l:close() end
    if port then return tonumber(port) end
    os.execute("sleep 0.02")
  end
  error("bin/payhsm serve aws did not start")
end
local function stop() os.execute("kill " .. pid .. " 2>/dev/null; sleep 0.3") end

step("Start bin/payhsm serve aws: sqlite store, local master key made in a key file on the first start")
local port = start()
local pc = aws.new { endpoint = "http://127.0.0.1:" .. port, region = "eu-central-1", access_key = ACCESS_KEY,
  secret_key = SECRET }
show("endpoint", "http://127.0.0.1:" .. port)

local CIPHER = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true }
local function symmetric(usage, alg, modes)
  return { KeyUsage = usage, KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = alg, KeyModesOfUse = modes }
end

step("CreateKey: a card verification key, a PIN encryption key and an RSA signing key pair")
local cvk = assert(pc:CreateKey { Exportable = true,
  KeyAttributes = symmetric("TR31_C0_CARD_VERIFICATION_KEY", "TDES_2KEY", { Generate = true, Verify = true }) }).Key
show("CVK  " .. cvk.KeyArn:match("key/.*"), cvk.KeyCheckValue .. " (" .. cvk.KeyCheckValueAlgorithm .. ")")
local pek = assert(pc:CreateKey { Exportable = false,
  KeyAttributes = symmetric("TR31_P0_PIN_ENCRYPTION_KEY", "AES_128", CIPHER) }).Key
show("PEK  " .. pek.KeyArn:match("key/.*"), pek.KeyCheckValue .. " (" .. pek.KeyCheckValueAlgorithm .. ")")
local signer = assert(pc:CreateKey { Exportable = false, KeyAttributes = {
  KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE", KeyClass = "ASYMMETRIC_KEY_PAIR",
  KeyAlgorithm = "RSA_2048", KeyModesOfUse = { Sign = true, Verify = true } } }).Key
local cert = assert(pc:GetPublicKeyCertificate { KeyIdentifier = signer.KeyArn })
local parsed = hsm.core.pki.parse(util.b64decode(cert.KeyCertificate))
show("signing key certificate", parsed.subject .. ", issued by " .. parsed.issuer)

step("The issuer's key-encryption key arrives as a key cryptogram (RSA-OAEP SHA-256)")
-- the issuer's own keys (test values, ours: the service never shows them)
local ISSUER_KEK = "89E88CF7931444F334BD7547FC3F380C7C92F0E8E01BA2B4B0A4E98A5E1A1D25"
local ISSUER_BDK = "0123456789ABCDEFFEDCBA9876543210"
local issuer_kek = hsm.key.import("AES_256", ISSUER_KEK, { usage = "K0", mode = "B", exportability = "E" })
local params = assert(pc:GetParametersForImport { KeyMaterialType = "KEY_CRYPTOGRAM", WrappingKeyAlgorithm = "RSA_2048" })
show("import token", params.ImportToken .. ", valid until " .. util.format_time(params.ParametersValidUntilTimestamp))
local wrapping = hsm.core.pki.parse(util.b64decode(params.WrappingKeyCertificate)).public_key
local kek = assert(pc:ImportKey { KeyMaterial = { KeyCryptogram = {
  KeyAttributes = symmetric("TR31_K0_KEY_ENCRYPTION_KEY", "AES_256", CIPHER), Exportable = true,
  WrappedKeyCryptogram = hsm.core.pki.oaep_wrap(wrapping, issuer_kek, "SHA_256"), ImportToken = params.ImportToken } } }).Key
show("KEK imported, KCV", kek.KeyCheckValue .. " (issuer's: " .. issuer_kek:kcv("CMAC") .. ")")

step("The issuer's base derivation key arrives as a TR-31 block under that KEK")
local bdk = hsm.key.import("TDES_2KEY", ISSUER_BDK, { usage = "B0", mode = "X", exportability = "E" })
local imported = assert(pc:ImportKey { KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = kek.KeyArn,
  WrappedKeyBlock = assert(hsm.tr31.wrap(issuer_kek, bdk, { version = "D" })) } } }).Key
show("BDK imported, KCV", imported.KeyCheckValue .. " (issuer's: " .. bdk:kcv("ANSI_X9_24") .. ")")
show("its usage and origin", imported.KeyAttributes.KeyUsage .. ", " .. imported.KeyOrigin)

step("Aliases and tags")
assert(pc:CreateAlias { AliasName = "alias/issuer-kek", KeyArn = kek.KeyArn })
assert(pc:CreateAlias { AliasName = "alias/issuer-bdk", KeyArn = imported.KeyArn })
assert(pc:TagResource { ResourceArn = imported.KeyArn, Tags = { { Key = "issuer", Value = "Bank A" },
  { Key = "scheme", Value = "DUKPT" } } })
for _, a in ipairs(assert(pc:ListAliases {}).Aliases) do show(a.AliasName, a.KeyArn:match("key/.*")) end
for _, t in ipairs(assert(pc:ListTagsForResource { ResourceArn = imported.KeyArn }).Tags) do
  show("tag " .. t.Key, t.Value)
end

step("ExportKey: the CVK to the issuer as a TR-31 block under its KEK (by alias)")
local wrapped = assert(pc:ExportKey { ExportKeyIdentifier = cvk.KeyArn,
  KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = "alias/issuer-kek" } } }).WrappedKey
show("TR-31 header", wrapped.KeyMaterial:sub(1, 16))
local back = assert(hsm.tr31.unwrap(issuer_kek, wrapped.KeyMaterial))
show("issuer unwraps it, KCV", back:kcv("ANSI_X9_24") .. " (service's: " .. wrapped.KeyCheckValue .. ")")

step("What AWS refuses, refused the same way")
refused("MAC key usage with an AES key", pc:CreateKey { Exportable = true,
  KeyAttributes = symmetric("TR31_M1_ISO_9797_1_MAC_KEY", "AES_128", { Generate = true }) })
refused("an alias name without alias/", pc:CreateAlias { AliasName = "issuer-kek" })
refused("an alias that exists", pc:CreateAlias { AliasName = "alias/issuer-kek" })
refused("a key nobody has", pc:GetKey { KeyIdentifier = "alias/nobody" })
refused("a non-exportable key", pc:ExportKey { ExportKeyIdentifier = pek.KeyArn,
  KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = "alias/issuer-kek" } } })
local tampered = wrapped.KeyMaterial:sub(1, -2) .. (wrapped.KeyMaterial:sub(-1) == "0" and "1" or "0")
refused("a TR-31 block with a flipped bit", pc:ImportKey { KeyMaterial = { Tr31KeyBlock = {
  WrappingKeyIdentifier = "alias/issuer-kek", WrappedKeyBlock = tampered } } })
assert(pc:StopKeyUsage { KeyIdentifier = "alias/issuer-kek" })
refused("a stopped KEK", pc:ExportKey { ExportKeyIdentifier = cvk.KeyArn,
  KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = "alias/issuer-kek" } } })
local intruder = aws.new { endpoint = "http://127.0.0.1:" .. port, region = "eu-central-1",
  access_key = ACCESS_KEY, secret_key = "not-the-secret" }
refused("a request signed with another secret", intruder:ListKeys {})
intruder:close()

step("DeleteKey (7 days pending), then a restart: the store keeps keys, aliases, tags and states")
local deleted = assert(pc:DeleteKey { KeyIdentifier = pek.KeyArn }).Key
show("PEK", deleted.KeyState .. " until " .. util.format_time(deleted.DeleteTimestamp))
pc:close()
stop()
port = start()
pc = aws.new { endpoint = "http://127.0.0.1:" .. port, region = "eu-central-1", access_key = ACCESS_KEY,
  secret_key = SECRET }
local again = assert(pc:GetKey { KeyIdentifier = "alias/issuer-bdk" }).Key
show("alias/issuer-bdk after restart, KCV", again.KeyCheckValue)
show("alias/issuer-kek enabled?", tostring(assert(pc:GetKey { KeyIdentifier = "alias/issuer-kek" }).Key.Enabled))
show("PEK state", assert(pc:GetKey { KeyIdentifier = pek.KeyArn }).Key.KeyState)
pc:close()
stop()
os.execute("rm -rf " .. dir)
