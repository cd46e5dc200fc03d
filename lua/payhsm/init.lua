--- payhsm: a scriptable software payment HSM.
-- `local hsm = require "payhsm"` loads everything. The functions are listed in
-- docs/API-reference.md; the crypto runs in the C module `payhsm.core` underneath, which
-- keeps every key as opaque userdata and takes and returns upper-case hex.
local core = require "payhsm.core"

local hsm = {
  core = core,
  version = core.version,
  openssl = core.openssl,

  key = core.key,           -- import, generate, is_key
  kcv = core.kcv,           -- kcv(key [, "ANSI_X9_24" | "CMAC" | "HMAC"])
  policy = core.policy,     -- policy{clear_export = false}
  cipher = core.cipher,     -- encrypt, decrypt
  mac = core.mac,           -- generate, verify
  tr31 = core.tr31,         -- wrap, unwrap, parse
  pin = core.pin,           -- format, parse, encrypt, decrypt, translate; PVV and IBM 3624 verification
  card = core.card,         -- CVV, dCVV, CVC3 and their verify_ functions
  emv = core.emv,           -- ICC master keys, session keys, ARQC, ARPC
  as2805 = core.as2805,     -- KEK validation request and response
  zka = core.zka,           -- session keys, MAC
  envelope = core.envelope, -- MSK envelopes: seal, open
  hmac = core.hmac,         -- hmac(mac_key, message) -> hex
  hmac_verify = core.hmac_verify,
  rotation = core.rotation, -- the 3-slot session-key rotation state
  dukpt = core.dukpt,       -- initial_key, working_key, terminal (ANSI X9.24-1 / X9.24-3)
  rsa = core.rsa,           -- RSA key pairs, RFC 5649 wrapping, RSA-OAEP + AES-GCM seal/open
  tr34 = core.tr34,         -- TR-34 key transport: wrap (KDH), unwrap (KRD)
  ec = core.ec,             -- elliptic-curve key pairs (P-256/384/521), ECDH with the SP 800-56C and X9.63 KDFs
  random = core.random,     -- random(n) -> hex of n public random bytes (ids, nonces)
  equal = core.equal,       -- equal(a, b): constant-time string comparison
}

return hsm
