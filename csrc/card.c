/*
 * card.c - card verification values: Visa CVV / Mastercard CVC, CVV2, iCVV, dCVV, CVC3.
 *
 * CVV (Visa and Mastercard use one algorithm; IBM CCA "Visa CVV Service Generate",
 * Thales payShield CW/CY): PAN || expiry (YYMM) || service code, right-padded with
 * zeros to 32 digits, split into blocks B1 and B2; R = TDES(CVK)[DES(K1)[B1] xor B2]
 * (which is ISO 9797-1 MAC algorithm 3 over B1 || B2). Decimalize R's 16 digits: the
 * decimal digits left to right, then, if fewer than needed, the digits A-F left to
 * right as 0-5. The value is the first 3. CVV2 takes service code 000, iCVV 999.
 * dCVV (Visa contactless magnetic-stripe data; Thales payShield PM/PN, jPOS
 * JCESecurityModule): the CVV algorithm under the card's own key with the PAN's first
 * four digits replaced by the ATC (4 hex digits). The card key (EMV 4.4 Book 2 A1.4,
 * hsm.emv.derive_icc_master_key) already binds the PAN sequence number.
 * CVC3 (Mastercard PayPass / contactless M/Chip, as pyemv computes it): IVCVC3 = the
 * rightmost 2 bytes of ISO 9797-1 MAC algorithm 3 (padding method 2) over the track 1
 * or track 2 data under the card's CVC3 key; CVC3 = the rightmost 2 bytes of
 * TDES(key)[IVCVC3 || UN || ATC] as a 5-digit decimal number (leading zeros kept).
 *
 * Lua: core.card.cvv / verify_cvv, dcvv / verify_dcvv, cvc3 / verify_cvc3.
 * Keys: TDES_2KEY. CVK usage C0 (or none), mode C/G/N to generate, C/V/N to verify;
 * card keys (dCVV, CVC3) usage E0, E4, E6 or C0 (or none). Codes: PAN_LENGTH, PAN_DIGITS,
 * CARD_EXPIRY, CARD_SERVICE_CODE, CARD_ATC, CARD_UN, CARD_PSN, CARD_TRACK_DATA,
 * CARD_VALUE, BAD_HEX, KEY_TYPE, KEY_USAGE, VERIFICATION_FAILED. Every verify_...
 * returns true, or false with a message and code (also for malformed input, as
 * mac.verify does); values are compared in constant time (CRYPTO_memcmp).
 */
#include <string.h>

#include <openssl/crypto.h>

#include "payhsm.h"

/* The usages of a card key for dCVV and CVC3: AWS Payment Cryptography derives it from
 * an IMK of TR31_E4_EMV_MKEY_DYNAMIC_NUMBERS (its user guide, Mastercard DCVC3), the
 * derived ICC key keeping that usage (emv.derive_icc_master_key); E6 (other EMV master
 * key) and C0 as well. E0 stays: it is what an ICC key derived from an IMK without
 * usage carries. Secure messaging and personalization keys (E1, E2, E3, E5) are refused. */
#define CARD_KEY_USAGES "E0 E4 E6 C0"

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

/* Packs n hex digits (n <= 32), right-padded with zeros, into 16 bytes. */
static void pack32(const char *s, size_t n, unsigned char out[16]) {
  size_t i;
  memset(out, 0, 16);
  for (i = 0; i < n; i++) {
    unsigned v = (unsigned)hexdigit((unsigned char)s[i]);
    out[i / 2] = (unsigned char)(out[i / 2] | (i % 2 ? v : v << 4));
  }
}

/* The decimalization of CVV and PVV: the decimal digits of r (8 bytes, 16 digits)
 * left to right, then its digits A-F left to right as 0-5, until want digits. */
static void decimalize(const unsigned char r[8], char *out, size_t want) {
  size_t i, n = 0;
  int pass;
  for (pass = 0; pass < 2 && n < want; pass++)
    for (i = 0; i < 16 && n < want; i++) {
      unsigned d = i % 2 ? r[i / 2] & 15u : r[i / 2] >> 4;
      if (pass == 0 && d < 10) out[n++] = (char)('0' + d);
      else if (pass == 1 && d >= 10) out[n++] = (char)('0' + d - 10);
    }
}

static int key_fits(lua_State *L, payhsm_key *k, const char *fn, const char *usages, const char *modes) {
  int r;
  if ((r = payhsm_key_usage(L, k, fn, usages, modes))) return r;
  if (k->alg != PAYHSM_ALG_TDES_2KEY)
    return payhsm_fail(L, fn, "KEY_TYPE", "needs a TDES_2KEY key, got %s", payhsm_alg_name(k->alg));
  return 0;
}

/* Pushes the failure (nil, or false for verify) and returns 3. */
static int bad(lua_State *L, int verify, const char *fn, const char *code, const char *msg) {
  if (verify) return payhsm_false(L, fn, code, "%s", msg);
  return payhsm_fail(L, fn, code, "%s", msg);
}

static int check_pan(lua_State *L, int verify, const char *fn, const char *pan, size_t n) {
  if (n < 12 || n > 19) return bad(L, verify, fn, "PAN_LENGTH", "PAN must be 12 to 19 digits");
  if (!all_digits(pan, n)) return bad(L, verify, fn, "PAN_DIGITS", "PAN must be decimal digits");
  return 0;
}

static int check_expiry_sc(lua_State *L, int verify, const char *fn, const char *exp, size_t en,
                           const char *sc, size_t sn) {
  if (en != 4 || !all_digits(exp, en))
    return bad(L, verify, fn, "CARD_EXPIRY", "expiry must be 4 digits (YYMM)");
  if (sn != 3 || !all_digits(sc, sn))
    return bad(L, verify, fn, "CARD_SERVICE_CODE", "service code must be 3 digits");
  return 0;
}

/* R of the CVV algorithm over the digit string data (up to 32 hex digits). */
static int cvv_block(lua_State *L, payhsm_key *k, const char *data, size_t n, unsigned char r[8]) {
  unsigned char blk[16];
  pack32(data, n, blk);
  return payhsm_mac_alg3(L, k, blk, 16, r);
}

/* Reads a string field of the options table at idx (raises when absent or not a string). */
static const char *field(lua_State *L, int idx, const char *fn, const char *name, size_t *n) {
  const char *s = payhsm_optfield_str(L, idx, name, n);
  if (!s) luaL_error(L, "%s: field '%s' is required", fn, name);
  return s;
}

/* Compares the computed digits with the given value and pushes the verdict. */
static int verdict(lua_State *L, const char *fn, const char *what, const char *mine, const char *given,
                   size_t n) {
  if (CRYPTO_memcmp(mine, given, n) != 0)
    return payhsm_false(L, fn, "VERIFICATION_FAILED", "%s does not match", what);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- CVV, CVV2, iCVV ---------------------------------------------------------- */

/* CVV of the arguments at 1..4 into out (3 digits); 0 on success or 3 after pushing. */
static int cvv_of(lua_State *L, const char *fn, int verify, char out[3]) {
  payhsm_key *k = payhsm_checkkey(L, 1);
  size_t pn, en, sn;
  const char *pan = luaL_checklstring(L, 2, &pn), *exp = luaL_checklstring(L, 3, &en),
             *sc = luaL_checklstring(L, 4, &sn);
  char data[32];
  unsigned char r[8];
  int rc;
  if ((rc = key_fits(L, k, fn, "C0", verify ? "CVN" : "CGN"))) {
    if (verify) { lua_pushboolean(L, 0); lua_replace(L, -4); }
    return rc;
  }
  if ((rc = check_pan(L, verify, fn, pan, pn)) || (rc = check_expiry_sc(L, verify, fn, exp, en, sc, sn)))
    return rc;
  memcpy(data, pan, pn);
  memcpy(data + pn, exp, 4);
  memcpy(data + pn + 4, sc, 3);
  if (!cvv_block(L, k, data, pn + 7, r)) return payhsm_raise_ossl(L, fn);
  decimalize(r, out, 3);
  OPENSSL_cleanse(r, sizeof r);
  return 0;
}

/*
 * card.cvv(cvk, pan, expiry, service_code) -> "NNN": Visa CVV / Mastercard CVC over the
 * PAN (12 to 19 digits), the expiry as YYMM and the 3-digit service code (CVV2: "000",
 * iCVV: "999"). CVK TDES_2KEY, usage C0 or none. Codes: PAN_LENGTH, PAN_DIGITS,
 * CARD_EXPIRY, CARD_SERVICE_CODE, KEY_TYPE, KEY_USAGE.
 */
static int card_cvv(lua_State *L) {
  char out[3];
  int rc = cvv_of(L, "card.cvv", 0, out);
  if (rc) return rc;
  lua_pushlstring(L, out, 3);
  return 1;
}

/*
 * card.verify_cvv(cvk, pan, expiry, service_code, value) -> true | false, msg, code:
 * compares the 3-digit value in constant time. Codes: VERIFICATION_FAILED, CARD_VALUE
 * (not 3 digits) and those of card.cvv.
 */
static int card_verify_cvv(lua_State *L) {
  static const char fn[] = "card.verify_cvv";
  char out[3];
  size_t vn;
  const char *v = luaL_checklstring(L, 5, &vn);
  int rc = cvv_of(L, fn, 1, out);
  if (rc) return rc;
  if (vn != 3 || !all_digits(v, vn)) return payhsm_false(L, fn, "CARD_VALUE", "CVV must be 3 digits");
  return verdict(L, fn, "CVV", out, v, 3);
}

/* ---- dCVV ------------------------------------------------------------------------ */

static const char *const dcvv_fields[] = {"pan", "psn", "expiry", "service_code", "atc", NULL};

static int dcvv_of(lua_State *L, const char *fn, int verify, char out[3]) {
  payhsm_key *k = payhsm_checkkey(L, 1);
  size_t pn, en, sn, an, qn = 0, i;
  const char *pan, *exp, *sc, *atc, *psn;
  char data[32];
  unsigned char r[8];
  int rc;
  luaL_checktype(L, 2, LUA_TTABLE);
  payhsm_checkfields(L, 2, fn, dcvv_fields);
  pan = field(L, 2, fn, "pan", &pn);
  exp = field(L, 2, fn, "expiry", &en);
  sc = field(L, 2, fn, "service_code", &sn);
  atc = field(L, 2, fn, "atc", &an);
  psn = payhsm_optfield_str(L, 2, "psn", &qn);
  if ((rc = key_fits(L, k, fn, CARD_KEY_USAGES, verify ? "CVNX" : "CGNX"))) {
    if (verify) { lua_pushboolean(L, 0); lua_replace(L, -4); }
    return rc;
  }
  if ((rc = check_pan(L, verify, fn, pan, pn)) || (rc = check_expiry_sc(L, verify, fn, exp, en, sc, sn)))
    return rc;
  if (psn && (qn != 2 || !all_digits(psn, qn)))
    return bad(L, verify, fn, "CARD_PSN", "PAN sequence number must be 2 digits");
  if (an != 4) return bad(L, verify, fn, "CARD_ATC", "ATC must be 2 bytes (4 hex digits)");
  for (i = 0; i < 4; i++)
    if (hexdigit((unsigned char)atc[i]) < 0) return bad(L, verify, fn, "BAD_HEX", "ATC is not valid hex");
  memcpy(data, atc, 4);
  memcpy(data + 4, pan + 4, pn - 4);
  memcpy(data + pn, exp, 4);
  memcpy(data + pn + 4, sc, 3);
  if (!cvv_block(L, k, data, pn + 7, r)) return payhsm_raise_ossl(L, fn);
  decimalize(r, out, 3);
  OPENSSL_cleanse(r, sizeof r);
  return 0;
}

/*
 * card.dcvv(icc_key, {pan=, psn=, expiry=, service_code=, atc=}) -> "NNN": Visa dCVV,
 * the CVV algorithm under the card's key (hsm.emv.derive_icc_master_key of the PAN and
 * PSN) with the ATC (4 hex digits) in place of the PAN's first four digits. psn is
 * optional (2 digits; it enters through the key). Key TDES_2KEY, usage E0, E4, E6, C0 or
 * none. Codes: PAN_LENGTH, PAN_DIGITS, CARD_EXPIRY, CARD_SERVICE_CODE, CARD_PSN,
 * CARD_ATC, BAD_HEX, KEY_TYPE, KEY_USAGE.
 */
static int card_dcvv(lua_State *L) {
  char out[3];
  int rc = dcvv_of(L, "card.dcvv", 0, out);
  if (rc) return rc;
  lua_pushlstring(L, out, 3);
  return 1;
}

/*
 * card.verify_dcvv(icc_key, p, value) -> true | false, msg, code: p as for card.dcvv;
 * value 3 digits (else CARD_VALUE). Code on mismatch: VERIFICATION_FAILED.
 */
static int card_verify_dcvv(lua_State *L) {
  static const char fn[] = "card.verify_dcvv";
  char out[3];
  size_t vn;
  const char *v = luaL_checklstring(L, 3, &vn);
  int rc = dcvv_of(L, fn, 1, out);
  if (rc) return rc;
  if (vn != 3 || !all_digits(v, vn)) return payhsm_false(L, fn, "CARD_VALUE", "dCVV must be 3 digits");
  return verdict(L, fn, "dCVV", out, v, 3);
}

/* ---- CVC3 ------------------------------------------------------------------------ */

static const char *const cvc3_fields[] = {"track_data", "atc", "un", NULL};

/* Track data of up to 160 bytes (two tracks fit), padded by ISO 9797-1 method 2. */
#define TRACK_MAX 160

static int cvc3_of(lua_State *L, const char *fn, int verify, char out[5]) {
  payhsm_key *k = payhsm_checkkey(L, 1);
  unsigned char track[TRACK_MAX + 8], padded[TRACK_MAX + 16], blk[8], mac[8];
  size_t tn, an, un, plen;
  const char *t, *a, *u;
  unsigned v;
  int rc, i;
  luaL_checktype(L, 2, LUA_TTABLE);
  payhsm_checkfields(L, 2, fn, cvc3_fields);
  t = field(L, 2, fn, "track_data", &tn);
  a = field(L, 2, fn, "atc", &an);
  u = field(L, 2, fn, "un", &un);
  if ((rc = key_fits(L, k, fn, CARD_KEY_USAGES, verify ? "CVNX" : "CGNX"))) {
    if (verify) { lua_pushboolean(L, 0); lua_replace(L, -4); }
    return rc;
  }
  if (tn == 0 || tn > 2 * TRACK_MAX)
    return bad(L, verify, fn, "CARD_TRACK_DATA", "track data must be 1 to 160 bytes of hex");
  if ((tn = payhsm_hex_decode(t, tn, track, TRACK_MAX)) == (size_t)-1)
    return bad(L, verify, fn, "BAD_HEX", "track data is not valid hex");
  if (an != 4) return bad(L, verify, fn, "CARD_ATC", "ATC must be 2 bytes (4 hex digits)");
  if (un != 8) return bad(L, verify, fn, "CARD_UN", "unpredictable number must be 4 bytes (8 hex digits)");
  if (payhsm_hex_decode(u, 8, blk + 2, 4) == (size_t)-1 || payhsm_hex_decode(a, 4, blk + 6, 2) == (size_t)-1)
    return bad(L, verify, fn, "BAD_HEX", "ATC or unpredictable number is not valid hex");
  plen = payhsm_iso9797_pad(track, tn, 8, 2, padded);
  if (!payhsm_mac_alg3(L, k, padded, plen, mac)) return payhsm_raise_ossl(L, fn);
  blk[0] = mac[6];
  blk[1] = mac[7];
  if (!payhsm_key_crypt(L, k, 1, NULL, blk, mac, 8)) return payhsm_raise_ossl(L, fn);
  v = ((unsigned)mac[6] << 8) | mac[7];
  for (i = 4; i >= 0; i--, v /= 10) out[i] = (char)('0' + v % 10);
  OPENSSL_cleanse(mac, sizeof mac);
  return 0;
}

/*
 * card.cvc3(icc_cvc3_key, {track_data=, atc=, un=}) -> "NNNNN": Mastercard CVC3 over
 * the track 1 or track 2 data the card's IVCVC3 covers (hex, up to 160 bytes), the ATC
 * (2 bytes hex) and the unpredictable number (4 bytes hex); 5 digits with leading
 * zeros. Key TDES_2KEY, usage E0, E4, E6, C0 or none. Codes: CARD_TRACK_DATA, CARD_ATC,
 * CARD_UN, BAD_HEX, KEY_TYPE, KEY_USAGE.
 */
static int card_cvc3(lua_State *L) {
  char out[5];
  int rc = cvc3_of(L, "card.cvc3", 0, out);
  if (rc) return rc;
  lua_pushlstring(L, out, 5);
  return 1;
}

/*
 * card.verify_cvc3(icc_cvc3_key, p, value) -> true | false, msg, code: value is the 3
 * to 5 digits the track carries, compared with as many rightmost digits of the CVC3
 * (else CARD_VALUE). Code on mismatch: VERIFICATION_FAILED.
 */
static int card_verify_cvc3(lua_State *L) {
  static const char fn[] = "card.verify_cvc3";
  char out[5];
  size_t vn;
  const char *v = luaL_checklstring(L, 3, &vn);
  int rc = cvc3_of(L, fn, 1, out);
  if (rc) return rc;
  if (vn < 3 || vn > 5 || !all_digits(v, vn))
    return payhsm_false(L, fn, "CARD_VALUE", "CVC3 must be 3 to 5 digits");
  return verdict(L, fn, "CVC3", out + 5 - vn, v, vn);
}

void payhsm_card_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"cvv", card_cvv}, {"verify_cvv", card_verify_cvv},
    {"dcvv", card_dcvv}, {"verify_dcvv", card_verify_dcvv},
    {"cvc3", card_cvc3}, {"verify_cvc3", card_verify_cvc3},
    {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "card");
}
