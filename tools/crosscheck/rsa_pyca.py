#!/usr/bin/env python3
"""Cross-check payhsm's RSA hybrid encryption (core.rsa.seal/open) and RSA key
wrapping against pyca/cryptography, an independent implementation:
  1. payhsm generates a key pair and seals N random plaintexts (random AAD); it
     hands pyca the private key only through an RFC 5649 wrap under a known KEK,
     which pyca unwraps (aes_key_unwrap_with_padding), loads as PKCS#8, and uses to
     decrypt every sealed message (RSA-OAEP SHA-256/MGF1-SHA-256, then AES-256-GCM).
  2. pyca seals N random plaintexts to payhsm's public key (from its DER SPKI) and
     payhsm opens them.
  3. pyca generates a key, wraps its PKCS#8 DER with KWP; payhsm unwraps it and
     opens data pyca sealed to it.
Prints the agreement counts and exits non-zero on any disagreement.

Usage: python3 tools/crosscheck/rsa_pyca.py [cases]   (from the repo root, after make core)"""
import json, os, subprocess, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding, aes_key_wrap_with_padding

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
KEK = os.urandom(32)

def pyca_seal(pub, pt, aad):
    k, iv = os.urandom(32), os.urandom(12)
    out = AESGCM(k).encrypt(iv, pt, aad or None)
    return {"encrypted_key": pub.encrypt(k, OAEP).hex(), "iv": iv.hex(),
            "ciphertext": out[:-16].hex(), "tag": out[-16:].hex()}

def pyca_open(priv, t, aad):
    k = priv.decrypt(bytes.fromhex(t["encrypted_key"]), OAEP)
    return AESGCM(k).decrypt(bytes.fromhex(t["iv"]),
                             bytes.fromhex(t["ciphertext"]) + bytes.fromhex(t["tag"]), aad or None)

def lua(script, data):
    r = subprocess.run(["lua5.4", "-e", 'package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path\n'
                        'package.cpath = "./build/?.so;" .. package.cpath\n' + script],
                       input=json.dumps(data), text=True, capture_output=True)
    if r.returncode != 0:
        sys.exit("lua failed: " + r.stderr)
    return json.loads(r.stdout)

# 1. payhsm seals, pyca opens
msgs = [{"pt": os.urandom(i % 97).hex(), "aad": os.urandom(i % 5).hex()} for i in range(N)]
out = lua(r'''
local core, cjson = require "payhsm.core", require "cjson"
local inp = cjson.decode(io.read("*a"))
local kek = core.key.import("AES_256", inp.kek, {usage = "K0"})
local priv = core.rsa.generate(2048)
local res = {wrapped = priv:wrap(kek), spki = priv:public_der(), sealed = {}}
local function bin(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end
for i, m in ipairs(inp.msgs) do res.sealed[i] = core.rsa.seal(priv, bin(m.pt), bin(m.aad)) end
print(cjson.encode(res))
''', {"kek": KEK.hex(), "msgs": msgs})
der = aes_key_unwrap_with_padding(KEK, bytes.fromhex(out["wrapped"]))
priv = serialization.load_der_private_key(der, password=None)
assert priv.public_key().public_bytes(serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo).hex().upper() == out["spki"], "SPKI differs"
ok1 = sum(pyca_open(priv, t, bytes.fromhex(m["aad"])).hex() == m["pt"] for t, m in zip(out["sealed"], msgs))

# 2. pyca seals to payhsm's public key, payhsm opens
pub = serialization.load_der_public_key(bytes.fromhex(out["spki"]))
sealed = [pyca_seal(pub, bytes.fromhex(m["pt"]), bytes.fromhex(m["aad"])) for m in msgs]
# 3. pyca's own key, KWP-wrapped, unwrapped by payhsm
own = rsa.generate_private_key(public_exponent=65537, key_size=3072)
own_der = own.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
own_sealed = [pyca_seal(own.public_key(), bytes.fromhex(m["pt"]), bytes.fromhex(m["aad"])) for m in msgs]
res = lua(r'''
local core, cjson = require "payhsm.core", require "cjson"
local inp = cjson.decode(io.read("*a"))
local kek = core.key.import("AES_256", inp.kek, {usage = "K0"})
local priv = assert(core.rsa.unwrap(kek, inp.wrapped))
local own = assert(core.rsa.unwrap(kek, inp.own_wrapped))
local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local function bin(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end
local a, b = {}, {}
for i, t in ipairs(inp.sealed) do a[i] = hex(assert(core.rsa.open(priv, t, bin(inp.msgs[i].aad)))) end
for i, t in ipairs(inp.own_sealed) do b[i] = hex(assert(core.rsa.open(own, t, bin(inp.msgs[i].aad)))) end
print(cjson.encode({a = a, b = b, bits = own:bits()}))
''', {"kek": KEK.hex(), "wrapped": out["wrapped"], "sealed": sealed, "msgs": msgs,
      "own_wrapped": aes_key_wrap_with_padding(KEK, own_der).hex(), "own_sealed": own_sealed})
ok2 = sum(x == m["pt"] for x, m in zip(res["a"], msgs))
ok3 = sum(x == m["pt"] for x, m in zip(res["b"], msgs)) if res["bits"] == 3072 else 0
print(f"rsa_pyca: payhsm seal -> pyca open {ok1}/{N}; pyca seal -> payhsm open {ok2}/{N}; "
      f"pyca RSA-3072 key via KWP -> payhsm open {ok3}/{N}")
sys.exit(0 if ok1 == ok2 == ok3 == N else 1)
