#!/usr/bin/env python3
"""Cross-check payhsm's ECDH key agreement (core.ec.derive) against pyca/cryptography: random key
pairs on P-256, P-384 and P-521 made here, the ECDH shared secret (NIST SP 800-56A rev 3 5.7.1.2)
from pyca's exchange(), then
  NIST_SP800: pyca's ConcatKDFHash (NIST SP 800-56C rev 2 one-step KDF with a hash; the KDF AWS
              Payment Cryptography's ECDH samples use for the NIST_SP800 choice), and
  ANSI_X963:  pyca's X963KDF (ANSI X9.63 section 5.6.3),
with SHA-256/384/512 and random shared information, into every key algorithm payhsm derives (TDES
keys with odd parity set). payhsm holds one side's private key (PKCS#8 made here, brought in with
core.rsa.kwp_wrap + core.ec.unwrap) and the other side's public key (core.ec.public); the derived
key's bytes must equal pyca's.

From the repo root after `make`: python3 tools/crosscheck/ecdh_pyca.py [cases]"""
import json, random, subprocess, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
rng = random.Random(5656)
CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
HASHES = {"SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512}
ALGS = {"TDES_2KEY": 16, "TDES_3KEY": 24, "AES_128": 16, "AES_192": 24, "AES_256": 32,
        "HMAC_SHA256": 32, "HMAC_SHA384": 48, "HMAC_SHA512": 64}

def parity(b):
    return bytes((x & 0xFE) | (bin(x >> 1).count("1") % 2 == 0) for x in b)

cases = []
for i in range(N):
    curve = rng.choice(list(CURVES))
    a, b = ec.generate_private_key(CURVES[curve]()), ec.generate_private_key(CURVES[curve]())
    kdf, h, alg = rng.choice(["NIST_SP800", "ANSI_X963"]), rng.choice(list(HASHES)), rng.choice(list(ALGS))
    info = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 65)))  # empty too
    z = a.exchange(ec.ECDH(), b.public_key())
    n = ALGS[alg]
    if kdf == "NIST_SP800":
        k = ConcatKDFHash(algorithm=HASHES[h](), length=n, otherinfo=info).derive(z)
    else:
        k = X963KDF(algorithm=HASHES[h](), length=n, sharedinfo=info).derive(z)
    if alg.startswith("TDES"):
        k = parity(k)
    cases.append({"curve": curve, "kdf": kdf, "hash": h, "alg": alg, "info": info.hex(), "key": k.hex().upper(),
                  "a": a.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).hex(),
                  "b": b.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).hex()})

lua = r'''
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm, cjson = require "payhsm", require "cjson"
local core = hsm.core
local kek = hsm.key.import("AES_256", ("5A"):rep(32))
for line in io.lines() do
  local c = cjson.decode(line)
  local a = assert(core.ec.unwrap(kek, assert(core.rsa.kwp_wrap(kek, c.a))))
  local b = assert(core.ec.public(c.b))
  local k = assert(core.ec.derive(a, b, { kdf = c.kdf, hash = c.hash, shared_info = c.info ~= "" and c.info or nil,
    algorithm = c.alg }))
  print(cjson.encode({ key = k:export(), curve = a:curve() }))
end
'''
r = subprocess.run(["lua5.4", "-e", lua], input="\n".join(json.dumps(c) for c in cases) + "\n",
                   text=True, capture_output=True)
if r.returncode:
    print(r.stderr)
    sys.exit(1)
bad = 0
for c, line in zip(cases, r.stdout.splitlines()):
    o = json.loads(line)
    if o["key"] != c["key"] or o["curve"] != c["curve"]:
        bad += 1
        print("MISMATCH", c["curve"], c["kdf"], c["hash"], c["alg"], o)
print("ECDH + KDF (P-256/384/521, NIST_SP800/ANSI_X963, SHA-256/384/512): %d/%d agree with pyca" % (N - bad, N))
sys.exit(1 if bad else 0)
