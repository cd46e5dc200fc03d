#!/usr/bin/env python3
"""Cross-check payhsm's dynamic card verification values against pyemv (independent
implementation, https://github.com/knovichikhin/pyemv) and psec, with random issuer
master keys, PANs (12-19 digits), PSNs, ATCs, UNs and track data:

  CVC3   pyemv kd.derive_icc_mk_a/_b gives the card key, pyemv cvv.generate_cvc3 the
         value -> payhsm card.cvc3 over the key derived by hsm.emv.derive_icc_master_key
         (equal as numbers: pyemv drops leading zeros, payhsm keeps 5 digits) and
         card.verify_cvc3 of pyemv's value zero-padded, and of its 3 rightmost digits
         (true), and of a changed value (false).
  dCVV   pyemv has none: the card key from pyemv, the value from psec's CVV over the PAN
         with its first four digits replaced by the ATC (ATCs of decimal digits, which
         psec accepts) -> payhsm card.dcvv (equal) and card.verify_dcvv (true).

Neither library is committed:
PYEMV_PATH=/tmp/pyemv PSEC_PATH=/tmp/psec python3 tools/crosscheck/card_pyemv.py [cases]"""
import json, os, random, subprocess, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, os.environ.get("PYEMV_PATH", "/tmp/pyemv"))
sys.path.insert(0, os.environ.get("PSEC_PATH", "/tmp/psec"))
from pyemv import kd, cvv as ecvv  # noqa: E402
from psec import cvv as pcvv  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
rng = random.Random(3)
rb = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))

cases = []
short = 0
for i in range(N):
    imk, pan, psn = rb(16), digits(rng.randint(12, 19)), digits(2)
    mode = rng.choice(["EMV_OPTION_A", "EMV_OPTION_B"])
    mk = (kd.derive_icc_mk_a if mode == "EMV_OPTION_A" else kd.derive_icc_mk_b)(imk, pan, psn)
    atc, un = rb(2), rb(4)
    if i % 2:  # track 2 equivalent data, F-padded to whole bytes
        t2 = pan + "D" + digits(4) + digits(3) + digits(rng.randint(0, 13))
        track = bytes.fromhex(t2 + ("F" if len(t2) % 2 else ""))
    else:  # track 1, ASCII
        track = ("B" + pan + "^CARDHOLDER/TEST^" + digits(4) + digits(3) + digits(rng.randint(0, 20))).encode()
    cvc3 = ecvv.generate_cvc3(mk, track, atc, un)
    short += len(cvc3) < 5
    exp, sc, datc = digits(4), rng.choice(["101", "201", "000", digits(3)]), digits(4)
    dcvv = pcvv.generate_cvv(mk, datc + pan[4:], exp, sc)
    cases.append({"imk": imk.hex(), "pan": pan, "psn": psn, "mode": mode, "atc": atc.hex(),
                  "un": un.hex(), "track": track.hex(), "cvc3": cvc3, "exp": exp, "sc": sc,
                  "datc": datc, "dcvv": dcvv})

lua = r'''
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm, cjson = require "payhsm", require "cjson"
for line in io.lines() do
  local c = cjson.decode(line)
  local imk = hsm.key.import("TDES_2KEY", c.imk)
  local mk = hsm.emv.derive_icc_master_key(imk, c.pan, c.psn, c.mode)
  local p = { track_data = c.track, atc = c.atc, un = c.un }
  local want = ("%05d"):format(tonumber(c.cvc3))
  local wrong = ("%05d"):format((tonumber(c.cvc3) + 1) % 100000)
  local d = { pan = c.pan, psn = c.psn, expiry = c.exp, service_code = c.sc, atc = c.datc }
  print(cjson.encode {
    cvc3 = hsm.card.cvc3(mk, p),
    verify5 = hsm.card.verify_cvc3(mk, p, want) == true,
    verify3 = hsm.card.verify_cvc3(mk, p, want:sub(3)) == true,
    wrong = hsm.card.verify_cvc3(mk, p, wrong) == false,
    dcvv = hsm.card.dcvv(mk, d),
    dverify = hsm.card.verify_dcvv(mk, d, c.dcvv) == true,
  })
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
    checks = [("CVC3 pyemv == payhsm", int(o["cvc3"]) == int(c["cvc3"]) and len(o["cvc3"]) == 5),
              ("verify_cvc3 5 digits", o["verify5"]), ("verify_cvc3 3 digits", o["verify3"]),
              ("verify_cvc3 refuses a changed value", o["wrong"]),
              ("dCVV psec/pyemv == payhsm", o["dcvv"] == c["dcvv"]), ("verify_dcvv", o["dverify"])]
    for name, ok in checks:
        total += 1
        agree += ok
        if not ok:
            bad.append((name, c["pan"], c["mode"]))
print(f"{agree} of {total} comparisons agree ({N} cases: CVC3 over track 1 and 2, dCVV; "
      f"{short} CVC3s that pyemv printed with fewer than 5 digits)")
for b in bad[:10]:
    print("DISAGREE", b)
sys.exit(0 if agree == total else 1)
