#!/usr/bin/env python3
"""Cross-check payhsm's ISO 9564-1 PIN blocks against psec (independent implementation,
https://github.com/knovichikhin/psec) and pyca/cryptography, both directions:

  formats 0, 2, 3: psec encodes the clear block, pyca TDES-ECB enciphers it, payhsm
     decrypts; payhsm encrypts, pyca deciphers, psec decodes.
  format 4: psec enciphers under AES (128/192/256), payhsm decrypts; payhsm encrypts
     and translates from format 0, psec deciphers.

PANs run from 1 to 19 digits. Under 12 digits ISO 9564-1:2017 pads with zeros on the left:
format 4 (9.4.2) sets M = 0 and left pads the PAN to 12 digits, as psec does itself; formats 0
and 3 take the rightmost digits without the check digit, zero padded, which is what psec computes
for the same PAN left padded with zeros to 13 digits (psec wants 13 or more for formats 0 and 3).

psec is never committed: PSEC_PATH=/tmp/psec python3 tools/crosscheck/pin_psec.py [cases]"""
import json, os, random, subprocess, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, os.environ.get("PSEC_PATH", "/tmp/psec"))
from psec import pinblock  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
rng = random.Random(9564)
digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))

def tdes(key, data, enc):
    k = key + key[:8] if len(key) == 16 else key
    c = Cipher(algorithms.TripleDES(k), modes.ECB())
    x = c.encryptor() if enc else c.decryptor()
    return x.update(data) + x.finalize()

cases = []
for i in range(N):
    fmt = [0, 2, 3, 4][i % 4]
    pin, pan = digits(rng.randint(4, 12)), digits(rng.choice([rng.randint(1, 12), rng.randint(13, 19)]))
    pan13 = pan.rjust(13, "0")  # what psec takes for formats 0 and 3
    if fmt == 4:
        key = bytes(rng.getrandbits(8) for _ in range(rng.choice([16, 24, 32])))
        alg = {16: "AES_128", 24: "AES_192", 32: "AES_256"}[len(key)]
        block = pinblock.encipher_pinblock_iso_4(key, pin, pan)
    else:
        key = bytes(rng.getrandbits(8) for _ in range(rng.choice([16, 24])))
        alg = {16: "TDES_2KEY", 24: "TDES_3KEY"}[len(key)]
        clear = {0: lambda: pinblock.encode_pinblock_iso_0(pin, pan13),
                 2: lambda: pinblock.encode_pinblock_iso_2(pin),
                 3: lambda: pinblock.encode_pinblock_iso_3(pin, pan13)}[fmt]()
        block = tdes(key, clear, True)
    tkey = bytes(rng.getrandbits(8) for _ in range(16))
    cases.append({"fmt": fmt, "pin": pin, "pan": pan, "alg": alg, "key": key.hex().upper(),
                  "block": block.hex().upper(), "tkey": tkey.hex().upper()})

lua = r'''
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm, cjson = require "payhsm", require "cjson"
for line in io.lines() do
  local c = cjson.decode(line)
  local f = ("ISO_FORMAT_%d"):format(c.fmt)
  local k = hsm.key.import(c.alg, c.key)
  local out = { pin = hsm.pin.decrypt(k, f, c.block, c.pan) or "ERR", mine = hsm.pin.encrypt(k, f, c.pin, c.pan) }
  if c.fmt == 4 then
    local t = hsm.key.import("TDES_2KEY", c.tkey)
    out.translated = hsm.pin.translate(t, "ISO_FORMAT_0", hsm.pin.encrypt(t, "ISO_FORMAT_0", c.pin, c.pan), k, f, c.pan)
  end
  print(cjson.encode(out))
end
'''
r = subprocess.run(["lua5.4", "-e", lua], input="\n".join(json.dumps(c) for c in cases) + "\n",
                   text=True, capture_output=True)
if r.returncode:
    print(r.stderr); sys.exit(1)
agree = total = 0
bad = []
for c, line in zip(cases, r.stdout.splitlines()):
    o = json.loads(line)
    key, fmt = bytes.fromhex(c["key"]), c["fmt"]
    checks = [("psec->payhsm", o["pin"] == c["pin"])]
    mine = bytes.fromhex(o["mine"])
    try:
        if fmt == 4:
            got = pinblock.decipher_pinblock_iso_4(key, mine, c["pan"])
            got2 = pinblock.decipher_pinblock_iso_4(key, bytes.fromhex(o["translated"]), c["pan"])
            checks.append(("translate 0->4 -> psec", got2 == c["pin"]))
        else:
            clear = tdes(key, mine, False)
            got = {0: lambda: pinblock.decode_pinblock_iso_0(clear, c["pan"].rjust(13, "0")),
                   2: lambda: pinblock.decode_pinblock_iso_2(clear),
                   3: lambda: pinblock.decode_pinblock_iso_3(clear, c["pan"].rjust(13, "0"))}[fmt]()
    except Exception as e:
        got = repr(e)
    checks.append(("payhsm->psec", got == c["pin"]))
    for name, ok in checks:
        total += 1
        agree += ok
        if not ok:
            bad.append((name, fmt, c["alg"]))
short = sum(1 for c in cases if len(c["pan"]) < 12)
print(f"{agree} of {total} comparisons agree ({N} cases, ISO formats 0, 2, 3, 4; {short} with PANs under 12 digits)")
for b in bad[:10]:
    print("DISAGREE", b)
sys.exit(0 if agree == total else 1)
