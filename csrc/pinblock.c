/*
 * pinblock.c - ISO 9564-1:2017 PIN blocks, formats 0 to 4, and PIN translation.
 *
 *   format 0  8 bytes: 0 N P..P F..F  xor  0000 + 12 rightmost PAN digits without
 *             the check digit (ANSI X9.8 / ISO 9564-1 section 9.3.1)
 *   format 1  8 bytes: 1 N P..P then random fill 0-F; no PAN (9.3.2)
 *   format 2  8 bytes: 2 N P..P F..F; no PAN, for ICC offline PIN (9.3.3)
 *   format 3  8 bytes: 3 N P..P then random fill A-F, xor the format 0 PAN field (9.3.4)
 *   format 4  16 bytes, AES (9.3.5): PIN field 4 N P..P A..A (to nibble 15) then 8
 *             random bytes; PAN field M (PAN length - 12, 0 if shorter) then the PAN,
 *             zero padded (a PAN under 12 digits is left padded to 12 with zeros);
 *             block = E(E(PIN field) xor PAN field), and back with two decryptions.
 * N is the PIN length, 4 to 12 digits. Formats 0 to 3 take TDES keys, format
 * 4 AES keys; single DES is refused (ISO 9564-1 and X9.8 require TDES or AES).
 *
 * Lua: core.pin.format(fmt, pin, pan) -> clear_block_hex   (format 4: the PIN field)
 *      core.pin.parse(fmt, clear_block_hex, pan) -> pin
 *      core.pin.encrypt(key, fmt, pin, pan) -> block_hex
 *      core.pin.decrypt(key, fmt, block_hex, pan) -> pin
 *      core.pin.translate(in_key, in_fmt, block_hex, out_key, out_fmt, pan [, out_pan]) -> block_hex
 * fmt: "ISO_FORMAT_0" .. "ISO_FORMAT_4". pan may be nil for formats 1 and 2.
 * Keys: usage P0 (or none); mode E/B/N to encrypt, D/B/N to decrypt. The PIN of a
 * translation never leaves C. Codes: PIN_LENGTH, PIN_DIGITS, PAN_LENGTH, PAN_DIGITS,
 * PIN_FORMAT (a clear block that breaks its format: control nibble, length, fill),
 * PIN_TRANSLATION (a format change the rules below forbid), BAD_HEX, BAD_LENGTH,
 * KEY_TYPE, KEY_USAGE. Messages never contain PIN digits.
 * Translation rules (PCI PIN Security Requirement 3 as Visa states it; AWS Payment
 * Cryptography's TranslatePinData; IBM CCA's PIN block translation table): a PIN bound to
 * its PAN (formats 0, 3, 4) stays in a PAN-bound format (0, 3, 4), never 1 or 2, which
 * would unbind it; format 2 (PINs for the IC card) is translated to format 2 only.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "payhsm.h"

static const char *const formats[] = {"ISO_FORMAT_0", "ISO_FORMAT_1", "ISO_FORMAT_2",
                                      "ISO_FORMAT_3", "ISO_FORMAT_4", NULL};

typedef struct { const char *code; const char *msg; } pin_err;

static int set_err(pin_err *e, const char *code, const char *msg) {
  e->code = code;
  e->msg = msg;
  return 0;
}

static size_t block_len(int fmt) { return fmt == 4 ? 16 : 8; }

static void put_nibble(unsigned char *b, size_t i, unsigned v) {
  if (i % 2) b[i / 2] = (unsigned char)((b[i / 2] & 0xF0u) | (v & 15u));
  else b[i / 2] = (unsigned char)((b[i / 2] & 0x0Fu) | ((v & 15u) << 4));
}

static unsigned get_nibble(const unsigned char *b, size_t i) {
  return i % 2 ? b[i / 2] & 15u : b[i / 2] >> 4;
}

static int check_pin(const char *pin, size_t n, pin_err *e) {
  size_t i;
  if (n < 4 || n > 12) return set_err(e, "PIN_LENGTH", "PIN must be 4 to 12 digits");
  for (i = 0; i < n; i++)
    if (pin[i] < '0' || pin[i] > '9') return set_err(e, "PIN_DIGITS", "PIN must be decimal digits");
  return 1;
}

static int check_pan(const char *pan, size_t n, pin_err *e) {
  size_t i;
  if (!pan) return set_err(e, "PAN_LENGTH", "this format needs the PAN");
  if (n < 1 || n > 19) return set_err(e, "PAN_LENGTH", "PAN must be 1 to 19 digits");
  for (i = 0; i < n; i++)
    if (pan[i] < '0' || pan[i] > '9') return set_err(e, "PAN_DIGITS", "PAN must be decimal digits");
  return 1;
}

/* PIN field of the format into f (8 or 16 bytes). */
static int pin_field(int fmt, const char *pin, size_t n, unsigned char *f, pin_err *e) {
  unsigned char rnd[16];
  size_t i, nib = 16; /* nibbles of the control, length, PIN and fill part */
  if (!check_pin(pin, n, e)) return 0;
  if (fmt == 1 || fmt == 3 || fmt == 4) {
    if (!payhsm_random(rnd, sizeof rnd)) return set_err(e, NULL, NULL);
  } else {
    memset(rnd, 0, sizeof rnd);
  }
  memset(f, 0, block_len(fmt));
  put_nibble(f, 0, (unsigned)fmt);
  put_nibble(f, 1, (unsigned)n);
  for (i = 0; i < n; i++) put_nibble(f, 2 + i, (unsigned)(pin[i] - '0'));
  for (i = 2 + n; i < nib; i++) {
    unsigned r = get_nibble(rnd, i);
    switch (fmt) {
      case 0: case 2: put_nibble(f, i, 0xF); break;
      case 1: put_nibble(f, i, r); break;
      case 3: put_nibble(f, i, 10u + r % 6u); break; /* A-F */
      default: put_nibble(f, i, 0xA); break;
    }
  }
  if (fmt == 4) memcpy(f + 8, rnd + 8, 8);
  OPENSSL_cleanse(rnd, sizeof rnd);
  return 1;
}

/* PAN field of the format into f (formats 0, 3: 8 bytes; 4: 16 bytes). */
static int pan_field(int fmt, const char *pan, size_t n, unsigned char *f, pin_err *e) {
  size_t i;
  if (!check_pan(pan, n, e)) return 0;
  memset(f, 0, block_len(fmt));
  if (fmt == 4) {
    /* M = PAN length - 12, and under 12 digits M = 0 with the PAN left padded
     * with zeros to 12 digits (ISO 9564-1:2017 9.4.2) */
    size_t pad = n < 12 ? 12 - n : 0;
    put_nibble(f, 0, (unsigned)(n < 12 ? 0 : n - 12));
    for (i = 0; i < n; i++) put_nibble(f, 1 + pad + i, (unsigned)(pan[i] - '0'));
  } else {
    /* the 12 rightmost digits excluding the check digit, left padded with zeros
     * when the PAN has fewer (ISO 9564-1:2017 9.3.1) */
    size_t d = n - 1 < 12 ? n - 1 : 12;
    for (i = 0; i < d; i++) put_nibble(f, 16 - d + i, (unsigned)(pan[n - 1 - d + i] - '0'));
  }
  return 1;
}

/* Reads the PIN out of a PIN field; pin gets up to 12 digits. */
static int parse_field(int fmt, const unsigned char *f, char *pin, size_t *n, pin_err *e) {
  size_t i, len = get_nibble(f, 1);
  if (get_nibble(f, 0) != (unsigned)fmt)
    return set_err(e, "PIN_FORMAT", "control field does not match the format (wrong key, PAN or format?)");
  if (len < 4 || len > 12) return set_err(e, "PIN_FORMAT", "PIN length field is outside 4 to 12");
  for (i = 0; i < len; i++) {
    unsigned d = get_nibble(f, 2 + i);
    if (d > 9) return set_err(e, "PIN_FORMAT", "PIN digit field is not decimal");
    pin[i] = (char)('0' + d);
  }
  for (i = 2 + len; i < 16; i++) {
    unsigned d = get_nibble(f, i);
    if (((fmt == 0 || fmt == 2) && d != 0xF) || (fmt == 3 && d < 0xA) || (fmt == 4 && d != 0xA))
      return set_err(e, "PIN_FORMAT", "fill digits break the format");
  }
  *n = len;
  return 1;
}

static const char *opt_pan(lua_State *L, int idx, size_t *n) {
  if (lua_isnoneornil(L, idx)) { *n = 0; return NULL; }
  return luaL_checklstring(L, idx, n);
}

static int key_fits(lua_State *L, payhsm_key *k, int fmt, const char *fn, int enc) {
  int r;
  if ((r = payhsm_key_usage(L, k, fn, "P0", enc ? "EBN" : "DBN"))) return r;
  /* ISO 9564-1 / ANSI X9.8: PINs are enciphered with TDES or AES, never single DES */
  if (fmt == 4 ? payhsm_alg_family(k->alg) != PAYHSM_FAM_AES
               : k->alg != PAYHSM_ALG_TDES_2KEY && k->alg != PAYHSM_ALG_TDES_3KEY)
    return payhsm_fail(L, fn, "KEY_TYPE", "ISO format %d needs a%s key, got %s", fmt,
                       fmt == 4 ? "n AES" : " TDES_2KEY or TDES_3KEY", payhsm_alg_name(k->alg));
  return 0;
}

/* Clear PIN + PAN -> enciphered block under k (out: 8 or 16 bytes). */
static int encipher(lua_State *L, payhsm_key *k, int fmt, const char *pin, size_t pn,
                    const char *pan, size_t an, unsigned char *out, pin_err *e) {
  unsigned char pf[16], af[16];
  size_t i, bl = block_len(fmt);
  int ok = pin_field(fmt, pin, pn, pf, e);
  if (ok && (fmt == 0 || fmt == 3 || fmt == 4)) ok = pan_field(fmt, pan, an, af, e);
  if (ok) {
    if (fmt == 4) {
      ok = payhsm_key_crypt(L, k, 1, NULL, pf, out, 16);
      for (i = 0; i < 16; i++) out[i] ^= af[i];
      ok = ok && payhsm_key_crypt(L, k, 1, NULL, out, out, 16);
    } else {
      if (fmt == 0 || fmt == 3)
        for (i = 0; i < bl; i++) pf[i] ^= af[i];
      ok = payhsm_key_crypt(L, k, 1, NULL, pf, out, bl);
    }
    if (!ok) set_err(e, NULL, NULL);
  }
  OPENSSL_cleanse(pf, sizeof pf);
  return ok;
}

/* Enciphered block -> PIN (pin gets the digits). */
static int decipher(lua_State *L, payhsm_key *k, int fmt, const unsigned char *blk,
                    const char *pan, size_t an, char *pin, size_t *pn, pin_err *e) {
  unsigned char buf[16], af[16];
  size_t i, bl = block_len(fmt);
  int ok = 1;
  if (fmt == 0 || fmt == 3 || fmt == 4) ok = pan_field(fmt, pan, an, af, e);
  if (ok) {
    if (!payhsm_key_crypt(L, k, 0, NULL, blk, buf, bl)) {
      set_err(e, NULL, NULL);
      return 0;
    }
    if (fmt == 4) {
      for (i = 0; i < 16; i++) buf[i] ^= af[i];
      if (!payhsm_key_crypt(L, k, 0, NULL, buf, buf, 16)) {
        OPENSSL_cleanse(buf, sizeof buf);
        set_err(e, NULL, NULL);
        return 0;
      }
    } else if (fmt == 0 || fmt == 3) {
      for (i = 0; i < bl; i++) buf[i] ^= af[i];
    }
    ok = parse_field(fmt, buf, pin, pn, e);
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return ok;
}

static int fail(lua_State *L, const char *fn, const pin_err *e) {
  if (!e->code) return payhsm_raise_ossl(L, fn);
  return payhsm_fail(L, fn, e->code, "%s", e->msg);
}

static size_t block_arg(lua_State *L, int idx, const char *fn, int fmt, unsigned char *blk) {
  size_t n = payhsm_hexarg(L, idx, fn, "PIN block", blk, 16);
  if (n == (size_t)-1) return n;
  if (n != block_len(fmt)) {
    payhsm_fail(L, fn, "BAD_LENGTH", "ISO format %d PIN blocks are %d bytes", fmt, (int)block_len(fmt));
    return (size_t)-1;
  }
  return n;
}

int payhsm_pin_checkformat(lua_State *L, int idx) {
  return payhsm_checkname(L, idx, "PIN block format", formats);
}

int payhsm_pin_decrypt_block(lua_State *L, const char *fn, payhsm_key *pek, int fmt, int block_idx,
                             const char *pan, size_t panlen, char pin[12], size_t *pinlen) {
  unsigned char blk[16];
  pin_err e;
  int r;
  if ((r = key_fits(L, pek, fmt, fn, 0))) return r;
  if (block_arg(L, block_idx, fn, fmt, blk) == (size_t)-1) return 3;
  if (!decipher(L, pek, fmt, blk, pan, panlen, pin, pinlen, &e)) {
    OPENSSL_cleanse(pin, 12);
    return fail(L, fn, &e);
  }
  return 0;
}

/* core.pin.format(fmt, pin, pan) -> clear block hex (format 4: the PIN field) */
static int pin_format(lua_State *L) {
  int fmt = payhsm_checkname(L, 1, "PIN block format", formats);
  size_t pn, an, i;
  const char *pin = luaL_checklstring(L, 2, &pn), *pan = opt_pan(L, 3, &an);
  unsigned char pf[16], af[16];
  pin_err e;
  if (!pin_field(fmt, pin, pn, pf, &e)) return fail(L, "pin.format", &e);
  if (fmt == 0 || fmt == 3) {
    if (!pan_field(fmt, pan, an, af, &e)) { OPENSSL_cleanse(pf, sizeof pf); return fail(L, "pin.format", &e); }
    for (i = 0; i < 8; i++) pf[i] ^= af[i];
  }
  payhsm_pushhex(L, pf, block_len(fmt));
  OPENSSL_cleanse(pf, sizeof pf);
  return 1;
}

/* core.pin.parse(fmt, clear_block_hex, pan) -> pin */
static int pin_parse(lua_State *L) {
  static const char fn[] = "pin.parse";
  int fmt = payhsm_checkname(L, 1, "PIN block format", formats);
  unsigned char blk[16], af[16];
  char pin[12];
  size_t an, pn, i;
  const char *pan = opt_pan(L, 3, &an);
  pin_err e;
  if (block_arg(L, 2, fn, fmt, blk) == (size_t)-1) return 3;
  if (fmt == 0 || fmt == 3) {
    if (!pan_field(fmt, pan, an, af, &e)) return fail(L, fn, &e);
    for (i = 0; i < 8; i++) blk[i] ^= af[i];
  }
  if (!parse_field(fmt, blk, pin, &pn, &e)) { OPENSSL_cleanse(blk, sizeof blk); return fail(L, fn, &e); }
  lua_pushlstring(L, pin, pn);
  OPENSSL_cleanse(blk, sizeof blk);
  OPENSSL_cleanse(pin, sizeof pin);
  return 1;
}

/* core.pin.encrypt(key, fmt, pin, pan) -> block hex */
static int pin_encrypt(lua_State *L) {
  static const char fn[] = "pin.encrypt";
  payhsm_key *k = payhsm_checkkey(L, 1);
  int fmt = payhsm_checkname(L, 2, "PIN block format", formats), r;
  size_t pn, an;
  const char *pin = luaL_checklstring(L, 3, &pn), *pan = opt_pan(L, 4, &an);
  unsigned char out[16];
  pin_err e;
  if ((r = key_fits(L, k, fmt, fn, 1))) return r;
  if (!encipher(L, k, fmt, pin, pn, pan, an, out, &e)) return fail(L, fn, &e);
  payhsm_pushhex(L, out, block_len(fmt));
  return 1;
}

/* core.pin.decrypt(key, fmt, block_hex, pan) -> pin */
static int pin_decrypt(lua_State *L) {
  static const char fn[] = "pin.decrypt";
  payhsm_key *k = payhsm_checkkey(L, 1);
  int fmt = payhsm_checkname(L, 2, "PIN block format", formats), r;
  size_t an, pn;
  const char *pan = opt_pan(L, 4, &an);
  unsigned char blk[16];
  char pin[12];
  pin_err e;
  if ((r = key_fits(L, k, fmt, fn, 0))) return r;
  if (block_arg(L, 3, fn, fmt, blk) == (size_t)-1) return 3;
  if (!decipher(L, k, fmt, blk, pan, an, pin, &pn, &e)) return fail(L, fn, &e);
  lua_pushlstring(L, pin, pn);
  OPENSSL_cleanse(pin, sizeof pin);
  return 1;
}

/* Whether a translation from ISO format `from` to `to` is allowed (rules in the header). */
static int translation_allowed(int from, int to) {
  int pan_bound_in = from == 0 || from == 3 || from == 4;
  if (pan_bound_in) return to == 0 || to == 3 || to == 4;
  if (from == 2) return to == 2;
  return 1;
}

/* core.pin.translate(in_key, in_fmt, block_hex, out_key, out_fmt, pan [, out_pan]) -> block hex */
static int pin_translate(lua_State *L) {
  static const char fn[] = "pin.translate";
  payhsm_key *ik = payhsm_checkkey(L, 1), *ok;
  int ifmt = payhsm_checkname(L, 2, "PIN block format", formats), ofmt, r;
  size_t an, on, pn;
  const char *pan, *opan;
  unsigned char blk[16], out[16];
  char pin[12];
  pin_err e;
  ok = payhsm_checkkey(L, 4);
  ofmt = payhsm_checkname(L, 5, "PIN block format", formats);
  pan = opt_pan(L, 6, &an);
  opan = lua_isnoneornil(L, 7) ? pan : luaL_checklstring(L, 7, &on);
  if (lua_isnoneornil(L, 7)) on = an;
  if (!translation_allowed(ifmt, ofmt))
    return payhsm_fail(L, fn, "PIN_TRANSLATION", "ISO format %d cannot be translated to ISO format %d%s", ifmt, ofmt,
                       ofmt == 1 || ofmt == 2 ? " (the PIN would no longer be bound to its PAN)" : "");
  if ((r = key_fits(L, ik, ifmt, fn, 0)) || (r = key_fits(L, ok, ofmt, fn, 1))) return r;
  if (block_arg(L, 3, fn, ifmt, blk) == (size_t)-1) return 3;
  if (!decipher(L, ik, ifmt, blk, pan, an, pin, &pn, &e)) return fail(L, fn, &e);
  r = encipher(L, ok, ofmt, pin, pn, opan, on, out, &e);
  OPENSSL_cleanse(pin, sizeof pin);
  if (!r) return fail(L, fn, &e);
  payhsm_pushhex(L, out, block_len(ofmt));
  return 1;
}

void payhsm_pinblock_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"format", pin_format}, {"parse", pin_parse}, {"encrypt", pin_encrypt},
    {"decrypt", pin_decrypt}, {"translate", pin_translate}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "pin");
}
