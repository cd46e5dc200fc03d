#!/usr/bin/env python3
"""Cross-check payhsm's EMV secure messaging against pyemv (independent implementation,
https://github.com/knovichikhin/pyemv, pyemv/sm.py and pyemv/kd.py), both ways, at random:
IMK-SMC / IMK-SMI / IMK-AC, PANs of 12 to 19 digits, PSNs, options A and B, derivations
EMV_COMMON and MASTERCARD (R = a random ARQC) and VISA (a random ATC):

  1. pyemv -> payhsm: pyemv derives the session keys, MACs a random command and enciphers
     random data (types EMV, VISA, MASTERCARD); payhsm derives the same keys
     (derive_icc_master_key, derive_sm_session_key), must compute the same MAC and
     ciphertext (sm_mac, sm_encrypt) and must decipher pyemv's ciphertext (sm_decrypt) back
     to the data (MASTERCARD: the padded blocks);
  2. the PIN change script: pyemv formats the block (ISO 9564-1 format 2, or the VIS PIN block
     with and without a current PIN), enciphers it and MACs header || ciphertext; payhsm's
     pin_change, given the PINs as ISO format 0 blocks under a PEK, must return the same.

pyemv is never committed: PYEMV_PATH=/tmp/pyemv python3 tools/crosscheck/sm_pyemv.py [cases]"""
import json, os, random, subprocess, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, os.environ.get("PYEMV_PATH", "/tmp/pyemv"))
from pyemv import kd, sm, mac  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
rng = random.Random(9797)
rb = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))
TYPES = {"EMV": sm.EncryptionType.EMV, "VISA": sm.EncryptionType.VISA, "MASTERCARD": sm.EncryptionType.MASTERCARD}
DERIVS = ["EMV_COMMON", "MASTERCARD", "VISA"]

cases = []
for i in range(N):
    smc, smi, acm = rb(16), rb(16), rb(16)
    pan, psn = digits(rng.randint(12, 19)), digits(2)
    mode = rng.choice(["EMV_OPTION_A", "EMV_OPTION_B"])
    icc = kd.derive_icc_mk_a if mode == "EMV_OPTION_A" else kd.derive_icc_mk_b
    deriv = DERIVS[i % 3]
    arqc, atc = rb(8), rb(2)
    if deriv == "VISA":
        sk_c, sk_i = kd.derive_visa_sm_sk(icc(smc, pan, psn), atc), kd.derive_visa_sm_sk(icc(smi, pan, psn), atc)
    else:
        sk_c, sk_i = kd.derive_common_sk(icc(smc, pan, psn), arqc), kd.derive_common_sk(icc(smi, pan, psn), arqc)
    typ = rng.choice(sorted(TYPES))
    data = rb(rng.randint(1 if typ == "MASTERCARD" else 0, 48))
    command = rb(rng.randint(0, 40))
    length = rng.randint(4, 8)
    pin, cur = digits(rng.randint(4, 12)), rng.choice([None, digits(rng.randint(4, 12))])
    header = bytes.fromhex("842400") + bytes([rng.choice([1, 2])]) + bytes([rng.choice([8, 16, 24])])
    if deriv == "VISA":
        block = sm.format_vis_pin_block(icc(acm, pan, psn), pin, cur)
        enc = sm.encrypt_command_data(sk_c, block, sm.EncryptionType.VISA)
    else:
        cur = None
        block = sm.format_iso9564_2_pin_block(pin)
        ptype = sm.EncryptionType.MASTERCARD if deriv == "MASTERCARD" else sm.EncryptionType.EMV
        enc = sm.encrypt_command_data(sk_c, block, ptype)
    cases.append({
        "smc": smc.hex().upper(), "smi": smi.hex().upper(), "ac": acm.hex().upper(), "pan": pan, "psn": psn,
        "mode": mode, "deriv": deriv, "arqc": arqc.hex().upper(), "atc": atc.hex().upper(), "type": typ,
        "data": data.hex().upper(), "command": command.hex().upper(), "length": length,
        "sk_c": sk_c.hex().upper(), "sk_i": sk_i.hex().upper(),
        "mac": sm.generate_command_mac(sk_i, command, length).hex().upper(),
        "enc": sm.encrypt_command_data(sk_c, data, TYPES[typ]).hex().upper(),
        "padded": mac.pad_iso9797_2(data, 8).hex().upper() if typ == "MASTERCARD" and len(data) % 8 else data.hex().upper(),
        "pin": pin, "cur": cur, "header": header.hex().upper(),
        "pc_enc": enc.hex().upper(), "pc_mac": sm.generate_command_mac(sk_i, header + enc).hex().upper()})

lua = r'''
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm, cjson = require "payhsm", require "cjson"
local pek = hsm.key.generate("TDES_2KEY", { usage = "P0" })
for line in io.lines() do
  local c = cjson.decode(line)
  local smc = hsm.key.import("TDES_2KEY", c.smc, { usage = "E1" })
  local smi = hsm.key.import("TDES_2KEY", c.smi, { usage = "E2" })
  local p = c.deriv == "VISA" and { atc = c.atc } or { arqc = c.arqc }
  local sk_c = hsm.emv.derive_sm_session_key(hsm.emv.derive_icc_master_key(smc, c.pan, c.psn, c.mode), c.deriv, p)
  local sk_i = hsm.emv.derive_sm_session_key(hsm.emv.derive_icc_master_key(smi, c.pan, c.psn, c.mode), c.deriv, p)
  local q = { derivation = c.deriv, pan = c.pan, psn = c.psn, mode = c.mode, arqc = c.arqc, atc = c.atc,
    pek = pek, pin_block = hsm.pin.encrypt(pek, "ISO_FORMAT_0", c.pin, c.pan), message_data = c.header }
  if c.deriv == "VISA" then
    q.arqc = nil
    q.imk_ac = hsm.key.import("TDES_2KEY", c.ac)
    if c.cur ~= cjson.null then q.current_pin_block = hsm.pin.encrypt(pek, "ISO_FORMAT_0", c.cur, c.pan) end
  else
    q.atc = nil
  end
  local pc = hsm.emv.pin_change(smc, smi, q) or {}
  print(cjson.encode({ sk_c = sk_c:export(), sk_i = sk_i:export(),
    mac = hsm.emv.sm_mac(sk_i, c.command, { length = math.tointeger(c.length) }),
    enc = hsm.emv.sm_encrypt(sk_c, c.data, { type = c.type, mode = c.type == "VISA" and "ECB" or nil }),
    dec = hsm.emv.sm_decrypt(sk_c, c.enc, { type = c.type, mode = c.type == "VISA" and "ECB" or nil }) or "ERR",
    pc_enc = pc.encrypted_pin_block or "ERR", pc_mac = pc.mac or "ERR" }))
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
    for name, want in [("sk_c", c["sk_c"]), ("sk_i", c["sk_i"]), ("mac", c["mac"]), ("enc", c["enc"]),
                       ("dec", c["padded"]), ("pc_enc", c["pc_enc"]), ("pc_mac", c["pc_mac"])]:
        total += 1
        if o.get(name) == want:
            agree += 1
        else:
            bad.append((c["deriv"], c["type"], c["mode"], name, len(c["pan"])))
print(f"{agree} of {total} comparisons agree ({N} cases: EMV_COMMON, MASTERCARD, VISA; types EMV, VISA, "
      "MASTERCARD; options A/B; PIN change with and without the current PIN)")
for b in bad[:10]:
    print("DISAGREE", b)
sys.exit(0 if agree == total else 1)
