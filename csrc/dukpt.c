/*
 * dukpt.c - Derived Unique Key Per Transaction: TDES DUKPT (ANSI X9.24-1:2009 Annex A)
 * and AES DUKPT (ANSI X9.24-3:2017), host side (stateless derivation from the BDK) and
 * device side (the terminal with its key registers).
 *
 * Lua: core.dukpt.initial_key(bdk, ksn), core.dukpt.working_key(bdk, ksn, w),
 *      core.dukpt.terminal(initial_key, ksn [, opts]) -> t; t:next(), t.ksn, t:close()
 * KSN: TDES 10 bytes, the rightmost 21 bits the counter (X9.24-1 A.1); AES 12 bytes,
 * initial key ID (BDK ID 4 bytes || derivation ID 4 bytes) || 32-bit counter (X9.24-3
 * 6.1). Counters: 1..2^21-1 with at most 10 one bits (TDES), 1..2^32-1 with at most 16
 * (AES); a device skips the others (X9.24-1 A.2 "New Key", X9.24-3 6.5).
 * Results: PIN -> P0 mode B; MAC -> M3 (TDES_2KEY: ANSI X9.19, the MAC of X9.24-1 A.4)
 * or M6 (CMAC: AES and TDES_3KEY keys) mode C; DATA -> D0 mode B; KEY_ENCRYPTION -> K0
 * mode B. w.usage picks another fitting usage (MAC: M0 M1 M3 M5 M6).
 * Codes: DUKPT_KSN, DUKPT_COUNTER, DUKPT_DERIVATION_TYPE, DUKPT_VARIANT, DUKPT_PURPOSE,
 * DUKPT_EXHAUSTED, KEY_TYPE, KEY_USAGE.
 */
#include <stdint.h>
#include <string.h>

/* DES key schedules (deprecated low-level API, still in libcrypto 3): the TDES chain
 * re-keys single DES up to 20 times per derivation, which EVP contexts make slow. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/des.h>
#include <openssl/evp.h>

#include "payhsm.h"

#define TERMINAL_MT "payhsm.DukptTerminal"

enum { P_PIN, P_MAC, P_DATA, P_KEK };
enum { V_REQUEST, V_RESPONSE, V_BIDIRECTIONAL };
static const char *const purposes[] = {"PIN", "MAC", "DATA", "KEY_ENCRYPTION", NULL};
static const char *const variants[] = {"REQUEST", "RESPONSE", "BIDIRECTIONAL", NULL};

/* ---- TDES DUKPT (X9.24-1:2009 Annex A) --------------------------------- */

static const unsigned char c0mask[16] = {0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0,
                                         0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0};

/* One block under single DES (len 8) or two-key TDES, e_K1 d_K2 e_K1 (len 16). */
static void des_ecb(const unsigned char *k, size_t len, const unsigned char in[8], unsigned char out[8]) {
  struct { DES_key_schedule k1, k2; DES_cblock b1, b2, x, y; } s;
  memcpy(s.b1, k, 8);
  memcpy(s.b2, k + (len == 16 ? 8 : 0), 8);
  memcpy(s.x, in, 8);
  DES_set_key_unchecked(&s.b1, &s.k1);
  if (len == 16) {
    DES_set_key_unchecked(&s.b2, &s.k2);
    DES_ecb3_encrypt(&s.x, &s.y, &s.k1, &s.k2, &s.k1, DES_ENCRYPT);
  } else {
    DES_ecb_encrypt(&s.x, &s.y, &s.k1, DES_ENCRYPT);
  }
  memcpy(out, s.y, 8);
  OPENSSL_cleanse(&s, sizeof s);
}

/* Non-reversible key generation process (A.2): key (16 bytes) and crypto register r
 * (8 bytes) -> new key, in place. */
static void nrkgp(unsigned char key[16], const unsigned char r[8]) {
  unsigned char m[16], r1[8], r2[8];
  int i;
  for (i = 0; i < 8; i++) r2[i] = (unsigned char)(r[i] ^ key[8 + i]);
  des_ecb(key, 8, r2, r2);
  for (i = 0; i < 8; i++) r2[i] ^= key[8 + i];
  for (i = 0; i < 16; i++) m[i] = (unsigned char)(key[i] ^ c0mask[i]);
  for (i = 0; i < 8; i++) r1[i] = (unsigned char)(r[i] ^ m[8 + i]);
  des_ecb(m, 8, r1, r1);
  for (i = 0; i < 8; i++) r1[i] ^= m[8 + i];
  memcpy(key, r1, 8);
  memcpy(key + 8, r2, 8);
  OPENSSL_cleanse(m, sizeof m);
  OPENSSL_cleanse(r1, sizeof r1);
  OPENSSL_cleanse(r2, sizeof r2);
}

/* Sets the counter of a KSN: the rightmost 21 bits (TDES) or the last 4 bytes (AES). */
static void put_counter(unsigned char *ksn, int aes, uint32_t c) {
  unsigned char *e = ksn + (aes ? 12 : 10);
  e[-1] = (unsigned char)c;
  e[-2] = (unsigned char)(c >> 8);
  e[-3] = (unsigned char)(aes ? c >> 16 : (e[-3] & 0xE0) | ((c >> 16) & 0x1F));
  if (aes) e[-4] = (unsigned char)(c >> 24);
}

/* The rightmost 8 bytes of the KSN with the counter set to c: the TDES crypto register
 * (A.2), the AES derivation data's derivation ID and counter (X9.24-3 6.3.2). */
static void ksn_tail(const unsigned char *ksn, int aes, uint32_t c, unsigned char d[8]) {
  unsigned char k[12];
  memcpy(k, ksn, aes ? 12 : 10);
  put_counter(k, aes, c);
  memcpy(d, k + (aes ? 4 : 2), 8);
}

/* IPEK (A.6 "Derive the initial key"): both halves of TDES(BDK [xor C0C0C0C0...],
 * leftmost 8 bytes of the KSN with the counter zeroed). */
static void tdes_ipek(const unsigned char bdk[16], const unsigned char ksn[10], unsigned char ik[16]) {
  unsigned char k2[16], base[8];
  int i;
  memcpy(base, ksn, 8);
  base[7] &= 0xE0;
  for (i = 0; i < 16; i++) k2[i] = (unsigned char)(bdk[i] ^ c0mask[i]);
  des_ecb(bdk, 16, base, ik);
  des_ecb(k2, 16, base, ik + 8);
  OPENSSL_cleanse(k2, sizeof k2);
}

/* Key for counter c from key `from` held for counter prefix `have` (bits of c above
 * the ones still to set): one NRKGP per one bit, highest first. */
static void tdes_chain(unsigned char key[16], const unsigned char ksn[10], uint32_t have, uint32_t c) {
  uint32_t bit, acc = have;
  unsigned char r8[8];
  for (bit = 1u << 20; bit; bit >>= 1) {
    if (!(c & bit) || (have & bit)) continue;
    acc |= bit;
    ksn_tail(ksn, 0, acc, r8);
    nrkgp(key, r8);
  }
}

/* Working key from a transaction key (A.4.1 Table A-1; data keys then the one-way
 * function of A.4.1 Figure A-2: each half TDES-encrypted under the variant key). */
static void tdes_working(const unsigned char tk[16], int purpose, int variant, unsigned char out[16]) {
  int at = purpose == P_PIN ? 7 : purpose == P_MAC ? (variant == V_RESPONSE ? 4 : 6)
                                                   : (variant == V_RESPONSE ? 3 : 5);
  memcpy(out, tk, 16);
  out[at] ^= 0xFF;
  out[8 + at] ^= 0xFF;
  if (purpose == P_DATA) {
    unsigned char v[16];
    memcpy(v, out, 16);
    des_ecb(v, 16, v, out);
    des_ecb(v, 16, v + 8, out + 8);
    OPENSSL_cleanse(v, sizeof v);
  }
}

/* ---- AES DUKPT (X9.24-3:2017) ------------------------------------------ */

static unsigned aes_alg_code(payhsm_alg a) { /* X9.24-3 6.3.2 Table 2, algorithm indicator */
  switch (a) {
    case PAYHSM_ALG_TDES_2KEY: return 0;
    case PAYHSM_ALG_TDES_3KEY: return 1;
    case PAYHSM_ALG_AES_128: return 2;
    case PAYHSM_ALG_AES_192: return 3;
    default: return 4;
  }
}

static unsigned aes_usage_code(int purpose, int variant) { /* Table 2, key usage indicator */
  switch (purpose) {
    case P_PIN: return 0x1000;
    case P_MAC: return 0x2000u + (unsigned)variant;
    case P_DATA: return 0x3000u + (unsigned)variant;
    default: return 0x0002;
  }
}

/* Derive_Key (6.3.3): out = AES-ECB(key, derivation data with block counter 1, 2 ..),
 * leftmost outlen bytes. ctx carries the cipher of the derivation key, keyed with key
 * (or already keyed when key is NULL). */
static int aes_derive(EVP_CIPHER_CTX *ctx, const unsigned char *key, unsigned usage, payhsm_alg type,
                      const unsigned char data8[8], unsigned char *out) {
  unsigned char dd[16], blk[16];
  size_t len = payhsm_alg_keylen(type), done;
  unsigned bits = (unsigned)len * 8;
  int outl, ok = key ? EVP_EncryptInit_ex2(ctx, NULL, key, NULL, NULL) : 1;
  dd[0] = 1;
  dd[2] = (unsigned char)(usage >> 8); dd[3] = (unsigned char)usage;
  dd[4] = 0; dd[5] = (unsigned char)aes_alg_code(type);
  dd[6] = (unsigned char)(bits >> 8); dd[7] = (unsigned char)bits;
  memcpy(dd + 8, data8, 8);
  for (done = 0; ok && done < len; done += 16) {
    dd[1] = (unsigned char)(done / 16 + 1);
    ok = EVP_EncryptUpdate(ctx, blk, &outl, dd, 16);
    memcpy(out + done, blk, len - done < 16 ? len - done : 16);
  }
  OPENSSL_cleanse(blk, sizeof blk);
  return ok;
}

static EVP_CIPHER_CTX *aes_ctx(payhsm_alg ik_alg) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (ctx && (!EVP_EncryptInit_ex2(ctx, payhsm_cipher_for(ik_alg, 0), NULL, NULL, NULL) ||
              !EVP_CIPHER_CTX_set_padding(ctx, 0))) {
    EVP_CIPHER_CTX_free(ctx);
    ctx = NULL;
  }
  return ctx;
}

/* Intermediate derivation key for counter c from the key held for prefix `have`
 * (Host_Derive_Working_Key's loop, 6.4): usage 8000, one derivation per one bit. */
static int aes_chain(EVP_CIPHER_CTX *ctx, unsigned char *key, payhsm_alg ik_alg,
                     const unsigned char ksn[12], uint32_t have, uint32_t c) {
  uint32_t bit, acc = have;
  unsigned char d[8];
  for (bit = 0x80000000u; bit; bit >>= 1) {
    if (!(c & bit) || (have & bit)) continue;
    acc |= bit;
    ksn_tail(ksn, 1, acc, d);
    if (!aes_derive(ctx, key, 0x8000, ik_alg, d, key)) return 0;
  }
  return 1;
}

/* ---- common ------------------------------------------------------------ */

static int popcount32(uint32_t c) { return __builtin_popcount(c); }

/* Reads the KSN at idx for a TDES (10 bytes) or AES (12 bytes) scheme. Returns the
 * counter, or -1 after pushing nil, msg, DUKPT_KSN. */
static int64_t read_ksn(lua_State *L, int idx, const char *fn, int aes, unsigned char ksn[12]) {
  size_t len, want = aes ? 12 : 10;
  const char *s = luaL_checklstring(L, idx, &len);
  if (payhsm_hex_decode(s, len, ksn, 12) != want) {
    payhsm_fail(L, fn, "DUKPT_KSN", "%s DUKPT takes a KSN of %d hex digits", aes ? "AES" : "TDES",
                (int)(2 * want));
    return -1;
  }
  return aes ? (int64_t)(((uint32_t)ksn[8] << 24) | ((uint32_t)ksn[9] << 16) | ((uint32_t)ksn[10] << 8) | ksn[11])
             : (int64_t)((((uint32_t)ksn[7] & 0x1F) << 16) | ((uint32_t)ksn[8] << 8) | ksn[9]);
}

static int bad_counter(lua_State *L, const char *fn, int aes, int64_t c) {
  return popcount32((uint32_t)c) <= (aes ? 16 : 10) ? 0 :
    payhsm_fail(L, fn, "DUKPT_COUNTER", "the KSN's counter has more than %s one bits", aes ? "16 (ANSI X9.24-3 6.5)" : "10 (ANSI X9.24-1 A.2)");
}

/* The BDK or initial key: TDES_2KEY (X9.24-1) or AES (X9.24-3). -1 after a failure. */
static int scheme_of(lua_State *L, const payhsm_key *k, const char *fn) {
  if (k->alg == PAYHSM_ALG_TDES_2KEY) return 0;
  if (payhsm_alg_family(k->alg) == PAYHSM_FAM_AES) return 1;
  payhsm_fail(L, fn, "KEY_TYPE", "DUKPT keys are TDES_2KEY (ANSI X9.24-1) or AES (ANSI X9.24-3), got %s",
              payhsm_alg_name(k->alg));
  return -1;
}

/* The working key type: TDES BDKs give TDES_2KEY only; AES BDKs any TDES key or an AES
 * key no longer than the BDK (X9.24-3 6.2). -1 after a failure. */
static int working_type(lua_State *L, int idx, const char *field, const char *fn, const payhsm_key *k, int aes) {
  size_t n;
  const char *s = payhsm_optfield_str(L, idx, field, &n);
  int t;
  if (!s) return (int)k->alg;
  if ((t = payhsm_alg_from_name(s)) < 0 || t == PAYHSM_ALG_DES || payhsm_alg_family((payhsm_alg)t) == PAYHSM_FAM_HMAC)
    luaL_error(L, "%s: unknown DUKPT derivation type '%s' (TDES_2KEY, TDES_3KEY, AES_128, AES_192, AES_256)", fn, s);
  if (aes ? payhsm_alg_family((payhsm_alg)t) == PAYHSM_FAM_AES && payhsm_alg_keylen((payhsm_alg)t) > k->len
          : t != PAYHSM_ALG_TDES_2KEY) {
    payhsm_fail(L, fn, "DUKPT_DERIVATION_TYPE", "a %s key cannot derive %s working keys", payhsm_alg_name(k->alg), s);
    return -1;
  }
  return t;
}

#define mac_usage_default(t) ((t) == PAYHSM_ALG_TDES_2KEY ? "M3" : "M6")

/* Checks an explicit TR-31 usage for a purpose; raises when it does not fit. */
static const char *check_usage(lua_State *L, const char *fn, const char *u, int purpose, payhsm_alg t) {
  static const char *const fit[] = {"P0", "M0 M1 M3 M5 M6", "D0", "K0"};
  const char *p = fit[purpose];
  if (strlen(u) == 2 && (u[0] != 'M' || u[1] != '3' || t == PAYHSM_ALG_TDES_2KEY))
    for (; *p; p += p[2] ? 3 : 2)
      if (p[0] == u[0] && p[1] == u[1]) return p;
  luaL_error(L, "%s: usage '%s' does not fit a %s key of purpose %s", fn, u, payhsm_alg_name(t), purposes[purpose]);
  return NULL;
}

static payhsm_key *push_working(lua_State *L, payhsm_alg t, const unsigned char *b, int purpose, const char *usage) {
  payhsm_key *k = payhsm_pushkey(L, t, b, payhsm_alg_keylen(t));
  if (!usage) usage = purpose == P_PIN ? "P0" : purpose == P_MAC ? mac_usage_default(t) : purpose == P_DATA ? "D0" : "K0";
  memcpy(k->usage, usage, 2); /* k->usage[2] is 0 from payhsm_pushkey */
  k->mode = purpose == P_MAC ? 'C' : 'B';
  return k;
}

/* Working key bytes from the transaction (TDES) or intermediate (AES) key tk for the
 * counter c. Returns 0 on an OpenSSL failure. */
static int derive_working(EVP_CIPHER_CTX *ctx, int aes, const unsigned char *tk,
                          const unsigned char ksn[12], uint32_t c, int purpose, int variant, payhsm_alg t,
                          unsigned char out[32]) {
  unsigned char d[8];
  if (!aes) return tdes_working(tk, purpose, variant, out), 1;
  ksn_tail(ksn, 1, c, d);
  return aes_derive(ctx, tk, aes_usage_code(purpose, variant), t, d, out);
}

/* ---- host side --------------------------------------------------------- */

/* Initial key bytes from the BDK into ik; 0 on an OpenSSL failure. */
static int initial_bytes(lua_State *L, payhsm_key *bdk, int aes, const unsigned char ksn[12], unsigned char ik[32]) {
  if (!aes) {
    tdes_ipek(bdk->bytes, ksn, ik);
    return 1;
  }
  /* X9.24-3 6.3.1: usage 8001, the BDK's own type, data = initial key ID, on the BDK's
   * cached ECB context. */
  return aes_derive(payhsm_key_ecb(L, bdk, 1), NULL, 0x8001, bdk->alg, ksn, ik);
}

/*
 * dukpt.initial_key(bdk, ksn) -> key | nil, msg, code
 * The initial key (IPEK) of the device with this KSN: ANSI X9.24-1:2009 A.6 for a
 * TDES_2KEY BDK (10-byte KSN), ANSI X9.24-3:2017 6.3.1 for an AES BDK (12-byte KSN;
 * the initial key has the BDK's type). The counter bits are ignored. The result has
 * TR-31 usage B1 (initial DUKPT key), mode X. BDK usage B0 (or none).
 * Codes: DUKPT_KSN, KEY_TYPE, KEY_USAGE.
 */
static int dukpt_initial_key(lua_State *L) {
  static const char fn[] = "dukpt.initial_key";
  payhsm_key *bdk = payhsm_checkkey(L, 1), *k;
  unsigned char ksn[12], ik[32];
  int aes, r;
  if ((r = payhsm_key_usage(L, bdk, fn, "B0", "XN"))) return r;
  if ((aes = scheme_of(L, bdk, fn)) < 0) return 3;
  if (read_ksn(L, 2, fn, aes, ksn) < 0) return 3;
  if (!initial_bytes(L, bdk, aes, ksn, ik)) return payhsm_raise_ossl(L, fn);
  k = payhsm_pushkey(L, bdk->alg, ik, bdk->len);
  OPENSSL_cleanse(ik, sizeof ik);
  memcpy(k->usage, "B1", 3);
  k->mode = 'X';
  return 1;
}

/* Reads purpose and variant of w (idx); variant V_REQUEST for TDES by default,
 * V_BIDIRECTIONAL for AES. Returns 0 after a failure. */
static int field_name(lua_State *L, int idx, const char *fn, const char *field, const char *const names[], int def) {
  const char *s = payhsm_optfield_str(L, idx, field, NULL);
  int i;
  if (!s && def >= 0) return def;
  for (i = 0; s && names[i]; i++)
    if (strcmp(names[i], s) == 0) return i;
  return luaL_error(L, "%s: %s DUKPT %s '%s' (%s, %s, %s%s%s)", fn, s ? "unknown" : "missing", field, s ? s : "",
                    names[0], names[1], names[2], names[3] ? ", " : "", names[3] ? names[3] : "");
}

static int read_purpose(lua_State *L, int idx, const char *fn, int aes, int *purpose, int *variant) {
  *purpose = field_name(L, idx, fn, "purpose", purposes, -1);
  *variant = field_name(L, idx, fn, "variant", variants, aes ? V_BIDIRECTIONAL : V_REQUEST);
  if (!aes && *purpose == P_KEK)
    return payhsm_fail(L, fn, "DUKPT_PURPOSE", "KEY_ENCRYPTION keys are AES DUKPT (ANSI X9.24-3) only"), 0;
  if (!aes && *variant == V_BIDIRECTIONAL && (*purpose == P_MAC || *purpose == P_DATA))
    return payhsm_fail(L, fn, "DUKPT_VARIANT", "TDES DUKPT has REQUEST and RESPONSE keys, not BIDIRECTIONAL"), 0;
  if (*purpose == P_PIN || *purpose == P_KEK) *variant = V_REQUEST;
  return 1;
}

/*
 * dukpt.working_key(bdk, ksn, w) -> key | nil, msg, code
 * The host side: the working key of the transaction with this KSN, derived from the
 * BDK without state. w = {purpose = "PIN" | "MAC" | "DATA" | "KEY_ENCRYPTION" (AES),
 * variant = "REQUEST" | "RESPONSE" | "BIDIRECTIONAL" (AES; default), derivation_type
 * = "TDES_2KEY" | "TDES_3KEY" | "AES_128" | "AES_192" | "AES_256" (default: the BDK's
 * algorithm), usage = TR-31 usage of the result (default P0, M3/M6, D0, K0)}.
 * TDES (X9.24-1:2009 A.4.1 Table A-1): PIN variant, MAC request/response variants, data
 * request/response variants then the one-way function. AES (X9.24-3:2017 6.3.2): key
 * usage 1000, 2000/2001/2002, 3000/3001/3002 or 0002. Raises on unknown names.
 * Codes: DUKPT_KSN, DUKPT_COUNTER (counter 0, too many one bits), DUKPT_DERIVATION_TYPE,
 * DUKPT_VARIANT, DUKPT_PURPOSE, KEY_TYPE, KEY_USAGE.
 */
static int dukpt_working_key(lua_State *L) {
  static const char fn[] = "dukpt.working_key";
  static const char *const fields[] = {"purpose", "variant", "derivation_type", "usage", NULL};
  payhsm_key *bdk = payhsm_checkkey(L, 1);
  unsigned char ksn[12], key[32], out[32];
  const char *usage = NULL;
  int aes, r, purpose, variant, t, ok;
  int64_t c;
  EVP_CIPHER_CTX *ctx = NULL;
  luaL_checktype(L, 3, LUA_TTABLE);
  payhsm_checkfields(L, 3, fn, fields);
  if ((r = payhsm_key_usage(L, bdk, fn, "B0", "XN"))) return r;
  if ((aes = scheme_of(L, bdk, fn)) < 0) return 3;
  if (!read_purpose(L, 3, fn, aes, &purpose, &variant)) return 3;
  if ((t = working_type(L, 3, "derivation_type", fn, bdk, aes)) < 0) return 3;
  if ((usage = payhsm_optfield_str(L, 3, "usage", NULL)))
    usage = check_usage(L, fn, usage, purpose, (payhsm_alg)t);
  if ((c = read_ksn(L, 2, fn, aes, ksn)) < 0) return 3;
  if (c == 0) return payhsm_fail(L, fn, "DUKPT_COUNTER", "the KSN's counter is 0 (no transaction uses it)");
  if ((r = bad_counter(L, fn, aes, c))) return r;
  if (aes && !(ctx = aes_ctx(bdk->alg))) return payhsm_raise_ossl(L, fn);
  ok = initial_bytes(L, bdk, aes, ksn, key);
  if (ok && aes) ok = aes_chain(ctx, key, bdk->alg, ksn, 0, (uint32_t)c);
  else if (ok) tdes_chain(key, ksn, 0, (uint32_t)c);
  ok = ok && derive_working(ctx, aes, key, ksn, (uint32_t)c, purpose, variant, (payhsm_alg)t, out);
  EVP_CIPHER_CTX_free(ctx);
  OPENSSL_cleanse(key, sizeof key);
  if (!ok) {
    OPENSSL_cleanse(out, sizeof out);
    return payhsm_raise_ossl(L, fn);
  }
  push_working(L, (payhsm_alg)t, out, purpose, usage);
  OPENSSL_cleanse(out, sizeof out);
  return 1;
}

/* ---- device side: the terminal --------------------------------------------- */

typedef struct {
  int aes, nreg;
  payhsm_alg ik_alg, wtype;
  char mac_usage[3];
  unsigned char ksn[12];   /* KSN of the last transaction (counter included) */
  uint32_t cur;            /* its counter */
  uint64_t next;           /* the next counter to use */
  unsigned char *regs;     /* nreg registers of klen bytes (secure heap); NULL once closed */
  size_t klen;
  EVP_CIPHER_CTX *ctx;     /* AES: the cipher of the initial key's type */
} terminal;

static terminal *check_terminal(lua_State *L) {
  terminal *t = (terminal *)luaL_checkudata(L, 1, TERMINAL_MT);
  if (!t->regs) luaL_error(L, "DUKPT terminal has been closed");
  return t;
}

static void terminal_clear(terminal *t) {
  if (t->regs) OPENSSL_secure_clear_free(t->regs, (size_t)t->nreg * t->klen);
  t->regs = NULL;
  EVP_CIPHER_CTX_free(t->ctx);
  t->ctx = NULL;
}

static unsigned char *reg(terminal *t, int p) { return t->regs + (size_t)p * t->klen; }

/* Key for counter c derived from the key held for `have` into out. */
static int chain(terminal *t, unsigned char *out, const unsigned char *from, uint32_t have, uint32_t c) {
  memcpy(out, from, t->klen);
  if (t->aes) return aes_chain(t->ctx, out, t->ik_alg, t->ksn, have, c);
  tdes_chain(out, t->ksn, have, c);
  return 1;
}

/* Fills the registers for the next counter n (a valid counter) from the initial key:
 * register lowbit(n) holds key(n); every higher register p whose bit is clear in n holds
 * key((n above p) | 2^p), as the device's own registers hold them (X9.24-1 A.2, X9.24-3
 * 6.5). With n = 1 this is the "load initial key" of both standards. */
static int fill_registers(terminal *t, const unsigned char *ik, uint32_t n) {
  int p, low = 0;
  while (!(n & (1u << low))) low++;
  for (p = low; p < t->nreg; p++) {
    uint32_t bit = 1u << p, above = n & ~((bit << 1) - 1); /* bit << 1 wraps to 0 at p = 31 */
    if (p > low && (n & bit)) continue;
    if (!chain(t, reg(t, p), ik, 0, p == low ? n : above | bit)) return 0;
  }
  return 1;
}

static uint64_t successor(const terminal *t, uint32_t c) {
  return popcount32(c) < (t->aes ? 16 : 10) ? (uint64_t)c + 1 : (uint64_t)c + (c & (~c + 1));
}

static int exhausted(const terminal *t) { return t->next >= (t->aes ? ((uint64_t)1 << 32) : ((uint64_t)1 << 21)); }

/*
 * dukpt.terminal(initial_key, ksn [, opts]) -> t | nil, msg, code
 * The device (transaction-originating TRSM) loaded with the initial key and KSN: 21
 * future key registers (X9.24-1:2009 A.2) for a TDES_2KEY initial key, 32 intermediate
 * derivation key registers (X9.24-3:2017 6.5) for an AES one. The KSN's counter is the
 * last one used (0 for a fresh device). opts = {derivation_type = working key type (AES),
 * mac_usage = TR-31 usage of the MAC keys}. The initial key has usage B1 (or none).
 * t:next() -> ksn, keys: the next transaction's KSN and its working keys by purpose
 * {PIN, MAC, DATA, MAC_REQUEST, MAC_RESPONSE, DATA_REQUEST, DATA_RESPONSE, and for AES
 * MAC_BIDIRECTIONAL, DATA_BIDIRECTIONAL}; MAC and DATA are the default variants of
 * working_key. Counters with too many one bits are skipped; after the last counter
 * t:next() returns nil, msg, "DUKPT_EXHAUSTED". t.ksn: KSN of the last transaction;
 * t.counter its counter; t:close() (also __gc, __close) wipes the registers.
 * Codes: DUKPT_KSN, DUKPT_COUNTER, DUKPT_DERIVATION_TYPE, KEY_TYPE, KEY_USAGE.
 */
static int dukpt_terminal(lua_State *L) {
  static const char fn[] = "dukpt.terminal";
  static const char *const fields[] = {"derivation_type", "mac_usage", NULL};
  payhsm_key *ik = payhsm_checkkey(L, 1);
  terminal *t;
  unsigned char ksn[12];
  const char *mu;
  int aes, r, wt;
  int64_t c;
  payhsm_checkfields(L, 3, fn, fields);
  if ((r = payhsm_key_usage(L, ik, fn, "B1", "XN"))) return r;
  if ((aes = scheme_of(L, ik, fn)) < 0) return 3;
  if ((wt = working_type(L, 3, "derivation_type", fn, ik, aes)) < 0) return 3;
  mu = payhsm_optfield_str(L, 3, "mac_usage", NULL);
  if (mu) mu = check_usage(L, fn, mu, P_MAC, (payhsm_alg)wt);
  if ((c = read_ksn(L, 2, fn, aes, ksn)) < 0) return 3;
  if ((r = bad_counter(L, fn, aes, c))) return r;
  t = lua_newuserdatauv(L, sizeof *t, 0);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, TERMINAL_MT);
  t->aes = aes;
  t->nreg = aes ? 32 : 21;
  t->ik_alg = ik->alg;
  t->wtype = (payhsm_alg)wt;
  memcpy(t->mac_usage, mu ? mu : mac_usage_default(t->wtype), 2);
  memcpy(t->ksn, ksn, 12);
  t->klen = ik->len;
  t->cur = (uint32_t)c;
  t->next = c == 0 ? 1 : successor(t, (uint32_t)c);
  if (!(t->regs = OPENSSL_secure_zalloc((size_t)t->nreg * t->klen))) return luaL_error(L, "%s: out of memory", fn);
  if (aes && !(t->ctx = aes_ctx(ik->alg))) return payhsm_raise_ossl(L, fn);
  if (!exhausted(t) && !fill_registers(t, ik->bytes, (uint32_t)t->next)) return payhsm_raise_ossl(L, fn);
  return 1;
}

/* t:next() -> ksn, keys | nil, msg, "DUKPT_EXHAUSTED" */
static int terminal_next(lua_State *L) {
  static const char fn[] = "dukpt.terminal:next";
  static const struct { const char *name; int purpose, variant; } slots[] = {
    {"PIN", P_PIN, V_REQUEST}, {"MAC_REQUEST", P_MAC, V_REQUEST}, {"MAC_RESPONSE", P_MAC, V_RESPONSE},
    {"DATA_REQUEST", P_DATA, V_REQUEST}, {"DATA_RESPONSE", P_DATA, V_RESPONSE},
    {"MAC_BIDIRECTIONAL", P_MAC, V_BIDIRECTIONAL}, {"DATA_BIDIRECTIONAL", P_DATA, V_BIDIRECTIONAL}};
  terminal *t = check_terminal(L);
  uint32_t n, q;
  int p = 0, i, ok = 1;
  unsigned char out[32], *k;
  if (exhausted(t)) return payhsm_fail(L, fn, "DUKPT_EXHAUSTED", "the transaction counter is exhausted; load a new initial key");
  n = (uint32_t)t->next;
  while (!(n & (1u << p))) p++;
  k = reg(t, p);
  put_counter(t->ksn, t->aes, n);
  payhsm_pushhex(L, t->ksn, t->aes ? 12 : 10);
  lua_createtable(L, 0, 10);
  for (i = 0; i < (t->aes ? 7 : 5); i++) {
    ok = derive_working(t->ctx, t->aes, k, t->ksn, n, slots[i].purpose, slots[i].variant, t->wtype, out);
    if (!ok) break;
    push_working(L, t->wtype, out, slots[i].purpose, slots[i].purpose == P_MAC ? t->mac_usage : NULL);
    lua_setfield(L, -2, slots[i].name);
  }
  OPENSSL_cleanse(out, sizeof out);
  /* "New Key": future keys below the current register unless the counter has the
   * most one bits allowed, then the current register is erased. */
  if (ok && popcount32(n) < (t->aes ? 16 : 10))
    for (q = (uint32_t)p; ok && q-- > 0;) ok = chain(t, reg(t, (int)q), k, n, n | (1u << q));
  OPENSSL_cleanse(k, t->klen);
  t->cur = n;
  t->next = successor(t, n);
  if (!ok) return payhsm_raise_ossl(L, fn);
  lua_getfield(L, -1, t->aes ? "MAC_BIDIRECTIONAL" : "MAC_REQUEST");
  lua_setfield(L, -2, "MAC");
  lua_getfield(L, -1, t->aes ? "DATA_BIDIRECTIONAL" : "DATA_REQUEST");
  lua_setfield(L, -2, "DATA");
  return 2;
}

/* t:close(), __gc, __close: wipes the registers (idempotent). */
static int terminal_close(lua_State *L) {
  terminal_clear((terminal *)luaL_checkudata(L, 1, TERMINAL_MT));
  return 0;
}

static int terminal_tostring(lua_State *L) {
  terminal *t = (terminal *)luaL_checkudata(L, 1, TERMINAL_MT);
  char hex[25];
  payhsm_hex_encode(t->ksn, t->aes ? 12 : 10, hex);
  hex[t->aes ? 24 : 20] = 0;
  lua_pushfstring(L, "payhsm.DukptTerminal(%s, KSN %s%s)", payhsm_alg_name(t->ik_alg), hex, t->regs ? "" : ", closed");
  return 1;
}

static int terminal_index(lua_State *L) {
  terminal *t;
  const char *f;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  t = (terminal *)luaL_checkudata(L, 1, TERMINAL_MT);
  f = luaL_checkstring(L, 2);
  if (strcmp(f, "ksn") == 0) payhsm_pushhex(L, t->ksn, t->aes ? 12 : 10);
  else if (strcmp(f, "counter") == 0) lua_pushinteger(L, (lua_Integer)t->cur);
  else if (strcmp(f, "algorithm") == 0) lua_pushstring(L, payhsm_alg_name(t->ik_alg));
  else if (strcmp(f, "derivation_type") == 0) lua_pushstring(L, payhsm_alg_name(t->wtype));
  else if (strcmp(f, "closed") == 0) lua_pushboolean(L, t->regs == NULL);
  else lua_pushnil(L);
  return 1;
}

static int terminal_newindex(lua_State *L) { return luaL_error(L, "DUKPT terminal fields are read-only"); }

void payhsm_dukpt_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"next", terminal_next}, {"close", terminal_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", terminal_close}, {"__close", terminal_close},
                                  {"__tostring", terminal_tostring}, {"__newindex", terminal_newindex},
                                  {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"initial_key", dukpt_initial_key}, {"working_key", dukpt_working_key},
                                   {"terminal", dukpt_terminal}, {NULL, NULL}};
  luaL_newmetatable(L, TERMINAL_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_pushcclosure(L, terminal_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, TERMINAL_MT);
  lua_setfield(L, -2, "__name");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "dukpt");
}
