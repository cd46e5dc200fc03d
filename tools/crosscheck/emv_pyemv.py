#!/usr/bin/env python3
"""Cross-check payhsm's EMV derivations and cryptograms against pyemv (independent
implementation, https://github.com/knovichikhin/pyemv): random IMKs, PANs (12-19
digits), PSNs, ATCs, UNs and transaction data; ICC master keys (options A and B),
session keys (EMV common, Mastercard, EMV2000 tree), ARQC for all five derivations
with padding methods 1 and 2, ARPC methods 1 and 2.

pyemv is never committed: PYEMV_PATH=/tmp/pyemv python3 tools/crosscheck/emv_pyemv.py [cases]"""
import json, os, random, subprocess, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, os.environ.get("PYEMV_PATH", "/tmp/pyemv"))
from pyemv import kd, ac  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
rng = random.Random(2024)
rb = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))
DERIVS = ["EMV_COMMON", "MASTERCARD", "EMV2000", "VISA", "AMEX"]

cases = []
for i in range(N):
    imk, pan, psn = rb(16), digits(rng.randint(12, 19)), digits(2)
    mode = rng.choice(["EMV_OPTION_A", "EMV_OPTION_B"])
    atc, un, data = rb(2), rb(4), rb(rng.randint(0, 60))
    deriv = DERIVS[i % 5]
    padding = rng.choice([1, 2])
    mk = (kd.derive_icc_mk_a if mode == "EMV_OPTION_A" else kd.derive_icc_mk_b)(imk, pan, psn)
    if deriv == "EMV_COMMON":
        sk = kd.derive_common_sk(mk, atc + bytes(6))
    elif deriv == "MASTERCARD":
        sk = kd.derive_common_sk(mk, atc + bytes(2) + un)
    elif deriv == "EMV2000":
        sk = kd.derive_emv2000_tree_sk(mk, atc, 8, 4)
    else:
        sk = mk
    arqc = ac.generate_ac(sk, data, ac.PaddingType(padding))
    arc, csu, prop = rb(2), rb(4), rb(rng.choice([0, 4, 8]))
    cases.append({"imk": imk.hex(), "pan": pan, "psn": psn, "mode": mode, "deriv": deriv,
                  "atc": atc.hex(), "un": un.hex(), "data": data.hex(), "padding": padding,
                  "mk": mk.hex().upper(), "sk": sk.hex().upper(), "arqc": arqc.hex().upper(),
                  "arc": arc.hex(), "csu": csu.hex(), "prop": prop.hex(),
                  "arpc1": ac.generate_arpc_1(sk, arqc, arc).hex().upper(),
                  "arpc2": ac.generate_arpc_2(sk, arqc, csu, prop).hex().upper()})

lua = r'''
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm, cjson = require "payhsm", require "cjson"
for line in io.lines() do
  local c = cjson.decode(line)
  local imk = hsm.key.import("TDES_2KEY", c.imk)
  local mk = hsm.emv.derive_icc_master_key(imk, c.pan, c.psn, c.mode)
  local sk = mk
  if c.deriv ~= "VISA" and c.deriv ~= "AMEX" then
    sk = hsm.emv.derive_session_key(mk, c.deriv, { atc = c.atc, un = c.un })
  end
  local p = { mode = c.mode, derivation = c.deriv, pan = c.pan, psn = c.psn, atc = c.atc, un = c.un,
              data = c.data, padding = math.tointeger(c.padding) }
  local out = { mk = mk:export(), sk = sk:export(), arqc = hsm.emv.generate_arqc(imk, p) }
  p.arqc = c.arqc
  out.verify = hsm.emv.verify_arqc(imk, p)
  p.method, p.arc = 1, c.arc
  out.arpc1 = hsm.emv.generate_arpc(imk, p)
  p.method, p.csu, p.proprietary = 2, c.csu, c.prop
  out.arpc2 = hsm.emv.generate_arpc(imk, p)
  out.arpc2_key = hsm.emv.compute_arpc(sk, { method = 2, arqc = c.arqc, csu = c.csu, proprietary = c.prop })
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
    for name, want in [("mk", c["mk"]), ("sk", c["sk"]), ("arqc", c["arqc"]), ("verify", True),
                       ("arpc1", c["arpc1"]), ("arpc2", c["arpc2"]), ("arpc2_key", c["arpc2"])]:
        total += 1
        if o.get(name) == want:
            agree += 1
        else:
            bad.append((c["deriv"], c["mode"], name, len(c["pan"])))
print(f"{agree} of {total} comparisons agree ({N} cases: options A/B, 5 derivations, padding 1/2, ARPC 1/2)")
for b in bad[:10]:
    print("DISAGREE", b)
sys.exit(0 if agree == total else 1)
