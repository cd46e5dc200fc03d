#!/usr/bin/env python3
"""psec's speed on bench/card.lua's inputs, for the ratio in bench/RESULTS.md: psec has no
verify functions, so a verification is its generate call plus a string comparison (what a
caller of psec writes). Best of three runs, like bench/lib.lua.

psec is never committed: PSEC_PATH=/tmp/psec python3 bench/card_psec.py"""
import os, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, os.environ.get("PSEC_PATH", "/tmp/psec"))
from psec import cvv, pin  # noqa: E402

K = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "4123456789012345"


def best(n, fn):
    for _ in range(n // 20 + 1):
        fn()
    t = min(_timed(n, fn) for _ in range(3))
    return n / t, t * 1e9 / n


def _timed(n, fn):
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return time.process_time() - t0


v = cvv.generate_cvv(K, PAN, "8701", "101")
pvv = pin.generate_visa_pvv(K, "1", "1234", PAN)
off = pin.generate_ibm3624_offset(K, "0123456789012345", "1234", PAN, 4, 11, "F")
cases = [
    ("card_verify_cvv", lambda: cvv.generate_cvv(K, PAN, "8701", "101") == v),
    ("pin_pvv_verify_clear", lambda: pin.generate_visa_pvv(K, "1", "1234", PAN) == pvv),
    ("pin_ibm3624_verify_clear",
     lambda: pin.generate_ibm3624_offset(K, "0123456789012345", "1234", PAN, 4, 11, "F") == off),
]
print("| case | psec ops/s | ns/op |")
print("|---|---:|---:|")
for name, fn in cases:
    ops, ns = best(20000, fn)
    print(f"| {name} | {ops:.0f} | {ns:.0f} |")
