#!/usr/bin/env python3
"""Cross-check payhsm's AS2805 KEK validation against the computation in AWS's interop sample
(aws-samples/samples-for-payment-cryptography-service, python_sdk_example/
as2805_node-to-node_examples/as2805_1_5_KEK_Validation.py, written to match the live
GenerateAs2805KekValidation output for VARIANT_MASK_82), redone here with pyca/cryptography:
KRs = TDES-CBC (zero IV) of KR under KEK xor the request variant, KRr = TDES-CBC (zero IV) of
NOT(KR) with odd parity set, under KEK xor the response variant. Request/response variants:
82/84 on every byte (VARIANT_MASK_82), 82C0/84C0 repeated (VARIANT_MASK_82C0).

Both directions, random TDES_2KEY/TDES_3KEY KEKs and 8/16/24-byte random keys:
  1. this script makes KRs/KRr; payhsm's kek_validation_response must return KRr and
     kek_validation_verify must accept the pair;
  2. payhsm's kek_validation_request makes KRs/KRr; this script must compute the same KRr.
  3. The per-transaction PIN key of as2805_3_1_pin_translation.py (AS2805.6.6.3): D = the STAN
     followed by ten zeros || the amount right-justified in 16 zero digits; KPE = TDES-CBC(KPP,
     D, IV = CBC-MAC(KPP, D)) xor D. Random KPPs, STANs and amounts: payhsm's
     hsm.as2805.derive_pek must give the KPE (compared by its ANSI X9.24 check value).

From the repo root after `make`: python3 tools/crosscheck/as2805_aws.py [cases]"""
import json, random, subprocess, sys, warnings
warnings.filterwarnings("ignore")
from cryptography.hazmat.primitives.ciphers import Cipher, modes  # noqa: E402
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
rng = random.Random(2805)
rb = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
MASKS = {"VARIANT_MASK_82": (b"\x82", b"\x84"), "VARIANT_MASK_82C0": (b"\x82\xc0", b"\x84\xc0")}

def cbc(key, data, enc):
    c = Cipher(TripleDES(key + key[:8] if len(key) == 16 else key), modes.CBC(bytes(8)))
    x = c.encryptor() if enc else c.decryptor()
    return x.update(data) + x.finalize()

def variant(kek, m):
    return bytes(a ^ m[i % len(m)] for i, a in enumerate(kek))

def inv(kr):
    out = bytearray()
    for b in kr:
        b = ~b & 0xFF
        if bin(b).count("1") % 2 == 0:
            b ^= 1
        out.append(b)
    return bytes(out)

cases = []
for i in range(N):
    kek = rb(rng.choice([16, 24]))
    mask = rng.choice(sorted(MASKS))
    req, resp = MASKS[mask]
    kr = rb(rng.choice([8, 16, 24]))
    krs = cbc(variant(kek, req), kr, True)
    krr = cbc(variant(kek, resp), inv(kr), True)
    cases.append({"kek": kek.hex().upper(), "alg": "TDES_2KEY" if len(kek) == 16 else "TDES_3KEY",
                  "mask": mask, "krs": krs.hex().upper(), "krr": krr.hex().upper(),
                  "len": "BYTES_%d" % len(kr)})

def owf(kpp, d):
    mac = cbc(kpp, d, True)[-8:]
    c = Cipher(TripleDES(kpp + kpp[:8] if len(kpp) == 16 else kpp), modes.CBC(mac)).encryptor()
    e = c.update(d) + c.finalize()
    return bytes(a ^ b for a, b in zip(e, d))

pek_cases = []
for i in range(N):
    kpp = rb(rng.choice([16, 24]))
    stan, amount = "%06d" % rng.randrange(10 ** 6), "%012d" % rng.randrange(10 ** 12)
    d = bytes.fromhex(stan.ljust(16, "0") + amount.rjust(16, "0"))
    kpe = owf(kpp, d)
    c = Cipher(TripleDES(kpe + kpe[:8]), modes.ECB()).encryptor()
    pek_cases.append({"kpp": kpp.hex().upper(), "alg": "TDES_2KEY" if len(kpp) == 16 else "TDES_3KEY",
                      "stan": stan, "amount": amount, "kcv": (c.update(bytes(8)) + c.finalize())[:3].hex().upper()})

lua = r'''
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm, cjson = require "payhsm", require "cjson"
for line in io.lines() do
  local c = cjson.decode(line)
  local k = hsm.key.import(c.alg, c.kek)
  local o = { variant_mask = c.mask }
  local r = hsm.as2805.kek_validation_request(k, { variant_mask = c.mask, derive_algorithm = c.alg,
    random_key_max_length = c.len })
  print(cjson.encode({ krr = hsm.as2805.kek_validation_response(k, c.krs, o) or "ERR",
    verify = hsm.as2805.kek_validation_verify(k, c.krs, c.krr, o) == true,
    req_krs = r.random_key_send, req_krr = r.random_key_receive }))
end
'''
lua_pek = r'''
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm, cjson = require "payhsm", require "cjson"
for line in io.lines() do
  local c = cjson.decode(line)
  local kpe = assert(hsm.as2805.derive_pek(hsm.key.import(c.alg, c.kpp), c.stan, c.amount))
  print(cjson.encode({ kcv = hsm.kcv(kpe) }))
end
'''
r = subprocess.run(["lua5.4", "-e", lua], input="\n".join(json.dumps(c) for c in cases) + "\n",
                   text=True, capture_output=True)
if r.returncode:
    print(r.stderr)
    sys.exit(1)
agree = total = 0
bad = []
for c, line in zip(cases, r.stdout.splitlines()):
    o = json.loads(line)
    kek = bytes.fromhex(c["kek"])
    req, resp = MASKS[c["mask"]]
    kr = cbc(variant(kek, req), bytes.fromhex(o["req_krs"]), False)
    mine = cbc(variant(kek, resp), inv(kr), True).hex().upper()
    for name, ok in [("sample->payhsm response", o["krr"] == c["krr"]),
                     ("sample->payhsm verify", o["verify"]),
                     ("payhsm request->sample", mine == o["req_krr"])]:
        total += 1
        agree += ok
        if not ok:
            bad.append((name, c["mask"], c["alg"], c["len"]))
r = subprocess.run(["lua5.4", "-e", lua_pek], input="\n".join(json.dumps(c) for c in pek_cases) + "\n",
                   text=True, capture_output=True)
if r.returncode:
    print(r.stderr)
    sys.exit(1)
for c, line in zip(pek_cases, r.stdout.splitlines()):
    total += 1
    ok = json.loads(line)["kcv"] == c["kcv"]
    agree += ok
    if not ok:
        bad.append(("sample KPE->payhsm derive_pek", c["alg"], c["stan"], c["amount"]))
print(f"{agree} of {total} comparisons agree ({N} KEK validation cases, VARIANT_MASK_82 and VARIANT_MASK_82C0; "
      f"{N} AS2805.6.6.3 KPE cases)")
for b in bad[:10]:
    print("DISAGREE", b)
sys.exit(0 if agree == total else 1)
