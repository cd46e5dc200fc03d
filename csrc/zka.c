/*
 * zka.c - ZKA / Deutsche Kreditwirtschaft session keys and MAC
 * (public descriptions of ZKA: separate session keys for PIN (SK-pac), MAC (SK-mac)
 * and data (SK-enc) derived from a master key and a random value, ISO 9564 format 0
 * PIN blocks under SK-pac, a TDES CBC-MAC under SK-mac truncated to 4 or 8 bytes).
 *
 * Derivation followed (the published Derive(MK, "pac" || Session_Data) is a sketch; the
 * ZKA specification itself is not public). Public material: public code for the related
 * UKPT scheme (yelloco UKPTUtil.java, calculateIbmCcaSessionKey) deciphers each half of
 * the random value under the master key xor a control mask per key half, then sets
 * parity; a public Q&A on ZKA control masks (devhide.com, "HSM ZKA control mask values")
 * uses IBM CCA's IPINENC control vector for PAC; the values are IBM CCA's default
 * control vectors of double-length keys (z/OS ICSF Application Programmer's Guide, "DES
 * control vector table"):
 *     SK_L = TDES-ECB-decrypt(MK xor (CV_L || CV_L))(RND[0..7])
 *     SK_R = TDES-ECB-decrypt(MK xor (CV_R || CV_R))(RND[8..15]),  SK odd parity
 *     PAC: IPINENC 00215F0003410000 / 00215F0003210000
 *     MAC: DATAM   00004D0003410000 / 00004D0003210000
 *     ENC: DATAC   0000710003410000 / 0000710003210000
 * The masks are data in purposes[] below: a partner configured with other control
 * vectors needs only that table changed.
 * MAC: ISO 9797-1 MAC algorithm 1 (TDES CBC-MAC), padding method 1 (zeros),
 * leftmost 4 or 8 bytes.
 *
 *
 * AES master keys: payhsm's own construction, NOT ZKA's. Public descriptions of ZKA say
 * only that newer implementations support AES with a CMAC-based derivation; no public
 * specification defines it, so a partner's AES ZKA keys will not match these unless the
 * partner uses this same construction. payhsm derives with NIST SP 800-108r1 KBKDF in
 * counter mode with AES-CMAC as the PRF (the KDF of TR-31 key blocks and AES DUKPT):
 *     SK = KBKDF-CMAC(MK, label = "PAC" | "MAC" | "ENC" (ASCII), context = RND),
 *     SK length = MK length, 32-bit counter before the fixed data, fixed data
 *     label || 00 || context || L (32-bit, bits).
 * The MAC under an AES session key is CMAC (NIST SP 800-38B), leftmost 4, 8 or 16 bytes.
 *
 * Lua: core.zka.derive_session_key(mk, purpose, rnd_hex) -> key
 *        purpose "PAC" -> usage P0 mode B; "MAC" -> usage M1 (TDES) / M6 (AES) mode C;
 *        "ENC" -> usage D0 mode B
 *      core.zka.mac(sk_mac, data_hex [, {length = 4|8|16, padding = 1|2}]) -> mac_hex
 *      core.zka.verify_mac(sk_mac, data_hex, mac_hex [, opts]) -> true | false, msg, code
 * Keys: the master key TDES_2KEY (ZKA's derivation above) or AES_128/192/256 (payhsm's
 * construction), usage B0 or K0 (or none), mode X, D, B or N.
 * Codes: BAD_HEX, ZKA_RND_LENGTH, MAC_LENGTH, MAC_MISMATCH, KEY_TYPE, KEY_USAGE.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "payhsm.h"

static const struct {
  const char *purpose;
  unsigned char cv[2][8]; /* CV_L, CV_R */
  const char *usage;
  char mode;
} purposes[] = {
  {"PAC", {{0x00, 0x21, 0x5F, 0x00, 0x03, 0x41, 0x00, 0x00}, {0x00, 0x21, 0x5F, 0x00, 0x03, 0x21, 0x00, 0x00}}, "P0", 'B'},
  {"MAC", {{0x00, 0x00, 0x4D, 0x00, 0x03, 0x41, 0x00, 0x00}, {0x00, 0x00, 0x4D, 0x00, 0x03, 0x21, 0x00, 0x00}}, "M1", 'C'},
  {"ENC", {{0x00, 0x00, 0x71, 0x00, 0x03, 0x41, 0x00, 0x00}, {0x00, 0x00, 0x71, 0x00, 0x03, 0x21, 0x00, 0x00}}, "D0", 'B'},
};

/* payhsm's AES construction (see the head of this file): KBKDF-CMAC(MK, purpose, RND). */
static int derive_aes(lua_State *L, const char *fn, const payhsm_key *mk, int p, const unsigned char rnd[16]) {
  unsigned char sk[32];
  payhsm_key *out;
  if (!payhsm_kbkdf(mk, (const unsigned char *)purposes[p].purpose, 3, rnd, 16, sk, mk->len)) {
    OPENSSL_cleanse(sk, sizeof sk);
    return payhsm_raise_ossl(L, fn);
  }
  out = payhsm_pushkey(L, mk->alg, sk, mk->len);
  OPENSSL_cleanse(sk, sizeof sk);
  memcpy(out->usage, p == 1 ? "M6" : purposes[p].usage, 3);
  out->mode = purposes[p].mode;
  return 1;
}

/* core.zka.derive_session_key(mk, purpose, rnd_hex) -> key | nil, msg, code
 * A TDES_2KEY master key takes ZKA's derivation; an AES one payhsm's KBKDF-CMAC construction. */
static int zka_derive(lua_State *L) {
  static const char fn[] = "zka.derive_session_key";
  static const char *const names[] = {"PAC", "MAC", "ENC", NULL};
  payhsm_key *mk = payhsm_checkkey(L, 1), t, *out;
  int p = payhsm_checkname(L, 2, "ZKA purpose", names), r, ok;
  unsigned char rnd[16], kx[16], sk[16];
  size_t n, i, h;
  if ((r = payhsm_key_usage(L, mk, fn, "B0 K0", "XDBN"))) return r;
  if (mk->alg != PAYHSM_ALG_TDES_2KEY && payhsm_alg_family(mk->alg) != PAYHSM_FAM_AES)
    return payhsm_fail(L, fn, "KEY_TYPE", "the ZKA master key is a TDES_2KEY or an AES key, got %s",
                       payhsm_alg_name(mk->alg));
  n = payhsm_hexarg(L, 3, fn, "RND", rnd, sizeof rnd);
  if (n == (size_t)-1) return 3;
  if (n != 16) return payhsm_fail(L, fn, "ZKA_RND_LENGTH", "RND must be 16 bytes, got %d", (int)n);
  if (mk->alg != PAYHSM_ALG_TDES_2KEY) return derive_aes(L, fn, mk, p, rnd);
  for (h = 0; h < 2; h++) { /* each half of RND under MK xor (CV_h || CV_h) */
    for (i = 0; i < 16; i++) kx[i] = (unsigned char)(mk->bytes[i] ^ purposes[p].cv[h][i % 8]);
    ok = payhsm_key_init(&t, PAYHSM_ALG_TDES_2KEY, kx, 16);
    OPENSSL_cleanse(kx, sizeof kx);
    if (!ok) return payhsm_raise_ossl(L, fn);
    ok = payhsm_key_crypt(L, &t, 0, NULL, rnd + 8 * h, sk + 8 * h, 8);
    payhsm_key_clear(&t);
    if (!ok) {
      OPENSSL_cleanse(sk, sizeof sk);
      return payhsm_raise_ossl(L, fn);
    }
  }
  payhsm_des_parity(sk, 16);
  out = payhsm_pushkey(L, PAYHSM_ALG_TDES_2KEY, sk, 16);
  OPENSSL_cleanse(sk, sizeof sk);
  memcpy(out->usage, purposes[p].usage, 3);
  out->mode = purposes[p].mode;
  return 1;
}

/* Computes the CBC-MAC (TDES key) or CMAC (AES key); returns bytes wanted (4, 8, or 16 for
 * AES) or 0 after pushing a failure. */
static size_t compute(lua_State *L, const char *fn, int opts, int verify, unsigned char out[16]) {
  static const char *const fields[] = {"length", "padding", NULL};
  payhsm_key *k = payhsm_checkkey(L, 1);
  payhsm_checkfields(L, opts, fn, fields);
  lua_Integer len = payhsm_optfield_int(L, opts, "length", 8);
  int padding = (int)payhsm_optfield_int(L, opts, "padding", 1), r, aes;
  unsigned char stackbuf[520], *buf;
  size_t n;
  aes = payhsm_alg_family(k->alg) == PAYHSM_FAM_AES;
  if (len != 4 && len != 8 && !(aes && len == 16))
    luaL_error(L, "%s: length must be 4 or 8%s", fn, aes ? " or 16" : "");
  if (padding != 1 && padding != 2) luaL_error(L, "%s: padding must be 1 or 2", fn);
  if (aes && lua_istable(L, opts)) {
    lua_getfield(L, opts, "padding");
    if (!lua_isnil(L, -1)) luaL_error(L, "%s: an AES session key MACs with CMAC, which takes no padding option", fn);
    lua_pop(L, 1);
  }
  if ((r = payhsm_key_usage(L, k, fn, aes ? "M0 M6" : "M0 M1", verify ? "CVN" : "CGN"))) return 0;
  if (!aes && payhsm_alg_family(k->alg) != PAYHSM_FAM_DES) {
    payhsm_fail(L, fn, "KEY_TYPE", "ZKA MACs use DES-family or AES keys, got %s", payhsm_alg_name(k->alg));
    return 0;
  }
  n = payhsm_hexarg_scratch(L, 2, fn, "data", 16, stackbuf, sizeof stackbuf, &buf);
  if (n == (size_t)-1) return 0;
  if (aes) {
    if (!payhsm_key_cmac(L, k, buf, n, out)) payhsm_raise_ossl(L, fn);
    return (size_t)len;
  }
  n = payhsm_iso9797_pad(buf, n, 8, padding, buf);
  if (!payhsm_mac_alg1(L, k, buf, n, out)) payhsm_raise_ossl(L, fn);
  return (size_t)len;
}

/* core.zka.mac(sk_mac, data_hex [, opts]) -> mac_hex | nil, msg, code */
static int zka_mac(lua_State *L) {
  unsigned char mac[16];
  size_t n = compute(L, "zka.mac", 3, 0, mac);
  if (!n) return 3;
  payhsm_pushhex(L, mac, n);
  return 1;
}

/* core.zka.verify_mac(sk_mac, data_hex, mac_hex [, opts]) -> true | false, msg, code */
static int zka_verify(lua_State *L) {
  static const char fn[] = "zka.verify_mac";
  unsigned char mac[16], given[16];
  size_t gn, n;
  int opts = 4;
  gn = payhsm_hexarg(L, 3, fn, "MAC", given, sizeof given);
  if (gn == (size_t)-1) { lua_pushboolean(L, 0); lua_replace(L, -4); return 3; }
  if (lua_isnoneornil(L, 4)) {
    lua_settop(L, 3);
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, (lua_Integer)(gn == 4 || gn == 16 ? gn : 8));
    lua_setfield(L, -2, "length");
  }
  if (gn != 4 && gn != 8 && gn != 16)
    return payhsm_false(L, fn, "MAC_LENGTH", "ZKA MACs are 4 or 8 bytes (16 for AES CMAC), got %d", (int)gn);
  n = compute(L, fn, opts, 1, mac);
  if (!n) { lua_pushboolean(L, 0); lua_replace(L, -4); return 3; }
  if (n != gn) return payhsm_false(L, fn, "MAC_LENGTH", "MAC is %d bytes, expected %d", (int)gn, (int)n);
  if (CRYPTO_memcmp(mac, given, n) != 0) return payhsm_false(L, fn, "MAC_MISMATCH", "MAC does not verify");
  lua_pushboolean(L, 1);
  return 1;
}

void payhsm_zka_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"derive_session_key", zka_derive}, {"mac", zka_mac}, {"verify_mac", zka_verify}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "zka");
}
