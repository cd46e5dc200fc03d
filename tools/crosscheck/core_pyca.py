#!/usr/bin/env python3
"""Cross-check payhsm's ciphers, MACs and KCVs against pyca/cryptography (an
independent implementation on the same OpenSSL, with its own CMAC/CBC-MAC logic
written here from the standards). Random keys and data; prints the agreement count.

Usage: python3 tools/crosscheck/core_pyca.py [cases]   (from the repo root, after make)
Needs Debian's python3-cryptography."""
import json, os, subprocess, sys, warnings
warnings.filterwarnings("ignore")
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives import hmac, hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

N = int(sys.argv[1]) if len(sys.argv) > 1 else 500
rnd = os.urandom

def tdes(k):  # 8/16/24-byte DES-family key as a 24-byte TripleDES key
    return algorithms.TripleDES(k * 3 if len(k) == 8 else (k + k[:8] if len(k) == 16 else k))

def ecb(alg, data):
    e = Cipher(alg, modes.ECB()).encryptor(); return e.update(data) + e.finalize()

def cbc(alg, iv, data):
    e = Cipher(alg, modes.CBC(iv)).encryptor(); return e.update(data) + e.finalize()

def pad(d, bs, method):
    if method == 2: d = d + b"\x80"
    if len(d) == 0 or len(d) % bs: d = d + bytes(bs - len(d) % bs if len(d) else bs)
    return d

cases = []
for i in range(N):
    kind = ["DES", "TDES_2KEY", "TDES_3KEY", "AES_128", "AES_192", "AES_256"][i % 6]
    klen = {"DES": 8, "TDES_2KEY": 16, "TDES_3KEY": 24, "AES_128": 16, "AES_192": 24, "AES_256": 32}[kind]
    key = rnd(klen); bs = 16 if kind.startswith("AES") else 8
    alg = algorithms.AES(key) if bs == 16 else tdes(key)
    data = rnd((i * 7) % 70); blocks = rnd(bs * (1 + i % 5)); iv = rnd(bs); method = 1 + i % 2
    exp = {
        "kcv": ecb(alg, bytes(bs))[:3].hex().upper(),
        "ecb": ecb(alg, blocks).hex().upper(),
        "cbc": cbc(alg, iv, blocks).hex().upper(),
        "alg1": cbc(alg, bytes(bs), pad(data, bs, method))[-bs:].hex().upper(),
    }
    if kind != "DES":
        c = CMAC(alg); c.update(data); exp["cmac"] = c.finalize().hex().upper()
    if kind == "TDES_2KEY":
        p = pad(data, 8, method)
        x = cbc(tdes(key[:8]), bytes(8), p)[-8:]
        x = Cipher(tdes(key[8:16]), modes.ECB()).decryptor().update(x)
        exp["alg3"] = ecb(tdes(key[:8]), x).hex().upper()
    cases.append({"alg": kind, "key": key.hex(), "data": data.hex(), "blocks": blocks.hex(),
                  "iv": iv.hex(), "padding": method, "exp": exp})
for i in range(N // 5):
    kind, md = [("HMAC_SHA256", hashes.SHA256()), ("HMAC_SHA384", hashes.SHA384()),
                ("HMAC_SHA512", hashes.SHA512())][i % 3]
    key = rnd(1 + i % 150); data = rnd(i % 200)
    h = hmac.HMAC(key, md); h.update(data)
    cases.append({"alg": kind, "key": key.hex(), "data": data.hex(), "exp": {"hmac": h.finalize().hex().upper()}})

lua = r'''
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm, cjson = require "payhsm", require "cjson"
local agree, total, bad = 0, 0, {}
for line in io.lines() do
  local c = cjson.decode(line)
  local k = hsm.key.import(c.alg, c.key)
  local got = {}
  if c.exp.hmac then got.hmac = hsm.mac.generate(k, "HMAC", c.data)
  else
    got.kcv = k:kcv()
    got.ecb = hsm.cipher.encrypt(k, "ECB", c.blocks)
    got.cbc = hsm.cipher.encrypt(k, "CBC", c.blocks, c.iv)
    got.alg1 = hsm.mac.generate(k, "ISO9797_ALGORITHM1", c.data, {padding = c.padding})
    if c.exp.cmac then got.cmac = hsm.mac.generate(k, "CMAC", c.data) end
    if c.exp.alg3 then got.alg3 = hsm.mac.generate(k, "ISO9797_ALGORITHM3", c.data, {padding = c.padding}) end
  end
  for name, want in pairs(c.exp) do
    total = total + 1
    if got[name] == want then agree = agree + 1 else bad[#bad + 1] = c.alg .. " " .. name end
  end
end
print(("%d of %d comparisons agree"):format(agree, total))
for i = 1, math.min(#bad, 10) do print("DISAGREE " .. bad[i]) end
os.exit(agree == total and 0 or 1)
'''
inp = "\n".join(json.dumps(c) for c in cases) + "\n"
r = subprocess.run(["lua5.4", "-e", lua], input=inp, text=True, capture_output=True)
print(r.stdout + r.stderr, end="")
sys.exit(r.returncode)
