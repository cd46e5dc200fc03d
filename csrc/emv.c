/*
 * emv.c - EMV application cryptograms (EMV 4.4 Book 2 section 8 and Annex A1) with
 * the derivations AWS Payment Cryptography offers (its API reference,
 * VerifyAuthRequestCryptogram: EmvCommon, Mastercard, Emv2000, Amex, Visa).
 *
 * ICC master key (Annex A1.4), from a double-length IMK:
 *   option A: Y = rightmost 16 digits of PAN || PSN (left padded with zeros);
 *             MK = TDES(IMK)[Y] || TDES(IMK)[Y xor FF..FF], odd parity.
 *   option B: for PANs of more than 16 digits: SHA-1 over PAN || PSN (BCD, left
 *             padded to whole bytes); Y = the first 16 decimal digits of the hex
 *             digest, then its letters a-f as 0-5 if there are too few; then as A.
 *             PANs of 16 digits or fewer use option A.
 * Session keys:
 *   EMV_COMMON (A1.3): R = ATC || 00 00 00 00 00 00;
 *             SK = TDES(MK)[R with R2 = F0] || TDES(MK)[R with R2 = 0F], odd parity.
 *   MASTERCARD: the same with R = ATC || 00 00 || UN (M/Chip session key).
 *   EMV2000 (EMV 4.1 Book 2 A1.3, tree of height H, branch factor b, IV):
 *             F(X, Y, j) = TDES(X)[Y_L xor (j mod b)] || TDES(X)[Y_R xor (j mod b) xor F0];
 *             IK(0) = MK, IK(-1) = IV, IK(h) = F(IK(h-1), IK(h-2), ATC div b^(H-h));
 *             SK = F(IK(H-1), IK(H-2), ATC) xor IK(H-2), odd parity.
 *   VISA, AMEX: no session key; the ICC master key computes the cryptogram.
 * ARQC: ISO 9797-1 MAC algorithm 3 over the padded transaction data, 8 bytes.
 * Default padding: method 2 (80 00..) for EMV_COMMON, MASTERCARD, EMV2000 and AMEX,
 * method 1 (zeros) for VISA (CVN 10); p.padding = 1 or 2 overrides, 0 means the
 * data is already padded to whole blocks (as AWS expects it).
 * ARPC (Book 2 8.2): method 1 = TDES(SK)[ARQC xor (ARC || 00 * 6)] (8 bytes);
 * method 2 = MAC algorithm 3, padding method 2, over ARQC || CSU || proprietary
 * authentication data, leftmost 4 bytes.
 *
 * Lua: core.emv.derive_icc_master_key(imk, pan, psn, mode) -> key
 *      core.emv.derive_session_key(icc_mk, derivation, p) -> key
 *      core.emv.generate_arqc(imk, p) -> hex;  core.emv.verify_arqc(imk, p) -> bool
 *      core.emv.generate_arpc(imk, p) -> hex;  core.emv.compute_arpc(key, p) -> hex
 * Keys: IMK TDES_2KEY, mode X or N; usage E0 (or none) for the cryptograms and their
 * session keys, E0 to E6 to derive an ICC master key; derived ICC master
 * keys carry mode X, session keys mode N, both the IMK's usage (E0 when it has none).
 * Secure messaging (issuer scripts, PIN change) is in emvsm.c.
 * Codes: PAN_LENGTH, PAN_DIGITS, EMV_PSN, EMV_ATC, EMV_UN, EMV_TREE, BAD_HEX,
 * BAD_LENGTH, ARQC_LENGTH, ARQC_MISMATCH, EMV_ARC, EMV_CSU, KEY_TYPE, KEY_USAGE.
 */
#include <stdio.h>
#include <string.h>

/* DES key schedules (deprecated low-level API, still in libcrypto 3, no legacy provider). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/des.h>
#include <openssl/evp.h>

#include "payhsm.h"

static const char *const modes[] = {"EMV_OPTION_A", "EMV_OPTION_B", NULL};
static const char *const derivations[] = {"EMV_COMMON", "MASTERCARD", "EMV2000", "VISA", "AMEX", NULL};
enum { D_COMMON, D_MASTERCARD, D_EMV2000, D_VISA, D_AMEX };

typedef struct { const char *code; char msg[96]; } emv_err;

static int set_err(emv_err *e, const char *code, const char *msg) {
  e->code = code;
  strncpy(e->msg, msg, sizeof e->msg - 1);
  e->msg[sizeof e->msg - 1] = 0;
  return 0;
}

static int efail(lua_State *L, const char *fn, const emv_err *e) {
  if (!e->code) return payhsm_raise_ossl(L, fn);
  return payhsm_fail(L, fn, e->code, "%s", e->msg);
}

/* Keys derived per call (ICC master keys, session keys) are used once or twice each:
 * they run on OpenSSL's DES key schedules directly (two schedules per double-length
 * key, one single-DES schedule for the CBC part of the retail MAC) instead of an
 * EVP context keyed three times per use. The schedules are cleansed after use.
 * owner is unused by this path but names the key the derived keys come from. */
typedef struct { DES_key_schedule k1, k2; } des2;

static void des2_set(des2 *s, const unsigned char k[16]) {
  DES_cblock b1, b2;
  memcpy(b1, k, 8);
  memcpy(b2, k + 8, 8);
  DES_set_key_unchecked(&b1, &s->k1);
  DES_set_key_unchecked(&b2, &s->k2);
  OPENSSL_cleanse(b1, sizeof b1);
  OPENSSL_cleanse(b2, sizeof b2);
}

static void des2_ecb(des2 *s, const unsigned char *in, unsigned char *out, size_t n) {
  size_t i;
  for (i = 0; i < n; i += 8) {
    DES_cblock x, y;
    memcpy(x, in + i, 8);
    DES_ecb3_encrypt(&x, &y, &s->k1, &s->k2, &s->k1, DES_ENCRYPT);
    memcpy(out + i, y, 8);
  }
}

static int ecb_with(lua_State *L, payhsm_key *owner, const unsigned char k16[16], const unsigned char *in,
                    unsigned char *out, size_t n, emv_err *e) {
  des2 s;
  (void)L; (void)owner; (void)e;
  des2_set(&s, k16);
  des2_ecb(&s, in, out, n);
  OPENSSL_cleanse(&s, sizeof s);
  return 1;
}

/* ISO 9797-1 MAC algorithm 3 under the 16-byte key sk over padded data (n % 8 == 0):
 * single-DES CBC under K1, then e_K1(d_K2(e_K1(.))) on the last block. */
static int alg3_with(lua_State *L, payhsm_key *owner, const unsigned char sk[16], const unsigned char *padded,
                     size_t n, unsigned char out[8], emv_err *e) {
  des2 s;
  DES_cblock h, y;
  size_t i, j;
  (void)L; (void)owner; (void)e;
  des2_set(&s, sk);
  memset(h, 0, 8);
  for (i = 0; i + 8 < n; i += 8) {
    for (j = 0; j < 8; j++) h[j] ^= padded[i + j];
    DES_ecb_encrypt(&h, &y, &s.k1, DES_ENCRYPT);
    memcpy(h, y, 8);
  }
  for (j = 0; j < 8; j++) h[j] ^= padded[n - 8 + j];
  DES_ecb3_encrypt(&h, &y, &s.k1, &s.k2, &s.k1, DES_ENCRYPT);
  memcpy(out, y, 8);
  OPENSSL_cleanse(&s, sizeof s);
  OPENSSL_cleanse(h, sizeof h);
  OPENSSL_cleanse(y, sizeof y);
  return 1;
}

static int tdes_ecb(lua_State *L, payhsm_key *k, const unsigned char *in, unsigned char *out, size_t n,
                    emv_err *e) {
  if (!payhsm_key_crypt(L, k, 1, NULL, in, out, n)) return set_err(e, NULL, "");
  return 1;
}

/* ---- ICC master key -------------------------------------------------------- */

static int digits_ok(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

/* Y for option A or B into y[8] (BCD). */
static int icc_y(int mode, const char *pan, size_t pn, const char *psn, size_t sn, unsigned char y[8],
                 emv_err *e) {
  char d[40];
  size_t n = 0, i;
  if (pn < 1 || pn > 19) return set_err(e, "PAN_LENGTH", "PAN must be 1 to 19 digits");
  if (!digits_ok(pan, pn)) return set_err(e, "PAN_DIGITS", "PAN must be decimal digits");
  if (sn != 2 || !digits_ok(psn, 2)) return set_err(e, "EMV_PSN", "PAN sequence number must be 2 digits");
  if (mode == 1 && pn > 16) {
    unsigned char bcd[11], md[20];
    char hex[40];
    size_t total = pn + 2, nb = (total + 1) / 2, k = 0;
    unsigned int mdlen;
    memset(bcd, 0, sizeof bcd);
    for (i = 0; i < total; i++) { /* right-justified: a leading 0 nibble when odd */
      size_t pos = i + (total % 2);
      unsigned v = (unsigned)((i < pn ? pan[i] : psn[i - pn]) - '0');
      bcd[pos / 2] |= (unsigned char)(pos % 2 ? v : v << 4);
    }
    if (!EVP_Digest(bcd, nb, md, &mdlen, EVP_sha1(), NULL)) return set_err(e, NULL, "");
    payhsm_hex_encode(md, 20, hex);
    for (i = 0; i < 40 && k < 16; i++)
      if (hex[i] <= '9') d[k++] = hex[i];
    for (i = 0; i < 40 && k < 16; i++)
      if (hex[i] > '9') d[k++] = (char)('0' + (hex[i] - 'A'));
    n = 16;
  } else {
    memcpy(d, pan, pn);
    memcpy(d + pn, psn, 2);
    n = pn + 2;
    if (n > 16) {
      memmove(d, d + n - 16, 16);
    } else {
      memmove(d + 16 - n, d, n);
      memset(d, '0', 16 - n);
    }
  }
  for (i = 0; i < 8; i++) y[i] = (unsigned char)(((d[2 * i] - '0') << 4) | (d[2 * i + 1] - '0'));
  return 1;
}

static int icc_mk(lua_State *L, payhsm_key *imk, int mode, const char *pan, size_t pn, const char *psn,
                  size_t sn, unsigned char mk[16], emv_err *e) {
  unsigned char y[16];
  size_t i;
  if (!icc_y(mode, pan, pn, psn, sn, y, e)) return 0;
  for (i = 0; i < 8; i++) y[8 + i] = (unsigned char)~y[i];
  if (!tdes_ecb(L, imk, y, mk, 16, e)) return 0;
  payhsm_des_parity(mk, 16);
  return 1;
}

int payhsm_emv_icc_mk(lua_State *L, const char *fn, payhsm_key *imk, int mode, const char *pan,
                      size_t pn, const char *psn, size_t sn, unsigned char mk[16]) {
  emv_err e;
  if (!icc_mk(L, imk, mode, pan, pn, psn, sn, mk, &e)) return efail(L, fn, &e);
  return 0;
}

/* ---- session keys ------------------------------------------------------------ */

/* SK = TDES(MK)[R with R2 = F0] || TDES(MK)[R with R2 = 0F] */
static int common_sk(lua_State *L, payhsm_key *owner, const unsigned char mk[16], const unsigned char r[8],
                     unsigned char sk[16], emv_err *e) {
  unsigned char in[16];
  int ok;
  memcpy(in, r, 8);
  memcpy(in + 8, r, 8);
  in[2] = 0xF0;
  in[10] = 0x0F;
  ok = ecb_with(L, owner, mk, in, sk, 16, e);
  payhsm_des_parity(sk, 16); /* parity bits do not change any cryptogram */
  return ok;
}

/* F(X, Y, j) of the EMV2000 tree */
static int tree_f(lua_State *L, payhsm_key *owner, const unsigned char x[16], const unsigned char y[16],
                  unsigned long j, unsigned b, unsigned char out[16], emv_err *e) {
  unsigned char in[16];
  unsigned long m = j % b;
  int i;
  memcpy(in, y, 16);
  for (i = 0; i < 8; i++) {
    unsigned char mb = (unsigned char)((m >> (8 * (7 - i))) & 0xFF);
    in[i] ^= mb;
    in[8 + i] ^= mb;
  }
  in[15] ^= 0xF0;
  return ecb_with(L, owner, x, in, out, 16, e);
}

static int emv2000_sk(lua_State *L, payhsm_key *owner, const unsigned char mk[16], unsigned atc, unsigned h, unsigned b,
                      const unsigned char iv[16], unsigned char sk[16], emv_err *e) {
  unsigned char p[16], gp[16], nxt[16];
  unsigned level, i;
  unsigned long bh = 1;
  for (i = 0; i < h; i++) {
    bh *= b;
    if (bh > 65535) break;
  }
  if (h < 1 || h > 32 || b < 2 || b > 16 || bh < 65535)
    return set_err(e, "EMV_TREE", "branch_factor^height must reach 65535 (e.g. b=4, H=8 or b=2, H=16)");
  memcpy(p, mk, 16);
  memcpy(gp, iv, 16);
  for (level = 1; level < h; level++) {
    unsigned long div = 1, j;
    for (i = 0; i < h - level; i++) div *= b;
    j = atc / div;
    if (!tree_f(L, owner, p, gp, j, b, nxt, e)) return 0;
    memcpy(gp, p, 16);
    memcpy(p, nxt, 16);
  }
  if (!tree_f(L, owner, p, gp, atc, b, sk, e)) return 0;
  for (i = 0; i < 16; i++) sk[i] ^= gp[i];
  payhsm_des_parity(sk, 16);
  OPENSSL_cleanse(p, sizeof p);
  OPENSSL_cleanse(gp, sizeof gp);
  OPENSSL_cleanse(nxt, sizeof nxt);
  return 1;
}

/* Transaction parameters read from the table p. */
typedef struct {
  int mode, deriv, padding, has_un, has_iv;
  const char *pan, *psn;
  size_t pn, sn;
  unsigned atc;
  unsigned char un[4], iv[16];
  unsigned height, branch;
} emv_params;

static int hexfield(lua_State *L, int idx, const char *name, unsigned char *out, size_t want,
                    const char *code, emv_err *e, int *present) {
  size_t n;
  const char *s = payhsm_optfield_str(L, idx, name, &n);
  *present = s != NULL;
  if (!s) return 1;
  if (payhsm_hex_decode(s, n, out, want) != want || n != 2 * want) {
    static char msg[64];
    snprintf(msg, sizeof msg, "%s must be %d hex digits", name, (int)(2 * want));
    return set_err(e, payhsm_hex_decode(s, n, out, want) == (size_t)-1 && n <= 2 * want && n % 2 == 0
                      ? "BAD_HEX" : code, msg);
  }
  return 1;
}

/* Reads the derivation inputs of p (table at idx); need_icc: pan/psn/mode needed. */
static int read_params(lua_State *L, int idx, emv_params *q, int need_icc, int deriv, emv_err *e) {
  unsigned char atc[2];
  int present;
  memset(q, 0, sizeof q[0]);
  luaL_checktype(L, idx, LUA_TTABLE);
  if (need_icc) {
    lua_getfield(L, idx, "mode");
    q->mode = lua_isnil(L, -1) ? 0 : payhsm_checkname(L, -1, "ICC master key derivation mode", modes);
    lua_pop(L, 1);
    if (!(q->pan = payhsm_optfield_str(L, idx, "pan", &q->pn))) luaL_error(L, "emv: p.pan is required");
    if (!(q->psn = payhsm_optfield_str(L, idx, "psn", &q->sn))) { q->psn = "00"; q->sn = 2; }
  }
  if (deriv >= 0) {
    q->deriv = deriv;
  } else {
    lua_getfield(L, idx, "derivation");
    q->deriv = lua_isnil(L, -1) ? D_COMMON : payhsm_checkname(L, -1, "session key derivation", derivations);
    lua_pop(L, 1);
  }
  if (!hexfield(L, idx, "atc", atc, 2, "EMV_ATC", e, &present)) return 0;
  if (!present && (q->deriv == D_COMMON || q->deriv == D_MASTERCARD || q->deriv == D_EMV2000))
    return set_err(e, "EMV_ATC", "this derivation needs p.atc (4 hex digits)");
  q->atc = (unsigned)(atc[0] << 8 | atc[1]);
  if (!hexfield(L, idx, "un", q->un, 4, "EMV_UN", e, &q->has_un)) return 0;
  if (q->deriv == D_MASTERCARD && !q->has_un)
    return set_err(e, "EMV_UN", "MASTERCARD derivation needs p.un (8 hex digits)");
  if (!hexfield(L, idx, "iv", q->iv, 16, "EMV_TREE", e, &q->has_iv)) return 0;
  q->height = (unsigned)payhsm_optfield_int(L, idx, "height", 8);
  q->branch = (unsigned)payhsm_optfield_int(L, idx, "branch_factor", 4);
  q->padding = (int)payhsm_optfield_int(L, idx, "padding", q->deriv == D_VISA ? 1 : 2);
  if (q->padding < 0 || q->padding > 2) luaL_error(L, "emv: p.padding must be 0, 1 or 2");
  return 1;
}

/* Session key from an ICC master key (or the ICC MK itself for VISA/AMEX). */
static int session_key(lua_State *L, payhsm_key *owner, const unsigned char mk[16], const emv_params *q, unsigned char sk[16],
                       emv_err *e) {
  unsigned char r[8] = {0};
  r[0] = (unsigned char)(q->atc >> 8);
  r[1] = (unsigned char)q->atc;
  switch (q->deriv) {
    case D_COMMON: return common_sk(L, owner, mk, r, sk, e);
    case D_MASTERCARD: memcpy(r + 4, q->un, 4); return common_sk(L, owner, mk, r, sk, e);
    case D_EMV2000: return emv2000_sk(L, owner, mk, q->atc, q->height, q->branch, q->iv, sk, e);
    default: memcpy(sk, mk, 16); return 1;
  }
}

/* The fields of a transaction parameter table p (the same table serves every function). */
static const char *const p_fields[] = {"mode", "pan", "psn", "derivation", "atc", "un", "iv", "height",
  "branch_factor", "padding", "data", "arqc", "method", "arc", "csu", "proprietary", NULL};

/* usages: the TR-31 usages the function takes. Application cryptograms (ARQC, ARPC and
 * their session keys) take E0 alone, as AWS Payment Cryptography's key attribute table
 * has TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS for them; deriving an ICC master key takes every
 * EMV master key (E1/E2 secure messaging, E4 dynamic numbers, E5 personalization, E6
 * other), the derived key keeping the usage. */
#define AC_USAGES "E0"
#define ANY_EMV_USAGES "E0 E1 E2 E3 E4 E5 E6"
static int check_imk(lua_State *L, payhsm_key *k, const char *fn, const char *usages, const char *modes_ok) {
  int r;
  if ((r = payhsm_key_usage(L, k, fn, usages, modes_ok))) return r;
  if (k->alg != PAYHSM_ALG_TDES_2KEY)
    return payhsm_fail(L, fn, "KEY_TYPE", "EMV keys are TDES_2KEY, got %s", payhsm_alg_name(k->alg));
  return 0;
}

/* Derived keys keep the EMV usage of the key they come from (E1 secure messaging
 * confidentiality, E2 integrity ...); a parent without usage gives E0. */
static payhsm_key *push_derived(lua_State *L, const payhsm_key *parent, const unsigned char *bytes, char mode) {
  payhsm_key *k = payhsm_pushkey(L, PAYHSM_ALG_TDES_2KEY, bytes, 16);
  memcpy(k->usage, parent->usage[0] == 'E' ? parent->usage : "E0", 3);
  k->mode = mode;
  return k;
}

/* core.emv.derive_icc_master_key(imk, pan, psn, mode) -> key | nil, msg, code */
static int emv_derive_icc(lua_State *L) {
  static const char fn[] = "emv.derive_icc_master_key";
  payhsm_key *imk = payhsm_checkkey(L, 1);
  size_t pn, sn;
  const char *pan = luaL_checklstring(L, 2, &pn), *psn = luaL_optlstring(L, 3, "00", &sn);
  int mode = lua_isnoneornil(L, 4) ? 0 : payhsm_checkname(L, 4, "ICC master key derivation mode", modes), r;
  unsigned char mk[16];
  emv_err e;
  if ((r = check_imk(L, imk, fn, ANY_EMV_USAGES, "XN"))) return r;
  if (!icc_mk(L, imk, mode, pan, pn, psn, sn, mk, &e)) return efail(L, fn, &e);
  push_derived(L, imk, mk, 'X');
  OPENSSL_cleanse(mk, sizeof mk);
  return 1;
}

/* core.emv.derive_session_key(icc_mk, derivation, p) -> key | nil, msg, code */
static int emv_derive_sk(lua_State *L) {
  static const char fn[] = "emv.derive_session_key";
  payhsm_key *mk = payhsm_checkkey(L, 1);
  emv_params q;
  emv_err e;
  unsigned char sk[16];
  int r;
  if ((r = check_imk(L, mk, fn, AC_USAGES, "XN"))) return r;
  r = payhsm_checkname(L, 2, "session key derivation", derivations);
  payhsm_checkfields(L, 3, fn, p_fields);
  if (r == D_VISA || r == D_AMEX)
    return luaL_argerror(L, 2, "VISA and AMEX use the ICC master key itself; no session key");
  lua_settop(L, 3);
  if (lua_isnil(L, 3)) { lua_newtable(L); lua_replace(L, 3); }
  if (!read_params(L, 3, &q, 0, r, &e)) return efail(L, fn, &e);
  if (!session_key(L, mk, mk->bytes, &q, sk, &e)) return efail(L, fn, &e);
  push_derived(L, mk, sk, 'N');
  OPENSSL_cleanse(sk, sizeof sk);
  return 1;
}

/* The cryptogram key (session key, or ICC MK for VISA/AMEX) for p at idx. */
static int ac_key(lua_State *L, payhsm_key *imk, int idx, emv_params *q, unsigned char sk[16], emv_err *e) {
  unsigned char mk[16];
  int ok;
  if (!read_params(L, idx, q, 1, -1, e)) return 0;
  if (!icc_mk(L, imk, q->mode, q->pan, q->pn, q->psn, q->sn, mk, e)) return 0;
  ok = session_key(L, imk, mk, q, sk, e);
  OPENSSL_cleanse(mk, sizeof mk);
  return ok;
}

/* ARQC over p.data with sk; out 8 bytes. */
static int arqc_compute(lua_State *L, payhsm_key *owner, const unsigned char sk[16], int idx, int padding, unsigned char out[8],
                        emv_err *e) {
  size_t n, len;
  const char *hex;
  unsigned char stackbuf[520], *buf;
  if (!(hex = payhsm_optfield_str(L, idx, "data", &len))) luaL_error(L, "emv: p.data is required");
  if (len / 2 + 8 <= sizeof stackbuf) buf = stackbuf;
  else buf = lua_newuserdatauv(L, len / 2 + 8, 0);
  n = payhsm_hex_decode(hex, len, buf, len / 2);
  if (n == (size_t)-1) return set_err(e, "BAD_HEX", "transaction data is not valid hex");
  if (padding == 0) {
    if (n == 0 || n % 8) return set_err(e, "BAD_LENGTH", "unpadded transaction data must be whole 8-byte blocks");
  } else {
    n = payhsm_iso9797_pad(buf, n, 8, padding, buf);
  }
  return alg3_with(L, owner, sk, buf, n, out, e);
}

/* core.emv.generate_arqc(imk, p) -> ARQC hex | nil, msg, code */
static int emv_generate_arqc(lua_State *L) {
  static const char fn[] = "emv.generate_arqc";
  payhsm_key *imk = payhsm_checkkey(L, 1);
  emv_params q;
  emv_err e;
  unsigned char sk[16], ac[8];
  int r;
  payhsm_checkfields(L, 2, fn, p_fields);
  if ((r = check_imk(L, imk, fn, AC_USAGES, "XN"))) return r;
  r = ac_key(L, imk, 2, &q, sk, &e) && arqc_compute(L, imk, sk, 2, q.padding, ac, &e);
  OPENSSL_cleanse(sk, sizeof sk);
  if (!r) return efail(L, fn, &e);
  payhsm_pushhex(L, ac, 8);
  return 1;
}

/* core.emv.verify_arqc(imk, p) -> true | false, msg, code (constant-time compare) */
static int emv_verify_arqc(lua_State *L) {
  static const char fn[] = "emv.verify_arqc";
  payhsm_key *imk = payhsm_checkkey(L, 1);
  emv_params q;
  emv_err e;
  unsigned char sk[16], ac[8], given[8];
  int r, present;
  payhsm_checkfields(L, 2, fn, p_fields);
  if ((r = check_imk(L, imk, fn, AC_USAGES, "XN"))) { lua_pushboolean(L, 0); lua_replace(L, -4); return r; }
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_getfield(L, 2, "arqc") == LUA_TNIL) luaL_error(L, "%s: p.arqc is required", fn);
  lua_pop(L, 1);
  if (!hexfield(L, 2, "arqc", given, 8, "ARQC_LENGTH", &e, &present) ||
      !ac_key(L, imk, 2, &q, sk, &e) || !arqc_compute(L, imk, sk, 2, q.padding, ac, &e)) {
    OPENSSL_cleanse(sk, sizeof sk);
    if (!e.code) return payhsm_raise_ossl(L, fn);
    return payhsm_false(L, fn, e.code, "%s", e.msg);
  }
  OPENSSL_cleanse(sk, sizeof sk);
  if (CRYPTO_memcmp(ac, given, 8) != 0) return payhsm_false(L, fn, "ARQC_MISMATCH", "ARQC does not verify");
  lua_pushboolean(L, 1);
  return 1;
}

/* ARPC with key bytes sk, parameters in the table at idx. */
static int arpc_compute(lua_State *L, payhsm_key *owner, const unsigned char sk[16], int idx, unsigned char out[8], size_t *outlen,
                        emv_err *e) {
  unsigned char arqc[8], buf[8 + 4 + 8 + 8], arc[2], csu[4];
  lua_Integer method = payhsm_optfield_int(L, idx, "method", 1);
  size_t n, pn = 0, i;
  const char *prop;
  int ok, present;
  if (method != 1 && method != 2) luaL_error(L, "emv: p.method must be 1 or 2");
  if (!hexfield(L, idx, "arqc", arqc, 8, "ARQC_LENGTH", e, &present)) return 0;
  if (!present) luaL_error(L, "emv: p.arqc is required");
  if (method == 1) {
    if (!hexfield(L, idx, "arc", arc, 2, "EMV_ARC", e, &present)) return 0;
    if (!present) luaL_error(L, "emv: ARPC method 1 needs p.arc (4 hex digits)");
    memcpy(buf, arqc, 8);
    buf[0] ^= arc[0];
    buf[1] ^= arc[1];
    ok = ecb_with(L, owner, sk, buf, out, 8, e);
    *outlen = 8;
  } else {
    if (!hexfield(L, idx, "csu", csu, 4, "EMV_CSU", e, &present)) return 0;
    if (!present) luaL_error(L, "emv: ARPC method 2 needs p.csu (8 hex digits)");
    memcpy(buf, arqc, 8);
    memcpy(buf + 8, csu, 4);
    n = 12;
    if ((prop = payhsm_optfield_str(L, idx, "proprietary", &pn))) {
      if (pn > 16 || payhsm_hex_decode(prop, pn, buf + 12, 8) == (size_t)-1) {
        return set_err(e, pn > 16 ? "BAD_LENGTH" : "BAD_HEX", "proprietary data must be 0 to 8 bytes of hex");
      }
      n += pn / 2;
    }
    n = payhsm_iso9797_pad(buf, n, 8, 2, buf);
    ok = alg3_with(L, owner, sk, buf, n, buf, e);
    if (ok) for (i = 0; i < 4; i++) out[i] = buf[i];
    *outlen = 4;
  }
  return ok;
}

/* core.emv.generate_arpc(imk, p) -> ARPC hex: derives the keys like generate_arqc */
static int emv_generate_arpc(lua_State *L) {
  static const char fn[] = "emv.generate_arpc";
  payhsm_key *imk = payhsm_checkkey(L, 1);
  emv_params q;
  emv_err e;
  unsigned char sk[16], out[8];
  size_t n;
  int r;
  payhsm_checkfields(L, 2, fn, p_fields);
  if ((r = check_imk(L, imk, fn, AC_USAGES, "XN"))) return r;
  r = ac_key(L, imk, 2, &q, sk, &e) && arpc_compute(L, imk, sk, 2, out, &n, &e);
  OPENSSL_cleanse(sk, sizeof sk);
  if (!r) return efail(L, fn, &e);
  payhsm_pushhex(L, out, n);
  return 1;
}

/* core.emv.compute_arpc(key, p) -> ARPC hex, with the ARQC key given */
static int emv_compute_arpc(lua_State *L) {
  static const char fn[] = "emv.compute_arpc";
  payhsm_key *k = payhsm_checkkey(L, 1);
  emv_err e;
  unsigned char out[8];
  size_t n;
  int r;
  if ((r = check_imk(L, k, fn, AC_USAGES, NULL))) return r;
  luaL_checktype(L, 2, LUA_TTABLE);
  payhsm_checkfields(L, 2, fn, p_fields);
  if (!arpc_compute(L, k, k->bytes, 2, out, &n, &e)) return efail(L, fn, &e);
  payhsm_pushhex(L, out, n);
  return 1;
}

void payhsm_emv_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"derive_icc_master_key", emv_derive_icc}, {"derive_session_key", emv_derive_sk},
    {"generate_arqc", emv_generate_arqc}, {"verify_arqc", emv_verify_arqc},
    {"generate_arpc", emv_generate_arpc}, {"compute_arpc", emv_compute_arpc}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "emv");
}
