/*
 * key.c - the payhsm.Key object: opaque userdata holding clear key bytes in C
 * memory, its TR-31 attributes (ANSI X9.143-2022 section 6.3: key usage, mode of
 * use, key version number, exportability), and the cipher contexts built once
 * per key and reused by every operation.
 *
 * Lua: core.key.import(algorithm, hex [, attrs]) -> key | nil, msg, code
 *      core.key.generate(algorithm [, attrs]) -> key
 *      core.policy{clear_export = bool}
 *      key.algorithm, key.bits, key.usage, key.mode, key.version, key.exportability
 *      key:kcv([alg]), key:export(), key:close(), tostring(key)
 */
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "payhsm.h"

int payhsm_policy_clear_export = 1;

static const struct {
  const char *name;
  payhsm_family fam;
  size_t len;
} algs[PAYHSM_ALG_COUNT] = {
  {"DES", PAYHSM_FAM_DES, 8},          {"TDES_2KEY", PAYHSM_FAM_DES, 16},
  {"TDES_3KEY", PAYHSM_FAM_DES, 24},   {"AES_128", PAYHSM_FAM_AES, 16},
  {"AES_192", PAYHSM_FAM_AES, 24},     {"AES_256", PAYHSM_FAM_AES, 32},
  {"HMAC_SHA256", PAYHSM_FAM_HMAC, 0}, {"HMAC_SHA384", PAYHSM_FAM_HMAC, 0},
  {"HMAC_SHA512", PAYHSM_FAM_HMAC, 0},
};

const char *payhsm_alg_name(payhsm_alg alg) { return algs[alg].name; }
payhsm_family payhsm_alg_family(payhsm_alg alg) { return algs[alg].fam; }
size_t payhsm_alg_keylen(payhsm_alg alg) { return algs[alg].len; }

int payhsm_alg_from_name(const char *name) {
  int i;
  for (i = 0; i < PAYHSM_ALG_COUNT; i++)
    if (strcmp(algs[i].name, name) == 0) return i;
  return -1;
}

size_t payhsm_key_blocksize(const payhsm_key *k) {
  switch (algs[k->alg].fam) {
    case PAYHSM_FAM_DES: return 8;
    case PAYHSM_FAM_AES: return 16;
    default: return 0;
  }
}

int payhsm_key_family_ok(const payhsm_key *k, unsigned mask) {
  return (mask & (1u << algs[k->alg].fam)) != 0;
}

void payhsm_des_parity(unsigned char *b, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned v = b[i] & 0xFEu, p = v;
    p ^= p >> 4; p ^= p >> 2; p ^= p >> 1;
    b[i] = (unsigned char)(v | (~p & 1u));
  }
}

/* ---- TR-31 attribute vocabulary (X9.143-2022 Tables 6, 8, 10) -------- */

/* Key usages with the modes of use that make sense for them. */
static const struct { const char *usage; const char *modes; } usages[] = {
  {"B0", "XN"}, {"B1", "XN"}, {"B2", "XN"}, {"B3", "XN"},
  {"C0", "CGVN"},
  {"D0", "BDEN"}, {"D1", "BDEN"}, {"D2", "BDEN"}, {"D3", "BDEN"},
  {"E0", "XN"}, {"E1", "XN"}, {"E2", "XN"}, {"E3", "XN"}, {"E4", "XN"}, {"E5", "XN"},
  {"E6", "XN"}, {"E7", "XN"},
  {"I0", "N"},
  {"K0", "BDENX"}, {"K1", "BDENX"}, {"K2", "BDENST"}, {"K3", "BDENX"}, {"K4", "BDENX"},
  {"M0", "CGVN"}, {"M1", "CGVN"}, {"M2", "CGVN"}, {"M3", "CGVN"}, {"M4", "CGVN"},
  {"M5", "CGVN"}, {"M6", "CGVN"}, {"M7", "CGVN"}, {"M8", "CGVN"},
  {"P0", "BDEN"}, {"P1", "CGVN"},
  {"S0", "SVN"}, {"S1", "SVN"}, {"S2", "SVN"},
  {"V0", "CGVN"}, {"V1", "CGVN"}, {"V2", "CGVN"}, {"V3", "CGVN"}, {"V4", "CGVN"},
  {NULL, NULL}};

static const char all_modes[] = "BCDEGNSTVXY";

/* Returns the modes string for a usage, "" for proprietary numeric usages
 * (any mode), NULL for an unknown usage. */
const char *payhsm_usage_modes(const char *usage) {
  int i;
  if (usage[0] >= '0' && usage[0] <= '9' &&
      ((usage[1] >= '0' && usage[1] <= '9') || (usage[1] >= 'A' && usage[1] <= 'Z')))
    return "";
  if (!usage[0] || usage[2]) return NULL;
  for (i = 0; usages[i].usage; i++)
    if (usages[i].usage[0] == usage[0] && usages[i].usage[1] == usage[1]) return usages[i].modes;
  return NULL;
}

int payhsm_mode_known(char m) { return m && strchr(all_modes, m) != NULL; }

/* ---- the object ------------------------------------------------------ */

void payhsm_key_clear(payhsm_key *k) {
  EVP_CIPHER_CTX **ctxs[5];
  int i;
  ctxs[0] = &k->ecb_enc; ctxs[1] = &k->ecb_dec; ctxs[2] = &k->cbc_enc;
  ctxs[3] = &k->cbc_dec; ctxs[4] = &k->des_k1;
  for (i = 0; i < 5; i++) {
    EVP_CIPHER_CTX_free(*ctxs[i]); /* frees and cleanses the key schedule */
    *ctxs[i] = NULL;
  }
  EVP_MAC_CTX_free(k->hmac);
  k->hmac = NULL;
  if (k->tr31_cache && k->tr31_cache_free) k->tr31_cache_free(k->tr31_cache);
  k->tr31_cache = NULL;
  OPENSSL_cleanse(k->cmac_k1, sizeof k->cmac_k1);
  OPENSSL_cleanse(k->cmac_k2, sizeof k->cmac_k2);
  k->cmac_ready = 0;
  if (k->bytes) OPENSSL_secure_clear_free(k->bytes, k->len);
  k->bytes = NULL;
  k->len = 0;
}

int payhsm_key_init(payhsm_key *k, payhsm_alg alg, const unsigned char *bytes, size_t len) {
  memset(k, 0, sizeof *k);
  k->alg = alg;
  k->version[0] = '0';
  k->version[1] = '0';
  if (len == 0 || len > PAYHSM_MAX_KEY || !(k->bytes = OPENSSL_secure_malloc(len))) return 0;
  memcpy(k->bytes, bytes, len);
  k->len = len;
  return 1;
}

payhsm_key *payhsm_testkey(lua_State *L, int idx) {
  return (payhsm_key *)luaL_testudata(L, idx, PAYHSM_KEY_MT);
}

payhsm_key *payhsm_checkkey(lua_State *L, int idx) {
  payhsm_key *k = (payhsm_key *)luaL_checkudata(L, idx, PAYHSM_KEY_MT);
  if (!k->bytes) luaL_error(L, "key has been closed");
  return k;
}

payhsm_key *payhsm_pushkey(lua_State *L, payhsm_alg alg, const unsigned char *bytes, size_t len) {
  payhsm_key *k = lua_newuserdatauv(L, sizeof *k, 0);
  memset(k, 0, sizeof *k);
  luaL_setmetatable(L, PAYHSM_KEY_MT);
  k->alg = alg;
  k->version[0] = '0';
  k->version[1] = '0';
  if (len == 0 || len > PAYHSM_MAX_KEY) luaL_error(L, "key length %d out of range", (int)len);
  k->bytes = OPENSSL_secure_malloc(len);
  if (!k->bytes) luaL_error(L, "out of secure memory");
  memcpy(k->bytes, bytes, len);
  k->len = len;
  return k;
}

/* Expands a DES-family key to the 24 bytes DES-EDE3 takes. */
static void des_expand(const payhsm_key *k, unsigned char out[24]) {
  if (k->len == 8) {
    memcpy(out, k->bytes, 8); memcpy(out + 8, k->bytes, 8); memcpy(out + 16, k->bytes, 8);
  } else if (k->len == 16) {
    memcpy(out, k->bytes, 16); memcpy(out + 16, k->bytes, 8);
  } else {
    memcpy(out, k->bytes, 24);
  }
}

static EVP_CIPHER_CTX *make_ctx(lua_State *L, const EVP_CIPHER *c, const unsigned char *key,
                                int enc) {
  static const unsigned char zero_iv[16] = {0};
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx || !EVP_CipherInit_ex2(ctx, c, key, zero_iv, enc, NULL) ||
      !EVP_CIPHER_CTX_set_padding(ctx, 0)) {
    EVP_CIPHER_CTX_free(ctx);
    payhsm_raise_ossl(L, "key");
    return NULL;
  }
  return ctx;
}

static EVP_CIPHER_CTX *build(lua_State *L, payhsm_key *k, int cbc, int enc) {
  unsigned char tmp[24];
  EVP_CIPHER_CTX *ctx;
  const EVP_CIPHER *c = payhsm_cipher_for(k->alg, cbc);
  if (!c) luaL_error(L, "%s keys are not block cipher keys", algs[k->alg].name);
  if (algs[k->alg].fam == PAYHSM_FAM_DES) {
    des_expand(k, tmp);
    ctx = make_ctx(L, c, tmp, enc);
    OPENSSL_cleanse(tmp, sizeof tmp);
  } else {
    ctx = make_ctx(L, c, k->bytes, enc);
  }
  return ctx;
}

EVP_CIPHER_CTX *payhsm_key_ecb(lua_State *L, payhsm_key *k, int enc) {
  EVP_CIPHER_CTX **slot = enc ? &k->ecb_enc : &k->ecb_dec;
  if (!*slot) *slot = build(L, k, 0, enc);
  return *slot;
}

EVP_CIPHER_CTX *payhsm_key_cbc(lua_State *L, payhsm_key *k, int enc) {
  EVP_CIPHER_CTX **slot = enc ? &k->cbc_enc : &k->cbc_dec;
  if (!*slot) *slot = build(L, k, 1, enc);
  return *slot;
}

EVP_CIPHER_CTX *payhsm_key_k1cbc(lua_State *L, payhsm_key *k) {
  if (!k->des_k1) {
    unsigned char tmp[24];
    if (algs[k->alg].fam != PAYHSM_FAM_DES) luaL_error(L, "not a DES-family key");
    memcpy(tmp, k->bytes, 8); memcpy(tmp + 8, k->bytes, 8); memcpy(tmp + 16, k->bytes, 8);
    k->des_k1 = make_ctx(L, payhsm_cipher_for(PAYHSM_ALG_DES, 1), tmp, 1);
    OPENSSL_cleanse(tmp, sizeof tmp);
  }
  return k->des_k1;
}

/* Short CBC runs on the key's ECB context: resetting a CBC context's IV with
 * EVP_CipherInit_ex2 costs more in OpenSSL 3 than several block calls. */
#define SHORT_CBC_ENC 128  /* bytes: chained block by block on the ECB context */
#define SHORT_CBC_DEC 4096 /* bytes: one ECB call, then the xor with the previous block */

int payhsm_key_crypt(lua_State *L, payhsm_key *k, int enc, const unsigned char *iv,
                     const unsigned char *in, unsigned char *out, size_t len) {
  EVP_CIPHER_CTX *ctx;
  int outl;
  size_t bs = payhsm_key_blocksize(k), i, j;
  if (len == 0) return 1;
  if (len > (size_t)0x7fffffff) return 0;
  if (iv && enc && len <= SHORT_CBC_ENC) {
    unsigned char x[16];
    const unsigned char *prev = iv;
    ctx = payhsm_key_ecb(L, k, 1);
    for (i = 0; i < len; i += bs) {
      for (j = 0; j < bs; j++) x[j] = (unsigned char)(in[i + j] ^ prev[j]);
      if (!EVP_CipherUpdate(ctx, out + i, &outl, x, (int)bs)) return 0;
      prev = out + i;
    }
    OPENSSL_cleanse(x, sizeof x);
    return 1;
  }
  if (iv && !enc && len <= SHORT_CBC_DEC) {
    unsigned char ct[SHORT_CBC_DEC];
    memcpy(ct, in, len);
    ctx = payhsm_key_ecb(L, k, 0);
    if (!EVP_CipherUpdate(ctx, out, &outl, ct, (int)len) || (size_t)outl != len) return 0;
    for (j = 0; j < bs; j++) out[j] ^= iv[j];
    for (i = bs; i < len; i++) out[i] ^= ct[i - bs];
    return 1;
  }
  if (iv) {
    ctx = payhsm_key_cbc(L, k, enc);
    if (!EVP_CipherInit_ex2(ctx, NULL, NULL, iv, -1, NULL)) return 0;
  } else {
    ctx = payhsm_key_ecb(L, k, enc);
  }
  return EVP_CipherUpdate(ctx, out, &outl, in, (int)len) && (size_t)outl == len;
}

int payhsm_cbc_chain(EVP_CIPHER_CTX *ctx, const unsigned char *in, size_t len, size_t bs,
                     unsigned char *last) {
  static const unsigned char zero_iv[16] = {0};
  unsigned char buf[1024];
  int outl;
  if (!EVP_CipherInit_ex2(ctx, NULL, NULL, zero_iv, -1, NULL)) return 0;
  while (len > 0) {
    size_t n = len > sizeof buf ? sizeof buf : len;
    if (!EVP_CipherUpdate(ctx, buf, &outl, in, (int)n) || (size_t)outl != n) return 0;
    in += n;
    len -= n;
    if (len == 0) memcpy(last, buf + n - bs, bs);
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return 1;
}

int payhsm_key_hmac(lua_State *L, payhsm_key *k, const unsigned char *msg, size_t len,
                    unsigned char *out, size_t *outlen) {
  static EVP_MAC *hmac_alg;
  if (algs[k->alg].fam != PAYHSM_FAM_HMAC) luaL_error(L, "HMAC needs an HMAC key");
  if (!k->hmac) {
    OSSL_PARAM params[2];
    if (!hmac_alg && !(hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL))) return 0;
    params[0] = OSSL_PARAM_construct_utf8_string(
        "digest", (char *)(uintptr_t)EVP_MD_get0_name(payhsm_md_for(k->alg)), 0);
    params[1] = OSSL_PARAM_construct_end();
    k->hmac = EVP_MAC_CTX_new(hmac_alg);
    if (!k->hmac || !EVP_MAC_init(k->hmac, k->bytes, k->len, params)) {
      EVP_MAC_CTX_free(k->hmac);
      k->hmac = NULL;
      return 0;
    }
  } else if (!EVP_MAC_init(k->hmac, NULL, 0, NULL)) {
    return 0;
  }
  return EVP_MAC_update(k->hmac, msg, len) && EVP_MAC_final(k->hmac, out, outlen, 64);
}

/* CMAC subkey generation, NIST SP 800-38B section 6.1. */
static void dbl(const unsigned char *in, unsigned char *out, size_t bs) {
  size_t i;
  unsigned char carry = (unsigned char)(in[0] >> 7);
  for (i = 0; i + 1 < bs; i++) out[i] = (unsigned char)((in[i] << 1) | (in[i + 1] >> 7));
  out[bs - 1] = (unsigned char)(in[bs - 1] << 1);
  out[bs - 1] ^= (unsigned char)(carry * (bs == 16 ? 0x87 : 0x1B));
}

int payhsm_key_cmac(lua_State *L, payhsm_key *k, const unsigned char *msg, size_t len,
                    unsigned char *out) {
  size_t bs = payhsm_key_blocksize(k), n, rem, i;
  unsigned char last[16];
  int outl;
  EVP_CIPHER_CTX *cbc;
  if (!bs) luaL_error(L, "CMAC needs a block cipher key");
  cbc = payhsm_key_cbc(L, k, 1);
  if (!k->cmac_ready) {
    static const unsigned char zero[16] = {0};
    unsigned char l[16];
    if (!payhsm_key_crypt(L, k, 1, NULL, zero, l, bs)) return 0;
    dbl(l, k->cmac_k1, bs);
    dbl(k->cmac_k1, k->cmac_k2, bs);
    OPENSSL_cleanse(l, sizeof l);
    k->cmac_ready = 1;
  }
  /* M_1 .. M_{n-1} are CBC-chained; M_n is completed with K1 or K2. */
  n = len == 0 ? 1 : (len + bs - 1) / bs;
  rem = len - (n - 1) * bs;
  if (n <= 8) { /* short messages: block by block on the ECB context (no IV reset) */
    unsigned char c[16] = {0};
    EVP_CIPHER_CTX *ecb = payhsm_key_ecb(L, k, 1);
    size_t b, j;
    for (b = 0; b + 1 < n; b++) {
      for (j = 0; j < bs; j++) c[j] ^= msg[b * bs + j];
      if (!EVP_CipherUpdate(ecb, c, &outl, c, (int)bs)) return 0;
    }
    for (j = 0; j < bs; j++) {
      unsigned char m = rem == bs ? (unsigned char)(msg[(n - 1) * bs + j] ^ k->cmac_k1[j])
                        : (unsigned char)((j < rem ? msg[(n - 1) * bs + j] : (j == rem ? 0x80 : 0)) ^ k->cmac_k2[j]);
      c[j] ^= m;
    }
    if (!EVP_CipherUpdate(ecb, out, &outl, c, (int)bs)) return 0;
    OPENSSL_cleanse(c, sizeof c);
    return 1;
  }
  if (n > 1) {
    if (!payhsm_cbc_chain(cbc, msg, (n - 1) * bs, bs, last)) return 0;
    /* Continue the chain: the context's IV is now the last ciphertext block. */
    if (!EVP_CipherInit_ex2(cbc, NULL, NULL, last, -1, NULL)) return 0;
  } else {
    static const unsigned char zero_iv[16] = {0};
    if (!EVP_CipherInit_ex2(cbc, NULL, NULL, zero_iv, -1, NULL)) return 0;
  }
  if (rem == bs) {
    for (i = 0; i < bs; i++) last[i] = (unsigned char)(msg[(n - 1) * bs + i] ^ k->cmac_k1[i]);
  } else {
    for (i = 0; i < bs; i++) {
      unsigned char b = i < rem ? msg[(n - 1) * bs + i] : (i == rem ? 0x80 : 0);
      last[i] = (unsigned char)(b ^ k->cmac_k2[i]);
    }
  }
  if (!EVP_CipherUpdate(cbc, out, &outl, last, (int)bs)) return 0;
  OPENSSL_cleanse(last, sizeof last);
  return 1;
}

int payhsm_key_usage(lua_State *L, const payhsm_key *k, const char *fn, const char *usages_ok,
                     const char *modes) {
  if (usages_ok && k->usage[0]) {
    const char *p = usages_ok;
    int found = 0;
    while (*p) {
      if (p[0] == k->usage[0] && p[1] == k->usage[1]) { found = 1; break; }
      p += 2;
      while (*p == ' ') p++;
    }
    if (!found)
      return payhsm_fail(L, fn, "KEY_USAGE", "key usage %s is not allowed here (needs %s)",
                         k->usage, usages_ok);
  }
  if (modes && k->mode && !strchr(modes, k->mode))
    return payhsm_fail(L, fn, "KEY_USAGE", "key mode of use %c is not allowed here (needs one of %s)",
                       k->mode, modes);
  return 0;
}

/* Validates and stores attributes; raises on malformed codes (programming error). */
void payhsm_key_setattrs(lua_State *L, payhsm_key *k, int idx) {
  size_t n;
  const char *s;
  const char *modes = NULL;
  static const char *const fields[] = {"usage", "mode", "version", "exportability", NULL};
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  payhsm_checkfields(L, idx, "key attributes", fields);
  if ((s = payhsm_optfield_str(L, idx, "usage", &n))) {
    if (n != 2 || !(modes = payhsm_usage_modes(s)))
      luaL_error(L, "unknown TR-31 key usage '%s'", s);
    if (algs[k->alg].fam == PAYHSM_FAM_HMAC ? (s[0] != 'M' || s[1] != '7') && modes[0]
                                            : (s[0] == 'M' && s[1] == '7'))
      luaL_error(L, "key usage %s does not fit a %s key", s, algs[k->alg].name);
    memcpy(k->usage, s, 3);
  }
  if ((s = payhsm_optfield_str(L, idx, "mode", &n))) {
    if (n != 1 || !payhsm_mode_known(s[0])) luaL_error(L, "unknown TR-31 mode of use '%s'", s);
    if (modes && modes[0] && !strchr(modes, s[0]))
      luaL_error(L, "mode of use %s does not fit key usage %s", s, k->usage);
    k->mode = s[0];
  }
  if ((s = payhsm_optfield_str(L, idx, "version", &n))) {
    if (n != 2 || !(((s[0] >= '0' && s[0] <= '9') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == 'c')
                    && ((s[1] >= '0' && s[1] <= '9') || (s[1] >= 'A' && s[1] <= 'Z'))))
      luaL_error(L, "key version must be two alphanumeric characters, got '%s'", s);
    k->version[0] = s[0];
    k->version[1] = s[1];
  }
  if ((s = payhsm_optfield_str(L, idx, "exportability", &n))) {
    if (n != 1 || !strchr("ENS", s[0])) luaL_error(L, "exportability must be E, N or S, got '%s'", s);
    k->exportability = s[0];
  }
}

static payhsm_alg check_alg(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  int a = payhsm_alg_from_name(name);
  if (a < 0) {
    luaL_Buffer b;
    int i;
    luaL_buffinit(L, &b);
    for (i = 0; i < PAYHSM_ALG_COUNT; i++) {
      if (i) luaL_addstring(&b, ", ");
      luaL_addstring(&b, algs[i].name);
    }
    luaL_pushresult(&b);
    luaL_argerror(L, idx, lua_pushfstring(L, "unknown key algorithm '%s' (expected one of: %s)", name,
                                          lua_tostring(L, -1)));
  }
  return (payhsm_alg)a;
}

/*
 * key.import(algorithm, hex [, attrs]) -> key
 * Bad hex -> nil, msg, "BAD_HEX"; a length that does not fit the algorithm ->
 * nil, msg, "KEY_LENGTH". DES parity is not enforced on import (test keys in
 * the standards often lack it). Unknown algorithm or malformed attrs raise.
 */
static int key_import(lua_State *L) {
  payhsm_alg alg = check_alg(L, 1);
  unsigned char buf[PAYHSM_MAX_KEY];
  lua_settop(L, 3);
  size_t n = payhsm_hexarg(L, 2, "key.import", "key", buf, sizeof buf);
  payhsm_key *k;
  if (n == (size_t)-1) return 3;
  if (algs[alg].len ? n != algs[alg].len : n < 1) {
    OPENSSL_cleanse(buf, sizeof buf);
    return payhsm_fail(L, "key.import", "KEY_LENGTH", "%s needs %d bytes, got %d", algs[alg].name,
                       (int)(algs[alg].len ? algs[alg].len : 1), (int)n);
  }
  k = payhsm_pushkey(L, alg, buf, n);
  OPENSSL_cleanse(buf, sizeof buf);
  payhsm_key_setattrs(L, k, 3);
  return 1;
}

/*
 * key.generate(algorithm [, attrs]) -> key
 * Random bytes from RAND_priv_bytes. DES-family keys get odd parity and distinct
 * components; HMAC keys are as long as the digest output.
 */
static int key_generate(lua_State *L) {
  payhsm_alg alg = check_alg(L, 1);
  unsigned char buf[64];
  size_t n = algs[alg].len;
  payhsm_key *k;
  lua_settop(L, 2);
  if (!n) n = (size_t)EVP_MD_get_size(payhsm_md_for(alg));
  for (;;) {
    if (RAND_priv_bytes(buf, (int)n) != 1) return payhsm_raise_ossl(L, "key.generate");
    if (algs[alg].fam != PAYHSM_FAM_DES) break;
    payhsm_des_parity(buf, n);
    if (n == 8) break;
    if (CRYPTO_memcmp(buf, buf + 8, 8) != 0 &&
        (n == 16 || (CRYPTO_memcmp(buf + 8, buf + 16, 8) != 0 && CRYPTO_memcmp(buf, buf + 16, 8) != 0)))
      break;
  }
  k = payhsm_pushkey(L, alg, buf, n);
  OPENSSL_cleanse(buf, sizeof buf);
  payhsm_key_setattrs(L, k, 2);
  return 1;
}

/*
 * key.derive(kdk, algorithm, label, context [, attrs]) -> key
 * NIST SP 800-108r1 key-based KDF in counter mode (section 4.1): the PRF is
 * AES-CMAC for an AES key-derivation key and HMAC for an HMAC one; the input of
 * each PRF call is [i]_32 || label || 0x00 || context || [L]_32 (OpenSSL's KBKDF).
 * label and context are plain strings (may be empty). The derived key's bytes stay
 * in C; DES-family outputs get odd parity. The KDK must be AES or HMAC (raises
 * otherwise) and fit for any use or usage B0 (else nil, msg, "KEY_USAGE").
 */
static int key_derive(lua_State *L) {
  payhsm_key *kdk = payhsm_checkkey(L, 1);
  payhsm_alg alg = check_alg(L, 2);
  size_t llen, clen, n = algs[alg].len;
  const char *label = luaL_checklstring(L, 3, &llen);
  const char *context = luaL_checklstring(L, 4, &clen);
  unsigned char buf[64];
  OSSL_PARAM params[7], *p = params;
  EVP_KDF *kdf;
  EVP_KDF_CTX *ctx;
  payhsm_key *k;
  int ok;
  lua_settop(L, 5);
  if (payhsm_key_usage(L, kdk, "key.derive", "B0", NULL)) return 3;
  if (!n) n = (size_t)EVP_MD_get_size(payhsm_md_for(alg));
  *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, (char *)(uintptr_t)"counter", 0);
  if (algs[kdk->alg].fam == PAYHSM_FAM_AES) {
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, (char *)(uintptr_t)"CMAC", 0);
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_CIPHER,
        (char *)(uintptr_t)EVP_CIPHER_get0_name(payhsm_cipher_for(kdk->alg, 1)), 0);
  } else if (algs[kdk->alg].fam == PAYHSM_FAM_HMAC) {
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, (char *)(uintptr_t)"HMAC", 0);
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
        (char *)(uintptr_t)EVP_MD_get0_name(payhsm_md_for(kdk->alg)), 0);
  } else {
    return luaL_argerror(L, 1, "key.derive: the key-derivation key must be AES or HMAC");
  }
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, kdk->bytes, kdk->len);
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)label, llen);
  *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)context, clen);
  *p = OSSL_PARAM_construct_end();
  kdf = EVP_KDF_fetch(NULL, "KBKDF", NULL);
  ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  EVP_KDF_free(kdf);
  ok = ctx && EVP_KDF_derive(ctx, buf, n, params) == 1;
  EVP_KDF_CTX_free(ctx);
  if (!ok) {
    OPENSSL_cleanse(buf, sizeof buf);
    return payhsm_raise_ossl(L, "key.derive");
  }
  if (algs[alg].fam == PAYHSM_FAM_DES) payhsm_des_parity(buf, n);
  k = payhsm_pushkey(L, alg, buf, n);
  OPENSSL_cleanse(buf, sizeof buf);
  payhsm_key_setattrs(L, k, 5);
  return 1;
}

/* key:export() -> hex. The one way to see clear bytes; raises when the host's
 * policy turned clear export off. */
static int key_export(lua_State *L) {
  payhsm_key *k = payhsm_checkkey(L, 1);
  if (!payhsm_policy_clear_export) return luaL_error(L, "key:export: clear export is disabled by policy");
  payhsm_pushhex(L, k->bytes, k->len);
  return 1;
}

/* key:close(), __close, __gc: one idempotent wipe. */
static int key_close(lua_State *L) {
  payhsm_key *k = (payhsm_key *)luaL_checkudata(L, 1, PAYHSM_KEY_MT);
  payhsm_key_clear(k);
  return 0;
}

static int key_tostring(lua_State *L) {
  payhsm_key *k = (payhsm_key *)luaL_checkudata(L, 1, PAYHSM_KEY_MT);
  unsigned char kcv[3];
  char hex[7];
  if (!k->bytes) {
    lua_pushfstring(L, "payhsm.Key(%s, closed)", algs[k->alg].name);
    return 1;
  }
  if (!payhsm_kcv_compute(L, k, algs[k->alg].fam == PAYHSM_FAM_HMAC ? 2 : 0, kcv))
    return payhsm_raise_ossl(L, "key");
  payhsm_hex_encode(kcv, 3, hex);
  hex[6] = 0;
  lua_pushfstring(L, "payhsm.Key(%s, usage %s, KCV %s)", algs[k->alg].name,
                  k->usage[0] ? k->usage : "any", hex);
  return 1;
}

/* __index: methods first (upvalue 1, one hash lookup on the hot path), then the
 * read-only attribute fields. */
static int key_index(lua_State *L) {
  payhsm_key *k;
  const char *f;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  k = (payhsm_key *)luaL_checkudata(L, 1, PAYHSM_KEY_MT);
  f = luaL_checkstring(L, 2);
  if (strcmp(f, "algorithm") == 0) lua_pushstring(L, algs[k->alg].name);
  else if (strcmp(f, "bits") == 0) lua_pushinteger(L, (lua_Integer)(k->len * 8));
  else if (strcmp(f, "usage") == 0) { if (k->usage[0]) lua_pushstring(L, k->usage); else lua_pushnil(L); }
  else if (strcmp(f, "mode") == 0) { if (k->mode) lua_pushlstring(L, &k->mode, 1); else lua_pushnil(L); }
  else if (strcmp(f, "version") == 0) lua_pushlstring(L, k->version, 2);
  else if (strcmp(f, "exportability") == 0) {
    if (k->exportability) lua_pushlstring(L, &k->exportability, 1); else lua_pushnil(L);
  } else if (strcmp(f, "closed") == 0) lua_pushboolean(L, k->bytes == NULL);
  else lua_pushnil(L);
  return 1;
}

static int key_newindex(lua_State *L) {
  return luaL_error(L, "key fields are read-only");
}

/* policy{clear_export = bool} -> current policy table */
static int policy(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    static const char *const fields[] = {"clear_export", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    payhsm_checkfields(L, 1, "policy", fields);
    if (lua_getfield(L, 1, "clear_export") != LUA_TNIL) {
      luaL_checktype(L, -1, LUA_TBOOLEAN);
      payhsm_policy_clear_export = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
  }
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, payhsm_policy_clear_export);
  lua_setfield(L, -2, "clear_export");
  return 1;
}

/* key.is_key(v) -> boolean */
static int key_is(lua_State *L) {
  payhsm_key *k = payhsm_testkey(L, 1);
  lua_pushboolean(L, k != NULL);
  return 1;
}

void payhsm_key_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"export", key_export}, {"close", key_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__newindex", key_newindex}, {"__gc", key_close},
    {"__close", key_close}, {"__tostring", key_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"import", key_import}, {"generate", key_generate}, {"derive", key_derive}, {"is_key", key_is}, {NULL, NULL}};
  luaL_newmetatable(L, PAYHSM_KEY_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_getfield(L, -3, "kcv"); /* core.kcv, set by payhsm_kcv_open before us */
  lua_setfield(L, -2, "kcv");
  lua_pushcclosure(L, key_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "payhsm.Key");
  lua_setfield(L, -2, "__name");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "key");
  lua_pushcfunction(L, policy);
  lua_setfield(L, -2, "policy");
}
