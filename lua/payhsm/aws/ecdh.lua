--- ECDH key agreement as AWS Payment Cryptography does it (user guide, "ECDH"; API
-- reference: EcdhDerivationAttributes, ImportDiffieHellmanTr31KeyBlock,
-- ExportDiffieHellmanTr31KeyBlock, TranslateKeyMaterial): the service's ECC key pair
-- (TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT, mode DeriveKey) and the other party's public key,
-- from a certificate signed by a certificate authority imported as a root public key, agree
-- on a shared secret (NIST SP 800-56A rev 3), and a KDF (NIST_SP800: SP 800-56C rev 2
-- one-step; ANSI_X963: X9.63) over it and the shared information gives a symmetric key of
-- the algorithm asked. The derived key is used at once (a working key or a key-block
-- protection key) and never stored.
local core = require "payhsm.core"
local errors = require "payhsm.aws.errors"
local rules = require "payhsm.aws.rules"
local util = require "payhsm.util"

local M = {}

local raise = errors.raise

M.CURVES = { ECC_NIST_P256 = "P-256", ECC_NIST_P384 = "P-384", ECC_NIST_P521 = "P-521" }

-- Unwrapped ECC private keys and parsed CA public keys, by their stored form (a request must
-- not pay a PKCS#8 unwrap and a certificate parse it can skip); at most CACHE_MAX of them,
-- the table emptied when full, as data.lua does for symmetric keys.
local CACHE_MAX = 256
local function cached(svc, stored, make)
  local cache = svc.ec_cache
  if not cache then cache = { n = 0 } svc.ec_cache = cache end
  local v = cache[stored]
  if not v then
    if cache.n >= CACHE_MAX then cache = { n = 0 } svc.ec_cache = cache end
    v = make()
    cache[stored] = v
    cache.n = cache.n + 1
  end
  return v
end

--- The usable record `ident` names, checked with control's rules (state, enabled).
local function usable(svc, ident, what)
  local rec = svc.keys:resolve(ident)
  require("payhsm.aws.control").usable(svc, rec, what)
  return rec
end

--- The other party's public key: PublicKeyCertificate (base64 PEM) signed by the root
-- certificate the CA identifier names, valid now, on the curve of the service's key.
local function peer_key(svc, ca_ident, cert_b64, curve)
  local ca = usable(svc, ca_ident, "Certificate authority")
  if not ca.cert or not ca.root then
    raise("ValidationException", "CertificateAuthorityPublicKeyIdentifier must name an imported root certificate")
  end
  local pem = util.b64decode(cert_b64)
  if not pem or not pem:find("-----BEGIN CERTIFICATE-----", 1, true) then
    raise("ValidationException", "PublicKeyCertificate must be a base64-encoded PEM X.509 certificate")
  end
  local cert, msg = core.pki.parse(pem)
  if not cert then raise("ValidationException", "PublicKeyCertificate: " .. tostring(msg):gsub("^[%w%._]+: ", "")) end
  local ca_pub = cached(svc, ca.cert, function() return core.pki.parse(ca.cert).public_key end)
  if not core.pki.verify(pem, ca_pub) then
    raise("ValidationException", "PublicKeyCertificate is not signed by the certificate authority")
  end
  local now = svc.clock()
  if now < cert.not_before or now > cert.not_after then
    raise("ValidationException", "PublicKeyCertificate is not valid now")
  end
  local pub = cert.public_key
  if not pub.curve or pub:curve() ~= curve then
    raise("ValidationException", ("PublicKeyCertificate must hold an ECC key on %s, the curve of the private key"):format(
      curve))
  end
  return pub
end

--- Derives the key of an ECDH agreement. private_ident names the service's ECC key pair;
-- d = {CertificateAuthorityPublicKeyIdentifier, PublicKeyCertificate, KeyDerivationFunction,
-- KeyDerivationHashAlgorithm, SharedInformation}; algorithm is the derived key's; usages the
-- AWS KeyUsages it may serve (the key pair's DeriveKeyUsage, when it has one, must be one of
-- them; else the first is taken) and mode the TR-31 mode of use it gets. Returns the payhsm
-- key (usage and mode set, not exportable) and the key pair's record.
function M.derive(svc, private_ident, d, algorithm, usages, mode)
  local rec = usable(svc, private_ident, "Key")
  local attrs = rec.attrs
  if attrs.KeyUsage ~= "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT" or not rec.private then
    raise("ValidationException", ("Key %s is not an ECC key pair for key agreement "
      .. "(TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT)"):format(svc.keys:arn(rec.id)))
  end
  local modes = attrs.KeyModesOfUse or {}
  if not modes.DeriveKey and not modes.NoRestrictions then
    raise("ValidationException", "KeyModesOfUse of the ECC key pair do not include DeriveKey")
  end
  local usage = usages[1]
  if rec.derive_usage then
    usage = nil
    for _, u in ipairs(usages) do if u == rec.derive_usage then usage = u end end
    if not usage then
      raise("ValidationException", ("The ECC key pair derives %s keys (its DeriveKeyUsage); this needs %s"):format(
        rec.derive_usage, table.concat(usages, " or ")))
    end
  end
  local curve = M.CURVES[attrs.KeyAlgorithm]
  local pub = peer_key(svc, d.CertificateAuthorityPublicKeyIdentifier, d.PublicKeyCertificate, curve)
  local priv = cached(svc, rec.private, function() return svc.keys:unwrap_private(rec) end)
  local key, msg = core.ec.derive(priv, pub, { kdf = d.KeyDerivationFunction, hash = d.KeyDerivationHashAlgorithm,
    shared_info = d.SharedInformation, algorithm = algorithm,
    attrs = { usage = rules.usage_code(usage), mode = mode, exportability = "N" } })
  if not key then raise("ValidationException", (tostring(msg):gsub("^[%w%._]+: ", ""))) end
  return key, rec
end

return M
