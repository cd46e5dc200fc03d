/*
 * mac.c - message authentication codes.
 *
 *  ISO9797_ALGORITHM1  CBC-MAC (ISO/IEC 9797-1:2011 MAC algorithm 1), TDES or AES;
 *                      key usage M0 or M1.
 *  ISO9797_ALGORITHM3  retail MAC (ISO/IEC 9797-1:2011 MAC algorithm 3, ANSI
 *                      X9.19): single-DES CBC under K1, final block e_K1(d_K2(.)),
 *                      double-length TDES keys; key usage M3.
 *  CMAC                NIST SP 800-38B (ISO/IEC 9797-1 MAC algorithm 5), TDES or
 *                      AES; key usage M5 or M6.
 *  HMAC_SHA224/256/384/512 FIPS 198-1 with the key's digest (HMAC names the key's own);
 *                      key usage M7.
 * Padding (opts.padding) for algorithms 1 and 3: ISO 9797-1 method 1 (zeros, the
 * default), method 2 (0x80 then zeros) or method 3 (ISO/IEC 9797-1:2011 6.3.4: a
 * block holding the data length in bits, big-endian and right-justified, then the
 * data zero padded; empty data gives the length block and one block of zeros, as
 * with method 1). opts.length is the MAC length in bytes (default: the whole block
 * or digest; at least 4).
 *
 * Lua: core.mac.generate(key, algorithm, data_hex [, opts]) -> hex | nil, msg, code
 *      core.mac.verify(key, algorithm, data_hex, mac_hex [, opts]) -> true | false, msg, code
 * Generate needs mode of use C, G or N; verify C, V or N. verify compares in
 * constant time the leftmost bytes of the MAC as long as mac_hex (or opts.length).
 * Codes: BAD_HEX, KEY_TYPE, KEY_USAGE, MAC_LENGTH, MAC_MISMATCH.
 *      core.hmac(mac_key, message) -> hex;  core.hmac_verify(mac_key, message, hex) -> bool
 */
#include <string.h>

#include <openssl/crypto.h>

#include "payhsm.h"

enum { ALG1, ALG3, CMAC, HMAC, HMAC256, HMAC384, HMAC512, HMAC224 };
static const char *const mac_names[] = {"ISO9797_ALGORITHM1", "ISO9797_ALGORITHM3", "CMAC", "HMAC",
                                        "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512", "HMAC_SHA224", NULL};

size_t payhsm_iso9797_pad(const unsigned char *in, size_t len, size_t bs, int method,
                          unsigned char *out) {
  size_t total, i, bits = len * 8;
  if (method == 3) {
    memmove(out + bs, in, len);
    memset(out, 0, bs);
    for (i = 0; i < sizeof bits && i < bs; i++) out[bs - 1 - i] = (unsigned char)(bits >> (8 * i));
    return bs + payhsm_iso9797_pad(out + bs, len, bs, 1, out + bs);
  }
  if (out != in) memmove(out, in, len);
  if (method == 2) {
    total = (len / bs + 1) * bs;
    out[len] = 0x80;
    memset(out + len + 1, 0, total - len - 1);
  } else {
    total = len == 0 ? bs : (len + bs - 1) / bs * bs;
    memset(out + len, 0, total - len);
  }
  return total;
}

int payhsm_mac_alg1(lua_State *L, payhsm_key *k, const unsigned char *padded, size_t len,
                    unsigned char *out) {
  return payhsm_cbc_chain(payhsm_key_cbc(L, k, 1), padded, len, payhsm_key_blocksize(k), out);
}

int payhsm_mac_alg3(lua_State *L, payhsm_key *k, const unsigned char *padded, size_t len,
                    unsigned char *out) {
  unsigned char h[8] = {0};
  size_t i;
  int ok = 1;
  if (len > 8) ok = payhsm_cbc_chain(payhsm_key_k1cbc(L, k), padded, len - 8, 8, h);
  for (i = 0; i < 8; i++) h[i] ^= padded[len - 8 + i];
  /* e_K1(d_K2(e_K1(x))): the key's own two-key TDES encryption. */
  ok = ok && payhsm_key_crypt(L, k, 1, NULL, h, out, 8);
  OPENSSL_cleanse(h, sizeof h);
  return ok;
}

/* Computes the full MAC into out (*outlen bytes). Returns 0 and leaves the
 * three failure values on the stack when the input is refused, -1 on an
 * OpenSSL failure, 1 on success. data is hex at index 3. */
static int compute(lua_State *L, const char *fn, int verify, int opts, unsigned char *out,
                   size_t *outlen) {
  static const char *const fields[] = {"padding", "length", NULL};
  payhsm_key *k = payhsm_checkkey(L, 1);
  int alg = payhsm_checkname(L, 2, "MAC algorithm", mac_names);
  size_t bs = payhsm_key_blocksize(k), n;
  int padding = (int)payhsm_optfield_int(L, opts, "padding", 1);
  unsigned char *buf, stackbuf[512];
  const char *usage;
  int ok, top = lua_gettop(L);
  payhsm_checkfields(L, opts, fn, fields);
  if (padding < 1 || padding > 3) luaL_error(L, "%s: padding must be ISO 9797-1 method 1, 2 or 3", fn);
  switch (alg) {
    case ALG1: usage = "M0 M1"; break;
    case ALG3: usage = "M3"; break;
    case CMAC: usage = "M5 M6"; break;
    default: usage = "M7"; break;
  }
  if (payhsm_key_usage(L, k, fn, usage, verify ? "CVN" : "CGN")) return 0;
  if (alg >= HMAC) {
    if (bs || (alg > HMAC && alg - HMAC256 != (int)k->alg - PAYHSM_ALG_HMAC_SHA256)) {
      payhsm_fail(L, fn, "KEY_TYPE", "%s needs a matching HMAC key, not %s", mac_names[alg],
                  payhsm_alg_name(k->alg));
      return 0;
    }
  } else if (!bs || (alg == ALG3 && k->alg != PAYHSM_ALG_TDES_2KEY)) {
    payhsm_fail(L, fn, "KEY_TYPE", "%s cannot use a %s key", mac_names[alg], payhsm_alg_name(k->alg));
    return 0;
  }
  /* headroom: method 3 adds a length block and up to a block of zeros */
  n = payhsm_hexarg_scratch(L, 3, fn, "data", 32, stackbuf, sizeof stackbuf, &buf);
  if (n == (size_t)-1) return 0;
  switch (alg) {
    case ALG1:
    case ALG3:
      n = payhsm_iso9797_pad(buf, n, bs, padding, buf);
      ok = alg == ALG1 ? payhsm_mac_alg1(L, k, buf, n, out) : payhsm_mac_alg3(L, k, buf, n, out);
      *outlen = bs;
      break;
    case CMAC:
      ok = payhsm_key_cmac(L, k, buf, n, out);
      *outlen = bs;
      break;
    default:
      ok = payhsm_key_hmac(L, k, buf, n, out, outlen);
      break;
  }
  OPENSSL_cleanse(buf, n);
  lua_settop(L, top);
  return ok ? 1 : -1;
}

static size_t check_length(lua_State *L, const char *fn, int opts, size_t full) {
  lua_Integer len = payhsm_optfield_int(L, opts, "length", (lua_Integer)full);
  if (len < 4 || (size_t)len > full)
    luaL_error(L, "%s: length must be between 4 and %d bytes", fn, (int)full);
  return (size_t)len;
}

static const char *const mac_opts[] = {"length", "padding", NULL};

/* mac.generate(key, algorithm, data_hex [, opts]) -> mac_hex */
static int mac_generate(lua_State *L) {
  unsigned char out[64];
  size_t outlen = 0;
  int r;
  payhsm_checkfields(L, 4, "mac.generate", mac_opts);
  r = compute(L, "mac.generate", 0, 4, out, &outlen);
  if (r == 0) return 3;
  if (r < 0) return payhsm_raise_ossl(L, "mac.generate");
  payhsm_pushhex(L, out, check_length(L, "mac.generate", 4, outlen));
  return 1;
}

/* mac.verify(key, algorithm, data_hex, mac_hex [, opts]) -> boolean */
static int mac_verify(lua_State *L) {
  unsigned char out[64], given[64];
  size_t outlen = 0, glen, want;
  int r;
  luaL_checkstring(L, 4);
  payhsm_checkfields(L, 5, "mac.verify", mac_opts);
  r = compute(L, "mac.verify", 1, 5, out, &outlen);
  if (r == 0) { lua_pushboolean(L, 0); lua_replace(L, -4); return 3; }
  if (r < 0) return payhsm_raise_ossl(L, "mac.verify");
  glen = payhsm_hex_decode(lua_tostring(L, 4), lua_rawlen(L, 4), given, sizeof given);
  if (glen == (size_t)-1) return payhsm_false(L, "mac.verify", "BAD_HEX", "MAC is not valid hex");
  want = lua_type(L, 5) == LUA_TTABLE && lua_getfield(L, 5, "length") != LUA_TNIL
             ? check_length(L, "mac.verify", 5, outlen) : glen;
  if (glen != want || glen < 4 || glen > outlen)
    return payhsm_false(L, "mac.verify", "MAC_LENGTH", "MAC is %d bytes, expected %d", (int)glen,
                        (int)(want < 4 || want > outlen ? outlen : want));
  if (CRYPTO_memcmp(out, given, glen) != 0)
    return payhsm_false(L, "mac.verify", "MAC_MISMATCH", "MAC does not match");
  lua_pushboolean(L, 1);
  return 1;
}

void payhsm_mac_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"generate", mac_generate}, {"verify", mac_verify}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "mac");
}

/* ---- HMAC (FIPS 198-1) ------------------------------------------------------
 * core.hmac and core.hmac_verify sign and check any message with an HMAC key
 * (usage M7); MSK envelopes are signed with them (envelope.c). */

int payhsm_hmac_key_check(lua_State *L, const payhsm_key *mk, const char *fn, const char *modes) {
  int r;
  if ((r = payhsm_key_usage(L, mk, fn, "M7", modes))) return r;
  if (payhsm_alg_family(mk->alg) != PAYHSM_FAM_HMAC)
    return payhsm_fail(L, fn, "KEY_TYPE", "HMAC signing needs an HMAC key, got %s", payhsm_alg_name(mk->alg));
  return 0;
}

/* core.hmac(mac_key, message) -> hex (FIPS 198-1 with the key's digest) */
static int hmac_sign(lua_State *L) {
  payhsm_key *k = payhsm_checkkey(L, 1);
  size_t n, ml;
  const char *msg = luaL_checklstring(L, 2, &n);
  unsigned char mac[64];
  int r;
  if ((r = payhsm_hmac_key_check(L, k, "hmac", "CGN"))) return r;
  if (!payhsm_key_hmac(L, k, (const unsigned char *)msg, n, mac, &ml)) return payhsm_raise_ossl(L, "hmac");
  payhsm_pushhex(L, mac, ml);
  return 1;
}

/* core.hmac_verify(mac_key, message, hex) -> true | false, msg, code (constant time) */
static int hmac_verify(lua_State *L) {
  static const char fn[] = "hmac_verify";
  payhsm_key *k = payhsm_checkkey(L, 1);
  size_t n, ml, gn;
  const char *msg = luaL_checklstring(L, 2, &n);
  unsigned char mac[64], given[64];
  int r;
  if ((r = payhsm_hmac_key_check(L, k, fn, "CVN"))) { lua_pushboolean(L, 0); lua_replace(L, -4); return r; }
  gn = payhsm_hexarg(L, 3, fn, "HMAC", given, sizeof given);
  if (gn == (size_t)-1) { lua_pushboolean(L, 0); lua_replace(L, -4); return 3; }
  if (!payhsm_key_hmac(L, k, (const unsigned char *)msg, n, mac, &ml)) return payhsm_raise_ossl(L, fn);
  if (gn != ml) return payhsm_false(L, fn, "MAC_LENGTH", "HMAC must be %d bytes, got %d", (int)ml, (int)gn);
  if (CRYPTO_memcmp(mac, given, ml) != 0) return payhsm_false(L, fn, "MAC_MISMATCH", "HMAC does not verify");
  lua_pushboolean(L, 1);
  return 1;
}

void payhsm_hmac_open(lua_State *L) {
  lua_pushcfunction(L, hmac_sign);
  lua_setfield(L, -2, "hmac");
  lua_pushcfunction(L, hmac_verify);
  lua_setfield(L, -2, "hmac_verify");
}
