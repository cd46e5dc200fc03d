/*
 * pinverify.c - PIN verification values: Visa PVV and IBM 3624 PIN offsets.
 *
 * From a clear PIN (for test scripts) or from an enciphered ISO 9564-1 PIN block, whose
 * PIN is deciphered and checked here and never reaches Lua.
 *
 * Visa PVV (Visa PIN verification; IBM CCA "VISA-PVV", Thales payShield DG/EC):
 *   TSP = the 11 rightmost PAN digits without the check digit || PVKI || the 4 leftmost
 *   PIN digits; R = TDES(PVK)[TSP]; the PVV is R's first 4 digits by the CVV
 *   decimalization (decimal digits left to right, then A-F as 0-5).
 * IBM 3624 (IBM 3624 PIN generation and offset, ANSI X9.8-1 / ISO 9564-1 Annex on PIN
 *   verification; IBM CCA "IBM-PIN", "IBM-PINO"): the validation data (up to 16 hex
 *   digits, right-padded with pad_char) is enciphered under the PVK; its 16 hex digits
 *   map through the decimalization table (16 decimal digits, one per hex digit 0-F);
 *   the leftmost N are the natural PIN. The offset is (PIN - natural PIN) digit by digit
 *   modulo 10; verification adds the offset back and compares. The offset has as many
 *   digits as the PIN.
 *
 * Lua (added to core.pin): visa_pvv, ibm3624_offset, ibm3624_natural_pin, verify,
 * generate_pvv, generate_offset.
 * Keys: PVK TDES_2KEY or TDES_3KEY, usage V2 (PVV) or V1 (IBM 3624) or none, mode C/G/N
 * to generate and C/V/N to verify; PEK as for pin.decrypt (P0, formats 0-3 TDES, 4 AES;
 * keys derived by DUKPT are ordinary P0 keys). Codes: PIN_LENGTH, PIN_DIGITS,
 * PAN_LENGTH, PAN_DIGITS, PIN_PVKI, PIN_PVV, PIN_OFFSET, PIN_DECIMALIZATION_TABLE,
 * PIN_VALIDATION_DATA, PIN_PAD_CHAR, BAD_HEX, BAD_LENGTH, PIN_FORMAT, KEY_TYPE,
 * KEY_USAGE, VERIFICATION_FAILED. pin.verify returns true or false with a message and
 * code (also for malformed input); PVVs and PINs are compared with CRYPTO_memcmp.
 * Messages never contain PIN digits.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "payhsm.h"

static int hexdigit(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static int all_digits(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

static int pvk_fits(lua_State *L, payhsm_key *k, const char *fn, const char *usage, int verify) {
  int r;
  if ((r = payhsm_key_usage(L, k, fn, usage, verify ? "CVN" : "CGN"))) return r;
  if (k->alg != PAYHSM_ALG_TDES_2KEY && k->alg != PAYHSM_ALG_TDES_3KEY)
    return payhsm_fail(L, fn, "KEY_TYPE", "PIN verification keys are TDES_2KEY or TDES_3KEY, got %s",
                       payhsm_alg_name(k->alg));
  return 0;
}

static int check_pin(lua_State *L, const char *fn, const char *pin, size_t n) {
  if (n < 4 || n > 12) return payhsm_fail(L, fn, "PIN_LENGTH", "PIN must be 4 to 12 digits");
  if (!all_digits(pin, n)) return payhsm_fail(L, fn, "PIN_DIGITS", "PIN must be decimal digits");
  return 0;
}

static int check_pan(lua_State *L, const char *fn, const char *pan, size_t n) {
  if (!pan || n < 12 || n > 19) return payhsm_fail(L, fn, "PAN_LENGTH", "PAN must be 12 to 19 digits");
  if (!all_digits(pan, n)) return payhsm_fail(L, fn, "PAN_DIGITS", "PAN must be decimal digits");
  return 0;
}

static int check_pvki(lua_State *L, const char *fn, const char *pvki, size_t n) {
  if (n != 1 || pvki[0] < '0' || pvki[0] > '6')
    return payhsm_fail(L, fn, "PIN_PVKI", "PVKI must be one digit, 0 to 6");
  return 0;
}

/* ---- Visa PVV -------------------------------------------------------------------- */

/* The PVV of pin (4 leftmost digits used) into out (4 digits). pan and pvki checked. */
static int pvv_compute(lua_State *L, payhsm_key *pvk, const char *pan, size_t pn, char pvki,
                       const char *pin, char out[4]) {
  unsigned char tsp[8], r[8];
  char d[16];
  size_t i, n = 0;
  int pass, ok;
  memcpy(d, pan + pn - 12, 11);
  d[11] = pvki;
  memcpy(d + 12, pin, 4);
  for (i = 0; i < 8; i++) tsp[i] = (unsigned char)(((d[2 * i] - '0') << 4) | (d[2 * i + 1] - '0'));
  ok = payhsm_key_crypt(L, pvk, 1, NULL, tsp, r, 8);
  for (pass = 0; ok && pass < 2 && n < 4; pass++)
    for (i = 0; i < 16 && n < 4; i++) {
      unsigned v = i % 2 ? r[i / 2] & 15u : r[i / 2] >> 4;
      if (pass == 0 && v < 10) out[n++] = (char)('0' + v);
      else if (pass == 1 && v >= 10) out[n++] = (char)('0' + v - 10);
    }
  OPENSSL_cleanse(d, sizeof d);
  OPENSSL_cleanse(tsp, sizeof tsp);
  OPENSSL_cleanse(r, sizeof r);
  return ok;
}

/*
 * pin.visa_pvv(pvk, pin, pan, pvki) -> "NNNN": the Visa PIN verification value of a
 * clear PIN (4 to 12 digits; the 4 leftmost enter the TSP), the PAN (12 to 19 digits)
 * and the PIN verification key index pvki ("0" to "6"). PVK usage V2 or none. Codes:
 * PIN_LENGTH, PIN_DIGITS, PAN_LENGTH, PAN_DIGITS, PIN_PVKI, KEY_TYPE, KEY_USAGE.
 */
static int pin_visa_pvv(lua_State *L) {
  static const char fn[] = "pin.visa_pvv";
  payhsm_key *pvk = payhsm_checkkey(L, 1);
  size_t pn, an, kn;
  const char *pin = luaL_checklstring(L, 2, &pn), *pan = luaL_checklstring(L, 3, &an),
             *pvki = luaL_checklstring(L, 4, &kn);
  char out[4];
  int r;
  if ((r = pvk_fits(L, pvk, fn, "V2", 0)) || (r = check_pin(L, fn, pin, pn)) ||
      (r = check_pan(L, fn, pan, an)) || (r = check_pvki(L, fn, pvki, kn)))
    return r;
  if (!pvv_compute(L, pvk, pan, an, pvki[0], pin, out)) return payhsm_raise_ossl(L, fn);
  lua_pushlstring(L, out, 4);
  return 1;
}

/* ---- IBM 3624 -------------------------------------------------------------------- */

typedef struct {
  char table[16];          /* decimalization table: digit for each hex digit 0-F */
  unsigned char vdata[8];  /* validation data block, padded */
  lua_Integer pin_length;  /* p.pin_length, 0 if absent */
} ibm_params;

static const char *const ibm_fields[] = {"decimalization_table", "validation_data", "pad_char",
                                         "pin_length", NULL};

/* Reads and checks the IBM 3624 fields of the table at idx; 0 or 3 after pushing. */
static int ibm_read(lua_State *L, int idx, const char *fn, ibm_params *p) {
  size_t tn, vn, cn = 1, i;
  const char *t = payhsm_optfield_str(L, idx, "decimalization_table", &tn);
  const char *v = payhsm_optfield_str(L, idx, "validation_data", &vn);
  const char *pad = payhsm_optfield_str(L, idx, "pad_char", &cn);
  char digits[16];
  if (!t) return luaL_error(L, "%s: field 'decimalization_table' is required", fn);
  if (!v) return luaL_error(L, "%s: field 'validation_data' is required", fn);
  p->pin_length = payhsm_optfield_int(L, idx, "pin_length", 0);
  if (tn != 16 || !all_digits(t, tn))
    return payhsm_fail(L, fn, "PIN_DECIMALIZATION_TABLE", "decimalization table must be 16 decimal digits");
  memcpy(p->table, t, 16);
  if (!pad) pad = "F";
  if (cn != 1 || hexdigit((unsigned char)pad[0]) < 0)
    return payhsm_fail(L, fn, "PIN_PAD_CHAR", "pad character must be one hex digit");
  if (vn < 1 || vn > 16)
    return payhsm_fail(L, fn, "PIN_VALIDATION_DATA", "validation data must be 1 to 16 hex digits");
  for (i = 0; i < 16; i++) {
    int d = hexdigit(i < vn ? (unsigned char)v[i] : (unsigned char)pad[0]);
    if (d < 0) return payhsm_fail(L, fn, "BAD_HEX", "validation data is not valid hex");
    digits[i] = (char)d;
  }
  for (i = 0; i < 8; i++) p->vdata[i] = (unsigned char)((digits[2 * i] << 4) | digits[2 * i + 1]);
  return 0;
}

/* The 16 decimalized digits of the enciphered validation data (values 0-9). */
static int ibm_natural(lua_State *L, payhsm_key *pvk, const ibm_params *p, unsigned char nat[16]) {
  unsigned char r[8];
  size_t i;
  if (!payhsm_key_crypt(L, pvk, 1, NULL, p->vdata, r, 8)) return 0;
  for (i = 0; i < 16; i++) nat[i] = (unsigned char)(p->table[i % 2 ? r[i / 2] & 15u : r[i / 2] >> 4] - '0');
  OPENSSL_cleanse(r, sizeof r);
  return 1;
}

/* Offset of pin (n digits) into out. */
static int ibm_offset(lua_State *L, payhsm_key *pvk, const ibm_params *p, const char *pin, size_t n,
                      char *out) {
  unsigned char nat[16];
  size_t i;
  if (!ibm_natural(L, pvk, p, nat)) return 0;
  for (i = 0; i < n; i++) out[i] = (char)('0' + (pin[i] - '0' + 10 - nat[i]) % 10);
  OPENSSL_cleanse(nat, sizeof nat);
  return 1;
}

/*
 * pin.ibm3624_offset(pvk, pin, p) -> offset: the IBM 3624 offset of a clear PIN (4 to
 * 12 digits; the offset has as many), p = {decimalization_table = 16 digits,
 * validation_data = 1 to 16 hex digits, pad_char = hex digit (default "F"),
 * pin_length = n (optional; must be the PIN's length)}. PVK usage V1 or none. Codes:
 * PIN_LENGTH, PIN_DIGITS, PIN_DECIMALIZATION_TABLE, PIN_VALIDATION_DATA, PIN_PAD_CHAR,
 * BAD_HEX, KEY_TYPE, KEY_USAGE.
 */
static int pin_ibm3624_offset(lua_State *L) {
  static const char fn[] = "pin.ibm3624_offset";
  payhsm_key *pvk = payhsm_checkkey(L, 1);
  size_t pn;
  const char *pin = luaL_checklstring(L, 2, &pn);
  ibm_params p;
  char out[12];
  int r;
  luaL_checktype(L, 3, LUA_TTABLE);
  payhsm_checkfields(L, 3, fn, ibm_fields);
  if ((r = pvk_fits(L, pvk, fn, "V1", 0)) || (r = ibm_read(L, 3, fn, &p)) || (r = check_pin(L, fn, pin, pn)))
    return r;
  if (p.pin_length && (size_t)p.pin_length != pn)
    return payhsm_fail(L, fn, "PIN_LENGTH", "PIN length differs from p.pin_length");
  if (!ibm_offset(L, pvk, &p, pin, pn, out)) return payhsm_raise_ossl(L, fn);
  lua_pushlstring(L, out, pn);
  return 1;
}

/*
 * pin.ibm3624_natural_pin(pvk, p) -> pin: the IBM 3624 natural PIN of p.pin_length
 * digits (4 to 12, default 4), p as for pin.ibm3624_offset. PVK usage V1 or none.
 * Codes: PIN_LENGTH, PIN_DECIMALIZATION_TABLE, PIN_VALIDATION_DATA, PIN_PAD_CHAR,
 * BAD_HEX, KEY_TYPE, KEY_USAGE.
 */
static int pin_ibm3624_natural_pin(lua_State *L) {
  static const char fn[] = "pin.ibm3624_natural_pin";
  payhsm_key *pvk = payhsm_checkkey(L, 1);
  ibm_params p;
  unsigned char nat[16];
  char out[12];
  size_t i, n;
  int r;
  luaL_checktype(L, 2, LUA_TTABLE);
  payhsm_checkfields(L, 2, fn, ibm_fields);
  if ((r = pvk_fits(L, pvk, fn, "V1", 0)) || (r = ibm_read(L, 2, fn, &p))) return r;
  n = p.pin_length ? (size_t)p.pin_length : 4;
  if (p.pin_length < 0 || n < 4 || n > 12) return payhsm_fail(L, fn, "PIN_LENGTH", "pin_length must be 4 to 12");
  if (!ibm_natural(L, pvk, &p, nat)) return payhsm_raise_ossl(L, fn);
  for (i = 0; i < n; i++) out[i] = (char)('0' + nat[i]);
  lua_pushlstring(L, out, n);
  OPENSSL_cleanse(nat, sizeof nat);
  OPENSSL_cleanse(out, sizeof out);
  return 1;
}

/* ---- from an enciphered PIN block --------------------------------------------------- */

static const char *opt_pan(lua_State *L, int idx, size_t *n) {
  if (lua_isnoneornil(L, idx)) { *n = 0; return NULL; }
  return luaL_checklstring(L, idx, n);
}

/* nil, msg, code -> false, msg, code (a verification never answers nil). */
static int as_false(lua_State *L) {
  lua_pushboolean(L, 0);
  lua_replace(L, -4);
  return 3;
}

static const char *const verify_methods[] = {"VISA_PVV", "IBM3624", NULL};
static const char *const pvv_fields[] = {"method", "pvki", "pvv", NULL};
static const char *const ibm_verify_fields[] = {"method", "offset", "decimalization_table",
                                                "validation_data", "pad_char", NULL};

/*
 * pin.verify(pvk, pek, fmt, block_hex, pan, v) -> true | false, msg, code: deciphers the
 * ISO 9564-1 PIN block (fmt "ISO_FORMAT_0".."ISO_FORMAT_4", PEK usage P0) and checks
 * its PIN without it leaving C. v = {method = "VISA_PVV", pvki =, pvv = 4 digits} or
 * {method = "IBM3624", offset = 4 to 12 digits, decimalization_table =,
 * validation_data =, pad_char =} (the PIN must have as many digits as the offset).
 * A wrong PIN gives false, msg, "VERIFICATION_FAILED"; malformed input false with its
 * own code (PIN_PVV, PIN_OFFSET, PIN_PVKI and those of pin.decrypt, pin.visa_pvv and
 * pin.ibm3624_offset). An unknown method or option raises.
 */
static int pin_verify(lua_State *L) {
  static const char fn[] = "pin.verify";
  payhsm_key *pvk = payhsm_checkkey(L, 1), *pek = payhsm_checkkey(L, 2);
  int fmt = payhsm_pin_checkformat(L, 3), method, r, ok;
  size_t an, pn = 0, kn = 0, vn = 0;
  const char *pan = opt_pan(L, 5, &an), *pvki = NULL, *pvv = NULL;
  char pin[12], mine[12];
  ibm_params p;
  luaL_checkstring(L, 4);
  luaL_checktype(L, 6, LUA_TTABLE);
  lua_getfield(L, 6, "method");
  method = payhsm_checkname(L, -1, "verification method", verify_methods);
  lua_pop(L, 1);
  payhsm_checkfields(L, 6, fn, method == 0 ? pvv_fields : ibm_verify_fields);
  if (method == 0) {
    pvki = payhsm_optfield_str(L, 6, "pvki", &kn);
    pvv = payhsm_optfield_str(L, 6, "pvv", &vn);
    if (!pvki || !pvv) return luaL_error(L, "%s: VISA_PVV needs fields 'pvki' and 'pvv'", fn);
    if ((r = pvk_fits(L, pvk, fn, "V2", 1)) || (r = check_pan(L, fn, pan, an)) ||
        (r = check_pvki(L, fn, pvki, kn)))
      return as_false(L);
    if (vn != 4 || !all_digits(pvv, vn)) return payhsm_false(L, fn, "PIN_PVV", "PVV must be 4 digits");
  } else {
    pvv = payhsm_optfield_str(L, 6, "offset", &vn); /* the offset */
    if (!pvv) return luaL_error(L, "%s: IBM3624 needs field 'offset'", fn);
    if ((r = pvk_fits(L, pvk, fn, "V1", 1)) || (r = ibm_read(L, 6, fn, &p))) return as_false(L);
    if (vn < 4 || vn > 12 || !all_digits(pvv, vn))
      return payhsm_false(L, fn, "PIN_OFFSET", "offset must be 4 to 12 digits");
  }
  if (payhsm_pin_decrypt_block(L, fn, pek, fmt, 4, pan, an, pin, &pn)) return as_false(L);
  if (method == 0) {
    ok = pvv_compute(L, pvk, pan, an, pvki[0], pin, mine);
    r = ok && CRYPTO_memcmp(mine, pvv, 4) == 0;
  } else {
    size_t i;
    unsigned char nat[16];
    ok = ibm_natural(L, pvk, &p, nat);
    for (i = 0; i < vn; i++) mine[i] = (char)('0' + (nat[i] + pvv[i] - '0') % 10);
    OPENSSL_cleanse(nat, sizeof nat);
    r = ok && pn == vn && CRYPTO_memcmp(mine, pin, vn) == 0;
  }
  OPENSSL_cleanse(pin, sizeof pin);
  OPENSSL_cleanse(mine, sizeof mine);
  if (!ok) return payhsm_raise_ossl(L, fn);
  if (!r) return payhsm_false(L, fn, "VERIFICATION_FAILED", "PIN does not verify");
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * pin.generate_pvv(pvk, pek, fmt, block_hex, pan, pvki) -> pvv: the Visa PVV of the PIN
 * inside the enciphered block (the PIN stays in C). Codes: those of pin.decrypt and
 * pin.visa_pvv.
 */
static int pin_generate_pvv(lua_State *L) {
  static const char fn[] = "pin.generate_pvv";
  payhsm_key *pvk = payhsm_checkkey(L, 1), *pek = payhsm_checkkey(L, 2);
  int fmt = payhsm_pin_checkformat(L, 3), r;
  size_t an, kn, pn;
  const char *pan = opt_pan(L, 5, &an), *pvki = luaL_checklstring(L, 6, &kn);
  char pin[12], out[4];
  luaL_checkstring(L, 4);
  if ((r = pvk_fits(L, pvk, fn, "V2", 0)) || (r = check_pan(L, fn, pan, an)) || (r = check_pvki(L, fn, pvki, kn)))
    return r;
  if ((r = payhsm_pin_decrypt_block(L, fn, pek, fmt, 4, pan, an, pin, &pn))) return r;
  r = pvv_compute(L, pvk, pan, an, pvki[0], pin, out);
  OPENSSL_cleanse(pin, sizeof pin);
  if (!r) return payhsm_raise_ossl(L, fn);
  lua_pushlstring(L, out, 4);
  return 1;
}

/*
 * pin.generate_offset(pvk, pek, fmt, block_hex, pan, p) -> offset: the IBM 3624 offset
 * of the PIN inside the enciphered block (as many digits as the PIN), p as for
 * pin.ibm3624_offset. pan may be nil for formats 1 and 2. Codes: those of pin.decrypt
 * and pin.ibm3624_offset.
 */
static int pin_generate_offset(lua_State *L) {
  static const char fn[] = "pin.generate_offset";
  payhsm_key *pvk = payhsm_checkkey(L, 1), *pek = payhsm_checkkey(L, 2);
  int fmt = payhsm_pin_checkformat(L, 3), r;
  size_t an, pn;
  const char *pan = opt_pan(L, 5, &an);
  char pin[12], out[12];
  ibm_params p;
  luaL_checkstring(L, 4);
  luaL_checktype(L, 6, LUA_TTABLE);
  payhsm_checkfields(L, 6, fn, ibm_fields);
  if ((r = pvk_fits(L, pvk, fn, "V1", 0)) || (r = ibm_read(L, 6, fn, &p))) return r;
  if ((r = payhsm_pin_decrypt_block(L, fn, pek, fmt, 4, pan, an, pin, &pn))) return r;
  if (p.pin_length && (size_t)p.pin_length != pn) {
    OPENSSL_cleanse(pin, sizeof pin);
    return payhsm_fail(L, fn, "PIN_LENGTH", "PIN length differs from p.pin_length");
  }
  r = ibm_offset(L, pvk, &p, pin, pn, out);
  OPENSSL_cleanse(pin, sizeof pin);
  if (!r) return payhsm_raise_ossl(L, fn);
  lua_pushlstring(L, out, pn);
  return 1;
}

void payhsm_pinverify_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"visa_pvv", pin_visa_pvv}, {"ibm3624_offset", pin_ibm3624_offset},
    {"ibm3624_natural_pin", pin_ibm3624_natural_pin}, {"verify", pin_verify},
    {"generate_pvv", pin_generate_pvv}, {"generate_offset", pin_generate_offset},
    {NULL, NULL}};
  lua_getfield(L, -1, "pin");
  if (!lua_istable(L, -1)) luaL_error(L, "payhsm.core: the pin table must be opened first");
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
