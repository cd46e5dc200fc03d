#!/usr/bin/env python3
"""Cross-check payhsm's TR-31 / X9.143 key blocks against psec (an independent
implementation, https://github.com/knovichikhin/psec), in both directions:

  1. psec wraps random keys (versions A, B, C, D; random KBPKs, usages, optional
     blocks including extended-length ones); payhsm unwraps them and must return the
     same key bytes and header fields.
  2. payhsm wraps the same keys (key length obfuscation on or off at random); psec
     unwraps them and must return the same key and header.

psec is not part of payhsm and is never committed: point PSEC_PATH at a checkout,
e.g. `git clone https://github.com/knovichikhin/psec /tmp/psec`, then from the repo
root after `make`:  PSEC_PATH=/tmp/psec python3 tools/crosscheck/tr31_psec.py [cases]
Needs Debian's python3-cryptography (psec's only dependency)."""
import json, os, random, subprocess, sys, warnings
warnings.filterwarnings("ignore")

sys.path.insert(0, os.environ.get("PSEC_PATH", "/tmp/psec"))
import psec  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 400
rng = random.Random(int(os.environ.get("SEED", "31")))
rnd = lambda n: bytes(rng.getrandbits(8) for _ in range(n))

# (usage, mode) pairs that make sense together (X9.143 Tables 6 and 8)
USAGES = [("P0", "E"), ("P0", "B"), ("D0", "B"), ("D0", "D"), ("K0", "B"), ("K1", "E"), ("B0", "X"),
          ("M3", "C"), ("M1", "V"), ("E0", "X"), ("V0", "G"), ("C0", "C"), ("D1", "E")]
KBPKS = {"A": [("TDES_2KEY", 16), ("TDES_3KEY", 24)], "C": [("TDES_2KEY", 16), ("TDES_3KEY", 24)],
         "B": [("TDES_2KEY", 16), ("TDES_3KEY", 24)],
         "D": [("AES_128", 16), ("AES_192", 24), ("AES_256", 32)]}
STRENGTH = {"DES": 56, "TDES_2KEY": 80, "TDES_3KEY": 112, "AES_128": 128, "AES_192": 192, "AES_256": 256}

cases = []
for i in range(N):
    version = "ABCD"[i % 4]
    kbpk_alg, kbpk_len = rng.choice(KBPKS[version])
    keys = [("DES", 8, "D"), ("TDES_2KEY", 16, "T"), ("TDES_3KEY", 24, "T"), ("AES_128", 16, "A"),
            ("AES_192", 24, "A"), ("AES_256", 32, "A")]
    keys = [k for k in keys if STRENGTH[k[0]] <= STRENGTH[kbpk_alg]]
    blocks = {}
    if version == "D" and rng.random() < 0.2:
        key_alg, key_len, letter = "HMAC_SHA256", rng.randint(8, kbpk_len), "H"
        blocks["HM"] = "21"
        usage, mode = "M7", "C"
    else:
        key_alg, key_len, letter = rng.choice(keys)
        usage, mode = rng.choice(USAGES)
    for _ in range(rng.randint(0, 3)):
        bid = rng.choice(["KS", "KV", "TS", "IK", "CT", "DA", "01", "9Z"])
        if bid in blocks:
            continue
        size = rng.choice([0, 1, 5, 12, 40, 300])
        blocks[bid] = "".join(rng.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(size))
    exp = rng.choice("ENS")
    kv = rng.choice(["00", "01", "A7", "c1"])
    kbpk, key = rnd(kbpk_len), rnd(key_len)
    h = psec.tr31.Header(version, usage, letter, mode, kv, exp)
    for bid, data in blocks.items():
        h.blocks[bid] = data
    block = psec.tr31.wrap(kbpk, h, key)
    cases.append({"version": version, "kbpk_alg": kbpk_alg, "kbpk": kbpk.hex().upper(),
                  "key_alg": key_alg, "key": key.hex().upper(), "usage": usage, "mode": mode,
                  "kv": kv, "exp": exp, "blocks": [{"id": b, "data": d} for b, d in blocks.items()],
                  "psec_block": block, "obfuscate": rng.random() < 0.5})

lua = r'''
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm, cjson = require "payhsm", require "cjson"
for line in io.lines() do
  local c = cjson.decode(line)
  local kbpk = hsm.key.import(c.kbpk_alg, c.kbpk)
  local out = {}
  local key, h, code = hsm.tr31.unwrap(kbpk, c.psec_block)
  if key then
    local blocks = {}
    for _, b in ipairs(h.blocks) do if b.id ~= "PB" then blocks[#blocks + 1] = b end end
    out.unwrap = { key = key:export(), alg = key.algorithm, usage = h.usage, mode = h.mode,
                   kv = h.key_version, exp = h.exportability, blocks = blocks }
  else
    out.unwrap = { error = code .. ": " .. h }
  end
  local mine = hsm.key.import(c.key_alg, c.key)
  local blk, msg, wcode = hsm.tr31.wrap(kbpk, mine, { version = c.version, usage = c.usage,
    mode = c.mode, key_version = c.kv, exportability = c.exp, blocks = c.blocks },
    { legacy = true, obfuscate = c.obfuscate })
  out.block = blk or (wcode .. ": " .. msg)
  print(cjson.encode(out))
end
'''
inp = "\n".join(json.dumps(c) for c in cases) + "\n"
r = subprocess.run(["lua5.4", "-e", lua], input=inp, text=True, capture_output=True)
if r.returncode != 0:
    print(r.stderr)
    sys.exit(1)
agree = total = 0
bad = []
for c, line in zip(cases, r.stdout.splitlines()):
    out = json.loads(line)
    u = out["unwrap"]
    # 1. psec -> payhsm
    total += 1
    want = {"key": c["key"], "alg": c["key_alg"], "usage": c["usage"], "mode": c["mode"],
            "kv": c["kv"], "exp": c["exp"], "blocks": c["blocks"]}
    got = {k: u.get(k) for k in want}
    if isinstance(got["blocks"], dict):  # cjson encodes an empty table as {}
        got["blocks"] = []
    if got == want:
        agree += 1
    else:
        bad.append(("psec->payhsm", c["version"], c["psec_block"][:40], u.get("error"), got, want))
    # 2. payhsm -> psec
    total += 1
    try:
        hdr, key = psec.tr31.unwrap(bytes.fromhex(c["kbpk"]), out["block"])
        ok = (key.hex().upper() == c["key"] and hdr.key_usage == c["usage"] and
              hdr.mode_of_use == c["mode"] and hdr.version_num == c["kv"] and
              hdr.exportability == c["exp"] and hdr.version_id == c["version"] and
              dict(hdr.blocks) == {b["id"]: b["data"] for b in c["blocks"]})
    except Exception as e:  # psec refuses our block
        ok, key = False, repr(e)
    if ok:
        agree += 1
    else:
        bad.append(("payhsm->psec", c["version"], out["block"][:40], key))
print(f"{agree} of {total} comparisons agree ({N} cases, versions A/B/C/D, both directions)")
for b in bad[:10]:
    print("DISAGREE", b)
sys.exit(0 if agree == total else 1)
